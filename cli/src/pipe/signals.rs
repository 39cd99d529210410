//! The signals that stop `write` and `read` (SIGINT, SIGTERM, SIGHUP).

use std::sync::atomic::{AtomicI32, Ordering};
use std::time::Duration;

use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};

use crate::fail::Fail;

/// The longest a blocked command waits before it looks at signals, its own
/// deadline, and whether its segment's name is still there.
pub const SLICE: Duration = Duration::from_millis(100);

/// The last stopping signal received (0: none), set by [`on_signal`].
static SIGNALLED: AtomicI32 = AtomicI32::new(0);

extern "C" fn on_signal(sig: libc::c_int) {
    // Relaxed: the word carries no other data; the command's own thread
    // loads it after the interrupted call returns. An atomic store is
    // async-signal-safe.
    SIGNALLED.store(sig, Ordering::Relaxed);
}

/// Proof that the stopping signals are caught; asks which one came.
pub struct Stop(());

impl Stop {
    /// Catch SIGINT, SIGTERM and SIGHUP. The handlers are installed without
    /// `SA_RESTART`, so a blocked read of stdin or write to stdout returns
    /// `EINTR` and the command gets to close its role.
    pub fn install() -> Result<Stop, Fail> {
        let act = SigAction::new(
            SigHandler::Handler(on_signal),
            SaFlags::empty(),
            SigSet::empty(),
        );
        for sig in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP] {
            // SAFETY: the handler only stores to an atomic, which is
            // async-signal-safe; nothing else in this process handles these
            // signals.
            unsafe { sigaction(sig, &act) }.map_err(|e| {
                Fail::Runtime(format!("installing a handler for {}: {e}", sig.as_str()))
            })?;
        }
        Ok(Stop(()))
    }

    /// The signal received, if any.
    pub fn signal(&self) -> Option<i32> {
        match SIGNALLED.load(Ordering::Relaxed) {
            0 => None,
            s => Some(s),
        }
    }
}

/// `SIGINT` etc. for messages.
pub fn signal_name(sig: i32) -> &'static str {
    match Signal::try_from(sig) {
        Ok(s @ (Signal::SIGINT | Signal::SIGTERM | Signal::SIGHUP)) => s.as_str(),
        _ => "a signal",
    }
}
