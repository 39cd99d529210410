//! `Producer`, `Consumer` and `Message`: the Python classes over the
//! library's ends.
//!
//! # Threads, fork, lazy roles
//! Each class is `frozen` and keeps its state behind a `Mutex` taken with
//! `try_lock`: the library's ends are `Send` but not `Sync` (one thread at a
//! time), and a blocking call holds the lock while it waits with the GIL
//! released, so a second thread using the same end gets a clear error
//! instead of a data race or a deadlock on the GIL.
//!
//! An end made by `pipe()` holds a not-yet-attached `Pair` and attaches
//! (takes its role) in the process that first uses it. Every attached end
//! remembers the fork generation it was attached in ([`crate::fork::fork_epoch`]):
//! a forked child that inherited it gets an error if it uses it, and when it
//! drops or closes it the handle is leaked instead of dropped, so the child
//! neither closes the parent's role nor unlinks the parent's segment name
//! (the library's `Segment` unlinks a creator's name on drop in any process).
//! An end that this process never attached is dropped normally: that only
//! unmaps its copy of the memory and closes its descriptor.

use std::mem::ManuallyDrop;
use std::ptr::NonNull;
use std::sync::{Mutex, MutexGuard, OnceLock, TryLockError};
use std::time::Instant;

use pyo3::exceptions::{PyBufferError, PyRuntimeError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyBytes, PyDict, PyMemoryView, PyType};

use shmpipe_core::{EndpointState, Error, Stats};

use crate::any::{
    AnyConsumer, AnyMessage, AnyPair, AnyProducer, MessageBytes, VariantKind, WaitMessage, WaitRoom,
};
use crate::blocking::{deadline_of, poll_then_wait};
use crate::errors::{err, error, exc};
use crate::fork::fork_epoch;
use crate::input::Input;

/// What a new end knows about its ring without attaching.
#[derive(Debug, Clone)]
pub struct Info {
    pub capacity: u64,
    pub max_message: usize,
    pub wait: &'static str,
    pub kind: VariantKind,
    pub name: Option<String>,
}

/// An attached end and the process (fork generation) that attached it.
struct Attached<T> {
    end: Option<T>,
    epoch: u64,
    pid: u32,
}

impl<T> Attached<T> {
    fn new(end: T) -> Self {
        Attached {
            end: Some(end),
            epoch: fork_epoch(),
            pid: std::process::id(),
        }
    }

    fn ours(&self) -> bool {
        self.epoch == fork_epoch()
    }
}

impl<T> Drop for Attached<T> {
    fn drop(&mut self) {
        if !self.ours() {
            // Inherited across fork: leak it (see the module docs).
            if let Some(end) = self.end.take() {
                std::mem::forget(end);
            }
        }
    }
}

enum End<T> {
    /// `pipe()`'s end, not used in any process yet.
    Unattached(AnyPair),
    Attached(Attached<T>),
    Closed,
}

impl<T> End<T> {
    /// The attached end, attaching it first if this is its first use.
    fn get(
        &mut self,
        py: Python<'_>,
        what: &str,
        attach: impl FnOnce(AnyPair) -> shmpipe_core::Result<T>,
    ) -> PyResult<&mut T> {
        if let End::Unattached(_) = self {
            let End::Unattached(pair) = std::mem::replace(self, End::Closed) else {
                unreachable!("matched above");
            };
            // On failure (e.g. RoleTaken: another process took this role)
            // the end stays closed in this process.
            *self = End::Attached(Attached::new(attach(pair).map_err(|e| err(py, e))?));
        }
        if let End::Attached(a) = self {
            if !a.ours() {
                return Err(error(
                    py,
                    format!(
                        "this {what} was attached by process {} before it forked: only that process \
                         can use it (with pipe(), use each end in one process only and close the other)",
                        a.pid
                    ),
                ));
            }
        }
        match self {
            End::Attached(a) => match a.end.as_mut() {
                Some(end) => Ok(end),
                None => Err(error(py, format!("this {what} is closed"))),
            },
            End::Closed => Err(error(py, format!("this {what} is closed"))),
            End::Unattached(_) => unreachable!("attached above"),
        }
    }

    /// Take the end out for closing: `Ok(Some(end))` if this process
    /// attached it; `Ok(None)` if there is nothing to close here (never
    /// used here, inherited across fork, or closed already).
    fn take(&mut self) -> Option<T> {
        match std::mem::replace(self, End::Closed) {
            End::Attached(mut a) if a.ours() => a.end.take(),
            // Dropping an inherited `Attached` leaks it; dropping a `Pair`
            // unmaps this process's copy and touches no role.
            _ => None,
        }
    }

