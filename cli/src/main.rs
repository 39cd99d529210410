//! `shmpipe`: move bytes between processes through a shared-memory ring,
//! look at rings, clean them up, and check the ring under load.

mod args;
mod bench;
mod pipe;
mod segments;
mod stress;

use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};

const AFTER_HELP: &str = "\
Segment names are POSIX shared-memory names: '/' followed by 1 to 255 characters
without '/', e.g. /demo; the segment is the file /dev/shm/demo.

Sizes are byte counts with an optional binary unit: 4096, 64K, 64KiB, 1M, 1MiB,
1G, 1GiB (K = KiB = 1024 bytes; decimal units such as KB are refused). A ring
capacity must be a power of two from 64 bytes to 4GiB.

Exit status: 0 success; 1 runtime failure (missing or damaged segment, peer
died, timeout, discrepancy found...); 2 usage error (unknown option, bad name,
bad size or capacity...). Errors are printed on stderr as `shmpipe: ...`.

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
    /// Copy stdin into a ring (creating it if needed) until end of file.
    Write(pipe::WriteArgs),
    /// Copy a ring to stdout until its writer closes it.
    Read(pipe::ReadArgs),
    /// Show a segment's header, fill level, counters and endpoint states.
    Inspect(segments::InspectArgs),
    /// List the shmpipe segments in /dev/shm.
    Ls(segments::LsArgs),
    /// Remove shmpipe segments.
    Rm(segments::RmArgs),
    /// Check a ring under load: forked producer and consumer, every message verified.
    Stress(stress::StressArgs),
    /// Compare shmpipe with pipes, sockets, message queues, TCP and iceoryx2.
    Bench(bench::BenchArgs),
}

/// Why a command failed.
#[derive(Debug)]
pub enum Fail {
    /// The arguments do not make sense together (exit status 2).
    Usage(String),
    /// Something went wrong while running (exit status 1).
    Runtime(String),
}

/// What every command returns.
pub type CmdResult = Result<(), Fail>;

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
