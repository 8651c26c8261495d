//! The Floe broker: Kafka API handlers over Floe's stream store.

pub mod broker;
pub mod config;
pub mod connection;
pub mod group;
pub mod handlers;
pub mod producer_state;
pub mod server;
pub mod stats;
pub mod topic_config;
