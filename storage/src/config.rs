//! Storage settings. Each knob says what it trades.

use std::path::PathBuf;
use std::time::Duration;

/// Settings of one broker's stream store.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// Where the WAL segments live. Put it on the fastest durable disk: every
    /// ack waits for one `fdatasync` here.
    pub wal_dir: PathBuf,
    /// Size of one preallocated WAL segment. Larger segments are recycled less
    /// often; the WAL holds only what is not yet uploaded, so a few segments
    /// suffice. A record batch must fit in one segment.
    pub wal_segment_bytes: u64,
    /// Upload when this many bytes wait in the WAL. Larger objects mean fewer
    /// PUTs (cheaper) but more data to replay after a crash and a longer
    /// delay before a fresh broker can see it.
    pub upload_bytes: u64,
    /// Upload at least this often while data waits. Bounds how stale the
    /// object store is: the RPO if the local disk is lost, and the request
    /// rate (at most one PUT plus one metadata PUT per interval).
    pub upload_interval: Duration,
    /// Refuse appends (retriably) once this many bytes wait for upload, so an
    /// unreachable object store cannot fill memory and disk.
    pub max_pending_upload_bytes: u64,
    /// Memory for recent batches after upload, so tailing consumers never
    /// touch the object store.
    pub log_cache_bytes: u64,
    /// Memory for object ranges read by catch-up consumers.
    pub block_cache_bytes: u64,
    /// Timeout of one object-store request; requests are retried within it.
    pub object_timeout: Duration,
    /// This broker's id and the address it advertises, recorded when it registers.
    pub broker_id: i32,
}

impl StoreConfig {
    pub fn new(wal_dir: impl Into<PathBuf>) -> Self {
        Self {
            wal_dir: wal_dir.into(),
            wal_segment_bytes: 64 << 20,
            upload_bytes: 16 << 20,
            upload_interval: Duration::from_millis(500),
            max_pending_upload_bytes: 1 << 30,
            log_cache_bytes: 256 << 20,
            block_cache_bytes: 256 << 20,
            object_timeout: Duration::from_secs(30),
            broker_id: 0,
        }
    }
}
