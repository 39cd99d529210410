//! The loop every blocking call runs: attempt, then spin / back off / sleep
//! per the wait strategy, with the deadline and the peer's liveness checked
//! once per slice.

use std::time::{Duration, Instant};

use crossbeam_utils::Backoff;

use crate::error::{Error, Result};
use crate::wait::{self, WaitStrategy};

/// Blocking mode of one attempt.
#[derive(Clone, Copy)]
pub enum Mode {
    /// Never wait (for the lock either).
    Try,
    /// May wait for the lock for one slice, bounded by this deadline.
    Until(Option<Instant>),
}

/// When the locked variant's lock wait of one attempt ends.
pub(crate) fn mode_until(mode: Mode) -> Option<Instant> {
    match mode {
        Mode::Try => None,
        // Computed only here, on the locked path: no clock read per
        // message in the lock-free ring.
        Mode::Until(deadline) => Some(wait::slice_end(deadline)),
    }
}

pub(super) fn deadline_after(timeout: Duration) -> Option<Instant> {
    Instant::now().checked_add(timeout)
}

/// Polls a blocking call without a deadline makes inline before `block`,
/// as the non-blocking calls poll (`Consumer::spin_look`): the strategy's
/// first spin, which `block` then skips (`spun`). Inline, a message that
/// lands during the spin is taken by the fast path, with none of the
/// steps around `block` (a blocked `recv_into` with `Spin` then matches a
/// `try_recv_into` loop's round trip, `examples/rt_probe`; DESIGN.md §3).
/// None under loom (no busy spinning there) or with `SpinYield`, whose
/// first phase is a backoff.
#[inline(always)]
pub(super) fn inline_polls(wait: WaitStrategy) -> u32 {
    #[cfg(loom)]
    let polls = {
        let _ = wait;
        0
    };
    #[cfg(not(loom))]
    let polls = match wait {
        WaitStrategy::Spin => SPIN_POLLS,
        WaitStrategy::Futex | WaitStrategy::Semaphore => SLEEP_SPIN_POLLS,
        WaitStrategy::SpinYield => 0,
    };
    polls
}

/// Run `attempt` until it yields, the deadline passes, or it fails, waiting
/// between attempts per the wait strategy. `attempt(true)` must check the
/// peer's liveness; `sleep` parks the caller once; `ready` polls (atomics
/// only) whether another attempt is worth it. `spun`: the caller already
/// polled `inline_polls(wait)` times, so the first wait skips that spin.
#[allow(clippy::too_many_arguments)]
pub(super) fn block<T, S>(
    this: &mut S,
    deadline: Option<Instant>,
    wait: WaitStrategy,
    spun: bool,
    mut attempt: impl FnMut(&mut S, bool) -> Result<Option<T>>,
    mut sleep: impl FnMut(&mut S, Instant),
    ready: impl Fn(&S) -> bool,
    mut on_first_miss: impl FnMut(&mut S),
) -> Result<T> {
    if let Some(v) = attempt(this, false)? {
        return Ok(v);
    }
    on_first_miss(this);
    let backoff = Backoff::new();
    // When the liveness check is next due (see `slice_due`).
    let mut next_check = 0;
    let mut first = true;
    loop {
        // The clocks are read here, before waiting, and not on the first
        // pass (the caller's attempt just looked, and checked liveness as
        // a rated attempt does); never between a wait that saw the peer
        // move and the attempt that takes its message: a clock read on
        // that path delays every message a blocked call receives
        // (`examples/rt_probe`'s `recv` row, DESIGN.md §2). The precise
        // clock only for a deadline.
        if deadline.is_some_and(|d| Instant::now() >= d) {
            return Err(Error::Timeout);
        }
        let first_wait = std::mem::take(&mut first);
        if !first_wait && slice_due(&mut next_check) {
            if let Some(v) = attempt(this, true)? {
                return Ok(v);
            }
        }
        // Under loom: no busy spinning (loom would explore it forever) and
        // no backoff phase: yield, or go straight to the sleep protocol.
        #[cfg(loom)]
        let _ = (&ready, spun);
        #[cfg(loom)]
        match wait {
            WaitStrategy::Futex | WaitStrategy::Semaphore => sleep(this, wait::slice_end(deadline)),
            _ => {
                let _ = &backoff;
                crate::sync::yield_now();
            }
        }
        #[cfg(not(loom))]
        match wait {
            // Wait for the peer's signal (or state) to change, polling only
            // atomics: no clock read, no syscall, until something moved or
            // a bounded number of polls passed (then the loop checks the
            // deadline and, once per slice, the peer's liveness).
            WaitStrategy::Spin => {
                if !(first_wait && spun) {
                    poll_until(this, &ready, SPIN_POLLS);
                }
            }
            WaitStrategy::SpinYield => {
                while !backoff.is_completed() && !ready(this) {
                    backoff.snooze();
                }
                if !ready(this) {
                    std::thread::yield_now();
                }
            }
            WaitStrategy::Futex | WaitStrategy::Semaphore => {
                // Adaptive spin before sleeping: a streaming peer usually
                // moves within microseconds, and a sleep costs both sides a
                // syscall. After one full spin without progress, sleep at once.
                if !backoff.is_completed() {
                    if !(first_wait && spun) {
                        poll_until(this, &ready, SLEEP_SPIN_POLLS);
                    }
                    while !backoff.is_completed() && !ready(this) {
                        backoff.snooze();
                    }
                }
                if !ready(this) {
                    // A sleep may last a slice: the first slice starts
                    // now, not at the next pass.
                    if next_check == 0 {
                        slice_due(&mut next_check);
                    }
                    sleep(this, wait::slice_end(deadline));
                }
            }
        }
        if let Some(v) = attempt(this, false)? {
            return Ok(v);
        }
    }
}

/// `wait::SLICE` in the coarse clock's nanoseconds.
const SLICE_NANOS: u64 = wait::SLICE.as_nanos() as u64;

/// Whether the once-a-slice liveness check is due, by the coarse clock (its
/// tick is far below a slice): `next_check` is when, 0 until this first
/// runs and starts the first slice. Under loom the model must not depend on
/// the wall clock (a loaded machine would take a slice between two replays
/// and explore a different path): never due there.
fn slice_due(next_check: &mut u64) -> bool {
    let now = wait::coarse_nanos();
    if *next_check != 0 && (cfg!(loom) || now < *next_check) {
        return false;
    }
    let started = *next_check != 0;
    *next_check = now.saturating_add(SLICE_NANOS).max(1);
    started
}

/// Polls of the peer's signal between two full attempts with `Spin`
/// (`inline_polls` says the same).
#[cfg(not(loom))]
const SPIN_POLLS: u32 = 4096;
/// Polls of the peer's signal before a sleeping strategy goes to sleep
/// (a few tens of microseconds; `inline_polls` says the same).
#[cfg(not(loom))]
const SLEEP_SPIN_POLLS: u32 = 4096;

/// Poll `ready` up to `polls` times with spin-loop hints; whether it became true.
#[cfg(not(loom))]
#[inline]
fn poll_until<S>(this: &S, ready: &impl Fn(&S) -> bool, polls: u32) -> bool {
    for _ in 0..polls {
        if ready(this) {
            return true;
        }
        std::hint::spin_loop();
    }
    false
}
