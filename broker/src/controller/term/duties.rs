//! The controller's own duties while its term lasts, on a timer: fence
//! brokers whose lease surely ran out, name recoverers for their WAL, give
//! orphaned streams to live brokers, and even the load out.

use std::sync::Arc;
use std::time::{Duration, Instant};

use floe_storage::meta::MetaRecord;
use floe_storage::StorageError;

use super::{host_of, orphans, placement, Liveness, Term, MOVES_PER_ROUND, MOVE_PATIENCE, RATE_PATIENCE};

impl Term {
    /// Background duties while the term lasts: fence brokers whose lease
    /// surely ran out, restart stalled moves, even out the load. Storage
    /// duties run in their own task: a slow bucket (a bulk DELETE or a LIST
    /// retried for minutes) must never delay fencing a dead broker.
    pub(super) async fn maintain(self: Arc<Self>) {
        tokio::spawn(self.clone().maintain_storage());
        let mut stop = self.stop.subscribe();
        let mut last_balance = Instant::now();
        while self.tick(&mut stop).await {
            if let Err(error) = self.fence_expired().await {
                tracing::warn!(%error, "fencing expired brokers failed");
            }
            if let Err(error) = self.start_recoveries().await {
                tracing::warn!(%error, "starting WAL recoveries failed");
            }
            if let Err(error) = self.assign_orphans().await {
                tracing::warn!(%error, "assigning orphaned streams failed");
            }
            if last_balance.elapsed() >= self.settings.balance_interval {
                last_balance = Instant::now();
                if let Err(error) = self.balance_once().await {
                    tracing::warn!(%error, "balancing failed");
                }
            }
        }
    }

    /// Retention, deletion of garbage and the orphan sweep, until the term
    /// ends. Not cut off when slow: an append cancelled halfway would leave
    /// the log writer's bookkeeping behind its PUT; slow only delays these.
    async fn maintain_storage(self: Arc<Self>) {
        let mut stop = self.stop.subscribe();
        let mut last_retention = Instant::now();
        // The first sweep waits a full interval: a broker that registered a
        // moment before this term may still be about to commit.
        let mut last_sweep = Instant::now();
        let mut garbage_seen = std::collections::HashMap::new();
        while self.tick(&mut stop).await {
            if last_retention.elapsed() >= self.settings.retention_check_interval {
                last_retention = Instant::now();
                if let Err(error) = self.apply_retention().await {
                    tracing::warn!(%error, "applying retention failed");
                }
            }
            if let Err(error) = self.delete_garbage(&mut garbage_seen).await {
                tracing::warn!(%error, "deleting garbage objects failed");
            }
            if last_sweep.elapsed() >= self.settings.orphan_sweep_interval {
                last_sweep = Instant::now();
                if let Err(error) = self.sweep_orphans().await {
                    tracing::warn!(%error, "sweeping the bucket for orphaned objects failed");
                }
            }
        }
    }

