//! `tau2-worker run -f <pipeline.yaml>`: a `Tau2Pipeline` manifest's enabled
//! phases on this machine, with the [`PhaseJob`]s the operator would build
//! (`tau2_api::plan`), the checkpoint root being `--out` instead of the
//! pod's `/ckpt`. The phases run as child processes with progress bars
//! (`pipeline.rs`), after the untrained model's eval with the same eval
//! parameters, and the end prints each phase's state, duration and final
//! checkpoint, and pass@k untrained beside trained.
//!
//! What cannot exist outside a cluster is refused, naming the field:
//! `pvc://` URIs (`spec.model.uri`, `spec.phases.sft.dataset`, and
//! `spec.tau2.dataUri` unless `--data` replaces it). GPU requests on a
//! machine without CUDA only warn: the phases run on CPU. Scheduling,
//! image, storage and `worker.env` fields do not apply here and are ignored.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, bail};
use serde_json::Value;
use tau2_api::crd::Tau2Pipeline;
use tau2_api::job::{ENV_EVAL_USER_SIM_API_KEY, ENV_USER_SIM_API_KEY, PhaseJob};
use tau2_api::phases::PhaseName;
use tau2_api::plan;

use super::phase::ENV_TOKENIZER_DIR;
use super::pipeline;

#[derive(clap::Args, Clone)]
pub struct RunArgs {
    /// The Tau2Pipeline manifest (YAML, one document).
    #[arg(short = 'f', long = "file")]
    pub file: PathBuf,
    /// The pipeline's root: base model, one directory per phase, status.json
    /// (the pod's /ckpt). Default: tau2-local/<metadata.name>.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// tau2-bench data directory, replacing spec.tau2.dataUri (whose default,
    /// file:///opt/tau2, is the worker image's copy).
    #[arg(long, env = "TAU2_DATA_DIR")]
    pub data: Option<PathBuf>,
    /// The Qwen3 tokenizer directory, for `builtin://tiny`.
    #[arg(long, env = ENV_TOKENIZER_DIR)]
    pub tokenizer_dir: Option<PathBuf>,
    /// Skip the untrained model's evaluation.
    #[arg(long)]
    pub no_baseline: bool,
}

/// Reads a manifest as the API server would store it: the CRD schema's
/// defaults filled in, then the types' own serde defaults.
pub fn read_manifest(path: &Path) -> anyhow::Result<Tau2Pipeline> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut v: Value =
        serde_saphyr::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
    let (api_version, kind) = (v["apiVersion"].as_str(), v["kind"].as_str());
    if api_version != Some("tau2.dev/v1alpha1") || kind != Some("Tau2Pipeline") {
        bail!(
            "{}: expected apiVersion tau2.dev/v1alpha1 and kind Tau2Pipeline, got {} {}",
            path.display(),
            api_version.unwrap_or("(none)"),
            kind.unwrap_or("(none)")
        );
    }
    plan::apply_schema_defaults(&mut v);
    serde_json::from_value(v)
        .with_context(|| format!("{} is not a valid Tau2Pipeline", path.display()))
}

/// `pvc://` URIs name claims that exist only in a cluster.
fn refuse_claim(field: &str, uri: &str) -> anyhow::Result<()> {
    if uri.starts_with("pvc://") {
        bail!(
            "{field} is {uri}: a PersistentVolumeClaim exists only in a cluster; \
             use file:///<path> for a local directory to run it here"
        );
    }
    Ok(())
}

/// The steps of the local run, in order: the untrained eval (unless
/// `no_baseline`), then the enabled phases chained through `final/`.
pub fn jobs(
    p: &Tau2Pipeline,
    root: &Path,
    data: Option<&Path>,
    no_baseline: bool,
) -> anyhow::Result<Vec<(String, PhaseJob)>> {
    let spec = &p.spec;
    refuse_claim("spec.model.uri", &spec.model.uri)?;
    if spec.phases.sft.enabled {
        refuse_claim("spec.phases.sft.dataset", &spec.phases.sft.params.dataset)?;
    }
    if data.is_none() {
        refuse_claim("spec.tau2.dataUri", &spec.tau2.data_uri)
            .context("or give --data <dir> (or TAU2_DATA_DIR)")?;
    }
    let local = |phase, init: Option<&str>| {
        let mut job = plan::phase_job(p, phase, 1, root, init, None);
        if let Some(dir) = data {
            job.data.dir = dir.to_path_buf();
        }
        job
    };
    let mut list = Vec::new();
    if !no_baseline && spec.phases.eval.enabled {
        let mut job = local(PhaseName::Eval, None);
        job.output_dir = root.join("eval-base");
        list.push(("eval-base".to_string(), job));
    }
    for (phase, init) in plan::chain(p) {
        list.push((phase.to_string(), local(phase, init.as_deref())));
    }
    Ok(list)
}

