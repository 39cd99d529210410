//! Opening the local ring the way `shmpipe write` / `shmpipe read` do:
//! create it if missing, else attach, whatever its variant (the library's
//! [`AnyBuilder`] reads it from the segment).

use shmpipe::{AnyBuilder, Error, WaitStrategy};

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

/// A builder that creates lock-free rings, opens existing rings of either
/// variant, and never unlinks the segment (the rings outlive the bridge, as
/// with `shmpipe write` / `read`).
pub fn builder(c: &Create) -> AnyBuilder {
    AnyBuilder::default()
        .unlink_on_drop(false)
        .capacity(c.capacity)
        .wait(c.wait)
}
