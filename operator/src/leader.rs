//! Leader election on a `coordination.k8s.io/v1` Lease, with client-go's
//! semantics (`k8s.io/client-go/tools/leaderelection`): the leader renews
//! every retry period and **steps down once it has not renewed for the renew
//! deadline**, which is shorter than the lease: a replica cut off from the API
//! server stops the controller and the progress writer before the lease can
//! expire and a standby take it, so two replicas never lead at once. Every
//! request in the renew path has a timeout shorter than the deadline, and the
//! deadline is a timer of its own, so a hung request cannot keep a replica
//! leading. A standby takes the lease once its record has not changed for the
//! lease's duration on the standby's own clock (no clock comparison between
//! replicas). Only the leader runs the controller, so only it creates Jobs and
//! writes status; every replica can serve the rest.
//!
//! (kube-lease-manager, used before, reports renew failures but keeps its
//! leader flag until a renewal succeeds again, and exposes no time of the last
//! renewal to step down on.)

use std::future::Future;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::api::PostParams;
use kube::{Api, Client};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// Where and how to elect.
#[derive(Clone, Debug)]
pub struct LeaderSettings {
    pub lease_name: String,
    pub lease_namespace: String,
    /// This replica's name in the Lease (the pod name).
    pub identity: String,
    /// A holder that has not renewed for this long loses the lease.
    pub lease_duration: Duration,
    /// The leader steps down when it has not renewed for this long (shorter
    /// than `lease_duration`: the difference is the margin for in-flight
    /// work and clock rate differences).
    pub renew_deadline: Duration,
    /// How often the leader renews and a standby tries to take the lease.
    pub retry_period: Duration,
}

impl LeaderSettings {
    /// client-go's defaults: lease 15 s, renew deadline 10 s, retry every 2 s.
    pub fn new(lease_name: &str, lease_namespace: &str, identity: &str) -> Self {
        Self {
            lease_name: lease_name.into(),
            lease_namespace: lease_namespace.into(),
            identity: identity.into(),
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
        }
    }

    /// One API request in the renew path may take this long: half the
    /// deadline, so a renewal that hangs once still leaves time for a retry.
    pub fn request_timeout(&self) -> Duration {
        self.renew_deadline / 2
    }

    /// The settings make sense: the deadline is inside the lease and the
    /// retry inside the deadline (else a renewal could never save a term).
    fn check(&self) -> Result<(), ElectionError> {
        if self.retry_period.is_zero()
            || self.retry_period >= self.renew_deadline
            || self.renew_deadline >= self.lease_duration
        {
            return Err(ElectionError::Settings(format!(
                "need 0 < retry period ({:?}) < renew deadline ({:?}) < lease duration ({:?})",
                self.retry_period, self.renew_deadline, self.lease_duration
            )));
        }
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ElectionError {
    #[error("leader election settings: {0}")]
    Settings(String),
}

/// Whether a replica whose last successful renewal started at `renewed`
/// (`None`: it holds no lease) still leads at `now`. The renewal's start, not
/// its answer, counts: the API server wrote the lease after it.
pub fn leads(renewed: Option<Instant>, now: Instant, renew_deadline: Duration) -> bool {
    renewed.is_some_and(|at| now.saturating_duration_since(at) < renew_deadline)
}

/// Whether `me` may write the Lease whose record last changed `unchanged_for`
/// ago (on this replica's clock): it is free, ours, or its holder stopped
/// renewing for longer than the duration the record states.
pub fn may_take(spec: &LeaseSpec, me: &str, unchanged_for: Duration) -> bool {
    match spec.holder_identity.as_deref() {
        None | Some("") => true,
        Some(holder) if holder == me => true,
        Some(_) => {
            let duration = spec.lease_duration_seconds.unwrap_or(0).max(0);
            unchanged_for >= Duration::from_secs(duration.unsigned_abs().into())
        }
    }
}

/// The record `me` writes to take or renew the lease described by `old`.
fn record(old: Option<&LeaseSpec>, me: &str, duration: Duration) -> LeaseSpec {
    let now = MicroTime(Timestamp::now());
    let ours = old.and_then(|o| o.holder_identity.as_deref()) == Some(me);
    let transitions = old.and_then(|o| o.lease_transitions).unwrap_or(0);
    LeaseSpec {
        holder_identity: Some(me.into()),
        lease_duration_seconds: Some(i32::try_from(duration.as_secs()).unwrap_or(i32::MAX)),
        acquire_time: match old {
            Some(o) if ours => o.acquire_time.clone(),
            _ => Some(now.clone()),
        },
        renew_time: Some(now),
        lease_transitions: Some(if ours || old.is_none() {
            transitions
        } else {
            transitions + 1
        }),
        ..LeaseSpec::default()
    }
}

/// Why a request on the Lease did not succeed.
enum Failure {
    /// Another replica wrote the Lease first (409): not an error, it leads.
    Conflict,
    Other(String),
}

/// One replica's view of the Lease.
struct Elector {
    api: Api<Lease>,
    settings: LeaderSettings,
    /// The record last read, and when it was first seen (client-go's
    /// observedTime).
    observed: Option<(LeaseSpec, Instant)>,
}

impl Elector {
    /// Runs one request with the renew path's timeout.
    async fn within<T>(
        &self,
        what: &str,
        request: impl Future<Output = kube::Result<T>>,
    ) -> Result<T, Failure> {
        let limit = self.settings.request_timeout();
        match tokio::time::timeout(limit, request).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(kube::Error::Api(e))) if e.code == 409 => Err(Failure::Conflict),
            Ok(Err(error)) => Err(Failure::Other(format!("{what} the lease: {error}"))),
            Err(_) => Err(Failure::Other(format!(
                "{what} the lease: no answer in {limit:?}"
            ))),
        }
    }

