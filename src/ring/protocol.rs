//! The base every ring design implements (`Protocol`), the two designs
//! (`LockFree`, `Locked`), and the accessors both endpoints share.

use super::block::Mode;
use super::endpoint::Endpoint;
use crate::layout;

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

/// Seals `Protocol` (and so `Variant`): the crate's two designs only.
pub trait Sealed {}

/// What every ring design states: its codes and names, what an operation
/// holds (`Guard`), and how it enters one (`enter`). The base of
/// [`super::Variant`]; the producer's and consumer's hooks extend it
/// (`ProducerHooks`, `ConsumerHooks`).
pub trait Protocol: Sealed + Sized + Send + Sync + 'static {
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
}

/// The lock-free single-producer/single-consumer ring.
#[derive(Debug, Clone, Copy, Default)]
pub struct LockFree;
/// The textbook "shared memory + lock" ring: a process-shared lock guards
/// the same indices and records (its hooks are in `src/locked.rs`).
#[derive(Debug, Clone, Copy, Default)]
pub struct Locked;

impl Sealed for LockFree {}
impl Sealed for Locked {}
// `Locked`'s implementations are in `src/locked.rs`.
impl Protocol for LockFree {
    const CODE: u32 = layout::VARIANT_LOCKFREE;
    const KIND: crate::VariantKind = crate::VariantKind::LockFree;
    type Guard = ();
    type ConsumerState = ();

    #[inline(always)]
    fn enter(_ep: &mut Endpoint, _mode: Mode) -> crate::Result<Option<()>> {
        Ok(Some(()))
    }
}
