//! The ring's message and byte counters without a store per message
//! (format v3, DESIGN.md §2 "Counters").
//!
//! The producer counts in its handle and publishes a *checkpoint* — the
//! messages and payload bytes committed before a record position `at` —
//! only when it reloads `head` (its slow path), at attach and at close. A
//! reader adds the records it finds from `at` on, walking the record chain
//! to the zero word that ends it. The walk is exact because a checkpoint
//! is stored at every `head` reload: the producer's cached `head` is then
//! at most `at`, so until the next checkpoint it writes only below
//! `at + capacity` and no record from `at` on is overwritten. The consumer
//! keeps no counters: what it received is what was sent minus the records
//! from `head` on.
//!
//! Checkpoints are double-buffered: the producer fills the slot that is not
//! current, then flips `counts_seq` (one store), so one that dies midway
//! leaves the previous checkpoint intact.

use crate::error::{Error, Result};
use crate::frame::{self, check_lag, HDR, KIND_PAD};
use crate::layout::{self, Header};
use crate::segment::Segment;
use crate::sync::{fence, Ordering};

/// A checkpoint: counts of what was committed before record position `at`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Checkpoint {
    pub at: u64,
    pub messages: u64,
    pub bytes: u64,
}

/// The current checkpoint (a seqlock read: retried if the producer flipped
/// it meanwhile; a peer that keeps flipping gets a possibly torn value,
/// which only misstates informational counts and is validated before use).
pub(crate) fn load(h: &Header) -> (u64, Checkpoint) {
    let mut seq = 0;
    let mut c = Checkpoint::default();
    for _ in 0..4 {
        // Acquire: pairs with the Release store of `counts_seq` in `store`,
        // so the slot's words written before it are seen.
        seq = h.prod.counts_seq.load(Ordering::Acquire);
        let slot = &h.prod.counts[(seq & 1) as usize];
        c = Checkpoint {
            at: slot.at.load(Ordering::Relaxed),
            messages: slot.messages.load(Ordering::Relaxed),
            bytes: slot.bytes.load(Ordering::Relaxed),
        };
        // Acquire fence: the slot's loads above happen before the re-read
        // of `counts_seq` (the seqlock reader's pattern); an unchanged
        // number means the producer did not refill that slot meanwhile.
        fence(Ordering::Acquire);
        if h.prod.counts_seq.load(Ordering::Relaxed) == seq {
            break;
        }
    }
    (seq, c)
}

/// Publish checkpoint `c` as number `seq + 1` (the producer's own count of
/// flips, so a scribbled `counts_seq` does not steer it): fill the slot
/// that is not current, then flip.
pub(crate) fn store(h: &Header, seq: u64, c: Checkpoint) -> u64 {
    let next = seq.wrapping_add(1);
    let slot = &h.prod.counts[(next & 1) as usize];
    // Relaxed: published by the Release flip below.
    slot.at.store(c.at, Ordering::Relaxed);
    slot.messages.store(c.messages, Ordering::Relaxed);
    slot.bytes.store(c.bytes, Ordering::Relaxed);
    // Release: pairs with the Acquire load in `load`.
    h.prod.counts_seq.store(next, Ordering::Release);
    next
}

/// What a walk over the record chain found.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Walk {
    /// Position of the zero word that ends the chain.
    pub end: u64,
    /// Messages (and their payload bytes) at positions `>= from_count`.
    pub messages: u64,
    pub bytes: u64,
    /// Messages (and payload bytes) at positions `>= head`: unread.
    pub unread: u64,
    pub unread_bytes: u64,
}

/// Walk the records from `start` (a record boundary) to the zero word that
/// ends the chain (or to `stop`, the locked ring's `tail`), counting
/// messages from `from_count` and from `head` on.
/// Every header is validated; the walk is bounded by the capacity (it may
/// not run past `head + capacity`).
pub(crate) fn walk(
    seg: &Segment,
    start: u64,
    from_count: u64,
    head: u64,
    stop: u64,
) -> Result<Walk> {
    let cap = seg.geometry.capacity;
    let max = layout::max_message(cap) as u64;
    check_lag(start, head, cap)?;
    let mut w = Walk {
        end: start,
        ..Walk::default()
    };
    let mut pos = start;
    // Each step advances by at least 8 bytes; the capacity bounds it.
    for _ in 0..=cap / 8 + 1 {
        let off = pos & (cap - 1);
        // Acquire: pairs with the producer's Release store of the header,
        // so the zero-ahead store after the record is visible too.
        let word = seg.word(off).load(Ordering::Acquire);
        if word == 0 || pos == stop {
            w.end = pos;
            return Ok(w);
        }
        let (kind, len) = frame::decode(word)?;
        let step = if kind == KIND_PAD {
            if off == 0 || len != cap - off - HDR {
                return Err(Error::corrupted("padding record with a wrong length", word));
            }
            cap - off
        } else {
            if len > max || off + frame::record_len(len) > cap {
                return Err(Error::corrupted(
                    "message record runs past the data area",
                    word,
                ));
            }
            if pos >= from_count {
                w.messages += 1;
                w.bytes += len;
            }
            if pos >= head {
                w.unread += 1;
                w.unread_bytes += len;
            }
            frame::record_len(len)
        };
        pos += step;
        if pos + HDR > head + cap {
            return Err(Error::corrupted(
                "published records run past the free space",
                pos,
            ));
        }
    }
    Err(Error::corrupted("record scan did not end", pos))
}
