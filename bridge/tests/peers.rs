//! A local ring peer that dies: the death travels across the bridge.

mod common;

use std::process::Command;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use shmpipe::Builder;

const CAP: u64 = 1 << 20;
const MAX: usize = 64;
const K: u64 = 20_000;

/// Not a test on its own: the producer process for the test below,
/// started by it with `SPB_HELPER_RING` set. Sends K messages, then dies
/// by SIGKILL without closing the ring.
#[test]
fn helper_producer_that_dies() {
    let Ok(ring) = std::env::var("SPB_HELPER_RING") else {
        return;
    };
    let mut p = Builder::new()
        .capacity(CAP)
        .unlink_on_drop(false)
        .open_or_create_producer(&ring)
        .expect("helper: producer");
    let mut buf = [0u8; MAX];
    for i in 0..K {
        let len = len_of(i, 7, MAX);
        fill(i, 7, &mut buf[..len]);
        p.send_timeout(&buf[..len], Duration::from_secs(60))
            .expect("helper: send");
    }
    // SAFETY: raise(2) has no memory preconditions; we die here on purpose.
    unsafe { libc::raise(libc::SIGKILL) };
}

/// The producer on the `out` side dies after K messages: `out` forwards
/// that (exit 1), `in` delivers all K messages and then leaves its ring
/// unclosed (exit 1), so the reader on the far side gets every message and
/// then `PeerDied`, as if it were reading the dead producer's ring itself.
#[test]
fn source_producer_death_reaches_the_far_reader() {
    let tx = format!("/{}", unique("tx"));
    let rx = format!("/{}", unique("rx"));
    let key = format!("test/{}", unique("key"));
    let listen = format!("tcp/127.0.0.1:{}", free_port());
    let sink = drain_opts(
        &rx,
        CAP,
        7,
        MAX,
        true,
        Arc::new(AtomicU64::new(0)),
        Duration::from_secs(120),
        false,
    );
    let mut inb = Bridge::start(None, &["in", &key, &rx, "--listen", &listen], &unique("in"));
    let mut out = Bridge::start(
        None,
        &["out", &tx, &key, "--connect", &listen],
        &unique("out"),
    );
    let helper = Command::new(std::env::current_exe().expect("test binary"))
        .args([
            "--exact",
            "helper_producer_that_dies",
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .env("SPB_HELPER_RING", &tx)
        .status()
        .expect("run the helper");
    assert!(!helper.success(), "the helper producer was killed");
    let seen = sink.join().expect("consumer thread").expect("consumer");
    let so = out.wait(Duration::from_secs(60));
    let si = inb.wait(Duration::from_secs(60));
    let (eo, ei) = (out.stderr(), inb.stderr());
    let _ = shmpipe::remove(&tx);
    assert_eq!(so.code(), Some(1), "{eo}");
    assert!(eo.contains("died without closing"), "{eo}");
    assert_eq!(si.code(), Some(1), "{ei}");
    assert!(ei.contains("died without closing"), "{ei}");
    assert_eq!(seen.end, "peer died");
    assert_eq!(seen.indices, (0..K).collect::<Vec<_>>());
}

/// The reader on the `in` side closes its ring: `in` stops (exit 1) and
/// closes its side; `out` then has no subscriber and waits with the rest of
/// the messages still in its ring, and stops cleanly on SIGTERM: the
/// producer sees `Disconnected`, never `PeerDied`.
#[test]
fn far_reader_gone_then_sigterm_closes_cleanly() {
    let tx = format!("/{}", unique("tx"));
    let rx = format!("/{}", unique("rx"));
    let key = format!("test/{}", unique("key"));
    let listen = format!("tcp/127.0.0.1:{}", free_port());
    let mut reader = Builder::new()
        .capacity(CAP)
        .unlink_on_drop(true)
        .create_consumer(&rx)
        .expect("consumer");
    let mut producer = Builder::new()
        .capacity(CAP)
        .unlink_on_drop(true)
        .create_producer(&tx)
        .expect("producer");
    let in_args = [
        "in",
        &key,
        &rx,
        "--listen",
        &listen,
        "--stats-interval",
        "0.2",
    ];
    let mut inb = Bridge::start(None, &in_args, &unique("in"));
    let mut out = Bridge::start(
        None,
        &["out", &tx, &key, "--connect", &listen],
        &unique("out"),
    );
    producer.send(b"0123456789").expect("send");
    let mut buf = Vec::new();
    reader
        .recv_timeout(&mut buf, Duration::from_secs(30))
        .expect("first message across");
    assert_eq!(buf, b"0123456789");
    wait_until(
        Duration::from_secs(10),
        "stats every --stats-interval",
        || inb.stderr().contains("stats (interval) messages=1 "),
    );
    reader.close().expect("close the reader");
    producer.send(b"second").expect("send");
    let si = inb.wait(Duration::from_secs(30));
    let ei = inb.stderr();
    assert_eq!(si.code(), Some(1), "{ei}");
    assert!(ei.contains("closed it"), "{ei}");
    // Give `out` a message it can no longer deliver; ask for stats; stop it.
    producer.send(b"third").expect("send");
    out.signal(libc::SIGUSR1);
    wait_until(Duration::from_secs(10), "stats on SIGUSR1", || {
        out.stderr().contains("stats (SIGUSR1)")
    });
    out.signal(libc::SIGTERM);
    let so = out.wait(Duration::from_secs(30));
    let eo = out.stderr();
    assert!(so.success(), "{eo}");
    assert!(eo.contains("interrupted"), "{eo}");
    match producer.send_timeout(b"after", Duration::from_secs(5)) {
        Err(shmpipe::Error::Disconnected) => {}
        other => panic!("the producer should see Disconnected, got {other:?}\n{eo}"),
    }
}
