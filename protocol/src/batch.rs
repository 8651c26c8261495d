//! Record batch v2 ("magic 2") views.
//!
//! On the produce path Floe checks the header and the CRC, then stores the
//! bytes as they came, compressed or not (the records inside are decoded only
//! where a topic config asks for it: see `records`). The base offset lives
//! outside the CRC-covered range, so stamping it does not touch the CRC.

use bytes::{BufMut, Bytes, BytesMut};

/// Size of the fixed v2 batch header; the records follow it.
pub const HEADER_SIZE: usize = 61;
/// Bytes before the `batchLength` field ends: baseOffset (8) + batchLength (4).
pub const LOG_OVERHEAD: usize = 12;

const MAGIC: usize = 16;
pub(crate) const CRC: usize = 17;
pub(crate) const ATTRIBUTES: usize = 21;
const LAST_OFFSET_DELTA: usize = 23;
const BASE_TIMESTAMP: usize = 27;
pub(crate) const MAX_TIMESTAMP: usize = 35;
const PRODUCER_ID: usize = 43;
const PRODUCER_EPOCH: usize = 51;
const BASE_SEQUENCE: usize = 53;
pub(crate) const RECORD_COUNT: usize = 57;

/// Why a batch was refused. Each maps to a Kafka error code in the broker.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum BatchError {
    #[error("batch of {0} bytes is shorter than the 61-byte v2 header")]
    Truncated(usize),
    #[error("batch length field says {declared} bytes but {actual} are present")]
    LengthMismatch { declared: i64, actual: usize },
    #[error("magic {0} is not supported (only record batch v2)")]
    UnsupportedMagic(i8),
    #[error("CRC32C mismatch: header {expected:#010x}, computed {actual:#010x}")]
    Crc { expected: u32, actual: u32 },
    #[error("unknown compression codec {0}")]
    UnknownCodec(u8),
    #[error("record count {count} does not match last offset delta {last_offset_delta}")]
    CountMismatch { count: i32, last_offset_delta: i32 },
    #[error("records are malformed: {0}")]
    Malformed(String),
}

/// Compression codec named in a batch's attributes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Snappy,
    Lz4,
    Zstd,
}

/// A validated record batch v2. Cheap to clone (shares the bytes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordBatch {
    bytes: Bytes,
}

impl RecordBatch {
    /// Validates one complete batch: sizes, magic, CRC32C, codec, count.
    pub fn parse(bytes: Bytes) -> Result<Self, BatchError> {
        let batch = Self::parse_header(bytes, true)?;
        let expected = batch.crc();
        let actual = crc32c::crc32c(&batch.bytes[ATTRIBUTES..]);
        if expected != actual {
            return Err(BatchError::Crc { expected, actual });
        }
        Ok(batch)
    }

    /// Like [`RecordBatch::parse`] without the CRC: for bytes Floe wrote itself and
    /// protected with its own checksum (WAL entries, stored objects), which
    /// may have been key-compacted.
    pub fn parse_unchecked_crc(bytes: Bytes) -> Result<Self, BatchError> {
        Self::parse_header(bytes, false)
    }

    fn parse_header(bytes: Bytes, strict: bool) -> Result<Self, BatchError> {
        if bytes.len() < HEADER_SIZE {
            return Err(BatchError::Truncated(bytes.len()));
        }
        let declared = i64::from(i32_at(&bytes, 8)) + LOG_OVERHEAD as i64;
        if declared != bytes.len() as i64 {
            return Err(BatchError::LengthMismatch { declared, actual: bytes.len() });
        }
        let magic = bytes[MAGIC] as i8;
        if magic != 2 {
            return Err(BatchError::UnsupportedMagic(magic));
        }
        let batch = Self { bytes };
        let codec = (batch.attributes() & 0x07) as u8;
        if codec > 4 {
            return Err(BatchError::UnknownCodec(codec));
        }
        let count = batch.record_count();
        let last_offset_delta = batch.last_offset_delta();
        // Key compaction leaves gaps inside a batch (fewer records than its
        // offset span, as Kafka's cleaner does; a client's batch has none),
        // and may keep a batch with no records at all at a log's tail.
        let mismatch = last_offset_delta < count - 1 || (strict && last_offset_delta != count - 1);
        if count < 0 || (strict && count == 0) || mismatch {
            return Err(BatchError::CountMismatch { count, last_offset_delta });
        }
        Ok(batch)
    }

