//! Group and offset APIs from a raw socket: every advertised version answers,
//! and fencing returns the error codes Kafka returns.

use bytes::Bytes;
use floe_testing::raw::{call, connect, topic};
use floe_testing::TestBroker;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

fn gid(v: &str) -> GroupId {
    GroupId(s(v))
}

fn join_req(group: &str, member: &str, instance: Option<&str>) -> JoinGroupRequest {
    JoinGroupRequest::default()
        .with_group_id(gid(group))
        .with_session_timeout_ms(10_000)
        .with_rebalance_timeout_ms(10_000)
        .with_member_id(s(member))
        .with_group_instance_id(instance.map(s))
        .with_protocol_type(s("consumer"))
        .with_protocols(vec![join_group_request::JoinGroupRequestProtocol::default()
            .with_name(s("range"))
            .with_metadata(Bytes::from_static(b"\x00\x00\x00\x00\x00\x00"))])
}

/// Joins (twice where KIP-394 asks for it) and returns the join response.
fn join(stream: &mut std::net::TcpStream, v: i16, group: &str, instance: Option<&str>) -> JoinGroupResponse {
    let r: JoinGroupResponse = call(stream, ApiKey::JoinGroup, v, &join_req(group, "", instance)).unwrap();
    if r.error_code == 79 {
        return call(stream, ApiKey::JoinGroup, v, &join_req(group, &r.member_id, instance)).unwrap();
    }
    r
}

