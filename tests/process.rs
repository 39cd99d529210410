//! `shmpipe::process`: a child spawned with an inherited anonymous ring
//! pair answers JSON requests; killing it ends the parent's pending calls;
//! inherited descriptors are validated like any foreign segment.
//!
//! This test binary is also the child: run with `SHMPIPE_TEST_WORKER=<mode>`
//! it serves on the inherited rings instead of running the tests (so it has
//! its own `main`: `harness = false` in Cargo.toml).

use std::io::Write;
use std::os::fd::{FromRawFd, OwnedFd};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use shmpipe::process::{self, Duplex};
use shmpipe::{Builder, Error, Pair};

const WORKER: &str = "SHMPIPE_TEST_WORKER";
const LONG: Duration = Duration::from_secs(60);
/// Generous "promptly" bound (the ring checks liveness every 20 ms).
const BOUND: Duration = Duration::from_secs(5);

/// The child's side: answer `{"id", "method": "add", "params": [a, b]}`
/// with `{"id", "result": a + b}`; mode "stall" reads requests and never
/// answers.
fn worker(mode: &str) -> Result<(), String> {
    if mode == "exit-early" {
        // A child that exits before it attaches (a crash at start-up, a
        // wrong configuration): it never calls `Duplex::from_env`.
        std::process::exit(0);
    }
    let mut server = Duplex::from_env().map_err(|e| e.to_string())?.into_server();
    match mode {
        "json" => server
            .serve(|req| {
                let v: Value = serde_json::from_slice(req).unwrap_or(Value::Null);
                let sum =
                    v["params"][0].as_i64().unwrap_or(0) + v["params"][1].as_i64().unwrap_or(0);
                serde_json::to_vec(&json!({"id": v["id"], "result": sum})).unwrap_or_default()
            })
            .map_err(|e| e.to_string()),
        "stall" => loop {
            server
                .next_request_timeout(LONG)
                .map_err(|e| e.to_string())?;
        },
        other => Err(format!("unknown worker mode {other}")),
    }
}

fn spawn(mode: &str) -> (std::process::Child, Duplex) {
    let exe = std::env::current_exe().unwrap();
    let mut cmd = Command::new(exe);
    cmd.env(WORKER, mode).stdin(Stdio::null());
    process::spawn(&mut cmd, &Builder::new().capacity(256 * 1024)).unwrap()
}

/// 100,000 JSON requests, 32 in flight, to a spawned child: every answer
/// is right and carries its request's id; the rings are memfds, not names
/// in /dev/shm; closing the client lets the child exit 0.
fn child_answers_100k_json_requests() {
    let (mut child, duplex) = spawn("json");
    // The child's inherited descriptors are anonymous memfds.
    let fds = std::fs::read_dir(format!("/proc/{}/fd", child.id())).unwrap();
    let mut memfds = 0;
    for fd in fds.flatten() {
        if let Ok(target) = std::fs::read_link(fd.path()) {
            let t = target.to_string_lossy();
            assert!(!t.starts_with("/dev/shm"), "child holds {t}");
            memfds += t.starts_with("/memfd:shmpipe") as usize;
        }
    }
    assert!(memfds >= 2, "child holds {memfds} shmpipe memfds");
    let mut client = duplex.into_client();
    let total = 100_000u64;
    let (mut sent, mut done) = (0u64, 0u64);
    let mut pending = std::collections::HashMap::new();
    while done < total {
        while sent < total && pending.len() < 32 {
            let body = json!({"jsonrpc": "2.0", "id": sent, "method": "add",
                              "params": [sent as i64, 7], "pad": "x".repeat(100)});
            let id = client
                .send_request(&serde_json::to_vec(&body).unwrap())
                .unwrap();
            pending.insert(id, sent);
            sent += 1;
        }
        let (id, resp) = client.recv_response_timeout(LONG).unwrap();
        let seq = pending
            .remove(&id)
            .expect("a response to a request in flight");
        let v: Value = serde_json::from_slice(&resp).unwrap();
        assert_eq!(v["id"].as_u64(), Some(seq));
        assert_eq!(v["result"].as_i64(), Some(seq as i64 + 7));
        done += 1;
    }
    assert_eq!(client.late_responses(), 0);
    client.close().unwrap();
    let deadline = Instant::now() + LONG;
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "child did not exit");
        std::thread::sleep(Duration::from_millis(5));
    };
    assert!(status.success(), "child: {status}");
}

/// Killing the child ends every pending call with `PeerDied`, promptly.
fn killing_the_child_ends_pending_calls() {
    let (mut child, duplex) = spawn("stall");
    let mut client = duplex.into_client();
    let ids: Vec<u64> = (0..16)
        .map(|i| {
            client
                .send_request(format!("{{\"id\":{i}}}").as_bytes())
                .unwrap()
        })
        .collect();
    std::thread::sleep(Duration::from_millis(50));
    child.kill().unwrap();
    let start = Instant::now();
    for id in ids {
        let r = client.wait_response_timeout(id, LONG);
        assert!(matches!(r, Err(Error::PeerDied)), "{r:?}");
    }
    assert!(start.elapsed() < BOUND, "took {:?}", start.elapsed());
    assert!(matches!(
        client.call_timeout(b"{}", LONG),
        Err(Error::PeerDied)
    ));
    child.wait().unwrap();
}

