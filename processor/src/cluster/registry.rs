//! The Confluent-compatible schema registry, through `schema_registry_converter`.
//!
//! The registry is optional (DESIGN.md §2): without one the processor uses
//! the compiled-in schemas and the ids configured in `[schemas]`.

use std::time::Duration;

use schema_registry_converter::async_impl::schema_registry::{
    get_schema_by_id, post_schema, SrSettings,
};
use schema_registry_converter::error::SRCError;
use schema_registry_converter::schema_registry_common::{SchemaType, SuppliedSchema};

use crate::config::RegistryConfig;
use crate::error::{Error, Result};

/// A registry client. Its `Debug` form shows the URL without credentials.
#[derive(Clone)]
pub struct Registry {
    settings: SrSettings,
    /// For messages: without credentials.
    url: String,
    /// Strings no message may contain (the password, URL credentials).
    secrets: Vec<String>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry").field("url", &self.url).finish()
    }
}

/// What the registry says about a schema id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    /// The schema text (Avro JSON).
    Found(String),
    /// The registry does not know the id, or it is not an Avro schema.
    Unknown,
}

impl Registry {
    /// A client for `config.url`, with basic auth when configured.
    pub fn new(config: &RegistryConfig) -> Result<Self> {
        let mut builder = SrSettings::new_builder(config.url.trim_end_matches('/').to_string());
        builder.set_timeout(Duration::from_secs(10));
        if let Some(user) = &config.username {
            builder.set_basic_authorization(user, config.password.as_deref());
        }
        // Error texts of the HTTP client may quote the URL: scrub the
        // password and any credentials in the URL from whatever we report.
        let mut secrets: Vec<String> = config.password.iter().cloned().collect();
        if let Some((_, rest)) = config.url.split_once("://") {
            let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
            if let Some((userinfo, _)) = authority.rsplit_once('@') {
                secrets.push(userinfo.to_string());
                if let Some((_, pass)) = userinfo.split_once(':') {
                    secrets.push(pass.to_string());
                }
            }
        }
        secrets.retain(|s| !s.is_empty());
        let url = config.display_url();
        let settings = builder.build().map_err(|e| {
            Error::Registry(scrub(
                &secrets,
                &format!("configuring the client for {url}: {}", e.error),
            ))
        })?;
        Ok(Registry {
            settings,
            url,
            secrets,
        })
    }

    /// `message` with every secret of this client replaced.
    fn scrub(&self, message: &str) -> String {
        scrub(&self.secrets, message)
    }

    /// A client for `url` without authentication.
    pub fn from_url(url: &str) -> Result<Self> {
        Self::new(&RegistryConfig {
            url: url.to_string(),
            username: None,
            password: None,
        })
    }

    /// The client settings, for `schema_registry_converter`'s encoders and decoders.
    pub fn settings(&self) -> &SrSettings {
        &self.settings
    }

    /// Registers `schema_json` under `subject` (idempotent) and returns its id.
    pub async fn register(&self, subject: &str, schema_json: &str) -> Result<u32> {
        let supplied = SuppliedSchema::new(None, SchemaType::Avro, schema_json.to_string());
        post_schema(&self.settings, subject.to_string(), supplied)
            .await
            .map(|registered| registered.id)
            .map_err(|e| self.error(&format!("registering subject `{subject}`"), &e))
    }

    /// Looks up schema `id`. A registry that cannot be reached is an error
    /// (the caller retries); only a definite "no such schema" is `Unknown`.
    pub async fn lookup(&self, id: u32) -> Result<Lookup> {
        match get_schema_by_id(id, &self.settings).await {
            Ok(registered) if registered.schema_type == SchemaType::Avro => {
                Ok(Lookup::Found(registered.schema))
            }
            Ok(_) => Ok(Lookup::Unknown),
            // schema_registry_converter reports HTTP status only in its
            // message. A client error about this id (404 "no schema with
            // this id", 422, 400 ...) is an answer, and the same every time:
            // retrying it would stall the pipeline, so the records are
            // quarantined SCHEMA_UNKNOWN. Authentication, timeouts, rate
            // limits and server errors are outages, retried with backoff.
            Err(e) if !e.retriable && is_answer_about_the_id(&describe(&e)) => {
                tracing::warn!(schema_id = id, error = %self.scrub(&describe(&e)), "the registry refused this schema id; its records are quarantined SCHEMA_UNKNOWN");
                Ok(Lookup::Unknown)
            }
            Err(e) => Err(self.error(&format!("looking up schema id {id}"), &e)),
        }
    }

    fn error(&self, what: &str, e: &SRCError) -> Error {
        Error::Registry(self.scrub(&format!("{what} at {}: {}", self.url, describe(e))))
    }
}

fn scrub(secrets: &[String], message: &str) -> String {
    secrets.iter().fold(message.to_string(), |m, s| {
        m.replace(s.as_str(), crate::config::REDACTED)
    })
}

/// Whether a registry error message carries a 4xx status that answers for
/// the id itself rather than for the client or the server.
fn is_answer_about_the_id(message: &str) -> bool {
    let status = message.split("status ").skip(1).find_map(|rest| {
        let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
        digits.parse::<u16>().ok()
    });
    matches!(status, Some(400..=499)) && !matches!(status, Some(401 | 403 | 407 | 408 | 429))
}

fn describe(e: &SRCError) -> String {
    match &e.cause {
        Some(cause) => format!("{} ({cause})", e.error),
        None => e.error.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::is_answer_about_the_id;

    #[test]
    fn client_errors_about_the_id_are_answers_and_the_rest_outages() {
        for answer in [
            "HTTP status 404 Not Found",
            "status 422",
            "got status 400: bad id",
        ] {
            assert!(is_answer_about_the_id(answer), "{answer}");
        }
        for outage in [
            "status 401",
            "status 403",
            "status 429",
            "status 408",
            "status 500",
            "status 503",
            "connection refused",
            "status abc",
        ] {
            assert!(!is_answer_about_the_id(outage), "{outage}");
        }
    }
}
