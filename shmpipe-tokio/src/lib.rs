//! # shmpipe-tokio
//!
//! Async ends for [shmpipe] rings: [`AsyncConsumer`] and [`AsyncProducer`]
//! wrap the library handles with `send(..).await`, `recv(..).await`,
//! `recv_with(..).await`, `claim(..).await`, [`futures_core::Stream`] /
//! [`futures_sink::Sink`] and [`tokio::io::AsyncRead`] / [`tokio::io::AsyncWrite`].
//! The peer can be a plain blocking shmpipe endpoint in another process:
//! the cross-process protocol is unchanged.
//!
//! # Example
//! A runtime, a ring, a receiving task, sends three ways, and the close
//! that ends the stream. (For two processes, create the ring by name with
//! [`shmpipe::Builder::create_consumer`] here and
//! [`shmpipe::Builder::open_producer`] there, or pass an anonymous pair
//! across `fork`, as the tests do.)
//!
//! ```
//! use futures::{SinkExt, StreamExt};
//! use shmpipe::{Builder, Error, WaitStrategy};
//! use shmpipe_tokio::{AsyncConsumer, AsyncProducer};
//!
//! fn main() -> Result<(), Error> {
//!     let rt = tokio::runtime::Builder::new_multi_thread()
//!         .enable_all()
//!         .build()
//!         .map_err(|e| Error::Io { op: "starting tokio", name: None, source: e })?;
//!     rt.block_on(async {
//!         // Futex (the default) or Spin/SpinYield; not Semaphore.
//!         let (tx, rx) = Builder::new()
//!             .wait(WaitStrategy::Futex)
//!             .in_process()?
//!             .split()?;
//!         let mut tx = AsyncProducer::new(tx)?;
//!         let mut rx = AsyncConsumer::new(rx)?;
//!
//!         let reader = tokio::spawn(async move {
//!             let mut got = Vec::new();
//!             let mut buf = Vec::new();
//!             // One receive: the message is copied into `buf`.
//!             rx.recv(&mut buf).await?;
//!             got.push(buf.clone());
//!             // Then as a Stream, which ends when the producer closed and
//!             // everything was read (`PeerDied` would be an `Err` item).
//!             while let Some(m) = rx.next().await {
//!                 got.push(m?);
//!             }
//!             Ok::<_, Error>(got)
//!         });
//!
//!         tx.send(b"one").await?; // the inherent send takes &[u8]
//!         // The Sink's send (a Vec<u8>); the inherent method hides it in
//!         // method-call syntax, so call it through the trait.
//!         SinkExt::send(&mut tx, b"two".to_vec()).await?;
//!         // In place, through a claim.
//!         let mut claim = tx.claim(5).await?;
//!         claim.copy_from_slice(b"three");
//!         claim.commit();
//!         // Close the producer side (after sending anything a Sink send
//!         // left pending): the reader gets the rest, then the end.
//!         // `SinkExt::close(&mut tx)` and `AsyncWriteExt::shutdown` do the
//!         // same without consuming `tx`.
//!         tx.close().await?;
//!
//!         let got = reader.await.expect("reader task")?;
//!         assert_eq!(got, [&b"one"[..], b"two", b"three"]);
//!         Ok(())
//!     })
//! }
//! ```
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
//!   ring nobody polls costs nothing. The set never keeps a ring alive: a
//!   dropped handle's ring is unmapped, and its name removed, at once.
//! - A closed peer wakes the operation at once (`Disconnected`); a killed
//!   one as soon as its process exits (the set follows each peer's process
//!   with a pidfd, then checks its role lock): the operation returns
//!   `PeerDied`, typically within a millisecond. A ring whose peer's pid
//!   cannot be followed is checked every slice (500 ms, see [`set_slice`]).
//! - Linux >= 5.16 (`futex_waitv`): on an older kernel an operation that
//!   would park returns `Io`, naming the kernel version (an operation that
//!   finds a message or room still completes).
//! - Rings with the `Semaphore` strategy are refused (see
//!   [`shmpipe::WaitSet`]); `Spin` / `SpinYield` rings are polled by the
//!   reactor with a backoff bounded by 1 ms.
//!
//! # Closing
//! Dropping a handle closes its side. [`AsyncProducer::close`],
//! `SinkExt::close(&mut tx)` and `AsyncWriteExt::shutdown` first send an
//! item a `Sink` send left waiting for room, then close the producer side
//! (the consumer receives everything, then `Disconnected`), and report
//! errors; sends after that fail with `Io` (`BrokenPipe`).
//! [`AsyncConsumer::close`] closes the consumer side. `into_inner` gives
//! the blocking handle back (and hands the wrapper back instead while it
//! holds something not yet in the ring or not yet read).
//!
//! # Costs
//! - A receive that finds the ring empty polls it for about 2,000 spins
//!   (a few microseconds) before it parks, so a ping-pong with an awake
//!   peer rarely goes through the reactor.
//! - While idle, each background waiter sleeps 4 slices (2 s) when a pidfd
//!   follows the peer of every ring it watches (one slice otherwise), then
//!   re-checks its rings and asks the kernel about the peers whose
//!   fallback check is due (one `fcntl`, ~3.5 us each); registrations stand
//!   across these wake-ups. Measured: 1,000 parked receives about 7 ms of
//!   CPU over 4 s, 0.17% of a core (the `idle_async_consumers` test; 0.5%
//!   before pidfds).
//! - Benchmark: `cargo run --release -p shmpipe-tokio --example bench`.
//!
//! # Rules
//! One endpoint is waited on in one place at a time (see
//! [`shmpipe::WaitSet`]): do not also call the blocking methods of the same
//! ring elsewhere. The handles are `Send`; each operation takes `&mut self`.
//!
//! # Your own event loop
//! A [`shmpipe::WaitSet`] is `AsRawFd`, so tokio's `AsyncFd` can own one:
//! `AsyncFd::register_with_interest(set, Interest::READABLE)` (its safety
//! condition holds: the set's descriptor stays the same open eventfd for
//! the set's life), then `afd.readable_mut().await?` and
//! `guard.get_inner_mut().wait(&mut events, Some(Duration::ZERO))`,
//! `guard.clear_ready()`; `afd.get_mut()` for `add_consumer` / `remove`.
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
        let set = WaitSet::new()?;
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
/// it asks the kernel whether a parked ring's peer is still alive when it
/// cannot follow that peer's process with a pidfd (default
/// [`shmpipe::waitset::DEFAULT_SLICE`], 500 ms; followed rings every
/// [`shmpipe::waitset::COVERED_SLICES`] slices): such a killed peer is
/// reported within about one slice; a followed one when its process exits.
/// Shorter costs more while idle (one `fcntl`, a few microseconds, per
/// checked ring per slice). Starts the reactor if it is not running.
///
/// ```
/// // Report a killed peer whose process cannot be followed within ~100 ms:
/// shmpipe_tokio::set_slice(std::time::Duration::from_millis(100))?;
/// # Ok::<(), shmpipe::Error>(())
/// ```
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

