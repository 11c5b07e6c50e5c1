//! The RabbitMQ edge: topology, publishing with confirms, job retry and dead-letter routes.
//!
//! Names here are a contract with Viio's scheduler and consumers (README "Contract"):
//! - `opsync.jobs` (direct) --`sync`--> `opsync.sync-jobs` (quorum): sync jobs;
//! - `opsync.events` (topic): change events, routing key = event type; its alternate exchange
//!   `opsync.events.unrouted` keeps (7 days) events that no consumer queue is bound for;
//! - `opsync.dead` (fanout) --> `opsync.sync-jobs.dead` (quorum): jobs that failed for good,
//!   also where the broker dead-letters a job that crashed its worker `delivery_limit` times;
//! - `opsync.sync-jobs.retry.<delay>` (classic, per-queue TTL): a failed job waits there and
//!   then goes back through `opsync.jobs`. The worker never holds a delivery while it waits.

use crate::error::one_line;
use crate::job::SyncJob;
use lapin::options::{
    BasicPublishOptions, ConfirmSelectOptions, ExchangeDeclareOptions, QueueBindOptions,
    QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, ExchangeKind};
use std::time::Duration;

pub const JOBS_EXCHANGE: &str = "opsync.jobs";
pub const JOBS_QUEUE: &str = "opsync.sync-jobs";
pub const JOBS_ROUTING_KEY: &str = "sync";
pub const EVENTS_EXCHANGE: &str = "opsync.events";
/// Events no queue is bound for land here (the alternate exchange of `opsync.events`) instead
/// of being dropped or blocking the outbox; kept 7 days.
pub const UNROUTED_EXCHANGE: &str = "opsync.events.unrouted";
pub const UNROUTED_QUEUE: &str = "opsync.events.unrouted";
const UNROUTED_TTL_MS: i64 = 7 * 24 * 3600 * 1000;
pub const DEAD_EXCHANGE: &str = "opsync.dead";
pub const DEAD_QUEUE: &str = "opsync.sync-jobs.dead";
/// Deliveries of one job (crashes included) before the broker dead-letters it.
pub const DELIVERY_LIMIT: i64 = 5;

/// Headers a job carries between attempts and into the dead-letter queue.
pub mod headers {
    pub const ATTEMPT: &str = "x-opsync-attempt";
    pub const FIRST_FAILED_AT: &str = "x-opsync-first-failed-at";
    pub const LAST_FAILED_AT: &str = "x-opsync-last-failed-at";
    pub const ERROR_KIND: &str = "x-opsync-error-kind";
    pub const ERROR_REASON: &str = "x-opsync-error-reason";
    pub const SYNC_ID: &str = "x-opsync-sync-id";
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum BrokerError {
    #[error(
        "the message broker failed ({detail}); it is retried, check that RabbitMQ is up and AMQP_URL is right if this persists"
    )]
    Amqp { detail: String },
    #[error(
        "the broker refused to confirm {count} message(s) ({detail}); they stay in the outbox and are retried"
    )]
    NotConfirmed { count: usize, detail: String },
}

impl BrokerError {
    pub fn kind(&self) -> &'static str {
        "broker_error"
    }
}

impl From<lapin::Error> for BrokerError {
    fn from(e: lapin::Error) -> Self {
        BrokerError::Amqp {
            detail: one_line(&e.to_string(), 300),
        }
    }
}

pub async fn connect(url: &str) -> Result<Connection, BrokerError> {
    let props = ConnectionProperties::default().with_connection_name(LongString::from(format!(
        "opsync@{}",
        std::env::var("HOSTNAME").unwrap_or_else(|_| "local".into())
    )));
    Ok(Connection::connect(url, props).await?)
}

/// A channel in publisher-confirm mode.
pub async fn confirm_channel(conn: &Connection) -> Result<Channel, BrokerError> {
    let ch = conn.create_channel().await?;
    ch.confirm_select(ConfirmSelectOptions::default()).await?;
    Ok(ch)
}

fn durable() -> QueueDeclareOptions {
    QueueDeclareOptions {
        durable: true,
        ..QueueDeclareOptions::default()
    }
}

