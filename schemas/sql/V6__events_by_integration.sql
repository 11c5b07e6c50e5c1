-- opsync schema v6: an integration's events, found without reading everyone's.
-- `report trend`, `report reclaim`, the `member_timeline` view filtered by integration and
-- `integration remove` all select events by `integration_id`; without an index each of them
-- reads the whole table, which holds every customer's history. A sync's events share one
-- integration id and take increasing seqs, so its rows go to the right edge of this index
-- (Postgres' rightmost-leaf fast path): cheap even for an initial sync of 100,000 members.
CREATE INDEX events_integration ON events (integration_id, seq);
