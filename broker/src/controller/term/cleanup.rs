//! The controller's storage duties: retention (start offsets move forward),
//! deletion of objects nothing reads any more (after a delay for reads in
//! flight), and a sweep of the bucket for objects no metadata knows: left
//! by an incarnation that ended between its PUT and its commit.

use std::collections::HashMap;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use floe_storage::meta::{MetaRecord, MetaState};
use floe_storage::StorageError;
use futures::{StreamExt, TryStreamExt};

use super::super::retention;
use super::Term;

/// Trims per metadata entry, so one entry stays small.
const PER_ENTRY: usize = 1000;
/// Objects per bulk DELETE round: some S3 servers delete one key at a time,
/// and a short request makes progress where a long one would time out.
const DELETES_PER_ROUND: usize = 100;

impl Term {
    pub(super) async fn apply_retention(&self) -> Result<(), StorageError> {
        let now_ms = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64);
        let trims = retention::due_trims(&self.state(), now_ms, &self.settings.retention);
        for chunk in trims.chunks(PER_ENTRY) {
            self.log.append(vec![MetaRecord::StreamsTrimmed { trims: chunk.to_vec() }]).await?;
            tracing::info!(streams = chunk.len(), "retention moved log start offsets");
        }
        Ok(())
    }

    /// Deletes garbage objects once they have been garbage for the delay
    /// (on this controller's clock: a new controller waits the full delay
    /// again), then records them as deleted.
    pub(super) async fn delete_garbage(
        &self,
        seen: &mut HashMap<String, Instant>,
    ) -> Result<(), StorageError> {
        let state = self.state();
        let now = Instant::now();
        seen.retain(|k, _| state.garbage.contains_key(k));
        for k in state.garbage.keys() {
            seen.entry(k.clone()).or_insert(now);
        }
        let delay = self.settings.object_delete_delay;
        let due: Vec<String> = seen
            .iter()
            .filter(|(_, at)| at.elapsed() >= delay)
            .map(|(k, _)| k.clone())
            .take(DELETES_PER_ROUND)
            .collect();
        if due.is_empty() {
            return Ok(());
        }
        let bucket = self.log.bucket();
        let store = bucket.store.clone();
        let paths: Vec<_> = due.iter().map(|k| Ok(bucket.key(k))).collect();
        let mut results = store.delete_stream(futures::stream::iter(paths).boxed());
        // The keys an S3 server reports back need not be spelled as sent, so
        // the round counts as done only when nothing failed; deleting again
        // is harmless (a missing key counts as deleted).
        let mut failed = None;
        while let Some(r) = results.next().await {
            match r {
                Ok(_) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => failed = Some(e),
            }
        }
        if let Some(e) = failed {
            tracing::warn!(error = %e, objects = due.len(), "deleting garbage objects failed; retried later");
            return Ok(());
        }
        let deleted: Vec<String> = due.into_iter().filter(|k| state.garbage.contains_key(k)).collect();
        if deleted.is_empty() {
            return Ok(());
        }
        let bytes: u64 = deleted.iter().filter_map(|k| state.garbage.get(k)).sum();
        let n = deleted.len();
        self.log.append(vec![MetaRecord::ObjectsDeleted { keys: deleted }]).await?;
        tracing::info!(objects = n, bytes, "deleted objects nothing reads any more");
        Ok(())
    }

    /// Lists the bucket's data objects and deletes those no metadata knows
    /// whose writer can no longer commit them. Returns how many went.
    pub(super) async fn sweep_orphans(&self) -> Result<usize, StorageError> {
        let bucket = self.log.bucket();
        let prefix = format!("{}/", bucket.prefix);
        let listed: Vec<String> = bucket
            .store
            .list(Some(&bucket.key("data")))
            .map_ok(|m| m.location.as_ref().strip_prefix(&prefix).unwrap_or(m.location.as_ref()).to_string())
            .try_collect()
            .await?;
        // Read after the listing: a commit that landed meanwhile is seen.
        let state = self.state();
        let orphans: Vec<String> = listed.into_iter().filter(|k| is_orphan(&state, k)).collect();
        if orphans.is_empty() {
            return Ok(0);
        }
        let store = bucket.store.clone();
        let paths: Vec<_> = orphans.iter().map(|k| Ok(bucket.key(k))).collect();
        let gone = store
            .delete_stream(futures::stream::iter(paths).boxed())
            .filter(|r| std::future::ready(r.is_ok()))
            .count()
            .await;
        tracing::info!(objects = gone, "deleted objects left by uploads that were never committed");
        Ok(gone)
    }
}

