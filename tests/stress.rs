//! Forked stress test: the parent produces a long seeded stream of messages
//! (mostly 0..=256 bytes, now and then up to `max_message`), each carrying a
//! sequence number and a checksum; a forked child receives and verifies
//! every one: exact count, order (no gap, no duplicate), length and bytes.
//! Run for every wait strategy and both variants over an anonymous memfd,
//! and once per variant over a named segment that the child opens by name.
//!
//! The producer mostly uses blocking `send`, and on some messages `claim` +
//! `commit`, `claim` + `commit_len` (shorter than claimed) or a `try_send`
//! retry loop; the consumer mixes `recv`, `recv_with` and `drain`.
//!
//! Message count: `SHMPIPE_STRESS_MESSAGES` (default 1,000,000 per test).
//! The tests take [`common::serial`], so they run one at a time: each needs
//! both CPUs of a 2-core machine, and the `Spin` strategies get slow (but
//! still finish) when another busy process shares those cores.
//! Timing: see the note at the bottom.

#[macro_use]
mod common;

use std::time::{Duration, Instant};

use common::{
    builder, fork_with, serial, test_seed, Consumer, Error, MsgStream, Producer, Rng, ShmName,
    Variant, Verifier, WaitStrategy,
};

/// Data-area size: 64 KiB, so that `max_message` (32 KiB - 8) messages and
/// frequent wraps both happen.
const CAPACITY: u64 = 64 * 1024;

