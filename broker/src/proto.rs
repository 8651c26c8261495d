//! The control-plane messages and gRPC stubs, generated from
//! `proto/controller.proto` at build time.

#![allow(clippy::all, clippy::pedantic, missing_docs)]

tonic::include_proto!("floe.controller.v1");

impl From<&floe_storage::object::ObjectRange> for Range {
    fn from(r: &floe_storage::object::ObjectRange) -> Self {
        Self {
            stream: r.stream,
            epoch: r.epoch,
            start_offset: r.start_offset,
            end_offset: r.end_offset,
            position: r.position,
            length: r.length,
            max_timestamp: r.max_timestamp,
        }
    }
}

impl From<&Range> for floe_storage::object::ObjectRange {
    fn from(r: &Range) -> Self {
        Self {
            stream: r.stream,
            epoch: r.epoch,
            start_offset: r.start_offset,
            end_offset: r.end_offset,
            position: r.position,
            length: r.length,
            max_timestamp: r.max_timestamp,
        }
    }
}
