//! Per-pipeline progress tokens: a Secret the operator creates for each
//! pipeline and mounts into its worker pods, and the check that a progress
//! report carries its own pipeline's token.
//!
//! The reconciler applies [`build_secret`]'s Secret only when none exists, so
//! a token never rotates under running pods; it is immutable and owned by the
//! pipeline, so it goes when the pipeline goes.
//!
//! Every replica keeps the tokens in a [`TokenRegistry`] fed by a reflector on
//! the labelled Secrets, so any replica can verify a report right after a
//! restart, without waiting for reconciles. A report names its pipeline
//! (namespace, name, uid); [`authorize`] looks up that pipeline's token and
//! compares it with the bearer token in constant time, so a token opens
//! exactly one pipeline object.

use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use futures::StreamExt;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource, ResourceExt};
use subtle::ConstantTimeEq;
use tau2_api::crd::Tau2Pipeline;
use tau2_api::progress::ProgressReport;

use crate::progress::PipelineKey;

/// The key of the token in the Secret's data (and the file name where it is mounted).
pub const TOKEN_KEY: &str = "token";
/// Label naming the pipeline a Secret belongs to.
pub const PIPELINE_LABEL: &str = "tau2.dev/pipeline";
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
pub const MANAGED_BY: &str = "tau2-operator";
/// Random bytes in a token (256 bits).
pub const TOKEN_BYTES: usize = 32;

/// The name of a pipeline's token Secret.
pub fn secret_name(pipeline: &str) -> String {
    format!("{pipeline}-progress-token")
}

/// Selects the operator's token Secrets.
pub fn label_selector() -> String {
    format!("{MANAGED_BY_LABEL}={MANAGED_BY},{PIPELINE_LABEL}")
}

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("the pipeline has no {0}: it must come from the API server")]
    MissingMetadata(&'static str),
    #[error("the operating system's random number generator failed: {0}")]
    Random(getrandom::Error),
}

/// A fresh token: 32 bytes from the OS CSPRNG, base64url without padding.
pub fn new_token() -> Result<String, TokenError> {
    let mut bytes = [0u8; TOKEN_BYTES];
    getrandom::fill(&mut bytes).map_err(TokenError::Random)?;
    Ok(URL_SAFE_NO_PAD.encode(bytes))
}

/// The token Secret of a pipeline read from the API server, with a new token.
pub fn build_secret(p: &Tau2Pipeline) -> Result<Secret, TokenError> {
    let name = p
        .metadata
        .name
        .as_deref()
        .ok_or(TokenError::MissingMetadata("name"))?;
    let namespace = p
        .metadata
        .namespace
        .clone()
        .ok_or(TokenError::MissingMetadata("namespace"))?;
    let owner = p
        .controller_owner_ref(&())
        .ok_or(TokenError::MissingMetadata("uid"))?;
    let token = new_token()?;
    Ok(Secret {
        metadata: ObjectMeta {
            name: Some(secret_name(name)),
            namespace: Some(namespace),
            labels: Some(BTreeMap::from([
                (PIPELINE_LABEL.to_owned(), name.to_owned()),
                (MANAGED_BY_LABEL.to_owned(), MANAGED_BY.to_owned()),
            ])),
            owner_references: Some(vec![owner]),
            ..ObjectMeta::default()
        },
        immutable: Some(true),
        type_: Some("Opaque".to_owned()),
        data: Some(BTreeMap::from([(
            TOKEN_KEY.to_owned(),
            ByteString(token.into_bytes()),
        )])),
        ..Secret::default()
    })
}

/// Why a report was not authorized. The client only ever learns
/// "unauthenticated"; [`AuthError::reason`] is the metric label.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("no `authorization` header")]
    MissingToken,
    #[error("the `authorization` header is not `Bearer <token>`")]
    MalformedHeader,
    #[error("no token is known for pipeline {namespace}/{name}")]
    UnknownPipeline { namespace: String, name: String },
    #[error("the token is not the one of pipeline {namespace}/{name}")]
    TokenMismatch { namespace: String, name: String },
    #[error("pipeline {namespace}/{name} is now uid {current}, not {reported}")]
    UidMismatch {
        namespace: String,
        name: String,
        current: String,
        reported: String,
    },
}

impl AuthError {
    pub fn reason(&self) -> &'static str {
        match self {
            AuthError::MissingToken => "missing_token",
            AuthError::MalformedHeader => "malformed_header",
            AuthError::UnknownPipeline { .. } => "unknown_pipeline",
            AuthError::TokenMismatch { .. } => "token_mismatch",
            AuthError::UidMismatch { .. } => "uid_mismatch",
        }
    }
}

