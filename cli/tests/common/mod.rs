//! Helpers for the CLI tests: unique segment names that clean up after
//! themselves, and child processes with a deadline (a test never hangs).

#![allow(dead_code)]

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Generous bound for any single command.
pub const DEADLINE: Duration = Duration::from_secs(60);

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_shmpipe")
}

/// A segment name unique to this test process and call, removed on drop.
pub struct Seg {
    pub name: String,
}

impl Seg {
    pub fn new(tag: &str) -> Seg {
        static N: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "/shmpipe-clitest-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        );
        let seg = Seg { name };
        let _ = std::fs::remove_file(seg.path());
        seg
    }

    pub fn path(&self) -> PathBuf {
        PathBuf::from(format!("/dev/shm{}", self.name))
    }

    pub fn exists(&self) -> bool {
        self.path().exists()
    }
}

impl Drop for Seg {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(self.path());
    }
}

/// Deterministic pseudo-random bytes.
pub fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut s = seed;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        s = s.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = s;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        out.extend_from_slice(&(z ^ (z >> 31)).to_le_bytes());
    }
    out.truncate(len);
    out
}

/// What a finished command left behind.
#[derive(Debug)]
pub struct Out {
    pub status: ExitStatus,
    pub stdout: Vec<u8>,
    pub stderr: String,
}

impl Out {
    pub fn code(&self) -> Option<i32> {
        self.status.code()
    }
    pub fn stdout_str(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {}", self.stdout_str()))
    }
}

/// A running `shmpipe` whose stdout and stderr are collected by threads.
pub struct Running {
    pub child: Child,
    /// Everything read from stdout so far.
    pub stdout: Arc<Mutex<Vec<u8>>>,
    out_thread: Option<JoinHandle<()>>,
    err_thread: Option<JoinHandle<Vec<u8>>>,
    args: String,
}

fn collect(mut r: impl Read + Send + 'static, into: Arc<Mutex<Vec<u8>>>) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 1 << 16];
        loop {
            match r.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => into.lock().unwrap().extend_from_slice(&buf[..n]),
            }
        }
    })
}

/// Start `shmpipe ARGS` with the given stdin.
pub fn spawn(args: &[&str], stdin: Stdio) -> Running {
    spawn_opts(args, stdin, true)
}

/// Start `shmpipe ARGS`; if `keep_stdout` is false, the read end of its
/// stdout pipe is closed at once (its writes fail with EPIPE).
pub fn spawn_opts(args: &[&str], stdin: Stdio, keep_stdout: bool) -> Running {
    let mut child = Command::new(bin())
        .args(args)
        .stdin(stdin)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn shmpipe");
    let stdout = Arc::new(Mutex::new(Vec::new()));
    let out = child.stdout.take().unwrap();
    let out_thread = if keep_stdout {
        Some(collect(out, stdout.clone()))
    } else {
        drop(out);
        None
    };
    let mut err = child.stderr.take().unwrap();
    let err_thread = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = err.read_to_end(&mut v);
        v
    });
    Running {
        child,
        stdout,
        out_thread,
        err_thread: Some(err_thread),
        args: args.join(" "),
    }
}

impl Running {
    pub fn stdout_len(&self) -> usize {
        self.stdout.lock().unwrap().len()
    }

    /// Wait until `cond` holds (polling), or fail the test after `DEADLINE`.
    pub fn wait_until(&mut self, what: &str, mut cond: impl FnMut(&mut Running) -> bool) {
        let start = Instant::now();
        while !cond(self) {
            if start.elapsed() > DEADLINE {
                let _ = self.child.kill();
                panic!("timed out waiting for {what} (shmpipe {})", self.args);
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Wait for the process to end (killing it and failing after `DEADLINE`).
    pub fn finish(mut self) -> Out {
        let start = Instant::now();
        let status = loop {
            if let Some(s) = self.child.try_wait().expect("try_wait") {
                break s;
            }
            if start.elapsed() > DEADLINE {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!("shmpipe {} did not finish within {DEADLINE:?}", self.args);
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        if let Some(t) = self.out_thread.take() {
            let _ = t.join();
        }
        let stderr = self.err_thread.take().map(|t| t.join().unwrap_or_default());
        let stdout = std::mem::take(&mut *self.stdout.lock().unwrap());
        Out {
            status,
            stdout,
            stderr: String::from_utf8_lossy(&stderr.unwrap_or_default()).into_owned(),
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        // A test that panicked half-way must not leave a process behind.
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Start `shmpipe ARGS`, feeding `input` to its stdin from a thread.
pub fn spawn_with_input(args: &[&str], input: Vec<u8>) -> Running {
    let mut r = spawn(args, Stdio::piped());
    let mut stdin = r.child.stdin.take().unwrap();
    std::thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    r
}

/// Run `shmpipe ARGS` with `input` on stdin, to completion.
pub fn run(args: &[&str], input: &[u8]) -> Out {
    spawn_with_input(args, input.to_vec()).finish()
}

/// Run `shmpipe ARGS` with an empty stdin, to completion.
pub fn run0(args: &[&str]) -> Out {
    spawn(args, Stdio::null()).finish()
}

/// `shmpipe inspect --json NAME`, or None if it fails.
pub fn inspect(name: &str) -> Option<serde_json::Value> {
    let o = run0(&["inspect", "--json", name]);
    (o.code() == Some(0)).then(|| o.json())
}

#[track_caller]
pub fn assert_code(o: &Out, code: i32) {
    assert_eq!(
        o.code(),
        Some(code),
        "expected exit status {code}; stderr: {}\nstdout: {}",
        o.stderr,
        o.stdout_str()
    );
}

/// A failure: exit status 1 and one `shmpipe: ...` line on stderr containing `needle`.
#[track_caller]
pub fn assert_fails(o: &Out, needle: &str) {
    assert_code(o, 1);
    assert!(
        o.stderr.starts_with("shmpipe: "),
        "stderr should start with 'shmpipe: ': {}",
        o.stderr
    );
    assert!(
        o.stderr.contains(needle),
        "stderr should mention {needle:?}: {}",
        o.stderr
    );
    assert!(!o.stderr.contains("panicked"), "panic: {}", o.stderr);
}

/// A usage error: exit status 2, stderr containing `needle`.
#[track_caller]
pub fn assert_usage(o: &Out, needle: &str) {
    assert_code(o, 2);
    assert!(
        o.stderr.contains(needle),
        "stderr should mention {needle:?}: {}",
        o.stderr
    );
}
