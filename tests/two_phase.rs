//! The two-phase receive (`peek` / `Message::release`), `recv_into`,
//! `peer_status`, explicit `close` and `NotFound`, on both variants and every
//! backing; and the crash semantics of a consumer killed while holding a
//! peeked message.

#![cfg(not(any(loom, miri)))]

#[macro_use]
mod common;

use std::time::Duration;

use common::*;
use shmpipe::{Error, PeerStatus, Variant, WaitStrategy};

fn peek_release_and_keep<V: Variant>() {
    for backing in Backing::ALL {
        let mut e = make_pair(&builder::<V>().capacity(4096), backing).unwrap();
        assert!(matches!(e.rx.try_peek(), Err(Error::Empty)));
        for i in 0..3u8 {
            e.tx.send(&[i; 10]).unwrap();
        }
        // Dropping a peeked message keeps it: the same one comes back.
        for _ in 0..3 {
            let m = e.rx.try_peek().unwrap();
            assert_eq!(&*m, &[0u8; 10]);
        }
        e.rx.try_peek().unwrap().release();
        // Receive calls see the kept message too.
        let mut buf = Vec::new();
        assert_eq!(e.rx.try_recv(&mut buf).unwrap(), 10);
        assert_eq!(buf, [1u8; 10]);
        let m = e.rx.peek_timeout(Duration::from_secs(5)).unwrap();
        assert_eq!(&*m, &[2u8; 10]);
        m.release();
        assert!(matches!(e.rx.try_peek(), Err(Error::Empty)));
        assert!(matches!(
            e.rx.peek_timeout(Duration::from_millis(30)),
            Err(Error::Timeout)
        ));
        // Released space is reusable: fill and drain the ring through peek
        // several times over (wraps included).
        let mut sent = 0u64;
        let mut got = 0u64;
        while got < 2000 {
            while e.tx.try_send(&sent.to_le_bytes()).is_ok() {
                sent += 1;
            }
            let m = e.rx.peek().unwrap();
            assert_eq!(u64::from_le_bytes((*m).try_into().unwrap()), got);
            m.release();
            got += 1;
        }
        let s = e.rx.stats();
        assert_eq!(s.messages_received, got + 3);
        // Close the producer: a kept message is still delivered, then Disconnected.
        drop(e.tx);
        let mut n = got;
        while let Ok(m) = e.rx.try_peek() {
            assert_eq!(u64::from_le_bytes((*m).try_into().unwrap()), n);
            m.release();
            n += 1;
        }
        assert_eq!(n, sent);
        assert!(matches!(e.rx.try_peek(), Err(Error::Disconnected)));
        assert!(matches!(e.rx.peek(), Err(Error::Disconnected)));
    }
}

fn recv_into_keeps_a_message_that_does_not_fit<V: Variant>() {
    for backing in Backing::ALL {
        let mut e = make_pair(&builder::<V>().capacity(4096), backing).unwrap();
        e.tx.send(b"0123456789").unwrap();
        e.tx.send(b"").unwrap();
        let mut small = [0u8; 9];
        for _ in 0..2 {
            match e.rx.try_recv_into(&mut small) {
                Err(Error::BufferTooSmall { len, buf_len }) => {
                    assert_eq!((len, buf_len), (10, 9))
                }
                other => panic!("expected BufferTooSmall, got {other:?}"),
            }
        }
        let err = e.rx.recv_into(&mut small).unwrap_err();
        assert!(err.to_string().contains("at least 10 bytes"), "{err}");
        let mut buf = [0xAAu8; 16];
        assert_eq!(e.rx.recv_into(&mut buf).unwrap(), 10);
        assert_eq!(&buf[..10], b"0123456789");
        assert_eq!(buf[10], 0xAA, "nothing written past the message");
        assert_eq!(e.rx.recv_into(&mut small[..0]).unwrap(), 0); // empty message fits
        assert!(matches!(e.rx.try_recv_into(&mut buf), Err(Error::Empty)));
        assert!(matches!(
            e.rx.recv_into_timeout(&mut buf, Duration::from_millis(20)),
            Err(Error::Timeout)
        ));
    }
}

