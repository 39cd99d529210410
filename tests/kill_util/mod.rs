//! Helpers for the fault-injection tests (`locked_kill`, `peer_death`,
//! `hostile`): unique names, seeded random numbers, self-checking messages,
//! forked children with watchdogs, pipes, and shared counters that survive a
//! child's SIGKILL.
//!
//! Children forked here only do ring work: they report failures by writing a
//! string into a pipe and leave with `libc::_exit`. Every test that forks
//! takes [`serial`] first, so no other test of the same binary forks while a
//! role lock is open (a child inherits every descriptor of the parent, and an
//! inherited role-lock descriptor would keep that role "alive").
#![allow(dead_code)]

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Serialise the tests of one binary (see the module docs).
pub fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// A shared-memory name unique to this process and call.
pub fn unique_name(tag: &str) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    format!(
        "/shmpipe-c2-{tag}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// Removes its shared-memory name (if still there) on drop.
pub struct ShmName(pub String);

impl ShmName {
    pub fn new(tag: &str) -> ShmName {
        ShmName(unique_name(tag))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
    /// The file backing the name.
    pub fn path(&self) -> String {
        format!("/dev/shm{}", self.0)
    }
}

impl Drop for ShmName {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(self.path());
        let _ = std::fs::remove_dir(self.path());
    }
}

/// Seed for the randomised tests: `SHMPIPE_TEST_SEED` or a fixed default.
pub fn seed() -> u64 {
    std::env::var("SHMPIPE_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5eed_c2c2_2024)
}

/// An environment override for an iteration count.
pub fn iterations(var: &str, default: usize) -> usize {
    std::env::var(var)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

/// splitmix64: small, seeded, good enough for test inputs.
#[derive(Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    /// Uniform in `0..n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi - lo + 1)
    }
    /// True with probability `num / den`.
    pub fn chance(&mut self, num: u64, den: u64) -> bool {
        self.below(den) < num
    }
    pub fn pick<'a, T>(&mut self, xs: &'a [T]) -> &'a T {
        &xs[self.below(xs.len() as u64) as usize]
    }
}

// ---------------------------------------------------------------------------
// Self-checking messages: bytes 0..8 the sequence number, 8..16 a checksum of
// the length, the sequence number and the body; the body is derived from the
// sequence number. The smallest message is 16 bytes.

pub const MSG_MIN: usize = 16;

fn body_byte(seq: u64, i: usize) -> u8 {
    (seq.wrapping_mul(0x9e37_79b9) as u8) ^ (i as u8).wrapping_mul(31) ^ ((i >> 8) as u8)
}

fn checksum(seq: u64, len: usize, body: &[u8]) -> u64 {
    // FNV-1a over (len, seq, body).
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in (len as u64)
        .to_le_bytes()
        .iter()
        .chain(seq.to_le_bytes().iter())
        .chain(body.iter())
    {
        h ^= *b as u64;
        h = h.wrapping_mul(0x100_0000_01b3);
    }
    h
}

/// Write message `seq` into `buf` (its length is the message length, >= 16).
pub fn fill_msg(seq: u64, buf: &mut [u8]) {
    assert!(buf.len() >= MSG_MIN);
    fill_body(seq, buf, MSG_MIN..buf.len());
    fill_head(seq, buf);
}

/// Write the body bytes `range` of message `seq` (for writing a claim in parts).
pub fn fill_body(seq: u64, buf: &mut [u8], range: std::ops::Range<usize>) {
    for i in range {
        if i >= MSG_MIN {
            buf[i] = body_byte(seq, i);
        }
    }
}

/// Write the sequence number and checksum (after the body is complete).
pub fn fill_head(seq: u64, buf: &mut [u8]) {
    let len = buf.len();
    let sum = checksum(seq, len, &buf[MSG_MIN..]);
    buf[0..8].copy_from_slice(&seq.to_le_bytes());
    buf[8..16].copy_from_slice(&sum.to_le_bytes());
}

pub fn make_msg(seq: u64, len: usize) -> Vec<u8> {
    let mut v = vec![0u8; len];
    fill_msg(seq, &mut v);
    v
}

/// Check a message; returns its sequence number.
pub fn check_msg(m: &[u8]) -> Result<u64, String> {
    if m.len() < MSG_MIN {
        return Err(format!("message of {} bytes is too short", m.len()));
    }
    let seq = u64::from_le_bytes(m[0..8].try_into().unwrap());
    let sum = u64::from_le_bytes(m[8..16].try_into().unwrap());
    if checksum(seq, m.len(), &m[MSG_MIN..]) != sum {
        return Err(format!(
            "checksum mismatch (seq field {seq}, {} bytes)",
            m.len()
        ));
    }
    for (i, b) in m.iter().enumerate().skip(MSG_MIN) {
        if *b != body_byte(seq, i) {
            return Err(format!("seq {seq}: body byte {i} is wrong"));
        }
    }
    Ok(seq)
}

