//! Issue-13 faults: the locked ring's own lock word scribbled under traffic,
//! and state words that lie while the kernel's role locks say otherwise.
//! Every outcome must be a correct message, an error (`Corrupted`,
//! `LockNotRecoverable`, `Timeout`, `PeerDied`), never a signal or a wait
//! past its deadline.

#![cfg(not(any(loom, miri)))]

mod common;

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::SeqCst};
use std::time::{Duration, Instant};

use common::*;
use shmpipe::{Error, Locked, WaitStrategy};

const OFF_HEAD: usize = 256;
const OFF_PSTATE: usize = 384;
const OFF_LOCK: usize = 768;

/// A raw shared mapping of a segment, as a hostile peer would have.
struct Raw(memmap2::MmapRaw);

impl Raw {
    fn open(name: &ShmName) -> Raw {
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(name.path())
            .unwrap();
        Raw(memmap2::MmapOptions::new().map_raw(&f).unwrap())
    }
    fn w32(&self, off: usize) -> &AtomicU32 {
        assert!(off % 4 == 0 && off + 4 <= self.0.len());
        // SAFETY: in bounds and aligned; accessed only atomically.
        unsafe { &*(self.0.as_mut_ptr().add(off) as *const AtomicU32) }
    }
    fn w64(&self, off: usize) -> &AtomicU64 {
        assert!(off % 8 == 0 && off + 8 <= self.0.len());
        // SAFETY: as above.
        unsafe { &*(self.0.as_mut_ptr().add(off) as *const AtomicU64) }
    }
}

/// Values a scribbler writes into the lock word: every state, foreign owner
/// words, extremes and random values.
fn lock_values(rng: &mut Rng, current: u32) -> u32 {
    match rng.below(10) {
        0 => 0,
        1 => 1,
        2 => 2,
        3 => 0x101,
        4 => 0xff,
        5 => u32::MAX,
        6 => current, // what is there (a live holder's word)
        7 => (current & 0xffff) | ((rng.below(0x10000) as u32) << 16), // other epoch
        8 => 1 | (1 << 16) | 0x100,
        _ => rng.next_u64() as u32,
    }
}

/// A forked producer streams numbered messages through a locked ring while
/// this process receives with timeouts and a thread scribbles on the lock
/// word. Everything received is in order; the run ends in `Disconnected`
/// (the producer finished), or a sticky `Corrupted` / `LockNotRecoverable`
/// after which every call fails the same way.
#[test]
fn lock_word_scribbled_under_traffic() {
    let _s = serial();
    let mut tally = std::collections::BTreeMap::<String, u32>::new();
    for round in 0..12u64 {
        for wait in [WaitStrategy::Futex, WaitStrategy::Spin] {
            let name = ShmName::new("lockword");
            let b = shmpipe::locked::Builder::default()
                .capacity(4096)
                .wait(wait)
                .unlink_on_drop(false);
            let mut rx = b.create_consumer(&name).unwrap();
            let n = name.as_str().to_string();
            let child = fork_child(|| {
                let mut tx = shmpipe::locked::Builder::default()
                    .open_producer(&n)
                    .map_err(|e| e.to_string())?;
                for i in 0..20_000u64 {
                    match tx.send_timeout(&i.to_le_bytes(), Duration::from_secs(2)) {
                        Ok(()) => {}
                        // The scribbler may break the ring: stop quietly.
                        Err(_) => return Ok(()),
                    }
                }
                Ok(())
            });
            let wd = child.watchdog(Duration::from_secs(60), "lock word scribble");
            let raw = Raw::open(&name);
            let stop = std::sync::atomic::AtomicBool::new(false);
            let outcome = std::thread::scope(|s| {
                s.spawn(|| {
                    let mut rng = Rng::new(test_seed() ^ round);
                    while !stop.load(SeqCst) {
                        let w = raw.w32(OFF_LOCK);
                        let v = lock_values(&mut rng, w.load(SeqCst));
                        w.store(v, SeqCst);
                        std::thread::sleep(Duration::from_micros(200 + rng.below(2000)));
                    }
                });
                let mut next = 0u64;
                let mut buf = [0u8; 8];
                let end = loop {
                    let t0 = Instant::now();
                    let r = rx.recv_into_timeout(&mut buf, Duration::from_millis(500));
                    assert!(
                        t0.elapsed() < Duration::from_secs(5),
                        "recv waited {:?} past its 500 ms deadline",
                        t0.elapsed()
                    );
                    match r {
                        Ok(8) => {
                            assert_eq!(u64::from_le_bytes(buf), next, "order");
                            next += 1;
                        }
                        Ok(n) => panic!("message of {n} bytes"),
                        Err(Error::Timeout) => {}
                        Err(e) => break e,
                    }
                };
                stop.store(true, SeqCst);
                end
            });
            let key = match &outcome {
                Error::Disconnected | Error::PeerDied => "ended",
                Error::Corrupted { .. } => "corrupted",
                Error::LockNotRecoverable => "not-recoverable",
                other => panic!("unexpected outcome {other:?}"),
            };
            if key != "ended" {
                // Sticky: the next call fails the same way, at once.
                let again = rx.try_recv_into(&mut [0u8; 8]).unwrap_err();
                assert_eq!(
                    std::mem::discriminant(&again),
                    std::mem::discriminant(&outcome),
                    "{again:?} after {outcome:?}"
                );
            }
            drop(rx);
            child.kill();
            child.wait(Duration::from_secs(10)).ok();
            assert!(!wd.fired(), "watchdog fired");
            *tally.entry(key.to_string()).or_default() += 1;
        }
    }
    eprintln!("lock word scribbled under traffic: {tally:?}");
}

