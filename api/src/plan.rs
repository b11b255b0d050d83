//! From a [`Tau2Pipeline`] to the [`PhaseJob`] of each phase: the one mapping
//! the operator (root `/ckpt` in the worker pod) and `tau2-worker run -f`
//! (root: a local directory) share, so a manifest means the same in both.
//!
//! Under the root, phase `p` writes to `<root>/<p>` and ends with
//! `<root>/<p>/final`, the next enabled phase's starting point; `hf://` and
//! `builtin://` base models are fetched or created into `<root>/base-model`.

use std::path::{Path, PathBuf};

use kube::{CustomResourceExt, ResourceExt};
use serde_json::Value;

use crate::crd::{Tau2Pipeline, WorkerResources};
use crate::job::{DataInput, ModelInput, PhaseJob, PhaseParams, PipelineRef, ProgressEndpoint};
use crate::phases::PhaseName;
use crate::user_sim::UserSimulator;

/// Where `hf://` and `builtin://` base models go, under the pipeline's root.
pub const BASE_MODEL_DIR: &str = "base-model";
/// Where the worker pod mounts the claims named by `pvc://` URIs.
pub const PVC_ROOT: &str = "/mnt/pvc";

/// A resolved `pvc://` or `file://` URI.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Location {
    /// The path inside the worker pod.
    pub path: PathBuf,
    /// The claim of a `pvc://` URI.
    pub claim: Option<String>,
}

/// `pvc://<claim>/<path>` or `file://<path>`; `None` for other schemes.
pub fn locate(uri: &str) -> Option<Location> {
    if let Some(rest) = uri.strip_prefix("pvc://") {
        let (claim, path) = rest.split_once('/')?;
        return Some(Location {
            path: PathBuf::from(PVC_ROOT).join(claim).join(path),
            claim: Some(claim.to_string()),
        });
    }
    uri.strip_prefix("file://").map(|path| Location {
        path: PathBuf::from(path),
        claim: None,
    })
}

/// The final checkpoint a phase leaves, relative to the pipeline's root.
pub fn final_checkpoint(phase: PhaseName) -> String {
    format!("{phase}/final")
}

/// The enabled phases in order, each with the checkpoint it starts from
/// (relative to the root; `None`: the base model), when every earlier phase
/// ended at its usual `final/`.
pub fn chain(p: &Tau2Pipeline) -> Vec<(PhaseName, Option<String>)> {
    let mut init = None;
    p.spec
        .phases
        .enabled_phases()
        .map(|phase| {
            let start = init.replace(final_checkpoint(phase));
            (phase, start)
        })
        .collect()
}

/// Fills in the CRD schema's `default`s as the API server does when it
/// stores an object (structural defaulting: an absent property with a
/// default gets it, then every present property is defaulted in turn), so a
/// manifest read without a cluster means what it means in one.
pub fn apply_schema_defaults(object: &mut Value) {
    let crd = Tau2Pipeline::crd();
    let schema = crd
        .spec
        .versions
        .first()
        .and_then(|v| v.schema.as_ref())
        .and_then(|s| s.open_api_v3_schema.as_ref())
        .and_then(|s| serde_json::to_value(s).ok());
    if let Some(schema) = schema {
        default_from(object, &schema);
    }
}

fn default_from(value: &mut Value, schema: &Value) {
    match value {
        Value::Object(map) => {
            if let Some(props) = schema["properties"].as_object() {
                for (key, prop) in props {
                    if !map.contains_key(key)
                        && let Some(d) = prop.get("default")
                    {
                        map.insert(key.clone(), d.clone());
                    }
                }
                for (key, v) in map.iter_mut() {
                    if let Some(prop) = props.get(key) {
                        default_from(v, prop);
                    }
                }
            } else if let Some(extra) = schema.get("additionalProperties").filter(|a| a.is_object())
            {
                map.values_mut().for_each(|v| default_from(v, extra));
            }
        }
        Value::Array(items) => {
            if let Some(item) = schema.get("items") {
                items.iter_mut().for_each(|v| default_from(v, item));
            }
        }
        _ => {}
    }
}

/// The compute of a phase's worker: its own, else `worker.resources`.
pub fn resources(p: &Tau2Pipeline, phase: PhaseName) -> &WorkerResources {
    let phases = &p.spec.phases;
    let own = match phase {
        PhaseName::Sft => &phases.sft.resources,
        PhaseName::Rft => &phases.rft.resources,
        PhaseName::Grpo => &phases.grpo.resources,
        PhaseName::Eval => &phases.eval.resources,
    };
    own.as_ref().unwrap_or(&p.spec.worker.resources)
}

/// The user simulator a phase talks to: eval may have its own.
pub fn user_simulator(p: &Tau2Pipeline, phase: PhaseName) -> Option<&UserSimulator> {
    match phase {
        PhaseName::Sft => None,
        PhaseName::Rft | PhaseName::Grpo => p.spec.user_simulator.as_ref(),
        PhaseName::Eval => p
            .spec
            .eval_user_simulator
            .as_ref()
            .or(p.spec.user_simulator.as_ref()),
    }
}

