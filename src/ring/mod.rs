//! The ring protocol (format v2): reserving, writing, publishing and reading
//! records, and the sleep/wake protocol. One generic core serves both
//! variants: the lock-free ring ([`LockFree`]) and the mutex-protected ring
//! ([`Locked`]).
//!
//! # Files
//! - `endpoint.rs`: what both sides share (geometry, role lock, liveness,
//!   publication with its wake-up, sleeping, closing).
//! - `block.rs`: the blocking loop every waiting call runs (spin, backoff,
//!   sleep, deadline and liveness slices).
//! - `producer.rs`: `Producer`, `Claim`, takeover of a dead producer.
//! - `consumer.rs`: `Consumer`, `Message` (two-phase receive), `drain`.
//!
//! # Index protocol (lock-free), in short
//! - The record header word is the signal: the consumer learns that the
//!   record at `head` is committed by loading its header word (Acquire),
//!   which the producer stores last (Release), after the payload and after
//!   zeroing the header slot that follows the record ("zero ahead"), so a
//!   word from the previous lap is never taken for a new record.
//! - `tail` (producer-owned) is still stored after every record, on the
//!   producer's own line, for `len`, stats, `inspect` and takeover; nothing
//!   on the consumer's hot path reads it.
//! - `head` (consumer-owned) is stored after every released message (one
//!   store to the consumer's own line); the producer loads it only when its
//!   cached copy says "full".
//!
//! Every value read from the segment is read once into a local and checked
//! before use; a violation is `Error::Corrupted` and sticks to the handle.
//! DESIGN.md sections 2 and 3 give the orderings and the no-lost-wake-up
//! argument.

/// The accessors `Producer` and `Consumer` share, defined once (both keep
/// their endpoint in a field `ep`).
macro_rules! shared_accessors {
    () => {
        /// Data-area capacity in bytes.
        ///
        /// ```
        /// let (tx, rx) = shmpipe::Builder::new().capacity(4096).in_process()?.split()?;
        /// assert_eq!((tx.capacity(), rx.capacity()), (4096, 4096));
        /// # Ok::<(), shmpipe::Error>(())
        /// ```
        pub fn capacity(&self) -> u64 {
            self.ep.cap
        }

        /// Largest message this ring accepts (`capacity / 2 - 8` bytes).
        ///
        /// ```
        /// let (mut tx, rx) = shmpipe::Builder::new().capacity(4096).in_process()?.split()?;
        /// assert_eq!((tx.max_message(), rx.max_message()), (2040, 2040));
        /// let big = vec![0u8; tx.max_message() + 1];
        /// assert!(matches!(tx.try_send(&big), Err(shmpipe::Error::TooLarge { len: 2041, max: 2040 })));
        /// # Ok::<(), shmpipe::Error>(())
        /// ```
        pub fn max_message(&self) -> usize {
            self.ep.max
        }

        /// The wait strategy recorded in the segment.
        ///
        /// ```
        /// use shmpipe::{Builder, WaitStrategy};
        /// let (tx, rx) = Builder::new().wait(WaitStrategy::Spin).in_process()?.split()?;
        /// assert_eq!(tx.wait_strategy(), WaitStrategy::Spin);
        /// assert_eq!(rx.wait_strategy(), WaitStrategy::Spin);
        /// # Ok::<(), shmpipe::Error>(())
        /// ```
        pub fn wait_strategy(&self) -> crate::WaitStrategy {
            self.ep.wait
        }

        /// Bytes of committed, unread records (framing included), as of now:
        /// bytes, not messages (a message's record is its length rounded up
        /// to 8, plus an 8-byte header; `stats()` counts messages).
        ///
        /// ```
        /// let (mut tx, rx) = shmpipe::Builder::new().in_process()?.split()?;
        /// tx.send(b"12345")?; // a 16-byte record
        /// assert_eq!((tx.len_bytes(), rx.len_bytes()), (16, 16));
        /// # Ok::<(), shmpipe::Error>(())
        /// ```
        pub fn len_bytes(&self) -> u64 {
            $crate::ring::used_bytes(self.ep.h(), self.ep.cap)
        }

        /// A snapshot of the ring's counters (the same from either end).
        ///
        /// ```
        /// let (mut tx, mut rx) = shmpipe::Builder::new().capacity(4096).in_process()?.split()?;
        /// tx.send(b"hello")?;
        /// assert_eq!(tx.stats().messages_received, 0);
        /// rx.try_recv_with(|_| ())?;
        /// let s = rx.stats();
        /// assert_eq!((s.messages_sent, s.bytes_sent), (1, 5));
        /// assert_eq!((s.messages_received, s.bytes_received, s.used_bytes), (1, 5, 0));
        /// # Ok::<(), shmpipe::Error>(())
        /// ```
        pub fn stats(&self) -> $crate::Stats {
            $crate::ring::stats_of(&self.ep.seg)
        }
    };
}
pub(crate) use shared_accessors;

