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
#[cfg(loom)]
mod loom_wait;
mod producer;
mod stats;
#[cfg(all(target_os = "linux", not(miri)))]
pub(crate) mod watch;
#[cfg(loom)]
#[doc(hidden)]
pub use loom_wait::loom_wait_any;

pub use consumer::{Consumer, Message};
pub use producer::{Claim, Producer};
pub(crate) use stats::{bump, stats_of, used_bytes};
pub use stats::{EndpointState, PeerStatus, Stats};

use crate::layout;

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

impl crate::VariantKind {
    /// The kind of the type parameter `V` (its [`Variant::KIND`]).
    ///
    /// ```
    /// use shmpipe::{Locked, VariantKind};
    /// assert_eq!(VariantKind::of::<Locked>(), VariantKind::Locked);
    /// ```
    pub fn of<V: Variant>() -> crate::VariantKind {
        V::KIND
    }
}
