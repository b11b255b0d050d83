//! What `eval` and `rft` share: the phase configuration or local flags, the
//! model and tokenizer, the user simulator, and the rollout settings.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, bail};
use tau2_api::bench::{DataVersion, Domain};
use tau2_api::job::{Dtype, ENV_PHASE_CONFIG, ENV_USER_SIM_API_KEY, PhaseJob};
use tau2_api::user_sim::{UserSimulator as UserSimSpec, UserSimulatorMode};
use tau2_bench::chat::Sampling;
use tau2_bench::data::DataDir;
use tau2_bench::http::{EndpointConfig, OpenAiClient};
use tau2_chat::ChatTokenizer;
use tau2_model::Qwen3;
use tau2_model::tch::{Device, Kind};
use tau2_train::rollout::{LlmUserConfig, UserSimulator};

/// Flags common to the sampling phases. With `--config` the phase
/// configuration decides; the flags fill in or override for local runs.
#[derive(clap::Args, Clone)]
pub struct RolloutArgs {
    /// The phase configuration file (the operator mounts it and sets TAU2_PHASE_CONFIG).
    #[arg(long, env = ENV_PHASE_CONFIG)]
    pub config: Option<PathBuf>,
    /// The checkpoint to sample from (HF layout); overrides the configuration's `model.init`.
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Directory with tokenizer.json and tokenizer_config.json (default: the model directory).
    #[arg(long)]
    pub tokenizer: Option<PathBuf>,
    /// A chat template file overriding the tokenizer's.
    #[arg(long)]
    pub chat_template: Option<PathBuf>,
    /// tau2-bench data directory (without --config).
    #[arg(long, env = "TAU2_DATA_DIR", default_value = "/opt/tau2")]
    pub data: PathBuf,
    /// recipe (commit 337326e) or latest (without --config).
    #[arg(long, default_value = "recipe", value_parser = parse_version)]
    pub data_version: DataVersion,
    /// Domains, comma-separated (without --config).
    #[arg(long, value_delimiter = ',', value_parser = parse_domain, default_value = "mock")]
    pub domain: Vec<Domain>,
    /// The output directory; overrides the configuration's `outputDir`.
    #[arg(long)]
    pub output: Option<PathBuf>,
    #[arg(long)]
    pub temperature: Option<f64>,
    #[arg(long)]
    pub top_p: Option<f64>,
    #[arg(long)]
    pub top_k: Option<i32>,
    #[arg(long)]
    pub max_new_tokens: Option<i32>,
    #[arg(long)]
    pub max_steps: Option<i32>,
    /// Most tokens of context (default: the model's max_position_embeddings).
    #[arg(long)]
    pub max_context: Option<usize>,
    /// Most episodes in flight (the generation batch).
    #[arg(long, default_value_t = 16)]
    pub concurrency: usize,
    /// Overrides the configuration's seed.
    #[arg(long)]
    pub seed: Option<u64>,
    /// The user simulator's base URL (without --config; the scripted user otherwise).
    #[arg(long)]
    pub user_endpoint: Option<String>,
    #[arg(long, default_value = "gpt-4.1-mini")]
    pub user_model: String,
    /// cpu, cuda, or auto (cuda when available).
    #[arg(long, default_value = "auto")]
    pub device: String,
    /// libtorch CPU threads (0: libtorch's default).
    #[arg(long, default_value_t = 0)]
    pub threads: i32,
}

pub(crate) use super::tau2::parse_split;
use super::tau2::{parse_domain, parse_version};

/// The configuration file, if given, read and checked to be for `phase`.
pub fn read_job(
    args: &RolloutArgs,
    phase: tau2_api::phases::PhaseName,
) -> anyhow::Result<Option<PhaseJob>> {
    let Some(path) = &args.config else {
        return Ok(None);
    };
    let job = PhaseJob::read(path)?;
    if job.phase() != phase {
        bail!(
            "{} configures the {} phase, not {phase}",
            path.display(),
            job.phase()
        );
    }
    Ok(Some(job))
}

/// The phase contract before loading: the base model created or checked
/// (`builtin://tiny`), the initial checkpoint present.
pub fn ensure_model(args: &RolloutArgs, job: &PhaseJob) -> anyhow::Result<()> {
    if args.model.is_some() {
        return Ok(());
    }
    let opts = super::phase::RunOptions {
        bars: false,
        tokenizer_dir: args.tokenizer.clone(),
    };
    super::phase::ensure_base(job, &opts)
}

/// The model, tokenizer and device.
pub struct Loaded {
    pub model: Qwen3,
    pub chat: ChatTokenizer,
    pub max_context: usize,
}

fn device(name: &str) -> anyhow::Result<Device> {
    match name {
        "cpu" => Ok(Device::Cpu),
        "cuda" => Ok(Device::Cuda(0)),
        "auto" => Ok(Device::cuda_if_available()),
        other => bail!("unknown device {other:?}; expected cpu, cuda or auto"),
    }
}

