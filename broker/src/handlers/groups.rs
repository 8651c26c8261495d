//! Consumer-group membership APIs: FindCoordinator, JoinGroup, SyncGroup,
//! Heartbeat, LeaveGroup, ListGroups, DescribeGroups, DeleteGroups.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use floe_protocol::kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use floe_protocol::kafka_protocol::messages::describe_groups_response::{
    DescribedGroup, DescribedGroupMember,
};
use floe_protocol::kafka_protocol::messages::find_coordinator_response::Coordinator;
use floe_protocol::kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use floe_protocol::kafka_protocol::messages::leave_group_response::MemberResponse;
use floe_protocol::kafka_protocol::messages::list_groups_response::ListedGroup;
use floe_protocol::kafka_protocol::messages::*;
use floe_protocol::kafka_protocol::protocol::StrBytes;
use floe_protocol::{RequestFrame, ResponseError};

use super::{body, respond, Reply};
use crate::broker::{Broker, Partition};
use crate::group::offsets::{ensure_offsets_topic, offsets_partition};
use crate::group::state::JoinRequest;
use crate::group::OFFSETS_TOPIC;

fn s(v: impl Into<String>) -> StrBytes {
    StrBytes::from_string(v.into())
}

const GROUP_KEY: i8 = 0;

pub async fn find_coordinator(broker: &Arc<Broker>, frame: &RequestFrame) -> Reply {
    let req = body!(frame, FindCoordinatorRequest);
    let version = frame.version();
    let keys: Vec<StrBytes> = if version >= 4 { req.coordinator_keys.clone() } else { vec![req.key.clone()] };
    let mut found = Vec::with_capacity(keys.len());
    for key in keys {
        // Transactions are not served, so there is no transaction coordinator.
        let answer = if req.key_type != GROUP_KEY {
            Err(ResponseError::CoordinatorNotAvailable)
        } else {
            coordinator(broker, &key).await
        };
        found.push((key, answer));
    }
    let mut resp = FindCoordinatorResponse::default();
    if version >= 4 {
        resp.coordinators = found
            .into_iter()
            .map(|(key, answer)| match answer {
                Err(e) => Coordinator::default()
                    .with_key(key)
                    .with_node_id(BrokerId(-1))
                    .with_port(-1)
                    .with_error_code(e.code()),
                Ok((id, host, port)) => Coordinator::default()
                    .with_key(key)
                    .with_node_id(BrokerId(id))
                    .with_host(s(host))
                    .with_port(port),
            })
            .collect();
    } else {
        match found.pop().map_or(Err(ResponseError::InvalidRequest), |(_, a)| a) {
            Ok((id, host, port)) => resp = resp.with_node_id(BrokerId(id)).with_host(s(host)).with_port(port),
            Err(e) => resp = resp.with_error_code(e.code()).with_node_id(BrokerId(-1)).with_port(-1),
        }
    }
    respond(frame, &resp)
}

/// The broker coordinating `group`: the owner of its offsets partition.
async fn coordinator(broker: &Broker, group: &str) -> Result<(i32, String, i32), ResponseError> {
    if group.is_empty() {
        return Err(ResponseError::InvalidRequest);
    }
    let streams = ensure_offsets_topic(broker).await?;
    let stream = streams[offsets_partition(group)];
    let state = broker.metadata();
    let owner = state.streams.get(&stream).and_then(|m| m.moving_to.map_or(m.owner, |_| None));
    let Some(owner) = owner else { return Err(ResponseError::CoordinatorNotAvailable) };
    let (host, port) = broker.address_of(&state, owner);
    Ok((owner, host, port))
}

/// NOT_COORDINATOR unless this broker serves the group's offsets partition;
/// COORDINATOR_LOAD_IN_PROGRESS while it is still reading its commits.
pub fn not_coordinator(broker: &Broker, group: &str) -> Option<ResponseError> {
    let topic = broker.topic(OFFSETS_TOPIC)?;
    let partition = offsets_partition(group);
    match broker.partition(&topic, partition as i32) {
        Some(Partition::Local { .. }) if broker.offsets.is_loading(partition) => {
            Some(ResponseError::CoordinatorLoadInProgress)
        }
        Some(Partition::Local { .. }) => None,
        _ => Some(ResponseError::NotCoordinator),
    }
}

