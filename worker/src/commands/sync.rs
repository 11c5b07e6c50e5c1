//! `opsync sync ID`: one sync in this process, with a progress bar on a terminal.

use crate::cli::SyncArgs;
use crate::{exit, output};
use opsync_shared::job::{SyncJob, Trigger};
use opsync_shared::sync::{self, JobOutcome, SyncDeps};
use opsync_shared::{broker, outbox};
use std::io::IsTerminal;

pub async fn run(a: SyncArgs) -> u8 {
    let keyring = match super::keyring(&a.key, a.json) {
        Ok(k) => k,
        Err(code) => return code,
    };
    let client = match super::client_config(&a.bridge, a.json) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let pool = match super::db(&a.db, a.json, 2).await {
        Ok(p) => p,
        Err(code) => return code,
    };
    let bar = (!a.json && std::io::stderr().is_terminal()).then(|| {
        let b = indicatif::ProgressBar::new(0);
        b.set_style(
            indicatif::ProgressStyle::with_template(
                "{spinner} reading users {pos}/{len} {wide_bar} {elapsed}",
            )
            .expect("valid template"),
        );
        b
    });
    let job = SyncJob::new(a.id, Trigger::Manual);
    let deps = SyncDeps {
        pool: &pool,
        keyring: &keyring,
        client: &client,
        removals: a.removals.policy(),
        metrics: None,
    };
    let result = sync::run_job(&deps, &job, |seen, total| {
        if let Some(b) = &bar {
            if let Some(t) = total {
                b.set_length(t);
            }
            b.set_position(seen);
        }
    })
    .await;
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    let summary = match result {
        Ok(JobOutcome::Completed(s)) => s,
        Ok(JobOutcome::AlreadyDone) => unreachable!("a fresh job id cannot have succeeded before"),
        Err(e) => {
            output::error(a.json, e.kind(), e.class().as_str(), &e.to_string());
            return exit::for_sync(&e);
        }
    };
    let mut published = None;
    if a.publish {
        let result = async {
            let conn = broker::connect(&a.amqp.amqp_url).await?;
            let ch = broker::confirm_channel(&conn).await?;
            broker::declare_topology(&ch, &[]).await?;
            let n = outbox::publish_pending(&pool, &ch, None).await?;
            let _ = conn.close(200, "published".into()).await;
            Ok::<_, opsync_shared::sync::SyncError>(n)
        }
        .await;
        match result {
            Ok(n) => published = Some(n),
            Err(e) => {
                output::error(
                    a.json,
                    e.kind(),
                    e.class().as_str(),
                    &format!("the sync committed, but publishing failed: {e}"),
                );
                return exit::for_sync(&e);
            }
        }
    }
    if a.json {
        println!(
            "{}",
            serde_json::json!({"ok": true, "summary": summary, "published": published})
        );
    } else {
        let c = &summary.counts;
        println!("sync {} of {}", summary.sync_id, summary.integration_id);
        println!(
            "users       {} ({} active, {} suspended)",
            c.users, c.active, c.suspended
        );
        println!(
            "changes     {} added, {} updated, {} deactivated, {} reactivated, {} removed",
            c.added, c.updated, c.deactivated, c.reactivated, c.removed
        );
        if c.removals_held > 0 {
            println!(
                "held        {} absent member(s) not removed: the snapshot was not consistent",
                c.removals_held
            );
        }
        println!(
            "events      {} written{}",
            summary.events,
            published
                .map(|n| format!(", {n} published"))
                .unwrap_or_default()
        );
        println!(
            "took        {:.2} s ({} bridge requests)",
            summary.elapsed_ms as f64 / 1000.0,
            summary.bridge_requests
        );
    }
    exit::OK
}
