//! Floe's stream store.
//!
//! A stream is an append-only sequence of record batches addressed by offset
//! (a Kafka partition is one stream). Appends go to a broker-wide WAL with
//! group commit; an uploader moves WAL contents into stream-set objects in
//! the object store and commits them to a metadata log kept in the same
//! bucket; reads come from an in-memory log cache or from objects through a
//! block cache. This crate knows nothing of Kafka requests: it deals in
//! streams, offsets and byte batches.

mod block_cache;
pub mod cas;
pub mod compaction;
pub mod config;
pub mod error;
pub mod latency;
pub mod meta;
pub mod object;
pub mod object_store_url;
mod segment_pool;
mod store;
mod stream;
mod uploader;
pub mod wal;
mod wal_lock;

pub use config::StoreConfig;
pub use error::{Result, StorageError};
pub use meta::{MetaState, StreamMeta, TopicMeta, WriteLease};
pub use object_store_url::Bucket;
pub use store::{
    AppendInput, Appended, CommitOutcome, Committer, ObjectCommit, ReadResult, Refusal, StoreContext,
    StreamOffsets, StreamStore, TimestampHint,
};
pub use wal_lock::WalLock;

/// Identifies a stream within a cluster.
pub type StreamId = u64;
