//! Topic administration: CreateTopics, DeleteTopics, CreatePartitions.

use std::collections::BTreeMap;
use std::sync::Arc;

use floe_protocol::kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use floe_protocol::kafka_protocol::messages::create_topics_response::{
    CreatableTopicConfigs, CreatableTopicResult,
};
use floe_protocol::kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use floe_protocol::kafka_protocol::messages::{
    CreatePartitionsRequest, CreatePartitionsResponse, CreateTopicsRequest, CreateTopicsResponse,
    DeleteTopicsRequest, DeleteTopicsResponse, TopicName,
};
use floe_protocol::kafka_protocol::protocol::StrBytes;
use floe_protocol::{RequestFrame, ResponseError};
use uuid::Uuid;

use super::{body, respond, Reply};
use crate::broker::{storage_error_code, Broker};
use crate::handlers::configs::topic_config_entries;
use crate::topic_config::{validate_all, validate_topic_name};

/// Partitions one request may create; far above any real topic, low enough
/// that a typo cannot allocate millions of streams.
const MAX_PARTITIONS: i32 = 10_000;

fn msg(s: impl Into<String>) -> Option<StrBytes> {
    Some(StrBytes::from_string(s.into()))
}

pub async fn create_topics(broker: &Arc<Broker>, frame: &RequestFrame) -> Reply {
    let req = body!(frame, CreateTopicsRequest);
    let version = frame.version();
    let mut results = Vec::with_capacity(req.topics.len());
    for t in req.topics {
        let name = t.name.0.to_string();
        let result = CreatableTopicResult::default().with_name(t.name.clone());
        let fail = |code: ResponseError, m: String| {
            CreatableTopicResult::default()
                .with_name(t.name.clone())
                .with_error_code(code.code())
                .with_error_message(msg(m))
        };
        if let Err(m) = validate_topic_name(&name) {
            results.push(fail(ResponseError::InvalidTopicException, m));
            continue;
        }
        if Broker::is_internal(&name) {
            results.push(fail(ResponseError::TopicAlreadyExists, format!("{name} is an internal topic")));
            continue;
        }
        let partitions = match (t.num_partitions, t.assignments.len()) {
            (-1, 0) => broker.config.num_partitions,
            (-1, n) => n as i32,
            (n, 0) if (1..=MAX_PARTITIONS).contains(&n) => n,
            (n, 0) => {
                results.push(fail(
                    ResponseError::InvalidPartitions,
                    format!("number of partitions {n} must be between 1 and {MAX_PARTITIONS}"),
                ));
                continue;
            }
            (_, _) => {
                results.push(fail(
                    ResponseError::InvalidRequest,
                    "both numPartitions and replica assignments were set".into(),
                ));
                continue;
            }
        };
        // Floe keeps no replicas (durability is the object store's), so any
        // replication factor is accepted and served as 1.
        if t.replication_factor == 0 || t.replication_factor < -1 {
            results.push(fail(
                ResponseError::InvalidReplicationFactor,
                format!("replication factor {} must be positive or -1", t.replication_factor),
            ));
            continue;
        }
        let mut configs = BTreeMap::new();
        let mut bad = None;
        for c in &t.configs {
            match &c.value {
                Some(v) => {
                    configs.insert(c.name.to_string(), v.to_string());
                }
                None => bad = Some(format!("config {} has a null value", c.name.as_str())),
            }
        }
        if let Some(m) = bad.or_else(|| validate_all(&configs).err()) {
            results.push(fail(ResponseError::InvalidConfig, m));
            continue;
        }
        if broker.topic(&name).is_some() {
            results.push(fail(ResponseError::TopicAlreadyExists, format!("Topic '{name}' already exists.")));
            continue;
        }
        if req.validate_only {
            results.push(
                result
                    .with_num_partitions(partitions)
                    .with_replication_factor(1)
                    .with_configs(Some(describe(broker, &configs))),
            );
            continue;
        }
        match broker.create_topic(&name, partitions as u32, configs).await {
            Ok(topic) => {
                tracing::info!(topic = name, partitions, "created topic");
                results.push(
                    result
                        .with_topic_id(Uuid::from_bytes(topic.id))
                        .with_num_partitions(partitions)
                        .with_replication_factor(1)
                        .with_configs(Some(describe(broker, &topic.configs))),
                );
            }
            Err(e) => results.push(fail(storage_error_code(&e), e.to_string())),
        }
    }
    // Fields that exist on the wire only from some version on.
    for r in &mut results {
        if version < 7 {
            r.topic_id = Uuid::nil();
        }
        if version < 5 {
            r.num_partitions = -1;
            r.replication_factor = -1;
            r.configs = Some(Vec::new());
        }
        if version < 1 {
            r.error_message = None;
        }
    }
    respond(frame, &CreateTopicsResponse::default().with_topics(results))
}

