//! Instructions per message, for `valgrind --tool=callgrind` (which counts
//! instructions, not seconds, so the figure is repeatable on a loaded
//! machine). One thread sends BATCH messages of SIZE bytes, then receives
//! them, ROUNDS times; every message carries its sequence number, is
//! copied out and checked. The same shape for shmpipe and for ringfire
//! 0.5.2 (a dev-dependency), so their figures compare:
//!
//! - `try_recv_into` (shmpipe): `try_send`, then `try_recv_into` a buffer;
//! - `recv_with` (shmpipe): `try_send`, then `recv_with` reading in place;
//! - `drain` (shmpipe): `try_send`, then one `drain` copying each message out;
//! - `fixed` (shmpipe): as `try_recv_into`, with `[u8; SIZE]` buffers (the
//!   size known at compile time, as ringfire's slot type is); SIZE 8 or 64;
//! - `typed` (shmpipe): `typed::Sender<[u8; SIZE]>::try_send`, then
//!   `typed::Receiver<[u8; SIZE]>::try_recv` (which returns the copy, as
//!   ringfire's does); SIZE 8 or 64;
//! - `any` (shmpipe): `try_recv_into`'s loop through `AnyProducer` /
//!   `AnyConsumer` (the variant a run-time value the optimiser cannot see),
//!   to show what the per-call `match` on the variant costs;
//! - `ringfire`: a `[u8; SIZE]` ring with `FlowControl::LosslessBackpressure`,
//!   `try_push`, then `try_recv` (which returns the copy); SIZE 8, 16, 32,
//!   64, 128, 256, 512 or 1024.
//!
//! Failed polls (a busy side's cost while it waits) are counted by
//! `examples/instr_poll.rs`, a separate binary so that this loop compiles
//! as it does alone.
//!
//! ```text
//! bash examples/instr.sh          # all four figures: shmpipe and ringfire at 8 B and 64 B
//! cargo build --release --example instr_loop
//! valgrind --tool=callgrind --callgrind-out-file=/tmp/cg.out \
//!     target/release/examples/instr_loop 64 try_recv_into 100000
//! callgrind_annotate /tmp/cg.out | head -30
//! ```
//! The per-message figure is the difference of two runs with different
//! ROUNDS, divided by the difference in messages: set-up and tear-down
//! cancel out (what `examples/instr.sh` does).

use shmpipe::{AnyBuilder, Builder, Consumer, Error, VariantKind};

const BATCH: usize = 16;

/// Compare a received message's sequence number with the one expected.
#[inline(always)]
fn check(m: &[u8], expect: u64, bad: &mut u64) {
    let mut b = [0u8; 8];
    b.copy_from_slice(&m[..8]);
    *bad += u64::from(u64::from_le_bytes(b) != expect);
}

/// One method's loop: `try_send` a batch, then `receive` it (given the
/// consumer, the copy-out buffer, the batch's first sequence number and the
/// count of bad messages). Generic over `receive`, so each method compiles
/// to its own function and one method's code does not change another's
/// register allocation.
#[inline(never)]
fn run_with(
    size: usize,
    rounds: u64,
    mut receive: impl FnMut(&mut Consumer, &mut [u8], u64, &mut u64) -> Result<(), Error>,
) -> Result<u64, Error> {
    // A named ring, as two processes use it (role locks, liveness checks),
    // like ringfire's file below; the creator removes the name on drop.
    let name = format!("/shmpipe-instr-loop-{}", std::process::id());
    let mut tx = Builder::new().create_producer(&name)?;
    let mut rx = Builder::new().open_consumer(&name)?;
    let mut msg = vec![0u8; size];
    let mut buf = vec![0u8; size];
    let mut bad = 0u64;
    for r in 0..rounds {
        let first = r * BATCH as u64;
        for i in 0..BATCH as u64 {
            msg[..8].copy_from_slice(&(first + i).to_le_bytes());
            tx.try_send(&msg)?;
        }
        receive(&mut rx, &mut buf, first, &mut bad)?;
    }
    Ok(bad)
}

