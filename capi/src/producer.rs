//! The producer handle: create/open/free, sending, and zero-copy claims.
//!
//! A Rust `Claim` borrows its `Producer` mutably, but a C claim lives
//! between two calls. The handle keeps the claim and its producer together
//! in a `self_cell` (a checked self-referential box, no `unsafe` here), so
//! the library's own `Claim` is what is committed or dropped (= aborted),
//! and in the locked variant it holds the ring's lock until then, as in Rust.

use std::ffi::{c_char, c_void};
use std::thread::{self, ThreadId};

use self_cell::{self_cell, MutBorrow};
use shmpipe_core::{AnyClaim, AnyProducer, VariantKind};

use crate::endpoint::{free, lookup, make, opaque, Attach};
use crate::handle::{bytes, ffi, out, Handle, Wait};
use crate::options::shmpipe_options;
use crate::stats::{limits_of, peer_state_of, shmpipe_peer_state, shmpipe_stats, stats_of};
use crate::status::{shmpipe_status, Fail};

/// The sending end of a ring (opaque). One thread at a time may use it: it
/// may move between threads, but two threads calling with the same handle at
/// once is undefined behaviour.
pub struct shmpipe_producer {
    h: Handle<ProdState>,
}

opaque!(shmpipe_producer, ProdState, AnyProducer, "producer");

type OpenClaim<'a> = Option<AnyClaim<'a>>;

self_cell!(
    /// A producer with its open claim (which, in a locked ring, holds the
    /// ring's lock).
    pub(crate) struct Claimed {
        owner: MutBorrow<AnyProducer>,
        #[covariant]
        dependent: OpenClaim,
    }
);

// The idle producer stays inline (no box, no extra indirection on the hot
// path), as the consumer's does; the handle itself is one heap allocation.
#[allow(clippy::large_enum_variant)]
pub(crate) enum ProdState {
    /// No claim open.
    Idle(AnyProducer),
    /// A claim of `len` bytes is open, made on thread `thread`.
    Claimed {
        claim: Claimed,
        len: usize,
        kind: VariantKind,
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
    fn idle(&mut self) -> Result<&mut AnyProducer, Fail> {
        match self {
            ProdState::Idle(p) => Ok(p),
            ProdState::Claimed { .. } => Err(Fail::Misuse(CLAIM_OPEN)),
            ProdState::Moving => Err(Fail::Poisoned),
        }
    }

    /// Refuse to end a locked ring's claim on another thread than its own.
    fn check_claim_thread(&self) -> Result<(), Fail> {
        match self {
            ProdState::Claimed {
                kind: VariantKind::Locked,
                thread,
                ..
            } if *thread != thread::current().id() => Err(Fail::Misuse(OTHER_THREAD)),
            _ => Ok(()),
        }
    }

    fn begin_claim(&mut self, len: usize, wait: Wait) -> Result<*mut u8, Fail> {
        self.idle()?;
        let ProdState::Idle(prod) = std::mem::replace(self, ProdState::Moving) else {
            return Err(Fail::Poisoned);
        };
        let kind = prod.kind();
        let claimed = Claimed::try_new_or_recover(MutBorrow::new(prod), |p| {
            let p = p.borrow_mut();
            match wait {
                Wait::Never => p.try_claim(len),
                Wait::Forever => p.claim(len),
                Wait::For(d) => p.claim_timeout(len, d),
            }
            .map(Some)
        });
        let (next, result) = match claimed {
            Ok(mut claim) => {
                let ptr = claim.with_dependent_mut(|_, c| {
                    c.as_mut().map_or(std::ptr::null_mut(), |c| c.as_mut_ptr())
                });
                let state = ProdState::Claimed {
                    claim,
                    len,
                    kind,
                    thread: thread::current().id(),
                };
                (state, Ok(ptr))
            }
            Err((p, e)) => (ProdState::Idle(p.into_inner()), Err(e.into())),
        };
        *self = next;
        result
    }

    /// Commit the first `n` bytes of the open claim (`Some(n)`) or abort it (`None`).
    fn finish_claim(&mut self, commit: Option<usize>) -> Result<(), Fail> {
        match self {
            ProdState::Idle(_) => return Err(Fail::Misuse(NO_CLAIM)),
            ProdState::Moving => return Err(Fail::Poisoned),
            ProdState::Claimed { len, .. } => {
                if let Some(n) = commit {
                    if n > *len {
                        return Err(Fail::Invalid(format!(
                            "cannot commit {n} bytes: the open claim has {len}; commit at most {len}"
                        )));
                    }
                }
            }
        }
        self.check_claim_thread()?;
        let ProdState::Claimed { mut claim, .. } = std::mem::replace(self, ProdState::Moving)
        else {
            return Err(Fail::Poisoned);
        };
        claim.with_dependent_mut(|_, c| {
            if let (Some(c), Some(n)) = (c.take(), commit) {
                c.commit_len(n);
            }
            // `None`: dropping the claim aborts it.
        });
        *self = ProdState::Idle(claim.into_owner().into_inner());
        Ok(())
    }
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
    unsafe { make(name, opts, out, Attach::Create) }
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
    unsafe { make(name, opts, out, Attach::Open) }
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
    // SAFETY: the same contract.
    unsafe {
        free(
            producer,
            |s| s.check_claim_thread(),
            |s| match s {
                ProdState::Idle(p) => Ok(p.close()?),
                // `into_owner` drops the claim first (an abort; the locked
                // ring's lock is released), then the producer closes.
                ProdState::Claimed { claim, .. } => Ok(claim.into_owner().into_inner().close()?),
                ProdState::Moving => Ok(()),
            },
        )
    }
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
        let h = unsafe { lookup(producer) }?;
        // SAFETY: per the contract.
        let msg = unsafe { bytes(buf.cast(), len) }?;
        h.with(|s| {
            let p = s.idle()?;
            match wait {
                Wait::Never => p.try_send(msg),
                Wait::Forever => p.send(msg),
                Wait::For(d) => p.send_timeout(msg, d),
            }
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
        let h = unsafe { lookup(producer) }?;
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
        let h = unsafe { lookup(producer) }?;
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
        let h = unsafe { lookup(producer) }?;
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
    // SAFETY: the same contract.
    unsafe { stats_of(producer, stats) }
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
    // SAFETY: the same contract.
    unsafe { limits_of(producer, max_message, capacity) }
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
    // SAFETY: the same contract.
    unsafe { peer_state_of(producer, peer) }
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
    let h = unsafe { lookup(p) }?;
    h.with(|s| Ok(s.idle()?.add_to(set, room_for)?))
}
