//! The counters and peer states both handles report: `shmpipe_stats`
//! (`shmpipe_producer_stats`, `shmpipe_consumer_stats`) and
//! `shmpipe_peer_state` (`shmpipe_*_peer_state`).

use shmpipe_core::{EndpointState, PeerStatus, Stats};

use crate::endpoint::{lookup, Endpoint, Opaque};
use crate::handle::{ffi, out};
use crate::status::{shmpipe_status, Fail};

/// Endpoint states in `shmpipe_stats`.
pub type shmpipe_endpoint_state = u32;
/// No process has attached to this role yet.
pub const SHMPIPE_ENDPOINT_NEVER: shmpipe_endpoint_state = 0;
/// A process is attached (alive or dead).
pub const SHMPIPE_ENDPOINT_ATTACHED: shmpipe_endpoint_state = 1;
/// The endpoint closed its side in order.
pub const SHMPIPE_ENDPOINT_CLOSED: shmpipe_endpoint_state = 2;
/// The state word holds a value no endpoint writes (see `producer_state_raw`).
pub const SHMPIPE_ENDPOINT_INVALID: shmpipe_endpoint_state = 3;

/// A snapshot of a ring's counters: the library's `Stats` for C, the same
/// counters under the same names, with the endpoint states as
/// `SHMPIPE_ENDPOINT_*` codes. The peers write them; they are
/// informational only.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct shmpipe_stats {
    /// Size of the data area in bytes.
    pub capacity: u64,
    /// Bytes of committed, unread records (framing included).
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
    /// Wake-up syscalls made by the producer.
    pub producer_wake_syscalls: u64,
    /// Wake-up syscalls made by the consumer.
    pub consumer_wake_syscalls: u64,
    /// Times the locked variant recovered its lock from a dead holder.
    pub lock_repairs: u64,
    /// `SHMPIPE_ENDPOINT_*` of the producer.
    pub producer_state: shmpipe_endpoint_state,
    /// `SHMPIPE_ENDPOINT_*` of the consumer.
    pub consumer_state: shmpipe_endpoint_state,
    /// The producer's raw state word when `producer_state` is INVALID, else 0.
    pub producer_state_raw: u32,
    /// The consumer's raw state word when `consumer_state` is INVALID, else 0.
    pub consumer_state_raw: u32,
}

fn endpoint(s: EndpointState) -> (shmpipe_endpoint_state, u32) {
    match s {
        EndpointState::Never => (SHMPIPE_ENDPOINT_NEVER, 0),
        EndpointState::Attached => (SHMPIPE_ENDPOINT_ATTACHED, 0),
        EndpointState::Closed => (SHMPIPE_ENDPOINT_CLOSED, 0),
        EndpointState::Invalid(w) => (SHMPIPE_ENDPOINT_INVALID, w),
        // A state this version of the C API does not know yet.
        _ => (SHMPIPE_ENDPOINT_INVALID, 0),
    }
}

impl From<&Stats> for shmpipe_stats {
    /// The library's counters, as they are; the states as codes (`head` and
    /// `tail` are not part of the C struct).
    fn from(s: &Stats) -> Self {
        let (producer_state, producer_state_raw) = endpoint(s.producer);
        let (consumer_state, consumer_state_raw) = endpoint(s.consumer);
        shmpipe_stats {
            capacity: s.capacity,
            used_bytes: s.used_bytes,
            messages_sent: s.messages_sent,
            bytes_sent: s.bytes_sent,
            messages_received: s.messages_received,
            bytes_received: s.bytes_received,
            full_waits: s.full_waits,
            empty_waits: s.empty_waits,
            producer_wake_syscalls: s.producer_wake_syscalls,
            consumer_wake_syscalls: s.consumer_wake_syscalls,
            lock_repairs: s.lock_repairs,
            producer_state,
            consumer_state,
            producer_state_raw,
            consumer_state_raw,
        }
    }
}

/// What `shmpipe_*_peer_state` found (`SHMPIPE_PEER_STATE_*`).
pub type shmpipe_peer_state = u32;
/// No process has attached to the peer's role yet.
pub const SHMPIPE_PEER_STATE_NOT_ATTACHED: shmpipe_peer_state = 0;
/// The peer is attached and its process is alive.
pub const SHMPIPE_PEER_STATE_ALIVE: shmpipe_peer_state = 1;
/// The peer closed its side in order.
pub const SHMPIPE_PEER_STATE_CLOSED: shmpipe_peer_state = 2;
/// The peer's process died without closing (a new one may take over).
pub const SHMPIPE_PEER_STATE_DIED: shmpipe_peer_state = 3;

fn peer_code(p: PeerStatus) -> Result<shmpipe_peer_state, Fail> {
    match p {
        PeerStatus::NotAttached => Ok(SHMPIPE_PEER_STATE_NOT_ATTACHED),
        PeerStatus::Alive => Ok(SHMPIPE_PEER_STATE_ALIVE),
        PeerStatus::Closed => Ok(SHMPIPE_PEER_STATE_CLOSED),
        PeerStatus::Died => Ok(SHMPIPE_PEER_STATE_DIED),
        other => Err(Fail::Invalid(format!(
            "peer status {other:?} is unknown to this version of the C API"
        ))),
    }
}

/// `shmpipe_*_stats` of either handle.
///
/// # Safety
/// `p` is NULL or a live handle; `stats` is NULL or writable.
pub(crate) unsafe fn stats_of<T: Opaque>(p: *const T, stats: *mut shmpipe_stats) -> shmpipe_status {
    ffi(|| {
        // SAFETY: per the contract.
        let h = unsafe { lookup(p) }?;
        let stats = out(stats, "stats")?;
        let st = h.with(|s| Ok(T::idle(s)?.stats()))?;
        // SAFETY: non-NULL (checked) and writable per the contract.
        unsafe { stats.write(shmpipe_stats::from(&st)) };
        Ok(())
    })
}

/// `shmpipe_*_limits` of either handle.
///
/// # Safety
/// `p` is NULL or a live handle; `max_message` and `capacity` are NULL or
/// writable.
pub(crate) unsafe fn limits_of<T: Opaque>(
    p: *const T,
    max_message: *mut usize,
    capacity: *mut u64,
) -> shmpipe_status {
    ffi(|| {
        // SAFETY: per the contract.
        let h = unsafe { lookup(p) }?;
        let (m, c) = h.with(|s| T::idle(s).map(|e| (e.max_message(), e.capacity())))?;
        // SAFETY: NULL or writable per the contract.
        unsafe {
            if let Some(x) = max_message.as_mut() {
                *x = m;
            }
            if let Some(x) = capacity.as_mut() {
                *x = c;
            }
        }
        Ok(())
    })
}

/// `shmpipe_*_peer_state` of either handle.
///
/// # Safety
/// `p` is NULL or a live handle; `peer` is NULL or writable.
pub(crate) unsafe fn peer_state_of<T: Opaque>(
    p: *const T,
    peer: *mut shmpipe_peer_state,
) -> shmpipe_status {
    ffi(|| {
        // SAFETY: per the contract.
        let h = unsafe { lookup(p) }?;
        let peer = out(peer, "peer")?;
        let p = h.with(|s| Ok(T::idle(s)?.peer_status()?))?;
        let code = peer_code(p)?;
        // SAFETY: non-NULL and writable per the contract.
        unsafe { peer.write(code) };
        Ok(())
    })
}