/// Run `f` on its own thread; fail (instead of hanging the whole binary)
/// if it has not finished within `limit`. A hang guard, not a timing.
fn within(limit: Duration, what: &str, f: impl FnOnce() + Send + 'static) {
    let (tx, rx) = std::sync::mpsc::channel();
    let t = std::thread::spawn(move || {
        f();
        let _ = tx.send(());
    });
    match rx.recv_timeout(limit) {
        Ok(()) => t.join().unwrap(),
        // The thread panicked (its assertion is the failure).
        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
            if let Err(p) = t.join() {
                std::panic::resume_unwind(p)
            }
        }
        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
            panic!("{what}: still blocked after {limit:?}")
        }
    }
}

/// A child that exits before attaching ends the parent's calls with
/// `PeerDied`: a call (was: `Timeout` at its deadline), a send into the
/// full request ring (was: blocked forever), and every later call.
fn child_that_never_attaches_ends_calls_with_peer_died() {
    within(
        Duration::from_secs(120),
        "calls to a child that never attached",
        || {
            let (mut child, duplex) = spawn("exit-early");
            let mut client = duplex.into_client();
            let start = Instant::now();
            let r = client.call_timeout(b"{\"id\":1}", LONG);
            assert!(matches!(r, Err(Error::PeerDied)), "call: {r:?}");
            assert!(start.elapsed() < BOUND, "took {:?}", start.elapsed());
            let r = client.send_request(&[7u8; 1000]);
            assert!(matches!(r, Err(Error::PeerDied)), "{r:?}");
            assert!(child.wait().unwrap().success());
        },
    );
    // Without the rpc layer: the blocking producer fills the ring, then
    // learns of the death; the blocking consumer too.
    within(
        Duration::from_secs(120),
        "blocking ends of a child that never attached",
        || {
            let (mut child, mut duplex) = spawn("exit-early");
            let msg = [1u8; 4096];
            let mut sent = 0u64;
            let err = loop {
                match duplex.tx.send(&msg) {
                    Ok(()) => sent += 1,
                    Err(e) => break e,
                }
            };
            assert!(
                matches!(err, Error::PeerDied),
                "after {sent} sends: {err:?}"
            );
            // 256 KiB ring: it filled up before the death was reported.
            assert!(sent >= 60, "only {sent} sends fit");
            let mut buf = Vec::new();
            let r = duplex.rx.recv(&mut buf);
            assert!(matches!(r, Err(Error::PeerDied)), "recv: {r:?}");
            assert!(child.wait().unwrap().success());
        },
    );
}

/// `spawn` of a program that is not a shmpipe child at all (`false`) and
/// of a path that does not exist: the first ends the parent's calls with
/// `PeerDied`, the second is an `Io` error from `spawn` itself.
fn foreign_or_missing_program() {
    within(Duration::from_secs(120), "calls to `false`", || {
        let (mut child, duplex) =
            process::spawn(&mut Command::new("false"), &Builder::new().capacity(4096)).unwrap();
        let mut client = duplex.into_client();
        let r = client.call_timeout(b"ping", LONG);
        assert!(matches!(r, Err(Error::PeerDied)), "{r:?}");
        assert!(!child.wait().unwrap().success());
    });
    let r = process::spawn(
        &mut Command::new("/nonexistent/shmpipe-worker"),
        &Builder::new().capacity(4096),
    );
    match r {
        Err(Error::Io { ref source, .. }) => {
            assert_eq!(source.raw_os_error(), Some(libc::ENOENT), "{r:?}")
        }
        other => panic!("unexpected {other:?}"),
    }
}

fn memfd(size: u64, seal: bool) -> OwnedFd {
    // SAFETY: literal name; returns a new fd or -1.
    let fd = unsafe {
        libc::memfd_create(
            c"test".as_ptr(),
            libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING,
        )
    };
    assert!(fd >= 0);
    // SAFETY: fresh descriptor owned by nobody else.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let f = std::fs::File::from(fd);
    f.set_len(size).unwrap();
    if seal {
        let seals = libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_SEAL;
        // SAFETY: plain fcntl on our descriptor.
        assert_eq!(
            unsafe {
                libc::fcntl(
                    std::os::fd::AsRawFd::as_raw_fd(&f),
                    libc::F_ADD_SEALS,
                    seals,
                )
            },
            0
        );
    }
    OwnedFd::from(f)
}

