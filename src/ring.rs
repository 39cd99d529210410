//! The ring protocol: reserving, writing, publishing and reading records,
//! and the sleep/wake protocol. One generic core serves both variants: the
//! lock-free ring (`LockFree`) and the mutex-protected ring (`Locked`).
//!
//! # Index protocol (lock-free)
//! `tail` (producer-owned) and `head` (consumer-owned) are monotonic byte
//! positions; `tail - head` bytes of records are committed and unread.
//! - The producer writes a record's payload and header, then publishes the
//!   new `tail` with a Release store (SeqCst when a sleeping strategy is in
//!   use), which pairs with the consumer's Acquire (SeqCst) load of `tail`:
//!   the record bytes are visible before the index that covers them.
//! - The consumer reads records, then publishes the new `head` with a
//!   Release (SeqCst) store, which pairs with the producer's Acquire (SeqCst)
//!   load of `head`: the consumer's reads of a slot happen before the
//!   producer overwrites it.
//! - Each side caches the other's index and reloads it only when its cached
//!   value says "full" or "empty".
//!
//! Every value read from the segment is read once into a local and checked
//! before use; a violation is `Error::Corrupted` and sticks to the handle.

use std::cell::Cell;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_utils::Backoff;

use crate::error::{Error, Result};
use crate::frame::{self, HDR, KIND_MSG, KIND_PAD};
use crate::layout::{self, Header, WaitWord, STATE_ATTACHED, STATE_CLOSED, STATE_NEVER};
use crate::segment::{self, Role, RoleLock, Segment};
use crate::sync::{AtomicU64, Ordering};
use crate::wait::{self, WaitStrategy};

mod private {
    pub trait Sealed {}
}

/// Which ring design a handle speaks: [`LockFree`] or [`Locked`]. Sealed.
pub trait Variant: private::Sealed + Send + Sync + 'static {
    /// Code recorded in the segment header.
    #[doc(hidden)]
    const CODE: u32;
    /// Human-readable name.
    const NAME: &'static str;
    /// Whether a process-shared mutex guards the indices.
    #[doc(hidden)]
    const LOCKED: bool = Self::CODE == layout::VARIANT_LOCKED;
}

/// The lock-free single-producer/single-consumer ring.
#[derive(Debug, Clone, Copy, Default)]
pub struct LockFree;
/// The textbook "shared memory + lock" ring: a process-shared robust mutex
/// guards the same indices and records.
#[derive(Debug, Clone, Copy, Default)]
pub struct Locked;

impl private::Sealed for LockFree {}
impl private::Sealed for Locked {}
impl Variant for LockFree {
    const CODE: u32 = layout::VARIANT_LOCKFREE;
    const NAME: &'static str = "lock-free";
}
impl Variant for Locked {
    const CODE: u32 = layout::VARIANT_LOCKED;
    const NAME: &'static str = "locked";
}

/// State of an endpoint as recorded in the segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndpointState {
    /// No process has attached to this role yet.
    Never,
    /// A process is attached (alive or dead: see [`crate::SegmentInfo`]).
    Attached,
    /// The endpoint closed its side in order.
    Closed,
    /// The word holds a value no endpoint writes.
    Invalid(u32),
}

impl EndpointState {
    pub(crate) fn from_word(w: u32) -> Self {
        match w {
            STATE_NEVER => EndpointState::Never,
            STATE_ATTACHED => EndpointState::Attached,
            STATE_CLOSED => EndpointState::Closed,
            x => EndpointState::Invalid(x),
        }
    }
}

/// A snapshot of a ring's counters. Counters are written by the peers and
/// are informational only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stats {
    /// Size of the data area in bytes.
    pub capacity: u64,
    /// Bytes of committed, unread records (framing included).
    pub used_bytes: u64,
    /// Messages committed by producers.
    pub messages_sent: u64,
    /// Payload bytes committed by producers.
    pub bytes_sent: u64,
    /// Messages consumed.
    pub messages_received: u64,
    /// Payload bytes consumed.
    pub bytes_received: u64,
    /// Times a producer found the ring full and had to wait.
    pub full_waits: u64,
    /// Times a consumer found the ring empty and had to wait.
    pub empty_waits: u64,
    /// Wake-up syscalls made by the producer (to wake the consumer).
    pub producer_wake_syscalls: u64,
    /// Wake-up syscalls made by the consumer (to wake the producer).
    pub consumer_wake_syscalls: u64,
    /// Times the locked variant recovered its mutex from a dead holder.
    pub lock_repairs: u64,
    /// Producer endpoint state.
    pub producer: EndpointState,
    /// Consumer endpoint state.
    pub consumer: EndpointState,
}

pub(crate) fn stats_of(h: &Header, capacity: u64) -> Stats {
    let r = |a: &AtomicU64| a.load(Ordering::Relaxed);
    let tail = r(&h.prod.tail);
    let head = r(&h.cons.head);
    Stats {
        capacity,
        used_bytes: tail.wrapping_sub(head).min(capacity),
        messages_sent: r(&h.prod.messages),
        bytes_sent: r(&h.prod.bytes),
        messages_received: r(&h.cons.messages),
        bytes_received: r(&h.cons.bytes),
        full_waits: r(&h.prod.full_waits),
        empty_waits: r(&h.cons.empty_waits),
        producer_wake_syscalls: r(&h.prod.wake_syscalls),
        consumer_wake_syscalls: r(&h.cons.wake_syscalls),
        lock_repairs: r(&h.endpoints.lock_repairs),
        producer: EndpointState::from_word(h.endpoints.producer.load(Ordering::Relaxed)),
        consumer: EndpointState::from_word(h.endpoints.consumer.load(Ordering::Relaxed)),
    }
}

/// Check that `head..tail` is a possible span of committed records.
#[inline]
pub(crate) fn check_span(head: u64, tail: u64, capacity: u64) -> Result<()> {
    if head > tail {
        return Err(Error::corrupted("head is past tail", head));
    }
    if tail - head > capacity {
        return Err(Error::corrupted(
            "tail is more than a capacity past head",
            tail,
        ));
    }
    if (head | tail) & 7 != 0 {
        return Err(Error::corrupted("index is not 8-byte aligned", head | tail));
    }
    if tail > u64::MAX / 2 {
        return Err(Error::corrupted("index near overflow", tail));
    }
    Ok(())
}

/// Load a record header word from the data area exactly once.
///
/// # Safety
/// `data + off` must be 8-aligned and 8 bytes inside the data area.
#[inline]
unsafe fn load_word(data: *mut u8, off: u64) -> u64 {
    // SAFETY: in bounds and aligned per the caller; read through an atomic
    // because a hostile peer may write the same bytes concurrently.
    unsafe {
        (*(data.add(off as usize) as *const std::sync::atomic::AtomicU64)).load(Ordering::Relaxed)
    }
}

/// Store a record header word into the data area.
///
/// # Safety
/// As for [`load_word`].
#[inline]
unsafe fn store_word(data: *mut u8, off: u64, w: u64) {
    // SAFETY: in bounds and aligned per the caller.
    unsafe {
        (*(data.add(off as usize) as *const std::sync::atomic::AtomicU64))
            .store(w, Ordering::Relaxed)
    }
}

/// What both endpoint kinds share: the segment, the geometry read at attach
/// time, the role lock, and the sticky corruption state.
struct Endpoint {
    seg: Arc<Segment>,
    data: *mut u8,
    cap: u64,
    mask: u64,
    max: usize,
    wait: WaitStrategy,
    role: Role,
    lock: Option<RoleLock>,
    broken: Option<(&'static str, u64)>,
    /// Publish with the light barrier (this process is registered for
    /// membarrier and the strategy sleeps); see DESIGN.md.
    light: bool,
    /// When we last asked the kernel about the peer's lock, and whether it was dead.
    last_peer_check: Option<(Instant, bool)>,
    pid: u32,
}

/// How hard to look for a dead peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Check {
    Word,
    Rated,
    Force,
}

