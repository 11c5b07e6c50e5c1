//! The worker: takes sync jobs from RabbitMQ, runs them, acks after commit, relays the outbox.
//!
//! At-least-once, end to end: a delivery is acked only after its sync committed (or after a
//! retry or dead-letter copy of it was confirmed by the broker), so a worker killed at any
//! point loses nothing: the broker redelivers what was not acked, and the job-id check turns a
//! redelivery of a committed job into a no-op. The broker connection is rebuilt with backoff
//! when it drops (channels, topology, consumer, relay): lapin's own recovery is not relied on.

use crate::broker::{self, headers};
use crate::crypto::Keyring;
use crate::error::one_line;
use crate::job::SyncJob;
use crate::outbox;
use crate::scim::ClientConfig;
use crate::sync::{self, FailureAction, JobOutcome, SyncDeps, SyncError};
use deadpool_postgres::Pool;
use futures::StreamExt;
use lapin::message::Delivery;
use lapin::options::{BasicAckOptions, BasicConsumeOptions, BasicNackOptions, BasicQosOptions};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::sync::{Notify, Semaphore, watch};
use tracing::Instrument;

#[derive(Debug, Clone)]
pub struct WorkerConfig {
    pub amqp_url: String,
    /// Jobs run at once; also the consumer prefetch.
    pub concurrency: u16,
    /// Delays between attempts of a failed job; their count is the number of retries.
    pub retry_delays: Vec<Duration>,
    /// How long running jobs may take to finish after SIGTERM.
    pub shutdown_deadline: Duration,
    /// How often the relay looks for events left by others (it is also woken after each sync).
    pub relay_interval: Duration,
    /// Run the outbox relay in this process (a deployment may run it elsewhere).
    pub relay: bool,
    pub removals: crate::directory::RemovalPolicy,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        Self {
            amqp_url: "amqp://guest:guest@127.0.0.1:5672/%2f".into(),
            concurrency: 4,
            retry_delays: vec![
                Duration::from_secs(30),
                Duration::from_secs(120),
                Duration::from_secs(600),
                Duration::from_secs(1800),
            ],
            shutdown_deadline: Duration::from_secs(25),
            relay_interval: Duration::from_secs(2),
            relay: true,
            removals: crate::directory::RemovalPolicy::default(),
        }
    }
}

/// Shared state of one worker process.
pub struct Worker {
    pub cfg: WorkerConfig,
    pub pool: Pool,
    pub keyring: Arc<Keyring>,
    pub client: ClientConfig,
    relay_wake: Notify,
    /// True while connected to the broker with a consumer running: readiness.
    pub broker_ready: AtomicBool,
    pub metrics: Arc<crate::metrics::Metrics>,
}

impl Worker {
    pub fn new(
        cfg: WorkerConfig,
        pool: Pool,
        keyring: Arc<Keyring>,
        client: ClientConfig,
    ) -> Arc<Self> {
        Arc::new(Self {
            cfg,
            pool,
            keyring,
            client,
            relay_wake: Notify::new(),
            broker_ready: AtomicBool::new(false),
            metrics: Arc::new(crate::metrics::Metrics::new()),
        })
    }

    /// Runs until `shutdown` turns true; then stops consuming, lets running jobs finish within
    /// the deadline and returns. Unacked deliveries go back to the queue when the connection
    /// closes, so whatever did not finish is requeued by the broker.
    pub async fn run(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        let mut backoff = reconnect_backoff();
        loop {
            if *shutdown.borrow() {
                return;
            }
            let started = std::time::Instant::now();
            match self.clone().session(&mut shutdown).await {
                Ok(()) => return,
                Err(e) => {
                    // A session that ran a while was a success until it broke: start the
                    // backoff over rather than waiting as long as after many failures.
                    if started.elapsed() > Duration::from_secs(10) {
                        backoff = reconnect_backoff();
                    }
                    self.broker_ready.store(false, Ordering::Relaxed);
                    let delay = backoff.next().unwrap_or(Duration::from_secs(30));
                    tracing::warn!(error.kind = e.kind(), error = %e, delay_ms = delay.as_millis() as u64, "broker session ended, reconnecting");
                    tokio::select! {
                        _ = tokio::time::sleep(delay) => {}
                        _ = shutdown.changed() => return,
                    }
                }
            }
        }
    }

