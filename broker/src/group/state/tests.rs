use super::*;

const DELAY: Duration = Duration::from_millis(100);

fn req(member_id: &str, instance: Option<&str>) -> JoinRequest {
    JoinRequest {
        member_id: member_id.to_string(),
        instance_id: instance.map(str::to_string),
        client_id: "c".into(),
        client_host: "/127.0.0.1".into(),
        session_timeout: Duration::from_secs(10),
        rebalance_timeout: Duration::from_secs(30),
        protocol_type: "consumer".into(),
        protocols: vec![("range".into(), Bytes::from_static(b"meta"))],
        require_known_member_id: true,
    }
}

fn now_outcome<T>(p: Pending<T>) -> T {
    match p {
        Pending::Now(t) => t,
        Pending::Wait(_) => panic!("expected an immediate answer"),
    }
}

fn waiting<T>(p: Pending<T>) -> oneshot::Receiver<T> {
    match p {
        Pending::Wait(rx) => rx,
        Pending::Now(_) => panic!("expected to wait"),
    }
}

/// Joins a new dynamic member (two round trips, KIP-394); returns its id and receiver.
fn join_new(g: &mut Group, now: Instant) -> (String, oneshot::Receiver<JoinOutcome>) {
    let first = now_outcome(g.join(req("", None), now, DELAY));
    assert_eq!(first.error, Some(ResponseError::MemberIdRequired));
    let id = first.member_id;
    (id.clone(), waiting(g.join(req(&id, None), now, DELAY)))
}

#[test]
fn first_member_waits_for_the_initial_delay_then_leads() {
    let t0 = Instant::now();
    let mut g = Group::new("g");
    let (a, mut rx_a) = join_new(&mut g, t0);
    g.tick(t0 + Duration::from_millis(50), DELAY);
    assert!(rx_a.try_recv().is_err(), "still inside the initial delay");
    let (b, mut rx_b) = join_new(&mut g, t0 + Duration::from_millis(60));
    g.tick(t0 + Duration::from_millis(200), DELAY);
    let ja = rx_a.try_recv().unwrap();
    let jb = rx_b.try_recv().unwrap();
    assert_eq!((ja.generation, jb.generation), (1, 1));
    assert_eq!(ja.leader, a);
    assert_eq!(ja.members.len(), 2, "the leader sees every member");
    assert!(jb.members.is_empty());
    assert_eq!(g.state, GroupState::CompletingRebalance);

    // Follower syncs first and waits; the leader's sync completes both.
    let mut sync_b = waiting(g.sync(&b, None, 1, vec![], t0));
    let assignments = vec![(a.clone(), Bytes::from_static(b"A")), (b.clone(), Bytes::from_static(b"B"))];
    let mut sync_a = waiting(g.sync(&a, None, 1, assignments, t0));
    assert_eq!(&sync_b.try_recv().unwrap().assignment[..], b"B");
    assert_eq!(&sync_a.try_recv().unwrap().assignment[..], b"A");
    assert_eq!(g.state, GroupState::Stable);
}

#[test]
fn fencing_errors_match_kafka() {
    let t0 = Instant::now();
    let mut g = Group::new("g");
    let (a, _rx) = join_new(&mut g, t0);
    g.tick(t0 + DELAY, DELAY);
    assert_eq!(g.heartbeat(&a, None, 0, t0), Err(ResponseError::IllegalGeneration));
    assert_eq!(g.heartbeat("nobody", None, 1, t0), Err(ResponseError::UnknownMemberId));
    assert_eq!(g.heartbeat(&a, None, 1, t0), Ok(()));
    // A new member starts a rebalance: the old member's heartbeat says so.
    let (_b, _rx_b) = join_new(&mut g, t0);
    assert_eq!(g.heartbeat(&a, None, 1, t0), Err(ResponseError::RebalanceInProgress));
    let err = now_outcome(g.sync(&a, None, 1, vec![], t0)).error;
    assert_eq!(err, Some(ResponseError::RebalanceInProgress));
}

