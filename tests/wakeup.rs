//! Wake-up tests: two processes that sleep on each other must never hang.
//!
//! - 100,000 blocking ping-pong round trips between a parent and a forked
//!   child over two anonymous rings, for `Futex` and `Semaphore` and both
//!   variants, under a watchdog (120 s: then the child is killed and the
//!   test fails). Every reply is checked, and the counters must show that
//!   both sides really slept and were woken by a syscall.
//! - Every blocking receive takes a message that lands while it waits, for
//!   every strategy: `recv_into` into a buffer too small (`BufferTooSmall`,
//!   the message kept), `recv_into`, `peek`, `recv_with`, `recv_timeout`;
//!   and the counts stay exact.
//! - A sleeper is woken by its peer's orderly close: a consumer blocked in
//!   `recv` gets `Disconnected`, a producer blocked in `send` on a full ring
//!   gets `Disconnected`.

#[macro_use]
mod common;

use std::time::Duration;

use common::{builder, fork_with, mix64, serial, Error, Variant, WaitStrategy};

const ROUND_TRIPS: u64 = 100_000;
const DEADLINE: Duration = Duration::from_secs(120);
/// Every this many round trips one side pauses, so that the other one
/// surely goes to sleep (and must be woken by a syscall).
const PAUSE_EVERY: u64 = 1000;
const PAUSE: Duration = Duration::from_millis(1);

/// The reply to ping `i`: 16 bytes that depend on `i` (plus `i % 32` bytes
/// of filler, so the record sizes vary).
fn reply(i: u64, out: &mut Vec<u8>) {
    out.clear();
    out.extend_from_slice(&(!i).to_le_bytes());
    out.extend_from_slice(&mix64(i).to_le_bytes());
    out.resize(16 + (i % 32) as usize, (i % 251) as u8);
}

fn ping_pong<V: Variant>(wait: WaitStrategy) {
    let _serial = serial();
    let ctx = format!("{} ring, {wait}", V::NAME);
    let b = builder::<V>().capacity(4096).wait(wait);
    let pings = b.anonymous().expect("anonymous ring");
    let pongs = b.anonymous().expect("anonymous ring");

    let (child, (pings, pongs)) = fork_with((pings, pongs), |(pings, pongs)| {
        let mut rx = pings.into_consumer().map_err(|e| e.to_string())?;
        let mut tx = pongs.into_producer().map_err(|e| e.to_string())?;
        let mut out = Vec::new();
        let mut n = 0u64;
        loop {
            let got = match rx.recv_with(|m| <[u8; 8]>::try_from(m).ok().map(u64::from_le_bytes)) {
                Ok(v) => v,
                Err(Error::Disconnected) => break,
                Err(e) => return Err(format!("child recv after {n} pings: {e}")),
            };
            if got != Some(n) {
                return Err(format!("child: ping {n} carried {got:?}"));
            }
            if n % PAUSE_EVERY == PAUSE_EVERY / 2 {
                std::thread::sleep(PAUSE); // the parent falls asleep in recv
            }
            reply(n, &mut out);
            tx.send(&out)
                .map_err(|e| format!("child send of pong {n}: {e}"))?;
            n += 1;
        }
        if n != ROUND_TRIPS {
            return Err(format!("child: {n} pings, expected {ROUND_TRIPS}"));
        }
        Ok(())
    });

    let wd = child.watchdog(DEADLINE, &ctx);
    let mut tx = pings.into_producer().expect("ping producer");
    let mut rx = pongs.into_consumer().expect("pong consumer");
    let mut want = Vec::new();
    let mut failure = None;
    for i in 0..ROUND_TRIPS {
        if i % PAUSE_EVERY == 0 {
            std::thread::sleep(PAUSE); // the child falls asleep in recv
        }
        if let Err(e) = tx.send(&i.to_le_bytes()) {
            failure = Some(format!("ping {i}: {e}"));
            break;
        }
        reply(i, &mut want);
        match rx.recv_with(|m| m == &want[..]) {
            Ok(true) => {}
            Ok(false) => {
                failure = Some(format!("pong {i} carried the wrong bytes"));
                break;
            }
            Err(e) => {
                failure = Some(format!("pong {i}: {e}"));
                break;
            }
        }
    }
    let (sa, sb) = (tx.stats(), rx.stats());
    drop(tx); // the child sees Disconnected, exits, and so closes the pongs
    if failure.is_none() {
        match rx.recv(&mut Vec::new()) {
            Err(Error::Disconnected) => {}
            other => failure = Some(format!("after the last pong: {other:?}")),
        }
    }
    let fired = wd.fired();
    drop(wd);
    let waited = child.wait(DEADLINE);
    assert!(!fired, "{ctx}: watchdog fired: the ping-pong hung");
    if let Some(f) = failure {
        panic!("{ctx}: {f}; child: {waited:?}");
    }
    if let Err(e) = waited {
        panic!("{ctx}: {e}");
    }
    assert_eq!(sa.messages_sent, ROUND_TRIPS, "{ctx}: pings {sa:?}");
    assert_eq!(sa.messages_received, ROUND_TRIPS, "{ctx}: pings {sa:?}");
    assert_eq!(sb.messages_received, ROUND_TRIPS, "{ctx}: pongs {sb:?}");
    // The child slept waiting for pings and the parent for pongs, and each
    // was woken by the other's wake-up syscall.
    assert!(
        sa.empty_waits > 0 && sa.producer_wake_syscalls > 0,
        "{ctx}: the child never slept: pings {sa:?}"
    );
    assert!(
        sb.empty_waits > 0 && sb.producer_wake_syscalls > 0,
        "{ctx}: the parent never slept: pongs {sb:?}"
    );
    // A wake-up syscall is made only for a registered sleeper: at most one
    // per message here, never one per message in a ping-pong that spins
    // first. (Not a timing bound: a count of syscalls.)
    assert!(sa.producer_wake_syscalls <= ROUND_TRIPS, "{ctx}: {sa:?}");
}

