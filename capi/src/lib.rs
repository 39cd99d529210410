//! # The C ABI of shmpipe
//!
//! This crate builds `libshmpipe_capi.a` and `libshmpipe_capi.so` for C
//! and C++ programs (installed as `libshmpipe.{a,so}` by `install.sh`); `include/shmpipe.h` (generated from this source by cbindgen,
//! and committed) declares every function, type and constant, with the docs
//! written here. See `README.md` beside this crate for how to build and link.
//!
//! ```c
//! #include <assert.h>
//! #include <stdio.h>
//! #include <string.h>
//! #include "shmpipe.h"
//!
//! int main(void) {
//!     shmpipe_options o;
//!     shmpipe_options_default(&o);          /* 1 MiB, futex waits, lock-free */
//!     o.capacity = 4096;
//!
//!     shmpipe_pair *pair;                   /* two threads; named: shmpipe_producer_create */
//!     shmpipe_producer *tx;                 /* and shmpipe_consumer_open in two processes */
//!     shmpipe_consumer *rx;
//!     if (shmpipe_pair_in_process(&o, &pair) != SHMPIPE_OK ||
//!         shmpipe_pair_split(pair, &tx, &rx) != SHMPIPE_OK) {
//!         fprintf(stderr, "shmpipe: %s\n", shmpipe_last_error_message());
//!         return 1;
//!     }
//!     shmpipe_send(tx, "hello", 5);
//!     shmpipe_producer_free(tx);            /* closes the producer side */
//!
//!     char buf[64];
//!     size_t len;
//!     assert(shmpipe_recv(rx, buf, sizeof buf, &len) == SHMPIPE_OK);
//!     assert(len == 5 && memcmp(buf, "hello", 5) == 0);
//!     assert(shmpipe_recv(rx, buf, sizeof buf, &len) == SHMPIPE_DISCONNECTED);
//!     shmpipe_consumer_free(rx);
//!     return 0;
//! }
//! ```
//!
//! ```text
//! cargo build --release -p shmpipe-capi && capi/install.sh ~/.local
//! export PKG_CONFIG_PATH=~/.local/lib/pkgconfig
//! cc -std=c99 first.c $(pkg-config --cflags --libs shmpipe-static) -o first && ./first
//! ```
//!
//! rustdoc does not compile C, so `cargo test` does not run this snippet
//! (it was checked by hand against `include/shmpipe.h` and the static
//! library); `tests/c_api.rs` builds and runs `tests/c/capi_test.c` and the
//! programs in `examples/` (`producer.c`, `consumer.c`, `parent_child.c`).
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
