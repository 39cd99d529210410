//! What every entry point shares: the panic barrier, argument checks, and
//! the opaque handle with its in-use and poisoned flags.

use std::cell::{Cell, UnsafeCell};
use std::ffi::{c_char, CStr};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::Duration;

use shmpipe_core::Error;

use crate::status::{report_panic, shmpipe_status, Fail};

/// Run an entry point's body: no panic crosses the boundary, every failure
/// is recorded for `shmpipe_last_error_message`.
#[inline(always)]
pub(crate) fn ffi(body: impl FnOnce() -> Result<(), Fail>) -> shmpipe_status {
    // The status is made inside the closure, so that only a small value
    // crosses `catch_unwind` on the hot path.
    let run = || match body() {
        Ok(()) => shmpipe_status::SHMPIPE_OK,
        Err(fail) => fail.report(),
    };
    match catch_unwind(AssertUnwindSafe(run)) {
        Ok(status) => status,
        Err(payload) => report_panic(&*payload),
    }
}

/// How long a call may wait.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Wait {
    /// Not at all (`try_*`).
    Never,
    /// Until it can complete (or the peer is gone).
    Forever,
    /// At most this long (`*_timeout`).
    For(Duration),
}

impl Wait {
    pub(crate) fn ms(timeout_ms: u64) -> Self {
        Wait::For(Duration::from_millis(timeout_ms))
    }
}

/// Check an out-parameter.
#[inline(always)]
pub(crate) fn out<T>(p: *mut T, arg: &'static str) -> Result<*mut T, Fail> {
    if p.is_null() {
        Err(Fail::Null(arg))
    } else {
        Ok(p)
    }
}

/// A segment name from C.
///
/// # Safety
/// `name` is NULL or points to a NUL-terminated string that stays valid and
/// unchanged for the call.
pub(crate) unsafe fn name_arg<'a>(name: *const c_char) -> Result<&'a str, Fail> {
    if name.is_null() {
        return Err(Fail::Null("name"));
    }
    // SAFETY: non-NULL and NUL-terminated per this function's contract.
    let c = unsafe { CStr::from_ptr(name) };
    c.to_str().map_err(|_| {
        Fail::Lib(Error::InvalidName {
            name: c.to_string_lossy().into_owned(),
            reason: "the name is not valid UTF-8",
        })
    })
}

/// The `len` bytes at `buf` (NULL is allowed when `len` is 0).
///
/// # Safety
/// `buf` is NULL or points to `len` readable bytes that stay valid and are
/// not written by this thread for the call.
#[inline(always)]
pub(crate) unsafe fn bytes<'a>(buf: *const u8, len: usize) -> Result<&'a [u8], Fail> {
    if len == 0 {
        return Ok(&[]);
    }
    if buf.is_null() {
        return Err(Fail::Null("buf"));
    }
    if len > isize::MAX as usize {
        return Err(Fail::Invalid(format!(
            "len {len} is larger than any buffer can be"
        )));
    }
    // SAFETY: non-NULL, u8 needs no alignment, `len` readable bytes per the
    // contract, and len <= isize::MAX (checked).
    Ok(unsafe { std::slice::from_raw_parts(buf, len) })
}

/// The `cap` writable bytes at `buf` (NULL is allowed when `cap` is 0).
///
/// # Safety
/// `buf` is NULL or points to `cap` writable bytes that nothing else reads
/// or writes during the call.
#[inline(always)]
pub(crate) unsafe fn bytes_mut<'a>(buf: *mut u8, cap: usize) -> Result<&'a mut [u8], Fail> {
    if cap == 0 {
        return Ok(&mut []);
    }
    if buf.is_null() {
        return Err(Fail::Null("buf"));
    }
    if cap > isize::MAX as usize {
        return Err(Fail::Invalid(format!(
            "cap {cap} is larger than any buffer can be"
        )));
    }
    // SAFETY: non-NULL, u8 needs no alignment, `cap` bytes exclusively ours
    // for the call per the contract, cap <= isize::MAX (checked). The bytes
    // are only written through this slice (the library copies a message in).
    Ok(unsafe { std::slice::from_raw_parts_mut(buf, cap) })
}

/// The state behind an opaque C handle, with the two flags that turn misuse
/// into a status.
///
/// `busy` is set for the length of a call: a call that finds it set is a
/// re-entrant call from a drain callback (`SHMPIPE_MISUSE`), so no second
/// `&mut S` ever exists. Handles are not `Sync`: using one from two threads
/// at once is undefined, as for the Rust handles, and is documented so.
/// `poisoned` is set when a call panicked part-way through changing `S`.
pub(crate) struct Handle<S> {
    busy: Cell<bool>,
    poisoned: Cell<bool>,
    state: UnsafeCell<S>,
}

/// Clears `busy` when a call ends, and poisons the handle if it ends in a panic.
struct InCall<'a, S>(&'a Handle<S>);

impl<S> Drop for InCall<'_, S> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0.poisoned.set(true);
        }
        self.0.busy.set(false);
    }
}

impl<S> Handle<S> {
    pub(crate) fn new(state: S) -> Self {
        Handle {
            busy: Cell::new(false),
            poisoned: Cell::new(false),
            state: UnsafeCell::new(state),
        }
    }

    /// Run `f` on the state, unless the handle is already in a call or poisoned.
    #[inline(always)]
    pub(crate) fn with<R>(&self, f: impl FnOnce(&mut S) -> Result<R, Fail>) -> Result<R, Fail> {
        if self.busy.get() {
            return Err(reentrant());
        }
        if self.poisoned.get() {
            return Err(Fail::Poisoned);
        }
        self.busy.set(true);
        let _call = InCall(self);
        // SAFETY: `busy` was clear and is now set until `_call` drops, so no
        // other `&mut S` exists on this thread (the only way back in is a C
        // callback, which finds `busy` set), and the handle is used by one
        // thread at a time (its documented contract, as `Send` but not `Sync`).
        let state = unsafe { &mut *self.state.get() };
        f(state)
    }

    /// Take the state out to free the handle, unless it is in a call.
    pub(crate) fn into_state(self) -> S {
        self.state.into_inner()
    }

    /// Whether a call is running on this handle (the free functions refuse then).
    pub(crate) fn check_not_busy(&self) -> Result<(), Fail> {
        if self.busy.get() {
            Err(reentrant())
        } else {
            Ok(())
        }
    }
}

fn reentrant() -> Fail {
    Fail::Misuse(
        "this handle is already in a call: a shmpipe function was called on a consumer from \
         inside its own drain callback (or the handle is used by two threads at once, which \
         is undefined)",
    )
}