    fn is_closed(&self) -> bool {
        match self {
            End::Closed => true,
            End::Attached(a) => a.end.is_none(),
            End::Unattached(_) => false,
        }
    }
}

/// `try_lock`, with an error naming the end when another thread holds it.
fn lock<'a, T>(m: &'a Mutex<T>, what: &str) -> PyResult<MutexGuard<'a, T>> {
    match m.try_lock() {
        Ok(g) => Ok(g),
        // A panic inside a call (reported as PanicException) left the state
        // as consistent as any early return: keep using it.
        Err(TryLockError::Poisoned(p)) => Ok(p.into_inner()),
        Err(TryLockError::WouldBlock) => Err(PyRuntimeError::new_err(format!(
            "this {what} is in use by another thread: an end serves one thread at a time \
             (give each thread its own ring)"
        ))),
    }
}

fn stats_dict<'py>(py: Python<'py>, s: &Stats) -> PyResult<Bound<'py, PyDict>> {
    fn state(s: EndpointState) -> String {
        match s {
            EndpointState::Never => "never".into(),
            EndpointState::Attached => "attached".into(),
            EndpointState::Closed => "closed".into(),
            EndpointState::Invalid(x) => format!("invalid({x})"),
            _ => format!("{s:?}").to_lowercase(),
        }
    }
    let d = PyDict::new(py);
    d.set_item("capacity", s.capacity)?;
    d.set_item("used_bytes", s.used_bytes)?;
    d.set_item("messages_sent", s.messages_sent)?;
    d.set_item("bytes_sent", s.bytes_sent)?;
    d.set_item("messages_received", s.messages_received)?;
    d.set_item("bytes_received", s.bytes_received)?;
    d.set_item("full_waits", s.full_waits)?;
    d.set_item("empty_waits", s.empty_waits)?;
    d.set_item("producer_wake_syscalls", s.producer_wake_syscalls)?;
    d.set_item("consumer_wake_syscalls", s.consumer_wake_syscalls)?;
    d.set_item("lock_repairs", s.lock_repairs)?;
    d.set_item("producer", state(s.producer))?;
    d.set_item("consumer", state(s.consumer))?;
    Ok(d)
}

fn no_pickle(what: &str) -> PyErr {
    PyTypeError::new_err(format!(
        "a shmpipe {what} cannot be pickled: hand it to a child process by fork (os.fork(), or \
         multiprocessing with the 'fork' start method), or open the named ring in the child"
    ))
}

fn repr(what: &str, info: &Info, closed: bool) -> String {
    let name = match &info.name {
        Some(n) => format!(" {n:?}"),
        None => " (anonymous)".into(),
    };
    format!(
        "<shmpipe.{what}{name} capacity={} wait={} variant={}{}>",
        info.capacity,
        info.wait,
        info.kind.name(),
        if closed { " closed" } else { "" }
    )
}

/// The message bytes to send: a `bytes` object is read directly, anything
/// else through the buffer protocol.
enum Data<'py> {
    Bytes(Bound<'py, PyBytes>),
    Buffer(Input),
}

impl Data<'_> {
    fn get<'py>(obj: &Bound<'py, PyAny>) -> PyResult<Data<'py>> {
        match obj.cast::<PyBytes>() {
            Ok(b) => Ok(Data::Bytes(b.clone())),
            Err(_) => Ok(Data::Buffer(Input::get(obj, false)?)),
        }
    }

    fn bytes(&self) -> &[u8] {
        match self {
            Data::Bytes(b) => b.as_bytes(),
            Data::Buffer(i) => i.bytes(),
        }
    }
}

// ---------------------------------------------------------------------------
// Producer

/// The sending end of a ring (see the module docs of `shmpipe`).
#[pyclass(frozen, module = "shmpipe", name = "Producer")]
pub struct Producer {
    state: Mutex<End<AnyProducer>>,
    info: Info,
}

impl Producer {
    pub fn attached(p: AnyProducer, name: Option<String>) -> Self {
        let info = Info {
            capacity: p.capacity(),
            max_message: p.max_message(),
            wait: p.wait_strategy().name(),
            kind: p.kind(),
            name,
        };
        Producer {
            state: Mutex::new(End::Attached(Attached::new(p))),
            info,
        }
    }

