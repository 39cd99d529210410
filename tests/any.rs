//! The run-time variant: `VariantKind`, `AnyBuilder` (create, open with
//! detection, open-or-create, anonymous, `from_fd`), and every method of
//! `AnyProducer` / `AnyConsumer` / `AnyClaim` / `AnyMessage` / `AnyPair`
//! on both variants.

mod common;

use std::io::{Read, Write};
use std::time::Duration;

use common::ShmName;
use shmpipe::{
    AnyBuilder, AnyConsumer, AnyProducer, EndpointState, Error, PeerStatus, VariantKind,
    WaitStrategy,
};

const SHORT: Duration = Duration::from_millis(20);
const LONG: Duration = Duration::from_secs(10);

fn other(k: VariantKind) -> VariantKind {
    match k {
        VariantKind::LockFree => VariantKind::Locked,
        VariantKind::Locked => VariantKind::LockFree,
    }
}

fn builder(k: VariantKind) -> AnyBuilder {
    AnyBuilder::new(k).capacity(4096).wait(WaitStrategy::Futex)
}

// ---------------------------------------------------------------------------
// VariantKind

#[test]
fn kind_names_parse_and_types() {
    assert_eq!(VariantKind::LockFree.to_string(), "lockfree");
    assert_eq!(VariantKind::Locked.to_string(), "locked");
    for k in VariantKind::ALL {
        assert_eq!(k.name().parse::<VariantKind>(), Ok(k));
    }
    assert_eq!(
        "lock-free".parse::<VariantKind>(),
        Ok(VariantKind::LockFree)
    );
    let e = "mutex".parse::<VariantKind>().unwrap_err();
    let lib: Error = e.into();
    assert!(
        matches!(&lib, Error::InvalidOption { reason } if reason.contains("\"mutex\"") && reason.contains("use lockfree or locked")),
        "{lib:?}"
    );
    assert_eq!(VariantKind::default(), VariantKind::LockFree);
    assert_eq!(
        VariantKind::of::<shmpipe::LockFree>(),
        VariantKind::LockFree
    );
    assert_eq!(VariantKind::of::<shmpipe::Locked>(), VariantKind::Locked);
}

// ---------------------------------------------------------------------------
// Opening

#[test]
fn open_detects_each_variant() {
    for k in VariantKind::ALL {
        let name = ShmName::new("any-detect");
        let mut tx = builder(k).create_producer(&name).unwrap();
        assert_eq!(tx.kind(), k);
        // A builder of the other kind finds the segment's kind.
        let mut rx = builder(other(k)).open_consumer(&name).unwrap();
        assert_eq!(rx.kind(), k, "consumer of a {k} ring");
        assert_eq!(shmpipe::inspect(&name).unwrap().variant, k);
        tx.send(b"detected").unwrap();
        let mut buf = Vec::new();
        rx.recv_timeout(&mut buf, LONG).unwrap();
        assert_eq!(buf, b"detected");
        // And the producer side, on a consumer-created ring.
        let name2 = ShmName::new("any-detect-p");
        let _rx2 = builder(k).create_consumer(&name2).unwrap();
        let tx2 = builder(other(k)).open_producer(&name2).unwrap();
        assert_eq!(tx2.kind(), k, "producer of a {k} ring");
    }
}

#[test]
fn without_detection_the_other_kind_is_wrong_variant_and_attaches_nothing() {
    for k in VariantKind::ALL {
        let name = ShmName::new("any-strict");
        let _tx = builder(k).create_producer(&name).unwrap();
        let strict = builder(other(k)).detect(false);
        let r = strict.open_consumer(&name);
        assert!(
            matches!(&r, Err(Error::WrongVariant { found, expected, .. }) if *found == k && *expected == other(k)),
            "{r:?}"
        );
        let r = strict.open_or_create_consumer(&name).map(|a| a.end);
        assert!(
            matches!(&r, Err(Error::WrongVariant { found, expected, .. }) if *found == k && *expected == other(k)),
            "{r:?}"
        );
        let msg = r.unwrap_err().to_string();
        assert!(
            msg.contains(&format!("created for the {k} ring"))
                && msg.contains(&format!("opened as the {} ring", other(k))),
            "{msg}"
        );
        // Nothing attached: the consumer role is still free and never used.
        let info = shmpipe::inspect(&name).unwrap();
        assert_eq!(info.stats.consumer, EndpointState::Never);
        assert!(!info.consumer_alive);
        let rx = builder(k).detect(false).open_consumer(&name).unwrap();
        assert_eq!(rx.kind(), k);
    }
}

