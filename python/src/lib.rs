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
//! (the `Producer`, `Consumer` and `Message` classes), `input.rs` and
//! `buffer.rs` (the buffer protocol under the abi3 ABI, importing and
//! exporting), `errors.rs` (the exception classes), `blocking.rs` (the
//! blocking loop), `fork.rs` (fork generations), this file (the module
//! and its functions, options).

#![deny(unsafe_op_in_unsafe_fn)]
#![warn(clippy::undocumented_unsafe_blocks)]

mod any;
mod blocking;
mod buffer;
mod ends;
mod errors;
mod fork;
mod input;

use std::time::{Duration, Instant};

use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::types::PyInt;

use shmpipe_core::{Error, WaitStrategy, MAX_CAPACITY, MIN_CAPACITY};

use any::{AnyPair, NewRing, VariantKind};
use blocking::deadline_of;
use ends::{Consumer, Info, MessageBase, Producer, MESSAGE_TYPE};
use errors::{err, error, exc, make_exceptions, raise};
use fork::register_atfork;

/// How often `open_*(timeout=...)` looks for a segment that is not there yet.
const OPEN_POLL: Duration = Duration::from_millis(10);

// ---------------------------------------------------------------------------
// Options

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
