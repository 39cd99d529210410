//! A named segment truncated by a third party while a producer and a
//! consumer in two processes stream through it.
//!
//! Before the SIGBUS handler (`src/sigbus.rs`), the first access of either
//! process to a page past the new end of the object killed it with SIGBUS.
//! Now the handler puts zero pages in place of the mapping and both ends
//! must stop with `Error::Truncated` naming the segment: no signal, no hang
//! (every process here runs under an alarm watchdog), and every message the
//! consumer delivered before that intact and in order — except that the
//! message being copied at the instant of the truncation may have lost its
//! bytes (they are gone with the object), so the last one before the error
//! is allowed to fail its checksum.

mod kill_util;

use std::sync::atomic::Ordering::SeqCst;
use std::time::Duration;

use kill_util::*;
use shmpipe::{Builder, Error, LockFree, Locked, Variant, WaitStrategy};

const T: Duration = Duration::from_secs(30);
const HEADER: u64 = 896;

/// What a child saw: Ok(description) if it ended with `Truncated` naming
/// the segment.
fn expect_truncated(e: &Error, name: &str, who: &str, after: u64) -> Result<(), String> {
    match e {
        Error::Truncated { name: n } if n == name => {
            let text = e.to_string();
            if !text.contains("truncated") || !text.contains(name) {
                return Err(format!("{who}: unclear message: {text}"));
            }
            Ok(())
        }
        other => Err(format!(
            "{who}: after {after} messages, expected Truncated {{ name: {name:?} }}, got {other:?}"
        )),
    }
}

/// Producer and consumer in two forked processes (the consumer created the
/// ring); once the consumer has received `warmup` messages, this process
/// shrinks the object to `new_len` through its `/dev/shm` path.
fn truncate_under_streaming_pair<V: Variant>(wait: WaitStrategy, new_len: u64) {
    let _s = serial();
    let name = ShmName::new("trunc");
    let cap = 64 * 1024;
    let b = Builder::<V>::default().capacity(cap).wait(wait);
    // 0: consumer created the ring; 1: messages received; 2: messages
    // sent; 3: 1 if the last message before the error was damaged.
    let words = SharedWords::new(4);
    let w = &words;
    let n = name.as_str();

    let b1 = b.clone();
    let mut consumer = fork_child(60, move || {
        let mut rx = b1
            .create_consumer(n)
            .map_err(|e| format!("create_consumer: {e}"))?;
        w.get(0).store(1, SeqCst);
        let mut buf = Vec::new();
        let mut want = 0u64;
        let mut damaged = None;
        loop {
            match rx.recv_timeout(&mut buf, T) {
                Ok(_) => {
                    if let Some(d) = damaged {
                        return Err(format!(
                            "message {want} delivered after the damaged message {d}"
                        ));
                    }
                    if expect_seq(&buf, want).is_err() {
                        damaged = Some(want);
                    }
                    want += 1;
                    w.get(1).store(want, SeqCst);
                }
                Err(e) => {
                    expect_truncated(&e, n, "consumer", want)?;
                    w.get(3).store(u64::from(damaged.is_some()), SeqCst);
                    // The handle stays failed; dropping it is harmless.
                    let again = rx.try_recv(&mut buf);
                    if !matches!(again, Err(Error::Truncated { .. })) {
                        return Err(format!("consumer: not sticky: {again:?}"));
                    }
                    return Ok(());
                }
            }
        }
    });
    assert!(
        wait_until(T, || w.get(0).load(SeqCst) == 1),
        "consumer did not create the ring: {}",
        consumer.report()
    );
    let b2 = b.clone();
    let mut producer = fork_child(60, move || {
        let mut tx = b2
            .open_producer(n)
            .map_err(|e| format!("open_producer: {e}"))?;
        let max = tx.max_message().min(2000);
        let mut seq = 0u64;
        loop {
            let m = make_msg(seq, size_for(seq, 7, max));
            match tx.send_timeout(&m, T) {
                Ok(()) => {
                    seq += 1;
                    w.get(2).store(seq, SeqCst);
                }
                Err(e) => {
                    expect_truncated(&e, n, "producer", seq)?;
                    let again = tx.try_send(b"more");
                    if !matches!(again, Err(Error::Truncated { .. })) {
                        return Err(format!("producer: not sticky: {again:?}"));
                    }
                    return Ok(());
                }
            }
        }
    });
    // Let them stream (the ring wraps several times), then truncate.
    assert!(
        wait_until(T, || w.get(1).load(SeqCst) >= 5_000),
        "no traffic: consumer {}, producer {}",
        consumer.report(),
        producer.report()
    );
    truncate(&name, new_len);
    let (p, c) = (producer.wait(T), consumer.wait(T));
    assert_eq!(
        (p, c),
        (Status::Exited(0), Status::Exited(0)),
        "[{} {wait} truncated to {new_len}] producer: {}; consumer: {} (a signal 7 is SIGBUS, 14 a hang)",
        V::NAME,
        producer.report(),
        consumer.report()
    );
    eprintln!(
        "[{} {wait} truncated to {new_len}] {} sent, {} received before Truncated (last one damaged: {})",
        V::NAME,
        w.get(2).load(SeqCst),
        w.get(1).load(SeqCst),
        w.get(3).load(SeqCst) == 1,
    );
}