fn table(entries: &[(&str, AMQPValue)]) -> FieldTable {
    let mut t = FieldTable::default();
    for (k, v) in entries {
        t.insert(ShortString::from(*k), v.clone());
    }
    t
}

fn long(s: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(s))
}

/// The name of the delay queue for one retry delay, e.g. `opsync.sync-jobs.retry.30s`.
pub fn retry_queue(delay: Duration) -> String {
    format!("{JOBS_QUEUE}.retry.{}", humanize(delay))
}

fn humanize(d: Duration) -> String {
    let s = d.as_secs();
    if s >= 3600 && s.is_multiple_of(3600) {
        format!("{}h", s / 3600)
    } else if s >= 60 && s.is_multiple_of(60) {
        format!("{}m", s / 60)
    } else if d.subsec_millis() == 0 {
        format!("{s}s")
    } else {
        format!("{}ms", d.as_millis())
    }
}

/// Declares everything opsync uses; idempotent (same names, same arguments).
pub async fn declare_topology(ch: &Channel, retry_delays: &[Duration]) -> Result<(), BrokerError> {
    let ex = ExchangeDeclareOptions {
        durable: true,
        ..ExchangeDeclareOptions::default()
    };
    ch.exchange_declare(
        JOBS_EXCHANGE.into(),
        ExchangeKind::Direct,
        ex,
        FieldTable::default(),
    )
    .await?;
    ch.exchange_declare(
        UNROUTED_EXCHANGE.into(),
        ExchangeKind::Fanout,
        ex,
        FieldTable::default(),
    )
    .await?;
    ch.queue_declare(
        UNROUTED_QUEUE.into(),
        durable(),
        table(&[("x-message-ttl", AMQPValue::LongLongInt(UNROUTED_TTL_MS))]),
    )
    .await?;
    ch.queue_bind(
        UNROUTED_QUEUE.into(),
        UNROUTED_EXCHANGE.into(),
        "".into(),
        QueueBindOptions::default(),
        FieldTable::default(),
    )
    .await?;
    ch.exchange_declare(
        EVENTS_EXCHANGE.into(),
        ExchangeKind::Topic,
        ex,
        table(&[("alternate-exchange", long(UNROUTED_EXCHANGE))]),
    )
    .await?;
    ch.exchange_declare(
        DEAD_EXCHANGE.into(),
        ExchangeKind::Fanout,
        ex,
        FieldTable::default(),
    )
    .await?;
    ch.queue_declare(
        JOBS_QUEUE.into(),
        durable(),
        table(&[
            ("x-queue-type", long("quorum")),
            ("x-dead-letter-exchange", long(DEAD_EXCHANGE)),
            ("x-delivery-limit", AMQPValue::LongLongInt(DELIVERY_LIMIT)),
        ]),
    )
    .await?;
    ch.queue_bind(
        JOBS_QUEUE.into(),
        JOBS_EXCHANGE.into(),
        JOBS_ROUTING_KEY.into(),
        QueueBindOptions::default(),
        FieldTable::default(),
    )
    .await?;
    ch.queue_declare(
        DEAD_QUEUE.into(),
        durable(),
        table(&[("x-queue-type", long("quorum"))]),
    )
    .await?;
    ch.queue_bind(
        DEAD_QUEUE.into(),
        DEAD_EXCHANGE.into(),
        "".into(),
        QueueBindOptions::default(),
        FieldTable::default(),
    )
    .await?;
    for delay in retry_delays {
        ch.queue_declare(
            retry_queue(*delay).as_str().into(),
            durable(),
            table(&[
                (
                    "x-message-ttl",
                    AMQPValue::LongLongInt(delay.as_millis() as i64),
                ),
                ("x-dead-letter-exchange", long(JOBS_EXCHANGE)),
                ("x-dead-letter-routing-key", long(JOBS_ROUTING_KEY)),
            ]),
        )
        .await?;
    }
    Ok(())
}

