//! [`VariantKind`]: the ring design as a value, for code that chooses or
//! learns it at run time (the `Any*` endpoints, [`crate::SegmentInfo`],
//! [`crate::Error::WrongVariant`]). The type parameters [`crate::LockFree`]
//! and [`crate::Locked`] are the same two designs at compile time.

use std::fmt;
use std::str::FromStr;

use crate::layout;

/// Which ring design a segment uses: the run-time twin of the [`crate::Variant`]
/// type parameter.
///
/// Its one spelling, for display and parsing, is `lockfree` / `locked` (the
/// CLI's `--variant` values); parsing also accepts `lock-free`.
///
/// ```
/// use shmpipe::{LockFree, VariantKind};
///
/// assert_eq!("lock-free".parse::<VariantKind>()?, VariantKind::LockFree);
/// assert_eq!(VariantKind::Locked.to_string(), "locked");
/// assert_eq!(VariantKind::of::<LockFree>(), VariantKind::LockFree);
/// # Ok::<(), shmpipe::ParseVariantError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum VariantKind {
    /// The lock-free ring ([`crate::LockFree`]), the default.
    #[default]
    LockFree,
    /// The lock-protected ring ([`crate::Locked`]).
    Locked,
}

impl VariantKind {
    /// Both kinds, the default first.
    pub const ALL: [VariantKind; 2] = [VariantKind::LockFree, VariantKind::Locked];

    /// The kind recorded as `code` in a segment header (`None`: no kind).
    pub(crate) fn from_code(code: u32) -> Option<VariantKind> {
        match code {
            layout::VARIANT_LOCKFREE => Some(VariantKind::LockFree),
            layout::VARIANT_LOCKED => Some(VariantKind::Locked),
            _ => None,
        }
    }

    /// The name: `"lockfree"` or `"locked"`.
    ///
    /// ```
    /// assert_eq!(shmpipe::VariantKind::Locked.name(), "locked");
    /// ```
    pub const fn name(self) -> &'static str {
        match self {
            VariantKind::LockFree => "lockfree",
            VariantKind::Locked => "locked",
        }
    }
}

impl fmt::Display for VariantKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.name())
    }
}

impl FromStr for VariantKind {
    type Err = ParseVariantError;

    /// `lockfree` (or `lock-free`) and `locked`.
    ///
    /// # Errors
    /// [`ParseVariantError`] for any other text (it converts into
    /// [`crate::Error::InvalidOption`]).
    fn from_str(s: &str) -> Result<Self, ParseVariantError> {
        match s {
            "lockfree" | "lock-free" => Ok(VariantKind::LockFree),
            "locked" => Ok(VariantKind::Locked),
            _ => Err(ParseVariantError(s.to_string())),
        }
    }
}

/// Text that names no ring variant (from [`VariantKind::from_str`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseVariantError(pub String);

impl fmt::Display for ParseVariantError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "unknown ring variant {:?}; use lockfree or locked",
            self.0
        )
    }
}

impl std::error::Error for ParseVariantError {}
