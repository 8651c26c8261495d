//! One process per WAL directory: an advisory lock on `LOCK`, held for the
//! process's life and released by the kernel when it dies (a SIGKILL
//! included), so a restart never waits and a second process never writes.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::path::Path;

use crate::error::{Result, StorageError};

pub struct WalLock {
    _file: File,
}

impl WalLock {
    /// Locks `dir` (created if missing), or says which process holds it.
    pub fn acquire(dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir).map_err(StorageError::Wal)?;
        let path = dir.join("LOCK");
        let mut file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&path)
            .map_err(StorageError::Wal)?;
        // A restart can race a peer's short recovery read: wait a little.
        let mut tries = 0;
        let locked = loop {
            match file.try_lock() {
                Err(std::fs::TryLockError::WouldBlock) if tries < 20 => {
                    tries += 1;
                    std::thread::sleep(std::time::Duration::from_millis(250));
                }
                other => break other,
            }
        };
        match locked {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                return Err(StorageError::Config(format!(
                    "the WAL directory {} is in use by another Floe process ({}); each broker needs its own --data-dir",
                    dir.display(),
                    holder.trim()
                )));
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(StorageError::Wal(e)),
        }
        file.set_len(0).map_err(StorageError::Wal)?;
        file.rewind().map_err(StorageError::Wal)?;
        let _ = write!(file, "pid {}", std::process::id());
        Ok(Self { _file: file })
    }
}
