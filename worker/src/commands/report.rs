//! `opsync report seats|reclaim|trend`, `opsync users`, `opsync user`: what Viio shows the
//! customer about seats and provisioning. The figures come from `opsync_shared::insight`
//! (SQL views) and `opsync_shared::report` (pure); this module only prints them.

use crate::cli::{
    ReportCommand, ReportIdArgs, ReportSeatsArgs, ReportTrendArgs, UserArgs, UsersArgs,
};
use crate::exit;
use crate::output::{self, Format};
use chrono::{DateTime, NaiveDate, Utc};
use opsync_shared::insight;
use opsync_shared::report::{self, SeatReport};
use opsync_shared::store::StoreError;
use serde_json::json;

pub async fn run(cmd: ReportCommand) -> u8 {
    match cmd {
        ReportCommand::Seats(a) => seats(a).await,
        ReportCommand::Reclaim(a) => reclaim(a).await,
        ReportCommand::Trend(a) => trend(a).await,
    }
}

fn ts(t: &Option<DateTime<Utc>>) -> Option<String> {
    t.map(|t| t.format("%Y-%m-%d %H:%M").to_string())
}

fn rfc(t: &Option<DateTime<Utc>>) -> Option<String> {
    t.map(opsync_shared::events::rfc3339)
}

fn s<T: ToString>(v: Option<T>) -> Option<String> {
    v.map(|v| v.to_string())
}

fn print(format: Format, headers: &[&str], rows: &[Vec<Option<String>>]) -> u8 {
    match format {
        Format::Csv => match output::csv(headers, rows) {
            Ok(()) => exit::OK,
            Err(e) => {
                eprintln!("error[output]: cannot write CSV ({e}); check where stdout goes");
                exit::INTERNAL
            }
        },
        _ => {
            output::table_opt(headers, rows);
            exit::OK
        }
    }
}

fn today() -> NaiveDate {
    Utc::now().date_naive()
}

/// The seat report of each allocation row, with the projection from its recent trend.
async fn seat_reports(
    conn: &impl deadpool_postgres::GenericClient,
    id: Option<uuid::Uuid>,
) -> Result<Vec<SeatReport>, StoreError> {
    let mut out = Vec::new();
    for a in insight::seat_allocation(conn, id).await? {
        let activity = insight::weekly_activity(conn, a.integration_id).await?;
        out.push(report::seat_report(a, &activity, today()));
    }
    Ok(out)
}

/// How current an integration's data is (also: the integration exists).
async fn freshness_of(
    conn: &impl deadpool_postgres::GenericClient,
    id: uuid::Uuid,
) -> Result<report::Freshness, StoreError> {
    let alloc = insight::seat_allocation(conn, Some(id)).await?;
    Ok(report::freshness(&alloc[0]))
}

