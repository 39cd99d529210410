//! The counters without a store per message (format v3): the producer
//! publishes checkpoints when it reloads `head`, and `stats()` / `inspect`
//! add the records after the checkpoint and derive what was received from
//! `head`. They must be exact at rest — across many laps of a small ring,
//! with batches, `drain` and `peek` — and after a producer was killed at a
//! random instruction and a new one took over.

#![cfg(not(any(loom, miri)))]

#[macro_use]
mod common;

use std::time::Duration;

use common::*;
use shmpipe::{Error, Stats, Variant, WaitStrategy};

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Books {
    sent: u64,
    sent_bytes: u64,
    received: u64,
    received_bytes: u64,
}

fn books_of(s: &Stats) -> Books {
    Books {
        sent: s.messages_sent,
        sent_bytes: s.bytes_sent,
        received: s.messages_received,
        received_bytes: s.bytes_received,
    }
}

fn check(name: &ShmName, from_tx: Stats, from_rx: Stats, want: Books, ctx: &str) {
    assert_eq!(books_of(&from_tx), want, "{ctx}: producer's stats()");
    assert_eq!(books_of(&from_rx), want, "{ctx}: consumer's stats()");
    let info = shmpipe::inspect(name.as_str()).unwrap();
    assert_eq!(books_of(&info.stats), want, "{ctx}: inspect");
}

/// A small ring (many laps, wraps and checkpoints), messages of every size
/// up to the maximum, sent one by one and in batches, received one by one,
/// drained and peeked: after every step the counters are exact.
fn exact_at_rest_across_laps<V: Variant>() {
    let _s = serial();
    let name = ShmName::new("counts");
    let b = builder::<V>().capacity(1024).wait(WaitStrategy::Spin);
    let mut tx = b.create_producer(&name).unwrap();
    let mut rx = b.open_consumer(&name).unwrap();
    let max = tx.max_message();
    let mut rng = Rng::new(7);
    let mut want = Books::default();
    let mut pending = std::collections::VecDeque::new();
    let buf = vec![0u8; max];
    for step in 0..3_000 {
        match rng.next_u64() % 5 {
            0 | 1 => {
                let len = if rng.next_u64() % 4 == 0 {
                    (rng.next_u64() % (max as u64 + 1)) as usize
                } else {
                    (rng.next_u64() % 80) as usize
                };
                match tx.try_send(&buf[..len]) {
                    Ok(()) => {
                        want.sent += 1;
                        want.sent_bytes += len as u64;
                        pending.push_back(len as u64);
                    }
                    Err(Error::Full) => {}
                    Err(e) => panic!("step {step}: {e:?}"),
                }
            }
            2 => {
                let lens: Vec<usize> = (0..1 + rng.next_u64() % 6)
                    .map(|_| (rng.next_u64() % 40) as usize)
                    .collect();
                let msgs: Vec<&[u8]> = lens.iter().map(|&l| &buf[..l]).collect();
                match tx.try_send_batch(&msgs) {
                    Ok(n) => {
                        for &l in &lens[..n] {
                            want.sent += 1;
                            want.sent_bytes += l as u64;
                            pending.push_back(l as u64);
                        }
                    }
                    Err(Error::Full) => {}
                    Err(e) => panic!("step {step}: {e:?}"),
                }
            }
            3 => {
                let n = rx.drain((rng.next_u64() % 4) as usize, |_| {}).unwrap();
                for _ in 0..n {
                    want.received += 1;
                    want.received_bytes += pending.pop_front().unwrap();
                }
            }
            _ => {
                let release = rng.next_u64() % 2 == 0;
                match rx.try_peek() {
                    Ok(m) if release => {
                        m.release();
                        want.received += 1;
                        want.received_bytes += pending.pop_front().unwrap();
                    }
                    Ok(m) => drop(m), // not released: still unread
                    Err(Error::Empty) => {}
                    Err(e) => panic!("step {step}: {e:?}"),
                }
            }
        }
        check(&name, tx.stats(), rx.stats(), want, &format!("step {step}"));
    }
    assert!(want.sent > 1_000, "the ring wrapped many times ({want:?})");
}

/// A producer in a child sends messages of varying sizes until it is
/// killed at a random moment; the consumer receives everything it
/// published. With no producer attached, and again after a new producer
/// took over and sent more, the counters match what was received.
fn exact_after_takeover<V: Variant>() {
    let _s = serial();
    for round in 0..8u64 {
        let name = ShmName::new("countk");
        let b = builder::<V>()
            .capacity(2048)
            .wait(WaitStrategy::Futex)
            .unlink_on_drop(false);
        let mut rx = b.create_consumer(&name).unwrap();
        let n = name.as_str().to_string();
        let child = fork_child(move || {
            let mut tx = builder::<V>()
                .open_producer(&n)
                .map_err(|e| e.to_string())?;
            let buf = [7u8; 300];
            for i in 0u64.. {
                let len = (mix64(i ^ round) % 300) as usize;
                if i % 7 == 0 {
                    let two = [&buf[..len], &buf[..len / 2]];
                    tx.send_batch(&two).map_err(|e| e.to_string())?;
                } else {
                    tx.send(&buf[..len]).map_err(|e| e.to_string())?;
                }
            }
            Ok(())
        });
        let mut got = Books::default();
        let mut v = Vec::new();
        let kill_at = 500 + mix64(round) % 2_000;
        while got.received < kill_at {
            let len = rx.recv_timeout(&mut v, Duration::from_secs(10)).unwrap();
            got.received += 1;
            got.received_bytes += len as u64;
        }
        child.kill();
        let _ = child.wait(Duration::from_secs(10));
        loop {
            match rx.recv_timeout(&mut v, Duration::from_secs(5)) {
                Ok(len) => {
                    got.received += 1;
                    got.received_bytes += len as u64;
                }
                Err(Error::PeerDied) => break,
                Err(e) => panic!("round {round}: {e:?}"),
            }
        }
        got.sent = got.received;
        got.sent_bytes = got.received_bytes;
        let ctx = format!("round {round}, dead producer");
        assert_eq!(books_of(&rx.stats()), got, "{ctx}");
        let info = shmpipe::inspect(name.as_str()).unwrap();
        assert_eq!(books_of(&info.stats), got, "{ctx}: inspect");

        let mut tx = b.open_producer(name.as_str()).unwrap();
        check(
            &name,
            tx.stats(),
            rx.stats(),
            got,
            &format!("round {round}, taken over"),
        );
        for len in [0usize, 5, 100] {
            tx.send(&vec![1u8; len]).unwrap();
            got.sent += 1;
            got.sent_bytes += len as u64;
        }
        for _ in 0..3 {
            let len = rx.recv_timeout(&mut v, Duration::from_secs(5)).unwrap();
            got.received += 1;
            got.received_bytes += len as u64;
        }
        check(
            &name,
            tx.stats(),
            rx.stats(),
            got,
            &format!("round {round}, after more"),
        );
        drop(tx);
        drop(rx);
        let _ = std::fs::remove_file(name.path());
    }
}

variant_tests!(exact_at_rest_across_laps, exact_after_takeover);
