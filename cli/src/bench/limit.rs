//! What the machine itself moves between the two pinned CPUs, measured in
//! the same run as the transports and next to each size's rows, so every
//! shmpipe row can show how close it gets:
//!
//! - `limit-slots`: a bare single-producer/single-consumer ring of 1024
//!   64-byte slots in shared memory, the index published every 16 slots, no
//!   framing, no checks beyond one load per slot: what the cache-coherence
//!   fabric moves, in 64-byte messages per second. Rows of up to 64 B are
//!   compared with it in msgs/s.
//! - `limit-records`: shmpipe's protocol (format v2/v3 records) with
//!   nothing but what moving and checking a message takes, at the row's own
//!   message size: records of an 8-byte header and the payload (rounded up
//!   to 8) in a 1 MiB ring, the header word as the consumer's signal, the
//!   next header zeroed ahead, padding at the wrap. The producer stamps the
//!   sequence number into its message, copies it in, and reloads `head`
//!   only when its cached room runs out; the consumer copies each payload
//!   out, checks its sequence number (a wrong one fails the run), and
//!   publishes `head` once per batch of whatever it found ready (within a
//!   long batch each sixteenth of the ring, as `drain` does). Either side,
//!   finding nothing (no record; no room), looks again only after a few
//!   spin hints (up to 64 B), so neither races the other through a line it
//!   is writing.
//!   No validation, no `tail`, no counters, no liveness, no API; constant
//!   length copies at 8-64 B. Every shmpipe row does all of this and more,
//!   so none can beat it: the gap between it and a row is the library's.
//! - `limit-memcpy`: one core copying messages of the row's size into a
//!   1 MiB buffer, in bytes/s. Every transport copies each message at
//!   least once on each side, so rows above 64 B are compared with it in
//!   bytes/s (the 64-byte slot ring says nothing about them).
//! - `limit-atomic`: a bare ping-pong of two atomic words on their own cache
//!   lines: the cheapest possible round trip (its p50, each round trip timed
//!   with two clock reads, as the transports' rows are). Compared with
//!   round trips of up to 64 B only: a larger message's round trip is
//!   dominated by moving its bytes, which the ping-pong does not do.
//!
//! All run across `fork()` on the CPUs the transports use (memcpy on the
//! parent's); medians of the runs are reported.

use nix::errno::Errno;
use nix::sys::mman::{mmap_anonymous, MapFlags, ProtFlags};
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{fork, ForkResult, Pid};
use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;

use super::harness::{self, Cpus};

/// Slots of the bare ring.
const SLOTS: u64 = 1024;
/// The index is published every this many slots.
const BATCH: u64 = 16;

/// The reference figures next to one size, medians over the runs.
#[derive(Debug, Clone, Serialize)]
pub struct Limits {
    /// 64-byte messages per second through the bare slot ring.
    pub slots_msgs_per_sec: f64,
    pub slots_runs: Vec<f64>,
    /// Round trip of the bare atomic ping-pong, in ns (p50, timed one by one).
    pub atomic_round_trip_ns: f64,
    pub atomic_runs_ns: Vec<f64>,
    /// Payload bytes of the `limit-records` messages (the rows' size).
    pub records_size: usize,
    /// Messages per second through the bare format-v2 protocol at `records_size`.
    pub records_msgs_per_sec: f64,
    pub records_runs: Vec<f64>,
    /// Bytes per second one core copies in messages of the rows' size
    /// (measured for sizes above 64 B, the only ones compared with it).
    pub memcpy_bytes_per_sec: Option<f64>,
    pub memcpy_runs: Vec<f64>,
    pub method: &'static str,
}

/// Data-area bytes of the `limit-records` ring (the library's default).
const RECORDS_CAP: u64 = 1 << 20;
/// Rows up to this size are compared in msgs/s with `limit-slots` and in
/// round trips with `limit-atomic`; larger ones in bytes/s with `limit-memcpy`.
pub const SMALL: usize = 64;

/// Shared memory both processes see after `fork()`.
struct Shared {
    ptr: *mut u8,
    len: usize,
}

