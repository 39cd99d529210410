//! Arbitrary operation sequences on an in-process ring (either variant, a
//! small capacity so wraps and "full" happen often), checked against a model:
//! a queue of the messages in flight plus the ring's byte positions, so the
//! order, content, loss, duplication, `Full` verdicts and `len()` are all
//! checked exactly.

#![no_main]

use std::collections::VecDeque;
use std::time::Duration;

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use shmpipe::{Error, Builder, Consumer, Producer, Variant, WaitStrategy};

#[derive(Arbitrary, Debug)]
enum ClaimEnd {
    Commit,
    CommitLen(u8),
    Abort,
}

#[derive(Arbitrary, Debug)]
enum Op {
    TrySend(u8),
    SendTimeoutZero(u8),
    /// `io::Write::write`: one message of up to `max_message` bytes.
    Write(u8),
    TryClaim(u8, ClaimEnd),
    /// `try_send_batch` of up to 8 messages (lengths).
    TrySendBatch(Vec<u8>),
    TryRecv,
    TryRecvWith,
    RecvTimeoutZero,
    Drain(u8),
    DropProducer,
    DropConsumer,
}

#[derive(Arbitrary, Debug)]
struct Input {
    locked: bool,
    /// Capacity 64 << (cap % 4): 64..512 bytes.
    cap: u8,
    wait: u8,
    ops: Vec<Op>,
}

const HDR: u64 = 8;

fn record_len(len: u64) -> u64 {
    HDR + len.div_ceil(8) * 8
}

/// Payload of message number `seq`: different for every message.
fn payload(seq: u64, len: usize) -> Vec<u8> {
    let mut v: Vec<u8> = (0..len)
        .map(|k| (seq.wrapping_mul(131) as u8) ^ (k as u8).wrapping_mul(7))
        .collect();
    // Put the sequence number in the first bytes so duplicates show.
    for (d, s) in v.iter_mut().zip(seq.to_le_bytes()) {
        *d = s;
    }
    v
}

struct Model {
    cap: u64,
    max: usize,
    head: u64,
    tail: u64,
    /// Messages in flight with the head position after each.
    q: VecDeque<(Vec<u8>, u64)>,
    seq: u64,
}

impl Model {
    /// Where a record of `len` bytes would end, or None if it does not fit.
    fn reserve(&self, len: usize) -> Option<(u64, u64)> {
        let rec = record_len(len as u64);
        let off = self.tail & (self.cap - 1);
        let contiguous = self.cap - off;
        let pad = if contiguous >= rec { 0 } else { contiguous };
        // Format v2: the header slot after the record is zeroed too.
        if self.tail + pad + rec + 8 - self.head > self.cap {
            None
        } else {
            Some((self.tail, pad))
        }
    }

    fn push(&mut self, start: u64, pad: u64, msg: Vec<u8>) {
        let end = start + pad + record_len(msg.len() as u64);
        self.tail = end;
        self.q.push_back((msg, end));
    }

    fn pop(&mut self, got: &[u8]) {
        let (want, end) = self
            .q
            .pop_front()
            .expect("received a message the model does not have (duplicate or invented)");
        assert_eq!(got, &want[..], "message content or order differs");
        self.head = end;
    }
}

