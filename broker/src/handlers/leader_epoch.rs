//! OffsetsForLeaderEpoch (KIP-320): after a partition changed hands, a
//! consumer asks where the leader epoch it last fetched ended, to check that
//! its position is still on the log (Floe never truncates, so it always is).

use std::sync::Arc;

use floe_protocol::kafka_protocol::messages::offset_for_leader_epoch_response::{
    EpochEndOffset, OffsetForLeaderTopicResult,
};
use floe_protocol::kafka_protocol::messages::{OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse};
use floe_protocol::{RequestFrame, ResponseError};

use super::{body, respond, Reply};
use crate::broker::{storage_error_code, Broker, Partition};

pub fn handle(broker: &Arc<Broker>, frame: &RequestFrame) -> Reply {
    let req = body!(frame, OffsetForLeaderEpochRequest);
    let mut topics = Vec::with_capacity(req.topics.len());
    for t in req.topics {
        let meta = broker.topic(&t.topic.0);
        let partitions = t
            .partitions
            .into_iter()
            .map(|p| {
                let r = EpochEndOffset::default()
                    .with_partition(p.partition)
                    .with_leader_epoch(-1)
                    .with_end_offset(-1);
                let (stream, epoch) = match meta.as_ref().and_then(|m| broker.partition(m, p.partition)) {
                    Some(Partition::Local { stream, epoch }) => (stream, epoch),
                    Some(Partition::Elsewhere { .. }) => {
                        return r.with_error_code(ResponseError::NotLeaderOrFollower.code())
                    }
                    None => return r.with_error_code(ResponseError::UnknownTopicOrPartition.code()),
                };
                // The client's view of the current epoch, when it sends one.
                if p.current_leader_epoch >= 0 && p.current_leader_epoch < epoch {
                    return r.with_error_code(ResponseError::FencedLeaderEpoch.code());
                }
                if p.current_leader_epoch > epoch {
                    return r.with_error_code(ResponseError::UnknownLeaderEpoch.code());
                }
                match broker.store.epoch_end(stream, p.leader_epoch) {
                    Ok((leader_epoch, end_offset)) => {
                        r.with_leader_epoch(leader_epoch).with_end_offset(end_offset)
                    }
                    Err(e) => r.with_error_code(storage_error_code(&e).code()),
                }
            })
            .collect();
        topics.push(OffsetForLeaderTopicResult::default().with_topic(t.topic).with_partitions(partitions));
    }
    respond(frame, &OffsetForLeaderEpochResponse::default().with_topics(topics))
}