fn run(size: usize, method: &str, rounds: u64) -> Result<u64, Error> {
    match method {
        "try_recv_into" => run_with(size, rounds, |rx, buf, first, bad| {
            for i in 0..BATCH as u64 {
                let n = rx.try_recv_into(buf)?;
                check(&buf[..n], first + i, bad);
            }
            Ok(())
        }),
        "recv_with" => run_with(size, rounds, |rx, _, first, bad| {
            for i in 0..BATCH as u64 {
                rx.recv_with(|m| check(m, first + i, bad))?;
            }
            Ok(())
        }),
        "drain" => run_with(size, rounds, |rx, buf, first, bad| {
            let mut i = 0;
            let n = rx.drain(usize::MAX, |m| {
                buf[..m.len()].copy_from_slice(m);
                check(&buf[..m.len()], first + i, bad);
                i += 1;
            })?;
            assert_eq!(n, BATCH);
            Ok(())
        }),
        other => {
            panic!(
                "unknown method {other}: try_recv_into, recv_with, drain, fixed, typed, any or ringfire"
            )
        }
    }
}

/// `try_recv_into`'s loop through the run-time variant endpoints.
#[inline(never)]
fn run_any(size: usize, rounds: u64) -> Result<u64, Error> {
    // black_box: the variant is a run-time value, as for a front-end.
    let kind = std::hint::black_box(VariantKind::LockFree);
    let name = format!("/shmpipe-instr-loop-{}", std::process::id());
    let mut tx = AnyBuilder::new(kind).create_producer(&name)?;
    let mut rx = AnyBuilder::new(kind).open_consumer(&name)?;
    let mut msg = vec![0u8; size];
    let mut buf = vec![0u8; size];
    let mut bad = 0u64;
    for r in 0..rounds {
        let first = r * BATCH as u64;
        for i in 0..BATCH as u64 {
            msg[..8].copy_from_slice(&(first + i).to_le_bytes());
            tx.try_send(&msg)?;
        }
        for i in 0..BATCH as u64 {
            let n = rx.try_recv_into(&mut buf)?;
            check(&buf[..n], first + i, &mut bad);
        }
    }
    Ok(bad)
}

/// `try_send` + `try_recv_into` with `[u8; N]` buffers: the message size
/// known at compile time, as ringfire's slot type makes it below (the
/// received length still comes from the record header).
#[inline(never)]
fn run_fixed<const N: usize>(rounds: u64) -> Result<u64, Error> {
    let name = format!("/shmpipe-instr-loop-{}", std::process::id());
    let mut tx = Builder::new().create_producer(&name)?;
    let mut rx = Builder::new().open_consumer(&name)?;
    let mut msg = [0u8; N];
    let mut buf = [0u8; N];
    let mut bad = 0u64;
    for r in 0..rounds {
        let first = r * BATCH as u64;
        for i in 0..BATCH as u64 {
            msg[..8].copy_from_slice(&(first + i).to_le_bytes());
            tx.try_send(&msg)?;
        }
        for i in 0..BATCH as u64 {
            let n = rx.try_recv_into(&mut buf)?;
            check(&buf[..n], first + i, &mut bad);
        }
    }
    Ok(bad)
}

/// `typed::Sender<[u8; N]>` / `Receiver<[u8; N]>`: ringfire's shape (a
/// slot type, a value returned by copy) through shmpipe's typed API.
#[inline(never)]
fn run_typed<const N: usize>(rounds: u64) -> Result<u64, Error> {
    use shmpipe::typed::{Receiver, Sender};
    let name = format!("/shmpipe-instr-loop-{}", std::process::id());
    let mut tx = Sender::<[u8; N]>::new(Builder::new().create_producer(&name)?);
    let mut rx = Receiver::<[u8; N]>::new(Builder::new().open_consumer(&name)?);
    let mut msg = [0u8; N];
    let mut bad = 0u64;
    for r in 0..rounds {
        let first = r * BATCH as u64;
        for i in 0..BATCH as u64 {
            msg[..8].copy_from_slice(&(first + i).to_le_bytes());
            tx.try_send(&msg)?;
        }
        for i in 0..BATCH as u64 {
            // black_box: the whole copy is kept, as for ringfire below.
            let m = rx.try_recv()?;
            check(&std::hint::black_box(m), first + i, &mut bad);
        }
    }
    Ok(bad)
}

