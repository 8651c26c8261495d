//! Pictures of a run, as self-contained SVG: the latency distribution
//! (percentile curve, log scale) beside throughput over time.

use hdrhistogram::Histogram;

const W: f64 = 900.0;
const H: f64 = 340.0;
const PAD: f64 = 64.0;

/// Percentiles drawn on the latency curve.
const QUANTILES: [f64; 9] = [0.0, 0.5, 0.75, 0.9, 0.95, 0.99, 0.999, 0.9999, 1.0];

/// One line on a chart: a broker (or a phase), its latency histogram in
/// microseconds, and its per-second counts.
pub struct Series<'a> {
    pub name: &'a str,
    pub latency_us: &'a Histogram<u64>,
    pub per_second: &'a [u64],
}

const COLOURS: [&str; 8] =
    ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf"];

/// `title`, then the latency distribution of each series (left) and its
/// per-second throughput (right), one colour per series.
pub fn svg<'a>(title: &str, series: &[Series<'a>], unit: &str) -> String {
    let mut out = format!(
        "<svg xmlns='http://www.w3.org/2000/svg' width='{W}' height='{H}' font-family='sans-serif' font-size='12'>\
         <rect width='100%' height='100%' fill='white'/>\
         <text x='{PAD}' y='20' font-size='15'>{}</text>",
        escape(title)
    );
    let half = W / 2.0;
    // Left: latency by percentile, x = "nines" (0, 0.5, 0.9 = 1 nine, 0.99 = 2 …), y = log ms.
    let curves: Vec<Vec<(f64, f64)>> = series
        .iter()
        .map(|s| {
            QUANTILES
                .iter()
                .map(|q| {
                    let nines = if *q >= 1.0 { 4.5 } else { -(1.0 - q).log10() };
                    (nines, s.latency_us.value_at_quantile(*q).max(1) as f64 / 1000.0)
                })
                .collect()
        })
        .collect();
    let all = || curves.iter().flatten().map(|p| p.1);
    let lo = all().fold(f64::MAX, f64::min).log10().floor();
    let hi = all().fold(0.0, f64::max).log10().ceil().max(0.0);
    let (lo, hi) = if lo.is_finite() { (lo, hi) } else { (0.0, 1.0) };
    let hi = if hi <= lo { lo + 1.0 } else { hi };
    let x = |n: f64| PAD + n / 4.5 * (half - 2.0 * PAD);
    let y = |ms: f64| H - PAD - (ms.log10() - lo) / (hi - lo) * (H - 2.0 * PAD);
    out += &axes(PAD, half - PAD);
    for (i, curve) in curves.iter().enumerate() {
        let path: Vec<String> = curve.iter().map(|(n, ms)| format!("{:.1},{:.1}", x(*n), y(*ms))).collect();
        out += &format!(
            "<polyline fill='none' stroke='{}' stroke-width='2' points='{}'/>",
            COLOURS[i % COLOURS.len()],
            path.join(" ")
        );
    }
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

    // Right: per-second throughput, one line per series. A run's last count
    // covers only part of a second, so it is left out of the picture.
    let full =
        |s: &Series<'a>| -> usize { s.per_second.len().saturating_sub(1).max(1).min(s.per_second.len()) };
    let left = half + PAD;
    out += &axes(left, W - PAD);
    let max =
        series.iter().flat_map(|s| s.per_second[..full(s)].iter().copied()).max().unwrap_or(1).max(1) as f64;
    let n = series.iter().map(full).max().unwrap_or(1).max(2) as f64;
    // Log scale: brokers an order of magnitude apart both stay visible.
    // A second with nothing is drawn on the axis.
    let top = max.log10().ceil().max(1.0);
    let tx = |i: usize| left + i as f64 / (n - 1.0) * (W - PAD - left);
    let ty = |v: u64| H - PAD - (v.max(1) as f64).log10() / top * (H - 2.0 * PAD);
    for decade in 0..=top as i32 {
        let v = 10u64.pow(decade as u32);
        out += &format!(
            "<text x='{:.1}' y='{:.1}' text-anchor='end'>{}</text>",
            left - 4.0,
            ty(v) + 4.0,
            if v >= 1000 { format!("{}k", v / 1000) } else { v.to_string() }
        );
    }
    for (i, s) in series.iter().enumerate() {
        let colour = COLOURS[i % COLOURS.len()];
        let points = &s.per_second[..full(s)];
        if let [only] = points {
            // A run shorter than a second: one point, drawn as a dot.
            out += &format!("<circle cx='{:.1}' cy='{:.1}' r='4' fill='{colour}'/>", tx(0), ty(*only));
        } else if !points.is_empty() {
            let path: Vec<String> =
                points.iter().enumerate().map(|(t, v)| format!("{:.1},{:.1}", tx(t), ty(*v))).collect();
            out += &format!(
                "<polyline fill='none' stroke='{colour}' stroke-width='2' points='{}'/>",
                path.join(" ")
            );
        }
        // Legend, along the bottom: four to a row.
        let (x, row) = (PAD + 200.0 * (i % 4) as f64, (i / 4) as f64);
        out += &format!(
            "<rect x='{x:.1}' y='{:.1}' width='10' height='10' fill='{colour}'/><text x='{:.1}' y='{:.1}'>{}</text>",
            H - 39.0 + 16.0 * row,
            x + 15.0,
            H - 30.0 + 16.0 * row,
            escape(s.name)
        );
    }
    out += &format!(
        "<text x='{:.1}' y='40'>{} per second, log scale (peak {})</text>",
        left + 10.0,
        escape(unit),
        max as u64
    );
    out +=
        &format!("<text x='{:.1}' y='{}' text-anchor='end'>{} s</text>", W - PAD, H - PAD + 16.0, n as u64);
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

/// One line over time: (seconds since the start, value) points.
pub struct Line<'a> {
    pub name: &'a str,
    pub points: Vec<(f64, f64)>,
}

