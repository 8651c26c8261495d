//! One controller term: the metadata log open for writing, the brokers'
//! leases as this controller sees them, and the operations of the control
//! plane. Requests and answers are the protobuf messages, whether they come
//! over gRPC or from the broker this controller runs in.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use floe_storage::meta::{
    Assignment, BrokerAddress, LogEntry, MetaRecord, MetaState, MetadataLog, ProducerSnapshot, TopicMeta,
};
use floe_storage::object::ObjectRange;
use floe_storage::{Bucket, StorageError, WriteLease};
use futures::Stream;
use tokio::sync::watch;
use tonic::Status;

use super::{placement, ControllerSettings, DRIFT, MARGIN};
use crate::proto::{self, admin_request::Op};

/// Partitions of one topic, at most (the Kafka handlers allow 10,000).
const MAX_PARTITIONS: u32 = 100_000;
/// Producer ids handed out per request.
const PRODUCER_ID_BLOCK: i64 = 1000;
/// Moves started per balancing round (a thousand partitions move in a few rounds).
const MOVES_PER_ROUND: usize = 500;
/// A stream moved for its bytes in is left where it is for this long.
const RATE_PATIENCE: Duration = Duration::from_secs(60);
/// A move whose owner has not released it by then is started again.
const MOVE_PATIENCE: Duration = Duration::from_secs(30);

/// A broker's lease as this controller sees it.
struct Liveness {
    epoch: u64,
    last_seen: Instant,
    applied_seq: u64,
    pending_upload_bytes: u64,
    instance: String,
}

impl Liveness {
    /// A full lease from now.
    fn granted(epoch: u64, instance: String) -> Self {
        Self { epoch, last_seen: Instant::now(), applied_seq: 0, pending_upload_bytes: 0, instance }
    }
}

pub struct Term {
    number: u64,
    log: MetadataLog,
    lease: Arc<dyn WriteLease>,
    settings: ControllerSettings,
    live: Mutex<HashMap<i32, Liveness>>,
    moves_started: Mutex<HashMap<u64, Instant>>,
    /// Bytes in per stream, from the commits this term saw.
    rates: Arc<Mutex<placement::Rates>>,
    /// When each stream last moved (for the bytes-in balancer's patience).
    moved_at: Mutex<HashMap<u64, Instant>>,
    ended: AtomicBool,
    stop: watch::Sender<bool>,
}

mod cleanup;
mod compaction;
mod duties;

pub type WatchStream = Pin<Box<dyn Stream<Item = Result<proto::WatchEvent, Status>> + Send>>;

impl Term {
    pub(super) async fn open(
        bucket: Bucket,
        broker_id: i32,
        number: u64,
        lease: Arc<dyn WriteLease>,
        settings: ControllerSettings,
    ) -> Result<Arc<Self>, StorageError> {
        let log = MetadataLog::open(bucket, broker_id, number, lease.clone()).await?;
        // A new controller grants every live broker a full lease before it
        // declares any dead: it cannot know when they last renewed.
        let live = log
            .state()
            .brokers
            .iter()
            .filter(|(_, b)| !b.fenced)
            .map(|(id, b)| (*id, Liveness::granted(b.epoch, b.address.instance.clone())))
            .collect();
        let (stop, _) = watch::channel(false);
        let term = Arc::new(Self {
            number,
            log,
            lease,
            settings,
            live: Mutex::new(live),
            moves_started: Mutex::new(HashMap::new()),
            rates: Arc::default(),
            moved_at: Mutex::new(HashMap::new()),
            ended: AtomicBool::new(false),
            stop,
        });
        tokio::spawn(term.clone().maintain());
        Ok(term)
    }

    pub fn number(&self) -> u64 {
        self.number
    }

    pub fn state(&self) -> Arc<MetaState> {
        self.log.state()
    }

    pub(super) fn log_deposed(&self) -> bool {
        self.log.is_deposed()
    }

    /// Whether this term may still act: not ended, not deposed, lease held.
    pub fn is_valid(&self) -> bool {
        !self.ended.load(Ordering::Acquire)
            && !self.log.is_deposed()
            && Instant::now() < self.lease.valid_until()
    }

    pub(super) fn end(&self) {
        self.ended.store(true, Ordering::Release);
        self.stop.send_replace(true);
    }

