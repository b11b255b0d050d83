//! Every transition of [`plan`], from the YAML fixtures in `fixtures/`.

use k8s_openapi::api::batch::v1::Job;
use serde_json::{Value, json};

use super::*;

const PIPELINE: &str = include_str!("fixtures/pipeline.yaml");
const SCENARIOS: &str = include_str!("fixtures/scenarios.yaml");

fn yaml(text: &str) -> Value {
    serde_saphyr::from_str(text).expect("fixture YAML parses")
}

fn merge(base: &mut Value, patch: &Value) {
    match (base, patch) {
        (Value::Object(b), Value::Object(p)) => {
            for (k, v) in p {
                if v.is_null() {
                    b.remove(k);
                } else {
                    merge(b.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
        (_, Value::Null) => {}
        (b, p) => *b = p.clone(),
    }
}

/// Keys sorted, so that comparisons ignore the order of fields.
fn canon(v: &Value) -> String {
    match v {
        Value::Object(m) => {
            let sorted: BTreeMap<&String, String> = m.iter().map(|(k, v)| (k, canon(v))).collect();
            format!("{sorted:?}")
        }
        Value::Array(a) => format!("{:?}", a.iter().map(canon).collect::<Vec<_>>()),
        other => other.to_string(),
    }
}

fn ts(s: &str) -> Timestamp {
    s.parse().expect("a timestamp")
}

fn settings() -> Settings {
    Settings {
        progress_endpoint: Some("http://tau2-operator.tau2-system.svc:9090".into()),
        ..Settings::default()
    }
}

/// The base pipeline with `spec` and `status` patches.
fn pipeline(spec: &Value, status: &Value) -> Tau2Pipeline {
    let mut p = yaml(PIPELINE);
    merge(&mut p["spec"], spec);
    if !status.is_null() {
        p["status"] = status.clone();
    }
    serde_json::from_value(p).expect("a Tau2Pipeline")
}

/// Loads a scenario: the pipeline, what exists, and the time.
fn scenario(name: &str) -> (Tau2Pipeline, Observed, Timestamp) {
    let all = yaml(SCENARIOS);
    let s = &all[name];
    assert!(s.is_object(), "no scenario {name}");
    let p = pipeline(&s["spec"], &s["status"]);
    let observed = serde_json::from_value(s["observed"].clone()).expect("observed objects parse");
    (p, observed, ts(s["now"].as_str().expect("now")))
}

fn run(name: &str) -> (Tau2Pipeline, Plan) {
    let (p, observed, now) = scenario(name);
    let plan = plan(&p, &observed, &settings(), now);
    (p, plan)
}

fn jobs(plan: &Plan) -> Vec<&Job> {
    plan.apply
        .iter()
        .filter_map(|a| match a {
            Apply::Job(j) => Some(&**j),
            _ => None,
        })
        .collect()
}

fn config(plan: &Plan, name: &str) -> tau2_api::job::PhaseJob {
    let cm = plan
        .apply
        .iter()
        .find_map(|a| match a {
            Apply::ConfigMap(c) if c.metadata.name.as_deref() == Some(name) => Some(c),
            _ => None,
        })
        .expect("the attempt's ConfigMap");
    let text = &cm.data.as_ref().expect("data")[tau2_api::job::CONFIG_FILE_NAME];
    serde_json::from_str(text).expect("a PhaseJob")
}

fn cond<'a>(st: &'a Tau2PipelineStatus, type_: &str) -> &'a Condition {
    st.conditions
        .iter()
        .find(|c| c.type_ == type_)
        .unwrap_or_else(|| panic!("condition {type_}"))
}

fn env(job: &Job) -> BTreeMap<String, Value> {
    let c = &job
        .spec
        .as_ref()
        .expect("spec")
        .template
        .spec
        .as_ref()
        .expect("pod")
        .containers[0];
    c.env
        .iter()
        .flatten()
        .map(|e| (e.name.clone(), serde_json::to_value(e).expect("env")))
        .collect()
}

fn events(plan: &Plan) -> Vec<&str> {
    plan.events.iter().map(|e| e.reason.as_str()).collect()
}

#[test]
fn a_new_pipeline_gets_its_token_and_the_first_phase_job() {
    let p = pipeline(&Value::Null, &Value::Null);
    let now = ts("2026-01-01T00:00:00Z");
    let plan = plan(&p, &Observed::default(), &settings(), now);
    assert!(plan.create_token_secret);
    let jobs = jobs(&plan);
    assert_eq!(jobs.len(), 1);
    let job = serde_json::to_value(jobs[0]).expect("json");
    // The whole pod contract, as the API server will see it.
    let expected = yaml(
        r#"
metadata:
  name: recipe-sft-1
  namespace: team-a
  labels:
    app.kubernetes.io/name: tau2-worker
    app.kubernetes.io/instance: recipe
    app.kubernetes.io/component: sft
    app.kubernetes.io/part-of: tau2
    app.kubernetes.io/managed-by: tau2-operator
    tau2.dev/pipeline: recipe
    tau2.dev/phase: sft
    tau2.dev/attempt: "1"
    kueue.x-k8s.io/queue-name: gpu-queue
    team: nlp
  ownerReferences:
    - {apiVersion: tau2.dev/v1alpha1, kind: Tau2Pipeline, name: recipe, uid: 8f1c2a3b-0000-4000-8000-000000000001, controller: true}
spec:
  backoffLimit: 0
  completions: 1
  parallelism: 1
  suspend: true
"#,
    );
    for (section, keys) in [
        (
            "metadata",
            &["name", "namespace", "labels", "ownerReferences"][..],
        ),
        (
            "spec",
            &["backoffLimit", "completions", "parallelism", "suspend"][..],
        ),
    ] {
        for key in keys {
            assert_eq!(
                canon(&job[section][key]),
                canon(&expected[section][key]),
                "{section}.{key}"
            );
        }
    }
    let pod = &job["spec"]["template"]["spec"];
    let c = &pod["containers"][0];
    assert_eq!(c["image"], "registry.example/tau2-worker:v1");
    assert_eq!(c["imagePullPolicy"], "IfNotPresent");
    assert_eq!(
        c["command"],
        json!(["tau2-worker", "sft", "--config", "/etc/tau2/phase.json"])
    );
    assert_eq!(
        c["resources"],
        json!({"limits": {"nvidia.com/gpu": "8", "cpu": "32", "memory": "256Gi"}, "requests": {"cpu": "32", "memory": "256Gi"}})
    );
    assert_eq!(c["terminationMessagePolicy"], "FallbackToLogsOnError");
    assert_eq!(
        c["securityContext"],
        json!({"allowPrivilegeEscalation": false, "readOnlyRootFilesystem": true, "runAsNonRoot": true, "capabilities": {"drop": ["ALL"]}})
    );
    assert_eq!(pod["restartPolicy"], "Never");
    assert_eq!(pod["nodeSelector"], json!({"gpu": "h100"}));
    assert_eq!(pod["tolerations"][0]["key"], "nvidia.com/gpu");
    assert_eq!(pod["priorityClassName"], "training");
    assert_eq!(pod["serviceAccountName"], "tau2-worker");
    assert_eq!(pod["imagePullSecrets"], json!([{"name": "regcred"}]));
    assert_eq!(
        pod["securityContext"]["seccompProfile"]["type"],
        "RuntimeDefault"
    );
    assert_eq!(
        job["spec"]["template"]["metadata"]["labels"].get("kueue.x-k8s.io/queue-name"),
        None,
        "the queue label is on the Job, not its pods"
    );
    let mounts: Vec<(String, String)> = c["volumeMounts"]
        .as_array()
        .expect("mounts")
        .iter()
        .map(|m| {
            (
                m["mountPath"].as_str().unwrap_or("").into(),
                m["subPath"].as_str().unwrap_or("").into(),
            )
        })
        .collect();
    assert!(
        mounts.contains(&("/ckpt".into(), "recipe-8f1c2a3b".into())),
        "{mounts:?}"
    );
    assert!(
        mounts.contains(&("/mnt/pvc/datasets".into(), String::new())),
        "{mounts:?}"
    );
    assert!(mounts.contains(&("/tmp".into(), String::new())));
    let volumes = pod["volumes"].as_array().expect("volumes");
    assert!(
        volumes
            .iter()
            .any(|v| v["persistentVolumeClaim"]["claimName"] == "checkpoints")
    );
    assert!(
        volumes
            .iter()
            .any(|v| v["secret"]["secretName"] == "recipe-progress-token")
    );
    assert!(
        volumes
            .iter()
            .any(|v| v["configMap"]["name"] == "recipe-sft-1")
    );

    let env = env(jobs[0]);
    assert_eq!(env["TAU2_ATTEMPT"]["value"], "1");
    assert_eq!(env["TAU2_PHASE_CONFIG"]["value"], "/etc/tau2/phase.json");
    assert_eq!(
        env["TAU2_PROGRESS_ENDPOINT"]["value"],
        "http://tau2-operator.tau2-system.svc:9090"
    );
    assert_eq!(
        env["TAU2_PROGRESS_TOKEN"]["valueFrom"]["secretKeyRef"],
        json!({"name": "recipe-progress-token", "key": "token", "optional": false})
    );
    assert_eq!(env["HTTPS_PROXY"]["value"], "http://proxy:3128");
    assert!(
        !env.contains_key("TAU2_USER_SIM_API_KEY"),
        "SFT talks to no user simulator"
    );

    let config = config(&plan, "recipe-sft-1");
    assert_eq!(config.attempt, 1);
    assert_eq!(config.model.base, PathBuf::from("/ckpt/base-model"));
    assert_eq!(config.model.init, PathBuf::from("/ckpt/base-model"));
    assert_eq!(
        config.model.source.as_deref(),
        Some("hf://Qwen/Qwen3-4B-Instruct-2507")
    );
    assert_eq!(config.data.dir, PathBuf::from("/mnt/pvc/datasets/tau2"));
    assert_eq!(config.output_dir, PathBuf::from("/ckpt/sft"));
    assert_eq!(config.pipeline.uid, "8f1c2a3b-0000-4000-8000-000000000001");

    let st = &plan.status;
    assert_eq!(st.phase, PipelinePhase::Pending);
    assert_eq!(st.current_phase, Some(PhaseName::Sft));
    assert_eq!(st.observed_generation, Some(3));
    assert_eq!(st.start_time, Some(Time(now)));
    assert_eq!(cond(st, COND_RUNNING).status, "False");
    assert_eq!(cond(st, COND_RUNNING).reason, "JobCreated");
    assert_eq!(cond(st, COND_SUCCEEDED).status, "False");
    let sft = st
        .phases
        .as_ref()
        .and_then(|p| p.sft.as_ref())
        .expect("sft record");
    assert_eq!(
        (sft.state, sft.attempts, sft.job_name.as_deref()),
        (PhaseState::Running, 1, Some("recipe-sft-1"))
    );
    assert_eq!(events(&plan), ["JobCreated"]);
}

use std::path::PathBuf;

#[test]
fn a_running_pod_and_progress_show_in_status() {
    let (_, plan) = run("sft-running");
    assert!(plan.apply.is_empty(), "nothing to create: {:?}", plan.apply);
    assert!(!plan.create_token_secret);
    let st = &plan.status;
    assert_eq!(st.phase, PipelinePhase::Running);
    assert_eq!(cond(st, COND_RUNNING).status, "True");
    assert_eq!(st.progress.as_deref(), Some("120/200"));
    let sft = st
        .phases
        .as_ref()
        .and_then(|p| p.sft.as_ref())
        .expect("sft");
    let progress = sft.progress.as_ref().expect("progress");
    assert_eq!(progress.metrics["tokensPerSecond"], 9100.0);
    assert_eq!(st.checkpoints.len(), 1);
    assert_eq!(st.checkpoints[0].path, "sft/step-100");
    assert_eq!(events(&plan), ["PodRunning", "PipelineRunning"]);
}

#[test]
fn a_finished_phase_starts_the_next_from_its_final_checkpoint() {
    let (_, plan) = run("sft-complete");
    let jobs = jobs(&plan);
    assert_eq!(jobs.len(), 1);
    assert_eq!(jobs[0].metadata.name.as_deref(), Some("recipe-rft-1"));
    let env = env(jobs[0]);
    assert_eq!(
        env["TAU2_USER_SIM_API_KEY"]["valueFrom"]["secretKeyRef"],
        json!({"name": "user-sim-key", "key": "api-key", "optional": false})
    );
    let config = config(&plan, "recipe-rft-1");
    assert_eq!(config.model.init, PathBuf::from("/ckpt/sft/final"));
    assert_eq!(config.output_dir, PathBuf::from("/ckpt/rft"));
    let st = &plan.status;
    let sft = st
        .phases
        .as_ref()
        .and_then(|p| p.sft.as_ref())
        .expect("sft");
    assert_eq!(sft.state, PhaseState::Succeeded);
    assert_eq!(sft.final_checkpoint.as_deref(), Some("sft/final"));
    assert_eq!(st.current_phase, Some(PhaseName::Rft));
    assert!(
        st.checkpoints
            .iter()
            .any(|c| c.path == "sft/final" && c.r#final)
    );
    assert_eq!(
        events(&plan),
        ["JobCreated", "PhaseSucceeded", "PipelinePending"]
    );
}

#[test]
fn disabled_phases_are_skipped_and_the_chain_jumps_over_them() {
    let (mut p, observed, now) = scenario("sft-complete");
    p.spec.phases.rft.enabled = false;
    let plan = plan(&p, &observed, &settings(), now);
    assert_eq!(
        jobs(&plan)[0].metadata.name.as_deref(),
        Some("recipe-grpo-1")
    );
    assert_eq!(
        config(&plan, "recipe-grpo-1").model.init,
        PathBuf::from("/ckpt/sft/final")
    );
    let phases = plan.status.phases.expect("phases");
    assert_eq!(phases.rft.expect("rft").state, PhaseState::Skipped);
}

#[test]
fn a_failed_attempt_backs_off_then_retries_with_the_next_attempt() {
    let (p, observed, now) = scenario("sft-oom");
    let plan1 = plan(&p, &observed, &settings(), now);
    assert!(jobs(&plan1).is_empty(), "still backing off");
    // Failed at 01:00:00, first backoff 10 s, now 01:00:05.
    assert_eq!(plan1.requeue_after, Some(Duration::from_millis(5100)));
    let st = &plan1.status;
    assert_eq!(st.phase, PipelinePhase::Pending);
    let running = cond(st, COND_RUNNING);
    assert_eq!(running.reason, "BackOff");
    assert!(
        running
            .message
            .contains("OOMKilled: exit code 137: CUDA out of memory at step 57"),
        "{}",
        running.message
    );
    assert_eq!(
        events(&plan1),
        ["AttemptFailed", "BackOff", "PipelinePending"]
    );

    let later = plan(&p, &observed, &settings(), ts("2026-01-01T01:00:10Z"));
    let jobs = jobs(&later);
    assert_eq!(jobs[0].metadata.name.as_deref(), Some("recipe-sft-2"));
    assert_eq!(env(jobs[0])["TAU2_ATTEMPT"]["value"], "2");
    assert_eq!(config(&later, "recipe-sft-2").attempt, 2);
    // A retry resumes in the same output directory, from its latest checkpoint.
    assert_eq!(
        config(&later, "recipe-sft-2").output_dir,
        PathBuf::from("/ckpt/sft")
    );
    let sft = later
        .status
        .phases
        .as_ref()
        .and_then(|p| p.sft.as_ref())
        .expect("sft");
    assert_eq!(sft.attempts, 2);
    assert_eq!(cond(&later.status, COND_RUNNING).reason, "Retrying");
}

#[test]
fn backoff_doubles_and_is_capped() {
    let s = Settings::default();
    assert_eq!(backoff(&s, 1), Duration::from_secs(10));
    assert_eq!(backoff(&s, 2), Duration::from_secs(20));
    assert_eq!(backoff(&s, 4), Duration::from_secs(80));
    assert_eq!(backoff(&s, 50), Duration::from_secs(600));
}

#[test]
fn the_last_attempt_failing_fails_the_pipeline_with_the_pods_reason() {
    let (mut p, mut observed, now) = scenario("sft-oom");
    // backoffLimit 2: attempt 3 is the last.
    let status = p.status.as_mut().expect("status");
    status
        .phases
        .as_mut()
        .and_then(|ph| ph.sft.as_mut())
        .expect("sft")
        .attempts = 3;
    for o in [
        &mut observed.jobs[0].metadata,
        &mut observed.pods[0].metadata,
    ] {
        o.labels
            .as_mut()
            .expect("labels")
            .insert("tau2.dev/attempt".into(), "3".into());
        o.labels
            .as_mut()
            .expect("labels")
            .insert("batch.kubernetes.io/job-name".into(), "recipe-sft-3".into());
    }
    observed.jobs[0].metadata.name = Some("recipe-sft-3".into());
    let plan = plan(&p, &observed, &settings(), now);
    assert!(plan.apply.is_empty());
    let st = &plan.status;
    assert_eq!(st.phase, PipelinePhase::Failed);
    let failed = cond(st, COND_FAILED);
    assert_eq!(
        (failed.status.as_str(), failed.reason.as_str()),
        ("True", "OOMKilled")
    );
    assert_eq!(
        failed.message,
        "phase sft failed after 3 attempts: OOMKilled: exit code 137: CUDA out of memory at step 57"
    );
    assert_eq!(cond(st, COND_SUCCEEDED).status, "False");
    assert_eq!(
        st.phases
            .as_ref()
            .and_then(|p| p.sft.as_ref())
            .map(|s| s.state),
        Some(PhaseState::Failed)
    );
    assert!(st.completion_time.is_some());
    assert_eq!(events(&plan), ["PhaseFailed", "PipelineFailed"]);
    assert!(plan.events.iter().all(|e| e.warning));
}

#[test]
fn an_unschedulable_pod_shows_in_status_and_never_times_out() {
    let (_, plan) = run("unschedulable");
    assert!(plan.apply.is_empty() && plan.suspensions.is_empty());
    let st = &plan.status;
    assert_eq!(st.phase, PipelinePhase::Pending);
    let running = cond(st, COND_RUNNING);
    assert_eq!(
        (running.status.as_str(), running.reason.as_str()),
        ("False", "Unschedulable")
    );
    assert!(
        running
            .message
            .contains("0/2 nodes are available: 2 Insufficient nvidia.com/gpu")
    );
    let sft = st
        .phases
        .as_ref()
        .and_then(|p| p.sft.as_ref())
        .expect("sft");
    assert!(
        sft.message
            .as_deref()
            .is_some_and(|m| m.contains("Insufficient nvidia.com/gpu"))
    );
    assert_eq!(events(&plan), ["Unschedulable"]);
    assert!(plan.events[0].warning);
}

#[test]
fn an_image_pull_error_blocks_then_fails_the_attempt_after_the_timeout() {
    let (p, observed, now) = scenario("image-pull");
    let plan1 = plan(&p, &observed, &settings(), now);
    assert_eq!(cond(&plan1.status, COND_RUNNING).reason, "ImagePullBackOff");
    assert_eq!(
        plan1.requeue_after,
        Some(Duration::from_secs(300) + Duration::from_millis(100))
    );

    // 10 minutes after the pod was created: the attempt failed; the Job is
    // stopped and the next attempt follows after the backoff.
    let plan2 = plan(&p, &observed, &settings(), ts("2026-01-01T00:10:00Z"));
    assert_eq!(
        plan2.suspensions,
        [Suspension {
            job: "recipe-sft-1".into(),
            suspend: true
        }]
    );
    assert_eq!(cond(&plan2.status, COND_RUNNING).reason, "BackOff");

    let mut last = p.clone();
    last.spec.phases.sft.backoff_limit = 0;
    let plan3 = plan(&last, &observed, &settings(), ts("2026-01-01T00:10:00Z"));
    assert_eq!(plan3.status.phase, PipelinePhase::Failed);
    assert_eq!(cond(&plan3.status, COND_FAILED).reason, "ImagePullBackOff");
}

#[test]
fn suspending_suspends_the_running_job_and_resuming_unsuspends_it() {
    let (mut p, observed, now) = scenario("sft-running");
    p.spec.suspend = true;
    let plan1 = plan(&p, &observed, &settings(), now);
    assert_eq!(
        plan1.suspensions,
        [Suspension {
            job: "recipe-sft-1".into(),
            suspend: true
        }]
    );
    assert_eq!(plan1.status.phase, PipelinePhase::Suspended);
    assert_eq!(cond(&plan1.status, COND_SUSPENDED).status, "True");
    assert!(events(&plan1).contains(&"PipelineSuspended"));

    let (p, observed, now) = scenario("suspended-by-pipeline");
    let plan2 = plan(&p, &observed, &settings(), now);
    assert_eq!(
        plan2.suspensions,
        [Suspension {
            job: "recipe-sft-1".into(),
            suspend: false
        }]
    );
    assert_eq!(cond(&plan2.status, COND_SUSPENDED).status, "False");
    assert_eq!(cond(&plan2.status, COND_RUNNING).reason, "Resuming");
    assert!(events(&plan2).contains(&"PipelineResumed"));
}

#[test]
fn a_suspended_pipeline_creates_its_job_suspended() {
    let mut p = pipeline(&Value::Null, &Value::Null);
    p.spec.suspend = true;
    let plan = plan(
        &p,
        &Observed::default(),
        &settings(),
        ts("2026-01-01T00:00:00Z"),
    );
    let job = jobs(&plan)[0];
    assert_eq!(job.spec.as_ref().and_then(|s| s.suspend), Some(true));
    assert_eq!(
        job.metadata
            .annotations
            .as_ref()
            .map(|a| a[ANNOTATION_SUSPENDED_BY_PIPELINE].as_str()),
        Some("true")
    );
    assert_eq!(plan.status.phase, PipelinePhase::Suspended);
}

#[test]
fn a_queued_pipeline_creates_its_job_suspended_for_kueue_to_admit() {
    let queued = pipeline(&Value::Null, &Value::Null);
    let mut unqueued = queued.clone();
    if let Some(labels) = unqueued.metadata.labels.as_mut() {
        labels.remove(build::LABEL_KUEUE_QUEUE);
    }
    let now = ts("2026-01-01T00:00:00Z");
    for (p, suspended) in [(&queued, true), (&unqueued, false)] {
        let plan = plan(p, &Observed::default(), &settings(), now);
        let job = jobs(&plan)[0];
        assert_eq!(job.spec.as_ref().and_then(|s| s.suspend), Some(suspended));
        assert_eq!(
            job.metadata.annotations, None,
            "Kueue's suspension, not the pipeline's: the operator never unsuspends it"
        );
        assert_eq!(plan.status.phase, PipelinePhase::Pending);
    }
}

#[test]
fn a_job_kueue_suspended_is_left_to_kueue() {
    let (_, plan) = run("kueue-suspended");
    assert!(
        plan.suspensions.is_empty(),
        "never unsuspend what Kueue holds"
    );
    assert_eq!(plan.status.phase, PipelinePhase::Pending);
    assert_eq!(cond(&plan.status, COND_RUNNING).reason, "JobSuspended");
}

#[test]
fn a_job_of_a_deleted_namesake_is_not_ours() {
    let (_, plan) = run("namesake-job");
    let jobs = jobs(&plan);
    assert_eq!(jobs.len(), 1, "our own first Job is created");
    assert_eq!(jobs[0].metadata.name.as_deref(), Some("recipe-sft-1"));
}

#[test]
fn a_recorded_attempt_whose_job_is_missing_is_recreated_under_the_same_name() {
    // What a restarted operator, or one whose Job was deleted by hand, sees:
    // the same deterministic name, so server-side apply never duplicates it.
    let (p, mut observed, now) = scenario("sft-running");
    observed.jobs.clear();
    observed.pods.clear();
    let plan = plan(&p, &observed, &settings(), now);
    let names: Vec<_> = jobs(&plan)
        .iter()
        .map(|j| j.metadata.name.clone())
        .collect();
    assert_eq!(names, [Some("recipe-sft-1".to_string())]);
}

#[test]
fn the_last_phase_succeeding_succeeds_the_pipeline_with_results_from_the_pod() {
    let (_, plan) = run("eval-complete");
    assert!(plan.apply.is_empty());
    let st = &plan.status;
    assert_eq!(st.phase, PipelinePhase::Succeeded);
    assert_eq!(cond(st, COND_SUCCEEDED).status, "True");
    assert_eq!(cond(st, COND_FAILED).status, "False");
    assert_eq!(cond(st, COND_RUNNING).status, "False");
    let results = st
        .results
        .as_ref()
        .expect("results recovered from the termination message");
    assert_eq!(
        (
            results.k,
            results.overall.pass_at1,
            results.overall.pass_at_k
        ),
        (4, 0.36, 0.59)
    );
    assert_eq!(st.current_phase, Some(PhaseName::Eval));
    assert_eq!(events(&plan), ["PhaseSucceeded", "PipelineSucceeded"]);
}

#[test]
fn terminal_states_stay_terminal_and_the_ttl_deletes_the_pipeline() {
    let (mut p, _, _) = scenario("eval-complete");
    let (_, done) = run("eval-complete");
    p.status = Some(done.status.clone());
    let now = ts("2026-01-02T00:00:00Z");
    // Every Job gone (deleted by hand): nothing comes back.
    let plan1 = plan(&p, &Observed::default(), &settings(), now);
    assert!(plan1.apply.is_empty() && !plan1.create_token_secret && plan1.events.is_empty());
    assert_eq!(plan1.status.phase, PipelinePhase::Succeeded);
    assert!(!plan1.delete_pipeline);

    p.spec.ttl_seconds_after_finished = Some(60);
    let plan2 = plan(&p, &Observed::default(), &settings(), now);
    assert_eq!(
        plan2.requeue_after,
        Some(Duration::from_secs(60) + Duration::from_millis(100))
    );
    assert!(!plan2.delete_pipeline);
    let plan3 = plan(
        &p,
        &Observed::default(),
        &settings(),
        ts("2026-01-02T00:01:00Z"),
    );
    assert!(plan3.delete_pipeline);
}

#[test]
fn stale_progress_of_an_older_attempt_is_ignored() {
    let (mut p, mut observed, now) = scenario("sft-running");
    let status = p.status.as_mut().expect("status");
    status
        .phases
        .as_mut()
        .and_then(|ph| ph.sft.as_mut())
        .expect("sft")
        .attempts = 2;
    observed.jobs[0].metadata.name = Some("recipe-sft-2".into());
    observed.jobs[0]
        .metadata
        .labels
        .as_mut()
        .expect("labels")
        .insert("tau2.dev/attempt".into(), "2".into());
    let plan = plan(&p, &observed, &settings(), now);
    let sft = plan
        .status
        .phases
        .as_ref()
        .and_then(|p| p.sft.as_ref())
        .expect("sft");
    assert_eq!(sft.progress, None);
}

#[test]
fn an_operator_created_claim_is_applied_with_its_retention() {
    let p = pipeline(
        &json!({"storage": {"existingClaim": null, "volumeClaimTemplate": {"spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "100Gi"}}}, "whenDeleted": "Delete"}}}),
        &Value::Null,
    );
    let plan = plan(
        &p,
        &Observed::default(),
        &settings(),
        ts("2026-01-01T00:00:00Z"),
    );
    let Some(Apply::Claim(claim)) = plan.apply.first() else {
        panic!("the claim comes first: {:?}", plan.apply)
    };
    assert_eq!(claim.metadata.name.as_deref(), Some("recipe-checkpoints"));
    assert!(
        claim.metadata.owner_references.is_some(),
        "Delete: owned, so it goes with the pipeline"
    );
    let job = serde_json::to_value(jobs(&plan)[0]).expect("json");
    let volumes = job["spec"]["template"]["spec"]["volumes"]
        .as_array()
        .expect("volumes")
        .clone();
    assert!(
        volumes
            .iter()
            .any(|v| v["persistentVolumeClaim"]["claimName"] == "recipe-checkpoints")
    );
}

#[test]
fn names_fit_kubernetes_limits() {
    let longest = "a".repeat(46);
    let name = build::attempt_name(&longest, PhaseName::Grpo, 101);
    assert!(
        name.len() + 6 <= 63,
        "pod names add '-xxxxx': {}",
        name.len()
    );
    assert!(crate::tokens::secret_name(&longest).len() <= 63);
    assert!(build::claim_name(&longest).len() <= 63);
}

#[test]
fn pod_diagnosis_reads_reasons() {
    use k8s_openapi::api::core::v1::Pod;
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": "p"},
        "status": {"phase": "Failed", "reason": "Evicted", "message": "The node was low on resource: memory."}
    }))
    .expect("pod");
    let state = pods::pod_state(&[&pod]);
    assert_eq!(
        state,
        PodState::Failed(pods::Terminated {
            reason: "Evicted".into(),
            message: "The node was low on resource: memory.".into(),
            exit_code: None
        })
    );
    assert_eq!(pods::condition_reason("Init:Error"), "Init:Error");
    assert_eq!(pods::condition_reason("0bad reason!"), "Pod0badreason");
}
