//! `shmpipe write` and `shmpipe read`: a named ring used like a FIFO.
//!
//! Either side may start first: both open the segment with
//! `open_or_create_*`, so whichever comes first creates it (race-free) and
//! the other attaches. Neither unlinks on drop; `read` removes the segment
//! after an orderly close (unless `--keep`).

use std::fs::File;
use std::io::{self, Read, Write};
use std::mem::ManuallyDrop;
use std::os::fd::FromRawFd;
use std::time::{Duration, Instant};

use clap::Args;
use shmpipe::{Error, GenericBuilder, GenericConsumer, GenericProducer, LockFree, Locked, Variant};

use crate::args::{
    parse_capacity, parse_name, parse_nonzero_size, parse_seconds, VariantArg, WaitArg,
};
use crate::{CmdResult, Fail};

/// Options shared by `write` and `read` for creating the segment.
#[derive(Args, Debug, Clone)]
pub struct CreateOpts {
    /// Data-area size if this command creates the segment: a power of two
    /// from 64 to 4GiB [default: 1MiB]. An existing segment keeps its own.
    #[arg(long, short, value_parser = parse_capacity, value_name = "BYTES")]
    pub capacity: Option<u64>,
    /// How idle sides wait, if this command creates the segment [default: futex]
    #[arg(long, value_enum, value_name = "STRATEGY")]
    pub wait: Option<WaitArg>,
    /// Ring design if this command creates the segment [default: lockfree].
    /// An existing segment's design is detected; giving a different one is an error.
    #[arg(long, value_enum)]
    pub variant: Option<VariantArg>,
}

/// `shmpipe write`.
#[derive(Args, Debug)]
#[command(
    long_about = "Copy stdin into the ring NAME until end of file, then close the producer side \
and exit. The segment is created if it does not exist (and is left in place for a reader \
started later); if it exists, write attaches to it as its producer. Blocks while the ring is \
full. Exits 1 if the reader closes or dies before all input was delivered. If write itself fails \
(--timeout, a read error on stdin), it leaves the producer side unclosed, so that the reader \
reports an incomplete transfer instead of a clean end."
)]
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

/// `shmpipe read`.
#[derive(Args, Debug)]
#[command(
    long_about = "Copy the ring NAME to stdout until its writer closes it, then remove the segment \
(unless --keep) and exit 0. May be started before or after `write`: the segment is created if it \
does not exist. If the writer dies without closing, everything it committed is written out first, \
then read exits 1 and keeps the segment."
)]
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

/// How long to wait for a segment being created by a peer to be ready
/// while detecting its variant.
const DETECT_TIMEOUT: Duration = Duration::from_secs(1);

/// Describe a library error about segment `name` for the user.
pub fn describe(name: &str, e: &Error) -> String {
    match e {
        Error::NotFound { .. } => format!("{name}: no such segment"),
        Error::RoleTaken { role } => format!(
            "{name}: another live process is already the {role} of this ring ({} is running)",
            if *role == "producer" {
                "a writer"
            } else {
                "a reader"
            }
        ),
        e => format!("{name}: {e}"),
    }
}

fn is_not_found(e: &Error) -> bool {
    matches!(e, Error::NotFound { .. })
}

