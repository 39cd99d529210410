//! The one error type of the crate.

use std::fmt;
use std::io;
use std::time::Duration;

use crate::variant::{ParseVariantError, VariantKind};

/// What went wrong. One variant per thing a caller can act on.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// The ring has no room for the message right now (non-blocking send).
    Full,
    /// No message is waiting right now (non-blocking receive).
    Empty,
    /// The deadline passed before the operation could complete.
    Timeout,
    /// The peer closed its side in order. A consumer sees this only after it
    /// has received every committed message.
    Disconnected,
    /// The peer's process died without closing its side (its endpoint lock
    /// was released by the kernel). A consumer sees this only after it has
    /// received every committed message. A new process may take over the role.
    PeerDied,
    /// The message is larger than the ring allows.
    TooLarge {
        /// Length of the rejected message in bytes.
        len: usize,
        /// Largest message this ring accepts.
        max: usize,
    },
    /// The shared state violates the protocol: a peer wrote a bad value, or
    /// the segment was damaged. The handle stays in this state.
    Corrupted {
        /// Which check failed.
        what: &'static str,
        /// The offending value as read.
        value: u64,
    },
    /// The segment name is not a valid POSIX shared-memory name.
    InvalidName {
        /// The name as given.
        name: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The requested capacity is not allowed.
    InvalidCapacity {
        /// The capacity as given, in bytes.
        requested: u64,
    },
    /// An option other than the name or the capacity is not allowed.
    InvalidOption {
        /// What is wrong, and what is allowed.
        reason: String,
    },
    /// The segment was created by another on-memory format version.
    VersionMismatch {
        /// The segment's name (`None` for one passed as a descriptor).
        name: Option<String>,
        /// Version found in the segment.
        found: u32,
        /// Version this library speaks.
        expected: u32,
    },
    /// The object is not a shmpipe segment (wrong magic number).
    NotShmpipe {
        /// The segment's name (`None` for one passed as a descriptor).
        name: Option<String>,
        /// The magic word found.
        found: u64,
    },
    /// The segment was created for the other ring variant (lock-free vs. locked).
    WrongVariant {
        /// The segment's name (`None` for one passed as a descriptor).
        name: Option<String>,
        /// Variant recorded in the segment.
        found: VariantKind,
        /// Variant that tried to open it.
        expected: VariantKind,
    },
    /// The segment's size does not match what its header declares.
    SizeMismatch {
        /// The segment's name (`None` for one passed as a descriptor).
        name: Option<String>,
        /// Size the header implies, in bytes.
        expected: u64,
        /// Actual size of the object, in bytes.
        found: u64,
    },
    /// The segment's creator did not finish initialising it in time (it may
    /// have died half-way). Remove it with [`crate::remove`] if it is stale.
    NotInitialized {
        /// How long we waited.
        waited: Duration,
    },
    /// The object is not a regular file (a directory, device, FIFO...).
    NotRegularFile,
    /// The segment belongs to another user; it is never trusted.
    NotOwner {
        /// Owner of the segment.
        owner: u32,
        /// Our effective user id.
        euid: u32,
    },
    /// The segment is accessible to group or others and the caller did not opt
    /// in with `Builder::allow_shared_permissions`.
    UnsafePermissions {
        /// The permission bits found.
        mode: u32,
    },
    /// Another live process already holds this role (producer or consumer).
    RoleTaken {
        /// `"producer"` or `"consumer"`.
        role: &'static str,
    },
    /// The locked variant's mutex is permanently unusable (`ENOTRECOVERABLE`):
    /// a previous holder died and the state could not be made consistent.
    LockNotRecoverable,
    /// No shared-memory object of that name exists.
    NotFound {
        /// The name as given.
        name: String,
    },
    /// A shared-memory object of that name already exists (creating with
    /// `create_*`, which never opens an existing segment).
    AlreadyExists {
        /// The name as given.
        name: String,
    },
    /// The caller's buffer is smaller than the next message, which stays in
    /// the ring (call again with a buffer of at least `len` bytes).
    BufferTooSmall {
        /// Length of the waiting message in bytes.
        len: usize,
        /// Length of the buffer that was given.
        buf_len: usize,
    },
    /// A named segment was truncated (shrunk) by another process while this
    /// one had it mapped. Its contents are lost: the pages this process
    /// touched past the new end were replaced by zero pages (instead of the
    /// process being killed by SIGBUS; see the segment docs of
    /// [`crate::Builder`]). The handle stays in this state; remove
    /// the name and create the ring again.
    Truncated {
        /// The segment's name.
        name: String,
    },
    /// An operating-system call failed.
    Io {
        /// What we were doing.
        op: &'static str,
        /// The segment's name, when the call was about a named segment
        /// (opening, creating, removing it).
        name: Option<String>,
        /// The underlying error.
        source: io::Error,
    },
    /// A message could not be decoded as the type the caller asked for (a
    /// plain-old-data value of the wrong size, an invalid postcard encoding,
    /// an RPC message without its id). The message was consumed; the ring
    /// stays usable.
    Decode {
        /// The type (or protocol element) that was expected.
        ty: &'static str,
        /// Length of the message in bytes.
        len: usize,
        /// What is wrong with it.
        reason: String,
    },
}

