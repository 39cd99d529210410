//! # shmpipe
//!
//! A lock-free single-producer/single-consumer ring of variable-length
//! messages in POSIX shared memory, for moving messages between processes
//! faster than pipes, sockets or message queues. Idle peers sleep on a
//! futex or a counting semaphore (of our own, over a futex word) in the
//! segment; the streaming hot path makes no syscall.
//!
//! ```
//! use shmpipe::{Builder, WaitStrategy};
//!
//! let name = format!("/shmpipe-doc-{}", std::process::id());
//! let mut tx = Builder::new()
//!     .capacity(64 * 1024)
//!     .wait(WaitStrategy::Futex)
//!     .create_producer(&name)?;
//! // Usually in another process:
//! let mut rx = Builder::new().open_consumer(&name)?;
//!
//! tx.send(b"hello")?;
//! let mut claim = tx.claim(5)?; // zero-copy: write in place, then commit
//! claim.copy_from_slice(b"world");
//! claim.commit();
//!
//! let mut buf = Vec::new();
//! rx.recv(&mut buf)?;
//! assert_eq!(buf, b"hello");
//! rx.recv_with(|msg| assert_eq!(msg, b"world"))?;
//! drop(tx); // closes the producer side (and, as creator, unlinks the name)
//! assert!(matches!(rx.recv(&mut buf), Err(shmpipe::Error::Disconnected)));
//! # Ok::<(), shmpipe::Error>(())
//! ```
//!
//! - [`Builder`] creates or opens rings: named (`create_producer`,
//!   `open_consumer`, ...), anonymous for `fork()` ([`Builder::anonymous`]),
//!   or on the heap for threads ([`Builder::in_process`]).
//! - [`Producer`] and [`Consumer`] are the two ends (`Send`, not `Sync`);
//!   `Consumer::iter()` / `try_iter()` iterate over its messages.
//! - [`locked`] is the same API over a lock-protected ring, for contrast.
//! - [`AnyBuilder`], [`AnyProducer`], [`AnyConsumer`]: either variant,
//!   chosen by a [`VariantKind`] value or detected in the segment at run time.
//! - Optional features: `pod` and `serde` (`typed` messages), `rpc`
//!   (`rpc` request/response and `process`: spawn a child with a ring pair).
//! - Everything the peer can write is validated; see `DESIGN.md` for the
//!   layout, the protocol with its orderings, and the trust model.

#![deny(unsafe_op_in_unsafe_fn, missing_docs)]
#![warn(clippy::undocumented_unsafe_blocks)]
// Under loom and Miri the OS-backed paths are compiled out.
#![cfg_attr(
    any(loom, miri),
    allow(dead_code, unused_imports, irrefutable_let_patterns)
)]

#[cfg(not(loom))]
mod any;
mod builder;
mod error;
mod frame;
#[cfg(not(any(loom, miri)))]
mod inspect;
pub mod iter;
mod layout;
pub mod locked;
mod ring;
mod segment;
#[cfg(not(any(loom, miri)))]
mod sigbus;
mod sync;
mod variant;
mod wait;
#[cfg(all(target_os = "linux", not(any(loom, miri))))]
pub mod waitset;

#[cfg(all(feature = "rpc", not(any(loom, miri))))]
pub mod process;
#[cfg(feature = "rpc")]
pub mod rpc;
#[cfg(any(feature = "pod", feature = "serde"))]
pub mod typed;

#[cfg(not(loom))]
pub use any::{AnyBuilder, AnyClaim, AnyConsumer, AnyMessage, AnyPair, AnyProducer, Attached};
pub use builder::{Builder, Pair, DEFAULT_CAPACITY};
pub use error::{Error, Result};
#[cfg(not(any(loom, miri)))]
pub use inspect::{inspect, SegmentInfo};
pub use layout::{MAX_CAPACITY, MIN_CAPACITY};
#[cfg(loom)]
#[doc(hidden)]
pub use ring::loom_wait_any;
pub use ring::{
    Claim, Consumer, EndpointState, LockFree, Locked, Message, PeerStatus, Producer, Stats, Variant,
};
#[cfg(not(any(loom, miri)))]
pub use segment::remove;
pub use segment::validate_name;
pub use variant::{ParseVariantError, VariantKind};
pub use wait::WaitStrategy;
#[cfg(all(target_os = "linux", not(any(loom, miri))))]
pub use waitset::{Event, Events, Token, WaitSet};

/// The README's example, compiled and run by `cargo test` as a doctest so
/// that it cannot go stale.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;

/// Largest message a ring of `capacity` bytes accepts (`capacity / 2 - 8`).
///
/// ```
/// assert_eq!(shmpipe::max_message_for(4096), 2040);
/// let (tx, _rx) = shmpipe::Builder::new().capacity(4096).in_process()?.split()?;
/// assert_eq!(tx.max_message(), shmpipe::max_message_for(4096));
/// # Ok::<(), shmpipe::Error>(())
/// ```
pub fn max_message_for(capacity: u64) -> usize {
    layout::max_message(capacity)
}

/// The ring position just after a `len`-byte message whose record is
/// written at position `pos` (a [`Stats::head`] / [`Stats::tail`] value) of
/// a ring of `capacity` bytes: `pos` plus the record (`8 + len` rounded up
/// to 8) plus, when the record does not fit before the end of the data
/// area, the padding that moves it to offset 0 (DESIGN.md §1, "Records").
/// A consumer that knows where it started (`stats().head` before its first
/// receive) can so name the position of every message it reads, e.g. to
/// join two runs of a forwarder without counting messages.
///
/// ```
/// let (mut tx, mut rx) = shmpipe::Builder::new().capacity(64).in_process()?.split()?;
/// let start = rx.stats().head;
/// tx.send(&[7; 20])?; // a 32-byte record at offset 0
/// rx.recv_with(|_| ())?;
/// assert_eq!(rx.stats().head, shmpipe::position_after(64, start, 20));
/// assert_eq!(shmpipe::position_after(64, 48, 20), 96); // no room before the end: wraps
/// # Ok::<(), shmpipe::Error>(())
/// ```
pub fn position_after(capacity: u64, pos: u64, len: usize) -> u64 {
    let rec = frame::record_len(len as u64);
    let contiguous = capacity.wrapping_sub(pos & capacity.wrapping_sub(1));
    let pad = if contiguous >= rec { 0 } else { contiguous };
    pos.wrapping_add(pad).wrapping_add(rec)
}
