//! `make demo`: opsync end to end on this machine, narrated.
//!
//! Starts the bridge emulator with a few hundred users, makes a database and a vhost of its
//! own on the local Postgres and RabbitMQ, migrates, adds the integration (verified like the
//! setup page does), runs a worker, enqueues a job and prints the events it published; then
//! suspends, renames, deletes and adds users on the emulator, syncs again and prints exactly
//! those changes; then stops and removes everything it started.

use opsync_tests::app::EventQueue;
use opsync_tests::bridge::{BridgeConfig, MockBridge};
use opsync_tests::env::{TestDb, TestVhost};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

fn bin(name: &str) -> PathBuf {
    let mut p = std::env::current_exe().unwrap();
    p.pop();
    p.join(name)
}

struct Env {
    db: TestDb,
    mq: TestVhost,
    key: String,
    bridge: MockBridge,
    token_file: PathBuf,
}

impl Env {
    fn opsync(&self) -> tokio::process::Command {
        let mut c = tokio::process::Command::new(bin("opsync"));
        c.env("DATABASE_URL", &self.db.url)
            .env("AMQP_URL", &self.mq.url)
            .env("OPSYNC_TOKEN_KEY", &self.key)
            // The emulator listens on loopback over plain http: allowed for the demo only.
            .env("OPSYNC_ALLOW_HTTP", "true")
            .env("OPSYNC_ALLOW_PRIVATE_ADDRESSES", "true")
            .env("OPSYNC_RELAY_INTERVAL", "200ms")
            .env("OPSYNC_LOG_FORMAT", "text")
            .kill_on_drop(true);
        c
    }

    async fn run(&self, shown: &str, args: &[&str]) -> String {
        println!("\n$ opsync {shown}");
        let out = self.opsync().args(args).output().await.expect("run opsync");
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        print!("{stdout}");
        eprint!("{}", String::from_utf8_lossy(&out.stderr));
        assert!(out.status.success(), "opsync {shown} failed");
        stdout
    }
}

fn describe(e: &opsync_tests::app::Received) -> String {
    let b = &e.body;
    let u = &b["user"];
    let who = format!(
        "{} <{}>",
        u["display_name"].as_str().unwrap_or("?"),
        u["email"].as_str().unwrap_or("?")
    );
    match e.routing_key.as_str() {
        "user.updated" => format!(
            "{:<17} {who}  changed {}  (was {})",
            e.routing_key,
            b["changed_fields"],
            b["previous"]["display_name"].as_str().unwrap_or("?")
        ),
        "sync.completed" => format!("{:<17} {}", e.routing_key, b["counts"]),
        _ => format!("{:<17} {who}  active={}", e.routing_key, u["active"]),
    }
}

fn print_events(events: &[opsync_tests::app::Received], show: usize) {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for (i, e) in events.iter().enumerate() {
        *counts.entry(e.routing_key.as_str()).or_default() += 1;
        if i < show || e.routing_key == "sync.completed" {
            println!("  {}", describe(e));
        } else if i == show {
            println!("  ... {} more", events.len() - show - 1);
        }
    }
    println!("  counts: {counts:?}");
}

#[tokio::main]
async fn main() {
    println!(
        "== opsync demo: a 1Password SCIM bridge (emulated, 300 users) -> opsync -> Postgres + RabbitMQ"
    );
    let (db, mq, bridge) = tokio::join!(
        TestDb::empty(),
        TestVhost::new(),
        MockBridge::start(BridgeConfig {
            users: 300,
            seed: 2026,
            ..BridgeConfig::default()
        })
    );
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("bearer-token");
    std::fs::write(&token_file, bridge.token()).unwrap();
    let key = opsync_shared::crypto::generate_key();
    let env = Env {
        db,
        mq,
        key,
        bridge,
        token_file,
    };
    println!(
        "bridge emulator at {}; database {}; vhost {}",
        env.bridge.url(),
        env.db.name,
        env.mq.name
    );

    env.run("migrate", &["migrate"]).await;
    let url = env.bridge.url();
    let tf = env.token_file.to_string_lossy().into_owned();
    let id = env
        .run(
            &format!("integration add --name \"1Password Production\" --url {url} --token-file bearer-token --seats 320"),
            &["integration", "add", "--name", "1Password Production", "--url", &url, "--token-file", &tf, "--seats", "320"],
        )
        .await
        .trim()
        .to_owned();

    let mut events: EventQueue = opsync_tests::app::bind_events(&env.mq).await;
    println!("\n$ opsync worker &   (logs below are the worker's)");
    let mut worker = env
        .opsync()
        .arg("worker")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .expect("start the worker");

    env.run(&format!("enqueue {id}"), &["enqueue", &id]).await;
    let first = events.until_completed(1, Duration::from_secs(120)).await;
    println!("\nevents published on opsync.events by the first sync:");
    print_events(&first, 8);

    println!("\n== changes on the bridge: suspend 2, rename 1, delete 1, add 2");
    let users = env.bridge.users();
    let active: Vec<_> = users.iter().filter(|u| u.active).collect();
    env.bridge.suspend(&active[0].id);
    env.bridge.suspend(&active[1].id);
    println!("  suspended {} and {}", active[0].email, active[1].email);
    env.bridge
        .rename(&active[2].id, &active[2].given, "Lovelace-Byron");
    println!(
        "  renamed   {} to {} Lovelace-Byron",
        active[2].email, active[2].given
    );
    env.bridge.delete(&active[3].id);
    println!("  deleted   {}", active[3].email);
    env.bridge.add_user("Margaret", "Hamilton");
    env.bridge.add_user("Annie", "Easley");
    println!("  added     Margaret Hamilton, Annie Easley");

    env.run(&format!("enqueue {id}"), &["enqueue", &id]).await;
    let second = events.until_completed(1, Duration::from_secs(120)).await;
    println!("\nevents published by the second sync (exactly the changes):");
    print_events(&second, 50);

    env.run(
        &format!("integration show {id}"),
        &["integration", "show", &id],
    )
    .await;

    println!("\n== seats: what Viio shows the customer");
    let renewal = (chrono::Utc::now().date_naive() + chrono::Duration::days(75)).to_string();
    env.run(
        &format!("integration set-plan {id} --price-per-seat 7.99 --currency USD --billing monthly --renewal {renewal}"),
        &["integration", "set-plan", &id, "--price-per-seat", "7.99", "--currency", "USD", "--billing", "monthly", "--renewal", &renewal],
    )
    .await;
    env.run(&format!("report seats {id}"), &["report", "seats", &id])
        .await;
    env.run(&format!("report reclaim {id}"), &["report", "reclaim", &id])
        .await;
    let page = std::env::temp_dir().join("opsync-demo-seats.html");
    let page_arg = page.to_string_lossy().into_owned();
    env.run(
        &format!("report seats {id} --html {page_arg}"),
        &["report", "seats", &id, "--html", &page_arg],
    )
    .await;
    println!("  (open {page_arg} in a browser: the summary and the chart)");

    println!("\n== stopping the worker (SIGTERM) and cleaning up");
    if let Some(pid) = worker.id() {
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status();
    }
    let _ = tokio::time::timeout(Duration::from_secs(30), worker.wait()).await;
    env.bridge.assert_only_gets();
    println!(
        "the emulator saw only GET requests ({} in all)",
        env.bridge.requests().len()
    );
    drop(events);
    drop(env);
    println!("done: database and vhost removed");
}
