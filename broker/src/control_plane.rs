//! The broker's handle on the controller, wherever it runs: a direct call
//! when this broker holds the controller term, gRPC to the lease holder's
//! address otherwise. Calls that find no controller (an election is under
//! way) are retried until their budget runs out.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use floe_storage::StorageError;
use tonic::transport::Channel;
use tonic::{Code, Status};

use crate::controller::service::ControllerService;
use crate::controller::{term_watch, Controller, Term};
use crate::proto::{self, controller_client::ControllerClient};

/// One unary call's own bound; the retry budget spans several.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);

enum Target {
    Local(Arc<Term>),
    Remote(ControllerClient<Channel>),
}

pub struct ControlPlane {
    controller: Arc<Controller>,
    channels: Mutex<HashMap<String, Channel>>,
}

fn retriable(s: &Status) -> bool {
    matches!(
        s.code(),
        Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled | Code::Unknown | Code::Aborted
    )
}

fn request<T>(msg: T) -> tonic::Request<T> {
    let mut r = tonic::Request::new(msg);
    r.set_timeout(CALL_TIMEOUT);
    r
}

impl ControlPlane {
    pub fn new(controller: Arc<Controller>) -> Arc<Self> {
        Arc::new(Self { controller, channels: Mutex::new(HashMap::new()) })
    }

    pub fn controller(&self) -> &Arc<Controller> {
        &self.controller
    }

    /// The gRPC service this broker serves for the controller role.
    pub fn service(&self) -> crate::proto::controller_server::ControllerServer<ControllerService> {
        ControllerService::server(self.controller.clone())
    }

    async fn target(&self) -> Result<Target, Status> {
        if let Some(term) = self.controller.active() {
            return Ok(Target::Local(term));
        }
        let located = self.controller.locate().await.map_err(|e| Status::unavailable(e.to_string()))?;
        let Some((_, rpc, mine)) = located else {
            return Err(Status::unavailable("no controller elected yet"));
        };
        if mine {
            // Ours from an earlier incarnation, or ours a moment ago: the
            // election here takes it over or lets it go soon.
            return Err(Status::unavailable("the controller lease is changing hands"));
        }
        let channel = {
            let mut channels = self.channels.lock().expect("channels lock");
            match channels.get(&rpc) {
                Some(c) => c.clone(),
                None => {
                    let endpoint = Channel::from_shared(format!("http://{rpc}"))
                        .map_err(|e| Status::invalid_argument(format!("controller address {rpc}: {e}")))?
                        .connect_timeout(Duration::from_secs(2))
                        .tcp_nodelay(true);
                    let c = endpoint.connect_lazy();
                    channels.insert(rpc.clone(), c.clone());
                    c
                }
            }
        };
        Ok(Target::Remote(ControllerClient::new(channel)))
    }

