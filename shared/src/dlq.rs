//! The dead-letter queue, read and replayed without losing a message.
//!
//! Reading: every message is fetched unacknowledged (`basic.get`) until the queue is empty,
//! then all of them are returned to the queue (`nack` with requeue, and a channel close for
//! anything left). Replaying: a chosen message is republished to `opsync.jobs` with trigger
//! `replay`, the same job id and no attempt headers, and only acked from the dead-letter queue
//! once the broker confirmed the copy. Keeping the job id means a replayed job that somehow
//! already succeeded is acked without running, and the integration lock keeps two replays of
//! one integration from running at once.

use crate::broker::{self, BrokerError, DEAD_QUEUE, headers};
use crate::job::{SyncJob, Trigger};
use chrono::{DateTime, Utc};
use lapin::options::{BasicAckOptions, BasicGetOptions, BasicNackOptions};
use lapin::types::AMQPValue;
use lapin::{BasicProperties, Channel};
use serde::Serialize;
use uuid::Uuid;

/// One dead job as `opsync dlq list` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct DeadJob {
    pub job_id: Option<Uuid>,
    pub integration_id: Option<Uuid>,
    pub error_kind: String,
    pub reason: String,
    pub attempts: i64,
    pub first_failed_at: Option<String>,
    pub last_failed_at: Option<String>,
    pub age_seconds: Option<i64>,
    pub sync_id: Option<String>,
    #[serde(skip)]
    delivery_tag: u64,
    #[serde(skip)]
    job: Option<SyncJob>,
}

/// Which dead jobs to replay.
#[derive(Debug, Clone, Default)]
pub struct Selection {
    pub job_ids: Vec<Uuid>,
    pub integration: Option<Uuid>,
    pub kind: Option<String>,
    pub all: bool,
}

impl Selection {
    pub fn matches(&self, d: &DeadJob) -> bool {
        if d.job.is_none() {
            return false; // not a job: nothing to replay
        }
        self.all
            || d.job_id.is_some_and(|id| self.job_ids.contains(&id))
            || (self.integration.is_some() && d.integration_id == self.integration)
            || self.kind.as_deref().is_some_and(|k| k == d.error_kind)
    }
}

/// Reads what the broker's own dead-lettering (x-death) says, for jobs that never reached our
/// failure handling (a worker crashing on them until the delivery limit).
fn x_death_reason(props: &BasicProperties) -> Option<String> {
    let headers = props.headers().as_ref()?;
    match headers.inner().get("x-death")? {
        AMQPValue::FieldArray(a) => a.as_slice().iter().find_map(|v| match v {
            AMQPValue::FieldTable(t) => match t.inner().get("reason")? {
                AMQPValue::LongString(s) => {
                    Some(String::from_utf8_lossy(s.as_bytes()).into_owned())
                }
                _ => None,
            },
            _ => None,
        }),
        _ => None,
    }
}

fn describe(
    delivery_tag: u64,
    data: &[u8],
    props: &BasicProperties,
    now: DateTime<Utc>,
) -> DeadJob {
    let job = SyncJob::parse(data).ok();
    let ours = broker::header_str(props, headers::ERROR_KIND);
    let (error_kind, reason) = match (x_death_reason(props), ours) {
        // Dead-lettered by the broker after the delivery limit: the job kept killing workers.
        (Some(r), _) if r == "delivery_limit" => (
            "delivery_limit".to_owned(),
            "delivered too many times without being settled (a worker crashed or was killed on it each time)".to_owned(),
        ),
        (_, Some(kind)) => (kind, broker::header_str(props, headers::ERROR_REASON).unwrap_or_default()),
        (Some(r), None) => (r, "dead-lettered by the broker".to_owned()),
        (None, None) => ("unknown".to_owned(), String::new()),
    };
    let last = broker::header_str(props, headers::LAST_FAILED_AT);
    let age = last
        .as_deref()
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .map(|t| (now - t.with_timezone(&Utc)).num_seconds());
    DeadJob {
        job_id: job.as_ref().map(|j| j.job_id),
        integration_id: job.as_ref().map(|j| j.integration_id),
        error_kind,
        reason,
        attempts: broker::header_int(props, headers::ATTEMPT).unwrap_or(1),
        first_failed_at: broker::header_str(props, headers::FIRST_FAILED_AT),
        last_failed_at: last,
        age_seconds: age,
        sync_id: broker::header_str(props, headers::SYNC_ID),
        delivery_tag,
        job,
    }
}

/// Takes every dead job off the queue, unacknowledged. The caller must settle each one.
async fn take_all(ch: &Channel) -> Result<Vec<(DeadJob, Vec<u8>, BasicProperties)>, BrokerError> {
    let now = Utc::now();
    let mut out = Vec::new();
    while let Some(m) = ch
        .basic_get(DEAD_QUEUE.into(), BasicGetOptions { no_ack: false })
        .await?
    {
        let d = m.delivery;
        out.push((
            describe(d.delivery_tag, &d.data, &d.properties, now),
            d.data,
            d.properties,
        ));
    }
    Ok(out)
}

async fn requeue(ch: &Channel, tag: u64) -> Result<(), BrokerError> {
    ch.basic_nack(
        tag,
        BasicNackOptions {
            requeue: true,
            ..Default::default()
        },
    )
    .await?;
    Ok(())
}

/// Every dead job; the queue is left as it was.
pub async fn list(ch: &Channel) -> Result<Vec<DeadJob>, BrokerError> {
    let taken = take_all(ch).await?;
    for (d, _, _) in &taken {
        requeue(ch, d.delivery_tag).await?;
    }
    Ok(taken.into_iter().map(|(d, _, _)| d).collect())
}

/// Replays the selected dead jobs (or, with `dry_run`, only says which it would).
/// `publish` must be a confirm channel; `ch` holds the gets.
pub async fn replay(
    ch: &Channel,
    publish: &Channel,
    sel: &Selection,
    dry_run: bool,
) -> Result<Vec<DeadJob>, BrokerError> {
    let taken = take_all(ch).await?;
    let mut replayed = Vec::new();
    for (d, _, _) in taken {
        if dry_run || !sel.matches(&d) {
            requeue(ch, d.delivery_tag).await?;
            if dry_run && sel.matches(&d) {
                replayed.push(d);
            }
            continue;
        }
        let mut job = d.job.clone().expect("matches() requires a job");
        job.trigger = Trigger::Replay;
        job.requested_at = Utc::now();
        // A fresh start: the job's own properties, no attempt or failure headers.
        match broker::publish_job(publish, &job).await {
            Ok(()) => {
                ch.basic_ack(d.delivery_tag, BasicAckOptions::default())
                    .await?;
                replayed.push(d);
            }
            Err(e) => {
                requeue(ch, d.delivery_tag).await?;
                return Err(e);
            }
        }
    }
    Ok(replayed)
}
