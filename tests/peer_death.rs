//! A peer process that dies (SIGKILL) is noticed: blocked calls return
//! `PeerDied` instead of waiting forever, the consumer first gets exactly
//! the committed prefix of the stream, a dead role can be taken over by a
//! new process, and a live role cannot be taken twice. Both variants, every
//! wait strategy where waiting is involved.

mod kill_util;

use std::sync::atomic::Ordering::SeqCst;
use std::time::{Duration, Instant};

use kill_util::*;
use shmpipe::{Builder, Consumer, EndpointState, Error, Variant, WaitStrategy};

const T: Duration = Duration::from_secs(30);
const WATCHDOG: Duration = Duration::from_secs(120);

fn builder<V: Variant>(wait: WaitStrategy) -> Builder<V> {
    Builder::<V>::default()
        .capacity(16 * 1024)
        .wait(wait)
        .unlink_on_drop(false)
}

fn ctx<T>(r: shmpipe::Result<T>, what: &str) -> Result<T, String> {
    r.map_err(|e| format!("{what}: {e:?}"))
}

fn recv_in_order<V: Variant>(rx: &mut Consumer<V>, range: std::ops::Range<u64>) {
    let mut buf = Vec::new();
    for seq in range {
        match rx.recv(&mut buf) {
            Ok(_) => {
                if let Err(e) = expect_seq(&buf, seq) {
                    panic!("message {seq}: {e}");
                }
            }
            Err(e) => panic!("recv of seq {seq}: {e:?}"),
        }
    }
}

/// Kill `pid` from another thread once `cond` holds (polled).
fn kill_when(
    pid: libc::pid_t,
    cond: impl FnMut() -> bool + Send + 'static,
) -> std::thread::JoinHandle<bool> {
    std::thread::spawn(move || {
        let ok = wait_until(T, cond);
        // SAFETY: plain kill(2) on the test's own child (reaped only after
        // this thread is joined).
        unsafe { libc::kill(pid, libc::SIGKILL) };
        ok
    })
}

// ---------------------------------------------------------------------------
// Blocked calls return PeerDied.

fn blocked_recv_returns_peer_died<V: Variant>(wait: WaitStrategy) {
    let _s = serial();
    let _wd = Watchdog::new("blocked_recv_returns_peer_died", WATCHDOG);
    let name = ShmName::new("pd-recv");
    let mut rx = builder::<V>(wait).create_consumer(name.as_str()).unwrap();
    let n = name.as_str();
    let mut child = fork_child(60, || {
        let mut tx = ctx(builder::<V>(wait).open_producer(n), "open_producer")?;
        ctx(tx.send(&make_msg(0, 40)), "send")?;
        ctx(tx.send(&make_msg(1, 40)), "send")?;
        sleep_forever()
    });
    recv_in_order(&mut rx, 0..2);
    let base = rx.stats().empty_waits;
    // Kill the producer once this consumer is blocked on the empty ring.
    let name2 = name.0.clone();
    let killer = kill_when(child.pid, move || {
        shmpipe::inspect(&name2).is_ok_and(|i| i.stats.empty_waits > base)
    });
    let mut buf = Vec::new();
    let r = rx.recv(&mut buf);
    assert!(killer.join().unwrap(), "the consumer never blocked");
    assert!(matches!(r, Err(Error::PeerDied)), "{wait:?}: {r:?}");
    assert_eq!(
        child.wait(T),
        Status::Signaled(libc::SIGKILL),
        "{}",
        child.report()
    );
    // And it stays that way.
    assert!(matches!(rx.recv(&mut buf), Err(Error::PeerDied)));
    assert!(matches!(
        rx.recv_timeout(&mut buf, Duration::from_millis(1)),
        Err(Error::PeerDied)
    ));
}

