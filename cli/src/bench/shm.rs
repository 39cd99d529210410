//! shmpipe itself, through its public API: two anonymous rings (one per
//! direction) made before the fork, each end attached after it. Every
//! message is copied out (`try_recv_into` / `recv_into`; with `drain`, into
//! the same buffer inside the batch when streaming, into a batch buffer for
//! ping-pong) before the harness checks it, as the peers' rows do.

use std::marker::PhantomData;

use shmpipe::{Builder, Consumer, Error, Pair, Producer, Variant, WaitStrategy};

use super::harness::{spin_step, spin_until, Endpoint, Mode, Transport};

/// A shmpipe ring of variant `V` with wait strategy `wait`.
pub struct Shm<V: Variant> {
    pub name: &'static str,
    pub wait: WaitStrategy,
    /// Busy-polling receives take batches with `drain` instead of one
    /// message per `try_recv_into`.
    pub drain: bool,
    /// Stream busy-polling (`try_send` / `try_recv_into` or `drain`)
    /// instead of through the blocking calls.
    pub poll: bool,
    pub _v: PhantomData<V>,
}

impl<V: Variant> Shm<V> {
    pub fn new(name: &'static str, wait: WaitStrategy) -> Self {
        Shm {
            name,
            wait,
            drain: false,
            poll: false,
            _v: PhantomData,
        }
    }

    /// Like [`Shm::new`], streaming by busy-polling, and receiving through
    /// `drain` if `drain`.
    pub fn polled(name: &'static str, wait: WaitStrategy, drain: bool) -> Self {
        Shm {
            drain,
            poll: true,
            ..Shm::new(name, wait)
        }
    }

    /// The library's default capacity, or more if a message needs it.
    pub(super) fn capacity(size: usize) -> u64 {
        let mut cap = shmpipe::DEFAULT_CAPACITY;
        while shmpipe::max_message_for(cap) < size && cap < shmpipe::MAX_CAPACITY {
            cap *= 2;
        }
        cap
    }
}

pub struct ShmEnd<V: Variant> {
    tx: Producer<V>,
    rx: Consumer<V>,
    spin: bool,
    /// Where `try_recv_into` / `recv_into` copy a message.
    buf: Vec<u8>,
    /// `Some` when receiving through `drain`: the messages of the last batch.
    batch: Option<Batch>,
}

/// The copies of the messages one `drain` call handed over, taken one by one.
struct Batch {
    bytes: Vec<u8>,
    /// Messages per `drain` call.
    max: usize,
    /// Byte offset of the next message to hand out.
    next: usize,
}

fn wrong_len(n: usize, len: usize) -> String {
    format!("received a {n}-byte message, expected {len}")
}

/// One busy-polled `drain` of up to `max` messages, each of which must be
/// `len` bytes long, handed to `f` in order: polls until at least one
/// arrives and returns how many.
fn drain_some<V: Variant>(
    rx: &mut Consumer<V>,
    max: usize,
    len: usize,
    mut f: impl FnMut(&[u8]),
) -> Result<usize, String> {
    let mut rounds = 0;
    loop {
        let mut bad_len = None;
        let got = rx.drain(max, |m| {
            if m.len() == len {
                f(m);
            } else {
                bad_len.get_or_insert(m.len());
            }
        });
        let n = got.map_err(|e| format!("drain: {e}"))?;
        if let Some(n) = bad_len {
            return Err(wrong_len(n, len));
        }
        if n > 0 {
            return Ok(n);
        }
        spin_step(&mut rounds)?;
    }
}

impl Batch {
    fn new(size: usize) -> Batch {
        let max = ((256 << 10) / size.max(1)).clamp(1, 4096);
        Batch {
            bytes: Vec::with_capacity(max * size),
            max,
            next: 0,
        }
    }
}

impl<V: Variant> ShmEnd<V> {
    fn new(tx: Producer<V>, rx: Consumer<V>, size: usize, drain: bool) -> Self {
        ShmEnd {
            tx,
            rx,
            spin: false,
            buf: vec![0; size],
            batch: drain.then(|| Batch::new(size)),
        }
    }
}

