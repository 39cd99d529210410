//! What the producer and consumer handles share: the opaque box around a
//! [`Handle`], looking it up from a C pointer, making one from a name and
//! `shmpipe_options`, and freeing it.

use std::ffi::c_char;

use shmpipe_core::{AnyBuilder, AnyConsumer, AnyPair, AnyProducer, PeerStatus, Stats};

use crate::handle::{ffi, name_arg, out, Handle};
use crate::options::{shmpipe_options, Opts};
use crate::status::{shmpipe_status, Fail};

/// An opaque C handle type (`shmpipe_producer`, `shmpipe_consumer`): one
/// heap box around a [`Handle`] of its state. Implemented by [`opaque!`].
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
    /// The state of a fresh endpoint (no claim or peek open).
    fn fresh(e: Self::End) -> Self::State;
    /// The endpoint, when no claim or peek is open on it.
    fn idle(s: &mut Self::State) -> Result<&mut Self::End, Fail>;
}

/// `impl Opaque for $handle`, a struct `{ h: Handle<$state> }` whose state
/// has an `Idle($end)` variant and an `idle()` method.
macro_rules! opaque {
    ($handle:ident, $state:ident, $end:ty, $what:literal) => {
        impl $crate::endpoint::Opaque for $handle {
            type State = $state;
            type End = $end;
            const WHAT: &'static str = $what;
            fn from_state(s: $state) -> Self {
                $handle {
                    h: $crate::handle::Handle::new(s),
                }
            }
            fn handle(&self) -> &$crate::handle::Handle<$state> {
                &self.h
            }
            fn into_state(self) -> $state {
                self.h.into_state()
            }
            fn fresh(e: $end) -> $state {
                $state::Idle(e)
            }
            fn idle(s: &mut $state) -> Result<&mut $end, $crate::status::Fail> {
                s.idle()
            }
        }
    };
}
pub(crate) use opaque;

/// Whether `make` creates the segment or opens an existing one.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Attach {
    Create,
    Open,
}

/// What the handles' calls need from either endpoint of the library: how
/// to attach one by name, and the stats, limits and peer-state reads.
pub(crate) trait Endpoint: Sized {
    fn attach(b: &AnyBuilder, name: &str, how: Attach) -> shmpipe_core::Result<Self>;
    /// Attach as this end of `pair`.
    fn from_pair(pair: AnyPair) -> shmpipe_core::Result<Self>;
    fn stats(&self) -> Stats;
    fn max_message(&self) -> usize;
    fn capacity(&self) -> u64;
    fn peer_status(&self) -> shmpipe_core::Result<PeerStatus>;
}

macro_rules! endpoint_for {
    ($t:ty, $create:ident, $open:ident, $from_pair:ident) => {
        impl Endpoint for $t {
            fn attach(b: &AnyBuilder, name: &str, how: Attach) -> shmpipe_core::Result<Self> {
                match how {
                    Attach::Create => b.$create(name),
                    Attach::Open => b.$open(name),
                }
            }
            fn from_pair(pair: AnyPair) -> shmpipe_core::Result<Self> {
                pair.$from_pair()
            }
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
endpoint_for!(AnyProducer, create_producer, open_producer, into_producer);
endpoint_for!(AnyConsumer, create_consumer, open_consumer, into_consumer);

/// A new heap handle holding `s`, for C.
pub(crate) fn new_handle<T: Opaque>(s: T::State) -> *mut T {
    Box::into_raw(Box::new(T::from_state(s)))
}

/// A new heap handle for the fresh endpoint `e` (from a pair), for C.
pub(crate) fn new_idle<T: Opaque>(e: T::End) -> *mut T {
    new_handle(T::fresh(e))
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

/// Attach a new endpoint to the segment `name` (`how`: create it or open
/// it, with the builder `*opts` describes) and store its handle in `*out_p`
/// (NULL on failure).
///
/// # Safety
/// `name` is NULL or a NUL-terminated string; `opts` is NULL or points to a
/// `shmpipe_options`; `out_p` is NULL or writable.
pub(crate) unsafe fn make<T: Opaque>(
    name: *const c_char,
    opts: *const shmpipe_options,
    out_p: *mut *mut T,
    how: Attach,
) -> shmpipe_status {
    ffi(|| {
        let out_p = out(out_p, "out")?;
        // SAFETY: non-NULL and writable per the caller's contract.
        unsafe { out_p.write(std::ptr::null_mut()) };
        // SAFETY: per the callers' contracts.
        let name = unsafe { name_arg(name) }?;
        // SAFETY: per the callers' contracts.
        let o = unsafe { Opts::read(opts) }?;
        let end = T::End::attach(&o.builder(), name, how)?;
        // SAFETY: as above.
        unsafe { out_p.write(new_idle(end)) };
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
