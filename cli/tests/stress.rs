//! `shmpipe stress`: short runs of each variant and wait strategy must
//! account for every message exactly.

mod common;

use common::*;

fn stress_ok(args: &[&str], expect_messages: Option<u64>) -> serde_json::Value {
    let mut all = vec!["stress", "--json", "--quiet"];
    all.extend_from_slice(args);
    let o = run0(&all);
    assert_code(&o, 0);
    let j = o.json();
    assert_eq!(j["ok"], true, "{j}");
    let sent = j["sent"].as_u64().unwrap();
    if let Some(n) = expect_messages {
        assert_eq!(sent, n);
    }
    assert!(sent > 0);
    assert_eq!(j["received"], sent);
    assert_eq!(j["intact"], sent);
    assert_eq!(j["bytes_received"], j["bytes_sent"]);
    for k in ["lost", "duplicated", "out_of_order", "corrupted"] {
        assert_eq!(j[k], 0, "{k}: {j}");
    }
    j
}

#[test]
fn lockfree_futex() {
    let j = stress_ok(
        &["--messages", "20000", "--variant", "lockfree"],
        Some(20000),
    );
    assert_eq!(j["variant"], "lockfree");
    assert_eq!(j["wait"], "futex");
}

#[test]
fn locked_semaphore() {
    let j = stress_ok(
        &[
            "--messages",
            "20000",
            "--variant",
            "locked",
            "--wait",
            "semaphore",
        ],
        Some(20000),
    );
    assert_eq!(j["variant"], "locked");
    assert_eq!(j["wait"], "semaphore");
}

#[test]
fn tiny_ring_spin_yield_for_a_time() {
    // 256-byte ring, messages up to its maximum (120 bytes): constant wrapping.
    let j = stress_ok(
        &[
            "--seconds",
            "0.5",
            "--capacity",
            "256",
            "--size-range",
            "16..120",
            "--wait",
            "spin-yield",
        ],
        None,
    );
    assert_eq!(j["size_max"], 120);
}

#[test]
fn locked_large_messages_with_seed() {
    let j = stress_ok(
        &[
            "-n",
            "300",
            "--variant",
            "locked",
            "--capacity",
            "1MiB",
            "--size-range",
            "100KiB..500KiB",
            "--seed",
            "1234",
        ],
        Some(300),
    );
    assert_eq!(j["seed"], 1234);
    // Same seed, same sizes: the byte count is reproducible.
    let again = stress_ok(
        &[
            "-n",
            "300",
            "--capacity",
            "1MiB",
            "--size-range",
            "100KiB..500KiB",
            "--seed",
            "1234",
        ],
        Some(300),
    );
    assert_eq!(again["bytes_sent"], j["bytes_sent"]);
}

#[test]
fn text_report() {
    let o = run0(&["stress", "-n", "1000", "--quiet", "--seed", "9"]);
    assert_code(&o, 0);
    let t = o.stdout_str();
    for needle in [
        "seed 9",
        "sent:          1000 messages",
        "received:      1000 messages",
        "lost:          0",
        "duplicated:    0",
        "corrupted:     0",
        "messages/s",
        "result:        OK",
    ] {
        assert!(t.contains(needle), "{needle:?} in:\n{t}");
    }
}

/// The checker is not vacuous: deliberate faults (a hidden self-test
/// option) are reported as discrepancies with exit status 1.
#[test]
fn injected_faults_are_caught() {
    for (fault, key, problem) in [
        ("skip", "lost", "lost"),
        ("duplicate", "duplicated", "duplicated"),
        ("reorder", "out_of_order", "out of order"),
        ("corrupt", "corrupted", "corrupted"),
    ] {
        for variant in ["lockfree", "locked"] {
            let o = run0(&[
                "stress",
                "--json",
                "--quiet",
                "-n",
                "100",
                "--variant",
                variant,
                "--inject",
                fault,
            ]);
            assert_code(&o, 1);
            assert!(o.stderr.starts_with("shmpipe: stress: "), "{}", o.stderr);
            assert!(o.stderr.contains(problem), "{fault}: {}", o.stderr);
            let j = o.json();
            assert_eq!(j["ok"], false);
            assert_eq!(j[key], 1, "{fault} on {variant}: {j}");
        }
    }
}

#[test]
fn producer_death_is_reported() {
    let o = run0(&["stress", "--quiet", "-n", "1000", "--inject", "die"]);
    assert_fails(&o, "producer died");
    assert!(
        o.stdout_str().contains("received:      10 messages"),
        "{}",
        o.stdout_str()
    );
}
