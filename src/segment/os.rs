//! OS-backed segments: named POSIX shared-memory objects (`shm_open`),
//! sealed anonymous memfds, and descriptors handed over by another process;
//! their mapping, and the checks that a file someone else may have made is
//! ours to map. The syscalls go through `nix`; the mapping through
//! `memmap2`.

use std::ffi::CStr;
use std::fs::{File, Metadata};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::ptr::NonNull;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::{fcntl, FcntlArg, OFlag, SealFlag};
use nix::sys::memfd::{memfd_create, MFdFlags};
use nix::sys::stat::Mode;

use super::header::{self, Geometry};
use super::memory::{check_capacity, validate_name, Backing, Options, Segment, Truncation};
use crate::error::{Error, Result};
use crate::layout::{self, Header, HEADER_SIZE};
use crate::wait::WaitStrategy;

/// The seals an anonymous segment carries, without which the process that
/// holds another descriptor could still resize it under us (SIGBUS).
const SEALS: SealFlag = SealFlag::F_SEAL_SHRINK
    .union(SealFlag::F_SEAL_GROW)
    .union(SealFlag::F_SEAL_SEAL);

fn map(fd: File, size: u64) -> Result<(memmap2::MmapRaw, File)> {
    let len = usize::try_from(size).map_err(|_| Error::SizeMismatch {
        name: None,
        expected: 0,
        found: size,
    })?;
    let map = memmap2::MmapOptions::new()
        .len(len)
        .map_raw(&fd)
        .map_err(|e| Error::io("mmap", e))?;
    Ok((map, fd))
}

fn from_map(map: memmap2::MmapRaw, fd: File, geometry: Geometry) -> Segment {
    let base = map.as_mut_ptr();
    // SAFETY: the mapping is at least HEADER_SIZE bytes long (checked by
    // the callers) and page-aligned, so base and base + HEADER_SIZE are
    // non-null and suitably aligned for `Header` (align 128).
    let (header, data) = unsafe {
        (
            NonNull::new_unchecked(base as *mut Header),
            NonNull::new_unchecked(base.add(HEADER_SIZE)),
        )
    };
    Segment {
        header,
        data,
        geometry,
        backing: Backing::Mapped { _map: map, fd },
        unlink: None,
        inherited: std::sync::Mutex::new(None),
        truncation: None,
    }
}

/// Register a named segment's mapping with the SIGBUS handler (before
/// anything reads it), so that a truncation by another process turns
/// into zero pages and `Error::Truncated` instead of killing us.
fn protect(seg: &mut Segment, name: &str, len: u64) {
    let reg = match &seg.backing {
        Backing::Mapped { _map: map, .. } => crate::sigbus::register(map.as_mut_ptr(), map.len()),
        Backing::Heap { .. } => return,
    };
    seg.truncation = Some(Truncation {
        reg,
        name: name.into(),
        len,
    });
}

/// The checks every segment we did not create passes before it is mapped
/// (a named one, or a descriptor another process handed us): `fstat`, a
/// regular file, owned by our effective uid. Returns its metadata.
fn check_file(file: &File) -> Result<Metadata> {
    let meta = file.metadata().map_err(|e| Error::io("fstat", e))?;
    if !meta.file_type().is_file() {
        return Err(Error::NotRegularFile);
    }
    let euid = nix::unistd::geteuid().as_raw();
    if meta.uid() != euid {
        return Err(Error::NotOwner {
            owner: meta.uid(),
            euid,
        });
    }
    Ok(meta)
}

pub(super) fn shm_open(name: &CStr, flags: OFlag, mode: u32) -> Result<File> {
    nix::sys::mman::shm_open(
        name,
        flags | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::from_bits_truncate(mode as libc::mode_t),
    )
    .map(File::from)
    .map_err(|e| Error::io("shm_open", e.into()))
}

/// Remove the name `name`.
pub(super) fn shm_unlink(name: &CStr) -> std::result::Result<(), Errno> {
    nix::sys::mman::shm_unlink(name)
}

/// Create a named segment exclusively; `Ok(None)` if the name exists.
/// Errors name the segment.
pub(crate) fn create(name: &str, variant: u32, opts: &Options) -> Result<Option<Segment>> {
    create_unnamed(name, variant, opts).map_err(|e| e.for_segment(name))
}