pub async fn join_group(broker: &Arc<Broker>, frame: &RequestFrame, peer: SocketAddr) -> Reply {
    let req = body!(frame, JoinGroupRequest);
    let version = frame.version();
    let session = Duration::from_millis(req.session_timeout_ms.max(0) as u64);
    // v0 has no rebalance timeout: Kafka uses the session timeout.
    let rebalance =
        if version >= 1 { Duration::from_millis(req.rebalance_timeout_ms.max(0) as u64) } else { session };
    let join = JoinRequest {
        member_id: req.member_id.to_string(),
        instance_id: req.group_instance_id.as_ref().map(|i| i.to_string()),
        client_id: frame.header.client_id.as_ref().map(|c| c.to_string()).unwrap_or_default(),
        client_host: format!("/{}", peer.ip()),
        session_timeout: session,
        rebalance_timeout: rebalance,
        protocol_type: req.protocol_type.to_string(),
        protocols: req.protocols.iter().map(|p| (p.name.to_string(), p.metadata.clone())).collect(),
        require_known_member_id: version >= 4,
    };
    let out = match not_coordinator(broker, &req.group_id.0) {
        Some(e) => crate::group::state::JoinOutcome::error(e, &join.member_id),
        None => broker.groups.join(&req.group_id.0, join).await,
    };
    let members = out
        .members
        .into_iter()
        .map(|(id, instance, meta)| {
            JoinGroupResponseMember::default()
                .with_member_id(s(id))
                .with_group_instance_id(if version >= 5 { instance.map(s) } else { None })
                .with_metadata(meta)
        })
        .collect();
    let mut resp = JoinGroupResponse::default()
        .with_error_code(out.error.map_or(0, |e| e.code()))
        .with_generation_id(out.generation)
        .with_leader(s(out.leader))
        .with_member_id(s(out.member_id))
        .with_members(members);
    // v7 made protocol name nullable and added the protocol type.
    if version >= 7 {
        resp.protocol_type = out.protocol_type.map(s);
        resp.protocol_name = out.protocol_name.map(s);
    } else {
        resp.protocol_name = Some(s(out.protocol_name.unwrap_or_default()));
    }
    respond(frame, &resp)
}

pub async fn sync_group(broker: &Arc<Broker>, frame: &RequestFrame) -> Reply {
    let req = body!(frame, SyncGroupRequest);
    let assignments =
        req.assignments.iter().map(|a| (a.member_id.to_string(), a.assignment.clone())).collect();
    let instance = req.group_instance_id.as_ref().map(|i| i.to_string());
    let out = match not_coordinator(broker, &req.group_id.0) {
        Some(e) => crate::group::state::SyncOutcome::error(e),
        None => {
            broker
                .groups
                .sync(&req.group_id.0, &req.member_id, instance.as_deref(), req.generation_id, assignments)
                .await
        }
    };
    let mut resp = SyncGroupResponse::default()
        .with_error_code(out.error.map_or(0, |e| e.code()))
        .with_assignment(out.assignment);
    if frame.version() >= 5 {
        resp.protocol_type = out.protocol_type.map(s);
        resp.protocol_name = out.protocol_name.map(s);
    }
    respond(frame, &resp)
}

pub fn heartbeat(broker: &Arc<Broker>, frame: &RequestFrame) -> Reply {
    let req = body!(frame, HeartbeatRequest);
    let instance = req.group_instance_id.as_ref().map(|i| i.to_string());
    let result = match not_coordinator(broker, &req.group_id.0) {
        Some(e) => Err(e),
        None => {
            broker.groups.heartbeat(&req.group_id.0, &req.member_id, instance.as_deref(), req.generation_id)
        }
    };
    respond(frame, &HeartbeatResponse::default().with_error_code(result.err().map_or(0, |e| e.code())))
}

pub fn leave_group(broker: &Arc<Broker>, frame: &RequestFrame) -> Reply {
    let req = body!(frame, LeaveGroupRequest);
    let version = frame.version();
    // v0–2 name one member; v3+ a batch of (member id, instance id).
    let members: Vec<(String, Option<String>)> = if version >= 3 {
        req.members
            .iter()
            .map(|m| (m.member_id.to_string(), m.group_instance_id.as_ref().map(|i| i.to_string())))
            .collect()
    } else {
        vec![(req.member_id.to_string(), None)]
    };
    let not_here = not_coordinator(broker, &req.group_id.0);
    let Some(results) = broker.groups.leave(&req.group_id.0, &members).filter(|_| not_here.is_none()) else {
        let code = not_here.unwrap_or(ResponseError::UnknownMemberId).code();
        let mut resp = LeaveGroupResponse::default().with_error_code(code);
        if version >= 3 {
            resp.error_code = 0;
            resp.members = members
                .into_iter()
                .map(|(m, i)| {
                    MemberResponse::default()
                        .with_member_id(s(m))
                        .with_group_instance_id(i.map(s))
                        .with_error_code(code)
                })
                .collect();
        }
        return respond(frame, &resp);
    };
    for r in results.iter().flatten() {
        tracing::info!(group = req.group_id.0.as_str(), member = r, "member left");
    }
    let mut resp = LeaveGroupResponse::default();
    if version >= 3 {
        resp.members = members
            .into_iter()
            .zip(results)
            .map(|((m, i), r)| {
                MemberResponse::default()
                    .with_member_id(s(m))
                    .with_group_instance_id(i.map(s))
                    .with_error_code(r.err().map_or(0, |e| e.code()))
            })
            .collect();
    } else if let Some(Err(e)) = results.first() {
        resp.error_code = e.code();
    }
    respond(frame, &resp)
}

