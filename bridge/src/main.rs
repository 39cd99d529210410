//! `shmpipe-bridge`: carry a shmpipe ring across machines over zenoh.
//!
//! ```text
//! # host B: subscribe, feed the local ring /rx, read it
//! B$ shmpipe-bridge in demo/ring /rx --listen tcp/0.0.0.0:7447 &
//! B$ shmpipe read /rx > copy.bin
//! # host A: consume the local ring /tx, publish it
//! A$ shmpipe-bridge out /tx demo/ring --connect tcp/HOST_B:7447 &
//! A$ shmpipe write /tx < data.bin
//! ```
//!
//! `out` consumes a local ring and publishes each message as one zenoh
//! sample; `in` subscribes and produces each sample into a local ring. See
//! `bridge/README.md` for the guarantees and the failure outcomes.

mod args;
mod bench;
mod inbound;
mod ledger;
mod out;
mod rings;
mod session;
mod signals;
mod stats;
mod track;
mod wire;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use shmpipe::WaitStrategy;

use args::{parse_capacity, parse_key, parse_name, parse_seconds};

/// Bridge shmpipe rings over zenoh (peer to peer, no router).
#[derive(Parser, Debug)]
#[command(name = "shmpipe-bridge", version, after_help = AFTER_HELP)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

const AFTER_HELP: &str = "\
Example (host A has the producer, host B the consumer):
  B$ shmpipe-bridge in demo/ring /rx --listen tcp/0.0.0.0:7447 & shmpipe read /rx > out.bin
  A$ shmpipe-bridge out /tx demo/ring --connect tcp/B:7447 & shmpipe write /tx < in.bin

Stats go to stderr on exit, on SIGUSR1 and every --stats-interval.
SIGINT/SIGTERM stop a bridge cleanly (its ring side is closed, not abandoned).
Exit status: 0 done; 1 runtime failure (or a stream with lost messages); 2 usage error.";

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Consume the local ring RING and publish each message on KEYEXPR.
    Out(OutArgs),
    /// Subscribe to KEYEXPR and produce each message into the local ring RING.
    In(InArgs),
    /// Measure the bridge against plain zenoh pub/sub and TCP (see bridge/README.md).
    Bench(bench::BenchArgs),
}

#[derive(Args, Debug, Clone)]
struct NetArgs {
    /// Connect to this zenoh endpoint, e.g. tcp/192.0.2.1:7447 (repeatable; retried until it answers)
    #[arg(long, value_name = "ENDPOINT")]
    connect: Vec<String>,
    /// Listen on this zenoh endpoint, e.g. tcp/0.0.0.0:7447 (repeatable)
    #[arg(long, value_name = "ENDPOINT")]
    listen: Vec<String>,
    /// A zenoh JSON5 configuration file (then mode, scouting etc. are its own;
    /// --connect/--listen still override its endpoints)
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Print stats every this many seconds (also on SIGUSR1 and on exit)
    #[arg(long, value_parser = parse_seconds, value_name = "SECONDS")]
    stats_interval: Option<Duration>,
    /// Data-area size if this bridge creates the ring: a power of two from 64
    /// to 4GiB [default: 1MiB]. An existing ring keeps its own.
    #[arg(long, short, value_parser = parse_capacity, value_name = "BYTES")]
    capacity: Option<u64>,
    /// How idle sides of the ring wait, if this bridge creates it
    #[arg(long, value_enum, default_value = "futex")]
    wait: WaitArg,
}

#[derive(Args, Debug)]
struct OutArgs {
    /// Local ring to consume: '/' and 1 to 255 characters (/dev/shm/NAME)
    #[arg(value_parser = parse_name)]
    ring: String,
    /// zenoh key expression to publish on, e.g. demo/ring
    #[arg(value_parser = parse_key)]
    key: String,
    #[command(flatten)]
    net: NetArgs,
    /// After the stream ended, wait at most this long for `in` to take the end marker
    #[arg(long, value_parser = parse_seconds, default_value = "10", value_name = "SECONDS")]
    linger: Duration,
    /// Keep RING in /dev/shm when its producer closed it and everything was
    /// published (by default `out` then removes it, unless a new producer
    /// has attached meanwhile)
    #[arg(long)]
    keep_ring: bool,
}

#[derive(Args, Debug)]
struct InArgs {
    /// zenoh key expression to subscribe to
    #[arg(value_parser = parse_key)]
    key: String,
    /// Local ring to produce into: '/' and 1 to 255 characters (/dev/shm/NAME)
    #[arg(value_parser = parse_name)]
    ring: String,
    #[command(flatten)]
    net: NetArgs,
    /// Remember what was delivered in FILE, so that an `in` restarted after a
    /// crash reports exactly which messages its reader never got
    #[arg(long, value_name = "FILE")]
    state: Option<PathBuf>,
}

#[derive(ValueEnum, Debug, Clone, Copy)]
enum WaitArg {
    Spin,
    SpinYield,
    Futex,
    Semaphore,
}

impl From<WaitArg> for WaitStrategy {
    fn from(w: WaitArg) -> Self {
        match w {
            WaitArg::Spin => WaitStrategy::Spin,
            WaitArg::SpinYield => WaitStrategy::SpinYield,
            WaitArg::Futex => WaitStrategy::Futex,
            WaitArg::Semaphore => WaitStrategy::Semaphore,
        }
    }
}

impl NetArgs {
    fn net(&self) -> session::Net {
        session::Net {
            connect: self.connect.clone(),
            listen: self.listen.clone(),
            config: self.config.clone(),
        }
    }
    fn create(&self) -> rings::Create {
        rings::Create {
            capacity: self.capacity.unwrap_or(shmpipe::DEFAULT_CAPACITY),
            wait: self.wait.into(),
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    bench::pin_from_env();
    let sig = match signals::Signals::install() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("shmpipe-bridge: {e}");
            return ExitCode::from(1);
        }
    };
    let (name, r) = match &cli.cmd {
        Cmd::Out(a) => (
            "out",
            out::run(
                &out::Opts {
                    ring: a.ring.clone(),
                    key: a.key.clone(),
                    net: a.net.net(),
                    create: a.net.create(),
                    stats_interval: a.net.stats_interval,
                    linger: a.linger,
                    keep_ring: a.keep_ring,
                },
                &sig,
            ),
        ),
        Cmd::In(a) => (
            "in",
            inbound::run(
                &inbound::Opts {
                    key: a.key.clone(),
                    ring: a.ring.clone(),
                    net: a.net.net(),
                    create: a.net.create(),
                    stats_interval: a.net.stats_interval,
                    state: a.state.clone(),
                },
                &sig,
            ),
        ),
        Cmd::Bench(a) => ("bench", bench::run(a).map(|()| 0)),
    };
    match r {
        Ok(status) => ExitCode::from(status),
        Err(msg) => {
            eprintln!("shmpipe-bridge {name}: {msg}");
            ExitCode::from(1)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn no_endpoint_is_a_clear_error() {
        let e = session::config(&session::Net::default()).unwrap_err();
        assert!(e.contains("--connect"), "{e}");
        let c = session::config(&session::Net {
            connect: vec!["tcp/127.0.0.1:7447".into()],
            ..Default::default()
        });
        assert!(c.is_ok());
    }
}