    /// Takes or renews the lease: `Ok(true)` when this replica holds it now,
    /// `Ok(false)` when another does (or won a race for it).
    async fn try_acquire_or_renew(&mut self) -> Result<bool, String> {
        match self.write().await {
            Ok(()) => Ok(true),
            Err(Failure::Conflict) => Ok(false),
            Err(Failure::Other(error)) => Err(error),
        }
    }

    async fn write(&mut self) -> Result<(), Failure> {
        let me = self.settings.identity.clone();
        let name = self.settings.lease_name.clone();
        let duration = self.settings.lease_duration;
        let Some(mut lease) = self.within("reading", self.api.get_opt(&name)).await? else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(name),
                    ..ObjectMeta::default()
                },
                spec: Some(record(None, &me, duration)),
            };
            let params = PostParams::default();
            self.within("creating", self.api.create(&params, &lease))
                .await?;
            return Ok(());
        };
        let spec = lease.spec.clone().unwrap_or_default();
        let now = Instant::now();
        let first_seen = match &self.observed {
            Some((seen, at)) if *seen == spec => *at,
            _ => now,
        };
        self.observed = Some((spec.clone(), first_seen));
        if !may_take(&spec, &me, now.saturating_duration_since(first_seen)) {
            return Err(Failure::Conflict);
        }
        lease.spec = Some(record(Some(&spec), &me, duration));
        // A replace carries the resourceVersion read: of two replicas taking
        // an expired lease, one gets 409 Conflict.
        let params = PostParams::default();
        let written = self
            .within("writing", self.api.replace(&name, &params, &lease))
            .await?;
        self.observed = written.spec.map(|s| (s, Instant::now()));
        Ok(())
    }

    /// Gives the lease up (holder cleared, duration 1 s) if this replica
    /// still holds it, so a standby takes over at once.
    async fn release(&self) -> Result<(), Failure> {
        let name = &self.settings.lease_name;
        let Some(mut lease) = self.within("reading", self.api.get_opt(name)).await? else {
            return Ok(());
        };
        let mut spec = lease.spec.clone().unwrap_or_default();
        if spec.holder_identity.as_deref() != Some(self.settings.identity.as_str()) {
            return Ok(());
        }
        spec.holder_identity = None;
        spec.lease_duration_seconds = Some(1);
        spec.renew_time = Some(MicroTime(Timestamp::now()));
        lease.spec = Some(spec);
        let params = PostParams::default();
        self.within("releasing", self.api.replace(name, &params, &lease))
            .await
            .map(|_| ())
    }
}