fn blocked_send_returns_peer_died<V: Variant>(wait: WaitStrategy) {
    let _s = serial();
    let _wd = Watchdog::new("blocked_send_returns_peer_died", WATCHDOG);
    let name = ShmName::new("pd-send");
    let mut tx = builder::<V>(wait).create_producer(name.as_str()).unwrap();
    let ready = pipe();
    let (n, wr) = (name.as_str(), &ready.wr);
    let mut child = fork_child(60, || {
        let _rx = ctx(builder::<V>(wait).open_consumer(n), "open_consumer")?;
        write_all(wr, b"r");
        sleep_forever() // attached, never reads
    });
    assert!(
        read_exact_timeout(&ready.rd, 1, T).is_some(),
        "{}",
        child.report()
    );
    let base = tx.stats().full_waits;
    let name2 = name.0.clone();
    let killer = kill_when(child.pid, move || {
        shmpipe::inspect(&name2).is_ok_and(|i| i.stats.full_waits > base)
    });
    let mut sent = 0u64;
    let r = loop {
        match tx.send(&make_msg(sent, 200)) {
            Ok(()) => sent += 1,
            Err(e) => break e,
        }
    };
    assert!(killer.join().unwrap(), "the producer never blocked");
    assert!(matches!(r, Error::PeerDied), "{wait:?}: {r:?}");
    assert!(sent > 0);
    child.wait(T);
    // The ring stays full and the consumer dead: the same send fails again.
    let r = tx.send(&make_msg(sent, 200));
    assert!(matches!(r, Err(Error::PeerDied)), "{wait:?}: then {r:?}");
    let r = tx.try_send(&make_msg(sent, 200));
    assert!(
        matches!(r, Err(Error::PeerDied | Error::Full)),
        "{wait:?}: then {r:?}"
    );
}

#[test]
fn blocked_recv_and_send_return_peer_died() {
    for w in WaitStrategy::ALL {
        blocked_recv_returns_peer_died::<shmpipe::LockFree>(w);
        blocked_recv_returns_peer_died::<shmpipe::Locked>(w);
        blocked_send_returns_peer_died::<shmpipe::LockFree>(w);
        blocked_send_returns_peer_died::<shmpipe::Locked>(w);
    }
}

/// Non-blocking calls: after the producer died, try_recv hands out what was
/// committed, then (possibly after a short rate limit on liveness checks,
/// during which it says Empty) PeerDied. Likewise try_send on a full ring
/// whose consumer died.
fn try_calls_see_dead_peer<V: Variant>(wait: WaitStrategy) {
    let _s = serial();
    let _wd = Watchdog::new("try_calls_see_dead_peer", WATCHDOG);
    let name = ShmName::new("pd-try");
    let mut rx = builder::<V>(wait).create_consumer(name.as_str()).unwrap();
    let n = name.as_str();
    let mut child = fork_child(60, || {
        let mut tx = ctx(builder::<V>(wait).open_producer(n), "open_producer")?;
        for seq in 0..3 {
            ctx(tx.send(&make_msg(seq, 100)), "send")?;
        }
        die_now()
    });
    assert_eq!(child.wait(T), Status::Signaled(libc::SIGKILL));
    let mut buf = Vec::new();
    for seq in 0..3 {
        rx.try_recv(&mut buf).unwrap();
        expect_seq(&buf, seq).unwrap();
    }
    let end = Instant::now() + Duration::from_secs(5);
    let r = loop {
        match rx.try_recv(&mut buf) {
            Err(Error::Empty) if Instant::now() < end => std::thread::yield_now(),
            r => break r,
        }
    };
    assert!(matches!(r, Err(Error::PeerDied)), "{r:?}");
    assert!(matches!(rx.try_recv(&mut buf), Err(Error::PeerDied)));
    assert!(matches!(rx.drain(10, |_| ()), Err(Error::PeerDied)));
    drop(rx);

    // The other direction.
    let name = ShmName::new("pd-try2");
    let mut tx = builder::<V>(wait)
        .capacity(4096)
        .create_producer(name.as_str())
        .unwrap();
    let n = name.as_str();
    let mut child = fork_child(60, || {
        let _rx = ctx(builder::<V>(wait).open_consumer(n), "open_consumer")?;
        die_now()
    });
    assert_eq!(child.wait(T), Status::Signaled(libc::SIGKILL));
    // With room, a send does not need the consumer and succeeds.
    let mut seq = 0;
    while tx.try_send(&make_msg(seq, 100)).is_ok() {
        seq += 1;
    }
    assert!(seq > 0);
    let end = Instant::now() + Duration::from_secs(5);
    let r = loop {
        match tx.try_send(&make_msg(seq, 100)) {
            Err(Error::Full) if Instant::now() < end => std::thread::yield_now(),
            r => break r,
        }
    };
    assert!(matches!(r, Err(Error::PeerDied)), "{r:?}");
}

