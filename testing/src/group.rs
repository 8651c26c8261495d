//! librdkafka group members on their own threads, for group tests.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};

/// What a member has seen so far.
#[derive(Debug, Default, Clone)]
pub struct MemberView {
    pub assignment: Vec<i32>,
    /// First offset received per partition.
    pub first: BTreeMap<i32, i64>,
    /// Last committed (next-to-read) offset per partition, acknowledged by the broker.
    pub committed: BTreeMap<i32, i64>,
    pub records: usize,
    pub errors: Vec<String>,
}

/// A consumer in a group, polling on its own thread until stopped.
pub struct GroupMember {
    pub view: Arc<Mutex<MemberView>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl GroupMember {
    /// Joins `group` and consumes `topic`, committing synchronously after
    /// every poll that returned records when `commit` is set.
    pub fn start(bootstrap: &str, group: &str, topic: &str, commit: bool, extra: &[(&str, &str)]) -> Self {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", bootstrap)
            .set("group.id", group)
            .set("enable.auto.commit", "false")
            .set("auto.offset.reset", "earliest")
            .set("session.timeout.ms", "10000")
            .set("heartbeat.interval.ms", "500");
        for (k, v) in extra {
            c.set(*k, *v);
        }
        let consumer: BaseConsumer = c.create().expect("consumer");
        consumer.subscribe(&[topic]).expect("subscribe");
        let view = Arc::new(Mutex::new(MemberView::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let (v, s) = (view.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(300);
            while !s.load(Ordering::Acquire) && Instant::now() < deadline {
                let polled = consumer.poll(Duration::from_millis(50));
                let assignment: Vec<i32> = consumer
                    .assignment()
                    .map(|tpl| tpl.elements().iter().map(|e| e.partition()).collect())
                    .unwrap_or_default();
                let mut view = v.lock().unwrap();
                view.assignment = assignment;
                match polled {
                    None => {}
                    Some(Err(e)) => view.errors.push(e.to_string()),
                    Some(Ok(msg)) => {
                        view.records += 1;
                        view.first.entry(msg.partition()).or_insert(msg.offset());
                        if commit {
                            let mut tpl = TopicPartitionList::new();
                            let _ = tpl.add_partition_offset(
                                msg.topic(),
                                msg.partition(),
                                Offset::Offset(msg.offset() + 1),
                            );
                            drop(view);
                            let r = consumer.commit(&tpl, CommitMode::Sync);
                            let mut view = v.lock().unwrap();
                            match r {
                                Ok(()) => {
                                    view.committed.insert(msg.partition(), msg.offset() + 1);
                                }
                                Err(e) => view.errors.push(format!("commit: {e}")),
                            }
                        }
                    }
                }
            }
            // Dropping the consumer closes it: it leaves the group.
        });
        Self { view, stop, thread: Some(thread) }
    }

    pub fn snapshot(&self) -> MemberView {
        self.view.lock().unwrap().clone()
    }

    /// Closes the consumer (LeaveGroup) and waits for its thread.
    pub fn stop(mut self) -> MemberView {
        self.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.snapshot()
    }
}

impl Drop for GroupMember {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Waits until the members' assignments are disjoint and cover `0..partitions`
/// with every member holding some; returns the time it took, or the last
/// assignments on timeout.
pub fn wait_balanced(
    members: &[&GroupMember],
    partitions: i32,
    timeout: Duration,
) -> Result<Duration, Vec<Vec<i32>>> {
    let started = Instant::now();
    loop {
        let assignments: Vec<Vec<i32>> = members.iter().map(|m| m.snapshot().assignment).collect();
        let mut all: Vec<i32> = assignments.iter().flatten().copied().collect();
        all.sort_unstable();
        let covered = all == (0..partitions).collect::<Vec<_>>();
        if covered && assignments.iter().all(|a| !a.is_empty()) {
            return Ok(started.elapsed());
        }
        if started.elapsed() > timeout {
            return Err(assignments);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Committed offsets of `group` for `topic` as a fresh client reads them
/// (partitions without a commit are left out).
pub fn committed_offsets(bootstrap: &str, group: &str, topic: &str, partitions: i32) -> BTreeMap<i32, i64> {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition(topic, p);
    }
    let got = c.committed_offsets(tpl, Duration::from_secs(20)).expect("OffsetFetch");
    got.elements()
        .iter()
        .filter_map(|e| match e.offset() {
            Offset::Offset(o) => Some((e.partition(), o)),
            _ => None,
        })
        .collect()
}