/// A phase's hyper-parameters, with a dataset on a claim turned into the
/// path where the pod mounts it (the worker reads files).
pub fn params(p: &Tau2Pipeline, phase: PhaseName) -> PhaseParams {
    let phases = &p.spec.phases;
    match phase {
        PhaseName::Sft => {
            let mut sft = phases.sft.params.clone();
            if let Some(loc) = locate(&sft.dataset).filter(|l| l.claim.is_some()) {
                sft.dataset = format!("file://{}", loc.path.display());
            }
            PhaseParams::Sft(sft)
        }
        PhaseName::Rft => PhaseParams::Rft(phases.rft.params.clone()),
        PhaseName::Grpo => PhaseParams::Grpo(phases.grpo.params.clone()),
        PhaseName::Eval => PhaseParams::Eval(phases.eval.params.clone()),
    }
}

/// The configuration of one attempt of `phase` with the pipeline's files
/// under `root`; `init` is the checkpoint it starts from, relative to `root`,
/// or `None` for the base model.
pub fn phase_job(
    p: &Tau2Pipeline,
    phase: PhaseName,
    attempt: i32,
    root: &Path,
    init: Option<&str>,
    progress: Option<ProgressEndpoint>,
) -> PhaseJob {
    let (base, source) = match locate(&p.spec.model.uri) {
        Some(loc) => (loc.path, None),
        None => (root.join(BASE_MODEL_DIR), Some(p.spec.model.uri.clone())),
    };
    let tau2 = &p.spec.tau2;
    PhaseJob {
        pipeline: PipelineRef {
            namespace: p.namespace().unwrap_or_default(),
            name: p.name_any(),
            uid: p.uid().unwrap_or_default(),
        },
        attempt,
        seed: p.spec.seed,
        model: ModelInput {
            init: init.map_or_else(|| base.clone(), |i| root.join(i)),
            base,
            source,
            dtype: p.spec.model.dtype,
        },
        data: DataInput {
            dir: locate(&tau2.data_uri).map_or_else(|| PathBuf::from(&tau2.data_uri), |l| l.path),
            version: tau2.data_version,
            domains: tau2.domains.clone(),
            train_split: tau2.train_split,
            eval_split: tau2.eval_split,
            max_eval_tasks_per_domain: tau2.max_eval_tasks_per_domain,
        },
        user_simulator: user_simulator(p, phase).cloned(),
        output_dir: root.join(phase.as_str()),
        params: params(p, phase),
        progress,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pipeline(spec: &str) -> Tau2Pipeline {
        serde_saphyr::from_str(spec).expect("test manifest parses")
    }

    const FEW_FIELDS: &str = "
apiVersion: tau2.dev/v1alpha1
kind: Tau2Pipeline
metadata: {name: few, namespace: ns, uid: 0123-4567}
spec:
  model: {uri: builtin://tiny}
  userSimulator: {mode: Scripted}
  storage: {existingClaim: c}
  phases:
    rft: {enabled: false}
";

    #[test]
    fn the_chain_skips_disabled_phases() {
        let p = pipeline(FEW_FIELDS);
        assert_eq!(
            chain(&p),
            [
                (PhaseName::Sft, None),
                (PhaseName::Grpo, Some("sft/final".to_string())),
                (PhaseName::Eval, Some("grpo/final".to_string())),
            ]
        );
    }

    #[test]
    fn only_the_root_differs_between_roots() {
        let p = pipeline(FEW_FIELDS);
        for (phase, init) in chain(&p) {
            let pod = phase_job(&p, phase, 1, Path::new("/ckpt"), init.as_deref(), None);
            let mut local = phase_job(&p, phase, 1, Path::new("/tmp/x"), init.as_deref(), None);
            let rebase = |path: &mut PathBuf| {
                if let Ok(rel) = path.strip_prefix("/tmp/x") {
                    *path = Path::new("/ckpt").join(rel);
                }
            };
            rebase(&mut local.model.base);
            rebase(&mut local.model.init);
            rebase(&mut local.output_dir);
            assert_eq!(pod, local, "{phase}");
        }
    }

    /// The API server's defaults (the CRD schema's) and the types' serde
    /// defaults agree, so the operator, which reads stored objects, and a
    /// local run, which reads the file, build the same jobs.
    #[test]
    fn schema_defaults_equal_serde_defaults() {
        let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../manifests/examples");
        let mut texts = vec![FEW_FIELDS.to_string()];
        for name in ["tiny-pipeline.yaml", "pipeline.yaml"] {
            texts.push(std::fs::read_to_string(examples.join(name)).expect("example"));
        }
        for text in texts {
            let mut v: Value = serde_saphyr::from_str(&text).expect("parses");
            let plain: Tau2Pipeline = serde_json::from_value(v.clone()).expect("plain");
            apply_schema_defaults(&mut v);
            assert!(v["spec"]["phases"]["grpo"].get("steps").is_some(), "{v}");
            let defaulted: Tau2Pipeline = serde_json::from_value(v).expect("defaulted");
            assert_eq!(plain.spec, defaulted.spec, "{text}");
        }
    }

    #[test]
    fn claims_resolve_under_the_pod_mount() {
        let loc = locate("pvc://data/tau2/x").expect("pvc URI");
        assert_eq!(loc.path, Path::new("/mnt/pvc/data/tau2/x"));
        assert_eq!(loc.claim.as_deref(), Some("data"));
        assert_eq!(locate("hf://a/b"), None);
    }
}
