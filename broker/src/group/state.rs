//! One consumer group's membership state machine (Kafka's classic protocol):
//! Empty → PreparingRebalance → CompletingRebalance → Stable, with joins and
//! syncs parked until the rebalance they wait for completes.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use bytes::Bytes;
use floe_protocol::ResponseError;
use tokio::sync::oneshot;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupState {
    Empty,
    PreparingRebalance,
    CompletingRebalance,
    Stable,
}

impl GroupState {
    pub fn name(self) -> &'static str {
        match self {
            GroupState::Empty => "Empty",
            GroupState::PreparingRebalance => "PreparingRebalance",
            GroupState::CompletingRebalance => "CompletingRebalance",
            GroupState::Stable => "Stable",
        }
    }
}

/// What a JoinGroup gets back.
#[derive(Debug, Clone)]
pub struct JoinOutcome {
    pub error: Option<ResponseError>,
    pub generation: i32,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub leader: String,
    pub member_id: String,
    /// Filled for the leader only: (member id, instance id, metadata).
    pub members: Vec<(String, Option<String>, Bytes)>,
}

impl JoinOutcome {
    pub fn error(error: ResponseError, member_id: &str) -> Self {
        Self {
            error: Some(error),
            generation: -1,
            protocol_type: None,
            protocol_name: None,
            leader: String::new(),
            member_id: member_id.to_string(),
            members: Vec::new(),
        }
    }
}

/// What a SyncGroup gets back.
#[derive(Debug, Clone)]
pub struct SyncOutcome {
    pub error: Option<ResponseError>,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub assignment: Bytes,
}

impl SyncOutcome {
    pub fn error(error: ResponseError) -> Self {
        Self { error: Some(error), protocol_type: None, protocol_name: None, assignment: Bytes::new() }
    }
}

#[derive(Debug)]
pub struct Member {
    pub id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout: Duration,
    pub rebalance_timeout: Duration,
    pub protocol_type: String,
    pub protocols: Vec<(String, Bytes)>,
    pub assignment: Bytes,
    /// The member is removed when this passes without a heartbeat.
    pub deadline: Instant,
    pub join: Option<oneshot::Sender<JoinOutcome>>,
    pub sync: Option<oneshot::Sender<SyncOutcome>>,
}

impl Member {
    /// The member's metadata for `protocol` (empty if it does not support it).
    pub fn metadata_for(&self, protocol: &str) -> Bytes {
        self.protocols.iter().find(|(n, _)| n == protocol).map(|(_, b)| b.clone()).unwrap_or_default()
    }
}

/// A join request's member details.
#[derive(Debug, Clone)]
pub struct JoinRequest {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout: Duration,
    pub rebalance_timeout: Duration,
    pub protocol_type: String,
    pub protocols: Vec<(String, Bytes)>,
    /// JoinGroup v4+: a member without an id first gets one (KIP-394).
    pub require_known_member_id: bool,
}

/// Either an answer now, or one that arrives when the rebalance completes.
pub enum Pending<T> {
    Now(T),
    Wait(oneshot::Receiver<T>),
}

#[derive(Debug)]
pub struct Group {
    pub id: String,
    pub state: GroupState,
    pub generation: i32,
    pub protocol_type: Option<String>,
    pub protocol: Option<String>,
    pub leader: Option<String>,
    /// In join order; the first joined member leads when the leader leaves.
    pub members: Vec<Member>,
    /// instance id → member id of static members.
    pub static_members: HashMap<String, String>,
    /// KIP-394: ids handed out that must come back with the second join.
    pub pending: HashMap<String, Instant>,
    /// A rebalance completes by this time even if some members did not rejoin.
    pub join_deadline: Option<Instant>,
    /// The first rebalance of an empty group waits until then for more members.
    pub initial_delay_until: Option<Instant>,
    initial_delay_cap: Option<Instant>,
    next_member: u64,
}

impl Group {
    pub fn new(id: &str) -> Self {
        Self {
            id: id.to_string(),
            state: GroupState::Empty,
            generation: 0,
            protocol_type: None,
            protocol: None,
            leader: None,
            members: Vec::new(),
            static_members: HashMap::new(),
            pending: HashMap::new(),
            join_deadline: None,
            initial_delay_until: None,
            initial_delay_cap: None,
            next_member: 0,
        }
    }

    pub fn member(&self, id: &str) -> Option<&Member> {
        self.members.iter().find(|m| m.id == id)
    }

