//! Surviving a named segment truncated under us: a process-wide SIGBUS
//! handler and an async-signal-safe registry of the mappings it may repair.
//!
//! A named segment can be shrunk by anyone who may open it for writing (our
//! uid, mode 0600). Our next access to a page past the new end of the file
//! raises SIGBUS, which by default kills the process. libwayland-server has
//! the same problem with client shm pools and solves it in
//! `wl_shm_buffer_begin_access`: a SIGBUS handler that, for an address in a
//! pool, maps anonymous zero pages over the pool (`MAP_FIXED`) and lets the
//! faulting access run again, then reports the client. We do the same for
//! every mapping of a named segment, without a per-access bracket:
//!
//! - [`register`] records a mapping `{start, len}` in a fixed table of
//!   atomic slots before anything reads it; dropping the [`Registration`]
//!   clears the slot before the mapping is unmapped. The first registration
//!   installs the handler (once per process, no lock: see [`install`]).
//! - The handler ([`on_sigbus`]) looks up `si_addr` in the table. If a
//!   registered mapping contains it, it marks the slot truncated and maps
//!   private anonymous zero pages over the whole mapping; the access then
//!   completes on a zero page. Otherwise it chains to the handler that was
//!   installed before ours (or, if that was the default, restores the
//!   default action and re-raises, so the process dies of SIGBUS as it
//!   would have without us).
//! - The ring notices on its slow paths (`Endpoint::peer_gone`, the error
//!   path of `Endpoint::note`, attach) and reports `Error::Truncated`.
//!
//! The handler only loads and stores atomics in static memory and calls
//! `mmap`, `sigaction` and `raise`. `mmap` is not on POSIX's list of
//! async-signal-safe functions, but on Linux it is a plain system call with
//! no user-space lock (glibc's wrapper only sets `errno`), which
//! libwayland-server relies on too. `errno` is saved and restored.
//!
//! Interplay with other SIGBUS handlers (DESIGN.md §4 and §6):
//! - a handler installed before our first named segment is chained to for
//!   every address that is not ours (with its own `siginfo`/context);
//! - a handler installed after ours replaces it: our mappings are then
//!   unprotected (a truncation kills the process, as before this module)
//!   unless that handler calls the previous action for addresses it does
//!   not own, as ours does;
//! - Rust's own runtime handler (stack-overflow detection, installed for
//!   SIGSEGV and SIGBUS at start-up) is such an earlier handler and keeps
//!   working: faults outside our mappings reach it unchanged.

use std::cell::UnsafeCell;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use nix::errno::Errno;
use nix::sys::signal::{self, SaFlags, SigAction, SigHandler, SigSet, Signal};

/// Slots in the registry: mappings of named segments alive at once in one
/// process that can be repaired. A mapping that finds the table full is not
/// protected (a truncation of it raises SIGBUS as before); 4096 named rings
/// mapped at once is far beyond what the tests and tools here use.
const SLOTS: usize = 4096;

/// One registered mapping. `gen` is a sequence counter: odd while its owner
/// writes `start`/`len`, even when they are stable (the handler skips a slot
/// whose counter moved while it read it). A slot is free when `start` is 0.
struct Slot {
    gen: AtomicUsize,
    start: AtomicUsize,
    len: AtomicUsize,
    /// Set by the handler (or by a size check) once the mapping was replaced
    /// by zero pages: the segment was truncated.
    truncated: AtomicBool,
}

impl Slot {
    const fn free() -> Slot {
        Slot {
            gen: AtomicUsize::new(0),
            start: AtomicUsize::new(0),
            len: AtomicUsize::new(0),
            truncated: AtomicBool::new(false),
        }
    }
}

static TABLE: [Slot; SLOTS] = [const { Slot::free() }; SLOTS];
/// One past the highest slot ever used: the handler scans no further.
static USED: AtomicUsize = AtomicUsize::new(0);

