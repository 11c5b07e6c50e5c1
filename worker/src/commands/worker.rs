//! `opsync worker`: wiring only. The worker itself is `opsync_shared::worker`.

use crate::cli::WorkerArgs;
use crate::exit;
use opsync_shared::store;
use opsync_shared::worker::{Worker, WorkerConfig};
use std::sync::Arc;

pub async fn run(a: WorkerArgs) -> u8 {
    let keyring = match super::keyring(&a.key, true) {
        Ok(k) => Arc::new(k),
        Err(code) => return code,
    };
    let client = match super::client_config(&a.bridge, false) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let pool = match store::pool(
        &a.db.database_url,
        a.db_pool_size.max(a.concurrency as usize + 2),
    ) {
        Ok(p) => p,
        Err(e) => return super::store_error(false, &e),
    };
    // Refuse to run against an older schema: writing to it would fail halfway through jobs.
    if let Err(e) = store::require_current_schema(&pool).await {
        tracing::error!(error.kind = e.kind(), error = %e, "not starting");
        return super::store_error(false, &e);
    }
    let cfg = WorkerConfig {
        amqp_url: a.amqp.amqp_url,
        concurrency: a.concurrency,
        retry_delays: a.retry.retry_delays,
        shutdown_deadline: a.shutdown_deadline,
        relay_interval: a.relay_interval,
        relay: !a.no_relay,
        removals: a.removals.policy(),
    };
    let worker = Worker::new(cfg, pool, keyring, client);
    let health = a.health_addr;
    let for_health = worker.clone();
    tokio::spawn(async move {
        if let Err(e) = crate::health::serve(health, for_health).await {
            tracing::error!(error = %e, addr = %health, "the health server could not start; probes will fail");
        }
    });
    let (tx, rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown_signal().await;
        tracing::info!("shutdown requested: finishing running jobs");
        let _ = tx.send(true);
    });
    worker.run(rx).await;
    tracing::info!("worker stopped");
    exit::OK
}

async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
