//! WaitSet tests: many rings, one waiting thread.
//!
//! - `hundred_forked_producers`: 100 anonymous rings, each fed by a forked
//!   child at its own random rate; the parent drains them through one set.
//!   Every message arrives once and in order per ring (sequence number and
//!   checksum); one producer is SIGKILLed mid-stream and must be reported
//!   as `peer_gone` by the set, then `PeerDied` by the consumer.
//! - `more_than_127_rings` (300 rings, background groups + eventfd) and
//!   `lost_wakeup_stress` (8 rings, the calling thread's own futex_waitv):
//!   one sender thread sends one message to a random ring and waits for the
//!   ack, so every message needs its own wake-up. The set's slice is one
//!   hour: a lost wake-up is a hang, caught by the watchdog. Mutation check:
//!   removing the heavy barrier in `waitset::round` was reported to make
//!   `lost_wakeup_stress` hang once, but re-checked (issue 9, 3 runs on a
//!   2-core x86-64 machine) it passed: the store-buffer window the barrier
//!   closes is nanoseconds wide, so this test does not reliably catch that
//!   mutation (the loom model `tests/loom.rs` `waitset_two_rings_no_lost_wakeup`
//!   does catch a weakened registration). It does catch lost wake-ups in the
//!   set's own bookkeeping.
//! - `eventfd_readable_when_ready`: `as_fd()` polls readable only when a ring
//!   is ready; `wait(ZERO)` re-arms it.
//! - `idle_cpu`: an idle set over 100 rings with live forked producers uses
//!   little CPU over 2 s (getrusage in a forked child; goal 1%, bound 5%),
//!   blocking and through the fd.
//! - `old_kernel_reported`: in a forked child where a seccomp filter makes
//!   `futex_waitv` fail with ENOSYS (as on Linux < 5.16), `WaitSet::new`
//!   returns an error that names the kernel version.
//! - `semaphore_refused`, `producer_room`, `closed_peer_reported`.

#[macro_use]
mod common;

use std::os::fd::AsRawFd;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{fork_with, mix64, serial, Rng};
use shmpipe::{Builder, Error, Events, Token, WaitSet, WaitStrategy};

/// A new set, or `None` (the test skips, saying why) on a kernel without
/// futex_waitv (Linux < 5.16).
fn set() -> Option<WaitSet> {
    match WaitSet::new() {
        Ok(s) => Some(s),
        Err(e) if e.to_string().contains("5.16") => {
            eprintln!("SKIPPED: {e}");
            None
        }
        Err(e) => panic!("WaitSet::new: {e}"),
    }
}

fn msg(ring: u64, seq: u64) -> [u8; 24] {
    let mut m = [0u8; 24];
    m[..8].copy_from_slice(&ring.to_le_bytes());
    m[8..16].copy_from_slice(&seq.to_le_bytes());
    m[16..].copy_from_slice(&mix64(ring << 32 ^ seq).to_le_bytes());
    m
}

fn parse(m: &[u8]) -> Option<(u64, u64)> {
    let ring = u64::from_le_bytes(m.get(..8)?.try_into().ok()?);
    let seq = u64::from_le_bytes(m.get(8..16)?.try_into().ok()?);
    let sum = u64::from_le_bytes(m.get(16..24)?.try_into().ok()?);
    (m.len() == 24 && sum == mix64(ring << 32 ^ seq)).then_some((ring, seq))
}

const RINGS: usize = 100;
const PER_RING: u64 = 2000;
const VICTIM: usize = 37;

