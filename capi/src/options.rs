//! `shmpipe_options`: what a new ring looks like and how rings are opened.

use std::time::Duration;

use shmpipe_core::{AnyBuilder, Error, VariantKind, WaitStrategy};

use std::ffi::c_char;

use crate::handle::{ffi, name_arg, out};
use crate::status::{shmpipe_status, Fail};

/// A wait strategy code (`SHMPIPE_WAIT_*`): how an idle side waits.
pub type shmpipe_wait = u32;
/// Busy-poll. Lowest latency; burns a CPU while idle.
pub const SHMPIPE_WAIT_SPIN: shmpipe_wait = 1;
/// Busy-poll with backoff, then `sched_yield`.
pub const SHMPIPE_WAIT_SPIN_YIELD: shmpipe_wait = 2;
/// Spin briefly, then sleep on a futex in the segment (Linux). The default.
pub const SHMPIPE_WAIT_FUTEX: shmpipe_wait = 3;
/// Spin briefly, then sleep on a process-shared POSIX semaphore in the segment.
pub const SHMPIPE_WAIT_SEMAPHORE: shmpipe_wait = 4;

/// A ring design code (`SHMPIPE_LOCK_FREE` or `SHMPIPE_LOCKED`).
pub type shmpipe_variant = u32;
/// The lock-free single-producer/single-consumer ring. The default.
pub const SHMPIPE_LOCK_FREE: shmpipe_variant = 1;
/// The same ring guarded by a process-shared lock (the textbook design, for contrast).
pub const SHMPIPE_LOCKED: shmpipe_variant = 2;

/// Smallest capacity in bytes.
pub const SHMPIPE_MIN_CAPACITY: u64 = 64;
/// Largest capacity in bytes (4 GiB).
pub const SHMPIPE_MAX_CAPACITY: u64 = 4_294_967_296;
/// Default capacity in bytes (1 MiB).
pub const SHMPIPE_DEFAULT_CAPACITY: u64 = 1_048_576;

const _: () = assert!(SHMPIPE_MIN_CAPACITY == shmpipe_core::MIN_CAPACITY);
const _: () = assert!(SHMPIPE_MAX_CAPACITY == shmpipe_core::MAX_CAPACITY);
const _: () = assert!(SHMPIPE_DEFAULT_CAPACITY == shmpipe_core::DEFAULT_CAPACITY);

/// Options for creating or opening a ring. Fill it with
/// `shmpipe_options_default`, then change what you need. Functions that take
/// it also accept NULL, meaning the defaults. When opening an existing
/// segment, capacity and wait strategy come from the segment and only
/// `variant`, `open_timeout_ms` and `allow_shared_permissions` matter.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct shmpipe_options {
    /// Data-area size in bytes: a power of two from `SHMPIPE_MIN_CAPACITY` to
    /// `SHMPIPE_MAX_CAPACITY` (default 1 MiB). The largest message is
    /// `capacity / 2 - 8` bytes.
    pub capacity: u64,
    /// How long opening waits for a segment's creator to finish initialising
    /// it, in milliseconds (default 1000).
    pub open_timeout_ms: u64,
    /// `SHMPIPE_WAIT_*` (default `SHMPIPE_WAIT_FUTEX`), recorded at creation.
    pub wait: shmpipe_wait,
    /// `SHMPIPE_LOCK_FREE` (default) or `SHMPIPE_LOCKED`. Opening a segment of
    /// the other variant fails with `SHMPIPE_WRONG_VARIANT`.
    pub variant: shmpipe_variant,
    /// Permission bits of a new named segment (default 0600).
    pub mode: u32,
    /// Nonzero (default): the creator of a named segment removes its name
    /// when its endpoint is freed. Peers that already opened it keep working.
    pub unlink_on_drop: u32,
    /// Nonzero: accept segments that group or others may access (default 0:
    /// they are refused with `SHMPIPE_UNSAFE_PERMISSIONS`).
    pub allow_shared_permissions: u32,
}

const DEFAULTS: shmpipe_options = shmpipe_options {
    capacity: SHMPIPE_DEFAULT_CAPACITY,
    open_timeout_ms: 1000,
    wait: SHMPIPE_WAIT_FUTEX,
    variant: SHMPIPE_LOCK_FREE,
    mode: 0o600,
    unlink_on_drop: 1,
    allow_shared_permissions: 0,
};

/// Fill `*opts` with the defaults: 1 MiB, `SHMPIPE_WAIT_FUTEX`,
/// `SHMPIPE_LOCK_FREE`, mode 0600, unlink on drop, 1000 ms open timeout,
/// no shared permissions.
///
/// # Safety
/// `opts` is NULL (`SHMPIPE_NULL_POINTER`) or points to writable memory for
/// one `shmpipe_options`.
#[no_mangle]
pub unsafe extern "C" fn shmpipe_options_default(opts: *mut shmpipe_options) -> shmpipe_status {
    ffi(|| {
        let opts = out(opts, "opts")?;
        // SAFETY: non-NULL and writable per the contract; `write` reads
        // nothing of the old contents.
        unsafe { opts.write(DEFAULTS) };
        Ok(())
    })
}

