-- Mass-removal safety: a sync that would remove too many members holds the removals until an
-- operator releases them (`opsync integration release-removals ID`).
ALTER TABLE integrations ADD COLUMN release_removals boolean NOT NULL DEFAULT false;
-- Why removals were held: doubtful_snapshot | mass_removal | unconfirmed (the bridge still
-- answers GET /Users/{id}, or the per-run check budget ran out).
ALTER TABLE sync_runs ADD COLUMN removals_hold_reason text;
