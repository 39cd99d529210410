//! What the producer and consumer handles share: the opaque box around a
//! [`Handle`], looking it up from a C pointer, making one from a name and
//! `shmpipe_options`, and freeing it.

use std::ffi::c_char;

use shmpipe_core::{AnyBuilder, AnyConsumer, AnyProducer, PeerStatus, Stats};

use crate::handle::{ffi, name_arg, out, Handle};
use crate::options::{shmpipe_options, Opts};
use crate::status::{shmpipe_status, Fail};

/// An opaque C handle type (`shmpipe_producer`, `shmpipe_consumer`): one
/// heap box around a [`Handle`] of its state.
pub(crate) trait Opaque: Sized {
    /// What the handle holds between calls.
    type State;
    /// The library's endpoint inside.
    type End: Endpoint;
    /// The argument's name in a NULL-pointer error.
    const WHAT: &'static str;
    fn from_state(s: Self::State) -> Self;
    fn handle(&self) -> &Handle<Self::State>;
    fn into_state(self) -> Self::State;
    /// The endpoint, when no claim or peek is open on it.
    fn idle(s: &mut Self::State) -> Result<&mut Self::End, Fail>;
}

/// What the stats, limits and peer-state calls read from either endpoint.
pub(crate) trait Endpoint {
    fn stats(&self) -> Stats;
    fn max_message(&self) -> usize;
    fn capacity(&self) -> u64;
    fn peer_status(&self) -> shmpipe_core::Result<PeerStatus>;
}

macro_rules! endpoint_for {
    ($t:ty) => {
        impl Endpoint for $t {
            fn stats(&self) -> Stats {
                <$t>::stats(self)
            }
            fn max_message(&self) -> usize {
                <$t>::max_message(self)
            }
            fn capacity(&self) -> u64 {
                <$t>::capacity(self)
            }
            fn peer_status(&self) -> shmpipe_core::Result<PeerStatus> {
                <$t>::peer_status(self)
            }
        }
    };
}
endpoint_for!(AnyProducer);
endpoint_for!(AnyConsumer);

/// A new heap handle holding `s`, for C.
pub(crate) fn new_handle<T: Opaque>(s: T::State) -> *mut T {
    Box::into_raw(Box::new(T::from_state(s)))
}

/// The handle behind `p`.
///
/// # Safety
/// `p` is NULL or a live handle of type `T`.
#[inline(always)]
pub(crate) unsafe fn lookup<'a, T: Opaque + 'a>(p: *const T) -> Result<&'a Handle<T::State>, Fail> {
    // A `match`, not `ok_or`: building the `Fail` eagerly would also drop
    // it on the hot success path.
    // SAFETY: NULL or a live handle, per the contract.
    match unsafe { p.as_ref() } {
        Some(h) => Ok(h.handle()),
        None => Err(Fail::Null(T::WHAT)),
    }
}

/// Attach a new endpoint with `attach` (a create or an open of the builder
/// `*opts` describes) and store its handle in `*out_p` (NULL on failure).
///
/// # Safety
/// `name` is NULL or a NUL-terminated string; `opts` is NULL or points to a
/// `shmpipe_options`; `out_p` is NULL or writable.
pub(crate) unsafe fn make<T: Opaque>(
    name: *const c_char,
    opts: *const shmpipe_options,
    out_p: *mut *mut T,
    attach: impl FnOnce(&AnyBuilder, &str) -> shmpipe_core::Result<T::State>,
) -> shmpipe_status {
    ffi(|| {
        let out_p = out(out_p, "out")?;
        // SAFETY: non-NULL and writable per the caller's contract.
        unsafe { out_p.write(std::ptr::null_mut()) };
        // SAFETY: per the callers' contracts.
        let name = unsafe { name_arg(name) }?;
        // SAFETY: per the callers' contracts.
        let o = unsafe { Opts::read(opts) }?;
        let state = attach(&o.builder(), name)?;
        // SAFETY: as above.
        unsafe { out_p.write(new_handle(state)) };
        Ok(())
    })
}

/// Free the handle `p` (NULL: nothing): `check` runs on its state first and
/// may refuse (the handle then stays); a poisoned handle is freed all the
/// same; then `close` ends its endpoint.
///
/// # Safety
/// `p` is NULL or a live handle of type `T`, not used again after this call
/// frees it.
pub(crate) unsafe fn free<T: Opaque>(
    p: *mut T,
    check: impl FnOnce(&mut T::State) -> Result<(), Fail>,
    close: impl FnOnce(T::State) -> Result<(), Fail>,
) -> shmpipe_status {
    ffi(|| {
        if p.is_null() {
            return Ok(());
        }
        // SAFETY: a live handle per the contract.
        let h = unsafe { lookup(p) }?;
        h.check_not_busy()?;
        h.with(check).or_else(|f| match f {
            Fail::Poisoned => Ok(()),
            f => Err(f),
        })?;
        // SAFETY: allocated by `new_handle`, freed once (the contract), and
        // no call is running on it (checked).
        let b = unsafe { Box::from_raw(p) };
        close(b.into_state())
    })
}
