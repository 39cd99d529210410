//! # shmpipe-tokio
//!
//! Async ends for [shmpipe] rings: [`AsyncConsumer`] and [`AsyncProducer`]
//! wrap the library handles with `send(..).await`, `recv(..).await`,
//! `recv_with(..).await`, `claim(..).await`, [`futures_core::Stream`] /
//! [`futures_sink::Sink`] and [`tokio::io::AsyncRead`] / [`tokio::io::AsyncWrite`].
//! The peer can be a plain blocking shmpipe endpoint in another process:
//! the cross-process protocol is unchanged.
//!
//! # How it waits
//! - Fast path: every operation first tries the ring (`try_recv`,
//!   `try_send`, ...). No syscall, no allocation, no lock.
//! - Only when the ring is empty (full) does the handle register with the
//!   reactor: one process-wide [`shmpipe::WaitSet`] in eventfd mode (its
//!   background waiters sleep in `futex_waitv` over groups of 127 rings) and
//!   one reactor thread that sleeps in `poll(2)` on the set's eventfd and
//!   wakes the tasks whose rings became ready. Not one thread per ring.
//!   Registrations are one-shot: a ring is removed from the set when it is
//!   reported (or when the operation completes or is dropped), so a ready
//!   ring nobody polls costs nothing.
//! - A closed peer wakes the operation at once (`Disconnected`); a killed
//!   one is found by the reactor's liveness check within about 500 ms (the
//!   set's slice, see [`set_slice`]): the operation returns `PeerDied`.
//! - Linux >= 5.16 (`futex_waitv`): on an older kernel an operation that
//!   would park returns `Io`, naming the kernel version (an operation that
//!   finds a message or room still completes).
//! - Rings with the `Semaphore` strategy are refused (see
//!   [`shmpipe::WaitSet`]); `Spin` / `SpinYield` rings are polled by the
//!   reactor with a backoff bounded by 1 ms.
//!
//! # Costs
//! - A receive that finds the ring empty polls it for about 2,000 spins
//!   (a few microseconds) before it parks, so a ping-pong with an awake
//!   peer rarely goes through the reactor.
//! - While idle, each background waiter wakes once per slice (500 ms),
//!   re-checks its rings and asks the kernel whether each ring's peer is
//!   alive (one `fcntl`, ~3.5 us); registrations stand across these
//!   wake-ups. Measured: 1,000 parked receives 11-12 ms of CPU over 2 s,
//!   about 0.6% of a core (the `idle_async_consumers` test).
//! - Benchmark: `cargo run --release -p shmpipe-tokio --example bench`.
//!
//! # Rules
//! One endpoint is waited on in one place at a time (see
//! [`shmpipe::WaitSet`]): do not also call the blocking methods of the same
//! ring elsewhere. The handles are `Send`; each operation takes `&mut self`.
//!
//! # Cancel safety
//! Stated per method: an operation either completes within one poll or has
//! changed nothing in the ring, so dropping its future loses no message and
//! commits nothing.

#![deny(missing_docs)]
#![warn(clippy::undocumented_unsafe_blocks)]

use std::collections::HashMap;
use std::future::poll_fn;
use std::os::fd::{AsRawFd, RawFd};
use std::pin::Pin;
use std::sync::atomic::{AtomicPtr, Ordering};
use std::sync::Mutex;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use shmpipe::{Claim, Consumer, Error, Events, Producer, Result, Token, WaitSet};

// ---------------------------------------------------------------------------
// Reactor

struct State {
    set: WaitSet,
    /// Registered interest: token -> (registration id, waker).
    wakers: HashMap<Token, (u64, Waker)>,
    next_id: u64,
    events: Events,
}

struct Reactor {
    state: Mutex<State>,
    /// The process that started it.
    pid: u32,
}

