//! AlterConfigs (the whole set replaced) and IncrementalAlterConfigs (set,
//! delete, append to or subtract from single keys) for topics, validated as
//! CreateTopics validates them and in effect without a restart: the
//! controller records the new set, and retention reads it on its next run.
//! Broker configs are static (flags and the config file) and refused.

use std::collections::BTreeMap;
use std::sync::Arc;

use floe_protocol::kafka_protocol::messages::alter_configs_response::AlterConfigsResourceResponse;
use floe_protocol::kafka_protocol::messages::incremental_alter_configs_response::AlterConfigsResourceResponse as IncrementalResult;
use floe_protocol::kafka_protocol::messages::{
    AlterConfigsRequest, AlterConfigsResponse, IncrementalAlterConfigsRequest,
    IncrementalAlterConfigsResponse,
};
use floe_protocol::kafka_protocol::protocol::StrBytes;
use floe_protocol::{RequestFrame, ResponseError};

use super::{body, respond, Reply};
use crate::broker::{storage_error_code, Broker};
use crate::topic_config::{self, Kind};

const TOPIC: i8 = 2;
const BROKER: i8 = 4;

const SET: i8 = 0;
const DELETE: i8 = 1;
const APPEND: i8 = 2;
const SUBTRACT: i8 = 3;

type Outcome = Result<(), (ResponseError, String)>;

pub async fn alter_configs(broker: &Arc<Broker>, frame: &RequestFrame) -> Reply {
    let req = body!(frame, AlterConfigsRequest);
    let mut responses = Vec::with_capacity(req.resources.len());
    for res in req.resources {
        let name = res.resource_name.to_string();
        let outcome = match check_resource(broker, res.resource_type, &name) {
            Err(e) => Err(e),
            Ok(()) => {
                let mut configs = BTreeMap::new();
                let mut missing = None;
                for c in &res.configs {
                    match &c.value {
                        Some(v) => {
                            configs.insert(c.name.to_string(), v.to_string());
                        }
                        None => missing = Some(c.name.to_string()),
                    }
                }
                match missing {
                    Some(k) => {
                        Err((ResponseError::InvalidConfig, format!("Null value not supported for {k}")))
                    }
                    None => replace(broker, &name, configs, req.validate_only).await,
                }
            }
        };
        let (code, message) = split(outcome);
        responses.push(
            AlterConfigsResourceResponse::default()
                .with_error_code(code)
                .with_error_message(message)
                .with_resource_type(res.resource_type)
                .with_resource_name(res.resource_name),
        );
    }
    respond(frame, &AlterConfigsResponse::default().with_responses(responses))
}

pub async fn incremental_alter_configs(broker: &Arc<Broker>, frame: &RequestFrame) -> Reply {
    let req = body!(frame, IncrementalAlterConfigsRequest);
    let mut responses = Vec::with_capacity(req.resources.len());
    for res in req.resources {
        let name = res.resource_name.to_string();
        let outcome = match check_resource(broker, res.resource_type, &name) {
            Err(e) => Err(e),
            Ok(()) => {
                let ops: Vec<(String, i8, Option<String>)> = res
                    .configs
                    .iter()
                    .map(|c| {
                        (c.name.to_string(), c.config_operation, c.value.as_ref().map(|v| v.to_string()))
                    })
                    .collect();
                let current = broker.topic(&name).map(|t| t.configs).unwrap_or_default();
                match apply_ops(current, &ops) {
                    Ok(configs) => replace(broker, &name, configs, req.validate_only).await,
                    Err(e) => Err(e),
                }
            }
        };
        let (code, message) = split(outcome);
        responses.push(
            IncrementalResult::default()
                .with_error_code(code)
                .with_error_message(message)
                .with_resource_type(res.resource_type)
                .with_resource_name(res.resource_name),
        );
    }
    respond(frame, &IncrementalAlterConfigsResponse::default().with_responses(responses))
}

fn split(outcome: Outcome) -> (i16, Option<StrBytes>) {
    match outcome {
        Ok(()) => (0, None),
        Err((e, m)) => (e.code(), Some(StrBytes::from_string(m))),
    }
}

