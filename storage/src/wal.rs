//! The broker-wide write-ahead log.
//!
//! One writer thread owns the log. Appends from any task are queued; the writer
//! takes everything queued, writes it with one aligned `O_DIRECT` write (or a
//! few, for a large backlog), calls `fdatasync` once, and only then reports the
//! entries durable: group commit. Acks wait for that report.
//!
//! Positions are LSNs: byte addresses in one endless log, cut into fixed-size,
//! preallocated segment files named by their first LSN. Every entry carries its
//! own LSN and a CRC32C, so recovery stops at the first entry that is torn, zero
//! or left over from the segment file's previous life (it was recycled).
//!
//! Entry layout (little-endian), padded to 8 bytes:
//! `magic u32 | payload_len u32 | lsn u64 | stream u64 | base_offset i64 |
//!  max_timestamp i64 | records u32 | crc u32 | payload`
//! The CRC covers the 44 bytes before it and the payload.

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};

use bytes::Bytes;
use tokio::sync::watch;

use crate::error::{Result, StorageError};
use crate::latency::LatencyRecorder;
use crate::segment_pool::SegmentPool;
use crate::StreamId;

/// A position in the WAL (byte address across all segments).
pub type Lsn = u64;

const MAGIC: u32 = 0x314C_5746; // "FWL1"
const HEADER: usize = 48;
const BLOCK: usize = 4096;

/// One record to log: a stream's batch at its assigned base offset.
#[derive(Debug, Clone)]
pub struct WalRecord {
    pub stream: StreamId,
    pub base_offset: i64,
    pub max_timestamp: i64,
    /// Number of offsets the payload takes.
    pub records: u32,
    pub payload: Bytes,
}

/// A record read back during recovery, with its position.
#[derive(Debug, Clone)]
pub struct RecoveredRecord {
    pub lsn: Lsn,
    pub record: WalRecord,
}

/// Called by the writer thread once the entry is durable (or the WAL failed).
pub type DurableCallback = Box<dyn FnOnce(std::result::Result<Lsn, WalFailed>) + Send>;

/// The WAL failed an earlier write or sync; nothing after that is durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WalFailed;

fn entry_len(payload: usize) -> usize {
    (HEADER + payload + 7) & !7
}

/// Largest payload the WAL takes, given its segment size.
pub fn max_payload(segment_bytes: u64) -> usize {
    (segment_bytes as usize / 4).saturating_sub(HEADER + 2 * BLOCK)
}

struct Pending {
    record: WalRecord,
    lsn: Lsn,
    done: DurableCallback,
    queued: std::time::Instant,
}

/// Where a WAL append's time goes, for the shutdown summary and benchmarks.
#[derive(Default)]
pub struct WalStats {
    /// From the oldest entry of a group being queued to its write starting.
    pub queue_wait: LatencyRecorder,
    /// One group's write and fdatasync.
    pub commit: LatencyRecorder,
}

#[derive(Default)]
struct Queue {
    pending: Vec<Pending>,
    /// LSN the next queued entry gets.
    next_lsn: Lsn,
    /// Segments wholly below this LSN may be recycled.
    trim_to: Lsn,
    closed: bool,
    failed: bool,
}

struct Shared {
    queue: Mutex<Queue>,
    wake: Condvar,
    segment_bytes: u64,
    stats: WalStats,
}

/// Handle to the WAL; cheap to clone.
#[derive(Clone)]
pub struct Wal {
    shared: Arc<Shared>,
    durable: watch::Receiver<Lsn>,
    writer: Arc<Mutex<Option<std::thread::JoinHandle<()>>>>,
}

