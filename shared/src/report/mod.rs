//! Seat allocation and provisioning insight: the pure half of `opsync report`.
//!
//! The database gives facts (the `seat_allocation` and `member_timeline` views, the plan
//! history); everything derived from them over time lives here, with no I/O, so it can be
//! tested from known histories: the weekly trend rebuilt from events, the purchased seats in
//! effect at a date, the next renewal, the projection at renewal, the reclaim findings, and
//! what the report says about the freshness of its data.
//!
//! Weeks are ISO weeks in UTC, Monday to Sunday; a week's figures are the events that
//! occurred in it and the active count at its end (or now, for the current week).

pub mod html;

use chrono::{DateTime, Datelike, Duration, Months, NaiveDate, Utc};
use serde::Serialize;
use uuid::Uuid;

/// One row of the `seat_allocation` view.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SeatAllocation {
    pub integration_id: Uuid,
    pub name: String,
    pub status: String,
    pub purchased_seats: Option<i64>,
    /// Price of one seat for one billing period (exact decimal, as text).
    pub price_per_seat: Option<String>,
    pub currency: Option<String>,
    pub billing_period: Option<String>,
    pub renewal_date: Option<NaiveDate>,
    pub active_members: i64,
    pub suspended_members: i64,
    pub removed_last_30_days: i64,
    pub utilization_pct: Option<f64>,
    pub unused_seats: Option<i64>,
    /// `unused_seats` x `price_per_seat`: what the unused seats cost per billing period.
    pub unused_seat_cost: Option<String>,
    pub over_allocated: bool,
    /// Active members beyond the purchased seats.
    pub seats_short: Option<i64>,
    pub data_as_of: Option<DateTime<Utc>>,
    pub last_sync_at: Option<DateTime<Utc>>,
    pub last_sync_outcome: Option<String>,
    pub last_sync_error_kind: Option<String>,
}

/// Events of one week, as the database aggregates them from `member_timeline`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct WeekActivity {
    /// The Monday the week starts on.
    pub week_start: NaiveDate,
    pub added: i64,
    pub deactivated: i64,
    pub reactivated: i64,
    pub removed: i64,
    /// What the week's events did to the active count.
    pub active_delta: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct TrendWeek {
    pub week_start: NaiveDate,
    pub week_end: NaiveDate,
    pub added: i64,
    pub deactivated: i64,
    pub reactivated: i64,
    pub removed: i64,
    /// Active members at the end of the week (now, for the current week).
    pub active_at_end: i64,
}

/// The Monday of `d`'s ISO week.
pub fn week_start(d: NaiveDate) -> NaiveDate {
    d - Duration::days(i64::from(d.weekday().num_days_from_monday()))
}

/// The last `weeks` weeks up to and including the one holding `today`, rebuilt from the
/// weekly activity of the whole history (weeks before the window make its starting count;
/// weeks after `today` are ignored). Weeks without events are present with zeros.
pub fn weekly_trend(activity: &[WeekActivity], today: NaiveDate, weeks: u32) -> Vec<TrendWeek> {
    let weeks = weeks.max(1);
    let last = week_start(today);
    let first = last - Duration::weeks(i64::from(weeks) - 1);
    let mut active: i64 = activity
        .iter()
        .filter(|a| a.week_start < first)
        .map(|a| a.active_delta)
        .sum();
    (0..weeks)
        .map(|i| {
            let start = first + Duration::weeks(i64::from(i));
            let mut w = TrendWeek {
                week_start: start,
                week_end: start + Duration::days(6),
                added: 0,
                deactivated: 0,
                reactivated: 0,
                removed: 0,
                active_at_end: 0,
            };
            for a in activity
                .iter()
                .filter(|a| week_start(a.week_start) == start)
            {
                w.added += a.added;
                w.deactivated += a.deactivated;
                w.reactivated += a.reactivated;
                w.removed += a.removed;
                active += a.active_delta;
            }
            w.active_at_end = active;
            w
        })
        .collect()
}

/// The first week with any activity, to size a chart to the history it has.
pub fn first_active_week(activity: &[WeekActivity]) -> Option<NaiveDate> {
    activity.iter().map(|a| week_start(a.week_start)).min()
}

