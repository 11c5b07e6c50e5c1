-- opsync schema v5: the two tables a sync writes one row per member into lose their foreign
-- keys. Each FK costs a per-row lookup of the integration: measured on 100,000 rows, about
-- 1 s for `events` and 1 s for `directory_users`, most of an initial sync's write time.
-- What they protected is kept another way: rows are only written by a sync holding the
-- integration's advisory lock after reading the integration in the same transaction, and
-- `opsync integration remove` takes that lock and deletes `events`, `directory_users` and the
-- outbox with the integration, in one statement (see store::delete_integration).
ALTER TABLE events DROP CONSTRAINT IF EXISTS events_integration_id_fkey;
ALTER TABLE directory_users DROP CONSTRAINT IF EXISTS directory_users_integration_id_fkey;

-- A member's events are looked up by SCIM id (`opsync user`, `report reclaim`): a hash index
-- does that at about half the insert cost of the former B-tree on (integration_id, scim_id,
-- seq); SCIM ids are random strings, so the integration filter after it is nearly free, and
-- the order comes from sorting one member's few events by `seq`.
DROP INDEX IF EXISTS events_member;
CREATE INDEX events_scim_id ON events USING hash (scim_id);

-- The outbox becomes one row per sync instead of one per event: a sync's events are a `seq`
-- range of `events` (with other integrations' events possibly interleaved, told apart by
-- `sync_id`), and the relay publishes that range in order and moves `published_seq` along it.
-- 100,000 outbox inserts (and the relay's 100,000 row locks and deletes) become one insert and
-- a few updates. Per integration, syncs run one at a time (advisory lock), so one
-- integration's rows never overlap and are published in `first_seq` order.
ALTER TABLE outbox RENAME TO outbox_v4;
ALTER INDEX outbox_integration RENAME TO outbox_v4_integration;
CREATE TABLE outbox (
    sync_id          uuid PRIMARY KEY,
    integration_id   uuid NOT NULL,
    first_seq        bigint NOT NULL,
    last_seq         bigint NOT NULL,
    -- Every event of the sync up to this seq is confirmed by the broker.
    published_seq    bigint NOT NULL,
    events           integer NOT NULL,
    published_events integer NOT NULL DEFAULT 0,
    created_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX outbox_integration ON outbox (integration_id, first_seq);

-- Pending events of the former outbox: a published prefix of each sync is gone from it, so
-- what remains of a sync is a contiguous tail of its range.
INSERT INTO outbox (sync_id, integration_id, first_seq, last_seq, published_seq, events, created_at)
SELECT e.sync_id, e.integration_id, min(e.seq), max(e.seq), min(e.seq) - 1, count(*), min(e.occurred_at)
FROM outbox_v4 o JOIN events e ON e.seq = o.seq
GROUP BY e.sync_id, e.integration_id;

DROP TABLE outbox_v4;