impl Check {
    fn slow(force: bool) -> Check {
        if force {
            Check::Force
        } else {
            Check::Rated
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PeerGone {
    Closed,
    Died,
}

impl Endpoint {
    fn attach(seg: Arc<Segment>, role: Role) -> Result<Endpoint> {
        let lock = segment::attach(&seg, role)?;
        let g = seg.geometry;
        let light = g.wait.sleeps() && wait::light_barrier_available();
        let own_light = match role {
            Role::Producer => &seg.header().endpoints.producer_light,
            Role::Consumer => &seg.header().endpoints.consumer_light,
        };
        // SeqCst swap (a full barrier), before our first publication: a
        // peer that read our old flag (0) did so after registering as a
        // sleeper and fencing, so our loads of `waiting` after this barrier
        // see its registration even though we publish light.
        own_light.swap(light as u32, Ordering::SeqCst);
        let ep = Endpoint {
            light,
            data: seg.data(),
            cap: g.capacity,
            mask: g.capacity - 1,
            max: layout::max_message(g.capacity),
            wait: g.wait,
            role,
            lock,
            broken: None,
            last_peer_check: None,
            pid: std::process::id(),
            seg,
        };
        if ep.wait.sleeps() {
            // A peer may be asleep waiting for us to attach: wake it.
            // `segment::attach` stored ATTACHED with SeqCst, which with the
            // SeqCst swap in `wake` and the sleeper's SeqCst store of
            // `waiting` / load of our state forms the no-lost-wake-up pattern.
            let h = ep.h();
            let (w, counter) = match role {
                Role::Producer => (&h.wait_consumer, &h.prod.wake_syscalls),
                Role::Consumer => (&h.wait_producer, &h.cons.wake_syscalls),
            };
            ep.wake(w, counter);
        }
        Ok(ep)
    }

    #[inline]
    fn h(&self) -> &Header {
        self.seg.header()
    }

    #[inline]
    fn check_broken(&self) -> Result<()> {
        match self.broken {
            None => Ok(()),
            Some((what, value)) => Err(Error::Corrupted { what, value }),
        }
    }

    /// Remember a corruption so the handle stays failed.
    #[inline]
    fn note<T>(&mut self, r: Result<T>) -> Result<T> {
        if let Err(Error::Corrupted { what, value }) = &r {
            self.broken = Some((what, *value));
        }
        r
    }

    /// The peer's "publishes with the light barrier" flag.
    fn peer_light_word(&self) -> &crate::sync::AtomicU32 {
        match self.role {
            Role::Producer => &self.h().endpoints.consumer_light,
            Role::Consumer => &self.h().endpoints.producer_light,
        }
    }

    fn peer_word(&self) -> &crate::sync::AtomicU32 {
        match self.role {
            Role::Producer => &self.h().endpoints.consumer,
            Role::Consumer => &self.h().endpoints.producer,
        }
    }

    /// Is the peer gone? `Check::Word` only reads its state word (no
    /// syscall, for the hot path); `Check::Rated` also asks the kernel
    /// whether its role lock is held, at most once per `wait::SLICE`;
    /// `Check::Force` asks now.
    fn peer_gone(&mut self, how: Check) -> Result<Option<PeerGone>> {
        // Acquire: pairs with the peer's Release/SeqCst store of its state,
        // so a consumer that sees CLOSED also sees the last tail.
        let st = self.peer_word().load(Ordering::Acquire);
        match st {
            STATE_NEVER => Ok(None),
            STATE_CLOSED => Ok(Some(PeerGone::Closed)),
            STATE_ATTACHED => {
                let Some(lock) = &self.lock else {
                    return Ok(None); // heap ring: both ends are in this process
                };
                if how == Check::Word {
                    return Ok(None);
                }
                let now = Instant::now();
                if how == Check::Rated {
                    // Only an "alive" verdict is reused: a "dead" one is
                    // re-checked every time (an error path), so a
                    // replacement peer is seen as soon as it attaches.
                    if let Some((t, false)) = self.last_peer_check {
                        if now.duration_since(t) < wait::SLICE {
                            return Ok(None);
                        }
                    }
                }
                let held = lock.is_held(self.role.peer())?;
                // A free lock means the peer died, or it closed after our
                // load of its state (it stores CLOSED before releasing), or
                // a replacement is attaching (it locks before storing ATTACHED,
                // so then the lock is held). Not sticky: a new process may
                // take over the role.
                let verdict = if held {
                    None
                } else if self.peer_word().load(Ordering::Acquire) == STATE_CLOSED {
                    Some(PeerGone::Closed)
                } else {
                    Some(PeerGone::Died)
                };
                self.last_peer_check = Some((now, verdict == Some(PeerGone::Died)));
                Ok(verdict)
            }
            x => self.note(Err(Error::corrupted("peer state word", x as u64))),
        }
    }

    /// Publish our index `word = value` and wake the peer if it sleeps on
    /// `peer_wait`: the publication half of the wake-up protocol (DESIGN.md §3).
    #[inline]
    fn publish_index(
        &self,
        word: &AtomicU64,
        value: u64,
        peer_wait: &WaitWord,
        counter: &AtomicU64,
    ) {
        if self.light {
            // Light side of the asymmetric barrier. Release: pairs with the
            // peer's Acquire load of this index. The store-load order
            // against `waiting` is enforced by the sleeping peer's
            // membarrier(2), which runs a full barrier on our CPU; the
            // compiler fence keeps the compiler from reordering the two.
            word.store(value, Ordering::Release);
            std::sync::atomic::compiler_fence(Ordering::SeqCst);
            if peer_wait.waiting.load(Ordering::Relaxed) != 0 {
                self.wake(peer_wait, counter);
            }
        } else if self.wait.sleeps() {
            // SeqCst store: pairs with the sleeper's SeqCst store of
            // `waiting` / SeqCst load of this index in `Endpoint::sleep`
            // (store-buffer pattern: no lost wake-up), and as a Release store
            // with the peer's Acquire load of this index.
            word.store(value, Ordering::SeqCst);
            #[cfg(loom)]
            crate::sync::loom_sc_fence();
            // SeqCst: see above.
            if peer_wait.waiting.load(Ordering::SeqCst) != 0 {
                self.wake(peer_wait, counter);
            }
        } else {
            // Release: pairs with the peer's Acquire load of this index.
            word.store(value, Ordering::Release);
        }
    }

    /// Wake the sleeper registered on `w`, if any (one syscall per registration).
    #[cold]
    fn wake(&self, w: &WaitWord, counter: &AtomicU64) {
        // SeqCst swap: only one waker per registration; pairs with the
        // sleeper's SeqCst store of `waiting`.
        if w.waiting.swap(0, Ordering::SeqCst) == 0 {
            return;
        }
        // Informational counter a peer may also write: wrap, never panic.
        counter.store(
            counter.load(Ordering::Relaxed).wrapping_add(1),
            Ordering::Relaxed,
        );
        match self.wait {
            WaitStrategy::Futex => {
                // Release: pairs with the sleeper's Acquire load of `seq`.
                w.seq.fetch_add(1, Ordering::Release);
                wait::futex_wake(&w.seq, i32::MAX);
            }
            #[cfg(not(any(loom, miri)))]
            WaitStrategy::Semaphore => wait::sem_post(w),
            _ => {}
        }
    }

    /// Sleep on `w` until woken, `until`, or `changed()` says to retry.
    fn sleep(&self, w: &WaitWord, until: Instant, changed: impl Fn() -> bool) {
        // Acquire: pairs with the waker's Release fetch_add of `seq`.
        let seq = w.seq.load(Ordering::Acquire);
        // SeqCst store, then SeqCst loads inside `changed()`: with the peer's
        // SeqCst index store and SeqCst load of `waiting`, either we see its
        // progress or it sees our registration and wakes us.
        #[cfg(not(loom))]
        w.waiting.store(1, Ordering::SeqCst);
        #[cfg(loom)]
        crate::sync::loom_store_flag(&w.waiting, 1, Ordering::SeqCst);
        // A peer that publishes with the light barrier (plain Release store,
        // no fence) needs the heavy one from us: membarrier(2) runs a full
        // barrier on every CPU running a registered process, so either its
        // index store is visible to `changed()` below, or its later load of
        // `waiting` sees our registration. SeqCst load: ordered after our
        // registration (see `Endpoint::attach` for the flag's own race).
        if self.peer_light_word().load(Ordering::SeqCst) != 0 && !wait::heavy_barrier() {
            // The kernel refused the barrier: poll instead of sleeping.
            w.waiting.store(0, Ordering::Relaxed);
            std::thread::sleep(
                until
                    .saturating_duration_since(Instant::now())
                    .min(Duration::from_millis(1)),
            );
            return;
        }
        if changed() {
            #[cfg(not(loom))]
            w.waiting.store(0, Ordering::Relaxed);
            #[cfg(loom)]
            crate::sync::loom_store_flag(&w.waiting, 0, Ordering::Relaxed);
            return;
        }
        match self.wait {
            WaitStrategy::Futex => wait::futex_wait(&w.seq, seq, until),
            #[cfg(not(any(loom, miri)))]
            WaitStrategy::Semaphore => wait::sem_wait(w, until),
            _ => {
                let _ = (seq, until);
                #[cfg(not(loom))]
                std::thread::yield_now();
                #[cfg(loom)]
                crate::sync::yield_now();
            }
        }
        #[cfg(not(loom))]
        w.waiting.store(0, Ordering::Relaxed);
        #[cfg(loom)]
        crate::sync::loom_store_flag(&w.waiting, 0, Ordering::Relaxed);
    }

    /// The peer's state, asking the kernel about its role lock (one syscall).
    fn peer_status(&self) -> Result<PeerStatus> {
        // Acquire: as in `peer_gone`.
        match self.peer_word().load(Ordering::Acquire) {
            STATE_NEVER => Ok(PeerStatus::NotAttached),
            STATE_CLOSED => Ok(PeerStatus::Closed),
            STATE_ATTACHED => {
                let Some(lock) = &self.lock else {
                    return Ok(PeerStatus::Alive); // heap ring: same process
                };
                if lock.is_held(self.role.peer())? {
                    Ok(PeerStatus::Alive)
                } else if self.peer_word().load(Ordering::Acquire) == STATE_CLOSED {
                    Ok(PeerStatus::Closed)
                } else {
                    Ok(PeerStatus::Died)
                }
            }
            x => Err(Error::corrupted("peer state word", x as u64)),
        }
    }

    /// Close our side now, reporting what drop would swallow.
    fn close_explicit(&mut self) -> Result<()> {
        if self.pid != std::process::id() {
            return Err(Error::io(
                "closing the endpoint",
                std::io::Error::other(
                    "this handle was inherited across fork(); only the process that attached can close the role",
                ),
            ));
        }
        self.close();
        self.pid = 0; // closed: drop does nothing more
        drop(self.lock.take()); // releases the role lock
        if let Some(seg) = Arc::get_mut(&mut self.seg) {
            seg.unlink_now()?;
        }
        Ok(())
    }

    /// Mark our side closed and wake the peer. Skipped in a forked child that
    /// inherited the handle: only the process that attached closes the role.
    fn close(&mut self) {
        if self.pid != std::process::id() {
            return;
        }
        let h = self.seg.header();
        let (word, w, counter) = match self.role {
            Role::Producer => (
                &h.endpoints.producer,
                &h.wait_consumer,
                &h.prod.wake_syscalls,
            ),
            Role::Consumer => (
                &h.endpoints.consumer,
                &h.wait_producer,
                &h.cons.wake_syscalls,
            ),
        };
        // SeqCst: after our last index store; pairs with the peer's Acquire
        // load of our state word, and orders before the `waiting` check.
        word.store(STATE_CLOSED, Ordering::SeqCst);
        #[cfg(loom)]
        crate::sync::loom_sc_fence();
        if self.wait.sleeps() {
            self.wake(w, counter);
        }
        // Dropping `self.lock` afterwards releases the role lock: a peer that
        // finds the lock free and the state ATTACHED knows we died.
    }
}

/// Run `attempt` until it yields, the deadline passes, or it fails, waiting
/// between attempts per the wait strategy. `attempt(true)` must check the
/// peer's liveness; `sleep` parks the caller once.
fn block<T, S>(
    this: &mut S,
    deadline: Option<Instant>,
    wait: WaitStrategy,
    mut attempt: impl FnMut(&mut S, bool) -> Result<Option<T>>,
    mut sleep: impl FnMut(&mut S, Instant),
    ready: impl Fn(&S) -> bool,
    mut on_first_miss: impl FnMut(&mut S),
) -> Result<T> {
    if let Some(v) = attempt(this, false)? {
        return Ok(v);
    }
    on_first_miss(this);
    let backoff = Backoff::new();
    let mut last_check = Instant::now();
    loop {
        let now = Instant::now();
        let check = now.duration_since(last_check) >= wait::SLICE;
        if check {
            last_check = now;
        }
        if let Some(v) = attempt(this, check)? {
            return Ok(v);
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            return Err(Error::Timeout);
        }
        // Under loom: no busy spinning (loom would explore it forever) and
        // no backoff phase: yield, or go straight to the sleep protocol.
        #[cfg(loom)]
        let _ = &ready;
        #[cfg(loom)]
        match wait {
            WaitStrategy::Futex => sleep(this, wait::slice_end(deadline)),
            _ => {
                let _ = &backoff;
                crate::sync::yield_now();
            }
        }
        #[cfg(not(loom))]
        match wait {
            // Wait for the peer's index (or state) to change, polling only
            // atomics: no clock read, no syscall, until something moved or
            // a bounded number of polls passed (then the loop above checks
            // the deadline and, once per slice, the peer's liveness).
            WaitStrategy::Spin => {
                poll_until(this, &ready, SPIN_POLLS);
            }
            WaitStrategy::SpinYield => {
                while !backoff.is_completed() && !ready(this) {
                    backoff.snooze();
                }
                if !ready(this) {
                    std::thread::yield_now();
                }
            }
            WaitStrategy::Futex | WaitStrategy::Semaphore => {
                // Adaptive spin before sleeping: a streaming peer usually
                // moves within microseconds, and a sleep costs both sides a
                // syscall. After one full spin without progress, sleep at once.
                if !backoff.is_completed() {
                    poll_until(this, &ready, SLEEP_SPIN_POLLS);
                    while !backoff.is_completed() && !ready(this) {
                        backoff.snooze();
                    }
                }
                if !ready(this) {
                    sleep(this, wait::slice_end(deadline));
                }
            }
        }
    }
}

/// Polls of the peer's index between two full attempts with `Spin`.
#[cfg(not(loom))]
const SPIN_POLLS: u32 = 4096;
/// Polls of the peer's index before a sleeping strategy goes to sleep
/// (a few tens of microseconds).
#[cfg(not(loom))]
const SLEEP_SPIN_POLLS: u32 = 4096;

/// Poll `ready` up to `polls` times with spin-loop hints; whether it became true.
#[cfg(not(loom))]
#[inline]
fn poll_until<S>(this: &S, ready: &impl Fn(&S) -> bool, polls: u32) -> bool {
    for _ in 0..polls {
        if ready(this) {
            return true;
        }
        std::hint::spin_loop();
    }
    false
}

fn deadline_after(timeout: Duration) -> Option<Instant> {
    Instant::now().checked_add(timeout)
}

/// Where a reserved record goes.
#[derive(Debug, Clone, Copy)]
struct Slot {
    /// Tail before the reservation.
    start: u64,
    /// Bytes of padding before the record (0 if none).
    pad: u64,
    /// Offset of the record header in the data area.
    off: u64,
}

// ---------------------------------------------------------------------------
// Producer

/// The sending end of a ring. `Send`, not `Sync`: one thread at a time.
///
/// Dropping it closes the producer side: the consumer drains what was
/// committed, then gets [`Error::Disconnected`].
pub struct Producer<V: Variant = LockFree> {
    ep: Endpoint,
    /// Lock-free: our authoritative tail. Locked: last tail seen under the lock.
    tail: u64,
    /// Last `head` we loaded.
    head_cache: u64,
    /// Our copies of the `messages` / `bytes` counters (we are their only writer).
    msgs: u64,
    bytes: u64,
    _v: PhantomData<(V, Cell<()>)>,
}

// SAFETY: the raw data pointer points into the `Arc<Segment>` the handle
// owns; nothing is tied to the creating thread. `Cell<()>` keeps it !Sync.
unsafe impl<V: Variant> Send for Producer<V> {}

/// Blocking mode of one attempt.
#[derive(Clone, Copy)]
enum Mode {
    /// Never wait (for the lock either).
    Try,
    /// May wait for the lock for one slice, bounded by this deadline.
    Until(Option<Instant>),
}

impl<V: Variant> Producer<V> {
    pub(crate) fn attach(seg: Arc<Segment>) -> Result<Self> {
        let ep = Endpoint::attach(seg, Role::Producer)?;
        let h = ep.h();
        // Acquire: pair with the peers' Release stores of the indices (a
        // takeover continues from the committed positions and their bytes).
        let head = h.cons.head.load(Ordering::Acquire);
        let tail = h.prod.tail.load(Ordering::Acquire);
        let mut p = Producer {
            tail,
            head_cache: head,
            msgs: h.prod.messages.load(Ordering::Relaxed),
            bytes: h.prod.bytes.load(Ordering::Relaxed),
            ep,
            _v: PhantomData,
        };
        if !V::LOCKED {
            let r = check_span(head, tail, p.ep.cap);
            p.ep.note(r)?;
        }
        Ok(p)
    }

    /// Data-area capacity in bytes.
    pub fn capacity(&self) -> u64 {
        self.ep.cap
    }

    /// Largest message this ring accepts (`capacity / 2 - 8` bytes).
    pub fn max_message(&self) -> usize {
        self.ep.max
    }

    /// The wait strategy recorded in the segment.
    pub fn wait_strategy(&self) -> WaitStrategy {
        self.ep.wait
    }

    /// Bytes of committed, unread records (framing included), as of now.
    pub fn len(&self) -> u64 {
        stats_of(self.ep.h(), self.ep.cap).used_bytes
    }

    /// Whether every committed record has been read.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A snapshot of the ring's counters.
    pub fn stats(&self) -> Stats {
        stats_of(self.ep.h(), self.ep.cap)
    }

    /// The consumer's state: attached and alive, closed, died, or not
    /// attached yet. Asks the kernel whether its role lock is held (one
    /// `fcntl`), so it is exact even when the consumer was killed.
    ///
    /// # Errors
    /// `Corrupted` if the consumer's state word holds an invalid value; `Io`
    /// in a forked child that inherited this handle.
    pub fn peer_status(&self) -> Result<PeerStatus> {
        self.ep.peer_status()
    }

    /// Whether the consumer is attached and its process alive now.
    pub fn is_peer_alive(&self) -> bool {
        matches!(self.ep.peer_status(), Ok(PeerStatus::Alive))
    }

    /// Close the producer side now: the consumer receives every committed
    /// message, then [`Error::Disconnected`]. The same as dropping the
    /// handle, but errors are reported instead of ignored.
    ///
    /// # Errors
    /// `Io` if this handle was inherited across `fork()` (only the process
    /// that attached can close the role), or if removing the name of a
    /// segment this handle created (`unlink_on_drop`) failed.
    pub fn close(mut self) -> Result<()> {
        self.ep.close_explicit()
    }

    fn check_len(&self, len: usize) -> Result<()> {
        if len > self.ep.max {
            return Err(Error::TooLarge {
                len,
                max: self.ep.max,
            });
        }
        Ok(())
    }

    /// Is the consumer gone? Errors are the ones a send reports.
    fn consumer_gone(&mut self, how: Check) -> Result<()> {
        match self.ep.peer_gone(how)? {
            None => Ok(()),
            Some(PeerGone::Closed) => Err(Error::Disconnected),
            Some(PeerGone::Died) => Err(Error::PeerDied),
        }
    }

    /// Reserve room for a record of `len` payload bytes. `Ok(None)` if full.
    #[inline]
    fn reserve(&mut self, len: usize) -> Result<Option<Slot>> {
        let rec = frame::record_len(len as u64);
        if V::LOCKED {
            let h = self.ep.h();
            self.tail = h.prod.tail.load(Ordering::Relaxed);
            self.head_cache = h.cons.head.load(Ordering::Relaxed);
            check_span(self.head_cache, self.tail, self.ep.cap)?;
        }
        let tail = self.tail;
        let off = tail & self.ep.mask;
        let contiguous = self.ep.cap - off;
        let pad = if contiguous >= rec { 0 } else { contiguous };
        let need = pad + rec;
        if tail + need - self.head_cache > self.ep.cap {
            if V::LOCKED {
                return Ok(None);
            }
            // Acquire: pairs with the consumer's Release (SeqCst) store of
            // `head` in `Consumer::publish`, so its reads of the slots we are
            // about to reuse happened before our writes.
            let head = self.ep.h().cons.head.load(Ordering::Acquire);
            check_span(head, tail, self.ep.cap)?;
            self.head_cache = head;
            if tail + need - head > self.ep.cap {
                return Ok(None);
            }
        }
        Ok(Some(Slot {
            start: tail,
            pad,
            off: if pad == 0 { off } else { 0 },
        }))
    }

    /// Write the record headers for `slot` and publish it with `len` bytes.
    #[inline]
    fn commit_slot(&mut self, slot: Slot, len: usize) {
        let data = self.ep.data;
        if slot.pad != 0 {
            let pad_off = slot.start & self.ep.mask;
            // SAFETY: pad_off is 8-aligned and pad >= 8 bytes remain before
            // the end of the data area (pad = cap - pad_off).
            unsafe {
                store_word(
                    data,
                    pad_off,
                    frame::encode(KIND_PAD, (slot.pad - HDR) as u32),
                )
            };
        }
        // SAFETY: reserve() placed the record at an 8-aligned offset with
        // record_len(len) <= record_len(reserved len) bytes before the end.
        unsafe { store_word(data, slot.off, frame::encode(KIND_MSG, len as u32)) };
        let new_tail = slot.start + slot.pad + frame::record_len(len as u64);
        self.tail = new_tail;
        let h = self.ep.seg.header();
        let p = &h.prod;
        // Counters: store-only from local copies. Loading them would stall
        // on the line the consumer just read `tail` from.
        // Seeded from the segment at attach (peer-writable): wrap, never panic.
        self.msgs = self.msgs.wrapping_add(1);
        self.bytes = self.bytes.wrapping_add(len as u64);
        p.messages.store(self.msgs, Ordering::Relaxed);
        p.bytes.store(self.bytes, Ordering::Relaxed);
        // Pairs with the consumer's Acquire load of `tail` in `peek` (and,
        // for the wake-up, its registration in `Endpoint::sleep`).
        self.ep
            .publish_index(&p.tail, new_tail, &h.wait_consumer, &p.wake_syscalls);
    }

    /// One attempt at reserving `len` bytes, taking the lock if locked.
    fn attempt_reserve(
        &mut self,
        len: usize,
        mode: Mode,
        check_peer: bool,
    ) -> Result<Option<(Slot, Option<crate::locked::Guard>)>> {
        self.consumer_gone(Check::Word)?;
        if V::LOCKED && matches!(mode, Mode::Until(_)) {
            // Waiting in the locked ring: look at the indices without the
            // lock first, so a waiting side does not keep taking the mutex
            // away from the side that would make progress. Plain atomic
            // loads; the decision is re-made under the lock.
            let h = self.ep.h();
            let used = h
                .prod
                .tail
                .load(Ordering::Relaxed)
                .wrapping_sub(h.cons.head.load(Ordering::Relaxed));
            self.head_cache = h.cons.head.load(Ordering::Relaxed);
            if used.saturating_add(frame::record_len(len as u64)) > self.ep.cap {
                self.consumer_gone(Check::slow(check_peer))?;
                return Ok(None);
            }
        }
        let guard = if V::LOCKED {
            match self.ep.note(crate::locked::lock(
                self.ep.seg.header(),
                mode_until(mode),
                self.ep.cap,
            ))? {
                Some(g) => Some(g),
                None => return Ok(None),
            }
        } else {
            None
        };
        let r = self.reserve(len);
        match self.ep.note(r)? {
            Some(slot) => Ok(Some((slot, guard))),
            None => {
                drop(guard);
                // Full: find out whether anyone will ever make room.
                self.consumer_gone(Check::slow(check_peer))?;
                Ok(None)
            }
        }
    }

    /// Did the consumer move `head` (or its state) since our last attempt?
    #[inline]
    fn space_changed(&self) -> bool {
        let h = self.ep.h();
        // Acquire: pairs with the consumer's Release/SeqCst store of `head`
        // (the attempt that follows re-reads and validates it anyway).
        h.cons.head.load(Ordering::Acquire) != self.head_cache
            || h.endpoints.consumer.load(Ordering::Relaxed) > STATE_ATTACHED
    }

    fn sleep_for_space(&mut self, until: Instant) {
        let head_seen = self.head_cache;
        let h = self.ep.seg.header();
        self.ep.sleep(&h.wait_producer, until, || {
            // SeqCst: see `Endpoint::sleep`.
            h.cons.head.load(Ordering::SeqCst) != head_seen
                // Closed (or an invalid word, to report it); a consumer that
                // never attached yet is waited for (its attach wakes us).
                || h.endpoints.consumer.load(Ordering::SeqCst) > STATE_ATTACHED
        });
    }

    fn count_full(&mut self) {
        let c = &self.ep.seg.header().prod.full_waits;
        c.store(c.load(Ordering::Relaxed).wrapping_add(1), Ordering::Relaxed);
    }

    fn reserve_blocking(
        &mut self,
        len: usize,
        deadline: Option<Instant>,
    ) -> Result<(Slot, Option<crate::locked::Guard>)> {
        self.ep.check_broken()?;
        self.check_len(len)?;
        let wait = self.ep.wait;
        block(
            self,
            deadline,
            wait,
            |p, check| p.attempt_reserve(len, Mode::Until(deadline), check),
            |p, until| p.sleep_for_space(until),
            |p| p.space_changed(),
            |p| p.count_full(),
        )
    }

    fn copy_in(&self, slot: Slot, msg: &[u8]) {
        // SAFETY: the slot has room for the header and msg.len() bytes
        // inside the data area; the region between tail and head+capacity is
        // the producer's, and `msg` cannot overlap the mapping's ring slots
        // we own exclusively.
        unsafe {
            std::ptr::copy_nonoverlapping(
                msg.as_ptr(),
                self.ep.data.add((slot.off + HDR) as usize),
                msg.len(),
            )
        };
    }

    /// Send `msg` if there is room now.
    ///
    /// # Errors
    /// `Full` if there is no room; `TooLarge` above [`Self::max_message`];
    /// `Disconnected`/`PeerDied` if the consumer is gone; `Corrupted`.
    pub fn try_send(&mut self, msg: &[u8]) -> Result<()> {
        self.ep.check_broken()?;
        self.check_len(msg.len())?;
        match self.attempt_reserve(msg.len(), Mode::Try, false)? {
            Some((slot, guard)) => {
                self.copy_in(slot, msg);
                self.commit_slot(slot, msg.len());
                drop(guard);
                Ok(())
            }
            None => Err(Error::Full),
        }
    }

    /// Send `msg`, waiting for room per the wait strategy.
    ///
    /// # Errors
    /// As [`Self::try_send`], without `Full`.
    pub fn send(&mut self, msg: &[u8]) -> Result<()> {
        self.send_deadline(msg, None)
    }

    /// Send `msg`, waiting at most `timeout` for room.
    ///
    /// # Errors
    /// As [`Self::send`], plus `Timeout`.
    pub fn send_timeout(&mut self, msg: &[u8], timeout: Duration) -> Result<()> {
        self.send_deadline(msg, deadline_after(timeout))
    }

    #[inline]
    fn send_deadline(&mut self, msg: &[u8], deadline: Option<Instant>) -> Result<()> {
        if !V::LOCKED {
            // Fast path: room now and the consumer has not closed. No
            // clock read, no syscall, no closure.
            self.ep.check_broken()?;
            self.check_len(msg.len())?;
            // Acquire: pairs with the consumer's SeqCst store of CLOSED.
            if self.ep.peer_word().load(Ordering::Acquire) != STATE_CLOSED {
                let r = self.reserve(msg.len());
                if let Some(slot) = self.ep.note(r)? {
                    self.copy_in(slot, msg);
                    self.commit_slot(slot, msg.len());
                    return Ok(());
                }
            }
        }
        let (slot, guard) = self.reserve_blocking(msg.len(), deadline)?;
        self.copy_in(slot, msg);
        self.commit_slot(slot, msg.len());
        drop(guard);
        Ok(())
    }

    /// Reserve `len` bytes in the ring to write a message in place, if there
    /// is room now. Write into the returned guard, then [`Claim::commit`];
    /// dropping the guard aborts. In the locked variant the guard holds the
    /// mutex.
    ///
    /// # Errors
    /// As [`Self::try_send`].
    pub fn try_claim(&mut self, len: usize) -> Result<Claim<'_, V>> {
        self.ep.check_broken()?;
        self.check_len(len)?;
        match self.attempt_reserve(len, Mode::Try, false)? {
            Some((slot, guard)) => Ok(Claim {
                p: self,
                slot,
                len,
                _guard: guard,
            }),
            None => Err(Error::Full),
        }
    }

    /// Like [`Self::try_claim`], waiting for room per the wait strategy.
    ///
    /// # Errors
    /// As [`Self::send`].
    pub fn claim(&mut self, len: usize) -> Result<Claim<'_, V>> {
        let (slot, guard) = self.reserve_blocking(len, None)?;
        Ok(Claim {
            p: self,
            slot,
            len,
            _guard: guard,
        })
    }

    /// Like [`Self::claim`], waiting at most `timeout`.
    ///
    /// # Errors
    /// As [`Self::send_timeout`].
    pub fn claim_timeout(&mut self, len: usize, timeout: Duration) -> Result<Claim<'_, V>> {
        let (slot, guard) = self.reserve_blocking(len, deadline_after(timeout))?;
        Ok(Claim {
            p: self,
            slot,
            len,
            _guard: guard,
        })
    }
}

