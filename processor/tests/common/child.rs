//! `auditchain run` as a child process, and the processor run in process.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use auditchain::processor::RunSummary;

/// `auditchain run` as a child process.
pub struct Child {
    pub child: std::process::Child,
    pub log: PathBuf,
}

impl Child {
    fn signal(&self, signal: &str) {
        let status = std::process::Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.child.id().to_string())
            .status()
            .expect("kill");
        assert!(status.success(), "kill -{signal} failed");
    }

    /// SIGKILL: no chance to commit, abort or leave the group.
    pub fn kill9(mut self) {
        self.child.kill().expect("SIGKILL");
        self.child.wait().expect("reap");
    }

    /// SIGSTOP: frozen, as a long GC pause or a hung VM.
    pub fn pause(&self) {
        self.signal("STOP");
    }

    /// SIGCONT.
    pub fn resume(&self) {
        self.signal("CONT");
    }

    /// SIGTERM, then waits; panics unless it exits 0.
    pub fn stop(mut self) {
        self.signal("TERM");
        let status = self.child.wait().expect("wait");
        assert!(
            status.success(),
            "auditchain run exited with {status}; log:\n{}",
            std::fs::read_to_string(&self.log).unwrap_or_default()
        );
    }

    /// Panics (with the log) if the process has exited.
    pub fn assert_alive(&mut self) {
        if let Some(status) = self.child.try_wait().expect("try_wait") {
            panic!(
                "auditchain run exited on its own with {status}; log:\n{}",
                std::fs::read_to_string(&self.log).unwrap_or_default()
            );
        }
    }
}

impl Drop for Child {
    /// A test that fails half-way must not leave a processor running, and
    /// shows the end of its log (the temporary directory goes with the test).
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        if std::thread::panicking() {
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            let lines: Vec<&str> = log.lines().collect();
            let tail = &lines[lines.len().saturating_sub(300)..];
            eprintln!(
                "---- last {} lines of {} ----\n{}",
                tail.len(),
                self.log.display(),
                tail.join("\n")
            );
        }
    }
}

/// A processor running on a thread.
pub struct Running {
    pub(super) shutdown: Arc<AtomicBool>,
    pub(super) thread: std::thread::JoinHandle<auditchain::Result<RunSummary>>,
    pub(super) failure: Arc<std::sync::Mutex<Option<String>>>,
}

impl Running {
    /// Panics if the processor has stopped on its own with an error.
    pub fn assert_alive(&self) {
        if let Ok(f) = self.failure.lock() {
            if let Some(e) = f.as_ref() {
                panic!("the processor stopped with an error: {e}");
            }
        }
        assert!(
            !self.thread.is_finished(),
            "the processor stopped on its own"
        );
    }

    /// Asks it to stop (as SIGTERM does) and waits for it.
    pub fn stop(self) -> RunSummary {
        self.shutdown.store(true, Ordering::Relaxed);
        tokio::task::block_in_place(|| self.thread.join())
            .expect("processor thread panicked")
            .expect("processor failed")
    }
}
