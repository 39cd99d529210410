//! The `shmpipe` Python module: the library's rings for Python, built by
//! maturin (`pip install ./python`). See `python/README.md` for the Python
//! API and `shmpipe.pyi` for its types.
//!
//! ```python
//! import os
//! import shmpipe
//!
//! producer, consumer = shmpipe.pipe(capacity=1 << 16)   # an anonymous ring
//! if os.fork() == 0:                                     # child: the producer
//!     consumer.close()
//!     with producer:                                     # closing ends the stream
//!         for i in range(3):
//!             producer.send(f"job {i}".encode())
//!     os._exit(0)
//! producer.close()                                       # parent: the consumer
//! assert [bytes(m) for m in consumer] == [b"job 0", b"job 1", b"job 2"]
//! os.waitpid(-1, 0)
//! ```
//!
//! (rustdoc does not run Python: this snippet was run by hand against the
//! built module; `python/tests` holds the module's pytest suite.)
//!
//! Files: `any.rs` (one type per end over both ring variants), `ends.rs`
//! (the `Producer`, `Consumer` and `Message` classes), `buffer.rs` (the
//! buffer protocol under the abi3 ABI), this file (module, exceptions,
//! options, the blocking loop).

#![deny(unsafe_op_in_unsafe_fn)]
#![warn(clippy::undocumented_unsafe_blocks)]

mod any;
mod buffer;
mod ends;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyInt, PyType};

use shmpipe_core::{Error, WaitStrategy, MAX_CAPACITY, MIN_CAPACITY};

use any::{AnyPair, NewRing, VariantKind};
use ends::{Consumer, Info, MessageBase, Producer};

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
pub(crate) const HELD_SPIN: Duration = Duration::from_micros(4);

/// How often `open_*(timeout=...)` looks for a segment that is not there yet.
const OPEN_POLL: Duration = Duration::from_millis(10);

// ---------------------------------------------------------------------------
// Fork generations

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

