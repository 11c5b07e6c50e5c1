//! The operator's commands: migrate, integration management, sync, enqueue.

use opsync_tests::app::{TestApp, spawn_app};
use opsync_tests::env::TestDb;
use serde_json::Value;

async fn run(app: &TestApp, args: &[&str]) -> (i32, Value, String) {
    app.run(args).await
}

fn token_file(app: &TestApp, token: &str) -> String {
    let path = app
        .dir
        .path()
        .join(format!("token-{}", uuid::Uuid::new_v4()));
    std::fs::write(&path, token).unwrap();
    path.to_string_lossy().into_owned()
}

#[tokio::test]
async fn migrate_is_idempotent_and_the_worker_refuses_an_old_schema() {
    let app = opsync_tests::app::spawn_app(1).await;
    let empty = TestDb::empty().await;
    let out = app
        .opsync()
        .args(["worker"])
        .env("DATABASE_URL", &empty.url)
        .output()
        .await
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(13),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("opsync migrate"));
    let first = app
        .opsync()
        .arg("migrate")
        .env("DATABASE_URL", &empty.url)
        .output()
        .await
        .unwrap();
    assert!(first.status.success());
    assert!(String::from_utf8_lossy(&first.stdout).contains("applied V1__directory"));
    let second = app
        .opsync()
        .arg("migrate")
        .env("DATABASE_URL", &empty.url)
        .output()
        .await
        .unwrap();
    assert!(second.status.success());
    assert!(String::from_utf8_lossy(&second.stdout).contains("schema is current"));
}

#[tokio::test]
async fn integration_lifecycle() {
    let app = spawn_app(12).await;
    let url = app.bridge.url();
    let good = token_file(&app, &app.bridge.token());
    let bad = token_file(&app, "wrong-token");

    // A failing bridge is not saved.
    let (code, v, _) = run(
        &app,
        &[
            "integration",
            "add",
            "--name",
            "Prod",
            "--url",
            &url,
            "--token-file",
            &bad,
            "--json",
        ],
    )
    .await;
    assert_eq!(code, 4);
    assert_eq!(v["error"]["kind"], "auth_rejected");
    assert_eq!(app.count("SELECT count(*) FROM integrations").await, 0);

    let (code, v, out) = run(
        &app,
        &[
            "integration",
            "add",
            "--name",
            "1Password Production",
            "--url",
            &url,
            "--token-file",
            &good,
            "--seats",
            "15",
            "--json",
        ],
    )
    .await;
    assert_eq!(code, 0, "{out}");
    let id = v["id"].as_str().unwrap().to_owned();
    assert!(v["scim_base"].as_str().unwrap().ends_with("/scim/v2"));
    assert_eq!(v["verify"]["users_total"], 12);

    // --no-verify saves even a bad token.
    let (code, _, _) = run(
        &app,
        &[
            "integration",
            "add",
            "--name",
            "Unchecked",
            "--url",
            &url,
            "--token-file",
            &bad,
            "--no-verify",
        ],
    )
    .await;
    assert_eq!(code, 0);

    let (code, v, _) = run(&app, &["integration", "list", "--json"]).await;
    assert_eq!(code, 0);
    assert_eq!(v.as_array().unwrap().len(), 2);
    assert_eq!(v[0]["name"], "1Password Production");
    assert_eq!(v[0]["purchased_seats"], 15);
    assert!(v[0].get("token").is_none(), "no token material in listings");

    // Sync inline, then show.
    let (code, v, out) = run(&app, &["sync", &id, "--json"]).await;
    assert_eq!(code, 0, "{out}");
    assert_eq!(v["summary"]["counts"]["added"], 12);
    let (code, v, _) = run(&app, &["integration", "show", &id, "--json"]).await;
    assert_eq!(code, 0);
    let active = app.bridge.users().iter().filter(|u| u.active).count();
    assert_eq!(v["members"]["active"], active);
    assert_eq!(v["recent_runs"][0]["outcome"], "succeeded");
    let (code, _, text) = run(&app, &["integration", "list"]).await;
    assert_eq!(code, 0);
    assert!(
        text.contains("1Password Production") && text.contains(&format!("{active}/15")),
        "{text}"
    );

    // Regenerated token: the sync fails, the integration waits for new credentials.
    let new_token = app.bridge.regenerate_token();
    let (code, v, _) = run(&app, &["sync", &id, "--json"]).await;
    assert_eq!(code, 4);
    assert_eq!(v["error"]["kind"], "auth_rejected");
    let (_, v, _) = run(&app, &["integration", "show", &id, "--json"]).await;
    assert_eq!(v["status"], "needs_credentials");
    assert!(v["advice"].as_str().unwrap().contains("update-token"));
    let (code, v, _) = run(&app, &["sync", &id, "--json"]).await;
    assert_eq!(code, 14, "no bridge call until the token is updated");
    assert_eq!(v["error"]["kind"], "integration_inactive");
    let fresh = token_file(&app, &new_token);
    let (code, _, _) = run(
        &app,
        &["integration", "update-token", &id, "--token-file", &fresh],
    )
    .await;
    assert_eq!(code, 0);
    let (_, v, _) = run(&app, &["integration", "show", &id, "--json"]).await;
    assert_eq!(v["status"], "active");
    let (code, _, _) = run(&app, &["sync", &id, "--json"]).await;
    assert_eq!(code, 0);

    // Seats, disable, enable, remove.
    assert_eq!(
        run(&app, &["integration", "set-seats", &id, "20"]).await.0,
        0
    );
    assert_eq!(run(&app, &["integration", "disable", &id]).await.0, 0);
    let (code, _, _) = run(&app, &["sync", &id]).await;
    assert_eq!(code, 14);
    assert_eq!(run(&app, &["integration", "enable", &id]).await.0, 0);
    let (_, v, _) = run(&app, &["integration", "show", &id, "--json"]).await;
    assert_eq!(v["purchased_seats"], 20);
    assert_eq!(v["status"], "active");
    assert_eq!(run(&app, &["integration", "remove", &id]).await.0, 0);
    let (code, v, _) = run(&app, &["integration", "show", &id, "--json"]).await;
    assert_eq!(code, 12);
    assert_eq!(v["error"]["kind"], "integration_not_found");
    assert_eq!(
        app.count("SELECT count(*) FROM directory_users").await,
        0,
        "removal deletes the directory"
    );
    app.bridge.assert_only_gets();
}

