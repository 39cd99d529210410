//! The real command line at both ends: `shmpipe write` -> `out` -> zenoh ->
//! `in` -> `shmpipe read`, bytes compared. Uses the `shmpipe` binary built
//! next to this one (`cargo test --workspace` builds it) or `$SHMPIPE_CLI`;
//! skips with a message where there is none.

mod common;

use std::fs;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;

fn cli() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("SHMPIPE_CLI") {
        return Some(PathBuf::from(p));
    }
    let p = std::path::Path::new(BIN).parent()?.join("shmpipe");
    p.exists().then_some(p)
}

#[test]
fn shmpipe_write_to_shmpipe_read_across_the_bridge() {
    let Some(shmpipe) = cli() else {
        eprintln!("SKIPPED: no shmpipe binary next to {BIN} (run under `cargo test --workspace`, or set SHMPIPE_CLI)");
        return;
    };
    let tx = format!("/{}", unique("tx"));
    let rx = format!("/{}", unique("rx"));
    let key = format!("test/{}", unique("key"));
    let listen = format!("tcp/127.0.0.1:{}", free_port());
    let dir = std::env::temp_dir();
    let input = dir.join(format!("{}.in", unique("cli")));
    let output = dir.join(format!("{}.out", unique("cli")));
    // 16 MiB of bytes that differ everywhere.
    let mut data = vec![0u8; 16 << 20];
    fill(0, 9, &mut data);
    fs::write(&input, &data).expect("write input");
    let mut reader = Command::new(&shmpipe)
        .args(["read", &rx])
        .stdout(fs::File::create(&output).expect("output"))
        .stderr(Stdio::piped())
        .spawn()
        .expect("shmpipe read");
    let mut inb = Bridge::start(None, &["in", &key, &rx, "--listen", &listen], &unique("in"));
    let mut out = Bridge::start(
        None,
        &["out", &tx, &key, "--connect", &listen],
        &unique("out"),
    );
    let w = Command::new(&shmpipe)
        .args(["write", &tx])
        .stdin(fs::File::open(&input).expect("input"))
        .output()
        .expect("shmpipe write");
    assert!(
        w.status.success(),
        "shmpipe write: {}",
        String::from_utf8_lossy(&w.stderr)
    );
    let so = out.wait(Duration::from_secs(60));
    let si = inb.wait(Duration::from_secs(60));
    let r = reader.wait().expect("shmpipe read");
    let (eo, ei) = (out.stderr(), inb.stderr());
    assert!(so.success(), "{eo}");
    assert!(si.success(), "{ei}");
    assert!(r.success(), "shmpipe read failed");
    let got = fs::read(&output).expect("read output");
    let _ = fs::remove_file(&input);
    let _ = fs::remove_file(&output);
    // `shmpipe write` leaves its segment for a later reader; `out` removed
    // it once the writer had closed and everything was published.
    let left = std::path::Path::new("/dev/shm").join(&tx[1..]).exists();
    let _ = shmpipe_rm(&shmpipe, &tx);
    assert!(!left, "out left the drained source ring {tx}\n{eo}");
    assert!(eo.contains(&format!("removed {tx}")), "{eo}");
    assert_eq!(
        got.len(),
        data.len(),
        "bytes through the bridge\n{eo}\n{ei}"
    );
    assert!(got == data, "the bytes differ");
    assert_eq!(stat(&ei, "missing"), Some(0), "{ei}");
}

/// Remove a segment (if a failed run left one).
fn shmpipe_rm(shmpipe: &PathBuf, name: &str) -> std::io::Result<()> {
    Command::new(shmpipe)
        .args(["rm", name])
        .output()
        .map(|_| ())
}
