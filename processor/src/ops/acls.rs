//! The least-privilege ACL set of a deployment, as `kafka-acls` commands
//! (`auditchain acls --print`).
//!
//! Everything is derived from the processor's configuration: the topic
//! names, the group id and the transactional id, which is
//! `<group_id>-<instance_id>` (`Config::transactional_id`; instance ids are
//! host names, so the ACL is on the prefix `<group_id>-`).
//!
//! | principal | may | nothing else |
//! |---|---|---|
//! | processor | read + describe (+ describe configs) the input; write + describe (+ describe configs) the chained, anchors and quarantine topics; read + write the state topic; read its group `<group>` and its auxiliary groups `<group>-restore` and `<group>-lag-probe`; write + describe transactional ids `<group>-*` | no create, alter or delete: output topics are created by an administrator (`auditchain topics`) before the processor starts |
//! | producer | write + describe the input topic (and, if asked, transactional ids of its own prefix) | cannot read anything, cannot write an output |
//! | auditor | read + describe the input and the chained, anchors and quarantine topics; read groups `auditchain-verify-*` (the throwaway groups `verify` and `prove` read under); describe the processor's group `<group>` (its committed offsets) | cannot write anything, cannot read the state topic, join the processor's group or commit its offsets |
//!
//! A principal with no ACL can do nothing once the broker runs with
//! `allow.everyone.if.no.acl.found=false`.

use std::fmt::Write as _;

use crate::config::Config;

/// The group-id prefix of `verify` and `prove` readers.
pub const VERIFY_GROUP_PREFIX: &str = "auditchain-verify-";

/// Kafka resource types the set uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resource {
    /// `--topic`.
    Topic,
    /// `--group`.
    Group,
    /// `--transactional-id`.
    TransactionalId,
}

impl Resource {
    fn flag(self) -> &'static str {
        match self {
            Resource::Topic => "--topic",
            Resource::Group => "--group",
            Resource::TransactionalId => "--transactional-id",
        }
    }
}

/// One `kafka-acls --add` command: `principal` may do `operations` on the
/// named resources.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// `User:<name>`.
    pub principal: String,
    /// `Read`, `Write`, `Describe`, `DescribeConfigs`.
    pub operations: Vec<&'static str>,
    /// The resource type.
    pub resource: Resource,
    /// Names (or prefixes, when `prefixed`).
    pub names: Vec<String>,
    /// A prefix pattern rather than literal names.
    pub prefixed: bool,
    /// Why, printed as a comment above the command.
    pub why: String,
}

/// The principals to grant to; `None` leaves a role out.
#[derive(Debug, Clone, Default)]
pub struct Principals {
    /// The processor (`auditchain run`).
    pub processor: Option<String>,
    /// Services publishing events.
    pub producer: Option<String>,
    /// Auditors (`auditchain verify`, `prove`).
    pub auditor: Option<String>,
    /// Transactional-id prefix the producer may use (transactional
    /// publishing, e.g. an outbox), if any.
    pub producer_transactional_id_prefix: Option<String>,
}

/// `name` as a Kafka principal: `User:name` unless it already has a type.
pub fn principal(name: &str) -> String {
    if name.contains(':') {
        name.to_string()
    } else {
        format!("User:{name}")
    }
}

