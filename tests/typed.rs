//! Typed messages (`shmpipe::typed`) and the consumer iterators
//! (`Consumer::iter`, `Consumer::try_iter`): round trips, size limits, alignment, and what a
//! hostile peer's bytes do to a typed receiver.

mod common;

use std::sync::atomic::{AtomicU64, Ordering::SeqCst};

use bytemuck::{Pod, Zeroable};
use common::{Backing, ShmName};
use proptest::prelude::*;
use serde::{Deserialize, Serialize};
use shmpipe::typed::{Receiver, Sender, SerdeReceiver, SerdeSender};
use shmpipe::{Builder, Error, Locked, Variant};

#[derive(Clone, Copy, Debug, PartialEq, Pod, Zeroable)]
#[repr(C)]
struct Sample {
    seq: u64,
    t: f64,
    xyz: [f32; 3],
    flags: u32,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Event {
    id: u64,
    name: String,
    tags: Vec<String>,
    payload: Vec<u8>,
    score: Option<i32>,
}

fn event() -> impl Strategy<Value = Event> {
    (
        any::<u64>(),
        ".{0,40}",
        proptest::collection::vec("[a-z]{0,8}", 0..6),
        proptest::collection::vec(any::<u8>(), 0..3000),
        any::<Option<i32>>(),
    )
        .prop_map(|(id, name, tags, payload, score)| Event {
            id,
            name,
            tags,
            payload,
            score,
        })
}

const CAP: u64 = 4096;

fn pair<V: Variant>(backing: Backing) -> common::Ends<V> {
    common::make_pair(&Builder::<V>::default().capacity(CAP), backing).unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Pod values arrive bit for bit, by copy and in place, on every
    /// backing, across many wrap positions of the ring.
    #[test]
    fn pod_round_trips(values in proptest::collection::vec(any::<(u64, f64, [f32; 3], u32)>(), 1..200)) {
        for backing in [Backing::InProcess, Backing::Anonymous] {
            let e = pair::<shmpipe::LockFree>(backing);
            let (mut tx, mut rx) = (Sender::<Sample>::new(e.tx), Receiver::<Sample>::new(e.rx));
            for (i, &(seq, t, xyz, flags)) in values.iter().enumerate() {
                let s = Sample { seq, t, xyz, flags };
                if i % 2 == 0 {
                    tx.send(&s).unwrap();
                    let got = rx.recv().unwrap();
                    prop_assert_eq!(bytemuck::bytes_of(&got), bytemuck::bytes_of(&s));
                } else {
                    tx.send_with(|v| *v = s).unwrap();
                    let got = rx.recv_with(|v| *v).unwrap();
                    prop_assert_eq!(bytemuck::bytes_of(&got), bytemuck::bytes_of(&s));
                }
            }
            prop_assert!(matches!(rx.try_recv(), Err(Error::Empty)));
        }
    }

    /// Serde values arrive equal; anything above the ring's maximum is
    /// `TooLarge` with its encoded length, and nothing is sent.
    #[test]
    fn serde_round_trips(events in proptest::collection::vec(event(), 1..40)) {
        // Payloads up to 3000 bytes: some events fit (max 2040), some do not.
        let e = pair::<shmpipe::LockFree>(Backing::InProcess);
        let max = e.tx.max_message();
        let (mut tx, mut rx) = (SerdeSender::new(e.tx), SerdeReceiver::new(e.rx));
        for ev in &events {
            let len = postcard::to_allocvec(ev).unwrap().len();
            match tx.send(ev) {
                Ok(()) => {
                    prop_assert!(len <= max);
                    prop_assert_eq!(&rx.recv::<Event>().unwrap(), ev);
                }
                Err(Error::TooLarge { len: l, max: m }) => {
                    prop_assert!(len > max);
                    prop_assert_eq!((l, m), (len, max));
                    prop_assert!(matches!(rx.try_recv::<Event>(), Err(Error::Empty)));
                }
                Err(e) => prop_assert!(false, "unexpected {e}"),
            }
        }
    }

    /// Arbitrary bytes from the peer decode to a value or give `Decode`,
    /// never a panic; the ring stays usable after each.
    #[test]
    fn undecodable_bytes_are_errors(junk in proptest::collection::vec(any::<u8>(), 0..300)) {
        let e = pair::<shmpipe::LockFree>(Backing::InProcess);
        let (mut raw, rx) = (e.tx, e.rx);
        let mut rx = SerdeReceiver::new(rx);
        raw.send(&junk).unwrap();
        match rx.recv::<Event>() {
            Ok(ev) => prop_assert_eq!(postcard::to_allocvec(&ev).unwrap(), junk),
            Err(Error::Decode { len, .. }) => prop_assert_eq!(len, junk.len()),
            Err(e) => prop_assert!(false, "unexpected {e}"),
        }
        raw.send(&postcard::to_allocvec(&7u64).unwrap()).unwrap();
        prop_assert_eq!(rx.recv::<u64>().unwrap(), 7);
    }
}

#[derive(Clone, Copy, Pod, Zeroable)]
#[repr(C)]
struct Exact([u8; 56]);
#[derive(Clone, Copy, Pod, Zeroable)]
#[repr(C)]
struct OneOver([u8; 57]);

/// The largest Pod value a ring takes is exactly `max_message`; one byte
/// more is `TooLarge` (both variants).
#[test]
fn pod_max_size_and_oversized() {
    fn run<V: Variant>() {
        let b = Builder::<V>::default().capacity(128);
        let (tx, rx) = b.in_process().unwrap().split().unwrap();
        assert_eq!(tx.max_message(), 56);
        let mut tx = Sender::<Exact, V>::new(tx);
        let mut rx = Receiver::<Exact, V>::new(rx);
        tx.send(&Exact([0xab; 56])).unwrap();
        assert_eq!(rx.recv().unwrap().0, [0xab; 56]);
        let mut big = Sender::<OneOver, V>::new(tx.into_inner());
        match big.send(&OneOver([1; 57])) {
            Err(Error::TooLarge { len: 57, max: 56 }) => {}
            other => panic!("expected TooLarge {{ 57, 56 }}, got {other:?}"),
        }
        match big.try_send(&OneOver([1; 57])) {
            Err(Error::TooLarge { len: 57, max: 56 }) => {}
            other => panic!("expected TooLarge, got {other:?}"),
        }
    }
    run::<shmpipe::LockFree>();
    run::<Locked>();
}

/// A serde value whose encoding is exactly the maximum fits; one byte more
/// does not.
#[test]
fn serde_max_size_and_oversized() {
    let (tx, rx) = Builder::new()
        .capacity(4096)
        .in_process()
        .unwrap()
        .split()
        .unwrap();
    let max = tx.max_message(); // 2040
    let (mut tx, mut rx) = (SerdeSender::new(tx), SerdeReceiver::new(rx));
    // A Vec<u8> of n bytes encodes as varint(n) + n: 2 + n for n >= 128.
    let exact = vec![7u8; max - 2];
    tx.send(&exact).unwrap();
    assert_eq!(rx.recv::<Vec<u8>>().unwrap(), exact);
    let over = vec![7u8; max - 1];
    match tx.send(&over) {
        Err(Error::TooLarge { len, max: m }) => assert_eq!((len, m), (max + 1, max)),
        other => panic!("expected TooLarge, got {other:?}"),
    }
}

/// A message of the wrong length for `T` is `Decode` (consumed), by copy and
/// in place; a valid value after it still arrives.
#[test]
fn wrong_length_records_are_decode_errors() {
    let e = pair::<shmpipe::LockFree>(Backing::Anonymous);
    let (mut raw, mut rx) = (e.tx, Receiver::<Sample>::new(e.rx));
    let n = std::mem::size_of::<Sample>();
    for len in [0, 1, n - 1, n + 1, n + 8, 1000] {
        raw.send(&vec![0x5a; len]).unwrap();
        match rx.recv() {
            Err(Error::Decode { len: l, ty, .. }) => {
                assert_eq!(l, len);
                assert!(ty.contains("Sample"), "{ty}");
            }
            other => panic!("len {len}: expected Decode, got {other:?}"),
        }
        raw.send(&vec![0x5a; len]).unwrap();
        let r = rx.recv_with(|s| s.seq);
        assert!(matches!(r, Err(Error::Decode { .. })), "len {len}: {r:?}");
        let msg = format!("{}", r.unwrap_err());
        assert!(msg.contains("could not be decoded"), "{msg}");
    }
    raw.send(bytemuck::bytes_of(&Sample::zeroed())).unwrap();
    assert_eq!(rx.recv().unwrap().seq, 0);
    // Trailing bytes after a valid postcard value are refused too.
    let mut srx = SerdeReceiver::new(rx.into_inner());
    raw.send(&[3, 0xff]).unwrap();
    assert!(matches!(srx.recv::<u8>(), Err(Error::Decode { .. })));
    raw.send(&[3]).unwrap();
    assert_eq!(srx.recv::<u8>().unwrap(), 3);
}

/// Every payload the ring lends is 8-byte aligned, whatever the lengths and
/// the wrap position (what `recv_with(&T)` relies on).
#[test]
fn payloads_are_eight_byte_aligned() {
    for backing in Backing::ALL {
        let e = pair::<shmpipe::LockFree>(backing);
        let (mut tx, mut rx) = (e.tx, e.rx);
        let mut rng = common::Rng::new(common::test_seed());
        for _ in 0..5000 {
            let len = rng.below(300) as usize;
            tx.send(&vec![1; len]).unwrap();
            let addr = rx.recv_with(|m| m.as_ptr() as usize).unwrap();
            assert_eq!(addr % 8, 0, "{backing:?}: payload at {addr:#x}");
        }
    }
}

const OFF_TAIL: usize = 128;

/// A hostile peer's view of the segment `name`: its own shared mapping.
fn map_segment(name: &ShmName) -> memmap2::MmapRaw {
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(name.path())
        .unwrap();
    memmap2::MmapOptions::new().map_raw(&f).unwrap()
}

/// A hostile peer that publishes a misaligned index (so a record would start
/// misaligned) makes a typed receiver report `Corrupted`, never lend a
/// misaligned `&T`.
#[test]
fn misaligned_record_from_a_hostile_peer_is_an_error() {
    let name = ShmName::new("typed-misaligned");
    let tx = Builder::new().capacity(CAP).create_producer(&name).unwrap();
    let mut rx = Receiver::<Sample>::new(Builder::new().open_consumer(&name).unwrap());
    let map = map_segment(&name);
    // SAFETY: OFF_TAIL is 8-aligned and inside the live mapping; the word
    // is an atomic shared with the endpoints.
    let tail = unsafe { &*(map.as_mut_ptr().add(OFF_TAIL) as *const AtomicU64) };
    tail.store(12, SeqCst);
    let r = rx.recv_with(|s| s.seq);
    assert!(matches!(r, Err(Error::Corrupted { .. })), "{r:?}");
    // Sticky: the handle stays refused.
    assert!(matches!(rx.try_recv(), Err(Error::Corrupted { .. })));
    drop(tx);
}

/// Where the data area starts in a segment (`layout.rs`).
const OFF_DATA: usize = 896;

/// A hostile peer's header of exactly `size_of::<T>()` bytes whose record
/// would run past the end of the data area: the typed fast path (which
/// compares the header with a constant) still checks the bounds, so the
/// receiver reports `Corrupted`, by copy and in place, and stays refused.
#[test]
fn exact_length_header_past_the_end_is_corrupted() {
    let name = ShmName::new("typed-past-end");
    let mut tx = Builder::new().capacity(CAP).create_producer(&name).unwrap();
    let mut rx = Receiver::<Sample>::new(Builder::new().open_consumer(&name).unwrap());
    // Move both ends to the last word of the data area: records of 2048
    // and 2040 bytes (8-byte header, payload rounded to 8).
    for len in [2040, 2032] {
        tx.send(&vec![1; len]).unwrap();
        rx.get_mut()
            .recv_with(|m| assert_eq!(m.len(), len))
            .unwrap();
    }
    // Nothing waits yet (were the ends elsewhere, the forged word below
    // would not be read and this test would see `Empty` again).
    assert!(matches!(rx.try_recv(), Err(Error::Empty)));
    let map = map_segment(&name);
    // SAFETY: the last word of the data area is 8-aligned and inside the
    // live mapping; it is an atomic the endpoints share.
    let last = unsafe { &*(map.as_mut_ptr().add(OFF_DATA + CAP as usize - 8) as *const AtomicU64) };
    // A message header (kind 1) for exactly one Sample.
    last.store((1 << 32) | std::mem::size_of::<Sample>() as u64, SeqCst);
    let r = rx.try_recv();
    assert!(matches!(r, Err(Error::Corrupted { .. })), "{r:?}");
    assert!(matches!(rx.recv(), Err(Error::Corrupted { .. })));
    assert!(matches!(
        rx.recv_with(|s| s.seq),
        Err(Error::Corrupted { .. })
    ));
    drop(tx);
}

/// The typed fast path (a header equal to the one of a `T`-sized message)
/// takes every value in order across many wraps, interleaved with padding
/// records and messages of other lengths, which take the full path.
#[test]
fn typed_fast_path_across_wraps_and_other_lengths() {
    let e = pair::<shmpipe::LockFree>(Backing::Anonymous);
    let (mut tx, mut rx) = (e.tx, Receiver::<Sample>::new(e.rx));
    let mut rng = common::Rng::new(common::test_seed());
    for seq in 0..20_000u64 {
        if rng.one_in(5) {
            // Another length: `Decode`, consumed.
            let len = 1 + rng.below(200) as usize;
            let len = if len == std::mem::size_of::<Sample>() {
                len + 1
            } else {
                len
            };
            tx.send(&vec![7; len]).unwrap();
            let r = if seq % 2 == 0 {
                rx.try_recv()
            } else {
                rx.recv()
            };
            assert!(matches!(r, Err(Error::Decode { .. })), "{r:?}");
        }
        let s = Sample {
            seq,
            t: seq as f64,
            xyz: [1.0, 2.0, 3.0],
            flags: seq as u32,
        };
        tx.send(bytemuck::bytes_of(&s)).unwrap();
        let got = match seq % 3 {
            0 => rx.try_recv().unwrap(),
            1 => rx.recv().unwrap(),
            _ => rx.recv_timeout(std::time::Duration::from_secs(5)).unwrap(),
        };
        assert_eq!(got, s);
    }
    assert!(matches!(rx.try_recv(), Err(Error::Empty)));
}

/// `iter()` blocks for each message and ends when the producer closes;
/// `try_iter()` yields what is waiting; both reuse one buffer in the
/// lending form.
#[test]
fn iterators_yield_every_message_then_end() {
    let (mut tx, mut rx) = Builder::new()
        .capacity(CAP)
        .in_process()
        .unwrap()
        .split()
        .unwrap();
    for i in 0..10u8 {
        tx.send(&vec![i; i as usize]).unwrap();
    }
    let got: Vec<Vec<u8>> = rx.try_iter().map(Result::unwrap).collect();
    assert_eq!(got.len(), 10);
    for (i, m) in got.iter().enumerate() {
        assert_eq!(m, &vec![i as u8; i]);
    }
    assert!(rx.try_iter().next().is_none(), "nothing waiting");

    let t = std::thread::spawn(move || {
        for i in 0..1000u32 {
            tx.send(&i.to_le_bytes()).unwrap();
        }
        // dropping tx closes the ring: the iterator ends
    });
    let mut it = rx.iter();
    let mut n = 0u32;
    while let Some(m) = it.next_ref() {
        assert_eq!(m.unwrap(), n.to_le_bytes());
        n += 1;
    }
    assert_eq!(n, 1000);
    t.join().unwrap();
    assert!(rx.iter().next().is_none(), "ended: producer closed");
}
