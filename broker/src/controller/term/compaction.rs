//! Committing a compaction: the runs that still fit replace their streams'
//! ranges (see `MetaState::compactable`), the others are left alone, and
//! the caller learns which applied. A retry of a compaction that already
//! landed gets the same answer, read back from the metadata.

use std::sync::{Arc, Mutex};

use floe_storage::meta::{CompactedRun, MetaRecord, MetaState};
use floe_storage::object::ObjectRange;
use tonic::Status;

use super::{status, Term};
use crate::proto;

fn run_of(r: &proto::CompactedRun) -> CompactedRun {
    CompactedRun {
        stream: r.stream,
        stream_epoch: r.stream_epoch,
        start_offset: r.start_offset,
        end_offset: r.end_offset,
        ranges: r.ranges.iter().map(ObjectRange::from).collect(),
        cleaned_to: r.cleaned_to,
        oldest_tombstone: r.oldest_tombstone,
    }
}

/// Runs of `key` that the metadata shows applied.
fn applied_in(state: &MetaState, key: &str, runs: &[CompactedRun]) -> Vec<u32> {
    (0..runs.len() as u32)
        .filter(|i| {
            let run = &runs[*i as usize];
            state.streams.get(&run.stream).is_some_and(|s| s.ranges.iter().any(|(k, _)| k == key))
        })
        .collect()
}

impl Term {
    pub async fn commit_compaction(
        &self,
        req: proto::CompactionRequest,
    ) -> Result<proto::CompactionResponse, Status> {
        let runs: Vec<CompactedRun> = req.runs.iter().map(run_of).collect();
        let state = self.state();
        if state.objects.contains_key(&req.key) || state.garbage.contains_key(&req.key) {
            return Ok(proto::CompactionResponse {
                applied: applied_in(&state, &req.key, &runs),
                seq: state.seq,
            });
        }
        let applied = Arc::new(Mutex::new(Vec::new()));
        let applied_in_closure = applied.clone();
        let record = MetaRecord::ObjectCompacted {
            key: req.key.clone(),
            size: req.size,
            broker_id: req.broker_id,
            broker_epoch: req.broker_epoch,
            runs: runs.clone(),
        };
        let state = self
            .log
            .append_with(move |s| {
                s.validate(&record)?;
                let fits: Vec<u32> = match &record {
                    MetaRecord::ObjectCompacted { broker_id, runs, .. } => (0..runs.len() as u32)
                        .filter(|i| s.compactable(*broker_id, &runs[*i as usize]).is_some())
                        .collect(),
                    _ => Vec::new(),
                };
                *applied_in_closure.lock().expect("applied lock") = fits;
                Ok(vec![record])
            })
            .await
            .map_err(status)?;
        let applied = std::mem::take(&mut *applied.lock().expect("applied lock"));
        tracing::debug!(key = req.key, runs = runs.len(), applied = applied.len(), "compaction committed");
        Ok(proto::CompactionResponse { applied, seq: state.seq })
    }
}
