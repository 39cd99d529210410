//! What both endpoint kinds share: the segment, the geometry read at attach
//! time, the role lock, the sticky corruption state, liveness checks, the
//! publication half of the wake-up protocol and the sleeping half.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::stats::{bump, PeerStatus};

/// How long a peer's state word may say CLOSED while its process still
/// holds the role lock (an orderly close releases it right after the store;
/// a replacement takes the lock just before storing ATTACHED).
pub(crate) const CLOSED_GRACE: Duration = Duration::from_millis(200);
use crate::error::{Error, Result};
use crate::layout::{self, Header, WaitWord, STATE_ATTACHED, STATE_CLOSED, STATE_NEVER};
use crate::segment::{self, Role, RoleLock, Segment};
use crate::sync::{AtomicU32, AtomicU64, Ordering};
use crate::wait::{self, WaitStrategy};

/// How hard to look for a dead peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Check {
    /// Only the peer's state word (no syscall): the hot path.
    Word,
    /// Also the kernel, at most once per `wait::SLICE`.
    Rated,
    /// Also the kernel, now.
    Force,
}

impl Check {
    pub(crate) fn slow(force: bool) -> Check {
        if force {
            Check::Force
        } else {
            Check::Rated
        }
    }
}

/// Why a handle failed for good.
#[derive(Debug, Clone, Copy)]
enum Broken {
    Corrupted(&'static str, u64),
    LockLost,
    /// The named segment was truncated under us (see `crate::sigbus`).
    Truncated,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PeerGone {
    Closed,
    Died,
}

pub struct Endpoint {
    pub(crate) seg: Arc<Segment>,
    pub(crate) data: *mut u8,
    pub(crate) cap: u64,
    /// `cap - HDR`: the offset of the last header slot.
    pub(crate) last_word: u64,
    pub(crate) mask: u64,
    /// `mask & !7`: masks a position to an 8-aligned offset in the data area.
    pub(crate) word_mask: u64,
    pub(crate) max: usize,
    /// The fast paths' one test of the handle and the length: `max + 1`
    /// while the handle is healthy and publishes with one release store
    /// (the light barrier, or a strategy that never sleeps), else 0, so
    /// `len >= fast_lim` sends every length, and every header, to the
    /// full path. Set to 0 when the handle breaks.
    pub(crate) fast_lim: u64,
    /// The segment's header (the mapping lives as long as `seg`): the
    /// fast paths reach it without going through the `Arc`.
    hdr: std::ptr::NonNull<Header>,
    pub(crate) wait: WaitStrategy,
    role: Role,
    lock: Option<RoleLock>,
    /// A corruption (or a poisoned lock) that sticks to the handle.
    broken: Option<Broken>,
    /// Publish with the light barrier (this process is registered for
    /// membarrier and the strategy sleeps); see DESIGN.md.
    light: bool,
    /// Until when (`wait::coarse_nanos`, so an empty poll pays no precise
    /// clock read) the kernel's last answer about the peer's lock, "not
    /// dead", stands: the query's time plus a slice; 0 after a "dead"
    /// answer or before the first query; `u64::MAX` for a heap ring, which
    /// has no kernel to ask.
    alive_until: u64,
    /// We saw the peer attached (its word, its role lock, or its work: a
    /// message received, room made): a free role lock from now on means it
    /// died, whatever its word says.
    pub(crate) peer_seen: bool,
    /// Since when the peer's word has said CLOSED while its role lock was held.
    closed_seen: Option<Instant>,
    /// The attaching process; 0 once closed explicitly.
    pid: u32,
    /// This attachment's epoch of the role (names us in the locked ring's lock word).
    epoch: u32,
}

impl Endpoint {
    /// Attach as `role`. `header_signal`: the design lets a reader act on
    /// a published record header without a lock (`Variant::HEADER_SIGNAL`);
    /// the fast paths are off (`fast_lim` 0) otherwise.
    pub(crate) fn attach(seg: Arc<Segment>, role: Role, header_signal: bool) -> Result<Endpoint> {
        let (lock, epoch) = segment::attach(&seg, role)?;
        // Truncated since it was opened (our stores above may have landed
        // on zero pages): refuse now rather than at the first operation.
        if seg.truncated(true) {
            return Err(seg.truncated_error());
        }
        // Our pid, for a `WaitSet` on the peer's side to watch with a pidfd
        // (DESIGN.md section 8). A hint, not a claim: the peer's set only
        // re-checks our role lock when that process exits. Release: pairs
        // with the Acquire load in `Watch::peer_pid`; a set that saw our
        // ATTACHED before this store is woken below (or looks again within
        // a slice) and then reads it.
        #[cfg(not(loom))]
        let own_pid = role.words(seg.header()).pid;
        #[cfg(not(loom))]
        own_pid.store(std::process::id(), Ordering::Release);
        let g = seg.geometry;
        let light = g.wait.sleeps() && wait::light_barrier_available();
        let own_light = role.words(seg.header()).light;
        // SeqCst swap (a full barrier), before our first publication: a
        // peer that read our old flag (0) did so after registering as a
        // sleeper and fencing, so our loads of `waiting` after this barrier
        // see its registration even though we publish light.
        own_light.swap(light as u32, Ordering::SeqCst);
        let max = layout::max_message(g.capacity);
        let ep = Endpoint {
            light,
            fast_lim: if header_signal && (light || !g.wait.sleeps()) {
                max as u64 + 1
            } else {
                0
            },
            hdr: std::ptr::NonNull::from(seg.header()),
            data: seg.data(),
            cap: g.capacity,
            last_word: g.capacity - crate::frame::HDR,
            mask: g.capacity - 1,
            word_mask: (g.capacity - 1) & !7,
            max,
            wait: g.wait,
            role,
            alive_until: if lock.is_none() { u64::MAX } else { 0 },
            lock,
            broken: None,
            peer_seen: false,
            closed_seen: None,
            pid: std::process::id(),
            epoch,
            seg,
        };
        let mut ep = ep;
        ep.peer_seen = ep.peer_word().load(Ordering::Acquire) == STATE_ATTACHED;
        if ep.wait.sleeps() {
            // A peer may be asleep waiting for us to attach: wake it.
            // `segment::attach` stored ATTACHED with SeqCst, which with the
            // SeqCst swap in `wake` and the sleeper's SeqCst store of
            // `waiting` / load of our state forms the no-lost-wake-up pattern.
            let (w, counter) = ep.peer_wait();
            ep.wake(w, counter);
        }
        Ok(ep)
    }

    #[inline(always)]
    pub(crate) fn h(&self) -> &Header {
        // SAFETY: `hdr` is `self.seg.header()`, which lives (and does not
        // move) as long as `self.seg`; all its fields are atomics.
        unsafe { self.hdr.as_ref() }
    }

    /// `word(off)` for an `off` already masked with `word_mask` (the fast
    /// paths compute it once for the header and the payload).
    ///
    /// # Safety
    /// `off & self.word_mask == off`.
    #[inline(always)]
    pub(crate) unsafe fn word_masked(&self, off: u64) -> &AtomicU64 {
        debug_assert_eq!(off & self.word_mask, off);
        #[cfg(not(loom))]
        {
            // SAFETY: as in `word` (the caller masked `off`).
            unsafe { &*(self.data.add(off as usize) as *const AtomicU64) }
        }
        #[cfg(loom)]
        {
            self.seg.loom_word(off)
        }
    }

    /// The record header word at data-area offset `off`.
    ///
    /// Callers pass an 8-aligned offset below the capacity (offsets come
    /// from `pos & mask` of checked, 8-aligned positions, or from validated
    /// record lengths).
    #[inline]
    pub(crate) fn word(&self, off: u64) -> &AtomicU64 {
        #[cfg(not(loom))]
        {
            let off = off & self.word_mask;
            // SAFETY: `off` is masked into the data area and 8-aligned (the
            // data area is 128-aligned and `cap >= 64`), so 8 bytes fit; the
            // mapping lives as long as `self.seg`. Accessed atomically
            // because the peer writes the same words concurrently.
            unsafe { &*(self.data.add(off as usize) as *const AtomicU64) }
        }
        #[cfg(loom)]
        {
            self.seg.loom_word(off)
        }
    }

    #[inline]
    pub(crate) fn check_broken(&self) -> Result<()> {
        match self.broken {
            None => Ok(()),
            Some(Broken::Corrupted(what, value)) => Err(Error::Corrupted { what, value }),
            Some(Broken::LockLost) => Err(Error::LockNotRecoverable),
            Some(Broken::Truncated) => Err(self.seg.truncated_error()),
        }
    }

    /// The segment was truncated under us: the handle fails for good.
    #[cold]
    fn truncated<T>(&mut self) -> Result<T> {
        self.broken = Some(Broken::Truncated);
        self.fast_lim = 0;
        Err(self.seg.truncated_error())
    }

    /// Remember a corruption (or a poisoned lock) so the handle stays failed.
    /// A truncated segment reads as zeros (its pages were replaced), which
    /// the index and lock checks report as corruption: such an error is
    /// reported as `Truncated` instead.
    #[inline]
    pub(crate) fn note<T>(&mut self, r: Result<T>) -> Result<T> {
        if matches!(r, Err(Error::Corrupted { .. } | Error::LockNotRecoverable))
            && self.broken.is_none()
            && self.seg.truncated(false)
        {
            return self.truncated();
        }
        match &r {
            Err(Error::Corrupted { what, value }) if self.broken.is_none() => {
                self.broken = Some(Broken::Corrupted(what, *value));
                self.fast_lim = 0;
            }
            Err(Error::LockNotRecoverable) if self.broken.is_none() => {
                self.broken = Some(Broken::LockLost);
                self.fast_lim = 0;
            }
            _ => {}
        }
        r
    }

    /// Our role and this attachment's epoch of it (what names us in the
    /// locked ring's lock word).
    pub(crate) fn owner(&self) -> (Role, u32) {
        (self.role, self.epoch)
    }

    /// Whether the process attached as `role` is gone: its OFD role lock is
    /// free (never, for a heap ring: both ends live in this process).
    ///
    /// # Errors
    /// `Io` in a forked child that inherited this handle.
    pub(crate) fn role_dead(&self, role: Role) -> Result<bool> {
        match &self.lock {
            Some(l) => Ok(!l.is_held(role)?),
            None => Ok(false),
        }
    }

    /// The peer's "publishes with the light barrier" flag.
    fn peer_light_word(&self) -> &AtomicU32 {
        self.role.peer().words(self.h()).light
    }

    pub(crate) fn peer_word(&self) -> &AtomicU32 {
        self.role.peer().words(self.h()).state
    }

    /// Where the peer sleeps, and our wake-syscall counter.
    pub(crate) fn peer_wait(&self) -> (&WaitWord, &AtomicU64) {
        let h = self.h();
        (
            self.role.peer().words(h).wait,
            self.role.words(h).wake_syscalls,
        )
    }

    /// Where we sleep.
    pub(crate) fn own_wait(&self) -> &WaitWord {
        self.role.words(self.h()).wait
    }

    /// Whether `Check::Rated` would not ask the kernel about the peer now:
    /// its last answer was "alive" and is less than a slice old (a heap
    /// ring has no kernel to ask). One coarse clock read.
    #[inline(always)]
    pub(crate) fn alive_verdict_fresh(&self) -> bool {
        wait::coarse_nanos() < self.alive_until
    }

    /// Is the peer gone? The kernel's role locks are the authority, the
    /// peer's state word a hint:
    /// - `CLOSED` is believed only when the peer's role lock is free too; a
    ///   `CLOSED` word while the lock stays held past [`CLOSED_GRACE`] is
    ///   `Corrupted` (an orderly close releases the lock right after the
    ///   store), not end of stream;
    /// - a peer seen attached (word or lock) whose lock is now free died,
    ///   whatever its word says (`NEVER` included);
    /// - any other word value is `Corrupted`.
    ///
    /// `Check::Word` asks the kernel only for a `CLOSED` word (an error
    /// path); `Check::Rated` also asks about an attached peer at most once
    /// per `wait::SLICE`; `Check::Force` asks now.
    pub(crate) fn peer_gone(&mut self, how: Check) -> Result<Option<PeerGone>> {
        // Acquire: pairs with the peer's Release/SeqCst store of its state,
        // so a consumer that sees CLOSED also sees the last records.
        let st = self.peer_word().load(Ordering::Acquire);
        // Truncated (the SIGBUS handler put zero pages in place of the
        // segment, so the peer's word reads NEVER): looked at only off the
        // hot path (a peer not attached, or a slow check), one load.
        if (st != STATE_ATTACHED || how != Check::Word) && self.seg.truncated(false) {
            return self.truncated();
        }
        if !matches!(st, STATE_NEVER | STATE_ATTACHED | STATE_CLOSED) {
            return self.note(Err(Error::corrupted("peer state word", st as u64)));
        }
        if st == STATE_ATTACHED {
            self.peer_seen = true;
        }
        let Some(lock) = &self.lock else {
            // Heap ring: both ends are in this process; the word is ours.
            return Ok((st == STATE_CLOSED).then_some(PeerGone::Closed));
        };
        if st != STATE_CLOSED {
            if how == Check::Word {
                return Ok(None);
            }
            if how == Check::Rated {
                // Only an "alive" verdict is reused: a "dead" one is
                // re-checked every time (an error path), so a
                // replacement peer is seen as soon as it attaches.
                if self.alive_verdict_fresh() {
                    return Ok(None);
                }
            }
        }
        let checked_at = wait::coarse_nanos();
        // With the kernel query, once per slice: has the object shrunk
        // (truncated where we have not touched it yet)? One fstat.
        if self.seg.truncated(true) {
            // (Not `self.truncated()`: `lock` borrows `self.lock`.)
            self.broken = Some(Broken::Truncated);
            self.fast_lim = 0;
            return Err(self.seg.truncated_error());
        }
        let held = lock.is_held(self.role.peer())?;
        let verdict = if held {
            // Alive (or a replacement attaching: it locks, then stores
            // ATTACHED). Not sticky: a new process may take over the role.
            self.peer_seen = true;
            if st == STATE_CLOSED {
                let now = Instant::now();
                let since = *self.closed_seen.get_or_insert(now);
                if now.duration_since(since) > CLOSED_GRACE {
                    return self.note(Err(Error::corrupted(
                        "peer state word says closed while its process holds the role",
                        st as u64,
                    )));
                }
            } else {
                self.closed_seen = None;
            }
            None
        } else {
            self.closed_seen = None;
            // A free lock: the peer closed (it stores CLOSED before
            // releasing; re-read, it may have closed after our first load),
            // died, or never attached. Only the re-read's CLOSED counts: an
            // ATTACHED there may come from a peer that took its lock after
            // our query (it locks, then stores ATTACHED) and is alive. A
            // peer is dead only if we saw it attached before the query
            // (`peer_seen`, set from the first load above or earlier).
            let st_now = self.peer_word().load(Ordering::Acquire);
            if st_now == STATE_CLOSED {
                Some(PeerGone::Closed)
            } else if self.peer_seen {
                Some(PeerGone::Died)
            } else {
                None
            }
        };
        self.alive_until = if verdict == Some(PeerGone::Died) {
            0
        } else {
            checked_at.saturating_add(wait::SLICE.as_nanos() as u64)
        };
        Ok(verdict)
    }

    /// The peer's state, asking the kernel about its role lock (one syscall),
    /// which decides over the peer's state word.
    /// `work_seen`: the caller saw the peer's work (a message received).
    pub(crate) fn peer_status(&self, work_seen: bool) -> Result<PeerStatus> {
        if self.seg.truncated(false) {
            return Err(self.seg.truncated_error());
        }
        // Acquire: as in `peer_gone`.
        let st = self.peer_word().load(Ordering::Acquire);
        if !matches!(st, STATE_NEVER | STATE_ATTACHED | STATE_CLOSED) {
            return Err(Error::corrupted("peer state word", st as u64));
        }
        let Some(lock) = &self.lock else {
            // Heap ring: same process.
            return Ok(match st {
                STATE_NEVER => PeerStatus::NotAttached,
                STATE_CLOSED => PeerStatus::Closed,
                _ => PeerStatus::Alive,
            });
        };
        if lock.is_held(self.role.peer())? {
            return Ok(PeerStatus::Alive);
        }
        // Free: closed (re-read: it may have closed after our first load),
        // or dead if it was attached before the query (the first load; an
        // ATTACHED only in the re-read may be a peer that locked after our
        // query, as in `peer_gone`), else not attached (yet).
        if self.peer_word().load(Ordering::Acquire) == STATE_CLOSED {
            return Ok(PeerStatus::Closed);
        }
        Ok(if st == STATE_ATTACHED || self.peer_seen || work_seen {
            PeerStatus::Died
        } else {
            PeerStatus::NotAttached
        })
    }

    /// The publication half of the wake-up protocol (DESIGN.md §3): store
    /// `signal = value` (the producer's record header word, or the
    /// consumer's `head`), then `index = index_value` if given (the
    /// producer's `tail`, informational), then wake the peer if it sleeps.
    #[inline(always)]
    pub(crate) fn publish(&self, signal: &AtomicU64, value: u64, index: Option<(&AtomicU64, u64)>) {
        let peer_waiting = &self.peer_wait().0.waiting;
        if self.light || !self.wait.sleeps() {
            self.publish_light(signal, value, index, peer_waiting);
            return;
        }
        // SeqCst store: pairs with the sleeper's SeqCst store of
        // `waiting` / SeqCst load of this word in `Endpoint::sleep`
        // (store-buffer pattern: no lost wake-up), and as a Release
        // store with the peer's Acquire load of it.
        signal.store(value, Ordering::SeqCst);
        #[cfg(loom)]
        crate::sync::loom_sc_fence();
        if let Some((w, v)) = index {
            // Release: pairs with Acquire loads of `tail` (takeover, checks).
            w.store(v, Ordering::Release);
        }
        // SeqCst: see above.
        if peer_waiting.load(Ordering::SeqCst) != 0 {
            self.wake_peer();
        }
    }

    /// `publish` for a handle that publishes light (registered for
    /// membarrier, strategy sleeps) or whose strategy never sleeps: the
    /// only publication the fast paths use (`fast_lim` is 0 otherwise).
    /// Release stores, then the peer's `waiting` flag. The store-load order
    /// against `waiting` is enforced by a sleeping peer's membarrier(2),
    /// which runs a full barrier on our CPU; the compiler fence keeps the
    /// compiler from reordering the two. With a spinning strategy nobody
    /// registers, and the flag reads 0 (a peer that writes it anyway only
    /// costs us a wake call). `peer_waiting` is the peer's `waiting` word
    /// (`peer_wait().0.waiting`): the fast paths name it through the header
    /// pointer they already hold, which saves a load per message on each
    /// side (`examples/instr.sh`).
    #[inline(always)]
    pub(crate) fn publish_light(
        &self,
        signal: &AtomicU64,
        value: u64,
        index: Option<(&AtomicU64, u64)>,
        peer_waiting: &AtomicU32,
    ) {
        debug_assert!(self.light || !self.wait.sleeps());
        debug_assert!(std::ptr::eq(peer_waiting, &self.peer_wait().0.waiting));
        // Release: pairs with the peer's Acquire load of the signal word.
        signal.store(value, Ordering::Release);
        if let Some((w, v)) = index {
            // Release: pairs with Acquire loads of `tail` (takeover, checks).
            w.store(v, Ordering::Release);
        }
        std::sync::atomic::compiler_fence(Ordering::SeqCst);
        if peer_waiting.load(Ordering::Relaxed) != 0 {
            self.wake_peer();
        }
    }

    /// Wake the peer if it registered as a sleeper (the publication's slow half).
    #[cold]
    #[inline(never)]
    fn wake_peer(&self) {
        let (w, counter) = self.peer_wait();
        self.wake(w, counter);
    }

    /// Wake the sleeper registered on `w`, if any (one syscall per registration).
    #[cold]
    pub(crate) fn wake(&self, w: &WaitWord, counter: &AtomicU64) {
        // SeqCst swap: only one waker per registration; pairs with the
        // sleeper's SeqCst store of `waiting`.
        if w.waiting.swap(0, Ordering::SeqCst) == 0 {
            return;
        }
        bump(counter);
        match self.wait {
            WaitStrategy::Futex => {
                // Release: pairs with the sleeper's Acquire load of `seq`.
                w.seq.fetch_add(1, Ordering::Release);
                wait::futex_wake(&w.seq, i32::MAX);
            }
            WaitStrategy::Semaphore => wait::sem_post(w),
            _ => {}
        }
    }

    /// Sleep on our wait word until woken, `until`, or `changed()` says to
    /// retry. `changed` must load the peer's signal word and state with
    /// SeqCst.
    pub(crate) fn sleep(&self, until: Instant, changed: impl Fn() -> bool) {
        let w = self.own_wait();
        // Acquire: pairs with the waker's Release fetch_add of `seq`.
        let seq = w.seq.load(Ordering::Acquire);
        // SeqCst store, then SeqCst loads inside `changed()`: with the peer's
        // SeqCst signal store and SeqCst load of `waiting`, either we see its
        // progress or it sees our registration and wakes us.
        crate::sync::store_flag(&w.waiting, 1, Ordering::SeqCst);
        // A peer that publishes with the light barrier (plain Release store,
        // no fence) needs the heavy one from us: membarrier(2) runs a full
        // barrier on every CPU running a registered process, so either its
        // signal store is visible to `changed()` below, or its later load of
        // `waiting` sees our registration. SeqCst load: ordered after our
        // registration (see `Endpoint::attach` for the flag's own race).
        if self.peer_light_word().load(Ordering::SeqCst) != 0 && !wait::heavy_barrier() {
            // The kernel refused the barrier: poll instead of sleeping.
            w.waiting.store(0, Ordering::Relaxed);
            std::thread::sleep(
                until
                    .saturating_duration_since(Instant::now())
                    .min(Duration::from_millis(1)),
            );
            return;
        }
        if changed() {
            crate::sync::store_flag(&w.waiting, 0, Ordering::Relaxed);
            return;
        }
        match self.wait {
            WaitStrategy::Futex => wait::futex_wait(&w.seq, seq, until),
            WaitStrategy::Semaphore => wait::sem_wait(w, until),
            _ => {
                let _ = (seq, until);
                #[cfg(not(loom))]
                std::thread::yield_now();
                #[cfg(loom)]
                crate::sync::yield_now();
            }
        }
        crate::sync::store_flag(&w.waiting, 0, Ordering::Relaxed);
    }

    /// Whether this process attached the handle and has not closed it (a
    /// forked child that inherited it has not).
    pub(crate) fn attached_here(&self) -> bool {
        self.pid == std::process::id()
    }

    /// Mark our side closed and wake the peer. Skipped in a forked child that
    /// inherited the handle: only the process that attached closes the role.
    pub(crate) fn close(&mut self) {
        if self.pid != std::process::id() {
            return;
        }
        let h = self.seg.header();
        let word = self.role.words(h).state;
        // SeqCst: after our last publication; pairs with the peer's Acquire
        // load of our state word, and orders before the `waiting` check.
        word.store(STATE_CLOSED, Ordering::SeqCst);
        #[cfg(loom)]
        crate::sync::loom_sc_fence();
        // Release the role lock before waking the peer: it believes CLOSED
        // only once the lock is free too (a peer that finds the lock free and
        // the state ATTACHED knows we died).
        drop(self.lock.take());
        if self.wait.sleeps() {
            let (w, counter) = self.peer_wait();
            self.wake(w, counter);
        }
    }

    /// Close our side now, reporting what drop would swallow.
    pub(crate) fn close_explicit(&mut self) -> Result<()> {
        if self.pid != std::process::id() {
            return Err(Error::io(
                "closing the endpoint",
                std::io::Error::other(
                    "this handle was inherited across fork(); only the process that attached can close the role",
                ),
            ));
        }
        self.close();
        self.pid = 0; // closed: drop does nothing more
        drop(self.lock.take()); // releases the role lock
        if let Some(seg) = Arc::get_mut(&mut self.seg) {
            seg.unlink_now()?;
        }
        Ok(())
    }
}
