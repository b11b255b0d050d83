//! PLACEHOLDER, to be replaced on merge by the progress service's `tokens`
//! module (issue 6, item 4), which owns the token format and its checks. Only
//! the two functions the reconciler calls are here.

use std::collections::BTreeMap;
use std::io::Read;

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::{Resource, ResourceExt};
use tau2_api::crd::Tau2Pipeline;

/// The Secret holding a pipeline's progress token (key `token`).
pub fn secret_name(pipeline: &str) -> String {
    format!("{pipeline}-progress-token")
}

/// A new Secret with a random token for the pipeline, owned by it.
pub fn build_secret(p: &Tau2Pipeline) -> Secret {
    let mut bytes = [0u8; 32];
    let random = std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut bytes));
    if random.is_err() {
        // Placeholder only; the real module uses a CSPRNG.
        use std::hash::{BuildHasher, RandomState};
        for (i, chunk) in bytes.chunks_mut(8).enumerate() {
            chunk.copy_from_slice(&RandomState::new().hash_one(i).to_le_bytes());
        }
    }
    let token: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    Secret {
        metadata: ObjectMeta {
            name: Some(secret_name(&p.name_any())),
            namespace: p.namespace(),
            owner_references: p.controller_owner_ref(&()).map(|o| vec![o]),
            labels: Some(BTreeMap::from([
                ("tau2.dev/pipeline".to_string(), p.name_any()),
                (
                    "app.kubernetes.io/managed-by".to_string(),
                    "tau2-operator".to_string(),
                ),
            ])),
            ..ObjectMeta::default()
        },
        string_data: Some(BTreeMap::from([("token".to_string(), token)])),
        type_: Some("Opaque".into()),
        ..Secret::default()
    }
}
