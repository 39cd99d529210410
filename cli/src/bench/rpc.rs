//! `shmpipe bench --rpc`: the seed article's last design against ours. A
//! parent spawns a child and the two exchange JSON request/response
//! messages (≈200 bytes each way, `serde_json` on both sides, every
//! response matched to its request by the JSON id):
//!
//! - **pipes**: JSON Lines over the child's stdin/stdout, one line per
//!   message, flushed per message, as the article's SDK does;
//! - **shmpipe**: the same JSON over a `shmpipe::process::spawn`ed ring pair
//!   (`rpc::Client` / `rpc::Server`, futex waits).
//!
//! Each is run with 1 and with 32 requests in flight; the figures are round
//! trips per second (median of the repetitions) and the p50/p99 latency of
//! one request (from the merged histogram), with shmpipe's rate as a ratio
//! of the pipes' at the same depth. The child is this binary re-invoked
//! with [`CHILD_ENV`] set; parent and child are pinned to different CPUs.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};
use shmpipe::rpc::Client;

use super::harness;

/// Set in the child: `pipes` or `shmpipe` (the transport it serves on).
pub const CHILD_ENV: &str = "SHMPIPE_BENCH_RPC_CHILD";
/// Set in the child: the CPU to pin itself to.
const CPU_ENV: &str = "SHMPIPE_BENCH_RPC_CPU";
/// Depths measured.
const DEPTHS: [usize; 2] = [1, 32];
/// Padding that brings a request to about 200 bytes of JSON.
const TEXT: &str =
    "the quick brown fox jumps over the lazy dog, then files a bug report about the dog, and one more";

#[derive(Serialize, Deserialize)]
struct Arguments {
    text: String,
}

#[derive(Serialize, Deserialize)]
struct Params {
    name: String,
    arguments: Arguments,
}

/// A JSON-RPC 2.0 request, as an MCP-style tool call.
#[derive(Serialize, Deserialize)]
struct Request {
    jsonrpc: String,
    id: u64,
    method: String,
    params: Params,
}

#[derive(Serialize, Deserialize)]
struct Content {
    #[serde(rename = "type")]
    kind: String,
    text: String,
}

#[derive(Serialize, Deserialize)]
struct Outcome {
    content: Vec<Content>,
    #[serde(rename = "isError")]
    is_error: bool,
}

#[derive(Serialize, Deserialize)]
struct Response {
    jsonrpc: String,
    id: u64,
    result: Outcome,
}

fn request(id: u64) -> Vec<u8> {
    let r = Request {
        jsonrpc: "2.0".into(),
        id,
        method: "tools/call".into(),
        params: Params {
            name: "echo".into(),
            arguments: Arguments { text: TEXT.into() },
        },
    };
    serde_json::to_vec(&r).unwrap_or_default()
}

/// The child's work for one request: decode it, answer it.
fn handle(req: &[u8]) -> Vec<u8> {
    let resp = match serde_json::from_slice::<Request>(req) {
        Ok(r) => Response {
            jsonrpc: r.jsonrpc,
            id: r.id,
            result: Outcome {
                content: vec![Content {
                    kind: "text".into(),
                    text: r.params.arguments.text,
                }],
                is_error: false,
            },
        },
        Err(e) => Response {
            jsonrpc: "2.0".into(),
            id: 0,
            result: Outcome {
                content: vec![Content {
                    kind: "text".into(),
                    text: format!("bad request: {e}"),
                }],
                is_error: true,
            },
        },
    };
    serde_json::to_vec(&resp).unwrap_or_default()
}

/// The JSON id of a response (the parent decodes every response in full).
fn response_id(resp: &[u8]) -> Result<u64, String> {
    let r: Response =
        serde_json::from_slice(resp).map_err(|e| format!("undecodable response: {e}"))?;
    if r.result.is_error {
        return Err("the child reported an error".into());
    }
    Ok(r.id)
}

/// In the child (when [`CHILD_ENV`] is set): serve until the parent closes.
pub fn child(mode: &str) -> Result<(), String> {
    if let Some(cpu) = std::env::var(CPU_ENV).ok().and_then(|c| c.parse().ok()) {
        harness::pin(cpu);
    }
    match mode {
        "pipes" => {
            let mut input = std::io::stdin().lock();
            let mut out = BufWriter::new(std::io::stdout().lock());
            let mut line = Vec::new();
            loop {
                line.clear();
                let n = input
                    .read_until(b'\n', &mut line)
                    .map_err(|e| format!("reading stdin: {e}"))?;
                if n == 0 {
                    return Ok(());
                }
                let resp = handle(line.strip_suffix(b"\n").unwrap_or(&line));
                out.write_all(&resp)
                    .and_then(|()| out.write_all(b"\n"))
                    .and_then(|()| out.flush())
                    .map_err(|e| format!("writing stdout: {e}"))?;
            }
        }
        "shmpipe" => {
            let mut server = shmpipe::process::Duplex::from_env()
                .map_err(|e| e.to_string())?
                .into_server();
            server.serve(handle).map_err(|e| e.to_string())
        }
        other => Err(format!("unknown rpc bench child mode {other}")),
    }
}

