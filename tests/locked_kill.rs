//! kill -9 of a process in the middle of ring work: while it holds the
//! locked variant's mutex (inside a claim, inside `recv_with`), and while it
//! is blocked waiting (full ring, empty ring, every wait strategy). The
//! survivor must get every committed message exactly once, then `PeerDied`,
//! must never hang, and a replacement process must be able to take the dead
//! role over by name and continue. Run on both variants: on the lock-free
//! ring "holding the lock" becomes "holding a claim / a borrowed message".

mod kill_util;

use std::time::Duration;

use kill_util::*;
use shmpipe::{Builder, Consumer, Error, Variant, WaitStrategy};

const T: Duration = Duration::from_secs(30);
const WATCHDOG: Duration = Duration::from_secs(120);
/// Largest message used here (small enough to keep many in a 64 KiB ring).
const MAXLEN: usize = 600;

fn builder<V: Variant>(wait: WaitStrategy) -> Builder<V> {
    Builder::<V>::default()
        .capacity(64 * 1024)
        .wait(wait)
        // The test removes the name (ShmName) after every process is done.
        .unlink_on_drop(false)
}

fn is_locked<V: Variant>() -> bool {
    shmpipe::VariantKind::of::<V>() == shmpipe::VariantKind::Locked
}

fn ctx<T>(r: shmpipe::Result<T>, what: &str) -> Result<T, String> {
    r.map_err(|e| format!("{what}: {e:?}"))
}

fn msg(seq: u64) -> Vec<u8> {
    make_msg(seq, size_for(seq, 7, MAXLEN))
}

/// Receive messages `range` in order with blocking `recv`.
fn recv_seq<V: Variant>(rx: &mut Consumer<V>, range: std::ops::Range<u64>) {
    let mut buf = Vec::new();
    for seq in range {
        match rx.recv(&mut buf) {
            Ok(n) => {
                assert_eq!(n, buf.len());
                assert_eq!(n, size_for(seq, 7, MAXLEN), "length of seq {seq}");
                if let Err(e) = expect_seq(&buf, seq) {
                    panic!("message {seq}: {e}");
                }
            }
            Err(e) => panic!("recv of seq {seq}: {e:?}"),
        }
    }
}

/// Drain whatever is left with `try_recv`, in order from `first`; returns
/// the sequence number after the last message and the terminal error.
fn drain_seq<V: Variant>(rx: &mut Consumer<V>, first: u64) -> (u64, Error) {
    let mut buf = Vec::new();
    let mut seq = first;
    let end = std::time::Instant::now() + T;
    loop {
        match rx.try_recv(&mut buf) {
            Ok(_) => {
                if let Err(e) = expect_seq(&buf, seq) {
                    panic!("message {seq}: {e}");
                }
                seq += 1;
            }
            // Empty may be reported for a while after the producer died
            // (liveness checks are rate-limited).
            Err(Error::Empty) if std::time::Instant::now() < end => {
                std::thread::sleep(Duration::from_millis(1))
            }
            Err(e) => return (seq, e),
        }
    }
}

// ---------------------------------------------------------------------------
// 1. The producer dies holding the lock (locked: the claim guard holds the
// mutex; lock-free: it holds an uncommitted claim).

fn producer_killed_inside_claim<V: Variant>(wait: WaitStrategy) {
    let _s = serial();
    let _wd = Watchdog::new("producer_killed_inside_claim", WATCHDOG);
    const K: u64 = 25;
    const M: u64 = 40;
    let name = ShmName::new("lk-claim");
    let mut rx = builder::<V>(wait).create_consumer(name.as_str()).unwrap();
    let ready = pipe();
    let (n, wr) = (name.as_str(), &ready.wr);
    let mut child = fork_child(60, || {
        let mut tx = ctx(builder::<V>(wait).open_producer(n), "open_producer")?;
        for seq in 0..K {
            ctx(tx.send(&msg(seq)), "send")?;
        }
        let len = size_for(K, 7, MAXLEN);
        let mut c = ctx(tx.claim(len), "claim")?;
        fill_body(K, &mut c, 0..len / 2); // half a message
        write_all(wr, b"c");
        sleep_forever(); // holding the claim (and, locked, the mutex)
    });
    assert!(
        read_exact_timeout(&ready.rd, 1, T).is_some(),
        "child did not reach its claim: {}",
        child.report()
    );
    let mut next = 0;
    if is_locked::<V>() {
        // The K messages are committed, but the claim holds the mutex: a
        // non-blocking receive cannot take it.
        let mut buf = Vec::new();
        assert!(matches!(rx.try_recv(&mut buf), Err(Error::Empty)));
        assert_eq!(rx.stats().lock_repairs, 0);
    } else {
        // Lock-free: committed messages are readable while the claim is open.
        recv_seq(&mut rx, 0..1);
        next = 1;
    }
    child.kill9(T);

    // Exactly the K committed messages, intact and in order, then PeerDied.
    recv_seq(&mut rx, next..K);
    let mut buf = Vec::new();
    assert!(matches!(rx.recv(&mut buf), Err(Error::PeerDied)));
    assert!(matches!(rx.try_recv(&mut buf), Err(Error::PeerDied)));
    let st = rx.stats();
    assert_eq!(st.messages_sent, K);
    assert_eq!(st.messages_received, K);
    assert_eq!(st.used_bytes, 0);
    if is_locked::<V>() {
        assert!(
            st.lock_repairs >= 1,
            "the dead holder's mutex was not repaired"
        );
    } else {
        assert_eq!(st.lock_repairs, 0);
    }

    // A new producer process takes the role over by name and continues
    // where the committed stream ended (the half-written claim is gone).
    let mut child2 = fork_child(60, || {
        let mut tx = ctx(builder::<V>(wait).open_producer(n), "re-open producer")?;
        for seq in K..K + M {
            ctx(tx.send(&msg(seq)), "send after takeover")?;
        }
        Ok(()) // dropping tx closes the producer side in order
    });
    child2.expect_ok(T);
    let (end, last) = drain_seq(&mut rx, K);
    assert_eq!(end, K + M, "messages after the takeover");
    // The replacement closed in order.
    assert!(matches!(last, Error::Disconnected), "{last:?}");
    assert_eq!(rx.stats().messages_received, K + M);
}