fn run<V: Variant>(input: &Input) {
    let cap = 64u64 << (input.cap % 4);
    let wait = WaitStrategy::ALL[input.wait as usize % WaitStrategy::ALL.len()];
    let pair = Builder::<V>::default()
        .capacity(cap)
        .wait(wait)
        .in_process()
        .expect("in_process");
    let (p, c) = pair.split().expect("split");
    let mut p: Option<Producer<V>> = Some(p);
    let mut c: Option<Consumer<V>> = Some(c);
    let max = shmpipe::max_message_for(cap);
    let mut m = Model {
        cap,
        max,
        head: 0,
        tail: 0,
        q: VecDeque::new(),
        seq: 0,
    };
    let mut buf = Vec::new();

    for op in &input.ops {
        match op {
            Op::TrySend(n) | Op::SendTimeoutZero(n) | Op::Write(n) | Op::TryClaim(n, _) => {
                let Some(tx) = p.as_mut() else { continue };
                // Lengths up to a bit past the maximum, to see TooLarge.
                let len = (*n as usize) % (m.max + 4);
                let msg = payload(m.seq, len);
                let fits = m.reserve(len);
                if matches!(op, Op::Write(_)) && c.is_some() && m.reserve(len.min(m.max)).is_none()
                {
                    continue; // io::Write blocks without a deadline: only call it when it fits
                }
                let r: Result<Option<Vec<u8>>, Error> = match op {
                    Op::TrySend(_) => tx.try_send(&msg).map(|()| Some(msg.clone())),
                    Op::SendTimeoutZero(_) => tx
                        .send_timeout(&msg, Duration::ZERO)
                        .map(|()| Some(msg.clone())),
                    Op::Write(_) => {
                        use std::io::Write;
                        match tx.write(&msg) {
                            Ok(k) => {
                                assert_eq!(k, len.min(m.max), "write took a wrong count");
                                Ok(Some(msg[..k].to_vec()))
                            }
                            Err(e) => Err(io_to_shmpipe(e)),
                        }
                    }
                    Op::TryClaim(_, end) => match tx.try_claim(len) {
                        Ok(mut claim) => {
                            assert_eq!(claim.len(), len);
                            claim.copy_from_slice(&msg);
                            match end {
                                ClaimEnd::Commit => {
                                    claim.commit();
                                    Ok(Some(msg.clone()))
                                }
                                ClaimEnd::CommitLen(k) => {
                                    let k = (*k as usize).min(len);
                                    claim.commit_len(k);
                                    Ok(Some(msg[..k].to_vec()))
                                }
                                ClaimEnd::Abort => {
                                    drop(claim);
                                    Ok(None)
                                }
                            }
                        }
                        Err(e) => Err(e),
                    },
                    _ => unreachable!(),
                };
                let write_len = if matches!(op, Op::Write(_)) {
                    len.min(m.max)
                } else {
                    len
                };
                let fits = if matches!(op, Op::Write(_)) {
                    m.reserve(write_len)
                } else {
                    fits
                };
                if c.is_none() {
                    // Consumer gone: every send reports it (TooLarge first).
                    match r {
                        Err(Error::Disconnected) => {}
                        Err(Error::TooLarge { .. }) if write_len > m.max => {}
                        other => panic!("send after consumer close: {other:?}"),
                    }
                    continue;
                }
                if write_len > m.max {
                    assert!(
                        matches!(r, Err(Error::TooLarge { len: l, max: mx }) if l == write_len && mx == m.max),
                        "len {write_len} > max {}: {r:?}",
                        m.max
                    );
                    continue;
                }
                match (r, fits) {
                    (Ok(Some(sent)), Some((start, pad))) => {
                        m.seq += 1;
                        m.push(start, pad, sent);
                    }
                    (Ok(None), Some(_)) => {} // aborted claim
                    (Err(Error::Full), None)
                        if !matches!(op, Op::SendTimeoutZero(_) | Op::Write(_)) => {}
                    (Err(Error::Timeout), None) if matches!(op, Op::SendTimeoutZero(_)) => {}
                    // io::Write blocks without a deadline; never called when full.
                    (r, f) => panic!("{op:?} len {len}: got {r:?}, model fits={f:?}"),
                }
            }
            Op::TrySendBatch(lens) => {
                let Some(tx) = p.as_mut() else { continue };
                let lens: Vec<usize> = lens
                    .iter()
                    .take(8)
                    .map(|&n| n as usize % (m.max + 4))
                    .collect();
                let msgs: Vec<Vec<u8>> = lens
                    .iter()
                    .enumerate()
                    .map(|(i, &l)| payload(m.seq + i as u64, l))
                    .collect();
                let r = tx.try_send_batch(&msgs);
                if c.is_none() {
                    match r {
                        Err(Error::Disconnected) => {}
                        Err(Error::TooLarge { .. }) if lens.first().is_some_and(|&l| l > m.max) => {
                        }
                        Ok(0) if msgs.is_empty() => {}
                        other => panic!("batch after consumer close: {other:?}"),
                    }
                    continue;
                }
                // The model: the prefix that fits, one record after another.
                let mut tail = m.tail;
                let mut plan = Vec::new();
                let mut stop = None;
                for &l in &lens {
                    if l > m.max {
                        stop = Some("too large");
                        break;
                    }
                    let rec = record_len(l as u64);
                    let contiguous = m.cap - (tail & (m.cap - 1));
                    let pad = if contiguous >= rec { 0 } else { contiguous };
                    if tail + pad + rec + 8 - m.head > m.cap {
                        stop = Some("full");
                        break;
                    }
                    plan.push((tail, pad));
                    tail += pad + rec;
                }
                match r {
                    Ok(n) => {
                        assert_eq!(n, plan.len(), "batch {lens:?}: sent {n}, model {plan:?}");
                        for (msg, (start, pad)) in msgs.into_iter().zip(plan) {
                            m.push(start, pad, msg);
                        }
                        m.seq += n as u64;
                    }
                    Err(Error::Full) => {
                        assert!(plan.is_empty() && stop == Some("full"), "{lens:?}")
                    }
                    Err(Error::TooLarge { .. }) => {
                        assert!(plan.is_empty() && stop == Some("too large"), "{lens:?}")
                    }
                    other => panic!("batch {lens:?}: {other:?}"),
                }
            }
            Op::TryRecv | Op::TryRecvWith | Op::RecvTimeoutZero | Op::Drain(_) => {
                let Some(rx) = c.as_mut() else { continue };
                let producer_gone = p.is_none();
                let empty_err = |e: &Error| {
                    if producer_gone {
                        matches!(e, Error::Disconnected)
                    } else {
                        matches!(
                            (op, e),
                            (Op::RecvTimeoutZero, Error::Timeout)
                                | (Op::TryRecv | Op::TryRecvWith, Error::Empty)
                        )
                    }
                };
                match op {
                    Op::TryRecv | Op::RecvTimeoutZero => {
                        let r = if matches!(op, Op::TryRecv) {
                            rx.try_recv(&mut buf)
                        } else {
                            rx.recv_timeout(&mut buf, Duration::ZERO)
                        };
                        match r {
                            Ok(n) => {
                                assert_eq!(n, buf.len());
                                m.pop(&buf);
                            }
                            Err(e) => {
                                assert!(
                                    m.q.is_empty(),
                                    "{op:?} failed with messages waiting: {e:?}"
                                );
                                assert!(empty_err(&e), "{op:?} on empty ring: {e:?}");
                            }
                        }
                    }
                    Op::TryRecvWith => {
                        let mut got = None;
                        match rx.try_recv_with(|msg| got = Some(msg.to_vec())) {
                            Ok(()) => m.pop(&got.expect("closure not called")),
                            Err(e) => {
                                assert!(got.is_none());
                                assert!(
                                    m.q.is_empty(),
                                    "try_recv_with failed with messages waiting: {e:?}"
                                );
                                assert!(empty_err(&e), "try_recv_with on empty ring: {e:?}");
                            }
                        }
                    }
                    Op::Drain(k) => {
                        let k = *k as usize % 6;
                        let mut got = Vec::new();
                        let r = rx.drain(k, |msg| got.push(msg.to_vec()));
                        let want = k.min(m.q.len());
                        match r {
                            Ok(n) => {
                                assert_eq!(n, got.len());
                                assert_eq!(n, want, "drain({k}) with {} waiting", m.q.len());
                            }
                            Err(e) => {
                                assert!(got.is_empty() && want == 0 && k > 0, "drain error {e:?}");
                                assert!(producer_gone && matches!(e, Error::Disconnected), "{e:?}");
                            }
                        }
                        for g in &got {
                            m.pop(g);
                        }
                    }
                    _ => unreachable!(),
                }
            }
            Op::DropProducer => {
                p = None;
            }
            Op::DropConsumer => {
                c = None;
            }
        }
        // Byte accounting matches the model exactly.
        let used = m.tail - m.head;
        if let Some(tx) = &p {
            assert_eq!(tx.len_bytes(), used, "producer len_bytes()");
            let s = tx.stats();
            assert_eq!(s.used_bytes, used);
        }
        if let Some(rx) = &c {
            assert_eq!(rx.len_bytes(), used, "consumer len_bytes()");
            assert_eq!(rx.is_empty(), used == 0);
        }
    }

    // Finally drain everything: exactly the model's messages, in order.
    if let Some(rx) = c.as_mut() {
        drop(p.take());
        loop {
            match rx.try_recv(&mut buf) {
                Ok(_) => m.pop(&buf),
                Err(Error::Disconnected) => break,
                Err(e) => panic!("final drain: {e:?}"),
            }
        }
        assert!(m.q.is_empty(), "{} messages lost", m.q.len());
        let s = rx.stats();
        assert_eq!(s.messages_sent, s.messages_received);
        assert_eq!(s.messages_received, m.seq);
    }
}

fn io_to_shmpipe(e: std::io::Error) -> Error {
    match e.kind() {
        std::io::ErrorKind::BrokenPipe => Error::Disconnected,
        _ => panic!("io::Write error: {e:?}"),
    }
}

fuzz_target!(|input: Input| {
    if input.locked {
        run::<shmpipe::Locked>(&input);
    } else {
        run::<shmpipe::LockFree>(&input);
    }
});
