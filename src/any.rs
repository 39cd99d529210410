//! Endpoints whose ring variant is chosen, or found in the segment, at run
//! time: [`AnyBuilder`], [`AnyProducer`], [`AnyConsumer`], [`AnyPair`],
//! with [`AnyClaim`] and [`AnyMessage`].
//!
//! The generic endpoints ([`crate::Producer`] etc.) fix the variant
//! at compile time. A program that learns it from a flag, or from the
//! segment it opens (a CLI, a C or Python binding, a bridge), holds one of
//! these enums instead. Each method is one `match` on the variant that calls
//! the generic method, inlined: the per-message work stays the monomorphic
//! code of the generic endpoint, and the dispatch costs one branch per call,
//! never per byte.
//!
//! ```
//! use shmpipe::{AnyBuilder, VariantKind};
//!
//! let name = format!("/shmpipe-any-doc-{}", std::process::id());
//! // Created as a locked ring...
//! let mut tx = AnyBuilder::new(VariantKind::Locked).create_producer(&name)?;
//! // ...and opened without knowing it: the variant is read from the segment.
//! let mut rx = AnyBuilder::default().open_consumer(&name)?;
//! assert_eq!(rx.kind(), VariantKind::Locked);
//! tx.send(b"hello")?;
//! let mut buf = [0u8; 16];
//! let n = rx.recv_into(&mut buf)?;
//! assert_eq!(&buf[..n], b"hello");
//! # Ok::<(), shmpipe::Error>(())
//! ```

use std::io;
use std::time::Duration;

use crate::builder::{Builder, Pair};
use crate::error::{Error, Result};
use crate::ring::{Claim, Consumer, LockFree, Locked, Message, PeerStatus, Producer, Stats};
use crate::variant::VariantKind;
use crate::wait::WaitStrategy;

/// `match` `$v` (an enum `$ty` with one variant per ring design) and run
/// `$body` with `$x` bound to the generic value inside.
macro_rules! each {
    ($ty:ident, $v:expr, $x:ident => $body:expr) => {
        match $v {
            $ty::LockFree($x) => $body,
            $ty::Locked($x) => $body,
        }
    };
}

/// How many times an open that meets a concurrent create, remove or
/// replacement of the segment tries again before it reports the error.
const ATTEMPTS: usize = 5;

// ---------------------------------------------------------------------------
// Builder

/// A [`Builder`](crate::Builder) whose variant is a value: it creates rings
/// of [`Self::new`]'s kind, and opens existing ones of whichever kind their
/// segment records (unless [`Self::detect`] is off).
#[derive(Debug, Clone)]
pub struct AnyBuilder {
    kind: VariantKind,
    detect: bool,
    lock_free: Builder<LockFree>,
    locked: Builder<Locked>,
}

impl Default for AnyBuilder {
    /// [`VariantKind::LockFree`], detecting on open, the builder defaults.
    fn default() -> Self {
        AnyBuilder::new(VariantKind::default())
    }
}

/// An endpoint of [`AnyBuilder::open_or_create_producer`] /
/// [`AnyBuilder::open_or_create_consumer`], and whether that call created
/// the segment.
#[derive(Debug)]
pub struct Attached<E> {
    /// The endpoint.
    pub end: E,
    /// `true`: this call created the segment; `false`: it existed.
    pub created: bool,
}

impl AnyBuilder {
    /// A builder for rings of `kind`, with the [`Builder`](crate::Builder)
    /// defaults, that detects the variant of segments it opens.
    ///
    /// ```
    /// use shmpipe::{AnyBuilder, VariantKind};
    /// let kind: VariantKind = "locked".parse().expect("a variant name"); // e.g. from a flag
    /// let (mut tx, mut rx) = AnyBuilder::new(kind).capacity(4096).in_process()?.split()?;
    /// tx.send(b"either")?;
    /// assert_eq!(rx.recv_with(|m| m.to_vec())?, b"either");
    /// # Ok::<(), shmpipe::Error>(())
    /// ```
    pub fn new(kind: VariantKind) -> Self {
        AnyBuilder {
            kind,
            detect: true,
            lock_free: Builder::default(),
            locked: Builder::default(),
        }
    }

    /// The kind of ring this builder creates.
    ///
    /// ```
    /// use shmpipe::{AnyBuilder, VariantKind};
    /// assert_eq!(AnyBuilder::default().kind(), VariantKind::LockFree);
    /// assert_eq!(AnyBuilder::new(VariantKind::Locked).kind(), VariantKind::Locked);
    /// ```
    pub fn kind(&self) -> VariantKind {
        self.kind
    }

    /// Whether opening a segment of the other kind attaches as that kind
    /// (`true`, the default) or fails with [`Error::WrongVariant`], which
    /// attaches nothing (`false`).
    ///
    /// ```
    /// use shmpipe::{AnyBuilder, Error, VariantKind};
    /// let name = format!("/shmpipe-doc-detect-{}", std::process::id());
    /// let _tx = AnyBuilder::new(VariantKind::Locked).create_producer(&name)?;
    /// let strict = AnyBuilder::new(VariantKind::LockFree).detect(false);
    /// assert!(matches!(strict.open_consumer(&name), Err(Error::WrongVariant { .. })));
    /// assert_eq!(strict.detect(true).open_consumer(&name)?.kind(), VariantKind::Locked);
    /// # Ok::<(), shmpipe::Error>(())
    /// ```
    pub fn detect(mut self, yes: bool) -> Self {
        self.detect = yes;
        self
    }

    /// As [`Builder::capacity`](crate::Builder::capacity).
    ///
    /// ```
    /// use shmpipe::{AnyBuilder, VariantKind};
    /// let (tx, _rx) = AnyBuilder::new(VariantKind::Locked).capacity(8192).in_process()?.split()?;
    /// assert_eq!(tx.capacity(), 8192);
    /// # Ok::<(), shmpipe::Error>(())
    /// ```
    pub fn capacity(mut self, bytes: u64) -> Self {
        self.lock_free = self.lock_free.capacity(bytes);
        self.locked = self.locked.capacity(bytes);
        self
    }

    /// As [`Builder::wait`](crate::Builder::wait).
    ///
    /// ```
    /// use shmpipe::{AnyBuilder, VariantKind, WaitStrategy};
    /// let b = AnyBuilder::new(VariantKind::Locked).wait(WaitStrategy::SpinYield);
    /// let (tx, _rx) = b.in_process()?.split()?;
    /// assert_eq!(tx.wait_strategy(), WaitStrategy::SpinYield);
    /// # Ok::<(), shmpipe::Error>(())
    /// ```
    pub fn wait(mut self, strategy: WaitStrategy) -> Self {
        self.lock_free = self.lock_free.wait(strategy);
        self.locked = self.locked.wait(strategy);
        self
    }

    /// As [`Builder::mode`](crate::Builder::mode).
    ///
    /// ```
    /// use shmpipe::AnyBuilder;
    /// let name = format!("/shmpipe-doc-anymode-{}", std::process::id());
    /// let _tx = AnyBuilder::default().mode(0o640).create_producer(&name)?;
    /// assert_eq!(shmpipe::inspect(&name)?.mode & 0o777, 0o640);
    /// # Ok::<(), shmpipe::Error>(())
    /// ```
    pub fn mode(mut self, mode: u32) -> Self {
        self.lock_free = self.lock_free.mode(mode);
        self.locked = self.locked.mode(mode);
        self
    }

    /// As [`Builder::unlink_on_drop`](crate::Builder::unlink_on_drop).
    ///
    /// ```
    /// use shmpipe::AnyBuilder;
    /// let name = format!("/shmpipe-doc-anykeep-{}", std::process::id());
    /// drop(AnyBuilder::default().unlink_on_drop(false).create_consumer(&name)?);
    /// let _tx = AnyBuilder::default().open_producer(&name)?; // still there
    /// shmpipe::remove(&name)?;
    /// # Ok::<(), shmpipe::Error>(())
    /// ```
    pub fn unlink_on_drop(mut self, yes: bool) -> Self {
        self.lock_free = self.lock_free.unlink_on_drop(yes);
        self.locked = self.locked.unlink_on_drop(yes);
        self
    }

