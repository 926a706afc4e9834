//! Configuration: one TOML file, overridden by environment variables, checked
//! at start-up with errors that name the field.
//!
//! Environment overrides use the prefix `AUDITCHAIN__` and `__` between path
//! segments: `AUDITCHAIN__KAFKA__BOOTSTRAP_SERVERS=broker:9092` sets
//! `kafka.bootstrap_servers`. A value that parses as a TOML literal (number,
//! boolean, array) is taken as such, anything else as a string. Raw
//! librdkafka options go in `[librdkafka]` and are applied last, so TLS and
//! SASL settings (`security.protocol`, `ssl.ca.location`, `sasl.mechanism`,
//! ...) pass straight through.
//!
//! Secrets (`sasl.password` and the other credential properties, the
//! registry password, the admin token) never reach a log line or an error
//! message: the `Debug` form of every config struct redacts them, and an
//! override of a `[librdkafka]` property or a password is always taken as a
//! string, so a type error can never echo its value.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::{Error, Result};
use crate::kafka::{LIBRDKAFKA_MAX_MESSAGE_BYTES, OUTPUT_ENVELOPE_BYTES};

/// The environment variable prefix for overrides.
pub const ENV_PREFIX: &str = "AUDITCHAIN__";

/// librdkafka properties the processor owns: setting them in `[librdkafka]`
/// would break exactly-once, so `validate()` refuses them.
const RESERVED_LIBRDKAFKA: &[&str] = &[
    "enable.auto.commit",
    "isolation.level",
    "transactional.id",
    "enable.idempotence",
    "group.id",
    "partition.assignment.strategy",
    "enable.auto.offset.store",
    // `latest` would skip input no chain holds when an offset is out of range.
    "auto.offset.reset",
];

/// The whole configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Kafka connection and group membership.
    pub kafka: KafkaConfig,
    /// Topic names and how output topics are created.
    #[serde(default)]
    pub topics: TopicsConfig,
    /// Confluent-compatible schema registry; absent means the compiled-in
    /// schemas with the ids in `[schemas]`.
    #[serde(default)]
    pub schema_registry: Option<RegistryConfig>,
    /// Schema ids used when no registry is configured.
    #[serde(default)]
    pub schemas: CompiledSchemasConfig,
    /// The processor's own signing key (signs anchors).
    pub signing: SigningConfig,
    /// The producers' public keys.
    pub producer_keys: ProducerKeysConfig,
    /// Transaction sizing and input limits.
    #[serde(default)]
    pub processing: ProcessingConfig,
    /// The HTTP endpoint for metrics and health.
    #[serde(default)]
    pub http: HttpConfig,
    /// Raw librdkafka properties, applied last to every client (TLS, SASL,
    /// tuning). Properties that exactly-once depends on are refused.
    /// Credential values are redacted from the `Debug` form.
    #[serde(default)]
    pub librdkafka: LibrdkafkaProperties,
}

/// Text shown instead of a secret.
pub const REDACTED: &str = "<redacted>";

/// Whether the librdkafka property `name` holds a credential (a password, a
/// private key, a secret, a JAAS or OAUTHBEARER configuration). Broader than
/// librdkafka's own list of sensitive properties on purpose.
pub fn is_secret_property(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    n.contains("password")
        || n.contains("secret")
        || n.contains("jaas")
        || n.contains("oauthbearer.config")
        || n.contains("ssl.key.pem")
        || n == "ssl_key"
        || n.contains("keystore")
        || n.contains("keytab")
        || n.contains("token")
}

/// `[librdkafka]`: raw properties by name. A map whose `Debug` form shows
/// credential values as `<redacted>` ([`is_secret_property`]).
#[derive(Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct LibrdkafkaProperties(pub BTreeMap<String, String>);

impl std::ops::Deref for LibrdkafkaProperties {
    type Target = BTreeMap<String, String>;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl std::ops::DerefMut for LibrdkafkaProperties {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.0
    }
}

impl<'a> IntoIterator for &'a LibrdkafkaProperties {
    type Item = (&'a String, &'a String);
    type IntoIter = std::collections::btree_map::Iter<'a, String, String>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

impl fmt::Debug for LibrdkafkaProperties {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(self.0.iter().map(|(k, v)| {
                let shown: &str = if is_secret_property(k) { REDACTED } else { v };
                (k, shown)
            }))
            .finish()
    }
}