#[test]
fn try_calls_see_dead_peer_both_variants() {
    for w in [WaitStrategy::Spin, WaitStrategy::Futex] {
        try_calls_see_dead_peer::<shmpipe::LockFree>(w);
        try_calls_see_dead_peer::<shmpipe::Locked>(w);
    }
}

// ---------------------------------------------------------------------------
// kill -9 the producer at random points, many times over.

#[derive(Default, Debug)]
struct KillStats {
    iterations: u64,
    messages: u64,
    /// Where the child was when killed: between messages, inside send,
    /// inside a claim (payload partly written), committing a claim.
    phase: [u64; 4],
    nothing_received: u64,
    /// The kill landed after a commit but before the child counted it.
    committed_uncounted: u64,
    lock_repairs: u64,
}

const PHASE_NAMES: [&str; 4] = ["between", "in-send", "in-claim", "committing"];

fn spin(n: u64) {
    for i in 0..n {
        std::hint::black_box(i);
        std::hint::spin_loop();
    }
}

fn random_kill_once<V: Variant>(rng: &mut Rng, stats: &mut KillStats) {
    let wait = *rng.pick(&WaitStrategy::ALL);
    let cap = *rng.pick(&[512u64, 4096, 65536]);
    let maxlen = shmpipe::max_message_for(cap).min(700);
    let salt = rng.next_u64();
    let child_seed = rng.next_u64();
    let pair = Builder::<V>::default()
        .capacity(cap)
        .wait(wait)
        .anonymous()
        .unwrap();
    // [0] messages committed (counted after each commit), [1] phase, [2] attached.
    let words = SharedWords::new(3);
    let mut slot = Some(pair);
    let (w, sl) = (&words, &mut slot);
    let mut child = fork_child(60, move || {
        let pair = sl.take().ok_or("no pair")?;
        let mut tx = ctx(pair.into_producer(), "into_producer")?;
        w.get(2).store(1, SeqCst);
        let mut rng = Rng::new(child_seed);
        let mut seq = 0u64;
        loop {
            let len = size_for(seq, salt, maxlen);
            if rng.chance(1, 2) {
                w.get(1).store(1, SeqCst);
                ctx(tx.send(&make_msg(seq, len)), "send")?;
            } else {
                let mut c = ctx(tx.claim(len), "claim")?;
                w.get(1).store(2, SeqCst);
                let half = rng.below(len as u64) as usize;
                fill_body(seq, &mut c[..], 0..half);
                if rng.chance(1, 3) {
                    spin(rng.below(50_000));
                }
                fill_body(seq, &mut c[..], half..len);
                fill_head(seq, &mut c[..]);
                w.get(1).store(3, SeqCst);
                c.commit();
            }
            w.get(0).store(seq + 1, SeqCst);
            w.get(1).store(0, SeqCst);
            seq += 1;
            if rng.chance(1, 16) {
                spin(rng.below(20_000));
            }
        }
    });
    let mut rx = slot.take().unwrap().into_consumer().unwrap();
    // A producer that never attached is not "dead": wait for it to attach.
    assert!(
        wait_until(T, || words.get(2).load(SeqCst) == 1),
        "child never attached: {}",
        child.report()
    );
    let delay = Duration::from_micros(match rng.below(4) {
        0 => 0,
        1 => rng.range(1, 100),
        2 => rng.range(100, 2_000),
        _ => rng.range(2_000, 10_000),
    });
    let active = rng.chance(3, 4);
    let mut next = 0u64;
    let mut buf = Vec::new();
    let start = Instant::now();
    if active {
        while start.elapsed() < delay {
            match rx.try_recv(&mut buf) {
                Ok(_) => {
                    expect_seq(&buf, next).unwrap();
                    assert_eq!(buf.len(), size_for(next, salt, maxlen));
                    next += 1;
                }
                Err(Error::Empty) => std::hint::spin_loop(),
                Err(e) => panic!("try_recv while the producer lives: {e:?}"),
            }
        }
    } else {
        // Let the ring fill: the kill may land in a blocked send.
        std::thread::sleep(delay);
    }
    child.kill9(T);
    let phase = words.get(1).load(SeqCst) as usize;
    let counted = words.get(0).load(SeqCst);
    let last = loop {
        match rx.recv(&mut buf) {
            Ok(_) => {
                if let Err(e) = expect_seq(&buf, next) {
                    panic!("after {next} good messages: {e}");
                }
                assert_eq!(buf.len(), size_for(next, salt, maxlen));
                next += 1;
            }
            Err(e) => break e,
        }
    };
    assert!(matches!(last, Error::PeerDied), "{last:?}");
    // Exactly the committed prefix: nothing lost, nothing extra.
    assert!(
        next == counted || next == counted + 1,
        "received {next} messages, the child had committed {counted} (+1 at most)"
    );
    stats.iterations += 1;
    stats.messages += next;
    stats.phase[phase.min(3)] += 1;
    stats.nothing_received += (next == 0) as u64;
    stats.committed_uncounted += (next == counted + 1) as u64;
    stats.lock_repairs += rx.stats().lock_repairs;
}

