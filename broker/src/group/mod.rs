//! The group coordinator: consumer-group membership (classic protocol) and
//! committed offsets. With one broker it coordinates every group; in the
//! cluster a group belongs to the owner of its offsets partition.

pub mod offsets;
pub mod state;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use bytes::Bytes;
use floe_protocol::ResponseError;

pub use offsets::{offsets_partition, Committed, OffsetStore, OFFSETS_TOPIC};
use state::{Group, GroupState, JoinOutcome, JoinRequest, Pending, SyncOutcome};

/// Kafka's group.min.session.timeout.ms and group.max.session.timeout.ms.
pub const MIN_SESSION_TIMEOUT: Duration = Duration::from_secs(6);
pub const MAX_SESSION_TIMEOUT: Duration = Duration::from_secs(1800);
/// How often session and rebalance deadlines are checked.
const TICK: Duration = Duration::from_millis(5);

/// A group as DescribeGroups reports it.
pub struct GroupSummary {
    pub state: &'static str,
    pub protocol_type: String,
    pub protocol: String,
    /// (member id, instance id, client id, client host, metadata, assignment)
    pub members: Vec<(String, Option<String>, String, String, Bytes, Bytes)>,
}

pub struct GroupCoordinator {
    groups: Mutex<HashMap<String, Group>>,
    initial_delay: Duration,
}

