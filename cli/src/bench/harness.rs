//! The one harness every transport runs through: a `Transport` makes a
//! duplex channel before `fork()`, each process turns it into an `Endpoint`,
//! and the same streaming and ping-pong loops, message pattern and checks
//! run on top, with the parent and the child pinned to different CPUs.

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use nix::fcntl::OFlag;
use nix::sched::{sched_getaffinity, sched_setaffinity, CpuSet};
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{fork, ForkResult, Pid};

/// Set by the parent's watchdog when it killed a hung child: spin loops and
/// timed waits in the parent give up when they see it.
static ABORT: AtomicBool = AtomicBool::new(false);

/// The sequence number that marks the end of a phase.
pub const END: u64 = u64::MAX;

/// How endpoints wait for their peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Busy-poll with non-blocking calls.
    Spin,
    /// Block in the transport's own way (syscall, futex, semaphore, event).
    Block,
}

impl Mode {
    pub fn name(self) -> &'static str {
        match self {
            Mode::Spin => "spin",
            Mode::Block => "blocking",
        }
    }
}

/// One side of a duplex channel. Messages have a fixed size known to both
/// sides; stream transports frame them by reading exactly that many bytes.
pub trait Endpoint {
    /// Switch between busy-polling and blocking waits.
    fn set_mode(&mut self, mode: Mode) -> Result<(), String>;
    /// Send one message.
    fn send(&mut self, msg: &[u8]) -> Result<(), String>;
    /// Receive one message of exactly `len` bytes and hand it to `f`
    /// (in place where the transport allows it).
    fn recv<R>(&mut self, len: usize, f: impl FnOnce(&[u8]) -> R) -> Result<R, String>;
    /// Receive one or more messages of exactly `len` bytes, handing each to
    /// `f` in order; returns how many. The streaming receiver uses it, so a
    /// transport that consumes in batches (shmpipe's `drain`) hands a batch
    /// straight to the check instead of buffering it for `recv`. Default:
    /// one `recv`.
    fn recv_each(&mut self, len: usize, mut f: impl FnMut(&[u8])) -> Result<usize, String> {
        self.recv(len, |m| f(m)).map(|()| 1)
    }
}

/// A way to move messages between two processes.
pub trait Transport {
    /// What is made before `fork()` and inherited by both processes.
    type Setup;
    /// A process's end of the channel.
    type End: Endpoint;
    /// Name used on the command line and in reports.
    fn name(&self) -> &'static str;
    /// `Err(reason)` if this transport cannot carry messages of `size` bytes.
    fn supports(&self, _size: usize) -> Result<(), String> {
        Ok(())
    }
    /// Mode used for the streaming measurement.
    fn stream_mode(&self) -> Mode {
        Mode::Block
    }
    /// Whether the parent makes its end only after the child has made its
    /// own (for transports whose endpoints must not be created concurrently).
    fn child_first(&self) -> bool {
        false
    }
    /// Make the channel (both directions) before the fork.
    fn setup(&self, size: usize) -> Result<Self::Setup, String>;
    /// The parent's end (sends first in every phase).
    fn parent(&self, setup: Self::Setup, size: usize) -> Result<Self::End, String>;
    /// The child's end.
    fn child(&self, setup: Self::Setup, size: usize) -> Result<Self::End, String>;
}

/// Spin-wait step shared by every non-blocking loop: a CPU hint, and every
/// few thousand rounds a look at the watchdog's flag.
#[inline]
pub fn spin_step(rounds: &mut u32) -> Result<(), String> {
    *rounds = rounds.wrapping_add(1);
    if *rounds & 4095 == 0 && aborted() {
        return Err("aborted by the watchdog".into());
    }
    std::hint::spin_loop();
    Ok(())
}

/// Busy-poll `attempt` until it succeeds: an error for which `busy` holds
/// (full, empty) means "not yet" and takes a [`spin_step`]; any other is the
/// row's error, prefixed with `what`.
#[inline]
pub fn spin_until<T, E: std::fmt::Display>(
    what: &str,
    busy: impl Fn(&E) -> bool,
    mut attempt: impl FnMut() -> Result<T, E>,
) -> Result<T, String> {
    let mut rounds = 0;
    loop {
        match attempt() {
            Ok(v) => return Ok(v),
            Err(e) if busy(&e) => spin_step(&mut rounds)?,
            Err(e) => return Err(format!("{what}: {e}")),
        }
    }
}