fn create_unnamed(name: &str, variant: u32, opts: &Options) -> Result<Option<Segment>> {
    let cname = validate_name(name)?;
    check_capacity(opts.capacity)?;
    if opts.mode & !0o777 != 0 {
        return Err(Error::InvalidOption {
            reason: format!(
                "mode {:#o} has bits outside 0o777; give permission bits only",
                opts.mode
            ),
        });
    }
    let file = match shm_open(
        &cname,
        OFlag::O_RDWR | OFlag::O_CREAT | OFlag::O_EXCL,
        opts.mode,
    ) {
        Ok(f) => f,
        Err(Error::Io { source, .. }) if source.raw_os_error() == Some(libc::EEXIST) => {
            return Ok(None)
        }
        Err(e) => return Err(e),
    };
    // From here on, remove the half-made object if anything fails.
    let result = (|| {
        // shm_open applies the umask; set the mode the caller asked for.
        file.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(opts.mode))
            .map_err(|e| Error::io("fchmod", e))?;
        let size = layout::segment_size(opts.capacity);
        file.set_len(size).map_err(|e| Error::io("ftruncate", e))?;
        let (map, fd) = map(file, size)?;
        let geometry = Geometry {
            capacity: opts.capacity,
            wait: opts.wait,
            variant,
        };
        let mut seg = from_map(map, fd, geometry);
        protect(&mut seg, name, size);
        header::init(seg.header(), variant, opts.wait, opts.capacity)?;
        if seg.truncated(true) {
            return Err(seg.truncated_error());
        }
        if opts.unlink_on_drop {
            seg.unlink = Some((cname.clone(), std::process::id()));
        }
        Ok(seg)
    })();
    if result.is_err() {
        // We created this object just above; an error removing it leaves
        // nothing better to do than report the first one.
        let _ = shm_unlink(&cname);
    }
    result.map(Some)
}

/// Open an existing named segment, waiting up to `opts.open_timeout` for
/// its creator to finish initialising it. Errors name the segment.
pub(crate) fn open(name: &str, variant: u32, opts: &Options) -> Result<Segment> {
    open_unnamed(name, variant, opts).map_err(|e| e.for_segment(name))
}

