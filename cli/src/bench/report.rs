//! Medians, ratios to the pipe, the printed table and the JSON document.

use std::fmt::Write as _;
use std::time::Duration;

use serde::Serialize;

use super::harness::{Cpus, Latency, Plan, SessionOut};

/// Version of the `--json` document's layout: 2 added `schema_version`,
/// `host` and `noisy`; 3 added `ratio_to_ringfire`, `peer` and the
/// per-size limits (`limit-records` at every size, `limit-memcpy`).
pub const SCHEMA_VERSION: u32 = 3;

/// The whole run, as written by `--json`.
#[derive(Debug, Serialize)]
pub struct Results {
    pub schema_version: u32,
    pub host: Host,
    pub quick: bool,
    pub sizes: Vec<usize>,
    pub baseline: &'static str,
    /// The peer every row is also compared with (`ratio_to_ringfire`).
    pub peer: &'static str,
    pub cpus: Option<CpuInfo>,
    pub stream_runs: usize,
    pub stream_run_ms: u64,
    pub latency_runs: usize,
    pub latency_run_ms: u64,
    pub elapsed_s: f64,
    pub method: &'static str,
    pub transports: Vec<TransportRow>,
}

/// Where the figures were measured.
#[derive(Debug, Serialize)]
pub struct Host {
    pub hostname: Option<String>,
    /// `uname -r`.
    pub kernel: Option<String>,
    /// The first "model name" of /proc/cpuinfo.
    pub cpu_model: Option<String>,
    pub cpus_online: Option<usize>,
    /// Version of the `shmpipe` command that measured.
    pub shmpipe_cli_version: &'static str,
}

impl Host {
    pub fn here() -> Host {
        let read = |p: &str| {
            std::fs::read_to_string(p)
                .ok()
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
        };
        let cpu_model = read("/proc/cpuinfo").and_then(|t| {
            t.lines()
                .filter_map(|l| l.split_once(':'))
                .find(|(k, _)| k.trim() == "model name")
                .map(|(_, v)| v.trim().to_string())
        });
        Host {
            hostname: read("/proc/sys/kernel/hostname"),
            kernel: read("/proc/sys/kernel/osrelease"),
            cpu_model,
            cpus_online: std::thread::available_parallelism().ok().map(|n| n.get()),
            shmpipe_cli_version: env!("CARGO_PKG_VERSION"),
        }
    }
}

#[derive(Debug, Serialize)]
pub struct CpuInfo {
    pub parent: usize,
    pub child: usize,
}

#[derive(Debug, Serialize)]
pub struct TransportRow {
    pub name: &'static str,
    pub stream_mode: &'static str,
    pub results: Vec<Cell>,
}

/// One transport at one message size.
#[derive(Debug, Serialize)]
pub struct Cell {
    pub size: usize,
    /// Median over the streaming runs.
    pub msgs_per_sec: Option<f64>,
    pub mb_per_sec: Option<f64>,
    /// `msgs_per_sec` / the pipe's at the same size.
    pub ratio_to_pipe: Option<f64>,
    /// `msgs_per_sec` / ringfire's at the same size (when ringfire ran).
    pub ratio_to_ringfire: Option<f64>,
    pub runs_msgs_per_sec: Vec<f64>,
    /// The streaming runs spread by more than [`NOISY_SPREAD`] (fastest /
    /// slowest): the median is not to be trusted.
    pub noisy: bool,
    pub latency: LatencyPair,
    /// Every message arrived intact and in order, in every phase.
    pub verified: bool,
    pub messages_checked: u64,
    pub messages_fully_compared: u64,
    /// Why this row FAILED.
    pub error: Option<String>,
    /// Why this transport cannot run here (not a failure).
    pub unavailable: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct LatencyPair {
    pub spin: Option<LatencyFigures>,
    pub blocking: Option<LatencyFigures>,
}

/// Round-trip latency in ns: medians over runs of p50/p99/p99.9, and the
/// largest max.
#[derive(Debug, Serialize, Clone)]
pub struct LatencyFigures {
    pub p50_ns: u64,
    pub p99_ns: u64,
    pub p999_ns: u64,
    pub max_ns: u64,
    pub round_trips: u64,
    /// The pipe's p50 in the same mode / this p50 (above 1: faster).
    pub p50_speedup_vs_pipe: Option<f64>,
}

/// Fastest / slowest streaming run above which a row is flagged noisy.
pub const NOISY_SPREAD: f64 = 2.0;

/// Whether runs spread by more than [`NOISY_SPREAD`].
pub fn is_noisy(runs: &[f64]) -> bool {
    let lo = runs.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = runs.iter().copied().fold(0.0, f64::max);
    runs.len() >= 2 && lo > 0.0 && hi / lo > NOISY_SPREAD
}

fn median_f(mut v: Vec<f64>) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    })
}