/// A name no other session uses: `prefix`, this process's id and a count
/// of the names it made.
pub fn unique_name(prefix: &str) -> String {
    static SEQ: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = SEQ.fetch_add(1, Ordering::Relaxed);
    format!("{prefix}-{}-{n}", std::process::id())
}

/// The failed call `what` with the OS error, for a row's error text.
pub fn os_err(what: &str) -> String {
    format!("{what}: {}", std::io::Error::last_os_error())
}

/// After a syscall of a non-blocking or timed loop failed: `Ok` to retry
/// (EINTR; EAGAIN while busy-polling; ETIMEDOUT of a `timed` wait unless
/// the watchdog fired), else the error for the row.
pub fn retry_or_fail(spin: bool, timed: bool, rounds: &mut u32, what: &str) -> Result<(), String> {
    match std::io::Error::last_os_error().raw_os_error().unwrap_or(0) {
        libc::EINTR => Ok(()),
        libc::EAGAIN if spin => spin_step(rounds),
        libc::ETIMEDOUT if timed && !aborted() => Ok(()),
        _ => Err(os_err(what)),
    }
}

/// Whether the watchdog fired (checked by timed waits).
pub fn aborted() -> bool {
    ABORT.load(Ordering::Relaxed)
}

/// The message pattern: a fixed body with the sequence number stamped as a
/// little-endian u64 at the start of every 64-byte line and in the last 8
/// bytes, so a stale, torn or reordered line shows.
pub struct Pattern {
    base: Vec<u8>,
    stamps: Vec<usize>,
    /// The stamps cover every byte (8 and 16 bytes): comparing them is the
    /// full comparison, without stamping a copy and a `memcmp` call, which
    /// cost more per message than the libraries measured at 8 B.
    stamps_cover_all: bool,
}

/// What a received message turned out to be.
pub enum Check {
    Good,
    End,
    Bad(String),
}

impl Pattern {
    pub fn new(size: usize) -> Self {
        let base = (0..size)
            .map(|i| ((i as u32).wrapping_mul(2_654_435_761) >> 24) as u8 ^ (size as u8))
            .collect();
        let mut stamps = Vec::new();
        let mut o = 0;
        while o == 0 || (size >= 16 && o + 16 <= size) {
            stamps.push(o);
            o += 64;
        }
        if size >= 16 {
            stamps.push(size - 8);
        }
        let stamps_cover_all = (0..size).all(|i| stamps.iter().any(|&o| (o..o + 8).contains(&i)));
        Pattern {
            base,
            stamps,
            stamps_cover_all,
        }
    }

    /// A buffer to stamp and send.
    pub fn buffer(&self) -> Vec<u8> {
        self.base.clone()
    }

    pub fn stamp(&self, buf: &mut [u8], seq: u64) {
        let b = seq.to_le_bytes();
        for &o in &self.stamps {
            buf[o..o + 8].copy_from_slice(&b);
        }
    }

    /// Every message's stamps are checked; the body is compared in full for
    /// messages up to 1 KiB and for every 16th larger one.
    pub fn full_check(&self, seq: u64) -> bool {
        self.base.len() <= 1024 || seq & 15 == 0
    }

    /// What a receiver compares messages with.
    pub fn checker(&self) -> Checker<'_> {
        Checker {
            pat: self,
            expected: self.buffer(),
        }
    }

    pub fn len(&self) -> usize {
        self.base.len()
    }
}

/// Checks received messages against the pattern, keeping a stamped copy of
/// the expected message so a full check is one `memcmp`.
pub struct Checker<'a> {
    pat: &'a Pattern,
    expected: Vec<u8>,
}

