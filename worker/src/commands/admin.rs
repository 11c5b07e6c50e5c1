//! `opsync migrate`, `opsync setup`, `opsync keygen`.

use crate::cli::{DbArgs, SetupArgs};
use crate::{exit, output};
use opsync_shared::{broker, crypto, store};

pub async fn migrate(args: DbArgs) -> u8 {
    let pool = match store::pool(&args.database_url, 1) {
        Ok(p) => p,
        Err(e) => return super::store_error(false, &e),
    };
    match store::migrate(&pool).await {
        Ok(applied) if applied.is_empty() => {
            println!(
                "schema is current (version {})",
                store::latest_schema_version()
            );
            exit::OK
        }
        Ok(applied) => {
            for m in applied {
                println!("applied {m}");
            }
            exit::OK
        }
        Err(e) => super::store_error(false, &e),
    }
}

pub async fn setup(args: SetupArgs) -> u8 {
    let result = async {
        let conn = broker::connect(&args.amqp.amqp_url).await?;
        let ch = conn
            .create_channel()
            .await
            .map_err(broker::BrokerError::from)?;
        broker::declare_topology(&ch, &args.retry.retry_delays).await?;
        let _ = conn.close(200, "setup done".into()).await;
        Ok::<_, broker::BrokerError>(())
    }
    .await;
    match result {
        Ok(()) => {
            println!(
                "declared {}, {}, {}, {} and {}",
                broker::JOBS_EXCHANGE,
                broker::JOBS_QUEUE,
                broker::EVENTS_EXCHANGE,
                broker::DEAD_EXCHANGE,
                broker::DEAD_QUEUE
            );
            exit::OK
        }
        Err(e) => {
            output::error(false, e.kind(), "transient", &e.to_string());
            exit::BROKER
        }
    }
}

pub fn keygen() -> u8 {
    println!("{}", crypto::generate_key());
    exit::OK
}
