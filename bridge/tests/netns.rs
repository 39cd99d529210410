//! Two "hosts": network namespaces joined by a veth pair, with the
//! addresses 10.231.77.1/30 and .2/30 that exist only inside them. `out`
//! runs in one, `in` in the other (the rings are in /dev/shm, which
//! network namespaces do not separate: the producer and the consumer are
//! this test process). Needs root and iproute2 (`.ci/setup-bridge.sh`
//! installs it); skips with a message otherwise.

mod common;

use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use common::*;

const ADDR_A: &str = "10.231.77.1/30";
const ADDR_B: &str = "10.231.77.2/30";
const IP_B: &str = "10.231.77.2";

/// Two namespaces and a veth pair; removed on drop.
struct Hosts {
    a: String,
    b: String,
    veth_a: String,
}

fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("running ip {}: {e}", args.join(" ")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

impl Hosts {
    /// `Err(reason)` means: skip.
    fn new() -> Result<Hosts, String> {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            return Err("not root (network namespaces need CAP_SYS_ADMIN)".into());
        }
        let pid = std::process::id();
        let n = unique("ns");
        let h = Hosts {
            a: format!("{n}-a"),
            b: format!("{n}-b"),
            veth_a: format!("spa{pid}"),
        };
        let veth_b = format!("spb{pid}");
        ip(&["netns", "add", &h.a])
            .map_err(|e| format!("cannot create a network namespace: {e}"))?;
        ip(&["netns", "add", &h.b])?;
        ip(&[
            "link", "add", &h.veth_a, "netns", &h.a, "type", "veth", "peer", "name", &veth_b,
            "netns", &h.b,
        ])?;
        ip(&["-n", &h.a, "addr", "add", ADDR_A, "dev", &h.veth_a])?;
        ip(&["-n", &h.b, "addr", "add", ADDR_B, "dev", &veth_b])?;
        for (ns, dev) in [(&h.a, &h.veth_a), (&h.b, &veth_b)] {
            ip(&["-n", ns, "link", "set", dev, "up"])?;
            ip(&["-n", ns, "link", "set", "lo", "up"])?;
        }
        Ok(h)
    }

    fn link(&self, up: bool) {
        ip(&[
            "-n",
            &self.a,
            "link",
            "set",
            &self.veth_a,
            if up { "up" } else { "down" },
        ])
        .expect("ip link set");
    }
}

impl Drop for Hosts {
    fn drop(&mut self) {
        // Deleting a namespace deletes the veth end in it, and with it the pair.
        let _ = ip(&["netns", "del", &self.a]);
        let _ = ip(&["netns", "del", &self.b]);
    }
}

macro_rules! hosts_or_skip {
    () => {
        match Hosts::new() {
            Ok(h) => h,
            Err(why) => {
                eprintln!("SKIPPED: {why}");
                return;
            }
        }
    };
}

const N: u64 = 200_000;
const CAP: u64 = 1 << 20;
const MAX: usize = 64;

/// Stream N messages A -> B; after the first half arrived, cut the link for
/// `cut` while the producer sends the second half; then restore it.
struct Outcome {
    /// Index ranges the reader never got.
    lost: Vec<(u64, u64)>,
    /// Ranges `in` reported as gaps.
    reported: Vec<(u64, u64)>,
    /// `in`'s stderr.
    ei: String,
    /// Messages the reader had when the link came back.
    at_up: u64,
    /// `in` exited 0.
    ok: bool,
}