/// One request/response channel to a child.
trait Link {
    fn send(&mut self, body: &[u8]) -> Result<(), String>;
    fn recv(&mut self) -> Result<Vec<u8>, String>;
}

struct Pipes {
    tx: BufWriter<ChildStdin>,
    rx: BufReader<ChildStdout>,
}

impl Link for Pipes {
    fn send(&mut self, body: &[u8]) -> Result<(), String> {
        self.tx
            .write_all(body)
            .and_then(|()| self.tx.write_all(b"\n"))
            .and_then(|()| self.tx.flush())
            .map_err(|e| format!("writing to the child: {e}"))
    }
    fn recv(&mut self) -> Result<Vec<u8>, String> {
        let mut line = Vec::with_capacity(256);
        match self.rx.read_until(b'\n', &mut line) {
            Ok(0) => Err("the child closed its stdout".into()),
            Ok(_) => {
                line.pop();
                Ok(line)
            }
            Err(e) => Err(format!("reading from the child: {e}")),
        }
    }
}

struct Shm {
    client: Client,
}

const SHM_TIMEOUT: Duration = Duration::from_secs(30);

impl Link for Shm {
    fn send(&mut self, body: &[u8]) -> Result<(), String> {
        self.client
            .send_request(body)
            .map(drop)
            .map_err(|e| e.to_string())
    }
    fn recv(&mut self) -> Result<Vec<u8>, String> {
        self.client
            .recv_response_timeout(SHM_TIMEOUT)
            .map(|(_, body)| body)
            .map_err(|e| e.to_string())
    }
}

/// One timed run at one depth.
struct Run {
    rate: f64,
    hist: Histogram<u64>,
}

fn drive(
    link: &mut dyn Link,
    depth: usize,
    warmup: Duration,
    time: Duration,
) -> Result<Run, String> {
    let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3)
        .map_err(|e| format!("histogram: {e}"))?;
    let mut pending: HashMap<u64, Instant> = HashMap::new();
    let mut next = 0u64;
    let start = Instant::now();
    let (from, until) = (start + warmup, start + warmup + time);
    let mut counted = 0u64;
    loop {
        let now = Instant::now();
        if now < until {
            while pending.len() < depth {
                link.send(&request(next))?;
                pending.insert(next, Instant::now());
                next += 1;
            }
        } else if pending.is_empty() {
            break;
        }
        let resp = link.recv()?;
        let done = Instant::now();
        let id = response_id(&resp)?;
        let sent = pending
            .remove(&id)
            .ok_or_else(|| format!("response to id {id}, which is not in flight"))?;
        if sent >= from && done <= until {
            counted += 1;
            let ns = done.duration_since(sent).as_nanos().min(u64::MAX as u128) as u64;
            hist.saturating_record(ns.max(1));
        }
    }
    Ok(Run {
        rate: counted as f64 / time.as_secs_f64(),
        hist,
    })
}

fn spawn_child(mode: &str, cpu: Option<usize>) -> Result<Command, String> {
    let exe = std::env::current_exe().map_err(|e| format!("finding our own binary: {e}"))?;
    let mut cmd = Command::new(exe);
    cmd.args(["bench", "--rpc"]).env(CHILD_ENV, mode);
    if let Some(c) = cpu {
        cmd.env(CPU_ENV, c.to_string());
    }
    Ok(cmd)
}

fn reap(mut child: Child) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match child.try_wait() {
            Ok(Some(s)) if s.success() => return Ok(()),
            Ok(Some(s)) => return Err(format!("the child ended with {s}")),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(5)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err("the child did not exit after its input closed; killed it".into());
            }
            Err(e) => return Err(format!("waiting for the child: {e}")),
        }
    }
}

/// Figures for one transport at one depth.
struct Row {
    transport: &'static str,
    depth: usize,
    rate: f64,
    p50_us: f64,
    p99_us: f64,
}

