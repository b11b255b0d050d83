//! AdamW with global gradient-norm clipping, gradient accumulation and
//! mixed precision, written out by hand (rather than tch's `nn::Optimizer`)
//! so that its state can be saved and restored bit for bit.
//!
//! Mixed precision: the model's parameters are the *compute* copy (bf16 on
//! GPU, f32 in CPU tests). When they are narrower than f32 the optimizer
//! keeps an f32 *master* copy of every parameter plus f32 gradient
//! accumulators: each micro-batch's bf16 gradients are added into the f32
//! buffer ([`AdamW::accumulate`]), the update runs on the master, and the
//! result is cast back into the model. That is Megatron's bf16 recipe
//! (`--accumulate-allreduce-grads-in-fp32`, fp32 master weights); with lr
//! 1e-6, updates applied to bf16 weights directly would round away (ml.md
//! e.1). When the model is already f32 (or f64) there is no extra copy.
//!
//! Weight decay follows Megatron's default `no_weight_decay_cond`: no decay
//! on biases and one-dimensional parameters (all of Qwen3's norm weights);
//! decay is decoupled (AdamW), `p -= lr * wd * p`.

use std::path::Path;

use tau2_api::phases::{Optimizer, PhaseDefaults};
use tau2_model::Qwen3;
use tch::{Kind, Tensor};

use crate::error::{Result, TrainError};

/// AdamW hyper-parameters other than the learning rate (which the schedule
/// gives per step).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdamWConfig {
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
    /// Clip the global gradient norm to this; 0 disables clipping.
    pub max_grad_norm: f64,
}

impl<D: PhaseDefaults> From<&Optimizer<D>> for AdamWConfig {
    fn from(o: &Optimizer<D>) -> Self {
        Self {
            beta1: o.beta1,
            beta2: o.beta2,
            eps: o.epsilon,
            weight_decay: o.weight_decay,
            max_grad_norm: o.max_grad_norm,
        }
    }
}

struct Param {
    name: String,
    /// The model's tensor (compute precision, requires grad).
    model: Tensor,
    /// f32 master weights when the model computes in bf16/f16.
    master: Option<Tensor>,
    /// f32 gradient accumulator (mixed precision only).
    grad: Option<Tensor>,
    m: Tensor,
    v: Tensor,
    decay: bool,
}

/// What one optimizer step did.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StepStats {
    /// Global L2 norm of the gradients before clipping.
    pub grad_norm: f64,
    /// False when the gradient norm was not finite and the update was skipped.
    pub applied: bool,
}

/// AdamW over all of a model's parameters.
pub struct AdamW {
    cfg: AdamWConfig,
    params: Vec<Param>,
    /// Number of updates applied (Adam's bias-correction `t`).
    step: u64,
}

impl std::fmt::Debug for AdamW {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdamW")
            .field("cfg", &self.cfg)
            .field("params", &self.params.len())
            .field("step", &self.step)
            .finish()
    }
}

fn state_kind(model_kind: Kind) -> Kind {
    if model_kind == Kind::Double {
        Kind::Double
    } else {
        Kind::Float
    }
}

impl AdamW {
    pub fn new(model: &Qwen3, cfg: AdamWConfig) -> Result<Self> {
        if !(0.0..1.0).contains(&cfg.beta1) || !(0.0..1.0).contains(&cfg.beta2) {
            return Err(TrainError::Config(format!(
                "AdamW betas must be in [0, 1), got {} and {}",
                cfg.beta1, cfg.beta2
            )));
        }
        let _guard = tch::no_grad_guard();
        let params = model
            .named_parameters()
            .iter()
            .map(|(name, t)| {
                let kind = state_kind(t.kind());
                let master = (t.kind() != kind).then(|| t.to_kind(kind).detach());
                Param {
                    name: name.clone(),
                    model: t.shallow_clone(),
                    grad: master.as_ref().map(Tensor::zeros_like),
                    master,
                    m: t.zeros_like().to_kind(kind),
                    v: t.zeros_like().to_kind(kind),
                    decay: !(name.ends_with(".bias") || t.dim() <= 1),
                }
            })
            .collect();
        Ok(Self {
            cfg,
            params,
            step: 0,
        })
    }

    pub fn config(&self) -> &AdamWConfig {
        &self.cfg
    }

    /// Updates applied so far.
    pub fn steps(&self) -> u64 {
        self.step
    }

    /// Moves the model's low-precision gradients into the f32 accumulators
    /// (call after each micro-batch's backward; a no-op for f32 models,
    /// whose gradients accumulate in place).
    pub fn accumulate(&mut self) {
        let _guard = tch::no_grad_guard();
        for p in &mut self.params {
            let Some(acc) = &mut p.grad else { continue };
            let mut g = p.model.grad();
            if g.defined() {
                let _ = acc.g_add_(&g.to_kind(acc.kind()));
                let _ = g.zero_();
            }
        }
    }

