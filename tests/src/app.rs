//! `spawn_app`: a complete opsync environment for one test: its own database and vhost, a
//! bridge emulator, a token key, and helpers to run the real `opsync` binary against them.

use crate::bridge::{BridgeConfig, MockBridge};
use crate::env::{TestDb, TestVhost};
use crate::helpers::opsync_bin;
use futures::StreamExt;
use lapin::options::{BasicAckOptions, BasicConsumeOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use opsync_shared::crypto::{self, Keyring};
use opsync_shared::job::{SyncJob, Trigger};
use opsync_shared::store::{self, NewIntegration};
use opsync_shared::{BearerToken, broker};
use serde_json::Value;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;
use uuid::Uuid;

pub struct TestApp {
    pub db: TestDb,
    pub mq: TestVhost,
    pub bridge: MockBridge,
    pub token_key: String,
    pub keyring: Keyring,
    pub dir: tempfile::TempDir,
}

pub async fn spawn_app(users: usize) -> TestApp {
    spawn_app_with(|c| c.users = users).await
}

pub async fn spawn_app_with(f: impl FnOnce(&mut BridgeConfig)) -> TestApp {
    let mut cfg = BridgeConfig::default();
    f(&mut cfg);
    let (db, mq, bridge) = tokio::join!(TestDb::new(), TestVhost::new(), MockBridge::start(cfg));
    let token_key = crypto::generate_key();
    let keyring = Keyring::new(&token_key, None).unwrap();
    let app = TestApp {
        db,
        mq,
        bridge,
        token_key,
        keyring,
        dir: tempfile::tempdir().unwrap(),
    };
    // Topology first, so event queues can be bound before any worker runs.
    let conn = app.mq.connect().await;
    let ch = conn.create_channel().await.unwrap();
    broker::declare_topology(&ch, &app.retry_delays())
        .await
        .unwrap();
    let _ = conn.close(200, "".into()).await;
    app
}

/// An app whose integration "prod" has had its first sync, with a worker still running
/// and a queue bound to every event: the usual start of a test about what comes next.
pub struct Synced {
    pub app: TestApp,
    pub id: Uuid,
    pub events: EventQueue,
    pub worker: WorkerProcess,
    /// The first sync's job and the events it published.
    pub job: SyncJob,
    pub first: Vec<Received>,
}

pub async fn spawn_synced_app(users: usize) -> Synced {
    let app = spawn_app(users).await;
    let id = app.add_integration("prod").await;
    let mut events = app.events().await;
    let worker = app.spawn_worker(&[]);
    let job = app.enqueue(id).await;
    let first = events.until_completed(1, Duration::from_secs(60)).await;
    Synced {
        app,
        id,
        events,
        worker,
        job,
        first,
    }
}

impl TestApp {
    /// Short retry delays so retry tests take seconds.
    pub fn retry_delays(&self) -> Vec<Duration> {
        vec![Duration::from_secs(1), Duration::from_secs(2)]
    }

    /// Saves an integration for the emulator with its current token, as `integration add`
    /// would (without the SCIM base, so the first sync discovers it).
    pub async fn add_integration(&self, name: &str) -> Uuid {
        self.add_integration_for(&self.bridge, name).await
    }

    /// The same, for another emulator (tests with many bridges).
    pub async fn add_integration_for(&self, bridge: &MockBridge, name: &str) -> Uuid {
        let id = Uuid::new_v4();
        let token = BearerToken::new(bridge.token()).unwrap();
        let sealed = self.keyring.seal(&token, id);
        let pool = self.db.pool();
        let conn = pool.get().await.unwrap();
        store::insert_integration(
            &conn,
            &NewIntegration {
                id,
                name,
                bridge_url: &bridge.url(),
                scim_base: None,
                token: &sealed,
                purchased_seats: None,
            },
        )
        .await
        .unwrap();
        id
    }

    /// Runs `opsync ARGS` to the end: exit code, stdout parsed as JSON (null when it is not),
    /// and stdout + stderr as text.
    pub async fn run(&self, args: &[&str]) -> (i32, serde_json::Value, String) {
        let out = self.opsync().args(args).output().await.unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let json = serde_json::from_str(stdout.trim()).unwrap_or(serde_json::Value::Null);
        (
            out.status.code().unwrap_or(-1),
            json,
            format!("{stdout}{}", String::from_utf8_lossy(&out.stderr)),
        )
    }

    /// The `opsync` binary with this app's environment.
    pub fn opsync(&self) -> tokio::process::Command {
        let mut cmd = tokio::process::Command::new(opsync_bin());
        cmd.env("DATABASE_URL", &self.db.url)
            .env("AMQP_URL", &self.mq.url)
            .env("OPSYNC_TOKEN_KEY", &self.token_key)
            .env("OPSYNC_ALLOW_HTTP", "true")
            .env("OPSYNC_ALLOW_PRIVATE_ADDRESSES", "true")
            .env("OPSYNC_RATE_LIMIT", "0")
            .env("OPSYNC_RETRY_DEADLINE", "3")
            .env("OPSYNC_RETRY_DELAYS", "1s,2s")
            .env("OPSYNC_RELAY_INTERVAL", "300ms")
            .env("OPSYNC_LOG_FORMAT", "json")
            // Many workers run at once in tests: each takes a free port for its probes.
            .env("OPSYNC_HEALTH_ADDR", "127.0.0.1:0")
            .env_remove("RUST_LOG")
            .kill_on_drop(true);
        cmd
    }

    /// Starts `opsync worker`; its logs go to a file in the app's folder.
    pub fn spawn_worker(&self, args: &[&str]) -> WorkerProcess {
        self.spawn_worker_env(args, &[])
    }

    /// The same, with extra environment variables.
    pub fn spawn_worker_env(&self, args: &[&str], envs: &[(&str, &str)]) -> WorkerProcess {
        let n = std::fs::read_dir(self.dir.path())
            .map(|d| d.count())
            .unwrap_or(0);
        let log = self.dir.path().join(format!("worker-{n}.log"));
        let file = std::fs::File::create(&log).unwrap();
        let child = self
            .opsync()
            .arg("worker")
            .args(args)
            .env("RUST_LOG", "debug")
            .envs(envs.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::from(file))
            .spawn()
            .expect("start opsync worker");
        WorkerProcess {
            child: Some(child),
            log,
        }
    }

    pub async fn publish_job(&self, job: &SyncJob) {
        let conn = self.mq.connect().await;
        let ch = broker::confirm_channel(&conn).await.unwrap();
        broker::publish_job(&ch, job).await.unwrap();
        let _ = conn.close(200, "".into()).await;
    }

    pub async fn enqueue(&self, integration_id: Uuid) -> SyncJob {
        let job = SyncJob::new(integration_id, Trigger::Manual);
        self.publish_job(&job).await;
        job
    }

    /// A queue bound to every event, to see what the worker publishes.
    pub async fn events(&self) -> EventQueue {
        bind_events(&self.mq).await
    }

    /// Waits until the job succeeded in the database.
    pub async fn wait_for_job(&self, job_id: Uuid, timeout: Duration) -> bool {
        let client = self.db.client().await;
        let deadline = tokio::time::Instant::now() + timeout;
        while tokio::time::Instant::now() < deadline {
            if client
                .query_opt(
                    "SELECT 1 FROM sync_runs WHERE job_id = $1 AND outcome = 'succeeded'",
                    &[&job_id],
                )
                .await
                .unwrap()
                .is_some()
            {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        false
    }

    pub async fn count(&self, sql: &str) -> i64 {
        self.scalar(sql).await
    }

    /// The one value a query returns (the first column of its one row).
    pub async fn scalar<T: tokio_postgres::types::FromSqlOwned>(&self, sql: &str) -> T {
        self.db
            .client()
            .await
            .query_one(sql, &[])
            .await
            .unwrap()
            .get(0)
    }
}

pub struct WorkerProcess {
    child: Option<tokio::process::Child>,
    pub log: PathBuf,
}

impl WorkerProcess {
    pub fn pid(&self) -> i32 {
        self.child.as_ref().and_then(|c| c.id()).expect("running") as i32
    }

    pub async fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.start_kill();
            let _ = c.wait().await;
        }
    }

    /// Sends SIGTERM and waits for the exit; returns the exit code and how long it took.
    pub async fn sigterm(&mut self, wait: Duration) -> (Option<i32>, Duration) {
        let t0 = std::time::Instant::now();
        let mut c = self.child.take().expect("running");
        let pid = c.id().expect("running") as i32;
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status();
        let status = tokio::time::timeout(wait, c.wait()).await;
        match status {
            Ok(Ok(s)) => (s.code(), t0.elapsed()),
            _ => {
                let _ = c.start_kill();
                (None, t0.elapsed())
            }
        }
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for WorkerProcess {
    fn drop(&mut self) {
        if let Some(c) = self.child.as_mut() {
            let _ = c.start_kill();
        }
    }
}

#[derive(Debug, Clone)]
pub struct Received {
    /// String-valued AMQP headers (e.g. `traceparent`).
    pub headers: std::collections::BTreeMap<String, String>,
    pub routing_key: String,
    pub message_id: Option<String>,
    pub content_type: Option<String>,
    pub delivery_mode: Option<u8>,
    pub body: Value,
}

pub struct EventQueue {
    _conn: lapin::Connection,
    consumer: lapin::Consumer,
}

impl EventQueue {
    pub async fn next(&mut self, timeout: Duration) -> Option<Received> {
        let d = tokio::time::timeout(timeout, self.consumer.next())
            .await
            .ok()??
            .ok()?;
        d.acker.ack(BasicAckOptions::default()).await.unwrap();
        let headers = d
            .properties
            .headers()
            .as_ref()
            .map(|h| {
                h.inner()
                    .iter()
                    .filter_map(|(k, v)| match v {
                        lapin::types::AMQPValue::LongString(s) => Some((
                            k.as_str().to_owned(),
                            String::from_utf8_lossy(s.as_bytes()).into_owned(),
                        )),
                        _ => None,
                    })
                    .collect()
            })
            .unwrap_or_default();
        Some(Received {
            headers,
            routing_key: d.routing_key.as_str().to_owned(),
            message_id: d
                .properties
                .message_id()
                .as_ref()
                .map(|s| s.as_str().to_owned()),
            content_type: d
                .properties
                .content_type()
                .as_ref()
                .map(|s| s.as_str().to_owned()),
            delivery_mode: *d.properties.delivery_mode(),
            body: serde_json::from_slice(&d.data).expect("events are JSON"),
        })
    }

    /// Everything up to and including the `n`-th `sync.completed`.
    pub async fn until_completed(&mut self, n: usize, timeout: Duration) -> Vec<Received> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut out = Vec::new();
        let mut seen = 0;
        while seen < n {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let Some(r) = self.next(left).await else {
                panic!(
                    "timed out after {} events waiting for sync.completed #{}",
                    out.len(),
                    seen + 1
                );
            };
            if r.routing_key == "sync.completed" {
                seen += 1;
            }
            out.push(r);
        }
        out
    }

    /// Events up to this job's `sync.completed`, duplicates (same event id, as at-least-once
    /// delivery allows after a broken connection) dropped.
    pub async fn until_job_completed(&mut self, job_id: Uuid, timeout: Duration) -> Vec<Received> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut out: Vec<Received> = Vec::new();
        let mut seen = std::collections::HashSet::new();
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let Some(r) = self.next(left).await else {
                panic!(
                    "timed out after {} events waiting for job {job_id} to complete",
                    out.len()
                );
            };
            if !seen.insert(r.message_id.clone()) {
                continue;
            }
            let done = r.routing_key == "sync.completed" && r.body["job_id"] == job_id.to_string();
            out.push(r);
            if done {
                return out;
            }
        }
    }

    /// Asserts that nothing more arrives within `quiet`.
    pub async fn assert_quiet(&mut self, quiet: Duration) {
        if let Some(r) = self.next(quiet).await {
            panic!("unexpected event {} {}", r.routing_key, r.body);
        }
    }
}

