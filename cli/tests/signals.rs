//! SIGINT, SIGTERM and SIGHUP on `write` and `read`, a reader whose stdout
//! closes (`read | head -c 10`), and start-order variant conflicts: exit
//! codes, messages, and what is left in /dev/shm.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};

use common::*;

fn signal(r: &Running, sig: i32) {
    // SAFETY: kill(2) on our own child's pid.
    assert_eq!(unsafe { libc::kill(r.child.id() as i32, sig) }, 0);
}

fn alive(seg: &Seg, role: &str) -> bool {
    inspect(&seg.name).is_some_and(|j| j[role]["status"] == "alive")
}

fn wait_attached(r: &mut Running, seg: &Seg, role: &str) {
    r.wait_until("the command to attach", |r| {
        if let Ok(Some(s)) = r.child.try_wait() {
            panic!("exited early: {s}");
        }
        alive(seg, role)
    });
}

/// A lone reader (it created the segment) stopped by `sig`: exits 128+sig,
/// says so, and removes the segment nobody else used.
fn lone_reader(sig: i32, code: i32, name: &str) {
    let seg = Seg::new("sig-read");
    let mut r = spawn(&["read", &seg.name], Stdio::null());
    wait_attached(&mut r, &seg, "consumer");
    signal(&r, sig);
    let o = r.finish();
    assert_code(&o, code);
    assert!(
        o.stderr.contains(&format!("interrupted by {name}")),
        "{}",
        o.stderr
    );
    assert!(o.stderr.contains("removed"), "{}", o.stderr);
    assert!(!seg.exists(), "the reader removed the segment it created");
}

#[test]
fn lone_reader_sigint_sigterm_sighup() {
    lone_reader(libc::SIGINT, 130, "SIGINT");
    lone_reader(libc::SIGTERM, 143, "SIGTERM");
    lone_reader(libc::SIGHUP, 129, "SIGHUP");
}

#[test]
fn lone_writer_waiting_for_input_or_room() {
    for (sig, code) in [(libc::SIGINT, 130), (libc::SIGTERM, 143)] {
        // Blocked reading stdin (a pipe the test keeps open).
        let seg = Seg::new("sig-write");
        let mut w = spawn(&["write", &seg.name], Stdio::piped());
        let stdin = w.child.stdin.take().unwrap();
        wait_attached(&mut w, &seg, "producer");
        signal(&w, sig);
        let o = w.finish();
        assert_code(&o, code);
        assert!(o.stderr.contains("interrupted"), "{}", o.stderr);
        assert!(!seg.exists(), "no reader ever attached: removed");
        drop(stdin);

        // Blocked on a full ring.
        let seg = Seg::new("sig-write-full");
        let mut w = spawn_with_input(
            &["write", &seg.name, "--capacity", "4KiB"],
            random_bytes(1 << 20, 3),
        );
        w.wait_until("the ring to fill", |_| {
            inspect(&seg.name).is_some_and(|j| j["full_waits"].as_u64() > Some(0))
        });
        signal(&w, sig);
        let o = w.finish();
        assert_code(&o, code);
        assert!(!seg.exists());
    }
}

#[test]
fn interrupted_writer_ends_the_stream_in_order() {
    let seg = Seg::new("sig-pair-w");
    let mut r = spawn(&["read", &seg.name], Stdio::null());
    wait_attached(&mut r, &seg, "consumer");
    let mut w = spawn(&["write", &seg.name], Stdio::piped());
    let mut stdin = w.child.stdin.take().unwrap();
    stdin.write_all(b"hello, ").unwrap();
    r.wait_until("the first bytes", |r| r.stdout_len() >= 7);
    signal(&w, libc::SIGINT);
    let wo = w.finish();
    assert_code(&wo, 130);
    assert!(
        wo.stderr.contains("closed the producer side"),
        "{}",
        wo.stderr
    );
    // Like a pipe whose writer got Ctrl-C: the reader sees the end.
    let ro = r.finish();
    assert_code(&ro, 0);
    assert_eq!(ro.stdout, b"hello, ");
    assert!(!seg.exists(), "both ends gone in order: removed");
    drop(stdin);
}