    /// Splits a byte run holding zero or more whole batches back to back.
    /// A trailing partial batch is an error.
    pub fn split_all(mut bytes: Bytes) -> Result<Vec<RecordBatch>, BatchError> {
        let mut out = Vec::new();
        while !bytes.is_empty() {
            if bytes.len() < LOG_OVERHEAD {
                return Err(BatchError::Truncated(bytes.len()));
            }
            let len = i32_at(&bytes, 8);
            let total = i64::from(len) + LOG_OVERHEAD as i64;
            if len < 0 || total > bytes.len() as i64 {
                return Err(BatchError::LengthMismatch { declared: total, actual: bytes.len() });
            }
            out.push(Self::parse(bytes.split_to(total as usize))?);
        }
        Ok(out)
    }

    pub fn bytes(&self) -> &Bytes {
        &self.bytes
    }

    pub fn into_bytes(self) -> Bytes {
        self.bytes
    }

    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    pub fn base_offset(&self) -> i64 {
        i64_at(&self.bytes, 0)
    }

    pub fn last_offset_delta(&self) -> i32 {
        i32_at(&self.bytes, LAST_OFFSET_DELTA)
    }

    pub fn record_count(&self) -> i32 {
        i32_at(&self.bytes, RECORD_COUNT)
    }

    pub fn crc(&self) -> u32 {
        i32_at(&self.bytes, CRC) as u32
    }

    pub fn attributes(&self) -> i16 {
        i16::from_be_bytes([self.bytes[ATTRIBUTES], self.bytes[ATTRIBUTES + 1]])
    }

    pub fn compression(&self) -> Compression {
        match self.attributes() & 0x07 {
            1 => Compression::Gzip,
            2 => Compression::Snappy,
            3 => Compression::Lz4,
            4 => Compression::Zstd,
            _ => Compression::None,
        }
    }

    pub fn is_transactional(&self) -> bool {
        self.attributes() & 0x10 != 0
    }

    pub fn is_control(&self) -> bool {
        self.attributes() & 0x20 != 0
    }

    pub fn base_timestamp(&self) -> i64 {
        i64_at(&self.bytes, BASE_TIMESTAMP)
    }

    pub fn max_timestamp(&self) -> i64 {
        i64_at(&self.bytes, MAX_TIMESTAMP)
    }

    pub fn producer_id(&self) -> i64 {
        i64_at(&self.bytes, PRODUCER_ID)
    }

    pub fn producer_epoch(&self) -> i16 {
        i16::from_be_bytes([self.bytes[PRODUCER_EPOCH], self.bytes[PRODUCER_EPOCH + 1]])
    }

    pub fn base_sequence(&self) -> i32 {
        i32_at(&self.bytes, BASE_SEQUENCE)
    }

    /// Sequence of the last record, wrapping at `i32::MAX` as Kafka does.
    pub fn last_sequence(&self) -> i32 {
        let seq = self.base_sequence();
        if seq < 0 {
            return seq;
        }
        let last = i64::from(seq) + i64::from(self.last_offset_delta());
        (last % (i64::from(i32::MAX) + 1)) as i32
    }

    /// Offset of the batch's last record once stamped.
    pub fn last_offset(&self) -> i64 {
        self.base_offset() + i64::from(self.last_offset_delta())
    }

    /// A copy of this batch with `base_offset` written in; the CRC stays valid.
    pub fn with_base_offset(&self, base_offset: i64) -> RecordBatch {
        let mut out = BytesMut::with_capacity(self.bytes.len());
        out.put_i64(base_offset);
        out.extend_from_slice(&self.bytes[8..]);
        RecordBatch { bytes: out.freeze() }
    }
}

fn i32_at(b: &[u8], at: usize) -> i32 {
    i32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn i64_at(b: &[u8], at: usize) -> i64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    i64::from_be_bytes(a)
}

/// Builds an uncompressed v2 batch of `values` (no keys, no headers): for tests
/// and tools that need a well-formed batch without a Kafka client.
pub fn build_batch(base_offset: i64, timestamp: i64, values: &[&[u8]]) -> Bytes {
    build_idempotent_batch(base_offset, timestamp, -1, -1, -1, values)
}

/// Like [`build_batch`] with producer id, epoch and base sequence set.
pub fn build_idempotent_batch(
    base_offset: i64,
    timestamp: i64,
    producer_id: i64,
    producer_epoch: i16,
    base_sequence: i32,
    values: &[&[u8]],
) -> Bytes {
    let records: Vec<Record> =
        values.iter().map(|v| Record { key: None, value: Some(Bytes::copy_from_slice(v)) }).collect();
    encode_batch(base_offset, timestamp, producer_id, producer_epoch, base_sequence, &records)
}

/// One record's key and value (headers are neither written nor kept).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub key: Option<Bytes>,
    pub value: Option<Bytes>,
}

