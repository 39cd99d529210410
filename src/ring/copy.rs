//! Copying a payload into or out of the data area without a call to
//! `memcpy` for small messages.
//!
//! `ptr::copy_nonoverlapping` with a length known only at run time becomes a
//! call into the C library's `memcpy`, whose dispatch costs more than the
//! copy itself for the 8–64-byte messages a ring mostly carries (callgrind:
//! about 30 instructions per call, counted in DESIGN.md §2). Up to 64 bytes
//! this copies with at most four pairs of possibly overlapping unaligned
//! loads and stores, as `memcpy` implementations do internally; longer
//! payloads go to `memcpy`.

use std::ptr::{read_unaligned as ld, write_unaligned as st};

/// Copy `len` bytes from `src` to `dst`.
///
/// # Safety
/// `src` must be valid for `len` bytes of reads and `dst` for `len` bytes
/// of writes, and the two ranges must not overlap. No alignment is needed.
/// The caller is responsible for the ranges being free of concurrent
/// writes (or, for bytes a hostile peer may write, accepts that it only
/// reads garbage: every access stays inside the two ranges).
#[inline(always)]
pub(super) unsafe fn copy(src: *const u8, dst: *mut u8, len: usize) {
    // SAFETY: in every arm, each load reads `[src + a, src + a + w)` and
    // each store writes `[dst + a, dst + a + w)` for a width `w` and an
    // offset `a` with `a + w <= len`, so every access stays inside the
    // ranges the caller vouches for; overlapping stores write the same
    // bytes twice.
    unsafe {
        if len <= 16 {
            if len >= 8 {
                let a = ld(src as *const u64);
                let b = ld(src.add(len - 8) as *const u64);
                st(dst as *mut u64, a);
                st(dst.add(len - 8) as *mut u64, b);
            } else if len >= 4 {
                let a = ld(src as *const u32);
                let b = ld(src.add(len - 4) as *const u32);
                st(dst as *mut u32, a);
                st(dst.add(len - 4) as *mut u32, b);
            } else if len > 0 {
                // 1..=3 bytes: the first, the middle and the last.
                let a = *src;
                let m = *src.add(len / 2);
                let z = *src.add(len - 1);
                *dst = a;
                *dst.add(len / 2) = m;
                *dst.add(len - 1) = z;
            }
        } else if len <= 32 {
            let a = ld(src as *const u128);
            let b = ld(src.add(len - 16) as *const u128);
            st(dst as *mut u128, a);
            st(dst.add(len - 16) as *mut u128, b);
        } else if len <= 64 {
            let a = ld(src as *const u128);
            let b = ld(src.add(16) as *const u128);
            let y = ld(src.add(len - 32) as *const u128);
            let z = ld(src.add(len - 16) as *const u128);
            st(dst as *mut u128, a);
            st(dst.add(16) as *mut u128, b);
            st(dst.add(len - 32) as *mut u128, y);
            st(dst.add(len - 16) as *mut u128, z);
        } else {
            std::ptr::copy_nonoverlapping(src, dst, len);
        }
    }
}

/// How far ahead of `tail` a send asks for the ring's line in writable
/// state ([`prefetch_for_write`]): four lines, about as many 8 B messages as
/// a transfer between the cores takes in the VM's slow state.
pub(super) const PREFETCH_AHEAD: u64 = 256;

/// Ask the CPU to fetch the cache line at `p` for writing (x86-64
/// `PREFETCHW`) and return at once. A producer writes the ring's lines in
/// order, and each was last read by the consumer on the other core: without
/// the hint, the first store to a new line waits for that core to give it
/// up, and every later store waits behind it (stores commit in order). With
/// it the transfer overlaps the messages before. Measured with
/// `examples/stream_probe` and `rt_probe` (DESIGN.md §2).
///
/// A hint only: it reads and writes no memory, cannot fault (any address
/// will do), and CPUs without the instruction execute it as a no-op
/// (Intel's before Broadwell; the opcode was reserved as a NOP).
#[inline(always)]
pub(super) fn prefetch_for_write(p: *const u8) {
    #[cfg(all(target_arch = "x86_64", not(any(loom, miri))))]
    // SAFETY: PREFETCHW accesses no memory the program can observe and
    // cannot fault; it touches no stack and leaves the flags alone.
    unsafe {
        std::arch::asm!("prefetchw [{}]", in(reg) p, options(nostack, preserves_flags, readonly));
    }
    #[cfg(not(all(target_arch = "x86_64", not(any(loom, miri)))))]
    let _ = p;
}

#[cfg(test)]
mod tests {
    use super::copy;

    #[test]
    fn every_length_up_to_200_copies_exactly() {
        let src: Vec<u8> = (0..200u32).map(|i| (i * 7 + 1) as u8).collect();
        for len in 0..200 {
            for shift in 0..3 {
                let mut dst = vec![0xEEu8; 210];
                // SAFETY: both ranges lie inside their vectors; distinct vectors.
                unsafe { copy(src[shift..].as_ptr(), dst[1..].as_mut_ptr(), len.min(197)) };
                let n = len.min(197);
                assert_eq!(
                    &dst[1..1 + n],
                    &src[shift..shift + n],
                    "len {n} shift {shift}"
                );
                assert_eq!(dst[0], 0xEE, "wrote before the range (len {n})");
                assert!(
                    dst[1 + n..].iter().all(|&b| b == 0xEE),
                    "wrote past the range (len {n})"
                );
            }
        }
    }
}
