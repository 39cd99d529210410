//! `shmpipe write` and `shmpipe read`: a named ring used like a FIFO.
//!
//! Either side may start first: whichever finds no segment creates it
//! (`O_EXCL`, so of two racing commands exactly one creates) and the other
//! attaches. Neither unlinks on drop; what is left behind is decided when a
//! command ends, after it closed its own role:
//!
//! - both roles closed in order (the peer's state is CLOSED and its role lock
//!   free): the segment is removed by whichever side ends last (`read --keep`
//!   keeps it when the reader is that side);
//! - the peer never attached: `read` removes the segment (it holds nothing to
//!   salvage); `write` removes it only if it created it and did not finish
//!   (interrupted) — a writer that finished leaves it for a reader started later;
//! - the peer is alive (it cleans up when it ends) or died (a new process may
//!   take over its role and the data): the segment is kept.
//!
//! `write` closes its role in order when its input ends, when it is
//! interrupted (SIGINT, SIGTERM, SIGHUP: like `cat` killed by Ctrl-C in a
//! pipeline, the reader then sees the end of the stream) and when the reader
//! closed first. On any other failure (`--timeout`, a read error on stdin,
//! the reader died) it leaves its role unclosed, so that a reader reports an
//! incomplete transfer instead of a clean end. `read` always closes in order.
//!
//! `read` uses the two-phase receive: a message is released only after
//! `write(2)` to stdout returned for all of it, so a reader killed at any
//! point never loses a message; its replacement gets the one message that was
//! being written out again (at least once; only that one may repeat).
//!
//! Variant conflicts: a segment's variant is fixed by its creator. A command
//! whose explicit `--variant` differs from an existing segment's reports it
//! and exits 1; if its own role in that segment was never attached and the
//! other role is held by a live process (a reader or writer waiting for this
//! one), it also removes the name. The waiting side notices within one idle
//! slice (100 ms): while its peer has never attached it checks that the name
//! still refers to the segment it opened (device and inode), and ends with a
//! message when it does not (the same happens after `shmpipe rm`).

use std::fs::File;
use std::io::{self, Read, Write};
use std::mem::ManuallyDrop;
use std::os::fd::{AsRawFd, FromRawFd};
use std::os::unix::fs::MetadataExt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Args;
use shmpipe::{
    EndpointState, Error, GenericBuilder, GenericConsumer, GenericProducer, LockFree, Locked,
    PeerStatus, SegmentInfo, Variant,
};

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

/// How long to wait for a segment being created by a peer to be ready
/// while detecting its variant.
const DETECT_TIMEOUT: Duration = Duration::from_secs(1);

/// The longest a blocked command waits before it looks at signals, its own
/// deadline, and whether its segment's name is still there.
const SLICE: Duration = Duration::from_millis(100);

// ---------------------------------------------------------------------------
// signals

/// The signal that asked this command to stop, set by a signal-hook handler.
pub struct Stop(Arc<AtomicUsize>);

impl Stop {
    /// Catch SIGINT, SIGTERM and SIGHUP. The handlers are installed without
    /// `SA_RESTART`, so a blocked read of stdin or write to stdout returns
    /// `EINTR` and the command gets to close its role.
    pub fn install() -> Result<Stop, Fail> {
        let flag = Arc::new(AtomicUsize::new(0));
        for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
            signal_hook::flag::register_usize(sig, Arc::clone(&flag), sig as usize)
                .and_then(|_| no_restart(sig))
                .map_err(|e| {
                    Fail::Runtime(format!(
                        "installing a handler for {}: {e}",
                        signal_name(sig)
                    ))
                })?;
        }
        Ok(Stop(flag))
    }

    /// The signal received, if any.
    fn signal(&self) -> Option<i32> {
        // Relaxed: the flag carries no other data; signal-hook's handler
        // stores it (SeqCst) in this same thread or another.
        match self.0.load(Ordering::Relaxed) {
            0 => None,
            s => i32::try_from(s).ok(),
        }
    }
}

