//! The AuditEvent schema's id from a Confluent-compatible registry.

use std::time::Duration;

use schema_registry_converter::async_impl::schema_registry::{
    get_schema_by_subject, post_schema, SrSettings,
};
use schema_registry_converter::schema_registry_common::{
    SchemaType, SubjectNameStrategy, SuppliedSchema,
};

use crate::error::{Error, Result};
use crate::event::AUDIT_EVENT_AVSC;

/// Registers the AuditEvent schema under `<topic>-value` (idempotent), or
/// with `lookup_only` takes the subject's latest version, and returns its id.
pub async fn schema_id(
    url: &str,
    auth: Option<(&str, Option<&str>)>,
    topic: &str,
    lookup_only: bool,
) -> Result<u32> {
    let err = |message: String| Error::Registry {
        url: url.to_string(),
        message,
    };
    let mut builder = SrSettings::new_builder(url.trim_end_matches('/').to_string());
    builder.set_timeout(Duration::from_secs(10));
    if let Some((user, password)) = auth {
        builder.set_basic_authorization(user, password);
    }
    let settings = builder
        .build()
        .map_err(|e| err(format!("configuring the client: {}", e.error)))?;
    let subject = format!("{topic}-value");
    let result = if lookup_only {
        get_schema_by_subject(
            &settings,
            &SubjectNameStrategy::TopicNameStrategy(topic.to_string(), false),
        )
        .await
    } else {
        let supplied = SuppliedSchema::new(None, SchemaType::Avro, AUDIT_EVENT_AVSC.to_string());
        post_schema(&settings, subject.clone(), supplied).await
    };
    result.map(|r| r.id).map_err(|e| {
        let what = if lookup_only {
            "looking up"
        } else {
            "registering"
        };
        err(match &e.cause {
            Some(cause) => format!("{what} subject `{subject}`: {} ({cause})", e.error),
            None => format!("{what} subject `{subject}`: {}", e.error),
        })
    })
}
