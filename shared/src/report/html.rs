//! `opsync report seats ID --html FILE`: one self-contained page. No script, no external
//! stylesheet, font or image: it must open from an e-mail attachment or an air-gapped share,
//! and print. The chart is inline SVG drawn here, from the same figures as the JSON report;
//! every figure carries its raw value in a `data-value` attribute so a test (and a curious
//! reader of the source) can check one against the other.

use super::{ChartPoint, SeatReport};
use chrono::{DateTime, Utc};
use std::fmt::Write;

/// Colours of the two series (also used by the screenshot test to find them on screen).
pub const ACTIVE_COLOUR: &str = "#2563eb";
pub const SEATS_COLOUR: &str = "#dc2626";

const WIDTH: f64 = 760.0;
const HEIGHT: f64 = 320.0;
const LEFT: f64 = 56.0;
const RIGHT: f64 = 24.0;
const TOP: f64 = 36.0;
const BOTTOM: f64 = 44.0;

pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A round tick step giving about five ticks up to `max`.
fn tick_step(max: f64) -> f64 {
    let raw = (max / 5.0).max(1.0);
    let mag = 10f64.powf(raw.log10().floor());
    for m in [1.0, 2.0, 5.0, 10.0] {
        if raw <= m * mag {
            return m * mag;
        }
    }
    10.0 * mag
}

/// The chart of active members against purchased seats, one point per week end.
pub fn chart_svg(points: &[ChartPoint]) -> String {
    let top_value = points
        .iter()
        .flat_map(|p| [Some(p.active), p.seats])
        .flatten()
        .max()
        .unwrap_or(0)
        .max(1) as f64;
    let step = tick_step(top_value * 1.1);
    let y_max = (top_value * 1.1 / step).ceil() * step;
    let plot_w = WIDTH - LEFT - RIGHT;
    let plot_h = HEIGHT - TOP - BOTTOM;
    let n = points.len().max(1);
    let x = |i: usize| {
        if n == 1 {
            LEFT + plot_w / 2.0
        } else {
            LEFT + plot_w * i as f64 / (n - 1) as f64
        }
    };
    let y = |v: i64| TOP + plot_h * (1.0 - v as f64 / y_max);

    let mut s = String::new();
    let _ = write!(
        s,
        r#"<svg id="seat-chart" xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="Active members and purchased seats per week">"#
    );
    // Grid and y axis labels.
    let mut v = 0.0;
    while v <= y_max + 0.5 {
        let yy = y(v as i64);
        let _ = write!(
            s,
            r##"<line x1="{LEFT}" x2="{:.1}" y1="{yy:.1}" y2="{yy:.1}" stroke="#e5e7eb"/><text x="{:.1}" y="{:.1}" text-anchor="end" font-size="11" fill="#6b7280">{}</text>"##,
            WIDTH - RIGHT,
            LEFT - 6.0,
            yy + 4.0,
            v as i64
        );
        v += step;
    }
    // x labels: at most about eight, always the last.
    let every = n.div_ceil(8).max(1);
    for (i, p) in points.iter().enumerate() {
        if i % every == 0 || i + 1 == n {
            let _ = write!(
                s,
                r##"<text x="{:.1}" y="{:.1}" text-anchor="middle" font-size="11" fill="#6b7280">{}</text>"##,
                x(i),
                HEIGHT - BOTTOM + 18.0,
                p.week_end.format("%b %d")
            );
        }
    }
    // Purchased seats: a step line, broken where no seat count was set.
    let mut d = String::new();
    let mut prev: Option<i64> = None;
    for (i, p) in points.iter().enumerate() {
        match (prev, p.seats) {
            (_, None) => {}
            (None, Some(v)) => {
                let x0 = if n == 1 { x(i) - 40.0 } else { x(i) };
                let _ = write!(d, "M{x0:.1} {:.1} ", y(v));
            }
            (Some(_), Some(v)) => {
                let _ = write!(d, "H{:.1} V{:.1} ", x(i), y(v));
            }
        }
        prev = p.seats;
    }
    if n == 1 && points[0].seats.is_some() {
        let _ = write!(d, "H{:.1}", x(0) + 40.0);
    }
    let seat_values: Vec<String> = points
        .iter()
        .map(|p| p.seats.map(|s| s.to_string()).unwrap_or_default())
        .collect();
    let _ = write!(
        s,
        r#"<path id="seats-line" d="{}" fill="none" stroke="{SEATS_COLOUR}" stroke-width="3" stroke-dasharray="8 4" data-values="{}"/>"#,
        d.trim_end(),
        seat_values.join(",")
    );
    // Active members: a line with a dot per week.
    let pts: Vec<String> = points
        .iter()
        .enumerate()
        .map(|(i, p)| format!("{:.1},{:.1}", x(i), y(p.active)))
        .collect();
    let active_values: Vec<String> = points.iter().map(|p| p.active.to_string()).collect();
    let _ = write!(
        s,
        r#"<polyline id="active-line" points="{}" fill="none" stroke="{ACTIVE_COLOUR}" stroke-width="3" data-values="{}"/>"#,
        pts.join(" "),
        active_values.join(",")
    );
    for (i, p) in points.iter().enumerate() {
        let _ = write!(
            s,
            r#"<circle cx="{:.1}" cy="{:.1}" r="4" fill="{ACTIVE_COLOUR}"><title>{}: {} active</title></circle>"#,
            x(i),
            y(p.active),
            p.week_end,
            p.active
        );
    }
    // Legend.
    let _ = write!(
        s,
        r##"<line x1="{LEFT}" x2="{:.1}" y1="16" y2="16" stroke="{ACTIVE_COLOUR}" stroke-width="3"/><text x="{:.1}" y="20" font-size="12" fill="#111827">active members</text><line x1="{:.1}" x2="{:.1}" y1="16" y2="16" stroke="{SEATS_COLOUR}" stroke-width="3" stroke-dasharray="8 4"/><text x="{:.1}" y="20" font-size="12" fill="#111827">purchased seats</text>"##,
        LEFT + 24.0,
        LEFT + 30.0,
        LEFT + 150.0,
        LEFT + 174.0,
        LEFT + 180.0
    );
    s.push_str("</svg>");
    s
}