/// Validates a message against its JSON Schema in `schemas/`.
pub fn assert_valid(kind: &str, message: &Value) {
    let file = match kind {
        "sync.completed" => "sync-completed.v1.json",
        "job" => "sync-job.v1.json",
        _ => "user-event.v1.json",
    };
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../schemas")
        .join(file);
    let schema: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let validator = jsonschema::validator_for(&schema).expect("valid schema");
    let errors: Vec<String> = validator
        .iter_errors(message)
        .map(|e| format!("{e} at {}", e.instance_path()))
        .collect();
    assert!(
        errors.is_empty(),
        "{kind} does not match {file}: {errors:?}\n{message}"
    );
}

/// A queue bound to every event on `opsync.events` (declaring the topology first), to see
/// what workers publish.
pub async fn bind_events(mq: &TestVhost) -> EventQueue {
    let conn = mq.connect().await;
    let ch = conn.create_channel().await.unwrap();
    broker::declare_topology(&ch, &[]).await.unwrap();
    let q = format!("test-events-{}", Uuid::new_v4());
    ch.queue_declare(
        q.as_str().into(),
        QueueDeclareOptions {
            durable: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await
    .unwrap();
    ch.queue_bind(
        q.as_str().into(),
        broker::EVENTS_EXCHANGE.into(),
        "#".into(),
        QueueBindOptions::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    let consumer = ch
        .basic_consume(
            q.as_str().into(),
            "".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    EventQueue {
        _conn: conn,
        consumer,
    }
}
