//! The two roles of a segment, and marking a role attached in its header
//! (its lock, `role_lock`, is taken first).

use super::memory::Segment;
use crate::layout::STATE_ATTACHED;
use crate::sync::Ordering;

/// Role of an endpoint; also the byte of the segment its OFD lock covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    Producer = 0,
    Consumer = 1,
}

impl Role {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Role::Producer => "producer",
            Role::Consumer => "consumer",
        }
    }
    pub(crate) fn peer(self) -> Role {
        match self {
            Role::Producer => Role::Consumer,
            Role::Consumer => Role::Producer,
        }
    }
}

/// Bump `role`'s epoch and store ATTACHED in its state word (its lock is
/// held). Returns the new epoch.
pub(super) fn mark_attached(seg: &Segment, role: Role) -> u32 {
    let e = &seg.header().endpoints;
    let (word, epoch) = match role {
        Role::Producer => (&e.producer, &e.producer_epoch),
        Role::Consumer => (&e.consumer, &e.consumer_epoch),
    };
    // Relaxed: only we write our role's epoch while we hold the role; the
    // SeqCst state store below publishes it. A peer may have scribbled it:
    // wrapping, and 16 bits are used.
    let next = epoch.load(Ordering::Relaxed).wrapping_add(1).max(1);
    epoch.store(next, Ordering::Relaxed);
    // SeqCst (a release): pairs with the peer's Acquire load of our state
    // word, and with its SeqCst load in `Endpoint::sleep` (see `Endpoint::attach`).
    word.store(STATE_ATTACHED, Ordering::SeqCst);
    next
}