fn status_and_explicit_close<V: Variant>() {
    let name = ShmName::new("close");
    let b = builder::<V>().capacity(4096);
    let tx = b.create_producer(&name).unwrap();
    assert_eq!(tx.peer_status().unwrap(), PeerStatus::NotAttached);
    assert!(!tx.is_peer_alive());
    let mut rx = b.open_consumer(&name).unwrap();
    assert_eq!(tx.peer_status().unwrap(), PeerStatus::Alive);
    assert_eq!(rx.peer_status().unwrap(), PeerStatus::Alive);
    assert!(rx.is_peer_alive() && tx.is_peer_alive());
    let mut tx = tx;
    tx.send(b"last").unwrap();
    tx.close().unwrap();
    // The creator removed the name in close(); the consumer still drains.
    assert!(!name.exists(), "close() of the creator removes the name");
    assert_eq!(rx.peer_status().unwrap(), PeerStatus::Closed);
    let mut buf = Vec::new();
    rx.recv(&mut buf).unwrap();
    assert_eq!(buf, b"last");
    assert!(matches!(rx.recv(&mut buf), Err(Error::Disconnected)));
    rx.close().unwrap();
}

fn not_found_names_the_segment<V: Variant>() {
    let name = unique_name("missing");
    let err = builder::<V>().open_consumer(&name).unwrap_err();
    match &err {
        Error::NotFound { name: n } => assert_eq!(n, &name),
        other => panic!("expected NotFound, got {other:?}"),
    }
    assert!(err.to_string().contains(&name), "{err}");
    let io: std::io::Error = err.into();
    assert_eq!(io.kind(), std::io::ErrorKind::NotFound);
}

/// A consumer killed while it holds a peeked message (the locked variant's
/// mutex is free meanwhile): the producer keeps going and the replacement
/// consumer receives the unreleased message first, exactly once.
fn killed_while_holding_a_peeked_message<V: Variant>() {
    let _s = serial();
    let name = ShmName::new("peekkill");
    let b = builder::<V>()
        .capacity(4096)
        .wait(WaitStrategy::Futex)
        .unlink_on_drop(false);
    let mut tx = b.create_producer(&name).unwrap();
    for i in 0..5u64 {
        tx.send(&i.to_le_bytes()).unwrap();
    }
    let n = name.as_str().to_string();
    let child = fork_child(|| {
        let b = builder::<V>().unlink_on_drop(false);
        let mut rx = b.open_consumer(&n).map_err(|e| e.to_string())?;
        for _ in 0..2 {
            rx.peek().map_err(|e| e.to_string())?.release();
        }
        let m = rx.peek().map_err(|e| e.to_string())?;
        assert_eq!(&*m, &2u64.to_le_bytes());
        // Hold message 2 and hang until killed.
        std::thread::sleep(Duration::from_secs(60));
        drop(m);
        Ok(())
    });
    // Wait until the child holds message 2 (it released 0 and 1).
    let t0 = std::time::Instant::now();
    while tx.stats().messages_received < 2 {
        assert!(t0.elapsed() < Duration::from_secs(20), "child never peeked");
        std::thread::sleep(Duration::from_millis(2));
    }
    std::thread::sleep(Duration::from_millis(20));
    // The producer is not blocked by the held message (locked: no mutex held).
    tx.send_timeout(&5u64.to_le_bytes(), Duration::from_secs(5))
        .unwrap();
    child.kill();
    let _ = child.wait(Duration::from_secs(10));
    let mut rx = b.open_consumer(name.as_str()).unwrap();
    let mut buf = [0u8; 8];
    for want in 2..6u64 {
        let len = rx
            .recv_into_timeout(&mut buf, Duration::from_secs(5))
            .unwrap();
        assert_eq!(len, 8);
        assert_eq!(u64::from_le_bytes(buf), want, "replacement order");
    }
    assert!(matches!(rx.try_recv_into(&mut buf), Err(Error::Empty)));
    drop(tx);
}

variant_tests!(
    peek_release_and_keep,
    recv_into_keeps_a_message_that_does_not_fit,
    status_and_explicit_close,
    not_found_names_the_segment,
    killed_while_holding_a_peeked_message,
);