impl Wal {
    /// Opens (or creates) the WAL in `dir`, returns every intact entry in LSN
    /// order, and starts the writer thread after the last intact entry.
    pub fn open(dir: &Path, segment_bytes: u64) -> Result<(Wal, Vec<RecoveredRecord>)> {
        if segment_bytes < 1 << 20 || !segment_bytes.is_multiple_of(BLOCK as u64) {
            return Err(StorageError::Config(format!(
                "WAL segment size {segment_bytes} must be a multiple of 4096 and at least 1 MiB"
            )));
        }
        std::fs::create_dir_all(dir).map_err(StorageError::Wal)?;
        let Scan { segments, recovered, resume, stale } = scan(dir, segment_bytes)?;
        let (active_start, next_lsn) = resume.unwrap_or((0, 0));
        let spare: VecDeque<PathBuf> = stale
            .into_iter()
            .filter(|s| *s != active_start || resume.is_none())
            .map(|s| segment_path(dir, s))
            .collect();
        let (durable_tx, durable) = watch::channel(next_lsn);
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue { next_lsn, ..Queue::default() }),
            wake: Condvar::new(),
            segment_bytes,
            stats: WalStats::default(),
        });
        let mut writer = Writer::new(dir, segment_bytes, active_start, next_lsn, segments, spare)
            .map_err(StorageError::Wal)?;
        let thread_shared = shared.clone();
        let handle = std::thread::Builder::new()
            .name("floe-wal".into())
            .spawn(move || writer.run(&thread_shared, durable_tx))
            .map_err(StorageError::Wal)?;
        tracing::info!(dir = %dir.display(), entries = recovered.len(), resume_lsn = next_lsn, "WAL opened");
        let wal = Wal { shared, durable, writer: Arc::new(Mutex::new(Some(handle))) };
        Ok((wal, recovered))
    }

    /// Every intact entry of the WAL in `dir`, read without writing anything:
    /// for a peer that recovers a dead broker's WAL (it holds the directory's
    /// lock, so the owner is not writing).
    pub fn read_only(dir: &Path, segment_bytes: u64) -> Result<Vec<RecoveredRecord>> {
        Ok(scan(dir, segment_bytes)?.recovered)
    }

    /// Whether a write or sync failed (nothing after it becomes durable).
    pub fn is_failed(&self) -> bool {
        self.shared.queue.lock().expect("wal queue poisoned").failed
    }

    /// Queues `record`; `done` runs on the writer thread once it is durable.
    /// Returns the entry's LSN. Records are logged in the order of these calls.
    pub fn append(&self, record: WalRecord, done: DurableCallback) -> Result<Lsn> {
        let len = entry_len(record.payload.len()) as u64;
        if record.payload.len() > max_payload(self.shared.segment_bytes) {
            return Err(StorageError::Invalid(format!(
                "a {}-byte batch exceeds the WAL's {}-byte entry limit",
                record.payload.len(),
                max_payload(self.shared.segment_bytes)
            )));
        }
        let mut q = self.shared.queue.lock().expect("WAL queue poisoned");
        if q.closed || q.failed {
            return Err(StorageError::WalClosed);
        }
        let seg = self.shared.segment_bytes;
        // An entry never straddles two segments: skip to the next one.
        if q.next_lsn / seg != (q.next_lsn + len - 1) / seg {
            q.next_lsn = (q.next_lsn / seg + 1) * seg;
        }
        let lsn = q.next_lsn;
        q.next_lsn += len;
        q.pending.push(Pending { record, lsn, done, queued: std::time::Instant::now() });
        drop(q);
        self.shared.wake.notify_one();
        Ok(lsn)
    }

    /// Latency of the WAL's queue and group commits so far.
    pub fn stats(&self) -> &WalStats {
        &self.shared.stats
    }

    /// The LSN below which everything is durable.
    pub fn durable_lsn(&self) -> Lsn {
        *self.durable.borrow()
    }

    /// Watches the durable LSN (it only grows).
    pub fn watch_durable(&self) -> watch::Receiver<Lsn> {
        self.durable.clone()
    }

    /// The LSN the next append gets: everything below it was appended.
    pub fn appended_lsn(&self) -> Lsn {
        self.shared.queue.lock().expect("WAL queue poisoned").next_lsn
    }

    /// Everything below `lsn` is safe elsewhere (uploaded and committed): its
    /// segments may be recycled.
    pub fn trim(&self, lsn: Lsn) {
        let mut q = self.shared.queue.lock().expect("WAL queue poisoned");
        q.trim_to = q.trim_to.max(lsn);
        drop(q);
        self.shared.wake.notify_one();
    }

    /// Stops taking appends, makes everything queued durable, stops the writer.
    pub fn close(&self) {
        self.shared.queue.lock().expect("WAL queue poisoned").closed = true;
        self.shared.wake.notify_one();
        if let Some(handle) = self.writer.lock().expect("WAL handle poisoned").take() {
            let _ = handle.join();
        }
    }
}