fn measure(
    transport: &'static str,
    cpu: Option<usize>,
    reps: usize,
    warmup: Duration,
    time: Duration,
) -> Result<Vec<Row>, String> {
    let mut cmd = spawn_child(
        if transport == "pipes" {
            "pipes"
        } else {
            "shmpipe"
        },
        cpu,
    )?;
    let (child, mut link): (Child, Box<dyn Link>) = if transport == "pipes" {
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|e| format!("spawning the child: {e}"))?;
        let (Some(tx), Some(rx)) = (child.stdin.take(), child.stdout.take()) else {
            return Err("the child's pipes are missing".into());
        };
        let link = Pipes {
            tx: BufWriter::new(tx),
            rx: BufReader::new(rx),
        };
        (child, Box::new(link))
    } else {
        cmd.stdin(Stdio::null()).stdout(Stdio::null());
        let builder = shmpipe::Builder::new().capacity(256 * 1024);
        let (child, duplex) =
            shmpipe::process::spawn(&mut cmd, &builder).map_err(|e| e.to_string())?;
        (
            child,
            Box::new(Shm {
                client: duplex.into_client(),
            }),
        )
    };
    let mut rows = Vec::new();
    for depth in DEPTHS {
        let mut rates = Vec::new();
        let mut merged = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3)
            .map_err(|e| format!("histogram: {e}"))?;
        for _ in 0..reps {
            let run = drive(link.as_mut(), depth, warmup, time)?;
            rates.push(run.rate);
            merged
                .add(&run.hist)
                .map_err(|e| format!("histogram: {e}"))?;
        }
        rates.sort_by(f64::total_cmp);
        rows.push(Row {
            transport,
            depth,
            rate: rates[rates.len() / 2],
            p50_us: merged.value_at_quantile(0.5) as f64 / 1000.0,
            p99_us: merged.value_at_quantile(0.99) as f64 / 1000.0,
        });
    }
    drop(link); // closes stdin, or the rings: the child's loop ends
    reap(child)?;
    Ok(rows)
}

/// Run the section (or, in a child started by it, serve).
///
/// # Errors
/// A message if a child cannot be spawned or a response is missing or wrong.
pub fn run(quick: bool) -> Result<(), String> {
    if let Ok(mode) = std::env::var(CHILD_ENV) {
        return child(&mode);
    }
    let (reps, warmup, time) = if quick {
        (1, Duration::from_millis(50), Duration::from_millis(200))
    } else {
        (3, Duration::from_millis(200), Duration::from_secs(1))
    };
    let cpus = harness::pick_cpus();
    let saved = harness::current_affinity();
    if let Some(c) = cpus {
        harness::pin(c.parent);
    }
    let child_cpu = cpus.map(|c| c.child);
    let result = (|| {
        let mut rows = measure("pipes", child_cpu, reps, warmup, time)?;
        rows.extend(measure("shmpipe", child_cpu, reps, warmup, time)?);
        Ok::<_, String>(rows)
    })();
    if let Some(set) = saved {
        harness::set_affinity(&set);
    }
    let rows = result?;
    let req = request(1_000_000).len();
    let resp = handle(&request(1_000_000)).len();
    println!(
        "rpc: parent <-> spawned child, JSON-RPC request {req} B / response {resp} B (serde_json both sides), {reps} rep(s) x {time:?}, {}",
        match cpus {
            Some(c) => format!("CPUs {} and {}", c.parent, c.child),
            None => "not pinned".into(),
        }
    );
    println!(
        "{:<28} {:>9} {:>15} {:>10} {:>10} {:>9}",
        "transport", "in flight", "round trips/s", "p50 us", "p99 us", "vs pipes"
    );
    for r in &rows {
        let base = rows
            .iter()
            .find(|b| b.transport == "pipes" && b.depth == r.depth)
            .map_or(f64::NAN, |b| b.rate);
        let label = match r.transport {
            "pipes" => "stdin/stdout JSON Lines",
            _ => "shmpipe duplex (spawned)",
        };
        println!(
            "{:<28} {:>9} {:>15.0} {:>10.1} {:>10.1} {:>8.2}x",
            label,
            r.depth,
            r.rate,
            r.p50_us,
            r.p99_us,
            r.rate / base
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_and_responses_are_about_200_bytes_and_match() {
        let req = request(123_456);
        let resp = handle(&req);
        assert!((180..=240).contains(&req.len()), "request {} B", req.len());
        assert!(
            (180..=240).contains(&resp.len()),
            "response {} B",
            resp.len()
        );
        assert_eq!(response_id(&resp), Ok(123_456));
        assert!(response_id(&handle(b"not json")).is_err());
    }
}
