//! Produce: validate each partition's record batch, append it to its stream
//! (through the idempotence check when the batch carries a producer id), and
//! answer once every append is fsynced (acks=1 and acks=all alike: the WAL
//! is the only copy a broker makes before the object store).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use floe_protocol::kafka_protocol::messages::produce_response::{
    LeaderIdAndEpoch, NodeEndpoint, PartitionProduceResponse, TopicProduceResponse,
};
use floe_protocol::kafka_protocol::messages::{BrokerId, ProduceRequest, ProduceResponse};
use floe_protocol::kafka_protocol::protocol::StrBytes;
use floe_protocol::{encode_response, RecordBatch, RequestFrame, ResponseError};
use floe_storage::{AppendInput, Appended, StorageError};

use super::{body, Reply};
use crate::broker::{storage_error_code, Broker, Partition};
use crate::group::offsets::now_ms;
use crate::producer_state::{Original, SequenceCheck, Settle};
use crate::record_rules::Rules;

enum Outcome {
    /// Another broker serves the partition (KIP-951: say which).
    NotLeader {
        leader: i32,
        epoch: i32,
    },
    Done {
        error: ResponseError,
        message: Option<String>,
        base_offset: i64,
        log_start: i64,
    },
    /// A retry of a batch already appended at `base_offset`: answered as
    /// its original's append ends.
    Duplicate {
        stream: u64,
        base_offset: i64,
        last_offset: i64,
        log_start: i64,
        original: Original,
    },
    /// An idempotent batch appended; its settlement task says how it ended.
    Settling {
        outcome: Original,
        base_offset: i64,
        log_start: i64,
        append_time: i64,
    },
    Pending {
        appended: Appended,
        log_start: i64,
        /// LogAppendTime topics: the time stamped on the batch (else -1).
        append_time: i64,
    },
}

fn failed(error: ResponseError, message: impl Into<Option<String>>) -> Outcome {
    Outcome::Done { error, message: message.into(), base_offset: -1, log_start: -1 }
}

