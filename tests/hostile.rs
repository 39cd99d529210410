//! A hostile peer: something else maps the segment and writes arbitrary
//! values into the header and the data area while our endpoints work. Every
//! call must end in one of: `Ok` (with a message within bounds; intact where
//! the fault could not have touched messages), `Empty`/`Full`/`Timeout`,
//! `Disconnected`/`PeerDied`, or `Corrupted`, which then sticks to the
//! handle. Never a panic, a hang or an out-of-bounds access (the process
//! would crash). Also: the checks made when opening a name (a segment
//! truncated under live endpoints: `tests/truncate.rs`).
//!
//! No glibc object lives in the segment (format v3): the `Semaphore`
//! strategy's counts and the locked ring's lock word are our own words, and
//! every byte of the header is fair game for the faults below
//! (`semaphore_words_scribbled_under_traffic_*` writes the wait lines while
//! both sides sleep and wake on them).

mod kill_util;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicU8, Ordering::SeqCst};
use std::time::Duration;

use kill_util::*;
use shmpipe::{Builder, Consumer, Error, LockFree, Locked, Producer, Variant, WaitStrategy};

const T: Duration = Duration::from_secs(30);

// Header offsets (docs/API.md, "On-memory header").
const HEADER: usize = 896;
const OFF_MAGIC: usize = 0;
const OFF_VERSION: usize = 8;
const OFF_VARIANT: usize = 12;
const OFF_WAIT: usize = 16;
const OFF_FLAGS: usize = 20;
const OFF_CAPACITY: usize = 24;
const OFF_HEADER_SIZE: usize = 32;
const OFF_TAIL: usize = 128;
const OFF_HEAD: usize = 256;
const OFF_PSTATE: usize = 384;
const OFF_CSTATE: usize = 388;
const OFF_REPAIRS: usize = 392;
const OFF_WAIT_C: usize = 512;
const OFF_WAIT_P: usize = 640;
/// Length of a wait line (seq, waiting, semaphore count, padding).
const WAIT_LINE: usize = 128;

const KIND_MSG: u64 = 1;
const KIND_PAD: u64 = 2;

fn rec_word(kind: u64, len: u64) -> u64 {
    (kind << 32) | (len & 0xffff_ffff)
}

/// The hostile peer's view: a raw shared mapping of the whole segment.
struct Hostile {
    map: memmap2::MmapRaw,
}

impl Hostile {
    fn open(path: &str) -> Hostile {
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .unwrap();
        Hostile {
            map: memmap2::MmapOptions::new().map_raw(&f).unwrap(),
        }
    }
    fn len(&self) -> usize {
        self.map.len()
    }
    fn byte(&self, off: usize) -> &AtomicU8 {
        assert!(off < self.len());
        // SAFETY: in bounds of the live mapping; shared memory is accessed
        // through atomics only (the ring's users may run concurrently).
        unsafe { &*(self.map.as_mut_ptr().add(off) as *const AtomicU8) }
    }
    fn w8(&self, off: usize, v: u8) {
        self.byte(off).store(v, SeqCst);
    }
    fn w32(&self, off: usize, v: u32) {
        assert!(off % 4 == 0 && off + 4 <= self.len());
        // SAFETY: in bounds and 4-aligned (the mapping is page-aligned).
        unsafe { &*(self.map.as_mut_ptr().add(off) as *const AtomicU32) }.store(v, SeqCst);
    }
    fn w64(&self, off: usize, v: u64) {
        if off % 8 != 0 {
            for (i, b) in v.to_le_bytes().into_iter().enumerate() {
                self.w8(off + i, b);
            }
            return;
        }
        assert!(off + 8 <= self.len());
        // SAFETY: in bounds and 8-aligned.
        unsafe { &*(self.map.as_mut_ptr().add(off) as *const AtomicU64) }.store(v, SeqCst);
    }
    fn r64(&self, off: usize) -> u64 {
        assert!(off % 8 == 0 && off + 8 <= self.len());
        // SAFETY: in bounds and 8-aligned.
        unsafe { &*(self.map.as_mut_ptr().add(off) as *const AtomicU64) }.load(SeqCst)
    }
}

/// How much a fault may disturb the messages.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Class {
    /// Words the endpoints never read after attaching, or read only as
    /// hints: nothing may fail, every message arrives intact and in order.
    Clean,
    /// Liveness words: `Corrupted` is allowed, messages that arrive are intact.
    Liveness,
    /// Indices, records, random bytes: only the bounds are checked.
    Dirty,
}

struct Ctx {
    cap: u64,
    max: usize,
}

type FaultFn = fn(&Hostile, &mut Rng, &Ctx);

