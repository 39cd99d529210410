//! The staged builder: options, then create / open / anonymous / in-process.

use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use crate::error::{Error, Result};
use crate::ring::{Consumer, LockFree, Producer, Variant};
use crate::segment::{Options, Segment};
use crate::wait::WaitStrategy;

/// Default data-area capacity: 1 MiB.
pub const DEFAULT_CAPACITY: u64 = 1 << 20;

/// Options for a new ring, and the ways to create or open one.
///
/// `shmpipe::Builder` builds lock-free rings, `shmpipe::locked::Builder`
/// builds locked ones; both are this type.
///
/// # Named segments, truncation and SIGBUS
///
/// A named segment is a file in `/dev/shm` that any process of the same
/// uid can truncate. Touching a page the truncation removed raises SIGBUS,
/// which by default kills the process. So the first named ring a process
/// creates or opens installs a process-wide SIGBUS handler (once, with
/// `SA_SIGINFO | SA_ONSTACK | SA_RESTART`): for a fault inside a shmpipe
/// mapping it maps zero pages over that mapping and lets the access finish,
/// and every later operation on the ring's endpoints returns
/// [`Error::Truncated`] (found on the slow paths: an empty or full ring, a
/// blocking call's 20 ms liveness check, attach). Messages sent after the
/// truncation are lost, and the message being read at that instant may
/// arrive with zeroed bytes. Any other SIGBUS goes to the handler that was
/// installed before ours (called with the same arguments), or, if there was
/// none, to the default action (the process dies of SIGBUS as before).
///
/// A program with its own SIGBUS handler: install it before the first named
/// ring, and ours chains to it; a handler installed later replaces ours,
/// which then protects nothing unless that handler calls the previous
/// action for addresses it does not own. Anonymous rings
/// ([`Self::anonymous`], sealed memfds that cannot shrink) and in-process
/// rings install nothing.
#[derive(Debug)]
pub struct Builder<V: Variant = LockFree> {
    opts: Options,
    _v: PhantomData<V>,
}

impl Builder<LockFree> {
    /// A builder for lock-free rings with the defaults: 1 MiB, `Futex`
    /// waits, mode 0600, unlink on drop, 1 s open timeout.
    ///
    /// A builder for the other variant, or for a variant `V` chosen by
    /// generic code, is `Builder::<V>::default()` (the same defaults):
    /// `shmpipe::locked::Builder::default()` for locked rings. (`new` exists
    /// for the default variant only, so that `Builder::new()` needs no type
    /// annotation.)
    ///
    /// ```
    /// let (mut tx, mut rx) = shmpipe::Builder::new().capacity(4096).in_process()?.split()?;
    /// tx.send(b"ping")?;
    /// let mut buf = Vec::new();
    /// rx.recv(&mut buf)?;
    /// assert_eq!(buf, b"ping");
    /// # Ok::<(), shmpipe::Error>(())
    /// ```
    pub fn new() -> Self {
        Self::default()
    }
}

impl<V: Variant> Clone for Builder<V> {
    fn clone(&self) -> Self {
        Builder {
            opts: self.opts.clone(),
            _v: PhantomData,
        }
    }
}

impl<V: Variant> Default for Builder<V> {
    fn default() -> Self {
        Builder {
            opts: Options {
                capacity: DEFAULT_CAPACITY,
                wait: WaitStrategy::Futex,
                mode: 0o600,
                unlink_on_drop: true,
                open_timeout: Duration::from_secs(1),
                allow_shared_permissions: false,
            },
            _v: PhantomData,
        }
    }
}

impl<V: Variant> Builder<V> {
    /// Data-area size in bytes: a power of two from
    /// [`crate::MIN_CAPACITY`] to [`crate::MAX_CAPACITY`]. The largest
    /// message is `capacity / 2 - 8` bytes. Checked when the ring is made.
    ///
    /// ```
    /// use shmpipe::{Builder, Error};
    /// let (tx, _rx) = Builder::new().capacity(8192).in_process()?.split()?;
    /// assert_eq!((tx.capacity(), tx.max_message()), (8192, 4088));
    /// assert!(matches!(Builder::new().capacity(1000).in_process(), Err(Error::InvalidCapacity { .. })));
    /// # Ok::<(), shmpipe::Error>(())
    /// ```
    pub fn capacity(mut self, bytes: u64) -> Self {
        self.opts.capacity = bytes;
        self
    }

