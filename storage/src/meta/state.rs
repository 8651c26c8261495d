//! The state the metadata log describes, and the pure rules that take it
//! from one entry to the next: `validate` refuses a record without changing
//! anything, `apply` changes only what the record names.
//!
//! Maps and range lists are persistent (`imbl`), so a reader's copy and the
//! state after a change share everything the change did not touch: applying
//! a commit costs what the commit holds, not the size of the state.

use std::collections::BTreeMap;

use imbl::{OrdMap, Vector};
use serde::{Deserialize, Serialize};

use crate::error::{Result, StorageError};
use crate::meta::objects::{kept, ObjectMeta};
use crate::meta::record::{Assignment, BrokerAddress, MetaRecord, ProducerSnapshot, TopicMeta};
use crate::object::ObjectRange;
use crate::StreamId;

/// One stream's committed state and owner.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamMeta {
    /// Leader epoch: grows on every change of owner or owner incarnation;
    /// commits from an older epoch are refused.
    pub epoch: u32,
    /// The broker serving the stream (None: not yet assigned).
    #[serde(default)]
    pub owner: Option<i32>,
    /// A move to this broker has started; the owner is handing it over.
    #[serde(default)]
    pub moving_to: Option<i32>,
    /// First offset still readable (retention moves it).
    pub start_offset: i64,
    /// Every offset below this is in a committed object.
    pub end_offset: i64,
    /// Committed ranges in offset order, with the object key holding each.
    pub ranges: Vector<(String, ObjectRange)>,
    /// Committed bytes (for status and balancing).
    #[serde(default)]
    pub bytes: u64,
    /// Idempotent producers' state as of `end_offset`, by producer id.
    #[serde(default)]
    pub producers: OrdMap<i64, ProducerSnapshot>,
    /// Key compaction has cleaned the stream below this offset (0: never);
    /// what lies above is dirty.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub cleaned_end: i64,
    /// The timestamp of the oldest tombstone below `cleaned_end`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oldest_tombstone: Option<i64>,
}

fn is_zero(v: &i64) -> bool {
    *v == 0
}

/// A registered broker incarnation.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrokerMeta {
    pub epoch: u64,
    pub address: BrokerAddress,
    /// The incarnation ended (clean stop or expired lease).
    pub fenced: bool,
    /// The live broker reading this fenced incarnation's WAL.
    #[serde(default)]
    pub recovery: Option<i32>,
    /// The fenced incarnation's WAL was recovered by a peer.
    #[serde(default)]
    pub wal_recovered: bool,
    /// The incarnation is giving its streams away (drain, or a stop).
    #[serde(default)]
    pub draining: bool,
}

/// The state the log describes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetaState {
    /// Sequence number of the last applied log entry (0: none).
    pub seq: u64,
    /// Term of the controller that wrote the last `ControllerElected`.
    #[serde(default)]
    pub term: u64,
    /// Broker id of that controller (-1: none yet).
    #[serde(default = "no_broker")]
    pub controller: i32,
    #[serde(default)]
    pub brokers: OrdMap<i32, BrokerMeta>,
    /// Format 1 kept only broker epochs; read into `brokers` on load.
    #[serde(default, skip_serializing)]
    broker_epochs: BTreeMap<i32, u64>,
    pub topics: OrdMap<String, TopicMeta>,
    pub streams: OrdMap<StreamId, StreamMeta>,
    pub next_stream_id: StreamId,
    pub next_producer_id: i64,
    /// Objects that committed ranges point into.
    #[serde(default)]
    pub objects: OrdMap<String, ObjectMeta>,
    /// Objects nothing reads any more, with their sizes: to be deleted.
    #[serde(default)]
    pub garbage: OrdMap<String, u64>,
}

fn no_broker() -> i32 {
    -1
}

fn fenced(msg: String) -> StorageError {
    StorageError::Fenced(msg)
}

impl MetaState {
    /// Moves fields of older formats into their current place.
    pub(crate) fn upgrade(&mut self) {
        for (id, epoch) in std::mem::take(&mut self.broker_epochs) {
            self.brokers.entry(id).or_insert(BrokerMeta { epoch, fenced: true, ..BrokerMeta::default() });
        }
        self.rebuild_objects();
    }

    /// The live (registered, not fenced) incarnation of `broker_id`.
    pub fn live_broker(&self, broker_id: i32) -> Option<&BrokerMeta> {
        self.brokers.get(&broker_id).filter(|b| !b.fenced)
    }