/// A pipeline's token as a registry knows it.
#[derive(Clone, PartialEq, Eq)]
pub struct PipelineToken {
    pub key: PipelineKey,
    token: Vec<u8>,
}

impl PipelineToken {
    pub fn new(key: PipelineKey, token: impl Into<Vec<u8>>) -> PipelineToken {
        PipelineToken {
            key,
            token: token.into(),
        }
    }
}

impl std::fmt::Debug for PipelineToken {
    // Never print the token itself.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PipelineToken")
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

/// Where [`authorize`] finds a pipeline's token.
pub trait TokenView {
    fn token_of(&self, namespace: &str, pipeline: &str) -> Option<PipelineToken>;
}

/// A fixed set of tokens (tests, tools).
impl TokenView for [PipelineToken] {
    fn token_of(&self, namespace: &str, pipeline: &str) -> Option<PipelineToken> {
        self.iter()
            .find(|t| t.key.namespace == namespace && t.key.name == pipeline)
            .cloned()
    }
}

/// The token a Secret holds, if it is a well-formed token Secret of the
/// operator: labelled, named after its controlling Tau2Pipeline, non-empty.
pub fn token_of_secret(secret: &Secret) -> Option<PipelineToken> {
    let labels = secret.metadata.labels.as_ref()?;
    if labels.get(MANAGED_BY_LABEL).map(String::as_str) != Some(MANAGED_BY) {
        return None;
    }
    let owner = secret
        .metadata
        .owner_references
        .as_ref()?
        .iter()
        .find(|o| o.controller == Some(true))?;
    let is_pipeline = owner.kind == "Tau2Pipeline"
        && owner.api_version.split('/').next() == Some(Tau2Pipeline::group(&()).as_ref());
    if !is_pipeline
        || labels.get(PIPELINE_LABEL) != Some(&owner.name)
        || secret.metadata.name.as_deref() != Some(secret_name(&owner.name).as_str())
    {
        return None;
    }
    let token = &secret.data.as_ref()?.get(TOKEN_KEY)?.0;
    if token.is_empty() {
        return None;
    }
    Some(PipelineToken {
        key: PipelineKey {
            namespace: secret.metadata.namespace.clone()?,
            name: owner.name.clone(),
            uid: owner.uid.clone(),
        },
        token: token.clone(),
    })
}

/// The token of an `authorization` header value `Bearer <token>`.
pub fn parse_bearer(header: Option<&str>) -> Result<&str, AuthError> {
    let header = header.ok_or(AuthError::MissingToken)?;
    let (scheme, token) = header
        .trim()
        .split_once(' ')
        .ok_or(AuthError::MalformedHeader)?;
    let token = token.trim();
    if !scheme.eq_ignore_ascii_case("bearer") || token.is_empty() {
        return Err(AuthError::MalformedHeader);
    }
    Ok(token)
}

/// Checks that `authorization` (the header's value) carries the token of
/// exactly the pipeline the report names: its namespace, name and uid.
pub fn authorize<V: TokenView + ?Sized>(
    view: &V,
    authorization: Option<&str>,
    report: &ProgressReport,
) -> Result<PipelineKey, AuthError> {
    let bearer = parse_bearer(authorization)?;
    let (namespace, name) = (report.namespace.as_str(), report.pipeline.as_str());
    let known = view
        .token_of(namespace, name)
        .ok_or_else(|| AuthError::UnknownPipeline {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
        })?;
    // Constant time, so response timing tells nothing about the token.
    if !bool::from(bearer.as_bytes().ct_eq(&known.token)) {
        return Err(AuthError::TokenMismatch {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
        });
    }
    // The same name may belong to a newer pipeline object; its token is new
    // too, so this only fails on a report that names the wrong uid.
    if known.key.uid != report.pipeline_uid {
        return Err(AuthError::UidMismatch {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            current: known.key.uid,
            reported: report.pipeline_uid.clone(),
        });
    }
    Ok(known.key)
}

/// The tokens of all pipelines, from a reflector store of the token Secrets.
#[derive(Clone)]
pub struct TokenRegistry {
    store: Store<Secret>,
}

impl TokenRegistry {
    pub fn from_store(store: Store<Secret>) -> TokenRegistry {
        TokenRegistry { store }
    }

