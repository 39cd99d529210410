//! What a ring reports about itself: endpoint states, the peer's status,
//! the counters snapshot (`Stats`, derived as DESIGN.md §2 says), and the
//! informational counters' bump.

use super::counts;
use crate::layout::{self, Header, STATE_ATTACHED, STATE_CLOSED, STATE_NEVER};
use crate::segment::Segment;
use crate::sync::{AtomicU64, Ordering};

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

/// What [`crate::Producer::peer_status`] / [`crate::Consumer::peer_status`] found.
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
/// `ring::counts`). Exact at rest; while the peers run, a walk that meets a
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
