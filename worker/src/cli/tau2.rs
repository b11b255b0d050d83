//! `tau2-worker tau2 …`: list domains and tasks, replay gold actions and
//! print rewards, and run episodes of an agent endpoint against a user
//! (endpoint or scripted), writing trajectories and rewards as JSON lines.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, bail};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{Value, json};
use tau2_api::bench::{DataVersion, Domain, Split};
use tau2_bench::chat::Sampling;
use tau2_bench::data::DataDir;
use tau2_bench::domains::LoadedDomain;
use tau2_bench::evaluator::{NlJudge, evaluate};
use tau2_bench::gold;
use tau2_bench::http::{EndpointConfig, OpenAiClient};
use tau2_bench::judge::LlmJudge;
use tau2_bench::orchestrator::{Limits, run_episode};
use tau2_bench::participants::{LlmAgent, LlmUser, ScriptedUser};
use tau2_bench::task::Task;

#[derive(clap::Subcommand)]
pub enum Tau2Command {
    /// List the domains with their task counts and splits.
    Domains(DataArgs),
    /// List a domain's tasks.
    Tasks {
        #[command(flatten)]
        data: DataArgs,
        #[arg(long, value_parser = parse_domain)]
        domain: Domain,
        /// Only this split's tasks.
        #[arg(long, value_parser = parse_split)]
        split: Option<Split>,
    },
    /// Play each task's gold actions, score them with the evaluator, print the rewards.
    Replay {
        #[command(flatten)]
        data: DataArgs,
        /// Domains to replay (all four when omitted).
        #[arg(long, value_parser = parse_domain, value_delimiter = ',')]
        domain: Vec<Domain>,
        #[arg(long, value_parser = parse_split)]
        split: Option<Split>,
        /// Also write each replay (task, reward, reward_info, messages) as a JSON line here.
        #[arg(long)]
        output: Option<PathBuf>,
        #[command(flatten)]
        judge: JudgeArgs,
    },
    /// Run episodes of an agent endpoint against a user simulator.
    Run(Box<RunArgs>),
}

#[derive(clap::Args)]
pub struct DataArgs {
    /// tau2-bench data directory.
    #[arg(long = "data", env = "TAU2_DATA_DIR", default_value = "/opt/tau2")]
    dir: PathBuf,
    /// Which tau2-bench data and semantics: recipe (commit 337326e) or latest.
    #[arg(long, default_value = "recipe", value_parser = parse_version)]
    data_version: DataVersion,
}

/// The LLM that grades NL assertions (needed where a task's reward basis
/// includes NL_ASSERTION, e.g. retail in the newest data).
#[derive(clap::Args)]
pub struct JudgeArgs {
    /// The judge's OpenAI-compatible base URL; without it such tasks fail to score.
    #[arg(long)]
    judge_endpoint: Option<String>,
    /// The official default judge.
    #[arg(long, default_value = "gpt-4o-mini")]
    judge_model: String,
    /// Environment variable holding the judge endpoint's API key.
    #[arg(long)]
    judge_api_key_env: Option<String>,
}

impl JudgeArgs {
    /// The judge, blocking on `runtime` (call it from outside async tasks).
    fn build(
        &self,
        runtime: tokio::runtime::Handle,
    ) -> anyhow::Result<Option<Arc<LlmJudge<OpenAiClient>>>> {
        let Some(url) = &self.judge_endpoint else {
            return Ok(None);
        };
        // It samples at temperature 0, as the official judge does.
        let model = endpoint(url, &self.judge_model, self.judge_api_key_env.as_deref())?;
        Ok(Some(Arc::new(LlmJudge::new(model, runtime))))
    }
}

impl DataArgs {
    fn dir(&self) -> DataDir {
        DataDir::new(&self.dir, self.data_version)
    }
}

