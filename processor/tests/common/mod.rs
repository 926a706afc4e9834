//! Helpers shared by the integration tests, by role: the broker
//! (`broker`: where it is, unique names, topics, reading), the processor
//! fixture (`fixture`), processes (`child`), its HTTP endpoint (`http`),
//! network faults (`proxy`) and the secured stack (`secure`).
//!
//! The local stack (`scripts/stack up`) is the default; point the tests
//! elsewhere with `KAFKA_BOOTSTRAP_SERVERS` and `SCHEMA_REGISTRY_URL`.

#![allow(dead_code)]

mod broker;
mod child;
mod fixture;
mod http;
pub mod proxy;
pub mod secure;

// Not every test uses every role.
#[allow(unused_imports)]
pub use broker::*;
#[allow(unused_imports)]
pub use child::*;
#[allow(unused_imports)]
pub use fixture::*;
#[allow(unused_imports)]
pub use http::*;