const FAULTS: &[(&str, Class, FaultFn)] = &[
    ("head > tail", Class::Dirty, |h, r, _| {
        let t = h.r64(OFF_TAIL);
        h.w64(OFF_HEAD, t + 8 * r.range(1, 64));
    }),
    ("tail = head + cap + 8", Class::Dirty, |h, _, c| {
        let hd = h.r64(OFF_HEAD);
        h.w64(OFF_TAIL, hd + c.cap + 8);
    }),
    ("tail unaligned", Class::Dirty, |h, r, _| {
        let t = h.r64(OFF_TAIL);
        h.w64(OFF_TAIL, t + r.range(1, 7));
    }),
    ("tail = u64::MAX", Class::Dirty, |h, _, _| {
        h.w64(OFF_TAIL, u64::MAX)
    }),
    ("head = u64::MAX", Class::Dirty, |h, _, _| {
        h.w64(OFF_HEAD, u64::MAX)
    }),
    ("head unaligned", Class::Dirty, |h, r, _| {
        let v = h.r64(OFF_HEAD);
        h.w64(OFF_HEAD, v + r.range(1, 7));
    }),
    ("tail moved within capacity", Class::Dirty, |h, r, c| {
        let hd = h.r64(OFF_HEAD);
        h.w64(OFF_TAIL, hd + 8 * r.below(c.cap / 8 + 1));
    }),
    ("indices near overflow", Class::Dirty, |h, r, _| {
        let base = u64::MAX / 2 - 8 * r.below(4);
        h.w64(OFF_HEAD, base & !7);
        h.w64(OFF_TAIL, (base & !7) + 64);
    }),
    ("record length > max", Class::Dirty, |h, r, c| {
        let off = HEADER + (h.r64(OFF_HEAD) & (c.cap - 1) & !7) as usize;
        h.w64(off, rec_word(KIND_MSG, c.max as u64 + r.range(1, 1 << 31)));
    }),
    ("record kind = 7", Class::Dirty, |h, r, c| {
        let off = HEADER + (h.r64(OFF_HEAD) & (c.cap - 1) & !7) as usize;
        h.w64(off, rec_word(7, r.below(c.max as u64)));
    }),
    ("record reserved bits", Class::Dirty, |h, r, c| {
        let off = HEADER + (h.r64(OFF_HEAD) & (c.cap - 1) & !7) as usize;
        let w = h.r64(off);
        h.w64(off, w | 1 << r.range(40, 63));
    }),
    ("padding with wrong length", Class::Dirty, |h, r, c| {
        let off = HEADER + (h.r64(OFF_HEAD) & (c.cap - 1) & !7) as usize;
        h.w64(off, rec_word(KIND_PAD, r.below(c.cap * 2)));
    }),
    ("padding then padding", Class::Dirty, |h, r, c| {
        let o = h.r64(OFF_HEAD) & (c.cap - 1) & !7;
        let off = HEADER + o as usize;
        h.w64(off, rec_word(KIND_PAD, c.cap - o - 8));
        h.w64(HEADER, rec_word(KIND_PAD, r.below(c.cap)));
    }),
    // Format v2: the record header word at `head` is the consumer's signal.
    (
        "v2: valid header planted at head",
        Class::Dirty,
        |h, r, c| {
            let off = HEADER + (h.r64(OFF_HEAD) & (c.cap - 1) & !7) as usize;
            h.w64(off, rec_word(KIND_MSG, r.below(c.max as u64 + 1)));
        },
    ),
    ("v2: valid header planted ahead", Class::Dirty, |h, r, c| {
        let ahead = 8 * r.range(1, c.cap / 8);
        let off = HEADER + ((h.r64(OFF_HEAD) + ahead) & (c.cap - 1) & !7) as usize;
        h.w64(off, rec_word(KIND_MSG, r.below(c.max as u64 + 1)));
    }),
    (
        "v2: header at offset 0 + padding",
        Class::Dirty,
        |h, r, c| {
            let o = h.r64(OFF_HEAD) & (c.cap - 1) & !7;
            h.w64(HEADER, rec_word(KIND_MSG, r.below(c.max as u64 + 1)));
            if o != 0 {
                h.w64(HEADER + o as usize, rec_word(KIND_PAD, c.cap - o - 8));
            }
        },
    ),
    ("v2: header past tail", Class::Dirty, |h, _, c| {
        let off = HEADER + (h.r64(OFF_HEAD) & (c.cap - 1) & !7) as usize;
        h.w64(off, rec_word(KIND_MSG, c.max as u64));
    }),
    ("v2: published header zeroed", Class::Dirty, |h, _, c| {
        let off = HEADER + (h.r64(OFF_HEAD) & (c.cap - 1) & !7) as usize;
        h.w64(off, 0);
    }),
    ("capacity word", Class::Clean, |h, r, _| {
        let v = if r.chance(1, 2) {
            1 << r.range(6, 40)
        } else {
            r.next_u64()
        };
        h.w64(OFF_CAPACITY, v);
    }),
    ("version/magic words", Class::Clean, |h, r, _| {
        h.w32(OFF_VERSION, r.next_u64() as u32);
        if r.chance(1, 2) {
            h.w64(OFF_MAGIC, r.next_u64());
        }
    }),
    ("variant/wait/flags/size words", Class::Clean, |h, r, _| {
        h.w32(OFF_VARIANT, r.below(4) as u32);
        h.w32(OFF_WAIT, r.below(6) as u32);
        h.w32(OFF_FLAGS, r.next_u64() as u32);
        h.w64(OFF_HEADER_SIZE, r.next_u64());
    }),
    ("counters", Class::Clean, |h, r, _| {
        for off in (OFF_TAIL + 8..OFF_TAIL + 40).chain(OFF_HEAD + 8..OFF_HEAD + 40) {
            if off % 8 == 0 {
                h.w64(off, r.next_u64());
            }
        }
        h.w64(OFF_REPAIRS, r.next_u64());
    }),
    (
        "wait words (seq, waiting, semaphore count)",
        Class::Clean,
        |h, r, _| {
            for w in [OFF_WAIT_C, OFF_WAIT_P] {
                h.w32(w, r.next_u64() as u32);
                h.w32(w + 4, *r.pick(&[0, 1, 77, u32::MAX]));
                h.w32(w + 8, *r.pick(&[0, 1, 2, 1 << 31, u32::MAX]));
            }
        },
    ),
    ("endpoint state = 77", Class::Liveness, |h, r, _| {
        match r.below(3) {
            0 => h.w32(OFF_PSTATE, 77),
            1 => h.w32(OFF_CSTATE, 77),
            _ => {
                h.w32(OFF_PSTATE, 77);
                h.w32(OFF_CSTATE, 77);
            }
        }
    }),
    ("random header u64", Class::Dirty, |h, r, _| {
        let off = 8 * r.below(HEADER as u64 / 8) as usize;
        h.w64(off, r.next_u64());
    }),
    ("random data u64", Class::Dirty, |h, r, c| {
        let off = HEADER + 8 * r.below(c.cap / 8) as usize;
        h.w64(off, r.next_u64());
    }),
    ("random bytes anywhere", Class::Dirty, |h, r, _| {
        for _ in 0..r.range(1, 16) {
            let off = r.below(h.len() as u64) as usize;
            h.w8(off, r.next_u64() as u8);
        }
    }),
];

