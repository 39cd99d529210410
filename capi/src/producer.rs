//! The producer handle: create/open/free, sending, and zero-copy claims.
//!
//! A Rust `Claim` borrows its `Producer` mutably, but a C claim lives
//! between two calls. The handle keeps the claim and its producer together
//! in a `self_cell` (a checked self-referential box, no `unsafe` here), so
//! the library's own `Claim` is what is committed or dropped (= aborted),
//! and in the locked variant it holds the ring's lock until then, as in Rust.

use std::ffi::{c_char, c_void};
use std::ops::DerefMut;
use std::thread::{self, ThreadId};

use self_cell::{self_cell, MutBorrow};
use shmpipe_core::{GenericClaim, GenericProducer, Variant};

use crate::consumer::{fill_stats, peer_code, shmpipe_peer_state, shmpipe_stats};
use crate::handle::{bytes, ffi, name_arg, out, Handle, Wait};
use crate::options::{shmpipe_options, Opts, Which};
use crate::status::{shmpipe_status, Fail};

/// The sending end of a ring (opaque). One thread at a time may use it: it
/// may move between threads, but two threads calling with the same handle at
/// once is undefined behaviour.
pub struct shmpipe_producer {
    h: Handle<ProdState>,
}

/// Either variant's producer.
pub(crate) enum Prod {
    LockFree(shmpipe_core::Producer),
    Locked(shmpipe_core::locked::Producer),
}

/// Run `$body` with `$p` bound to the producer of whichever variant.
macro_rules! each_prod {
    ($prod:expr, $p:ident => $body:expr) => {
        match $prod {
            Prod::LockFree($p) => $body,
            Prod::Locked($p) => $body,
        }
    };
}

type LockFreeClaim<'a> = Option<shmpipe_core::Claim<'a>>;
type LockedClaim<'a> = Option<shmpipe_core::locked::Claim<'a>>;

self_cell!(
    /// A lock-free producer with its open claim.
    struct LockFreeClaimed {
        owner: MutBorrow<shmpipe_core::Producer>,
        #[covariant]
        dependent: LockFreeClaim,
    }
);

self_cell!(
    /// A locked producer with its open claim (which holds the ring's lock).
    struct LockedClaimed {
        owner: MutBorrow<shmpipe_core::locked::Producer>,
        #[covariant]
        dependent: LockedClaim,
    }
);

enum Claimed {
    LockFree(LockFreeClaimed),
    Locked(LockedClaimed),
}

enum ProdState {
    /// No claim open.
    Idle(Prod),
    /// A claim of `len` bytes is open, made on thread `thread`.
    Claimed {
        claim: Claimed,
        len: usize,
        thread: ThreadId,
    },
    /// Only between two states inside one call; a call that panicked there
    /// poisoned the handle, so no call sees it.
    Moving,
}

const CLAIM_OPEN: &str =
    "a claim is open on this producer: shmpipe_commit or shmpipe_abort it first";
const NO_CLAIM: &str = "no claim is open on this producer (claim first)";
const OTHER_THREAD: &str = "this claim of a locked ring holds the ring's lock and must be committed or aborted on the thread that made it (like the Rust Claim, it is not Send)";

impl ProdState {
    #[inline(always)]
    fn idle(&mut self) -> Result<&mut Prod, Fail> {
        match self {
            ProdState::Idle(p) => Ok(p),
            ProdState::Claimed { .. } => Err(Fail::Misuse(CLAIM_OPEN)),
            ProdState::Moving => Err(Fail::Poisoned),
        }
    }

