//! Model test: random sequences of ring operations, run against an oracle
//! (a `VecDeque` of messages plus exact byte accounting of the ring) that
//! predicts the result of every operation, including `Full`.
//!
//! The oracle follows the record rules of the on-memory format: a message of
//! `len` bytes takes a record of `8 + round_up(len, 8)` bytes; a record that
//! does not fit before the end of the data area is preceded by a padding
//! record that fills the rest of it; the producer has room when
//! `tail + padding + record - head <= capacity`. A claim reserves (and pads)
//! for the claimed length; `commit_len(n)` then takes `record(n)` bytes.
//!
//! Small capacities (64..4096 bytes) make the ring wrap every few messages.
//! Every test runs on the three backings (named segment, anonymous memfd,
//! heap) and both variants; a differential test checks that the lock-free
//! and the locked ring give identical observable results.

#[macro_use]
mod common;

use std::collections::VecDeque;
use std::io::Write;
use std::time::Duration;

use common::{builder, make_pair, Backing, MsgStream, Variant, Watchdog};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestError, TestRunner};
use shmpipe::{EndpointState, Error, LockFree, Locked, WaitStrategy};

/// A message length, resolved against the ring's `max_message`.
#[derive(Debug, Clone, Copy)]
enum Len {
    /// Exactly this many bytes (tiny messages, many per record size).
    Small(usize),
    /// `frac / 65536` of `max + 2`: anything from 0 to `max + 1`.
    Frac(u16),
    /// Exactly `max_message`.
    Max,
    /// `max_message - d`.
    BelowMax(usize),
    /// `max_message + 1`: must be `TooLarge`.
    MaxPlus1,
    /// Far too large (`usize::MAX` for claims, `max + 1000` for sends).
    Huge,
}

impl Len {
    fn resolve(self, max: usize, claim: bool) -> usize {
        match self {
            Len::Small(n) => n,
            Len::Frac(f) => ((max as u64 + 2) * u64::from(f) / 65536) as usize,
            Len::Max => max,
            Len::BelowMax(d) => max.saturating_sub(d),
            Len::MaxPlus1 => max + 1,
            Len::Huge if claim => usize::MAX,
            Len::Huge => max + 1000,
        }
    }
}

/// How a claim ends.
#[derive(Debug, Clone, Copy)]
enum Commit {
    All,
    /// `commit_len(n % (len + 3))`: shorter, equal, or longer (clamped).
    Len(usize),
    /// Drop the claim: nothing is delivered.
    Abort,
}

#[derive(Debug, Clone, Copy)]
enum Op {
    TrySend(Len),
    /// Blocking `send` when the oracle predicts room, else
    /// `send_timeout(ZERO)` (which must time out).
    Send(Len),
    SendTimeout(Len),
    /// `io::Write::write` (one message of up to `max` bytes); skipped when
    /// the oracle predicts no room, since it would block.
    Write(Len),
    TryClaim(Len, Commit),
    /// Blocking `claim` when there is room, else `claim_timeout(ZERO)`.
    Claim(Len, Commit),
    TryRecv,
    TryRecvWith,
    /// Blocking `recv`/`recv_with` when a message waits, else
    /// `recv_timeout(ZERO)` (which must time out).
    Recv,
    RecvTimeoutWith,
    Drain(usize),
}

fn len_strategy() -> impl Strategy<Value = Len> {
    prop_oneof![
        4 => (0usize..=24).prop_map(Len::Small),
        4 => any::<u16>().prop_map(Len::Frac),
        1 => Just(Len::Max),
        1 => (0usize..=16).prop_map(Len::BelowMax),
        1 => Just(Len::MaxPlus1),
        1 => Just(Len::Huge),
    ]
}

fn commit_strategy() -> impl Strategy<Value = Commit> {
    prop_oneof![
        2 => Just(Commit::All),
        2 => any::<usize>().prop_map(Commit::Len),
        1 => Just(Commit::Abort),
    ]
}

fn op_strategy() -> impl Strategy<Value = Op> {
    // Roughly as many sends as receives, so the ring keeps going from empty
    // to full and back.
    prop_oneof![
        4 => len_strategy().prop_map(Op::TrySend),
        2 => len_strategy().prop_map(Op::Send),
        1 => len_strategy().prop_map(Op::SendTimeout),
        1 => len_strategy().prop_map(Op::Write),
        2 => (len_strategy(), commit_strategy()).prop_map(|(l, c)| Op::TryClaim(l, c)),
        1 => (len_strategy(), commit_strategy()).prop_map(|(l, c)| Op::Claim(l, c)),
        4 => Just(Op::TryRecv),
        2 => Just(Op::TryRecvWith),
        2 => Just(Op::Recv),
        1 => Just(Op::RecvTimeoutWith),
        2 => (0usize..=6).prop_map(Op::Drain),
    ]
}