const OUTCOMES: [&str; 9] = [
    "ok",
    "empty",
    "full",
    "timeout",
    "disconnected",
    "peer-died",
    "corrupted",
    "other",
    "sticky-violations",
];

#[derive(Default, Clone)]
struct Tally {
    tries: u64,
    counts: [u64; OUTCOMES.len()],
}

impl Tally {
    fn add(&mut self, outcome: &str) {
        let i = OUTCOMES.iter().position(|o| *o == outcome).unwrap_or(7);
        self.counts[i] += 1;
    }
}

fn outcome<T>(r: &shmpipe::Result<T>) -> &'static str {
    match r {
        Ok(_) => "ok",
        Err(e) => match kind(e) {
            k @ ("empty" | "full" | "timeout" | "disconnected" | "peer-died" | "corrupted") => k,
            // A poisoned lock word (a hostile 0xff): as sticky as Corrupted.
            "lock-not-recoverable" => "corrupted",
            _ => "other",
        },
    }
}

/// What a `Corrupted` result says failed.
fn corrupt_what<T>(r: &shmpipe::Result<T>) -> &'static str {
    match r {
        Err(Error::Corrupted { what, .. }) => what,
        _ => "",
    }
}

/// Tracks one handle's results: once Corrupted, always Corrupted.
#[derive(Default)]
struct Sticky {
    /// The first corruption this handle reported.
    first: Option<&'static str>,
}

impl Sticky {
    fn corrupted(&self) -> bool {
        self.first.is_some()
    }
    /// `Err(first corruption)` on a violation.
    fn see(&mut self, o: &str, what: &'static str) -> Result<(), &'static str> {
        match self.first {
            Some(first) if o != "corrupted" => Err(first),
            Some(_) => Ok(()),
            None => {
                if o == "corrupted" {
                    self.first = Some(what);
                }
                Ok(())
            }
        }
    }
}

struct Run<'a, V: Variant> {
    tx: Producer<V>,
    rx: Consumer<V>,
    class: Class,
    max: usize,
    next_send: u64,
    next_recv: u64,
    tally: &'a mut Tally,
    tx_sticky: Sticky,
    rx_sticky: Sticky,
    problems: &'a mut BTreeMap<String, u64>,
    what: String,
}

impl<V: Variant> Run<'_, V> {
    fn problem(&mut self, p: String) {
        *self
            .problems
            .entry(format!("{}: {p}", self.what))
            .or_default() += 1;
    }

    /// Check a received message against what this fault class promises.
    fn got(&mut self, m: &[u8]) {
        if m.len() > self.max {
            let p = format!("message of {} bytes above max {}", m.len(), self.max);
            self.problem(p);
        }
        if self.class != Class::Dirty {
            if let Err(e) = expect_seq(m, self.next_recv) {
                self.problem(format!("message from an intact ring: {e}"));
            }
        }
        self.next_recv += 1;
    }

    fn record<T>(&mut self, tx_side: bool, r: &shmpipe::Result<T>, op: &str) {
        let o = outcome(r);
        self.tally.add(o);
        let seen = if tx_side {
            self.tx_sticky.see(o, corrupt_what(r))
        } else {
            self.rx_sticky.see(o, corrupt_what(r))
        };
        if let Err(first) = seen {
            self.tally.add("sticky-violations");
            self.problem(format!("{op} returned {o} after Corrupted ({first:?})"));
        }
        if o == "other" || (o == "corrupted" && self.class == Class::Clean) {
            self.problem(format!("{op}: unexpected outcome {o}"));
        }
    }

    fn op(&mut self, rng: &mut Rng) {
        let short = Duration::from_millis(1);
        let len = rng.range(MSG_MIN as u64, self.max.min(200) as u64) as usize;
        match rng.below(8) {
            0 => {
                let mut buf = Vec::new();
                let r = self.rx.try_recv(&mut buf);
                if r.is_ok() {
                    self.got(&buf);
                }
                self.record(false, &r, "try_recv");
            }
            1 => {
                let mut buf = Vec::new();
                let r = self.rx.recv_timeout(&mut buf, short);
                if r.is_ok() {
                    self.got(&buf);
                }
                self.record(false, &r, "recv_timeout");
            }
            2 => {
                let mut msgs = Vec::new();
                let r = self.rx.drain(4, |m| msgs.push(m.to_vec()));
                if let Ok(n) = r {
                    assert_eq!(n, msgs.len());
                }
                for m in msgs {
                    self.got(&m);
                }
                self.record(false, &r, "drain");
            }
            3 => {
                let mut m = Vec::new();
                let r = self.rx.try_recv_with(|b| m.extend_from_slice(b));
                if r.is_ok() {
                    self.got(&m);
                }
                self.record(false, &r, "try_recv_with");
            }
            4 => {
                let r = self.tx.try_send(&make_msg(self.next_send, len));
                self.next_send += r.is_ok() as u64;
                self.record(true, &r, "try_send");
            }
            5 => {
                let r = self.tx.send_timeout(&make_msg(self.next_send, len), short);
                self.next_send += r.is_ok() as u64;
                self.record(true, &r, "send_timeout");
            }
            6 => {
                let seq = self.next_send;
                let r = self.tx.claim_timeout(len, short).map(|mut c| {
                    fill_msg(seq, &mut c[..]);
                    c.commit();
                });
                self.next_send += r.is_ok() as u64;
                self.record(true, &r, "claim_timeout");
            }
            _ => {
                // Claim and abort; also read the informational calls.
                let r = self.tx.try_claim(len).map(drop);
                self.record(true, &r, "try_claim");
                let st = self.rx.stats();
                assert!(st.used_bytes <= st.capacity);
                let _ = (self.tx.len_bytes(), self.rx.is_empty());
            }
        }
    }
}