/// The purchased seats in effect at `at`, from the plan history (oldest first or not).
pub fn seats_at(history: &[(DateTime<Utc>, Option<i64>)], at: DateTime<Utc>) -> Option<i64> {
    history
        .iter()
        .filter(|(t, _)| *t <= at)
        .max_by_key(|(t, _)| *t)
        .and_then(|(_, s)| *s)
}

/// The renewal on or after `today`: a past renewal date rolls forward by whole billing
/// periods (an operator who set it last year still gets this year's). Without a billing
/// period a past date stays as it is.
pub fn next_renewal(renewal: NaiveDate, billing: Option<&str>, today: NaiveDate) -> NaiveDate {
    let step = match billing {
        Some("monthly") => Months::new(1),
        Some("annual") => Months::new(12),
        _ => return renewal,
    };
    let mut n = 0u32;
    let mut next = renewal;
    while next < today {
        n += 1;
        match renewal.checked_add_months(Months::new(step.as_u32() * n)) {
            Some(d) => next = d,
            None => return renewal,
        }
    }
    next
}

/// Least-squares slope of `(day, value)` points, per day; `None` with fewer than two days.
pub fn slope_per_day(points: &[(NaiveDate, f64)]) -> Option<f64> {
    let (first, _) = points.first()?;
    let xs: Vec<f64> = points
        .iter()
        .map(|(d, _)| (*d - *first).num_days() as f64)
        .collect();
    let n = points.len() as f64;
    let mx = xs.iter().sum::<f64>() / n;
    let my = points.iter().map(|(_, v)| v).sum::<f64>() / n;
    let sxx: f64 = xs.iter().map(|x| (x - mx).powi(2)).sum();
    if sxx == 0.0 {
        return None;
    }
    let sxy: f64 = xs
        .iter()
        .zip(points)
        .map(|(x, (_, y))| (x - mx) * (y - my))
        .sum();
    Some(sxy / sxx)
}

/// Weeks of history the projection looks at.
pub const PROJECTION_WEEKS: usize = 12;

/// The active count the trend projects at `renewal`: the current count moved along the
/// least-squares slope of the last [`PROJECTION_WEEKS`] week-end counts (the current week
/// counted at `today`). Flat when there is less than two weeks of history; never negative.
pub fn projected_active(
    trend: &[TrendWeek],
    current_active: i64,
    today: NaiveDate,
    renewal: NaiveDate,
) -> i64 {
    let tail = &trend[trend.len().saturating_sub(PROJECTION_WEEKS)..];
    let points: Vec<(NaiveDate, f64)> = tail
        .iter()
        .map(|w| (w.week_end.min(today), w.active_at_end as f64))
        .collect();
    let days = (renewal - today).num_days().max(0) as f64;
    let slope = slope_per_day(&points).unwrap_or(0.0);
    ((current_active as f64) + slope * days).round().max(0.0) as i64
}

/// How current a report's data is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Freshness {
    /// `current` (last sync succeeded), `stale` (a later sync failed), `never_synced`.
    pub state: &'static str,
    /// One sentence for a person.
    pub note: String,
}

fn when(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M UTC").to_string()
}

pub fn freshness(a: &SeatAllocation) -> Freshness {
    let failed = a.last_sync_outcome.as_deref() == Some("failed");
    let kind = a.last_sync_error_kind.as_deref().unwrap_or("unknown");
    match (a.data_as_of, a.last_sync_at) {
        (None, None) => Freshness {
            state: "never_synced",
            note: format!(
                "never synced: no members are known yet; run `opsync sync {}` or enqueue a job",
                a.integration_id
            ),
        },
        (None, Some(last)) => Freshness {
            state: "never_synced",
            note: format!(
                "no sync has succeeded yet: the last attempt at {} failed ({kind}); see `opsync integration show {}`",
                when(last),
                a.integration_id
            ),
        },
        (Some(ok), Some(last)) if failed && last > ok => Freshness {
            state: "stale",
            note: format!(
                "data as of the last successful sync at {}; the latest sync at {} failed ({kind})",
                when(ok),
                when(last)
            ),
        },
        (Some(ok), _) => Freshness {
            state: "current",
            note: format!("data as of the last successful sync at {}", when(ok)),
        },
    }
}