#[derive(clap::Args)]
pub struct RunArgs {
    #[command(flatten)]
    data: DataArgs,
    #[arg(long, value_parser = parse_domain)]
    domain: Domain,
    #[arg(long, value_parser = parse_split, default_value = "test")]
    split: Split,
    /// Only these task ids.
    #[arg(long, value_delimiter = ',')]
    task_ids: Vec<String>,
    /// Episodes per task.
    #[arg(long, default_value_t = 1)]
    trials: u32,
    /// The agent: an OpenAI-compatible base URL, e.g. http://localhost:30000/v1.
    #[arg(long)]
    agent_endpoint: String,
    #[arg(long)]
    agent_model: String,
    /// Environment variable holding the agent endpoint's API key.
    #[arg(long)]
    agent_api_key_env: Option<String>,
    #[arg(long, default_value_t = 0.0)]
    agent_temperature: f64,
    /// The user simulator's base URL; without it the scripted user plays.
    #[arg(long)]
    user_endpoint: Option<String>,
    #[arg(long, default_value = "gpt-4.1-mini")]
    user_model: String,
    /// Environment variable holding the user endpoint's API key.
    #[arg(long)]
    user_api_key_env: Option<String>,
    #[arg(long, default_value_t = 0.7)]
    user_temperature: f64,
    #[arg(long, default_value_t = 100)]
    max_steps: u32,
    #[arg(long, default_value_t = 10)]
    max_errors: u32,
    /// Episodes run at the same time.
    #[arg(long, default_value_t = 4)]
    concurrency: usize,
    /// Where to write one JSON line per episode.
    #[arg(long)]
    output: PathBuf,
    #[command(flatten)]
    judge: JudgeArgs,
}

pub(crate) fn parse_domain(s: &str) -> Result<Domain, String> {
    Domain::ALL
        .into_iter()
        .find(|d| d.as_str() == s)
        .ok_or_else(|| format!("unknown domain {s:?}; expected mock, airline, retail or telecom"))
}

pub(crate) fn parse_split(s: &str) -> Result<Split, String> {
    [
        Split::Train,
        Split::Test,
        Split::Base,
        Split::Small,
        Split::Full,
    ]
    .into_iter()
    .find(|x| x.as_str() == s)
    .ok_or_else(|| format!("unknown split {s:?}; expected train, test, base, small or full"))
}

pub(crate) fn parse_version(s: &str) -> Result<DataVersion, String> {
    match s {
        "recipe" | "recipe-337326e" | "Recipe337326e" => Ok(DataVersion::Recipe337326e),
        "latest" | "Latest" => Ok(DataVersion::Latest),
        _ => Err(format!(
            "unknown data version {s:?}; expected recipe or latest"
        )),
    }
}

pub fn run(cmd: Tau2Command) -> anyhow::Result<()> {
    match cmd {
        Tau2Command::Domains(data) => domains(&data),
        Tau2Command::Tasks {
            data,
            domain,
            split,
        } => tasks(&data, domain, split),
        Tau2Command::Replay {
            data,
            domain,
            split,
            output,
            judge,
        } => replay(&data, domain, split, output, &judge),
        Tau2Command::Run(args) => tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .context("starting the async runtime")?
            .block_on(run_episodes(*args)),
    }
}

fn load(data: &DataArgs, domain: Domain) -> anyhow::Result<LoadedDomain> {
    LoadedDomain::load(&data.dir(), domain).with_context(|| format!("loading the {domain} domain"))
}

fn select(loaded: &LoadedDomain, split: Option<Split>) -> anyhow::Result<Vec<&Task>> {
    match split {
        Some(split) => loaded.tasks.split(split).map_err(anyhow::Error::msg),
        None => Ok(loaded.tasks.tasks.iter().collect()),
    }
}

fn domains(data: &DataArgs) -> anyhow::Result<()> {
    for domain in Domain::ALL {
        match load(data, domain) {
            Ok(loaded) => {
                let mut splits: Vec<String> = loaded
                    .tasks
                    .splits
                    .iter()
                    .map(|(name, ids)| format!("{name} {}", ids.len()))
                    .collect();
                splits.sort();
                let env = loaded.environment();
                println!(
                    "{:<8} {:>5} tasks  {:>2} agent tools  {:>2} user tools  splits: {}",
                    domain.as_str(),
                    loaded.tasks.tasks.len(),
                    env.tools().len(),
                    env.user_tools().map_or(0, <[_]>::len),
                    splits.join(", ")
                );
            }
            Err(e) => println!("{:<8} unavailable: {e:#}", domain.as_str()),
        }
    }
    Ok(())
}

