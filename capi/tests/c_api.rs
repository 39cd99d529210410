//! The C API, tested from C: installs what cargo built for this test run
//! with `capi/install.sh` into a temporary prefix, builds
//! `tests/c/capi_test.c` and the examples with the system `cc` and the
//! installed pkg-config files (`shmpipe-static`: `libshmpipe.a`), and runs
//! them (forked producer/consumer streams, claims, peeks,
//! drains, every error status, a producer killed with SIGKILL), plus
//! interoperation with Rust processes: a C producer read by the `shmpipe read`
//! command, and a Rust producer read by a C consumer. The header is also
//! compiled as C99 and C++17 with `-Wall -Wextra -Werror`.
//!
//! The forked stream moves 1,000,000 messages in all: 125,000 through each of
//! the 8 combinations of wait strategy and variant (a full million per
//! combination took over 40 s on the 2-core CI machine, mostly the locked
//! ring with `Spin`). `SHMPIPE_CAPI_MESSAGES=N` sets the count per combination.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use shmpipe_core::{Builder, LockFree, Locked, Variant};

/// `target/<profile>`: this test binary is `target/<profile>/deps/c_api-*`.
fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    exe.parent()
        .and_then(Path::parent)
        .expect("the test binary lives in target/<profile>/deps")
        .to_path_buf()
}

fn capi_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The C API installed by `capi/install.sh` into a fresh prefix from what
/// cargo built for this test run (`libshmpipe_capi.{a,so}` in the profile
/// directory), once per run: every C program here is built through its
/// pkg-config files, so the flags the README gives are the ones tested.
fn prefix() -> &'static Path {
    static PREFIX: OnceLock<PathBuf> = OnceLock::new();
    PREFIX.get_or_init(|| {
        let prefix = tmp("prefix");
        let _ = std::fs::remove_dir_all(&prefix);
        let out = Command::new("bash")
            .arg(capi_dir().join("install.sh"))
            .arg(&prefix)
            .arg(profile_dir())
            .output()
            .expect("running capi/install.sh");
        assert!(
            out.status.success(),
            "capi/install.sh failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        prefix
    })
}

/// `pkg-config ARGS` against the installed `.pc` files, split into words.
fn pkg_config(args: &[&str]) -> Vec<String> {
    let out = Command::new("pkg-config")
        .env("PKG_CONFIG_PATH", prefix().join("lib/pkgconfig"))
        .args(args)
        .output()
        .expect("running pkg-config (.ci/setup-capi.sh installs it)");
    assert!(
        out.status.success(),
        "pkg-config {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .map(str::to_owned)
        .collect()
}

/// Compile C sources into `out`, linked as `pkg-config --cflags --libs
/// <package>` says (`shmpipe-static`: libshmpipe.a; `shmpipe`: libshmpipe.so).
fn cc_with(package: &str, sources: &[PathBuf], out: &Path) {
    let status = Command::new("cc")
        .args(["-std=c99", "-O2", "-g", "-Wall", "-Wextra", "-Werror"])
        .args(sources)
        .args(pkg_config(&["--cflags", "--libs", package]))
        .arg("-o")
        .arg(out)
        .status()
        .expect("running cc (a C compiler is needed for these tests)");
    assert!(status.success(), "cc failed for {sources:?}");
}

/// Compile C sources into `out` against the static library.
fn cc(sources: &[PathBuf], out: &Path) {
    cc_with("shmpipe-static", sources, out)
}

fn tmp(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(name)
}

/// The C test program, built once per test run.
fn capi_test() -> &'static Path {
    static EXE: OnceLock<PathBuf> = OnceLock::new();
    EXE.get_or_init(|| {
        let out = tmp("capi_test");
        cc(&[capi_dir().join("tests/c/capi_test.c")], &out);
        out
    })
}

/// Run `capi_test ARGS`, expecting success; returns its stderr (the checks count).
fn run(args: &[&str]) -> String {
    let out = Command::new(capi_test())
        .args(args)
        .output()
        .expect("running capi_test");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        out.status.success(),
        "capi_test {args:?} failed ({}):\n{stderr}",
        out.status
    );
    assert!(stderr.contains("checks passed"), "{stderr}");
    stderr
}

const VARIANTS: [&str; 2] = ["lockfree", "locked"];