    fn begin_claim(&mut self, len: usize, wait: Wait) -> Result<*mut u8, Fail> {
        self.idle()?;
        let ProdState::Idle(prod) = std::mem::replace(self, ProdState::Moving) else {
            return Err(Fail::Poisoned);
        };
        let (next, result) = match prod {
            Prod::LockFree(p) => {
                match LockFreeClaimed::try_new_or_recover(MutBorrow::new(p), |p| {
                    claim_in(p.borrow_mut(), len, wait).map(Some)
                }) {
                    Ok(mut c) => {
                        let ptr = c.with_dependent_mut(|_, claim| claim_ptr(claim));
                        (Claimed::LockFree(c).into_state(len), Ok(ptr))
                    }
                    Err((p, e)) => (
                        ProdState::Idle(Prod::LockFree(p.into_inner())),
                        Err(e.into()),
                    ),
                }
            }
            Prod::Locked(p) => {
                match LockedClaimed::try_new_or_recover(MutBorrow::new(p), |p| {
                    claim_in(p.borrow_mut(), len, wait).map(Some)
                }) {
                    Ok(mut c) => {
                        let ptr = c.with_dependent_mut(|_, claim| claim_ptr(claim));
                        (Claimed::Locked(c).into_state(len), Ok(ptr))
                    }
                    Err((p, e)) => (ProdState::Idle(Prod::Locked(p.into_inner())), Err(e.into())),
                }
            }
        };
        *self = next;
        result
    }

    /// Commit the first `n` bytes of the open claim (`Some(n)`) or abort it (`None`).
    fn finish_claim(&mut self, commit: Option<usize>) -> Result<(), Fail> {
        match self {
            ProdState::Idle(_) => return Err(Fail::Misuse(NO_CLAIM)),
            ProdState::Moving => return Err(Fail::Poisoned),
            ProdState::Claimed { claim, len, thread } => {
                if let Some(n) = commit {
                    if n > *len {
                        return Err(Fail::Invalid(format!(
                            "cannot commit {n} bytes: the open claim has {len}; commit at most {len}"
                        )));
                    }
                }
                if matches!(claim, Claimed::Locked(_)) && *thread != thread::current().id() {
                    return Err(Fail::Misuse(OTHER_THREAD));
                }
            }
        }
        let ProdState::Claimed { claim, .. } = std::mem::replace(self, ProdState::Moving) else {
            return Err(Fail::Poisoned);
        };
        let prod = match claim {
            Claimed::LockFree(mut c) => {
                c.with_dependent_mut(|_, claim| finish(claim.take(), commit));
                Prod::LockFree(c.into_owner().into_inner())
            }
            Claimed::Locked(mut c) => {
                c.with_dependent_mut(|_, claim| finish(claim.take(), commit));
                Prod::Locked(c.into_owner().into_inner())
            }
        };
        *self = ProdState::Idle(prod);
        Ok(())
    }
}

impl Claimed {
    fn into_state(self, len: usize) -> ProdState {
        ProdState::Claimed {
            claim: self,
            len,
            thread: thread::current().id(),
        }
    }
}

fn claim_in<V: Variant>(
    p: &mut GenericProducer<V>,
    len: usize,
    wait: Wait,
) -> shmpipe_core::Result<GenericClaim<'_, V>> {
    match wait {
        Wait::Never => p.try_claim(len),
        Wait::Forever => p.claim(len),
        Wait::For(d) => p.claim_timeout(len, d),
    }
}

fn claim_ptr<C: DerefMut<Target = [u8]>>(claim: &mut Option<C>) -> *mut u8 {
    claim
        .as_mut()
        .map_or(std::ptr::null_mut(), |c| c.as_mut_ptr())
}

fn finish<V: Variant>(claim: Option<GenericClaim<'_, V>>, commit: Option<usize>) {
    if let (Some(claim), Some(n)) = (claim, commit) {
        claim.commit_len(n);
    }
    // `None`: dropping the claim aborts it.
}

impl shmpipe_producer {
    pub(crate) fn new(p: Prod) -> *mut shmpipe_producer {
        Box::into_raw(Box::new(shmpipe_producer {
            h: Handle::new(ProdState::Idle(p)),
        }))
    }
}