fn check_resource(broker: &Broker, kind: i8, name: &str) -> Outcome {
    match kind {
        TOPIC if broker.topic(name).is_some() => Ok(()),
        TOPIC => Err((ResponseError::UnknownTopicOrPartition, format!("Topic {name} does not exist"))),
        BROKER => Err((
            ResponseError::InvalidRequest,
            "broker configs are static in Floe: set them with flags, FLOE_* variables or --config".into(),
        )),
        other => Err((ResponseError::InvalidRequest, format!("resource type {other} is not supported"))),
    }
}

/// The configs after IncrementalAlterConfigs' operations, in order.
fn apply_ops(
    mut configs: BTreeMap<String, String>,
    ops: &[(String, i8, Option<String>)],
) -> Result<BTreeMap<String, String>, (ResponseError, String)> {
    let invalid = |m: String| (ResponseError::InvalidConfig, m);
    for (key, op, value) in ops {
        let def =
            topic_config::find(key).ok_or_else(|| invalid(format!("Unknown topic config name: {key}")))?;
        match (*op, value) {
            (SET, Some(v)) => {
                configs.insert(key.clone(), v.clone());
            }
            (DELETE, _) => {
                configs.remove(key);
            }
            (APPEND | SUBTRACT, Some(v)) => {
                if !matches!(def.kind, Kind::ListOf(_)) {
                    return Err(invalid(format!(
                        "Config {key} is not a list: it cannot be appended to or subtracted from"
                    )));
                }
                let current = configs.get(key).map_or(def.default, String::as_str);
                let mut items: Vec<String> =
                    current.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_string).collect();
                for item in v.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                    if *op == APPEND {
                        if !items.iter().any(|i| i == item) {
                            items.push(item.to_string());
                        }
                    } else {
                        items.retain(|i| i != item);
                    }
                }
                configs.insert(key.clone(), items.join(","));
            }
            (SET | APPEND | SUBTRACT, None) => {
                return Err(invalid(format!("Null value not supported for {key}")))
            }
            (other, _) => {
                return Err((ResponseError::InvalidRequest, format!("unknown config operation {other}")))
            }
        }
    }
    Ok(configs)
}

/// Validates the whole new set, then (unless only validating) records it.
async fn replace(
    broker: &Broker,
    topic: &str,
    configs: BTreeMap<String, String>,
    validate_only: bool,
) -> Outcome {
    topic_config::validate_all(&configs).map_err(|m| (ResponseError::InvalidConfig, m))?;
    if validate_only {
        return Ok(());
    }
    broker.set_topic_configs(topic, configs).await.map_err(|e| (storage_error_code(&e), e.to_string()))?;
    tracing::info!(topic, "topic configs altered");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ops(list: &[(&str, i8, Option<&str>)]) -> Vec<(String, i8, Option<String>)> {
        list.iter().map(|(k, o, v)| (k.to_string(), *o, v.map(str::to_string))).collect()
    }

    #[test]
    fn incremental_operations_set_delete_append_and_subtract() {
        let start: BTreeMap<String, String> = [("retention.ms".to_string(), "1000".to_string())].into();
        let got = apply_ops(
            start.clone(),
            &ops(&[
                ("retention.bytes", SET, Some("5")),
                ("retention.ms", DELETE, None),
                ("cleanup.policy", APPEND, Some("compact")),
            ]),
        )
        .unwrap();
        assert_eq!(got.get("retention.bytes").map(String::as_str), Some("5"));
        assert!(!got.contains_key("retention.ms"), "deleted: back to the default");
        assert_eq!(
            got.get("cleanup.policy").map(String::as_str),
            Some("delete,compact"),
            "appended to the default"
        );
        let got = apply_ops(got, &ops(&[("cleanup.policy", SUBTRACT, Some("delete"))])).unwrap();
        assert_eq!(got.get("cleanup.policy").map(String::as_str), Some("compact"));
        let err = apply_ops(start.clone(), &ops(&[("retention.ms", APPEND, Some("1"))])).unwrap_err();
        assert_eq!(err.0, ResponseError::InvalidConfig);
        let err = apply_ops(start, &ops(&[("no.such.config", SET, Some("1"))])).unwrap_err();
        assert_eq!(err.0, ResponseError::InvalidConfig);
    }
}