impl Reactor {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// This process's reactor, started on first use. A forked child (which
    /// inherits the parent's memory but not its threads) starts its own.
    fn get() -> Result<&'static Reactor> {
        static R: AtomicPtr<Reactor> = AtomicPtr::new(std::ptr::null_mut());
        let pid = std::process::id();
        // Acquire: pairs with the Release compare_exchange that published it.
        let p = R.load(Ordering::Acquire);
        // SAFETY: a non-null pointer came from Box::leak below and is never freed.
        if let Some(r) = unsafe { p.as_ref() } {
            if r.pid == pid {
                return Ok(r);
            }
        }
        let mut set = WaitSet::new()?;
        let fd = set.as_fd().as_raw_fd();
        let new: &'static mut Reactor = Box::leak(Box::new(Reactor {
            state: Mutex::new(State {
                set,
                wakers: HashMap::new(),
                next_id: 1,
                events: Events::new(),
            }),
            pid,
        }));
        let new_ptr: *mut Reactor = new;
        // Release/Acquire: publishes the reactor to other threads. A loser
        // of the race leaks its unused reactor (once per process at most
        // per racing thread).
        match R.compare_exchange(p, new_ptr, Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => {}
            Err(other) => {
                // SAFETY: as above.
                if let Some(r) = unsafe { other.as_ref() } {
                    if r.pid == pid {
                        return Ok(r);
                    }
                }
            }
        }
        // SAFETY: as above; we just published it.
        let r: &'static Reactor = unsafe { &*new_ptr };
        std::thread::Builder::new()
            .name("shmpipe-tokio-reactor".into())
            .spawn(move || r.run(fd))
            .map_err(|e| Error::Io {
                op: "starting the shmpipe-tokio reactor thread",
                name: None,
                source: e,
            })?;
        Ok(r)
    }

    /// The reactor thread: sleep in poll(2) on the set's eventfd, collect
    /// the ready rings, drop them from the set, wake their tasks.
    fn run(&self, fd: RawFd) {
        let mut ready = Vec::new();
        loop {
            let mut p = libc::pollfd {
                fd,
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: one valid pollfd; the set (and its fd) lives forever.
            unsafe { libc::poll(&mut p, 1, -1) };
            {
                let mut st = self.state();
                let st = &mut *st;
                if st.set.wait(&mut st.events, Some(Duration::ZERO)).is_err() {
                    continue;
                }
                for ev in st.events.iter() {
                    if let Some((_, w)) = st.wakers.remove(&ev.token) {
                        st.set.remove(ev.token);
                        ready.push(w);
                    }
                }
            }
            for w in ready.drain(..) {
                w.wake();
            }
        }
    }
}

/// Set the longest sleep of this process's reactor, which is also how often
/// it asks the kernel whether each parked ring's peer is still alive
/// (default [`shmpipe::waitset::DEFAULT_SLICE`], 500 ms): a killed peer is
/// reported within about one slice. Shorter reports deaths sooner and costs
/// more while idle (one `fcntl`, a few microseconds, per parked ring per
/// slice). Starts the reactor if it is not running.
///
/// # Errors
/// As the reactor's start: `Io` if the kernel lacks `futex_waitv(2)`
/// (Linux < 5.16) or a thread or eventfd cannot be created.
pub fn set_slice(slice: Duration) -> Result<()> {
    Reactor::get()?.state().set.set_slice(slice);
    Ok(())
}

/// One handle's registration with the reactor (at most one at a time).
#[derive(Default)]
struct Registration {
    reg: Option<(Token, u64)>,
}

