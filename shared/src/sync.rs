//! One sync, start to commit: lock the integration, read the bridge, diff, write state, run
//! row and events in one transaction.
//!
//! Why one transaction that spans the download: the advisory lock that serialises syncs of
//! one integration is transaction-scoped, so it can never outlive a dead worker; and nothing
//! is committed until everything is known, so a sync interrupted anywhere (bridge failure
//! mid-paging, worker killed, database lost) commits nothing partial. (An initial sync writes
//! its pages inside the transaction as they arrive: writing overlaps the download, committing
//! still waits for the end.)

use crate::broker::BrokerError;
use crate::crypto::{KeyError, Keyring};
use crate::directory::{self, ChangeCounts, ChangeKind, RemovalPolicy};
use crate::error::{ErrorClass, ScimError};
use crate::events;
use crate::job::{JobError, SyncJob};
use crate::onepassword;
use crate::scim::{ClientConfig, ClientStats, ScimClient};
use crate::store::{self, NewEvent, RunRecord, StoreError};
use chrono::Utc;
use deadpool_postgres::Pool;
use serde::Serialize;
use std::time::Duration;
use uuid::Uuid;

#[derive(Debug, Clone, thiserror::Error)]
pub enum SyncError {
    #[error(transparent)]
    Scim(#[from] ScimError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Broker(#[from] BrokerError),
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error(transparent)]
    InvalidJob(#[from] JobError),
    #[error("integration {id} is {status}, so it is not synced; {advice}")]
    Inactive {
        id: Uuid,
        status: String,
        advice: &'static str,
    },
}

impl SyncError {
    pub fn kind(&self) -> &'static str {
        match self {
            SyncError::Scim(e) => e.kind(),
            SyncError::Store(e) => e.kind(),
            SyncError::Broker(e) => e.kind(),
            SyncError::Key(_) => "token_undecryptable",
            SyncError::InvalidJob(_) => "invalid_job",
            SyncError::Inactive { .. } => "integration_inactive",
        }
    }

    pub fn class(&self) -> ErrorClass {
        let transient = match self {
            SyncError::Scim(e) => e.is_transient(),
            SyncError::Store(e) => e.is_transient(),
            SyncError::Broker(_) => true,
            SyncError::Key(_) | SyncError::InvalidJob(_) | SyncError::Inactive { .. } => false,
        };
        if transient {
            ErrorClass::Transient
        } else {
            ErrorClass::Permanent
        }
    }
}

/// What a finished job reports.
#[derive(Debug, Clone, Serialize)]
pub struct SyncSummary {
    pub integration_id: Uuid,
    pub job_id: Uuid,
    pub sync_id: Uuid,
    pub counts: events::SyncCounts,
    pub snapshot_consistent: bool,
    pub events: u64,
    pub bridge_requests: u64,
    pub elapsed_ms: u64,
}

#[derive(Debug, Clone)]
pub enum JobOutcome {
    Completed(SyncSummary),
    /// The job id already succeeded (a redelivery or a duplicate): nothing was done.
    AlreadyDone,
}

pub struct SyncDeps<'a> {
    pub pool: &'a Pool,
    pub keyring: &'a Keyring,
    pub client: &'a ClientConfig,
    pub removals: RemovalPolicy,
    pub metrics: Option<std::sync::Arc<crate::metrics::Metrics>>,
}