struct Writer {
    dir: PathBuf,
    segment_bytes: u64,
    /// Start LSN of the open segment and its file.
    active: Option<(Lsn, File)>,
    /// Every segment on disk that holds live (untrimmed) data, by start LSN.
    live: Vec<Lsn>,
    /// Segment files ready for use, kept stocked off this thread.
    pool: SegmentPool,
    /// Aligned staging buffer; `buf_pos` bytes of it are valid and start at
    /// `buf_lsn`, a block boundary.
    buf: AlignedBuf,
    buf_lsn: Lsn,
    buf_pos: usize,
}

impl Writer {
    fn new(
        dir: &Path,
        segment_bytes: u64,
        active_start: Lsn,
        next_lsn: Lsn,
        live: Vec<Lsn>,
        spare: VecDeque<PathBuf>,
    ) -> io::Result<Self> {
        let live = live.into_iter().filter(|s| !spare.contains(&segment_path(dir, *s))).collect();
        let mut w = Writer {
            dir: dir.to_path_buf(),
            segment_bytes,
            active: None,
            live,
            pool: SegmentPool::start(dir, segment_bytes, spare)?,
            buf: AlignedBuf::new(segment_bytes as usize / 4),
            buf_lsn: next_lsn & !(BLOCK as u64 - 1),
            buf_pos: 0,
        };
        if next_lsn > 0 {
            let path = segment_path(dir, active_start);
            let file = open_direct(&path)?;
            // Keep the partial block before the resume point: it is rewritten,
            // with new entries after it, by the next aligned write. (Read
            // through the page cache: direct reads need aligned buffers.)
            let head = (next_lsn - w.buf_lsn) as usize;
            if head > 0 {
                let mut tmp = vec![0u8; head];
                File::open(&path)?.read_exact_at(&mut tmp, w.buf_lsn - active_start)?;
                w.buf.bytes_mut()[..head].copy_from_slice(&tmp);
                w.buf_pos = head;
            }
            w.active = Some((active_start, file));
        }
        Ok(w)
    }

    fn run(&mut self, shared: &Shared, durable: watch::Sender<Lsn>) {
        loop {
            let (batch, trim_to, closed) = {
                let mut q = shared.queue.lock().expect("WAL queue poisoned");
                while q.pending.is_empty() && !q.closed {
                    q = shared.wake.wait(q).expect("WAL queue poisoned");
                    if q.trim_to > 0 && q.pending.is_empty() {
                        break;
                    }
                }
                (std::mem::take(&mut q.pending), q.trim_to, q.closed)
            };
            self.recycle(trim_to);
            if !batch.is_empty() {
                let end = batch.last().map(|p| p.lsn + entry_len(p.record.payload.len()) as Lsn);
                shared.stats.queue_wait.record(batch[0].queued.elapsed());
                let started = std::time::Instant::now();
                let written = self.write(&batch);
                shared.stats.commit.record(started.elapsed());
                match written {
                    Ok(()) => {
                        // Callbacks first: whoever watches the durable LSN must
                        // find the streams' high watermarks already moved.
                        for p in batch {
                            (p.done)(Ok(p.lsn));
                        }
                        if let Some(end) = end {
                            durable.send_replace(end);
                        }
                    }
                    Err(error) => {
                        // After a failed write or fsync the page state is unknown
                        // (fsyncgate): refuse everything from here on.
                        tracing::error!(%error, "WAL write failed; the WAL is closed");
                        let mut q = shared.queue.lock().expect("WAL queue poisoned");
                        q.failed = true;
                        let rest = std::mem::take(&mut q.pending);
                        drop(q);
                        for p in batch.into_iter().chain(rest) {
                            (p.done)(Err(WalFailed));
                        }
                        return;
                    }
                }
            }
            if closed && shared.queue.lock().expect("WAL queue poisoned").pending.is_empty() {
                return;
            }
        }
    }

