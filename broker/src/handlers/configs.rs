//! DescribeConfigs for topics and for this broker. Each entry's
//! documentation (v3+) says whether Floe enforces the value, or why it has
//! no effect here.

use std::collections::BTreeMap;
use std::sync::Arc;

use floe_protocol::kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult,
};
use floe_protocol::kafka_protocol::messages::{DescribeConfigsRequest, DescribeConfigsResponse};
use floe_protocol::kafka_protocol::protocol::StrBytes;
use floe_protocol::{RequestFrame, ResponseError};

use super::{body, respond, Reply};
use crate::broker::Broker;
use crate::topic_config::{Kind, Support, TOPIC_CONFIGS};

const TOPIC: i8 = 2;
const BROKER: i8 = 4;
/// Config sources (DescribeConfigs).
const DYNAMIC_TOPIC_CONFIG: i8 = 1;
const STATIC_BROKER_CONFIG: i8 = 4;
const DEFAULT_CONFIG: i8 = 5;

/// One config as reported.
pub struct Entry {
    pub name: &'static str,
    pub value: String,
    pub source: i8,
    pub kind: Kind,
    pub read_only: bool,
    pub doc: &'static str,
}

const ENFORCED: &str = "Enforced by Floe.";

/// Every topic config with its value: set on the topic, else the default.
pub fn topic_config_entries(broker: &Broker, set: &BTreeMap<String, String>) -> Vec<Entry> {
    TOPIC_CONFIGS
        .iter()
        .map(|d| {
            let default = match d.name {
                "max.message.bytes" => broker.config.message_max_bytes.to_string(),
                "retention.ms" => broker.config.log_retention_ms.to_string(),
                "retention.bytes" => broker.config.log_retention_bytes.to_string(),
                _ => d.default.to_string(),
            };
            let (value, source) = match set.get(d.name) {
                Some(v) => (v.clone(), DYNAMIC_TOPIC_CONFIG),
                None => (default, DEFAULT_CONFIG),
            };
            let doc = match d.support {
                Support::Enforced => ENFORCED,
                Support::NotApplicable(why) | Support::DefaultOnly(why) => why,
            };
            Entry { name: d.name, value, source, kind: d.kind, read_only: false, doc }
        })
        .collect()
}

fn broker_entries(broker: &Broker) -> Vec<Entry> {
    let c = &broker.config;
    let e = |name: &'static str, value: String, kind: Kind| Entry {
        name,
        value,
        source: STATIC_BROKER_CONFIG,
        kind,
        read_only: true,
        doc: ENFORCED,
    };
    let listener = format!("PLAINTEXT://{}:{}", c.advertise_host, c.advertise_port);
    vec![
        e("broker.id", c.broker_id.to_string(), Kind::Int { min: 0 }),
        e("node.id", c.broker_id.to_string(), Kind::Int { min: 0 }),
        e("listeners", format!("PLAINTEXT://{}", c.listen), Kind::ListOf(&[])),
        e("advertised.listeners", listener, Kind::ListOf(&[])),
        e("auto.create.topics.enable", c.auto_create_topics.to_string(), Kind::Bool),
        e("num.partitions", c.num_partitions.to_string(), Kind::Int { min: 1 }),
        e("default.replication.factor", "1".into(), Kind::Int { min: 1 }),
        e("message.max.bytes", c.message_max_bytes.to_string(), Kind::Int { min: 0 }),
        e("socket.request.max.bytes", c.max_request_bytes.to_string(), Kind::Int { min: 1 }),
        e("log.dirs", c.data_dir.display().to_string(), Kind::ListOf(&[])),
        e("floe.object.store", c.object_store.clone(), Kind::OneOf(&[])),
        e("floe.upload.interval.ms", c.upload_interval.as_millis().to_string(), Kind::Long { min: 1 }),
        e("floe.upload.bytes", c.upload_bytes.to_string(), Kind::Long { min: 1 }),
        e("log.retention.ms", c.log_retention_ms.to_string(), Kind::Long { min: -1 }),
        e("log.retention.bytes", c.log_retention_bytes.to_string(), Kind::Long { min: -1 }),
        e(
            "log.retention.check.interval.ms",
            c.log_retention_check_interval.as_millis().to_string(),
            Kind::Long { min: 1 },
        ),
    ]
}

pub fn describe_configs(broker: &Arc<Broker>, frame: &RequestFrame) -> Reply {
    let req = body!(frame, DescribeConfigsRequest);
    let with_docs = frame.version() >= 3 && req.include_documentation;
    let mut results = Vec::with_capacity(req.resources.len());
    for res in req.resources {
        let name = res.resource_name.to_string();
        let result = DescribeConfigsResult::default()
            .with_resource_type(res.resource_type)
            .with_resource_name(res.resource_name.clone());
        let entries = match res.resource_type {
            TOPIC => match broker.topic(&name) {
                Some(t) => topic_config_entries(broker, &t.configs),
                None => {
                    results.push(
                        result
                            .with_error_code(ResponseError::UnknownTopicOrPartition.code())
                            .with_error_message(Some(StrBytes::from_string(format!(
                                "Topic {name} does not exist"
                            )))),
                    );
                    continue;
                }
            },
            BROKER if name.is_empty() || name == broker.config.broker_id.to_string() => {
                broker_entries(broker)
            }
            BROKER => {
                let m = format!("broker {name} is not this broker ({})", broker.config.broker_id);
                results.push(
                    result
                        .with_error_code(ResponseError::InvalidRequest.code())
                        .with_error_message(Some(StrBytes::from_string(m))),
                );
                continue;
            }
            other => {
                let m = format!("resource type {other} is not supported");
                results.push(
                    result
                        .with_error_code(ResponseError::InvalidRequest.code())
                        .with_error_message(Some(StrBytes::from_string(m))),
                );
                continue;
            }
        };
        let keys: Option<Vec<String>> =
            res.configuration_keys.map(|k| k.iter().map(|s| s.to_string()).collect());
        let configs = entries
            .into_iter()
            .filter(|e| keys.as_ref().is_none_or(|k| k.iter().any(|k| k == e.name)))
            .map(|e| {
                DescribeConfigsResourceResult::default()
                    .with_name(StrBytes::from_static_str(e.name))
                    .with_value(Some(StrBytes::from_string(e.value)))
                    .with_read_only(e.read_only)
                    .with_config_source(e.source)
                    .with_config_type(if frame.version() >= 3 { e.kind.wire_type() } else { 0 })
                    .with_documentation(with_docs.then(|| StrBytes::from_static_str(e.doc)))
            })
            .collect();
        results.push(result.with_configs(configs));
    }
    respond(frame, &DescribeConfigsResponse::default().with_results(results))
}
