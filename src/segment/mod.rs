//! Creating, opening and validating the memory a ring lives in.
//!
//! A segment is a header ([`crate::layout::Header`]) followed by the data
//! area. It lives in a named POSIX shared-memory object (`shm_open`), in an
//! anonymous sealed memfd shared across `fork()`, or — for tests, Miri and
//! loom — on the heap. The ring code sees only `&Header` and a data pointer.
//!
//! One job a file; this one only names them and what they export:
//! - `memory`: the [`Segment`] itself, its heap backing, and the checks of
//!   a name and a capacity;
//! - `os`: the OS-backed segments (`shm_open`, memfd and its seals, a
//!   descriptor from another process), their mapping, and the one
//!   owner/regular-file check a file we did not create passes;
//! - `role`: the two roles, and marking a role attached;
//! - `role_lock`: the roles' open-file-description locks (and the locks
//!   taken for a child process, or to remove a dead server's name);
//! - `header`: writing a new header and validating a mapped one;
//! - `no_os`: the stand-ins under loom and Miri, where only heap segments
//!   exist (and no lock).

mod header;
mod memory;
#[cfg(any(loom, miri))]
mod no_os;
#[cfg(not(any(loom, miri)))]
mod os;
mod role;
#[cfg(not(any(loom, miri)))]
mod role_lock;

pub use memory::validate_name;
pub(crate) use memory::{Options, Segment};
#[cfg(all(feature = "rpc", any(loom, miri)))]
pub(crate) use no_os::remove_if_role_free;
#[cfg(any(loom, miri))]
pub(crate) use no_os::{anonymous, attach, create, open, RoleLock};
#[cfg(not(any(loom, miri)))]
pub use os::remove;
#[cfg(not(any(loom, miri)))]
pub(crate) use os::{anonymous, create, dup_fd, from_fd, open};
pub(crate) use role::Role;
#[cfg(not(any(loom, miri)))]
pub(crate) use role_lock::{attach, role_lock_held, RoleLock};
#[cfg(all(feature = "rpc", not(any(loom, miri))))]
pub(crate) use role_lock::{attach_for_child, remove_if_role_free};
