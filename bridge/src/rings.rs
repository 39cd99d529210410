//! Opening the local ring the way `shmpipe write` / `shmpipe read` do:
//! create it if missing, else attach, detecting its variant.

use std::io;
use std::time::{Duration, Instant};

use shmpipe::{Error, GenericBuilder, Variant, WaitStrategy};

/// Which ring design a segment uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Design {
    /// The lock-free ring (the default).
    LockFree,
    /// The mutex ring.
    Locked,
}

/// Options for creating a ring that does not exist yet.
#[derive(Debug, Clone, Copy)]
pub struct Create {
    /// Data-area size in bytes (power of two).
    pub capacity: u64,
    /// Wait strategy.
    pub wait: WaitStrategy,
}

/// A user-facing description of a library error about `name`.
pub fn describe(name: &str, e: &Error) -> String {
    match e {
        Error::RoleTaken { role } => format!(
            "{name}: another live process is already the {role} of this ring; \
             one bridge (or reader/writer) per ring side"
        ),
        e => format!("{name}: {e}"),
    }
}

fn is_not_found(e: &Error) -> bool {
    match e {
        Error::NotFound { .. } => true,
        Error::Io { source, .. } => source.kind() == io::ErrorKind::NotFound,
        _ => false,
    }
}

/// The design of `name` if it exists, else lock-free (what we create).
pub fn detect(name: &str) -> Result<Design, String> {
    let start = Instant::now();
    loop {
        match shmpipe::inspect(name) {
            Ok(info) => {
                return match info.variant {
                    v if v == shmpipe::Locked::NAME => Ok(Design::Locked),
                    v if v == shmpipe::LockFree::NAME => Ok(Design::LockFree),
                    v => Err(format!("{name}: unknown ring variant {v:?}")),
                }
            }
            Err(e) if is_not_found(&e) => return Ok(Design::LockFree),
            // Being created by a peer right now: give it a moment.
            Err(Error::NotInitialized { .. }) if start.elapsed() < Duration::from_secs(1) => {
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(e) => return Err(describe(name, &e)),
        }
    }
}

/// A builder that never unlinks the segment (the rings outlive the bridge,
/// as with `shmpipe write` / `read`).
pub fn builder<V: Variant>(c: &Create) -> GenericBuilder<V> {
    GenericBuilder::<V>::default()
        .unlink_on_drop(false)
        .capacity(c.capacity)
        .wait(c.wait)
}