    fn member_mut(&mut self, id: &str) -> Option<&mut Member> {
        self.members.iter_mut().find(|m| m.id == id)
    }

    fn new_member_id(&mut self, client_id: &str, instance_id: Option<&str>) -> String {
        self.next_member += 1;
        let nanos =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos();
        let base = instance_id.unwrap_or(client_id);
        format!("{base}-{nanos:x}-{}", self.next_member)
    }

    /// Protocols every member (and the newcomer) supports, in the newcomer's order.
    fn supports(&self, protocol_type: &str, protocols: &[(String, Bytes)], except: Option<&str>) -> bool {
        if protocols.is_empty() || protocol_type.is_empty() {
            return false;
        }
        let others: Vec<&Member> = self.members.iter().filter(|m| Some(m.id.as_str()) != except).collect();
        if others.is_empty() {
            return true;
        }
        if self.protocol_type.as_deref() != Some(protocol_type) {
            return false;
        }
        protocols.iter().any(|(name, _)| others.iter().all(|m| m.protocols.iter().any(|(n, _)| n == name)))
    }

    /// Is `member_id` fenced by a newer incarnation of `instance_id`?
    pub fn fenced(&self, member_id: &str, instance_id: Option<&str>) -> bool {
        instance_id.is_some_and(|i| self.static_members.get(i).is_some_and(|current| current != member_id))
    }

    pub fn join(&mut self, req: JoinRequest, now: Instant, initial_delay: Duration) -> Pending<JoinOutcome> {
        let except = (!req.member_id.is_empty()).then_some(req.member_id.as_str());
        if !self.supports(&req.protocol_type, &req.protocols, except) {
            return Pending::Now(JoinOutcome::error(
                ResponseError::InconsistentGroupProtocol,
                &req.member_id,
            ));
        }
        if req.member_id.is_empty() {
            if let Some(instance) = req.instance_id.clone() {
                if let Some(old) = self.static_members.get(&instance).cloned() {
                    return self.rejoin_static(old, req, now, initial_delay);
                }
                let id = self.new_member_id(&req.client_id, Some(&instance));
                self.static_members.insert(instance, id.clone());
                return self.add_and_wait(id, req, now, initial_delay);
            }
            let id = self.new_member_id(&req.client_id, None);
            if req.require_known_member_id {
                self.pending.insert(id.clone(), now + req.session_timeout);
                return Pending::Now(JoinOutcome::error(ResponseError::MemberIdRequired, &id));
            }
            return self.add_and_wait(id, req, now, initial_delay);
        }
        let id = req.member_id.clone();
        if self.fenced(&id, req.instance_id.as_deref()) {
            return Pending::Now(JoinOutcome::error(ResponseError::FencedInstanceId, &id));
        }
        if self.pending.remove(&id).is_some() {
            return self.add_and_wait(id, req, now, initial_delay);
        }
        let Some(member) = self.member_mut(&id) else {
            return Pending::Now(JoinOutcome::error(ResponseError::UnknownMemberId, &id));
        };
        let changed = member.protocols != req.protocols;
        member.protocols = req.protocols;
        member.session_timeout = req.session_timeout;
        member.rebalance_timeout = req.rebalance_timeout;
        member.deadline = now + member.session_timeout;
        let is_leader = self.leader.as_deref() == Some(id.as_str());
        match self.state {
            GroupState::CompletingRebalance | GroupState::Stable
                if !(changed || is_leader && self.state == GroupState::Stable) =>
            {
                // Nothing changed: hand back the current generation.
                Pending::Now(self.join_outcome(&id))
            }
            _ => self.wait_for_join(&id, now, initial_delay),
        }
    }

