//! Committed offsets: OffsetCommit, OffsetFetch (single and multi-group),
//! OffsetDelete. A commit is acknowledged only once it is durable in the WAL.

use std::sync::Arc;

use floe_protocol::kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use floe_protocol::kafka_protocol::messages::offset_delete_response::{
    OffsetDeleteResponsePartition, OffsetDeleteResponseTopic,
};
use floe_protocol::kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions,
    OffsetFetchResponseTopic, OffsetFetchResponseTopics,
};
use floe_protocol::kafka_protocol::messages::*;
use floe_protocol::kafka_protocol::protocol::StrBytes;
use floe_protocol::{RequestFrame, ResponseError};

use super::{body, respond, Reply};
use crate::broker::Broker;
use crate::group::offsets::{now_ms, MAX_METADATA_BYTES};
use crate::group::Committed;

/// Per partition: its own error, or None when it takes part in the write.
type PartitionErrors = Vec<(i32, Option<ResponseError>)>;

fn partition_exists(broker: &Broker, topic: &str, partition: i32) -> bool {
    broker.topic(topic).is_some_and(|t| t.stream(partition).is_some())
}

pub async fn offset_commit(broker: &Arc<Broker>, frame: &RequestFrame) -> Reply {
    let req = body!(frame, OffsetCommitRequest);
    let group = req.group_id.0.to_string();
    let instance = req.group_instance_id.as_ref().map(|i| i.to_string());
    let generation = req.generation_id_or_member_epoch;
    let group_error = if group.is_empty() {
        Some(ResponseError::InvalidGroupId)
    } else if let Some(e) = super::groups::not_coordinator(broker, &group) {
        Some(e)
    } else {
        broker.groups.check_commit(&group, &req.member_id, instance.as_deref(), generation).err()
    };
    let mut codes: Vec<(TopicName, PartitionErrors)> = Vec::new();
    let mut entries = Vec::new();
    let now = now_ms();
    for t in &req.topics {
        let mut parts = Vec::new();
        for p in &t.partitions {
            let metadata = p.committed_metadata.as_ref().map(|m| m.to_string()).unwrap_or_default();
            let error = if let Some(e) = group_error {
                Some(e)
            } else if !partition_exists(broker, &t.name.0, p.partition_index) {
                Some(ResponseError::UnknownTopicOrPartition)
            } else if metadata.len() > MAX_METADATA_BYTES {
                Some(ResponseError::OffsetMetadataTooLarge)
            } else {
                entries.push((
                    t.name.0.to_string(),
                    p.partition_index,
                    Some(Committed {
                        offset: p.committed_offset,
                        leader_epoch: p.committed_leader_epoch,
                        metadata,
                        commit_timestamp: now,
                    }),
                ));
                None
            };
            parts.push((p.partition_index, error));
        }
        codes.push((t.name.clone(), parts));
    }
    // Written as one batch: all or nothing.
    let write_error = broker.offsets.write(broker, &group, entries).await.err();
    if write_error.is_none() && group_error.is_none() {
        broker.groups.touch(&group, &req.member_id, generation);
    }
    let topics = codes
        .into_iter()
        .map(|(name, parts)| {
            let partitions = parts
                .into_iter()
                .map(|(p, e)| {
                    let code = e.or(write_error).map_or(0, |e| e.code());
                    OffsetCommitResponsePartition::default().with_partition_index(p).with_error_code(code)
                })
                .collect();
            OffsetCommitResponseTopic::default().with_name(name).with_partitions(partitions)
        })
        .collect();
    respond(frame, &OffsetCommitResponse::default().with_topics(topics))
}

/// (topic, partitions) pairs to answer: the ones asked for, or every
/// committed one when the list is null.
fn wanted(
    broker: &Broker,
    group: &str,
    topics: Option<Vec<(TopicName, Vec<i32>)>>,
) -> Vec<(TopicName, Vec<i32>)> {
    match topics {
        Some(t) => t,
        None => {
            let mut out: Vec<(TopicName, Vec<i32>)> = Vec::new();
            for (topic, partition) in broker.offsets.group(group).into_keys() {
                match out.last_mut() {
                    Some((name, parts)) if name.0.as_str() == topic => parts.push(partition),
                    _ => out.push((TopicName(StrBytes::from_string(topic)), vec![partition])),
                }
            }
            out
        }
    }
}

/// Kafka answers an unknown group or partition with offset -1 and no error.
fn lookup(broker: &Broker, group: &str, topic: &str, partition: i32, with_epoch: bool) -> (i64, i32, String) {
    match broker.offsets.fetch(group, topic, partition) {
        Some(c) => (c.offset, if with_epoch { c.leader_epoch } else { -1 }, c.metadata),
        None => (-1, -1, String::new()),
    }
}

