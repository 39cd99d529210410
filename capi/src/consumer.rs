//! The consumer handle: create/open/free, receiving into a buffer,
//! two-phase peek/release, drain, and the counters.
//!
//! A peeked message is the library's own `Message`, kept with its consumer
//! in a `self_cell` between `shmpipe_peek` and `shmpipe_release` (as the
//! producer keeps a claim): release frees exactly that message and never
//! blocks, and freeing the handle with a message peeked leaves it in the
//! ring, as dropping a Rust `Message` does.

use std::ffi::{c_char, c_void};

use self_cell::{self_cell, MutBorrow};
use shmpipe_core::{EndpointState, GenericConsumer, GenericMessage, PeerStatus, Stats, Variant};

use crate::handle::{bytes_mut, ffi, name_arg, out, Handle, Wait};
use crate::options::{shmpipe_options, Opts, Which};
use crate::status::{shmpipe_status, Fail};

/// The receiving end of a ring (opaque). One thread at a time, as
/// `shmpipe_producer`.
pub struct shmpipe_consumer {
    h: Handle<ConsState>,
}

/// Either variant's consumer.
pub(crate) enum Cons {
    LockFree(shmpipe_core::Consumer),
    Locked(shmpipe_core::locked::Consumer),
}

/// Run `$body` with `$c` bound to the consumer of whichever variant.
macro_rules! each_cons {
    ($cons:expr, $c:ident => $body:expr) => {
        match $cons {
            Cons::LockFree($c) => $body,
            Cons::Locked($c) => $body,
        }
    };
}

type LockFreeMessage<'a> = Option<shmpipe_core::Message<'a>>;
type LockedMessage<'a> = Option<shmpipe_core::locked::Message<'a>>;

self_cell!(
    /// A lock-free consumer with its peeked message.
    struct LockFreePeeked {
        owner: MutBorrow<shmpipe_core::Consumer>,
        #[covariant]
        dependent: LockFreeMessage,
    }
);

self_cell!(
    /// A locked consumer with its peeked message (the lock is not held).
    struct LockedPeeked {
        owner: MutBorrow<shmpipe_core::locked::Consumer>,
        #[covariant]
        dependent: LockedMessage,
    }
);

enum Peeked {
    LockFree(LockFreePeeked),
    Locked(LockedPeeked),
}

// The idle consumer stays inline (no box, no extra indirection on the hot
// path); the handle itself is one heap allocation.
#[allow(clippy::large_enum_variant)]
enum ConsState {
    /// No message peeked.
    Idle(Cons),
    /// A message is peeked and not yet released.
    Peeked(Peeked),
    /// Only between two states inside one call (see `ProdState::Moving`).
    Moving,
}

const PEEKED: &str = "a peeked message is outstanding on this consumer: shmpipe_release it first";
const NOT_PEEKED: &str = "no message is peeked on this consumer (shmpipe_peek first)";

impl ConsState {
    #[inline(always)]
    fn idle(&mut self) -> Result<&mut Cons, Fail> {
        match self {
            ConsState::Idle(c) => Ok(c),
            ConsState::Peeked(_) => Err(Fail::Misuse(PEEKED)),
            ConsState::Moving => Err(Fail::Poisoned),
        }
    }

    fn peek(&mut self, wait: Wait) -> Result<(*const u8, usize), Fail> {
        self.idle()?;
        let ConsState::Idle(cons) = std::mem::replace(self, ConsState::Moving) else {
            return Err(Fail::Poisoned);
        };
        let (next, result) = match cons {
            Cons::LockFree(c) => {
                match LockFreePeeked::try_new_or_recover(MutBorrow::new(c), |c| {
                    peek_in(c.borrow_mut(), wait).map(Some)
                }) {
                    Ok(p) => {
                        let m = p.with_dependent(|_, m| msg_ptr(m));
                        (ConsState::Peeked(Peeked::LockFree(p)), Ok(m))
                    }
                    Err((c, e)) => (
                        ConsState::Idle(Cons::LockFree(c.into_inner())),
                        Err(e.into()),
                    ),
                }
            }
            Cons::Locked(c) => {
                match LockedPeeked::try_new_or_recover(MutBorrow::new(c), |c| {
                    peek_in(c.borrow_mut(), wait).map(Some)
                }) {
                    Ok(p) => {
                        let m = p.with_dependent(|_, m| msg_ptr(m));
                        (ConsState::Peeked(Peeked::Locked(p)), Ok(m))
                    }
                    Err((c, e)) => (ConsState::Idle(Cons::Locked(c.into_inner())), Err(e.into())),
                }
            }
        };
        *self = next;
        result
    }

