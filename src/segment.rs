//! Creating, opening and validating the memory a ring lives in.
//!
//! A segment is a header ([`crate::layout::Header`]) followed by the data
//! area. It lives in a named POSIX shared-memory object (`shm_open`), in an
//! anonymous sealed memfd shared across `fork()`, or — for tests, Miri and
//! loom — on the heap. The ring code sees only `&Header` and a data pointer.

use std::ffi::CString;
use std::fs::File;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::ptr::NonNull;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::layout::{self, Header, HEADER_SIZE, MAGIC, STATE_ATTACHED, VERSION};
use crate::sync::Ordering;
use crate::variant::VariantKind;
use crate::wait::WaitStrategy;

/// Role of an endpoint; also the byte of the segment its OFD lock covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    Producer = 0,
    Consumer = 1,
}

impl Role {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Role::Producer => "producer",
            Role::Consumer => "consumer",
        }
    }
    pub(crate) fn peer(self) -> Role {
        match self {
            Role::Producer => Role::Consumer,
            Role::Consumer => Role::Producer,
        }
    }
}

/// Configuration validated from the header once, at attach time. The header
/// copies may be changed later by a hostile peer; we never re-read them.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Geometry {
    pub capacity: u64,
    pub wait: WaitStrategy,
    pub variant: u32,
}

enum Backing {
    /// A shared mapping of a shm object or memfd.
    #[cfg(not(any(loom, miri)))]
    Mapped { _map: memmap2::MmapRaw, fd: File },
    /// Heap memory, for in-process rings, Miri and loom.
    Heap {
        header: NonNull<Header>,
        data: NonNull<u8>,
        data_layout: std::alloc::Layout,
    },
}

/// A mapped (or heap) segment. Shared between the endpoints of one process
/// through an `Arc`.
pub(crate) struct Segment {
    header: NonNull<Header>,
    data: NonNull<u8>,
    pub geometry: Geometry,
    backing: Backing,
    /// Named segments whose creator asked to unlink on drop, and the
    /// creating process: a forked child that inherited the handle and drops
    /// it must not remove the name its parent still serves.
    unlink: Option<(CString, u32)>,
    /// A descriptor handed to us by another process (`from_fd`) whose open
    /// file description may hold the role lock that process took on our
    /// behalf (`shmpipe::process::spawn`); the first attach adopts it if it
    /// holds that role's lock (see `RoleLock::acquire`), or closes it.
    inherited: std::sync::Mutex<Option<OwnedFd>>,
    /// Named segments: the mapping's SIGBUS registration (`crate::sigbus`),
    /// so a truncation by another process is survived and reported.
    #[cfg(not(any(loom, miri)))]
    truncation: Option<Truncation>,
    /// Under loom, the data area's record header words, one per 8 bytes:
    /// loom must see every access to them (the header is the consumer's
    /// signal), and it cannot track atomics placed in raw memory. Payload
    /// bytes stay in the raw data area.
    #[cfg(loom)]
    loom_words: Box<[crate::sync::AtomicU64]>,
}

// SAFETY: the header is all atomics (see `Header`), the data area is only
// accessed through raw pointers under the ring protocol, and the backing
// owns the mapping until drop.
unsafe impl Send for Segment {}
// SAFETY: as above.
unsafe impl Sync for Segment {}

impl Drop for Segment {
    fn drop(&mut self) {
        // Unregister from the SIGBUS handler before the mapping goes (the
        // fields, the mapping among them, are dropped after this function).
        #[cfg(not(any(loom, miri)))]
        drop(self.truncation.take());
        if let Some((name, creator)) = &self.unlink {
            // Only in the creating process: a forked child that inherited
            // the handle leaves the name to its parent.
            #[cfg(not(any(loom, miri)))]
            if *creator == std::process::id() {
                // SAFETY: valid NUL-terminated name. Errors (already removed) are ignored.
                unsafe { libc::shm_unlink(name.as_ptr()) };
            }
            #[cfg(any(loom, miri))]
            let _ = (name, creator);
        }
        if let Backing::Heap {
            header,
            data,
            data_layout,
        } = &self.backing
        {
            // SAFETY: both were allocated in `Segment::heap` with these layouts
            // and are freed exactly once, here.
            unsafe {
                drop(Box::from_raw(header.as_ptr()));
                std::alloc::dealloc(data.as_ptr(), *data_layout);
            }
        }
    }
}