impl Checker<'_> {
    #[inline]
    pub fn check(&mut self, msg: &[u8], expect: u64) -> Check {
        let pat = self.pat;
        if msg.len() != pat.base.len() {
            return Check::Bad(format!(
                "message {expect}: {} bytes, expected {}",
                msg.len(),
                pat.base.len()
            ));
        }
        if read_u64(msg, 0) == END {
            return match pat.stamps.iter().find(|&&o| read_u64(msg, o) != END) {
                None => Check::End,
                Some(&o) => Check::Bad(format!(
                    "end marker: stamp at byte {o} is {}",
                    read_u64(msg, o)
                )),
            };
        }
        if pat.stamps_cover_all {
            if pat.stamps.iter().all(|&o| read_u64(msg, o) == expect) {
                return Check::Good;
            }
        } else if pat.full_check(expect) {
            pat.stamp(&mut self.expected, expect);
            if msg == &self.expected[..] {
                return Check::Good;
            }
        } else if pat.stamps.iter().all(|&o| read_u64(msg, o) == expect) {
            return Check::Good;
        }
        Check::Bad(self.describe(msg, expect))
    }

    /// Where a bad message differs (slow path).
    #[cold]
    fn describe(&self, msg: &[u8], expect: u64) -> String {
        if let Some(&o) = self
            .pat
            .stamps
            .iter()
            .find(|&&o| read_u64(msg, o) != expect)
        {
            return format!(
                "message {expect}: sequence stamp at byte {o} is {}, expected {expect}",
                read_u64(msg, o)
            );
        }
        match msg.iter().zip(&self.expected).position(|(a, b)| a != b) {
            Some(i) => format!("message {expect}: payload byte {i} differs from what was sent"),
            None => format!("message {expect}: differs from what was sent"),
        }
    }
}

fn read_u64(m: &[u8], o: usize) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&m[o..o + 8]);
    u64::from_le_bytes(b)
}

/// How long and how often to measure.
#[derive(Debug, Clone)]
pub struct Plan {
    pub warmup: Duration,
    pub stream_reps: usize,
    pub stream_time: Duration,
    pub max_stream_msgs: u64,
    pub latency_reps: usize,
    pub latency_time: Duration,
    /// Whether the ping-pong runs also take the blocking mode (else only
    /// busy-polling).
    pub block_latency: bool,
    pub max_round_trips: u64,
    /// Added to ten times the session's busy time to bound a session.
    pub watchdog_slack: Duration,
}

#[derive(Debug, Clone, Copy)]
enum Phase {
    Stream { measured: bool },
    PingPong(Mode),
}

impl Plan {
    fn phases(&self) -> Vec<Phase> {
        let mut v = vec![Phase::Stream { measured: false }];
        v.extend((0..self.stream_reps).map(|_| Phase::Stream { measured: true }));
        let modes: &[Mode] = if self.block_latency {
            &[Mode::Spin, Mode::Block]
        } else {
            &[Mode::Spin]
        };
        for &m in modes {
            v.extend((0..self.latency_reps).map(|_| Phase::PingPong(m)));
        }
        v
    }

    /// Phases per session, for the progress bar.
    pub fn phase_count(&self) -> u64 {
        self.phases().len() as u64
    }

    /// Generous bound on a whole session, after which the child is killed.
    fn watchdog(&self) -> Duration {
        let busy = self.warmup
            + self.stream_time * self.stream_reps as u32
            + self.latency_time * 2 * self.latency_reps as u32;
        busy * 10 + self.watchdog_slack
    }
}

/// One latency run's figures, in nanoseconds.
#[derive(Debug, Clone, Copy)]
pub struct Latency {
    pub p50: u64,
    pub p99: u64,
    pub p999: u64,
    pub max: u64,
    pub round_trips: u64,
}

/// Everything one session (one transport, one size) measured.
#[derive(Debug, Default)]
pub struct SessionOut {
    /// How the streaming runs waited ("spin" or "blocking").
    pub stream_mode: &'static str,
    /// Messages per second of each measured streaming run.
    pub stream: Vec<f64>,
    /// Latency runs, spin mode then blocking mode.
    pub spin: Vec<Latency>,
    pub block: Vec<Latency>,
    /// Messages whose sequence stamps were checked, and of them fully compared.
    pub checked: u64,
    pub fully_compared: u64,
    /// Set when the transport cannot run here (not a failure).
    pub unavailable: Option<String>,
    /// Set when something failed: the row is FAILED.
    pub error: Option<String>,
}

