//! GRPO's rollouts from real tau2 episodes: [`crate::grpo::RolloutSource`]
//! over [`crate::rollout::run_rollouts`] (batched episodes of the current
//! policy against the scripted or LLM user, scored by the evaluator).

use tau2_bench::domains::LoadedDomain;
use tau2_chat::ChatTokenizer;
use tau2_model::Qwen3;

use crate::grpo::{RolloutSource, TaskRef};
use crate::policy::ModelGenerator;
use crate::rollout::{RolloutConfig, RolloutJob, RolloutStats, UserSimulator, run_rollouts};
use crate::trajectory::Trajectory;

/// Episodes of the training tasks with the policy being trained.
pub struct EpisodeRollouts<'a> {
    pub runtime: &'a tokio::runtime::Runtime,
    pub domains: &'a [LoadedDomain],
    pub chat: &'a ChatTokenizer,
    pub user: &'a UserSimulator,
    /// Its seed is replaced by each step's seed.
    pub config: RolloutConfig,
    /// Throughput of the latest rollout.
    pub last: Option<RolloutStats>,
}

impl<'a> EpisodeRollouts<'a> {
    pub fn new(
        runtime: &'a tokio::runtime::Runtime,
        domains: &'a [LoadedDomain],
        chat: &'a ChatTokenizer,
        user: &'a UserSimulator,
        config: RolloutConfig,
    ) -> Self {
        Self {
            runtime,
            domains,
            chat,
            user,
            config,
            last: None,
        }
    }

    /// Every task of `split` in the loaded domains, as GRPO's task list.
    pub fn tasks(
        &self,
        split: tau2_api::bench::Split,
    ) -> Result<Vec<TaskRef>, crate::eval::EvalError> {
        let mut out = Vec::new();
        for d in self.domains {
            for t in crate::eval::split_tasks(d, split, None)? {
                out.push(TaskRef {
                    domain: d.domain,
                    task_id: t.id.clone(),
                });
            }
        }
        Ok(out)
    }
}

impl RolloutSource for EpisodeRollouts<'_> {
    fn rollout(
        &mut self,
        policy: &Qwen3,
        tasks: &[TaskRef],
        samples: usize,
        seed: u64,
    ) -> Result<Vec<Trajectory>, String> {
        let samples = u32::try_from(samples).map_err(|e| e.to_string())?;
        let mut jobs = Vec::new();
        for t in tasks {
            let domain = self
                .domains
                .iter()
                .find(|d| d.domain == t.domain)
                .ok_or_else(|| format!("domain {} is not loaded", t.domain))?;
            let task = domain
                .tasks
                .tasks
                .iter()
                .find(|x| x.id == t.task_id)
                .ok_or_else(|| format!("no task {} in {}", t.task_id, t.domain))?;
            jobs.extend(RolloutJob::per_task(domain, &[task], samples));
        }
        let config = RolloutConfig {
            seed,
            ..self.config.clone()
        };
        let mut generator =
            ModelGenerator::new(policy, self.chat, &config.policy).map_err(|e| e.to_string())?;
        let (outcomes, stats) = run_rollouts(
            self.runtime,
            &jobs,
            self.chat,
            &mut generator,
            self.user,
            &config,
            None,
        )
        .map_err(|e| e.to_string())?;
        self.last = Some(stats);
        Ok(outcomes.into_iter().map(|o| o.trajectory).collect())
    }
}