/// The action that was installed before ours, for chaining. Written once by
/// the installing thread before it installs our handler (`PREV_READY` then
/// says so); the handler only reads it.
struct PrevAction(UnsafeCell<libc::sigaction>);
// SAFETY: written only by `install` while `PREV_READY` is false and no
// handler of ours can run yet (see there), read only afterwards.
unsafe impl Sync for PrevAction {}
static PREV: PrevAction = PrevAction(UnsafeCell::new(
    // SAFETY: a zeroed `sigaction` is SIG_DFL with no flags and an empty mask.
    unsafe { std::mem::zeroed() },
));
static PREV_READY: AtomicBool = AtomicBool::new(false);

/// `pid << 2 | state` of the installation: 0 none, 1 being installed by
/// that process, 2 installed. Not a `Once`: a child forked while another
/// thread ran a `Once`'s closure would block on it forever (see
/// `wait::light_barrier_available`). A child forked mid-installation sees
/// state 1 under its parent's pid and installs again itself.
static INSTALL: AtomicU64 = AtomicU64::new(0);

/// A mapping registered with the SIGBUS handler; dropping it unregisters
/// the mapping (do so before unmapping it).
pub(crate) struct Registration {
    /// `None` when the table was full or the handler could not be installed.
    slot: Option<usize>,
}

/// Register the mapping `[start, start + len)` so that a SIGBUS inside it
/// replaces it by zero pages instead of killing the process. Call before
/// anything reads the mapping; keep the `Registration` while it is mapped.
pub(crate) fn register(start: *mut u8, len: usize) -> Registration {
    if start.is_null() || len == 0 || !install() {
        return Registration { slot: None };
    }
    for (i, slot) in TABLE.iter().enumerate() {
        // Relaxed: only a hint; the CAS below decides.
        let g = slot.gen.load(Ordering::Relaxed);
        if g % 2 == 1 || slot.start.load(Ordering::Relaxed) != 0 {
            continue;
        }
        // Acquire: after the previous owner's release of the slot. The odd
        // counter makes the handler skip the slot while we fill it.
        if slot
            .gen
            .compare_exchange(g, g + 1, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            continue;
        }
        if slot.start.load(Ordering::Relaxed) != 0 {
            // Taken and released between our two loads: not free after all.
            slot.gen.store(g + 2, Ordering::Release);
            continue;
        }
        slot.len.store(len, Ordering::Relaxed);
        slot.truncated.store(false, Ordering::Relaxed);
        slot.start.store(start as usize, Ordering::Relaxed);
        // Release: pairs with the handler's Acquire load of `gen`, so a
        // reader that sees the even counter sees `start` and `len`.
        slot.gen.store(g + 2, Ordering::Release);
        USED.fetch_max(i + 1, Ordering::Release);
        return Registration { slot: Some(i) };
    }
    Registration { slot: None }
}

impl Registration {
    /// Whether the mapping was replaced by zero pages (its object was
    /// truncated under us), or was marked so by [`Self::mark_truncated`].
    #[inline]
    pub(crate) fn truncated(&self) -> bool {
        // Relaxed: a flag; the zero pages the handler mapped are what the
        // ring reads anyway, and the handler stores the flag before mapping
        // them (so a thread that reads a zero page in a repaired mapping
        // finds the flag set).
        self.slot
            .is_some_and(|i| TABLE[i].truncated.load(Ordering::Relaxed))
    }

    /// Record a truncation found another way (the object's size shrank).
    pub(crate) fn mark_truncated(&self) {
        if let Some(i) = self.slot {
            TABLE[i].truncated.store(true, Ordering::Relaxed);
        }
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        let Some(i) = self.slot else { return };
        let slot = &TABLE[i];
        // We own the slot: only we write its counter until `start` is 0.
        let g = slot.gen.load(Ordering::Relaxed);
        slot.gen.store(g + 1, Ordering::Relaxed);
        // Release fence: the odd counter is visible before `start` changes
        // (seqlock writer).
        std::sync::atomic::fence(Ordering::Release);
        slot.start.store(0, Ordering::Relaxed);
        slot.len.store(0, Ordering::Relaxed);
        // Release: pairs with the Acquire CAS of the next owner and the
        // handler's Acquire load.
        slot.gen.store(g + 2, Ordering::Release);
    }
}