fn truncate_cases<V: Variant>() {
    for wait in [WaitStrategy::Futex, WaitStrategy::Spin] {
        truncate_under_streaming_pair::<V>(wait, 0);
    }
    // The header survives, most of the data area does not.
    truncate_under_streaming_pair::<V>(WaitStrategy::Futex, 4096);
}

#[test]
fn truncated_to_zero_under_streaming_pair_lockfree() {
    truncate_cases::<LockFree>();
}

#[test]
fn truncated_to_zero_under_streaming_pair_locked() {
    truncate_cases::<Locked>();
}

/// Each end asleep when the object is truncated to 0: a consumer blocked
/// on an empty ring (in a child; its producer is idle in this process),
/// then a producer blocked on a full ring (in this process; its consumer
/// is a child that never reads). A sleeper touches the mapping again only
/// at its next liveness slice, which faults (the zero pages read as a
/// detached peer) or finds the object shrunk (fstat). Both must report
/// `Truncated`.
fn truncate_sleepers<V: Variant>() {
    let _s = serial();
    let b = Builder::<V>::default()
        .capacity(4096)
        .wait(WaitStrategy::Futex);

    // A consumer asleep on an empty ring.
    let name = ShmName::new("trunc-idle-rx");
    let n = name.as_str();
    let mut tx = b.create_producer(n).unwrap();
    let words = SharedWords::new(1);
    let w = &words;
    let b2 = b.clone();
    let mut consumer = fork_child(60, move || {
        let mut rx = b2
            .open_consumer(n)
            .map_err(|e| format!("open_consumer: {e}"))?;
        w.get(0).store(1, SeqCst);
        let mut buf = Vec::new();
        match rx.recv_timeout(&mut buf, T) {
            Err(e) => expect_truncated(&e, n, "sleeping consumer", 0),
            Ok(_) => Err("sleeping consumer: got a message".into()),
        }
    });
    assert!(wait_until(T, || w.get(0).load(SeqCst) == 1));
    std::thread::sleep(Duration::from_millis(50)); // let it fall asleep
    truncate(&name, 0);
    let c = consumer.wait(T);
    assert_eq!(c, Status::Exited(0), "consumer: {}", consumer.report());
    let mut r = Ok(());
    for _ in 0..4096 {
        r = tx.send_timeout(b"0123456789abcdef", T);
        if r.is_err() {
            break;
        }
    }
    assert!(
        matches!(&r, Err(Error::Truncated { .. })),
        "idle producer: {r:?}"
    );
    drop(tx); // closing writes to zero pages: harmless

    // A producer asleep on a full ring.
    let name = ShmName::new("trunc-idle-tx");
    let n = name.as_str();
    let mut tx = b.create_producer(n).unwrap();
    let words = SharedWords::new(1);
    let w = &words;
    let b2 = b.clone();
    let mut consumer = fork_child(60, move || {
        let _rx = b2
            .open_consumer(n)
            .map_err(|e| format!("open_consumer: {e}"))?;
        w.get(0).store(1, SeqCst);
        sleep_forever()
    });
    assert!(wait_until(T, || w.get(0).load(SeqCst) == 1));
    let max = tx.max_message();
    while tx.try_send(&vec![1u8; max]).is_ok() {}
    let path = name.path();
    let cutter = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(50)); // the producer sleeps
        std::fs::OpenOptions::new()
            .write(true)
            .open(path)
            .unwrap()
            .set_len(0)
            .unwrap();
    });
    let r = tx.send_timeout(&vec![2u8; max], T);
    cutter.join().unwrap();
    assert!(
        matches!(&r, Err(Error::Truncated { name: x }) if x == n),
        "sleeping producer: {r:?}"
    );
    consumer.kill9(T);
}

fn truncate(name: &ShmName, len: u64) {
    std::fs::OpenOptions::new()
        .write(true)
        .open(name.path())
        .expect("open the object through /dev/shm")
        .set_len(len)
        .expect("ftruncate");
}

#[test]
fn truncated_under_sleepers_lockfree() {
    truncate_sleepers::<LockFree>();
}

#[test]
fn truncated_under_sleepers_locked() {
    truncate_sleepers::<Locked>();
}