fn tasks(data: &DataArgs, domain: Domain, split: Option<Split>) -> anyhow::Result<()> {
    let loaded = load(data, domain)?;
    for task in select(&loaded, split)? {
        let purpose = task
            .description
            .as_ref()
            .and_then(|d| d.purpose.as_deref())
            .unwrap_or_default()
            .replace('\n', " ");
        println!("{}\t{}", task.id, purpose);
    }
    Ok(())
}

fn progress(len: usize, what: &str) -> ProgressBar {
    let bar = ProgressBar::new(len as u64);
    bar.set_style(
        ProgressStyle::with_template("{msg:>10} [{bar:40}] {pos}/{len} {per_sec} eta {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar.set_message(what.to_string());
    bar
}

fn replay(
    data: &DataArgs,
    domains: Vec<Domain>,
    split: Option<Split>,
    output: Option<PathBuf>,
    judge: &JudgeArgs,
) -> anyhow::Result<()> {
    // The judge's HTTP calls need a runtime; replay itself is synchronous.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let judge = judge.build(runtime.handle().clone())?;
    let domains = if domains.is_empty() {
        Domain::ALL.to_vec()
    } else {
        domains
    };
    let mut out = match &output {
        Some(path) => Some(std::io::BufWriter::new(
            std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?,
        )),
        None => None,
    };
    for domain in domains {
        let loaded = load(data, domain)?;
        let tasks = select(&loaded, split)?;
        let bar = progress(tasks.len(), domain.as_str());
        let started = std::time::Instant::now();
        let (mut successes, mut total_reward) = (0usize, 0.0);
        for task in &tasks {
            let replayed =
                gold::replay_judged(&loaded, task, judge.as_deref().map(|j| j as &dyn NlJudge))?;
            total_reward += replayed.reward_info.reward;
            successes += usize::from(replayed.reward_info.is_success());
            if let Some(out) = out.as_mut() {
                let line = json!({
                    "domain": domain.as_str(),
                    "task_id": replayed.task_id,
                    "reward": replayed.reward_info.reward,
                    "reward_info": replayed.reward_info,
                    "messages": replayed.messages,
                });
                writeln!(out, "{line}")?;
            }
            bar.inc(1);
        }
        bar.finish_and_clear();
        let n = tasks.len().max(1);
        println!(
            "{:<8} {} tasks: {successes} with reward 1, mean reward {:.3}, {:.1} episodes/s",
            domain.as_str(),
            tasks.len(),
            total_reward / n as f64,
            tasks.len() as f64 / started.elapsed().as_secs_f64().max(1e-9)
        );
    }
    if let Some(mut out) = out {
        out.flush()?;
    }
    Ok(())
}

fn endpoint(url: &str, model: &str, key_env: Option<&str>) -> anyhow::Result<OpenAiClient> {
    let mut config = EndpointConfig::new(url, model);
    if let Some(var) = key_env {
        config.api_key =
            Some(std::env::var(var).with_context(|| format!("reading the API key from ${var}"))?);
    }
    Ok(OpenAiClient::new(config)?)
}

async fn run_episodes(args: RunArgs) -> anyhow::Result<()> {
    let loaded = Arc::new(load(&args.data, args.domain)?);
    let mut selected: Vec<Task> = select(&loaded, Some(args.split))?
        .into_iter()
        .cloned()
        .collect();
    if !args.task_ids.is_empty() {
        selected.retain(|t| args.task_ids.contains(&t.id));
        if selected.len() != args.task_ids.len() {
            bail!(
                "some of --task-ids are not in the {} split of {}",
                args.split,
                args.domain
            );
        }
    }
    let agent_model = endpoint(
        &args.agent_endpoint,
        &args.agent_model,
        args.agent_api_key_env.as_deref(),
    )?;
    let user_model = match &args.user_endpoint {
        Some(url) => Some(endpoint(
            url,
            &args.user_model,
            args.user_api_key_env.as_deref(),
        )?),
        None => None,
    };
    let guidelines_file = if loaded.environment().user_tools().is_some() {
        "simulation_guidelines_tools.md"
    } else {
        "simulation_guidelines.md"
    };
    let guidelines: Arc<str> =
        tau2_bench::data::read_text(&args.data.dir().user_simulator_file(guidelines_file))?.into();
    let judge = args.judge.build(tokio::runtime::Handle::current())?;
    let limits = Limits {
        max_steps: args.max_steps,
        max_errors: args.max_errors,
    };

    let jobs: Vec<(Task, u32)> = selected
        .into_iter()
        .flat_map(|t| (0..args.trials).map(move |trial| (t.clone(), trial)))
        .collect();
    let bar = progress(jobs.len(), args.domain.as_str());
    let semaphore = Arc::new(tokio::sync::Semaphore::new(args.concurrency.max(1)));
    let mut running = tokio::task::JoinSet::new();
    for (task, trial) in jobs {
        let permit = semaphore.clone().acquire_owned().await?;
        let (loaded, agent_model, user_model, guidelines, judge) = (
            loaded.clone(),
            agent_model.clone(),
            user_model.clone(),
            guidelines.clone(),
            judge.clone(),
        );
        let (agent_t, user_t) = (args.agent_temperature, args.user_temperature);
        running.spawn(async move {
            let _permit = permit;
            let mut env = loaded.environment();
            let tools: Vec<Value> = env.tools().iter().map(|t| t.openai_schema()).collect();
            let user_tools: Vec<Value> = env
                .user_tools()
                .into_iter()
                .flatten()
                .map(|t| t.openai_schema())
                .collect();
            let mut agent = LlmAgent::new(
                agent_model,
                &loaded.policy,
                tools,
                Sampling {
                    temperature: agent_t,
                    ..Default::default()
                },
            );
            let episode = match user_model {
                Some(model) => {
                    let sampling = Sampling {
                        temperature: user_t,
                        ..Default::default()
                    };
                    let mut user = LlmUser::new(model, &guidelines, &task, user_tools, sampling);
                    run_episode(&mut env, &task, &mut agent, &mut user, limits).await
                }
                None => {
                    run_episode(
                        &mut env,
                        &task,
                        &mut agent,
                        &mut ScriptedUser::new(&task),
                        limits,
                    )
                    .await
                }
            };
            let ep = match episode {
                Ok(ep) => ep,
                Err(e) => {
                    return json!({"task_id": task.id, "trial": trial, "error": e.to_string()});
                }
            };
            // The judge blocks on the runtime: evaluate on a blocking thread.
            let scored = tokio::task::spawn_blocking(move || {
                let judge = judge.as_deref().map(|j| j as &dyn NlJudge);
                let info = evaluate(&loaded, &task, &ep.messages, ep.termination, judge);
                (task, ep, info)
            })
            .await;
            match scored {
                Ok((task, ep, info)) => match info {
                    Ok(info) => {
                        json!({"task_id": task.id, "trial": trial, "termination": ep.termination,
                        "reward": info.reward, "reward_info": info, "messages": ep.messages})
                    }
                    Err(e) => {
                        json!({"task_id": task.id, "trial": trial, "termination": ep.termination,
                        "error": e.to_string(), "messages": ep.messages})
                    }
                },
                Err(e) => json!({"trial": trial, "error": format!("evaluation panicked: {e}")}),
            }
        });
        while let Some(done) = running.try_join_next() {
            write_episode(&args.output, done?, &bar)?;
        }
    }
    while let Some(done) = running.join_next().await {
        write_episode(&args.output, done?, &bar)?;
    }
    bar.finish_and_clear();
    summarize(&args.output)
}

fn write_episode(path: &std::path::Path, line: Value, bar: &ProgressBar) -> anyhow::Result<()> {
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("opening {}", path.display()))?;
    writeln!(file, "{line}")?;
    bar.inc(1);
    Ok(())
}

fn summarize(path: &std::path::Path) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(path)?;
    let (mut n, mut ok, mut errors, mut reward) = (0usize, 0usize, 0usize, 0.0);
    for line in text.lines() {
        let v: Value = serde_json::from_str(line)?;
        n += 1;
        if v.get("error").is_some() {
            errors += 1;
            continue;
        }
        let r = v["reward"].as_f64().unwrap_or(0.0);
        reward += r;
        ok += usize::from((r - 1.0).abs() < 1e-6);
    }
    println!(
        "{n} episodes: {ok} succeeded, {errors} failed to run, mean reward {:.3} -> {}",
        reward / n.max(1) as f64,
        path.display()
    );
    Ok(())
}
