//! The `history` scenario: what a long history costs once compaction has
//! run, in the two figures a user pays for it.
//!
//! - *Catch-up GETs.* `history_mb` is written into one partition; once the
//!   compaction planner has nothing left to do, the broker is restarted (cold
//!   caches) and a consumer reads the partition from its start to its high
//!   watermark, while a counting proxy in front of the S3 server counts the
//!   GETs that read took.
//! - *Metadata load.* `partitions` partitions each get a history of `rounds`
//!   uploads; then the metadata is loaded as a starting broker loads it
//!   (in this process, timed), and the broker is restarted (timed to serving).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::Context;
use floe_storage::compaction::{self, CompactionConfig};
use floe_storage::meta::MetaState;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};
use serde::Serialize;

use super::produce::{self, ProduceOptions};
use crate::s3_proxy::{Delay, LatencyProxy};
use crate::{BrokerProcess, ObjectStore};

#[derive(Debug, Clone)]
pub struct HistoryOptions {
    /// The S3 server (the broker reaches it through the counting proxy).
    pub upstream: SocketAddr,
    pub bucket: String,
    /// Unique per run: the prefix of its objects.
    pub run_id: String,
    pub history_mb: u64,
    /// How fast the history is written: slowly, it is many small uploads
    /// that compaction has to merge, as a real partition's history is.
    pub history_mb_per_s: f64,
    /// The catch-up broker's `--upload-interval-ms`.
    pub upload_interval_ms: u64,
    pub partitions: i32,
    pub rounds: u32,
    /// The broker's `--compaction-interval-ms` (shorter than its default so
    /// that the run does not wait for rounds).
    pub compaction_interval_ms: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct CatchUpGets {
    pub history_bytes: u64,
    pub write_seconds: f64,
    /// From the last ack until the planner had nothing left to merge.
    pub compaction_seconds: f64,
    /// The partition's ranges once everything was committed (before most
    /// merging), and after compaction.
    pub ranges_at_commit: usize,
    pub ranges: usize,
    pub objects: usize,
    pub read_records: u64,
    pub read_seconds: f64,
    pub read_mb_per_s: f64,
    /// Every GET the proxy saw during the read (data reads, plus any lease
    /// or metadata reads that happened to fall in it).
    pub gets: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct MetadataLoad {
    pub partitions: i32,
    pub rounds: u32,
    /// Ranges ever committed: one per partition per round.
    pub ranges_committed: u64,
    pub ranges_live: usize,
    pub objects_live: usize,
    pub metadata_seq: u64,
    /// Loads of the whole metadata (newest snapshot plus the log after it).
    pub load_ms: Vec<f64>,
    pub load_ms_median: f64,
    /// The broker restarted on this bucket: from spawn to serving.
    pub restart_ms: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct HistoryReport {
    pub scenario: &'static str,
    pub catch_up: Option<CatchUpGets>,
    pub metadata: Option<MetadataLoad>,
}

pub async fn run(o: &HistoryOptions) -> anyhow::Result<HistoryReport> {
    let proxy = LatencyProxy::start("127.0.0.1:0".parse()?, o.upstream, Delay::NONE).await?;
    let mut catch_up = None;
    if o.history_mb > 0 {
        let c = catch_up_gets(o, &proxy).await.context("catch-up GETs")?;
        eprintln!("[history] catch-up: {c:?}");
        catch_up = Some(c);
    }
    let mut metadata = None;
    if o.partitions > 0 {
        let m = metadata_load(o, &proxy).await.context("metadata load")?;
        eprintln!("[history] metadata: {m:?}");
        metadata = Some(m);
    }
    Ok(HistoryReport { scenario: "history", catch_up, metadata })
}

/// A broker on `prefix` of the bucket, reaching S3 through `proxy`.
fn broker(
    o: &HistoryOptions,
    proxy: &LatencyProxy,
    prefix: &str,
    scratch: &std::path::Path,
    extra: &[&str],
) -> anyhow::Result<(BrokerProcess, ObjectStore)> {
    let store = ObjectStore { url: format!("s3://{}/{}-{prefix}", o.bucket, o.run_id) };
    let endpoint = format!("http://{}", proxy.addr);
    let interval = o.compaction_interval_ms.to_string();
    let mut args = vec!["--compaction-interval-ms", &interval];
    args.extend_from_slice(extra);
    let b = BrokerProcess::start_with_env(
        &scratch.join(prefix),
        &store,
        &args,
        &[("AWS_ENDPOINT_URL", endpoint.as_str())],
    )?;
    Ok((b, store))
}

/// Deletes everything the run left under `store`'s prefix: a GB per run
/// would otherwise pile up in the S3 server's disk.
async fn remove(store: &ObjectStore) -> anyhow::Result<()> {
    use futures::{StreamExt, TryStreamExt};
    let bucket = floe_storage::Bucket::open(&store.url, Duration::from_secs(30))?;
    let paths = bucket.store.list(Some(&bucket.prefix)).map_ok(|m| m.location).boxed();
    let deleted: Vec<_> = bucket.store.delete_stream(paths).collect().await;
    let failed = deleted.iter().filter(|r| r.is_err()).count();
    anyhow::ensure!(failed == 0, "{failed} objects of {} were not deleted", store.url);
    Ok(())
}

/// The metadata as a starting broker loads it, and how long that took.
async fn load(store: &ObjectStore) -> anyhow::Result<(MetaState, f64)> {
    let bucket = floe_storage::Bucket::open(&store.url, Duration::from_secs(30))?;
    let started = Instant::now();
    let state = floe_storage::meta::load(&bucket).await?;
    Ok((state, started.elapsed().as_secs_f64() * 1000.0))
}

/// Waits until broker 0's compaction has nothing left to plan, as the
/// broker itself would plan it (one time window: the run is short).
async fn wait_compacted(store: &ObjectStore, deadline: Instant) -> anyhow::Result<MetaState> {
    let cfg = CompactionConfig { time_window_ms: 3_600_000, ..CompactionConfig::default() };
    loop {
        let (state, _) = load(store).await?;
        // As of when every class has settled: the broker merges those too.
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_millis() as i64;
        let settled = now + cfg.settle_after_ms + 1;
        if compaction::plan_at(&state, 0, &cfg, settled).is_none() && state.garbage.is_empty() {
            return Ok(state);
        }
        anyhow::ensure!(Instant::now() < deadline, "compaction did not settle in time");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

async fn catch_up_gets(o: &HistoryOptions, proxy: &LatencyProxy) -> anyhow::Result<CatchUpGets> {
    let scratch = tempfile::Builder::new().prefix("floe-bench-history-").tempdir()?;
    let upload = o.upload_interval_ms.to_string();
    let (mut b, store) = broker(o, proxy, "catch-up", scratch.path(), &["--upload-interval-ms", &upload])?;
    let record_size = 16 << 10;
    let records = o.history_mb * 1_000_000 / record_size as u64;
    let writer = ProduceOptions {
        bootstrap: b.bootstrap(),
        topic: "history".into(),
        producers: 1,
        record_size,
        partitions: 1,
        acks: "1".into(),
        compression: "none".into(),
        rate: (o.history_mb_per_s * 1e6 / record_size as f64).max(1.0) as u64,
        duration: Duration::from_secs(3600),
        max_in_flight: 2000,
        stamp: false,
        limit_records: records,
        stop: None,
        broker_pid: b.pid(),
        client_config: vec![],
    };
    let (written, _) = produce::run(&writer).await?;
    anyhow::ensure!(written.failed == 0, "{} records failed", written.failed);
    let acked = Instant::now();
    // Everything acknowledged is committed first, then merged.
    let deadline = acked + Duration::from_secs(900);
    let ranges_at_commit = loop {
        let (state, _) = load(&store).await?;
        let stream = state.topics.get("history").and_then(|t| state.streams.get(&t.streams[0]));
        if let Some(s) = stream.filter(|s| s.end_offset >= written.acked as i64) {
            break s.ranges.len();
        }
        anyhow::ensure!(Instant::now() < deadline, "the history was not committed in time");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let state = wait_compacted(&store, deadline).await?;
    let compaction_seconds = acked.elapsed().as_secs_f64();
    let topic = state.topics.get("history").context("the history topic")?;
    let stream = &state.streams[&topic.streams[0]];
    let (ranges, end) = (stream.ranges.len(), stream.end_offset);
    let objects =
        stream.ranges.iter().map(|(k, _)| k.as_str()).collect::<std::collections::HashSet<_>>().len();
    // Cold: what the read needs is only in the object store.
    b.stop()?;
    b.restart()?;
    let before = proxy.counts.snapshot();
    let started = Instant::now();
    let read_records = read_to(&b.bootstrap(), "history", end)?;
    let read_seconds = started.elapsed().as_secs_f64();
    let gets = proxy.counts.snapshot().since(&before).get;
    b.stop()?;
    remove(&store).await?;
    let bytes = read_records * record_size as u64;
    Ok(CatchUpGets {
        history_bytes: written.acked * record_size as u64,
        write_seconds: written.seconds,
        compaction_seconds,
        ranges_at_commit,
        ranges,
        objects,
        read_records,
        read_seconds,
        read_mb_per_s: bytes as f64 / 1e6 / read_seconds.max(1e-3),
        gets,
    })
}

/// Reads partition 0 of `topic` from its start until the consumer's position
/// reaches `end`; the records read.
fn read_to(bootstrap: &str, topic: &str, end: i64) -> anyhow::Result<u64> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "history-reader")
        .set("enable.auto.commit", "false")
        .set("fetch.max.bytes", "67108864")
        .set("max.partition.fetch.bytes", "67108864")
        .create()?;
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, Offset::Beginning)?;
    consumer.assign(&tpl)?;
    let deadline = Instant::now() + Duration::from_secs(600);
    let (mut read, mut next) = (0u64, 0i64);
    while next < end {
        anyhow::ensure!(Instant::now() < deadline, "the read stopped at {next} of {end}");
        if let Some(msg) = consumer.poll(Duration::from_millis(200)) {
            let msg = msg?;
            read += 1;
            next = rdkafka::message::Message::offset(&msg) + 1;
        }
    }
    Ok(read)
}

async fn metadata_load(o: &HistoryOptions, proxy: &LatencyProxy) -> anyhow::Result<MetadataLoad> {
    let scratch = tempfile::Builder::new().prefix("floe-bench-history-").tempdir()?;
    let (mut b, store) = broker(o, proxy, "metadata", scratch.path(), &[])?;
    let per_topic = 1000.min(o.partitions.max(1));
    let topics: Vec<(String, i32)> = (0..(o.partitions + per_topic - 1) / per_topic)
        .map(|i| (format!("history-{i}"), per_topic.min(o.partitions - i * per_topic)))
        .collect();
    let admin: AdminClient<DefaultClientContext> =
        ClientConfig::new().set("bootstrap.servers", b.bootstrap()).create()?;
    let new: Vec<NewTopic> =
        topics.iter().map(|(t, n)| NewTopic::new(t, *n, TopicReplication::Fixed(1))).collect();
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(60)));
    for r in admin.create_topics(&new, &opts).await? {
        r.map_err(|(t, e)| anyhow::anyhow!("creating {t}: {e}"))?;
    }
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", b.bootstrap())
        .set("linger.ms", "20")
        .set("queue.buffering.max.messages", "1000000")
        .create()?;
    for round in 0..o.rounds {
        let mut pending = Vec::with_capacity(o.partitions as usize);
        for (t, n) in &topics {
            for p in 0..*n {
                let r = FutureRecord::<str, str>::to(t).partition(p).key("k").payload("history");
                pending.push(producer.send_result(r).map_err(|(e, _)| e)?);
            }
        }
        for d in pending {
            d.await?.map_err(|(e, _)| e)?;
        }
        // A round is one upload's worth of ranges: wait for its commit.
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let (state, _) = load(&store).await?;
            let committed = topics
                .iter()
                .filter_map(|(t, _)| state.topics.get(t))
                .flat_map(|t| &t.streams)
                .all(|s| state.streams.get(s).is_some_and(|s| s.end_offset > i64::from(round)));
            if committed {
                break;
            }
            anyhow::ensure!(Instant::now() < deadline, "round {round} was not committed");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        eprintln!("[history] round {} of {} committed", round + 1, o.rounds);
    }
    let state = wait_compacted(&store, Instant::now() + Duration::from_secs(900)).await?;
    let mut load_ms = Vec::new();
    for _ in 0..5 {
        load_ms.push(load(&store).await?.1);
    }
    let mut sorted = load_ms.clone();
    sorted.sort_by(f64::total_cmp);
    b.stop()?;
    let started = Instant::now();
    b.restart()?;
    let restart_ms = started.elapsed().as_secs_f64() * 1000.0;
    b.stop()?;
    let kept = std::env::temp_dir().join("floe-bench-history-broker.log");
    std::fs::copy(&b.log, &kept)?;
    eprintln!("[history] the metadata broker's log is in {}", kept.display());
    remove(&store).await?;
    let ranges_live = state.streams.values().map(|s| s.ranges.len()).sum();
    Ok(MetadataLoad {
        partitions: o.partitions,
        rounds: o.rounds,
        ranges_committed: u64::from(o.rounds) * o.partitions as u64,
        ranges_live,
        objects_live: state.objects.len(),
        metadata_seq: state.seq,
        load_ms_median: sorted[sorted.len() / 2],
        load_ms,
        restart_ms,
    })
}

pub fn render(r: &HistoryReport) -> String {
    let mut rows: Vec<(&str, String)> = Vec::new();
    if let Some(c) = &r.catch_up {
        let gb = (c.history_bytes as f64 / 1e9).max(1e-9);
        rows.push(("catch-up history", format!("{:.0} MB in one partition", c.history_bytes as f64 / 1e6)));
        rows.push((
            "after compaction",
            format!(
                "{} ranges in {} objects, from {} at commit ({:.0} s after the last ack)",
                c.ranges, c.objects, c.ranges_at_commit, c.compaction_seconds
            ),
        ));
        rows.push((
            "cold read",
            format!("{} records in {:.2} s ({:.0} MB/s)", c.read_records, c.read_seconds, c.read_mb_per_s),
        ));
        rows.push(("GETs for the read", format!("{} ({:.1} per GB)", c.gets, c.gets as f64 / gb)));
    }
    if let Some(m) = &r.metadata {
        rows.push((
            "metadata history",
            format!(
                "{} partitions x {} uploads = {} ranges committed",
                m.partitions, m.rounds, m.ranges_committed
            ),
        ));
        rows.push((
            "metadata now",
            format!("{} ranges, {} objects, seq {}", m.ranges_live, m.objects_live, m.metadata_seq),
        ));
        let loads: Vec<u64> = m.load_ms.iter().map(|v| v.round() as u64).collect();
        rows.push(("metadata load", format!("median {:.0} ms of {loads:?}", m.load_ms_median)));
        rows.push(("broker restart", format!("{:.0} ms to serving", m.restart_ms)));
    }
    rows.iter().map(|(k, v)| format!("{k:<22} {v}\n")).collect()
}
