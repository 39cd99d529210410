//! Throughput and ping-pong latency of shmpipe rings, against a pipe(2)
//! baseline measured in the same run.
//!
//! ```text
//! cargo bench --bench ring                      # everything, a few minutes on 2 cores
//! cargo bench --bench ring -- throughput/cross  # a subset (criterion filter)
//! SHMPIPE_BENCH_THROUGHPUT=bytes cargo bench --bench ring   # criterion reports B/s
//! ```
//!
//! One harness, instantiated per transport ([`Transport`]): the lock-free
//! and the locked variant, each with `Spin` and `Futex` waits, and a pipe.
//! Every transport runs the same code with the same sizes and counts:
//!
//! - `throughput/{in-process,cross-process}/{8,64,1024,65536}B`: the main
//!   side sends `iters` messages of the given size (a sequence number in the
//!   first 8 bytes); the peer (a thread, or a forked child) copies each one
//!   into its own buffer, checks its length and order and returns a checksum
//!   that the main side verifies. Time runs from the peer's "ready" to its
//!   "done" on a control pipe, so thread start-up and `fork()` are outside
//!   the measurement. The pipe baseline is in the `cross-process/64B` group.
//! - `ping-pong/{in-process,cross-process}`: two rings, the peer echoes each
//!   64-byte message back; one iteration is one round trip.
//!
//! The main side is pinned to the first allowed CPU, the peer to the second
//! (`sched_setaffinity`). Each criterion sample runs in a fresh ring and a
//! fresh peer (`iter_custom`; a child is forked per sample and knows its
//! message count from the fork). Criterion 0.5 reports one throughput unit
//! per benchmark: messages/s by default (`Throughput::Elements`), bytes/s
//! (`Throughput::Bytes`) with `SHMPIPE_BENCH_THROUGHPUT=bytes`. After a
//! `--bench` run a summary prints both, and ratios against the pipe.

use std::fs::File;
use std::io::{Read, Write};
use std::marker::PhantomData;
use std::os::fd::{FromRawFd, OwnedFd};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, BenchmarkId, Criterion, Throughput};
use shmpipe::{Builder, Consumer, Pair, Producer, Variant};
use shmpipe::{LockFree, Locked, WaitStrategy};

/// Message sizes of the throughput benchmarks, in bytes.
const SIZES: [usize; 4] = [8, 64, 1024, 65536];
/// Message size of the ping-pong benchmark and of the pipe baseline.
const SMALL: usize = 64;
/// Ring capacity of every shmpipe transport.
const CAPACITY: u64 = 1 << 20;
/// A forked peer that is still running after this many seconds is killed
/// (SIGALRM), so a protocol bug fails the run instead of hanging it.
const CHILD_WATCHDOG_SECS: u32 = 120;

// ---------------------------------------------------------------------------
// Transports
// ---------------------------------------------------------------------------

/// Why a benchmark side gave up. Small and `Copy`, so a forked child can
/// report it as one byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
enum Fail {
    Send = 1,
    Recv = 2,
    Length = 3,
    Order = 4,
    Panic = 5,
}

impl Fail {
    fn from_code(c: u8) -> Option<Fail> {
        [
            Fail::Send,
            Fail::Recv,
            Fail::Length,
            Fail::Order,
            Fail::Panic,
        ]
        .into_iter()
        .find(|f| *f as u8 == c)
    }
}

/// The sending end of one direction of a transport.
trait Tx: Send + 'static {
    fn send(&mut self, msg: &[u8]) -> Result<(), Fail>;
}

/// The receiving end of one direction of a transport.
trait Rx: Send + 'static {
    /// Receive the next message into `buf`, whose length is the expected
    /// message length (copied, as a `read` from a pipe does). Returns the
    /// length of the message received.
    fn recv_into(&mut self, buf: &mut [u8]) -> Result<usize, Fail>;
}

/// One kind of channel between two threads or two processes.
trait Transport {
    type Tx: Tx;
    type Rx: Rx;
    /// A new channel whose ends are not taken yet (crosses `fork()`).
    type Link: Send + 'static;