/// Install the handler once per process; whether it is in place.
fn install() -> bool {
    let pid = u64::from(std::process::id());
    loop {
        // Acquire: pairs with the Release store of state 2 below, so a
        // thread that sees "installed" sees `PREV` written.
        let v = INSTALL.load(Ordering::Acquire);
        match v & 3 {
            2 => return true, // also in a forked child: dispositions are inherited
            1 if v >> 2 == pid => {
                // Another thread of this process is installing: it takes
                // two system calls.
                std::thread::yield_now();
                continue;
            }
            _ => {}
        }
        // Nobody, or a parent that forked us mid-installation: our turn.
        if INSTALL
            .compare_exchange(v, pid << 2 | 1, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            continue;
        }
        let ok = install_now();
        let state = if ok { 2 } else { 0 };
        // Release: publishes `PREV` (written in `install_now`) with the state.
        INSTALL.store(pid << 2 | state, Ordering::Release);
        return ok;
    }
}

fn install_now() -> bool {
    // SA_ONSTACK: run on the thread's alternate stack if it has one (Rust
    // gives every thread one for its stack-overflow handler, which we may
    // chain to); SA_RESTART: a SIGBUS sent with kill() that we chain to a
    // handler must not make other threads' system calls fail with EINTR.
    // (`SigHandler::SigAction` adds SA_SIGINFO.)
    let new = SigAction::new(
        SigHandler::SigAction(on_sigbus),
        SaFlags::SA_ONSTACK | SaFlags::SA_RESTART,
        SigSet::empty(),
    );
    let handler = libc::sigaction::from(new).sa_sigaction;
    // Query the installed action first (nix's `sigaction` always installs
    // one): `PREV` must be written before our handler can run.
    // SAFETY: a zeroed sigaction is a valid out-parameter.
    let mut old: libc::sigaction = unsafe { std::mem::zeroed() };
    // SAFETY: query only (no new action); `old` is a valid out-pointer.
    if unsafe { libc::sigaction(libc::SIGBUS, std::ptr::null(), &mut old) } != 0 {
        return false;
    }
    if old.sa_sigaction == handler {
        // Already ours: a forked child of a process that installed it
        // (its `PREV` was inherited with the disposition).
        return true;
    }
    if !PREV_READY.load(Ordering::Relaxed) {
        // SAFETY: only the installing thread writes `PREV`, and only before
        // our handler is installed for the first time (`PREV_READY` false),
        // so no handler of ours reads it concurrently.
        unsafe { *PREV.0.get() = old };
        // Release: pairs with the handler's Acquire load.
        PREV_READY.store(true, Ordering::Release);
    }
    // SAFETY: installs a handler that is async-signal-safe (module docs).
    unsafe { signal::sigaction(Signal::SIGBUS, &new) }.is_ok()
}

/// The SIGBUS handler (module docs). Async-signal-safe: atomics in static
/// memory, `mmap`, `sigaction`, `raise`; no allocation, lock or TLS.
extern "C" fn on_sigbus(sig: libc::c_int, info: *mut libc::siginfo_t, ctx: *mut libc::c_void) {
    // errno is thread-local: saved here, restored before we return.
    let errno = Errno::last_raw();
    // SAFETY: the kernel passes a valid siginfo with SA_SIGINFO (checked
    // for null anyway). si_code > 0: a fault the kernel raised (BUS_ADRERR
    // for a page past the end of the file), not a kill(2) or sigqueue(3),
    // so si_addr is the faulting address.
    let fault_addr =
        unsafe { (!info.is_null() && (*info).si_code > 0).then(|| (*info).si_addr() as usize) };
    if let Some(addr) = fault_addr {
        if repair(addr) {
            Errno::set_raw(errno);
            return; // the faulting access runs again, on a zero page
        }
    }
    // SAFETY: the arguments are the ones the kernel gave us.
    unsafe { chain(sig, info, ctx, fault_addr.is_some()) };
    Errno::set_raw(errno);
}