impl Segment {
    /// Remove the name now (creator with `unlink_on_drop`), reporting errors;
    /// a name already removed by someone else is not an error.
    pub(crate) fn unlink_now(&mut self) -> Result<()> {
        let Some((name, _)) = self.unlink.take() else {
            return Ok(());
        };
        #[cfg(not(any(loom, miri)))]
        {
            // SAFETY: valid NUL-terminated name.
            if unsafe { libc::shm_unlink(name.as_ptr()) } != 0 {
                let e = std::io::Error::last_os_error();
                if e.raw_os_error() != Some(libc::ENOENT) {
                    return Err(Error::io("removing the segment name", e)
                        .for_segment(&name.to_string_lossy()));
                }
            }
        }
        #[cfg(any(loom, miri))]
        let _ = name;
        Ok(())
    }
}

/// A named segment's protection against truncation by another process.
#[cfg(not(any(loom, miri)))]
struct Truncation {
    reg: crate::sigbus::Registration,
    name: Box<str>,
    /// Length of our mapping: the object's size when we mapped it.
    len: u64,
}

impl Segment {
    /// Whether this named segment was truncated under us: the SIGBUS handler
    /// replaced our mapping by zero pages (one atomic load), or, with
    /// `check_size` (one `fstat`, for the slow paths), the object is now
    /// smaller than our mapping. Always false for memfd and heap segments
    /// (sealed, or private to this process).
    #[inline]
    pub(crate) fn truncated(&self, check_size: bool) -> bool {
        #[cfg(not(any(loom, miri)))]
        if let Some(t) = &self.truncation {
            if t.reg.truncated() {
                return true;
            }
            if check_size {
                let shrunk = self
                    .file()
                    .and_then(|f| f.metadata().ok())
                    .is_some_and(|m| m.len() < t.len);
                if shrunk {
                    t.reg.mark_truncated();
                }
                return shrunk;
            }
        }
        let _ = check_size;
        false
    }

    /// The error for a truncated segment, naming it.
    #[cold]
    pub(crate) fn truncated_error(&self) -> Error {
        #[cfg(not(any(loom, miri)))]
        let name = self.truncation.as_ref().map(|t| t.name.to_string());
        #[cfg(any(loom, miri))]
        let name: Option<String> = None;
        Error::Truncated {
            name: name.unwrap_or_default(),
        }
    }
}

/// Options for creating or opening a segment (from the public builder).
#[derive(Debug, Clone)]
pub(crate) struct Options {
    pub capacity: u64,
    pub wait: WaitStrategy,
    pub mode: u32,
    pub unlink_on_drop: bool,
    pub open_timeout: Duration,
    pub allow_shared_permissions: bool,
}

/// Check a POSIX shared-memory name. The name the user gives is the name in
/// `/dev/shm` (minus the leading slash); nothing is added to it.
pub fn validate_name(name: &str) -> Result<CString> {
    let bad = |reason| Error::InvalidName {
        name: name.to_string(),
        reason,
    };
    let rest = name
        .strip_prefix('/')
        .ok_or_else(|| bad("it must start with '/'"))?;
    if rest.is_empty() {
        return Err(bad("it has nothing after the '/'"));
    }
    if rest.contains('/') {
        return Err(bad("it contains a '/' after the first character"));
    }
    if rest.len() > 255 {
        return Err(bad("it is longer than 255 bytes after the '/'"));
    }
    if rest == "." || rest == ".." {
        return Err(bad("'.' and '..' are not object names"));
    }
    CString::new(name).map_err(|_| bad("it contains a NUL byte"))
}

fn check_capacity(capacity: u64) -> Result<()> {
    if layout::capacity_ok(capacity) {
        Ok(())
    } else {
        Err(Error::InvalidCapacity {
            requested: capacity,
        })
    }
}