#[test]
fn locked_producer_killed_inside_claim() {
    for w in [WaitStrategy::Futex, WaitStrategy::Spin] {
        producer_killed_inside_claim::<shmpipe::Locked>(w);
    }
}

#[test]
fn lockfree_producer_killed_inside_claim() {
    for w in [WaitStrategy::Futex, WaitStrategy::Spin] {
        producer_killed_inside_claim::<shmpipe::LockFree>(w);
    }
}

// ---------------------------------------------------------------------------
// 2. The consumer dies inside `recv_with` (locked: holding the mutex). The
// message it was reading was never released, so it is still committed: the
// replacement consumer gets it, exactly once, then everything after it.

fn consumer_killed_inside_recv_with<V: Variant>(wait: WaitStrategy) {
    let _s = serial();
    let _wd = Watchdog::new("consumer_killed_inside_recv_with", WATCHDOG);
    const N: u64 = 30;
    const S: u64 = 10; // messages the doomed consumer takes before getting stuck
    let name = ShmName::new("lk-recv");
    let mut tx = builder::<V>(wait).create_producer(name.as_str()).unwrap();
    for seq in 0..N {
        tx.send(&msg(seq)).unwrap();
    }
    let ready = pipe();
    let (n, wr) = (name.as_str(), &ready.wr);
    let mut child = fork_child(60, || {
        let mut rx = ctx(builder::<V>(wait).open_consumer(n), "open_consumer")?;
        let mut buf = Vec::new();
        for seq in 0..S {
            ctx(rx.recv(&mut buf), "recv")?;
            expect_seq(&buf, seq)?;
        }
        let r = rx.recv_with(|m| {
            write_all(wr, &m[..8]); // the sequence number being read
            sleep_forever()
        });
        Err(format!("recv_with returned {r:?}"))
    });
    let stuck = read_exact_timeout(&ready.rd, 8, T)
        .unwrap_or_else(|| panic!("child did not get stuck: {}", child.report()));
    let stuck = u64::from_le_bytes(stuck.try_into().unwrap());
    assert_eq!(stuck, S);
    if is_locked::<V>() {
        // The child holds the mutex: a non-blocking send cannot get in.
        assert!(matches!(tx.try_send(&msg(N)), Err(Error::Full)));
    }
    child.kill9(T);

    // The producer is not wedged: its next send goes through (the ring has
    // room; the dead consumer is only noticed when the ring is full).
    let extra = match tx.send(&msg(N)) {
        Ok(()) => 1,
        Err(Error::PeerDied) => 0,
        Err(e) => panic!("send after the consumer died: {e:?}"),
    };
    assert_eq!(extra, 1, "a send with room should not need the consumer");
    let st = tx.stats();
    assert_eq!(
        st.messages_received, S,
        "the stuck message was not released"
    );
    if is_locked::<V>() {
        assert!(st.lock_repairs >= 1);
    }

    // A replacement consumer (a new process: this one) attaches by name and
    // gets every committed, unreleased message exactly once, starting with
    // the one the dead consumer was reading.
    let mut rx = builder::<V>(wait).open_consumer(name.as_str()).unwrap();
    recv_seq(&mut rx, S..N + extra);
    let mut buf = Vec::new();
    assert!(matches!(rx.try_recv(&mut buf), Err(Error::Empty)));
    drop(tx);
    assert!(matches!(rx.recv(&mut buf), Err(Error::Disconnected)));
    assert_eq!(rx.stats().messages_received, N + extra);
}

#[test]
fn locked_consumer_killed_inside_recv_with() {
    for w in [WaitStrategy::Futex, WaitStrategy::Semaphore] {
        consumer_killed_inside_recv_with::<shmpipe::Locked>(w);
    }
}