/// `opsync report seats`: the allocation plus what time adds to it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SeatReport {
    #[serde(flatten)]
    pub allocation: SeatAllocation,
    pub next_renewal: Option<NaiveDate>,
    pub days_to_renewal: Option<i64>,
    /// Active members the trend projects at the next renewal.
    pub projected_active_at_renewal: Option<i64>,
    pub freshness: Freshness,
}

/// The seat report of one allocation row: the next renewal, the days to it and the trend's
/// projection there, from the integration's weekly activity. The projection looks at the weeks
/// since the first event only (at most [`PROJECTION_WEEKS`]): weeks before the integration
/// existed would read as growth from zero.
pub fn seat_report(a: SeatAllocation, activity: &[WeekActivity], today: NaiveDate) -> SeatReport {
    let trend = weekly_trend(
        activity,
        today,
        weeks_of_history(activity, today, PROJECTION_WEEKS as u32),
    );
    let next = a
        .renewal_date
        .map(|r| next_renewal(r, a.billing_period.as_deref(), today));
    let projected = next.map(|r| projected_active(&trend, a.active_members, today, r));
    SeatReport {
        next_renewal: next,
        days_to_renewal: next.map(|r| (r - today).num_days()),
        projected_active_at_renewal: projected,
        freshness: freshness(&a),
        allocation: a,
    }
}

/// Weeks from the first one with activity to the current one, at most `max` (at least 1).
pub fn weeks_of_history(activity: &[WeekActivity], today: NaiveDate, max: u32) -> u32 {
    first_active_week(activity)
        .map(|first| ((week_start(today) - first).num_weeks() + 1).max(1) as u32)
        .unwrap_or(1)
        .min(max)
}

/// One point of the chart: active members and purchased seats at a week's end.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ChartPoint {
    pub week_end: NaiveDate,
    pub active: i64,
    pub seats: Option<i64>,
}

/// The chart's series: each trend week's active count and the seats in effect at its end
/// (for the current week: now).
pub fn chart_points(
    trend: &[TrendWeek],
    seat_history: &[(DateTime<Utc>, Option<i64>)],
    now: DateTime<Utc>,
) -> Vec<ChartPoint> {
    trend
        .iter()
        .map(|w| {
            let end = w
                .week_end
                .and_hms_opt(23, 59, 59)
                .map(|t| t.and_utc())
                .unwrap_or(now)
                .min(now);
            ChartPoint {
                week_end: w.week_end,
                active: w.active_at_end,
                seats: seats_at(seat_history, end),
            }
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Members and their timelines

/// A member as stored, with its state spelled out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Member {
    pub scim_id: String,
    pub user_name: Option<String>,
    pub email: Option<String>,
    pub display_name: Option<String>,
    pub given_name: Option<String>,
    pub family_name: Option<String>,
    /// `active`, `suspended` or `removed`.
    pub state: &'static str,
    pub first_seen_at: DateTime<Utc>,
    pub last_changed_at: DateTime<Utc>,
    pub removed_at: Option<DateTime<Utc>>,
}

pub fn member_state(active: bool, removed: bool) -> &'static str {
    match (removed, active) {
        (true, _) => "removed",
        (false, true) => "active",
        (false, false) => "suspended",
    }
}

/// One row of `member_timeline`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TimelineEvent {
    pub scim_id: String,
    #[serde(skip)]
    pub seq: i64,
    pub event_id: Uuid,
    pub sync_id: Uuid,
    #[serde(rename = "type")]
    pub event_type: String,
    pub occurred_at: DateTime<Utc>,
    pub active: bool,
    pub changed_fields: Vec<String>,
}

/// Why a member is worth a look before renewal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ReclaimReason {
    /// Suspended after having been reactivated: the seat flips back and forth.
    Resuspended,
    /// Suspended in 1Password (kept in the directory).
    Suspended,
    /// Gone from the bridge: check it is no longer billed.
    Removed,
}

impl ReclaimReason {
    pub fn as_str(self) -> &'static str {
        match self {
            ReclaimReason::Resuspended => "resuspended",
            ReclaimReason::Suspended => "suspended",
            ReclaimReason::Removed => "removed",
        }
    }
}