    pub fn unattached(pair: AnyPair, info: Info) -> Self {
        Producer {
            state: Mutex::new(End::Unattached(pair)),
            info,
        }
    }
}

#[pymethods]
impl Producer {
    /// send(data, timeout=None)
    /// --
    ///
    /// Send one message: any bytes-like object (bytes, bytearray, memoryview,
    /// a C-contiguous numpy array...). Waits while the ring is full, at most
    /// `timeout` seconds (None: as long as it takes), with the GIL released.
    /// Raises Timeout, Disconnected (the consumer closed), PeerDied, TooLarge
    /// (longer than max_message), Corrupted. KeyboardInterrupt interrupts the
    /// wait; the message is then not sent.
    #[pyo3(signature = (data, timeout=None))]
    fn send(&self, py: Python<'_>, data: &Bound<'_, PyAny>, timeout: Option<f64>) -> PyResult<()> {
        let deadline = deadline_of(py, timeout)?;
        let data = Data::get(data)?;
        let mut st = lock(&self.state, "Producer")?;
        let p = st.get(py, "Producer", AnyPair::into_producer)?;
        let msg = data.bytes();
        let len = msg.len();
        // Copied into the ring with the GIL held: no Python thread can
        // change the buffer meanwhile.
        poll_then_wait(
            py,
            deadline,
            p,
            |p| match p.try_send(msg) {
                Ok(()) => Ok(Some(())),
                Err(Error::Full) => Ok(None),
                Err(e) => Err(err(py, e)),
            },
            |p, slice| p.wait_room(len, slice),
        )
    }

    /// try_send(data) -> bool
    /// --
    ///
    /// Send one message if it fits now: True if sent, False if the ring is
    /// full. Never waits. Raises as send() does (except Timeout).
    fn try_send(&self, py: Python<'_>, data: &Bound<'_, PyAny>) -> PyResult<bool> {
        let data = Data::get(data)?;
        let mut st = lock(&self.state, "Producer")?;
        let p = st.get(py, "Producer", AnyPair::into_producer)?;
        match p.try_send(data.bytes()) {
            Ok(()) => Ok(true),
            Err(Error::Full) => Ok(false),
            Err(e) => Err(err(py, e)),
        }
    }

    /// close()
    /// --
    ///
    /// Close the producer side: the consumer receives every message sent so
    /// far, then sees the end (its iteration stops, recv raises
    /// Disconnected). The creator of a named ring also removes its name.
    /// Closing an end this process never used (the other process's end of
    /// a pipe()) only frees this process's copy. Idempotent.
    fn close(&self, py: Python<'_>) -> PyResult<()> {
        let end = lock(&self.state, "Producer")?.take();
        match end {
            Some(p) => p.close().map_err(|e| err(py, e)),
            None => Ok(()),
        }
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    #[pyo3(signature = (*_args))]
    fn __exit__(&self, py: Python<'_>, _args: &Bound<'_, pyo3::types::PyTuple>) -> PyResult<bool> {
        self.close(py)?;
        Ok(false)
    }

    /// Data-area size of the ring in bytes.
    #[getter]
    fn capacity(&self) -> u64 {
        self.info.capacity
    }

    /// Largest message the ring accepts (capacity / 2 - 8 bytes).
    #[getter]
    fn max_message(&self) -> usize {
        self.info.max_message
    }

    /// The ring's wait strategy: "futex", "spin", "spin-yield" or "semaphore".
    #[getter]
    fn wait(&self) -> &'static str {
        self.info.wait
    }

    /// The ring design: "lockfree" or "locked".
    #[getter]
    fn variant(&self) -> &'static str {
        self.info.kind.name()
    }

    /// The segment name of a named ring; None for pipe().
    #[getter]
    fn name(&self) -> Option<String> {
        self.info.name.clone()
    }

    /// Whether close() was called (or the end could not attach).
    #[getter]
    fn closed(&self) -> PyResult<bool> {
        Ok(lock(&self.state, "Producer")?.is_closed())
    }

    /// stats() -> dict
    /// --
    ///
    /// A snapshot of the ring's counters (informational): messages and bytes
    /// sent and received, used_bytes, full/empty waits, wake-up syscalls,
    /// lock_repairs, and each side's state ("never", "attached", "closed").
    /// Attaches a pipe() end, like any use.
    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let mut st = lock(&self.state, "Producer")?;
        let p = st.get(py, "Producer", AnyPair::into_producer)?;
        stats_dict(py, &p.stats())
    }

    fn __reduce__(&self) -> PyResult<()> {
        Err(no_pickle("Producer"))
    }

    fn __repr__(&self) -> PyResult<String> {
        let closed = lock(&self.state, "Producer")
            .map(|s| s.is_closed())
            .unwrap_or(false);
        Ok(repr("Producer", &self.info, closed))
    }
}

