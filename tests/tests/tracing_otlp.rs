//! OpenTelemetry: a tiny OTLP/HTTP (JSON) receiver collects what `opsync enqueue` and a worker
//! export; one trace must run from the enqueue through the job to the published events.

use axum::routing::post;
use opsync_tests::app::spawn_app;
use serde_json::Value;
use std::sync::{Arc, Mutex};
use std::time::Duration;

async fn otlp_receiver() -> (String, Arc<Mutex<Vec<Value>>>) {
    let got = Arc::new(Mutex::new(Vec::new()));
    let store = got.clone();
    let app = axum::Router::new().route(
        "/v1/traces",
        post(move |body: axum::body::Bytes| {
            let store = store.clone();
            async move {
                if let Ok(v) = serde_json::from_slice::<Value>(&body) {
                    store.lock().unwrap().push(v);
                }
                (
                    [(axum::http::header::CONTENT_TYPE, "application/json")],
                    "{}",
                )
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, got)
}

/// Every span received, flattened: (service name, span).
fn spans(got: &Arc<Mutex<Vec<Value>>>) -> Vec<(String, Value)> {
    let mut out = Vec::new();
    for batch in got.lock().unwrap().iter() {
        for rs in batch["resourceSpans"].as_array().into_iter().flatten() {
            let service = rs["resource"]["attributes"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|a| a["key"] == "service.name")
                .and_then(|a| a["value"]["stringValue"].as_str())
                .unwrap_or_default()
                .to_owned();
            for ss in rs["scopeSpans"].as_array().into_iter().flatten() {
                for s in ss["spans"].as_array().into_iter().flatten() {
                    out.push((service.clone(), s.clone()));
                }
            }
        }
    }
    out
}

fn attr<'a>(span: &'a Value, key: &str) -> Option<&'a Value> {
    span["attributes"]
        .as_array()?
        .iter()
        .find(|a| a["key"] == key)
        .map(|a| &a["value"])
}

/// OTLP/JSON ids are hex; be tolerant of base64 too.
fn hex(id: &Value) -> String {
    let s = id.as_str().unwrap_or_default();
    if s.len() == 32 || s.len() == 16 {
        return s.to_ascii_lowercase();
    }
    use base64::Engine;
    base64::engine::general_purpose::STANDARD
        .decode(s)
        .map(|b| b.iter().map(|x| format!("{x:02x}")).collect())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_trace_from_enqueue_through_the_job_to_the_events() {
    let app = spawn_app(15).await;
    let id = app.add_integration("prod").await;
    let mut events = app.events().await;
    let (url, got) = otlp_receiver().await;
    let otel = [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", url.as_str()),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json"),
        ("OTEL_SERVICE_NAME", "opsync-test"),
        ("OTEL_BSP_SCHEDULE_DELAY", "100"),
    ];
    let _worker = app.spawn_worker_env(&[], &otel);
    let out = app
        .opsync()
        .args(["enqueue", &id.to_string(), "--json"])
        .envs(otel)
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let job: Value = serde_json::from_slice(&out.stdout).unwrap();
    let job_id = job["jobs"][0]["job_id"].as_str().unwrap().to_owned();
    let published = events.until_completed(1, Duration::from_secs(60)).await;

    // Wait for the worker's batch exporter.
    let mut all = Vec::new();
    for _ in 0..100 {
        all = spans(&got);
        if all.iter().any(|(_, s)| s["name"] == "sync_job")
            && all.iter().any(|(_, s)| s["name"] == "enqueue")
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (service, enqueue) = all
        .iter()
        .find(|(_, s)| s["name"] == "enqueue")
        .expect("the enqueue span arrived")
        .clone();
    assert_eq!(service, "opsync-test");
    let trace = hex(&enqueue["traceId"]);
    let job_span = all
        .iter()
        .map(|(_, s)| s)
        .find(|s| s["name"] == "sync_job" && hex(&s["traceId"]) == trace)
        .unwrap_or_else(|| {
            let jobs: Vec<_> = all
                .iter()
                .filter(|(_, s)| s["name"] == "sync_job")
                .map(|(_, s)| (s["traceId"].clone(), s["parentSpanId"].clone()))
                .collect();
            panic!(
                "the job's span is not in the enqueue's trace {trace} ({}): {jobs:?}",
                enqueue["traceId"]
            )
        });
    assert_eq!(
        hex(&job_span["parentSpanId"]),
        hex(&enqueue["spanId"]),
        "the job span's parent is the enqueuing span"
    );
    assert_eq!(
        attr(job_span, "job_id").and_then(|v| v["stringValue"].as_str()),
        Some(job_id.as_str())
    );
    assert_eq!(
        attr(job_span, "integration_id").and_then(|v| v["stringValue"].as_str()),
        Some(id.to_string().as_str())
    );
    assert!(attr(job_span, "sync_id").is_some() && attr(job_span, "trigger").is_some());
    let requests: Vec<_> = all
        .iter()
        .map(|(_, s)| s)
        .filter(|s| s["name"] == "bridge_request" && hex(&s["traceId"]) == trace)
        .collect();
    assert!(
        !requests.is_empty(),
        "bridge requests are spans of the trace"
    );
    assert!(
        requests
            .iter()
            .all(|r| hex(&r["parentSpanId"]) == hex(&job_span["spanId"]))
    );
    assert!(requests.iter().any(|r| attr(r, "status").is_some()));
    assert!(
        requests
            .iter()
            .any(|r| attr(r, "start_index").and_then(|v| v["stringValue"].as_str()) == Some("1")),
        "page requests name their page"
    );
    assert!(
        requests
            .iter()
            .all(|r| attr(r, "attempt").is_some() && attr(r, "duration_ms").is_some())
    );
    // Every published event carries the job's trace context.
    for e in &published {
        let tp = e
            .headers
            .get("traceparent")
            .unwrap_or_else(|| panic!("no traceparent on {}", e.routing_key));
        assert!(tp.contains(&trace), "{tp} is not in trace {trace}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_collector_never_fails_a_job() {
    let app = spawn_app(5).await;
    let id = app.add_integration("prod").await;
    let mut events = app.events().await;
    let dead = format!("http://127.0.0.1:{}", opsync_tests::helpers::free_port());
    let _worker = app.spawn_worker_env(
        &[],
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", dead.as_str()),
            ("OTEL_BSP_SCHEDULE_DELAY", "100"),
        ],
    );
    let job = app.enqueue(id).await;
    let got = events.until_completed(1, Duration::from_secs(60)).await;
    assert_eq!(got.len(), 6);
    assert!(app.wait_for_job(job.job_id, Duration::from_secs(10)).await);
}