impl Shared {
    fn new(len: usize) -> Result<Shared, String> {
        let size = NonZeroUsize::new(len).ok_or("an empty shared mapping")?;
        // SAFETY: a fresh anonymous shared mapping, no address asked for.
        let ptr = unsafe {
            mmap_anonymous(
                None,
                size,
                ProtFlags::PROT_READ | ProtFlags::PROT_WRITE,
                MapFlags::MAP_SHARED,
            )
        }
        .map_err(|e| format!("mmap: {e}"))?;
        Ok(Shared {
            ptr: ptr.as_ptr().cast(),
            len,
        })
    }

    /// The atomic word at byte offset `off` (8-aligned, inside the mapping).
    fn word(&self, off: usize) -> &AtomicU64 {
        assert!(off.is_multiple_of(8) && off + 8 <= self.len);
        // SAFETY: in bounds and aligned (mmap is page-aligned); the mapping
        // lives as long as `self`; accessed only atomically.
        unsafe { &*(self.ptr.add(off) as *const AtomicU64) }
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly what `new` mapped.
        unsafe { libc::munmap(self.ptr.cast(), self.len) };
    }
}

/// Fork; the child pins itself and runs `child`, then `_exit`s.
fn fork_run(cpus: Option<Cpus>, child: impl FnOnce()) -> Result<Pid, String> {
    // SAFETY: the child only touches the shared mapping and exits.
    match unsafe { fork() } {
        Ok(ForkResult::Parent { child }) => Ok(child),
        Ok(ForkResult::Child) => {
            if let Some(c) = cpus {
                harness::pin(c.child);
            }
            child();
            // SAFETY: leave the child without running the parent's destructors.
            unsafe { libc::_exit(0) }
        }
        Err(e) => Err(format!("fork: {e}")),
    }
}

