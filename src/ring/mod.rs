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
//! - `protocol.rs`: the design's base trait (`Protocol`: codes, guard,
//!   `enter`), `LockFree`/`Locked`; the producer's and consumer's hooks
//!   are declared beside the code that calls them (`ProducerHooks`,
//!   `ConsumerHooks`), and `Variant` is both.
//! - `stats.rs`: `Stats`, `PeerStatus`, `EndpointState`.
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

mod block;
mod consumer;
mod copy;
pub(crate) mod counts;
mod endpoint;
#[cfg(loom)]
mod loom_wait;
mod producer;
mod protocol;
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

pub(crate) use block::{mode_until, Mode};
pub(crate) use consumer::{ConsumerHooks, Found};
pub(crate) use endpoint::Endpoint;
pub(crate) use producer::{ProducerHooks, Slot};
pub(crate) use protocol::Protocol;
pub use protocol::{LockFree, Locked};

/// Which ring design a handle speaks: [`LockFree`] or [`Locked`]. Sealed.
///
/// Its associated constants `V::KIND` ([`crate::VariantKind`]) and
/// `V::NAME` (`"lockfree"` / `"locked"`) name the design. Besides its
/// names, a variant is the set of hooks where the locked design departs
/// from the lock-free protocol that `Producer` and `Consumer` run: taking
/// the lock, reserving, looking, publishing, sleeping and releasing
/// (DESIGN.md, "The locked variant"). Every hook's default is the lock-free
/// protocol; `src/locked.rs` overrides them. The hooks are not part of the
/// public API (their traits cannot be named outside the crate).
pub trait Variant: ProducerHooks + ConsumerHooks {}

impl<V: ProducerHooks + ConsumerHooks> Variant for V {}

impl crate::VariantKind {
    /// The kind of the type parameter `V` (its `V::KIND`).
    ///
    /// ```
    /// use shmpipe::{Locked, VariantKind};
    /// assert_eq!(VariantKind::of::<Locked>(), VariantKind::Locked);
    /// ```
    pub fn of<V: Variant>() -> crate::VariantKind {
        V::KIND
    }
}
