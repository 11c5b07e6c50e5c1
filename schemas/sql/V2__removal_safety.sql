-- Mass-removal safety: a sync that would remove too many members holds the removals until an
-- operator releases them (`opsync integration release-removals ID`).
ALTER TABLE integrations ADD COLUMN release_removals boolean NOT NULL DEFAULT false;
-- Why removals were held: doubtful_snapshot | mass_removal | unconfirmed (the bridge still
-- answers GET /Users/{id}, or the per-run check budget ran out).
ALTER TABLE sync_runs ADD COLUMN removals_hold_reason text;

-- A digest of the last snapshot that the stored directory equals (NULL when it does not, e.g.
-- after held removals): a new snapshot with the same digest changed nothing, and the sync can
-- skip loading and diffing the directory.
ALTER TABLE integrations ADD COLUMN snapshot_digest bytea;