/// Refuse a ring the reactor cannot wait on: a `Semaphore` ring's wake-up
/// is a post to its counting semaphore, which the set does not sleep on
/// (see [`shmpipe::WaitSet`]).
fn check_strategy(strategy: shmpipe::WaitStrategy) -> Result<()> {
    if strategy == shmpipe::WaitStrategy::Semaphore {
        return Err(Error::InvalidOption {
            reason: "shmpipe-tokio cannot wait on a Semaphore ring; create it with \
                     WaitStrategy::Futex (or Spin/SpinYield, which are polled)"
                .into(),
        });
    }
    Ok(())
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
    /// ```
    /// use shmpipe::{Builder, Error, WaitStrategy};
    /// use shmpipe_tokio::AsyncConsumer;
    /// let (_tx, rx) = Builder::new().capacity(4096).in_process()?.split()?;
    /// let _rx = AsyncConsumer::new(rx)?; // Futex: the default
    /// let (_tx, rx) = Builder::new().wait(WaitStrategy::Semaphore).in_process()?.split()?;
    /// assert!(matches!(AsyncConsumer::new(rx), Err(Error::InvalidOption { .. })));
    /// # Ok::<(), shmpipe::Error>(())
    /// ```
    ///
    /// # Errors
    /// `InvalidOption` for a `Semaphore` ring (it cannot be multiplexed).
    pub fn new(rx: Consumer) -> Result<AsyncConsumer> {
        check_strategy(rx.wait_strategy())?;
        Ok(AsyncConsumer {
            rx,
            reg: Registration::default(),
            partial: Vec::new(),
            partial_pos: 0,
        })
    }

    /// The wrapped handle.
    ///
    /// ```
    /// let (mut tx, rx) = shmpipe::Builder::new().capacity(4096).in_process()?.split()?;
    /// let mut rx = shmpipe_tokio::AsyncConsumer::new(rx)?;
    /// tx.send(b"x")?;
    /// assert_eq!(rx.get_mut().len_bytes(), 16); // the blocking handle's calls
    /// # Ok::<(), shmpipe::Error>(())
    /// ```
    pub fn get_mut(&mut self) -> &mut Consumer {
        &mut self.rx
    }

    /// Unwrap the handle, for the blocking calls. Nothing is lost: if
    /// `AsyncRead` still holds the rest of a message larger than the
    /// buffer it was read into, the wrapper is handed back as `Err` (read
    /// on until it is empty).
    ///
    /// ```
    /// let (mut tx, rx) = shmpipe::Builder::new().capacity(4096).in_process()?.split()?;
    /// let rx = shmpipe_tokio::AsyncConsumer::new(rx)?;
    /// let mut rx = rx.into_inner().expect("no partly read message");
    /// tx.send(b"blocking again")?;
    /// rx.recv_with(|m| assert_eq!(m, b"blocking again"))?;
    /// # Ok::<(), shmpipe::Error>(())
    /// ```
    #[allow(clippy::result_large_err)]
    pub fn into_inner(self) -> std::result::Result<Consumer, AsyncConsumer> {
        if self.partial_pos < self.partial.len() {
            return Err(self);
        }
        let AsyncConsumer { rx, reg, .. } = self;
        drop(reg); // withdraws a registration that has not fired
        Ok(rx)
    }

    /// Close the consumer side now, as [`Consumer::close`]: the producer's
    /// sends then fail with `Disconnected`. The same as dropping the
    /// handle, but errors are reported.
    ///
    /// ```
    /// let (mut tx, rx) = shmpipe::Builder::new().capacity(4096).in_process()?.split()?;
    /// shmpipe_tokio::AsyncConsumer::new(rx)?.close()?;
    /// assert!(matches!(tx.send(b"x"), Err(shmpipe::Error::Disconnected)));
    /// # Ok::<(), shmpipe::Error>(())
    /// ```
    ///
    /// # Errors
    /// As [`Consumer::close`] (e.g. removing the name of a segment this
    /// handle created failed).
    pub fn close(self) -> Result<()> {
        let AsyncConsumer { rx, reg, .. } = self;
        drop(reg);
        rx.close()
    }

    /// Poll one receive: `f` sees the next message. Ready with `f`'s result
    /// or an error other than `Empty`.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> shmpipe::Result<()> {
    /// let (mut tx, rx) = shmpipe::Builder::new().capacity(4096).in_process()?.split()?;
    /// let mut rx = shmpipe_tokio::AsyncConsumer::new(rx)?;
    /// tx.send(b"polled")?;
    /// // E.g. inside a hand-written Future's `poll`:
    /// let n = std::future::poll_fn(|cx| rx.poll_recv_with(cx, |m| m.len())).await?;
    /// assert_eq!(n, 6);
    /// # Ok(())
    /// # }
    /// ```
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
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> shmpipe::Result<()> {
    /// let (mut tx, rx) = shmpipe::Builder::new().capacity(4096).in_process()?.split()?;
    /// let mut rx = shmpipe_tokio::AsyncConsumer::new(rx)?;
    /// let t = std::thread::spawn(move || tx.send(b"from a blocking peer"));
    /// let mut buf = Vec::new();
    /// assert_eq!(rx.recv(&mut buf).await?, 20); // parks the task, not the thread
    /// assert_eq!(buf, b"from a blocking peer");
    /// t.join().unwrap()?;
    /// # Ok(())
    /// # }
    /// ```
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
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> shmpipe::Result<()> {
    /// let (mut tx, rx) = shmpipe::Builder::new().capacity(4096).in_process()?.split()?;
    /// let mut rx = shmpipe_tokio::AsyncConsumer::new(rx)?;
    /// tx.send(b"a b c")?;
    /// drop(tx);
    /// let words = rx.recv_with(|m| m.split(|&b| b == b' ').count()).await?; // no copy
    /// assert_eq!(words, 3);
    /// assert!(matches!(rx.recv_with(|_| ()).await, Err(shmpipe::Error::Disconnected)));
    /// # Ok(())
    /// # }
    /// ```
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
///
/// The inherent [`AsyncProducer::send`] (`&[u8]`) and
/// [`AsyncProducer::close`] (consumes the handle) take precedence over
/// `futures::SinkExt::send` / `SinkExt::close` in method-call syntax; call
/// the trait methods as `SinkExt::send(&mut tx, vec).await` and
/// `SinkExt::close(&mut tx).await` (the crate docs show both).
pub struct AsyncProducer {
    /// `None` once the side was closed (`Sink::poll_close`, `poll_shutdown`).
    tx: Option<Producer>,
    reg: Registration,
    /// `Sink`: the item accepted by `start_send`, not yet in the ring.
    pending: Option<Vec<u8>>,
}

impl std::fmt::Debug for AsyncProducer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AsyncProducer")
            .field("tx", &self.tx)
            .field("pending", &self.pending.as_ref().map(Vec::len))
            .finish()
    }
}

/// What every operation on an `AsyncProducer` whose side was closed returns.
fn closed() -> Error {
    Error::Io {
        op: "sending through an AsyncProducer",
        name: None,
        source: std::io::Error::new(
            std::io::ErrorKind::BrokenPipe,
            "its producer side was closed (Sink::close or AsyncWrite::shutdown); \
             no more messages can be sent through it",
        ),
    }
}

impl AsyncProducer {
    /// Wrap `tx`.
    ///
    /// ```
    /// use shmpipe::{Builder, Error, WaitStrategy};
    /// use shmpipe_tokio::AsyncProducer;
    /// let (tx, _rx) = Builder::new().wait(WaitStrategy::Spin).in_process()?.split()?;
    /// let _tx = AsyncProducer::new(tx)?; // Spin rings are polled by the reactor
    /// let (tx, _rx) = Builder::new().wait(WaitStrategy::Semaphore).in_process()?.split()?;
    /// assert!(matches!(AsyncProducer::new(tx), Err(Error::InvalidOption { .. })));
    /// # Ok::<(), shmpipe::Error>(())
    /// ```
    ///
    /// # Errors
    /// `InvalidOption` for a `Semaphore` ring.
    pub fn new(tx: Producer) -> Result<AsyncProducer> {
        check_strategy(tx.wait_strategy())?;
        Ok(AsyncProducer {
            tx: Some(tx),
            reg: Registration::default(),
            pending: None,
        })
    }

    /// The wrapped handle; `None` once the side was closed
    /// (`Sink::poll_close` / `AsyncWrite::poll_shutdown`).
    ///
    /// ```
    /// let (tx, _rx) = shmpipe::Builder::new().capacity(4096).in_process()?.split()?;
    /// let mut tx = shmpipe_tokio::AsyncProducer::new(tx)?;
    /// let p = tx.get_mut().expect("not closed");
    /// p.try_send(b"sync")?;
    /// assert_eq!(p.stats().messages_sent, 1);
    /// # Ok::<(), shmpipe::Error>(())
    /// ```
    pub fn get_mut(&mut self) -> Option<&mut Producer> {
        self.tx.as_mut()
    }

    /// Unwrap the handle, for the blocking calls. Nothing is lost: if an
    /// item that `Sink::start_send` accepted is still waiting for room
    /// (flush first), or the side was closed, the wrapper is handed back
    /// unchanged as `Err`.
    ///
    /// ```
    /// let (tx, mut rx) = shmpipe::Builder::new().capacity(4096).in_process()?.split()?;
    /// let tx = shmpipe_tokio::AsyncProducer::new(tx)?;
    /// let mut tx = tx.into_inner().expect("nothing pending");
    /// tx.send(b"blocking")?;
    /// rx.recv_with(|m| assert_eq!(m, b"blocking"))?;
    /// # Ok::<(), shmpipe::Error>(())
    /// ```
    #[allow(clippy::result_large_err)]
    pub fn into_inner(self) -> std::result::Result<Producer, AsyncProducer> {
        match self {
            AsyncProducer {
                tx: Some(tx),
                pending: None,
                reg,
            } => {
                drop(reg); // withdraws a registration that has not fired
                Ok(tx)
            }
            other => Err(other),
        }
    }

    /// Close the producer side: first send the item `Sink::start_send`
    /// accepted, if any (waiting for room), then close the side as
    /// [`Producer::close`] does, so the consumer receives every message,
    /// then `Disconnected`. Closing twice is not an error.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> shmpipe::Result<()> {
    /// let (tx, mut rx) = shmpipe::Builder::new().capacity(4096).in_process()?.split()?;
    /// let mut tx = shmpipe_tokio::AsyncProducer::new(tx)?;
    /// tx.send(b"last").await?;
    /// tx.close().await?;
    /// rx.recv_with(|m| assert_eq!(m, b"last"))?; // delivered, then the end
    /// assert!(matches!(rx.recv_with(|_| ()), Err(shmpipe::Error::Disconnected)));
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    /// The error of that last send (`Disconnected`, `PeerDied`, ...: the
    /// side is closed anyway and the item dropped), else as
    /// [`Producer::close`].
    pub async fn close(mut self) -> Result<()> {
        poll_fn(|cx| self.poll_close_side(cx)).await
    }

    /// The close of `close`, `Sink::poll_close` and `poll_shutdown`.
    fn poll_close_side(&mut self, cx: &mut Context<'_>) -> Poll<Result<()>> {
        let flushed = match self.poll_flush_pending(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(r) => r,
        };
        self.pending = None;
        self.reg.clear();
        let closed = match self.tx.take() {
            Some(tx) => tx.close(),
            None => Ok(()),
        };
        Poll::Ready(flushed.and(closed))
    }

    fn tx(&mut self) -> Result<&mut Producer> {
        self.tx.as_mut().ok_or_else(closed)
    }

    /// Poll until a message of `len` bytes fits (Ready(Ok)) or the
    /// consumer is gone (Ready(Err)).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> shmpipe::Result<()> {
    /// use std::future::poll_fn;
    /// let (tx, mut rx) = shmpipe::Builder::new().capacity(64).in_process()?.split()?;
    /// let mut tx = shmpipe_tokio::AsyncProducer::new(tx)?;
    /// tx.send(&[0; 24]).await?; // now full for 24 bytes
    /// let t = std::thread::spawn(move || rx.recv_with(|_| ()).map(|_| rx));
    /// poll_fn(|cx| tx.poll_room(cx, 24)).await?; // ready once the reader made room
    /// tx.get_mut().unwrap().try_send(&[1; 24])?;
    /// let _rx = t.join().unwrap()?; // (still attached)
    /// # Ok(())
    /// # }
    /// ```
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
            let tx = match self.tx() {
                Ok(tx) => tx,
                Err(e) => return Poll::Ready(Err(e)),
            };
            match attempt(tx) {
                Err(Error::Full) => {}
                other => {
                    self.reg.clear();
                    return Poll::Ready(other);
                }
            }
            if second {
                break;
            }
            let Some(tx) = &self.tx else { break };
            if let Err(e) = self.reg.register(cx, Side::Producer(tx, len)) {
                return Poll::Ready(Err(e));
            }
        }
        Poll::Pending
    }

    /// Poll one send of `msg`.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> shmpipe::Result<()> {
    /// let (tx, mut rx) = shmpipe::Builder::new().capacity(4096).in_process()?.split()?;
    /// let mut tx = shmpipe_tokio::AsyncProducer::new(tx)?;
    /// // E.g. inside a hand-written Future's `poll`:
    /// std::future::poll_fn(|cx| tx.poll_send(cx, b"polled")).await?;
    /// rx.recv_with(|m| assert_eq!(m, b"polled"))?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn poll_send(&mut self, cx: &mut Context<'_>, msg: &[u8]) -> Poll<Result<()>> {
        self.poll_try(cx, msg.len(), |tx| tx.try_send(msg))
    }

    /// Send `msg`, waiting for room.
    ///
    /// Cancel safe: the message is written in the poll that completes the
    /// future, or not at all.
    ///
    /// This inherent method takes `&[u8]`; the `Sink` one (which takes a
    /// `Vec<u8>`) is `SinkExt::send(&mut tx, vec)`.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> shmpipe::Result<()> {
    /// let (tx, mut rx) = shmpipe::Builder::new().capacity(64).in_process()?.split()?;
    /// let mut tx = shmpipe_tokio::AsyncProducer::new(tx)?;
    /// let reader = std::thread::spawn(move || (rx.recv_with(|m| m[0]), rx.recv_with(|m| m[0])));
    /// tx.send(&[1; 24]).await?;
    /// tx.send(&[2; 24]).await?; // parks the task until the reader made room
    /// assert!(matches!(reader.join().unwrap(), (Ok(1), Ok(2))));
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    /// As [`Producer::send`]; `Io` (`BrokenPipe`) once the side was closed.
    pub async fn send(&mut self, msg: &[u8]) -> Result<()> {
        poll_fn(|cx| self.poll_send(cx, msg)).await
    }

    /// Reserve `len` bytes to write a message in place (see
    /// [`Producer::claim`]): commit the returned claim, or drop it to abort.
    ///
    /// Cancel safe: the claim is taken in the completing poll; dropping
    /// the future earlier commits nothing.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> shmpipe::Result<()> {
    /// let (tx, mut rx) = shmpipe::Builder::new().capacity(4096).in_process()?.split()?;
    /// let mut tx = shmpipe_tokio::AsyncProducer::new(tx)?;
    /// let mut claim = tx.claim(4).await?; // waits for room, then lends it
    /// claim.copy_from_slice(&9u32.to_le_bytes());
    /// claim.commit();
    /// rx.recv_with(|m| assert_eq!(m, 9u32.to_le_bytes()))?;
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    /// As [`Producer::claim`]; `Io` (`BrokenPipe`) once the side was closed.
    pub async fn claim(&mut self, len: usize) -> Result<Claim<'_>> {
        poll_fn(|cx| self.poll_room(cx, len)).await?;
        // Room stays: only this handle takes it.
        self.tx()?.try_claim(len)
    }

    /// Send the item `start_send` kept because the ring was full.
    fn poll_flush_pending(&mut self, cx: &mut Context<'_>) -> Poll<Result<()>> {
        let Some(item) = self.pending.take() else {
            return Poll::Ready(Ok(()));
        };
        let r = self.poll_send(cx, &item);
        if r.is_pending() {
            self.pending = Some(item);
        }
        r
    }
}