    /// How idle endpoints wait; recorded in the segment at creation.
    ///
    /// ```
    /// use shmpipe::{Builder, WaitStrategy};
    /// // Spin: lowest latency, a core busy while idle; Futex (default): sleeps.
    /// let (tx, rx) = Builder::new().wait(WaitStrategy::Spin).in_process()?.split()?;
    /// assert_eq!((tx.wait_strategy(), rx.wait_strategy()), (WaitStrategy::Spin, WaitStrategy::Spin));
    /// # Ok::<(), shmpipe::Error>(())
    /// ```
    pub fn wait(mut self, strategy: WaitStrategy) -> Self {
        self.opts.wait = strategy;
        self
    }

    /// Permission bits of a new named segment (default `0o600`).
    ///
    /// ```
    /// use shmpipe::{Builder, Error};
    /// let name = format!("/shmpipe-doc-mode-{}", std::process::id());
    /// let _tx = Builder::new().mode(0o640).create_producer(&name)?;
    /// assert_eq!(shmpipe::inspect(&name)?.mode & 0o777, 0o640);
    /// // Group access is refused unless the opener accepts it:
    /// assert!(matches!(Builder::new().open_consumer(&name), Err(Error::UnsafePermissions { .. })));
    /// let _rx = Builder::new().allow_shared_permissions(true).open_consumer(&name)?;
    /// # Ok::<(), shmpipe::Error>(())
    /// ```
    pub fn mode(mut self, mode: u32) -> Self {
        self.opts.mode = mode;
        self
    }

    /// Whether the creator of a named segment removes its name when its
    /// endpoint is dropped (default `true`). Peers that already opened it
    /// keep working.
    ///
    /// ```
    /// use shmpipe::{Builder, Error};
    /// let name = format!("/shmpipe-doc-keep-{}", std::process::id());
    /// drop(Builder::new().unlink_on_drop(false).create_producer(&name)?);
    /// let _rx = Builder::new().open_consumer(&name)?; // the name outlived its creator
    /// shmpipe::remove(&name)?;
    /// assert!(matches!(Builder::new().open_consumer(&name), Err(Error::NotFound { .. })));
    /// # Ok::<(), shmpipe::Error>(())
    /// ```
    pub fn unlink_on_drop(mut self, yes: bool) -> Self {
        self.opts.unlink_on_drop = yes;
        self
    }

    /// How long `open_*` waits for a segment's creator to finish
    /// initialising it (default 1 s).
    ///
    /// ```
    /// use std::time::Duration;
    /// use shmpipe::{Builder, Error};
    /// let name = format!("/shmpipe-doc-late-{}", std::process::id());
    /// let b = Builder::new().open_timeout(Duration::from_millis(100));
    /// assert!(matches!(b.open_consumer(&name), Err(Error::NotFound { .. }))); // no creator at all
    /// let _tx = Builder::new().create_producer(&name)?;
    /// let _rx = b.open_consumer(&name)?;
    /// # Ok::<(), shmpipe::Error>(())
    /// ```
    pub fn open_timeout(mut self, timeout: Duration) -> Self {
        self.opts.open_timeout = timeout;
        self
    }

    /// Accept segments whose permissions give group or others access
    /// (default `false`: they are refused).
    ///
    /// ```
    /// use shmpipe::Builder;
    /// let name = format!("/shmpipe-doc-shared-{}", std::process::id());
    /// let _tx = Builder::new().mode(0o660).create_producer(&name)?; // a group's ring
    /// let _rx = Builder::new().allow_shared_permissions(true).open_consumer(&name)?;
    /// # Ok::<(), shmpipe::Error>(())
    /// ```
    pub fn allow_shared_permissions(mut self, yes: bool) -> Self {
        self.opts.allow_shared_permissions = yes;
        self
    }

    fn create(&self, name: &str) -> Result<Arc<Segment>> {
        match crate::segment::create(name, V::CODE, &self.opts)? {
            Some(s) => Ok(Arc::new(s)),
            None => Err(Error::AlreadyExists {
                name: name.to_string(),
            }),
        }
    }

    fn open(&self, name: &str) -> Result<Arc<Segment>> {
        crate::segment::open(name, V::CODE, &self.opts).map(Arc::new)
    }

    fn open_or_create(&self, name: &str) -> Result<Arc<Segment>> {
        // Creating with O_EXCL first and opening on EEXIST is race-free: of
        // two processes doing this at once, exactly one creates, and the
        // other waits (open_timeout) for the creator's version word.
        match crate::segment::create(name, V::CODE, &self.opts)? {
            Some(s) => Ok(Arc::new(s)),
            None => self.open(name),
        }
    }