/// A lie "the live producer holds the lock" while it is idle: a waiting
/// consumer times out at its deadline (it does not hang), and the producer's
/// next operation, finding its own role named in a word it does not hold,
/// repairs the lock.
#[test]
fn forged_holder_word_is_bounded_and_repaired() {
    let name = ShmName::new("forged");
    let b = shmpipe::locked::Builder::default().capacity(4096);
    let mut tx = b.create_producer(&name).unwrap();
    let mut rx = b.open_consumer(&name).unwrap();
    tx.send(b"one").unwrap();
    let raw = Raw::open(&name);
    let producer_epoch = raw.w32(408).load(SeqCst); // endpoints.producer_epoch
    raw.w32(OFF_LOCK)
        .store(1 | ((producer_epoch & 0xffff) << 16), SeqCst);
    let t0 = Instant::now();
    let r = rx.recv_timeout(&mut Vec::new(), Duration::from_millis(100));
    assert!(matches!(r, Err(Error::Timeout)), "{r:?}");
    assert!(t0.elapsed() < Duration::from_secs(3));
    tx.send(b"two").unwrap(); // repairs
    assert!(tx.stats().lock_repairs >= 1);
    let mut buf = Vec::new();
    rx.recv(&mut buf).unwrap();
    assert_eq!(buf, b"one");
    rx.recv(&mut buf).unwrap();
    assert_eq!(buf, b"two");
    // An invalid word is Corrupted, at once.
    raw.w32(OFF_LOCK).store(0x0042_0007, SeqCst);
    assert!(matches!(tx.try_send(b"x"), Err(Error::Corrupted { .. })));
}

