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

use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::frame::check_span;
use crate::layout::{self, Header};
use crate::ring::{
    mode_until, ConsumerHooks, Endpoint, Found, Mode, ProducerHooks, Protocol, Slot,
};
use crate::segment::Role;
use crate::sync::{AtomicU32, AtomicU64, Ordering};

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

/// The locked design: its codes, its guard (the lock) and how an
/// operation takes it.
impl Protocol for crate::Locked {
    const CODE: u32 = layout::VARIANT_LOCKED;
    const KIND: crate::VariantKind = crate::VariantKind::Locked;
    /// The indices decide, read under the lock: no header-signal fast path.
    const HEADER_SIGNAL: bool = false;
    type Guard = Guard;
    type ConsumerState = ConsumerState;

    /// Take the ring lock (see [`lock`]); a corruption sticks.
    fn enter(ep: &mut Endpoint, mode: Mode) -> Result<Option<Guard>> {
        // The clock is read here only: the lock-free ring reads none per attempt.
        let until = mode_until(mode);
        let (role, epoch) = ep.owner();
        let r = {
            let mut role_dead = |role: Role| ep.role_dead(role);
            let mut locker = Locker {
                h: ep.h(),
                me: owner_word(role, epoch),
                capacity: ep.cap,
                role_dead: &mut role_dead,
            };
            lock(&mut locker, until)
        };
        ep.note(r)
    }
}

/// The locked producer's departures from the lock-free protocol (the
/// hooks of [`crate::Variant`], called by `Producer`).
impl ProducerHooks for crate::Locked {
    /// Nothing to scan for: every commit stores `tail` under the lock.
    fn producer_attach(
        _p: &mut crate::Producer<Self>,
        _head: u64,
        tail: u64,
    ) -> Result<(u64, u64)> {
        Ok((tail, tail))
    }

    /// Under the lock: reload both indices, validate them, then decide.
    fn reserve(p: &mut crate::Producer<Self>, len: usize) -> Result<Option<Slot>> {
        let h = p.ep.h();
        // Relaxed: ordered by the lock.
        let tail = h.prod.tail.load(Ordering::Relaxed);
        let head = h.cons.head.load(Ordering::Relaxed);
        p.head_cache = head;
        check_span(head, tail, p.ep.cap)?;
        // We are `tail`'s only writer: anything else was written by
        // someone else (and would stall or corrupt both sides).
        if tail != p.tail {
            return Err(Error::corrupted(
                "tail was changed by another process",
                tail,
            ));
        }
        if tail + p.need(tail, len).1 - head > p.ep.cap {
            return Ok(None);
        }
        Ok(Some(p.slot_at_tail(len)))
    }

    /// Waiting: look at the indices without the lock first, so a waiting
    /// side does not keep taking the lock away from the side that would make
    /// progress. Plain atomic loads; the decision is re-made under the lock.
    fn full_at_a_glance(p: &mut crate::Producer<Self>, len: usize) -> bool {
        let h = p.ep.h();
        let tail = h.prod.tail.load(Ordering::Relaxed);
        p.head_cache = h.cons.head.load(Ordering::Relaxed);
        let used = tail.wrapping_sub(p.head_cache);
        used.saturating_add(p.need(tail, len).1) > p.ep.cap
    }

    /// The header store needs no ordering of its own: the consumer reads
    /// it after `tail`, under the lock. `tail` is the signal a sleeping
    /// consumer re-checks; the counters are checkpointed at every commit
    /// (`head` is reloaded by every operation).
    fn publish(p: &mut crate::Producer<Self>, (off, word): (u64, u64)) {
        p.ep.word(off).store(word, Ordering::Relaxed);
        p.ep.publish(&p.ep.h().prod.tail, p.tail, None);
        p.checkpoint();
    }

    /// One by one, each under the lock.
    fn send_batch<M: AsRef<[u8]>>(p: &mut crate::Producer<Self>, msgs: &[M]) -> Result<()> {
        msgs.iter().try_for_each(|m| p.send(m.as_ref()))
    }

    /// One by one; as the lock-free ring, what was sent is counted and the
    /// next call reports the failure.
    fn try_send_batch<M: AsRef<[u8]>>(p: &mut crate::Producer<Self>, msgs: &[M]) -> Result<usize> {
        let mut n = 0;
        for m in msgs {
            match p.try_send(m.as_ref()) {
                Ok(()) => n += 1,
                Err(_) if n > 0 => break,
                Err(e) => return Err(e),
            }
        }
        Ok(n)
    }
}

/// The locked consumer's departures from the lock-free protocol (the
/// hooks of [`crate::Variant`], called by `Consumer`).
impl ConsumerHooks for crate::Locked {
    /// Checked under the lock, by every operation.
    fn consumer_attach(c: &mut crate::Consumer<Self>, _head: u64, tail: u64) -> Result<()> {
        c.var.tail_seen = tail;
        Ok(())
    }

    /// Under the lock: the indices decide; releases deferred while the
    /// lock was busy are published first.
    fn look(c: &mut crate::Consumer<Self>) -> Result<Option<Found>> {
        flush_release(c);
        let tail = indices(c)?;
        let head = c.head;
        if head == tail {
            return Ok(None);
        }
        // Relaxed: the lock orders it with the producer's stores.
        let word = c.ep.word(head & c.ep.mask).load(Ordering::Relaxed);
        c.parse(head, word, Some(tail)).map(Some)
    }

