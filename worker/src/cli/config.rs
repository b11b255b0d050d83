//! The phase configuration the operator hands a worker.

use std::path::PathBuf;

use anyhow::Context;
use tau2_api::job::{ENV_PHASE_CONFIG, PhaseJob};

#[derive(clap::Args)]
pub struct CheckConfig {
    /// The configuration file (the operator mounts it and sets TAU2_PHASE_CONFIG).
    #[arg(long, env = ENV_PHASE_CONFIG)]
    config: PathBuf,
}

pub fn print_schema() -> anyhow::Result<()> {
    let schema = schemars::schema_for!(PhaseJob);
    println!("{}", serde_json::to_string_pretty(&schema)?);
    Ok(())
}

pub fn check(args: CheckConfig) -> anyhow::Result<()> {
    let job = PhaseJob::read(&args.config)?;
    println!(
        "{phase} for {ns}/{name} (attempt {attempt}): {init} -> {out}",
        phase = job.phase(),
        ns = job.pipeline.namespace,
        name = job.pipeline.name,
        attempt = job.attempt,
        init = job.model.init.display(),
        out = job.output_dir.display(),
    );
    let domains: Vec<String> = job.data.domains.iter().map(ToString::to_string).collect();
    println!(
        "tau2 data {} ({:?}): domains {}, train split {}, eval split {}",
        job.data.dir.display(),
        job.data.version,
        domains.join(", "),
        job.data.train_split,
        job.data.eval_split
    );
    let params = serde_json::to_string(&job.params).context("serialising parameters")?;
    println!("parameters: {params}");
    Ok(())
}
