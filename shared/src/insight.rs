//! The Postgres edge of `opsync report`, `users` and `user`: reads of the `seat_allocation`
//! and `member_timeline` views (schemas/sql/V4__seat_reports.sql) and of the plan history,
//! and the one write, `set_plan`. What the figures mean over time is decided in `report`.

use crate::report::{Member, SeatAllocation, TimelineEvent, WeekActivity, member_state};
use crate::store::{StoreError, found, get_integration};
use chrono::{DateTime, NaiveDate, Utc};
use deadpool_postgres::GenericClient;
use uuid::Uuid;

const ALLOCATION_COLUMNS: &str = "integration_id, name, status, purchased_seats::bigint, price_per_seat::text, currency, \
     billing_period, renewal_date, active_members, suspended_members, removed_last_30_days, \
     utilization_pct::float8, unused_seats::bigint, unused_seat_cost::text, over_allocated, seats_short::bigint, \
     data_as_of, last_sync_at, last_sync_outcome, last_sync_error_kind";

fn allocation_from_row(r: &tokio_postgres::Row) -> SeatAllocation {
    SeatAllocation {
        integration_id: r.get(0),
        name: r.get(1),
        status: r.get(2),
        purchased_seats: r.get(3),
        price_per_seat: r.get(4),
        currency: r.get(5),
        billing_period: r.get(6),
        renewal_date: r.get(7),
        active_members: r.get(8),
        suspended_members: r.get(9),
        removed_last_30_days: r.get(10),
        utilization_pct: r.get(11),
        unused_seats: r.get(12),
        unused_seat_cost: r.get(13),
        over_allocated: r.get(14),
        seats_short: r.get(15),
        data_as_of: r.get(16),
        last_sync_at: r.get(17),
        last_sync_outcome: r.get(18),
        last_sync_error_kind: r.get(19),
    }
}

/// One integration's row of `seat_allocation`, or every integration's (by name).
pub async fn seat_allocation(
    c: &impl GenericClient,
    id: Option<Uuid>,
) -> Result<Vec<SeatAllocation>, StoreError> {
    let rows = match id {
        Some(id) => {
            c.query(
                &format!(
                    "SELECT {ALLOCATION_COLUMNS} FROM seat_allocation WHERE integration_id = $1"
                ),
                &[&id],
            )
            .await?
        }
        None => {
            c.query(
                &format!(
                    "SELECT {ALLOCATION_COLUMNS} FROM seat_allocation ORDER BY name, integration_id"
                ),
                &[],
            )
            .await?
        }
    };
    if let (Some(id), true) = (id, rows.is_empty()) {
        return Err(StoreError::IntegrationNotFound { id });
    }
    Ok(rows.iter().map(allocation_from_row).collect())
}

/// The whole event history of an integration, summed per ISO week (UTC). A few hundred rows
/// even for years of history: the weekly rebuild happens in `report::weekly_trend`.
pub async fn weekly_activity(
    c: &impl GenericClient,
    integration_id: Uuid,
) -> Result<Vec<WeekActivity>, StoreError> {
    let rows = c
        .query(
            "SELECT date_trunc('week', occurred_at AT TIME ZONE 'UTC')::date AS week, \
                    count(*) FILTER (WHERE type = 'user.added'), \
                    count(*) FILTER (WHERE type = 'user.deactivated'), \
                    count(*) FILTER (WHERE type = 'user.reactivated'), \
                    count(*) FILTER (WHERE type = 'user.removed'), \
                    coalesce(sum(active_delta), 0)::bigint \
             FROM member_timeline WHERE integration_id = $1 GROUP BY 1 ORDER BY 1",
            &[&integration_id],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| WeekActivity {
            week_start: r.get(0),
            added: r.get(1),
            deactivated: r.get(2),
            reactivated: r.get(3),
            removed: r.get(4),
            active_delta: r.get(5),
        })
        .collect())
}

/// Every version of the purchased seat count, oldest first.
pub async fn seat_history(
    c: &impl GenericClient,
    integration_id: Uuid,
) -> Result<Vec<(DateTime<Utc>, Option<i64>)>, StoreError> {
    let rows = c
        .query(
            "SELECT changed_at, purchased_seats::bigint FROM seat_plan_history \
             WHERE integration_id = $1 ORDER BY changed_at, id",
            &[&integration_id],
        )
        .await?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}

const MEMBER_COLUMNS: &str = "scim_id, user_name, email, display_name, given_name, family_name, active, \
     removed_at IS NOT NULL, first_seen_at, last_changed_at, removed_at";

fn member_from_row(r: &tokio_postgres::Row) -> Member {
    Member {
        scim_id: r.get(0),
        user_name: r.get(1),
        email: r.get(2),
        display_name: r.get(3),
        given_name: r.get(4),
        family_name: r.get(5),
        state: member_state(r.get(6), r.get(7)),
        first_seen_at: r.get(8),
        last_changed_at: r.get(9),
        removed_at: r.get(10),
    }
}

const TIMELINE_COLUMNS: &str =
    "t.scim_id, t.seq, t.event_id, t.sync_id, t.type, t.occurred_at, t.active, t.changed_fields";