#[test]
fn every_group_api_version_completes_a_membership_cycle() {
    let t = TestBroker::start("group-versions", &["--group-initial-rebalance-delay-ms", "0"]).unwrap();
    let mut c = connect(&t.broker.bootstrap());
    let _: MetadataResponse = call(
        &mut c,
        ApiKey::Metadata,
        9,
        &MetadataRequest::default()
            .with_topics(Some(vec![
                metadata_request::MetadataRequestTopic::default().with_name(Some(topic("t")))
            ]))
            .with_allow_auto_topic_creation(true),
    )
    .unwrap();

    for v in 0..=4 {
        let req = if v >= 4 {
            FindCoordinatorRequest::default().with_coordinator_keys(vec![s("g")])
        } else {
            FindCoordinatorRequest::default().with_key(s("g"))
        };
        let r: FindCoordinatorResponse = call(&mut c, ApiKey::FindCoordinator, v, &req).unwrap();
        let port = if v >= 4 { r.coordinators[0].port } else { r.port };
        assert_eq!(port as u16, t.broker.addr.port(), "FindCoordinator v{v}");
    }

    for v in 0..=9i16 {
        let group = format!("g{v}");
        let j = join(&mut c, v, &group, None);
        assert_eq!(j.error_code, 0, "JoinGroup v{v}");
        assert_eq!(j.generation_id, 1);
        assert_eq!(j.leader, j.member_id, "a lone member leads");
        let sync_v = v.min(5);
        let assignment = Bytes::from_static(b"\x00\x00\x00\x00\x00\x00\x00\x00");
        let sync = SyncGroupRequest::default()
            .with_group_id(gid(&group))
            .with_generation_id(1)
            .with_member_id(j.member_id.clone())
            .with_protocol_type(if sync_v >= 5 { Some(s("consumer")) } else { None })
            .with_protocol_name(if sync_v >= 5 { Some(s("range")) } else { None })
            .with_assignments(vec![sync_group_request::SyncGroupRequestAssignment::default()
                .with_member_id(j.member_id.clone())
                .with_assignment(assignment.clone())]);
        let r: SyncGroupResponse = call(&mut c, ApiKey::SyncGroup, sync_v, &sync).unwrap();
        assert_eq!((r.error_code, r.assignment.clone()), (0, assignment), "SyncGroup v{sync_v}");
        let hb = HeartbeatRequest::default()
            .with_group_id(gid(&group))
            .with_generation_id(1)
            .with_member_id(j.member_id.clone());
        let r: HeartbeatResponse = call(&mut c, ApiKey::Heartbeat, v.min(4), &hb).unwrap();
        assert_eq!(r.error_code, 0, "Heartbeat v{}", v.min(4));
        let r: HeartbeatResponse =
            call(&mut c, ApiKey::Heartbeat, v.min(4), &hb.clone().with_generation_id(7)).unwrap();
        assert_eq!(r.error_code, 22, "ILLEGAL_GENERATION");
        let r: HeartbeatResponse =
            call(&mut c, ApiKey::Heartbeat, v.min(4), &hb.clone().with_member_id(s("stranger"))).unwrap();
        assert_eq!(r.error_code, 25, "UNKNOWN_MEMBER_ID");

        // Commit and read back at every OffsetCommit / OffsetFetch version.
        if (2..=8).contains(&v) {
            let commit = OffsetCommitRequest::default()
                .with_group_id(gid(&group))
                .with_generation_id_or_member_epoch(1)
                .with_member_id(j.member_id.clone())
                .with_topics(vec![offset_commit_request::OffsetCommitRequestTopic::default()
                    .with_name(topic("t"))
                    .with_partitions(vec![offset_commit_request::OffsetCommitRequestPartition::default()
                        .with_partition_index(0)
                        .with_committed_offset(40 + i64::from(v))
                        .with_committed_metadata(Some(s("meta")))])]);
            let r: OffsetCommitResponse = call(&mut c, ApiKey::OffsetCommit, v, &commit).unwrap();
            assert_eq!(r.topics[0].partitions[0].error_code, 0, "OffsetCommit v{v}");
            let stale = commit.clone().with_generation_id_or_member_epoch(5);
            let r: OffsetCommitResponse = call(&mut c, ApiKey::OffsetCommit, v, &stale).unwrap();
            assert_eq!(r.topics[0].partitions[0].error_code, 22, "stale generation: ILLEGAL_GENERATION");
        }
        if (1..=8).contains(&v) {
            let committed = if (2..=8).contains(&v) { 40 + i64::from(v) } else { -1 };
            let r: OffsetFetchResponse = if v >= 8 {
                call(
                    &mut c,
                    ApiKey::OffsetFetch,
                    v,
                    &OffsetFetchRequest::default().with_groups(vec![
                        offset_fetch_request::OffsetFetchRequestGroup::default()
                            .with_group_id(gid(&group))
                            .with_topics(Some(vec![
                                offset_fetch_request::OffsetFetchRequestTopics::default()
                                    .with_name(topic("t"))
                                    .with_partition_indexes(vec![0]),
                            ])),
                        offset_fetch_request::OffsetFetchRequestGroup::default()
                            .with_group_id(gid("never-seen"))
                            .with_topics(Some(vec![
                                offset_fetch_request::OffsetFetchRequestTopics::default()
                                    .with_name(topic("t"))
                                    .with_partition_indexes(vec![0]),
                            ])),
                    ]),
                )
                .unwrap()
            } else {
                call(
                    &mut c,
                    ApiKey::OffsetFetch,
                    v,
                    &OffsetFetchRequest::default().with_group_id(gid(&group)).with_topics(Some(vec![
                        offset_fetch_request::OffsetFetchRequestTopic::default()
                            .with_name(topic("t"))
                            .with_partition_indexes(vec![0]),
                    ])),
                )
                .unwrap()
            };
            let got = if v >= 8 {
                r.groups[0].topics[0].partitions[0].committed_offset
            } else {
                r.topics[0].partitions[0].committed_offset
            };
            assert_eq!(got, committed, "OffsetFetch v{v}");
            if v >= 8 {
                let unknown = &r.groups[1];
                assert_eq!(
                    (unknown.error_code, unknown.topics[0].partitions[0].committed_offset),
                    (0, -1),
                    "unknown group: -1, no error"
                );
            }
        }

        let leave_v = v.min(5);
        let leave = if leave_v >= 3 {
            LeaveGroupRequest::default().with_group_id(gid(&group)).with_members(vec![
                leave_group_request::MemberIdentity::default().with_member_id(j.member_id.clone()),
                leave_group_request::MemberIdentity::default().with_member_id(s("stranger")),
            ])
        } else {
            LeaveGroupRequest::default().with_group_id(gid(&group)).with_member_id(j.member_id.clone())
        };
        let r: LeaveGroupResponse = call(&mut c, ApiKey::LeaveGroup, leave_v, &leave).unwrap();
        assert_eq!(r.error_code, 0, "LeaveGroup v{leave_v}");
        if leave_v >= 3 {
            assert_eq!(r.members.iter().map(|m| m.error_code).collect::<Vec<_>>(), vec![0, 25]);
        }
    }

    for v in 0..=4 {
        let r: ListGroupsResponse =
            call(&mut c, ApiKey::ListGroups, v, &ListGroupsRequest::default()).unwrap();
        assert!(r.groups.len() >= 10, "ListGroups v{v}: {}", r.groups.len());
        if v >= 4 {
            assert!(r.groups.iter().all(|g| g.group_state.as_str() == "Empty"));
        }
    }
    for v in 0..=5 {
        let req = DescribeGroupsRequest::default().with_groups(vec![gid("g3"), gid("nobody")]);
        let r: DescribeGroupsResponse = call(&mut c, ApiKey::DescribeGroups, v, &req).unwrap();
        assert_eq!(r.groups[0].group_state.as_str(), "Empty", "DescribeGroups v{v}");
        assert_eq!(r.groups[1].group_state.as_str(), "Dead");
    }
    let r: OffsetDeleteResponse = call(
        &mut c,
        ApiKey::OffsetDelete,
        0,
        &OffsetDeleteRequest::default().with_group_id(gid("g2")).with_topics(vec![
            offset_delete_request::OffsetDeleteRequestTopic::default().with_name(topic("t")).with_partitions(
                vec![offset_delete_request::OffsetDeleteRequestPartition::default().with_partition_index(0)],
            ),
        ]),
    )
    .unwrap();
    assert_eq!((r.error_code, r.topics[0].partitions[0].error_code), (0, 0), "OffsetDelete");
    for v in 0..=2i16 {
        let group = format!("g{}", 3 + v);
        let r: DeleteGroupsResponse = call(
            &mut c,
            ApiKey::DeleteGroups,
            v,
            &DeleteGroupsRequest::default().with_groups_names(vec![gid(&group), gid("nobody")]),
        )
        .unwrap();
        assert_eq!(r.results[0].error_code, 0, "DeleteGroups v{v}");
        assert_eq!(r.results[1].error_code, 69, "GROUP_ID_NOT_FOUND");
    }
    let r: OffsetFetchResponse = call(
        &mut c,
        ApiKey::OffsetFetch,
        7,
        &OffsetFetchRequest::default().with_group_id(gid("g3")).with_topics(None),
    )
    .unwrap();
    assert!(r.topics.is_empty(), "a deleted group has no offsets");
}

