//! The [`Segment`]: where a ring's bytes are (a shared mapping or the
//! heap), its accessors, and the checks of a name and a capacity.

use std::ffi::CString;
use std::fs::File;
use std::os::fd::OwnedFd;
use std::ptr::NonNull;
use std::time::Duration;

use crate::error::{Error, Result};
use crate::layout::{self, Header};
use crate::wait::WaitStrategy;

use super::header::{self, Geometry};

pub(super) enum Backing {
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
    pub(super) header: NonNull<Header>,
    pub(super) data: NonNull<u8>,
    pub geometry: Geometry,
    pub(super) backing: Backing,
    /// Named segments whose creator asked to unlink on drop, and the
    /// creating process: a forked child that inherited the handle and drops
    /// it must not remove the name its parent still serves.
    pub(super) unlink: Option<(CString, u32)>,
    /// A descriptor handed to us by another process (`from_fd`) whose open
    /// file description may hold the role lock that process took on our
    /// behalf (`shmpipe::process::spawn`); the first attach adopts it if it
    /// holds that role's lock (see `RoleLock::acquire`), or closes it.
    pub(super) inherited: std::sync::Mutex<Option<OwnedFd>>,
    /// Named segments: the mapping's SIGBUS registration (`crate::sigbus`),
    /// so a truncation by another process is survived and reported.
    #[cfg(not(any(loom, miri)))]
    pub(super) truncation: Option<Truncation>,
    /// Under loom, the data area's record header words, one per 8 bytes:
    /// loom must see every access to them (the header is the consumer's
    /// signal), and it cannot track atomics placed in raw memory. Payload
    /// bytes stay in the raw data area.
    #[cfg(loom)]
    pub(super) loom_words: Box<[crate::sync::AtomicU64]>,
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
                // Errors (already removed) are ignored.
                let _ = nix::sys::mman::shm_unlink(name.as_c_str());
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
        match nix::sys::mman::shm_unlink(name.as_c_str()) {
            Ok(()) | Err(nix::errno::Errno::ENOENT) => {}
            Err(e) => {
                return Err(Error::io("removing the segment name", e.into())
                    .for_segment(&name.to_string_lossy()))
            }
        }
        #[cfg(any(loom, miri))]
        let _ = name;
        Ok(())
    }
}

/// A named segment's protection against truncation by another process.
#[cfg(not(any(loom, miri)))]
pub(super) struct Truncation {
    pub(super) reg: crate::sigbus::Registration,
    pub(super) name: Box<str>,
    /// Length of our mapping: the object's size when we mapped it.
    pub(super) len: u64,
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
///
/// ```
/// assert!(shmpipe::validate_name("/jobs").is_ok());
/// let err = shmpipe::validate_name("jobs/today").unwrap_err();
/// assert!(matches!(err, shmpipe::Error::InvalidName { .. }), "{err}");
/// ```
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

pub(super) fn check_capacity(capacity: u64) -> Result<()> {
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

    /// A segment on the heap, for in-process rings, Miri and loom.
    pub(crate) fn heap(variant: u32, opts: &Options) -> Result<Segment> {
        check_capacity(opts.capacity)?;
        let header = Box::new(header::zeroed_header());
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
        header::init(seg.header(), variant, opts.wait, opts.capacity)?;
        Ok(seg)
    }
}
