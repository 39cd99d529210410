//! Instructions per message, for `valgrind --tool=callgrind` (which counts
//! instructions, not seconds, so the figure is repeatable on a loaded
//! machine). One thread sends BATCH messages of SIZE bytes, then receives
//! them with the chosen method, ROUNDS times.
//!
//! ```text
//! cargo build --release --example instr_loop
//! valgrind --tool=callgrind --callgrind-out-file=/tmp/cg.out \
//!     target/release/examples/instr_loop 64 try_recv_into 100000
//! callgrind_annotate /tmp/cg.out | head -30
//! ```
//! Divide the instructions of `run` by ROUNDS × 16 for a per-message figure
//! (or run twice with different ROUNDS and take the difference).

use shmpipe::{Builder, Error};

const BATCH: usize = 16;

#[inline(never)]
fn run(size: usize, method: &str, rounds: u64) -> Result<u64, Error> {
    let (mut tx, mut rx) = Builder::new().in_process()?.split()?;
    let mut msg = vec![0u8; size];
    let mut buf = vec![0u8; size];
    let mut sum = 0u64;
    for r in 0..rounds {
        for i in 0..BATCH as u64 {
            msg[..8].copy_from_slice(&(r * BATCH as u64 + i).to_le_bytes());
            tx.send(&msg)?;
        }
        match method {
            "try_recv_into" => {
                for _ in 0..BATCH {
                    rx.try_recv_into(&mut buf)?;
                    sum = sum.wrapping_add(buf[0] as u64);
                }
            }
            "recv_with" => {
                for _ in 0..BATCH {
                    sum = sum.wrapping_add(rx.recv_with(|m| m[0] as u64)?);
                }
            }
            "drain" => {
                let n = rx.drain(usize::MAX, |m| sum = sum.wrapping_add(m[0] as u64))?;
                assert_eq!(n, BATCH);
            }
            other => panic!("unknown method {other}: try_recv_into, recv_with or drain"),
        }
    }
    Ok(sum)
}

fn main() -> Result<(), Error> {
    let mut a = std::env::args().skip(1);
    let size: usize = a.next().map_or(64, |s| s.parse().expect("SIZE"));
    let method = a.next().unwrap_or_else(|| "try_recv_into".into());
    let rounds: u64 = a.next().map_or(100_000, |s| s.parse().expect("ROUNDS"));
    let sum = run(size.max(8), &method, rounds)?;
    println!("{size} B {method}: {rounds} rounds of {BATCH} (checksum {sum})");
    Ok(())
}
