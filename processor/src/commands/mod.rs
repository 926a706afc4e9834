//! The binary's subcommands that live in modules of their own: each owns
//! its clap arguments and its `run`. (The older ones are still in
//! `main.rs`.)

pub mod bundle;
pub mod produce;
pub mod prove;
pub mod status;
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