impl Segment {
    pub(crate) fn header(&self) -> &Header {
        // SAFETY: `header` points to a live, aligned `Header` (mapping or
        // box) for as long as `self` lives; all its fields are atomics.
        unsafe { self.header.as_ref() }
    }

    pub(crate) fn data(&self) -> *mut u8 {
        self.data.as_ptr()
    }

    /// The record header word at data-area offset `off`, masked into the
    /// data area and to 8 bytes (for readers that hold no endpoint:
    /// `stats`, `inspect`; the endpoints use their own copy of the mask).
    pub(crate) fn word(&self, off: u64) -> &crate::sync::AtomicU64 {
        #[cfg(not(loom))]
        {
            let off = off & ((self.geometry.capacity - 1) & !7);
            // SAFETY: `off` is inside the data area (capacity >= 64 bytes
            // after the header) and 8-aligned (the data area is 128-aligned);
            // the mapping lives as long as `self`. Atomic: peers write it.
            unsafe { &*(self.data().add(off as usize) as *const crate::sync::AtomicU64) }
        }
        #[cfg(loom)]
        {
            self.loom_word(off)
        }
    }

    /// Loom: the record header word at data-area offset `off` (masked).
    #[cfg(loom)]
    pub(crate) fn loom_word(&self, off: u64) -> &crate::sync::AtomicU64 {
        let i = (off / 8) as usize % self.loom_words.len();
        &self.loom_words[i]
    }

    /// The file backing the segment, if any (for OFD locks).
    #[cfg(not(any(loom, miri)))]
    pub(crate) fn file(&self) -> Option<&File> {
        match &self.backing {
            Backing::Mapped { fd, .. } => Some(fd),
            Backing::Heap { .. } => None,
        }
    }

    /// Initialise a zeroed header for `variant` and publish it (version last).
    fn init_header(&self, variant: u32, wait: WaitStrategy, capacity: u64) -> Result<()> {
        let h = self.header();
        let c = &h.config;
        c.magic.store(MAGIC, Ordering::Relaxed);
        c.variant.store(variant, Ordering::Relaxed);
        c.wait.store(wait.code(), Ordering::Relaxed);
        c.flags.store(0, Ordering::Relaxed);
        c.capacity.store(capacity, Ordering::Relaxed);
        c.header_size.store(HEADER_SIZE as u64, Ordering::Relaxed);
        // The wait lines need no initialisation: all their words (the
        // semaphore counts included) start at zero.
        // Release: pairs with the Acquire load of `version` in `validate`, so
        // an opener that sees VERSION also sees every field written above.
        c.version.store(VERSION, Ordering::Release);
        Ok(())
    }

    /// Read and check the header of a mapping of `size` bytes. `Ok(None)`
    /// means "not initialised yet".
    fn validate(&self, size: u64, variant: u32) -> Result<Option<Geometry>> {
        let c = &self.header().config;
        // Acquire: pairs with the creator's Release store of `version`.
        let version = c.version.load(Ordering::Acquire);
        let magic = c.magic.load(Ordering::Relaxed);
        if version == 0 {
            if magic != 0 && magic != MAGIC {
                return Err(Error::NotShmpipe {
                    name: None,
                    found: magic,
                });
            }
            return Ok(None);
        }
        if magic != MAGIC {
            return Err(Error::NotShmpipe {
                name: None,
                found: magic,
            });
        }
        if version != VERSION {
            return Err(Error::VersionMismatch {
                name: None,
                found: version,
                expected: VERSION,
            });
        }
        let header_size = c.header_size.load(Ordering::Relaxed);
        if header_size != HEADER_SIZE as u64 {
            return Err(Error::corrupted("header size field", header_size));
        }
        let capacity = c.capacity.load(Ordering::Relaxed);
        if !layout::capacity_ok(capacity) {
            return Err(Error::corrupted("capacity field", capacity));
        }
        if size != layout::segment_size(capacity) {
            return Err(Error::SizeMismatch {
                name: None,
                expected: layout::segment_size(capacity),
                found: size,
            });
        }
        let found = c.variant.load(Ordering::Relaxed);
        let found_kind = VariantKind::from_code(found)
            .ok_or_else(|| Error::corrupted("variant field", found as u64))?;
        if let Some(expected) = VariantKind::from_code(variant).filter(|&k| k != found_kind) {
            return Err(Error::WrongVariant {
                name: None,
                found: found_kind,
                expected,
            });
        }
        let code = c.wait.load(Ordering::Relaxed);
        let wait = WaitStrategy::from_code(code)
            .ok_or_else(|| Error::corrupted("wait strategy field", code as u64))?;
        Ok(Some(Geometry {
            capacity,
            wait,
            variant: found,
        }))
    }