    fn broker_grace(&self) -> Duration {
        self.settings.broker_lease.mul_f64(1.0 + DRIFT) + MARGIN
    }

    fn check_live(&self, state: &MetaState, broker_id: i32, epoch: u64) -> Result<(), Status> {
        match state.live_broker(broker_id) {
            Some(b) if b.epoch == epoch => Ok(()),
            _ => Err(Status::failed_precondition(format!(
                "broker {broker_id} epoch {epoch} is fenced: a newer incarnation registered or its lease expired"
            ))),
        }
    }

    /// Live brokers that may receive partitions (not draining).
    fn eligible(&self, state: &MetaState) -> Vec<i32> {
        state.eligible_brokers()
    }

    pub async fn register(&self, req: proto::RegisterRequest) -> Result<proto::RegisterResponse, Status> {
        let id = req.broker_id;
        {
            let live = self.live.lock().expect("live lock");
            if let Some(l) = live.get(&id) {
                let alive = l.last_seen.elapsed() < self.broker_grace();
                if alive && l.instance != req.instance && self.state().live_broker(id).is_some() {
                    return Err(Status::already_exists(format!(
                        "broker id {id} is in use by a live broker ({}); give this one another --broker-id",
                        l.instance
                    )));
                }
            }
        }
        // A previous incarnation on another instance whose WAL a peer can
        // still read: its acknowledged tail comes first, or a new disk would
        // take the streams over at the committed end and reuse its offsets.
        {
            let state = self.state();
            if let Some(prev) = state.brokers.get(&id) {
                let unrecovered = prev.fenced && !prev.wal_recovered && state.streams_of(id).next().is_some();
                let host = host_of(&prev.address.instance);
                let reachable = state.eligible_brokers().iter().any(|b| {
                    *b != id && state.brokers.get(b).is_some_and(|x| host_of(&x.address.instance) == host)
                });
                if unrecovered && prev.address.instance != req.instance && reachable {
                    return Err(Status::unavailable(format!(
                        "broker {id}'s previous incarnation ({}) has a WAL that a peer is recovering; registering once it is done",
                        prev.address.instance
                    )));
                }
            }
        }
        let address = BrokerAddress {
            kafka_host: req.kafka_host.clone(),
            kafka_port: req.kafka_port,
            rpc: req.rpc_address.clone(),
            instance: req.instance.clone(),
        };
        let eligible = self.eligible(&self.state());
        let chosen = Arc::new(AtomicU64::new(0));
        let chosen_in = chosen.clone();
        let state = self
            .log
            .append_with(move |s| {
                let broker_epoch = s.brokers.get(&id).map_or(0, |b| b.epoch) + 1;
                chosen_in.store(broker_epoch, Ordering::Release);
                let mut records = vec![MetaRecord::BrokerRegistered {
                    broker_id: id,
                    broker_epoch,
                    address,
                    streams: vec![],
                }];
                // What it owned, it keeps, at a new epoch: its WAL holds the tail.
                let mut assignments: Vec<Assignment> = s
                    .streams_of(id)
                    .map(|(stream, m)| Assignment { stream, owner: id, epoch: m.epoch + 1, producers: None })
                    .collect();
                // (Its own are taken above, whatever became of its last incarnation.)
                let orphans: Vec<u64> =
                    orphans(s).into_iter().filter(|sid| s.streams[sid].owner != Some(id)).collect();
                let mut targets = eligible.clone();
                if !targets.contains(&id) {
                    targets.push(id);
                }
                let mut after = s.clone();
                after.apply(&records[0]);
                assignments.extend(placement::spread(&after, &orphans, &targets));
                if !assignments.is_empty() {
                    records.push(MetaRecord::StreamsAssigned { assignments });
                }
                Ok(records)
            })
            .await
            .map_err(status)?;
        let broker_epoch = chosen.load(Ordering::Acquire);
        self.live.lock().expect("live lock").insert(id, Liveness::granted(broker_epoch, req.instance));
        tracing::info!(broker_id = id, broker_epoch, "broker registered");
        Ok(proto::RegisterResponse {
            broker_epoch,
            lease_ms: self.settings.broker_lease.as_millis() as u64,
            seq: state.seq,
        })
    }