/// Check that `m` is message number `want`.
pub fn expect_seq(m: &[u8], want: u64) -> Result<(), String> {
    let got = check_msg(m)?;
    if got != want {
        return Err(format!("expected seq {want}, got seq {got}"));
    }
    Ok(())
}

/// A deterministic size for message `seq` in `MSG_MIN..=max`.
pub fn size_for(seq: u64, salt: u64, max: usize) -> usize {
    let mut r = Rng::new(seq ^ salt.rotate_left(17));
    r.range(MSG_MIN as u64, max as u64) as usize
}

// ---------------------------------------------------------------------------
// Pipes.

pub struct Pipe {
    pub rd: OwnedFd,
    pub wr: OwnedFd,
}

pub fn pipe() -> Pipe {
    let mut fds = [0; 2];
    // SAFETY: valid out-array of two ints.
    let r = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) };
    assert_eq!(r, 0, "pipe2: {}", std::io::Error::last_os_error());
    // SAFETY: fresh descriptors owned by nobody else.
    unsafe {
        Pipe {
            rd: OwnedFd::from_raw_fd(fds[0]),
            wr: OwnedFd::from_raw_fd(fds[1]),
        }
    }
}

/// Write all of `bytes` to `fd` (ignores errors: the reader may be gone).
pub fn write_all(fd: &OwnedFd, mut bytes: &[u8]) {
    while !bytes.is_empty() {
        // SAFETY: valid fd and buffer.
        let n = unsafe { libc::write(fd.as_raw_fd(), bytes.as_ptr().cast(), bytes.len()) };
        if n <= 0 {
            if n < 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {
                continue;
            }
            return;
        }
        bytes = &bytes[n as usize..];
    }
}

/// Read exactly `n` bytes from `fd`, waiting at most `timeout` in all.
/// `None` on timeout or end of file.
pub fn read_exact_timeout(fd: &OwnedFd, n: usize, timeout: Duration) -> Option<Vec<u8>> {
    let end = Instant::now() + timeout;
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        let left = end.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return None;
        }
        let mut pfd = libc::pollfd {
            fd: fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        let r = unsafe { libc::poll(&mut pfd, 1, left.as_millis().min(i32::MAX as u128) as i32) };
        if r <= 0 {
            continue;
        }
        let mut buf = vec![0u8; n - out.len()];
        // SAFETY: valid fd and buffer.
        let got = unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        if got == 0 {
            return None;
        }
        if got > 0 {
            out.extend_from_slice(&buf[..got as usize]);
        }
    }
    Some(out)
}

/// Read whatever is in `fd` until end of file (for a dead child's report).
pub fn read_to_end_nonblocking(fd: &OwnedFd) -> String {
    let mut out = Vec::new();
    loop {
        let mut pfd = libc::pollfd {
            fd: fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        if unsafe { libc::poll(&mut pfd, 1, 0) } <= 0 {
            break;
        }
        let mut buf = [0u8; 4096];
        // SAFETY: valid fd and buffer.
        let n = unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        if n <= 0 {
            break;
        }
        out.extend_from_slice(&buf[..n as usize]);
    }
    String::from_utf8_lossy(&out).into_owned()
}

// ---------------------------------------------------------------------------
// Forked children.

/// How a child ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Exited(i32),
    Signaled(i32),
}

/// A forked child. Dropping it kills and reaps it if it is still around.
pub struct Child {
    pub pid: libc::pid_t,
    err: OwnedFd,
    reaped: bool,
}

/// Exit code of a child whose closure returned an error (reported in the pipe).
pub const CHILD_FAILED: i32 = 101;
/// Exit code of a child whose closure panicked.
pub const CHILD_PANICKED: i32 = 102;

/// Fork; the child runs `f` with an `alarm(watchdog_secs)` watchdog and
/// leaves with `_exit(0)` on `Ok`, or writes the error into a pipe the parent
/// reads and leaves with `_exit(CHILD_FAILED)`.
pub fn fork_child(watchdog_secs: u32, f: impl FnOnce() -> Result<(), String>) -> Child {
    let p = pipe();
    // SAFETY: fork has no preconditions; the child only runs `f` (ring work),
    // writes to a pipe and calls `_exit`.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork: {}", std::io::Error::last_os_error());
    if pid == 0 {
        // SAFETY: alarm only arms a timer; SIGALRM's default action ends us.
        unsafe { libc::alarm(watchdog_secs) };
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
        let code = match r {
            Ok(Ok(())) => 0,
            Ok(Err(msg)) => {
                write_all(&p.wr, msg.as_bytes());
                CHILD_FAILED
            }
            Err(_) => {
                write_all(&p.wr, b"child panicked");
                CHILD_PANICKED
            }
        };
        // SAFETY: leaves the child without running the parent's destructors.
        unsafe { libc::_exit(code) };
    }
    drop(p.wr);
    Child {
        pid,
        err: p.rd,
        reaped: false,
    }
}

impl Child {
    pub fn kill(&self, sig: i32) {
        if !self.reaped {
            // SAFETY: plain kill(2) on our own unreaped child.
            unsafe { libc::kill(self.pid, sig) };
        }
    }