/// Warnings for what runs differently here than in the cluster.
fn warn_local_differences(p: &Tau2Pipeline) {
    let cuda = tch::Cuda::is_available();
    for phase in p.spec.phases.enabled_phases() {
        let gpus = tau2_api::plan::resources(p, phase).gpus;
        if gpus > 0 && !cuda {
            eprintln!(
                "warning: phase {phase} asks for {gpus} GPU(s) (spec.worker.resources.gpus or \
                 spec.phases.{phase}.resources.gpus) but this machine has no CUDA device: it runs on CPU"
            );
        }
    }
    for (field, sim, env) in [
        (
            "spec.userSimulator",
            p.spec.user_simulator.as_ref(),
            ENV_USER_SIM_API_KEY,
        ),
        (
            "spec.evalUserSimulator",
            p.spec.eval_user_simulator.as_ref(),
            ENV_EVAL_USER_SIM_API_KEY,
        ),
    ] {
        if sim.is_some_and(|s| s.api_key_secret_ref.is_some()) && std::env::var_os(env).is_none() {
            eprintln!(
                "warning: {field}.apiKeySecretRef names a Secret, which exists only in a cluster: \
                 set {env} to the key here"
            );
        }
    }
}

pub fn run(args: RunArgs) -> anyhow::Result<()> {
    let p = read_manifest(&args.file)?;
    let name = p.metadata.name.clone().unwrap_or_else(|| "pipeline".into());
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| Path::new("tau2-local").join(&name));
    let root = pipeline::prepare_out(&out)?;
    let data = args
        .data
        .as_ref()
        .map(|d| {
            d.canonicalize()
                .with_context(|| format!("--data {}", d.display()))
        })
        .transpose()?;
    let jobs = jobs(&p, &root, data.as_deref(), args.no_baseline)?;
    warn_local_differences(&p);
    let started = Instant::now();
    let outcomes = pipeline::run_all(&jobs, &root, args.tokenizer_dir.as_deref())?;
    pipeline::report(&root, &outcomes, started)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(spec: &str) -> Tau2Pipeline {
        let text = format!(
            "apiVersion: tau2.dev/v1alpha1\nkind: Tau2Pipeline\nmetadata: {{name: t}}\nspec:\n{spec}"
        );
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("p.yaml");
        std::fs::write(&path, text).expect("write");
        read_manifest(&path).expect("manifest reads")
    }

    const TINY: &str = "  model: {uri: builtin://tiny}\n  userSimulator: {mode: Scripted}\n  storage: {existingClaim: c}\n";

    #[test]
    fn a_model_on_a_claim_is_refused_naming_the_field() {
        let p = manifest(
            "  model: {uri: pvc://models/qwen}\n  userSimulator: {mode: Scripted}\n  storage: {existingClaim: c}\n",
        );
        let e = jobs(&p, Path::new("/r"), Some(Path::new("/d")), false).expect_err("refused");
        assert!(e.to_string().contains("spec.model.uri"), "{e:#}");
    }

    #[test]
    fn data_on_a_claim_needs_data_and_a_dataset_on_a_claim_is_refused() {
        let p = manifest(&format!("{TINY}  tau2: {{dataUri: pvc://d/tau2}}\n"));
        let e = jobs(&p, Path::new("/r"), None, false).expect_err("refused");
        assert!(format!("{e:#}").contains("spec.tau2.dataUri"), "{e:#}");
        assert!(jobs(&p, Path::new("/r"), Some(Path::new("/d")), false).is_ok());
        let p = manifest(&format!(
            "{TINY}  phases: {{sft: {{dataset: pvc://d/x.jsonl}}}}\n"
        ));
        let e = jobs(&p, Path::new("/r"), Some(Path::new("/d")), false).expect_err("refused");
        assert!(e.to_string().contains("spec.phases.sft.dataset"), "{e:#}");
    }

    #[test]
    fn local_jobs_are_the_operators_but_for_the_root_and_data() {
        let p = manifest(TINY);
        let list = jobs(&p, Path::new("/r"), Some(Path::new("/d")), false).expect("jobs");
        let names: Vec<&str> = list.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["eval-base", "sft", "rft", "grpo", "eval"]);
        for ((name, job), (phase, init)) in list[1..].iter().zip(plan::chain(&p)) {
            let mut pod = plan::phase_job(&p, phase, 1, Path::new("/ckpt"), init.as_deref(), None);
            pod.data.dir = PathBuf::from("/d");
            let rebase = |x: &Path| Path::new("/ckpt").join(x.strip_prefix("/r").unwrap_or(x));
            let mut local = job.clone();
            local.model.base = rebase(&local.model.base);
            local.model.init = rebase(&local.model.init);
            local.output_dir = rebase(&local.output_dir);
            assert_eq!(local, pod, "{name}");
        }
        let (_, base) = &list[0];
        assert_eq!(base.model.init, Path::new("/r/base-model"));
        assert_eq!(base.params, list[4].1.params);
    }
}