#[test]
fn hundred_forked_producers() {
    let _serial = serial();
    let b = Builder::new().capacity(4096).wait(WaitStrategy::Futex);
    let mut rxs = Vec::new();
    let mut children = Vec::new();
    let Some(mut ws) = set() else { return };
    let mut tokens = Vec::new();
    for r in 0..RINGS {
        let pair = b.anonymous().expect("anonymous ring");
        let (child, pair) = fork_with(pair, move |pair| {
            let mut tx = pair.into_producer().map_err(|e| e.to_string())?;
            let mut rng = Rng::new(mix64(r as u64 + 1));
            let n = if r == VICTIM { u64::MAX } else { PER_RING };
            let mut seq = 0;
            while seq < n {
                // Bursts of random length, then a random pause.
                for _ in 0..=rng.below(20).min(n - seq - 1) {
                    tx.send(&msg(r as u64, seq))
                        .map_err(|e| format!("ring {r} send {seq}: {e}"))?;
                    seq += 1;
                }
                std::thread::sleep(Duration::from_micros(rng.below(2000)));
            }
            Ok(())
        });
        let rx = pair.into_consumer().expect("consumer");
        tokens.push(ws.add_consumer(&rx).expect("add"));
        rxs.push(rx);
        children.push(Some(child));
    }
    assert_eq!(tokens, (0..RINGS).map(Token).collect::<Vec<_>>());
    let mut next = vec![0u64; RINGS];
    let mut done = [false; RINGS];
    let mut events = Events::new();
    let mut killed_at = None;
    let mut victim_reported = false;
    let deadline = Instant::now() + Duration::from_secs(120);
    while done.iter().any(|d| !d) {
        assert!(Instant::now() < deadline, "stalled: next = {next:?}");
        ws.wait(&mut events, Some(Duration::from_secs(5)))
            .expect("wait");
        assert!(!events.is_empty(), "5 s without an event: next = {next:?}");
        for ev in &events {
            let r = ev.token.0;
            assert!(!done[r], "ring {r} reported after it was finished");
            if ev.peer_gone && r == VICTIM {
                victim_reported = true;
            }
            loop {
                let got = rxs[r].try_recv_with(parse);
                match got {
                    Ok(Some((ring, seq))) => {
                        assert_eq!((ring, seq), (r as u64, next[r]), "ring {r}");
                        next[r] += 1;
                    }
                    Ok(None) => panic!("ring {r}: bad message after {}", next[r]),
                    Err(Error::Empty) => break,
                    Err(Error::Disconnected) if r != VICTIM => {
                        assert_eq!(next[r], PER_RING, "ring {r} closed early");
                        ws.remove(ev.token);
                        done[r] = true;
                        break;
                    }
                    Err(Error::PeerDied) if r == VICTIM && killed_at.is_some() => {
                        assert!(victim_reported, "PeerDied without a peer_gone event");
                        ws.remove(ev.token);
                        done[r] = true;
                        break;
                    }
                    Err(e) => panic!("ring {r} after {}: {e}", next[r]),
                }
            }
        }
        if killed_at.is_none() && next[VICTIM] >= 500 {
            if let Some(c) = &children[VICTIM] {
                c.kill();
            }
            killed_at = Some(Instant::now());
        }
    }
    for (r, c) in children.iter_mut().enumerate() {
        let Some(c) = c.take() else { continue };
        let res = c.wait(Duration::from_secs(10));
        if r == VICTIM {
            assert!(res.is_err(), "the victim was killed");
        } else {
            res.unwrap_or_else(|e| panic!("child {r}: {e}"));
        }
    }
    assert!(ws.is_empty());
}

