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
use shmpipe_core::{AnyConsumer, AnyMessage};

use crate::endpoint::{free, lookup, make, opaque, Attach};
use crate::handle::{bytes_mut, ffi, out, Handle, Wait};
use crate::options::shmpipe_options;
use crate::stats::{limits_of, peer_state_of, shmpipe_peer_state, shmpipe_stats, stats_of};
use crate::status::{shmpipe_status, Fail};

/// The receiving end of a ring (opaque). One thread at a time, as
/// `shmpipe_producer`.
pub struct shmpipe_consumer {
    h: Handle<ConsState>,
}

opaque!(shmpipe_consumer, ConsState, AnyConsumer, "consumer");

type PeekedMessage<'a> = Option<AnyMessage<'a>>;

self_cell!(
    /// A consumer with its peeked message (a locked ring's lock is not held).
    pub(crate) struct Peeked {
        owner: MutBorrow<AnyConsumer>,
        #[covariant]
        dependent: PeekedMessage,
    }
);

// The idle consumer stays inline (no box, no extra indirection on the hot
// path); the handle itself is one heap allocation.
#[allow(clippy::large_enum_variant)]
pub(crate) enum ConsState {
    /// No message peeked.
    Idle(AnyConsumer),
    /// A message is peeked and not yet released.
    Peeked(Peeked),
    /// Only between two states inside one call (see `ProdState::Moving`).
    Moving,
}

const PEEKED: &str = "a peeked message is outstanding on this consumer: shmpipe_release it first";
const NOT_PEEKED: &str = "no message is peeked on this consumer (shmpipe_peek first)";

impl ConsState {
    #[inline(always)]
    fn idle(&mut self) -> Result<&mut AnyConsumer, Fail> {
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
        let peeked = Peeked::try_new_or_recover(MutBorrow::new(cons), |c| {
            let c = c.borrow_mut();
            match wait {
                Wait::Never => c.try_peek(),
                Wait::Forever => c.peek(),
                Wait::For(d) => c.peek_timeout(d),
            }
            .map(Some)
        });
        let (next, result) = match peeked {
            Ok(p) => {
                let m = p.with_dependent(|_, m| {
                    m.as_ref()
                        .map_or((std::ptr::null(), 0), |m| (m.as_ptr(), m.len()))
                });
                (ConsState::Peeked(p), Ok(m))
            }
            Err((c, e)) => (ConsState::Idle(c.into_inner()), Err(e.into())),
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
fn unpeek(mut p: Peeked, release: bool) -> AnyConsumer {
    p.with_dependent_mut(|_, m| {
        if let (Some(m), true) = (m.take(), release) {
            m.release();
        }
        // Otherwise dropping the message keeps it in the ring.
    });
    p.into_owner().into_inner()
}

#[inline(always)]
fn recv_in(c: &mut AnyConsumer, buf: &mut [u8], wait: Wait) -> shmpipe_core::Result<usize> {
    match wait {
        Wait::Never => c.try_recv_into(buf),
        Wait::Forever => c.recv_into(buf),
        Wait::For(d) => c.recv_into_timeout(buf, d),
    }
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
    unsafe { make(name, opts, out, Attach::Create) }
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
    unsafe { make(name, opts, out, Attach::Open) }
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
    // SAFETY: the same contract.
    unsafe {
        free(
            consumer,
            |_| Ok(()),
            |s| match s {
                ConsState::Idle(c) => Ok(c.close()?),
                ConsState::Peeked(p) => Ok(unpeek(p, false).close()?),
                ConsState::Moving => Ok(()),
            },
        )
    }
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
        let h = unsafe { lookup(consumer) }?;
        let len = out(len, "len")?;
        // SAFETY: per the contract.
        let buf = unsafe { bytes_mut(buf.cast(), cap) }?;
        let r = h.with(|s| recv_in(s.idle()?, buf, wait).map_err(Fail::from));
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
        let h = unsafe { lookup(consumer) }?;
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
        let h = unsafe { lookup(consumer) }?;
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
        let h = unsafe { lookup(consumer) }?;
        let n = out(n, "n")?;
        let Some(callback) = callback else {
            return Err(Fail::Null("callback"));
        };
        let mut count = 0usize;
        let r = h.with(|s| {
            s.idle()?
                .drain(max, |m| {
                    count += 1;
                    // SAFETY: a C function of the documented type; the message
                    // bytes are valid for the call. A re-entrant call on this
                    // consumer finds the handle busy.
                    unsafe { callback(ctx, m.as_ptr().cast(), m.len()) }
                })
                .map_err(Fail::from)
        });
        // SAFETY: non-NULL and writable per the contract.
        unsafe { n.write(count) };
        r.map(drop)
    })
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
    // SAFETY: the same contract.
    unsafe { stats_of(consumer, stats) }
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
    // SAFETY: the same contract.
    unsafe { limits_of(consumer, max_message, capacity) }
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
    // SAFETY: the same contract.
    unsafe { peer_state_of(consumer, peer) }
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
    let h = unsafe { lookup(c) }?;
    h.with(|s| Ok(s.idle()?.add_to(set)?))
}