    /// As [`Builder::open_timeout`](crate::Builder::open_timeout).
    ///
    /// ```
    /// use std::time::Duration;
    /// use shmpipe::{AnyBuilder, Error};
    /// let name = format!("/shmpipe-doc-anylate-{}", std::process::id());
    /// let b = AnyBuilder::default().open_timeout(Duration::from_millis(100));
    /// assert!(matches!(b.open_consumer(&name), Err(Error::NotFound { .. })));
    /// # Ok::<(), shmpipe::Error>(())
    /// ```
    pub fn open_timeout(mut self, timeout: Duration) -> Self {
        self.lock_free = self.lock_free.open_timeout(timeout);
        self.locked = self.locked.open_timeout(timeout);
        self
    }

    /// As [`Builder::allow_shared_permissions`](crate::Builder::allow_shared_permissions).
    ///
    /// ```
    /// use shmpipe::{AnyBuilder, Error};
    /// let name = format!("/shmpipe-doc-anyshared-{}", std::process::id());
    /// let _tx = AnyBuilder::default().mode(0o660).create_producer(&name)?;
    /// let r = AnyBuilder::default().open_consumer(&name);
    /// assert!(matches!(r, Err(Error::UnsafePermissions { .. })));
    /// let _rx = AnyBuilder::default().allow_shared_permissions(true).open_consumer(&name)?;
    /// # Ok::<(), shmpipe::Error>(())
    /// ```
    pub fn allow_shared_permissions(mut self, yes: bool) -> Self {
        self.lock_free = self.lock_free.allow_shared_permissions(yes);
        self.locked = self.locked.allow_shared_permissions(yes);
        self
    }

    /// Create the named segment `name` as a ring of this builder's kind and
    /// attach as its producer.
    ///
    /// ```
    /// use shmpipe::{AnyBuilder, VariantKind};
    /// let name = format!("/shmpipe-doc-anycp-{}", std::process::id());
    /// let mut tx = AnyBuilder::new(VariantKind::Locked).create_producer(&name)?;
    /// let mut rx = AnyBuilder::default().open_consumer(&name)?; // finds "locked"
    /// tx.send(b"hi")?;
    /// rx.recv_with(|m| assert_eq!(m, b"hi"))?;
    /// # Ok::<(), shmpipe::Error>(())
    /// ```
    ///
    /// # Errors
    /// As [`Builder::create_producer`](crate::Builder::create_producer).
    pub fn create_producer(&self, name: &str) -> Result<AnyProducer> {
        AnyProducer::create(self, self.kind, name)
    }

    /// Create the named segment `name` and attach as its consumer.
    ///
    /// ```
    /// use shmpipe::{AnyBuilder, Error, VariantKind};
    /// let name = format!("/shmpipe-doc-anycc-{}", std::process::id());
    /// let rx = AnyBuilder::new(VariantKind::Locked).create_consumer(&name)?;
    /// assert_eq!(rx.kind(), VariantKind::Locked);
    /// let again = AnyBuilder::default().create_consumer(&name);
    /// assert!(matches!(again, Err(Error::AlreadyExists { .. })));
    /// # Ok::<(), shmpipe::Error>(())
    /// ```
    ///
    /// # Errors
    /// As [`Self::create_producer`].
    pub fn create_consumer(&self, name: &str) -> Result<AnyConsumer> {
        AnyConsumer::create(self, self.kind, name)
    }

    /// Open the existing segment `name` as its producer, of the kind its
    /// header records (see [`Self::detect`]).
    ///
    /// ```
    /// use shmpipe::{AnyBuilder, Builder, VariantKind};
    /// let name = format!("/shmpipe-doc-anyop-{}", std::process::id());
    /// let _rx = Builder::new().create_consumer(&name)?; // a lock-free ring
    /// let tx = AnyBuilder::new(VariantKind::Locked).open_producer(&name)?;
    /// assert_eq!(tx.kind(), VariantKind::LockFree); // the segment's kind wins
    /// # Ok::<(), shmpipe::Error>(())
    /// ```
    ///
    /// # Errors
    /// As [`Builder::open_producer`](crate::Builder::open_producer);
    /// `WrongVariant` only with detection off.
    pub fn open_producer(&self, name: &str) -> Result<AnyProducer> {
        self.open_detecting(name)
    }

    /// Open the existing segment `name` as its consumer.
    ///
    /// ```
    /// use shmpipe::{locked, AnyBuilder, VariantKind};
    /// let name = format!("/shmpipe-doc-anyoc-{}", std::process::id());
    /// let _tx = locked::Builder::default().create_producer(&name)?;
    /// let rx = AnyBuilder::default().open_consumer(&name)?;
    /// assert_eq!(rx.kind(), VariantKind::Locked);
    /// # Ok::<(), shmpipe::Error>(())
    /// ```
    ///
    /// # Errors
    /// As [`Self::open_producer`].
    pub fn open_consumer(&self, name: &str) -> Result<AnyConsumer> {
        self.open_detecting(name)
    }

    /// Create `name` as a ring of this builder's kind, or, if it exists,
    /// open it as [`Self::open_producer`] does; a segment removed or created
    /// by another process in between is tried again.
    ///
    /// ```
    /// use shmpipe::AnyBuilder;
    /// let name = format!("/shmpipe-doc-anyoop-{}", std::process::id());
    /// let first = AnyBuilder::default().open_or_create_producer(&name)?;
    /// assert!(first.created);
    /// let second = AnyBuilder::default().open_or_create_consumer(&name)?;
    /// assert!(!second.created);
    /// # Ok::<(), shmpipe::Error>(())
    /// ```
    ///
    /// # Errors
    /// As [`Self::create_producer`] and [`Self::open_producer`].
    pub fn open_or_create_producer(&self, name: &str) -> Result<Attached<AnyProducer>> {
        self.open_or_create(name)
    }

    /// As [`Self::open_or_create_producer`], for the consumer.
    ///
    /// ```
    /// use shmpipe::{AnyBuilder, VariantKind};
    /// let name = format!("/shmpipe-doc-anyooc-{}", std::process::id());
    /// let rx = AnyBuilder::new(VariantKind::Locked).open_or_create_consumer(&name)?;
    /// assert!(rx.created && rx.end.kind() == VariantKind::Locked);
    /// let tx = AnyBuilder::default().open_or_create_producer(&name)?; // opens, detecting
    /// assert!(!tx.created && tx.end.kind() == VariantKind::Locked);
    /// # Ok::<(), shmpipe::Error>(())
    /// ```
    ///
    /// # Errors
    /// As [`Self::open_or_create_producer`].
    pub fn open_or_create_consumer(&self, name: &str) -> Result<Attached<AnyConsumer>> {
        self.open_or_create(name)
    }

    /// As [`Builder::anonymous`](crate::Builder::anonymous), of this
    /// builder's kind.
    ///
    /// ```
    /// use shmpipe::{AnyBuilder, VariantKind};
    /// let pair = AnyBuilder::new(VariantKind::Locked).capacity(4096).anonymous()?;
    /// let fd = pair.try_clone_fd()?; // or fork: see `Builder::anonymous`
    /// let mut tx = pair.into_producer()?;
    /// let mut rx = AnyBuilder::default().from_fd(fd)?.into_consumer()?;
    /// tx.send(b"x")?;
    /// rx.recv_with(|m| assert_eq!(m, b"x"))?;
    /// # Ok::<(), shmpipe::Error>(())
    /// ```
    ///
    /// # Errors
    /// `InvalidCapacity`, `Io`.
    pub fn anonymous(&self) -> Result<AnyPair> {
        Ok(match self.kind {
            VariantKind::LockFree => AnyPair::LockFree(self.lock_free.anonymous()?),
            VariantKind::Locked => AnyPair::Locked(self.locked.anonymous()?),
        })
    }