async fn seats(a: ReportSeatsArgs) -> u8 {
    let format = Format::from(a.format);
    let (reports, page) = match super::with_conn(&a.db, format.json(), async |conn| {
        let reports = seat_reports(conn, a.id).await?;
        let page = match (a.id, &a.html) {
            (Some(id), Some(_)) => {
                let activity = insight::weekly_activity(conn, id).await?;
                let history = insight::seat_history(conn, id).await?;
                // The chart spans the history it has, up to --chart-weeks.
                let weeks = report::weeks_of_history(&activity, today(), a.chart_weeks);
                let trend = report::weekly_trend(&activity, today(), weeks);
                let now = Utc::now();
                let points = report::chart_points(&trend, &history, now);
                Some(report::html::seats_page(&reports[0], &points, now))
            }
            _ => None,
        };
        Ok::<_, StoreError>((reports, page))
    })
    .await
    {
        Ok(r) => r,
        Err(code) => return code,
    };
    if let (Some(path), Some(page)) = (&a.html, page)
        && let Err(e) = std::fs::write(path, page)
    {
        output::error(
            format.json(),
            "output",
            "permanent",
            &format!(
                "cannot write {} ({e}); choose a writable path for --html",
                path.display()
            ),
        );
        return exit::BAD_INPUT;
    }
    match format {
        Format::Json => {
            let v = if a.id.is_some() {
                json!(reports[0])
            } else {
                json!(reports)
            };
            println!("{v}");
            exit::OK
        }
        Format::Table if a.id.is_some() => {
            print_one(&reports[0]);
            if let Some(p) = &a.html {
                eprintln!("wrote {}", p.display());
            }
            exit::OK
        }
        _ => {
            let headers = [
                "INTEGRATION",
                "NAME",
                "SEATS",
                "ACTIVE",
                "SUSPENDED",
                "REMOVED 30D",
                "UTILIZATION",
                "UNUSED",
                "UNUSED COST",
                "CURRENCY",
                "BILLING",
                "OVER-ALLOCATED",
                "RENEWAL",
                "DAYS TO RENEWAL",
                "PROJECTED AT RENEWAL",
                "DATA AS OF",
                "FRESHNESS",
            ];
            let rows: Vec<Vec<Option<String>>> = reports
                .iter()
                .map(|r| {
                    let a = &r.allocation;
                    vec![
                        Some(a.integration_id.to_string()),
                        Some(a.name.clone()),
                        s(a.purchased_seats),
                        Some(a.active_members.to_string()),
                        Some(a.suspended_members.to_string()),
                        Some(a.removed_last_30_days.to_string()),
                        a.utilization_pct.map(|u| {
                            if format == Format::Csv {
                                format!("{u:.1}")
                            } else {
                                format!("{u:.1}%")
                            }
                        }),
                        s(a.unused_seats),
                        a.unused_seat_cost.clone(),
                        a.currency.clone(),
                        a.billing_period.clone(),
                        Some(if a.over_allocated { "yes" } else { "no" }.into()),
                        s(r.next_renewal),
                        s(r.days_to_renewal),
                        s(r.projected_active_at_renewal),
                        if format == Format::Csv {
                            rfc(&a.data_as_of)
                        } else {
                            ts(&a.data_as_of)
                        },
                        Some(r.freshness.state.to_string()),
                    ]
                })
                .collect();
            let code = print(format, &headers, &rows);
            if format == Format::Table {
                for r in reports.iter().filter(|r| r.freshness.state != "current") {
                    println!("{}: {}", r.allocation.name, r.freshness.note);
                }
            }
            code
        }
    }
}

/// One integration's report, as a person reads it.
fn print_one(r: &SeatReport) {
    let a = &r.allocation;
    let cur = a.currency.as_deref().unwrap_or("");
    let not_set = || "not set".to_string();
    let lines: Vec<(&str, String)> = vec![
        ("integration", format!("{} ({})", a.name, a.integration_id)),
        ("data", r.freshness.note.clone()),
        (
            "purchased seats",
            a.purchased_seats
                .map(|n| n.to_string())
                .unwrap_or_else(not_set),
        ),
        ("active members", a.active_members.to_string()),
        ("suspended members", a.suspended_members.to_string()),
        ("removed (30 days)", a.removed_last_30_days.to_string()),
        (
            "utilization",
            a.utilization_pct
                .map(|u| format!("{u:.1}%"))
                .unwrap_or_else(|| {
                    "not known (set seats with `opsync integration set-plan`)".into()
                }),
        ),
        (
            "unused seats",
            match (a.unused_seats, &a.unused_seat_cost, &a.billing_period) {
                (Some(n), Some(c), Some(b)) => format!("{n}, costing {c} {cur} per {}", period(b)),
                (Some(n), Some(c), None) => format!("{n}, costing {c} {cur} per billing period"),
                (Some(n), None, _) => format!("{n} (no price set)"),
                (None, _, _) => not_set(),
            },
        ),
        (
            "over-allocated",
            match (a.over_allocated, a.seats_short) {
                (true, Some(n)) => format!("YES: {n} more active members than seats"),
                _ => "no".into(),
            },
        ),
        (
            "renewal",
            match (r.next_renewal, r.days_to_renewal) {
                (Some(d), Some(days)) => format!(
                    "{d} (in {days} days{})",
                    a.billing_period
                        .as_deref()
                        .map(|b| format!(", {b}"))
                        .unwrap_or_default()
                ),
                _ => not_set(),
            },
        ),
        (
            "projected at renewal",
            r.projected_active_at_renewal
                .map(|n| format!("{n} active members (weekly trend, up to 12 weeks)"))
                .unwrap_or_else(|| "needs a renewal date".into()),
        ),
    ];
    for (k, v) in lines {
        println!("{k:<22}{v}");
    }
}

