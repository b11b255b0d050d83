//! The model on its own thread, batching concurrent requests.
//!
//! libtorch work is synchronous and the model is not `Sync`, so one thread
//! owns it and takes jobs from a channel. Jobs that arrive while a batch is
//! running are collected and run together when their sampling settings
//! agree, so throughput grows with concurrency. A job with an explicit seed
//! runs alone: its result then depends only on its own inputs and the seed,
//! as a client that sets `seed` expects.

use std::collections::VecDeque;
use std::sync::mpsc;

use tau2_model::generate::{Generation, SamplingParams, generate};
use tau2_model::qwen3::Qwen3;
use tokio::sync::oneshot;

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("the generation engine has stopped")]
    Stopped,
    #[error("generation failed: {0}")]
    Model(#[from] tau2_model::error::ModelError),
}

struct Job {
    prompt: Vec<i64>,
    /// Rows to sample from the prompt (`n`).
    copies: usize,
    params: SamplingParams,
    seeded: bool,
    reply: oneshot::Sender<Result<Vec<Generation>, EngineError>>,
}

impl Job {
    /// Whether two unseeded jobs can share a batch (one sampler for all rows).
    fn batches_with(&self, other: &Job) -> bool {
        !self.seeded && !other.seeded && {
            let (a, b) = (&self.params, &other.params);
            a.temperature == b.temperature
                && a.top_k == b.top_k
                && a.top_p == b.top_p
                && a.max_new_tokens == b.max_new_tokens
                && a.stop_token_ids == b.stop_token_ids
                && a.vocab_limit == b.vocab_limit
        }
    }
}

/// A handle to the engine thread; cheap to clone.
#[derive(Clone)]
pub struct Engine {
    jobs: mpsc::Sender<Job>,
}

impl Engine {
    /// Starts the engine thread with `model`; at most `max_batch` rows run at once.
    pub fn start(model: Qwen3, max_batch: usize) -> Self {
        let (tx, rx) = mpsc::channel::<Job>();
        let max_batch = max_batch.max(1);
        std::thread::Builder::new()
            .name("tau2-engine".into())
            .spawn(move || run(&model, &rx, max_batch))
            .map_or_else(
                // Without a thread every request fails with `Stopped`.
                |e| tracing::error!(error = %e, "could not start the engine thread"),
                |_| (),
            );
        Self { jobs: tx }
    }

    /// Samples `copies` continuations of `prompt`. With `seeded`, the job runs
    /// alone and `params.seed` makes it reproducible.
    pub async fn generate(
        &self,
        prompt: Vec<i64>,
        copies: usize,
        params: SamplingParams,
        seeded: bool,
    ) -> Result<Vec<Generation>, EngineError> {
        let (reply, rx) = oneshot::channel();
        self.jobs
            .send(Job {
                prompt,
                copies: copies.max(1),
                params,
                seeded,
                reply,
            })
            .map_err(|_| EngineError::Stopped)?;
        rx.await.map_err(|_| EngineError::Stopped)?
    }
}

fn run(model: &Qwen3, rx: &mpsc::Receiver<Job>, max_batch: usize) {
    let mut waiting: VecDeque<Job> = VecDeque::new();
    // Unseeded batches still need a seed; a counter keeps runs reproducible
    // for a given arrival order without sharing state between batches.
    let mut batch_seed: u64 = 0x7a_u64 << 56;
    loop {
        let first = match waiting.pop_front() {
            Some(job) => job,
            None => match rx.recv() {
                Ok(job) => job,
                Err(_) => return, // every handle dropped
            },
        };
        waiting.extend(rx.try_iter());
        let mut batch = vec![first];
        let mut rows = batch[0].copies;
        let mut rest = VecDeque::new();
        while let Some(job) = waiting.pop_front() {
            if rows + job.copies <= max_batch && batch[0].batches_with(&job) {
                rows += job.copies;
                batch.push(job);
            } else {
                rest.push_back(job);
            }
        }
        waiting = rest;

        let mut params = batch[0].params.clone();
        if !batch[0].seeded {
            batch_seed = batch_seed.wrapping_add(1);
            params.seed = batch_seed;
        }
        let prompts: Vec<Vec<i64>> = batch
            .iter()
            .flat_map(|j| std::iter::repeat_n(j.prompt.clone(), j.copies))
            .collect();
        tracing::debug!(jobs = batch.len(), rows = prompts.len(), "generating");
        match generate(model, &prompts, &params) {
            Ok(mut generations) => {
                for job in batch {
                    let rest = generations.split_off(job.copies.min(generations.len()));
                    let mine = std::mem::replace(&mut generations, rest);
                    // The client may have gone away; nothing to do then.
                    let _ = job.reply.send(Ok(mine));
                }
            }
            Err(e) => {
                let message = e.to_string();
                for job in batch {
                    let _ = job.reply.send(Err(EngineError::Model(
                        tau2_model::error::ModelError::Input(message.clone()),
                    )));
                }
            }
        }
    }
}