fn wait_strategy() -> impl Strategy<Value = WaitStrategy> {
    prop_oneof![
        Just(WaitStrategy::Spin),
        Just(WaitStrategy::SpinYield),
        Just(WaitStrategy::Futex),
        Just(WaitStrategy::Semaphore),
    ]
}

#[derive(Debug, Clone)]
struct Case {
    capacity: u64,
    wait: WaitStrategy,
    ops: Vec<Op>,
}

fn case_strategy() -> impl Strategy<Value = Case> {
    (
        prop_oneof![Just(64u64), Just(128), Just(256), Just(4096)],
        wait_strategy(),
        prop::collection::vec(op_strategy(), 1..300),
    )
        .prop_map(|(capacity, wait, ops)| Case {
            capacity,
            wait,
            ops,
        })
}

// ---------------------------------------------------------------------------
// The oracle

/// What the ring must contain, byte for byte.
#[derive(Debug)]
struct Oracle {
    cap: u64,
    max: usize,
    head: u64,
    tail: u64,
    /// Committed, unread messages and the head position after each.
    q: VecDeque<(Vec<u8>, u64)>,
    sent: u64,
    bytes_sent: u64,
    received: u64,
    bytes_received: u64,
    full_waits: u64,
    empty_waits: u64,
    /// Padding records written (wraps).
    pads: u64,
}

fn record(len: usize) -> u64 {
    8 + ((len as u64 + 7) & !7)
}

impl Oracle {
    fn new(cap: u64) -> Self {
        Oracle {
            cap,
            max: (cap / 2 - 8) as usize,
            head: 0,
            tail: 0,
            q: VecDeque::new(),
            sent: 0,
            bytes_sent: 0,
            received: 0,
            bytes_received: 0,
            full_waits: 0,
            empty_waits: 0,
            pads: 0,
        }
    }

    /// Padding needed before a record of `len` bytes, if it fits now.
    fn room(&self, len: usize) -> Option<u64> {
        let rec = record(len);
        let contiguous = self.cap - self.tail % self.cap;
        let pad = if contiguous >= rec { 0 } else { contiguous };
        (self.tail + pad + rec + 8 - self.head <= self.cap).then_some(pad)
    }

    fn push(&mut self, pad: u64, msg: Vec<u8>) {
        self.tail += pad + record(msg.len());
        self.pads += (pad > 0) as u64;
        self.sent += 1;
        self.bytes_sent += msg.len() as u64;
        self.q.push_back((msg, self.tail));
    }

    fn pop(&mut self) -> Option<Vec<u8>> {
        let (msg, next) = self.q.pop_front()?;
        self.head = next;
        self.received += 1;
        self.bytes_received += msg.len() as u64;
        Some(msg)
    }

    fn used(&self) -> u64 {
        self.tail - self.head
    }
}

/// What an operation must return.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Want {
    Full,
    Empty,
    Timeout,
    TooLarge { len: usize, max: usize },
    Disconnected,
}

fn matches_want(e: &Error, w: Want) -> bool {
    match (e, w) {
        (Error::Full, Want::Full)
        | (Error::Empty, Want::Empty)
        | (Error::Timeout, Want::Timeout)
        | (Error::Disconnected, Want::Disconnected) => true,
        (Error::TooLarge { len, max }, Want::TooLarge { len: l, max: m }) => *len == l && *max == m,
        _ => false,
    }
}

/// One observable result, for the differential test.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Outcome {
    Sent,
    Failed(Want),
    Got(Vec<u8>),
    Drained(Vec<Vec<u8>>),
    Wrote(usize),
    Skipped,
}

macro_rules! ensure {
    ($cond:expr, $($fmt:tt)*) => {
        if !$cond {
            return Err(format!($($fmt)*));
        }
    };
}

/// Check an error result against the wanted error.
fn expect_err<T: std::fmt::Debug>(r: Result<T, Error>, w: Want, what: &str) -> Result<(), String> {
    match r {
        Err(e) if matches_want(&e, w) => Ok(()),
        other => Err(format!("{what}: expected {w:?}, got {other:?}")),
    }
}