/// `capi/install.sh` installs the header, `libshmpipe.{a,so}` (named so,
/// although cargo calls them `libshmpipe_capi`) and two pkg-config files;
/// a program linked with `pkg-config --cflags --libs shmpipe` uses the
/// shared library and runs.
#[test]
fn install_and_pkg_config_shared_library() {
    let p = prefix();
    for f in [
        "include/shmpipe.h",
        "lib/libshmpipe.a",
        "lib/libshmpipe.so",
        "lib/pkgconfig/shmpipe.pc",
        "lib/pkgconfig/shmpipe-static.pc",
    ] {
        assert!(
            p.join(f).is_file(),
            "{f} not installed under {}",
            p.display()
        );
    }
    assert_eq!(
        pkg_config(&["--modversion", "shmpipe"]),
        [env!("CARGO_PKG_VERSION")]
    );
    let libdir = pkg_config(&["--variable=libdir", "shmpipe"]).concat();
    let exe = tmp("parent_child_shared");
    let status = Command::new("cc")
        .args(["-std=c99", "-O2", "-Wall", "-Wextra", "-Werror"])
        .arg(capi_dir().join("examples/parent_child.c"))
        .args(pkg_config(&["--cflags", "--libs", "shmpipe"]))
        .arg(format!("-Wl,-rpath,{libdir}"))
        .arg("-o")
        .arg(&exe)
        .status()
        .expect("running cc");
    assert!(status.success());
    // It needs the shared library, found by its installed name through
    // the rpath (cargo test sets LD_LIBRARY_PATH to target/: not that).
    let out = Command::new("ldd")
        .arg(&exe)
        .env_remove("LD_LIBRARY_PATH")
        .output()
        .expect("ldd");
    let ldd = String::from_utf8_lossy(&out.stdout);
    assert!(
        ldd.contains(&format!("{libdir}/libshmpipe.so")),
        "not linked to the installed libshmpipe.so:\n{ldd}"
    );
    let out = Command::new(&exe)
        .env_remove("LD_LIBRARY_PATH")
        .output()
        .expect("running parent_child");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn header_compiles_as_c99_and_cpp17_without_warnings() {
    let src = tmp("header_only.c");
    std::fs::write(
        &src,
        "#include \"shmpipe.h\"\nint main(void) { return shmpipe_version() == 0; }\n",
    )
    .unwrap();
    for (compiler, std) in [("cc", "-std=c99"), ("c++", "-std=c++17")] {
        let mut cmd = Command::new(compiler);
        cmd.args([
            std,
            "-Wall",
            "-Wextra",
            "-Werror",
            "-pedantic",
            "-fsyntax-only",
        ]);
        if compiler == "c++" {
            cmd.args(["-x", "c++"]);
        }
        let out = cmd
            .arg("-I")
            .arg(capi_dir().join("include"))
            .arg(&src)
            .output()
            .expect("running the compiler");
        assert!(
            out.status.success(),
            "{compiler} {std}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn examples_build_and_parent_child_runs() {
    let ex = capi_dir().join("examples");
    for name in ["producer", "consumer", "parent_child"] {
        cc(
            &[ex.join(format!("{name}.c"))],
            &tmp(&format!("example_{name}")),
        );
    }
    let out = Command::new(tmp("example_parent_child"))
        .output()
        .expect("running parent_child");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("child read: shared data"), "{stdout}");

    // The two-process example, as its comment says to run it.
    let name = format!("/shmpipe-capi-example-{}", std::process::id());
    let mut consumer = Command::new(tmp("example_consumer"))
        .arg(&name)
        .stdout(Stdio::piped())
        .spawn()
        .expect("consumer");
    let p = Command::new(tmp("example_producer"))
        .args([name.as_str(), "1000"])
        .output()
        .expect("producer");
    assert!(p.status.success(), "{}", String::from_utf8_lossy(&p.stderr));
    let mut text = String::new();
    consumer
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut text)
        .unwrap();
    assert!(consumer.wait().unwrap().success());
    assert!(text.contains("received 1000 messages"), "{text}");
}

#[test]
fn forked_stream_every_wait_strategy_and_variant() {
    let n: u64 = std::env::var("SHMPIPE_CAPI_MESSAGES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(125_000);
    for v in VARIANTS {
        for w in ["spin", "spin-yield", "futex", "semaphore"] {
            let t = Instant::now();
            run(&["stream", v, w, &n.to_string()]);
            eprintln!("stream {v} {w}: {n} messages in {:.2?}", t.elapsed());
        }
    }
}

#[test]
fn claim_commit_abort_and_misuse() {
    for v in VARIANTS {
        run(&["claim", v]);
    }
}

#[test]
fn peek_release_and_misuse() {
    for v in VARIANTS {
        run(&["peek", v]);
    }
}

#[test]
fn drain_and_reentrant_calls() {
    for v in VARIANTS {
        run(&["drain", v]);
    }
}

#[test]
fn waitset_from_c() {
    for v in VARIANTS {
        run(&["waitset", v]);
    }
}

#[test]
fn every_error_status_reachable_from_c() {
    run(&["errors"]);
}

#[test]
fn peer_died_after_kill_9() {
    for v in VARIANTS {
        run(&["peer-died", v]);
    }
}

// ---- interoperation ----

/// Message `seq` as `capi_test.c` makes it.
fn msg(seq: u64) -> Vec<u8> {
    let len = 12 + ((seq.wrapping_mul(7919)) % 300) as usize;
    let mut m = vec![0u8; len];
    m[..8].copy_from_slice(&seq.to_le_bytes());
    for (k, b) in m.iter_mut().enumerate().take(len - 4).skip(8) {
        *b = (seq.wrapping_mul(131).wrapping_add(k as u64 * 7)) as u8;
    }
    let mut h: u32 = 2166136261;
    for &b in &m[..len - 4] {
        h ^= u32::from(b);
        h = h.wrapping_mul(16777619);
    }
    m[len - 4..].copy_from_slice(&h.to_le_bytes());
    m
}

const INTEROP_MESSAGES: u64 = 20_000;

/// The `shmpipe` command, if this test run built it (`cargo test
/// --workspace` builds it for the CLI's own tests).
fn cli() -> Option<PathBuf> {
    let p = profile_dir().join("shmpipe");
    p.is_file().then_some(p)
}

#[test]
fn c_producer_read_by_the_shmpipe_command() {
    let expected: Vec<u8> = (0..INTEROP_MESSAGES).flat_map(msg).collect();
    for v in VARIANTS {
        let name = format!("/shmpipe-capi-interop-{v}-{}", std::process::id());
        let mut producer = Command::new(capi_test())
            .args(["produce", &name, &INTEROP_MESSAGES.to_string(), v])
            .stdout(Stdio::piped())
            .spawn()
            .expect("capi_test produce");
        let mut line = String::new();
        BufReader::new(producer.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line, "ready\n");
        let got = match cli() {
            Some(cli) => {
                let out = Command::new(cli)
                    .args(["read", &name, "--timeout", "30"])
                    .output()
                    .expect("shmpipe read");
                assert!(
                    out.status.success(),
                    "shmpipe read: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
                out.stdout
            }
            None => {
                eprintln!(
                    "the shmpipe command was not built in this run (it is with `cargo test \
                     --workspace`): reading {name} with the library instead"
                );
                let got = if v == "locked" {
                    read_all::<Locked>(&name)
                } else {
                    read_all::<LockFree>(&name)
                };
                shmpipe_core::remove(&name).unwrap();
                got
            }
        };
        assert!(producer.wait().unwrap().success());
        assert_eq!(got.len(), expected.len(), "{v}: bytes read");
        assert!(got == expected, "{v}: the bytes differ");
        assert!(
            matches!(
                shmpipe_core::inspect(&name),
                Err(shmpipe_core::Error::NotFound { .. })
            ),
            "the reader removes the segment after an orderly close"
        );
    }
}

/// Everything the ring `name` carries until its producer closes, concatenated
/// (what `shmpipe read` writes to stdout).
fn read_all<V: Variant>(name: &str) -> Vec<u8> {
    let mut c = Builder::<V>::default()
        .open_consumer(name)
        .expect("open_consumer");
    let mut all = Vec::new();
    let mut buf = Vec::new();
    loop {
        match c.recv_timeout(&mut buf, Duration::from_secs(30)) {
            Ok(_) => all.extend_from_slice(&buf),
            Err(shmpipe_core::Error::Disconnected) => return all,
            Err(e) => panic!("recv: {e}"),
        }
    }
}

#[test]
fn rust_producer_read_by_a_c_consumer() {
    fn with<V: Variant>(v: &str) {
        let name = format!("/shmpipe-capi-rust2c-{v}-{}", std::process::id());
        let mut p = Builder::<V>::default()
            .capacity(1 << 16)
            .create_producer(&name)
            .expect("create_producer");
        let mut consumer = Command::new(capi_test())
            .args(["consume", &name, &INTEROP_MESSAGES.to_string(), v])
            .stderr(Stdio::piped())
            .spawn()
            .expect("capi_test consume");
        for seq in 0..INTEROP_MESSAGES {
            let m = msg(seq);
            if seq % 2 == 0 {
                p.send_timeout(&m, Duration::from_secs(30)).expect("send");
            } else {
                let mut c = p
                    .claim_timeout(m.len(), Duration::from_secs(30))
                    .expect("claim");
                c.copy_from_slice(&m);
                c.commit();
            }
        }
        p.close().expect("close");
        let mut err = String::new();
        consumer
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut err)
            .unwrap();
        assert!(consumer.wait().unwrap().success(), "{v}: {err}");
        assert!(err.contains("checks passed"), "{err}");
    }
    with::<LockFree>("lockfree");
    with::<Locked>("locked");
}