// ---------------------------------------------------------------------------
// Consumer and the message it lends

/// A consumer that can lend one message (`peek`) as a Python object.
///
/// The library's `Message<'a>` borrows `&'a mut Consumer`. A Python
/// `Message` lives as long as Python keeps it, so the consumer is boxed and
/// held through a raw pointer, and the lent message is stored next to it
/// with its lifetime erased to `'static`. Invariants that make this sound:
/// - `c` comes from `Box::into_raw` and is freed only in `Drop`/`close`,
///   after `lent` is dropped: the borrow never outlives the consumer.
/// - While `lent` is `Some`, no other reference to `*c` is made: `consumer()`
///   returns `None`, and `try_lend` is only called when `lent` is `None`.
/// - The `'static` message never leaves this struct: callers see its bytes
///   only through `&self`/`&mut self` borrows of the `Lender`.
pub struct Lender {
    c: NonNull<AnyConsumer>,
    lent: Option<Lent>,
}

struct Lent {
    msg: AnyMessage<'static>,
    /// Which Python `Message` owns it (`ConsumerState::next_gen`).
    gen: u64,
    /// Buffer views of it alive now (bf_getbuffer minus bf_releasebuffer).
    exports: usize,
}

// SAFETY: `Lender` owns the consumer as a `Box` would (`AnyConsumer` is
// `Send`); the lent message borrows only that consumer (and a `&mut` to a
// `Send` type is `Send`). Nothing is shared with another owner.
unsafe impl Send for Lender {}

impl Lender {
    fn new(c: AnyConsumer) -> Self {
        Lender {
            c: NonNull::from(Box::leak(Box::new(c))),
            lent: None,
        }
    }

    /// The consumer, unless a message is lent.
    fn consumer(&mut self) -> Option<&mut AnyConsumer> {
        if self.lent.is_some() {
            return None;
        }
        // SAFETY: `c` is live (freed only in drop/close) and nothing else
        // borrows it: no message is lent, and the result borrows `self`
        // mutably, so no second reference can be made while it lives.
        Some(unsafe { self.c.as_mut() })
    }

    /// Lend the next message, if one is waiting, to the Python `Message` `gen`.
    fn try_lend(&mut self, gen: u64) -> shmpipe_core::Result<bool> {
        assert!(self.lent.is_none(), "one lent message at a time");
        // SAFETY: see the struct docs: no message is lent, so this is the
        // only reference to `*c`; if a message comes back it is stored in
        // `lent` (which keeps further references from being made until it is
        // dropped), and otherwise the reference ends here.
        let c: &'static mut AnyConsumer = unsafe { &mut *self.c.as_ptr() };
        match c.try_peek() {
            Ok(msg) => {
                self.lent = Some(Lent {
                    msg,
                    gen,
                    exports: 0,
                });
                Ok(true)
            }
            Err(Error::Empty) => Ok(false),
            Err(e) => Err(e),
        }
    }

    fn lent(&mut self, gen: u64) -> Option<&mut Lent> {
        self.lent.as_mut().filter(|l| l.gen == gen)
    }

    fn close(mut self) -> shmpipe_core::Result<()> {
        self.lent = None;
        let me = ManuallyDrop::new(self);
        // SAFETY: `c` came from `Box::into_raw` (leak); `me` is never
        // dropped, so this is the only place that frees it, and the lent
        // message that borrowed it is gone.
        let c = unsafe { Box::from_raw(me.c.as_ptr()) };
        c.close()
    }
}

impl Drop for Lender {
    fn drop(&mut self) {
        self.lent = None; // ends the borrow of `*c` first
                          // SAFETY: as in `close`; drop runs once.
        drop(unsafe { Box::from_raw(self.c.as_ptr()) });
    }
}

fn attach_consumer(pair: AnyPair) -> shmpipe_core::Result<Lender> {
    pair.into_consumer().map(Lender::new)
}

struct ConsumerState {
    end: End<Lender>,
    /// The generation the next lent message gets (a Python `Message`
    /// refers to its message by generation, so a stale one finds nothing).
    next_gen: u64,
}

