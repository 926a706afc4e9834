//! The crate's one error type.
//!
//! Kafka errors are classified the way librdkafka's own
//! `examples/transactions.c` does it, because the right reaction differs:
//! a retriable error is tried again as is, an abortable one aborts the open
//! transaction and rewinds to the committed offsets, a fatal one needs a new
//! producer (and so a rejoin and a state restore).

use std::path::PathBuf;

use rdkafka::error::{KafkaError, RDKafkaErrorCode};

/// Result with the crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in auditchain, with a message that says what
/// to look at.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The configuration is invalid; `field` is its dotted path.
    #[error("config field `{field}`: {message}")]
    Config {
        /// Dotted path of the offending field, e.g. `kafka.group_id`.
        field: String,
        /// What is wrong with it.
        message: String,
    },

    /// A verify checkpoint is malformed or does not fit the trail.
    #[error("checkpoint: {0}")]
    Checkpoint(String),

    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },

    /// A key or key-set file is malformed or unsafe.
    #[error("key file {path}: {message}")]
    Key {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },

    /// An Avro schema or datum could not be processed.
    #[error("avro: {0}")]
    Avro(String),

    /// The schema registry answered with an error or could not be reached.
    #[error("schema registry: {0}")]
    Registry(String),

    /// A Kafka topic exists with a layout the processor cannot work with.
    #[error("topic `{topic}`: {message}")]
    Topic {
        /// The topic.
        topic: String,
        /// What is wrong with it.
        message: String,
    },

    /// The producer SDK (`auditchain produce`) failed.
    #[error("{0}")]
    Producer(#[from] auditchain_producer::Error),

    /// A client could not connect to the cluster for a reason retrying will
    /// not fix: its credentials were refused, or the TLS handshake failed
    /// (an untrusted certificate).
    #[error("cannot connect to Kafka at {bootstrap}: {cause}: {detail}")]
    Connect {
        /// The bootstrap servers.
        bootstrap: String,
        /// What failed and what to check, e.g. `SASL authentication failed`.
        cause: String,
        /// librdkafka's own description.
        detail: String,
    },

    /// A Kafka client operation failed; `context` says which.
    #[error("{context}: {source}")]
    Kafka {
        /// What was being done.
        context: String,
        /// librdkafka's error.
        source: KafkaError,
    },

    /// An environment variable (e.g. an `OTEL_*` one) asks for something
    /// that cannot be done.
    #[error("environment variable `{variable}`: {message}")]
    Environment {
        /// The variable.
        variable: String,
        /// What is wrong with it.
        message: String,
    },

    /// A transaction call kept failing with a retriable error: whether the
    /// transaction committed is unknown, so the producer is re-initialised
    /// (a fatal class).
    #[error("transaction outcome unknown after retries: {0}")]
    OutcomeUnknown(String),

    /// Stored chain state is inconsistent with what the processor expects,
    /// or an invariant of the processor's own bookkeeping broke.
    #[error("chain state: {0}")]
    State(String),

    /// A thread or thread pool could not be started, or one ended without
    /// its result.
    #[error("thread: {0}")]
    Thread(String),

    /// Waiting for something (the end of a topic, an open transaction to
    /// end) took longer than allowed.
    #[error("timed out: {0}")]
    Timeout(String),

    /// What was asked for is not in the trail.
    #[error("not found: {0}")]
    NotFound(String),

    /// An owned input partition lagged while none of its records reached
    /// the consumer for `processing.fetch_stall_timeout_ms`: its fetcher
    /// stopped, and only a new consumer restarts it (`processor::watch`).
    #[error(
        "input partition {partition} has lagged for {quiet_secs} s with none of its records \
         arriving: its fetcher stopped; a new session (consumer and producer) takes over"
    )]
    FetchStalled {
        /// The input partition.
        partition: i32,
        /// How long none of its records arrived.
        quiet_secs: u64,
    },

    /// A tenant bundle could not be written or read, or is not a bundle.
    #[error("bundle: {0}")]
    Bundle(String),

    /// A state restore did not reach the end (the high watermark) of every
    /// partition in time, typically because a previous owner's transaction
    /// is still open and holds the last stable offset back. Not fatal and no
    /// sign of a broken producer: retry the restore after a backoff (see
    /// [`crate::state::restore`]).
    #[error(
        "restoring chain state from `{topic}`: partitions {partitions:?} made no progress towards \
         their end for {limit_secs} s, {waited_secs} s into the restore ({detail}); not fatal: retry \
         the restore"
    )]
    RestoreIncomplete {
        /// The state topic.
        topic: String,
        /// The partitions that stood still before their high watermark.
        partitions: Vec<i32>,
        /// How long a partition may stand still
        /// ([`crate::state::RESTORE_STALL_LIMIT`]).
        limit_secs: u64,
        /// How long the restore read.
        waited_secs: u64,
        /// Each partition's position, last stable offset and high watermark.
        detail: String,
    },
}

/// How to react to a Kafka error (see the module documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// Try the same call again.
    Retriable,
    /// Abort the transaction, rewind to the committed offsets, redo.
    Abortable,
    /// The producer is unusable: build a new one, rejoin, restore state.
    Fatal,
}

impl Error {
    /// Wraps a Kafka error with what was being done.
    pub fn kafka(context: impl Into<String>, source: KafkaError) -> Self {
        Error::Kafka {
            context: context.into(),
            source,
        }
    }

    /// Shorthand for a config error on `field`.
    pub fn config(field: impl Into<String>, message: impl Into<String>) -> Self {
        Error::Config {
            field: field.into(),
            message: message.into(),
        }
    }