    async fn call<T, L, LF, R, RF>(&self, budget: Duration, local: L, remote: R) -> Result<T, Status>
    where
        T: Send + 'static,
        L: Fn(Arc<Term>) -> LF,
        LF: Future<Output = Result<T, Status>> + Send + 'static,
        R: Fn(ControllerClient<Channel>) -> RF,
        RF: Future<Output = Result<tonic::Response<T>, Status>>,
    {
        let deadline = Instant::now() + budget;
        let mut backoff = Duration::from_millis(25);
        loop {
            let result = match self.target().await {
                Ok(Target::Local(term)) => crate::controller::to_the_end(local(term)).await,
                Ok(Target::Remote(client)) => remote(client).await.map(tonic::Response::into_inner),
                Err(s) => Err(s),
            };
            match result {
                Err(s) if retriable(&s) && Instant::now() + backoff < deadline => {
                    tracing::debug!(status = %s, "controller call failed; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_millis(500));
                }
                other => return other,
            }
        }
    }

    pub async fn register(
        &self,
        req: proto::RegisterRequest,
        budget: Duration,
    ) -> Result<proto::RegisterResponse, Status> {
        self.call(
            budget,
            |t| {
                let r = req.clone();
                async move { t.register(r).await }
            },
            |mut c| {
                let r = req.clone();
                async move { c.register(request(r)).await }
            },
        )
        .await
    }

    pub async fn heartbeat(&self, req: proto::HeartbeatRequest) -> Result<proto::HeartbeatResponse, Status> {
        // One try: the next heartbeat is the retry.
        self.call(
            Duration::ZERO,
            |t| {
                let r = req.clone();
                async move { t.heartbeat(r).await }
            },
            |mut c| {
                let r = req.clone();
                async move {
                    let mut q = tonic::Request::new(r);
                    q.set_timeout(Duration::from_secs(1));
                    c.heartbeat(q).await
                }
            },
        )
        .await
    }

    pub async fn commit(&self, req: proto::CommitRequest) -> Result<proto::CommitResponse, Status> {
        self.unary(
            req,
            Duration::from_secs(10),
            |t, r| async move { t.commit(r).await },
            |mut c, r| async move { c.commit_object(request(r)).await },
        )
        .await
    }

    pub async fn commit_compaction(
        &self,
        req: proto::CompactionRequest,
    ) -> Result<proto::CompactionResponse, Status> {
        self.unary(
            req,
            Duration::from_secs(10),
            |t, r| async move { t.commit_compaction(r).await },
            |mut c, r| async move { c.commit_compaction(request(r)).await },
        )
        .await
    }

    pub async fn allocate_producer_ids(
        &self,
        req: proto::AllocateProducerIdsRequest,
    ) -> Result<proto::AllocateProducerIdsResponse, Status> {
        self.unary(
            req,
            Duration::from_secs(10),
            |t, r| async move { t.allocate_producer_ids(r).await },
            |mut c, r| async move { c.allocate_producer_ids(request(r)).await },
        )
        .await
    }

    pub async fn release(&self, req: proto::ReleaseRequest) -> Result<proto::ReleaseResponse, Status> {
        self.unary(
            req,
            Duration::from_secs(10),
            |t, r| async move { t.release(r).await },
            |mut c, r| async move { c.release(request(r)).await },
        )
        .await
    }

    pub async fn unregister(
        &self,
        req: proto::UnregisterRequest,
    ) -> Result<proto::UnregisterResponse, Status> {
        self.unary(
            req,
            Duration::from_secs(5),
            |t, r| async move { t.unregister(r).await },
            |mut c, r| async move { c.unregister(request(r)).await },
        )
        .await
    }

    pub async fn complete_wal_recovery(
        &self,
        req: proto::WalRecoveryRequest,
    ) -> Result<proto::WalRecoveryResponse, Status> {
        self.unary(
            req,
            Duration::from_secs(10),
            |t, r| async move { t.complete_wal_recovery(r).await },
            |mut c, r| async move { c.complete_wal_recovery(request(r)).await },
        )
        .await
    }

    pub async fn admin(
        &self,
        req: proto::AdminRequest,
        budget: Duration,
    ) -> Result<proto::AdminResponse, Status> {
        self.unary(
            req,
            budget,
            |t, r| async move { t.admin(r).await },
            |mut c, r| async move { c.admin(request(r)).await },
        )
        .await
    }

    /// One request, sent (again, on retriable failures) as a local call or
    /// over gRPC, whichever reaches the controller.
    async fn unary<Q, T, L, LF, R, RF>(
        &self,
        req: Q,
        budget: Duration,
        local: L,
        remote: R,
    ) -> Result<T, Status>
    where
        Q: Clone,
        T: Send + 'static,
        L: Fn(Arc<Term>, Q) -> LF,
        LF: Future<Output = Result<T, Status>> + Send + 'static,
        R: Fn(ControllerClient<Channel>, Q) -> RF,
        RF: Future<Output = Result<tonic::Response<T>, Status>>,
    {
        self.call(budget, |t| local(t, req.clone()), |c| remote(c, req.clone())).await
    }

    /// Metadata entries after `after`, as they are written.
    pub async fn watch(&self, after: u64) -> Result<term_watch::WatchStream, Status> {
        match self.target().await? {
            Target::Local(term) => Ok(term.watch(after)),
            Target::Remote(mut c) => {
                let stream = c.watch(proto::WatchRequest { after_seq: after }).await?.into_inner();
                Ok(Box::pin(stream))
            }
        }
    }
}

/// The storage error for a control-plane answer, by what the caller must do.
pub fn storage_error(s: &Status) -> StorageError {
    match s.code() {
        Code::FailedPrecondition => StorageError::Fenced(s.message().to_string()),
        Code::AlreadyExists => StorageError::TopicExists(s.message().to_string()),
        Code::NotFound => StorageError::UnknownTopic(s.message().to_string()),
        Code::InvalidArgument => StorageError::Invalid(s.message().to_string()),
        Code::DataLoss => StorageError::CorruptMetadata { seq: 0, reason: s.message().to_string() },
        _ => StorageError::Unavailable(s.message().to_string()),
    }
}