    /// Live brokers that may receive streams (not draining).
    pub fn eligible_brokers(&self) -> Vec<i32> {
        self.brokers.iter().filter(|(_, b)| !b.fenced && !b.draining).map(|(id, _)| *id).collect()
    }

    /// Streams owned by `broker_id`.
    pub fn streams_of(&self, broker_id: i32) -> impl Iterator<Item = (StreamId, &StreamMeta)> {
        self.streams.iter().filter(move |(_, s)| s.owner == Some(broker_id)).map(|(id, s)| (*id, s))
    }

    /// The topic and partition index of a stream.
    pub fn partition_of(&self, stream: StreamId) -> Option<(&TopicMeta, i32)> {
        self.topics.values().find_map(|t| t.streams.iter().position(|&s| s == stream).map(|i| (t, i as i32)))
    }

    /// Whether `range`, committed by `broker_id`, continues its stream at the
    /// stream's current epoch and owner. Ranges of deleted streams are fine
    /// (dropped on apply).
    pub fn check_range(&self, broker_id: i32, key: &str, r: &ObjectRange) -> Result<()> {
        let Some(s) = self.streams.get(&r.stream) else { return Ok(()) };
        if s.owner != Some(broker_id) || r.epoch != s.epoch {
            return Err(fenced(format!(
                "commit of {key}: stream {} is owned by {:?} at epoch {}, not by {broker_id} at {}",
                r.stream, s.owner, s.epoch, r.epoch
            )));
        }
        if r.start_offset != s.end_offset {
            return Err(StorageError::Invalid(format!(
                "commit of {key}: stream {} continues at {}, range starts at {}",
                r.stream, s.end_offset, r.start_offset
            )));
        }
        Ok(())
    }