/// The handle behind `p`.
///
/// # Safety
/// `p` is NULL or a live producer handle.
#[inline(always)]
unsafe fn prod<'a>(p: *const shmpipe_producer) -> Result<&'a Handle<ProdState>, Fail> {
    // A `match`, not `ok_or`: building the `Fail` eagerly would also drop
    // it on the hot success path.
    // SAFETY: NULL or a live handle, per the contract.
    match unsafe { p.as_ref() } {
        Some(h) => Ok(&h.h),
        None => Err(Fail::Null("producer")),
    }
}

/// Attach a new producer, per `make`, and store it in `*out`.
///
/// # Safety
/// As the public functions that call it.
unsafe fn make_producer(
    name: *const c_char,
    opts: *const shmpipe_options,
    out_p: *mut *mut shmpipe_producer,
    create: bool,
) -> shmpipe_status {
    ffi(|| {
        let out_p = out(out_p, "out")?;
        // SAFETY: non-NULL and writable per the caller's contract.
        unsafe { out_p.write(std::ptr::null_mut()) };
        // SAFETY: per the callers' contracts.
        let name = unsafe { name_arg(name) }?;
        // SAFETY: per the callers' contracts.
        let o = unsafe { Opts::read(opts) }?;
        let p = match (o.which, create) {
            (Which::LockFree, true) => Prod::LockFree(o.builder().create_producer(name)?),
            (Which::LockFree, false) => Prod::LockFree(o.builder().open_producer(name)?),
            (Which::Locked, true) => Prod::Locked(o.builder().create_producer(name)?),
            (Which::Locked, false) => Prod::Locked(o.builder().open_producer(name)?),
        };
        // SAFETY: as above.
        unsafe { out_p.write(shmpipe_producer::new(p)) };
        Ok(())
    })
}

/// Create the named segment `name` (`/` followed by 1 to 255 characters; it
/// must not exist) with `*opts` (NULL: defaults) and attach as its
/// producer. On success `*out` is the new handle; on failure it is NULL.
///
/// Errors: `SHMPIPE_INVALID_NAME`, `SHMPIPE_INVALID_CAPACITY`,
/// `SHMPIPE_INVALID_OPTION`, `SHMPIPE_ALREADY_EXISTS` (errno `EEXIST`), `SHMPIPE_IO`.
///
/// # Safety
/// `name` is NULL or a NUL-terminated string; `opts` is NULL or points to a
/// `shmpipe_options`; `out` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn shmpipe_producer_create(
    name: *const c_char,
    opts: *const shmpipe_options,
    out: *mut *mut shmpipe_producer,
) -> shmpipe_status {
    // SAFETY: the same contract.
    unsafe { make_producer(name, opts, out, true) }
}

/// Open the existing segment `name` as its producer. Capacity and wait
/// strategy come from the segment; `opts` (NULL: defaults) gives the variant,
/// the open timeout and whether shared permissions are accepted.
///
/// Errors: `SHMPIPE_NOT_FOUND`, `SHMPIPE_ROLE_TAKEN`, `SHMPIPE_WRONG_VARIANT`,
/// `SHMPIPE_NOT_SHMPIPE`, `SHMPIPE_VERSION_MISMATCH`, `SHMPIPE_SIZE_MISMATCH`,
/// `SHMPIPE_NOT_INITIALIZED`, `SHMPIPE_NOT_REGULAR_FILE`, `SHMPIPE_NOT_OWNER`,
/// `SHMPIPE_UNSAFE_PERMISSIONS`, `SHMPIPE_CORRUPTED`, `SHMPIPE_INVALID_NAME`,
/// `SHMPIPE_IO`.
///
/// # Safety
/// As `shmpipe_producer_create`.
#[no_mangle]
pub unsafe extern "C" fn shmpipe_producer_open(
    name: *const c_char,
    opts: *const shmpipe_options,
    out: *mut *mut shmpipe_producer,
) -> shmpipe_status {
    // SAFETY: the same contract.
    unsafe { make_producer(name, opts, out, false) }
}

