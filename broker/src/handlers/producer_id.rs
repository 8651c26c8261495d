//! InitProducerId for idempotent producers. Transactions are not served yet.

use std::sync::Arc;

use floe_protocol::kafka_protocol::messages::{InitProducerIdRequest, InitProducerIdResponse, ProducerId};
use floe_protocol::{RequestFrame, ResponseError};

use super::{body, respond, Reply};
use crate::broker::{storage_error_code, Broker};

pub async fn init_producer_id(broker: &Arc<Broker>, frame: &RequestFrame) -> Reply {
    let req = body!(frame, InitProducerIdRequest);
    let resp = InitProducerIdResponse::default();
    if req.transactional_id.is_some() {
        tracing::info!("InitProducerId with a transactional id: transactions are not supported yet");
        return respond(
            frame,
            &resp.with_error_code(ResponseError::TransactionalIdAuthorizationFailed.code()),
        );
    }
    // KIP-360: an idempotent producer that lost track of its sequences asks
    // to keep its id with a bumped epoch.
    if req.producer_id.0 >= 0 && req.producer_epoch >= 0 {
        if req.producer_epoch == i16::MAX {
            // Epoch exhausted: hand out a fresh id instead.
        } else {
            return respond(
                frame,
                &resp.with_producer_id(req.producer_id).with_producer_epoch(req.producer_epoch + 1),
            );
        }
    }
    match broker.allocate_producer_id().await {
        Ok(id) => respond(frame, &resp.with_producer_id(ProducerId(id)).with_producer_epoch(0)),
        Err(e) => {
            tracing::warn!(error = %e, "cannot allocate a producer id");
            respond(frame, &resp.with_error_code(storage_error_code(&e).code()))
        }
    }
}
