//! The API versions Floe advertises in ApiVersions. Each range is what the
//! end-to-end and protocol tests exercise; widen a range only with a test.

use kafka_protocol::messages::ApiKey;

/// One advertised API: key and inclusive version range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ApiRange {
    pub key: ApiKey,
    pub min: i16,
    pub max: i16,
}

const fn api(key: ApiKey, min: i16, max: i16) -> ApiRange {
    ApiRange { key, min, max }
}

/// Floe's supported APIs and versions.
///
/// * Produce from v3: record batch v2 only (librdkafka enables it only when
///   Produce >= 3 and Fetch >= 4 are advertised). Up to v11: v12+ belongs to
///   KIP-890 transactions, v13 to topic ids.
/// * Fetch up to v12: v13+ addresses topics by id only.
/// * ApiVersions up to v3, answered with no top-level tagged field so that
///   librdkafka < 2.2 (Debian's kcat) can parse it.
pub const SUPPORTED_APIS: &[ApiRange] = &[
    api(ApiKey::Produce, 3, 11),
    api(ApiKey::Fetch, 4, 12),
    api(ApiKey::ListOffsets, 1, 6),
    api(ApiKey::Metadata, 0, 12),
    api(ApiKey::ApiVersions, 0, 3),
    api(ApiKey::CreateTopics, 2, 7),
    api(ApiKey::DeleteTopics, 1, 6),
    api(ApiKey::InitProducerId, 0, 4),
    api(ApiKey::DescribeConfigs, 1, 4),
    api(ApiKey::AlterConfigs, 0, 2),
    api(ApiKey::IncrementalAlterConfigs, 0, 1),
    api(ApiKey::CreatePartitions, 0, 3),
    api(ApiKey::FindCoordinator, 0, 4),
    api(ApiKey::JoinGroup, 0, 9),
    api(ApiKey::SyncGroup, 0, 5),
    api(ApiKey::Heartbeat, 0, 4),
    api(ApiKey::LeaveGroup, 0, 5),
    api(ApiKey::OffsetCommit, 2, 8),
    api(ApiKey::OffsetFetch, 1, 8),
    api(ApiKey::ListGroups, 0, 4),
    api(ApiKey::DescribeGroups, 0, 5),
    api(ApiKey::DeleteGroups, 0, 2),
    api(ApiKey::OffsetDelete, 0, 0),
    api(ApiKey::OffsetForLeaderEpoch, 2, 4),
    api(ApiKey::DeleteRecords, 0, 2),
];

/// The advertised range for `key`, if Floe serves that API at all.
pub fn supported_versions(key: ApiKey) -> Option<ApiRange> {
    SUPPORTED_APIS.iter().copied().find(|r| r.key == key)
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::protocol::VersionRange;

    #[test]
    fn every_advertised_range_is_one_the_codec_can_encode() {
        for r in SUPPORTED_APIS {
            let codec: VersionRange = r.key.valid_versions();
            assert!(r.min <= r.max, "{:?}", r.key);
            assert!(codec.min <= r.min && r.max <= codec.max, "{:?} {:?}", r.key, codec);
        }
    }
}
