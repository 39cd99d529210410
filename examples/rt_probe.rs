//! Round trips with nothing around the libraries: the main thread, pinned
//! to CPU 0, sends a `[u8; SIZE]` message carrying a sequence number on one
//! ring and busy-polls a second ring for the echo; a thread pinned to CPU 1
//! busy-polls the first ring and sends each message back. Both sides use
//! `try_send` / `try_recv_into` (ringfire: `try_push` / `try_recv`) with a
//! spin-loop hint after a failed poll, as `shmpipe bench`'s spin rows do.
//! Each trial reports the mean and the median of the round trips, timed
//! per batch of 64; trials alternate shmpipe and ringfire so both see the
//! same minutes of the machine (whose cross-core cost moves, DESIGN.md §2).
//! A second shmpipe row goes through `typed::Sender<[u8; SIZE]>` /
//! `Receiver<[u8; SIZE]>` (`try_recv` returns the copy, as ringfire's
//! does). A third (`recv`) lets the library wait: `WaitStrategy::Spin`
//! handles, `send` / `recv_into`, whose polling loop is the library's own.
//! At 8 B two more rows follow in the same trial: shmpipe's record protocol
//! alone (`bare`: header as the signal, the zero store ahead, `head` per
//! message, no validation, liveness, `tail` or wake-up), and the same with
//! the ring zeroed 4 KiB ahead instead of a store after each record.
//!
//! ```text
//! cargo run --release --example rt_probe -- 8 10   # SIZE (8 or 64), TRIALS
//! cargo run --release --example rt_probe -- 8 10 4096   # and ring bytes (default 1 MiB)
//! ```

use shmpipe::{Builder, Consumer, Error, Producer, WaitStrategy};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

#[path = "common/bare.rs"]
mod bare;
#[path = "common/mod.rs"]
mod common;
use bare::bare_pair;
use common::{pin, ready, seq_of};

/// Bytes of each ring (ringfire: its slots, rounded up to a power of two).
static CAP: AtomicU64 = AtomicU64::new(1 << 20);

/// Round trips per trial, timed in batches of `BATCH`.
const N: u64 = 200_000;
const BATCH: u64 = 64;

/// Mean and median round trip in ns, from per-batch times.
fn summarize(mut batches: Vec<f64>) -> (f64, f64) {
    let mean = batches.iter().sum::<f64>() / batches.len() as f64;
    batches.sort_by(f64::total_cmp);
    (mean, batches[batches.len() / 2])
}

/// Time `N` round trips of `rt(i)` in batches; each returns the echo's
/// sequence number.
#[inline(always)]
fn time_trips(mut rt: impl FnMut(u64) -> u64) -> (f64, f64) {
    let mut batches = Vec::with_capacity((N / BATCH) as usize);
    let mut i = 0;
    while i < N {
        let t0 = Instant::now();
        for _ in 0..BATCH {
            assert_eq!(rt(i), i, "echo out of order");
            i += 1;
        }
        batches.push(t0.elapsed().as_nanos() as f64 / BATCH as f64);
    }
    summarize(batches)
}

/// Poll `f` until it yields, with a spin hint after each failed poll.
/// Inlined into each loop: a call per poll (which the compiler chose for
/// some closures) would cost more than a library's own work at 8 B.
#[inline(always)]
fn spin<T>(mut f: impl FnMut() -> Option<T>) -> T {
    loop {
        if let Some(v) = f() {
            return v;
        }
        std::hint::spin_loop();
    }
}

/// Receive into `buf`: with `BLOCKING`, `recv_into` (the library waits);
/// else a busy loop of `try_recv_into` with a spin hint after each miss.
#[inline(always)]
fn take<const BLOCKING: bool>(rx: &mut Consumer, buf: &mut [u8]) -> usize {
    if BLOCKING {
        return rx.recv_into(buf).expect("recv_into");
    }
    loop {
        match rx.try_recv_into(buf) {
            Ok(n) => break n,
            Err(Error::Empty) => std::hint::spin_loop(),
            Err(e) => panic!("{e}"),
        }
    }
}

/// Send `msg`: with `BLOCKING`, `send`; else a busy loop of `try_send`.
#[inline(always)]
fn give<const BLOCKING: bool>(tx: &mut Producer, msg: &[u8]) {
    if BLOCKING {
        return tx.send(msg).expect("send");
    }
    loop {
        match tx.try_send(msg) {
            Ok(()) => break,
            Err(Error::Full) => std::hint::spin_loop(),
            Err(e) => panic!("{e}"),
        }
    }
}