fn open_unnamed(name: &str, variant: u32, opts: &Options) -> Result<Segment> {
    let cname = validate_name(name)?;
    let start = Instant::now();
    loop {
        let file = match shm_open(&cname, OFlag::O_RDWR, 0) {
            Err(Error::Io { source, .. }) if source.raw_os_error() == Some(libc::ENOENT) => {
                return Err(Error::NotFound {
                    name: name.to_string(),
                })
            }
            r => r?,
        };
        let meta = check_file(&file)?;
        let mode = meta.mode() & 0o7777;
        if mode & 0o077 != 0 && !opts.allow_shared_permissions {
            return Err(Error::UnsafePermissions { mode });
        }
        let size = meta.len();
        if size >= HEADER_SIZE as u64 {
            let (map, fd) = map(file, size)?;
            let placeholder = Geometry {
                capacity: 0,
                wait: WaitStrategy::Spin,
                variant,
            };
            let mut seg = from_map(map, fd, placeholder);
            protect(&mut seg, name, size);
            let valid = header::validate(seg.header(), size, variant);
            // Truncated between our fstat and our reads: the header we
            // read may be zero pages; say what happened.
            if seg.truncated(true) {
                return Err(seg.truncated_error());
            }
            if let Some(g) = valid? {
                seg.geometry = g;
                return Ok(seg);
            }
        } else if size != 0 {
            // A creator sizes the object in one ftruncate; anything
            // between 0 and a header is not a shmpipe segment.
            return Err(Error::SizeMismatch {
                name: None,
                expected: HEADER_SIZE as u64,
                found: size,
            });
        }
        let waited = start.elapsed();
        if waited >= opts.open_timeout {
            return Err(Error::NotInitialized { waited });
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// An anonymous segment in a sealed memfd, to be shared across `fork()`.
pub(crate) fn anonymous(variant: u32, opts: &Options) -> Result<Segment> {
    check_capacity(opts.capacity)?;
    let file = memfd_create(
        c"shmpipe",
        MFdFlags::MFD_CLOEXEC | MFdFlags::MFD_ALLOW_SEALING,
    )
    .map(File::from)
    .map_err(|e| Error::io("memfd_create", e.into()))?;
    let size = layout::segment_size(opts.capacity);
    file.set_len(size).map_err(|e| Error::io("ftruncate", e))?;
    fcntl(&file, FcntlArg::F_ADD_SEALS(SEALS))
        .map_err(|e| Error::io("sealing the memfd", e.into()))?;
    let (map, fd) = map(file, size)?;
    let geometry = Geometry {
        capacity: opts.capacity,
        wait: opts.wait,
        variant,
    };
    let seg = from_map(map, fd, geometry);
    header::init(seg.header(), variant, opts.wait, opts.capacity)?;
    Ok(seg)
}

// ---------------------------------------------------------------------
// Anonymous segments passed as descriptors (`shmpipe::process`).

/// Open the anonymous segment behind a descriptor another process handed
/// us (inherited across `exec`). The descriptor is foreign input and is
/// checked like a named open: `fstat` (a regular file of our own uid,
/// size exactly `896 + capacity`), magic, version, variant, and the
/// memfd seals `F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL`, without which
/// the sender could still truncate it under us (SIGBUS). Mode bits are
/// not checked: an unnamed memfd is reachable only through descriptors.
/// A header whose version is still 0 is `NotInitialized` at once (the
/// creator finished before passing the descriptor on).
pub(crate) fn from_fd(fd: OwnedFd, variant: u32) -> Result<Segment> {
    let file = File::from(fd);
    let meta = check_file(&file)?;
    // -1: the call failed (not a memfd at all); the error says so.
    let seals = fcntl(&file, FcntlArg::F_GET_SEALS).unwrap_or(-1);
    let need = SEALS.bits();
    if seals < 0 || seals & need != need {
        return Err(Error::io(
            "checking the inherited segment's seals",
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!(
                    "the descriptor is not a sealed memfd (seals {seals:#x}); a shared segment passed by descriptor must carry F_SEAL_SHRINK, F_SEAL_GROW and F_SEAL_SEAL"
                ),
            ),
        ));
    }
    let size = meta.len();
    if size < HEADER_SIZE as u64 {
        return Err(Error::SizeMismatch {
            name: None,
            expected: HEADER_SIZE as u64,
            found: size,
        });
    }
    let (map, fd) = map(file, size)?;
    let placeholder = Geometry {
        capacity: 0,
        wait: WaitStrategy::Spin,
        variant,
    };
    // The segment keeps an open file description of its own; the one
    // we were handed is kept aside until the first attach, which adopts
    // it if the sender locked a role on it for us (`RoleLock::acquire`).
    let own = File::from(reopen(&fd)?);
    let mut seg = from_map(map, own, placeholder);
    seg.inherited = std::sync::Mutex::new(Some(OwnedFd::from(fd)));
    match header::validate(seg.header(), size, variant)? {
        Some(g) => {
            seg.geometry = g;
            Ok(seg)
        }
        None => Err(Error::NotInitialized {
            waited: Duration::ZERO,
        }),
    }
}

/// A new open file description of `file` (reopened through /proc, which
/// `dup` would not give), close-on-exec.
pub(super) fn reopen(file: &File) -> Result<OwnedFd> {
    // std opens with O_CLOEXEC; opening our own fd's /proc link again
    // creates a new open file description (unlike dup).
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(format!("/proc/self/fd/{}", file.as_raw_fd()))
        .map(OwnedFd::from)
        .map_err(|e| Error::io("reopening the segment", e))
}

/// The error for a heap segment asked for its descriptor.
pub(super) fn no_descriptor(op: &'static str) -> Error {
    Error::io(
        op,
        std::io::Error::new(
            std::io::ErrorKind::Unsupported,
            "an in-process (heap) ring has no descriptor; use Builder::anonymous()",
        ),
    )
}

/// A new descriptor (close-on-exec) for this segment's file, to hand to
/// another process.
pub(crate) fn dup_fd(seg: &Segment) -> Result<OwnedFd> {
    let file = seg
        .file()
        .ok_or_else(|| no_descriptor("duplicating the segment descriptor"))?;
    file.try_clone()
        .map(OwnedFd::from)
        .map_err(|e| Error::io("duplicating the segment descriptor", e))
}

/// Remove a named segment.
///
/// ```
/// use shmpipe::Builder;
/// let name = format!("/doc-remove-{}", std::process::id());
/// let tx = Builder::new().capacity(4096).unlink_on_drop(false).create_producer(&name)?;
/// drop(tx); // the name stays (unlink_on_drop(false))
/// shmpipe::remove(&name)?;
/// assert!(matches!(shmpipe::remove(&name), Err(shmpipe::Error::NotFound { .. })));
/// # Ok::<(), shmpipe::Error>(())
/// ```
pub fn remove(name: &str) -> Result<()> {
    let cname = validate_name(name)?;
    match shm_unlink(&cname) {
        Ok(()) => Ok(()),
        Err(Errno::ENOENT) => Err(Error::NotFound {
            name: name.to_string(),
        }),
        Err(e) => Err(Error::io("shm_unlink", e.into()).for_segment(name)),
    }
}
