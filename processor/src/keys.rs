//! Key files: the processor's secret key, producer key sets, `keygen`, and
//! reloading a key set when its file changes.
//!
//! A secret key file holds the 32-byte Ed25519 seed as hex. A key set file is
//! TOML:
//!
//! ```toml
//! [[keys]]
//! key_id = "billing-2026"
//! public_key = "<64 hex chars>"
//! tenants = ["acme", "globex"]   # or ["*"] for any tenant
//! revoked = false
//! ```

use std::collections::{HashMap, HashSet};
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use ed25519_dalek::{SigningKey, VerifyingKey};
use serde::Deserialize;

use crate::error::{Error, Result};

fn key_err(path: &Path, message: impl Into<String>) -> Error {
    Error::Key {
        path: path.to_path_buf(),
        message: message.into(),
    }
}

fn io_err(path: &Path, source: std::io::Error) -> Error {
    Error::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Reads an Ed25519 secret key file, refusing one that group or others can
/// read: a signing key anyone on the host can copy signs forged anchors.
pub fn load_signing_key(path: &Path) -> Result<SigningKey> {
    let meta = fs::metadata(path).map_err(|e| io_err(path, e))?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(key_err(
            path,
            format!(
                "is accessible by group or others (mode {mode:03o}); a secret key must be private to its owner: chmod 600 {}",
                path.display()
            ),
        ));
    }
    let text = fs::read_to_string(path).map_err(|e| io_err(path, e))?;
    let seed = decode_hex32(text.trim())
        .map_err(|m| key_err(path, format!("not an Ed25519 secret seed: {m}")))?;
    Ok(SigningKey::from_bytes(&seed))
}

/// Reads a public key file (hex) as written by `keygen`.
pub fn load_verifying_key(path: &Path) -> Result<VerifyingKey> {
    let text = fs::read_to_string(path).map_err(|e| io_err(path, e))?;
    parse_verifying_key(text.trim()).map_err(|m| key_err(path, m))
}

fn decode_hex32(text: &str) -> std::result::Result<[u8; 32], String> {
    let bytes = hex::decode(text).map_err(|e| format!("invalid hex ({e})"))?;
    <[u8; 32]>::try_from(bytes.as_slice()).map_err(|_| {
        format!(
            "expected 32 bytes (64 hex characters), found {}",
            bytes.len()
        )
    })
}

pub(crate) fn parse_verifying_key(text: &str) -> std::result::Result<VerifyingKey, String> {
    let bytes = decode_hex32(text)?;
    let key =
        VerifyingKey::from_bytes(&bytes).map_err(|e| format!("not an Ed25519 public key ({e})"))?;
    if key.is_weak() {
        return Err("is a small-order (weak) Ed25519 public key".into());
    }
    Ok(key)
}

/// The files `keygen` wrote.
#[derive(Debug, Clone)]
pub struct GeneratedKey {
    /// Secret seed, mode 0600.
    pub secret_path: PathBuf,
    /// Public key, hex.
    pub public_path: PathBuf,
    /// The public key.
    pub public_key: VerifyingKey,
}

/// Writes a new key pair as `<dir>/<key_id>.secret` (created 0600, never
/// overwriting) and `<dir>/<key_id>.pub`.
pub fn keygen(dir: &Path, key_id: &str) -> Result<GeneratedKey> {
    if key_id.is_empty() || key_id.contains(['/', '\\']) || key_id.starts_with('.') {
        return Err(key_err(
            dir,
            format!("key id `{key_id}` cannot be used as a file name"),
        ));
    }
    fs::create_dir_all(dir).map_err(|e| io_err(dir, e))?;
    let key = SigningKey::generate(&mut rand::rngs::OsRng);
    let secret_path = dir.join(format!("{key_id}.secret"));
    let public_path = dir.join(format!("{key_id}.pub"));
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&secret_path)
        .map_err(|e| io_err(&secret_path, e))?;
    writeln!(file, "{}", hex::encode(key.to_bytes())).map_err(|e| io_err(&secret_path, e))?;
    file.sync_all().map_err(|e| io_err(&secret_path, e))?;
    fs::write(
        &public_path,
        format!("{}\n", hex::encode(key.verifying_key().to_bytes())),
    )
    .map_err(|e| io_err(&public_path, e))?;
    Ok(GeneratedKey {
        secret_path,
        public_path,
        public_key: key.verifying_key(),
    })
}

/// Which tenants a key may sign for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tenants {
    /// Any tenant (`["*"]`).
    Any,
    /// Only these.
    Only(HashSet<String>),
}

/// One producer key of a key set.
#[derive(Debug, Clone)]
pub struct ProducerKey {
    /// The public key.
    pub public_key: VerifyingKey,
    /// Tenants it may sign for.
    pub tenants: Tenants,
    /// Revoked keys are known but sign nothing valid.
    pub revoked: bool,
}