pub fn offset_fetch(broker: &Arc<Broker>, frame: &RequestFrame) -> Reply {
    let req = body!(frame, OffsetFetchRequest);
    let version = frame.version();
    let with_epoch = version >= 5;
    if version >= 8 {
        let groups = req
            .groups
            .into_iter()
            .map(|g| {
                if let Some(e) = super::groups::not_coordinator(broker, &g.group_id.0) {
                    return OffsetFetchResponseGroup::default()
                        .with_group_id(g.group_id)
                        .with_error_code(e.code());
                }
                let topics =
                    g.topics.map(|ts| ts.into_iter().map(|t| (t.name, t.partition_indexes)).collect());
                let topics = wanted(broker, &g.group_id.0, topics)
                    .into_iter()
                    .map(|(name, parts)| {
                        let partitions = parts
                            .into_iter()
                            .map(|p| {
                                let (offset, epoch, meta) =
                                    lookup(broker, &g.group_id.0, &name.0, p, with_epoch);
                                OffsetFetchResponsePartitions::default()
                                    .with_partition_index(p)
                                    .with_committed_offset(offset)
                                    .with_committed_leader_epoch(epoch)
                                    .with_metadata(Some(StrBytes::from_string(meta)))
                            })
                            .collect();
                        OffsetFetchResponseTopics::default().with_name(name).with_partitions(partitions)
                    })
                    .collect();
                OffsetFetchResponseGroup::default().with_group_id(g.group_id).with_topics(topics)
            })
            .collect();
        return respond(frame, &OffsetFetchResponse::default().with_groups(groups));
    }
    let group = req.group_id.0.to_string();
    // Not (yet) the coordinator: v2+ say so once, v1 for every partition.
    if let Some(e) = super::groups::not_coordinator(broker, &group) {
        if version >= 2 {
            return respond(frame, &OffsetFetchResponse::default().with_error_code(e.code()));
        }
        let topics = req
            .topics
            .unwrap_or_default()
            .into_iter()
            .map(|t| {
                let partitions = t
                    .partition_indexes
                    .iter()
                    .map(|p| {
                        OffsetFetchResponsePartition::default()
                            .with_partition_index(*p)
                            .with_committed_offset(-1)
                            .with_error_code(e.code())
                    })
                    .collect();
                OffsetFetchResponseTopic::default().with_name(t.name).with_partitions(partitions)
            })
            .collect();
        return respond(frame, &OffsetFetchResponse::default().with_topics(topics));
    }
    let topics = req.topics.map(|ts| ts.into_iter().map(|t| (t.name, t.partition_indexes)).collect());
    let topics = wanted(broker, &group, topics)
        .into_iter()
        .map(|(name, parts)| {
            let partitions = parts
                .into_iter()
                .map(|p| {
                    let (offset, epoch, meta) = lookup(broker, &group, &name.0, p, with_epoch);
                    OffsetFetchResponsePartition::default()
                        .with_partition_index(p)
                        .with_committed_offset(offset)
                        .with_committed_leader_epoch(epoch)
                        .with_metadata(Some(StrBytes::from_string(meta)))
                })
                .collect();
            OffsetFetchResponseTopic::default().with_name(name).with_partitions(partitions)
        })
        .collect();
    respond(frame, &OffsetFetchResponse::default().with_topics(topics))
}

pub async fn offset_delete(broker: &Arc<Broker>, frame: &RequestFrame) -> Reply {
    let req = body!(frame, OffsetDeleteRequest);
    let group = req.group_id.0.to_string();
    let known = broker.groups.describe(&group).is_some() || broker.offsets.groups().contains(&group);
    if !known {
        return respond(
            frame,
            &OffsetDeleteResponse::default().with_error_code(ResponseError::GroupIdNotFound.code()),
        );
    }
    let subscribed = broker.groups.subscribed_topics(&group);
    let mut deletes = Vec::new();
    let mut topics = Vec::new();
    for t in req.topics {
        let busy = subscribed.iter().any(|s| s.as_str() == t.name.0.as_str());
        let partitions = t
            .partitions
            .into_iter()
            .map(|p| {
                let code = if busy {
                    ResponseError::GroupSubscribedToTopic.code()
                } else if !partition_exists(broker, &t.name.0, p.partition_index) {
                    ResponseError::UnknownTopicOrPartition.code()
                } else {
                    if broker.offsets.fetch(&group, &t.name.0, p.partition_index).is_some() {
                        deletes.push((t.name.0.to_string(), p.partition_index, None));
                    }
                    0
                };
                OffsetDeleteResponsePartition::default()
                    .with_partition_index(p.partition_index)
                    .with_error_code(code)
            })
            .collect();
        topics.push(OffsetDeleteResponseTopic::default().with_name(t.name).with_partitions(partitions));
    }
    if let Err(e) = broker.offsets.write(broker, &group, deletes).await {
        return respond(frame, &OffsetDeleteResponse::default().with_error_code(e.code()));
    }
    respond(frame, &OffsetDeleteResponse::default().with_topics(topics))
}
