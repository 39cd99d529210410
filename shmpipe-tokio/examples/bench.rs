//! Async benchmark, all rows in one run (medians of `RUNS` runs):
//!
//! - round trip: blocking Spin (reference), async shmpipe (tokio client,
//!   blocking Futex echo thread), tokio `UnixStream` (same shape);
//! - streaming 64-byte messages: blocking Futex (reference), async shmpipe
//!   consumer, tokio `UnixStream` reader;
//! - WaitSet wake-up round trip with 1 and 100 rings.
//!
//! `cargo run --release -p shmpipe-tokio --example bench` (pin it with
//! `taskset -c 0,1`).

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use shmpipe::{Builder, Events, WaitSet, WaitStrategy};
use shmpipe_tokio::{AsyncConsumer, AsyncProducer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const RUNS: usize = 3;
const RT: u64 = 100_000;
const STREAM: u64 = 2_000_000;
const WAKE: u64 = 20_000;

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
        let (tx, mut rx) = b.in_process().unwrap().split().unwrap();
        set.add_consumer(&mut rx).unwrap();
        txs.push(tx);
        rxs.push(rx);
    }
    let (mut atx, mut arx) = b.in_process().unwrap().split().unwrap();
    let h = std::thread::spawn(move || {
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

fn main() {
    let mut rows: Vec<(&str, Vec<f64>, &str)> = vec![
        ("round trip, blocking Spin (reference)", vec![], "ns"),
        ("round trip, blocking Futex", vec![], "ns"),
        (
            "round trip, shmpipe-tokio (peer: blocking Futex echo)",
            vec![],
            "ns",
        ),
        ("round trip, tokio UnixStream", vec![], "ns"),
        (
            "streaming 64 B, blocking Futex (reference)",
            vec![],
            "M msg/s",
        ),
        ("streaming 64 B, shmpipe-tokio consumer", vec![], "M msg/s"),
        ("streaming 64 B, tokio UnixStream", vec![], "M msg/s"),
        ("WaitSet wake-up round trip, 1 ring", vec![], "ns"),
        ("WaitSet wake-up round trip, 100 rings", vec![], "ns"),
    ];
    for _ in 0..RUNS {
        rows[0].1.push(blocking_rt(WaitStrategy::Spin));
        rows[1].1.push(blocking_rt(WaitStrategy::Futex));
        rows[2].1.push(async_rt());
        rows[3].1.push(unix_rt());
        rows[4].1.push(blocking_stream());
        rows[5].1.push(async_stream());
        rows[6].1.push(unix_stream());
        rows[7].1.push(waitset_rt(1));
        rows[8].1.push(waitset_rt(100));
    }
    let med: Vec<f64> = rows.iter().map(|r| median(r.1.clone())).collect();
    for ((name, _, unit), m) in rows.iter().zip(&med) {
        println!("{name:<56} {m:>10.1} {unit}");
    }
    println!(
        "async round trip / blocking Spin round trip: {:.2}x (goal <= 2x)",
        med[2] / med[0]
    );
    println!(
        "async streaming / blocking Futex streaming: {:.2}x (goal >= 0.8x)",
        med[5] / med[4]
    );
}