fn typed_at(size: usize, rounds: u64) -> Result<u64, Error> {
    match size {
        8 => run_typed::<8>(rounds),
        64 => run_typed::<64>(rounds),
        other => panic!("typed mode: SIZE {other} is not 8 or 64"),
    }
}

fn fixed_at(size: usize, rounds: u64) -> Result<u64, Error> {
    match size {
        8 => run_fixed::<8>(rounds),
        64 => run_fixed::<64>(rounds),
        other => panic!("fixed mode: SIZE {other} is not 8 or 64"),
    }
}

/// The same loop through ringfire, with `[u8; N]` slots.
#[inline(never)]
fn run_ringfire<const N: usize>(rounds: u64) -> Result<u64, ringfire::RingfireError> {
    use ringfire::{FlowControl, RingConsumer, RingProducerBuilder};
    let path = format!("/dev/shm/shmpipe-instr-loop-{}", std::process::id());
    // About 1 MiB of slots, like shmpipe's default ring.
    let slots = ((1usize << 20) / (8 + N)).next_power_of_two() as u64;
    let mut tx = RingProducerBuilder::new(slots)
        .flow_control(FlowControl::LosslessBackpressure)
        .build::<[u8; N], _>(&path)?;
    let mut rx = RingConsumer::<[u8; N]>::attach(&path)?;
    let mut msg = [0u8; N];
    let mut bad = 0u64;
    for r in 0..rounds {
        let first = r * BATCH as u64;
        for i in 0..BATCH as u64 {
            msg[..8].copy_from_slice(&(first + i).to_le_bytes());
            tx.try_push(&msg)?;
        }
        for i in 0..BATCH as u64 {
            match rx.try_recv() {
                // black_box: the whole copy is kept, as a caller using
                // every byte would need it (shmpipe's copy is a memcpy
                // into `buf`, which the optimiser cannot trim either).
                Some(m) => check(&std::hint::black_box(m), first + i, &mut bad),
                None => bad += 1,
            }
        }
    }
    Ok(bad)
}

fn ringfire_at(size: usize, rounds: u64) -> Result<u64, ringfire::RingfireError> {
    match size {
        8 => run_ringfire::<8>(rounds),
        16 => run_ringfire::<16>(rounds),
        32 => run_ringfire::<32>(rounds),
        64 => run_ringfire::<64>(rounds),
        128 => run_ringfire::<128>(rounds),
        256 => run_ringfire::<256>(rounds),
        512 => run_ringfire::<512>(rounds),
        1024 => run_ringfire::<1024>(rounds),
        other => panic!("ringfire mode: SIZE {other} has no slot type here (8, 16, ..., 1024)"),
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut a = std::env::args().skip(1);
    let size: usize = a.next().map_or(64, |s| s.parse().expect("SIZE"));
    let method = a.next().unwrap_or_else(|| "try_recv_into".into());
    let rounds: u64 = a.next().map_or(100_000, |s| s.parse().expect("ROUNDS"));
    let size = size.max(8);
    let bad = match method.as_str() {
        "ringfire" => ringfire_at(size, rounds)?,
        "fixed" => fixed_at(size, rounds)?,
        "typed" => typed_at(size, rounds)?,
        "any" => run_any(size, rounds)?,
        _ => run(size, &method, rounds)?,
    };
    println!("{size} B {method}: {rounds} rounds of {BATCH}, {bad} bad");
    if bad != 0 {
        return Err(format!("{bad} messages arrived out of order or damaged").into());
    }
    Ok(())
}