    fn rejoin_static(
        &mut self,
        old: String,
        req: JoinRequest,
        now: Instant,
        initial_delay: Duration,
    ) -> Pending<JoinOutcome> {
        let instance = req.instance_id.clone().expect("static member");
        let new_id = self.new_member_id(&req.client_id, Some(&instance));
        let Some(member) = self.member_mut(&old) else {
            self.static_members.insert(instance, new_id.clone());
            return self.add_and_wait(new_id, req, now, initial_delay);
        };
        // The old incarnation is fenced from here on; a parked request of it
        // is answered so its connection does not hang.
        if let Some(tx) = member.join.take() {
            let _ = tx.send(JoinOutcome::error(ResponseError::FencedInstanceId, &old));
        }
        if let Some(tx) = member.sync.take() {
            let _ = tx.send(SyncOutcome::error(ResponseError::FencedInstanceId));
        }
        member.id = new_id.clone();
        let changed = member.protocols != req.protocols;
        member.protocols = req.protocols;
        member.client_id = req.client_id;
        member.client_host = req.client_host;
        member.session_timeout = req.session_timeout;
        member.rebalance_timeout = req.rebalance_timeout;
        member.deadline = now + req.session_timeout;
        self.static_members.insert(instance, new_id.clone());
        let was_leader = self.leader.as_deref() == Some(old.as_str());
        if was_leader {
            self.leader = Some(new_id.clone());
        }
        if self.state == GroupState::Stable && !changed && !was_leader {
            // KIP-345: a static member that restarts gets its old assignment
            // back without a rebalance.
            return Pending::Now(self.join_outcome(&new_id));
        }
        self.wait_for_join(&new_id, now, initial_delay)
    }

    fn add_and_wait(
        &mut self,
        id: String,
        req: JoinRequest,
        now: Instant,
        initial_delay: Duration,
    ) -> Pending<JoinOutcome> {
        if self.members.is_empty() {
            self.protocol_type = Some(req.protocol_type.clone());
        }
        self.members.push(Member {
            id: id.clone(),
            instance_id: req.instance_id,
            client_id: req.client_id,
            client_host: req.client_host,
            session_timeout: req.session_timeout,
            rebalance_timeout: req.rebalance_timeout,
            protocol_type: req.protocol_type,
            protocols: req.protocols,
            assignment: Bytes::new(),
            deadline: now + req.session_timeout,
            join: None,
            sync: None,
        });
        self.wait_for_join(&id, now, initial_delay)
    }

    fn wait_for_join(&mut self, id: &str, now: Instant, initial_delay: Duration) -> Pending<JoinOutcome> {
        let (tx, rx) = oneshot::channel();
        if let Some(old) = self.member_mut(id).and_then(|m| m.join.replace(tx)) {
            let _ = old.send(JoinOutcome::error(ResponseError::UnknownMemberId, id));
        }
        self.prepare_rebalance(now, initial_delay);
        self.try_complete_join(now);
        Pending::Wait(rx)
    }

    /// Starts a rebalance (no-op if one is under way).
    pub fn prepare_rebalance(&mut self, now: Instant, initial_delay: Duration) {
        let max_rebalance = self.members.iter().map(|m| m.rebalance_timeout).max().unwrap_or_default();
        match self.state {
            GroupState::PreparingRebalance => {
                // More members during the initial delay push it out, up to the cap.
                if let (Some(until), Some(cap)) = (self.initial_delay_until, self.initial_delay_cap) {
                    self.initial_delay_until = Some((now + initial_delay).min(cap).max(until));
                }
                return;
            }
            GroupState::Empty => {
                self.initial_delay_until = Some(now + initial_delay.min(max_rebalance));
                self.initial_delay_cap = Some(now + max_rebalance);
            }
            GroupState::CompletingRebalance => {
                for m in &mut self.members {
                    if let Some(tx) = m.sync.take() {
                        let _ = tx.send(SyncOutcome::error(ResponseError::RebalanceInProgress));
                    }
                }
            }
            GroupState::Stable => {}
        }
        self.state = GroupState::PreparingRebalance;
        self.join_deadline = Some(now + max_rebalance);
    }

    /// Completes the rebalance once every member rejoined (after the initial
    /// delay), or when the deadline passes, dropping members that did not.
    pub fn try_complete_join(&mut self, now: Instant) {
        if self.state != GroupState::PreparingRebalance {
            return;
        }
        if self.initial_delay_until.is_some_and(|t| now < t) {
            return;
        }
        let all_joined = self.members.iter().all(|m| m.join.is_some());
        if !all_joined && self.join_deadline.is_some_and(|d| now < d) {
            return;
        }
        let dropped: Vec<String> =
            self.members.iter().filter(|m| m.join.is_none()).map(|m| m.id.clone()).collect();
        for id in dropped {
            self.remove(&id);
        }
        self.initial_delay_until = None;
        self.initial_delay_cap = None;
        self.join_deadline = None;
        self.generation += 1;
        if self.members.is_empty() {
            self.state = GroupState::Empty;
            self.protocol = None;
            self.leader = None;
            return;
        }
        self.protocol = self.select_protocol();
        if self.leader.as_ref().is_none_or(|l| self.member(l).is_none()) {
            self.leader = Some(self.members[0].id.clone());
        }
        self.state = GroupState::CompletingRebalance;
        for i in 0..self.members.len() {
            let id = self.members[i].id.clone();
            let outcome = self.join_outcome(&id);
            let m = &mut self.members[i];
            m.assignment = Bytes::new();
            m.deadline = now + m.session_timeout;
            if let Some(tx) = m.join.take() {
                let _ = tx.send(outcome);
            }
        }
    }

