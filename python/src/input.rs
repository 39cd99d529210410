//! The importing side of the buffer protocol (see `buffer.rs` for the
//! module's floor, CPython 3.11): [`Input`], a C-contiguous buffer borrowed
//! from any exporter for one call.

use pyo3::ffi;
use pyo3::ffi::{PyBUF_SIMPLE, PyBUF_WRITABLE, PyBuffer_Release, PyObject_GetBuffer};
use pyo3::prelude::*;

/// CPython's `Py_buffer` (the stable ABI's since 3.11).
pub(crate) type PyBufferRaw = ffi::Py_buffer;

/// A buffer borrowed from a Python object for the duration of one call.
/// While it lives the exporter keeps the memory where it is (a `bytearray`
/// refuses to resize, a `memoryview` to release, with `BufferError`).
/// Created and dropped with the GIL held; `!Send` (raw pointers).
pub struct Input {
    view: PyBufferRaw,
}

impl Input {
    /// Borrow `obj`'s bytes: read-only, or writable for `recv_into`. The
    /// exporter must be C-contiguous (PyBUF_SIMPLE); otherwise it raises
    /// `BufferError`/`TypeError` itself, naming what it cannot do.
    pub fn get(obj: &Bound<'_, PyAny>, writable: bool) -> PyResult<Input> {
        let mut view = PyBufferRaw::new();
        let flags = if writable {
            PyBUF_SIMPLE | PyBUF_WRITABLE
        } else {
            PyBUF_SIMPLE
        };
        // SAFETY: `obj` is a live object (we hold the GIL through `Bound`);
        // `view` is a properly laid-out, writable Py_buffer. On failure the
        // exporter set a Python exception and left nothing to release.
        if unsafe { PyObject_GetBuffer(obj.as_ptr(), &mut view, flags) } != 0 {
            return Err(PyErr::fetch(obj.py()));
        }
        Ok(Input { view })
    }

    /// The borrowed bytes, read-only.
    pub fn bytes(&self) -> &[u8] {
        if self.view.len <= 0 || self.view.buf.is_null() {
            return &[];
        }
        // SAFETY: a successful PyBUF_SIMPLE request gives `len` contiguous
        // bytes at `buf`, valid until `PyBuffer_Release` (our drop). Only
        // called with the GIL held, so no Python code mutates them meanwhile
        // (a C extension that released the GIL could; as for every C
        // reader of a buffer, e.g. `socket.send`, that is the caller's race).
        unsafe { std::slice::from_raw_parts(self.view.buf as *const u8, self.view.len as usize) }
    }

    /// The borrowed bytes, writable (only for an `Input::get(.., true)`).
    pub fn bytes_mut(&mut self) -> &mut [u8] {
        if self.view.len <= 0 || self.view.buf.is_null() || self.view.readonly != 0 {
            return &mut [];
        }
        // SAFETY: as in `bytes`; PyBUF_WRITABLE made the exporter hand out
        // writable memory (or fail), and `&mut self` makes this borrow unique
        // on our side.
        unsafe { std::slice::from_raw_parts_mut(self.view.buf as *mut u8, self.view.len as usize) }
    }
}

impl Drop for Input {
    fn drop(&mut self) {
        // SAFETY: `view` was filled by a successful PyObject_GetBuffer and is
        // released exactly once, here, with the GIL held (an `Input` never
        // leaves the thread and the GIL scope it was made in: it is !Send).
        unsafe { PyBuffer_Release(&mut self.view) }
    }
}