fn ping_pong_futex<V: Variant>() {
    ping_pong::<V>(WaitStrategy::Futex);
}

fn ping_pong_semaphore<V: Variant>() {
    ping_pong::<V>(WaitStrategy::Semaphore);
}

/// A consumer asleep in `recv` in another process is woken by the
/// producer's orderly close and gets `Disconnected` (after the messages).
fn close_wakes_sleeping_consumer<V: Variant>() {
    let _serial = serial();
    for wait in [WaitStrategy::Futex, WaitStrategy::Semaphore] {
        let ctx = format!("{} ring, {wait}", V::NAME);
        let pair = builder::<V>()
            .capacity(4096)
            .wait(wait)
            .anonymous()
            .expect("anonymous ring");
        let (child, pair) = fork_with(pair, |pair| {
            let mut rx = pair.into_consumer().map_err(|e| e.to_string())?;
            let mut buf = Vec::new();
            match rx.recv(&mut buf) {
                Ok(_) if buf == b"last words" => {}
                other => return Err(format!("first recv: {other:?} {buf:?}")),
            }
            match rx.recv(&mut buf) {
                Err(Error::Disconnected) => {}
                other => return Err(format!("recv after close: {other:?}")),
            }
            let st = rx.stats();
            if st.empty_waits == 0 || st.producer_wake_syscalls == 0 {
                return Err(format!("the consumer never slept: {st:?}"));
            }
            Ok(())
        });
        let wd = child.watchdog(DEADLINE, &ctx);
        let mut tx = pair.into_producer().expect("producer");
        std::thread::sleep(Duration::from_millis(50));
        tx.send(b"last words").expect("send");
        std::thread::sleep(Duration::from_millis(50));
        drop(tx);
        let fired = wd.fired();
        drop(wd);
        let r = child.wait(DEADLINE);
        assert!(!fired, "{ctx}: watchdog fired");
        r.unwrap_or_else(|e| panic!("{ctx}: {e}"));
    }
}

