//! Producer half of a two-process demo: sends COUNT messages, each carrying
//! a sequence number and a send timestamp, into the named ring NAME.
//!
//! Run the two halves in two terminals, in either order:
//!
//! ```text
//! cargo run --release --example consumer -- /demo
//! cargo run --release --example producer -- /demo 1000000
//! ```
//!
//! Usage: `producer NAME COUNT [SIZE [PAUSE_US]]`. NAME is a POSIX
//! shared-memory name (`/demo` is the file `/dev/shm/demo`); SIZE is the
//! message size in bytes (default 64, at least 16); PAUSE_US is a pause
//! between messages in microseconds (default 0: as fast as possible; with
//! a pause the consumer's latency figures show an idle ring's one-way
//! latency instead of queueing, e.g. `producer /demo 10000 64 100`).
//! Whichever side starts first creates the
//! segment (`open_or_create_*`, with `unlink_on_drop(false)` so the
//! producer leaving does not remove it); the consumer removes it at the end.
//!
//! Each message is written in place in the ring (a zero-copy claim): bytes
//! 0..8 hold the sequence number, bytes 8..16 the send time in nanoseconds
//! of `CLOCK_MONOTONIC` (the same clock in every process of the machine),
//! the rest is filler. Dropping the producer closes the ring, which the
//! consumer sees as the end of the stream.
//!
//! Exit status: 0 on success, 2 for bad arguments or a ring that cannot be
//! opened, 1 if sending fails.

use std::process::ExitCode;
use std::time::{Duration, Instant};

const HEADER: usize = 16;
const DEFAULT_SIZE: usize = 64;

/// Nanoseconds of `CLOCK_MONOTONIC`, comparable between processes.
fn now_ns() -> u64 {
    use nix::time::{clock_gettime, ClockId};
    // CLOCK_MONOTONIC exists on every Linux: reading it cannot fail.
    let t = clock_gettime(ClockId::CLOCK_MONOTONIC).expect("CLOCK_MONOTONIC");
    Duration::from(t).as_nanos() as u64
}

fn usage(why: &str) -> ExitCode {
    eprintln!("producer: {why}");
    eprintln!("usage: producer NAME COUNT [SIZE [PAUSE_US]]   (e.g. producer /demo 1000000)");
    ExitCode::from(2)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 2 || args.len() > 4 {
        return usage("expected a ring name and a message count");
    }
    let name = &args[0];
    let count: u64 = match args[1].parse() {
        Ok(n) => n,
        Err(_) => return usage(&format!("COUNT must be a whole number, not {:?}", args[1])),
    };
    let size: usize = match args.get(2).map(|s| s.parse()) {
        None => DEFAULT_SIZE,
        Some(Ok(n)) if n >= HEADER => n,
        Some(_) => {
            return usage(&format!(
                "SIZE must be a whole number of at least {HEADER} bytes, not {:?}",
                args[2]
            ))
        }
    };
    let pause = match args.get(3).map(|s| s.parse()) {
        None => None,
        Some(Ok(0)) => None,
        Some(Ok(us)) => Some(Duration::from_micros(us)),
        Some(Err(_)) => {
            return usage(&format!(
                "PAUSE_US must be a whole number of microseconds, not {:?}",
                args[3]
            ))
        }
    };

    // Checked before opening, so a bad SIZE leaves no new segment behind
    // (both examples create rings of the default capacity).
    let max = shmpipe::max_message_for(shmpipe::DEFAULT_CAPACITY);
    if size > max {
        return usage(&format!(
            "SIZE {size} is larger than the largest message of the ring ({max} bytes)"
        ));
    }

    let mut tx = match shmpipe::Builder::new()
        .unlink_on_drop(false)
        .open_or_create_producer(name)
    {
        Ok(tx) => tx,
        Err(e) => {
            eprintln!("producer: cannot open ring {name:?}: {e}");
            return ExitCode::from(2);
        }
    };
    if size > tx.max_message() {
        return usage(&format!(
            "SIZE {size} is larger than this ring's largest message ({} bytes)",
            tx.max_message()
        ));
    }
    eprintln!(
        "producer: sending {count} messages of {size} bytes to {name} ({} B ring, {} waits)",
        tx.capacity(),
        tx.wait_strategy()
    );

    let start = Instant::now();
    for seq in 0..count {
        let mut claim = match tx.claim(size) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("producer: sending message {seq} failed: {e}");
                if matches!(e, shmpipe::Error::PeerDied) {
                    eprintln!(
                        "producer: (a stale segment from an earlier run? remove /dev/shm{name} and start again)"
                    );
                }
                return ExitCode::from(1);
            }
        };
        claim[..8].copy_from_slice(&seq.to_le_bytes());
        claim[8..HEADER].copy_from_slice(&now_ns().to_le_bytes());
        claim.commit();
        if let Some(p) = pause {
            std::thread::sleep(p);
        }
    }
    let secs = start.elapsed().as_secs_f64();
    drop(tx); // closes the ring: the consumer sees the end of the stream
    eprintln!(
        "producer: sent {count} messages in {secs:.3} s ({:.0} messages/s)",
        count as f64 / secs.max(1e-9)
    );
    ExitCode::SUCCESS
}