/// CPUs for the parent and the child, if this machine has two to pin to.
#[derive(Debug, Clone, Copy)]
pub struct Cpus {
    pub parent: usize,
    pub child: usize,
}

/// Pick two CPUs from this process's affinity mask.
pub fn pick_cpus() -> Option<Cpus> {
    let set = current_affinity()?;
    let cpus: Vec<usize> = (0..CpuSet::count())
        .filter(|&c| set.is_set(c).unwrap_or(false))
        .collect();
    if cpus.len() < 2 {
        return None;
    }
    Some(Cpus {
        parent: cpus[0],
        child: cpus[1],
    })
}

/// The calling thread's affinity mask, to restore later.
pub fn current_affinity() -> Option<CpuSet> {
    sched_getaffinity(Pid::from_raw(0)).ok()
}

pub fn set_affinity(set: &CpuSet) -> bool {
    sched_setaffinity(Pid::from_raw(0), set).is_ok()
}

/// Pin the calling thread to one CPU.
pub fn pin(cpu: usize) -> bool {
    let mut set = CpuSet::new();
    set.set(cpu).is_ok() && set_affinity(&set)
}

fn pipe() -> Result<(OwnedFd, OwnedFd), String> {
    nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(|e| format!("pipe: {e}"))
}

fn clean(s: &str) -> String {
    s.replace('\n', " ")
}

/// Run every phase of `plan` for transport `t` and message size `size`, in
/// a forked child pinned away from the parent.
pub fn session<T: Transport>(
    t: &T,
    size: usize,
    plan: &Plan,
    cpus: Option<Cpus>,
    mut on_phase: impl FnMut(),
) -> SessionOut {
    let mut out = SessionOut {
        stream_mode: t.stream_mode().name(),
        ..SessionOut::default()
    };
    if let Err(why) = t.supports(size) {
        out.unavailable = Some(why);
        return out;
    }
    let setup = match t.setup(size) {
        Ok(s) => s,
        Err(e) => {
            out.unavailable = Some(format!("setup failed: {e}"));
            return out;
        }
    };
    let phases = plan.phases();
    let (ctrl_r, ctrl_w) = match pipe() {
        Ok(p) => p,
        Err(e) => {
            out.error = Some(e);
            return out;
        }
    };
    let (go_r, go_w) = match pipe() {
        Ok(p) => p,
        Err(e) => {
            out.error = Some(e);
            return out;
        }
    };
    // SAFETY: the bench runs no other threads at this point (the watchdog of
    // the previous session was joined), so the child may allocate freely.
    let pid = match unsafe { fork() } {
        Ok(ForkResult::Parent { child }) => child,
        Err(e) => {
            out.error = Some(format!("fork: {e}"));
            return out;
        }
        Ok(ForkResult::Child) => {
            drop(ctrl_r);
            drop(go_w);
            let bound = plan.watchdog().as_secs() as u32 + 30;
            let code = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                child_main(
                    t,
                    setup,
                    size,
                    &phases,
                    cpus,
                    bound,
                    File::from(ctrl_w),
                    File::from(go_r),
                )
            }))
            .unwrap_or(3);
            // SAFETY: _exit ends the child without running the parent's atexit
            // handlers or flushing its inherited stdio buffers.
            unsafe { libc::_exit(code) };
        }
    };
    drop(ctrl_w);
    drop(go_r);

    let (stop_tx, stop_rx) = mpsc::channel::<()>();
    let bound = plan.watchdog();
    let watchdog = std::thread::spawn(move || {
        if let Err(mpsc::RecvTimeoutError::Timeout) = stop_rx.recv_timeout(bound) {
            ABORT.store(true, Ordering::Relaxed);
            // Our own child, not yet reaped.
            let _ = kill(pid, Signal::SIGKILL);
            true
        } else {
            false
        }
    });

    let mut ctrl = BufReader::new(File::from(ctrl_r));
    let mut go = File::from(go_w);
    let result = parent_main(
        t,
        setup,
        size,
        plan,
        &phases,
        &mut ctrl,
        &mut go,
        &mut out,
        &mut on_phase,
    );
    if let Err(e) = result {
        if out.unavailable.is_none() {
            out.error = Some(e);
        }
        // Our own child, not yet reaped.
        let _ = kill(pid, Signal::SIGKILL);
    }
    drop(go);
    let waited = waitpid(pid, None);
    let _ = stop_tx.send(());
    let fired = watchdog.join().unwrap_or(false);
    ABORT.store(false, Ordering::Relaxed);
    if fired {
        out.error = Some(format!(
            "{} child hung: killed by the watchdog after {} s",
            t.name(),
            bound.as_secs()
        ));
    } else if out.error.is_none()
        && out.unavailable.is_none()
        && !matches!(waited, Ok(WaitStatus::Exited(_, 0)))
    {
        out.error = Some(format!("child ended badly ({waited:?})"));
    }
    out
}

