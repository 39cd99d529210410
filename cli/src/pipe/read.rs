//! `shmpipe read NAME`: the ring to stdout, two-phase (a message is
//! released only once it was written out).

use std::io;
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use clap::Args;
use shmpipe::{AnyConsumer, Error};

use super::open::{interrupted, note_existing, open_end, orphaned, tidy, CreateOpts, FileId, Role};
use super::signals::{Stop, SLICE};
use super::stdio::{write_fd, Stopped};
use crate::args::{parse_name, parse_seconds};
use crate::fail::{CmdResult, Fail};
use crate::shm::describe;

/// `shmpipe read --help`.
pub const READ_ABOUT: &str =
    "Copy the ring NAME to stdout until its writer closes it, then remove \
the segment (unless --keep) and exit 0. May be started before or after `write`: the segment is \
created if it does not exist. A message is released from the ring only once it was written to \
stdout, so a reader that is killed loses nothing: the next reader starts with the message that \
was being written out. If the writer dies without closing, everything it committed is written \
out first, then read exits 1 and keeps the segment. SIGINT, SIGTERM and SIGHUP close the consumer \
side in order, remove the segment if no live writer holds it, and exit 130, 143 or 129; a closed \
stdout (`shmpipe read NAME | head -c 10`) closes it too, and the writer, ending last, removes it.";

/// `shmpipe read`.
#[derive(Args, Debug)]
#[command(allow_negative_numbers = true)] // "-5" reaches the value parser, which says why it is wrong
pub struct ReadArgs {
    /// Segment name: '/' followed by 1 to 255 characters (the file /dev/shm/NAME)
    #[arg(value_parser = parse_name)]
    pub name: String,
    #[command(flatten)]
    pub create: CreateOpts,
    /// Give up (exit 1) if no data and no close arrives for this many seconds
    #[arg(long, short, value_parser = parse_seconds, value_name = "SECONDS")]
    pub timeout: Option<Duration>,
    /// Keep the segment after the writer closed it (default: remove it)
    #[arg(long, short)]
    pub keep: bool,
}

/// `shmpipe read NAME`.
pub fn read(a: &ReadArgs) -> CmdResult {
    let stop = Stop::install()?;
    let name = &a.name;
    let o = open_end(name, &a.create, Role::Consumer, |b| {
        b.open_or_create_consumer(name)
    })?;
    read_with(a, &stop, o.end, o.id)
}

/// How the copy loop ended.
enum End {
    Closed,
    Signal(i32),
    Failed(String),
}

fn read_with(a: &ReadArgs, stop: &Stop, mut c: AnyConsumer, id: Option<FileId>) -> CmdResult {
    let name = &a.name;
    note_existing(name, &a.create, c.capacity(), c.wait_strategy());
    let stdout = io::stdout();
    let out = stdout.as_fd();
    let mut total: u64 = 0;
    let mut idle_since = Instant::now();
    let end = loop {
        if let Some(s) = stop.signal() {
            break End::Signal(s);
        }
        let slice = match a.timeout {
            Some(t) => SLICE.min((idle_since + t).saturating_duration_since(Instant::now())),
            None => SLICE,
        };
        // Two-phase receive: the message stays in the ring until it has
        // been written out; then it is released.
        let msg = match c.peek_timeout(slice) {
            Ok(msg) => msg,
            Err(Error::Timeout) => {
                if a.timeout.is_some_and(|t| idle_since.elapsed() >= t) {
                    break End::Failed(format!(
                        "no data from the writer of {name} for {:?}; giving up after {total} bytes",
                        a.timeout.unwrap_or_default()
                    ));
                }
                if orphaned(name, id, c.peer_status()) {
                    break End::Failed(format!(
                        "{name} was removed while this reader waited for a writer (a writer \
                         started with another --variant removes it, as does `shmpipe rm`); \
                         nothing was received"
                    ));
                }
                continue;
            }
            Err(Error::Disconnected) => break End::Closed,
            Err(Error::PeerDied) => {
                break End::Failed(format!(
                    "the writer (producer) of {name} died without closing the ring; \
                     all {total} bytes it committed were written out; segment kept \
                     (see `shmpipe inspect {name}`, remove with `shmpipe rm {name}`)"
                ))
            }
            Err(e) => {
                break End::Failed(format!(
                    "{}; the {total} bytes received before it were written out",
                    describe(name, &e)
                ))
            }
        };
        match write_fd(out, &msg, stop) {
            Ok(()) => {
                total += msg.len() as u64;
                msg.release();
                idle_since = Instant::now();
            }
            // Not released: the next reader gets this message again.
            Err(Stopped::Signal(s)) => break End::Signal(s),
            Err(Stopped::Io(e)) if e.kind() == io::ErrorKind::BrokenPipe => {
                break End::Failed(format!(
                    "stdout was closed (broken pipe) after {total} bytes; stopped reading {name} \
                     and closed its consumer side"
                ))
            }
            Err(Stopped::Io(e)) => break End::Failed(format!("writing stdout: {e}")),
        }
    };
    if let Err(e) = c.close() {
        eprintln!("shmpipe: note: closing the consumer side of {name}: {e}");
    }
    let tidied = if a.keep {
        Ok(false)
    } else {
        tidy(name, id, Role::Consumer, true)
    };
    match end {
        End::Closed => tidied
            .map(|_| ())
            .map_err(|e| Fail::Runtime(format!("{e} after the writer closed it"))),
        End::Signal(s) => Err(interrupted(s, total, Role::Consumer, name, tidied)),
        End::Failed(msg) => Err(Fail::Runtime(msg)),
    }
}
