//! The broker's shared state: settings, the stream store, idempotent
//! producers' state.

use std::collections::BTreeMap;

use floe_protocol::ResponseError;
use floe_storage::{StorageError, StreamStore, TopicMeta};

use std::sync::Arc;

use crate::config::BrokerConfig;
use crate::group::{GroupCoordinator, OffsetStore, OFFSETS_TOPIC};
use crate::producer_state::ProducerStates;
use crate::stats::ProduceStats;
use crate::topic_config;

pub struct Broker {
    pub config: BrokerConfig,
    pub store: StreamStore,
    pub producers: ProducerStates,
    pub groups: Arc<GroupCoordinator>,
    pub offsets: OffsetStore,
    pub cluster_id: String,
    pub produce_stats: ProduceStats,
}

impl Broker {
    /// Rebuilds idempotence state and committed offsets from the store.
    pub async fn open(config: BrokerConfig, store: StreamStore) -> Result<Self, StorageError> {
        let producers = ProducerStates::default();
        producers.recover(&store);
        let offsets = OffsetStore::load(&store).await?;
        let groups = GroupCoordinator::start(config.group_initial_rebalance_delay);
        // One cluster per bucket: a stable id derived from the object store URL.
        let cluster_id = format!("floe-{:016x}", fnv1a(config.object_store.as_bytes()));
        Ok(Self {
            config,
            store,
            producers,
            groups,
            offsets,
            cluster_id,
            produce_stats: ProduceStats::default(),
        })
    }

    /// Topics clients may not write, create, grow or delete.
    pub fn is_internal(name: &str) -> bool {
        name == OFFSETS_TOPIC
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
