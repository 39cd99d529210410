//! `shmpipe read` killed at random points and replaced, many times, while a
//! producer streams numbered lines: every line arrives at least once, in
//! order, and only the line being written out when a reader died may be
//! repeated, once, by its replacement (the two-phase receive releases a
//! message only after it was written to stdout).
//!
//! `SHMPIPE_CLI_KILLS` sets the number of kills per variant (default 100),
//! `SHMPIPE_TEST_SEED` the seed of the kill points.

mod common;

use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use shmpipe::{Builder, Error, LockFree, Locked, Variant};

/// Every line is one message of this many bytes: `000000000000042\n`. A
/// write of it to a pipe is atomic, so a killed reader never prints half a line.
const LINE: usize = 16;

fn line(i: u64) -> Vec<u8> {
    format!("{i:0w$}\n", w = LINE - 1).into_bytes()
}

fn env_u64(var: &str, default: u64) -> u64 {
    std::env::var(var)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// splitmix64.
fn next(s: &mut u64) -> u64 {
    *s = s.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *s;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn kill_readers<V: Variant>(flag: &str) {
    let kills = env_u64("SHMPIPE_CLI_KILLS", 100);
    let mut seed = env_u64("SHMPIPE_TEST_SEED", 0x5eed) ^ flag.len() as u64;
    let lines = kills * 3000 + 5000;
    let seg = Seg::new(&format!("junction-{flag}"));
    // The producer lives in the test process and outlasts every reader; it
    // retries a line while no reader is there (PeerDied, Timeout).
    let mut tx = Builder::<V>::default()
        .capacity(4096)
        .unlink_on_drop(false)
        .create_producer(&seg.name)
        .unwrap();
    let quit = Arc::new(AtomicBool::new(false));
    let q = quit.clone();
    let producer = std::thread::spawn(move || {
        for i in 0..lines {
            let msg = line(i);
            loop {
                if q.load(Ordering::Relaxed) {
                    return;
                }
                match tx.send_timeout(&msg, Duration::from_millis(50)) {
                    Ok(()) => break,
                    Err(Error::Timeout | Error::PeerDied | Error::Disconnected) => {
                        std::thread::sleep(Duration::from_millis(1))
                    }
                    Err(e) => panic!("send line {i}: {e}"),
                }
            }
        }
        tx.close().unwrap(); // the last reader drains the rest, then sees the end
    });
    let read = ["read", seg.name.as_str(), "--variant", flag];
    let mut outputs: Vec<Vec<u8>> = Vec::new();
    let mut finished = None;
    let (mut early, mut late) = (0, 0);
    for _ in 0..kills {
        let mut r = spawn(&read, Stdio::null());
        if next(&mut seed).is_multiple_of(8) {
            // Anywhere in the first milliseconds: before, while or after attaching.
            std::thread::sleep(Duration::from_micros(next(&mut seed) % 5000));
            early += 1;
        } else {
            // After a random number of lines arrived: in the middle of the stream.
            let want = (1 + next(&mut seed) % 2000) as usize * LINE;
            r.wait_until("lines to arrive", |r| {
                r.stdout_len() >= want || matches!(r.child.try_wait(), Ok(Some(_)))
            });
            late += 1;
        }
        if let Ok(Some(_)) = r.child.try_wait() {
            finished = Some(r.finish()); // ran to the end on its own
            break;
        }
        r.child.kill().unwrap(); // SIGKILL
        let o = r.finish();
        assert_eq!(o.code(), None, "killed by a signal; stderr: {}", o.stderr);
        outputs.push(o.stdout);
    }
    let last = finished.unwrap_or_else(|| spawn(&read, Stdio::null()).finish());
    quit.store(true, Ordering::Relaxed);
    producer.join().unwrap();
    assert_code(&last, 0);
    outputs.push(last.stdout);

    let mut expect = 0u64; // the next line not seen yet
    let mut prev: Option<u64> = None; // the last line printed by any reader
    let mut repeats = 0;
    for (k, out) in outputs.iter().enumerate() {
        assert_eq!(out.len() % LINE, 0, "reader {k} printed part of a line");
        for (j, l) in out.chunks(LINE).enumerate() {
            let n: u64 = std::str::from_utf8(&l[..LINE - 1])
                .ok()
                .and_then(|s| s.parse().ok())
                .unwrap_or_else(|| panic!("reader {k}, line {j}: not a numbered line: {l:?}"));
            if j == 0 && prev == Some(n) {
                repeats += 1; // the junction: printed, not released, then killed
                continue;
            }
            assert_eq!(
                n, expect,
                "reader {k}, line {j}: expected line {expect} (lost or out of order)"
            );
            expect += 1;
            prev = Some(n);
        }
    }
    assert_eq!(expect, lines, "every line arrived");
    assert!(!seg.exists(), "the last reader removed the segment");
    eprintln!(
        "{flag}: {} readers killed ({early} early, {late} mid-stream), {repeats} junction repeats, {lines} lines",
        outputs.len() - 1
    );
}

#[test]
fn killed_readers_lose_nothing_lockfree() {
    kill_readers::<LockFree>("lockfree");
}

#[test]
fn killed_readers_lose_nothing_locked() {
    kill_readers::<Locked>("locked");
}