#[tokio::test]
async fn enqueue_publishes_valid_jobs() {
    let app = spawn_app(3).await;
    let a = app.add_integration("a").await;
    let b = app.add_integration("b").await;
    let (code, v, out) = run(&app, &["enqueue", &a.to_string(), "--json"]).await;
    assert_eq!(code, 0, "{out}");
    opsync_tests::app::assert_valid("job", &v["jobs"][0]);
    let (code, v, _) = run(&app, &["enqueue", "--all", "--json"]).await;
    assert_eq!(code, 0);
    assert_eq!(v["jobs"].as_array().unwrap().len(), 2);
    let (code, v, _) = run(
        &app,
        &[
            "enqueue",
            "--due",
            "--interval",
            "1h",
            "--trigger",
            "scheduled",
            "--json",
        ],
    )
    .await;
    assert_eq!(code, 0);
    assert_eq!(
        v["jobs"].as_array().unwrap().len(),
        2,
        "never synced: both due"
    );
    assert_eq!(app.mq.queue_len("opsync.sync-jobs").await, 5);
    // An unknown id fails before anything is queued.
    let (code, _, _) = run(&app, &["enqueue", &uuid::Uuid::new_v4().to_string()]).await;
    assert_eq!(code, 12);
    // After a sync, --due skips the fresh one.
    assert_eq!(run(&app, &["sync", &b.to_string()]).await.0, 0);
    let (_, v, _) = run(&app, &["enqueue", "--due", "--interval", "1h", "--json"]).await;
    assert_eq!(v["jobs"].as_array().unwrap().len(), 1);
    assert_eq!(v["jobs"][0]["integration_id"], a.to_string());
}
