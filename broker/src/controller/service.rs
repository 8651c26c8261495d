//! The controller's gRPC front. Every broker serves it; only the one whose
//! term is active answers, the others say `UNAVAILABLE` and the caller looks
//! the controller up again in the lease object.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::{to_the_end, Controller, Term};
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
        let (term, r) = (self.term()?, r.into_inner());
        Ok(Response::new(to_the_end(async move { term.register(r).await }).await?))
    }

    async fn heartbeat(
        &self,
        r: Request<proto::HeartbeatRequest>,
    ) -> Result<Response<proto::HeartbeatResponse>, Status> {
        let (term, r) = (self.term()?, r.into_inner());
        Ok(Response::new(to_the_end(async move { term.heartbeat(r).await }).await?))
    }

    async fn commit_object(
        &self,
        r: Request<proto::CommitRequest>,
    ) -> Result<Response<proto::CommitResponse>, Status> {
        let (term, r) = (self.term()?, r.into_inner());
        Ok(Response::new(to_the_end(async move { term.commit(r).await }).await?))
    }

    async fn commit_compaction(
        &self,
        r: Request<proto::CompactionRequest>,
    ) -> Result<Response<proto::CompactionResponse>, Status> {
        let (term, r) = (self.term()?, r.into_inner());
        Ok(Response::new(to_the_end(async move { term.commit_compaction(r).await }).await?))
    }

    async fn allocate_producer_ids(
        &self,
        r: Request<proto::AllocateProducerIdsRequest>,
    ) -> Result<Response<proto::AllocateProducerIdsResponse>, Status> {
        let (term, r) = (self.term()?, r.into_inner());
        Ok(Response::new(to_the_end(async move { term.allocate_producer_ids(r).await }).await?))
    }

    async fn release(
        &self,
        r: Request<proto::ReleaseRequest>,
    ) -> Result<Response<proto::ReleaseResponse>, Status> {
        let (term, r) = (self.term()?, r.into_inner());
        Ok(Response::new(to_the_end(async move { term.release(r).await }).await?))
    }

    async fn unregister(
        &self,
        r: Request<proto::UnregisterRequest>,
    ) -> Result<Response<proto::UnregisterResponse>, Status> {
        let (term, r) = (self.term()?, r.into_inner());
        Ok(Response::new(to_the_end(async move { term.unregister(r).await }).await?))
    }

    async fn complete_wal_recovery(
        &self,
        r: Request<proto::WalRecoveryRequest>,
    ) -> Result<Response<proto::WalRecoveryResponse>, Status> {
        let (term, r) = (self.term()?, r.into_inner());
        Ok(Response::new(to_the_end(async move { term.complete_wal_recovery(r).await }).await?))
    }

    type WatchStream = super::term::WatchStream;

    async fn watch(&self, r: Request<proto::WatchRequest>) -> Result<Response<Self::WatchStream>, Status> {
        Ok(Response::new(self.term()?.watch(r.into_inner().after_seq)))
    }

    async fn admin(&self, r: Request<proto::AdminRequest>) -> Result<Response<proto::AdminResponse>, Status> {
        let (term, r) = (self.term()?, r.into_inner());
        Ok(Response::new(to_the_end(async move { term.admin(r).await }).await?))
    }
}
