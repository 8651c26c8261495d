//! Idempotent producers: per producer and stream, the epoch and the last
//! few batches' sequence ranges, as Kafka keeps them. A retried batch is
//! acknowledged with its original offset and not written again; a gap in
//! sequences is refused.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use floe_protocol::{RecordBatch, ResponseError};
use floe_storage::meta::ProducerSnapshot;
use floe_storage::{StreamId, StreamStore};

use crate::proto;

/// Kafka keeps the metadata of the last five batches per producer: the most a
/// client has in flight with idempotence on.
const TRACKED_BATCHES: usize = 5;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct SeqRange {
    first: i32,
    last: i32,
    base_offset: i64,
}

#[derive(Debug, Default)]
struct ProducerEntry {
    epoch: i16,
    batches: VecDeque<SeqRange>,
}

/// What to do with an idempotent batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SequenceCheck {
    /// New and in order: append it.
    Append,
    /// Already written at this base offset: acknowledge, do not write.
    Duplicate(i64),
    /// Refuse with this error.
    Reject(ResponseError),
}

#[derive(Default)]
pub struct ProducerStates {
    entries: Mutex<HashMap<(i64, StreamId), ProducerEntry>>,
}

impl ProducerStates {
    /// Rebuilds one stream's state from the batches the store holds in
    /// memory for it (the WAL replayed after a restart), on top of what its
    /// metadata carried, so retries across a crash are caught.
    pub fn recover(&self, store: &StreamStore, stream: StreamId) {
        for bytes in store.cached_batches(stream) {
            if let Ok(batch) = RecordBatch::parse_unchecked_crc(bytes) {
                self.observe(stream, &batch);
            }
        }
    }

    /// Takes note of a batch already written at its base offset (replayed or
    /// recovered), unless the state already covers it.
    pub fn observe(&self, stream: StreamId, batch: &RecordBatch) {
        if batch.producer_id() < 0 || batch.base_sequence() < 0 {
            return;
        }
        let mut entries = self.entries.lock().expect("producer state poisoned");
        let covered = entries
            .get(&(batch.producer_id(), stream))
            .and_then(|e| e.batches.back())
            .is_some_and(|b| b.base_offset >= batch.base_offset());
        if !covered {
            record(&mut entries, stream, batch, batch.base_offset());
        }
    }

    /// Takes over a stream's producer state as its metadata carries it.
    pub fn restore<'a>(&self, stream: StreamId, snapshots: impl Iterator<Item = &'a ProducerSnapshot>) {
        let mut entries = self.entries.lock().expect("producer state poisoned");
        for p in snapshots {
            let batches = p
                .batches
                .iter()
                .map(|&(first, last, base_offset)| SeqRange { first, last, base_offset })
                .collect();
            entries.insert((p.producer_id, stream), ProducerEntry { epoch: p.epoch, batches });
        }
    }

    /// Drops a stream's state (it moved away).
    pub fn forget(&self, stream: StreamId) {
        self.entries.lock().expect("producer state poisoned").retain(|(_, s), _| *s != stream);
    }

    /// The state of producers that wrote to `stream` in `[start, end)`, as of
    /// `end` (batches from `end` on left out), for the controller.
    pub fn snapshot(&self, stream: StreamId, start: i64, end: i64) -> Vec<proto::StreamProducer> {
        let entries = self.entries.lock().expect("producer state poisoned");
        entries
            .iter()
            .filter(|((_, s), _)| *s == stream)
            .filter_map(|((pid, _), e)| {
                let batches: Vec<_> = e.batches.iter().filter(|b| b.base_offset < end).collect();
                if !batches.iter().any(|b| b.base_offset >= start) {
                    return None;
                }
                Some(proto::StreamProducer {
                    stream,
                    producer_id: *pid,
                    producer_epoch: i32::from(e.epoch),
                    batches: batches
                        .iter()
                        .map(|b| proto::ProducerBatch {
                            first_sequence: b.first,
                            last_sequence: b.last,
                            base_offset: b.base_offset,
                        })
                        .collect(),
                })
            })
            .collect()
    }

    /// Checks an idempotent batch and, when it is to be appended, runs
    /// `append` (which returns the assigned base offset) under the same lock,
    /// so two batches of one producer cannot interleave between check and append.
    pub fn check_and_append<E>(
        &self,
        stream: StreamId,
        batch: &RecordBatch,
        append: impl FnOnce() -> Result<i64, E>,
    ) -> Result<SequenceCheck, E> {
        let mut entries = self.entries.lock().expect("producer state poisoned");
        let verdict = check(entries.get(&(batch.producer_id(), stream)), batch);
        if verdict == SequenceCheck::Append {
            let base_offset = append()?;
            record(&mut entries, stream, batch, base_offset);
        }
        Ok(verdict)
    }
}

