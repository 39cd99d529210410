//! Forking while another thread runs the library's one-time, process-wide
//! initialisation.
//!
//! `first_attach_races_fork` re-runs this test binary as fresh processes (the
//! one-time initialisation is still to come in each). In each, a second
//! thread attaches the process's first endpoints — registering the process
//! for `membarrier(2)` (which, in a process with more than one thread, waits
//! for an RCU grace period: milliseconds) and taking the first role lock —
//! while the main thread forks children as fast as it can. Each child
//! attaches endpoints of its own and exits. A child that inherited a `Once`
//! or a lock in the middle of its initialisation (the thread running it does
//! not exist in the child) blocks forever: the round kills it after 10 s
//! and fails.
//!
//! This is what hung the `shmpipe-tokio` tests at start-up (their forked
//! producers never sent the first message): `light_barrier_available` kept
//! its answer in a `OnceLock`, and a test thread forked while another test
//! thread was inside its initialiser.

use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use shmpipe::{Builder, WaitStrategy};

const CHILD_ENV: &str = "SHMPIPE_FORK_SAFETY_CHILD";
const ROUNDS: usize = 20;

#[test]
fn first_attach_races_fork() {
    let exe = std::env::current_exe().expect("test binary path");
    let mut forked_during_init = 0u64;
    for round in 0..ROUNDS {
        let mut child = Command::new(&exe)
            .args([
                "--exact",
                "fork_race_process",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_ENV, "1")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("re-running the test binary");
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            match child.try_wait().expect("try_wait") {
                Some(_) => break,
                None if Instant::now() > deadline => {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!("round {round}: the process did not finish in 60 s");
                }
                None => std::thread::sleep(Duration::from_millis(5)),
            }
        }
        let out = child.wait_with_output().expect("output");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "round {round}: {}\n{stdout}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        forked_during_init += stdout
            .lines()
            .find_map(|l| l.split_once("forked during init: ").map(|(_, n)| n))
            .and_then(|n| n.trim().parse::<u64>().ok())
            .expect("the round reports its forks");
    }
    eprintln!("first_attach_races_fork: {forked_during_init} children forked during a first attach, none hung");
}

/// The body of one round; runs only in the processes started by
/// `first_attach_races_fork`.
#[test]
#[ignore = "entry point of the processes started by first_attach_races_fork"]
fn fork_race_process() {
    if std::env::var_os(CHILD_ENV).is_none() {
        return;
    }
    let started = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicBool::new(false));
    let (s, d) = (started.clone(), done.clone());
    let init = std::thread::spawn(move || {
        s.store(true, Ordering::SeqCst);
        // The first attach of this process.
        let ends = Builder::new()
            .wait(WaitStrategy::Futex)
            .anonymous()
            .and_then(|p| p.split());
        d.store(true, Ordering::SeqCst);
        ends.is_ok()
    });
    while !started.load(Ordering::SeqCst) {
        std::hint::spin_loop();
    }
    let mut pids = Vec::new();
    while !done.load(Ordering::SeqCst) && pids.len() < 300 {
        // SAFETY: plain fork; the child attaches two endpoints and _exits.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork: {}", std::io::Error::last_os_error());
        if pid == 0 {
            // SAFETY: a last-resort alarm in the child.
            unsafe { libc::alarm(30) };
            let ok = Builder::new()
                .wait(WaitStrategy::Futex)
                .anonymous()
                .and_then(|p| p.split())
                .is_ok();
            // SAFETY: leave without the parent's destructors.
            unsafe { libc::_exit(if ok { 0 } else { 1 }) };
        }
        pids.push(pid);
    }
    assert!(init.join().expect("init thread"), "first attach failed");
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut hung = Vec::new();
    for &pid in &pids {
        let mut status = 0;
        loop {
            // SAFETY: our own child; valid out-pointer.
            let r = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
            if r == pid {
                assert!(
                    libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
                    "child {pid} failed: status {status}"
                );
                break;
            }
            if Instant::now() > deadline {
                hung.push(pid);
                // SAFETY: kill and reap our own child.
                unsafe {
                    libc::kill(pid, libc::SIGKILL);
                    libc::waitpid(pid, &mut status, 0);
                }
                break;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    println!("forked during init: {}", pids.len());
    assert!(
        hung.is_empty(),
        "{} of {} children forked during the first attach hung (inherited state in the \
         middle of its initialisation), e.g. {:?}",
        hung.len(),
        pids.len(),
        &hung[..hung.len().min(5)]
    );
}