pub async fn handle(broker: &Arc<Broker>, frame: &RequestFrame) -> Reply {
    let req = body!(frame, ProduceRequest);
    let acks = req.acks;
    let mut topics = Vec::with_capacity(req.topic_data.len());
    for topic in req.topic_data {
        let name = topic.name.0.to_string();
        let meta = broker.topic(&name);
        let mut partitions = Vec::with_capacity(topic.partition_data.len());
        for p in topic.partition_data {
            let outcome = if !matches!(acks, -1..=1) {
                failed(ResponseError::InvalidRequiredAcks, format!("acks={acks} is not -1, 0 or 1"))
            } else if req.transactional_id.is_some() {
                failed(
                    ResponseError::TransactionalIdAuthorizationFailed,
                    "transactions are not supported".to_string(),
                )
            } else {
                match &meta {
                    None => failed(ResponseError::UnknownTopicOrPartition, None),
                    Some(_) if Broker::is_internal(&name) => {
                        failed(ResponseError::InvalidTopicException, format!("{name} is internal"))
                    }
                    Some(meta) => match broker.partition(meta, p.index) {
                        Some(Partition::Local { stream, .. }) => {
                            append(broker, meta, stream, p.index, p.records)
                        }
                        Some(Partition::Elsewhere { leader, epoch, .. }) => {
                            Outcome::NotLeader { leader, epoch }
                        }
                        None => failed(ResponseError::UnknownTopicOrPartition, None),
                    },
                }
            };
            partitions.push((p.index, outcome));
        }
        topics.push((topic.name, partitions));
    }

    if acks == 0 {
        // No response is sent; Kafka closes the connection on an error so the
        // client notices (it cannot see an error code).
        let failed = topics
            .iter()
            .flat_map(|(_, ps)| ps)
            .any(|(_, o)| matches!(o, Outcome::Done { .. } | Outcome::NotLeader { .. }));
        return if failed { Reply::Close("acks=0 produce failed".into()) } else { Reply::Nothing };
    }
    let (api_key, version, correlation_id) = (frame.api_key, frame.version(), frame.correlation_id());
    // Fields that exist on the wire only from some version on.
    let with_log_start = version >= 5;
    let with_message = version >= 8;
    // KIP-951: the current leader of a moved partition, and its address.
    let with_leader = version >= 10;
    let state = broker.metadata();
    let mut endpoints = Vec::new();
    if with_leader {
        let mut leaders: Vec<i32> = topics
            .iter()
            .flat_map(|(_, ps)| ps)
            .filter_map(|(_, o)| if let Outcome::NotLeader { leader, .. } = o { Some(*leader) } else { None })
            .collect();
        leaders.sort_unstable();
        leaders.dedup();
        for id in leaders {
            let (host, port) = broker.address_of(&state, id);
            endpoints.push(
                NodeEndpoint::default()
                    .with_node_id(BrokerId(id))
                    .with_host(StrBytes::from_string(host))
                    .with_port(port),
            );
        }
    }
    let store = broker.store.clone();
    Reply::Later(Box::pin(async move {
        let mut responses = Vec::with_capacity(topics.len());
        for (name, partitions) in topics {
            let mut out = Vec::with_capacity(partitions.len());
            for (index, outcome) in partitions {
                let r = PartitionProduceResponse::default().with_index(index).with_log_append_time_ms(-1);
                let r = match outcome {
                    Outcome::NotLeader { leader, epoch } => {
                        let r = r
                            .with_error_code(ResponseError::NotLeaderOrFollower.code())
                            .with_error_message(Some(StrBytes::from_string(format!(
                                "partition {index} is served by broker {leader}"
                            ))))
                            .with_base_offset(-1)
                            .with_log_start_offset(-1);
                        if with_leader {
                            r.with_current_leader(
                                LeaderIdAndEpoch::default()
                                    .with_leader_id(BrokerId(leader))
                                    .with_leader_epoch(epoch),
                            )
                        } else {
                            r
                        }
                    }
                    Outcome::Done { error, message, base_offset, log_start } => r
                        .with_error_code(error.code())
                        .with_error_message(message.map(StrBytes::from_string))
                        .with_base_offset(base_offset)
                        .with_log_start_offset(log_start),
                    Outcome::Duplicate { stream, base_offset, last_offset, log_start, original } => {
                        // The original's outcome first: offsets passing the
                        // high watermark do not prove its bytes were written.
                        let answer = match original.outcome(Duration::from_secs(30)).await {
                            Settle::Durable => store.wait_durable(stream, last_offset).await,
                            Settle::LeaseExpired => Err(StorageError::LeaseExpired),
                            Settle::Failed => Err(StorageError::WalClosed),
                            Settle::Pending => Err(StorageError::Unavailable(format!(
                                "the original of this retry (offset {base_offset}) is not durable yet"
                            ))),
                        };
                        match answer {
                            Ok(()) => r.with_base_offset(base_offset).with_log_start_offset(log_start),
                            Err(error) => r
                                .with_error_code(storage_error_code(&error).code())
                                .with_error_message(Some(StrBytes::from_string(error.to_string())))
                                .with_base_offset(-1),
                        }
                    }
                    Outcome::Settling { outcome, base_offset, log_start, append_time } => {
                        let error = match outcome.outcome(Duration::from_secs(3600)).await {
                            Settle::Durable => None,
                            Settle::LeaseExpired => Some(StorageError::LeaseExpired),
                            Settle::Failed => Some(StorageError::WalClosed),
                            Settle::Pending => {
                                Some(StorageError::Unavailable("not durable in an hour".into()))
                            }
                        };
                        match error {
                            None => r
                                .with_base_offset(base_offset)
                                .with_log_start_offset(log_start)
                                .with_log_append_time_ms(append_time),
                            Some(error) => r
                                .with_error_code(storage_error_code(&error).code())
                                .with_error_message(Some(StrBytes::from_string(error.to_string())))
                                .with_base_offset(-1),
                        }
                    }
                    Outcome::Pending { appended, log_start, append_time } => match appended.durable().await {
                        Ok(base_offset) => r
                            .with_base_offset(base_offset)
                            .with_log_start_offset(log_start)
                            .with_log_append_time_ms(append_time),
                        Err(error) => r
                            .with_error_code(storage_error_code(&error).code())
                            .with_error_message(Some(StrBytes::from_string(error.to_string())))
                            .with_base_offset(-1),
                    },
                };
                let r = if with_log_start { r } else { r.with_log_start_offset(-1) };
                out.push(if with_message { r } else { r.with_error_message(None) });
            }
            responses.push(TopicProduceResponse::default().with_name(name).with_partition_responses(out));
        }
        let resp = ProduceResponse::default().with_responses(responses).with_node_endpoints(endpoints);
        encode_response(api_key, version, correlation_id, &resp).unwrap_or_else(|error| {
            // Every field is in range by construction; an empty frame makes
            // the client time out and retry rather than read garbage.
            tracing::error!(%error, "cannot encode produce response");
            Bytes::new()
        })
    }))
}

