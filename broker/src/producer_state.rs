//! Idempotent producers: per producer and stream, the epoch and the last
//! few batches' sequence ranges, as Kafka keeps them. A retried batch is
//! acknowledged with its original offset and not written again; a gap in
//! sequences is refused.
//!
//! A batch's sequences are recorded when its append is queued, so that the
//! next batch is checked against them, but the batch is not yet durable: a
//! retry is answered with its original's outcome (acknowledged once the
//! original is durable, refused if it failed), never just because later
//! offsets became durable: that would acknowledge a record never written.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use floe_protocol::{RecordBatch, ResponseError};
use floe_storage::meta::ProducerSnapshot;
use floe_storage::{Appended, StorageError, StreamId, StreamStore};
use tokio::sync::watch;

use crate::proto;

/// Kafka keeps the metadata of the last five batches per producer: the most a
/// client has in flight with idempotence on.
const TRACKED_BATCHES: usize = 5;

#[derive(Debug, Clone)]
struct SeqRange {
    first: i32,
    last: i32,
    base_offset: i64,
    /// The append's outcome while it may still fail (None: known durable,
    /// restored from the metadata or replayed from the WAL).
    settled: Option<watch::Receiver<Settle>>,
}

/// Where an append of an idempotent batch stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settle {
    Pending,
    /// Fsynced while this broker's lease held: acknowledge.
    Durable,
    /// Fsynced, but after the lease ran out: durable, not acknowledged here.
    LeaseExpired,
    /// Not written: the state forgets it, and a retry is appended anew.
    Failed,
}

/// The duty that comes with an appended idempotent batch: say how its
/// append ended, or retries of it wait in vain. [`Settlement::settle_when`]
/// does it in its own task, whatever becomes of the request.
#[must_use = "a retry of this batch waits until its append is settled"]
pub struct Settlement {
    tx: watch::Sender<Settle>,
}

impl Settlement {
    /// The outcome, for the request that appended the batch.
    pub fn outcome(&self) -> Original {
        Original(Some(self.tx.subscribe()))
    }

    /// Records the outcome for the retries that wait on it. A failed batch
    /// keeps its place in the state: the WAL accepts nothing more after a
    /// failed write, so a retry could not be written here anyway, and
    /// taking it out would make the retries of the batches behind it out of
    /// order (a client then starts a new epoch and resends what may already
    /// be written). Its retries get a retriable error until the stream is
    /// served by an incarnation whose state was rebuilt from durable data.
    pub fn settle(self, outcome: Settle) {
        let _ = self.tx.send(outcome);
    }

    /// Settles once `appended` is durable or has failed.
    pub async fn settle_when(self, appended: Appended) {
        let outcome = match appended.durable().await {
            Ok(_) => Settle::Durable,
            Err(StorageError::LeaseExpired) => Settle::LeaseExpired,
            Err(_) => Settle::Failed,
        };
        self.settle(outcome);
    }
}

/// The original of a duplicate, whose append may still be under way.
pub struct Original(Option<watch::Receiver<Settle>>);

impl Original {
    /// How the original's append ended (Durable for one known durable);
    /// Pending if it is still not settled after `timeout`.
    pub async fn outcome(self, timeout: std::time::Duration) -> Settle {
        let Some(mut rx) = self.0 else { return Settle::Durable };
        let settled = tokio::time::timeout(timeout, rx.wait_for(|s| *s != Settle::Pending)).await;
        match settled {
            Ok(Ok(s)) => *s,
            // The settlement was dropped unsettled: its outcome is unknown.
            Ok(Err(_)) => Settle::Failed,
            Err(_) => Settle::Pending,
        }
    }
}