#[test]
fn lockfree_consumer_killed_inside_recv_with() {
    for w in [WaitStrategy::Futex, WaitStrategy::Semaphore] {
        consumer_killed_inside_recv_with::<shmpipe::LockFree>(w);
    }
}

// ---------------------------------------------------------------------------
// 3. A peer killed while blocked waiting does not wedge the survivor.

/// The consumer is blocked in `recv` on an empty ring when it is killed.
/// The producer fills the ring; its blocking send then returns `PeerDied`.
/// A replacement consumer gets every message sent.
fn consumer_killed_while_blocked<V: Variant>(wait: WaitStrategy) {
    let _s = serial();
    let _wd = Watchdog::new("consumer_killed_while_blocked", WATCHDOG);
    let name = ShmName::new("lk-wait-c");
    let b = builder::<V>(wait).capacity(8 * 1024);
    let mut tx = b.create_producer(name.as_str()).unwrap();
    let n = name.as_str();
    let mut child = fork_child(60, || {
        let mut rx = ctx(builder::<V>(wait).open_consumer(n), "open_consumer")?;
        let mut buf = Vec::new();
        let r = rx.recv(&mut buf);
        Err(format!("recv on an empty ring returned {r:?}"))
    });
    // Wait until the consumer has found the ring empty and is waiting.
    assert!(
        wait_until(T, || shmpipe::inspect(n)
            .is_ok_and(|i| i.stats.empty_waits >= 1)),
        "consumer never waited: {}",
        child.report()
    );
    child.kill9(T);

    let mut sent = 0;
    let last = loop {
        match tx.send(&msg(sent)) {
            Ok(()) => sent += 1,
            Err(e) => break e,
        }
    };
    assert!(matches!(last, Error::PeerDied), "{last:?}");
    assert!(sent > 0);
    // PeerDied came when the ring was full (with room the consumer is not
    // needed, so a send succeeds).
    let used = tx.len_bytes();
    assert!(
        used + 2 * (MAXLEN as u64 + 16) > tx.capacity(),
        "PeerDied before the ring filled ({used} bytes used)"
    );

    let mut rx = b.open_consumer(n).unwrap();
    recv_seq(&mut rx, 0..sent);
    drop(tx);
    let mut buf = Vec::new();
    assert!(matches!(rx.recv(&mut buf), Err(Error::Disconnected)));
}

/// The producer is blocked in `send` on a full ring when it is killed. The
/// consumer gets every committed message, then `PeerDied`; a replacement
/// producer takes over and the consumer gets its messages too.
fn producer_killed_while_blocked<V: Variant>(wait: WaitStrategy) {
    let _s = serial();
    let _wd = Watchdog::new("producer_killed_while_blocked", WATCHDOG);
    let name = ShmName::new("lk-wait-p");
    let b = builder::<V>(wait).capacity(8 * 1024);
    let mut rx = b.create_consumer(name.as_str()).unwrap();
    let progress = SharedWords::new(1);
    let (n, pr) = (name.as_str(), &progress);
    let mut child = fork_child(60, || {
        let mut tx = ctx(builder::<V>(wait).open_producer(n), "open_producer")?;
        let mut seq = 0;
        loop {
            ctx(tx.send(&msg(seq)), "send")?;
            seq += 1;
            pr.get(0).store(seq, std::sync::atomic::Ordering::SeqCst);
        }
    });
    assert!(
        wait_until(T, || shmpipe::inspect(n)
            .is_ok_and(|i| i.stats.full_waits >= 1)),
        "producer never waited: {}",
        child.report()
    );
    child.kill9(T);
    let committed = progress.get(0).load(std::sync::atomic::Ordering::SeqCst);
    assert!(committed > 0);

    let (got, last) = drain_seq(&mut rx, 0);
    assert!(matches!(last, Error::PeerDied), "{last:?}");
    // The child counts a message after its send returned, so at most one
    // committed message is not counted yet.
    assert!(
        got == committed || got == committed + 1,
        "received {got}, child committed {committed}"
    );

    const M: u64 = 20;
    let mut child2 = fork_child(60, || {
        let mut tx = ctx(builder::<V>(wait).open_producer(n), "re-open producer")?;
        for seq in got..got + M {
            ctx(tx.send(&msg(seq)), "send after takeover")?;
        }
        Ok(())
    });
    child2.expect_ok(T);
    let (end, last) = drain_seq(&mut rx, got);
    assert_eq!(end, got + M);
    assert!(matches!(last, Error::Disconnected), "{last:?}");
}

#[test]
fn locked_peer_killed_while_blocked() {
    for w in WaitStrategy::ALL {
        consumer_killed_while_blocked::<shmpipe::Locked>(w);
        producer_killed_while_blocked::<shmpipe::Locked>(w);
    }
}

#[test]
fn lockfree_peer_killed_while_blocked() {
    for w in WaitStrategy::ALL {
        consumer_killed_while_blocked::<shmpipe::LockFree>(w);
        producer_killed_while_blocked::<shmpipe::LockFree>(w);
    }
}