/// Runs one job. On failure, the failed run is recorded (and the integration's status set for
/// failures a person must fix) before the error is returned.
pub async fn run_job(
    deps: &SyncDeps<'_>,
    job: &SyncJob,
    progress: impl FnMut(u64, Option<u64>),
) -> Result<JobOutcome, SyncError> {
    let started_at = Utc::now();
    let t0 = std::time::Instant::now();
    let sync_id = events::sync_id_for_job(job.job_id);
    let stats = std::sync::Arc::new(ClientStats::default());
    match sync_in_transaction(deps, job, sync_id, started_at, t0, progress, &stats).await {
        Ok(outcome) => Ok(outcome),
        Err(e) => {
            record_failure(deps.pool, job, sync_id, started_at, &e, &stats).await;
            Err(e)
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn sync_in_transaction(
    deps: &SyncDeps<'_>,
    job: &SyncJob,
    sync_id: Uuid,
    started_at: chrono::DateTime<Utc>,
    t0: std::time::Instant,
    progress: impl FnMut(u64, Option<u64>),
    stats_out: &std::sync::Arc<ClientStats>,
) -> Result<JobOutcome, SyncError> {
    let mut conn = deps.pool.get().await.map_err(StoreError::from)?;
    let tx = conn.transaction().await.map_err(StoreError::from)?;
    // Waits while another worker syncs this integration: jobs for one integration run one
    // after the other, never at the same time.
    store::lock_integration(&tx, job.integration_id).await?;
    if store::job_succeeded(&tx, job.job_id).await? {
        return Ok(JobOutcome::AlreadyDone);
    }
    let integration = store::get_integration(&tx, job.integration_id).await?;
    match integration.status.as_str() {
        "active" => {}
        "needs_credentials" => {
            return Err(SyncError::Inactive {
                id: integration.id,
                status: integration.status,
                advice: "the bridge rejected its token: set the new one with `opsync integration update-token`",
            });
        }
        "scim_disabled" => {
            return Err(SyncError::Inactive {
                id: integration.id,
                status: integration.status,
                advice: "its bridge serves no SCIM API (Google Workspace): connect the bridge to another identity provider, then `opsync integration enable`",
            });
        }
        _ => {
            return Err(SyncError::Inactive {
                id: integration.id,
                status: integration.status,
                advice: "enable it with `opsync integration enable`",
            });
        }
    }
    let token = deps.keyring.open(&integration.token, integration.id)?;
    let mut client = ScimClient::new(&integration.bridge_url, token, deps.client.clone())?;
    if let Some(m) = &deps.metrics {
        client.set_metrics(m.clone());
    }
    let t_read = std::time::Instant::now();
    let trace = crate::tracecontext::current();
    let trace = (!trace.is_empty())
        .then(|| serde_json::to_string(&trace).expect("a string map serialises"));
    // With nothing stored, every listed member is an addition: the initial sync writes each
    // page as it arrives, while the next one downloads, instead of diffing the whole listing
    // afterwards. Still in this transaction: a failure anywhere commits none of it.
    let initial = store::directory_is_empty(&tx, integration.id).await?;
    // This sync's events will all have a higher seq: the outbox row names them by it.
    let seq_floor = store::max_event_seq(&tx).await?;
    let streamed_at = Utc::now();
    let (result, streamed) = if initial {
        let (pages_tx, pages_rx) = tokio::sync::mpsc::channel(4);
        let reader = async {
            let pages_tx = pages_tx;
            read_bridge(&mut client, &integration, &tx, progress, Some(&pages_tx)).await
        };
        let writer = write_pages(
            &tx,
            integration.id,
            sync_id,
            streamed_at,
            trace.as_deref(),
            pages_rx,
        );
        let (r, w) = tokio::join!(reader, writer);
        (r, Some(w))
    } else {
        (
            read_bridge(&mut client, &integration, &tx, progress, None).await,
            None,
        )
    };
    // Keep the request counts for the run row even when the read failed.
    copy_stats(&client.stats(), stats_out);
    let snapshot = result?;
    let streamed_added = streamed.transpose()?;
    let read_ms = t_read.elapsed().as_millis() as u64;
    if let Some(m) = &deps.metrics {
        m.users_seen.inc_by(snapshot.users.len() as u64);
    }
    let consistent = snapshot.is_complete_and_consistent();
    let digest = directory::digest(&snapshot.users);
    // Nothing to diff when the initial sync wrote its additions already, or when the digest
    // equals the kept one: the stored directory equals that snapshot, so nothing changed and
    // the directory need not even be loaded.
    let skip_diff = streamed_added.is_some()
        || (consistent && integration.snapshot_digest.as_deref() == Some(&digest[..]));
    let stored = if skip_diff {
        Vec::new()
    } else {
        store::load_directory(&tx, integration.id).await?
    };
    let mut changes = if skip_diff {
        Vec::new()
    } else {
        directory::diff(&stored, &snapshot.users, consistent)
    };
    let (removals_held, hold_reason) = if skip_diff {
        (0, None)
    } else if consistent {
        let present = stored.iter().filter(|s| !s.removed).count();
        confirm_removals(
            &client,
            &mut changes,
            present,
            deps.removals,
            integration.release_removals,
        )
        .await?
    } else {
        // Members absent from a doubtful snapshot: not removed, counted so it shows.
        let present: std::collections::HashSet<&str> =
            snapshot.users.iter().map(|u| u.id.as_str()).collect();
        let absent = stored
            .iter()
            .filter(|s| !s.removed && !present.contains(s.user.id.as_str()))
            .count() as u64;
        (absent, (absent > 0).then_some("doubtful_snapshot"))
    };
    // After this sync the directory equals the snapshot unless something was held.
    let new_digest = (consistent && removals_held == 0).then_some(digest);
    let mut counts = ChangeCounts::of(&changes);
    if let Some(added) = streamed_added {
        counts.added = added;
    }
    let now = Utc::now();
    let users = snapshot.users.len() as u64;
    let active = snapshot.active_count();
    let sync_counts = events::SyncCounts::new(users, active, counts, removals_held);

    let completed = events::sync_completed(
        integration.id,
        sync_id,
        job.job_id,
        job.trigger.as_str(),
        started_at,
        now,
        consistent,
        sync_counts.clone(),
    );
    let t_write = std::time::Instant::now();
    // Member rows and events go down the one connection pipelined: events are serialised as
    // the COPY streams them, `sync.completed` last, after the user events it counts.
    let user_events = changes
        .iter()
        .map(|c| new_event(integration.id, sync_id, now, c));
    let completed_event = NewEvent {
        event_id: completed.event_id,
        event_type: events::SYNC_COMPLETED,
        scim_id: None,
        payload: serde_json::to_string(&completed).expect("events serialise"),
    };
    let write_events = store::copy_events(
        &tx,
        integration.id,
        sync_id,
        now,
        trace.as_deref(),
        user_events.chain(std::iter::once(completed_event)),
    );
    let (members, evs) = tokio::join!(
        store::write_changes(&tx, integration.id, now, &changes),
        write_events
    );
    members?;
    evs?;
    store::enqueue_outbox(&tx, integration.id, sync_id, seq_floor).await?;
    let event_count = changes.len() as u64 + streamed_added.unwrap_or(0) + 1;
    let stats = client.stats();
    store::record_run(
        &tx,
        &RunRecord {
            run_id: Uuid::new_v4(),
            sync_id,
            job_id: job.job_id,
            integration_id: integration.id,
            trigger: job.trigger.as_str(),
            started_at,
            finished_at: now,
            error: None,
            users_seen: Some(users as i64),
            users_active: Some(active as i64),
            counts,
            removals_held: removals_held as i64,
            snapshot_consistent: Some(consistent),
            removals_hold_reason: hold_reason,
            bridge_requests: ClientStats::get(&stats.requests) as i64,
            bridge_retries: ClientStats::get(&stats.retries) as i64,
        },
    )
    .await?;
    if integration.release_removals && consistent {
        store::clear_release_removals(&tx, integration.id).await?;
    }
    if integration.snapshot_digest.as_deref() != new_digest.as_ref().map(|d| &d[..]) {
        store::set_snapshot_digest(&tx, integration.id, new_digest.as_ref().map(|d| &d[..]))
            .await?;
    }
    tx.commit().await.map_err(StoreError::from)?;
    let write_ms = t_write.elapsed().as_millis() as u64;
    if let Some(m) = &deps.metrics {
        m.sync_duration.observe(t0.elapsed().as_secs_f64());
    }
    if let Some(reason) = hold_reason {
        tracing::warn!(integration_id = %integration.id, removals_held, reason, "removals held: absent members were not removed");
    }
    let removed = changes
        .iter()
        .filter(|c| c.kind == ChangeKind::Removed)
        .count();
    tracing::info!(integration_id = %integration.id, users, changes = changes.len() as u64 + streamed_added.unwrap_or(0), removed, read_ms, write_ms, initial, "sync committed");
    Ok(JobOutcome::Completed(SyncSummary {
        integration_id: integration.id,
        job_id: job.job_id,
        sync_id,
        counts: sync_counts,
        snapshot_consistent: consistent,
        events: event_count,
        bridge_requests: ClientStats::get(&stats.requests),
        elapsed_ms: t0.elapsed().as_millis() as u64,
    }))
}

/// Keeps only the removals that are safe: not a mass removal (unless an operator released it),
/// and each confirmed by the bridge answering 404 to `GET /Users/{id}`, within a per-run
/// budget. Returns how many removals were held and why.
async fn confirm_removals(
    client: &ScimClient,
    changes: &mut Vec<directory::Change<'_>>,
    present: usize,
    policy: RemovalPolicy,
    released: bool,
) -> Result<(u64, Option<&'static str>), SyncError> {
    let candidates = changes
        .iter()
        .filter(|c| c.kind == ChangeKind::Removed)
        .count();
    if candidates == 0 {
        return Ok((0, None));
    }
    if policy.is_mass_removal(candidates, present) && !released {
        changes.retain(|c| c.kind != ChangeKind::Removed);
        return Ok((candidates as u64, Some("mass_removal")));
    }
    let mut unconfirmed = std::collections::HashSet::new();
    let mut checked = 0;
    for c in changes.iter().filter(|c| c.kind == ChangeKind::Removed) {
        if checked >= policy.max_checks {
            unconfirmed.insert(c.user.id.clone());
            continue;
        }
        checked += 1;
        if client.get_user(&c.user.id).await?.is_some() {
            // The listing missed a member who is still there.
            unconfirmed.insert(c.user.id.clone());
        }
    }
    if unconfirmed.is_empty() {
        return Ok((0, None));
    }
    changes.retain(|c| !(c.kind == ChangeKind::Removed && unconfirmed.contains(&c.user.id)));
    Ok((unconfirmed.len() as u64, Some("unconfirmed")))
}

fn copy_stats(from: &ClientStats, to: &ClientStats) {
    use std::sync::atomic::Ordering::Relaxed;
    to.requests.store(ClientStats::get(&from.requests), Relaxed);
    to.retries.store(ClientStats::get(&from.retries), Relaxed);
}

/// The stored event for one change.
fn new_event(
    integration_id: Uuid,
    sync_id: Uuid,
    at: chrono::DateTime<Utc>,
    c: &directory::Change<'_>,
) -> NewEvent {
    let ev = events::user_event(integration_id, sync_id, at, c);
    NewEvent {
        event_id: ev.event_id,
        event_type: ev.event_type,
        scim_id: Some(c.user.id.clone()),
        payload: serde_json::to_string(&ev).expect("events serialise"),
    }
}

/// The initial sync's writer: each page's members (the first copy of each id; a repeated id
/// makes the snapshot doubtful anyway) as `added`, member rows and events together, while
/// the reader fetches the next page. Returns how many members it added.
async fn write_pages(
    tx: &deadpool_postgres::Transaction<'_>,
    integration_id: Uuid,
    sync_id: Uuid,
    at: chrono::DateTime<Utc>,
    trace: Option<&str>,
    mut pages: tokio::sync::mpsc::Receiver<Vec<crate::scim::ScimUser>>,
) -> Result<u64, SyncError> {
    let mut seen: std::collections::HashSet<String> = std::collections::HashSet::new();
    let mut added = 0u64;
    while let Some(first) = pages.recv().await {
        // Whatever else has arrived meanwhile goes in the same statements: a writer that
        // falls behind writes bigger batches instead of more of them.
        let mut batch = first;
        while batch.len() < store::BATCH {
            match pages.try_recv() {
                Ok(more) => batch.extend(more),
                Err(_) => break,
            }
        }
        let changes: Vec<directory::Change<'_>> = batch
            .iter()
            .filter(|u| seen.insert(u.id.clone()))
            .map(|u| directory::Change {
                kind: ChangeKind::Added,
                user: u,
                previous: None,
                changed_fields: Vec::new(),
            })
            .collect();
        if changes.is_empty() {
            continue;
        }
        let events = changes
            .iter()
            .map(|c| new_event(integration_id, sync_id, at, c));
        let users: Vec<&crate::scim::ScimUser> = changes.iter().map(|c| c.user).collect();
        // One COPY after the other on the one connection (a COPY holds it until it ends).
        store::copy_new_members(tx, integration_id, at, &users).await?;
        store::copy_events(tx, integration_id, sync_id, at, trace, events).await?;
        added += changes.len() as u64;
    }
    Ok(added)
}

/// Uses the stored SCIM base, or discovers and stores it (within the sync's transaction).
async fn read_bridge(
    client: &mut ScimClient,
    integration: &store::Integration,
    tx: &deadpool_postgres::Transaction<'_>,
    progress: impl FnMut(u64, Option<u64>),
    pages: Option<&tokio::sync::mpsc::Sender<Vec<crate::scim::ScimUser>>>,
) -> Result<crate::scim::Snapshot, SyncError> {
    match integration
        .scim_base
        .as_deref()
        .and_then(|b| url::Url::parse(b).ok())
    {
        Some(base) => client.set_base(base),
        None => {
            let d = onepassword::discover(client).await?;
            store::set_scim_base(tx, integration.id, d.base.as_str()).await?;
            client.set_base(d.base);
        }
    }
    Ok(client.list_users_to(progress, pages).await?)
}

/// Records a failed run in its own short transaction. A failure to record is logged, not
/// raised: the job's own error is the one that matters, and the job is retried anyway.
async fn record_failure(
    pool: &Pool,
    job: &SyncJob,
    sync_id: Uuid,
    started_at: chrono::DateTime<Utc>,
    e: &SyncError,
    stats: &ClientStats,
) {
    let result: Result<(), StoreError> = async {
        let mut conn = pool.get().await?;
        let tx = conn.transaction().await?;
        // An unknown integration has no row to attach a run to.
        if matches!(e, SyncError::Store(StoreError::IntegrationNotFound { .. })) {
            return Ok(());
        }
        // Failures a person must fix park the integration until they do.
        let parked = match e.kind() {
            "auth_rejected" => Some("needs_credentials"),
            "scim_api_disabled" => Some("scim_disabled"),
            _ => None,
        };
        if let Some(status) = parked {
            store::set_status(&tx, job.integration_id, status, Some(&e.to_string())).await?;
        }
        store::record_run(
            &tx,
            &RunRecord {
                run_id: Uuid::new_v4(),
                sync_id,
                job_id: job.job_id,
                integration_id: job.integration_id,
                trigger: job.trigger.as_str(),
                started_at,
                finished_at: Utc::now(),
                error: Some((e.kind(), e.to_string())),
                users_seen: None,
                users_active: None,
                counts: ChangeCounts::default(),
                removals_held: 0,
                snapshot_consistent: None,
                removals_hold_reason: None,
                bridge_requests: ClientStats::get(&stats.requests) as i64,
                bridge_retries: ClientStats::get(&stats.retries) as i64,
            },
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }
    .await;
    if let Err(err) = result {
        tracing::warn!(error.kind = err.kind(), error = %err, "could not record the failed sync run");
    }
}

/// What to do with a job that failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureAction {
    /// Send it through the delay queue for this delay, as attempt `attempt`.
    Retry { delay: Duration, attempt: u32 },
    /// Dead-letter it: permanent, or out of attempts.
    DeadLetter,
}

/// Pure: `attempt` is the 1-based attempt that just failed. An unavailable database is
/// waited out rather than counted: the job comes back after the first delay as the same
/// attempt, for as long as the outage lasts, and is never dead-lettered for it.
pub fn on_failure(
    attempt: u32,
    class: ErrorClass,
    kind: &str,
    delays: &[Duration],
) -> FailureAction {
    if kind == "database_unavailable" {
        let delay = delays.first().copied().unwrap_or(Duration::from_secs(30));
        return FailureAction::Retry { delay, attempt };
    }
    match class {
        ErrorClass::Permanent => FailureAction::DeadLetter,
        ErrorClass::Transient => match delays.get(attempt.saturating_sub(1) as usize) {
            Some(delay) => FailureAction::Retry {
                delay: *delay,
                attempt: attempt + 1,
            },
            None => FailureAction::DeadLetter,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failure_policy() {
        let d = [Duration::from_secs(30), Duration::from_secs(120)];
        let t = ErrorClass::Transient;
        assert_eq!(
            on_failure(1, t, "timeout", &d),
            FailureAction::Retry {
                delay: d[0],
                attempt: 2
            }
        );
        assert_eq!(
            on_failure(2, t, "timeout", &d),
            FailureAction::Retry {
                delay: d[1],
                attempt: 3
            }
        );
        assert_eq!(on_failure(3, t, "timeout", &d), FailureAction::DeadLetter);
        assert_eq!(
            on_failure(1, ErrorClass::Permanent, "auth_rejected", &d),
            FailureAction::DeadLetter
        );
        assert_eq!(on_failure(1, t, "timeout", &[]), FailureAction::DeadLetter);
        // A database outage never uses up attempts.
        assert_eq!(
            on_failure(3, t, "database_unavailable", &d),
            FailureAction::Retry {
                delay: d[0],
                attempt: 3
            }
        );
    }
}
