//! The outbox relay: publishes committed events, marks them published.
//!
//! Events are written in the sync's transaction (so state and events cannot disagree) and
//! published afterwards, from the database, by any replica: a worker that dies between commit
//! and publish leaves its events for the next relay pass of any worker. Per integration, one
//! relay at a time (a transaction-scoped advisory lock) publishes in `seq` order, so each
//! integration's events reach the broker in the order they happened. Rows are taken with
//! `FOR UPDATE SKIP LOCKED`. Publishing is at-least-once: a crash after the broker's confirm
//! and before the mark publishes again, with the same `message_id`, which consumers dedupe.

use crate::broker::{self, BrokerError, EVENTS_EXCHANGE};
use crate::store::{self, PendingEvent, StoreError};
use crate::sync::SyncError;
use deadpool_postgres::Pool;
use lapin::options::BasicPublishOptions;
use lapin::{BasicProperties, Channel};

/// Events published per transaction: bounds the work lost to a crash and the locks held.
pub const BATCH: i64 = 2_500;

fn properties(e: &PendingEvent) -> BasicProperties {
    // The producing job's trace context travels on with its events.
    let mut headers = lapin::types::FieldTable::default();
    if let Some(fields) = e
        .trace_context
        .as_deref()
        .and_then(|t| serde_json::from_str::<std::collections::BTreeMap<String, String>>(t).ok())
    {
        crate::tracecontext::into_headers(&fields, &mut headers);
    }
    BasicProperties::default()
        .with_headers(headers)
        .with_content_type("application/json".into())
        .with_delivery_mode(2)
        .with_message_id(e.event_id.to_string().into())
        .with_type(e.event_type.as_str().into())
        .with_app_id("opsync".into())
        .with_timestamp(chrono::Utc::now().timestamp().max(0) as u64)
}

/// Publishes everything pending now; returns how many events were published.
pub async fn publish_pending(
    pool: &Pool,
    ch: &Channel,
    metrics: Option<&crate::metrics::Metrics>,
) -> Result<u64, SyncError> {
    let mut published = 0;
    let integrations = {
        let conn = pool.get().await.map_err(StoreError::from)?;
        store::integrations_with_pending_events(&conn).await?
    };
    for integration in integrations {
        loop {
            let n = publish_batch(pool, ch, integration, metrics).await?;
            published += n;
            if n < BATCH as u64 {
                break;
            }
        }
    }
    Ok(published)
}

/// One batch of one integration: claim, publish with confirms, mark, commit.
async fn publish_batch(
    pool: &Pool,
    ch: &Channel,
    integration: uuid::Uuid,
    metrics: Option<&crate::metrics::Metrics>,
) -> Result<u64, SyncError> {
    let mut conn = pool.get().await.map_err(StoreError::from)?;
    let tx = conn.transaction().await.map_err(StoreError::from)?;
    if !store::try_claim_outbox(&tx, integration).await? {
        // Another relay is on it.
        return Ok(0);
    }
    let events = store::pending_events(&tx, integration, BATCH).await?;
    if events.is_empty() {
        return Ok(0);
    }
    // Pipelined: send the whole batch, then collect the confirms. Waiting for each confirm
    // before the next publish would cost one broker round trip per event.
    let mut confirms = Vec::with_capacity(events.len());
    let mut send_error = None;
    for e in &events {
        match ch
            .basic_publish(
                EVENTS_EXCHANGE.into(),
                e.event_type.as_str().into(),
                BasicPublishOptions {
                    mandatory: true,
                    ..Default::default()
                },
                e.payload.as_bytes(),
                properties(e),
            )
            .await
        {
            Ok(c) => confirms.push(c),
            Err(err) => {
                send_error = Some(BrokerError::from(err));
                break;
            }
        }
    }
    // Mark the confirmed prefix only: what follows a failure stays pending, in order.
    let mut confirmed = Vec::with_capacity(confirms.len());
    let mut failure = send_error;
    for (c, e) in confirms.into_iter().zip(&events) {
        if failure.is_some() {
            // Still drain the confirms so the channel's bookkeeping stays right.
            let _ = c.await;
            continue;
        }
        match c
            .await
            .map_err(BrokerError::from)
            .and_then(|c| broker::check_confirmation(c, 1))
        {
            Ok(()) => {
                confirmed.push(e.seq);
                if let Some(m) = metrics {
                    m.events_published
                        .get_or_create(&crate::metrics::TypeLabels {
                            r#type: e.event_type.clone(),
                        })
                        .inc();
                }
            }
            Err(err) => failure = Some(err),
        }
    }
    if !confirmed.is_empty() {
        store::mark_published(&tx, &confirmed).await?;
        tx.commit().await.map_err(StoreError::from)?;
    }
    match failure {
        Some(err) => {
            tracing::warn!(integration_id = %integration, published = confirmed.len(), error = %err, "outbox batch partly published");
            Err(err.into())
        }
        None => Ok(confirmed.len() as u64),
    }
}
