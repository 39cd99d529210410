//! `shmpipe bench`: every transport measured side by side in one run, across
//! two processes pinned to different CPUs, through one generic harness
//! (`harness::Transport` / `harness::Endpoint`), as ratios against a pipe
//! measured in the same run.

mod fd;
mod harness;
#[cfg(feature = "iceoryx2")]
mod iox;
mod limit;
mod mq;
mod paired;
mod plot;
mod report;
#[cfg(feature = "ringfire")]
mod ringfire;
mod rpc;
mod shm;
#[cfg(feature = "tachyon")]
mod tachyon;
#[cfg(test)]
mod tests;
mod typed;

use std::path::PathBuf;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use shmpipe::{LockFree, Locked, WaitStrategy};

use harness::{session, Plan, SessionOut};

/// Every transport, in report order; "pipe" is the baseline, and every row
/// is also shown relative to "ringfire".
pub const TRANSPORTS: [&str; 15] = [
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

/// Compare shmpipe with pipes, FIFOs, sockets, message queues, TCP,
/// iceoryx2, ringfire and tachyon across two processes.
#[derive(clap::Args, Debug, Clone)]
#[command(allow_negative_numbers = true)]
pub struct BenchArgs {
    /// Short time-bounded runs (the whole run takes well under 30 s).
    #[arg(long)]
    pub quick: bool,
    /// Message sizes in bytes, comma-separated, with an optional binary unit: 64, 4K, 64KiB, 1MiB.
    #[arg(
        long,
        value_delimiter = ',',
        value_parser = parse_size,
        default_value = "8,64,1024,65536"
    )]
    pub sizes: Vec<usize>,
    /// Transports to measure, comma-separated (default: all). The pipe is
    /// always measured as the baseline.
    #[arg(long, value_delimiter = ',', value_parser = parse_transport, value_name = "LIST")]
    pub transports: Option<Vec<String>>,
    /// Write every figure to FILE as JSON.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Draw throughput-vs-size and a latency chart to FILE as SVG.
    #[arg(long, value_name = "FILE.svg")]
    pub plot: Option<PathBuf>,
    /// Run only the request/response section: JSON calls to a spawned child
    /// over its stdin/stdout pipes vs. a shmpipe ring pair, 1 and 32 in flight.
    #[arg(long)]
    pub rpc: bool,
    /// Run only the paired protocol for a VM whose cross-core cost moves:
    /// N rounds of short interleaved trials (shmpipe spin/futex/drain,
    /// ringfire, limit-records, limit-slots, limit-atomic) at 8 B and 64 B,
    /// streaming and round trip; prints fast- and slow-state medians of
    /// each ratio (with --json, writes them too).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub paired: Option<u32>,
}

/// Smallest size: each message carries a 64-bit sequence number.
const MIN_SIZE: usize = 8;
/// Largest size accepted on the command line.
const MAX_SIZE: usize = 16 << 20;

/// A message size: the CLI's size syntax (`crate::args::parse_size`),
/// within what the harness can stamp and every transport can carry.
fn parse_size(s: &str) -> Result<usize, String> {
    let v = crate::args::parse_size(s)?;
    usize::try_from(v)
        .ok()
        .filter(|v| (MIN_SIZE..=MAX_SIZE).contains(v))
        .ok_or_else(|| {
            format!("size '{s}' out of range: {MIN_SIZE} bytes (room for the sequence number) to 16 MiB")
        })
}

fn parse_transport(s: &str) -> Result<String, String> {
    let t = s.trim();
    if TRANSPORTS.contains(&t) {
        Ok(t.to_string())
    } else {
        Err(format!(
            "unknown transport '{t}'; valid: {}",
            TRANSPORTS.join(", ")
        ))
    }
}

fn plan(quick: bool) -> Plan {
    if quick {
        Plan {
            warmup: Duration::from_millis(15),
            stream_reps: 3,
            stream_time: Duration::from_millis(40),
            max_stream_msgs: 50_000_000,
            latency_reps: 1,
            latency_time: Duration::from_millis(40),
            block_latency: true,
            max_round_trips: 5_000_000,
            watchdog_slack: Duration::from_secs(30),
        }
    } else {
        Plan {
            warmup: Duration::from_millis(50),
            stream_reps: 5,
            stream_time: Duration::from_millis(200),
            max_stream_msgs: 500_000_000,
            latency_reps: 3,
            latency_time: Duration::from_millis(150),
            block_latency: true,
            max_round_trips: 50_000_000,
            watchdog_slack: Duration::from_secs(30),
        }
    }
}

