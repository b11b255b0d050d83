//! The Qwen3 decoder (transformers' `Qwen3ForCausalLM`), op for op:
//! pre-norm blocks of grouped-query attention (per-head RMSNorm on q and k
//! before half-rotation RoPE) and a SwiGLU MLP, a final RMSNorm, and an
//! lm_head that is either its own matrix or the embedding (tied).
//!
//! Parameters live in one `VarStore` under their Hugging Face names
//! (`model.layers.0.self_attn.q_proj.weight`, ...), so checkpoints map 1:1
//! and optimisers see every trainable tensor. Tensor ops panic only on
//! internal shape bugs; inputs are validated up front and reported as
//! [`ModelError::Input`].

use std::path::{Path, PathBuf};

use tch::nn::VarStore;
use tch::{Device, Kind, Tensor};

use crate::config::Qwen3Config;
use crate::error::{ModelError, Result};
use crate::kv_cache::{Attn, KvCache, attention_inputs};

/// RMSNorm as transformers computes it: normalise in f32, cast back to the
/// activation dtype, then scale (bf16 results depend on this order).
fn rms_norm(x: &Tensor, weight: &Tensor, eps: f64) -> Tensor {
    let kind = x.kind();
    let up = if kind == Kind::Double {
        Kind::Double
    } else {
        Kind::Float
    };
    let x = x.to_kind(up);
    let var = x.pow_tensor_scalar(2).mean_dim(-1, true, up);
    weight * (x * (var + eps).rsqrt()).to_kind(kind)
}

/// GPT-NeoX style RoPE: rotate the two halves of the head dimension.
fn apply_rope(x: &Tensor, cos: &Tensor, sin: &Tensor) -> Tensor {
    let half = x.size()[3] / 2;
    let rotated = Tensor::cat(&[-x.narrow(3, half, half), x.narrow(3, 0, half)], 3);
    x * cos + rotated * sin
}

struct Layer {
    input_norm: Tensor,
    q_proj: Tensor,
    k_proj: Tensor,
    v_proj: Tensor,
    o_proj: Tensor,
    q_norm: Tensor,
    k_norm: Tensor,
    post_norm: Tensor,
    gate_proj: Tensor,
    up_proj: Tensor,
    down_proj: Tensor,
}

/// A Qwen3 causal language model.
pub struct Qwen3 {
    cfg: Qwen3Config,
    vs: VarStore,
    /// (HF name, tensor) in transformers' module order; saving follows it.
    params: Vec<(String, Tensor)>,
    embed: Tensor,
    layers: Vec<Layer>,
    norm: Tensor,
    /// `None` when tied to `embed`: one parameter, so both uses add gradients.
    lm_head: Option<Tensor>,
    /// RoPE inverse frequencies, f32 `[head_dim / 2]`.
    inv_freq: Tensor,
    /// The checkpoint directory this model was loaded from (tokenizer files
    /// are copied from there on save).
    source: Option<PathBuf>,
}

impl std::fmt::Debug for Qwen3 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Qwen3")
            .field("layers", &self.layers.len())
            .field("hidden_size", &self.cfg.hidden_size)
            .field("kind", &self.kind())
            .field("device", &self.device())
            .finish()
    }
}

