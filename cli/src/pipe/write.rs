//! `shmpipe write NAME`: stdin into the ring.

use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::time::{Duration, Instant};

use clap::Args;
use shmpipe::{AnyProducer, Error, VariantKind};

use super::open::{interrupted, note_existing, open_end, orphaned, tidy, CreateOpts, FileId, Role};
use super::signals::{Stop, SLICE};
use super::stdio::{read_fd, wait_readable, Stopped};
use crate::args::{human_size, parse_name, parse_nonzero_size, parse_seconds};
use crate::fail::{CmdResult, Fail};
use crate::shm::describe;

/// `shmpipe write --help` (set on the subcommand in main.rs, where it is not
/// overridden by the subcommand's doc comment).
pub const WRITE_ABOUT: &str = "Copy stdin into the ring NAME until end of file, then close the \
producer side and exit 0. The segment is created if it does not exist (and is left in place for a \
reader started later); if it exists, write attaches to it as its producer. Blocks while the ring \
is full. Exits 1 if the reader closes or dies before all input was delivered. If write itself \
fails (--timeout, a read error on stdin), it leaves the producer side unclosed, so that the reader \
reports an incomplete transfer instead of a clean end. SIGINT, SIGTERM and SIGHUP close the \
producer side in order (the reader sees the end of the stream, as with a pipe), remove the \
segment if this command created it and no reader ever attached, and exit 130, 143 or 129.";

/// `shmpipe write`.
#[derive(Args, Debug)]
#[command(allow_negative_numbers = true)] // "-5" reaches the value parser, which says why it is wrong
pub struct WriteArgs {
    /// Segment name: '/' followed by 1 to 255 characters (the file /dev/shm/NAME)
    #[arg(value_parser = parse_name)]
    pub name: String,
    #[command(flatten)]
    pub create: CreateOpts,
    /// Largest message to send (each read of stdin becomes one message)
    /// [default: the smallest of 1MiB, capacity/4 and the ring's largest message]
    #[arg(long, value_parser = parse_nonzero_size, value_name = "BYTES")]
    pub message_size: Option<u64>,
    /// Give up (exit 1) if the ring stays full for this many seconds (e.g. 10 or 0.5)
    #[arg(long, short, value_parser = parse_seconds, value_name = "SECONDS")]
    pub timeout: Option<Duration>,
}

/// `shmpipe write NAME`.
pub fn write(a: &WriteArgs) -> CmdResult {
    if let (Some(cap), Some(ms)) = (a.create.capacity, a.message_size) {
        let max = shmpipe::max_message_for(cap) as u64;
        if ms > max {
            return Err(Fail::Usage(format!(
                "--message-size {ms} exceeds the largest message of a {} ring ({max} bytes)",
                human_size(cap)
            )));
        }
    }
    let stop = Stop::install()?;
    let name = &a.name;
    let o = open_end(name, &a.create, Role::Producer, |b| {
        b.open_or_create_producer(name)
    })?;
    write_with(a, &stop, o.end, o.created, o.id)
}

/// Leave the producer role unclosed: when this process exits, the kernel
/// releases the role lock and the reader reports that the writer went away
/// without closing (an incomplete transfer), instead of a clean end. The
/// library has no "abandon" call, so the handle is leaked on purpose: its
/// drop would close the role.
fn abandon(p: AnyProducer) {
    std::mem::forget(p);
}

