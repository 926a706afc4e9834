//! Chain format v1 (DESIGN.md §4), byte for byte, with no I/O: event
//! signatures, tenant chain entries, quarantine leaves, the RFC 6962-shaped
//! BLAKE3 Merkle tree, anchors, and Ed25519 signing with strict verification.
//!
//! Everything here is a pure function of its inputs so it can be unit-,
//! property- and fuzz-tested, benchmarked, and re-implemented by an
//! independent verifier from `schemas/test-vectors/chain-v1.json`.

pub mod anchor;
pub mod hash;
pub mod merkle;
pub mod sign;
pub mod vectors;

pub use anchor::{Anchor, TenantHead};
pub use hash::{
    entry_hash, event_digest, event_msg, quarantine_hash, quarantine_hash_of_digests, Hash,
    SourceCoord, ZERO,
};
pub use merkle::{audit_path, merkle_root, verify_audit_path};
pub use sign::{sign, verify_strict};
