//! Topic configs: the keys Kafka clients set, their defaults, validation,
//! and what Floe does with each (enforced, not applicable, or only its
//! default accepted). Unknown keys and bad values are
//! refused with INVALID_CONFIG, as Kafka does.

use std::collections::BTreeMap;

/// How a config value is checked (and its DescribeConfigs type).
#[derive(Debug, Clone, Copy)]
pub enum Kind {
    Bool,
    Int { min: i64 },
    Long { min: i64 },
    Ratio,
    OneOf(&'static [&'static str]),
    ListOf(&'static [&'static str]),
}

impl Kind {
    /// DescribeConfigs v3+ `config_type`.
    pub fn wire_type(self) -> i8 {
        match self {
            Kind::Bool => 1,
            Kind::OneOf(_) => 2,
            Kind::Int { .. } => 3,
            Kind::Long { .. } => 5,
            Kind::Ratio => 6,
            Kind::ListOf(_) => 7,
        }
    }
}

/// What Floe does with a config's value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Support {
    /// Acted on, as Kafka does.
    Enforced,
    /// Accepted for the tools that set it, with no effect because Floe has
    /// nothing it could tune (no segments, indexes or replicas; every batch
    /// fsynced before its ack). The reason is what DescribeConfigs says.
    NotApplicable(&'static str),
    /// Only the default is accepted: another value asks for behaviour Floe
    /// does not have, so it is refused with INVALID_CONFIG and this reason.
    DefaultOnly(&'static str),
}

/// One topic config.
#[derive(Debug, Clone, Copy)]
pub struct TopicConfigDef {
    pub name: &'static str,
    pub default: &'static str,
    pub kind: Kind,
    pub support: Support,
}

const fn def(name: &'static str, default: &'static str, kind: Kind, support: Support) -> TopicConfigDef {
    TopicConfigDef { name, default, kind, support }
}

const NEVER: &str = "9223372036854775807";
const ENFORCED: Support = Support::Enforced;
const NO_SEGMENTS: Support = Support::NotApplicable(
    "Floe has no log segments or indexes: a partition's data is uploaded in ranges of one upload \
     interval and compacted into larger ones, so this has no effect.",
);
const ALWAYS_FSYNCED: Support = Support::NotApplicable(
    "Floe fsyncs every batch to its write-ahead log before acknowledging it, which is stricter than \
     any flush setting.",
);

pub const TOPIC_CONFIGS: &[TopicConfigDef] = &[
    def("cleanup.policy", "delete", Kind::ListOf(&["delete", "compact"]), ENFORCED),
    def(
        "compression.type",
        "producer",
        Kind::OneOf(&["producer", "uncompressed", "gzip", "snappy", "lz4", "zstd"]),
        ENFORCED,
    ),
    def("delete.retention.ms", "86400000", Kind::Long { min: 0 }, ENFORCED),
    def(
        "file.delete.delay.ms",
        "60000",
        Kind::Long { min: 0 },
        Support::NotApplicable(
            "Floe deletes unreferenced objects after the broker-wide --object-delete-delay-ms.",
        ),
    ),
    def("flush.messages", NEVER, Kind::Long { min: 1 }, ALWAYS_FSYNCED),
    def("flush.ms", NEVER, Kind::Long { min: 0 }, ALWAYS_FSYNCED),
    def("index.interval.bytes", "4096", Kind::Int { min: 0 }, NO_SEGMENTS),
    def("max.compaction.lag.ms", NEVER, Kind::Long { min: 1 }, ENFORCED),
    def("max.message.bytes", "1048588", Kind::Int { min: 0 }, ENFORCED),
    def(
        "message.downconversion.enable",
        "true",
        Kind::Bool,
        Support::NotApplicable("Floe serves record batch v2 only and never down-converts."),
    ),
    def("message.timestamp.after.max.ms", NEVER, Kind::Long { min: 0 }, ENFORCED),
    def("message.timestamp.before.max.ms", NEVER, Kind::Long { min: 0 }, ENFORCED),
    def("message.timestamp.type", "CreateTime", Kind::OneOf(&["CreateTime", "LogAppendTime"]), ENFORCED),
    def("min.cleanable.dirty.ratio", "0.5", Kind::Ratio, ENFORCED),
    def("min.compaction.lag.ms", "0", Kind::Long { min: 0 }, ENFORCED),
    def(
        "min.insync.replicas",
        "1",
        Kind::Int { min: 1 },
        Support::DefaultOnly(
            "Floe keeps no replicas: a batch is acknowledged once fsynced to one broker's \
             write-ahead log, and its durable home is the object store. Only 1 can be met.",
        ),
    ),
    def("preallocate", "false", Kind::Bool, NO_SEGMENTS),
    def("retention.bytes", "-1", Kind::Long { min: -1 }, ENFORCED),
    def("retention.ms", "604800000", Kind::Long { min: -1 }, ENFORCED),
    def("segment.bytes", "1073741824", Kind::Int { min: 14 }, NO_SEGMENTS),
    def("segment.index.bytes", "10485760", Kind::Int { min: 4 }, NO_SEGMENTS),
    def("segment.jitter.ms", "0", Kind::Long { min: 0 }, NO_SEGMENTS),
    def("segment.ms", "604800000", Kind::Long { min: 1 }, NO_SEGMENTS),
    def(
        "unclean.leader.election.enable",
        "false",
        Kind::Bool,
        Support::NotApplicable(
            "Floe has no replicas to elect from: a partition's new owner reads everything \
             acknowledged from the object store and the old owner's WAL.",
        ),
    ),
];

pub fn find(name: &str) -> Option<&'static TopicConfigDef> {
    TOPIC_CONFIGS.iter().find(|d| d.name == name)
}