/// Both handles of a pair whose object is truncated to 0 before their next
/// operation: the consumer reports `Truncated` (its first look faults and
/// reads zero pages, an "empty" ring whose slow path finds the flag); the
/// producer may first send into the zero pages (its cached view says there
/// is room) but reports `Truncated` once it needs the consumer's `head`.
#[test]
fn truncated_before_next_operation() {
    let _s = serial();
    let name = ShmName::new("trunc-next");
    let cap = 4096u64;
    let mut tx = shmpipe::Builder::new()
        .capacity(cap)
        .create_producer(name.as_str())
        .unwrap();
    let mut rx = shmpipe::Builder::new()
        .open_consumer(name.as_str())
        .unwrap();
    truncate(&name, 0);
    let mut buf = Vec::new();
    let r = rx.recv_timeout(&mut buf, T);
    assert!(
        matches!(&r, Err(Error::Truncated { name: x }) if x == name.as_str()),
        "consumer: {r:?}"
    );
    let mut r = Ok(());
    for _ in 0..cap {
        r = tx.send_timeout(b"0123456789abcdef", T);
        if r.is_err() {
            break;
        }
    }
    assert!(
        matches!(&r, Err(Error::Truncated { .. })),
        "producer: {r:?}"
    );
    // Reopening the truncated (now empty) object: not initialised.
    let r = shmpipe::Builder::new()
        .open_timeout(Duration::from_millis(20))
        .open_consumer(name.as_str());
    assert!(matches!(r, Err(Error::NotInitialized { .. })), "{r:?}");
}

/// Opening races a truncation: another thread shrinks the object to 0 and
/// writes it back at full size in a loop, while this one opens it and
/// makes a call. A truncation between the opener's fstat and its reads of
/// the header faulted (SIGBUS) before the handler. Every attempt must end
/// in a value or an error; run in a forked child so a signal would show.
#[test]
fn open_races_truncation() {
    let _s = serial();
    let name = ShmName::new("trunc-open-race");
    let tx = shmpipe::Builder::new()
        .capacity(4096)
        .unlink_on_drop(false)
        .create_producer(name.as_str())
        .unwrap();
    drop(tx);
    let path = name.path();
    let image = std::fs::read(&path).unwrap();
    assert_eq!(image.len() as u64, HEADER + 4096);
    let n = name.as_str();
    let mut child = fork_child(60, || {
        use std::os::unix::fs::FileExt;
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stop2 = stop.clone();
        let (p2, img) = (path.clone(), image.clone());
        let cutter = std::thread::spawn(move || {
            let f = std::fs::OpenOptions::new().write(true).open(&p2).unwrap();
            while !stop2.load(SeqCst) {
                f.set_len(0).unwrap();
                f.write_all_at(&img, 0).unwrap();
            }
        });
        let mut outcomes = std::collections::BTreeMap::<String, u64>::new();
        let end = std::time::Instant::now() + Duration::from_millis(400);
        let b = shmpipe::Builder::new().open_timeout(Duration::ZERO);
        while std::time::Instant::now() < end {
            let key = match b.open_consumer(n) {
                Ok(mut rx) => {
                    let mut buf = Vec::new();
                    match rx.try_recv(&mut buf) {
                        Ok(_) => "opened, ok".to_string(),
                        Err(e) => format!("opened, {}", kind(&e)),
                    }
                }
                Err(Error::Truncated { .. }) => "truncated".to_string(),
                Err(e) => {
                    kind(&e).to_string() + &format!(" ({e})").chars().take(40).collect::<String>()
                }
            };
            *outcomes.entry(key).or_default() += 1;
        }
        stop.store(true, SeqCst);
        cutter.join().map_err(|_| "cutter panicked".to_string())?;
        eprintln!("open racing truncation: {outcomes:?}");
        Ok(())
    });
    let st = child.wait(T);
    assert_eq!(
        st,
        Status::Exited(0),
        "child: {} (7 = SIGBUS)",
        child.report()
    );
}

// ---------------------------------------------------------------------------
// A program with its own SIGBUS handler.

static USER_HITS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
static USER_START: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
static USER_LEN: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// The program's own handler, in the libwayland style: repairs faults in
/// its own mapping, counts every SIGBUS it is given.
extern "C" fn user_handler(_: libc::c_int, info: *mut libc::siginfo_t, _: *mut libc::c_void) {
    USER_HITS.fetch_add(1, SeqCst);
    // SAFETY: the kernel's siginfo (SA_SIGINFO).
    let (code, addr) = unsafe { ((*info).si_code, (*info).si_addr() as usize) };
    let (start, len) = (USER_START.load(SeqCst), USER_LEN.load(SeqCst));
    if code > 0 && addr.wrapping_sub(start) < len {
        // SAFETY: replaces the program's own mapping by zero pages.
        unsafe {
            libc::mmap(
                start as *mut libc::c_void,
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED,
                -1,
                0,
            )
        };
    }
}

