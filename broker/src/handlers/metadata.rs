//! Metadata: this broker leads every partition (one node, no replicas; the
//! object store holds the durable copy).

use std::sync::Arc;

use floe_protocol::kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use floe_protocol::kafka_protocol::messages::{BrokerId, MetadataRequest, MetadataResponse, TopicName};
use floe_protocol::kafka_protocol::protocol::StrBytes;
use floe_protocol::{RequestFrame, ResponseError};
use floe_storage::TopicMeta;
use uuid::Uuid;

use super::{body, respond, Reply};
use crate::broker::Broker;
use crate::topic_config::validate_topic_name;

pub async fn handle(broker: &Arc<Broker>, frame: &RequestFrame) -> Reply {
    let req = body!(frame, MetadataRequest);
    let version = frame.version();
    let me = BrokerId(broker.config.broker_id);
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
            for t in broker.store.metadata().topics.values() {
                topics.push(describe(broker, t, me, version));
            }
        }
        Some(names) => {
            for name in names {
                if validate_topic_name(&name).is_err() {
                    topics.push(error_topic(&name, ResponseError::InvalidTopicException));
                    continue;
                }
                match broker.topic_or_create(&name, allow_create).await {
                    Ok(t) => topics.push(describe(broker, &t, me, version)),
                    Err(code) => topics.push(error_topic(&name, code)),
                }
            }
        }
    }
    let mut resp = MetadataResponse::default()
        .with_brokers(vec![MetadataResponseBroker::default()
            .with_node_id(me)
            .with_host(StrBytes::from_string(broker.config.advertise_host.clone()))
            .with_port(broker.config.advertise_port)])
        .with_topics(topics);
    if version >= 1 {
        resp.controller_id = me;
    }
    if version >= 2 {
        resp.cluster_id = Some(StrBytes::from_string(broker.cluster_id.clone()));
    }
    respond(frame, &resp)
}

fn describe(broker: &Broker, topic: &TopicMeta, me: BrokerId, version: i16) -> MetadataResponseTopic {
    let meta = broker.store.metadata();
    let partitions = topic
        .streams
        .iter()
        .enumerate()
        .map(|(i, stream)| {
            // Leader epochs are on the wire from v7.
            let epoch =
                if version >= 7 { meta.streams.get(stream).map_or(0, |s| s.epoch as i32) } else { -1 };
            MetadataResponsePartition::default()
                .with_partition_index(i as i32)
                .with_leader_id(me)
                .with_leader_epoch(epoch)
                .with_replica_nodes(vec![me])
                .with_isr_nodes(vec![me])
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
