//! Helpers shared by the integration tests (`model`, `stress`, `wakeup`,
//! `errors`, and the crash/recovery tests).
//!
//! - unique shm names and a guard that removes them ([`ShmName`]);
//! - the three ring backings behind one call ([`Backing`], [`make_pair`]);
//! - a seeded, random-access message stream whose messages carry a sequence
//!   number and a checksum ([`MsgStream`], [`Verifier`]);
//! - `fork` helpers: a child that reports through a pipe and exits with
//!   `_exit` ([`fork_child`]), a parent-side deadline ([`Child::wait`]) and a
//!   watchdog for a parent that does ring work while the child runs
//!   ([`Child::watchdog`]);
//! - [`variant_tests!`]: instantiate generic test bodies for both variants.
//!
//! Keep this file stable: other test files depend on it.

#![allow(dead_code)]

use std::fs::File;
use std::io::Read;
use std::os::fd::FromRawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

#[allow(unused_imports)]
pub use shmpipe::{
    Builder, Consumer, Error, LockFree, Locked, Pair, Producer, Variant, WaitStrategy,
};

/// Instantiate generic test bodies `fn name<V: Variant>()` for both
/// variants, as `lock_free::name` and `locked::name`.
#[allow(unused_macros)]
macro_rules! variant_tests {
    ($($body:ident),* $(,)?) => {
        mod lock_free {
            $(
                #[test]
                fn $body() {
                    super::$body::<shmpipe::LockFree>()
                }
            )*
        }
        mod locked {
            $(
                #[test]
                fn $body() {
                    super::$body::<shmpipe::Locked>()
                }
            )*
        }
    };
}

// ---------------------------------------------------------------------------
// Names

static NAME_COUNTER: AtomicU64 = AtomicU64::new(0);

/// A shm name unique to this process and call: `/shmpipe-t-<tag>-<pid>-<n>`.
pub fn unique_name(tag: &str) -> String {
    let n = NAME_COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("/shmpipe-t-{tag}-{}-{n}", std::process::id())
}

/// A unique shm name that is removed (if it still exists) when dropped.
#[derive(Debug)]
pub struct ShmName {
    name: String,
}

impl ShmName {
    /// A fresh unique name; nothing is created.
    pub fn new(tag: &str) -> Self {
        ShmName {
            name: unique_name(tag),
        }
    }

    /// The name, with its leading '/'.
    pub fn as_str(&self) -> &str {
        &self.name
    }

    /// Where the object lives in the file system (`/dev/shm/<name>`).
    pub fn path(&self) -> std::path::PathBuf {
        std::path::Path::new("/dev/shm").join(&self.name[1..])
    }

    /// Whether the object currently exists.
    pub fn exists(&self) -> bool {
        self.path().exists()
    }
}

impl std::ops::Deref for ShmName {
    type Target = str;
    fn deref(&self) -> &str {
        &self.name
    }
}

impl Drop for ShmName {
    fn drop(&mut self) {
        // Usually already unlinked by the creator's endpoint.
        let _ = shmpipe::remove(&self.name);
    }
}

// ---------------------------------------------------------------------------
// Backings

/// A builder for variant `V` with the library defaults.
pub fn builder<V: Variant>() -> Builder<V> {
    Builder::<V>::default()
}

/// Where a ring's bytes live.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backing {
    /// A named POSIX shm object: `create_producer` + `open_consumer` by name.
    Named,
    /// An anonymous sealed memfd (`anonymous()?.split()` in one process).
    Anonymous,
    /// Heap memory (`in_process()?.split()`).
    InProcess,
}

impl Backing {
    /// Every backing.
    pub const ALL: [Backing; 3] = [Backing::Named, Backing::Anonymous, Backing::InProcess];
}

/// Both ends of a ring plus, for a named ring, the guard of its name.
pub struct Ends<V: Variant> {
    pub tx: Producer<V>,
    pub rx: Consumer<V>,
    pub name: Option<ShmName>,
}