fn reap(pid: Pid, deadline: Instant) -> Result<(), String> {
    loop {
        match waitpid(pid, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) | Err(Errno::EINTR) => {}
            _ => return Ok(()),
        }
        if Instant::now() > deadline {
            // Killing and reaping our own child.
            let _ = kill(pid, Signal::SIGKILL);
            let _ = waitpid(pid, None);
            return Err("reference run did not finish".into());
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// One run of the bare slot ring: the child produces `n` slots, we consume.
pub fn slots_run(cpus: Option<Cpus>, n: u64) -> Result<f64, String> {
    // Line 0: tail, line 2: head, line 4: start flag, slots from 1024.
    let shm = Shared::new(1024 + (SLOTS * 64) as usize)?;
    let (tail, head, start) = (shm.word(0), shm.word(256), shm.word(512));
    let slot = |i: u64| shm.word(1024 + ((i % SLOTS) * 64) as usize);
    let pid = fork_run(cpus, || {
        while start.load(Ordering::Acquire) == 0 {
            std::hint::spin_loop();
        }
        let mut head_cache = 0;
        for i in 0..n {
            while i - head_cache >= SLOTS {
                head_cache = head.load(Ordering::Acquire);
            }
            // A 64-byte "message": its first word carries the sequence.
            slot(i).store(i, Ordering::Relaxed);
            if (i + 1) % BATCH == 0 || i + 1 == n {
                tail.store(i + 1, Ordering::Release);
            }
        }
    })?;
    let t0 = Instant::now();
    start.store(1, Ordering::Release);
    let mut tail_cache = 0;
    let mut sum = 0u64;
    for i in 0..n {
        while i == tail_cache {
            tail_cache = tail.load(Ordering::Acquire);
        }
        sum = sum.wrapping_add(slot(i).load(Ordering::Relaxed));
        if (i + 1) % BATCH == 0 {
            head.store(i + 1, Ordering::Release);
        }
    }
    let secs = t0.elapsed().as_secs_f64();
    reap(pid, Instant::now() + Duration::from_secs(10))?;
    if sum != n.wrapping_mul(n.wrapping_sub(1)) / 2 {
        return Err("bare slot ring lost a slot".into());
    }
    Ok(n as f64 / secs)
}

/// One run of the bare format-v2 protocol with `size`-byte messages: the
/// child produces `n`, we consume them, copying each payload out and
/// checking its sequence number, as every row's receiver does; messages
/// per second.
pub fn records_run(cpus: Option<Cpus>, size: usize, n: u64) -> Result<f64, String> {
    records_stamped(cpus, size, n, |i| i)
}

/// [`records_run`] with the sequence number of message `i` written as
/// `stamp(i)` (tests corrupt it to see the consumer's check fail).
pub fn records_stamped(
    cpus: Option<Cpus>,
    size: usize,
    n: u64,
    stamp: impl Fn(u64) -> u64,
) -> Result<f64, String> {
    // Constant-length copies where the library's sizes are small (what a
    // library specialised for them could do); a plain memcpy otherwise.
    match size {
        8 => records::<8>(cpus, size, n, stamp),
        16 => records::<16>(cpus, size, n, stamp),
        32 => records::<32>(cpus, size, n, stamp),
        64 => records::<64>(cpus, size, n, stamp),
        _ => records::<0>(cpus, size, n, stamp),
    }
}

/// Spin-loop hints between two looks at a word the other side writes, when
/// the last look found nothing (the consumer: an empty ring; the producer:
/// still no room). Looking sparingly keeps each side out of the line the
/// other is writing, so the consumer reads lines the producer has finished
/// instead of racing it through the one it is still writing.
const SPARING: u32 = 16;

/// [`records_stamped`] with payload copies of `N` bytes (`N == 0`: `size`).
fn records<const N: usize>(
    cpus: Option<Cpus>,
    size: usize,
    n: u64,
    stamp: impl Fn(u64) -> u64,
) -> Result<f64, String> {
    const KIND_MSG: u64 = 1 << 32;
    const KIND_PAD: u64 = 2 << 32;
    let len = if N == 0 { size } else { N };
    if len < 8 || len as u64 > RECORDS_CAP / 4 {
        return Err(format!(
            "limit-records: {len}-byte messages do not fit its ring"
        ));
    }
    let cap = RECORDS_CAP;
    let mask = cap - 1;
    let rec = (8 + len as u64).next_multiple_of(8);
    // Above a line, a record's header lands after all of its payload, so
    // looking again at once races nothing: the polls are only sparing at
    // up to 64 B (at 64 KiB, 16 spin hints per look held the reference
    // below the library row it bounds).
    let sparing = if len > 64 { 1 } else { SPARING };
    // Line 0: unused, line 2: head, line 4: start flag, data from 1024.
    let shm = Shared::new(1024 + cap as usize)?;
    let (head, start) = (shm.word(256), shm.word(512));
    let data = shm.ptr.wrapping_add(1024);
    // SAFETY (both sides): `off & mask` is 8-aligned and below `cap`, and
    // the data area is `cap` bytes from `data`, 1024 bytes into the
    // page-aligned mapping: an aligned word inside the mapping, which lives
    // until `shm` drops after the child was reaped.
    // (`move` closures: the loops keep these values in registers instead of
    // reloading them through references after every store to the ring.)
    let word = move |off: u64| unsafe { &*(data.add((off & mask) as usize) as *const AtomicU64) };
    let pid = fork_run(cpus, move || {
        // Named through `N` here: a body that used only the captured `len`
        // would be the same for every `N`, and was merged into one copy
        // with a run-time length (a call to `memcpy`).
        let len = if N == 0 { len } else { N };
        while start.load(Ordering::Acquire) == 0 {
            std::hint::spin_loop();
        }
        let mut msg = vec![7u8; len];
        // `room_end`: the cached `head` plus the capacity, refreshed only
        // when a record does not fit below it.
        let (mut tail, mut room_end) = (0u64, cap);
        // Orderings as in the library (DESIGN.md section 2): the header's
        // Release store pairs with the consumer's Acquire load of it, and
        // the consumer's Release store of `head` with the Acquire load here.
        for i in 0..n {
            let off = tail & mask;
            let (at, pad) = if off + rec <= cap {
                (off, 0)
            } else {
                (0, cap - off)
            };
            // The record, padding before it at a wrap, and the header slot
            // after it, which is zeroed.
            while tail + pad + rec + 8 > room_end {
                room_end = head.load(Ordering::Acquire) + cap;
                if tail + pad + rec + 8 > room_end {
                    for _ in 0..sparing {
                        std::hint::spin_loop();
                    }
                }
            }
            msg[..8].copy_from_slice(&stamp(i).to_le_bytes());
            // SAFETY: `at + len < at + rec <= cap` (the record fits before
            // the end); these bytes are the producer's until the header is
            // published.
            unsafe {
                std::ptr::copy_nonoverlapping(msg.as_ptr(), data.add(at as usize + 8), len);
            }
            // Zero ahead; Relaxed: published by the header's Release store.
            word(at + rec).store(0, Ordering::Relaxed);
            let header = KIND_MSG | len as u64;
            if pad == 0 {
                word(at).store(header, Ordering::Release);
            } else {
                word(0).store(header, Ordering::Relaxed);
                word(off).store(KIND_PAD | (pad - 8), Ordering::Release);
            }
            tail += pad + rec;
        }
    })?;
    let t0 = Instant::now();
    start.store(1, Ordering::Release);
    let consumed = (move || {
        let mut buf = vec![0u8; len];
        let (mut h, mut i) = (0u64, 0u64);
        let mut empty = 0u32;
        while i < n {
            // A batch: whatever is ready, up to a sixteenth of the ring (as
            // `drain` publishes within a long batch); `head` once after it.
            let (from, part_end) = (h, h + cap / 16);
            while i < n && h < part_end {
                let off = h & mask;
                // Acquire: pairs with the producer's Release header store.
                let hw = word(off).load(Ordering::Acquire);
                if hw == 0 {
                    break;
                }
                // At a wrap the message is at offset 0, its header stored
                // before the padding's (not read: the length is known).
                let at = if hw & KIND_PAD != 0 {
                    h += cap - off;
                    0
                } else {
                    off
                };
                // SAFETY: `at + 8 + len <= cap`: the producer writes every
                // record whole before the end of the area; `buf` is `len` bytes.
                unsafe {
                    std::ptr::copy_nonoverlapping(data.add(at as usize + 8), buf.as_mut_ptr(), len);
                }
                let mut seq = [0u8; 8];
                seq.copy_from_slice(&buf[..8]);
                let seq = u64::from_le_bytes(seq);
                if seq != i {
                    return Err(format!(
                        "limit-records: message {i} carried sequence number {seq}"
                    ));
                }
                h += rec;
                i += 1;
            }
            if h != from {
                // Release: pairs with the producer's Acquire load of `head`.
                head.store(h, Ordering::Release);
                continue;
            }
            empty = empty.wrapping_add(1);
            if empty & 0x3ff == 0 && t0.elapsed() > Duration::from_secs(60) {
                return Err(format!(
                    "limit-records: the producer stopped after {i} of {n} records"
                ));
            }
            for _ in 0..sparing {
                std::hint::spin_loop();
            }
        }
        Ok(())
    })();
    let secs = t0.elapsed().as_secs_f64();
    if consumed.is_err() {
        // Killing our own child, which may be waiting for room forever.
        let _ = kill(pid, Signal::SIGKILL);
    }
    reap(pid, Instant::now() + Duration::from_secs(10))?;
    consumed?;
    Ok(n as f64 / secs)
}

/// One run of `limit-memcpy`: copy `total` bytes in `size`-byte messages
/// into a 1 MiB buffer (wrapping), on this core; bytes per second.
pub fn memcpy_run(size: usize, total: u64) -> f64 {
    let ring = 1usize << 20;
    let size = size.clamp(8, ring);
    let src = vec![7u8; size];
    let mut dst = vec![0u8; ring];
    let n = (total / size as u64).max(1);
    let mut at = 0;
    let t0 = Instant::now();
    for i in 0..n {
        if at + size > ring {
            at = 0;
        }
        dst[at..at + size].copy_from_slice(&src);
        // Keep the copies: they feed a value the optimiser cannot predict.
        dst[at] = i as u8;
        at += size;
    }
    let secs = t0.elapsed().as_secs_f64();
    std::hint::black_box(&dst);
    (n * size as u64) as f64 / secs
}

/// One run of the bare atomic ping-pong: `n` round trips; the median round
/// trip, each timed on its own exactly as the transports' ping-pong rows
/// time theirs (a clock read before and after), so `x limit` compares like
/// with like.
pub fn atomic_run(cpus: Option<Cpus>, n: u64) -> Result<f64, String> {
    let shm = Shared::new(4096)?;
    let (ping, pong) = (shm.word(0), shm.word(256));
    let pid = fork_run(cpus, || {
        for k in 1..=n {
            while ping.load(Ordering::Acquire) != k {
                std::hint::spin_loop();
            }
            pong.store(k, Ordering::Release);
        }
    })?;
    let mut samples = Vec::with_capacity(n as usize);
    for k in 1..=n {
        let start = Instant::now();
        ping.store(k, Ordering::Release);
        while pong.load(Ordering::Acquire) != k {
            std::hint::spin_loop();
        }
        samples.push(start.elapsed().as_nanos() as u64);
    }
    reap(pid, Instant::now() + Duration::from_secs(10))?;
    let mid = samples.len() / 2;
    let (_, p50, _) = samples.select_nth_unstable(mid);
    Ok(*p50 as f64)
}

pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// Measure every reference next to the rows of `size` (3 runs each).
pub fn measure(cpus: Option<Cpus>, quick: bool, size: usize) -> Result<Limits, String> {
    let runs = 3;
    let (slots_n, rt_n, bytes) = if quick {
        (4_000_000u64, 100_000, 256u64 << 20)
    } else {
        (30_000_000, 1_000_000, 2u64 << 30)
    };
    let rec = (8 + size as u64).next_multiple_of(8);
    let records_n = (slots_n / 2).min(bytes / rec).max(64);
    let mut slots = Vec::new();
    let mut atomic = Vec::new();
    let mut records = Vec::new();
    let mut memcpy = Vec::new();
    for _ in 0..runs {
        slots.push(slots_run(cpus, slots_n)?);
        records.push(records_run(cpus, size, records_n)?);
        atomic.push(atomic_run(cpus, rt_n)?);
        if size > SMALL {
            memcpy.push(memcpy_run(size, bytes / 2));
        }
    }
    Ok(Limits {
        slots_msgs_per_sec: median(slots.clone()),
        slots_runs: slots,
        atomic_round_trip_ns: median(atomic.clone()),
        atomic_runs_ns: atomic,
        records_size: size,
        records_msgs_per_sec: median(records.clone()),
        records_runs: records,
        memcpy_bytes_per_sec: (!memcpy.is_empty()).then(|| median(memcpy.clone())),
        memcpy_runs: memcpy,
        method: "limit-slots: bare SPSC ring of 1024 64-byte slots, index published every 16 slots, across fork() on the same CPUs; limit-records: shmpipe's record protocol at the rows' size with nothing else (header as signal, zero ahead, wrap padding, head reloaded only when the cached room runs out, head published once per batch of ready records, payload copied in and out, every sequence number checked; no validation, tail, counters or liveness) in a 1 MiB ring; limit-memcpy: one core copying messages of the rows' size into a 1 MiB buffer, bytes/s (sizes above 64 B); limit-atomic: bare ping-pong of two atomic words on separate lines, p50 of round trips timed one by one as the transports' are; medians of 3 runs",
    })
}

/// One shmpipe row at one size against the limits. Only ratios that mean
/// something are given: msgs/s against 64-byte slots and round trips
/// against the atomic ping-pong for messages of up to 64 B, bytes/s against
/// memcpy above that, and the bare protocol at every size.
#[derive(Debug, Clone, Serialize)]
pub struct XLimit {
    pub transport: &'static str,
    pub size: usize,
    /// msgs/s / limit-slots msgs/s (sizes up to 64 B).
    pub stream_x_limit: Option<f64>,
    /// msgs/s / limit-records msgs/s at the same size (1.0 is the ceiling).
    pub stream_x_records: Option<f64>,
    /// bytes/s / limit-memcpy bytes/s (sizes above 64 B).
    pub stream_x_memcpy: Option<f64>,
    /// Busy-poll round-trip p50 / limit-atomic round trip (sizes up to 64 B;
    /// 1.0 is the floor).
    pub round_trip_x_limit: Option<f64>,
}

/// The ratios of one row's figures at `size` against `l`.
pub fn x_limit(
    transport: &'static str,
    size: usize,
    msgs_per_sec: Option<f64>,
    spin_p50_ns: Option<u64>,
    l: &Limits,
) -> XLimit {
    let small = size <= SMALL;
    XLimit {
        transport,
        size,
        stream_x_limit: msgs_per_sec
            .filter(|_| small)
            .map(|m| m / l.slots_msgs_per_sec),
        stream_x_records: msgs_per_sec
            .filter(|_| l.records_size == size)
            .map(|m| m / l.records_msgs_per_sec),
        stream_x_memcpy: msgs_per_sec
            .filter(|_| !small)
            .zip(l.memcpy_bytes_per_sec)
            .map(|(m, b)| m * size as f64 / b),
        round_trip_x_limit: spin_p50_ns
            .filter(|_| small)
            .map(|p| p as f64 / l.atomic_round_trip_ns),
    }
}

/// The limit ratios of every shmpipe row, against the limits measured next
/// to its size.
pub fn ratios(res: &super::report::Results, per_size: &[(usize, &Limits)]) -> Vec<XLimit> {
    let mut out = Vec::new();
    for row in res
        .transports
        .iter()
        .filter(|r| r.name.starts_with("shmpipe"))
    {
        for cell in &row.results {
            let Some((_, l)) = per_size.iter().find(|(size, _)| *size == cell.size) else {
                continue;
            };
            out.push(x_limit(
                row.name,
                cell.size,
                cell.msgs_per_sec,
                cell.latency.spin.as_ref().map(|s| s.p50_ns),
                l,
            ));
        }
    }
    out
}

/// The printed block under the table.
pub fn table(per_size: &[(usize, &Limits)], xs: &[XLimit]) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "\nhardware limit, same run and CPUs, measured next to each size's rows: limit-slots = bare 64-byte slot ring (index every 16 slots), limit-records = shmpipe's record protocol at that size with only the copies and the sequence check (head once per batch: no row can beat it), limit-memcpy = one core copying such messages (bytes/s, above 64 B), limit-atomic = bare atomic ping-pong (p50)"
    );
    for (size, l) in per_size {
        let memcpy = l.memcpy_bytes_per_sec.map_or(String::new(), |b| {
            format!(", limit-memcpy {:.1} GB/s", b / 1e9)
        });
        let _ = writeln!(
            s,
            "  next to {:>6}: limit-slots {} msgs/s, limit-records {} msgs/s ({:.0} MB/s){memcpy}, limit-atomic {:.0} ns",
            super::report::size_label(*size),
            super::report::count(l.slots_msgs_per_sec),
            super::report::count(l.records_msgs_per_sec),
            l.records_msgs_per_sec * *size as f64 / 1e6,
            l.atomic_round_trip_ns
        );
    }
    let spread = |f: fn(&Limits) -> f64| {
        let v: Vec<f64> = per_size.iter().map(|(_, l)| f(l)).collect();
        let (lo, hi) = v
            .iter()
            .fold((f64::MAX, 0f64), |(a, b), &x| (a.min(x), b.max(x)));
        hi / lo
    };
    let moved = spread(|l| l.slots_msgs_per_sec).max(spread(|l| l.atomic_round_trip_ns));
    if moved > 1.5 {
        let _ = writeln!(
            s,
            "  noisy: the limits moved {moved:.1}x during the run (the vCPUs' cross-core cost changed); each row is compared with the limit taken next to it"
        );
    }
    let _ = writeln!(
        s,
        "{:<22} {:>8} {:>16} {:>16} {:>16} {:>24}",
        "transport",
        "size",
        "x limit-slots",
        "x limit-records",
        "B/s x memcpy",
        "spin p50 x limit-atomic"
    );
    for x in xs {
        let f = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.2}x"));
        let _ = writeln!(
            s,
            "{:<22} {:>8} {:>16} {:>16} {:>16} {:>24}",
            x.transport,
            super::report::size_label(x.size),
            f(x.stream_x_limit),
            f(x.stream_x_records),
            f(x.stream_x_memcpy),
            f(x.round_trip_x_limit)
        );
    }
    let _ = writeln!(
        s,
        "  -: not a meaningful ratio (64-byte slots and the atomic ping-pong only bound messages of up to 64 B; memcpy only bounds larger ones)"
    );
    s
}
