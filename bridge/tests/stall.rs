//! A reader on the `in` side that stops reading: back-pressure must reach
//! the producer on the `out` side through zenoh (Block) and both rings, and
//! nothing may be dropped, however long the stall.

mod common;

use std::time::{Duration, Instant};

use common::*;
use shmpipe::Builder;

const CAP: u64 = 64 * 1024;

/// Start both bridges between a fresh producer and reader, and fill the
/// path until the producer blocks.
fn stalled() -> (shmpipe::Producer, shmpipe::Consumer, Bridge, Bridge, u64) {
    let tx = format!("/{}", unique("tx"));
    let rx = format!("/{}", unique("rx"));
    let key = format!("test/{}", unique("key"));
    let listen = format!("tcp/127.0.0.1:{}", free_port());
    let reader = Builder::new()
        .capacity(CAP)
        .unlink_on_drop(true)
        .create_consumer(&rx)
        .expect("consumer");
    let mut producer = Builder::new()
        .capacity(CAP)
        .unlink_on_drop(true)
        .create_producer(&tx)
        .expect("producer");
    let inb = Bridge::start(None, &["in", &key, &rx, "--listen", &listen], &unique("in"));
    let out = Bridge::start(
        None,
        &["out", &tx, &key, "--connect", &listen],
        &unique("out"),
    );
    // Fill everything between the producer and the stalled reader: both
    // rings, zenoh's queues and the socket buffers, until send blocks.
    let msg = [7u8; 1000];
    let mut sent: u64 = 0;
    // (`msg` is the same in the tests below.)
    let blocked = loop {
        match producer.send_timeout(&msg, Duration::from_secs(2)) {
            Ok(()) => sent += 1,
            Err(shmpipe::Error::Timeout) => break true,
            Err(e) => panic!("send: {e}"),
        }
        assert!(sent < 10_000_000, "the producer never blocked");
    };
    assert!(blocked);
    (producer, reader, inb, out, sent)
}

#[test]
fn stalled_reader_blocks_the_producer_and_loses_nothing() {
    let (mut producer, mut reader, mut inb, mut out, sent) = stalled();
    let msg = [7u8; 1000];
    // Stay stalled past zenoh's default `wait_before_close` (5 s).
    let stall_end = Instant::now() + Duration::from_secs(7);
    while Instant::now() < stall_end {
        assert!(
            matches!(
                producer.send_timeout(&msg, Duration::from_millis(200)),
                Err(shmpipe::Error::Timeout)
            ),
            "the producer got room while the reader was stalled"
        );
    }
    producer.close().expect("close");
    let mut got: u64 = 0;
    let mut buf = Vec::new();
    loop {
        match reader.recv_timeout(&mut buf, Duration::from_secs(30)) {
            Ok(_) => got += 1,
            Err(shmpipe::Error::Disconnected) => break,
            Err(e) => panic!(
                "recv after {got}: {e}\nin:\n{}\nout:\n{}",
                inb.stderr(),
                out.stderr()
            ),
        }
    }
    let so = out.wait(Duration::from_secs(30));
    let si = inb.wait(Duration::from_secs(30));
    let (eo, ei) = (out.stderr(), inb.stderr());
    assert_eq!(
        got, sent,
        "every message that was accepted arrived\nin:\n{ei}\nout:\n{eo}"
    );
    assert!(
        so.success() && si.success(),
        "out {so:?} in {si:?}\n{eo}\n{ei}"
    );
    assert_eq!(stat(&ei, "missing"), Some(0), "{ei}");
}

/// SIGTERM to `out` while its `put` is blocked by the stalled far side: it
/// still exits 0 within seconds and closes its ring in order (the producer
/// sees `Disconnected`, not `PeerDied`).
#[test]
fn sigterm_while_blocked_by_a_stalled_reader_exits_cleanly() {
    let (mut producer, _reader, _inb, mut out, _sent) = stalled();
    out.signal(libc::SIGTERM);
    let so = out.wait(Duration::from_secs(20));
    let eo = out.stderr();
    assert!(so.success(), "{so:?}\n{eo}");
    let r = loop {
        match producer.send_timeout(&[1u8; 1000], Duration::from_secs(5)) {
            Ok(()) => continue, // room left by the message `out` peeked
            r => break r,
        }
    };
    assert!(
        matches!(r, Err(shmpipe::Error::Disconnected)),
        "{r:?}\n{eo}"
    );
}
