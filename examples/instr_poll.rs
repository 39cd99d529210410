//! Instructions per failed poll, for `valgrind --tool=callgrind` (see
//! `examples/instr_loop.rs`; `examples/instr.sh` runs both): what a busy
//! side costs per attempt while it waits, through a named ring.
//!
//! - `empty_poll` / `ringfire_empty_poll`: `try_recv_into` / `try_recv` on
//!   an empty ring; `drain_empty_poll`: `drain` on an empty ring;
//! - `full_poll` / `ringfire_full_poll`: `try_send` / `try_push` on a full
//!   ring.
//!
//! ```text
//! METHODS="empty_poll ringfire_empty_poll full_poll ringfire_full_poll" bash examples/instr.sh
//! ```
//! Each run makes ROUNDS × 16 failed polls (the figure is per poll).

use shmpipe::{Builder, Error};

const BATCH: usize = 16;

/// `empty_poll`: `try_recv_into` on an empty ring; `full_poll`:
/// `try_send` on a full one.
#[inline(never)]
fn run_poll(size: usize, method: &str, rounds: u64) -> Result<u64, Error> {
    let name = format!("/shmpipe-instr-poll-{}", std::process::id());
    let mut tx = Builder::new().create_producer(&name)?;
    let mut rx = Builder::new().open_consumer(&name)?;
    let msg = vec![0u8; size];
    let mut buf = vec![0u8; size];
    let mut bad = 0u64;
    match method {
        "empty_poll" => {
            for _ in 0..rounds * BATCH as u64 {
                bad += u64::from(!matches!(rx.try_recv_into(&mut buf), Err(Error::Empty)));
            }
        }
        "drain_empty_poll" => {
            for _ in 0..rounds * BATCH as u64 {
                bad += u64::from(!matches!(rx.drain(usize::MAX, |m| buf[0] = m[0]), Ok(0)));
            }
        }
        "full_poll" => {
            while tx.try_send(&msg).is_ok() {}
            for _ in 0..rounds * BATCH as u64 {
                bad += u64::from(!matches!(tx.try_send(&msg), Err(Error::Full)));
            }
        }
        other => panic!("unknown poll {other}"),
    }
    Ok(bad)
}

/// ringfire's failed polls (`poll`: "empty" or "full"), as `run_poll`.
#[inline(never)]
fn run_ringfire_poll<const N: usize>(
    rounds: u64,
    poll: &str,
) -> Result<u64, ringfire::RingfireError> {
    use ringfire::{FlowControl, RingConsumer, RingProducerBuilder};
    let path = format!("/dev/shm/shmpipe-instr-poll-{}", std::process::id());
    let slots = ((1usize << 20) / (8 + N)).next_power_of_two() as u64;
    let mut tx = RingProducerBuilder::new(slots)
        .flow_control(FlowControl::LosslessBackpressure)
        .build::<[u8; N], _>(&path)?;
    let mut rx = RingConsumer::<[u8; N]>::attach(&path)?;
    let msg = [0u8; N];
    let mut bad = 0u64;
    match poll {
        "empty" => {
            for _ in 0..rounds * BATCH as u64 {
                bad += u64::from(std::hint::black_box(rx.try_recv()).is_some());
            }
        }
        "full" => {
            while tx.try_push(&msg).is_ok() {}
            for _ in 0..rounds * BATCH as u64 {
                bad += u64::from(tx.try_push(&msg).is_ok());
            }
        }
        other => panic!("unknown poll {other}"),
    }
    Ok(bad)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut a = std::env::args().skip(1);
    let size: usize = a.next().map_or(64, |s| s.parse().expect("SIZE"));
    let method = a.next().unwrap_or_else(|| "empty_poll".into());
    let rounds: u64 = a.next().map_or(100_000, |s| s.parse().expect("ROUNDS"));
    let size = size.max(8);
    let bad = match method.strip_prefix("ringfire_") {
        Some(poll) => {
            let poll = poll.trim_end_matches("_poll");
            match size {
                8 => run_ringfire_poll::<8>(rounds, poll)?,
                64 => run_ringfire_poll::<64>(rounds, poll)?,
                other => panic!("ringfire polls: SIZE {other} is not 8 or 64"),
            }
        }
        None => run_poll(size, &method, rounds)?,
    };
    println!("{size} B {method}: {rounds} rounds of {BATCH} polls, {bad} unexpected");
    if bad != 0 {
        return Err(format!("{bad} polls did not fail as expected").into());
    }
    Ok(())
}