    pub async fn heartbeat(&self, req: proto::HeartbeatRequest) -> Result<proto::HeartbeatResponse, Status> {
        let state = self.state();
        self.check_live(&state, req.broker_id, req.broker_epoch)?;
        let mut live = self.live.lock().expect("live lock");
        // Too late: the fencing of this incarnation may already be on its way.
        if live
            .get(&req.broker_id)
            .is_some_and(|l| l.epoch == req.broker_epoch && l.last_seen.elapsed() > self.broker_grace())
        {
            return Err(Status::failed_precondition(format!(
                "broker {} epoch {}: its lease expired before this renewal arrived",
                req.broker_id, req.broker_epoch
            )));
        }
        let l =
            live.entry(req.broker_id).or_insert_with(|| Liveness::granted(req.broker_epoch, String::new()));
        l.epoch = req.broker_epoch;
        l.last_seen = Instant::now();
        l.applied_seq = req.applied_seq;
        l.pending_upload_bytes = req.pending_upload_bytes;
        drop(live);
        if !req.bytes_out.is_empty() {
            let mut rates = self.rates.lock().expect("rates lock");
            for s in &req.bytes_out {
                rates.observe_out(s.stream, s.bytes);
            }
        }
        Ok(proto::HeartbeatResponse {
            lease_ms: self.settings.broker_lease.as_millis() as u64,
            seq: state.seq,
        })
    }

    pub async fn commit(&self, req: proto::CommitRequest) -> Result<proto::CommitResponse, Status> {
        let refused = Arc::new(Mutex::new(Vec::new()));
        let refused_in = refused.clone();
        let rates = self.rates.clone();
        let state = self
            .log
            .append_with(move |s| {
                if s.live_broker(req.broker_id).map(|b| b.epoch) != Some(req.broker_epoch) {
                    return Err(StorageError::Fenced(format!(
                        "broker {} epoch {} is fenced",
                        req.broker_id, req.broker_epoch
                    )));
                }
                let mut ranges = Vec::new();
                for r in &req.ranges {
                    let range = range_of(r);
                    // A commit retried after a lost answer is already there.
                    let repeated = s.streams.get(&r.stream).is_some_and(|m| {
                        m.ranges
                            .iter()
                            .rev()
                            .take(8)
                            .any(|(k, x)| *k == req.key && x.start_offset == r.start_offset)
                    });
                    if repeated {
                        continue;
                    }
                    match s.check_range(req.broker_id, &req.key, &range) {
                        Ok(()) => ranges.push(range),
                        Err(e) => {
                            let refusal = proto::RefusedStream {
                                stream: r.stream,
                                reason: e.to_string(),
                                fenced: matches!(e, StorageError::Fenced(_)),
                                committed_end: s.streams.get(&r.stream).map_or(-1, |m| m.end_offset),
                            };
                            refused_in.lock().expect("refused lock").push(refusal)
                        }
                    }
                }
                if ranges.is_empty() {
                    return Ok(Vec::new());
                }
                let mut rates = rates.lock().expect("rates lock");
                for r in &ranges {
                    rates.observe_in(r.stream, r.length);
                }
                let producers = req
                    .producers
                    .iter()
                    .filter(|p| ranges.iter().any(|r| r.stream == p.stream))
                    .map(|p| (p.stream, snapshot(p)))
                    .collect();
                Ok(vec![MetaRecord::ObjectCommitted {
                    key: req.key.clone(),
                    size: req.size,
                    broker_id: req.broker_id,
                    broker_epoch: req.broker_epoch,
                    ranges,
                    producers,
                }])
            })
            .await
            .map_err(status)?;
        let refused = std::mem::take(&mut *refused.lock().expect("refused lock"));
        Ok(proto::CommitResponse { refused, seq: state.seq })
    }

    pub async fn allocate_producer_ids(
        &self,
        req: proto::AllocateProducerIdsRequest,
    ) -> Result<proto::AllocateProducerIdsResponse, Status> {
        self.check_live(&self.state(), req.broker_id, req.broker_epoch)?;
        let first = Arc::new(AtomicI64::new(0));
        let first_in = first.clone();
        self.log
            .append_with(move |s| {
                first_in.store(s.next_producer_id, Ordering::Release);
                Ok(vec![MetaRecord::ProducerIdsAllocated {
                    broker_id: req.broker_id,
                    first: s.next_producer_id,
                    count: PRODUCER_ID_BLOCK,
                }])
            })
            .await
            .map_err(status)?;
        Ok(proto::AllocateProducerIdsResponse {
            first: first.load(Ordering::Acquire),
            count: PRODUCER_ID_BLOCK,
        })
    }