/// `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn io(op: &'static str, source: io::Error) -> Self {
        Error::Io {
            op,
            name: None,
            source,
        }
    }

    pub(crate) fn last_os(op: &'static str) -> Self {
        Error::io(op, io::Error::last_os_error())
    }

    /// Name the segment an open-time error is about, if it does not
    /// already (see the variants' `name` fields).
    pub(crate) fn for_segment(mut self, segment: &str) -> Self {
        match &mut self {
            Error::Io { name, .. }
            | Error::VersionMismatch { name, .. }
            | Error::NotShmpipe { name, .. }
            | Error::WrongVariant { name, .. }
            | Error::SizeMismatch { name, .. } => {
                name.get_or_insert_with(|| segment.to_string());
            }
            _ => {}
        }
        self
    }

    pub(crate) fn corrupted(what: &'static str, value: u64) -> Self {
        Error::Corrupted { what, value }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use crate::layout::{MAX_CAPACITY, MIN_CAPACITY};
        match self {
            Error::Full => f.write_str("the ring is full; retry later or use a blocking send"),
            Error::Empty => f.write_str("the ring is empty; retry later or use a blocking receive"),
            Error::Timeout => f.write_str("the operation timed out"),
            Error::Disconnected => f.write_str("the peer closed its side of the ring"),
            Error::PeerDied => f.write_str(
                "the peer process died without closing its side; a new process may take over its role",
            ),
            Error::TooLarge { len, max } => write!(
                f,
                "message of {len} bytes is too large: this ring accepts at most {max} bytes (capacity/2 - 8); use a larger capacity"
            ),
            Error::Corrupted { what, value } => write!(
                f,
                "shared ring state is corrupted: {what} (value {value:#x}); the handle can no longer be used"
            ),
            Error::InvalidName { name, reason } => write!(
                f,
                "invalid segment name {name:?}: {reason}; a name is '/' followed by 1 to 255 characters, none of them '/' or NUL, and not '.' or '..'"
            ),
            Error::InvalidCapacity { requested } => write!(
                f,
                "invalid capacity {requested} bytes: the capacity must be a power of two between {MIN_CAPACITY} and {MAX_CAPACITY} bytes"
            ),
            Error::InvalidOption { reason } => write!(f, "invalid option: {reason}"),
            Error::VersionMismatch {
                name,
                found,
                expected,
            } => write!(
                f,
                "{} has format version {found}, this library speaks version {expected}; use the same shmpipe version on both sides, or remove the segment",
                Seg(name)
            ),
            Error::NotShmpipe { name, found } => write!(
                f,
                "{} is not a shmpipe segment (magic word {found:#018x}); refusing to use it: check the name, or remove the object if it is stale",
                Seg(name)
            ),
            Error::WrongVariant {
                name,
                found,
                expected,
            } => write!(
                f,
                "{} was created for the {found} ring, but was opened as the {expected} ring; open it with the {found} builder",
                Seg(name)
            ),
            Error::SizeMismatch {
                name,
                expected,
                found,
            } => write!(
                f,
                "{} has the wrong size: {found} bytes, but its header declares {expected} (truncated or damaged); remove it and create it again",
                Seg(name)
            ),
            Error::NotInitialized { waited } => write!(
                f,
                "segment was not initialised by its creator within {waited:?}; if the creator died, remove the segment"
            ),
            Error::NotRegularFile => f.write_str("the shared-memory object is not a regular file"),
            Error::NotOwner { owner, euid } => write!(
                f,
                "segment is owned by uid {owner}, not by us (euid {euid}); refusing to trust it"
            ),
            Error::UnsafePermissions { mode } => write!(
                f,
                "segment permissions {mode:#o} give access to group or others; opt in with allow_shared_permissions(true) to accept them"
            ),
            Error::RoleTaken { role } => write!(
                f,
                "another live process is already the {role} of this ring"
            ),
            Error::LockNotRecoverable => f.write_str(
                "the ring's mutex is not recoverable (a holder died and its state could not be repaired)",
            ),
            Error::NotFound { name } => write!(
                f,
                "no shared-memory segment named {name:?} (looked in /dev/shm); create it first, or check the name"
            ),
            Error::AlreadyExists { name } => write!(
                f,
                "a shared-memory segment named {name:?} already exists; open it (or use open_or_create), or remove it first if it is stale"
            ),
            Error::BufferTooSmall { len, buf_len } => write!(
                f,
                "the next message is {len} bytes but the buffer holds only {buf_len}; it stays in the ring: retry with a buffer of at least {len} bytes"
            ),
            Error::Truncated { name } => write!(
                f,
                "the shared-memory segment {name:?} was truncated by another process while mapped here; its contents are lost and the handle can no longer be used: remove the name and create the ring again"
            ),
            Error::Io {
                op,
                name: Some(name),
                source,
            } => write!(f, "{op} failed for segment {name:?}: {source}"),
            Error::Io {
                op,
                name: None,
                source,
            } => write!(f, "{op} failed: {source}"),
            Error::Decode { ty, len, reason } => write!(
                f,
                "a message of {len} bytes could not be decoded as {ty}: {reason}; it was consumed (the peer sent another type, another encoding or a damaged message)"
            ),
        }
    }
}

