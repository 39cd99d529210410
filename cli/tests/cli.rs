//! Argument handling, error paths, and the segment commands (inspect, ls, rm).

mod common;

use std::os::unix::fs::PermissionsExt;

use common::*;

const SUBCOMMANDS: [&str; 7] = ["write", "read", "inspect", "ls", "rm", "stress", "bench"];

#[test]
fn help_works_for_every_subcommand() {
    let o = run0(&["--help"]);
    assert_code(&o, 0);
    for sub in SUBCOMMANDS {
        assert!(o.stdout_str().contains(sub), "top-level help lists {sub}");
    }
    assert!(o.stdout_str().contains("Exit status"));
    for sub in SUBCOMMANDS {
        for flag in ["--help", "-h"] {
            let o = run0(&[sub, flag]);
            assert_code(&o, 0);
            let text = o.stdout_str();
            assert!(
                text.contains(&format!("Usage: shmpipe {sub}")),
                "{sub} {flag}: {text}"
            );
        }
        let o = run0(&["help", sub]);
        assert_code(&o, 0);
    }
}

#[test]
fn usage_errors_exit_2() {
    assert_usage(&run0(&[]), "Usage");
    assert_usage(&run0(&["frobnicate"]), "unrecognized subcommand");
    assert_usage(&run0(&["write"]), "NAME");
    assert_usage(&run0(&["inspect", "/x", "--bogus"]), "--bogus");
    assert_usage(&run0(&["rm"]), "NAME");
}

#[test]
fn bad_names_are_usage_errors() {
    let long = format!("/{}", "a".repeat(256));
    for name in ["noslash", "/", "/a/b", "/..", "/.", long.as_str()] {
        for sub in ["write", "read", "inspect", "rm"] {
            let o = run0(&[sub, name]);
            assert_usage(&o, "invalid segment name");
        }
    }
}

#[test]
fn bad_sizes_and_values_are_usage_errors() {
    let seg = Seg::new("badsize");
    let n = seg.name.as_str();
    for sub in ["write", "read"] {
        assert_usage(&run0(&[sub, n, "--capacity", "1000"]), "power of two");
        assert_usage(&run0(&[sub, n, "--capacity", "8GiB"]), "4GiB");
        assert_usage(&run0(&[sub, n, "--capacity", "32"]), "power of two");
        assert_usage(&run0(&[sub, n, "--capacity", "1KB"]), "decimal");
        assert_usage(&run0(&[sub, n, "--capacity", "lots"]), "KiB");
        assert_usage(
            &run0(&[sub, n, "--capacity", "99999999999GiB"]),
            "too large",
        );
        assert_usage(&run0(&[sub, n, "--wait", "sometimes"]), "spin-yield");
        assert_usage(&run0(&[sub, n, "--variant", "wobbly"]), "lockfree");
        assert_usage(&run0(&[sub, n, "--timeout", "0"]), "above 0");
        assert_usage(&run0(&[sub, n, "--timeout", "soon"]), "seconds");
    }
    assert_usage(
        &run0(&["write", n, "--capacity", "4KiB", "--message-size", "4KiB"]),
        "largest message",
    );
    assert_usage(&run0(&["write", n, "--message-size", "0"]), "at least 1");
    assert_usage(&run0(&["stress", "--size-range", "8..16"]), "at least 16");
    assert_usage(
        &run0(&["stress", "--size-range", "16..1MiB"]),
        "largest message",
    );
    assert_usage(
        &run0(&["stress", "--size-range", "64..32"]),
        "above the largest",
    );
    assert_usage(&run0(&["stress", "--messages", "0"]), "--messages");
    assert_usage(
        &run0(&["stress", "--messages", "5", "--seconds", "1"]),
        "cannot be used with",
    );
    assert_usage(&run0(&["stress", "--capacity", "100"]), "power of two");
    // Nothing was created by any of these.
    assert!(!seg.exists());
}