/// `[kafka]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaConfig {
    /// Comma-separated `host:port` list.
    pub bootstrap_servers: String,
    /// Consumer group id; every instance of one deployment shares it.
    #[serde(default = "default_group_id")]
    pub group_id: String,
    /// This instance's stable id, unique within the group. The transactional
    /// id is `<group_id>-<instance_id>`: a restarted instance with the same id
    /// fences its predecessor at once instead of waiting out its transaction.
    /// Defaults to the host name.
    #[serde(default = "default_instance_id")]
    pub instance_id: String,
    /// Consumer session timeout.
    #[serde(default = "default_session_timeout_ms")]
    pub session_timeout_ms: u32,
    /// Producer transaction timeout; bounds how long a new owner waits on a
    /// dead owner's open transaction (DESIGN.md §3).
    #[serde(default = "default_transaction_timeout_ms")]
    pub transaction_timeout_ms: u32,
}

/// `[topics]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TopicsConfig {
    /// Input topic of signed `AuditEvent`s, keyed by tenant.
    #[serde(default = "default_input_topic")]
    pub input: String,
    /// Output topic of `ChainedRecord`s.
    #[serde(default = "default_chained_topic")]
    pub chained: String,
    /// Output topic of `AnchorBatch`es.
    #[serde(default = "default_anchors_topic")]
    pub anchors: String,
    /// Output topic of `QuarantineRecord`s.
    #[serde(default = "default_quarantine_topic")]
    pub quarantine: String,
    /// Compacted topic of chain heads.
    #[serde(default = "default_state_topic")]
    pub state: String,
    /// Create missing output topics at start-up (with the input topic's
    /// partition count). When false a missing topic is a start-up error.
    #[serde(default = "default_true")]
    pub create_missing: bool,
    /// Replication factor for created topics; -1 takes the broker default.
    #[serde(default = "default_replication_factor")]
    pub replication_factor: i32,
    /// The operator's word that the trail is kept outside Kafka (an archive,
    /// DESIGN.md §7.4), so the chained, anchors and quarantine topics may
    /// have a finite retention. When false (the default) a trail topic that
    /// can lose records (`retention.ms` or `retention.bytes` other than -1,
    /// or a `cleanup.policy` with `compact`) stops start-up. auditchain has
    /// no archive of its own yet: with this set, nothing checks that one
    /// keeps up, and every start logs a warning saying so.
    #[serde(default)]
    pub trail_archived: bool,
}

/// `[schema_registry]`. Its `Debug` form redacts the password and any
/// credentials in the URL.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistryConfig {
    /// Base URL of the Confluent-compatible API, e.g.
    /// `http://127.0.0.1:8081/apis/ccompat/v7`.
    pub url: String,
    /// Basic-auth user name, if the registry needs one.
    #[serde(default)]
    pub username: Option<String>,
    /// Basic-auth password; never logged.
    #[serde(default)]
    pub password: Option<String>,
}

impl RegistryConfig {
    /// The URL with any `user:password@` part replaced, for logs and errors.
    pub fn display_url(&self) -> String {
        redact_url(&self.url)
    }
}

impl fmt::Debug for RegistryConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RegistryConfig")
            .field("url", &self.display_url())
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| REDACTED))
            .finish()
    }
}

/// `url` with the user-info part (`user:password@`) of its authority
/// replaced by `<redacted>@`.
pub fn redact_url(url: &str) -> String {
    let (scheme, rest) = match url.split_once("://") {
        Some((s, r)) => (Some(s), r),
        None => (None, url),
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let redacted = match authority.rsplit_once('@') {
        Some((_, host)) => format!("{REDACTED}@{host}{tail}"),
        None => return url.to_string(),
    };
    match scheme {
        Some(s) => format!("{s}://{redacted}"),
        None => redacted,
    }
}

/// `[schemas]`: ids for the compiled-in schemas when no registry is used.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CompiledSchemasConfig {
    /// Input schema ids accepted as the compiled-in `AuditEvent`; any other
    /// id is quarantined as `SCHEMA_UNKNOWN`.
    #[serde(default = "default_accepted_ids")]
    pub audit_event_ids: Vec<u32>,
    /// Id written in the framing of `ChainedRecord`s.
    #[serde(default = "default_chained_id")]
    pub chained_record_id: u32,
    /// Id written in the framing of `QuarantineRecord`s.
    #[serde(default = "default_quarantine_id")]
    pub quarantine_record_id: u32,
    /// Id written in the framing of `AnchorBatch`es.
    #[serde(default = "default_anchor_id")]
    pub anchor_batch_id: u32,
}

