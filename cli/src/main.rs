//! `shmpipe`: move bytes between processes through a shared-memory ring,
//! look at rings, clean them up, and check the ring under load.
//!
//! ```text
//! $ shmpipe read /demo | sha256sum &            # ring -> stdout, like a FIFO's reader
//! $ shmpipe write /demo -c 1MiB < big.bin       # stdin -> ring (created if needed)
//! $ shmpipe write /jobs --variant locked < jobs.bin &
//! $ shmpipe inspect /jobs --json                # header, fill level, counters, endpoints
//! $ shmpipe ls                                  # the shmpipe segments in /dev/shm
//! $ shmpipe rm /jobs
//! $ shmpipe stress --seconds 5 --variant locked # forked pair, every message verified
//! $ shmpipe bench --quick                       # against pipes, sockets, mqueues, TCP
//! ```
//!
//! `shmpipe --help` and each subcommand's `--help` give the options and
//! the exit statuses.

mod args;
mod bench;
mod fail;
mod pipe;
mod segments;
mod shm;
mod stress;

use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};

use fail::Fail;

const AFTER_HELP: &str = "\
Segment names are POSIX shared-memory names: '/' followed by 1 to 255 characters
without '/', e.g. /demo; the segment is the file /dev/shm/demo.

Sizes are byte counts with an optional binary unit: 4096, 64K, 64KiB, 1M, 1MiB,
1G, 1GiB (K = KiB = 1024 bytes; decimal units such as KB are refused). A ring
capacity must be a power of two from 64 bytes to 4GiB.

Exit status: 0 success; 1 runtime failure (missing or damaged segment, peer
died, timeout, discrepancy found...); 2 usage error (unknown option, bad name,
bad size or capacity...); 130, 143, 129 when `write` or `read` was stopped by
SIGINT, SIGTERM or SIGHUP (after closing its side in order and removing a
segment nobody else holds). Errors are printed on stderr as `shmpipe: ...`.

Example:
  shmpipe read /demo | sha256sum &
  shmpipe write /demo < big.bin";

/// Lock-free shared-memory message ring: pipe data, inspect and manage rings.
#[derive(Parser, Debug)]
#[command(name = "shmpipe", version, after_help = AFTER_HELP)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    // A doc comment on a variant sets both `about` and `long_about`, and wins
    // over a `long_about` on the args struct; so each long text is given
    // here, next to the one-line summary.
    /// Copy stdin into a ring (creating it if needed) until end of file.
    #[command(long_about = pipe::WRITE_ABOUT)]
    Write(pipe::WriteArgs),
    /// Copy a ring to stdout until its writer closes it.
    #[command(long_about = pipe::READ_ABOUT)]
    Read(pipe::ReadArgs),
    /// Show a segment's header, fill level, counters and endpoint states.
    #[command(long_about = segments::INSPECT_ABOUT)]
    Inspect(segments::InspectArgs),
    /// List the shmpipe segments in /dev/shm.
    #[command(long_about = segments::LS_ABOUT)]
    Ls(segments::LsArgs),
    /// Remove shmpipe segments.
    #[command(long_about = segments::RM_ABOUT)]
    Rm(segments::RmArgs),
    /// Check a ring under load: forked producer and consumer, every message verified.
    #[command(long_about = stress::STRESS_ABOUT)]
    Stress(stress::StressArgs),
    /// Compare shmpipe with pipes, sockets, message queues, TCP and iceoryx2.
    Bench(bench::BenchArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let (name, r) = match &cli.cmd {
        Cmd::Write(a) => ("write", pipe::write(a)),
        Cmd::Read(a) => ("read", pipe::read(a)),
        Cmd::Inspect(a) => ("inspect", segments::inspect(a)),
        Cmd::Ls(a) => ("ls", segments::ls(a)),
        Cmd::Rm(a) => ("rm", segments::rm(a)),
        Cmd::Stress(a) => ("stress", stress::run(a)),
        Cmd::Bench(a) => ("bench", bench::run(a).map_err(Fail::Runtime)),
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(Fail::Runtime(msg)) => {
            eprintln!("shmpipe: {name}: {msg}");
            ExitCode::from(1)
        }
        Err(Fail::Signal { signal, msg }) => {
            eprintln!("shmpipe: {name}: {msg}");
            ExitCode::from(u8::try_from(128 + signal).unwrap_or(1))
        }
        Err(Fail::Usage(msg)) => {
            let mut cmd = Cli::command();
            let mut c = match cmd.find_subcommand_mut(name) {
                Some(sub) => sub.clone().bin_name(format!("shmpipe {name}")),
                None => cmd,
            };
            c.error(clap::error::ErrorKind::ValueValidation, msg).exit()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }
}