    /// Writes the entries (in LSN order) and syncs once.
    fn write(&mut self, batch: &[Pending]) -> io::Result<()> {
        let mut dirty_files: Vec<Lsn> = Vec::new();
        for p in batch {
            let seg_start = p.lsn / self.segment_bytes * self.segment_bytes;
            if self.active.as_ref().map(|(s, _)| *s) != Some(seg_start) {
                self.flush_buf()?;
                if let Some((s, f)) = self.active.take() {
                    if dirty_files.contains(&s) {
                        f.sync_data()?;
                    }
                }
                self.open_segment(seg_start)?;
                self.buf_lsn = p.lsn & !(BLOCK as u64 - 1);
                self.buf_pos = (p.lsn - self.buf_lsn) as usize;
                self.buf.bytes_mut()[..self.buf_pos].fill(0);
            }
            let len = entry_len(p.record.payload.len());
            if self.buf_pos + len > self.buf.capacity() {
                self.flush_buf()?;
            }
            // Skipped space (an entry that would not fit a block run) is zero.
            let at = (p.lsn - self.buf_lsn) as usize;
            if at > self.buf_pos {
                self.buf.bytes_mut()[self.buf_pos..at].fill(0);
            }
            encode_entry(&mut self.buf.bytes_mut()[at..at + len], p);
            self.buf_pos = at + len;
            if !dirty_files.contains(&seg_start) {
                dirty_files.push(seg_start);
            }
        }
        self.flush_buf()?;
        if let Some((_, f)) = &self.active {
            f.sync_data()?;
        }
        Ok(())
    }

    /// Writes the staged bytes, zero-padded to a block, then keeps the last
    /// partial block staged so the next write can complete it.
    fn flush_buf(&mut self) -> io::Result<()> {
        if self.buf_pos == 0 {
            return Ok(());
        }
        let Some((seg_start, file)) = &self.active else { return Ok(()) };
        let padded = self.buf_pos.div_ceil(BLOCK) * BLOCK;
        self.buf.bytes_mut()[self.buf_pos..padded].fill(0);
        file.write_all_at(&self.buf.bytes_mut()[..padded], self.buf_lsn - seg_start)?;
        let full = self.buf_pos / BLOCK * BLOCK;
        let tail = self.buf_pos - full;
        self.buf.bytes_mut().copy_within(full..full + tail, 0);
        self.buf_lsn += full as u64;
        self.buf_pos = tail;
        Ok(())
    }

    fn open_segment(&mut self, start: Lsn) -> io::Result<()> {
        let path = segment_path(&self.dir, start);
        self.pool.place_now(&path)?;
        self.pool.place_later(segment_path(&self.dir, start + self.segment_bytes));
        self.active = Some((start, open_direct(&path)?));
        if !self.live.contains(&start) {
            self.live.push(start);
        }
        Ok(())
    }

    /// Segments that end at or below `trim_to` go back to the pool.
    fn recycle(&mut self, trim_to: Lsn) {
        let active = self.active.as_ref().map(|(s, _)| *s);
        let seg = self.segment_bytes;
        let (done, keep): (Vec<Lsn>, Vec<Lsn>) =
            self.live.iter().partition(|&&s| s + seg <= trim_to && Some(s) != active);
        self.live = keep;
        for s in done {
            self.pool.give_back(segment_path(&self.dir, s));
        }
    }
}

fn encode_entry(out: &mut [u8], p: &Pending) {
    let payload = &p.record.payload;
    out[0..4].copy_from_slice(&MAGIC.to_le_bytes());
    out[4..8].copy_from_slice(&(payload.len() as u32).to_le_bytes());
    out[8..16].copy_from_slice(&p.lsn.to_le_bytes());
    out[16..24].copy_from_slice(&p.record.stream.to_le_bytes());
    out[24..32].copy_from_slice(&p.record.base_offset.to_le_bytes());
    out[32..40].copy_from_slice(&p.record.max_timestamp.to_le_bytes());
    out[40..44].copy_from_slice(&p.record.records.to_le_bytes());
    let crc = crc32c::crc32c_append(crc32c::crc32c(&out[0..44]), payload);
    out[44..48].copy_from_slice(&crc.to_le_bytes());
    out[HEADER..HEADER + payload.len()].copy_from_slice(payload);
    out[HEADER + payload.len()..].fill(0);
}

/// Reads the intact entries of one segment, stopping at the first bad one.
struct Scan {
    segments: Vec<Lsn>,
    recovered: Vec<RecoveredRecord>,
    /// (segment start, lsn) where writing resumes: the end of the last intact entry.
    resume: Option<(Lsn, Lsn)>,
    /// Segments holding nothing current (recycled or older than the resume point).
    stale: Vec<Lsn>,
}

