//! Format v2, where the record header word is the consumer's signal:
//! stale data of the previous lap must never be taken for a record, a
//! producer that died between its stores is taken over at the true end of
//! the committed records, a consumer killed inside `drain` hands the
//! whole unreleased batch to its replacement, and a batch (`send_batch`)
//! is published whole or not at all.

#![cfg(not(any(loom, miri)))]

#[macro_use]
mod common;

use std::collections::VecDeque;
use std::os::unix::fs::FileExt;
use std::time::Duration;

use common::*;
use shmpipe::{Error, Variant, WaitStrategy};

const HEADER: u64 = 896;
const OFF_TAIL: u64 = 128;
const OFF_HEAD: u64 = 256;

fn hdr(len: u64) -> u64 {
    (1u64 << 32) | len
}

/// Payloads made entirely of valid-looking message headers (of lengths that
/// would fit), so a consumer that read a stale word of the previous lap as
/// a record would deliver a wrong message, or a message where there is none.
fn forged_payload(rng: &mut Rng, max: usize) -> Vec<u8> {
    let len = (rng.below(max as u64 + 1) as usize) & !7;
    let mut v = Vec::with_capacity(len);
    while v.len() < len {
        v.extend_from_slice(&hdr(rng.below(40)).to_le_bytes());
    }
    v
}

/// One `try_recv` checked against the model's queue of sent messages.
fn recv_one_against<V: Variant>(
    rx: &mut shmpipe::Consumer<V>,
    queue: &mut VecDeque<Vec<u8>>,
    buf: &mut Vec<u8>,
    at: &str,
) {
    match rx.try_recv(buf) {
        Ok(_) => {
            let want = queue.pop_front().expect("a message from an empty ring");
            assert_eq!(*buf, want, "{at}");
        }
        Err(Error::Empty) => assert!(queue.is_empty(), "{at}: Empty with {} queued", queue.len()),
        Err(x) => panic!("{at}: recv: {x:?}"),
    }
}

fn stale_lap_payloads_are_never_records<V: Variant>() {
    for cap in [64u64, 128, 256, 1024] {
        for backing in Backing::ALL {
            let b = builder::<V>().capacity(cap);
            let mut e = make_pair(&b, backing).unwrap();
            let max = e.tx.max_message();
            let mut rng = Rng::new(test_seed() ^ cap);
            let mut queue: VecDeque<Vec<u8>> = VecDeque::new();
            let mut buf = Vec::new();
            for step in 0..20_000 {
                if rng.one_in(2) {
                    let m = forged_payload(&mut rng, max.min(64));
                    match e.tx.try_send(&m) {
                        Ok(()) => queue.push_back(m),
                        Err(Error::Full) => assert!(!queue.is_empty(), "Full on an empty ring"),
                        Err(x) => panic!("send at step {step}: {x:?}"),
                    }
                } else {
                    recv_one_against(
                        &mut e.rx,
                        &mut queue,
                        &mut buf,
                        &format!("cap {cap} {backing:?} step {step}"),
                    );
                }
            }
            // Drain the rest through `drain` and `peek`.
            let mut n = 0;
            e.rx.drain(3, |m| {
                assert_eq!(m, queue.pop_front().unwrap());
                n += 1;
            })
            .unwrap();
            while let Ok(m) = e.rx.try_peek() {
                assert_eq!(&*m, queue.pop_front().unwrap().as_slice());
                m.release();
            }
            assert!(queue.is_empty());
        }
    }
}

fn write_at(name: &ShmName, off: u64, bytes: &[u8]) {
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(name.path())
        .unwrap();
    f.write_all_at(bytes, off).unwrap();
}

fn read_u64(name: &ShmName, off: u64) -> u64 {
    let f = std::fs::File::open(name.path()).unwrap();
    let mut b = [0u8; 8];
    f.read_exact_at(&mut b, off).unwrap();
    u64::from_le_bytes(b)
}

