//! ringfire 0.5.2 (default features off) as a transport: one single-producer
//! ring per direction, `FlowControl::LosslessBackpressure` (the producer
//! never overwrites a registered reader, so no message is lost), fixed
//! `[u8; N]` slots of 8 + N bytes (the slot's sequence word, then the
//! payload). Messages go through `try_push` / `try_recv` when busy-polling
//! and `push` / `recv_blocking` with ringfire's `FutexWait` when blocking;
//! `try_recv` returns the payload by value, so every message is copied out
//! before the harness checks it, as with the other rows.
//!
//! A ring's element type is fixed at compile time: this bench builds one
//! per power of two from 8 B to 64 KiB ([`SIZES`]); other sizes read
//! "unavailable" with the reason.
//!
//! Both rings are created before `fork()` (a ring is made by its producer,
//! and its reader must be registered before the first push, or lossless
//! flow control has nobody to protect). Each process then attaches the
//! reader of the ring it receives on, and drops its inherited copy of the
//! other side's producer (which only unlinks the file: the mappings stay).

use std::path::{Path, PathBuf};

use ringfire::{
    FlowControl, FutexWait, RingConsumer, RingProducer, RingProducerBuilder, RingfireError,
    WaitStrategy,
};

use super::harness::{
    aborted, session, spin_step, spin_until, unique_name, Cpus, Endpoint, Mode, Plan, SessionOut,
    Transport,
};

/// The message sizes this bench has a slot type for.
pub const SIZES: &str = "powers of two from 8 B to 64 KiB";

/// ringfire with `[u8; N]` slots.
pub struct Ringfire<const N: usize>;

/// Slots per ring: about 1 MiB of slots, like the other rings (a power of
/// two, as ringfire requires, and at least 16).
fn slots(slot_bytes: usize) -> u64 {
    ((1usize << 20) / slot_bytes).next_power_of_two().max(16) as u64
}

/// The two rings, made before the fork.
pub struct RfSetup<const N: usize> {
    down: RingProducer<[u8; N]>,
    up: RingProducer<[u8; N]>,
    down_path: PathBuf,
    up_path: PathBuf,
}

pub struct RfEnd<const N: usize> {
    tx: RingProducer<[u8; N]>,
    rx: RingConsumer<[u8; N]>,
    spin: bool,
    wait: AbortableFutex,
}

fn e(what: &str) -> impl FnOnce(RingfireError) -> String + '_ {
    move |err| format!("{what}: {err}")
}

fn attach<const N: usize>(path: &Path) -> Result<RingConsumer<[u8; N]>, String> {
    RingConsumer::builder()
        .start_from_oldest()
        .attach(path)
        .map_err(e("attach the reader"))
}

impl<const N: usize> Transport for Ringfire<N> {
    type Setup = RfSetup<N>;
    type End = RfEnd<N>;
    fn name(&self) -> &'static str {
        "ringfire"
    }
    fn stream_mode(&self) -> Mode {
        // try_push/try_recv, the busy-polling pair the comparison is about.
        Mode::Spin
    }
    fn setup(&self, size: usize) -> Result<RfSetup<N>, String> {
        if size != N {
            return Err(format!("ringfire slot of {N} bytes asked to carry {size}"));
        }
        let base = unique_name("/dev/shm/shmpipe-bench-ringfire");
        let (down_path, up_path) = (
            PathBuf::from(format!("{base}-down")),
            PathBuf::from(format!("{base}-up")),
        );
        let make = |path: &Path| {
            RingProducerBuilder::new(slots(8 + N))
                .flow_control(FlowControl::LosslessBackpressure)
                .build::<[u8; N], _>(path)
                .map_err(e("create the ring"))
        };
        Ok(RfSetup {
            down: make(&down_path)?,
            up: make(&up_path)?,
            down_path,
            up_path,
        })
    }
    fn parent(&self, s: RfSetup<N>, _size: usize) -> Result<RfEnd<N>, String> {
        // Registered on `up` before the parent starts the child, so before
        // the child's first push.
        let rx = attach(&s.up_path)?;
        drop(s.up);
        Ok(RfEnd::new(s.down, rx))
    }
    fn child(&self, s: RfSetup<N>, _size: usize) -> Result<RfEnd<N>, String> {
        // Registered on `down` before READY, so before the parent's first push.
        let rx = attach(&s.down_path)?;
        drop(s.down);
        Ok(RfEnd::new(s.up, rx))
    }
}