/// An event that supports a finding.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Evidence {
    pub event_id: Uuid,
    #[serde(rename = "type")]
    pub event_type: String,
    pub occurred_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReclaimFinding {
    pub scim_id: String,
    pub user_name: Option<String>,
    pub email: Option<String>,
    pub display_name: Option<String>,
    pub reason: ReclaimReason,
    /// Since when the member is in this state.
    pub since: DateTime<Utc>,
    pub days: i64,
    pub evidence: Vec<Evidence>,
}

fn evidence(e: &TimelineEvent) -> Evidence {
    Evidence {
        event_id: e.event_id,
        event_type: e.event_type.clone(),
        occurred_at: e.occurred_at,
    }
}

/// Members worth a look before renewal, from their stored state and timelines: suspended
/// (since their last deactivation, or since they were added suspended), suspended again
/// after a reactivation (with the deactivation, reactivation and re-suspension as evidence),
/// and removed from the bridge. Active members are never listed. Oldest first per reason.
pub fn reclaim(
    members: &[Member],
    timeline: &[TimelineEvent],
    now: DateTime<Utc>,
) -> Vec<ReclaimFinding> {
    use std::collections::HashMap;
    let mut by_member: HashMap<&str, Vec<&TimelineEvent>> = HashMap::new();
    for e in timeline {
        by_member.entry(e.scim_id.as_str()).or_default().push(e);
    }
    for events in by_member.values_mut() {
        events.sort_by_key(|e| e.seq);
    }
    let empty = Vec::new();
    let mut out: Vec<ReclaimFinding> = members
        .iter()
        .filter(|m| m.state != "active")
        .map(|m| {
            let events = by_member.get(m.scim_id.as_str()).unwrap_or(&empty);
            let last_of = |t: &str| events.iter().rev().find(|e| e.event_type == t).copied();
            let (reason, since, ev) = if m.state == "removed" {
                let removed = last_of("user.removed");
                let since = removed
                    .map(|e| e.occurred_at)
                    .or(m.removed_at)
                    .unwrap_or(m.last_changed_at);
                (
                    ReclaimReason::Removed,
                    since,
                    removed.map(evidence).into_iter().collect(),
                )
            } else {
                // Suspended: find the last deactivation, and a reactivation before it.
                let last_deact = events
                    .iter()
                    .rposition(|e| e.event_type == "user.deactivated");
                let reactivated_before = last_deact.and_then(|i| {
                    events[..i]
                        .iter()
                        .rposition(|e| e.event_type == "user.reactivated")
                });
                match (last_deact, reactivated_before) {
                    (Some(d), Some(r)) => {
                        let mut ev = Vec::new();
                        if let Some(first) = events[..r]
                            .iter()
                            .rev()
                            .find(|e| e.event_type == "user.deactivated" || !e.active)
                        {
                            ev.push(evidence(first));
                        }
                        ev.push(evidence(events[r]));
                        ev.push(evidence(events[d]));
                        (ReclaimReason::Resuspended, events[d].occurred_at, ev)
                    }
                    (Some(d), None) => (
                        ReclaimReason::Suspended,
                        events[d].occurred_at,
                        vec![evidence(events[d])],
                    ),
                    (None, _) => {
                        // Never deactivated while we watched: it arrived suspended.
                        let added = last_of("user.added");
                        (
                            ReclaimReason::Suspended,
                            added.map(|e| e.occurred_at).unwrap_or(m.first_seen_at),
                            added.map(evidence).into_iter().collect(),
                        )
                    }
                }
            };
            ReclaimFinding {
                scim_id: m.scim_id.clone(),
                user_name: m.user_name.clone(),
                email: m.email.clone(),
                display_name: m.display_name.clone(),
                reason,
                since,
                days: (now - since).num_days().max(0),
                evidence: ev,
            }
        })
        .collect();
    out.sort_by(|a, b| (a.reason, a.since, &a.scim_id).cmp(&(b.reason, b.since, &b.scim_id)));
    out
}

// ---------------------------------------------------------------------------------------------
// Operator input