    /// A registry holding these Secrets only (tests, or tools without a cluster).
    pub fn from_secrets(secrets: impl IntoIterator<Item = Secret>) -> TokenRegistry {
        let mut writer = reflector::store::Writer::<Secret>::default();
        writer.apply_watcher_event(&watcher::Event::Init);
        for secret in secrets {
            writer.apply_watcher_event(&watcher::Event::InitApply(secret));
        }
        writer.apply_watcher_event(&watcher::Event::InitDone);
        let store = writer.as_reader();
        // The store lives on in its readers; the writer may go.
        TokenRegistry { store }
    }

    /// A registry fed by a reflector on the token Secrets of all namespaces,
    /// and the future that drives the reflector: spawn it for the process's
    /// lifetime. Watch errors are retried with backoff and logged.
    pub fn watch(client: Client) -> (TokenRegistry, impl Future<Output = ()> + Send + 'static) {
        let api: Api<Secret> = Api::all(client);
        let config = watcher::Config::default().labels(&label_selector());
        let (store, writer) = reflector::store();
        let driver = async move {
            let stream = watcher(api, config)
                .default_backoff()
                // Managed fields are most of a small Secret's size, and unused.
                .modify(|s: &mut Secret| s.managed_fields_mut().clear())
                .reflect(writer)
                .touched_objects();
            let mut stream = std::pin::pin!(stream);
            while let Some(event) = stream.next().await {
                if let Err(error) = event {
                    tracing::warn!(%error, "watching progress token Secrets");
                }
            }
        };
        (TokenRegistry { store }, driver)
    }