    /// Relaxed: a hint; the decision is made under the lock.
    fn has_record(c: &crate::Consumer<Self>) -> bool {
        c.ep.h().prod.tail.load(Ordering::Relaxed) != c.head
    }

    /// Waiting: see [`Self::full_at_a_glance`].
    fn empty_at_a_glance(c: &mut crate::Consumer<Self>) -> bool {
        let tail = c.ep.h().prod.tail.load(Ordering::Relaxed);
        if tail == c.head {
            c.var.tail_seen = tail;
            return true;
        }
        false
    }

    /// Every look validates the indices under the lock.
    fn cross_check_empty(_c: &crate::Consumer<Self>) -> Result<()> {
        Ok(())
    }

    /// Acquire: pairs with the producer's Release/SeqCst store of `tail`
    /// (the attempt re-reads it under the lock anyway).
    fn data_moved(c: &crate::Consumer<Self>) -> bool {
        c.ep.h().prod.tail.load(Ordering::Acquire) != c.var.tail_seen
    }

    /// `tail`, and the value the last attempt saw.
    fn data_signal(c: &crate::Consumer<Self>) -> (&AtomicU64, u64) {
        (&c.ep.h().prod.tail, c.var.tail_seen)
    }

    /// Record the release locally, publish it now if the lock is free,
    /// else with the next operation that takes it. Never blocks.
    fn release(c: &mut crate::Consumer<Self>, found: Found) {
        c.var.deferred = true;
        c.head = found.next;
        // An error sticks to the handle (`enter` notes it); the next call reports it.
        if let Ok(Some(guard)) = Self::enter(&mut c.ep, Mode::Try) {
            flush_release(c);
            drop(guard);
        }
    }

    /// Publish deferred releases, waiting a little for the lock. If it
    /// stays busy the released messages are delivered again to the next
    /// consumer (at least once, never lost).
    fn finish_release(c: &mut crate::Consumer<Self>) {
        if !c.var.deferred {
            return;
        }
        let until = Instant::now() + Duration::from_millis(100);
        while Instant::now() < until {
            match Self::enter(&mut c.ep, Mode::Until(Some(until))) {
                Ok(Some(guard)) => {
                    flush_release(c);
                    drop(guard);
                    return;
                }
                Ok(None) => {}
                Err(_) => return,
            }
        }
    }

    /// Take the lock (not waiting), publish deferred releases, and bound
    /// the batch by `tail`.
    fn drain_begin(c: &mut crate::Consumer<Self>) -> Result<Option<(Option<Guard>, Option<u64>)>> {
        let Some(g) = Self::enter(&mut c.ep, Mode::Try)? else {
            return Ok(None);
        };
        flush_release(c);
        let r = indices(c);
        let tail = c.ep.note(r)?;
        Ok(Some((Some(g), Some(tail))))
    }
}

/// The locked consumer's own state.
#[derive(Debug, Default)]
pub struct ConsumerState {
    /// The `tail` seen by the last attempt (what a sleeper re-checks).
    tail_seen: u64,
    /// Messages were released by `Message::release` while the lock was
    /// busy; `head` is already past them locally and is published by the
    /// next operation that holds the lock.
    deferred: bool,
}

/// With the lock held: publish releases deferred by `release`.
fn flush_release(c: &mut crate::Consumer<crate::Locked>) {
    if std::mem::take(&mut c.var.deferred) {
        let head = c.head;
        c.publish_head(head);
    }
}

/// With the lock held: read and validate the indices; returns `tail`.
fn indices(c: &mut crate::Consumer<crate::Locked>) -> Result<u64> {
    let h = c.ep.h();
    // Relaxed: the lock orders these with the producer's stores.
    let head = h.cons.head.load(Ordering::Relaxed);
    let tail = h.prod.tail.load(Ordering::Relaxed);
    c.var.tail_seen = tail;
    check_span(head, tail, c.ep.cap)?;
    // We are `head`'s only writer, so the segment must hold what we last
    // stored (a peer that rewrites it would otherwise stall both sides).
    if head != c.head {
        return Err(Error::corrupted(
            "head was changed by another process",
            head,
        ));
    }
    Ok(tail)
}

const ROLE_MASK: u32 = 0xff;
const WAITERS: u32 = 0x100;
const POISON: u32 = 0xff;

/// The lock word value meaning "held by `role`, attachment `epoch`".
fn owner_word(role: Role, epoch: u32) -> u32 {
    role_code(role) | ((epoch & 0xffff) << 16)
}

fn role_code(role: Role) -> u32 {
    match role {
        Role::Producer => 1,
        Role::Consumer => 2,
    }
}

/// Who the caller is, and how to tell whether a holder is dead.
struct Locker<'a> {
    pub h: &'a Header,
    /// Our lock word value (`owner_word` of our role and epoch).
    pub me: u32,
    pub capacity: u64,
    /// Whether the process attached as `role` is gone (its OFD role lock is
    /// free). Called only when the lock is busy.
    pub role_dead: &'a mut dyn FnMut(Role) -> Result<bool>,
}

/// Holds the ring lock; releases it on drop.
pub struct Guard {
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
fn lock(l: &mut Locker<'_>, until: Option<Instant>) -> Result<Option<Guard>> {
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