/// A price as the operator typed it ("12", "7.5", "7.99"): at most two decimals, not
/// negative. Returned normalised with two decimals, the way Postgres stores `numeric(14,2)`.
pub fn parse_amount(s: &str) -> Result<String, String> {
    let bad = || {
        format!(
            "`{s}` is not an amount; write it like 7.99 (a dot, at most two decimals, no currency sign)"
        )
    };
    let t = s.trim();
    let (int, frac) = match t.split_once('.') {
        Some((i, f)) => (i, f),
        None => (t, ""),
    };
    if int.is_empty()
        || int.len() > 12
        || frac.len() > 2
        || !int.bytes().all(|b| b.is_ascii_digit())
        || !frac.bytes().all(|b| b.is_ascii_digit())
        || (t.contains('.') && frac.is_empty())
    {
        return Err(bad());
    }
    let int = int.trim_start_matches('0');
    Ok(format!(
        "{}.{:0<2}",
        if int.is_empty() { "0" } else { int },
        frac
    ))
}

/// An ISO 4217 code such as EUR or USD (upper-cased).
pub fn parse_currency(s: &str) -> Result<String, String> {
    let c = s.trim().to_ascii_uppercase();
    if c.len() == 3 && c.bytes().all(|b| b.is_ascii_uppercase()) {
        Ok(c)
    } else {
        Err(format!(
            "`{s}` is not a currency code; use the three letters of ISO 4217, e.g. EUR"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().to_utc()
    }

    fn week(
        start: &str,
        added: i64,
        deact: i64,
        react: i64,
        removed: i64,
        delta: i64,
    ) -> WeekActivity {
        WeekActivity {
            week_start: d(start),
            added,
            deactivated: deact,
            reactivated: react,
            removed,
            active_delta: delta,
        }
    }

    #[test]
    fn weeks_start_on_monday() {
        assert_eq!(week_start(d("2026-12-03")), d("2026-11-30")); // a Thursday
        assert_eq!(week_start(d("2026-11-30")), d("2026-11-30"));
        assert_eq!(week_start(d("2026-12-06")), d("2026-11-30")); // Sunday
    }

    #[test]
    fn trend_of_an_empty_history_is_zero_weeks() {
        let w = weekly_trend(&[], d("2026-12-03"), 4);
        assert_eq!(w.len(), 4);
        assert!(w.iter().all(|w| w.active_at_end == 0 && w.added == 0));
        assert_eq!(w[3].week_start, d("2026-11-30"));
        assert_eq!(w[0].week_start, d("2026-11-09"));
        assert_eq!(w[0].week_end, d("2026-11-15"));
    }

    #[test]
    fn trend_rebuilds_the_active_count_from_a_known_history() {
        // Week 1: 10 added (9 active, 1 suspended). Week 2: 2 suspended. Week 3: 1
        // reactivated, 1 active removed, 1 re-added after removal. Week 5: nothing.
        let activity = [
            week("2026-11-02", 10, 0, 0, 0, 9),
            week("2026-11-09", 0, 2, 0, 0, -2),
            week("2026-11-16", 1, 0, 1, 1, 1),
        ];
        let w = weekly_trend(&activity, d("2026-12-01"), 5);
        let counts: Vec<i64> = w.iter().map(|w| w.active_at_end).collect();
        assert_eq!(counts, vec![9, 7, 8, 8, 8]);
        assert_eq!(w[2].removed, 1);
        assert_eq!(w[2].reactivated, 1);
        assert_eq!(w[1].deactivated, 2);
        // A window that starts later carries the earlier weeks in its starting count.
        let w = weekly_trend(&activity, d("2026-12-01"), 2);
        assert_eq!(w[0].active_at_end, 8);
        assert_eq!(w[0].week_start, d("2026-11-23"));
    }

    #[test]
    fn trend_ignores_activity_after_today() {
        let activity = [
            week("2026-11-30", 5, 0, 0, 0, 5),
            week("2026-12-07", 3, 0, 0, 0, 3),
        ];
        let w = weekly_trend(&activity, d("2026-12-03"), 1);
        assert_eq!(w[0].active_at_end, 5);
    }

    #[test]
    fn seats_in_effect_follow_the_history() {
        let h = [
            (t("2026-01-01T00:00:00Z"), Some(10)),
            (t("2026-06-15T12:00:00Z"), Some(25)),
            (t("2026-09-01T00:00:00Z"), None),
        ];
        assert_eq!(seats_at(&h, t("2025-12-31T00:00:00Z")), None);
        assert_eq!(seats_at(&h, t("2026-03-01T00:00:00Z")), Some(10));
        assert_eq!(seats_at(&h, t("2026-06-15T12:00:00Z")), Some(25));
        assert_eq!(seats_at(&h, t("2026-10-01T00:00:00Z")), None);
    }

    #[test]
    fn chart_steps_when_seats_change_mid_period() {
        let activity = [week("2026-11-02", 12, 0, 0, 0, 12)];
        let trend = weekly_trend(&activity, d("2026-11-26"), 4);
        let h = [
            (t("2026-10-01T00:00:00Z"), Some(10)),
            (t("2026-11-18T09:00:00Z"), Some(15)),
        ];
        let pts = chart_points(&trend, &h, t("2026-11-26T10:00:00Z"));
        let seats: Vec<Option<i64>> = pts.iter().map(|p| p.seats).collect();
        assert_eq!(seats, vec![Some(10), Some(10), Some(15), Some(15)]);
        assert!(pts.iter().all(|p| p.active == 12));
    }

    #[test]
    fn renewal_rolls_forward_by_billing_periods() {
        let today = d("2026-12-03");
        assert_eq!(
            next_renewal(d("2027-03-01"), Some("annual"), today),
            d("2027-03-01")
        );
        assert_eq!(
            next_renewal(d("2025-03-01"), Some("annual"), today),
            d("2027-03-01")
        );
        assert_eq!(
            next_renewal(d("2026-01-31"), Some("monthly"), today),
            d("2026-12-31")
        );
        assert_eq!(next_renewal(d("2026-12-03"), Some("monthly"), today), today);
        assert_eq!(next_renewal(d("2026-01-01"), None, today), d("2026-01-01"));
    }

    #[test]
    fn slope_of_a_line_is_exact() {
        let p = [
            (d("2026-01-01"), 10.0),
            (d("2026-01-08"), 17.0),
            (d("2026-01-15"), 24.0),
        ];
        assert!((slope_per_day(&p).unwrap() - 1.0).abs() < 1e-9);
        assert_eq!(slope_per_day(&p[..1]), None);
        assert_eq!(slope_per_day(&[]), None);
    }

    #[test]
    fn projection_follows_the_trend_and_never_goes_negative() {
        // +7 active members a week for 4 weeks: +1 a day.
        let activity = [
            week("2026-11-09", 7, 0, 0, 0, 7),
            week("2026-11-16", 7, 0, 0, 0, 7),
            week("2026-11-23", 7, 0, 0, 0, 7),
            week("2026-11-30", 7, 0, 0, 0, 7),
        ];
        let today = d("2026-12-06"); // the Sunday: the last point is a whole week
        let trend = weekly_trend(&activity, today, 4);
        assert_eq!(projected_active(&trend, 28, today, d("2026-12-16")), 38);
        // Shrinking: -5 a week from 20 reaches 0 and stays there.
        let shrinking = [
            week("2026-11-09", 20, 0, 0, 0, 20),
            week("2026-11-16", 0, 5, 0, 0, -5),
            week("2026-11-23", 0, 5, 0, 0, -5),
            week("2026-11-30", 0, 5, 0, 0, -5),
        ];
        let trend = weekly_trend(&shrinking, today, 4);
        assert_eq!(projected_active(&trend, 5, today, d("2027-06-01")), 0);
        // One week of history: flat.
        let trend = weekly_trend(&[week("2026-11-30", 3, 0, 0, 0, 3)], today, 1);
        assert_eq!(projected_active(&trend, 3, today, d("2027-06-01")), 3);
    }

    fn alloc() -> SeatAllocation {
        SeatAllocation {
            integration_id: Uuid::nil(),
            name: "1Password Production".into(),
            status: "active".into(),
            purchased_seats: Some(10),
            price_per_seat: Some("7.99".into()),
            currency: Some("EUR".into()),
            billing_period: Some("monthly".into()),
            renewal_date: Some(d("2026-12-20")),
            active_members: 8,
            suspended_members: 1,
            removed_last_30_days: 1,
            utilization_pct: Some(80.0),
            unused_seats: Some(2),
            unused_seat_cost: Some("15.98".into()),
            over_allocated: false,
            seats_short: Some(0),
            data_as_of: Some(t("2026-12-03T10:00:00Z")),
            last_sync_at: Some(t("2026-12-03T10:00:00Z")),
            last_sync_outcome: Some("succeeded".into()),
            last_sync_error_kind: None,
        }
    }

    #[test]
    fn freshness_says_when_the_data_is_from() {
        let a = alloc();
        assert_eq!(freshness(&a).state, "current");
        assert!(freshness(&a).note.contains("2026-12-03 10:00 UTC"));
        let mut failed = alloc();
        failed.last_sync_at = Some(t("2026-12-03T11:00:00Z"));
        failed.last_sync_outcome = Some("failed".into());
        failed.last_sync_error_kind = Some("auth_rejected".into());
        let f = freshness(&failed);
        assert_eq!(f.state, "stale");
        assert!(
            f.note
                .contains("last successful sync at 2026-12-03 10:00 UTC"),
            "{}",
            f.note
        );
        assert!(f.note.contains("auth_rejected"));
        let mut never = alloc();
        never.data_as_of = None;
        never.last_sync_at = None;
        never.last_sync_outcome = None;
        assert_eq!(freshness(&never).state, "never_synced");
        never.last_sync_at = Some(t("2026-12-03T11:00:00Z"));
        never.last_sync_outcome = Some("failed".into());
        assert_eq!(freshness(&never).state, "never_synced");
        assert!(freshness(&never).note.contains("failed"));
    }

    #[test]
    fn seat_report_counts_days_to_renewal() {
        let r = seat_report(alloc(), &[], d("2026-12-03"));
        assert_eq!(r.freshness.state, "current");
        assert_eq!(r.next_renewal, Some(d("2026-12-20")));
        assert_eq!(r.days_to_renewal, Some(17));
        assert_eq!(r.projected_active_at_renewal, Some(8));
        let mut no_plan = alloc();
        no_plan.renewal_date = None;
        let r = seat_report(no_plan, &[], d("2026-12-03"));
        assert_eq!(r.days_to_renewal, None);
        assert_eq!(r.projected_active_at_renewal, None);
    }

    #[test]
    fn projection_ignores_the_weeks_before_the_first_event() {
        // 8 members added two weeks ago, nothing since: flat, not growth from zero.
        let mut a = alloc();
        a.active_members = 8;
        a.renewal_date = Some(d("2027-06-01"));
        let activity = [week("2026-11-16", 8, 0, 0, 0, 8)];
        let r = seat_report(a, &activity, d("2026-12-06"));
        assert_eq!(r.projected_active_at_renewal, Some(8));
        assert_eq!(weeks_of_history(&activity, d("2026-12-06"), 12), 3);
        assert_eq!(weeks_of_history(&activity, d("2026-12-06"), 2), 2);
        assert_eq!(weeks_of_history(&[], d("2026-12-06"), 12), 1);
    }

    fn member(id: &str, state: &'static str) -> Member {
        Member {
            scim_id: id.into(),
            user_name: Some(format!("{id}@example.com")),
            email: Some(format!("{id}@example.com")),
            display_name: None,
            given_name: None,
            family_name: None,
            state,
            first_seen_at: t("2026-01-01T00:00:00Z"),
            last_changed_at: t("2026-01-01T00:00:00Z"),
            removed_at: (state == "removed").then(|| t("2026-11-01T00:00:00Z")),
        }
    }

    fn ev(seq: i64, id: &str, ty: &str, at: &str, active: bool) -> TimelineEvent {
        TimelineEvent {
            scim_id: id.into(),
            seq,
            event_id: Uuid::from_u128(seq as u128),
            sync_id: Uuid::nil(),
            event_type: ty.into(),
            occurred_at: t(at),
            active,
            changed_fields: vec![],
        }
    }

    #[test]
    fn reclaim_finds_suspended_resuspended_and_removed_members_with_evidence() {
        let members = [
            member("a", "active"),
            member("s", "suspended"),
            member("r", "removed"),
            member("f", "suspended"),
            member("born", "suspended"),
        ];
        let timeline = [
            ev(1, "a", "user.added", "2026-01-01T00:00:00Z", true),
            ev(2, "s", "user.added", "2026-01-01T00:00:00Z", true),
            ev(3, "r", "user.added", "2026-01-01T00:00:00Z", true),
            ev(4, "f", "user.added", "2026-01-01T00:00:00Z", true),
            ev(5, "born", "user.added", "2026-02-01T00:00:00Z", false),
            ev(6, "s", "user.deactivated", "2026-03-01T00:00:00Z", false),
            ev(7, "f", "user.deactivated", "2026-04-01T00:00:00Z", false),
            ev(8, "f", "user.reactivated", "2026-05-01T00:00:00Z", true),
            ev(9, "a", "user.deactivated", "2026-05-01T00:00:00Z", false),
            ev(10, "a", "user.reactivated", "2026-06-01T00:00:00Z", true),
            ev(11, "f", "user.updated", "2026-06-01T00:00:00Z", true),
            ev(12, "f", "user.deactivated", "2026-07-01T00:00:00Z", false),
            ev(13, "r", "user.removed", "2026-11-01T00:00:00Z", true),
        ];
        let now = t("2026-12-01T00:00:00Z");
        let f = reclaim(&members, &timeline, now);
        let summary: Vec<(&str, ReclaimReason)> =
            f.iter().map(|f| (f.scim_id.as_str(), f.reason)).collect();
        assert_eq!(
            summary,
            vec![
                ("f", ReclaimReason::Resuspended),
                ("born", ReclaimReason::Suspended),
                ("s", ReclaimReason::Suspended),
                ("r", ReclaimReason::Removed),
            ]
        );
        let flip = &f[0];
        assert_eq!(flip.since, t("2026-07-01T00:00:00Z"));
        let kinds: Vec<&str> = flip
            .evidence
            .iter()
            .map(|e| e.event_type.as_str())
            .collect();
        assert_eq!(
            kinds,
            vec!["user.deactivated", "user.reactivated", "user.deactivated"]
        );
        assert_eq!(flip.evidence[0].occurred_at, t("2026-04-01T00:00:00Z"));
        assert_eq!(f[1].since, t("2026-02-01T00:00:00Z"));
        assert_eq!(f[1].evidence[0].event_type, "user.added");
        assert_eq!(f[2].days, (now - t("2026-03-01T00:00:00Z")).num_days());
        assert_eq!(f[3].evidence[0].event_type, "user.removed");
        assert_eq!(f[3].since, t("2026-11-01T00:00:00Z"));
    }

    #[test]
    fn reclaim_of_an_empty_or_all_active_directory_is_empty() {
        assert!(reclaim(&[], &[], Utc::now()).is_empty());
        let m = [member("a", "active")];
        assert!(reclaim(&m, &[], Utc::now()).is_empty());
    }

    #[test]
    fn a_member_seen_without_events_still_has_a_date() {
        // History from before opsync kept events (or trimmed): fall back to stored dates.
        let m = [member("s", "suspended"), member("r", "removed")];
        let f = reclaim(&m, &[], t("2026-12-01T00:00:00Z"));
        assert_eq!(f[0].since, t("2026-01-01T00:00:00Z"));
        assert!(f[0].evidence.is_empty());
        assert_eq!(f[1].since, t("2026-11-01T00:00:00Z"));
    }

    #[test]
    fn amounts_and_currencies_are_checked() {
        assert_eq!(parse_amount("7.99").unwrap(), "7.99");
        assert_eq!(parse_amount("12").unwrap(), "12.00");
        assert_eq!(parse_amount("7.5").unwrap(), "7.50");
        assert_eq!(parse_amount("0").unwrap(), "0.00");
        assert_eq!(parse_amount("007.10").unwrap(), "7.10");
        for bad in [
            "",
            "-1",
            "7.999",
            "7,99",
            "€7",
            "7.",
            ".5",
            "1e3",
            "9999999999999",
        ] {
            assert!(parse_amount(bad).is_err(), "{bad}");
        }
        assert_eq!(parse_currency("eur").unwrap(), "EUR");
        assert!(parse_currency("EURO").is_err());
        assert!(parse_currency("E1R").is_err());
    }
}
