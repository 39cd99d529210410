//! Under loom and Miri there is no `shm_open`/`mmap`/`memfd`/`fcntl`: only
//! heap segments (`Builder::in_process`) exist; the other makers check
//! their arguments as the real ones do, then report this.

use super::memory::{check_capacity, validate_name, Options, Segment};
use super::role::{mark_attached, Role};
use crate::error::{Error, Result};

fn unsupported() -> Error {
    Error::io(
        "opening a shared segment",
        std::io::Error::new(
            std::io::ErrorKind::Unsupported,
            "named and anonymous segments are unavailable under loom and Miri; use in_process()",
        ),
    )
}

pub(crate) fn create(name: &str, _: u32, opts: &Options) -> Result<Option<Segment>> {
    validate_name(name)?;
    check_capacity(opts.capacity)?;
    Err(unsupported())
}

pub(crate) fn open(name: &str, _: u32, _: &Options) -> Result<Segment> {
    validate_name(name)?;
    Err(unsupported())
}

pub(crate) fn anonymous(_: u32, opts: &Options) -> Result<Segment> {
    check_capacity(opts.capacity)?;
    Err(unsupported())
}

#[cfg(feature = "rpc")]
pub(crate) fn remove_if_role_free(name: &str, _: Role) -> Result<()> {
    validate_name(name)?;
    Err(unsupported())
}

/// Stand-in when there is no OS segment (heap only): no lock is ever held.
pub(crate) struct RoleLock;

impl RoleLock {
    pub(crate) fn acquire(_: &Segment, _: Role) -> Result<Option<RoleLock>> {
        Ok(None)
    }
    pub(crate) fn is_held(&self, _: Role) -> Result<bool> {
        Ok(true)
    }
}

/// Mark `role` attached (no lock: both endpoints of a heap segment live in
/// this process). Returns no lock and the role's new epoch.
pub(crate) fn attach(seg: &Segment, role: Role) -> Result<(Option<RoleLock>, u32)> {
    Ok((None, mark_attached(seg, role)))
}
