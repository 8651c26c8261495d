//! Raw Kafka protocol calls over a blocking socket, for tests that need exact
//! versions and malformed input.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader, ResponseHeader, TopicName};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, StrBytes};

pub fn connect(addr: &str) -> TcpStream {
    let s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s
}

/// Sends one request and returns the response body (after the header), or
/// None if the broker closed the connection.
pub fn call<Req: Encodable + HeaderVersion, Resp: Decodable + HeaderVersion>(
    s: &mut TcpStream,
    key: ApiKey,
    version: i16,
    body: &Req,
) -> Option<Resp> {
    let header = RequestHeader::default()
        .with_request_api_key(key as i16)
        .with_request_api_version(version)
        .with_correlation_id(42)
        .with_client_id(Some(StrBytes::from_static_str("raw-test")));
    let mut buf = BytesMut::new();
    header.encode(&mut buf, Req::header_version(version)).unwrap();
    body.encode(&mut buf, version).unwrap();
    let mut frame = BytesMut::new();
    frame.put_i32(buf.len() as i32);
    frame.extend_from_slice(&buf);
    s.write_all(&frame).ok()?;
    let mut resp = read_frame(s)?;
    let h = ResponseHeader::decode(&mut resp, Resp::header_version(version)).unwrap();
    assert_eq!(h.correlation_id, 42);
    let out = Resp::decode(&mut resp, version).unwrap_or_else(|e| panic!("{key:?} v{version}: {e}"));
    assert!(!resp.has_remaining(), "{key:?} v{version}: trailing bytes");
    Some(out)
}

pub fn read_frame(s: &mut TcpStream) -> Option<Bytes> {
    let mut len = [0u8; 4];
    s.read_exact(&mut len).ok()?;
    let mut body = vec![0u8; i32::from_be_bytes(len) as usize];
    s.read_exact(&mut body).ok()?;
    Some(Bytes::from(body))
}

pub fn closed(s: &mut TcpStream) -> bool {
    let mut b = [0u8; 1];
    matches!(s.read(&mut b), Ok(0) | Err(_))
}

pub fn topic(name: &str) -> TopicName {
    TopicName(StrBytes::from_string(name.into()))
}