/// One sender thread: for each of `n` messages, pick a random ring, send,
/// wait for the consumer's ack. The consumer waits only through the set.
fn ping_rings(rings: usize, n: u64, fd_mode: bool) {
    let b = Builder::new().capacity(1024).wait(WaitStrategy::Futex);
    let mut txs = Vec::new();
    let mut rxs = Vec::new();
    let Some(mut ws) = set() else { return };
    ws.set_slice(Duration::from_secs(3600)); // a lost wake-up hangs
    if fd_mode {
        let _ = ws.as_fd();
    }
    for _ in 0..rings {
        let (tx, rx) = b.in_process().expect("ring").split().expect("split");
        ws.add_consumer(&rx).expect("add");
        txs.push(tx);
        rxs.push(rx);
    }
    let (ack_tx, ack_rx) = mpsc::sync_channel::<()>(1);
    let (order_tx, order_rx) = mpsc::channel::<usize>();
    let sender = std::thread::spawn(move || {
        let mut rng = Rng::new(0x5eed);
        for i in 0..n {
            let r = rng.below(txs.len() as u64) as usize;
            let _ = order_tx.send(r);
            if i % 64 == 0 {
                std::thread::sleep(Duration::from_micros(200)); // let it sleep
            } else {
                // A random spin of up to ~1 us, so the send lands anywhere
                // in the waiter's registration window.
                for _ in 0..rng.below(400) {
                    std::hint::spin_loop();
                }
            }
            txs[r].send(&msg(r as u64, i)).expect("send");
            if ack_rx.recv().is_err() {
                return;
            }
        }
    });
    let (done_tx, done_rx) = mpsc::channel::<Result<(), String>>();
    std::thread::spawn(move || {
        let mut events = Events::new();
        let r = (|| {
            for i in 0..n {
                let want = order_rx.recv().map_err(|e| e.to_string())?;
                let k = ws.wait(&mut events, None).map_err(|e| e.to_string())?;
                if k != 1 || !events.contains(Token(want)) {
                    return Err(format!("message {i}: events {events:?}, want ring {want}"));
                }
                let got = rxs[want].try_recv_with(parse).map_err(|e| e.to_string())?;
                if got != Some((want as u64, i)) {
                    return Err(format!("message {i}: got {got:?}"));
                }
                ack_tx.send(()).map_err(|e| e.to_string())?;
            }
            Ok(())
        })();
        let _ = done_tx.send(r);
    });
    match done_rx.recv_timeout(Duration::from_secs(90)) {
        Ok(r) => r.expect("consumer"),
        Err(_) => panic!("watchdog: the set missed a wake-up (hung for 90 s)"),
    }
    sender.join().expect("sender");
}

#[test]
fn lost_wakeup_stress() {
    ping_rings(4, 200_000, false);
}

#[test]
fn lost_wakeup_stress_fd() {
    ping_rings(8, 10_000, true);
}

#[test]
fn more_than_127_rings() {
    ping_rings(300, 5_000, false);
}

fn readable(fd: i32, ms: i32) -> bool {
    let mut p = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd.
    unsafe { libc::poll(&mut p, 1, ms) == 1 }
}

#[test]
fn eventfd_readable_when_ready() {
    let b = Builder::new().wait(WaitStrategy::Futex);
    let (mut tx, mut rx) = b.in_process().unwrap().split().unwrap();
    let (_tx2, rx2) = b.in_process().unwrap().split().unwrap();
    let Some(mut ws) = set() else { return };
    let t = ws.add_consumer(&rx).unwrap();
    ws.add_consumer(&rx2).unwrap();
    let fd = ws.as_fd().as_raw_fd();
    assert!(!readable(fd, 50), "idle set readable");
    tx.send(b"x").unwrap();
    assert!(readable(fd, 5000), "not readable after a send");
    let mut events = Events::new();
    assert_eq!(ws.wait(&mut events, Some(Duration::ZERO)).unwrap(), 1);
    assert!(events.contains(t));
    // Still ready (level-triggered): readable again after re-arming.
    assert!(readable(fd, 5000), "not readable while a ring stays ready");
    rx.try_recv_with(|m| assert_eq!(m, b"x")).unwrap();
    assert_eq!(ws.wait(&mut events, Some(Duration::ZERO)).unwrap(), 0);
    assert!(!readable(fd, 50), "readable after draining");
    // A send from another thread while the fd is polled.
    let h = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(20));
        tx.send(b"y").unwrap();
        tx
    });
    assert!(readable(fd, 5000));
    drop(h.join().unwrap());
    assert_eq!(
        ws.wait(&mut events, Some(Duration::from_secs(5))).unwrap(),
        1
    );
}

#[test]
fn semaphore_refused() {
    let (_tx, rx) = Builder::new()
        .wait(WaitStrategy::Semaphore)
        .in_process()
        .unwrap()
        .split()
        .unwrap();
    let Some(mut ws) = set() else { return };
    match ws.add_consumer(&rx) {
        Err(Error::InvalidOption { reason }) => assert!(reason.contains("Semaphore"), "{reason}"),
        other => panic!("expected InvalidOption, got {other:?}"),
    }
}

