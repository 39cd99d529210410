//! # The C ABI of shmpipe
//!
//! This crate builds `libshmpipe_capi.a` and `libshmpipe_capi.so` for C
//! and C++ programs (installed as `libshmpipe.{a,so}` by `install.sh`); `include/shmpipe.h` (generated from this source by cbindgen,
//! and committed) declares every function, type and constant, with the docs
//! written here. See `README.md` beside this crate for how to build and link.
//!
//! How the boundary is kept safe:
//! - No Rust panic crosses it: every entry point runs its body under
//!   `catch_unwind` ([`handle::ffi`]); a caught panic is `SHMPIPE_PANIC`,
//!   and a handle whose call panicked answers `SHMPIPE_PANIC` from then on
//!   (free it).
//! - Every pointer is checked for NULL before use (`SHMPIPE_NULL_POINTER`).
//!   What cannot be checked (a dangling or foreign pointer, a buffer shorter
//!   than its stated length, a handle used from two threads at once) is
//!   undefined behaviour, as it is in C; each function's `# Safety` section
//!   says what it requires.
//! - Claims and peeked messages are tracked in the handle, so a wrong
//!   sequence (`commit` without a claim, a second `claim`, `release`
//!   without `peek`, a send while a claim is open, a re-entrant call from a
//!   drain callback) is `SHMPIPE_MISUSE`, never UB.
//! - Enumerations C passes in (wait strategy, variant) are plain integers,
//!   validated here: a C program can pass any value.
//!
//! The handles own the library's [`shmpipe_core::AnyProducer`] /
//! [`shmpipe_core::AnyConsumer`] (either variant, chosen by
//! `shmpipe_options.variant`) and use only its public API.

#![deny(unsafe_op_in_unsafe_fn, missing_docs)]
#![warn(clippy::undocumented_unsafe_blocks)]
// The C names are the API: `shmpipe_producer`, `SHMPIPE_OK`, ...
#![allow(non_camel_case_types)]

// In the order the header presents them.
mod consumer;
mod endpoint;
mod handle;
mod options;
mod pair;
mod producer;
mod stats;
mod status;
mod waitset;

pub use consumer::*;
pub use options::*;
pub use pair::*;
pub use producer::*;
pub use stats::*;
pub use status::*;
pub use waitset::*;