    /// As [`Builder::in_process`](crate::Builder::in_process), of
    /// this builder's kind.
    ///
    /// ```
    /// use shmpipe::{AnyBuilder, VariantKind};
    /// for kind in [VariantKind::LockFree, VariantKind::Locked] {
    ///     let (mut tx, mut rx) = AnyBuilder::new(kind).capacity(4096).in_process()?.split()?;
    ///     tx.send(kind.name().as_bytes())?;
    ///     rx.recv_with(|m| assert_eq!(m, kind.name().as_bytes()))?;
    /// }
    /// # Ok::<(), shmpipe::Error>(())
    /// ```
    ///
    /// # Errors
    /// `InvalidCapacity`, `Io`.
    pub fn in_process(&self) -> Result<AnyPair> {
        Ok(match self.kind {
            VariantKind::LockFree => AnyPair::LockFree(self.lock_free.in_process()?),
            VariantKind::Locked => AnyPair::Locked(self.locked.in_process()?),
        })
    }

    /// As [`Pair::from_fd`](crate::Pair::from_fd), of the kind
    /// the segment records (see [`Self::detect`]).
    ///
    /// ```
    /// use shmpipe::{locked, AnyBuilder, VariantKind};
    /// let pair = locked::Builder::default().capacity(4096).anonymous()?;
    /// let fd = pair.try_clone_fd()?; // e.g. received from another process
    /// let other = AnyBuilder::default().from_fd(fd)?; // the variant is read from the segment
    /// assert_eq!(other.kind(), VariantKind::Locked);
    /// # Ok::<(), shmpipe::Error>(())
    /// ```
    ///
    /// # Errors
    /// As [`Pair::from_fd`](crate::Pair::from_fd); `Io` if the
    /// descriptor cannot be duplicated to try the other kind.
    #[cfg(not(miri))]
    pub fn from_fd(&self, fd: std::os::fd::OwnedFd) -> Result<AnyPair> {
        let spare = fd.try_clone().map_err(|e| Error::io("dup", e))?;
        let open = |kind, fd| -> Result<AnyPair> {
            Ok(match kind {
                VariantKind::LockFree => AnyPair::LockFree(Pair::from_fd(fd)?),
                VariantKind::Locked => AnyPair::Locked(Pair::from_fd(fd)?),
            })
        };
        match open(self.kind, fd) {
            Err(Error::WrongVariant { found, .. }) if self.detect => open(found, spare),
            r => r,
        }
    }

    /// Open `name` as `E`, of this builder's kind or (detecting) of the
    /// kind the segment records.
    fn open_detecting<E: End>(&self, name: &str) -> Result<E> {
        let mut kind = self.kind;
        let mut attempt = 1;
        loop {
            match E::open(self, kind, name) {
                // Each attempt names the kind found last: another try only
                // if the segment was replaced by one of the other kind.
                Err(Error::WrongVariant { found, .. })
                    if self.detect && found != kind && attempt < ATTEMPTS =>
                {
                    kind = found;
                    attempt += 1;
                }
                r => return r,
            }
        }
    }

    fn open_or_create<E: End>(&self, name: &str) -> Result<Attached<E>> {
        let mut attempt = 1;
        loop {
            // O_EXCL first: of two processes doing this at once, exactly one
            // creates, and the other opens (waiting for its initialisation).
            match E::create(self, self.kind, name) {
                Ok(end) => return Ok(Attached { end, created: true }),
                Err(Error::AlreadyExists { .. }) => {}
                Err(e) => return Err(e),
            }
            match self.open_detecting::<E>(name) {
                // Removed between our create and our open: create it.
                Err(Error::NotFound { .. }) if attempt < ATTEMPTS => attempt += 1,
                r => {
                    return r.map(|end| Attached {
                        end,
                        created: false,
                    })
                }
            }
        }
    }
}

/// What [`AnyBuilder`] makes: a producer or a consumer.
trait End: Sized {
    fn create(b: &AnyBuilder, kind: VariantKind, name: &str) -> Result<Self>;
    fn open(b: &AnyBuilder, kind: VariantKind, name: &str) -> Result<Self>;
}

impl End for AnyProducer {
    fn create(b: &AnyBuilder, kind: VariantKind, name: &str) -> Result<Self> {
        Ok(match kind {
            VariantKind::LockFree => AnyProducer::LockFree(b.lock_free.create_producer(name)?),
            VariantKind::Locked => AnyProducer::Locked(b.locked.create_producer(name)?),
        })
    }
    fn open(b: &AnyBuilder, kind: VariantKind, name: &str) -> Result<Self> {
        Ok(match kind {
            VariantKind::LockFree => AnyProducer::LockFree(b.lock_free.open_producer(name)?),
            VariantKind::Locked => AnyProducer::Locked(b.locked.open_producer(name)?),
        })
    }
}

impl End for AnyConsumer {
    fn create(b: &AnyBuilder, kind: VariantKind, name: &str) -> Result<Self> {
        Ok(match kind {
            VariantKind::LockFree => AnyConsumer::LockFree(b.lock_free.create_consumer(name)?),
            VariantKind::Locked => AnyConsumer::Locked(b.locked.create_consumer(name)?),
        })
    }
    fn open(b: &AnyBuilder, kind: VariantKind, name: &str) -> Result<Self> {
        Ok(match kind {
            VariantKind::LockFree => AnyConsumer::LockFree(b.lock_free.open_consumer(name)?),
            VariantKind::Locked => AnyConsumer::Locked(b.locked.open_consumer(name)?),
        })
    }
}

// ---------------------------------------------------------------------------
// Pair

/// Both ends of a new anonymous or in-process ring of either variant.
#[derive(Debug)]
pub enum AnyPair {
    /// A lock-free ring.
    LockFree(Pair<LockFree>),
    /// A locked ring.
    Locked(Pair<Locked>),
}

impl AnyPair {
    /// The ring's variant.
    ///
    /// ```
    /// use shmpipe::{AnyBuilder, VariantKind};
    /// let pair = AnyBuilder::new(VariantKind::Locked).in_process()?;
    /// assert_eq!(pair.kind(), VariantKind::Locked);
    /// # Ok::<(), shmpipe::Error>(())
    /// ```
    pub fn kind(&self) -> VariantKind {
        match self {
            AnyPair::LockFree(_) => VariantKind::LockFree,
            AnyPair::Locked(_) => VariantKind::Locked,
        }
    }

    /// As [`Pair::into_producer`](crate::Pair::into_producer).
    ///
    /// ```
    /// use shmpipe::{AnyBuilder, Error};
    /// let pair = AnyBuilder::default().capacity(4096).anonymous()?;
    /// let fd = pair.try_clone_fd()?;
    /// let _tx = pair.into_producer()?;
    /// let again = AnyBuilder::default().from_fd(fd)?.into_producer();
    /// assert!(matches!(again, Err(Error::RoleTaken { .. })));
    /// # Ok::<(), shmpipe::Error>(())
    /// ```
    ///
    /// # Errors
    /// `RoleTaken`, `Io`.
    pub fn into_producer(self) -> Result<AnyProducer> {
        Ok(match self {
            AnyPair::LockFree(p) => AnyProducer::LockFree(p.into_producer()?),
            AnyPair::Locked(p) => AnyProducer::Locked(p.into_producer()?),
        })
    }

    /// As [`Pair::into_consumer`](crate::Pair::into_consumer).
    ///
    /// ```
    /// use shmpipe::AnyBuilder;
    /// let pair = AnyBuilder::default().capacity(4096).anonymous()?;
    /// let fd = pair.try_clone_fd()?;
    /// let mut rx = pair.into_consumer()?;
    /// let mut tx = AnyBuilder::default().from_fd(fd)?.into_producer()?; // the other side
    /// tx.send(b"y")?;
    /// rx.recv_with(|m| assert_eq!(m, b"y"))?;
    /// # Ok::<(), shmpipe::Error>(())
    /// ```
    ///
    /// # Errors
    /// `RoleTaken`, `Io`.
    pub fn into_consumer(self) -> Result<AnyConsumer> {
        Ok(match self {
            AnyPair::LockFree(p) => AnyConsumer::LockFree(p.into_consumer()?),
            AnyPair::Locked(p) => AnyConsumer::Locked(p.into_consumer()?),
        })
    }

