//! Fetch: read each partition from its offset, and long-poll until min_bytes
//! arrive or max_wait_ms passes. No fetch sessions (session id 0): clients
//! then send full fetch requests, which Kafka allows.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use floe_protocol::kafka_protocol::messages::fetch_response::{
    FetchableTopicResponse, LeaderIdAndEpoch, PartitionData,
};
use floe_protocol::kafka_protocol::messages::{BrokerId, FetchRequest, FetchResponse, TopicName};
use floe_protocol::{RequestFrame, ResponseError};
use floe_storage::StreamId;

use super::{body, respond, Reply};
use crate::broker::{storage_error_code, Broker, Partition};

/// Longest wait honoured, whatever the client asks.
const MAX_WAIT: Duration = Duration::from_secs(30);

struct Wanted {
    /// The stream, when this broker serves the partition; else the error
    /// and, for a partition served elsewhere, its leader and epoch (KIP-951).
    stream: Result<u64, (ResponseError, Option<(i32, i32)>)>,
    partition: i32,
    offset: i64,
    max_bytes: usize,
}

pub async fn handle(broker: &Arc<Broker>, frame: &RequestFrame) -> Reply {
    let req = body!(frame, FetchRequest);
    let deadline = Instant::now() + Duration::from_millis(req.max_wait_ms.max(0) as u64).min(MAX_WAIT);
    let min_bytes = req.min_bytes.max(0) as usize;
    let max_bytes = if frame.version() >= 3 { req.max_bytes.max(0) as usize } else { usize::MAX };
    let read_committed = req.isolation_level == 1;
    let wanted: Vec<(TopicName, Vec<Wanted>)> = req
        .topics
        .into_iter()
        .map(|t| {
            let meta = broker.topic(&t.topic.0);
            let parts = t
                .partitions
                .into_iter()
                .map(|p| Wanted {
                    stream: match meta.as_ref().and_then(|m| broker.partition(m, p.partition)) {
                        Some(Partition::Local { stream, .. }) => Ok(stream),
                        Some(Partition::Elsewhere { leader, epoch, .. }) => {
                            Err((ResponseError::NotLeaderOrFollower, Some((leader, epoch))))
                        }
                        None => Err((ResponseError::UnknownTopicOrPartition, None)),
                    },
                    partition: p.partition,
                    offset: p.fetch_offset,
                    max_bytes: p.partition_max_bytes.max(0) as usize,
                })
                .collect();
            (t.topic, parts)
        })
        .collect();

    let with_log_start = frame.version() >= 5;
    let with_leader = frame.version() >= 12;
    let mut arrivals = broker.store.data_arrivals();
    // Only what is sent counts as bytes out, not the reads of a long poll
    // that went on waiting.
    let send = |g: Gathered| {
        broker.member.bytes_out.add(g.served);
        respond(frame, &FetchResponse::default().with_responses(g.topics))
    };
    loop {
        arrivals.borrow_and_update();
        let g = gather(broker, &wanted, max_bytes, read_committed, with_log_start, with_leader).await;
        let now = Instant::now();
        if g.bytes >= min_bytes.max(1) || g.errors || now >= deadline || min_bytes == 0 {
            return send(g);
        }
        // Wait for any append to become durable, then look again.
        if tokio::time::timeout(deadline - now, arrivals.changed()).await.is_err() {
            return send(
                gather(broker, &wanted, max_bytes, read_committed, with_log_start, with_leader).await,
            );
        }
    }
}

/// One pass over the wanted partitions.
struct Gathered {
    topics: Vec<FetchableTopicResponse>,
    bytes: usize,
    errors: bool,
    /// Record bytes read per stream.
    served: Vec<(StreamId, u64)>,
}

async fn gather(
    broker: &Broker,
    wanted: &[(TopicName, Vec<Wanted>)],
    max_bytes: usize,
    read_committed: bool,
    with_log_start: bool,
    with_leader: bool,
) -> Gathered {
    // log_start_offset is on the wire from v5.
    let log_start = |o: i64| if with_log_start { o } else { -1 };
    let mut total = 0usize;
    let mut errors = false;
    let mut served = Vec::new();
    let mut topics = Vec::with_capacity(wanted.len());
    for (name, parts) in wanted {
        let mut partitions = Vec::with_capacity(parts.len());
        for w in parts {
            let mut pd = PartitionData::default()
                .with_partition_index(w.partition)
                .with_aborted_transactions(read_committed.then(Vec::new));
            let stream = match w.stream {
                Ok(stream) => stream,
                Err((code, leader)) => {
                    errors = true;
                    let mut pd = pd.with_error_code(code.code()).with_high_watermark(-1);
                    // The current leader is a v12+ tagged field.
                    if let (Some((leader, epoch)), true) = (leader, with_leader) {
                        pd = pd.with_current_leader(
                            LeaderIdAndEpoch::default()
                                .with_leader_id(BrokerId(leader))
                                .with_leader_epoch(epoch),
                        );
                    }
                    partitions.push(pd);
                    continue;
                }
            };
            // The response budget is spent, but the first batch always goes
            // out whole (KIP-74), so an oversized batch cannot stall a consumer.
            let budget = w.max_bytes.min(max_bytes.saturating_sub(total));
            if budget == 0 && total > 0 {
                if let Ok(o) = broker.store.offsets(stream) {
                    pd = pd
                        .with_high_watermark(o.high_watermark)
                        .with_last_stable_offset(o.high_watermark)
                        .with_log_start_offset(log_start(o.start_offset));
                }
                partitions.push(pd.with_records(Some(Bytes::new())));
                continue;
            }
            match broker.store.read(stream, w.offset, budget.max(1)).await {
                Ok(read) => {
                    let size: usize = read.batches.iter().map(Bytes::len).sum();
                    total += size;
                    served.push((stream, size as u64));
                    let records = match read.batches.len() {
                        0 => Bytes::new(),
                        1 => read.batches[0].clone(),
                        _ => {
                            let mut buf = BytesMut::with_capacity(size);
                            for b in &read.batches {
                                buf.extend_from_slice(b);
                            }
                            buf.freeze()
                        }
                    };
                    partitions.push(
                        pd.with_high_watermark(read.high_watermark)
                            .with_last_stable_offset(read.high_watermark)
                            .with_log_start_offset(log_start(read.start_offset))
                            .with_records(Some(records)),
                    );
                }
                Err(error) => {
                    errors = true;
                    let code = storage_error_code(&error);
                    if code != ResponseError::OffsetOutOfRange {
                        tracing::warn!(stream, offset = w.offset, %error, "fetch read failed");
                    }
                    let offsets = broker.store.offsets(stream).ok();
                    partitions.push(
                        pd.with_error_code(code.code())
                            .with_high_watermark(offsets.map_or(-1, |o| o.high_watermark))
                            .with_log_start_offset(offsets.map_or(-1, |o| log_start(o.start_offset))),
                    );
                }
            }
        }
        topics.push(FetchableTopicResponse::default().with_topic(name.clone()).with_partitions(partitions));
    }
    Gathered { topics, bytes: total, errors, served }
}
