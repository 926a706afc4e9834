//! The binary's subcommands, one module each: each owns its clap
//! arguments and its `run`; `main.rs` only parses and dispatches.

pub mod acls;
pub mod bundle;
pub mod keygen;
pub mod produce;
pub mod prove;
pub mod quarantine;
pub mod run;
pub mod smoke;
pub mod status;
pub mod topics;
pub mod verify;

/// A check that ran and found the thing checked does not hold (exit code 1).
#[derive(Debug)]
pub struct NotVerified;

impl std::fmt::Display for NotVerified {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("verification failed")
    }
}

impl std::error::Error for NotVerified {}
