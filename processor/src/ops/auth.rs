//! Who may use the operator endpoints (`POST /admin/pause`, `/admin/resume`).
//!
//! Pausing the processor stops the audit trail, so once `http.bind` is
//! reachable from other hosts (a pod address Prometheus scrapes), only a
//! caller holding the admin token may do it: `Authorization: Bearer
//! <token>`. The token comes from `http.admin_token_file` (refused when
//! group or others can read it, like a secret key file) or the environment
//! variable [`ADMIN_TOKEN_ENV`]; `run` refuses to start on a non-loopback
//! address without one. Only the token's BLAKE3 hash is kept, compared in
//! constant time, and neither is ever logged or shown by `Debug`.
//! `/metrics`, `/healthz` and `/readyz` stay open.

use std::fmt;
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use crate::config::HttpConfig;
use crate::error::{Error, Result};

/// The environment variable that may carry the admin token.
pub const ADMIN_TOKEN_ENV: &str = "AUDITCHAIN_ADMIN_TOKEN";

/// Shortest token accepted: 16 characters (a `openssl rand -hex 32` token
/// has 64).
pub const MIN_TOKEN_CHARS: usize = 16;

const FIELD: &str = "http.admin_token_file";

/// The admin endpoints' access rule: open (no token configured, loopback
/// only) or a bearer token.
#[derive(Clone, Default)]
pub struct AdminAuth {
    token_hash: Option<blake3::Hash>,
}

impl fmt::Debug for AdminAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdminAuth")
            .field(
                "token",
                &if self.token_hash.is_some() {
                    crate::config::REDACTED
                } else {
                    "none"
                },
            )
            .finish()
    }
}

impl AdminAuth {
    /// No token: every admin request is allowed (loopback binds only).
    pub fn open() -> AdminAuth {
        AdminAuth { token_hash: None }
    }

    /// Requires `token`. `source` names where it came from, for the error.
    pub fn with_token(token: &str, source: &str) -> Result<AdminAuth> {
        let token = token.trim();
        if token.chars().count() < MIN_TOKEN_CHARS {
            return Err(Error::config(
                FIELD,
                format!(
                    "the admin token from {source} is shorter than {MIN_TOKEN_CHARS} characters (generate one: openssl rand -hex 32)"
                ),
            ));
        }
        Ok(AdminAuth {
            token_hash: Some(blake3::hash(token.as_bytes())),
        })
    }

    /// The rule for `http`: the token from `http.admin_token_file` or from
    /// `env_token` (the value of [`ADMIN_TOKEN_ENV`], if set); without one,
    /// open on a loopback bind and an error naming the field otherwise.
    pub fn resolve(http: &HttpConfig, env_token: Option<String>) -> Result<AdminAuth> {
        let env_token = env_token.filter(|t| !t.is_empty());
        match (&http.admin_token_file, env_token) {
            (Some(_), Some(_)) => Err(Error::config(
                FIELD,
                format!("is set and so is {ADMIN_TOKEN_ENV}; give the admin token one way only"),
            )),
            (Some(file), None) => {
                let token = read_token_file(file)?;
                AdminAuth::with_token(&token, &file.display().to_string())
            }
            (None, Some(token)) => AdminAuth::with_token(&token, ADMIN_TOKEN_ENV),
            (None, None) if is_loopback(&http.bind) => Ok(AdminAuth::open()),
            (None, None) => Err(Error::config(
                FIELD,
                format!(
                    "is required because http.bind ({}) is not a loopback address: anyone who can reach it could pause the processor. Give a token file (mode 0600) or set {ADMIN_TOKEN_ENV}",
                    http.bind
                ),
            )),
        }
    }

    /// Whether a token is required.
    pub fn requires_token(&self) -> bool {
        self.token_hash.is_some()
    }

    /// Whether a request with this `Authorization` header value may use the
    /// admin endpoints. Constant time in the token: both sides are hashed
    /// and `blake3::Hash` compares in constant time.
    pub fn allows(&self, authorization: Option<&[u8]>) -> bool {
        let Some(expected) = &self.token_hash else {
            return true;
        };
        let Some(value) = authorization else {
            return false;
        };
        let Some(presented) = bearer(value) else {
            return false;
        };
        blake3::hash(presented) == *expected
    }
}

/// Whether `bind` only accepts local connections.
pub fn is_loopback(bind: &SocketAddr) -> bool {
    bind.ip().is_loopback()
}

