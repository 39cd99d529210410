//! Wait sets: one thread waits on many rings (`futex_waitv(2)`, Linux 5.16
//! or later), or an event loop polls one file descriptor for all of them.

use std::os::fd::AsRawFd;
use std::os::raw::c_int;
use std::time::Duration;

use shmpipe_core::{Events, Token, WaitSet};

use crate::consumer::shmpipe_consumer;
use crate::handle::{ffi, out, Handle};
use crate::producer::shmpipe_producer;
use crate::status::{shmpipe_status, Fail};

/// A set of rings one thread waits on (opaque). One thread at a time, as the
/// other handles. It keeps each registered ring's shared memory, not the
/// handle: a registered handle may be freed (remove its token too).
pub struct shmpipe_waitset {
    h: Handle<SetState>,
}

struct SetState {
    set: WaitSet,
    events: Events,
}

/// One ready registration, as `shmpipe_waitset_wait` reports it.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct shmpipe_event {
    /// The token `shmpipe_waitset_add_*` returned.
    pub token: u64,
    /// 1 if the peer closed or died (the next call on the handle reports
    /// it; a consumer is reported ready while messages remain, then this);
    /// 0 if the ring is ready (data for a consumer, room for a producer).
    pub peer_gone: u32,
}

/// # Safety
/// `ws` is NULL or a live wait-set handle.
unsafe fn set<'a>(ws: *const shmpipe_waitset) -> Result<&'a Handle<SetState>, Fail> {
    // SAFETY: NULL or a live handle, per the contract.
    match unsafe { ws.as_ref() } {
        Some(h) => Ok(&h.h),
        None => Err(Fail::Null("waitset")),
    }
}

/// Make an empty wait set in `*out`.
///
/// Errors: `SHMPIPE_IO` on a kernel without `futex_waitv(2)` (Linux < 5.16;
/// the message says so) or if its eventfd cannot be made.
///
/// # Safety
/// `out` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn shmpipe_waitset_new(out_ws: *mut *mut shmpipe_waitset) -> shmpipe_status {
    ffi(|| {
        let out_ws = out(out_ws, "out")?;
        let set = WaitSet::new()?;
        let b = Box::new(shmpipe_waitset {
            h: Handle::new(SetState {
                set,
                events: Events::new(),
            }),
        });
        // SAFETY: non-NULL and writable per the contract.
        unsafe { out_ws.write(Box::into_raw(b)) };
        Ok(())
    })
}

/// Free the wait set (its background waiters stop). NULL is a no-op. The
/// registered rings are not affected.
///
/// # Safety
/// `ws` is NULL or a live handle, not used after this call.
#[no_mangle]
pub unsafe extern "C" fn shmpipe_waitset_free(ws: *mut shmpipe_waitset) -> shmpipe_status {
    ffi(|| {
        if ws.is_null() {
            return Ok(());
        }
        // SAFETY: a live handle per the contract.
        unsafe { set(ws) }?.check_not_busy()?;
        // SAFETY: allocated by `shmpipe_waitset_new`, freed once.
        drop(unsafe { Box::from_raw(ws) });
        Ok(())
    })
}

/// Watch `consumer`: ready when a message is waiting (or its producer is
/// gone). The token goes to `*token`.
///
/// Errors: `SHMPIPE_INVALID_OPTION` for a ring with the semaphore strategy
/// (use futex, spin or spin-yield); `SHMPIPE_MISUSE` while a message is
/// peeked on it.
///
/// # Safety
/// `ws` and `consumer` are NULL or live handles; `token` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn shmpipe_waitset_add_consumer(
    ws: *mut shmpipe_waitset,
    consumer: *mut shmpipe_consumer,
    token: *mut u64,
) -> shmpipe_status {
    ffi(|| {
        // SAFETY: per the contract.
        let h = unsafe { set(ws) }?;
        let token = out(token, "token")?;
        // SAFETY: per the contract.
        let t = h.with(|s| unsafe { crate::consumer::add_to_set(consumer, &mut s.set) })?;
        // SAFETY: non-NULL and writable per the contract.
        unsafe { token.write(t.0 as u64) };
        Ok(())
    })
}