#[test]
fn spin_rings_polled() {
    for w in [WaitStrategy::Spin, WaitStrategy::SpinYield] {
        let (mut tx, rx) = Builder::new()
            .wait(w)
            .in_process()
            .unwrap()
            .split()
            .unwrap();
        let Some(mut ws) = set() else { return };
        let t = ws.add_consumer(&rx).unwrap();
        let h = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(30));
            tx.send(b"s").unwrap();
            tx
        });
        let mut events = Events::new();
        assert_eq!(
            ws.wait(&mut events, Some(Duration::from_secs(10))).unwrap(),
            1,
            "{w}"
        );
        assert!(events.contains(t));
        let _tx = h.join().unwrap();
    }
}

#[test]
fn producer_room() {
    let (mut tx, mut rx) = Builder::new()
        .capacity(256)
        .wait(WaitStrategy::Futex)
        .in_process()
        .unwrap()
        .split()
        .unwrap();
    let Some(mut ws) = set() else { return };
    let t = ws.add_producer(&tx).unwrap();
    let mut events = Events::new();
    assert_eq!(ws.wait(&mut events, Some(Duration::ZERO)).unwrap(), 1);
    while tx.try_send(&[7u8; 40]).is_ok() {}
    assert_eq!(
        ws.wait(&mut events, Some(Duration::from_millis(30)))
            .unwrap(),
        0
    );
    let h = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(20));
        while rx.try_recv_with(|_| ()).is_ok() {}
        rx
    });
    assert_eq!(
        ws.wait(&mut events, Some(Duration::from_secs(10))).unwrap(),
        1
    );
    assert!(events.contains(t));
    tx.try_send(&[0u8; 120]).expect("a max-size message fits");
    drop(h.join().unwrap()); // consumer closes
    ws.wait(&mut events, Some(Duration::from_secs(10))).unwrap();
    // Room or gone: the next send says which.
    while tx.try_send(&[1u8; 8]).is_ok() {}
    assert!(matches!(tx.try_send(&[1u8; 8]), Err(Error::Disconnected)));
}

#[test]
fn closed_peer_reported() {
    let (tx, mut rx) = Builder::new()
        .wait(WaitStrategy::Futex)
        .in_process()
        .unwrap()
        .split()
        .unwrap();
    let Some(mut ws) = set() else { return };
    let t = ws.add_consumer(&rx).unwrap();
    let h = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(20));
        drop(tx);
    });
    let mut events = Events::new();
    assert_eq!(ws.wait(&mut events, None).unwrap(), 1);
    let ev = events.iter().next().copied().unwrap();
    assert_eq!(ev.token, t);
    assert!(ev.peer_gone);
    assert!(matches!(
        rx.try_recv(&mut Vec::new()),
        Err(Error::Disconnected)
    ));
    h.join().unwrap();
}

fn cpu_time() -> Duration {
    // SAFETY: zeroed rusage is a valid out-struct.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: valid out-pointer.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(u.ru_utime) + tv(u.ru_stime)
}

/// Runs in a forked child (a process of its own: the other tests' threads
/// would count in `RUSAGE_SELF`), which forks the 100 idle producers.
#[test]
fn idle_cpu() {
    let _serial = serial();
    let child = common::fork_child(idle_cpu_child);
    child
        .wait(Duration::from_secs(60))
        .expect("idle measurement");
}