fn read_line(ctrl: &mut BufReader<File>) -> Result<String, String> {
    let mut line = String::new();
    match ctrl.read_line(&mut line) {
        Ok(0) => Err("child exited early (control pipe closed)".into()),
        Ok(_) => Ok(line.trim_end().to_string()),
        Err(e) => Err(format!("reading the child's report: {e}")),
    }
}

/// The child's `OK <count> <fully compared>` report, or its failure.
fn child_report(ctrl: &mut BufReader<File>) -> Result<(u64, u64), String> {
    let line = read_line(ctrl)?;
    let mut it = line.splitn(3, ' ');
    match it.next() {
        Some("OK") => {
            let n = it.next().and_then(|s| s.parse().ok());
            let f = it.next().and_then(|s| s.parse().ok());
            match (n, f) {
                (Some(n), Some(f)) => Ok((n, f)),
                _ => Err(format!("bad report from child: {line}")),
            }
        }
        Some("FAIL") => Err(format!("child: {}", it.collect::<Vec<_>>().join(" "))),
        _ => Err(format!("bad report from child: {line}")),
    }
}

#[allow(clippy::too_many_arguments)]
fn parent_main<T: Transport>(
    t: &T,
    setup: T::Setup,
    size: usize,
    plan: &Plan,
    phases: &[Phase],
    ctrl: &mut BufReader<File>,
    go: &mut File,
    out: &mut SessionOut,
    on_phase: &mut impl FnMut(),
) -> Result<(), String> {
    // Ok: the parent's end, made now; Err: the setup, to use once the child is ready.
    let early = if t.child_first() {
        Err(setup)
    } else {
        Ok(parent_end(t, setup, size, out)?)
    };
    let ready = read_line(ctrl)?;
    if let Some(e) = ready.strip_prefix("ERR ") {
        out.unavailable = Some(format!("child endpoint: {e}"));
        return Err(e.to_string());
    }
    if ready != "READY" {
        return Err(format!("bad handshake from child: {ready}"));
    }
    let mut ep = match early {
        Ok(ep) => ep,
        Err(setup) => parent_end(t, setup, size, out)?,
    };
    go.write_all(b"G")
        .map_err(|e| format!("starting the child: {e}"))?;
    let pat = Pattern::new(size);
    let mut buf = pat.buffer();
    for phase in phases {
        match *phase {
            Phase::Stream { measured } => {
                ep.set_mode(t.stream_mode())?;
                let time = if measured {
                    plan.stream_time
                } else {
                    plan.warmup
                };
                let t0 = Instant::now();
                let sent = stream_send(&mut ep, &pat, &mut buf, t0 + time, plan.max_stream_msgs)?;
                let (got, full) = child_report(ctrl)?;
                let secs = t0.elapsed().as_secs_f64();
                if got != sent {
                    return Err(format!("sent {sent} messages, the child received {got}"));
                }
                out.checked += got;
                out.fully_compared += full;
                if measured {
                    out.stream.push(sent as f64 / secs);
                }
            }
            Phase::PingPong(mode) => {
                ep.set_mode(mode)?;
                let lat = ping(&mut ep, &pat, &mut buf, plan)?;
                let (got, full) = child_report(ctrl)?;
                if got != lat.1 {
                    return Err(format!("sent {} pings, the child answered {got}", lat.1));
                }
                out.checked += 2 * got;
                out.fully_compared += full + lat.2;
                match mode {
                    Mode::Spin => out.spin.push(lat.0),
                    Mode::Block => out.block.push(lat.0),
                }
            }
        }
        on_phase();
    }
    drop(ep);
    Ok(())
}