    /// A segment on the heap, for in-process rings, Miri and loom.
    pub(crate) fn heap(variant: u32, opts: &Options) -> Result<Segment> {
        check_capacity(opts.capacity)?;
        let header = Box::new(zeroed_header());
        let data_layout = std::alloc::Layout::from_size_align(opts.capacity as usize, 128)
            .map_err(|_| Error::InvalidCapacity {
                requested: opts.capacity,
            })?;
        // SAFETY: the layout has a non-zero size (capacity >= MIN_CAPACITY).
        let data = unsafe { std::alloc::alloc_zeroed(data_layout) };
        let data = NonNull::new(data).ok_or_else(|| {
            Error::io(
                "allocating the ring",
                std::io::ErrorKind::OutOfMemory.into(),
            )
        })?;
        let header = NonNull::from(Box::leak(header));
        let seg = Segment {
            header,
            data,
            geometry: Geometry {
                capacity: opts.capacity,
                wait: opts.wait,
                variant,
            },
            backing: Backing::Heap {
                header,
                data,
                data_layout,
            },
            unlink: None,
            inherited: std::sync::Mutex::new(None),
            #[cfg(not(any(loom, miri)))]
            truncation: None,
            #[cfg(loom)]
            loom_words: (0..opts.capacity / 8)
                .map(|_| crate::sync::AtomicU64::new(0))
                .collect(),
        };
        seg.init_header(variant, opts.wait, opts.capacity)?;
        Ok(seg)
    }
}

#[cfg(not(loom))]
fn zeroed_header() -> Header {
    // SAFETY: every field of `Header` is an atomic integer or padding;
    // all-zero is a valid value for each.
    unsafe { std::mem::zeroed() }
}

#[cfg(loom)]
fn zeroed_header() -> Header {
    use crate::layout::*;
    use crate::sync::{AtomicU32, AtomicU64};
    use crossbeam_utils::CachePadded;
    let counts = || Counts {
        at: AtomicU64::new(0),
        messages: AtomicU64::new(0),
        bytes: AtomicU64::new(0),
    };
    let ww = || {
        CachePadded::new(WaitWord {
            seq: AtomicU32::new(0),
            waiting: AtomicU32::new(0),
            count: AtomicU32::new(0),
        })
    };
    Header {
        config: CachePadded::new(Config {
            magic: AtomicU64::new(0),
            version: AtomicU32::new(0),
            variant: AtomicU32::new(0),
            wait: AtomicU32::new(0),
            flags: AtomicU32::new(0),
            capacity: AtomicU64::new(0),
            header_size: AtomicU64::new(0),
        }),
        prod: CachePadded::new(ProducerLine {
            tail: AtomicU64::new(0),
            full_waits: AtomicU64::new(0),
            wake_syscalls: AtomicU64::new(0),
            counts_seq: AtomicU64::new(0),
            counts: [counts(), counts()],
        }),
        cons: CachePadded::new(ConsumerLine {
            head: AtomicU64::new(0),
            empty_waits: AtomicU64::new(0),
            wake_syscalls: AtomicU64::new(0),
        }),
        endpoints: CachePadded::new(Endpoints {
            producer: AtomicU32::new(0),
            consumer: AtomicU32::new(0),
            lock_repairs: AtomicU64::new(0),
            producer_light: AtomicU32::new(0),
            consumer_light: AtomicU32::new(0),
            producer_epoch: AtomicU32::new(0),
            consumer_epoch: AtomicU32::new(0),
            producer_pid: AtomicU32::new(0),
            consumer_pid: AtomicU32::new(0),
        }),
        wait_consumer: ww(),
        wait_producer: ww(),
        lock: CachePadded::new(LockLine {
            word: AtomicU32::new(0),
        }),
    }
}

