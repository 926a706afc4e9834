//! The secured local stack (`scripts/stack up --secure`): SASL_SSL with
//! SCRAM-SHA-512, a CA of the stack's own, `StandardAuthorizer` with
//! `allow.everyone.if.no.acl.found=false`, and the users `admin` (super
//! user), `processor`, `producer`, `auditor` and `rogue`.
//!
//! Tests on it call [`stack`] first: without the stack's environment
//! (`eval "$(scripts/stack env)"` of a secure stack) they skip, unless
//! `AUDITCHAIN_REQUIRE_SECURE=1` (what `scripts/test` sets), when a missing
//! stack fails the test instead of letting it pass unseen.

use std::path::PathBuf;

use rdkafka::config::ClientConfig;

/// Where the secured stack is and how to log in.
#[derive(Debug, Clone)]
pub struct SecureStack {
    /// `host:port` of the SASL_SSL listener.
    pub bootstrap: String,
    /// PEM of the CA that signed the broker's certificate.
    pub ca: PathBuf,
    /// PEM of a CA that signed nothing the broker uses.
    pub untrusted_ca: PathBuf,
    /// `SCRAM-SHA-512`.
    pub mechanism: String,
    /// `<user>.password` files.
    pub users_dir: PathBuf,
    /// The administrator's client properties (Java tools).
    pub admin_properties: PathBuf,
    /// A `kafka-acls.sh` for this stack.
    pub kafka_acls: PathBuf,
}

/// The secured stack from the environment, or `None` (the test skips) when
/// there is none and none is required.
pub fn stack() -> Option<SecureStack> {
    let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    let Some(bootstrap) = var("KAFKA_SECURE_BOOTSTRAP_SERVERS") else {
        assert!(
            var("AUDITCHAIN_REQUIRE_SECURE").as_deref() != Some("1"),
            "AUDITCHAIN_REQUIRE_SECURE=1 but KAFKA_SECURE_BOOTSTRAP_SERVERS is not set: start the secured stack (scripts/stack up --secure) and eval its `scripts/stack env`"
        );
        eprintln!("skipped: no secured stack (KAFKA_SECURE_BOOTSTRAP_SERVERS unset)");
        return None;
    };
    let path = |name: &str| {
        PathBuf::from(var(name).unwrap_or_else(|| panic!("{name} is not set by scripts/stack env")))
    };
    Some(SecureStack {
        bootstrap,
        ca: path("KAFKA_SECURE_CA_LOCATION"),
        untrusted_ca: path("KAFKA_SECURE_UNTRUSTED_CA_LOCATION"),
        mechanism: var("KAFKA_SECURE_SASL_MECHANISM").unwrap_or_else(|| "SCRAM-SHA-512".into()),
        users_dir: path("KAFKA_SECURE_USERS_DIR"),
        admin_properties: path("KAFKA_SECURE_ADMIN_PROPERTIES"),
        kafka_acls: path("KAFKA_SECURE_KAFKA_ACLS"),
    })
}

impl SecureStack {
    /// The password of `user`.
    pub fn password(&self, user: &str) -> String {
        let file = self.users_dir.join(format!("{user}.password"));
        std::fs::read_to_string(&file)
            .unwrap_or_else(|e| panic!("reading {}: {e}", file.display()))
            .trim()
            .to_string()
    }

    /// librdkafka properties that log in as `user` with `password`,
    /// trusting `ca`.
    pub fn librdkafka_with(
        &self,
        user: &str,
        password: &str,
        ca: &std::path::Path,
    ) -> Vec<(String, String)> {
        [
            ("security.protocol", "SASL_SSL"),
            ("sasl.mechanism", self.mechanism.as_str()),
            ("sasl.username", user),
            ("sasl.password", password),
            ("ssl.ca.location", ca.to_str().expect("utf-8 path")),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }

    /// librdkafka properties that log in as `user`.
    pub fn librdkafka(&self, user: &str) -> Vec<(String, String)> {
        self.librdkafka_with(user, &self.password(user), &self.ca)
    }

    /// A client configuration logged in as `user`.
    pub fn client_config(&self, user: &str) -> ClientConfig {
        let mut cc = ClientConfig::new();
        cc.set("bootstrap.servers", &self.bootstrap);
        for (k, v) in self.librdkafka(user) {
            cc.set(k, v);
        }
        cc
    }
}