    /// Create the named segment `name` (it must not exist) and attach as its producer.
    ///
    /// ```
    /// use shmpipe::{Builder, Error};
    /// let name = format!("/shmpipe-doc-cp-{}", std::process::id());
    /// let mut tx = Builder::new().capacity(4096).create_producer(&name)?;
    /// assert!(matches!(Builder::new().create_producer(&name), Err(Error::AlreadyExists { .. })));
    /// let mut rx = Builder::new().open_consumer(&name)?; // usually another process
    /// tx.send(b"hi")?;
    /// rx.recv_with(|m| assert_eq!(m, b"hi"))?;
    /// # Ok::<(), shmpipe::Error>(())
    /// ```
    ///
    /// # Errors
    /// `InvalidName`, `InvalidCapacity`, `InvalidOption`, `AlreadyExists`,
    /// or `Io` (naming the segment).
    pub fn create_producer(&self, name: &str) -> Result<Producer<V>> {
        Producer::attach(self.create(name)?)
    }

    /// Create the named segment `name` and attach as its consumer.
    ///
    /// ```
    /// use shmpipe::Builder;
    /// let name = format!("/shmpipe-doc-cc-{}", std::process::id());
    /// let mut rx = Builder::new().capacity(4096).create_consumer(&name)?; // a server waits
    /// let mut tx = Builder::new().open_producer(&name)?; // a client connects
    /// tx.send(b"request")?;
    /// rx.recv_with(|m| assert_eq!(m, b"request"))?;
    /// # Ok::<(), shmpipe::Error>(())
    /// ```
    ///
    /// # Errors
    /// As [`Self::create_producer`].
    pub fn create_consumer(&self, name: &str) -> Result<Consumer<V>> {
        Consumer::attach(self.create(name)?)
    }

    /// Open the existing segment `name` as its producer. Capacity and wait
    /// strategy come from the segment.
    ///
    /// ```
    /// use shmpipe::{Builder, Error};
    /// let name = format!("/shmpipe-doc-op-{}", std::process::id());
    /// let _rx = Builder::new().capacity(4096).create_consumer(&name)?;
    /// let tx = Builder::new().open_producer(&name)?;
    /// assert_eq!(tx.capacity(), 4096); // from the segment
    /// assert!(matches!(Builder::new().open_producer(&name), Err(Error::RoleTaken { .. })));
    /// # Ok::<(), shmpipe::Error>(())
    /// ```
    ///
    /// # Errors
    /// `InvalidName`, `NotShmpipe`, `VersionMismatch`, `WrongVariant`,
    /// `SizeMismatch`, `NotInitialized`, `NotRegularFile`, `NotOwner`,
    /// `UnsafePermissions`, `Corrupted`, `RoleTaken`, `Io`.
    pub fn open_producer(&self, name: &str) -> Result<Producer<V>> {
        Producer::attach(self.open(name)?)
    }

    /// Open the existing segment `name` as its consumer.
    ///
    /// ```
    /// use shmpipe::{locked, Builder, Error};
    /// let name = format!("/shmpipe-doc-oc-{}", std::process::id());
    /// let _tx = Builder::new().create_producer(&name)?;
    /// let _rx = Builder::new().open_consumer(&name)?;
    /// // The variant must match the segment's:
    /// let r = locked::Builder::default().open_consumer(&name);
    /// assert!(matches!(r, Err(Error::WrongVariant { .. })));
    /// # Ok::<(), shmpipe::Error>(())
    /// ```
    ///
    /// # Errors
    /// As [`Self::open_producer`].
    pub fn open_consumer(&self, name: &str) -> Result<Consumer<V>> {
        Consumer::attach(self.open(name)?)
    }

    /// Open `name` as its producer, creating it first if it does not exist.
    ///
    /// ```
    /// use shmpipe::Builder;
    /// let name = format!("/shmpipe-doc-oop-{}", std::process::id());
    /// // Whichever side starts first creates the ring; the other opens it.
    /// let mut rx = Builder::new().open_or_create_consumer(&name)?;
    /// let mut tx = Builder::new().open_or_create_producer(&name)?;
    /// tx.send(b"either order")?;
    /// rx.recv_with(|m| assert_eq!(m, b"either order"))?;
    /// # Ok::<(), shmpipe::Error>(())
    /// ```
    ///
    /// # Errors
    /// As [`Self::create_producer`] and [`Self::open_producer`].
    pub fn open_or_create_producer(&self, name: &str) -> Result<Producer<V>> {
        Producer::attach(self.open_or_create(name)?)
    }

