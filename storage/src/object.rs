//! Stream-set objects: one object holds many streams' batches.
//!
//! Layout: data (each stream's batches back to back, streams in id order),
//! then an index of its [`ObjectRange`]s, then a 16-byte footer:
//! `index_len u32 | index_crc32c u32 | version u32 | magic u32` (little-endian).
//! The metadata log records the same ranges, so readers never need the index;
//! it makes every object self-describing for repair and inspection.
//!
//! Version 2's index is varints (count, then per range: stream, epoch,
//! start offset, offset span, length, max timestamp; positions follow from
//! the lengths, ranges being back to back). Version 1 was JSON, about 150
//! bytes a range: an upload of small pieces of many partitions was then
//! more index than data. Both are read.

use bytes::{BufMut, Bytes, BytesMut};
use serde::{Deserialize, Serialize};

use crate::error::{Result, StorageError};
use crate::StreamId;

const MAGIC: u32 = 0x4F4C_4546; // "FELO"
const VERSION: u32 = 2;
const FOOTER: usize = 16;

/// Where one stream's offsets `[start_offset, end_offset)` sit inside an object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectRange {
    pub stream: StreamId,
    /// The stream's partition epoch when the data was written.
    pub epoch: u32,
    pub start_offset: i64,
    pub end_offset: i64,
    pub position: u64,
    pub length: u64,
    /// Largest record timestamp in the range (for ListOffsets by time).
    pub max_timestamp: i64,
}

/// Builds one stream-set object from streams' batch runs.
#[derive(Default)]
pub struct ObjectBuilder {
    data: BytesMut,
    ranges: Vec<ObjectRange>,
}

impl ObjectBuilder {
    /// Adds `stream`'s batches covering `[start_offset, end_offset)` and
    /// returns where they went. Ranges go in stream order, then offset order
    /// (a compaction writes several ranges of one stream).
    pub fn add_stream(
        &mut self,
        stream: StreamId,
        epoch: u32,
        start_offset: i64,
        end_offset: i64,
        max_timestamp: i64,
        batches: &[Bytes],
    ) -> ObjectRange {
        debug_assert!(self
            .ranges
            .last()
            .is_none_or(|r| r.stream < stream || (r.stream == stream && r.end_offset <= start_offset)));
        let position = self.data.len() as u64;
        for b in batches {
            self.data.extend_from_slice(b);
        }
        self.ranges.push(ObjectRange {
            stream,
            epoch,
            start_offset,
            end_offset,
            position,
            length: self.data.len() as u64 - position,
            max_timestamp,
        });
        self.ranges.last().expect("just pushed").clone()
    }

    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }

    /// The object's bytes and its ranges.
    pub fn finish(mut self) -> (Bytes, Vec<ObjectRange>) {
        let index = encode_index(&self.ranges);
        self.data.extend_from_slice(&index);
        self.data.put_u32_le(index.len() as u32);
        self.data.put_u32_le(crc32c::crc32c(&index));
        self.data.put_u32_le(VERSION);
        self.data.put_u32_le(MAGIC);
        (self.data.freeze(), self.ranges)
    }
}

/// Reads the index of a whole object (for inspection and repair tools).
pub fn read_index(key: &str, object: &[u8]) -> Result<Vec<ObjectRange>> {
    let corrupt = |reason: &str| StorageError::CorruptObject { key: key.into(), reason: reason.into() };
    if object.len() < FOOTER {
        return Err(corrupt("shorter than its footer"));
    }
    let f = &object[object.len() - FOOTER..];
    let word = |i: usize| u32::from_le_bytes(f[i..i + 4].try_into().expect("4 bytes"));
    let version = word(8);
    if word(12) != MAGIC || !(1..=VERSION).contains(&version) {
        return Err(corrupt("bad magic or version"));
    }
    let len = word(0) as usize;
    if len + FOOTER > object.len() {
        return Err(corrupt("index longer than the object"));
    }
    let index = &object[object.len() - FOOTER - len..object.len() - FOOTER];
    if crc32c::crc32c(index) != word(4) {
        return Err(corrupt("index CRC mismatch"));
    }
    if version == 1 {
        return serde_json::from_slice(index).map_err(|e| corrupt(&e.to_string()));
    }
    decode_index(index).ok_or_else(|| corrupt("malformed index"))
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn unzigzag(z: u64) -> i64 {
    ((z >> 1) as i64) ^ -((z & 1) as i64)
}

fn encode_index(ranges: &[ObjectRange]) -> Vec<u8> {
    let mut out = Vec::with_capacity(4 + ranges.len() * 20);
    put_varint(&mut out, ranges.len() as u64);
    for r in ranges {
        put_varint(&mut out, r.stream);
        put_varint(&mut out, u64::from(r.epoch));
        put_varint(&mut out, zigzag(r.start_offset));
        put_varint(&mut out, zigzag(r.end_offset - r.start_offset));
        put_varint(&mut out, r.length);
        put_varint(&mut out, zigzag(r.max_timestamp));
    }
    out
}

fn decode_index(mut buf: &[u8]) -> Option<Vec<ObjectRange>> {
    let mut next = || -> Option<u64> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let (&b, rest) = buf.split_first()?;
            buf = rest;
            v |= u64::from(b & 0x7F) << shift;
            if b & 0x80 == 0 {
                return Some(v);
            }
        }
        None
    };
    let count = next()?;
    let mut ranges = Vec::with_capacity(count.min(1 << 20) as usize);
    let mut position = 0u64;
    for _ in 0..count {
        let stream = next()?;
        let epoch = u32::try_from(next()?).ok()?;
        let start_offset = unzigzag(next()?);
        let end_offset = start_offset.checked_add(unzigzag(next()?))?;
        let length = next()?;
        let max_timestamp = unzigzag(next()?);
        ranges.push(ObjectRange { stream, epoch, start_offset, end_offset, position, length, max_timestamp });
        position = position.checked_add(length)?;
    }
    Some(ranges)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_version_1_json_index_is_still_read() {
        let ranges = vec![ObjectRange {
            stream: 9,
            epoch: 2,
            start_offset: 5,
            end_offset: 7,
            position: 0,
            length: 3,
            max_timestamp: -1,
        }];
        let index = serde_json::to_vec(&ranges).unwrap();
        let mut object = b"abc".to_vec();
        object.extend_from_slice(&index);
        for w in [index.len() as u32, crc32c::crc32c(&index), 1, MAGIC] {
            object.extend_from_slice(&w.to_le_bytes());
        }
        assert_eq!(read_index("k", &object).unwrap(), ranges);
    }

    #[test]
    fn index_round_trips_and_locates_each_stream() {
        let mut b = ObjectBuilder::default();
        b.add_stream(1, 0, 0, 2, 10, &[Bytes::from_static(b"aaaa"), Bytes::from_static(b"bb")]);
        b.add_stream(5, 3, 7, 8, 20, &[Bytes::from_static(b"ccc")]);
        let (bytes, ranges) = b.finish();
        assert_eq!(read_index("k", &bytes).unwrap(), ranges);
        let r = &ranges[1];
        assert_eq!(&bytes[r.position as usize..(r.position + r.length) as usize], b"ccc");
        assert!(bytes.len() <= 9 + FOOTER + 1 + 2 * 8, "a compact index: {} bytes", bytes.len());
        let mut broken = bytes.to_vec();
        let at = broken.len() - FOOTER - 3;
        broken[at] ^= 0x55;
        assert!(read_index("k", &broken).is_err());
    }
}
