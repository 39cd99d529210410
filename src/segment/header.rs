//! The segment header: writing a new one, and validating one that another
//! process wrote (foreign input: every field is read once, checked, and
//! only the checked copy is used).

use crate::error::{Error, Result};
use crate::layout::{self, Header, HEADER_SIZE, MAGIC, VERSION};
use crate::sync::Ordering;
use crate::variant::VariantKind;
use crate::wait::WaitStrategy;

/// Configuration validated from the header once, at attach time. The header
/// copies may be changed later by a hostile peer; we never re-read them.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Geometry {
    pub capacity: u64,
    pub wait: WaitStrategy,
    pub variant: u32,
}

/// Initialise a zeroed header for `variant` and publish it (version last).
pub(super) fn init(h: &Header, variant: u32, wait: WaitStrategy, capacity: u64) -> Result<()> {
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
pub(super) fn validate(h: &Header, size: u64, variant: u32) -> Result<Option<Geometry>> {
    let c = &h.config;
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

#[cfg(not(loom))]
pub(super) fn zeroed_header() -> Header {
    // SAFETY: every field of `Header` is an atomic integer or padding;
    // all-zero is a valid value for each.
    unsafe { std::mem::zeroed() }
}

#[cfg(loom)]
pub(super) fn zeroed_header() -> Header {
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