    /// As [`Pair::split`](crate::Pair::split).
    ///
    /// ```
    /// use shmpipe::{AnyBuilder, VariantKind};
    /// let (mut tx, mut rx) = AnyBuilder::new(VariantKind::Locked).in_process()?.split()?;
    /// tx.send(b"z")?;
    /// assert_eq!(rx.recv_with(|m| m.to_vec())?, b"z");
    /// # Ok::<(), shmpipe::Error>(())
    /// ```
    ///
    /// # Errors
    /// `Io`.
    pub fn split(self) -> Result<(AnyProducer, AnyConsumer)> {
        Ok(match self {
            AnyPair::LockFree(p) => {
                let (p, c) = p.split()?;
                (AnyProducer::LockFree(p), AnyConsumer::LockFree(c))
            }
            AnyPair::Locked(p) => {
                let (p, c) = p.split()?;
                (AnyProducer::Locked(p), AnyConsumer::Locked(c))
            }
        })
    }

    /// As [`Pair::try_clone_fd`](crate::Pair::try_clone_fd).
    ///
    /// ```
    /// use shmpipe::{AnyBuilder, Error};
    /// let _fd = AnyBuilder::default().anonymous()?.try_clone_fd()?;
    /// let heap = AnyBuilder::default().in_process()?;
    /// assert!(matches!(heap.try_clone_fd(), Err(Error::Io { .. }))); // no descriptor
    /// # Ok::<(), shmpipe::Error>(())
    /// ```
    ///
    /// # Errors
    /// `Io` (for an in-process ring, which has no descriptor).
    #[cfg(not(miri))]
    pub fn try_clone_fd(&self) -> Result<std::os::fd::OwnedFd> {
        each!(AnyPair, self, p => p.try_clone_fd())
    }
}

// ---------------------------------------------------------------------------
// Producer

/// The sending end of a ring of either variant: the methods of
/// [`Producer`](crate::Producer), one `match` per call.
#[derive(Debug)]
pub enum AnyProducer {
    /// A lock-free producer.
    LockFree(Producer<LockFree>),
    /// A locked producer.
    Locked(Producer<Locked>),
}

impl From<Producer<LockFree>> for AnyProducer {
    fn from(p: Producer<LockFree>) -> Self {
        AnyProducer::LockFree(p)
    }
}

impl From<Producer<Locked>> for AnyProducer {
    fn from(p: Producer<Locked>) -> Self {
        AnyProducer::Locked(p)
    }
}

impl AnyProducer {
    /// The ring's variant.
    ///
    /// ```
    /// use shmpipe::{AnyProducer, Builder, VariantKind};
    /// let (tx, _rx) = Builder::new().in_process()?.split()?;
    /// let tx = AnyProducer::from(tx); // a generic producer, its kind now a value
    /// assert_eq!(tx.kind(), VariantKind::LockFree);
    /// # Ok::<(), shmpipe::Error>(())
    /// ```
    pub fn kind(&self) -> VariantKind {
        match self {
            AnyProducer::LockFree(_) => VariantKind::LockFree,
            AnyProducer::Locked(_) => VariantKind::Locked,
        }
    }

    /// Size of the data area in bytes.
    ///
    /// ```
    /// use shmpipe::{AnyBuilder, VariantKind};
    /// let (tx, _rx) = AnyBuilder::new(VariantKind::Locked).capacity(4096).in_process()?.split()?;
    /// assert_eq!(tx.capacity(), 4096);
    /// # Ok::<(), shmpipe::Error>(())
    /// ```
    #[inline]
    pub fn capacity(&self) -> u64 {
        each!(AnyProducer, self, p => p.capacity())
    }

    /// Largest message the ring accepts.
    ///
    /// ```
    /// use shmpipe::{AnyBuilder, Error, VariantKind};
    /// let (mut tx, _rx) = AnyBuilder::new(VariantKind::Locked).capacity(4096).in_process()?.split()?;
    /// assert_eq!(tx.max_message(), 2040);
    /// assert!(matches!(tx.try_send(&[0; 2041]), Err(Error::TooLarge { .. })));
    /// # Ok::<(), shmpipe::Error>(())
    /// ```
    #[inline]
    pub fn max_message(&self) -> usize {
        each!(AnyProducer, self, p => p.max_message())
    }

    /// The ring's wait strategy.
    ///
    /// ```
    /// use shmpipe::{AnyBuilder, WaitStrategy};
    /// let (tx, _rx) = AnyBuilder::default().wait(WaitStrategy::Spin).in_process()?.split()?;
    /// assert_eq!(tx.wait_strategy(), WaitStrategy::Spin);
    /// # Ok::<(), shmpipe::Error>(())
    /// ```
    #[inline]
    pub fn wait_strategy(&self) -> WaitStrategy {
        each!(AnyProducer, self, p => p.wait_strategy())
    }

    /// As [`Producer::len_bytes`](crate::Producer::len_bytes): bytes of unread records.
    ///
    /// ```
    /// use shmpipe::{AnyBuilder, VariantKind};
    /// let (mut tx, _rx) = AnyBuilder::new(VariantKind::Locked).in_process()?.split()?;
    /// tx.send(b"12345")?; // a 16-byte record: header and payload rounded up to 8
    /// assert_eq!(tx.len_bytes(), 16);
    /// # Ok::<(), shmpipe::Error>(())
    /// ```
    #[inline]
    pub fn len_bytes(&self) -> u64 {
        each!(AnyProducer, self, p => p.len_bytes())
    }

    /// Whether no record is waiting to be read.
    ///
    /// ```
    /// use shmpipe::{AnyBuilder, VariantKind};
    /// let (mut tx, mut rx) = AnyBuilder::new(VariantKind::Locked).in_process()?.split()?;
    /// tx.send(b"x")?;
    /// assert!(!tx.is_empty());
    /// rx.try_recv_with(|_| ())?;
    /// assert!(tx.is_empty());
    /// # Ok::<(), shmpipe::Error>(())
    /// ```
    #[inline]
    pub fn is_empty(&self) -> bool {
        each!(AnyProducer, self, p => p.is_empty())
    }

    /// A snapshot of the ring's counters.
    ///
    /// ```
    /// use shmpipe::{AnyBuilder, VariantKind};
    /// let (mut tx, _rx) = AnyBuilder::new(VariantKind::Locked).in_process()?.split()?;
    /// tx.send_batch(&[&b"ab"[..], b"cde"])?;
    /// let s = tx.stats();
    /// assert_eq!((s.messages_sent, s.bytes_sent), (2, 5));
    /// # Ok::<(), shmpipe::Error>(())
    /// ```
    pub fn stats(&self) -> Stats {
        each!(AnyProducer, self, p => p.stats())
    }

    /// As [`Producer::peer_status`](crate::Producer::peer_status).
    ///
    /// ```
    /// use shmpipe::{AnyBuilder, PeerStatus};
    /// let (tx, rx) = AnyBuilder::default().in_process()?.split()?;
    /// assert_eq!(tx.peer_status()?, PeerStatus::Alive);
    /// drop(rx);
    /// assert_eq!(tx.peer_status()?, PeerStatus::Closed);
    /// # Ok::<(), shmpipe::Error>(())
    /// ```
    ///
    /// # Errors
    /// As the generic method.
    pub fn peer_status(&self) -> Result<PeerStatus> {
        each!(AnyProducer, self, p => p.peer_status())
    }

    /// Whether the consumer is attached and alive.
    ///
    /// ```
    /// use shmpipe::{AnyBuilder, VariantKind};
    /// let (tx, rx) = AnyBuilder::new(VariantKind::Locked).in_process()?.split()?;
    /// assert!(tx.is_peer_alive());
    /// rx.close()?;
    /// assert!(!tx.is_peer_alive());
    /// # Ok::<(), shmpipe::Error>(())
    /// ```
    pub fn is_peer_alive(&self) -> bool {
        each!(AnyProducer, self, p => p.is_peer_alive())
    }

    /// Close the producer side in order.
    ///
    /// ```
    /// use shmpipe::{AnyBuilder, Error, VariantKind};
    /// let (mut tx, mut rx) = AnyBuilder::new(VariantKind::Locked).in_process()?.split()?;
    /// tx.send(b"bye")?;
    /// tx.close()?;
    /// rx.recv_with(|m| assert_eq!(m, b"bye"))?;
    /// assert!(matches!(rx.recv_with(|_| ()), Err(Error::Disconnected)));
    /// # Ok::<(), shmpipe::Error>(())
    /// ```
    ///
    /// # Errors
    /// As [`Producer::close`](crate::Producer::close).
    pub fn close(self) -> Result<()> {
        each!(AnyProducer, self, p => p.close())
    }