enum Side<'a> {
    Consumer(&'a mut Consumer),
    Producer(&'a Producer, usize),
}

impl Registration {
    /// Ask to be woken when the ring is ready; keeps an existing
    /// registration (updating its waker) if the reactor has not fired it.
    fn register(&mut self, cx: &Context<'_>, side: Side<'_>) -> Result<()> {
        let r = Reactor::get()?;
        let mut st = r.state();
        if let Some((t, id)) = self.reg {
            if let Some((have, w)) = st.wakers.get_mut(&t) {
                if *have == id {
                    if !w.will_wake(cx.waker()) {
                        *w = cx.waker().clone();
                    }
                    return Ok(());
                }
            }
        }
        let t = match side {
            Side::Consumer(c) => st.set.add_consumer(c)?,
            Side::Producer(p, len) => st.set.add_producer_for(p, len)?,
        };
        let id = st.next_id;
        st.next_id += 1;
        st.wakers.insert(t, (id, cx.waker().clone()));
        self.reg = Some((t, id));
        Ok(())
    }

    /// Withdraw a registration that has not fired (cheap when there is none).
    fn clear(&mut self) {
        let Some((t, id)) = self.reg.take() else {
            return;
        };
        let Ok(r) = Reactor::get() else { return };
        let mut st = r.state();
        if st.wakers.get(&t).is_some_and(|(have, _)| *have == id) {
            st.wakers.remove(&t);
            st.set.remove(t);
        }
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.clear();
    }
}

// ---------------------------------------------------------------------------
// Consumer

/// Polls of an empty ring before a receive parks (a few microseconds: well
/// under the 10-100 us a task may run between awaits).
const SPIN_POLLS: u32 = 2000;

/// The receiving end of a ring, for tokio. See the crate docs.
pub struct AsyncConsumer {
    rx: Consumer,
    reg: Registration,
    /// `AsyncRead`: the rest of a message larger than the caller's buffer.
    partial: Vec<u8>,
    partial_pos: usize,
}

impl std::fmt::Debug for AsyncConsumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AsyncConsumer")
            .field("rx", &self.rx)
            .finish()
    }
}

impl AsyncConsumer {
    /// Wrap `rx`.
    ///
    /// # Errors
    /// `InvalidOption` for a `Semaphore` ring (it cannot be multiplexed).
    pub fn new(rx: Consumer) -> Result<AsyncConsumer> {
        if rx.wait_strategy() == shmpipe::WaitStrategy::Semaphore {
            return Err(Error::InvalidOption {
                reason: "shmpipe-tokio cannot wait on a Semaphore ring; create it with \
                         WaitStrategy::Futex (or Spin/SpinYield, which are polled)"
                    .into(),
            });
        }
        Ok(AsyncConsumer {
            rx,
            reg: Registration::default(),
            partial: Vec::new(),
            partial_pos: 0,
        })
    }

    /// The wrapped handle.
    pub fn get_mut(&mut self) -> &mut Consumer {
        &mut self.rx
    }

    /// Poll one receive: `f` sees the next message. Ready with `f`'s result
    /// or an error other than `Empty`.
    pub fn poll_recv_with<R>(
        &mut self,
        cx: &mut Context<'_>,
        f: impl FnOnce(&[u8]) -> R,
    ) -> Poll<Result<R>> {
        let mut f = Some(f);
        // `f` runs at most once: every attempt that finds a message returns.
        let mut attempt = |rx: &mut Consumer| {
            rx.try_recv_with(|m| f.take().map(|f| f(m)))
                .map(|r| r.expect("f runs once"))
        };
        match attempt(&mut self.rx) {
            Err(Error::Empty) => {}
            other => {
                self.reg.clear();
                return Poll::Ready(other);
            }
        }
        // Empty: poll the ring's signal briefly (a peer that is awake
        // usually publishes within microseconds, and a park costs a wake-up
        // through the reactor), unless we were already woken once.
        if self.reg.reg.is_none() {
            for _ in 0..SPIN_POLLS {
                if !self.rx.is_empty() {
                    match attempt(&mut self.rx) {
                        Err(Error::Empty) => break,
                        other => return Poll::Ready(other),
                    }
                }
                std::hint::spin_loop();
            }
        }
        // Register, then look again: a message published before the
        // registration took effect is seen here; one after it wakes us.
        if let Err(e) = self.reg.register(cx, Side::Consumer(&mut self.rx)) {
            return Poll::Ready(Err(e));
        }
        match attempt(&mut self.rx) {
            Err(Error::Empty) => Poll::Pending,
            other => {
                self.reg.clear();
                Poll::Ready(other)
            }
        }
    }

