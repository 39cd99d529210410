//! Consumer half of a two-process demo: receives the producer's numbered,
//! timestamped messages from the named ring NAME, checks that none is
//! missing or out of order, and prints messages/s and a one-way latency
//! estimate when the producer closes the ring.
//!
//! Run the two halves in two terminals, in either order:
//!
//! ```text
//! cargo run --release --example consumer -- /demo
//! cargo run --release --example producer -- /demo 1000000
//! ```
//!
//! Usage: `consumer NAME`. Whichever side starts first creates the segment
//! (`open_or_create_*` with `unlink_on_drop(false)`); the consumer removes
//! the name when the stream ends, so the next run starts fresh.
//!
//! The latency is receive time minus the send time stamped in each message
//! (`CLOCK_MONOTONIC`, the same clock in every process of the machine). A
//! producer running flat out keeps the ring full, so then every figure is
//! mostly time spent queued behind earlier messages (and, if the producer
//! started first, the time before this process started). For the one-way
//! latency of an idle ring, pace the producer:
//! `producer /demo 10000 64 100` (a 100 us pause between messages).
//!
//! Exit status: 0 on success, 2 for bad arguments or a ring that cannot be
//! opened, 1 if receiving fails or a message is missing or out of order.

use std::process::ExitCode;
use std::time::{Duration, Instant};

const HEADER: usize = 16;

/// Nanoseconds of `CLOCK_MONOTONIC`, comparable between processes.
fn now_ns() -> u64 {
    use nix::time::{clock_gettime, ClockId};
    // CLOCK_MONOTONIC exists on every Linux: reading it cannot fail.
    let t = clock_gettime(ClockId::CLOCK_MONOTONIC).expect("CLOCK_MONOTONIC");
    Duration::from(t).as_nanos() as u64
}

fn u64_at(msg: &[u8], at: usize) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&msg[at..at + 8]);
    u64::from_le_bytes(b)
}

/// A log-linear histogram of nanosecond values: exact below 16, then 16
/// buckets per power of two (within about 6%), in constant memory.
struct Histogram {
    counts: Vec<u64>,
    total: u64,
    min: u64,
    max: u64,
}

impl Histogram {
    const SUB: u64 = 16;

    fn new() -> Self {
        Histogram {
            counts: vec![0; 16 + 60 * 16],
            total: 0,
            min: u64::MAX,
            max: 0,
        }
    }

    fn bucket(v: u64) -> usize {
        if v < Self::SUB {
            return v as usize;
        }
        let e = 63 - u64::from(v.leading_zeros()); // >= 4
        let sub = (v >> (e - 4)) & (Self::SUB - 1);
        (Self::SUB + (e - 4) * Self::SUB + sub) as usize
    }

    fn lower_bound(i: usize) -> u64 {
        let i = i as u64;
        if i < Self::SUB {
            return i;
        }
        let e = (i - Self::SUB) / Self::SUB + 4;
        let sub = (i - Self::SUB) % Self::SUB;
        (Self::SUB + sub) << (e - 4)
    }

    fn add(&mut self, v: u64) {
        self.counts[Self::bucket(v)] += 1;
        self.total += 1;
        self.min = self.min.min(v);
        self.max = self.max.max(v);
    }

    /// Lower bound of the bucket holding the `q`-quantile.
    fn quantile(&self, q: f64) -> u64 {
        let rank = ((self.total as f64 * q).ceil() as u64).max(1);
        let mut seen = 0;
        for (i, c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return Self::lower_bound(i).max(self.min);
            }
        }
        self.max
    }
}

fn show_ns(ns: u64) -> String {
    match ns {
        0..=9_999 => format!("{ns} ns"),
        10_000..=9_999_999 => format!("{:.1} us", ns as f64 / 1e3),
        _ => format!("{:.1} ms", ns as f64 / 1e6),
    }
}

/// How the stream went wrong.
enum Failure {
    Ring(shmpipe::Error),
    Short { seq: u64, len: usize },
    Order { expected: u64, got: u64 },
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() != 1 {
        eprintln!("consumer: expected one argument, the ring name");
        eprintln!("usage: consumer NAME   (e.g. consumer /demo)");
        return ExitCode::from(2);
    }
    let name = &args[0];
    let mut rx = match shmpipe::Builder::new()
        .unlink_on_drop(false)
        .open_or_create_consumer(name)
    {
        Ok(rx) => rx,
        Err(e) => {
            eprintln!("consumer: cannot open ring {name:?}: {e}");
            return ExitCode::from(2);
        }
    };
    eprintln!(
        "consumer: receiving on {name} ({} B ring, {} waits); start the producer, e.g.\n  \
         cargo run --release --example producer -- {name} 1000000",
        rx.capacity(),
        rx.wait_strategy()
    );

    let mut hist = Histogram::new();
    let mut next = 0u64;
    let mut bytes = 0u64;
    let mut first: Option<Instant> = None;
    let mut last = Instant::now();
    let outcome = loop {
        let r = rx.recv_with(|msg| {
            let at = now_ns();
            if msg.len() < HEADER {
                return Err(Failure::Short {
                    seq: next,
                    len: msg.len(),
                });
            }
            let seq = u64_at(msg, 0);
            if seq != next {
                return Err(Failure::Order {
                    expected: next,
                    got: seq,
                });
            }
            hist.add(at.saturating_sub(u64_at(msg, 8)));
            bytes += msg.len() as u64;
            Ok(())
        });
        match r {
            Ok(Ok(())) => {
                last = Instant::now();
                first.get_or_insert(last);
                next += 1;
            }
            Ok(Err(f)) => break Err(f),
            Err(shmpipe::Error::Disconnected) => break Ok(()),
            Err(e) => break Err(Failure::Ring(e)),
        }
    };
    drop(rx);
    // We are the last user: remove the name so the next run starts fresh.
    if let Err(e) = shmpipe::remove(name) {
        eprintln!("consumer: could not remove {name}: {e}");
    }

    match outcome {
        Ok(()) => {}
        Err(Failure::Ring(e)) => {
            eprintln!("consumer: receiving message {next} failed: {e}");
            if matches!(e, shmpipe::Error::PeerDied) {
                eprintln!("consumer: (the producer died, or the segment was left by an earlier run; it has been removed, start again)");
            }
            return ExitCode::from(1);
        }
        Err(Failure::Short { seq, len }) => {
            eprintln!(
                "consumer: message {seq} has {len} bytes, fewer than the {HEADER}-byte header"
            );
            return ExitCode::from(1);
        }
        Err(Failure::Order { expected, got }) => {
            eprintln!("consumer: out of order: expected message {expected}, got {got}");
            return ExitCode::from(1);
        }
    }

    println!("consumer: received {next} messages ({bytes} bytes) in order, none missing");
    if let Some(first) = first {
        let secs = last.duration_since(first).as_secs_f64();
        if next > 1 && secs > 0.0 {
            println!(
                "throughput: {:.0} messages/s, {:.1} MiB/s (first to last message, {secs:.3} s)",
                (next - 1) as f64 / secs,
                bytes as f64 / secs / (1024.0 * 1024.0)
            );
        }
        println!(
            "one-way latency (send stamp to receive): min {}, p50 {}, p99 {}, max {}",
            show_ns(hist.min),
            show_ns(hist.quantile(0.5)),
            show_ns(hist.quantile(0.99)),
            show_ns(hist.max)
        );
        println!(
            "  (includes queueing if the producer runs flat out; for an idle ring pace it: \
             producer {name} 10000 64 100)"
        );
    }
    ExitCode::SUCCESS
}
