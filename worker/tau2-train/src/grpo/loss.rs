//! The policy loss per sequence (recipe §5.5): clipped-ratio policy
//! gradient, k3 KL to the reference and the entropy bonus, each a token
//! mean; pure functions of per-token tensors.

use tau2_api::phases::GrpoParams;
use tch::{Kind, Tensor};

/// Coefficients of the policy loss.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LossConfig {
    pub clip_low: f64,
    pub clip_high: f64,
    pub kl_coef: f64,
    pub entropy_coef: f64,
    pub temperature: f64,
}

impl LossConfig {
    /// The loss coefficients of `p`, sampling at its rollout temperature
    /// (floored, as logits are divided by it).
    pub fn from_params(p: &GrpoParams) -> Self {
        Self {
            clip_low: p.clip_low,
            clip_high: p.clip_high,
            kl_coef: p.kl_coef,
            entropy_coef: p.entropy_coef,
            temperature: p.rollout.temperature.max(1e-3),
        }
    }
}

/// The recipe's coefficients (those of [`GrpoParams::default`]).
impl Default for LossConfig {
    fn default() -> Self {
        Self::from_params(&GrpoParams::default())
    }
}

/// One sequence's loss terms, each a token mean over its policy tokens
/// (scalar tensors; `pg` and `kl` carry gradients, as does `entropy`).
pub struct SeqTerms {
    pub pg: Tensor,
    pub kl: Tensor,
    pub entropy: Tensor,
}

/// §5.5 for one sequence: `logp`, `old`, `reference`, `entropy` are `[n]`
/// over its policy tokens.
pub fn sequence_terms(
    logp: &Tensor,
    old: &Tensor,
    reference: Option<&Tensor>,
    entropy: &Tensor,
    advantage: f64,
    cfg: &LossConfig,
) -> SeqTerms {
    let n = (logp.numel() as f64).max(1.0);
    let ratio = (logp - old).exp();
    let unclipped = -&ratio * advantage;
    let clipped = -ratio.clamp(1.0 - cfg.clip_low, 1.0 + cfg.clip_high) * advantage;
    let pg = unclipped.maximum(&clipped).sum(Kind::Float) / n;
    let kl = match reference {
        Some(r) => {
            let delta = r - logp;
            (delta.exp() - &delta - 1.0)
                .clamp(-10.0, 10.0)
                .sum(Kind::Float)
                / n
        }
        None => Tensor::zeros([], (Kind::Float, logp.device())),
    };
    SeqTerms {
        pg,
        kl,
        entropy: entropy.sum(Kind::Float) / n,
    }
}

/// The per-sample objective: `pg − entropy_coef·H + kl_coef·KL`.
pub fn sample_loss(t: &SeqTerms, cfg: &LossConfig) -> Tensor {
    &t.pg - &t.entropy * cfg.entropy_coef + &t.kl * cfg.kl_coef
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loss_terms_by_hand() {
        let cfg = LossConfig {
            clip_low: 0.2,
            clip_high: 0.28,
            kl_coef: 0.01,
            entropy_coef: 0.001,
            temperature: 1.0,
        };
        // Two tokens: ratios e^0.5 ≈ 1.6487 (clipped at 1.28) and e^-0.5 ≈ 0.6065.
        let logp = Tensor::from_slice(&[-1.0f32, -2.0]);
        let old = Tensor::from_slice(&[-1.5f32, -1.5]);
        let reference = Tensor::from_slice(&[-1.2f32, -1.8]);
        let ent = Tensor::from_slice(&[2.0f32, 4.0]);
        let (r1, r2) = (0.5f64.exp(), (-0.5f64).exp());
        // A = +1: max(-r, -clip(r)) per token.
        let t = sequence_terms(&logp, &old, Some(&reference), &ent, 1.0, &cfg);
        let pg = ((-r1).max(-1.28) + (-r2).max(-0.8)) / 2.0;
        assert!((t.pg.double_value(&[]) - pg).abs() < 1e-6);
        // A = -1: max(r, clip(r)).
        let t2 = sequence_terms(&logp, &old, Some(&reference), &ent, -1.0, &cfg);
        let pg2 = (r1.max(1.28) + r2.max(0.8)) / 2.0;
        assert!((t2.pg.double_value(&[]) - pg2).abs() < 1e-6);
        // k3 with Δ = ref − logp = (-0.2, 0.2).
        let k3 = |d: f64| d.exp() - d - 1.0;
        let kl = (k3(-0.2) + k3(0.2)) / 2.0;
        assert!((t.kl.double_value(&[]) - kl).abs() < 1e-6);
        assert!((t.entropy.double_value(&[]) - 3.0).abs() < 1e-6);
        let total = sample_loss(&t, &cfg).double_value(&[]);
        assert!((total - (pg - 0.001 * 3.0 + 0.01 * kl)).abs() < 1e-6);
    }

    #[test]
    fn ratio_one_gradient_is_minus_advantage_times_score() {
        // With old = logp.detach(), d pg / d logp_t = -A / n for every token.
        let cfg = LossConfig {
            clip_low: 0.2,
            clip_high: 0.28,
            kl_coef: 0.0,
            entropy_coef: 0.0,
            temperature: 1.0,
        };
        let logp = Tensor::from_slice(&[-1.0f32, -2.0, -0.5]).set_requires_grad(true);
        let t = sequence_terms(&logp, &logp.detach(), None, &logp.zeros_like(), 2.0, &cfg);
        t.pg.backward();
        let g = Vec::<f32>::try_from(logp.grad()).expect("grad");
        for x in g {
            assert!((f64::from(x) + 2.0 / 3.0).abs() < 1e-6);
        }
    }
}
