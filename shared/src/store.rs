//! The Postgres edge: integrations, the directory, sync runs and the event outbox.
//!
//! Writes are batched: one statement per table per sync, with array parameters (`unnest`),
//! never a round trip per user. A sync's state, run row and events go in one transaction, so
//! a crash at any point leaves either all of it or none of it.

use crate::crypto::Sealed;
use crate::directory::{Change, ChangeKind, StoredUser};
use crate::error::one_line;
use crate::scim::ScimUser;
use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use serde::Serialize;
use tokio_postgres::NoTls;
use tokio_postgres::types::ToSql;
use uuid::Uuid;

mod embedded {
    refinery::embed_migrations!("../schemas/sql");
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    #[error(
        "the database failed ({detail}); it is retried, check that Postgres is up if this persists"
    )]
    Database { detail: String },
    #[error(
        "cannot connect to the database ({detail}); check DATABASE_URL and that Postgres is running"
    )]
    Connect { detail: String },
    #[error(
        "the database schema is at version {current}, this opsync needs {latest}; run `opsync migrate` first"
    )]
    SchemaOutdated { current: i32, latest: i32 },
    #[error("no integration {id}; list them with `opsync integration list`")]
    IntegrationNotFound { id: Uuid },
    #[error(
        "integration {integration_id} has no member with SCIM id {scim_id}; find it with `opsync users {integration_id} --search TEXT`"
    )]
    MemberNotFound {
        integration_id: Uuid,
        scim_id: String,
    },
    #[error(
        "migration failed ({detail}); fix the database state it names and run `opsync migrate` again"
    )]
    Migration { detail: String },
}

impl StoreError {
    pub fn kind(&self) -> &'static str {
        match self {
            StoreError::Database { .. } => "database_error",
            StoreError::Connect { .. } => "database_unavailable",
            StoreError::SchemaOutdated { .. } => "schema_outdated",
            StoreError::IntegrationNotFound { .. } => "integration_not_found",
            StoreError::MemberNotFound { .. } => "member_not_found",
            StoreError::Migration { .. } => "migration_failed",
        }
    }

    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            StoreError::Database { .. } | StoreError::Connect { .. }
        )
    }
}

impl From<tokio_postgres::Error> for StoreError {
    fn from(e: tokio_postgres::Error) -> Self {
        // No server error at all: the connection broke or could not be made.
        if e.as_db_error().is_none()
            && (e.is_closed()
                || std::error::Error::source(&e).is_some_and(|s| s.is::<std::io::Error>()))
        {
            return StoreError::Connect {
                detail: one_line(&e.to_string(), 300),
            };
        }
        // The Display of a db error is terse; its `DbError` carries the message worth logging.
        let detail = match e.as_db_error() {
            Some(db) => format!("{}: {}", db.code().code(), db.message()),
            None => e.to_string(),
        };
        StoreError::Database {
            detail: one_line(&detail, 300),
        }
    }
}

impl From<deadpool_postgres::PoolError> for StoreError {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        StoreError::Connect {
            detail: one_line(&e.to_string(), 300),
        }
    }
}

