//! Producer keys and the signed message of DESIGN.md §4.1.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use ed25519_dalek::Signer as _;

use crate::error::{Error, Result};

/// `"auditchain/v1/event\0" || lp(tenant_id) || lp(value)`.
pub fn event_msg(tenant_id: &str, value: &[u8]) -> Vec<u8> {
    const DOMAIN: &[u8] = b"auditchain/v1/event\0";
    let mut m = Vec::with_capacity(DOMAIN.len() + 8 + tenant_id.len() + value.len());
    m.extend_from_slice(DOMAIN);
    // Kafka caps records far below 4 GiB: the lengths always fit a u32.
    m.extend_from_slice(&(tenant_id.len() as u32).to_be_bytes());
    m.extend_from_slice(tenant_id.as_bytes());
    m.extend_from_slice(&(value.len() as u32).to_be_bytes());
    m.extend_from_slice(value);
    m
}

/// A producer's Ed25519 key and its id. `Debug` shows the id and the public
/// key, never the secret.
#[derive(Clone)]
pub struct SigningKey {
    key_id: String,
    key: ed25519_dalek::SigningKey,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("key_id", &self.key_id)
            .field(
                "public_key",
                &hex::encode(self.key.verifying_key().to_bytes()),
            )
            .finish_non_exhaustive()
    }
}

impl SigningKey {
    /// A key from the caller's 32-byte seed.
    pub fn from_seed(seed: &[u8], key_id: impl Into<String>) -> Result<Self> {
        let key_id = key_id.into();
        if key_id.is_empty() {
            return Err(Error::Key("the key id must not be empty".into()));
        }
        let seed: [u8; 32] = seed.try_into().map_err(|_| {
            Error::Key(format!(
                "an Ed25519 secret seed is 32 bytes, got {}",
                seed.len()
            ))
        })?;
        Ok(SigningKey {
            key_id,
            key: ed25519_dalek::SigningKey::from_bytes(&seed),
        })
    }

    /// An ed25519-dalek key with its id.
    pub fn from_dalek(key: ed25519_dalek::SigningKey, key_id: impl Into<String>) -> Self {
        SigningKey {
            key_id: key_id.into(),
            key,
        }
    }

    /// Reads the hex seed `auditchain keygen` writes, refusing a file that
    /// group or others can access.
    pub fn from_file(path: impl AsRef<Path>, key_id: impl Into<String>) -> Result<Self> {
        let path = path.as_ref();
        let err = |message: String| Error::KeyFile {
            path: path.to_path_buf(),
            message,
        };
        let meta = fs::metadata(path).map_err(|e| err(e.to_string()))?;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(err(format!(
                "is accessible by group or others (mode {mode:03o}); a secret key must be private to its owner: chmod 600 {}",
                path.display()
            )));
        }
        let text = fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
        let seed = hex::decode(text.trim())
            .map_err(|_| err("not an Ed25519 secret seed (invalid hex)".into()))?;
        if seed.len() != 32 {
            return Err(err(format!(
                "not an Ed25519 secret seed: expected 32 bytes (64 hex characters), found {}",
                seed.len()
            )));
        }
        Self::from_seed(&seed, key_id).map_err(|e| err(e.to_string()))
    }

    /// The same secret under another key id (a key set that names it
    /// differently, say).
    pub fn with_key_id(&self, key_id: impl Into<String>) -> Self {
        SigningKey {
            key_id: key_id.into(),
            key: self.key.clone(),
        }
    }

    /// The key id (the `auditchain-key-id` header).
    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// The public key.
    pub fn verifying_key(&self) -> ed25519_dalek::VerifyingKey {
        self.key.verifying_key()
    }

    /// The 64-byte `auditchain-sig` of `value` for `tenant_id`.
    pub fn sign(&self, tenant_id: &str, value: &[u8]) -> [u8; 64] {
        self.key.sign(&event_msg(tenant_id, value)).to_bytes()
    }
}
