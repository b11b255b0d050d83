//! Leader election on a `coordination.k8s.io/v1` Lease with
//! `kube-lease-manager` (the maintained lease crate on kube 5; kube-runtime
//! has none, kube-rs/kube#485). Only the leader runs the controller, so only it
//! creates Jobs and writes status; every replica can serve the rest.

use std::future::Future;
use std::time::Duration;

use kube::Client;
use kube_lease_manager::{LeaseManagerBuilder, LeaseManagerError};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Where and how to elect.
#[derive(Clone, Debug)]
pub struct LeaderSettings {
    pub lease_name: String,
    pub lease_namespace: String,
    /// This replica's name in the Lease (the pod name).
    pub identity: String,
    /// A holder that has not renewed for this long loses the lease.
    pub lease_duration: Duration,
    /// The holder renews this long before expiry (also the clock skew tolerated).
    pub renew_before: Duration,
}

impl LeaderSettings {
    /// Lease 15 s, renewed every 5 s: a crashed leader is replaced within 15 s.
    pub fn new(lease_name: &str, lease_namespace: &str, identity: &str) -> Self {
        Self {
            lease_name: lease_name.into(),
            lease_namespace: lease_namespace.into(),
            identity: identity.into(),
            lease_duration: Duration::from_secs(15),
            renew_before: Duration::from_secs(10),
        }
    }
}

/// Campaigns for the lease until `shutdown` resolves, then releases it so a
/// standby takes over at once instead of after the lease expires. The
/// receiver says whether this replica leads now (metrics and readiness read it
/// too); the task ends after the release.
pub async fn elect(
    client: Client,
    settings: LeaderSettings,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(watch::Receiver<bool>, JoinHandle<()>), LeaseManagerError> {
    let manager = LeaseManagerBuilder::new(client, &settings.lease_name)
        .with_namespace(&settings.lease_namespace)
        .with_identity(&settings.identity)
        .with_duration(settings.lease_duration.as_secs().max(2))
        .with_grace(settings.renew_before.as_secs().max(1))
        .with_field_manager(format!("tau2-operator-{}", settings.identity))
        .build()
        .await?;
    let (tx, rx) = watch::channel(false);
    let identity = settings.identity.clone();
    let task = tokio::spawn(async move {
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                () = &mut shutdown => break,
                changed = manager.changed() => match changed {
                    Ok(leading) => {
                        tracing::info!(identity, leading, "leadership changed");
                        tx.send_replace(leading);
                    }
                    // The API server is unreachable: keep the last state (no
                    // write can succeed anyway) and retry; once it answers
                    // again, a lost lease shows up as a change.
                    Err(error) => {
                        tracing::warn!(identity, %error, "lease renewal failed; retrying");
                        tokio::select! {
                            () = &mut shutdown => break,
                            () = tokio::time::sleep(Duration::from_secs(1)) => {}
                        }
                    }
                },
            }
        }
        tx.send_replace(false);
        if let Err(error) = manager.release().await {
            tracing::warn!(identity, %error, "cannot release the lease; it expires by itself");
        }
        tracing::info!(identity, "left the leader election");
    });
    Ok((rx, task))
}

/// Resolves once `leader` says true (or never, if the sender is gone).
pub async fn until_leading(leader: &mut watch::Receiver<bool>) -> bool {
    leader.wait_for(|l| *l).await.is_ok()
}

/// Resolves once `leader` says false (or its sender is gone).
pub async fn until_not_leading(leader: &mut watch::Receiver<bool>) {
    let _ = leader.wait_for(|l| !*l).await;
}
