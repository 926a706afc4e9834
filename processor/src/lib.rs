//! auditchain: a Kafka stream processor that turns tenant-keyed, signed
//! audit events into a tamper-evident, independently verifiable audit trail.
//!
//! The design, and the normative chain format, are in `DESIGN.md` at the
//! repository root.

// The layers, from the bytes up. Each module is also reachable at the crate
// root under its old path (the `pub use` below), which callers keep using.

/// The chain format v1 (DESIGN.md §4) and the Avro records: pure, no I/O.
pub mod format {
    pub mod chain;
    pub mod records;
    pub mod schema;
}

/// The running processor: the consumer loop and transactional engine, the
/// decision for one record, the transactional producer, the chain state.
pub mod pipeline {
    pub mod processor;
    pub mod rebuild;
    pub mod route;
    pub mod sink;
    pub mod state;
}

/// Reaching the cluster: Kafka clients and admin, the schema registry.
pub mod cluster {
    pub mod kafka;
    pub mod registry;
    pub mod retention;
}

/// Operating it: metrics, traces, the admin endpoint's token, ACLs, fault
/// injection.
pub mod ops {
    pub mod acls;
    pub mod auth;
    pub mod faults;
    pub mod metrics;
    pub mod telemetry;
}

/// The tools around the trail: verify, proofs, tenant bundles, quarantine
/// replay, the load producer, the cluster smoke check.
pub mod trail {
    pub mod bundle;
    pub mod produce;
    pub mod prove;
    pub mod replay;
    pub mod smoke;
    pub mod verify;
}

pub mod config;
pub mod error;
pub mod keys;

pub use cluster::{kafka, registry, retention};
pub use format::{chain, records, schema};
pub use ops::{acls, auth, faults, metrics, telemetry};
pub use pipeline::{processor, rebuild, route, sink, state};
pub use trail::{bundle, produce, prove, replay, smoke, verify};

pub use error::{Error, Result};
