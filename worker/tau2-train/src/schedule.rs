//! Learning-rate schedules: linear warm-up then cosine / linear decay to 0,
//! or constant (Megatron's `OptimizerParamScheduler` with min_lr 0).
//!
//! Warm-up steps = floor(warmup_ratio × total), as Megatron computes
//! `lr_warmup_steps` from `--lr-warmup-fraction`. One deliberate difference:
//! step s (0-based) of the warm-up uses lr × (s + 1) / warmup, so the first
//! update is not wasted at lr 0 (Megatron's first step has lr 0).

use tau2_api::phases::{LrSchedule, Optimizer, PhaseDefaults};

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Schedule {
    pub kind: LrSchedule,
    pub peak_lr: f64,
    pub warmup_steps: u64,
    pub total_steps: u64,
}

impl Schedule {
    pub fn new(kind: LrSchedule, peak_lr: f64, warmup_ratio: f64, total_steps: u64) -> Self {
        let warmup_steps = ((warmup_ratio * total_steps as f64).floor() as u64).min(total_steps);
        Self {
            kind,
            peak_lr,
            warmup_steps,
            total_steps,
        }
    }

    pub fn from_optimizer<D: PhaseDefaults>(o: &Optimizer<D>, total_steps: u64) -> Self {
        Self::new(o.schedule, o.learning_rate, o.warmup_ratio, total_steps)
    }

    /// The learning rate of optimizer step `step` (0-based).
    pub fn lr(&self, step: u64) -> f64 {
        if step < self.warmup_steps {
            return self.peak_lr * (step + 1) as f64 / self.warmup_steps as f64;
        }
        let decay = self.total_steps.saturating_sub(self.warmup_steps).max(1) as f64;
        let progress = ((step - self.warmup_steps) as f64 / decay).min(1.0);
        match self.kind {
            LrSchedule::Constant => self.peak_lr,
            LrSchedule::Linear => self.peak_lr * (1.0 - progress),
            LrSchedule::Cosine => {
                self.peak_lr * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cosine_with_warmup() {
        // 40 steps, 5% warm-up -> 2 warm-up steps.
        let s = Schedule::new(LrSchedule::Cosine, 1e-5, 0.05, 40);
        assert_eq!(s.warmup_steps, 2);
        assert!((s.lr(0) - 0.5e-5).abs() < 1e-18);
        assert!((s.lr(1) - 1e-5).abs() < 1e-18);
        assert!((s.lr(2) - 1e-5).abs() < 1e-18); // decay starts at the peak
        assert!((s.lr(21) - 0.5e-5).abs() < 1e-12); // half way through the decay
        assert!(s.lr(39) > 0.0 && s.lr(39) < 1e-7);
        let lrs: Vec<f64> = (2..40).map(|i| s.lr(i)).collect();
        assert!(lrs.windows(2).all(|w| w[1] <= w[0]));
    }

    #[test]
    fn constant_and_linear() {
        let c = Schedule::new(LrSchedule::Constant, 1e-6, 0.0, 200);
        assert_eq!((c.lr(0), c.lr(199)), (1e-6, 1e-6));
        let l = Schedule::new(LrSchedule::Linear, 1.0, 0.0, 4);
        assert_eq!(
            (0..4).map(|i| l.lr(i)).collect::<Vec<_>>(),
            vec![1.0, 0.75, 0.5, 0.25]
        );
    }
}