    /// As [`Producer::try_send`](crate::Producer::try_send).
    ///
    /// ```
    /// use shmpipe::{AnyBuilder, Error, VariantKind};
    /// let (mut tx, _rx) = AnyBuilder::new(VariantKind::Locked).capacity(64).in_process()?.split()?;
    /// tx.try_send(&[1; 24])?;
    /// assert!(matches!(tx.try_send(&[2; 24]), Err(Error::Full)));
    /// # Ok::<(), shmpipe::Error>(())
    /// ```
    ///
    /// # Errors
    /// As the generic method.
    #[inline]
    pub fn try_send(&mut self, msg: &[u8]) -> Result<()> {
        each!(AnyProducer, self, p => p.try_send(msg))
    }

    /// As [`Producer::send`](crate::Producer::send).
    ///
    /// ```
    /// use shmpipe::{AnyBuilder, VariantKind};
    /// let (mut tx, mut rx) = AnyBuilder::new(VariantKind::Locked).capacity(64).in_process()?.split()?;
    /// let t = std::thread::spawn(move || (0..100u8).try_for_each(|i| tx.send(&[i])));
    /// for i in 0..100u8 {
    ///     rx.recv_with(|m| assert_eq!(m, [i]))?; // the sender sleeps while the ring is full
    /// }
    /// t.join().unwrap()?;
    /// # Ok::<(), shmpipe::Error>(())
    /// ```
    ///
    /// # Errors
    /// As the generic method.
    #[inline]
    pub fn send(&mut self, msg: &[u8]) -> Result<()> {
        each!(AnyProducer, self, p => p.send(msg))
    }

    /// As [`Producer::send_timeout`](crate::Producer::send_timeout).
    ///
    /// ```
    /// use std::time::Duration;
    /// use shmpipe::{AnyBuilder, Error, VariantKind};
    /// let (mut tx, _rx) = AnyBuilder::new(VariantKind::Locked).capacity(64).in_process()?.split()?;
    /// tx.send_timeout(&[1; 24], Duration::from_millis(10))?;
    /// let r = tx.send_timeout(&[2; 24], Duration::from_millis(10)); // full, nobody reads
    /// assert!(matches!(r, Err(Error::Timeout)));
    /// # Ok::<(), shmpipe::Error>(())
    /// ```
    ///
    /// # Errors
    /// As the generic method.
    #[inline]
    pub fn send_timeout(&mut self, msg: &[u8], timeout: Duration) -> Result<()> {
        each!(AnyProducer, self, p => p.send_timeout(msg, timeout))
    }

    /// As [`Producer::send_batch`](crate::Producer::send_batch).
    ///
    /// ```
    /// use shmpipe::AnyBuilder;
    /// let (mut tx, mut rx) = AnyBuilder::default().in_process()?.split()?;
    /// tx.send_batch(&["a", "b", "c"])?;
    /// let mut got = Vec::new();
    /// rx.drain(usize::MAX, |m| got.extend_from_slice(m))?;
    /// assert_eq!(got, b"abc");
    /// # Ok::<(), shmpipe::Error>(())
    /// ```
    ///
    /// # Errors
    /// As the generic method.
    pub fn send_batch<M: AsRef<[u8]>>(&mut self, msgs: &[M]) -> Result<()> {
        each!(AnyProducer, self, p => p.send_batch(msgs))
    }

    /// As [`Producer::try_send_batch`](crate::Producer::try_send_batch).
    ///
    /// ```
    /// use shmpipe::{AnyBuilder, Error, VariantKind};
    /// let (mut tx, _rx) = AnyBuilder::new(VariantKind::Locked).capacity(64).in_process()?.split()?;
    /// let msgs = [[1u8; 16], [2; 16], [3; 16]]; // 24-byte records
    /// assert_eq!(tx.try_send_batch(&msgs)?, 2); // as many as fit
    /// assert!(matches!(tx.try_send_batch(&msgs[2..]), Err(Error::Full)));
    /// # Ok::<(), shmpipe::Error>(())
    /// ```
    ///
    /// # Errors
    /// As the generic method.
    pub fn try_send_batch<M: AsRef<[u8]>>(&mut self, msgs: &[M]) -> Result<usize> {
        each!(AnyProducer, self, p => p.try_send_batch(msgs))
    }

    /// As [`Producer::try_claim`](crate::Producer::try_claim).
    ///
    /// ```
    /// use shmpipe::{AnyBuilder, Error, VariantKind};
    /// let (mut tx, mut rx) = AnyBuilder::new(VariantKind::Locked).capacity(64).in_process()?.split()?;
    /// tx.try_claim(24)?.commit(); // 24 zero bytes
    /// assert!(matches!(tx.try_claim(24), Err(Error::Full)));
    /// rx.try_recv_with(|m| assert_eq!(m, [0; 24]))?;
    /// # Ok::<(), shmpipe::Error>(())
    /// ```
    ///
    /// # Errors
    /// As the generic method.
    #[inline]
    pub fn try_claim(&mut self, len: usize) -> Result<AnyClaim<'_>> {
        Ok(match self {
            AnyProducer::LockFree(p) => AnyClaim::LockFree(p.try_claim(len)?),
            AnyProducer::Locked(p) => AnyClaim::Locked(p.try_claim(len)?),
        })
    }

    /// As [`Producer::claim`](crate::Producer::claim).
    ///
    /// ```
    /// use shmpipe::{AnyBuilder, VariantKind};
    /// let (mut tx, mut rx) = AnyBuilder::new(VariantKind::Locked).in_process()?.split()?;
    /// let mut claim = tx.claim(5)?; // written in place (locked: under the lock)
    /// claim.copy_from_slice(b"hello");
    /// claim.commit();
    /// rx.recv_with(|m| assert_eq!(m, b"hello"))?;
    /// # Ok::<(), shmpipe::Error>(())
    /// ```
    ///
    /// # Errors
    /// As the generic method.
    #[inline]
    pub fn claim(&mut self, len: usize) -> Result<AnyClaim<'_>> {
        Ok(match self {
            AnyProducer::LockFree(p) => AnyClaim::LockFree(p.claim(len)?),
            AnyProducer::Locked(p) => AnyClaim::Locked(p.claim(len)?),
        })
    }

    /// As [`Producer::claim_timeout`](crate::Producer::claim_timeout).
    ///
    /// ```
    /// use std::time::Duration;
    /// use shmpipe::{AnyBuilder, Error};
    /// let (mut tx, _rx) = AnyBuilder::default().capacity(64).in_process()?.split()?;
    /// tx.claim_timeout(24, Duration::from_millis(10))?.commit();
    /// let r = tx.claim_timeout(24, Duration::from_millis(10));
    /// assert!(matches!(r, Err(Error::Timeout)));
    /// # Ok::<(), shmpipe::Error>(())
    /// ```
    ///
    /// # Errors
    /// As the generic method.
    #[inline]
    pub fn claim_timeout(&mut self, len: usize, timeout: Duration) -> Result<AnyClaim<'_>> {
        Ok(match self {
            AnyProducer::LockFree(p) => AnyClaim::LockFree(p.claim_timeout(len, timeout)?),
            AnyProducer::Locked(p) => AnyClaim::Locked(p.claim_timeout(len, timeout)?),
        })
    }

    /// Watch this producer in `set`, ready when a message of `len` bytes
    /// fits: [`WaitSet::add_producer_for`](crate::WaitSet::add_producer_for).
    ///
    /// ```
    /// use shmpipe::{AnyBuilder, Events, VariantKind, WaitSet};
    /// let (tx, _rx) = AnyBuilder::new(VariantKind::Locked).capacity(4096).in_process()?.split()?;
    /// let mut set = WaitSet::new()?;
    /// let t = tx.add_to(&mut set, 100)?; // ready when 100 bytes fit
    /// let mut events = Events::new();
    /// set.wait(&mut events, None)?;
    /// assert!(events.contains(t));
    /// # Ok::<(), shmpipe::Error>(())
    /// ```
    ///
    /// # Errors
    /// As the `WaitSet` method.
    #[cfg(all(target_os = "linux", not(miri)))]
    pub fn add_to(&self, set: &mut crate::WaitSet, len: usize) -> Result<crate::Token> {
        each!(AnyProducer, self, p => set.add_producer_for(p, len))
    }
}