    /// Open `name` as its consumer, creating it first if it does not exist.
    ///
    /// ```
    /// use shmpipe::Builder;
    /// let name = format!("/shmpipe-doc-ooc-{}", std::process::id());
    /// let mut tx = Builder::new().open_or_create_producer(&name)?;
    /// let mut rx = Builder::new().open_or_create_consumer(&name)?;
    /// tx.send(b"x")?;
    /// rx.recv_with(|m| assert_eq!(m, b"x"))?;
    /// # Ok::<(), shmpipe::Error>(())
    /// ```
    ///
    /// # Errors
    /// As [`Self::open_or_create_producer`].
    pub fn open_or_create_consumer(&self, name: &str) -> Result<Consumer<V>> {
        Consumer::attach(self.open_or_create(name)?)
    }

    /// A ring in an anonymous, sealed memfd, to share with a child across
    /// `fork()`: fork first, then call [`Pair::into_producer`] in one
    /// process and [`Pair::into_consumer`] in the other.
    ///
    /// ```
    /// let pair = shmpipe::Builder::new().capacity(4096).anonymous()?;
    /// // Usually: fork here, then `into_producer` in one process, `into_consumer`
    /// // in the other. In one process (as a test) both ends attach:
    /// let (mut tx, mut rx) = pair.split()?;
    /// tx.send(b"no name")?;
    /// rx.recv_with(|m| assert_eq!(m, b"no name"))?;
    /// # Ok::<(), shmpipe::Error>(())
    /// ```
    ///
    /// # Errors
    /// `InvalidCapacity`, `Io`.
    pub fn anonymous(&self) -> Result<Pair<V>> {
        Ok(Pair {
            seg: Arc::new(crate::segment::anonymous(V::CODE, &self.opts)?),
            _v: PhantomData,
        })
    }

    /// A ring on the heap for threads of this process (also what Miri and
    /// loom run). Same protocol and code as a shared segment.
    ///
    /// ```
    /// let (mut tx, mut rx) = shmpipe::Builder::new().capacity(4096).in_process()?.split()?;
    /// let t = std::thread::spawn(move || tx.send(b"from a thread"));
    /// rx.recv_with(|m| assert_eq!(m, b"from a thread"))?;
    /// t.join().unwrap()?;
    /// # Ok::<(), shmpipe::Error>(())
    /// ```
    ///
    /// # Errors
    /// `InvalidCapacity`, `Io`.
    pub fn in_process(&self) -> Result<Pair<V>> {
        Ok(Pair {
            seg: Arc::new(Segment::heap(V::CODE, &self.opts)?),
            _v: PhantomData,
        })
    }
}

// ---------------------------------------------------------------------------
// Anonymous rings passed to another process as descriptors (`shmpipe::process`).

#[cfg(not(any(loom, miri)))]
impl<V: Variant> Pair<V> {
    /// The anonymous ring behind `fd`, a sealed memfd another process
    /// created with [`Builder::anonymous`] and passed to us (see
    /// [`Self::try_clone_fd`]). Its capacity and wait strategy come from the
    /// segment, which is validated like a named open; `V` must be the
    /// variant it was created with (`Pair::<Locked>::from_fd` for a locked
    /// ring; [`crate::AnyBuilder::from_fd`] learns the variant from the
    /// segment).
    ///
    /// ```
    /// use shmpipe::{Builder, Pair};
    ///
    /// let pair = Builder::new().capacity(4096).anonymous()?;
    /// let fd = pair.try_clone_fd()?; // e.g. sent to another process
    /// let mut tx = pair.into_producer()?; // the consumer attaches in the other process
    /// tx.send(b"via fd")?;
    ///
    /// let mut rx = Pair::<shmpipe::LockFree>::from_fd(fd)?.into_consumer()?;
    /// let mut buf = Vec::new();
    /// rx.recv(&mut buf)?;
    /// assert_eq!(buf, b"via fd");
    /// # Ok::<(), shmpipe::Error>(())
    /// ```
    ///
    /// # Errors
    /// `NotRegularFile`, `NotOwner`, `SizeMismatch`, `NotShmpipe`,
    /// `VersionMismatch`, `WrongVariant`, `NotInitialized`, `Corrupted`, or
    /// `Io` (e.g. the descriptor is not a sealed memfd).
    pub fn from_fd(fd: std::os::fd::OwnedFd) -> Result<Pair<V>> {
        Ok(Pair {
            seg: Arc::new(crate::segment::from_fd(fd, V::CODE)?),
            _v: PhantomData,
        })
    }

