//! The broker's shared state: settings, the stream store, idempotent
//! producers' state.

use std::collections::BTreeMap;

use floe_protocol::ResponseError;
use floe_storage::{StorageError, StreamStore, TopicMeta};

use crate::config::BrokerConfig;
use crate::producer_state::ProducerStates;
use crate::topic_config;

pub struct Broker {
    pub config: BrokerConfig,
    pub store: StreamStore,
    pub producers: ProducerStates,
    pub cluster_id: String,
}

impl Broker {
    pub fn new(config: BrokerConfig, store: StreamStore) -> Self {
        let producers = ProducerStates::default();
        producers.recover(&store);
        // One cluster per bucket: a stable id derived from the object store URL.
        let cluster_id = format!("floe-{:016x}", fnv1a(config.object_store.as_bytes()));
        Self { config, store, producers, cluster_id }
    }

    /// The topic named `name`, if it exists.
    pub fn topic(&self, name: &str) -> Option<TopicMeta> {
        self.store.metadata().topics.get(name).cloned()
    }

    /// The topic, created with broker defaults when missing and auto-creation
    /// is on (as Kafka's auto.create.topics.enable).
    pub async fn topic_or_create(&self, name: &str, allow_create: bool) -> Result<TopicMeta, ResponseError> {
        if let Some(t) = self.topic(name) {
            return Ok(t);
        }
        if !(allow_create && self.config.auto_create_topics) {
            return Err(ResponseError::UnknownTopicOrPartition);
        }
        topic_config::validate_topic_name(name).map_err(|_| ResponseError::InvalidTopicException)?;
        match self.store.create_topic(name, self.config.num_partitions as u32, BTreeMap::new()).await {
            Ok(t) => {
                tracing::info!(topic = name, partitions = t.streams.len(), "auto-created topic");
                Ok(t)
            }
            // Created concurrently by another request: use it.
            Err(StorageError::TopicExists(_)) => {
                self.topic(name).ok_or(ResponseError::UnknownTopicOrPartition)
            }
            Err(error) => {
                tracing::warn!(topic = name, %error, "auto-creating topic failed");
                Err(storage_error_code(&error))
            }
        }
    }

    /// Largest batch accepted for `topic`.
    pub fn max_message_bytes(&self, topic: &TopicMeta) -> i32 {
        topic
            .configs
            .get("max.message.bytes")
            .and_then(|v| v.parse().ok())
            .unwrap_or(self.config.message_max_bytes)
    }
}

/// The Kafka error a client should see for a storage failure.
pub fn storage_error_code(error: &StorageError) -> ResponseError {
    match error {
        StorageError::UnknownStream(_) | StorageError::UnknownTopic(_) => {
            ResponseError::UnknownTopicOrPartition
        }
        StorageError::TopicExists(_) => ResponseError::TopicAlreadyExists,
        StorageError::OffsetOutOfRange { .. } => ResponseError::OffsetOutOfRange,
        StorageError::Fenced(_) => ResponseError::NotLeaderOrFollower,
        StorageError::Invalid(_) => ResponseError::InvalidRequest,
        StorageError::Backpressure { .. } | StorageError::WalClosed | StorageError::Wal(_) => {
            ResponseError::KafkaStorageError
        }
        StorageError::ObjectStore(_)
        | StorageError::ObjectRead { .. }
        | StorageError::CorruptObject { .. }
        | StorageError::CorruptMetadata { .. } => ResponseError::KafkaStorageError,
        StorageError::Config(_) => ResponseError::UnknownServerError,
    }
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3))
}