impl Qwen3 {
    /// A model with the config's shapes: linear and embedding weights zero,
    /// norms one. Fill it with [`crate::checkpoint::load_weights`] or
    /// [`crate::init::randomize`].
    pub fn new(cfg: Qwen3Config, device: Device, kind: Kind) -> Result<Self> {
        cfg.validate()
            .map_err(|m| ModelError::Input(format!("config: {m}")))?;
        if !matches!(
            kind,
            Kind::Float | Kind::BFloat16 | Kind::Half | Kind::Double
        ) {
            return Err(ModelError::Input(format!(
                "unsupported parameter kind {kind:?}"
            )));
        }
        let vs = VarStore::new(device);
        let mut params = Vec::new();
        let mut add = |name: String, dims: &[i64], fill: f64| {
            // tch joins path components with '.', so HF names map exactly.
            let (dir, leaf) = name.rsplit_once('.').unwrap_or(("", &name));
            let path = dir
                .split('.')
                .filter(|c| !c.is_empty())
                .fold(vs.root(), |p, c| p.sub(c));
            let t = path.add(leaf, Tensor::full(dims, fill, (kind, device)), true);
            params.push((name, t.shallow_clone()));
            t
        };
        let (h, hd) = (cfg.hidden_size, cfg.head_dim);
        let (q_out, kv_out) = (cfg.num_attention_heads * hd, cfg.num_kv_heads() * hd);
        let inter = cfg.intermediate_size;
        let embed = add(
            "model.embed_tokens.weight".into(),
            &[cfg.vocab_size, h],
            0.0,
        );
        let layers = (0..cfg.num_hidden_layers)
            .map(|i| {
                let n = |s: &str| format!("model.layers.{i}.{s}.weight");
                Layer {
                    q_proj: add(n("self_attn.q_proj"), &[q_out, h], 0.0),
                    k_proj: add(n("self_attn.k_proj"), &[kv_out, h], 0.0),
                    v_proj: add(n("self_attn.v_proj"), &[kv_out, h], 0.0),
                    o_proj: add(n("self_attn.o_proj"), &[h, q_out], 0.0),
                    q_norm: add(n("self_attn.q_norm"), &[hd], 1.0),
                    k_norm: add(n("self_attn.k_norm"), &[hd], 1.0),
                    gate_proj: add(n("mlp.gate_proj"), &[inter, h], 0.0),
                    up_proj: add(n("mlp.up_proj"), &[inter, h], 0.0),
                    down_proj: add(n("mlp.down_proj"), &[h, inter], 0.0),
                    input_norm: add(n("input_layernorm"), &[h], 1.0),
                    post_norm: add(n("post_attention_layernorm"), &[h], 1.0),
                }
            })
            .collect();
        let norm = add("model.norm.weight".into(), &[h], 1.0);
        let lm_head = (!cfg.tie_word_embeddings)
            .then(|| add("lm_head.weight".into(), &[cfg.vocab_size, h], 0.0));
        // transformers: 1 / theta^(arange(0, d, 2) / d), in f32.
        let exponents = Tensor::arange_start_step(0, hd, 2, (Kind::Int64, device))
            .to_kind(Kind::Float)
            / hd as f64;
        let inv_freq = Tensor::pow_scalar(cfg.rope_theta(), &exponents).reciprocal();
        Ok(Self {
            cfg,
            vs,
            params,
            embed,
            layers,
            norm,
            lm_head,
            inv_freq,
            source: None,
        })
    }

    /// Loads `config.json` and the safetensors weights of an HF checkpoint
    /// directory. `kind` defaults to the checkpoint's dtype.
    pub fn load(dir: impl AsRef<Path>, device: Device, kind: Option<Kind>) -> Result<Self> {
        let dir = dir.as_ref();
        let cfg = Qwen3Config::load(dir)?;
        let kind = kind.unwrap_or_else(|| cfg.kind());
        let mut model = Self::new(cfg, device, kind)?;
        crate::checkpoint::load_weights(&model, dir)?;
        model.source = Some(dir.to_path_buf());
        Ok(model)
    }

    pub fn config(&self) -> &Qwen3Config {
        &self.cfg
    }

    pub fn var_store(&self) -> &VarStore {
        &self.vs
    }

    pub fn var_store_mut(&mut self) -> &mut VarStore {
        &mut self.vs
    }

    /// Parameters under their HF names, in module order.
    pub fn named_parameters(&self) -> &[(String, Tensor)] {
        &self.params
    }

    pub fn source_dir(&self) -> Option<&Path> {
        self.source.as_deref()
    }

    pub fn set_source_dir(&mut self, dir: Option<PathBuf>) {
        self.source = dir;
    }

    pub fn device(&self) -> Device {
        self.embed.device()
    }

    pub fn kind(&self) -> Kind {
        self.embed.kind()
    }

    /// Converts every parameter in place (handles elsewhere see the change).
    pub fn set_kind(&mut self, kind: Kind) {
        let _guard = tch::no_grad_guard();
        for (_, p) in &mut self.params {
            p.set_data(&p.to_kind(kind));
        }
    }