pub fn list_groups(broker: &Arc<Broker>, frame: &RequestFrame) -> Reply {
    let req = body!(frame, ListGroupsRequest);
    let mut listed = broker.groups.list();
    for g in broker.offsets.groups() {
        if !listed.iter().any(|(id, _, _)| *id == g) {
            listed.push((g, "consumer".to_string(), "Empty"));
        }
    }
    listed.sort();
    let states: Vec<String> = req.states_filter.iter().map(|s| s.to_lowercase()).collect();
    let groups = listed
        .into_iter()
        .filter(|(_, _, state)| states.is_empty() || states.contains(&state.to_lowercase()))
        .map(|(id, protocol_type, state)| {
            let g = ListedGroup::default().with_group_id(GroupId(s(id))).with_protocol_type(s(protocol_type));
            if frame.version() >= 4 {
                g.with_group_state(s(state))
            } else {
                g
            }
        })
        .collect();
    respond(frame, &ListGroupsResponse::default().with_groups(groups))
}

pub fn describe_groups(broker: &Arc<Broker>, frame: &RequestFrame) -> Reply {
    let req = body!(frame, DescribeGroupsRequest);
    let version = frame.version();
    let groups = req
        .groups
        .into_iter()
        .map(|id| {
            let described = DescribedGroup::default().with_group_id(id.clone());
            match broker.groups.describe(&id.0) {
                Some(g) => described
                    .with_group_state(s(g.state))
                    .with_protocol_type(s(g.protocol_type))
                    .with_protocol_data(s(g.protocol))
                    .with_members(
                        g.members
                            .into_iter()
                            .map(|(member, instance, client, host, meta, assignment)| {
                                DescribedGroupMember::default()
                                    .with_member_id(s(member))
                                    .with_group_instance_id(if version >= 4 { instance.map(s) } else { None })
                                    .with_client_id(s(client))
                                    .with_client_host(s(host))
                                    .with_member_metadata(meta)
                                    .with_member_assignment(assignment)
                            })
                            .collect(),
                    ),
                None if broker.offsets.groups().contains(&id.0.to_string()) => {
                    described.with_group_state(s("Empty")).with_protocol_type(s("consumer"))
                }
                // Kafka describes a group it does not know as Dead, without error.
                None => described.with_group_state(s("Dead")),
            }
        })
        .collect();
    respond(frame, &DescribeGroupsResponse::default().with_groups(groups))
}

pub async fn delete_groups(broker: &Arc<Broker>, frame: &RequestFrame) -> Reply {
    let req = body!(frame, DeleteGroupsRequest);
    let mut results = Vec::with_capacity(req.groups_names.len());
    for id in req.groups_names {
        let result = DeletableGroupResult::default().with_group_id(id.clone());
        let had_members = match broker.groups.remove_if_empty(&id.0) {
            Err(e) => {
                results.push(result.with_error_code(e.code()));
                continue;
            }
            Ok(existed) => existed,
        };
        let offsets = broker.offsets.group(&id.0);
        if !had_members && offsets.is_empty() {
            results.push(result.with_error_code(ResponseError::GroupIdNotFound.code()));
            continue;
        }
        let tombstones = offsets.into_keys().map(|(t, p)| (t, p, None)).collect();
        match broker.offsets.write(broker, &id.0, tombstones).await {
            Ok(()) => {
                tracing::info!(group = id.0.as_str(), "deleted group");
                results.push(result);
            }
            Err(e) => results.push(result.with_error_code(e.code())),
        }
    }
    respond(frame, &DeleteGroupsResponse::default().with_results(results))
}