/// A producer in a child sends `k` messages and is killed; then the test
/// leaves in the data area what a producer killed mid-record would have
/// left (`craft`), and a new producer takes over by name.
fn takeover_after(craft: impl Fn(&ShmName, u64), extra: Option<&[u8]>, k: u64) {
    let _s = serial();
    let name = ShmName::new("v2take");
    let cap = 4096;
    let b = builder::<shmpipe::LockFree>()
        .capacity(cap)
        .wait(WaitStrategy::Futex)
        .unlink_on_drop(false);
    let mut rx = b.create_consumer(&name).unwrap();
    let n = name.as_str().to_string();
    let child = fork_child(|| {
        let mut tx = builder::<shmpipe::LockFree>()
            .open_producer(&n)
            .map_err(|e| e.to_string())?;
        for i in 0..k {
            tx.send(&i.to_le_bytes()).map_err(|e| e.to_string())?;
        }
        std::thread::sleep(Duration::from_secs(60));
        Ok(())
    });
    let t0 = std::time::Instant::now();
    while rx.stats().messages_sent < k {
        assert!(t0.elapsed() < Duration::from_secs(20), "child did not send");
        std::thread::sleep(Duration::from_millis(1));
    }
    // Receive what the child sent, so the crafted record has room.
    let mut got = Vec::new();
    let mut buf = Vec::new();
    for _ in 0..k {
        rx.recv_timeout(&mut buf, Duration::from_secs(5)).unwrap();
        got.push(buf.clone());
    }
    child.kill();
    let _ = child.wait(Duration::from_secs(10));
    let tail = read_u64(&name, OFF_TAIL);
    craft(&name, tail);
    let mut tx = b.open_producer(&name).unwrap();
    for i in 100..105u64 {
        tx.send(&i.to_le_bytes()).unwrap();
    }
    drop(tx);
    loop {
        match rx.recv_timeout(&mut buf, Duration::from_secs(5)) {
            Ok(_) => got.push(buf.clone()),
            Err(Error::Disconnected) => break,
            Err(e) => panic!("recv: {e:?} after {} messages", got.len()),
        }
    }
    let mut want: Vec<Vec<u8>> = (0..k).map(|i| i.to_le_bytes().to_vec()).collect();
    if let Some(x) = extra {
        want.push(x.to_vec());
    }
    want.extend((100..105u64).map(|i| i.to_le_bytes().to_vec()));
    assert_eq!(got, want);
}

/// Killed after zeroing ahead and writing the payload, before the header:
/// nothing of that record is visible, and the takeover continues at `tail`.
#[test]
fn producer_killed_between_zero_ahead_and_header() {
    takeover_after(
        |name, tail| {
            let off = HEADER + (tail & 4095);
            write_at(name, off + 8, b"unpubl!!"); // payload, no header
            write_at(name, off + 16, &0u64.to_le_bytes()); // zero ahead
        },
        None,
        7,
    );
}

/// Killed after publishing a record's header, before storing `tail`: the
/// `tail` word lags; the new producer must scan to the true end, or it would
/// overwrite a committed message (or the consumer would read it twice).
#[test]
fn producer_takeover_when_tail_lags_the_last_header() {
    takeover_after(
        |name, tail| {
            let off = HEADER + (tail & 4095);
            write_at(name, off + 16, &0u64.to_le_bytes()); // zero ahead
            write_at(name, off + 8, b"late rec");
            write_at(name, off, &hdr(8).to_le_bytes()); // published, tail not moved
        },
        Some(b"late rec"),
        9,
    );
}

/// The same lag across a wrap: the message at offset 0 and the padding
/// record at the old tail were published, `tail` was not moved.
#[test]
fn producer_takeover_when_tail_lags_a_wrap() {
    // 4096-byte ring, 8-byte messages (16-byte records): after 250 of them
    // tail is at 4000, so a 200-byte message needs a wrap.
    takeover_after(
        |name, tail| {
            assert_eq!(tail, 4000);
            let body = [7u8; 200];
            write_at(name, HEADER + 8 + 200, &0u64.to_le_bytes()); // zero ahead
            write_at(name, HEADER + 8, &body);
            write_at(name, HEADER, &hdr(200).to_le_bytes());
            write_at(name, HEADER + 4000, &((2u64 << 32) | 88).to_le_bytes()); // padding
        },
        Some(&[7u8; 200]),
        250,
    );
}