    /// Waits for the next round of duties; false once the term is over.
    async fn tick(&self, stop: &mut tokio::sync::watch::Receiver<bool>) -> bool {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(250)) => {}
            _ = stop.changed() => return false,
        }
        self.is_valid()
    }

    async fn fence_expired(&self) -> Result<(), StorageError> {
        let state = self.state();
        let grace = self.broker_grace();
        let expired: Vec<(i32, u64)> = {
            let mut live = self.live.lock().expect("live lock");
            let mut expired = Vec::new();
            for (id, b) in state.brokers.iter().filter(|(_, b)| !b.fenced) {
                match live.get(id) {
                    Some(l) if l.epoch == b.epoch => {
                        if l.last_seen.elapsed() > grace {
                            expired.push((*id, b.epoch));
                        }
                    }
                    // Registered a moment ago (or seen first now): it gets a
                    // full lease from here, as every broker does from a new
                    // controller.
                    _ => {
                        let l = Liveness::granted(b.epoch, b.address.instance.clone());
                        live.insert(*id, l);
                    }
                }
            }
            expired
        };
        for (broker_id, broker_epoch) in expired {
            tracing::warn!(broker_id, broker_epoch, "broker lease expired; fencing it");
            self.log.append(vec![MetaRecord::BrokerFenced { broker_id, broker_epoch }]).await?;
            self.live.lock().expect("live lock").remove(&broker_id);
        }
        Ok(())
    }

    /// Streams left without a live owner and without a WAL to wait for (all
    /// brokers stopped at once, say) go to the live brokers as they appear.
    async fn assign_orphans(&self) -> Result<(), StorageError> {
        let state = self.state();
        let eligible = self.eligible(&state);
        if eligible.is_empty() || orphans(&state).is_empty() {
            return Ok(());
        }
        self.log
            .append_with(move |s| {
                let assignments = placement::spread(s, &orphans(s), &eligible);
                Ok(if assignments.is_empty() {
                    Vec::new()
                } else {
                    vec![MetaRecord::StreamsAssigned { assignments }]
                })
            })
            .await?;
        Ok(())
    }

    /// Names a recoverer for every fenced broker that still owns streams: a
    /// live broker on the same host, which can open its WAL directory. With
    /// none, the streams wait for the broker itself to come back.
    async fn start_recoveries(&self) -> Result<(), StorageError> {
        let state = self.state();
        let eligible = self.eligible(&state);
        let mut records = Vec::new();
        for (id, b) in state.brokers.iter() {
            if !b.fenced || b.wal_recovered || state.streams_of(*id).next().is_none() {
                continue;
            }
            if b.recovery.is_some_and(|r| state.live_broker(r).is_some()) {
                continue;
            }
            let host = host_of(&b.address.instance);
            let recoverer = eligible.iter().copied().find(|y| {
                state
                    .brokers
                    .get(y)
                    .is_some_and(|yb| host_of(&yb.address.instance) == host && !host.is_empty())
            });
            match recoverer {
                Some(recoverer) => {
                    tracing::info!(broker_id = id, recoverer, "recovering a fenced broker's WAL on a peer");
                    records.push(MetaRecord::WalRecoveryStarted {
                        broker_id: *id,
                        broker_epoch: b.epoch,
                        recoverer,
                    });
                }
                None => tracing::debug!(
                    broker_id = id,
                    "no live broker can reach the fenced broker's WAL; its streams wait"
                ),
            }
        }
        if !records.is_empty() {
            self.log.append(records).await?;
        }
        Ok(())
    }

    /// Starts the moves that even the load out (and empty draining brokers),
    /// and restarts moves that stalled. Streams of fenced brokers wait for
    /// their owner to come back: its WAL holds their acknowledged tail.
    pub(super) async fn balance_once(&self) -> Result<(), StorageError> {
        let state = self.state();
        let eligible = self.eligible(&state);
        let stalled: Vec<(u64, i32)> = {
            let started = self.moves_started.lock().expect("moves lock");
            state
                .streams
                .iter()
                .filter_map(|(id, s)| {
                    let to = s.moving_to?;
                    let late = started.get(id).is_none_or(|t| t.elapsed() > MOVE_PATIENCE);
                    let dest_gone = state.live_broker(to).is_none();
                    (late || dest_gone).then_some((*id, to))
                })
                .collect()
        };
        let mut moves = placement::rebalance(&state, &eligible, MOVES_PER_ROUND);
        if moves.is_empty() {
            // Counts are even: look at traffic, leaving lately moved streams be.
            let settled = {
                let mut moved_at = self.moved_at.lock().expect("moved lock");
                moved_at.retain(|_, at| at.elapsed() < RATE_PATIENCE);
                moved_at.keys().copied().collect()
            };
            let mut rates = self.rates.lock().expect("rates lock");
            rates.retain(|s| state.streams.contains_key(&s));
            moves = placement::rebalance_by_rate(&state, &eligible, &rates, &settled);
        }
        for (stream, to) in stalled {
            let owner_live = state.streams[&stream].owner.is_some_and(|o| state.live_broker(o).is_some());
            if !owner_live {
                continue;
            }
            let to = if state.live_broker(to).is_some() {
                to
            } else {
                match placement::spread(&state, &[stream], &eligible).first() {
                    Some(a) => a.owner,
                    None => continue,
                }
            };
            self.moves_started.lock().expect("moves lock").insert(stream, Instant::now());
            moves.push((stream, to));
        }
        moves.retain(|(stream, _)| {
            state.streams[stream].owner.is_some_and(|o| state.live_broker(o).is_some())
        });
        if moves.is_empty() {
            return Ok(());
        }
        tracing::info!(moves = moves.len(), "starting partition moves");
        let state = self.log.append(vec![MetaRecord::MovesStarted { moves }]).await?;
        self.note_moves_started(&state);
        Ok(())
    }
}
