//! `tau2-worker`: runs the phases of a Tau2Pipeline, and the tau2-bench tools
//! around them (listing tasks, gold replay, episodes against endpoints).

mod cli;

use clap::{Parser, Subcommand};

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
    CheckConfig(cli::config::CheckConfig),
    /// Supervised fine-tuning on conversations (JSONL: messages + tools).
    Sft(cli::sft::SftArgs),
    /// tau2-bench: domains, tasks, gold replay, episodes.
    #[command(subcommand)]
    Tau2(cli::tau2::Tau2Command),
    /// Create a tiny random Qwen3 (real architecture and tokenizer) for tests and demos.
    InitModel(cli::init_model::InitModel),
    /// Serve a checkpoint on an OpenAI-compatible API (/v1/chat/completions, /v1/models).
    Serve(cli::serve::Serve),
    /// Evaluate a checkpoint: N samples per task, pass@k and pass^k, results.json.
    Eval(Box<cli::eval::EvalArgs>),
    /// RFT: N episodes per training task, keep the good ones, fine-tune on them.
    Rft(Box<cli::rft::RftArgs>),
    /// GRPO on tau2 episodes with the scripted or LLM user simulator.
    Grpo(Box<cli::grpo::GrpoArgs>),
    /// Run SFT -> RFT -> GRPO -> eval on this machine from flags (the embedded tiny model).
    Pipeline(cli::pipeline::PipelineArgs),
    /// Run a Tau2Pipeline manifest's enabled phases on this machine, as the operator would.
    Run(cli::run::RunArgs),
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    match Cli::parse().command {
        Command::ConfigSchema => cli::config::print_schema(),
        Command::CheckConfig(args) => cli::config::check(args),
        Command::Sft(args) => cli::sft::run(args),
        Command::Tau2(cmd) => cli::tau2::run(cmd),
        Command::InitModel(args) => cli::init_model::run(args),
        Command::Serve(args) => cli::serve::run(args),
        Command::Eval(args) => cli::eval::run(*args),
        Command::Rft(args) => cli::rft::run(*args),
        Command::Grpo(args) => cli::grpo::run(*args),
        Command::Pipeline(args) => cli::pipeline::run(args),
        Command::Run(args) => cli::run::run(args),
    }
}