fn mode_until(mode: Mode) -> Option<Instant> {
    match mode {
        Mode::Try => None,
        // Computed only here, on the locked path: no clock read per
        // message in the lock-free ring.
        Mode::Until(deadline) => Some(wait::slice_end(deadline)),
    }
}

impl<V: Variant> Drop for Producer<V> {
    fn drop(&mut self) {
        self.ep.close();
    }
}

impl<V: Variant> std::fmt::Debug for Producer<V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Producer")
            .field("variant", &V::NAME)
            .field("capacity", &self.ep.cap)
            .field("wait", &self.ep.wait)
            .field("tail", &self.tail)
            .finish()
    }
}

/// Bytes reserved in the ring by [`Producer::claim`]. Derefs to a
/// `&mut [u8]` of the claimed length; [`Claim::commit`] publishes it,
/// dropping it discards it.
pub struct Claim<'a, V: Variant = LockFree> {
    p: &'a mut Producer<V>,
    slot: Slot,
    len: usize,
    _guard: Option<crate::locked::Guard>,
}

impl<V: Variant> Claim<'_, V> {
    /// Publish the whole claimed length as one message.
    pub fn commit(self) {
        let len = self.len;
        self.commit_len(len);
    }

    /// Publish the first `n` bytes as one message (`n` is clamped to the
    /// claimed length).
    pub fn commit_len(self, n: usize) {
        let n = n.min(self.len);
        self.p.commit_slot(self.slot, n);
        // `_guard` (the locked variant's mutex) is released when self drops.
    }
}