    /// One broker connection's life. `Ok` means a clean shutdown.
    async fn session(
        self: Arc<Self>,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Result<(), SyncError> {
        let conn = broker::connect(&self.cfg.amqp_url).await?;
        let consume = conn
            .create_channel()
            .await
            .map_err(broker::BrokerError::from)?;
        broker::declare_topology(&consume, &self.cfg.retry_delays).await?;
        consume
            .basic_qos(self.cfg.concurrency, BasicQosOptions::default())
            .await
            .map_err(broker::BrokerError::from)?;
        let publish = broker::confirm_channel(&conn).await?;
        let relay_ch = broker::confirm_channel(&conn).await?;
        let mut consumer = consume
            .basic_consume(
                broker::JOBS_QUEUE.into(),
                "".into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(broker::BrokerError::from)?;
        tracing::info!(
            concurrency = self.cfg.concurrency,
            "consuming {}",
            broker::JOBS_QUEUE
        );
        self.broker_ready.store(true, Ordering::Relaxed);

        let (relay_stop_tx, relay_stop) = watch::channel(false);
        let relay = self
            .cfg
            .relay
            .then(|| tokio::spawn(self.clone().relay_loop(relay_ch, relay_stop)));
        let slots = Arc::new(Semaphore::new(self.cfg.concurrency as usize));
        let mut jobs = tokio::task::JoinSet::new();
        let result = loop {
            tokio::select! {
                next = consumer.next() => match next {
                    Some(Ok(delivery)) => {
                        let permit = slots.clone().acquire_owned().await.expect("never closed");
                        let this = self.clone();
                        let publish = publish.clone();
                        jobs.spawn(async move {
                            this.handle(delivery, &publish).await;
                            drop(permit);
                        });
                    }
                    Some(Err(e)) => break Err(SyncError::from(broker::BrokerError::from(e))),
                    None => break Err(broker::BrokerError::Amqp { detail: "the consumer was cancelled".into() }.into()),
                },
                Some(_) = jobs.join_next(), if !jobs.is_empty() => {}
                _ = shutdown.changed() => break Ok(()),
            }
        };
        self.broker_ready.store(false, Ordering::Relaxed);
        // Stop taking jobs first, then give the running ones until the deadline.
        let _ = consume
            .basic_cancel(consumer.tag(), Default::default())
            .await;
        let drained = tokio::time::timeout(self.cfg.shutdown_deadline, async {
            while jobs.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            tracing::warn!(
                left = jobs.len(),
                "shutdown deadline reached; unfinished jobs go back to the queue"
            );
            jobs.abort_all();
        }
        let _ = relay_stop_tx.send(true);
        if let Some(relay) = relay {
            let _ = relay.await;
        }
        // Channels first, then the connection: closing a connection under open channels makes
        // lapin log a spurious channel error on every clean stop.
        let _ = publish.close(200, "opsync worker stopping".into()).await;
        let _ = consume.close(200, "opsync worker stopping".into()).await;
        let _ = conn.close(200, "opsync worker stopping".into()).await;
        result
    }

    async fn relay_loop(self: Arc<Self>, ch: Channel, mut stop: watch::Receiver<bool>) {
        loop {
            match outbox::publish_pending(&self.pool, &ch, Some(&self.metrics)).await {
                Ok(0) => {}
                Ok(n) => tracing::debug!(published = n, "outbox relayed"),
                Err(e) => {
                    tracing::warn!(error.kind = e.kind(), error = %e, "outbox relay failed");
                    if !ch.status().connected() {
                        return;
                    }
                }
            }
            self.update_backlog().await;
            tokio::select! {
                _ = self.relay_wake.notified() => {}
                _ = tokio::time::sleep(self.cfg.relay_interval) => {}
                _ = stop.changed() => {
                    // One last pass so a clean shutdown leaves nothing behind.
                    let _ = outbox::publish_pending(&self.pool, &ch, Some(&self.metrics)).await;
                    let _ = ch.close(200, "opsync worker stopping".into()).await;
                    return;
                }
            }
        }
    }

    async fn update_backlog(&self) {
        if let Ok(conn) = self.pool.get().await
            && let Ok((n, age)) = crate::store::outbox_backlog(&conn).await
        {
            self.metrics.outbox_backlog.set(n);
            self.metrics.outbox_oldest_age.set(age.unwrap_or(0.0));
        }
    }

    async fn handle(&self, delivery: Delivery, publish: &Channel) {
        self.metrics.jobs_in_flight.inc();
        self.handle_inner(delivery, publish).await;
        self.metrics.jobs_in_flight.dec();
    }

    async fn handle_inner(&self, delivery: Delivery, publish: &Channel) {
        let attempt = broker::header_int(&delivery.properties, headers::ATTEMPT)
            .unwrap_or(1)
            .max(1) as u32;
        let job = match SyncJob::parse(&delivery.data) {
            Ok(job) => job,
            Err(e) => {
                let err = SyncError::from(e);
                tracing::error!(error.kind = err.kind(), error = %err, "not a sync job; dead-lettering it");
                self.settle(
                    &delivery,
                    publish,
                    FailureAction::DeadLetter,
                    &err,
                    attempt,
                    None,
                )
                .await;
                return;
            }
        };
        let span = tracing::info_span!("sync_job", job_id = %job.job_id, integration_id = %job.integration_id,
            sync_id = %crate::events::sync_id_for_job(job.job_id), trigger = job.trigger.as_str(), attempt);
        // The scheduler's trace continues here (W3C traceparent in the job's headers).
        crate::tracecontext::adopt_parent(&span, &delivery.properties);
        async {
            let deps = SyncDeps {
                pool: &self.pool,
                keyring: &self.keyring,
                client: &self.client,
                removals: self.cfg.removals,
                metrics: Some(self.metrics.clone()),
            };
            match sync::run_job(&deps, &job, |_, _| {}).await {
                Ok(JobOutcome::Completed(summary)) => {
                    self.metrics.job("succeeded", "");
                    self.relay_wake.notify_one();
                    tracing::info!(events = summary.events, users = summary.counts.users, elapsed_ms = summary.elapsed_ms, "job done");
                    ack(&delivery).await;
                }
                Ok(JobOutcome::AlreadyDone) => {
                    self.metrics.job("duplicate", "");
                    tracing::info!("job already completed; acking the duplicate");
                    ack(&delivery).await;
                }
                Err(e) => {
                    let action = sync::on_failure(attempt, e.class(), e.kind(), &self.cfg.retry_delays);
                    tracing::warn!(error.kind = e.kind(), error.class = e.class().as_str(), error = %e, ?action, "job failed");
                    self.settle(&delivery, publish, action, &e, attempt, Some(&job)).await;
                }
            }
        }
        .instrument(span)
        .await
    }

    /// Sends a failed job on (to a delay queue or the dead-letter queue) and acks it only once
    /// the broker confirmed the copy; if that fails, the delivery is requeued instead.
    async fn settle(
        &self,
        delivery: &Delivery,
        publish: &Channel,
        action: FailureAction,
        e: &SyncError,
        attempt: u32,
        job: Option<&SyncJob>,
    ) {
        let now = crate::events::rfc3339(chrono::Utc::now());
        let first = broker::header_str(&delivery.properties, headers::FIRST_FAILED_AT)
            .unwrap_or_else(|| now.clone());
        let mut set: Vec<(&str, AMQPValue)> = vec![
            (headers::FIRST_FAILED_AT, broker::amqp_str(&first)),
            (headers::LAST_FAILED_AT, broker::amqp_str(&now)),
            (headers::ERROR_KIND, broker::amqp_str(e.kind())),
            // The message is built from our own error types: never a token, never a body dump.
            (
                headers::ERROR_REASON,
                broker::amqp_str(&one_line(&e.to_string(), 500)),
            ),
        ];
        if let Some(job) = job {
            set.push((
                headers::SYNC_ID,
                broker::amqp_str(&crate::events::sync_id_for_job(job.job_id).to_string()),
            ));
        }
        let (exchange, routing_key, attempt_header) = match action {
            FailureAction::Retry { delay, attempt } => {
                (String::new(), broker::retry_queue(delay), attempt)
            }
            FailureAction::DeadLetter => (broker::DEAD_EXCHANGE.to_owned(), String::new(), attempt),
        };
        set.push((
            headers::ATTEMPT,
            AMQPValue::LongLongInt(attempt_header as i64),
        ));
        let props: BasicProperties = broker::with_headers(&delivery.properties, &set);
        match action {
            FailureAction::Retry { .. } => self.metrics.job("retried", e.kind()),
            FailureAction::DeadLetter => {
                self.metrics.job("dead_lettered", e.kind());
                self.metrics
                    .dead_lettered
                    .get_or_create(&crate::metrics::KindLabels {
                        error_kind: e.kind().to_owned(),
                    })
                    .inc();
            }
        }
        match broker::publish_confirmed(publish, &exchange, &routing_key, &delivery.data, props)
            .await
        {
            Ok(()) => ack(delivery).await,
            Err(err) => {
                tracing::error!(error = %err, "could not park the failed job; requeueing it");
                let _ = delivery
                    .acker
                    .nack(BasicNackOptions {
                        requeue: true,
                        ..Default::default()
                    })
                    .await;
            }
        }
    }
}

async fn ack(delivery: &Delivery) {
    // An ack can fail only when the channel is gone; the broker then redelivers the job and the
    // job-id check makes the redelivery a no-op.
    if let Err(e) = delivery.acker.ack(BasicAckOptions::default()).await {
        tracing::warn!(error = %e, "ack failed; the job will be redelivered and recognised as done");
    }
}

fn reconnect_backoff() -> impl Iterator<Item = Duration> {
    use backon::BackoffBuilder;
    backon::ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(200))
        .with_max_delay(Duration::from_secs(30))
        .with_jitter()
        .without_max_times()
        .build()
}
