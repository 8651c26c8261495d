//! Property tests over arbitrary bytes: request decoding and record-batch
//! parsing return errors, never panic, abort or hang. (cargo-fuzz needs a
//! nightly toolchain, which this project's machines cannot fetch; these run on
//! stable in every test run.)

use bytes::{Bytes, BytesMut};
use floe_protocol::batch::build_batch;
use floe_protocol::kafka_protocol::messages::*;
use floe_protocol::{RecordBatch, RequestFrame, SUPPORTED_APIS};
use proptest::prelude::*;

// The broker's allocator: hostile array lengths must not abort.
#[global_allocator]
static ALLOC: floe_protocol::alloc::GuardedAlloc = floe_protocol::alloc::GuardedAlloc;

/// Decodes a frame's body as the broker would for its API.
fn decode_body(frame: &RequestFrame) -> bool {
    match frame.api_key {
        ApiKey::Produce => frame.body::<ProduceRequest>().is_ok(),
        ApiKey::Fetch => frame.body::<FetchRequest>().is_ok(),
        ApiKey::ListOffsets => frame.body::<ListOffsetsRequest>().is_ok(),
        ApiKey::Metadata => frame.body::<MetadataRequest>().is_ok(),
        ApiKey::ApiVersions => frame.body::<ApiVersionsRequest>().is_ok(),
        ApiKey::CreateTopics => frame.body::<CreateTopicsRequest>().is_ok(),
        ApiKey::DeleteTopics => frame.body::<DeleteTopicsRequest>().is_ok(),
        ApiKey::InitProducerId => frame.body::<InitProducerIdRequest>().is_ok(),
        ApiKey::DescribeConfigs => frame.body::<DescribeConfigsRequest>().is_ok(),
        ApiKey::CreatePartitions => frame.body::<CreatePartitionsRequest>().is_ok(),
        ApiKey::OffsetForLeaderEpoch => frame.body::<OffsetForLeaderEpochRequest>().is_ok(),
        _ => false,
    }
}

/// A header for a supported API and version, followed by arbitrary bytes:
/// reaches the body decoders far more often than fully random input.
fn framed() -> impl Strategy<Value = Vec<u8>> {
    (0..SUPPORTED_APIS.len(), any::<i16>(), proptest::collection::vec(any::<u8>(), 0..256)).prop_map(
        |(i, v, tail)| {
            let api = SUPPORTED_APIS[i];
            let version = api.min + (v.rem_euclid(api.max - api.min + 1));
            let mut b = Vec::new();
            b.extend_from_slice(&(api.key as i16).to_be_bytes());
            b.extend_from_slice(&version.to_be_bytes());
            b.extend_from_slice(&7i32.to_be_bytes());
            b.extend_from_slice(&(-1i16).to_be_bytes()); // null client id
            if api.key.request_header_version(version) >= 2 {
                b.push(0); // no tagged fields
            }
            b.extend_from_slice(&tail);
            b
        },
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 3000, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_frames_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        if let Ok(frame) = RequestFrame::parse(Bytes::from(bytes)) {
            let _ = decode_body(&frame);
        }
    }

    #[test]
    fn arbitrary_bodies_of_supported_apis_never_panic(bytes in framed()) {
        let frame = RequestFrame::parse(Bytes::from(bytes)).expect("header is well-formed");
        let _ = decode_body(&frame);
    }

    #[test]
    fn arbitrary_batches_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = RecordBatch::split_all(Bytes::from(bytes.clone()));
        let _ = RecordBatch::parse(Bytes::from(bytes));
    }

    #[test]
    fn any_corrupted_byte_of_a_batch_is_caught(at in 0usize..200, flip in 1u8..=255) {
        let good = build_batch(0, 1_700_000_000_000, &[b"alpha", b"beta", b"gamma"]);
        let mut bad = BytesMut::from(&good[..]);
        let at = at % bad.len();
        bad[at] ^= flip;
        // Bytes 0..8 (base offset) are outside the CRC by design; the leader
        // epoch (12..16) too. Everything else must be rejected.
        let outside_crc = at < 8 || (12..16).contains(&at);
        let parsed = RecordBatch::split_all(bad.freeze());
        if !outside_crc {
            prop_assert!(parsed.is_err(), "flip at {} accepted", at);
        }
    }
}
