//! How an idle side waits: spinning, or sleeping in the kernel on a futex
//! word or on a counting semaphore of our own (a count word in the segment
//! with futex sleeps; no glibc object lives in the segment).
//!
//! Every futex call of the crate is here (`futex_wait`, `futex_wake`,
//! `futex_waitv` for the `WaitSet`), with `membarrier`: thin safe wrappers
//! that take references to the words in the header; the sleep/wake protocol
//! that uses them is in `ring/`.

use std::time::{Duration, Instant};

use crate::layout::WaitWord;
use crate::sync::{AtomicU32, Ordering};

/// How an endpoint waits when the ring is full (producer) or empty (consumer).
/// Chosen at creation and recorded in the segment header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum WaitStrategy {
    /// Busy-poll with `spin_loop` hints. Lowest latency, burns a CPU while idle.
    Spin,
    /// Busy-poll with exponential backoff, then `sched_yield`.
    SpinYield,
    /// Spin briefly, then sleep on a shared futex word (Linux). The streaming
    /// hot path makes no syscall; a wake syscall is made only for a registered
    /// sleeper.
    Futex,
    /// Spin briefly, then sleep on a counting semaphore in the segment: the
    /// waker posts (adds one to a count word and wakes the sleeper), the
    /// sleeper takes one post or sleeps on the word while it is zero. The
    /// semaphore is shmpipe's own, built on a futex word, not a glibc
    /// `sem_t`: a peer that writes it can cause spurious or late (by one
    /// 20 ms slice) wake-ups, never a crash or an endless sleep.
    Semaphore,
}

impl WaitStrategy {
    /// Every strategy, in order of their codes.
    pub const ALL: [WaitStrategy; 4] = [
        WaitStrategy::Spin,
        WaitStrategy::SpinYield,
        WaitStrategy::Futex,
        WaitStrategy::Semaphore,
    ];

    pub(crate) fn code(self) -> u32 {
        match self {
            WaitStrategy::Spin => 1,
            WaitStrategy::SpinYield => 2,
            WaitStrategy::Futex => 3,
            WaitStrategy::Semaphore => 4,
        }
    }

    pub(crate) fn from_code(code: u32) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.code() == code)
    }

    /// Whether this strategy sleeps in the kernel (and so needs wake-ups).
    pub(crate) fn sleeps(self) -> bool {
        matches!(self, WaitStrategy::Futex | WaitStrategy::Semaphore)
    }

    /// Lower-case name, as used by the command line.
    ///
    /// ```
    /// assert_eq!(shmpipe::WaitStrategy::Futex.name(), "futex");
    /// ```
    pub fn name(self) -> &'static str {
        match self {
            WaitStrategy::Spin => "spin",
            WaitStrategy::SpinYield => "spin-yield",
            WaitStrategy::Futex => "futex",
            WaitStrategy::Semaphore => "semaphore",
        }
    }
}

impl std::str::FromStr for WaitStrategy {
    type Err = crate::Error;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|w| w.name() == s)
            .ok_or_else(|| crate::Error::InvalidOption {
                reason: format!(
                    "unknown wait strategy {s:?}; use spin, spin-yield, futex or semaphore"
                ),
            })
    }
}

impl std::fmt::Display for WaitStrategy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Longest single sleep: a sleeper wakes at least this often to check its
/// deadline and whether the peer is still alive.
pub(crate) const SLICE: Duration = Duration::from_millis(20);