fn register_atfork() -> PyResult<()> {
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

// ---------------------------------------------------------------------------
// Exceptions

pub(crate) struct Exceptions {
    error: Py<PyType>,
    timeout: Py<PyType>,
    pub(crate) disconnected: Py<PyType>,
    peer_died: Py<PyType>,
    too_large: Py<PyType>,
    corrupted: Py<PyType>,
    invalid_name: Py<PyType>,
    invalid_capacity: Py<PyType>,
    invalid_option: Py<PyType>,
    not_found: Py<PyType>,
    role_taken: Py<PyType>,
    buffer_too_small: Py<PyType>,
}

static EXCEPTIONS: PyOnceLock<Exceptions> = PyOnceLock::new();
static MESSAGE_TYPE: PyOnceLock<Py<PyType>> = PyOnceLock::new();

/// The exception classes, with several bases each where Python users would
/// catch them by a built-in class too (Timeout is a TimeoutError, bad
/// arguments are ValueErrors, a missing segment is a FileNotFoundError).
const EXCEPTIONS_SRC: &std::ffi::CStr = cr#"
class Error(Exception):
    """Base class of every error shmpipe raises."""

class Timeout(Error, TimeoutError):
    """The timeout passed before the operation could complete (nothing was sent or taken)."""

class Disconnected(Error):
    """The peer closed its side. A consumer sees this only after it received every message."""

class PeerDied(Error):
    """The peer's process died without closing its side. A consumer sees this only after it
    received every message the peer committed. A new process may take over the role."""

class TooLarge(Error, ValueError):
    """The message is longer than the ring accepts (capacity / 2 - 8 bytes).
    Attributes: len (the message's length) and max (the limit)."""

class Corrupted(Error):
    """The shared state violates the protocol (a peer wrote a bad value, or the segment was
    damaged). The end stays unusable."""

class InvalidName(Error, ValueError):
    """The segment name is not allowed: '/' followed by 1 to 255 characters, none of them '/'
    or NUL, and not '.' or '..'."""

class InvalidCapacity(Error, ValueError):
    """The capacity is not allowed: a power of two from 64 bytes to 4 GiB."""

class InvalidOption(Error, ValueError):
    """An option (wait strategy, variant, timeout) is not allowed; the message says what is."""

class NotFound(Error, FileNotFoundError):
    """No shared-memory segment of that name exists."""

class RoleTaken(Error):
    """Another live process already is this ring's producer (or consumer)."""

class BufferTooSmall(Error, ValueError):
    """recv_into's buffer is shorter than the next message, which stays in the ring.
    Attributes: len (the message's length) and buf_len (the buffer's)."""
"#;

fn make_exceptions(py: Python<'_>, m: &Bound<'_, PyModule>) -> PyResult<()> {
    let globals = PyDict::new(py);
    globals.set_item("__name__", "shmpipe")?;
    py.run(EXCEPTIONS_SRC, Some(&globals), None)?;
    let get = |name: &str| -> PyResult<Py<PyType>> {
        let t = globals
            .get_item(name)?
            .ok_or_else(|| PyTypeError::new_err(format!("exception class {name} missing")))?
            .cast_into::<PyType>()?;
        m.add(name, &t)?;
        Ok(t.unbind())
    };
    let exc = Exceptions {
        error: get("Error")?,
        timeout: get("Timeout")?,
        disconnected: get("Disconnected")?,
        peer_died: get("PeerDied")?,
        too_large: get("TooLarge")?,
        corrupted: get("Corrupted")?,
        invalid_name: get("InvalidName")?,
        invalid_capacity: get("InvalidCapacity")?,
        invalid_option: get("InvalidOption")?,
        not_found: get("NotFound")?,
        role_taken: get("RoleTaken")?,
        buffer_too_small: get("BufferTooSmall")?,
    };
    let _ = EXCEPTIONS.set(py, exc);
    Ok(())
}

pub(crate) fn exc(py: Python<'_>) -> &Exceptions {
    EXCEPTIONS
        .get(py)
        .expect("the exception classes are made when the module is imported")
}

/// `class(message)`, with extra attributes.
fn raise(py: Python<'_>, class: &Py<PyType>, msg: String, attrs: &[(&str, usize)]) -> PyErr {
    let class = class.bind(py);
    match class.call1((msg,)) {
        Ok(value) => {
            for (k, v) in attrs {
                if let Err(e) = value.setattr(*k, *v) {
                    return e;
                }
            }
            PyErr::from_value(value)
        }
        Err(e) => e,
    }
}

/// The Python exception for a library error; the message is the library's.
pub(crate) fn err(py: Python<'_>, e: Error) -> PyErr {
    let x = exc(py);
    let msg = e.to_string();
    match e {
        Error::Timeout => raise(py, &x.timeout, msg, &[]),
        Error::Disconnected => raise(py, &x.disconnected, msg, &[]),
        Error::PeerDied => raise(py, &x.peer_died, msg, &[]),
        Error::TooLarge { len, max } => raise(py, &x.too_large, msg, &[("len", len), ("max", max)]),
        Error::Corrupted { .. } => raise(py, &x.corrupted, msg, &[]),
        Error::InvalidName { .. } => raise(py, &x.invalid_name, msg, &[]),
        Error::InvalidCapacity { .. } => raise(py, &x.invalid_capacity, msg, &[]),
        Error::InvalidOption { .. } => raise(py, &x.invalid_option, msg, &[]),
        Error::NotFound { .. } => raise(py, &x.not_found, msg, &[]),
        Error::RoleTaken { .. } => raise(py, &x.role_taken, msg, &[]),
        Error::BufferTooSmall { len, buf_len } => raise(
            py,
            &x.buffer_too_small,
            msg,
            &[("len", len), ("buf_len", buf_len)],
        ),
        _ => raise(py, &x.error, msg, &[]),
    }
}

/// A `shmpipe.Error` with our own message (misuse of a handle).
pub(crate) fn error(py: Python<'_>, msg: String) -> PyErr {
    raise(py, &exc(py).error, msg, &[])
}

pub(crate) fn message_type(py: Python<'_>) -> &Bound<'_, PyType> {
    MESSAGE_TYPE
        .get(py)
        .expect("the Message type is made when the module is imported")
        .bind(py)
}

// ---------------------------------------------------------------------------
// Options and the blocking loop

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

/// `capacity` as given (any int) → bytes, or InvalidCapacity.
fn capacity_of(py: Python<'_>, capacity: &Bound<'_, PyAny>) -> PyResult<u64> {
    if !capacity.is_instance_of::<PyInt>() {
        return Err(PyTypeError::new_err(format!(
            "capacity must be an int (bytes), not {}",
            capacity.get_type().name()?
        )));
    }
    match capacity.extract::<u64>() {
        Ok(c) => Ok(c),
        // Negative or beyond 64 bits: the library's wording, with the value as given.
        Err(_) => Err(raise(
            py,
            &exc(py).invalid_capacity,
            format!(
                "invalid capacity {capacity} bytes: the capacity must be a power of two between \
                 {MIN_CAPACITY} and {MAX_CAPACITY} bytes"
            ),
            &[],
        )),
    }
}

fn new_ring(
    py: Python<'_>,
    capacity: &Bound<'_, PyAny>,
    wait: &str,
    variant: &str,
) -> PyResult<NewRing> {
    Ok(NewRing {
        capacity: capacity_of(py, capacity)?,
        wait: wait.parse::<WaitStrategy>().map_err(|e| err(py, e))?,
        kind: variant
            .parse::<VariantKind>()
            .map_err(|e| err(py, e.into()))?,
    })
}

/// Retry `open` while the segment does not exist, until `timeout`.
fn open_waiting<T>(
    py: Python<'_>,
    name: &str,
    timeout: Option<f64>,
    mut open: impl FnMut(&str) -> shmpipe_core::Result<T> + Send,
) -> PyResult<T>
where
    T: Send,
{
    let waiting = timeout.is_some();
    let deadline = deadline_of(py, timeout)?;
    loop {
        match open(name) {
            Err(Error::NotFound { .. }) if waiting => {}
            r => return r.map_err(|e| err(py, e)),
        }
        let nap = match deadline {
            None => OPEN_POLL,
            Some(d) => {
                let left = d.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    let e = Error::NotFound {
                        name: name.to_string(),
                    };
                    return Err(raise(
                        py,
                        &exc(py).not_found,
                        format!(
                            "{e} (waited {:.3} s for it to appear)",
                            timeout.unwrap_or(0.0)
                        ),
                        &[],
                    ));
                }
                left.min(OPEN_POLL)
            }
        };
        py.detach(|| std::thread::sleep(nap));
        py.check_signals()?;
    }
}

// ---------------------------------------------------------------------------
// Module functions

/// create_producer(name, *, capacity=1 << 20, wait="futex", variant="lockfree") -> Producer
/// --
///
/// Create the named ring `name` ("/" followed by 1 to 255 characters: the
/// file /dev/shm/NAME; it must not exist) and attach as its producer.
/// capacity: data-area bytes, a power of two from 64 to 4 GiB (the largest
/// message is capacity / 2 - 8). wait: "futex", "spin", "spin-yield" or
/// "semaphore". variant: "lockfree" or "locked". The name is removed when
/// this producer closes. Raises InvalidName, InvalidCapacity,
/// InvalidOption, or Error (e.g. the name exists).
#[pyfunction]
#[pyo3(signature = (name, *, capacity=None, wait="futex", variant="lockfree"))]
fn create_producer(
    py: Python<'_>,
    name: &str,
    capacity: Option<&Bound<'_, PyAny>>,
    wait: &str,
    variant: &str,
) -> PyResult<Producer> {
    let cap = default_capacity(py, capacity);
    let ring = new_ring(py, &cap, wait, variant)?;
    let p = py
        .detach(|| ring.create_producer(name))
        .map_err(|e| create_err(py, e, "producer"))?;
    Ok(Producer::attached(p, Some(name.to_string())))
}

/// create_consumer(name, *, capacity=1 << 20, wait="futex", variant="lockfree") -> Consumer
/// --
///
/// Create the named ring `name` and attach as its consumer; see
/// create_producer. The name is removed when this consumer closes.
#[pyfunction]
#[pyo3(signature = (name, *, capacity=None, wait="futex", variant="lockfree"))]
fn create_consumer(
    py: Python<'_>,
    name: &str,
    capacity: Option<&Bound<'_, PyAny>>,
    wait: &str,
    variant: &str,
) -> PyResult<Consumer> {
    let cap = default_capacity(py, capacity);
    let ring = new_ring(py, &cap, wait, variant)?;
    let c = py
        .detach(|| ring.create_consumer(name))
        .map_err(|e| create_err(py, e, "consumer"))?;
    Ok(Consumer::attached(c, Some(name.to_string())))
}

/// A failed `create_*`: the library's "already exists" names its Rust API
/// (`open_or_create`); say what a Python user does instead (typically after
/// a run that was killed and left the name behind).
fn create_err(py: Python<'_>, e: Error, role: &str) -> PyErr {
    match e {
        Error::AlreadyExists { name } => error(
            py,
            format!(
                "a shared-memory segment named {name:?} already exists (left by a run that did not \
                 close it, e.g. one that was killed, or in use): attach to it with \
                 shmpipe.open_{role}({name:?}) (a dead {role}'s role can be taken over), or remove \
                 it first with shmpipe.remove({name:?})"
            ),
        ),
        e => err(py, e),
    }
}

fn default_capacity<'py>(
    py: Python<'py>,
    capacity: Option<&Bound<'py, PyAny>>,
) -> Bound<'py, PyAny> {
    match capacity {
        Some(c) => c.clone(),
        None => shmpipe_core::DEFAULT_CAPACITY
            .into_pyobject(py)
            .map(|i| i.into_any())
            .expect("an int always converts"),
    }
}

