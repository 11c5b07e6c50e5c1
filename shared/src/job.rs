//! The sync job message: what Viio's scheduler puts on `opsync.jobs`. A contract, with its
//! JSON Schema in `schemas/sync-job.v1.json`. Unknown fields are ignored so the scheduler can
//! add some without breaking older workers.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Larger messages are not jobs: refusing them early protects the worker's memory.
pub const MAX_JOB_BYTES: usize = 16 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Trigger {
    Scheduled,
    Manual,
    Initial,
    Replay,
}

impl Trigger {
    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::Scheduled => "scheduled",
            Trigger::Manual => "manual",
            Trigger::Initial => "initial",
            Trigger::Replay => "replay",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncJob {
    pub job_id: Uuid,
    pub integration_id: Uuid,
    pub requested_at: DateTime<Utc>,
    pub trigger: Trigger,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JobError {
    #[error(
        "the job message is {size} bytes, over the {MAX_JOB_BYTES}-byte limit; it cannot be a sync job"
    )]
    TooLarge { size: usize },
    #[error("the job message is not a valid sync job ({0}); see schemas/sync-job.v1.json")]
    Invalid(String),
}

impl SyncJob {
    pub fn new(integration_id: Uuid, trigger: Trigger) -> Self {
        Self {
            job_id: Uuid::new_v4(),
            integration_id,
            requested_at: Utc::now(),
            trigger,
        }
    }

    pub fn parse(body: &[u8]) -> Result<Self, JobError> {
        if body.len() > MAX_JOB_BYTES {
            return Err(JobError::TooLarge { size: body.len() });
        }
        serde_json::from_slice(body)
            .map_err(|e| JobError::Invalid(crate::error::one_line(&e.to_string(), 200)))
    }

    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a job always serialises")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_ignores_unknown_fields() {
        let j = SyncJob::parse(br#"{"job_id":"6f1c2a4e-8d0b-4c3e-9a6f-1b2c3d4e5f60","integration_id":"0e0b7a52-7c44-4b7b-9d1e-5d2f7c9a1b30","requested_at":"2026-12-03T10:00:00Z","trigger":"scheduled","priority":5}"#).unwrap();
        assert_eq!(j.trigger, Trigger::Scheduled);
        let again = SyncJob::parse(&j.to_json()).unwrap();
        assert_eq!(again, j);
    }

    #[test]
    fn refuses_what_is_not_a_job() {
        assert!(matches!(
            SyncJob::parse(b"not json"),
            Err(JobError::Invalid(_))
        ));
        assert!(matches!(
            SyncJob::parse(br#"{"job_id":"x"}"#),
            Err(JobError::Invalid(_))
        ));
        assert!(matches!(SyncJob::parse(br#"{"job_id":"6f1c2a4e-8d0b-4c3e-9a6f-1b2c3d4e5f60","integration_id":"0e0b7a52-7c44-4b7b-9d1e-5d2f7c9a1b30","requested_at":"2026-12-03T10:00:00Z","trigger":"whenever"}"#), Err(JobError::Invalid(_))));
        assert!(matches!(
            SyncJob::parse(&vec![b' '; MAX_JOB_BYTES + 1]),
            Err(JobError::TooLarge { .. })
        ));
    }
}