fn write_with(
    a: &WriteArgs,
    stop: &Stop,
    mut p: AnyProducer,
    created: bool,
    id: Option<FileId>,
) -> CmdResult {
    let name = &a.name;
    note_existing(name, &a.create, p.capacity(), p.wait_strategy());
    let max = p.max_message();
    let chunk = match a.message_size {
        Some(ms) => {
            if ms > max as u64 {
                return Err(Fail::Runtime(format!(
                    "--message-size {ms} exceeds the largest message of {name} ({max} bytes)"
                )));
            }
            ms as usize
        }
        None => max.min((p.capacity() / 4) as usize).clamp(1, 1 << 20),
    };
    let stdin = io::stdin();
    let mut buf = vec![0u8; chunk];
    let mut total = 0u64;
    let r = pump_in(
        &mut p,
        stdin.as_fd(),
        &mut buf,
        a.timeout,
        stop,
        name,
        id,
        &mut total,
    );
    // Close in order (and tidy up) unless the transfer failed on our side.
    let in_order = matches!(
        r,
        Ok(()) | Err(PumpError::Signal(_) | PumpError::Gone | PumpError::Ring(Error::Disconnected))
    );
    if !in_order {
        abandon(p);
    } else if let Err(e) = p.close() {
        eprintln!("shmpipe: note: closing the producer side of {name}: {e}");
    }
    let unfinished = r.is_err();
    let tidied = || tidy(name, id, Role::Producer, created && unfinished);
    match r {
        Ok(()) => tidied().map(|_| ()).map_err(Fail::Runtime),
        Err(PumpError::Signal(s)) => Err(interrupted(s, total, Role::Producer, name, tidied())),
        Err(PumpError::Gone) => Err(Fail::Runtime(format!(
            "{name} was removed while this writer waited for a reader (a reader started with \
             another --variant removes it, as does `shmpipe rm`); {total} bytes were not delivered"
        ))),
        Err(PumpError::Ring(e)) => {
            if in_order {
                let _ = tidied(); // the reader closed first: we end last
            }
            Err(Fail::Runtime(match e {
                Error::Disconnected => {
                    format!("the reader closed its side of {name} before all input was delivered")
                }
                Error::PeerDied => {
                    format!("the reader (consumer) of {name} died; input not fully delivered")
                }
                Error::Timeout => format!(
                    "{name} stayed full for {:?} (is a reader running?); giving up",
                    a.timeout.unwrap_or_default()
                ),
                e => describe(name, &e),
            }))
        }
        Err(PumpError::Stdin(e)) => Err(Fail::Runtime(format!(
            "reading stdin: {e}; the ring is left unclosed so the reader sees an incomplete transfer"
        ))),
    }
}

enum PumpError {
    Ring(Error),
    Stdin(io::Error),
    Signal(i32),
    /// The segment's name went away while no reader had attached.
    Gone,
}

impl From<Stopped> for PumpError {
    fn from(s: Stopped) -> Self {
        match s {
            Stopped::Signal(s) => PumpError::Signal(s),
            Stopped::Io(e) => PumpError::Stdin(e),
        }
    }
}

/// Copy stdin into the ring until end of file.
#[allow(clippy::too_many_arguments)]
fn pump_in(
    p: &mut AnyProducer,
    stdin: BorrowedFd<'_>,
    buf: &mut [u8],
    timeout: Option<Duration>,
    stop: &Stop,
    name: &str,
    id: Option<FileId>,
    total: &mut u64,
) -> Result<(), PumpError> {
    let chunk = buf.len();
    // Zero-copy path (lock-free only: a locked claim holds the mutex,
    // which must not be held across a read of stdin that may block).
    let zero_copy = p.kind() == VariantKind::LockFree;
    loop {
        wait_readable(
            stdin,
            stop,
            || match orphaned(name, id, p.peer_status()) {
                true => Err(PumpError::Gone),
                false => Ok(()),
            },
            PumpError::Signal,
        )?;
        if zero_copy {
            match p.try_claim(chunk) {
                Ok(mut claim) => {
                    let n = read_fd(stdin, &mut claim, stop)?; // an error drops (aborts) the claim
                    if n == 0 {
                        drop(claim); // abort: nothing to send
                        return Ok(());
                    }
                    claim.commit_len(n);
                    *total += n as u64;
                    continue;
                }
                Err(Error::Full) => {} // read first, then wait for room
                Err(e) => return Err(PumpError::Ring(e)),
            }
        }
        let n = read_fd(stdin, buf, stop)?;
        if n == 0 {
            return Ok(());
        }
        send_sliced(p, &buf[..n], timeout, stop, name, id)?;
        *total += n as u64;
    }
}

/// A blocking send in slices of [`SLICE`], between which signals, the
/// `--timeout` deadline and the segment's name are checked.
fn send_sliced(
    p: &mut AnyProducer,
    msg: &[u8],
    timeout: Option<Duration>,
    stop: &Stop,
    name: &str,
    id: Option<FileId>,
) -> Result<(), PumpError> {
    let deadline = timeout.map(|t| Instant::now() + t);
    loop {
        let slice = match deadline {
            Some(d) => SLICE.min(d.saturating_duration_since(Instant::now())),
            None => SLICE,
        };
        match p.send_timeout(msg, slice) {
            Ok(()) => return Ok(()),
            Err(Error::Timeout) => {}
            Err(e) => return Err(PumpError::Ring(e)),
        }
        if let Some(s) = stop.signal() {
            return Err(PumpError::Signal(s));
        }
        if orphaned(name, id, p.peer_status()) {
            return Err(PumpError::Gone);
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            return Err(PumpError::Ring(Error::Timeout));
        }
    }
}
