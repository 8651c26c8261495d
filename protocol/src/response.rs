//! Response encoding: length prefix, response header, body.

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, ResponseHeader};
use kafka_protocol::protocol::Encodable;

/// Encoding failed: a response field is out of its wire range (a bug in the
/// handler that built it, never the client's input).
#[derive(Debug, thiserror::Error)]
#[error("cannot encode {api_key:?} v{version} response: {reason}")]
pub struct EncodeError {
    pub api_key: ApiKey,
    pub version: i16,
    pub reason: String,
}

/// Encodes a complete response frame for `api_key` at `version`.
pub fn encode_response<T: Encodable>(
    api_key: ApiKey,
    version: i16,
    correlation_id: i32,
    body: &T,
) -> Result<Bytes, EncodeError> {
    let fail = |e: kafka_protocol_error::Error| EncodeError { api_key, version, reason: e.to_string() };
    let header_version = api_key.response_header_version(version);
    let header = ResponseHeader::default().with_correlation_id(correlation_id);
    let size =
        header.compute_size(header_version).map_err(fail)? + body.compute_size(version).map_err(fail)?;
    let mut buf = BytesMut::with_capacity(size + 4);
    buf.put_i32(size as i32);
    header.encode(&mut buf, header_version).map_err(fail)?;
    body.encode(&mut buf, version).map_err(fail)?;
    Ok(buf.freeze())
}

/// `kafka-protocol` reports errors as `anyhow::Error`; only its `Display` is used.
mod kafka_protocol_error {
    pub type Error = anyhow::Error;
}