    fn release(&mut self) -> Result<(), Fail> {
        match self {
            ConsState::Peeked(_) => {}
            ConsState::Idle(_) => return Err(Fail::Misuse(NOT_PEEKED)),
            ConsState::Moving => return Err(Fail::Poisoned),
        }
        let ConsState::Peeked(p) = std::mem::replace(self, ConsState::Moving) else {
            return Err(Fail::Poisoned);
        };
        *self = ConsState::Idle(unpeek(p, true));
        Ok(())
    }
}

/// The consumer back from a peek: the message released or (`release == false`) kept.
fn unpeek(p: Peeked, release: bool) -> Cons {
    match p {
        Peeked::LockFree(mut p) => {
            p.with_dependent_mut(|_, m| finish(m.take(), release));
            Cons::LockFree(p.into_owner().into_inner())
        }
        Peeked::Locked(mut p) => {
            p.with_dependent_mut(|_, m| finish(m.take(), release));
            Cons::Locked(p.into_owner().into_inner())
        }
    }
}

fn finish<V: Variant>(m: Option<GenericMessage<'_, V>>, release: bool) {
    if let (Some(m), true) = (m, release) {
        m.release();
    }
    // Otherwise dropping the message keeps it in the ring.
}

fn peek_in<V: Variant>(
    c: &mut GenericConsumer<V>,
    wait: Wait,
) -> shmpipe_core::Result<GenericMessage<'_, V>> {
    match wait {
        Wait::Never => c.try_peek(),
        Wait::Forever => c.peek(),
        Wait::For(d) => c.peek_timeout(d),
    }
}

fn msg_ptr<V: Variant>(m: &Option<GenericMessage<'_, V>>) -> (*const u8, usize) {
    m.as_ref()
        .map_or((std::ptr::null(), 0), |m| (m.as_ptr(), m.len()))
}

#[inline(always)]
fn recv_in<V: Variant>(
    c: &mut GenericConsumer<V>,
    buf: &mut [u8],
    wait: Wait,
) -> shmpipe_core::Result<usize> {
    match wait {
        Wait::Never => c.try_recv_into(buf),
        Wait::Forever => c.recv_into(buf),
        Wait::For(d) => c.recv_into_timeout(buf, d),
    }
}

impl shmpipe_consumer {
    pub(crate) fn new(c: Cons) -> *mut shmpipe_consumer {
        Box::into_raw(Box::new(shmpipe_consumer {
            h: Handle::new(ConsState::Idle(c)),
        }))
    }
}

/// The handle behind `c`.
///
/// # Safety
/// `c` is NULL or a live consumer handle.
#[inline(always)]
unsafe fn cons<'a>(c: *const shmpipe_consumer) -> Result<&'a Handle<ConsState>, Fail> {
    // A `match`, not `ok_or`: building the `Fail` eagerly would also drop
    // it on the hot success path.
    // SAFETY: NULL or a live handle, per the contract.
    match unsafe { c.as_ref() } {
        Some(h) => Ok(&h.h),
        None => Err(Fail::Null("consumer")),
    }
}