fn idle_cpu_child() -> Result<(), String> {
    let b = Builder::new().capacity(4096).wait(WaitStrategy::Futex);
    let mut rxs = Vec::new();
    let mut pids = Vec::new();
    let Some(mut ws) = set() else { return Ok(()) };
    for _ in 0..100 {
        let pair = b.anonymous().map_err(|e| e.to_string())?;
        // SAFETY: plain fork; the grandchild only attaches and sleeps.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            let _tx = pair.into_producer();
            std::thread::sleep(Duration::from_secs(8)); // alive and idle
                                                        // SAFETY: leave without running the parent's destructors.
            unsafe { libc::_exit(0) };
        }
        pids.push(pid);
        let rx = pair.into_consumer().map_err(|e| e.to_string())?;
        ws.add_consumer(&rx).map_err(|e| e.to_string())?;
        rxs.push(rx);
    }
    // Let the producers attach.
    std::thread::sleep(Duration::from_millis(300));
    let mut events = Events::new();
    let window = Duration::from_secs(2);
    let c0 = cpu_time();
    let n = ws
        .wait(&mut events, Some(window))
        .map_err(|e| e.to_string())?;
    let blocking = cpu_time() - c0;
    let fd = ws.as_fd().as_raw_fd();
    let c1 = cpu_time();
    let woke = readable(fd, window.as_millis() as i32);
    let background = cpu_time() - c1;
    for pid in pids {
        // SAFETY: kill and reap our own children.
        unsafe {
            libc::kill(pid, libc::SIGKILL);
            libc::waitpid(pid, std::ptr::null_mut(), 0);
        }
    }
    let figures = format!(
        "idle WaitSet, 100 rings, 2 s: blocking wait {blocking:?}, background waiter {background:?} CPU"
    );
    // The figure, for the report (the harness does not capture a forked
    // child's output, so write to the descriptor).
    let line = format!("{figures}\n");
    // SAFETY: valid buffer; fd 2 is the test's stderr.
    unsafe { libc::write(2, line.as_ptr().cast(), line.len()) };
    if n != 0 || woke {
        return Err(format!(
            "idle set reported events ({n}, fd {woke}); {figures}"
        ));
    }
    // The goal is under 1% of a core (20 ms of 2 s); the bound is a
    // generous 5% (100 ms) because the test machine is shared and busy.
    if blocking >= window / 20 || background >= window / 20 {
        return Err(figures);
    }
    Ok(())
}

#[cfg(target_arch = "x86_64")]
#[path = "support/seccomp.rs"]
mod seccomp;
#[cfg(target_arch = "x86_64")]
use seccomp::deny_futex_waitv;

#[cfg(target_arch = "x86_64")]
#[test]
fn old_kernel_reported() {
    if set().is_none() {
        return; // really an old kernel: `set` said so
    }
    let child = common::fork_child(|| {
        if !deny_futex_waitv() {
            return Ok(()); // no seccomp here: nothing to check
        }
        match WaitSet::new() {
            Ok(_) => Err("WaitSet::new succeeded without futex_waitv".into()),
            Err(e) if e.to_string().contains("5.16") => Ok(()),
            Err(e) => Err(format!("unclear error: {e}")),
        }
    });
    child.wait(Duration::from_secs(30)).expect("old kernel");
}

// ---------------------------------------------------------------------------
// Issue 20: a dropped ring is released at once; deaths are reported by
// event (pidfds); a pid word a peer wrote never makes a live peer dead.

/// A named consumer in a set, looked at by one wait, then dropped (first
/// without `remove`, then after it): its name is gone at once and the same
/// name can be created again in this process. Before the fix the set kept
/// the segment (and so the name) until its next wait.
fn dropped_ring_released(fd_mode: bool) {
    let name = common::ShmName::new("ws-drop");
    let b = Builder::new().wait(WaitStrategy::Futex);
    let Some(mut ws) = set() else { return };
    if fd_mode {
        let _ = ws.as_fd();
    }
    let mut events = Events::new();
    for removed_first in [false, true] {
        let rx = b.create_consumer(&name).expect("create");
        let t = ws.add_consumer(&rx).unwrap();
        assert_eq!(
            ws.wait(&mut events, Some(Duration::from_millis(30)))
                .unwrap(),
            0
        );
        if removed_first {
            assert!(ws.remove(t));
        }
        drop(rx);
        assert!(
            !name.exists(),
            "fd mode {fd_mode}, removed first {removed_first}: the name outlived its creator"
        );
        if !removed_first {
            // The registration stays, inert: nothing of the ring is ready.
            assert_eq!(ws.wait(&mut events, Some(Duration::ZERO)).unwrap(), 0);
            assert!(ws.remove(t));
        }
    }
    // And again, while the set holds a live ring and the same name.
    let again = b.create_consumer(&name).expect("the same name again");
    ws.add_consumer(&again).unwrap();
}