/// Resolves at `at`, or never for `None`.
async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Campaigns for the lease until `shutdown` resolves, then releases it so a
/// standby takes over at once instead of after the lease expires. The
/// receiver says whether this replica leads now (the controller, the progress
/// service, metrics and readiness follow it); the task ends after the release.
pub async fn elect(
    client: Client,
    settings: LeaderSettings,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(watch::Receiver<bool>, JoinHandle<()>), ElectionError> {
    settings.check()?;
    let mut elector = Elector {
        api: Api::namespaced(client, &settings.lease_namespace),
        settings,
        observed: None,
    };
    let (tx, rx) = watch::channel(false);
    let task = tokio::spawn(async move {
        tokio::pin!(shutdown);
        let deadline = elector.settings.renew_deadline;
        let retry = elector.settings.retry_period;
        let identity = elector.settings.identity.clone();
        let mut renewed: Option<Instant> = None;
        loop {
            let started = Instant::now();
            tokio::select! {
                () = &mut shutdown => break,
                outcome = elector.try_acquire_or_renew() => match outcome {
                    Ok(true) => renewed = Some(started),
                    Ok(false) => renewed = None,
                    Err(error) => tracing::warn!(identity, %error, "lease renewal failed; retrying"),
                },
                // The deadline passes while a request hangs: step down now.
                () = sleep_until(renewed.map(|at| at + deadline)) => {}
            }
            renewed = settle(&tx, &identity, renewed, deadline);
            tokio::select! {
                () = &mut shutdown => break,
                () = tokio::time::sleep(retry) => {}
                () = sleep_until(renewed.map(|at| at + deadline)) => {}
            }
            renewed = settle(&tx, &identity, renewed, deadline);
        }
        tx.send_replace(false);
        match elector.release().await {
            Ok(()) | Err(Failure::Conflict) => {}
            Err(Failure::Other(error)) => {
                tracing::warn!(identity, %error, "cannot release the lease; it expires by itself");
            }
        }
        tracing::info!(identity, "left the leader election");
    });
    Ok((rx, task))
}

/// Applies [`leads`] now: publishes the leader flag when it changes and
/// returns the renewal that still counts (none once the deadline passed).
fn settle(
    tx: &watch::Sender<bool>,
    identity: &str,
    renewed: Option<Instant>,
    deadline: Duration,
) -> Option<Instant> {
    let leading = leads(renewed, Instant::now(), deadline);
    if *tx.borrow() != leading {
        if leading {
            tracing::info!(identity, "leading: holding the lease");
        } else if renewed.is_some() {
            tracing::warn!(
                identity,
                ?deadline,
                "no renewal within the renew deadline: stepping down"
            );
        } else {
            tracing::info!(
                identity,
                "not leading: the lease is held by another replica or unreachable"
            );
        }
        tx.send_replace(leading);
    }
    renewed.filter(|_| leading)
}

/// Resolves once `leader` says true (or never, if the sender is gone).
pub async fn until_leading(leader: &mut watch::Receiver<bool>) -> bool {
    leader.wait_for(|l| *l).await.is_ok()
}

/// Resolves once `leader` says false (or its sender is gone).
pub async fn until_not_leading(leader: &mut watch::Receiver<bool>) {
    let _ = leader.wait_for(|l| !*l).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEADLINE: Duration = Duration::from_secs(10);

    #[test]
    fn a_leader_leads_until_the_renew_deadline_passes_without_a_renewal() {
        let renewed = Instant::now();
        assert!(leads(Some(renewed), renewed, DEADLINE));
        assert!(leads(
            Some(renewed),
            renewed + Duration::from_millis(9_999),
            DEADLINE
        ));
        assert!(!leads(Some(renewed), renewed + DEADLINE, DEADLINE));
        assert!(!leads(
            Some(renewed),
            renewed + Duration::from_secs(60),
            DEADLINE
        ));
    }

    #[test]
    fn a_replica_without_a_renewal_does_not_lead() {
        assert!(!leads(None, Instant::now(), DEADLINE));
    }

    #[test]
    fn the_step_down_comes_before_a_standby_may_take_the_lease() {
        let settings = LeaderSettings::new("l", "ns", "a");
        assert!(settings.check().is_ok());
        // The standby counts from when it saw the last renewal, which is
        // after the renewal started; the leader counts from the start.
        let spec = record(None, "a", settings.lease_duration);
        let step_down = settings.renew_deadline;
        assert!(!may_take(&spec, "b", step_down));
        assert!(may_take(&spec, "b", settings.lease_duration));
        assert!(settings.request_timeout() < settings.renew_deadline);
    }

    #[test]
    fn a_free_or_own_lease_may_be_taken_at_once() {
        let free = LeaseSpec::default();
        assert!(may_take(&free, "b", Duration::ZERO));
        let ours = record(None, "b", Duration::from_secs(15));
        assert!(may_take(&ours, "b", Duration::ZERO));
        let theirs = record(None, "a", Duration::from_secs(15));
        assert!(!may_take(&theirs, "b", Duration::from_secs(14)));
    }

    #[test]
    fn taking_over_counts_a_transition_and_renewing_keeps_the_acquire_time() {
        let first = record(None, "a", Duration::from_secs(15));
        assert_eq!(first.lease_transitions, Some(0));
        let renewed = record(Some(&first), "a", Duration::from_secs(15));
        assert_eq!(renewed.acquire_time, first.acquire_time);
        assert_eq!(renewed.lease_transitions, Some(0));
        let taken = record(Some(&renewed), "b", Duration::from_secs(15));
        assert_eq!(taken.holder_identity.as_deref(), Some("b"));
        assert_eq!(taken.lease_transitions, Some(1));
    }

    #[test]
    fn settings_with_the_deadline_outside_the_lease_are_refused() {
        let mut s = LeaderSettings::new("l", "ns", "a");
        s.renew_deadline = s.lease_duration;
        assert!(s.check().is_err());
        let mut s = LeaderSettings::new("l", "ns", "a");
        s.retry_period = s.renew_deadline;
        assert!(s.check().is_err());
    }
}