fn random_kills<V: Variant>() {
    let _s = serial();
    let _wd = Watchdog::new("random_kills", Duration::from_secs(300));
    let iters = iterations("SHMPIPE_KILL_ITERS", 200);
    let seed = seed();
    let mut rng = Rng::new(seed ^ V::NAME.len() as u64);
    let mut stats = KillStats::default();
    let t0 = Instant::now();
    for _ in 0..iters {
        random_kill_once::<V>(&mut rng, &mut stats);
    }
    let phases: Vec<String> = PHASE_NAMES
        .iter()
        .zip(stats.phase)
        .map(|(n, c)| format!("{n}={c}"))
        .collect();
    eprintln!(
        "random producer kills [{}] seed={seed:#x}: iterations={} messages_received={} \
         killed_at: {} | nothing_received={} committed_but_uncounted={} lock_repairs={} ({:.1?})",
        V::NAME,
        stats.iterations,
        stats.messages,
        phases.join(" "),
        stats.nothing_received,
        stats.committed_uncounted,
        stats.lock_repairs,
        t0.elapsed()
    );
    assert_eq!(stats.iterations, iters as u64);
    assert!(
        iters < 20 || stats.messages > 0,
        "no message ever got through"
    );
}

#[test]
fn random_producer_kills_lockfree() {
    random_kills::<shmpipe::LockFree>();
}

#[test]
fn random_producer_kills_locked() {
    random_kills::<shmpipe::Locked>();
}

// ---------------------------------------------------------------------------
// Role takeover.

