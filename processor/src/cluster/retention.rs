//! What the trail and state topics keep (DESIGN.md §3: the trail is the
//! source of truth, the state topic a cache of it): the decisions, with no
//! I/O, over the settings a broker describes.
//!
//! A trail topic (chained, anchors, quarantine) must keep every record for
//! good: `retention.ms=-1`, `retention.bytes=-1` and a `cleanup.policy`
//! without `compact` (compaction keeps one record per key: a tenant's
//! latest chained record, a partition's latest anchor). Anything else lets
//! Kafka delete records that `verify` then reports lost, and a trail that
//! lost records can never verify again. The state topic must be exactly
//! `compact`: with `delete` too, retention removes an idle tenant's head and
//! the next restore would start that chain afresh.

use std::collections::HashMap;

use crate::error::{Error, Result};

/// The settings a trail topic is created with.
pub const TRAIL_TOPIC_CONFIG: [(&str, &str); 3] = [
    ("cleanup.policy", "delete"),
    ("retention.ms", "-1"),
    ("retention.bytes", "-1"),
];

/// The settings of a topic that decide which records it keeps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Retention {
    /// `cleanup.policy`, as the broker reports it (`delete`, `compact` or
    /// both, comma-separated).
    pub cleanup_policy: String,
    /// `retention.ms`; -1 is for good.
    pub retention_ms: i64,
    /// `retention.bytes` (per partition); -1 is unbounded.
    pub retention_bytes: i64,
}

/// A setting that lets a trail topic lose records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Loss {
    /// The setting's name.
    pub setting: &'static str,
    /// Its value.
    pub value: String,
    /// The value that keeps records for good.
    pub fix: &'static str,
}

impl Retention {
    /// The settings from a topic's described configuration (name to
    /// effective value); `None` while the broker does not describe them all
    /// yet (a topic created moments ago). A value that is not a number is an
    /// error naming it.
    pub fn from_configs(topic: &str, configs: &HashMap<String, String>) -> Result<Option<Self>> {
        let number = |name: &str| -> Result<Option<i64>> {
            configs
                .get(name)
                .map(|v| {
                    v.trim().parse::<i64>().map_err(|_| Error::Topic {
                        topic: topic.into(),
                        message: format!("the broker reports {name} `{v}`, not a number"),
                    })
                })
                .transpose()
        };
        let (Some(cleanup_policy), Some(retention_ms), Some(retention_bytes)) = (
            configs.get("cleanup.policy"),
            number("retention.ms")?,
            number("retention.bytes")?,
        ) else {
            return Ok(None);
        };
        Ok(Some(Retention {
            cleanup_policy: cleanup_policy.clone(),
            retention_ms,
            retention_bytes,
        }))
    }

    fn policies(&self) -> impl Iterator<Item = &str> {
        self.cleanup_policy.split(',').map(str::trim)
    }

    /// The first setting that lets the topic lose records, if any.
    pub fn loss(&self) -> Option<Loss> {
        if self.policies().any(|p| p == "compact") {
            return Some(Loss {
                setting: "cleanup.policy",
                value: self.cleanup_policy.clone(),
                fix: "delete",
            });
        }
        if self.retention_ms >= 0 {
            return Some(Loss {
                setting: "retention.ms",
                value: self.retention_ms.to_string(),
                fix: "-1",
            });
        }
        if self.retention_bytes >= 0 {
            return Some(Loss {
                setting: "retention.bytes",
                value: self.retention_bytes.to_string(),
                fix: "-1",
            });
        }
        None
    }

    /// What the topic keeps, for `auditchain topics`: "for good", or the
    /// settings that bound it.
    pub fn describe(&self) -> String {
        if self.loss().is_none() {
            return format!("kept for good (cleanup.policy={})", self.cleanup_policy);
        }
        format!(
            "records can be deleted: cleanup.policy={} retention.ms={} retention.bytes={}",
            self.cleanup_policy, self.retention_ms, self.retention_bytes
        )
    }
}

/// The `kafka-configs` command that sets `setting` of `topic` to `value`.
pub fn fix_command(bootstrap: &str, topic: &str, setting: &str, value: &str) -> String {
    format!(
        "kafka-configs --bootstrap-server {bootstrap} --alter --entity-type topics --entity-name {topic} --add-config {setting}={value}"
    )
}