impl<V: Variant> Transport for Shm<V> {
    type Setup = (Pair<V>, Pair<V>);
    type End = ShmEnd<V>;
    fn name(&self) -> &'static str {
        self.name
    }
    fn stream_mode(&self) -> Mode {
        if self.poll {
            Mode::Spin
        } else {
            Mode::Block
        }
    }
    fn supports(&self, size: usize) -> Result<(), String> {
        let max = shmpipe::max_message_for(Self::capacity(size));
        if size > max {
            return Err(format!(
                "message larger than the largest ring allows ({max} bytes)"
            ));
        }
        Ok(())
    }
    fn setup(&self, size: usize) -> Result<Self::Setup, String> {
        let b = Builder::<V>::default()
            .capacity(Self::capacity(size))
            .wait(self.wait);
        let down = b.anonymous().map_err(|e| e.to_string())?;
        let up = b.anonymous().map_err(|e| e.to_string())?;
        Ok((down, up))
    }
    fn parent(&self, (down, up): Self::Setup, size: usize) -> Result<ShmEnd<V>, String> {
        self.end(down, up, size)
    }
    fn child(&self, (down, up): Self::Setup, size: usize) -> Result<ShmEnd<V>, String> {
        self.end(up, down, size)
    }
}

impl<V: Variant> Shm<V> {
    /// The end that sends through `tx` and receives through `rx`.
    fn end(&self, tx: Pair<V>, rx: Pair<V>, size: usize) -> Result<ShmEnd<V>, String> {
        Ok(ShmEnd::new(
            tx.into_producer().map_err(|e| e.to_string())?,
            rx.into_consumer().map_err(|e| e.to_string())?,
            size,
            self.drain,
        ))
    }
}

impl<V: Variant> Endpoint for ShmEnd<V> {
    fn set_mode(&mut self, mode: Mode) -> Result<(), String> {
        self.spin = mode == Mode::Spin;
        Ok(())
    }

    #[inline]
    fn send(&mut self, msg: &[u8]) -> Result<(), String> {
        if !self.spin {
            return self.tx.send(msg).map_err(|e| format!("send: {e}"));
        }
        spin_until(
            "try_send",
            |e| matches!(e, Error::Full),
            || self.tx.try_send(msg),
        )
    }

    /// Busy-polling through `drain`: each message of a batch is copied into
    /// `buf` (as `try_recv_into` copies it) and handed to `f` inside the
    /// batch. Otherwise (and for what `recv` buffered): one message.
    #[inline]
    fn recv_each(&mut self, len: usize, mut f: impl FnMut(&[u8])) -> Result<usize, String> {
        let Some(b) = self
            .batch
            .as_mut()
            .filter(|b| self.spin && b.next >= b.bytes.len() && self.buf.len() == len)
        else {
            return self.recv(len, |m| f(m)).map(|()| 1);
        };
        let buf = &mut self.buf;
        drain_some(&mut self.rx, b.max, len, |m| {
            buf.copy_from_slice(m);
            f(buf);
        })
    }

    #[inline]
    fn recv<R>(&mut self, len: usize, f: impl FnOnce(&[u8]) -> R) -> Result<R, String> {
        if self.buf.len() != len {
            return Err(format!(
                "asked for {len} bytes from a {}-byte session",
                self.buf.len()
            ));
        }
        if let Some(b) = self.batch.as_mut().filter(|_| self.spin) {
            if b.next >= b.bytes.len() {
                b.bytes.clear();
                b.next = 0;
                let bytes = &mut b.bytes;
                drain_some(&mut self.rx, b.max, len, |m| bytes.extend_from_slice(m))?;
            }
            let m = &b.bytes[b.next..b.next + len];
            b.next += len;
            return Ok(f(m));
        }
        let n = if self.spin {
            spin_until(
                "try_recv_into",
                |e| matches!(e, Error::Empty),
                || self.rx.try_recv_into(&mut self.buf),
            )?
        } else {
            self.rx
                .recv_into(&mut self.buf)
                .map_err(|e| format!("recv: {e}"))?
        };
        if n == len {
            Ok(f(&self.buf))
        } else {
            Err(wrong_len(n, len))
        }
    }
}
