//! Per-layer key/value cache for incremental decoding, plus the attention
//! masks and RoPE positions that depend on what the cache already holds.
//!
//! Buffers are preallocated and grown in chunks, so a decode step writes one
//! slot instead of concatenating the whole history (O(n) per step instead
//! of O(n²) copies over a generation). The cache is for inference (run it
//! under `tch::no_grad`): later steps write into buffers earlier steps read.

use tch::{Device, Kind, Tensor};

/// Growth granularity of the buffers, in positions.
const CHUNK: i64 = 256;

#[derive(Debug)]
pub struct KvCache {
    /// Per layer: key and value buffers `[batch, kv_heads, capacity, head_dim]`.
    layers: Vec<Option<(Tensor, Tensor)>>,
    /// Number of positions filled (the same for every layer and row).
    len: i64,
    /// `[batch, len]` bool: which cached positions are real tokens (false for
    /// left padding). `None` while every position is real.
    valid: Option<Tensor>,
}

impl KvCache {
    pub fn new(num_layers: usize) -> Self {
        Self {
            layers: (0..num_layers).map(|_| None).collect(),
            len: 0,
            valid: None,
        }
    }

    /// Number of cached positions (including padding).
    pub fn len(&self) -> i64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Appends this step's keys and values `[batch, kv_heads, t, head_dim]`
    /// for `layer` and returns all keys and values so far. The length only
    /// advances in [`Self::commit`], once every layer has appended.
    pub(crate) fn append(&mut self, layer: usize, k: &Tensor, v: &Tensor) -> (Tensor, Tensor) {
        let t = k.size()[2];
        let needed = self.len + t;
        let len = self.len;
        let slot = &mut self.layers[layer];
        let (kb, vb) = match slot.take() {
            Some((kb, vb)) if kb.size()[2] >= needed => (kb, vb),
            old => {
                let capacity = old.as_ref().map_or(0, |(kb, _)| kb.size()[2]);
                let new_cap = (needed.max(capacity * 2) + CHUNK - 1) / CHUNK * CHUNK;
                let grow = |old: Option<&Tensor>, like: &Tensor| {
                    let mut shape = like.size();
                    shape[2] = new_cap;
                    let buf = Tensor::zeros(shape.as_slice(), (like.kind(), like.device()));
                    if let Some(old) = old {
                        buf.narrow(2, 0, len).copy_(&old.narrow(2, 0, len));
                    }
                    buf
                };
                (
                    grow(old.as_ref().map(|s| &s.0), k),
                    grow(old.as_ref().map(|s| &s.1), v),
                )
            }
        };
        kb.narrow(2, len, t).copy_(k);
        vb.narrow(2, len, t).copy_(v);
        let out = (kb.narrow(2, 0, needed), vb.narrow(2, 0, needed));
        *slot = Some((kb, vb));
        out
    }

    /// Records that `new_valid` (`[batch, t]` bool, or all real when `None`)
    /// positions were appended to every layer.
    pub(crate) fn commit(
        &mut self,
        batch: i64,
        t: i64,
        new_valid: Option<&Tensor>,
        device: Device,
    ) {
        self.valid = match (self.valid.take(), new_valid) {
            (None, None) => None,
            (old, new) => {
                let old =
                    old.unwrap_or_else(|| Tensor::ones([batch, self.len], (Kind::Bool, device)));
                let new = new.map_or_else(
                    || Tensor::ones([batch, t], (Kind::Bool, device)),
                    Tensor::shallow_clone,
                );
                Some(Tensor::cat(&[old, new], 1))
            }
        };
        self.len += t;
    }

    /// `[batch, len]` bool validity of the cached positions, if any is padding.
    pub(crate) fn valid(&self) -> Option<&Tensor> {
        self.valid.as_ref()
    }

    /// Per row, how many real tokens the cache holds (the next RoPE position).
    pub(crate) fn real_lengths(&self, batch: i64, device: Device) -> Tensor {
        match &self.valid {
            Some(v) => v.sum_dim_intlist(1, false, Kind::Int64),
            None => Tensor::full([batch], self.len, (Kind::Int64, device)),
        }
    }
}