/// A cheap monotonic clock in nanoseconds for rate-limiting liveness
/// checks: `CLOCK_MONOTONIC_COARSE` (a vDSO read of the last tick, about
/// 5 ns against 20+ for the precise clock; its resolution, a scheduler
/// tick, is far below `SLICE`). Elsewhere: the precise clock.
#[inline]
pub(crate) fn coarse_nanos() -> u64 {
    #[cfg(all(target_os = "linux", not(any(miri, loom))))]
    {
        // Raw libc, not `nix::time::clock_gettime`: this runs on every
        // empty `try_recv` poll (`Consumer::quick_empty`), and nix's
        // errno/`Result` wrapping costs 17 more instructions per poll
        // (callgrind, `examples/instr_poll`: 81 vs 98).
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: a valid timespec to write into; this clock id always
        // exists on Linux >= 2.6.32 (if it failed, `ts` stays 0 and the
        // caller just checks the kernel more often).
        unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC_COARSE, &mut ts) };
        ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
    }
    #[cfg(not(all(target_os = "linux", not(any(miri, loom)))))]
    {
        // Only under Miri/loom and off Linux, where no fork races it (see
        // `light_barrier_available` for why Linux avoids a `OnceLock`).
        use std::sync::OnceLock;
        static BASE: OnceLock<Instant> = OnceLock::new();
        BASE.get_or_init(Instant::now).elapsed().as_nanos() as u64
    }
}

/// End of the next sleep slice: the deadline or `SLICE` from now, whichever is first.
pub(crate) fn slice_end(deadline: Option<Instant>) -> Instant {
    let s = Instant::now() + SLICE;
    match deadline {
        Some(d) if d < s => d,
        _ => s,
    }
}

#[cfg(not(any(loom, miri)))]
pub(crate) fn timespec_after(clock: libc::clockid_t, d: Duration) -> libc::timespec {
    // The clock ids are constants that exist; were the read to fail, the
    // deadline would count from 0, in the past: the wait returns at once.
    let now = nix::time::clock_gettime(nix::time::ClockId::from_raw(clock)).map_or(
        libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        },
        |t| *t.as_ref(),
    );
    let mut sec = now.tv_sec + d.as_secs() as libc::time_t;
    let mut nsec = now.tv_nsec + d.subsec_nanos() as libc::c_long;
    if nsec >= 1_000_000_000 {
        nsec -= 1_000_000_000;
        sec += 1;
    }
    libc::timespec {
        tv_sec: sec,
        tv_nsec: nsec,
    }
}

/// Sleep while `word == expected`, until `until` (absolute, monotonic clock)
/// at the latest. Returns on wake-up, value change, signal or timeout; the
/// caller always re-checks its condition.
#[cfg(all(target_os = "linux", not(loom)))]
pub(crate) fn futex_wait(word: &AtomicU32, expected: u32, until: Instant) {
    let remaining = until.saturating_duration_since(Instant::now());
    if remaining.is_zero() {
        return;
    }
    #[cfg(not(miri))]
    let ts = timespec_after(libc::CLOCK_MONOTONIC, remaining);
    #[cfg(miri)]
    let ts = {
        let mut now = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: valid out-pointer.
        unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now) };
        let total = now.tv_nsec as u128 + remaining.as_nanos();
        libc::timespec {
            tv_sec: now.tv_sec + (total / 1_000_000_000) as libc::time_t,
            tv_nsec: (total % 1_000_000_000) as libc::c_long,
        }
    };
    // SAFETY: `word` is a valid, aligned u32 that outlives the call; the
    // timespec is valid. FUTEX_WAIT_BITSET takes an absolute CLOCK_MONOTONIC
    // deadline. No FUTEX_PRIVATE_FLAG: the waker is another process.
    // EINTR, EAGAIN (value already changed) and ETIMEDOUT all just return.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAIT_BITSET,
            expected,
            &ts as *const libc::timespec,
            std::ptr::null::<u32>(),
            libc::FUTEX_BITSET_MATCH_ANY,
        )
    };
}

/// Wake up to `n` sleepers on `word`; returns how many were woken.
#[cfg(all(target_os = "linux", not(loom)))]
pub(crate) fn futex_wake(word: &AtomicU32, n: i32) -> usize {
    // SAFETY: `word` is a valid, aligned u32; FUTEX_WAKE does not dereference
    // anything else. Shared (not private) futex: sleepers are in other processes.
    let r = unsafe { libc::syscall(libc::SYS_futex, word.as_ptr(), libc::FUTEX_WAKE, n) };
    r.max(0) as usize
}