/// A killed producer is replaced by a new process; the consumer (a fresh
/// handle or the old one) sees every committed message once, in order,
/// across both producers.
fn producer_takeover<V: Variant>(wait: WaitStrategy) {
    let _s = serial();
    let _wd = Watchdog::new("producer_takeover", WATCHDOG);
    const A: u64 = 50;
    const B: u64 = 50;
    let name = ShmName::new("pd-take");
    let mut rx = builder::<V>(wait).create_consumer(name.as_str()).unwrap();
    let n = name.as_str();
    let mut child = fork_child(60, || {
        let mut tx = ctx(builder::<V>(wait).open_producer(n), "open_producer")?;
        for seq in 0..A {
            ctx(tx.send(&make_msg(seq, 16 + seq as usize)), "send")?;
        }
        let mut c = ctx(tx.claim(100), "claim")?;
        c[..50].fill(0xee); // an uncommitted, half-written message
        die_now()
    });
    assert_eq!(child.wait(T), Status::Signaled(libc::SIGKILL));
    // Only the first half is read before the takeover.
    recv_in_order(&mut rx, 0..A / 2);
    let mut child2 = fork_child(60, || {
        let mut tx = ctx(builder::<V>(wait).open_producer(n), "takeover")?;
        for seq in A..A + B {
            ctx(tx.send(&make_msg(seq, 16 + seq as usize)), "send")?;
        }
        Ok(())
    });
    child2.expect_ok(T);
    let mut buf = Vec::new();
    for seq in A / 2..A + B {
        rx.try_recv(&mut buf).unwrap();
        expect_seq(&buf, seq).unwrap();
    }
    // The replacement closed in order, and the ring is drained.
    let last = rx.try_recv(&mut buf);
    assert!(matches!(last, Err(Error::Disconnected)), "{last:?}");
    assert_eq!(rx.stats().messages_received, A + B);
}

#[test]
fn producer_takeover_both_variants() {
    for w in [WaitStrategy::Futex, WaitStrategy::Semaphore] {
        producer_takeover::<shmpipe::LockFree>(w);
        producer_takeover::<shmpipe::Locked>(w);
    }
}

/// The surviving consumer keeps its handle across a takeover: after it saw
/// the first producer die, a blocking `recv` waits for and receives the
/// replacement's messages, and the replacement's orderly close is reported
/// as `Disconnected`.
fn consumer_follows_replacement<V: Variant>(wait: WaitStrategy) {
    let _s = serial();
    let _wd = Watchdog::new("consumer_follows_replacement", WATCHDOG);
    const A: u64 = 5;
    const B: u64 = 20;
    let name = ShmName::new("pd-follow-c");
    let mut rx = builder::<V>(wait).create_consumer(name.as_str()).unwrap();
    let n = name.as_str();
    let mut child = fork_child(60, || {
        let mut tx = ctx(builder::<V>(wait).open_producer(n), "open_producer")?;
        for seq in 0..A {
            ctx(tx.send(&make_msg(seq, 64)), "send")?;
        }
        die_now()
    });
    assert_eq!(child.wait(T), Status::Signaled(libc::SIGKILL));
    recv_in_order(&mut rx, 0..A);
    let mut buf = Vec::new();
    assert!(matches!(rx.recv(&mut buf), Err(Error::PeerDied)));

    let ready = pipe();
    let wr = &ready.wr;
    let mut child2 = fork_child(60, || {
        let mut tx = ctx(builder::<V>(wait).open_producer(n), "takeover")?;
        write_all(wr, b"r");
        // Give the consumer time to block on the empty ring first.
        std::thread::sleep(Duration::from_millis(50));
        for seq in A..A + B {
            ctx(tx.send(&make_msg(seq, 64)), "send")?;
        }
        Ok(())
    });
    assert!(read_exact_timeout(&ready.rd, 1, T).is_some());
    for seq in A..A + B {
        match rx.recv(&mut buf) {
            Ok(_) => expect_seq(&buf, seq).unwrap(),
            Err(e) => panic!("recv of seq {seq} from the replacement producer: {e:?}"),
        }
    }
    child2.expect_ok(T);
    let last = rx.recv(&mut buf);
    assert!(matches!(last, Err(Error::Disconnected)), "{last:?}");
}

