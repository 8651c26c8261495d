//! Metadata: every live broker, and per partition its owner as the leader
//! (one replica: the object store holds the durable copy).

use std::sync::Arc;

use floe_protocol::kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use floe_protocol::kafka_protocol::messages::{BrokerId, MetadataRequest, MetadataResponse, TopicName};
use floe_protocol::kafka_protocol::protocol::StrBytes;
use floe_protocol::{RequestFrame, ResponseError};
use floe_storage::{MetaState, TopicMeta};
use uuid::Uuid;

use super::{body, respond, Reply};
use crate::broker::Broker;
use crate::topic_config::validate_topic_name;

pub async fn handle(broker: &Arc<Broker>, frame: &RequestFrame) -> Reply {
    let req = body!(frame, MetadataRequest);
    let version = frame.version();
    let state = broker.metadata();
    // v0: an empty list means every topic; v1+: null means every topic.
    let requested: Option<Vec<String>> = match req.topics {
        None => None,
        Some(t) if t.is_empty() && version == 0 => None,
        Some(t) => Some(t.into_iter().filter_map(|t| t.name.map(|n| n.0.to_string())).collect()),
    };
    // Auto-creation is implied before v4, and asked for from v4 on.
    let allow_create = version < 4 || req.allow_auto_topic_creation;
    let mut topics = Vec::new();
    match requested {
        None => {
            for t in state.topics.values() {
                topics.push(describe(&state, t, version));
            }
        }
        Some(names) => {
            for name in names {
                if validate_topic_name(&name).is_err() {
                    topics.push(error_topic(&name, ResponseError::InvalidTopicException));
                    continue;
                }
                match broker.topic_or_create(&name, allow_create).await {
                    Ok(t) => topics.push(describe(&broker.metadata(), &t, version)),
                    Err(code) => topics.push(error_topic(&name, code)),
                }
            }
        }
    }
    // Every live broker, and every broker named as a leader (a dead owner
    // stays the leader until its partitions are recovered and moved).
    let state = broker.metadata();
    let mut ids: std::collections::BTreeSet<i32> =
        state.brokers.iter().filter(|(_, b)| !b.fenced).map(|(id, _)| *id).collect();
    ids.insert(broker.broker_id());
    for t in &topics {
        ids.extend(t.partitions.iter().map(|p| p.leader_id.0));
    }
    let brokers = ids
        .into_iter()
        .map(|id| {
            let (host, port) = broker.address_of(&state, id);
            MetadataResponseBroker::default()
                .with_node_id(BrokerId(id))
                .with_host(StrBytes::from_string(host))
                .with_port(port)
        })
        .collect();
    let mut resp = MetadataResponse::default().with_brokers(brokers).with_topics(topics);
    if version >= 1 {
        resp.controller_id =
            BrokerId(if state.controller >= 0 { state.controller } else { broker.broker_id() });
    }
    if version >= 2 {
        resp.cluster_id = Some(StrBytes::from_string(broker.cluster_id.clone()));
    }
    respond(frame, &resp)
}

fn describe(state: &MetaState, topic: &TopicMeta, version: i16) -> MetadataResponseTopic {
    let partitions = topic
        .streams
        .iter()
        .enumerate()
        .map(|(i, stream)| {
            let meta = state.streams.get(stream);
            // Never -1: a partition not yet assigned names the controller,
            // which answers NOT_LEADER_OR_FOLLOWER until it is. A moving
            // partition names its destination: the owner has stopped taking
            // writes, and a client that waits at the destination is there
            // the moment it starts serving.
            let leader =
                BrokerId(meta.and_then(|m| m.moving_to.or(m.owner)).unwrap_or(state.controller.max(0)));
            // Leader epochs are on the wire from v7.
            let epoch = if version >= 7 { meta.map_or(0, |s| s.epoch as i32) } else { -1 };
            MetadataResponsePartition::default()
                .with_partition_index(i as i32)
                .with_leader_id(leader)
                .with_leader_epoch(epoch)
                .with_replica_nodes(vec![leader])
                .with_isr_nodes(vec![leader])
        })
        .collect();
    let id = if version >= 10 { Uuid::from_bytes(topic.id) } else { Uuid::nil() };
    MetadataResponseTopic::default()
        .with_name(Some(TopicName(StrBytes::from_string(topic.name.clone()))))
        .with_is_internal(version >= 1 && Broker::is_internal(&topic.name))
        .with_topic_id(id)
        .with_partitions(partitions)
}

fn error_topic(name: &str, code: ResponseError) -> MetadataResponseTopic {
    MetadataResponseTopic::default()
        .with_error_code(code.code())
        .with_name(Some(TopicName(StrBytes::from_string(name.to_string()))))
}
