//! `shmpipe stress`: a forked producer and consumer over an anonymous ring;
//! every message carries its sequence number and a checksum, and the
//! consumer accounts for each one.
//!
//! Message layout: `seq: u64 LE | checksum: u64 LE | payload`. The size of
//! message `seq` and its payload bytes come from a PRNG seeded with
//! `(seed, seq)`, so the consumer knows the size each message must have.
//! The checksum covers the sequence number and the payload.

use std::collections::BTreeSet;
use std::io;
use std::os::fd::OwnedFd;
use std::time::{Duration, Instant};

use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{fork, ForkResult, Pid};
use serde_json::json;
use shmpipe::{Builder, Consumer, Error, LockFree, Locked, Producer, Variant, VariantKind};

use crate::args::{
    approx_size, human_size, parse_capacity, parse_count, parse_seconds, parse_size_range,
    variant_arg, SizeRange, WaitArg,
};
use crate::fail::{CmdResult, Fail};

/// Bytes before the payload: sequence number and checksum.
const HEADER: u64 = 16;
/// A consumer that receives nothing for this long reports a stall.
const STALL: Duration = Duration::from_secs(30);
/// Gaps larger than this are not tracked message by message.
const MAX_TRACKED_GAP: u64 = 1 << 20;

/// `shmpipe stress --help` (set on the subcommand in main.rs).
pub const STRESS_ABOUT: &str = "Check a ring under load. A forked child sends sequence-numbered, \
checksummed messages of random sizes (from a seeded PRNG) through an anonymous ring; the parent \
receives and verifies each one, then prints exact accounting (sent, received, lost, duplicated, \
out of order, corrupted) and the throughput. A progress bar is drawn on stderr when it is a \
terminal. Exits 1 on any discrepancy, or if either side fails or stalls (no message for 30 s).";

/// `shmpipe stress`.
#[derive(Args, Debug)]
#[command(allow_negative_numbers = true)] // "-5" reaches the value parser, which says why it is wrong
pub struct StressArgs {
    /// Number of messages to send [default: 100000, unless --seconds is given]
    #[arg(long, short = 'n', value_name = "N", value_parser = parse_count)]
    pub messages: Option<u64>,
    /// Send for this many seconds instead of a fixed number of messages
    #[arg(long, short, value_parser = parse_seconds, value_name = "SECONDS", conflicts_with = "messages")]
    pub seconds: Option<Duration>,
    /// Ring design
    #[arg(long, value_parser = variant_arg(), default_value = "lockfree")]
    pub variant: VariantKind,
    /// How idle sides wait
    #[arg(long, value_enum, default_value = "futex", value_name = "STRATEGY")]
    pub wait: WaitArg,
    /// Message sizes in bytes, inclusive: A..B or N; at least 16 (sequence
    /// number and checksum), at most the ring's largest message (capacity/2 - 8)
    #[arg(long, value_parser = parse_size_range, default_value = "16..4KiB", value_name = "A..B", allow_hyphen_values = true)]
    pub size_range: SizeRange,
    /// Data-area size: a power of two from 64 to 4GiB (small rings wrap and fill more often)
    #[arg(long, short, value_parser = parse_capacity, default_value = "64KiB", value_name = "BYTES")]
    pub capacity: u64,
    /// Seed for sizes and payloads [default: from the clock; printed, to replay a run]
    #[arg(long)]
    pub seed: Option<u64>,
    /// Do not draw the progress bar
    #[arg(long, short)]
    pub quiet: bool,
    /// Print the report as one JSON object
    #[arg(long)]
    pub json: bool,
    /// Self-test of the checker: the producer misbehaves around message 10
    #[arg(long, value_enum, hide = true)]
    pub inject: Option<Fault>,
}

/// A deliberate fault, to show that the accounting catches it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Fault {
    /// Count message 10 as sent but never send it.
    Skip,
    /// Send message 10 twice.
    Duplicate,
    /// Send message 11 before message 10.
    Reorder,
    /// Flip a payload byte of message 10 after computing its checksum.
    Corrupt,
    /// The producer process exits at message 10 without closing or reporting.
    Die,
}

/// The message the injected fault is about.
const FAULT_SEQ: u64 = 10;

// ---------------------------------------------------------------------------
// Message generation and checking

fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn mix(seed: u64, seq: u64, salt: u64) -> u64 {
    let mut s = seed ^ seq.wrapping_mul(0xD6E8_FEB8_6659_FD93) ^ salt;
    splitmix(&mut s)
}