fn one_try<V: Variant>(
    fault: usize,
    rng: &mut Rng,
    tally: &mut Tally,
    problems: &mut BTreeMap<String, u64>,
) {
    let (fname, class, apply) = FAULTS[fault];
    let wait = *rng.pick(&WaitStrategy::ALL);
    let cap = *rng.pick(&[256u64, 1024, 4096]);
    let name = ShmName::new("hostile");
    let b = Builder::<V>::default().capacity(cap).wait(wait);
    let mut tx = b.create_producer(name.as_str()).unwrap();
    let mut rx = b.open_consumer(name.as_str()).unwrap();
    let max = tx.max_message();
    // Move the indices somewhere, maybe across a wrap.
    let sent = rng.below(12);
    let mut next_send = 0;
    for _ in 0..sent {
        let len = rng.range(MSG_MIN as u64, max.min(200) as u64) as usize;
        if tx.try_send(&make_msg(next_send, len)).is_err() {
            break;
        }
        next_send += 1;
        if rng.chance(1, 2) {
            let mut buf = Vec::new();
            rx.try_recv(&mut buf).unwrap();
        }
    }
    let next_recv = rx.stats().messages_received;
    let hostile = Hostile::open(&name.path());
    let ctx = Ctx { cap, max };
    apply(&hostile, rng, &ctx);
    let mut run = Run {
        tx,
        rx,
        class,
        max,
        next_send,
        next_recv,
        tally,
        tx_sticky: Sticky::default(),
        rx_sticky: Sticky::default(),
        problems,
        what: format!("[{}] {fname} ({wait:?}, cap {cap})", V::NAME),
    };
    run.tally.tries += 1;
    let ops = rng.range(6, 14);
    let again = rng.below(ops);
    for i in 0..ops {
        if i == again && rng.chance(1, 2) {
            apply(&hostile, rng, &ctx);
        }
        run.op(rng);
    }
}

fn assert_no_problems(problems: &BTreeMap<String, u64>) {
    if problems.is_empty() {
        return;
    }
    let list: Vec<String> = problems
        .iter()
        .map(|(p, n)| format!("{n:>6} x {p}"))
        .collect();
    panic!("problems:\n{}", list.join("\n"));
}

fn print_table(title: &str, rows: &BTreeMap<String, Tally>) {
    let mut s = format!("\n{title}\n{:<34} {:>5}", "fault kind", "tries");
    for o in OUTCOMES {
        s += &format!(" {o:>12}");
    }
    for (k, t) in rows {
        s += &format!("\n{k:<34} {:>5}", t.tries);
        for c in t.counts {
            s += &format!(" {c:>12}");
        }
    }
    eprintln!("{s}\n");
}

fn random_faults<V: Variant>() {
    let _s = serial();
    let _wd = Watchdog::new("random_faults", Duration::from_secs(240));
    let tries = iterations("SHMPIPE_HOSTILE_TRIES", 40);
    let seed = seed();
    let mut rng = Rng::new(seed ^ 0x4057 ^ V::NAME.len() as u64);
    let mut rows = BTreeMap::new();
    let mut problems = BTreeMap::new();
    for (i, (fname, _, _)) in FAULTS.iter().enumerate() {
        let mut tally = Tally::default();
        for _ in 0..tries {
            one_try::<V>(i, &mut rng, &mut tally, &mut problems);
        }
        rows.insert(format!("{i:02} {fname}"), tally);
    }
    print_table(
        &format!(
            "hostile peer, {} variant, seed {seed:#x}: outcomes of calls after each fault",
            V::NAME
        ),
        &rows,
    );
    assert_no_problems(&problems);
    // Not vacuous: faults were detected, and rings with harmless faults
    // kept delivering messages.
    let total = |o: &str| -> u64 {
        let i = OUTCOMES.iter().position(|x| *x == o).unwrap();
        rows.values().map(|t| t.counts[i]).sum()
    };
    assert!(total("corrupted") > 0);
    assert!(total("ok") > 0);
}