impl ConsumerState {
    fn lender(&mut self, py: Python<'_>) -> PyResult<&mut Lender> {
        self.end.get(py, "Consumer", attach_consumer)
    }

    /// The consumer, for an operation other than releasing the lent message.
    fn consumer(&mut self, py: Python<'_>) -> PyResult<&mut AnyConsumer> {
        self.lender(py)?.consumer().ok_or_else(|| held(py))
    }
}

fn held(py: Python<'_>) -> PyErr {
    error(
        py,
        "the Message returned by peek() is still held: release it (msg.release() or the end of its \
         `with` block) or drop every reference to it before receiving again"
            .to_string(),
    )
}

/// The receiving end of a ring (see the module docs of `shmpipe`).
#[pyclass(frozen, module = "shmpipe", name = "Consumer")]
pub struct Consumer {
    state: Mutex<ConsumerState>,
    info: Info,
}

impl Consumer {
    pub fn attached(c: AnyConsumer, name: Option<String>) -> Self {
        let info = Info {
            capacity: c.capacity(),
            max_message: c.max_message(),
            wait: c.wait_strategy().name(),
            kind: c.kind(),
            name,
        };
        Consumer {
            state: Mutex::new(ConsumerState {
                end: End::Attached(Attached::new(Lender::new(c))),
                next_gen: 1,
            }),
            info,
        }
    }

    pub fn unattached(pair: AnyPair, info: Info) -> Self {
        Consumer {
            state: Mutex::new(ConsumerState {
                end: End::Unattached(pair),
                next_gen: 1,
            }),
            info,
        }
    }

    fn recv_impl<'py>(
        &self,
        py: Python<'py>,
        deadline: Option<Option<Instant>>,
    ) -> PyResult<Option<Bound<'py, PyBytes>>> {
        let mut st = lock(&self.state, "Consumer")?;
        let c = st.consumer(py)?;
        // Copy straight from the ring into a new bytes object, with the GIL
        // held; the message is released only after the copy.
        let attempt = |c: &mut AnyConsumer| match c.try_recv_with(|m| PyBytes::new(py, m)) {
            Ok(b) => Ok(Some(b)),
            Err(Error::Empty) => Ok(None),
            Err(e) => Err(err(py, e)),
        };
        match deadline {
            None => attempt(c), // try_recv
            Some(deadline) => {
                poll_then_wait(py, deadline, c, attempt, |c, slice| c.wait_message(slice)).map(Some)
            }
        }
    }

    /// Lend the next message to a new `Message` (None: nothing waiting and
    /// `deadline` is None, i.e. try_peek).
    fn peek_impl<'py>(
        slf: &Bound<'py, Self>,
        deadline: Option<Option<Instant>>,
    ) -> PyResult<Option<Bound<'py, PyAny>>> {
        let py = slf.py();
        // Made first, so that a failure to make it cannot leave a message
        // lent to no object.
        let obj = message_type(py).call0()?;
        let mut st = lock(&slf.get().state, "Consumer")?;
        let st = &mut *st;
        let gen = st.next_gen;
        let lender = st.end.get(py, "Consumer", attach_consumer)?;
        let attempt = |lender: &mut Lender| {
            if lender.consumer().is_none() {
                return Err(held(py));
            }
            match lender.try_lend(gen) {
                Ok(true) => Ok(Some(())),
                Ok(false) => Ok(None),
                Err(e) => Err(err(py, e)),
            }
        };
        match deadline {
            None => {
                if attempt(lender)?.is_none() {
                    return Ok(None); // try_peek
                }
            }
            Some(deadline) => poll_then_wait(py, deadline, lender, attempt, |lender, slice| {
                // Nothing is lent after an attempt that found nothing.
                match lender.consumer() {
                    Some(c) => c.wait_message(slice),
                    None => Ok(()),
                }
            })?,
        }
        st.next_gen += 1;
        let link = (slf.clone().unbind(), gen);
        let base = obj.cast::<MessageBase>()?;
        if base.get().link.set(link).is_err() {
            unreachable!("a new Message is unlinked");
        }
        Ok(Some(obj))
    }
}

