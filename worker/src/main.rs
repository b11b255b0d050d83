//! `tau2-worker`: runs the phases of a Tau2Pipeline.
//!
//! The phases themselves come with later work; today the worker can describe
//! and check the configuration the operator hands it.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use tau2_api::job::{ENV_PHASE_CONFIG, PhaseJob};

#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print the JSON schema of a phase configuration file.
    ConfigSchema,
    /// Check a phase configuration file and print what it asks for.
    CheckConfig {
        /// The configuration file (the operator mounts it and sets TAU2_PHASE_CONFIG).
        #[arg(long, env = ENV_PHASE_CONFIG)]
        config: PathBuf,
    },
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::ConfigSchema => {
            let schema = schemars::schema_for!(PhaseJob);
            println!("{}", serde_json::to_string_pretty(&schema)?);
        }
        Command::CheckConfig { config } => {
            let job = PhaseJob::read(&config)?;
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
        }
    }
    Ok(())
}