/// `struct futex_waitv` (linux/futex.h, Linux 5.16): one word of a
/// [`futex_waitv`] call.
#[cfg(all(target_os = "linux", not(any(loom, miri))))]
#[repr(C)]
#[derive(Clone, Copy)]
pub(crate) struct FutexWaitv {
    val: u64,
    uaddr: u64,
    flags: u32,
    reserved: u32,
}

/// 32-bit futex word; FUTEX2_PRIVATE not set: the words are shared.
#[cfg(all(target_os = "linux", not(any(loom, miri))))]
const FUTEX2_SIZE_U32: u32 = 2;
#[cfg(all(target_os = "linux", target_arch = "x86_64", not(any(loom, miri))))]
const SYS_FUTEX_WAITV: libc::c_long = 449;
#[cfg(all(target_os = "linux", not(target_arch = "x86_64"), not(any(loom, miri))))]
const SYS_FUTEX_WAITV: libc::c_long = libc::SYS_futex_waitv;

#[cfg(all(target_os = "linux", not(any(loom, miri))))]
impl FutexWaitv {
    /// Sleep while `word` holds `val`.
    pub(crate) fn new(word: &AtomicU32, val: u32) -> FutexWaitv {
        FutexWaitv {
            val: val as u64,
            uaddr: word.as_ptr() as u64,
            flags: FUTEX2_SIZE_U32,
            reserved: 0,
        }
    }
}

/// How a `futex_waitv` call ended.
#[cfg(all(target_os = "linux", not(any(loom, miri))))]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Waited {
    /// `until` passed: no word changed before it (or a change came just
    /// after; the next call returns at once with EAGAIN).
    TimedOut,
    /// A wake-up, a word that no longer held its value, or a signal.
    Other,
}

/// Sleep until one of `words` no longer holds its value, a wake-up, a
/// signal, or `until`. `Err` (ENOSYS) only for a kernel without
/// `futex_waitv`.
#[cfg(all(target_os = "linux", not(any(loom, miri))))]
pub(crate) fn futex_waitv(words: &[FutexWaitv], until: Instant) -> std::io::Result<Waited> {
    let remaining = until.saturating_duration_since(Instant::now());
    if remaining.is_zero() || words.is_empty() {
        if !remaining.is_zero() {
            std::thread::sleep(remaining);
        }
        return Ok(Waited::TimedOut);
    }
    let ts = timespec_after(libc::CLOCK_MONOTONIC, remaining);
    // SAFETY: `words` is a valid array of `words.len()` (<= 128) entries
    // whose `uaddr`s point to live, aligned u32 futex words (in segments
    // kept mapped by the caller's `Arc`s, or the set's own words); the
    // timespec is a valid absolute CLOCK_MONOTONIC time.
    let r = unsafe {
        libc::syscall(
            SYS_FUTEX_WAITV,
            words.as_ptr(),
            words.len() as libc::c_uint,
            0 as libc::c_uint,
            &ts as *const libc::timespec,
            libc::CLOCK_MONOTONIC,
        )
    };
    if r < 0 {
        let e = std::io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::ENOSYS) => return Err(e),
            Some(libc::ETIMEDOUT) => return Ok(Waited::TimedOut),
            // EAGAIN (a word changed), EINTR: the caller re-checks.
            _ => {}
        }
    }
    Ok(Waited::Other)
}

/// Whether the kernel has `futex_waitv` (an empty call fails with EINVAL if
/// it does, ENOSYS if not): `Err` (ENOSYS) if not.
#[cfg(all(target_os = "linux", not(any(loom, miri))))]
pub(crate) fn probe_waitv() -> std::io::Result<()> {
    // SAFETY: no pointers are dereferenced for nr_futexes = 0.
    let r = unsafe {
        libc::syscall(
            SYS_FUTEX_WAITV,
            std::ptr::null::<FutexWaitv>(),
            0 as libc::c_uint,
            0 as libc::c_uint,
            std::ptr::null::<libc::timespec>(),
            libc::CLOCK_MONOTONIC,
        )
    };
    if r < 0 {
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() == Some(libc::ENOSYS) {
            return Err(e);
        }
    }
    Ok(())
}

