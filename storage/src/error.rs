//! Storage errors. Callers map them to Kafka error codes at the broker edge.

use crate::StreamId;

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("WAL I/O failed: {0}")]
    Wal(#[source] std::io::Error),
    #[error("the WAL is closed (the broker is shutting down or a previous fsync failed)")]
    WalClosed,
    #[error("object store: {0}")]
    ObjectStore(#[from] object_store::Error),
    #[error("reading object {key} failed: {reason}")]
    ObjectRead { key: String, reason: String },
    #[error("offset {offset} is outside [{start}, {end}]")]
    OffsetOutOfRange { offset: i64, start: i64, end: i64 },
    #[error("object {key} is corrupt: {reason}")]
    CorruptObject { key: String, reason: String },
    #[error("metadata log entry {seq} is corrupt: {reason}")]
    CorruptMetadata { seq: u64, reason: String },
    #[error("fenced: {0}")]
    Fenced(String),
    #[error("stream {0} does not exist")]
    UnknownStream(StreamId),
    #[error("topic {0} does not exist")]
    UnknownTopic(String),
    #[error("topic {0} already exists")]
    TopicExists(String),
    #[error("invalid request: {0}")]
    Invalid(String),
    #[error("{pending} bytes wait for upload, above the {limit}-byte limit; the object store may be down")]
    Backpressure { pending: u64, limit: u64 },
    #[error("invalid configuration: {0}")]
    Config(String),
}

pub type Result<T, E = StorageError> = std::result::Result<T, E>;
