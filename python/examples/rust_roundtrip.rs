//! The Rust library's round trip in the shape `python/bench.py` measures
//! Python's, so that `bench.py --vs-rust` can run the two interleaved and
//! print their ratio: two anonymous rings (1 MiB, the given wait strategy)
//! made before `fork()`, the child echoes every message back with the
//! blocking `recv`/`send` (the Python child does `send(recv())`), the
//! parent sends, receives the reply and checks it is the message it sent.
//! Neither process is pinned to a CPU (bench.py does not pin either).
//!
//! Timing, as in bench.py: after WARMUP round trips, COUNT round trips are
//! timed one by one (p50, p99), then COUNT more in blocks of BLOCK with one
//! clock read per block (so the clock's own cost, which is larger in
//! Python, does not count; `block_p50_us` is the median block's time per
//! round trip, and what `bench.py --vs-rust` compares).
//!
//! ```text
//! cargo build --release -p shmpipe-python --example rust_roundtrip
//! target/release/examples/rust_roundtrip SIZE COUNT WAIT [WARMUP [BLOCK]]
//! ```
//! Prints one JSON line: `{"size":..,"wait":..,"p50_us":..,"p99_us":..,
//! "block_p50_us":..,"mean_us":..}` (microseconds per round trip).

use std::process::ExitCode;
use std::time::Instant;

use shmpipe_core::{Builder, Pair, WaitStrategy};

const CAPACITY: u64 = 1 << 20;

struct Args {
    size: usize,
    count: usize,
    wait: WaitStrategy,
    warmup: usize,
    block: usize,
}

fn args() -> Result<Args, String> {
    let v: Vec<String> = std::env::args().skip(1).collect();
    if v.len() < 3 || v.len() > 5 {
        return Err("usage: rust_roundtrip SIZE COUNT WAIT [WARMUP [BLOCK]]".into());
    }
    let num = |i: usize, what: &str, default: usize| -> Result<usize, String> {
        match v.get(i) {
            None => Ok(default),
            Some(s) => s
                .parse()
                .map_err(|_| format!("{what} must be a whole number, not {s:?}")),
        }
    };
    let a = Args {
        size: num(0, "SIZE", 0)?,
        count: num(1, "COUNT", 0)?,
        wait: v[2].parse().map_err(|e| format!("WAIT: {e}"))?,
        warmup: num(3, "WARMUP", 1000)?,
        block: num(4, "BLOCK", 64)?,
    };
    let max = shmpipe_core::max_message_for(CAPACITY);
    if a.size > max {
        return Err(format!(
            "SIZE {} is above the ring's limit of {max} bytes",
            a.size
        ));
    }
    if a.count == 0 || a.block == 0 || a.count < a.block {
        return Err("COUNT and BLOCK must be at least 1, and COUNT at least BLOCK".into());
    }
    Ok(a)
}

/// The child: echo `n` messages, then exit 0 (nonzero on an error).
fn echo(ping: Pair, pong: Pair, n: usize) -> i32 {
    let (Ok(mut rx), Ok(mut tx)) = (ping.into_consumer(), pong.into_producer()) else {
        return 2;
    };
    let mut buf = Vec::new();
    for _ in 0..n {
        if rx.recv(&mut buf).is_err() || tx.send(&buf).is_err() {
            return 3;
        }
    }
    0
}

fn percentile(sorted: &[u64], q: f64) -> f64 {
    let i = ((sorted.len() as f64 * q) as usize).min(sorted.len() - 1);
    sorted[i] as f64 / 1e3
}

fn run(a: &Args) -> Result<String, String> {
    let b = Builder::new().capacity(CAPACITY).wait(a.wait);
    let ping = b.anonymous().map_err(|e| e.to_string())?;
    let pong = b.anonymous().map_err(|e| e.to_string())?;
    let total = a.warmup + 2 * a.count;
    // SAFETY: this program has one thread here; the child only runs `echo`
    // (allocation, the rings) and `_exit`s.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(format!("fork: {}", std::io::Error::last_os_error()));
    }
    if pid == 0 {
        let rc = echo(ping, pong, total);
        // SAFETY: leaves the child at once, without running the parent's
        // atexit handlers or destructors twice.
        unsafe { libc::_exit(rc) };
    }
    let mut tx = ping.into_producer().map_err(|e| e.to_string())?;
    let mut rx = pong.into_consumer().map_err(|e| e.to_string())?;
    let mut msg = vec![0u8; a.size];
    let mut reply = Vec::with_capacity(a.size);
    let mut one = Vec::with_capacity(a.count);
    let mut blocks = Vec::with_capacity(a.count / a.block);
    let mut bad = 0usize;
    let mut seq = 0u64;
    let mut round_trip =
        |tx: &mut shmpipe_core::Producer, rx: &mut shmpipe_core::Consumer| -> Result<(), String> {
            // Every message differs (a sequence number in its first bytes), and
            // the reply must be the message sent (compared inside the timed
            // region, as bench.py does).
            let n = msg.len().min(8);
            msg[..n].copy_from_slice(&seq.to_le_bytes()[..n]);
            seq += 1;
            tx.send(&msg).map_err(|e| e.to_string())?;
            rx.recv(&mut reply).map_err(|e| e.to_string())?;
            bad += usize::from(reply != msg);
            Ok(())
        };
    for _ in 0..a.warmup {
        round_trip(&mut tx, &mut rx)?;
    }
    for _ in 0..a.count {
        let t0 = Instant::now();
        round_trip(&mut tx, &mut rx)?;
        one.push(t0.elapsed().as_nanos() as u64);
    }
    let start = Instant::now();
    for _ in 0..a.count / a.block {
        let t0 = Instant::now();
        for _ in 0..a.block {
            round_trip(&mut tx, &mut rx)?;
        }
        blocks.push(t0.elapsed().as_nanos() as u64 / a.block as u64);
    }
    let timed = (a.count / a.block * a.block) as f64;
    let mean = start.elapsed().as_nanos() as f64 / timed / 1e3;
    // The rest of the echoes the child owes.
    for _ in 0..a.count % a.block {
        round_trip(&mut tx, &mut rx)?;
    }
    let mut status = 0;
    // SAFETY: waits for our own child.
    unsafe { libc::waitpid(pid, &mut status, 0) };
    if !libc::WIFEXITED(status) || libc::WEXITSTATUS(status) != 0 {
        return Err(format!("the echo child failed (wait status {status})"));
    }
    if bad > 0 {
        return Err(format!("{bad} replies differed from the message sent"));
    }
    one.sort_unstable();
    blocks.sort_unstable();
    let wait = a.wait.name();
    Ok(format!(
        "{{\"size\":{},\"wait\":\"{wait}\",\"count\":{},\"p50_us\":{:.4},\"p99_us\":{:.4},\
         \"block_p50_us\":{:.4},\"mean_us\":{mean:.4}}}",
        a.size,
        one.len(),
        percentile(&one, 0.5),
        percentile(&one, 0.99),
        percentile(&blocks, 0.5),
    ))
}

fn main() -> ExitCode {
    match args().and_then(|a| run(&a)) {
        Ok(line) => {
            println!("{line}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("rust_roundtrip: {e}");
            ExitCode::FAILURE
        }
    }
}