/// Close the producer side and free the handle (as dropping the Rust
/// `Producer`): the consumer receives everything committed, then
/// `SHMPIPE_DISCONNECTED`. An open claim is aborted first. NULL is a no-op.
/// The handle is freed whatever the status, except for `SHMPIPE_MISUSE`: a
/// locked ring's open claim can only be aborted on the thread that made it.
///
/// # Safety
/// `producer` is NULL or a live producer handle, not used again after this
/// call frees it (a handle inherited across `fork()` may be freed in the
/// child: that does not close the parent's side).
#[no_mangle]
pub unsafe extern "C" fn shmpipe_producer_free(producer: *mut shmpipe_producer) -> shmpipe_status {
    ffi(|| {
        if producer.is_null() {
            return Ok(());
        }
        // SAFETY: a live handle per the contract.
        let h = unsafe { prod(producer) }?;
        h.check_not_busy()?;
        h.with(|s| match s {
            ProdState::Claimed {
                claim: Claimed::Locked(_),
                thread,
                ..
            } if *thread != thread::current().id() => Err(Fail::Misuse(OTHER_THREAD)),
            _ => Ok(()),
        })
        .or_else(|f| match f {
            // A poisoned handle is still freed.
            Fail::Poisoned => Ok(()),
            f => Err(f),
        })?;
        // SAFETY: allocated by `shmpipe_producer::new`, freed once (the
        // contract), and no call is running on it (checked).
        let b = unsafe { Box::from_raw(producer) };
        match b.h.into_state() {
            ProdState::Idle(p) => each_prod!(p, p => p.close())?,
            ProdState::Claimed { claim, .. } => {
                // `into_owner` drops the claim first (an abort; the locked
                // ring's lock is released), then the producer closes.
                let p = match claim {
                    Claimed::LockFree(c) => Prod::LockFree(c.into_owner().into_inner()),
                    Claimed::Locked(c) => Prod::Locked(c.into_owner().into_inner()),
                };
                each_prod!(p, p => p.close())?
            }
            ProdState::Moving => {}
        }
        Ok(())
    })
}

/// Send `len` bytes at `buf` as one message if there is room now.
///
/// Errors: `SHMPIPE_FULL`, `SHMPIPE_TOO_LARGE`, `SHMPIPE_DISCONNECTED`,
/// `SHMPIPE_PEER_DIED`, `SHMPIPE_CORRUPTED`, `SHMPIPE_MISUSE` (a claim is open).
///
/// # Safety
/// `producer` is NULL or a live handle; `buf` is NULL with `len` 0, or points
/// to `len` readable bytes.
#[no_mangle]
pub unsafe extern "C" fn shmpipe_try_send(
    producer: *mut shmpipe_producer,
    buf: *const c_void,
    len: usize,
) -> shmpipe_status {
    // SAFETY: the same contract.
    unsafe { send(producer, buf, len, Wait::Never) }
}

/// Send one message, waiting for room per the ring's wait strategy.
///
/// Errors: as `shmpipe_try_send`, without `SHMPIPE_FULL`.
///
/// # Safety
/// As `shmpipe_try_send`.
#[no_mangle]
pub unsafe extern "C" fn shmpipe_send(
    producer: *mut shmpipe_producer,
    buf: *const c_void,
    len: usize,
) -> shmpipe_status {
    // SAFETY: the same contract.
    unsafe { send(producer, buf, len, Wait::Forever) }
}

/// Send one message, waiting at most `timeout_ms` milliseconds for room.
///
/// Errors: as `shmpipe_send`, plus `SHMPIPE_TIMEOUT`.
///
/// # Safety
/// As `shmpipe_try_send`.
#[no_mangle]
pub unsafe extern "C" fn shmpipe_send_timeout(
    producer: *mut shmpipe_producer,
    buf: *const c_void,
    len: usize,
    timeout_ms: u64,
) -> shmpipe_status {
    // SAFETY: the same contract.
    unsafe { send(producer, buf, len, Wait::ms(timeout_ms)) }
}

