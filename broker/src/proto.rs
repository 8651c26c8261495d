//! The control-plane messages and gRPC stubs, generated from
//! `proto/controller.proto` at build time.

#![allow(clippy::all, clippy::pedantic, missing_docs)]

tonic::include_proto!("floe.controller.v1");