#[pymethods]
impl Consumer {
    /// recv(timeout=None) -> bytes
    /// --
    ///
    /// Receive the next message as bytes, waiting at most `timeout` seconds
    /// (None: as long as it takes) with the GIL released. Raises Timeout;
    /// Disconnected once the producer closed and every message was received;
    /// PeerDied likewise if it died without closing; Corrupted.
    /// KeyboardInterrupt interrupts the wait; no message is then taken.
    #[pyo3(signature = (timeout=None))]
    fn recv<'py>(&self, py: Python<'py>, timeout: Option<f64>) -> PyResult<Bound<'py, PyBytes>> {
        let deadline = deadline_of(py, timeout)?;
        Ok(self
            .recv_impl(py, Some(deadline))?
            .expect("a blocking receive returns a message or raises"))
    }

    /// try_recv() -> bytes | None
    /// --
    ///
    /// The next message if one is waiting, else None. Never waits. Raises
    /// Disconnected / PeerDied once the producer is gone and every message
    /// was received.
    fn try_recv<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyBytes>>> {
        self.recv_impl(py, None)
    }

    /// recv_into(buffer, timeout=None) -> int
    /// --
    ///
    /// Copy the next message into the start of `buffer` (a writable
    /// bytes-like object: bytearray, memoryview, numpy array...) and return
    /// its length. If the message is longer than the buffer, raises
    /// BufferTooSmall (a ValueError) and leaves the message in the ring.
    /// Waits and raises as recv() does.
    #[pyo3(signature = (buffer, timeout=None))]
    fn recv_into(
        &self,
        py: Python<'_>,
        buffer: &Bound<'_, PyAny>,
        timeout: Option<f64>,
    ) -> PyResult<usize> {
        let deadline = deadline_of(py, timeout)?;
        let mut out = Input::get(buffer, true)?;
        let mut st = lock(&self.state, "Consumer")?;
        let c = st.consumer(py)?;
        // Copied with the GIL held, like recv.
        poll_then_wait(
            py,
            deadline,
            c,
            |c| match c.try_recv_into(out.bytes_mut()) {
                Ok(n) => Ok(Some(n)),
                Err(Error::Empty) => Ok(None),
                Err(e) => Err(err(py, e)),
            },
            |c, slice| c.wait_message(slice),
        )
    }

    /// peek(timeout=None) -> Message
    /// --
    ///
    /// Lend the next message without copying it: the returned Message gives
    /// a read-only memoryview of its bytes in shared memory. Release it with
    /// msg.release() or a `with` block; until then this consumer receives
    /// nothing else. Waits and raises as recv() does.
    #[pyo3(signature = (timeout=None))]
    fn peek<'py>(slf: &Bound<'py, Self>, timeout: Option<f64>) -> PyResult<Bound<'py, PyAny>> {
        let deadline = deadline_of(slf.py(), timeout)?;
        Ok(Self::peek_impl(slf, Some(deadline))?
            .expect("a blocking peek returns a message or raises"))
    }

    /// try_peek() -> Message | None
    /// --
    ///
    /// Like peek(), but returns None at once if no message is waiting.
    fn try_peek<'py>(slf: &Bound<'py, Self>) -> PyResult<Option<Bound<'py, PyAny>>> {
        Self::peek_impl(slf, None)
    }

    fn __iter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    /// The next message; the iteration ends when the producer has closed
    /// and every message was received (PeerDied is raised if it died).
    fn __next__<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyBytes>>> {
        match self.recv_impl(py, Some(None)) {
            Ok(m) => Ok(m),
            Err(e) if e.is_instance(py, exc(py).disconnected.bind(py)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// close()
    /// --
    ///
    /// Close the consumer side: the producer's sends then raise
    /// Disconnected. The creator of a named ring also removes its name. A
    /// peeked Message still held is dropped unreleased (a consumer that
    /// takes over would get it again); if views of it are still alive,
    /// raises BufferError and closes nothing. Idempotent.
    fn close(&self, py: Python<'_>) -> PyResult<()> {
        let mut st = lock(&self.state, "Consumer")?;
        if let End::Attached(a) = &st.end {
            if let Some(Lent { exports, .. }) = a.end.as_ref().and_then(|l| l.lent.as_ref()) {
                if *exports > 0 {
                    return Err(PyBufferError::new_err(format!(
                        "cannot close the Consumer: {exports} view(s) of its peeked Message are \
                         still alive; release them first"
                    )));
                }
            }
        }
        match st.end.take() {
            Some(l) => l.close().map_err(|e| err(py, e)),
            None => Ok(()),
        }
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    #[pyo3(signature = (*_args))]
    fn __exit__(&self, py: Python<'_>, _args: &Bound<'_, pyo3::types::PyTuple>) -> PyResult<bool> {
        self.close(py)?;
        Ok(false)
    }

    /// Data-area size of the ring in bytes.
    #[getter]
    fn capacity(&self) -> u64 {
        self.info.capacity
    }

    /// Largest message the ring accepts (capacity / 2 - 8 bytes).
    #[getter]
    fn max_message(&self) -> usize {
        self.info.max_message
    }

    /// The ring's wait strategy: "futex", "spin", "spin-yield" or "semaphore".
    #[getter]
    fn wait(&self) -> &'static str {
        self.info.wait
    }

    /// The ring design: "lockfree" or "locked".
    #[getter]
    fn variant(&self) -> &'static str {
        self.info.kind.name()
    }

    /// The segment name of a named ring; None for pipe().
    #[getter]
    fn name(&self) -> Option<String> {
        self.info.name.clone()
    }

    /// Whether close() was called (or the end could not attach).
    #[getter]
    fn closed(&self) -> PyResult<bool> {
        Ok(lock(&self.state, "Consumer")?.end.is_closed())
    }

    /// stats() -> dict
    /// --
    ///
    /// A snapshot of the ring's counters; see Producer.stats().
    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let mut st = lock(&self.state, "Consumer")?;
        // With a message lent the consumer is borrowed by it (see `Lender`).
        let c = st.consumer(py)?;
        stats_dict(py, &c.stats())
    }

    fn __reduce__(&self) -> PyResult<()> {
        Err(no_pickle("Consumer"))
    }

    fn __repr__(&self) -> PyResult<String> {
        let closed = lock(&self.state, "Consumer")
            .map(|s| s.end.is_closed())
            .unwrap_or(false);
        Ok(repr("Consumer", &self.info, closed))
    }
}