/// open_producer(name, *, timeout=None) -> Producer
/// --
///
/// Attach as the producer of the existing named ring `name` (its capacity,
/// wait strategy and variant come from the segment). With a timeout (in
/// seconds), wait that long for the segment to appear; without one, a
/// missing segment raises NotFound at once. Raises NotFound (naming the
/// segment), RoleTaken, InvalidName, Error.
#[pyfunction]
#[pyo3(signature = (name, *, timeout=None))]
fn open_producer(py: Python<'_>, name: &str, timeout: Option<f64>) -> PyResult<Producer> {
    let p = open_waiting(py, name, timeout, any::open_producer)?;
    Ok(Producer::attached(p, Some(name.to_string())))
}

/// open_consumer(name, *, timeout=None) -> Consumer
/// --
///
/// Attach as the consumer of the existing named ring `name`; see open_producer.
#[pyfunction]
#[pyo3(signature = (name, *, timeout=None))]
fn open_consumer(py: Python<'_>, name: &str, timeout: Option<f64>) -> PyResult<Consumer> {
    let c = open_waiting(py, name, timeout, any::open_consumer)?;
    Ok(Consumer::attached(c, Some(name.to_string())))
}

/// pipe(*, capacity=1 << 20, wait="futex", variant="lockfree") -> (Producer, Consumer)
/// --
///
/// A new ring in anonymous, sealed shared memory, for this process and the
/// processes it forks (os.fork(), multiprocessing with the "fork" start
/// method), like multiprocessing.Pipe(duplex=False) but returned as
/// (sending end, receiving end). Each end takes its role in the process
/// that first uses it; as with os.pipe(), each process keeps the end it uses
/// and closes the other (closing an end this process never used does not
/// end the stream for the process that uses it).
#[pyfunction]
#[pyo3(signature = (*, capacity=None, wait="futex", variant="lockfree"))]
fn pipe(
    py: Python<'_>,
    capacity: Option<&Bound<'_, PyAny>>,
    wait: &str,
    variant: &str,
) -> PyResult<(Producer, Consumer)> {
    let cap = default_capacity(py, capacity);
    let ring = new_ring(py, &cap, wait, variant)?;
    let (a, b): (AnyPair, AnyPair) = ring.anonymous_pair().map_err(|e| err(py, e))?;
    let info = Info {
        capacity: ring.capacity,
        max_message: shmpipe_core::max_message_for(ring.capacity),
        wait: ring.wait.name(),
        kind: ring.kind,
        name: None,
    };
    Ok((
        Producer::unattached(a, info.clone()),
        Consumer::unattached(b, info),
    ))
}