// ---------------------------------------------------------------------------
// OS-backed segments.

#[cfg(not(any(loom, miri)))]
mod os {
    use super::*;
    use std::os::unix::fs::MetadataExt;

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
            Backing::Mapped { _map: map, .. } => {
                crate::sigbus::register(map.as_mut_ptr(), map.len())
            }
            Backing::Heap { .. } => return,
        };
        seg.truncation = Some(Truncation {
            reg,
            name: name.into(),
            len,
        });
    }

    fn shm_open(name: &CString, flags: libc::c_int, mode: u32) -> Result<File> {
        // SAFETY: `name` is NUL-terminated; shm_open returns a new fd or -1.
        let fd = unsafe {
            libc::shm_open(
                name.as_ptr(),
                flags | libc::O_NOFOLLOW | libc::O_CLOEXEC,
                mode as libc::mode_t,
            )
        };
        if fd < 0 {
            return Err(Error::last_os("shm_open"));
        }
        // SAFETY: `fd` is a freshly opened descriptor that nothing else owns.
        Ok(unsafe { File::from_raw_fd(fd) })
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
            libc::O_RDWR | libc::O_CREAT | libc::O_EXCL,
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
            seg.init_header(variant, opts.wait, opts.capacity)?;
            if seg.truncated(true) {
                return Err(seg.truncated_error());
            }
            if opts.unlink_on_drop {
                seg.unlink = Some((cname.clone(), std::process::id()));
            }
            Ok(seg)
        })();
        if result.is_err() {
            // SAFETY: valid name; we created this object just above.
            unsafe { libc::shm_unlink(cname.as_ptr()) };
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
            let file = match shm_open(&cname, libc::O_RDWR, 0) {
                Err(Error::Io { source, .. }) if source.raw_os_error() == Some(libc::ENOENT) => {
                    return Err(Error::NotFound {
                        name: name.to_string(),
                    })
                }
                r => r?,
            };
            let meta = file.metadata().map_err(|e| Error::io("fstat", e))?;
            if !meta.file_type().is_file() {
                return Err(Error::NotRegularFile);
            }
            // SAFETY: geteuid cannot fail.
            let euid = unsafe { libc::geteuid() };
            if meta.uid() != euid {
                return Err(Error::NotOwner {
                    owner: meta.uid(),
                    euid,
                });
            }
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
                let valid = seg.validate(size, variant);
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
        // SAFETY: the name is a NUL-terminated literal.
        let fd = unsafe {
            libc::memfd_create(
                c"shmpipe".as_ptr(),
                libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING,
            )
        };
        if fd < 0 {
            return Err(Error::last_os("memfd_create"));
        }
        // SAFETY: fresh descriptor owned by nobody else.
        let file = unsafe { File::from_raw_fd(fd) };
        let size = layout::segment_size(opts.capacity);
        file.set_len(size).map_err(|e| Error::io("ftruncate", e))?;
        let seals = libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_SEAL;
        // SAFETY: plain fcntl on a descriptor we own.
        if unsafe { libc::fcntl(file.as_raw_fd(), libc::F_ADD_SEALS, seals) } != 0 {
            return Err(Error::last_os("sealing the memfd"));
        }
        let (map, fd) = map(file, size)?;
        let geometry = Geometry {
            capacity: opts.capacity,
            wait: opts.wait,
            variant,
        };
        let seg = from_map(map, fd, geometry);
        seg.init_header(variant, opts.wait, opts.capacity)?;
        Ok(seg)
    }

    /// Whether some open file description holds `role`'s lock on `file`
    /// (a descriptor that itself holds no lock, e.g. an inspector's).
    pub(crate) fn role_lock_held(file: &File, role: Role) -> Result<bool> {
        let mut fl = flock_for(role, libc::F_WRLCK);
        // SAFETY: valid fd and flock out-struct.
        if unsafe { libc::fcntl(file.as_raw_fd(), libc::F_OFD_GETLK, &mut fl) } != 0 {
            return Err(Error::last_os("querying a role lock"));
        }
        Ok(fl.l_type != libc::F_UNLCK as libc::c_short)
    }

    // -----------------------------------------------------------------
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
        let meta = file.metadata().map_err(|e| Error::io("fstat", e))?;
        if !meta.file_type().is_file() {
            return Err(Error::NotRegularFile);
        }
        // SAFETY: geteuid cannot fail.
        let euid = unsafe { libc::geteuid() };
        if meta.uid() != euid {
            return Err(Error::NotOwner {
                owner: meta.uid(),
                euid,
            });
        }
        // SAFETY: plain fcntl on a descriptor we own.
        let seals = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_GET_SEALS) };
        let need = libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_SEAL;
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
        match seg.validate(size, variant)? {
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
    fn reopen(file: &File) -> Result<OwnedFd> {
        let path = CString::new(format!("/proc/self/fd/{}", file.as_raw_fd()))
            .map_err(|_| Error::corrupted("fd path", 0))?;
        // SAFETY: valid path; opening our own fd again creates a new
        // open file description (unlike dup).
        let raw = unsafe { libc::open(path.as_ptr(), libc::O_RDWR | libc::O_CLOEXEC) };
        if raw < 0 {
            return Err(Error::last_os("reopening the segment"));
        }
        // SAFETY: fresh descriptor owned by nobody else.
        Ok(unsafe { OwnedFd::from_raw_fd(raw) })
    }

    /// Whether `fd`'s own open file description holds `role`'s lock, as
    /// seen from `probe`, a description that holds no lock: `probe` sees
    /// the lock held, and `fd` sees no conflicting lock (its own does not
    /// conflict with itself).
    fn holds_role(fd: &OwnedFd, probe: &File, role: Role) -> Result<bool> {
        let query = |raw: i32| -> Result<bool> {
            let mut fl = flock_for(role, libc::F_WRLCK);
            // SAFETY: valid fd and flock out-struct.
            if unsafe { libc::fcntl(raw, libc::F_OFD_GETLK, &mut fl) } != 0 {
                return Err(Error::last_os("querying a role lock"));
            }
            Ok(fl.l_type != libc::F_UNLCK as libc::c_short)
        };
        Ok(query(probe.as_raw_fd())? && !query(fd.as_raw_fd())?)
    }

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
        let file = seg.file().ok_or_else(|| {
            Error::io(
                "locking a role for a child process",
                std::io::Error::new(
                    std::io::ErrorKind::Unsupported,
                    "an in-process (heap) ring has no descriptor; use Builder::anonymous()",
                ),
            )
        })?;
        let fd = reopen(file)?;
        let fl = flock_for(role, libc::F_WRLCK);
        // SAFETY: valid fd and flock struct.
        if unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_OFD_SETLK, &fl) } != 0 {
            let e = std::io::Error::last_os_error();
            return match e.raw_os_error() {
                Some(libc::EAGAIN) | Some(libc::EACCES) => {
                    Err(Error::RoleTaken { role: role.name() })
                }
                _ => Err(Error::io("taking the role lock", e)),
            };
        }
        super::mark_attached(seg, role);
        Ok(fd)
    }

    /// A new descriptor (close-on-exec) for this segment's file, to hand to
    /// another process.
    pub(crate) fn dup_fd(seg: &Segment) -> Result<OwnedFd> {
        let file = seg.file().ok_or_else(|| {
            Error::io(
                "duplicating the segment descriptor",
                std::io::Error::new(
                    std::io::ErrorKind::Unsupported,
                    "an in-process (heap) ring has no descriptor; use Builder::anonymous()",
                ),
            )
        })?;
        file.try_clone()
            .map(OwnedFd::from)
            .map_err(|e| Error::io("duplicating the segment descriptor", e))
    }

    /// Remove a named segment.
    pub fn remove(name: &str) -> Result<()> {
        let cname = validate_name(name)?;
        // SAFETY: valid NUL-terminated name.
        if unsafe { libc::shm_unlink(cname.as_ptr()) } != 0 {
            let e = std::io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::ENOENT) {
                return Err(Error::NotFound {
                    name: name.to_string(),
                });
            }
            return Err(Error::io("shm_unlink", e).for_segment(name));
        }
        Ok(())
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
        let opts = Options {
            capacity: 0,
            wait: WaitStrategy::Spin,
            mode: 0,
            unlink_on_drop: false,
            open_timeout: Duration::from_secs(1),
            allow_shared_permissions: true,
        };
        let seg = open(name, 0, &opts)?;
        let _held = RoleLock::acquire(&seg, role)?;
        let same = |cname: &CString| -> Result<bool> {
            let now = match shm_open(cname, libc::O_RDONLY, 0) {
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
        let cname = validate_name(name)?;
        if same(&cname).map_err(|e| e.for_segment(name))? {
            // SAFETY: valid NUL-terminated name. ENOENT (removed meanwhile
            // by someone else) is fine.
            unsafe { libc::shm_unlink(cname.as_ptr()) };
        }
        Ok(())
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
    static ROLE_FDS: [std::sync::atomic::AtomicI32; 64] =
        [const { std::sync::atomic::AtomicI32::new(NO_FD) }; 64];
    /// Whether the fork handler is registered. Not a `Once`: a child forked
    /// while another thread ran its closure would block on it forever. Two
    /// threads may both register; the handler is idempotent (a second run
    /// finds every slot empty).
    static ATFORK: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

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
        // Acquire/Release: a thread that sees `true` sees a completed
        // registration (it then relies on the handler being in place).
        if !ATFORK.load(std::sync::atomic::Ordering::Acquire) {
            // SAFETY: registers a handler that only calls close(2) on
            // descriptors from a static lock-free table.
            if unsafe { libc::pthread_atfork(None, None, Some(close_role_fds_in_child)) } == 0 {
                ATFORK.store(true, std::sync::atomic::Ordering::Release);
            }
        }
        // AcqRel claim of a free slot: the table is only read by the fork
        // handler (which runs in the forking thread after fork) and by drop.
        ROLE_FDS.iter().position(|slot| {
            slot.compare_exchange(
                NO_FD,
                fd,
                std::sync::atomic::Ordering::AcqRel,
                std::sync::atomic::Ordering::Relaxed,
            )
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

    fn flock_for(role: Role, ty: libc::c_int) -> libc::flock {
        // SAFETY: flock is a plain C struct; zero is valid for every field.
        let mut fl: libc::flock = unsafe { std::mem::zeroed() };
        fl.l_type = ty as libc::c_short;
        fl.l_whence = libc::SEEK_SET as libc::c_short;
        fl.l_start = role as libc::off_t;
        fl.l_len = 1;
        fl
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
                _ => reopen(file)?,
            };
            let raw = fd.as_raw_fd();
            // Register before locking, so a fork from another thread never
            // hands the locked description to a child unregistered.
            let lock = RoleLock {
                slot: register(raw),
                fd: Some(fd),
                pid: std::process::id(),
            };
            let fl = flock_for(role, libc::F_WRLCK);
            // SAFETY: valid fd and flock struct.
            if unsafe { libc::fcntl(raw, libc::F_OFD_SETLK, &fl) } != 0 {
                let e = std::io::Error::last_os_error();
                return match e.raw_os_error() {
                    Some(libc::EAGAIN) | Some(libc::EACCES) => {
                        Err(Error::RoleTaken { role: role.name() })
                    }
                    _ => Err(Error::io("taking the role lock", e)),
                };
            }
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
            let mut fl = flock_for(role, libc::F_WRLCK);
            // SAFETY: valid fd and flock out-struct.
            if unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_OFD_GETLK, &mut fl) } != 0 {
                return Err(Error::last_os("querying the peer's role lock"));
            }
            Ok(fl.l_type != libc::F_UNLCK as libc::c_short)
        }
    }
}

