//! A TCP proxy between one processor and the broker(s), for network faults:
//! cut every connection (and refuse new ones), stall them (bytes held, the
//! connections left open, as a hung switch or a full buffer would), or slow
//! them (a delay before each forwarded chunk).
//!
//! The stack's brokers each have a PROXIED listener that advertises the
//! proxy's port (`scripts/stack env`: `KAFKA_PROXY_ROUTES` is
//! `listen=forward,...`), so a client bootstrapped from
//! `KAFKA_PROXIED_BOOTSTRAP_SERVERS` reaches every broker through here and
//! nowhere else. Only loopback ports of the project's own stack are touched.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// What the proxy does with traffic now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Forward as it comes.
    Pass,
    /// Every connection closed; new ones accepted and closed at once.
    Cut,
    /// Nothing forwarded; connections stay open.
    Stall,
    /// Each chunk forwarded after this delay.
    Slow(Duration),
}

#[derive(Default)]
struct Shared {
    mode: Mutex<Option<Mode>>,
    changed: Condvar,
    /// Both ends of every live connection, for a cut.
    live: Mutex<Vec<TcpStream>>,
    stopping: AtomicBool,
    /// Bytes forwarded, both directions, since start.
    forwarded: AtomicU64,
    /// Connections accepted and forwarded.
    connections: AtomicU64,
}

impl Shared {
    fn mode(&self) -> Mode {
        self.mode
            .lock()
            .expect("proxy mode lock")
            .unwrap_or(Mode::Pass)
    }

    /// Waits while stalled; the mode that lets (or refuses) the next chunk.
    fn gate(&self) -> Mode {
        let mut mode = self.mode.lock().expect("proxy mode lock");
        while *mode == Some(Mode::Stall) && !self.stopping.load(Ordering::SeqCst) {
            mode = self.changed.wait(mode).expect("proxy mode lock");
        }
        mode.unwrap_or(Mode::Pass)
    }

    fn close_all(&self) {
        for s in self.live.lock().expect("proxy live lock").drain(..) {
            let _ = s.shutdown(Shutdown::Both);
        }
    }
}

/// The proxy for every route of the stack; stops (and closes everything it
/// carries) when dropped.
pub struct Proxy {
    shared: Arc<Shared>,
    listen_ports: Vec<u16>,
    accept_threads: Vec<JoinHandle<()>>,
}

/// The stack's proxy routes: `(listen, forward)` loopback ports.
pub fn routes() -> Vec<(u16, u16)> {
    let text = std::env::var("KAFKA_PROXY_ROUTES").unwrap_or_else(|_| "9095=9094".into());
    text.split(',')
        .map(|r| {
            let (l, f) = r
                .split_once('=')
                .unwrap_or_else(|| panic!("KAFKA_PROXY_ROUTES entry {r:?} is not listen=forward"));
            (
                l.trim().parse().expect("listen port"),
                f.trim().parse().expect("forward port"),
            )
        })
        .collect()
}

/// Bootstrap servers that reach the brokers through the proxy.
pub fn proxied_bootstrap() -> String {
    std::env::var("KAFKA_PROXIED_BOOTSTRAP_SERVERS").unwrap_or_else(|_| {
        routes()
            .iter()
            .map(|(l, _)| format!("127.0.0.1:{l}"))
            .collect::<Vec<_>>()
            .join(",")
    })
}

impl Proxy {
    /// Listens on every route's port, forwarding as it comes.
    pub fn start() -> Proxy {
        let shared = Arc::new(Shared::default());
        let mut listen_ports = Vec::new();
        let mut accept_threads = Vec::new();
        for (listen, forward) in routes() {
            let listener = TcpListener::bind(("127.0.0.1", listen)).unwrap_or_else(|e| {
                panic!("proxy cannot listen on 127.0.0.1:{listen} (is another proxy test running?): {e}")
            });
            let shared = Arc::clone(&shared);
            listen_ports.push(listen);
            accept_threads.push(std::thread::spawn(move || {
                accept_loop(listener, forward, shared)
            }));
        }
        Proxy {
            shared,
            listen_ports,
            accept_threads,
        }
    }

    /// Changes what happens to traffic from now on.
    pub fn set(&self, mode: Mode) {
        *self.shared.mode.lock().expect("proxy mode lock") = Some(mode);
        self.shared.changed.notify_all();
        if mode == Mode::Cut {
            self.shared.close_all();
        }
    }

    /// Bytes forwarded so far, both directions.
    pub fn forwarded(&self) -> u64 {
        self.shared.forwarded.load(Ordering::SeqCst)
    }

    /// Connections accepted and forwarded so far.
    pub fn connections(&self) -> u64 {
        self.shared.connections.load(Ordering::SeqCst)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.shared.stopping.store(true, Ordering::SeqCst);
        self.set(Mode::Cut);
        // Wake the accept loops so they see `stopping`.
        for port in &self.listen_ports {
            let _ = TcpStream::connect(("127.0.0.1", *port));
        }
        for t in self.accept_threads.drain(..) {
            let _ = t.join();
        }
    }
}

fn accept_loop(listener: TcpListener, forward: u16, shared: Arc<Shared>) {
    for client in listener.incoming() {
        if shared.stopping.load(Ordering::SeqCst) {
            return;
        }
        let Ok(client) = client else { continue };
        if shared.mode() == Mode::Cut {
            let _ = client.shutdown(Shutdown::Both);
            continue;
        }
        let Ok(upstream) = TcpStream::connect(("127.0.0.1", forward)) else {
            let _ = client.shutdown(Shutdown::Both);
            continue;
        };
        let _ = client.set_nodelay(true);
        let _ = upstream.set_nodelay(true);
        let pair = (
            client.try_clone(),
            upstream.try_clone(),
            client.try_clone(),
            upstream.try_clone(),
        );
        let (Ok(c_read), Ok(u_write), Ok(c_write), Ok(u_read)) = pair else {
            continue;
        };
        {
            // Under the lock a cut takes to close everything: either the cut
            // sees this pair, or this sees the cut.
            let mut live = shared.live.lock().expect("proxy live lock");
            if shared.mode() == Mode::Cut {
                let _ = client.shutdown(Shutdown::Both);
                let _ = upstream.shutdown(Shutdown::Both);
                continue;
            }
            live.extend([client, upstream]);
        }
        shared.connections.fetch_add(1, Ordering::SeqCst);
        let up = Arc::clone(&shared);
        std::thread::spawn(move || pump(c_read, u_write, up));
        let down = Arc::clone(&shared);
        std::thread::spawn(move || pump(u_read, c_write, down));
    }
}

/// Copies one direction until either side closes or the proxy cuts.
fn pump(mut from: TcpStream, mut to: TcpStream, shared: Arc<Shared>) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        match shared.gate() {
            Mode::Cut => break,
            Mode::Slow(delay) => std::thread::sleep(delay),
            Mode::Pass | Mode::Stall => {}
        }
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
        shared.forwarded.fetch_add(n as u64, Ordering::SeqCst);
    }
    let _ = from.shutdown(Shutdown::Both);
    let _ = to.shutdown(Shutdown::Both);
}
