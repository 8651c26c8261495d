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

/// Traffic per stream: bytes in, as the controller sees commits arrive, and
/// bytes out, as brokers report what consumers fetched. Both cross the
/// owner's network interface, so the balancer weighs them alike. Each is an
/// exponentially decaying average over about `HALF_LIFE`.
#[derive(Debug, Default)]
pub struct Rates {
    inbound: std::collections::HashMap<StreamId, Decaying>,
    outbound: std::collections::HashMap<StreamId, Decaying>,
}

const HALF_LIFE: std::time::Duration = std::time::Duration::from_secs(20);

#[derive(Debug, Clone, Copy)]
struct Decaying {
    rate: f64,
    at: std::time::Instant,
}

impl Decaying {
    fn tau() -> f64 {
        HALF_LIFE.as_secs_f64() / std::f64::consts::LN_2
    }

    fn now(&self) -> f64 {
        self.rate * (-self.at.elapsed().as_secs_f64() / Self::tau()).exp()
    }

    fn add(&mut self, bytes: u64) {
        self.rate = self.now() + bytes as f64 / Self::tau();
        self.at = std::time::Instant::now();
    }
}

fn observe(map: &mut std::collections::HashMap<StreamId, Decaying>, stream: StreamId, bytes: u64) {
    map.entry(stream).or_insert(Decaying { rate: 0.0, at: std::time::Instant::now() }).add(bytes);
}

impl Rates {
    pub fn observe_in(&mut self, stream: StreamId, bytes: u64) {
        observe(&mut self.inbound, stream, bytes);
    }

    pub fn observe_out(&mut self, stream: StreamId, bytes: u64) {
        observe(&mut self.outbound, stream, bytes);
    }

    /// Bytes per second into `stream` lately.
    pub fn in_of(&self, stream: StreamId) -> f64 {
        self.inbound.get(&stream).map_or(0.0, Decaying::now)
    }

    /// Bytes per second fetched from `stream` lately.
    pub fn out_of(&self, stream: StreamId) -> f64 {
        self.outbound.get(&stream).map_or(0.0, Decaying::now)
    }

    /// Bytes per second through the owner of `stream` for it.
    pub fn of(&self, stream: StreamId) -> f64 {
        self.in_of(stream) + self.out_of(stream)
    }

    /// Forgets deleted streams.
    pub fn retain(&mut self, keep: impl Fn(StreamId) -> bool) {
        self.inbound.retain(|s, _| keep(*s));
        self.outbound.retain(|s, _| keep(*s));
    }
}

/// Once partition counts are even, evens out traffic: when the busiest
/// broker takes more than `1 + SKEW` times the mean, swap one of its streams
/// with one of the idlest broker's (counts stay even), choosing the pair that
/// narrows the gap most. Streams in `settled` (moved lately) stay put.
pub fn rebalance_by_rate(
    state: &MetaState,
    brokers: &[i32],
    rates: &Rates,
    settled: &std::collections::HashSet<StreamId>,
) -> Vec<(StreamId, i32)> {
    const SKEW: f64 = 0.25;
    /// Below this, differences are noise (and moving costs more than it saves).
    const MIN_BYTES_PER_SEC: f64 = 64.0 * 1024.0;
    if brokers.len() < 2 {
        return Vec::new();
    }
    let mut per: BTreeMap<i32, Vec<(StreamId, f64)>> = brokers.iter().map(|b| (*b, Vec::new())).collect();
    for (id, s) in state.streams.iter() {
        if let (Some(owner), None) = (s.owner, s.moving_to) {
            if let Some(v) = per.get_mut(&owner) {
                v.push((*id, rates.of(*id)));
            }
        }
    }
    let load = |b: &i32| per[b].iter().map(|(_, r)| r).sum::<f64>();
    let mean = brokers.iter().map(load).sum::<f64>() / brokers.len() as f64;
    let hot = *brokers.iter().max_by(|a, b| load(a).total_cmp(&load(b))).expect("non-empty");
    let cold = *brokers.iter().min_by(|a, b| load(a).total_cmp(&load(b))).expect("non-empty");
    let gap = load(&hot) - load(&cold);
    if load(&hot) <= mean * (1.0 + SKEW) || gap < MIN_BYTES_PER_SEC {
        return Vec::new();
    }
    // Swapping x (hot) with y (cold) moves x - y; the best lands near gap / 2.
    let mut best: Option<(f64, StreamId, StreamId)> = None;
    for &(x, rx) in per[&hot].iter().filter(|(id, _)| !settled.contains(id)) {
        for &(y, ry) in per[&cold].iter().filter(|(id, _)| !settled.contains(id)) {
            let shift = rx - ry;
            if shift <= 0.0 || shift >= gap {
                continue;
            }
            let miss = (gap / 2.0 - shift).abs();
            if best.is_none_or(|(m, _, _)| miss < m) {
                best = Some((miss, x, y));
            }
        }
    }
    best.map_or_else(Vec::new, |(_, x, y)| vec![(x, cold), (y, hot)])
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
    fn traffic_is_evened_out_by_a_swap_that_keeps_counts() {
        let s = state(&[1, 1, 2, 2], &[1, 2]);
        let mut rates = Rates::default();
        // Broker 1 takes nearly all bytes: in on stream 0, out on stream 1.
        rates.observe_in(0, 80 << 20);
        rates.observe_out(1, 50 << 20);
        rates.observe_in(2, 1 << 10);
        rates.observe_out(3, 2 << 10);
        let moves = rebalance_by_rate(&s, &[1, 2], &rates, &Default::default());
        assert_eq!(moves.len(), 2, "{moves:?}");
        let out = moves.iter().find(|(_, to)| *to == 2).expect("a busy stream leaves broker 1");
        let back =
            moves.iter().find(|(_, to)| *to == 1).expect("an idle one comes back, so counts stay even");
        assert!([0, 1].contains(&out.0) && [2, 3].contains(&back.0), "{moves:?}");
        let settled = [0u64, 1].into_iter().collect();
        assert!(rebalance_by_rate(&s, &[1, 2], &rates, &settled).is_empty(), "recently moved streams stay");
        let even = Rates::default();
        assert!(rebalance_by_rate(&s, &[1, 2], &even, &Default::default()).is_empty());
    }

    #[test]
    fn new_streams_go_to_the_least_loaded() {
        let s = state(&[1, 1, 2], &[1, 2, 3]);
        let a = spread(&s, &[10, 11, 12], &[1, 2, 3]);
        let owners: Vec<i32> = a.iter().map(|a| a.owner).collect();
        assert_eq!(owners, vec![3, 2, 3]);
    }
}