/// Options read from C and checked.
#[derive(Debug, Clone)]
pub(crate) struct Opts {
    kind: VariantKind,
    capacity: u64,
    wait: WaitStrategy,
    mode: u32,
    unlink_on_drop: bool,
    allow_shared_permissions: bool,
    open_timeout: Duration,
}

impl Opts {
    /// Read and check `*opts` (NULL: the defaults).
    ///
    /// # Safety
    /// `opts` is NULL or points to a readable `shmpipe_options`.
    pub(crate) unsafe fn read(opts: *const shmpipe_options) -> Result<Opts, Fail> {
        // SAFETY: NULL or a readable, initialised struct per the contract;
        // every field is a plain integer, so any bit pattern is valid.
        let o = unsafe { opts.as_ref() }.copied().unwrap_or(DEFAULTS);
        let kind = match o.variant {
            SHMPIPE_LOCK_FREE => VariantKind::LockFree,
            SHMPIPE_LOCKED => VariantKind::Locked,
            v => {
                return Err(Fail::Lib(Error::InvalidOption {
                    reason: format!(
                        "unknown variant code {v}; use SHMPIPE_LOCK_FREE ({SHMPIPE_LOCK_FREE}) or SHMPIPE_LOCKED ({SHMPIPE_LOCKED})"
                    ),
                }))
            }
        };
        let wait = match o.wait {
            SHMPIPE_WAIT_SPIN => WaitStrategy::Spin,
            SHMPIPE_WAIT_SPIN_YIELD => WaitStrategy::SpinYield,
            SHMPIPE_WAIT_FUTEX => WaitStrategy::Futex,
            SHMPIPE_WAIT_SEMAPHORE => WaitStrategy::Semaphore,
            w => {
                return Err(Fail::Lib(Error::InvalidOption {
                    reason: format!(
                        "unknown wait strategy code {w}; use SHMPIPE_WAIT_SPIN (1), SHMPIPE_WAIT_SPIN_YIELD (2), SHMPIPE_WAIT_FUTEX (3) or SHMPIPE_WAIT_SEMAPHORE (4)"
                    ),
                }))
            }
        };
        Ok(Opts {
            kind,
            capacity: o.capacity,
            wait,
            mode: o.mode,
            unlink_on_drop: o.unlink_on_drop != 0,
            allow_shared_permissions: o.allow_shared_permissions != 0,
            open_timeout: Duration::from_millis(o.open_timeout_ms),
        })
    }

    /// The library builder with these options. It opens only segments of
    /// the variant asked for (the other is `SHMPIPE_WRONG_VARIANT`).
    pub(crate) fn builder(&self) -> AnyBuilder {
        AnyBuilder::new(self.kind)
            .detect(false)
            .capacity(self.capacity)
            .wait(self.wait)
            .mode(self.mode)
            .unlink_on_drop(self.unlink_on_drop)
            .allow_shared_permissions(self.allow_shared_permissions)
            .open_timeout(self.open_timeout)
    }
}

/// Remove the named segment `name` from `/dev/shm`. Processes that have it
/// open keep working; the memory is freed when the last one closes it.
///
/// Errors: `SHMPIPE_INVALID_NAME`, `SHMPIPE_NOT_FOUND`, `SHMPIPE_IO`.
///
/// # Safety
/// `name` is NULL or a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn shmpipe_remove(name: *const c_char) -> shmpipe_status {
    ffi(|| {
        // SAFETY: per the contract.
        let name = unsafe { name_arg(name) }?;
        shmpipe_core::remove(name)?;
        Ok(())
    })
}

/// Check that `name` is a valid segment name (`/` followed by 1 to 255
/// characters, none of them `/`, not `.` or `..`): `SHMPIPE_OK` or
/// `SHMPIPE_INVALID_NAME`.
///
/// # Safety
/// `name` is NULL or a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn shmpipe_validate_name(name: *const c_char) -> shmpipe_status {
    ffi(|| {
        // SAFETY: per the contract.
        let name = unsafe { name_arg(name) }?;
        shmpipe_core::validate_name(name)?;
        Ok(())
    })
}

/// The largest message a ring of `capacity` bytes accepts (`capacity / 2 - 8`;
/// 0 for a capacity below 16).
#[no_mangle]
pub extern "C" fn shmpipe_max_message_for(capacity: u64) -> usize {
    if capacity < 16 {
        0
    } else {
        shmpipe_core::max_message_for(capacity)
    }
}
