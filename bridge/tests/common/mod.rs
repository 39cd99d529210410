//! Shared harness for the bridge tests: checksummed messages, a producer
//! and a consumer driven through the library, bridge processes with their
//! stderr captured, and parsing of what the bridges reported.
#![allow(dead_code)]

use std::fs;
use std::io::Read;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use shmpipe::{Builder, Error};

pub const BIN: &str = env!("CARGO_BIN_EXE_shmpipe-bridge");

/// A unique ring name / key / file stem for `what` in this test process.
pub fn unique(what: &str) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    format!(
        "spb-{what}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// A TCP port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().expect("local addr").port()
}

fn mix(mut x: u64) -> u64 {
    // splitmix64
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// Length of message `i` for sizes 8..=max.
pub fn len_of(i: u64, seed: u64, max: usize) -> usize {
    8 + (mix(i ^ seed) % (max as u64 - 7)) as usize
}

/// Message `i`: its index, then bytes derived from it.
pub fn fill(i: u64, seed: u64, buf: &mut [u8]) {
    buf[..8].copy_from_slice(&i.to_le_bytes());
    let mut x = mix(i.wrapping_add(seed << 1));
    for chunk in buf[8..].chunks_mut(8) {
        x = mix(x);
        let b = x.to_le_bytes();
        chunk.copy_from_slice(&b[..chunk.len()]);
    }
}

/// Check a received message: returns its index, or why it is wrong.
pub fn check(msg: &[u8], seed: u64, max: usize, scratch: &mut Vec<u8>) -> Result<u64, String> {
    if msg.len() < 8 {
        return Err(format!("message of {} bytes", msg.len()));
    }
    let mut w = [0u8; 8];
    w.copy_from_slice(&msg[..8]);
    let i = u64::from_le_bytes(w);
    let len = len_of(i, seed, max);
    if msg.len() != len {
        return Err(format!("message {i}: {} bytes, expected {len}", msg.len()));
    }
    scratch.resize(len, 0);
    fill(i, seed, scratch);
    if msg != &scratch[..] {
        return Err(format!("message {i}: checksum mismatch"));
    }
    Ok(i)
}

/// A bridge process whose stderr goes to a file; killed on drop.
pub struct Bridge {
    pub child: Child,
    pub log: PathBuf,
}

impl Bridge {
    /// Start `shmpipe-bridge ARGS`, under `ip netns exec NS` if `ns` is given.
    pub fn start(ns: Option<&str>, args: &[&str], log_name: &str) -> Bridge {
        let log = std::env::temp_dir().join(format!("{log_name}.log"));
        let err = fs::File::create(&log).expect("create log");
        let mut cmd = match ns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, BIN]);
                c
            }
            None => Command::new(BIN),
        };
        let child = cmd
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(err)
            .spawn()
            .expect("spawn shmpipe-bridge");
        Bridge { child, log }
    }

    pub fn stderr(&self) -> String {
        let mut s = String::new();
        if let Ok(mut f) = fs::File::open(&self.log) {
            let _ = f.read_to_string(&mut s);
        }
        s
    }

    pub fn signal(&self, sig: i32) {
        // SAFETY: kill(2) on our own child's pid; no memory is involved.
        unsafe { libc::kill(self.child.id() as i32, sig) };
    }

    /// Wait for the exit (at most `limit`; then kill it and panic).
    pub fn wait(&mut self, limit: Duration) -> ExitStatus {
        let end = Instant::now() + limit;
        loop {
            if let Some(s) = self.child.try_wait().expect("try_wait") {
                return s;
            }
            if Instant::now() > end {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!(
                    "bridge did not exit within {limit:?}; stderr:\n{}",
                    self.stderr()
                );
            }
            thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Bridge {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The last `key=value` of the final stats line in a bridge's stderr.
pub fn stat(stderr: &str, key: &str) -> Option<u64> {
    let line = stderr.lines().rev().find(|l| l.contains("stats (exit)"))?;
    let pat = format!(" {key}=");
    let at = line.find(&pat)? + pat.len();
    line[at..].split(' ').next()?.parse().ok()
}

/// Where messages `0..n` of [`feed`] lie in its (new, empty) source ring:
/// `(start, end)` byte positions, as the ring's framing places them.
pub fn positions(n: u64, capacity: u64, seed: u64, max: usize) -> Vec<(u64, u64)> {
    let mut pos = 0;
    (0..n)
        .map(|i| {
            let end = shmpipe::position_after(capacity, pos, len_of(i, seed, max));
            let span = (pos, end);
            pos = end;
            span
        })
        .collect()
}

/// Every reported gap, as the message indices `(first, last)` it covers in
/// a stream whose messages lie at `pos` ([`positions`]): a byte range
/// `F..T` covers the messages that lie wholly inside it; "N messages ...
/// ending at source ring byte T" the N messages before the one at `T`. A
/// report that matches no message boundary gives `(u64::MAX, u64::MAX)`,
/// so that the comparison with what was lost fails visibly.
pub fn gaps(stderr: &str, pos: &[(u64, u64)]) -> Vec<(u64, u64)> {
    let bad = (u64::MAX, u64::MAX);
    let index_at = |t: u64| -> Option<u64> {
        if pos.last().is_some_and(|l| l.1 == t) {
            return Some(pos.len() as u64);
        }
        pos.iter().position(|p| p.0 == t).map(|i| i as u64)
    };
    stderr
        .lines()
        .filter(|l| l.contains(" gap: "))
        .map(|l| {
            if let Some(rest) = l.split_once("source ring bytes ") {
                let range = rest.1.split(' ').next().unwrap_or("");
                let Some((f, t)) = range.split_once("..") else {
                    return bad;
                };
                let (Ok(f), Ok(t)) = (f.parse::<u64>(), t.parse::<u64>()) else {
                    return bad;
                };
                match (index_at(f), index_at(t)) {
                    (Some(a), Some(b)) if b > a => (a, b - 1),
                    _ => bad,
                }
            } else if let Some(rest) = l.split_once("ending at source ring byte ") {
                let t = rest.1.split(' ').next().and_then(|t| t.parse::<u64>().ok());
                let n = l
                    .split_once(" messages) lost")
                    .and_then(|(a, _)| a.rsplit('(').next())
                    .and_then(|n| n.parse::<u64>().ok());
                match (t.and_then(index_at), n) {
                    (Some(k), Some(n)) if n >= 1 && k >= n => (k - n, k - 1),
                    _ => bad,
                }
            } else {
                bad
            }
        })
        .collect()
}

/// The indices in `0..n` missing from the sorted `seen`, as ranges.
pub fn missing_ranges(seen: &[u64], n: u64) -> Vec<(u64, u64)> {
    let mut out = Vec::new();
    let mut next = 0u64;
    for &i in seen.iter().chain(std::iter::once(&n)) {
        if i > next {
            out.push((next, i - 1));
        }
        next = i + 1;
    }
    out
}

/// Producer thread: messages `0..n` into `name` (created here), then close.
/// `pause_at`: after that many messages, wait until `gate` is set.
pub struct Feed {
    pub handle: thread::JoinHandle<Result<(), String>>,
}

pub fn feed(
    name: &str,
    capacity: u64,
    n: u64,
    seed: u64,
    max: usize,
    gate: Option<(u64, Arc<std::sync::atomic::AtomicBool>)>,
) -> Feed {
    let mut p = Builder::new()
        .capacity(capacity)
        .unlink_on_drop(true)
        .create_producer(name)
        .expect("create producer");
    let handle = thread::spawn(move || {
        let mut buf = vec![0u8; max];
        for i in 0..n {
            if let Some((at, g)) = &gate {
                if i == *at {
                    while !g.load(Ordering::Acquire) {
                        thread::sleep(Duration::from_millis(5));
                    }
                }
            }
            let len = len_of(i, seed, max);
            fill(i, seed, &mut buf[..len]);
            loop {
                match p.send_timeout(&buf[..len], Duration::from_secs(60)) {
                    Ok(()) => break,
                    // The consumer (`out`) was replaced: the new one takes over.
                    Err(Error::PeerDied) => thread::sleep(Duration::from_millis(10)),
                    Err(e) => return Err(format!("send {i}: {e}")),
                }
            }
        }
        p.close().map_err(|e| format!("close: {e}"))
    });
    Feed { handle }
}

/// What the consumer saw.
#[derive(Debug, Default)]
pub struct Seen {
    /// Indices in arrival order (only kept if asked).
    pub indices: Vec<u64>,
    pub count: u64,
    /// Times the producer (`in`) died under us.
    pub producer_deaths: u64,
    /// How the stream ended: "disconnected" or an error.
    pub end: String,
}

/// Consumer thread: read `name` (created here) until Disconnected; survive
/// a dead producer (a restarted `in` takes over). `progress` counts messages.
pub fn drain(
    name: &str,
    capacity: u64,
    seed: u64,
    max: usize,
    keep: bool,
    progress: Arc<AtomicU64>,
    limit: Duration,
) -> thread::JoinHandle<Result<Seen, String>> {
    drain_opts(name, capacity, seed, max, keep, progress, limit, true)
}

/// As [`drain`]; with `survive: false` a dead producer ends the stream
/// (`end == "peer died"`).
#[allow(clippy::too_many_arguments)]
pub fn drain_opts(
    name: &str,
    capacity: u64,
    seed: u64,
    max: usize,
    keep: bool,
    progress: Arc<AtomicU64>,
    limit: Duration,
    survive: bool,
) -> thread::JoinHandle<Result<Seen, String>> {
    let mut c = Builder::new()
        .capacity(capacity)
        .unlink_on_drop(true)
        .create_consumer(name)
        .expect("create consumer");
    thread::spawn(move || {
        let mut seen = Seen::default();
        let mut scratch = Vec::new();
        let end = Instant::now() + limit;
        let mut last: Option<u64> = None;
        loop {
            if Instant::now() > end {
                return Err(format!(
                    "consumer: no end after {limit:?}; {} messages",
                    seen.count
                ));
            }
            let r = c.recv_with_timeout(Duration::from_millis(200), |m| {
                check(m, seed, max, &mut scratch)
            });
            match r {
                Ok(Ok(i)) => {
                    if let Some(l) = last {
                        if i <= l {
                            return Err(format!(
                                "message {i} after {l}: out of order or duplicate"
                            ));
                        }
                    }
                    last = Some(i);
                    seen.count += 1;
                    if keep {
                        seen.indices.push(i);
                    }
                    progress.store(seen.count, Ordering::Release);
                }
                Ok(Err(why)) => return Err(why),
                Err(Error::Timeout) => {}
                Err(Error::Disconnected) => {
                    seen.end = "disconnected".into();
                    return Ok(seen);
                }
                Err(Error::PeerDied) if !survive => {
                    seen.end = "peer died".into();
                    return Ok(seen);
                }
                Err(Error::PeerDied) => {
                    seen.producer_deaths += 1;
                    // Wait for the replacement to attach.
                    while c.peer_status().ok() != Some(shmpipe::PeerStatus::Alive) {
                        if Instant::now() > end {
                            return Err(
                                "consumer: the producer died and no replacement came".into()
                            );
                        }
                        thread::sleep(Duration::from_millis(10));
                    }
                }
                Err(e) => return Err(format!("consumer: {e}")),
            }
        }
    })
}

/// Wait until `f()` holds (checked every 10 ms), at most `limit`.
pub fn wait_until(limit: Duration, what: &str, mut f: impl FnMut() -> bool) {
    let end = Instant::now() + limit;
    while !f() {
        assert!(Instant::now() < end, "timed out waiting for {what}");
        thread::sleep(Duration::from_millis(10));
    }
}