impl<V: Variant> std::ops::Deref for Claim<'_, V> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        // SAFETY: the claimed bytes are inside the data area and owned by
        // the producer until committed; the consumer never writes them.
        unsafe {
            std::slice::from_raw_parts(self.p.ep.data.add((self.slot.off + HDR) as usize), self.len)
        }
    }
}

impl<V: Variant> std::ops::DerefMut for Claim<'_, V> {
    fn deref_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in `deref`; `&mut self` makes the borrow unique.
        unsafe {
            std::slice::from_raw_parts_mut(
                self.p.ep.data.add((self.slot.off + HDR) as usize),
                self.len,
            )
        }
    }
}

impl<V: Variant> std::io::Write for Producer<V> {
    /// Sends up to [`Producer::max_message`] bytes of `buf` as one message.
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = buf.len().min(self.ep.max);
        self.send(&buf[..n])?;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

// ---------------------------------------------------------------------------
// Consumer

/// The receiving end of a ring. `Send`, not `Sync`.
///
/// Dropping it closes the consumer side: the producer's sends then fail
/// with [`Error::Disconnected`].
pub struct Consumer<V: Variant = LockFree> {
    ep: Endpoint,
    /// Our authoritative head (locked: last head seen under the lock).
    head: u64,
    /// Last `tail` we loaded.
    tail_cache: u64,
    /// Our copies of the `messages` / `bytes` counters (we are their only writer).
    msgs: u64,
    bytes: u64,
    /// Bytes of a message partly returned by `io::Read`.
    pending: Vec<u8>,
    pending_pos: usize,
    /// Locked variant: messages and bytes released by [`Message::release`]
    /// while the mutex was busy; `head` is already past them locally and is
    /// published by the next operation that holds the mutex.
    deferred: Option<(u64, u64)>,
    _v: PhantomData<(V, Cell<()>)>,
}

// SAFETY: as for `Producer`.
unsafe impl<V: Variant> Send for Consumer<V> {}

/// Why a receive attempt found nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Idle {
    /// Nothing yet; the producer is alive (or not attached yet).
    Empty,
    /// The producer is gone but left messages: look again at once.
    Retry,
}

