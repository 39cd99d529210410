//! Streaming small messages with nothing around the libraries: one thread
//! pinned to CPU 1 sends N messages with `try_send` (ringfire: `try_push`)
//! from a `[u8; SIZE]`, the main thread pinned to CPU 0 receives them with
//! `try_recv_into` into a `[u8; SIZE]` (ringfire: `try_recv`, which returns
//! the copy) and checks each sequence number; each side counts its failed
//! polls. Trials alternate shmpipe and ringfire so both see the same
//! minutes of the machine. `shmpipe bench` checks every byte of every
//! message through a harness that costs more per message than either
//! library at 8 B; this loop shows what the libraries themselves cost.
//! A second shmpipe row goes through `typed::Sender<[u8; SIZE]>` /
//! `Receiver<[u8; SIZE]>` (`try_recv` returns the copy, as ringfire's
//! does). At 8 B a further row runs shmpipe's record protocol alone (`bare`:
//! `examples/common/bare.rs`) in the same trial.
//!
//! ```text
//! cargo run --release --example stream_probe -- 8 10   # SIZE (8 or 64), TRIALS
//! ```
//! See DESIGN.md §2 for what it showed.

use shmpipe::{Builder, Error};
use std::time::Instant;

#[path = "common/bare.rs"]
mod bare;
#[path = "common/mod.rs"]
mod common;
use common::{pin, ready, seq_of};

/// Messages per trial.
const N: u64 = 10_000_000;

/// Poll `f` until it yields, with a spin hint after each failed poll,
/// counted in `fails`. Inlined into each loop: a call per message (which
/// the compiler chose for some closures) would cost more than the
/// libraries' own work at 8 B.
#[inline(always)]
fn spin_counting<T>(fails: &mut u64, mut f: impl FnMut() -> Option<T>) -> T {
    loop {
        if let Some(v) = f() {
            return v;
        }
        *fails += 1;
        std::hint::spin_loop();
    }
}

/// Receive `N` messages with `recv` (a message's sequence number, if one
/// was there), checking each: seconds taken and failed polls.
#[inline(always)]
fn receive_all(mut recv: impl FnMut() -> Option<u64>) -> (f64, u64) {
    let mut empty = 0u64;
    let t0 = Instant::now();
    for i in 0..N {
        assert_eq!(spin_counting(&mut empty, &mut recv), i);
    }
    (t0.elapsed().as_secs_f64(), empty)
}

/// M msgs/s, failed sends and failed receives per message.
fn rates(secs: f64, full: u64, empty: u64) -> (f64, f64, f64) {
    (
        N as f64 / secs / 1e6,
        full as f64 / N as f64,
        empty as f64 / N as f64,
    )
}

/// Rate in M msgs/s, failed sends and failed receives per message.
fn shmpipe_trial<const S: usize>() -> (f64, f64, f64) {
    let name = format!("/shmpipe-probe-{}", std::process::id());
    let mut tx = Builder::new().create_producer(&name).expect("producer");
    let mut rx = Builder::new().open_consumer(&name).expect("consumer");
    let t = std::thread::spawn(move || {
        pin(1);
        let mut msg = [0u8; S];
        let mut full = 0u64;
        for i in 0..N {
            msg[..8].copy_from_slice(&i.to_le_bytes());
            while let Err(e) = tx.try_send(&msg) {
                assert!(matches!(e, Error::Full), "{e}");
                full += 1;
                std::hint::spin_loop();
            }
        }
        full
    });
    pin(0);
    let mut buf = [0u8; S];
    let mut empty = 0u64;
    let t0 = Instant::now();
    for i in 0..N {
        loop {
            match rx.try_recv_into(&mut buf) {
                Ok(_) => break,
                Err(Error::Empty) => {
                    empty += 1;
                    std::hint::spin_loop();
                }
                Err(e) => panic!("{e}"),
            }
        }
        assert_eq!(seq_of(&buf), i);
    }
    let dt = t0.elapsed().as_secs_f64();
    let full = t.join().expect("producer thread");
    rates(dt, full, empty)
}