    /// Benchmark id, e.g. `lock-free-spin`.
    fn name(&self) -> String;
    fn link(&self) -> Self::Link;
    /// Both ends, in this process.
    fn split(link: Self::Link) -> (Self::Tx, Self::Rx);
    /// The sending end, in the sending process after `fork()`.
    fn tx_end(link: Self::Link) -> Self::Tx;
    /// The receiving end, in the receiving process after `fork()`.
    fn rx_end(link: Self::Link) -> Self::Rx;
}

/// A shmpipe ring of variant `V` with wait strategy `wait`.
struct Shm<V> {
    wait: WaitStrategy,
    _v: PhantomData<V>,
}

impl<V: Variant> Shm<V> {
    fn new(wait: WaitStrategy) -> Self {
        Shm {
            wait,
            _v: PhantomData,
        }
    }
}

impl<V: Variant> Tx for Producer<V> {
    fn send(&mut self, msg: &[u8]) -> Result<(), Fail> {
        Producer::send(self, msg).map_err(|_| Fail::Send)
    }
}

impl<V: Variant> Rx for Consumer<V> {
    fn recv_into(&mut self, buf: &mut [u8]) -> Result<usize, Fail> {
        self.recv_with(|m| {
            if m.len() == buf.len() {
                buf.copy_from_slice(m);
            }
            m.len()
        })
        .map_err(|_| Fail::Recv)
    }
}

impl<V: Variant> Transport for Shm<V> {
    type Tx = Producer<V>;
    type Rx = Consumer<V>;
    type Link = Pair<V>;

    fn name(&self) -> String {
        format!("{}-{}", V::NAME, self.wait.name())
    }

    fn link(&self) -> Pair<V> {
        let b = Builder::<V>::default().capacity(CAPACITY).wait(self.wait);
        // Both are anonymous (a sealed memfd): the same mapping works for
        // threads and for a forked child.
        b.anonymous()
            .unwrap_or_else(|e| panic!("creating a {} ring: {e}", V::NAME))
    }

    fn split(link: Pair<V>) -> (Self::Tx, Self::Rx) {
        link.split()
            .unwrap_or_else(|e| panic!("attaching both ends: {e}"))
    }

    fn tx_end(link: Pair<V>) -> Self::Tx {
        link.into_producer()
            .unwrap_or_else(|e| panic!("attaching the producer: {e}"))
    }

    fn rx_end(link: Pair<V>) -> Self::Rx {
        link.into_consumer()
            .unwrap_or_else(|e| panic!("attaching the consumer: {e}"))
    }
}

/// pipe(2), fixed-size messages: `write_all` / `read_exact` of one message.
struct Pipe;

impl Tx for File {
    fn send(&mut self, msg: &[u8]) -> Result<(), Fail> {
        self.write_all(msg).map_err(|_| Fail::Send)
    }
}

/// The read end of a pipe.
struct PipeRx(File);

impl Rx for PipeRx {
    fn recv_into(&mut self, buf: &mut [u8]) -> Result<usize, Fail> {
        self.0.read_exact(buf).map_err(|_| Fail::Recv)?;
        Ok(buf.len())
    }
}

impl Transport for Pipe {
    type Tx = File;
    type Rx = PipeRx;
    type Link = (File, File);

    fn name(&self) -> String {
        "pipe".to_string()
    }

    fn link(&self) -> (File, File) {
        let (r, w) = pipe().unwrap_or_else(|e| panic!("pipe(2): {e}"));
        (File::from(r), File::from(w))
    }

    fn split((r, w): (File, File)) -> (File, PipeRx) {
        (w, PipeRx(r))
    }

    fn tx_end((r, w): (File, File)) -> File {
        drop(r);
        w
    }

    fn rx_end((r, w): (File, File)) -> PipeRx {
        drop(w);
        PipeRx(r)
    }
}

/// Something run once per transport (generic, so it cannot be a closure).
trait ForEach {
    fn run<T: Transport>(&mut self, t: T);
}

/// Every shmpipe transport, then (if `with_pipe`) the pipe baseline.
fn for_each_transport(f: &mut impl ForEach, with_pipe: bool) {
    f.run(Shm::<LockFree>::new(WaitStrategy::Spin));
    f.run(Shm::<LockFree>::new(WaitStrategy::Futex));
    f.run(Shm::<Locked>::new(WaitStrategy::Spin));
    f.run(Shm::<Locked>::new(WaitStrategy::Futex));
    if with_pipe {
        f.run(Pipe);
    }
}

