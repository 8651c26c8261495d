//! Kafka API handlers, one module per API family. Each decodes its request
//! body, does the work and encodes the response; protocol errors become
//! Kafka error codes in the response, never panics.

pub mod admin;
pub mod alter_configs;
pub mod api_versions;
pub mod configs;
pub mod delete_records;
pub mod fetch;
pub mod groups;
pub mod leader_epoch;
pub mod list_offsets;
pub mod metadata;
pub mod offsets;
pub mod produce;
pub mod producer_id;

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use floe_protocol::kafka_protocol::messages::ApiKey;
use floe_protocol::kafka_protocol::protocol::Encodable;
use floe_protocol::{encode_response, RequestFrame};
use futures::future::BoxFuture;

use crate::broker::Broker;

/// What the connection sends back for one request.
pub enum Reply {
    /// A complete response frame.
    Now(Bytes),
    /// A response that is ready once the future resolves (produce waiting for
    /// its fsync); later responses queue behind it.
    Later(BoxFuture<'static, Bytes>),
    /// No response at all (produce with acks=0).
    Nothing,
    /// Close the connection, logging the reason.
    Close(String),
}

/// Encodes `body` as the response to `frame`.
pub fn respond<T: Encodable>(frame: &RequestFrame, body: &T) -> Reply {
    match encode_response(frame.api_key, frame.version(), frame.correlation_id(), body) {
        Ok(bytes) => Reply::Now(bytes),
        Err(error) => Reply::Close(error.to_string()),
    }
}

/// Decodes the request body or closes the connection, as Kafka does for a
/// request it cannot parse.
macro_rules! body {
    ($frame:expr, $ty:ty) => {
        match $frame.body::<$ty>() {
            Ok(req) => req,
            Err(error) => return Reply::Close(error.to_string()),
        }
    };
}
pub(crate) use body;

pub async fn handle(broker: &Arc<Broker>, frame: RequestFrame, peer: SocketAddr) -> Reply {
    match frame.api_key {
        ApiKey::ApiVersions => api_versions::handle(&frame),
        ApiKey::Metadata => metadata::handle(broker, &frame).await,
        ApiKey::Produce => produce::handle(broker, &frame).await,
        ApiKey::Fetch => fetch::handle(broker, &frame).await,
        ApiKey::ListOffsets => list_offsets::handle(broker, &frame).await,
        ApiKey::CreateTopics => admin::create_topics(broker, &frame).await,
        ApiKey::DeleteTopics => admin::delete_topics(broker, &frame).await,
        ApiKey::CreatePartitions => admin::create_partitions(broker, &frame).await,
        ApiKey::DescribeConfigs => configs::describe_configs(broker, &frame),
        ApiKey::AlterConfigs => alter_configs::alter_configs(broker, &frame).await,
        ApiKey::IncrementalAlterConfigs => alter_configs::incremental_alter_configs(broker, &frame).await,
        ApiKey::InitProducerId => producer_id::init_producer_id(broker, &frame).await,
        ApiKey::FindCoordinator => groups::find_coordinator(broker, &frame).await,
        ApiKey::JoinGroup => groups::join_group(broker, &frame, peer).await,
        ApiKey::SyncGroup => groups::sync_group(broker, &frame).await,
        ApiKey::Heartbeat => groups::heartbeat(broker, &frame),
        ApiKey::LeaveGroup => groups::leave_group(broker, &frame),
        ApiKey::ListGroups => groups::list_groups(broker, &frame),
        ApiKey::DescribeGroups => groups::describe_groups(broker, &frame),
        ApiKey::DeleteGroups => groups::delete_groups(broker, &frame).await,
        ApiKey::OffsetCommit => offsets::offset_commit(broker, &frame).await,
        ApiKey::OffsetFetch => offsets::offset_fetch(broker, &frame),
        ApiKey::OffsetDelete => offsets::offset_delete(broker, &frame).await,
        ApiKey::OffsetForLeaderEpoch => leader_epoch::handle(broker, &frame),
        ApiKey::DeleteRecords => delete_records::handle(broker, &frame).await,
        // `RequestFrame::parse` lets through only the APIs in the table above.
        other => Reply::Close(format!("{other:?} is not served")),
    }
}
