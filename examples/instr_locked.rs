//! Instructions of the locked variant, for `valgrind --tool=callgrind`:
//! `try_send` ×16, `try_recv_into` ×16, then 16 empty `try_recv_into`s,
//! ROUNDS times, through a named ring. The figure per round of one send,
//! one receive and one empty poll is the difference of two runs divided
//! by 16 × the difference in ROUNDS (as `examples/instr.sh` does):
//!
//! ```text
//! cargo build --release --example instr_locked
//! for r in 1000 6000; do valgrind --tool=callgrind --callgrind-out-file=/tmp/cg.$r \
//!     target/release/examples/instr_locked 8 $r; done
//! ```
//! Built against an older library (the same file, with that version's
//! builder), it shows whether the locked ring's per-message cost moved.
use shmpipe::locked;
fn main() {
    let mut a = std::env::args().skip(1);
    let size: usize = a.next().map_or(8, |s| s.parse().unwrap());
    let rounds: u64 = a.next().map_or(1000, |s| s.parse().unwrap());
    let name = format!("/shmpipe-instr-locked-{}", std::process::id());
    let mut tx = locked::Builder::default().create_producer(&name).unwrap();
    let mut rx = locked::Builder::default().open_consumer(&name).unwrap();
    let mut msg = vec![0u8; size];
    let mut buf = vec![0u8; size];
    let mut bad = 0u64;
    for r in 0..rounds {
        for i in 0..16u64 {
            msg[..8].copy_from_slice(&(r * 16 + i).to_le_bytes());
            tx.try_send(&msg).unwrap();
        }
        for i in 0..16u64 {
            let n = rx.try_recv_into(&mut buf).unwrap();
            bad += u64::from(buf[..8] != (r * 16 + i).to_le_bytes() || n != size);
        }
        for _ in 0..16 {
            bad += u64::from(rx.try_recv_into(&mut buf).is_ok());
        }
    }
    assert_eq!(bad, 0);
}
