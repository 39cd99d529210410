//! How an idle side waits: spinning, or sleeping in the kernel on a futex or
//! a POSIX semaphore that lives in the segment.
//!
//! Thin safe wrappers over the syscalls take references to the words in the
//! header; the sleep/wake protocol that uses them is in `ring.rs`.

use std::time::{Duration, Instant};

use crate::layout::WaitWord;
use crate::sync::AtomicU32;

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
    /// Spin briefly, then sleep on an unnamed process-shared POSIX semaphore
    /// in the segment.
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
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `now` is a valid out-pointer; clock ids are constants.
    unsafe { libc::clock_gettime(clock, &mut now) };
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

/// Initialise the semaphore of `w` (creator only, before publishing).
#[cfg(not(any(loom, miri)))]
pub(crate) fn sem_init(w: &WaitWord) -> std::io::Result<()> {
    // SAFETY: the semaphore memory lies in a mapping shared between
    // processes; pshared = 1 makes it usable from all of them. Only the
    // creator calls this, before the version word is published.
    let r = unsafe { libc::sem_init(w.sem.get(), 1, 0) };
    if r != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Whether the semaphore still looks like the one `sem_init` made, as far as
/// glibc's futex calls depend on it. glibc's 64-bit `sem_t` is
/// `{ u64 value|nwaiters, i32 private, i32 pad }`, and `private` selects the
/// futex flags: garbage there makes glibc abort the process ("The futex
/// facility returned an unexpected error code"). The expected value is
/// whatever this glibc's `sem_init(pshared = 1)` writes, learned once from a
/// local semaphore. A peer that scribbles over it gets polling instead of a
/// crash (a narrowing, not a proof: a peer racing this check can still win;
/// see DESIGN.md, trust model).
#[cfg(not(any(loom, miri)))]
fn sem_sane(w: &WaitWord) -> bool {
    #[cfg(all(target_env = "gnu", target_pointer_width = "64"))]
    {
        use std::sync::atomic::{AtomicU64, Ordering};
        /// # Safety
        /// `sem` must point to a valid `sem_t` (32 bytes, 8-aligned on 64-bit glibc).
        unsafe fn private_word(sem: *const libc::sem_t) -> u32 {
            // SAFETY: bytes 8..12 are in bounds and 4-aligned per the caller.
            unsafe { load_u32_at(sem.cast(), 8) }
        }
        /// `1 << 32 | word` once learned, `2 << 32` if `sem_init` failed, 0
        /// before. An atomic, not a `OnceLock`: a child forked while another
        /// thread ran a `OnceLock`'s initialiser would block on it forever
        /// (see `light_barrier_available`); racing threads compute the same
        /// value.
        static EXPECTED: AtomicU64 = AtomicU64::new(0);
        // Relaxed: the word is the whole state.
        let mut cached = EXPECTED.load(Ordering::Relaxed);
        if cached == 0 {
            // SAFETY: a zeroed local sem_t initialised, read and destroyed here.
            cached = unsafe {
                let mut sem: libc::sem_t = std::mem::zeroed();
                if libc::sem_init(&mut sem, 1, 0) != 0 {
                    2 << 32
                } else {
                    let v = private_word(&sem);
                    libc::sem_destroy(&mut sem);
                    1 << 32 | u64::from(v)
                }
            };
            EXPECTED.store(cached, Ordering::Relaxed);
        }
        let expected = (cached >> 32 == 1).then_some(cached as u32);
        // SAFETY: `w.sem` is a sem_t inside the mapped header.
        expected.is_none_or(|e| unsafe { private_word(w.sem.get()) } == e)
    }
    #[cfg(not(all(target_env = "gnu", target_pointer_width = "64")))]
    {
        let _ = w;
        true
    }
}

/// Read the 4 bytes at `base + off` once, atomically (another process may
/// write them at any time): for the words of glibc objects in the segment.
///
/// # Safety
/// `base + off .. base + off + 4` must be in bounds of one live object and
/// 4-aligned.
#[cfg(not(any(loom, miri)))]
pub(crate) unsafe fn load_u32_at(base: *const u8, off: usize) -> u32 {
    // SAFETY: in bounds and aligned per the caller; an atomic read tolerates
    // concurrent writers.
    unsafe {
        (*(base.add(off) as *const std::sync::atomic::AtomicU32))
            .load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// Post the semaphore of `w` once.
#[cfg(not(any(loom, miri)))]
pub(crate) fn sem_post(w: &WaitWord) {
    if !sem_sane(w) {
        return; // the sleeper wakes within SLICE anyway
    }
    // SAFETY: the semaphore was initialised by the creator before the
    // segment was published. A peer that scribbled over it can make
    // sem_post fail (EINVAL/EOVERFLOW), which we ignore: the sleeper wakes
    // within SLICE anyway.
    unsafe { libc::sem_post(w.sem.get()) };
}

/// Wait on the semaphore of `w` until `until` at the latest.
#[cfg(not(any(loom, miri)))]
pub(crate) fn sem_wait(w: &WaitWord, until: Instant) {
    let remaining = until.saturating_duration_since(Instant::now());
    if remaining.is_zero() {
        return;
    }
    if !sem_sane(w) {
        // Damaged semaphore: poll instead of sleeping in glibc.
        std::thread::sleep(remaining.min(Duration::from_millis(1)));
        return;
    }
    let ts = timespec_after(libc::CLOCK_MONOTONIC, remaining);
    // SAFETY: the semaphore was initialised by the creator before
    // publication (and `sem_sane` checked the word glibc's futex call
    // depends on); the timespec is a valid absolute CLOCK_MONOTONIC time.
    // EINTR/ETIMEDOUT/EINVAL just return: the caller re-checks.
    unsafe { sem_clockwait(w.sem.get(), libc::CLOCK_MONOTONIC, &ts) };
}

#[cfg(not(any(loom, miri)))]
extern "C" {
    /// glibc >= 2.30: `sem_timedwait` with a chosen clock (not in the libc crate).
    fn sem_clockwait(
        sem: *mut libc::sem_t,
        clock: libc::clockid_t,
        abstime: *const libc::timespec,
    ) -> libc::c_int;
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
