//! Format v2, where the record header word is the consumer's signal:
//! stale data of the previous lap must never be taken for a record, a
//! producer that died between its stores is taken over at the true end of
//! the committed records, and a consumer killed inside `drain` hands the
//! whole unreleased batch to its replacement.

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
                    match e.rx.try_recv(&mut buf) {
                        Ok(_) => {
                            let want = queue.pop_front().expect("a message from an empty ring");
                            assert_eq!(buf, want, "cap {cap} {backing:?} step {step}");
                        }
                        Err(Error::Empty) => {
                            assert!(queue.is_empty(), "Empty with {} queued", queue.len())
                        }
                        Err(x) => panic!("recv at step {step}: {x:?}"),
                    }
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

variant_tests!(
    stale_lap_payloads_are_never_records,
    consumer_killed_mid_drain
);