impl io::Write for AnyProducer {
    /// Each `write` is one message (see the generic producer's `Write`).
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        each!(AnyProducer, self, p => p.write(buf))
    }

    fn flush(&mut self) -> io::Result<()> {
        each!(AnyProducer, self, p => p.flush())
    }
}

/// A zero-copy claim in a ring of either variant: write the message in
/// place (`DerefMut<Target = [u8]>`), then [`Self::commit`]; dropping it
/// aborts it. As [`Claim`](crate::Claim), a locked ring's claim
/// holds the ring's lock until then.
pub enum AnyClaim<'a> {
    /// A claim in a lock-free ring.
    LockFree(Claim<'a, LockFree>),
    /// A claim in a locked ring.
    Locked(Claim<'a, Locked>),
}

impl AnyClaim<'_> {
    /// The ring's variant.
    ///
    /// ```
    /// use shmpipe::{AnyBuilder, VariantKind};
    /// let (mut tx, _rx) = AnyBuilder::new(VariantKind::Locked).in_process()?.split()?;
    /// let claim = tx.claim(8)?;
    /// assert_eq!(claim.kind(), VariantKind::Locked);
    /// # Ok::<(), shmpipe::Error>(())
    /// ```
    pub fn kind(&self) -> VariantKind {
        match self {
            AnyClaim::LockFree(_) => VariantKind::LockFree,
            AnyClaim::Locked(_) => VariantKind::Locked,
        }
    }

    /// Publish the whole claim as one message.
    ///
    /// ```
    /// use shmpipe::AnyBuilder;
    /// let (mut tx, mut rx) = AnyBuilder::default().in_process()?.split()?;
    /// let mut claim = tx.claim(3)?;
    /// claim.copy_from_slice(b"abc");
    /// claim.commit();
    /// rx.try_recv_with(|m| assert_eq!(m, b"abc"))?;
    /// # Ok::<(), shmpipe::Error>(())
    /// ```
    #[inline]
    pub fn commit(self) {
        each!(AnyClaim, self, c => c.commit())
    }

    /// Publish its first `n` bytes as one message.
    ///
    /// ```
    /// use shmpipe::{AnyBuilder, VariantKind};
    /// let (mut tx, mut rx) = AnyBuilder::new(VariantKind::Locked).in_process()?.split()?;
    /// let mut claim = tx.claim(64)?; // room for the longest
    /// claim[..2].copy_from_slice(b"ok");
    /// claim.commit_len(2); // publish only what was written
    /// rx.try_recv_with(|m| assert_eq!(m, b"ok"))?;
    /// # Ok::<(), shmpipe::Error>(())
    /// ```
    ///
    /// # Panics
    /// As [`Claim::commit_len`](crate::Claim::commit_len): if `n`
    /// is more than claimed.
    #[inline]
    pub fn commit_len(self, n: usize) {
        each!(AnyClaim, self, c => c.commit_len(n))
    }
}

impl std::fmt::Debug for AnyClaim<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AnyClaim")
            .field("variant", &self.kind())
            .field("len", &self.len())
            .finish()
    }
}

impl std::ops::Deref for AnyClaim<'_> {
    type Target = [u8];
    #[inline]
    fn deref(&self) -> &[u8] {
        each!(AnyClaim, self, c => c)
    }
}

impl std::ops::DerefMut for AnyClaim<'_> {
    #[inline]
    fn deref_mut(&mut self) -> &mut [u8] {
        each!(AnyClaim, self, c => c)
    }
}

// ---------------------------------------------------------------------------
// Consumer

/// The receiving end of a ring of either variant: the methods of
/// [`Consumer`](crate::Consumer), one `match` per call.
#[derive(Debug)]
pub enum AnyConsumer {
    /// A lock-free consumer.
    LockFree(Consumer<LockFree>),
    /// A locked consumer.
    Locked(Consumer<Locked>),
}

impl From<Consumer<LockFree>> for AnyConsumer {
    fn from(c: Consumer<LockFree>) -> Self {
        AnyConsumer::LockFree(c)
    }
}

impl From<Consumer<Locked>> for AnyConsumer {
    fn from(c: Consumer<Locked>) -> Self {
        AnyConsumer::Locked(c)
    }
}

impl AnyConsumer {
    /// The ring's variant.
    ///
    /// ```
    /// use shmpipe::{locked, AnyConsumer, VariantKind};
    /// let (_tx, rx) = locked::Builder::default().in_process()?.split()?;
    /// assert_eq!(AnyConsumer::from(rx).kind(), VariantKind::Locked);
    /// # Ok::<(), shmpipe::Error>(())
    /// ```
    pub fn kind(&self) -> VariantKind {
        match self {
            AnyConsumer::LockFree(_) => VariantKind::LockFree,
            AnyConsumer::Locked(_) => VariantKind::Locked,
        }
    }

    /// Size of the data area in bytes.
    ///
    /// ```
    /// use shmpipe::AnyBuilder;
    /// let (_tx, rx) = AnyBuilder::default().capacity(4096).in_process()?.split()?;
    /// assert_eq!(rx.capacity(), 4096);
    /// # Ok::<(), shmpipe::Error>(())
    /// ```
    #[inline]
    pub fn capacity(&self) -> u64 {
        each!(AnyConsumer, self, c => c.capacity())
    }

    /// Largest message the ring carries.
    ///
    /// ```
    /// use shmpipe::AnyBuilder;
    /// let (_tx, rx) = AnyBuilder::default().capacity(4096).in_process()?.split()?;
    /// assert_eq!(rx.max_message(), 2040); // capacity / 2 - 8
    /// # Ok::<(), shmpipe::Error>(())
    /// ```
    #[inline]
    pub fn max_message(&self) -> usize {
        each!(AnyConsumer, self, c => c.max_message())
    }

    /// The ring's wait strategy.
    ///
    /// ```
    /// use shmpipe::{AnyBuilder, WaitStrategy};
    /// let (_tx, rx) = AnyBuilder::default().in_process()?.split()?;
    /// assert_eq!(rx.wait_strategy(), WaitStrategy::Futex); // the default
    /// # Ok::<(), shmpipe::Error>(())
    /// ```
    #[inline]
    pub fn wait_strategy(&self) -> WaitStrategy {
        each!(AnyConsumer, self, c => c.wait_strategy())
    }

    /// As [`Consumer::len_bytes`](crate::Consumer::len_bytes): bytes of unread records.
    ///
    /// ```
    /// use shmpipe::{AnyBuilder, VariantKind};
    /// let (mut tx, rx) = AnyBuilder::new(VariantKind::Locked).in_process()?.split()?;
    /// tx.send(b"1234567890")?; // 8 + 16 bytes
    /// assert_eq!(rx.len_bytes(), 24);
    /// # Ok::<(), shmpipe::Error>(())
    /// ```
    #[inline]
    pub fn len_bytes(&self) -> u64 {
        each!(AnyConsumer, self, c => c.len_bytes())
    }

    /// Whether no record is waiting to be read.
    ///
    /// ```
    /// use shmpipe::{AnyBuilder, VariantKind};
    /// let (mut tx, rx) = AnyBuilder::new(VariantKind::Locked).in_process()?.split()?;
    /// assert!(rx.is_empty());
    /// tx.send(b"x")?;
    /// assert!(!rx.is_empty());
    /// # Ok::<(), shmpipe::Error>(())
    /// ```
    #[inline]
    pub fn is_empty(&self) -> bool {
        each!(AnyConsumer, self, c => c.is_empty())
    }

    /// A snapshot of the ring's counters.
    ///
    /// ```
    /// use shmpipe::{AnyBuilder, VariantKind};
    /// let (mut tx, mut rx) = AnyBuilder::new(VariantKind::Locked).in_process()?.split()?;
    /// tx.send(b"abc")?;
    /// rx.recv_with(|_| ())?;
    /// let s = rx.stats();
    /// assert_eq!((s.messages_received, s.bytes_received), (1, 3));
    /// # Ok::<(), shmpipe::Error>(())
    /// ```
    pub fn stats(&self) -> Stats {
        each!(AnyConsumer, self, c => c.stats())
    }

