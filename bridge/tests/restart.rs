//! A bridge killed with SIGKILL mid-stream and restarted: what the reader
//! loses must be exactly what the bridges report.

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;

const N: u64 = 300_000;
const CAP: u64 = 1 << 20;
const MAX: usize = 64;

struct Setup {
    tx: String,
    rx: String,
    key: String,
    listen: String,
    state: String,
}

fn setup() -> Setup {
    Setup {
        tx: format!("/{}", unique("tx")),
        rx: format!("/{}", unique("rx")),
        key: format!("test/{}", unique("key")),
        listen: format!("tcp/127.0.0.1:{}", free_port()),
        state: std::env::temp_dir()
            .join(unique("state"))
            .to_string_lossy()
            .into_owned(),
    }
}

/// `in` is killed after a third of the stream and restarted with the same
/// state file. Messages zenoh had queued for the dead process are lost;
/// the new `in` must report exactly those (by sequence number), and the
/// reader must get everything else once, in order.
#[test]
fn in_killed_and_restarted_reports_exactly_what_was_lost() {
    let s = setup();
    let progress = Arc::new(AtomicU64::new(0));
    let sink = drain(
        &s.rx,
        CAP,
        3,
        MAX,
        true,
        Arc::clone(&progress),
        Duration::from_secs(300),
    );
    let in_args = [
        "in", &s.key, &s.rx, "--listen", &s.listen, "--state", &s.state,
    ];
    let mut in1 = Bridge::start(None, &in_args, &unique("in1"));
    let source = feed(&s.tx, CAP, N, 3, MAX, None);
    let mut out = Bridge::start(
        None,
        &["out", &s.tx, &s.key, "--connect", &s.listen],
        &unique("out"),
    );
    wait_until(Duration::from_secs(120), "a third of the stream", || {
        progress.load(Ordering::Acquire) >= N / 3
    });
    in1.signal(libc::SIGKILL);
    in1.wait(Duration::from_secs(10));
    let mut in2 = Bridge::start(None, &in_args, &unique("in2"));
    let seen = sink.join().expect("consumer thread").expect("consumer");
    source
        .handle
        .join()
        .expect("producer thread")
        .expect("producer");
    let so = out.wait(Duration::from_secs(60));
    let si = in2.wait(Duration::from_secs(60));
    let (eo, e1, e2) = (out.stderr(), in1.stderr(), in2.stderr());
    assert!(so.success(), "out: {so:?}\n{eo}");
    assert!(
        seen.count > N / 3,
        "the reader got {} before and after the kill",
        seen.count
    );
    assert!(
        e2.contains("state file: the previous `in` delivered"),
        "{e2}"
    );
    let lost = missing_ranges(&seen.indices, N);
    let reported = gaps(&e2, &positions(N, CAP, 3, MAX));
    eprintln!(
        "in killed at >= {} messages: lost {lost:?}, reported {reported:?}",
        N / 3
    );
    assert_eq!(
        reported, lost,
        "reported gaps differ from what the reader lost\nin1:\n{e1}\nin2:\n{e2}"
    );
    let total: u64 = lost.iter().map(|(a, b)| b - a + 1).sum();
    assert_eq!(stat(&e2, "missing"), Some(total), "{e2}");
    assert_eq!(stat(&e2, "duplicates"), Some(0), "{e2}");
    assert_eq!(seen.count + total, N);
    // A stream that lost messages does not end with success.
    assert_eq!(si.success(), total == 0, "in2 exit {si:?}\n{e2}");
    let _ = std::fs::remove_file(&s.state);
}