/// Make a ring with `b`'s options on `backing`, both ends in this process.
pub fn make_pair<V: Variant>(b: &Builder<V>, backing: Backing) -> Result<Ends<V>, Error> {
    match backing {
        Backing::Named => {
            let name = ShmName::new("pair");
            let tx = b.create_producer(&name)?;
            let rx = b.open_consumer(&name)?;
            Ok(Ends {
                tx,
                rx,
                name: Some(name),
            })
        }
        Backing::Anonymous => {
            let (tx, rx) = b.anonymous()?.split()?;
            Ok(Ends { tx, rx, name: None })
        }
        Backing::InProcess => {
            let (tx, rx) = b.in_process()?.split()?;
            Ok(Ends { tx, rx, name: None })
        }
    }
}

/// `try_send` `msg` until the ring is full; returns how many were sent.
/// Panics on any error other than `Full`.
pub fn fill_until_full<V: Variant>(tx: &mut Producer<V>, msg: &[u8]) -> usize {
    let mut n = 0;
    loop {
        match tx.try_send(msg) {
            Ok(()) => n += 1,
            Err(Error::Full) => return n,
            Err(e) => panic!("try_send while filling the ring: {e:?}"),
        }
    }
}

// ---------------------------------------------------------------------------
// Random numbers

/// SplitMix64's output function: a good 64-bit mixer.
pub fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A small, fast, seeded generator (SplitMix64). Not for cryptography.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        mix64(self.0)
    }

    /// Uniform in `0..n` (`n > 0`; the tiny modulo bias does not matter here).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    /// True with probability `1/n`.
    pub fn one_in(&mut self, n: u64) -> bool {
        self.below(n) == 0
    }

    pub fn fill(&mut self, buf: &mut [u8]) {
        let mut chunks = buf.chunks_exact_mut(8);
        for c in &mut chunks {
            c.copy_from_slice(&self.next_u64().to_le_bytes());
        }
        let rest = chunks.into_remainder();
        if !rest.is_empty() {
            let w = self.next_u64().to_le_bytes();
            let n = rest.len();
            rest.copy_from_slice(&w[..n]);
        }
    }
}

