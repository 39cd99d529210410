//! `shmpipe bench --paired N`: the measurement protocol for a machine whose
//! cross-core cost moves (a VM whose two vCPUs switch, within minutes,
//! between a fast state and one where a cache-line transfer costs about 4x
//! more). A ratio is only worth something between figures taken in the
//! same state, so:
//!
//! - Each *pair* is one scenario (8 B or 64 B, streaming or round trip)
//!   measured by short trials back to back, within a few seconds:
//!   `limit-slots`, then shmpipe (spin and futex strategies, busy-polling
//!   with `try_send` / `try_recv_into`, and with `drain` for streams),
//!   ringfire, `limit-records` (streams) or `limit-atomic` (round trips),
//!   then `limit-slots` again. Odd rounds run the trials in reverse order,
//!   so a drift within a pair does not always favour the same side.
//! - A pair is kept only if its two `limit-slots` figures agree within
//!   [`AGREE`] (the state did not change under it).
//! - A kept pair is *fast* if its `limit-slots` (mean of the two) is at
//!   least [`FAST_FRACTION`] of the best `limit-slots` of the run, else
//!   *slow*. Why this threshold: within one state, `limit-slots` trials
//!   spread by less than 1.3x (the agreement rule above), while the two
//!   states are about 4x apart; a cut at 0.6x the best (1.67x below it)
//!   sits between the two with room on both sides. The best figure is
//!   printed: if the run never reached the fast state, compare it with a
//!   run that did before reading the "fast" column.
//! - Each ratio's median (and range) is reported per state.

use std::path::Path;
use std::time::{Duration, Instant};

use serde::Serialize;
use shmpipe::{LockFree, WaitStrategy};

use super::harness::{self, session, Cpus, Plan, SessionOut};
use super::limit;
use super::report::Host;
use super::shm::Shm;

/// `limit-slots` before and after a pair must agree within this factor.
pub const AGREE: f64 = 1.3;
/// A pair is fast-state if its `limit-slots` is at least this fraction of
/// the run's best.
pub const FAST_FRACTION: f64 = 0.6;
/// Length of one trial.
const TRIAL: Duration = Duration::from_millis(250);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
enum Kind {
    Stream,
    RoundTrip,
}

#[derive(Debug, Clone, Copy, Serialize)]
struct Scenario {
    kind: Kind,
    size: usize,
}

impl Scenario {
    fn label(&self) -> String {
        match self.kind {
            Kind::Stream => format!("{} B streaming", self.size),
            Kind::RoundTrip => format!("{} B round trip p50", self.size),
        }
    }
}

const SCENARIOS: [Scenario; 4] = [
    Scenario {
        kind: Kind::Stream,
        size: 8,
    },
    Scenario {
        kind: Kind::Stream,
        size: 64,
    },
    Scenario {
        kind: Kind::RoundTrip,
        size: 8,
    },
    Scenario {
        kind: Kind::RoundTrip,
        size: 64,
    },
];

/// One figure of a pair: msgs/s for streams, p50 ns for round trips.
#[derive(Debug, Clone, Serialize)]
struct Figure {
    name: &'static str,
    value: f64,
}

#[derive(Debug, Clone, Serialize)]
struct Pair {
    scenario: String,
    round: u32,
    slots_before: f64,
    slots_after: f64,
    kept: bool,
    /// "fast" or "slow" for kept pairs.
    state: Option<&'static str>,
    /// msgs/s (streams) or p50 round trip in ns.
    figures: Vec<Figure>,
    ratios: Vec<Figure>,
}

/// A ratio's figures in one state.
#[derive(Debug, Clone, Serialize)]
struct Summary {
    scenario: String,
    ratio: &'static str,
    state: &'static str,
    pairs: usize,
    median: f64,
    min: f64,
    max: f64,
}

#[derive(Debug, Serialize)]
struct Document {
    schema_version: u32,
    host: Host,
    cpus: Option<(usize, usize)>,
    rounds: u32,
    trial_ms: u64,
    agree_within: f64,
    fast_fraction_of_best_slots: f64,
    best_slots_msgs_per_sec: f64,
    method: &'static str,
    summary: Vec<Summary>,
    pairs: Vec<Pair>,
}