/// Positions and attention mask for one forward call of `t` new tokens on top
/// of `past` cached ones.
pub(crate) struct Attn {
    /// `[batch, t]` RoPE positions.
    pub positions: Tensor,
    /// `[batch, 1, t, past + t]` bool, true = may attend; `None` when plain
    /// causal attention is right (see `causal`).
    pub mask: Option<Tensor>,
    /// Use SDPA's `is_causal` (only valid when `past == 0`: SDPA's causal
    /// mask is top-left aligned, wrong for queries appended to a cache).
    pub causal: bool,
}

/// Builds the RoPE positions and the mask for `t` new tokens.
///
/// * `new_valid`: `[batch, t]` 1 for real tokens, 0 for (left) padding.
/// * `positions`: explicit positions; by default each row continues from the
///   number of real tokens it has so far (`cumsum(mask) - 1` on a fresh cache,
///   as transformers' `generate` does; padding gets position 0).
///
/// Key `j` is visible to query `i` iff it is real and `j <= past + i`
/// (bottom-right aligned causality). A query whose row has no visible key
/// (a padding query before the first real token) may attend itself, so the
/// softmax never sees an all-masked row (NaN); its output is garbage that
/// nothing reads.
pub(crate) fn attention_inputs(
    batch: i64,
    t: i64,
    device: Device,
    cache: Option<&KvCache>,
    new_valid: Option<&Tensor>,
    positions: Option<&Tensor>,
) -> Attn {
    let past = cache.map_or(0, KvCache::len);
    let start = match cache {
        Some(c) => c.real_lengths(batch, device),
        None => Tensor::zeros([batch], (Kind::Int64, device)),
    };
    let positions = match (positions, new_valid) {
        (Some(p), _) => p.to_kind(Kind::Int64),
        (None, Some(v)) => {
            let v = v.to_kind(Kind::Int64);
            (v.cumsum(1, Kind::Int64) - 1).clamp_min(0) + start.unsqueeze(1)
        }
        (None, None) => Tensor::arange(t, (Kind::Int64, device)).unsqueeze(0) + start.unsqueeze(1),
    };
    let cached_valid = cache.and_then(KvCache::valid);
    if new_valid.is_none() && cached_valid.is_none() {
        // No padding anywhere: causal attention, no explicit mask needed for a
        // fresh prefill or a single-token step.
        if past == 0 {
            return Attn {
                positions,
                mask: None,
                causal: t > 1,
            };
        }
        if t == 1 {
            return Attn {
                positions,
                mask: None,
                causal: false,
            };
        }
    }
    let total = past + t;
    let key_valid = match (cached_valid, new_valid) {
        (None, None) => Tensor::ones([batch, total], (Kind::Bool, device)),
        (old, new) => {
            let old = old.map_or_else(
                || Tensor::ones([batch, past], (Kind::Bool, device)),
                Tensor::shallow_clone,
            );
            let new = new.map_or_else(
                || Tensor::ones([batch, t], (Kind::Bool, device)),
                |v| v.to_kind(Kind::Bool),
            );
            Tensor::cat(&[old, new], 1)
        }
    };
    let keys = Tensor::arange(total, (Kind::Int64, device)).unsqueeze(0); // [1, total]
    let queries = (Tensor::arange(t, (Kind::Int64, device)) + past).unsqueeze(1); // [t, 1]
    let causal = keys.le_tensor(&queries); // [t, total]
    let itself = keys.eq_tensor(&queries);
    let mask = causal
        .unsqueeze(0)
        .logical_and(&key_valid.unsqueeze(1))
        .logical_or(&itself.unsqueeze(0))
        .unsqueeze(1);
    Attn {
        positions,
        mask: Some(mask),
        causal: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bools(t: &Tensor) -> Vec<Vec<bool>> {
        let t = t.to_kind(Kind::Int64);
        let rows = t.size()[0];
        (0..rows)
            .map(|r| {
                Vec::<i64>::try_from(t.get(r))
                    .expect("ints")
                    .iter()
                    .map(|&x| x != 0)
                    .collect()
            })
            .collect()
    }

    #[test]
    fn fresh_prefill_without_padding_uses_is_causal() {
        let a = attention_inputs(2, 3, Device::Cpu, None, None, None);
        assert!(a.causal && a.mask.is_none());
        assert_eq!(
            Vec::<i64>::try_from(a.positions.get(1)).expect("ints"),
            vec![0, 1, 2]
        );
    }

    #[test]
    fn left_padded_prefill_masks_pad_keys_and_restarts_positions() {
        let valid = Tensor::from_slice(&[0i64, 0, 1, 1, 1, 1, 1, 1]).view([2, 4]);
        let a = attention_inputs(2, 4, Device::Cpu, None, Some(&valid), None);
        assert_eq!(
            Vec::<i64>::try_from(a.positions.get(0)).expect("ints"),
            vec![0, 0, 0, 1]
        );
        assert_eq!(
            Vec::<i64>::try_from(a.positions.get(1)).expect("ints"),
            vec![0, 1, 2, 3]
        );
        let m = a.mask.expect("explicit mask");
        assert_eq!(m.size(), vec![2, 1, 4, 4]);
        let row0 = bools(&m.get(0).get(0));
        // Pad queries attend only themselves; real queries never see pad keys.
        assert_eq!(row0[0], vec![true, false, false, false]);
        assert_eq!(row0[1], vec![false, true, false, false]);
        assert_eq!(row0[2], vec![false, false, true, false]);
        assert_eq!(row0[3], vec![false, false, true, true]);
        let row1 = bools(&m.get(1).get(0));
        assert_eq!(row1[3], vec![true, true, true, true]);
        assert_eq!(row1[1], vec![true, true, false, false]);
    }

    #[test]
    fn continuation_on_a_cache_is_bottom_right_aligned() {
        let mut cache = KvCache::new(1);
        let valid = Tensor::from_slice(&[0i64, 1, 1, 1])
            .view([2, 2])
            .to_kind(Kind::Bool);
        let k = Tensor::zeros([2, 1, 2, 4], (Kind::Float, Device::Cpu));
        let _ = cache.append(0, &k, &k);
        cache.commit(2, 2, Some(&valid), Device::Cpu);
        let a = attention_inputs(2, 2, Device::Cpu, Some(&cache), None, None);
        // Row 0 has one real cached token, row 1 two.
        assert_eq!(
            Vec::<i64>::try_from(a.positions.get(0)).expect("ints"),
            vec![1, 2]
        );
        assert_eq!(
            Vec::<i64>::try_from(a.positions.get(1)).expect("ints"),
            vec![2, 3]
        );
        let m = a.mask.expect("explicit mask");
        assert_eq!(
            bools(&m.get(0).get(0)),
            vec![
                vec![false, true, true, false],
                vec![false, true, true, true]
            ]
        );
        assert_eq!(bools(&m.get(1).get(0))[0], vec![true, true, true, false]);
    }

    #[test]
    fn decode_step_without_padding_needs_no_mask() {
        let mut cache = KvCache::new(1);
        let k = Tensor::zeros([1, 1, 5, 4], (Kind::Float, Device::Cpu));
        let _ = cache.append(0, &k, &k);
        cache.commit(1, 5, None, Device::Cpu);
        let a = attention_inputs(1, 1, Device::Cpu, Some(&cache), None, None);
        assert!(a.mask.is_none() && !a.causal);
        assert_eq!(a.positions.int64_value(&[0, 0]), 5);
        // A multi-token continuation gets an explicit mask (is_causal would be wrong).
        let a = attention_inputs(1, 3, Device::Cpu, Some(&cache), None, None);
        let m = bools(&a.mask.expect("mask").get(0).get(0));
        assert_eq!(m[0], vec![true, true, true, true, true, true, false, false]);
    }

    #[test]
    fn buffers_grow_and_keep_contents() {
        let mut cache = KvCache::new(1);
        for step in 0..300 {
            let k = Tensor::full([1, 2, 1, 3], step as f64, (Kind::Float, Device::Cpu));
            let (ks, _) = cache.append(0, &k, &k);
            cache.commit(1, 1, None, Device::Cpu);
            assert_eq!(ks.size(), vec![1, 2, step + 1, 3]);
        }
        let (ks, _) = cache.append(
            0,
            &Tensor::zeros([1, 2, 1, 3], (Kind::Float, Device::Cpu)),
            &Tensor::zeros([1, 2, 1, 3], (Kind::Float, Device::Cpu)),
        );
        let diag: Vec<f64> = (0..300).map(|i| ks.double_value(&[0, 1, i, 2])).collect();
        assert_eq!(diag, (0..300).map(f64::from).collect::<Vec<_>>());
    }
}
