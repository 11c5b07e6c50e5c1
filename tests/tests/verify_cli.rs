//! `opsync verify` as a user runs it: output, exit codes, and the token never printed.

use opsync_tests::bridge::{MockBridge, Mode};
use opsync_tests::helpers::{opsync_bin, spawn_bridge, spawn_bridge_with};
use std::process::Output;

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

/// Runs `opsync verify` against `bridge` with every log enabled, the token in a file.
async fn verify(bridge: &MockBridge, token: &str, extra: &[&str]) -> Run {
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, format!("{token}\n")).unwrap();
    let out: Output = tokio::process::Command::new(opsync_bin())
        .args(["verify", "--url", &bridge.url(), "--token-file"])
        .arg(&token_file)
        .args([
            "--allow-http",
            "--allow-private-addresses",
            "--retry-deadline",
            "2",
        ])
        .args(extra)
        .env("RUST_LOG", "trace")
        .output()
        .await
        .unwrap();
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn assert_secret_absent(run: &Run, token: &str) {
    assert!(
        !run.stdout.contains(token),
        "token in stdout:\n{}",
        run.stdout
    );
    assert!(!run.stderr.contains(token), "token in logs");
    // A long prefix of the token is as bad as the token.
    assert!(
        !run.stderr.contains(&token[..token.len() - 4]),
        "token prefix in logs"
    );
}

#[tokio::test]
async fn succeeding_run_prints_the_report() {
    let bridge = spawn_bridge(120).await;
    let run = verify(&bridge, &bridge.token(), &["--json"]).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    let v: serde_json::Value = serde_json::from_str(run.stdout.trim()).unwrap();
    assert_eq!(v["ok"], true);
    let r = &v["report"];
    assert_eq!(r["users_total"], 120);
    let active = bridge.users().iter().filter(|u| u.active).count();
    assert_eq!(r["users_active"], active);
    assert_eq!(r["users_suspended"], 120 - active);
    assert_eq!(r["base_path"], "/scim/v2");
    assert_eq!(r["version"], "2.9.16");
    assert_eq!(r["complete_and_consistent"], true);
    // trace logging really was on, so the secret check below means something.
    assert!(run.stderr.contains("bridge_request"), "no logs captured");
    assert_secret_absent(&run, &bridge.token());
    bridge.assert_only_gets();

    let text = verify(&bridge, &bridge.token(), &[]).await;
    assert_eq!(text.code, 0);
    assert!(
        text.stdout.contains("120 (") && text.stdout.contains("2.9.16"),
        "{}",
        text.stdout
    );
    assert_secret_absent(&text, &bridge.token());
}

#[tokio::test]
async fn failing_runs_have_distinct_exit_codes_and_never_show_the_token() {
    let bridge = spawn_bridge(10).await;
    let token = bridge.token();

    bridge.set_mode(Mode::ProvisioningOff);
    let run = verify(&bridge, &token, &["--json"]).await;
    assert_eq!(run.code, 8, "{}", run.stdout);
    let v: serde_json::Value = serde_json::from_str(run.stdout.trim()).unwrap();
    assert_eq!(v["error"]["kind"], "server_error");
    assert_eq!(v["error"]["class"], "transient");
    assert_secret_absent(&run, &token);

    bridge.set_mode(Mode::GoogleWorkspace { scim_status: 404 });
    let run = verify(&bridge, &token, &[]).await;
    assert_eq!(run.code, 5);
    assert!(
        run.stderr.contains("error[scim_api_disabled]") && run.stderr.contains("Google Workspace")
    );
    assert_secret_absent(&run, &token);

    bridge.set_mode(Mode::Normal);
    let old = token.clone();
    let new = bridge.regenerate_token();
    let run = verify(&bridge, &old, &[]).await;
    assert_eq!(run.code, 4);
    assert!(
        run.stderr.contains("update the integration's token"),
        "{}",
        run.stderr
    );
    assert_secret_absent(&run, &old);
    assert_secret_absent(&run, &new);
    bridge.assert_only_gets();
}

#[tokio::test]
async fn refusals_before_any_request() {
    let bridge = spawn_bridge(1).await;
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, bridge.token()).unwrap();
    let plain = |args: &[&str]| {
        std::process::Command::new(opsync_bin())
            .arg("verify")
            .args(args)
            .output()
            .unwrap()
    };
    // http:// without --allow-http.
    let out = plain(&[
        "--url",
        &bridge.url(),
        "--token-file",
        token_file.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stderr).contains("insecure_url"));
    // Loopback without --allow-private-addresses.
    let out = plain(&[
        "--url",
        &bridge.url(),
        "--token-file",
        token_file.to_str().unwrap(),
        "--allow-http",
    ]);
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stderr).contains("address_blocked"));
    // No way to pass the token itself on the command line.
    let out = plain(&["--url", &bridge.url(), "--token", "abc"]);
    assert_eq!(out.status.code(), Some(2));
    // A token file that does not exist.
    let out = plain(&["--url", &bridge.url(), "--token-file", "/nonexistent/token"]);
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read the token file"));
    assert!(bridge.requests().is_empty());
}

#[tokio::test]
async fn token_from_the_environment() {
    let bridge = spawn_bridge_with(|c| c.users = 3).await;
    let out = tokio::process::Command::new(opsync_bin())
        .args([
            "verify",
            "--url",
            &bridge.url(),
            "--token-env",
            "BRIDGE_TOKEN",
            "--allow-http",
            "--allow-private-addresses",
            "--json",
        ])
        .env("BRIDGE_TOKEN", bridge.token())
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stdout).contains("\"users_total\":3"));
    bridge.assert_only_gets();
}