mod block;
mod consumer;
mod copy;
pub(crate) mod counts;
mod endpoint;
mod producer;
#[cfg(all(target_os = "linux", not(miri)))]
pub(crate) mod watch;
#[cfg(loom)]
#[doc(hidden)]
pub use watch::loom_wait_any;

pub use consumer::{Consumer, Message};
pub use producer::{Claim, Producer};

use crate::layout::{self, Header, STATE_ATTACHED, STATE_CLOSED, STATE_NEVER};
use crate::segment::Segment;
use crate::sync::{AtomicU64, Ordering};

mod private {
    pub trait Sealed {}
}

pub(crate) use block::{mode_until, Mode};
pub(crate) use consumer::Found;
pub(crate) use endpoint::Endpoint;
pub(crate) use producer::Slot;

/// Which ring design a handle speaks: [`LockFree`] or [`Locked`]. Sealed.
///
/// Besides its names, a variant is the set of hooks where the locked
/// design departs from the lock-free protocol that `Producer` and
/// `Consumer` run: taking the lock, reserving, looking, publishing,
/// sleeping and releasing (DESIGN.md §7). Every hook's default is the
/// lock-free protocol; the locked module (`src/locked.rs`) overrides them. The hooks are not
/// part of the public API (their argument types cannot be named outside
/// the crate).
pub trait Variant: private::Sealed + Sized + Send + Sync + 'static {
    /// Code recorded in the segment header.
    #[doc(hidden)]
    const CODE: u32;
    /// The design as a value.
    const KIND: crate::VariantKind;
    /// Its name (`KIND`'s): `"lockfree"` or `"locked"`.
    const NAME: &'static str = Self::KIND.name();
    /// Whether a process-shared lock guards the indices (for a
    /// `WaitSet`'s watch, which reads them without a handle).
    #[doc(hidden)]
    const LOCKED: bool = Self::CODE == layout::VARIANT_LOCKED;
    /// Whether a published record header is the signal a reader may act on
    /// without a lock: the fast paths (`fast_slot`, `fast_look`,
    /// `quick_empty`, the blocking calls' first try) exist only then.
    #[doc(hidden)]
    const HEADER_SIGNAL: bool = true;

    /// What an operation holds while it works on the indices.
    #[doc(hidden)]
    type Guard;
    /// The consumer's own state for this design.
    #[doc(hidden)]
    type ConsumerState: Default;

    /// Enter an operation on the indices: `Mode::Try` tries once,
    /// `Mode::Until` may wait one slice (see `mode_until`); `Ok(None)`:
    /// still busy then.
    #[doc(hidden)]
    fn enter(ep: &mut Endpoint, mode: Mode) -> crate::Result<Option<Self::Guard>>;

    // ---- producer ----

    /// At attach: the end of the committed records, and where the count of
    /// the records committed after the last checkpoint stops.
    #[doc(hidden)]
    fn producer_attach(p: &mut Producer<Self>, head: u64, tail: u64) -> crate::Result<(u64, u64)> {
        p.attach_end(head, tail)
    }
    /// Reserve room for a record of `len` payload bytes (inside `enter`).
    #[doc(hidden)]
    #[inline(always)]
    fn reserve(p: &mut Producer<Self>, len: usize) -> crate::Result<Option<Slot>> {
        p.reserve(len)
    }
    /// A waiting producer's look without entering: `true` if it can tell
    /// there is no room for `len` bytes.
    #[doc(hidden)]
    #[inline(always)]
    fn full_at_a_glance(_p: &mut Producer<Self>, _len: usize) -> bool {
        false
    }
    /// Publish a written record: the signal `(offset, word)`, the tail.
    #[doc(hidden)]
    #[inline(always)]
    fn publish(p: &mut Producer<Self>, signal: (u64, u64)) {
        p.publish_signal(signal)
    }
    /// `Producer::send_batch`.
    #[doc(hidden)]
    fn send_batch<M: AsRef<[u8]>>(p: &mut Producer<Self>, msgs: &[M]) -> crate::Result<()> {
        p.send_run(msgs)
    }
    /// `Producer::try_send_batch` (with `msgs` not empty).
    #[doc(hidden)]
    fn try_send_batch<M: AsRef<[u8]>>(p: &mut Producer<Self>, msgs: &[M]) -> crate::Result<usize> {
        p.try_send_run(msgs)
    }

    // ---- consumer ----

    /// At attach: check the indices found.
    #[doc(hidden)]
    fn consumer_attach(c: &mut Consumer<Self>, head: u64, tail: u64) -> crate::Result<()> {
        c.check_attach(head, tail)
    }
    /// One look for a message (inside `enter`).
    #[doc(hidden)]
    #[inline(always)]
    fn look(c: &mut Consumer<Self>) -> crate::Result<Option<Found>> {
        c.look()
    }
    /// Whether a record is published at `head` (no validation).
    #[doc(hidden)]
    #[inline(always)]
    fn has_record(c: &Consumer<Self>) -> bool {
        c.header_published()
    }
    /// A waiting consumer's look without entering: `true` if it can tell
    /// the ring is empty.
    #[doc(hidden)]
    #[inline(always)]
    fn empty_at_a_glance(_c: &mut Consumer<Self>) -> bool {
        false
    }
    /// Found empty, once per liveness slice: cross-check the indices.
    #[doc(hidden)]
    fn cross_check_empty(c: &Consumer<Self>) -> crate::Result<()> {
        c.cross_check_empty()
    }
    /// Whether something was published since the last look.
    #[doc(hidden)]
    #[inline(always)]
    fn data_moved(c: &Consumer<Self>) -> bool {
        c.header_published()
    }
    /// The word a sleeping consumer waits on, and the value it saw there.
    #[doc(hidden)]
    fn data_signal(c: &Consumer<Self>) -> (&crate::sync::AtomicU64, u64) {
        (c.head_word(), 0)
    }
    /// Release a message lent by `peek`.
    #[doc(hidden)]
    fn release(c: &mut Consumer<Self>, found: Found) {
        c.publish_head(found.next)
    }
    /// Before closing: publish what `release` left pending.
    #[doc(hidden)]
    fn finish_release(_c: &mut Consumer<Self>) {}
    /// Start a `drain`: `Ok(None)`: busy, nothing read; else what is held
    /// and, where the indices decide, the `tail` that bounds the batch.
    #[doc(hidden)]
    #[allow(clippy::type_complexity)]
    fn drain_begin(
        _c: &mut Consumer<Self>,
    ) -> crate::Result<Option<(Option<Self::Guard>, Option<u64>)>> {
        Ok(Some((None, None)))
    }
}