fn period(billing: &str) -> &'static str {
    match billing {
        "annual" => "year",
        _ => "month",
    }
}

async fn reclaim(a: ReportIdArgs) -> u8 {
    let format = Format::from(a.format);
    let (fresh, findings) = match super::with_conn(&a.db, format.json(), async |conn| {
        let fresh = freshness_of(conn, a.id).await?;
        let (members, timeline) = insight::reclaim_candidates(conn, a.id).await?;
        Ok::<_, StoreError>((fresh, report::reclaim(&members, &timeline, Utc::now())))
    })
    .await
    {
        Ok(r) => r,
        Err(code) => return code,
    };
    if format == Format::Json {
        println!(
            "{}",
            json!({"integration_id": a.id, "freshness": fresh, "findings": findings})
        );
        return exit::OK;
    }
    let headers = [
        "REASON",
        "SINCE",
        "DAYS",
        "SCIM ID",
        "USER NAME",
        "EMAIL",
        "EVIDENCE",
    ];
    let rows: Vec<Vec<Option<String>>> = findings
        .iter()
        .map(|f| {
            let evidence: Vec<String> = f
                .evidence
                .iter()
                .map(|e| {
                    if format == Format::Csv {
                        format!(
                            "{} {} {}",
                            e.event_type,
                            opsync_shared::events::rfc3339(e.occurred_at),
                            e.event_id
                        )
                    } else {
                        format!(
                            "{} {}",
                            e.event_type.trim_start_matches("user."),
                            e.occurred_at.format("%Y-%m-%d")
                        )
                    }
                })
                .collect();
            vec![
                Some(f.reason.as_str().into()),
                if format == Format::Csv {
                    Some(opsync_shared::events::rfc3339(f.since))
                } else {
                    Some(f.since.format("%Y-%m-%d").to_string())
                },
                Some(f.days.to_string()),
                Some(f.scim_id.clone()),
                f.user_name.clone(),
                f.email.clone(),
                Some(evidence.join(if format == Format::Csv { "; " } else { ", " })),
            ]
        })
        .collect();
    let code = print(format, &headers, &rows);
    if format == Format::Table {
        if findings.is_empty() {
            println!("nothing to reclaim: every member is active");
        }
        println!("{}", fresh.note);
    }
    code
}

async fn trend(a: ReportTrendArgs) -> u8 {
    let format = Format::from(a.format);
    let (fresh, weeks) = match super::with_conn(&a.db, format.json(), async |conn| {
        let fresh = freshness_of(conn, a.id).await?;
        let activity = insight::weekly_activity(conn, a.id).await?;
        Ok::<_, StoreError>((fresh, report::weekly_trend(&activity, today(), a.weeks)))
    })
    .await
    {
        Ok(r) => r,
        Err(code) => return code,
    };
    if format == Format::Json {
        println!(
            "{}",
            json!({"integration_id": a.id, "freshness": fresh, "weeks": weeks})
        );
        return exit::OK;
    }
    let headers = [
        "WEEK START",
        "WEEK END",
        "ADDED",
        "DEACTIVATED",
        "REACTIVATED",
        "REMOVED",
        "ACTIVE AT END",
    ];
    let rows: Vec<Vec<Option<String>>> = weeks
        .iter()
        .map(|w| {
            vec![
                Some(w.week_start.to_string()),
                Some(w.week_end.to_string()),
                Some(w.added.to_string()),
                Some(w.deactivated.to_string()),
                Some(w.reactivated.to_string()),
                Some(w.removed.to_string()),
                Some(w.active_at_end.to_string()),
            ]
        })
        .collect();
    let code = print(format, &headers, &rows);
    if format == Format::Table {
        println!("{}", fresh.note);
    }
    code
}

