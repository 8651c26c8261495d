//! The records inside a v2 batch: decompression, a view of each record, and
//! the rewrites the broker makes where a topic asks for them (key
//! compaction keeps some records, `compression.type` changes the codec,
//! `message.timestamp.type=LogAppendTime` stamps the time). A rewritten
//! batch keeps its base offset, its last offset delta and its producer
//! fields, so offsets and idempotent sequences read the same afterwards.

use bytes::{Bytes, BytesMut};
use kafka_protocol::compression::{self as codec, Compressor, Decompressor};

use crate::batch::{
    encode_batch, BatchError, Compression, Record, RecordBatch, ATTRIBUTES, CRC, HEADER_SIZE, LOG_OVERHEAD,
    MAX_TIMESTAMP, RECORD_COUNT,
};

/// Attribute bit: the batch's timestamps are the broker's append time.
const LOG_APPEND_TIME: i16 = 0x08;

/// One record of a batch, borrowed from its (decompressed) bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordView<'a> {
    pub offset: i64,
    /// The record's timestamp (the batch's append time under LogAppendTime).
    pub timestamp: i64,
    pub key: Option<&'a [u8]>,
    pub value: Option<&'a [u8]>,
}

/// What [`RecordBatch::retain`] left of a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Retained {
    /// Every record stays: the batch as it was.
    All,
    /// No record stays.
    Nothing,
    /// Some stay, in this rewritten batch.
    Some(RecordBatch),
}

fn malformed(what: impl Into<String>) -> BatchError {
    BatchError::Malformed(what.into())
}

fn varint(buf: &mut &[u8]) -> Result<i64, BatchError> {
    let mut z = 0u64;
    for shift in (0..64).step_by(7) {
        let (&b, rest) = buf.split_first().ok_or_else(|| malformed("truncated varint"))?;
        *buf = rest;
        z |= u64::from(b & 0x7F) << shift;
        if b & 0x80 == 0 {
            return Ok(((z >> 1) as i64) ^ -((z & 1) as i64));
        }
    }
    Err(malformed("varint longer than 10 bytes"))
}

/// A length-prefixed field: None for length -1.
fn field<'a>(buf: &mut &'a [u8]) -> Result<Option<&'a [u8]>, BatchError> {
    let n = varint(buf)?;
    if n < 0 {
        return Ok(None);
    }
    if n as usize > buf.len() {
        return Err(malformed("field longer than its record"));
    }
    let (v, rest) = buf.split_at(n as usize);
    *buf = rest;
    Ok(Some(v))
}

fn codec_error(e: anyhow::Error) -> BatchError {
    malformed(format!("{e:#}"))
}

fn decompress(codec: Compression, mut data: Bytes) -> Result<Bytes, BatchError> {
    let take = |b: &mut Bytes| Ok(b.clone());
    match codec {
        Compression::None => Ok(data),
        Compression::Gzip => codec::Gzip::decompress(&mut data, take).map_err(codec_error),
        Compression::Snappy => codec::Snappy::decompress(&mut data, take).map_err(codec_error),
        Compression::Lz4 => codec::Lz4::decompress(&mut data, take).map_err(codec_error),
        Compression::Zstd => codec::Zstd::decompress(&mut data, take).map_err(codec_error),
    }
}

fn compress(codec: Compression, raw: &[u8], out: &mut BytesMut) -> Result<(), BatchError> {
    let put = |tmp: &mut BytesMut| {
        tmp.extend_from_slice(raw);
        Ok(())
    };
    match codec {
        Compression::None => {
            out.extend_from_slice(raw);
            Ok(())
        }
        Compression::Gzip => codec::Gzip::compress(out, put).map_err(codec_error),
        Compression::Snappy => codec::Snappy::compress(out, put).map_err(codec_error),
        Compression::Lz4 => codec::Lz4::compress(out, put).map_err(codec_error),
        Compression::Zstd => codec::Zstd::compress(out, put).map_err(codec_error),
    }
}

