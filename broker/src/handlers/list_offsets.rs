//! ListOffsets: earliest (-2), latest (-1), or the first offset whose
//! timestamp is at or after a given time.

use std::sync::Arc;

use floe_protocol::kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use floe_protocol::kafka_protocol::messages::{ListOffsetsRequest, ListOffsetsResponse};
use floe_protocol::{RecordBatch, RequestFrame, ResponseError};

use super::{body, respond, Reply};
use crate::broker::{storage_error_code, Broker, Partition};

const LATEST: i64 = -1;
const EARLIEST: i64 = -2;

pub async fn handle(broker: &Arc<Broker>, frame: &RequestFrame) -> Reply {
    let req = body!(frame, ListOffsetsRequest);
    let mut topics = Vec::with_capacity(req.topics.len());
    for t in req.topics {
        let meta = broker.topic(&t.name.0);
        let mut partitions = Vec::with_capacity(t.partitions.len());
        for p in t.partitions {
            let r = ListOffsetsPartitionResponse::default().with_partition_index(p.partition_index);
            let (stream, epoch) = match meta.as_ref().and_then(|m| broker.partition(m, p.partition_index)) {
                Some(Partition::Local { stream, epoch }) => (stream, epoch),
                Some(Partition::Elsewhere { .. }) => {
                    partitions.push(r.with_error_code(ResponseError::NotLeaderOrFollower.code()));
                    continue;
                }
                None => {
                    partitions.push(r.with_error_code(ResponseError::UnknownTopicOrPartition.code()));
                    continue;
                }
            };
            // Leader epochs exist on the wire from v4.
            let epoch = if frame.version() >= 4 { epoch } else { -1 };
            let found = match p.timestamp {
                LATEST => broker.store.offsets(stream).map(|o| Some((o.high_watermark, -1))),
                EARLIEST => broker.store.offsets(stream).map(|o| Some((o.start_offset, -1))),
                ts if ts >= 0 => offset_for_time(broker, stream, ts).await,
                other => {
                    partitions
                        .push(r.with_error_code(ResponseError::InvalidRequest.code()).with_timestamp(other));
                    continue;
                }
            };
            partitions.push(match found {
                Ok(Some((offset, ts))) => r.with_offset(offset).with_timestamp(ts).with_leader_epoch(epoch),
                Ok(None) => r.with_offset(-1).with_timestamp(-1).with_leader_epoch(epoch),
                Err(e) => r.with_error_code(storage_error_code(&e).code()),
            });
        }
        topics.push(ListOffsetsTopicResponse::default().with_name(t.name).with_partitions(partitions));
    }
    respond(frame, &ListOffsetsResponse::default().with_topics(topics))
}

/// The first batch whose newest timestamp reaches `ts`: its base offset and
/// that timestamp. Batch granularity: records inside a compressed batch are
/// not decoded, so the answer may be a few records early, never late.
async fn offset_for_time(broker: &Broker, stream: u64, ts: i64) -> floe_storage::Result<Option<(i64, i64)>> {
    let Some(hint) = broker.store.timestamp_hint(stream, ts)? else { return Ok(None) };
    let mut offset = hint.offset;
    // Bounded: each round moves forward by at least one batch.
    for _ in 0..10_000 {
        let read = broker.store.read(stream, offset, 1 << 20).await?;
        if read.batches.is_empty() {
            return Ok(None);
        }
        for bytes in read.batches {
            let Ok(batch) = RecordBatch::parse_unchecked_crc(bytes) else { continue };
            if batch.max_timestamp() >= ts {
                return Ok(Some((batch.base_offset().max(offset), batch.max_timestamp())));
            }
            offset = batch.last_offset() + 1;
        }
    }
    Ok(None)
}