/// The byte API's round trips: busy polls of `try_send` / `try_recv_into`,
/// or (`BLOCKING`, the `recv` row) `WaitStrategy::Spin` handles with `send`
/// / `recv_into`, whose polling loop is the library's own.
fn shmpipe_trial<const S: usize, const BLOCKING: bool>() -> (f64, f64) {
    let pid = std::process::id();
    let tag = if BLOCKING { "b" } else { "" };
    let (ping, pong) = (
        format!("/shmpipe-rt-{tag}a-{pid}"),
        format!("/shmpipe-rt-{tag}b-{pid}"),
    );
    let mut b = Builder::new().capacity(CAP.load(Ordering::Relaxed));
    if BLOCKING {
        b = b.wait(WaitStrategy::Spin);
    }
    let mut tx = b.create_producer(&ping).expect("ping producer");
    let mut rx_echo = b.create_consumer(&pong).expect("pong consumer");
    let mut rx = b.open_consumer(&ping).expect("ping consumer");
    let mut tx_echo = b.open_producer(&pong).expect("pong producer");
    let t = std::thread::spawn(move || {
        pin(1);
        let mut buf = [0u8; S];
        for _ in 0..N {
            let n = take::<BLOCKING>(&mut rx, &mut buf);
            give::<BLOCKING>(&mut tx_echo, &buf[..n]);
        }
    });
    pin(0);
    let mut msg = [0u8; S];
    let mut buf = [0u8; S];
    let r = time_trips(|i| {
        msg[..8].copy_from_slice(&i.to_le_bytes());
        give::<BLOCKING>(&mut tx, &msg);
        take::<BLOCKING>(&mut rx_echo, &mut buf);
        seq_of(&buf)
    });
    t.join().expect("echo thread");
    r
}

/// `shmpipe_trial` through `typed::Sender<[u8; S]>` / `Receiver<[u8; S]>`
/// (`try_send`, `try_recv` returning the copy): ringfire's shape.
fn typed_trial<const S: usize>() -> (f64, f64) {
    use shmpipe::typed::{Receiver, Sender};
    let pid = std::process::id();
    let (ping, pong) = (
        format!("/shmpipe-rt-ta-{pid}"),
        format!("/shmpipe-rt-tb-{pid}"),
    );
    let b = Builder::new().capacity(CAP.load(Ordering::Relaxed));
    let mut tx = Sender::<[u8; S]>::new(b.create_producer(&ping).expect("ping producer"));
    let mut rx_echo = Receiver::<[u8; S]>::new(b.create_consumer(&pong).expect("pong consumer"));
    let mut rx =
        Receiver::<[u8; S]>::new(Builder::new().open_consumer(&ping).expect("ping consumer"));
    let mut tx_echo =
        Sender::<[u8; S]>::new(Builder::new().open_producer(&pong).expect("pong producer"));
    let t = std::thread::spawn(move || {
        pin(1);
        for _ in 0..N {
            let m = spin(|| ready(rx.try_recv()));
            spin(|| ready(tx_echo.try_send(&m)));
        }
    });
    pin(0);
    let mut msg = [0u8; S];
    let r = time_trips(|i| {
        msg[..8].copy_from_slice(&i.to_le_bytes());
        spin(|| ready(tx.try_send(&msg)));
        let m = spin(|| ready(rx_echo.try_recv()));
        seq_of(&m)
    });
    t.join().expect("echo thread");
    r
}

fn ringfire_trial<const S: usize>() -> (f64, f64) {
    use ringfire::{FlowControl, RingConsumer, RingProducerBuilder};
    let pid = std::process::id();
    let (ping, pong) = (
        format!("/dev/shm/shmpipe-rt-rf-a-{pid}"),
        format!("/dev/shm/shmpipe-rt-rf-b-{pid}"),
    );
    let slots = (CAP.load(Ordering::Relaxed) as usize / (8 + S)).next_power_of_two() as u64;
    let ring = |path: &str| {
        RingProducerBuilder::new(slots)
            .flow_control(FlowControl::LosslessBackpressure)
            .build::<[u8; S], _>(path)
            .expect("ringfire producer")
    };
    let mut tx = ring(&ping);
    let mut tx_echo = ring(&pong);
    let mut rx = RingConsumer::<[u8; S]>::attach(&ping).expect("ringfire consumer");
    let mut rx_echo = RingConsumer::<[u8; S]>::attach(&pong).expect("ringfire consumer");
    let t = std::thread::spawn(move || {
        pin(1);
        for _ in 0..N {
            let m = spin(|| rx.try_recv());
            spin(|| tx_echo.try_push(&m).ok());
        }
    });
    pin(0);
    let mut msg = [0u8; S];
    let r = time_trips(|i| {
        msg[..8].copy_from_slice(&i.to_le_bytes());
        spin(|| tx.try_push(&msg).ok());
        let m = spin(|| rx_echo.try_recv());
        seq_of(&m)
    });
    t.join().expect("echo thread");
    let _ = std::fs::remove_file(&ping);
    let _ = std::fs::remove_file(&pong);
    r
}