/// One picture of [`over_time`]: a linear axis from zero in `unit`.
pub struct Panel<'a> {
    pub title: &'a str,
    pub unit: &'a str,
    pub lines: Vec<Line<'a>>,
}

/// `title`, then the panels, three to a row, each with its own axis (the
/// figures of a long run have different units), seconds along the bottom.
pub fn over_time(title: &str, panels: &[Panel<'_>]) -> String {
    const PANEL_W: f64 = 340.0;
    const PER_ROW: usize = 3;
    let columns = panels.len().clamp(1, PER_ROW);
    let rows = panels.len().div_ceil(PER_ROW).max(1);
    let mut out = format!(
        "<svg xmlns='http://www.w3.org/2000/svg' width='{}' height='{}' font-family='sans-serif' font-size='12'>\
         <rect width='100%' height='100%' fill='white'/>\
         <text x='{PAD}' y='20' font-size='15'>{}</text>",
        PANEL_W * columns as f64,
        H * rows as f64,
        escape(title)
    );
    for (p, panel) in panels.iter().enumerate() {
        let (column, top) = ((p % PER_ROW) as f64, H * (p / PER_ROW) as f64);
        let (left, right) = (PANEL_W * column + PAD, PANEL_W * (column + 1.0) - 16.0);
        let bottom = top + H - PAD;
        let points = || panel.lines.iter().flat_map(|l| l.points.iter());
        let t_max = points().map(|p| p.0).fold(0.0, f64::max).max(1.0);
        // Zero-based, so a ratio can be read off the picture.
        let v_max = nice(points().map(|p| p.1).fold(0.0, f64::max));
        let x = |t: f64| left + t / t_max * (right - left);
        let y = |v: f64| bottom - v / v_max * (H - 2.0 * PAD);
        out += &format!(
            "<line x1='{left}' y1='{bottom}' x2='{right}' y2='{bottom}' stroke='black'/>\
             <line x1='{left}' y1='{}' x2='{left}' y2='{bottom}' stroke='black'/>",
            top + PAD
        );
        for tick in 0..=4 {
            let v = v_max * tick as f64 / 4.0;
            out += &format!(
                "<text x='{:.1}' y='{:.1}' text-anchor='end'>{}</text>",
                left - 4.0,
                y(v) + 4.0,
                short(v)
            );
        }
        out += &format!("<text x='{left:.1}' y='{}' text-anchor='middle'>0</text>", bottom + 16.0);
        out += &format!("<text x='{right:.1}' y='{}' text-anchor='end'>{t_max:.0} s</text>", bottom + 16.0);
        out += &format!(
            "<text x='{:.1}' y='{}'>{} ({})</text>",
            left + 4.0,
            top + 40.0,
            escape(panel.title),
            escape(panel.unit)
        );
        for (i, line) in panel.lines.iter().enumerate() {
            let colour = COLOURS[i % COLOURS.len()];
            let path: Vec<String> =
                line.points.iter().map(|(t, v)| format!("{:.1},{:.1}", x(*t), y(*v))).collect();
            out += &format!(
                "<polyline fill='none' stroke='{colour}' stroke-width='2' points='{}'/>",
                path.join(" ")
            );
            let ly = top + H - 30.0 + 14.0 * i as f64;
            out += &format!(
                "<rect x='{left:.1}' y='{:.1}' width='10' height='10' fill='{colour}'/><text x='{:.1}' y='{ly:.1}'>{}</text>",
                ly - 9.0,
                left + 15.0,
                escape(line.name)
            );
        }
    }
    out + "</svg>\n"
}

/// The axis top: 1, 2 or 5 times a power of ten, at least `v`.
fn nice(v: f64) -> f64 {
    if v <= 0.0 || !v.is_finite() {
        return 1.0;
    }
    let decade = 10f64.powf(v.log10().floor());
    [1.0, 2.0, 5.0, 10.0].iter().map(|m| m * decade).find(|top| *top >= v).unwrap_or(10.0 * decade)
}

/// An axis label: k and M for large values, no trailing zeros.
fn short(v: f64) -> String {
    let (v, suffix) = if v >= 1e6 {
        (v / 1e6, "M")
    } else if v >= 1e3 {
        (v / 1e3, "k")
    } else {
        (v, "")
    };
    let digits = format!("{v:.2}");
    format!("{}{suffix}", digits.trim_end_matches('0').trim_end_matches('.'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn axis_tops_are_round() {
        assert_eq!(nice(0.0), 1.0);
        assert_eq!(nice(3.0), 5.0);
        assert_eq!(nice(10.0), 10.0);
        assert_eq!(nice(101.0), 200.0);
        assert_eq!(short(1500.0), "1.5k");
        assert_eq!(
            (short(0.0), short(37.5), short(500.0), short(1.25)),
            ("0".into(), "37.5".into(), "500".into(), "1.25".into())
        );
    }

    #[test]
    fn draws_one_line_per_series_in_each_panel() {
        let panels = [
            Panel {
                title: "RSS",
                unit: "MB",
                lines: vec![Line { name: "rss", points: vec![(0.0, 1.0), (30.0, 2.0)] }],
            },
            Panel { title: "metadata", unit: "KB", lines: vec![Line { name: "total", points: vec![] }] },
        ];
        let svg = over_time("long-run <test>", &panels);
        assert_eq!(svg.matches("<polyline").count(), 2);
        assert!(svg.contains("long-run &lt;test&gt;") && svg.contains("RSS (MB)"));
    }
}
