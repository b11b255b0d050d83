//! Progress tokens against the real API server: the reflector-fed registry
//! authorizes a pipeline's token as soon as its Secret exists, refuses others,
//! and forgets a deleted Secret.

mod common;

use std::time::Duration;

use common::*;
use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use kube::api::{DeleteParams, PostParams};
use tau2_api::crd::Tau2Pipeline;
use tau2_api::progress::progress_report::Event;
use tau2_api::progress::{Finished, ProgressReport};
use tau2_operator::progress::PipelineKey;
use tau2_operator::tokens::{self, AuthError, TokenRegistry};

fn report(p: &PipelineKey) -> ProgressReport {
    ProgressReport {
        namespace: p.namespace.clone(),
        pipeline: p.name.clone(),
        pipeline_uid: p.uid.clone(),
        phase: "sft".into(),
        attempt: 1,
        seq: 1,
        unix_millis: 1_800_000_000_000,
        event: Some(Event::Finished(Finished::default())),
    }
}

/// Polls `f` until it returns true, for at most 30 s.
async fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !f() {
        assert!(tokio::time::Instant::now() < deadline, "{what} within 30 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
#[ignore = "needs a control plane: run tests/run.sh"]
async fn the_reflector_fed_registry_authorizes_real_token_secrets() -> TestResult {
    let (client, ns) = with_crd("tokens").await;
    let pipelines: Api<Tau2Pipeline> = Api::namespaced(client.clone(), &ns);
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
    let p: Tau2Pipeline = serde_json::from_value(minimal_pipeline("recipe"))?;
    let p = pipelines.create(&PostParams::default(), &p).await?;
    let key = PipelineKey::of(&p).ok_or("stored pipeline has a key")?;

    // The registry starts before the Secret exists, as after an operator restart.
    let (registry, driver) = TokenRegistry::watch(client.clone());
    let driver = tokio::spawn(driver);
    assert!(registry.ready_within(Duration::from_secs(30)).await);

    let secret = secrets
        .create(&PostParams::default(), &tokens::build_secret(&p)?)
        .await?;
    let token = String::from_utf8(
        secret
            .data
            .as_ref()
            .and_then(|d| d.get(tokens::TOKEN_KEY))
            .ok_or("token in the stored Secret")?
            .0
            .clone(),
    )?;
    assert_eq!(secret.immutable, Some(true));
    let bearer = format!("Bearer {token}");
    eventually("the token is known", || {
        tokens::authorize(&registry, Some(&bearer), &report(&key)).is_ok()
    })
    .await;
    assert_eq!(
        tokens::authorize(&registry, Some(&bearer), &report(&key)),
        Ok(key.clone())
    );

    let wrong = tokens::authorize(&registry, Some("Bearer nope"), &report(&key));
    assert!(matches!(wrong, Err(AuthError::TokenMismatch { .. })));

    secrets
        .delete(&tokens::secret_name("recipe"), &DeleteParams::default())
        .await?;
    eventually("a deleted Secret's token stops working", || {
        matches!(
            tokens::authorize(&registry, Some(&bearer), &report(&key)),
            Err(AuthError::UnknownPipeline { .. })
        )
    })
    .await;

    // The same Secret without the operator's labels is not watched at all.
    let mut unlabelled = secret.clone();
    unlabelled.metadata = kube::api::ObjectMeta {
        name: secret.metadata.name.clone(),
        owner_references: secret.metadata.owner_references.clone(),
        ..Default::default()
    };
    secrets.create(&PostParams::default(), &unlabelled).await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(matches!(
        tokens::authorize(&registry, Some(&bearer), &report(&key)),
        Err(AuthError::UnknownPipeline { .. })
    ));

    driver.abort();
    delete_namespace(&client, &ns).await;
    Ok(())
}