#[test]
fn random_faults_lockfree() {
    random_faults::<LockFree>();
}

#[test]
fn random_faults_locked() {
    random_faults::<Locked>();
}

// ---------------------------------------------------------------------------
// A live hostile process scribbling while we work.

fn concurrent_scribbler<V: Variant>() {
    let _s = serial();
    let _wd = Watchdog::new("concurrent_scribbler", Duration::from_secs(120));
    let rounds = iterations("SHMPIPE_HOSTILE_ROUNDS", 12);
    let mut rng = Rng::new(seed() ^ 0x5c21 ^ V::NAME.len() as u64);
    let mut tally = Tally::default();
    let mut problems = BTreeMap::new();
    for _ in 0..rounds {
        let wait = *rng.pick(&[
            WaitStrategy::Spin,
            WaitStrategy::Futex,
            WaitStrategy::Semaphore,
        ]);
        let cap = *rng.pick(&[256u64, 4096]);
        let name = ShmName::new("scribble");
        let b = Builder::<V>::default().capacity(cap).wait(wait);
        let tx = b.create_producer(name.as_str()).unwrap();
        let rx = b.open_consumer(name.as_str()).unwrap();
        let max = tx.max_message();
        let path = name.path();
        let child_seed = rng.next_u64();
        let mut child = fork_child(60, || {
            let h = Hostile::open(&path);
            let mut r = Rng::new(child_seed);
            let end = std::time::Instant::now() + Duration::from_millis(150);
            while std::time::Instant::now() < end {
                let off = match r.below(4) {
                    0 => *r.pick(&[OFF_TAIL, OFF_HEAD]),
                    1 => HEADER + 8 * r.below(cap / 8) as usize,
                    2 => 8 * r.below(HEADER as u64 / 8) as usize,
                    _ => r.below(h.len() as u64 - 8) as usize,
                };
                let v = match r.below(4) {
                    0 => r.next_u64(),
                    1 => h.r64(off & !7).wrapping_add(8 * r.below(16)),
                    2 => rec_word(r.range(1, 2), r.below(cap)),
                    _ => r.below(1 << 20),
                };
                h.w64(off, v);
                spin_a_bit(r.below(2_000));
            }
            Ok(())
        });
        let mut run = Run {
            tx,
            rx,
            class: Class::Dirty,
            max,
            next_send: 0,
            next_recv: 0,
            tally: &mut tally,
            tx_sticky: Sticky::default(),
            rx_sticky: Sticky::default(),
            problems: &mut problems,
            what: format!("[{}] concurrent scribbler ({wait:?}, cap {cap})", V::NAME),
        };
        run.tally.tries += 1;
        let end = std::time::Instant::now() + Duration::from_millis(150);
        let mut after_both = 0;
        while std::time::Instant::now() < end && after_both < 50 {
            run.op(&mut rng);
            if run.tx_sticky.corrupted() && run.rx_sticky.corrupted() {
                after_both += 1;
            }
        }
        child.expect_ok(T);
    }
    let mut rows = BTreeMap::new();
    rows.insert(format!("live scribbler ({} rounds)", rounds), tally);
    print_table(
        &format!("hostile process writing concurrently, {} variant", V::NAME),
        &rows,
    );
    assert_no_problems(&problems);
}

fn spin_a_bit(n: u64) {
    for i in 0..n {
        std::hint::black_box(i);
    }
}

#[test]
fn concurrent_scribbler_lockfree() {
    concurrent_scribbler::<LockFree>();
}

#[test]
fn concurrent_scribbler_locked() {
    concurrent_scribbler::<Locked>();
}

fn ctx<T>(r: shmpipe::Result<T>, what: &str) -> Result<T, String> {
    r.map_err(|e| format!("{what}: {e:?}"))
}

#[test]
fn opening_truncated_segment_fails() {
    let _s = serial();
    let cap = 64 * 1024;
    for (len, want) in [
        (4096u64, "size"),
        (HEADER as u64 + cap - 8, "size"),
        (100, "size"),
        (0, "uninit"),
    ] {
        let name = ShmName::new("trunc-open");
        let tx = shmpipe::Builder::new()
            .capacity(cap)
            .unlink_on_drop(false)
            .create_producer(name.as_str())
            .unwrap();
        std::fs::OpenOptions::new()
            .write(true)
            .open(name.path())
            .unwrap()
            .set_len(len)
            .unwrap();
        let b = shmpipe::Builder::new().open_timeout(Duration::from_millis(20));
        let r = b.open_consumer(name.as_str());
        match (want, &r) {
            ("size", Err(Error::SizeMismatch { found, .. })) => assert_eq!(*found, len),
            // An empty object looks like one being created: wait, then give up.
            ("uninit", Err(Error::NotInitialized { .. })) => {}
            _ => panic!("truncated to {len}: {r:?}"),
        }
        let r = shmpipe::inspect(name.as_str());
        assert!(
            matches!(
                r,
                Err(Error::SizeMismatch { .. } | Error::NotInitialized { .. })
            ),
            "inspect of a segment truncated to {len}: {r:?}"
        );
        // The producer mapped the full size; closing it touches the lost
        // pages, which the SIGBUS handler replaces by zero pages.
        drop(tx);
    }
}