/// The least-privilege set for `config`.
pub fn grants(config: &Config, who: &Principals) -> Vec<Grant> {
    let t = &config.topics;
    let group = &config.kafka.group_id;
    let mut out = Vec::new();
    let mut grant =
        |p: &str, ops: &[&'static str], resource, names: Vec<String>, prefixed, why: &str| {
            out.push(Grant {
                principal: principal(p),
                operations: ops.to_vec(),
                resource,
                names,
                prefixed,
                why: why.to_string(),
            })
        };
    if let Some(p) = &who.processor {
        grant(
            p,
            &["Read", "Describe", "DescribeConfigs"],
            Resource::Topic,
            vec![t.input.clone()],
            false,
            "processor: consume the input (DescribeConfigs: its max.message.bytes sizes the outputs)",
        );
        grant(
            p,
            &["Write", "Describe", "DescribeConfigs"],
            Resource::Topic,
            vec![t.chained.clone(), t.quarantine.clone()],
            false,
            "processor: write the chained and quarantine topics (checked at start-up: DescribeConfigs)",
        );
        grant(
            p,
            &["Read", "Write", "Describe", "DescribeConfigs"],
            Resource::Topic,
            vec![t.anchors.clone()],
            false,
            "processor: write the anchors topic, and read it back on assignment to check the chain state against the trail's last anchor (rebuilding the state from it when they differ)",
        );
        grant(
            p,
            &["Read", "Write", "Describe", "DescribeConfigs"],
            Resource::Topic,
            vec![t.state.clone()],
            false,
            "processor: write chain heads to the state topic and restore them from it",
        );
        grant(
            p,
            &["Read"],
            Resource::Group,
            vec![
                group.clone(),
                format!("{group}-restore"),
                format!("{group}-lag-probe"),
            ],
            false,
            "processor: its consumer group (offsets committed in its transactions) and the groups its state restore and lag sampler read under",
        );
        grant(
            p,
            &["Write", "Describe"],
            Resource::TransactionalId,
            vec![format!("{group}-")],
            true,
            "processor: transactional ids <group_id>-<instance_id>",
        );
    }
    if let Some(p) = &who.producer {
        grant(
            p,
            &["Write", "Describe"],
            Resource::Topic,
            vec![t.input.clone()],
            false,
            "producer: publish signed events to the input, nothing else",
        );
        if let Some(prefix) = &who.producer_transactional_id_prefix {
            grant(
                p,
                &["Write", "Describe"],
                Resource::TransactionalId,
                vec![prefix.clone()],
                true,
                "producer: its own transactional ids (transactional publishing)",
            );
        }
    }
    if let Some(p) = &who.auditor {
        grant(
            p,
            &["Read", "Describe"],
            Resource::Topic,
            vec![
                t.chained.clone(),
                t.anchors.clone(),
                t.quarantine.clone(),
                t.input.clone(),
            ],
            false,
            "auditor: read the trail, and the input for the completeness check",
        );
        grant(
            p,
            &["Read"],
            Resource::Group,
            vec![VERIFY_GROUP_PREFIX.to_string()],
            true,
            "auditor: the throwaway groups verify and prove read under (no offsets are committed)",
        );
        grant(
            p,
            &["Describe"],
            Resource::Group,
            vec![group.clone()],
            false,
            "auditor: the processor's committed offsets, which tell verify how far the input must be processed (describe only: it cannot join the group or commit)",
        );
    }
    out
}

/// How the commands reach the cluster.
#[derive(Debug, Clone)]
pub struct Target {
    /// The `kafka-acls` executable (`kafka-acls.sh`, `kafka-acls`, a path).
    pub command: String,
    /// `--bootstrap-server`.
    pub bootstrap_server: String,
    /// `--command-config`: the administrator's client properties.
    pub command_config: Option<String>,
}