/// Checks trail topic `topic` keeps its records for good. With `archived`
/// (the operator says an archive keeps the trail) a topic that can lose
/// records is accepted, and the returned warning says what that risks.
pub fn check_trail_topic(
    bootstrap: &str,
    topic: &str,
    retention: &Retention,
    archived: bool,
) -> Result<Option<String>> {
    let Some(loss) = retention.loss() else {
        return Ok(None);
    };
    if archived {
        return Ok(Some(format!(
            "trail topic `{topic}` can lose records ({}={}), accepted because topics.trail_archived is set; auditchain has no archive of its own yet and nothing checks that one keeps up: every record this topic deletes before it is archived is lost for good, and verify reports it so",
            loss.setting, loss.value
        )));
    }
    Err(Error::Topic {
        topic: topic.into(),
        message: format!(
            "is part of the audit trail, which must keep every record for good, but its {} is `{}`, so Kafka will delete records and verify will report them lost forever; fix it with: {} (or, only if an archive keeps the trail, set topics.trail_archived = true)",
            loss.setting,
            loss.value,
            fix_command(bootstrap, topic, loss.setting, loss.fix)
        ),
    })
}

/// Checks the state topic's `cleanup.policy` is exactly `compact`.
pub fn check_state_topic(bootstrap: &str, topic: &str, cleanup_policy: &str) -> Result<()> {
    let mut policies = cleanup_policy.split(',').map(str::trim);
    if policies.next() == Some("compact") && policies.next().is_none() {
        return Ok(());
    }
    Err(Error::Topic {
        topic: topic.into(),
        message: format!(
            "is the chain-state topic and must be exactly cleanup.policy=compact (with delete, retention removes an idle tenant's head and its chain would restart at seq 1), but its cleanup.policy is `{cleanup_policy}`; fix it with: {}",
            fix_command(bootstrap, topic, "cleanup.policy", "compact")
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn retention(policy: &str, ms: i64, bytes: i64) -> Retention {
        Retention {
            cleanup_policy: policy.into(),
            retention_ms: ms,
            retention_bytes: bytes,
        }
    }

    #[test]
    fn the_created_settings_keep_records_for_good() {
        let configs: HashMap<String, String> = TRAIL_TOPIC_CONFIG
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let r = Retention::from_configs("t", &configs)
            .expect("numbers")
            .expect("complete");
        assert_eq!(r.loss(), None);
        assert_eq!(
            check_trail_topic("b:9092", "t", &r, false).expect("accepted"),
            None
        );
    }

    #[test]
    fn the_broker_default_week_stops_start_up_naming_topic_setting_and_fix() {
        let r = retention("delete", 604_800_000, -1);
        let err = check_trail_topic("b:9092", "audit.chained", &r, false)
            .expect_err("a week of retention is refused")
            .to_string();
        assert!(err.contains("audit.chained"), "{err}");
        assert!(err.contains("retention.ms is `604800000`"), "{err}");
        assert!(
            err.contains("--entity-name audit.chained --add-config retention.ms=-1"),
            "{err}"
        );
    }

    #[test]
    fn a_size_bound_or_compaction_is_a_loss_too() {
        assert_eq!(
            retention("delete", -1, 1 << 30).loss().map(|l| l.setting),
            Some("retention.bytes")
        );
        for policy in ["compact", "compact,delete", "delete, compact"] {
            let loss = retention(policy, -1, -1)
                .loss()
                .expect("compaction loses records");
            assert_eq!((loss.setting, loss.fix), ("cleanup.policy", "delete"));
        }
    }

    #[test]
    fn an_archived_trail_is_accepted_with_a_warning() {
        let r = retention("delete", 86_400_000, -1);
        let warning = check_trail_topic("b:9092", "audit.anchors", &r, true)
            .expect("accepted")
            .expect("warned");
        assert!(warning.contains("audit.anchors") && warning.contains("retention.ms=86400000"));
    }

    #[test]
    fn the_state_topic_is_exactly_compact() {
        check_state_topic("b", "audit.state", "compact").expect("compact");
        for policy in ["compact,delete", "delete,compact", "delete", ""] {
            let err = check_state_topic("b", "audit.state", policy)
                .expect_err(policy)
                .to_string();
            assert!(err.contains("cleanup.policy=compact"), "{err}");
        }
    }

    #[test]
    fn incomplete_or_garbled_descriptions() {
        let mut configs = HashMap::from([("cleanup.policy".to_string(), "delete".to_string())]);
        assert_eq!(Retention::from_configs("t", &configs).expect("ok"), None);
        configs.insert("retention.ms".into(), "soon".into());
        configs.insert("retention.bytes".into(), "-1".into());
        let err = Retention::from_configs("t", &configs).expect_err("garbled");
        assert!(err.to_string().contains("retention.ms `soon`"));
    }
}