/// The lock-free single-producer/single-consumer ring.
#[derive(Debug, Clone, Copy, Default)]
pub struct LockFree;
/// The textbook "shared memory + lock" ring: a process-shared lock guards
/// the same indices and records (its hooks are in `src/locked.rs`).
#[derive(Debug, Clone, Copy, Default)]
pub struct Locked;

impl private::Sealed for LockFree {}
impl private::Sealed for Locked {}
// `impl Variant for Locked` is in `src/locked.rs`.
impl Variant for LockFree {
    const CODE: u32 = layout::VARIANT_LOCKFREE;
    const KIND: crate::VariantKind = crate::VariantKind::LockFree;
    type Guard = ();
    type ConsumerState = ();

    #[inline(always)]
    fn enter(_ep: &mut Endpoint, _mode: Mode) -> crate::Result<Option<()>> {
        Ok(Some(()))
    }
}

/// State of an endpoint as recorded in the segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum EndpointState {
    /// No process has attached to this role yet.
    Never,
    /// A process is attached (alive or dead: see [`crate::SegmentInfo`]).
    Attached,
    /// The endpoint closed its side in order.
    Closed,
    /// The word holds a value no endpoint writes.
    Invalid(u32),
}

impl EndpointState {
    pub(crate) fn from_word(w: u32) -> Self {
        match w {
            STATE_NEVER => EndpointState::Never,
            STATE_ATTACHED => EndpointState::Attached,
            STATE_CLOSED => EndpointState::Closed,
            x => EndpointState::Invalid(x),
        }
    }
}

