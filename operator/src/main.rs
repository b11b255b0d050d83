use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use tau2_operator::app;
use tau2_operator::controller::RunSettings;
use tau2_operator::leader::LeaderSettings;
use tau2_operator::progress::ServiceConfig;
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
    /// Write the Tau2Pipeline CRD: to crds/ and the Helm chart's crds/ in the
    /// repository, to one directory with `--out-dir`, or to stdout with `--stdout`.
    Crd {
        /// Directory to write the CRD file into (instead of the repository's two).
        #[arg(long)]
        out_dir: Option<PathBuf>,
        /// Print the CRD instead of writing it.
        #[arg(long)]
        stdout: bool,
    },
    /// GET a URL and exit 0 on HTTP 200, 1 otherwise (the image has no curl;
    /// the chart's `helm test` pod uses this on /readyz).
    Probe {
        #[arg(long)]
        url: String,
        #[arg(long, default_value = "10", value_name = "SECONDS")]
        timeout_seconds: u64,
    },
    /// Run the operator: the progress service (gRPC), /metrics, /healthz and
    /// /readyz (HTTP), leader election, and the controller while leading.
    Run(Box<RunArgs>),
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
    /// gRPC address workers report progress to: the progress Service, which
    /// selects the leader's pod, e.g. http://tau2-operator-progress.tau2-system.svc:9090.
    #[arg(long, env = "TAU2_PROGRESS_ENDPOINT")]
    progress_endpoint: Option<String>,
    /// Where the progress service listens.
    #[arg(long, env = "TAU2_GRPC_ADDR", default_value = "0.0.0.0:9090")]
    grpc_addr: SocketAddr,
    /// Where /metrics, /healthz and /readyz are served.
    #[arg(long, env = "TAU2_HTTP_ADDR", default_value = "0.0.0.0:8080")]
    http_addr: SocketAddr,
    /// While leading, label this replica's pod (POD_NAMESPACE/POD_NAME)
    /// tau2.dev/leader=true, so the progress Service routes workers to it.
    #[arg(long, env = "TAU2_LABEL_LEADER_POD", default_value = "true", action = clap::ArgAction::Set)]
    label_leader_pod: bool,
    /// At shutdown, how long open progress streams may take to end.
    #[arg(long, default_value = "5", value_name = "SECONDS")]
    shutdown_grace_seconds: u64,
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
    /// A leader that has not renewed its Lease for this long loses it.
    #[arg(long, default_value = "15", value_name = "SECONDS")]
    lease_duration_seconds: u64,
    /// The leader steps down (stops the controller and the progress writer)
    /// when it could not renew for this long; less than the lease duration.
    #[arg(long, default_value = "10", value_name = "SECONDS")]
    lease_renew_deadline_seconds: u64,
    /// How often the leader renews and a standby tries to take the Lease.
    #[arg(long, default_value = "2000", value_name = "MILLISECONDS")]
    lease_retry_period_ms: u64,
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
                .block_on(run(*args))?;
        }
        Command::Crd { out_dir, stdout } => {
            let yaml = tau2_operator::crdgen::crd_yaml().context("serialising the CRD")?;
            if stdout {
                print!("{yaml}");
                return Ok(());
            }
            let paths = match out_dir {
                Some(dir) => vec![dir.join(tau2_operator::crdgen::CRD_FILE)],
                None => {
                    let root = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/.."));
                    tau2_operator::crdgen::crd_paths(&root).to_vec()
                }
            };
            for path in paths {
                std::fs::write(&path, &yaml)
                    .with_context(|| format!("writing {}", path.display()))?;
                eprintln!("wrote {}", path.display());
            }
        }
        Command::Probe {
            url,
            timeout_seconds,
        } => {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("starting the async runtime")?;
            let timeout = Duration::from_secs(timeout_seconds);
            match runtime.block_on(tau2_operator::probe::probe(&url, timeout)) {
                Ok(body) => println!("{url}: HTTP 200 {body}"),
                Err(error) => {
                    eprintln!("probe failed: {error}");
                    std::process::exit(1);
                }
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
    let election = args.leader_elect.then(|| LeaderSettings {
        lease_duration: Duration::from_secs(args.lease_duration_seconds),
        renew_deadline: Duration::from_secs(args.lease_renew_deadline_seconds),
        retry_period: Duration::from_millis(args.lease_retry_period_ms),
        ..LeaderSettings::new(&args.lease_name, &args.lease_namespace, &args.pod_name)
    });
    let config = app::Config {
        settings,
        run: RunSettings {
            namespace: args.namespace,
            debounce: Duration::from_millis(args.debounce_ms),
            concurrency: args.concurrency,
        },
        leader_pod: args
            .label_leader_pod
            .then(|| (args.lease_namespace.clone(), args.pod_name.clone())),
        identity: args.pod_name,
        election,
        service: ServiceConfig::default(),
        shutdown_grace: Duration::from_secs(args.shutdown_grace_seconds),
    };
    let (grpc, http) = app::bind(args.grpc_addr, args.http_addr).await?;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown_signal().await;
        tracing::info!("shutting down");
        stop_tx.send_replace(true);
    });
    app::run(client, config, grpc, http, stop_rx).await
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