fn append(
    broker: &Broker,
    topic: &floe_storage::TopicMeta,
    stream: u64,
    index: i32,
    records: Option<Bytes>,
) -> Outcome {
    let Some(records) = records.filter(|r| !r.is_empty()) else {
        return failed(ResponseError::CorruptMessage, "no records".to_string());
    };
    let batches = match RecordBatch::split_all(records) {
        Ok(b) => b,
        Err(e) => return failed(ResponseError::CorruptMessage, e.to_string()),
    };
    let [batch] = &batches[..] else {
        return failed(
            ResponseError::InvalidRecord,
            format!("a v3+ produce request carries exactly one batch per partition, not {}", batches.len()),
        );
    };
    let max = broker.max_message_bytes(topic);
    if batch.len() > max as usize {
        return failed(
            ResponseError::MessageTooLarge,
            format!("batch of {} bytes exceeds max.message.bytes {max}", batch.len()),
        );
    }
    if batch.is_control() || batch.is_transactional() {
        return failed(
            ResponseError::InvalidRecord,
            "transactional and control batches are not supported".to_string(),
        );
    }
    let partition = || format!("{}-{index}", topic.name);
    let (batch, append_time) = match Rules::of(&topic.configs).apply(batch, now_ms(), partition) {
        Ok(b) => b,
        Err((error, message)) => return failed(error, message),
    };
    let batch = &batch;
    let log_start = broker.store.offsets(stream).map(|o| o.start_offset).unwrap_or(0);
    let input = AppendInput {
        bytes: batch.bytes().clone(),
        records: batch.record_count() as u32,
        max_timestamp: batch.max_timestamp(),
    };
    if batch.producer_id() >= 0 && batch.base_sequence() >= 0 {
        let mut appended = None;
        let checked = broker.producers.check_and_append(stream, batch, || {
            let a = broker.store.append(stream, input)?;
            let base = a.base_offset;
            appended = Some(a);
            Ok::<_, StorageError>(base)
        });
        let checked = match checked {
            Ok(c) => c,
            Err(e) => return failed(storage_error_code(&e), e.to_string()),
        };
        return match (checked.verdict, checked.settlement, appended, checked.original) {
            (SequenceCheck::Append, Some(settlement), Some(appended), _) => {
                let outcome = settlement.outcome();
                let base_offset = appended.base_offset;
                // Settled in its own task: a retry must learn the outcome
                // even if this request's connection goes away (or acks=0).
                tokio::spawn(settlement.settle_when(appended));
                Outcome::Settling { outcome, base_offset, log_start, append_time }
            }
            (SequenceCheck::Duplicate(base_offset), _, _, Some(original)) => {
                tracing::debug!(stream, base_offset, "duplicate idempotent batch");
                let last_offset = base_offset + i64::from(batch.record_count()) - 1;
                Outcome::Duplicate { stream, base_offset, last_offset, log_start, original }
            }
            (SequenceCheck::Reject(error), ..) => failed(error, None),
            (_, settlement, ..) => {
                if let Some(s) = settlement {
                    s.settle(Settle::Failed);
                }
                failed(ResponseError::UnknownServerError, None)
            }
        };
    }
    match broker.store.append(stream, input) {
        Ok(appended) => Outcome::Pending { appended, log_start, append_time },
        Err(e) => failed(storage_error_code(&e), e.to_string()),
    }
}
