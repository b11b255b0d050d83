use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use tau2_operator::controller::{self, RunSettings};
use tau2_operator::leader::{self, LeaderSettings};
use tau2_operator::reconcile::Settings;

/// The tau2 operator.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Write the Tau2Pipeline CRD (to crds/ in the repository, or to stdout with `--stdout`).
    Crd {
        /// Directory to write the CRD file into.
        #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/../crds"))]
        out_dir: PathBuf,
        /// Print the CRD instead of writing it.
        #[arg(long)]
        stdout: bool,
    },
    /// Run the operator: reconcile Tau2Pipelines into phase Jobs.
    Run(RunArgs),
}

#[derive(clap::Args)]
struct RunArgs {
    /// Watch only this namespace (default: all).
    #[arg(long, env = "TAU2_WATCH_NAMESPACE")]
    namespace: Option<String>,
    /// The worker image for pipelines that do not name one.
    #[arg(
        long,
        env = "TAU2_WORKER_IMAGE",
        default_value = "ghcr.io/tau2-operator/tau2-worker:latest"
    )]
    worker_image: String,
    /// gRPC address workers report progress to, e.g. http://tau2-operator.tau2-system.svc:9090.
    #[arg(long, env = "TAU2_PROGRESS_ENDPOINT")]
    progress_endpoint: Option<String>,
    /// Wait before retrying a failed phase; doubles with each failure.
    #[arg(long, default_value = "10", value_name = "SECONDS")]
    retry_backoff_seconds: u64,
    /// Longest wait between retries.
    #[arg(long, default_value = "600", value_name = "SECONDS")]
    max_retry_backoff_seconds: u64,
    /// A pod stuck on its image or a missing Secret this long fails its attempt.
    #[arg(long, default_value = "600", value_name = "SECONDS")]
    blocked_timeout_seconds: u64,
    /// Minimum time between two reconciles (and status writes) of one pipeline.
    #[arg(long, default_value = "1000", value_name = "MILLISECONDS")]
    debounce_ms: u64,
    /// Pipelines reconciled at once.
    #[arg(long, default_value = "16")]
    concurrency: u16,
    /// Elect a leader on a Lease (run several replicas); off runs the controller unconditionally.
    #[arg(long, env = "TAU2_LEADER_ELECT", default_value = "true", action = clap::ArgAction::Set)]
    leader_elect: bool,
    #[arg(long, env = "TAU2_LEASE_NAME", default_value = "tau2-operator-leader")]
    lease_name: String,
    /// Namespace of the Lease; the operator's own (POD_NAMESPACE).
    #[arg(long, env = "POD_NAMESPACE", default_value = "tau2-system")]
    lease_namespace: String,
    /// This replica's identity in the Lease and in events.
    #[arg(long, env = "POD_NAME", default_value = "tau2-operator")]
    pod_name: String,
    #[arg(long, default_value = "15", value_name = "SECONDS")]
    lease_duration_seconds: u64,
    #[arg(long, default_value = "10", value_name = "SECONDS")]
    lease_renew_before_seconds: u64,
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Run(args) => {
            tracing_subscriber::fmt()
                .json()
                .with_env_filter(
                    tracing_subscriber::EnvFilter::try_from_default_env()
                        .unwrap_or_else(|_| "info,kube=warn".into()),
                )
                .init();
            tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .context("starting the async runtime")?
                .block_on(run(args))?;
        }
        Command::Crd { out_dir, stdout } => {
            let yaml = tau2_operator::crdgen::crd_yaml().context("serialising the CRD")?;
            if stdout {
                print!("{yaml}");
            } else {
                let path = out_dir.join(tau2_operator::crdgen::CRD_FILE);
                std::fs::write(&path, yaml)
                    .with_context(|| format!("writing {}", path.display()))?;
                eprintln!("wrote {}", path.display());
            }
        }
    }
    Ok(())
}

async fn run(args: RunArgs) -> anyhow::Result<()> {
    let client = kube::Client::try_default()
        .await
        .context("connecting to the Kubernetes API")?;
    let settings = Settings {
        default_image: args.worker_image,
        progress_endpoint: args.progress_endpoint,
        retry_backoff: Duration::from_secs(args.retry_backoff_seconds),
        max_retry_backoff: Duration::from_secs(args.max_retry_backoff_seconds),
        blocked_timeout: Duration::from_secs(args.blocked_timeout_seconds),
    };
    // HOOK for the progress service and metrics (issue 6, items 4 and 5):
    // `.with_progress(store)` and `.with_hooks(metrics)`, the store's
    // notification stream as the triggers below, and the HTTP server reading
    // `leader` for /readyz.
    let ctx = Arc::new(controller::Context::new(
        client.clone(),
        settings,
        &args.pod_name,
    ));
    let run_settings = RunSettings {
        namespace: args.namespace,
        debounce: Duration::from_millis(args.debounce_ms),
        concurrency: args.concurrency,
    };
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown_signal().await;
        tracing::info!("shutting down");
        stop_tx.send_replace(true);
    });
    let leader = if args.leader_elect {
        let mut stop = stop_rx.clone();
        let lease = LeaderSettings {
            lease_duration: Duration::from_secs(args.lease_duration_seconds),
            renew_before: Duration::from_secs(args.lease_renew_before_seconds),
            ..LeaderSettings::new(&args.lease_name, &args.lease_namespace, &args.pod_name)
        };
        let (leader, task) = leader::elect(client, lease, async move {
            controller::stopped(&mut stop).await;
        })
        .await
        .context("starting leader election")?;
        Some((leader, task))
    } else {
        None
    };
    // Without election this replica always leads; the sender lives until the end.
    let (_always, always_rx) = tokio::sync::watch::channel(true);
    let (leader_rx, election) = match leader {
        Some((rx, task)) => (rx, Some(task)),
        None => (always_rx, None),
    };
    controller::run_while_leading(
        ctx,
        run_settings,
        leader_rx,
        futures::stream::pending,
        stop_rx,
    )
    .await?;
    if let Some(task) = election {
        // Releases the lease so a standby takes over at once.
        let _ = task.await;
    }
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(term) => term,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