/// Whether `key` is an object no metadata knows and none ever will: its
/// writer's incarnation ended (so its commits are refused), or, for a peer's
/// recovery of a dead incarnation, that recovery is over. Keys of unknown
/// shape are kept.
pub(super) fn is_orphan(state: &MetaState, key: &str) -> bool {
    if state.objects.contains_key(key) || state.garbage.contains_key(key) {
        return false;
    }
    let Some(name) = key.strip_prefix("data/").and_then(|n| n.strip_suffix(".obj")) else { return false };
    let parts: Vec<&str> = name.split('-').collect();
    let num = |p: &str, tag: char| p.strip_prefix(tag).and_then(|n| n.parse::<u64>().ok());
    match parts.as_slice() {
        // data/b{broker}-e{epoch}-{seq}.obj: an upload.
        [b, e, _] => match (num(b, 'b'), num(e, 'e')) {
            (Some(b), Some(e)) => state.live_broker(b as i32).is_none_or(|m| m.epoch != e),
            _ => false,
        },
        // data/r{recoverer}-b{dead}-e{epoch}-{nonce}.obj: a peer's recovery.
        [r, b, e, _] if num(r, 'r').is_some() => match (num(b, 'b'), num(e, 'e')) {
            (Some(b), Some(e)) => {
                state.brokers.get(&(b as i32)).is_none_or(|m| m.epoch != e || m.wal_recovered)
            }
            _ => false,
        },
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use floe_storage::meta::{BrokerMeta, ObjectMeta};

    #[test]
    fn only_objects_that_can_never_be_committed_are_orphans() {
        let mut s = MetaState::default();
        s.brokers.insert(1, BrokerMeta { epoch: 3, ..BrokerMeta::default() });
        s.brokers.insert(2, BrokerMeta { epoch: 5, fenced: true, ..BrokerMeta::default() });
        s.objects
            .insert("data/b1-e2-000000000001.obj".into(), ObjectMeta { size: 1, ranges: 1, live_bytes: 1 });
        // Committed: kept, whoever wrote it.
        assert!(!is_orphan(&s, "data/b1-e2-000000000001.obj"));
        // The live incarnation may still commit it: kept.
        assert!(!is_orphan(&s, "data/b1-e3-000000000007.obj"));
        // An ended incarnation (older epoch, or fenced) never will.
        assert!(is_orphan(&s, "data/b1-e2-000000000009.obj"));
        assert!(is_orphan(&s, "data/b2-e5-000000000001.obj"));
        assert!(is_orphan(&s, "data/b9-e1-000000000001.obj"), "a broker id the metadata does not know");
        // A recovery of broker 2's epoch 5 may still land until it is recovered.
        assert!(!is_orphan(&s, "data/r1-b2-e5-00000000deadbeef.obj"));
        s.brokers.get_mut(&2).unwrap().wal_recovered = true;
        assert!(is_orphan(&s, "data/r1-b2-e5-00000000deadbeef.obj"));
        assert!(is_orphan(&s, "data/r1-b2-e4-00000000deadbeef.obj"), "an older incarnation's recovery");
        // Shapes this version does not write are left alone.
        assert!(!is_orphan(&s, "data/something-else.obj"));
        assert!(!is_orphan(&s, "data/b1-x-1.obj"));
        assert!(!is_orphan(&s, "meta/log/00000001.json"));
    }
}