/// Loads the checkpoint and its tokenizer. On CPU the weights are fp32
/// (bf16 matmuls are slow there); on GPU the configured dtype.
pub fn load_model(args: &RolloutArgs, job: Option<&PhaseJob>) -> anyhow::Result<Loaded> {
    if args.threads > 0 {
        tau2_model::tch::set_num_threads(args.threads);
    }
    let dir = args
        .model
        .clone()
        .or_else(|| job.map(|j| j.model.init.clone()))
        .context("no model: give --model <checkpoint dir> or --config <phase.json>")?;
    let device = device(&args.device)?;
    let kind = match (device, job.map(|j| j.model.dtype)) {
        (Device::Cpu, _) => Kind::Float,
        (_, Some(Dtype::Float32)) => Kind::Float,
        (_, Some(Dtype::Float16)) => Kind::Half,
        _ => Kind::BFloat16,
    };
    let model = Qwen3::load(&dir, device, Some(kind))
        .with_context(|| format!("loading the model from {}", dir.display()))?;
    let tok_dir = args.tokenizer.clone().unwrap_or_else(|| dir.clone());
    let mut chat = ChatTokenizer::from_dir(&tok_dir)
        .with_context(|| format!("loading the tokenizer from {}", tok_dir.display()))?;
    if let Some(path) = &args.chat_template {
        let source = std::fs::read_to_string(path)
            .with_context(|| format!("reading the chat template {}", path.display()))?;
        chat = chat.with_template(source)?;
    }
    let max_context = args
        .max_context
        .unwrap_or(usize::try_from(model.config().max_position_embeddings).unwrap_or(4096));
    Ok(Loaded {
        model,
        chat,
        max_context,
    })
}

/// The data directory and domains.
pub fn data(args: &RolloutArgs, job: Option<&PhaseJob>) -> (DataDir, Vec<Domain>) {
    match job {
        Some(j) => (
            DataDir::new(&j.data.dir, j.data.version),
            j.data.domains.clone(),
        ),
        None => (
            DataDir::new(&args.data, args.data_version),
            args.domain.clone(),
        ),
    }
}

/// Output directory: the flag, else the configuration's.
pub fn output(args: &RolloutArgs, job: Option<&PhaseJob>) -> anyhow::Result<PathBuf> {
    args.output
        .clone()
        .or_else(|| job.map(|j| j.output_dir.clone()))
        .context("no output directory: give --output <dir> or --config <phase.json>")
}

/// The seed: the flag, else the configuration's.
pub fn seed(args: &RolloutArgs, job: Option<&PhaseJob>) -> u64 {
    args.seed
        .or_else(|| job.map(|j| j.seed as u64))
        .unwrap_or(0)
}

/// Applies the sampling flags to a phase's rollout settings.
pub fn override_rollout<D: tau2_api::phases::PhaseDefaults>(
    args: &RolloutArgs,
    rollout: &mut tau2_api::phases::Rollout<D>,
) {
    if let Some(v) = args.temperature {
        rollout.temperature = v;
    }
    if let Some(v) = args.top_p {
        rollout.top_p = v;
    }
    if let Some(v) = args.top_k {
        rollout.top_k = v;
    }
    if let Some(v) = args.max_new_tokens {
        rollout.max_new_tokens = v;
    }
    if let Some(v) = args.max_steps {
        rollout.max_steps = v;
    }
}

fn guidelines(data: &DataDir, file: &str) -> anyhow::Result<Arc<str>> {
    let path = data.user_simulator_file(file);
    Ok(tau2_bench::data::read_text(&path)
        .with_context(|| format!("reading the user guidelines {}", path.display()))?
        .into())
}

/// The user simulator of the configuration, or of the flags.
pub fn user_simulator(
    args: &RolloutArgs,
    job: Option<&PhaseJob>,
    data: &DataDir,
) -> anyhow::Result<UserSimulator> {
    let spec = match job {
        Some(j) => j.user_simulator.clone(),
        None => args.user_endpoint.as_ref().map(|url| UserSimSpec {
            mode: UserSimulatorMode::Endpoint,
            endpoint: Some(url.clone()),
            model: Some(args.user_model.clone()),
            ..UserSimSpec::scripted()
        }),
    };
    let Some(spec) = spec.filter(|s| s.mode == UserSimulatorMode::Endpoint) else {
        return Ok(UserSimulator::Scripted);
    };
    let (Some(url), Some(model)) = (&spec.endpoint, &spec.model) else {
        bail!("the user simulator needs an endpoint and a model in Endpoint mode");
    };
    let mut config = EndpointConfig::new(url, model);
    config.api_key = std::env::var(ENV_USER_SIM_API_KEY)
        .ok()
        .filter(|k| !k.is_empty());
    config.timeout = std::time::Duration::from_secs(spec.request_timeout_seconds.max(1) as u64);
    config.max_retries = spec.max_retries.max(0) as u32;
    Ok(UserSimulator::Llm(Box::new(LlmUserConfig {
        client: OpenAiClient::new(config)?,
        guidelines: guidelines(data, "simulation_guidelines.md")?,
        guidelines_tools: guidelines(data, "simulation_guidelines_tools.md")?,
        sampling: Sampling {
            temperature: spec.temperature,
            top_p: spec.top_p,
            max_tokens: spec.max_tokens.and_then(|t| u32::try_from(t).ok()),
            seed: None,
        },
    })))
}

/// Limits of the orchestrator from a phase's rollout settings.
pub fn limits<D: tau2_api::phases::PhaseDefaults>(
    rollout: &tau2_api::phases::Rollout<D>,
) -> anyhow::Result<tau2_bench::orchestrator::Limits> {
    let positive = |v: i32, what: &str| {
        u32::try_from(v)
            .ok()
            .filter(|&v| v > 0)
            .with_context(|| format!("{what} must be at least 1, got {v}"))
    };
    Ok(tau2_bench::orchestrator::Limits {
        max_steps: positive(rollout.max_steps, "maxSteps")?,
        max_errors: positive(rollout.max_errors, "maxErrors")?,
    })
}

/// Creates `dir` and checks it is writable before hours of sampling.
pub fn prepare_output(dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let probe = dir.join(".write-test");
    std::fs::write(&probe, b"").with_context(|| format!("{} is not writable", dir.display()))?;
    let _ = std::fs::remove_file(probe);
    Ok(())
}
