//! Stream-set objects: one object holds many streams' batches.
//!
//! Layout: data (each stream's batches back to back, streams in id order),
//! then an index (JSON list of [`ObjectRange`]), then a 16-byte footer:
//! `index_len u32 | index_crc32c u32 | version u32 | magic u32` (little-endian).
//! The metadata log records the same ranges, so readers never need the index;
//! it makes every object self-describing for repair and inspection.

use bytes::{BufMut, Bytes, BytesMut};
use serde::{Deserialize, Serialize};

use crate::error::{Result, StorageError};
use crate::StreamId;

const MAGIC: u32 = 0x4F4C_4546; // "FELO"
const VERSION: u32 = 1;
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
        let index = serde_json::to_vec(&self.ranges).expect("ranges serialize");
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
    if word(12) != MAGIC || word(8) != VERSION {
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
    serde_json::from_slice(index).map_err(|e| corrupt(&e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_round_trips_and_locates_each_stream() {
        let mut b = ObjectBuilder::default();
        b.add_stream(1, 0, 0, 2, 10, &[Bytes::from_static(b"aaaa"), Bytes::from_static(b"bb")]);
        b.add_stream(5, 3, 7, 8, 20, &[Bytes::from_static(b"ccc")]);
        let (bytes, ranges) = b.finish();
        assert_eq!(read_index("k", &bytes).unwrap(), ranges);
        let r = &ranges[1];
        assert_eq!(&bytes[r.position as usize..(r.position + r.length) as usize], b"ccc");
        let mut broken = bytes.to_vec();
        let at = broken.len() - FOOTER - 3;
        broken[at] ^= 0x55;
        assert!(read_index("k", &broken).is_err());
    }
}
