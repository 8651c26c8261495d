//! The machine's floor, measured in the same run as a scenario so results can
//! be quoted as ratios: 4 KiB and 1 MiB `O_DIRECT` + fdatasync on the WAL's
//! disk, and a loopback TCP round trip.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::time::Instant;

use floe_storage::wal::{open_direct, AlignedBuf};
use serde::Serialize;

use super::{histogram, Latency};

#[derive(Debug, Clone, Serialize)]
pub struct Limits {
    /// 4 KiB O_DIRECT write + fdatasync at rotating offsets of a preallocated file.
    pub fsync_4k: Latency,
    /// 1 MiB O_DIRECT writes, each followed by fdatasync.
    pub durable_write_mb_per_s: f64,
    /// TCP ping-pong of 64 bytes on 127.0.0.1.
    pub loopback_rtt: Latency,
}

/// Measures with `small_writes` 4 KiB syncs, `large_mib` MiB of 1 MiB syncs
/// and `round_trips` loopback round trips, in `dir`.
pub fn measure(
    dir: &Path,
    small_writes: usize,
    large_mib: usize,
    round_trips: usize,
) -> anyhow::Result<Limits> {
    let path = dir.join("floe-bench-limits.tmp");
    let size = (large_mib.max(1) as u64) << 20;
    std::fs::write(&path, vec![0u8; size as usize])?;
    let file = open_direct(&path)?;
    file.sync_all()?;

    let mut small = AlignedBuf::new(4096);
    small.bytes_mut().fill(7);
    let mut h = histogram();
    for i in 0..small_writes {
        let at = (i as u64 * 4096) % size;
        let t = Instant::now();
        file.write_all_at(small.bytes_mut(), at)?;
        file.sync_data()?;
        h.record(t.elapsed().as_micros().max(1) as u64)?;
    }
    let fsync_4k = Latency::from_micros(&h);

    let mut large = AlignedBuf::new(1 << 20);
    large.bytes_mut().fill(9);
    let t = Instant::now();
    for i in 0..large_mib {
        file.write_all_at(large.bytes_mut(), (i as u64) << 20)?;
        file.sync_data()?;
    }
    let durable_write_mb_per_s = (large_mib as f64 * 1.048_576) / t.elapsed().as_secs_f64();
    drop(file);
    std::fs::remove_file(&path)?;

    Ok(Limits { fsync_4k, durable_write_mb_per_s, loopback_rtt: loopback(round_trips)? })
}

fn loopback(round_trips: usize) -> anyhow::Result<Latency> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let echo = std::thread::spawn(move || -> std::io::Result<()> {
        let (mut s, _) = listener.accept()?;
        s.set_nodelay(true)?;
        let mut buf = [0u8; 64];
        for _ in 0..round_trips {
            s.read_exact(&mut buf)?;
            s.write_all(&buf)?;
        }
        Ok(())
    });
    let mut s = TcpStream::connect(addr)?;
    s.set_nodelay(true)?;
    let mut buf = [1u8; 64];
    let mut h = histogram();
    for _ in 0..round_trips {
        let t = Instant::now();
        s.write_all(&buf)?;
        s.read_exact(&mut buf)?;
        h.record(t.elapsed().as_micros().max(1) as u64)?;
    }
    echo.join().map_err(|_| anyhow::anyhow!("echo thread panicked"))??;
    Ok(Latency::from_micros(&h))
}
