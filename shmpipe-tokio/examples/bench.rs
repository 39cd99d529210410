//! Async benchmark, all rows in one run (medians of `RUNS` runs):
//!
//! - round trip: blocking Spin (reference), async shmpipe (tokio client,
//!   blocking Futex echo thread), tokio `UnixStream` (same shape);
//! - streaming 64-byte messages: blocking Futex (reference), async shmpipe
//!   consumer, tokio `UnixStream` reader;
//! - WaitSet wake-up round trip with 1 and 100 rings.
//!
//! `cargo run --release -p shmpipe-tokio --example bench`. The measuring
//! thread is pinned to CPU 0 and every peer thread to CPU 1 (the reactor and
//! WaitSet waiter threads are not pinned). Prints a table: median of 3 runs,
//! each row's ratio against its blocking reference and against tokio's
//! `UnixStream` (both measured in the same run), then the goal ratios.

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use shmpipe::{Builder, Events, WaitSet, WaitStrategy};
use shmpipe_tokio::{AsyncConsumer, AsyncProducer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const RUNS: usize = 3;
const RT: u64 = 100_000;
const STREAM: u64 = 2_000_000;
const WAKE: u64 = 20_000;

/// Pin the calling thread to `cpu` (ignored if the machine has no such CPU).
fn pin(cpu: usize) {
    // SAFETY: a zeroed cpu_set_t is valid; CPU_SET stays in bounds for
    // cpu < CPU_SETSIZE; sched_setaffinity(0) targets the calling thread.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

fn echo_thread(
    wait: WaitStrategy,
) -> (
    shmpipe::Producer,
    shmpipe::Consumer,
    std::thread::JoinHandle<()>,
) {
    let b = Builder::new().capacity(64 * 1024).wait(wait);
    let (ptx, mut prx) = b.in_process().unwrap().split().unwrap();
    let (mut qtx, qrx) = b.in_process().unwrap().split().unwrap();
    let h = std::thread::spawn(move || {
        pin(1);
        let mut buf = Vec::new();
        while prx.recv(&mut buf).is_ok() {
            if qtx.send(&buf).is_err() {
                break;
            }
        }
    });
    (ptx, qrx, h)
}

/// ns per round trip.
fn blocking_rt(wait: WaitStrategy) -> f64 {
    let (mut tx, mut rx, h) = echo_thread(wait);
    let mut buf = Vec::new();
    let t = Instant::now();
    for i in 0..RT {
        tx.send(&i.to_le_bytes()).unwrap();
        rx.recv(&mut buf).unwrap();
    }
    let ns = t.elapsed().as_nanos() as f64 / RT as f64;
    drop(tx);
    h.join().unwrap();
    ns
}

fn async_rt() -> f64 {
    let (tx, rx, h) = echo_thread(WaitStrategy::Futex);
    let ns = rt().block_on(async move {
        let mut tx = AsyncProducer::new(tx).unwrap();
        let mut rx = AsyncConsumer::new(rx).unwrap();
        let mut buf = Vec::new();
        let t = Instant::now();
        for i in 0..RT {
            tx.send(&i.to_le_bytes()).await.unwrap();
            rx.recv(&mut buf).await.unwrap();
        }
        t.elapsed().as_nanos() as f64 / RT as f64
    });
    h.join().unwrap();
    ns
}

fn unix_rt() -> f64 {
    let (a, mut b) = std::os::unix::net::UnixStream::pair().unwrap();
    let h = std::thread::spawn(move || {
        pin(1);
        let mut m = [0u8; 8];
        while b.read_exact(&mut m).is_ok() {
            if b.write_all(&m).is_err() {
                break;
            }
        }
    });
    let ns = rt().block_on(async move {
        a.set_nonblocking(true).unwrap();
        let mut a = tokio::net::UnixStream::from_std(a).unwrap();
        let mut m = [0u8; 8];
        let t = Instant::now();
        for i in 0..RT {
            a.write_all(&i.to_le_bytes()).await.unwrap();
            a.read_exact(&mut m).await.unwrap();
        }
        t.elapsed().as_nanos() as f64 / RT as f64
    });
    h.join().unwrap();
    ns
}

/// Million messages per second, 64-byte messages.
fn blocking_stream() -> f64 {
    let (mut tx, mut rx) = Builder::new()
        .capacity(256 * 1024)
        .wait(WaitStrategy::Futex)
        .in_process()
        .unwrap()
        .split()
        .unwrap();
    let h = std::thread::spawn(move || {
        pin(1);
        let m = [7u8; 64];
        for _ in 0..STREAM {
            tx.send(&m).unwrap();
        }
    });
    let t = Instant::now();
    let mut n = 0u64;
    while rx.recv_with(|_| ()).is_ok() {
        n += 1;
    }
    assert_eq!(n, STREAM);
    h.join().unwrap();
    STREAM as f64 / t.elapsed().as_secs_f64() / 1e6
}

fn async_stream() -> f64 {
    let (mut tx, rx) = Builder::new()
        .capacity(256 * 1024)
        .wait(WaitStrategy::Futex)
        .in_process()
        .unwrap()
        .split()
        .unwrap();
    let h = std::thread::spawn(move || {
        pin(1);
        let m = [7u8; 64];
        for _ in 0..STREAM {
            tx.send(&m).unwrap();
        }
    });
    let r = rt().block_on(async move {
        let mut rx = AsyncConsumer::new(rx).unwrap();
        let t = Instant::now();
        let mut n = 0u64;
        while rx.recv_with(|_| ()).await.is_ok() {
            n += 1;
        }
        assert_eq!(n, STREAM);
        STREAM as f64 / t.elapsed().as_secs_f64() / 1e6
    });
    h.join().unwrap();
    r
}

fn unix_stream() -> f64 {
    let (a, mut b) = std::os::unix::net::UnixStream::pair().unwrap();
    let h = std::thread::spawn(move || {
        pin(1);
        let m = [7u8; 64 * 64];
        for _ in 0..STREAM / 64 {
            b.write_all(&m).unwrap();
        }
    });
    let r = rt().block_on(async move {
        a.set_nonblocking(true).unwrap();
        let mut a = tokio::net::UnixStream::from_std(a).unwrap();
        let mut m = [0u8; 64];
        let t = Instant::now();
        for _ in 0..STREAM {
            a.read_exact(&mut m).await.unwrap();
        }
        STREAM as f64 / t.elapsed().as_secs_f64() / 1e6
    });
    h.join().unwrap();
    r
}

/// WaitSet wake-up round trip (ns): a sender thread sends on a random ring
/// and waits for the ack; this thread wakes through the set.
fn waitset_rt(rings: usize) -> f64 {
    let b = Builder::new().capacity(4096).wait(WaitStrategy::Futex);
    let mut txs = Vec::new();
    let mut rxs = Vec::new();
    let mut set = WaitSet::new().unwrap();
    for _ in 0..rings {
        let (tx, rx) = b.in_process().unwrap().split().unwrap();
        set.add_consumer(&rx).unwrap();
        txs.push(tx);
        rxs.push(rx);
    }
    let (mut atx, mut arx) = b.in_process().unwrap().split().unwrap();
    let h = std::thread::spawn(move || {
        pin(1);
        let mut x = 1u64;
        let t = Instant::now();
        for i in 0..WAKE {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let r = (x >> 33) as usize % txs.len();
            txs[r].send(&i.to_le_bytes()).unwrap();
            arx.recv_with(|_| ()).unwrap();
        }
        t.elapsed().as_nanos() as f64 / WAKE as f64
    });
    let mut events = Events::new();
    let mut got = 0;
    while got < WAKE {
        set.wait(&mut events, Some(Duration::from_secs(5))).unwrap();
        for ev in events.iter() {
            while rxs[ev.token.0].try_recv_with(|_| ()).is_ok() {
                got += 1;
                atx.send(b"k").unwrap();
            }
        }
    }
    h.join().unwrap()
}

/// One table row: name, unit, whether higher is better, its reference
/// row (index) if not itself a reference, its UnixStream row if any.
struct Row {
    name: &'static str,
    unit: &'static str,
    higher_better: bool,
    reference: Option<usize>,
    unix: Option<usize>,
    runs: Vec<f64>,
}

fn row(
    name: &'static str,
    unit: &'static str,
    higher_better: bool,
    reference: Option<usize>,
    unix: Option<usize>,
) -> Row {
    Row {
        name,
        unit,
        higher_better,
        reference,
        unix,
        runs: Vec::new(),
    }
}

/// How many times better `a` is than `b` (> 1: better).
fn ratio(a: f64, b: f64, higher_better: bool) -> f64 {
    if higher_better {
        a / b
    } else {
        b / a
    }
}

fn main() {
    pin(0);
    let mut rows = vec![
        row(
            "round trip, blocking Spin (reference)",
            "ns",
            false,
            None,
            Some(3),
        ),
        row("round trip, blocking Futex", "ns", false, Some(0), Some(3)),
        row(
            "round trip, shmpipe-tokio (peer: blocking Futex echo)",
            "ns",
            false,
            Some(0),
            Some(3),
        ),
        row("round trip, tokio UnixStream", "ns", false, Some(0), None),
        row(
            "streaming 64 B, blocking Futex (reference)",
            "M msg/s",
            true,
            None,
            Some(6),
        ),
        row(
            "streaming 64 B, shmpipe-tokio consumer",
            "M msg/s",
            true,
            Some(4),
            Some(6),
        ),
        row(
            "streaming 64 B, tokio UnixStream",
            "M msg/s",
            true,
            Some(4),
            None,
        ),
        row(
            "WaitSet wake-up round trip, 1 ring (reference)",
            "ns",
            false,
            None,
            None,
        ),
        row(
            "WaitSet wake-up round trip, 100 rings",
            "ns",
            false,
            Some(7),
            None,
        ),
    ];
    for run in 0..RUNS {
        eprintln!("run {} of {RUNS}", run + 1);
        rows[0].runs.push(blocking_rt(WaitStrategy::Spin));
        rows[1].runs.push(blocking_rt(WaitStrategy::Futex));
        rows[2].runs.push(async_rt());
        rows[3].runs.push(unix_rt());
        rows[4].runs.push(blocking_stream());
        rows[5].runs.push(async_stream());
        rows[6].runs.push(unix_stream());
        rows[7].runs.push(waitset_rt(1));
        rows[8].runs.push(waitset_rt(100));
    }
    let med: Vec<f64> = rows.iter().map(|r| median(r.runs.clone())).collect();
    println!(
        "{:<56} {:>10} {:<8} {:>14} {:>14}",
        "row (median of 3, CPUs 0/1)", "value", "unit", "vs reference", "vs UnixStream"
    );
    let cell = |other: Option<usize>, i: usize| match other {
        Some(j) => format!("{:.2}x", ratio(med[i], med[j], rows[i].higher_better)),
        None => "-".to_string(),
    };
    for (i, r) in rows.iter().enumerate() {
        println!(
            "{:<56} {:>10.1} {:<8} {:>14} {:>14}",
            r.name,
            med[i],
            r.unit,
            cell(r.reference, i),
            cell(r.unix, i)
        );
    }
    println!("(ratios: > 1x means better than the other row: faster or more messages)");
    println!(
        "goal: async round trip within 2x of blocking Spin: {:.2}x the time",
        med[2] / med[0]
    );
    println!(
        "goal: async streaming >= 0.8x blocking Futex: {:.2}x the rate",
        med[5] / med[4]
    );
    println!(
        "WaitSet wake-up, 100 rings vs 1 ring: {:.2}x the time",
        med[8] / med[7]
    );
}