    pub async fn release(&self, req: proto::ReleaseRequest) -> Result<proto::ReleaseResponse, Status> {
        let eligible = self.eligible(&self.state());
        let stream = req.stream;
        let state = self
            .log
            .append_with(move |s| {
                if s.live_broker(req.broker_id).map(|b| b.epoch) != Some(req.broker_epoch) {
                    return Err(StorageError::Fenced(format!("broker {} is fenced", req.broker_id)));
                }
                let m = s.streams.get(&req.stream).ok_or(StorageError::UnknownStream(req.stream))?;
                if m.owner != Some(req.broker_id) || m.epoch != req.epoch {
                    return Err(StorageError::Fenced(format!(
                        "stream {} is owned by {:?} at epoch {}",
                        req.stream, m.owner, m.epoch
                    )));
                }
                if m.end_offset != req.end_offset {
                    return Err(StorageError::Unavailable(format!(
                        "stream {}: committed end {} is not the released end {}",
                        req.stream, m.end_offset, req.end_offset
                    )));
                }
                // The destination may have died meanwhile: pick another.
                let to = match m.moving_to {
                    Some(to) if s.live_broker(to).is_some() && to != req.broker_id => to,
                    _ => {
                        let others: Vec<i32> =
                            eligible.iter().copied().filter(|b| *b != req.broker_id).collect();
                        placement::spread(s, &[req.stream], &others)
                            .first()
                            .map_or(req.broker_id, |a| a.owner)
                    }
                };
                let producers = Some(req.producers.iter().map(snapshot).collect());
                Ok(vec![MetaRecord::StreamsAssigned {
                    assignments: vec![Assignment {
                        stream: req.stream,
                        owner: to,
                        epoch: m.epoch + 1,
                        producers,
                    }],
                }])
            })
            .await
            .map_err(status)?;
        self.moves_started.lock().expect("moves lock").remove(&stream);
        Ok(proto::ReleaseResponse { seq: state.seq })
    }

    /// A peer read a fenced broker's WAL and committed its tail: record it
    /// and hand the dead broker's streams to live brokers, at new epochs.
    pub async fn complete_wal_recovery(
        &self,
        req: proto::WalRecoveryRequest,
    ) -> Result<proto::WalRecoveryResponse, Status> {
        let state = self.state();
        self.check_live(&state, req.recoverer, req.recoverer_epoch)?;
        let eligible = self.eligible(&state);
        let (dead, recoverer) = (req.broker_id, req.recoverer);
        let state = self
            .log
            .append_with(move |s| {
                let ranges: Vec<ObjectRange> = req.ranges.iter().map(range_of).collect();
                let producers: Vec<(u64, ProducerSnapshot)> =
                    req.producers.iter().map(|p| (p.stream, snapshot(p))).collect();
                let recovered = MetaRecord::WalRecovered {
                    broker_id: req.broker_id,
                    broker_epoch: req.broker_epoch,
                    recoverer: req.recoverer,
                    key: req.key.clone(),
                    ranges,
                    producers: producers.clone(),
                };
                s.validate(&recovered)?;
                let mut after = s.clone();
                after.apply(&recovered);
                let orphans: Vec<u64> = after.streams_of(req.broker_id).map(|(id, _)| id).collect();
                let mut assignments = placement::spread(&after, &orphans, &eligible);
                for a in &mut assignments {
                    // The stream's producer state now includes the recovered tail.
                    let ps: Vec<ProducerSnapshot> =
                        after.streams[&a.stream].producers.values().cloned().collect();
                    a.producers = Some(ps);
                }
                let mut records = vec![recovered];
                if !assignments.is_empty() {
                    records.push(MetaRecord::StreamsAssigned { assignments });
                }
                Ok(records)
            })
            .await
            .map_err(status)?;
        tracing::info!(broker_id = dead, recoverer, "fenced broker's WAL recovered; its streams moved");
        Ok(proto::WalRecoveryResponse { seq: state.seq })
    }

