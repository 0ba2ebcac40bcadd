//! The run drawn as Jepsen draws it: latency of every operation over time (log scale), ok
//! operations per second below, and the fault intervals shaded behind both. Plain SVG.

use std::fmt::Write;

use crate::checker::Op;
use crate::checker::Outcome;
use crate::nemesis::Fault;

const W: f64 = 1000.0;
const LEFT: f64 = 60.0;
const RIGHT: f64 = 140.0;
const LAT_TOP: f64 = 30.0;
const LAT_H: f64 = 280.0;
const TP_TOP: f64 = 350.0;
const TP_H: f64 = 120.0;
const H: f64 = 500.0;

fn fault_color(f: Fault) -> &'static str {
    match f {
        Fault::Kill => "#f4a3a3",
        Fault::Pause => "#f7d48a",
        Fault::Partition => "#a9c6f0",
        Fault::Client => "#c9b3ea",
        Fault::Clock => "#b5e0b5",
        Fault::LostWrites => "#e8a9d8",
    }
}

fn op_style(op: &Op) -> (&'static str, &'static str) {
    match (op.f.as_str(), op.outcome) {
        ("send", Outcome::Ok) => ("#1f5fbf", "send ok"),
        ("send", Outcome::Info) => ("#e08a00", "send info"),
        ("send", Outcome::Fail) => ("#c62828", "send fail"),
        (_, Outcome::Ok) => ("#2e7d32", "read ok"),
        (_, Outcome::Info) => ("#f0b060", "read info"),
        (_, Outcome::Fail) => ("#e57373", "read fail"),
    }
}

/// Draws `ops` (client operations with their times in ns) over `[0, end_s]`.
pub fn svg(ops: &[Op], faults: &[(Fault, f64, f64)], end_s: f64, title: &str) -> String {
    let end_s = end_s.max(1.0);
    let plot_w = W - LEFT - RIGHT;
    let x = |t: f64| LEFT + plot_w * (t / end_s).clamp(0.0, 1.0);
    // Latency axis: 1 ms .. 10 s, log10.
    let y_lat = |ms: f64| LAT_TOP + LAT_H * (1.0 - ((ms.max(1.0)).log10() / 4.0).clamp(0.0, 1.0));
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" font-size="11">"#
    );
    let _ = write!(s, r#"<rect width="{W}" height="{H}" fill="white"/>"#);
    let _ = write!(s, r#"<text x="{LEFT}" y="18" font-size="13">{}</text>"#, escape(title));
    for (f, a, b) in faults {
        let (xa, xb) = (x(*a), x(*b));
        let _ = write!(
            s,
            r#"<rect x="{xa:.1}" y="{LAT_TOP}" width="{:.1}" height="{:.1}" fill="{}" opacity="0.6"/>"#,
            (xb - xa).max(1.0),
            TP_TOP + TP_H - LAT_TOP,
            fault_color(*f)
        );
    }
    // Axes and grid.
    for (ms, label) in [(1.0, "1 ms"), (10.0, "10 ms"), (100.0, "100 ms"), (1000.0, "1 s"), (10000.0, "10 s")] {
        let y = y_lat(ms);
        let _ = write!(s, r##"<line x1="{LEFT}" x2="{:.1}" y1="{y:.1}" y2="{y:.1}" stroke="#ddd"/>"##, W - RIGHT);
        let _ = write!(s, r#"<text x="{:.1}" y="{:.1}" text-anchor="end">{label}</text>"#, LEFT - 4.0, y + 4.0);
    }
    let _ = write!(
        s,
        r#"<text x="14" y="{:.1}" transform="rotate(-90 14 {:.1})" text-anchor="middle">latency</text>"#,
        LAT_TOP + LAT_H / 2.0,
        LAT_TOP + LAT_H / 2.0
    );
    let step = if end_s > 120.0 {
        30.0
    } else if end_s > 30.0 {
        10.0
    } else {
        5.0
    };
    let mut t = 0.0;
    while t <= end_s {
        let _ =
            write!(s, r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{t:.0} s</text>"#, x(t), TP_TOP + TP_H + 14.0);
        t += step;
    }
    // Latency points.
    for op in ops.iter().filter(|o| o.f == "send" || o.f == "read") {
        let start = op.invoke_time as f64 / 1e9;
        let ms = match op.complete_time {
            Some(c) => (c.saturating_sub(op.invoke_time)) as f64 / 1e6,
            None => 10_000.0,
        };
        let (color, _) = op_style(op);
        let _ =
            write!(s, r#"<circle cx="{:.1}" cy="{:.1}" r="1.6" fill="{color}" opacity="0.7"/>"#, x(start), y_lat(ms));
    }
    // Throughput: ok operations completed per second.
    let buckets = end_s.ceil() as usize + 1;
    let mut per_s = vec![0u32; buckets];
    for op in ops.iter().filter(|o| (o.f == "send" || o.f == "read") && o.outcome == Outcome::Ok) {
        if let Some(c) = op.complete_time {
            let b = ((c as f64 / 1e9) as usize).min(buckets - 1);
            per_s[b] += 1;
        }
    }
    let max = per_s.iter().copied().max().unwrap_or(1).max(1) as f64;
    let y_tp = |v: f64| TP_TOP + TP_H * (1.0 - v / max);
    let points: Vec<String> =
        per_s.iter().enumerate().map(|(i, v)| format!("{:.1},{:.1}", x(i as f64 + 0.5), y_tp(*v as f64))).collect();
    let _ = write!(s, r##"<polyline points="{}" fill="none" stroke="#333" stroke-width="1.2"/>"##, points.join(" "));
    let _ = write!(s, r#"<text x="{:.1}" y="{:.1}" text-anchor="end">{max:.0}/s</text>"#, LEFT - 4.0, TP_TOP + 4.0);
    let _ = write!(s, r#"<text x="{:.1}" y="{:.1}" text-anchor="end">0</text>"#, LEFT - 4.0, TP_TOP + TP_H);
    let _ = write!(
        s,
        r#"<text x="14" y="{:.1}" transform="rotate(-90 14 {:.1})" text-anchor="middle">ok ops/s</text>"#,
        TP_TOP + TP_H / 2.0,
        TP_TOP + TP_H / 2.0
    );
    // Legend.
    let mut ly = LAT_TOP + 6.0;
    let lx = W - RIGHT + 12.0;
    for (color, label) in [
        ("#1f5fbf", "send ok"),
        ("#e08a00", "send info"),
        ("#c62828", "send fail"),
        ("#2e7d32", "read ok"),
        ("#f0b060", "read info"),
        ("#e57373", "read fail"),
    ] {
        let _ = write!(s, r#"<circle cx="{lx:.1}" cy="{ly:.1}" r="4" fill="{color}"/>"#);
        let _ = write!(s, r#"<text x="{:.1}" y="{:.1}">{label}</text>"#, lx + 8.0, ly + 4.0);
        ly += 16.0;
    }
    ly += 8.0;
    let mut seen: Vec<Fault> = faults.iter().map(|(f, _, _)| *f).collect();
    seen.sort();
    seen.dedup();
    for f in seen {
        let _ = write!(
            s,
            r#"<rect x="{:.1}" y="{:.1}" width="10" height="10" fill="{}"/>"#,
            lx - 5.0,
            ly - 5.0,
            fault_color(f)
        );
        let _ = write!(s, r#"<text x="{:.1}" y="{:.1}">{}</text>"#, lx + 8.0, ly + 4.0, f.name());
        ly += 16.0;
    }
    s.push_str("</svg>\n");
    s
}

fn escape(t: &str) -> String {
    t.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}
