//! The outbox relay: publishes committed events, marks them published.
//!
//! Events are written in the sync's transaction (so state and events cannot disagree) and
//! published afterwards, from the database, by any replica: a worker that dies between commit
//! and publish leaves its events for the next relay pass of any worker. Per integration, one
//! relay at a time (a transaction-scoped advisory lock) publishes in `seq` order, so each
//! integration's events reach the broker in the order they happened. The outbox holds one
//! row per sync (its `seq` range and how far it is confirmed), not one per event: a sync of
//! 100,000 members adds one row, and the relay moves its mark once per pass. Publishing is
//! at-least-once: a crash after the broker's confirm and before the mark publishes again,
//! with the same `message_id`, which consumers dedupe.

use crate::broker::{self, BrokerError, EVENTS_EXCHANGE};
use crate::store::{self, PendingEvent, StoreError};
use crate::sync::SyncError;
use deadpool_postgres::Pool;
use lapin::options::BasicPublishOptions;
use lapin::{BasicProperties, Channel};

/// Width of a relay batch in `seq` values, so at most this many events (exactly this many
/// when no other integration's events are interleaved): published, then confirmed, then the
/// next.
pub const BATCH: i64 = 2_500;

/// The AMQP headers carrying a trace context (JSON object of propagation fields).
fn trace_headers(trace_context: Option<&str>) -> lapin::types::FieldTable {
    let mut headers = lapin::types::FieldTable::default();
    if let Some(fields) = trace_context
        .and_then(|t| serde_json::from_str::<std::collections::BTreeMap<String, String>>(t).ok())
    {
        crate::tracecontext::into_headers(&fields, &mut headers);
    }
    headers
}

fn properties(e: &PendingEvent, headers: lapin::types::FieldTable) -> BasicProperties {
    BasicProperties::default()
        .with_headers(headers)
        .with_content_type("application/json".into())
        .with_delivery_mode(2)
        .with_message_id(e.event_id.to_string().into())
        .with_type(e.event_type.as_str().into())
        .with_app_id("opsync".into())
        .with_timestamp(chrono::Utc::now().timestamp().max(0) as u64)
}

/// Batches one relay transaction publishes before it commits its marks: bounds what a crash
/// republishes (at most this many batches) while sparing a commit per batch.
pub const BATCHES_PER_PASS: usize = 10;

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
            let (n, more) = publish_pass(pool, ch, integration, metrics).await?;
            published += n;
            if !more {
                break;
            }
        }
    }
    Ok(published)
}

/// Up to [`BATCHES_PER_PASS`] batches of the integration's oldest pending sync in one
/// transaction: claim, then per batch publish and collect the confirms, then record how far
/// the sync is confirmed and commit. The next batch is read while the broker confirms the
/// current one (reading publishes nothing, so the order on the broker stays the `seq`
/// order); the broker still sees exactly the publish-then-confirm rhythm of the broker floor
/// in `make bench`. Returns the events published and whether more may be pending.
async fn publish_pass(
    pool: &Pool,
    ch: &Channel,
    integration: uuid::Uuid,
    metrics: Option<&crate::metrics::Metrics>,
) -> Result<(u64, bool), SyncError> {
    let mut conn = pool.get().await.map_err(StoreError::from)?;
    let tx = conn.transaction().await.map_err(StoreError::from)?;
    if !store::try_claim_outbox(&tx, integration).await? {
        // Another relay is on it.
        return Ok((0, false));
    }
    let Some(sync) = store::next_outbox_sync(&tx, integration).await? else {
        return Ok((0, false));
    };
    // Batches are windows of BATCH seq values: (cursor, cursor + BATCH].
    let window_end = |from: i64| (from + BATCH).min(sync.last_seq);
    let mut cursor = sync.published_seq;
    let mut end = window_end(cursor);
    let mut batch = store::pending_events(&tx, &sync, cursor, end).await?;
    let mut count = 0i64;
    let mut failure: Option<SyncError> = None;
    let mut batches = 0;
    loop {
        batches += 1;
        let read_next = end < sync.last_seq && batches < BATCHES_PER_PASS;
        let next_end = window_end(end);
        let (published, next) = tokio::join!(publish_batch(ch, &batch, metrics), async {
            if read_next {
                store::pending_events(&tx, &sync, end, next_end)
                    .await
                    .map(Some)
            } else {
                Ok(None)
            }
        });
        let (ok, err) = published;
        count += ok.len() as i64;
        if let Some(e) = err {
            // Confirmed up to the last confirmed event of this window, if any.
            if let Some(&seq) = ok.last() {
                cursor = seq;
            }
            failure = Some(e.into());
            break;
        }
        cursor = end;
        match next {
            Ok(Some(n)) => {
                batch = n;
                end = next_end;
            }
            Ok(None) => break,
            Err(e) => {
                failure = Some(e.into());
                break;
            }
        }
    }
    // Only the confirmed prefix counts: what follows a failure stays pending, in order. A
    // sync whose events are all confirmed leaves the outbox.
    let finished = store::mark_published(&tx, &sync, cursor, count).await?;
    tx.commit().await.map_err(StoreError::from)?;
    match failure {
        Some(err) => {
            tracing::warn!(integration_id = %integration, published = count, error = %err, "outbox pass partly published");
            Err(err)
        }
        None => Ok((count as u64, finished || cursor < sync.last_seq)),
    }
}

/// Publishes one batch pipelined (send it all, then collect the confirms: waiting for each
/// confirm before the next publish would cost one broker round trip per event). Returns the
/// seqs of the confirmed prefix and the error that ended it, if any.
async fn publish_batch(
    ch: &Channel,
    events: &[PendingEvent],
    metrics: Option<&crate::metrics::Metrics>,
) -> (Vec<i64>, Option<BrokerError>) {
    let mut confirms = Vec::with_capacity(events.len());
    let mut send_error = None;
    // The producing job's trace context travels on with its events. A sync's events share
    // one, so it is parsed once per run of equal contexts, not once per event.
    let mut headers: Option<(Option<&str>, lapin::types::FieldTable)> = None;
    for e in events {
        let context = e.trace_context.as_deref();
        let h = match &headers {
            Some((c, h)) if *c == context => h.clone(),
            _ => {
                let h = trace_headers(context);
                headers = Some((context, h.clone()));
                h
            }
        };
        match ch
            .basic_publish(
                EVENTS_EXCHANGE.into(),
                e.event_type.as_str().into(),
                BasicPublishOptions {
                    mandatory: true,
                    ..Default::default()
                },
                e.payload.as_bytes(),
                properties(e, h),
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
    let mut confirmed = Vec::with_capacity(confirms.len());
    let mut failure = send_error;
    for (c, e) in confirms.into_iter().zip(events) {
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
    (confirmed, failure)
}
