//! What the kernel says about a process: CPU time and peak memory, read
//! from `/proc` (Linux only), and the machine the bench runs on.

use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result};

/// Clock ticks per second of `utime`/`stime` in `/proc/PID/stat`. Asked of
/// `getconf` (the crate forbids the `unsafe` a `sysconf` call needs); 100 is
/// what every Linux build this runs on uses, so it is the fallback.
pub fn clock_ticks() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse::<f64>().ok())
        .filter(|t| *t > 0.0)
        .unwrap_or(100.0)
}

/// User plus system CPU time of `pid` (all its threads), in clock ticks;
/// `None` once the process is gone.
pub fn cpu_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may hold spaces:
    // count fields from the last `)`. utime and stime are fields 14 and 15,
    // so the 12th and 13th after it.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// A `kB` line of `/proc/PID/status` (`VmHWM`, `VmRSS`), in MiB.
pub fn status_mib(pid: u32, field: &str) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find_map(|line| {
        let rest = line.strip_prefix(field)?.strip_prefix(':')?;
        let kb: f64 = rest.trim().trim_end_matches("kB").trim().parse().ok()?;
        Some(kb / 1024.0)
    })
}

/// The broker JVMs of the stack in `stack_dir`: the pids in its run
/// directory's `kafka*.pid` files whose command line still carries the
/// stack's markers (the same check `scripts/stack` makes before it signals
/// a pid, so a recycled pid is never counted).
pub fn broker_pids(stack_dir: &Path) -> Vec<u32> {
    let run = stack_dir.join("run");
    let Ok(entries) = std::fs::read_dir(&run) else {
        return Vec::new();
    };
    let marker = format!("-Dauditchain.stack.run={}", run.display());
    let mut pids = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !(name.starts_with("kafka") && name.ends_with(".pid")) {
            continue;
        }
        let Some(pid) = std::fs::read_to_string(entry.path())
            .ok()
            .and_then(|s| s.trim().parse::<u32>().ok())
        else {
            continue;
        };
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if cmdline.contains(&marker) && cmdline.contains("-Dauditchain.stack=kafka") {
            pids.push(pid);
        }
    }
    pids.sort_unstable();
    pids
}

/// The machine, for the table's header.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Machine {
    /// Cores the bench may use.
    pub cores: usize,
    /// `model name` of the first CPU.
    pub cpu_model: String,
    /// Memory, GiB.
    pub memory_gib: f64,
    /// Kernel release.
    pub kernel: String,
    /// One-minute load average when the bench started: a busy machine
    /// makes every number lower.
    pub load_average_at_start: f64,
}

/// Reads the machine's description.
pub fn machine() -> Result<Machine> {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").context("reading /proc/cpuinfo")?;
    let cpu_model = cpuinfo
        .lines()
        .find_map(|l| {
            l.strip_prefix("model name")
                .and_then(|r| r.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let meminfo = std::fs::read_to_string("/proc/meminfo").context("reading /proc/meminfo")?;
    let memory_kb: f64 = meminfo
        .lines()
        .find_map(|l| {
            l.strip_prefix("MemTotal:")
                .map(|r| r.trim().trim_end_matches("kB").trim().to_string())
        })
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_default();
    let load_average_at_start = std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|v| v.parse().ok()))
        .unwrap_or(0.0);
    Ok(Machine {
        cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
        cpu_model,
        memory_gib: memory_kb / 1024.0 / 1024.0,
        kernel,
        load_average_at_start,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_has_cpu_time_and_a_peak() {
        let pid = std::process::id();
        // Burn a little CPU so the tick count is not trivially zero.
        let mut x = 0u64;
        for i in 0..5_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        assert!(x != 1);
        assert!(cpu_ticks(pid).is_some());
        assert!(status_mib(pid, "VmHWM").is_some_and(|m| m > 0.0));
        assert!(cpu_ticks(u32::MAX).is_none());
    }
}
