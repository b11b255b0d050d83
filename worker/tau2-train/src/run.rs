//! The parts of a training loop shared by SFT and GRPO: resuming from the
//! latest complete checkpoint, recording a step, saving on schedule, and
//! finishing with `final/`.

use std::collections::BTreeMap;
use std::path::PathBuf;

use tau2_model::Qwen3;

use crate::checkpoint::{Checkpoints, StepRecord, TrainState};
use crate::error::{Result, TrainError};
use crate::optim::AdamW;
use crate::progress::Observer;

/// Where a run (re)starts.
pub(crate) fn begin(
    model: &Qwen3,
    optimizer: &mut AdamW,
    checkpoints: &Checkpoints,
    fresh: TrainState,
) -> Result<(TrainState, Option<u64>)> {
    let Some(found) = checkpoints.latest()? else {
        return Ok((fresh, None));
    };
    let s = &found.state;
    // A checkpoint of another configuration would not continue this run.
    if s.phase != fresh.phase || s.total_steps != fresh.total_steps || s.seed != fresh.seed {
        return Err(TrainError::checkpoint(
            &found.dir,
            format!(
                "written by another configuration (phase {}, {} steps, seed {}; now {}, {}, {}): \
                 use a fresh output directory",
                s.phase, s.total_steps, s.seed, fresh.phase, fresh.total_steps, fresh.seed
            ),
        ));
    }
    checkpoints.restore(&found, model, optimizer)?;
    tracing::info!(dir = %found.dir.display(), step = s.step, "resumed");
    let step = s.step;
    Ok((found.state, Some(step)))
}

/// Records a finished step: history (deterministic metrics only, so that
/// resumed and uninterrupted runs compare equal), progress (with timing
/// metrics too) and, every `save_every` steps, a checkpoint.
#[allow(clippy::too_many_arguments)]
pub(crate) fn end_step(
    model: &Qwen3,
    optimizer: &AdamW,
    checkpoints: &Checkpoints,
    state: &mut TrainState,
    observer: &mut dyn Observer,
    metrics: BTreeMap<String, f64>,
    timing: &BTreeMap<String, f64>,
    save_every: u64,
) -> Result<()> {
    let mut all = metrics.clone();
    all.extend(timing.iter().map(|(k, v)| (k.clone(), *v)));
    state.history.push(StepRecord {
        step: state.step,
        metrics: metrics.into_iter().filter(|(_, v)| v.is_finite()).collect(),
    });
    observer.step(state.step, state.total_steps, &all);
    if save_every > 0 && state.step.is_multiple_of(save_every) && state.step < state.total_steps {
        let dir = checkpoints.save(model, optimizer, state)?;
        observer.checkpoint(state.step, &checkpoints.report_path(&dir), false);
    }
    Ok(())
}

pub(crate) fn finish(
    model: &Qwen3,
    checkpoints: &Checkpoints,
    state: &TrainState,
    observer: &mut dyn Observer,
) -> Result<PathBuf> {
    let dir = checkpoints.save_final(model, state)?;
    observer.checkpoint(state.step, &checkpoints.report_path(&dir), true);
    Ok(dir)
}