/// # Safety
/// As the public functions that call it.
unsafe fn make_consumer(
    name: *const c_char,
    opts: *const shmpipe_options,
    out_c: *mut *mut shmpipe_consumer,
    create: bool,
) -> shmpipe_status {
    ffi(|| {
        let out_c = out(out_c, "out")?;
        // SAFETY: non-NULL and writable per the caller's contract.
        unsafe { out_c.write(std::ptr::null_mut()) };
        // SAFETY: per the callers' contracts.
        let name = unsafe { name_arg(name) }?;
        // SAFETY: per the callers' contracts.
        let o = unsafe { Opts::read(opts) }?;
        let c = match (o.which, create) {
            (Which::LockFree, true) => Cons::LockFree(o.builder().create_consumer(name)?),
            (Which::LockFree, false) => Cons::LockFree(o.builder().open_consumer(name)?),
            (Which::Locked, true) => Cons::Locked(o.builder().create_consumer(name)?),
            (Which::Locked, false) => Cons::Locked(o.builder().open_consumer(name)?),
        };
        // SAFETY: as above.
        unsafe { out_c.write(shmpipe_consumer::new(c)) };
        Ok(())
    })
}

/// Create the named segment `name` (it must not exist) and attach as its
/// consumer. As `shmpipe_producer_create`.
///
/// # Safety
/// As `shmpipe_producer_create`.
#[no_mangle]
pub unsafe extern "C" fn shmpipe_consumer_create(
    name: *const c_char,
    opts: *const shmpipe_options,
    out: *mut *mut shmpipe_consumer,
) -> shmpipe_status {
    // SAFETY: the same contract.
    unsafe { make_consumer(name, opts, out, true) }
}

/// Open the existing segment `name` as its consumer. As `shmpipe_producer_open`.
///
/// # Safety
/// As `shmpipe_producer_create`.
#[no_mangle]
pub unsafe extern "C" fn shmpipe_consumer_open(
    name: *const c_char,
    opts: *const shmpipe_options,
    out: *mut *mut shmpipe_consumer,
) -> shmpipe_status {
    // SAFETY: the same contract.
    unsafe { make_consumer(name, opts, out, false) }
}

/// Close the consumer side and free the handle (as dropping the Rust
/// `Consumer`): the producer's sends then fail with `SHMPIPE_DISCONNECTED`.
/// A peeked, unreleased message stays in the ring (a consumer that takes
/// over receives it again). NULL is a no-op. The handle is freed whatever
/// the status, except for `SHMPIPE_MISUSE` (called from the handle's own
/// drain callback).
///
/// # Safety
/// `consumer` is NULL or a live consumer handle, not used after this call
/// frees it.
#[no_mangle]
pub unsafe extern "C" fn shmpipe_consumer_free(consumer: *mut shmpipe_consumer) -> shmpipe_status {
    ffi(|| {
        if consumer.is_null() {
            return Ok(());
        }
        // SAFETY: a live handle per the contract.
        let h = unsafe { cons(consumer) }?;
        h.check_not_busy()?;
        // SAFETY: allocated by `shmpipe_consumer::new`, freed once (the
        // contract), and no call is running on it (checked).
        let b = unsafe { Box::from_raw(consumer) };
        let c = match b.h.into_state() {
            ConsState::Idle(c) => c,
            ConsState::Peeked(p) => unpeek(p, false),
            ConsState::Moving => return Ok(()),
        };
        each_cons!(c, c => c.close())?;
        Ok(())
    })
}

/// Receive the next message into `buf` (`cap` bytes) if one is waiting now;
/// `*len` is its length. If it is longer than `cap`: `SHMPIPE_BUFFER_TOO_SMALL`,
/// `*len` is the size needed, and the message stays in the ring.
///
/// Errors: `SHMPIPE_EMPTY`, `SHMPIPE_BUFFER_TOO_SMALL`, `SHMPIPE_DISCONNECTED`
/// or `SHMPIPE_PEER_DIED` (only once everything committed was received),
/// `SHMPIPE_CORRUPTED`, `SHMPIPE_MISUSE` (a message is peeked).
///
/// # Safety
/// `consumer` is NULL or a live handle; `buf` is NULL with `cap` 0, or points
/// to `cap` writable bytes; `len` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn shmpipe_try_recv(
    consumer: *mut shmpipe_consumer,
    buf: *mut c_void,
    cap: usize,
    len: *mut usize,
) -> shmpipe_status {
    // SAFETY: the same contract.
    unsafe { recv(consumer, buf, cap, len, Wait::Never) }
}

