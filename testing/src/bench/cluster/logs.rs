//! What the brokers' logs say about when each step happened, and the report as text.

use super::*;

// ------------------------------------------------------------ broker logs

/// One line of a broker's log: its time, its text, and its `key=value` fields.
#[derive(Debug, Clone)]
pub struct LogLine {
    /// µs since the Unix epoch.
    pub at_us: u64,
    pub text: String,
    pub(super) fields: BTreeMap<String, String>,
}

impl LogLine {
    pub fn is(&self, message: &str) -> bool {
        self.text.contains(message)
    }

    pub fn field<T: std::str::FromStr>(&self, key: &str) -> Option<T> {
        self.fields.get(key)?.trim_matches('"').parse().ok()
    }
}

/// Parses a line of `floe`'s log ("2026-11-25T16:54:56.123456Z  INFO
/// target: message key=value ..."); None for lines without a timestamp.
pub fn parse_log_line(line: &str) -> Option<LogLine> {
    let plain = crate::bench::target::strip_ansi(line);
    let stamp = plain.split_whitespace().next()?;
    let at_us = parse_utc_micros(stamp)?;
    let fields = plain
        .split_whitespace()
        .skip(1)
        .filter_map(|t| t.split_once('='))
        .filter(|(k, _)| !k.is_empty() && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    Some(LogLine { at_us, text: plain, fields })
}

/// `YYYY-MM-DDTHH:MM:SS[.ffffff]Z` as µs since the Unix epoch.
pub(super) fn parse_utc_micros(s: &str) -> Option<u64> {
    let s = s.strip_suffix('Z')?;
    let (date, time) = s.split_once('T')?;
    let mut d = date.split('-').map(|x| x.parse::<i64>().ok());
    let (y, m, day) = (d.next()??, d.next()??, d.next()??);
    let (hms, frac) = time.split_once('.').unwrap_or((time, ""));
    let mut t = hms.split(':').map(|x| x.parse::<i64>().ok());
    let (h, mi, sec) = (t.next()??, t.next()??, t.next()??);
    let digits: String = frac.chars().take(6).collect();
    let micros =
        if digits.is_empty() { 0 } else { digits.parse::<i64>().ok()? * 10i64.pow(6 - digits.len() as u32) };
    // Days from the civil date (proleptic Gregorian), after H. Hinnant.
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + h * 3600 + mi * 60 + sec;
    u64::try_from(secs * 1_000_000 + micros).ok()
}

/// The lines a broker's log gained since this tail was made.
pub struct LogTail {
    pub(super) path: PathBuf,
    pub(super) pos: u64,
    pub(super) partial: String,
    pub lines: Vec<LogLine>,
}

impl LogTail {
    pub fn from_start(path: &Path) -> Self {
        Self { path: path.to_path_buf(), pos: 0, partial: String::new(), lines: Vec::new() }
    }

    pub fn from_end(path: &Path) -> Self {
        let pos = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
        Self { pos, ..Self::from_start(path) }
    }

    /// Reads what was appended since the last poll.
    pub fn poll(&mut self) -> std::io::Result<()> {
        let mut f = std::fs::File::open(&self.path)?;
        f.seek(SeekFrom::Start(self.pos))?;
        let mut bytes = Vec::new();
        f.read_to_end(&mut bytes)?;
        self.pos += bytes.len() as u64;
        self.partial.push_str(&String::from_utf8_lossy(&bytes));
        if let Some(end) = self.partial.rfind('\n') {
            let complete: String = self.partial.drain(..=end).collect();
            self.lines.extend(complete.lines().filter_map(parse_log_line));
        }
        Ok(())
    }

    pub fn find(&self, pred: impl Fn(&LogLine) -> bool) -> Option<&LogLine> {
        self.lines.iter().find(|l| pred(l))
    }
}

/// Polls `tails` until one has a line `pred` accepts: which tail, and the line.
pub(super) async fn wait_line(
    tails: &mut [LogTail],
    timeout: Duration,
    pred: impl Fn(&LogLine) -> bool,
) -> Option<(usize, LogLine)> {
    let deadline = Instant::now() + timeout;
    loop {
        for (i, t) in tails.iter_mut().enumerate() {
            let _ = t.poll();
            if let Some(l) = t.find(&pred) {
                return Some((i, l.clone()));
            }
        }
        if Instant::now() > deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

// ------------------------------------------------------------ the table

/// The report as fixed-width text: each figure's p50/p99/max, its goal, and
/// p99 as a ratio to the goal (≤ 1.00x is met).
pub fn render(r: &ClusterReport) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "cluster: S3 {} (+{}/{} ms median/p99), {} B records, load {}/s idempotent acks=all",
        r.s3.label, r.s3.median_ms, r.s3.p99_ms, r.record_size, r.rate
    );
    let _ = writeln!(
        out,
        "{:<48}{:>4}{:>10}{:>10}{:>10}{:>10}{:>10}",
        "figure (ms)", "n", "p50", "p99", "max", "target", "p99/tgt"
    );
    let row = |out: &mut String, name: &str, s: &Stats, target: Option<f64>| {
        let (t, ratio) = match target {
            Some(t) => (format!("{t:.0}"), format!("{:.2}x", s.p99_ms / t)),
            None => (String::new(), String::new()),
        };
        let _ = writeln!(
            out,
            "{name:<48}{:>4}{:>10}{:>10}{:>10}{t:>10}{ratio:>10}",
            s.n,
            num(s.p50_ms),
            num(s.p99_ms),
            num(s.max_ms)
        );
    };
    let one = |v: f64| Stats { n: 1, p50_ms: v, p99_ms: v, max_ms: v };
    for m in &r.moves {
        row(
            &mut out,
            &format!("move: command to 1st ack, {} MB history", m.history_mb),
            &m.window,
            Some(m.target_p99_ms),
        );
        row(&mut out, "  longest stretch without an ack", &m.max_ack_gap, None);
        row(&mut out, "  longest ack latency of a caught record", &m.max_ack_latency, None);
        row(&mut out, "  step: command to owner starting release", &m.to_release_start, None);
        row(&mut out, "  step: release start to new owner serving", &m.release_to_serving, None);
        row(&mut out, "  step: new owner serving to 1st ack there", &m.serving_to_first_ack, None);
        row(&mut out, "  (floe cluster move's run time)", &m.cli, None);
        row(&mut out, "  (owner's release, by its own log)", &m.release, None);
        let _ = writeln!(
            out,
            "  (history written in {:.1} s; {:.0} MB of it waited for upload, committed {:.1} s later, before the moves)",
            m.history_seconds,
            m.history_upload_lag_bytes as f64 / 1e6,
            m.history_upload_wait_ms / 1000.0
        );
        if m.timeouts > 0 || m.failed > 0 {
            let _ = writeln!(out, "  ({} moves timed out, {} records failed)", m.timeouts, m.failed);
        }
    }
    if let Some(f) = &r.failover {
        row(&mut out, "failover: SIGKILL to 1st ack elsewhere", &f.failover, Some(f.target_ms));
        row(&mut out, "  SIGKILL to fenced by the controller", &f.fenced, None);
        row(&mut out, "  SIGKILL to WAL recovered by a peer", &f.recovered, None);
        row(&mut out, "  SIGKILL to new owner serving", &f.serving, None);
    }
    if let Some(n) = &r.new_broker {
        row(
            &mut out,
            "new broker: start to 1st ack of its partition",
            &one(n.first_ack_ms),
            Some(n.target_ms),
        );
        row(&mut out, "  start to serving Kafka", &one(n.ready_ms), None);
        row(&mut out, "  start to its first partition", &one(n.assigned_ms), None);
        let _ = writeln!(out, "  ({} of {} partitions given to it)", n.partitions_given, n.topic_partitions);
    }
    if let Some(d) = &r.drain {
        row(
            &mut out,
            &format!("drain: {} partitions ({} moved) to owning none", d.partitions, d.moved),
            &one(d.drain_ms),
            Some(d.target_ms),
        );
        if let Some(last) = d.last_serving_ms {
            row(&mut out, "  command to the last partition served", &one(last), None);
        }
        row(&mut out, "  longest ack latency of the load", &one(d.max_ack_latency_ms), None);
    }
    if !r.throughput.is_empty() {
        let _ = writeln!(
            out,
            "{:<48}{:>10}{:>12}{:>12}{:>10}",
            "produce at max rate", "MB/s", "records/s", "ack p99 ms", "x 1st"
        );
        for t in &r.throughput {
            let _ = writeln!(
                out,
                "{:<48}{:>10}{:>12.0}{:>12}{:>9.2}x",
                format!("  {} broker(s), {} partitions, {} producers", t.brokers, t.partitions, t.producers),
                num(t.mb_per_s),
                t.records_per_s,
                num(t.ack_latency.p99_ms),
                t.of_first
            );
        }
    }
    out
}

pub(super) fn num(v: f64) -> String {
    let a = v.abs();
    if a >= 1000.0 {
        format!("{v:.0}")
    } else if a >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    pub(super) fn reads_a_log_line() {
        let l = parse_log_line(
            "2026-11-25T16:54:56.123456Z  INFO floe_broker::ownership: serving stream stream=3 epoch=2 end_offset=1500",
        )
        .unwrap();
        assert!(l.is("serving stream"));
        assert_eq!(l.field::<u64>("stream"), Some(3));
        assert_eq!(l.field::<i64>("end_offset"), Some(1500));
        assert_eq!(l.at_us % 1_000_000, 123_456);
        assert!(parse_log_line("not a log line").is_none());
        assert_eq!(parse_utc_micros("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(
            parse_utc_micros("2000-03-01T00:00:01.5Z"),
            Some((11_017 * 86_400 + 1) * 1_000_000 + 500_000)
        );
    }

    #[test]
    pub(super) fn percentiles_by_nearest_rank() {
        let s = Stats::of((1..=20).map(f64::from));
        assert_eq!((s.n, s.p50_ms, s.p99_ms, s.max_ms), (20, 10.0, 20.0, 20.0));
        assert_eq!(Stats::of([]).n, 0);
    }

    #[test]
    pub(super) fn the_longest_gap_runs_to_the_first_new_ack() {
        let ack = |at_us, sent_us| Ack { at_us, sent_us, partition: 0, offset: 0 };
        let acks = [ack(100, 90), ack(1_000, 950), ack(1_100, 1_090), ack(5_000, 1_200), ack(5_100, 5_000)];
        let (gap, latency) = caught(&acks, &[0], 1_050, 5_000);
        assert_eq!(gap, 3.9, "1.1 ms to 5.0 ms");
        assert_eq!(latency, 3.8, "sent at 1.2 ms, acked at 5.0 ms");
    }
}