/// The variant to open `name` with: the segment's own if it exists, else the
/// flag (default lock-free). An explicit flag that disagrees is an error.
fn detect_variant(name: &str, explicit: Option<VariantArg>) -> Result<VariantArg, Fail> {
    let start = Instant::now();
    loop {
        match shmpipe::inspect(name) {
            Ok(info) => {
                let found = VariantArg::from_lib_name(info.variant).ok_or_else(|| {
                    Fail::Runtime(format!("{name}: unknown ring variant {:?}", info.variant))
                })?;
                if let Some(want) = explicit {
                    if want != found {
                        return Err(Fail::Runtime(format!(
                            "{name} is a {} ring, but --variant {} was given; pass --variant {} or leave --variant out",
                            found.lib_name(),
                            want.flag(),
                            found.flag()
                        )));
                    }
                }
                return Ok(found);
            }
            Err(e) if is_not_found(&e) => return Ok(explicit.unwrap_or(VariantArg::LockFree)),
            // Being created by a peer right now: give it a moment.
            Err(Error::NotInitialized { .. }) if start.elapsed() < DETECT_TIMEOUT => {
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(e) => return Err(Fail::Runtime(describe(name, &e))),
        }
    }
}

fn builder<V: Variant>(opts: &CreateOpts) -> GenericBuilder<V> {
    let mut b = GenericBuilder::<V>::default()
        .unlink_on_drop(false)
        .capacity(opts.capacity.unwrap_or(shmpipe::DEFAULT_CAPACITY));
    if let Some(w) = opts.wait {
        b = b.wait(w.into());
    }
    b
}

/// Open `name` with `open` for the detected variant, retrying the detection
/// once if another process created the segment with the other variant in
/// between.
fn with_variant<T>(
    name: &str,
    explicit: Option<VariantArg>,
    mut open: impl FnMut(VariantArg) -> Result<T, Error>,
) -> Result<T, Fail> {
    let mut variant = detect_variant(name, explicit)?;
    for attempt in 0..2 {
        match open(variant) {
            Ok(t) => return Ok(t),
            Err(Error::WrongVariant { .. }) if attempt == 0 => {
                variant = detect_variant(name, explicit)?;
            }
            Err(e) => return Err(Fail::Runtime(describe(name, &e))),
        }
    }
    Err(Fail::Runtime(format!(
        "{name}: the segment changed variant while being opened; try again"
    )))
}

/// Note on stderr when an existing segment differs from explicit options.
fn note_existing(name: &str, opts: &CreateOpts, capacity: u64, wait: shmpipe::WaitStrategy) {
    if let Some(c) = opts.capacity {
        if c != capacity {
            eprintln!(
                "shmpipe: note: {name} already exists with capacity {}; --capacity {} ignored",
                crate::args::human_size(capacity),
                crate::args::human_size(c)
            );
        }
    }
    if let Some(w) = opts.wait {
        let w: shmpipe::WaitStrategy = w.into();
        if w != wait {
            eprintln!("shmpipe: note: {name} already exists with wait strategy {wait}; --wait {w} ignored");
        }
    }
}

// ---------------------------------------------------------------------------
// write

enum Prod {
    LockFree(GenericProducer<LockFree>),
    Locked(GenericProducer<Locked>),
}

/// `shmpipe write NAME`.
pub fn write(a: &WriteArgs) -> CmdResult {
    if let (Some(cap), Some(ms)) = (a.create.capacity, a.message_size) {
        let max = shmpipe::max_message_for(cap) as u64;
        if ms > max {
            return Err(Fail::Usage(format!(
                "--message-size {ms} exceeds the largest message of a {} ring ({max} bytes)",
                crate::args::human_size(cap)
            )));
        }
    }
    let name = &a.name;
    let prod = with_variant(name, a.create.variant, |v| match v {
        VariantArg::LockFree => builder::<LockFree>(&a.create)
            .open_or_create_producer(name)
            .map(Prod::LockFree),
        VariantArg::Locked => builder::<Locked>(&a.create)
            .open_or_create_producer(name)
            .map(Prod::Locked),
    })?;
    match prod {
        Prod::LockFree(p) => write_with(a, p),
        Prod::Locked(p) => write_with(a, p),
    }
}

fn write_with<V: Variant>(a: &WriteArgs, mut p: GenericProducer<V>) -> CmdResult {
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
    let mut stdin = io::stdin().lock();
    let mut buf = vec![0u8; chunk];
    let send_err = |e: Error| -> Fail {
        Fail::Runtime(match e {
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
        })
    };
    match pump_in(&mut p, &mut stdin, &mut buf, chunk, a.timeout) {
        Ok(()) => {
            drop(p); // orderly close: the reader drains what is left, then sees the end
            Ok(())
        }
        Err(e) => {
            // Abandon, do not close: a reader must not mistake a failed
            // transfer for a complete one. When this process exits, the
            // kernel releases the producer's role lock, and the reader
            // reports that the writer went away without closing.
            std::mem::forget(p);
            Err(match e {
                PumpError::Ring(e) => send_err(e),
                PumpError::Stdin(e) => Fail::Runtime(format!(
                    "reading stdin: {e}; the ring is left unclosed so the reader sees an incomplete transfer"
                )),
            })
        }
    }
}

enum PumpError {
    Ring(Error),
    Stdin(io::Error),
}

/// Copy stdin into the ring until end of file.
fn pump_in<V: Variant>(
    p: &mut GenericProducer<V>,
    stdin: &mut impl Read,
    buf: &mut [u8],
    chunk: usize,
    timeout: Option<Duration>,
) -> Result<(), PumpError> {
    loop {
        // Zero-copy path (lock-free only: a locked claim holds the mutex,
        // which must not be held across a read of stdin that may block).
        if V::NAME == LockFree::NAME {
            match p.try_claim(chunk) {
                Ok(mut claim) => {
                    let n = read_some(stdin, &mut claim)?;
                    if n == 0 {
                        drop(claim); // abort: nothing to send
                        return Ok(());
                    }
                    claim.commit_len(n);
                    continue;
                }
                Err(Error::Full) => {} // read first, then wait for room
                Err(e) => return Err(PumpError::Ring(e)),
            }
        }
        let n = read_some(stdin, buf)?;
        if n == 0 {
            return Ok(());
        }
        let r = match timeout {
            Some(t) => p.send_timeout(&buf[..n], t),
            None => p.send(&buf[..n]),
        };
        r.map_err(PumpError::Ring)?;
    }
}

/// One read of stdin (retrying on EINTR); 0 at end of file.
fn read_some(r: &mut impl Read, buf: &mut [u8]) -> Result<usize, PumpError> {
    loop {
        match r.read(buf) {
            Ok(n) => return Ok(n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(PumpError::Stdin(e)),
        }
    }
}

// ---------------------------------------------------------------------------
// read

enum Cons {
    LockFree(GenericConsumer<LockFree>),
    Locked(GenericConsumer<Locked>),
}

/// `shmpipe read NAME`.
pub fn read(a: &ReadArgs) -> CmdResult {
    let name = &a.name;
    let cons = with_variant(name, a.create.variant, |v| match v {
        VariantArg::LockFree => builder::<LockFree>(&a.create)
            .open_or_create_consumer(name)
            .map(Cons::LockFree),
        VariantArg::Locked => builder::<Locked>(&a.create)
            .open_or_create_consumer(name)
            .map(Cons::Locked),
    })?;
    match cons {
        Cons::LockFree(c) => read_with(a, c),
        Cons::Locked(c) => read_with(a, c),
    }
}

/// How the copy loop ended.
enum End {
    Closed,
    Failed(String),
}

fn read_with<V: Variant>(a: &ReadArgs, mut c: GenericConsumer<V>) -> CmdResult {
    let name = &a.name;
    note_existing(name, &a.create, c.capacity(), c.wait_strategy());
    // SAFETY: fd 1 is open for the whole life of the process; ManuallyDrop
    // keeps this File from closing it. Writing to it directly avoids the
    // line buffering of `io::stdout()`.
    let mut out = ManuallyDrop::new(unsafe { File::from_raw_fd(1) });
    let mut buf = Vec::new();
    let mut total: u64 = 0;
    let end = loop {
        // Lock-free: write straight from the ring (the slot is released after
        // the write). Locked: copy out first, so the mutex is not held while
        // stdout blocks.
        let r = if V::NAME == LockFree::NAME {
            let mut f = |m: &[u8]| out.write_all(m).map(|()| m.len());
            match a.timeout {
                Some(t) => c.recv_timeout_with(t, &mut f),
                None => c.recv_with(&mut f),
            }
        } else {
            let mut f = |m: &[u8]| {
                buf.clear();
                buf.extend_from_slice(m);
            };
            let r = match a.timeout {
                Some(t) => c.recv_timeout_with(t, &mut f),
                None => c.recv_with(&mut f),
            };
            r.map(|()| out.write_all(&buf).map(|()| buf.len()))
        };
        match r {
            Ok(Ok(n)) => total += n as u64,
            Ok(Err(e)) if e.kind() == io::ErrorKind::BrokenPipe => {
                break End::Failed(format!(
                    "stdout was closed (broken pipe) after {total} bytes; stopped reading {name}"
                ))
            }
            Ok(Err(e)) => break End::Failed(format!("writing stdout: {e}")),
            Err(Error::Disconnected) => break End::Closed,
            Err(Error::PeerDied) => {
                break End::Failed(format!(
                    "the writer (producer) of {name} died without closing the ring; \
                     all {total} bytes it committed were written out; segment kept \
                     (see `shmpipe inspect {name}`, remove with `shmpipe rm {name}`)"
                ))
            }
            Err(Error::Timeout) => {
                break End::Failed(format!(
                    "no data from the writer of {name} for {:?}; giving up after {total} bytes",
                    a.timeout.unwrap_or_default()
                ))
            }
            Err(e) => {
                break End::Failed(format!(
                    "{}; the {total} bytes received before it were written out",
                    describe(name, &e)
                ))
            }
        }
    };
    let never_fed = c.stats().producer == shmpipe::EndpointState::Never;
    drop(c); // close our side: a writer still running sees Disconnected
    match end {
        End::Closed => {
            if !a.keep {
                remove_quietly(name)?;
            }
            Ok(())
        }
        End::Failed(msg) => {
            // A segment no writer ever attached to holds nothing to salvage.
            if never_fed && !a.keep {
                let _ = remove_quietly(name);
            }
            Err(Fail::Runtime(msg))
        }
    }
}

fn remove_quietly(name: &str) -> CmdResult {
    match shmpipe::remove(name) {
        Ok(()) => Ok(()),
        Err(e) if is_not_found(&e) => Ok(()),
        Err(e) => Err(Fail::Runtime(format!(
            "could not remove {name} after the writer closed it: {e}"
        ))),
    }
}