#[test]
fn open_or_create_says_who_created_and_detects() {
    for k in VariantKind::ALL {
        let name = ShmName::new("any-ooc");
        let a = builder(k)
            .unlink_on_drop(false)
            .open_or_create_consumer(&name)
            .unwrap();
        assert!(a.created);
        assert_eq!(a.end.kind(), k);
        let b = builder(other(k)).open_or_create_producer(&name).unwrap();
        assert!(!b.created);
        assert_eq!(b.end.kind(), k);
        let (mut tx, mut rx) = (b.end, a.end);
        tx.send(b"x").unwrap();
        let mut buf = [0u8; 4];
        assert_eq!(rx.recv_into_timeout(&mut buf, LONG).unwrap(), 1);
    }
}

#[test]
fn open_of_a_missing_or_foreign_segment() {
    let name = ShmName::new("any-missing");
    for k in VariantKind::ALL {
        let r = builder(k).open_producer(&name);
        assert!(matches!(r, Err(Error::NotFound { .. })), "{r:?}");
        let r = builder(k).open_consumer(&name);
        assert!(matches!(r, Err(Error::NotFound { .. })), "{r:?}");
    }
    // A file of the right size class that is not a shmpipe segment.
    let foreign = ShmName::new("any-foreign");
    {
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(foreign.path())
            .unwrap();
        f.write_all(&[0x5a; 8192]).unwrap();
    }
    for k in VariantKind::ALL {
        let r = builder(k).open_consumer(&foreign).map(drop);
        assert!(matches!(r, Err(Error::NotShmpipe { .. })), "{r:?}");
        let r = builder(k).open_or_create_producer(&foreign).map(drop);
        assert!(matches!(r, Err(Error::NotShmpipe { .. })), "{r:?}");
    }
    // Invalid names are refused before anything is tried.
    let r = AnyBuilder::default().open_producer("no-slash");
    assert!(matches!(r, Err(Error::InvalidName { .. })), "{r:?}");
}

#[test]
fn anonymous_from_fd_detects_and_split_works() {
    for k in VariantKind::ALL {
        let pair = builder(k).anonymous().unwrap();
        assert_eq!(pair.kind(), k);
        let fd = pair.try_clone_fd().unwrap();
        let again = builder(other(k)).from_fd(fd).unwrap();
        assert_eq!(again.kind(), k);
        let fd = pair.try_clone_fd().unwrap();
        let r = builder(other(k)).detect(false).from_fd(fd);
        assert!(
            matches!(&r, Err(Error::WrongVariant { found, .. }) if *found == k),
            "{r:?}"
        );
        let mut tx = pair.into_producer().unwrap();
        let mut rx = again.into_consumer().unwrap();
        tx.send(b"through the fd").unwrap();
        let mut buf = Vec::new();
        rx.recv_timeout(&mut buf, LONG).unwrap();
        assert_eq!(buf, b"through the fd");

        let (tx, rx) = builder(k).in_process().unwrap().split().unwrap();
        assert_eq!((tx.kind(), rx.kind()), (k, k));
    }
}

// ---------------------------------------------------------------------------
// Every method, on both variants

fn in_process(k: VariantKind) -> (AnyProducer, AnyConsumer) {
    builder(k).in_process().unwrap().split().unwrap()
}