/// # Safety
/// As `shmpipe_try_send`.
#[inline(always)]
unsafe fn send(
    producer: *mut shmpipe_producer,
    buf: *const c_void,
    len: usize,
    wait: Wait,
) -> shmpipe_status {
    ffi(|| {
        // SAFETY: per the contract.
        let h = unsafe { prod(producer) }?;
        // SAFETY: per the contract.
        let msg = unsafe { bytes(buf.cast(), len) }?;
        h.with(|s| {
            each_prod!(s.idle()?, p => match wait {
                Wait::Never => p.try_send(msg),
                Wait::Forever => p.send(msg),
                Wait::For(d) => p.send_timeout(msg, d),
            })
            .map_err(Fail::from)
        })
    })
}

/// Reserve `len` bytes in the ring to write a message in place (zero-copy),
/// waiting for room per the wait strategy. `*ptr` is where to write; then
/// `shmpipe_commit` publishes it or `shmpipe_abort` discards it. Until then
/// the producer accepts no other send or claim (`SHMPIPE_MISUSE`). In the
/// locked variant the claim holds the ring's lock until commit or abort,
/// which must happen on the same thread.
///
/// Errors: as `shmpipe_send`; `SHMPIPE_MISUSE` if a claim is already open.
///
/// # Safety
/// `producer` is NULL or a live handle; `ptr` is NULL or writable. The
/// memory at `*ptr` may be written for `len` bytes until the claim ends.
#[no_mangle]
pub unsafe extern "C" fn shmpipe_claim(
    producer: *mut shmpipe_producer,
    len: usize,
    ptr: *mut *mut c_void,
) -> shmpipe_status {
    // SAFETY: the same contract.
    unsafe { claim(producer, len, ptr, Wait::Forever) }
}

/// `shmpipe_claim` if there is room now, else `SHMPIPE_FULL`.
///
/// # Safety
/// As `shmpipe_claim`.
#[no_mangle]
pub unsafe extern "C" fn shmpipe_try_claim(
    producer: *mut shmpipe_producer,
    len: usize,
    ptr: *mut *mut c_void,
) -> shmpipe_status {
    // SAFETY: the same contract.
    unsafe { claim(producer, len, ptr, Wait::Never) }
}

/// `shmpipe_claim`, waiting at most `timeout_ms` milliseconds (`SHMPIPE_TIMEOUT`).
///
/// # Safety
/// As `shmpipe_claim`.
#[no_mangle]
pub unsafe extern "C" fn shmpipe_claim_timeout(
    producer: *mut shmpipe_producer,
    len: usize,
    timeout_ms: u64,
    ptr: *mut *mut c_void,
) -> shmpipe_status {
    // SAFETY: the same contract.
    unsafe { claim(producer, len, ptr, Wait::ms(timeout_ms)) }
}

/// # Safety
/// As `shmpipe_claim`.
unsafe fn claim(
    producer: *mut shmpipe_producer,
    len: usize,
    ptr: *mut *mut c_void,
    wait: Wait,
) -> shmpipe_status {
    ffi(|| {
        // SAFETY: per the contract.
        let h = unsafe { prod(producer) }?;
        let ptr = out(ptr, "ptr")?;
        let p = h.with(|s| s.begin_claim(len, wait))?;
        // SAFETY: non-NULL and writable per the contract.
        unsafe { ptr.write(p.cast()) };
        Ok(())
    })
}

/// Publish the first `len` bytes of the open claim as one message (`len` may
/// be less than claimed; more is `SHMPIPE_INVALID_ARGUMENT`, and the claim
/// stays open). The claimed memory must not be touched afterwards.
///
/// Errors: `SHMPIPE_MISUSE` (no claim open, or a locked ring's claim on
/// another thread), `SHMPIPE_INVALID_ARGUMENT`.
///
/// # Safety
/// `producer` is NULL or a live handle.
#[no_mangle]
pub unsafe extern "C" fn shmpipe_commit(
    producer: *mut shmpipe_producer,
    len: usize,
) -> shmpipe_status {
    ffi(|| {
        // SAFETY: per the contract.
        let h = unsafe { prod(producer) }?;
        h.with(|s| s.finish_claim(Some(len)))
    })
}