    /// As [`Consumer::peer_status`](crate::Consumer::peer_status).
    ///
    /// ```
    /// use shmpipe::{AnyBuilder, PeerStatus, VariantKind};
    /// let (tx, rx) = AnyBuilder::new(VariantKind::Locked).in_process()?.split()?;
    /// assert_eq!(rx.peer_status()?, PeerStatus::Alive);
    /// tx.close()?;
    /// assert_eq!(rx.peer_status()?, PeerStatus::Closed);
    /// # Ok::<(), shmpipe::Error>(())
    /// ```
    ///
    /// # Errors
    /// As the generic method.
    pub fn peer_status(&self) -> Result<PeerStatus> {
        each!(AnyConsumer, self, c => c.peer_status())
    }

    /// Whether the producer is attached and alive.
    ///
    /// ```
    /// use shmpipe::AnyBuilder;
    /// let (tx, rx) = AnyBuilder::default().in_process()?.split()?;
    /// assert!(rx.is_peer_alive());
    /// drop(tx);
    /// assert!(!rx.is_peer_alive());
    /// # Ok::<(), shmpipe::Error>(())
    /// ```
    pub fn is_peer_alive(&self) -> bool {
        each!(AnyConsumer, self, c => c.is_peer_alive())
    }

    /// Close the consumer side in order.
    ///
    /// ```
    /// use shmpipe::{AnyBuilder, Error, VariantKind};
    /// let (mut tx, rx) = AnyBuilder::new(VariantKind::Locked).in_process()?.split()?;
    /// rx.close()?;
    /// assert!(matches!(tx.send(b"anyone?"), Err(Error::Disconnected)));
    /// # Ok::<(), shmpipe::Error>(())
    /// ```
    ///
    /// # Errors
    /// As [`Consumer::close`](crate::Consumer::close).
    pub fn close(self) -> Result<()> {
        each!(AnyConsumer, self, c => c.close())
    }

    /// As [`Consumer::try_recv_with`](crate::Consumer::try_recv_with).
    ///
    /// ```
    /// use shmpipe::{AnyBuilder, Error, VariantKind};
    /// let (mut tx, mut rx) = AnyBuilder::new(VariantKind::Locked).in_process()?.split()?;
    /// assert!(matches!(rx.try_recv_with(|m| m.len()), Err(Error::Empty)));
    /// tx.send(b"four")?;
    /// assert_eq!(rx.try_recv_with(|m| m.len())?, 4);
    /// # Ok::<(), shmpipe::Error>(())
    /// ```
    ///
    /// # Errors
    /// As the generic method.
    #[inline]
    pub fn try_recv_with<R>(&mut self, f: impl FnOnce(&[u8]) -> R) -> Result<R> {
        each!(AnyConsumer, self, c => c.try_recv_with(f))
    }

    /// As [`Consumer::recv_with`](crate::Consumer::recv_with).
    ///
    /// ```
    /// use shmpipe::{AnyBuilder, VariantKind};
    /// let (mut tx, mut rx) = AnyBuilder::new(VariantKind::Locked).in_process()?.split()?;
    /// let t = std::thread::spawn(move || tx.send(b"later"));
    /// assert_eq!(rx.recv_with(|m| m.to_vec())?, b"later"); // waits for it
    /// t.join().unwrap()?;
    /// # Ok::<(), shmpipe::Error>(())
    /// ```
    ///
    /// # Errors
    /// As the generic method.
    #[inline]
    pub fn recv_with<R>(&mut self, f: impl FnOnce(&[u8]) -> R) -> Result<R> {
        each!(AnyConsumer, self, c => c.recv_with(f))
    }

    /// As [`Consumer::recv_with_timeout`](crate::Consumer::recv_with_timeout).
    ///
    /// ```
    /// use std::time::Duration;
    /// use shmpipe::{AnyBuilder, Error, VariantKind};
    /// let (_tx, mut rx) = AnyBuilder::new(VariantKind::Locked).in_process()?.split()?;
    /// let r = rx.recv_with_timeout(Duration::from_millis(10), |m| m.len());
    /// assert!(matches!(r, Err(Error::Timeout)));
    /// # Ok::<(), shmpipe::Error>(())
    /// ```
    ///
    /// # Errors
    /// As the generic method.
    #[inline]
    pub fn recv_with_timeout<R>(
        &mut self,
        timeout: Duration,
        f: impl FnOnce(&[u8]) -> R,
    ) -> Result<R> {
        each!(AnyConsumer, self, c => c.recv_with_timeout(timeout, f))
    }

    /// As [`Consumer::try_recv`](crate::Consumer::try_recv).
    ///
    /// ```
    /// use shmpipe::{AnyBuilder, Error, VariantKind};
    /// let (mut tx, mut rx) = AnyBuilder::new(VariantKind::Locked).in_process()?.split()?;
    /// let mut buf = Vec::new();
    /// assert!(matches!(rx.try_recv(&mut buf), Err(Error::Empty)));
    /// tx.send(b"now")?;
    /// assert_eq!((rx.try_recv(&mut buf)?, &buf[..]), (3, &b"now"[..]));
    /// # Ok::<(), shmpipe::Error>(())
    /// ```
    ///
    /// # Errors
    /// As the generic method.
    #[inline]
    pub fn try_recv(&mut self, buf: &mut Vec<u8>) -> Result<usize> {
        each!(AnyConsumer, self, c => c.try_recv(buf))
    }

    /// As [`Consumer::recv`](crate::Consumer::recv).
    ///
    /// ```
    /// use shmpipe::AnyBuilder;
    /// let (mut tx, mut rx) = AnyBuilder::default().in_process()?.split()?;
    /// tx.send(b"copied")?;
    /// let mut buf = Vec::new();
    /// assert_eq!(rx.recv(&mut buf)?, 6);
    /// assert_eq!(buf, b"copied");
    /// # Ok::<(), shmpipe::Error>(())
    /// ```
    ///
    /// # Errors
    /// As the generic method.
    #[inline]
    pub fn recv(&mut self, buf: &mut Vec<u8>) -> Result<usize> {
        each!(AnyConsumer, self, c => c.recv(buf))
    }

    /// As [`Consumer::recv_timeout`](crate::Consumer::recv_timeout).
    ///
    /// ```
    /// use std::time::Duration;
    /// use shmpipe::{AnyBuilder, Error};
    /// let (_tx, mut rx) = AnyBuilder::default().in_process()?.split()?;
    /// let r = rx.recv_timeout(&mut Vec::new(), Duration::from_millis(10));
    /// assert!(matches!(r, Err(Error::Timeout)));
    /// # Ok::<(), shmpipe::Error>(())
    /// ```
    ///
    /// # Errors
    /// As the generic method.
    #[inline]
    pub fn recv_timeout(&mut self, buf: &mut Vec<u8>, timeout: Duration) -> Result<usize> {
        each!(AnyConsumer, self, c => c.recv_timeout(buf, timeout))
    }

    /// As [`Consumer::try_recv_into`](crate::Consumer::try_recv_into).
    ///
    /// ```
    /// use shmpipe::{AnyBuilder, Error, VariantKind};
    /// let (mut tx, mut rx) = AnyBuilder::new(VariantKind::Locked).in_process()?.split()?;
    /// tx.send(b"twelve bytes")?;
    /// let r = rx.try_recv_into(&mut [0u8; 4]);
    /// assert!(matches!(r, Err(Error::BufferTooSmall { len: 12, buf_len: 4 }))); // kept
    /// assert_eq!(rx.try_recv_into(&mut [0u8; 16])?, 12);
    /// # Ok::<(), shmpipe::Error>(())
    /// ```
    ///
    /// # Errors
    /// As the generic method.
    #[inline]
    pub fn try_recv_into(&mut self, buf: &mut [u8]) -> Result<usize> {
        each!(AnyConsumer, self, c => c.try_recv_into(buf))
    }

