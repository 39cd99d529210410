//! shmpipe-tokio at its seams (issue 20).
//!
//! - `dropped_consumer_releases_its_name`: a named `AsyncConsumer` whose
//!   producer is SIGKILLed gets `PeerDied` and is dropped: its name is gone
//!   from `/dev/shm` at once, and a new consumer with the same name can be
//!   created in the same process (before the fix the reactor's set kept the
//!   ring until some other ring woke it: `AlreadyExists`-style failure).
//! - `death_reported_quickly`: a parked `recv` whose producer (another
//!   process) is SIGKILLed returns `PeerDied`; the latency is printed
//!   (pidfd: milliseconds; before, the reactor's 500 ms liveness slice).
//! - `sink_close_closes_the_ring`, `shutdown_closes_the_ring`: closing an
//!   `AsyncProducer` (`SinkExt::close`, `AsyncWriteExt::shutdown`) while the
//!   value is still alive lets the consumer see every message, then
//!   `Disconnected`; a pending Sink item is delivered first; later sends
//!   fail with `BrokenPipe`; closing with the consumer gone reports it.
//! - `into_inner_and_close`: `into_inner` hands the wrapper back while a
//!   Sink item or an `AsyncRead` remainder is pending, the handle after;
//!   `AsyncConsumer::close` closes the consumer side.
//! - `async_fd_owns_a_waitset`: tokio's `AsyncFd` owns a `WaitSet` (which is
//!   `AsRawFd`) and hands it back for `wait` / `add_*` / `remove`.

use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use futures::SinkExt;
use shmpipe::{Builder, Error, Events, WaitSet, WaitStrategy};
use shmpipe_tokio::{AsyncConsumer, AsyncProducer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

/// Whether the kernel has `futex_waitv` (Linux >= 5.16); if not, the
/// calling test prints why it skips and returns.
fn have_waitv() -> bool {
    match WaitSet::new() {
        Ok(_) => true,
        Err(e) if e.to_string().contains("5.16") => {
            eprintln!("SKIPPED: {e}");
            false
        }
        Err(e) => panic!("WaitSet::new: {e}"),
    }
}

/// Fork a child that runs `f` and `_exit`s (0 if it returned true).
fn fork(f: impl FnOnce() -> bool) -> libc::pid_t {
    // SAFETY: plain fork; the child only does ring work and _exits.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0);
    if pid == 0 {
        // SAFETY: a last-resort alarm; leave without destructors.
        unsafe { libc::alarm(120) };
        let ok = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or(false);
        // SAFETY: as above.
        unsafe { libc::_exit(if ok { 0 } else { 1 }) };
    }
    pid
}

fn kill_and_reap(pid: libc::pid_t) {
    // SAFETY: our own child; valid out-pointer.
    unsafe {
        libc::kill(pid, libc::SIGKILL);
        libc::waitpid(pid, std::ptr::null_mut(), 0);
    }
}

fn unique_name(tag: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "/shmpipe-tokio-{tag}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

fn exists(name: &str) -> bool {
    std::path::Path::new("/dev/shm").join(&name[1..]).exists()
}

/// A named consumer, a producer in a forked child that sends one message
/// and idles; a `recv` that parks.
fn named_ring_with_forked_producer(name: &str) -> (libc::pid_t, shmpipe::Consumer) {
    let b = Builder::new().wait(WaitStrategy::Futex);
    let rx = b.create_consumer(name).expect("create");
    let pid = fork(|| {
        let Ok(mut tx) = b.open_producer(name) else {
            return false;
        };
        let _ = tx.send(b"hello");
        std::thread::sleep(Duration::from_secs(60));
        true
    });
    (pid, rx)
}

/// Four rounds: before the fix the name outlived its handle in most
/// single rounds (5 of 6 runs), depending on whether the reactor happened
/// to wait again after removing the ring.
#[test]
fn dropped_consumer_releases_its_name() {
    if !have_waitv() {
        return;
    }
    for _ in 0..4 {
        dropped_consumer_round();
    }
}

fn dropped_consumer_round() {
    let name = unique_name("drop");
    let (pid, rx) = named_ring_with_forked_producer(&name);
    runtime().block_on(async {
        let mut rx = AsyncConsumer::new(rx).unwrap();
        let mut buf = Vec::new();
        rx.recv(&mut buf).await.unwrap();
        assert_eq!(buf, b"hello");
        let killer = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            kill_and_reap(pid);
        });
        // Parks (the reactor's set looks at the ring), then PeerDied.
        let r = tokio::time::timeout(Duration::from_secs(10), rx.recv(&mut buf)).await;
        assert!(matches!(r, Ok(Err(Error::PeerDied))), "{r:?}");
        killer.join().unwrap();
        drop(rx);
        assert!(
            !exists(&name),
            "{name} still exists after its creator's handle was dropped"
        );
        // The same name again, in the same process, and it works.
        let b = Builder::new().wait(WaitStrategy::Futex);
        let rx = b
            .create_consumer(&name)
            .expect("a new consumer under the same name");
        let mut tx = b.open_producer(&name).unwrap();
        let mut rx = AsyncConsumer::new(rx).unwrap();
        let t = tokio::spawn(async move {
            let mut buf = Vec::new();
            rx.recv(&mut buf).await.map(|_| buf)
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        tx.send(b"again").unwrap();
        assert_eq!(t.await.unwrap().unwrap(), b"again");
    });
    assert!(!exists(&name));
}

#[test]
fn death_reported_quickly() {
    if !have_waitv() {
        return;
    }
    let name = unique_name("death");
    let (pid, rx) = named_ring_with_forked_producer(&name);
    let took = runtime().block_on(async {
        let mut rx = AsyncConsumer::new(rx).unwrap();
        let mut buf = Vec::new();
        rx.recv(&mut buf).await.unwrap();
        let (t0_tx, t0_rx) = std::sync::mpsc::channel();
        let killer = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(100)); // parked by then
            let t0 = Instant::now();
            // SAFETY: our own child.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            t0_tx.send(t0).unwrap();
        });
        let r = tokio::time::timeout(Duration::from_secs(10), rx.recv(&mut buf)).await;
        let done = Instant::now();
        assert!(matches!(r, Ok(Err(Error::PeerDied))), "{r:?}");
        killer.join().unwrap();
        done - t0_rx.recv().unwrap()
    });
    eprintln!("shmpipe-tokio: SIGKILL of the producer reported to a parked recv after {took:?}");
    // SAFETY: reap our own child.
    unsafe { libc::waitpid(pid, std::ptr::null_mut(), 0) };
}

