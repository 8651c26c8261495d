//! The Floe broker: Kafka API handlers over Floe's stream store.

pub mod broker;
pub mod cluster_cli;
pub mod compaction;
pub mod config;
pub mod connection;
pub mod control_plane;
pub mod controller;
pub mod group;
pub mod handlers;
pub mod member;
pub mod ownership;
pub mod producer_state;
pub mod proto;
pub mod record_rules;
pub mod recovery;
pub mod server;
pub mod stats;
pub mod topic_config;
pub mod traffic;
