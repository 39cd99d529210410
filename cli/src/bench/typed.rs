//! shmpipe through its typed API: `typed::Sender<[u8; N]>` /
//! `typed::Receiver<[u8; N]>` on the same anonymous ring pair as the
//! `shmpipe-*` rows (futex wake-ups when blocking). `try_recv` returns the
//! value by copy, as ringfire's `try_recv` does, and a record of exactly
//! `N` bytes is found with one comparison of its header against a
//! constant: the like-for-like row against ringfire's `[u8; N]` slots.
//!
//! The element type is fixed at compile time: this bench builds one per
//! power of two from 8 B to 64 KiB ([`SIZES`]), as for ringfire; other
//! sizes read "unavailable" with the reason.

use shmpipe::typed::{Receiver, Sender};
use shmpipe::{Builder, Error, LockFree, Pair, WaitStrategy};

use super::harness::{session, spin_until, Cpus, Endpoint, Mode, Plan, SessionOut, Transport};
use super::shm::Shm;

/// The message sizes this bench has an element type for.
pub const SIZES: &str = "powers of two from 8 B to 64 KiB";

/// shmpipe with `[u8; N]` values.
pub struct Typed<const N: usize>;

pub struct TypedEnd<const N: usize> {
    tx: Sender<[u8; N]>,
    rx: Receiver<[u8; N]>,
    spin: bool,
}

fn e(what: &str) -> impl FnOnce(Error) -> String + '_ {
    move |err| format!("{what}: {err}")
}

impl<const N: usize> Typed<N> {
    /// The end that sends through `tx` and receives through `rx`.
    fn end(tx: Pair<LockFree>, rx: Pair<LockFree>) -> Result<TypedEnd<N>, String> {
        Ok(TypedEnd {
            tx: Sender::new(tx.into_producer().map_err(e("producer"))?),
            rx: Receiver::new(rx.into_consumer().map_err(e("consumer"))?),
            spin: false,
        })
    }
}

impl<const N: usize> Transport for Typed<N> {
    type Setup = (Pair<LockFree>, Pair<LockFree>);
    type End = TypedEnd<N>;
    fn name(&self) -> &'static str {
        "shmpipe-typed"
    }
    fn stream_mode(&self) -> Mode {
        // try_send/try_recv, the busy-polling pair ringfire's row uses.
        Mode::Spin
    }
    fn setup(&self, size: usize) -> Result<Self::Setup, String> {
        if size != N {
            return Err(format!("[u8; {N}] values asked to carry {size} bytes"));
        }
        let b = Builder::<LockFree>::default()
            .capacity(Shm::<LockFree>::capacity(size))
            .wait(WaitStrategy::Futex);
        let down = b.anonymous().map_err(e("ring"))?;
        let up = b.anonymous().map_err(e("ring"))?;
        Ok((down, up))
    }
    fn parent(&self, (down, up): Self::Setup, _size: usize) -> Result<TypedEnd<N>, String> {
        Self::end(down, up)
    }
    fn child(&self, (down, up): Self::Setup, _size: usize) -> Result<TypedEnd<N>, String> {
        Self::end(up, down)
    }
}

impl<const N: usize> Endpoint for TypedEnd<N> {
    fn set_mode(&mut self, mode: Mode) -> Result<(), String> {
        self.spin = mode == Mode::Spin;
        Ok(())
    }

    #[inline]
    fn send(&mut self, msg: &[u8]) -> Result<(), String> {
        let value: &[u8; N] = msg
            .try_into()
            .map_err(|_| format!("a {}-byte message for [u8; {N}] values", msg.len()))?;
        if !self.spin {
            return self.tx.send(value).map_err(e("send"));
        }
        spin_until(
            "try_send",
            |e| matches!(e, Error::Full),
            || self.tx.try_send(value),
        )
    }

    #[inline]
    fn recv<R>(&mut self, len: usize, f: impl FnOnce(&[u8]) -> R) -> Result<R, String> {
        if len != N {
            return Err(format!("asked for {len} bytes from [u8; {N}] values"));
        }
        let m = if self.spin {
            spin_until(
                "try_recv",
                |e| matches!(e, Error::Empty),
                || self.rx.try_recv(),
            )?
        } else {
            self.rx.recv().map_err(e("recv"))?
        };
        Ok(f(&m))
    }
}

/// One session of the typed row at `size`, or an "unavailable" row for a
/// size without an element type.
pub fn measure(size: usize, plan: &Plan, cpus: Option<Cpus>, tick: impl FnMut()) -> SessionOut {
    macro_rules! sizes {
        ($($n:literal)*) => {
            match size {
                $($n => session(&Typed::<$n>, size, plan, cpus, tick),)*
                _ => SessionOut {
                    unavailable: Some(format!(
                        "typed::Sender<[u8; N]> has a fixed size; this bench builds it for {SIZES} ({size} B is not one)"
                    )),
                    ..SessionOut::default()
                },
            }
        };
    }
    sizes!(8 16 32 64 128 256 512 1024 2048 4096 8192 16384 32768 65536)
}