    /// Entries after `after`, then each new one; a `reload` event when the
    /// watcher is behind what is kept in memory. Ends with the term.
    pub fn watch(self: &Arc<Self>, after: u64) -> WatchStream {
        let term = self.clone();
        let seq_rx = self.log.watch_seq();
        let stop_rx = self.stop.subscribe();
        let init =
            (term, seq_rx, stop_rx, after, std::collections::VecDeque::<proto::WatchEvent>::new(), false);
        Box::pin(futures::stream::unfold(
            init,
            |(term, mut seq_rx, mut stop_rx, mut after, mut queue, done)| async move {
                if done {
                    return None;
                }
                loop {
                    if let Some(event) = queue.pop_front() {
                        let reload = event.reload;
                        return Some((Ok(event), (term, seq_rx, stop_rx, after, queue, reload)));
                    }
                    if !term.is_valid() {
                        return None;
                    }
                    match term.log.entries_since(after) {
                        None => {
                            queue.push_back(proto::WatchEvent { seq: after, entry: Vec::new(), reload: true })
                        }
                        Some(entries) if entries.is_empty() => {
                            tokio::select! {
                                changed = seq_rx.changed() => if changed.is_err() { return None },
                                _ = stop_rx.changed() => return None,
                                // Re-check the lease now and then even when idle.
                                _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                            }
                        }
                        Some(entries) => {
                            for (seq, entry) in entries {
                                after = seq;
                                queue.push_back(encode_entry(seq, &entry));
                            }
                        }
                    }
                }
            },
        ))
    }

    pub async fn admin(&self, req: proto::AdminRequest) -> Result<proto::AdminResponse, Status> {
        let op = req.op.ok_or_else(|| Status::invalid_argument("empty admin request"))?;
        let state = match op {
            Op::CreateTopic(t) => self.create_topic(t).await?,
            Op::DeleteTopic(t) => {
                self.log.append(vec![MetaRecord::TopicDeleted { name: t.name }]).await.map_err(status)?
            }
            Op::AddPartitions(t) => self.add_partitions(t).await?,
            Op::SetTopicConfigs(t) => {
                let configs = t.configs.into_iter().map(|c| (c.name, c.value)).collect();
                self.log
                    .append(vec![MetaRecord::TopicConfigsSet { name: t.name, configs }])
                    .await
                    .map_err(status)?
            }
            Op::MovePartition(m) => self.move_partition(m).await?,
            Op::DrainBroker(d) => self.drain(d.broker_id).await?,
            Op::Status(_) => return Ok(self.status()),
            Op::TrimStreams(t) => {
                let trims = t.trims.iter().map(|t| (t.stream, t.start_offset)).collect();
                self.log.append(vec![MetaRecord::StreamsTrimmed { trims }]).await.map_err(status)?
            }
        };
        Ok(proto::AdminResponse { seq: state.seq, ..Default::default() })
    }

    async fn create_topic(&self, t: proto::CreateTopic) -> Result<Arc<MetaState>, Status> {
        if t.partitions == 0 || t.partitions > MAX_PARTITIONS {
            return Err(Status::invalid_argument(format!(
                "{} partitions: between 1 and {MAX_PARTITIONS}",
                t.partitions
            )));
        }
        let eligible = self.eligible(&self.state());
        if eligible.is_empty() {
            return Err(Status::unavailable("no live broker to own the new partitions"));
        }
        self.log
            .append_with(move |s| {
                let first = s.next_stream_id;
                let topic = TopicMeta {
                    name: t.name.clone(),
                    id: random_id(),
                    streams: (first..first + u64::from(t.partitions)).collect(),
                    configs: t.configs.iter().map(|c| (c.name.clone(), c.value.clone())).collect(),
                };
                let created = MetaRecord::TopicCreated { topic: topic.clone() };
                s.validate(&created)?;
                let mut after = s.clone();
                after.apply(&created);
                let assignments = placement::spread(&after, &topic.streams, &eligible);
                Ok(vec![created, MetaRecord::StreamsAssigned { assignments }])
            })
            .await
            .map_err(status)
    }

    async fn add_partitions(&self, t: proto::AddPartitions) -> Result<Arc<MetaState>, Status> {
        if t.total > MAX_PARTITIONS {
            return Err(Status::invalid_argument(format!(
                "{} partitions: at most {MAX_PARTITIONS}",
                t.total
            )));
        }
        let eligible = self.eligible(&self.state());
        self.log
            .append_with(move |s| {
                let topic =
                    s.topics.get(&t.name).ok_or_else(|| StorageError::UnknownTopic(t.name.clone()))?;
                let have = topic.streams.len() as u64;
                if u64::from(t.total) <= have {
                    return Err(StorageError::Invalid(format!(
                        "topic {} has {have} partitions; the new count must be larger",
                        t.name
                    )));
                }
                let first = s.next_stream_id;
                let streams: Vec<u64> = (first..first + u64::from(t.total) - have).collect();
                let added = MetaRecord::PartitionsAdded { name: t.name.clone(), streams: streams.clone() };
                let mut after = s.clone();
                after.apply(&added);
                let assignments = placement::spread(&after, &streams, &eligible);
                Ok(vec![added, MetaRecord::StreamsAssigned { assignments }])
            })
            .await
            .map_err(status)
    }