/// A blocking consumer in a thread: every message until `Disconnected`
/// (or another error / a 10 s silence, returned as the error).
fn drain_thread(mut rx: shmpipe::Consumer) -> std::thread::JoinHandle<(Vec<Vec<u8>>, Error)> {
    std::thread::spawn(move || {
        let mut got = Vec::new();
        loop {
            let mut buf = Vec::new();
            match rx.recv_timeout(&mut buf, Duration::from_secs(10)) {
                Ok(_) => got.push(buf),
                Err(e) => return (got, e),
            }
        }
    })
}

#[test]
fn sink_close_closes_the_ring() {
    if !have_waitv() {
        return;
    }
    let (tx, rx) = Builder::new()
        .capacity(64)
        .wait(WaitStrategy::Futex)
        .in_process()
        .unwrap()
        .split()
        .unwrap();
    runtime().block_on(async {
        let mut tx = AsyncProducer::new(tx).unwrap();
        // Fill the ring (max message 24 bytes, 64-byte ring), so the next
        // Sink item stays pending in the wrapper.
        let mut sent = Vec::new();
        loop {
            let m = vec![sent.len() as u8; 8];
            match tx.get_mut().unwrap().try_send(&m) {
                Ok(()) => sent.push(m),
                Err(Error::Full) => break,
                Err(e) => panic!("{e}"),
            }
        }
        let last = vec![0xee; 8];
        tx.feed(last.clone()).await.unwrap(); // accepted, pending
        sent.push(last);
        let reader = drain_thread(rx);
        // Close while `tx` lives on: flushes the pending item, then closes.
        SinkExt::close(&mut tx).await.unwrap();
        let (got, end) = tokio::task::spawn_blocking(move || reader.join().unwrap())
            .await
            .unwrap();
        assert_eq!(got, sent);
        assert!(
            matches!(end, Error::Disconnected),
            "the consumer saw {end:?}, not the end, while the closed AsyncProducer lived"
        );
        // Later sends fail; closing again is fine.
        let e = SinkExt::send(&mut tx, vec![1]).await.unwrap_err();
        assert!(
            matches!(&e, Error::Io { source, .. } if source.kind() == std::io::ErrorKind::BrokenPipe),
            "{e:?}"
        );
        assert!(tx.send(b"x").await.is_err());
        SinkExt::close(&mut tx).await.unwrap();
        assert!(tx.get_mut().is_none());
        drop(tx);
    });
}