// ---------------------------------------------------------------------------
// The peer: a thread or a forked child, with a control pipe back to us
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Place {
    InProcess,
    CrossProcess,
}

impl Place {
    fn name(self) -> &'static str {
        match self {
            Place::InProcess => "in-process",
            Place::CrossProcess => "cross-process",
        }
    }
}

fn pipe() -> std::io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: `fds` is a valid out-array of two ints.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: pipe2 succeeded, so both are fresh descriptors that we own.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// The peer's end of the control pipe: one byte when ready, then a status
/// byte (0 = ok, else a [`Fail`] code) and a `u64` result.
struct Ctl(File);

impl Ctl {
    fn ready(&mut self) {
        // A failed write shows up on the other side as EOF.
        let _ = self.0.write_all(b"R");
    }

    fn done(&mut self, r: Result<u64, Fail>) {
        let mut msg = [0u8; 9];
        match r {
            Ok(v) => msg[1..].copy_from_slice(&v.to_le_bytes()),
            Err(f) => msg[0] = f as u8,
        }
        let _ = self.0.write_all(&msg);
    }
}

/// Ends the forked child: reports `r` on the control pipe and exits with 0
/// or 10 + the failure code, without running destructors or atexit handlers
/// of the parent's state.
fn child_exit(r: Result<u64, Fail>, ctl: &mut Ctl) -> ! {
    let code = match r {
        Ok(_) => 0,
        Err(f) => 10 + f as i32,
    };
    ctl.done(r);
    // SAFETY: _exit is always safe to call; it ends this (child) process.
    unsafe { libc::_exit(code) }
}

enum PeerKind {
    Thread(std::thread::JoinHandle<()>),
    Child(libc::pid_t),
}

/// Our handle on a running peer.
struct Peer {
    ctl: File,
    kind: PeerKind,
}

