-- opsync schema v4: subscription facts per integration, their history, and the views that
-- Viio's other services (and `opsync report`) read seat allocation and provisioning from.
-- Documented in schemas/README.md; like the tables, the view names and columns are a contract.

-- What the customer pays for. The price is of one seat for one billing period, in `currency`
-- (ISO 4217). All optional: an integration without a plan still has members and a trend.
ALTER TABLE integrations
    ADD COLUMN price_per_seat numeric(14, 2) CHECK (price_per_seat >= 0),
    ADD COLUMN currency       text CHECK (currency ~ '^[A-Z]{3}$'),
    ADD COLUMN billing_period text CHECK (billing_period IN ('monthly', 'annual')),
    ADD COLUMN renewal_date   date,
    ADD CONSTRAINT integrations_price_has_currency CHECK ((price_per_seat IS NULL) = (currency IS NULL));

-- Every version of the plan, so a chart can show purchased seats as they were at each date
-- (seats bought mid-period). Written by triggers, whichever command changes the plan.
CREATE TABLE seat_plan_history (
    id              bigserial PRIMARY KEY,
    integration_id  uuid NOT NULL REFERENCES integrations (id) ON DELETE CASCADE,
    changed_at      timestamptz NOT NULL DEFAULT clock_timestamp(),
    purchased_seats integer,
    price_per_seat  numeric(14, 2),
    currency        text,
    billing_period  text,
    renewal_date    date
);
CREATE INDEX seat_plan_history_integration ON seat_plan_history (integration_id, changed_at);

INSERT INTO seat_plan_history (integration_id, changed_at, purchased_seats)
SELECT id, created_at, purchased_seats FROM integrations WHERE purchased_seats IS NOT NULL;

CREATE FUNCTION record_seat_plan() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO seat_plan_history
        (integration_id, purchased_seats, price_per_seat, currency, billing_period, renewal_date)
    VALUES (NEW.id, NEW.purchased_seats, NEW.price_per_seat, NEW.currency, NEW.billing_period,
            NEW.renewal_date);
    RETURN NULL;
END $$;

CREATE TRIGGER integrations_plan_inserted AFTER INSERT ON integrations
    FOR EACH ROW
    WHEN (NEW.purchased_seats IS NOT NULL OR NEW.price_per_seat IS NOT NULL
          OR NEW.billing_period IS NOT NULL OR NEW.renewal_date IS NOT NULL)
    EXECUTE FUNCTION record_seat_plan();

CREATE TRIGGER integrations_plan_changed AFTER UPDATE ON integrations
    FOR EACH ROW
    WHEN ((OLD.purchased_seats, OLD.price_per_seat, OLD.currency, OLD.billing_period, OLD.renewal_date)
          IS DISTINCT FROM
          (NEW.purchased_seats, NEW.price_per_seat, NEW.currency, NEW.billing_period, NEW.renewal_date))
    EXECUTE FUNCTION record_seat_plan();

-- Each member's provisioning timeline: one row per user event, oldest first by `seq`.
-- `active` is the member's state after the event (for user.removed: as last stored);
-- `active_delta` is what the event did to the integration's count of active members, so the
-- active count at any moment is the sum of `active_delta` up to it.
CREATE VIEW member_timeline AS
SELECT e.integration_id,
       e.scim_id,
       e.seq,
       e.event_id,
       e.sync_id,
       e.type,
       e.occurred_at,
       (e.payload -> 'user' ->> 'active')::boolean AS active,
       CASE e.type
           WHEN 'user.added' THEN
               CASE WHEN (e.payload -> 'user' ->> 'active')::boolean THEN 1 ELSE 0 END
           WHEN 'user.reactivated' THEN 1
           WHEN 'user.deactivated' THEN -1
           WHEN 'user.removed' THEN
               CASE WHEN (e.payload -> 'user' ->> 'active')::boolean THEN -1 ELSE 0 END
           ELSE 0
       END AS active_delta,
       ARRAY(SELECT json_array_elements_text(e.payload -> 'changed_fields')) AS changed_fields,
       e.payload -> 'user' ->> 'user_name' AS user_name,
       e.payload -> 'user' ->> 'email' AS email
FROM events e
WHERE e.scim_id IS NOT NULL;

-- Current seat allocation per integration, from the stored directory (as of the last
-- successful sync: `data_as_of`). Active members hold seats; `unused_seats` are purchased
-- seats no active member holds, `unused_seat_cost` their price for one billing period.
CREATE VIEW seat_allocation AS
SELECT i.id AS integration_id,
       i.name,
       i.status,
       i.purchased_seats,
       i.price_per_seat,
       i.currency,
       i.billing_period,
       i.renewal_date,
       coalesce(m.active, 0) AS active_members,
       coalesce(m.suspended, 0) AS suspended_members,
       coalesce(m.removed_30d, 0) AS removed_last_30_days,
       CASE WHEN i.purchased_seats > 0
            THEN round(100.0 * coalesce(m.active, 0) / i.purchased_seats, 1) END AS utilization_pct,
       CASE WHEN i.purchased_seats IS NOT NULL
            THEN greatest(i.purchased_seats - coalesce(m.active, 0), 0) END AS unused_seats,
       CASE WHEN i.purchased_seats IS NOT NULL AND i.price_per_seat IS NOT NULL
            THEN greatest(i.purchased_seats - coalesce(m.active, 0), 0) * i.price_per_seat END
           AS unused_seat_cost,
       coalesce(i.purchased_seats IS NOT NULL AND coalesce(m.active, 0) > i.purchased_seats, false)
           AS over_allocated,
       CASE WHEN i.purchased_seats IS NOT NULL
            THEN greatest(coalesce(m.active, 0) - i.purchased_seats, 0) END AS seats_short,
       i.last_success_at AS data_as_of,
       i.last_sync_at,
       i.last_sync_outcome,
       i.last_sync_error_kind
FROM integrations i
LEFT JOIN LATERAL (
    SELECT count(*) FILTER (WHERE d.removed_at IS NULL AND d.active) AS active,
           count(*) FILTER (WHERE d.removed_at IS NULL AND NOT d.active) AS suspended,
           count(*) FILTER (WHERE d.removed_at >= now() - interval '30 days') AS removed_30d
    FROM directory_users d
    WHERE d.integration_id = i.id
) m ON true;
