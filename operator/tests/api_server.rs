//! The Tau2Pipeline API against a real kube-apiserver: the CRD installs, the
//! server fills in the recipe's defaults, rejects invalid pipelines with the
//! messages we wrote, serves the status subresource, and kubectl shows the
//! printer columns and field docs.

mod common;

use std::process::Command;

use common::*;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::api::{Patch, PatchParams, PostParams};
use kube::core::DynamicObject;
use kube::{Api, Client};
use serde_json::json;
use tau2_api::crd::{PipelinePhase, Tau2Pipeline, Tau2PipelineSpec, Tau2PipelineStatus};

async fn create_raw(
    client: &Client,
    ns: &str,
    body: &serde_json::Value,
) -> kube::Result<Tau2Pipeline> {
    let obj: DynamicObject = serde_json::from_value(body.clone()).expect("a well-formed object");
    let api: Api<DynamicObject> = Api::namespaced_with(
        client.clone(),
        ns,
        &kube::core::ApiResource::erase::<Tau2Pipeline>(&()),
    );
    let created = api.create(&PostParams::default(), &obj).await?;
    Ok(
        serde_json::from_value(serde_json::to_value(created).expect("serialisable"))
            .expect("a Tau2Pipeline"),
    )
}

#[tokio::test]
#[ignore = "needs a control plane: run tests/run.sh"]
async fn crd_installs_with_names_and_subresources() -> TestResult {
    let client = client().await;
    let crd = install_crd(&client).await;
    let names = crd
        .status
        .as_ref()
        .and_then(|s| s.accepted_names.as_ref())
        .expect("accepted names");
    assert_eq!(names.kind, "Tau2Pipeline");
    assert_eq!(names.short_names.as_deref(), Some(&["t2p".to_string()][..]));
    assert_eq!(names.categories.as_deref(), Some(&["tau2".to_string()][..]));
    let version = &crd.spec.versions[0];
    assert_eq!(
        (crd.spec.group.as_str(), version.name.as_str()),
        ("tau2.dev", "v1alpha1")
    );
    assert_eq!(crd.spec.scope, "Namespaced");
    assert!(
        version
            .subresources
            .as_ref()
            .and_then(|s| s.status.as_ref())
            .is_some(),
        "status subresource"
    );
    Ok(())
}

/// The defaults the API server fills in are exactly the Rust `Default`s the
/// worker and operator use: the schema and the code cannot drift apart.
#[tokio::test]
#[ignore = "needs a control plane: run tests/run.sh"]
async fn a_minimal_pipeline_gets_the_recipe_defaults() -> TestResult {
    let (client, ns) = with_crd("defaults").await;
    let minimal = minimal_pipeline("recipe");
    let created = create_raw(&client, &ns, &minimal).await?;

    let expected: Tau2PipelineSpec = serde_json::from_value(minimal["spec"].clone())?;
    assert_eq!(
        created.spec, expected,
        "server defaults differ from the Rust defaults"
    );
    // Spot-check a few recipe values as the user sees them.
    let phases = &created.spec.phases;
    assert_eq!(phases.sft.params.optimizer.learning_rate, 1e-5);
    assert_eq!(phases.grpo.params.optimizer.learning_rate, 1e-6);
    assert_eq!(
        (
            phases.grpo.params.tasks_per_step,
            phases.grpo.params.samples_per_task
        ),
        (16, 4)
    );
    assert_eq!(
        (phases.grpo.params.clip_low, phases.grpo.params.clip_high),
        (0.2, 0.28)
    );
    assert_eq!(
        (phases.eval.params.k, phases.eval.params.rollout.top_k),
        (4, 20)
    );
    assert_eq!(
        created.spec.user_simulator.as_ref().map(|u| u.temperature),
        Some(0.7)
    );
    assert!(phases.enabled_phases().eq(tau2_api::phases::PhaseName::ALL));

    delete_namespace(&client, &ns).await;
    Ok(())
}

