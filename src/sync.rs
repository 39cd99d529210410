//! Atomics shim: `std` atomics normally, `loom`'s under `--cfg loom`, so the
//! same index and wake-up code is model-checked.

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{AtomicU32, AtomicU64, Ordering};
#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