fn parent_end<T: Transport>(
    t: &T,
    setup: T::Setup,
    size: usize,
    out: &mut SessionOut,
) -> Result<T::End, String> {
    t.parent(setup, size).inspect_err(|e| {
        out.unavailable = Some(format!("parent endpoint: {e}"));
    })
}

fn stream_send<E: Endpoint>(
    ep: &mut E,
    pat: &Pattern,
    buf: &mut [u8],
    until: Instant,
    max: u64,
) -> Result<u64, String> {
    let every = if buf.len() >= 4096 { 4 } else { 256 };
    let mut seq = 0u64;
    loop {
        pat.stamp(buf, seq);
        ep.send(buf)?;
        seq += 1;
        if seq & (every - 1) == 0 && (seq >= max || Instant::now() >= until) {
            break;
        }
    }
    pat.stamp(buf, END);
    ep.send(buf)?;
    Ok(seq)
}

/// Parent side of a ping-pong run: (figures, round trips, fully compared).
fn ping<E: Endpoint>(
    ep: &mut E,
    pat: &Pattern,
    buf: &mut [u8],
    plan: &Plan,
) -> Result<(Latency, u64, u64), String> {
    let mut hist = Histogram::<u64>::new_with_bounds(1, 600_000_000_000, 3)
        .map_err(|e| format!("histogram: {e}"))?;
    let t0 = Instant::now();
    let warm_until = t0 + plan.latency_time / 10;
    let until = t0 + plan.latency_time;
    let len = buf.len();
    let mut checker = pat.checker();
    let mut seq = 0u64;
    let mut full = 0u64;
    loop {
        pat.stamp(buf, seq);
        let start = Instant::now();
        ep.send(buf)?;
        let check = ep.recv(len, |m| checker.check(m, seq))?;
        let end = Instant::now();
        match check {
            Check::Good => {}
            Check::End => return Err(format!("reply {seq}: unexpected end marker")),
            Check::Bad(why) => return Err(format!("reply {why}")),
        }
        if pat.full_check(seq) {
            full += 1;
        }
        if start >= warm_until {
            hist.saturating_record((end - start).as_nanos() as u64);
        }
        seq += 1;
        if (end >= until && !hist.is_empty()) || seq >= plan.max_round_trips {
            break;
        }
    }
    pat.stamp(buf, END);
    ep.send(buf)?;
    let lat = Latency {
        p50: hist.value_at_quantile(0.5),
        p99: hist.value_at_quantile(0.99),
        p999: hist.value_at_quantile(0.999),
        max: hist.max(),
        round_trips: hist.len(),
    };
    Ok((lat, seq, full))
}

#[allow(clippy::too_many_arguments)]
fn child_main<T: Transport>(
    t: &T,
    setup: T::Setup,
    size: usize,
    phases: &[Phase],
    cpus: Option<Cpus>,
    bound_secs: u32,
    mut ctrl: File,
    mut go: File,
) -> i32 {
    // Die with the parent, and never outlive a generous bound even if the
    // parent hangs (best effort: a failure leaves only the bound).
    let _ = nix::sys::prctl::set_pdeathsig(Signal::SIGKILL);
    nix::unistd::alarm::set(bound_secs);
    if let Some(c) = cpus {
        pin(c.child);
    }
    let mut ep = match t.child(setup, size) {
        Ok(ep) => ep,
        Err(e) => {
            let _ = writeln!(ctrl, "ERR {}", clean(&e));
            return 2;
        }
    };
    if writeln!(ctrl, "READY").is_err() {
        return 4;
    }
    let mut byte = [0u8; 1];
    if go.read_exact(&mut byte).is_err() {
        return 0; // the parent gave up before starting
    }
    let pat = Pattern::new(size);
    let mut buf = pat.buffer();
    for phase in phases {
        let r = match *phase {
            Phase::Stream { .. } => ep
                .set_mode(t.stream_mode())
                .and_then(|_| stream_recv(&mut ep, &pat)),
            Phase::PingPong(mode) => ep
                .set_mode(mode)
                .and_then(|_| echo(&mut ep, &pat, &mut buf)),
        };
        let line = match &r {
            Ok((n, f)) => format!("OK {n} {f}"),
            Err(e) => format!("FAIL {}", clean(e)),
        };
        if writeln!(ctrl, "{line}").is_err() || r.is_err() {
            return 1;
        }
    }
    drop(ep);
    0
}