/// Receive the next message, waiting per the ring's wait strategy. As
/// `shmpipe_try_recv`, without `SHMPIPE_EMPTY`.
///
/// # Safety
/// As `shmpipe_try_recv`.
#[no_mangle]
pub unsafe extern "C" fn shmpipe_recv(
    consumer: *mut shmpipe_consumer,
    buf: *mut c_void,
    cap: usize,
    len: *mut usize,
) -> shmpipe_status {
    // SAFETY: the same contract.
    unsafe { recv(consumer, buf, cap, len, Wait::Forever) }
}

/// Receive the next message, waiting at most `timeout_ms` milliseconds
/// (`SHMPIPE_TIMEOUT`). As `shmpipe_recv`.
///
/// # Safety
/// As `shmpipe_try_recv`.
#[no_mangle]
pub unsafe extern "C" fn shmpipe_recv_timeout(
    consumer: *mut shmpipe_consumer,
    buf: *mut c_void,
    cap: usize,
    len: *mut usize,
    timeout_ms: u64,
) -> shmpipe_status {
    // SAFETY: the same contract.
    unsafe { recv(consumer, buf, cap, len, Wait::ms(timeout_ms)) }
}

/// # Safety
/// As `shmpipe_try_recv`.
#[inline(always)]
unsafe fn recv(
    consumer: *mut shmpipe_consumer,
    buf: *mut c_void,
    cap: usize,
    len: *mut usize,
    wait: Wait,
) -> shmpipe_status {
    ffi(|| {
        // SAFETY: per the contract.
        let h = unsafe { cons(consumer) }?;
        let len = out(len, "len")?;
        // SAFETY: per the contract.
        let buf = unsafe { bytes_mut(buf.cast(), cap) }?;
        let r = h.with(|s| each_cons!(s.idle()?, c => recv_in(c, buf, wait)).map_err(Fail::from));
        let n = match &r {
            Ok(n) => *n,
            Err(Fail::Lib(shmpipe_core::Error::BufferTooSmall { len, .. })) => *len,
            Err(_) => 0,
        };
        // SAFETY: non-NULL and writable per the contract.
        unsafe { len.write(n) };
        r.map(drop)
    })
}

/// Look at the next message in place (zero-copy) if one is waiting now:
/// `*ptr` and `*len` give its bytes, readable until `shmpipe_release` (which
/// frees its space) or until the handle is freed (which keeps it in the
/// ring). Meanwhile the consumer accepts no other receive, peek or drain
/// (`SHMPIPE_MISUSE`). The bytes live in shared memory: a misbehaving
/// producer could change them, so validate what you parse.
///
/// Errors: as `shmpipe_try_recv` (without `SHMPIPE_BUFFER_TOO_SMALL`).
///
/// # Safety
/// `consumer` is NULL or a live handle; `ptr` and `len` are NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn shmpipe_try_peek(
    consumer: *mut shmpipe_consumer,
    ptr: *mut *const c_void,
    len: *mut usize,
) -> shmpipe_status {
    // SAFETY: the same contract.
    unsafe { peek(consumer, ptr, len, Wait::Never) }
}

/// `shmpipe_try_peek`, waiting for a message per the ring's wait strategy.
///
/// # Safety
/// As `shmpipe_try_peek`.
#[no_mangle]
pub unsafe extern "C" fn shmpipe_peek(
    consumer: *mut shmpipe_consumer,
    ptr: *mut *const c_void,
    len: *mut usize,
) -> shmpipe_status {
    // SAFETY: the same contract.
    unsafe { peek(consumer, ptr, len, Wait::Forever) }
}