    /// Runs the decoder and returns the final-normed hidden states
    /// `[batch, t, hidden]`.
    ///
    /// * `input_ids`: `[batch, t]` integer ids.
    /// * `attention_mask`: `[batch, t]`, 1 for real tokens and 0 for padding
    ///   (left padding for batches of different lengths).
    /// * `position_ids`: `[batch, t]`; by default counted from the real tokens.
    /// * `cache`: appended to; masks and positions account for its contents.
    pub fn forward_hidden(
        &self,
        input_ids: &Tensor,
        attention_mask: Option<&Tensor>,
        position_ids: Option<&Tensor>,
        mut cache: Option<&mut KvCache>,
    ) -> Result<Tensor> {
        let (b, t) = self.check_inputs(input_ids, attention_mask, position_ids)?;
        let device = self.device();
        let ids = input_ids.to_device(device).to_kind(Kind::Int64);
        let valid = attention_mask.map(|m| m.to_device(device).to_kind(Kind::Bool));
        let position_ids = position_ids.map(|p| p.to_device(device));
        let attn = attention_inputs(
            b,
            t,
            device,
            cache.as_deref(),
            valid.as_ref(),
            position_ids.as_ref(),
        );
        let (cos, sin) = self.rope(&attn.positions);
        let mut x = Tensor::embedding(&self.embed, &ids, -1, false, false);
        for (i, layer) in self.layers.iter().enumerate() {
            let slot = cache.as_deref_mut().map(|c| (c, i));
            x = self.layer_forward(layer, &x, &cos, &sin, &attn, slot);
        }
        if let Some(cache) = cache {
            cache.commit(b, t, valid.as_ref(), device);
        }
        Ok(rms_norm(&x, &self.norm, self.cfg.rms_norm_eps))
    }

    /// Logits `[..., vocab]` for hidden states `[..., hidden]`.
    pub fn lm_head(&self, hidden: &Tensor) -> Tensor {
        hidden.linear(self.lm_head.as_ref().unwrap_or(&self.embed), None::<Tensor>)
    }

    /// Logits at every position, `[batch, t, vocab]`. For training prefer
    /// [`Self::logits_at`]: with a 152k vocabulary the full tensor is
    /// 0.6 MB per position in f32.
    pub fn forward(
        &self,
        input_ids: &Tensor,
        attention_mask: Option<&Tensor>,
        position_ids: Option<&Tensor>,
        cache: Option<&mut KvCache>,
    ) -> Result<Tensor> {
        Ok(self.lm_head(&self.forward_hidden(input_ids, attention_mask, position_ids, cache)?))
    }

    /// Logits `[n, vocab]` only for the rows of `hidden` (`[batch, t, h]`)
    /// selected by `flat_positions` (indices into `batch * t`).
    pub fn logits_at(&self, hidden: &Tensor, flat_positions: &Tensor) -> Tensor {
        let h = hidden.size()[2];
        self.lm_head(&hidden.reshape([-1, h]).index_select(0, flat_positions))
    }

    /// Log-probabilities (f32, `[n]`) of the tokens `input_ids[b, t]` at the
    /// positions where `target_mask[b, t]` is set (t >= 1), each predicted
    /// from its prefix, with the logits divided by `temperature` (GRPO
    /// scores sampled tokens under the sampling temperature). Only the
    /// selected positions go through the lm_head. Order: row-major.
    pub fn target_logprobs(
        &self,
        input_ids: &Tensor,
        attention_mask: Option<&Tensor>,
        target_mask: &Tensor,
        temperature: f64,
    ) -> Result<Tensor> {
        if target_mask.size() != input_ids.size() {
            return Err(ModelError::Input(
                "target_mask must have the shape of input_ids".into(),
            ));
        }
        if temperature.is_nan() || temperature <= 0.0 {
            return Err(ModelError::Input(format!(
                "temperature must be > 0, got {temperature}"
            )));
        }
        let hidden = self.forward_hidden(input_ids, attention_mask, None, None)?;
        let device = self.device();
        let t = input_ids.size()[1];
        // Position p predicts token p + 1.
        let selected = target_mask
            .to_device(device)
            .to_kind(Kind::Bool)
            .narrow(1, 1, t - 1);
        let rc = selected.nonzero(); // [n, 2] (row, position)
        let flat = rc.select(1, 0) * t + rc.select(1, 1);
        let targets = input_ids
            .to_device(device)
            .to_kind(Kind::Int64)
            .narrow(1, 1, t - 1)
            .masked_select(&selected);
        // Log-softmax in f32 at least (bf16 logits lose too much); f64 models stay f64.
        let kind = if self.kind() == Kind::Double {
            Kind::Double
        } else {
            Kind::Float
        };
        let logits = self.logits_at(&hidden, &flat).to_kind(kind);
        let logits = if temperature == 1.0 {
            logits
        } else {
            logits / temperature
        };
        Ok(logits
            .log_softmax(-1, kind)
            .gather(1, &targets.unsqueeze(1), false)
            .squeeze_dim(1))
    }

