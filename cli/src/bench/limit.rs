//! What the machine itself moves between the two pinned CPUs, measured in
//! the same run as the transports, so every shmpipe row can show how close
//! it gets (`x limit`):
//!
//! - `limit-slots`: a bare single-producer/single-consumer ring of 1024
//!   64-byte slots in shared memory, the index published every 16 slots, no
//!   framing, no checks beyond one load per slot: what the cache-coherence
//!   fabric moves, in 64-byte messages per second.
//! - `limit-atomic`: a bare ping-pong of two atomic words on their own cache
//!   lines: the cheapest possible round trip (its p50, each round trip timed
//!   with two clock reads, as the transports' rows are).
//! - `limit-records`: the format-v2 protocol itself, with nothing else: 8-byte
//!   header + 64-byte payload records in a 1 MiB ring, the header word as
//!   the consumer's signal, the next header zeroed ahead, `head` stored per
//!   message and read by the producer only when full (waiting for a quarter
//!   of the ring). No validation, no counters, no API. What a shmpipe row
//!   could reach with this protocol: its gap to `limit-slots` is the
//!   protocol's (a per-record signal on a line the producer is still
//!   writing), the gap between it and the row is the library's.
//!
//! Both run across `fork()` on the CPUs the transports use; medians of the
//! runs are reported.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;

use super::harness::{self, Cpus};

/// Slots of the bare ring.
const SLOTS: u64 = 1024;
/// The index is published every this many slots.
const BATCH: u64 = 16;

/// The two reference figures, medians over the runs.
#[derive(Debug, Clone, Serialize)]
pub struct Limits {
    /// 64-byte messages per second through the bare slot ring.
    pub slots_msgs_per_sec: f64,
    pub slots_runs: Vec<f64>,
    /// Round trip of the bare atomic ping-pong, in ns (p50, timed one by one).
    pub atomic_round_trip_ns: f64,
    pub atomic_runs_ns: Vec<f64>,
    /// 64-byte messages per second through the bare format-v2 protocol.
    pub records_msgs_per_sec: f64,
    pub records_runs: Vec<f64>,
    pub method: &'static str,
}

/// Data-area bytes of the `limit-records` ring (the library's default).
const RECORDS_CAP: u64 = 1 << 20;
/// Payload bytes of a `limit-records` message.
const RECORD_PAYLOAD: u64 = 64;

/// Shared memory both processes see after `fork()`.
struct Shared {
    ptr: *mut u8,
    len: usize,
}