fn message_count() -> u64 {
    std::env::var("SHMPIPE_STRESS_MESSAGES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000_000)
}

/// Each side pauses once per this many messages, for `PAUSE`; with a
/// sleeping strategy, until the peer's thread is seen asleep (`Peer`).
const PAUSE_EVERY: u64 = 50_000;
const PAUSE: Duration = Duration::from_millis(3);
/// The longest a pause waits for the peer to fall asleep.
const PAUSE_MAX: Duration = Duration::from_secs(2);

/// The peer's thread, for a pause that waits until it sleeps: a fixed pause
/// was not enough on a loaded machine, where a waiting side's backoff
/// (`sched_yield` between polls) can give its CPU away for a whole time
/// slice per yield, so it reaches its futex only tens of milliseconds
/// after the ring filled or emptied, and no wake-up syscall ever showed.
struct Peer {
    /// `/proc/<pid>/task/<tid>/stat`, or `None` for a strategy that never
    /// sleeps (a fixed pause is enough to make it wait).
    stat: Option<String>,
}

impl Peer {
    fn new(wait: WaitStrategy, pid: libc::pid_t, tid: libc::pid_t) -> Self {
        let sleeps = matches!(wait, WaitStrategy::Futex | WaitStrategy::Semaphore);
        Peer {
            stat: sleeps.then(|| format!("/proc/{pid}/task/{tid}/stat")),
        }
    }

    /// Whether the thread is in an interruptible sleep (state `S`: the
    /// futex or semaphore wait; its backoff's `sched_yield` leaves it `R`).
    fn asleep(path: &str) -> bool {
        std::fs::read_to_string(path)
            .ok()
            .and_then(|s| {
                s.rsplit_once(')')
                    .map(|(_, rest)| rest.trim_start().starts_with('S'))
            })
            .unwrap_or(false)
    }

    /// Pause so that the peer runs into a full or empty ring and waits.
    fn pause(&self) {
        std::thread::sleep(PAUSE);
        if let Some(path) = &self.stat {
            let start = Instant::now();
            while !Self::asleep(path) && start.elapsed() < PAUSE_MAX {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
    }
}

/// This thread's id (the producer's, recorded before the fork).
fn gettid() -> libc::pid_t {
    // SAFETY: gettid takes no arguments and cannot fail.
    unsafe { libc::gettid() }
}

/// Deadline for the producer's whole run and then for the child to finish.
const PRODUCER_DEADLINE: Duration = Duration::from_secs(600);
const CHILD_DEADLINE: Duration = Duration::from_secs(120);

fn produce<V: Variant>(
    tx: &mut Producer<V>,
    peer: &Peer,
    stream: MsgStream,
    count: u64,
    seed: u64,
) -> Result<(), String> {
    let mut rng = Rng::new(seed ^ 0xfeed_f00d);
    let mut msg = Vec::new();
    let max = tx.max_message();
    let mut kinds = [0u64; 4];
    for seq in 0..count {
        if seq % PAUSE_EVERY == PAUSE_EVERY / 2 {
            // Let the consumer run dry, so that it really waits (and sleeps).
            peer.pause();
        }
        let len = stream.len_of(seq);
        let at = |e: Error| format!("producer, message {seq} ({len} bytes): {e}");
        match rng.below(16) {
            0 | 1 => {
                // Zero-copy: write the message in place.
                let mut c = tx.claim(len).map_err(at)?;
                stream.fill(seq, &mut c);
                c.commit();
                kinds[0] += 1;
            }
            2 => {
                // Claim more than needed, commit only the message.
                let extra = (rng.below(200) as usize).min(max - len);
                let mut c = tx.claim(len + extra).map_err(at)?;
                c[len..].fill(0xee);
                stream.fill(seq, &mut c[..len]);
                c.commit_len(len);
                kinds[1] += 1;
            }
            3 => {
                stream.message(seq, &mut msg);
                loop {
                    match tx.try_send(&msg) {
                        Ok(()) => break,
                        Err(Error::Full) => std::thread::yield_now(),
                        Err(e) => return Err(at(e)),
                    }
                }
                kinds[2] += 1;
            }
            _ => {
                stream.message(seq, &mut msg);
                tx.send(&msg).map_err(at)?;
                kinds[3] += 1;
            }
        }
    }
    if kinds.contains(&0) && count >= 1000 {
        return Err(format!("some send kind never ran: {kinds:?}"));
    }
    let st = tx.stats();
    if st.messages_sent != count {
        return Err(format!(
            "stats.messages_sent = {}, expected {count}",
            st.messages_sent
        ));
    }
    Ok(())
}

fn consume<V: Variant>(
    mut rx: Consumer<V>,
    peer: &Peer,
    stream: MsgStream,
    count: u64,
    seed: u64,
) -> Result<(), String> {
    let mut v = Verifier::new(stream);
    let mut rng = Rng::new(seed ^ 0xc0ff_ee00);
    let mut buf = Vec::new();
    let mut kinds = [0u64; 3];
    let mut next_pause = PAUSE_EVERY;
    loop {
        if v.next >= next_pause && v.next < count {
            // Let the producer fill the ring, so that it really waits.
            peer.pause();
            next_pause += PAUSE_EVERY;
        }
        let r: Result<Result<(), String>, Error> = match rng.below(8) {
            0 | 1 => {
                let mut bad = Ok(());
                let max = 1 + rng.below(64) as usize;
                rx.drain(max, |m| {
                    if bad.is_ok() {
                        bad = v.check(m);
                    }
                })
                .map(|n| {
                    kinds[0] += n as u64;
                    bad
                })
            }
            2 | 3 => {
                kinds[1] += 1;
                rx.recv_with(|m| v.check(m))
            }
            _ => {
                kinds[2] += 1;
                rx.recv(&mut buf).map(|n| {
                    if n != buf.len() {
                        return Err(format!("recv returned {n} for {} bytes", buf.len()));
                    }
                    v.check(&buf)
                })
            }
        };
        match r {
            Ok(Ok(())) => {}
            Ok(Err(bad)) => return Err(format!("consumer: {bad}")),
            Err(Error::Disconnected) => break,
            Err(e) => return Err(format!("consumer, after {} messages: {e}", v.next)),
        }
        if v.next > count {
            return Err(format!("more than the {count} messages sent"));
        }
    }
    if v.next != count {
        return Err(format!(
            "Disconnected after {} messages, expected {count}",
            v.next
        ));
    }
    if count >= 1000 && kinds.contains(&0) {
        return Err(format!("some receive kind never ran: {kinds:?}"));
    }
    let st = rx.stats();
    if st.messages_received != count || st.messages_sent != count || st.used_bytes != 0 {
        return Err(format!("final stats {st:?}"));
    }
    // The pauses made each side wait for the other; with a sleeping
    // strategy each side must also have been woken by a syscall.
    let sleeps = matches!(
        rx.wait_strategy(),
        WaitStrategy::Futex | WaitStrategy::Semaphore
    );
    if count >= 10 * PAUSE_EVERY
        && (st.full_waits == 0
            || st.empty_waits == 0
            || (sleeps && (st.producer_wake_syscalls == 0 || st.consumer_wake_syscalls == 0)))
    {
        return Err(format!("the pauses did not show in the stats: {st:?}"));
    }
    Ok(())
}

fn stress<V: Variant>(wait: WaitStrategy, named: bool, capacity: u64, count: u64) {
    let _serial = serial();
    let seed = test_seed();
    let ctx = format!(
        "{} ring, {wait}, {}, capacity {capacity}, {count} messages, SHMPIPE_TEST_SEED={seed}",
        V::NAME,
        if named { "named" } else { "anonymous" }
    );
    let b = builder::<V>().capacity(capacity).wait(wait);
    let stream = MsgStream::new(seed, shmpipe::max_message_for(capacity));
    let start = Instant::now();
    // The producer runs on this thread, in this process; the child's
    // consumer on its only thread.
    let parent = Peer::new(wait, std::process::id() as libc::pid_t, gettid());

    let (child, mut tx, _name) = if named {
        let name = ShmName::new("stress");
        let tx = b
            .create_producer(&name)
            .unwrap_or_else(|e| panic!("{ctx}: create_producer: {e}"));
        let (child, ()) = fork_with((), |()| {
            let rx = b
                .open_consumer(&name)
                .map_err(|e| format!("open_consumer: {e}"))?;
            consume(rx, &parent, stream, count, seed)
        });
        (child, tx, Some(name))
    } else {
        let pair = b
            .anonymous()
            .unwrap_or_else(|e| panic!("{ctx}: anonymous: {e}"));
        let (child, pair) = fork_with(pair, |pair| {
            let rx = pair
                .into_consumer()
                .map_err(|e| format!("into_consumer: {e}"))?;
            consume(rx, &parent, stream, count, seed)
        });
        let tx = pair
            .into_producer()
            .unwrap_or_else(|e| panic!("{ctx}: into_producer: {e}"));
        (child, tx, None)
    };

    let wd = child.watchdog(PRODUCER_DEADLINE, &ctx);
    let produced = produce(
        &mut tx,
        &Peer::new(wait, child.pid(), child.pid()),
        stream,
        count,
        seed,
    );
    drop(tx); // orderly close: the child drains everything, then sees Disconnected
    drop(wd);
    let waited = child.wait(CHILD_DEADLINE);
    if std::env::var_os("SHMPIPE_TEST_VERBOSE").is_some() {
        eprintln!("{ctx}: {:?}", start.elapsed());
    }
    if let Err(e) = produced {
        panic!("{ctx}: {e}; child: {waited:?}");
    }
    if let Err(e) = waited {
        panic!("{ctx}: {e}");
    }
}

fn stress_spin<V: Variant>() {
    stress::<V>(WaitStrategy::Spin, false, CAPACITY, message_count());
}

fn stress_spin_yield<V: Variant>() {
    stress::<V>(WaitStrategy::SpinYield, false, CAPACITY, message_count());
}

fn stress_futex<V: Variant>() {
    stress::<V>(WaitStrategy::Futex, false, CAPACITY, message_count());
}

fn stress_semaphore<V: Variant>() {
    stress::<V>(WaitStrategy::Semaphore, false, CAPACITY, message_count());
}

/// Over a named segment: the child opens it by name after the fork.
fn stress_named<V: Variant>() {
    stress::<V>(WaitStrategy::Futex, true, CAPACITY, message_count());
}

/// A 256-byte ring (messages up to 120 bytes): a wrap every few messages,
/// and the ring is full most of the time.
fn stress_small_ring_futex<V: Variant>() {
    stress::<V>(WaitStrategy::Futex, false, 256, message_count() / 2);
}

fn stress_small_ring_semaphore<V: Variant>() {
    stress::<V>(WaitStrategy::Semaphore, false, 256, message_count() / 2);
}

variant_tests!(
    stress_spin,
    stress_spin_yield,
    stress_futex,
    stress_semaphore,
    stress_named,
    stress_small_ring_futex,
    stress_small_ring_semaphore
);

/// The generator and verifier themselves: a corrupted, dropped or repeated
/// message is caught (so the stress tests cannot pass vacuously).
#[test]
fn verifier_catches_damage() {
    let s = MsgStream::new(7, 1000);
    let mut m = Vec::new();
    let mut sizes = std::collections::BTreeSet::new();
    let mut v = Verifier::new(s);
    for seq in 0..5000 {
        s.message(seq, &mut m);
        sizes.insert(m.len());
        v.check(&m).unwrap();
    }
    assert!(sizes.contains(&0) && sizes.contains(&1000) && sizes.iter().any(|&l| l > 256));
    // A gap.
    let mut v = Verifier::new(s);
    s.message(1, &mut m);
    assert!(v.check(&m).is_err());
    // A duplicate.
    let mut v = Verifier::new(s);
    for seq in [0, 1, 2] {
        s.message(seq, &mut m);
        v.check(&m).unwrap();
    }
    assert!(v.check(&m).unwrap_err().contains("duplicate"));
    // A flipped bit anywhere, or a wrong length.
    for seq in 0..200 {
        s.message(seq, &mut m);
        for i in 0..m.len() {
            let mut d = m.clone();
            d[i] ^= 0x10;
            assert!(
                s.verify(seq, &d, &mut Vec::new()).is_err(),
                "seq {seq} byte {i}"
            );
        }
        let mut d = m.clone();
        d.push(0);
        assert!(s.verify(seq, &d, &mut Vec::new()).is_err());
        if !m.is_empty() {
            assert!(s.verify(seq, &m[..m.len() - 1], &mut Vec::new()).is_err());
        }
    }
}

// Timing (release, 2 shared cores, load average ~8 from other jobs): the
// whole file takes 60-100 s. Each 1,000,000-message run takes 1-6 s except
// `Spin`, which needs both cores to itself: 10-45 s with the other load
// (the locked ring with `Spin` is the slowest). That is well under the
// 4-minute budget, so every variant and strategy runs the full 1,000,000
// messages (the 256-byte ring runs 500,000).