fn scan(dir: &Path, segment_bytes: u64) -> Result<Scan> {
    let mut segments = list_segments(dir).map_err(StorageError::Wal)?;
    segments.sort();
    let mut recovered = Vec::new();
    let mut resume: Option<(Lsn, Lsn)> = None;
    let mut stale = Vec::new();
    for &start in &segments {
        let path = segment_path(dir, start);
        let entries = read_segment(&path, start, segment_bytes).map_err(StorageError::Wal)?;
        if let Some(last) = entries.last() {
            let end = last.lsn + entry_len(last.record.payload.len()) as Lsn;
            if resume.is_some_and(|(_, at)| last.lsn < at) {
                stale.push(start);
                continue;
            }
            resume = Some((start, end));
            recovered.extend(entries);
        } else {
            stale.push(start);
        }
    }
    Ok(Scan { segments, recovered, resume, stale })
}

fn read_segment(path: &Path, start: Lsn, segment_bytes: u64) -> io::Result<Vec<RecoveredRecord>> {
    let mut data = Vec::with_capacity(segment_bytes as usize);
    File::open(path)?.read_to_end(&mut data)?;
    let mut out = Vec::new();
    let mut pos = 0usize;
    while pos + HEADER <= data.len() {
        let h = &data[pos..pos + HEADER];
        let u32_at = |i: usize| u32::from_le_bytes(h[i..i + 4].try_into().expect("4 bytes"));
        let u64_at = |i: usize| u64::from_le_bytes(h[i..i + 8].try_into().expect("8 bytes"));
        if u32_at(0) != MAGIC {
            break;
        }
        let len = u32_at(4) as usize;
        let lsn = u64_at(8);
        if lsn != start + pos as u64 || pos + HEADER + len > data.len() {
            break;
        }
        let payload = &data[pos + HEADER..pos + HEADER + len];
        let crc = crc32c::crc32c_append(crc32c::crc32c(&h[0..44]), payload);
        if crc != u32_at(44) {
            break;
        }
        out.push(RecoveredRecord {
            lsn,
            record: WalRecord {
                stream: u64_at(16),
                base_offset: u64_at(24) as i64,
                max_timestamp: u64_at(32) as i64,
                records: u32_at(40),
                payload: Bytes::copy_from_slice(payload),
            },
        });
        pos += entry_len(len);
    }
    Ok(out)
}

fn list_segments(dir: &Path) -> io::Result<Vec<Lsn>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let name = entry?.file_name();
        let name = name.to_string_lossy();
        if let Some(stem) = name.strip_suffix(".wal") {
            if let Ok(start) = stem.parse::<u64>() {
                out.push(start);
            }
        }
    }
    Ok(out)
}

fn segment_path(dir: &Path, start: Lsn) -> PathBuf {
    dir.join(format!("{start:020}.wal"))
}

/// Opens a segment for direct I/O; file systems without `O_DIRECT` (tmpfs) get
/// buffered I/O, still synced with `fdatasync`.
pub fn open_direct(path: &Path) -> io::Result<File> {
    match OpenOptions::new().read(true).write(true).custom_flags(libc::O_DIRECT).open(path) {
        Ok(f) => Ok(f),
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
            OpenOptions::new().read(true).write(true).open(path)
        }
        Err(e) => Err(e),
    }
}

/// A heap buffer whose usable part starts on a 4 KiB boundary, as `O_DIRECT`
/// requires, without unsafe code: over-allocate and start at the first
/// aligned byte.
pub struct AlignedBuf {
    raw: Vec<u8>,
    start: usize,
    cap: usize,
}

impl AlignedBuf {
    /// A zeroed buffer of `cap` bytes rounded up to 4 KiB.
    pub fn new(cap: usize) -> Self {
        let cap = cap.div_ceil(BLOCK) * BLOCK;
        let raw = vec![0u8; cap + BLOCK];
        let misalign = raw.as_ptr() as usize % BLOCK;
        let start = (BLOCK - misalign) % BLOCK;
        AlignedBuf { raw, start, cap }
    }

    pub fn capacity(&self) -> usize {
        self.cap
    }

    pub fn bytes_mut(&mut self) -> &mut [u8] {
        &mut self.raw[self.start..self.start + self.cap]
    }
}

#[cfg(test)]
mod tests;