    async fn move_partition(&self, m: proto::MovePartition) -> Result<Arc<MetaState>, Status> {
        let state = self
            .log
            .append_with(move |s| {
                let topic =
                    s.topics.get(&m.topic).ok_or_else(|| StorageError::UnknownTopic(m.topic.clone()))?;
                let stream = topic.stream(m.partition).ok_or_else(|| {
                    StorageError::Invalid(format!("{} has no partition {}", m.topic, m.partition))
                })?;
                let meta = &s.streams[&stream];
                if meta.owner == Some(m.broker_id) && meta.moving_to.is_none() {
                    return Ok(Vec::new());
                }
                if s.live_broker(m.broker_id).is_none() {
                    return Err(StorageError::Invalid(format!("broker {} is not live", m.broker_id)));
                }
                Ok(vec![MetaRecord::MovesStarted { moves: vec![(stream, m.broker_id)] }])
            })
            .await
            .map_err(status)?;
        self.note_moves_started(&state);
        Ok(state)
    }

    async fn drain(&self, broker_id: i32) -> Result<Arc<MetaState>, Status> {
        self.log
            .append_with(move |s| {
                let b = s
                    .live_broker(broker_id)
                    .ok_or_else(|| StorageError::Invalid(format!("broker {broker_id} is not live")))?;
                if b.draining {
                    return Ok(Vec::new());
                }
                Ok(vec![MetaRecord::BrokerDraining { broker_id, broker_epoch: b.epoch }])
            })
            .await
            .map_err(status)?;
        tracing::info!(broker_id, "draining broker");
        self.balance_once().await.map_err(status)?;
        Ok(self.state())
    }

    /// A clean stop: the broker uploaded and committed everything, so its
    /// incarnation ends now (no lease to wait out, no WAL to recover) and
    /// what it still owns is spread over the live brokers.
    pub async fn unregister(
        &self,
        req: proto::UnregisterRequest,
    ) -> Result<proto::UnregisterResponse, Status> {
        let id = req.broker_id;
        let state = self
            .log
            .append_with(move |s| {
                if s.live_broker(id).map(|b| b.epoch) != Some(req.broker_epoch) {
                    return Ok(Vec::new());
                }
                let mut records = vec![
                    MetaRecord::BrokerFenced { broker_id: id, broker_epoch: req.broker_epoch },
                    MetaRecord::WalRecovered {
                        broker_id: id,
                        broker_epoch: req.broker_epoch,
                        recoverer: id,
                        key: String::new(),
                        ranges: Vec::new(),
                        producers: Vec::new(),
                    },
                ];
                let mut after = s.clone();
                after.apply_all(&records)?;
                let orphans: Vec<u64> = after.streams_of(id).map(|(sid, _)| sid).collect();
                let assignments = placement::spread(&after, &orphans, &after.eligible_brokers());
                if !assignments.is_empty() {
                    records.push(MetaRecord::StreamsAssigned { assignments });
                }
                Ok(records)
            })
            .await
            .map_err(status)?;
        self.live.lock().expect("live lock").remove(&id);
        tracing::info!(broker_id = id, "broker stopped cleanly");
        Ok(proto::UnregisterResponse { seq: state.seq })
    }

    fn note_moves_started(&self, state: &MetaState) {
        let mut started = self.moves_started.lock().expect("moves lock");
        let mut moved_at = self.moved_at.lock().expect("moved lock");
        let now = Instant::now();
        for (id, s) in state.streams.iter() {
            if s.moving_to.is_some() {
                started.entry(*id).or_insert(now);
                // Operators' moves too: the bytes-in balancer leaves them be.
                moved_at.entry(*id).or_insert(now);
            }
        }
    }

