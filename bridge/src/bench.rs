//! `shmpipe-bridge bench`: the bridge next to plain zenoh pub/sub and a TCP
//! socket, on the same path (loopback, and a veth pair between two network
//! namespaces when run as root), same message sizes and counts for all.
//!
//! Each transport moves N timestamped messages from a sender to a receiver
//! in another process (for the bridge: producer thread -> ring -> `out` ->
//! zenoh -> `in` -> ring -> consumer thread). Throughput is measured at the
//! receiver from the first message to the last; latency is one-way (sender
//! and receiver share CLOCK_MONOTONIC, network namespaces do not change
//! it), with messages paced 1 ms apart. The sending side is pinned to CPU 0
//! and the receiving side to CPU 1. Each figure is the median of `--runs`.

use std::io::{BufRead, BufReader, BufWriter, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use clap::Args;
use shmpipe::{Builder, Error};
use zenoh::handlers::FifoChannel;
use zenoh::qos::CongestionControl;
use zenoh::Wait;

/// `shmpipe-bridge bench` options.
#[derive(Args, Debug)]
pub struct BenchArgs {
    /// Runs per figure (the median is reported)
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Message sizes (bytes, K/KiB allowed), comma-separated; at least 16
    #[arg(long, value_delimiter = ',', default_value = "64,64K", value_parser = crate::args::parse_size)]
    sizes: Vec<u64>,
    /// Only the loopback path (skip the veth pair even as root)
    #[arg(long)]
    loopback_only: bool,
    /// Internal: run as a helper process (zsub, zpub, tcprecv, tcpsend)
    #[arg(long, hide = true)]
    role: Option<String>,
    /// Internal: endpoint / address for the helper
    #[arg(long, hide = true, default_value = "")]
    addr: String,
    /// Internal: message size for the helper
    #[arg(long, hide = true, default_value_t = 64)]
    size: usize,
    /// Internal: message count for the helper
    #[arg(long, hide = true, default_value_t = 0)]
    count: u64,
    /// Internal: microseconds between messages (0: back to back)
    #[arg(long, hide = true, default_value_t = 0)]
    interval_us: u64,
    /// Internal: CPU to pin the helper to
    #[arg(long, hide = true)]
    cpu: Option<usize>,
}

/// CLOCK_MONOTONIC in nanoseconds: the same clock in every process here.
fn now_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Pin the calling thread (and threads it creates later) to `cpu`.
fn pin(cpu: usize) {
    // SAFETY: a zeroed cpu_set_t is a valid empty set; CPU_SET and
    // sched_setaffinity only read and write it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

/// What the receiver measured.
#[derive(Debug, Default)]
struct Recv {
    /// Warm-up messages still to ignore.
    skip: u64,
    first: Option<u64>,
    last: u64,
    n: u64,
    bytes: u64,
    lat_ns: Vec<u64>,
}

impl Recv {
    fn new() -> Recv {
        Recv {
            skip: WARM,
            ..Recv::default()
        }
    }

    fn take(&mut self, msg: &[u8]) {
        if self.skip > 0 {
            self.skip -= 1;
            return;
        }
        let t = now_ns();
        if msg.len() >= 8 {
            let mut w = [0u8; 8];
            w.copy_from_slice(&msg[..8]);
            self.lat_ns.push(t.saturating_sub(u64::from_le_bytes(w)));
        }
        self.first.get_or_insert(t);
        self.last = t;
        self.n += 1;
        self.bytes += msg.len() as u64;
    }
    /// "RESULT msgs_per_s mb_per_s p50_us p99_us"
    fn line(&mut self) -> String {
        let dt = self.last.saturating_sub(self.first.unwrap_or(self.last)) as f64 / 1e9;
        let (rate, mbps) = if self.n > 1 && dt > 0.0 {
            ((self.n - 1) as f64 / dt, self.bytes as f64 / dt / 1e6)
        } else {
            (0.0, 0.0)
        };
        self.lat_ns.sort_unstable();
        let pct = |p: f64| -> f64 {
            if self.lat_ns.is_empty() {
                return 0.0;
            }
            let i = ((self.lat_ns.len() - 1) as f64 * p).round() as usize;
            self.lat_ns[i] as f64 / 1e3
        };
        format!(
            "RESULT {rate:.0} {mbps:.1} {:.1} {:.1}",
            pct(0.5),
            pct(0.99)
        )
    }
}

/// Fill a message: send time, then filler.
fn stamp(buf: &mut [u8]) {
    buf[..8].copy_from_slice(&now_ns().to_le_bytes());
}

fn pace(interval_us: u64, start: Instant, i: u64) {
    if interval_us > 0 {
        let due = start + Duration::from_micros(interval_us * i);
        let now = Instant::now();
        if due > now {
            thread::sleep(due - now);
        }
    }
}

fn zconfig(connect: Option<&str>, listen: Option<&str>) -> Result<zenoh::Config, String> {
    crate::session::config(&crate::session::Net {
        connect: connect.map(|s| vec![s.to_string()]).unwrap_or_default(),
        listen: listen.map(|s| vec![s.to_string()]).unwrap_or_default(),
        config: None,
    })
}

const KEY: &str = "shmpipe-bridge/bench";
/// Messages every sender sends first and every receiver ignores: the path
/// settles (connections, routes, caches) before anything is measured.
const WARM: u64 = 20;

fn helper(a: &BenchArgs) -> Result<(), String> {
    if let Some(c) = a.cpu {
        pin(c);
    }
    let role = a.role.as_deref().unwrap_or("");
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut r = Recv::new();
    match role {
        "zsub" => {
            let s = zenoh::open(zconfig(None, Some(&a.addr))?)
                .wait()
                .map_err(|e| e.to_string())?;
            let sub = s
                .declare_subscriber(KEY)
                .with(FifoChannel::new(256))
                .wait()
                .map_err(|e| e.to_string())?;
            println!("READY");
            while r.n < a.count && Instant::now() < deadline {
                if let Ok(Some(sample)) = sub.recv_timeout(Duration::from_millis(100)) {
                    r.take(&sample.payload().to_bytes());
                }
            }
            println!("{}", r.line());
            let _ = s.close().wait();
        }
        "zpub" => {
            let s = zenoh::open(zconfig(Some(&a.addr), None)?)
                .wait()
                .map_err(|e| e.to_string())?;
            let p = s
                .declare_publisher(KEY)
                .congestion_control(CongestionControl::Block)
                .wait()
                .map_err(|e| e.to_string())?;
            while !p
                .matching_status()
                .wait()
                .map(|m| m.matching())
                .unwrap_or(false)
            {
                if Instant::now() > deadline {
                    return Err("no subscriber".into());
                }
                thread::sleep(Duration::from_millis(10));
            }
            let mut buf = vec![0u8; a.size];
            let start = Instant::now();
            for i in 0..a.count + WARM {
                pace(a.interval_us, start, i);
                stamp(&mut buf);
                p.put(buf.clone()).wait().map_err(|e| e.to_string())?;
            }
            // Let the last samples leave before the session closes.
            thread::sleep(Duration::from_millis(500));
            let _ = s.close().wait();
        }
        "tcprecv" => {
            let l = TcpListener::bind(&a.addr).map_err(|e| format!("bind {}: {e}", a.addr))?;
            println!("READY");
            let (sock, _) = l.accept().map_err(|e| e.to_string())?;
            let mut rd = BufReader::with_capacity(1 << 16, sock);
            let mut buf = vec![0u8; a.size];
            while r.n < a.count {
                let mut len = [0u8; 4];
                rd.read_exact(&mut len).map_err(|e| e.to_string())?;
                let n = u32::from_le_bytes(len) as usize;
                buf.resize(n, 0);
                rd.read_exact(&mut buf).map_err(|e| e.to_string())?;
                r.take(&buf);
            }
            println!("{}", r.line());
        }
        "tcpsend" => {
            let sock = loop {
                match TcpStream::connect(&a.addr) {
                    Ok(s) => break s,
                    Err(_) if Instant::now() < deadline => thread::sleep(Duration::from_millis(10)),
                    Err(e) => return Err(format!("connect {}: {e}", a.addr)),
                }
            };
            sock.set_nodelay(true).map_err(|e| e.to_string())?;
            let mut w = BufWriter::with_capacity(1 << 16, sock);
            let mut buf = vec![0u8; a.size];
            let start = Instant::now();
            for i in 0..a.count + WARM {
                pace(a.interval_us, start, i);
                stamp(&mut buf);
                w.write_all(&(a.size as u32).to_le_bytes())
                    .and_then(|()| w.write_all(&buf))
                    .map_err(|e| e.to_string())?;
                if a.interval_us > 0 {
                    w.flush().map_err(|e| e.to_string())?;
                }
            }
            w.flush().map_err(|e| e.to_string())?;
        }
        other => return Err(format!("unknown bench role {other:?}")),
    }
    Ok(())
}

/// A path between the sending and the receiving side.
struct Path {
    name: &'static str,
    /// Namespaces for the sending and receiving side (None: this one).
    ns: Option<(String, String)>,
    /// Address of the receiving side.
    ip: &'static str,
}

fn ip(args: &[&str]) -> Result<(), String> {
    let o = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("ip: {e}"))?;
    if o.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&o.stderr).trim()
        ))
    }
}

