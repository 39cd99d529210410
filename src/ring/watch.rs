//! What a [`crate::WaitSet`] needs from one endpoint: where its side sleeps,
//! the registration half of the sleep protocol, and a readiness query made
//! from the indices the endpoint already publishes in the segment.
//!
//! A `Watch` refers to the endpoint's segment weakly, not to the endpoint:
//! the user keeps draining through the handle while the set watches, and
//! the set never keeps a ring alive. Each look pins the segment (upgrades
//! the `Weak`) for its duration only, so once the user drops the ring's
//! endpoints the mapping goes, and with it the name a creator asked to
//! remove on drop, whatever the set is doing (at worst a look in progress
//! on another thread finishes first, and the unmap happens when it drops
//! its pin). The endpoint publishes its own position (`head` for a
//! consumer, `tail` for a producer) after every message anyway, so the set
//! reads it from the segment instead of a copy the hot path would have to
//! keep updated.

use std::sync::atomic::AtomicU64 as StdAtomicU64;
use std::sync::{Arc, Weak};
use std::time::Duration;

use crate::frame::{self, HDR};
use crate::layout::{Header, WaitWord, STATE_ATTACHED, STATE_CLOSED};
#[cfg(not(loom))]
use crate::segment::role_lock_held;
use crate::segment::{Role, Segment};
use crate::sync::Ordering;
use crate::wait::WaitStrategy;

/// What one look at a watched endpoint found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Readiness {
    /// Nothing to do: the next call would wait.
    Idle,
    /// Data waiting (consumer) or room (producer): the next call proceeds.
    Ready,
    /// The peer closed or died (and, for a consumer, left nothing unread):
    /// the next call reports `Disconnected` / `PeerDied`.
    PeerGone,
}

pub(crate) struct Watch {
    /// Weak: the endpoints own the segment; see the module docs.
    seg: Weak<Segment>,
    role: Role,
    locked: bool,
    cap: u64,
    mask: u64,
    /// Producer: payload length a ready ring must have room for.
    room_for: u64,
    pub(crate) wait: WaitStrategy,
    /// Monotonic nanoseconds (`wait::coarse_nanos`) of the next kernel liveness check.
    next_check: StdAtomicU64,
    /// The last kernel check found the peer dead (re-checked every interval:
    /// a new process may take the role over).
    died: std::sync::atomic::AtomicBool,
}

impl Watch {
    pub(crate) fn new(
        seg: Arc<Segment>,
        role: Role,
        locked: bool,
        wait: WaitStrategy,
        room_for: u64,
    ) -> Watch {
        let cap = seg.geometry.capacity;
        Watch {
            seg: Arc::downgrade(&seg),
            role,
            locked,
            cap,
            mask: cap - 1,
            room_for,
            wait,
            next_check: StdAtomicU64::new(0),
            died: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// Whether the peer wakes this side through the futex word (the set
    /// sleeps on it); `Spin`/`SpinYield` rings are polled instead.
    pub(crate) fn sleeps(&self) -> bool {
        self.wait == WaitStrategy::Futex
    }

    /// The segment, mapped for as long as the returned pin lives; `None`
    /// once every endpoint of the ring is gone (the ring is unmapped, and
    /// nothing about it can be ready any more). Hold a pin only for one
    /// look: never across a sleep.
    pub(crate) fn pin(&self) -> Option<Pinned<'_>> {
        Some(Pinned {
            w: self,
            seg: self.seg.upgrade()?,
        })
    }
}

/// A [`Watch`] whose segment is kept mapped for one look.
pub(crate) struct Pinned<'a> {
    w: &'a Watch,
    seg: Arc<Segment>,
}

