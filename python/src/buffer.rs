//! The buffer protocol, both ways, under the abi3 (stable) ABI for CPython
//! 3.11 and later.
//!
//! CPython 3.11 added `Py_buffer`, `PyObject_GetBuffer` and the
//! `Py_bf_getbuffer`/`Py_bf_releasebuffer` type slots to the limited API, so
//! the declarations come from `pyo3::ffi` (the module's floor is 3.11 for
//! this reason and for the vectorcall ("fastcall") method convention, which
//! the limited API gained in 3.10: see python/README.md, "Python versions").
//! A pytest (`test_api.py::test_peek_buffer_layout`) checks what a consumer
//! of the buffer sees (shape, strides, format, itemsize, readonly, nbytes).
//!
//! - `crate::input::Input`: a borrowed C-contiguous buffer from any
//!   exporter (bytes, bytearray, memoryview, array, numpy...), released on drop.
//! - [`message_type`]: `shmpipe.Message`, a subclass of the pyo3 class
//!   [`crate::ends::MessageBase`] that adds the two buffer slots, so that
//!   `memoryview(msg)` lends the message's bytes in shared memory.

use std::ffi::{c_int, c_void};
use std::ptr;

use pyo3::exceptions::PyBufferError;
use pyo3::ffi;
use pyo3::ffi::{
    PyBUF_WRITABLE, PyBuffer_FillInfo, Py_bf_getbuffer as PY_BF_GETBUFFER,
    Py_bf_releasebuffer as PY_BF_RELEASEBUFFER,
};
use pyo3::prelude::*;
use pyo3::types::{PyTuple, PyType};

use crate::ends::MessageBase;
use crate::input::PyBufferRaw;

/// `bf_getbuffer` of `shmpipe.Message`: lend the peeked message's bytes,
/// read-only, and count the export (see `MessageBase::export`).
unsafe extern "C" fn message_getbuffer(
    obj: *mut ffi::PyObject,
    view: *mut PyBufferRaw,
    flags: c_int,
) -> c_int {
    // SAFETY: CPython calls this slot with the GIL held.
    let py = unsafe { Python::assume_attached() };
    // SAFETY: `obj` is the live object whose slot is being called.
    let any = unsafe { Bound::from_borrowed_ptr(py, obj) };
    let result = (|| -> PyResult<()> {
        if view.is_null() {
            return Err(PyBufferError::new_err("no buffer view to fill"));
        }
        if flags & PyBUF_WRITABLE != 0 {
            return Err(PyBufferError::new_err(
                "a peeked Message is read-only: it lends the ring's shared memory; copy it (bytes(msg)) to modify it",
            ));
        }
        let msg = any.cast::<MessageBase>()?;
        let (ptr, len) = msg.get().export(py)?;
        // SAFETY: `view` is the caller's Py_buffer to fill; `ptr..ptr+len`
        // lies in the ring's mapping and stays valid and unchanged until the
        // matching `message_releasebuffer`: the export count now held keeps
        // the message from being released (the producer cannot reuse its
        // bytes) and the consumer from closing (the mapping stays). FillInfo
        // takes a reference to `obj` into `view.obj`, so the Message (and
        // through it the Consumer) outlives the view.
        let rc = unsafe {
            PyBuffer_FillInfo(
                view,
                obj,
                ptr as *mut c_void,
                len as ffi::Py_ssize_t,
                1,
                flags,
            )
        };
        if rc != 0 {
            msg.get().unexport(py);
            return Err(PyErr::fetch(py));
        }
        Ok(())
    })();
    match result {
        Ok(()) => 0,
        Err(e) => {
            if !view.is_null() {
                // SAFETY: the protocol asks an exporter that fails to set
                // `view->obj` to NULL.
                unsafe { (*view).obj = ptr::null_mut() };
            }
            e.restore(py);
            -1
        }
    }
}

/// `bf_releasebuffer` of `shmpipe.Message`: one export fewer.
unsafe extern "C" fn message_releasebuffer(obj: *mut ffi::PyObject, _view: *mut PyBufferRaw) {
    // SAFETY: CPython calls this slot with the GIL held.
    let py = unsafe { Python::assume_attached() };
    // SAFETY: `obj` is the live exporter (the view still holds a reference).
    let any = unsafe { Bound::from_borrowed_ptr(py, obj) };
    if let Ok(msg) = any.cast::<MessageBase>() {
        msg.get().unexport(py);
    }
}

const MESSAGE_DOC: &std::ffi::CStr = c"A message lent by Consumer.peek(): its bytes stay in the ring's shared memory until release().\n\n\
memoryview(msg) (or any buffer consumer: numpy.frombuffer, bytes) reads them in place, read-only.\n\
`with consumer.peek() as view:` gives such a memoryview and releases both the view and the message\n\
at the end of the block; using the view afterwards raises ValueError.\n\
release() raises BufferError while other views of the message are still alive (it never lets the\n\
producer overwrite bytes a view can still read). A Message dropped without release() leaves the\n\
message in the ring: the next receive returns it again.";

/// Create `shmpipe.Message`: `MessageBase` plus the two buffer slots.
pub fn message_type<'py>(
    py: Python<'py>,
    base: &Bound<'py, PyType>,
) -> PyResult<Bound<'py, PyType>> {
    let mut slots = [
        ffi::PyType_Slot {
            slot: PY_BF_GETBUFFER,
            pfunc: message_getbuffer as *mut c_void,
        },
        ffi::PyType_Slot {
            slot: PY_BF_RELEASEBUFFER,
            pfunc: message_releasebuffer as *mut c_void,
        },
        ffi::PyType_Slot {
            slot: ffi::Py_tp_doc,
            pfunc: MESSAGE_DOC.as_ptr() as *mut c_void,
        },
        ffi::PyType_Slot {
            slot: 0,
            pfunc: ptr::null_mut(),
        },
    ];
    let mut spec = ffi::PyType_Spec {
        // 'static: the type's tp_name points into it.
        name: c"shmpipe.Message".as_ptr(),
        // 0: inherit the base's size (the pyo3 object holding MessageBase);
        // tp_new and tp_dealloc are inherited too.
        basicsize: 0,
        itemsize: 0,
        flags: ffi::Py_TPFLAGS_DEFAULT as _,
        slots: slots.as_mut_ptr(),
    };
    let bases = PyTuple::new(py, [base])?;
    // SAFETY: `spec` and `slots` are valid for the call (CPython copies the
    // slots and the doc; the name is 'static); `bases` is a live tuple.
    let ty = unsafe { ffi::PyType_FromSpecWithBases(&mut spec, bases.as_ptr()) };
    if ty.is_null() {
        return Err(PyErr::fetch(py));
    }
    // SAFETY: a new reference to a type object.
    let ty = unsafe { Bound::from_owned_ptr(py, ty) };
    Ok(ty.cast_into::<PyType>()?)
}