impl ProducerKey {
    /// Whether this key may sign events of `tenant`.
    pub fn allows(&self, tenant: &str) -> bool {
        !self.revoked
            && match &self.tenants {
                Tenants::Any => true,
                Tenants::Only(set) => set.contains(tenant),
            }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeySetFile {
    #[serde(default)]
    keys: Vec<KeyEntry>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyEntry {
    key_id: String,
    public_key: String,
    #[serde(default = "any_tenant")]
    tenants: Vec<String>,
    #[serde(default)]
    revoked: bool,
}

fn any_tenant() -> Vec<String> {
    vec!["*".into()]
}

/// A set of public keys by key id.
#[derive(Debug, Clone, Default)]
pub struct KeySet {
    keys: HashMap<String, ProducerKey>,
}

impl KeySet {
    /// Parses a key set from TOML text; `origin` names it in errors.
    pub fn parse(text: &str, origin: &Path) -> Result<KeySet> {
        let file: KeySetFile = toml::from_str(text).map_err(|e| key_err(origin, e.to_string()))?;
        let mut keys = HashMap::with_capacity(file.keys.len());
        for (i, entry) in file.keys.into_iter().enumerate() {
            let public_key = parse_verifying_key(entry.public_key.trim()).map_err(|m| {
                key_err(
                    origin,
                    format!("keys[{i}] ({}): public_key {m}", entry.key_id),
                )
            })?;
            if entry.key_id.is_empty() {
                return Err(key_err(
                    origin,
                    format!("keys[{i}]: key_id must not be empty"),
                ));
            }
            let tenants = if entry.tenants.iter().any(|t| t == "*") {
                Tenants::Any
            } else {
                Tenants::Only(entry.tenants.into_iter().collect())
            };
            let key = ProducerKey {
                public_key,
                tenants,
                revoked: entry.revoked,
            };
            if keys.insert(entry.key_id.clone(), key).is_some() {
                return Err(key_err(
                    origin,
                    format!("key id `{}` appears twice", entry.key_id),
                ));
            }
        }
        Ok(KeySet { keys })
    }

    /// Reads and parses a key set file.
    pub fn load(path: &Path) -> Result<KeySet> {
        let text = fs::read_to_string(path).map_err(|e| io_err(path, e))?;
        Self::parse(&text, path)
    }

    /// The key with this id.
    pub fn get(&self, key_id: &str) -> Option<&ProducerKey> {
        self.keys.get(key_id)
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// All keys that are not revoked (for checking processor signatures).
    pub fn active(&self) -> impl Iterator<Item = (&str, &VerifyingKey)> {
        self.keys
            .iter()
            .filter(|(_, k)| !k.revoked)
            .map(|(id, k)| (id.as_str(), &k.public_key))
    }
}

/// A key set that follows its file: a background thread re-reads the file
/// when its modification time or size changes. A file that stops parsing is
/// reported, the last good set stays in force, and [`WatchedKeySet::stale`]
/// says so until the file loads again: until then a key revoked in the file
/// is still accepted.
#[derive(Debug)]
pub struct WatchedKeySet {
    current: Arc<RwLock<Arc<KeySet>>>,
    reloads: Arc<AtomicU64>,
    failures: Arc<AtomicU64>,
    stale: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
}

fn fingerprint(path: &Path) -> Option<(SystemTime, u64)> {
    let meta = fs::metadata(path).ok()?;
    Some((meta.modified().ok()?, meta.len()))
}

impl WatchedKeySet {
    /// Loads `path` (an error if it is missing or invalid) and starts
    /// watching it every `interval`.
    pub fn start(path: &Path, interval: Duration) -> Result<WatchedKeySet> {
        let initial = KeySet::load(path)?;
        let current = Arc::new(RwLock::new(Arc::new(initial)));
        let reloads = Arc::new(AtomicU64::new(0));
        let failures = Arc::new(AtomicU64::new(0));
        let stale = Arc::new(AtomicBool::new(false));
        let stop = Arc::new(AtomicBool::new(false));
        let watched = WatchedKeySet {
            current: Arc::clone(&current),
            reloads: Arc::clone(&reloads),
            failures: Arc::clone(&failures),
            stale: Arc::clone(&stale),
            stop: Arc::clone(&stop),
        };
        let path = path.to_path_buf();
        let mut last = fingerprint(&path);
        std::thread::Builder::new()
            .name("keyset-watch".into())
            .spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    std::thread::park_timeout(interval);
                    let now = fingerprint(&path);
                    if now == last {
                        continue;
                    }
                    last = now;
                    match KeySet::load(&path) {
                        Ok(set) => {
                            let n = set.len();
                            if let Ok(mut guard) = current.write() {
                                *guard = Arc::new(set);
                            }
                            reloads.fetch_add(1, Ordering::Relaxed);
                            stale.store(false, Ordering::Relaxed);
                            tracing::info!(path = %path.display(), keys = n, "producer key set reloaded");
                        }
                        Err(e) => {
                            failures.fetch_add(1, Ordering::Relaxed);
                            stale.store(true, Ordering::Relaxed);
                            tracing::error!(error = %e, "producer key set reload failed; keeping the previous set: a key revoked in the file is still accepted until it loads (auditchain_keyset_stale)");
                        }
                    }
                }
            })
            .map_err(|e| Error::Thread(format!("starting the key set watcher: {e}")))?;
        Ok(watched)
    }

    /// The key set in force now.
    pub fn current(&self) -> Arc<KeySet> {
        match self.current.read() {
            Ok(guard) => Arc::clone(&guard),
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        }
    }

    /// Successful reloads since start.
    pub fn reloads(&self) -> u64 {
        self.reloads.load(Ordering::Relaxed)
    }

    /// Failed reloads since start.
    pub fn reload_failures(&self) -> u64 {
        self.failures.load(Ordering::Relaxed)
    }

    /// Whether the file changed and did not load: the set in force is older
    /// than the file.
    pub fn stale(&self) -> bool {
        self.stale.load(Ordering::Relaxed)
    }
}

impl Drop for WatchedKeySet {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Processor public keys from `KEY_ID=FILE` specifications (the
/// `--processor-key` arguments of the trail tools), by key id.
pub fn load_processor_keys(specs: &[String]) -> Result<HashMap<String, VerifyingKey>> {
    let mut keys = HashMap::with_capacity(specs.len());
    for spec in specs {
        let (id, file) = spec.split_once('=').ok_or_else(|| Error::Key {
            path: spec.into(),
            message: "expected KEY_ID=FILE".into(),
        })?;
        keys.insert(id.to_string(), load_verifying_key(Path::new(file))?);
    }
    Ok(keys)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keygen_writes_a_private_secret_that_loads() {
        let dir = tempfile::tempdir().expect("tempdir");
        let generated = keygen(dir.path(), "proc-1").expect("keygen");
        let mode = fs::metadata(&generated.secret_path)
            .expect("meta")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let key = load_signing_key(&generated.secret_path).expect("load");
        assert_eq!(key.verifying_key(), generated.public_key);
        assert_eq!(
            load_verifying_key(&generated.public_path).expect("pub"),
            generated.public_key
        );
        // Never overwrites an existing key.
        assert!(keygen(dir.path(), "proc-1").is_err());
    }

    #[test]
    fn a_secret_readable_by_others_is_refused_with_the_reason() {
        let dir = tempfile::tempdir().expect("tempdir");
        let generated = keygen(dir.path(), "k").expect("keygen");
        fs::set_permissions(&generated.secret_path, fs::Permissions::from_mode(0o644))
            .expect("chmod");
        let err = load_signing_key(&generated.secret_path)
            .expect_err("must refuse")
            .to_string();
        assert!(
            err.contains("group or others") && err.contains("644"),
            "{err}"
        );
    }

    #[test]
    fn key_set_binds_tenants_and_revocation() {
        let a = hex::encode(SigningKey::from_bytes(&[1; 32]).verifying_key().to_bytes());
        let b = hex::encode(SigningKey::from_bytes(&[2; 32]).verifying_key().to_bytes());
        let text = format!(
            "[[keys]]\nkey_id = \"a\"\npublic_key = \"{a}\"\ntenants = [\"acme\"]\n\
             [[keys]]\nkey_id = \"b\"\npublic_key = \"{b}\"\nrevoked = true\n"
        );
        let set = KeySet::parse(&text, Path::new("keys.toml")).expect("parse");
        let ka = set.get("a").expect("a");
        assert!(ka.allows("acme") && !ka.allows("globex"));
        let kb = set.get("b").expect("b");
        assert!(!kb.allows("acme"));
        assert_eq!(set.active().count(), 1);
    }

    /// Waits (bounded) until `done` holds: the watcher runs on its own thread.
    fn eventually(what: &str, done: impl Fn() -> bool) {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while !done() {
            assert!(std::time::Instant::now() < deadline, "{what}");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    #[test]
    fn a_key_set_file_that_stops_loading_is_stale_until_it_loads_again() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("keys.toml");
        let a = hex::encode(SigningKey::from_bytes(&[1; 32]).verifying_key().to_bytes());
        let good = |revoked: bool| {
            format!("[[keys]]\nkey_id = \"a\"\npublic_key = \"{a}\"\nrevoked = {revoked}\n")
        };
        fs::write(&path, good(false)).expect("write");
        let watched = WatchedKeySet::start(&path, Duration::from_millis(20)).expect("start");
        assert!(!watched.stale());
        // The operator revokes the key but breaks the file doing it.
        fs::write(&path, format!("{}[[keys]]\nkey_id = \"b\"\n", good(true))).expect("write");
        eventually("the broken file was not noticed", || {
            watched.reload_failures() == 1
        });
        assert!(watched.stale());
        assert!(
            !watched.current().get("a").expect("a").revoked,
            "old set in force"
        );
        fs::write(&path, good(true)).expect("write");
        eventually("the mended file was not loaded", || watched.reloads() == 1);
        assert!(!watched.stale());
        assert!(watched.current().get("a").expect("a").revoked);
    }

    #[test]
    fn bad_key_set_entries_are_named() {
        let err = KeySet::parse(
            "[[keys]]\nkey_id = \"x\"\npublic_key = \"abcd\"\n",
            Path::new("keys.toml"),
        )
        .expect_err("short key")
        .to_string();
        assert!(
            err.contains("keys[0] (x)") && err.contains("32 bytes"),
            "{err}"
        );
    }
}
