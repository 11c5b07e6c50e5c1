//! `make bench`: opsync's performance figures for 100,000 emulated users, with the floors they
//! are judged against. Prints figures; asserts nothing (targets are read, not enforced here).
//!
//! - download floor: the SCIM client alone reading every page from the emulator;
//! - broker floor: RabbitMQ alone accepting 100,000 event-sized messages with publisher
//!   confirms into a bound quorum queue, pipelined like the outbox relay;
//! - initial sync: job enqueued -> every event confirmed by the broker;
//! - unchanged sync, 1% changed sync: job enqueued -> committed and its events published;
//! - rows written by the unchanged sync; the worker's peak memory (VmHWM).
//!
//! Noise on a small shared machine (Postgres, RabbitMQ, the emulator and the worker share two
//! cores; the broker alone varies by 15-30% from one minute to the next) is handled by
//! pairing: each timed sync is compared with its floor measured just before it, several
//! times ([`INITIAL_PAIRS`], [`UNCHANGED_PAIRS`]), and the ratio judged is the median of the
//! pairs (every pair and the mean are printed too). Before every timed sync the bench runs
//! `VACUUM (ANALYZE)` and waits for autovacuum to be idle, so that the maintenance the
//! previous sync's rows call for is paid between measurements rather than inside one.

use futures::future::join_all;
use lapin::BasicProperties;
use lapin::options::{
    BasicPublishOptions, QueueBindOptions, QueueDeclareOptions, QueuePurgeOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use opsync_shared::broker;
use opsync_tests::app::{TestApp, spawn_app_with};
use std::time::{Duration, Instant};

const USERS: usize = 100_000;
const PAGE: u64 = 500;
/// Initial syncs timed, each against the broker floor measured just before it.
const INITIAL_PAIRS: usize = 3;
/// Unchanged syncs timed, each against the download floor measured just before it.
const UNCHANGED_PAIRS: usize = 5;

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

/// The client alone: `opsync verify` (discovery, /health, every page) in its own process, as
/// the worker's client runs in its own. Also its peak memory.
async fn download_floor(app: &TestApp) -> (Duration, f64) {
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, app.bridge.token()).unwrap();
    let t0 = Instant::now();
    let mut child = tokio::process::Command::new(opsync_tests::helpers::opsync_bin())
        .args([
            "verify",
            "--url",
            &app.bridge.url(),
            "--allow-http",
            "--allow-private-addresses",
            "--rate-limit",
            "0",
            "--page-size",
            &PAGE.to_string(),
            "--token-file",
        ])
        .arg(&token)
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id().unwrap() as i32;
    // VmHWM is read while the process lives; poll until it exits.
    let mut hwm = 0.0f64;
    loop {
        hwm = hwm.max(vm_hwm_mib(pid));
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "opsync verify failed");
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    (t0.elapsed(), hwm)
}

