//! What one failed poll costs in time, on one core: `try_recv_into` on an
//! empty shmpipe ring against ringfire's `try_recv` on an empty ring, each
//! with and without a spin-loop hint after it (a busy receiver's loop).
//! A waiting side repeats this until the message lands, so its length
//! bounds how soon a round trip's receiver notices the message
//! (DESIGN.md §2). `examples/instr_poll.rs` counts the instructions.
//!
//! ```text
//! cargo run --release --example poll_probe -- 5   # ROUNDS
//! ```

use shmpipe::{Builder, Error};
use std::time::Instant;

#[path = "common/mod.rs"]
mod common;

/// Polls per figure.
const N: u32 = 2_000_000;

/// Mean ns per call of `poll`.
fn time(mut poll: impl FnMut()) -> f64 {
    let t = Instant::now();
    for _ in 0..N {
        poll();
    }
    t.elapsed().as_nanos() as f64 / f64::from(N)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    use ringfire::{FlowControl, RingConsumer, RingProducerBuilder};
    let rounds: u32 = std::env::args()
        .nth(1)
        .map_or(5, |s| s.parse().expect("ROUNDS"));
    common::pin(0);
    let pid = std::process::id();
    let name = format!("/shmpipe-poll-probe-{pid}");
    let _tx = Builder::new().create_producer(&name)?;
    let mut rx = Builder::new().open_consumer(&name)?;
    let path = format!("/dev/shm/shmpipe-poll-probe-rf-{pid}");
    let _rtx = RingProducerBuilder::new(1 << 16)
        .flow_control(FlowControl::LosslessBackpressure)
        .build::<[u8; 8], _>(&path)?;
    let mut rrx = RingConsumer::<[u8; 8]>::attach(&path)?;
    let mut buf = [0u8; 8];
    let mut shm = |hint: bool| {
        assert!(matches!(rx.try_recv_into(&mut buf), Err(Error::Empty)));
        if hint {
            std::hint::spin_loop();
        }
    };
    println!("ns per failed poll, 8 B rings: shmpipe / ringfire");
    for _ in 0..rounds {
        let a = time(|| shm(true));
        let b = time(|| {
            assert!(rrx.try_recv().is_none());
            std::hint::spin_loop();
        });
        let c = time(|| shm(false));
        let d = time(|| assert!(rrx.try_recv().is_none()));
        println!("with a spin hint {a:6.2} / {b:6.2}   without {c:6.2} / {d:6.2}");
    }
    let _ = std::fs::remove_file(&path);
    Ok(())
}
