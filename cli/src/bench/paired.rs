//! `shmpipe bench --paired N`: the measurement protocol for a machine whose
//! cross-core cost moves (a VM whose two vCPUs switch, within minutes,
//! between a fast state and one where a cache-line transfer costs about 4x
//! more). A ratio is only worth something between figures taken in the
//! same state, so:
//!
//! - Each *pair* is one scenario (8 B or 64 B, streaming or round trip)
//!   measured by short trials back to back, within a few seconds:
//!   `limit-slots`, then shmpipe (spin and futex strategies, busy-polling
//!   with `try_send` / `try_recv_into`, and with `drain` for streams;
//!   the typed row, `typed::Sender<[u8; N]>` / `Receiver<[u8; N]>`,
//!   ringfire's shape), ringfire, `limit-records` (streams) or `limit-atomic` (round trips),
//!   then `limit-slots` again. Odd rounds run the trials in reverse order,
//!   so a drift within a pair does not always favour the same side.
//! - A pair is kept only if its two `limit-slots` figures agree within
//!   [`AGREE`] (the state did not change under it).
//! - Kept pairs are grouped into *states* by their `limit-slots` (mean of
//!   the two): sorted, a gap of more than [`STATE_GAP`] between neighbours
//!   starts a new state. Why: within one state, `limit-slots` trials
//!   spread by less than 1.3x (the agreement rule above), while the VM's
//!   states sit 2.5-4x apart (seen: about 50 M, 170 M and 420 M msgs/s);
//!   a fixed cut (the first version used 0.6x the best) filed a middle
//!   state with the slow one. Each state is named by its median
//!   `limit-slots`; the fastest is also called "fast" and the slowest
//!   "slow" in the JSON.
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
/// Sorted by `limit-slots`, kept pairs further apart than this factor
/// belong to different states.
pub const STATE_GAP: f64 = 1.5;
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
    /// The state of a kept pair: its median `limit-slots`, e.g. "170M".
    state: Option<String>,
    /// msgs/s (streams) or p50 round trip in ns.
    figures: Vec<Figure>,
    ratios: Vec<Figure>,
}

/// A ratio's figures in one state.
#[derive(Debug, Clone, Serialize)]
struct Summary {
    scenario: String,
    ratio: &'static str,
    state: String,
    /// "fast" for the run's fastest state, "slow" for its slowest (both
    /// if there was one state), "middle" otherwise.
    rank: &'static str,
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
    state_gap: f64,
    best_slots_msgs_per_sec: f64,
    /// The states found, fastest first: (name, median limit-slots, pairs).
    states: Vec<(String, f64, usize)>,
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
            ("typed / ringfire", "shmpipe-typed", "ringfire"),
            ("spin / limit-records", "shmpipe-spin", "limit-records"),
            ("futex / limit-records", "shmpipe-futex", "limit-records"),
            (
                "drain / limit-records",
                "shmpipe-spin-drain",
                "limit-records",
            ),
            (
                "drain / try_recv_into",
                "shmpipe-spin-drain",
                "shmpipe-spin",
            ),
        ],
        Kind::RoundTrip => &[
            ("spin / ringfire", "shmpipe-spin", "ringfire"),
            ("futex / ringfire", "shmpipe-futex", "ringfire"),
            ("typed / ringfire", "shmpipe-typed", "ringfire"),
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
            "shmpipe-typed",
            "ringfire",
            "limit-records",
        ],
        Kind::RoundTrip => vec![
            "limit-atomic",
            "shmpipe-spin",
            "shmpipe-futex",
            "shmpipe-typed",
            "ringfire",
        ],
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
            "shmpipe-typed" => figure(
                super::typed::measure(sc.size, &plan, cpus, || {}),
                sc.kind,
                name,
            )?,
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