/// Descriptors are foreign input: a pipe, an unsealed memfd, a sealed one
/// with a zero or garbage header or a size that does not match, the other
/// variant: each is refused with its own error; a good one opens.
fn inherited_descriptors_are_validated() {
    let expect = |r: shmpipe::Result<shmpipe::Pair>, what: &str, ok: fn(&Error) -> bool| match r {
        Err(e) if ok(&e) => {}
        other => panic!("{what}: unexpected {other:?}"),
    };
    let mut p = [0; 2];
    // SAFETY: valid out-array.
    assert_eq!(unsafe { libc::pipe(p.as_mut_ptr()) }, 0);
    // SAFETY: fresh descriptors owned by nobody else.
    let (r, _w) = unsafe { (OwnedFd::from_raw_fd(p[0]), OwnedFd::from_raw_fd(p[1])) };
    expect(Pair::from_fd(r), "pipe", |e| {
        matches!(e, Error::NotRegularFile)
    });
    let seg = 896 + 4096;
    expect(Pair::from_fd(memfd(seg, false)), "unsealed", |e| {
        matches!(e, Error::Io { .. }) && e.to_string().contains("F_SEAL_SHRINK")
    });
    expect(Pair::from_fd(memfd(seg, true)), "zero header", |e| {
        matches!(e, Error::NotInitialized { .. })
    });
    expect(Pair::from_fd(memfd(100, true)), "short", |e| {
        matches!(e, Error::SizeMismatch { .. })
    });
    // Another uid's descriptor (only root can give it away): refused by
    // the owner check that named opens share.
    // SAFETY: geteuid cannot fail.
    if unsafe { libc::geteuid() } == 0 {
        let theirs = memfd(seg, true);
        std::os::unix::fs::fchown(&theirs, Some(65534), Some(65534)).unwrap();
        expect(Pair::from_fd(theirs), "other owner", |e| {
            matches!(
                e,
                Error::NotOwner {
                    owner: 65534,
                    euid: 0
                }
            )
        });
    } else {
        eprintln!("not root: the NotOwner case of from_fd is covered only when run as root");
    }
    let garbage = memfd(seg, true);
    std::fs::File::from(garbage.try_clone().unwrap())
        .write_all(&[0xee; 64])
        .unwrap();
    expect(Pair::from_fd(garbage), "garbage", |e| {
        matches!(e, Error::NotShmpipe { .. })
    });
    // A real anonymous ring: its descriptor opens, both as this variant and
    // (refused) as the other.
    let pair = Builder::new().capacity(4096).anonymous().unwrap();
    let other = shmpipe::locked::Pair::from_fd(pair.try_clone_fd().unwrap());
    assert!(
        matches!(other, Err(Error::WrongVariant { .. })),
        "{other:?}"
    );
    let again: Pair = Pair::from_fd(pair.try_clone_fd().unwrap()).unwrap();
    let (mut tx, mut rx) = (
        pair.into_producer().unwrap(),
        again.into_consumer().unwrap(),
    );
    tx.send(b"through a passed descriptor").unwrap();
    let mut buf = Vec::new();
    rx.recv(&mut buf).unwrap();
    assert_eq!(buf, b"through a passed descriptor");
    // A heap ring has no descriptor to pass.
    let heap = Builder::new().in_process().unwrap();
    assert!(heap.try_clone_fd().is_err());
}

/// A malformed or missing variable is a clear `InvalidOption`.
fn from_env_rejects_a_bad_variable() {
    for (value, needle) in [
        (None, "not set"),
        (Some("abc"), "descriptor numbers"),
        (Some("1,2"), "above 2"),
        (Some("7,7"), "distinct"),
    ] {
        // SAFETY (of set_var/remove_var): this harness runs its tests one
        // after another on the main thread; no other thread reads the
        // environment meanwhile.
        match value {
            Some(v) => std::env::set_var(process::ENV_VAR, v),
            None => std::env::remove_var(process::ENV_VAR),
        }
        let e = Duplex::from_env().unwrap_err();
        assert!(matches!(e, Error::InvalidOption { .. }), "{e:?}");
        assert!(e.to_string().contains(needle), "{value:?}: {e}");
    }
    std::env::remove_var(process::ENV_VAR);
}

fn main() -> ExitCode {
    if let Ok(mode) = std::env::var(WORKER) {
        return match worker(&mode) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("worker {mode}: {e}");
                ExitCode::FAILURE
            }
        };
    }
    let tests: [(&str, fn()); 6] = [
        (
            "child_that_never_attaches_ends_calls_with_peer_died",
            child_that_never_attaches_ends_calls_with_peer_died,
        ),
        ("foreign_or_missing_program", foreign_or_missing_program),
        (
            "child_answers_100k_json_requests",
            child_answers_100k_json_requests,
        ),
        (
            "killing_the_child_ends_pending_calls",
            killing_the_child_ends_pending_calls,
        ),
        (
            "inherited_descriptors_are_validated",
            inherited_descriptors_are_validated,
        ),
        (
            "from_env_rejects_a_bad_variable",
            from_env_rejects_a_bad_variable,
        ),
    ];
    let filter: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let mut failed = 0;
    for (name, f) in tests {
        if !filter.is_empty() && !filter.iter().any(|p| name.contains(p.as_str())) {
            continue;
        }
        let ok = std::panic::catch_unwind(f).is_ok();
        println!("test {name} ... {}", if ok { "ok" } else { "FAILED" });
        failed += !ok as usize;
    }
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        println!("{failed} test(s) FAILED");
        ExitCode::FAILURE
    }
}