/// The ratios of a scenario: (name, numerator, denominator). Streams:
/// above 1 is faster; round trips (times): below 1 is faster.
fn ratio_defs(kind: Kind) -> &'static [(&'static str, &'static str, &'static str)] {
    match kind {
        Kind::Stream => &[
            ("spin / ringfire", "shmpipe-spin", "ringfire"),
            ("futex / ringfire", "shmpipe-futex", "ringfire"),
            ("spin / limit-records", "shmpipe-spin", "limit-records"),
            ("futex / limit-records", "shmpipe-futex", "limit-records"),
            (
                "drain / try_recv_into",
                "shmpipe-spin-drain",
                "shmpipe-spin",
            ),
        ],
        Kind::RoundTrip => &[
            ("spin / ringfire", "shmpipe-spin", "ringfire"),
            ("futex / ringfire", "shmpipe-futex", "ringfire"),
            ("spin / limit-atomic", "shmpipe-spin", "limit-atomic"),
            ("ringfire / limit-atomic", "ringfire", "limit-atomic"),
        ],
    }
}

fn trial_plan(kind: Kind) -> Plan {
    let stream = kind == Kind::Stream;
    Plan {
        warmup: Duration::from_millis(30),
        stream_reps: usize::from(stream),
        stream_time: TRIAL,
        max_stream_msgs: 500_000_000,
        latency_reps: usize::from(!stream),
        latency_time: TRIAL,
        max_round_trips: 50_000_000,
        block_latency: false,
        watchdog_slack: Duration::from_secs(30),
    }
}

/// Sizes of the count-bounded reference runs, adapted to the last rate
/// seen so each takes about one trial.
struct Counts {
    slots: f64,
    records: [f64; 2],
    atomic_ns: f64,
}

impl Counts {
    fn n(rate: f64) -> u64 {
        (rate * TRIAL.as_secs_f64()).clamp(200_000.0, 200_000_000.0) as u64
    }
}

/// The figure of one library trial, or why it has none.
fn figure(out: SessionOut, kind: Kind, name: &str) -> Result<Option<f64>, String> {
    if let Some(e) = out.error {
        return Err(format!("{name}: {e}"));
    }
    if out.unavailable.is_some() {
        return Ok(None);
    }
    Ok(match kind {
        Kind::Stream => out.stream.first().copied(),
        Kind::RoundTrip => out.spin.first().map(|l| l.p50 as f64),
    })
}

#[cfg(feature = "ringfire")]
fn ringfire(size: usize, plan: &Plan, cpus: Option<Cpus>) -> SessionOut {
    super::ringfire::measure(size, plan, cpus, || {})
}

#[cfg(not(feature = "ringfire"))]
fn ringfire(_size: usize, _plan: &Plan, _cpus: Option<Cpus>) -> SessionOut {
    SessionOut {
        unavailable: Some("built without the `ringfire` feature".into()),
        ..SessionOut::default()
    }
}

/// Measure one pair of `sc`.
fn pair(sc: Scenario, round: u32, cpus: Option<Cpus>, counts: &mut Counts) -> Result<Pair, String> {
    let plan = trial_plan(sc.kind);
    let slots_before = limit::slots_run(cpus, Counts::n(counts.slots))?;
    counts.slots = slots_before;
    let mut steps: Vec<&'static str> = match sc.kind {
        Kind::Stream => vec![
            "shmpipe-spin",
            "shmpipe-futex",
            "shmpipe-spin-drain",
            "ringfire",
            "limit-records",
        ],
        Kind::RoundTrip => vec!["limit-atomic", "shmpipe-spin", "shmpipe-futex", "ringfire"],
    };
    if round % 2 == 1 {
        steps.reverse();
    }
    let ri = usize::from(sc.size != 8);
    let mut figures = Vec::new();
    for name in steps {
        let shm = |wait, drain| {
            let t = Shm::<LockFree>::polled(name, wait, drain);
            figure(session(&t, sc.size, &plan, cpus, || {}), sc.kind, name)
        };
        let value = match name {
            "shmpipe-spin" => shm(WaitStrategy::Spin, false)?,
            "shmpipe-futex" => shm(WaitStrategy::Futex, false)?,
            "shmpipe-spin-drain" => shm(WaitStrategy::Spin, true)?,
            "ringfire" => figure(ringfire(sc.size, &plan, cpus), sc.kind, name)?,
            "limit-records" => {
                let r = limit::records_run(cpus, sc.size, Counts::n(counts.records[ri]))?;
                counts.records[ri] = r;
                Some(r)
            }
            _ => {
                let n = (TRIAL.as_secs_f64() * 1e9 / counts.atomic_ns).clamp(10_000.0, 5e6);
                let r = limit::atomic_run(cpus, n as u64)?;
                counts.atomic_ns = r.max(1.0);
                Some(r)
            }
        };
        if let Some(value) = value {
            figures.push(Figure { name, value });
        }
    }
    let slots_after = limit::slots_run(cpus, Counts::n(counts.slots))?;
    counts.slots = slots_after;
    let get = |n: &str| figures.iter().find(|f| f.name == n).map(|f| f.value);
    let ratios = ratio_defs(sc.kind)
        .iter()
        .filter_map(|&(name, a, b)| {
            let (a, b) = (get(a)?, get(b)?);
            (b > 0.0).then(|| Figure { name, value: a / b })
        })
        .collect();
    let agree = slots_before.max(slots_after) / slots_before.min(slots_after).max(1.0);
    Ok(Pair {
        scenario: sc.label(),
        round,
        slots_before,
        slots_after,
        kept: agree <= AGREE,
        state: None,
        figures,
        ratios,
    })
}