/// Size of message `seq`.
fn size_of(seed: u64, seq: u64, r: SizeRange) -> u64 {
    let span = r.max - r.min + 1;
    r.min + mix(seed, seq, 0x5157) % span
}

/// A 64-bit checksum over `seq` and `data`, 8 bytes per step
/// (multiply-xorshift, in the manner of xxHash/wyhash).
fn checksum(seq: u64, data: &[u8]) -> u64 {
    const K: u64 = 0x9FB2_1C65_1E98_DF25;
    let mut h = seq ^ (data.len() as u64).rotate_left(32) ^ 0xC2B2_AE3D_27D4_EB4F;
    let mut words = data.chunks_exact(8);
    for w in &mut words {
        let mut b = [0u8; 8];
        b.copy_from_slice(w);
        h = (h ^ u64::from_le_bytes(b)).wrapping_mul(K);
        h ^= h >> 29;
    }
    for (i, &byte) in words.remainder().iter().enumerate() {
        h = (h ^ ((byte as u64) << (8 * i))).wrapping_mul(K);
        h ^= h >> 29;
    }
    h = (h ^ (h >> 32)).wrapping_mul(K);
    h ^ (h >> 29)
}

/// Write message `seq` into `dst` (whose length is the message size, >= 16).
fn fill(dst: &mut [u8], seed: u64, seq: u64) {
    let (head, payload) = dst.split_at_mut(HEADER as usize);
    let mut s = mix(seed, seq, 0xDA7A);
    let mut chunks = payload.chunks_exact_mut(8);
    for c in &mut chunks {
        c.copy_from_slice(&splitmix(&mut s).to_le_bytes());
    }
    let rest = chunks.into_remainder();
    let last = splitmix(&mut s).to_le_bytes();
    let n = rest.len();
    rest.copy_from_slice(&last[..n]);
    let sum = checksum(seq, payload);
    head[..8].copy_from_slice(&seq.to_le_bytes());
    head[8..].copy_from_slice(&sum.to_le_bytes());
}

/// The consumer's books.
#[derive(Debug, Default)]
struct Books {
    seed: u64,
    range: Option<SizeRange>,
    /// Messages received, intact or not.
    received: u64,
    bytes_received: u64,
    /// Intact messages (right size and checksum).
    intact: u64,
    /// Intact messages whose sequence number was already accounted for.
    duplicated: u64,
    /// Intact messages that arrived after a later one (filled a gap):
    /// the out-of-order count.
    late: u64,
    /// Times the sequence jumped forward (messages skipped at that point).
    jumps: u64,
    /// Messages with a wrong size or checksum.
    corrupted: u64,
    /// Next sequence number expected in order.
    next: u64,
    /// Sequence numbers skipped by a jump and not seen since.
    missing: BTreeSet<u64>,
    /// Skipped numbers not tracked individually (gap above MAX_TRACKED_GAP).
    untracked_gaps: bool,
}

impl Books {
    fn check(&mut self, m: &[u8]) {
        self.received += 1;
        self.bytes_received += m.len() as u64;
        let Some(range) = self.range else { return };
        if (m.len() as u64) < HEADER {
            self.corrupted += 1;
            return;
        }
        let mut w = [0u8; 8];
        w.copy_from_slice(&m[..8]);
        let seq = u64::from_le_bytes(w);
        w.copy_from_slice(&m[8..16]);
        let sum = u64::from_le_bytes(w);
        if m.len() as u64 != size_of(self.seed, seq, range) || checksum(seq, &m[16..]) != sum {
            self.corrupted += 1;
            return;
        }
        self.intact += 1;
        if seq == self.next {
            self.next += 1;
        } else if seq > self.next {
            self.jumps += 1;
            if seq - self.next <= MAX_TRACKED_GAP && self.missing.len() < MAX_TRACKED_GAP as usize {
                self.missing.extend(self.next..seq);
            } else {
                self.untracked_gaps = true;
            }
            self.next = seq + 1;
        } else if self.missing.remove(&seq) {
            self.late += 1;
        } else {
            self.duplicated += 1;
        }
    }

    /// Distinct intact messages.
    fn unique(&self) -> u64 {
        self.intact - self.duplicated
    }
}

// ---------------------------------------------------------------------------
// The producer child

