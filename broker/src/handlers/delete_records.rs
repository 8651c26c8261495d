//! DeleteRecords: move partitions' log start offsets forward to an exact
//! offset (-1: the high watermark). The owner answers; the controller
//! records the new start, and the objects nobody reads any more are deleted
//! later, as retention's are.

use std::sync::Arc;

use floe_protocol::kafka_protocol::messages::delete_records_response::{
    DeleteRecordsPartitionResult, DeleteRecordsTopicResult,
};
use floe_protocol::kafka_protocol::messages::{DeleteRecordsRequest, DeleteRecordsResponse};
use floe_protocol::{RequestFrame, ResponseError};
use floe_storage::StreamId;

use super::{body, respond, Reply};
use crate::broker::{storage_error_code, Broker, Partition};

const HIGH_WATERMARK: i64 = -1;

/// A partition whose start moves: where in the response it goes.
struct Wanted {
    topic: usize,
    partition: usize,
    stream: StreamId,
    offset: i64,
}

pub async fn handle(broker: &Arc<Broker>, frame: &RequestFrame) -> Reply {
    let req = body!(frame, DeleteRecordsRequest);
    let mut topics = Vec::with_capacity(req.topics.len());
    let mut wanted = Vec::new();
    for (ti, t) in req.topics.iter().enumerate() {
        let meta = broker.topic(&t.name.0);
        let compact_only = meta.as_ref().is_some_and(|m| {
            m.configs.get("cleanup.policy").is_some_and(|p| !p.split(',').any(|x| x.trim() == "delete"))
        });
        let mut partitions = Vec::with_capacity(t.partitions.len());
        for (pi, p) in t.partitions.iter().enumerate() {
            let r = DeleteRecordsPartitionResult::default()
                .with_partition_index(p.partition_index)
                .with_low_watermark(-1);
            let error = |e: ResponseError| r.clone().with_error_code(e.code());
            let stream = match meta.as_ref().and_then(|m| broker.partition(m, p.partition_index)) {
                // As Kafka: a compacted topic keeps its records by key, not by offset.
                Some(_) if compact_only => {
                    partitions.push(error(ResponseError::PolicyViolation));
                    continue;
                }
                Some(Partition::Local { stream, .. }) => stream,
                Some(Partition::Elsewhere { .. }) => {
                    partitions.push(error(ResponseError::NotLeaderOrFollower));
                    continue;
                }
                None => {
                    partitions.push(error(ResponseError::UnknownTopicOrPartition));
                    continue;
                }
            };
            let offsets = match broker.store.offsets(stream) {
                Ok(o) => o,
                Err(e) => {
                    partitions.push(error(storage_error_code(&e)));
                    continue;
                }
            };
            let offset = if p.offset == HIGH_WATERMARK { offsets.high_watermark } else { p.offset };
            if offset < 0 || offset > offsets.high_watermark {
                partitions.push(error(ResponseError::OffsetOutOfRange));
                continue;
            }
            if offset > offsets.start_offset {
                wanted.push(Wanted { topic: ti, partition: pi, stream, offset });
            }
            partitions.push(r.with_low_watermark(offsets.start_offset.max(offset)));
        }
        topics
            .push(DeleteRecordsTopicResult::default().with_name(t.name.clone()).with_partitions(partitions));
    }
    if !wanted.is_empty() {
        if let Err(e) = trim(broker, &wanted).await {
            tracing::warn!(error = %e, partitions = wanted.len(), "DeleteRecords failed");
            for w in &wanted {
                let p = &mut topics[w.topic].partitions[w.partition];
                p.error_code = storage_error_code(&e).code();
                p.low_watermark = -1;
            }
        }
    }
    respond(frame, &DeleteRecordsResponse::default().with_topics(topics))
}

/// The metadata may only start a stream at or below its committed end, so
/// what is acknowledged but not yet uploaded goes up first.
async fn trim(broker: &Broker, wanted: &[Wanted]) -> floe_storage::Result<()> {
    let committed = broker.metadata();
    let behind =
        wanted.iter().any(|w| committed.streams.get(&w.stream).is_none_or(|s| s.end_offset < w.offset));
    if behind {
        broker.store.flush().await?;
    }
    broker.trim_streams(wanted.iter().map(|w| (w.stream, w.offset)).collect()).await?;
    for w in wanted {
        broker.store.trim(w.stream, w.offset);
    }
    Ok(())
}