pub fn pool(database_url: &str, max_size: usize) -> Result<Pool, StoreError> {
    let cfg: tokio_postgres::Config =
        database_url
            .parse()
            .map_err(|e: tokio_postgres::Error| StoreError::Connect {
                detail: one_line(&e.to_string(), 200),
            })?;
    let mgr = Manager::from_config(
        cfg,
        NoTls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    Pool::builder(mgr)
        .max_size(max_size)
        .wait_timeout(Some(std::time::Duration::from_secs(30)))
        .create_timeout(Some(std::time::Duration::from_secs(10)))
        .runtime(deadpool_postgres::Runtime::Tokio1)
        .build()
        .map_err(|e| StoreError::Connect {
            detail: e.to_string(),
        })
}

/// The newest migration this binary carries.
pub fn latest_schema_version() -> i32 {
    embedded::migrations::runner()
        .get_migrations()
        .iter()
        .map(|m| m.version())
        .max()
        .unwrap_or(0)
}

/// Applies the embedded migrations; idempotent.
pub async fn migrate(pool: &Pool) -> Result<Vec<String>, StoreError> {
    let mut client = pool.get().await?;
    let report = embedded::migrations::runner()
        .run_async(&mut **client)
        .await
        .map_err(|e| StoreError::Migration {
            detail: one_line(&e.to_string(), 300),
        })?;
    Ok(report
        .applied_migrations()
        .iter()
        .map(|m| m.to_string())
        .collect())
}

/// The schema version in the database (0 when never migrated).
pub async fn schema_version(pool: &Pool) -> Result<i32, StoreError> {
    let client = pool.get().await?;
    let exists: bool = client
        .query_one(
            "SELECT to_regclass('refinery_schema_history') IS NOT NULL",
            &[],
        )
        .await?
        .get(0);
    if !exists {
        return Ok(0);
    }
    let v: Option<i32> = client
        .query_one("SELECT max(version) FROM refinery_schema_history", &[])
        .await?
        .get(0);
    Ok(v.unwrap_or(0))
}

pub async fn require_current_schema(pool: &Pool) -> Result<(), StoreError> {
    let current = schema_version(pool).await?;
    let latest = latest_schema_version();
    if current < latest {
        return Err(StoreError::SchemaOutdated { current, latest });
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Integrations

#[derive(Debug, Clone, Serialize)]
pub struct Integration {
    pub id: Uuid,
    pub name: String,
    pub bridge_url: String,
    pub scim_base: Option<String>,
    #[serde(skip)]
    pub token: Sealed,
    pub purchased_seats: Option<i32>,
    pub status: String,
    pub status_reason: Option<String>,
    pub created_at: DateTime<Utc>,
    pub last_sync_at: Option<DateTime<Utc>>,
    pub last_sync_outcome: Option<String>,
    pub last_sync_error_kind: Option<String>,
    pub last_success_at: Option<DateTime<Utc>>,
    /// An operator accepted the held mass removal: the next sync applies it.
    pub release_removals: bool,
    /// Digest of the last snapshot the stored directory equals, if it does.
    #[serde(skip)]
    pub snapshot_digest: Option<Vec<u8>>,
}

const INTEGRATION_COLUMNS: &str = "id, name, bridge_url, scim_base, token_key_id, token_nonce, token_ciphertext, \
     purchased_seats, status, status_reason, created_at, last_sync_at, last_sync_outcome, \
     last_sync_error_kind, last_success_at, release_removals, snapshot_digest";

fn integration_from_row(r: &tokio_postgres::Row) -> Integration {
    Integration {
        id: r.get(0),
        name: r.get(1),
        bridge_url: r.get(2),
        scim_base: r.get(3),
        token: Sealed {
            key_id: r.get(4),
            nonce: r.get(5),
            ciphertext: r.get(6),
        },
        purchased_seats: r.get(7),
        status: r.get(8),
        status_reason: r.get(9),
        created_at: r.get(10),
        last_sync_at: r.get(11),
        last_sync_outcome: r.get(12),
        last_sync_error_kind: r.get(13),
        last_success_at: r.get(14),
        release_removals: r.get(15),
        snapshot_digest: r.get(16),
    }
}

pub struct NewIntegration<'a> {
    pub id: Uuid,
    pub name: &'a str,
    pub bridge_url: &'a str,
    pub scim_base: Option<&'a str>,
    pub token: &'a Sealed,
    pub purchased_seats: Option<i32>,
}

pub async fn insert_integration(
    c: &impl GenericClient,
    n: &NewIntegration<'_>,
) -> Result<(), StoreError> {
    c.execute(
        "INSERT INTO integrations (id, name, bridge_url, scim_base, token_key_id, token_nonce, token_ciphertext, purchased_seats) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        &[&n.id, &n.name, &n.bridge_url, &n.scim_base, &n.token.key_id, &n.token.nonce, &n.token.ciphertext, &n.purchased_seats],
    )
    .await?;
    Ok(())
}

pub async fn get_integration(c: &impl GenericClient, id: Uuid) -> Result<Integration, StoreError> {
    let row = c
        .query_opt(
            &format!("SELECT {INTEGRATION_COLUMNS} FROM integrations WHERE id = $1"),
            &[&id],
        )
        .await?
        .ok_or(StoreError::IntegrationNotFound { id })?;
    Ok(integration_from_row(&row))
}

pub async fn list_integrations(c: &impl GenericClient) -> Result<Vec<Integration>, StoreError> {
    let rows = c
        .query(
            &format!("SELECT {INTEGRATION_COLUMNS} FROM integrations ORDER BY created_at, id"),
            &[],
        )
        .await?;
    Ok(rows.iter().map(integration_from_row).collect())
}

/// Integrations whose last sync attempt is older than `interval` (or that never synced),
/// active ones only: what `opsync enqueue --due` queues.
pub async fn due_integrations(
    c: &impl GenericClient,
    interval: std::time::Duration,
) -> Result<Vec<Uuid>, StoreError> {
    let secs = interval.as_secs_f64();
    let rows = c
        .query(
            "SELECT id FROM integrations WHERE status = 'active' \
             AND (last_sync_at IS NULL OR last_sync_at < now() - make_interval(secs => $1)) ORDER BY last_sync_at NULLS FIRST",
            &[&secs],
        )
        .await?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

pub async fn update_token(
    c: &impl GenericClient,
    id: Uuid,
    token: &Sealed,
) -> Result<(), StoreError> {
    // A new token clears a credentials failure: the next sync tries again.
    let n = c
        .execute(
            "UPDATE integrations SET token_key_id = $2, token_nonce = $3, token_ciphertext = $4, \
             status = CASE WHEN status = 'needs_credentials' THEN 'active' ELSE status END, \
             status_reason = CASE WHEN status = 'needs_credentials' THEN NULL ELSE status_reason END, \
             updated_at = now() WHERE id = $1",
            &[&id, &token.key_id, &token.nonce, &token.ciphertext],
        )
        .await?;
    found(n, id)
}

pub async fn set_seats(
    c: &impl GenericClient,
    id: Uuid,
    seats: Option<i32>,
) -> Result<(), StoreError> {
    let n = c
        .execute(
            "UPDATE integrations SET purchased_seats = $2, updated_at = now() WHERE id = $1",
            &[&id, &seats],
        )
        .await?;
    found(n, id)
}

pub async fn set_status(
    c: &impl GenericClient,
    id: Uuid,
    status: &str,
    reason: Option<&str>,
) -> Result<(), StoreError> {
    let n = c
        .execute(
            "UPDATE integrations SET status = $2, status_reason = $3, updated_at = now() WHERE id = $1",
            &[&id, &status, &reason],
        )
        .await?;
    found(n, id)
}

pub async fn set_scim_base(c: &impl GenericClient, id: Uuid, base: &str) -> Result<(), StoreError> {
    let n = c
        .execute(
            "UPDATE integrations SET scim_base = $2 WHERE id = $1",
            &[&id, &base],
        )
        .await?;
    found(n, id)
}

/// `opsync integration release-removals`: the next sync applies a held mass removal.
pub async fn set_release_removals(c: &impl GenericClient, id: Uuid) -> Result<(), StoreError> {
    let n = c
        .execute(
            "UPDATE integrations SET release_removals = true, updated_at = now() WHERE id = $1",
            &[&id],
        )
        .await?;
    found(n, id)
}

pub async fn set_snapshot_digest(
    c: &impl GenericClient,
    id: Uuid,
    digest: Option<&[u8]>,
) -> Result<(), StoreError> {
    c.execute(
        "UPDATE integrations SET snapshot_digest = $2 WHERE id = $1",
        &[&id, &digest],
    )
    .await?;
    Ok(())
}

pub async fn clear_release_removals(c: &impl GenericClient, id: Uuid) -> Result<(), StoreError> {
    c.execute(
        "UPDATE integrations SET release_removals = false WHERE id = $1",
        &[&id],
    )
    .await?;
    Ok(())
}

pub async fn delete_integration(
    conn: &mut deadpool_postgres::Client,
    id: Uuid,
) -> Result<(), StoreError> {
    // The sync lock first: a running sync of this integration commits before the delete, and
    // its rows go with the rest. `events` and `directory_users` carry no foreign key (a
    // per-row check on 100,000 inserts costs more than it protects, V5), so they are deleted
    // here, with the outbox, in the statement that deletes the integration.
    let tx = conn.transaction().await?;
    lock_integration(&tx, id).await?;
    let n = tx
        .execute(
            "WITH o AS (DELETE FROM outbox WHERE integration_id = $1), \
                  e AS (DELETE FROM events WHERE integration_id = $1), \
                  d AS (DELETE FROM directory_users WHERE integration_id = $1) \
             DELETE FROM integrations WHERE id = $1",
            &[&id],
        )
        .await?;
    found(n, id)?;
    tx.commit().await?;
    Ok(())
}

pub(crate) fn found(n: u64, id: Uuid) -> Result<(), StoreError> {
    if n == 0 {
        Err(StoreError::IntegrationNotFound { id })
    } else {
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// Sync

/// Serialises syncs of one integration across every worker: a transaction-scoped advisory
/// lock, released by commit, rollback or a dropped connection, so a dead worker never leaves
/// it held.
pub async fn lock_integration(c: &impl GenericClient, id: Uuid) -> Result<(), StoreError> {
    c.execute(
        "SELECT pg_advisory_xact_lock(hashtextextended('opsync.sync:' || ($1::uuid)::text, 0))",
        &[&id],
    )
    .await?;
    Ok(())
}

/// True when the integration has no stored member at all (before its first successful sync).
pub async fn directory_is_empty(
    c: &impl GenericClient,
    integration_id: Uuid,
) -> Result<bool, StoreError> {
    Ok(c.query_one(
        "SELECT NOT EXISTS (SELECT 1 FROM directory_users WHERE integration_id = $1)",
        &[&integration_id],
    )
    .await?
    .get(0))
}

pub async fn job_succeeded(c: &impl GenericClient, job_id: Uuid) -> Result<bool, StoreError> {
    Ok(c.query_opt(
        "SELECT 1 FROM sync_runs WHERE job_id = $1 AND outcome = 'succeeded'",
        &[&job_id],
    )
    .await?
    .is_some())
}

pub async fn load_directory(
    c: &impl GenericClient,
    integration_id: Uuid,
) -> Result<Vec<StoredUser>, StoreError> {
    use futures::TryStreamExt;
    // Streamed: each row becomes a `StoredUser` as it arrives, so 100,000 raw rows are never
    // held next to their converted copies.
    let rows = c
        .query_raw(
            "SELECT scim_id, user_name, email, display_name, given_name, family_name, active, removed_at IS NOT NULL \
             FROM directory_users WHERE integration_id = $1",
            [&integration_id],
        )
        .await?;
    futures::pin_mut!(rows);
    let mut out = Vec::new();
    while let Some(r) = rows.try_next().await? {
        out.push(StoredUser {
            user: ScimUser {
                id: r.get(0),
                user_name: r.get(1),
                email: r.get(2),
                display_name: r.get(3),
                given_name: r.get(4),
                family_name: r.get(5),
                active: r.get(6),
            },
            removed: r.get(7),
        });
    }
    out.shrink_to_fit();
    Ok(out)
}

/// Rows per statement: keeps each statement's parameters to a few megabytes.
pub const BATCH: usize = 5_000;

/// Writes the changed members: upserts for added/updated/(de|re)activated, `removed_at` for
/// removed. Unchanged members are not touched.
pub async fn write_changes(
    c: &impl GenericClient,
    integration_id: Uuid,
    at: DateTime<Utc>,
    changes: &[Change<'_>],
) -> Result<(), StoreError> {
    let (removed, upserts): (Vec<&Change>, Vec<&Change>) =
        changes.iter().partition(|c| c.kind == ChangeKind::Removed);
    for chunk in upserts.chunks(BATCH) {
        let col =
            |f: fn(&ScimUser) -> Option<&str>| chunk.iter().map(|c| f(c.user)).collect::<Vec<_>>();
        let ids: Vec<&str> = chunk.iter().map(|c| c.user.id.as_str()).collect();
        let user_names = col(|u| u.user_name.as_deref());
        let emails = col(|u| u.email.as_deref());
        let display = col(|u| u.display_name.as_deref());
        let given = col(|u| u.given_name.as_deref());
        let family = col(|u| u.family_name.as_deref());
        let active: Vec<bool> = chunk.iter().map(|c| c.user.active).collect();
        let params: [&(dyn ToSql + Sync); 9] = [
            &integration_id,
            &at,
            &ids,
            &user_names,
            &emails,
            &display,
            &given,
            &family,
            &active,
        ];
        c.execute(
            "INSERT INTO directory_users (integration_id, scim_id, user_name, email, display_name, given_name, family_name, active, first_seen_at, last_changed_at, removed_at) \
             SELECT $1, t.* , $2, $2, NULL FROM unnest($3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[], $9::bool[]) AS t \
             ON CONFLICT (integration_id, scim_id) DO UPDATE SET user_name = EXCLUDED.user_name, email = EXCLUDED.email, \
             display_name = EXCLUDED.display_name, given_name = EXCLUDED.given_name, family_name = EXCLUDED.family_name, \
             active = EXCLUDED.active, last_changed_at = EXCLUDED.last_changed_at, removed_at = NULL",
            &params,
        )
        .await?;
    }
    for chunk in removed.chunks(BATCH) {
        let ids: Vec<&str> = chunk.iter().map(|c| c.user.id.as_str()).collect();
        c.execute(
            "UPDATE directory_users SET removed_at = $2, last_changed_at = $2 WHERE integration_id = $1 AND scim_id = ANY($3)",
            &[&integration_id, &at, &ids],
        )
        .await?;
    }
    Ok(())
}

/// Writes members seen for the first time with binary `COPY`: the initial sync's path,
/// where no row can exist yet (the directory was empty under the sync lock), so the
/// upsert's conflict check is skipped.
pub async fn copy_new_members(
    tx: &deadpool_postgres::Transaction<'_>,
    integration_id: Uuid,
    at: DateTime<Utc>,
    users: &[&ScimUser],
) -> Result<(), StoreError> {
    use tokio_postgres::binary_copy::BinaryCopyInWriter;
    use tokio_postgres::types::Type;
    let sink = tx
        .copy_in("COPY directory_users (integration_id, scim_id, user_name, email, display_name, given_name, family_name, active, first_seen_at, last_changed_at) FROM STDIN BINARY")
        .await?;
    let writer = BinaryCopyInWriter::new(
        sink,
        &[
            Type::UUID,
            Type::TEXT,
            Type::TEXT,
            Type::TEXT,
            Type::TEXT,
            Type::TEXT,
            Type::TEXT,
            Type::BOOL,
            Type::TIMESTAMPTZ,
            Type::TIMESTAMPTZ,
        ],
    );
    futures::pin_mut!(writer);
    for u in users {
        writer
            .as_mut()
            .write(&[
                &integration_id,
                &u.id,
                &u.user_name,
                &u.email,
                &u.display_name,
                &u.given_name,
                &u.family_name,
                &u.active,
                &at,
                &at,
            ])
            .await?;
    }
    writer.finish().await?;
    Ok(())
}

/// One event to store in the outbox.
pub struct NewEvent {
    pub event_id: Uuid,
    pub event_type: &'static str,
    pub scim_id: Option<String>,
    /// The message body, JSON text: exactly the bytes the relay will publish.
    pub payload: String,
}

/// JSON text sent as the `json` type as is (no parse, no re-serialisation on our side).
#[derive(Debug)]
struct JsonText<'a>(&'a str);

impl tokio_postgres::types::ToSql for JsonText<'_> {
    fn to_sql(
        &self,
        _ty: &tokio_postgres::types::Type,
        out: &mut bytes::BytesMut,
    ) -> Result<tokio_postgres::types::IsNull, Box<dyn std::error::Error + Sync + Send>> {
        out.extend_from_slice(self.0.as_bytes());
        Ok(tokio_postgres::types::IsNull::No)
    }

    fn accepts(ty: &tokio_postgres::types::Type) -> bool {
        *ty == tokio_postgres::types::Type::JSON
    }

    tokio_postgres::types::to_sql_checked!();
}

/// Writes many events with binary `COPY` (several times faster than an `INSERT` for 100,000
/// rows), streaming them as `events` yields them ([`enqueue_outbox`] then names them for the
/// relay). Event ids are
/// unique: a job never commits twice (the job-id check under the integration lock), so a
/// repeated id here is a bug and fails the transaction.
pub async fn copy_events(
    tx: &deadpool_postgres::Transaction<'_>,
    integration_id: Uuid,
    sync_id: Uuid,
    at: DateTime<Utc>,
    trace_context: Option<&str>,
    events: impl Iterator<Item = NewEvent>,
) -> Result<(), StoreError> {
    use tokio_postgres::binary_copy::BinaryCopyInWriter;
    use tokio_postgres::types::Type;
    let sink = tx
        .copy_in("COPY events (event_id, integration_id, sync_id, type, scim_id, occurred_at, payload, trace_context) FROM STDIN BINARY")
        .await?;
    let writer = BinaryCopyInWriter::new(
        sink,
        &[
            Type::UUID,
            Type::UUID,
            Type::UUID,
            Type::TEXT,
            Type::TEXT,
            Type::TIMESTAMPTZ,
            Type::JSON,
            Type::JSON,
        ],
    );
    futures::pin_mut!(writer);
    let trace = trace_context.map(JsonText);
    for e in events {
        writer
            .as_mut()
            .write(&[
                &e.event_id,
                &integration_id,
                &sync_id,
                &e.event_type,
                &e.scim_id,
                &at,
                &JsonText(&e.payload),
                &trace,
            ])
            .await?;
    }
    writer.finish().await?;
    Ok(())
}

/// The highest event `seq` committed so far: every event written after this call gets a
/// higher one (sequence values only grow), which is how a sync finds its own events again.
pub async fn max_event_seq(c: &impl GenericClient) -> Result<i64, StoreError> {
    Ok(c.query_one("SELECT coalesce(max(seq), 0) FROM events", &[])
        .await?
        .get(0))
}

/// Puts a sync's events in the outbox: one row naming their `seq` range (found above
/// `floor`, from [`max_event_seq`] before the sync wrote any). In the sync's transaction.
pub async fn enqueue_outbox(
    c: &impl GenericClient,
    integration_id: Uuid,
    sync_id: Uuid,
    floor: i64,
) -> Result<(), StoreError> {
    c.execute(
        "INSERT INTO outbox (sync_id, integration_id, first_seq, last_seq, published_seq, events) \
         SELECT $2, $1, min(seq), max(seq), min(seq) - 1, count(*) FROM events WHERE seq > $3 AND sync_id = $2 \
         HAVING count(*) > 0",
        &[&integration_id, &sync_id, &floor],
    )
    .await?;
    Ok(())
}

/// The sync-run row and the integration's last-sync columns.
pub struct RunRecord<'a> {
    pub run_id: Uuid,
    pub sync_id: Uuid,
    pub job_id: Uuid,
    pub integration_id: Uuid,
    pub trigger: &'a str,
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
    pub error: Option<(&'a str, String)>,
    pub users_seen: Option<i64>,
    pub users_active: Option<i64>,
    pub counts: crate::directory::ChangeCounts,
    pub removals_held: i64,
    pub snapshot_consistent: Option<bool>,
    pub removals_hold_reason: Option<&'a str>,
    pub bridge_requests: i64,
    pub bridge_retries: i64,
}

pub async fn record_run(c: &impl GenericClient, r: &RunRecord<'_>) -> Result<(), StoreError> {
    let outcome = if r.error.is_none() {
        "succeeded"
    } else {
        "failed"
    };
    let (kind, message) = match &r.error {
        Some((k, m)) => (Some(*k), Some(m.as_str())),
        None => (None, None),
    };
    let i = |v: u64| v as i32;
    let opt = |v: Option<i64>| v.map(|x| x as i32);
    c.execute(
        "INSERT INTO sync_runs (id, sync_id, job_id, integration_id, trigger, started_at, finished_at, outcome, error_kind, error_message, \
         users_seen, users_active, added, updated, deactivated, reactivated, removed, removals_held, snapshot_consistent, bridge_requests, bridge_retries, \
         removals_hold_reason) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15,$16,$17,$18,$19,$20,$21,$22)",
        &[
            &r.run_id, &r.sync_id, &r.job_id, &r.integration_id, &r.trigger, &r.started_at, &r.finished_at, &outcome, &kind, &message,
            &opt(r.users_seen), &opt(r.users_active), &i(r.counts.added), &i(r.counts.updated), &i(r.counts.deactivated),
            &i(r.counts.reactivated), &i(r.counts.removed), &(r.removals_held as i32), &r.snapshot_consistent,
            &(r.bridge_requests as i32), &(r.bridge_retries as i32), &r.removals_hold_reason,
        ],
    )
    .await?;
    c.execute(
        "UPDATE integrations SET last_sync_at = $2, last_sync_outcome = $3, last_sync_error_kind = $4, \
         last_success_at = CASE WHEN $3 = 'succeeded' THEN $2 ELSE last_success_at END WHERE id = $1",
        &[&r.integration_id, &r.finished_at, &outcome, &kind],
    )
    .await?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Outbox

#[derive(Debug, Clone)]
pub struct PendingEvent {
    pub seq: i64,
    pub event_id: Uuid,
    pub event_type: String,
    /// JSON text, published as is.
    pub payload: String,
    /// The producing sync's trace context (JSON object of propagation fields).
    pub trace_context: Option<String>,
}

/// Integrations with unpublished events, oldest first.
pub async fn integrations_with_pending_events(
    c: &impl GenericClient,
) -> Result<Vec<Uuid>, StoreError> {
    let rows = c
        .query(
            "SELECT integration_id FROM outbox GROUP BY integration_id ORDER BY min(first_seq) LIMIT 100",
            &[],
        )
        .await?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// Claims one integration's outbox for this transaction. Only one relay may publish an
/// integration's events at a time, or two relays could interleave them out of order; the
/// lock is transaction-scoped, so a relay that dies releases it.
pub async fn try_claim_outbox(
    c: &impl GenericClient,
    integration_id: Uuid,
) -> Result<bool, StoreError> {
    Ok(c
        .query_one("SELECT pg_try_advisory_xact_lock(hashtextextended('opsync.outbox:' || ($1::uuid)::text, 0))", &[&integration_id])
        .await?
        .get(0))
}

/// One sync's place in the outbox.
#[derive(Debug, Clone, Copy)]
pub struct OutboxSync {
    pub sync_id: Uuid,
    pub published_seq: i64,
    pub last_seq: i64,
}

/// The integration's oldest sync with unpublished events, locked for this transaction.
pub async fn next_outbox_sync(
    c: &impl GenericClient,
    integration_id: Uuid,
) -> Result<Option<OutboxSync>, StoreError> {
    Ok(c.query_opt(
        "SELECT sync_id, published_seq, last_seq FROM outbox WHERE integration_id = $1 \
             ORDER BY first_seq LIMIT 1 FOR UPDATE",
        &[&integration_id],
    )
    .await?
    .map(|r| OutboxSync {
        sync_id: r.get(0),
        published_seq: r.get(1),
        last_seq: r.get(2),
    }))
}

/// The sync's events with `after_seq < seq <= up_to`, in order. Callers ask for windows of
/// `seq` values, not for "the next N after": right after a big sync the table's statistics
/// do not know its new rows yet, and with a `LIMIT` the planner then reads (and sorts) every
/// remaining row of the range for each batch. A bounded window reads at most that many
/// index entries whatever the plan. Other integrations' events may sit in the window: a
/// window can hold fewer of this sync's events than its width, or none.
pub async fn pending_events(
    c: &impl GenericClient,
    sync: &OutboxSync,
    after_seq: i64,
    up_to: i64,
) -> Result<Vec<PendingEvent>, StoreError> {
    let rows = c
        .query(
            "SELECT seq, event_id, type, payload::text, trace_context::text FROM events \
             WHERE seq > $2 AND seq <= $3 AND sync_id = $1 ORDER BY seq",
            &[&sync.sync_id, &after_seq, &up_to.min(sync.last_seq)],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| PendingEvent {
            seq: r.get(0),
            event_id: r.get(1),
            event_type: r.get(2),
            payload: r.get(3),
            trace_context: r.get(4),
        })
        .collect())
}

/// Records that a sync's events up to `published_seq` are confirmed (`count` more of them);
/// the row goes once all are. Returns true when the sync is done.
pub async fn mark_published(
    c: &impl GenericClient,
    sync: &OutboxSync,
    published_seq: i64,
    count: i64,
) -> Result<bool, StoreError> {
    if published_seq >= sync.last_seq {
        c.execute("DELETE FROM outbox WHERE sync_id = $1", &[&sync.sync_id])
            .await?;
        return Ok(true);
    }
    c.execute(
        "UPDATE outbox SET published_seq = $2, published_events = published_events + $3::int WHERE sync_id = $1",
        &[&sync.sync_id, &published_seq, &(count as i32)],
    )
    .await?;
    Ok(false)
}

/// Unpublished events and the age of the oldest, for metrics and readiness.
pub async fn outbox_backlog(c: &impl GenericClient) -> Result<(i64, Option<f64>), StoreError> {
    let row = c
        .query_one(
            "SELECT coalesce(sum(events - published_events), 0)::bigint, \
                    extract(epoch FROM now() - min(created_at))::float8 FROM outbox",
            &[],
        )
        .await?;
    Ok((row.get(0), row.get(1)))
}

#[derive(Debug, Clone, Serialize)]
pub struct RunRow {
    pub id: Uuid,
    pub job_id: Uuid,
    pub trigger: String,
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
    pub outcome: String,
    pub error_kind: Option<String>,
    pub error_message: Option<String>,
    pub users_seen: Option<i32>,
    pub added: i32,
    pub updated: i32,
    pub deactivated: i32,
    pub reactivated: i32,
    pub removed: i32,
    pub removals_held: i32,
}

pub async fn recent_runs(
    c: &impl GenericClient,
    integration_id: Uuid,
    limit: i64,
) -> Result<Vec<RunRow>, StoreError> {
    let rows = c
        .query(
            "SELECT id, job_id, trigger, started_at, finished_at, outcome, error_kind, error_message, users_seen, \
             added, updated, deactivated, reactivated, removed, removals_held \
             FROM sync_runs WHERE integration_id = $1 ORDER BY started_at DESC LIMIT $2",
            &[&integration_id, &limit],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| RunRow {
            id: r.get(0),
            job_id: r.get(1),
            trigger: r.get(2),
            started_at: r.get(3),
            finished_at: r.get(4),
            outcome: r.get(5),
            error_kind: r.get(6),
            error_message: r.get(7),
            users_seen: r.get(8),
            added: r.get(9),
            updated: r.get(10),
            deactivated: r.get(11),
            reactivated: r.get(12),
            removed: r.get(13),
            removals_held: r.get(14),
        })
        .collect())
}

/// Members per state (active, suspended, removed) of every integration that has any, in one
/// query: `integration list`.
pub async fn directory_counts_all(
    c: &impl GenericClient,
) -> Result<std::collections::HashMap<Uuid, (i64, i64, i64)>, StoreError> {
    let rows = c
        .query(
            "SELECT integration_id, count(*) FILTER (WHERE removed_at IS NULL AND active), \
             count(*) FILTER (WHERE removed_at IS NULL AND NOT active), \
             count(*) FILTER (WHERE removed_at IS NOT NULL) FROM directory_users GROUP BY integration_id",
            &[],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| (r.get(0), (r.get(1), r.get(2), r.get(3))))
        .collect())
}

/// Members per state, for `integration show`.
pub async fn directory_counts(
    c: &impl GenericClient,
    integration_id: Uuid,
) -> Result<(i64, i64, i64), StoreError> {
    let r = c
        .query_one(
            "SELECT count(*) FILTER (WHERE removed_at IS NULL AND active), count(*) FILTER (WHERE removed_at IS NULL AND NOT active), \
             count(*) FILTER (WHERE removed_at IS NOT NULL) FROM directory_users WHERE integration_id = $1",
            &[&integration_id],
        )
        .await?;
    Ok((r.get(0), r.get(1), r.get(2)))
}
