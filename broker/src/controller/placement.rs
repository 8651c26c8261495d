//! Where partitions go: new streams to the least-loaded live brokers, and
//! the moves that even out a cluster (a new broker gets its share, a
//! draining one gives everything away). Pure functions of the state.

use std::collections::BTreeMap;

use floe_storage::meta::{Assignment, MetaState};
use floe_storage::StreamId;

/// Streams each eligible broker owns or is about to receive.
fn load(state: &MetaState, brokers: &[i32]) -> BTreeMap<i32, usize> {
    let mut load: BTreeMap<i32, usize> = brokers.iter().map(|b| (*b, 0)).collect();
    for s in state.streams.values() {
        if let Some(owner) = s.moving_to.or(s.owner) {
            if let Some(n) = load.get_mut(&owner) {
                *n += 1;
            }
        }
    }
    load
}

/// Assigns `streams` (new, or without a live owner) one by one to the
/// currently least-loaded of `brokers`, at the next epoch.
pub fn spread(state: &MetaState, streams: &[StreamId], brokers: &[i32]) -> Vec<Assignment> {
    let mut load = load(state, brokers);
    let mut out = Vec::with_capacity(streams.len());
    for &stream in streams {
        let Some((&broker, _)) = load.iter().min_by_key(|(b, n)| (**n, **b)) else { break };
        *load.get_mut(&broker).expect("present") += 1;
        let epoch = state.streams.get(&stream).map_or(0, |s| s.epoch) + 1;
        out.push(Assignment { stream, owner: broker, epoch, producers: None });
    }
    out
}

/// Moves (stream, destination) that bring every broker within one partition
/// of the others, at most `max` of them; streams on brokers outside
/// `brokers` (draining) all move. Streams already moving stay put.
pub fn rebalance(state: &MetaState, brokers: &[i32], max: usize) -> Vec<(StreamId, i32)> {
    if brokers.is_empty() {
        return Vec::new();
    }
    let mut load = load(state, brokers);
    let mut moves = Vec::new();
    // Owned by someone who should hold nothing (draining), or by a live
    // broker above the fair share.
    let mut by_owner: BTreeMap<i32, Vec<StreamId>> = BTreeMap::new();
    for (id, s) in state.streams.iter() {
        if s.moving_to.is_none() {
            if let Some(owner) = s.owner {
                by_owner.entry(owner).or_default().push(*id);
            }
        }
    }
    for (owner, streams) in &by_owner {
        if load.contains_key(owner) || state.live_broker(*owner).is_none() {
            continue;
        }
        for &stream in streams {
            if moves.len() >= max {
                return moves;
            }
            let (&to, _) = load.iter().min_by_key(|(b, n)| (**n, **b)).expect("non-empty");
            *load.get_mut(&to).expect("present") += 1;
            moves.push((stream, to));
        }
    }
    while moves.len() < max {
        let (&hi, &hi_n) = load.iter().max_by_key(|(b, n)| (**n, -**b)).expect("non-empty");
        let (&lo, &lo_n) = load.iter().min_by_key(|(b, n)| (**n, **b)).expect("non-empty");
        if hi_n <= lo_n + 1 {
            break;
        }
        let Some(stream) = by_owner.get_mut(&hi).and_then(|v| v.pop()) else { break };
        *load.get_mut(&hi).expect("present") -= 1;
        *load.get_mut(&lo).expect("present") += 1;
        moves.push((stream, lo));
    }
    moves
}

#[cfg(test)]
mod tests {
    use super::*;
    use floe_storage::meta::{BrokerMeta, StreamMeta};

    fn state(owners: &[i32], brokers: &[i32]) -> MetaState {
        let mut s = MetaState::default();
        for &b in brokers {
            s.brokers.insert(b, BrokerMeta { epoch: 1, ..BrokerMeta::default() });
        }
        for (i, &o) in owners.iter().enumerate() {
            s.streams.insert(i as u64, StreamMeta { owner: Some(o), epoch: 1, ..StreamMeta::default() });
        }
        s
    }

    #[test]
    fn a_new_broker_gets_its_share_and_a_drained_one_gives_all() {
        let s = state(&[1; 9], &[1, 2, 3]);
        let moves = rebalance(&s, &[1, 2, 3], 100);
        assert_eq!(moves.len(), 6);
        assert_eq!(moves.iter().filter(|(_, to)| *to == 2).count(), 3);
        let s = state(&[1, 1, 2, 2, 3, 3], &[1, 2, 3]);
        assert!(rebalance(&s, &[1, 2, 3], 100).is_empty(), "already fair");
        let moves = rebalance(&s, &[2, 3], 100);
        assert_eq!(moves.len(), 2, "broker 1 drains: {moves:?}");
        assert!(moves.iter().all(|(_, to)| *to != 1));
        assert_eq!(rebalance(&s, &[2, 3], 1).len(), 1, "batches are bounded");
    }

    #[test]
    fn new_streams_go_to_the_least_loaded() {
        let s = state(&[1, 1, 2], &[1, 2, 3]);
        let a = spread(&s, &[10, 11, 12], &[1, 2, 3]);
        let owners: Vec<i32> = a.iter().map(|a| a.owner).collect();
        assert_eq!(owners, vec![3, 2, 3]);
    }
}