fn bytes_eq(got: &[u8], want: &[u8], what: &str) -> Result<(), String> {
    ensure!(
        got == want,
        "{what}: delivered {} bytes {:?}.., expected {} bytes {:?}..",
        got.len(),
        &got[..got.len().min(24)],
        want.len(),
        &want[..want.len().min(24)]
    );
    Ok(())
}

/// Run `case` on a fresh ring of variant `V` on `backing`, checking every
/// result against the oracle. Returns the observable trace.
/// What a run observed, and how many padding records it caused.
struct Run {
    trace: Vec<Outcome>,
    pads: u64,
}

fn run_model<V: Variant>(backing: Backing, case: &Case) -> Result<Run, String> {
    let b = builder::<V>().capacity(case.capacity).wait(case.wait);
    let ends = make_pair(&b, backing).map_err(|e| format!("making the ring: {e}"))?;
    let (mut tx, mut rx, _name) = (ends.tx, ends.rx, ends.name);
    let mut o = Oracle::new(case.capacity);
    ensure!(
        tx.max_message() == o.max && rx.max_message() == o.max,
        "max_message {} / {} != capacity/2 - 8 = {}",
        tx.max_message(),
        rx.max_message(),
        o.max
    );
    ensure!(
        shmpipe::max_message_for(case.capacity) == o.max,
        "max_message_for"
    );
    ensure!(
        tx.capacity() == case.capacity && rx.capacity() == case.capacity,
        "capacity()"
    );
    ensure!(
        tx.wait_strategy() == case.wait && rx.wait_strategy() == case.wait,
        "wait_strategy()"
    );

    let stream = MsgStream::new(0x5eed ^ case.capacity, o.max);
    let mut seq = 0u64;
    let mut make = |len: usize| {
        let mut m = vec![0u8; len];
        stream.fill(seq, &mut m);
        seq += 1;
        m
    };
    let mut trace = Vec::with_capacity(case.ops.len());
    let mut buf = Vec::new();
    let zero = Duration::ZERO;

    for (i, &op) in case.ops.iter().enumerate() {
        let ctx = |what: &str| format!("op {i} {op:?}: {what}");
        let max = o.max;
        let outcome = match op {
            Op::TrySend(l) | Op::Send(l) | Op::SendTimeout(l) => {
                let len = l.resolve(max, false);
                let msg = make(len);
                let room = o.room(len);
                let blocking = !matches!(op, Op::TrySend(_));
                let r = match op {
                    Op::Send(_) if len > max || room.is_some() => tx.send(&msg),
                    Op::TrySend(_) => tx.try_send(&msg),
                    _ => tx.send_timeout(&msg, zero),
                };
                let want = if len > max {
                    Some(Want::TooLarge { len, max })
                } else if room.is_none() {
                    o.full_waits += blocking as u64;
                    Some(if blocking { Want::Timeout } else { Want::Full })
                } else {
                    None
                };
                match (want, room) {
                    (Some(w), _) => {
                        expect_err(r, w, &ctx("send"))?;
                        Outcome::Failed(w)
                    }
                    (None, Some(pad)) => {
                        r.map_err(|e| ctx(&format!("send failed with room: {e:?}")))?;
                        o.push(pad, msg);
                        Outcome::Sent
                    }
                    (None, None) => unreachable!(),
                }
            }
            Op::Write(l) => {
                let len = l.resolve(max, false);
                let msg = make(len);
                let n = len.min(max);
                match o.room(n) {
                    None => Outcome::Skipped,
                    Some(pad) => {
                        let r = tx.write(&msg);
                        match r {
                            Ok(w) if w == n => {}
                            other => return Err(ctx(&format!("write: {other:?}, expected {n}"))),
                        }
                        o.push(pad, msg[..n].to_vec());
                        Outcome::Wrote(n)
                    }
                }
            }
            Op::TryClaim(l, commit) | Op::Claim(l, commit) => {
                let len = l.resolve(max, true);
                let room = if len > max { None } else { o.room(len) };
                let blocking = matches!(op, Op::Claim(..));
                let r = if !blocking {
                    tx.try_claim(len)
                } else if len > max || room.is_some() {
                    tx.claim(len)
                } else {
                    tx.claim_timeout(len, zero)
                };
                if len > max {
                    let w = Want::TooLarge { len, max };
                    expect_err(r.map(|c| c.len()), w, &ctx("claim"))?;
                    Outcome::Failed(w)
                } else if let Some(pad) = room {
                    let mut c = r.map_err(|e| ctx(&format!("claim failed with room: {e:?}")))?;
                    ensure!(c.len() == len, "{}", ctx(&format!("claim len {}", c.len())));
                    let msg = make(len);
                    c.copy_from_slice(&msg);
                    match commit {
                        Commit::All => {
                            c.commit();
                            o.push(pad, msg);
                            Outcome::Sent
                        }
                        Commit::Len(n) => {
                            let n = n % (len + 3);
                            c.commit_len(n);
                            o.push(pad, msg[..n.min(len)].to_vec());
                            Outcome::Sent
                        }
                        Commit::Abort => {
                            drop(c);
                            Outcome::Skipped
                        }
                    }
                } else {
                    o.full_waits += blocking as u64;
                    let w = if blocking { Want::Timeout } else { Want::Full };
                    expect_err(r.map(|c| c.len()), w, &ctx("claim"))?;
                    Outcome::Failed(w)
                }
            }
            Op::TryRecv | Op::TryRecvWith | Op::Recv | Op::RecvTimeoutWith => {
                buf.clear();
                buf.extend_from_slice(b"stale bytes that must be replaced");
                let front = o.q.front().map(|(m, _)| m.clone());
                let r: Result<Vec<u8>, Error> = match op {
                    Op::TryRecv => rx.try_recv(&mut buf).map(|n| {
                        assert_eq!(n, buf.len(), "try_recv returned a length != buf.len()");
                        buf.clone()
                    }),
                    Op::TryRecvWith => rx.try_recv_with(|m| m.to_vec()),
                    Op::Recv if front.is_some() && i % 2 == 0 => rx.recv(&mut buf).map(|n| {
                        assert_eq!(n, buf.len(), "recv returned a length != buf.len()");
                        buf.clone()
                    }),
                    Op::Recv if front.is_some() => rx.recv_with(|m| m.to_vec()),
                    Op::Recv => rx.recv_timeout(&mut buf, zero).map(|_| buf.clone()),
                    _ => rx.recv_with_timeout(zero, |m| m.to_vec()),
                };
                match front {
                    Some(want) => {
                        let got = r.map_err(|e| ctx(&format!("receive failed: {e:?}")))?;
                        bytes_eq(&got, &want, &ctx("receive"))?;
                        o.pop();
                        Outcome::Got(got)
                    }
                    None => {
                        let w = if matches!(op, Op::TryRecv | Op::TryRecvWith) {
                            Want::Empty
                        } else {
                            o.empty_waits += 1;
                            Want::Timeout
                        };
                        expect_err(r, w, &ctx("receive on empty"))?;
                        Outcome::Failed(w)
                    }
                }
            }
            Op::Drain(k) => {
                let mut got = Vec::new();
                let r = rx.drain(k, |m| got.push(m.to_vec()));
                let n = r.map_err(|e| ctx(&format!("drain failed: {e:?}")))?;
                let want_n = k.min(o.q.len());
                ensure!(
                    n == want_n && got.len() == n,
                    "{}",
                    ctx(&format!(
                        "drain returned {n} and delivered {}, expected {want_n}",
                        got.len()
                    ))
                );
                for (j, g) in got.iter().enumerate() {
                    let want = o.pop().unwrap_or_default();
                    bytes_eq(g, &want, &ctx(&format!("drain message {j}")))?;
                }
                Outcome::Drained(got)
            }
        };
        trace.push(outcome);
        check_counters(
            &o,
            &tx.stats(),
            tx.len_bytes(),
            rx.len_bytes(),
            rx.is_empty(),
        )
        .map_err(|e| ctx(&e))?;
        ensure!(tx.is_empty() == (o.used() == 0), "{}", ctx("tx.is_empty()"));
    }

    // Orderly close: the consumer gets every message left, then Disconnected.
    let st = rx.stats();
    ensure!(
        st.producer == EndpointState::Attached && st.consumer == EndpointState::Attached,
        "endpoint states before close: {:?} / {:?}",
        st.producer,
        st.consumer
    );
    drop(tx);
    ensure!(
        rx.stats().producer == EndpointState::Closed,
        "producer state after drop: {:?}",
        rx.stats().producer
    );
    let mut j = 0;
    while let Some(want) = o.q.front().map(|(m, _)| m.clone()) {
        let got = if j % 2 == 0 {
            rx.try_recv(&mut buf).map(|_| buf.clone())
        } else {
            let mut v = Vec::new();
            rx.drain(1, |m| v.push(m.to_vec())).and_then(|n| {
                if n == 1 && v.len() == 1 {
                    Ok(v.remove(0))
                } else {
                    Err(Error::Empty)
                }
            })
        };
        let got = got.map_err(|e| {
            format!(
                "after the producer closed, {} messages were left but receiving gave {e:?}",
                o.q.len()
            )
        })?;
        bytes_eq(&got, &want, "draining after close")?;
        o.pop();
        trace.push(Outcome::Got(got));
        j += 1;
    }
    expect_err(
        rx.try_recv(&mut buf),
        Want::Disconnected,
        "try_recv after close",
    )?;
    expect_err(
        rx.try_recv_with(|m| m.len()),
        Want::Disconnected,
        "try_recv_with after close",
    )?;
    expect_err(rx.recv(&mut buf), Want::Disconnected, "recv after close")?;
    expect_err(
        rx.recv_timeout(&mut buf, zero),
        Want::Disconnected,
        "recv_timeout after close",
    )?;
    expect_err(rx.drain(5, |_| ()), Want::Disconnected, "drain after close")?;
    let st = rx.stats();
    ensure!(
        st.messages_received == o.sent && st.bytes_received == o.bytes_sent,
        "final stats {st:?}: expected {} messages / {} bytes received",
        o.sent,
        o.bytes_sent
    );
    ensure!(
        rx.is_empty() && rx.stats().used_bytes == 0,
        "consumer not empty at the end"
    );
    Ok(Run {
        trace,
        pads: o.pads,
    })
}

