//! `shmpipe write` and `shmpipe read`: a named ring used like a FIFO.
//!
//! Either side may start first: whichever finds no segment creates it
//! (`O_EXCL`, so of two racing commands exactly one creates) and the other
//! attaches. Neither unlinks on drop; what is left behind is decided when a
//! command ends, after it closed its own role:
//!
//! - both roles closed in order (the peer's state is CLOSED and its role lock
//!   free): the segment is removed by whichever side ends last (`read --keep`
//!   keeps it when the reader is that side);
//! - the peer never attached: `read` removes the segment (it holds nothing to
//!   salvage); `write` removes it only if it created it and did not finish
//!   (interrupted) — a writer that finished leaves it for a reader started later;
//! - the peer is alive (it cleans up when it ends) or died (a new process may
//!   take over its role and the data): the segment is kept.
//!
//! `write` closes its role in order when its input ends, when it is
//! interrupted (SIGINT, SIGTERM, SIGHUP: like `cat` killed by Ctrl-C in a
//! pipeline, the reader then sees the end of the stream) and when the reader
//! closed first. On any other failure (`--timeout`, a read error on stdin,
//! the reader died) it leaves its role unclosed, so that a reader reports an
//! incomplete transfer instead of a clean end. `read` always closes in order.
//!
//! `read` uses the two-phase receive: a message is released only after
//! `write(2)` to stdout returned for all of it, so a reader killed at any
//! point never loses a message; its replacement gets the one message that was
//! being written out again (at least once; only that one may repeat).
//!
//! Variant conflicts: a segment's variant is fixed by its creator. A command
//! whose explicit `--variant` differs from an existing segment's reports it
//! and exits 1; if its own role in that segment was never attached and the
//! other role is held by a live process (a reader or writer waiting for this
//! one), it also removes the name. The waiting side notices within one idle
//! slice (100 ms): while its peer has never attached it checks that the name
//! still refers to the segment it opened (device and inode), and ends with a
//! message when it does not (the same happens after `shmpipe rm`).
//!
//! # Files
//! - `signals.rs`: catching SIGINT/SIGTERM/SIGHUP without `SA_RESTART`.
//! - `stdio.rs`: reading stdin and writing stdout with those signals in mind.
//! - `open.rs`: creating or attaching (the library detects the variant),
//!   variant conflicts, and tidying the segment up at the end.
//! - `write.rs`, `read.rs`: the two commands.

mod open;
mod read;
mod signals;
mod stdio;
mod write;

pub use read::{read, ReadArgs, READ_ABOUT};
pub use write::{write, WriteArgs, WRITE_ABOUT};