/// `[signing]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SigningConfig {
    /// File holding the processor's Ed25519 secret seed (hex), as written by
    /// `auditchain keygen`. Must not be readable by group or others.
    pub key_file: PathBuf,
    /// Key id written into every anchor (`signer_key_id`).
    pub key_id: String,
}

/// `[producer_keys]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProducerKeysConfig {
    /// TOML key set file: key id → public key, allowed tenants, revoked.
    /// Reloaded when it changes.
    pub file: PathBuf,
    /// How often the file is checked for changes.
    #[serde(default = "default_reload_interval_ms")]
    pub reload_interval_ms: u64,
}

/// `[processing]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProcessingConfig {
    /// A transaction commits at least this often while records flow. The
    /// default, 100 ms (Kafka Streams' exactly-once default too), keeps the
    /// end-to-end p99 near 150 ms at half load for a few per cent of
    /// throughput (README, Performance: 50 ms halves the p50 wait and costs
    /// about 10 %); longer intervals mean fewer, larger anchors and higher
    /// latency.
    #[serde(default = "default_commit_interval_ms")]
    pub commit_interval_ms: u64,
    /// ... or when it holds this many input records, whichever comes first.
    #[serde(default = "default_max_batch_records")]
    pub max_batch_records: usize,
    /// Input values larger than this are quarantined as `OVERSIZED`.
    ///
    /// A value at the bound must fit, wrapped, into the output topics, whose
    /// limit is derived from the input topic (DESIGN.md §3): twice its
    /// `max.message.bytes` plus 4096 bytes (`kafka::max_output_record_bytes`).
    /// So the bound plus 4096 must not exceed that limit (checked at start-up,
    /// once the input topic is known), librdkafka's ceiling of 1,000,000,000
    /// bytes, nor an explicit `[librdkafka] "message.max.bytes"`; otherwise
    /// start-up fails naming this field. The default, 1 MiB, fits a broker
    /// with default settings (input `max.message.bytes` 1048588: output limit
    /// 2101272).
    #[serde(default = "default_max_record_bytes")]
    pub max_record_bytes: usize,
    /// Threads verifying signatures; 0 means one per core.
    #[serde(default)]
    pub verify_threads: usize,
    /// A micro-batch (records polled and routed together) stops growing at
    /// this many bytes of keys and values, so memory is bounded in bytes,
    /// not only in records (2,000 records of 1 MiB would be 2 GiB).
    #[serde(default = "default_max_batch_bytes")]
    pub max_batch_bytes: usize,
    /// Bytes the producer may hold queued for the broker
    /// (librdkafka's `queue.buffering.max.kbytes`, whose default is 1 GiB);
    /// a full queue makes the processor wait for deliveries.
    #[serde(default = "default_producer_queue_bytes")]
    pub producer_queue_bytes: usize,
    /// An owned partition whose committed offset has not moved for this
    /// long while it has lag, and none of whose records arrived in that
    /// time, has a consumer fetcher that stopped: the processor then
    /// commits what is open and starts a new session (a new consumer and
    /// producer, which rejoin and restore). librdkafka can leave a
    /// partition's fetcher unstarted for good after a coordinator error
    /// during an assignment (confluentinc/librdkafka#5586); a new consumer
    /// recovers it. At least `commit_interval_ms` + 10000 (an open
    /// transaction's records count as lag until it commits; lag is sampled
    /// every 5 s); 0 turns it off.
    #[serde(default = "default_fetch_stall_timeout_ms")]
    pub fetch_stall_timeout_ms: u64,
}