/// Outcome of one receive attempt.
enum Step<R> {
    Got(R),
    Idle(Idle),
}

/// A record found by `peek`: payload offset and length, and the head after it.
#[derive(Clone, Copy)]
struct Found {
    off: u64,
    len: usize,
    next: u64,
}

impl<V: Variant> Consumer<V> {
    pub(crate) fn attach(seg: Arc<Segment>) -> Result<Self> {
        let ep = Endpoint::attach(seg, Role::Consumer)?;
        let h = ep.h();
        // Acquire: as in `Producer::attach`.
        let head = h.cons.head.load(Ordering::Acquire);
        let tail = h.prod.tail.load(Ordering::Acquire);
        let mut c = Consumer {
            head,
            tail_cache: head,
            msgs: h.cons.messages.load(Ordering::Relaxed),
            bytes: h.cons.bytes.load(Ordering::Relaxed),
            ep,
            pending: Vec::new(),
            pending_pos: 0,
            deferred: None,
            _v: PhantomData,
        };
        if !V::LOCKED {
            let r = check_span(head, tail, c.ep.cap);
            c.ep.note(r)?;
        }
        Ok(c)
    }

    /// Data-area capacity in bytes.
    pub fn capacity(&self) -> u64 {
        self.ep.cap
    }

    /// Largest message this ring accepts.
    pub fn max_message(&self) -> usize {
        self.ep.max
    }

