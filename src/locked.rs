//! The contrast: the textbook "shared memory + lock" ring.
//!
//! One lock guards the same indices and records the lock-free ring uses;
//! every operation takes it. The lock is our own, not a `pthread_mutex_t`:
//! glibc trusts every word of a mutex and follows its robust-list pointers,
//! so a peer that scribbles on one can crash or wedge both processes. Ours
//! is a single futex word in the segment, **owned by a role, not a thread**:
//!
//! ```text
//! 0                                  free
//! role | WAITERS? | epoch << 16      held by the producer (role 1) or the
//!                                    consumer (role 2) attachment `epoch`;
//!                                    WAITERS (0x100): someone may sleep on it
//! POISON (0xff)                      a dead holder left bad indices: unusable
//! anything else                      Corrupted
//! ```
//!
//! Taking it is a compare-and-swap from 0 (Acquire); releasing is a swap to
//! 0 (Release) that wakes one sleeper if WAITERS was set (glibc's
//! three-state low-level lock, with the owner in the word). A waiter sleeps
//! on the word in slices of at most 20 ms, bounded by its deadline. The
//! holder is dead when its role's OFD lock is free (the kernel released it)
//! or its epoch is not the role's current one (an earlier attachment of the
//! role): then the waiter takes the lock over, re-validates the indices the
//! holder may have left (every change under the lock is a single final index
//! store, so an interrupted claim simply was never committed) and goes on,
//! counting a repair; if they are bad it poisons the word and everyone gets
//! [`crate::Error::LockNotRecoverable`]. No pointer and no glibc object lives
//! in the segment for this variant, and no value of the word can make us
//! crash or wait past a deadline.
//!
//! Waiting for data or room uses the same futex/semaphore words as the
//! lock-free ring (no condition variable).
//!
//! ```
//! let (mut tx, mut rx) = shmpipe::locked::Builder::default().capacity(4096).in_process()?.split()?;
//! tx.send(b"hello")?;
//! let mut buf = Vec::new();
//! rx.recv(&mut buf)?;
//! assert_eq!(buf, b"hello");
//! # Ok::<(), shmpipe::Error>(())
//! ```

use std::time::Instant;

use crate::error::{Error, Result};
use crate::layout::Header;
use crate::segment::Role;
use crate::sync::{AtomicU32, Ordering};

/// Builder for locked rings.
pub type Builder = crate::builder::Builder<crate::Locked>;
/// Sending end of a locked ring.
pub type Producer = crate::ring::Producer<crate::Locked>;
/// Receiving end of a locked ring.
pub type Consumer = crate::ring::Consumer<crate::Locked>;
/// A zero-copy claim in a locked ring (holds the lock until committed or dropped).
pub type Claim<'a> = crate::ring::Claim<'a, crate::Locked>;
/// Both ends of a new anonymous or in-process locked ring.
pub type Pair = crate::builder::Pair<crate::Locked>;
/// A message lent by [`Consumer::peek`] in a locked ring (the lock is not held).
pub type Message<'a> = crate::ring::Message<'a, crate::Locked>;

const ROLE_MASK: u32 = 0xff;
const WAITERS: u32 = 0x100;
const POISON: u32 = 0xff;

/// The lock word value meaning "held by `role`, attachment `epoch`".
pub(crate) fn owner_word(role: Role, epoch: u32) -> u32 {
    role_code(role) | ((epoch & 0xffff) << 16)
}

fn role_code(role: Role) -> u32 {
    match role {
        Role::Producer => 1,
        Role::Consumer => 2,
    }
}

/// Who the caller is, and how to tell whether a holder is dead.
pub(crate) struct Locker<'a> {
    pub h: &'a Header,
    /// Our lock word value (`owner_word` of our role and epoch).
    pub me: u32,
    pub capacity: u64,
    /// Whether the process attached as `role` is gone (its OFD role lock is
    /// free). Called only when the lock is busy.
    pub role_dead: &'a mut dyn FnMut(Role) -> Result<bool>,
}

/// Holds the ring lock; releases it on drop.
pub(crate) struct Guard {
    word: *const AtomicU32,
}

impl Guard {
    fn word(&self) -> &AtomicU32 {
        // SAFETY: the word is in the mapped header, which outlives every
        // guard (guards live inside calls or claims that borrow the handle
        // owning the segment).
        unsafe { &*self.word }
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        // Release: pairs with the next holder's Acquire CAS, so our index
        // and record stores are visible to it.
        let old = self.word().swap(0, Ordering::Release);
        if old & WAITERS != 0 {
            crate::wait::futex_wake(self.word(), 1);
        }
    }
}

/// Take the ring lock. `until = None`: try once (a dead holder is still
/// recovered). Otherwise wait until `until` at most; `Ok(None)` if it is
/// still busy then.
pub(crate) fn lock(l: &mut Locker<'_>, until: Option<Instant>) -> Result<Option<Guard>> {
    let word = &l.h.lock.word;
    let guard = || Guard {
        word: word as *const AtomicU32,
    };
    // Bounded: each round either returns, or sleeps until a wake-up or the
    // end of a slice that ends no later than `until`.
    loop {
        let v = word.load(Ordering::Relaxed);
        if v == 0 {
            // Acquire: pairs with the previous holder's Release swap.
            if word
                .compare_exchange(0, l.me, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
            {
                return Ok(Some(guard()));
            }
            continue;
        }
        if v == POISON {
            return Err(Error::LockNotRecoverable);
        }
        let role = match v & ROLE_MASK {
            1 => Role::Producer,
            2 => Role::Consumer,
            _ => return Err(Error::corrupted("ring lock word", v as u64)),
        };
        if v & 0xff00 & !WAITERS != 0 {
            return Err(Error::corrupted("ring lock word", v as u64));
        }
        let epoch_now = role.words(l.h).epoch.load(Ordering::Relaxed) & 0xffff;
        // Held by us (a word naming our own role and epoch that we do not
        // hold: we never ask twice), by an earlier attachment of a role, or
        // by a process that is gone: the holder is dead.
        let dead = v & !WAITERS == l.me || (v >> 16) != epoch_now || (l.role_dead)(role)?;
        if dead {
            // Acquire: as above; only one recoverer wins the CAS.
            if word
                .compare_exchange(v, l.me, Ordering::Acquire, Ordering::Relaxed)
                .is_err()
            {
                continue;
            }
            let g = guard();
            let head = l.h.cons.head.load(Ordering::Relaxed);
            let tail = l.h.prod.tail.load(Ordering::Relaxed);
            if let Err(e) = crate::frame::check_span(head, tail, l.capacity) {
                std::mem::forget(g);
                word.store(POISON, Ordering::Release);
                crate::wait::futex_wake(word, i32::MAX);
                return Err(e);
            }
            crate::ring::bump(&l.h.endpoints.lock_repairs);
            // A sleeper of the dead holder's time may still wait: the
            // guard's release wakes one if WAITERS is set in our word.
            if v & WAITERS != 0 {
                word.fetch_or(WAITERS, Ordering::Relaxed);
            }
            return Ok(Some(g));
        }
        let Some(until) = until else {
            return Ok(None);
        };
        let now = Instant::now();
        if now >= until {
            return Ok(None);
        }
        // Announce a sleeper, then sleep while the word is unchanged.
        let wv = v | WAITERS;
        if v != wv
            && word
                .compare_exchange(v, wv, Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
        {
            continue;
        }
        let slice_end = until.min(now + crate::wait::SLICE);
        crate::wait::futex_wait(word, wv, slice_end);
    }
}