    fn status(&self) -> proto::AdminResponse {
        let state = self.state();
        let live = self.live.lock().expect("live lock");
        let rates = self.rates.lock().expect("rates lock");
        let brokers = state
            .brokers
            .iter()
            .map(|(id, b)| {
                let owned: Vec<_> = state.streams_of(*id).collect();
                let l = live.get(id);
                proto::BrokerStatus {
                    broker_id: *id,
                    broker_epoch: b.epoch,
                    live: !b.fenced,
                    kafka_address: format!("{}:{}", b.address.kafka_host, b.address.kafka_port),
                    partitions: owned.len() as u32,
                    committed_bytes: owned.iter().map(|(_, s)| s.bytes).sum(),
                    pending_upload_bytes: l.map_or(0, |l| l.pending_upload_bytes),
                    applied_seq: l.map_or(0, |l| l.applied_seq),
                    draining: b.draining,
                    bytes_in_per_sec: owned.iter().map(|(s, _)| rates.in_of(*s)).sum::<f64>() as u64,
                    bytes_out_per_sec: owned.iter().map(|(s, _)| rates.out_of(*s)).sum::<f64>() as u64,
                }
            })
            .collect();
        proto::AdminResponse {
            seq: state.seq,
            brokers,
            controller: state.controller,
            term: state.term,
            moving: state.streams.values().filter(|s| s.moving_to.is_some()).count() as u32,
            unassigned: state.streams.values().filter(|s| s.owner.is_none()).count() as u32,
            objects: state.objects.len() as u64,
            ranges: state.objects.values().map(|o| u64::from(o.ranges)).sum(),
            garbage: state.garbage.len() as u64,
        }
    }
}

fn range_of(r: &proto::Range) -> ObjectRange {
    ObjectRange::from(r)
}

fn snapshot(p: &proto::StreamProducer) -> ProducerSnapshot {
    ProducerSnapshot {
        producer_id: p.producer_id,
        epoch: p.producer_epoch as i16,
        batches: p.batches.iter().map(|b| (b.first_sequence, b.last_sequence, b.base_offset)).collect(),
    }
}

fn encode_entry(seq: u64, entry: &LogEntry) -> proto::WatchEvent {
    proto::WatchEvent { seq, entry: serde_json::to_vec(entry).expect("entries serialize"), reload: false }
}

/// Streams nobody can serve until they are assigned: never assigned, or left
/// with a fenced broker whose WAL is known to be committed.
fn orphans(s: &MetaState) -> Vec<u64> {
    s.streams
        .iter()
        .filter(|(_, m)| match m.owner {
            None => true,
            Some(o) => s.brokers.get(&o).is_some_and(|b| b.fenced && b.wal_recovered),
        })
        .map(|(id, _)| *id)
        .collect()
}

/// The host part of a broker instance (`host:wal-dir`).
pub fn host_of(instance: &str) -> &str {
    instance.split_once(':').map_or("", |(h, _)| h)
}

/// The WAL directory part of a broker instance.
pub fn wal_dir_of(instance: &str) -> &str {
    instance.split_once(':').map_or("", |(_, d)| d)
}

/// The gRPC status for a storage error, by what the caller must do.
pub fn status(e: StorageError) -> Status {
    match e {
        StorageError::Fenced(m) => Status::failed_precondition(m),
        // The caller looks the new controller up and asks again.
        StorageError::Deposed(m) => Status::unavailable(m),
        StorageError::TopicExists(t) => Status::already_exists(format!("topic {t} already exists")),
        StorageError::UnknownTopic(t) => Status::not_found(format!("topic {t} does not exist")),
        StorageError::UnknownStream(s) => Status::not_found(format!("stream {s} does not exist")),
        StorageError::Invalid(m) | StorageError::Config(m) => Status::invalid_argument(m),
        e @ (StorageError::CorruptMetadata { .. } | StorageError::CorruptObject { .. }) => {
            Status::data_loss(e.to_string())
        }
        e => Status::unavailable(e.to_string()),
    }
}

/// 16 bytes that differ between calls and processes, for topic ids.
fn random_id() -> [u8; 16] {
    use std::hash::{BuildHasher, Hasher};
    let mut out = [0u8; 16];
    for (i, chunk) in out.chunks_mut(8).enumerate() {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u128(
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos(),
        );
        h.write_usize(i);
        chunk.copy_from_slice(&h.finish().to_le_bytes());
    }
    out
}
