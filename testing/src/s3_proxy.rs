//! A loopback latency proxy for the object store: forwards S3 (HTTP/1.1)
//! requests to the real server and holds each request back for a random
//! delay (log-normal, with a given median and p99), so scenarios can run at
//! the latency of real S3 rather than a local server's ~3 ms. It also counts
//! requests by kind, which is what the S3 bill is made of.
//!
//! Request boundaries are found without parsing HTTP: on a keep-alive
//! connection a client sends a new request only after the previous response,
//! so the first bytes from the client after any bytes from the server (or at
//! the start) begin a request. S3 clients do not pipeline.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Requests seen, by kind.
#[derive(Debug, Default)]
pub struct RequestCounts {
    pub put: AtomicU64,
    pub get: AtomicU64,
    pub list: AtomicU64,
    pub head: AtomicU64,
    pub delete: AtomicU64,
    pub other: AtomicU64,
}

/// A snapshot of [`RequestCounts`].
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq, Eq)]
pub struct Counts {
    pub put: u64,
    pub get: u64,
    pub list: u64,
    pub head: u64,
    pub delete: u64,
    pub other: u64,
}

impl Counts {
    /// The requests made since `earlier`.
    pub fn since(&self, earlier: &Counts) -> Counts {
        Counts {
            put: self.put - earlier.put,
            get: self.get - earlier.get,
            list: self.list - earlier.list,
            head: self.head - earlier.head,
            delete: self.delete - earlier.delete,
            other: self.other - earlier.other,
        }
    }
}

impl RequestCounts {
    pub fn snapshot(&self) -> Counts {
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        Counts {
            put: l(&self.put),
            get: l(&self.get),
            list: l(&self.list),
            head: l(&self.head),
            delete: l(&self.delete),
            other: l(&self.other),
        }
    }

    fn count(&self, head: &[u8]) {
        let line = head.split(|b| *b == b'\n').next().unwrap_or_default();
        let counter = match line.split(|b| *b == b' ').next().unwrap_or_default() {
            b"PUT" => &self.put,
            b"GET" if line.windows(9).any(|w| w == b"list-type") => &self.list,
            b"GET" => &self.get,
            b"HEAD" => &self.head,
            b"DELETE" => &self.delete,
            _ => &self.other,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// The delay added to each request.
#[derive(Debug, Clone, Copy)]
pub struct Delay {
    pub median: Duration,
    pub p99: Duration,
}

impl Delay {
    pub const NONE: Delay = Delay { median: Duration::ZERO, p99: Duration::ZERO };

    /// A log-normal sample: `median * exp(sigma * z)` with sigma chosen so the
    /// 99th percentile lands on `p99`.
    fn sample(&self, rng: &mut u64) -> Duration {
        if self.median.is_zero() {
            return Duration::ZERO;
        }
        let sigma = (self.p99.as_secs_f64() / self.median.as_secs_f64()).max(1.0).ln() / 2.326;
        let (u1, u2) = (uniform(rng), uniform(rng));
        let z = (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos();
        self.median.mul_f64((sigma * z).exp().min(50.0))
    }
}

fn uniform(state: &mut u64) -> f64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    ((*state >> 11) as f64 + 1.0) / ((1u64 << 53) as f64 + 1.0)
}

/// A running proxy; dropping it stops accepting connections.
pub struct LatencyProxy {
    pub addr: SocketAddr,
    pub counts: Arc<RequestCounts>,
    task: tokio::task::JoinHandle<()>,
}

impl LatencyProxy {
    /// Listens on `listen` (port 0 picks one) and forwards to `upstream`.
    pub async fn start(listen: SocketAddr, upstream: SocketAddr, delay: Delay) -> std::io::Result<Self> {
        let listener = TcpListener::bind(listen).await?;
        let addr = listener.local_addr()?;
        let counts = Arc::new(RequestCounts::default());
        let c = counts.clone();
        let task = tokio::spawn(async move {
            let mut seed = 0x9E37_79B9_7F4A_7C15u64;
            while let Ok((client, _)) = listener.accept().await {
                seed = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
                let c = c.clone();
                tokio::spawn(async move {
                    if let Ok(server) = TcpStream::connect(upstream).await {
                        let _ = proxy(client, server, delay, c, seed).await;
                    }
                });
            }
        });
        Ok(Self { addr, counts, task })
    }
}

impl Drop for LatencyProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn proxy(
    client: TcpStream,
    server: TcpStream,
    delay: Delay,
    counts: Arc<RequestCounts>,
    mut rng: u64,
) -> std::io::Result<()> {
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let (mut cr, mut cw) = client.into_split();
    let (mut sr, mut sw) = server.into_split();
    // Set when the server has answered: the client's next bytes start a request.
    let answered = Arc::new(AtomicBool::new(true));
    let a = answered.clone();
    let upstream = async move {
        let mut buf = vec![0u8; 64 << 10];
        loop {
            let n = cr.read(&mut buf).await?;
            if n == 0 {
                return sw.shutdown().await;
            }
            if a.swap(false, Ordering::AcqRel) {
                counts.count(&buf[..n]);
                tokio::time::sleep(delay.sample(&mut rng)).await;
            }
            sw.write_all(&buf[..n]).await?;
        }
    };
    let downstream = async move {
        let mut buf = vec![0u8; 64 << 10];
        loop {
            let n = sr.read(&mut buf).await?;
            if n == 0 {
                return cw.shutdown().await;
            }
            answered.store(true, Ordering::Release);
            cw.write_all(&buf[..n]).await?;
        }
    };
    let _ = tokio::try_join!(upstream, downstream);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_have_the_asked_median_and_tail() {
        let d = Delay { median: Duration::from_millis(30), p99: Duration::from_millis(100) };
        let mut rng = 42;
        let mut v: Vec<f64> = (0..20_000).map(|_| d.sample(&mut rng).as_secs_f64() * 1e3).collect();
        v.sort_by(f64::total_cmp);
        let (p50, p99) = (v[10_000], v[19_800]);
        assert!((27.0..33.0).contains(&p50), "p50 {p50}");
        assert!((85.0..115.0).contains(&p99), "p99 {p99}");
    }
}
