//! `auditchain run` as a child process, and the processor run in process.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use auditchain::processor::RunSummary;

/// `auditchain run` as a child process.
pub struct Child {
    pub child: std::process::Child,
    pub log: PathBuf,
    /// Where the process writes its HTTP endpoint's address.
    pub http_address_file: PathBuf,
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
            if std::thread::panicking() {
                dump_metrics(&self.http_address_file);
                dump_threads(self.child.id());
            }
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

/// Prints the metrics of a process still running when a test fails (what
/// it owns, commits, aborts and lags), histograms left out.
fn dump_metrics(address_file: &std::path::Path) {
    use std::io::{Read, Write};
    let Ok(address) = std::fs::read_to_string(address_file) else {
        return;
    };
    let fetched = (|| -> std::io::Result<String> {
        let addr = address.trim().parse().map_err(std::io::Error::other)?;
        let limit = std::time::Duration::from_secs(5);
        let mut stream = std::net::TcpStream::connect_timeout(&addr, limit)?;
        stream.set_read_timeout(Some(limit))?;
        write!(stream, "GET /metrics HTTP/1.0\r\nHost: {address}\r\n\r\n")?;
        let mut response = String::new();
        stream.read_to_string(&mut response)?;
        Ok(response)
    })();
    match fetched {
        Ok(text) => eprintln!(
            "---- metrics of {} ----\n{}",
            address.trim(),
            text.lines()
                .filter(|l| l.starts_with("auditchain_") && !l.contains("_bucket{"))
                .collect::<Vec<_>>()
                .join("\n")
        ),
        Err(e) => eprintln!("(no metrics from {}: {e})", address.trim()),
    }
}

/// Prints every thread's stack of a process that is still running when a
/// test fails (with `gdb`, where installed): a processor that stopped making
/// progress shows where it waits, which its log cannot say.
fn dump_threads(pid: u32) {
    let out = std::process::Command::new("timeout")
        .args(["60", "gdb", "-p", &pid.to_string(), "-batch", "-nx"])
        .args(["-ex", "set pagination off", "-ex", "thread apply all bt 30"])
        .stdin(std::process::Stdio::null())
        .output();
    match out {
        Ok(o) if o.status.success() => eprintln!(
            "---- threads of auditchain run (pid {pid}) ----\n{}",
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .filter(|l| l.starts_with('#') || l.starts_with("Thread"))
                .map(|l| l.chars().take(240).collect::<String>())
                .collect::<Vec<_>>()
                .join("\n")
        ),
        Ok(o) => eprintln!(
            "(no thread dump of pid {pid}: gdb exited with {}: {})",
            o.status,
            String::from_utf8_lossy(&o.stderr)
                .lines()
                .last()
                .unwrap_or("")
        ),
        Err(e) => eprintln!("(no thread dump of pid {pid}: {e})"),
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
