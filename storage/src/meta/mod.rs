//! Cluster metadata: a fenced log in the bucket (`log`), its versioned
//! records (`record`), the pure state machine they drive (`state`) with its
//! registry of the objects it needs (`objects`), and the controller lease
//! that decides who should write (`lease`).

pub mod lease;
pub mod log;
pub mod objects;
pub mod record;
pub mod state;

pub use lease::{ControllerLease, LeaseRecord};
pub use log::{load, MetadataLog, WriteLease};
pub use objects::ObjectMeta;
pub use record::{
    Assignment, BrokerAddress, CompactedRun, LogEntry, MetaRecord, ProducerSnapshot, TopicMeta,
};
pub use state::{BrokerMeta, MetaState, StreamMeta};

#[cfg(test)]
mod tests;