    /// Whether this is an incomplete state restore, which the caller retries
    /// after a backoff rather than treating as fatal.
    pub fn is_restore_incomplete(&self) -> bool {
        matches!(self, Error::RestoreIncomplete { .. })
    }

    /// The Kafka error class, or `None` for errors that are not Kafka's.
    pub fn class(&self) -> Option<ErrorClass> {
        match self {
            Error::Kafka { source, .. } => Some(classify(source)),
            Error::OutcomeUnknown(_) => Some(ErrorClass::Fatal),
            _ => None,
        }
    }
}

/// Whether a read or a look-up (watermarks, metadata, committed offsets)
/// that failed with `err` may simply be asked again: the cluster is failing
/// over (a broker down, a leader or coordinator moving), which librdkafka
/// rides out on its own. Callers bound how long they keep asking.
pub fn is_transient(err: &KafkaError) -> bool {
    matches!(
        err.rdkafka_error_code(),
        Some(
            RDKafkaErrorCode::BrokerTransportFailure
                | RDKafkaErrorCode::AllBrokersDown
                // A broker restarted: librdkafka retired the handle a
                // request was queued on.
                | RDKafkaErrorCode::DestroyBroker
                | RDKafkaErrorCode::OperationTimedOut
                | RDKafkaErrorCode::LeaderNotAvailable
                | RDKafkaErrorCode::NotLeaderForPartition
                | RDKafkaErrorCode::PreferredLeaderNotAvailable
                | RDKafkaErrorCode::RequestTimedOut
                | RDKafkaErrorCode::BrokerNotAvailable
                | RDKafkaErrorCode::NetworkException
                | RDKafkaErrorCode::NotCoordinator
                | RDKafkaErrorCode::CoordinatorLoadInProgress
                | RDKafkaErrorCode::CoordinatorNotAvailable
        )
    )
}

/// Classifies a librdkafka error for the transactional loop.
///
/// Transaction API errors carry librdkafka's own verdict (`is_fatal`,
/// `txn_requires_abort`, `is_retriable`). Other errors are judged by code:
/// fencing and invalid producer state are fatal, timeouts whose outcome is
/// unknown are treated as fatal too (DESIGN.md §3: re-initialise rather than
/// guess), everything else aborts.
pub fn classify(err: &KafkaError) -> ErrorClass {
    if let KafkaError::Transaction(rd) = err {
        if rd.is_fatal() {
            return ErrorClass::Fatal;
        }
        if rd.txn_requires_abort() {
            return ErrorClass::Abortable;
        }
        if rd.is_retriable() {
            return ErrorClass::Retriable;
        }
        return ErrorClass::Abortable;
    }
    match err.rdkafka_error_code() {
        Some(
            RDKafkaErrorCode::Fatal
            | RDKafkaErrorCode::Fenced
            | RDKafkaErrorCode::ProducerFenced
            | RDKafkaErrorCode::InvalidProducerEpoch
            | RDKafkaErrorCode::InvalidTransactionalState
            | RDKafkaErrorCode::InvalidProducerIdMapping
            | RDKafkaErrorCode::TransactionalIdAuthorizationFailed
            | RDKafkaErrorCode::ClusterAuthorizationFailed
            | RDKafkaErrorCode::UnknownProducerId,
        ) => ErrorClass::Fatal,
        Some(RDKafkaErrorCode::MessageTimedOut | RDKafkaErrorCode::OperationTimedOut) => {
            ErrorClass::Fatal
        }
        Some(
            RDKafkaErrorCode::QueueFull
            | RDKafkaErrorCode::CoordinatorLoadInProgress
            | RDKafkaErrorCode::NotCoordinator
            | RDKafkaErrorCode::CoordinatorNotAvailable
            | RDKafkaErrorCode::ConcurrentTransactions,
        ) => ErrorClass::Retriable,
        _ => ErrorClass::Abortable,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failover_is_transient_a_missing_topic_or_a_denied_read_is_not() {
        for code in [
            RDKafkaErrorCode::BrokerTransportFailure,
            RDKafkaErrorCode::NotLeaderForPartition,
            RDKafkaErrorCode::NotCoordinator,
        ] {
            assert!(is_transient(&KafkaError::MetadataFetch(code)), "{code:?}");
        }
        for code in [
            RDKafkaErrorCode::UnknownTopicOrPartition,
            RDKafkaErrorCode::TopicAuthorizationFailed,
            RDKafkaErrorCode::OffsetOutOfRange,
        ] {
            assert!(
                !is_transient(&KafkaError::MessageConsumption(code)),
                "{code:?}"
            );
        }
    }

    #[test]
    fn fencing_is_fatal_and_queue_full_is_retriable() {
        let fenced = KafkaError::MessageProduction(RDKafkaErrorCode::ProducerFenced);
        assert_eq!(classify(&fenced), ErrorClass::Fatal);
        let full = KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull);
        assert_eq!(classify(&full), ErrorClass::Retriable);
        let too_large = KafkaError::MessageProduction(RDKafkaErrorCode::MessageSizeTooLarge);
        assert_eq!(classify(&too_large), ErrorClass::Abortable);
    }

    #[test]
    fn config_error_names_the_field() {
        let e = Error::config("kafka.group_id", "must not be empty");
        assert_eq!(
            e.to_string(),
            "config field `kafka.group_id`: must not be empty"
        );
        assert_eq!(e.class(), None);
    }
}