/// Killed in the middle of `drain`: the batch was never released, so the
/// replacement receives it again from its first message, then the rest.
fn consumer_killed_mid_drain<V: Variant>() {
    let _s = serial();
    let name = ShmName::new("v2drain");
    let b = builder::<V>()
        .capacity(8192)
        .wait(WaitStrategy::Futex)
        .unlink_on_drop(false);
    let mut tx = b.create_producer(&name).unwrap();
    for i in 0..20u64 {
        tx.send(&i.to_le_bytes()).unwrap();
    }
    let n = name.as_str().to_string();
    let child = fork_child(|| {
        let mut rx = builder::<V>()
            .open_consumer(&n)
            .map_err(|e| e.to_string())?;
        // First batch: 0..5, released.
        rx.drain(5, |_| {}).map_err(|e| e.to_string())?;
        // Second batch: hang inside it, at its fourth message.
        let mut seen = 0;
        rx.drain(10, |_| {
            seen += 1;
            if seen == 4 {
                std::thread::sleep(Duration::from_secs(60));
            }
        })
        .map_err(|e| e.to_string())?;
        Ok(())
    });
    let t0 = std::time::Instant::now();
    while tx.stats().messages_received < 5 {
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "child never drained"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    std::thread::sleep(Duration::from_millis(50));
    child.kill();
    let _ = child.wait(Duration::from_secs(10));
    assert_eq!(
        read_u64(&name, OFF_HEAD),
        5 * 16,
        "first batch released once"
    );
    let mut rx = b.open_consumer(name.as_str()).unwrap();
    let mut buf = [0u8; 8];
    for want in 5..20u64 {
        rx.recv_into_timeout(&mut buf, Duration::from_secs(5))
            .unwrap();
        assert_eq!(u64::from_le_bytes(buf), want);
    }
    assert!(matches!(rx.try_recv_into(&mut buf), Err(Error::Empty)));
    drop(tx);
}

/// `send_batch` / `try_send_batch` against a model: random batches of
/// forged-header payloads across many wraps, random receives; every message
/// arrives once, in order, whole; `try_send_batch` sends a prefix and says
/// how long; a too-large message ends a batch after the ones before it.
fn batches_match_the_model<V: Variant>() {
    for cap in [128u64, 1024, 4096] {
        for backing in Backing::ALL {
            let b = builder::<V>().capacity(cap);
            let mut e = make_pair(&b, backing).unwrap();
            let max = e.tx.max_message();
            let mut rng = Rng::new(test_seed() ^ cap ^ 0xba7c);
            let mut queue: VecDeque<Vec<u8>> = VecDeque::new();
            let mut buf = Vec::new();
            for step in 0..5_000 {
                if rng.one_in(2) {
                    let k = rng.below(12) as usize;
                    let batch: Vec<Vec<u8>> = (0..k)
                        .map(|_| forged_payload(&mut rng, max.min(40)))
                        .collect();
                    match e.tx.try_send_batch(&batch) {
                        Ok(n) => {
                            assert!(n <= k && (n > 0 || k == 0), "step {step}: sent {n} of {k}");
                            queue.extend(batch.into_iter().take(n));
                        }
                        Err(Error::Full) => assert!(!queue.is_empty(), "Full on an empty ring"),
                        Err(x) => panic!("try_send_batch at step {step}: {x:?}"),
                    }
                } else if rng.one_in(3) {
                    let n =
                        e.rx.drain(rng.below(8) as usize + 1, |m| {
                            let want = queue.pop_front().expect("a message from an empty ring");
                            assert_eq!(m, &want[..], "cap {cap} {backing:?} step {step}");
                        })
                        .unwrap();
                    assert!(
                        n > 0 || queue.is_empty(),
                        "drain found nothing with {} queued",
                        queue.len()
                    );
                } else {
                    recv_one_against(
                        &mut e.rx,
                        &mut queue,
                        &mut buf,
                        &format!("cap {cap} {backing:?} step {step}"),
                    );
                }
            }
            // A too-large message in the middle: the ones before it are sent.
            while e.rx.try_recv(&mut buf).is_ok() {}
            let big = vec![1u8; max + 1];
            let batch: Vec<&[u8]> = vec![b"a", b"b", &big, b"c"];
            assert!(matches!(
                e.tx.send_batch(&batch),
                Err(Error::TooLarge { .. })
            ));
            for want in [&b"a"[..], b"b"] {
                e.rx.try_recv(&mut buf).unwrap();
                assert_eq!(buf, want);
            }
            assert!(matches!(e.rx.try_recv(&mut buf), Err(Error::Empty)));
        }
    }
}

/// A blocking `send_batch` much larger than the ring, read by a thread
/// that is slower at times: it publishes what fits and waits for the rest.
fn batch_larger_than_the_ring<V: Variant>() {
    let (mut tx, mut rx) = builder::<V>()
        .capacity(1024)
        .wait(WaitStrategy::Futex)
        .in_process()
        .unwrap()
        .split()
        .unwrap();
    let t = std::thread::spawn(move || {
        let mut buf = [0u8; 8];
        for want in 0..10_000u64 {
            rx.recv_into_timeout(&mut buf, Duration::from_secs(10))
                .unwrap();
            assert_eq!(u64::from_le_bytes(buf), want);
            if want % 1000 == 0 {
                std::thread::sleep(Duration::from_millis(2));
            }
        }
        assert!(matches!(rx.recv_into(&mut buf), Err(Error::Disconnected)));
    });
    let msgs: Vec<[u8; 8]> = (0..10_000u64).map(|i| i.to_le_bytes()).collect();
    for chunk in msgs.chunks(2_500) {
        tx.send_batch(chunk).unwrap();
    }
    drop(tx);
    t.join().unwrap();
}

/// A producer killed while it streams batches (often in the middle of
/// one): the consumer receives an unbroken prefix of the sequence — a batch
/// is published whole or not at all — and then, from a producer that takes
/// over the role, the new messages, in order.
fn producer_killed_mid_batch<V: Variant>() {
    let _s = serial();
    for round in 0..10u64 {
        let name = ShmName::new("v2batch");
        let b = builder::<V>()
            .capacity(4096)
            .wait(WaitStrategy::Futex)
            .unlink_on_drop(false);
        let mut rx = b.create_consumer(&name).unwrap();
        let n = name.as_str().to_string();
        let child = fork_child(move || {
            let mut tx = builder::<V>()
                .open_producer(&n)
                .map_err(|e| e.to_string())?;
            let mut seq = 0u64;
            loop {
                let k = 1 + (mix64(seq ^ round) % 24);
                let batch: Vec<[u8; 16]> = (seq..seq + k)
                    .map(|i| {
                        let mut m = [0u8; 16];
                        m[..8].copy_from_slice(&i.to_le_bytes());
                        m[8..].copy_from_slice(&mix64(i).to_le_bytes());
                        m
                    })
                    .collect();
                tx.send_batch(&batch).map_err(|e| e.to_string())?;
                seq += k;
            }
        });
        let mut buf = [0u8; 16];
        let mut next = 0u64;
        let kill_at = 2_000 + mix64(round) % 3_000;
        while next < kill_at {
            rx.recv_into_timeout(&mut buf, Duration::from_secs(10))
                .unwrap();
            assert_eq!(
                u64::from_le_bytes(buf[..8].try_into().unwrap()),
                next,
                "round {round}"
            );
            next += 1;
        }
        child.kill();
        let _ = child.wait(Duration::from_secs(10));
        // What the dead producer published: an unbroken, intact prefix.
        loop {
            match rx.recv_into_timeout(&mut buf, Duration::from_secs(5)) {
                Ok(16) => {
                    let seq = u64::from_le_bytes(buf[..8].try_into().unwrap());
                    assert_eq!(seq, next, "round {round}: a gap or a repeat");
                    assert_eq!(u64::from_le_bytes(buf[8..].try_into().unwrap()), mix64(seq));
                    next += 1;
                }
                Err(Error::PeerDied) => break,
                other => panic!("round {round}: {other:?}"),
            }
        }
        let mut tx = b.open_producer(name.as_str()).unwrap();
        tx.send_batch(&[&b"after"[..], b"takeover"]).unwrap();
        let mut v = Vec::new();
        for want in [&b"after"[..], b"takeover"] {
            rx.recv_timeout(&mut v, Duration::from_secs(5)).unwrap();
            assert_eq!(v, want, "round {round}");
        }
        assert!(matches!(rx.try_recv(&mut v), Err(Error::Empty)));
    }
}

variant_tests!(
    stale_lap_payloads_are_never_records,
    consumer_killed_mid_drain,
    batches_match_the_model,
    batch_larger_than_the_ring,
    producer_killed_mid_batch
);
