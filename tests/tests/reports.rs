//! Seat allocation and provisioning reports, end to end: real syncs against the emulator and
//! known histories written into a real Postgres, read back through the `opsync` binary; the
//! HTML page rendered in headless Chromium.

use chrono::{DateTime, Duration, NaiveDate, Utc};
use opsync_shared::report::week_start;
use opsync_tests::app::{TestApp, spawn_app};
use serde_json::{Value, json};
use std::collections::HashMap;
use uuid::Uuid;

async fn run(app: &TestApp, args: &[&str]) -> (i32, Value, String) {
    app.run(args).await
}

async fn ok_json(app: &TestApp, args: &[&str]) -> Value {
    let (code, v, out) = run(app, args).await;
    assert_eq!(code, 0, "opsync {args:?}: {out}");
    v
}

async fn csv_rows(app: &TestApp, args: &[&str]) -> Vec<HashMap<String, String>> {
    let (code, _, out) = run(app, args).await;
    assert_eq!(code, 0, "{out}");
    let mut r = csv::Reader::from_reader(out.as_bytes());
    let headers = r.headers().unwrap().clone();
    r.records()
        .map(|rec| {
            let rec = rec.unwrap();
            headers
                .iter()
                .zip(rec.iter())
                .map(|(h, v)| (h.to_string(), v.to_string()))
                .collect()
        })
        .collect()
}

async fn sync(app: &TestApp, id: &str) {
    let (code, _, out) = run(app, &["sync", id, "--json"]).await;
    assert_eq!(code, 0, "{out}");
}

