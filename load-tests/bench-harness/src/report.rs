//! The markdown table printed at the end of a run.

use std::fmt::Write;

use crate::run::{Drain, Results};

fn num(v: Option<f64>, digits: usize) -> String {
    match v {
        Some(v) if v.is_finite() => {
            let s = format!("{v:.digits$}");
            if digits == 0 {
                thousands(&s)
            } else {
                s
            }
        }
        _ => "–".into(),
    }
}

/// `1234567` → `1,234,567`.
fn thousands(s: &str) -> String {
    let (sign, digits) = s.strip_prefix('-').map_or(("", s), |d| ("-", d));
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    format!("{sign}{out}")
}

fn rss(d: &Drain) -> String {
    match d.peak_rss_mib.len() {
        0 => "–".into(),
        1 => format!("{:.0}", d.peak_rss_mib[0]),
        _ => d
            .peak_rss_mib
            .iter()
            .map(|m| format!("{m:.0}"))
            .collect::<Vec<_>>()
            .join(" + "),
    }
}

fn verdict(d: &Drain) -> &'static str {
    match &d.verify {
        Some(v) if v.ok => "OK",
        Some(_) => "FAILED",
        None => "n/a",
    }
}

fn label(system: &str) -> &str {
    match system {
        "auditchain" => "auditchain",
        "passthrough" => "EOS passthrough (copy, no work)",
        "kstreams-peer" => "Kafka Streams peer",
        other => other,
    }
}

/// The whole table.
pub fn table(r: &Results) -> String {
    let mut t = String::new();
    let m = &r.machine;
    let _ = writeln!(
        t,
        "### auditchain benchmark, {} UTC{}\n",
        r.started_utc,
        if r.quick { " (--quick)" } else { "" }
    );
    let _ = writeln!(
        t,
        "Machine: {} cores, {}, {:.1} GiB, Linux {}; load average {:.2} at start. Kafka: {} broker JVM(s) on the same machine. Backlog: {} events, {} tenants, {} B payload, {} partitions. Run took {:.0} s.\n",
        m.cores,
        m.cpu_model,
        m.memory_gib,
        m.kernel,
        m.load_average_at_start,
        r.brokers,
        thousands(&r.events.to_string()),
        thousands(&r.tenants.to_string()),
        r.payload,
        r.partitions,
        r.elapsed_s
    );
    let _ = writeln!(
        t,
        "| system | steady events/s | start-up s | steady window s | CPU µs/event | broker CPU µs/event | cores busy (+ broker) | peak RSS MiB | verify |"
    );
    let _ = writeln!(t, "|---|---:|---:|---:|---:|---:|---:|---:|---|");
    for d in &r.drains {
        let _ = writeln!(
            t,
            "| {} | {} | {} | {:.2} | {} | {} | {} (+ {}) | {} | {} |",
            label(&d.system),
            num(d.steady_per_s, 0),
            num(d.startup_s, 2),
            d.window_s,
            num(d.cpu_us_per_event, 1),
            num(d.broker_cpu_us_per_event, 1),
            num(d.cores_busy, 2),
            num(d.broker_cores_busy, 2),
            rss(d),
            verdict(d),
        );
    }
    if let Some(v) = &r.verify_rate {
        let _ = writeln!(
            t,
            "| strict-verify ceiling ({} threads; one core: {}/s) | {} | | | | | | | |",
            v.threads,
            num(Some(v.one_core_per_s), 0),
            num(Some(v.all_cores_per_s), 0)
        );
    }
    if r.pure_path_all_cores_per_s.is_some() {
        let _ = writeln!(
            t,
            "| pure path, no Kafka (criterion; one core: {}/s) | {} | | | | | | | |",
            num(r.pure_path_one_core_per_s, 0),
            num(r.pure_path_all_cores_per_s, 0)
        );
    }

    if !r.latency.is_empty() {
        let _ = writeln!(
            t,
            "\nEnd-to-end latency, produce → visible to a `read_committed` consumer of the output (steps of {} s, first second of each not counted):\n",
            r.latency[0].step_s
        );
        let _ = writeln!(
            t,
            "| system | offered events/s | achieved/s | p50 ms | p99 ms | p99.9 ms | max ms | samples |"
        );
        let _ = writeln!(t, "|---|---:|---:|---:|---:|---:|---:|---:|");
        for l in &r.latency {
            for s in &l.steps {
                let _ = writeln!(
                    t,
                    "| {} | {} ({:.0}%) | {} | {} | {} | {} | {} | {} |",
                    label(&l.system),
                    num(Some(s.offered_per_s), 0),
                    s.fraction * 100.0,
                    num(Some(s.achieved_per_s), 0),
                    num(s.p50_ms, 0),
                    num(s.p99_ms, 0),
                    num(s.p999_ms, 0),
                    num(s.max_ms, 0),
                    thousands(&s.samples.to_string()),
                );
            }
        }
    }

    if !r.scaling.is_empty() {
        let _ = writeln!(t, "\nScaling (auditchain, one dimension at a time):\n");
        let _ = writeln!(
            t,
            "| dimension | value | backlog events | steady events/s | MB/s of payload | start-up s | peak RSS MiB | restart: restore s / start → restored s (RSS MiB) | verify |"
        );
        let _ = writeln!(t, "|---|---:|---:|---:|---:|---:|---:|---:|---|");
        for p in &r.scaling {
            let mbs = p
                .drain
                .steady_per_s
                .map(|rate| rate * p.payload as f64 / 1e6);
            let restart = match (p.restart_restored_s, p.restart_rss_mib) {
                (Some(s), Some(m)) => format!("{} / {s:.2} ({m:.0})", num(p.restart_restore_s, 2)),
                (Some(s), None) => format!("{} / {s:.2}", num(p.restart_restore_s, 2)),
                _ => "–".into(),
            };
            let _ = writeln!(
                t,
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                p.dimension,
                thousands(&p.value.to_string()),
                thousands(&p.events.to_string()),
                num(p.drain.steady_per_s, 0),
                num(mbs, 1),
                num(p.drain.startup_s, 2),
                rss(&p.drain),
                restart,
                verdict(&p.drain),
            );
        }
    }

    let targets = targets(r);
    if !targets.is_empty() {
        let _ = writeln!(t, "\nTargets (issue 10; reported, never asserted):\n");
        let _ = writeln!(t, "| target | measured | met |");
        let _ = writeln!(t, "|---|---|---|");
        for (name, measured, met) in targets {
            let _ = writeln!(
                t,
                "| {name} | {measured} | {} |",
                match met {
                    Some(true) => "yes",
                    Some(false) => "**no**",
                    None => "–",
                }
            );
        }
    }
    if !r.notes.is_empty() {
        let _ = writeln!(t);
        for n in &r.notes {
            let _ = writeln!(t, "- {n}");
        }
    }
    t
}

