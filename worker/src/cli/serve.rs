//! `tau2-worker serve`: our model behind an OpenAI-compatible API.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use tau2_chat::ChatTokenizer;
use tau2_model::qwen3::Qwen3;
use tau2_serve::engine::Engine;
use tau2_serve::server::{ServerState, serve};

#[derive(clap::Args)]
pub struct Serve {
    /// A Hugging Face model directory (config, safetensors, tokenizer files).
    #[arg(long)]
    model: PathBuf,
    /// The `model` name clients send (default: the directory's name).
    #[arg(long)]
    served_model_name: Option<String>,
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    #[arg(long, default_value_t = 8000)]
    port: u16,
    /// cpu, cuda or auto (cuda when available).
    #[arg(long, default_value = "auto", value_parser = ["auto", "cpu", "cuda"])]
    device: String,
    /// Weights' dtype in memory (default: the checkpoint's).
    #[arg(long, value_parser = ["float32", "bfloat16", "float16"])]
    dtype: Option<String>,
    /// Most sequences generated together.
    #[arg(long, default_value_t = 32)]
    max_batch: usize,
    /// Completion tokens when a request sets no max_tokens.
    #[arg(long, default_value_t = 2048)]
    default_max_tokens: usize,
}

pub fn run(args: Serve) -> anyhow::Result<()> {
    let device = match args.device.as_str() {
        "cpu" => tch::Device::Cpu,
        "cuda" => {
            anyhow::ensure!(
                tch::Cuda::is_available(),
                "--device cuda, but no CUDA device is visible (is the binary built with feature cuda?)"
            );
            tch::Device::Cuda(0)
        }
        _ => tch::Device::cuda_if_available(),
    };
    let kind = args
        .dtype
        .as_deref()
        .and_then(tau2_model::config::kind_from_name);
    let model = Qwen3::load(&args.model, device, kind)
        .with_context(|| format!("loading the model from {}", args.model.display()))?;
    let tokenizer = ChatTokenizer::from_dir(&args.model)
        .with_context(|| format!("loading the tokenizer from {}", args.model.display()))?;
    let name = args.served_model_name.clone().unwrap_or_else(|| {
        args.model
            .file_name()
            .map_or_else(|| "model".into(), |n| n.to_string_lossy().into_owned())
    });
    let state = Arc::new(ServerState {
        context_len: usize::try_from(model.config().max_position_embeddings).unwrap_or(0),
        engine: Engine::start(model, args.max_batch),
        tokenizer,
        model_name: name.clone(),
        default_max_tokens: args.default_max_tokens,
        created: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
    });
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?
        .block_on(async move {
            let listener = tokio::net::TcpListener::bind((args.host.as_str(), args.port))
                .await
                .with_context(|| format!("binding {}:{}", args.host, args.port))?;
            let addr = listener.local_addr()?;
            // Tests and scripts read this line to find the port (with --port 0).
            eprintln!("serving {name} on http://{addr}/v1 ({device:?})");
            serve(listener, state, shutdown_signal()).await?;
            Ok(())
        })
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { () = ctrl_c => {}, () = term => {} }
}