#[test]
fn producer_and_consumer_methods() {
    for k in VariantKind::ALL {
        let ctx = k.to_string();
        let (mut tx, mut rx) = in_process(k);
        assert_eq!(tx.capacity(), 4096, "{ctx}");
        assert_eq!(rx.capacity(), 4096, "{ctx}");
        assert_eq!(tx.max_message(), shmpipe::max_message_for(4096), "{ctx}");
        assert_eq!(rx.max_message(), shmpipe::max_message_for(4096), "{ctx}");
        assert_eq!(tx.wait_strategy(), WaitStrategy::Futex, "{ctx}");
        assert_eq!(rx.wait_strategy(), WaitStrategy::Futex, "{ctx}");
        assert!(tx.is_empty() && rx.is_empty(), "{ctx}");
        assert_eq!(tx.peer_status().unwrap(), PeerStatus::Alive, "{ctx}");
        assert_eq!(rx.peer_status().unwrap(), PeerStatus::Alive, "{ctx}");
        assert!(tx.is_peer_alive() && rx.is_peer_alive(), "{ctx}");

        // Empty ring.
        let mut v = Vec::new();
        let mut buf = [0u8; 64];
        assert!(matches!(rx.try_recv(&mut v), Err(Error::Empty)), "{ctx}");
        assert!(matches!(rx.try_recv_into(&mut buf), Err(Error::Empty)));
        assert!(matches!(rx.try_recv_with(|m| m.len()), Err(Error::Empty)));
        assert!(matches!(rx.try_peek(), Err(Error::Empty)));
        assert!(matches!(
            rx.recv_timeout(&mut v, SHORT),
            Err(Error::Timeout)
        ));
        assert!(matches!(
            rx.recv_into_timeout(&mut buf, SHORT),
            Err(Error::Timeout)
        ));
        assert!(matches!(
            rx.recv_with_timeout(SHORT, |m| m.len()),
            Err(Error::Timeout)
        ));
        assert!(matches!(rx.peek_timeout(SHORT), Err(Error::Timeout)));
        assert_eq!(rx.drain(10, |_| {}).unwrap(), 0, "{ctx}");

        // One message per sending method, each received by another method.
        tx.try_send(b"a1").unwrap();
        tx.send(b"b22").unwrap();
        tx.send_timeout(b"c333", SHORT).unwrap();
        tx.send_batch(&[b"d1".as_slice(), b"d2"]).unwrap();
        assert_eq!(tx.try_send_batch(&[b"e1", b"e2"]).unwrap(), 2, "{ctx}");
        let mut c = tx.try_claim(8).unwrap();
        assert_eq!(c.kind(), k);
        assert_eq!(c.len(), 8);
        c.copy_from_slice(b"f-claim!");
        assert!(format!("{c:?}").contains("len: 8"), "{c:?}");
        c.commit();
        let mut c = tx.claim(8).unwrap();
        c[..3].copy_from_slice(b"g-c");
        c.commit_len(3);
        let c = tx.claim_timeout(8, SHORT).unwrap();
        drop(c); // aborted: nothing sent
        assert_eq!(tx.write(b"h-io").unwrap(), 4);
        tx.flush().unwrap();
        assert!(!tx.is_empty() && rx.len_bytes() == tx.len_bytes(), "{ctx}");
        assert_eq!(tx.stats().messages_sent, 10, "{ctx}");

        assert_eq!(rx.try_recv(&mut v).unwrap(), 2);
        assert_eq!(v, b"a1");
        assert_eq!(rx.recv(&mut v).unwrap(), 3);
        assert_eq!(v, b"b22");
        assert_eq!(rx.recv_into(&mut buf).unwrap(), 4);
        assert_eq!(&buf[..4], b"c333");
        assert_eq!(rx.try_recv_into(&mut buf).unwrap(), 2);
        assert_eq!(&buf[..2], b"d1");
        assert_eq!(rx.recv_with(|m| m.to_vec()).unwrap(), b"d2");
        assert_eq!(rx.try_recv_with(|m| m.to_vec()).unwrap(), b"e1");
        assert_eq!(rx.recv_with_timeout(LONG, |m| m.to_vec()).unwrap(), b"e2");
        {
            let m = rx.try_peek().unwrap();
            assert_eq!(m.kind(), k);
            assert_eq!(&*m, b"f-claim!");
            assert!(format!("{m:?}").contains("Message"), "{m:?}");
            // Dropped unreleased: it stays.
        }
        let m = rx.peek().unwrap();
        assert_eq!(&*m, b"f-claim!", "{ctx}: kept after an unreleased peek");
        m.release();
        let m = rx.peek_timeout(LONG).unwrap();
        assert_eq!(&*m, b"g-c");
        m.release();
        let n = rx.read(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"h-io");
        assert!(rx.is_empty(), "{ctx}");
        assert_eq!(rx.stats().messages_received, 10, "{ctx}");

        // drain hands over what waits, up to max.
        tx.send(b"x").unwrap();
        tx.send(b"yy").unwrap();
        tx.send(b"zzz").unwrap();
        let mut got = Vec::new();
        assert_eq!(rx.drain(2, |m| got.push(m.to_vec())).unwrap(), 2);
        assert_eq!(got, [b"x".to_vec(), b"yy".to_vec()]);
        assert_eq!(rx.recv_timeout(&mut v, LONG).unwrap(), 3);

        // Too large and too small keep the generic errors.
        let r = tx.try_send(&vec![0; tx.max_message() + 1]);
        assert!(matches!(r, Err(Error::TooLarge { .. })), "{ctx}: {r:?}");
        tx.send(b"0123456789").unwrap();
        let r = rx.try_recv_into(&mut buf[..4]);
        assert!(
            matches!(r, Err(Error::BufferTooSmall { len: 10, .. })),
            "{ctx}: {r:?}"
        );
        assert_eq!(rx.try_recv_into(&mut buf).unwrap(), 10);

        // Closing: the consumer sees the end, then the producer sees it gone.
        tx.send(b"last").unwrap();
        tx.close().unwrap();
        assert_eq!(rx.recv(&mut v).unwrap(), 4);
        assert!(matches!(rx.recv(&mut v), Err(Error::Disconnected)), "{ctx}");
        assert_eq!(rx.peer_status().unwrap(), PeerStatus::Closed);
        assert!(!rx.is_peer_alive());
        rx.close().unwrap();

        let (mut tx, rx) = in_process(k);
        rx.close().unwrap();
        assert!(
            matches!(tx.try_send(b"x"), Err(Error::Disconnected)),
            "{ctx}"
        );
        assert!(matches!(tx.try_claim(1), Err(Error::Disconnected)), "{ctx}");
        assert_eq!(tx.peer_status().unwrap(), PeerStatus::Closed);
    }
}