// ---------------------------------------------------------------------------
// What opening refuses.

#[test]
fn open_refuses_foreign_and_odd_objects() {
    let _s = serial();
    let b = shmpipe::Builder::new().open_timeout(Duration::from_millis(20));
    let mk = |tag| {
        let name = ShmName::new(tag);
        let tx = shmpipe::Builder::new()
            .capacity(4096)
            .unlink_on_drop(false)
            .create_producer(name.as_str())
            .unwrap();
        (name, tx)
    };

    // Another owner.
    // SAFETY: geteuid cannot fail.
    if unsafe { libc::geteuid() } == 0 {
        let (name, _tx) = mk("owner");
        std::os::unix::fs::chown(name.path(), Some(65534), Some(65534)).unwrap();
        let r = b.open_consumer(name.as_str());
        assert!(
            matches!(
                r,
                Err(Error::NotOwner {
                    owner: 65534,
                    euid: 0
                })
            ),
            "{r:?}"
        );
    } else {
        eprintln!("not root: the NotOwner case is covered only when run as root");
    }

    // Group/other permission bits.
    {
        let (name, _tx) = mk("mode");
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(name.path(), std::fs::Permissions::from_mode(0o640)).unwrap();
        let r = b.open_consumer(name.as_str());
        assert!(
            matches!(r, Err(Error::UnsafePermissions { mode: 0o640 })),
            "{r:?}"
        );
        let ok = b
            .clone()
            .allow_shared_permissions(true)
            .open_consumer(name.as_str());
        assert!(ok.is_ok(), "{ok:?}");
    }

    // A symlink to a valid segment: not followed.
    {
        let (target, _tx) = mk("target");
        let link = ShmName::new("link");
        std::os::unix::fs::symlink(target.path(), link.path()).unwrap();
        let r = b.open_consumer(link.as_str());
        match &r {
            Err(Error::Io { source, .. }) => {
                assert_eq!(source.raw_os_error(), Some(libc::ELOOP), "{r:?}")
            }
            _ => panic!("symlink: {r:?}"),
        }
        assert!(shmpipe::inspect(link.as_str()).is_err());
        // The target is still fine.
        assert!(b.open_consumer(target.as_str()).is_ok());
    }

    // A directory.
    {
        let dir = ShmName::new("dir");
        std::fs::create_dir(dir.path()).unwrap();
        let r = b.open_consumer(dir.as_str());
        assert!(
            matches!(r, Err(Error::NotRegularFile | Error::Io { .. })),
            "{r:?}"
        );
    }

    // A FIFO (opens without blocking with O_RDWR; then refused by type).
    {
        let fifo = ShmName::new("fifo");
        let c = std::ffi::CString::new(fifo.path()).unwrap();
        // SAFETY: valid path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let r = b.open_consumer(fifo.as_str());
        assert!(matches!(r, Err(Error::NotRegularFile)), "{r:?}");
    }

    // A regular file of the right size that is not a shmpipe segment.
    {
        let other = ShmName::new("other");
        std::fs::write(other.path(), vec![0xa5u8; HEADER + 4096]).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(other.path(), std::fs::Permissions::from_mode(0o600)).unwrap();
        let r = b.open_consumer(other.as_str());
        assert!(matches!(r, Err(Error::NotShmpipe { .. })), "{r:?}");
    }
}

// ---------------------------------------------------------------------------
// The wait lines and the lock word filled with garbage.

/// The semaphore's bytes of both wait lines (lock-free ring, `Semaphore`
/// wait) or the locked ring's lock word, filled with garbage, then calls
/// that sleep and wake on them. Run in forked children so that a signal
/// would show: none may die (with glibc's `sem_t` in the wait lines, up to
/// format v2, glibc aborted some of them), none may hang.
#[test]
fn wait_words_with_garbage() {
    let _s = serial();
    let tries = iterations("SHMPIPE_GARBAGE_TRIES", 20);
    let mut rng = Rng::new(seed() ^ 0x61bc);
    let mut table: BTreeMap<String, BTreeMap<String, u64>> = BTreeMap::new();
    for (what, locked) in [("semaphore words", false), ("lock word (locked)", true)] {
        for _ in 0..tries {
            let name = ShmName::new("garbage");
            let wait = if locked {
                *rng.pick(&[WaitStrategy::Futex, WaitStrategy::Semaphore])
            } else {
                WaitStrategy::Semaphore
            };
            let child_seed = rng.next_u64();
            let rep = pipe();
            let (n, p, rw) = (name.as_str(), name.path(), &rep.wr);
            let mut child = fork_child(20, || {
                let mut r = Rng::new(child_seed);
                let kinds = if locked {
                    let b = shmpipe::locked::Builder::default()
                        .capacity(1024)
                        .wait(wait);
                    let mut tx = ctx(b.create_producer(n), "create")?;
                    let mut rx = ctx(b.open_consumer(n), "open")?;
                    let h = Hostile::open(&p);
                    for off in OFF_LOCK..OFF_LOCK + 4 {
                        if r.chance(1, 2) {
                            h.w8(off, r.next_u64() as u8);
                        }
                    }
                    garbage_calls(&mut tx, &mut rx)
                } else {
                    let b = shmpipe::Builder::new().capacity(1024).wait(wait);
                    let mut tx = ctx(b.create_producer(n), "create")?;
                    let mut rx = ctx(b.open_consumer(n), "open")?;
                    let h = Hostile::open(&p);
                    // Everything after seq and waiting: the semaphore count
                    // now, glibc's sem_t up to format v2.
                    for w in [OFF_WAIT_C, OFF_WAIT_P] {
                        for off in w + 8..w + 40 {
                            if r.chance(1, 2) {
                                h.w8(off, r.next_u64() as u8);
                            }
                        }
                    }
                    garbage_calls(&mut tx, &mut rx)
                };
                write_all(rw, kinds.as_bytes());
                Ok(())
            });
            let st = child.wait(T);
            let key = match st {
                Status::Exited(0) => format!("returned: {}", read_to_end_nonblocking(&rep.rd)),
                Status::Exited(c) => panic!("{what}: child exit {c}: {}", child.report()),
                Status::Signaled(s) => panic!("{what}: child died of signal {s} (14 = hang)"),
            };
            *table
                .entry(what.to_string())
                .or_default()
                .entry(key)
                .or_default() += 1;
        }
    }
    let mut s =
        String::from("\nwait words with garbage (forked children, one line per distinct result):");
    for (what, m) in &table {
        for (k, c) in m {
            s += &format!("\n  {what:<22} {c:>4} x {k}");
        }
    }
    eprintln!("{s}\n");
}