/// The pyo3 half of `shmpipe.Message` (the buffer slots are added by the
/// subclass made in `buffer::message_type`).
#[pyclass(subclass, frozen, module = "shmpipe", name = "_MessageBase")]
pub struct MessageBase {
    /// The consumer that lent it and the lent message's generation; unset
    /// for a `Message()` made by hand (which holds nothing).
    link: OnceLock<(Py<Consumer>, u64)>,
    /// A weak reference to the memoryview `__enter__` handed out, released by
    /// `release`. Weak: a strong one would make a cycle (the view's buffer
    /// holds this object) that the garbage collector cannot see through a
    /// pyo3 class, and a lost `__exit__` would then keep the message lent.
    view: Mutex<Option<Py<PyAny>>>,
}

impl MessageBase {
    /// Run `f` on our lent message, if it is still lent.
    fn with_lent<R>(&self, f: impl FnOnce(&mut Lent) -> R) -> Option<R> {
        let (consumer, gen) = self.link.get()?;
        // try_lock: while a message is lent nothing holds the consumer's
        // lock across a wait (every other operation refuses at once), so a
        // busy lock means our message is not lent (any more).
        let mut st = consumer.get().state.try_lock().ok()?;
        match &mut st.end {
            End::Attached(a) if a.ours() => a.end.as_mut()?.lent(*gen).map(f),
            _ => None,
        }
    }

    /// For `bf_getbuffer`: the bytes to lend, counting one more export.
    /// While exports are counted the message cannot be released and the
    /// consumer cannot close, so the pointer stays valid and its bytes
    /// unchanged (the producer cannot reuse space that was not released).
    pub fn export(&self, _py: Python<'_>) -> PyResult<(*const u8, usize)> {
        self.with_lent(|l| {
            l.exports += 1;
            let b = l.msg.bytes();
            (b.as_ptr(), b.len())
        })
        .ok_or_else(released)
    }

    /// For `bf_releasebuffer` (and a failed `bf_getbuffer`).
    pub fn unexport(&self, _py: Python<'_>) {
        self.with_lent(|l| l.exports = l.exports.saturating_sub(1));
    }

