//! Streaming through the Rust API, the reference for `bench/abi_stream.c`:
//! the same loop (parent on CPU 0 sends COUNT messages of SIZE bytes, a
//! forked child on CPU 1 receives them into a buffer), the same 1 MiB
//! anonymous futex ring. Prints messages per second. Run both with
//! `capi/bench/run.sh`.
//!
//! With a third argument `local`, one thread sends and receives each message
//! in turn on an in-process ring (see `bench/abi_stream.c`).
//!
//! Usage: `rust_stream SIZE COUNT [local]`.

use std::process::ExitCode;
use std::time::Instant;

fn pin(cpu: usize) {
    // SAFETY: a zeroed cpu_set_t is a valid empty set; CPU_SET and
    // sched_setaffinity only read and write it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
            eprintln!("sched_setaffinity: {}", std::io::Error::last_os_error());
        }
    }
}

fn local(size: usize, count: u64) -> ExitCode {
    pin(0);
    let r = (|| -> shmpipe_core::Result<f64> {
        let (mut p, mut c) = shmpipe_core::Builder::new().in_process()?.split()?;
        let msg = vec![7u8; size];
        let mut buf = vec![0u8; 65536];
        let mut bytes = 0u64;
        let t0 = Instant::now();
        for _ in 0..count {
            p.send(std::hint::black_box(&msg))?;
            bytes += c.recv_into(std::hint::black_box(&mut buf))? as u64;
        }
        let t = t0.elapsed().as_secs_f64();
        assert_eq!(bytes, count * size as u64);
        Ok(t)
    })();
    match r {
        Ok(t) => {
            println!(
                "rust-local size={size} msgs/s={:.0} ns/msg={:.2}",
                count as f64 / t,
                t * 1e9 / count as f64
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(size), Some(count)) = (
        args.first().and_then(|s| s.parse::<usize>().ok()),
        args.get(1).and_then(|s| s.parse::<u64>().ok()),
    ) else {
        eprintln!("usage: rust_stream SIZE COUNT [local]");
        return ExitCode::from(2);
    };
    if args.get(2).map(String::as_str) == Some("local") {
        return local(size, count);
    }
    let pair = match shmpipe_core::Builder::new().anonymous() {
        Ok(p) => p,
        Err(e) => {
            eprintln!("anonymous: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut buf = vec![7u8; 65536];
    // SAFETY: no other thread runs here; the child only uses the ring and exits.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        pin(1);
        let ok = (|| -> shmpipe_core::Result<bool> {
            let mut c = pair.into_consumer()?;
            let mut bytes = 0u64;
            for _ in 0..count {
                bytes += c.recv_into(&mut buf)? as u64;
            }
            c.close()?;
            Ok(bytes == count * size as u64)
        })();
        // SAFETY: _exit ends the forked child without running the parent's atexit state.
        unsafe { libc::_exit(if matches!(ok, Ok(true)) { 0 } else { 1 }) };
    }
    pin(0);
    let mut p = match pair.into_producer() {
        Ok(p) => p,
        Err(e) => {
            eprintln!("into_producer: {e}");
            return ExitCode::FAILURE;
        }
    };
    let msg = &buf[..size];
    let t0 = Instant::now();
    for _ in 0..count {
        if let Err(e) = p.send(msg) {
            eprintln!("send: {e}");
            return ExitCode::FAILURE;
        }
    }
    let mut status = 0;
    // SAFETY: waiting for our own child.
    unsafe { libc::waitpid(pid, &mut status, 0) };
    let t = t0.elapsed().as_secs_f64();
    drop(p);
    if !libc::WIFEXITED(status) || libc::WEXITSTATUS(status) != 0 {
        eprintln!("the consumer failed");
        return ExitCode::FAILURE;
    }
    println!(
        "rust size={size} msgs/s={:.0} ns/msg={:.2}",
        count as f64 / t,
        t * 1e9 / count as f64
    );
    ExitCode::SUCCESS
}
