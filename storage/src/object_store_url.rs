//! Turning `--object-store` URLs into an `ObjectStore` plus a key prefix.

use std::sync::Arc;
use std::time::Duration;

use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{ClientOptions, ObjectStore, RetryConfig};

use crate::error::{Result, StorageError};

/// An object store and the prefix under which this cluster keeps its keys.
#[derive(Clone)]
pub struct Bucket {
    pub store: Arc<dyn ObjectStore>,
    pub prefix: Path,
    /// The directory of a `file://` bucket (compare-and-swap is done there
    /// under a lock file, see `cas.rs`).
    pub local_root: Option<std::path::PathBuf>,
}

impl std::fmt::Debug for Bucket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Bucket({}, prefix={})", self.store, self.prefix)
    }
}

impl Bucket {
    /// The key `prefix/rest`.
    pub fn key(&self, rest: &str) -> Path {
        if self.prefix.as_ref().is_empty() {
            Path::from(rest)
        } else {
            Path::from(format!("{}/{rest}", self.prefix))
        }
    }

    /// Opens `file:///abs/dir` (created if missing) or `s3://bucket/prefix`.
    ///
    /// S3 settings come from the standard variables `AWS_ENDPOINT_URL`,
    /// `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_REGION`; a plain
    /// `http://` endpoint is allowed (MinIO, SeaweedFS on a private network).
    /// Whether the bucket is a local directory (one host only).
    pub fn is_local(&self) -> bool {
        self.local_root.is_some()
    }

    pub fn open(url: &str, request_timeout: Duration) -> Result<Self> {
        if let Some(path) = url.strip_prefix("file://") {
            std::fs::create_dir_all(path)
                .map_err(|e| StorageError::Config(format!("cannot create object directory {path}: {e}")))?;
            let fs = LocalFileSystem::new_with_prefix(path)
                .map_err(|e| StorageError::Config(format!("object directory {path}: {e}")))?
                .with_automatic_cleanup(true);
            return Ok(Self {
                store: Arc::new(fs),
                prefix: Path::default(),
                local_root: Some(std::path::PathBuf::from(path)),
            });
        }
        if let Some(rest) = url.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                return Err(StorageError::Config(format!("{url}: no bucket name")));
            }
            let mut builder = AmazonS3Builder::from_env()
                .with_bucket_name(bucket)
                // Replaces every client option, so allow_http goes inside.
                .with_client_options(
                    ClientOptions::new()
                        .with_allow_http(true)
                        .with_timeout(request_timeout)
                        .with_connect_timeout(Duration::from_secs(5)),
                )
                .with_retry(RetryConfig {
                    max_retries: 4,
                    retry_timeout: request_timeout,
                    ..RetryConfig::default()
                });
            if let Ok(endpoint) = std::env::var("AWS_ENDPOINT_URL") {
                // A custom endpoint is MinIO/SeaweedFS-like: path-style requests.
                builder = builder.with_endpoint(endpoint).with_virtual_hosted_style_request(false);
            }
            if std::env::var("AWS_REGION").is_err() && std::env::var("AWS_DEFAULT_REGION").is_err() {
                builder = builder.with_region("us-east-1");
            }
            let store = builder.build().map_err(|e| StorageError::Config(format!("{url}: {e}")))?;
            return Ok(Self {
                store: Arc::new(store),
                prefix: Path::from(prefix.trim_matches('/')),
                local_root: None,
            });
        }
        Err(StorageError::Config(format!("object store URL {url:?} must start with file:// or s3://")))
    }
}