/// A seed for a test run: `SHMPIPE_TEST_SEED` if set, else the clock. Print
/// it in failure messages so a run can be repeated.
pub fn test_seed() -> u64 {
    if let Some(s) = std::env::var("SHMPIPE_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
    {
        return s;
    }
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    mix64(t ^ u64::from(std::process::id()))
}

// ---------------------------------------------------------------------------
// The message stream

/// Bytes at the start of a message that hold its sequence number and checksum
/// (shorter messages hold a prefix of them).
pub const MSG_HEADER: usize = 16;

/// A seeded, random-access stream of test messages. Message `seq` is fully
/// determined by `(seed, seq)`: its length by [`MsgStream::len_of`], its
/// bytes by [`MsgStream::fill`]. A message of `len >= 16` bytes starts with
/// `seq` (u64 LE) and a checksum (u64 LE) of its length, `seq` and the rest;
/// shorter messages hold the first `len` bytes of that 16-byte header. So a
/// receiver can check order (no gap, no duplicate), length and integrity
/// without being told anything but the seed.
#[derive(Debug, Clone, Copy)]
pub struct MsgStream {
    pub seed: u64,
    /// Largest length ever produced (the ring's `max_message`, or less).
    pub max: usize,
    /// Most messages are `0..=small_max` bytes long.
    pub small_max: usize,
    /// One message in `large_one_in` is "large": `small_max+1..=max` bytes
    /// (and one in `4 * large_one_in` exactly `max`). 0 = never.
    pub large_one_in: u64,
}

/// Checksum of a message body (FNV-1a, 64 bit, seeded with length and seq).
pub fn checksum(seq: u64, len: usize, body: &[u8]) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325u64 ^ mix64(seq) ^ (len as u64).rotate_left(32);
    for &b in body {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

impl MsgStream {
    /// Sizes `0..=256` (capped at `max`) with one large message in 512.
    pub fn new(seed: u64, max: usize) -> Self {
        MsgStream {
            seed,
            max,
            small_max: 256.min(max),
            large_one_in: 512,
        }
    }

    fn key(&self, seq: u64) -> u64 {
        mix64(self.seed ^ mix64(seq.wrapping_add(0x5151)))
    }

    /// Length of message `seq`.
    pub fn len_of(&self, seq: u64) -> usize {
        let k = self.key(seq);
        let pick = mix64(k ^ 1);
        if self.large_one_in != 0 && self.max > self.small_max {
            if pick % (4 * self.large_one_in) == 0 {
                return self.max;
            }
            if pick % self.large_one_in == 1 {
                let span = (self.max - self.small_max) as u64;
                return self.small_max + 1 + (mix64(k ^ 2) % span) as usize;
            }
        }
        (mix64(k ^ 3) % (self.small_max as u64 + 1)) as usize
    }

    /// Write message `seq`, truncated or not to `buf.len()` bytes, into `buf`.
    /// With `buf.len() == len_of(seq)` this is the message itself.
    pub fn fill(&self, seq: u64, buf: &mut [u8]) {
        let len = buf.len();
        if len > MSG_HEADER {
            Rng::new(self.key(seq)).fill(&mut buf[MSG_HEADER..]);
        }
        let sum = checksum(seq, len, buf.get(MSG_HEADER..).unwrap_or(&[]));
        let mut head = [0u8; MSG_HEADER];
        head[..8].copy_from_slice(&seq.to_le_bytes());
        head[8..].copy_from_slice(&sum.to_le_bytes());
        let n = len.min(MSG_HEADER);
        buf[..n].copy_from_slice(&head[..n]);
    }

    /// Message `seq` into `out` (replacing its contents).
    pub fn message(&self, seq: u64, out: &mut Vec<u8>) {
        out.clear();
        out.resize(self.len_of(seq), 0);
        self.fill(seq, out);
    }

    /// Check that `msg` is exactly message `seq`; `scratch` is reused.
    pub fn verify(&self, seq: u64, msg: &[u8], scratch: &mut Vec<u8>) -> Result<(), String> {
        if msg.len() >= 8 {
            let got = u64::from_le_bytes(msg[..8].try_into().unwrap_or([0; 8]));
            if got != seq {
                let what = if got > seq {
                    "gap"
                } else {
                    "duplicate or reordered message"
                };
                return Err(format!(
                    "{what}: expected seq {seq}, got seq {got} ({} bytes)",
                    msg.len()
                ));
            }
        }
        let want = self.len_of(seq);
        if msg.len() != want {
            return Err(format!(
                "message {seq}: length {} but expected {want}",
                msg.len()
            ));
        }
        if msg.len() >= MSG_HEADER {
            let sum = u64::from_le_bytes(msg[8..16].try_into().unwrap_or([0; 8]));
            if sum != checksum(seq, msg.len(), &msg[MSG_HEADER..]) {
                return Err(format!(
                    "message {seq} ({} bytes): checksum mismatch",
                    msg.len()
                ));
            }
        }
        self.message(seq, scratch);
        if msg != &scratch[..] {
            let at = msg.iter().zip(scratch.iter()).position(|(a, b)| a != b);
            return Err(format!(
                "message {seq} ({} bytes): content differs at byte {at:?}",
                msg.len()
            ));
        }
        Ok(())
    }
}

/// Receiver side of a [`MsgStream`]: checks that messages arrive in order,
/// complete and intact.
#[derive(Debug)]
pub struct Verifier {
    pub stream: MsgStream,
    /// Sequence number of the next expected message (= messages verified).
    pub next: u64,
    scratch: Vec<u8>,
}

impl Verifier {
    pub fn new(stream: MsgStream) -> Self {
        Verifier {
            stream,
            next: 0,
            scratch: Vec::new(),
        }
    }

    /// Check the next message.
    pub fn check(&mut self, msg: &[u8]) -> Result<(), String> {
        self.stream.verify(self.next, msg, &mut self.scratch)?;
        self.next += 1;
        Ok(())
    }
}

// ---------------------------------------------------------------------------
// Serialising tests within one test binary

static SERIAL: Mutex<()> = Mutex::new(());

/// Hold this while a test forks or needs the CPUs to itself: tests of one
/// binary that take it run one at a time. (A child forked by one test also
/// inherits every descriptor of the others, role locks included.)
pub fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

// ---------------------------------------------------------------------------
// fork

/// A forked child process.
#[derive(Debug)]
pub struct Child {
    pid: libc::pid_t,
    /// Read end of the child's report pipe (non-blocking).
    report: File,
}

/// Seconds after which a child kills itself (SIGALRM) whatever happens: a
/// last resort in case the parent's own deadline never comes.
pub const CHILD_ALARM_SECS: u32 = 600;

fn write_fd(fd: libc::c_int, mut bytes: &[u8]) {
    while !bytes.is_empty() {
        // SAFETY: `bytes` is a valid buffer; a bad fd only makes write fail.
        let n = unsafe { libc::write(fd, bytes.as_ptr().cast(), bytes.len()) };
        if n <= 0 {
            return;
        }
        bytes = &bytes[n as usize..];
    }
}

/// Fork. The child runs `f` and `_exit`s: 0 if it returned `Ok`, 1 with the
/// message sent to the parent if it returned `Err`, 101 if it panicked. The
/// child never returns into the test harness, prints nothing, and dies of
/// SIGALRM after [`CHILD_ALARM_SECS`].
///
/// In the child do only ring work (the test process may have other threads).
/// `f`'s captures are dropped unused in the parent: capture by reference, or
/// pass what both processes need through [`fork_with`].
pub fn fork_child(f: impl FnOnce() -> Result<(), String>) -> Child {
    fork_with((), |()| f()).0
}

/// Fork; the child runs `f(value)` (see [`fork_child`]), the parent gets the
/// child and its own `value` back. Typical: `fork_with(pair, |p| consumer(p))`
/// and `pair.into_producer()` in the parent.
pub fn fork_with<T>(value: T, f: impl FnOnce(T) -> Result<(), String>) -> (Child, T) {
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: `fds` is a valid out-array of two ints.
    let r = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC | libc::O_NONBLOCK) };
    assert_eq!(r, 0, "pipe2: {}", std::io::Error::last_os_error());
    // SAFETY: plain fork; the child below only runs `f` and exits.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork: {}", std::io::Error::last_os_error());
    if pid == 0 {
        // SAFETY: closing our copy of the read end; arming our own alarm.
        unsafe {
            libc::close(fds[0]);
            libc::alarm(CHILD_ALARM_SECS);
        }
        // No panic message: stderr belongs to the test harness.
        std::panic::set_hook(Box::new(|_| {}));
        let code = match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(value))) {
            Ok(Ok(())) => 0,
            Ok(Err(msg)) => {
                write_fd(fds[1], &msg.as_bytes()[..msg.len().min(8000)]);
                1
            }
            Err(p) => {
                let msg = p
                    .downcast_ref::<String>()
                    .map(String::as_str)
                    .or_else(|| p.downcast_ref::<&str>().copied())
                    .unwrap_or("(non-string panic)");
                write_fd(fds[1], b"child panicked: ");
                write_fd(fds[1], &msg.as_bytes()[..msg.len().min(8000)]);
                101
            }
        };
        // SAFETY: leave at once, without running destructors or atexit
        // handlers that belong to the parent's state.
        unsafe { libc::_exit(code) };
    }
    // SAFETY: closing our copy of the write end; the read end is ours.
    unsafe { libc::close(fds[1]) };
    // SAFETY: fresh descriptor owned by nobody else.
    let report = unsafe { File::from_raw_fd(fds[0]) };
    (Child { pid, report }, value)
}

