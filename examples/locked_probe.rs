//! The locked variant timed by one small program, so two library versions
//! compare through the same harness (`shmpipe bench`'s own harness changes
//! between versions): threads pinned to CPUs 1 and 0, a named ring.
//!
//! - `s8` / `s1k`: streaming 1,000,000 messages of 8 B / 1 KiB with the
//!   blocking `send` / `recv_into`, in M msgs/s;
//! - `rb8`: the p50 of 50,000 round trips of 8 B with `send` / `recv_into`,
//!   in ns; `rs8`: the same busy-polling `try_send` / `try_recv_into`.
//!
//! ```text
//! cargo run --release --example locked_probe -- s8
//! ```
use shmpipe::{locked, Error};
use std::time::Instant;

#[path = "common/mod.rs"]
mod common;
use common::pin;

fn stream(size: usize) -> f64 {
    let n = 1_000_000u64;
    let name = format!("/lkp-{}", std::process::id());
    let mut tx = locked::Builder::default().create_producer(&name).unwrap();
    let mut rx = locked::Builder::default().open_consumer(&name).unwrap();
    let t = std::thread::spawn(move || {
        pin(1);
        let mut msg = vec![0u8; size];
        for i in 0..n {
            msg[..8].copy_from_slice(&i.to_le_bytes());
            tx.send(&msg).unwrap();
        }
    });
    pin(0);
    let mut buf = vec![0u8; size];
    let t0 = Instant::now();
    for i in 0..n {
        rx.recv_into(&mut buf).unwrap();
        assert_eq!(buf[..8], i.to_le_bytes());
    }
    let dt = t0.elapsed().as_secs_f64();
    t.join().unwrap();
    n as f64 / dt / 1e6
}

fn rt(size: usize, spin: bool) -> f64 {
    let n = 50_000u64;
    let a = format!("/lkp-a-{}", std::process::id());
    let b = format!("/lkp-b-{}", std::process::id());
    let mut tx = locked::Builder::default().create_producer(&a).unwrap();
    let mut rx_echo = locked::Builder::default().open_consumer(&a).unwrap();
    let mut tx_echo = locked::Builder::default().create_producer(&b).unwrap();
    let mut rx = locked::Builder::default().open_consumer(&b).unwrap();
    let t = std::thread::spawn(move || {
        pin(1);
        let mut buf = vec![0u8; size];
        for _ in 0..n {
            if spin {
                loop {
                    match rx_echo.try_recv_into(&mut buf) {
                        Ok(_) => break,
                        Err(Error::Empty) => std::hint::spin_loop(),
                        Err(e) => panic!("{e}"),
                    }
                }
                while let Err(Error::Full) = tx_echo.try_send(&buf) {}
            } else {
                rx_echo.recv_into(&mut buf).unwrap();
                tx_echo.send(&buf).unwrap();
            }
        }
    });
    pin(0);
    let mut msg = vec![0u8; size];
    let mut buf = vec![0u8; size];
    let mut times = Vec::with_capacity(n as usize);
    for i in 0..n {
        msg[..8].copy_from_slice(&i.to_le_bytes());
        let t0 = Instant::now();
        if spin {
            while let Err(Error::Full) = tx.try_send(&msg) {}
            loop {
                match rx.try_recv_into(&mut buf) {
                    Ok(_) => break,
                    Err(Error::Empty) => std::hint::spin_loop(),
                    Err(e) => panic!("{e}"),
                }
            }
        } else {
            tx.send(&msg).unwrap();
            rx.recv_into(&mut buf).unwrap();
        }
        times.push(t0.elapsed().as_nanos() as f64);
        assert_eq!(buf[..8], i.to_le_bytes());
    }
    t.join().unwrap();
    times.sort_by(|a, b| a.partial_cmp(b).unwrap());
    times[times.len() / 2]
}

fn main() {
    let which = std::env::args().nth(1).unwrap();
    let v = match which.as_str() {
        "s8" => stream(8),
        "s1k" => stream(1024),
        "rb8" => rt(8, false),
        "rs8" => rt(8, true),
        _ => panic!(),
    };
    println!("{v:.2}");
}