/// `[http]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    /// Address for `/metrics`, `/healthz`, `/readyz` and `POST /admin/*`.
    #[serde(default = "default_http_bind")]
    pub bind: SocketAddr,
    /// File holding the bearer token `POST /admin/pause` and
    /// `/admin/resume` require (`Authorization: Bearer <token>`); like a
    /// secret key file it must not be readable by group or others. The
    /// token may come from the environment variable `AUDITCHAIN_ADMIN_TOKEN`
    /// instead (not both). Required when `bind` is not a loopback address:
    /// `run` refuses to start without one. The token is never logged.
    #[serde(default)]
    pub admin_token_file: Option<PathBuf>,
    /// `/healthz` answers 503 once the processing loop has not come round
    /// for this long, so an orchestrator restarts a processor stuck in a
    /// call that never returns (the loop otherwise turns every 200 ms; its
    /// longest legitimate wait, a commit whose calls are each retried five
    /// times against an unreachable coordinator, then an abort and a
    /// restore, is about 17 minutes). At least 1000; the default is 30
    /// minutes.
    #[serde(default = "default_liveness_timeout_ms")]
    pub liveness_timeout_ms: u64,
}

fn default_group_id() -> String {
    "auditchain".into()
}
fn default_instance_id() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|h| h.trim().to_string())
                .filter(|h| !h.is_empty())
        })
        .unwrap_or_else(|| "auditchain-0".into())
}
fn default_session_timeout_ms() -> u32 {
    10_000
}
fn default_transaction_timeout_ms() -> u32 {
    10_000
}
fn default_input_topic() -> String {
    "audit.events".into()
}
fn default_chained_topic() -> String {
    "audit.chained".into()
}
fn default_anchors_topic() -> String {
    "audit.anchors".into()
}
fn default_quarantine_topic() -> String {
    "audit.quarantine".into()
}
fn default_state_topic() -> String {
    "audit.state".into()
}
fn default_true() -> bool {
    true
}
fn default_replication_factor() -> i32 {
    -1
}
fn default_accepted_ids() -> Vec<u32> {
    vec![1]
}
fn default_chained_id() -> u32 {
    2
}
fn default_quarantine_id() -> u32 {
    3
}
fn default_anchor_id() -> u32 {
    4
}
fn default_reload_interval_ms() -> u64 {
    2_000
}
fn default_commit_interval_ms() -> u64 {
    100
}
fn default_max_batch_records() -> usize {
    10_000
}
fn default_max_batch_bytes() -> usize {
    64 * 1024 * 1024
}
fn default_liveness_timeout_ms() -> u64 {
    30 * 60 * 1000
}
fn default_fetch_stall_timeout_ms() -> u64 {
    60_000
}
fn default_producer_queue_bytes() -> usize {
    128 * 1024 * 1024
}
fn default_max_record_bytes() -> usize {
    1 << 20
}
fn default_http_bind() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 9464))
}

impl Default for TopicsConfig {
    fn default() -> Self {
        TopicsConfig {
            input: default_input_topic(),
            chained: default_chained_topic(),
            anchors: default_anchors_topic(),
            quarantine: default_quarantine_topic(),
            state: default_state_topic(),
            create_missing: true,
            replication_factor: default_replication_factor(),
            trail_archived: false,
        }
    }
}

impl Default for CompiledSchemasConfig {
    fn default() -> Self {
        CompiledSchemasConfig {
            audit_event_ids: default_accepted_ids(),
            chained_record_id: default_chained_id(),
            quarantine_record_id: default_quarantine_id(),
            anchor_batch_id: default_anchor_id(),
        }
    }
}

impl Default for ProcessingConfig {
    fn default() -> Self {
        ProcessingConfig {
            commit_interval_ms: default_commit_interval_ms(),
            max_batch_records: default_max_batch_records(),
            max_record_bytes: default_max_record_bytes(),
            verify_threads: 0,
            max_batch_bytes: default_max_batch_bytes(),
            producer_queue_bytes: default_producer_queue_bytes(),
            fetch_stall_timeout_ms: default_fetch_stall_timeout_ms(),
        }
    }
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            bind: default_http_bind(),
            admin_token_file: None,
            liveness_timeout_ms: default_liveness_timeout_ms(),
        }
    }
}

