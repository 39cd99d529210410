//! Reading a named segment's header and endpoint liveness without attaching
//! to it (`shmpipe inspect`, `shmpipe ls`).

use std::os::unix::fs::MetadataExt;
use std::time::Duration;

use crate::error::{Error, Result};
use crate::layout;
use crate::segment::{self, Options, Role};
use crate::variant::VariantKind;
use crate::wait::WaitStrategy;

/// Read a named segment's header, counters and endpoint liveness without
/// attaching to it. Any variant is accepted.
///
///
/// ```
/// use shmpipe::{inspect, Builder, EndpointState, VariantKind};
/// let name = format!("/doc-inspect-{}", std::process::id());
/// let mut tx = Builder::new().capacity(4096).create_producer(&name)?;
/// tx.send(b"waiting")?;
/// let info = inspect(&name)?;
/// assert_eq!((info.variant, info.capacity), (VariantKind::LockFree, 4096));
/// assert_eq!(info.stats.messages_sent, 1);
/// assert_eq!(info.stats.producer, EndpointState::Attached);
/// drop(tx); // the creator removes the name
/// assert!(matches!(inspect(&name), Err(shmpipe::Error::NotFound { .. })));
/// # Ok::<(), shmpipe::Error>(())
/// ```
///
/// # Errors
/// The errors of opening a segment (`NotFound`, `NotShmpipe`,
/// `VersionMismatch`, `SizeMismatch`, `NotOwner`, ...); `Io` if a role lock
/// cannot be queried.
pub fn inspect(name: &str) -> Result<SegmentInfo> {
    let opts = Options {
        capacity: 0,
        wait: WaitStrategy::Spin,
        mode: 0,
        unlink_on_drop: false,
        open_timeout: Duration::ZERO,
        allow_shared_permissions: true,
    };
    let seg = segment::open(name, 0, &opts)?;
    let file = seg.file().ok_or(Error::NotRegularFile)?;
    let meta = file.metadata().map_err(|e| Error::io("fstat", e))?;
    // Our descriptor holds no lock, so any lock reported belongs to an endpoint.
    let probe = |role: Role| segment::role_lock_held(file, role);
    let g = seg.geometry;
    Ok(SegmentInfo {
        variant: VariantKind::from_code(g.variant)
            .ok_or_else(|| Error::corrupted("variant field", u64::from(g.variant)))?,
        wait: g.wait,
        capacity: g.capacity,
        size: meta.len(),
        mode: meta.mode() & 0o7777,
        max_message: layout::max_message(g.capacity),
        stats: crate::ring::stats_of(&seg),
        producer_alive: probe(Role::Producer)?,
        consumer_alive: probe(Role::Consumer)?,
    })
}

/// What [`inspect`] found in a segment.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct SegmentInfo {
    /// The ring design recorded at creation.
    pub variant: VariantKind,
    /// Wait strategy recorded at creation.
    pub wait: WaitStrategy,
    /// Data-area capacity in bytes.
    pub capacity: u64,
    /// Size of the object in bytes.
    pub size: u64,
    /// Permission bits of the object.
    pub mode: u32,
    /// Largest message the ring accepts.
    pub max_message: usize,
    /// Counters and endpoint states.
    pub stats: crate::ring::Stats,
    /// Whether a live process holds the producer role lock.
    pub producer_alive: bool,
    /// Whether a live process holds the consumer role lock.
    pub consumer_alive: bool,
}
