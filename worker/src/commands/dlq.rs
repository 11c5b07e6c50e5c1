//! `opsync dlq list` and `opsync dlq replay`.

use crate::cli::{DlqCommand, DlqListArgs, DlqReplayArgs};
use crate::{exit, output};
use opsync_shared::broker;
use opsync_shared::dlq::{self, DeadJob, Selection};
use serde_json::json;

pub async fn run(cmd: DlqCommand) -> u8 {
    match cmd {
        DlqCommand::List(a) => list(a).await,
        DlqCommand::Replay(a) => replay(a).await,
    }
}

fn age(secs: Option<i64>) -> String {
    match secs {
        None => "-".into(),
        Some(s) if s < 120 => format!("{s}s"),
        Some(s) if s < 7200 => format!("{}m", s / 60),
        Some(s) if s < 172_800 => format!("{}h", s / 3600),
        Some(s) => format!("{}d", s / 86_400),
    }
}

fn print(jobs: &[DeadJob]) {
    let rows: Vec<Vec<String>> = jobs
        .iter()
        .map(|d| {
            vec![
                output::opt(&d.job_id),
                output::opt(&d.integration_id),
                d.error_kind.clone(),
                d.attempts.to_string(),
                age(d.age_seconds),
                d.reason.clone(),
            ]
        })
        .collect();
    output::table(
        &["JOB", "INTEGRATION", "KIND", "ATTEMPTS", "AGE", "REASON"],
        &rows,
    );
}

async fn channels(
    url: &str,
) -> Result<(lapin::Connection, lapin::Channel, lapin::Channel), broker::BrokerError> {
    let conn = broker::connect(url).await?;
    let ch = conn.create_channel().await?;
    broker::declare_topology(&ch, &[]).await?;
    let publish = broker::confirm_channel(&conn).await?;
    Ok((conn, ch, publish))
}

async fn list(a: DlqListArgs) -> u8 {
    let result = async {
        let (conn, ch, _) = channels(&a.amqp.amqp_url).await?;
        let jobs = dlq::list(&ch).await?;
        let _ = conn.close(200, "listed".into()).await;
        Ok::<_, broker::BrokerError>(jobs)
    }
    .await;
    match result {
        Ok(jobs) => {
            if a.json {
                println!("{}", serde_json::to_value(&jobs).expect("serialisable"));
            } else if jobs.is_empty() {
                println!("the dead-letter queue is empty");
            } else {
                print(&jobs);
            }
            exit::OK
        }
        Err(e) => {
            output::error(a.json, e.kind(), "transient", &e.to_string());
            exit::BROKER
        }
    }
}

async fn replay(a: DlqReplayArgs) -> u8 {
    let sel = Selection {
        job_ids: a.job.clone(),
        integration: a.integration,
        kind: a.kind.clone(),
        all: a.all,
    };
    let result = async {
        let (conn, ch, publish) = channels(&a.amqp.amqp_url).await?;
        let jobs = dlq::replay(&ch, &publish, &sel, a.dry_run).await?;
        let _ = conn.close(200, "replayed".into()).await;
        Ok::<_, broker::BrokerError>(jobs)
    }
    .await;
    match result {
        Ok(jobs) => {
            if a.json {
                println!(
                    "{}",
                    json!({"ok": true, "dry_run": a.dry_run, "replayed": jobs})
                );
            } else {
                print(&jobs);
                let verb = if a.dry_run {
                    "would be replayed"
                } else {
                    "replayed"
                };
                eprintln!("{} job(s) {verb}", jobs.len());
            }
            exit::OK
        }
        Err(e) => {
            output::error(a.json, e.kind(), "transient", &e.to_string());
            exit::BROKER
        }
    }
}