#[cfg(all(feature = "rpc", not(any(loom, miri))))]
pub(crate) use os::attach_for_child;
#[cfg(not(any(loom, miri)))]
pub use os::remove;
#[cfg(all(feature = "rpc", not(any(loom, miri))))]
pub(crate) use os::remove_if_role_free;
#[cfg(not(any(loom, miri)))]
pub(crate) use os::{anonymous, create, open, role_lock_held, RoleLock};
#[cfg(not(any(loom, miri)))]
pub(crate) use os::{dup_fd, from_fd};

/// Under loom and Miri there is no `shm_open`/`mmap`/`memfd`/`fcntl`: only
/// heap segments (`Builder::in_process`) exist; the other makers report this.
#[cfg(any(loom, miri))]
mod no_os {
    use super::*;

    fn unsupported() -> Error {
        Error::io(
            "opening a shared segment",
            std::io::Error::new(
                std::io::ErrorKind::Unsupported,
                "named and anonymous segments are unavailable under loom and Miri; use in_process()",
            ),
        )
    }

    pub(crate) fn create(name: &str, _: u32, opts: &Options) -> Result<Option<Segment>> {
        validate_name(name)?;
        check_capacity(opts.capacity)?;
        Err(unsupported())
    }

    pub(crate) fn open(name: &str, _: u32, _: &Options) -> Result<Segment> {
        validate_name(name)?;
        Err(unsupported())
    }

