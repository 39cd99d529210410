//! One type per end over both ring variants: the library is generic over
//! `LockFree`/`Locked`; Python picks the variant at run time.

use std::time::Duration;

use shmpipe_core::{
    Error, GenericBuilder, GenericConsumer, GenericMessage, GenericPair, GenericProducer, LockFree,
    Locked, Result, Stats, WaitStrategy,
};

/// Which ring design: the CLI's spellings `lockfree` and `locked`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    LockFree,
    Locked,
}

impl Kind {
    /// Parse the CLI's spelling (`lock-free`, the library's name, is accepted too).
    pub fn parse(s: &str) -> Result<Kind> {
        match s {
            "lockfree" | "lock-free" => Ok(Kind::LockFree),
            "locked" => Ok(Kind::Locked),
            _ => Err(Error::InvalidOption {
                reason: format!("unknown ring variant {s:?}; use lockfree or locked"),
            }),
        }
    }

    /// The CLI's spelling.
    pub fn name(self) -> &'static str {
        match self {
            Kind::LockFree => "lockfree",
            Kind::Locked => "locked",
        }
    }
}

/// Run `$body` with `$x` bound to the inner generic value, whatever the variant.
macro_rules! dispatch {
    ($ty:ident, $v:expr, $x:ident => $body:expr) => {
        match $v {
            $ty::LockFree($x) => $body,
            $ty::Locked($x) => $body,
        }
    };
}

pub enum AnyProducer {
    LockFree(GenericProducer<LockFree>),
    Locked(GenericProducer<Locked>),
}

pub enum AnyConsumer {
    LockFree(GenericConsumer<LockFree>),
    Locked(GenericConsumer<Locked>),
}

pub enum AnyPair {
    LockFree(GenericPair<LockFree>),
    Locked(GenericPair<Locked>),
}