/// Map `path` (4 KiB) shared, truncate it to 0, then read it: SIGBUS, which
/// the program's handler repairs. Returns the byte read.
fn fault_on_own_mapping(path: &str) -> u8 {
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .unwrap();
    f.set_len(4096).unwrap();
    let map = memmap2::MmapOptions::new().map_raw(&f).unwrap();
    USER_START.store(map.as_mut_ptr() as usize, SeqCst);
    USER_LEN.store(map.len(), SeqCst);
    f.set_len(0).unwrap();
    // SAFETY: in bounds of the live mapping; the page behind it is gone,
    // so this read faults and the handler maps a zero page there.
    let b = unsafe { std::ptr::read_volatile(map.as_ptr().add(100)) };
    USER_START.store(0, SeqCst);
    b
}

/// A handler the program installed before its first named ring keeps
/// getting every SIGBUS that is not ours: a fault in its own mapping (which
/// it repairs) and a SIGBUS sent with raise(3); ours handles only the
/// truncated ring. Run in a forked child (it changes the process's
/// SIGBUS disposition) of a fresh process: in this test binary, other tests
/// may already have installed ours, and a child inherits that (the order
/// "ours, then the program's" is the documented other case).
#[test]
fn program_handler_installed_first_is_chained() {
    if std::env::var_os(FRESH).is_some() {
        return program_handler_installed_first_is_chained_here();
    }
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "program_handler_installed_first_is_chained",
            "--test-threads=1",
            "--nocapture",
        ])
        .env(FRESH, "1")
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && text.contains("1 passed"),
        "fresh process: {:?}\n{text}",
        out.status
    );
}

/// Set in the fresh process `program_handler_installed_first_is_chained` starts.
const FRESH: &str = "SHMPIPE_TEST_FRESH_SIGBUS";

fn program_handler_installed_first_is_chained_here() {
    let _s = serial();
    let ring = ShmName::new("trunc-chain");
    let own = ShmName::new("trunc-chain-own");
    let (rn, own_path) = (ring.as_str(), own.path());
    let mut child = fork_child(60, || {
        // SAFETY: a zeroed sigaction filled in; installs `user_handler`.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = user_handler
                as extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void)
                as libc::sighandler_t;
            sa.sa_flags = libc::SA_SIGINFO;
            libc::sigemptyset(&mut sa.sa_mask);
            if libc::sigaction(libc::SIGBUS, &sa, std::ptr::null_mut()) != 0 {
                return Err("sigaction".into());
            }
        }
        if fault_on_own_mapping(&own_path) != 0 || USER_HITS.load(SeqCst) != 1 {
            return Err("the program's own handler did not work alone".into());
        }
        // The first named ring installs ours, which chains to the program's.
        let mut tx = shmpipe::Builder::new()
            .capacity(4096)
            .create_producer(rn)
            .map_err(|e| format!("create_producer: {e}"))?;
        let mut rx = shmpipe::Builder::new()
            .open_consumer(rn)
            .map_err(|e| format!("open_consumer: {e}"))?;
        if fault_on_own_mapping(&own_path) != 0 {
            return Err("own mapping not repaired".into());
        }
        if USER_HITS.load(SeqCst) != 2 {
            return Err(format!(
                "the program's handler saw {} SIGBUS, expected 2: ours did not chain",
                USER_HITS.load(SeqCst)
            ));
        }
        // The ring truncated: ours handles it; the program's sees nothing.
        std::fs::OpenOptions::new()
            .write(true)
            .open(format!("/dev/shm{rn}"))
            .unwrap()
            .set_len(0)
            .unwrap();
        let mut buf = Vec::new();
        match rx.recv_timeout(&mut buf, T) {
            Err(Error::Truncated { .. }) => {}
            r => return Err(format!("consumer after truncation: {r:?}")),
        }
        let _ = tx.try_send(b"x");
        if USER_HITS.load(SeqCst) != 2 {
            return Err("the ring's SIGBUS reached the program's handler".into());
        }
        // A SIGBUS sent, not raised by a fault: the program's handler.
        // SAFETY: raise(3) on ourselves; the handler returns.
        unsafe { libc::raise(libc::SIGBUS) };
        if USER_HITS.load(SeqCst) != 3 {
            return Err("raise(SIGBUS) did not reach the program's handler".into());
        }
        Ok(())
    });
    let st = child.wait(T);
    assert_eq!(
        st,
        Status::Exited(0),
        "child: {} (7 = SIGBUS)",
        child.report()
    );
}