/// The credentials of a `Bearer` authorization value (scheme
/// case-insensitive, RFC 7235).
fn bearer(value: &[u8]) -> Option<&[u8]> {
    let space = value.iter().position(|b| *b == b' ')?;
    let (scheme, rest) = value.split_at(space);
    if !scheme.eq_ignore_ascii_case(b"bearer") {
        return None;
    }
    let token = rest.trim_ascii();
    (!token.is_empty()).then_some(token)
}

fn read_token_file(path: &Path) -> Result<String> {
    let io = |source| Error::Io {
        path: path.to_path_buf(),
        source,
    };
    let meta = std::fs::metadata(path).map_err(io)?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(Error::config(
            FIELD,
            format!(
                "{} is accessible by group or others (mode {mode:03o}); the admin token must be private to its owner: chmod 600 {}",
                path.display(),
                path.display()
            ),
        ));
    }
    std::fs::read_to_string(path).map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    const TOKEN: &str = "0123456789abcdef-token";

    fn http(bind: &str, file: Option<&Path>) -> HttpConfig {
        HttpConfig {
            bind: bind.parse().expect("address"),
            admin_token_file: file.map(Path::to_path_buf),
            ..HttpConfig::default()
        }
    }

    #[test]
    fn loopback_without_a_token_is_open() {
        let auth = AdminAuth::resolve(&http("127.0.0.1:9464", None), None).expect("open");
        assert!(!auth.requires_token());
        assert!(auth.allows(None));
        let auth = AdminAuth::resolve(&http("[::1]:9464", None), None).expect("open");
        assert!(auth.allows(None));
    }

    #[test]
    fn a_pod_address_without_a_token_fails_naming_the_field() {
        for bind in ["0.0.0.0:9464", "10.1.2.3:9464", "[::]:9464"] {
            let err = AdminAuth::resolve(&http(bind, None), None)
                .expect_err("needs a token")
                .to_string();
            assert!(err.contains("http.admin_token_file"), "{err}");
            assert!(err.contains(ADMIN_TOKEN_ENV), "{err}");
        }
    }

    #[test]
    fn the_token_is_required_and_compared_exactly() {
        let auth =
            AdminAuth::resolve(&http("0.0.0.0:9464", None), Some(TOKEN.into())).expect("token");
        assert!(auth.requires_token());
        assert!(auth.allows(Some(format!("Bearer {TOKEN}").as_bytes())));
        assert!(auth.allows(Some(format!("bearer  {TOKEN} ").as_bytes())));
        for bad in [
            String::new(),
            "Bearer".into(),
            "Bearer ".into(),
            TOKEN.into(),
            format!("Basic {TOKEN}"),
            format!("Bearer {TOKEN}x"),
            format!("Bearer {}", &TOKEN[..TOKEN.len() - 1]),
            format!("Bearer {}", TOKEN.to_uppercase()),
        ] {
            assert!(!auth.allows(Some(bad.as_bytes())), "`{bad}` let in");
        }
        assert!(!auth.allows(None));
    }

    #[test]
    fn a_token_also_guards_a_loopback_bind() {
        let auth =
            AdminAuth::resolve(&http("127.0.0.1:9464", None), Some(TOKEN.into())).expect("token");
        assert!(!auth.allows(None));
    }

    #[test]
    fn token_files_must_be_private_and_long_enough() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("admin.token");
        std::fs::write(&file, format!("{TOKEN}\n")).expect("write");
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        let err = AdminAuth::resolve(&http("0.0.0.0:1", Some(&file)), None)
            .expect_err("readable by others")
            .to_string();
        assert!(
            err.contains("http.admin_token_file") && err.contains("644"),
            "{err}"
        );
        assert!(!err.contains(TOKEN), "{err}");
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        let auth = AdminAuth::resolve(&http("0.0.0.0:1", Some(&file)), None).expect("private");
        // The trailing newline of the file is not part of the token.
        assert!(auth.allows(Some(format!("Bearer {TOKEN}").as_bytes())));
        let err = AdminAuth::resolve(&http("0.0.0.0:1", Some(&file)), Some(TOKEN.into()))
            .expect_err("both")
            .to_string();
        assert!(err.contains(ADMIN_TOKEN_ENV), "{err}");
        std::fs::write(&file, "short\n").expect("write");
        let err = AdminAuth::resolve(&http("0.0.0.0:1", Some(&file)), None)
            .expect_err("too short")
            .to_string();
        assert!(err.contains("shorter"), "{err}");
    }

    #[test]
    fn debug_never_shows_the_token() {
        let auth = AdminAuth::with_token(TOKEN, "test").expect("token");
        let shown = format!("{auth:?}");
        assert!(
            !shown.contains(TOKEN) && shown.contains("redacted"),
            "{shown}"
        );
    }
}