fn median_min_max(mut v: Vec<f64>) -> (f64, f64, f64) {
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    let med = if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    };
    (med, v[0], v[n - 1])
}

/// Mark each kept pair fast or slow, and summarise every ratio per state.
fn classify(pairs: &mut [Pair]) -> (f64, Vec<Summary>) {
    let mean = |p: &Pair| (p.slots_before + p.slots_after) / 2.0;
    let best = pairs
        .iter()
        .filter(|p| p.kept)
        .map(mean)
        .fold(0.0, f64::max);
    for p in pairs.iter_mut().filter(|p| p.kept) {
        p.state = Some(if mean(p) >= FAST_FRACTION * best {
            "fast"
        } else {
            "slow"
        });
    }
    let mut out = Vec::new();
    for sc in SCENARIOS {
        for &(ratio, _, _) in ratio_defs(sc.kind) {
            for state in ["fast", "slow"] {
                let v: Vec<f64> = pairs
                    .iter()
                    .filter(|p| p.scenario == sc.label() && p.state == Some(state))
                    .filter_map(|p| p.ratios.iter().find(|r| r.name == ratio))
                    .map(|r| r.value)
                    .collect();
                if v.is_empty() {
                    continue;
                }
                let pairs = v.len();
                let (median, min, max) = median_min_max(v);
                out.push(Summary {
                    scenario: sc.label(),
                    ratio,
                    state,
                    pairs,
                    median,
                    min,
                    max,
                });
            }
        }
    }
    (best, out)
}

fn table(doc: &Document, dropped: usize) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "shmpipe bench --paired {}: {} pairs per scenario, trials of {} ms, CPUs {}; {} pair(s) dropped (limit-slots moved more than {AGREE}x within the pair)",
        doc.rounds,
        doc.rounds,
        doc.trial_ms,
        doc.cpus
            .map_or("not pinned".to_string(), |(a, b)| format!("{a}/{b}")),
        dropped
    );
    let _ = writeln!(
        s,
        "state: fast if the pair's limit-slots >= {FAST_FRACTION} x the best of the run ({:.1}M msgs/s), else slow",
        doc.best_slots_msgs_per_sec / 1e6
    );
    let _ = writeln!(
        s,
        "streaming ratios are of msgs/s (above 1: shmpipe faster); round-trip ratios are of p50 times (below 1: shmpipe faster)"
    );
    let _ = writeln!(
        s,
        "{:<24} {:<24} {:>28} {:>28}",
        "scenario", "ratio", "fast: median (range) [n]", "slow: median (range) [n]"
    );
    for sc in SCENARIOS {
        for &(ratio, _, _) in ratio_defs(sc.kind) {
            let cell = |state: &str| {
                doc.summary
                    .iter()
                    .find(|x| x.scenario == sc.label() && x.ratio == ratio && x.state == state)
                    .map_or("-".to_string(), |x| {
                        format!("{:.2} ({:.2}-{:.2}) [{}]", x.median, x.min, x.max, x.pairs)
                    })
            };
            let _ = writeln!(
                s,
                "{:<24} {:<24} {:>28} {:>28}",
                sc.label(),
                ratio,
                cell("fast"),
                cell("slow")
            );
        }
    }
    s
}

