//! When things go wrong: retries through delay queues, dead letters, replay, removal safety,
//! killed and stopped workers. Real RabbitMQ and Postgres; faults from the emulator.

use opsync_tests::app::{Received, Synced, TestApp, spawn_app, spawn_synced_app};
use opsync_tests::bridge::{Fault, FaultRule, Mode};
use serde_json::Value;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(60);

fn count(events: &[Received], kind: &str) -> usize {
    events.iter().filter(|e| e.routing_key == kind).count()
}

async fn dlq(app: &TestApp) -> Vec<Value> {
    let out = app
        .opsync()
        .args(["dlq", "list", "--json"])
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice::<Value>(&out.stdout)
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

async fn ready(url: &str) -> Option<bool> {
    let r = reqwest::get(url).await.ok()?;
    let v: Value = r.json().await.ok()?;
    v["ready"].as_bool()
}

async fn wait_ready(url: &str, want: bool) -> bool {
    for _ in 0..100 {
        if ready(url).await == Some(want) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    false
}

async fn wait_for_failed_run(app: &TestApp) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while app
        .count("SELECT count(*) FROM sync_runs WHERE outcome = 'failed'")
        .await
        == 0
    {
        assert!(tokio::time::Instant::now() < deadline, "no failed run");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn wait_dlq(app: &TestApp, n: usize) -> Vec<Value> {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let jobs = dlq(app).await;
        if jobs.len() >= n || tokio::time::Instant::now() > deadline {
            return jobs;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transient_failure_is_retried_after_a_delay_and_succeeds_once() {
    let app = spawn_app(30).await;
    let id = app.add_integration("prod").await;
    let mut events = app.events().await;
    // Provisioning is off in 1Password (500s) until the first attempt has failed.
    app.bridge.set_mode(Mode::ProvisioningOff);
    let _worker = app.spawn_worker(&[]);
    let job = app.enqueue(id).await;
    wait_for_failed_run(&app).await;
    app.bridge.set_mode(Mode::Normal);
    let got = events.until_completed(1, WAIT).await;
    assert_eq!(count(&got, "user.added"), 30);
    assert!(app.wait_for_job(job.job_id, WAIT).await);
    let client = app.db.client().await;
    let runs: Vec<(String, Option<String>)> = client
        .query(
            "SELECT outcome, error_kind FROM sync_runs ORDER BY started_at",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(
        runs,
        vec![
            ("failed".into(), Some("server_error".into())),
            ("succeeded".into(), None)
        ]
    );
    // The retry waited in the delay queue (1 s here) instead of being held by the worker.
    let log = app.bridge.requests();
    let fail_end = log
        .iter()
        .filter(|r| r.status == 500)
        .map(|r| r.at_ms)
        .max()
        .unwrap();
    let retry_start = log
        .iter()
        .filter(|r| r.status == 200)
        .map(|r| r.at_ms)
        .min()
        .unwrap();
    assert!(
        retry_start - fail_end >= 900,
        "retried after {} ms",
        retry_start - fail_end
    );
    events.assert_quiet(Duration::from_secs(2)).await;
    assert!(dlq(&app).await.is_empty());
    app.bridge.assert_only_gets();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn permanent_failures_and_exhausted_attempts_are_dead_lettered_with_their_reason() {
    let app = spawn_app(5).await;
    let google = app.add_integration("google").await;
    let _worker = app.spawn_worker(&[]);

    app.bridge
        .set_mode(Mode::GoogleWorkspace { scim_status: 404 });
    let job = app.enqueue(google).await;
    let dead = wait_dlq(&app, 1).await;
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0]["job_id"], job.job_id.to_string());
    assert_eq!(dead[0]["error_kind"], "scim_api_disabled");
    assert_eq!(dead[0]["attempts"], 1, "permanent: dead at once");
    assert!(
        dead[0]["reason"]
            .as_str()
            .unwrap()
            .contains("Google Workspace")
    );
    assert!(dead[0]["sync_id"].is_string());
    // Listing does not consume.
    assert_eq!(dlq(&app).await.len(), 1);

    // Always failing transiently: 1 + 2 retries (delays 1s, 2s), then dead.
    app.bridge.set_mode(Mode::ProvisioningOff);
    let flaky = app.add_integration("flaky").await;
    let job2 = app.enqueue(flaky).await;
    let dead = wait_dlq(&app, 2).await;
    let d = dead
        .iter()
        .find(|d| d["job_id"] == job2.job_id.to_string())
        .expect("dead-lettered");
    assert_eq!(d["error_kind"], "server_error");
    assert_eq!(d["attempts"], 3);
    assert!(d["first_failed_at"].as_str().unwrap() < d["last_failed_at"].as_str().unwrap());
    let failed: i64 = app
        .count("SELECT count(*) FROM sync_runs WHERE outcome = 'failed'")
        .await;
    assert_eq!(failed, 4, "one failed run per attempt");
    app.bridge.assert_only_gets();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn regenerated_token_needs_new_credentials_then_replay_succeeds() {
    let Synced {
        app,
        id,
        mut events,
        worker: _worker,
        ..
    } = spawn_synced_app(10).await;

    let new_token = app.bridge.regenerate_token();
    app.enqueue(id).await;
    let dead = wait_dlq(&app, 1).await;
    assert_eq!(dead[0]["error_kind"], "auth_rejected");
    let status: String = app.scalar("SELECT status FROM integrations").await;
    assert_eq!(status, "needs_credentials");

    // Further jobs are dead-lettered without calling the bridge.
    app.bridge.clear_requests();
    app.enqueue(id).await;
    let dead = wait_dlq(&app, 2).await;
    assert_eq!(dead.len(), 2);
    assert!(
        dead.iter()
            .any(|d| d["error_kind"] == "integration_inactive")
    );
    assert!(
        app.bridge.requests().is_empty(),
        "no bridge call while credentials are bad"
    );

    let token_file = app.dir.path().join("new-token");
    std::fs::write(&token_file, &new_token).unwrap();
    let out = app
        .opsync()
        .args([
            "integration",
            "update-token",
            &id.to_string(),
            "--token-file",
        ])
        .arg(&token_file)
        .output()
        .await
        .unwrap();
    assert!(out.status.success());
    let dry = app
        .opsync()
        .args([
            "dlq",
            "replay",
            "--integration",
            &id.to_string(),
            "--dry-run",
            "--json",
        ])
        .output()
        .await
        .unwrap();
    let dry: Value = serde_json::from_slice(&dry.stdout).unwrap();
    assert_eq!(dry["replayed"].as_array().unwrap().len(), 2);
    assert_eq!(dlq(&app).await.len(), 2, "a dry run changes nothing");
    let out = app
        .opsync()
        .args(["dlq", "replay", "--integration", &id.to_string(), "--json"])
        .output()
        .await
        .unwrap();
    assert!(out.status.success());
    let got = events.until_completed(1, WAIT).await;
    assert_eq!(got.last().unwrap().body["trigger"], "replay");
    // Both replayed jobs ran (one after the other), neither found changes.
    let more = events.until_completed(1, WAIT).await;
    assert_eq!(more.len(), 1);
    assert!(dlq(&app).await.is_empty());
    // Replaying again finds nothing.
    let out = app
        .opsync()
        .args(["dlq", "replay", "--all", "--json"])
        .output()
        .await
        .unwrap();
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["replayed"].as_array().unwrap().len(), 0);
    app.bridge.assert_only_gets();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doubtful_snapshots_never_remove_anyone() {
    let app = spawn_app(60).await;
    let id = app.add_integration("prod").await;
    let mut events = app.events().await;
    let _worker = app.spawn_worker(&["--page-size", "20"]);
    app.enqueue(id).await;
    events.until_completed(1, WAIT).await;

    // Drift during paging: members shift, one is skipped.
    app.bridge
        .inject(FaultRule::on("/Users", Fault::Drift { add: 0, remove: 1 }).skip(1));
    app.enqueue(id).await;
    let got = events.until_completed(1, WAIT).await;
    assert_eq!(count(&got, "user.removed"), 0);
    let completed = got.last().unwrap();
    assert_eq!(completed.body["snapshot_consistent"], false);

    // The bridge dies mid-paging for longer than the client retries: the job fails, nothing
    // partial is committed.
    let before = app.count("SELECT count(*) FROM events").await;
    app.bridge
        .inject(FaultRule::on("/Users", Fault::Drop).skip(2).times(10_000));
    app.enqueue(id).await;
    wait_for_failed_run(&app).await;
    app.bridge.clear_faults();
    // After the failure, the retry (1 s later) succeeds and removes the member deleted by the
    // drift above, after confirming it.
    let got = events.until_completed(1, WAIT).await;
    let failed = app.count("SELECT count(*) FROM sync_runs WHERE outcome = 'failed' AND error_kind = 'bridge_unreachable'").await;
    assert!(failed >= 1);
    assert_eq!(count(&got, "user.removed"), 1);
    assert_eq!(
        app.count("SELECT count(*) FROM events").await,
        before + got.len() as i64
    );
    app.bridge.assert_only_gets();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_member_is_removed_once_after_its_404_and_mass_removals_are_held() {
    let Synced {
        app,
        id,
        mut events,
        worker: _worker,
        ..
    } = spawn_synced_app(100).await;

    let users = app.bridge.users();
    let gone = users[10].id.clone();
    app.bridge.delete(&gone);
    app.bridge.clear_requests();
    app.enqueue(id).await;
    let got = events.until_completed(1, WAIT).await;
    let removed: Vec<_> = got
        .iter()
        .filter(|e| e.routing_key == "user.removed")
        .collect();
    assert_eq!(removed.len(), 1);
    assert_eq!(removed[0].body["user"]["id"], gone.as_str());
    let check = app
        .bridge
        .requests()
        .into_iter()
        .find(|r| r.path.ends_with(&format!("/Users/{gone}")))
        .expect("the removal was confirmed");
    assert_eq!(check.status, 404);
    // And never again.
    app.enqueue(id).await;
    let got = events.until_completed(1, WAIT).await;
    assert_eq!(got.len(), 1);

    // Mass disappearance: 30 of 99 members gone at once. Held, reported, not removed.
    for u in users.iter().skip(20).take(30) {
        app.bridge.delete(&u.id);
    }
    app.enqueue(id).await;
    let got = events.until_completed(1, WAIT).await;
    assert_eq!(count(&got, "user.removed"), 0);
    assert_eq!(got.last().unwrap().body["counts"]["removals_held"], 30);
    let reason: Option<String> = app
        .scalar("SELECT removals_hold_reason FROM sync_runs ORDER BY finished_at DESC LIMIT 1")
        .await;
    assert_eq!(reason.as_deref(), Some("mass_removal"));
    assert_eq!(
        app.count("SELECT count(*) FROM directory_users WHERE removed_at IS NOT NULL")
            .await,
        1
    );

    // The operator accepts: the next sync removes them, each after its 404.
    let out = app
        .opsync()
        .args(["integration", "release-removals", &id.to_string()])
        .output()
        .await
        .unwrap();
    assert!(out.status.success());
    app.enqueue(id).await;
    let got = events.until_completed(1, WAIT).await;
    assert_eq!(count(&got, "user.removed"), 30);
    assert_eq!(
        app.count("SELECT count(*) FROM directory_users WHERE removed_at IS NOT NULL")
            .await,
        31
    );
    let released: bool = app
        .scalar("SELECT release_removals FROM integrations")
        .await;
    assert!(!released, "the release is used once");
    app.bridge.assert_only_gets();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_mid_sync_loses_nothing() {
    let app = spawn_app(200).await;
    let id = app.add_integration("prod").await;
    let mut events = app.events().await;
    // Slow pages so the kill lands mid-sync.
    app.bridge
        .inject(FaultRule::on("/Users", Fault::Delay { ms: 300 }).times(8));
    let mut first = app.spawn_worker(&["--page-size", "20"]);
    let job = app.enqueue(id).await;
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert!(
        app.bridge
            .requests()
            .iter()
            .any(|r| r.path.ends_with("/Users")),
        "the sync had started"
    );
    first.kill9().await;
    assert_eq!(
        app.count("SELECT count(*) FROM sync_runs").await,
        0,
        "nothing committed"
    );
    let _second = app.spawn_worker(&["--page-size", "20"]);
    let got = events.until_completed(1, WAIT).await;
    assert!(app.wait_for_job(job.job_id, WAIT).await);
    let mut ids: Vec<_> = got.iter().map(|e| e.message_id.clone().unwrap()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 201, "every event exactly once");
    app.bridge.assert_only_gets();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_during_a_long_sync_exits_within_the_deadline_and_another_worker_finishes() {
    let app = spawn_app(100).await;
    let id = app.add_integration("prod").await;
    let mut events = app.events().await;
    // A sync of about 10 s (10 pages of 1 s).
    app.bridge
        .inject(FaultRule::on("/Users", Fault::Delay { ms: 1000 }).times(12));
    let mut first = app.spawn_worker(&["--page-size", "10", "--shutdown-deadline", "2s"]);
    let job = app.enqueue(id).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (code, took) = first.sigterm(Duration::from_secs(20)).await;
    assert_eq!(code, Some(0), "clean exit");
    assert!(
        took < Duration::from_secs(5),
        "stopped in {took:?} with a 2 s deadline"
    );
    assert!(first.logs().contains("shutdown deadline reached"));
    let _second = app.spawn_worker(&["--page-size", "10"]);
    let got = events.until_completed(1, WAIT).await;
    assert_eq!(count(&got, "user.added"), 100);
    assert!(app.wait_for_job(job.job_id, WAIT).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_and_database_connection_cuts_are_recovered_without_a_restart() {
    use opsync_tests::proxy::{TcpProxy, target_of};
    let app = spawn_app(20).await;
    let id = app.add_integration("prod").await;
    let mut events = app.events().await;
    let mq = TcpProxy::start(target_of(&app.mq.url)).await;
    let db = TcpProxy::start(target_of(&app.db.url)).await;
    let health_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let readyz = format!("http://127.0.0.1:{health_port}/readyz");
    let mut cmd = app.opsync();
    cmd.arg("worker")
        .env("OPSYNC_HEALTH_ADDR", format!("127.0.0.1:{health_port}"))
        .env("AMQP_URL", mq.url_for(&app.mq.url))
        .env("DATABASE_URL", db.url_for(&app.db.url))
        .env("RUST_LOG", "info")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    let mut worker = cmd.spawn().unwrap();
    app.enqueue(id).await;
    events.until_completed(1, WAIT).await;

    assert_eq!(ready(&readyz).await, Some(true));
    // The broker connection breaks, and stays refused for a while: not ready meanwhile.
    mq.refuse(true);
    mq.cut();
    assert!(
        wait_ready(&readyz, false).await,
        "readiness drops while the broker is gone"
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    mq.refuse(false);
    assert!(
        wait_ready(&readyz, true).await,
        "ready again after the reconnect"
    );
    let job = app.enqueue(id).await;
    assert!(
        app.wait_for_job(job.job_id, WAIT).await,
        "the worker reconnected to the broker by itself"
    );
    events.until_completed(1, WAIT).await;

    // The database connections break while idle.
    db.cut();
    app.bridge.add_user("After", "Cut");
    let job = app.enqueue(id).await;
    assert!(
        app.wait_for_job(job.job_id, WAIT).await,
        "the worker recovered its database connections"
    );
    // The cut may have hit the relay between a confirm and its mark: an event may come twice,
    // with the same id (at least once); by id, each once.
    let got = events.until_job_completed(job.job_id, WAIT).await;
    assert_eq!(count(&got, "user.added"), 1);
    assert!(mq.accepted() >= 2 && db.accepted() >= 2);
    assert!(
        worker.try_wait().unwrap().is_none(),
        "still the same process"
    );
    let _ = worker.start_kill();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_that_keeps_killing_workers_is_dead_lettered_by_the_broker() {
    use futures::StreamExt;
    use lapin::options::{BasicConsumeOptions, BasicNackOptions};
    let app = spawn_app(3).await;
    let id = app.add_integration("prod").await;
    let job = app.enqueue(id).await;
    // Stand-in for workers that crash on the job: each delivery comes back unsettled.
    let conn = app.mq.connect().await;
    let ch = conn.create_channel().await.unwrap();
    let mut consumer = ch
        .basic_consume(
            "opsync.sync-jobs".into(),
            "".into(),
            BasicConsumeOptions::default(),
            lapin::types::FieldTable::default(),
        )
        .await
        .unwrap();
    let mut deliveries = 0;
    while let Ok(Some(Ok(d))) = tokio::time::timeout(Duration::from_secs(3), consumer.next()).await
    {
        deliveries += 1;
        d.acker
            .nack(BasicNackOptions {
                requeue: true,
                ..Default::default()
            })
            .await
            .unwrap();
    }
    drop(consumer);
    let _ = conn.close(200, "".into()).await;
    assert!(deliveries >= 5, "delivered {deliveries} times");
    let dead = wait_dlq(&app, 1).await;
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0]["job_id"], job.job_id.to_string());
    assert_eq!(dead[0]["error_kind"], "delivery_limit");
}