/// The locked ring's lock word (our own, like every other word).
const OFF_LOCK: usize = 768;

/// Calls that sleep and wake on the wait words / take the lock; returns the
/// distinct outcomes.
fn garbage_calls<V: Variant>(tx: &mut Producer<V>, rx: &mut Consumer<V>) -> String {
    let short = Duration::from_millis(5);
    let mut buf = Vec::new();
    let mut kinds = Vec::new();
    let mut see = |r: Result<(), Error>| {
        kinds.push(match r {
            Ok(()) => "ok".to_string(),
            Err(Error::Io { op, source, .. }) => format!("io({op}: {source})"),
            Err(e) => kind(&e).to_string(),
        })
    };
    see(rx.recv_timeout(&mut buf, short).map(drop));
    see(tx.try_send(&make_msg(0, 32)));
    see(rx.recv_timeout(&mut buf, short).map(drop));
    for i in 0..40 {
        let r = tx.send_timeout(&make_msg(i, 32), short);
        let stop = r.is_err();
        see(r);
        if stop {
            break;
        }
    }
    see(rx.try_recv(&mut buf).map(drop));
    see(rx.recv_timeout(&mut buf, short).map(drop));
    kinds.sort();
    kinds.dedup();
    kinds.join(", ")
}

// ---------------------------------------------------------------------------
// The semaphore words scribbled while both sides sleep and wake on them.