impl Peer {
    /// Start a peer at `place` that runs `body` on its ends of `links`.
    /// Returns our ends and the peer. `split` takes both ends in this
    /// process; after a fork `ours` / `theirs` take one side each.
    fn start<L, A, B>(
        place: Place,
        links: L,
        split: impl FnOnce(L) -> (A, B),
        ours: impl FnOnce(L) -> A,
        theirs: impl FnOnce(L) -> B,
        body: impl FnOnce(B, &mut Ctl) -> Result<u64, Fail> + Send + 'static,
    ) -> (A, Peer)
    where
        B: Send + 'static,
    {
        let (r, w) = pipe().unwrap_or_else(|e| panic!("control pipe: {e}"));
        match place {
            Place::InProcess => {
                let (a, b) = split(links);
                let mut ctl = Ctl(File::from(w));
                let h = std::thread::spawn(move || {
                    pin(1);
                    let r = body(b, &mut ctl);
                    ctl.done(r);
                });
                let peer = Peer {
                    ctl: File::from(r),
                    kind: PeerKind::Thread(h),
                };
                (a, peer)
            }
            Place::CrossProcess => {
                // Nothing buffered may be written twice by the child.
                let _ = std::io::stdout().flush();
                let _ = std::io::stderr().flush();
                // SAFETY: the bench process is single-threaded here (the
                // in-process peers have been joined), and the child only
                // does ring work and leaves with `_exit`.
                let pid = unsafe { libc::fork() };
                if pid < 0 {
                    panic!("fork: {}", std::io::Error::last_os_error());
                }
                if pid == 0 {
                    drop(r);
                    let mut ctl = Ctl(File::from(w));
                    // SAFETY: alarm has no memory-safety preconditions.
                    unsafe { libc::alarm(CHILD_WATCHDOG_SECS) };
                    pin(1);
                    let res = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        let b = theirs(links);
                        body(b, &mut ctl)
                    }))
                    .unwrap_or(Err(Fail::Panic));
                    child_exit(res, &mut ctl);
                }
                drop(w);
                let a = ours(links);
                let peer = Peer {
                    ctl: File::from(r),
                    kind: PeerKind::Child(pid),
                };
                (a, peer)
            }
        }
    }

    /// Wait until the peer has attached and is about to start.
    fn wait_ready(&mut self) {
        let mut b = [0u8; 1];
        if self.ctl.read_exact(&mut b).is_err() || b[0] != b'R' {
            let why = self.reap();
            panic!("the peer failed before it was ready: {why}");
        }
    }

    /// Wait for the peer's result, then reap it.
    fn finish(mut self) -> u64 {
        let mut msg = [0u8; 9];
        let got = self.ctl.read_exact(&mut msg);
        let status = self.reap();
        if got.is_err() {
            panic!("the peer ended without a result: {status}");
        }
        if msg[0] != 0 {
            let f = Fail::from_code(msg[0]);
            panic!("the peer failed: {f:?} ({status})");
        }
        let mut v = [0u8; 8];
        v.copy_from_slice(&msg[1..]);
        u64::from_le_bytes(v)
    }

    /// Join the thread or wait for the child; describe how it ended.
    fn reap(&mut self) -> String {
        match std::mem::replace(&mut self.kind, PeerKind::Child(0)) {
            PeerKind::Thread(h) => match h.join() {
                Ok(()) => "thread ended".to_string(),
                Err(_) => "thread panicked".to_string(),
            },
            PeerKind::Child(0) => "already reaped".to_string(),
            PeerKind::Child(pid) => {
                let mut st = 0;
                // SAFETY: `st` is a valid out-pointer; `pid` is our child.
                let r = unsafe { libc::waitpid(pid, &mut st, 0) };
                if r != pid {
                    return format!("waitpid: {}", std::io::Error::last_os_error());
                }
                if libc::WIFEXITED(st) {
                    let code = libc::WEXITSTATUS(st);
                    match code {
                        0 => "child exited 0".to_string(),
                        c => format!(
                            "child exited {c} ({:?})",
                            Fail::from_code((c - 10).clamp(0, 255) as u8)
                        ),
                    }
                } else {
                    format!("child killed by signal {}", libc::WTERMSIG(st))
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------
// CPU pinning
// ---------------------------------------------------------------------------

/// The CPUs this process may run on, read once before anything is pinned.
fn allowed_cpus() -> &'static [usize] {
    static CPUS: OnceLock<Vec<usize>> = OnceLock::new();
    CPUS.get_or_init(|| {
        // SAFETY: cpu_set_t is plain data; zero is a valid (empty) set.
        let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
        // SAFETY: `set` is a valid out-pointer of the size we pass.
        let r =
            unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) };
        if r != 0 {
            return Vec::new();
        }
        (0..libc::CPU_SETSIZE as usize)
            // SAFETY: `cpu` is below CPU_SETSIZE, inside the set.
            .filter(|&cpu| unsafe { libc::CPU_ISSET(cpu, &set) })
            .collect()
    })
}

/// Pin the calling thread to the `nth` allowed CPU (0: main side, 1: peer).
/// Does nothing with fewer than two allowed CPUs.
fn pin(nth: usize) {
    let cpus = allowed_cpus();
    if cpus.len() < 2 {
        return;
    }
    // SAFETY: cpu_set_t is plain data; zero is a valid (empty) set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: the CPU number came from sched_getaffinity, below CPU_SETSIZE.
    unsafe { libc::CPU_SET(cpus[nth], &mut set) };
    // SAFETY: `set` is a valid cpu_set_t of the size we pass; 0 = this thread.
    unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) };
}

// ---------------------------------------------------------------------------
// The two workloads
// ---------------------------------------------------------------------------

/// The message the main side sends as number `seq`: `template` with `seq`
/// in its first 8 bytes.
fn stamp(template: &mut [u8], seq: u64) {
    template[..8].copy_from_slice(&seq.to_le_bytes());
}

fn seq_of(msg: &[u8]) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&msg[..8]);
    u64::from_le_bytes(b)
}

/// Checksum over the messages 0..n of size `size`, as the peer computes it.
fn checksum_step(sum: u64, msg: &[u8]) -> u64 {
    sum.wrapping_mul(31)
        .wrapping_add(seq_of(msg) ^ u64::from(msg[msg.len() - 1]))
}

/// A message template of `size` bytes (at least 8): a byte pattern that
/// differs between sizes.
fn template(size: usize) -> Vec<u8> {
    (0..size).map(|i| (i * 7 + size) as u8).collect()
}