/// `s` quoted for a POSIX shell when it needs it.
fn quote(s: &str) -> String {
    let safe = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-:/=,@+%".contains(c));
    if safe {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// The set as a POSIX shell script of `kafka-acls --add` commands.
pub fn script(config: &Config, who: &Principals, target: &Target) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "#!/bin/sh");
    let _ = writeln!(
        out,
        "# auditchain least-privilege ACLs (auditchain acls --print): group `{}`, input `{}`,\n# outputs `{}`, `{}`, `{}`, state `{}`, transactional ids `{}-*`.\n# Run with an administrator's credentials; every command only adds.",
        config.kafka.group_id,
        config.topics.input,
        config.topics.chained,
        config.topics.anchors,
        config.topics.quarantine,
        config.topics.state,
        config.kafka.group_id,
    );
    let _ = writeln!(out, "set -eu");
    for g in grants(config, who) {
        let _ = writeln!(out, "# {}", g.why);
        let mut args = vec![
            quote(&target.command),
            "--bootstrap-server".into(),
            quote(&target.bootstrap_server),
        ];
        if let Some(c) = &target.command_config {
            args.push("--command-config".into());
            args.push(quote(c));
        }
        args.push("--add".into());
        args.push("--allow-principal".into());
        args.push(quote(&g.principal));
        for op in &g.operations {
            args.push("--operation".into());
            args.push((*op).into());
        }
        for name in &g.names {
            args.push(g.resource.flag().into());
            args.push(quote(name));
        }
        args.push("--resource-pattern-type".into());
        args.push(if g.prefixed { "prefixed" } else { "literal" }.into());
        let _ = writeln!(out, "{}", args.join(" "));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> Config {
        Config::from_toml_with_env(
            "[kafka]\nbootstrap_servers = \"b:9093\"\ngroup_id = \"acme-audit\"\ninstance_id = \"i\"\n\
             [signing]\nkey_file = \"k\"\nkey_id = \"p\"\n[producer_keys]\nfile = \"f\"\n",
            std::iter::empty(),
        )
        .expect("config")
    }

    fn all() -> Principals {
        Principals {
            processor: Some("processor".into()),
            producer: Some("User:producer".into()),
            auditor: Some("auditor".into()),
            producer_transactional_id_prefix: None,
        }
    }

    #[test]
    fn the_transactional_id_prefix_covers_the_processors_id() {
        let c = config();
        let g = grants(&c, &all());
        let txn = g
            .iter()
            .find(|g| g.resource == Resource::TransactionalId)
            .expect("a transactional id grant");
        assert!(txn.prefixed);
        assert!(c.transactional_id().starts_with(&txn.names[0]));
        assert_eq!(txn.principal, "User:processor");
    }

    #[test]
    fn only_the_processor_writes_outputs_and_nobody_else_writes_anything_but_the_input() {
        let c = config();
        let outputs = [
            &c.topics.chained,
            &c.topics.anchors,
            &c.topics.quarantine,
            &c.topics.state,
        ];
        for g in grants(&c, &all()) {
            if g.operations.contains(&"Write") && g.resource == Resource::Topic {
                let is_processor = g.principal == "User:processor";
                for name in &g.names {
                    if outputs.contains(&name) {
                        assert!(is_processor, "{} may write {name}", g.principal);
                    } else {
                        assert_eq!(name, &c.topics.input);
                        assert_eq!(g.principal, "User:producer", "{g:?}");
                    }
                }
            }
            // No one may create, alter or delete anything.
            for op in &g.operations {
                assert!(
                    ["Read", "Write", "Describe", "DescribeConfigs"].contains(op),
                    "{op} granted"
                );
            }
            if g.principal == "User:auditor" {
                assert!(!g.operations.contains(&"Write"));
                assert!(!g.names.contains(&c.topics.state));
                if g.names.contains(&c.kafka.group_id) {
                    // Its committed offsets, never joining or committing.
                    assert_eq!(g.operations, ["Describe"], "{g:?}");
                }
            }
        }
    }

    #[test]
    fn the_script_is_kafka_acls_commands() {
        let c = config();
        let s = script(
            &c,
            &all(),
            &Target {
                command: "kafka-acls.sh".into(),
                bootstrap_server: "b:9093".into(),
                command_config: Some("/etc/kafka/admin client.properties".into()),
            },
        );
        let commands: Vec<&str> = s
            .lines()
            .filter(|l| l.starts_with("kafka-acls.sh"))
            .collect();
        assert_eq!(commands.len(), 10, "{s}");
        assert!(commands.iter().all(|l| l.contains(
            "--bootstrap-server b:9093 --command-config '/etc/kafka/admin client.properties' --add"
        )));
        assert!(
            s.contains("--transactional-id acme-audit- --resource-pattern-type prefixed"),
            "{s}"
        );
        assert!(
            s.contains(
                "--group acme-audit --group acme-audit-restore --group acme-audit-lag-probe"
            ),
            "{s}"
        );
    }
}
