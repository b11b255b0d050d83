use super::*;

fn example(name: &str) -> Tau2Pipeline {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../manifests/examples")
        .join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn the_recipe_example_keeps_the_recipe_hyper_parameters() {
    let p = example("pipeline.yaml");
    assert_eq!(p.spec.model.uri, "hf://Qwen/Qwen3-4B-Instruct-2507");
    assert_eq!(p.spec.phases.grpo.params, GrpoParams::default());
    assert_eq!(p.spec.phases.eval.params, EvalParams::default());
    assert_eq!(
        p.spec.phases.sft.resources.as_ref().map(|r| r.gpus),
        Some(4)
    );
    assert!(p.spec.phases.enabled_phases().eq(PhaseName::ALL));
}

#[test]
fn the_tiny_example_needs_no_gpu_and_no_service() {
    let p = example("tiny-pipeline.yaml");
    assert_eq!(p.spec.worker.resources.gpus, 0);
    assert_eq!(
        p.spec.user_simulator.map(|u| u.mode),
        Some(crate::user_sim::UserSimulatorMode::Scripted)
    );
    assert_eq!(p.spec.model.uri, "builtin://tiny");
    assert_eq!(p.spec.tau2.domains, [Domain::Mock]);
}

#[test]
fn phases_run_in_pipeline_order_and_skip_disabled_ones() {
    let mut phases = Phases::default();
    phases.rft.enabled = false;
    assert_eq!(
        phases.enabled_phases().collect::<Vec<_>>(),
        [PhaseName::Sft, PhaseName::Grpo, PhaseName::Eval]
    );
    assert_eq!(phases.backoff_limit(PhaseName::Grpo), 3);
}

#[test]
fn terminal_states_are_succeeded_and_failed_only() {
    use PipelinePhase::*;
    let terminal: Vec<_> = [Pending, Running, Succeeded, Failed, Suspended]
        .into_iter()
        .filter(|p| p.is_terminal())
        .collect();
    assert_eq!(terminal, [Succeeded, Failed]);
}
