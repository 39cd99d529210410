//! `shmpipe write` and `shmpipe read` end to end: byte-exact transfers in
//! both starting orders and both variants, and what happens when a side dies.

mod common;

use std::io::Write;
use std::process::Stdio;

use common::*;

const MIB: usize = 1 << 20;

/// Wait until the segment exists and its producer is attached and alive.
fn wait_for_producer(w: &mut Running, seg: &Seg) {
    w.wait_until("the writer to attach", |w| {
        if let Ok(Some(s)) = w.child.try_wait() {
            panic!("writer exited early: {s}");
        }
        inspect(&seg.name).is_some_and(|j| j["producer"]["status"] == "alive")
    });
}

/// Wait until the consumer is attached and alive.
fn wait_for_consumer(r: &mut Running, seg: &Seg) {
    r.wait_until("the reader to attach", |r| {
        if let Ok(Some(s)) = r.child.try_wait() {
            panic!("reader exited early: {s}");
        }
        inspect(&seg.name).is_some_and(|j| j["consumer"]["status"] == "alive")
    });
}

#[track_caller]
fn assert_same(got: &[u8], want: &[u8]) {
    assert_eq!(got.len(), want.len(), "length differs");
    if let Some(i) = got.iter().zip(want).position(|(a, b)| a != b) {
        panic!("first difference at byte {i}");
    }
}

/// Reader first, then writer: `read NAME | check` and `write NAME < data`.
fn transfer_reader_first(tag: &str, len: usize, read_args: &[&str], write_args: &[&str]) {
    let seg = Seg::new(tag);
    let input = random_bytes(len, len as u64 ^ 0xabc);
    let mut args = vec!["read", seg.name.as_str()];
    args.extend_from_slice(read_args);
    let mut reader = spawn(&args, Stdio::null());
    wait_for_consumer(&mut reader, &seg);
    let mut args = vec!["write", seg.name.as_str()];
    args.extend_from_slice(write_args);
    let w = run(&args, &input);
    assert_code(&w, 0);
    let r = reader.finish();
    assert_code(&r, 0);
    assert!(r.stderr.is_empty(), "{}", r.stderr);
    assert_same(&r.stdout, &input);
    assert!(
        !seg.exists(),
        "read removes the segment after an orderly close"
    );
}

/// Writer first (it creates the segment and blocks once the ring is full), then reader.
fn transfer_writer_first(tag: &str, len: usize, read_args: &[&str], write_args: &[&str]) {
    let seg = Seg::new(tag);
    let input = random_bytes(len, len as u64 ^ 0xdef);
    let mut args = vec!["write", seg.name.as_str()];
    args.extend_from_slice(write_args);
    let mut writer = spawn_with_input(&args, input.clone());
    wait_for_producer(&mut writer, &seg);
    let mut args = vec!["read", seg.name.as_str()];
    args.extend_from_slice(read_args);
    let r = spawn(&args, Stdio::null()).finish();
    let w = writer.finish();
    assert_code(&w, 0);
    assert_code(&r, 0);
    assert_same(&r.stdout, &input);
    assert!(!seg.exists());
}

#[test]
fn eight_mib_reader_first() {
    transfer_reader_first("e2e-rf", 8 * MIB, &[], &[]);
}

#[test]
fn eight_mib_writer_first() {
    transfer_writer_first("e2e-wf", 8 * MIB, &[], &[]);
}

#[test]
fn locked_variant_both_orders() {
    // The reader creates a locked ring; the writer detects the variant.
    transfer_reader_first("locked-rf", 4 * MIB, &["--variant", "locked"], &[]);
    // The writer creates it; the reader detects it.
    transfer_writer_first("locked-wf", 4 * MIB, &[], &["--variant", "locked"]);
}

#[test]
fn explicit_lockfree_variant_and_small_ring() {
    // A 4 KiB ring wraps hundreds of times; odd message sizes leave padding records.
    transfer_reader_first(
        "small",
        MIB,
        &[
            "--variant",
            "lockfree",
            "--capacity",
            "4KiB",
            "--wait",
            "spin-yield",
        ],
        &["--variant", "lockfree", "--message-size", "1000"],
    );
}

#[test]
fn semaphore_wait_and_stdin_from_a_file() {
    let seg = Seg::new("file");
    let input = random_bytes(3 * MIB + 12345, 99);
    let mut f = tempfile::tempfile().unwrap();
    f.write_all(&input).unwrap();
    std::io::Seek::rewind(&mut f).unwrap();
    let mut writer = spawn(
        &[
            "write",
            &seg.name,
            "--capacity",
            "64KiB",
            "--wait",
            "semaphore",
        ],
        Stdio::from(f),
    );
    wait_for_producer(&mut writer, &seg);
    let j = inspect(&seg.name).unwrap();
    assert_eq!(j["wait"], "semaphore");
    assert_eq!(j["capacity"], 65536);
    let r = spawn(&["read", &seg.name], Stdio::null()).finish();
    assert_code(&writer.finish(), 0);
    assert_code(&r, 0);
    assert_same(&r.stdout, &input);
}

#[test]
fn writer_exits_before_reader_starts() {
    let seg = Seg::new("later");
    let input = random_bytes(100_000, 5);
    assert_code(&run(&["write", &seg.name], &input), 0);
    let j = inspect(&seg.name).unwrap();
    assert_eq!(j["producer"]["state"], "closed");
    assert_eq!(j["bytes_sent"], 100_000);
    // --keep leaves the segment, with the consumer closed.
    let r = run0(&["read", &seg.name, "--keep"]);
    assert_code(&r, 0);
    assert_same(&r.stdout, &input);
    let j = inspect(&seg.name).unwrap();
    assert_eq!(j["consumer"]["state"], "closed");
    assert_eq!(j["bytes_received"], 100_000);
    // Reading a drained, closed ring again: nothing, orderly end, removed.
    let r = run0(&["read", &seg.name]);
    assert_code(&r, 0);
    assert!(r.stdout.is_empty());
    assert!(!seg.exists());
}