/// What the child reports through the pipe: status, messages and bytes sent, then a message.
const ST_DONE: u64 = 0;
const ST_DISCONNECTED: u64 = 1;
const ST_PEER_DIED: u64 = 2;
const ST_ERROR: u64 = 3;
const ST_PANIC: u64 = 4;

struct Plan {
    seed: u64,
    range: SizeRange,
    messages: Option<u64>,
    seconds: Option<Duration>,
    fault: Option<Fault>,
}

/// Send message `seq`, alternating the zero-copy claim and the copying send.
fn emit<V: Variant>(
    p: &mut Producer<V>,
    buf: &mut [u8],
    plan: &Plan,
    seq: u64,
    corrupt: bool,
) -> Result<(), Error> {
    let len = size_of(plan.seed, seq, plan.range) as usize;
    let damage = |m: &mut [u8]| {
        if corrupt {
            m[len - 1] ^= 0x40;
        }
    };
    if seq & 1 == 0 {
        let mut c = p.claim(len)?;
        fill(&mut c, plan.seed, seq);
        damage(&mut c);
        c.commit();
        Ok(())
    } else {
        fill(&mut buf[..len], plan.seed, seq);
        damage(&mut buf[..len]);
        p.send(&buf[..len])
    }
}

/// Send until done; returns (status, sent, bytes, error text).
fn produce<V: Variant>(mut p: Producer<V>, plan: &Plan) -> (u64, u64, u64, String) {
    let mut buf = vec![0u8; plan.range.max as usize];
    let end = plan.seconds.and_then(|s| Instant::now().checked_add(s));
    let mut sent = 0u64;
    let mut bytes = 0u64;
    let mut seq = 0u64;
    loop {
        if let Some(n) = plan.messages {
            if seq >= n {
                break;
            }
        } else if seq & 63 == 0 && end.is_some_and(|e| Instant::now() >= e) {
            break;
        }
        let len = size_of(plan.seed, seq, plan.range) as usize;
        let f = |x| plan.fault == Some(x);
        let r = match seq {
            FAULT_SEQ if f(Fault::Skip) => Ok(()),
            FAULT_SEQ if f(Fault::Duplicate) => emit(&mut p, &mut buf, plan, seq, false)
                .and_then(|()| emit(&mut p, &mut buf, plan, seq, false)),
            FAULT_SEQ if f(Fault::Reorder) => emit(&mut p, &mut buf, plan, seq + 1, false)
                .and_then(|()| emit(&mut p, &mut buf, plan, seq, false)),
            s if s == FAULT_SEQ + 1 && f(Fault::Reorder) => Ok(()),
            FAULT_SEQ if f(Fault::Corrupt) => emit(&mut p, &mut buf, plan, seq, true),
            FAULT_SEQ if f(Fault::Die) => {
                // SAFETY: this runs only in the forked producer child.
                unsafe { libc::_exit(3) }
            }
            _ => emit(&mut p, &mut buf, plan, seq, false),
        };
        match r {
            Ok(()) => {}
            Err(Error::Disconnected) => return (ST_DISCONNECTED, sent, bytes, String::new()),
            Err(Error::PeerDied) => return (ST_PEER_DIED, sent, bytes, String::new()),
            Err(e) => return (ST_ERROR, sent, bytes, e.to_string()),
        }
        sent += 1;
        bytes += len as u64;
        seq += 1;
    }
    drop(p); // orderly close
    (ST_DONE, sent, bytes, String::new())
}

fn write_all_fd(fd: &OwnedFd, mut data: &[u8]) {
    while !data.is_empty() {
        match nix::unistd::write(fd, data) {
            Ok(n) => data = &data[n..],
            Err(Errno::EINTR) => {}
            Err(_) => return,
        }
    }
}

/// The child's whole life: attach, send, report, `_exit`. Never returns.
fn child<V: Variant>(pair: shmpipe::Pair<V>, plan: &Plan, report: OwnedFd) -> ! {
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        match pair.into_producer() {
            Ok(p) => produce(p, plan),
            Err(e) => (ST_ERROR, 0, 0, format!("attaching the producer: {e}")),
        }
    }));
    let (status, sent, bytes, msg) =
        r.unwrap_or_else(|_| (ST_PANIC, 0, 0, "the producer panicked".to_string()));
    let mut out = Vec::with_capacity(32 + msg.len());
    for v in [status, sent, bytes] {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out.extend_from_slice(msg.as_bytes());
    write_all_fd(&report, &out);
    drop(report);
    let code = if status == ST_DONE { 0 } else { 1 };
    // SAFETY: _exit ends the forked child without running the parent's
    // atexit handlers or destructors a second time.
    unsafe { libc::_exit(code) }
}

