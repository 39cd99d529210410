//! Atomics shim: `std` atomics normally, `loom`'s under `--cfg loom`, so the
//! same index and wake-up code is model-checked.

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{fence, AtomicU32, AtomicU64, Ordering};
#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{fence, AtomicU32, AtomicU64, Ordering};

/// Loom's yield (its scheduler then runs another thread; a spin loop that
/// does not yield makes loom explore it forever).
#[cfg(loom)]
pub(crate) use loom::thread::yield_now;

/// Loom treats `SeqCst` loads and stores as `AcqRel` (loom README,
/// "Unsupported features"), which would report false lost wake-ups in the
/// store-buffer pattern of the sleep/wake protocol; `fence(SeqCst)` it does
/// model. This fence, placed between each SeqCst store and the SeqCst load
/// that must not pass it, restores under loom the guarantee that SeqCst
/// accesses give in the real build, where it does not exist.
#[cfg(loom)]
#[inline]
pub(crate) fn loom_sc_fence() {
    loom::sync::atomic::fence(Ordering::SeqCst);
}

/// Store `v` in a sleeper's `waiting` flag, a word the waker clears with
/// `swap`, with `order` (the caller's comment names the partner).
///
/// In the real build this is `word.store(v, order)`. Under loom it is a
/// chain of RMWs instead: loom does not keep a plain store from slipping
/// between the read and the write of a concurrent RMW (loom issues #254,
/// #389: RMW atomicity), so it would report lost wake-ups that C11
/// forbids. A chain of RMWs it orders correctly, so under loom the store is
/// a `swap` with the store's ordering minus its acquire half; a SeqCst
/// store is followed by `loom_sc_fence` (see there).
#[inline]
pub(crate) fn store_flag(word: &AtomicU32, v: u32, order: Ordering) {
    #[cfg(not(loom))]
    word.store(v, order);
    #[cfg(loom)]
    match order {
        Ordering::SeqCst => {
            word.swap(v, Ordering::Release);
            loom_sc_fence();
        }
        o => {
            word.swap(v, o);
        }
    }
}