    /// Receive the next message into `buf` (replacing its contents);
    /// returns its length.
    ///
    /// Cancel safe: a message is taken out of the ring only in the poll
    /// that completes the future; dropping it earlier loses nothing.
    ///
    /// # Errors
    /// As [`Consumer::recv`].
    pub async fn recv(&mut self, buf: &mut Vec<u8>) -> Result<usize> {
        poll_fn(|cx| {
            self.poll_recv_with(cx, |m| {
                buf.clear();
                buf.extend_from_slice(m);
                m.len()
            })
        })
        .await
    }

    /// Receive the next message by lending it to `f`, then release it.
    ///
    /// Cancel safe: as [`AsyncConsumer::recv`] (`f` runs only in the
    /// completing poll).
    ///
    /// # Errors
    /// As [`Consumer::recv_with`].
    pub async fn recv_with<R>(&mut self, f: impl FnOnce(&[u8]) -> R) -> Result<R> {
        let mut f = Some(f);
        poll_fn(|cx| {
            let g = f.take().expect("polled after completion");
            let mut g = Some(g);
            match self.poll_recv_with(cx, |m| (g.take().expect("called once"))(m)) {
                Poll::Pending => {
                    f = g; // not called: keep it for the next poll
                    Poll::Pending
                }
                r => r,
            }
        })
        .await
    }
}

impl futures_core::Stream for AsyncConsumer {
    type Item = Result<Vec<u8>>;
    /// Each message as a `Vec`; ends (`None`) when the producer closed
    /// and everything was received. `PeerDied` and other errors are items.
    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        match this.poll_recv_with(cx, |m| m.to_vec()) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Err(Error::Disconnected)) => Poll::Ready(None),
            Poll::Ready(r) => Poll::Ready(Some(r)),
        }
    }
}

impl tokio::io::AsyncRead for AsyncConsumer {
    /// Byte stream over the messages (boundaries are not kept); EOF when
    /// the producer closed and everything was read.
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        if this.partial_pos < this.partial.len() {
            let n = out.remaining().min(this.partial.len() - this.partial_pos);
            out.put_slice(&this.partial[this.partial_pos..this.partial_pos + n]);
            this.partial_pos += n;
            return Poll::Ready(Ok(()));
        }
        // Taken out for the closure (keeps its allocation).
        let mut partial = std::mem::take(&mut this.partial);
        let r = this.poll_recv_with(cx, |m| {
            let n = out.remaining().min(m.len());
            out.put_slice(&m[..n]);
            partial.clear();
            partial.extend_from_slice(&m[n..]);
        });
        if matches!(r, Poll::Ready(Ok(()))) {
            this.partial_pos = 0; // `partial` now holds the new message's rest
        }
        this.partial = partial;
        match r {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Ok(())) | Poll::Ready(Err(Error::Disconnected)) => Poll::Ready(Ok(())),
            Poll::Ready(Err(e)) => Poll::Ready(Err(e.into())),
        }
    }
}

// ---------------------------------------------------------------------------
// Producer

/// The sending end of a ring, for tokio. See the crate docs.
pub struct AsyncProducer {
    tx: Producer,
    reg: Registration,
    /// `Sink`: the item accepted by `start_send`, not yet in the ring.
    pending: Option<Vec<u8>>,
}

impl std::fmt::Debug for AsyncProducer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AsyncProducer")
            .field("tx", &self.tx)
            .finish()
    }
}