impl Child {
    pub fn pid(&self) -> libc::pid_t {
        self.pid
    }

    /// Kill the child with SIGKILL (it is reaped by [`Child::wait`]).
    pub fn kill(&self) {
        // SAFETY: plain kill of our own, not yet reaped, child.
        unsafe { libc::kill(self.pid, libc::SIGKILL) };
    }

    fn read_report(&mut self) -> String {
        let mut s = Vec::new();
        let mut buf = [0u8; 4096];
        while let Ok(n) = self.report.read(&mut buf) {
            if n == 0 {
                break;
            }
            s.extend_from_slice(&buf[..n]);
        }
        String::from_utf8_lossy(&s).into_owned()
    }

    /// Wait for the child to exit, at most `timeout`; then kill it and fail.
    /// `Ok(())` only if it exited with status 0.
    pub fn wait(mut self, timeout: Duration) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        let mut status = 0;
        loop {
            // SAFETY: waitpid on our own child with a valid out-pointer.
            let r = unsafe { libc::waitpid(self.pid, &mut status, libc::WNOHANG) };
            if r == self.pid {
                break;
            }
            if r < 0 {
                return Err(format!("waitpid: {}", std::io::Error::last_os_error()));
            }
            if Instant::now() >= deadline {
                self.kill();
                // SAFETY: as above; blocking reap after SIGKILL.
                unsafe { libc::waitpid(self.pid, &mut status, 0) };
                let report = self.read_report();
                return Err(format!(
                    "child {} did not finish within {timeout:?}; killed it. Report: {report}",
                    self.pid
                ));
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        let report = self.read_report();
        if libc::WIFEXITED(status) {
            match libc::WEXITSTATUS(status) {
                0 => Ok(()),
                c => Err(format!("child exited with status {c}: {report}")),
            }
        } else if libc::WIFSIGNALED(status) {
            Err(format!(
                "child killed by signal {} (9 = SIGKILL by a watchdog, 14 = SIGALRM): {report}",
                libc::WTERMSIG(status)
            ))
        } else {
            Err(format!(
                "child ended with wait status {status:#x}: {report}"
            ))
        }
    }

    /// Arm a watchdog for a parent that works with this child: if it is not
    /// dropped within `timeout`, it kills the child (so the parent's blocking
    /// ring calls fail with `PeerDied`), and if the parent is still not done
    /// 30 s later it aborts the whole test process rather than hang.
    /// Drop it before [`Child::wait`].
    pub fn watchdog(&self, timeout: Duration, what: &str) -> Watchdog {
        Watchdog::arm(Some(self.pid), timeout, what)
    }
}

/// See [`Child::watchdog`]; also usable without a child ([`Watchdog::arm`]).
#[derive(Debug)]
pub struct Watchdog {
    tx: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
    fired: Arc<AtomicBool>,
}

impl Watchdog {
    /// If not dropped within `timeout`: kill `pid` (if any), then abort the
    /// process 30 s later if still not dropped.
    pub fn arm(pid: Option<libc::pid_t>, timeout: Duration, what: &str) -> Watchdog {
        let (tx, rx) = mpsc::channel::<()>();
        let fired = Arc::new(AtomicBool::new(false));
        let f = fired.clone();
        let what = what.to_string();
        let thread = std::thread::spawn(move || {
            if rx.recv_timeout(timeout) != Err(mpsc::RecvTimeoutError::Timeout) {
                return;
            }
            f.store(true, Ordering::SeqCst);
            if let Some(pid) = pid {
                // SAFETY: the child is not reaped before the watchdog is dropped.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
            if rx.recv_timeout(Duration::from_secs(30)) == Err(mpsc::RecvTimeoutError::Timeout) {
                eprintln!("watchdog: {what} still stuck {timeout:?} + 30 s; aborting");
                std::process::abort();
            }
        });
        Watchdog {
            tx: Some(tx),
            thread: Some(thread),
            fired,
        }
    }

    /// Whether the deadline passed.
    pub fn fired(&self) -> bool {
        self.fired.load(Ordering::SeqCst)
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        drop(self.tx.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
