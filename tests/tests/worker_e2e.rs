//! The sync worker end to end: the real `opsync worker` binary, the real RabbitMQ and Postgres,
//! the bridge emulator. Every message the worker produces is checked against its schema.

use opsync_tests::app::{Received, Synced, TestApp, assert_valid, spawn_app, spawn_synced_app};
use opsync_tests::bridge::{Fault, FaultRule};
use std::collections::HashMap;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(60);

fn check_messages(events: &[Received]) {
    for e in events {
        assert_valid(&e.routing_key, &e.body);
        assert_eq!(e.body["type"], e.routing_key.as_str());
        assert_eq!(
            e.message_id.as_deref(),
            e.body["event_id"].as_str(),
            "message_id is the event id"
        );
        assert_eq!(e.content_type.as_deref(), Some("application/json"));
        assert_eq!(e.delivery_mode, Some(2), "events are persistent");
    }
}

fn by_type(events: &[Received]) -> HashMap<String, usize> {
    let mut m = HashMap::new();
    for e in events {
        *m.entry(e.routing_key.clone()).or_insert(0) += 1;
    }
    m
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn initial_sync_publishes_one_added_event_per_user_and_stores_them() {
    let app = spawn_app(250).await;
    let id = app.add_integration("1Password Production").await;
    let mut events = app.events().await;
    let _worker = app.spawn_worker(&[]);
    let job = app.enqueue(id).await;
    let got = events.until_completed(1, WAIT).await;
    check_messages(&got);
    let counts = by_type(&got);
    assert_eq!(counts.get("user.added"), Some(&250));
    assert_eq!(counts.len(), 2, "{counts:?}");
    let completed = got.last().unwrap();
    assert_eq!(
        completed.routing_key, "sync.completed",
        "sync.completed comes after the user events"
    );
    assert_eq!(completed.body["counts"]["added"], 250);
    assert_eq!(completed.body["job_id"], job.job_id.to_string());
    assert_eq!(completed.body["snapshot_consistent"], true);
    assert_eq!(app.count("SELECT count(*) FROM directory_users").await, 250);
    let active = app.bridge.users().iter().filter(|u| u.active).count() as i64;
    assert_eq!(
        app.count("SELECT count(*) FROM directory_users WHERE active")
            .await,
        active
    );
    assert!(app.wait_for_job(job.job_id, WAIT).await);
    // The discovered SCIM base was stored for the next syncs.
    let base: Option<String> = app.scalar("SELECT scim_base FROM integrations").await;
    assert!(base.unwrap().ends_with("/scim/v2"));
    // Every event in the outbox is marked published.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(app.count("SELECT count(*) FROM outbox").await, 0);
    app.bridge.assert_only_gets();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_change_on_the_bridge_gives_exactly_its_event() {
    let Synced {
        app,
        id,
        mut events,
        worker: _worker,
        ..
    } = spawn_synced_app(40).await;

    let users = app.bridge.users();
    let to_suspend = users.iter().find(|u| u.active).unwrap().id.clone();
    let to_reactivate = users
        .iter()
        .find(|u| !u.active)
        .map(|u| u.id.clone())
        .expect("the seed has a suspended user");
    let to_rename = users
        .iter()
        .rev()
        .find(|u| u.active && u.id != to_suspend)
        .unwrap()
        .id
        .clone();
    let to_delete = users
        .iter()
        .find(|u| u.active && u.id != to_suspend && u.id != to_rename)
        .unwrap()
        .id
        .clone();
    app.bridge.suspend(&to_suspend);
    app.bridge.reactivate(&to_reactivate);
    let given = users
        .iter()
        .find(|u| u.id == to_rename)
        .unwrap()
        .given
        .clone();
    app.bridge.rename(&to_rename, &given, "Hopper-Renamed");
    app.bridge.delete(&to_delete);
    let added = app.bridge.add_user("Katherine", "Johnson");

    app.enqueue(id).await;
    let got = events.until_completed(1, WAIT).await;
    check_messages(&got);
    let mut kinds: Vec<(String, String)> = got
        .iter()
        .filter(|e| e.routing_key != "sync.completed")
        .map(|e| {
            (
                e.routing_key.clone(),
                e.body["user"]["id"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    kinds.sort();
    let mut expected = vec![
        ("user.added".to_string(), added.clone()),
        ("user.deactivated".to_string(), to_suspend.clone()),
        ("user.reactivated".to_string(), to_reactivate.clone()),
        ("user.removed".to_string(), to_delete.clone()),
        ("user.updated".to_string(), to_rename.clone()),
    ];
    expected.sort();
    assert_eq!(kinds, expected);
    let renamed = got
        .iter()
        .find(|e| e.routing_key == "user.updated")
        .unwrap();
    assert_eq!(
        renamed.body["changed_fields"],
        serde_json::json!(["display_name", "family_name"])
    );
    assert_eq!(renamed.body["user"]["family_name"], "Hopper-Renamed");
    assert!(renamed.body["previous"]["family_name"].is_string());
    let suspended = got
        .iter()
        .find(|e| e.routing_key == "user.deactivated")
        .unwrap();
    assert_eq!(suspended.body["user"]["active"], false);
    assert_eq!(suspended.body["previous"]["active"], true);
    let new = got.iter().find(|e| e.routing_key == "user.added").unwrap();
    assert!(new.body["previous"].is_null());
    let completed = got.last().unwrap();
    assert_eq!(completed.body["counts"]["removed"], 1);
    assert_eq!(completed.body["counts"]["users"], 40);

    // The read model follows.
    let client = app.db.client().await;
    let removed: Option<chrono::DateTime<chrono::Utc>> = client
        .query_one(
            "SELECT removed_at FROM directory_users WHERE scim_id = $1",
            &[&to_delete],
        )
        .await
        .unwrap()
        .get(0);
    assert!(removed.is_some());
    let active: bool = client
        .query_one(
            "SELECT active FROM directory_users WHERE scim_id = $1",
            &[&to_suspend],
        )
        .await
        .unwrap()
        .get(0);
    assert!(!active);

    // A third sync with nothing changed: only sync.completed, and no member row written (a
    // written row gets a new xmin, the id of the transaction that wrote it).
    let versions = "SELECT string_agg(scim_id || ':' || xmin::text, ',' ORDER BY scim_id) FROM directory_users";
    let before: String = client.query_one(versions, &[]).await.unwrap().get(0);
    app.enqueue(id).await;
    let got = events.until_completed(1, WAIT).await;
    assert_eq!(
        got.len(),
        1,
        "an unchanged sync publishes only sync.completed"
    );
    let after: String = client.query_one(versions, &[]).await.unwrap().get(0);
    assert_eq!(before, after, "an unchanged sync writes no member row");
    app.bridge.assert_only_gets();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redelivered_and_duplicate_jobs_publish_nothing_new() {
    let Synced {
        app,
        mut events,
        worker: _worker,
        job,
        first,
        ..
    } = spawn_synced_app(30).await;
    assert_eq!(first.len(), 31);
    app.bridge.clear_requests();
    // The same job again, twice (a redelivery and a duplicate from the scheduler).
    app.publish_job(&job).await;
    app.publish_job(&job).await;
    events.assert_quiet(Duration::from_secs(3)).await;
    assert!(
        app.bridge.requests().is_empty(),
        "a completed job is not run again"
    );
    assert_eq!(app.count("SELECT count(*) FROM sync_runs").await, 1);
    assert_eq!(app.count("SELECT count(*) FROM events").await, 31);
    // Nothing left on the job queue: the duplicates were acked.
    assert_eq!(app.mq.queue_len("opsync.sync-jobs").await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_jobs_for_one_integration_run_one_after_the_other() {
    let app = spawn_app(30).await;
    let id = app.add_integration("prod").await;
    let mut events = app.events().await;
    // Slow pages, so two overlapping syncs would interleave their requests.
    app.bridge
        .inject(FaultRule::on("/Users", Fault::Delay { ms: 150 }).times(100));
    let _worker = app.spawn_worker(&["--concurrency", "4", "--page-size", "10"]);
    let (a, b) = tokio::join!(app.enqueue(id), app.enqueue(id));
    events.until_completed(2, WAIT).await;
    assert!(app.wait_for_job(a.job_id, WAIT).await && app.wait_for_job(b.job_id, WAIT).await);
    // Each listing pass reads startIndex 1, 11, 21: with the lock the passes never interleave.
    let pages: Vec<String> = app
        .bridge
        .requests()
        .into_iter()
        .filter(|r| {
            r.path == "/scim/v2/Users" && r.query.as_deref().unwrap_or("").contains("count=10")
        })
        .map(|r| r.query.unwrap())
        .collect();
    let starts: Vec<&str> = pages
        .iter()
        .map(|q| q.split('&').find(|p| p.starts_with("startIndex")).unwrap())
        .collect();
    assert_eq!(
        starts,
        [
            "startIndex=1",
            "startIndex=11",
            "startIndex=21",
            "startIndex=1",
            "startIndex=11",
            "startIndex=21"
        ]
    );
    let runs: Vec<(chrono::DateTime<chrono::Utc>, chrono::DateTime<chrono::Utc>)> = app
        .db
        .client()
        .await
        .query(
            "SELECT started_at, finished_at FROM sync_runs ORDER BY finished_at",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(runs.len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_left_by_a_dead_worker_are_published_by_another() {
    let app = spawn_app(50).await;
    let id = app.add_integration("prod").await;
    let mut events = app.events().await;
    // This worker commits but never publishes: it stands for one killed right after commit.
    let mut first = app.spawn_worker(&["--no-relay"]);
    let job = app.enqueue(id).await;
    assert!(app.wait_for_job(job.job_id, WAIT).await);
    first.kill9().await;
    assert_eq!(
        app.count("SELECT coalesce(sum(events - published_events), 0)::bigint FROM outbox")
            .await,
        51
    );
    events.assert_quiet(Duration::from_secs(1)).await;
    let _second = app.spawn_worker(&[]);
    let got = events.until_completed(1, WAIT).await;
    check_messages(&got);
    assert_eq!(got.len(), 51);
    let mut ids: Vec<_> = got.iter().map(|e| e.message_id.clone().unwrap()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 51, "each event once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_token_is_never_in_clear_in_postgres_logs_or_queues() {
    let app = spawn_app(20).await;
    let token = app.bridge.token();
    let id = app.add_integration("prod").await;
    let mut events = app.events().await;
    let mut worker = app.spawn_worker(&[]);
    app.enqueue(id).await;
    let got = events.until_completed(1, WAIT).await;
    // A failing run too: the bridge refuses everything, with the right token sent.
    app.bridge
        .inject(FaultRule::on("/Users", Fault::status(503)).times(100));
    app.enqueue(id).await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    worker.sigterm(Duration::from_secs(30)).await;

    for e in &got {
        assert!(!e.body.to_string().contains(&token), "token in an event");
    }
    // Every column of every table, as text.
    let client = app.db.client().await;
    let tables: Vec<String> = client
        .query(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public'",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(tables.len() >= 4);
    for t in tables {
        let rows = client
            .query(&format!("SELECT t::text FROM {t} t"), &[])
            .await
            .unwrap();
        for r in rows {
            let text: String = r.get(0);
            assert!(!text.contains(&token), "token in clear in table {t}");
        }
    }
    // The ciphertext is there and decrypts to the token.
    let r = client
        .query_one(
            "SELECT token_key_id, token_nonce, token_ciphertext FROM integrations",
            &[],
        )
        .await
        .unwrap();
    let sealed = opsync_shared::crypto::Sealed {
        key_id: r.get(0),
        nonce: r.get(1),
        ciphertext: r.get(2),
    };
    assert_eq!(app.keyring.open(&sealed, id).unwrap().expose(), token);
    // Logs at debug level, failures included.
    let logs = worker.logs();
    assert!(logs.contains("job failed"), "the failing run was logged");
    assert!(!logs.contains(&token), "token in the worker's logs");
    // Whatever sits on the queues (retries, dead letters): jobs only, never the token.
    let conn = app.mq.connect().await;
    let ch = conn.create_channel().await.unwrap();
    for q in [
        "opsync.sync-jobs",
        "opsync.sync-jobs.dead",
        "opsync.sync-jobs.retry.1s",
        "opsync.sync-jobs.retry.2s",
        "opsync.events.unrouted",
    ] {
        while let Ok(Some(m)) = ch
            .basic_get(q.into(), lapin::options::BasicGetOptions { no_ack: true })
            .await
        {
            assert!(
                !String::from_utf8_lossy(&m.delivery.data).contains(&token),
                "token on queue {q}"
            );
            let headers = format!("{:?}", m.delivery.properties.headers());
            assert!(!headers.contains(&token), "token in headers on {q}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_jobs_do_not_stop_the_worker() {
    let app: TestApp = spawn_app(5).await;
    let id = app.add_integration("prod").await;
    let mut events = app.events().await;
    let _worker = app.spawn_worker(&[]);
    let conn = app.mq.connect().await;
    let ch = opsync_shared::broker::confirm_channel(&conn).await.unwrap();
    for body in [&b"not json"[..], br#"{"job_id":"nope"}"#] {
        opsync_shared::broker::publish_confirmed(
            &ch,
            "opsync.jobs",
            "sync",
            body,
            lapin::BasicProperties::default(),
        )
        .await
        .unwrap();
    }
    app.enqueue(id).await;
    let got = events.until_completed(1, WAIT).await;
    assert_eq!(got.len(), 6);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        app.mq.queue_len("opsync.sync-jobs.dead").await,
        2,
        "invalid jobs are dead-lettered"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_after_a_sync() {
    let app = spawn_app(40).await;
    let id = app.add_integration("prod").await;
    let mut events = app.events().await;
    let port = opsync_tests::helpers::free_port();
    let _worker = app.spawn_worker(&["--health-addr", &format!("127.0.0.1:{port}")]);
    app.enqueue(id).await;
    events.until_completed(1, WAIT).await;
    let url = format!("http://127.0.0.1:{port}/metrics");
    let scrape = || async { reqwest::get(&url).await.unwrap().text().await.unwrap() };
    // The relay counts an event once the broker confirmed it; give the last batch a moment.
    let mut text = scrape().await;
    for _ in 0..50 {
        if text.contains("opsync_events_published_total{type=\"sync.completed\"} 1") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        text = scrape().await;
    }
    for line in [
        "opsync_jobs_total{outcome=\"succeeded\",error_kind=\"\"} 1",
        "opsync_events_published_total{type=\"user.added\"} 40",
        "opsync_events_published_total{type=\"sync.completed\"} 1",
        "opsync_users_seen_total 40",
        "opsync_sync_duration_seconds_count 1",
        "opsync_jobs_in_flight 0",
    ] {
        assert!(text.contains(line), "missing `{line}` in:\n{text}");
    }
    assert!(text.contains("opsync_bridge_request_duration_seconds_count{status_class=\"2xx\"}"));
    assert!(text.contains("# TYPE opsync_outbox_backlog_events gauge"));

    // A failing attempt shows as retried with its kind.
    app.bridge
        .set_mode(opsync_tests::bridge::Mode::ProvisioningOff);
    app.enqueue(id).await;
    let mut ok = false;
    for _ in 0..100 {
        if scrape()
            .await
            .contains("opsync_jobs_total{outcome=\"retried\",error_kind=\"server_error\"} 1")
        {
            ok = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(ok, "the retried job is counted:\n{}", scrape().await);
    assert!(scrape().await.contains("opsync_bridge_retries_total"));
}

/// The initial sync writes its pages while it downloads: a failure on a later page must still
/// leave nothing behind, and the retry must add every member exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_initial_sync_failing_mid_listing_commits_nothing() {
    let app = spawn_app(1200).await;
    let id = app
        .add_integration("1Password Production")
        .await
        .to_string();
    // The first pages (and discovery) answer; then the bridge fails for good.
    app.bridge.inject(
        FaultRule::on("/Users", Fault::status(500))
            .skip(5)
            .times(10_000),
    );
    let out = app
        .opsync()
        .args(["sync", &id, "--page-size", "100", "--json"])
        .output()
        .await
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(8),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let ok_pages = app
        .bridge
        .requests()
        .iter()
        .filter(|r| r.path.ends_with("/Users") && r.status == 200)
        .count();
    assert!(
        ok_pages >= 2,
        "the failure came after pages were written ({ok_pages})"
    );
    for table in ["directory_users", "events", "outbox"] {
        assert_eq!(
            app.count(&format!("SELECT count(*) FROM {table}")).await,
            0,
            "{table} after a failed initial sync"
        );
    }
    assert_eq!(
        app.count("SELECT count(*) FROM sync_runs WHERE outcome = 'failed'")
            .await,
        1
    );
    app.bridge.clear_faults();
    let out = app
        .opsync()
        .args(["sync", &id, "--page-size", "100", "--json"])
        .output()
        .await
        .unwrap();
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["summary"]["counts"]["added"], 1200);
    assert_eq!(
        app.count("SELECT count(*) FROM directory_users").await,
        1200
    );
    assert_eq!(
        app.count("SELECT count(DISTINCT scim_id) FROM events WHERE type = 'user.added'")
            .await,
        1200
    );
    assert_eq!(app.count("SELECT count(*) FROM events").await, 1201);
    assert_eq!(
        app.count("SELECT coalesce(sum(events - published_events), 0)::bigint FROM outbox")
            .await,
        1201
    );
}