/// Group the kept pairs into states by `limit-slots` (see the module
/// docs), mark each pair with its state, and summarise every ratio per
/// state. Returns the best `limit-slots`, the states (fastest first: name,
/// median `limit-slots`, pairs) and the summaries.
fn classify(pairs: &mut [Pair]) -> (f64, Vec<(String, f64, usize)>, Vec<Summary>) {
    let mean = |p: &Pair| (p.slots_before + p.slots_after) / 2.0;
    let mut kept: Vec<(f64, usize)> = pairs
        .iter()
        .enumerate()
        .filter(|(_, p)| p.kept)
        .map(|(i, p)| (mean(p), i))
        .collect();
    kept.sort_by(|a, b| b.0.total_cmp(&a.0));
    let best = kept.first().map_or(0.0, |k| k.0);
    // Fastest first: a new state where the next value is more than
    // STATE_GAP below the previous one.
    let mut groups: Vec<Vec<(f64, usize)>> = Vec::new();
    for k in kept {
        match groups.last_mut() {
            Some(g) if g.last().is_some_and(|l| l.0 <= k.0 * STATE_GAP) => g.push(k),
            _ => groups.push(vec![k]),
        }
    }
    let mut states = Vec::new();
    for g in &groups {
        let (med, _, _) = median_min_max(g.iter().map(|k| k.0).collect());
        let name = format!("{:.0}M", med / 1e6);
        for &(_, i) in g {
            pairs[i].state = Some(name.clone());
        }
        states.push((name, med, g.len()));
    }
    let rank = |i: usize| match (i == 0, i + 1 == states.len()) {
        (true, _) => "fast",
        (false, true) => "slow",
        _ => "middle",
    };
    let mut out = Vec::new();
    for sc in SCENARIOS {
        for &(ratio, _, _) in ratio_defs(sc.kind) {
            for (si, (state, _, _)) in states.iter().enumerate() {
                let v: Vec<f64> = pairs
                    .iter()
                    .filter(|p| p.scenario == sc.label() && p.state.as_ref() == Some(state))
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
                    state: state.clone(),
                    rank: rank(si),
                    pairs,
                    median,
                    min,
                    max,
                });
            }
        }
    }
    (best, states, out)
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
        "states (kept pairs grouped by limit-slots, a gap over {STATE_GAP}x starts a new one; fastest first): {}",
        doc.states
            .iter()
            .map(|(n, _, k)| format!("{n} msgs/s limit-slots ({k} pairs)"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let _ = writeln!(
        s,
        "streaming ratios are of msgs/s (above 1: shmpipe faster); round-trip ratios are of p50 times (below 1: shmpipe faster)"
    );
    let mut head = format!("{:<24} {:<24}", "scenario", "ratio");
    for (n, _, _) in &doc.states {
        let _ = write!(head, " {:>28}", format!("{n}: median (range) [n]"));
    }
    let _ = writeln!(s, "{head}");
    for sc in SCENARIOS {
        for &(ratio, _, _) in ratio_defs(sc.kind) {
            let mut line = format!("{:<24} {:<24}", sc.label(), ratio);
            for (state, _, _) in &doc.states {
                let cell = doc
                    .summary
                    .iter()
                    .find(|x| x.scenario == sc.label() && x.ratio == ratio && &x.state == state)
                    .map_or("-".to_string(), |x| {
                        format!("{:.2} ({:.2}-{:.2}) [{}]", x.median, x.min, x.max, x.pairs)
                    });
                let _ = write!(line, " {cell:>28}");
            }
            let _ = writeln!(s, "{line}");
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
    let (best, states, summary) = classify(&mut pairs);
    let doc = Document {
        schema_version: 2,
        host: Host::here(),
        cpus: cpus.map(|c| (c.parent, c.child)),
        rounds,
        trial_ms: TRIAL.as_millis() as u64,
        agree_within: AGREE,
        state_gap: STATE_GAP,
        best_slots_msgs_per_sec: best,
        states,
        method: "pairs of back-to-back trials (limit-slots, shmpipe spin/futex via try_send+try_recv_into and drain, shmpipe typed::Sender/Receiver<[u8; N]> try_send/try_recv, ringfire 0.5.2 try_push/try_recv, limit-records or limit-atomic, limit-slots), every library message sequence-checked and copied out; a pair is kept if its two limit-slots agree within 1.3x; kept pairs are grouped into states by their limit-slots (sorted, a gap over 1.5x starts a new state), and ratios are summarised per state",
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
            p(sc, 420e6, 400e6, 1.5),
            p(sc, 200e6, 190e6, 0.5),
            p(sc, 160e6, 170e6, 0.7),
            p(sc, 50e6, 55e6, 0.9),
            p(sc, 45e6, 50e6, 1.1),
            p(sc, 200e6, 50e6, 3.0), // moved within the pair: dropped
        ];
        let (best, states, summary) = classify(&mut pairs);
        assert_eq!(best, 410e6);
        assert_eq!(pairs[5].state, None);
        // Three states, fastest first; the 170-195 M pairs are one state
        // (a fixed cut at 0.6x the best would have called them slow).
        let names: Vec<&str> = states.iter().map(|s| s.0.as_str()).collect();
        assert_eq!(names, ["410M", "180M", "50M"]);
        assert_eq!(pairs[1].state.as_deref(), Some("180M"));
        assert_eq!(pairs[2].state.as_deref(), Some("180M"));
        assert_eq!(pairs[3].state.as_deref(), Some("50M"));
        let get = |state: &str| {
            summary
                .iter()
                .find(|s| s.state == state && s.ratio == "spin / ringfire")
                .expect("summary")
        };
        assert_eq!(
            (get("410M").pairs, get("410M").median, get("410M").rank),
            (1, 1.5, "fast")
        );
        assert_eq!(
            (get("180M").pairs, get("180M").median, get("180M").rank),
            (2, 0.6, "middle")
        );
        assert_eq!(
            (get("50M").pairs, get("50M").median, get("50M").rank),
            (2, 1.0, "slow")
        );
    }
}