fn types(evidence: &Value) -> Vec<&str> {
    evidence
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reports_follow_real_syncs_suspensions_removals_and_a_failed_sync() {
    let app = spawn_app(20).await;
    let id = app
        .add_integration("1Password Production")
        .await
        .to_string();
    let renewal = (Utc::now().date_naive() + Duration::days(40)).to_string();
    let (code, _, out) = run(
        &app,
        &[
            "integration",
            "set-plan",
            &id,
            "--seats",
            "10",
            "--price-per-seat",
            "4.99",
            "--currency",
            "usd",
            "--billing",
            "monthly",
            "--renewal",
            &renewal,
        ],
    )
    .await;
    assert_eq!(code, 0, "{out}");
    sync(&app, &id).await;

    let users = app.bridge.users();
    let active0 = users.iter().filter(|u| u.active).count() as i64;
    let suspended0 = users.len() as i64 - active0;
    let r = ok_json(&app, &["report", "seats", &id, "--json"]).await;
    assert_eq!(r["active_members"], active0);
    assert_eq!(r["suspended_members"], suspended0);
    assert_eq!(r["purchased_seats"], 10);
    assert_eq!(r["currency"], "USD");
    assert_eq!(r["over_allocated"], active0 > 10, "{r}");
    assert_eq!(r["seats_short"], (active0 - 10).max(0));
    assert_eq!(r["days_to_renewal"], 40);
    assert_eq!(r["freshness"]["state"], "current");

    // Suspend one, delete one, and flip a third: suspended, reactivated, suspended again.
    let actives: Vec<String> = users
        .iter()
        .filter(|u| u.active)
        .map(|u| u.id.clone())
        .collect();
    let (a, b, c) = (&actives[0], &actives[1], &actives[2]);
    app.bridge.suspend(a);
    app.bridge.delete(b);
    app.bridge.suspend(c);
    sync(&app, &id).await;
    app.bridge.reactivate(c);
    sync(&app, &id).await;
    app.bridge.suspend(c);
    sync(&app, &id).await;

    let r = ok_json(&app, &["report", "seats", &id, "--json"]).await;
    let active = active0 - 3;
    assert_eq!(r["active_members"], active);
    assert_eq!(r["suspended_members"], suspended0 + 2);
    assert_eq!(r["removed_last_30_days"], 1);
    let unused = (10 - active).max(0);
    assert_eq!(r["unused_seats"], unused);
    assert_eq!(
        r["unused_seat_cost"],
        format!("{}.{:02}", unused * 499 / 100, unused * 499 % 100)
    );
    assert_eq!(r["over_allocated"], active > 10);
    // The view's rebuild of the active count from events agrees with the directory.
    let rebuilt = app
        .count(&format!(
            "SELECT coalesce(sum(active_delta), 0)::bigint FROM member_timeline WHERE integration_id = '{id}'"
        ))
        .await;
    assert_eq!(rebuilt, active);

    let rec = ok_json(&app, &["report", "reclaim", &id, "--json"]).await;
    let findings = rec["findings"].as_array().unwrap();
    assert_eq!(findings.len() as i64, suspended0 + 3, "{rec}");
    let by_id: HashMap<&str, &Value> = findings
        .iter()
        .map(|f| (f["scim_id"].as_str().unwrap(), f))
        .collect();
    assert_eq!(by_id[a.as_str()]["reason"], "suspended");
    assert_eq!(types(&by_id[a.as_str()]["evidence"]), ["user.deactivated"]);
    assert_eq!(by_id[b.as_str()]["reason"], "removed");
    assert_eq!(types(&by_id[b.as_str()]["evidence"]), ["user.removed"]);
    assert_eq!(by_id[c.as_str()]["reason"], "resuspended");
    assert_eq!(
        types(&by_id[c.as_str()]["evidence"]),
        ["user.deactivated", "user.reactivated", "user.deactivated"]
    );
    assert_eq!(findings[0]["scim_id"], c.as_str(), "flip-flops come first");
    for u in users.iter().filter(|u| !u.active) {
        assert_eq!(by_id[u.id.as_str()]["reason"], "suspended");
        assert_eq!(types(&by_id[u.id.as_str()]["evidence"]), ["user.added"]);
    }
    // Every piece of evidence is a stored event of that type.
    for f in findings {
        for e in f["evidence"].as_array().unwrap() {
            let n = app
                .count(&format!(
                    "SELECT count(*) FROM events WHERE event_id = '{}' AND type = '{}'",
                    e["event_id"].as_str().unwrap(),
                    e["type"].as_str().unwrap()
                ))
                .await;
            assert_eq!(n, 1, "{e}");
        }
    }

    let t = ok_json(&app, &["report", "trend", &id, "--weeks", "2", "--json"]).await;
    let weeks = t["weeks"].as_array().unwrap();
    assert_eq!(weeks.len(), 2);
    assert_eq!(weeks[0]["active_at_end"], 0);
    assert_eq!(weeks[0]["added"], 0);
    let now = &weeks[1];
    assert_eq!(now["added"], 20);
    assert_eq!(now["deactivated"], 3);
    assert_eq!(now["reactivated"], 1);
    assert_eq!(now["removed"], 1);
    assert_eq!(now["active_at_end"], active);

    let s = ok_json(&app, &["users", &id, "--state", "suspended", "--json"]).await;
    let suspended: Vec<&str> = s
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["scim_id"].as_str().unwrap())
        .collect();
    assert_eq!(suspended.len() as i64, suspended0 + 2);
    assert!(suspended.contains(&a.as_str()) && suspended.contains(&c.as_str()));
    let removed = ok_json(&app, &["users", &id, "--state", "removed", "--json"]).await;
    assert_eq!(removed.as_array().unwrap().len(), 1);
    assert_eq!(removed[0]["scim_id"], b.as_str());
    assert!(removed[0]["removed_at"].is_string());
    let email = users.iter().find(|u| &u.id == a).unwrap().email.clone();
    let needle = email.split('@').next().unwrap().to_uppercase();
    let found = ok_json(&app, &["users", &id, "--search", &needle, "--json"]).await;
    assert!(
        found
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["scim_id"] == a.as_str()),
        "search is case-insensitive: {found}"
    );
    let none = ok_json(&app, &["users", &id, "--search", "%", "--json"]).await;
    assert_eq!(none, json!([]), "% is searched literally");
    let all = csv_rows(&app, &["users", &id, "--csv"]).await;
    assert_eq!(all.len(), 20);
    assert_eq!(all.iter().filter(|m| m["state"] == "removed").count(), 1);

    let tl = ok_json(&app, &["user", &id, c, "--json"]).await;
    assert_eq!(tl["member"]["state"], "suspended");
    assert_eq!(
        types(&tl["timeline"]),
        [
            "user.added",
            "user.deactivated",
            "user.reactivated",
            "user.deactivated"
        ]
    );
    assert_eq!(tl["timeline"][1]["changed_fields"], json!(["active"]));
    let (code, v, _) = run(&app, &["user", &id, "no-such-member", "--json"]).await;
    assert_eq!(code, 12);
    assert_eq!(v["error"]["kind"], "member_not_found");

    let rows = csv_rows(&app, &["report", "seats", "--csv"]).await;
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["integration"], id);
    assert_eq!(rows[0]["active"], active.to_string());
    assert_eq!(rows[0]["freshness"], "current");

    // A failed sync leaves the figures as of the last success, and the report says so.
    let as_of = r["data_as_of"].clone();
    assert!(as_of.is_string());
    app.bridge.regenerate_token();
    let (code, _, _) = run(&app, &["sync", &id, "--json"]).await;
    assert_eq!(code, 4, "the old token is refused");
    let r = ok_json(&app, &["report", "seats", &id, "--json"]).await;
    assert_eq!(r["freshness"]["state"], "stale");
    assert_eq!(r["data_as_of"], as_of);
    assert_eq!(r["active_members"], active);
    let note = r["freshness"]["note"].as_str().unwrap();
    assert!(
        note.contains("last successful sync") && note.contains("failed (auth_rejected)"),
        "{note}"
    );
    let (code, _, text) = run(&app, &["report", "seats", &id]).await;
    assert_eq!(code, 0);
    assert!(text.contains("failed (auth_rejected)"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_never_synced_integration_and_a_single_member_directory() {
    let app = spawn_app(1).await;
    let id = app.add_integration("Tiny").await.to_string();
    let r = ok_json(&app, &["report", "seats", &id, "--json"]).await;
    assert_eq!(r["freshness"]["state"], "never_synced");
    assert_eq!(r["active_members"], 0);
    assert_eq!(r["data_as_of"], Value::Null);
    assert_eq!(
        r["utilization_pct"],
        Value::Null,
        "no seats, no utilization"
    );
    assert_eq!(r["days_to_renewal"], Value::Null);
    let rec = ok_json(&app, &["report", "reclaim", &id, "--json"]).await;
    assert_eq!(rec["findings"], json!([]));
    assert_eq!(rec["freshness"]["state"], "never_synced");
    let t = ok_json(&app, &["report", "trend", &id, "--json"]).await;
    assert_eq!(t["weeks"].as_array().unwrap().len(), 12);
    assert!(
        t["weeks"]
            .as_array()
            .unwrap()
            .iter()
            .all(|w| w["active_at_end"] == 0)
    );
    assert_eq!(ok_json(&app, &["users", &id, "--json"]).await, json!([]));
    let (code, _, text) = run(&app, &["report", "seats"]).await;
    assert_eq!(code, 0);
    assert!(text.contains("never synced"), "{text}");
    let (code, v, _) = run(
        &app,
        &["report", "seats", &Uuid::new_v4().to_string(), "--json"],
    )
    .await;
    assert_eq!(code, 12);
    assert_eq!(v["error"]["kind"], "integration_not_found");

    sync(&app, &id).await;
    let active = app.bridge.users().iter().filter(|u| u.active).count() as i64;
    let (code, _, out) = run(&app, &["integration", "set-plan", &id, "--seats", "1"]).await;
    assert_eq!(code, 0, "{out}");
    let r = ok_json(&app, &["report", "seats", &id, "--json"]).await;
    assert_eq!(r["active_members"], active);
    assert_eq!(r["utilization_pct"], (active * 100) as f64);
    assert_eq!(r["unused_seats"], 1 - active);
    let html = app.dir.path().join("tiny.html");
    let (code, _, out) = run(
        &app,
        &["report", "seats", &id, "--html", html.to_str().unwrap()],
    )
    .await;
    assert_eq!(code, 0, "{out}");
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(page.contains(r#"id="active-line" points=""#));
    assert!(page.contains(&format!(r#"data-values="{active}""#)));

    // Bad plan input is refused before anything is written.
    for bad in [
        vec!["--price-per-seat", "7,99", "--currency", "EUR"],
        vec!["--price-per-seat", "7.99"],
        vec!["--currency", "EURO", "--price-per-seat", "1"],
        vec!["--billing", "weekly"],
        vec!["--renewal", "next year"],
        vec![],
    ] {
        let mut args = vec!["integration", "set-plan", &id];
        args.extend(bad.iter().copied());
        let (code, _, out) = run(&app, &args).await;
        assert_eq!(code, 2, "{bad:?}: {out}");
    }
}

// ---------------------------------------------------------------------------------------------
// Known histories, written straight into the read model as the worker would have written them.

struct History {
    integration: Uuid,
    sync_id: Uuid,
    client: tokio_postgres::Client,
}

impl History {
    async fn event(
        &self,
        at: DateTime<Utc>,
        ty: &str,
        scim_id: &str,
        active: bool,
        changed: &[&str],
    ) {
        let event_id = Uuid::new_v4();
        let payload = json!({
            "event_id": event_id, "type": ty, "integration_id": self.integration,
            "sync_id": self.sync_id, "occurred_at": opsync_shared::events::rfc3339(at),
            "user": {"id": scim_id, "user_name": format!("{scim_id}@example.com"),
                     "email": format!("{scim_id}@example.com"), "display_name": scim_id,
                     "given_name": null, "family_name": null, "active": active},
            "previous": null, "changed_fields": changed,
        });
        self.client
            .execute(
                "INSERT INTO events (event_id, integration_id, sync_id, type, scim_id, occurred_at, payload) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
                &[&event_id, &self.integration, &self.sync_id, &ty, &scim_id, &at, &payload],
            )
            .await
            .unwrap();
    }

    async fn member(
        &self,
        scim_id: &str,
        active: bool,
        first: DateTime<Utc>,
        removed: Option<DateTime<Utc>>,
    ) {
        self.client
            .execute(
                "INSERT INTO directory_users (integration_id, scim_id, user_name, email, display_name, active, first_seen_at, last_changed_at, removed_at) \
                 VALUES ($1, $2, $3, $3, $2, $4, $5, $5, $6)",
                &[&self.integration, &scim_id, &format!("{scim_id}@example.com"), &active, &first, &removed],
            )
            .await
            .unwrap();
    }
}

fn noon(d: NaiveDate) -> DateTime<Utc> {
    d.and_hms_opt(12, 0, 0).unwrap().and_utc()
}

fn chromium() -> String {
    let bin = std::env::var("CHROMIUM").unwrap_or_else(|_| "chromium".into());
    let found = std::process::Command::new(&bin)
        .arg("--version")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    assert!(
        found,
        "headless Chromium is needed for this test: install Debian's `chromium` package (.ci/run does) or set CHROMIUM"
    );
    bin
}

async fn headless(
    bin: &str,
    profile: &std::path::Path,
    args: &[&str],
    page: &std::path::Path,
) -> String {
    let out = tokio::process::Command::new(bin)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            "--force-device-scale-factor=1",
            "--window-size=1000,1300",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .arg(format!("file://{}", page.display()))
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The `data-value` of the element with this id in a serialised DOM.
fn data_value<'a>(dom: &'a str, id: &str, attr: &str) -> &'a str {
    let at = dom
        .find(&format!(r#"id="{id}""#))
        .unwrap_or_else(|| panic!("no element {id} in the rendered page"));
    let rest = &dom[at..];
    let tag_end = rest.find('>').unwrap();
    let tag = &rest[..tag_end];
    let key = format!(r#"{attr}=""#);
    let start = tag
        .find(&key)
        .unwrap_or_else(|| panic!("{id} has no {attr}"))
        + key.len();
    &tag[start..start + tag[start..].find('"').unwrap()]
}

/// Pixels within a small distance of `rgb` in a PNG screenshot.
fn pixels_of(png_bytes: &[u8], rgb: (u8, u8, u8)) -> usize {
    let decoder = png::Decoder::new(std::io::Cursor::new(png_bytes));
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    let channels = info.color_type.samples();
    buf[..info.buffer_size()]
        .chunks(channels)
        .filter(|p| {
            let d = |a: u8, b: u8| (i32::from(a) - i32::from(b)).abs();
            d(p[0], rgb.0) + d(p[1], rgb.1) + d(p[2], rgb.2) < 24
        })
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_known_history_gives_known_figures_and_a_page_chromium_draws() {
    let app = spawn_app(0).await;
    let integration = app.add_integration("1Password Production").await;
    let id = integration.to_string();
    let now = Utc::now();
    let w0 = week_start(now.date_naive());
    let week = |k: i64| w0 - Duration::weeks(k);
    let this_week = (now - Duration::seconds(1)).max(noon(w0) - Duration::hours(12));
    let h = History {
        integration,
        sync_id: Uuid::new_v4(),
        client: app.db.client().await,
    };
    // Five weeks ago: u1..u6 and u9 added active, u7 added suspended.
    for u in ["u1", "u2", "u3", "u4", "u5", "u6", "u9"] {
        h.event(noon(week(5)), "user.added", u, true, &[]).await;
    }
    h.event(noon(week(5)), "user.added", "u7", false, &[]).await;
    // u2 suspended, reactivated, suspended again; u3 suspended.
    h.event(noon(week(4)), "user.deactivated", "u2", false, &["active"])
        .await;
    h.event(noon(week(3)), "user.reactivated", "u2", true, &["active"])
        .await;
    h.event(noon(week(3)), "user.deactivated", "u3", false, &["active"])
        .await;
    h.event(noon(week(2)), "user.deactivated", "u2", false, &["active"])
        .await;
    // u4 removed, then back a week later; u8 joins.
    h.event(noon(week(2)), "user.removed", "u4", true, &[])
        .await;
    h.event(noon(week(1)), "user.added", "u4", true, &[]).await;
    h.event(noon(week(1)), "user.added", "u8", true, &[]).await;
    // This week: a rename (no seat change) and u9 removed.
    h.event(this_week, "user.updated", "u5", true, &["display_name"])
        .await;
    h.event(this_week, "user.removed", "u9", true, &[]).await;
    for (u, active) in [
        ("u1", true),
        ("u2", false),
        ("u3", false),
        ("u4", true),
        ("u5", true),
        ("u6", true),
        ("u7", false),
    ] {
        h.member(u, active, noon(week(5)), None).await;
    }
    h.member("u8", true, noon(week(1)), None).await;
    h.member("u9", true, noon(week(5)), Some(this_week)).await;
    // The plan: 5 seats bought six weeks ago, 8 since the middle of the week two weeks ago.
    let renewal = (now.date_naive() + Duration::days(20)).to_string();
    let (code, _, out) = run(
        &app,
        &[
            "integration",
            "set-plan",
            &id,
            "--seats",
            "8",
            "--price-per-seat",
            "7.99",
            "--currency",
            "EUR",
            "--billing",
            "monthly",
            "--renewal",
            &renewal,
        ],
    )
    .await;
    assert_eq!(code, 0, "{out}");
    h.client
        .batch_execute(&format!(
            "DELETE FROM seat_plan_history WHERE integration_id = '{id}'"
        ))
        .await
        .unwrap();
    for (at, seats) in [
        (week(6).and_hms_opt(9, 0, 0).unwrap().and_utc(), 5),
        (
            (week(2) + Duration::days(3))
                .and_hms_opt(9, 0, 0)
                .unwrap()
                .and_utc(),
            8,
        ),
    ] {
        h.client
            .execute(
                "INSERT INTO seat_plan_history (integration_id, changed_at, purchased_seats) VALUES ($1, $2, $3)",
                &[&integration, &at, &seats],
            )
            .await
            .unwrap();
    }
    h.client
        .execute(
            "UPDATE integrations SET last_sync_at = $2, last_success_at = $2, last_sync_outcome = 'succeeded' WHERE id = $1",
            &[&integration, &now],
        )
        .await
        .unwrap();

    let t = ok_json(&app, &["report", "trend", &id, "--weeks", "6", "--json"]).await;
    let col = |k: &str| -> Vec<i64> {
        t["weeks"]
            .as_array()
            .unwrap()
            .iter()
            .map(|w| w[k].as_i64().unwrap())
            .collect()
    };
    assert_eq!(col("added"), [8, 0, 0, 0, 2, 0]);
    assert_eq!(col("deactivated"), [0, 1, 1, 1, 0, 0]);
    assert_eq!(col("reactivated"), [0, 0, 1, 0, 0, 0]);
    assert_eq!(col("removed"), [0, 0, 0, 1, 0, 1]);
    assert_eq!(col("active_at_end"), [7, 6, 6, 4, 6, 5]);
    assert_eq!(t["weeks"][0]["week_start"], week(5).to_string());

    let r = ok_json(&app, &["report", "seats", &id, "--json"]).await;
    assert_eq!(r["active_members"], 5);
    assert_eq!(r["suspended_members"], 3);
    assert_eq!(r["removed_last_30_days"], 1);
    assert_eq!(r["purchased_seats"], 8);
    assert_eq!(r["utilization_pct"], 62.5);
    assert_eq!(r["unused_seats"], 3);
    assert_eq!(r["unused_seat_cost"], "23.97");
    assert_eq!(r["over_allocated"], false);
    assert_eq!(r["days_to_renewal"], 20);
    assert_eq!(r["freshness"]["state"], "current");
    assert!(r["projected_active_at_renewal"].is_i64());

    let rec = ok_json(&app, &["report", "reclaim", &id, "--json"]).await;
    let got: Vec<(&str, &str)> = rec["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["scim_id"].as_str().unwrap(),
                f["reason"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            ("u2", "resuspended"),
            ("u7", "suspended"),
            ("u3", "suspended"),
            ("u9", "removed")
        ]
    );
    let flip = &rec["findings"][0];
    assert_eq!(
        flip["since"].as_str().unwrap(),
        opsync_shared::events::rfc3339(noon(week(2))).replace(".000Z", "Z")
    );
    assert_eq!(flip["days"], (now - noon(week(2))).num_days());

    // Seats over time in SQL: the plan history as written.
    let seats_then = app
        .count(&format!(
            "SELECT purchased_seats::bigint FROM seat_plan_history WHERE integration_id = '{id}' \
             AND changed_at <= '{}' ORDER BY changed_at DESC LIMIT 1",
            noon(week(3))
        ))
        .await;
    assert_eq!(seats_then, 5);

    // The page, rendered by a real browser.
    let bin = chromium();
    let page = app.dir.path().join("seats.html");
    let json_report = ok_json(
        &app,
        &[
            "report",
            "seats",
            &id,
            "--json",
            "--html",
            page.to_str().unwrap(),
        ],
    )
    .await;
    assert_eq!(json_report["active_members"], 5);
    let profile = tempfile::tempdir().unwrap();
    let dom = headless(&bin, profile.path(), &["--dump-dom"], &page).await;
    assert!(
        dom.contains(r#"<svg id="seat-chart""#),
        "no chart in the DOM"
    );
    assert_eq!(
        data_value(&dom, "active-line", "data-values"),
        "7,6,6,4,6,5"
    );
    assert_eq!(data_value(&dom, "seats-line", "data-values"), "5,5,5,8,8,8");
    for key in [
        "purchased_seats",
        "active_members",
        "suspended_members",
        "removed_last_30_days",
        "utilization_pct",
        "unused_seats",
        "unused_seat_cost",
        "over_allocated",
        "next_renewal",
        "days_to_renewal",
        "projected_active_at_renewal",
    ] {
        let shown = data_value(&dom, key, "data-value");
        let want = &json_report[key];
        let same = match want {
            Value::Number(n) => shown.parse::<f64>().ok() == n.as_f64(),
            Value::String(s) => shown == s,
            Value::Bool(b) => shown == b.to_string(),
            Value::Null => shown.is_empty(),
            _ => false,
        };
        assert!(same, "{key}: page says {shown:?}, JSON says {want}");
    }
    assert_eq!(data_value(&dom, "freshness", "data-value"), "current");
    let shot = profile.path().join("shot.png");
    headless(
        &bin,
        profile.path(),
        &[&format!("--screenshot={}", shot.display())],
        &page,
    )
    .await;
    let png = std::fs::read(&shot).expect("chromium wrote the screenshot");
    // To look at it: OPSYNC_KEEP_SCREENSHOT=/tmp/seats.png cargo test --test reports
    if let Ok(keep) = std::env::var("OPSYNC_KEEP_SCREENSHOT") {
        std::fs::write(&keep, &png).expect("write the kept screenshot");
    }
    let blue = pixels_of(&png, (0x25, 0x63, 0xeb));
    let red = pixels_of(&png, (0xdc, 0x26, 0x26));
    eprintln!("screenshot: {blue} active-line pixels, {red} seat-line pixels");
    // The active line crosses ~680 px at 3 px wide; the dashed seat line about two thirds of it.
    assert!(blue > 1000, "active-members line not drawn: {blue} pixels");
    assert!(red > 600, "purchased-seats line not drawn: {red} pixels");
}

/// Reports and `integration remove` select one integration's events: through an index, not a
/// read of every customer's history (the planner is told to avoid a sequential scan where it
/// can, since on a test-sized table it would rightly prefer one).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_integrations_events_are_found_through_an_index() {
    let app = spawn_app(0).await;
    let client = app.db.client().await;
    client
        .batch_execute("SET enable_seqscan = off")
        .await
        .unwrap();
    let id = Uuid::new_v4();
    for sql in [
        format!(
            "SELECT type, count(*) FROM member_timeline WHERE integration_id = '{id}' GROUP BY type"
        ),
        format!("DELETE FROM events WHERE integration_id = '{id}'"),
    ] {
        let plan: Vec<String> = client
            .query(&format!("EXPLAIN {sql}"), &[])
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        let plan = plan.join("\n");
        assert!(plan.contains("events_integration"), "{sql}:\n{plan}");
    }
}