    /// The wait strategy recorded in the segment.
    pub fn wait_strategy(&self) -> WaitStrategy {
        self.ep.wait
    }

    /// Bytes of committed, unread records (framing included), as of now.
    pub fn len(&self) -> u64 {
        stats_of(self.ep.h(), self.ep.cap).used_bytes
    }

    /// Whether no committed record is waiting.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A snapshot of the ring's counters.
    pub fn stats(&self) -> Stats {
        stats_of(self.ep.h(), self.ep.cap)
    }

    /// Find the next message at or after `head` given the known `tail`.
    #[inline]
    fn parse(&self, mut head: u64, tail: u64) -> Result<Option<Found>> {
        if head == tail {
            return Ok(None);
        }
        let cap = self.ep.cap;
        let mut off = head & self.ep.mask;
        // SAFETY: off is 8-aligned (check_span) and < cap, so 8 bytes fit.
        let mut word = unsafe { load_word(self.ep.data, off) };
        let (mut kind, mut len) = frame::decode(word)?;
        if kind == KIND_PAD {
            if off == 0 || len != cap - off - HDR {
                return Err(Error::corrupted("padding record with a wrong length", word));
            }
            head += cap - off;
            if head >= tail {
                return Err(Error::corrupted(
                    "padding record not followed by a message",
                    word,
                ));
            }
            off = 0;
            // SAFETY: offset 0 is inside the data area.
            word = unsafe { load_word(self.ep.data, 0) };
            (kind, len) = frame::decode(word)?;
            if kind != KIND_MSG {
                return Err(Error::corrupted("padding record followed by padding", word));
            }
        }
        if len > self.ep.max as u64 {
            return Err(Error::corrupted("message length above the maximum", len));
        }
        let rec = frame::record_len(len);
        if off + rec > cap || head + rec > tail {
            return Err(Error::corrupted(
                "message record runs past tail or the data area",
                word,
            ));
        }
        Ok(Some(Found {
            off: off + HDR,
            len: len as usize,
            next: head + rec,
        }))
    }

    /// One look for a message (lock-free: with the cached tail first).
    /// Locked: call with the mutex held.
    #[inline]
    fn look(&mut self) -> Result<Option<Found>> {
        if V::LOCKED {
            self.flush_release();
        }
        let head = self.head;
        if V::LOCKED {
            let h = self.ep.h();
            self.head = h.cons.head.load(Ordering::Relaxed);
            self.tail_cache = h.prod.tail.load(Ordering::Relaxed);
            check_span(self.head, self.tail_cache, self.ep.cap)?;
            return self.parse(self.head, self.tail_cache);
        }
        if head == self.tail_cache {
            // Acquire: pairs with the producer's Release (SeqCst) store of
            // `tail` in `commit_slot`: the record bytes are visible.
            let tail = self.ep.h().prod.tail.load(Ordering::Acquire);
            check_span(head, tail, self.ep.cap)?;
            self.tail_cache = tail;
        }
        self.parse(head, self.tail_cache)
    }

    /// Publish a new head.
    #[inline]
    fn publish(&mut self, new_head: u64, msgs: u64, bytes: u64) {
        self.head = new_head;
        let h = self.ep.seg.header();
        let c = &h.cons;
        // Store-only counters, as in `Producer::commit_slot`.
        self.msgs = self.msgs.wrapping_add(msgs);
        self.bytes = self.bytes.wrapping_add(bytes);
        c.messages.store(self.msgs, Ordering::Relaxed);
        c.bytes.store(self.bytes, Ordering::Relaxed);
        // Pairs with the producer's Acquire load of `head` in `reserve` (and,
        // for the wake-up, its registration in `Endpoint::sleep`).
        self.ep
            .publish_index(&c.head, new_head, &h.wait_producer, &c.wake_syscalls);
    }

    /// Nothing to read: tell whether the producer is gone, after one last
    /// look at `tail` (a producer stores its last tail before closing or dying).
    fn empty_reason(&mut self, how: Check) -> Result<Idle> {
        let Some(g) = self.ep.peer_gone(how)? else {
            return Ok(Idle::Empty);
        };
        // Acquire: pairs with the producer's final tail store; its state
        // store (or death) came after it.
        let tail = self.ep.h().prod.tail.load(Ordering::Acquire);
        if tail != self.head {
            return Ok(Idle::Retry); // it left messages behind: read them first
        }
        Err(match g {
            PeerGone::Closed => Error::Disconnected,
            PeerGone::Died => Error::PeerDied,
        })
    }

    /// One attempt to find a message and hand it to `f` (with the locked
    /// variant's mutex held while `f` runs).
    fn attempt<R>(
        &mut self,
        mode: Mode,
        check_peer: bool,
        f: &mut Option<impl FnOnce(&mut Self, Found) -> R>,
    ) -> Result<Step<R>> {
        if V::LOCKED && matches!(mode, Mode::Until(_)) {
            // Waiting in the locked ring: see `Producer::attempt_reserve`.
            let tail = self.ep.h().prod.tail.load(Ordering::Relaxed);
            if tail == self.head {
                self.tail_cache = tail;
                return self.empty_reason(Check::slow(check_peer)).map(Step::Idle);
            }
        }
        let guard = if V::LOCKED {
            match self.ep.note(crate::locked::lock(
                self.ep.seg.header(),
                mode_until(mode),
                self.ep.cap,
            ))? {
                Some(g) => Some(g),
                None => return Ok(Step::Idle(Idle::Empty)), // lock busy
            }
        } else {
            None
        };
        let r = self.look();
        match self.ep.note(r)? {
            Some(found) => {
                let Some(f) = f.take() else {
                    // unreachable: attempts stop at the first success
                    return Ok(Step::Idle(Idle::Empty));
                };
                let out = f(self, found);
                drop(guard);
                Ok(Step::Got(out))
            }
            None => {
                drop(guard);
                self.empty_reason(Check::slow(check_peer)).map(Step::Idle)
            }
        }
    }

    /// Did the producer move `tail` (or its state) since our last attempt?
    #[inline]
    fn data_changed(&self) -> bool {
        let h = self.ep.h();
        // Acquire: pairs with the producer's Release/SeqCst store of `tail`
        // (the attempt that follows re-reads and validates it anyway).
        h.prod.tail.load(Ordering::Acquire) != self.tail_cache
            || h.endpoints.producer.load(Ordering::Relaxed) > STATE_ATTACHED
    }

    fn sleep_for_data(&mut self, until: Instant) {
        let tail_seen = self.tail_cache;
        let h = self.ep.seg.header();
        self.ep.sleep(&h.wait_consumer, until, || {
            // SeqCst: see `Endpoint::sleep`.
            h.prod.tail.load(Ordering::SeqCst) != tail_seen
                // See `sleep_for_space`.
                || h.endpoints.producer.load(Ordering::SeqCst) > STATE_ATTACHED
        });
    }

    fn count_empty(&mut self) {
        let c = &self.ep.seg.header().cons.empty_waits;
        c.store(c.load(Ordering::Relaxed).wrapping_add(1), Ordering::Relaxed);
    }