/// A producer asleep in `send` on a full ring in another process is woken
/// by the consumer's orderly close and gets `Disconnected`.
fn close_wakes_sleeping_producer<V: Variant>() {
    let _serial = serial();
    for wait in [WaitStrategy::Futex, WaitStrategy::Semaphore] {
        let ctx = format!("{} ring, {wait}", V::NAME);
        let pair = builder::<V>()
            .capacity(256)
            .wait(wait)
            .anonymous()
            .expect("anonymous ring");
        let (child, pair) = fork_with(pair, |pair| {
            let mut tx = pair.into_producer().map_err(|e| e.to_string())?;
            let mut sent = 0u64;
            loop {
                match tx.send(&sent.to_le_bytes()) {
                    Ok(()) => sent += 1,
                    Err(Error::Disconnected) => break,
                    Err(e) => return Err(format!("send {sent}: {e}")),
                }
                if sent > 1000 {
                    return Err("the consumer took more than it should".into());
                }
            }
            let st = tx.stats();
            if st.full_waits == 0 || st.consumer_wake_syscalls == 0 {
                return Err(format!("the producer never slept: {st:?}"));
            }
            Ok(())
        });
        let wd = child.watchdog(DEADLINE, &ctx);
        let mut rx = pair.into_consumer().expect("consumer");
        std::thread::sleep(Duration::from_millis(50));
        // Take one message (the producer refills the ring and sleeps again).
        let mut buf = Vec::new();
        assert_eq!(rx.recv(&mut buf).expect("recv"), 8, "{ctx}");
        assert_eq!(buf, 0u64.to_le_bytes(), "{ctx}");
        std::thread::sleep(Duration::from_millis(50));
        drop(rx);
        let fired = wd.fired();
        drop(wd);
        let r = child.wait(DEADLINE);
        assert!(!fired, "{ctx}: watchdog fired");
        r.unwrap_or_else(|e| panic!("{ctx}: {e}"));
    }
}

/// Each blocking receive, called on an empty ring, takes the message a
/// thread sends while it waits (the attempt right after a wait that saw
/// the producer move), for every strategy.
fn blocking_receives_take_what_lands_while_they_wait<V: Variant>() {
    use std::sync::mpsc;
    let _serial = serial();
    for wait in [
        WaitStrategy::Spin,
        WaitStrategy::SpinYield,
        WaitStrategy::Futex,
        WaitStrategy::Semaphore,
    ] {
        let ctx = format!("{} ring, {wait}", V::NAME);
        let (mut tx, mut rx) = builder::<V>()
            .capacity(4096)
            .wait(wait)
            .in_process()
            .expect("ring")
            .split()
            .expect("split");
        // The receiver says "about to block"; the sender waits a little
        // (so the receive surely waits), then sends the message.
        let (go, went) = mpsc::channel::<Vec<u8>>();
        let sender = std::thread::spawn(move || {
            for msg in went {
                std::thread::sleep(Duration::from_millis(20));
                tx.send(&msg).expect("send");
            }
        });
        let waits = |rx: &common::Consumer<V>| rx.stats().empty_waits;

        go.send(b"twelve bytes".to_vec()).expect("go");
        let before = waits(&rx);
        let mut small = [0u8; 4];
        match rx.recv_into(&mut small) {
            Err(Error::BufferTooSmall {
                len: 12,
                buf_len: 4,
            }) => {}
            other => panic!("{ctx}: recv_into a small buffer: {other:?}"),
        }
        assert!(waits(&rx) > before, "{ctx}: recv_into never waited");
        let mut buf = [0u8; 64];
        assert_eq!(rx.recv_into(&mut buf).expect("kept"), 12, "{ctx}");
        assert_eq!(&buf[..12], b"twelve bytes", "{ctx}");

        go.send(b"into".to_vec()).expect("go");
        assert_eq!(rx.recv_into(&mut buf).expect("recv_into"), 4, "{ctx}");
        assert_eq!(&buf[..4], b"into", "{ctx}");

        go.send(b"peeked".to_vec()).expect("go");
        let before = waits(&rx);
        let msg = rx.peek().expect("peek");
        assert_eq!(&*msg, b"peeked", "{ctx}");
        msg.release();
        assert!(waits(&rx) > before, "{ctx}: peek never waited");

        go.send(b"lent".to_vec()).expect("go");
        assert_eq!(
            rx.recv_with(|m| m.to_vec()).expect("recv_with"),
            b"lent",
            "{ctx}"
        );

        go.send(b"in time".to_vec()).expect("go");
        let mut v = Vec::new();
        let n = rx
            .recv_timeout(&mut v, Duration::from_secs(60))
            .expect("recv_timeout");
        assert_eq!((n, &v[..]), (7, &b"in time"[..]), "{ctx}");
        drop(go);
        sender.join().expect("sender");
        let st = rx.stats();
        assert_eq!(
            (st.messages_received, st.bytes_received),
            (5, 33),
            "{ctx}: {st:?}"
        );
        match rx.recv_timeout(&mut v, Duration::from_millis(10)) {
            Err(Error::Disconnected) => {}
            other => panic!("{ctx}: after the producer left: {other:?}"),
        }
    }
}

variant_tests!(
    blocking_receives_take_what_lands_while_they_wait,
    ping_pong_futex,
    ping_pong_semaphore,
    close_wakes_sleeping_consumer,
    close_wakes_sleeping_producer
);