/// `shmpipe_peek`, waiting at most `timeout_ms` milliseconds (`SHMPIPE_TIMEOUT`).
///
/// # Safety
/// As `shmpipe_try_peek`.
#[no_mangle]
pub unsafe extern "C" fn shmpipe_peek_timeout(
    consumer: *mut shmpipe_consumer,
    ptr: *mut *const c_void,
    len: *mut usize,
    timeout_ms: u64,
) -> shmpipe_status {
    // SAFETY: the same contract.
    unsafe { peek(consumer, ptr, len, Wait::ms(timeout_ms)) }
}

/// # Safety
/// As `shmpipe_try_peek`.
unsafe fn peek(
    consumer: *mut shmpipe_consumer,
    ptr: *mut *const c_void,
    len: *mut usize,
    wait: Wait,
) -> shmpipe_status {
    ffi(|| {
        // SAFETY: per the contract.
        let h = unsafe { cons(consumer) }?;
        let ptr = out(ptr, "ptr")?;
        let len = out(len, "len")?;
        let (p, n) = h.with(|s| s.peek(wait))?;
        // SAFETY: both non-NULL and writable per the contract.
        unsafe {
            ptr.write(p.cast());
            len.write(n);
        }
        Ok(())
    })
}

/// Free the peeked message's space; the pointer from the peek is invalid from
/// now on. Never blocks.
///
/// Errors: `SHMPIPE_MISUSE` if no message is peeked.
///
/// # Safety
/// `consumer` is NULL or a live handle.
#[no_mangle]
pub unsafe extern "C" fn shmpipe_release(consumer: *mut shmpipe_consumer) -> shmpipe_status {
    ffi(|| {
        // SAFETY: per the contract.
        let h = unsafe { cons(consumer) }?;
        h.with(|s| s.release())
    })
}

/// Called by `shmpipe_drain` for each message: `ctx` as given to it, and the
/// message's bytes, valid only during the call. It must not unwind (no C++
/// exception, no `longjmp`) out of the call; it may call shmpipe functions on
/// other handles, but not on the consumer being drained (`SHMPIPE_MISUSE`).
pub type shmpipe_drain_fn =
    Option<unsafe extern "C" fn(ctx: *mut c_void, msg: *const c_void, len: usize)>;

/// Hand up to `max` waiting messages to `callback`, in order, and free their
/// space once for the whole batch. Does not wait: `*n` (the number handed
/// over) is 0 if none was waiting. In the locked variant the ring's lock is
/// held while the callbacks run.
///
/// Errors: `SHMPIPE_DISCONNECTED` / `SHMPIPE_PEER_DIED` when nothing is left
/// and the producer is gone; `SHMPIPE_CORRUPTED` (the messages before the bad
/// record were still handed over: `*n` counts them); `SHMPIPE_MISUSE` (a
/// message is peeked, or called from its own callback).
///
/// # Safety
/// `consumer` is NULL or a live handle; `callback` is NULL or a function of
/// this type; `n` is NULL or writable; `ctx` is passed through untouched.
#[no_mangle]
pub unsafe extern "C" fn shmpipe_drain(
    consumer: *mut shmpipe_consumer,
    max: usize,
    callback: shmpipe_drain_fn,
    ctx: *mut c_void,
    n: *mut usize,
) -> shmpipe_status {
    ffi(|| {
        // SAFETY: per the contract.
        let h = unsafe { cons(consumer) }?;
        let n = out(n, "n")?;
        let Some(callback) = callback else {
            return Err(Fail::Null("callback"));
        };
        let mut count = 0usize;
        let r = h.with(|s| {
            each_cons!(s.idle()?, c => c.drain(max, |m| {
                count += 1;
                // SAFETY: a C function of the documented type; the message
                // bytes are valid for the call. A re-entrant call on this
                // consumer finds the handle busy.
                unsafe { callback(ctx, m.as_ptr().cast(), m.len()) }
            }))
            .map_err(Fail::from)
        });
        // SAFETY: non-NULL and writable per the contract.
        unsafe { n.write(count) };
        r.map(drop)
    })
}

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