    /// As [`Consumer::recv_into`](crate::Consumer::recv_into).
    ///
    /// ```
    /// use shmpipe::AnyBuilder;
    /// let (mut tx, mut rx) = AnyBuilder::default().in_process()?.split()?;
    /// tx.send(&42u64.to_le_bytes())?;
    /// let mut buf = [0u8; 8];
    /// rx.recv_into(&mut buf)?;
    /// assert_eq!(u64::from_le_bytes(buf), 42);
    /// # Ok::<(), shmpipe::Error>(())
    /// ```
    ///
    /// # Errors
    /// As the generic method.
    #[inline]
    pub fn recv_into(&mut self, buf: &mut [u8]) -> Result<usize> {
        each!(AnyConsumer, self, c => c.recv_into(buf))
    }

    /// As [`Consumer::recv_into_timeout`](crate::Consumer::recv_into_timeout).
    ///
    /// ```
    /// use std::time::Duration;
    /// use shmpipe::{AnyBuilder, Error, VariantKind};
    /// let (_tx, mut rx) = AnyBuilder::new(VariantKind::Locked).in_process()?.split()?;
    /// let r = rx.recv_into_timeout(&mut [0u8; 64], Duration::from_millis(10));
    /// assert!(matches!(r, Err(Error::Timeout)));
    /// # Ok::<(), shmpipe::Error>(())
    /// ```
    ///
    /// # Errors
    /// As the generic method.
    #[inline]
    pub fn recv_into_timeout(&mut self, buf: &mut [u8], timeout: Duration) -> Result<usize> {
        each!(AnyConsumer, self, c => c.recv_into_timeout(buf, timeout))
    }

    /// As [`Consumer::try_peek`](crate::Consumer::try_peek).
    ///
    /// ```
    /// use shmpipe::{AnyBuilder, Error, VariantKind};
    /// let (mut tx, mut rx) = AnyBuilder::new(VariantKind::Locked).in_process()?.split()?;
    /// assert!(matches!(rx.try_peek(), Err(Error::Empty)));
    /// tx.send(b"job")?;
    /// drop(rx.try_peek()?); // not released: still there
    /// rx.try_peek()?.release();
    /// assert!(rx.is_empty());
    /// # Ok::<(), shmpipe::Error>(())
    /// ```
    ///
    /// # Errors
    /// As the generic method.
    #[inline]
    pub fn try_peek(&mut self) -> Result<AnyMessage<'_>> {
        Ok(match self {
            AnyConsumer::LockFree(c) => AnyMessage::LockFree(c.try_peek()?),
            AnyConsumer::Locked(c) => AnyMessage::Locked(c.try_peek()?),
        })
    }

    /// As [`Consumer::peek`](crate::Consumer::peek).
    ///
    /// ```
    /// use shmpipe::AnyBuilder;
    /// let (mut tx, mut rx) = AnyBuilder::default().in_process()?.split()?;
    /// tx.send(b"in place")?;
    /// let msg = rx.peek()?;
    /// assert_eq!(&*msg, b"in place");
    /// msg.release();
    /// # Ok::<(), shmpipe::Error>(())
    /// ```
    ///
    /// # Errors
    /// As the generic method.
    #[inline]
    pub fn peek(&mut self) -> Result<AnyMessage<'_>> {
        Ok(match self {
            AnyConsumer::LockFree(c) => AnyMessage::LockFree(c.peek()?),
            AnyConsumer::Locked(c) => AnyMessage::Locked(c.peek()?),
        })
    }

    /// As [`Consumer::peek_timeout`](crate::Consumer::peek_timeout).
    ///
    /// ```
    /// use std::time::Duration;
    /// use shmpipe::{AnyBuilder, Error, VariantKind};
    /// let (_tx, mut rx) = AnyBuilder::new(VariantKind::Locked).in_process()?.split()?;
    /// assert!(matches!(rx.peek_timeout(Duration::from_millis(10)), Err(Error::Timeout)));
    /// # Ok::<(), shmpipe::Error>(())
    /// ```
    ///
    /// # Errors
    /// As the generic method.
    #[inline]
    pub fn peek_timeout(&mut self, timeout: Duration) -> Result<AnyMessage<'_>> {
        Ok(match self {
            AnyConsumer::LockFree(c) => AnyMessage::LockFree(c.peek_timeout(timeout)?),
            AnyConsumer::Locked(c) => AnyMessage::Locked(c.peek_timeout(timeout)?),
        })
    }

    /// As [`Consumer::drain`](crate::Consumer::drain).
    ///
    /// ```
    /// use shmpipe::{AnyBuilder, VariantKind};
    /// let (mut tx, mut rx) = AnyBuilder::new(VariantKind::Locked).in_process()?.split()?;
    /// for i in 0..5u8 {
    ///     tx.send(&[i])?;
    /// }
    /// let mut sum = 0;
    /// assert_eq!(rx.drain(usize::MAX, |m| sum += m[0])?, 5);
    /// assert_eq!(sum, 10);
    /// # Ok::<(), shmpipe::Error>(())
    /// ```
    ///
    /// # Errors
    /// As the generic method.
    #[inline]
    pub fn drain(&mut self, max: usize, f: impl FnMut(&[u8])) -> Result<usize> {
        each!(AnyConsumer, self, c => c.drain(max, f))
    }

    /// Watch this consumer in `set`:
    /// [`WaitSet::add_consumer`](crate::WaitSet::add_consumer).
    ///
    /// ```
    /// use shmpipe::{AnyBuilder, Events, VariantKind, WaitSet};
    /// let (mut tx, mut rx) = AnyBuilder::new(VariantKind::Locked).in_process()?.split()?;
    /// let mut set = WaitSet::new()?;
    /// let t = rx.add_to(&mut set)?;
    /// tx.send(b"x")?;
    /// let mut events = Events::new();
    /// set.wait(&mut events, None)?;
    /// assert!(events.contains(t));
    /// # Ok::<(), shmpipe::Error>(())
    /// ```
    ///
    /// # Errors
    /// As the `WaitSet` method.
    #[cfg(all(target_os = "linux", not(miri)))]
    pub fn add_to(&mut self, set: &mut crate::WaitSet) -> Result<crate::Token> {
        each!(AnyConsumer, self, c => set.add_consumer(c))
    }
}

impl io::Read for AnyConsumer {
    /// One message per `read` (see the generic consumer's `Read`).
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        each!(AnyConsumer, self, c => c.read(buf))
    }
}

/// A message lent by [`AnyConsumer::peek`] (`Deref<Target = [u8]>`):
/// [`Self::release`] frees its space; dropping it keeps it in the ring.
#[derive(Debug)]
pub enum AnyMessage<'a> {
    /// A message in a lock-free ring.
    LockFree(Message<'a, LockFree>),
    /// A message in a locked ring.
    Locked(Message<'a, Locked>),
}

impl AnyMessage<'_> {
    /// The ring's variant.
    ///
    /// ```
    /// use shmpipe::{AnyBuilder, VariantKind};
    /// let (mut tx, mut rx) = AnyBuilder::new(VariantKind::Locked).in_process()?.split()?;
    /// tx.send(b"x")?;
    /// assert_eq!(rx.peek()?.kind(), VariantKind::Locked);
    /// # Ok::<(), shmpipe::Error>(())
    /// ```
    pub fn kind(&self) -> VariantKind {
        match self {
            AnyMessage::LockFree(_) => VariantKind::LockFree,
            AnyMessage::Locked(_) => VariantKind::Locked,
        }
    }

    /// Free the message's space in the ring.
    ///
    /// ```
    /// use shmpipe::{AnyBuilder, Error};
    /// let (mut tx, mut rx) = AnyBuilder::default().in_process()?.split()?;
    /// tx.send(b"a")?;
    /// rx.try_peek()?.release(); // the producer may reuse its space
    /// assert!(matches!(rx.try_peek(), Err(Error::Empty)));
    /// # Ok::<(), shmpipe::Error>(())
    /// ```
    #[inline]
    pub fn release(self) {
        each!(AnyMessage, self, m => m.release())
    }
}

impl std::ops::Deref for AnyMessage<'_> {
    type Target = [u8];
    #[inline]
    fn deref(&self) -> &[u8] {
        each!(AnyMessage, self, m => m)
    }
}