#[test]
fn missing_segment() {
    let seg = Seg::new("missing");
    assert_fails(&run0(&["inspect", &seg.name]), "no such segment");
    assert_fails(&run0(&["rm", &seg.name]), "no such segment");
    assert_fails(&run0(&["rm", "--force", &seg.name]), "no such segment");
    let o = run0(&["ls", "--json"]);
    assert_code(&o, 0);
    assert!(!o.stdout_str().contains(&seg.name));
}

/// Write `bytes` as the object behind `seg`, mode 0600.
fn plant(seg: &Seg, bytes: &[u8]) {
    std::fs::write(seg.path(), bytes).unwrap();
    std::fs::set_permissions(seg.path(), std::fs::Permissions::from_mode(0o600)).unwrap();
}

fn ls_names() -> Vec<(String, String)> {
    let o = run0(&["ls", "--json"]);
    assert_code(&o, 0);
    o.json()
        .as_array()
        .expect("ls --json prints an array")
        .iter()
        .map(|e| {
            (
                e["name"].as_str().unwrap().to_string(),
                e["status"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[test]
fn non_shmpipe_files_are_refused_and_left_alone() {
    let big = Seg::new("garbage");
    let small = Seg::new("tiny");
    let zeros = Seg::new("zeros");
    let garbage = random_bytes(8192, 42);
    plant(&big, &garbage);
    plant(&small, b"hello, not a ring");
    plant(&zeros, &[0u8; 4096]);
    for (seg, needle) in [
        (&big, "not a shmpipe segment"),
        (&small, "size"),
        (&zeros, "not initialised"),
    ] {
        let n = seg.name.as_str();
        assert_fails(&run0(&["inspect", n]), needle);
        assert_fails(&run0(&["inspect", "--json", n]), needle);
        assert_fails(&run0(&["rm", n]), "--force");
        assert_fails(&run(&["write", n], b"data"), n);
        assert_fails(&run0(&["read", n, "--timeout", "5"]), n);
        assert!(seg.exists(), "{n} must not be removed");
    }
    assert_eq!(
        std::fs::read(big.path()).unwrap(),
        garbage,
        "content untouched"
    );
    let listed = ls_names();
    for seg in [&big, &small, &zeros] {
        assert!(
            !listed.iter().any(|(n, _)| *n == seg.name),
            "ls skips {}",
            seg.name
        );
    }
    let o = run0(&["rm", "--force", &big.name, &small.name, &zeros.name]);
    assert_code(&o, 0);
    assert!(!big.exists() && !small.exists() && !zeros.exists());
}

/// A valid, idle segment made by `shmpipe write` (it stays after write exits).
fn make_segment(seg: &Seg, extra: &[&str], data: &[u8]) {
    let mut args = vec!["write", seg.name.as_str()];
    args.extend_from_slice(extra);
    let o = run(&args, data);
    assert_code(&o, 0);
    assert!(seg.exists());
}

#[test]
fn damaged_segments() {
    let good = Seg::new("good");
    make_segment(&good, &["--capacity", "4KiB"], b"payload");
    let image = std::fs::read(good.path()).unwrap();
    assert_eq!(image.len(), 896 + 4096);
    assert_eq!(&image[..8], b"SHMPIPE\0");

    // Truncated: the header declares more than the file holds.
    let trunc = Seg::new("trunc");
    plant(&trunc, &image[..2000]);
    // Magic destroyed.
    let magic = Seg::new("magic");
    let mut m = image.clone();
    m[..4].copy_from_slice(b"XXXX");
    plant(&magic, &m);
    // Magic intact, capacity field garbage.
    let cap = Seg::new("capfield");
    let mut c = image.clone();
    c[24..32].copy_from_slice(&1000u64.to_le_bytes());
    plant(&cap, &c);
    // Magic written, version not yet published: creation never finished.
    let half = Seg::new("half");
    let mut h = image.clone();
    h[8..12].copy_from_slice(&0u32.to_le_bytes());
    plant(&half, &h);
    // Magic intact, unknown format version.
    let ver = Seg::new("version");
    let mut v = image.clone();
    v[8..12].copy_from_slice(&99u32.to_le_bytes());
    plant(&ver, &v);

    assert_fails(&run0(&["inspect", &trunc.name]), "size");
    assert_fails(&run0(&["inspect", &magic.name]), "not a shmpipe segment");
    assert_fails(&run0(&["inspect", &cap.name]), "capacity");
    assert_fails(&run0(&["inspect", &ver.name]), "version 99");
    assert_fails(&run0(&["inspect", &half.name]), "not initialised");
    for seg in [&trunc, &magic, &cap, &ver, &half] {
        assert_fails(&run0(&["read", &seg.name, "--timeout", "5"]), &seg.name);
        assert_fails(&run(&["write", &seg.name], b"x"), &seg.name);
        assert!(seg.exists());
    }

    // ls: damaged shmpipe segments are listed as such, the non-shmpipe one is not.
    let listed = ls_names();
    let status = |s: &Seg| {
        listed
            .iter()
            .find(|(n, _)| *n == s.name)
            .map(|(_, st)| st.clone())
    };
    assert_eq!(status(&good).as_deref(), Some("ok"));
    assert_eq!(status(&trunc).as_deref(), Some("damaged"));
    assert_eq!(status(&cap).as_deref(), Some("damaged"));
    assert_eq!(status(&ver).as_deref(), Some("damaged"));
    assert_eq!(status(&half).as_deref(), Some("incomplete"));
    assert_eq!(status(&magic), None);
    let text = run0(&["ls"]);
    assert_code(&text, 0);
    assert!(text
        .stdout_str()
        .lines()
        .any(|l| l.starts_with(&format!("{} ", trunc.name)) && l.contains(" damaged: ")));

    // rm: a truncated one and a non-shmpipe one are refused; damaged headers
    // that carry the magic word are removed.
    assert_fails(&run0(&["rm", &trunc.name]), "--force");
    assert_fails(&run0(&["rm", &magic.name]), "not a shmpipe segment");
    assert!(trunc.exists() && magic.exists());
    assert_code(&run0(&["rm", &cap.name]), 0);
    assert_code(&run0(&["rm", &ver.name, &half.name]), 0);
    assert!(!cap.exists() && !ver.exists() && !half.exists());
    assert_code(&run0(&["rm", "-f", &trunc.name, &magic.name]), 0);
    assert!(!trunc.exists() && !magic.exists());
}

#[test]
fn inspect_reports_header_counters_and_endpoints() {
    let seg = Seg::new("inspect");
    make_segment(&seg, &[], b"hello");
    let o = run0(&["inspect", &seg.name]);
    assert_code(&o, 0);
    let text = o.stdout_str();
    for needle in [
        "lockfree",
        "futex",
        "1MiB (1048576 bytes)",
        "largest message 524280 bytes",
        "producer:       closed",
        "consumer:       never attached",
        "1 sent, 0 received, 1 in flight",
        "5 sent",
    ] {
        assert!(text.contains(needle), "inspect shows {needle:?}:\n{text}");
    }
    let j = inspect(&seg.name).unwrap();
    assert_eq!(j["name"], seg.name.as_str());
    assert_eq!(j["variant"], "lockfree");
    assert_eq!(j["wait"], "futex");
    assert_eq!(j["capacity"], 1 << 20);
    assert_eq!(j["size"], 896 + (1 << 20));
    assert_eq!(j["mode"], "0600");
    assert_eq!(j["max_message"], (1 << 19) - 8);
    assert_eq!(j["messages_sent"], 1);
    assert_eq!(j["bytes_sent"], 5);
    assert_eq!(j["messages_received"], 0);
    assert_eq!(j["used_bytes"], 16);
    assert_eq!(j["producer"]["state"], "closed");
    assert_eq!(j["producer"]["alive"], false);
    assert_eq!(j["consumer"]["state"], "never");

    // inspect did not attach: the reader still gets the message.
    let r = run0(&["read", &seg.name]);
    assert_code(&r, 0);
    assert_eq!(r.stdout, b"hello");
    assert!(
        !seg.exists(),
        "read removes the segment after an orderly close"
    );
}

#[test]
fn inspect_shows_creation_options() {
    let seg = Seg::new("opts");
    make_segment(
        &seg,
        &[
            "--capacity",
            "64K",
            "--wait",
            "semaphore",
            "--variant",
            "locked",
        ],
        b"abc",
    );
    let j = inspect(&seg.name).unwrap();
    assert_eq!(j["variant"], "locked");
    assert_eq!(j["wait"], "semaphore");
    assert_eq!(j["capacity"], 65536);
    let o = run0(&["inspect", &seg.name]);
    assert!(o.stdout_str().contains("lock repairs"));
    // Listed by ls with the same fields.
    let o = run0(&["ls", "--json"]);
    let all = o.json();
    let e = all
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == seg.name.as_str())
        .expect("ls lists the segment");
    assert_eq!(e["variant"], "locked");
    assert_eq!(e["capacity"], 65536);
    let o = run0(&["ls"]);
    let line = o
        .stdout_str()
        .lines()
        .find(|l| l.starts_with(&seg.name))
        .map(str::to_owned)
        .expect("ls text lists the segment");
    assert!(line.contains("locked") && line.contains("semaphore") && line.contains("64KiB"));
    // A reader detects the variant by itself; an explicit wrong one is refused.
    assert_fails(
        &run0(&["read", &seg.name, "--variant", "lockfree"]),
        "--variant locked",
    );
    assert_fails(
        &run(&["write", &seg.name, "--variant", "lockfree"], b"x"),
        "--variant locked",
    );
    let r = run0(&["read", &seg.name]);
    assert_code(&r, 0);
    assert_eq!(r.stdout, b"abc");
}

#[test]
fn rm_removes_segments() {
    let a = Seg::new("rm-a");
    let b = Seg::new("rm-b");
    make_segment(&a, &[], b"1");
    make_segment(&b, &["--variant", "locked"], b"2");
    assert_code(&run0(&["rm", &a.name]), 0);
    assert!(!a.exists() && b.exists());
    // Several at once; one missing makes the whole command fail, the rest go.
    let c = Seg::new("rm-c");
    let o = run0(&["rm", &b.name, &c.name]);
    assert_fails(&o, "1 of 2");
    assert!(o.stderr.contains("no such segment"));
    assert!(!b.exists());
}

#[test]
fn read_timeout_without_writer() {
    let seg = Seg::new("rtimeout");
    let o = run0(&["read", &seg.name, "--timeout", "0.3"]);
    assert_fails(&o, "no data");
    assert!(o.stdout.is_empty());
    assert!(!seg.exists(), "a segment no writer ever used is removed");
}

#[test]
fn write_timeout_abandons_and_reader_sees_incomplete_transfer() {
    let seg = Seg::new("wtimeout");
    let input = random_bytes(64 * 1024, 7);
    let o = run(
        &[
            "write",
            &seg.name,
            "--capacity",
            "16KiB",
            "--timeout",
            "0.3",
        ],
        &input,
    );
    assert_fails(&o, "stayed full");
    let j = inspect(&seg.name).unwrap();
    let committed = j["bytes_sent"].as_u64().unwrap() as usize;
    assert!(committed > 0 && committed < input.len());
    // The writer gave up without closing: the reader gets every committed
    // byte, then reports the transfer incomplete (exit 1), not a clean end.
    let r = run0(&["read", &seg.name, "--timeout", "20"]);
    assert_fails(&r, "died without closing");
    assert_eq!(r.stdout.len(), committed);
    assert_eq!(r.stdout[..], input[..committed]);
    assert!(seg.exists(), "kept after a failed transfer");
}