#[test]
fn interrupted_reader_then_the_writer_cleans_up() {
    let seg = Seg::new("sig-pair-r");
    let mut w = spawn(&["write", &seg.name], Stdio::piped());
    let mut stdin = w.child.stdin.take().unwrap();
    stdin.write_all(b"abc").unwrap();
    wait_attached(&mut w, &seg, "producer");
    let mut r = spawn(&["read", &seg.name], Stdio::null());
    r.wait_until("the first bytes", |r| r.stdout_len() >= 3);
    signal(&r, libc::SIGTERM);
    let ro = r.finish();
    assert_code(&ro, 143);
    assert!(
        ro.stderr.contains("closed the consumer side"),
        "{}",
        ro.stderr
    );
    assert!(seg.exists(), "kept while the writer is alive");
    let j = inspect(&seg.name).unwrap();
    assert_eq!(j["consumer"]["state"], "closed");
    // The writer finds the reader gone at its next send, and ends last.
    stdin.write_all(b"more").unwrap();
    drop(stdin);
    let wo = w.finish();
    assert_fails(&wo, "reader closed");
    assert!(
        !seg.exists(),
        "both ends gone in order: removed by the writer"
    );
}

#[test]
fn closed_stdout_leaves_nothing() {
    // The test's own pipeline: `shmpipe read X | head -c 10`.
    let seg = Seg::new("head");
    let script = format!("'{}' read '{}' | head -c 10", bin(), seg.name);
    let sh = Command::new("sh")
        .args(["-c", &script])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let w = run(&["write", &seg.name], &random_bytes(4 << 20, 9));
    assert_fails(&w, "reader closed");
    let out = sh.wait_with_output().unwrap();
    assert_eq!(out.stdout.len(), 10);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("broken pipe"), "{err}");
    assert!(
        !seg.exists(),
        "both ends gone in order: nothing left in /dev/shm"
    );

    // Same with the reader's exit status observed directly.
    let seg = Seg::new("epipe");
    let mut r = spawn_opts(&["read", &seg.name], Stdio::null(), false);
    wait_attached(&mut r, &seg, "consumer");
    let w = run(&["write", &seg.name], &random_bytes(1 << 20, 3));
    assert_fails(&w, "reader closed");
    assert_fails(&r.finish(), "broken pipe");
    assert!(!seg.exists());
}

#[test]
fn variant_conflict_reader_first() {
    let seg = Seg::new("conflict-r");
    let mut r = spawn(&["read", &seg.name], Stdio::null()); // creates a lock-free ring
    wait_attached(&mut r, &seg, "consumer");
    let w = run(&["write", &seg.name, "--variant", "locked"], b"data");
    assert_fails(&w, "is a lockfree ring, but --variant locked was given");
    assert!(
        w.stderr.contains("so the reader waiting on it stops too"),
        "{}",
        w.stderr
    );
    let ro = r.finish();
    assert_fails(&ro, "was removed while this reader waited for a writer");
    assert!(!seg.exists());
}

#[test]
fn variant_conflict_writer_first() {
    let seg = Seg::new("conflict-w");
    let mut w = spawn(&["write", &seg.name, "--variant", "locked"], Stdio::piped());
    let mut stdin = w.child.stdin.take().unwrap();
    stdin.write_all(b"data").unwrap();
    wait_attached(&mut w, &seg, "producer");
    let r = run0(&["read", &seg.name, "--variant", "lockfree"]);
    assert_fails(&r, "is a locked ring, but --variant lockfree was given");
    assert!(
        r.stderr.contains("so the writer waiting on it stops too"),
        "{}",
        r.stderr
    );
    let wo = w.finish();
    assert_fails(&wo, "was removed while this writer waited for a reader");
    assert!(!seg.exists());
    drop(stdin);
}

#[test]
fn no_conflict_when_the_variant_is_left_out() {
    let seg = Seg::new("detect");
    let mut w = spawn(&["write", &seg.name, "--variant", "locked"], Stdio::piped());
    let mut stdin = w.child.stdin.take().unwrap();
    wait_attached(&mut w, &seg, "producer");
    let mut r = spawn(&["read", &seg.name], Stdio::null());
    stdin.write_all(b"detected").unwrap();
    drop(stdin);
    assert_code(&w.finish(), 0);
    r.wait_until("the data", |r| r.stdout_len() >= 8);
    let ro = r.finish();
    assert_code(&ro, 0);
    assert_eq!(ro.stdout, b"detected");
    assert!(!seg.exists());
}
