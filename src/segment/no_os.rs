//! Under loom and Miri there is no `shm_open`/`mmap`/`memfd`/`fcntl`: only
//! heap segments (`Builder::in_process`) exist; the other makers check
//! their arguments as the real ones do, then report this.

use super::memory::{check_capacity, validate_name, Options, Segment};
#[cfg(feature = "rpc")]
use super::role::Role;
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
