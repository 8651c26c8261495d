//! Conditional writes: create-only and compare-and-swap, the two primitives
//! the cluster's fencing stands on, and the start-up check that a store
//! really provides them.
//!
//! S3 gives both (If-None-Match, If-Match on the ETag). The local-directory
//! store of `object_store` has create-only but no compare-and-swap, so for
//! `file://` buckets the swap is done under an advisory lock on a side file:
//! every process on the host that swaps takes it, which is what makes a
//! local directory safe to share between brokers on one machine.

use std::path::PathBuf;

use bytes::Bytes;
use object_store::path::Path;
use object_store::{ObjectStoreExt, PutMode, PutOptions, PutPayload, UpdateVersion};

use crate::error::{Result, StorageError};
use crate::object_store_url::Bucket;

/// Outcome of a conditional write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cas {
    /// Written; the new version.
    Won(String),
    /// The condition did not hold; nothing was written.
    Lost,
}

/// Reads `key` and its version (None: no such object).
pub async fn read(bucket: &Bucket, key: &Path) -> Result<Option<(Bytes, String)>> {
    match bucket.store.get(key).await {
        Ok(got) => {
            let etag = got.meta.e_tag.clone();
            let bytes = got.bytes().await?;
            let version = match (&bucket.local_root, etag) {
                (None, Some(etag)) => etag,
                // Local files: the content is the version (writers put a
                // counter in it, so every write differs).
                _ => content_version(&bytes),
            };
            Ok(Some((bytes, version)))
        }
        Err(object_store::Error::NotFound { .. }) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Writes `key` only if it does not exist.
pub async fn create(bucket: &Bucket, key: &Path, body: Bytes) -> Result<Cas> {
    let opts = PutOptions { mode: PutMode::Create, ..PutOptions::default() };
    match bucket.store.put_opts(key, PutPayload::from(body.clone()), opts).await {
        Ok(r) => Ok(Cas::Won(match (&bucket.local_root, r.e_tag) {
            (None, Some(etag)) => etag,
            _ => content_version(&body),
        })),
        Err(object_store::Error::AlreadyExists { .. } | object_store::Error::Precondition { .. }) => {
            Ok(Cas::Lost)
        }
        // AWS answers a racing If-None-Match with 409 ConditionalRequestConflict.
        Err(object_store::Error::Generic { source, .. }) if source.to_string().contains("409") => {
            Ok(Cas::Lost)
        }
        Err(e) => Err(e.into()),
    }
}

/// Replaces `key` only if its version is still `version`.
pub async fn replace(bucket: &Bucket, key: &Path, version: &str, body: Bytes) -> Result<Cas> {
    if let Some(root) = &bucket.local_root {
        let path = root.join(key.as_ref());
        let version = version.to_string();
        return tokio::task::spawn_blocking(move || replace_local(path, &version, &body))
            .await
            .map_err(|e| StorageError::Config(format!("local compare-and-swap task failed: {e}")))?;
    }
    let opts = PutOptions {
        mode: PutMode::Update(UpdateVersion { e_tag: Some(version.to_string()), version: None }),
        ..PutOptions::default()
    };
    match bucket.store.put_opts(key, PutPayload::from(body), opts).await {
        Ok(r) => Ok(Cas::Won(r.e_tag.unwrap_or_default())),
        Err(
            object_store::Error::Precondition { .. }
            | object_store::Error::NotFound { .. }
            | object_store::Error::AlreadyExists { .. },
        ) => Ok(Cas::Lost),
        Err(object_store::Error::Generic { source, .. }) if source.to_string().contains("409") => {
            Ok(Cas::Lost)
        }
        Err(e) => Err(e.into()),
    }
}

fn replace_local(path: PathBuf, version: &str, body: &[u8]) -> Result<Cas> {
    let io = |e: std::io::Error| StorageError::Config(format!("{}: {e}", path.display()));
    let lock_path = path.with_extension("cas-lock");
    let lock =
        std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(&lock_path).map_err(io)?;
    lock.lock().map_err(io)?;
    let current = match std::fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Cas::Lost),
        Err(e) => return Err(io(e)),
    };
    if content_version(&current) != version {
        return Ok(Cas::Lost);
    }
    let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
    std::fs::write(&tmp, body).map_err(io)?;
    std::fs::File::open(&tmp).and_then(|f| f.sync_all()).map_err(io)?;
    std::fs::rename(&tmp, &path).map_err(io)?;
    Ok(Cas::Won(content_version(body)))
}

fn content_version(bytes: &[u8]) -> String {
    format!("{:08x}-{}", crc32c::crc32c(bytes), bytes.len())
}

/// Checks that the store's conditional writes are atomic: of several racing
/// create-only writers exactly one wins, a swap against a missing key or a
/// stale version fails, a swap against the current version succeeds.
/// Brokers refuse to form a cluster on a store that fails this: fencing
/// would silently not fence.
pub async fn check_atomic(bucket: &Bucket) -> Result<()> {
    let dir = format!("meta/probe/{:016x}", crate::meta::log::nonce());
    let race = bucket.key(&format!("{dir}/race"));
    let missing = bucket.key(&format!("{dir}/missing"));
    let unsafe_store = |what: String| {
        StorageError::Config(format!(
            "the object store's conditional writes are not atomic ({what}); Floe needs If-None-Match and \
             If-Match to fence writers (AWS S3, MinIO, SeaweedFS and Ceph provide them)"
        ))
    };
    let result = async {
        const WRITERS: usize = 8;
        let attempts = (0..WRITERS).map(|i| create(bucket, &race, Bytes::from(format!("writer {i}"))));
        let outcomes = futures::future::join_all(attempts).await;
        let mut winners = 0;
        for o in outcomes {
            if matches!(o?, Cas::Won(_)) {
                winners += 1;
            }
        }
        if winners != 1 {
            return Err(unsafe_store(format!("{winners} of {WRITERS} racing create-only writers won")));
        }
        if replace(bucket, &missing, "\"no-such-version\"", Bytes::from_static(b"x")).await? != Cas::Lost
            || read(bucket, &missing).await?.is_some()
        {
            return Err(unsafe_store("If-Match on a missing key created it".into()));
        }
        let (_, version) =
            read(bucket, &race).await?.ok_or_else(|| unsafe_store("the winner's write is gone".into()))?;
        if replace(bucket, &race, "\"stale-version\"", Bytes::from_static(b"stale")).await? != Cas::Lost {
            return Err(unsafe_store("If-Match with a stale version replaced the object".into()));
        }
        if !matches!(replace(bucket, &race, &version, Bytes::from_static(b"next")).await?, Cas::Won(_)) {
            return Err(unsafe_store("If-Match with the current version failed".into()));
        }
        Ok(())
    }
    .await;
    for key in [&race, &missing] {
        let _ = bucket.store.delete(key).await;
    }
    result
}