impl futures_sink::Sink<Vec<u8>> for AsyncProducer {
    type Error = Error;
    fn poll_ready(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        let this = self.get_mut();
        if this.tx.is_none() {
            return Poll::Ready(Err(closed()));
        }
        this.poll_flush_pending(cx)
    }
    fn start_send(self: Pin<&mut Self>, item: Vec<u8>) -> Result<()> {
        let this = self.get_mut();
        match this.tx()?.try_send(&item) {
            Err(Error::Full) => {
                this.pending = Some(item);
                Ok(())
            }
            r => r,
        }
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        self.get_mut().poll_flush_pending(cx)
    }
    /// Flushes, then closes the producer side (see [`AsyncProducer::close`]):
    /// the consumer receives every message, then `Disconnected`. Later
    /// sends fail with `Io` (`BrokenPipe`).
    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        self.get_mut().poll_close_side(cx)
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
        let max = match this.tx() {
            Ok(tx) => tx.max_message(),
            Err(e) => return Poll::Ready(Err(e.into())),
        };
        let n = buf.len().min(max);
        match this.poll_send(cx, &buf[..n]) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Ok(())) => Poll::Ready(Ok(n)),
            Poll::Ready(Err(e)) => Poll::Ready(Err(e.into())),
        }
    }
    /// Every `poll_write` puts its bytes in the ring (an item a `Sink`
    /// send left waiting is sent here).
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.get_mut().poll_flush_pending(cx).map_err(Into::into)
    }
    /// Closes the producer side (see [`AsyncProducer::close`]); errors
    /// are reported.
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.get_mut().poll_close_side(cx).map_err(Into::into)
    }
}