fn check_counters(
    o: &Oracle,
    st: &shmpipe::Stats,
    tx_len: u64,
    rx_len: u64,
    rx_empty: bool,
) -> Result<(), String> {
    ensure!(
        tx_len == o.used() && rx_len == o.used() && st.used_bytes == o.used(),
        "len(): producer {tx_len}, consumer {rx_len}, stats {}; oracle {} (head {}, tail {})",
        st.used_bytes,
        o.used(),
        o.head,
        o.tail
    );
    ensure!(rx_empty == (o.used() == 0), "rx.is_empty() = {rx_empty}");
    ensure!(st.capacity == o.cap, "stats.capacity");
    ensure!(
        st.messages_sent == o.sent && st.bytes_sent == o.bytes_sent,
        "stats sent {}/{} bytes, oracle {}/{}",
        st.messages_sent,
        st.bytes_sent,
        o.sent,
        o.bytes_sent
    );
    ensure!(
        st.messages_received == o.received && st.bytes_received == o.bytes_received,
        "stats received {}/{} bytes, oracle {}/{}",
        st.messages_received,
        st.bytes_received,
        o.received,
        o.bytes_received
    );
    ensure!(
        st.full_waits == o.full_waits && st.empty_waits == o.empty_waits,
        "stats full_waits {} empty_waits {}, oracle {} {}",
        st.full_waits,
        st.empty_waits,
        o.full_waits,
        o.empty_waits
    );
    // Nobody ever sleeps in a single-threaded run: no wake-up syscall is due.
    ensure!(
        st.producer_wake_syscalls == 0 && st.consumer_wake_syscalls == 0,
        "wake syscalls without a sleeper: {} / {}",
        st.producer_wake_syscalls,
        st.consumer_wake_syscalls
    );
    Ok(())
}