#[test]
fn empty_input() {
    let seg = Seg::new("empty");
    assert_code(&run(&["write", &seg.name], b""), 0);
    let r = run0(&["read", &seg.name]);
    assert_code(&r, 0);
    assert!(r.stdout.is_empty());
}

#[test]
fn inspect_while_running_and_second_writer_refused() {
    let seg = Seg::new("live");
    // A writer whose stdin stays open: it never reaches end of file.
    let mut writer = spawn(&["write", &seg.name], Stdio::piped());
    let mut stdin = writer.child.stdin.take().unwrap();
    stdin.write_all(b"first ").unwrap();
    wait_for_producer(&mut writer, &seg);
    let mut reader = spawn(&["read", &seg.name], Stdio::null());
    reader.wait_until("the first bytes", |r| r.stdout_len() >= 6);
    let j = inspect(&seg.name).unwrap();
    assert_eq!(j["producer"]["status"], "alive");
    assert_eq!(j["consumer"]["status"], "alive");
    assert_eq!(j["bytes_received"], 6);
    // Roles are exclusive.
    assert_fails(
        &run(&["write", &seg.name], b"intruder"),
        "already the producer",
    );
    assert_fails(&run0(&["read", &seg.name]), "already the consumer");
    // The pair is undisturbed.
    stdin.write_all(b"second").unwrap();
    drop(stdin);
    assert_code(&writer.finish(), 0);
    let r = reader.finish();
    assert_code(&r, 0);
    assert_eq!(r.stdout, b"first second");
}

#[test]
fn killed_writer_while_reading() {
    let seg = Seg::new("kill");
    let input = random_bytes(2 * MIB, 11);
    // stdin is a pipe the test keeps open: write never sees end of file.
    let mut writer = spawn(&["write", &seg.name], Stdio::piped());
    let mut stdin = writer.child.stdin.take().unwrap();
    let mut reader = spawn(&["read", &seg.name], Stdio::null());
    let feed = input.clone();
    let feeder = std::thread::spawn(move || {
        let _ = stdin.write_all(&feed);
        stdin // keep the pipe open until the test drops it
    });
    reader.wait_until("all data to arrive", |r| r.stdout_len() >= input.len());
    writer.child.kill().unwrap(); // SIGKILL
    let w = writer.finish();
    assert_eq!(w.code(), None, "the writer was killed by a signal");
    let r = reader.finish();
    assert_fails(&r, "producer");
    assert!(r.stderr.contains("died"), "{}", r.stderr);
    assert_same(&r.stdout, &input);
    let j = inspect(&seg.name).expect("segment kept after the writer died");
    assert_eq!(j["producer"]["status"], "dead");
    assert_eq!(j["bytes_sent"].as_u64(), Some(input.len() as u64));
    drop(feeder.join());
}

#[test]
fn killed_writer_with_unread_data() {
    let seg = Seg::new("kill-unread");
    let input = random_bytes(600_000, 12);
    let mut writer = spawn(&["write", &seg.name], Stdio::piped());
    let mut stdin = writer.child.stdin.take().unwrap();
    let feed = input.clone();
    let feeder = std::thread::spawn(move || {
        let _ = stdin.write_all(&feed);
        stdin
    });
    // Everything committed to the ring (1 MiB: it fits), nobody reading yet.
    writer.wait_until("all input committed", |_| {
        inspect(&seg.name).is_some_and(|j| j["bytes_sent"] == input.len() as u64)
    });
    writer.child.kill().unwrap();
    let _ = writer.finish();
    let j = inspect(&seg.name).unwrap();
    assert_eq!(j["producer"]["status"], "dead");
    let r = run0(&["read", &seg.name]);
    assert_fails(&r, "producer");
    assert!(r.stderr.contains("died"), "{}", r.stderr);
    assert_same(&r.stdout, &input);
    drop(feeder.join());
}

#[test]
fn killed_reader_fails_the_writer() {
    let seg = Seg::new("kill-reader");
    let mut reader = spawn(&["read", &seg.name], Stdio::null());
    wait_for_consumer(&mut reader, &seg);
    let mut writer = spawn(&["write", &seg.name], Stdio::piped());
    let mut stdin = writer.child.stdin.take().unwrap();
    stdin.write_all(&random_bytes(1000, 1)).unwrap();
    reader.wait_until("the first bytes", |r| r.stdout_len() >= 1000);
    reader.child.kill().unwrap();
    let _ = reader.finish();
    // The writer notices when it next needs the reader: keep feeding it.
    let feeder = std::thread::spawn(move || {
        let chunk = vec![7u8; 64 * 1024];
        for _ in 0..1000 {
            if stdin.write_all(&chunk).is_err() {
                break;
            }
        }
    });
    let w = writer.finish();
    assert_fails(&w, "reader (consumer)");
    assert!(w.stderr.contains("died"), "{}", w.stderr);
    drop(feeder.join());
}

#[test]
fn reader_with_closed_stdout_fails_the_writer() {
    let seg = Seg::new("epipe");
    // The reader's stdout is closed: its first write fails with EPIPE.
    let mut reader = spawn_opts(&["read", &seg.name], Stdio::null(), false);
    wait_for_consumer(&mut reader, &seg);
    let w = run(&["write", &seg.name], &random_bytes(4 * MIB, 3));
    assert_fails(&w, "reader closed");
    let r = reader.finish();
    assert_fails(&r, "broken pipe");
}
