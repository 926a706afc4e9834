use std::path::PathBuf;

/// What went wrong, naming the file, field, registry or Kafka call.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A secret key file that cannot be used.
    #[error("{}: {message}", path.display())]
    KeyFile {
        /// The file.
        path: PathBuf,
        /// Why.
        message: String,
    },
    /// A secret key given as bytes that cannot be used.
    #[error("secret key: {0}")]
    Key(String),
    /// An event the processor would quarantine.
    #[error("invalid AuditEvent: {field} {reason}")]
    InvalidEvent {
        /// The field.
        field: &'static str,
        /// Why.
        reason: String,
    },
    /// Avro encoding or decoding failed.
    #[error("Avro: {0}")]
    Avro(String),
    /// Registering or looking up the schema failed.
    #[error("schema registry {url}: {message}")]
    Registry {
        /// The registry.
        url: String,
        /// What failed.
        message: String,
    },
    /// A Kafka call failed.
    #[error("Kafka: {context}: {source}")]
    Kafka {
        /// What was being done.
        context: String,
        /// librdkafka's error.
        #[source]
        source: rdkafka::error::KafkaError,
    },
    /// A setting is missing or contradicts another.
    #[error("configuration: {0}")]
    Config(String),
}

impl Error {
    pub(crate) fn kafka(context: impl Into<String>, source: rdkafka::error::KafkaError) -> Self {
        Error::Kafka {
            context: context.into(),
            source,
        }
    }
}

/// `Result<T, Error>`.
pub type Result<T> = std::result::Result<T, Error>;