/// "segment \"/name\"", or "the segment passed as a descriptor".
struct Seg<'a>(&'a Option<String>);

impl fmt::Display for Seg<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(name) => write!(f, "segment {name:?}"),
            None => f.write_str("the segment passed as a descriptor"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

impl From<Error> for io::Error {
    fn from(e: Error) -> io::Error {
        let kind = match &e {
            Error::Full | Error::Empty => io::ErrorKind::WouldBlock,
            Error::Timeout => io::ErrorKind::TimedOut,
            Error::Disconnected => io::ErrorKind::BrokenPipe,
            Error::PeerDied => io::ErrorKind::ConnectionAborted,
            Error::TooLarge { .. } | Error::InvalidName { .. } | Error::InvalidCapacity { .. } => {
                io::ErrorKind::InvalidInput
            }
            Error::InvalidOption { .. } | Error::BufferTooSmall { .. } => {
                io::ErrorKind::InvalidInput
            }
            Error::NotFound { .. } => io::ErrorKind::NotFound,
            Error::AlreadyExists { .. } => io::ErrorKind::AlreadyExists,
            Error::Io { source, .. } => source.kind(),
            _ => io::ErrorKind::InvalidData,
        };
        io::Error::new(kind, e)
    }
}

impl From<ParseVariantError> for Error {
    fn from(e: ParseVariantError) -> Self {
        Error::InvalidOption {
            reason: e.to_string(),
        }
    }
}