#[test]
fn shutdown_closes_the_ring() {
    if !have_waitv() {
        return;
    }
    let (tx, rx) = Builder::new()
        .wait(WaitStrategy::Futex)
        .in_process()
        .unwrap()
        .split()
        .unwrap();
    runtime().block_on(async {
        let mut tx = AsyncProducer::new(tx).unwrap();
        tx.write_all(b"bytes").await.unwrap();
        let reader = drain_thread(rx);
        tx.shutdown().await.unwrap();
        let (got, end) = tokio::task::spawn_blocking(move || reader.join().unwrap())
            .await
            .unwrap();
        assert_eq!(got, vec![b"bytes".to_vec()]);
        assert!(matches!(end, Error::Disconnected), "{end:?}");
        let e = tx.write_all(b"more").await.unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::BrokenPipe, "{e}");
        drop(tx);
    });
}

#[test]
fn close_reports_errors() {
    if !have_waitv() {
        return;
    }
    let (tx, rx) = Builder::new()
        .capacity(64)
        .wait(WaitStrategy::Futex)
        .in_process()
        .unwrap()
        .split()
        .unwrap();
    runtime().block_on(async {
        let mut tx = AsyncProducer::new(tx).unwrap();
        while tx.get_mut().unwrap().try_send(&[0; 8]).is_ok() {}
        tx.feed(vec![1; 8]).await.unwrap(); // pending: the ring is full
        drop(rx); // nobody will ever make room
        let r = tx.close().await;
        assert!(matches!(r, Err(Error::Disconnected)), "{r:?}");
    });
}

#[test]
fn into_inner_and_close() {
    if !have_waitv() {
        return;
    }
    let (tx, rx) = Builder::new()
        .capacity(64)
        .wait(WaitStrategy::Futex)
        .in_process()
        .unwrap()
        .split()
        .unwrap();
    runtime().block_on(async {
        let mut tx = AsyncProducer::new(tx).unwrap();
        let mut rx = AsyncConsumer::new(rx).unwrap();
        while tx.get_mut().unwrap().try_send(b"12345678").is_ok() {}
        tx.feed(b"pending!".to_vec()).await.unwrap();
        let mut tx = tx.into_inner().expect_err("a Sink item is pending");
        // A 3-byte read of an 8-byte message leaves 5 bytes in the wrapper.
        let mut three = [0u8; 3];
        rx.read_exact(&mut three).await.unwrap();
        let mut rx = rx.into_inner().expect_err("AsyncRead holds 5 bytes");
        let mut five = [0u8; 5];
        rx.read_exact(&mut five).await.unwrap();
        assert_eq!(&[three.as_slice(), &five].concat(), b"12345678");
        SinkExt::flush(&mut tx).await.unwrap(); // room now: the pending item goes
        let mut tx = tx.into_inner().expect("nothing pending");
        let mut rx = rx.into_inner().expect("nothing buffered");
        let mut buf = Vec::new();
        let mut all = Vec::new();
        while rx.try_recv(&mut buf).is_ok() {
            all.push(buf.clone());
        }
        assert_eq!(all.last().map(Vec::as_slice), Some(b"pending!".as_slice()));
        // The consumer's explicit close: the producer then sees Disconnected.
        AsyncConsumer::new(rx).unwrap().close().unwrap();
        assert!(matches!(tx.send(b"x"), Err(Error::Disconnected)));
    });
}

#[test]
fn async_fd_owns_a_waitset() {
    if !have_waitv() {
        return;
    }
    let b = Builder::new().wait(WaitStrategy::Futex);
    let (mut tx, mut rx) = b.in_process().unwrap().split().unwrap();
    runtime().block_on(async move {
        let set = WaitSet::new().unwrap();
        // `as_fd` borrows shared; `AsyncFd` owns the set (it is `AsRawFd`).
        assert!(set.as_fd().as_raw_fd() >= 0);
        // SAFETY (`register`'s condition): the set's descriptor stays open
        // and the same for the set's whole life.
        let mut afd = unsafe {
            tokio::io::unix::AsyncFd::register_with_interest(set, tokio::io::Interest::READABLE)
        }
        .unwrap();
        let t = afd.get_mut().add_consumer(&rx).unwrap();
        let sender = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            tx.send(b"via AsyncFd").unwrap();
            tx
        });
        let mut events = Events::new();
        loop {
            let mut guard = tokio::time::timeout(Duration::from_secs(10), afd.readable_mut())
                .await
                .expect("the set's fd never became readable")
                .unwrap();
            let n = guard
                .get_inner_mut()
                .wait(&mut events, Some(Duration::ZERO))
                .unwrap();
            guard.clear_ready();
            if n > 0 {
                assert!(events.contains(t));
                break;
            }
        }
        let mut buf = Vec::new();
        rx.try_recv(&mut buf).unwrap();
        assert_eq!(buf, b"via AsyncFd");
        assert!(afd.get_mut().remove(t));
        drop(sender.join().unwrap());
    });
}
