//! Storage errors, named by what the caller must do: retry later
//! (`Unavailable`, `Backpressure`, `ObjectStore`), stop writing (`Fenced`,
//! `LeaseExpired`, `Sealed`), never retry (`Invalid`, `Config`), or stop and
//! look (`Corrupt*`). Callers map them to Kafka error codes at the edge.

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
    /// This broker incarnation (or its claim on a stream) is over.
    #[error("fenced: {0}")]
    Fenced(String),
    /// This controller term is over: another controller writes the log. The
    /// request may be sent again to the new controller.
    #[error("this controller was deposed: {0}")]
    Deposed(String),
    #[error("stream {0} is not served by this broker")]
    UnknownStream(StreamId),
    #[error("stream {0} is being handed to another broker")]
    Sealed(StreamId),
    #[error("this broker's lease ran out; it acknowledges nothing until it renews")]
    LeaseExpired,
    #[error("the controller is not reachable: {0}")]
    Unavailable(String),
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

impl StorageError {
    /// Whether trying the same thing again later may succeed.
    pub fn is_retriable(&self) -> bool {
        matches!(
            self,
            Self::ObjectStore(_)
                | Self::ObjectRead { .. }
                | Self::Unavailable(_)
                | Self::Backpressure { .. }
                | Self::Deposed(_)
        )
    }
}

pub type Result<T, E = StorageError> = std::result::Result<T, E>;
