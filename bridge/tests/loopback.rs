//! Same host: producer -> ring -> `out` -> zenoh over 127.0.0.1 -> `in` ->
//! ring -> consumer. The producer and consumer are this test process,
//! through the library (message sizes under our control, which
//! `shmpipe write`, one message per read of stdin, does not give).

mod common;

use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

use common::*;

/// `n` messages of sizes 8..=max through a bridge pair; everything must
/// arrive once, in order, intact, and both bridges must say so.
fn run(n: u64, capacity: u64, max: usize, seed: u64) {
    let tx = format!("/{}", unique("tx"));
    let rx = format!("/{}", unique("rx"));
    let key = format!("test/{}", unique("key"));
    let port = free_port();
    let listen = format!("tcp/127.0.0.1:{port}");
    let progress = Arc::new(AtomicU64::new(0));
    let sink = drain(
        &rx,
        capacity,
        seed,
        max,
        false,
        Arc::clone(&progress),
        Duration::from_secs(600),
    );
    let mut inb = Bridge::start(None, &["in", &key, &rx, "--listen", &listen], &unique("in"));
    let source = feed(&tx, capacity, n, seed, max, None);
    let mut out = Bridge::start(
        None,
        &["out", &tx, &key, "--connect", &listen],
        &unique("out"),
    );
    let seen = sink.join().expect("consumer thread").expect("consumer");
    source
        .handle
        .join()
        .expect("producer thread")
        .expect("producer");
    let so = out.wait(Duration::from_secs(60));
    let si = inb.wait(Duration::from_secs(60));
    let (eo, ei) = (out.stderr(), inb.stderr());
    assert!(so.success(), "out failed: {so:?}\n{eo}");
    assert!(si.success(), "in failed: {si:?}\n{ei}");
    assert_eq!(seen.end, "disconnected");
    assert_eq!(
        seen.count, n,
        "consumer got {} of {n}\nout:\n{eo}\nin:\n{ei}",
        seen.count
    );
    assert_eq!(stat(&eo, "messages"), Some(n), "{eo}");
    assert_eq!(stat(&ei, "messages"), Some(n), "{ei}");
    assert_eq!(stat(&ei, "gaps"), Some(0), "{ei}");
    assert_eq!(stat(&ei, "duplicates"), Some(0), "{ei}");
    assert!(ei.contains("stream complete"), "{ei}");
}

#[test]
fn million_small_messages() {
    // 1 MiB rings, 1,000,000 messages of 8..=64 bytes. (1,000,000 of sizes
    // up to a ring's max takes ~45 s even with 4 KiB rings: too long for CI.)
    run(1_000_000, 1 << 20, 64, 1);
}

#[test]
fn large_messages_up_to_the_rings_max() {
    // A 64 KiB ring: sizes 8..=32760 bytes (its largest message).
    let cap = 64 * 1024;
    run(30_000, cap, shmpipe::max_message_for(cap), 2);
}
