//! Record bytes this broker served to consumers, per stream, between two
//! heartbeats. The controller learns bytes in from commits; bytes out only
//! the serving broker sees, so heartbeats carry them.

use std::collections::HashMap;
use std::sync::Mutex;

use floe_storage::StreamId;

#[derive(Default)]
pub struct BytesOut {
    since_heartbeat: Mutex<HashMap<StreamId, u64>>,
}

impl BytesOut {
    /// Adds what one response served (one lock per response, not per partition).
    pub fn add(&self, served: impl IntoIterator<Item = (StreamId, u64)>) {
        let mut counts = self.since_heartbeat.lock().expect("bytes out lock");
        for (stream, bytes) in served.into_iter().filter(|(_, b)| *b > 0) {
            *counts.entry(stream).or_default() += bytes;
        }
    }

    /// What was served since the last call. A heartbeat that fails loses
    /// its counts: they only steer the balancer, which averages over tens of
    /// seconds.
    pub fn take(&self) -> Vec<(StreamId, u64)> {
        std::mem::take(&mut *self.since_heartbeat.lock().expect("bytes out lock")).into_iter().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_accumulate_per_stream_until_taken() {
        let out = BytesOut::default();
        out.add([(1, 100), (2, 5)]);
        out.add([(1, 50), (3, 0)]);
        let mut got = out.take();
        got.sort_unstable();
        assert_eq!(got, vec![(1, 150), (2, 5)]);
        assert!(out.take().is_empty());
    }
}
