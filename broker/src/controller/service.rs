//! The controller's gRPC front. Every broker serves it; only the one whose
//! term is active answers, the others say `UNAVAILABLE` and the caller looks
//! the controller up again in the lease object.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::{Controller, Term};
use crate::proto::{self, controller_server};

pub struct ControllerService {
    controller: Arc<Controller>,
}

impl ControllerService {
    pub fn server(controller: Arc<Controller>) -> controller_server::ControllerServer<Self> {
        controller_server::ControllerServer::new(Self { controller })
    }

    fn term(&self) -> Result<Arc<Term>, Status> {
        self.controller.active().ok_or_else(|| Status::unavailable("this broker is not the controller"))
    }
}

#[tonic::async_trait]
impl controller_server::Controller for ControllerService {
    async fn register(
        &self,
        r: Request<proto::RegisterRequest>,
    ) -> Result<Response<proto::RegisterResponse>, Status> {
        Ok(Response::new(self.term()?.register(r.into_inner()).await?))
    }

    async fn heartbeat(
        &self,
        r: Request<proto::HeartbeatRequest>,
    ) -> Result<Response<proto::HeartbeatResponse>, Status> {
        Ok(Response::new(self.term()?.heartbeat(r.into_inner()).await?))
    }

    async fn commit_object(
        &self,
        r: Request<proto::CommitRequest>,
    ) -> Result<Response<proto::CommitResponse>, Status> {
        Ok(Response::new(self.term()?.commit(r.into_inner()).await?))
    }

    async fn allocate_producer_ids(
        &self,
        r: Request<proto::AllocateProducerIdsRequest>,
    ) -> Result<Response<proto::AllocateProducerIdsResponse>, Status> {
        Ok(Response::new(self.term()?.allocate_producer_ids(r.into_inner()).await?))
    }

    async fn release(
        &self,
        r: Request<proto::ReleaseRequest>,
    ) -> Result<Response<proto::ReleaseResponse>, Status> {
        Ok(Response::new(self.term()?.release(r.into_inner()).await?))
    }

    async fn unregister(
        &self,
        r: Request<proto::UnregisterRequest>,
    ) -> Result<Response<proto::UnregisterResponse>, Status> {
        Ok(Response::new(self.term()?.unregister(r.into_inner()).await?))
    }

    async fn complete_wal_recovery(
        &self,
        r: Request<proto::WalRecoveryRequest>,
    ) -> Result<Response<proto::WalRecoveryResponse>, Status> {
        Ok(Response::new(self.term()?.complete_wal_recovery(r.into_inner()).await?))
    }

    type WatchStream = super::term::WatchStream;

    async fn watch(&self, r: Request<proto::WatchRequest>) -> Result<Response<Self::WatchStream>, Status> {
        Ok(Response::new(self.term()?.watch(r.into_inner().after_seq)))
    }

    async fn admin(&self, r: Request<proto::AdminRequest>) -> Result<Response<proto::AdminResponse>, Status> {
        Ok(Response::new(self.term()?.admin(r.into_inner()).await?))
    }
}