/// Clear `SA_RESTART` from the handler signal-hook installed for `sig`.
fn no_restart(sig: libc::c_int) -> io::Result<()> {
    // SAFETY: sigaction is a plain C struct; all-zero is a valid value.
    let mut act: libc::sigaction = unsafe { std::mem::zeroed() };
    // SAFETY: a null new action only reads the current one into `act`.
    if unsafe { libc::sigaction(sig, std::ptr::null(), &mut act) } != 0 {
        return Err(io::Error::last_os_error());
    }
    act.sa_flags &= !libc::SA_RESTART;
    // SAFETY: re-installs the same handler, mask and flags, minus SA_RESTART.
    if unsafe { libc::sigaction(sig, &act, std::ptr::null_mut()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// `SIGINT` etc. for messages.
pub fn signal_name(sig: i32) -> &'static str {
    match sig {
        libc::SIGINT => "SIGINT",
        libc::SIGTERM => "SIGTERM",
        libc::SIGHUP => "SIGHUP",
        _ => "a signal",
    }
}

// ---------------------------------------------------------------------------
// opening

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
        Error::NotInitialized { .. } => match crate::segments::what_file(name) {
            Some(what) if what.starts_with("an empty file") => format!(
                "{name}: {what}; if it is stale, remove it with `shmpipe rm --force {name}`"
            ),
            Some(what) => format!("{name}: {what}: {e}"),
            None => format!("{name}: {e}"),
        },
        Error::SizeMismatch { .. } | Error::NotShmpipe { .. } => {
            match crate::segments::what_file(name) {
                Some(what) => format!("{name}: {what} ({e})"),
                None => format!("{name}: {e}"),
            }
        }
        e => format!("{name}: {e}"),
    }
}

/// Which file a name refers to (to notice it being removed or replaced).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileId {
    dev: u64,
    ino: u64,
}

fn file_id(name: &str) -> Option<FileId> {
    std::fs::symlink_metadata(crate::segments::shm_path(name))
        .ok()
        .map(|m| FileId {
            dev: m.dev(),
            ino: m.ino(),
        })
}

/// The role a command attaches to, for messages and for reading `SegmentInfo`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Producer,
    Consumer,
}

impl Role {
    fn command(self) -> &'static str {
        match self {
            Role::Producer => "writer",
            Role::Consumer => "reader",
        }
    }
    fn peer(self) -> Role {
        match self {
            Role::Producer => Role::Consumer,
            Role::Consumer => Role::Producer,
        }
    }
    /// This role's state word and whether its lock is held, in `info`.
    fn in_info(self, info: &SegmentInfo) -> (EndpointState, bool) {
        match self {
            Role::Producer => (info.stats.producer, info.producer_alive),
            Role::Consumer => (info.stats.consumer, info.consumer_alive),
        }
    }
}

