//! The library's run-time variant endpoints (`shmpipe::AnyProducer` etc.),
//! plus what Python adds on top: the options of a new ring, opening an
//! existing one, and waiting without taking (for slices of a blocking call).

use std::time::Duration;

use shmpipe_core::{AnyBuilder, Result, WaitStrategy};
pub use shmpipe_core::{AnyConsumer, AnyMessage, AnyPair, AnyProducer, VariantKind};

/// Options for a new ring.
#[derive(Debug, Clone, Copy)]
pub struct NewRing {
    pub capacity: u64,
    pub wait: WaitStrategy,
    pub kind: VariantKind,
}

impl NewRing {
    fn builder(&self) -> AnyBuilder {
        AnyBuilder::new(self.kind)
            .capacity(self.capacity)
            .wait(self.wait)
    }

    pub fn create_producer(&self, name: &str) -> Result<AnyProducer> {
        self.builder().create_producer(name)
    }

    pub fn create_consumer(&self, name: &str) -> Result<AnyConsumer> {
        self.builder().create_consumer(name)
    }

    /// Two not-yet-attached ends on one anonymous sealed ring: the second
    /// opens a duplicate of the first's memfd, so each end owns a pair.
    pub fn anonymous_pair(&self) -> Result<(AnyPair, AnyPair)> {
        let b = self.builder();
        let a = b.anonymous()?;
        let other = b.from_fd(a.try_clone_fd()?)?;
        Ok((a, other))
    }
}

/// Open an existing named ring of either variant (read from the segment).
pub fn open_producer(name: &str) -> Result<AnyProducer> {
    AnyBuilder::default().open_producer(name)
}

/// As [`open_producer`], for the consumer.
pub fn open_consumer(name: &str) -> Result<AnyConsumer> {
    AnyBuilder::default().open_consumer(name)
}

/// Waiting in slices (of a blocking call Python can interrupt) without
/// sending: see [`WaitRoom::wait_room`].
pub trait WaitRoom {
    /// Wait at most `timeout` until `len` bytes fit, without sending:
    /// reserve them and drop the claim (an aborted claim publishes nothing).
    fn wait_room(&mut self, len: usize, timeout: Duration) -> Result<()>;
}

impl WaitRoom for AnyProducer {
    fn wait_room(&mut self, len: usize, timeout: Duration) -> Result<()> {
        self.claim_timeout(len, timeout).map(drop)
    }
}

/// Waiting in slices without receiving: see [`WaitMessage::wait_message`].
pub trait WaitMessage {
    /// Wait at most `timeout` until a message (or the end) is there,
    /// without taking it: peek and drop the message unreleased.
    fn wait_message(&mut self, timeout: Duration) -> Result<()>;
}

impl WaitMessage for AnyConsumer {
    fn wait_message(&mut self, timeout: Duration) -> Result<()> {
        self.peek_timeout(timeout).map(drop)
    }
}

/// A lent message's bytes.
pub trait MessageBytes {
    fn bytes(&self) -> &[u8];
}

impl MessageBytes for AnyMessage<'_> {
    fn bytes(&self) -> &[u8] {
        self
    }
}