    /// A new close-on-exec descriptor of this ring's memfd, to pass to a
    /// process that opens it with [`Self::from_fd`].
    ///
    /// ```
    /// use shmpipe::{Builder, Error};
    /// let pair = Builder::new().capacity(4096).anonymous()?;
    /// let _fd = pair.try_clone_fd()?; // e.g. for `shmpipe::process` or SCM_RIGHTS
    /// let heap = Builder::new().in_process()?;
    /// assert!(matches!(heap.try_clone_fd(), Err(Error::Io { .. }))); // no descriptor
    /// # Ok::<(), shmpipe::Error>(())
    /// ```
    ///
    /// # Errors
    /// `Io` (for an in-process ring, which has no descriptor).
    pub fn try_clone_fd(&self) -> Result<std::os::fd::OwnedFd> {
        crate::segment::dup_fd(&self.seg)
    }

    /// A descriptor for a child process that will attach as `role`: the
    /// role is locked and marked attached on it now, on the child's behalf
    /// (see `segment::attach_for_child`), and [`Self::from_fd`] in the
    /// child adopts that lock.
    #[cfg(feature = "rpc")]
    pub(crate) fn fd_attached_for_child(
        &self,
        role: crate::segment::Role,
    ) -> Result<std::os::fd::OwnedFd> {
        crate::segment::attach_for_child(&self.seg, role)
    }
}

/// A new ring whose endpoints are not attached yet.
pub struct Pair<V: Variant = LockFree> {
    seg: Arc<Segment>,
    _v: PhantomData<V>,
}

impl<V: Variant> std::fmt::Debug for Pair<V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pair")
            .field("variant", &V::NAME)
            .field("capacity", &self.seg.geometry.capacity)
            .finish()
    }
}

impl<V: Variant> Pair<V> {
    /// Attach as the producer (in this process, after any `fork`).
    ///
    /// ```
    /// use shmpipe::{Builder, Error};
    /// let pair = Builder::new().capacity(4096).anonymous()?;
    /// let fd = pair.try_clone_fd()?;
    /// let mut tx = pair.into_producer()?;
    /// tx.send(b"x")?;
    /// let again = shmpipe::Pair::<shmpipe::LockFree>::from_fd(fd)?.into_producer();
    /// assert!(matches!(again, Err(Error::RoleTaken { .. }))); // one producer at a time
    /// # Ok::<(), shmpipe::Error>(())
    /// ```
    ///
    /// # Errors
    /// `RoleTaken` if the producer is already attached, `Io`.
    pub fn into_producer(self) -> Result<Producer<V>> {
        Producer::attach(self.seg)
    }

    /// Attach as the consumer (in this process, after any `fork`).
    ///
    /// ```
    /// use shmpipe::{Builder, Pair};
    /// let pair = Builder::new().capacity(4096).anonymous()?;
    /// let fd = pair.try_clone_fd()?;
    /// let mut tx = pair.into_producer()?;
    /// let mut rx: shmpipe::Consumer = Pair::from_fd(fd)?.into_consumer()?; // the other side
    /// tx.send(b"y")?;
    /// rx.recv_with(|m| assert_eq!(m, b"y"))?;
    /// # Ok::<(), shmpipe::Error>(())
    /// ```
    ///
    /// # Errors
    /// `RoleTaken` if the consumer is already attached, `Io`.
    pub fn into_consumer(self) -> Result<Consumer<V>> {
        Consumer::attach(self.seg)
    }

    /// Attach both ends in this process (to hand to two threads).
    ///
    /// ```
    /// let (mut tx, mut rx) = shmpipe::Builder::new().capacity(4096).in_process()?.split()?;
    /// tx.send(b"z")?;
    /// assert_eq!(rx.recv_with(|m| m.to_vec())?, b"z");
    /// # Ok::<(), shmpipe::Error>(())
    /// ```
    ///
    /// # Errors
    /// `Io`.
    pub fn split(self) -> Result<(Producer<V>, Consumer<V>)> {
        let p = Producer::attach(self.seg.clone())?;
        let c = Consumer::attach(self.seg)?;
        Ok((p, c))
    }
}