    fn release_impl(&self, py: Python<'_>) -> PyResult<()> {
        let view = self.view.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(weak) = view {
            let v = weak.bind(py).call0()?;
            if !v.is_none() {
                if let Err(e) = v.call_method0("release") {
                    // Arrays made from the view are alive. The message stays
                    // lent until they are gone and it is released, or until
                    // this Message is dropped (then it is received again).
                    return Err(PyBufferError::new_err(format!(
                        "cannot release the message: {e} (arrays or views made from its \
                         memoryview are still alive; delete them first)"
                    )));
                }
            }
        }
        let Some((consumer, gen)) = self.link.get() else {
            return Ok(());
        };
        let mut st = lock(&consumer.get().state, "Consumer")?;
        let End::Attached(a) = &mut st.end else {
            return Ok(());
        };
        if !a.ours() {
            return Ok(());
        }
        let Some(lender) = a.end.as_mut() else {
            return Ok(());
        };
        let Some(lent) = lender.lent(*gen) else {
            return Ok(()); // released already
        };
        if lent.exports > 0 {
            return Err(PyBufferError::new_err(format!(
                "cannot release the message: {} view(s) of it are still alive (memoryviews, slices \
                 or arrays made from it); release them first (memoryview.release(), or \
                 `with memoryview(msg) as v:`); the message stays in the ring until then",
                lent.exports
            )));
        }
        if let Some(l) = lender.lent.take() {
            l.msg.release();
        }
        Ok(())
    }
}

fn released() -> PyErr {
    PyValueError::new_err(
        "this Message was released (or its Consumer closed, or it does not come from peek()): \
         its bytes may already be reused; copy what you need before release()",
    )
}

#[pymethods]
impl MessageBase {
    #[new]
    fn new() -> Self {
        MessageBase {
            link: OnceLock::new(),
            view: Mutex::new(None),
        }
    }

    /// release()
    /// --
    ///
    /// Free the message's space in the ring (the producer may reuse it).
    /// Releases the memoryview given by `with` first. Raises BufferError if
    /// other views of the message are still alive (nothing is released
    /// then). Idempotent.
    fn release(&self, py: Python<'_>) -> PyResult<()> {
        self.release_impl(py)
    }

    /// Whether the message was released (or its Consumer closed).
    #[getter]
    fn released(&self) -> bool {
        self.with_lent(|_| ()).is_none()
    }

    fn __len__(&self) -> PyResult<usize> {
        self.with_lent(|l| l.msg.bytes().len()).ok_or_else(released)
    }

    /// tobytes() -> bytes
    /// --
    ///
    /// A copy of the message's bytes. Raises ValueError after release().
    fn tobytes<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyBytes>> {
        self.with_lent(|l| PyBytes::new(py, l.msg.bytes()))
            .ok_or_else(released)
    }

    fn __bytes__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyBytes>> {
        self.tobytes(py)
    }

    /// A read-only memoryview of the message, released with it at the end
    /// of the `with` block (using it afterwards raises ValueError).
    fn __enter__<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyAny>> {
        let me = slf.get();
        let mut view = me.view.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(weak) = view.as_ref() {
            let v = weak.bind(slf.py()).call0()?;
            if !v.is_none() {
                return Ok(v);
            }
        }
        let v = PyMemoryView::from(slf.as_any())?.into_any();
        let weak = slf.py().import("weakref")?.getattr("ref")?.call1((&v,))?;
        *view = Some(weak.unbind());
        Ok(v)
    }

    #[pyo3(signature = (*_args))]
    fn __exit__(&self, py: Python<'_>, _args: &Bound<'_, pyo3::types::PyTuple>) -> PyResult<bool> {
        self.release_impl(py)?;
        Ok(false)
    }

    fn __reduce__(&self) -> PyResult<()> {
        Err(no_pickle("Message"))
    }

    fn __repr__(&self) -> String {
        match self.with_lent(|l| l.msg.bytes().len()) {
            Some(n) => format!("<shmpipe.Message len={n}>"),
            None => "<shmpipe.Message released>".to_string(),
        }
    }
}

impl Drop for MessageBase {
    fn drop(&mut self) {
        // Dropped unreleased: the message stays in the ring (as with the
        // library's `Message`), and the consumer may receive again. No view
        // can be alive here: every view holds a reference to this object.
        if let Some((consumer, gen)) = self.link.get() {
            if let Ok(mut st) = consumer.get().state.try_lock() {
                if let End::Attached(a) = &mut st.end {
                    if a.ours() {
                        if let Some(l) = a.end.as_mut() {
                            if l.lent.as_ref().is_some_and(|x| x.gen == *gen) {
                                l.lent = None;
                            }
                        }
                    }
                }
            }
        }
    }
}

/// `shmpipe.Message`, set when the module is imported (made in
/// `buffer::message_type`).
pub(crate) static MESSAGE_TYPE: PyOnceLock<Py<PyType>> = PyOnceLock::new();

fn message_type(py: Python<'_>) -> &Bound<'_, PyType> {
    MESSAGE_TYPE
        .get(py)
        .expect("the Message type is made when the module is imported")
        .bind(py)
}