fn median_u(v: impl Iterator<Item = u64>) -> u64 {
    median_f(v.map(|x| x as f64).collect()).map_or(0, |m| m.round() as u64)
}

fn aggregate(runs: &[Latency]) -> Option<LatencyFigures> {
    if runs.is_empty() {
        return None;
    }
    Some(LatencyFigures {
        p50_ns: median_u(runs.iter().map(|r| r.p50)),
        p99_ns: median_u(runs.iter().map(|r| r.p99)),
        p999_ns: median_u(runs.iter().map(|r| r.p999)),
        max_ns: runs.iter().map(|r| r.max).max().unwrap_or(0),
        round_trips: runs.iter().map(|r| r.round_trips).sum(),
        p50_speedup_vs_pipe: None,
    })
}

impl Results {
    pub fn build(
        names: &[&'static str],
        sizes: &[usize],
        outs: Vec<Vec<SessionOut>>,
        plan: &Plan,
        quick: bool,
        cpus: Option<Cpus>,
        elapsed: Duration,
    ) -> Results {
        let mut transports: Vec<TransportRow> = names
            .iter()
            .zip(outs)
            .map(|(&name, outs)| TransportRow {
                name,
                stream_mode: outs.first().map_or("blocking", |o| o.stream_mode),
                results: sizes
                    .iter()
                    .zip(outs)
                    .map(|(&size, o)| cell(size, o))
                    .collect(),
            })
            .collect();
        // Ratios against ringfire of the same run, size by size.
        let peer: Vec<(usize, f64)> = transports
            .iter()
            .find(|t| t.name == "ringfire")
            .map(|t| {
                t.results
                    .iter()
                    .filter_map(|c| c.msgs_per_sec.filter(|m| *m > 0.0).map(|m| (c.size, m)))
                    .collect()
            })
            .unwrap_or_default();
        for c in transports.iter_mut().flat_map(|t| t.results.iter_mut()) {
            c.ratio_to_ringfire = peer
                .iter()
                .find(|(size, _)| *size == c.size)
                .and_then(|(_, p)| c.msgs_per_sec.map(|m| m / p));
        }
        // Ratios against the pipe of the same run, size by size.
        let pipe: Vec<(Option<f64>, Option<u64>, Option<u64>)> = transports
            .iter()
            .find(|t| t.name == "pipe")
            .map(|t| {
                t.results
                    .iter()
                    .map(|c| {
                        (
                            c.msgs_per_sec,
                            c.latency.spin.as_ref().map(|l| l.p50_ns),
                            c.latency.blocking.as_ref().map(|l| l.p50_ns),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        for t in &mut transports {
            for (c, base) in t.results.iter_mut().zip(&pipe) {
                c.ratio_to_pipe = match (c.msgs_per_sec, base.0) {
                    (Some(x), Some(b)) if b > 0.0 => Some(x / b),
                    _ => None,
                };
                for (lat, b) in [
                    (&mut c.latency.spin, base.1),
                    (&mut c.latency.blocking, base.2),
                ] {
                    if let (Some(l), Some(b)) = (lat.as_mut(), b) {
                        if l.p50_ns > 0 {
                            l.p50_speedup_vs_pipe = Some(b as f64 / l.p50_ns as f64);
                        }
                    }
                }
            }
        }
        Results {
            schema_version: SCHEMA_VERSION,
            host: Host::here(),
            quick,
            sizes: sizes.to_vec(),
            baseline: "pipe",
            peer: "ringfire",
            cpus: cpus.map(|c| CpuInfo {
                parent: c.parent,
                child: c.child,
            }),
            stream_runs: plan.stream_reps,
            stream_run_ms: plan.stream_time.as_millis() as u64,
            latency_runs: plan.latency_reps,
            latency_run_ms: plan.latency_time.as_millis() as u64,
            elapsed_s: elapsed.as_secs_f64(),
            method: "parent and child forked and pinned to different CPUs; streaming: parent sends \
                     fixed-size messages for a time bound, child receives and checks each, time until \
                     the child's report; ping-pong: parent sends, child echoes a freshly stamped message, \
                     round trips recorded in an HDR histogram after a 10% warm-up; every message carries \
                     its sequence number at each 64-byte line and in its last 8 bytes, checked on receipt, \
                     and the whole body is compared for messages up to 1 KiB and every 16th larger one",
            transports,
        }
    }

    /// "transport size" of every FAILED row.
    pub fn failed_rows(&self) -> Vec<String> {
        let mut v = Vec::new();
        for t in &self.transports {
            for c in &t.results {
                if c.error.is_some() {
                    v.push(format!("{} {}", t.name, size_label(c.size)));
                }
            }
        }
        v
    }

    /// The printed table, preceded by what its columns mean.
    pub fn table(&self) -> String {
        let mut s = String::new();
        let cpus = match &self.cpus {
            Some(c) => format!("parent on CPU {}, child on CPU {}", c.parent, c.child),
            None => "not pinned (fewer than 2 CPUs available)".into(),
        };
        let _ = writeln!(
            s,
            "shmpipe bench{}: {cpus}; streaming: median of {} x {} ms; latency: {} x {} ms per mode; {:.1} s",
            if self.quick { " --quick" } else { "" },
            self.stream_runs,
            self.stream_run_ms,
            self.latency_runs,
            self.latency_run_ms,
            self.elapsed_s
        );
        let _ = writeln!(s, "{}", LEGEND);
        let _ = writeln!(
            s,
            "{:<20} {:>7} {:>9} {:>9} {:>8} {:>10} | {:>8} {:>8} {:>8} {:>8} | {:>8} {:>8} {:>8} {:>8} | {:>13} | check",
            "transport", "size", "msgs/s", "MB/s", "x pipe", "x ringfire",
            "spin p50", "p99", "p99.9", "max",
            "blk p50", "p99", "p99.9", "max", "lat x spin/blk"
        );
        let mut notes = Vec::new();
        for t in &self.transports {
            for c in &t.results {
                let lat = |l: &Option<LatencyFigures>| match l {
                    Some(l) => format!(
                        "{:>8} {:>8} {:>8} {:>8}",
                        ns(l.p50_ns),
                        ns(l.p99_ns),
                        ns(l.p999_ns),
                        ns(l.max_ns)
                    ),
                    None => format!("{:>8} {:>8} {:>8} {:>8}", "-", "-", "-", "-"),
                };
                let speed = |l: &Option<LatencyFigures>| {
                    l.as_ref()
                        .and_then(|l| l.p50_speedup_vs_pipe)
                        .map_or("-".to_string(), |r| format!("{r:.1}"))
                };
                let check = if let Some(e) = &c.error {
                    notes.push(format!("{} {}: FAILED: {e}", t.name, size_label(c.size)));
                    "FAILED".to_string()
                } else if let Some(u) = &c.unavailable {
                    notes.push(format!(
                        "{} {}: unavailable: {u}",
                        t.name,
                        size_label(c.size)
                    ));
                    "unavailable".to_string()
                } else if c.verified {
                    format!("ok ({})", count(c.messages_checked as f64))
                } else {
                    "not verified".to_string()
                };
                let check = if c.noisy {
                    let lo = c
                        .runs_msgs_per_sec
                        .iter()
                        .copied()
                        .fold(f64::INFINITY, f64::min);
                    let hi = c.runs_msgs_per_sec.iter().copied().fold(0.0, f64::max);
                    notes.push(format!(
                        "{} {}: noisy: its streaming runs ranged from {} to {} msgs/s (more than {NOISY_SPREAD}x apart); rerun on a quiet machine",
                        t.name,
                        size_label(c.size),
                        count(lo),
                        count(hi)
                    ));
                    format!("{check}, noisy")
                } else {
                    check
                };
                let _ = writeln!(
                    s,
                    "{:<20} {:>7} {:>9} {:>9} {:>8} {:>10} | {} | {} | {:>13} | {check}",
                    t.name,
                    size_label(c.size),
                    c.msgs_per_sec.map_or("-".into(), count),
                    c.mb_per_sec.map_or("-".into(), |m| format!("{m:.1}")),
                    c.ratio_to_pipe.map_or("-".into(), |r| format!("{r:.2}x")),
                    c.ratio_to_ringfire
                        .map_or("-".into(), |r| format!("{r:.2}x")),
                    lat(&c.latency.spin),
                    lat(&c.latency.blocking),
                    format!("{}/{}", speed(&c.latency.spin), speed(&c.latency.blocking)),
                );
            }
        }
        if !notes.is_empty() {
            let _ = writeln!(s);
            for n in notes {
                let _ = writeln!(s, "{n}");
            }
        }
        s
    }
}

/// What the table's columns mean, printed above it.
pub const LEGEND: &str = "\
msgs/s, MB/s: streaming rate, median of the runs; x pipe, x ringfire: that rate / the pipe's, ringfire's at the same size
spin p50..max: ping-pong round trip with a busy-polling receiver (it never sleeps)
blk p50..max: ping-pong round trip with a blocking receiver (it sleeps in the kernel or on a futex)
lat x spin/blk: the pipe's p50 / this p50, per mode (above 1: faster than the pipe)
check ok (N): N messages checked on receipt (sequence numbers, contents), all intact and in order;
  noisy: the streaming runs spread by more than 2x, so the median is uncertain
";

fn cell(size: usize, o: SessionOut) -> Cell {
    let msgs = median_f(o.stream.clone());
    let ran = o.error.is_none() && o.unavailable.is_none();
    Cell {
        size,
        msgs_per_sec: msgs,
        mb_per_sec: msgs.map(|m| m * size as f64 / 1e6),
        ratio_to_pipe: None,
        ratio_to_ringfire: None,
        noisy: is_noisy(&o.stream),
        runs_msgs_per_sec: o.stream,
        latency: LatencyPair {
            spin: aggregate(&o.spin),
            blocking: aggregate(&o.block),
        },
        verified: ran && o.checked > 0,
        messages_checked: o.checked,
        messages_fully_compared: o.fully_compared,
        error: o.error,
        unavailable: o.unavailable,
    }
}

/// "64 B", "1 KiB", "64 KiB", "1.5 MiB".
pub fn size_label(n: usize) -> String {
    if n >= 1 << 20 && n & ((1 << 20) - 1) == 0 {
        format!("{} MiB", n >> 20)
    } else if n >= 1 << 10 && n & ((1 << 10) - 1) == 0 {
        format!("{} KiB", n >> 10)
    } else {
        format!("{n} B")
    }
}

/// A duration in ns, short.
pub fn ns(v: u64) -> String {
    if v < 1_000 {
        format!("{v}ns")
    } else if v < 1_000_000 {
        format!("{:.1}us", v as f64 / 1e3)
    } else if v < 1_000_000_000 {
        format!("{:.1}ms", v as f64 / 1e6)
    } else {
        format!("{:.1}s", v as f64 / 1e9)
    }
}

/// A count, short: 950, 12.3K, 4.56M.
pub fn count(v: f64) -> String {
    if v < 1e3 {
        format!("{v:.0}")
    } else if v < 1e6 {
        format!("{:.1}K", v / 1e3)
    } else if v < 1e9 {
        format!("{:.2}M", v / 1e6)
    } else {
        format!("{:.2}G", v / 1e9)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn noisy_rows_are_those_whose_runs_spread_more_than_2x() {
        assert!(!is_noisy(&[1.0e6, 1.9e6, 1.5e6]));
        assert!(is_noisy(&[1.0e6, 2.1e6, 1.5e6]));
        assert!(!is_noisy(&[5.0e6]), "one run cannot spread");
        assert!(!is_noisy(&[]));
    }

    #[test]
    fn host_names_this_machine() {
        let h = Host::here();
        assert_eq!(h.shmpipe_cli_version, env!("CARGO_PKG_VERSION"));
        assert!(
            h.kernel.is_some(),
            "/proc/sys/kernel/osrelease is readable on Linux"
        );
    }
}