fn describe(broker: &Broker, configs: &BTreeMap<String, String>) -> Vec<CreatableTopicConfigs> {
    topic_config_entries(broker, configs)
        .into_iter()
        .map(|e| {
            CreatableTopicConfigs::default()
                .with_name(StrBytes::from_string(e.name.to_string()))
                .with_value(Some(StrBytes::from_string(e.value)))
                .with_config_source(e.source)
        })
        .collect()
}

pub async fn delete_topics(broker: &Arc<Broker>, frame: &RequestFrame) -> Reply {
    let req = body!(frame, DeleteTopicsRequest);
    // v0–5 name topics in `topic_names`; v6 uses `topics` with a name or an id.
    let mut wanted: Vec<(Option<String>, Uuid)> =
        req.topic_names.iter().map(|n| (Some(n.0.to_string()), Uuid::nil())).collect();
    wanted.extend(req.topics.iter().map(|t| (t.name.as_ref().map(|n| n.0.to_string()), t.topic_id)));
    let mut responses = Vec::with_capacity(wanted.len());
    for (name, id) in wanted {
        let meta = broker.metadata();
        let topic = match &name {
            Some(n) => meta.topics.get(n).cloned(),
            None => meta.topics.values().find(|t| Uuid::from_bytes(t.id) == id).cloned(),
        };
        let r = DeletableTopicResult::default()
            .with_name(name.clone().map(|n| TopicName(StrBytes::from_string(n))))
            .with_topic_id(id);
        let Some(topic) = topic else {
            let code = if name.is_some() {
                ResponseError::UnknownTopicOrPartition
            } else {
                ResponseError::UnknownTopicId
            };
            responses.push(r.with_error_code(code.code()));
            continue;
        };
        if Broker::is_internal(&topic.name) {
            responses.push(r.with_error_code(ResponseError::InvalidRequest.code()));
            continue;
        }
        let r = r
            .with_name(Some(TopicName(StrBytes::from_string(topic.name.clone()))))
            .with_topic_id(Uuid::from_bytes(topic.id));
        match broker.delete_topic(&topic.name).await {
            Ok(()) => {
                tracing::info!(topic = topic.name, "deleted topic");
                responses.push(r);
            }
            Err(e) => responses.push(
                r.with_error_code(storage_error_code(&e).code()).with_error_message(msg(e.to_string())),
            ),
        }
    }
    for r in &mut responses {
        if frame.version() < 6 {
            r.topic_id = Uuid::nil();
        }
        if frame.version() < 5 {
            r.error_message = None;
        }
    }
    respond(frame, &DeleteTopicsResponse::default().with_responses(responses))
}

pub async fn create_partitions(broker: &Arc<Broker>, frame: &RequestFrame) -> Reply {
    let req = body!(frame, CreatePartitionsRequest);
    let mut results = Vec::with_capacity(req.topics.len());
    for t in req.topics {
        let r = CreatePartitionsTopicResult::default().with_name(t.name.clone());
        let Some(topic) = broker.topic(&t.name.0).filter(|t| !Broker::is_internal(&t.name)) else {
            results.push(r.with_error_code(ResponseError::UnknownTopicOrPartition.code()));
            continue;
        };
        let have = topic.streams.len() as i32;
        if t.count <= have || t.count > MAX_PARTITIONS {
            let m = format!("Topic currently has {have} partitions, {} would not increase the number of partitions (limit {MAX_PARTITIONS})", t.count);
            results
                .push(r.with_error_code(ResponseError::InvalidPartitions.code()).with_error_message(msg(m)));
            continue;
        }
        if req.validate_only {
            results.push(r);
            continue;
        }
        match broker.add_partitions(&topic.name, t.count as u32).await {
            Ok(_) => {
                tracing::info!(topic = topic.name, partitions = t.count, "added partitions");
                results.push(r);
            }
            Err(e) => results.push(
                r.with_error_code(storage_error_code(&e).code()).with_error_message(msg(e.to_string())),
            ),
        }
    }
    respond(frame, &CreatePartitionsResponse::default().with_results(results))
}