    /// Lend the message `found` to `f`, then release its space.
    #[inline]
    fn deliver<R>(&mut self, found: Found, f: impl FnOnce(&[u8]) -> R) -> R {
        // SAFETY: parse() checked that the payload lies inside the data
        // area, between head and tail: the consumer's region, which the
        // producer does not write until head passes it.
        let msg =
            unsafe { std::slice::from_raw_parts(self.ep.data.add(found.off as usize), found.len) };
        let out = f(msg);
        self.publish(found.next, 1, found.len as u64);
        out
    }

    #[inline]
    fn recv_with_deadline<R>(
        &mut self,
        deadline: Option<Instant>,
        f: impl FnOnce(&[u8]) -> R,
    ) -> Result<R> {
        self.ep.check_broken()?;
        if !V::LOCKED {
            // Fast path: a message is waiting. No clock read, no closure.
            let r = self.look();
            if let Some(found) = self.ep.note(r)? {
                return Ok(self.deliver(found, f));
            }
        }
        self.found_deadline(deadline, move |c, found| c.deliver(found, f))
    }

    /// Hand the next message, if any, to `f` as a borrowed slice, and
    /// release its space afterwards.
    ///
    /// # Errors
    /// `Empty` if no message is waiting; `Disconnected`/`PeerDied` once the
    /// producer is gone and every committed message was received; `Corrupted`.
    pub fn try_recv_with<R>(&mut self, f: impl FnOnce(&[u8]) -> R) -> Result<R> {
        self.try_found(move |c, found| c.deliver(found, f))
    }

    /// One non-blocking receive: hand the next message's position to `f`.
    fn try_found<R>(&mut self, f: impl FnOnce(&mut Self, Found) -> R) -> Result<R> {
        self.ep.check_broken()?;
        let mut f = Some(f);
        // A second look only if the producer is gone but left messages
        // behind after our first look (it cannot publish more).
        for _ in 0..2 {
            match self.attempt(Mode::Try, false, &mut f)? {
                Step::Got(r) => return Ok(r),
                Step::Idle(Idle::Empty) => break,
                Step::Idle(Idle::Retry) => {}
            }
        }
        Err(Error::Empty)
    }

    /// A blocking receive (until `deadline`): hand the next message's
    /// position to `f`.
    fn found_deadline<R>(
        &mut self,
        deadline: Option<Instant>,
        f: impl FnOnce(&mut Self, Found) -> R,
    ) -> Result<R> {
        self.ep.check_broken()?;
        let mut f = Some(f);
        let wait = self.ep.wait;
        block(
            self,
            deadline,
            wait,
            |c, check| match c.attempt(Mode::Until(deadline), check, &mut f)? {
                Step::Got(r) => Ok(Some(r)),
                Step::Idle(_) => Ok(None),
            },
            |c, until| c.sleep_for_data(until),
            |c| c.data_changed(),
            |c| c.count_empty(),
        )
    }

    /// Like [`Self::try_recv_with`], waiting for a message per the wait strategy.
    ///
    /// # Errors
    /// As [`Self::try_recv_with`], without `Empty`.
    pub fn recv_with<R>(&mut self, f: impl FnOnce(&[u8]) -> R) -> Result<R> {
        self.recv_with_deadline(None, f)
    }

    /// Like [`Self::recv_with`], waiting at most `timeout`.
    ///
    /// # Errors
    /// As [`Self::recv_with`], plus `Timeout`.
    pub fn recv_timeout_with<R>(
        &mut self,
        timeout: Duration,
        f: impl FnOnce(&[u8]) -> R,
    ) -> Result<R> {
        self.recv_with_deadline(deadline_after(timeout), f)
    }

    /// Copy the next message into `buf` (replacing its contents), if any.
    /// Returns the message length.
    ///
    /// # Errors
    /// As [`Self::try_recv_with`].
    pub fn try_recv(&mut self, buf: &mut Vec<u8>) -> Result<usize> {
        self.try_recv_with(|m| copy_to(buf, m))
    }

    /// Copy the next message into `buf`, waiting per the wait strategy.
    ///
    /// # Errors
    /// As [`Self::recv_with`].
    pub fn recv(&mut self, buf: &mut Vec<u8>) -> Result<usize> {
        self.recv_with(|m| copy_to(buf, m))
    }

    /// Copy the next message into `buf`, waiting at most `timeout`.
    ///
    /// # Errors
    /// As [`Self::recv_timeout_with`].
    pub fn recv_timeout(&mut self, buf: &mut Vec<u8>, timeout: Duration) -> Result<usize> {
        self.recv_timeout_with(timeout, |m| copy_to(buf, m))
    }

    /// Hand up to `max` waiting messages to `f`, in order, and release their
    /// space once for the whole batch. Does not wait. Returns how many were
    /// handed over; `Ok(0)` means none was waiting.
    ///
    /// # Errors
    /// `Disconnected`/`PeerDied` when nothing is left and the producer is
    /// gone; `Corrupted` (messages before the bad record are still handed
    /// over and released first).
    pub fn drain(&mut self, max: usize, mut f: impl FnMut(&[u8])) -> Result<usize> {
        self.ep.check_broken()?;
        if max == 0 {
            return Ok(0);
        }
        let guard = if V::LOCKED {
            match self
                .ep
                .note(crate::locked::lock(self.ep.seg.header(), None, self.ep.cap))?
            {
                Some(g) => Some(g),
                None => return Ok(0),
            }
        } else {
            None
        };
        if V::LOCKED {
            self.flush_release();
            let h = self.ep.h();
            let head = h.cons.head.load(Ordering::Relaxed);
            let tail = h.prod.tail.load(Ordering::Relaxed);
            let r = check_span(head, tail, self.ep.cap);
            self.ep.note(r)?;
            self.head = head;
            self.tail_cache = tail;
        }
        let mut n = 0;
        let mut bytes = 0u64;
        let mut head = self.head;
        let mut err = None;
        while n < max {
            // Reload tail once the cached one is used up (lock-free only;
            // the locked variant read it under the lock).
            if head == self.tail_cache && !V::LOCKED {
                // Acquire: pairs with the producer's tail store (see `peek`).
                let tail = self.ep.h().prod.tail.load(Ordering::Acquire);
                if let Err(e) = check_span(head, tail, self.ep.cap) {
                    err = Some(e);
                    break;
                }
                self.tail_cache = tail;
            }
            match self.parse(head, self.tail_cache) {
                Ok(Some(found)) => {
                    // SAFETY: as in `attempt`.
                    let msg = unsafe {
                        std::slice::from_raw_parts(self.ep.data.add(found.off as usize), found.len)
                    };
                    f(msg);
                    head = found.next;
                    n += 1;
                    bytes += found.len as u64;
                }
                Ok(None) => break,
                Err(e) => {
                    err = Some(e);
                    break;
                }
            }
        }
        if n > 0 {
            self.publish(head, n as u64, bytes);
        }
        drop(guard);
        if let Some(e) = err {
            return self.ep.note(Err(e)).map(|()| n);
        }
        if n == 0 {
            // Empty, or gone with messages left (the next call reads them).
            self.empty_reason(Check::Rated)?;
        }
        Ok(n)
    }
}