#[test]
fn full_ring_and_wait_set() {
    for k in VariantKind::ALL {
        let ctx = k.to_string();
        let (mut tx, mut rx) = in_process(k);
        let big = vec![7u8; tx.max_message()];
        tx.try_send(&big).unwrap();
        // The ring holds at most two of the largest messages.
        while tx.try_send(&big).is_ok() {}
        assert!(matches!(tx.try_send(&big), Err(Error::Full)), "{ctx}");
        assert!(matches!(tx.try_claim(big.len()), Err(Error::Full)));
        assert!(matches!(tx.send_timeout(&big, SHORT), Err(Error::Timeout)));
        assert!(matches!(
            tx.claim_timeout(big.len(), SHORT),
            Err(Error::Timeout)
        ));
        assert!(tx.stats().full_waits > 0, "{ctx}");

        let mut set = shmpipe::WaitSet::new().unwrap();
        let t_rx = rx.add_to(&mut set).unwrap();
        let t_tx = tx.add_to(&mut set, big.len()).unwrap();
        let mut ev = shmpipe::Events::new();
        set.wait(&mut ev, Some(LONG)).unwrap();
        assert!(ev.contains(t_rx) && !ev.contains(t_tx), "{ctx}");
        let mut v = Vec::new();
        while rx.try_recv(&mut v).is_ok() {}
        set.wait(&mut ev, Some(LONG)).unwrap();
        assert!(ev.contains(t_tx) && !ev.contains(t_rx), "{ctx}");
    }
}

#[test]
fn from_generic_endpoints() {
    let (p, c) = shmpipe::Builder::new()
        .capacity(4096)
        .in_process()
        .unwrap()
        .split()
        .unwrap();
    let (mut p, mut c) = (AnyProducer::from(p), AnyConsumer::from(c));
    assert_eq!(
        (p.kind(), c.kind()),
        (VariantKind::LockFree, VariantKind::LockFree)
    );
    p.send(b"1").unwrap();
    let (lp, lc) = shmpipe::locked::Builder::default()
        .capacity(4096)
        .in_process()
        .unwrap()
        .split()
        .unwrap();
    let (lp, lc) = (AnyProducer::from(lp), AnyConsumer::from(lc));
    assert_eq!(
        (lp.kind(), lc.kind()),
        (VariantKind::Locked, VariantKind::Locked)
    );
    assert_eq!(c.recv_into(&mut [0u8; 4]).unwrap(), 1);
    assert!(format!("{p:?} {lc:?}").contains("Producer"));
}
