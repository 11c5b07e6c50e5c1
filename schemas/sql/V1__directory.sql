-- opsync schema v1: integrations, the directory read model, sync runs, events (history + outbox).
-- These tables are read by Viio's other services: names and meanings are a contract
-- (documented in schemas/README.md). Add columns and migrations; never rename.

CREATE TABLE integrations (
    id                  uuid PRIMARY KEY,
    name                text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    bridge_url          text NOT NULL,
    -- The SCIM base found by discovery, reused by every sync.
    scim_base           text,
    -- The bearer token, AES-256-GCM; the integration id is the associated data.
    token_key_id        text NOT NULL,
    token_nonce         bytea NOT NULL,
    token_ciphertext    bytea NOT NULL,
    purchased_seats     integer CHECK (purchased_seats >= 0),
    -- active | disabled | needs_credentials | scim_disabled
    status              text NOT NULL DEFAULT 'active'
                        CHECK (status IN ('active', 'disabled', 'needs_credentials', 'scim_disabled')),
    status_reason       text,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    last_sync_at        timestamptz,
    -- succeeded | failed
    last_sync_outcome   text,
    last_sync_error_kind text,
    last_success_at     timestamptz
);

-- One row per SCIM user ever seen, per integration: the current directory.
CREATE TABLE directory_users (
    integration_id  uuid NOT NULL REFERENCES integrations (id) ON DELETE CASCADE,
    scim_id         text NOT NULL,
    user_name       text,
    email           text,
    display_name    text,
    given_name      text,
    family_name     text,
    active          boolean NOT NULL,
    first_seen_at   timestamptz NOT NULL,
    last_changed_at timestamptz NOT NULL,
    -- Set when the member disappeared from the bridge; cleared if it comes back.
    removed_at      timestamptz,
    PRIMARY KEY (integration_id, scim_id)
);

-- One row per sync attempt.
CREATE TABLE sync_runs (
    id                  uuid PRIMARY KEY,
    sync_id             uuid NOT NULL,
    job_id              uuid NOT NULL,
    integration_id      uuid NOT NULL REFERENCES integrations (id) ON DELETE CASCADE,
    trigger             text NOT NULL,
    started_at          timestamptz NOT NULL,
    finished_at         timestamptz NOT NULL,
    outcome             text NOT NULL CHECK (outcome IN ('succeeded', 'failed')),
    error_kind          text,
    error_message       text,
    users_seen          integer,
    users_active        integer,
    added               integer NOT NULL DEFAULT 0,
    updated             integer NOT NULL DEFAULT 0,
    deactivated         integer NOT NULL DEFAULT 0,
    reactivated         integer NOT NULL DEFAULT 0,
    removed             integer NOT NULL DEFAULT 0,
    removals_held       integer NOT NULL DEFAULT 0,
    snapshot_consistent boolean,
    bridge_requests     integer,
    bridge_retries      integer
);
-- A job succeeds at most once: a redelivered job finds its success and is acked unrun.
CREATE UNIQUE INDEX sync_runs_job_succeeded ON sync_runs (job_id) WHERE outcome = 'succeeded';
CREATE INDEX sync_runs_integration ON sync_runs (integration_id, started_at DESC);

-- Every event ever produced, in order. Insert-only: publishing never rewrites an event row.
CREATE TABLE events (
    seq             bigserial PRIMARY KEY,
    event_id        uuid NOT NULL UNIQUE,
    integration_id  uuid NOT NULL REFERENCES integrations (id) ON DELETE CASCADE,
    sync_id         uuid NOT NULL,
    type            text NOT NULL,
    scim_id         text,
    occurred_at     timestamptz NOT NULL,
    -- The message exactly as published (JSON text).
    payload         json NOT NULL
);
CREATE INDEX events_member ON events (integration_id, scim_id, seq);

-- The outbox: events committed but not yet confirmed by the broker. A small table of its own,
-- so that marking an event published is a delete of a tiny row, not a rewrite of the event.
-- No foreign keys: a per-row check on 100,000 inserts costs more than it protects (rows are
-- only written with their event, in one statement, and removed with their integration).
CREATE TABLE outbox (
    seq             bigint PRIMARY KEY,
    integration_id  uuid NOT NULL
);
CREATE INDEX outbox_integration ON outbox (integration_id, seq);
