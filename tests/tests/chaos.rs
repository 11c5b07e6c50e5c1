//! Chaos: two workers, 50 integrations, random faults from a fixed seed for a bounded time;
//! then the stored directory of every integration must equal its bridge, and the published
//! event stream must replay to the same state. Prints its figures (run with --nocapture).

use opsync_tests::app::spawn_app;
use opsync_tests::bridge::{BridgeConfig, Fault, FaultRule, MockBridge};
use opsync_tests::proxy::{TcpProxy, target_of};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::Value;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

const SEED: u64 = 20_261_203;
const INTEGRATIONS: usize = 50;
const CHAOS: Duration = Duration::from_secs(25);

#[derive(Default, Debug)]
struct Figures {
    jobs: u64,
    bridge_faults: BTreeMap<&'static str, u64>,
    directory_changes: u64,
    worker_kills: u64,
    broker_cuts: u64,
}

/// A member as both the database and the events describe it.
type Member = (
    String,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    bool,
);

fn from_bridge(b: &MockBridge) -> BTreeMap<String, Member> {
    b.users()
        .into_iter()
        .map(|u| {
            let display = format!("{} {}", u.given, u.family);
            (
                u.id.clone(),
                (
                    u.email.clone(),
                    Some(u.email.clone()),
                    Some(display),
                    Some(u.given.clone()),
                    Some(u.family.clone()),
                    u.active,
                ),
            )
        })
        .collect()
}