/// Send `iters` messages of `size` bytes from here to a peer at `place`;
/// the time from the peer being ready to its verified "done".
fn run_throughput<T: Transport>(t: &T, place: Place, size: usize, iters: u64) -> Duration {
    let (mut tx, mut peer) = Peer::start(
        place,
        t.link(),
        T::split,
        T::tx_end,
        T::rx_end,
        move |mut rx: T::Rx, ctl: &mut Ctl| {
            let mut buf = vec![0u8; size];
            ctl.ready();
            let mut sum = 0u64;
            for i in 0..iters {
                if rx.recv_into(&mut buf)? != size {
                    return Err(Fail::Length);
                }
                if seq_of(&buf) != i {
                    return Err(Fail::Order);
                }
                sum = checksum_step(sum, &buf);
            }
            Ok(sum)
        },
    );
    let mut msg = template(size);
    let mut expected = 0u64;
    peer.wait_ready();
    let start = Instant::now();
    for i in 0..iters {
        stamp(&mut msg, i);
        if let Err(f) = tx.send(&msg) {
            let why = peer.reap();
            panic!("{}: send {i} failed: {f:?} ({why})", t.name());
        }
        expected = checksum_step(expected, &msg);
    }
    let got = peer.finish();
    let elapsed = start.elapsed();
    assert_eq!(got, expected, "{}: checksum mismatch", t.name());
    drop(tx);
    elapsed
}

/// `iters` round trips of a 64-byte message over two channels to a peer
/// at `place` that echoes each one.
fn run_ping_pong<T: Transport>(t: &T, place: Place, iters: u64) -> Duration {
    let ((mut tx, mut rx), mut peer) = Peer::start(
        place,
        (t.link(), t.link()),
        |(a, b)| {
            let (atx, arx) = T::split(a);
            let (btx, brx) = T::split(b);
            ((atx, brx), (arx, btx))
        },
        |(a, b)| (T::tx_end(a), T::rx_end(b)),
        |(a, b)| (T::rx_end(a), T::tx_end(b)),
        move |(mut rx, mut tx): (T::Rx, T::Tx), ctl: &mut Ctl| {
            let mut buf = [0u8; SMALL];
            ctl.ready();
            for i in 0..iters {
                if rx.recv_into(&mut buf)? != SMALL {
                    return Err(Fail::Length);
                }
                if seq_of(&buf) != i {
                    return Err(Fail::Order);
                }
                tx.send(&buf)?;
            }
            Ok(iters)
        },
    );
    let mut msg = template(SMALL);
    let mut back = [0u8; SMALL];
    peer.wait_ready();
    let start = Instant::now();
    for i in 0..iters {
        stamp(&mut msg, i);
        let r = tx.send(&msg).and_then(|()| rx.recv_into(&mut back));
        match r {
            Ok(n) if n == SMALL && back[..] == msg[..] => {}
            other => {
                let why = peer.reap();
                panic!("{}: round trip {i} failed: {other:?} ({why})", t.name());
            }
        }
    }
    let elapsed = start.elapsed();
    assert_eq!(peer.finish(), iters, "{}: echo count", t.name());
    drop((tx, rx));
    elapsed
}

// ---------------------------------------------------------------------------
// Registration and summary
// ---------------------------------------------------------------------------

/// Our own tally of every timed run (warm-up included) per benchmark, for
/// the summary: (group, transport, message size, total iterations, total time).
type Tally = Vec<(String, String, usize, u64, Duration)>;
static TALLY: Mutex<Tally> = Mutex::new(Vec::new());

fn record(group: &str, id: &str, size: usize, iters: u64, d: Duration) {
    let mut t = TALLY.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(e) = t.iter_mut().find(|e| e.0 == group && e.1 == id) {
        e.3 += iters;
        e.4 += d;
    } else {
        t.push((group.to_string(), id.to_string(), size, iters, d));
    }
}

struct ThroughputBench<'a, 'c> {
    group: &'a mut BenchmarkGroup<'c, WallTime>,
    name: String,
    place: Place,
    size: usize,
}

impl ForEach for ThroughputBench<'_, '_> {
    fn run<T: Transport>(&mut self, t: T) {
        let (place, size, group) = (self.place, self.size, self.name.clone());
        self.group
            .bench_function(BenchmarkId::from_parameter(t.name()), |b| {
                b.iter_custom(|iters| {
                    let d = run_throughput(&t, place, size, iters);
                    record(&group, &t.name(), size, iters, d);
                    d
                })
            });
    }
}