    /// The accumulated gradient of each parameter (undefined if none).
    fn grads(&self) -> Vec<Tensor> {
        self.params
            .iter()
            .map(|p| match &p.grad {
                Some(acc) => acc.shallow_clone(),
                None => p.model.grad(),
            })
            .collect()
    }

    /// Global L2 norm of the accumulated gradients.
    pub fn grad_norm(&mut self) -> f64 {
        self.accumulate();
        let _guard = tch::no_grad_guard();
        let sq: f64 = self
            .grads()
            .iter()
            .filter(|g| g.defined())
            .map(|g| {
                g.to_kind(Kind::Double)
                    .pow_tensor_scalar(2)
                    .sum(Kind::Double)
                    .double_value(&[])
            })
            .sum();
        sq.sqrt()
    }

    /// Clips, applies one AdamW update with learning rate `lr` and zeroes the
    /// gradients.
    pub fn step(&mut self, lr: f64) -> StepStats {
        let grad_norm = self.grad_norm();
        let _guard = tch::no_grad_guard();
        if !grad_norm.is_finite() {
            tracing::warn!(grad_norm, "non-finite gradient norm: update skipped");
            self.zero_grad();
            return StepStats {
                grad_norm,
                applied: false,
            };
        }
        // torch.nn.utils.clip_grad_norm_: scale by max / (norm + 1e-6) when below 1.
        let clip = if self.cfg.max_grad_norm > 0.0 {
            (self.cfg.max_grad_norm / (grad_norm + 1e-6)).min(1.0)
        } else {
            1.0
        };
        self.step += 1;
        let t = self.step as i32;
        let (b1, b2) = (self.cfg.beta1, self.cfg.beta2);
        let bc1 = 1.0 - b1.powi(t);
        let bc2 = 1.0 - b2.powi(t);
        let grads = self.grads();
        for (p, g) in self.params.iter_mut().zip(grads) {
            if !g.defined() {
                continue;
            }
            let kind = p.m.kind();
            let g = g.to_kind(kind);
            let g = if clip < 1.0 { g * clip } else { g };
            let target = p.master.as_ref().unwrap_or(&p.model).shallow_clone();
            let mut target = target;
            let w = target.to_kind(kind);
            let w = if p.decay && self.cfg.weight_decay > 0.0 {
                &w * (1.0 - lr * self.cfg.weight_decay)
            } else {
                w
            };
            let m = &p.m * b1 + &g * (1.0 - b1);
            let v = &p.v * b2 + (&g * &g) * (1.0 - b2);
            let denom = (&v / bc2).sqrt() + self.cfg.eps;
            let w = w - (&m / bc1) / denom * lr;
            p.m.copy_(&m);
            p.v.copy_(&v);
            target.copy_(&w);
            if p.master.is_some() {
                p.model.copy_(&w.to_kind(p.model.kind()));
            }
        }
        self.zero_grad();
        StepStats {
            grad_norm,
            applied: true,
        }
    }

    /// Zeroes the model's gradients and the accumulators.
    pub fn zero_grad(&mut self) {
        let _guard = tch::no_grad_guard();
        for p in &mut self.params {
            let mut g = p.model.grad();
            if g.defined() {
                let _ = g.zero_();
            }
            if let Some(acc) = &mut p.grad {
                let _ = acc.zero_();
            }
        }
    }

    /// The state as named tensors: `m.<param>`, `v.<param>` and, in mixed
    /// precision, `master.<param>` (the model's bf16 copy alone would lose
    /// the low bits on resume).
    pub fn state_tensors(&self) -> Vec<(String, Tensor)> {
        let mut out = Vec::with_capacity(self.params.len() * 3);
        for p in &self.params {
            out.push((format!("m.{}", p.name), p.m.shallow_clone()));
            out.push((format!("v.{}", p.name), p.v.shallow_clone()));
            if let Some(master) = &p.master {
                out.push((format!("master.{}", p.name), master.shallow_clone()));
            }
        }
        out
    }

    /// Writes the state tensors as safetensors (moved to the CPU).
    pub fn save(&self, path: &Path) -> Result<()> {
        let tensors: Vec<(String, Tensor)> = self
            .state_tensors()
            .into_iter()
            .map(|(n, t)| (n, t.to_device(tch::Device::Cpu).contiguous()))
            .collect();
        Tensor::write_safetensors(&tensors, path)?;
        Ok(())
    }

