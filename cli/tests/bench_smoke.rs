//! Smoke test of `shmpipe bench --quick`: every transport has a row for
//! every size, and every row either passed its integrity check or (for the
//! transports that may be missing on a machine) says why it could not run.
//! Timings are not checked.

use std::process::Command;

use serde_json::Value;

const TRANSPORTS: [&str; 15] = [
    "pipe",
    "fifo",
    "unix-stream",
    "unix-seqpacket",
    "tcp",
    "mq",
    "shmpipe-spin",
    "shmpipe-futex",
    "shmpipe-typed",
    "shmpipe-sem",
    "shmpipe-locked",
    "shmpipe-locked-spin",
    "iceoryx2",
    "ringfire",
    "tachyon",
];
/// Only these may be unavailable (no mq support, message above
/// msgsize_max, iceoryx2 cannot set up its shared memory, tachyon is an
/// opt-in feature).
const MAY_BE_UNAVAILABLE: [&str; 3] = ["mq", "iceoryx2", "tachyon"];
const SIZES: [u64; 4] = [8, 64, 1024, 65536];

#[test]
fn quick_bench_runs_and_verifies_every_transport() {
    let dir = tempfile::tempdir().expect("temp dir");
    let json = dir.path().join("bench.json");
    let svg = dir.path().join("bench.svg");
    let out = Command::new(env!("CARGO_BIN_EXE_shmpipe"))
        .args(["bench", "--quick", "--json"])
        .arg(&json)
        .arg("--plot")
        .arg(&svg)
        .output()
        .expect("run shmpipe bench");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "bench failed: {:?}\nstdout:\n{stdout}\nstderr:\n{stderr}",
        out.status
    );
    let doc: Value = serde_json::from_str(&std::fs::read_to_string(&json).expect("JSON written"))
        .expect("valid JSON");

    // Where and by what it was measured; what the columns mean.
    assert_eq!(doc["schema_version"], 3);
    assert_eq!(doc["peer"], "ringfire");
    for key in ["hostname", "kernel", "cpu_model", "shmpipe_cli_version"] {
        assert!(
            doc["host"].get(key).is_some(),
            "host lacks {key}: {}",
            doc["host"]
        );
    }
    assert!(doc["host"]["kernel"].is_string());
    for needle in ["spin p50..max:", "blk p50..max:", "check ok (N):", "noisy"] {
        assert!(
            stdout.contains(needle),
            "the header does not explain {needle:?}:\n{stdout}"
        );
    }
    let rows = doc["transports"].as_array().expect("transports array");
    for name in TRANSPORTS {
        let row = rows
            .iter()
            .find(|r| r["name"] == name)
            .unwrap_or_else(|| panic!("no row for {name}"));
        assert!(stdout.contains(name), "table lacks {name}:\n{stdout}");
        let cells = row["results"].as_array().expect("results array");
        let sizes: Vec<u64> = cells.iter().filter_map(|c| c["size"].as_u64()).collect();
        assert_eq!(sizes, SIZES, "{name}: sizes");
        for c in cells {
            let size = &c["size"];
            assert!(c["noisy"].is_boolean(), "{name} {size}: no noisy flag");
            assert!(c["error"].is_null(), "{name} {size} FAILED: {}", c["error"]);
            if c["verified"] == true {
                assert!(
                    c["messages_checked"].as_u64().unwrap_or(0) > 0,
                    "{name} {size}: verified without checking any message"
                );
                assert!(
                    c["msgs_per_sec"].as_f64().unwrap_or(0.0) > 0.0,
                    "{name} {size}: no rate"
                );
                for mode in ["spin", "blocking"] {
                    let lat = &c["latency"][mode];
                    assert!(
                        lat["round_trips"].as_u64().unwrap_or(0) > 0,
                        "{name} {size} {mode}: no round trips"
                    );
                    assert!(
                        lat["p50_ns"].as_u64().unwrap_or(0) > 0,
                        "{name} {size} {mode}: no p50"
                    );
                }
            } else {
                let why = c["unavailable"].as_str().unwrap_or("");
                assert!(
                    MAY_BE_UNAVAILABLE.contains(&name) && !why.is_empty(),
                    "{name} {size}: neither verified nor explicitly unavailable: {c}"
                );
            }
        }
    }
    // Ratios are against the pipe measured in the same run.
    let pipe = rows.iter().find(|r| r["name"] == "pipe").expect("pipe row");
    for c in pipe["results"].as_array().expect("pipe results") {
        assert_eq!(c["ratio_to_pipe"].as_f64(), Some(1.0), "pipe ratio");
    }
    // And against ringfire (built by default, a slot type at every default
    // size): every shmpipe row has its `x ringfire`, in the JSON and the table.
    assert!(
        stdout.contains("x ringfire"),
        "no x ringfire column:\n{stdout}"
    );
    let rf = rows
        .iter()
        .find(|r| r["name"] == "ringfire")
        .expect("ringfire row");
    for c in rf["results"].as_array().expect("ringfire results") {
        assert_eq!(c["verified"], true, "ringfire {}: {c}", c["size"]);
        assert_eq!(c["ratio_to_ringfire"].as_f64(), Some(1.0), "ringfire ratio");
    }
    for row in rows
        .iter()
        .filter(|r| r["name"].as_str().is_some_and(|n| n.starts_with("shmpipe")))
    {
        for c in row["results"].as_array().expect("results") {
            assert!(
                c["ratio_to_ringfire"].as_f64().unwrap_or(0.0) > 0.0,
                "{} {}: no x ringfire",
                row["name"],
                c["size"]
            );
        }
    }
    let plot = std::fs::read_to_string(&svg).expect("SVG written");
    assert!(
        plot.starts_with("<svg") && plot.contains("shmpipe-futex"),
        "SVG lacks content"
    );
    // The headline figure, and latency in the unit its ticks are in.
    assert!(
        plot.contains("Message rate relative to a pipe"),
        "no headline chart"
    );
    assert!(plot.contains("x ringfire)"), "no x ringfire in the plot");
    assert!(plot.contains("µs"), "latency axis unit");
    assert!(!plot.contains(">ns (log)<"), "the old, wrong latency unit");
}

#[test]
fn unknown_transport_is_a_usage_error_listing_valid_ones() {
    let out = Command::new(env!("CARGO_BIN_EXE_shmpipe"))
        .args(["bench", "--transports", "pipe,carrier-pigeon"])
        .output()
        .expect("run shmpipe bench");
    assert_eq!(out.status.code(), Some(2), "usage errors exit with 2");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("carrier-pigeon")
            && stderr.contains("shmpipe-futex")
            && stderr.contains("iceoryx2"),
        "stderr should name the bad transport and the valid ones: {stderr}"
    );
}
