//! Request decoding: the header first (api key, version, correlation id), then
//! the typed body only for APIs and versions Floe advertises.

use bytes::Bytes;
use kafka_protocol::messages::{ApiKey, RequestHeader};
use kafka_protocol::protocol::{Decodable, HeaderVersion, Message};

use crate::versions::supported_versions;

/// Why a request could not be decoded. Each variant says what the broker
/// owes the client: an error response, or a closed connection.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// Shorter than the fixed part of every request header: close.
    #[error("request of {0} bytes is too short for a header")]
    Truncated(usize),
    /// An API key Floe does not serve: close, as Kafka does.
    #[error("unknown or unsupported api key {api_key} (correlation id {correlation_id})")]
    UnknownApi { api_key: i16, correlation_id: i32 },
    /// A known API at a version outside the advertised range. For ApiVersions
    /// Kafka answers with UNSUPPORTED_VERSION and its version table; for any
    /// other API it closes the connection.
    #[error("{api_key:?} v{version} is not supported (correlation id {correlation_id})")]
    UnsupportedVersion { api_key: ApiKey, version: i16, correlation_id: i32 },
    /// Header or body bytes that do not parse: close.
    #[error("malformed {api_key:?} v{version} request: {reason}")]
    Malformed { api_key: ApiKey, version: i16, reason: String },
}

/// A request whose header is decoded and whose API and version are supported.
/// The body stays raw until the handler asks for its type.
#[derive(Debug, Clone)]
pub struct RequestFrame {
    pub header: RequestHeader,
    pub api_key: ApiKey,
    body: Bytes,
}

impl RequestFrame {
    /// Decodes the header of `frame` (the bytes after the length prefix).
    pub fn parse(mut frame: Bytes) -> Result<Self, DecodeError> {
        if frame.len() < 8 {
            return Err(DecodeError::Truncated(frame.len()));
        }
        let raw_key = i16::from_be_bytes([frame[0], frame[1]]);
        let version = i16::from_be_bytes([frame[2], frame[3]]);
        let correlation_id = i32::from_be_bytes([frame[4], frame[5], frame[6], frame[7]]);
        let api_key = ApiKey::try_from(raw_key)
            .map_err(|_| DecodeError::UnknownApi { api_key: raw_key, correlation_id })?;
        let Some(range) = supported_versions(api_key) else {
            return Err(DecodeError::UnknownApi { api_key: raw_key, correlation_id });
        };
        if version < range.min || version > range.max {
            return Err(DecodeError::UnsupportedVersion { api_key, version, correlation_id });
        }
        let header_version = api_key.request_header_version(version);
        let header = RequestHeader::decode(&mut frame, header_version)
            .map_err(|e| DecodeError::Malformed { api_key, version, reason: format!("header: {e}") })?;
        Ok(Self { header, api_key, body: frame })
    }

    pub fn version(&self) -> i16 {
        self.header.request_api_version
    }

    pub fn correlation_id(&self) -> i32 {
        self.header.correlation_id
    }

    /// Decodes the body as `T`, which must be the message of this frame's API.
    /// Trailing bytes are ignored, as Kafka ignores them (librdkafka sends a
    /// few after a Metadata v12 request for all topics).
    pub fn body<T: Decodable + Message + HeaderVersion>(&self) -> Result<T, DecodeError> {
        let version = self.version();
        let mut buf = self.body.clone();
        let decoded = T::decode(&mut buf, version).map_err(|e| DecodeError::Malformed {
            api_key: self.api_key,
            version,
            reason: e.to_string(),
        })?;
        Ok(decoded)
    }
}
