//! shmpipe's record protocol alone, at 8 B, for the probes to run beside
//! the library (`rt_probe`, `stream_probe`; DESIGN.md §2).

use std::sync::atomic::{AtomicU64, Ordering};

/// The bare record protocol at 8 B, for reference: 16-byte records (an
/// 8-byte header as the signal, the payload), the header slot after each
/// record zeroed before the header is stored, the consumer's `head` stored
/// per message on its own line, the producer's room by a cached `head`;
/// no validation, liveness, `tail` or wake-up. `zero_far` replaces the
/// store after each record by zeroing the ring 4 KiB ahead of `tail`, a
/// line at a time, inside the room (what DESIGN.md §2 measured against
/// the store ahead).
struct BareRing {
    words: Box<[AtomicU64]>,
    head: crossbeam_utils::CachePadded<AtomicU64>,
}

/// Bytes of a bare record (8 B payload); they divide the ring, so no
/// record straddles its end.
const BARE_REC: u64 = 16;
/// How far ahead of `tail` `zero_far` keeps the ring zeroed.
const BARE_ZERO_AHEAD: u64 = 4096;

pub struct BareTx {
    ring: std::sync::Arc<BareRing>,
    /// The ring's first word, 64-aligned, and its size in bytes.
    base: *const AtomicU64,
    cap: u64,
    tail: u64,
    head_cache: u64,
    zero_far: bool,
    /// Every word from `tail` to here is zero (`zero_far` only).
    zeroed: u64,
}

pub struct BareRx {
    ring: std::sync::Arc<BareRing>,
    base: *const AtomicU64,
    cap: u64,
    head: u64,
}

// SAFETY: `base` points into the ring each handle holds an `Arc` of.
unsafe impl Send for BareTx {}
unsafe impl Send for BareRx {}

/// The word at position `pos` of the ring at `base` (`cap` bytes).
///
/// # Safety
/// `base` must point to the first of `cap / 8` live words.
#[inline(always)]
unsafe fn word<'a>(base: *const AtomicU64, cap: u64, pos: u64) -> &'a AtomicU64 {
    // SAFETY: masked into the ring, which the caller vouches for.
    unsafe { &*base.add(((pos & (cap - 1)) / 8) as usize) }
}

impl BareTx {
    fn word(&self, pos: u64) -> &AtomicU64 {
        // SAFETY: `base` points into the ring `self.ring` keeps alive.
        unsafe { word(self.base, self.cap, pos) }
    }

    #[inline(always)]
    pub fn try_send(&mut self, msg: &[u8; 8]) -> bool {
        let end = self.tail + BARE_REC;
        if end + 8 - self.head_cache > self.cap {
            // Acquire: pairs with the consumer's Release store of `head`
            // (its reads of the slots happened before we reuse them).
            self.head_cache = self.ring.head.load(Ordering::Acquire);
            if end + 8 - self.head_cache > self.cap {
                return false;
            }
        }
        // Relaxed, as the zero stores below: ordered before the header by
        // its Release store.
        self.word(self.tail + 8)
            .store(u64::from_le_bytes(*msg), Ordering::Relaxed);
        if self.zero_far && (self.tail ^ end) >= 64 {
            let to = ((end & !63) + BARE_ZERO_AHEAD).min((self.head_cache + self.cap) & !63);
            let mut at = self.zeroed.max(end);
            while at < to {
                self.word(at).store(0, Ordering::Relaxed);
                at += 8;
            }
            self.zeroed = self.zeroed.max(to);
        }
        if end >= self.zeroed {
            self.word(end).store(0, Ordering::Relaxed);
        }
        // Release: pairs with the consumer's Acquire load of the header.
        self.word(self.tail).store((1 << 32) | 8, Ordering::Release);
        self.tail = end;
        true
    }
}

impl BareRx {
    #[inline(always)]
    pub fn try_recv(&mut self) -> Option<[u8; 8]> {
        // SAFETY: `base` points into the ring `self.ring` keeps alive.
        let at = |pos: u64| unsafe { word(self.base, self.cap, pos) };
        // Acquire: pairs with the producer's Release store of the header,
        // so the payload below is visible.
        if at(self.head).load(Ordering::Acquire) == 0 {
            return None;
        }
        // Relaxed: ordered after the header's Acquire load.
        let m = at(self.head + 8).load(Ordering::Relaxed).to_le_bytes();
        self.head += BARE_REC;
        // Release: pairs with the producer's Acquire load of `head`.
        self.ring.head.store(self.head, Ordering::Release);
        Some(m)
    }
}

pub fn bare_pair(cap: u64, zero_far: bool) -> (BareTx, BareRx) {
    assert!(
        cap.is_power_of_two() && cap >= 64,
        "ring bytes: a power of two >= 64"
    );
    let ring = std::sync::Arc::new(BareRing {
        words: (0..cap / 8 + 8).map(|_| AtomicU64::new(0)).collect(),
        head: crossbeam_utils::CachePadded::new(AtomicU64::new(0)),
    });
    let p = ring.words.as_ptr();
    let base = p.wrapping_add((64 - p as usize % 64) % 64 / 8);
    (
        BareTx {
            ring: ring.clone(),
            base,
            cap,
            tail: 0,
            head_cache: 0,
            zero_far,
            zeroed: 0,
        },
        BareRx {
            ring,
            base,
            cap,
            head: 0,
        },
    )
}
