//! A minimal progress client, to try the operator's progress service by hand
//! (the workers' own client comes with the worker's phases):
//!
//!     cargo run -p tau2-operator --example report -- \
//!         --endpoint http://127.0.0.1:50051 --token-file token \
//!         --namespace default --pipeline recipe --uid <uid> --phase sft --steps 5
//!
//! It streams `steps` step reports, a final checkpoint and a Finished report
//! as attempt `--attempt`, and prints the operator's acknowledgement.

use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context;
use clap::Parser;
use tau2_api::progress::progress_client::ProgressClient;
use tau2_api::progress::progress_report::Event;
use tau2_api::progress::{Checkpoint, Finished, ProgressReport, Step};

#[derive(Parser)]
struct Args {
    /// The operator's progress endpoint.
    #[arg(long, default_value = "http://127.0.0.1:50051")]
    endpoint: String,
    /// File holding the pipeline's token (the mounted Secret's `token` key).
    #[arg(long)]
    token_file: PathBuf,
    #[arg(long, default_value = "default")]
    namespace: String,
    #[arg(long)]
    pipeline: String,
    /// The pipeline's uid (`kubectl get t2p NAME -o jsonpath={.metadata.uid}`).
    #[arg(long)]
    uid: String,
    #[arg(long, default_value = "sft")]
    phase: String,
    #[arg(long, default_value_t = 1)]
    attempt: u32,
    #[arg(long, default_value_t = 5)]
    steps: u64,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let token = std::fs::read_to_string(&args.token_file)
        .with_context(|| format!("reading {}", args.token_file.display()))?;
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_millis();
    let unix_millis = i64::try_from(now)?;

    let mut events: Vec<Event> = (1..=args.steps)
        .map(|step| {
            Event::Step(Step {
                step,
                total_steps: args.steps,
                metrics: [("loss".to_owned(), 1.0 / step as f64)].into(),
            })
        })
        .collect();
    events.push(Event::Checkpoint(Checkpoint {
        step: args.steps,
        path: format!("{}/final", args.phase),
        r#final: true,
    }));
    events.push(Event::Finished(Finished {
        succeeded: true,
        message: String::new(),
    }));
    let reports: Vec<ProgressReport> = events
        .into_iter()
        .zip(1u64..)
        .map(|(event, seq)| ProgressReport {
            namespace: args.namespace.clone(),
            pipeline: args.pipeline.clone(),
            pipeline_uid: args.uid.clone(),
            phase: args.phase.clone(),
            attempt: args.attempt,
            seq,
            unix_millis,
            event: Some(event),
        })
        .collect();

    let mut client = ProgressClient::connect(args.endpoint.clone())
        .await
        .with_context(|| format!("connecting to {}", args.endpoint))?;
    let mut request = tonic::Request::new(tokio_stream::iter(reports));
    request
        .metadata_mut()
        .insert("authorization", format!("Bearer {}", token.trim()).parse()?);
    let ack = client.report(request).await?.into_inner();
    println!("accepted {}, rejected {}", ack.accepted, ack.rejected);
    Ok(())
}