// Under loom: a futex stand-in that blocks in a way loom can see. One
// mutex + condvar for all words (a wake-up may wake a sleeper of another
// word, which futex allows: callers re-check their condition). No timeout:
// a sleeper stays asleep until woken, so a lost wake-up is a loom deadlock.
#[cfg(loom)]
loom::lazy_static! {
    static ref FUTEX: (loom::sync::Mutex<()>, loom::sync::Condvar) =
        (loom::sync::Mutex::new(()), loom::sync::Condvar::new());
}

/// Loom stand-in for `futex_wait`: sleep while `word == expected`, ignoring
/// `until`. The value check and the sleep are atomic with respect to
/// `futex_wake` (both hold the mutex), as in the kernel.
#[cfg(loom)]
pub(crate) fn futex_wait(word: &AtomicU32, expected: u32, until: Instant) {
    let _ = until;
    let (m, cv) = &*FUTEX;
    let g = m.lock().unwrap_or_else(|e| e.into_inner());
    if word.load(crate::sync::Ordering::SeqCst) == expected {
        drop(cv.wait(g).unwrap_or_else(|e| e.into_inner()));
    }
}

/// Loom stand-in for `futex_waitv(2)`: sleep while every word still holds
/// its expected value (checked atomically with respect to `futex_wake`).
#[cfg(loom)]
pub(crate) fn futex_wait_any(words: &[(&AtomicU32, u32)]) {
    let (m, cv) = &*FUTEX;
    let g = m.lock().unwrap_or_else(|e| e.into_inner());
    // SeqCst: as in `futex_wait` (the kernel's value check); pairs with the
    // waker's Release bump of `seq` before its `futex_wake`.
    if words
        .iter()
        .all(|(w, v)| w.load(crate::sync::Ordering::SeqCst) == *v)
    {
        drop(cv.wait(g).unwrap_or_else(|e| e.into_inner()));
    }
}

/// Loom stand-in for `futex_wake`: wakes every sleeper; returns 1.
#[cfg(loom)]
pub(crate) fn futex_wake(word: &AtomicU32, n: i32) -> usize {
    let _ = (word, n);
    let (m, cv) = &*FUTEX;
    let _g = m.lock().unwrap_or_else(|e| e.into_inner());
    cv.notify_all();
    1
}

/// Most compare-and-swap attempts one take of the semaphore makes: a peer
/// that rewrites the count in a loop can fail our CAS forever, so a take
/// gives up after this many and the wait returns (the caller re-checks).
const SEM_CAS_TRIES: u32 = 16;

/// Post the semaphore of `w` once: add one to its count, then wake one
/// sleeper on the count word (a shared futex: the sleeper is the peer).
///
/// The count is ours, not glibc's: any value a peer stores in it is a
/// count (DESIGN.md §4). An increment that wraps a forged `u32::MAX` to 0
/// loses this post; the sleeper then wakes at the end of its slice.
pub(crate) fn sem_post(w: &WaitWord) {
    // Release: pairs with the Acquire CAS in `sem_take`. (The data itself
    // is published by the SeqCst signal store before the waker's swap of
    // `waiting`; the semaphore is only the doorbell.)
    w.count.fetch_add(1, Ordering::Release);
    futex_wake(&w.count, 1);
}