fn from_event(user: &Value) -> Member {
    let s = |k: &str| user[k].as_str().map(str::to_owned);
    (
        s("user_name").unwrap_or_default(),
        s("email"),
        s("display_name"),
        s("given_name"),
        s("family_name"),
        user["active"].as_bool().unwrap(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_two_workers_fifty_integrations() {
    let t0 = Instant::now();
    let mut rng = StdRng::seed_from_u64(SEED);
    let app = spawn_app(0).await;
    let mut bridges = Vec::new();
    let mut ids = Vec::new();
    for i in 0..INTEGRATIONS {
        let users = rng.random_range(10..60);
        let b = MockBridge::start(BridgeConfig {
            users,
            seed: 1000 + i as u64,
            ..BridgeConfig::default()
        })
        .await;
        ids.push(app.add_integration_for(&b, &format!("chaos-{i}")).await);
        bridges.push(b);
    }
    let mut events = app.events().await;
    // Worker A talks to RabbitMQ through a proxy that the chaos cuts; worker B gets killed.
    let mq = TcpProxy::start(target_of(&app.mq.url)).await;
    let spawn_a = || {
        let mut cmd = app.opsync();
        cmd.args(["worker", "--page-size", "10"])
            .env("AMQP_URL", mq.url_for(&app.mq.url))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        cmd.spawn().unwrap()
    };
    let mut worker_a = spawn_a();
    let mut worker_b = app.spawn_worker(&["--page-size", "10"]);

    let mut f = Figures::default();
    let mut deletions: HashMap<usize, u32> = HashMap::new();
    let mut last_kill = Instant::now();
    let mut last_cut = Instant::now();
    let chaos_start = Instant::now();
    while chaos_start.elapsed() < CHAOS {
        for _ in 0..3 {
            let i = rng.random_range(0..INTEGRATIONS);
            app.enqueue(ids[i]).await;
            f.jobs += 1;
        }
        let i = rng.random_range(0..INTEGRATIONS);
        let b = &bridges[i];
        let (name, fault) = match rng.random_range(0..6) {
            0 => (
                "status_503",
                Fault::Status {
                    status: 503,
                    retry_after: Some("1".into()),
                    body: None,
                    location: None,
                },
            ),
            1 => ("status_500", Fault::status(500)),
            2 => ("drop", Fault::Drop),
            3 => ("delay", Fault::Delay { ms: 400 }),
            4 => (
                "drift",
                if rng.random_bool(0.5) {
                    Fault::Drift { add: 1, remove: 0 }
                } else {
                    Fault::Drift { add: 0, remove: 1 }
                },
            ),
            _ => ("repeat", Fault::RepeatPrevious),
        };
        b.inject(
            FaultRule::on("/Users", fault)
                .skip(rng.random_range(0..3))
                .times(rng.random_range(1..4)),
        );
        *f.bridge_faults.entry(name).or_default() += 1;
        // A change to someone's directory.
        let j = rng.random_range(0..INTEGRATIONS);
        let users = bridges[j].users();
        if !users.is_empty() {
            let u = &users[rng.random_range(0..users.len())];
            match rng.random_range(0..5) {
                0 => bridges[j].suspend(&u.id),
                1 => bridges[j].reactivate(&u.id),
                2 => bridges[j].rename(&u.id, &u.given, "Chaos"),
                // Few deletions per bridge: a mass removal would (rightly) wait for an operator.
                3 if *deletions.get(&j).unwrap_or(&0) < 3 => {
                    bridges[j].delete(&u.id);
                    *deletions.entry(j).or_default() += 1;
                }
                _ => {
                    bridges[j].add_user("Chaos", "Monkey");
                }
            }
            f.directory_changes += 1;
        }
        if last_kill.elapsed() > Duration::from_secs(7) {
            worker_b.kill9().await;
            worker_b = app.spawn_worker(&["--page-size", "10"]);
            f.worker_kills += 1;
            last_kill = Instant::now();
        }
        if last_cut.elapsed() > Duration::from_secs(9) {
            mq.cut();
            f.broker_cuts += 1;
            last_cut = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }

    // Calm: no more faults; sync everyone until every directory matches its bridge.
    for b in &bridges {
        b.clear_faults();
    }
    if worker_a.try_wait().unwrap().is_some() {
        worker_a = spawn_a();
    }
    let client = app.db.client().await;
    let mut converged = false;
    for _round in 0..4 {
        let mut last = None;
        for id in &ids {
            last = Some(app.enqueue(*id).await);
            f.jobs += 1;
        }
        assert!(
            app.wait_for_job(last.unwrap().job_id, Duration::from_secs(120))
                .await
        );
        // Let retries and the relays finish.
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            let pending: i64 = client
                .query_one("SELECT count(*) FROM outbox", &[])
                .await
                .unwrap()
                .get(0);
            let queued = app.mq.queue_len("opsync.sync-jobs").await;
            if pending == 0 && queued == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let mut all = true;
        for (i, id) in ids.iter().enumerate() {
            let rows = client
                .query(
                    "SELECT scim_id, user_name, email, display_name, given_name, family_name, active FROM directory_users \
                     WHERE integration_id = $1 AND removed_at IS NULL",
                    &[id],
                )
                .await
                .unwrap();
            let stored: BTreeMap<String, Member> = rows
                .iter()
                .map(|r| {
                    (
                        r.get(0),
                        (
                            r.get::<_, Option<String>>(1).unwrap_or_default(),
                            r.get(2),
                            r.get(3),
                            r.get(4),
                            r.get(5),
                            r.get(6),
                        ),
                    )
                })
                .collect();
            if stored != from_bridge(&bridges[i]) {
                all = false;
            }
        }
        if all {
            converged = true;
            break;
        }
    }
    assert!(converged, "every stored directory equals its bridge");

    // Drain the published events and replay them per integration.
    let mut replayed: HashMap<String, BTreeMap<String, Member>> = HashMap::new();
    let mut seen = HashSet::new();
    let (mut total, mut duplicates) = (0u64, 0u64);
    while let Some(e) = events.next(Duration::from_secs(3)).await {
        total += 1;
        if !seen.insert(e.message_id.clone().unwrap()) {
            duplicates += 1;
            continue;
        }
        let integration = e.body["integration_id"].as_str().unwrap().to_owned();
        let state = replayed.entry(integration).or_default();
        let user = &e.body["user"];
        match e.routing_key.as_str() {
            "sync.completed" => {}
            "user.removed" => {
                state.remove(user["id"].as_str().unwrap());
            }
            _ => {
                state.insert(user["id"].as_str().unwrap().to_owned(), from_event(user));
            }
        }
    }
    for (i, id) in ids.iter().enumerate() {
        let state = replayed.get(&id.to_string()).cloned().unwrap_or_default();
        assert_eq!(
            state,
            from_bridge(&bridges[i]),
            "the event stream of integration {i} replays to its bridge"
        );
    }
    for b in &bridges {
        b.assert_only_gets();
    }

    let failed: i64 = client
        .query_one(
            "SELECT count(*) FROM sync_runs WHERE outcome = 'failed'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    let succeeded: i64 = client
        .query_one(
            "SELECT count(*) FROM sync_runs WHERE outcome = 'succeeded'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    let doubtful: i64 = client
        .query_one(
            "SELECT count(*) FROM sync_runs WHERE snapshot_consistent = false",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    let dead = app.mq.queue_len("opsync.sync-jobs.dead").await;
    eprintln!(
        "chaos (seed {SEED}, {:.0} s): {} jobs enqueued, {} syncs succeeded, {} failed attempts (retried), {} doubtful snapshots, \
         {} dead letters; faults: {:?}, {} directory changes, {} worker kills, {} broker cuts; \
         {} events received ({} duplicates dropped by id)",
        t0.elapsed().as_secs_f64(),
        f.jobs,
        succeeded,
        failed,
        doubtful,
        dead,
        f.bridge_faults,
        f.directory_changes,
        f.worker_kills,
        f.broker_cuts,
        total,
        duplicates
    );
    let _ = worker_a.start_kill();
}