impl GroupCoordinator {
    /// Creates the coordinator and its deadline task (which ends with it).
    pub fn start(initial_delay: Duration) -> Arc<Self> {
        let this = Arc::new(Self { groups: Mutex::new(HashMap::new()), initial_delay });
        let weak: Weak<Self> = Arc::downgrade(&this);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(TICK).await;
                let Some(c) = weak.upgrade() else { return };
                c.tick();
            }
        });
        this
    }

    fn tick(&self) {
        let now = Instant::now();
        let mut groups = self.groups.lock().expect("groups poisoned");
        for g in groups.values_mut() {
            if g.next_deadline().is_some_and(|d| d <= now) {
                for member in g.tick(now, self.initial_delay) {
                    tracing::info!(group = g.id, member, "member session expired");
                }
            }
        }
    }

    fn with_group<T>(&self, id: &str, create: bool, f: impl FnOnce(&mut Group) -> T) -> Option<T> {
        let mut groups = self.groups.lock().expect("groups poisoned");
        if create && !groups.contains_key(id) {
            groups.insert(id.to_string(), Group::new(id));
        }
        groups.get_mut(id).map(f)
    }

    pub async fn join(&self, group_id: &str, req: JoinRequest) -> JoinOutcome {
        if group_id.is_empty() {
            return JoinOutcome::error(ResponseError::InvalidGroupId, &req.member_id);
        }
        if req.session_timeout < MIN_SESSION_TIMEOUT || req.session_timeout > MAX_SESSION_TIMEOUT {
            return JoinOutcome::error(ResponseError::InvalidSessionTimeout, &req.member_id);
        }
        let member_id = req.member_id.clone();
        let delay = self.initial_delay;
        let pending =
            self.with_group(group_id, true, |g| g.join(req, Instant::now(), delay)).expect("created");
        let outcome = match pending {
            Pending::Now(o) => o,
            Pending::Wait(rx) => {
                rx.await.unwrap_or_else(|_| JoinOutcome::error(ResponseError::UnknownMemberId, &member_id))
            }
        };
        if outcome.error.is_none() {
            tracing::debug!(
                group = group_id,
                member = outcome.member_id,
                generation = outcome.generation,
                "joined"
            );
        }
        outcome
    }

    pub async fn sync(
        &self,
        group_id: &str,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
        assignments: Vec<(String, Bytes)>,
    ) -> SyncOutcome {
        let pending = self.with_group(group_id, false, |g| {
            g.sync(member_id, instance_id, generation, assignments, Instant::now())
        });
        match pending {
            None => SyncOutcome::error(ResponseError::UnknownMemberId),
            Some(Pending::Now(o)) => o,
            Some(Pending::Wait(rx)) => {
                rx.await.unwrap_or_else(|_| SyncOutcome::error(ResponseError::RebalanceInProgress))
            }
        }
    }

    pub fn heartbeat(
        &self,
        group_id: &str,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
    ) -> Result<(), ResponseError> {
        self.with_group(group_id, false, |g| g.heartbeat(member_id, instance_id, generation, Instant::now()))
            .unwrap_or(Err(ResponseError::UnknownMemberId))
    }

    /// Removes members; each gets its own result.
    pub fn leave(
        &self,
        group_id: &str,
        members: &[(String, Option<String>)],
    ) -> Option<Vec<Result<String, ResponseError>>> {
        let delay = self.initial_delay;
        self.with_group(group_id, false, |g| {
            members.iter().map(|(m, i)| g.leave(m, i.as_deref(), Instant::now(), delay)).collect()
        })
    }

    /// May `member_id` commit offsets for `generation` now? (Kafka's rules:
    /// a member-less commit only to a group without members.)
    pub fn check_commit(
        &self,
        group_id: &str,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
    ) -> Result<(), ResponseError> {
        let groups = self.groups.lock().expect("groups poisoned");
        let Some(g) = groups.get(group_id) else {
            return if generation < 0 { Ok(()) } else { Err(ResponseError::IllegalGeneration) };
        };
        if g.fenced(member_id, instance_id) {
            return Err(ResponseError::FencedInstanceId);
        }
        if generation < 0 && g.members.is_empty() {
            return Ok(());
        }
        if g.state == GroupState::CompletingRebalance {
            return Err(ResponseError::RebalanceInProgress);
        }
        g.check_member(member_id, instance_id, generation)
    }

    /// Keeps a committing member alive, as a heartbeat would.
    pub fn touch(&self, group_id: &str, member_id: &str, generation: i32) {
        let _ = self.with_group(group_id, false, |g| {
            if g.check_member(member_id, None, generation).is_ok() {
                let _ = g.heartbeat(member_id, None, generation, Instant::now());
            }
        });
    }

    pub fn describe(&self, group_id: &str) -> Option<GroupSummary> {
        let groups = self.groups.lock().expect("groups poisoned");
        let g = groups.get(group_id)?;
        let protocol = g.protocol.clone().unwrap_or_default();
        let stable = g.state == GroupState::Stable;
        let members = g
            .members
            .iter()
            .map(|m| {
                let meta = m.metadata_for(&protocol);
                let assignment = if stable { m.assignment.clone() } else { Bytes::new() };
                (
                    m.id.clone(),
                    m.instance_id.clone(),
                    m.client_id.clone(),
                    m.client_host.clone(),
                    meta,
                    assignment,
                )
            })
            .collect();
        Some(GroupSummary {
            state: g.state.name(),
            protocol_type: g.protocol_type.clone().unwrap_or_default(),
            protocol: if stable || g.state == GroupState::CompletingRebalance {
                protocol
            } else {
                String::new()
            },
            members,
        })
    }

    /// (group id, protocol type, state) of every group with members or a past.
    pub fn list(&self) -> Vec<(String, String, &'static str)> {
        let groups = self.groups.lock().expect("groups poisoned");
        groups
            .values()
            .map(|g| (g.id.clone(), g.protocol_type.clone().unwrap_or_default(), g.state.name()))
            .collect()
    }

    /// Drops every group whose offsets live in `partition` once this broker
    /// no longer serves it; their members rejoin at the new coordinator
    /// (membership is not persisted, as the design notes).
    pub fn unload_partition(&self, partition: usize) {
        let mut groups = self.groups.lock().expect("groups poisoned");
        let ids: Vec<String> = groups.keys().filter(|g| offsets_partition(g) == partition).cloned().collect();
        for id in ids {
            if let Some(g) = groups.remove(&id) {
                tracing::info!(
                    group = id,
                    members = g.members.len(),
                    "group unloaded: its coordinator moved"
                );
                g.unload();
            }
        }
    }

    /// Forgets an empty group; NON_EMPTY_GROUP while it has members.
    pub fn remove_if_empty(&self, group_id: &str) -> Result<bool, ResponseError> {
        let mut groups = self.groups.lock().expect("groups poisoned");
        match groups.get(group_id) {
            None => Ok(false),
            Some(g) if !g.members.is_empty() => Err(ResponseError::NonEmptyGroup),
            Some(_) => {
                groups.remove(group_id);
                Ok(true)
            }
        }
    }

    /// Topics the group's members subscribe to, from their consumer-protocol
    /// metadata (for OffsetDelete).
    pub fn subscribed_topics(&self, group_id: &str) -> Vec<String> {
        use floe_protocol::kafka_protocol::messages::ConsumerProtocolSubscription;
        use floe_protocol::kafka_protocol::protocol::Decodable;
        let groups = self.groups.lock().expect("groups poisoned");
        let Some(g) = groups.get(group_id) else { return Vec::new() };
        if g.protocol_type.as_deref() != Some("consumer") {
            return Vec::new();
        }
        let mut topics = Vec::new();
        for m in &g.members {
            for (_, meta) in &m.protocols {
                let mut buf = meta.clone();
                if buf.len() < 2 {
                    continue;
                }
                let version = i16::from_be_bytes([buf[0], buf[1]]);
                bytes::Buf::advance(&mut buf, 2);
                if let Ok(sub) = ConsumerProtocolSubscription::decode(&mut buf, version.clamp(0, 3)) {
                    topics.extend(sub.topics.iter().map(|t| t.to_string()));
                }
            }
        }
        topics.sort();
        topics.dedup();
        topics
    }
}
