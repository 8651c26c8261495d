//! Metadata log records and the entry that carries them.
//!
//! The format is versioned: every entry says which format wrote it, new
//! fields are added with defaults, so a later release reads every earlier
//! entry. Entries of the first format were a bare list of records.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::object::ObjectRange;
use crate::StreamId;

/// The format this release writes.
pub const FORMAT: u32 = 2;

/// A topic as stored: its partitions are streams.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicMeta {
    pub name: String,
    /// 16 random bytes, as Kafka's topic id (a UUID).
    pub id: [u8; 16],
    /// Stream of each partition, by partition index.
    pub streams: Vec<StreamId>,
    pub configs: BTreeMap<String, String>,
}

impl TopicMeta {
    /// The stream of partition `partition`, if the topic has it.
    pub fn stream(&self, partition: i32) -> Option<StreamId> {
        usize::try_from(partition).ok().and_then(|i| self.streams.get(i).copied())
    }
}

/// One idempotent producer's last batches on one stream, as the broker that
/// wrote them knew them: enough to recognise a retry after the stream moved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProducerSnapshot {
    pub producer_id: i64,
    pub epoch: i16,
    /// (first sequence, last sequence, base offset) of the newest batches, oldest first.
    pub batches: Vec<(i32, i32, i64)>,
}

/// A stream changes hands (or is taken by its owner's new incarnation) at a
/// new leader epoch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Assignment {
    pub stream: StreamId,
    pub owner: i32,
    pub epoch: u32,
    /// Producer state handed over by the previous owner (replaces what the
    /// stream had; None keeps it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub producers: Option<Vec<ProducerSnapshot>>,
}

/// How to reach a broker.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrokerAddress {
    /// Host and port Kafka clients are told.
    pub kafka_host: String,
    pub kafka_port: i32,
    /// `host:port` of the broker's control-plane (gRPC) endpoint.
    pub rpc: String,
    /// The host and WAL directory of the incarnation: a restart on the same
    /// directory is the same broker coming back, and a peer on the same
    /// host can read the directory after a crash.
    #[serde(default)]
    pub instance: String,
}

/// One metadata log record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum MetaRecord {
    /// A controller's first entry in its term: every later entry of an older
    /// term is refused, and a deposed controller's next append collides.
    ControllerElected {
        broker_id: i32,
        term: u64,
    },
    /// A broker (re)started: its epoch fences every earlier incarnation.
    BrokerRegistered {
        broker_id: i32,
        broker_epoch: u64,
        #[serde(default)]
        address: BrokerAddress,
        /// Format 1 listed the streams a registration took over; ignored now
        /// (ownership moves by `StreamsAssigned`).
        #[serde(default, skip_serializing)]
        streams: Vec<StreamId>,
    },
    /// The broker's incarnation is over: it stopped cleanly, or its lease
    /// expired. Its commits are refused from here on.
    BrokerFenced {
        broker_id: i32,
        broker_epoch: u64,
    },
    /// The incarnation gives all its streams away and takes no new ones.
    BrokerDraining {
        broker_id: i32,
        broker_epoch: u64,
    },
    TopicCreated {
        topic: TopicMeta,
    },
    TopicDeleted {
        name: String,
    },
    PartitionsAdded {
        name: String,
        streams: Vec<StreamId>,
    },
    TopicConfigsSet {
        name: String,
        configs: BTreeMap<String, String>,
    },
    /// An uploaded object's ranges become part of their streams.
    ObjectCommitted {
        key: String,
        size: u64,
        broker_id: i32,
        broker_epoch: u64,
        ranges: Vec<ObjectRange>,
        /// Idempotent producers' state as of each range's end.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        producers: Vec<(StreamId, ProducerSnapshot)>,
    },
    /// A block of producer ids handed to a broker.
    ProducerIdsAllocated {
        broker_id: i32,
        first: i64,
        count: i64,
    },
    /// Streams get a new owner at a new leader epoch.
    StreamsAssigned {
        assignments: Vec<Assignment>,
    },
    /// The owner of each stream is asked to hand it to `to`: it stops taking
    /// writes, commits what it acknowledged, and releases it.
    MovesStarted {
        moves: Vec<(StreamId, i32)>,
    },
    /// Streams' log start offsets move forward (retention, DeleteRecords):
    /// ranges wholly below them are dropped, and an object no stream reads
    /// any more becomes garbage.
    StreamsTrimmed {
        trims: Vec<(StreamId, i64)>,
    },
    /// A compaction rewrote runs of streams' ranges into one new object: each
    /// run's ranges are replaced by the new ones covering the same offsets.
    /// A run whose stream changed owner or epoch, or whose ranges are no
    /// longer exactly those (trimmed, already compacted), is skipped alone.
    ObjectCompacted {
        key: String,
        size: u64,
        broker_id: i32,
        broker_epoch: u64,
        runs: Vec<CompactedRun>,
    },
    /// Garbage objects were deleted from the bucket.
    ObjectsDeleted {
        keys: Vec<String>,
    },
    /// A fenced broker's WAL is to be read by `recoverer`, a live broker that
    /// can reach its directory, before its streams are served elsewhere.
    WalRecoveryStarted {
        broker_id: i32,
        broker_epoch: u64,
        recoverer: i32,
    },
    /// The fenced incarnation's un-uploaded WAL tail is committed (in one
    /// object, or none when it held nothing): its streams may move on.
    WalRecovered {
        broker_id: i32,
        broker_epoch: u64,
        recoverer: i32,
        #[serde(default)]
        key: String,
        #[serde(default)]
        ranges: Vec<ObjectRange>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        producers: Vec<(StreamId, ProducerSnapshot)>,
    },
}

/// One stream's part of a compaction: `[start_offset, end_offset)`, read
/// from its old ranges while the stream was at `stream_epoch`, now at
/// `ranges` in the new object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CompactedRun {
    pub stream: StreamId,
    pub stream_epoch: u32,
    pub start_offset: i64,
    pub end_offset: i64,
    pub ranges: Vec<ObjectRange>,
    /// Key compaction: every record below this offset whose key has a newer
    /// record was dropped (the stream's `cleaned_end` moves here).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cleaned_to: Option<i64>,
    /// With `cleaned_to`: the timestamp of the oldest tombstone left below
    /// it, so that a round is due when it expires (None: no tombstone).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oldest_tombstone: Option<i64>,
}

/// One log entry as stored: who wrote it, in which term, and a nonce that
/// lets a writer whose PUT answer was lost recognise its own entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogEntry {
    pub format: u32,
    pub writer: i32,
    pub term: u64,
    pub nonce: u64,
    pub records: Vec<MetaRecord>,
}

impl LogEntry {
    /// Decodes an entry of any format.
    pub fn decode(bytes: &[u8]) -> Result<Self, serde_json::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Stored {
            Entry(LogEntry),
            FormatOne(Vec<MetaRecord>),
        }
        Ok(match serde_json::from_slice(bytes)? {
            Stored::Entry(e) => e,
            Stored::FormatOne(records) => LogEntry { format: 1, writer: -1, term: 0, nonce: 0, records },
        })
    }
}
