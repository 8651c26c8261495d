//! floe-bench: named benchmark scenarios that print a table and write JSON,
//! and `compare`, which runs them against Floe and a peer at two object-store
//! latencies in one invocation.

pub mod catch_up;
pub mod chart;
pub mod cluster;
pub mod compare;
pub mod cpu;
pub mod end_to_end;
pub mod history;
pub mod limits;
pub mod long_run;
pub mod produce;
pub mod table;
pub mod target;
pub mod upload_cost;

use hdrhistogram::Histogram;
use serde::Serialize;

/// Latency percentiles in milliseconds, from a microsecond histogram.
#[derive(Debug, Clone, Serialize)]
pub struct Latency {
    pub count: u64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
}

impl Latency {
    pub fn from_micros(h: &Histogram<u64>) -> Self {
        let ms = |v: u64| v as f64 / 1000.0;
        Self {
            count: h.len(),
            p50_ms: ms(h.value_at_quantile(0.50)),
            p99_ms: ms(h.value_at_quantile(0.99)),
            p999_ms: ms(h.value_at_quantile(0.999)),
            max_ms: ms(h.max()),
        }
    }
}

/// A microsecond histogram from 1 µs to 10 minutes, 3 significant digits.
pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 600_000_000, 3).expect("valid histogram bounds")
}

/// Microseconds since the Unix epoch (producer and consumer share the clock).
pub fn now_micros() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}