/// `shmpipe_trial` through `typed::Sender<[u8; S]>` / `Receiver<[u8; S]>`
/// (`try_send`, then `try_recv`, which returns the copy): ringfire's shape.
fn typed_trial<const S: usize>() -> (f64, f64, f64) {
    use shmpipe::typed::{Receiver, Sender};
    let name = format!("/shmpipe-probe-typed-{}", std::process::id());
    let mut tx = Sender::<[u8; S]>::new(Builder::new().create_producer(&name).expect("producer"));
    let mut rx = Receiver::<[u8; S]>::new(Builder::new().open_consumer(&name).expect("consumer"));
    let t = std::thread::spawn(move || {
        pin(1);
        let mut msg = [0u8; S];
        let mut full = 0u64;
        for i in 0..N {
            msg[..8].copy_from_slice(&i.to_le_bytes());
            spin_counting(&mut full, || ready(tx.try_send(&msg)));
        }
        full
    });
    pin(0);
    let (secs, empty) = receive_all(|| ready(rx.try_recv()).map(|m| seq_of(&m)));
    let full = t.join().expect("producer thread");
    rates(secs, full, empty)
}

fn ringfire_trial<const S: usize>() -> (f64, f64, f64) {
    use ringfire::{FlowControl, RingConsumer, RingProducerBuilder};
    let path = format!("/dev/shm/shmpipe-probe-rf-{}", std::process::id());
    let slots = ((1usize << 20) / (8 + S)).next_power_of_two() as u64;
    let mut tx = RingProducerBuilder::new(slots)
        .flow_control(FlowControl::LosslessBackpressure)
        .build::<[u8; S], _>(&path)
        .expect("ringfire producer");
    let mut rx = RingConsumer::<[u8; S]>::attach(&path).expect("ringfire consumer");
    let t = std::thread::spawn(move || {
        pin(1);
        let mut msg = [0u8; S];
        let mut full = 0u64;
        for i in 0..N {
            msg[..8].copy_from_slice(&i.to_le_bytes());
            spin_counting(&mut full, || tx.try_push(&msg).ok());
        }
        full
    });
    pin(0);
    let (secs, empty) = receive_all(|| rx.try_recv().map(|m| seq_of(&m)));
    let full = t.join().expect("producer thread");
    let _ = std::fs::remove_file(&path);
    rates(secs, full, empty)
}

/// shmpipe's record protocol alone at 8 B (`common/bare.rs`), in a
/// 1 MiB ring, as `shmpipe_trial`.
fn bare_trial() -> (f64, f64, f64) {
    let (mut tx, mut rx) = bare::bare_pair(1 << 20, false);
    let t = std::thread::spawn(move || {
        pin(1);
        let mut full = 0u64;
        for i in 0..N {
            spin_counting(&mut full, || tx.try_send(&i.to_le_bytes()).then_some(()));
        }
        full
    });
    pin(0);
    let (secs, empty) = receive_all(|| rx.try_recv().map(u64::from_le_bytes));
    let full = t.join().expect("producer thread");
    rates(secs, full, empty)
}

fn main() {
    let mut a = std::env::args().skip(1);
    let size: usize = a.next().map_or(8, |s| s.parse().expect("SIZE"));
    assert!(matches!(size, 8 | 64), "SIZE {size}: 8 or 64");
    let trials: u32 = a.next().map_or(10, |s| s.parse().expect("TRIALS"));
    println!(
        "{size} B, {N} messages per trial: M msgs/s (failed sends, failed receives per message)"
    );
    for t in 0..trials {
        let (s, ty, r) = match size {
            8 => (
                shmpipe_trial::<8>(),
                typed_trial::<8>(),
                ringfire_trial::<8>(),
            ),
            64 => (
                shmpipe_trial::<64>(),
                typed_trial::<64>(),
                ringfire_trial::<64>(),
            ),
            other => panic!("SIZE {other}: 8 or 64"),
        };
        let bare = if size == 8 {
            let b = bare_trial();
            format!("   bare {:6.1} ({:.3}, {:.3})", b.0, b.1, b.2)
        } else {
            String::new()
        };
        println!(
            "trial {t:2}: shmpipe {:6.1} ({:.3}, {:.3})   typed {:6.1} ({:.3}, {:.3})   ringfire {:6.1} ({:.3}, {:.3}){bare}",
            s.0, s.1, s.2, ty.0, ty.1, ty.2, r.0, r.1, r.2
        );
    }
}