#[test]
fn static_members_are_fenced_and_a_busy_group_cannot_be_deleted() {
    let t = TestBroker::start("group-fencing", &["--group-initial-rebalance-delay-ms", "0"]).unwrap();
    let mut c = connect(&t.broker.bootstrap());
    let first = join(&mut c, 9, "static", Some("host-1"));
    assert_eq!(first.error_code, 0);
    let _: SyncGroupResponse = call(
        &mut c,
        ApiKey::SyncGroup,
        5,
        &SyncGroupRequest::default()
            .with_group_id(gid("static"))
            .with_generation_id(1)
            .with_member_id(first.member_id.clone())
            .with_group_instance_id(Some(s("host-1"))),
    )
    .unwrap();
    // The same instance comes back with a new member id: the old one is fenced.
    let again = join(&mut c, 9, "static", Some("host-1"));
    assert_eq!(again.error_code, 0);
    assert_ne!(again.member_id, first.member_id);
    let hb = HeartbeatRequest::default()
        .with_group_id(gid("static"))
        .with_generation_id(again.generation_id)
        .with_member_id(first.member_id.clone())
        .with_group_instance_id(Some(s("host-1")));
    let r: HeartbeatResponse = call(&mut c, ApiKey::Heartbeat, 4, &hb).unwrap();
    assert_eq!(r.error_code, 82, "FENCED_INSTANCE_ID");
    let r: DeleteGroupsResponse = call(
        &mut c,
        ApiKey::DeleteGroups,
        2,
        &DeleteGroupsRequest::default().with_groups_names(vec![gid("static")]),
    )
    .unwrap();
    assert_eq!(r.results[0].error_code, 68, "NON_EMPTY_GROUP");
    // Bad session timeouts and empty group ids are refused.
    let mut bad = join_req("static", "", None);
    bad.session_timeout_ms = 100;
    let r: JoinGroupResponse = call(&mut c, ApiKey::JoinGroup, 9, &bad).unwrap();
    assert_eq!(r.error_code, 26, "INVALID_SESSION_TIMEOUT");
    let r: JoinGroupResponse = call(&mut c, ApiKey::JoinGroup, 9, &join_req("", "", None)).unwrap();
    assert_eq!(r.error_code, 24, "INVALID_GROUP_ID");
}