/// Take one post if the count is positive. What remains is clamped to 1:
/// each side has one sleeper, so a count above one only stands for stale
/// posts (a sleeper that found data on its re-check after the waker had
/// already swapped `waiting`), each of which would cost a spurious return.
/// A forged count therefore costs at most two spurious returns.
fn sem_take(w: &WaitWord) -> bool {
    for _ in 0..SEM_CAS_TRIES {
        // Relaxed: the value only picks the CAS's expected value.
        let c = w.count.load(Ordering::Relaxed);
        if c == 0 {
            return false;
        }
        // Acquire: pairs with the Release increment in `sem_post`.
        if w.count
            .compare_exchange(c, (c - 1).min(1), Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
        {
            return true;
        }
    }
    false
}

/// Wait on the semaphore of `w` until `until` at the latest: take a post if
/// there is one; otherwise sleep on the count word while it is 0, then take
/// the post that woke us. Bounded: at most `2 * SEM_CAS_TRIES` CAS attempts
/// and one futex sleep that ends at `until` (a slice end). A peer writing
/// the word can only make it return early (a spurious wake-up) or sleep to
/// `until` (a wake-up missed until the next slice); the caller re-checks.
pub(crate) fn sem_wait(w: &WaitWord, until: Instant) {
    if sem_take(w) {
        return;
    }
    // Sleeps only while the count is 0: a post between our look and the
    // sleep changed the word, and the kernel returns at once (EAGAIN).
    futex_wait(&w.count, 0, until);
    sem_take(w);
}

/// `membarrier(2)` commands (linux/membarrier.h).
#[cfg(all(target_os = "linux", not(any(loom, miri))))]
const MEMBARRIER_CMD_GLOBAL_EXPEDITED: libc::c_long = 1 << 1;
#[cfg(all(target_os = "linux", not(any(loom, miri))))]
const MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED: libc::c_long = 1 << 2;

/// Register this process for expedited global memory barriers (once per
/// process). Returns whether it may publish with the light barrier (plain
/// Release store + compiler fence), relying on sleepers to call
/// [`heavy_barrier`].
///
/// Fork-safe: the answer is cached with the pid it belongs to, in one
/// atomic, and computed without a lock. Registering can take milliseconds
/// (in a process with several threads the kernel waits for an RCU grace
/// period); a `OnceLock` here made a child forked by another thread during
/// that time block forever on the initialiser its parent's thread was
/// running (the tokio tests' forked producers hung at start-up). Racing
/// threads may both register: the call is idempotent. A forked child
/// registers again (cheap in a single-threaded child), so its answer does
/// not rest on the kernel carrying the registration across `fork`.
pub(crate) fn light_barrier_available() -> bool {
    #[cfg(all(target_os = "linux", not(any(loom, miri))))]
    {
        use std::sync::atomic::{AtomicU64, Ordering};
        /// `pid << 1 | registered`, or 0 before the first registration.
        static REGISTERED: AtomicU64 = AtomicU64::new(0);
        let pid = u64::from(std::process::id());
        // Relaxed: the cached word is the whole state (no other data is
        // published with it).
        let v = REGISTERED.load(Ordering::Relaxed);
        if v != 0 && v >> 1 == pid {
            return v & 1 == 1;
        }
        // SAFETY: membarrier takes no pointers; registration only
        // affects this process's eligibility for expedited barriers.
        let ok = unsafe {
            libc::syscall(
                libc::SYS_membarrier,
                MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED,
                0 as libc::c_long,
                0 as libc::c_long,
            ) == 0
        };
        REGISTERED.store(pid << 1 | u64::from(ok), Ordering::Relaxed);
        ok
    }
    #[cfg(not(all(target_os = "linux", not(any(loom, miri)))))]
    {
        false
    }
}

/// Execute a full memory barrier on every CPU currently running a
/// registered process (the heavy side of the asymmetric barrier). Returns
/// false if the kernel refused, in which case the caller must not rely on it.
pub(crate) fn heavy_barrier() -> bool {
    #[cfg(all(target_os = "linux", not(any(loom, miri))))]
    {
        // SAFETY: membarrier takes no pointers.
        unsafe {
            libc::syscall(
                libc::SYS_membarrier,
                MEMBARRIER_CMD_GLOBAL_EXPEDITED,
                0 as libc::c_long,
                0 as libc::c_long,
            ) == 0
        }
    }
    #[cfg(not(all(target_os = "linux", not(any(loom, miri)))))]
    {
        false
    }
}
