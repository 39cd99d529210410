//! What the command says to a new user: long help texts, negative and
//! fractional numbers, output paths checked before a bench, `ls` with long
//! names, `inspect --json` status and holder PIDs, and open-time errors that
//! name the segment and say what the file is.

mod common;

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::process::Stdio;

use common::*;

#[test]
fn long_help_shows_each_subcommands_own_text() {
    // (subcommand, a phrase only its long text has)
    let cases = [
        ("write", "leaves the producer side unclosed"),
        ("read", "released from the ring only once it was written"),
        ("inspect", "Reads the header without attaching"),
        ("ls", "recognised by their header"),
        ("rm", "is refused unless --force"),
        ("stress", "exact accounting"),
    ];
    for (sub, phrase) in cases {
        let long = run0(&[sub, "--help"]);
        assert_code(&long, 0);
        let text = long.stdout_str().replace('\n', " ");
        assert!(
            text.contains(phrase),
            "{sub} --help lacks {phrase:?}: {text}"
        );
        let short = run0(&[sub, "-h"]);
        assert!(
            !short.stdout_str().contains(phrase),
            "{sub} -h shows only the summary"
        );
    }
}

#[test]
fn negative_numbers_get_a_proper_message() {
    let seg = Seg::new("neg");
    let n = seg.name.as_str();
    for (args, needle) in [
        (vec!["write", n, "-c", "-5"], "a size cannot be negative"),
        (
            vec!["read", n, "--capacity", "-64"],
            "a size cannot be negative",
        ),
        (
            vec!["write", n, "--message-size", "-1"],
            "a size cannot be negative",
        ),
        (vec!["read", n, "--timeout", "-2"], "must be above 0"),
        (vec!["stress", "-n", "-5"], "the count cannot be negative"),
        (
            vec!["stress", "--size-range", "-16..32"],
            "a size cannot be negative",
        ),
        (vec!["bench", "--sizes", "-64"], "a size cannot be negative"),
    ] {
        let o = run0(&args);
        assert_usage(&o, needle);
        assert!(
            !o.stderr.contains("to pass '-"),
            "clap's wrong tip: {}",
            o.stderr
        );
    }
    assert!(!seg.exists());
}

#[test]
fn fractional_sizes() {
    let seg = Seg::new("frac");
    // 1.5KiB = 1536 bytes: a valid message size.
    let w = run(&["write", &seg.name, "--message-size", "1.5K"], b"x");
    assert_code(&w, 0);
    let r = run0(&["read", &seg.name]);
    assert_code(&r, 0);
    assert_eq!(r.stdout, b"x");
    // Not a whole number of bytes: say so.
    assert_usage(
        &run0(&["write", &seg.name, "--message-size", "1.3K"]),
        "not a whole number of bytes",
    );
    // A whole number of bytes, but not a power of two: the capacity rule.
    assert_usage(&run0(&["write", &seg.name, "-c", "1.5M"]), "power of two");
    assert_usage(&run0(&["write", &seg.name, "-c", "1.5.M"]), "is not a size");
}

#[test]
fn bench_output_paths_are_checked_before_measuring() {
    let dir = tempfile::tempdir().unwrap();
    for flag in ["--json", "--plot"] {
        let bad = dir.path().join("missing-dir").join("out");
        let o = run0(&[
            "bench",
            "--quick",
            "--sizes",
            "64",
            flag,
            bad.to_str().unwrap(),
        ]);
        assert_fails(&o, "nothing was measured");
        assert!(o.stderr.contains("missing-dir"), "{}", o.stderr);
        assert!(
            o.stdout.is_empty(),
            "no table was printed: {}",
            o.stdout_str()
        );
    }
}

#[test]
fn ls_puts_long_names_on_their_own_line() {
    let long = Seg::new(&"l".repeat(200));
    let short = Seg::new("s");
    for s in [&long, &short] {
        assert_code(&run(&["write", &s.name], b"data"), 0);
    }
    let o = run0(&["ls"]);
    assert_code(&o, 0);
    let text = o.stdout_str();
    let lines: Vec<&str> = text.lines().collect();
    let i = lines
        .iter()
        .position(|l| *l == long.name)
        .unwrap_or_else(|| panic!("the long name alone on a line:\n{text}"));
    assert!(
        lines[i + 1].contains("lockfree"),
        "its row follows: {}",
        lines[i + 1]
    );
    let row = lines.iter().find(|l| l.starts_with(&short.name)).unwrap();
    assert!(row.len() < 120, "short rows stay narrow: {row:?}");
    let header = lines.iter().find(|l| l.starts_with("NAME")).unwrap();
    assert!(header.len() < 120, "{header:?}");
}

#[test]
fn inspect_json_has_status_and_holder_pids() {
    let seg = Seg::new("pids");
    let mut w = spawn(&["write", &seg.name], Stdio::piped());
    let mut stdin = w.child.stdin.take().unwrap();
    w.wait_until("the writer to attach", |_| {
        inspect(&seg.name).is_some_and(|j| j["producer"]["status"] == "alive")
    });
    let j = inspect(&seg.name).unwrap();
    assert_eq!(j["status"], "ok");
    assert_eq!(j["producer"]["pids"], serde_json::json!([w.child.id()]));
    assert_eq!(j["consumer"]["pids"], serde_json::json!([]));
    let text = run0(&["inspect", &seg.name]).stdout_str();
    assert!(text.contains(&format!("(pid {})", w.child.id())), "{text}");
    // ls --json rows carry the same keys.
    let all = run0(&["ls", "--json"]).json();
    let row = all
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == seg.name.as_str())
        .unwrap()
        .clone();
    assert_eq!(row["status"], "ok");
    assert!(row["producer"]["pids"].is_array());
    stdin.write_all(b"x").unwrap();
    drop(stdin);
    assert_code(&w.finish(), 0);
    let j = inspect(&seg.name).unwrap();
    assert_eq!(
        j["producer"]["pids"],
        serde_json::json!([]),
        "closed: no holder"
    );
}

#[test]
fn open_errors_name_the_segment_and_the_file() {
    let seg = Seg::new("nf");
    for sub in ["inspect", "rm"] {
        let o = run0(&[sub, &seg.name]);
        assert_fails(&o, &format!("{}: no such segment", seg.name));
    }
    // An empty file, group-readable: say what it is, with its mode.
    std::fs::write(seg.path(), b"").unwrap();
    std::fs::set_permissions(seg.path(), std::fs::Permissions::from_mode(0o644)).unwrap();
    for args in [
        vec!["inspect", seg.name.as_str()],
        vec!["read", seg.name.as_str()],
    ] {
        let o = run0(&args);
        assert_fails(&o, &format!("{}: an empty file (mode 0644", seg.name));
        assert!(
            !o.stderr.contains("within"),
            "no misleading wait time: {}",
            o.stderr
        );
    }
    let o = run0(&["rm", &seg.name]);
    assert_fails(&o, &format!("{}: not removed: an empty file", seg.name));
    assert!(o.stderr.contains("--force"), "{}", o.stderr);
    // Too small for a header, no magic word.
    std::fs::write(seg.path(), b"hello").unwrap();
    std::fs::set_permissions(seg.path(), std::fs::Permissions::from_mode(0o600)).unwrap();
    let o = run0(&["inspect", &seg.name]);
    assert_fails(&o, &format!("{}: a 5-byte file", seg.name));
    assert!(
        o.stderr.contains("too small for a shmpipe segment"),
        "{}",
        o.stderr
    );
    assert!(seg.exists(), "left alone");
}