/// Discard the open claim: nothing is sent, the space is free again.
///
/// Errors: `SHMPIPE_MISUSE` (no claim open, or a locked ring's claim on
/// another thread).
///
/// # Safety
/// `producer` is NULL or a live handle.
#[no_mangle]
pub unsafe extern "C" fn shmpipe_abort(producer: *mut shmpipe_producer) -> shmpipe_status {
    ffi(|| {
        // SAFETY: per the contract.
        let h = unsafe { prod(producer) }?;
        h.with(|s| s.finish_claim(None))
    })
}

/// A snapshot of the ring's counters, seen from the producer.
///
/// Errors: `SHMPIPE_MISUSE` while a claim is open.
///
/// # Safety
/// `producer` is NULL or a live handle; `stats` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn shmpipe_producer_stats(
    producer: *const shmpipe_producer,
    stats: *mut shmpipe_stats,
) -> shmpipe_status {
    ffi(|| {
        // SAFETY: per the contract.
        let h = unsafe { prod(producer) }?;
        let stats = out(stats, "stats")?;
        let st = h.with(|s| Ok(each_prod!(s.idle()?, p => p.stats())))?;
        fill_stats(stats, &st);
        Ok(())
    })
}

/// The largest message this ring accepts (`capacity / 2 - 8` bytes), and its
/// capacity in bytes (either out-pointer may be NULL if not wanted).
///
/// Errors: `SHMPIPE_MISUSE` while a claim is open.
///
/// # Safety
/// `producer` is NULL or a live handle; `max_message` and `capacity` are NULL
/// or writable.
#[no_mangle]
pub unsafe extern "C" fn shmpipe_producer_limits(
    producer: *const shmpipe_producer,
    max_message: *mut usize,
    capacity: *mut u64,
) -> shmpipe_status {
    ffi(|| {
        // SAFETY: per the contract.
        let h = unsafe { prod(producer) }?;
        let (m, c) = h.with(|s| Ok(each_prod!(s.idle()?, p => (p.max_message(), p.capacity()))))?;
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

/// Whether the consumer is attached, alive, closed or dead
/// (`SHMPIPE_PEER_STATE_*`), checked now (a syscall).
///
/// Errors: `SHMPIPE_CORRUPTED`, `SHMPIPE_IO` (e.g. a handle inherited across
/// `fork()`), `SHMPIPE_MISUSE` while a claim is open.
///
/// # Safety
/// `producer` is NULL or a live handle; `peer` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn shmpipe_producer_peer_state(
    producer: *const shmpipe_producer,
    peer: *mut shmpipe_peer_state,
) -> shmpipe_status {
    ffi(|| {
        // SAFETY: per the contract.
        let h = unsafe { prod(producer) }?;
        let peer = out(peer, "peer")?;
        let p = h.with(|s| Ok(each_prod!(s.idle()?, p => p.peer_status())?))?;
        let code = peer_code(p)?;
        // SAFETY: non-NULL and writable per the contract.
        unsafe { peer.write(code) };
        Ok(())
    })
}

/// For `shmpipe_waitset_add_producer`: register the producer behind `p` in
/// `set`, ready when a message of `room_for` bytes fits.
///
/// # Safety
/// `p` is NULL or a live producer handle.
pub(crate) unsafe fn add_to_set(
    p: *const shmpipe_producer,
    set: &mut shmpipe_core::WaitSet,
    room_for: usize,
) -> Result<shmpipe_core::Token, Fail> {
    // SAFETY: per the contract.
    let h = unsafe { prod(p) }?;
    h.with(|s| Ok(each_prod!(s.idle()?, p => set.add_producer_for(p, room_for)?)))
}