    /// Checks `record` against the state; an error leaves the state unchanged.
    pub fn validate(&self, record: &MetaRecord) -> Result<()> {
        match record {
            MetaRecord::ControllerElected { term, .. } => {
                if *term <= self.term {
                    return Err(fenced(format!("term {term} is not newer than term {}", self.term)));
                }
            }
            MetaRecord::BrokerRegistered { broker_id, broker_epoch, .. } => {
                if self.brokers.get(broker_id).is_some_and(|b| b.epoch >= *broker_epoch) {
                    return Err(fenced(format!(
                        "broker {broker_id} epoch {broker_epoch} is not newer than the registered one"
                    )));
                }
            }
            MetaRecord::BrokerFenced { broker_id, broker_epoch } => {
                if self.brokers.get(broker_id).map(|b| b.epoch) != Some(*broker_epoch) {
                    return Err(StorageError::Invalid(format!(
                        "broker {broker_id} epoch {broker_epoch} is not the registered incarnation"
                    )));
                }
            }
            MetaRecord::BrokerDraining { broker_id, broker_epoch } => {
                if self.live_broker(*broker_id).map(|b| b.epoch) != Some(*broker_epoch) {
                    return Err(StorageError::Invalid(format!(
                        "broker {broker_id} epoch {broker_epoch} is not live"
                    )));
                }
            }
            MetaRecord::TopicCreated { topic } => {
                if self.topics.contains_key(&topic.name) {
                    return Err(StorageError::TopicExists(topic.name.clone()));
                }
                if topic.streams.iter().any(|s| self.streams.contains_key(s)) {
                    return Err(StorageError::Invalid(format!("topic {}: stream ids in use", topic.name)));
                }
            }
            MetaRecord::TopicDeleted { name }
            | MetaRecord::PartitionsAdded { name, .. }
            | MetaRecord::TopicConfigsSet { name, .. } => {
                if !self.topics.contains_key(name) {
                    return Err(StorageError::UnknownTopic(name.clone()));
                }
            }
            MetaRecord::ObjectCommitted { broker_id, broker_epoch, ranges, key, .. } => {
                if self.live_broker(*broker_id).map(|b| b.epoch) != Some(*broker_epoch) {
                    return Err(fenced(format!(
                        "commit of {key} by broker {broker_id} at stale epoch {broker_epoch}"
                    )));
                }
                for r in ranges {
                    self.check_range(*broker_id, key, r)?;
                }
            }
            MetaRecord::ProducerIdsAllocated { first, count, .. } => {
                if *first != self.next_producer_id || *count <= 0 {
                    return Err(StorageError::Invalid("producer id block out of order".into()));
                }
            }
            MetaRecord::StreamsAssigned { assignments } => {
                let mut seen = std::collections::HashSet::new();
                if !assignments.iter().all(|a| seen.insert(a.stream)) {
                    return Err(StorageError::Invalid("a stream is assigned twice in one record".into()));
                }
                for Assignment { stream, owner, epoch, .. } in assignments {
                    let Some(s) = self.streams.get(stream) else {
                        return Err(StorageError::UnknownStream(*stream));
                    };
                    if *epoch <= s.epoch {
                        return Err(fenced(format!(
                            "stream {stream}: epoch {epoch} is not newer than {}",
                            s.epoch
                        )));
                    }
                    if self.live_broker(*owner).is_none() {
                        return Err(StorageError::Invalid(format!(
                            "stream {stream}: broker {owner} is not live"
                        )));
                    }
                }
            }
            MetaRecord::WalRecoveryStarted { broker_id, broker_epoch, recoverer } => {
                let ok = self.brokers.get(broker_id).is_some_and(|b| b.epoch == *broker_epoch && b.fenced);
                if !ok || self.live_broker(*recoverer).is_none() {
                    return Err(StorageError::Invalid(format!(
                        "broker {broker_id} epoch {broker_epoch} cannot be recovered by {recoverer}"
                    )));
                }
            }
            MetaRecord::WalRecovered { broker_id, broker_epoch, key, ranges, .. } => {
                if !self.brokers.get(broker_id).is_some_and(|b| b.epoch == *broker_epoch && b.fenced) {
                    return Err(fenced(format!(
                        "broker {broker_id} epoch {broker_epoch} is not a fenced incarnation any more"
                    )));
                }
                for r in ranges {
                    self.check_range(*broker_id, key, r)?;
                }
            }
            MetaRecord::StreamsTrimmed { trims } => {
                for (stream, start) in trims {
                    // A stream deleted meanwhile has nothing left to trim.
                    let Some(s) = self.streams.get(stream) else { continue };
                    if *start > s.end_offset {
                        return Err(StorageError::Invalid(format!(
                            "stream {stream}: start offset {start} is past its committed end {}",
                            s.end_offset
                        )));
                    }
                }
            }
            MetaRecord::ObjectCompacted { key, broker_id, broker_epoch, .. } => {
                // Runs are checked one by one when applied; the writer must
                // be the live incarnation, and the key new.
                if self.live_broker(*broker_id).map(|b| b.epoch) != Some(*broker_epoch) {
                    return Err(fenced(format!(
                        "compaction {key} by broker {broker_id} at stale epoch {broker_epoch}"
                    )));
                }
                if self.objects.contains_key(key) || self.garbage.contains_key(key) {
                    return Err(StorageError::Invalid(format!("object {key} is already known")));
                }
            }
            MetaRecord::ObjectsDeleted { keys } => {
                if let Some(k) = keys.iter().find(|k| !self.garbage.contains_key(*k)) {
                    return Err(StorageError::Invalid(format!("object {k} is not garbage")));
                }
            }
            MetaRecord::MovesStarted { moves } => {
                for (stream, to) in moves {
                    let Some(s) = self.streams.get(stream) else {
                        return Err(StorageError::UnknownStream(*stream));
                    };
                    if s.owner.is_none() || self.live_broker(*to).is_none() {
                        return Err(StorageError::Invalid(format!(
                            "stream {stream}: cannot move from {:?} to {to}",
                            s.owner
                        )));
                    }
                }
            }
        }
        Ok(())
    }