impl Shared {
    fn new(len: usize) -> Result<Shared, String> {
        // SAFETY: a fresh anonymous shared mapping; checked for failure.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(harness::os_err("mmap"));
        }
        Ok(Shared {
            ptr: ptr.cast(),
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
fn fork_run(cpus: Option<Cpus>, child: impl FnOnce()) -> Result<libc::pid_t, String> {
    // SAFETY: the child only touches the shared mapping and exits.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(harness::os_err("fork"));
    }
    if pid == 0 {
        if let Some(c) = cpus {
            harness::pin(c.child);
        }
        child();
        // SAFETY: leave the child without running the parent's destructors.
        unsafe { libc::_exit(0) };
    }
    Ok(pid)
}

fn reap(pid: libc::pid_t, deadline: Instant) -> Result<(), String> {
    loop {
        let mut status = 0;
        // SAFETY: waiting for our own child.
        let r = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
        if r == pid {
            return Ok(());
        }
        if Instant::now() > deadline {
            // SAFETY: killing and reaping our own child.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
                libc::waitpid(pid, &mut status, 0);
            }
            return Err("reference run did not finish".into());
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// One run of the bare slot ring: the child produces `n` slots, we consume.
fn slots_run(cpus: Option<Cpus>, n: u64) -> Result<f64, String> {
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

/// One run of the bare format-v2 protocol: the child produces `n` records of
/// 64 bytes, we consume them (copying each payload out, as `recv_into` does).
fn records_run(cpus: Option<Cpus>, n: u64) -> Result<f64, String> {
    const KIND_MSG: u64 = 1 << 32;
    const KIND_PAD: u64 = 2 << 32;
    let cap = RECORDS_CAP;
    let rec = 8 + RECORD_PAYLOAD;
    // Line 0: unused, line 2: head, line 4: start flag, data from 1024.
    let shm = Shared::new(1024 + cap as usize)?;
    let (head, start) = (shm.word(256), shm.word(512));
    let word = |off: u64| shm.word(1024 + (off & (cap - 1)) as usize);
    let data = shm.ptr.wrapping_add(1024);
    let pid = fork_run(cpus, || {
        while start.load(Ordering::Acquire) == 0 {
            std::hint::spin_loop();
        }
        let msg = [7u8; RECORD_PAYLOAD as usize];
        let (mut tail, mut head_cache) = (0u64, 0u64);
        // Orderings as in the library (DESIGN.md section 2): the header's
        // Release store pairs with the consumer's Acquire load of it, and
        // the consumer's Release store of `head` with the Acquire load here.
        for i in 0..n {
            let off = tail & (cap - 1);
            let pad = if cap - off >= rec { 0 } else { cap - off };
            let need = pad + rec + 8;
            if tail + need - head_cache > cap {
                // Full: wait for a quarter of the ring, polling `head` sparingly.
                loop {
                    head_cache = head.load(Ordering::Acquire);
                    if cap - (tail - head_cache) >= need.max(cap / 4) {
                        break;
                    }
                    for _ in 0..16 {
                        std::hint::spin_loop();
                    }
                }
            }
            let at = if pad == 0 { off } else { 0 };
            // SAFETY: `at + 8 + 64 <= cap` (the record fits before the end);
            // the bytes are the producer's until the header is published.
            unsafe {
                std::ptr::copy_nonoverlapping(msg.as_ptr(), data.add(at as usize + 8), msg.len());
                std::ptr::copy_nonoverlapping(
                    i.to_le_bytes().as_ptr(),
                    data.add(at as usize + 8),
                    8,
                );
            }
            // Zero ahead; Relaxed: published by the header's Release store.
            word(at + rec).store(0, Ordering::Relaxed);
            if pad == 0 {
                word(at).store(KIND_MSG | RECORD_PAYLOAD, Ordering::Release);
            } else {
                word(0).store(KIND_MSG | RECORD_PAYLOAD, Ordering::Relaxed);
                word(off).store(KIND_PAD | (pad - 8), Ordering::Release);
            }
            tail += pad + rec;
        }
    })?;
    let t0 = Instant::now();
    start.store(1, Ordering::Release);
    let mut h = 0u64;
    let mut sum = 0u64;
    let mut buf = [0u8; RECORD_PAYLOAD as usize];
    let mut i = 0;
    while i < n {
        let mut off = h & (cap - 1);
        // Acquire: pairs with the producer's Release header store.
        let mut hw = word(off).load(Ordering::Acquire);
        if hw == 0 {
            std::hint::spin_loop();
            continue;
        }
        if hw & KIND_PAD != 0 {
            h += cap - off;
            off = 0;
            hw = word(0).load(Ordering::Acquire);
        }
        let len = (hw & 0xffff_ffff).min(RECORD_PAYLOAD) as usize;
        // SAFETY: `off + 8 + len <= cap`: records are written whole.
        unsafe { std::ptr::copy_nonoverlapping(data.add(off as usize + 8), buf.as_mut_ptr(), len) };
        let mut seq = [0u8; 8];
        seq.copy_from_slice(&buf[..8]);
        sum = sum.wrapping_add(u64::from_le_bytes(seq));
        h += rec;
        i += 1;
        // Release: pairs with the producer's Acquire load of `head`.
        head.store(h, Ordering::Release);
    }
    let secs = t0.elapsed().as_secs_f64();
    reap(pid, Instant::now() + Duration::from_secs(10))?;
    if sum != n.wrapping_mul(n.wrapping_sub(1)) / 2 {
        return Err("bare record ring lost a record".into());
    }
    Ok(n as f64 / secs)
}

/// One run of the bare atomic ping-pong: `n` round trips; the median round
/// trip, each timed on its own exactly as the transports' ping-pong rows
/// time theirs (a clock read before and after), so `x limit` compares like
/// with like.
fn atomic_run(cpus: Option<Cpus>, n: u64) -> Result<f64, String> {
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

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// Measure both references (`runs` each, at least 3).
pub fn measure(cpus: Option<Cpus>, quick: bool) -> Result<Limits, String> {
    let runs = 3;
    let (slots_n, rt_n) = if quick {
        (4_000_000, 100_000)
    } else {
        (30_000_000, 1_000_000)
    };
    let mut slots = Vec::new();
    let mut atomic = Vec::new();
    let mut records = Vec::new();
    for _ in 0..runs {
        slots.push(slots_run(cpus, slots_n)?);
        records.push(records_run(cpus, slots_n / 2)?);
        atomic.push(atomic_run(cpus, rt_n)?);
    }
    Ok(Limits {
        slots_msgs_per_sec: median(slots.clone()),
        slots_runs: slots,
        atomic_round_trip_ns: median(atomic.clone()),
        atomic_runs_ns: atomic,
        records_msgs_per_sec: median(records.clone()),
        records_runs: records,
        method: "limit-slots: bare SPSC ring of 1024 64-byte slots, index published every 16 slots, across fork() on the same CPUs; limit-atomic: bare ping-pong of two atomic words on separate lines, p50 of round trips timed one by one as the transports' are; limit-records: the bare format-v2 protocol (72-byte records, header as signal, zero ahead, head per message) in a 1 MiB ring; medians of 3 runs",
    })
}

/// One shmpipe row at one size against the limits.
#[derive(Debug, Clone, Serialize)]
pub struct XLimit {
    pub transport: &'static str,
    pub size: usize,
    /// msgs/s / limit-slots msgs/s.
    pub stream_x_limit: Option<f64>,
    /// msgs/s / limit-records msgs/s (64-byte rows only: the bare protocol's rate).
    pub stream_x_records: Option<f64>,
    /// Busy-poll round-trip p50 / limit-atomic round trip (1.0 is the floor).
    pub round_trip_x_limit: Option<f64>,
}

/// `x limit` for every shmpipe row, against the limits measured next to
/// its size.
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
            out.push(XLimit {
                transport: row.name,
                size: cell.size,
                stream_x_limit: cell.msgs_per_sec.map(|m| m / l.slots_msgs_per_sec),
                stream_x_records: cell
                    .msgs_per_sec
                    .filter(|_| cell.size as u64 == RECORD_PAYLOAD)
                    .map(|m| m / l.records_msgs_per_sec),
                round_trip_x_limit: cell
                    .latency
                    .spin
                    .as_ref()
                    .map(|s| s.p50_ns as f64 / l.atomic_round_trip_ns),
            });
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
        "\nhardware limit, same run and CPUs, measured next to each size's rows: limit-slots = bare 64-byte slot ring (index every 16 slots), limit-records = the bare format-v2 protocol (64-byte messages, no checks), limit-atomic = bare atomic ping-pong (p50)"
    );
    for (size, l) in per_size {
        let _ = writeln!(
            s,
            "  next to {:>6}: limit-slots {:.1}M msgs/s, limit-records {:.1}M msgs/s ({:.2}x limit-slots), limit-atomic {:.0} ns",
            super::report::size_label(*size),
            l.slots_msgs_per_sec / 1e6,
            l.records_msgs_per_sec / 1e6,
            l.records_msgs_per_sec / l.slots_msgs_per_sec,
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
        "{:<22} {:>8} {:>16} {:>18} {:>22}",
        "transport", "size", "msgs/s x limit", "x limit-records", "spin p50 rtt x limit"
    );
    for x in xs {
        let f = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.2}x"));
        let _ = writeln!(
            s,
            "{:<22} {:>8} {:>16} {:>18} {:>22}",
            x.transport,
            super::report::size_label(x.size),
            f(x.stream_x_limit),
            f(x.stream_x_records),
            f(x.round_trip_x_limit)
        );
    }
    s
}