fn value_json(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::Null => String::new(),
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The whole page.
pub fn seats_page(
    report: &SeatReport,
    points: &[ChartPoint],
    generated_at: DateTime<Utc>,
) -> String {
    let a = &report.allocation;
    let json = serde_json::to_value(report).unwrap_or_default();
    let cur = a.currency.clone().unwrap_or_default();
    let money = |v: &Option<String>| {
        v.as_ref()
            .map(|m| format!("{m} {cur}").trim().to_string())
            .unwrap_or_else(|| "not set".into())
    };
    let count = |v: Option<i64>| v.map(|n| n.to_string()).unwrap_or_else(|| "not set".into());
    let rows: Vec<(&str, &str, String)> = vec![
        (
            "purchased_seats",
            "Purchased seats",
            count(a.purchased_seats),
        ),
        (
            "active_members",
            "Active members",
            a.active_members.to_string(),
        ),
        (
            "suspended_members",
            "Suspended members",
            a.suspended_members.to_string(),
        ),
        (
            "removed_last_30_days",
            "Removed in the last 30 days",
            a.removed_last_30_days.to_string(),
        ),
        (
            "utilization_pct",
            "Utilization",
            a.utilization_pct
                .map(|u| format!("{u:.1}%"))
                .unwrap_or_else(|| "not known (no seat count)".into()),
        ),
        ("unused_seats", "Unused seats", count(a.unused_seats)),
        (
            "unused_seat_cost",
            "Unused seats cost per billing period",
            match &a.billing_period {
                Some(b) if a.unused_seat_cost.is_some() => {
                    format!("{} ({b})", money(&a.unused_seat_cost))
                }
                _ => money(&a.unused_seat_cost),
            },
        ),
        (
            "over_allocated",
            "Over-allocated",
            match (a.over_allocated, a.seats_short) {
                (true, Some(short)) => format!("YES: {short} active members beyond the seats"),
                _ => "no".into(),
            },
        ),
        (
            "next_renewal",
            "Next renewal",
            report
                .next_renewal
                .map(|d| d.to_string())
                .unwrap_or_else(|| "not set".into()),
        ),
        (
            "days_to_renewal",
            "Days to renewal",
            count(report.days_to_renewal),
        ),
        (
            "projected_active_at_renewal",
            "Active members projected at renewal",
            count(report.projected_active_at_renewal),
        ),
    ];
    let mut table = String::new();
    for (key, label, shown) in rows {
        let raw = value_json(json.get(key).unwrap_or(&serde_json::Value::Null));
        let class = if key == "over_allocated" && a.over_allocated {
            r#" class="alert""#
        } else {
            ""
        };
        let _ = write!(
            table,
            r#"<tr><th scope="row">{}</th><td id="{key}" data-value="{}"{class}>{}</td></tr>"#,
            escape(label),
            escape(&raw),
            escape(&shown)
        );
    }
    format!(
        r#"<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Seat allocation: {name}</title>
<style>
body {{ font-family: system-ui, -apple-system, "Segoe UI", sans-serif; color: #111827; margin: 2rem; max-width: 52rem; }}
h1 {{ font-size: 1.4rem; margin-bottom: 0.2rem; }}
p.meta {{ color: #4b5563; margin-top: 0; }}
p.freshness {{ padding: 0.5rem 0.75rem; background: #f3f4f6; border-left: 4px solid #9ca3af; }}
p.freshness.stale, p.freshness.never_synced {{ background: #fef3c7; border-color: #d97706; }}
table {{ border-collapse: collapse; margin: 1rem 0 1.5rem; }}
th, td {{ text-align: left; padding: 0.3rem 1.2rem 0.3rem 0; border-bottom: 1px solid #e5e7eb; }}
th {{ font-weight: 500; color: #374151; }}
td {{ font-variant-numeric: tabular-nums; }}
td.alert {{ color: #b91c1c; font-weight: 600; }}
figure {{ margin: 0; }}
figcaption {{ color: #4b5563; font-size: 0.9rem; }}
</style>
</head>
<body>
<h1>Seat allocation: {name}</h1>
<p class="meta">1Password integration <code>{id}</code>, status {status}. Generated {generated}.</p>
<p id="freshness" class="freshness {fstate}" data-value="{fstate}">{fnote}</p>
<table id="summary">{table}</table>
<figure>
{svg}
<figcaption>Active members (solid) and purchased seats (dashed) at the end of each week, rebuilt from opsync's event history.</figcaption>
</figure>
</body>
</html>
"#,
        name = escape(&a.name),
        id = a.integration_id,
        status = escape(&a.status),
        generated = generated_at.format("%Y-%m-%d %H:%M UTC"),
        fstate = report.freshness.state,
        fnote = escape(&report.freshness.note),
        svg = chart_svg(points),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::{Freshness, SeatAllocation};
    use chrono::NaiveDate;
    use uuid::Uuid;

    fn report(name: &str) -> SeatReport {
        SeatReport {
            allocation: SeatAllocation {
                integration_id: Uuid::nil(),
                name: name.into(),
                status: "active".into(),
                purchased_seats: Some(10),
                price_per_seat: Some("7.99".into()),
                currency: Some("EUR".into()),
                billing_period: Some("monthly".into()),
                renewal_date: None,
                active_members: 12,
                suspended_members: 0,
                removed_last_30_days: 0,
                utilization_pct: Some(120.0),
                unused_seats: Some(0),
                unused_seat_cost: Some("0.00".into()),
                over_allocated: true,
                seats_short: Some(2),
                data_as_of: None,
                last_sync_at: None,
                last_sync_outcome: None,
                last_sync_error_kind: None,
            },
            next_renewal: None,
            days_to_renewal: None,
            projected_active_at_renewal: None,
            freshness: Freshness {
                state: "current",
                note: "data as of now".into(),
            },
        }
    }

    fn points(active: &[i64], seats: &[Option<i64>]) -> Vec<ChartPoint> {
        active
            .iter()
            .zip(seats)
            .enumerate()
            .map(|(i, (a, s))| ChartPoint {
                week_end: NaiveDate::from_ymd_opt(2026, 11, 1).unwrap()
                    + chrono::Duration::weeks(i as i64),
                active: *a,
                seats: *s,
            })
            .collect()
    }

    #[test]
    fn the_page_is_self_contained_and_escapes_names() {
        let page = seats_page(
            &report("<script>alert(1)</script> & co"),
            &points(&[1, 2], &[Some(10), Some(10)]),
            Utc::now(),
        );
        assert!(!page.contains("<script"));
        assert!(page.contains("&lt;script&gt;alert(1)&lt;/script&gt; &amp; co"));
        for external in ["http://", "https://", "src=", "@import", "url("] {
            let without_ns = page.replace("http://www.w3.org/2000/svg", "");
            assert!(!without_ns.contains(external), "{external}");
        }
        assert!(page.contains(r#"id="over_allocated" data-value="true" class="alert""#));
        assert!(page.contains(r#"id="active_members" data-value="12""#));
    }

    #[test]
    fn the_chart_carries_its_series() {
        let svg = chart_svg(&points(&[3, 5, 8], &[Some(10), None, Some(6)]));
        assert!(svg.contains(r#"data-values="3,5,8""#));
        assert!(svg.contains(r#"data-values="10,,6""#));
        // The seat line breaks where no seat count was set: two separate moves.
        let d = svg.split(r#"id="seats-line" d=""#).nth(1).unwrap();
        let d = &d[..d.find('"').unwrap()];
        assert_eq!(d.matches('M').count(), 2, "{d}");
        assert_eq!(svg.matches("<circle").count(), 3);
    }

    #[test]
    fn a_single_week_or_an_empty_directory_still_draws() {
        let svg = chart_svg(&points(&[0], &[None]));
        assert!(svg.contains(r#"id="active-line""#));
        let svg = chart_svg(&points(&[4], &[Some(5)]));
        assert!(svg.contains("H"), "{svg}");
        assert_eq!(tick_step(11.0), 5.0);
        assert_eq!(tick_step(1.1), 1.0);
        assert_eq!(tick_step(1100.0), 500.0);
    }
}
