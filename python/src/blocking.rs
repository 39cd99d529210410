//! The blocking loop: deadlines from Python timeouts, and waiting in
//! slices with the GIL released, polling briefly with it held first.

use std::time::{Duration, Instant};

use pyo3::prelude::*;

use shmpipe_core::Error;

use crate::errors::err;

/// How long a blocking call waits with the GIL released before it takes the
/// GIL back to run signal handlers (`KeyboardInterrupt`) and look at its
/// deadline. A slice that times out has taken and sent nothing, so an
/// interrupt loses nothing. Plus the library's own sleep slice (20 ms),
/// Ctrl-C is seen within about 70 ms.
const SLICE: Duration = Duration::from_millis(50);

/// How long a blocking call keeps polling with the GIL held before it
/// releases the GIL to wait. A message that arrives within this time is
/// taken without giving up and re-taking the GIL (a mutex, a condition
/// variable and pyo3's bookkeeping on the way back), which is most of a
/// Python round trip's overhead when the peer answers at once. Bounded so
/// that other Python threads wait at most this long for the GIL (the
/// interpreter's own switch interval is 5 ms) and a signal is seen no later.
const HELD_SPIN: Duration = Duration::from_micros(4);

/// `timeout` in seconds → deadline (`None`: wait as long as it takes).
pub(crate) fn deadline_of(py: Python<'_>, timeout: Option<f64>) -> PyResult<Option<Instant>> {
    let Some(t) = timeout else {
        return Ok(None);
    };
    if t.is_nan() || t < 0.0 {
        return Err(err(
            py,
            Error::InvalidOption {
                reason: format!(
                    "timeout {t} is not allowed: give None (wait as long as it takes) or a number \
                     of seconds >= 0"
                ),
            },
        ));
    }
    // Infinite or beyond the clock's range: as long as it takes.
    Ok(Duration::try_from_secs_f64(t)
        .ok()
        .and_then(|d| Instant::now().checked_add(d)))
}

/// Wait until `attempt` succeeds: each call waits at most one slice with
/// the GIL released; between slices the GIL is taken back to run signal
/// handlers (a `KeyboardInterrupt` raised by one ends the wait) and to check
/// the deadline. `attempt` only waits (it takes and sends nothing), so
/// stopping between slices loses nothing.
pub(crate) fn wait<F>(py: Python<'_>, deadline: Option<Instant>, mut attempt: F) -> PyResult<()>
where
    F: FnMut(Duration) -> shmpipe_core::Result<()> + Send,
{
    loop {
        let slice = match deadline {
            None => SLICE,
            Some(d) => {
                let left = d.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Err(err(py, Error::Timeout));
                }
                left.min(SLICE)
            }
        };
        match py.detach(|| attempt(slice)) {
            Ok(()) => return Ok(()),
            Err(Error::Timeout) => py.check_signals()?,
            Err(e) => return Err(err(py, e)),
        }
    }
}

/// Run `attempt` until it returns `Some`: first polled with the GIL held for
/// at most [`HELD_SPIN`] (and not past `deadline`), then alternating with
/// `wait_for` (which only waits, with the GIL released, see [`wait`]).
/// `attempt` must have no effect when it returns `None`.
pub(crate) fn poll_then_wait<C, R>(
    py: Python<'_>,
    deadline: Option<Instant>,
    c: &mut C,
    mut attempt: impl FnMut(&mut C) -> PyResult<Option<R>>,
    mut wait_for: impl FnMut(&mut C, Duration) -> shmpipe_core::Result<()> + Send,
) -> PyResult<R>
where
    C: Send,
{
    if let Some(r) = attempt(c)? {
        return Ok(r);
    }
    let start = Instant::now();
    let spin_until = match deadline {
        Some(d) => d.min(start + HELD_SPIN),
        None => start + HELD_SPIN,
    };
    while Instant::now() < spin_until {
        std::hint::spin_loop();
        if let Some(r) = attempt(c)? {
            return Ok(r);
        }
    }
    loop {
        wait(py, deadline, |slice| wait_for(c, slice))?;
        if let Some(r) = attempt(c)? {
            return Ok(r);
        }
    }
}