impl Config {
    /// Reads `path`, applies the process environment's overrides, validates.
    pub fn load(path: &Path) -> Result<Config> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_toml_with_env(&text, std::env::vars())
    }

    /// Parses `text`, applies overrides from `env` (pairs of name and value;
    /// only `AUDITCHAIN__*` names are used), validates.
    pub fn from_toml_with_env(
        text: &str,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config> {
        let mut doc: toml::Table = text
            .parse()
            .map_err(|e: toml::de::Error| Error::config(error_path(&e), e.message().to_string()))?;
        for (name, value) in env {
            if let Some(path) = name.strip_prefix(ENV_PREFIX) {
                apply_override(&mut doc, path, &value)?;
            }
        }
        let config: Config =
            serde_path_to_error::deserialize(toml::Value::Table(doc)).map_err(|e| {
                let field = e.path().to_string();
                // serde's messages quote the offending value: not for a secret.
                let secret = is_secret_field(&field)
                    || field
                        .strip_prefix("librdkafka.")
                        .is_some_and(is_secret_property);
                let message = if secret {
                    "must be a string (the value is a secret and is not shown)".to_string()
                } else {
                    e.inner().message().to_string()
                };
                Error::config(field, message)
            })?;
        config.validate()?;
        Ok(config)
    }

    /// Cross-field and range rules serde cannot express.
    pub fn validate(&self) -> Result<()> {
        let non_empty = |field: &str, value: &str| {
            if value.trim().is_empty() {
                Err(Error::config(field, "must not be empty"))
            } else {
                Ok(())
            }
        };
        non_empty("kafka.bootstrap_servers", &self.kafka.bootstrap_servers)?;
        non_empty("kafka.group_id", &self.kafka.group_id)?;
        non_empty("kafka.instance_id", &self.kafka.instance_id)?;
        non_empty("signing.key_id", &self.signing.key_id)?;
        if !(1_000..=900_000).contains(&self.kafka.transaction_timeout_ms) {
            return Err(Error::config(
                "kafka.transaction_timeout_ms",
                "must be between 1000 and 900000 (the broker's transaction.max.timeout.ms default)",
            ));
        }
        let t = &self.topics;
        let names = [
            ("topics.input", &t.input),
            ("topics.chained", &t.chained),
            ("topics.anchors", &t.anchors),
            ("topics.quarantine", &t.quarantine),
            ("topics.state", &t.state),
        ];
        for (i, (field, name)) in names.iter().enumerate() {
            non_empty(field, name)?;
            if let Some((other, _)) = names[..i].iter().find(|(_, n)| n == name) {
                return Err(Error::config(
                    *field,
                    format!("`{name}` is already used by {other}; every topic must be distinct"),
                ));
            }
        }
        if t.replication_factor == 0 || t.replication_factor < -1 {
            return Err(Error::config(
                "topics.replication_factor",
                "must be -1 (broker default) or at least 1",
            ));
        }
        if let Some(registry) = &self.schema_registry {
            if !(registry.url.starts_with("http://") || registry.url.starts_with("https://")) {
                return Err(Error::config(
                    "schema_registry.url",
                    "must start with http:// or https://",
                ));
            }
            if registry.password.is_some() && registry.username.is_none() {
                return Err(Error::config(
                    "schema_registry.username",
                    "is required when schema_registry.password is set",
                ));
            }
        } else if self.schemas.audit_event_ids.is_empty() {
            return Err(Error::config(
                "schemas.audit_event_ids",
                "must list at least one id when no schema registry is configured",
            ));
        }
        let p = &self.processing;
        if p.commit_interval_ms == 0 {
            return Err(Error::config(
                "processing.commit_interval_ms",
                "must be at least 1",
            ));
        }
        if u128::from(p.commit_interval_ms) >= u128::from(self.kafka.transaction_timeout_ms) {
            return Err(Error::config(
                "processing.commit_interval_ms",
                format!(
                    "must be below kafka.transaction_timeout_ms ({}), or every transaction would time out",
                    self.kafka.transaction_timeout_ms
                ),
            ));
        }
        if p.max_batch_records == 0 {
            return Err(Error::config(
                "processing.max_batch_records",
                "must be at least 1",
            ));
        }
        if p.max_record_bytes == 0 {
            return Err(Error::config(
                "processing.max_record_bytes",
                "must be at least 1",
            ));
        }
        // An open transaction holds its records as lag until it commits,
        // and the lag is sampled every 5 s: a shorter limit would take a
        // quiet, open transaction for a stopped fetcher.
        if self.http.liveness_timeout_ms < 1_000 {
            return Err(Error::config(
                "http.liveness_timeout_ms",
                "must be at least 1000",
            ));
        }
        let least_stall = p.commit_interval_ms.saturating_add(10_000);
        if p.fetch_stall_timeout_ms != 0 && p.fetch_stall_timeout_ms < least_stall {
            return Err(Error::config(
                "processing.fetch_stall_timeout_ms",
                format!(
                    "must be 0 (off) or at least processing.commit_interval_ms + 10000 ({least_stall}): \
                     an open transaction's records count as lag until it commits, and lag is sampled every 5 s"
                ),
            ));
        }
        if p.max_batch_bytes < 1024 * 1024 {
            return Err(Error::config(
                "processing.max_batch_bytes",
                "must be at least 1 MiB (1048576)",
            ));
        }
        // librdkafka counts the queue in KiB and accepts at most 2^31-1 KiB.
        if p.producer_queue_bytes < 1024 * 1024 || p.producer_queue_bytes / 1024 > i32::MAX as usize
        {
            return Err(Error::config(
                "processing.producer_queue_bytes",
                "must be between 1 MiB and 2 TiB",
            ));
        }
        // The input-dependent part of this rule is checked at start-up
        // (`kafka::derive_output_limit`); these limits are known now.
        let wrapped = p.max_record_bytes.saturating_add(OUTPUT_ENVELOPE_BYTES);
        if wrapped > LIBRDKAFKA_MAX_MESSAGE_BYTES {
            return Err(Error::config(
                "processing.max_record_bytes",
                format!(
                    "must be at most {} so a value at the bound, wrapped in an output record, stays within librdkafka's message.max.bytes ceiling of {LIBRDKAFKA_MAX_MESSAGE_BYTES}",
                    LIBRDKAFKA_MAX_MESSAGE_BYTES - OUTPUT_ENVELOPE_BYTES
                ),
            ));
        }
        if let Some(set) = self
            .librdkafka
            .get("message.max.bytes")
            .and_then(|v| v.trim().parse::<usize>().ok())
        {
            if wrapped > set {
                return Err(Error::config(
                    "processing.max_record_bytes",
                    format!(
                        "is {}, but librdkafka.\"message.max.bytes\" is {set}: a value at the bound, wrapped in an output record ({OUTPUT_ENVELOPE_BYTES} bytes more), could not be produced; lower the bound or remove the override",
                        p.max_record_bytes
                    ),
                ));
            }
        }
        if self.producer_keys.reload_interval_ms == 0 {
            return Err(Error::config(
                "producer_keys.reload_interval_ms",
                "must be at least 1",
            ));
        }
        if let Some(file) = &self.http.admin_token_file {
            if file.as_os_str().is_empty() {
                return Err(Error::config(
                    "http.admin_token_file",
                    "must not be empty (leave it out to use AUDITCHAIN_ADMIN_TOKEN)",
                ));
            }
        }
        for key in self.librdkafka.keys() {
            if RESERVED_LIBRDKAFKA.contains(&key.as_str()) {
                return Err(Error::config(
                    format!("librdkafka.\"{key}\""),
                    "is set by auditchain itself for exactly-once processing and cannot be overridden",
                ));
            }
        }
        Ok(())
    }

    /// The producer's transactional id.
    pub fn transactional_id(&self) -> String {
        format!("{}-{}", self.kafka.group_id, self.kafka.instance_id)
    }
}