pub async fn users(a: UsersArgs) -> u8 {
    let format = Format::from(a.format);
    let members = match super::with_conn(&a.db, format.json(), async |conn| {
        insight::members(conn, a.id, a.state.as_deref(), a.search.as_deref()).await
    })
    .await
    {
        Ok(r) => r,
        Err(code) => return code,
    };
    if format == Format::Json {
        println!("{}", json!(members));
        return exit::OK;
    }
    let csv = format == Format::Csv;
    let t = |v: &Option<DateTime<Utc>>| if csv { rfc(v) } else { ts(v) };
    let headers = [
        "SCIM ID",
        "USER NAME",
        "EMAIL",
        "DISPLAY NAME",
        "STATE",
        "FIRST SEEN",
        "LAST CHANGED",
        "REMOVED AT",
    ];
    let rows: Vec<Vec<Option<String>>> = members
        .iter()
        .map(|m| {
            vec![
                Some(m.scim_id.clone()),
                m.user_name.clone(),
                m.email.clone(),
                m.display_name.clone(),
                Some(m.state.into()),
                t(&Some(m.first_seen_at)),
                t(&Some(m.last_changed_at)),
                t(&m.removed_at),
            ]
        })
        .collect();
    let code = print(format, &headers, &rows);
    if format == Format::Table {
        println!("{} members", members.len());
    }
    code
}

pub async fn user(a: UserArgs) -> u8 {
    let format = Format::from(a.format);
    let (member, timeline) = match super::with_conn(&a.db, format.json(), async |conn| {
        insight::member_with_timeline(conn, a.id, &a.scim_id).await
    })
    .await
    {
        Ok(r) => r,
        Err(code) => return code,
    };
    if format == Format::Json {
        println!("{}", json!({"member": member, "timeline": timeline}));
        return exit::OK;
    }
    let csv = format == Format::Csv;
    if !csv {
        let name = member
            .display_name
            .clone()
            .or(member.user_name.clone())
            .unwrap_or_default();
        println!("{name} ({})", member.scim_id);
        println!("user name     {}", output::opt(&member.user_name));
        println!("email         {}", output::opt(&member.email));
        println!("state         {}", member.state);
        println!(
            "first seen    {}",
            member.first_seen_at.format("%Y-%m-%d %H:%M")
        );
        println!(
            "last changed  {}",
            member.last_changed_at.format("%Y-%m-%d %H:%M")
        );
        if let Some(r) = member.removed_at {
            println!("removed at    {}", r.format("%Y-%m-%d %H:%M"));
        }
        println!();
    }
    let headers = [
        "OCCURRED AT",
        "TYPE",
        "ACTIVE",
        "CHANGED FIELDS",
        "EVENT ID",
    ];
    let rows: Vec<Vec<Option<String>>> = timeline
        .iter()
        .map(|e| {
            vec![
                Some(if csv {
                    opsync_shared::events::rfc3339(e.occurred_at)
                } else {
                    e.occurred_at.format("%Y-%m-%d %H:%M:%S").to_string()
                }),
                Some(e.event_type.clone()),
                Some(e.active.to_string()),
                if e.changed_fields.is_empty() {
                    None
                } else {
                    Some(e.changed_fields.join(if csv { ";" } else { ", " }))
                },
                Some(e.event_id.to_string()),
            ]
        })
        .collect();
    print(format, &headers, &rows)
}