/// The child's report as read by the parent.
struct Report {
    status: u64,
    sent: u64,
    bytes: u64,
    message: String,
}

fn read_report(fd: OwnedFd) -> Option<Report> {
    let mut f = std::fs::File::from(fd);
    let mut data = Vec::new();
    io::Read::read_to_end(&mut f, &mut data).ok()?;
    if data.len() < 24 {
        return None;
    }
    let word = |i: usize| {
        let mut w = [0u8; 8];
        w.copy_from_slice(&data[i * 8..i * 8 + 8]);
        u64::from_le_bytes(w)
    };
    Some(Report {
        status: word(0),
        sent: word(1),
        bytes: word(2),
        message: String::from_utf8_lossy(&data[24..]).into_owned(),
    })
}

// ---------------------------------------------------------------------------
// The parent: consumer and accounting

/// How the consumer's loop ended.
enum End {
    Closed,
    PeerDied,
    Stalled,
    Error(String),
}

fn consume<V: Variant>(
    c: &mut Consumer<V>,
    books: &mut Books,
    bar: &ProgressBar,
    plan: &Plan,
    start: Instant,
) -> End {
    let mut last_draw = Instant::now();
    let draw = |books: &Books| {
        if plan.messages.is_some() {
            bar.set_position(books.received);
        } else {
            bar.set_position(start.elapsed().as_millis() as u64);
            bar.set_message(format!("{} messages", books.received));
        }
    };
    loop {
        // Take what is there in one batch; wait only when there is nothing.
        let r = match c.drain(4096, |m| books.check(m)) {
            Ok(0) => c.recv_with_timeout(STALL, |m| books.check(m)),
            Ok(_) => Ok(()),
            Err(e) => Err(e),
        };
        match r {
            Ok(()) => {}
            Err(Error::Disconnected) => return End::Closed,
            Err(Error::PeerDied) => return End::PeerDied,
            Err(Error::Timeout) => return End::Stalled,
            Err(e) => return End::Error(e.to_string()),
        }
        if last_draw.elapsed() >= Duration::from_millis(50) {
            last_draw = Instant::now();
            draw(books);
        }
    }
}

fn clock_seed() -> u64 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    let mut s = t ^ ((std::process::id() as u64) << 32);
    splitmix(&mut s)
}

/// `shmpipe stress`.
pub fn run(a: &StressArgs) -> CmdResult {
    let max = shmpipe::max_message_for(a.capacity) as u64;
    if a.size_range.min < HEADER {
        return Err(Fail::Usage(format!(
            "--size-range: messages must be at least {HEADER} bytes (sequence number and checksum)"
        )));
    }
    if a.size_range.max > max {
        return Err(Fail::Usage(format!(
            "--size-range: {} bytes exceeds the largest message of a {} ring ({max} bytes); raise --capacity",
            a.size_range.max,
            human_size(a.capacity)
        )));
    }
    match a.variant {
        VariantKind::LockFree => run_with::<LockFree>(a),
        VariantKind::Locked => run_with::<Locked>(a),
    }
}