fn cut_mid_stream(h: &Hosts, cut: Duration, extra: &[&str], seed: u64) -> Outcome {
    let tx = format!("/{}", unique("tx"));
    let rx = format!("/{}", unique("rx"));
    let key = format!("test/{}", unique("key"));
    let listen = format!("tcp/{IP_B}:7447");
    let progress = Arc::new(AtomicU64::new(0));
    let gate = Arc::new(AtomicBool::new(false));
    let sink = drain(
        &rx,
        CAP,
        seed,
        MAX,
        true,
        Arc::clone(&progress),
        Duration::from_secs(300),
    );
    let mut in_args = vec!["in", &key, &rx, "--listen", &listen];
    in_args.extend_from_slice(extra);
    let mut inb = Bridge::start(Some(&h.b), &in_args, &unique("in"));
    let source = feed(&tx, CAP, N, seed, MAX, Some((N / 2, Arc::clone(&gate))));
    let mut out_args = vec!["out", &tx, &key, "--connect", &listen];
    out_args.extend_from_slice(extra);
    let mut out = Bridge::start(Some(&h.a), &out_args, &unique("out"));
    wait_until(Duration::from_secs(120), "the first half", || {
        progress.load(Ordering::Acquire) >= N / 2
    });
    h.link(false);
    gate.store(true, Ordering::Release);
    thread::sleep(cut);
    let at_up = progress.load(Ordering::Acquire);
    h.link(true);
    let seen = sink.join().expect("consumer thread").expect("consumer");
    source
        .handle
        .join()
        .expect("producer thread")
        .expect("producer");
    let so = out.wait(Duration::from_secs(60));
    let si = inb.wait(Duration::from_secs(60));
    let (eo, ei) = (out.stderr(), inb.stderr());
    assert!(so.success(), "out: {so:?}\n{eo}");
    assert_eq!(seen.end, "disconnected");
    let lost = missing_ranges(&seen.indices, N);
    let reported = gaps(&ei, &positions(N, CAP, seed, MAX));
    let total: u64 = lost.iter().map(|(a, b)| b - a + 1).sum();
    assert_eq!(stat(&ei, "missing"), Some(total), "{ei}");
    assert_eq!(stat(&ei, "duplicates"), Some(0), "{ei}");
    eprintln!("out:\n{eo}\nin:\n{ei}");
    Outcome {
        lost,
        reported,
        ei,
        at_up,
        ok: si.success(),
    }
}

/// A 2 s cut is shorter than zenoh's lease (10 s by default): the session
/// survives, TCP retransmits, the stream resumes and nothing is lost.
#[test]
fn veth_link_down_2s_stream_resumes_without_loss() {
    let h = hosts_or_skip!();
    let Outcome {
        lost,
        reported,
        ei,
        at_up,
        ok,
    } = cut_mid_stream(&h, Duration::from_secs(2), &[], 5);
    assert!(
        at_up < N,
        "the cut was mid-stream (the stream had not finished while the link was down)"
    );
    assert_eq!(reported, lost, "{ei}");
    assert_eq!(lost, vec![], "a cut shorter than the lease loses nothing");
    assert!(ok, "in exits 0 for a complete stream\n{ei}");
}

/// A 3 s cut with a 1 s lease (set with --config): both sessions close;
/// `out` stops publishing (no subscriber matches) and keeps the messages in
/// its ring; zenoh reconnects when the link is back and the stream resumes.
/// What was in flight when the session died is lost, and `in` reports
/// exactly that by sequence number.
#[test]
fn veth_session_lost_then_resumes_with_exact_loss_report() {
    let h = hosts_or_skip!();
    let cfg = std::env::temp_dir().join(format!("{}.json5", unique("zcfg")));
    std::fs::write(
        &cfg,
        r#"{
  mode: "peer",
  scouting: { multicast: { enabled: false } },
  listen: { endpoints: [] },
  connect: { retry: { period_init_ms: 100, period_max_ms: 500, period_increase_factor: 2 } },
  transport: { link: { tx: { lease: 1000, keep_alive: 4 } } },
}"#,
    )
    .expect("write config");
    let cfg_s = cfg.to_string_lossy().into_owned();
    let Outcome {
        lost,
        reported,
        ei,
        at_up,
        ok,
    } = cut_mid_stream(&h, Duration::from_secs(3), &["--config", &cfg_s], 6);
    let _ = std::fs::remove_file(&cfg);
    assert!(at_up < N, "the cut was mid-stream");
    assert_eq!(reported, lost, "{ei}");
    assert_eq!(
        ok,
        lost.is_empty(),
        "in exits 0 exactly when nothing was lost\n{ei}"
    );
}