/// The variant of the existing segment `name` (`None`: there is none).
/// An explicit flag that disagrees is an error (see the module docs).
fn detect_variant(
    name: &str,
    explicit: Option<VariantArg>,
    role: Role,
) -> Result<Option<VariantArg>, Fail> {
    let start = Instant::now();
    loop {
        match shmpipe::inspect(name) {
            Ok(info) => {
                let found = VariantArg::from_lib_name(info.variant).ok_or_else(|| {
                    Fail::Runtime(format!("{name}: unknown ring variant {:?}", info.variant))
                })?;
                match explicit {
                    Some(want) if want != found => {
                        return Err(Fail::Runtime(conflict(name, &info, want, found, role)))
                    }
                    _ => return Ok(Some(found)),
                }
            }
            Err(Error::NotFound { .. }) => return Ok(None),
            // Being created by a peer right now: give it a moment.
            Err(Error::NotInitialized { .. }) if start.elapsed() < DETECT_TIMEOUT => {
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(e) => return Err(Fail::Runtime(describe(name, &e))),
        }
    }
}

/// The message for a variant conflict; removes the name when the other side
/// is waiting for us, so that it stops too.
fn conflict(
    name: &str,
    info: &SegmentInfo,
    want: VariantArg,
    found: VariantArg,
    role: Role,
) -> String {
    let mut msg = format!(
        "{name} is a {} ring, but --variant {} was given; pass --variant {} or leave --variant out \
         (an existing segment's variant is detected), and give both sides the same --variant",
        found.lib_name(),
        want.flag(),
        found.flag()
    );
    let (mine, mine_alive) = role.in_info(info);
    let (_, peer_alive) = role.peer().in_info(info);
    if mine == EndpointState::Never && !mine_alive && peer_alive {
        let peer = role.peer().command();
        match shmpipe::remove(name) {
            Ok(()) | Err(Error::NotFound { .. }) => {
                msg += &format!("; removed {name}, so the {peer} waiting on it stops too")
            }
            Err(e) => {
                msg += &format!(
                    "; could not remove {name} ({e}): the {peer} waiting on it keeps waiting"
                )
            }
        }
    }
    msg
}

/// An attached end, and what the command needs to tidy up after it.
struct Opened<T> {
    end: T,
    /// This command created the segment.
    created: bool,
    /// The file the name referred to right after attaching.
    id: Option<FileId>,
}

/// Attach to `name` (creating it if there is none) with `attach(variant,
/// create)`, retrying when another process created, removed or replaced
/// the segment in between.
fn open_end<T>(
    name: &str,
    explicit: Option<VariantArg>,
    role: Role,
    mut attach: impl FnMut(VariantArg, bool) -> Result<T, Error>,
) -> Result<Opened<T>, Fail> {
    for _ in 0..5 {
        let found = detect_variant(name, explicit, role)?;
        let create = found.is_none();
        let variant = found.or(explicit).unwrap_or(VariantArg::LockFree);
        match attach(variant, create) {
            Ok(end) => {
                return Ok(Opened {
                    end,
                    created: create,
                    id: file_id(name),
                })
            }
            Err(Error::AlreadyExists { .. }) if create => {}
            Err(Error::NotFound { .. }) if !create => {}
            Err(Error::WrongVariant { .. }) => {}
            Err(e) => return Err(Fail::Runtime(describe(name, &e))),
        }
    }
    Err(Fail::Runtime(format!(
        "{name} was created and removed by other processes repeatedly while being opened; try again"
    )))
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

/// Whether the segment's name was removed or now refers to another file
/// while our peer has never attached (it can no longer find us).
fn orphaned(name: &str, id: Option<FileId>, peer: Result<PeerStatus, Error>) -> bool {
    matches!(peer, Ok(PeerStatus::NotAttached)) && id.is_some() && file_id(name) != id
}

/// After our role is closed: remove the segment if both roles have gone in
/// order, or if the peer never attached and `if_unattached`. Returns a note
/// for the user when it removed it.
fn tidy(name: &str, id: Option<FileId>, role: Role, if_unattached: bool) -> Result<bool, String> {
    if id.is_none() || file_id(name) != id {
        return Ok(false); // removed already, or the name is someone else's now
    }
    let Ok(info) = shmpipe::inspect(name) else {
        return Ok(false);
    };
    let (peer, peer_alive) = role.peer().in_info(&info);
    let remove = !peer_alive
        && match peer {
            EndpointState::Closed => true,
            EndpointState::Never => if_unattached,
            _ => false,
        };
    if !remove {
        return Ok(false);
    }
    match shmpipe::remove(name) {
        Ok(()) | Err(Error::NotFound { .. }) => Ok(true),
        Err(e) => Err(format!("could not remove {name}: {e}")),
    }
}

/// One `read(2)` of `fd` into `buf` (0 at end of file), retried on `EINTR`
/// unless a signal asked us to stop.
fn read_fd(f: &mut File, buf: &mut [u8], stop: &Stop) -> Result<usize, Stopped> {
    loop {
        match f.read(buf) {
            Ok(n) => return Ok(n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {
                if let Some(s) = stop.signal() {
                    return Err(Stopped::Signal(s));
                }
            }
            Err(e) => return Err(Stopped::Io(e)),
        }
    }
}

/// Write all of `b` to `f`, retrying on `EINTR` unless a signal asked us to stop.
fn write_fd(f: &mut File, mut b: &[u8], stop: &Stop) -> Result<(), Stopped> {
    while !b.is_empty() {
        match f.write(b) {
            Ok(0) => return Err(Stopped::Io(io::ErrorKind::WriteZero.into())),
            Ok(n) => b = &b[n..],
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {
                if let Some(s) = stop.signal() {
                    return Err(Stopped::Signal(s));
                }
            }
            Err(e) => return Err(Stopped::Io(e)),
        }
    }
    Ok(())
}

/// Why a read of stdin or a write to stdout stopped.
enum Stopped {
    Signal(i32),
    Io(io::Error),
}

/// Wait until `f` is readable (or at end of file, or failed: the read
/// tells), calling `idle` once per [`SLICE`] meanwhile.
fn wait_readable<E>(
    f: &File,
    stop: &Stop,
    mut idle: impl FnMut() -> Result<(), E>,
    on_signal: impl Fn(i32) -> E,
) -> Result<(), E> {
    loop {
        let mut pfd = libc::pollfd {
            fd: f.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd, for the duration of the call.
        let r = unsafe { libc::poll(&mut pfd, 1, SLICE.as_millis() as libc::c_int) };
        if r > 0 || (r < 0 && io::Error::last_os_error().kind() != io::ErrorKind::Interrupted) {
            return Ok(());
        }
        if let Some(s) = stop.signal() {
            return Err(on_signal(s));
        }
        idle()?;
    }
}

/// The file descriptor `fd` (0 or 1) as a `File` that is never closed.
fn std_fd(fd: i32) -> ManuallyDrop<File> {
    // SAFETY: fds 0 and 1 are open for the whole life of the process (a
    // closed one fails its reads or writes with EBADF, which we report);
    // ManuallyDrop keeps this File from closing it. Using the descriptor
    // directly avoids std's buffering, which would hide data from poll(2)
    // (stdin) or hold bytes after a message was released (stdout).
    ManuallyDrop::new(unsafe { File::from_raw_fd(fd) })
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
    let stop = Stop::install()?;
    let name = &a.name;
    let o = open_end(
        name,
        a.create.variant,
        Role::Producer,
        |v, create| match v {
            VariantArg::LockFree => {
                let b = builder::<LockFree>(&a.create);
                let p = if create {
                    b.create_producer(name)
                } else {
                    b.open_producer(name)
                };
                p.map(Prod::LockFree)
            }
            VariantArg::Locked => {
                let b = builder::<Locked>(&a.create);
                let p = if create {
                    b.create_producer(name)
                } else {
                    b.open_producer(name)
                };
                p.map(Prod::Locked)
            }
        },
    )?;
    let (created, id) = (o.created, o.id);
    match o.end {
        Prod::LockFree(p) => write_with(a, &stop, p, created, id),
        Prod::Locked(p) => write_with(a, &stop, p, created, id),
    }
}

/// Leave the producer role unclosed: when this process exits, the kernel
/// releases the role lock and the reader reports that the writer went away
/// without closing (an incomplete transfer), instead of a clean end. The
/// library has no "abandon" call, so the handle is leaked on purpose: its
/// drop would close the role.
fn abandon<V: Variant>(p: GenericProducer<V>) {
    std::mem::forget(p);
}

fn write_with<V: Variant>(
    a: &WriteArgs,
    stop: &Stop,
    mut p: GenericProducer<V>,
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
    let mut stdin = std_fd(0);
    let mut buf = vec![0u8; chunk];
    let mut total = 0u64;
    let r = pump_in(
        &mut p, &mut stdin, &mut buf, a.timeout, stop, name, id, &mut total,
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
        Err(PumpError::Signal(s)) => {
            let removed = match tidied() {
                Ok(true) => format!("; removed {name}"),
                Ok(false) => String::new(),
                Err(e) => format!("; {e}"),
            };
            Err(Fail::Signal {
                signal: s,
                msg: format!(
                    "interrupted by {} after {total} bytes; closed the producer side of {name}{removed}",
                    signal_name(s)
                ),
            })
        }
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
fn pump_in<V: Variant>(
    p: &mut GenericProducer<V>,
    stdin: &mut File,
    buf: &mut [u8],
    timeout: Option<Duration>,
    stop: &Stop,
    name: &str,
    id: Option<FileId>,
    total: &mut u64,
) -> Result<(), PumpError> {
    let chunk = buf.len();
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
        // Zero-copy path (lock-free only: a locked claim holds the mutex,
        // which must not be held across a read of stdin that may block).
        if V::NAME == LockFree::NAME {
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
fn send_sliced<V: Variant>(
    p: &mut GenericProducer<V>,
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

// ---------------------------------------------------------------------------
// read

enum Cons {
    LockFree(GenericConsumer<LockFree>),
    Locked(GenericConsumer<Locked>),
}

/// `shmpipe read NAME`.
pub fn read(a: &ReadArgs) -> CmdResult {
    let stop = Stop::install()?;
    let name = &a.name;
    let o = open_end(
        name,
        a.create.variant,
        Role::Consumer,
        |v, create| match v {
            VariantArg::LockFree => {
                let b = builder::<LockFree>(&a.create);
                let c = if create {
                    b.create_consumer(name)
                } else {
                    b.open_consumer(name)
                };
                c.map(Cons::LockFree)
            }
            VariantArg::Locked => {
                let b = builder::<Locked>(&a.create);
                let c = if create {
                    b.create_consumer(name)
                } else {
                    b.open_consumer(name)
                };
                c.map(Cons::Locked)
            }
        },
    )?;
    match o.end {
        Cons::LockFree(c) => read_with(a, &stop, c, o.id),
        Cons::Locked(c) => read_with(a, &stop, c, o.id),
    }
}

/// How the copy loop ended.
enum End {
    Closed,
    Signal(i32),
    Failed(String),
}

fn read_with<V: Variant>(
    a: &ReadArgs,
    stop: &Stop,
    mut c: GenericConsumer<V>,
    id: Option<FileId>,
) -> CmdResult {
    let name = &a.name;
    note_existing(name, &a.create, c.capacity(), c.wait_strategy());
    let mut out = std_fd(1);
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
        match write_fd(&mut out, &msg, stop) {
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
        End::Signal(s) => {
            let removed = match tidied {
                Ok(true) => format!("; removed {name}"),
                Ok(false) => String::new(),
                Err(e) => format!("; {e}"),
            };
            Err(Fail::Signal {
                signal: s,
                msg: format!(
                    "interrupted by {} after {total} bytes; closed the consumer side of {name}{removed}",
                    signal_name(s)
                ),
            })
        }
        End::Failed(msg) => Err(Fail::Runtime(msg)),
    }
}