    /// Restores a state written by [`Self::save`] after `steps` updates; the
    /// master weights (if any) are copied into the model too.
    pub fn load(&mut self, path: &Path, steps: u64) -> Result<()> {
        let loaded = Tensor::read_safetensors(path)?;
        let mut by_name: std::collections::HashMap<String, Tensor> = loaded.into_iter().collect();
        let _guard = tch::no_grad_guard();
        let mut take = |name: String, dst: &mut Tensor| -> Result<()> {
            let src = by_name
                .remove(&name)
                .ok_or_else(|| TrainError::checkpoint(path, format!("missing tensor {name}")))?;
            if src.size() != dst.size() || src.kind() != dst.kind() {
                return Err(TrainError::checkpoint(
                    path,
                    format!(
                        "tensor {name}: {:?} {:?} in the file, {:?} {:?} expected",
                        src.size(),
                        src.kind(),
                        dst.size(),
                        dst.kind()
                    ),
                ));
            }
            dst.copy_(&src);
            Ok(())
        };
        for p in &mut self.params {
            take(format!("m.{}", p.name), &mut p.m)?;
            take(format!("v.{}", p.name), &mut p.v)?;
            if let Some(master) = &mut p.master {
                take(format!("master.{}", p.name), master)?;
                p.model.copy_(&master.to_kind(p.model.kind()));
            }
        }
        if let Some(extra) = by_name.keys().next() {
            return Err(TrainError::checkpoint(
                path,
                format!("unexpected tensor {extra} (another model?)"),
            ));
        }
        self.step = steps;
        self.zero_grad();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tau2_model::init::{random_model, tiny_config};
    use tch::Device;

    fn cfg() -> AdamWConfig {
        AdamWConfig {
            beta1: 0.9,
            beta2: 0.98,
            eps: 1e-8,
            weight_decay: 0.1,
            max_grad_norm: 1.0,
        }
    }

    /// One update on a scalar-ish case, against the AdamW formula by hand.
    #[test]
    fn matches_the_formula_and_skips_decay_on_norms() {
        tch::set_num_threads(1);
        let model =
            random_model(tiny_config(64, true), 1, 0.02, Device::Cpu, Kind::Float).expect("model");
        let mut opt = AdamW::new(&model, cfg()).expect("opt");
        let (name_w, w) = &model.named_parameters()[1]; // a projection
        let norm = model
            .named_parameters()
            .iter()
            .find(|(n, _)| n.ends_with("input_layernorm.weight"))
            .map(|(_, t)| t.shallow_clone())
            .expect("norm");
        assert!(name_w.contains("proj"));
        let (w0, n0) = (w.detach().copy(), norm.detach().copy());
        // loss = 0.5 * sum(w) + 0 * norm: grad 0.5 everywhere on w, 0 on norm.
        let loss = w.sum(Kind::Float) * 0.5 + norm.sum(Kind::Float) * 0.0;
        loss.backward();
        let numel = w.numel() as f64;
        let stats = opt.step(1e-3);
        let gn = (0.25 * numel).sqrt();
        assert!((stats.grad_norm - gn).abs() < 1e-6 * gn);
        // Clipped gradient g = 0.5 / (gn + 1e-6); m̂ = g, v̂ = g², step = lr * g / (|g| + eps).
        let g = 0.5 / (gn + 1e-6);
        let upd = 1e-3 * g / (g + 1e-8);
        let expect = &w0 * (1.0 - 1e-3 * 0.1) - upd;
        let diff = (w - expect).abs().max().double_value(&[]);
        assert!(diff < 1e-7, "{diff}");
        // The norm weight: zero gradient and no decay, so unchanged.
        assert_eq!((norm - n0).abs().max().double_value(&[]), 0.0);
    }

    #[test]
    fn bf16_model_keeps_f32_master_and_round_trips() {
        tch::set_num_threads(1);
        let model = random_model(tiny_config(64, true), 2, 0.02, Device::Cpu, Kind::BFloat16)
            .expect("model");
        let mut opt = AdamW::new(&model, cfg()).expect("opt");
        let ids = Tensor::from_slice(&[1i64, 5, 9, 3]).view([1, 4]);
        let mask = Tensor::from_slice(&[false, true, true, true]).view([1, 4]);
        for _ in 0..2 {
            model.sft_loss(&ids, None, &mask).expect("loss").backward();
            opt.accumulate();
        }
        opt.step(1e-6);
        // The master moved by ~1e-6 even though bf16 cannot hold that change.
        let (name, _) = &model.named_parameters()[1];
        let master = opt
            .state_tensors()
            .into_iter()
            .find(|(n, _)| n == &format!("master.{name}"))
            .map(|(_, t)| t)
            .expect("master");
        assert_eq!(master.kind(), Kind::Float);
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("opt.safetensors");
        opt.save(&path).expect("save");
        let mut again = AdamW::new(&model, cfg()).expect("opt");
        again.load(&path, opt.steps()).expect("load");
        for ((a, x), (b, y)) in opt.state_tensors().iter().zip(again.state_tensors()) {
            assert_eq!(a, &b);
            assert!(x.equal(&y), "{a}");
        }
    }
}