impl Pinned<'_> {
    fn h(&self) -> &Header {
        self.seg.header()
    }

    /// Where this side sleeps.
    pub(crate) fn wait_word(&self) -> &WaitWord {
        self.w.role.words(self.h()).wait
    }

    /// Register as a sleeper on this side's word, as `Endpoint::sleep` does:
    /// returns the `seq` value to sleep on. The caller then issues the heavy
    /// barrier if `peer_light()` for any ring, re-checks with `readiness`
    /// and sleeps in `futex_waitv` on `seq`.
    pub(crate) fn register(&self) -> u32 {
        let w = self.wait_word();
        // Acquire: pairs with the waker's Release fetch_add of `seq` in
        // `Endpoint::wake`.
        let seq = w.seq.load(Ordering::Acquire);
        // SeqCst store, then the SeqCst loads in `readiness`: with the
        // peer's SeqCst signal store and SeqCst load of `waiting` in
        // `Endpoint::publish`, either we see its progress or it sees our
        // registration and wakes us (store-buffer pattern).
        crate::sync::store_flag(&w.waiting, 1, Ordering::SeqCst);
        seq
    }

    /// Whether the peer publishes with the light barrier, so a sleeper must
    /// issue `wait::heavy_barrier()` after registering. SeqCst: ordered
    /// after `register` (see `Endpoint::attach` for the flag's own race).
    pub(crate) fn peer_light(&self) -> bool {
        let w = self.w.role.peer().words(self.h()).light;
        w.load(Ordering::SeqCst) != 0
    }

    /// Withdraw the registration (the waker may have done it already).
    pub(crate) fn unregister(&self) {
        // Relaxed: as at the end of `Endpoint::sleep`; a waker that swapped
        // it to 0 first has already woken us.
        crate::sync::store_flag(&self.wait_word().waiting, 0, Ordering::Relaxed);
    }

    /// Look at the ring: data or room, or a gone peer. Loads the signal
    /// words with SeqCst (the re-check of the sleep protocol). Asks the
    /// kernel whether the peer's role lock is held at most once per
    /// `liveness` (a killed peer leaves its state word ATTACHED; each query
    /// is an `fcntl`, which is what an idle set over many rings spends its
    /// time on), and at once if `force` (the set learnt that the process
    /// the peer's pid word names exited: a hint, which this check decides).
    pub(crate) fn readiness(&self, liveness: Duration, force: bool) -> Readiness {
        let h = self.h();
        let w = self.w;
        let ready = match w.role {
            Role::Consumer => {
                // Acquire: pairs with our own endpoint's Release store of
                // `head` (possibly from another thread of this process).
                let head = h.cons.head.load(Ordering::Acquire);
                if w.locked {
                    // SeqCst: the signal a locked producer publishes.
                    h.prod.tail.load(Ordering::SeqCst) != head
                } else {
                    // SeqCst: pairs with the producer's header store in
                    // `Producer::commit_slot` (via `Endpoint::publish`).
                    self.header_word(head).load(Ordering::SeqCst) != 0
                }
            }
            Role::Producer => {
                // SeqCst: the consumer's `head` is the signal a sleeping
                // producer re-checks; `tail` is our own endpoint's (Acquire:
                // pairs with its Release store).
                let head = h.cons.head.load(Ordering::SeqCst);
                let tail = h.prod.tail.load(Ordering::Acquire);
                let rec = frame::record_len(w.room_for);
                let contiguous = w.cap - (tail & w.mask);
                let pad = if contiguous >= rec { 0 } else { contiguous };
                // A forged index gives a huge `used`: not ready, and the
                // user's next call reports the corruption when it finds the
                // ring full (liveness is still checked below).
                let used = tail.wrapping_sub(head);
                used <= w.cap && w.cap - used >= pad + rec + HDR
            }
        };
        if ready {
            return Readiness::Ready;
        }
        // SeqCst: part of the re-check (the peer stores its state with
        // SeqCst before waking us in `Endpoint::close`).
        let st = self.peer_state().load(Ordering::SeqCst);
        if st > STATE_ATTACHED {
            // Closed, or an invalid word the next call reports.
            return Readiness::PeerGone;
        }
        #[cfg(not(loom))]
        if st == STATE_ATTACHED {
            let now = crate::wait::coarse_nanos();
            // Due, give or take an eighth of the interval: a set that
            // sleeps one interval between looks must not miss a check by
            // the microseconds its previous look took.
            let every = liveness.as_nanos().min(u64::MAX as u128) as u64;
            let slack = every / 8;
            let due = now + slack >= w.next_check.load(std::sync::atomic::Ordering::Relaxed);
            if due || force {
                w.next_check.store(
                    now.saturating_add(every),
                    std::sync::atomic::Ordering::Relaxed,
                );
                let died = match self.seg.file() {
                    // A descriptor that holds no lock itself: it sees the
                    // peer's lock if the peer is alive.
                    Some(f) => match role_lock_held(f, w.role.peer()) {
                        Ok(held) => {
                            !held && self.peer_state().load(Ordering::Acquire) != STATE_CLOSED
                        }
                        // Cannot tell: let the user's call find out.
                        Err(_) => true,
                    },
                    None => false, // heap ring: both ends in this process
                };
                w.died.store(died, std::sync::atomic::Ordering::Relaxed);
            }
            if w.died.load(std::sync::atomic::Ordering::Relaxed) {
                return Readiness::PeerGone;
            }
        }
        #[cfg(loom)]
        let _ = (liveness, force, &w.next_check, &w.died); // heap rings only: one process
        Readiness::Idle
    }

    /// The pid the peer recorded at attach if its state word says
    /// ATTACHED, else 0. Foreign input: any value may come back; the set
    /// uses it only to learn when to ask the kernel about the role lock.
    #[cfg(not(loom))]
    pub(crate) fn peer_pid(&self) -> u32 {
        // Acquire: pairs with the SeqCst store of ATTACHED in
        // `segment::attach`. The pid is stored just after that (in
        // `Endpoint::attach`), so right after an attach this may still
        // read the previous attachment's pid: the set then follows a
        // process that has exited, whose pidfd only triggers a role-lock
        // check, and the new pid is read at its next look (the attach
        // wakes a registered set after storing it).
        if self.peer_state().load(Ordering::Acquire) != STATE_ATTACHED {
            return 0;
        }
        let pid = self.w.role.peer().words(self.h()).pid;
        // Acquire: pairs with the Release store in `Endpoint::attach`.
        pid.load(Ordering::Acquire)
    }

    fn peer_state(&self) -> &crate::sync::AtomicU32 {
        self.w.role.peer().words(self.h()).state
    }

    #[cfg(loom)]
    fn header_word(&self, pos: u64) -> &crate::sync::AtomicU64 {
        self.seg.loom_word(pos & (self.w.mask & !7))
    }

    #[cfg(not(loom))]
    fn header_word(&self, pos: u64) -> &crate::sync::AtomicU64 {
        let off = pos & (self.w.mask & !7);
        // SAFETY: `off` is masked into the data area and 8-aligned (the
        // data area is 128-aligned and `cap >= 64`), so 8 bytes fit; the
        // mapping lives as long as the pin `self.seg`. Atomic: the producer writes
        // the same word concurrently.
        unsafe { &*(self.seg.data().add(off as usize) as *const crate::sync::AtomicU64) }
    }
}