    /// The protocol most members rank highest among those all support.
    fn select_protocol(&self) -> Option<String> {
        let first = self.members.first()?;
        let candidates: Vec<&String> = first
            .protocols
            .iter()
            .map(|(n, _)| n)
            .filter(|n| self.members.iter().all(|m| m.protocols.iter().any(|(p, _)| p == *n)))
            .collect();
        let mut votes: HashMap<&String, usize> = HashMap::new();
        for m in &self.members {
            if let Some((n, _)) = m.protocols.iter().find(|(n, _)| candidates.contains(&n)) {
                *votes.entry(n).or_default() += 1;
            }
        }
        candidates
            .iter()
            .max_by_key(|n| {
                (
                    votes.get(*n).copied().unwrap_or(0),
                    std::cmp::Reverse(candidates.iter().position(|c| c == *n)),
                )
            })
            .map(|n| (*n).clone())
    }

    fn join_outcome(&self, member_id: &str) -> JoinOutcome {
        let leader = self.leader.clone().unwrap_or_default();
        let members = if leader == member_id {
            let protocol = self.protocol.clone().unwrap_or_default();
            self.members
                .iter()
                .map(|m| (m.id.clone(), m.instance_id.clone(), m.metadata_for(&protocol)))
                .collect()
        } else {
            Vec::new()
        };
        JoinOutcome {
            error: None,
            generation: self.generation,
            protocol_type: self.protocol_type.clone(),
            protocol_name: self.protocol.clone(),
            leader,
            member_id: member_id.to_string(),
            members,
        }
    }

    /// Checks identity and generation as Kafka does for SyncGroup, Heartbeat
    /// and OffsetCommit.
    pub fn check_member(
        &self,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
    ) -> Result<(), ResponseError> {
        if self.fenced(member_id, instance_id) {
            return Err(ResponseError::FencedInstanceId);
        }
        if self.member(member_id).is_none() {
            return Err(ResponseError::UnknownMemberId);
        }
        if generation != self.generation {
            return Err(ResponseError::IllegalGeneration);
        }
        Ok(())
    }

    pub fn sync(
        &mut self,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
        assignments: Vec<(String, Bytes)>,
        now: Instant,
    ) -> Pending<SyncOutcome> {
        if let Err(e) = self.check_member(member_id, instance_id, generation) {
            return Pending::Now(SyncOutcome::error(e));
        }
        self.heartbeat_at(member_id, now);
        match self.state {
            GroupState::Empty | GroupState::PreparingRebalance => {
                Pending::Now(SyncOutcome::error(ResponseError::RebalanceInProgress))
            }
            GroupState::Stable => Pending::Now(self.sync_outcome(member_id)),
            GroupState::CompletingRebalance => {
                let (tx, rx) = oneshot::channel();
                if let Some(m) = self.member_mut(member_id) {
                    m.sync = Some(tx);
                }
                if self.leader.as_deref() == Some(member_id) {
                    for m in &mut self.members {
                        m.assignment = assignments
                            .iter()
                            .find(|(id, _)| *id == m.id)
                            .map(|(_, a)| a.clone())
                            .unwrap_or_default();
                    }
                    self.state = GroupState::Stable;
                    for i in 0..self.members.len() {
                        let outcome = self.sync_outcome(&self.members[i].id.clone());
                        if let Some(tx) = self.members[i].sync.take() {
                            let _ = tx.send(outcome);
                        }
                    }
                }
                Pending::Wait(rx)
            }
        }
    }

    fn sync_outcome(&self, member_id: &str) -> SyncOutcome {
        SyncOutcome {
            error: None,
            protocol_type: self.protocol_type.clone(),
            protocol_name: self.protocol.clone(),
            assignment: self.member(member_id).map(|m| m.assignment.clone()).unwrap_or_default(),
        }
    }