/// A producer and a consumer in two processes stream numbered messages
/// through a small `Semaphore` ring, each pausing now and then so that the
/// other sleeps (the consumer on an empty ring, the producer on a full
/// one), while a third process writes arbitrary values into every word of
/// both wait lines (seq, waiting, the semaphore count, and the rest of the
/// line, where glibc's `sem_t` was up to format v2). Required: no process
/// dies of a signal, none hangs (each round is bounded by its watchdogs),
/// and every message arrives intact and in order, then `Disconnected`. The
/// wait words are doorbells only: garbage in them may cost a spurious
/// wake-up or a late one (by one 20 ms slice), never an error.
fn semaphore_words_scribbled_under_traffic<V: Variant>() {
    let _s = serial();
    let rounds = iterations("SHMPIPE_HOSTILE_ROUNDS", 6);
    let mut rng = Rng::new(seed() ^ 0x5e3a ^ V::NAME.len() as u64);
    let mut delivered = 0u64;
    let mut wakes = 0u64;
    for round in 0..rounds {
        let name = ShmName::new("semscribble");
        let b = Builder::<V>::default()
            .capacity(1024)
            .wait(WaitStrategy::Semaphore);
        let (n, path) = (name.as_str(), name.path());
        // 0: stop the scribbler; 1: messages sent; 2: received; 3: the
        // consumer's empty waits; 4: the consumer created the segment.
        let words = SharedWords::new(5);
        let w = &words;
        let seeds = (rng.next_u64(), rng.next_u64(), rng.next_u64());
        let traffic = Duration::from_millis(300);

        let b3 = b.clone();
        let mut consumer = fork_child(60, move || {
            let mut rx = ctx(b3.create_consumer(n), "create_consumer")?;
            w.get(4).store(1, SeqCst);
            let mut r = Rng::new(seeds.2);
            let mut buf = Vec::new();
            let mut want = 0u64;
            loop {
                match rx.recv_timeout(&mut buf, T) {
                    Ok(_) => {
                        expect_seq(&buf, want).map_err(|e| format!("message {want}: {e}"))?;
                        want += 1;
                    }
                    Err(Error::Disconnected) => break,
                    Err(e) => return Err(format!("recv after {want} messages: {e:?}")),
                }
                if r.chance(1, 32) {
                    std::thread::sleep(Duration::from_micros(r.range(100, 2000)));
                }
            }
            w.get(2).store(want, SeqCst);
            w.get(3).store(rx.stats().empty_waits, SeqCst);
            Ok(())
        });
        assert!(
            wait_until(T, || w.get(4).load(SeqCst) == 1),
            "consumer did not create the ring: {}",
            consumer.report()
        );
        let mut scribbler = fork_child(60, || {
            let h = Hostile::open(&path);
            let mut r = Rng::new(seeds.0);
            while w.get(0).load(SeqCst) == 0 {
                let line = *r.pick(&[OFF_WAIT_C, OFF_WAIT_P]);
                // Mostly the first 40 bytes, the words with a meaning
                // (seq, waiting, count; glibc's sem_t up to format v2),
                // sometimes anywhere in the line.
                let words = if r.chance(3, 4) { 10 } else { WAIT_LINE / 4 };
                let off = line + 4 * r.below(words as u64) as usize;
                let v = match r.below(4) {
                    0 => r.next_u64() as u32,
                    1 => *r.pick(&[0, 1, 2, 128, u32::MAX]),
                    // 128: glibc's "shared" futex flag, the value a healthy
                    // sem_t's private word held (garbage must race it).
                    2 => 128,
                    _ => 0,
                };
                h.w32(off, v);
                spin_a_bit(r.below(200));
            }
            Ok(())
        });
        let b2 = b.clone();
        let mut producer = fork_child(60, move || {
            let mut tx = ctx(b2.open_producer(n), "open_producer")?;
            let mut r = Rng::new(seeds.1);
            let end = std::time::Instant::now() + traffic;
            let mut seq = 0u64;
            while std::time::Instant::now() < end {
                let m = make_msg(seq, size_for(seq, seeds.1, 200));
                ctx(tx.send_timeout(&m, T), "send")?;
                seq += 1;
                w.get(1).store(seq, SeqCst);
                if r.chance(1, 32) {
                    std::thread::sleep(Duration::from_micros(r.range(100, 2000)));
                }
            }
            Ok(())
        });
        let p = producer.wait(T);
        let c = consumer.wait(T);
        w.get(0).store(1, SeqCst);
        let sc = scribbler.wait(T);
        assert_eq!(
            (p, c, sc),
            (Status::Exited(0), Status::Exited(0), Status::Exited(0)),
            "[{}] round {round}: producer {}, consumer {}, scribbler {} (signal 14: hang)",
            V::NAME,
            producer.report(),
            consumer.report(),
            scribbler.report()
        );
        let (sent, received) = (w.get(1).load(SeqCst), w.get(2).load(SeqCst));
        assert_eq!(received, sent, "[{}] round {round}", V::NAME);
        delivered += received;
        wakes += w.get(3).load(SeqCst);
    }
    eprintln!(
        "[{}] semaphore words scribbled under traffic: {rounds} rounds, {delivered} messages in order, {wakes} empty waits, no signal",
        V::NAME
    );
    assert!(delivered > 0);
}

#[test]
fn semaphore_words_scribbled_under_traffic_lockfree() {
    semaphore_words_scribbled_under_traffic::<LockFree>();
}

#[test]
fn semaphore_words_scribbled_under_traffic_locked() {
    semaphore_words_scribbled_under_traffic::<Locked>();
}

// ---------------------------------------------------------------------------
// Minimal repro: a corruption reported through the peer's state word sticks.

/// Once a handle returned `Corrupted`, every later call on it does, too.
/// Here the corruption is the peer's endpoint state word (77).
fn peer_state_corruption_sticks<V: Variant>() {
    let _s = serial();
    let name = ShmName::new("sticky");
    let b = Builder::<V>::default().capacity(4096);
    let mut tx = b.create_producer(name.as_str()).unwrap();
    let mut rx = b.open_consumer(name.as_str()).unwrap();
    let h = Hostile::open(&name.path());
    let mut buf = Vec::new();

    // Producer side: the consumer's state word is garbage.
    h.w32(OFF_CSTATE, 77);
    let r = tx.try_send(&make_msg(0, 32));
    assert!(matches!(r, Err(Error::Corrupted { .. })), "try_send: {r:?}");
    let r = tx.send_timeout(&make_msg(0, 32), Duration::from_millis(10));
    assert!(
        matches!(r, Err(Error::Corrupted { .. })),
        "[{}] send_timeout after Corrupted: {r:?}",
        V::NAME
    );

    // Consumer side: the producer's state word is garbage, the ring empty.
    h.w32(OFF_PSTATE, 77);
    let r = rx.try_recv(&mut buf);
    assert!(matches!(r, Err(Error::Corrupted { .. })), "try_recv: {r:?}");
    // The word is repaired and a message arrives: the handle stays failed.
    h.w32(OFF_PSTATE, 1);
    let mut tx2 = tx; // (the producer is broken; write the record by hand)
    let _ = tx2.try_send(b"0123456789abcdef");
    h.w64(HEADER, rec_word(KIND_MSG, 16));
    h.w64(OFF_TAIL, 24);
    let r = rx.try_recv(&mut buf);
    assert!(
        matches!(r, Err(Error::Corrupted { .. })),
        "[{}] try_recv after Corrupted: {r:?}",
        V::NAME
    );
}

#[test]
fn peer_state_corruption_sticks_lockfree() {
    peer_state_corruption_sticks::<LockFree>();
}

#[test]
fn peer_state_corruption_sticks_locked() {
    peer_state_corruption_sticks::<Locked>();
}