    /// Applies a validated record.
    pub fn apply(&mut self, record: &MetaRecord) {
        match record {
            MetaRecord::ControllerElected { broker_id, term } => {
                self.term = *term;
                self.controller = *broker_id;
            }
            MetaRecord::BrokerRegistered { broker_id, broker_epoch, address, .. } => {
                self.brokers.insert(
                    *broker_id,
                    BrokerMeta { epoch: *broker_epoch, address: address.clone(), ..BrokerMeta::default() },
                );
            }
            MetaRecord::BrokerFenced { broker_id, .. } => {
                if let Some(b) = self.brokers.get_mut(broker_id) {
                    b.fenced = true;
                }
            }
            MetaRecord::BrokerDraining { broker_id, .. } => {
                if let Some(b) = self.brokers.get_mut(broker_id) {
                    b.draining = true;
                }
            }
            MetaRecord::TopicCreated { topic } => {
                for &id in &topic.streams {
                    self.streams.insert(id, StreamMeta::default());
                    self.next_stream_id = self.next_stream_id.max(id + 1);
                }
                self.topics.insert(topic.name.clone(), topic.clone());
            }
            MetaRecord::TopicDeleted { name } => {
                if let Some(t) = self.topics.remove(name) {
                    for id in t.streams {
                        if let Some(s) = self.streams.remove(&id) {
                            self.release_stream(&s);
                        }
                    }
                }
            }
            MetaRecord::PartitionsAdded { name, streams } => {
                if let Some(t) = self.topics.get_mut(name) {
                    for &id in streams {
                        t.streams.push(id);
                        self.streams.insert(id, StreamMeta::default());
                        self.next_stream_id = self.next_stream_id.max(id + 1);
                    }
                }
            }
            MetaRecord::TopicConfigsSet { name, configs } => {
                if let Some(t) = self.topics.get_mut(name) {
                    t.configs = configs.clone();
                }
            }
            MetaRecord::ObjectCommitted { key, size, ranges, producers, .. } => {
                self.add_ranges(key, *size, ranges, producers)
            }
            MetaRecord::StreamsTrimmed { trims } => {
                for (stream, start) in trims {
                    self.trim_stream(*stream, *start);
                }
            }
            MetaRecord::ObjectCompacted { key, size, broker_id, runs, .. } => {
                self.apply_compaction(key, *size, *broker_id, runs)
            }
            MetaRecord::ObjectsDeleted { keys } => {
                for k in keys {
                    self.garbage.remove(k);
                }
            }
            MetaRecord::WalRecoveryStarted { broker_id, recoverer, .. } => {
                if let Some(b) = self.brokers.get_mut(broker_id) {
                    b.recovery = Some(*recoverer);
                }
            }
            MetaRecord::WalRecovered { broker_id, key, ranges, producers, .. } => {
                let size = ranges.iter().map(|r| r.length).sum();
                self.add_ranges(key, size, ranges, producers);
                if let Some(b) = self.brokers.get_mut(broker_id) {
                    b.recovery = None;
                    b.wal_recovered = true;
                }
            }
            MetaRecord::ProducerIdsAllocated { first, count, .. } => {
                self.next_producer_id = first + count;
            }
            MetaRecord::StreamsAssigned { assignments } => {
                for a in assignments {
                    if let Some(s) = self.streams.get_mut(&a.stream) {
                        s.owner = Some(a.owner);
                        s.epoch = a.epoch;
                        s.moving_to = None;
                        if let Some(producers) = &a.producers {
                            s.producers = producers.iter().map(|p| (p.producer_id, p.clone())).collect();
                        }
                    }
                }
            }
            MetaRecord::MovesStarted { moves } => {
                for (stream, to) in moves {
                    if let Some(s) = self.streams.get_mut(stream) {
                        s.moving_to = Some(*to);
                    }
                }
            }
        }
    }

    fn add_ranges(
        &mut self,
        key: &str,
        size: u64,
        ranges: &[ObjectRange],
        producers: &[(StreamId, ProducerSnapshot)],
    ) {
        let (mut live, mut live_bytes) = (0, 0);
        for r in ranges {
            if let Some(s) = self.streams.get_mut(&r.stream) {
                s.end_offset = r.end_offset;
                // Trims stop at the committed end, so a new range is kept;
                // were one wholly below the start, no reader would need it.
                if kept(s, r) {
                    s.bytes += r.length;
                    s.ranges.push_back((key.to_string(), r.clone()));
                    live += 1;
                    live_bytes += r.length;
                }
            }
        }
        self.add_object(key, size, live, live_bytes);
        for (stream, p) in producers {
            if let Some(s) = self.streams.get_mut(stream) {
                s.producers.insert(p.producer_id, p.clone());
            }
        }
    }

    /// Validates and applies `records` in order, all or none.
    pub fn apply_all(&mut self, records: &[MetaRecord]) -> Result<()> {
        // Cheap: the copy shares everything with `self`.
        let mut next = self.clone();
        for r in records {
            next.validate(r)?;
            next.apply(r);
        }
        *self = next;
        Ok(())
    }
}