    pub fn heartbeat(
        &mut self,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
        now: Instant,
    ) -> Result<(), ResponseError> {
        if self.fenced(member_id, instance_id) {
            return Err(ResponseError::FencedInstanceId);
        }
        if self.member(member_id).is_none() {
            return Err(ResponseError::UnknownMemberId);
        }
        self.heartbeat_at(member_id, now);
        if generation != self.generation {
            return Err(ResponseError::IllegalGeneration);
        }
        match self.state {
            GroupState::PreparingRebalance => Err(ResponseError::RebalanceInProgress),
            _ => Ok(()),
        }
    }

    fn heartbeat_at(&mut self, member_id: &str, now: Instant) {
        if let Some(m) = self.member_mut(member_id) {
            m.deadline = now + m.session_timeout;
        }
    }

    /// LeaveGroup for one member (by member id, instance id or both).
    pub fn leave(
        &mut self,
        member_id: &str,
        instance_id: Option<&str>,
        now: Instant,
        initial_delay: Duration,
    ) -> Result<String, ResponseError> {
        let id = match instance_id {
            Some(instance) => {
                let current =
                    self.static_members.get(instance).cloned().ok_or(ResponseError::UnknownMemberId)?;
                if !member_id.is_empty() && member_id != current {
                    return Err(ResponseError::FencedInstanceId);
                }
                current
            }
            None => member_id.to_string(),
        };
        if self.member(&id).is_none() {
            if self.pending.remove(&id).is_some() {
                return Ok(id);
            }
            return Err(ResponseError::UnknownMemberId);
        }
        self.remove(&id);
        self.after_removal(now, initial_delay);
        Ok(id)
    }

    fn remove(&mut self, id: &str) {
        if let Some(pos) = self.members.iter().position(|m| m.id == id) {
            let m = self.members.remove(pos);
            if let Some(instance) = &m.instance_id {
                if self.static_members.get(instance).is_some_and(|cur| cur == id) {
                    self.static_members.remove(instance);
                }
            }
            if let Some(tx) = m.join {
                let _ = tx.send(JoinOutcome::error(ResponseError::UnknownMemberId, id));
            }
            if let Some(tx) = m.sync {
                let _ = tx.send(SyncOutcome::error(ResponseError::UnknownMemberId));
            }
            if self.leader.as_deref() == Some(id) {
                self.leader = self.members.first().map(|m| m.id.clone());
            }
        }
    }

    fn after_removal(&mut self, now: Instant, initial_delay: Duration) {
        if self.members.is_empty() && self.state != GroupState::PreparingRebalance {
            self.state = GroupState::Empty;
            self.generation += 1;
            self.protocol = None;
            self.leader = None;
            return;
        }
        self.prepare_rebalance(now, initial_delay);
        self.try_complete_join(now);
    }

    /// The group is no longer coordinated here (its offsets partition moved
    /// away): members waiting in a join or sync hear NOT_COORDINATOR, as from
    /// Kafka when a coordinator resigns, and find the new coordinator.
    pub fn unload(self) {
        for m in self.members {
            if let Some(tx) = m.join {
                let _ = tx.send(JoinOutcome::error(ResponseError::NotCoordinator, &m.id));
            }
            if let Some(tx) = m.sync {
                let _ = tx.send(SyncOutcome::error(ResponseError::NotCoordinator));
            }
        }
    }

    /// Session expiry and rebalance deadlines. Returns the ids of expired members.
    pub fn tick(&mut self, now: Instant, initial_delay: Duration) -> Vec<String> {
        self.pending.retain(|_, deadline| *deadline > now);
        let expired: Vec<String> = self
            .members
            .iter()
            .filter(|m| m.join.is_none() && m.deadline <= now)
            .map(|m| m.id.clone())
            .collect();
        for id in &expired {
            self.remove(id);
        }
        if !expired.is_empty() {
            self.after_removal(now, initial_delay);
        }
        self.try_complete_join(now);
        expired
    }

    /// The earliest time `tick` has something to do.
    pub fn next_deadline(&self) -> Option<Instant> {
        let members = self.members.iter().filter(|m| m.join.is_none()).map(|m| m.deadline);
        let pending = self.pending.values().copied();
        members.chain(pending).chain(self.join_deadline).chain(self.initial_delay_until).min()
    }
}

#[cfg(test)]
mod tests;