fn timeline_from_row(r: &tokio_postgres::Row) -> TimelineEvent {
    TimelineEvent {
        scim_id: r.get(0),
        seq: r.get(1),
        event_id: r.get(2),
        sync_id: r.get(3),
        event_type: r.get(4),
        occurred_at: r.get(5),
        active: r.get(6),
        changed_fields: r.get(7),
    }
}

/// Members that are suspended or removed, with their timelines: what `report reclaim`
/// examines. Active members are not read at all.
pub async fn reclaim_candidates(
    c: &impl GenericClient,
    integration_id: Uuid,
) -> Result<(Vec<Member>, Vec<TimelineEvent>), StoreError> {
    get_integration(c, integration_id).await?;
    let members = c
        .query(
            &format!(
                "SELECT {MEMBER_COLUMNS} FROM directory_users \
                 WHERE integration_id = $1 AND (removed_at IS NOT NULL OR NOT active) ORDER BY scim_id"
            ),
            &[&integration_id],
        )
        .await?;
    let events = c
        .query(
            &format!(
                "SELECT {TIMELINE_COLUMNS} FROM member_timeline t JOIN directory_users d \
                   ON d.integration_id = t.integration_id AND d.scim_id = t.scim_id \
                 WHERE t.integration_id = $1 AND (d.removed_at IS NOT NULL OR NOT d.active) \
                 ORDER BY t.seq"
            ),
            &[&integration_id],
        )
        .await?;
    Ok((
        members.iter().map(member_from_row).collect(),
        events.iter().map(timeline_from_row).collect(),
    ))
}

/// `opsync users`: members by state and a case-insensitive search in user name, email and
/// display name, ordered by user name.
pub async fn members(
    c: &impl GenericClient,
    integration_id: Uuid,
    state: Option<&str>,
    search: Option<&str>,
) -> Result<Vec<Member>, StoreError> {
    get_integration(c, integration_id).await?;
    let pattern = search.map(|s| {
        format!(
            "%{}%",
            s.replace('\\', "\\\\")
                .replace('%', "\\%")
                .replace('_', "\\_")
        )
    });
    let rows = c
        .query(
            &format!(
                "SELECT {MEMBER_COLUMNS} FROM directory_users WHERE integration_id = $1 \
                 AND ($2::text IS NULL OR \
                      ($2 = 'removed' AND removed_at IS NOT NULL) OR \
                      ($2 = 'active' AND removed_at IS NULL AND active) OR \
                      ($2 = 'suspended' AND removed_at IS NULL AND NOT active)) \
                 AND ($3::text IS NULL OR user_name ILIKE $3 OR email ILIKE $3 OR display_name ILIKE $3) \
                 ORDER BY lower(coalesce(user_name, email, scim_id)), scim_id"
            ),
            &[&integration_id, &state, &pattern],
        )
        .await?;
    Ok(rows.iter().map(member_from_row).collect())
}

/// `opsync user`: one member and every event about it, oldest first.
pub async fn member_with_timeline(
    c: &impl GenericClient,
    integration_id: Uuid,
    scim_id: &str,
) -> Result<(Member, Vec<TimelineEvent>), StoreError> {
    get_integration(c, integration_id).await?;
    let row = c
        .query_opt(
            &format!(
                "SELECT {MEMBER_COLUMNS} FROM directory_users WHERE integration_id = $1 AND scim_id = $2"
            ),
            &[&integration_id, &scim_id],
        )
        .await?
        .ok_or_else(|| StoreError::MemberNotFound {
            integration_id,
            scim_id: scim_id.to_string(),
        })?;
    let events = c
        .query(
            &format!(
                "SELECT {TIMELINE_COLUMNS} FROM member_timeline t \
                 WHERE t.integration_id = $1 AND t.scim_id = $2 ORDER BY t.seq"
            ),
            &[&integration_id, &scim_id],
        )
        .await?;
    Ok((
        member_from_row(&row),
        events.iter().map(timeline_from_row).collect(),
    ))
}

/// The subscription facts `integration set-plan` changes; `None` leaves a fact as it is.
#[derive(Debug, Default, Clone)]
pub struct PlanUpdate {
    pub seats: Option<i32>,
    /// Normalised by `report::parse_amount`, with its currency.
    pub price: Option<(String, String)>,
    pub billing_period: Option<String>,
    pub renewal_date: Option<NaiveDate>,
}

/// Changes the plan; the `integrations_plan_changed` trigger records the new version in
/// `seat_plan_history` (in the same statement, so history and plan never disagree).
pub async fn set_plan(c: &impl GenericClient, id: Uuid, p: &PlanUpdate) -> Result<(), StoreError> {
    let (price, currency) = match &p.price {
        Some((a, c)) => (Some(a.as_str()), Some(c.as_str())),
        None => (None, None),
    };
    let n = c
        .execute(
            "UPDATE integrations SET \
               purchased_seats = coalesce($2, purchased_seats), \
               price_per_seat = coalesce($3::text::numeric, price_per_seat), \
               currency = coalesce($4, currency), \
               billing_period = coalesce($5, billing_period), \
               renewal_date = coalesce($6, renewal_date), \
               updated_at = now() \
             WHERE id = $1",
            &[
                &id,
                &p.seats,
                &price,
                &currency,
                &p.billing_period,
                &p.renewal_date,
            ],
        )
        .await?;
    found(n, id)
}
