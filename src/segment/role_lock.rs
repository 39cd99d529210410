//! The role locks: an open-file-description lock on each role's byte of
//! the segment, taken without waiting. The kernel drops a lock with the
//! last descriptor of its description, so a dead process's role looks
//! free; `fork()` children must not keep one (see [`RoleLock`]).

use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicI32};

use nix::errno::Errno;
use nix::fcntl::{fcntl, FcntlArg};

use super::memory::Segment;
use super::os;
use super::role::{mark_attached, Role};
use crate::error::{Error, Result};

/// Mark `role` attached, taking its lock first. Returns the lock (None on
/// the heap, where both endpoints live in this process) and this
/// attachment's epoch of the role (for the locked ring's lock word).
pub(crate) fn attach(seg: &Segment, role: Role) -> Result<(Option<RoleLock>, u32)> {
    let lock = RoleLock::acquire(seg, role)?;
    Ok((lock, mark_attached(seg, role)))
}

/// The `flock` record of `role`'s byte (a write lock).
fn flock_for(role: Role) -> libc::flock {
    // SAFETY: flock is a plain C struct; zero is valid for every field
    // (and OFD locks require `l_pid` 0).
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = libc::F_WRLCK as libc::c_short;
    fl.l_whence = libc::SEEK_SET as libc::c_short;
    fl.l_start = role as libc::off_t;
    fl.l_len = 1;
    fl
}

/// Take `role`'s lock on `fd`'s open file description, without waiting.
///
/// # Errors
/// `RoleTaken` if another description holds it; `Io` otherwise.
fn lock_role(fd: impl AsFd, role: Role) -> Result<()> {
    match fcntl(fd, FcntlArg::F_OFD_SETLK(&flock_for(role))) {
        Ok(_) => Ok(()),
        Err(Errno::EAGAIN | Errno::EACCES) => Err(Error::RoleTaken { role: role.name() }),
        Err(e) => Err(Error::io("taking the role lock", e.into())),
    }
}

/// Whether a description other than `fd`'s holds `role`'s lock. `op`
/// names the query in an error.
fn held_by_other(fd: impl AsFd, role: Role, op: &'static str) -> Result<bool> {
    let mut fl = flock_for(role);
    fcntl(fd, FcntlArg::F_OFD_GETLK(&mut fl)).map_err(|e| Error::io(op, e.into()))?;
    Ok(fl.l_type != libc::F_UNLCK as libc::c_short)
}

/// Whether some open file description holds `role`'s lock on `file`
/// (a descriptor that itself holds no lock, e.g. an inspector's).
pub(crate) fn role_lock_held(file: &File, role: Role) -> Result<bool> {
    held_by_other(file, role, "querying a role lock")
}

/// Whether `fd`'s own open file description holds `role`'s lock, as
/// seen from `probe`, a description that holds no lock: `probe` sees
/// the lock held, and `fd` sees no conflicting lock (its own does not
/// conflict with itself).
fn holds_role(fd: &OwnedFd, probe: &File, role: Role) -> Result<bool> {
    let op = "querying a role lock";
    Ok(held_by_other(probe, role, op)? && !held_by_other(fd, role, op)?)
}

/// The lock an endpoint holds for as long as it lives: an open-file-
/// description lock on its role's byte, taken on a descriptor of its own
/// (reopened through /proc, so that no other endpoint shares it).
///
/// `fork()` would share the description with the child and keep the
/// role looking alive after the parent dies; so the descriptor is
/// registered in `ROLE_FDS`, and a `pthread_atfork` child handler closes
/// every registered descriptor in the child (`close` is
/// async-signal-safe; the table is lock-free).
pub(crate) struct RoleLock {
    fd: Option<OwnedFd>,
    slot: Option<usize>,
    pid: u32,
}

const NO_FD: i32 = -1;
/// Role-lock descriptors of this process, closed in forked children.
/// Beyond 64 live endpoints a descriptor is not registered (and a forked
/// child inherits it, as documented in DESIGN.md).
static ROLE_FDS: [AtomicI32; 64] = [const { AtomicI32::new(NO_FD) }; 64];
/// Whether the fork handler is registered. Not a `Once`: a child forked
/// while another thread ran its closure would block on it forever. Two
/// threads may both register; the handler is idempotent (a second run
/// finds every slot empty).
static ATFORK: AtomicBool = AtomicBool::new(false);

extern "C" fn close_role_fds_in_child() {
    for slot in &ROLE_FDS {
        let fd = slot.swap(NO_FD, std::sync::atomic::Ordering::Relaxed);
        if fd >= 0 {
            // SAFETY: the fd was registered by a live RoleLock of the
            // parent; in the child nothing else uses it. close(2) is
            // async-signal-safe, as a fork handler requires.
            unsafe { libc::close(fd) };
        }
    }
}

