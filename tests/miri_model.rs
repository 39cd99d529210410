//! Model tests of the ring on a heap buffer (`Builder::in_process`, the same
//! ring code as on a shared mapping), sized to run under Miri:
//! `cargo +nightly miri test --test miri_model` (`.ci/miri.sh`). They also
//! run, with larger counts, in the normal test suite.

use std::collections::VecDeque;
use std::time::Duration;

use shmpipe::{Builder, Error, Variant, WaitStrategy};

/// Small pseudo-random generator (xorshift64*), so runs are reproducible.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Payload of message `seq`: its number in the first bytes, then a pattern.
fn payload(seq: u64, len: usize) -> Vec<u8> {
    let mut v: Vec<u8> = (0..len)
        .map(|k| (seq as u8).wrapping_mul(31) ^ (k as u8))
        .collect();
    for (d, s) in v.iter_mut().zip(seq.to_le_bytes()) {
        *d = s;
    }
    v
}

/// A fixed pseudo-random sequence of sends, claims (committed, shortened or
/// aborted), receives and drains on a small ring, checked against a queue:
/// order, content, no loss, no duplicate, and `Full` only when the queue
/// holds at least half a ring.
fn model_run<V: Variant>(seed: u64, capacity: u64, steps: usize) {
    let (mut tx, mut rx) = Builder::<V>::default()
        .capacity(capacity)
        .wait(WaitStrategy::Spin)
        .in_process()
        .expect("in_process")
        .split()
        .expect("split");
    let max = tx.max_message();
    let mut rng = Rng(seed);
    let mut q: VecDeque<Vec<u8>> = VecDeque::new();
    let mut seq = 0u64;
    let mut buf = Vec::new();
    let mut wraps = 0u64;
    let mut fulls = 0u64;
    for _ in 0..steps {
        let len = rng.below(max as u64 + 1) as usize;
        match rng.below(7) {
            0 | 1 => {
                let msg = payload(seq, len);
                match tx.try_send(&msg) {
                    Ok(()) => {
                        q.push_back(msg);
                        seq += 1;
                    }
                    Err(Error::Full) => {
                        fulls += 1;
                        // Full means a record of this size cannot be placed:
                        // something must be waiting.
                        assert!(!q.is_empty(), "Full on an empty ring");
                    }
                    Err(e) => panic!("try_send: {e}"),
                }
            }
            2 => {
                let msg = payload(seq, len);
                match tx.try_claim(len) {
                    Ok(mut claim) => {
                        claim.copy_from_slice(&msg);
                        match rng.below(3) {
                            0 => {
                                claim.commit();
                                q.push_back(msg);
                                seq += 1;
                            }
                            1 => {
                                let n = rng.below(len as u64 + 1) as usize;
                                claim.commit_len(n);
                                q.push_back(msg[..n].to_vec());
                                seq += 1;
                            }
                            _ => drop(claim),
                        }
                    }
                    Err(Error::Full) => fulls += 1,
                    Err(e) => panic!("try_claim: {e}"),
                }
            }
            3 | 4 => match rx.try_recv(&mut buf) {
                Ok(n) => {
                    let want = q.pop_front().expect("received a message never sent");
                    assert_eq!(n, want.len());
                    assert_eq!(buf, want, "content or order differs");
                }
                Err(Error::Empty) => assert!(q.is_empty(), "Empty with messages waiting"),
                Err(e) => panic!("try_recv: {e}"),
            },
            5 => {
                let k = rng.below(4) as usize;
                let n = rx
                    .drain(k, |m| {
                        let want = q.pop_front().expect("drained a message never sent");
                        assert_eq!(m, &want[..]);
                    })
                    .expect("drain");
                assert!(n <= k);
            }
            _ => {
                let r = rx.try_recv_with(|m| m.to_vec());
                match r {
                    Ok(m) => assert_eq!(Some(m), q.pop_front()),
                    Err(Error::Empty) => assert!(q.is_empty()),
                    Err(e) => panic!("try_recv_with: {e}"),
                }
            }
        }
        let s = tx.stats();
        wraps = wraps.max(s.bytes_sent / capacity);
    }
    drop(tx);
    loop {
        match rx.try_recv(&mut buf) {
            Ok(_) => assert_eq!(Some(&buf), q.front()),
            Err(Error::Disconnected) => break,
            Err(e) => panic!("final receive: {e}"),
        }
        q.pop_front();
    }
    assert!(q.is_empty(), "{} messages lost", q.len());
    let s = rx.stats();
    assert_eq!(s.messages_sent, seq);
    assert_eq!(s.messages_received, seq);
    // The test is only worth something if the ring wrapped and filled.
    assert!(wraps >= 2, "the ring never wrapped twice ({wraps})");
    assert!(fulls > 0, "the ring was never full");
}

fn steps() -> usize {
    if cfg!(miri) {
        2_000
    } else {
        50_000
    }
}

#[test]
fn model_lock_free_64() {
    model_run::<shmpipe::LockFree>(0x9e37_79b9_7f4a_7c15, 64, steps());
}

#[test]
fn model_lock_free_256() {
    model_run::<shmpipe::LockFree>(12345, 256, steps());
}

#[test]
fn model_locked_64() {
    model_run::<shmpipe::Locked>(777, 64, steps());
}

/// A producer thread sends numbered messages of varying sizes (wrapping the
/// small ring many times, and filling it); the consumer checks each one.
fn threads_run<V: Variant>(wait: WaitStrategy, count: u64) {
    let (mut tx, mut rx) = Builder::<V>::default()
        .capacity(128)
        .wait(wait)
        .in_process()
        .expect("in_process")
        .split()
        .expect("split");
    let max = tx.max_message() as u64;
    let t = std::thread::spawn(move || {
        for i in 0..count {
            let len = ((i * 7) % (max + 1)) as usize;
            if i % 3 == 0 {
                let mut c = tx.claim(len).expect("claim");
                c.copy_from_slice(&payload(i, len));
                c.commit();
            } else {
                tx.send(&payload(i, len)).expect("send");
            }
        }
    });
    let mut buf = Vec::new();
    for i in 0..count {
        let len = ((i * 7) % (max + 1)) as usize;
        if i % 2 == 0 {
            rx.recv(&mut buf).expect("recv");
            assert_eq!(buf, payload(i, len), "message {i}");
        } else {
            rx.recv_with_timeout(Duration::from_secs(60), |m| {
                assert_eq!(m, &payload(i, len)[..], "message {i}")
            })
            .expect("recv_with_timeout");
        }
    }
    t.join().expect("producer thread");
    assert!(matches!(rx.recv(&mut buf), Err(Error::Disconnected)));
}

fn count() -> u64 {
    if cfg!(miri) {
        300
    } else {
        20_000
    }
}

#[test]
fn threads_spin() {
    threads_run::<shmpipe::LockFree>(WaitStrategy::Spin, count());
}

#[test]
fn threads_spin_yield() {
    threads_run::<shmpipe::LockFree>(WaitStrategy::SpinYield, count());
}

#[test]
fn threads_futex() {
    threads_run::<shmpipe::LockFree>(WaitStrategy::Futex, count());
}

#[test]
#[cfg_attr(miri, ignore = "Miri does not support pthread_mutex_timedlock")]
fn threads_locked_futex() {
    threads_run::<shmpipe::Locked>(WaitStrategy::Futex, count());
}
