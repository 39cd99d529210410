//! The contrast: the textbook "shared memory + lock" ring.
//!
//! A `pthread_mutex_t` in the segment, `PTHREAD_PROCESS_SHARED` and
//! `PTHREAD_MUTEX_ROBUST`, guards the same indices and records the lock-free
//! ring uses; every operation takes it. Waiting does not use a
//! process-shared condition variable (a waiter killed inside
//! `pthread_cond_wait` wedges a glibc condvar for everyone, glibc bug 21422):
//! it uses the same futex/semaphore words as the lock-free ring.
//!
//! When a holder dies, the next `lock` returns `EOWNERDEAD`: we re-validate
//! the indices it may have left (every change under the lock is a single
//! final index store, so an interrupted claim simply was never committed),
//! mark the mutex consistent and go on. `ENOTRECOVERABLE` becomes
//! [`crate::Error::LockNotRecoverable`].
//!
//! ```
//! let (mut tx, mut rx) = shmpipe::locked::Builder::new().capacity(4096).in_process()?.split()?;
//! tx.send(b"hello")?;
//! let mut buf = Vec::new();
//! rx.recv(&mut buf)?;
//! assert_eq!(buf, b"hello");
//! # Ok::<(), shmpipe::Error>(())
//! ```

use std::time::Instant;

use crate::error::{Error, Result};
use crate::layout::Header;
use crate::sync::Ordering;

/// Builder for locked rings.
pub type Builder = crate::builder::Builder<crate::Locked>;
/// Sending end of a locked ring.
pub type Producer = crate::ring::Producer<crate::Locked>;
/// Receiving end of a locked ring.
pub type Consumer = crate::ring::Consumer<crate::Locked>;
/// A zero-copy claim in a locked ring (holds the mutex until committed or dropped).
pub type Claim<'a> = crate::ring::Claim<'a, crate::Locked>;
/// Both ends of a new anonymous or in-process locked ring.
pub type Pair = crate::builder::Pair<crate::Locked>;
/// A message lent by [`Consumer::peek`] in a locked ring (the mutex is not held).
pub type Message<'a> = crate::ring::Message<'a, crate::Locked>;

/// Holds the ring mutex; unlocks on drop.
pub(crate) struct Guard {
    #[cfg(not(loom))]
    m: *mut libc::pthread_mutex_t,
}

/// Initialise the mutex of a fresh header (creator only, before publication).
#[cfg(not(loom))]
pub(crate) fn init_mutex(h: &Header) -> Result<()> {
    // SAFETY: attr is initialised by pthread_mutexattr_init before use and
    // destroyed after; the mutex memory is in the (zeroed, not yet published)
    // header, which nobody else uses yet.
    unsafe {
        let mut attr: libc::pthread_mutexattr_t = std::mem::zeroed();
        let mut r = libc::pthread_mutexattr_init(&mut attr);
        if r == 0 {
            r = libc::pthread_mutexattr_setpshared(&mut attr, libc::PTHREAD_PROCESS_SHARED);
        }
        if r == 0 {
            r = libc::pthread_mutexattr_setrobust(&mut attr, libc::PTHREAD_MUTEX_ROBUST);
        }
        if r == 0 {
            r = libc::pthread_mutex_init(h.lock.mutex.get(), &attr);
        }
        libc::pthread_mutexattr_destroy(&mut attr);
        if r != 0 {
            return Err(Error::io(
                "initialising the ring mutex",
                std::io::Error::from_raw_os_error(r),
            ));
        }
    }
    Ok(())
}