/// Sets `path` (segments separated by `__`, case-insensitive) in `doc`.
fn apply_override(doc: &mut toml::Table, path: &str, raw: &str) -> Result<()> {
    let segments: Vec<String> = path.split("__").map(|s| s.to_ascii_lowercase()).collect();
    let field = segments.join(".");
    if segments.iter().any(String::is_empty) {
        return Err(Error::config(
            field,
            format!("environment override {ENV_PREFIX}{path} has an empty path segment"),
        ));
    }
    let (last, parents) = segments
        .split_last()
        .ok_or_else(|| Error::config("", "empty override"))?;
    let mut table = doc;
    for segment in parents {
        let entry = table
            .entry(segment.clone())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        table = entry.as_table_mut().ok_or_else(|| {
            Error::config(
                field.clone(),
                format!("environment override {ENV_PREFIX}{path}: `{segment}` is not a table"),
            )
        })?;
    }
    // A credential or a raw librdkafka property is a string whatever it
    // looks like: a password `12345` must not become an integer (and fail
    // with an error that shows it).
    let value = if segments[0] == "librdkafka" || is_secret_field(&field) {
        toml::Value::String(raw.to_string())
    } else {
        parse_env_value(raw)
    };
    table.insert(last.clone(), value);
    Ok(())
}