/// The surviving producer keeps its handle: after its consumer died (it got
/// PeerDied on a full ring), a replacement consumer attaches, and the same
/// producer's sends reach it.
fn producer_follows_replacement<V: Variant>(wait: WaitStrategy) {
    let _s = serial();
    let _wd = Watchdog::new("producer_follows_replacement", WATCHDOG);
    let name = ShmName::new("pd-follow-p");
    let mut tx = builder::<V>(wait)
        .capacity(4096)
        .create_producer(name.as_str())
        .unwrap();
    let n = name.as_str();
    let mut child = fork_child(60, || {
        let _rx = ctx(builder::<V>(wait).open_consumer(n), "open_consumer")?;
        die_now()
    });
    assert_eq!(child.wait(T), Status::Signaled(libc::SIGKILL));
    let mut sent = 0;
    let r = loop {
        match tx.send(&make_msg(sent, 100)) {
            Ok(()) => sent += 1,
            Err(e) => break e,
        }
    };
    assert!(matches!(r, Error::PeerDied), "{r:?}");
    const MORE: u64 = 100;
    let total = sent + MORE;
    let ready = pipe();
    let wr = &ready.wr;
    let mut child2 = fork_child(60, || {
        let mut rx = ctx(builder::<V>(wait).open_consumer(n), "takeover")?;
        write_all(wr, b"r");
        let mut buf = Vec::new();
        for seq in 0..total {
            ctx(rx.recv(&mut buf), "recv")?;
            expect_seq(&buf, seq)?;
        }
        match rx.recv(&mut buf) {
            Err(Error::Disconnected) => Ok(()),
            r => Err(format!("after the last message: {r:?}")),
        }
    });
    assert!(read_exact_timeout(&ready.rd, 1, T).is_some());
    for seq in sent..total {
        if let Err(e) = tx.send(&make_msg(seq, 100)) {
            panic!("send of seq {seq} to the replacement consumer: {e:?}");
        }
    }
    drop(tx);
    child2.expect_ok(T);
}

#[test]
fn surviving_consumer_follows_replacement_producer() {
    for w in [WaitStrategy::Futex, WaitStrategy::Spin] {
        consumer_follows_replacement::<shmpipe::LockFree>(w);
        consumer_follows_replacement::<shmpipe::Locked>(w);
    }
}

#[test]
fn surviving_producer_follows_replacement_consumer() {
    for w in [WaitStrategy::Futex, WaitStrategy::Spin] {
        producer_follows_replacement::<shmpipe::LockFree>(w);
        producer_follows_replacement::<shmpipe::Locked>(w);
    }
}

/// Two live holders of one role are impossible, in one process or two.
fn role_taken<V: Variant>() {
    let _s = serial();
    let _wd = Watchdog::new("role_taken", WATCHDOG);
    let name = ShmName::new("pd-role");
    let b = builder::<V>(WaitStrategy::Futex);
    let mut tx = b.create_producer(name.as_str()).unwrap();
    let mut rx = b.open_consumer(name.as_str()).unwrap();
    assert!(matches!(
        b.open_producer(name.as_str()),
        Err(Error::RoleTaken { role: "producer" })
    ));
    assert!(matches!(
        b.open_consumer(name.as_str()),
        Err(Error::RoleTaken { role: "consumer" })
    ));
    let n = name.as_str();
    let mut child = fork_child(60, || {
        let b = builder::<V>(WaitStrategy::Futex);
        match b.open_producer(n) {
            Err(Error::RoleTaken { role: "producer" }) => {}
            r => return Err(format!("second producer: {r:?}")),
        }
        match b.open_consumer(n) {
            Err(Error::RoleTaken { role: "consumer" }) => {}
            r => return Err(format!("second consumer: {r:?}")),
        }
        Ok(())
    });
    child.expect_ok(T);
    // The failed attempts left the real endpoints untouched.
    tx.send(&make_msg(0, 32)).unwrap();
    let mut buf = Vec::new();
    rx.recv(&mut buf).unwrap();
    expect_seq(&buf, 0).unwrap();
    let st = tx.stats();
    assert_eq!(st.producer, EndpointState::Attached);
    assert_eq!(st.consumer, EndpointState::Attached);
}

#[test]
fn role_taken_both_variants() {
    role_taken::<shmpipe::LockFree>();
    role_taken::<shmpipe::Locked>();
}

// ---------------------------------------------------------------------------
// Fork inheritance.