/// Publishes on a confirm channel and waits for the broker's ack; `mandatory` makes an
/// unroutable message an error instead of a silent drop.
pub async fn publish_confirmed(
    ch: &Channel,
    exchange: &str,
    routing_key: &str,
    body: &[u8],
    props: BasicProperties,
) -> Result<(), BrokerError> {
    let confirm = ch
        .basic_publish(
            exchange.into(),
            routing_key.into(),
            BasicPublishOptions {
                mandatory: true,
                ..Default::default()
            },
            body,
            props,
        )
        .await?
        .await?;
    check_confirmation(confirm, 1)
}

pub fn check_confirmation(c: lapin::Confirmation, count: usize) -> Result<(), BrokerError> {
    match c {
        lapin::Confirmation::Ack(None) => Ok(()),
        lapin::Confirmation::Ack(Some(_)) => Err(BrokerError::NotConfirmed {
            count,
            detail: "unroutable: no queue is bound for it".into(),
        }),
        lapin::Confirmation::Nack(_) => Err(BrokerError::NotConfirmed {
            count,
            detail: "nacked by the broker".into(),
        }),
        lapin::Confirmation::NotRequested => Err(BrokerError::NotConfirmed {
            count,
            detail: "the channel is not in confirm mode".into(),
        }),
    }
}

pub fn job_properties(job: &SyncJob) -> BasicProperties {
    BasicProperties::default()
        .with_content_type("application/json".into())
        .with_delivery_mode(2)
        .with_message_id(job.job_id.to_string().into())
        .with_app_id("opsync".into())
        .with_timestamp(job.requested_at.timestamp().max(0) as u64)
}

/// Puts a job on `opsync.jobs` and waits for the broker's confirm.
pub async fn publish_job(ch: &Channel, job: &SyncJob) -> Result<(), BrokerError> {
    // The current trace context goes in the job's headers, so the job's span continues the
    // caller's trace.
    let mut headers = FieldTable::default();
    crate::tracecontext::into_headers(&crate::tracecontext::current(), &mut headers);
    let props = job_properties(job).with_headers(headers);
    publish_confirmed(ch, JOBS_EXCHANGE, JOBS_ROUTING_KEY, &job.to_json(), props).await
}

pub fn header_str(props: &BasicProperties, name: &str) -> Option<String> {
    match props.headers().as_ref()?.inner().get(name)? {
        AMQPValue::LongString(s) => Some(String::from_utf8_lossy(s.as_bytes()).into_owned()),
        AMQPValue::ShortString(s) => Some(s.as_str().to_owned()),
        _ => None,
    }
}

pub fn header_int(props: &BasicProperties, name: &str) -> Option<i64> {
    match props.headers().as_ref()?.inner().get(name)? {
        AMQPValue::LongLongInt(n) => Some(*n),
        AMQPValue::LongInt(n) => Some(*n as i64),
        AMQPValue::ShortInt(n) => Some(*n as i64),
        AMQPValue::LongUInt(n) => Some(*n as i64),
        AMQPValue::ShortShortInt(n) => Some(*n as i64),
        AMQPValue::ShortShortUInt(n) => Some(*n as i64),
        AMQPValue::ShortUInt(n) => Some(*n as i64),
        _ => None,
    }
}

/// Copies a job's properties with extra headers set (attempt counts, failure details).
pub fn with_headers(props: &BasicProperties, set: &[(&str, AMQPValue)]) -> BasicProperties {
    let mut headers = props.headers().clone().unwrap_or_default();
    for (k, v) in set {
        headers.insert(ShortString::from(*k), v.clone());
    }
    props.clone().with_headers(headers)
}

pub fn amqp_str(s: &str) -> AMQPValue {
    long(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_queue_names() {
        assert_eq!(
            retry_queue(Duration::from_secs(30)),
            "opsync.sync-jobs.retry.30s"
        );
        assert_eq!(
            retry_queue(Duration::from_secs(120)),
            "opsync.sync-jobs.retry.2m"
        );
        assert_eq!(
            retry_queue(Duration::from_secs(7200)),
            "opsync.sync-jobs.retry.2h"
        );
        assert_eq!(
            retry_queue(Duration::from_millis(1500)),
            "opsync.sync-jobs.retry.1500ms"
        );
    }
}