/// remove(name)
/// --
///
/// Remove the named segment (processes attached to it keep working).
/// Raises NotFound if there is none, InvalidName.
#[pyfunction]
fn remove(py: Python<'_>, name: &str) -> PyResult<()> {
    shmpipe_core::remove(name).map_err(|e| err(py, e))
}

/// max_message_for(capacity) -> int
/// --
///
/// The largest message a ring of `capacity` bytes accepts (capacity / 2 - 8).
#[pyfunction]
fn max_message_for(capacity: u64) -> usize {
    shmpipe_core::max_message_for(capacity)
}

/// Fast inter-process messages through a single-producer/single-consumer
/// ring in shared memory (Linux). See help(shmpipe.pipe),
/// help(shmpipe.create_producer), help(shmpipe.Consumer).
#[pymodule(name = "shmpipe")]
fn shmpipe_module(py: Python<'_>, m: &Bound<'_, PyModule>) -> PyResult<()> {
    register_atfork()?;
    make_exceptions(py, m)?;
    m.add_class::<Producer>()?;
    m.add_class::<Consumer>()?;
    let base = py.get_type::<MessageBase>();
    let message = buffer::message_type(py, &base)?;
    m.add("Message", &message)?;
    let _ = MESSAGE_TYPE.set(py, message.unbind());
    m.add_function(wrap_pyfunction!(create_producer, m)?)?;
    m.add_function(wrap_pyfunction!(create_consumer, m)?)?;
    m.add_function(wrap_pyfunction!(open_producer, m)?)?;
    m.add_function(wrap_pyfunction!(open_consumer, m)?)?;
    m.add_function(wrap_pyfunction!(pipe, m)?)?;
    m.add_function(wrap_pyfunction!(remove, m)?)?;
    m.add_function(wrap_pyfunction!(max_message_for, m)?)?;
    m.add("DEFAULT_CAPACITY", shmpipe_core::DEFAULT_CAPACITY)?;
    m.add("MIN_CAPACITY", MIN_CAPACITY)?;
    m.add("MAX_CAPACITY", MAX_CAPACITY)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