    /// Wait for the child to end, at most `timeout`; on timeout kill it and panic.
    pub fn wait(&mut self, timeout: Duration) -> Status {
        assert!(!self.reaped, "child already reaped");
        let end = Instant::now() + timeout;
        loop {
            let mut st = 0;
            // SAFETY: valid out-pointer; our own child.
            let r = unsafe { libc::waitpid(self.pid, &mut st, libc::WNOHANG) };
            if r == self.pid {
                self.reaped = true;
                if libc::WIFEXITED(st) {
                    return Status::Exited(libc::WEXITSTATUS(st));
                }
                return Status::Signaled(libc::WTERMSIG(st));
            }
            assert!(r == 0, "waitpid: {}", std::io::Error::last_os_error());
            if Instant::now() >= end {
                self.kill(libc::SIGKILL);
                panic!("child {} did not finish within {timeout:?}", self.pid);
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// The failure report of a child that exited with `CHILD_FAILED`.
    pub fn report(&self) -> String {
        read_to_end_nonblocking(&self.err)
    }

    /// Wait and require `_exit(0)`; panic with the child's report otherwise.
    pub fn expect_ok(&mut self, timeout: Duration) {
        let st = self.wait(timeout);
        assert_eq!(st, Status::Exited(0), "child failed: {}", self.report());
    }

    /// SIGKILL the child and require that it died of it (not of anything else first).
    pub fn kill9(&mut self, timeout: Duration) {
        self.kill(libc::SIGKILL);
        let st = self.wait(timeout);
        assert_eq!(
            st,
            Status::Signaled(libc::SIGKILL),
            "child ended before the kill: {}",
            self.report()
        );
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        if !self.reaped {
            self.kill(libc::SIGKILL);
            let mut st = 0;
            // SAFETY: our own child; blocks only until the SIGKILL lands.
            unsafe { libc::waitpid(self.pid, &mut st, 0) };
        }
    }
}

/// Let the child sleep "forever" (until killed); the alarm watchdog ends it.
pub fn sleep_forever() -> ! {
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

/// End this process with SIGKILL now, as `kill -9` would.
pub fn die_now() -> ! {
    // SAFETY: raise on our own process.
    unsafe { libc::raise(libc::SIGKILL) };
    unreachable!("SIGKILL did not kill us");
}

// ---------------------------------------------------------------------------
// Shared words: a MAP_SHARED anonymous page made before fork, so a child can
// publish progress that the parent reads after killing it.

pub struct SharedWords {
    ptr: *mut AtomicU64,
    n: usize,
}

impl SharedWords {
    pub fn new(n: usize) -> SharedWords {
        let len = n * 8;
        // SAFETY: a fresh anonymous shared mapping; checked below.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        assert!(p != libc::MAP_FAILED, "mmap shared words");
        SharedWords { ptr: p.cast(), n }
    }
    pub fn get(&self, i: usize) -> &AtomicU64 {
        assert!(i < self.n);
        // SAFETY: in bounds; the zeroed mapping is a valid AtomicU64 array,
        // page-aligned, live until drop.
        unsafe { &*self.ptr.add(i) }
    }
}

impl Drop for SharedWords {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `new`.
        unsafe { libc::munmap(self.ptr.cast(), self.n * 8) };
    }
}

// ---------------------------------------------------------------------------
// Watchdog for the test process itself: aborts (with a message) if a test
// step does not finish in time, so a hang fails the run instead of wedging it.

pub struct Watchdog {
    tx: Option<std::sync::mpsc::Sender<()>>,
    th: Option<std::thread::JoinHandle<()>>,
}

impl Watchdog {
    pub fn new(what: &str, limit: Duration) -> Watchdog {
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let what = what.to_string();
        let th = std::thread::spawn(move || {
            if let Err(std::sync::mpsc::RecvTimeoutError::Timeout) = rx.recv_timeout(limit) {
                eprintln!("WATCHDOG: {what} did not finish within {limit:?}: aborting");
                std::process::abort();
            }
        });
        Watchdog {
            tx: Some(tx),
            th: Some(th),
        }
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        drop(self.tx.take());
        if let Some(th) = self.th.take() {
            let _ = th.join();
        }
    }
}

/// Poll `cond` every millisecond until it holds, at most `limit`.
pub fn wait_until(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + limit;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= end {
            return false;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// A short name of an error variant, for tables.
pub fn kind(e: &shmpipe::Error) -> &'static str {
    use shmpipe::Error as E;
    match e {
        E::Full => "full",
        E::Empty => "empty",
        E::Timeout => "timeout",
        E::Disconnected => "disconnected",
        E::PeerDied => "peer-died",
        E::Corrupted { .. } => "corrupted",
        E::TooLarge { .. } => "too-large",
        E::RoleTaken { .. } => "role-taken",
        E::LockNotRecoverable => "lock-not-recoverable",
        E::Io { .. } => "io",
        _ => "other",
    }
}