/// A checked batch: the verdict, the settlement of an append, or the
/// original of a duplicate.
pub struct Checked {
    pub verdict: SequenceCheck,
    pub settlement: Option<Settlement>,
    pub original: Option<Original>,
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
            record(&mut entries, stream, batch, batch.base_offset(), None);
        }
    }

    /// Takes over a stream's producer state as its metadata carries it.
    pub fn restore<'a>(&self, stream: StreamId, snapshots: impl Iterator<Item = &'a ProducerSnapshot>) {
        let mut entries = self.entries.lock().expect("producer state poisoned");
        for p in snapshots {
            let batches = p
                .batches
                .iter()
                .map(|&(first, last, base_offset)| SeqRange { first, last, base_offset, settled: None })
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
    ) -> Result<Checked, E> {
        let mut entries = self.entries.lock().expect("producer state poisoned");
        let entry = entries.get(&(batch.producer_id(), stream));
        let verdict = check(entry, batch);
        let mut checked = Checked { verdict, settlement: None, original: None };
        match verdict {
            SequenceCheck::Append => {
                let base_offset = append()?;
                let (tx, rx) = watch::channel(Settle::Pending);
                record(&mut entries, stream, batch, base_offset, Some(rx));
                checked.settlement = Some(Settlement { tx });
            }
            SequenceCheck::Duplicate(base_offset) => {
                let settled = entry
                    .and_then(|e| e.batches.iter().find(|b| b.base_offset == base_offset))
                    .and_then(|b| b.settled.clone());
                checked.original = Some(Original(settled));
            }
            SequenceCheck::Reject(_) => {}
        }
        Ok(checked)
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
    settled: Option<watch::Receiver<Settle>>,
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
        settled,
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
    use std::time::Duration;

    fn batch(pid: i64, epoch: i16, seq: i32, n: usize) -> RecordBatch {
        let values: Vec<&[u8]> = (0..n).map(|_| &b"v"[..]).collect();
        RecordBatch::parse(build_idempotent_batch(0, 0, pid, epoch, seq, &values)).unwrap()
    }

    fn check(states: &ProducerStates, b: &RecordBatch, next: &mut i64) -> Checked {
        states
            .check_and_append::<()>(1, b, || {
                let base = *next;
                *next += i64::from(b.record_count());
                Ok(base)
            })
            .unwrap()
    }

    /// Checks and, for an append, settles it durable at once.
    fn run(states: &ProducerStates, b: &RecordBatch, next: &mut i64) -> SequenceCheck {
        let checked = check(states, b, next);
        if let Some(s) = checked.settlement {
            s.settle(Settle::Durable);
        }
        checked.verdict
    }

    #[tokio::test]
    async fn a_retry_is_answered_with_its_originals_outcome() {
        let s = ProducerStates::default();
        let mut next = 0;
        let first = check(&s, &batch(7, 0, 0, 2), &mut next);
        let second = check(&s, &batch(7, 0, 2, 1), &mut next);
        // A retry while the original waits for its fsync: a duplicate whose
        // answer is the original's, not the high watermark's.
        let retry = check(&s, &batch(7, 0, 0, 2), &mut next);
        assert_eq!(retry.verdict, SequenceCheck::Duplicate(0));
        let original = retry.original.expect("the original");
        assert_eq!(
            Original(original.0.clone()).outcome(Duration::from_millis(20)).await,
            Settle::Pending,
            "not answered before the original is settled"
        );
        first.settlement.unwrap().settle(Settle::Failed);
        assert_eq!(original.outcome(Duration::from_secs(5)).await, Settle::Failed);
        // Still a duplicate (never written twice, never out of order for the
        // batch behind it), answered with the failure again.
        let again = check(&s, &batch(7, 0, 0, 2), &mut next);
        assert_eq!(again.verdict, SequenceCheck::Duplicate(0));
        assert_eq!(again.original.unwrap().outcome(Duration::from_secs(5)).await, Settle::Failed);
        assert_eq!(next, 3, "nothing written again");
        second.settlement.unwrap().settle(Settle::Durable);
        let dup = check(&s, &batch(7, 0, 2, 1), &mut next);
        assert_eq!(dup.verdict, SequenceCheck::Duplicate(2));
        assert_eq!(dup.original.unwrap().outcome(Duration::from_secs(5)).await, Settle::Durable);
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