/// Run `rounds` rounds of every scenario; print the table, write `json`.
///
/// # Errors
/// A message when a trial FAILED (its integrity check or its run) or the
/// JSON file cannot be written.
pub fn run(rounds: u32, json: Option<&Path>) -> Result<(), String> {
    if let Some(path) = json {
        std::fs::write(path, "")
            .map_err(|e| format!("cannot write {}: {e}; nothing was measured", path.display()))?;
    }
    let cpus = harness::pick_cpus();
    let saved = harness::current_affinity();
    if let Some(c) = cpus {
        harness::pin(c.parent);
    }
    let started = Instant::now();
    let mut counts = Counts {
        slots: 100e6,
        records: [50e6, 20e6],
        atomic_ns: 200.0,
    };
    let mut pairs = Vec::new();
    let mut failed = None;
    'rounds: for round in 0..rounds {
        for sc in SCENARIOS {
            eprint!(
                "\r[{:>5.1} s] round {}/{rounds}: {:<24}",
                started.elapsed().as_secs_f64(),
                round + 1,
                sc.label()
            );
            match pair(sc, round, cpus, &mut counts) {
                Ok(p) => pairs.push(p),
                Err(e) => {
                    failed = Some(e);
                    break 'rounds;
                }
            }
        }
    }
    eprintln!();
    if let Some(set) = saved {
        harness::set_affinity(&set);
    }
    if let Some(e) = failed {
        return Err(format!("paired run FAILED: {e}"));
    }
    let dropped = pairs.iter().filter(|p| !p.kept).count();
    let (best, summary) = classify(&mut pairs);
    let doc = Document {
        schema_version: 1,
        host: Host::here(),
        cpus: cpus.map(|c| (c.parent, c.child)),
        rounds,
        trial_ms: TRIAL.as_millis() as u64,
        agree_within: AGREE,
        fast_fraction_of_best_slots: FAST_FRACTION,
        best_slots_msgs_per_sec: best,
        method: "pairs of back-to-back trials (limit-slots, shmpipe spin/futex via try_send+try_recv_into and drain, ringfire 0.5.2 try_push/try_recv, limit-records or limit-atomic, limit-slots), every library message sequence-checked and copied out; a pair is kept if its two limit-slots agree within 1.3x and is fast-state if their mean is at least 0.6x the run's best limit-slots",
        summary,
        pairs,
    };
    print!("{}", table(&doc, dropped));
    if let Some(path) = json {
        let text = serde_json::to_string_pretty(&doc).map_err(|e| format!("encoding JSON: {e}"))?;
        std::fs::write(path, text + "\n")
            .map_err(|e| format!("writing {}: {e}", path.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(scenario: &str, before: f64, after: f64, ratio: f64) -> Pair {
        let agree = before.max(after) / before.min(after);
        Pair {
            scenario: scenario.into(),
            round: 0,
            slots_before: before,
            slots_after: after,
            kept: agree <= AGREE,
            state: None,
            figures: Vec::new(),
            ratios: vec![Figure {
                name: "spin / ringfire",
                value: ratio,
            }],
        }
    }

    #[test]
    fn pairs_split_by_state_and_moved_pairs_are_dropped() {
        let sc = "8 B streaming";
        let mut pairs = vec![
            p(sc, 200e6, 190e6, 0.5),
            p(sc, 180e6, 200e6, 0.7),
            p(sc, 50e6, 55e6, 0.9),
            p(sc, 200e6, 50e6, 3.0), // moved within the pair: dropped
        ];
        let (best, summary) = classify(&mut pairs);
        assert_eq!(best, 195e6);
        assert_eq!(pairs[3].state, None);
        assert_eq!(pairs[2].state, Some("slow"));
        let fast = summary
            .iter()
            .find(|s| s.state == "fast" && s.ratio == "spin / ringfire")
            .expect("fast summary");
        assert_eq!((fast.pairs, fast.median), (2, 0.6));
        let slow = summary
            .iter()
            .find(|s| s.state == "slow" && s.ratio == "spin / ringfire")
            .expect("slow summary");
        assert_eq!((slow.pairs, slow.median), (1, 0.9));
    }
}
