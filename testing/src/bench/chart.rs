//! Pictures of a run, as self-contained SVG: the latency distribution
//! (percentile curve, log scale) beside throughput over time.

use hdrhistogram::Histogram;

const W: f64 = 900.0;
const H: f64 = 320.0;
const PAD: f64 = 64.0;

/// Percentiles drawn on the latency curve.
const QUANTILES: [f64; 9] = [0.0, 0.5, 0.75, 0.9, 0.95, 0.99, 0.999, 0.9999, 1.0];

/// `title`, a latency histogram in microseconds, and per-second counts.
pub fn svg(title: &str, latency_us: &Histogram<u64>, per_second: &[u64], unit: &str) -> String {
    let mut out = format!(
        "<svg xmlns='http://www.w3.org/2000/svg' width='{W}' height='{H}' font-family='sans-serif' font-size='12'>\
         <rect width='100%' height='100%' fill='white'/>\
         <text x='{PAD}' y='20' font-size='15'>{}</text>",
        escape(title)
    );
    let half = W / 2.0;
    // Left: latency by percentile, x = "nines" (0, 0.5, 0.9 = 1 nine, 0.99 = 2 …), y = log ms.
    let points: Vec<(f64, f64)> = QUANTILES
        .iter()
        .map(|q| {
            let nines = if *q >= 1.0 { 4.5 } else { -(1.0 - q).log10() };
            (nines, latency_us.value_at_quantile(*q).max(1) as f64 / 1000.0)
        })
        .collect();
    let (lo, hi) = (
        points.iter().map(|p| p.1).fold(f64::MAX, f64::min).log10().floor(),
        points.iter().map(|p| p.1).fold(0.0, f64::max).log10().ceil().max(0.0),
    );
    let hi = if hi <= lo { lo + 1.0 } else { hi };
    let x = |n: f64| PAD + n / 4.5 * (half - 2.0 * PAD);
    let y = |ms: f64| H - PAD - (ms.log10() - lo) / (hi - lo) * (H - 2.0 * PAD);
    out += &axes(PAD, half - PAD);
    let path: Vec<String> = points.iter().map(|(n, ms)| format!("{:.1},{:.1}", x(*n), y(*ms))).collect();
    out += &format!("<polyline fill='none' stroke='#1f77b4' stroke-width='2' points='{}'/>", path.join(" "));
    for (label, n) in [("p50", 0.301), ("p90", 1.0), ("p99", 2.0), ("p99.9", 3.0), ("max", 4.5)] {
        out += &format!("<text x='{:.1}' y='{}' text-anchor='middle'>{label}</text>", x(n), H - PAD + 16.0);
    }
    for decade in lo as i32..=hi as i32 {
        let ms = 10f64.powi(decade);
        out += &format!(
            "<text x='{}' y='{:.1}' text-anchor='end'>{} ms</text>",
            PAD - 4.0,
            y(ms) + 4.0,
            trim(ms)
        );
    }
    out += &format!("<text x='{:.1}' y='40'>latency by percentile</text>", PAD + 10.0);

    // Right: per-second throughput.
    let left = half + PAD;
    out += &axes(left, W - PAD);
    let max = per_second.iter().copied().max().unwrap_or(1).max(1) as f64;
    let n = per_second.len().max(1) as f64;
    let bar = (W - PAD - left) / n;
    for (i, v) in per_second.iter().enumerate() {
        let h = *v as f64 / max * (H - 2.0 * PAD);
        out += &format!(
            "<rect x='{:.1}' y='{:.1}' width='{:.1}' height='{:.1}' fill='#2ca02c'/>",
            left + i as f64 * bar,
            H - PAD - h,
            (bar - 1.0).max(1.0),
            h
        );
    }
    out += &format!(
        "<text x='{:.1}' y='40'>{} per second (peak {})</text>",
        left + 10.0,
        escape(unit),
        max as u64
    );
    out += &format!(
        "<text x='{:.1}' y='{}' text-anchor='end'>{} s</text>",
        W - PAD,
        H - PAD + 16.0,
        per_second.len()
    );
    out + "</svg>\n"
}

fn axes(x0: f64, x1: f64) -> String {
    format!(
        "<line x1='{x0}' y1='{b}' x2='{x1}' y2='{b}' stroke='black'/><line x1='{x0}' y1='{PAD}' x2='{x0}' y2='{b}' stroke='black'/>",
        b = H - PAD
    )
}

fn trim(ms: f64) -> String {
    if ms >= 1.0 {
        format!("{ms:.0}")
    } else {
        format!("{ms}")
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}
