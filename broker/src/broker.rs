//! The broker's shared state: settings, its membership in the cluster, the
//! stream store of the partitions it owns, idempotent producers' state,
//! the group coordinator.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use floe_protocol::ResponseError;
use floe_storage::meta::BrokerAddress;
use floe_storage::{MetaState, StorageError, StreamId, StreamStore, TopicMeta};

use crate::config::BrokerConfig;
use crate::control_plane::storage_error;
use crate::group::{GroupCoordinator, OffsetStore, OFFSETS_TOPIC};
use crate::member::Member;
use crate::producer_state::ProducerStates;
use crate::proto::{self, admin_request::Op};
use crate::stats::ProduceStats;
use crate::topic_config;

/// Bound on an admin change's wait for the controller.
const ADMIN_BUDGET: Duration = Duration::from_secs(15);

/// Where a partition is served, as handlers need to know it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Partition {
    /// Here, at this leader epoch.
    Local { stream: StreamId, epoch: i32 },
    /// By another broker (or not yet by this one): NOT_LEADER_OR_FOLLOWER.
    Elsewhere { stream: StreamId, leader: i32, epoch: i32 },
}

impl Partition {
    pub fn stream(&self) -> StreamId {
        match self {
            Self::Local { stream, .. } | Self::Elsewhere { stream, .. } => *stream,
        }
    }
}

pub struct Broker {
    pub config: BrokerConfig,
    pub store: StreamStore,
    pub member: Arc<Member>,
    pub producers: Arc<ProducerStates>,
    pub groups: Arc<GroupCoordinator>,
    pub offsets: OffsetStore,
    pub cluster_id: String,
    pub produce_stats: ProduceStats,
    producer_ids: Mutex<(i64, i64)>,
    pub(crate) releasing: Mutex<std::collections::HashSet<StreamId>>,
    pub(crate) reconcile_lock: tokio::sync::Mutex<()>,
    /// Fenced peers whose WAL this broker is recovering.
    pub(crate) recovering: Mutex<std::collections::HashSet<i32>>,
}

impl Broker {
    pub fn new(
        config: BrokerConfig,
        store: StreamStore,
        member: Arc<Member>,
        producers: Arc<ProducerStates>,
    ) -> Self {
        let groups = GroupCoordinator::start(config.group_initial_rebalance_delay);
        // One cluster per bucket: a stable id derived from the object store URL.
        let cluster_id = format!("floe-{:016x}", fnv1a(config.object_store.as_bytes()));
        Self {
            config,
            store,
            member,
            producers,
            groups,
            offsets: OffsetStore::new(),
            cluster_id,
            produce_stats: ProduceStats::default(),
            producer_ids: Mutex::new((0, 0)),
            releasing: Mutex::new(Default::default()),
            reconcile_lock: tokio::sync::Mutex::new(()),
            recovering: Mutex::new(Default::default()),
        }
    }

    pub fn broker_id(&self) -> i32 {
        self.member.broker_id
    }

    pub fn metadata(&self) -> Arc<MetaState> {
        self.member.state()
    }

    /// Topics clients may not write, create, grow or delete.
    pub fn is_internal(name: &str) -> bool {
        name == OFFSETS_TOPIC
    }

    /// The topic named `name`, if it exists.
    pub fn topic(&self, name: &str) -> Option<TopicMeta> {
        self.member.state().topics.get(name).cloned()
    }

    /// Where partition `index` of `topic` is served.
    pub fn partition(&self, topic: &TopicMeta, index: i32) -> Option<Partition> {
        let stream = topic.stream(index)?;
        let state = self.member.state();
        let meta = state.streams.get(&stream)?;
        let epoch = meta.epoch as i32;
        // As Metadata names it: a moving partition's destination.
        let leader = meta.moving_to.or(meta.owner).unwrap_or(state.controller.max(0));
        if leader == self.broker_id() && meta.moving_to.is_none() && self.store.serves(stream) {
            Some(Partition::Local { stream, epoch })
        } else {
            Some(Partition::Elsewhere { stream, leader, epoch })
        }
    }

    /// Host and port Kafka clients reach broker `id` at.
    pub fn address_of(&self, state: &MetaState, id: i32) -> (String, i32) {
        if id == self.broker_id() {
            return (self.config.advertise_host.clone(), self.config.advertise_port);
        }
        match state.brokers.get(&id) {
            Some(b) => (b.address.kafka_host.clone(), b.address.kafka_port),
            None => (self.config.advertise_host.clone(), self.config.advertise_port),
        }
    }

    /// This broker's address as it registers it.
    pub fn own_address(config: &BrokerConfig, rpc: String, instance: String) -> BrokerAddress {
        BrokerAddress {
            kafka_host: config.advertise_host.clone(),
            kafka_port: config.advertise_port,
            rpc,
            instance,
        }
    }

