//! Status codes, the thread-local error detail, and the version.

use std::cell::RefCell;
use std::ffi::{c_char, c_int, CStr, CString};

use shmpipe_core::Error;

/// What a call did. Every fallible function returns one; `SHMPIPE_OK` is 0.
/// `shmpipe_status_str` describes a code, `shmpipe_last_error_message` gives
/// the details of the last failure on this thread.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum shmpipe_status {
    /// Success.
    SHMPIPE_OK = 0,
    /// The ring has no room for the message right now (non-blocking send or claim).
    SHMPIPE_FULL = 1,
    /// No message is waiting right now (non-blocking receive or peek).
    SHMPIPE_EMPTY = 2,
    /// The timeout passed before the operation could complete.
    SHMPIPE_TIMEOUT = 3,
    /// The peer closed its side. A consumer sees this only after it has
    /// received every committed message.
    SHMPIPE_DISCONNECTED = 4,
    /// The peer's process died without closing its side. A consumer sees this
    /// only after it has received every committed message. A new process may
    /// take over the role.
    SHMPIPE_PEER_DIED = 5,
    /// The message is larger than the ring allows (`capacity / 2 - 8` bytes).
    SHMPIPE_TOO_LARGE = 6,
    /// The receive buffer is too small for the next message: `*len` is set to
    /// the message's size and the message stays in the ring.
    SHMPIPE_BUFFER_TOO_SMALL = 7,
    /// The shared ring state violates the protocol (a peer wrote a bad value);
    /// the handle stays in this state.
    SHMPIPE_CORRUPTED = 8,
    /// The segment name is not a valid POSIX shared-memory name (`/` followed
    /// by 1 to 255 characters, none of them `/`).
    SHMPIPE_INVALID_NAME = 9,
    /// The capacity is not a power of two between `SHMPIPE_MIN_CAPACITY` and
    /// `SHMPIPE_MAX_CAPACITY`.
    SHMPIPE_INVALID_CAPACITY = 10,
    /// An option other than name and capacity is not allowed (an unknown wait
    /// strategy or variant code, a bad mode...).
    SHMPIPE_INVALID_OPTION = 11,
    /// No segment of that name exists.
    SHMPIPE_NOT_FOUND = 12,
    /// The segment has another on-memory format version.
    SHMPIPE_VERSION_MISMATCH = 13,
    /// The object is not a shmpipe segment.
    SHMPIPE_NOT_SHMPIPE = 14,
    /// The segment was created for the other variant (lock-free vs. locked).
    SHMPIPE_WRONG_VARIANT = 15,
    /// The segment's size does not match its header.
    SHMPIPE_SIZE_MISMATCH = 16,
    /// The segment's creator did not finish initialising it within
    /// `open_timeout_ms`.
    SHMPIPE_NOT_INITIALIZED = 17,
    /// The object is not a regular file.
    SHMPIPE_NOT_REGULAR_FILE = 18,
    /// The segment belongs to another user.
    SHMPIPE_NOT_OWNER = 19,
    /// The segment is accessible to group or others and
    /// `allow_shared_permissions` is 0.
    SHMPIPE_UNSAFE_PERMISSIONS = 20,
    /// Another live process already holds this role.
    SHMPIPE_ROLE_TAKEN = 21,
    /// The locked variant's lock is permanently unusable.
    SHMPIPE_LOCK_NOT_RECOVERABLE = 22,
    /// An operating-system call failed (`shmpipe_last_os_error` gives errno).
    SHMPIPE_IO = 23,
    /// A segment of that name already exists (`*_create` never opens one;
    /// `shmpipe_last_os_error` gives `EEXIST`).
    SHMPIPE_ALREADY_EXISTS = 24,
    /// The named segment was truncated by another process while mapped
    /// (the library's SIGBUS handler caught it); the handle is unusable:
    /// free it, remove the name and create the ring again.
    SHMPIPE_TRUNCATED = 25,
    /// A required pointer argument was NULL.
    SHMPIPE_NULL_POINTER = 100,
    /// An argument is out of range (e.g. `shmpipe_commit` longer than the claim).
    SHMPIPE_INVALID_ARGUMENT = 101,
    /// A call out of sequence: `commit`/`abort` without an open claim, a
    /// second claim, a send while a claim is open, `release` without a peeked
    /// message, a second peek or a receive while a message is peeked, a call
    /// on a consumer from inside its own drain callback, or (locked variant)
    /// finishing a claim on another thread than the one that claimed.
    SHMPIPE_MISUSE = 102,
    /// A bug: the library panicked. The handle is unusable from now on
    /// (free it); the message says where.
    SHMPIPE_PANIC = 103,
    /// An error this version of the C API does not know (see the message).
    SHMPIPE_UNKNOWN = 104,
}

