//! Change events: what opsync tells the rest of Viio. A contract, with JSON Schemas in
//! `schemas/` (`user-event.v1.json`, `sync-completed.v1.json`).
//!
//! Ids are deterministic (UUID v5): the sync id from the job id, an event id from the sync id,
//! the event type and the member. A job that runs twice (redelivery after a crash before its
//! commit) produces the same ids again, so consumers can drop duplicates by `event_id`.

use crate::directory::{Change, ChangeCounts};
use crate::scim::ScimUser;
use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;
use uuid::Uuid;

/// The namespace of every opsync v5 id.
pub const NAMESPACE: Uuid = Uuid::from_u128(0x6f70_7379_6e63_4a5e_9c1d_2b3a_4f5e_6d7c);

pub const SYNC_COMPLETED: &str = "sync.completed";

pub fn sync_id_for_job(job_id: Uuid) -> Uuid {
    Uuid::new_v5(&NAMESPACE, format!("sync/{job_id}").as_bytes())
}

pub fn event_id(sync_id: Uuid, event_type: &str, subject: &str) -> Uuid {
    Uuid::new_v5(
        &NAMESPACE,
        format!("event/{sync_id}/{event_type}/{subject}").as_bytes(),
    )
}

/// A member as events carry it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EventUser<'a> {
    pub id: &'a str,
    pub user_name: Option<&'a str>,
    pub email: Option<&'a str>,
    pub display_name: Option<&'a str>,
    pub given_name: Option<&'a str>,
    pub family_name: Option<&'a str>,
    pub active: bool,
}

impl<'a> From<&'a ScimUser> for EventUser<'a> {
    fn from(u: &'a ScimUser) -> Self {
        EventUser {
            id: &u.id,
            user_name: u.user_name.as_deref(),
            email: u.email.as_deref(),
            display_name: u.display_name.as_deref(),
            given_name: u.given_name.as_deref(),
            family_name: u.family_name.as_deref(),
            active: u.active,
        }
    }
}

#[derive(Debug, Serialize)]
pub struct UserEvent<'a> {
    pub event_id: Uuid,
    #[serde(rename = "type")]
    pub event_type: &'static str,
    pub integration_id: Uuid,
    pub sync_id: Uuid,
    pub occurred_at: String,
    pub user: EventUser<'a>,
    pub previous: Option<EventUser<'a>>,
    pub changed_fields: &'a [&'static str],
}

pub fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// The event for one change, ready to store in the outbox.
pub fn user_event<'a>(
    integration_id: Uuid,
    sync_id: Uuid,
    occurred_at: DateTime<Utc>,
    change: &'a Change,
) -> UserEvent<'a> {
    let event_type = change.kind.event_type();
    UserEvent {
        event_id: event_id(sync_id, event_type, &change.user.id),
        event_type,
        integration_id,
        sync_id,
        occurred_at: rfc3339(occurred_at),
        user: EventUser::from(change.user),
        previous: change.previous.map(EventUser::from),
        changed_fields: &change.changed_fields,
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct SyncCounts {
    pub users: u64,
    pub active: u64,
    pub suspended: u64,
    pub added: u64,
    pub updated: u64,
    pub deactivated: u64,
    pub reactivated: u64,
    pub removed: u64,
    /// Members missing from the snapshot whose removal was not inferred (doubtful snapshot,
    /// or held for an operator).
    pub removals_held: u64,
}

impl SyncCounts {
    pub fn new(users: u64, active: u64, changes: ChangeCounts, removals_held: u64) -> Self {
        Self {
            users,
            active,
            suspended: users - active,
            added: changes.added,
            updated: changes.updated,
            deactivated: changes.deactivated,
            reactivated: changes.reactivated,
            removed: changes.removed,
            removals_held,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct SyncCompleted {
    pub event_id: Uuid,
    #[serde(rename = "type")]
    pub event_type: &'static str,
    pub integration_id: Uuid,
    pub sync_id: Uuid,
    pub job_id: Uuid,
    pub trigger: &'static str,
    pub started_at: String,
    pub occurred_at: String,
    pub snapshot_consistent: bool,
    pub counts: SyncCounts,
}

#[allow(clippy::too_many_arguments)]
pub fn sync_completed(
    integration_id: Uuid,
    sync_id: Uuid,
    job_id: Uuid,
    trigger: &'static str,
    started_at: DateTime<Utc>,
    finished_at: DateTime<Utc>,
    snapshot_consistent: bool,
    counts: SyncCounts,
) -> SyncCompleted {
    SyncCompleted {
        event_id: event_id(sync_id, SYNC_COMPLETED, ""),
        event_type: SYNC_COMPLETED,
        integration_id,
        sync_id,
        job_id,
        trigger,
        started_at: rfc3339(started_at),
        occurred_at: rfc3339(finished_at),
        snapshot_consistent,
        counts,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_deterministic_and_distinct() {
        let job = Uuid::from_u128(42);
        let s1 = sync_id_for_job(job);
        assert_eq!(s1, sync_id_for_job(job));
        assert_ne!(s1, sync_id_for_job(Uuid::from_u128(43)));
        assert_eq!(
            event_id(s1, "user.added", "A"),
            event_id(s1, "user.added", "A")
        );
        assert_ne!(
            event_id(s1, "user.added", "A"),
            event_id(s1, "user.added", "B")
        );
        assert_ne!(
            event_id(s1, "user.added", "A"),
            event_id(s1, "user.updated", "A")
        );
    }
}
