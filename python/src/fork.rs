//! Fork generations: a counter bumped in the child of every `fork()`, so an
//! end knows whether it was attached in this process without a syscall.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use pyo3::prelude::*;

/// Bumped in the child of every `fork()` (a `pthread_atfork` handler, so
/// `os.fork()`, multiprocessing and C callers all count). An end compares
/// the generation it was attached in with this one instead of calling
/// `getpid()` (a syscall) on every operation.
static FORK_EPOCH: AtomicU64 = AtomicU64::new(0);
static ATFORK_REGISTERED: AtomicBool = AtomicBool::new(false);

extern "C" fn after_fork_in_child() {
    // Relaxed: runs in the child's only thread before anything else reads it.
    FORK_EPOCH.fetch_add(1, Ordering::Relaxed);
}

pub(crate) fn fork_epoch() -> u64 {
    // Relaxed: written only by the atfork child handler, in program order
    // before any code of the child that reads it.
    FORK_EPOCH.load(Ordering::Relaxed)
}

pub(crate) fn register_atfork() -> PyResult<()> {
    // A plain flag, not a Once: see DESIGN.md "Fork safety". Module init
    // runs under the GIL, so two registrations cannot race.
    if ATFORK_REGISTERED.swap(true, Ordering::Relaxed) {
        return Ok(());
    }
    // SAFETY: registers a handler that only does an atomic add
    // (async-signal-safe), valid for the life of the process (the module is
    // never unloaded by CPython).
    let rc = unsafe { libc::pthread_atfork(None, None, Some(after_fork_in_child)) };
    if rc != 0 {
        return Err(pyo3::exceptions::PyOSError::new_err(format!(
            "pthread_atfork failed: {}",
            std::io::Error::from_raw_os_error(rc)
        )));
    }
    Ok(())
}