    pub(crate) fn anonymous(_: u32, opts: &Options) -> Result<Segment> {
        check_capacity(opts.capacity)?;
        Err(unsupported())
    }

    #[cfg(feature = "rpc")]
    pub(crate) fn remove_if_role_free(name: &str, _: Role) -> Result<()> {
        validate_name(name)?;
        Err(unsupported())
    }
}

#[cfg(all(feature = "rpc", any(loom, miri)))]
pub(crate) use no_os::remove_if_role_free;
#[cfg(any(loom, miri))]
pub(crate) use no_os::{anonymous, create, open};

/// Stand-in when there is no OS segment (heap only): no lock is ever held.
#[cfg(any(loom, miri))]
pub(crate) struct RoleLock;

#[cfg(any(loom, miri))]
impl RoleLock {
    pub(crate) fn acquire(_: &Segment, _: Role) -> Result<Option<RoleLock>> {
        Ok(None)
    }
    pub(crate) fn is_held(&self, _: Role) -> Result<bool> {
        Ok(true)
    }
}

/// Mark `role` attached, taking its lock first. Returns the lock (None on
/// the heap, where both endpoints live in this process) and this
/// attachment's epoch of the role (for the locked ring's lock word).
pub(crate) fn attach(seg: &Segment, role: Role) -> Result<(Option<RoleLock>, u32)> {
    let lock = RoleLock::acquire(seg, role)?;
    Ok((lock, mark_attached(seg, role)))
}

/// Bump `role`'s epoch and store ATTACHED in its state word (its lock is
/// held). Returns the new epoch.
fn mark_attached(seg: &Segment, role: Role) -> u32 {
    let e = &seg.header().endpoints;
    let (word, epoch) = match role {
        Role::Producer => (&e.producer, &e.producer_epoch),
        Role::Consumer => (&e.consumer, &e.consumer_epoch),
    };
    // Relaxed: only we write our role's epoch while we hold the role; the
    // SeqCst state store below publishes it. A peer may have scribbled it:
    // wrapping, and 16 bits are used.
    let next = epoch.load(Ordering::Relaxed).wrapping_add(1).max(1);
    epoch.store(next, Ordering::Relaxed);
    // SeqCst (a release): pairs with the peer's Acquire load of our state
    // word, and with its SeqCst load in `Endpoint::sleep` (see `Endpoint::attach`).
    word.store(STATE_ATTACHED, Ordering::SeqCst);
    next
}