async fn broker_floor(app: &TestApp) -> Duration {
    let conn = app.mq.connect().await;
    let ch = broker::confirm_channel(&conn).await.unwrap();
    ch.exchange_declare(
        "bench.floor".into(),
        lapin::ExchangeKind::Topic,
        Default::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    bound_quorum_queue(&ch, "bench.floor", "bench.floor").await;
    // A user.added event as the worker writes it, about 700 bytes.
    let body = serde_json::to_vec(&serde_json::json!({
        "changed_fields": [], "event_id": "8729bdc0-1550-5f25-a65b-4726dba57806", "integration_id": "5616f342-c389-441d-8ce5-508166de6519",
        "occurred_at": "2026-12-03T16:29:39.063Z", "previous": null, "sync_id": "d0c7594c-73f5-5a9b-b012-5941434d4971", "type": "user.added",
        "user": {"active": true, "display_name": "Frances Johnson", "email": "frances.johnson230@example.com", "family_name": "Johnson",
                 "given_name": "Frances", "id": "2AFGKDD3JVIRYAM6T33B5HBQDC", "user_name": "frances.johnson230@example.com"}
    }))
    .unwrap();
    let t0 = Instant::now();
    for batch in 0..USERS / opsync_shared::outbox::BATCH as usize {
        let mut confirms = Vec::new();
        for i in 0..opsync_shared::outbox::BATCH as usize {
            let props = BasicProperties::default()
                .with_content_type("application/json".into())
                .with_delivery_mode(2)
                .with_message_id(format!("{batch}-{i}").into());
            confirms.push(
                ch.basic_publish(
                    "bench.floor".into(),
                    "user.added".into(),
                    BasicPublishOptions {
                        mandatory: true,
                        ..Default::default()
                    },
                    &body,
                    props,
                )
                .await
                .unwrap(),
            );
        }
        for c in join_all(confirms).await {
            broker::check_confirmation(c.unwrap(), 1).unwrap();
        }
    }
    let took = t0.elapsed();
    ch.queue_delete("bench.floor".into(), Default::default())
        .await
        .unwrap();
    let _ = conn.close(200, "".into()).await;
    took
}

/// A quorum queue bound to every routing key of `exchange`, as a consumer of events would have.
async fn bound_quorum_queue(ch: &lapin::Channel, queue: &str, exchange: &str) {
    let mut args = FieldTable::default();
    args.insert(
        "x-queue-type".into(),
        AMQPValue::LongString("quorum".into()),
    );
    ch.queue_declare(
        queue.into(),
        QueueDeclareOptions {
            durable: true,
            ..Default::default()
        },
        args,
    )
    .await
    .unwrap();
    ch.queue_bind(
        queue.into(),
        exchange.into(),
        "#".into(),
        QueueBindOptions::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();
}

/// Enqueues a sync on `jobs` (a confirm channel opened beforehand, as a scheduler keeps one)
/// and waits until it committed and every event is confirmed published. Returns the whole
/// time and the time until the commit was visible (polled every 10 ms).
async fn timed_sync(app: &TestApp, jobs: &lapin::Channel, id: uuid::Uuid) -> (Duration, Duration) {
    let client = app.db.client().await;
    let job = opsync_shared::job::SyncJob::new(id, opsync_shared::job::Trigger::Manual);
    let t0 = Instant::now();
    broker::publish_job(jobs, &job).await.unwrap();
    let mut committed = None;
    loop {
        let row = client
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM sync_runs WHERE job_id = $1 AND outcome = 'succeeded'), \
                 NOT EXISTS (SELECT 1 FROM outbox)",
                &[&job.job_id],
            )
            .await
            .unwrap();
        let (done, empty): (bool, bool) = (row.get(0), row.get(1));
        if done && committed.is_none() {
            committed = Some(t0.elapsed());
        }
        if done && empty {
            return (t0.elapsed(), committed.unwrap_or_default());
        }
        assert!(
            t0.elapsed() < Duration::from_secs(600),
            "sync did not finish in 10 minutes"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Each member row's version (`xmin`): a row an update rewrote has a new one.
async fn member_versions(app: &TestApp) -> std::collections::HashMap<(uuid::Uuid, String), String> {
    app.db
        .client()
        .await
        .query(
            "SELECT integration_id, scim_id, xmin::text FROM directory_users",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| ((r.get(0), r.get(1)), r.get(2)))
        .collect()
}

/// Vacuums and analyses the bench database, then waits until no autovacuum worker is busy
/// in it: maintenance is paid between measurements, not by whichever one it lands in.
async fn settle(app: &TestApp) {
    let client = app.db.client().await;
    client.batch_execute("VACUUM (ANALYZE)").await.unwrap();
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(60) {
        let busy: i64 = client
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'autovacuum worker' \
                 AND datname = current_database()",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        if busy == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn table_writes(app: &TestApp) -> Vec<(String, i64)> {
    let client = app.db.client().await;
    client
        .query(
            "SELECT relname::text, n_tup_ins + n_tup_upd + n_tup_del FROM pg_stat_user_tables \
             WHERE relname IN ('directory_users', 'events', 'sync_runs', 'integrations') ORDER BY relname",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
}

/// The median (judged against the target), mean and range of the (floor, run) pairs' ratios.
fn print_ratios(what: &str, pairs: impl Iterator<Item = (Duration, Duration)>, target: f64) {
    let mut sorted: Vec<f64> = pairs.map(|(floor, run)| secs(run) / secs(floor)).collect();
    sorted.sort_by(f64::total_cmp);
    let n = sorted.len();
    let median = if n % 2 == 1 {
        sorted[n / 2]
    } else {
        (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
    };
    let mean = sorted.iter().sum::<f64>() / n as f64;
    println!(
        "{:<58} {:>9.2}x  (target <= {target}x; mean {mean:.2}x, range {:.2}x-{:.2}x)",
        format!("{what}, median of {n} pairs"),
        median,
        sorted[0],
        sorted[n - 1]
    );
}

fn vm_hwm_mib(pid: i32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map(|kb| kb / 1024.0)
        .unwrap_or(f64::NAN)
}

#[tokio::main]
async fn main() {
    println!(
        "opsync bench: {USERS} emulated users, page size {PAGE}, rate limit off, release build"
    );
    let t = Instant::now();
    let app = spawn_app_with(|c| {
        c.users = USERS;
        c.seed = 7;
    })
    .await;
    println!(
        "setup (emulator with {USERS} users, database, vhost): {:.2} s",
        secs(t.elapsed())
    );
    let (_, verify_peak) = download_floor(&app).await;

    // Events land in a bound quorum queue, as in the broker floor.
    let conn = app.mq.connect().await;
    let ch = conn.create_channel().await.unwrap();
    bound_quorum_queue(&ch, "bench.events", broker::EVENTS_EXCHANGE).await;
    let jobs = broker::confirm_channel(&conn).await.unwrap();

    let page = PAGE.to_string();
    // Production log level: the test default (debug) would time the logging too.
    let worker = app.spawn_worker_env(
        &["--page-size", &page, "--concurrency", "1"],
        &[("RUST_LOG", "info")],
    );
    let pid = worker.pid();

    // The initial sync, several times (integrations of the same bridge), each right after a
    // broker floor. Each integration but the last is removed (its rows with it) before the
    // next syncs, so every initial sync writes into the same, empty, tables.
    let mut initial_pairs = Vec::new();
    let mut id = None;
    for k in 0..INITIAL_PAIRS {
        if let Some(previous) = id.take() {
            let pool = app.db.pool();
            let mut conn = pool.get().await.unwrap();
            opsync_shared::store::delete_integration(&mut conn, previous)
                .await
                .unwrap();
        }
        let integration = app.add_integration(&format!("bench #{}", k + 1)).await;
        let floor = broker_floor(&app).await;
        settle(&app).await;
        let run = timed_sync(&app, &jobs, integration).await;
        ch.queue_purge("bench.events".into(), QueuePurgeOptions::default())
            .await
            .unwrap();
        initial_pairs.push((floor, run));
        id = Some(integration);
    }
    let id = id.expect("at least one initial sync");

    // Unchanged syncs, each right after a download floor. The first one's writes are counted.
    let mut unchanged_pairs = Vec::new();
    let mut writes = None;
    for k in 0..UNCHANGED_PAIRS {
        // Vacuum first: it may freeze tuples, which changes what `xmin` reads.
        settle(&app).await;
        let counted = k == 0;
        let before = if counted {
            let v0 = member_versions(&app).await;
            tokio::time::sleep(Duration::from_millis(1500)).await; // let table statistics settle
            Some((v0, table_writes(&app).await))
        } else {
            None
        };
        let floor = download_floor(&app).await.0;
        let (run, _) = timed_sync(&app, &jobs, id).await;
        unchanged_pairs.push((floor, run));
        if let Some((v0, w0)) = before {
            tokio::time::sleep(Duration::from_millis(1500)).await;
            let w1 = table_writes(&app).await;
            let v1 = member_versions(&app).await;
            let rewritten = v0.iter().filter(|(k, x)| v1.get(*k) != Some(x)).count();
            writes = Some((w0, w1, rewritten));
        }
    }
    let (w0, w1, member_rows_rewritten) = writes.expect("the first unchanged sync was counted");

    // 1% changed: 400 suspended, 400 renamed, 100 deleted, 100 added.
    let users = app.bridge.users();
    for u in users.iter().filter(|u| u.active).take(400) {
        app.bridge.suspend(&u.id);
    }
    for u in users.iter().skip(1000).take(400) {
        app.bridge.rename(&u.id, &u.given, "Renamed");
    }
    for u in users.iter().skip(2000).take(100) {
        app.bridge.delete(&u.id);
    }
    for i in 0..100 {
        app.bridge.add_user("New", &format!("Member{i}"));
    }
    settle(&app).await;
    let (changed, _) = timed_sync(&app, &jobs, id).await;
    let peak = vm_hwm_mib(pid);
    let published: i64 = app.count("SELECT count(*) FROM events").await;

    println!();
    println!("{:<58} {:>9}", "figure", "value");
    for (k, (floor, (run, committed))) in initial_pairs.iter().enumerate() {
        println!(
            "{:<58} {:>7.2} s",
            format!(
                "broker floor #{} (100,000 confirmed into a quorum queue)",
                k + 1
            ),
            secs(*floor)
        );
        println!(
            "{:<58} {:>7.2} s   {:.2}x   (committed after {:.2} s)",
            format!("initial sync #{}, enqueue -> every event confirmed", k + 1),
            secs(*run),
            secs(*run) / secs(*floor),
            secs(*committed)
        );
    }
    print_ratios(
        "initial sync / broker floor",
        initial_pairs.iter().map(|(f, (r, _))| (*f, *r)),
        1.5,
    );
    for (k, (floor, run)) in unchanged_pairs.iter().enumerate() {
        println!(
            "{:<58} {:>7.2} s",
            format!(
                "download floor #{} (`opsync verify` alone, all pages)",
                k + 1
            ),
            secs(*floor)
        );
        println!(
            "{:<58} {:>7.2} s   {:.2}x",
            format!(
                "unchanged sync #{}, enqueue -> committed and published",
                k + 1
            ),
            secs(*run),
            secs(*run) / secs(*floor)
        );
    }
    print_ratios(
        "unchanged sync / download floor",
        unchanged_pairs.iter().copied(),
        1.2,
    );
    println!(
        "{:<58} {:>7.2} s",
        "1% changed sync (1,000 changes), enqueue -> published",
        secs(changed)
    );
    println!("rows written by the unchanged sync:");
    for ((table, a), (_, b)) in w0.iter().zip(&w1) {
        println!("  {table:<22} {:>6}", b - a);
    }
    println!(
        "  {:<22} {:>6}  (member rows whose version changed)",
        "directory_users", member_rows_rewritten
    );
    println!(
        "{:<58} {:>7.1} MiB (target < 150)",
        "worker peak memory (VmHWM)", peak
    );
    println!(
        "{:<58} {:>7.1} MiB",
        "`opsync verify` peak memory on 100,000 users (VmHWM)", verify_peak
    );
    println!("{:<58} {:>9}", "events written in all", published);
    let maintenance = app
        .db
        .client()
        .await
        .query_one(
            "SELECT coalesce(sum(autovacuum_count), 0)::bigint, coalesce(sum(autoanalyze_count), 0)::bigint \
             FROM pg_stat_user_tables",
            &[],
        )
        .await
        .unwrap();
    println!(
        "{:<58} {:>9}",
        "autovacuum / autoanalyze runs during the bench",
        format!(
            "{} / {}",
            maintenance.get::<_, i64>(0),
            maintenance.get::<_, i64>(1)
        )
    );
    println!(
        "worker's own phase timings (read = download + directory load, write = diff to commit, \
         job = delivery to commit):"
    );
    let logs: Vec<serde_json::Value> = worker
        .logs()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let jobs_done = logs.iter().filter(|v| v["message"] == "job done");
    for (v, job) in logs
        .iter()
        .filter(|v| v["message"] == "sync committed")
        .zip(jobs_done)
    {
        println!(
            "  changes {:>6}  read {:>5} ms  write {:>5} ms  job {:>5} ms",
            v["changes"], v["read_ms"], v["write_ms"], job["elapsed_ms"]
        );
    }
    drop(worker);
}
