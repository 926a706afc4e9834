//! The strict-verify ceiling: how many events per second the processor's
//! signature check (`chain::verify_strict` over `chain::event_msg`, exactly
//! as `route` calls it) gets through on one core and on all of them, over
//! events signed beforehand the way a producer signs them (the SDK).

use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use auditchain::chain;
use auditchain_producer::{AuditEvent, Signer, SigningKey};
use rayon::prelude::*;

/// Verification throughput.
#[derive(Debug, Clone, serde::Serialize)]
pub struct VerifyRate {
    /// Events per second on one thread.
    pub one_core_per_s: f64,
    /// Events per second on a rayon pool of one thread per core.
    pub all_cores_per_s: f64,
    /// Threads of the pool.
    pub threads: usize,
    /// Payload bytes of the events.
    pub payload_bytes: usize,
}

struct Signed {
    tenant: String,
    value: Vec<u8>,
    sig: [u8; 64],
}

fn events(n: usize, payload: usize) -> Result<(Vec<Signed>, ed25519_dalek::VerifyingKey)> {
    let key = SigningKey::from_seed(&[7; 32], "bench").context("a signing key")?;
    let public = key.verifying_key();
    let signer = Signer::new(key, 1);
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let tenant = format!("tenant-{}", i % 200);
        let mut event = AuditEvent::new(&tenant, "user-1", "invoice.approve", "resource/1");
        event.payload = Some(vec![b'x'; payload]);
        let record = signer.record(&event).context("signing an event")?;
        let sig = signer.key().sign(&tenant, &record.value);
        out.push(Signed {
            tenant,
            value: record.value,
            sig,
        });
    }
    Ok((out, public))
}

/// Verifies `events` over and over for at least `duration`; events/s.
fn rate(
    events: &[Signed],
    key: &ed25519_dalek::VerifyingKey,
    duration: Duration,
    parallel: bool,
) -> Result<f64> {
    let started = Instant::now();
    let mut done = 0usize;
    while started.elapsed() < duration {
        let check =
            |e: &Signed| chain::verify_strict(key, &chain::event_msg(&e.tenant, &e.value), &e.sig);
        let ok = if parallel {
            events.par_iter().all(check)
        } else {
            events.iter().all(check)
        };
        ensure!(ok, "a correctly signed event did not verify");
        done += events.len();
    }
    Ok(done as f64 / started.elapsed().as_secs_f64())
}

/// Measures both rates, each for `duration`.
pub fn measure(duration: Duration, payload: usize) -> Result<VerifyRate> {
    let (events, key) = events(4_000, payload)?;
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .context("starting the verification pool")?;
    let one_core_per_s = rate(&events, &key, duration, false)?;
    let all_cores_per_s = pool.install(|| rate(&events, &key, duration, true))?;
    Ok(VerifyRate {
        one_core_per_s,
        all_cores_per_s,
        threads,
        payload_bytes: payload,
    })
}
