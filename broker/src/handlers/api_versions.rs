//! ApiVersions: the version table, and the answer to a version we do not know.

use floe_protocol::kafka_protocol::messages::api_versions_response::ApiVersion;
use floe_protocol::kafka_protocol::messages::{ApiKey, ApiVersionsRequest, ApiVersionsResponse};
use floe_protocol::{encode_response, RequestFrame, ResponseError, SUPPORTED_APIS};

use super::{body, respond, Reply};

fn table() -> Vec<ApiVersion> {
    SUPPORTED_APIS
        .iter()
        .map(|r| {
            ApiVersion::default().with_api_key(r.key as i16).with_min_version(r.min).with_max_version(r.max)
        })
        .collect()
}

pub fn handle(frame: &RequestFrame) -> Reply {
    let _req = body!(frame, ApiVersionsRequest);
    // No supported or finalized features: the v3 response then carries no
    // top-level tagged field, which librdkafka < 2.2 (kcat) needs.
    let resp = ApiVersionsResponse::default().with_api_keys(table());
    respond(frame, &resp)
}

/// A client asked for an ApiVersions version above ours: answer in v0 with
/// UNSUPPORTED_VERSION and our table, so it retries with one we support.
pub fn unsupported_version(version: i16, correlation_id: i32) -> Reply {
    tracing::debug!(version, "ApiVersions version not supported; sending our table in v0");
    let resp = ApiVersionsResponse::default()
        .with_error_code(ResponseError::UnsupportedVersion.code())
        .with_api_keys(table());
    match encode_response(ApiKey::ApiVersions, 0, correlation_id, &resp) {
        Ok(bytes) => Reply::Now(bytes),
        Err(error) => Reply::Close(error.to_string()),
    }
}