impl<V: Variant> Consumer<V> {
    /// Look at the next message without releasing it, if one is waiting:
    /// the first half of a two-phase receive. Read it through the returned
    /// [`Message`], then call [`Message::release`] to free its space.
    /// Dropping the `Message` without releasing keeps the message in the
    /// ring: the next `peek` or receive returns it again, and if this
    /// process dies before releasing, a consumer that takes over the role
    /// receives it. The locked variant does not hold its mutex while the
    /// `Message` lives.
    ///
    /// ```
    /// let (mut tx, mut rx) = shmpipe::Builder::new().in_process()?.split()?;
    /// tx.send(b"job 1")?;
    /// let msg = rx.try_peek()?;
    /// assert_eq!(&*msg, b"job 1");
    /// drop(msg); // not released: still there
    /// let msg = rx.try_peek()?;
    /// // ... hand it on, write it out ...
    /// msg.release();
    /// assert!(matches!(rx.try_peek(), Err(shmpipe::Error::Empty)));
    /// # Ok::<(), shmpipe::Error>(())
    /// ```
    ///
    /// # Errors
    /// As [`Self::try_recv_with`].
    pub fn try_peek(&mut self) -> Result<Message<'_, V>> {
        let found = self.try_found(|_, found| found)?;
        Ok(Message { c: self, found })
    }

    /// Like [`Self::try_peek`], waiting for a message per the wait strategy.
    ///
    /// # Errors
    /// As [`Self::recv_with`].
    pub fn peek(&mut self) -> Result<Message<'_, V>> {
        let found = self.found_deadline(None, |_, found| found)?;
        Ok(Message { c: self, found })
    }

    /// Like [`Self::peek`], waiting at most `timeout`.
    ///
    /// # Errors
    /// As [`Self::recv_timeout_with`].
    pub fn peek_timeout(&mut self, timeout: Duration) -> Result<Message<'_, V>> {
        let found = self.found_deadline(deadline_after(timeout), |_, found| found)?;
        Ok(Message { c: self, found })
    }

    /// Copy the next message, if any, into the start of `buf` and return its
    /// length. For callers with a fixed buffer.
    ///
    /// ```
    /// let (mut tx, mut rx) = shmpipe::Builder::new().in_process()?.split()?;
    /// tx.send(b"twelve bytes")?;
    /// let mut small = [0u8; 4];
    /// let err = rx.try_recv_into(&mut small).unwrap_err();
    /// assert!(matches!(err, shmpipe::Error::BufferTooSmall { len: 12, capacity: 4 }));
    /// let mut buf = [0u8; 64];
    /// let n = rx.try_recv_into(&mut buf)?; // the message was kept
    /// assert_eq!(&buf[..n], b"twelve bytes");
    /// # Ok::<(), shmpipe::Error>(())
    /// ```
    ///
    /// # Errors
    /// `BufferTooSmall { len, capacity }` if the message is longer than
    /// `buf` (the message stays in the ring); otherwise as
    /// [`Self::try_recv_with`].
    pub fn try_recv_into(&mut self, buf: &mut [u8]) -> Result<usize> {
        self.try_found(|c, found| c.deliver_into(found, buf))?
    }

    /// Like [`Self::try_recv_into`], waiting for a message per the wait strategy.
    ///
    /// # Errors
    /// As [`Self::try_recv_into`], without `Empty`.
    pub fn recv_into(&mut self, buf: &mut [u8]) -> Result<usize> {
        self.found_deadline(None, |c, found| c.deliver_into(found, buf))?
    }

    /// Like [`Self::recv_into`], waiting at most `timeout`.
    ///
    /// # Errors
    /// As [`Self::recv_into`], plus `Timeout`.
    pub fn recv_into_timeout(&mut self, buf: &mut [u8], timeout: Duration) -> Result<usize> {
        self.found_deadline(deadline_after(timeout), |c, found| {
            c.deliver_into(found, buf)
        })?
    }

    /// The producer's state: attached and alive, closed, died, or not
    /// attached yet (see [`Producer::peer_status`]).
    ///
    /// # Errors
    /// As [`Producer::peer_status`].
    pub fn peer_status(&self) -> Result<PeerStatus> {
        self.ep.peer_status()
    }

    /// Whether the producer is attached and its process alive now.
    pub fn is_peer_alive(&self) -> bool {
        matches!(self.ep.peer_status(), Ok(PeerStatus::Alive))
    }

    /// Close the consumer side now: the producer's sends then fail with
    /// [`Error::Disconnected`]. The same as dropping the handle, but errors
    /// are reported instead of ignored.
    ///
    /// # Errors
    /// As [`Producer::close`].
    pub fn close(mut self) -> Result<()> {
        self.finish_release();
        self.ep.close_explicit()
    }

    /// Copy `found` into `buf` and release it, or leave it if `buf` is short.
    fn deliver_into(&mut self, found: Found, buf: &mut [u8]) -> Result<usize> {
        if found.len > buf.len() {
            return Err(Error::BufferTooSmall {
                len: found.len,
                capacity: buf.len(),
            });
        }
        Ok(self.deliver(found, |m| {
            buf[..m.len()].copy_from_slice(m);
            m.len()
        }))
    }

    /// Release a message lent by `peek`.
    fn release_found(&mut self, found: Found) {
        if !V::LOCKED {
            self.publish(found.next, 1, found.len as u64);
            return;
        }
        // Locked: record the release locally, publish it now if the mutex is
        // free, else with the next operation that takes it. Never blocks.
        let (m, b) = self.deferred.unwrap_or((0, 0));
        self.deferred = Some((m + 1, b + found.len as u64));
        self.head = found.next;
        match crate::locked::lock(self.ep.seg.header(), None, self.ep.cap) {
            Ok(Some(guard)) => {
                self.flush_release();
                drop(guard);
            }
            Ok(None) => {}
            Err(e) => {
                let _ = self.ep.note(Err::<(), _>(e));
            }
        }
    }

    /// Locked, with the mutex held: publish releases deferred by `release_found`.
    fn flush_release(&mut self) {
        if let Some((m, b)) = self.deferred.take() {
            let head = self.head;
            self.publish(head, m, b);
        }
    }

    /// Before closing: publish deferred releases, waiting a little for the
    /// mutex. If it stays busy the released messages are delivered again to
    /// the next consumer (at least once, never lost).
    fn finish_release(&mut self) {
        if !V::LOCKED || self.deferred.is_none() {
            return;
        }
        let until = Instant::now() + Duration::from_millis(100);
        while Instant::now() < until {
            match crate::locked::lock(
                self.ep.seg.header(),
                Some(wait::slice_end(Some(until))),
                self.ep.cap,
            ) {
                Ok(Some(guard)) => {
                    self.flush_release();
                    drop(guard);
                    return;
                }
                Ok(None) => {}
                Err(_) => return,
            }
        }
    }
}

/// A message lent by [`Consumer::peek`]: derefs to its bytes. Call
/// [`Message::release`] to free its space; dropping it without releasing
/// keeps the message in the ring (it is returned again).
#[must_use = "a peeked message stays in the ring until it is released"]
pub struct Message<'a, V: Variant = LockFree> {
    c: &'a mut Consumer<V>,
    found: Found,
}

impl<V: Variant> Message<'_, V> {
    /// Free the message's space: the producer may reuse it.
    pub fn release(self) {
        let found = self.found;
        self.c.release_found(found);
    }
}

impl<V: Variant> std::ops::Deref for Message<'_, V> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        // SAFETY: `parse` checked that the payload lies inside the data area
        // between head and tail: the consumer's region, which the producer
        // does not write until head passes it, and head moves only through
        // this consumer (which the `&mut` borrow pins).
        unsafe {
            std::slice::from_raw_parts(self.c.ep.data.add(self.found.off as usize), self.found.len)
        }
    }
}

impl<V: Variant> std::fmt::Debug for Message<'_, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Message")
            .field("len", &self.found.len)
            .finish()
    }
}

/// What a [`Producer::peer_status`] / [`Consumer::peer_status`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum PeerStatus {
    /// No process has attached to the peer's role yet.
    NotAttached,
    /// The peer is attached and its process holds its role lock.
    Alive,
    /// The peer closed its side in order.
    Closed,
    /// The peer's process died without closing (a new one may take over).
    Died,
}

fn copy_to(buf: &mut Vec<u8>, m: &[u8]) -> usize {
    buf.clear();
    buf.extend_from_slice(m);
    m.len()
}

impl<V: Variant> Drop for Consumer<V> {
    fn drop(&mut self) {
        self.finish_release();
        self.ep.close();
    }
}

impl<V: Variant> std::fmt::Debug for Consumer<V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Consumer")
            .field("variant", &V::NAME)
            .field("capacity", &self.ep.cap)
            .field("wait", &self.ep.wait)
            .field("head", &self.head)
            .finish()
    }
}

impl<V: Variant> std::io::Read for Consumer<V> {
    /// Reads the ring as a byte stream: message boundaries are not kept,
    /// empty messages are skipped. Returns `Ok(0)` (end of file) once the
    /// producer closed in order and everything was read; a dead producer is
    /// an error of kind `ConnectionAborted` after everything was read.
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        if out.is_empty() {
            return Ok(0);
        }
        loop {
            if self.pending_pos < self.pending.len() {
                let rest = &self.pending[self.pending_pos..];
                let n = rest.len().min(out.len());
                out[..n].copy_from_slice(&rest[..n]);
                self.pending_pos += n;
                return Ok(n);
            }
            let mut pending = std::mem::take(&mut self.pending);
            pending.clear();
            let r = self.recv_with(|m| {
                let n = m.len().min(out.len());
                out[..n].copy_from_slice(&m[..n]);
                pending.clear();
                pending.extend_from_slice(&m[n..]);
                n
            });
            self.pending = pending;
            self.pending_pos = 0;
            match r {
                Ok(0) => continue,
                Ok(n) => return Ok(n),
                Err(Error::Disconnected) => return Ok(0),
                Err(e) => return Err(e.into()),
            }
        }
    }
}