#[test]
fn static_member_restart_keeps_its_assignment_and_fences_the_old_id() {
    let t0 = Instant::now();
    let mut g = Group::new("g");
    let mut rx1 = waiting(g.join(req("", Some("i1")), t0, DELAY));
    let mut rx2 = waiting(g.join(req("", Some("i2")), t0, DELAY));
    g.tick(t0 + DELAY, DELAY);
    let j1 = rx1.try_recv().unwrap();
    let j2 = rx2.try_recv().unwrap();
    let leader = j1.leader.clone();
    let assignments = vec![
        (j1.member_id.clone(), Bytes::from_static(b"1")),
        (j2.member_id.clone(), Bytes::from_static(b"2")),
    ];
    let _ = g.sync(&leader, None, 1, assignments, t0);
    assert_eq!(g.state, GroupState::Stable);
    let follower =
        if leader == j1.member_id { (j2.member_id.clone(), "i2") } else { (j1.member_id.clone(), "i1") };

    // The follower restarts with the same instance id and no member id.
    let again = now_outcome(g.join(req("", Some(follower.1)), t0, DELAY));
    assert_eq!(again.error, None);
    assert_eq!(again.generation, 1, "no rebalance");
    assert_ne!(again.member_id, follower.0);
    assert_eq!(g.heartbeat(&follower.0, Some(follower.1), 1, t0), Err(ResponseError::FencedInstanceId));
    let s = now_outcome(g.sync(&again.member_id, Some(follower.1), 1, vec![], t0));
    assert!(!s.assignment.is_empty(), "the old assignment comes back");
}

#[test]
fn expired_and_leaving_members_trigger_a_rebalance() {
    let t0 = Instant::now();
    let mut g = Group::new("g");
    let (a, _ra) = join_new(&mut g, t0);
    let (b, _rb) = join_new(&mut g, t0);
    g.tick(t0 + DELAY, DELAY);
    let _ = g.sync(&a, None, 1, vec![], t0 + DELAY);
    assert_eq!(g.state, GroupState::Stable);
    // b leaves: a must rejoin; a's rejoin alone completes generation 2.
    g.leave(&b, None, t0 + DELAY, DELAY).unwrap();
    assert_eq!(g.state, GroupState::PreparingRebalance);
    let mut ra2 = waiting(g.join(req(&a, None), t0 + DELAY, DELAY));
    let j = ra2.try_recv().unwrap();
    assert_eq!((j.generation, j.members.len()), (2, 1));
    // a stops heartbeating: after the session timeout the group is empty.
    let _ = g.sync(&a, None, 2, vec![], t0 + DELAY);
    let expired = g.tick(t0 + DELAY + Duration::from_secs(11), DELAY);
    assert_eq!(expired, vec![a]);
    assert_eq!(g.state, GroupState::Empty);
    assert_eq!(g.leave("ghost", None, t0, DELAY), Err(ResponseError::UnknownMemberId));
}

#[test]
fn an_unloaded_group_sends_its_waiting_members_to_the_new_coordinator() {
    let t0 = Instant::now();
    let mut g = Group::new("g");
    let (a, mut rx_a) = join_new(&mut g, t0);
    let (b, mut rx_b) = join_new(&mut g, t0);
    g.tick(t0 + DELAY, DELAY);
    let leader = rx_a.try_recv().unwrap();
    assert_eq!((leader.error, leader.leader.as_str()), (None, a.as_str()));
    assert_eq!(rx_b.try_recv().unwrap().error, None);
    // The follower's sync waits for the leader's; it must not wait for a
    // coordinator that left.
    let sync_b = waiting(g.sync(&b, None, 1, vec![], t0));
    g.unload();
    assert_eq!(sync_b.blocking_recv().unwrap().error, Some(ResponseError::NotCoordinator));

    // Nor must a newcomer's join, waiting for the old members to rejoin.
    let mut g = Group::new("g");
    let (_a, rx_a) = join_new(&mut g, t0);
    g.tick(t0 + DELAY, DELAY);
    assert_eq!(rx_a.blocking_recv().unwrap().error, None);
    let (_b, join_b) = join_new(&mut g, t0);
    g.unload();
    assert_eq!(join_b.blocking_recv().unwrap().error, Some(ResponseError::NotCoordinator));
}