// ---------------------------------------------------------------------------
// Runners

fn config() -> Config {
    let mut c = Config {
        failure_persistence: None,
        ..Config::default()
    };
    if std::env::var_os("PROPTEST_CASES").is_none() {
        c.cases = 192;
    }
    c
}

/// Run `test` on random cases; then check that the cases, taken together,
/// did reach every interesting state (so the test cannot pass vacuously).
fn run_prop(what: &str, test: impl Fn(&Case) -> Result<Run, String>) {
    let _wd = Watchdog::arm(None, Duration::from_secs(300), what);
    let config = config();
    let cases = config.cases;
    let mut runner = TestRunner::new(config);
    // [pads, Full, TooLarge, Timeout, Empty, messages received]
    let seen = std::cell::RefCell::new([0u64; 6]);
    let r = runner.run(&case_strategy(), |case| {
        let run = test(&case).map_err(TestCaseError::fail)?;
        let mut s = seen.borrow_mut();
        s[0] += run.pads;
        for o in &run.trace {
            match o {
                Outcome::Failed(Want::Full) => s[1] += 1,
                Outcome::Failed(Want::TooLarge { .. }) => s[2] += 1,
                Outcome::Failed(Want::Timeout) => s[3] += 1,
                Outcome::Failed(Want::Empty) => s[4] += 1,
                Outcome::Got(_) | Outcome::Drained(_) => s[5] += 1,
                _ => {}
            }
        }
        Ok(())
    });
    match r {
        Ok(()) => {}
        Err(TestError::Fail(reason, case)) => {
            panic!("{what}: {reason}\nminimal failing case: {case:#?}")
        }
        Err(e) => panic!("{what}: {e}"),
    }
    let s = seen.into_inner();
    if cases >= 32 {
        assert!(
            s.iter().all(|&n| n > 0),
            "{what}: some state was never reached \
             [pads, Full, TooLarge, Timeout, Empty, received] = {s:?}"
        );
    }
}