/// Take the ring mutex. `until = None`: try once. Otherwise wait until
/// `until` at most (one wait slice); `Ok(None)` if it is still busy.
///
/// After a holder died, validate the indices it may have left; if they are
/// sound, mark the mutex consistent, otherwise leave it unrecoverable and
/// report the corruption.
/// The mutex's type word, if it no longer holds what this glibc's
/// `pthread_mutex_init` wrote for a process-shared robust mutex. glibc reads
/// `__kind` (offset 16 of the 64-bit `pthread_mutex_t`) to pick the locking
/// algorithm; a peer that writes e.g. the lock-elision bit there makes glibc
/// execute `xbegin`, which kills the process with SIGILL on CPUs without
/// TSX. Learned from a local mutex, so no glibc constant is hard-coded. A
/// narrowing, not a proof (a peer racing this check can still win; see
/// DESIGN.md, trust model).
#[cfg(not(loom))]
fn damaged_kind(m: *mut libc::pthread_mutex_t) -> Option<u32> {
    #[cfg(all(target_env = "gnu", target_pointer_width = "64", not(miri)))]
    {
        use crate::wait::load_u32_at;
        use std::sync::OnceLock;
        static EXPECTED: OnceLock<Option<u32>> = OnceLock::new();
        let expected = (*EXPECTED.get_or_init(|| {
            // SAFETY: a zeroed local mutex, initialised like the ring's,
            // read (bytes 16..20 of 40, 8-aligned), and destroyed here.
            unsafe {
                let mut attr: libc::pthread_mutexattr_t = std::mem::zeroed();
                let mut mutex: libc::pthread_mutex_t = std::mem::zeroed();
                let ok = libc::pthread_mutexattr_init(&mut attr) == 0
                    && libc::pthread_mutexattr_setpshared(&mut attr, libc::PTHREAD_PROCESS_SHARED)
                        == 0
                    && libc::pthread_mutexattr_setrobust(&mut attr, libc::PTHREAD_MUTEX_ROBUST)
                        == 0
                    && libc::pthread_mutex_init(&mut mutex, &attr) == 0;
                libc::pthread_mutexattr_destroy(&mut attr);
                if !ok {
                    return None;
                }
                let v = load_u32_at((&mutex as *const libc::pthread_mutex_t).cast(), 16);
                libc::pthread_mutex_destroy(&mut mutex);
                Some(v)
            }
        }))?;
        // SAFETY: `m` is the 40-byte, 8-aligned mutex inside the mapped header.
        let found = unsafe { load_u32_at(m.cast(), 16) };
        (found != expected).then_some(found)
    }
    #[cfg(not(all(target_env = "gnu", target_pointer_width = "64", not(miri))))]
    {
        let _ = m; // Miri has no process-shared mutex attributes to compare with
        None
    }
}

#[cfg(not(loom))]
pub(crate) fn lock(h: &Header, until: Option<Instant>, capacity: u64) -> Result<Option<Guard>> {
    let m = h.lock.mutex.get();
    if let Some(kind) = damaged_kind(m) {
        return Err(Error::corrupted("ring mutex type word", kind as u64));
    }
    let r = match until {
        // SAFETY: the mutex was initialised by the creator before the
        // segment was published; pthread functions tolerate concurrent use.
        None => unsafe { libc::pthread_mutex_trylock(m) },
        #[cfg(not(miri))]
        Some(t) => {
            let remaining = t.saturating_duration_since(Instant::now());
            let ts = crate::wait::timespec_after(libc::CLOCK_MONOTONIC, remaining);
            // SAFETY: as above; `ts` is a valid absolute CLOCK_MONOTONIC time.
            unsafe { crate::wait::pthread_mutex_clocklock(m, libc::CLOCK_MONOTONIC, &ts) }
        }
        // Miri has no timed locks: try once; the caller's loop retries.
        #[cfg(miri)]
        // SAFETY: as above.
        Some(_) => unsafe { libc::pthread_mutex_trylock(m) },
    };
    match r {
        0 => Ok(Some(Guard { m })),
        libc::EBUSY | libc::ETIMEDOUT => Ok(None),
        libc::EOWNERDEAD => {
            let guard = Guard { m };
            let head = h.cons.head.load(Ordering::Relaxed);
            let tail = h.prod.tail.load(Ordering::Relaxed);
            crate::frame::check_span(head, tail, capacity)?; // guard drops: unlock without consistent
                                                             // SAFETY: we own the mutex (EOWNERDEAD returns it locked).
            let r = unsafe { libc::pthread_mutex_consistent(m) };
            if r != 0 {
                return Err(Error::io(
                    "pthread_mutex_consistent",
                    std::io::Error::from_raw_os_error(r),
                ));
            }
            let c = &h.endpoints.lock_repairs;
            c.fetch_add(1, Ordering::Relaxed);
            Ok(Some(guard))
        }
        libc::ENOTRECOVERABLE => Err(Error::LockNotRecoverable),
        e => Err(Error::io(
            "locking the ring mutex",
            std::io::Error::from_raw_os_error(e),
        )),
    }
}

#[cfg(not(loom))]
impl Drop for Guard {
    fn drop(&mut self) {
        // SAFETY: we hold the mutex (Guard exists only after a successful lock).
        unsafe { libc::pthread_mutex_unlock(self.m) };
    }
}

/// Under loom the locked variant is not modelled.
#[cfg(loom)]
pub(crate) fn lock(_: &Header, _: Option<Instant>, _: u64) -> Result<Option<Guard>> {
    Ok(Some(Guard {}))
}
