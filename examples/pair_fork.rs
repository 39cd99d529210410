//! An anonymous ring shared with a forked child: no name, nothing to clean up.
//!
//! ```text
//! cargo run --release --example pair_fork
//! ```
//!
//! `Builder::anonymous()` puts the ring in a sealed memfd; after `fork()`
//! the parent attaches as the producer and the child as the consumer. The
//! child adds up what it receives until the parent closes the ring, and
//! reports the sum through its exit status.

use std::process::ExitCode;

const COUNT: u64 = 1000;

/// The child's work: receive until the producer closes; 0 if the sum is right.
fn child(pair: shmpipe::Pair) -> i32 {
    let mut rx = match pair.into_consumer() {
        Ok(rx) => rx,
        Err(_) => return 3,
    };
    let mut sum = 0u64;
    loop {
        match rx.recv_with(|m| m.try_into().map(u64::from_le_bytes)) {
            Ok(Ok(v)) => sum += v,
            Ok(Err(_)) => return 4, // not an 8-byte message
            Err(shmpipe::Error::Disconnected) => break,
            Err(_) => return 5,
        }
    }
    if sum == COUNT * (COUNT - 1) / 2 {
        0
    } else {
        6
    }
}

fn main() -> ExitCode {
    let pair = match shmpipe::Builder::new().capacity(4096).anonymous() {
        Ok(p) => p,
        Err(e) => {
            eprintln!("pair_fork: cannot create the ring: {e}");
            return ExitCode::from(1);
        }
    };

    // SAFETY: this program has a single thread; the child only uses the ring
    // and leaves with `_exit`, so it runs no code that fork() could break.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        eprintln!("pair_fork: fork: {}", std::io::Error::last_os_error());
        return ExitCode::from(1);
    }
    if pid == 0 {
        let code = child(pair);
        // SAFETY: _exit ends the child without running the parent's atexit
        // handlers or flushing its stdio buffers a second time.
        unsafe { libc::_exit(code) };
    }

    let mut tx = match pair.into_producer() {
        Ok(tx) => tx,
        Err(e) => {
            eprintln!("pair_fork: cannot attach the producer: {e}");
            return ExitCode::from(1);
        }
    };
    for i in 0..COUNT {
        if let Err(e) = tx.send(&i.to_le_bytes()) {
            eprintln!("pair_fork: send {i}: {e}");
            return ExitCode::from(1);
        }
    }
    drop(tx); // closes the ring: the child's recv returns Disconnected

    let mut status = 0;
    // SAFETY: `status` is a valid out-pointer; `pid` is our child.
    if unsafe { libc::waitpid(pid, &mut status, 0) } != pid {
        eprintln!("pair_fork: waitpid: {}", std::io::Error::last_os_error());
        return ExitCode::from(1);
    }
    if libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0 {
        println!("child received {COUNT} messages through the anonymous ring; sum checked");
        ExitCode::SUCCESS
    } else {
        eprintln!("pair_fork: the child failed (wait status {status:#x})");
        ExitCode::from(1)
    }
}
