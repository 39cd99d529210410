//! Model checking of the ring's index protocol and wake-up protocol with
//! loom, on the same ring code as the shared-memory build (`src/sync.rs`
//! swaps in loom's atomics; the header is on the heap via `in_process`).
//!
//! Run: `RUSTFLAGS="--cfg loom" LOOM_MAX_PREEMPTIONS=3 cargo test --release --test loom`
//! (`.ci/loom.sh`). Without `LOOM_MAX_PREEMPTIONS` the tests use 3.
//!
//! What loom sees: every atomic access and the futex stand-in (a loom
//! mutex + condvar with no timeout, `src/wait.rs`), so a lost wake-up is a
//! deadlock that loom reports. The payload bytes are written through raw
//! pointers, which loom does not track; the content checks below catch a
//! consumer that reads a slot before it was published only when the
//! scheduling reaches it. Two loom limitations have stand-ins in
//! `src/sync.rs`: loom treats SeqCst loads/stores as AcqRel, so a
//! `fence(SeqCst)` follows each SeqCst store the protocol orders against a
//! later SeqCst load; and loom lets a plain store slip inside a concurrent
//! RMW (loom issues #254/#389), so the sleeper's stores to `waiting` are
//! swaps under loom. Without the fence after the producer's `tail` store,
//! the Futex send/receive models deadlock (a lost wake-up), as they should. The
//! membarrier "light barrier" path cannot be modelled: under loom the ring
//! always publishes with SeqCst.

#![cfg(loom)]

use shmpipe::{Builder, Error, WaitStrategy};

const DEFAULT_PREEMPTIONS: usize = 3;

fn model(f: impl Fn() + Sync + Send + 'static) {
    let mut b = loom::model::Builder::new();
    if b.preemption_bound.is_none() {
        b.preemption_bound = Some(DEFAULT_PREEMPTIONS);
    }
    b.check(f);
}

/// Content of message `i` of length `n`: distinct per message.
fn payload(i: usize, n: usize) -> Vec<u8> {
    (0..n).map(|k| (i * 31 + k) as u8 ^ 0x5a).collect()
}

/// A producer thread sends `sizes.len()` messages through a 64-byte ring;
/// the main thread receives them in order, then sees `Disconnected`.
fn send_recv(wait: WaitStrategy, sizes: &'static [usize]) {
    model(move || {
        let (mut tx, mut rx) = Builder::new()
            .capacity(64)
            .wait(wait)
            .in_process()
            .expect("in_process")
            .split()
            .expect("split");
        let t = loom::thread::spawn(move || {
            for (i, &n) in sizes.iter().enumerate() {
                tx.send(&payload(i, n)).expect("send");
            }
            // Dropping `tx` closes the producer side and wakes the consumer.
        });
        let mut buf = Vec::new();
        for (i, &n) in sizes.iter().enumerate() {
            let len = rx.recv(&mut buf).expect("recv");
            assert_eq!(len, n, "message {i}: length");
            assert_eq!(buf, payload(i, n), "message {i}: content");
        }
        match rx.recv(&mut buf) {
            Err(Error::Disconnected) => {}
            other => panic!("expected Disconnected after the last message, got {other:?}"),
        }
        t.join().expect("producer thread");
        let s = rx.stats();
        assert_eq!(s.messages_sent, sizes.len() as u64);
        assert_eq!(s.messages_received, sizes.len() as u64);
    });
}

// Records: 8 -> 16 bytes, 24 -> 32 bytes. With [8, 24, 24] the third record
// does not fit before the end of the 64-byte data area (tail offset 48):
// the producer must wait until the first two are consumed (full), then
// writes a padding record and wraps to offset 0.
const WRAP: &[usize] = &[8, 24, 24];

#[test]
fn spin_full_and_wrap() {
    send_recv(WaitStrategy::Spin, WRAP);
}

#[test]
fn spin_yield_full_and_wrap() {
    send_recv(WaitStrategy::SpinYield, WRAP);
}

#[test]
fn futex_full_and_wrap() {
    send_recv(WaitStrategy::Futex, WRAP);
}

/// The `Semaphore` strategy's own counting semaphore (a count word with
/// futex sleeps, format v3): the same model, sleeping and waking through
/// `sem_wait` / `sem_post`.
#[test]
fn semaphore_full_and_wrap() {
    send_recv(WaitStrategy::Semaphore, WRAP);
}

/// Two records of 32 bytes fill the ring exactly (tail - head == capacity).
#[test]
fn futex_exactly_full() {
    send_recv(WaitStrategy::Futex, &[24, 24, 0]);
}

/// The consumer closes while the producer sleeps on a full ring: the
/// producer must be woken and told `Disconnected` (no hang).
#[test]
fn futex_consumer_close_wakes_producer() {
    model(|| {
        let (mut tx, rx) = Builder::new()
            .capacity(64)
            .wait(WaitStrategy::Futex)
            .in_process()
            .expect("in_process")
            .split()
            .expect("split");
        let t = loom::thread::spawn(move || {
            // Two records fill the ring; the third send can only end through
            // the consumer's close. Any send may already see the close.
            for i in 0..3u8 {
                if let Err(e) = tx.send(&[i; 24]) {
                    return (i, e);
                }
            }
            panic!("three 32-byte records fitted in a 64-byte ring nobody reads");
        });
        drop(rx);
        let (sent, e) = t.join().expect("producer thread");
        assert!(sent <= 2);
        assert!(
            matches!(e, Error::Disconnected),
            "expected Disconnected, got {e:?}"
        );
    });
}

/// The multi-ring registration of a `WaitSet` (`shmpipe::loom_wait_any`
/// follows `waitset::round`: register on every ring, re-check every ring,
/// sleep on all `seq` words at once): two Futex rings, a producer thread
/// per ring sending one message each with the ordinary blocking protocol,
/// and one waiter that only ever receives after the set said "ready". Every
/// message arrives; a lost wake-up (e.g. without the SeqCst registration
/// and its fence in `Watch::register`) leaves the waiter asleep with no
/// waker left: a loom deadlock.
#[test]
fn waitset_two_rings_no_lost_wakeup() {
    model(|| {
        let b = Builder::new().capacity(64).wait(WaitStrategy::Futex);
        let (mut tx_a, mut rx_a) = b.in_process().expect("in_process").split().expect("split");
        let (mut tx_b, mut rx_b) = b.in_process().expect("in_process").split().expect("split");
        let ta = loom::thread::spawn(move || {
            tx_a.send(b"a").expect("send a");
            tx_a
        });
        let tb = loom::thread::spawn(move || {
            tx_b.send(b"b").expect("send b");
            tx_b
        });
        let mut got = [false; 2];
        let mut buf = Vec::new();
        while got != [true, true] {
            let ready = shmpipe::loom_wait_any(&mut [&mut rx_a, &mut rx_b]);
            for i in ready {
                let rx = if i == 0 { &mut rx_a } else { &mut rx_b };
                match rx.try_recv(&mut buf) {
                    Ok(_) => {
                        assert_eq!(buf, if i == 0 { b"a" } else { b"b" });
                        assert!(!got[i], "ring {i} delivered twice");
                        got[i] = true;
                    }
                    Err(Error::Empty) => panic!("ring {i} reported ready with nothing to read"),
                    Err(e) => panic!("ring {i}: {e:?}"),
                }
            }
        }
        // Keep the producers alive until both messages are read: a closed
        // producer also wakes the set, which would hide a lost wake-up.
        drop((ta.join().expect("a"), tb.join().expect("b")));
    });
}
