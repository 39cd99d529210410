//! Loom only: a model of one `WaitSet` wait over several consumers,
//! built from the same `Watch` steps (its own file: it needs both the
//! consumers and their watches).

use std::time::Duration;

use super::watch::{Pinned, Readiness, Watch};

/// Loom only: one wait of a [`crate::WaitSet`] over `consumers` (Futex
/// rings), with the order `waitset::round` uses — register on every ring,
/// then re-check every ring, then, if none is ready, sleep on all their
/// `seq` words at once (the `futex_waitv` stand-in) — and withdraw the
/// registrations. Returns the indices of the rings found ready. Lets
/// `tests/loom.rs` model-check the multi-ring registration against real
/// producers: a lost wake-up is a loom deadlock.
#[cfg(loom)]
#[doc(hidden)]
pub fn loom_wait_any(consumers: &mut [&mut crate::Consumer]) -> Vec<usize> {
    let ws: Vec<Watch> = consumers.iter_mut().map(|c| c.watch()).collect();
    // The consumers are borrowed for the call: every pin succeeds.
    let pins: Vec<Pinned<'_>> = ws.iter().filter_map(Watch::pin).collect();
    let seqs: Vec<u32> = pins.iter().map(Pinned::register).collect();
    let ready = |ps: &[Pinned<'_>]| -> Vec<usize> {
        (0..ps.len())
            .filter(|&i| ps[i].readiness(Duration::MAX, false) != Readiness::Idle)
            .collect()
    };
    let mut out = ready(&pins);
    if out.is_empty() {
        let words: Vec<(&crate::sync::AtomicU32, u32)> = pins
            .iter()
            .zip(&seqs)
            .map(|(p, &s)| (&p.wait_word().seq, s))
            .collect();
        crate::wait::futex_wait_any(&words);
        out = ready(&pins);
    }
    for p in &pins {
        p.unregister();
    }
    out
}