/// Each case breaks one rule; the API server must reject it with 422 and our message.
#[tokio::test]
#[ignore = "needs a control plane: run tests/run.sh"]
async fn invalid_pipelines_are_rejected_with_a_message_that_says_what_to_fix() -> TestResult {
    let (client, ns) = with_crd("invalid").await;
    let cases: Vec<(&str, serde_json::Value, &str)> = vec![
        (
            "no phase enabled",
            json!({"spec": {"phases": {"sft": {"enabled": false}, "rft": {"enabled": false}, "grpo": {"enabled": false}, "eval": {"enabled": false}}}}),
            "enable at least one of phases.sft",
        ),
        (
            "pass@k above the sample count",
            json!({"spec": {"phases": {"eval": {"k": 8}}}}),
            "phases.eval.k must not exceed phases.eval.samplesPerTask",
        ),
        (
            "GRPO group of one",
            json!({"spec": {"phases": {"grpo": {"samplesPerTask": 1}}}}),
            "phases.grpo.samplesPerTask must be at least 2",
        ),
        (
            "more GRPO mini-batches than episodes",
            json!({"spec": {"phases": {"grpo": {"tasksPerStep": 2, "samplesPerTask": 4, "miniBatches": 9}}}}),
            "phases.grpo.miniBatches must not exceed phases.grpo.tasksPerStep x samplesPerTask",
        ),
        (
            "mock has no test split",
            json!({"spec": {"tau2": {"domains": ["mock"], "trainSplit": "base"}}}),
            "tau2.evalSplit must be a split every selected domain has",
        ),
        (
            "small split outside telecom",
            json!({"spec": {"tau2": {"trainSplit": "small"}}}),
            "tau2.trainSplit must be a split every selected domain has",
        ),
        (
            "unknown domain",
            json!({"spec": {"tau2": {"domains": ["banking"]}}}),
            "supported values: \"mock\", \"airline\", \"retail\", \"telecom\"",
        ),
        (
            "duplicate domain",
            json!({"spec": {"tau2": {"domains": ["retail", "retail"]}}}),
            "Duplicate value: \"retail\"",
        ),
        (
            "model from an unsupported store",
            json!({"spec": {"model": {"uri": "s3://bucket/qwen"}}}),
            "model.uri must be hf://<org>/<repo>",
        ),
        (
            "unknown dtype",
            json!({"spec": {"model": {"dtype": "int8"}}}),
            "supported values: \"bfloat16\", \"float16\", \"float32\"",
        ),
        (
            "endpoint user without endpoint",
            json!({"spec": {"userSimulator": {"endpoint": null}}}),
            "userSimulator.endpoint and userSimulator.model are required when mode is Endpoint",
        ),
        (
            "endpoint that is not http",
            json!({"spec": {"userSimulator": {"endpoint": "ftp://user-sim/v1"}}}),
            "userSimulator.endpoint must be an http(s) URL",
        ),
        (
            "no user simulator for episodes",
            json!({"spec": {"userSimulator": null}}),
            "spec.userSimulator is required when phases rft, grpo or eval are enabled",
        ),
        (
            "two storage sources",
            json!({"spec": {"storage": {"volumeClaimTemplate": {"spec": {"accessModes": ["ReadWriteOnce"]}}}}}),
            "set exactly one of storage.existingClaim and storage.volumeClaimTemplate",
        ),
        (
            "no storage source",
            json!({"spec": {"storage": {"existingClaim": null}}}),
            "set exactly one of storage.existingClaim and storage.volumeClaimTemplate",
        ),
        (
            "negative learning rate",
            json!({"spec": {"phases": {"sft": {"optimizer": {"learningRate": -1e-5}}}}}),
            "spec.phases.sft.optimizer.learningRate in body should be greater than or equal to 0",
        ),
        (
            "topP of zero",
            json!({"spec": {"phases": {"eval": {"rollout": {"topP": 0}}}}}),
            "spec.phases.eval.rollout.topP in body should be greater than 0",
        ),
        (
            "SFT data from a web page",
            json!({"spec": {"phases": {"sft": {"dataset": "https://example.com/data.jsonl"}}}}),
            "phases.sft.dataset must be hf://datasets/",
        ),
        (
            "all shaping weights zero",
            json!({"spec": {"phases": {"grpo": {"rewardShaping": {"weights": {"action": 0, "communicate": 0, "envAssertion": 0, "db": 0}}}}}}),
            "phases.grpo.rewardShaping weights must not all be 0",
        ),
        (
            "name too long for Job names",
            json!({"metadata": {"name": "a-pipeline-name-that-is-far-too-long-for-job-names"}}),
            "metadata.name must be a DNS label",
        ),
        (
            "negative TTL",
            json!({"spec": {"ttlSecondsAfterFinished": -1}}),
            "spec.ttlSecondsAfterFinished in body should be greater than or equal to 0",
        ),
    ];
    assert!(cases.len() >= 12);

    // The unbroken pipeline is valid, so each rejection is due to its own change.
    create_raw(&client, &ns, &minimal_pipeline("control")).await?;
    let mut failures = Vec::new();
    for (i, (what, patch, message)) in cases.iter().enumerate() {
        let mut body = minimal_pipeline(&format!("case-{i}"));
        merge(&mut body, patch);
        match create_raw(&client, &ns, &body).await {
            Ok(_) => failures.push(format!("{what}: accepted")),
            Err(kube::Error::Api(status))
                if status.code == 422 && status.message.contains(message) => {}
            Err(other) => failures.push(format!(
                "{what}: expected 422 with {message:?}, got {other}"
            )),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    delete_namespace(&client, &ns).await;
    Ok(())
}

#[tokio::test]
#[ignore = "needs a control plane: run tests/run.sh"]
async fn training_inputs_freeze_once_the_pipeline_has_started() -> TestResult {
    let (client, ns) = with_crd("immutable").await;
    create_raw(&client, &ns, &minimal_pipeline("p")).await?;
    let api: Api<Tau2Pipeline> = Api::namespaced(client.clone(), &ns);
    let merge_patch = |v: serde_json::Value| Patch::Merge(v);

    // Before it starts, anything may change.
    api.patch(
        "p",
        &PatchParams::default(),
        &merge_patch(json!({"spec": {"model": {"uri": "hf://Qwen/Qwen3-8B"}}})),
    )
    .await?;

    api.patch_status(
        "p",
        &PatchParams::default(),
        &merge_patch(json!({"status": {"phase": "Running", "startTime": "2026-01-01T00:00:00Z"}})),
    )
    .await?;
    for (field, patch) in [
        (
            "model",
            json!({"spec": {"model": {"uri": "hf://Qwen/Qwen3-4B-Instruct-2507"}}}),
        ),
        (
            "phases",
            json!({"spec": {"phases": {"grpo": {"steps": 10}}}}),
        ),
        ("tau2", json!({"spec": {"tau2": {"domains": ["retail"]}}})),
        (
            "storage",
            json!({"spec": {"storage": {"existingClaim": "other"}}}),
        ),
    ] {
        let err = api
            .patch("p", &PatchParams::default(), &merge_patch(patch))
            .await
            .expect_err(field);
        assert!(
            matches!(&err, kube::Error::Api(s) if s.code == 422 && s.message.contains("cannot change once the pipeline has started")),
            "{field}: {err}"
        );
    }
    // What does not change the training may still change: the image, resources, suspend.
    api.patch("p", &PatchParams::default(), &merge_patch(json!({"spec": {"worker": {"image": "registry.example/tau2-worker:v2"}, "suspend": true}}))).await?;
    let p = api.get("p").await?;
    assert_eq!(
        p.spec.worker.image.as_deref(),
        Some("registry.example/tau2-worker:v2")
    );
    assert!(p.spec.suspend);
    delete_namespace(&client, &ns).await;
    Ok(())
}

/// Status is written with server-side apply, as the operator will: it goes
/// through the subresource, leaves the spec alone, and merges conditions by type.
#[tokio::test]
#[ignore = "needs a control plane: run tests/run.sh"]
async fn status_subresource_takes_server_side_apply() -> TestResult {
    let (client, ns) = with_crd("status").await;
    let created = create_raw(&client, &ns, &minimal_pipeline("p")).await?;
    let api: Api<Tau2Pipeline> = Api::namespaced(client.clone(), &ns);
    let now = Time(k8s_openapi::jiff::Timestamp::now());
    let condition = |type_: &str, status: &str| Condition {
        type_: type_.into(),
        status: status.into(),
        reason: "Test".into(),
        message: format!("{type_} is {status}"),
        last_transition_time: now.clone(),
        observed_generation: created.metadata.generation,
    };
    let apply = |status: Tau2PipelineStatus| {
        Patch::Apply(
            json!({"apiVersion": "tau2.dev/v1alpha1", "kind": "Tau2Pipeline", "status": status}),
        )
    };
    let params = PatchParams::apply("tau2-operator").force();
    let status = Tau2PipelineStatus {
        phase: PipelinePhase::Running,
        current_phase: Some(tau2_api::phases::PhaseName::Sft),
        progress: Some("3/10".into()),
        observed_generation: created.metadata.generation,
        conditions: vec![
            condition("Running", "True"),
            condition("Succeeded", "False"),
        ],
        ..Default::default()
    };
    api.patch_status("p", &params, &apply(status.clone()))
        .await?;
    // A second manager owns one condition; the operator's apply keeps it (list map keyed by type).
    api.patch_status(
        "p",
        &PatchParams::apply("someone-else").force(),
        &Patch::Apply(json!({
            "apiVersion": "tau2.dev/v1alpha1", "kind": "Tau2Pipeline",
            "status": {"conditions": [condition("Audited", "True")]}
        })),
    )
    .await?;
    api.patch_status(
        "p",
        &params,
        &apply(Tau2PipelineStatus {
            progress: Some("4/10".into()),
            ..status
        }),
    )
    .await?;

    let p = api.get("p").await?;
    let got = p.status.expect("status is set");
    assert_eq!(got.phase, PipelinePhase::Running);
    assert_eq!(got.progress.as_deref(), Some("4/10"));
    let mut types: Vec<_> = got.conditions.iter().map(|c| c.type_.as_str()).collect();
    types.sort_unstable();
    assert_eq!(types, ["Audited", "Running", "Succeeded"]);
    assert_eq!(
        p.spec, created.spec,
        "a status write must not touch the spec"
    );
    assert_eq!(
        p.metadata.generation, created.metadata.generation,
        "status writes do not bump the generation"
    );

    // `kubectl wait` reads the conditions and the phase as users will.
    api.patch_status(
        "p",
        &params,
        &apply(Tau2PipelineStatus {
            phase: PipelinePhase::Succeeded,
            conditions: vec![
                condition("Running", "False"),
                condition("Succeeded", "True"),
            ],
            ..Default::default()
        }),
    )
    .await?;
    let target = "t2p/p";
    kubectl(&[
        "wait",
        "-n",
        &ns,
        "--for=condition=Succeeded",
        target,
        "--timeout=20s",
    ]);
    kubectl(&[
        "wait",
        "-n",
        &ns,
        "--for=jsonpath={.status.phase}=Succeeded",
        target,
        "--timeout=20s",
    ]);
    delete_namespace(&client, &ns).await;
    Ok(())
}

/// Runs kubectl. A CRD is served a moment after it is established, and
/// kubectl's discovery may not list it yet: that one error is retried briefly.
fn kubectl(args: &[&str]) -> String {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let out = Command::new("kubectl")
            .args(args)
            .output()
            .expect("kubectl is on PATH (tests/run.sh puts it there)");
        let stderr = String::from_utf8_lossy(&out.stderr);
        if out.status.success() {
            return String::from_utf8_lossy(&out.stdout).into_owned();
        }
        let not_discovered = stderr.contains("doesn't have a resource type");
        assert!(
            not_discovered && std::time::Instant::now() < deadline,
            "kubectl {args:?}: {stderr}"
        );
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
}

#[tokio::test]
#[ignore = "needs a control plane: run tests/run.sh"]
async fn kubectl_get_shows_the_printer_columns() -> TestResult {
    let (client, ns) = with_crd("columns").await;
    create_raw(&client, &ns, &minimal_pipeline("p")).await?;
    let api: Api<Tau2Pipeline> = Api::namespaced(client.clone(), &ns);
    api.patch_status(
        "p",
        &PatchParams::default(),
        &Patch::Merge(json!({"status": {
            "phase": "Running", "currentPhase": "eval", "progress": "37/400",
            "results": {"split": "test", "k": 4, "samplesPerTask": 4, "overall": {
                "tasks": 100, "passAt1": 0.36, "passAt1Unbiased": 0.34, "passAtK": 0.59,
                "passAtKUnbiased": 0.58, "passHatK": 0.16, "averageReward": 0.35}}
        }})),
    )
    .await?;

    let out = kubectl(&["get", "t2p", "-n", &ns]);
    let mut lines = out.lines();
    let header: Vec<&str> = lines
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    assert_eq!(
        header,
        [
            "NAME", "PHASE", "CURRENT", "PROGRESS", "PASS@1", "PASS@K", "AGE"
        ]
    );
    let row: Vec<&str> = lines
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    assert_eq!(
        &row[..6],
        ["p", "Running", "eval", "37/400", "0.36", "0.59"]
    );
    // The category and short name work too.
    let by_category = kubectl(&["get", "tau2", "-n", &ns]);
    assert!(
        by_category.lines().any(|l| l.starts_with("p ")),
        "{by_category}"
    );
    delete_namespace(&client, &ns).await;
    Ok(())
}

#[tokio::test]
#[ignore = "needs a control plane: run tests/run.sh"]
async fn kubectl_explain_shows_the_field_docs() -> TestResult {
    let client = client().await;
    install_crd(&client).await;
    let out = kubectl(&["explain", "t2p.spec.phases.grpo.klCoef"]);
    assert!(
        out.contains("k3 KL estimate to the frozen reference"),
        "{out}"
    );
    let out = kubectl(&["explain", "t2p.status.results"]);
    assert!(out.contains("pass^k is `C(c, k) / C(n, k)`"), "{out}");
    let out = kubectl(&["explain", "t2p.spec.model.uri"]);
    assert!(out.contains("hf://<org>/<repo>[@<revision>]"), "{out}");
    Ok(())
}

#[tokio::test]
#[ignore = "needs a control plane: run tests/run.sh"]
async fn the_example_pipelines_are_accepted() -> TestResult {
    let (client, ns) = with_crd("examples").await;
    for file in ["pipeline.yaml", "tiny-pipeline.yaml"] {
        let path = repo_root().join("manifests/examples").join(file);
        let body: serde_json::Value = serde_saphyr::from_str(&std::fs::read_to_string(&path)?)?;
        let created = create_raw(&client, &ns, &body)
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        // What the file leaves out the server fills in, exactly as the Rust defaults do.
        let local: Tau2Pipeline = serde_json::from_value(body)?;
        assert_eq!(created.spec, local.spec, "{file}");
    }
    delete_namespace(&client, &ns).await;
    Ok(())
}
