//! `crds/` and the Helm chart's `crds/` must hold exactly what
//! `cargo run -p tau2-operator -- crd` writes.

#[test]
fn committed_crds_are_up_to_date() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let generated = tau2_operator::crdgen::crd_yaml().expect("the CRD serialises");
    for path in tau2_operator::crdgen::crd_paths(&root) {
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            committed == generated,
            "{} is stale: run `cargo run -p tau2-operator -- crd` and commit the result",
            path.display()
        );
    }
}
