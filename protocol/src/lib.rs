//! Kafka wire protocol for Floe: framing, request decoding, response encoding,
//! record-batch views and the table of API versions Floe advertises.
//!
//! This crate does no I/O. Message bodies are (de)serialised by the
//! `kafka-protocol` crate; record batches are checked and stamped with their
//! base offset, and rewritten only where a topic config asks (`records`).

pub mod alloc;
pub mod batch;
pub mod frame;
pub mod records;
pub mod request;
pub mod response;
pub mod versions;

pub use batch::{BatchError, RecordBatch};
pub use frame::FrameError;
pub use kafka_protocol;
pub use kafka_protocol::error::ResponseError;
pub use records::{RecordView, Retained};
pub use request::{DecodeError, RequestFrame};
pub use response::encode_response;
pub use versions::{supported_versions, SUPPORTED_APIS};