/// Run one session of the named transport.
fn measure(
    name: &str,
    size: usize,
    plan: &Plan,
    cpus: Option<harness::Cpus>,
    tick: impl FnMut(),
) -> SessionOut {
    use shm::Shm;
    match name {
        "pipe" => session(&fd::Pipe, size, plan, cpus, tick),
        "fifo" => session(&fd::Fifo, size, plan, cpus, tick),
        "unix-stream" => {
            let t = fd::UnixPair {
                name: "unix-stream",
                kind: nix::sys::socket::SockType::Stream,
            };
            session(&t, size, plan, cpus, tick)
        }
        "unix-seqpacket" => {
            let t = fd::UnixPair {
                name: "unix-seqpacket",
                kind: nix::sys::socket::SockType::SeqPacket,
            };
            session(&t, size, plan, cpus, tick)
        }
        "tcp" => session(&fd::Tcp, size, plan, cpus, tick),
        "mq" => session(&mq::Mq, size, plan, cpus, tick),
        "shmpipe-spin" => session(
            &Shm::<LockFree>::new("shmpipe-spin", WaitStrategy::Spin),
            size,
            plan,
            cpus,
            tick,
        ),
        "shmpipe-futex" => session(
            &Shm::<LockFree>::new("shmpipe-futex", WaitStrategy::Futex),
            size,
            plan,
            cpus,
            tick,
        ),
        "shmpipe-typed" => typed::measure(size, plan, cpus, tick),
        "shmpipe-sem" => session(
            &Shm::<LockFree>::new("shmpipe-sem", WaitStrategy::Semaphore),
            size,
            plan,
            cpus,
            tick,
        ),
        "shmpipe-locked" => session(
            &Shm::<Locked>::new("shmpipe-locked", WaitStrategy::Futex),
            size,
            plan,
            cpus,
            tick,
        ),
        "shmpipe-locked-spin" => session(
            &Shm::<Locked>::new("shmpipe-locked-spin", WaitStrategy::Spin),
            size,
            plan,
            cpus,
            tick,
        ),
        #[cfg(feature = "iceoryx2")]
        "iceoryx2" => session(&iox::Iceoryx2, size, plan, cpus, tick),
        #[cfg(feature = "ringfire")]
        "ringfire" => ringfire::measure(size, plan, cpus, tick),
        #[cfg(not(feature = "ringfire"))]
        "ringfire" => SessionOut {
            unavailable: Some(
                "this shmpipe was built without the `ringfire` cargo feature (on by default)"
                    .into(),
            ),
            ..SessionOut::default()
        },
        #[cfg(feature = "tachyon")]
        "tachyon" => session(&tachyon::Tachyon, size, plan, cpus, tick),
        #[cfg(not(feature = "tachyon"))]
        "tachyon" => SessionOut {
            unavailable: Some(
                "opt-in: build with `--features tachyon` (needs Clang >= 17 and libclang: bash .ci/setup-tachyon.sh, then CXX=clang++-19)"
                    .into(),
            ),
            ..SessionOut::default()
        },
        #[cfg(not(feature = "iceoryx2"))]
        "iceoryx2" => SessionOut {
            unavailable: Some(
                "this shmpipe was built without the `iceoryx2` cargo feature (on by default)"
                    .into(),
            ),
            ..SessionOut::default()
        },
        other => SessionOut {
            error: Some(format!("unknown transport {other}")),
            ..SessionOut::default()
        },
    }
}