/// Encodes `records` as one uncompressed v2 batch, all at `timestamp`.
pub fn encode_batch(
    base_offset: i64,
    timestamp: i64,
    producer_id: i64,
    producer_epoch: i16,
    base_sequence: i32,
    records: &[Record],
) -> Bytes {
    let mut body_all = BytesMut::new();
    for (i, r) in records.iter().enumerate() {
        let mut body = BytesMut::new();
        body.put_i8(0); // record attributes
        put_varint(&mut body, 0); // timestamp delta
        put_varint(&mut body, i as i64); // offset delta
        for field in [&r.key, &r.value] {
            match field {
                Some(b) => {
                    put_varint(&mut body, b.len() as i64);
                    body.extend_from_slice(b);
                }
                None => put_varint(&mut body, -1),
            }
        }
        put_varint(&mut body, 0); // no headers
        put_varint(&mut body_all, body.len() as i64);
        body_all.extend_from_slice(&body);
    }
    let count = records.len() as i32;
    let mut b = BytesMut::with_capacity(HEADER_SIZE + body_all.len());
    b.put_i64(base_offset);
    b.put_i32((HEADER_SIZE - LOG_OVERHEAD + body_all.len()) as i32);
    b.put_i32(-1); // partition leader epoch
    b.put_i8(2);
    b.put_u32(0); // CRC, filled below
    b.put_i16(0); // attributes
    b.put_i32(count - 1);
    b.put_i64(timestamp);
    b.put_i64(timestamp);
    b.put_i64(producer_id);
    b.put_i16(producer_epoch);
    b.put_i32(base_sequence);
    b.put_i32(count);
    b.extend_from_slice(&body_all);
    let crc = crc32c::crc32c(&b[ATTRIBUTES..]);
    b[CRC..CRC + 4].copy_from_slice(&crc.to_be_bytes());
    b.freeze()
}

fn put_varint(buf: &mut BytesMut, v: i64) {
    let mut z = ((v << 1) ^ (v >> 63)) as u64;
    while z >= 0x80 {
        buf.put_u8((z as u8) | 0x80);
        z >>= 7;
    }
    buf.put_u8(z as u8);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_stamps_a_built_batch() {
        let raw = build_batch(0, 1_700_000_000_000, &[b"a", b"bc", b"def"]);
        let batch = RecordBatch::parse(raw).unwrap();
        assert_eq!(batch.record_count(), 3);
        assert_eq!(batch.last_offset_delta(), 2);
        assert_eq!(batch.compression(), Compression::None);
        let stamped = batch.with_base_offset(42);
        assert_eq!(stamped.base_offset(), 42);
        assert_eq!(stamped.last_offset(), 44);
        RecordBatch::parse(stamped.into_bytes()).expect("stamping keeps the CRC valid");
    }

    #[test]
    fn rejects_a_flipped_bit() {
        let raw = build_batch(0, 0, &[b"hello"]);
        let mut bad = BytesMut::from(&raw[..]);
        let last = bad.len() - 2;
        bad[last] ^= 1;
        assert!(matches!(RecordBatch::parse(bad.freeze()), Err(BatchError::Crc { .. })));
    }

    #[test]
    fn splits_back_to_back_batches_and_rejects_a_partial_tail() {
        let a = build_batch(0, 0, &[b"x"]);
        let b = build_batch(1, 0, &[b"y", b"z"]);
        let mut both = BytesMut::new();
        both.extend_from_slice(&a);
        both.extend_from_slice(&b);
        let all = RecordBatch::split_all(both.clone().freeze()).unwrap();
        assert_eq!(all.len(), 2);
        both.truncate(both.len() - 1);
        assert!(RecordBatch::split_all(both.freeze()).is_err());
    }

    #[test]
    fn records_round_trip_with_keys_and_nulls() {
        let recs = vec![
            Record { key: Some(Bytes::from_static(b"k1")), value: Some(Bytes::from_static(b"v1")) },
            Record { key: Some(Bytes::from_static(b"k2")), value: None },
            Record { key: None, value: Some(Bytes::from(vec![9u8; 300])) },
        ];
        let batch = RecordBatch::parse(encode_batch(0, 5, -1, -1, -1, &recs)).unwrap().with_base_offset(10);
        let back = batch.records().unwrap();
        assert_eq!(back.iter().map(|(o, _)| *o).collect::<Vec<_>>(), vec![10, 11, 12]);
        assert_eq!(back.into_iter().map(|(_, r)| r).collect::<Vec<_>>(), recs);
    }

    #[test]
    fn sequence_wraps_like_kafka() {
        let raw = build_idempotent_batch(0, 0, 7, 0, i32::MAX, &[b"a", b"b"]);
        let batch = RecordBatch::parse(raw).unwrap();
        assert_eq!(batch.last_sequence(), 0);
    }
}
