//! Creating or attaching to the ring of `write`/`read` (the library's
//! [`AnyBuilder`] detects an existing segment's variant), reporting variant
//! conflicts, and deciding at the end whether to remove the segment.

use std::os::unix::fs::MetadataExt;

use clap::Args;
use shmpipe::{AnyBuilder, Attached, EndpointState, Error, PeerStatus, SegmentInfo, VariantKind};

use super::signals::signal_name;
use crate::args::{human_size, parse_capacity, variant_arg, WaitArg};
use crate::fail::Fail;
use crate::shm::{describe, shm_path};

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
    #[arg(long, value_parser = variant_arg())]
    pub variant: Option<VariantKind>,
}

/// Which file a name refers to (to notice it being removed or replaced).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileId {
    dev: u64,
    ino: u64,
}

fn file_id(name: &str) -> Option<FileId> {
    std::fs::symlink_metadata(shm_path(name))
        .ok()
        .map(|m| FileId {
            dev: m.dev(),
            ino: m.ino(),
        })
}

/// The role a command attaches to, for messages and for reading `SegmentInfo`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
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

/// The message for a variant conflict; removes the name when the other side
/// is waiting for us, so that it stops too.
fn conflict(name: &str, found: VariantKind, want: VariantKind, role: Role) -> String {
    let mut msg = format!(
        "{name} is a {found} ring, but --variant {want} was given; pass --variant {found} or \
         leave --variant out (an existing segment's variant is detected), and give both sides \
         the same --variant"
    );
    let Ok(info) = shmpipe::inspect(name) else {
        return msg; // gone meanwhile: nobody waits on it
    };
    let (mine, mine_alive) = role.in_info(&info);
    let (_, peer_alive) = role.peer().in_info(&info);
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
pub struct Opened<T> {
    pub end: T,
    /// This command created the segment.
    pub created: bool,
    /// The file the name referred to right after attaching.
    pub id: Option<FileId>,
}

/// Attach to `name` as `role` with `attach` (an open-or-create of the
/// library's [`AnyBuilder`], configured from `opts`): with `--variant` the
/// segment must be of that variant, without it an existing segment's
/// variant is used.
pub fn open_end<T>(
    name: &str,
    opts: &CreateOpts,
    role: Role,
    attach: impl FnOnce(&AnyBuilder) -> shmpipe::Result<Attached<T>>,
) -> Result<Opened<T>, Fail> {
    let mut b = AnyBuilder::new(opts.variant.unwrap_or_default())
        .detect(opts.variant.is_none())
        .unlink_on_drop(false)
        .capacity(opts.capacity.unwrap_or(shmpipe::DEFAULT_CAPACITY));
    if let Some(w) = opts.wait {
        b = b.wait(w.into());
    }
    match attach(&b) {
        Ok(a) => Ok(Opened {
            end: a.end,
            created: a.created,
            id: file_id(name),
        }),
        Err(Error::WrongVariant {
            found, expected, ..
        }) if opts.variant.is_some() => Err(Fail::Runtime(conflict(name, found, expected, role))),
        Err(Error::NotFound { .. }) => Err(Fail::Runtime(format!(
            "{name} was created and removed by other processes repeatedly while being opened; try again"
        ))),
        Err(e) => Err(Fail::Runtime(describe(name, &e))),
    }
}

/// Note on stderr when an existing segment differs from explicit options.
pub fn note_existing(name: &str, opts: &CreateOpts, capacity: u64, wait: shmpipe::WaitStrategy) {
    if let Some(c) = opts.capacity {
        if c != capacity {
            eprintln!(
                "shmpipe: note: {name} already exists with capacity {}; --capacity {} ignored",
                human_size(capacity),
                human_size(c)
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
pub fn orphaned(name: &str, id: Option<FileId>, peer: Result<PeerStatus, Error>) -> bool {
    matches!(peer, Ok(PeerStatus::NotAttached)) && id.is_some() && file_id(name) != id
}

/// After our role is closed: remove the segment if both roles have gone in
/// order, or if the peer never attached and `if_unattached`. Returns a note
/// for the user when it removed it.
pub fn tidy(
    name: &str,
    id: Option<FileId>,
    role: Role,
    if_unattached: bool,
) -> Result<bool, String> {
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

/// The failure of a command stopped by signal `sig` after `total` bytes,
/// once it closed its `role` and `tidied` up.
pub fn interrupted(
    sig: i32,
    total: u64,
    role: Role,
    name: &str,
    tidied: Result<bool, String>,
) -> Fail {
    let removed = match tidied {
        Ok(true) => format!("; removed {name}"),
        Ok(false) => String::new(),
        Err(e) => format!("; {e}"),
    };
    let side = match role {
        Role::Producer => "producer",
        Role::Consumer => "consumer",
    };
    Fail::Signal {
        signal: sig,
        msg: format!(
            "interrupted by {} after {total} bytes; closed the {side} side of {name}{removed}",
            signal_name(sig)
        ),
    }
}