#[test]
fn dropped_ring_released_at_once() {
    dropped_ring_released(false);
}

#[test]
fn dropped_ring_released_at_once_fd() {
    dropped_ring_released(true);
}

/// A forked producer that attached and idles: the set watches its
/// consumer, the producer is SIGKILLed, and the set must report it. Prints
/// the latency (pidfd: milliseconds; the slice-based check alone: up to the
/// 500 ms default slice). The bound is only a hang guard.
fn death_latency(fd_mode: bool) {
    let _serial = serial();
    let pair = Builder::new()
        .wait(WaitStrategy::Futex)
        .anonymous()
        .unwrap();
    let (child, pair) = fork_with(pair, |pair| {
        let _tx = pair.into_producer().map_err(|e| e.to_string())?;
        std::thread::sleep(Duration::from_secs(60));
        Ok(())
    });
    let mut rx = pair.into_consumer().unwrap();
    let Some(mut ws) = set() else { return };
    let fd = fd_mode.then(|| ws.as_fd().as_raw_fd());
    let t = ws.add_consumer(&rx).unwrap();
    let attached = Instant::now() + Duration::from_secs(10);
    while !rx.is_peer_alive() {
        assert!(Instant::now() < attached, "the producer never attached");
        std::thread::sleep(Duration::from_millis(2));
    }
    let mut events = Events::new();
    // Let the set look at the ring (and follow the producer's pid).
    assert_eq!(
        ws.wait(&mut events, Some(Duration::from_millis(100)))
            .unwrap(),
        0
    );
    let t0 = Instant::now();
    child.kill();
    let mut gone = None;
    while t0.elapsed() < Duration::from_secs(10) {
        if let Some(fd) = fd {
            readable(fd, 10_000);
        }
        ws.wait(&mut events, Some(Duration::from_secs(10))).unwrap();
        if events.iter().any(|e| e.token == t && e.peer_gone) {
            gone = Some(t0.elapsed());
            break;
        }
    }
    let gone = gone.expect("a SIGKILLed producer was not reported within 10 s");
    let line = format!("WaitSet (fd mode {fd_mode}): SIGKILL reported after {gone:?}\n");
    // SAFETY: valid buffer; fd 2 is the test's stderr.
    unsafe { libc::write(2, line.as_ptr().cast(), line.len()) };
    assert!(matches!(rx.try_recv(&mut Vec::new()), Err(Error::PeerDied)));
    let _ = child.wait(Duration::from_secs(10));
}

#[test]
fn death_latency_blocking() {
    death_latency(false);
}

#[test]
fn death_latency_fd() {
    death_latency(true);
}

/// The producer's pid word (offset 416 of the header) of the named segment
/// `name`, mapped writable: what a scribbling peer can write.
struct PidWord {
    map: *mut libc::c_void,
}

impl PidWord {
    fn open(name: &str) -> PidWord {
        let path = format!("/dev/shm{name}");
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .expect("open the segment");
        // SAFETY: a fresh shared mapping of the header page of a file we own.
        let map = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                4096,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                f.as_raw_fd(),
                0,
            )
        };
        assert_ne!(map, libc::MAP_FAILED);
        PidWord { map }
    }

    fn word(&self) -> &std::sync::atomic::AtomicU32 {
        // SAFETY: offset 416 is inside the mapped page, 4-aligned; the
        // mapping lives as long as `self`; atomics: the producer wrote it.
        unsafe { &*(self.map.cast::<u8>().add(416).cast()) }
    }

    fn set(&self, v: u32) {
        self.word().store(v, std::sync::atomic::Ordering::SeqCst);
    }
}

impl Drop for PidWord {
    fn drop(&mut self) {
        // SAFETY: our own mapping.
        unsafe { libc::munmap(self.map, 4096) };
    }
}