fn register(fd: i32) -> Option<usize> {
    use std::sync::atomic::Ordering;
    // Acquire/Release: a thread that sees `true` sees a completed
    // registration (it then relies on the handler being in place).
    if !ATFORK.load(Ordering::Acquire) {
        // SAFETY: registers a handler that only calls close(2) on
        // descriptors from a static lock-free table.
        if unsafe { libc::pthread_atfork(None, None, Some(close_role_fds_in_child)) } == 0 {
            ATFORK.store(true, Ordering::Release);
        }
    }
    // AcqRel claim of a free slot: the table is only read by the fork
    // handler (which runs in the forking thread after fork) and by drop.
    ROLE_FDS.iter().position(|slot| {
        slot.compare_exchange(NO_FD, fd, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
    })
}

impl Drop for RoleLock {
    fn drop(&mut self) {
        let fd = self.fd.take();
        if self.pid != std::process::id() && self.slot.is_some() {
            // Forked child: the fork handler already closed this
            // descriptor; its number may be reused by now.
            std::mem::forget(fd);
            return;
        }
        if let Some(i) = self.slot {
            ROLE_FDS[i].store(NO_FD, std::sync::atomic::Ordering::Relaxed);
        }
        drop(fd); // closes it: the kernel releases the role lock
    }
}

impl RoleLock {
    /// Take `role`'s lock; `RoleTaken` if a live process holds it.
    pub(crate) fn acquire(seg: &Segment, role: Role) -> Result<Option<RoleLock>> {
        let Some(file) = seg.file() else {
            return Ok(None);
        };
        // A descriptor handed over by the process that spawned us: if
        // its description holds this role's lock (taken for us by
        // `attach_for_child`), it becomes ours, so the role never looks
        // free between that process's lock and ours. Otherwise it is
        // closed (a plain copy, or another role's: we give that up).
        let inherited = seg
            .inherited
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        let fd = match inherited {
            Some(fd) if holds_role(&fd, file, role)? => fd,
            _ => os::reopen(file)?,
        };
        // Register before locking, so a fork from another thread never
        // hands the locked description to a child unregistered.
        let slot = register(fd.as_raw_fd());
        let locked = lock_role(&fd, role);
        // On error, dropping it unregisters and closes the descriptor.
        let lock = RoleLock {
            slot,
            fd: Some(fd),
            pid: std::process::id(),
        };
        locked?;
        Ok(Some(lock))
    }

    /// Whether some open file description holds `role`'s lock.
    pub(crate) fn is_held(&self, role: Role) -> Result<bool> {
        let Some(fd) = self.fd.as_ref().filter(|_| self.pid == std::process::id()) else {
            return Err(Error::io(
                "checking the peer",
                std::io::Error::other(
                    "this handle was inherited across fork(); attach a new endpoint in the child",
                ),
            ));
        };
        held_by_other(fd, role, "querying the peer's role lock")
    }
}

// ---------------------------------------------------------------------
// Locks taken for, or freed of, another process.

/// For `shmpipe::process::spawn`: take `role`'s lock on a new open file
/// description and mark the role attached, on behalf of a process that
/// will inherit the returned descriptor (close-on-exec: clear the flag
/// in that child only) and adopt the lock when it attaches. Until it
/// does, the role looks alive exactly as long as some process holds
/// the descriptor: a child that exits without attaching releases it,
/// and the peer sees `PeerDied` as for an attached one. The descriptor
/// is not registered for closing in forked children (the child that is
/// to hold it is forked by `Command::spawn`), so close it in this
/// process as soon as the child is spawned.
#[cfg(feature = "rpc")]
pub(crate) fn attach_for_child(seg: &Segment, role: Role) -> Result<OwnedFd> {
    let file = seg
        .file()
        .ok_or_else(|| os::no_descriptor("locking a role for a child process"))?;
    let fd = os::reopen(file)?;
    lock_role(&fd, role)?;
    mark_attached(seg, role);
    Ok(fd)
}

/// Remove the named segment `name` if no live process holds `role` on
/// it (for `rpc::listen`: the server role of a killed server). The role
/// lock is taken while the name is removed, and the name is removed
/// only if it still names the segment whose lock we hold, so of two
/// processes doing this at once, one removes the stale segment and the
/// other never removes what the first created since.
///
/// # Errors
/// `RoleTaken` if a live process holds `role` (nothing is removed); the
/// errors of opening the segment (`NotFound` if it is already gone).
#[cfg(feature = "rpc")]
pub(crate) fn remove_if_role_free(name: &str, role: Role) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    let opts = super::memory::Options {
        capacity: 0,
        wait: crate::wait::WaitStrategy::Spin,
        mode: 0,
        unlink_on_drop: false,
        open_timeout: std::time::Duration::from_secs(1),
        allow_shared_permissions: true,
    };
    let seg = os::open(name, 0, &opts)?;
    let _held = RoleLock::acquire(&seg, role)?;
    let same = |cname: &std::ffi::CStr| -> Result<bool> {
        let now = match os::shm_open(cname, nix::fcntl::OFlag::O_RDONLY, 0) {
            Err(Error::Io { source, .. }) if source.raw_os_error() == Some(libc::ENOENT) => {
                return Ok(false)
            }
            r => r?,
        };
        let a = now.metadata().map_err(|e| Error::io("fstat", e))?;
        let b = seg
            .file()
            .ok_or(Error::NotRegularFile)?
            .metadata()
            .map_err(|e| Error::io("fstat", e))?;
        Ok(a.dev() == b.dev() && a.ino() == b.ino())
    };
    let cname = super::memory::validate_name(name)?;
    if same(&cname).map_err(|e| e.for_segment(name))? {
        // ENOENT (removed meanwhile by someone else) is fine.
        let _ = os::shm_unlink(&cname);
    }
    Ok(())
}
