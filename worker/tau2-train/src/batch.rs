//! Training sequences, length-bucketed micro-batches and their tensors.
//!
//! A step's sequences are sorted by length and cut greedily into
//! micro-batches whose padded size (rows × longest row) stays within the
//! token budget, so rows of similar length share a micro-batch and padding
//! wastes little compute (packing several conversations into one row would
//! need block-diagonal attention, which the decoder does not take).

use tch::{Device, Kind, Tensor};

/// Token ids with the mask of tokens to train on (`mask[t]`: token `t` is a
/// target, predicted from tokens `..t`).
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Sequence {
    pub ids: Vec<u32>,
    pub mask: Vec<bool>,
}

impl Sequence {
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// Number of target tokens (the first token can never be one).
    pub fn targets(&self) -> usize {
        self.mask.iter().skip(1).filter(|m| **m).count()
    }
}

/// Splits `indices` into micro-batches of at most `max_tokens` padded
/// tokens (a longer sequence gets a micro-batch of its own). Order within
/// the result is by decreasing length, which is deterministic for a given
/// input (ties keep the input order).
pub fn micro_batches(lengths: &[usize], indices: &[usize], max_tokens: usize) -> Vec<Vec<usize>> {
    let mut sorted = indices.to_vec();
    sorted.sort_by(|a, b| lengths[*b].cmp(&lengths[*a]));
    let mut out: Vec<Vec<usize>> = Vec::new();
    let mut current: Vec<usize> = Vec::new();
    let mut longest = 0;
    for i in sorted {
        let len = lengths[i];
        let width = longest.max(len);
        if !current.is_empty() && width * (current.len() + 1) > max_tokens {
            out.push(std::mem::take(&mut current));
            longest = 0;
        }
        longest = longest.max(len);
        current.push(i);
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

/// Left-padded tensors for a micro-batch: ids `[b, t]` (i64), attention
/// mask `[b, t]` (i64, 0 on padding), target mask `[b, t]` (bool).
pub struct Padded {
    pub ids: Tensor,
    pub attention: Tensor,
    pub targets: Tensor,
    /// Target tokens per row, in row order.
    pub targets_per_row: Vec<i64>,
    /// Real (non-padding) tokens in the micro-batch.
    pub tokens: usize,
    /// Whether any row is padded (no attention mask needed otherwise).
    pub padded: bool,
}

pub fn pad(seqs: &[&Sequence], pad_id: u32, device: Device) -> Padded {
    let width = seqs.iter().map(|s| s.len()).max().unwrap_or(0);
    let b = seqs.len();
    let mut ids = vec![i64::from(pad_id); b * width];
    let mut attention = vec![0i64; b * width];
    let mut targets = vec![false; b * width];
    let mut targets_per_row = Vec::with_capacity(b);
    let mut tokens = 0;
    for (r, s) in seqs.iter().enumerate() {
        let off = r * width + (width - s.len());
        for (j, (&id, &m)) in s.ids.iter().zip(&s.mask).enumerate() {
            ids[off + j] = i64::from(id);
            attention[off + j] = 1;
            // Token 0 of a row has no prefix to be predicted from.
            targets[off + j] = m && j > 0;
        }
        targets_per_row.push(s.targets() as i64);
        tokens += s.len();
    }
    let shape = [b as i64, width as i64];
    Padded {
        ids: Tensor::from_slice(&ids).view(shape).to_device(device),
        attention: Tensor::from_slice(&attention).view(shape).to_device(device),
        targets: Tensor::from_slice(&targets).view(shape).to_device(device),
        targets_per_row,
        tokens,
        padded: seqs.iter().any(|s| s.len() < width),
    }
}

/// A full-vocabulary entropy per row of `logits` `[n, v]` (f32 math).
pub fn entropy(logits: &Tensor) -> Tensor {
    let logp = logits.to_kind(Kind::Float).log_softmax(-1, Kind::Float);
    -(logp.exp() * &logp).sum_dim_intlist(-1, false, Kind::Float)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_by_length_within_budget() {
        let lengths = [10, 100, 12, 95, 11, 300];
        let all: Vec<usize> = (0..6).collect();
        let mb = micro_batches(&lengths, &all, 200);
        assert_eq!(mb, vec![vec![5], vec![1, 3], vec![2, 4, 0]]);
        for m in &mb {
            let w = m.iter().map(|i| lengths[*i]).max().unwrap_or(0);
            assert!(w * m.len() <= 200 || m.len() == 1);
        }
    }

    #[test]
    fn pads_on_the_left_and_masks_targets() {
        let a = Sequence {
            ids: vec![1, 2, 3],
            mask: vec![true, false, true],
        };
        let b = Sequence {
            ids: vec![4],
            mask: vec![true],
        };
        let p = pad(&[&a, &b], 0, Device::Cpu);
        assert_eq!(
            Vec::<i64>::try_from(p.ids.view([-1])).expect("ids"),
            vec![1, 2, 3, 0, 0, 4]
        );
        assert_eq!(
            Vec::<bool>::try_from(p.targets.view([-1])).expect("t"),
            vec![false, false, true, false, false, false]
        );
        assert_eq!(p.targets_per_row, vec![1, 0]);
        assert_eq!((p.tokens, p.padded), (4, true));
    }
}
