//! The score chart of a customer's profile: pure geometry from the score
//! history, the risk bands and the alerts, rendered by the template as inline
//! SVG (no chart library, no request to any other host).

use chrono::{DateTime, Duration, Utc};
use perly_domain::risk::{RiskBands, RiskLevel};
use perly_store::{AlertRecord, HistoryPoint};

pub struct Band {
    pub y: i64,
    pub h: i64,
    pub class: &'static str,
}

pub struct Tick {
    pub y: i64,
    pub label: String,
}

pub struct XLabel {
    pub x: i64,
    pub label: String,
    /// SVG text-anchor: the first label starts at the axis, the last ends at it.
    pub anchor: &'static str,
}

pub struct Marker {
    pub x: i64,
    pub y: i64,
    pub class: &'static str,
    pub label: String,
}

pub struct Chart {
    pub width: i64,
    pub height: i64,
    pub left: i64,
    pub plot_width: i64,
    pub bands: Vec<Band>,
    pub ticks: Vec<Tick>,
    pub x_labels: Vec<XLabel>,
    /// SVG path data of the score line.
    pub path: String,
    pub markers: Vec<Marker>,
    /// Accessible description.
    pub summary: String,
    pub caption: String,
}

const W: i64 = 800;
const H: i64 = 260;
const LEFT: i64 = 40;
const RIGHT: i64 = 12;
const TOP: i64 = 10;
const BOTTOM: i64 = 24;

/// Builds the chart of the last `days` days ending at `now`.
pub fn build(
    history: &[HistoryPoint],
    alerts: &[AlertRecord],
    bands: &RiskBands,
    now: DateTime<Utc>,
    days: i64,
) -> Chart {
    let start = now - Duration::days(days);
    let plot_w = W - LEFT - RIGHT;
    let plot_h = H - TOP - BOTTOM;
    let x = |t: DateTime<Utc>| {
        let frac = (t - start).num_seconds() as f64 / (now - start).num_seconds().max(1) as f64;
        LEFT + (frac.clamp(0.0, 1.0) * plot_w as f64).round() as i64
    };
    let y = |score: f64| TOP + (((100.0 - score.clamp(0.0, 100.0)) / 100.0) * plot_h as f64).round() as i64;
    let band_rows = [
        (100.0, bands.low, "low"),
        (bands.low, bands.medium, "medium"),
        (bands.medium, bands.high, "high"),
        (bands.high, 0.0, "critical"),
    ];
    let band_rects = band_rows
        .iter()
        .map(|(hi, lo, class)| Band {
            y: y(*hi),
            h: (y(*lo) - y(*hi)).max(0),
            class,
        })
        .collect();
    let ticks = [0, 25, 50, 75, 100]
        .iter()
        .map(|s| Tick {
            y: y(f64::from(*s)),
            label: s.to_string(),
        })
        .collect();
    let x_labels = (0..=3)
        .map(|i| {
            let t = start + Duration::days(days * i / 3);
            let anchor = match i {
                0 => "start",
                3 => "end",
                _ => "middle",
            };
            XLabel {
                x: x(t),
                label: t.format("%b %-d").to_string(),
                anchor,
            }
        })
        .collect();
    // One point per day (the last score of the day) keeps the path small.
    let mut daily: Vec<&HistoryPoint> = Vec::new();
    for p in history.iter().filter(|p| p.at >= start) {
        match daily.last() {
            Some(last) if last.at.date_naive() == p.at.date_naive() => {
                daily.pop();
                daily.push(p);
            }
            _ => daily.push(p),
        }
    }
    let path = daily
        .iter()
        .enumerate()
        .map(|(i, p)| format!("{}{} {}", if i == 0 { "M" } else { " L" }, x(p.at), y(p.score as f64)))
        .collect::<String>();
    let markers = alerts
        .iter()
        .filter(|a| a.occurred_at >= start)
        .map(|a| Marker {
            x: x(a.occurred_at),
            y: y(a.score as f64),
            class: a.risk_level.as_str(),
            label: format!(
                "{} · {} · {}",
                a.kind.label(),
                a.occurred_at.format("%b %-d"),
                a.headline
            ),
        })
        .collect::<Vec<_>>();
    let summary = match (daily.first(), daily.last()) {
        (Some(first), Some(last)) => format!(
            "Health score from {} on {} to {} on {}, with {} alerts",
            first.score,
            first.at.format("%b %-d"),
            last.score,
            last.at.format("%b %-d"),
            markers.len()
        ),
        _ => "No score history yet".to_owned(),
    };
    let lowest = daily.iter().map(|p| p.score).min();
    let caption = match lowest {
        Some(l) => format!("Daily health score over {days} days; lowest {l}. Dots mark alerts (hover for details). Bands: low, medium, high, critical."),
        None => "No score history yet.".to_owned(),
    };
    Chart {
        width: W,
        height: H,
        left: LEFT,
        plot_width: plot_w,
        bands: band_rects,
        ticks,
        x_labels,
        path,
        markers,
        summary,
        caption,
    }
}

/// Risk level of a score under the bands, for markers without one.
pub fn level(bands: &RiskBands, score: i64) -> RiskLevel {
    bands.level(score as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_path_has_one_point_per_day_inside_the_plot() {
        let now = Utc::now();
        let history: Vec<HistoryPoint> = (0..90)
            .flat_map(|d| {
                (0..3).map(move |h| HistoryPoint {
                    at: now - Duration::days(d) - Duration::hours(h),
                    score: 50 + (d % 10),
                    risk_level: RiskLevel::Medium,
                })
            })
            .rev()
            .collect();
        let c = build(&history, &[], &RiskBands::default(), now, 90);
        let points = c.path.matches('L').count() + 1;
        assert!((89..=91).contains(&points), "{points}");
        assert!(c.path.starts_with('M'));
        assert!(c.summary.starts_with("Health score from"));
        assert_eq!(c.bands.len(), 4);
    }
}