impl<const N: usize> RfEnd<N> {
    fn new(tx: RingProducer<[u8; N]>, rx: RingConsumer<[u8; N]>) -> Self {
        RfEnd {
            tx,
            rx,
            spin: true,
            wait: AbortableFutex(FutexWait::default()),
        }
    }
}

/// ringfire's `FutexWait`, which gives up (by unwinding out of
/// `recv_blocking`, caught in [`RfEnd::recv`]) once the watchdog fired:
/// `recv_blocking` itself waits for ever.
struct AbortableFutex(FutexWait);

/// The unwinding payload of [`AbortableFutex`].
struct Aborted;

impl WaitStrategy for AbortableFutex {
    fn wait(&mut self, header: &ringfire::RingHeader, cursor: u64) {
        if aborted() {
            // resume_unwind skips the panic hook: nothing is printed.
            std::panic::resume_unwind(Box::new(Aborted));
        }
        self.0.wait(header, cursor);
    }
    fn reset(&mut self) {
        self.0.reset();
    }
}

impl<const N: usize> Endpoint for RfEnd<N> {
    fn set_mode(&mut self, mode: Mode) -> Result<(), String> {
        self.spin = mode == Mode::Spin;
        Ok(())
    }

    #[inline]
    fn send(&mut self, msg: &[u8]) -> Result<(), String> {
        let item: &[u8; N] = msg
            .try_into()
            .map_err(|_| format!("a {}-byte message for {N}-byte slots", msg.len()))?;
        if !self.spin {
            // Waits for room with ringfire's own backoff (spin, yield, sleep);
            // a reader that died is pruned, so this cannot wait for ever.
            self.tx.push(item);
            return Ok(());
        }
        spin_until(
            "try_push",
            |e| matches!(e, RingfireError::BackpressureBufferFull),
            || self.tx.try_push(item),
        )
    }

    #[inline]
    fn recv<R>(&mut self, len: usize, f: impl FnOnce(&[u8]) -> R) -> Result<R, String> {
        if len != N {
            return Err(format!("asked for {len} bytes from {N}-byte slots"));
        }
        if !self.spin {
            let (rx, wait) = (&mut self.rx, &mut self.wait);
            let got =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| rx.recv_blocking(wait)));
            return match got {
                Ok(m) => Ok(f(&m)),
                Err(p) if p.is::<Aborted>() => Err("aborted by the watchdog".into()),
                Err(p) => std::panic::resume_unwind(p),
            };
        }
        let mut rounds = 0;
        loop {
            if let Some(m) = self.rx.try_recv() {
                return Ok(f(&m));
            }
            spin_step(&mut rounds)?;
        }
    }
}

/// One session of ringfire at `size`, or an "unavailable" row for a size
/// without a slot type.
pub fn measure(size: usize, plan: &Plan, cpus: Option<Cpus>, tick: impl FnMut()) -> SessionOut {
    macro_rules! sizes {
        ($($n:literal)*) => {
            match size {
                $($n => session(&Ringfire::<$n>, size, plan, cpus, tick),)*
                _ => SessionOut {
                    unavailable: Some(format!(
                        "ringfire carries fixed [u8; N] slots; this bench builds them for {SIZES} ({size} B is not one)"
                    )),
                    ..SessionOut::default()
                },
            }
        };
    }
    sizes!(8 16 32 64 128 256 512 1024 2048 4096 8192 16384 32768 65536)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rings_hold_about_a_mebibyte_of_slots() {
        assert_eq!(slots(16), 65536);
        assert_eq!(slots(72), 16384);
        assert_eq!(slots(8 + 65536), 16);
        assert!(slots(8 + 65536).is_power_of_two());
    }
}
