//! Ready WAL segments. Opening a segment must not stall the group commit:
//! zero-filling 64 MiB and syncing it takes tens of milliseconds, and every
//! append queued behind that write would wait for it. So a background thread
//! ("floe-wal-pool") keeps a few zero-filled or recycled segments ready, and
//! puts the writer's next segment in place under its final name (the rename
//! and the directory fsync, which may wait for a whole journal commit) while
//! the writer still fills the current one. Trimmed segments come back here
//! for reuse, and the surplus is deleted off the writer thread too.

use std::collections::VecDeque;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

/// New (zero-filled) segments are made while fewer than this are ready.
/// One is enough: the writer needs one per switch, and trimmed segments
/// normally come back before the next switch, so steady state reuses them
/// and writes no zeros.
const MIN_READY: usize = 1;
/// Trimmed segments beyond this many ready ones are deleted.
const KEEP: usize = 2;

enum Job {
    Refill,
    Delete(PathBuf),
    Place(PathBuf),
}

#[derive(Default)]
struct Shared {
    ready: Mutex<VecDeque<PathBuf>>,
    /// Held while a segment is being put in place.
    placing: Mutex<()>,
}

pub(crate) struct SegmentPool {
    shared: Arc<Shared>,
    dir: PathBuf,
    segment_bytes: u64,
    jobs: Option<mpsc::Sender<Job>>,
    thread: Option<JoinHandle<()>>,
}

impl SegmentPool {
    /// Starts the pool with `recycled` segments (stale ones found at open)
    /// plus any prepared spares left in `dir` by an earlier run.
    pub fn start(dir: &Path, segment_bytes: u64, recycled: VecDeque<PathBuf>) -> io::Result<Self> {
        let mut ready = recycled;
        for entry in std::fs::read_dir(dir)? {
            let path = entry?.path();
            match path.extension().and_then(|e| e.to_str()) {
                Some("spare") if std::fs::metadata(&path)?.len() == segment_bytes => ready.push_back(path),
                // A preparation cut short by a crash, or a spare of another size.
                Some("spare") | Some("tmp") => std::fs::remove_file(&path)?,
                _ => {}
            }
        }
        let shared = Arc::new(Shared { ready: Mutex::new(ready), placing: Mutex::new(()) });
        let (tx, rx) = mpsc::channel();
        let (d, pool) = (dir.to_path_buf(), shared.clone());
        let thread = std::thread::Builder::new()
            .name("floe-wal-pool".into())
            .spawn(move || prepare(&d, segment_bytes, &pool, &rx))?;
        let _ = tx.send(Job::Refill);
        Ok(Self { shared, dir: dir.to_path_buf(), segment_bytes, jobs: Some(tx), thread: Some(thread) })
    }

    /// Makes `path` an empty segment, ready to be opened: usually it already
    /// is (see [`SegmentPool::place_later`]); else a ready file is renamed to
    /// it, or one is made here. The directory is synced either way.
    pub fn place_now(&self, path: &Path) -> io::Result<()> {
        // Waits for a placement the pool thread may be doing right now.
        let _placing = self.shared.placing.lock().expect("segment pool poisoned");
        self.shared.ready.lock().expect("segment pool poisoned").retain(|p| p != path);
        if !path.exists() {
            place(&self.dir, self.segment_bytes, &self.shared, path)?;
        }
        self.send(Job::Refill);
        Ok(())
    }

    /// Asks the pool thread to put the next segment in place in advance.
    pub fn place_later(&self, path: PathBuf) {
        self.send(Job::Place(path));
    }

    /// A trimmed segment: kept for reuse if the pool is short, else deleted.
    pub fn give_back(&self, path: PathBuf) {
        let mut ready = self.shared.ready.lock().expect("segment pool poisoned");
        if ready.len() < KEEP {
            ready.push_back(path);
        } else {
            drop(ready);
            self.send(Job::Delete(path));
        }
    }

    fn send(&self, job: Job) {
        if let Some(jobs) = &self.jobs {
            let _ = jobs.send(job);
        }
    }
}