pub enum AnyMessage<'a> {
    LockFree(GenericMessage<'a, LockFree>),
    Locked(GenericMessage<'a, Locked>),
}

/// Options for a new ring.
#[derive(Debug, Clone, Copy)]
pub struct NewRing {
    pub capacity: u64,
    pub wait: WaitStrategy,
    pub kind: Kind,
}

fn builder<V: shmpipe_core::Variant>(o: &NewRing) -> GenericBuilder<V> {
    GenericBuilder::<V>::default()
        .capacity(o.capacity)
        .wait(o.wait)
}

impl NewRing {
    pub fn create_producer(&self, name: &str) -> Result<AnyProducer> {
        Ok(match self.kind {
            Kind::LockFree => AnyProducer::LockFree(builder(self).create_producer(name)?),
            Kind::Locked => AnyProducer::Locked(builder(self).create_producer(name)?),
        })
    }

    pub fn create_consumer(&self, name: &str) -> Result<AnyConsumer> {
        Ok(match self.kind {
            Kind::LockFree => AnyConsumer::LockFree(builder(self).create_consumer(name)?),
            Kind::Locked => AnyConsumer::Locked(builder(self).create_consumer(name)?),
        })
    }

    /// Two not-yet-attached ends on one anonymous sealed ring: the second
    /// opens a duplicate of the first's memfd, so each end owns a `Pair`.
    pub fn anonymous_pair(&self) -> Result<(AnyPair, AnyPair)> {
        Ok(match self.kind {
            Kind::LockFree => {
                let a = builder::<LockFree>(self).anonymous()?;
                let b = builder::<LockFree>(self).from_fd(a.try_clone_fd()?)?;
                (AnyPair::LockFree(a), AnyPair::LockFree(b))
            }
            Kind::Locked => {
                let a = builder::<Locked>(self).anonymous()?;
                let b = builder::<Locked>(self).from_fd(a.try_clone_fd()?)?;
                (AnyPair::Locked(a), AnyPair::Locked(b))
            }
        })
    }
}

/// Open an existing named ring of either variant: the segment records its
/// variant, and the library refuses the other one with `WrongVariant`.
pub fn open_producer(name: &str) -> Result<AnyProducer> {
    match GenericBuilder::<LockFree>::default().open_producer(name) {
        Err(Error::WrongVariant { .. }) => Ok(AnyProducer::Locked(
            GenericBuilder::<Locked>::default().open_producer(name)?,
        )),
        r => r.map(AnyProducer::LockFree),
    }
}

/// As [`open_producer`], for the consumer.
pub fn open_consumer(name: &str) -> Result<AnyConsumer> {
    match GenericBuilder::<LockFree>::default().open_consumer(name) {
        Err(Error::WrongVariant { .. }) => Ok(AnyConsumer::Locked(
            GenericBuilder::<Locked>::default().open_consumer(name)?,
        )),
        r => r.map(AnyConsumer::LockFree),
    }
}

impl AnyPair {
    pub fn into_producer(self) -> Result<AnyProducer> {
        Ok(match self {
            AnyPair::LockFree(p) => AnyProducer::LockFree(p.into_producer()?),
            AnyPair::Locked(p) => AnyProducer::Locked(p.into_producer()?),
        })
    }

    pub fn into_consumer(self) -> Result<AnyConsumer> {
        Ok(match self {
            AnyPair::LockFree(p) => AnyConsumer::LockFree(p.into_consumer()?),
            AnyPair::Locked(p) => AnyConsumer::Locked(p.into_consumer()?),
        })
    }
}

impl AnyProducer {
    pub fn kind(&self) -> Kind {
        match self {
            AnyProducer::LockFree(_) => Kind::LockFree,
            AnyProducer::Locked(_) => Kind::Locked,
        }
    }
    pub fn capacity(&self) -> u64 {
        dispatch!(AnyProducer, self, p => p.capacity())
    }
    pub fn max_message(&self) -> usize {
        dispatch!(AnyProducer, self, p => p.max_message())
    }
    pub fn wait_strategy(&self) -> WaitStrategy {
        dispatch!(AnyProducer, self, p => p.wait_strategy())
    }
    pub fn stats(&self) -> Stats {
        dispatch!(AnyProducer, self, p => p.stats())
    }
    pub fn try_send(&mut self, msg: &[u8]) -> Result<()> {
        dispatch!(AnyProducer, self, p => p.try_send(msg))
    }
    /// Wait at most `timeout` until `len` bytes fit, without sending:
    /// reserve them and drop the claim (an aborted claim publishes nothing).
    pub fn wait_room(&mut self, len: usize, timeout: Duration) -> Result<()> {
        dispatch!(AnyProducer, self, p => p.claim_timeout(len, timeout).map(drop))
    }
    pub fn close(self) -> Result<()> {
        dispatch!(AnyProducer, self, p => p.close())
    }
}

impl AnyConsumer {
    pub fn kind(&self) -> Kind {
        match self {
            AnyConsumer::LockFree(_) => Kind::LockFree,
            AnyConsumer::Locked(_) => Kind::Locked,
        }
    }
    pub fn capacity(&self) -> u64 {
        dispatch!(AnyConsumer, self, c => c.capacity())
    }
    pub fn max_message(&self) -> usize {
        dispatch!(AnyConsumer, self, c => c.max_message())
    }
    pub fn wait_strategy(&self) -> WaitStrategy {
        dispatch!(AnyConsumer, self, c => c.wait_strategy())
    }
    pub fn stats(&self) -> Stats {
        dispatch!(AnyConsumer, self, c => c.stats())
    }
    pub fn try_recv_with<R>(&mut self, f: impl FnOnce(&[u8]) -> R) -> Result<R> {
        dispatch!(AnyConsumer, self, c => c.try_recv_with(f))
    }
    pub fn try_recv_into(&mut self, buf: &mut [u8]) -> Result<usize> {
        dispatch!(AnyConsumer, self, c => c.try_recv_into(buf))
    }
    /// Wait at most `timeout` until a message (or the end) is there,
    /// without taking it: peek and drop the `Message` unreleased.
    pub fn wait_message(&mut self, timeout: Duration) -> Result<()> {
        dispatch!(AnyConsumer, self, c => c.peek_timeout(timeout).map(drop))
    }
    pub fn try_peek(&mut self) -> Result<AnyMessage<'_>> {
        Ok(match self {
            AnyConsumer::LockFree(c) => AnyMessage::LockFree(c.try_peek()?),
            AnyConsumer::Locked(c) => AnyMessage::Locked(c.try_peek()?),
        })
    }
    pub fn close(self) -> Result<()> {
        dispatch!(AnyConsumer, self, c => c.close())
    }
}

impl AnyMessage<'_> {
    pub fn bytes(&self) -> &[u8] {
        dispatch!(AnyMessage, self, m => &m[..])
    }
    pub fn release(self) {
        dispatch!(AnyMessage, self, m => m.release())
    }
}