    async fn admin(&self, op: Op) -> Result<proto::AdminResponse, StorageError> {
        let resp = self
            .member
            .control
            .admin(proto::AdminRequest { op: Some(op) }, ADMIN_BUDGET)
            .await
            .map_err(|s| storage_error(&s))?;
        self.member.wait_for(resp.seq).await;
        Ok(resp)
    }

    /// Creates a topic through the controller and waits until it is visible here.
    pub async fn create_topic(
        &self,
        name: &str,
        partitions: u32,
        configs: BTreeMap<String, String>,
    ) -> Result<TopicMeta, StorageError> {
        let configs = configs.into_iter().map(|(name, value)| proto::Config { name, value }).collect();
        let op = Op::CreateTopic(proto::CreateTopic { name: name.to_string(), partitions, configs });
        match self.admin(op).await {
            Ok(_) => {}
            Err(StorageError::TopicExists(_)) => return Err(StorageError::TopicExists(name.to_string())),
            Err(e) => return Err(e),
        }
        self.topic(name).ok_or_else(|| StorageError::Unavailable(format!("topic {name} is not visible yet")))
    }

    pub async fn delete_topic(&self, name: &str) -> Result<(), StorageError> {
        self.admin(Op::DeleteTopic(proto::DeleteTopic { name: name.to_string() })).await.map(|_| ())
    }

    pub async fn add_partitions(&self, name: &str, total: u32) -> Result<(), StorageError> {
        self.admin(Op::AddPartitions(proto::AddPartitions { name: name.to_string(), total }))
            .await
            .map(|_| ())
    }

    pub async fn set_topic_configs(
        &self,
        name: &str,
        configs: BTreeMap<String, String>,
    ) -> Result<(), StorageError> {
        let configs = configs.into_iter().map(|(name, value)| proto::Config { name, value }).collect();
        self.admin(Op::SetTopicConfigs(proto::SetTopicConfigs { name: name.to_string(), configs }))
            .await
            .map(|_| ())
    }

    /// Moves streams' log start offsets forward (DeleteRecords) through the
    /// controller, and waits until this broker has applied it.
    pub async fn trim_streams(&self, trims: Vec<(StreamId, i64)>) -> Result<(), StorageError> {
        let trims = trims
            .into_iter()
            .map(|(stream, start_offset)| proto::StreamTrim { stream, start_offset })
            .collect();
        self.admin(Op::TrimStreams(proto::TrimStreams { trims })).await.map(|_| ())
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
        match self.create_topic(name, self.config.num_partitions as u32, BTreeMap::new()).await {
            Ok(t) => {
                tracing::info!(topic = name, partitions = t.streams.len(), "auto-created topic");
                Ok(t)
            }
            // Created concurrently by another request: use it.
            Err(StorageError::TopicExists(_)) => {
                self.member.wait_for(self.member.state().seq).await;
                self.topic(name).ok_or(ResponseError::LeaderNotAvailable)
            }
            Err(error) => {
                tracing::warn!(topic = name, %error, "auto-creating topic failed");
                Err(storage_error_code(&error))
            }
        }
    }

    /// A new producer id, from a block the controller reserved for this broker.
    pub async fn allocate_producer_id(&self) -> Result<i64, StorageError> {
        {
            let mut ids = self.producer_ids.lock().expect("producer ids poisoned");
            if ids.0 < ids.1 {
                ids.0 += 1;
                return Ok(ids.0 - 1);
            }
        }
        let req = proto::AllocateProducerIdsRequest {
            broker_id: self.broker_id(),
            broker_epoch: self.member.broker_epoch,
        };
        let block = self.member.control.allocate_producer_ids(req).await.map_err(|s| storage_error(&s))?;
        let mut ids = self.producer_ids.lock().expect("producer ids poisoned");
        *ids = (block.first + 1, block.first + block.count);
        Ok(block.first)
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
        StorageError::UnknownTopic(_) => ResponseError::UnknownTopicOrPartition,
        // Not (or no longer) served here: the client refreshes its metadata.
        StorageError::UnknownStream(_)
        | StorageError::Sealed(_)
        | StorageError::Fenced(_)
        | StorageError::LeaseExpired => ResponseError::NotLeaderOrFollower,
        StorageError::TopicExists(_) => ResponseError::TopicAlreadyExists,
        StorageError::OffsetOutOfRange { .. } => ResponseError::OffsetOutOfRange,
        StorageError::Invalid(_) => ResponseError::InvalidRequest,
        StorageError::Unavailable(_) => ResponseError::RequestTimedOut,
        StorageError::Deposed(_) => ResponseError::NotController,
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