/// Watch `producer`: ready when a message of `room_for` bytes fits (or its
/// consumer is gone). The token goes to `*token`.
///
/// Errors: `SHMPIPE_INVALID_OPTION` for a semaphore ring;
/// `SHMPIPE_TOO_LARGE` if `room_for` is above the ring's largest message;
/// `SHMPIPE_MISUSE` while a claim is open on it.
///
/// # Safety
/// `ws` and `producer` are NULL or live handles; `token` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn shmpipe_waitset_add_producer(
    ws: *mut shmpipe_waitset,
    producer: *const shmpipe_producer,
    room_for: usize,
    token: *mut u64,
) -> shmpipe_status {
    ffi(|| {
        // SAFETY: per the contract.
        let h = unsafe { set(ws) }?;
        let token = out(token, "token")?;
        // SAFETY: per the contract.
        let t =
            h.with(|s| unsafe { crate::producer::add_to_set(producer, &mut s.set, room_for) })?;
        // SAFETY: non-NULL and writable per the contract.
        unsafe { token.write(t.0 as u64) };
        Ok(())
    })
}

/// Stop watching `token`. `*removed` (optional, may be NULL) is 1 if it was
/// registered, 0 if not (an unknown token is not an error).
///
/// # Safety
/// `ws` is NULL or a live handle; `removed` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn shmpipe_waitset_remove(
    ws: *mut shmpipe_waitset,
    token: u64,
    removed: *mut u32,
) -> shmpipe_status {
    ffi(|| {
        // SAFETY: per the contract.
        let h = unsafe { set(ws) }?;
        let gone = match usize::try_from(token) {
            Ok(t) => h.with(|s| Ok(s.set.remove(Token(t))))?,
            Err(_) => false,
        };
        if !removed.is_null() {
            // SAFETY: non-NULL and writable per the contract.
            unsafe { removed.write(gone as u32) };
        }
        Ok(())
    })
}

/// Wait until at least one registered ring is ready, or `timeout_ms`
/// passes (negative: no limit; 0: just look). Writes up to `cap` events to
/// `events` and their number to `*n` (0 on a timeout: not an error).
/// Level-triggered: a ready ring is reported by every wait until it is
/// drained (filled), so events beyond `cap` are reported by the next call.
///
/// Errors: `SHMPIPE_NULL_POINTER` if `events` is NULL with `cap > 0`.
///
/// # Safety
/// `ws` is NULL or a live handle; `events` is NULL or has room for `cap`
/// events; `n` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn shmpipe_waitset_wait(
    ws: *mut shmpipe_waitset,
    events: *mut shmpipe_event,
    cap: usize,
    timeout_ms: i64,
    n: *mut usize,
) -> shmpipe_status {
    ffi(|| {
        // SAFETY: per the contract.
        let h = unsafe { set(ws) }?;
        let n = out(n, "n")?;
        if cap > 0 {
            out(events, "events")?;
        }
        let timeout = u64::try_from(timeout_ms).ok().map(Duration::from_millis);
        let k = h.with(|s| {
            s.set.wait(&mut s.events, timeout)?;
            let mut k = 0;
            for (i, ev) in s.events.iter().take(cap).enumerate() {
                let e = shmpipe_event {
                    token: ev.token.0 as u64,
                    peer_gone: ev.peer_gone as u32,
                };
                // SAFETY: `i < cap`, and `events` has room for `cap` per the contract.
                unsafe { events.add(i).write(e) };
                k = i + 1;
            }
            Ok(k)
        })?;
        // SAFETY: non-NULL and writable per the contract.
        unsafe { n.write(k) };
        Ok(())
    })
}

/// The set's file descriptor for epoll/poll/select loops in `*fd`: it
/// becomes readable when a registered ring becomes ready (a background
/// waiter per 127 rings sleeps in `futex_waitv`; nothing runs while idle).
/// After it polls readable, call `shmpipe_waitset_wait` with timeout 0 to
/// collect the events (that re-arms it). The descriptor belongs to the set:
/// do not close it; it is valid until `shmpipe_waitset_free`.
///
/// Errors: `SHMPIPE_IO` if a background waiter cannot be started.
///
/// # Safety
/// `ws` is NULL or a live handle; `fd` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn shmpipe_waitset_fd(
    ws: *mut shmpipe_waitset,
    fd: *mut c_int,
) -> shmpipe_status {
    ffi(|| {
        // SAFETY: per the contract.
        let h = unsafe { set(ws) }?;
        let fd = out(fd, "fd")?;
        let raw = h.with(|s| Ok(s.set.as_fd().as_raw_fd()))?;
        // SAFETY: non-NULL and writable per the contract.
        unsafe { fd.write(raw) };
        Ok(())
    })
}
