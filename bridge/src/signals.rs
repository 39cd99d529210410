//! SIGINT/SIGTERM (stop cleanly) and SIGUSR1 (print stats), as flags the
//! main loop polls between bounded waits (at most [`TICK`] apart).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use signal_hook::consts::{SIGINT, SIGTERM, SIGUSR1};

/// The longest a bridge waits in one call before it looks at the flags.
pub const TICK: Duration = Duration::from_millis(100);

/// Flags set by the signal handlers.
#[derive(Debug, Clone)]
pub struct Signals {
    stop: Arc<AtomicBool>,
    usr1: Arc<AtomicBool>,
}

impl Signals {
    /// Install the handlers.
    pub fn install() -> Result<Self, String> {
        let stop = Arc::new(AtomicBool::new(false));
        let usr1 = Arc::new(AtomicBool::new(false));
        for sig in [SIGINT, SIGTERM] {
            signal_hook::flag::register(sig, Arc::clone(&stop))
                .map_err(|e| format!("installing the handler for signal {sig}: {e}"))?;
        }
        signal_hook::flag::register(SIGUSR1, Arc::clone(&usr1))
            .map_err(|e| format!("installing the SIGUSR1 handler: {e}"))?;
        Ok(Signals { stop, usr1 })
    }

    /// SIGINT or SIGTERM arrived.
    pub fn stop_requested(&self) -> bool {
        // Relaxed: a plain flag; the handler's store has no data to publish.
        self.stop.load(Ordering::Relaxed)
    }

    /// SIGUSR1 arrived since the last call.
    pub fn take_usr1(&self) -> bool {
        // Relaxed: as above; swap so each signal gives one report.
        self.usr1.swap(false, Ordering::Relaxed)
    }
}
