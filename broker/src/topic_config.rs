//! Topic configs: the keys Kafka clients set, their defaults, validation,
//! and whether Floe enforces each one yet. Unknown keys and bad values are
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

/// One topic config.
#[derive(Debug, Clone, Copy)]
pub struct TopicConfigDef {
    pub name: &'static str,
    pub default: &'static str,
    pub kind: Kind,
    /// Whether Floe acts on the value today; others are stored and returned.
    pub in_effect: bool,
}

const fn def(name: &'static str, default: &'static str, kind: Kind, in_effect: bool) -> TopicConfigDef {
    TopicConfigDef { name, default, kind, in_effect }
}

const NEVER: &str = "9223372036854775807";

pub const TOPIC_CONFIGS: &[TopicConfigDef] = &[
    def("cleanup.policy", "delete", Kind::ListOf(&["delete", "compact"]), true),
    def(
        "compression.type",
        "producer",
        Kind::OneOf(&["producer", "uncompressed", "gzip", "snappy", "lz4", "zstd"]),
        false,
    ),
    def("delete.retention.ms", "86400000", Kind::Long { min: 0 }, false),
    def("file.delete.delay.ms", "60000", Kind::Long { min: 0 }, false),
    def("flush.messages", NEVER, Kind::Long { min: 1 }, false),
    def("flush.ms", NEVER, Kind::Long { min: 0 }, false),
    def("index.interval.bytes", "4096", Kind::Int { min: 0 }, false),
    def("max.compaction.lag.ms", NEVER, Kind::Long { min: 1 }, false),
    def("max.message.bytes", "1048588", Kind::Int { min: 0 }, true),
    def("message.downconversion.enable", "true", Kind::Bool, false),
    def("message.timestamp.after.max.ms", NEVER, Kind::Long { min: 0 }, false),
    def("message.timestamp.before.max.ms", NEVER, Kind::Long { min: 0 }, false),
    def("message.timestamp.type", "CreateTime", Kind::OneOf(&["CreateTime", "LogAppendTime"]), false),
    def("min.cleanable.dirty.ratio", "0.5", Kind::Ratio, false),
    def("min.compaction.lag.ms", "0", Kind::Long { min: 0 }, false),
    def("min.insync.replicas", "1", Kind::Int { min: 1 }, false),
    def("preallocate", "false", Kind::Bool, false),
    def("retention.bytes", "-1", Kind::Long { min: -1 }, true),
    def("retention.ms", "604800000", Kind::Long { min: -1 }, true),
    def("segment.bytes", "1073741824", Kind::Int { min: 14 }, false),
    def("segment.index.bytes", "10485760", Kind::Int { min: 4 }, false),
    def("segment.jitter.ms", "0", Kind::Long { min: 0 }, false),
    def("segment.ms", "604800000", Kind::Long { min: 1 }, false),
    def("unclean.leader.election.enable", "false", Kind::Bool, false),
];

pub fn find(name: &str) -> Option<&'static TopicConfigDef> {
    TOPIC_CONFIGS.iter().find(|d| d.name == name)
}

/// Checks one key and value; the error is the message for INVALID_CONFIG.
pub fn validate(name: &str, value: &str) -> Result<(), String> {
    let d = find(name).ok_or_else(|| format!("Unknown topic config name: {name}"))?;
    let bad = || format!("Invalid value {value} for configuration {name}");
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
    }

    #[test]
    fn topic_names_follow_kafka_rules() {
        assert!(validate_topic_name("orders.v1_x-y").is_ok());
        for bad in ["", ".", "..", "a/b", "a b", &"x".repeat(250)] {
            assert!(validate_topic_name(bad).is_err(), "{bad:?}");
        }
    }
}