/// Run the benchmark described by `args`: print the table, write the JSON
/// and SVG files asked for.
///
/// # Errors
/// A message when an output file cannot be written, or when a row FAILED
/// (its integrity check or its run); the outputs are written first.
pub fn run(args: &BenchArgs) -> Result<(), String> {
    if args.rpc {
        return rpc::run(args.quick);
    }
    if let Some(rounds) = args.paired {
        return paired::run(rounds, args.json.as_deref());
    }
    let mut names: Vec<&'static str> = match &args.transports {
        None => TRANSPORTS.to_vec(),
        Some(list) => TRANSPORTS
            .iter()
            .copied()
            .filter(|t| *t == "pipe" || list.iter().any(|l| l == t))
            .collect(),
    };
    names.dedup();
    let mut sizes = args.sizes.clone();
    sizes.sort_unstable();
    sizes.dedup();
    if sizes.is_empty() {
        return Err("no message sizes given".into());
    }
    // Fail before minutes of measuring, not after: create the output files now.
    for path in [&args.json, &args.plot].into_iter().flatten() {
        std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)
            .map_err(|e| format!("cannot write {}: {e}; nothing was measured", path.display()))?;
    }
    let plan = plan(args.quick);

    let cpus = harness::pick_cpus();
    let saved = harness::current_affinity();
    if let Some(c) = cpus {
        harness::pin(c.parent);
    }

    let total = (names.len() * sizes.len()) as u64 * plan.phase_count();
    let pb = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
    if let Ok(style) =
        ProgressStyle::with_template("{elapsed_precise} [{bar:30}] {pos}/{len} {msg}")
    {
        pb.set_style(style.progress_chars("=> "));
    }
    let started = std::time::Instant::now();
    let mut outs: Vec<Vec<SessionOut>> = names.iter().map(|_| Vec::new()).collect();
    // Size-major order: each size's baseline is measured next to the others.
    // The hardware limits are measured next to each size's rows: on a
    // shared machine the cost of a cache-line transfer between the two
    // vCPUs can change several-fold within a run, and `x limit` must
    // compare figures taken in the same conditions.
    let mut limits: Vec<(usize, Result<limit::Limits, String>)> = Vec::new();
    for &size in &sizes {
        for (i, name) in names.iter().enumerate() {
            pb.set_message(format!("{name}, {}", report::size_label(size)));
            let before = pb.position();
            let out = measure(name, size, &plan, cpus, || pb.inc(1));
            // Sessions that stopped early still advance the bar fully.
            pb.set_position(before + plan.phase_count());
            outs[i].push(out);
        }
        if names.iter().any(|n| n.starts_with("shmpipe")) {
            pb.set_message(format!(
                "hardware limit (limit-slots, limit-records, limit-memcpy, limit-atomic), {}",
                report::size_label(size)
            ));
            limits.push((size, limit::measure(cpus, args.quick, size)));
        }
    }
    pb.finish_and_clear();
    if let Some(set) = saved {
        harness::set_affinity(&set);
    }

    let res = report::Results::build(
        &names,
        &sizes,
        outs,
        &plan,
        args.quick,
        cpus,
        started.elapsed(),
    );
    print!("{}", res.table());
    let mut doc = serde_json::to_value(&res).map_err(|e| format!("encoding JSON: {e}"))?;
    let measured: Vec<(usize, &limit::Limits)> = limits
        .iter()
        .filter_map(|(size, l)| l.as_ref().ok().map(|l| (*size, l)))
        .collect();
    for (size, l) in &limits {
        if let Err(e) = l {
            println!(
                "\nhardware limit next to {}: not measured ({e})",
                report::size_label(*size)
            );
        }
    }
    if !measured.is_empty() {
        let xs = limit::ratios(&res, &measured);
        print!("{}", limit::table(&measured, &xs));
        if let Some(obj) = doc.as_object_mut() {
            let per_size: Vec<_> = measured
                .iter()
                .map(|(size, l)| serde_json::json!({ "size": size, "limits": l }))
                .collect();
            obj.insert("limits".into(), serde_json::json!(per_size));
            obj.insert("x_limit".into(), serde_json::json!(xs));
        }
    }
    if let Some(path) = &args.json {
        let text = serde_json::to_string_pretty(&doc).map_err(|e| format!("encoding JSON: {e}"))?;
        std::fs::write(path, text + "\n")
            .map_err(|e| format!("writing {}: {e}", path.display()))?;
    }
    if let Some(path) = &args.plot {
        let records: Vec<(usize, f64)> = measured
            .iter()
            .map(|(size, l)| (*size, l.records_msgs_per_sec * *size as f64 / 1e6))
            .collect();
        std::fs::write(path, plot::svg(&res, &records)?)
            .map_err(|e| format!("writing {}: {e}", path.display()))?;
    }
    let failed = res.failed_rows();
    if failed.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "{} row(s) FAILED: {}",
            failed.len(),
            failed.join(", ")
        ))
    }
}

#[cfg(test)]
mod parse_tests {
    use super::*;

    #[test]
    fn sizes_parse_with_suffixes() {
        assert_eq!(parse_size("64"), Ok(64));
        assert_eq!(parse_size("64KiB"), Ok(65536));
        assert_eq!(parse_size("4k"), Ok(4096));
        assert_eq!(parse_size("1MiB"), Ok(1 << 20));
        assert!(parse_size("2KB").is_err());
        assert!(parse_size("4").is_err());
        assert!(parse_size("64XB").is_err());
        assert!(parse_size("lots").is_err());
        assert!(parse_size("99999999999999999999").is_err());
    }

    #[test]
    fn transports_are_checked() {
        assert_eq!(parse_transport("pipe"), Ok("pipe".to_string()));
        let err = parse_transport("carrier-pigeon").unwrap_err();
        assert!(
            err.contains("shmpipe-futex") && err.contains("iceoryx2"),
            "{err}"
        );
    }
}