impl Drop for SegmentPool {
    fn drop(&mut self) {
        self.jobs.take(); // ends the thread's loop once its queue is done
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Renames a ready file to `path` (or creates it) and syncs the directory.
fn place(dir: &Path, segment_bytes: u64, shared: &Shared, path: &Path) -> io::Result<()> {
    let ready = shared.ready.lock().expect("segment pool poisoned").pop_front();
    match ready {
        Some(file) => std::fs::rename(&file, path)?,
        None => preallocate(path, segment_bytes)?,
    }
    std::fs::File::open(dir)?.sync_all()
}

fn prepare(dir: &Path, segment_bytes: u64, shared: &Shared, jobs: &mpsc::Receiver<Job>) {
    let mut made = 0u64;
    while let Ok(job) = jobs.recv() {
        match job {
            Job::Delete(path) => {
                if let Err(error) = std::fs::remove_file(&path) {
                    tracing::warn!(%error, path = %path.display(), "cannot delete trimmed WAL segment");
                }
            }
            Job::Place(path) => {
                let _placing = shared.placing.lock().expect("segment pool poisoned");
                if !path.exists() {
                    if let Err(error) = place(dir, segment_bytes, shared, &path) {
                        // The writer will try again when it gets there.
                        tracing::warn!(%error, path = %path.display(), "cannot put the next WAL segment in place");
                    }
                }
            }
            Job::Refill => {}
        }
        // Whatever the job, leave the pool stocked.
        while shared.ready.lock().expect("segment pool poisoned").len() < MIN_READY {
            made += 1;
            let path = dir.join(format!("{}-{made}.spare", std::process::id()));
            match preallocate(&path, segment_bytes) {
                Ok(()) => shared.ready.lock().expect("segment pool poisoned").push_back(path),
                Err(error) => {
                    // The writer falls back to creating segments itself.
                    tracing::warn!(%error, "cannot prepare a WAL segment");
                    break;
                }
            }
        }
    }
}

/// Creates a zero-filled file through a temporary name, so a crash never
/// leaves a short one behind.
pub(crate) fn preallocate(path: &Path, size: u64) -> io::Result<()> {
    use std::os::unix::fs::FileExt;
    let tmp = path.with_extension("tmp");
    let file = std::fs::OpenOptions::new().write(true).create(true).truncate(true).open(&tmp)?;
    let zeros = vec![0u8; 1 << 20];
    let mut at = 0;
    while at < size {
        let n = zeros.len().min((size - at) as usize);
        file.write_all_at(&zeros[..n], at)?;
        at += n as u64;
    }
    file.sync_all()?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wait_for(pool: &SegmentPool, n: usize) {
        for _ in 0..500 {
            if pool.shared.ready.lock().unwrap().len() >= n {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        panic!("the pool never had {n} segments ready");
    }

    #[test]
    fn keeps_segments_ready_and_deletes_the_surplus() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("7-1.tmp"), b"cut short").unwrap();
        std::fs::write(dir.path().join("7-2.spare"), b"wrong size").unwrap();
        let pool = SegmentPool::start(dir.path(), 1 << 20, VecDeque::new()).unwrap();
        wait_for(&pool, MIN_READY);
        // Placed now, and placed in advance: both are whole, zeroed segments.
        let now = dir.path().join("00000000000000000000.wal");
        pool.place_now(&now).unwrap();
        let next = dir.path().join("00000000000001048576.wal");
        pool.place_later(next.clone());
        wait_for(&pool, MIN_READY);
        pool.place_now(&next).unwrap(); // already there: waits, then keeps it
        for placed in [&now, &next] {
            assert_eq!(std::fs::metadata(placed).unwrap().len(), 1 << 20);
            assert!(std::fs::read(placed).unwrap().iter().all(|b| *b == 0));
        }
        wait_for(&pool, MIN_READY);
        // Trimmed segments are kept up to KEEP, then deleted in the background.
        let trimmed = dir.path().join("00000000000002097152.wal");
        std::fs::write(&trimmed, vec![1u8; 1 << 20]).unwrap();
        pool.give_back(trimmed.clone());
        wait_for(&pool, KEEP);
        pool.give_back(now.clone());
        drop(pool); // joins the thread, which finishes its queue
        assert!(!now.exists());
        assert!(next.exists() && trimmed.exists());
        assert!(!dir.path().join("7-1.tmp").exists() && !dir.path().join("7-2.spare").exists());
        // A restart adopts the prepared spares.
        let pool = SegmentPool::start(dir.path(), 1 << 20, VecDeque::new()).unwrap();
        assert!(!pool.shared.ready.lock().unwrap().is_empty());
    }
}