    /// The SFT loss: mean negative log-likelihood over the tokens marked in
    /// `loss_mask` (token-level mean over the batch).
    pub fn sft_loss(
        &self,
        input_ids: &Tensor,
        attention_mask: Option<&Tensor>,
        loss_mask: &Tensor,
    ) -> Result<Tensor> {
        let logprobs = self.target_logprobs(input_ids, attention_mask, loss_mask, 1.0)?;
        if logprobs.numel() == 0 {
            return Err(ModelError::Input(
                "loss_mask selects no target token".into(),
            ));
        }
        Ok(-logprobs.mean(logprobs.kind()))
    }

    fn check_inputs(
        &self,
        input_ids: &Tensor,
        attention_mask: Option<&Tensor>,
        position_ids: Option<&Tensor>,
    ) -> Result<(i64, i64)> {
        let size = input_ids.size();
        let &[b, t] = size.as_slice() else {
            return Err(ModelError::Input(format!(
                "input_ids must be [batch, seq], got {size:?}"
            )));
        };
        if b == 0 || t == 0 {
            return Err(ModelError::Input(format!("empty input_ids {size:?}")));
        }
        if input_ids.is_floating_point() {
            return Err(ModelError::Input("input_ids must be integers".into()));
        }
        let (lo, hi) = (
            input_ids.min().int64_value(&[]),
            input_ids.max().int64_value(&[]),
        );
        if lo < 0 || hi >= self.cfg.vocab_size {
            return Err(ModelError::Input(format!(
                "token ids must be in 0..{}, got {lo}..={hi}",
                self.cfg.vocab_size
            )));
        }
        for (name, t) in [
            ("attention_mask", attention_mask),
            ("position_ids", position_ids),
        ] {
            if let Some(t) = t
                && t.size() != size
            {
                return Err(ModelError::Input(format!(
                    "{name} must have the shape of input_ids {size:?}, got {:?}",
                    t.size()
                )));
            }
        }
        Ok((b, t))
    }

    /// cos and sin `[batch, 1, t, head_dim]` for the positions, computed in
    /// f32 (bf16 positions lose precision) and cast to the activation dtype.
    fn rope(&self, positions: &Tensor) -> (Tensor, Tensor) {
        let freqs = positions.to_kind(Kind::Float).unsqueeze(-1) * &self.inv_freq;
        let emb = Tensor::cat(&[&freqs, &freqs], -1);
        let kind = self.kind();
        (
            emb.cos().to_kind(kind).unsqueeze(1),
            emb.sin().to_kind(kind).unsqueeze(1),
        )
    }

    fn layer_forward(
        &self,
        l: &Layer,
        x: &Tensor,
        cos: &Tensor,
        sin: &Tensor,
        attn: &Attn,
        cache: Option<(&mut KvCache, usize)>,
    ) -> Tensor {
        let eps = self.cfg.rms_norm_eps;
        let (b, t, hd) = (x.size()[0], x.size()[1], self.cfg.head_dim);
        let h = rms_norm(x, &l.input_norm, eps);
        // [b, t, heads, hd] -> per-head norm -> [b, heads, t, hd]
        let q = rms_norm(
            &h.linear(&l.q_proj, None::<Tensor>).view([b, t, -1, hd]),
            &l.q_norm,
            eps,
        )
        .transpose(1, 2);
        let k = rms_norm(
            &h.linear(&l.k_proj, None::<Tensor>).view([b, t, -1, hd]),
            &l.k_norm,
            eps,
        )
        .transpose(1, 2);
        let v = h
            .linear(&l.v_proj, None::<Tensor>)
            .view([b, t, -1, hd])
            .transpose(1, 2);
        let q = apply_rope(&q, cos, sin);
        let k = apply_rope(&k, cos, sin);
        let (k, v) = match cache {
            Some((cache, i)) => cache.append(i, &k, &v),
            None => (k, v),
        };
        // GQA inside SDPA: query head j reads kv head j / (heads / kv_heads).
        let y = Tensor::scaled_dot_product_attention(
            &q,
            &k,
            &v,
            attn.mask.as_ref(),
            0.0,
            attn.causal,
            (hd as f64).powf(-0.5),
            true,
        );
        let x = x + y
            .transpose(1, 2)
            .reshape([b, t, -1])
            .linear(&l.o_proj, None::<Tensor>);
        let h = rms_norm(&x, &l.post_norm, eps);
        let gate = h.linear(&l.gate_proj, None::<Tensor>).silu();
        let up = h.linear(&l.up_proj, None::<Tensor>);
        x + (gate * up).linear(&l.down_proj, None::<Tensor>)
    }
}
