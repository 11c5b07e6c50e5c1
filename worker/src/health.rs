//! `/healthz` and `/readyz` for Kubernetes probes, `/metrics` for Prometheus.
//!
//! Liveness says only that the process answers (a dependency outage must not get the pod
//! killed: the worker waits it out by itself). Readiness says whether the worker can do its
//! job: consuming from the broker, the database reachable, the schema current.

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use opsync_shared::store;
use opsync_shared::worker::Worker;
use serde_json::json;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

pub async fn serve(addr: SocketAddr, worker: Arc<Worker>) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    tracing::info!(addr = %listener.local_addr()?, "health server listening");
    let app = Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(worker);
    axum::serve(listener, app).await
}

async fn metrics(State(worker): State<Arc<Worker>>) -> impl axum::response::IntoResponse {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        worker.metrics.encode(),
    )
}

async fn readyz(State(worker): State<Arc<Worker>>) -> (StatusCode, axum::Json<serde_json::Value>) {
    let broker = worker.broker_ready.load(Ordering::Relaxed);
    let database = tokio::time::timeout(Duration::from_secs(2), async {
        let conn = worker.pool.get().await.ok()?;
        conn.query_one("SELECT 1", &[]).await.ok()?;
        Some(())
    })
    .await
    .ok()
    .flatten()
    .is_some();
    let schema = database && store::require_current_schema(&worker.pool).await.is_ok();
    let ready = broker && database && schema;
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        axum::Json(
            json!({"ready": ready, "broker": broker, "database": database, "schema_current": schema}),
        ),
    )
}