/// An anonymous pair split in the parent, then fork: the child inherits both
/// handles. Dropping them in the child does not close the roles (only the
/// process that attached closes a role), so the parent's ring keeps working.
fn fork_inherits_handles<V: Variant>() {
    let _s = serial();
    let _wd = Watchdog::new("fork_inherits_handles", WATCHDOG);
    let (mut tx, mut rx) = Builder::<V>::default()
        .capacity(4096)
        .anonymous()
        .unwrap()
        .split()
        .unwrap();
    tx.send(&make_msg(0, 32)).unwrap();
    let mut slot = Some((tx, rx));
    let sl = &mut slot;
    let mut child = fork_child(60, move || {
        let (tx, rx) = sl.take().ok_or("no handles")?;
        drop(tx);
        drop(rx);
        Ok(())
    });
    child.expect_ok(T);
    (tx, rx) = slot.take().unwrap();
    let st = tx.stats();
    assert_eq!(st.producer, EndpointState::Attached);
    assert_eq!(st.consumer, EndpointState::Attached);
    let mut buf = Vec::new();
    rx.try_recv(&mut buf).unwrap();
    expect_seq(&buf, 0).unwrap();
    assert!(matches!(rx.try_recv(&mut buf), Err(Error::Empty)));
    tx.send(&make_msg(1, 32)).unwrap();
    rx.recv(&mut buf).unwrap();
    expect_seq(&buf, 1).unwrap();
    drop(tx);
    assert!(matches!(rx.recv(&mut buf), Err(Error::Disconnected)));
}

/// The flip side, pinned as documented behaviour: a role's liveness is its
/// lock, and a child forked after the endpoint attached shares that lock.
/// While such a child lives, the endpoint's death is not noticed: the
/// consumer sees a live producer (Timeout, not PeerDied); once the child
/// exits too, PeerDied.
fn forked_child_does_not_keep_role_alive<V: Variant>() {
    let _s = serial();
    let _wd = Watchdog::new("forked_child_does_not_keep_role_alive", WATCHDOG);
    let name = ShmName::new("pd-inherit");
    let mut rx = builder::<V>(WaitStrategy::Futex)
        .create_consumer(name.as_str())
        .unwrap();
    let pids = pipe();
    let (n, wr) = (name.as_str(), &pids.wr);
    let mut child = fork_child(60, || {
        let mut tx = ctx(
            builder::<V>(WaitStrategy::Futex).open_producer(n),
            "open_producer",
        )?;
        ctx(tx.send(&make_msg(0, 32)), "send")?;
        // SAFETY: fork in the (single-threaded) child; the grandchild only
        // sleeps until killed (or its alarm ends it).
        let g = unsafe { libc::fork() };
        if g == 0 {
            // SAFETY: arms a timer only.
            unsafe { libc::alarm(60) };
            sleep_forever();
        }
        write_all(wr, &g.to_le_bytes());
        die_now() // the producer dies; the grandchild inherited its handle
    });
    let g = read_exact_timeout(&pids.rd, 4, T).expect("grandchild pid");
    let g = libc::pid_t::from_le_bytes(g.try_into().unwrap());
    assert!(g > 0);
    assert_eq!(child.wait(T), Status::Signaled(libc::SIGKILL));
    // The grandchild is alive, but the fork handler closed its copy of the
    // producer's role-lock descriptor: the producer's death is seen at once.
    let mut buf = Vec::new();
    rx.recv(&mut buf).unwrap();
    expect_seq(&buf, 0).unwrap();
    let r = rx.recv(&mut buf);
    assert!(matches!(r, Err(Error::PeerDied)), "{r:?}");
    assert!(!shmpipe::inspect(name.as_str()).unwrap().producer_alive);
    // SAFETY: kill(2) on the grandchild (reparented; not ours to reap).
    unsafe { libc::kill(g, libc::SIGKILL) };
}

#[test]
fn fork_inheritance_both_variants() {
    fork_inherits_handles::<shmpipe::LockFree>();
    fork_inherits_handles::<shmpipe::Locked>();
    forked_child_does_not_keep_role_alive::<shmpipe::LockFree>();
    forked_child_does_not_keep_role_alive::<shmpipe::Locked>();
}