fn run_with<V: Variant>(a: &StressArgs) -> CmdResult {
    let plan = Plan {
        seed: a.seed.unwrap_or_else(clock_seed),
        range: a.size_range,
        messages: if a.seconds.is_some() {
            None
        } else {
            Some(a.messages.unwrap_or(100_000))
        },
        seconds: a.seconds,
        fault: a.inject,
    };
    let wait: shmpipe::WaitStrategy = a.wait.into();
    let pair = Builder::<V>::default()
        .capacity(a.capacity)
        .wait(wait)
        .anonymous()
        .map_err(|e| Fail::Runtime(format!("creating the ring: {e}")))?;
    let (rd, wr) = nix::unistd::pipe2(OFlag::O_CLOEXEC)
        .map_err(|e| Fail::Runtime(format!("creating the report pipe: {e}")))?;
    let start = Instant::now();
    // SAFETY: the process is single-threaded here (no progress-bar thread
    // yet), so the child may run ordinary Rust code; it ends with _exit.
    let pid = match unsafe { fork() } {
        Ok(ForkResult::Parent { child: pid }) => pid,
        Ok(ForkResult::Child) => {
            drop(rd);
            child(pair, &plan, wr);
        }
        Err(e) => return Err(Fail::Runtime(format!("fork: {e}"))),
    };
    drop(wr);
    let mut c = match pair.into_consumer() {
        Ok(c) => c,
        Err(e) => {
            kill_and_reap(pid);
            return Err(Fail::Runtime(format!("attaching the consumer: {e}")));
        }
    };
    let bar = if a.quiet {
        ProgressBar::hidden()
    } else if let Some(n) = plan.messages {
        let b = ProgressBar::new(n);
        b.set_style(
            ProgressStyle::with_template("{bar:40} {pos}/{len} messages  {per_sec}  eta {eta}")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        b
    } else {
        let ms = plan.seconds.map(|s| s.as_millis() as u64).unwrap_or(0);
        let b = ProgressBar::new(ms);
        b.set_style(
            ProgressStyle::with_template("{bar:40} {elapsed}  {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        b
    };
    let mut books = Books {
        seed: plan.seed,
        range: Some(plan.range),
        ..Books::default()
    };
    let end = consume(&mut c, &mut books, &bar, &plan, start);
    let elapsed = start.elapsed();
    bar.finish_and_clear();
    let ring = c.stats();
    let ring_sent = ring.messages_sent;
    drop(c); // a producer still sending now sees Disconnected
    if matches!(end, End::Stalled) {
        kill_and_reap(pid);
    }
    // Reap first (killing the child if it does not end): then the report
    // pipe is closed and reading it cannot block.
    let exit = reap(pid);
    let report = read_report(rd);

    // Accounting.
    let mut problems: Vec<String> = Vec::new();
    match &end {
        End::Closed => {}
        End::PeerDied => problems.push("the producer died without closing the ring".into()),
        End::Stalled => problems.push(format!("no message arrived for {STALL:?} (stall)")),
        End::Error(e) => problems.push(format!("consumer error: {e}")),
    }
    let sent = match &report {
        Some(r) => {
            match r.status {
                ST_DONE => {}
                ST_DISCONNECTED => problems.push("the producer found the ring closed early".into()),
                ST_PEER_DIED => problems.push("the producer saw the consumer die".into()),
                ST_PANIC => problems.push("the producer panicked".into()),
                _ => problems.push(format!("producer error: {}", r.message)),
            }
            Some((r.sent, r.bytes))
        }
        None => {
            problems.push("the producer sent no report (it crashed or was killed)".into());
            None
        }
    };
    if let Some(code) = exit {
        if code != 0 && problems.is_empty() {
            problems.push(format!("the producer exited with status {code}"));
        }
    }
    // Without a report, the ring's own counters say what was committed.
    let (sent_msgs, sent_bytes) = sent.unwrap_or((ring_sent, ring.bytes_sent));
    if let Some(n) = plan.messages {
        if sent.is_some() && sent_msgs != n && problems.is_empty() {
            problems.push(format!("the producer sent {sent_msgs} of {n} messages"));
        }
    }
    if ring_sent != sent_msgs {
        problems.push(format!(
            "the ring counted {ring_sent} messages sent, the producer {sent_msgs}"
        ));
    }
    let lost = sent_msgs.saturating_sub(books.unique());
    let extra = books.unique().saturating_sub(sent_msgs);
    if lost > 0 {
        problems.push(format!("{lost} messages lost"));
    }
    if extra > 0 {
        problems.push(format!("{extra} more distinct messages received than sent"));
    }
    if books.duplicated > 0 {
        problems.push(format!("{} duplicated", books.duplicated));
    }
    if books.late > 0 {
        problems.push(format!(
            "{} out of order (arrived after a later message)",
            books.late
        ));
    }
    if books.corrupted > 0 {
        problems.push(format!("{} corrupted", books.corrupted));
    }
    if sent.is_some() && books.bytes_received != sent_bytes && books.corrupted == 0 {
        problems.push(format!(
            "{} bytes received, {sent_bytes} sent",
            books.bytes_received
        ));
    }

    let secs = elapsed.as_secs_f64().max(1e-9);
    let rate = books.received as f64 / secs;
    let bw = books.bytes_received as f64 / secs;
    if a.json {
        let v = json!({
            "variant": VariantKind::of::<V>().name(),
            "wait": wait.name(),
            "capacity": a.capacity,
            "size_min": plan.range.min,
            "size_max": plan.range.max,
            "seed": plan.seed,
            "sent": sent_msgs,
            "bytes_sent": sent_bytes,
            "received": books.received,
            "bytes_received": books.bytes_received,
            "intact": books.intact,
            "lost": lost,
            "duplicated": books.duplicated,
            "out_of_order": books.late,
            "jumps_ahead": books.jumps,
            "corrupted": books.corrupted,
            "seconds": secs,
            "messages_per_second": rate,
            "bytes_per_second": bw,
            "ok": problems.is_empty(),
            "problems": problems,
        });
        let text = serde_json::to_string_pretty(&v)
            .map_err(|e| Fail::Runtime(format!("formatting JSON: {e}")))?;
        println!("{text}");
    } else {
        println!(
            "stress: {} ring, {} waits, capacity {}, messages of {}..{} bytes, seed {}",
            VariantKind::of::<V>(),
            wait.name(),
            human_size(a.capacity),
            plan.range.min,
            plan.range.max,
            plan.seed
        );
        println!(
            "sent:          {sent_msgs} messages, {sent_bytes} bytes{}",
            if sent.is_none() {
                " (the ring's counters; no report from the producer)"
            } else {
                ""
            }
        );
        println!(
            "received:      {} messages, {} bytes",
            books.received, books.bytes_received
        );
        println!("intact:        {}", books.intact);
        println!("lost:          {lost}");
        println!("duplicated:    {}", books.duplicated);
        println!(
            "out of order:  {} (sequence jumped ahead {} times{})",
            books.late,
            books.jumps,
            if books.untracked_gaps {
                ", some gaps too large to track"
            } else {
                ""
            }
        );
        println!("corrupted:     {}", books.corrupted);
        println!(
            "throughput:    {:.0} messages/s, {}/s ({:.3} s)",
            rate,
            approx_size(bw),
            secs
        );
        if problems.is_empty() {
            println!("result:        OK");
        } else {
            println!("result:        FAILED: {}", problems.join("; "));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(Fail::Runtime(format!(
            "{} (seed {})",
            problems.join("; "),
            plan.seed
        )))
    }
}

fn kill_and_reap(pid: Pid) {
    // Our own child, not yet reaped: an error can only say it is gone.
    let _ = kill(pid, Signal::SIGKILL);
    reap(pid);
}

/// Wait for the child (at most 60 s, then kill it); its exit code, or None
/// if a signal ended it.
fn reap(pid: Pid) -> Option<i32> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match waitpid(pid, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(_, code)) => return Some(code),
            Ok(WaitStatus::StillAlive) | Err(Errno::EINTR) => {}
            Ok(_) | Err(_) => return None, // killed by a signal, or not ours
        }
        if Instant::now() >= deadline {
            let _ = kill(pid, Signal::SIGKILL);
            let _ = waitpid(pid, None); // blocks until the killed child is reaped
            return None;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_verify_and_damage_is_caught() {
        let range = SizeRange { min: 16, max: 300 };
        let mut books = Books {
            seed: 7,
            range: Some(range),
            ..Books::default()
        };
        let msg = |seq: u64| {
            let mut m = vec![0u8; size_of(7, seq, range) as usize];
            fill(&mut m, 7, seq);
            m
        };
        for seq in 0..100 {
            books.check(&msg(seq));
        }
        assert_eq!(
            (books.intact, books.unique(), books.corrupted),
            (100, 100, 0)
        );
        let mut bad = msg(100);
        let last = bad.len() - 1;
        bad[last] ^= 1;
        books.check(&bad);
        assert_eq!(books.corrupted, 1);
        books.check(&msg(102)); // skips 100 (corrupted) and 101
        books.check(&msg(101)); // late
        books.check(&msg(50)); // duplicate
        assert_eq!((books.jumps, books.late, books.duplicated), (1, 1, 1));
        assert_eq!(books.unique(), 102);
        let mut short = msg(103);
        short.pop();
        books.check(&short);
        assert_eq!(books.corrupted, 2);
    }

    #[test]
    fn sizes_stay_in_range() {
        let r = SizeRange { min: 16, max: 20 };
        let mut seen = [false; 5];
        for seq in 0..1000 {
            let s = size_of(1, seq, r);
            assert!((16..=20).contains(&s));
            seen[(s - 16) as usize] = true;
        }
        assert!(seen.iter().all(|&b| b));
    }
}