/// The veth pair between two namespaces; removed on drop.
struct Veth(String, String);

impl Veth {
    fn new() -> Result<Veth, String> {
        let pid = std::process::id();
        let v = Veth(format!("spbbench-{pid}-a"), format!("spbbench-{pid}-b"));
        ip(&["netns", "add", &v.0])?;
        ip(&["netns", "add", &v.1])?;
        let (da, db) = (format!("sba{pid}"), format!("sbb{pid}"));
        ip(&[
            "link", "add", &da, "netns", &v.0, "type", "veth", "peer", "name", &db, "netns", &v.1,
        ])?;
        ip(&["-n", &v.0, "addr", "add", "10.231.78.1/30", "dev", &da])?;
        ip(&["-n", &v.1, "addr", "add", "10.231.78.2/30", "dev", &db])?;
        for (ns, d) in [(&v.0, &da), (&v.1, &db)] {
            ip(&["-n", ns, "link", "set", d, "up"])?;
            ip(&["-n", ns, "link", "set", "lo", "up"])?;
        }
        Ok(v)
    }
}

impl Drop for Veth {
    fn drop(&mut self) {
        let _ = ip(&["netns", "del", &self.0]);
        let _ = ip(&["netns", "del", &self.1]);
    }
}

fn spawn(ns: Option<&str>, args: &[String], env_cpu: Option<usize>) -> Result<Child, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let mut c = match ns {
        Some(ns) => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", ns]).arg(&exe);
            c
        }
        None => Command::new(&exe),
    };
    if let Some(cpu) = env_cpu {
        c.env("SHMPIPE_BRIDGE_CPU", cpu.to_string());
    }
    c.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("spawn: {e}"))
}