    /// Whether the first list of Secrets arrived, waiting at most `timeout`.
    pub async fn ready_within(&self, timeout: Duration) -> bool {
        matches!(
            tokio::time::timeout(timeout, self.store.wait_until_ready()).await,
            Ok(Ok(()))
        )
    }
}

impl TokenView for TokenRegistry {
    fn token_of(&self, namespace: &str, pipeline: &str) -> Option<PipelineToken> {
        let secret = self
            .store
            .get(&ObjectRef::new(&secret_name(pipeline)).within(namespace))?;
        token_of_secret(&secret)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tau2_api::progress::progress_report::Event;

    type TestResult = Result<(), Box<dyn std::error::Error>>;

    fn pipeline(ns: &str, name: &str, uid: &str) -> Tau2Pipeline {
        let mut p: Tau2Pipeline = serde_json::from_value(serde_json::json!({
            "apiVersion": "tau2.dev/v1alpha1",
            "kind": "Tau2Pipeline",
            "metadata": {"name": name, "namespace": ns, "uid": uid},
            "spec": {
                "model": {"uri": "builtin://tiny"},
                "userSimulator": {"endpoint": "http://u/v1", "model": "m"},
                "storage": {"existingClaim": "c"}
            }
        }))
        .expect("valid pipeline");
        p.metadata.uid = Some(uid.to_owned());
        p
    }

    fn token(secret: &Secret) -> String {
        let bytes = &secret.data.as_ref().expect("data")[TOKEN_KEY].0;
        String::from_utf8(bytes.clone()).expect("utf-8")
    }

    fn report(ns: &str, name: &str, uid: &str) -> ProgressReport {
        ProgressReport {
            namespace: ns.into(),
            pipeline: name.into(),
            pipeline_uid: uid.into(),
            phase: "sft".into(),
            attempt: 1,
            seq: 1,
            unix_millis: 1_800_000_000_000,
            event: Some(Event::Finished(Default::default())),
        }
    }

    /// Two pipelines' Secrets in a registry, and the token of the first.
    fn registry() -> Result<(TokenRegistry, String, String), TokenError> {
        let a = build_secret(&pipeline("ns", "a", "uid-a"))?;
        let b = build_secret(&pipeline("ns", "b", "uid-b"))?;
        let (ta, tb) = (token(&a), token(&b));
        Ok((TokenRegistry::from_secrets([a, b]), ta, tb))
    }

    #[test]
    fn secret_is_labelled_owned_immutable_and_random() -> TestResult {
        let p = pipeline("ns", "recipe", "uid-1");
        let s = build_secret(&p)?;
        assert_eq!(s.metadata.name.as_deref(), Some("recipe-progress-token"));
        assert_eq!(s.metadata.namespace.as_deref(), Some("ns"));
        let labels = s.metadata.labels.clone().unwrap_or_default();
        assert_eq!(labels[PIPELINE_LABEL], "recipe");
        assert_eq!(labels[MANAGED_BY_LABEL], "tau2-operator");
        let owner = &s.metadata.owner_references.clone().unwrap_or_default()[0];
        assert_eq!(
            (owner.kind.as_str(), owner.uid.as_str()),
            ("Tau2Pipeline", "uid-1")
        );
        assert_eq!(owner.controller, Some(true));
        assert_eq!(s.immutable, Some(true));
        let t = token(&s);
        assert_eq!(t.len(), 43, "32 bytes in unpadded base64url");
        assert_eq!(URL_SAFE_NO_PAD.decode(&t)?.len(), TOKEN_BYTES);
        assert_ne!(t, token(&build_secret(&p)?), "each secret gets a new token");
        let key = token_of_secret(&s).map(|t| t.key);
        assert_eq!(key, PipelineKey::of(&p));
        Ok(())
    }

    #[test]
    fn build_secret_needs_a_stored_pipeline() {
        let mut p = pipeline("ns", "a", "u");
        p.metadata.uid = None;
        assert!(matches!(
            build_secret(&p),
            Err(TokenError::MissingMetadata("uid"))
        ));
    }

    #[test]
    fn the_right_token_authorizes_its_pipeline() -> TestResult {
        let (reg, ta, tb) = registry()?;
        let key = authorize(
            &reg,
            Some(&format!("Bearer {ta}")),
            &report("ns", "a", "uid-a"),
        )?;
        assert_eq!(key.uid, "uid-a");
        let key = authorize(
            &reg,
            Some(&format!("bearer  {tb} ")),
            &report("ns", "b", "uid-b"),
        )?;
        assert_eq!(key.name, "b");
        Ok(())
    }

    #[test]
    fn wrong_missing_or_foreign_tokens_are_refused() -> TestResult {
        let (reg, ta, tb) = registry()?;
        let a = report("ns", "a", "uid-a");
        let auth =
            |h: Option<&str>, r: &ProgressReport| authorize(&reg, h, r).map_err(|e| e.reason());
        assert_eq!(auth(None, &a), Err("missing_token"));
        assert_eq!(auth(Some(&ta), &a), Err("malformed_header"));
        assert_eq!(auth(Some("Basic abc"), &a), Err("malformed_header"));
        assert_eq!(auth(Some("Bearer "), &a), Err("malformed_header"));
        assert_eq!(auth(Some("Bearer wrong"), &a), Err("token_mismatch"));
        // b's token does not open a.
        assert_eq!(
            auth(Some(&format!("Bearer {tb}")), &a),
            Err("token_mismatch")
        );
        // a's token with a different uid (a deleted and recreated pipeline).
        let stale = report("ns", "a", "uid-old");
        assert_eq!(
            auth(Some(&format!("Bearer {ta}")), &stale),
            Err("uid_mismatch")
        );
        // Same name in another namespace.
        let other_ns = report("other", "a", "uid-a");
        assert_eq!(
            auth(Some(&format!("Bearer {ta}")), &other_ns),
            Err("unknown_pipeline")
        );
        Ok(())
    }

    #[test]
    fn only_well_formed_operator_secrets_count() -> TestResult {
        let good = build_secret(&pipeline("ns", "a", "uid-a"))?;
        assert!(token_of_secret(&good).is_some());
        let mut unlabelled = good.clone();
        unlabelled.metadata.labels = None;
        let mut foreign_owner = good.clone();
        if let Some(o) = foreign_owner.metadata.owner_references.as_mut() {
            o[0].kind = "Deployment".into();
            o[0].api_version = "apps/v1".into();
        }
        let mut renamed = good.clone();
        renamed.metadata.name = Some("x-progress-token".into());
        let mut empty = good.clone();
        empty.data = Some(BTreeMap::from([(TOKEN_KEY.to_owned(), ByteString(vec![]))]));
        for bad in [unlabelled, foreign_owner, renamed, empty] {
            assert!(token_of_secret(&bad).is_none(), "{:?}", bad.metadata);
        }
        Ok(())
    }

    #[test]
    fn a_fixed_list_is_a_view_too() {
        let key = PipelineKey {
            namespace: "ns".into(),
            name: "a".into(),
            uid: "u".into(),
        };
        let list = [PipelineToken::new(key.clone(), "t0k")];
        assert_eq!(
            authorize(&list[..], Some("Bearer t0k"), &report("ns", "a", "u")),
            Ok(key)
        );
        assert!(
            !format!("{:?}", list[0]).contains("t0k"),
            "Debug hides the token"
        );
    }
}