use shmpipe_status::*;

/// Why an entry point failed: a library error, or one of the C API's own.
#[derive(Debug)]
pub(crate) enum Fail {
    /// The library returned an error.
    Lib(Error),
    /// This NULL argument is required.
    Null(&'static str),
    /// Out of range; says what is allowed.
    Invalid(String),
    /// A call out of sequence; says what was expected.
    Misuse(&'static str),
    /// An earlier call on this handle panicked.
    Poisoned,
}

impl From<Error> for Fail {
    fn from(e: Error) -> Self {
        Fail::Lib(e)
    }
}

/// The status for a library error.
fn lib_status(e: &Error) -> shmpipe_status {
    match e {
        Error::Full => SHMPIPE_FULL,
        Error::Empty => SHMPIPE_EMPTY,
        Error::Timeout => SHMPIPE_TIMEOUT,
        Error::Disconnected => SHMPIPE_DISCONNECTED,
        Error::PeerDied => SHMPIPE_PEER_DIED,
        Error::TooLarge { .. } => SHMPIPE_TOO_LARGE,
        Error::BufferTooSmall { .. } => SHMPIPE_BUFFER_TOO_SMALL,
        Error::Corrupted { .. } => SHMPIPE_CORRUPTED,
        Error::InvalidName { .. } => SHMPIPE_INVALID_NAME,
        Error::InvalidCapacity { .. } => SHMPIPE_INVALID_CAPACITY,
        Error::InvalidOption { .. } => SHMPIPE_INVALID_OPTION,
        Error::NotFound { .. } => SHMPIPE_NOT_FOUND,
        Error::AlreadyExists { .. } => SHMPIPE_ALREADY_EXISTS,
        Error::Truncated { .. } => SHMPIPE_TRUNCATED,
        Error::VersionMismatch { .. } => SHMPIPE_VERSION_MISMATCH,
        Error::NotShmpipe { .. } => SHMPIPE_NOT_SHMPIPE,
        Error::WrongVariant { .. } => SHMPIPE_WRONG_VARIANT,
        Error::SizeMismatch { .. } => SHMPIPE_SIZE_MISMATCH,
        Error::NotInitialized { .. } => SHMPIPE_NOT_INITIALIZED,
        Error::NotRegularFile => SHMPIPE_NOT_REGULAR_FILE,
        Error::NotOwner { .. } => SHMPIPE_NOT_OWNER,
        Error::UnsafePermissions { .. } => SHMPIPE_UNSAFE_PERMISSIONS,
        Error::RoleTaken { .. } => SHMPIPE_ROLE_TAKEN,
        Error::LockNotRecoverable => SHMPIPE_LOCK_NOT_RECOVERABLE,
        Error::Io { .. } => SHMPIPE_IO,
        _ => SHMPIPE_UNKNOWN,
    }
}

impl Fail {
    /// Record the details for `shmpipe_last_error_message` and return the code.
    #[cold]
    #[inline(never)]
    pub(crate) fn report(self) -> shmpipe_status {
        let (status, msg, errno) = match self {
            // The statuses of the hot non-blocking paths: no formatting,
            // no allocation.
            Fail::Lib(e @ (Error::Full | Error::Empty | Error::Timeout | Error::Disconnected)) => {
                let s = lib_status(&e);
                (s, Msg::Static(status_cstr(s)), 0)
            }
            Fail::Lib(e) => {
                let errno = match &e {
                    Error::Io { source, .. } => errno_of(source),
                    Error::NotFound { .. } => E_NOENT,
                    Error::AlreadyExists { .. } => E_EXIST,
                    _ => 0,
                };
                (lib_status(&e), Msg::owned(e.to_string()), errno)
            }
            Fail::Null(arg) => (
                SHMPIPE_NULL_POINTER,
                Msg::owned(format!("the argument `{arg}` is NULL; it is required")),
                0,
            ),
            Fail::Invalid(why) => (SHMPIPE_INVALID_ARGUMENT, Msg::owned(why), 0),
            Fail::Misuse(why) => (SHMPIPE_MISUSE, Msg::owned(why.to_owned()), 0),
            Fail::Poisoned => (
                SHMPIPE_PANIC,
                Msg::Static(
                    c"an earlier call on this handle panicked (a bug in shmpipe); the handle can only be freed",
                ),
                0,
            ),
        };
        set_last(msg, errno);
        status
    }
}

// The errno values this file reports (Linux; the C ABI is Linux-only).
// Private: cbindgen must not export them as macros that shadow <errno.h>.
const E_NOENT: c_int = 2;
const E_IO: c_int = 5;
const E_NOMEM: c_int = 12;
const E_ACCES: c_int = 13;
const E_EXIST: c_int = 17;
const E_INVAL: c_int = 22;
const E_OPNOTSUPP: c_int = 95;
const E_TIMEDOUT: c_int = 110;

/// The errno of an `Io` error: the OS's own code, or for an error the
/// library made up (e.g. "the descriptor is not a sealed memfd"), the
/// nearest code for its kind, so an `SHMPIPE_IO` never reports 0.
fn errno_of(e: &std::io::Error) -> c_int {
    use std::io::ErrorKind as K;
    if let Some(code) = e.raw_os_error() {
        return code;
    }
    match e.kind() {
        K::NotFound => E_NOENT,
        K::AlreadyExists => E_EXIST,
        K::PermissionDenied => E_ACCES,
        K::OutOfMemory => E_NOMEM,
        K::InvalidInput | K::InvalidData => E_INVAL,
        K::TimedOut => E_TIMEDOUT,
        K::Unsupported => E_OPNOTSUPP,
        _ => E_IO,
    }
}

/// Record a caught panic and return `SHMPIPE_PANIC`.
pub(crate) fn report_panic(payload: &(dyn std::any::Any + Send)) -> shmpipe_status {
    let what = payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(no message)");
    set_last(
        Msg::owned(format!(
            "shmpipe panicked (a bug; please report it): {what}"
        )),
        0,
    );
    SHMPIPE_PANIC
}

enum Msg {
    Static(&'static CStr),
    Owned(CString),
}

impl Msg {
    fn owned(s: String) -> Self {
        // Messages quote user input, which came from C strings (no NUL), but
        // never trust that: drop any NUL rather than fail.
        match CString::new(s) {
            Ok(c) => Msg::Owned(c),
            Err(e) => {
                let mut bytes = e.into_vec();
                bytes.retain(|&b| b != 0);
                Msg::Owned(CString::new(bytes).unwrap_or_default())
            }
        }
    }

    fn as_ptr(&self) -> *const c_char {
        match self {
            Msg::Static(s) => s.as_ptr(),
            Msg::Owned(s) => s.as_ptr(),
        }
    }
}

struct Last {
    msg: Msg,
    errno: c_int,
}

thread_local! {
    static LAST: RefCell<Last> = const {
        RefCell::new(Last { msg: Msg::Static(c""), errno: 0 })
    };
}

fn set_last(msg: Msg, errno: c_int) {
    // `try_with`: during thread teardown the slot may be gone; the status
    // code still reaches the caller.
    let _ = LAST.try_with(|l| {
        if let Ok(mut l) = l.try_borrow_mut() {
            *l = Last { msg, errno };
        }
    });
}

const fn status_cstr(s: shmpipe_status) -> &'static CStr {
    match s {
        SHMPIPE_OK => c"success",
        SHMPIPE_FULL => c"the ring is full; retry later or use a blocking send",
        SHMPIPE_EMPTY => c"the ring is empty; retry later or use a blocking receive",
        SHMPIPE_TIMEOUT => c"the operation timed out",
        SHMPIPE_DISCONNECTED => c"the peer closed its side of the ring",
        SHMPIPE_PEER_DIED => {
            c"the peer process died without closing its side; a new process may take over its role"
        }
        SHMPIPE_TOO_LARGE => c"the message is larger than the ring allows (capacity/2 - 8 bytes)",
        SHMPIPE_BUFFER_TOO_SMALL => {
            c"the buffer is too small for the next message; *len holds its size and it stays in the ring"
        }
        SHMPIPE_CORRUPTED => c"the shared ring state is corrupted; the handle can no longer be used",
        SHMPIPE_INVALID_NAME => {
            c"invalid segment name: '/' followed by 1 to 255 characters, none of them '/', not '.' or '..'"
        }
        SHMPIPE_INVALID_CAPACITY => {
            c"invalid capacity: a power of two between SHMPIPE_MIN_CAPACITY and SHMPIPE_MAX_CAPACITY"
        }
        SHMPIPE_INVALID_OPTION => c"invalid option",
        SHMPIPE_NOT_FOUND => c"no segment of that name exists",
        SHMPIPE_VERSION_MISMATCH => c"the segment has another on-memory format version",
        SHMPIPE_NOT_SHMPIPE => c"not a shmpipe segment",
        SHMPIPE_WRONG_VARIANT => c"the segment was created for the other ring variant",
        SHMPIPE_SIZE_MISMATCH => c"the segment's size does not match its header",
        SHMPIPE_NOT_INITIALIZED => c"the segment's creator did not finish initialising it in time",
        SHMPIPE_NOT_REGULAR_FILE => c"the shared-memory object is not a regular file",
        SHMPIPE_NOT_OWNER => c"the segment belongs to another user",
        SHMPIPE_UNSAFE_PERMISSIONS => {
            c"the segment is accessible to group or others; set allow_shared_permissions to accept it"
        }
        SHMPIPE_ROLE_TAKEN => c"another live process already holds this role",
        SHMPIPE_LOCK_NOT_RECOVERABLE => c"the ring's lock is not recoverable",
        SHMPIPE_IO => c"an operating-system call failed",
        SHMPIPE_ALREADY_EXISTS => {
            c"a segment of that name already exists; open it, or remove it first if it is stale"
        }
        SHMPIPE_TRUNCATED => {
            c"the segment was truncated by another process; free the handle and create the ring again"
        }
        SHMPIPE_NULL_POINTER => c"a required pointer argument is NULL",
        SHMPIPE_INVALID_ARGUMENT => c"an argument is out of range",
        SHMPIPE_MISUSE => c"call out of sequence (claim/commit, peek/release, drain callback)",
        SHMPIPE_PANIC => c"shmpipe panicked (a bug); the handle can only be freed",
        SHMPIPE_UNKNOWN => c"an error this version of the C API does not know",
    }
}

/// A static, NUL-terminated description of `status` (any integer:
/// unknown values give "unknown status"). Never NULL; never free it.
#[no_mangle]
pub extern "C" fn shmpipe_status_str(status: c_int) -> *const c_char {
    // Compare integers: a C caller may pass any value, which must never
    // become an invalid `shmpipe_status` in Rust.
    const ALL: [shmpipe_status; 31] = [
        SHMPIPE_OK,
        SHMPIPE_FULL,
        SHMPIPE_EMPTY,
        SHMPIPE_TIMEOUT,
        SHMPIPE_DISCONNECTED,
        SHMPIPE_PEER_DIED,
        SHMPIPE_TOO_LARGE,
        SHMPIPE_BUFFER_TOO_SMALL,
        SHMPIPE_CORRUPTED,
        SHMPIPE_INVALID_NAME,
        SHMPIPE_INVALID_CAPACITY,
        SHMPIPE_INVALID_OPTION,
        SHMPIPE_NOT_FOUND,
        SHMPIPE_VERSION_MISMATCH,
        SHMPIPE_NOT_SHMPIPE,
        SHMPIPE_WRONG_VARIANT,
        SHMPIPE_SIZE_MISMATCH,
        SHMPIPE_NOT_INITIALIZED,
        SHMPIPE_NOT_REGULAR_FILE,
        SHMPIPE_NOT_OWNER,
        SHMPIPE_UNSAFE_PERMISSIONS,
        SHMPIPE_ROLE_TAKEN,
        SHMPIPE_LOCK_NOT_RECOVERABLE,
        SHMPIPE_IO,
        SHMPIPE_ALREADY_EXISTS,
        SHMPIPE_TRUNCATED,
        SHMPIPE_NULL_POINTER,
        SHMPIPE_INVALID_ARGUMENT,
        SHMPIPE_MISUSE,
        SHMPIPE_PANIC,
        SHMPIPE_UNKNOWN,
    ];
    ALL.iter()
        .find(|&&s| s as c_int == status)
        .map_or(c"unknown status".as_ptr(), |&s| status_cstr(s).as_ptr())
}

/// Details of the most recent failure on the calling thread: what went wrong
/// and what is allowed (e.g. which header word was corrupt, which argument
/// was NULL). An empty string if no call on this thread has failed yet.
/// Calls that succeed leave it unchanged. Never NULL. The string belongs to
/// the library and stays valid until the next failing shmpipe call on this
/// thread; copy it to keep it.
#[no_mangle]
pub extern "C" fn shmpipe_last_error_message() -> *const c_char {
    LAST.try_with(|l| l.try_borrow().map_or(c"".as_ptr(), |l| l.msg.as_ptr()))
        .unwrap_or(c"".as_ptr())
}

/// The `errno` of the most recent failure on the calling thread: the OS's
/// code for `SHMPIPE_IO` (never 0: an error the library detected itself
/// gets the nearest code, e.g. `EINVAL`), `EEXIST` for
/// `SHMPIPE_ALREADY_EXISTS`, `ENOENT` for `SHMPIPE_NOT_FOUND`; 0 if the most
/// recent failure was not an operating-system error.
#[no_mangle]
pub extern "C" fn shmpipe_last_os_error() -> c_int {
    LAST.try_with(|l| l.try_borrow().map_or(0, |l| l.errno))
        .unwrap_or(0)
}

const VERSION: &CStr =
    match CStr::from_bytes_with_nul(concat!(env!("CARGO_PKG_VERSION"), "\0").as_bytes()) {
        Ok(v) => v,
        Err(_) => panic!("the package version contains a NUL"),
    };

/// The library version, e.g. "0.1.0" (static; never free it).
#[no_mangle]
pub extern "C" fn shmpipe_version() -> *const c_char {
    VERSION.as_ptr()
}