/// Checks one key and value; the error is the message for INVALID_CONFIG.
pub fn validate(name: &str, value: &str) -> Result<(), String> {
    let d = find(name).ok_or_else(|| format!("Unknown topic config name: {name}"))?;
    let bad = || format!("Invalid value {value} for configuration {name}");
    if let Support::DefaultOnly(why) = d.support {
        if value.trim() != d.default {
            return Err(format!("{}: {why}", bad()));
        }
    }
    match d.kind {
        Kind::Bool => {
            if !matches!(value.to_ascii_lowercase().as_str(), "true" | "false") {
                return Err(bad());
            }
        }
        Kind::Int { min } => {
            let v: i32 = value.trim().parse().map_err(|_| bad())?;
            if i64::from(v) < min {
                return Err(format!("{}: must be at least {min}", bad()));
            }
        }
        Kind::Long { min } => {
            let v: i64 = value.trim().parse().map_err(|_| bad())?;
            if v < min {
                return Err(format!("{}: must be at least {min}", bad()));
            }
        }
        Kind::Ratio => {
            let v: f64 = value.trim().parse().map_err(|_| bad())?;
            if !(0.0..=1.0).contains(&v) {
                return Err(format!("{}: must be between 0 and 1", bad()));
            }
        }
        Kind::OneOf(allowed) => {
            if !allowed.contains(&value) {
                return Err(format!("{}: must be one of {}", bad(), allowed.join(", ")));
            }
        }
        Kind::ListOf(allowed) => {
            let items: Vec<&str> = value.split(',').map(str::trim).collect();
            if items.is_empty() || items.iter().any(|i| !allowed.contains(i)) {
                return Err(format!("{}: must be a list of {}", bad(), allowed.join(", ")));
            }
        }
    }
    Ok(())
}

/// Validates a whole set of configs for a new or altered topic.
pub fn validate_all(configs: &BTreeMap<String, String>) -> Result<(), String> {
    configs.iter().try_for_each(|(k, v)| validate(k, v))
}

/// Kafka's topic name rules: 1–249 of `[a-zA-Z0-9._-]`, not `.` or `..`.
pub fn validate_topic_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name == "." || name == ".." {
        return Err(format!("topic name {name:?} is illegal"));
    }
    if name.len() > 249 {
        return Err(format!("topic name is {} characters long, the limit is 249", name.len()));
    }
    if let Some(c) = name.chars().find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))) {
        return Err(format!(
            "topic name {name:?} contains {c:?}; only ASCII letters, digits, '.', '_' and '-' are legal"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_checked_by_kind() {
        assert!(validate("retention.ms", "-1").is_ok());
        assert!(validate("retention.ms", "-2").is_err());
        assert!(validate("retention.ms", "soon").is_err());
        assert!(validate("cleanup.policy", "compact,delete").is_ok());
        assert!(validate("cleanup.policy", "shred").is_err());
        assert!(validate("min.cleanable.dirty.ratio", "1.5").is_err());
        assert!(validate("max.message.bytes", "3000000000").is_err(), "an int");
        assert!(validate("no.such.config", "1").unwrap_err().contains("Unknown"));
        assert!(validate("min.insync.replicas", "1").is_ok());
        assert!(validate("min.insync.replicas", "2").unwrap_err().contains("no replicas"));
    }

    #[test]
    fn topic_names_follow_kafka_rules() {
        assert!(validate_topic_name("orders.v1_x-y").is_ok());
        for bad in ["", ".", "..", "a/b", "a b", &"x".repeat(250)] {
            assert!(validate_topic_name(bad).is_err(), "{bad:?}");
        }
    }
}
