//! `opsync enqueue`: put sync jobs on `opsync.jobs`, each confirmed by the broker.

use crate::cli::EnqueueArgs;
use crate::{exit, output};
use opsync_shared::broker;
use opsync_shared::job::{SyncJob, Trigger};
use opsync_shared::store;
use serde_json::json;

pub async fn run(a: EnqueueArgs) -> u8 {
    use tracing::Instrument;
    // The jobs carry this span's trace context: a trace starts here and runs through the
    // jobs to the events they publish.
    let span = tracing::info_span!("enqueue", trigger = a.trigger.as_str());
    run_inner(a).instrument(span).await
}

async fn run_inner(a: EnqueueArgs) -> u8 {
    let ids = {
        let result = super::with_conn(&a.db, a.json, async |conn| {
            if a.due {
                store::due_integrations(conn, a.interval.expect("clap requires it")).await
            } else if a.all {
                Ok(store::list_integrations(conn)
                    .await?
                    .into_iter()
                    .filter(|i| i.status == "active")
                    .map(|i| i.id)
                    .collect())
            } else {
                // Named ids must exist: a typo should fail here, not as a dead-lettered job.
                for id in &a.ids {
                    store::get_integration(conn, *id).await?;
                }
                Ok(a.ids.clone())
            }
        })
        .await;
        match result {
            Ok(ids) => ids,
            Err(code) => return code,
        }
    };
    let trigger = match a.trigger.as_str() {
        "scheduled" => Trigger::Scheduled,
        "initial" => Trigger::Initial,
        "replay" => Trigger::Replay,
        _ => Trigger::Manual,
    };
    let result = async {
        let conn = broker::connect(&a.amqp.amqp_url).await?;
        let ch = broker::confirm_channel(&conn).await?;
        let mut jobs = Vec::with_capacity(ids.len());
        for id in &ids {
            let job = SyncJob::new(*id, trigger);
            broker::publish_job(&ch, &job).await?;
            jobs.push(job);
        }
        let _ = conn.close(200, "enqueued".into()).await;
        Ok::<_, broker::BrokerError>(jobs)
    }
    .await;
    match result {
        Ok(jobs) => {
            if a.json {
                println!("{}", json!({"ok": true, "jobs": jobs}));
            } else {
                for j in &jobs {
                    println!("{} {}", j.job_id, j.integration_id);
                }
                eprintln!("{} job(s) enqueued", jobs.len());
            }
            exit::OK
        }
        Err(e) => {
            output::error(a.json, e.kind(), "transient", &e.to_string());
            exit::BROKER
        }
    }
}
