//! A lock-free latency histogram for the hot path: log-scale buckets (four
//! per power of two, so a reported quantile is within 19% of the truth),
//! recorded with one atomic add. Enough to say where an ack's time goes
//! without a metrics stack.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

const SUB: u32 = 4;
const BUCKETS: usize = 30 * SUB as usize; // up to 2^30 µs (~18 minutes)

pub struct LatencyRecorder {
    buckets: [AtomicU64; BUCKETS],
}

impl Default for LatencyRecorder {
    fn default() -> Self {
        Self { buckets: std::array::from_fn(|_| AtomicU64::new(0)) }
    }
}

/// Quantiles of what was recorded, in microseconds (bucket upper bounds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LatencySummary {
    pub count: u64,
    pub p50_us: u64,
    pub p99_us: u64,
    pub p999_us: u64,
    pub max_us: u64,
}

impl std::fmt::Display for LatencySummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ms = |us: u64| us as f64 / 1000.0;
        write!(
            f,
            "n={} p50≤{:.3}ms p99≤{:.3}ms p99.9≤{:.3}ms max≤{:.3}ms",
            self.count,
            ms(self.p50_us),
            ms(self.p99_us),
            ms(self.p999_us),
            ms(self.max_us)
        )
    }
}

/// Everything under 16 µs shares the first bucket: finer is noise here.
const FLOOR_US: u64 = 16;

fn bucket(us: u64) -> usize {
    let us = us.max(FLOOR_US);
    let log = 63 - us.leading_zeros(); // floor(log2)
    let frac = ((us << SUB) >> log) as u32 & (SUB * SUB - 1); // next bits after the top one
    ((log * SUB + frac / SUB) as usize).min(BUCKETS - 1)
}

/// The largest value that falls in bucket `i`.
fn upper(i: usize) -> u64 {
    let (log, sub) = (i as u32 / SUB, i as u32 % SUB);
    let base = 1u64 << log;
    base + (base * u64::from(sub + 1)) / u64::from(SUB) - 1
}

impl LatencyRecorder {
    pub fn record(&self, d: Duration) {
        let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        self.buckets[bucket(us)].fetch_add(1, Ordering::Relaxed);
    }

    pub fn summary(&self) -> LatencySummary {
        let counts: Vec<u64> = self.buckets.iter().map(|b| b.load(Ordering::Relaxed)).collect();
        let count: u64 = counts.iter().sum();
        let at = |q: f64| {
            let rank = ((count as f64 * q).ceil() as u64).max(1);
            let mut seen = 0;
            for (i, c) in counts.iter().enumerate() {
                seen += c;
                if seen >= rank {
                    return upper(i);
                }
            }
            0
        };
        if count == 0 {
            return LatencySummary { count: 0, p50_us: 0, p99_us: 0, p999_us: 0, max_us: 0 };
        }
        LatencySummary { count, p50_us: at(0.5), p99_us: at(0.99), p999_us: at(0.999), max_us: at(1.0) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_value_lands_in_a_bucket_whose_bound_is_close_above_it() {
        for us in [0u64, 1, 15, 16, 17, 31, 100, 1_000, 1_234, 65_535, 1_000_000, 123_456_789] {
            let b = upper(bucket(us));
            assert!(b >= us, "{us} -> bound {b}");
            assert!((b as f64) < us.max(FLOOR_US) as f64 * 1.26, "{us} -> bound {b} is too loose");
        }
        // The buckets in use are ordered.
        let first = bucket(0);
        assert!((first + 1..BUCKETS).all(|i| upper(i) > upper(i - 1)));
    }

    #[test]
    fn quantiles_follow_what_was_recorded() {
        let r = LatencyRecorder::default();
        for _ in 0..990 {
            r.record(Duration::from_micros(100));
        }
        for _ in 0..10 {
            r.record(Duration::from_millis(20));
        }
        let s = r.summary();
        assert_eq!(s.count, 1000);
        assert!((100..126).contains(&s.p50_us), "{s}");
        assert!((100..126).contains(&s.p99_us), "{s}");
        assert!((20_000..25_200).contains(&s.p999_us), "{s}");
        assert_eq!(LatencyRecorder::default().summary().count, 0);
    }
}
