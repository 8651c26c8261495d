//! The parts of the scenario: moves, failover, a new broker, a drain.

use super::*;

// ---------------------------------------------------------------- the parts

pub(super) async fn moves(
    env: &Env,
    o: &ClusterOptions,
    history_mb: u64,
    target_p99_ms: f64,
) -> anyhow::Result<(MoveRun, Histogram<u64>)> {
    let c = env.start(&format!("moves-{history_mb}mb"), 2)?;
    let topic = "moves";
    let records = (history_mb << 20).div_ceil(o.load.record_size.max(1) as u64).max(1);
    eprintln!("[cluster] writing a {history_mb} MB history ({records} records) to {topic}/0");
    let history = ProduceOptions {
        bootstrap: c.bootstrap(),
        topic: topic.into(),
        producers: 1,
        partitions: 1,
        acks: "all".into(),
        rate: 0,
        duration: Duration::from_secs(1800),
        limit_records: records,
        stop: None,
        broker_pid: None,
        stamp: false,
        ..o.load.clone()
    };
    let (h, _) = produce::run(&history).await?;
    ensure!(
        h.failed == 0 && h.acked == records,
        "the history was not written: {} of {records} acked",
        h.acked
    );
    let (streams, state) = topic_streams(&c.store, topic).await?;
    let stream = streams[0];
    let meta = state.streams.get(&stream).context("the stream is not in the metadata")?;
    let mut owner = meta.owner.context("the partition has no owner")?;
    let mut epoch = meta.epoch;
    // A history written at full speed is ahead of the uploads for a while;
    // the moves start once it is committed (what a move costs with a
    // backlog to upload first is a different figure: the backlog's upload).
    let t_wait = Instant::now();
    let backlog = records.saturating_sub(meta.end_offset.max(0) as u64) * o.load.record_size as u64;
    let deadline = t_wait + STEP_TIMEOUT * 5;
    while load_meta(&c.store).await?.streams.get(&stream).map_or(0, |m| m.end_offset) < records as i64 {
        ensure!(Instant::now() < deadline, "the history was not committed within {:?}", STEP_TIMEOUT * 5);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let history_upload_wait_ms = t_wait.elapsed().as_secs_f64() * 1000.0;
    eprintln!(
        "[cluster] the history is committed ({:.0} MB were waiting for upload at its end; {:.0} ms)",
        backlog as f64 / 1e6,
        history_upload_wait_ms
    );

    let probe = Probe::start(&c.bootstrap(), topic, vec![0], o.rate, &o.load)?;
    probe.wait_for_acks(0, (o.rate as usize).max(1), STEP_TIMEOUT).await.context("the load got no acks")?;
    let mut samples = Vec::new();
    let mut timeouts = 0;
    for i in 0..o.moves {
        let to = 1 - owner;
        let mut dest_log = LogTail::from_end(&c.brokers[&to].log);
        let mut owner_log = LogTail::from_end(&c.brokers[&owner].log);
        let from = probe.len();
        let t_cmd = now_micros();
        tokio::task::block_in_place(|| c.cli(&["move", topic, "0", &to.to_string()]))?;
        let t_cli = now_micros();
        let serving = wait_line(std::slice::from_mut(&mut dest_log), STEP_TIMEOUT, |l| {
            l.is("serving stream")
                && l.field("stream") == Some(stream)
                && l.field::<u32>("epoch") > Some(epoch)
        })
        .await;
        let Some((_, serving)) = serving else {
            eprintln!("[cluster] move {i}: broker {to} did not serve the partition within {STEP_TIMEOUT:?}");
            timeouts += 1;
            (owner, epoch) = after_timeout(&c, stream).await?;
            continue;
        };
        let end: i64 = serving.field("end_offset").context("serving line without end_offset")?;
        let first = probe.wait_for(from, STEP_TIMEOUT, |a| a.partition == 0 && a.offset >= end).await;
        let Some(first) = first else {
            eprintln!("[cluster] move {i}: no ack at the new leader within {STEP_TIMEOUT:?}");
            timeouts += 1;
            (owner, epoch) = after_timeout(&c, stream).await?;
            continue;
        };
        tokio::time::sleep(SETTLE).await;
        owner_log.poll()?;
        let released = owner_log.find(|l| {
            l.is("stream released") && l.field("stream") == Some(stream) && l.field("epoch") == Some(epoch)
        });
        let since = |at: u64| at.saturating_sub(t_cmd) as f64 / 1000.0;
        let (gap, latency) = probe.with(|acks| caught(acks, &[0], t_cmd, first.at_us));
        let sample = MoveSample {
            from: owner,
            to,
            window_ms: since(first.at_us),
            cli_ms: since(t_cli),
            released_at_ms: released.map(|l| since(l.at_us)),
            release_ms: released.and_then(|l| l.field::<f64>("ms")),
            serving_at_ms: since(serving.at_us),
            max_ack_gap_ms: gap,
            max_ack_latency_ms: latency,
            end_offset: end,
        };
        eprintln!(
            "[cluster] move {}/{} {owner}->{to}: {:.1} ms to the first ack at the new leader \
             (command {:.1}, released at {}, serving at {:.1}; longest ack gap {:.1} ms)",
            i + 1,
            o.moves,
            sample.window_ms,
            sample.cli_ms,
            sample.released_at_ms.map_or("?".into(), |v| format!("{v:.1}")),
            sample.serving_at_ms,
            sample.max_ack_gap_ms
        );
        samples.push(sample);
        owner = to;
        epoch = serving.field("epoch").unwrap_or(epoch + 1);
    }
    let (acks, failed) = probe.stop();
    drop(c);
    let mut hist = histogram();
    for s in &samples {
        hist.record((s.window_ms * 1000.0).max(1.0) as u64)?;
    }
    let step = |f: &dyn Fn(&MoveSample) -> Option<f64>| Stats::of(samples.iter().filter_map(f));
    let run = MoveRun {
        history_mb,
        history_records: h.acked,
        history_seconds: h.seconds,
        history_upload_lag_bytes: backlog,
        history_upload_wait_ms,
        target_p99_ms,
        window: step(&|s| Some(s.window_ms)),
        max_ack_gap: step(&|s| Some(s.max_ack_gap_ms)),
        max_ack_latency: step(&|s| Some(s.max_ack_latency_ms)),
        to_release_start: step(&|s| Some(s.released_at_ms? - s.release_ms?)),
        release_to_serving: step(&|s| Some(s.serving_at_ms - (s.released_at_ms? - s.release_ms?))),
        serving_to_first_ack: step(&|s| Some(s.window_ms - s.serving_at_ms)),
        cli: step(&|s| Some(s.cli_ms)),
        release: step(&|s| s.release_ms),
        moves: samples,
        timeouts,
        failed,
        probe_ack_latency: Latency::from_micros(&ack_histogram(&acks)),
        acks_per_second: per_second(&acks),
    };
    Ok((run, hist))
}

/// After a move that did not finish: waits for the cluster to settle and
/// reads where the partition is now.
pub(super) async fn after_timeout(c: &Cluster, stream: u64) -> anyhow::Result<(i32, u32)> {
    tokio::task::block_in_place(|| c.wait_for("the move to finish", STEP_TIMEOUT, |s| s.moving == 0))?;
    let state = load_meta(&c.store).await?;
    let meta = state.streams.get(&stream).context("the stream is gone")?;
    Ok((meta.owner.context("the partition has no owner")?, meta.epoch))
}

pub(super) async fn failover(
    env: &Env,
    o: &ClusterOptions,
    run: usize,
) -> anyhow::Result<(FailoverSample, Histogram<u64>)> {
    let mut c = env.start(&format!("failover-{run}"), 3)?;
    let topic = "failover";
    create_topic(&c.bootstrap(), topic, 3).await?;
    let (streams, state) = topic_streams(&c.store, topic).await?;
    let controller = tokio::task::block_in_place(|| c.status())?.controller;
    let (partition, stream, victim) = streams
        .iter()
        .enumerate()
        .find_map(|(p, s)| {
            let owner = state.streams.get(s)?.owner?;
            (owner != controller).then_some((p as i32, *s, owner))
        })
        .context("every partition is on the controller")?;
    let epoch = state.streams[&stream].epoch;
    let probe = Probe::start(&c.bootstrap(), topic, vec![0, 1, 2], o.rate, &o.load)?;
    probe
        .wait_for_acks(partition, (o.rate as usize / 3).max(1), STEP_TIMEOUT)
        .await
        .context("the load got no acks")?;
    let survivors: Vec<i32> = c.brokers.keys().copied().filter(|b| *b != victim).collect();
    let mut tails: Vec<LogTail> = survivors.iter().map(|b| LogTail::from_end(&c.brokers[b].log)).collect();
    let from = probe.len();
    let t_kill = now_micros();
    c.broker(victim).kill();
    eprintln!("[cluster] failover {}: SIGKILL to broker {victim}, owner of {topic}/{partition}", run + 1);
    let (which, serving) = wait_line(&mut tails, STEP_TIMEOUT, |l| {
        l.is("serving stream") && l.field("stream") == Some(stream) && l.field::<u32>("epoch") > Some(epoch)
    })
    .await
    .with_context(|| format!("no broker served {topic}/{partition} within {STEP_TIMEOUT:?}\n{}", c.logs()))?;
    let first = probe
        .wait_for(from, STEP_TIMEOUT, |a| a.partition == partition && a.at_us >= serving.at_us)
        .await
        .context("no ack from the new owner")?;
    tokio::time::sleep(SETTLE).await;
    for t in &mut tails {
        t.poll()?;
    }
    let ctl = &tails[survivors.iter().position(|b| *b == controller).context("the controller died")?];
    let line_at =
        |message: &str| ctl.find(|l| l.is(message) && l.field("broker_id") == Some(victim)).map(|l| l.at_us);
    let since = |at: u64| at.saturating_sub(t_kill) as f64 / 1000.0;
    let (_, latency) = probe.with(|acks| caught(acks, &[partition], t_kill, first.at_us));
    let (acks, failed) = probe.stop();
    drop(c);
    let sample = FailoverSample {
        victim,
        controller,
        partition,
        new_owner: survivors[which],
        failover_ms: since(first.at_us),
        fenced_ms: line_at("broker lease expired").map(since),
        recovered_ms: line_at("WAL recovered; its streams moved").map(since),
        serving_ms: since(serving.at_us),
        max_ack_latency_ms: latency,
        failed,
        acks_per_second: per_second(&acks),
    };
    eprintln!(
        "[cluster] failover {}: {:.0} ms to the first ack at broker {} (fenced at {}, recovered at {}, serving at {:.0})",
        run + 1,
        sample.failover_ms,
        sample.new_owner,
        sample.fenced_ms.map_or("?".into(), |v| format!("{v:.0}")),
        sample.recovered_ms.map_or("?".into(), |v| format!("{v:.0}")),
        sample.serving_ms
    );
    Ok((sample, ack_histogram(&acks)))
}

pub(super) async fn new_broker(
    env: &Env,
    o: &ClusterOptions,
) -> anyhow::Result<(NewBrokerReport, Histogram<u64>)> {
    let mut c = env.start("new-broker", 2)?;
    let topic = "grow";
    let partitions = 6;
    create_topic(&c.bootstrap(), topic, partitions).await?;
    let (streams, _) = topic_streams(&c.store, topic).await?;
    let probe = Probe::start(&c.bootstrap(), topic, (0..partitions).collect(), o.rate, &o.load)?;
    probe
        .wait_for_acks(partitions - 1, (o.rate as usize / partitions as usize).max(1), STEP_TIMEOUT)
        .await
        .context("the load got no acks")?;
    let from = probe.len();
    let t_start = now_micros();
    tokio::task::block_in_place(|| c.add_broker(2))?;
    let mut tail = LogTail::from_start(&c.brokers[&2].log);
    let (_, given) = wait_line(std::slice::from_mut(&mut tail), STEP_TIMEOUT, |l| {
        l.is("serving stream") && l.field::<u64>("stream").is_some_and(|s| streams.contains(&s))
    })
    .await
    .with_context(|| format!("the new broker was given nothing within {STEP_TIMEOUT:?}\n{}", c.logs()))?;
    let stream: u64 = given.field("stream").context("stream")?;
    let partition = streams.iter().position(|s| *s == stream).context("not the topic's")? as i32;
    let end: i64 = given.field("end_offset").context("serving line without end_offset")?;
    let first = probe
        .wait_for(from, STEP_TIMEOUT, |a| a.partition == partition && a.offset >= end)
        .await
        .context("no ack from the new broker")?;
    // Let the balancer finish its round before counting what it gave.
    tokio::time::sleep(SETTLE * 3).await;
    tail.poll()?;
    let ready = tail.find(|l| l.is("floe is serving Kafka")).map(|l| l.at_us).unwrap_or(t_start);
    let mut given_streams: Vec<u64> = tail
        .lines
        .iter()
        .filter(|l| l.is("serving stream"))
        .filter_map(|l| l.field::<u64>("stream"))
        .filter(|s| streams.contains(s))
        .collect();
    given_streams.sort_unstable();
    given_streams.dedup();
    let since = |at: u64| at.saturating_sub(t_start) as f64 / 1000.0;
    let (_, latency) =
        probe.with(|acks| caught(acks, &(0..partitions).collect::<Vec<_>>(), t_start, first.at_us));
    let (acks, failed) = probe.stop();
    drop(c);
    let r = NewBrokerReport {
        target_ms: NEW_BROKER_MS,
        first_ack_ms: since(first.at_us),
        ready_ms: since(ready),
        assigned_ms: since(given.at_us),
        partition,
        partitions_given: given_streams.len(),
        topic_partitions: partitions,
        max_ack_latency_ms: latency,
        failed,
        acks_per_second: per_second(&acks),
    };
    eprintln!(
        "[cluster] new broker: {:.0} ms from start to its first ack ({topic}/{partition}); serving Kafka at {:.0} ms, \
         first partition at {:.0} ms, {} of {partitions} partitions",
        r.first_ack_ms, r.ready_ms, r.assigned_ms, r.partitions_given
    );
    Ok((r, ack_histogram(&acks)))
}

pub(super) async fn drain(env: &Env, o: &ClusterOptions) -> anyhow::Result<(DrainReport, Histogram<u64>)> {
    let c = env.start(&format!("drain-{}", o.drain_partitions), 2)?;
    let topic = "drain";
    let n = o.drain_partitions;
    create_topic(&c.bootstrap(), topic, n).await?;
    let spread = tokio::task::block_in_place(|| {
        c.wait_for("the partitions spread", STEP_TIMEOUT, |s| {
            s.moving == 0 && s.unassigned == 0 && s.live_partitions().values().sum::<u32>() == n as u32
        })
    })?;
    let moved = spread.brokers.get(&1).map_or(0, |b| b.partitions);
    let probe = Probe::start(&c.bootstrap(), topic, (0..n).collect(), o.rate, &o.load)?;
    probe.wait_for_acks(n - 1, 1, STEP_TIMEOUT).await.context("the load got no acks")?;
    tokio::time::sleep(SETTLE).await;
    let mut tail = LogTail::from_end(&c.brokers[&0].log);
    let t0 = now_micros();
    tokio::task::block_in_place(|| c.cli(&["drain", "1"]))?;
    eprintln!("[cluster] drain: broker 1 gives away {moved} partitions");
    let deadline = Instant::now() + STEP_TIMEOUT * 3;
    let t_done = loop {
        // A status that fails (the controller changing hands) is asked again.
        let s = tokio::task::block_in_place(|| c.status());
        let now = now_micros();
        if s.as_ref().is_ok_and(|s| s.brokers.get(&1).is_some_and(|b| b.partitions == 0) && s.moving == 0) {
            break now;
        }
        if Instant::now() > deadline {
            bail!("broker 1 still owns partitions after {:?}: {s:?}\n{}", STEP_TIMEOUT * 3, c.logs());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    tokio::time::sleep(SETTLE).await;
    tail.poll()?;
    let served: Vec<u64> = tail.lines.iter().filter(|l| l.is("serving stream")).map(|l| l.at_us).collect();
    let since = |at: u64| at.saturating_sub(t0) as f64 / 1000.0;
    let all: Vec<i32> = (0..n).collect();
    let (_, latency) = probe.with(|acks| caught(acks, &all, t0, t_done));
    let (acks, failed) = probe.stop();
    drop(c);
    let r = DrainReport {
        target_ms: DRAIN_MS,
        partitions: n,
        moved,
        drain_ms: since(t_done),
        last_serving_ms: served.iter().max().map(|at| since(*at)),
        served: served.len(),
        max_ack_latency_ms: latency,
        failed,
        acks_per_second: per_second(&acks),
    };
    eprintln!(
        "[cluster] drain: {:.0} ms until broker 1 owned nothing (broker 0 took {}, the last at {})",
        r.drain_ms,
        r.served,
        r.last_serving_ms.map_or("?".into(), |v| format!("{v:.0} ms"))
    );
    Ok((r, ack_histogram(&acks)))
}

// ------------------------------------------------------------ the metadata

pub(super) async fn load_meta(store: &ObjectStore) -> anyhow::Result<floe_storage::MetaState> {
    let bucket = floe_storage::Bucket::open(&store.url, Duration::from_secs(10))?;
    Ok(floe_storage::meta::load(&bucket).await?)
}

/// The stream ids of `topic`'s partitions, in partition order, and the state.
pub(super) async fn topic_streams(
    store: &ObjectStore,
    topic: &str,
) -> anyhow::Result<(Vec<u64>, floe_storage::MetaState)> {
    let state = load_meta(store).await?;
    let streams =
        state.topics.get(topic).with_context(|| format!("no topic {topic} in the metadata"))?.streams.clone();
    Ok((streams, state))
}

pub(super) async fn create_topic(bootstrap: &str, name: &str, partitions: i32) -> anyhow::Result<()> {
    let admin: AdminClient<DefaultClientContext> =
        ClientConfig::new().set("bootstrap.servers", bootstrap).create()?;
    let topic = NewTopic::new(name, partitions, TopicReplication::Fixed(1));
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(60)));
    for result in admin.create_topics(&[topic], &options).await? {
        result.map_err(|(t, e)| anyhow::anyhow!("creating topic {t}: {e}"))?;
    }
    Ok(())
}