fn drain<'a>(r: &'a Results, system: &str) -> Option<&'a Drain> {
    r.drains.iter().find(|d| d.system == system)
}

fn p99_at_half(r: &Results, system: &str) -> Option<f64> {
    r.latency
        .iter()
        .find(|l| l.system == system)?
        .steps
        .iter()
        .find(|s| (s.fraction - 0.5).abs() < 1e-9)?
        .p99_ms
}

type Target = (String, String, Option<bool>);

fn targets(r: &Results) -> Vec<Target> {
    let mut out = Vec::new();
    let ac = drain(r, "auditchain");
    let rate = ac.and_then(|d| d.steady_per_s);
    // The ceiling: min(passthrough, the strict-verify rate scaled to the
    // cores the broker leaves during auditchain's drain).
    if let (Some(rate), Some(v)) = (rate, &r.verify_rate) {
        let broker = ac.and_then(|d| d.broker_cores_busy).unwrap_or(0.0);
        let cores_left = (v.threads as f64 - broker).max(0.0);
        let verify_left = v.all_cores_per_s / v.threads as f64 * cores_left;
        let pass = drain(r, "passthrough").and_then(|d| d.steady_per_s);
        let ceiling = pass.map_or(verify_left, |p| p.min(verify_left));
        out.push((
            "steady ≥ 80% of min(EOS passthrough, strict verify on the cores the broker leaves)"
                .into(),
            format!(
                "{} events/s = {:.0}% of {} (passthrough {}, verify on {cores_left:.2} cores {})",
                num(Some(rate), 0),
                rate / ceiling * 100.0,
                num(Some(ceiling), 0),
                num(pass, 0),
                num(Some(verify_left), 0)
            ),
            Some(rate >= 0.8 * ceiling),
        ));
    }
    if let Some(p99) = p99_at_half(r, "auditchain") {
        out.push((
            "e2e p99 ≤ 250 ms at 50% of the maximum, default config".into(),
            format!("{p99:.0} ms"),
            Some(p99 <= 250.0),
        ));
    }
    let peer = drain(r, "kstreams-peer");
    if let (Some(rate), Some(peer_rate)) = (rate, peer.and_then(|d| d.steady_per_s)) {
        out.push((
            "≥ 3× the Kafka Streams peer's throughput".into(),
            format!("{:.1}×", rate / peer_rate),
            Some(rate >= 3.0 * peer_rate),
        ));
        if let (Some(a), Some(p)) = (
            p99_at_half(r, "auditchain"),
            p99_at_half(r, "kstreams-peer"),
        ) {
            out.push((
                "... at equal or lower p99 (each at 50% of its own maximum)".into(),
                format!("{a:.0} ms vs {p:.0} ms"),
                Some(a <= p),
            ));
        }
        if let (Some(a), Some(p)) = (ac, peer) {
            let (a, p) = (
                a.peak_rss_mib.iter().sum::<f64>(),
                p.peak_rss_mib.iter().sum::<f64>(),
            );
            out.push((
                "... with less memory (peak RSS)".into(),
                format!("{a:.0} MiB vs {p:.0} MiB"),
                Some(a < p),
            ));
        }
    }
    if let Some(p) = r
        .scaling
        .iter()
        .find(|p| p.dimension == "tenants" && p.value >= 100_000)
    {
        let peak = p.drain.peak_rss_mib.iter().copied().fold(0.0, f64::max);
        out.push((
            "100,000 tenants: peak RSS ≤ 256 MiB".into(),
            format!("{peak:.0} MiB"),
            Some(peak <= 256.0),
        ));
        match (p.restart_restore_s, p.restart_restored_s) {
            (Some(s), _) => out.push((
                "100,000 tenants: restore ≤ 3 s (as the restarted processor reports it)".into(),
                format!("{s:.2} s"),
                Some(s <= 3.0),
            )),
            (None, Some(s)) => out.push((
                "100,000 tenants: restore ≤ 3 s (timed from process start: an upper bound)".into(),
                format!("{s:.2} s"),
                Some(s <= 3.0),
            )),
            (None, None) => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thousands_are_separated() {
        assert_eq!(thousands("1234567"), "1,234,567");
        assert_eq!(thousands("123"), "123");
        assert_eq!(thousands("-1234"), "-1,234");
        assert_eq!(num(Some(20_123.4), 0), "20,123");
        assert_eq!(num(None, 1), "–");
    }
}