/// The bare record protocol (8-byte header as the signal, zero ahead, the
/// consumer's `head` stored per message, the producer's room by a cached
/// `head`), nothing else: what the protocol itself costs a round trip.
fn bare_trial(zero_far: bool) -> (f64, f64) {
    let (mut tx, mut rx) = bare_pair(CAP.load(Ordering::Relaxed), zero_far);
    let (mut tx_echo, mut rx_echo) = bare_pair(CAP.load(Ordering::Relaxed), zero_far);
    let t = std::thread::spawn(move || {
        pin(1);
        for _ in 0..N {
            let m = spin(|| rx.try_recv());
            spin(|| tx_echo.try_send(&m).then_some(()));
        }
    });
    pin(0);
    let r = time_trips(|i| {
        spin(|| tx.try_send(&i.to_le_bytes()).then_some(()));
        u64::from_le_bytes(spin(|| rx_echo.try_recv()))
    });
    t.join().expect("echo thread");
    r
}

fn main() {
    let mut a = std::env::args().skip(1);
    let size: usize = a.next().map_or(8, |s| s.parse().expect("SIZE"));
    let trials: u32 = a.next().map_or(10, |s| s.parse().expect("TRIALS"));
    if let Some(cap) = a.next() {
        CAP.store(cap.parse().expect("ring bytes"), Ordering::Relaxed);
    }
    println!(
        "{size} B, {N} round trips per trial, rings of {} bytes: ns per round trip, mean / median of batches{}",
        CAP.load(Ordering::Relaxed),
        if size == 8 {
            "; bare: the record protocol alone, with the store ahead / zeroing 4 KiB ahead (medians)"
        } else {
            ""
        }
    );
    let (mut ratios, mut typed_ratios, mut blocking_ratios) = (Vec::new(), Vec::new(), Vec::new());
    for t in 0..trials {
        let (s, ty, r, bl) = match size {
            8 => (
                shmpipe_trial::<8, false>(),
                typed_trial::<8>(),
                ringfire_trial::<8>(),
                shmpipe_trial::<8, true>(),
            ),
            64 => (
                shmpipe_trial::<64, false>(),
                typed_trial::<64>(),
                ringfire_trial::<64>(),
                shmpipe_trial::<64, true>(),
            ),
            other => panic!("SIZE {other}: 8 or 64"),
        };
        let bare = if size == 8 {
            let (ahead, far) = (bare_trial(false), bare_trial(true));
            format!("   bare {:6.1} / {:6.1}", ahead.1, far.1)
        } else {
            String::new()
        };
        ratios.push(s.1 / r.1);
        typed_ratios.push(ty.1 / r.1);
        blocking_ratios.push(bl.1 / r.1);
        println!(
            "trial {t:2}: shmpipe {:6.1} / {:6.1}   typed {:6.1} / {:6.1}   ringfire {:6.1} / {:6.1}   recv {:6.1} / {:6.1}   median ratios {:.2} / {:.2} / {:.2}{bare}",
            s.0,
            s.1,
            ty.0,
            ty.1,
            r.0,
            r.1,
            bl.0,
            bl.1,
            s.1 / r.1,
            ty.1 / r.1,
            bl.1 / r.1
        );
    }
    for v in [&mut ratios, &mut typed_ratios, &mut blocking_ratios] {
        v.sort_by(f64::total_cmp);
    }
    println!(
        "median of the trials' ratios to ringfire's time: shmpipe {:.2}, typed {:.2}, recv {:.2}",
        ratios[ratios.len() / 2],
        typed_ratios[typed_ratios.len() / 2],
        blocking_ratios[blocking_ratios.len() / 2]
    );
}
