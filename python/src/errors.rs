//! The module's exception classes and the mapping of library errors onto
//! them.

use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyType};

use shmpipe_core::Error;

pub(crate) struct Exceptions {
    error: Py<PyType>,
    timeout: Py<PyType>,
    pub(crate) disconnected: Py<PyType>,
    peer_died: Py<PyType>,
    too_large: Py<PyType>,
    corrupted: Py<PyType>,
    invalid_name: Py<PyType>,
    pub(crate) invalid_capacity: Py<PyType>,
    invalid_option: Py<PyType>,
    pub(crate) not_found: Py<PyType>,
    role_taken: Py<PyType>,
    buffer_too_small: Py<PyType>,
}

static EXCEPTIONS: PyOnceLock<Exceptions> = PyOnceLock::new();

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

pub(crate) fn make_exceptions(py: Python<'_>, m: &Bound<'_, PyModule>) -> PyResult<()> {
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
pub(crate) fn raise(
    py: Python<'_>,
    class: &Py<PyType>,
    msg: String,
    attrs: &[(&str, usize)],
) -> PyErr {
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