/// If `addr` lies in a registered mapping, mark it truncated and map zero
/// pages over all of it. Whether it did.
fn repair(addr: usize) -> bool {
    // Acquire: pairs with `register`'s Release `fetch_max`.
    let used = USED.load(Ordering::Acquire).min(SLOTS);
    for slot in &TABLE[..used] {
        // Seqlock read: Acquire load of the counter (pairs with the
        // owner's Release store), the fields, an Acquire fence, the counter
        // again; a slot being written, or rewritten meanwhile, is skipped.
        // The mapping that faulted is registered and stable: it was
        // registered before any access and is unregistered only after the
        // last one (its `Segment` is alive while anyone touches it).
        let g = slot.gen.load(Ordering::Acquire);
        if g % 2 == 1 {
            continue;
        }
        let start = slot.start.load(Ordering::Relaxed);
        let len = slot.len.load(Ordering::Relaxed);
        std::sync::atomic::fence(Ordering::Acquire);
        if slot.gen.load(Ordering::Relaxed) != g || start == 0 {
            continue;
        }
        if addr.wrapping_sub(start) >= len {
            continue;
        }
        // Flag first: a thread that reads a zero page of this mapping
        // afterwards finds the flag set.
        slot.truncated.store(true, Ordering::Relaxed);
        // SAFETY: [start, start + len) is a live mapping of a named segment
        // that this process owns (registered above, unregistered before
        // munmap); replacing it with private anonymous pages of the same
        // size keeps every pointer into it valid. The kernel rounds `len`
        // up to whole pages, as it did for the original mapping.
        let p = unsafe {
            libc::mmap(
                start as *mut libc::c_void,
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED,
                -1,
                0,
            )
        };
        return p != libc::MAP_FAILED;
    }
    false
}

/// Hand a SIGBUS that is not ours to the action installed before ours.
///
/// # Safety
/// Call only from the signal handler, with the kernel's arguments.
unsafe fn chain(sig: libc::c_int, info: *mut libc::siginfo_t, ctx: *mut libc::c_void, fault: bool) {
    // Acquire: pairs with the Release store in `install_now`.
    let prev = if PREV_READY.load(Ordering::Acquire) {
        // SAFETY: written before PREV_READY was set, never again.
        unsafe { *PREV.0.get() }
    } else {
        // SAFETY: zeroed = SIG_DFL.
        unsafe { std::mem::zeroed() }
    };
    let h = prev.sa_sigaction;
    if h == libc::SIG_DFL || (h == libc::SIG_IGN && fault) {
        // The default action (a fault cannot be ignored either: the kernel
        // would force the default). Restore it and re-raise: the signal is
        // blocked while we run, so it is delivered as we return and the
        // process dies of SIGBUS, as it would have without us.
        // SAFETY: zeroed = SIG_DFL with an empty mask; sigaction and raise
        // are async-signal-safe.
        unsafe {
            let dfl: libc::sigaction = std::mem::zeroed();
            libc::sigaction(sig, &dfl, std::ptr::null_mut());
            libc::raise(sig);
        }
        return;
    }
    if h == libc::SIG_IGN {
        return; // a SIGBUS sent with kill(2) to a program that ignores it
    }
    if prev.sa_flags & libc::SA_RESETHAND != 0 {
        // SAFETY: as above; the previous action asked to be one-shot.
        unsafe {
            let dfl: libc::sigaction = std::mem::zeroed();
            libc::sigaction(sig, &dfl, std::ptr::null_mut());
        }
    }
    if prev.sa_flags & libc::SA_SIGINFO != 0 {
        // SAFETY: the previous action is a three-argument handler (its
        // SA_SIGINFO flag says so); we pass it the kernel's arguments.
        let f: extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void) =
            unsafe { std::mem::transmute(h) };
        f(sig, info, ctx);
    } else {
        // SAFETY: a one-argument handler (no SA_SIGINFO).
        let f: extern "C" fn(libc::c_int) = unsafe { std::mem::transmute(h) };
        f(sig);
    }
}