fn wait_ready(c: &mut Child) -> Result<BufReader<std::process::ChildStdout>, String> {
    let out = c.stdout.take().ok_or("no stdout")?;
    let mut rd = BufReader::new(out);
    let mut line = String::new();
    rd.read_line(&mut line).map_err(|e| e.to_string())?;
    if line.trim() != "READY" {
        return Err(format!("helper said {line:?}"));
    }
    Ok(rd)
}

fn result_of(rd: &mut BufReader<std::process::ChildStdout>) -> Result<[f64; 4], String> {
    let mut line = String::new();
    rd.read_line(&mut line).map_err(|e| e.to_string())?;
    let v: Vec<f64> = line
        .trim()
        .strip_prefix("RESULT ")
        .ok_or_else(|| format!("helper said {line:?}"))?
        .split(' ')
        .filter_map(|x| x.parse().ok())
        .collect();
    if v.len() != 4 {
        return Err(format!("helper said {line:?}"));
    }
    Ok([v[0], v[1], v[2], v[3]])
}

fn helper_args(
    role: &str,
    addr: &str,
    size: usize,
    count: u64,
    interval_us: u64,
    cpu: usize,
) -> Vec<String> {
    [
        "bench",
        "--role",
        role,
        "--addr",
        addr,
        "--size",
        &size.to_string(),
        "--count",
        &count.to_string(),
        "--interval-us",
        &interval_us.to_string(),
        "--cpu",
        &cpu.to_string(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// One run of plain zenoh or TCP: [msgs/s, MB/s, p50 us, p99 us].
fn run_pair(
    p: &Path,
    kind: &str,
    size: usize,
    count: u64,
    interval_us: u64,
    port: u16,
) -> Result<[f64; 4], String> {
    let (ns_s, ns_r) = match &p.ns {
        Some((a, b)) => (Some(a.as_str()), Some(b.as_str())),
        None => (None, None),
    };
    let (recv_role, send_role, raddr) = match kind {
        "zenoh" => ("zsub", "zpub", format!("tcp/{}:{port}", p.ip)),
        _ => ("tcprecv", "tcpsend", format!("{}:{port}", p.ip)),
    };
    let mut r = spawn(
        ns_r,
        &helper_args(recv_role, &raddr, size, count, interval_us, 1),
        None,
    )?;
    let mut rd = wait_ready(&mut r)?;
    let mut s = spawn(
        ns_s,
        &helper_args(send_role, &raddr, size, count, interval_us, 0),
        None,
    )?;
    let res = result_of(&mut rd);
    let _ = s.wait();
    let _ = r.wait();
    res
}

/// One run of the bridge: [msgs/s, MB/s, p50 us, p99 us].
fn run_bridge(
    p: &Path,
    size: usize,
    count: u64,
    interval_us: u64,
    port: u16,
) -> Result<[f64; 4], String> {
    let pid = std::process::id();
    let tag = format!("{pid}-{port}");
    let (tx, rx) = (format!("/spbbench-tx-{tag}"), format!("/spbbench-rx-{tag}"));
    let cap = (2 * (size as u64 + 64)).next_power_of_two().max(1 << 20);
    let mut cons = Builder::new()
        .capacity(cap)
        .unlink_on_drop(true)
        .create_consumer(&rx)
        .map_err(|e| e.to_string())?;
    let mut prod = Builder::new()
        .capacity(cap)
        .unlink_on_drop(true)
        .create_producer(&tx)
        .map_err(|e| e.to_string())?;
    let ep = format!("tcp/{}:{port}", p.ip);
    let (ns_s, ns_r) = match &p.ns {
        Some((a, b)) => (Some(a.as_str()), Some(b.as_str())),
        None => (None, None),
    };
    let key = format!("bench/{tag}");
    let args = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let mut inb = spawn(ns_r, &args(&["in", &key, &rx, "--listen", &ep]), Some(1))?;
    let mut out = spawn(ns_s, &args(&["out", &tx, &key, "--connect", &ep]), Some(0))?;
    let first_in = Arc::new(AtomicBool::new(false));
    let f2 = Arc::clone(&first_in);
    let reader = thread::spawn(move || -> Result<Recv, String> {
        pin(1);
        let mut r = Recv::new();
        loop {
            match cons.recv_with_timeout(Duration::from_secs(60), |m| r.take(m)) {
                Ok(()) => f2.store(true, Ordering::Release),
                Err(Error::Disconnected) => break,
                Err(e) => return Err(e.to_string()),
            }
        }
        Ok(r)
    });
    pin(0);
    let mut buf = vec![0u8; size];
    let mut start = Instant::now();
    for i in 0..count + WARM {
        if i == 1 {
            // The path is up once the first message arrived.
            while !first_in.load(Ordering::Acquire) {
                thread::sleep(Duration::from_millis(1));
            }
            start = Instant::now();
        }
        pace(interval_us, start, i);
        stamp(&mut buf);
        prod.send(&buf).map_err(|e| e.to_string())?;
    }
    prod.close().map_err(|e| e.to_string())?;
    let mut r = reader.join().map_err(|_| "reader panicked")??;
    let _ = out.wait();
    let _ = inb.wait();
    let line = r.line();
    let v: Vec<f64> = line[7..]
        .split(' ')
        .filter_map(|x| x.parse().ok())
        .collect();
    Ok([v[0], v[1], v[2], v[3]])
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// Run the benchmark (or a helper role).
pub fn run(a: &BenchArgs) -> Result<(), String> {
    if a.role.is_some() {
        return helper(a);
    }
    if a.runs == 0 {
        return Err("--runs must be at least 1".into());
    }
    if let Some(s) = a.sizes.iter().find(|&&s| !(16..=(1 << 24)).contains(&s)) {
        return Err(format!("message size {s} not allowed: 16 bytes to 16MiB"));
    }
    let mut paths = vec![Path {
        name: "loopback",
        ns: None,
        ip: "127.0.0.1",
    }];
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    let _veth = if !a.loopback_only && root {
        match Veth::new() {
            Ok(v) => {
                paths.push(Path {
                    name: "veth",
                    ns: Some((v.0.clone(), v.1.clone())),
                    ip: "10.231.78.2",
                });
                Some(v)
            }
            Err(e) => {
                eprintln!("bench: skipping the veth path: {e}");
                None
            }
        }
    } else {
        if !a.loopback_only {
            eprintln!("bench: skipping the veth path (needs root)");
        }
        None
    };
    let mut port = 17_000 + (std::process::id() % 20_000) as u16;
    println!("path      size   transport  throughput msg/s     MB/s   latency p50 us   p99 us   (median of {})", a.runs);
    for p in &paths {
        for &size in &a.sizes {
            let size = size as usize;
            let count = if size <= 1024 {
                200_000
            } else {
                (256 << 20) as u64 / size as u64
            };
            let lat_count = 500;
            let mut rows: Vec<(&str, [f64; 4])> = Vec::new();
            for kind in ["bridge", "zenoh", "tcp"] {
                let mut t = Vec::new();
                let mut l = Vec::new();
                for _ in 0..a.runs {
                    port += 1;
                    let tr = match kind {
                        "bridge" => run_bridge(p, size, count, 0, port)?,
                        _ => run_pair(p, kind, size, count, 0, port)?,
                    };
                    port += 1;
                    let lr = match kind {
                        "bridge" => run_bridge(p, size, lat_count, 1000, port)?,
                        _ => run_pair(p, kind, size, lat_count, 1000, port)?,
                    };
                    t.push(tr);
                    l.push(lr);
                }
                let m = [
                    median(t.iter().map(|x| x[0]).collect()),
                    median(t.iter().map(|x| x[1]).collect()),
                    median(l.iter().map(|x| x[2]).collect()),
                    median(l.iter().map(|x| x[3]).collect()),
                ];
                println!(
                    "{:<9} {:>6} {:<10} {:>16.0} {:>8.1} {:>16.1} {:>8.1}",
                    p.name, size, kind, m[0], m[1], m[2], m[3]
                );
                rows.push((kind, m));
            }
            let b = rows[0].1;
            for (kind, m) in &rows[1..] {
                println!(
                    "{:<9} {:>6} bridge/{:<6} throughput x{:.2}, latency p50 x{:.2}",
                    p.name,
                    size,
                    kind,
                    b[0] / m[0].max(1e-9),
                    b[2] / m[2].max(1e-9)
                );
            }
        }
    }
    Ok(())
}

/// Pin the whole process if `SHMPIPE_BRIDGE_CPU` is set (the benchmark
/// uses it for the bridges it starts).
pub fn pin_from_env() {
    if let Some(cpu) = std::env::var("SHMPIPE_BRIDGE_CPU")
        .ok()
        .and_then(|s| s.parse::<usize>().ok())
    {
        pin(cpu);
    }
}
