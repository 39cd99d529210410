//! `shmpipe_pair`: a new ring whose ends are not attached yet, to share with a
//! child across `fork()` (anonymous) or between threads (in-process).

use shmpipe_core::AnyPair;

use crate::consumer::shmpipe_consumer;
use crate::endpoint::{new_idle, Endpoint, Opaque};
use crate::handle::{ffi, out};
use crate::options::{shmpipe_options, Opts};
use crate::producer::shmpipe_producer;
use crate::status::shmpipe_status;

/// A new ring whose endpoints are not attached yet (opaque). Each process
/// (after `fork()`) or thread turns its copy into one end with
/// `shmpipe_pair_into_producer` or `shmpipe_pair_into_consumer`, which
/// consume it.
pub struct shmpipe_pair {
    pair: AnyPair,
}

/// # Safety
/// `out_pair` is NULL or writable.
unsafe fn make_pair(
    opts: *const shmpipe_options,
    out_pair: *mut *mut shmpipe_pair,
    anonymous: bool,
) -> shmpipe_status {
    ffi(|| {
        let out_pair = out(out_pair, "out")?;
        // SAFETY: non-NULL and writable per the contract.
        unsafe { out_pair.write(std::ptr::null_mut()) };
        // SAFETY: per the callers' contracts.
        let o = unsafe { Opts::read(opts) }?;
        let pair = if anonymous {
            o.builder().anonymous()?
        } else {
            o.builder().in_process()?
        };
        // SAFETY: as above.
        unsafe { out_pair.write(Box::into_raw(Box::new(shmpipe_pair { pair }))) };
        Ok(())
    })
}

/// A ring in an anonymous, sealed memfd with `*opts` (NULL: defaults; the
/// name-related options do not apply), to share with a child: call `fork()`,
/// then `shmpipe_pair_into_producer` in one process and
/// `shmpipe_pair_into_consumer` in the other.
///
/// Errors: `SHMPIPE_INVALID_CAPACITY`, `SHMPIPE_INVALID_OPTION`, `SHMPIPE_IO`.
///
/// # Safety
/// `opts` is NULL or points to a `shmpipe_options`; `out` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn shmpipe_pair_anonymous(
    opts: *const shmpipe_options,
    out: *mut *mut shmpipe_pair,
) -> shmpipe_status {
    // SAFETY: the same contract.
    unsafe { make_pair(opts, out, true) }
}

/// A ring on the heap, for two threads of this process: attach both ends
/// with `shmpipe_pair_split`. Same protocol and code as a shared segment.
///
/// # Safety
/// As `shmpipe_pair_anonymous`.
#[no_mangle]
pub unsafe extern "C" fn shmpipe_pair_in_process(
    opts: *const shmpipe_options,
    out: *mut *mut shmpipe_pair,
) -> shmpipe_status {
    // SAFETY: the same contract.
    unsafe { make_pair(opts, out, false) }
}

/// Take ownership of the pair behind a checked pointer.
///
/// # Safety
/// `pair` is a live pair handle from `make_pair`, not used afterwards.
unsafe fn take(pair: *mut shmpipe_pair) -> AnyPair {
    // SAFETY: allocated by `make_pair` with `Box::into_raw`; freed once (the contract).
    unsafe { Box::from_raw(pair) }.pair
}

/// Attach as the producer of `pair` (in this process, after any `fork()`).
/// Once both pointers are non-NULL the pair is consumed (freed), whatever
/// the status.
///
/// Errors: `SHMPIPE_ROLE_TAKEN`, `SHMPIPE_IO`.
///
/// # Safety
/// `pair` is NULL or a live pair handle (after `fork()`, each process's copy
/// is its own), not used after this call; `out` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn shmpipe_pair_into_producer(
    pair: *mut shmpipe_pair,
    out: *mut *mut shmpipe_producer,
) -> shmpipe_status {
    // SAFETY: the same contract.
    unsafe { into_end(pair, out) }
}

/// Attach as the consumer of `pair`. As `shmpipe_pair_into_producer`.
///
/// # Safety
/// As `shmpipe_pair_into_producer`.
#[no_mangle]
pub unsafe extern "C" fn shmpipe_pair_into_consumer(
    pair: *mut shmpipe_pair,
    out: *mut *mut shmpipe_consumer,
) -> shmpipe_status {
    // SAFETY: the same contract.
    unsafe { into_end(pair, out) }
}

/// `shmpipe_pair_into_*`: attach `pair`'s end of type `T`.
///
/// # Safety
/// As `shmpipe_pair_into_producer`.
unsafe fn into_end<T: Opaque>(pair: *mut shmpipe_pair, out_p: *mut *mut T) -> shmpipe_status {
    ffi(|| {
        let out_p = out(out_p, "out")?;
        let pair = out(pair, "pair")?;
        // SAFETY: non-NULL and writable per the contract.
        unsafe { out_p.write(std::ptr::null_mut()) };
        // SAFETY: per the contract.
        let end = T::End::from_pair(unsafe { take(pair) })?;
        // SAFETY: as above.
        unsafe { out_p.write(new_idle::<T>(end)) };
        Ok(())
    })
}

/// Attach both ends of `pair` in this process (to hand to two threads). Once
/// all three pointers are non-NULL the pair is consumed, whatever the status.
///
/// Errors: `SHMPIPE_ROLE_TAKEN`, `SHMPIPE_IO`.
///
/// # Safety
/// `pair` is NULL or a live pair handle, not used after this call;
/// `producer` and `consumer` are NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn shmpipe_pair_split(
    pair: *mut shmpipe_pair,
    producer: *mut *mut shmpipe_producer,
    consumer: *mut *mut shmpipe_consumer,
) -> shmpipe_status {
    ffi(|| {
        let producer = out(producer, "producer")?;
        let consumer = out(consumer, "consumer")?;
        let pair = out(pair, "pair")?;
        // SAFETY: non-NULL and writable per the contract.
        unsafe {
            producer.write(std::ptr::null_mut());
            consumer.write(std::ptr::null_mut());
        }
        // SAFETY: per the contract.
        let (p, c) = unsafe { take(pair) }.split()?;
        // SAFETY: as above.
        unsafe {
            producer.write(new_idle::<shmpipe_producer>(p));
            consumer.write(new_idle::<shmpipe_consumer>(c));
        }
        Ok(())
    })
}

/// Free a pair that will not be attached (e.g. after `fork()` in a process
/// that takes neither end). NULL is a no-op. Nothing is closed: neither end
/// was attached.
///
/// # Safety
/// `pair` is NULL or a live pair handle, not used after this call.
#[no_mangle]
pub unsafe extern "C" fn shmpipe_pair_free(pair: *mut shmpipe_pair) -> shmpipe_status {
    ffi(|| {
        if !pair.is_null() {
            // SAFETY: per the contract.
            drop(unsafe { take(pair) });
        }
        Ok(())
    })
}
