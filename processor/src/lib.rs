//! auditchain: a Kafka stream processor that turns tenant-keyed, signed
//! audit events into a tamper-evident, independently verifiable audit trail.
//!
//! The design, and the normative chain format, are in `DESIGN.md` at the
//! repository root.

pub mod acls;
pub mod auth;
pub mod bundle;
pub mod chain;
pub mod config;
pub mod error;
pub mod faults;
pub mod kafka;
pub mod keys;
pub mod metrics;
pub mod processor;
pub mod produce;
pub mod prove;
pub mod records;
pub mod registry;
pub mod replay;
pub mod route;
pub mod schema;
pub mod sink;
pub mod smoke;
pub mod state;
pub mod telemetry;
pub mod verify;

pub use error::{Error, Result};