fn model_named<V: Variant>() {
    run_prop("model, named segment", |c| {
        run_model::<V>(Backing::Named, c)
    });
}

fn model_anonymous<V: Variant>() {
    run_prop("model, anonymous memfd", |c| {
        run_model::<V>(Backing::Anonymous, c)
    });
}

fn model_in_process<V: Variant>() {
    run_prop("model, in process", |c| {
        run_model::<V>(Backing::InProcess, c)
    });
}

/// The same operations on a lock-free and a locked ring give the same
/// results and deliver the same bytes.
#[test]
fn differential_lock_free_vs_locked() {
    run_prop("differential", |c| {
        let mut last = None;
        for backing in [Backing::InProcess, Backing::Anonymous] {
            let a = run_model::<LockFree>(backing, c)?;
            let b = run_model::<Locked>(backing, c)?;
            let (ta, tb) = (&a.trace, &b.trace);
            ensure!(ta.len() == tb.len(), "traces differ in length");
            if let Some(i) = ta.iter().zip(tb).position(|(x, y)| x != y) {
                return Err(format!(
                    "{backing:?}: step {i} differs: lock-free {:?}, locked {:?}",
                    ta[i], tb[i]
                ));
            }
            ensure!(a.pads == b.pads, "padding counts differ");
            last = Some(a);
        }
        last.ok_or_else(|| "no backing ran".to_string())
    });
}

/// A fixed sequence that walks the wrap point with every record size, so the
/// padding rule is exercised even if the random cases were unlucky.
fn wrap_walk<V: Variant>() {
    for cap in [64u64, 128, 256] {
        for backing in Backing::ALL {
            let max = (cap / 2 - 8) as usize;
            let mut ops = Vec::new();
            for len in 0..=max {
                ops.push(Op::TrySend(Len::Small(len)));
                ops.push(Op::TrySend(Len::Small(max - len)));
                ops.push(Op::TryRecv);
                ops.push(Op::TryClaim(Len::Small(len), Commit::Len(len / 2)));
                ops.push(Op::Drain(2));
                ops.push(Op::TrySend(Len::Max));
                ops.push(Op::TrySend(Len::Small(len % 9)));
                ops.push(Op::TryRecvWith);
                ops.push(Op::Drain(1));
            }
            let case = Case {
                capacity: cap,
                wait: WaitStrategy::Futex,
                ops,
            };
            if let Err(e) = run_model::<V>(backing, &case) {
                panic!("wrap walk, capacity {cap}, {backing:?}: {e}");
            }
        }
    }
}

/// A full ring reports `Full` (and a larger message still `TooLarge`), and
/// one receive makes exactly the predicted room.
fn full_is_exact<V: Variant>() {
    for backing in Backing::ALL {
        for cap in [64u64, 128, 256, 4096] {
            let case = Case {
                capacity: cap,
                wait: WaitStrategy::Spin,
                ops: std::iter::repeat_n(Op::TrySend(Len::Small(8)), (cap / 16 + 2) as usize)
                    .chain([Op::TrySend(Len::Small(0)), Op::TryRecv])
                    .chain(std::iter::repeat_n(Op::TrySend(Len::Small(0)), 3))
                    .chain([Op::TrySend(Len::MaxPlus1), Op::Drain(usize::MAX)])
                    .chain([Op::TrySend(Len::Max), Op::TrySend(Len::Max)])
                    .collect(),
            };
            let trace = run_model::<V>(backing, &case)
                .unwrap_or_else(|e| panic!("capacity {cap}, {backing:?}: {e}"))
                .trace;
            // Not vacuous: the ring did fill up.
            assert!(
                trace.contains(&Outcome::Failed(Want::Full)),
                "capacity {cap}: never full"
            );
        }
    }
}

variant_tests!(
    model_named,
    model_anonymous,
    model_in_process,
    wrap_walk,
    full_is_exact
);
