//! The library's own streaming rate, without the benchmark harness: a
//! forked child sends COUNT messages of SIZE bytes (`send`, only the first
//! 8 bytes stamped), the parent receives them with `try_recv_into`, `drain`
//! or `recv_with`, pinned to CPUs 0 and 1. Prints messages per second for
//! each receive method and wait strategy (median of RUNS runs).
//!
//! `cargo run --release --example raw_loop -- [SIZE [COUNT [RUNS [CAPACITY]]]]`
//! (defaults 64, 20000000, 3, the library's default capacity).

use std::time::Instant;

use shmpipe::{Builder, Error, WaitStrategy};

#[path = "common/mod.rs"]
mod common;
use common::pin;

fn backoff() -> u32 {
    static B: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    *B.get_or_init(|| {
        std::env::var("BACKOFF")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(1)
    })
}

/// PBATCH=N: the producer sends with `send_batch` in batches of N.
fn pbatch() -> u64 {
    std::env::var("PBATCH")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1)
}

#[derive(Clone, Copy, Debug)]
enum Method {
    TryRecvInto,
    RecvWith,
    Drain,
}

fn run(wait: WaitStrategy, how: Method, size: usize, count: u64, cap: u64) -> Result<f64, Error> {
    let pair = Builder::new().capacity(cap).wait(wait).anonymous()?;
    // SAFETY: the child only uses the ring and exits.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        pin(1);
        let code = (|| -> Result<(), Error> {
            let mut tx = pair.into_producer()?;
            let mut msg = vec![0u8; size];
            let batch = pbatch();
            if batch > 1 {
                // send_batch: BATCH records written, then published together.
                let mut msgs = vec![vec![0u8; size]; batch as usize];
                let mut i = 0;
                while i < count {
                    let k = batch.min(count - i) as usize;
                    for (j, m) in msgs[..k].iter_mut().enumerate() {
                        m[..8].copy_from_slice(&(i + j as u64).to_le_bytes());
                    }
                    tx.send_batch(&msgs[..k])?;
                    i += k as u64;
                }
                return Ok(());
            }
            for i in 0..count {
                msg[..8].copy_from_slice(&i.to_le_bytes());
                tx.send(&msg)?;
            }
            Ok(())
        })()
        .is_err() as i32;
        // SAFETY: leave the forked child without running destructors twice.
        unsafe { libc::_exit(code) };
    }
    pin(0);
    let mut rx = pair.into_consumer()?;
    let mut buf = vec![0u8; size];
    let mut n = 0u64;
    let mut bad = 0u64;
    let t0 = Instant::now();
    match how {
        Method::TryRecvInto => loop {
            match rx.try_recv_into(&mut buf) {
                Ok(_) => {
                    bad += (u64::from_le_bytes(buf[..8].try_into().unwrap()) != n) as u64;
                    n += 1;
                }
                Err(Error::Empty) => {
                    for _ in 0..backoff() {
                        std::hint::spin_loop()
                    }
                }
                Err(Error::Disconnected) => break,
                Err(e) => return Err(e),
            }
        },
        Method::RecvWith => loop {
            match rx.recv_with(|m| u64::from_le_bytes(m[..8].try_into().unwrap())) {
                Ok(seq) => {
                    bad += (seq != n) as u64;
                    n += 1;
                }
                Err(Error::Disconnected) => break,
                Err(e) => return Err(e),
            }
        },
        Method::Drain => loop {
            match rx.drain(usize::MAX, |m| {
                bad += (u64::from_le_bytes(m[..8].try_into().unwrap()) != n) as u64;
                n += 1;
            }) {
                Ok(0) => std::hint::spin_loop(),
                Ok(_) => {}
                Err(Error::Disconnected) => break,
                Err(e) => return Err(e),
            }
        },
    }
    let secs = t0.elapsed().as_secs_f64();
    if std::env::var_os("VERBOSE").is_some() {
        let st = rx.stats();
        eprintln!(
            "  {how:?} {:.1} M/s: full waits {}, empty waits {}",
            count as f64 / secs / 1e6,
            st.full_waits,
            st.empty_waits
        );
    }
    let mut status = 0;
    // SAFETY: reaping our own child.
    unsafe { libc::waitpid(pid, &mut status, 0) };
    assert_eq!((n, bad), (count, 0), "lost or misordered messages");
    Ok(count as f64 / secs)
}

fn main() -> Result<(), Error> {
    let args: Vec<u64> = std::env::args()
        .skip(1)
        .map(|a| a.parse().expect("numeric arguments: SIZE COUNT RUNS"))
        .collect();
    let size = args.first().copied().unwrap_or(64).max(8) as usize;
    let count = args.get(1).copied().unwrap_or(20_000_000);
    let runs = args.get(2).copied().unwrap_or(3).max(1);
    let cap = args.get(3).copied().unwrap_or(shmpipe::DEFAULT_CAPACITY);
    for wait in [WaitStrategy::Spin, WaitStrategy::Futex] {
        for how in [Method::TryRecvInto, Method::RecvWith, Method::Drain] {
            let only = std::env::var("ONLY").unwrap_or_default();
            if !only.is_empty() && !format!("{} {how:?}", wait.name()).contains(&only) {
                continue;
            }
            let mut v: Vec<f64> = (0..runs)
                .map(|_| run(wait, how, size, count, cap))
                .collect::<Result<_, _>>()?;
            v.sort_by(|a, b| a.total_cmp(b));
            let all: Vec<String> = v.iter().map(|x| format!("{:.1}", x / 1e6)).collect();
            println!(
                "{size:>6} B  {:<10} {:<12} {:>7.1} M msgs/s  (runs: {})",
                wait.name(),
                format!("{how:?}"),
                v[v.len() / 2] / 1e6,
                all.join(", ")
            );
        }
    }
    Ok(())
}
