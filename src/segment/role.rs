//! The two roles of a segment, and marking a role attached in its header
//! (its lock, `role_lock`, is taken first).

use super::memory::Segment;
use crate::layout::{Header, WaitWord, STATE_ATTACHED};
use crate::sync::{AtomicU32, AtomicU64, Ordering};

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

    /// The header words that belong to this role: the one place that maps
    /// a role to its fields (its peer's are `self.peer().words(h)`).
    #[inline]
    pub(crate) fn words(self, h: &Header) -> RoleWords<'_> {
        let e = &h.endpoints;
        match self {
            Role::Producer => RoleWords {
                state: &e.producer,
                epoch: &e.producer_epoch,
                pid: &e.producer_pid,
                light: &e.producer_light,
                wait: &h.wait_producer,
                wake_syscalls: &h.prod.wake_syscalls,
            },
            Role::Consumer => RoleWords {
                state: &e.consumer,
                epoch: &e.consumer_epoch,
                pid: &e.consumer_pid,
                light: &e.consumer_light,
                wait: &h.wait_consumer,
                wake_syscalls: &h.cons.wake_syscalls,
            },
        }
    }
}

/// A role's words in the header.
pub(crate) struct RoleWords<'h> {
    /// Its state: NEVER, ATTACHED or CLOSED.
    pub state: &'h AtomicU32,
    /// Its attachment count (names it in the locked ring's lock word).
    pub epoch: &'h AtomicU32,
    /// The pid of its last attachment (a hint for a `WaitSet`'s pidfd).
    pub pid: &'h AtomicU32,
    /// Whether it publishes with the light barrier.
    pub light: &'h AtomicU32,
    /// The wait word it sleeps on.
    pub wait: &'h WaitWord,
    /// Wake-up syscalls it made (counted by the waker, on its own line).
    pub wake_syscalls: &'h AtomicU64,
}

/// Bump `role`'s epoch and store ATTACHED in its state word (its lock is
/// held). Returns the new epoch.
pub(super) fn mark_attached(seg: &Segment, role: Role) -> u32 {
    let w = role.words(seg.header());
    let (word, epoch) = (w.state, w.epoch);
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
