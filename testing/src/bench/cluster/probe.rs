//! The load: a steady idempotent producer that records every ack.

use super::*;

// ------------------------------------------------------------ the load

/// One acknowledged record, as the delivery report saw it.
#[derive(Debug, Clone, Copy)]
pub(super) struct Ack {
    pub(super) at_us: u64,
    pub(super) sent_us: u64,
    pub(super) partition: i32,
    pub(super) offset: i64,
}

pub(super) struct AckContext {
    pub(super) acks: Arc<Mutex<Vec<Ack>>>,
    pub(super) failed: Arc<AtomicU64>,
}

impl ClientContext for AckContext {
    /// The load's own client log (with `-X debug=...`), with the time, so
    /// it lines up with the brokers' logs.
    fn log(&self, _level: rdkafka::config::RDKafkaLogLevel, fac: &str, message: &str) {
        eprintln!("[librdkafka {:.6}] {fac} {message}", now_micros() as f64 / 1e6);
    }
}

impl ProducerContext for AckContext {
    /// The send time, µs since the Unix epoch.
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, sent_us: usize) {
        let at_us = now_micros();
        match result {
            Ok(m) => self.acks.lock().expect("acks").push(Ack {
                at_us,
                sent_us: sent_us as u64,
                partition: m.partition(),
                offset: m.offset(),
            }),
            Err(_) => {
                self.failed.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// A steady idempotent load (acks=all) over some partitions, round robin,
/// recording every delivery report in arrival order. Delivery reports come
/// from librdkafka's own thread, so their times do not wait on the runtime.
pub(super) struct Probe {
    pub(super) acks: Arc<Mutex<Vec<Ack>>>,
    pub(super) failed: Arc<AtomicU64>,
    pub(super) stop: Arc<AtomicBool>,
    pub(super) thread: Option<std::thread::JoinHandle<()>>,
}

impl Probe {
    pub(super) fn start(
        bootstrap: &str,
        topic: &str,
        partitions: Vec<i32>,
        rate: u64,
        o: &ProduceOptions,
    ) -> anyhow::Result<Self> {
        let acks = Arc::new(Mutex::new(Vec::new()));
        let failed = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", bootstrap)
            .set("acks", "all")
            .set("enable.idempotence", "true")
            .set("compression.type", &o.compression)
            .set("linger.ms", "1")
            .set("message.timeout.ms", "300000")
            .set("queue.buffering.max.messages", "1000000");
        for (k, v) in &o.client_config {
            config.set(k, v);
        }
        if o.client_config.iter().any(|(k, _)| k == "debug") {
            config.set_log_level(rdkafka::config::RDKafkaLogLevel::Debug);
        }
        let producer: ThreadedProducer<AckContext> =
            config.create_with_context(AckContext { acks: acks.clone(), failed: failed.clone() })?;
        let (topic, size, stopping, failing) =
            (topic.to_string(), o.record_size, stop.clone(), failed.clone());
        let thread = std::thread::Builder::new().name("cluster-load".into()).spawn(move || {
            let payload = vec![b'x'; size];
            let started = Instant::now();
            let mut i = 0u64;
            while !stopping.load(Ordering::Acquire) {
                let due = started + Duration::from_secs_f64(i as f64 / rate as f64);
                let now = Instant::now();
                if due > now {
                    std::thread::sleep(due - now);
                }
                let p = partitions[(i % partitions.len() as u64) as usize];
                let record = BaseRecord::<'_, (), [u8], usize>::with_opaque_to(&topic, now_micros() as usize)
                    .partition(p)
                    .payload(&payload[..]);
                match producer.send(record) {
                    Ok(()) => i += 1,
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                        std::thread::sleep(Duration::from_millis(5));
                    }
                    Err(_) => {
                        failing.fetch_add(1, Ordering::Relaxed);
                        i += 1;
                    }
                }
            }
            let _ = producer.flush(Duration::from_secs(60));
        })?;
        Ok(Self { acks, failed, stop, thread: Some(thread) })
    }

    pub(super) fn len(&self) -> usize {
        self.acks.lock().expect("acks").len()
    }

    pub(super) fn with<R>(&self, f: impl FnOnce(&[Ack]) -> R) -> R {
        f(&self.acks.lock().expect("acks"))
    }

    /// The first ack at index `from` or later that `pred` accepts, polled
    /// until `timeout`.
    pub(super) async fn wait_for(
        &self,
        from: usize,
        timeout: Duration,
        pred: impl Fn(&Ack) -> bool,
    ) -> Option<Ack> {
        let deadline = Instant::now() + timeout;
        let mut scanned = from;
        loop {
            let found = self.with(|acks| {
                let hit = acks.iter().skip(scanned).find(|a| pred(a)).copied();
                scanned = acks.len().max(scanned);
                hit
            });
            if found.is_some() {
                return found;
            }
            if Instant::now() > deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    /// Waits until `partition` has `count` acks.
    pub(super) async fn wait_for_acks(&self, partition: i32, count: usize, timeout: Duration) -> Option<()> {
        let deadline = Instant::now() + timeout;
        while self.with(|acks| acks.iter().filter(|a| a.partition == partition).count()) < count {
            if Instant::now() > deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Some(())
    }

    /// Stops sending, waits (bounded) for what is in flight; every ack and
    /// the number of records that failed for good.
    pub(super) fn stop(mut self) -> (Vec<Ack>, u64) {
        self.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            let _ = tokio::task::block_in_place(|| t.join());
        }
        let acks = std::mem::take(&mut *self.acks.lock().expect("acks"));
        (acks, self.failed.load(Ordering::Relaxed))
    }
}

impl Drop for Probe {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
    }
}

/// Over the acks of `partitions` from `from_us` to `first_us` (the event
/// and its end): the longest stretch without an ack (counted from the last
/// ack before the event), and the longest send-to-ack latency of a record
/// acknowledged up to [`SETTLE`] after the end. Both in ms.
pub(super) fn caught(acks: &[Ack], partitions: &[i32], from_us: u64, first_us: u64) -> (f64, f64) {
    let ours = || acks.iter().filter(|a| partitions.contains(&a.partition));
    let mut last = ours().filter(|a| a.at_us < from_us).map(|a| a.at_us).next_back().unwrap_or(from_us);
    let mut gap = 0;
    for a in ours().filter(|a| a.at_us >= from_us && a.at_us <= first_us) {
        gap = gap.max(a.at_us.saturating_sub(last));
        last = a.at_us;
    }
    let until = first_us + SETTLE.as_micros() as u64;
    let latency = ours()
        .filter(|a| a.at_us >= from_us && a.at_us <= until)
        .map(|a| a.at_us.saturating_sub(a.sent_us))
        .max()
        .unwrap_or(0);
    (gap as f64 / 1000.0, latency as f64 / 1000.0)
}

/// Acks in each second since the first send.
pub(super) fn per_second(acks: &[Ack]) -> Vec<u64> {
    let Some(start) = acks.iter().map(|a| a.sent_us).min() else { return Vec::new() };
    let mut out: Vec<u64> = Vec::new();
    for a in acks {
        let s = (a.at_us.saturating_sub(start) / 1_000_000) as usize;
        if out.len() <= s {
            out.resize(s + 1, 0);
        }
        out[s] += 1;
    }
    out
}

pub(super) fn ack_histogram(acks: &[Ack]) -> Histogram<u64> {
    let mut h = histogram();
    for a in acks {
        let _ = h.record(a.at_us.saturating_sub(a.sent_us).max(1));
    }
    h
}