/// What [`Producer::peer_status`] / [`Consumer::peer_status`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum PeerStatus {
    /// No process has attached to the peer's role yet.
    NotAttached,
    /// The peer is attached and its process holds its role lock.
    Alive,
    /// The peer closed its side in order.
    Closed,
    /// The peer's process died without closing (a new one may take over).
    Died,
}

/// A snapshot of a ring's counters. Counters are written by the peers and
/// are informational only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Size of the data area in bytes.
    pub capacity: u64,
    /// The consumer's position (`head`): bytes of records, padding included,
    /// consumed since the ring was created. Unlike `messages_received`, it
    /// is the index itself (one store per release), so a consumer that
    /// takes over starts exactly here; with [`crate::position_after`] it
    /// gives every later message's position.
    pub head: u64,
    /// The producer's published position (`tail`), in the same unit; it may
    /// lag the last committed record by one (DESIGN.md §2).
    pub tail: u64,
    /// Bytes of committed, unread records (framing included), from the
    /// published indices (the consumer may be a record ahead of `tail`).
    pub used_bytes: u64,
    /// Messages committed by producers.
    pub messages_sent: u64,
    /// Payload bytes committed by producers.
    pub bytes_sent: u64,
    /// Messages consumed.
    pub messages_received: u64,
    /// Payload bytes consumed.
    pub bytes_received: u64,
    /// Times a producer found the ring full and had to wait.
    pub full_waits: u64,
    /// Times a consumer found the ring empty and had to wait.
    pub empty_waits: u64,
    /// Wake-up syscalls made by the producer (to wake the consumer).
    pub producer_wake_syscalls: u64,
    /// Wake-up syscalls made by the consumer (to wake the producer).
    pub consumer_wake_syscalls: u64,
    /// Times the locked variant recovered its lock from a dead holder.
    pub lock_repairs: u64,
    /// Producer endpoint state.
    pub producer: EndpointState,
    /// Consumer endpoint state.
    pub consumer: EndpointState,
}

/// Bytes of committed, unread records, from the published indices (the
/// consumer may be a record ahead of a lagging `tail`: then nothing).
pub(crate) fn used_bytes(h: &Header, capacity: u64) -> u64 {
    let tail = h.prod.tail.load(Ordering::Relaxed);
    let head = h.cons.head.load(Ordering::Relaxed);
    tail.saturating_sub(head).min(capacity)
}

/// A snapshot of the counters: the producer's checkpoint plus the records
/// from it on, and what was received derived from `head` (see
/// [`counts`]). Exact at rest; while the peers run, a walk that meets a
/// record being overwritten stops and the figures are the checkpoint's.
pub(crate) fn stats_of(seg: &Segment) -> Stats {
    let h = seg.header();
    let capacity = seg.geometry.capacity;
    let r = |a: &AtomicU64| a.load(Ordering::Relaxed);
    // Acquire: pairs with the consumer's Release store of `head`.
    let head = h.cons.head.load(Ordering::Acquire);
    let tail = h.prod.tail.load(Ordering::Relaxed);
    let (_, c) = counts::load(h);
    let stop = if seg.geometry.variant == layout::VARIANT_LOCKED {
        h.prod.tail.load(Ordering::Acquire)
    } else {
        u64::MAX
    };
    let walk = counts::walk(seg, c.at.min(head), c.at, head, stop).unwrap_or_default();
    let messages_sent = c.messages.wrapping_add(walk.messages);
    let bytes_sent = c.bytes.wrapping_add(walk.bytes);
    Stats {
        capacity,
        head,
        tail,
        used_bytes: used_bytes(h, capacity),
        messages_sent,
        bytes_sent,
        messages_received: messages_sent.wrapping_sub(walk.unread),
        bytes_received: bytes_sent.wrapping_sub(walk.unread_bytes),
        full_waits: r(&h.prod.full_waits),
        empty_waits: r(&h.cons.empty_waits),
        producer_wake_syscalls: r(&h.prod.wake_syscalls),
        consumer_wake_syscalls: r(&h.cons.wake_syscalls),
        lock_repairs: r(&h.endpoints.lock_repairs),
        producer: EndpointState::from_word(h.endpoints.producer.load(Ordering::Relaxed)),
        consumer: EndpointState::from_word(h.endpoints.consumer.load(Ordering::Relaxed)),
    }
}

/// Add to an informational counter a peer may also write: wrap, never panic.
#[inline]
pub(crate) fn bump(counter: &AtomicU64) {
    counter.store(
        counter.load(Ordering::Relaxed).wrapping_add(1),
        Ordering::Relaxed,
    );
}