/// Config fields holding secrets (their overrides are always strings).
fn is_secret_field(field: &str) -> bool {
    matches!(
        field,
        "schema_registry.password" | "schema_registry.username"
    )
}

/// A TOML literal if `raw` is one (`42`, `true`, `[1, 2]`), else a string.
fn parse_env_value(raw: &str) -> toml::Value {
    format!("v = {raw}")
        .parse::<toml::Table>()
        .ok()
        .and_then(|mut t| t.remove("v"))
        .filter(|v| !v.is_table())
        .unwrap_or_else(|| toml::Value::String(raw.to_string()))
}

/// toml's syntax errors carry no path; name the line instead.
fn error_path(e: &toml::de::Error) -> String {
    match e.span() {
        Some(span) => format!("<syntax at byte {}>", span.start),
        None => "<syntax>".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
        [kafka]
        bootstrap_servers = "127.0.0.1:9092"
        instance_id = "i-1"
        [signing]
        key_file = "processor.secret"
        key_id = "proc-1"
        [producer_keys]
        file = "keys.toml"
    "#;

    fn load(text: &str, env: &[(&str, &str)]) -> Result<Config> {
        Config::from_toml_with_env(
            text,
            env.iter().map(|(k, v)| (k.to_string(), v.to_string())),
        )
    }

    #[test]
    fn minimal_config_gets_the_design_defaults() {
        let c = load(MINIMAL, &[]).expect("valid");
        assert_eq!(c.topics.input, "audit.events");
        assert_eq!(c.topics.state, "audit.state");
        assert_eq!(c.kafka.group_id, "auditchain");
        assert_eq!(c.transactional_id(), "auditchain-i-1");
        assert_eq!(c.http.bind.to_string(), "127.0.0.1:9464");
        assert!(c.schema_registry.is_none());
        assert_eq!(c.processing.fetch_stall_timeout_ms, 60_000);
        let off = load(
            &format!("{MINIMAL}\n[processing]\nfetch_stall_timeout_ms = 0\n"),
            &[],
        )
        .expect("0 turns the fetch watch off");
        assert_eq!(off.processing.fetch_stall_timeout_ms, 0);
    }

    #[test]
    fn the_shipped_example_is_valid() {
        let text = include_str!("../../examples/auditchain.toml");
        let c = load(text, &[]).expect("examples/auditchain.toml must stay valid");
        assert!(c.schema_registry.is_some());
    }

    #[test]
    fn unknown_field_is_named() {
        let text = format!("{MINIMAL}\n[processing]\ncommit_intervl_ms = 5\n");
        let err = load(&text, &[]).expect_err("typo").to_string();
        assert!(err.contains("processing"), "{err}");
        assert!(err.contains("commit_intervl_ms"), "{err}");
    }

    #[test]
    fn missing_field_is_named() {
        let text = MINIMAL.replace("key_id = \"proc-1\"", "");
        let err = load(&text, &[]).expect_err("missing").to_string();
        assert!(err.contains("signing") && err.contains("key_id"), "{err}");
    }

    #[test]
    fn environment_overrides_win_and_keep_types() {
        let c = load(
            MINIMAL,
            &[
                ("AUDITCHAIN__KAFKA__BOOTSTRAP_SERVERS", "broker:29092"),
                ("AUDITCHAIN__PROCESSING__MAX_BATCH_RECORDS", "77"),
                ("AUDITCHAIN__LIBRDKAFKA__security.protocol", "SASL_SSL"),
                ("UNRELATED", "x"),
            ],
        )
        .expect("valid");
        assert_eq!(c.kafka.bootstrap_servers, "broker:29092");
        assert_eq!(c.processing.max_batch_records, 77);
        assert_eq!(
            c.librdkafka.get("security.protocol").map(String::as_str),
            Some("SASL_SSL")
        );
    }

    #[test]
    fn bad_override_type_names_the_field() {
        let err = load(
            MINIMAL,
            &[("AUDITCHAIN__PROCESSING__MAX_BATCH_RECORDS", "lots")],
        )
        .expect_err("not a number")
        .to_string();
        assert!(err.contains("processing.max_batch_records"), "{err}");
    }

    #[test]
    fn secrets_are_redacted_from_debug_and_kept_as_strings() {
        let text = format!(
            "{MINIMAL}\n[schema_registry]\nurl = \"https://reg-user:url-pass-77@registry:8081/apis\"\n\
             username = \"reg-user\"\npassword = \"reg-pass-77\"\n\
             [librdkafka]\n\"sasl.username\" = \"processor\"\n\"ssl.key.password\" = \"key-pass-77\"\n"
        );
        let c = load(&text, &[("AUDITCHAIN__LIBRDKAFKA__sasl.password", "12345")]).expect("valid");
        // A numeric password stays the string it was.
        assert_eq!(
            c.librdkafka.get("sasl.password").map(String::as_str),
            Some("12345")
        );
        let shown = format!("{c:?} {c:#?}");
        for secret in ["12345", "reg-pass-77", "url-pass-77", "key-pass-77"] {
            assert!(!shown.contains(secret), "`{secret}` in {shown}");
        }
        assert!(shown.contains("processor"), "non-secrets stay visible");
        assert_eq!(
            c.schema_registry.as_ref().map(RegistryConfig::display_url),
            Some("https://<redacted>@registry:8081/apis".to_string())
        );
    }

    #[test]
    fn a_mistyped_secret_is_not_echoed() {
        let text = format!("{MINIMAL}\n[librdkafka]\n\"sasl.password\" = 987654\n");
        let err = load(&text, &[]).expect_err("not a string").to_string();
        assert!(err.contains("librdkafka.sasl.password"), "{err}");
        assert!(!err.contains("987654"), "{err}");
        let text = format!(
            "{MINIMAL}\n[schema_registry]\nurl = \"http://r\"\nusername = \"u\"\npassword = 424242\n"
        );
        let err = load(&text, &[]).expect_err("not a string").to_string();
        assert!(err.contains("schema_registry.password"), "{err}");
        assert!(!err.contains("424242"), "{err}");
    }

    #[test]
    fn urls_lose_their_credentials_only() {
        assert_eq!(redact_url("http://h:1/p"), "http://h:1/p");
        assert_eq!(
            redact_url("http://u:p@h:1/p@x"),
            "http://<redacted>@h:1/p@x"
        );
        assert_eq!(redact_url("u:p@h"), "<redacted>@h");
    }

    #[test]
    fn cross_field_rules_name_the_field() {
        let cases: &[(&str, &str)] = &[
            (
                "[processing]\ncommit_interval_ms = 20000",
                "processing.commit_interval_ms",
            ),
            ("[topics]\nchained = \"audit.events\"", "topics.chained"),
            (
                "[librdkafka]\n\"enable.auto.commit\" = \"true\"",
                "librdkafka.\"enable.auto.commit\"",
            ),
            (
                "[schema_registry]\nurl = \"localhost:8081\"",
                "schema_registry.url",
            ),
            ("[schemas]\naudit_event_ids = []", "schemas.audit_event_ids"),
            (
                "[processing]\nmax_record_bytes = 999999000",
                "processing.max_record_bytes",
            ),
            (
                "[processing]\nmax_record_bytes = 1048576\n[librdkafka]\n\"message.max.bytes\" = \"1000000\"",
                "processing.max_record_bytes",
            ),
            (
                "[processing]\nfetch_stall_timeout_ms = 5000",
                "processing.fetch_stall_timeout_ms",
            ),
        ];
        for (extra, field) in cases {
            let err = load(&format!("{MINIMAL}\n{extra}\n"), &[])
                .expect_err(extra)
                .to_string();
            assert!(err.contains(field), "{extra}: {err}");
        }
    }
}