impl AsyncProducer {
    /// Wrap `tx`.
    ///
    /// # Errors
    /// `InvalidOption` for a `Semaphore` ring.
    pub fn new(tx: Producer) -> Result<AsyncProducer> {
        if tx.wait_strategy() == shmpipe::WaitStrategy::Semaphore {
            return Err(Error::InvalidOption {
                reason: "shmpipe-tokio cannot wait on a Semaphore ring; create it with \
                         WaitStrategy::Futex (or Spin/SpinYield, which are polled)"
                    .into(),
            });
        }
        Ok(AsyncProducer {
            tx,
            reg: Registration::default(),
            pending: None,
        })
    }

    /// The wrapped handle.
    pub fn get_mut(&mut self) -> &mut Producer {
        &mut self.tx
    }

    /// Poll until a message of `len` bytes fits (Ready(Ok)) or the
    /// consumer is gone (Ready(Err)).
    pub fn poll_room(&mut self, cx: &mut Context<'_>, len: usize) -> Poll<Result<()>> {
        self.poll_try(cx, len, |tx| tx.try_claim(len).map(drop))
    }

    fn poll_try(
        &mut self,
        cx: &mut Context<'_>,
        len: usize,
        mut attempt: impl FnMut(&mut Producer) -> Result<()>,
    ) -> Poll<Result<()>> {
        for second in [false, true] {
            match attempt(&mut self.tx) {
                Err(Error::Full) => {}
                other => {
                    self.reg.clear();
                    return Poll::Ready(other);
                }
            }
            if second {
                break;
            }
            if let Err(e) = self.reg.register(cx, Side::Producer(&self.tx, len)) {
                return Poll::Ready(Err(e));
            }
        }
        Poll::Pending
    }

    /// Poll one send of `msg`.
    pub fn poll_send(&mut self, cx: &mut Context<'_>, msg: &[u8]) -> Poll<Result<()>> {
        self.poll_try(cx, msg.len(), |tx| tx.try_send(msg))
    }

    /// Send `msg`, waiting for room.
    ///
    /// Cancel safe: the message is written in the poll that completes the
    /// future, or not at all.
    ///
    /// # Errors
    /// As [`Producer::send`].
    pub async fn send(&mut self, msg: &[u8]) -> Result<()> {
        poll_fn(|cx| self.poll_send(cx, msg)).await
    }

    /// Reserve `len` bytes to write a message in place (see
    /// [`Producer::claim`]): commit the returned claim, or drop it to abort.
    ///
    /// Cancel safe: the claim is taken in the completing poll; dropping
    /// the future earlier commits nothing.
    ///
    /// # Errors
    /// As [`Producer::claim`].
    pub async fn claim(&mut self, len: usize) -> Result<Claim<'_>> {
        poll_fn(|cx| self.poll_room(cx, len)).await?;
        // Room stays: only this handle takes it.
        self.tx.try_claim(len)
    }
}

impl futures_sink::Sink<Vec<u8>> for AsyncProducer {
    type Error = Error;
    fn poll_ready(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        self.poll_flush(cx)
    }
    fn start_send(self: Pin<&mut Self>, item: Vec<u8>) -> Result<()> {
        let this = self.get_mut();
        match this.tx.try_send(&item) {
            Err(Error::Full) => {
                this.pending = Some(item);
                Ok(())
            }
            r => r,
        }
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        let this = self.get_mut();
        let Some(item) = this.pending.take() else {
            return Poll::Ready(Ok(()));
        };
        let r = this.poll_send(cx, &item);
        if r.is_pending() {
            this.pending = Some(item);
        }
        r
    }
    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        self.poll_flush(cx)
    }
}

impl tokio::io::AsyncWrite for AsyncProducer {
    /// Sends up to [`Producer::max_message`] bytes of `buf` as one message.
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let n = buf.len().min(this.tx.max_message());
        match this.poll_send(cx, &buf[..n]) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Ok(())) => Poll::Ready(Ok(n)),
            Poll::Ready(Err(e)) => Poll::Ready(Err(e.into())),
        }
    }
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}