fn check(entry: Option<&ProducerEntry>, batch: &RecordBatch) -> SequenceCheck {
    let (epoch, first) = (batch.producer_epoch(), batch.base_sequence());
    let Some(entry) = entry else {
        // No state (a new producer, or one whose state is only in objects):
        // accept, as Kafka does for a producer it has no entry for.
        return SequenceCheck::Append;
    };
    if epoch < entry.epoch {
        return SequenceCheck::Reject(ResponseError::InvalidProducerEpoch);
    }
    if epoch > entry.epoch {
        return if first == 0 {
            SequenceCheck::Append
        } else {
            SequenceCheck::Reject(ResponseError::OutOfOrderSequenceNumber)
        };
    }
    let last = batch.last_sequence();
    if let Some(dup) = entry.batches.iter().find(|b| b.first == first && b.last == last) {
        return SequenceCheck::Duplicate(dup.base_offset);
    }
    match entry.batches.back() {
        Some(prev) if next_sequence(prev.last) == first => SequenceCheck::Append,
        Some(_) => SequenceCheck::Reject(ResponseError::OutOfOrderSequenceNumber),
        None => SequenceCheck::Append,
    }
}

fn record(
    entries: &mut HashMap<(i64, StreamId), ProducerEntry>,
    stream: StreamId,
    batch: &RecordBatch,
    base_offset: i64,
) {
    let entry = entries.entry((batch.producer_id(), stream)).or_default();
    if batch.producer_epoch() != entry.epoch {
        entry.epoch = batch.producer_epoch();
        entry.batches.clear();
    }
    entry.batches.push_back(SeqRange {
        first: batch.base_sequence(),
        last: batch.last_sequence(),
        base_offset,
    });
    while entry.batches.len() > TRACKED_BATCHES {
        entry.batches.pop_front();
    }
}

fn next_sequence(seq: i32) -> i32 {
    if seq == i32::MAX {
        0
    } else {
        seq + 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use floe_protocol::batch::build_idempotent_batch;

    fn batch(pid: i64, epoch: i16, seq: i32, n: usize) -> RecordBatch {
        let values: Vec<&[u8]> = (0..n).map(|_| &b"v"[..]).collect();
        RecordBatch::parse(build_idempotent_batch(0, 0, pid, epoch, seq, &values)).unwrap()
    }

    fn run(states: &ProducerStates, b: &RecordBatch, next: &mut i64) -> SequenceCheck {
        states
            .check_and_append::<()>(1, b, || {
                let base = *next;
                *next += i64::from(b.record_count());
                Ok(base)
            })
            .unwrap()
    }

    #[test]
    fn duplicates_get_their_first_offset_and_gaps_are_refused() {
        let s = ProducerStates::default();
        let mut next = 0;
        assert_eq!(run(&s, &batch(7, 0, 0, 3), &mut next), SequenceCheck::Append);
        assert_eq!(run(&s, &batch(7, 0, 3, 2), &mut next), SequenceCheck::Append);
        assert_eq!(run(&s, &batch(7, 0, 3, 2), &mut next), SequenceCheck::Duplicate(3));
        assert_eq!(run(&s, &batch(7, 0, 0, 3), &mut next), SequenceCheck::Duplicate(0));
        assert_eq!(next, 5, "duplicates are not written");
        assert_eq!(
            run(&s, &batch(7, 0, 9, 1), &mut next),
            SequenceCheck::Reject(ResponseError::OutOfOrderSequenceNumber)
        );
        assert_eq!(run(&s, &batch(7, 0, 5, 1), &mut next), SequenceCheck::Append);
    }

    #[test]
    fn epochs_fence_old_producers_and_restart_sequences() {
        let s = ProducerStates::default();
        let mut next = 0;
        run(&s, &batch(7, 1, 0, 1), &mut next);
        assert_eq!(
            run(&s, &batch(7, 0, 1, 1), &mut next),
            SequenceCheck::Reject(ResponseError::InvalidProducerEpoch)
        );
        assert_eq!(
            run(&s, &batch(7, 2, 5, 1), &mut next),
            SequenceCheck::Reject(ResponseError::OutOfOrderSequenceNumber)
        );
        assert_eq!(run(&s, &batch(7, 2, 0, 1), &mut next), SequenceCheck::Append);
        // Another producer id is independent.
        assert_eq!(run(&s, &batch(8, 0, 42, 1), &mut next), SequenceCheck::Append);
    }
}