/// `out` is killed after a third and restarted. It re-sends at most the one
/// message it had published but not released (the new `in` stream is
/// joined to the old one by source-ring position, so `in` drops it); what
/// the old `out` had handed to zenoh and had not arrived before the new
/// stream's first message is reported lost as the exact range of
/// source-ring bytes (and dropped as late if it still comes). Positions are
/// the ring's `head`, never a counter: a kill between the consumer's
/// counter store and its `head` store once made this report off by one.
#[test]
fn out_killed_and_restarted_never_delivers_a_duplicate() {
    let s = setup();
    let progress = Arc::new(AtomicU64::new(0));
    let sink = drain(
        &s.rx,
        CAP,
        4,
        MAX,
        true,
        Arc::clone(&progress),
        Duration::from_secs(300),
    );
    let mut inb = Bridge::start(
        None,
        &["in", &s.key, &s.rx, "--listen", &s.listen],
        &unique("in"),
    );
    let source = feed(&s.tx, CAP, N, 4, MAX, None);
    let out_args = ["out", &s.tx, &s.key, "--connect", &s.listen];
    let mut out1 = Bridge::start(None, &out_args, &unique("out1"));
    wait_until(Duration::from_secs(120), "a third of the stream", || {
        progress.load(Ordering::Acquire) >= N / 3
    });
    out1.signal(libc::SIGKILL);
    out1.wait(Duration::from_secs(10));
    let mut out2 = Bridge::start(None, &out_args, &unique("out2"));
    let seen = sink.join().expect("consumer thread").expect("consumer");
    source
        .handle
        .join()
        .expect("producer thread")
        .expect("producer");
    let so = out2.wait(Duration::from_secs(60));
    let si = inb.wait(Duration::from_secs(60));
    let (e1, e2, ei) = (out1.stderr(), out2.stderr(), inb.stderr());
    assert!(so.success(), "out2: {so:?}\n{e2}");
    // The consumer asserted strictly increasing indices: no duplicate.
    let lost = missing_ranges(&seen.indices, N);
    let reported = gaps(&ei, &positions(N, CAP, 4, MAX));
    let dups = stat(&ei, "duplicates").expect("in stats");
    let late = stat(&ei, "late").expect("in stats");
    eprintln!(
        "out killed: lost {lost:?}, reported {reported:?}, re-sends dropped {dups}, late {late}"
    );
    assert_eq!(reported, lost, "in:\n{ei}\nout1:\n{e1}\nout2:\n{e2}");
    assert!(dups <= 1, "at most one re-sent message, got {dups}\n{ei}");
    assert_eq!(stat(&ei, "streams"), Some(2), "{ei}");
    let total: u64 = lost.iter().map(|(a, b)| b - a + 1).sum();
    assert_eq!(seen.count + total, N);
    assert_eq!(si.success(), total == 0, "in exit {si:?}\n{ei}");
}

/// The window that made the report above off by one, made on purpose: an
/// `out` killed after the ring's consumer counter counted a message but
/// before `head` moved past it leaves the counter one ahead. Here `out` is
/// killed while idle (everything released and delivered) and the counter
/// is then bumped by hand. The next `out` resumes at `head`, so `in` joins
/// the two streams exactly: nothing reported lost, nothing dropped. (With
/// positions taken from the counter, as in format 1, `in` reported one
/// message lost that the reader got.)
#[test]
fn restarted_out_ignores_a_counter_ahead_of_head() {
    let s = setup();
    let n = 2_000;
    let half = n / 2;
    let progress = Arc::new(AtomicU64::new(0));
    let sink = drain(
        &s.rx,
        CAP,
        5,
        MAX,
        true,
        Arc::clone(&progress),
        Duration::from_secs(300),
    );
    let mut inb = Bridge::start(
        None,
        &["in", &s.key, &s.rx, "--listen", &s.listen],
        &unique("in"),
    );
    let gate = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let source = feed(&s.tx, CAP, n, 5, MAX, Some((half, Arc::clone(&gate))));
    let out_args = ["out", &s.tx, &s.key, "--connect", &s.listen];
    let mut out1 = Bridge::start(None, &out_args, &unique("out1"));
    wait_until(Duration::from_secs(120), "the first half", || {
        progress.load(Ordering::Acquire) >= half
    });
    out1.signal(libc::SIGKILL);
    out1.wait(Duration::from_secs(10));
    // Format v3 keeps no consumer counter (what was received is derived
    // from `head`), so the window cannot open by itself any more; the test
    // still scribbles the word that held it in v2 (byte 264, now the
    // informational `empty_waits`) and checks the restart ignores it.
    let counted = shmpipe::inspect(&s.tx).unwrap().stats.messages_received;
    assert_eq!(counted, half, "messages received after the first half");
    let path = std::path::Path::new("/dev/shm").join(&s.tx[1..]);
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
        .expect("open the source ring");
    std::os::unix::fs::FileExt::write_all_at(&f, &(counted + 1).to_le_bytes(), 264).unwrap();
    drop(f);
    let mut out2 = Bridge::start(None, &out_args, &unique("out2"));
    // Let the producer go on only once `out2` holds the ring: a producer
    // that finished first would remove the name, and `out2` would create a
    // new, empty ring.
    wait_until(Duration::from_secs(60), "out2 attached", || {
        shmpipe::inspect(&s.tx).is_ok_and(|i| i.consumer_alive)
    });
    gate.store(true, Ordering::Release);
    let seen = sink.join().expect("consumer thread").expect("consumer");
    source
        .handle
        .join()
        .expect("producer thread")
        .expect("producer");
    let so = out2.wait(Duration::from_secs(60));
    let si = inb.wait(Duration::from_secs(60));
    let (e2, ei) = (out2.stderr(), inb.stderr());
    assert!(so.success(), "out2: {so:?}\n{e2}");
    assert_eq!(seen.count, n, "the reader got everything");
    assert_eq!(
        gaps(&ei, &positions(n, CAP, 5, MAX)),
        Vec::<(u64, u64)>::new(),
        "{ei}"
    );
    assert_eq!(stat(&ei, "gaps"), Some(0), "{ei}");
    assert_eq!(stat(&ei, "duplicates"), Some(0), "{ei}");
    assert!(si.success(), "in exit {si:?}\n{ei}");
}