/// The producer (a forked child) stays alive while its pid word is
/// rewritten to: an exited child's pid, init's (alive, not the peer), pids
/// no process has, 0, `u32::MAX`, and the pid of a decoy child that is then
/// killed (its pidfd fires). None of these may make the set report the
/// producer gone; then the producer is killed while the word names init (a
/// live process that is not the peer: no pidfd event can come), and the
/// set must still report it, through the role-lock check every
/// `COVERED_SLICES` slices (hang guard only).
#[test]
fn bogus_pid_words_never_report_a_live_peer_dead() {
    let _serial = serial();
    let name = common::ShmName::new("ws-pid");
    let b = Builder::new().wait(WaitStrategy::Futex);
    let Some(mut ws) = set() else { return };
    ws.set_slice(Duration::from_millis(100));
    let mut rx = b.create_consumer(&name).unwrap();
    let producer = common::fork_child(|| {
        let _tx = b.open_producer(&name).map_err(|e| e.to_string())?;
        std::thread::sleep(Duration::from_secs(60));
        Ok(())
    });
    let attached = Instant::now() + Duration::from_secs(10);
    while !rx.is_peer_alive() {
        assert!(Instant::now() < attached, "the producer never attached");
        std::thread::sleep(Duration::from_millis(2));
    }
    let pid_word = PidWord::open(&name);
    assert_eq!(
        pid_word.word().load(std::sync::atomic::Ordering::SeqCst),
        producer.pid() as u32
    );
    let t = ws.add_consumer(&rx).unwrap();
    let mut events = Events::new();
    let mut quiet = |ws: &mut WaitSet, what: &str| {
        // Several slices: the fallback checks run too.
        let until = Instant::now() + Duration::from_millis(450);
        while Instant::now() < until {
            let n = ws
                .wait(&mut events, Some(Duration::from_millis(150)))
                .unwrap();
            assert_eq!(n, 0, "{what}: a live producer was reported ({:?})", events);
        }
    };
    quiet(&mut ws, "true pid");
    // An exited, reaped child's pid.
    let gone = common::fork_child(|| Ok(()));
    let gone_pid = gone.pid() as u32;
    gone.wait(Duration::from_secs(10)).unwrap();
    for (v, what) in [
        (gone_pid, "an exited process's pid"),
        (1, "init's pid"),
        (0x7fff_fff0, "a pid nobody has"),
        (u32::MAX, "u32::MAX"),
        (0, "0"),
    ] {
        pid_word.set(v);
        quiet(&mut ws, what);
        assert!(rx.is_peer_alive());
    }
    // A decoy that dies while its pid is in the word.
    let decoy = common::fork_child(|| {
        std::thread::sleep(Duration::from_secs(60));
        Ok(())
    });
    pid_word.set(decoy.pid() as u32);
    quiet(&mut ws, "a live decoy's pid");
    decoy.kill();
    let _ = decoy.wait(Duration::from_secs(10));
    quiet(&mut ws, "a decoy's pid, after the decoy was killed");
    assert!(rx.is_peer_alive());
    // The real death, while the word names a live stranger.
    pid_word.set(1);
    quiet(&mut ws, "init's pid again");
    let t0 = Instant::now();
    producer.kill();
    let mut reported = None;
    while t0.elapsed() < Duration::from_secs(10) {
        ws.wait(&mut events, Some(Duration::from_secs(10))).unwrap();
        if events.iter().any(|e| e.token == t && e.peer_gone) {
            reported = Some(t0.elapsed());
            break;
        }
    }
    let reported = reported.expect("the producer's death was not reported within 10 s");
    let line = format!(
        "WaitSet, pid word naming a live stranger, slice 100 ms: SIGKILL reported after {reported:?}\n"
    );
    // SAFETY: valid buffer; fd 2 is the test's stderr.
    unsafe { libc::write(2, line.as_ptr().cast(), line.len()) };
    assert!(matches!(rx.try_recv(&mut Vec::new()), Err(Error::PeerDied)));
    let _ = producer.wait(Duration::from_secs(10));
}