fn codec_bits(c: Compression) -> i16 {
    match c {
        Compression::None => 0,
        Compression::Gzip => 1,
        Compression::Snappy => 2,
        Compression::Lz4 => 3,
        Compression::Zstd => 4,
    }
}

impl RecordBatch {
    fn log_append_time(&self) -> bool {
        self.attributes() & LOG_APPEND_TIME != 0
    }

    /// The records section, decompressed.
    fn raw_records(&self) -> Result<Bytes, BatchError> {
        decompress(self.compression(), self.bytes().slice(HEADER_SIZE..))
    }

    /// Calls `f` with each record and its raw bytes (length prefix included),
    /// in order. Fails on malformed records or a count that does not match.
    fn walk<'a>(
        &self,
        raw: &'a [u8],
        mut f: impl FnMut(RecordView<'a>, &'a [u8]) -> Result<(), BatchError>,
    ) -> Result<(), BatchError> {
        let mut buf = raw;
        let (base, base_ts) = (self.base_offset(), self.base_timestamp());
        let append_time = self.log_append_time().then(|| self.max_timestamp());
        for _ in 0..self.record_count() {
            let whole = buf;
            let len = varint(&mut buf)?;
            if len < 1 || len as usize > buf.len() {
                return Err(malformed(format!("record length {len} with {} bytes left", buf.len())));
            }
            let (mut rec, rest) = buf.split_at(len as usize);
            buf = rest;
            let raw_record = &whole[..whole.len() - buf.len()];
            rec = &rec[1..]; // record attributes (unused in v2)
            let ts_delta = varint(&mut rec)?;
            let offset_delta = varint(&mut rec)?;
            let key = field(&mut rec)?;
            let value = field(&mut rec)?;
            let view = RecordView {
                offset: base + offset_delta,
                timestamp: append_time.unwrap_or(base_ts.wrapping_add(ts_delta)),
                key,
                value,
            };
            f(view, raw_record)?;
        }
        if !buf.is_empty() {
            return Err(malformed(format!("{} bytes after the last record", buf.len())));
        }
        Ok(())
    }

    /// Calls `f` with each record, decompressing the batch if it needs to.
    pub fn for_each_record(&self, mut f: impl FnMut(&RecordView<'_>)) -> Result<(), BatchError> {
        let raw = self.raw_records()?;
        self.walk(&raw, |view, _| {
            f(&view);
            Ok(())
        })
    }

    /// The records with their offsets (keys and values copied out; headers
    /// are not kept).
    pub fn records(&self) -> Result<Vec<(i64, Record)>, BatchError> {
        let mut out = Vec::with_capacity(self.record_count().clamp(0, 4096) as usize);
        self.for_each_record(|r| {
            out.push((
                r.offset,
                Record { key: r.key.map(Bytes::copy_from_slice), value: r.value.map(Bytes::copy_from_slice) },
            ))
        })?;
        Ok(out)
    }

    /// Keeps the records `keep` says yes to, in a batch with the same base
    /// offset, offset span, producer fields and codec (offsets keep their
    /// gaps, as Kafka's log cleaner leaves them).
    pub fn retain(&self, mut keep: impl FnMut(&RecordView<'_>) -> bool) -> Result<Retained, BatchError> {
        if self.record_count() == 0 {
            return Ok(Retained::Nothing);
        }
        let raw = self.raw_records()?;
        let mut kept = BytesMut::new();
        let (mut count, mut max_ts) = (0i32, i64::MIN);
        self.walk(&raw, |view, record| {
            if keep(&view) {
                kept.extend_from_slice(record);
                count += 1;
                max_ts = max_ts.max(view.timestamp);
            }
            Ok(())
        })?;
        if count == self.record_count() {
            return Ok(Retained::All);
        }
        if count == 0 {
            return Ok(Retained::Nothing);
        }
        let max_ts = if self.log_append_time() { self.max_timestamp() } else { max_ts };
        self.rebuilt(self.compression(), &kept, count, max_ts, self.attributes()).map(Retained::Some)
    }

    /// This batch with no records left, uncompressed: what key compaction
    /// keeps of the last batch of a log it emptied, so that consumers still
    /// see its offsets pass (Kafka's cleaner keeps empty batches likewise).
    pub fn emptied(&self) -> RecordBatch {
        let attributes = self.attributes() & !0x07;
        self.rebuilt(Compression::None, &[], 0, self.max_timestamp(), attributes)
            .expect("nothing to compress")
    }

    /// The same records under another codec (for a topic's `compression.type`).
    pub fn recompressed(&self, to: Compression) -> Result<RecordBatch, BatchError> {
        if to == self.compression() {
            return Ok(self.clone());
        }
        let raw = self.raw_records()?;
        // Validate the records before they are trusted to a new CRC.
        self.walk(&raw, |_, _| Ok(()))?;
        let attributes = (self.attributes() & !0x07) | codec_bits(to);
        self.rebuilt(to, &raw, self.record_count(), self.max_timestamp(), attributes)
    }

    /// This batch with its timestamps set to `append_time` (for a topic whose
    /// `message.timestamp.type` is LogAppendTime). The records stay as they are.
    pub fn with_log_append_time(&self, append_time: i64) -> RecordBatch {
        let mut b = BytesMut::from(&self.bytes()[..]);
        let attributes = self.attributes() | LOG_APPEND_TIME;
        b[ATTRIBUTES..ATTRIBUTES + 2].copy_from_slice(&attributes.to_be_bytes());
        b[MAX_TIMESTAMP..MAX_TIMESTAMP + 8].copy_from_slice(&append_time.to_be_bytes());
        seal(b)
    }

    /// A batch with this one's header and `raw` records (uncompressed) under `to`.
    fn rebuilt(
        &self,
        to: Compression,
        raw: &[u8],
        count: i32,
        max_ts: i64,
        attributes: i16,
    ) -> Result<RecordBatch, BatchError> {
        let mut b = BytesMut::with_capacity(HEADER_SIZE + raw.len());
        b.extend_from_slice(&self.bytes()[..HEADER_SIZE]);
        compress(to, raw, &mut b)?;
        let length = (b.len() - LOG_OVERHEAD) as i32;
        b[8..12].copy_from_slice(&length.to_be_bytes());
        b[ATTRIBUTES..ATTRIBUTES + 2].copy_from_slice(&attributes.to_be_bytes());
        b[MAX_TIMESTAMP..MAX_TIMESTAMP + 8].copy_from_slice(&max_ts.to_be_bytes());
        b[RECORD_COUNT..RECORD_COUNT + 4].copy_from_slice(&count.to_be_bytes());
        Ok(seal(b))
    }
}

/// Writes the CRC of a batch whose other fields are final.
fn seal(mut b: BytesMut) -> RecordBatch {
    let crc = crc32c::crc32c(&b[ATTRIBUTES..]);
    b[CRC..CRC + 4].copy_from_slice(&crc.to_be_bytes());
    RecordBatch::parse_unchecked_crc(b.freeze()).expect("a rebuilt batch keeps a valid header")
}

/// Encodes records with keys, values and timestamp deltas into one batch
/// under `codec` (for tests that need what a client would send).
pub fn encode_compressed(
    base_offset: i64,
    timestamp: i64,
    codec: Compression,
    records: &[Record],
) -> Result<Bytes, BatchError> {
    let plain = RecordBatch::parse(encode_batch(base_offset, timestamp, -1, -1, -1, records))?;
    plain.recompressed(codec).map(RecordBatch::into_bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(k: Option<&str>, v: Option<&str>) -> Record {
        Record { key: k.map(|k| Bytes::from(k.to_string())), value: v.map(|v| Bytes::from(v.to_string())) }
    }

    fn all_codecs() -> [Compression; 5] {
        [Compression::None, Compression::Gzip, Compression::Snappy, Compression::Lz4, Compression::Zstd]
    }

    #[test]
    fn every_codec_round_trips_and_keeps_a_valid_crc() {
        let recs = vec![rec(Some("a"), Some("1")), rec(Some("b"), None), rec(None, Some("3"))];
        for c in all_codecs() {
            let bytes = encode_compressed(0, 1000, c, &recs).unwrap();
            let batch = RecordBatch::parse(bytes).expect("valid CRC");
            assert_eq!(batch.compression(), c);
            let back: Vec<Record> = batch.records().unwrap().into_iter().map(|(_, r)| r).collect();
            assert_eq!(back, recs, "{c:?}");
        }
    }

    #[test]
    fn retain_keeps_offsets_span_and_codec() {
        let recs: Vec<Record> = (0..6).map(|i| rec(Some(&format!("k{}", i % 2)), Some("v"))).collect();
        for c in all_codecs() {
            let batch = RecordBatch::parse(encode_compressed(0, 1000, c, &recs).unwrap())
                .unwrap()
                .with_base_offset(100);
            let Retained::Some(kept) = batch.retain(|r| r.offset >= 104).unwrap() else { panic!("{c:?}") };
            let kept = RecordBatch::parse(kept.into_bytes()).expect_err("gaps are not a client's batch");
            assert!(matches!(kept, BatchError::CountMismatch { .. }));
            let Retained::Some(kept) = batch.retain(|r| r.offset >= 104).unwrap() else { unreachable!() };
            assert_eq!((kept.base_offset(), kept.last_offset(), kept.record_count()), (100, 105, 2));
            assert_eq!(kept.compression(), c);
            let stored = RecordBatch::parse_unchecked_crc(kept.bytes().clone()).unwrap();
            let offsets: Vec<i64> = stored.records().unwrap().iter().map(|(o, _)| *o).collect();
            assert_eq!(offsets, vec![104, 105]);
            assert_eq!(crc32c::crc32c(&kept.bytes()[ATTRIBUTES..]), kept.crc());
            assert_eq!(batch.retain(|_| true).unwrap(), Retained::All);
            assert_eq!(batch.retain(|_| false).unwrap(), Retained::Nothing);
            let empty = RecordBatch::parse_unchecked_crc(batch.emptied().into_bytes()).unwrap();
            assert_eq!(
                (empty.record_count(), empty.last_offset(), empty.records().unwrap().len()),
                (0, 105, 0)
            );
        }
    }

    #[test]
    fn log_append_time_sets_every_records_timestamp() {
        let batch = RecordBatch::parse(encode_batch(0, 5, -1, -1, -1, &[rec(None, Some("x"))])).unwrap();
        let stamped = RecordBatch::parse(batch.with_log_append_time(77).into_bytes()).expect("CRC rewritten");
        let mut seen = Vec::new();
        stamped.for_each_record(|r| seen.push(r.timestamp)).unwrap();
        assert_eq!((seen, stamped.max_timestamp()), (vec![77], 77));
    }

    #[test]
    fn garbage_records_are_an_error_not_a_panic() {
        let good = encode_batch(0, 5, -1, -1, -1, &[rec(Some("k"), Some("v"))]);
        for cut in HEADER_SIZE..good.len() {
            let mut b = BytesMut::from(&good[..cut]);
            let len = (b.len() - LOG_OVERHEAD) as i32;
            b[8..12].copy_from_slice(&len.to_be_bytes());
            if let Ok(batch) = RecordBatch::parse_unchecked_crc(b.freeze()) {
                assert!(batch.records().is_err(), "cut at {cut}");
            }
        }
        let mut zstd = BytesMut::from(&good[..]);
        zstd[ATTRIBUTES + 1] |= 4;
        let batch = RecordBatch::parse_unchecked_crc(zstd.freeze()).unwrap();
        assert!(batch.records().is_err(), "plain bytes are not a zstd frame");
    }
}