/// A snapshot of a ring's counters. The peers write them; they are
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

/// Write `s` to the checked out-pointer `out`.
pub(crate) fn fill_stats(out: *mut shmpipe_stats, s: &Stats) {
    let (producer_state, producer_state_raw) = endpoint(s.producer);
    let (consumer_state, consumer_state_raw) = endpoint(s.consumer);
    let st = shmpipe_stats {
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
    };
    // SAFETY: the callers checked `out` for NULL; writable per their contract.
    unsafe { out.write(st) };
}

/// A snapshot of the ring's counters, seen from the consumer.
///
/// Errors: `SHMPIPE_MISUSE` while a message is peeked.
///
/// # Safety
/// `consumer` is NULL or a live handle; `stats` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn shmpipe_consumer_stats(
    consumer: *const shmpipe_consumer,
    stats: *mut shmpipe_stats,
) -> shmpipe_status {
    ffi(|| {
        // SAFETY: per the contract.
        let h = unsafe { cons(consumer) }?;
        let stats = out(stats, "stats")?;
        let st = h.with(|s| Ok(each_cons!(s.idle()?, c => c.stats())))?;
        fill_stats(stats, &st);
        Ok(())
    })
}

/// The largest message this ring carries and its capacity in bytes (either
/// out-pointer may be NULL if not wanted).
///
/// Errors: `SHMPIPE_MISUSE` while a message is peeked.
///
/// # Safety
/// `consumer` is NULL or a live handle; `max_message` and `capacity` are
/// NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn shmpipe_consumer_limits(
    consumer: *const shmpipe_consumer,
    max_message: *mut usize,
    capacity: *mut u64,
) -> shmpipe_status {
    ffi(|| {
        // SAFETY: per the contract.
        let h = unsafe { cons(consumer) }?;
        let (m, c) = h.with(|s| Ok(each_cons!(s.idle()?, c => (c.max_message(), c.capacity()))))?;
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

pub(crate) fn peer_code(p: PeerStatus) -> Result<shmpipe_peer_state, Fail> {
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

/// Whether the producer is attached, alive, closed or dead
/// (`SHMPIPE_PEER_STATE_*`), checked now (a syscall).
///
/// Errors: `SHMPIPE_CORRUPTED`, `SHMPIPE_IO` (e.g. a handle inherited across
/// `fork()`), `SHMPIPE_MISUSE` while a message is peeked.
///
/// # Safety
/// `consumer` is NULL or a live handle; `peer` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn shmpipe_consumer_peer_state(
    consumer: *const shmpipe_consumer,
    peer: *mut shmpipe_peer_state,
) -> shmpipe_status {
    ffi(|| {
        // SAFETY: per the contract.
        let h = unsafe { cons(consumer) }?;
        let peer = out(peer, "peer")?;
        let p = h.with(|s| Ok(each_cons!(s.idle()?, c => c.peer_status())?))?;
        let code = peer_code(p)?;
        // SAFETY: non-NULL and writable per the contract.
        unsafe { peer.write(code) };
        Ok(())
    })
}

/// For `shmpipe_waitset_add_consumer`: register the consumer behind `c` in
/// `set` (the set keeps the ring's segment, not the handle).
///
/// # Safety
/// `c` is NULL or a live consumer handle.
pub(crate) unsafe fn add_to_set(
    c: *mut shmpipe_consumer,
    set: &mut shmpipe_core::WaitSet,
) -> Result<shmpipe_core::Token, Fail> {
    // SAFETY: per the contract.
    let h = unsafe { cons(c) }?;
    h.with(|s| Ok(each_cons!(s.idle()?, c => set.add_consumer(c)?)))
}
