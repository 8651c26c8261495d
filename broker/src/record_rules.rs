//! What a topic's configs ask of each produced batch, checked (and where
//! asked, rewritten) before it is appended, as Kafka's log validator does:
//! keys on compacted topics, timestamp bounds, LogAppendTime, and the
//! topic's codec. A topic with default configs costs nothing here: the
//! records are decoded only when a rule needs them.

use std::collections::BTreeMap;

use floe_protocol::batch::Compression;
use floe_protocol::{RecordBatch, ResponseError};

/// The produce-time rules of one topic, read from its configs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rules {
    compacted: bool,
    log_append_time: bool,
    before_max_ms: i64,
    after_max_ms: i64,
    /// None: keep the producer's codec.
    codec: Option<Compression>,
}

impl Rules {
    pub fn of(configs: &BTreeMap<String, String>) -> Self {
        let get = |k: &str| configs.get(k).map(|v| v.trim());
        let ms = |k: &str| get(k).and_then(|v| v.parse::<i64>().ok()).unwrap_or(i64::MAX);
        let codec = match get("compression.type") {
            Some("uncompressed") => Some(Compression::None),
            Some("gzip") => Some(Compression::Gzip),
            Some("snappy") => Some(Compression::Snappy),
            Some("lz4") => Some(Compression::Lz4),
            Some("zstd") => Some(Compression::Zstd),
            _ => None,
        };
        Self {
            compacted: get("cleanup.policy").is_some_and(|p| p.split(',').any(|p| p.trim() == "compact")),
            log_append_time: get("message.timestamp.type") == Some("LogAppendTime"),
            before_max_ms: ms("message.timestamp.before.max.ms"),
            after_max_ms: ms("message.timestamp.after.max.ms"),
            codec,
        }
    }

    /// The batch to append (the same one unless a rule rewrites it) and its
    /// log append time (-1 under CreateTime), or the error to answer with.
    pub fn apply(
        &self,
        batch: &RecordBatch,
        now_ms: i64,
        partition: impl Fn() -> String,
    ) -> Result<(RecordBatch, i64), (ResponseError, String)> {
        let check_times =
            !self.log_append_time && (self.before_max_ms < i64::MAX || self.after_max_ms < i64::MAX);
        if self.compacted || check_times {
            let (mut keyless, mut bad_time) = (false, None);
            batch
                .for_each_record(|r| {
                    keyless |= r.key.is_none();
                    let early = now_ms.saturating_sub(r.timestamp) > self.before_max_ms;
                    let late = r.timestamp.saturating_sub(now_ms) > self.after_max_ms;
                    if check_times && bad_time.is_none() && (early || late) {
                        bad_time = Some(r.timestamp);
                    }
                })
                .map_err(|e| (ResponseError::CorruptMessage, e.to_string()))?;
            if self.compacted && keyless {
                return Err((
                    ResponseError::InvalidRecord,
                    format!(
                        "Compacted topic cannot accept message without key in topic partition {}.",
                        partition()
                    ),
                ));
            }
            if let Some(ts) = bad_time {
                return Err((
                    ResponseError::InvalidTimestamp,
                    format!(
                        "Timestamp {ts} of a record in {} is out of range: it may be at most {} ms \
                         before and {} ms after the broker's time {now_ms}",
                        partition(),
                        self.before_max_ms,
                        self.after_max_ms
                    ),
                ));
            }
        }
        let mut out = batch.clone();
        if let Some(codec) = self.codec.filter(|c| *c != batch.compression()) {
            out = out.recompressed(codec).map_err(|e| (ResponseError::CorruptMessage, e.to_string()))?;
        }
        if self.log_append_time {
            return Ok((out.with_log_append_time(now_ms), now_ms));
        }
        Ok((out, -1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use floe_protocol::batch::{encode_batch, Record};

    fn rules(pairs: &[(&str, &str)]) -> Rules {
        Rules::of(&pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect())
    }

    fn batch(key: Option<&'static str>, ts: i64) -> RecordBatch {
        let r = Record {
            key: key.map(|k| Bytes::from_static(k.as_bytes())),
            value: Some(Bytes::from_static(b"v")),
        };
        RecordBatch::parse(encode_batch(0, ts, -1, -1, -1, &[r])).unwrap()
    }

    #[test]
    fn defaults_pass_the_batch_through_untouched() {
        let b = batch(None, 5);
        assert_eq!(rules(&[]).apply(&b, 1 << 40, || "t-0".into()).unwrap(), (b, -1));
    }

    #[test]
    fn a_compacted_topic_refuses_records_without_a_key() {
        let r = rules(&[("cleanup.policy", "compact,delete")]);
        let (code, msg) = r.apply(&batch(None, 5), 5, || "t-0".into()).unwrap_err();
        assert_eq!(code, ResponseError::InvalidRecord);
        assert!(msg.contains("without key"), "{msg}");
        assert!(r.apply(&batch(Some("k"), 5), 5, || "t-0".into()).is_ok());
    }

    #[test]
    fn timestamps_outside_the_bounds_are_refused() {
        let r =
            rules(&[("message.timestamp.before.max.ms", "1000"), ("message.timestamp.after.max.ms", "10")]);
        assert!(r.apply(&batch(None, 9_500), 10_000, || "t-0".into()).is_ok());
        assert_eq!(
            r.apply(&batch(None, 8_000), 10_000, || "t-0".into()).unwrap_err().0,
            ResponseError::InvalidTimestamp
        );
        assert_eq!(
            r.apply(&batch(None, 10_011), 10_000, || "t-0".into()).unwrap_err().0,
            ResponseError::InvalidTimestamp
        );
    }

    #[test]
    fn log_append_time_and_the_topic_codec_rewrite_the_batch() {
        let r = rules(&[("message.timestamp.type", "LogAppendTime"), ("compression.type", "zstd")]);
        let (out, at) = r.apply(&batch(Some("k"), 5), 777, || "t-0".into()).unwrap();
        let out = RecordBatch::parse(out.into_bytes()).expect("a valid CRC");
        assert_eq!((at, out.max_timestamp(), out.compression()), (777, 777, Compression::Zstd));
        assert_eq!(out.records().unwrap()[0].1.key.as_deref(), Some(&b"k"[..]));
    }
}
