//! One module per command family. Each returns the process exit code.

pub mod admin;
pub mod dlq;
pub mod enqueue;
pub mod integration;
pub mod report;
pub mod sync;
pub mod worker;

use crate::cli::{BridgeArgs, DbArgs, KeyArgs, TokenSource};
use crate::{exit, output};
use opsync_shared::crypto::Keyring;
use opsync_shared::store::{self, StoreError};

/// A database pool for a CLI command, with the schema checked.
pub async fn db(args: &DbArgs, json: bool, size: usize) -> Result<deadpool_postgres::Pool, u8> {
    let pool = store::pool(&args.database_url, size).map_err(|e| store_error(json, &e))?;
    store::require_current_schema(&pool)
        .await
        .map_err(|e| store_error(json, &e))?;
    Ok(pool)
}

/// Runs `f` on one database connection (schema checked): what a one-shot command needs. A
/// failure is printed the usual way and comes back as the exit code.
pub async fn with_conn<T>(
    args: &DbArgs,
    json: bool,
    f: impl AsyncFnOnce(&mut deadpool_postgres::Client) -> Result<T, StoreError>,
) -> Result<T, u8> {
    let pool = db(args, json, 1).await?;
    let result = async {
        let mut conn = pool.get().await?;
        f(&mut conn).await
    }
    .await;
    result.map_err(|e| store_error(json, &e))
}

pub fn store_error(json: bool, e: &StoreError) -> u8 {
    output::error(
        json,
        e.kind(),
        if e.is_transient() {
            "transient"
        } else {
            "permanent"
        },
        &e.to_string(),
    );
    exit::for_kind(e.kind())
}

pub fn keyring(args: &KeyArgs, json: bool) -> Result<Keyring, u8> {
    Keyring::new(&args.current, args.previous.as_deref()).map_err(|e| {
        output::error(json, "token_key", "permanent", &e.to_string());
        exit::BAD_INPUT
    })
}

/// The bearer token from where the operator pointed us.
pub fn token(src: &TokenSource, json: bool) -> Result<opsync_shared::BearerToken, u8> {
    src.read().map_err(|e| {
        output::error(json, "token_source", "permanent", &e.to_string());
        exit::BAD_INPUT
    })
}

/// The SCIM client settings from the flags (reads the extra CA file, if any).
pub fn client_config(
    args: &BridgeArgs,
    json: bool,
) -> Result<opsync_shared::scim::ClientConfig, u8> {
    args.client_config().map_err(|e| {
        output::error(
            json,
            "ca_file",
            "permanent",
            &format!("cannot read the CA file: {e}; check --ca-file"),
        );
        exit::BAD_INPUT
    })
}