/// Child side of streaming: receive and check until the end marker.
fn stream_recv<E: Endpoint>(ep: &mut E, pat: &Pattern) -> Result<(u64, u64), String> {
    let len = pat.len();
    let mut checker = pat.checker();
    let mut n = 0u64;
    let mut full = 0u64;
    let mut bad = None;
    let mut end = false;
    while !end {
        ep.recv_each(len, |m| {
            if end {
                // Nothing follows the end marker.
                bad.get_or_insert(format!("a message after the end marker, after {n}"));
                return;
            }
            match checker.check(m, n) {
                Check::Good => {}
                Check::End => {
                    end = true;
                    return;
                }
                Check::Bad(why) => {
                    bad.get_or_insert(why);
                }
            }
            if pat.full_check(n) {
                full += 1;
            }
            n += 1;
        })?;
    }
    match bad {
        None => Ok((n, full)),
        Some(why) => Err(format!("integrity check failed: {why}")),
    }
}

/// Child side of ping-pong: answer each ping with a freshly stamped message
/// carrying the same sequence number.
fn echo<E: Endpoint>(ep: &mut E, pat: &Pattern, buf: &mut [u8]) -> Result<(u64, u64), String> {
    let len = buf.len();
    let mut checker = pat.checker();
    let mut n = 0u64;
    let mut full = 0u64;
    loop {
        match ep.recv(len, |m| checker.check(m, n))? {
            Check::Good => {}
            Check::End => break,
            Check::Bad(why) => return Err(format!("integrity check failed: ping {why}")),
        }
        if pat.full_check(n) {
            full += 1;
        }
        pat.stamp(buf, n);
        ep.send(buf)?;
        n += 1;
    }
    Ok((n, full))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pattern_round_trip_and_detection() {
        for size in [8, 15, 16, 64, 100, 1024, 4100, 65536] {
            let p = Pattern::new(size);
            let mut ck = p.checker();
            let mut b = p.buffer();
            p.stamp(&mut b, 7);
            assert!(matches!(ck.check(&b, 7), Check::Good), "size {size}");
            assert!(matches!(ck.check(&b, 8), Check::Bad(_)), "size {size}");
            p.stamp(&mut b, END);
            assert!(matches!(ck.check(&b, 3), Check::End));
            // A flipped body byte is caught on a fully compared message.
            p.stamp(&mut b, 16);
            if size > 16 {
                let i = size / 2 + 9;
                let i = if p.stamps.iter().any(|&o| i >= o && i < o + 8) {
                    i + 8
                } else {
                    i
                };
                if i < size - 8 {
                    b[i] ^= 1;
                    assert!(matches!(ck.check(&b, 16), Check::Bad(_)), "size {size}");
                }
            }
            assert!(matches!(ck.check(&b[..size - 1], 16), Check::Bad(_)));
        }
    }

    #[test]
    fn small_messages_compared_by_their_stamps_catch_every_flipped_byte() {
        for size in [8, 16] {
            let p = Pattern::new(size);
            assert!(p.stamps_cover_all, "size {size}");
            let mut ck = p.checker();
            for i in 0..size {
                let mut b = p.buffer();
                p.stamp(&mut b, 5);
                assert!(matches!(ck.check(&b, 5), Check::Good));
                b[i] ^= 0x10;
                assert!(
                    matches!(ck.check(&b, 5), Check::Bad(_)),
                    "size {size} byte {i}"
                );
            }
        }
        assert!(!Pattern::new(15).stamps_cover_all);
        assert!(!Pattern::new(64).stamps_cover_all);
    }
}