struct PingPongBench<'a, 'c> {
    group: &'a mut BenchmarkGroup<'c, WallTime>,
    name: String,
    place: Place,
}

impl ForEach for PingPongBench<'_, '_> {
    fn run<T: Transport>(&mut self, t: T) {
        let (place, group) = (self.place, self.name.clone());
        self.group
            .bench_function(BenchmarkId::from_parameter(t.name()), |b| {
                b.iter_custom(|iters| {
                    let d = run_ping_pong(&t, place, iters);
                    record(&group, &t.name(), SMALL, iters, d);
                    d
                })
            });
    }
}

fn throughput_unit(size: usize) -> Throughput {
    match std::env::var("SHMPIPE_BENCH_THROUGHPUT").as_deref() {
        Ok("bytes") => Throughput::Bytes(size as u64),
        _ => Throughput::Elements(1),
    }
}

fn throughput(c: &mut Criterion) {
    for place in [Place::InProcess, Place::CrossProcess] {
        for size in SIZES {
            let name = format!("throughput/{}/{size}B", place.name());
            let mut group = c.benchmark_group(&name);
            group.throughput(throughput_unit(size));
            let with_pipe = place == Place::CrossProcess && size == SMALL;
            let mut b = ThroughputBench {
                group: &mut group,
                name,
                place,
                size,
            };
            for_each_transport(&mut b, with_pipe);
            group.finish();
        }
    }
}

fn ping_pong(c: &mut Criterion) {
    for place in [Place::InProcess, Place::CrossProcess] {
        let name = format!("ping-pong/{}", place.name());
        let mut group = c.benchmark_group(&name);
        let mut b = PingPongBench {
            group: &mut group,
            name,
            place,
        };
        for_each_transport(&mut b, place == Place::CrossProcess);
        group.finish();
    }
}

/// Print both throughput units and ratios against the pipe measured in this
/// run. From our tally (mean over all timed runs, warm-up included), so it
/// can differ slightly from criterion's estimates.
fn summary() {
    let t = TALLY.lock().unwrap_or_else(|e| e.into_inner());
    if t.is_empty() {
        return;
    }
    let per_iter =
        |e: &(String, String, usize, u64, Duration)| e.4.as_secs_f64() / e.3.max(1) as f64;
    let pipe_tp = t
        .iter()
        .find(|e| e.0.starts_with("throughput/cross-process/") && e.1 == "pipe")
        .map(per_iter);
    let pipe_rt = t
        .iter()
        .find(|e| e.0.starts_with("ping-pong/") && e.1 == "pipe")
        .map(per_iter);
    println!("\nshmpipe summary (tally of all timed runs; ratios vs pipe(2) 64 B cross-process, same run)");
    println!(
        "{:<30} {:<17} {:>14} {:>12} {:>10}",
        "group", "transport", "msgs/s", "MiB/s", "x pipe"
    );
    for e in t.iter().filter(|e| e.0.starts_with("throughput/")) {
        let s = per_iter(e);
        let ratio = match pipe_tp {
            Some(p) if e.2 == SMALL => format!("{:.2}", p / s),
            _ => "-".to_string(),
        };
        println!(
            "{:<30} {:<17} {:>14.0} {:>12.1} {:>10}",
            e.0,
            e.1,
            1.0 / s,
            e.2 as f64 / s / (1024.0 * 1024.0),
            ratio
        );
    }
    println!(
        "\n{:<30} {:<17} {:>14} {:>10}",
        "group", "transport", "ns/round trip", "x pipe"
    );
    for e in t.iter().filter(|e| e.0.starts_with("ping-pong/")) {
        let s = per_iter(e);
        let ratio = pipe_rt.map_or("-".to_string(), |p| format!("{:.2}", p / s));
        println!("{:<30} {:<17} {:>14.0} {:>10}", e.0, e.1, s * 1e9, ratio);
    }
}

fn main() {
    // Read the allowed CPUs before pinning this (main) thread to the first.
    if allowed_cpus().len() < 2 {
        eprintln!("note: fewer than two CPUs allowed; running unpinned");
    }
    pin(0);
    let mut c = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(2))
        .configure_from_args();
    throughput(&mut c);
    ping_pong(&mut c);
    c.final_summary();
    if std::env::args().any(|a| a == "--bench") {
        summary();
    }
}