/// A producer that stores NEVER into its own state word and then dies: the
/// consumer, which saw it attached, reports PeerDied (it used to wait forever).
#[test]
fn never_word_then_death_is_peer_died() {
    let _s = serial();
    for locked in [false, true] {
        let name = ShmName::new("neverdie");
        let n = name.as_str().to_string();
        let mut rx = if locked {
            None
        } else {
            Some(
                shmpipe::Builder::new()
                    .wait(WaitStrategy::Futex)
                    .unlink_on_drop(false)
                    .create_consumer(&name)
                    .unwrap(),
            )
        };
        let mut lrx = if locked {
            Some(
                shmpipe::locked::Builder::default()
                    .wait(WaitStrategy::Futex)
                    .unlink_on_drop(false)
                    .create_consumer(&name)
                    .unwrap(),
            )
        } else {
            None
        };
        let child = fork_child(|| {
            if locked {
                let mut tx = shmpipe::locked::Builder::default()
                    .open_producer(&n)
                    .map_err(|e| e.to_string())?;
                tx.send(b"m").map_err(|e| e.to_string())?;
                std::thread::sleep(Duration::from_secs(60));
            } else {
                let mut tx = shmpipe::Builder::new()
                    .open_producer(&n)
                    .map_err(|e| e.to_string())?;
                tx.send(b"m").map_err(|e| e.to_string())?;
                std::thread::sleep(Duration::from_secs(60));
            }
            Ok(())
        });
        let mut buf = Vec::new();
        let mut got = |buf: &mut Vec<u8>| match (&mut rx, &mut lrx) {
            (Some(r), _) => r.recv_timeout(buf, Duration::from_secs(10)),
            (_, Some(r)) => r.recv_timeout(buf, Duration::from_secs(10)),
            _ => unreachable!(),
        };
        assert_eq!(got(&mut buf).unwrap(), 1);
        let raw = Raw::open(&name);
        raw.w32(OFF_PSTATE).store(0, SeqCst); // the lie: NEVER
        child.kill();
        let _ = child.wait(Duration::from_secs(10));
        let t0 = Instant::now();
        let r = got(&mut buf);
        assert!(matches!(r, Err(Error::PeerDied)), "locked={locked}: {r:?}");
        assert!(t0.elapsed() < Duration::from_secs(5));
    }
}

/// CLOSED stored by someone else while the producer is alive: not end of
/// stream but Corrupted, after a short grace.
#[test]
fn closed_word_while_alive_is_corrupted() {
    let name = ShmName::new("closedlie");
    let b = shmpipe::Builder::new().wait(WaitStrategy::Futex);
    let mut tx = b.create_producer(&name).unwrap();
    let mut rx = b.open_consumer(&name).unwrap();
    tx.send(b"a").unwrap();
    let raw = Raw::open(&name);
    raw.w32(OFF_PSTATE).store(2, SeqCst); // CLOSED, but tx is alive
    let mut buf = Vec::new();
    assert_eq!(rx.recv(&mut buf).unwrap(), 1, "committed data first");
    let r = rx.recv_timeout(&mut buf, Duration::from_secs(5));
    assert!(matches!(r, Err(Error::Corrupted { .. })), "{r:?}");
    drop(tx);
}

/// Locked ring, both sides idle: a lie in `head` makes the consumer fail
/// with Corrupted within its wait (it used to hang both sides), and a lie in
/// `tail` does the same for the producer.
#[test]
fn locked_index_lies_are_found_by_their_owner() {
    let name = ShmName::new("idxlie");
    let b = shmpipe::locked::Builder::default()
        .capacity(4096)
        .wait(WaitStrategy::Futex);
    let mut tx: shmpipe::Producer<Locked> = b.create_producer(&name).unwrap();
    let mut rx = b.open_consumer(&name).unwrap();
    for _ in 0..10 {
        tx.send(&[1u8; 100]).unwrap();
    }
    let mut buf = Vec::new();
    for _ in 0..10 {
        rx.recv(&mut buf).unwrap();
    }
    let raw = Raw::open(&name);
    raw.w64(OFF_HEAD).store(16, SeqCst); // back in time: looks like data / full
    let t0 = Instant::now();
    let r = rx.recv_timeout(&mut buf, Duration::from_secs(5));
    assert!(matches!(r, Err(Error::Corrupted { .. })), "{r:?}");
    assert!(t0.elapsed() < Duration::from_secs(2));
    raw.w64(128).store(0, SeqCst); // tail
    let r = tx.send_timeout(b"x", Duration::from_secs(5));
    assert!(matches!(r, Err(Error::Corrupted { .. })), "{r:?}");
}
