//! [`WaitSet`]: one thread waits on many rings, in one `futex_waitv(2)`.
//!
//! # How it waits
//! Each registered endpoint sleeps on its side's wait word in the segment
//! (`wait_consumer` for a consumer, `wait_producer` for a producer), exactly
//! as a blocking call does: load `seq`, store `waiting = 1` (SeqCst), one
//! `membarrier(2)` for all rings whose peer publishes with the light
//! barrier, re-check every ring with SeqCst loads, then sleep in a single
//! `futex_waitv` on all the `seq` words. The peer's wake-up is unchanged: it
//! publishes, sees `waiting`, bumps `seq` and calls `FUTEX_WAKE`. A plain
//! blocking peer needs to know nothing about the set.
//!
//! # How the set refers to endpoints
//! [`WaitSet::add_consumer`] / [`WaitSet::add_producer`] borrow the endpoint
//! only for the call: the set keeps a *weak* reference to its segment. The
//! user keeps the handle and drains it with the ordinary calls while the
//! set watches (a set that borrowed the handles would be unusable while the
//! user drains; one that owned them would put a lookup on every call). The
//! set reads the position the endpoint already publishes in the segment
//! after every message (`head` / `tail`), so the hot path pays nothing.
//!
//! The set never keeps a ring alive: each look at a ring holds it mapped
//! for that look only (never across a sleep), and no wait keeps anything
//! once it returns. When the user drops a ring's endpoints, registered or
//! removed, the ring is unmapped and (if its creator asked) its name
//! removed at once, by the dropping thread, whatever the set is doing (if
//! a look on another thread is in progress at that instant, by that thread
//! a few microseconds later). A registration whose ring is gone stays
//! until [`WaitSet::remove`], and is never ready.
//!
//! # How the set learns of a dead peer
//! Each endpoint records its pid in the segment when it attaches. The set
//! opens a pidfd (`pidfd_open(2)`) for the pid of each ring's peer (one per
//! process, however many rings it serves) in one epoll, watched by one
//! thread per set that sleeps in `epoll_wait`. When such a process exits,
//! every ring following it is checked at once against the authority, the
//! peer's role lock (an `fcntl`): a SIGKILLed peer is reported in well under
//! a millisecond on an idle machine. The pid is a peer's word, so it is only
//! a hint: a pid that is not the peer's (scribbled, stale, from another pid
//! namespace) can cost a needless role-lock check, never a live peer
//! reported dead, and a ring whose pid cannot be followed is checked every
//! slice as before.
//!
//! # Rules
//! - **One endpoint is waited on in one place at a time.** Each side has one
//!   `waiting` flag, not a count: a blocking call on a handle while a set
//!   (or a second set) watches the same handle still works, but a wake-up
//!   may then reach only one of them and the other notices within one
//!   slice (see [`WaitSet::set_slice`]).
//! - Level-triggered: a ready ring is reported by every `wait` until it is
//!   drained (consumer) or has room (producer).
//! - `Futex` rings are slept on; `Spin` / `SpinYield` rings are polled with a
//!   backoff bounded by 1 ms (their peers never make wake-up syscalls), so a
//!   set with such a ring wakes up to 1,000 times a second while idle;
//!   `Semaphore` rings are refused (their wake-up is a post to the ring's
//!   counting semaphore, not a wake of the `seq` word the set sleeps on).
//! - A closed peer is reported (as [`Event::peer_gone`]) at once (its close
//!   wakes the set); a killed one when its process's pidfd fires (see
//!   above), or, for a ring whose peer's pid cannot be followed, within one
//!   slice, [`DEFAULT_SLICE`] = 500 ms unless [`WaitSet::set_slice`] says
//!   otherwise. A followed ring is still checked every
//!   [`COVERED_SLICES`] slices (2 s by default), which bounds the report
//!   when the recorded pid is a live process that is not the peer. The
//!   user's next call on the handle returns `PeerDied` / `Disconnected` (a
//!   consumer first gets what was left).
//! - Idle cost: while nothing happens, a waiting thread wakes once per
//!   slice (once per `COVERED_SLICES` slices while every ring it watches is
//!   followed by a pidfd), re-checks its rings (loads) and asks the kernel
//!   about the peers whose check is due (one `fcntl` each); it does not
//!   register again or issue a barrier (its registrations still stand).
//!   Measured: 1,000 parked receives in `shmpipe-tokio` about 0.17% of a
//!   core (before pidfds, with an `fcntl` per ring per 500 ms: 0.5%).
//! - Up to 127 rings are waited on by the calling thread itself. Beyond
//!   that (`futex_waitv` waits on at most 128 words; the set keeps one for
//!   itself), the set splits its rings into groups of 127, each watched by a
//!   background thread, and `wait` sleeps in `poll(2)` on the set's eventfd.
//! - Linux >= 5.16 (`futex_waitv`): [`WaitSet::new`] reports an older kernel.
//! - No `as_fd` on a single endpoint: a peer's wake-up is a futex wake,
//!   which no descriptor reflects, so a descriptor for one ring needs a
//!   thread sleeping on the futex to write an eventfd. That is what a set
//!   with one ring is: `add_consumer(&rx)` then [`WaitSet::as_fd`]
//!   costs one background thread; an endpoint method would hide the same
//!   thread per endpoint.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_utils::CachePadded;

use crate::error::{Error, Result};
use crate::ring::watch::{Readiness, Watch};

mod deaths;
use crate::ring::{Consumer, Producer, Variant};
use crate::wait::{self, FutexWaitv, WaitStrategy, Waited};
use deaths::{Deaths, Followed, PidFd};

/// Rings one thread waits on in one `futex_waitv` (the kernel's limit is
/// 128 words; one is the set's own control word).
pub const GROUP: usize = 127;

/// Default longest sleep of a set, and how often it asks the kernel whether
/// the peer of a ring it cannot follow by pidfd still holds its role lock
/// (an `fcntl` of a few microseconds per ring). Longer than a blocking
/// call's 20 ms slice because a set may watch thousands of rings. A killed
/// peer whose pid the set follows is reported when its process exits; see
/// the [module docs](crate::waitset) and [`WaitSet::set_slice`].
pub const DEFAULT_SLICE: Duration = Duration::from_millis(500);

/// A ring whose peer's process a pidfd follows is still checked (role lock)
/// every this many slices, in case the pid it recorded is a live process
/// that is not the peer; a set whose rings are all followed sleeps this
/// many slices between looks while idle.
pub const COVERED_SLICES: u32 = 4;

/// Longest poll interval for `Spin` / `SpinYield` rings.
const SPIN_POLL_MAX: Duration = Duration::from_millis(1);
const SPIN_POLL_MIN: Duration = Duration::from_micros(20);

/// Names one registration in a [`WaitSet`]. Tokens of removed entries are
/// reused by later `add` calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Token(pub usize);

/// One ready registration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Event {
    /// Which registration.
    pub token: Token,
    /// The peer closed or died: the next call on the handle reports it
    /// (a consumer is reported ready while messages remain, then this).
    pub peer_gone: bool,
}

/// The events one [`WaitSet::wait`] found. Reuse it between calls: it keeps
/// its allocation.
#[derive(Debug, Default, Clone)]
pub struct Events {
    list: Vec<Event>,
}

impl Events {
    /// An empty list.
    ///
    /// ```
    /// use shmpipe::{Events, WaitSet};
    /// let mut events = Events::new();
    /// let mut set = WaitSet::new()?; // nothing to watch yet: the wait times out
    /// assert_eq!(set.wait(&mut events, Some(std::time::Duration::ZERO))?, 0);
    /// assert!(events.is_empty());
    /// # Ok::<(), shmpipe::Error>(())
    /// ```
    pub fn new() -> Events {
        Events::default()
    }
    /// The events found by the last wait.
    ///
    /// ```
    /// use shmpipe::{Builder, Events, WaitSet};
    /// let (mut tx, rx) = Builder::new().capacity(4096).in_process()?.split()?;
    /// let mut set = WaitSet::new()?;
    /// let t = set.add_consumer(&rx)?;
    /// tx.send(b"x")?;
    /// let mut events = Events::new();
    /// set.wait(&mut events, None)?;
    /// let ready: Vec<_> = events.iter().map(|e| (e.token, e.peer_gone)).collect();
    /// assert_eq!(ready, [(t, false)]);
    /// # Ok::<(), shmpipe::Error>(())
    /// ```
    pub fn iter(&self) -> impl Iterator<Item = &Event> + '_ {
        self.list.iter()
    }
    /// How many.
    ///
    /// ```
    /// use shmpipe::{Builder, Events, WaitSet};
    /// let (mut tx1, rx1) = Builder::new().capacity(4096).in_process()?.split()?;
    /// let (mut tx2, rx2) = Builder::new().capacity(4096).in_process()?.split()?;
    /// let mut set = WaitSet::new()?;
    /// set.add_consumer(&rx1)?;
    /// set.add_consumer(&rx2)?;
    /// tx1.send(b"1")?;
    /// tx2.send(b"2")?;
    /// let mut events = Events::new();
    /// set.wait(&mut events, None)?;
    /// assert_eq!(events.len(), 2);
    /// # Ok::<(), shmpipe::Error>(())
    /// ```
    pub fn len(&self) -> usize {
        self.list.len()
    }
    /// Whether none.
    ///
    /// ```
    /// use std::time::Duration;
    /// use shmpipe::{Builder, Events, WaitSet};
    /// let (_tx, rx) = Builder::new().capacity(4096).in_process()?.split()?;
    /// let mut set = WaitSet::new()?;
    /// set.add_consumer(&rx)?;
    /// let mut events = Events::new();
    /// set.wait(&mut events, Some(Duration::from_millis(10)))?; // nothing sent
    /// assert!(events.is_empty());
    /// # Ok::<(), shmpipe::Error>(())
    /// ```
    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }
    /// Whether `token` is among them.
    ///
    /// ```
    /// use shmpipe::{Builder, Events, WaitSet};
    /// let (mut tx1, rx1) = Builder::new().capacity(4096).in_process()?.split()?;
    /// let (_tx2, rx2) = Builder::new().capacity(4096).in_process()?.split()?;
    /// let mut set = WaitSet::new()?;
    /// let (t1, t2) = (set.add_consumer(&rx1)?, set.add_consumer(&rx2)?);
    /// tx1.send(b"1")?;
    /// let mut events = Events::new();
    /// set.wait(&mut events, None)?;
    /// assert!(events.contains(t1) && !events.contains(t2));
    /// # Ok::<(), shmpipe::Error>(())
    /// ```
    pub fn contains(&self, token: Token) -> bool {
        self.list.iter().any(|e| e.token == token)
    }
}

impl<'a> IntoIterator for &'a Events {
    type Item = &'a Event;
    type IntoIter = std::slice::Iter<'a, Event>;
    fn into_iter(self) -> Self::IntoIter {
        self.list.iter()
    }
}

fn no_waitv() -> Error {
    Error::io(
        "creating a WaitSet",
        std::io::Error::other(
            "futex_waitv(2) is not available: a WaitSet needs Linux 5.16 or later",
        ),
    )
}

/// Control words of the background waiters; group `g` uses word
/// `g % CTL_WORDS` (groups sharing a word only wake each other needlessly).
const CTL_WORDS: usize = 16;

/// One registration: what the set watches, and the pid it follows.
struct Entry {
    watch: Watch,
    /// The peer pid this entry follows (0: none); see `deaths`.
    pid: AtomicU32,
    /// Its pidfd, while followed.
    pidfd: Mutex<Option<Arc<PidFd>>>,
    /// A pidfd is open for `pid` and has not fired: the role lock is
    /// checked only every `COVERED_SLICES` slices.
    covered: AtomicBool,
    /// The process `pid` names exited (or was not found): check the role
    /// lock at the next look.
    check_now: AtomicBool,
}

impl Entry {
    fn new(watch: Watch) -> Entry {
        Entry {
            watch,
            pid: AtomicU32::new(0),
            pidfd: Mutex::new(None),
            covered: AtomicBool::new(false),
            check_now: AtomicBool::new(false),
        }
    }
}

/// State shared with the background waiters and the death thread.
struct Shared {
    entries: Mutex<Vec<Option<Arc<Entry>>>>,
    /// Futex word per group, in every `futex_waitv` of its waiter: bumped
    /// (and woken) on an add or remove in the group, a slice change and
    /// stop, so that waiter takes a new look. Not on re-arming: a waiter
    /// that is still registered on its rings needs no new look for that.
    ctl: [CachePadded<AtomicU32>; CTL_WORDS],
    /// Futex word a waiter that fired sleeps on until `wait` re-arms the
    /// set (or stop).
    arm: CachePadded<AtomicU32>,
    /// Background waiters may signal the eventfd (cleared when they do; set
    /// again by `wait`, which collects the events).
    armed: AtomicBool,
    stop: AtomicBool,
    efd: OwnedFd,
    /// Longest sleep of one round and the interval between two liveness
    /// checks of one ring, in nanoseconds (default `DEFAULT_SLICE`).
    slice_ns: std::sync::atomic::AtomicU64,
    /// The pidfds of the peers' processes and the thread that waits on them.
    deaths: Deaths,
}

impl Shared {
    fn entries(&self) -> MutexGuard<'_, Vec<Option<Arc<Entry>>>> {
        // A waiter thread that panicked left the list intact.
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn slice(&self) -> Duration {
        Duration::from_nanos(self.slice_ns.load(Ordering::Relaxed))
    }

    fn ctl(&self, group: usize) -> &AtomicU32 {
        &self.ctl[group % CTL_WORDS]
    }

    /// Make the waiter of `group` take a new look.
    fn poke(&self, group: usize) {
        // Release: pairs with the waiters' Acquire load of their `ctl`
        // word before they snapshot the entries and the flags.
        self.ctl(group).fetch_add(1, Ordering::Release);
        wait::futex_wake(self.ctl(group), i32::MAX);
    }

    /// Make every waiter take a new look (slice change, stop).
    fn poke_all(&self) {
        for g in 0..CTL_WORDS {
            self.poke(g);
        }
        self.wake_fired();
    }

    /// Wake the waiters sleeping until the set is re-armed.
    fn wake_fired(&self) {
        // Release: pairs with the Acquire load of `arm` in `background`
        // before it looks at `armed`.
        self.arm.fetch_add(1, Ordering::Release);
        wait::futex_wake(&self.arm, i32::MAX);
    }

    fn signal_fd(&self) {
        let one: u64 = 1;
        // SAFETY: valid eventfd and an 8-byte buffer. EAGAIN (counter at
        // its maximum) still leaves the fd readable.
        unsafe { libc::write(self.efd.as_raw_fd(), (&one as *const u64).cast(), 8) };
    }

    fn drain_fd(&self) {
        let mut v: u64 = 0;
        // SAFETY: valid non-blocking eventfd and an 8-byte buffer; EAGAIN
        // (not readable) is fine.
        unsafe { libc::read(self.efd.as_raw_fd(), (&mut v as *mut u64).cast(), 8) };
    }
}

/// Wait for any of many rings: a consumer with data (or a gone producer),
/// a producer with room (or a gone consumer). See the [module
/// docs](crate::waitset) for the protocol and the rules.
///
/// ```
/// use shmpipe::{Builder, WaitSet, WaitStrategy, Events};
/// use std::time::Duration;
///
/// let (mut tx1, mut rx1) = Builder::new().wait(WaitStrategy::Futex).in_process()?.split()?;
/// let (_tx2, mut rx2) = Builder::new().wait(WaitStrategy::Futex).in_process()?.split()?;
/// let mut set = WaitSet::new()?;
/// let t1 = set.add_consumer(&rx1)?;
/// let _t2 = set.add_consumer(&rx2)?;
/// let mut events = Events::new();
/// assert_eq!(set.wait(&mut events, Some(Duration::from_millis(10)))?, 0);
/// tx1.send(b"hi")?;
/// assert_eq!(set.wait(&mut events, None)?, 1);
/// assert!(events.contains(t1));
/// rx1.try_recv_with(|m| assert_eq!(m, b"hi"))?;
/// # Ok::<(), shmpipe::Error>(())
/// ```
pub struct WaitSet {
    shared: Arc<Shared>,
    /// Background waiters, one per group of `GROUP` entries (started by
    /// `as_fd`, or when the set outgrows one group).
    threads: Mutex<Vec<JoinHandle<()>>>,
    /// `as_fd` was called: `wait` goes through the background waiters.
    fd_mode: AtomicBool,
    /// Reused between waits (emptied after each, so the set refers to no
    /// ring between waits): the entries' snapshot and the futex list.
    snapshot: Vec<(Token, Arc<Entry>)>,
    waitv: Vec<FutexWaitv>,
}

impl std::fmt::Debug for WaitSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WaitSet")
            .field("rings", &self.len())
            .field("waiter_threads", &self.threads().len())
            .finish()
    }
}

impl WaitSet {
    /// An empty set.
    ///
    /// ```
    /// let set = shmpipe::WaitSet::new()?;
    /// assert!(set.is_empty());
    /// # Ok::<(), shmpipe::Error>(())
    /// ```
    ///
    /// # Errors
    /// `Io` if the kernel lacks `futex_waitv(2)` (Linux < 5.16) or an
    /// eventfd cannot be created.
    pub fn new() -> Result<WaitSet> {
        wait::probe_waitv().map_err(|_| no_waitv())?;
        // SAFETY: plain syscall; the result is checked.
        let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        if fd < 0 {
            return Err(Error::last_os("creating the WaitSet's eventfd"));
        }
        // Register for membarrier once, as endpoints do, so heavy barriers work.
        let _ = wait::light_barrier_available();
        Ok(WaitSet {
            shared: Arc::new(Shared {
                entries: Mutex::new(Vec::new()),
                ctl: std::array::from_fn(|_| CachePadded::new(AtomicU32::new(0))),
                arm: CachePadded::new(AtomicU32::new(0)),
                armed: AtomicBool::new(true),
                stop: AtomicBool::new(false),
                // SAFETY: a fresh descriptor owned by nobody else.
                efd: unsafe { OwnedFd::from_raw_fd(fd) },
                slice_ns: std::sync::atomic::AtomicU64::new(DEFAULT_SLICE.as_nanos() as u64),
                deaths: Deaths::new(),
            }),
            threads: Mutex::new(Vec::new()),
            fd_mode: AtomicBool::new(false),
            snapshot: Vec::new(),
            waitv: Vec::new(),
        })
    }

    /// Longest single sleep, and the interval between two liveness checks
    /// of a ring whose peer's pid the set cannot follow (default
    /// [`DEFAULT_SLICE`], 500 ms; rings followed by a pidfd: every
    /// [`COVERED_SLICES`] slices). A killed peer is reported when its
    /// process exits (pidfd), else within about one slice; a closed peer
    /// wakes the set at once. A shorter slice bounds those fallbacks
    /// tighter and costs an idle set more: one `fcntl` (a few
    /// microseconds) per checked ring per slice. Tests use a very long one
    /// so that a lost wake-up shows as a hang.
    ///
    /// ```
    /// use std::time::Duration;
    /// let mut set = shmpipe::WaitSet::new()?;
    /// // Check rings whose peer's process cannot be followed every 100 ms:
    /// set.set_slice(Duration::from_millis(100));
    /// # Ok::<(), shmpipe::Error>(())
    /// ```
    pub fn set_slice(&mut self, slice: Duration) {
        let ns = slice.as_nanos().clamp(1_000_000, u64::MAX as u128) as u64;
        self.shared.slice_ns.store(ns, Ordering::Relaxed);
        self.shared.poke_all();
    }

    /// Number of registrations.
    ///
    /// ```
    /// let (tx, rx) = shmpipe::Builder::new().capacity(4096).in_process()?.split()?;
    /// let mut set = shmpipe::WaitSet::new()?;
    /// set.add_consumer(&rx)?;
    /// set.add_producer(&tx)?;
    /// assert_eq!(set.len(), 2);
    /// # Ok::<(), shmpipe::Error>(())
    /// ```
    pub fn len(&self) -> usize {
        self.shared.entries().iter().flatten().count()
    }

    /// Whether nothing is registered.
    ///
    /// ```
    /// let (_tx, rx) = shmpipe::Builder::new().capacity(4096).in_process()?.split()?;
    /// let mut set = shmpipe::WaitSet::new()?;
    /// let t = set.add_consumer(&rx)?;
    /// assert!(!set.is_empty());
    /// set.remove(t);
    /// assert!(set.is_empty());
    /// # Ok::<(), shmpipe::Error>(())
    /// ```
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Watch `consumer`: ready when a message waits or the producer is gone.
    /// The handle stays the caller's; see the type docs for the rules.
    ///
    /// ```
    /// use shmpipe::{Builder, Events, WaitSet};
    /// let (tx, rx) = Builder::new().capacity(4096).in_process()?.split()?;
    /// let mut set = WaitSet::new()?;
    /// let t = set.add_consumer(&rx)?; // `rx` stays ours
    /// drop(tx); // a gone producer makes the consumer ready too
    /// let mut events = Events::new();
    /// set.wait(&mut events, None)?;
    /// assert!(events.iter().any(|e| e.token == t && e.peer_gone));
    /// # Ok::<(), shmpipe::Error>(())
    /// ```
    ///
    /// # Errors
    /// `InvalidOption` for a `Semaphore` ring.
    pub fn add_consumer<V: Variant>(&mut self, consumer: &Consumer<V>) -> Result<Token> {
        check_strategy(consumer.wait_strategy())?;
        let w = consumer.watch();
        self.insert(w)
    }

    /// Watch `producer`: ready when a message of [`Producer::max_message`]
    /// bytes fits (so any send succeeds), or the consumer is gone.
    ///
    /// ```
    /// use std::time::Duration;
    /// use shmpipe::{Builder, Events, WaitSet};
    /// let (mut tx, mut rx) = Builder::new().capacity(64).in_process()?.split()?;
    /// tx.send(&[0; 24])?; // no room left for a max_message (24 bytes)
    /// let mut set = WaitSet::new()?;
    /// let t = set.add_producer(&tx)?;
    /// let mut events = Events::new();
    /// assert_eq!(set.wait(&mut events, Some(Duration::from_millis(10)))?, 0);
    /// rx.try_recv_with(|_| ())?;
    /// set.wait(&mut events, None)?;
    /// assert!(events.contains(t)); // room again
    /// # Ok::<(), shmpipe::Error>(())
    /// ```
    ///
    /// # Errors
    /// `InvalidOption` for a `Semaphore` ring.
    pub fn add_producer<V: Variant>(&mut self, producer: &Producer<V>) -> Result<Token> {
        let max = producer.max_message();
        self.add_producer_for(producer, max)
    }

    /// Watch `producer`: ready when a message of `len` bytes fits, or the
    /// consumer is gone.
    ///
    /// ```
    /// use std::time::Duration;
    /// use shmpipe::{Builder, Events, WaitSet};
    /// let (mut tx, _rx) = Builder::new().capacity(64).in_process()?.split()?;
    /// tx.send(&[0; 24])?;
    /// let mut set = WaitSet::new()?;
    /// let t = set.add_producer_for(&tx, 8)?; // ready when 8 bytes fit
    /// let mut events = Events::new();
    /// set.wait(&mut events, Some(Duration::ZERO))?;
    /// assert!(events.contains(t));
    /// assert!(matches!(set.add_producer_for(&tx, 25), Err(shmpipe::Error::TooLarge { .. })));
    /// # Ok::<(), shmpipe::Error>(())
    /// ```
    ///
    /// # Errors
    /// `InvalidOption` for a `Semaphore` ring; `TooLarge` if `len` is above
    /// [`Producer::max_message`].
    pub fn add_producer_for<V: Variant>(
        &mut self,
        producer: &Producer<V>,
        len: usize,
    ) -> Result<Token> {
        check_strategy(producer.wait_strategy())?;
        let w = producer.watch(len)?;
        self.insert(w)
    }

    fn insert(&mut self, w: Watch) -> Result<Token> {
        let token = {
            let mut e = self.shared.entries();
            let i = match e.iter().position(Option::is_none) {
                Some(i) => i,
                None => {
                    e.push(None);
                    e.len() - 1
                }
            };
            e[i] = Some(Arc::new(Entry::new(w)));
            Token(i)
        };
        if self.fd_mode() || self.groups() > 1 {
            self.start_threads();
        }
        self.shared.poke(token.0 / GROUP);
        Ok(token)
    }

    /// Stop watching `token`; whether it was registered. The set keeps
    /// nothing of the ring: it never kept the ring mapped (see the [module
    /// docs](crate::waitset)), and its pidfd for the peer's process is
    /// closed with the last ring that follows it.
    ///
    /// ```
    /// use shmpipe::{Builder, Events, WaitSet};
    /// let (mut tx, rx) = Builder::new().capacity(4096).in_process()?.split()?;
    /// let mut set = WaitSet::new()?;
    /// let t = set.add_consumer(&rx)?;
    /// assert!(set.remove(t));
    /// assert!(!set.remove(t)); // already gone
    /// tx.send(b"x")?;
    /// let mut events = Events::new();
    /// assert_eq!(set.wait(&mut events, Some(std::time::Duration::ZERO))?, 0);
    /// # Ok::<(), shmpipe::Error>(())
    /// ```
    pub fn remove(&mut self, token: Token) -> bool {
        let (was, _removed) = {
            let mut e = self.shared.entries();
            let removed = e.get_mut(token.0).and_then(Option::take);
            while e.last().is_some_and(Option::is_none) {
                e.pop();
            }
            (removed.is_some(), removed)
        };
        self.shared.poke(token.0 / GROUP);
        was
    }

    fn fd_mode(&self) -> bool {
        self.fd_mode.load(Ordering::Relaxed)
    }

    fn threads(&self) -> MutexGuard<'_, Vec<JoinHandle<()>>> {
        self.threads.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn groups(&self) -> usize {
        self.shared.entries().len().div_ceil(GROUP)
    }

    /// Start background waiters until every group has one.
    fn start_threads(&self) {
        let groups = self.groups().max(1);
        let mut threads = self.threads();
        while threads.len() < groups {
            let g = threads.len();
            let shared = self.shared.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("shmpipe-waitset-{g}"))
                .spawn(move || background(&shared, g));
            match spawned {
                Ok(t) => threads.push(t),
                // Out of threads: `wait` then keeps polling at the slice.
                Err(_) => break,
            }
        }
    }

    /// A file descriptor (an eventfd) that becomes readable when a
    /// registered ring is ready, for epoll/poll/select loops and tokio's
    /// `AsyncFd`. When it is readable, call [`WaitSet::wait`] with a zero
    /// timeout: it collects the events and re-arms the descriptor (it stays
    /// readable while rings remain ready). Driven by one background thread
    /// per group of 127 rings sleeping in `futex_waitv`: almost no CPU
    /// while idle (see the [module docs](crate::waitset); `Spin` rings are
    /// polled).
    ///
    /// Borrows the set shared, and the set is also [`AsFd`] and
    /// [`AsRawFd`] (both switch it to this mode), so tokio's `AsyncFd` can
    /// own it and hand it back for `wait`, `add_*` and `remove` (see the
    /// `shmpipe-tokio` crate docs for the pattern). The descriptor is the
    /// same open eventfd for the set's whole life (what
    /// `AsyncFd::register` requires of its caller).
    ///
    /// ```
    /// use std::os::fd::AsRawFd;
    /// use std::time::Duration;
    /// use shmpipe::{Builder, Events, WaitSet};
    /// let (mut tx, rx) = Builder::new().capacity(4096).in_process()?.split()?;
    /// let mut set = WaitSet::new()?;
    /// let t = set.add_consumer(&rx)?;
    /// let fd = set.as_fd().as_raw_fd(); // e.g. for epoll or tokio's AsyncFd
    /// tx.send(b"x")?;
    /// let mut pfd = libc::pollfd { fd, events: libc::POLLIN, revents: 0 };
    /// // SAFETY: one valid pollfd.
    /// assert_eq!(unsafe { libc::poll(&mut pfd, 1, 10_000) }, 1); // readable
    /// let mut events = Events::new();
    /// set.wait(&mut events, Some(Duration::ZERO))?;
    /// assert!(events.contains(t));
    /// # Ok::<(), shmpipe::Error>(())
    /// ```
    pub fn as_fd(&self) -> BorrowedFd<'_> {
        if !self.fd_mode.swap(true, Ordering::Relaxed) {
            self.start_threads();
        }
        self.shared.efd.as_fd()
    }

    /// Wait until a registered ring is ready or `timeout` passes (`None`:
    /// no timeout), and put the ready registrations into `events`; returns
    /// how many. `Some(Duration::ZERO)` only looks.
    ///
    /// ```
    /// use std::time::Duration;
    /// use shmpipe::{Builder, Error, Events, WaitSet};
    /// let (mut tx, rx) = Builder::new().capacity(4096).in_process()?.split()?;
    /// let mut set = WaitSet::new()?;
    /// set.add_consumer(&rx)?;
    /// let mut events = Events::new();
    /// assert_eq!(set.wait(&mut events, Some(Duration::from_millis(10)))?, 0); // timed out
    /// let t = std::thread::spawn(move || tx.send(b"wake"));
    /// assert_eq!(set.wait(&mut events, None)?, 1); // slept until the send
    /// t.join().unwrap()?;
    /// # Ok::<(), Error>(())
    /// ```
    ///
    /// # Errors
    /// `Io` if `poll(2)` on the eventfd fails (sets of more than 127 rings).
    pub fn wait(&mut self, events: &mut Events, timeout: Option<Duration>) -> Result<usize> {
        events.list.clear();
        let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
        if self.fd_mode() || self.groups() > 1 {
            self.start_threads();
            let r = self.wait_fd(events, deadline);
            self.snapshot.clear();
            return r;
        }
        let mut spin_poll = SPIN_POLL_MIN;
        let slice = self.shared.slice();
        // Group 0's control word: the death thread bumps it when a peer's
        // process exits (nothing else moves it while `wait` holds `&mut`).
        self.snapshot_all();
        let ctl = self.shared.ctl(0);
        let r = loop {
            // Acquire: pairs with `Shared::poke`'s Release bump, before the
            // looks at the rings (`check_now`).
            let c = ctl.load(Ordering::Acquire);
            let r = round(
                &self.shared,
                &self.snapshot,
                &mut self.waitv,
                Some((ctl, c)),
                &mut events.list,
                deadline,
                slice,
                &mut spin_poll,
            );
            let timed_out = deadline.is_some_and(|d| Instant::now() >= d);
            if r.is_err() || !events.list.is_empty() || timed_out {
                break r;
            }
        };
        // Withdraw: the set may not be waited on again for a long time, and
        // a registration left in place costs the peer a wake-up syscall.
        for (_, e) in &self.snapshot {
            if e.watch.sleeps() {
                if let Some(p) = e.watch.pin() {
                    p.unregister();
                }
            }
        }
        // Keep no reference to any entry between waits: a removed entry's
        // pidfd closes with `remove`.
        self.snapshot.clear();
        r.map(|()| events.list.len())
    }

    fn snapshot_all(&mut self) {
        self.snapshot.clear();
        let e = self.shared.entries();
        self.snapshot.extend(
            e.iter()
                .enumerate()
                .filter_map(|(i, w)| w.as_ref().map(|w| (Token(i), w.clone()))),
        );
    }

    /// `wait` through the background waiters and the eventfd.
    fn wait_fd(&mut self, events: &mut Events, deadline: Option<Instant>) -> Result<usize> {
        loop {
            // Re-arm first, then look: an event after our look makes a
            // waiter signal the fd.
            self.shared.drain_fd();
            self.shared.armed.store(true, Ordering::SeqCst);
            // Only the waiters that fired need waking: the others are still
            // registered on their rings.
            self.shared.wake_fired();
            self.snapshot_all();
            let slice = self.shared.slice();
            for (t, e) in &self.snapshot {
                push_ready(&self.shared, &mut events.list, *t, e, slice);
            }
            self.snapshot.clear();
            if !events.list.is_empty() {
                return Ok(events.list.len());
            }
            let now = Instant::now();
            let ms = match deadline {
                Some(d) if d <= now => return Ok(0),
                Some(d) => (d - now).as_millis().clamp(1, i32::MAX as u128) as i32,
                None => -1,
            };
            let mut pfd = libc::pollfd {
                fd: self.shared.efd.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: one valid pollfd.
            let r = unsafe { libc::poll(&mut pfd, 1, ms) };
            if r < 0 {
                let e = std::io::Error::last_os_error();
                if e.raw_os_error() != Some(libc::EINTR) {
                    return Err(Error::io("waiting on the WaitSet's eventfd", e));
                }
            }
        }
    }
}

impl Drop for WaitSet {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        self.shared.poke_all();
        for t in self.threads().drain(..) {
            let _ = t.join();
        }
        self.shared.deaths.stop();
    }
}

/// The eventfd of [`WaitSet::as_fd`] (switches the set to that mode).
impl AsFd for WaitSet {
    fn as_fd(&self) -> BorrowedFd<'_> {
        WaitSet::as_fd(self)
    }
}

/// The eventfd of [`WaitSet::as_fd`] (switches the set to that mode).
impl AsRawFd for WaitSet {
    fn as_raw_fd(&self) -> RawFd {
        WaitSet::as_fd(self).as_raw_fd()
    }
}

fn check_strategy(w: WaitStrategy) -> Result<()> {
    if w == WaitStrategy::Semaphore {
        return Err(Error::InvalidOption {
            reason: "a WaitSet cannot wait on a ring with the Semaphore wait strategy (its \
                     wake-up is a semaphore post, not a wake of the futex word a set sleeps \
                     on); create the ring with \
                     WaitStrategy::Futex (or Spin/SpinYield, which the set polls), or wait on \
                     it with a blocking call in its own thread"
                .into(),
        });
    }
    Ok(())
}

/// Make `e` follow `pid` (what its peer's pid word says now; 0: no peer
/// attached). Called from a look at the ring when the word differs from
/// the pid `e` follows; several threads may look at once, so the entry's
/// lock serialises them.
fn follow(shared: &Arc<Shared>, e: &Entry, pid: u32) {
    let mut slot = e.pidfd.lock().unwrap_or_else(|p| p.into_inner());
    if e.pid.load(Ordering::SeqCst) == pid {
        return; // another look did it
    }
    // SeqCst: before following, so a death event for `pid` from now on
    // finds this entry (`alarm` compares `e.pid`).
    e.pid.store(pid, Ordering::SeqCst);
    *slot = None;
    e.covered.store(false, Ordering::SeqCst);
    if pid == 0 {
        return;
    }
    let thread = || -> Box<dyn FnOnce() + Send> {
        let s = Arc::clone(shared);
        Box::new(move || s.deaths.run(|pid| alarm(&s, pid)))
    };
    match shared.deaths.follow(pid, thread) {
        Followed::Watching(fd) => {
            // SeqCst with the death thread's SeqCst `fired` store and `alarm`'s `covered` store:
            // either we see `fired` here, or its `covered = false` lands
            // after ours.
            let live = !fd.fired();
            *slot = Some(fd);
            e.covered.store(live, Ordering::SeqCst);
            if !live {
                e.check_now.store(true, Ordering::Release);
            }
        }
        Followed::Exited => e.check_now.store(true, Ordering::Release),
        Followed::Unavailable => {}
    }
}

/// Every ring that follows `pid`: look at its peer's role lock now, and
/// wake the waiters that watch it.
fn alarm(shared: &Shared, pid: u32) {
    let mut groups = 0u32; // bit per control word (CTL_WORDS <= 32)
    {
        let entries = shared.entries();
        for (i, e) in entries.iter().enumerate() {
            let Some(e) = e else { continue };
            if e.pid.load(Ordering::SeqCst) == pid {
                // SeqCst: see `follow`. A pid that exited while the role
                // lock stays held (a bogus pid, or an inheriting child)
                // leaves the ring to the slice checks.
                e.covered.store(false, Ordering::SeqCst);
                // Release: pairs with the Acquire swap in `push_ready`;
                // the `poke` below makes the waiter look.
                e.check_now.store(true, Ordering::Release);
                groups |= 1 << ((i / GROUP) % CTL_WORDS);
            }
        }
    }
    for g in 0..CTL_WORDS {
        if groups & (1 << g) != 0 {
            shared.poke(g);
        }
    }
}

/// Look at one ring (if any endpoint still holds it) and push an event if
/// it is ready or its peer is gone. Follows the pid the peer recorded when
/// it changed, and checks the peer's role lock every `slice` (every
/// `COVERED_SLICES` slices while a pidfd follows its process), or now if
/// that process exited.
fn push_ready(
    shared: &Arc<Shared>,
    out: &mut Vec<Event>,
    token: Token,
    e: &Entry,
    slice: Duration,
) {
    let Some(p) = e.watch.pin() else {
        return; // every endpoint is gone: nothing can be ready
    };
    let pid = p.peer_pid();
    if pid != e.pid.load(Ordering::Relaxed) {
        follow(shared, e, pid);
    }
    // Acquire: pairs with the Release store in `alarm`/`follow`.
    let force = e.check_now.load(Ordering::Relaxed) && e.check_now.swap(false, Ordering::Acquire);
    let every = if e.covered.load(Ordering::Relaxed) {
        slice.saturating_mul(COVERED_SLICES)
    } else {
        slice
    };
    match p.readiness(every, force) {
        Readiness::Idle => {}
        Readiness::Ready => out.push(Event {
            token,
            peer_gone: false,
        }),
        Readiness::PeerGone => out.push(Event {
            token,
            peer_gone: true,
        }),
    }
}

/// One round over `ws`: register on every futex ring, one heavy barrier
/// if any peer publishes light, re-check every ring into `out`. If none is
/// ready (and `ctl` did not move), sleep in one `futex_waitv` on all the
/// `seq` words (and `ctl`) until a wake-up or `deadline`. A timeout after
/// `slice` (or after the poll interval, with `Spin` rings) only re-checks
/// the rings (cheap loads, plus a role-lock query for the rings whose
/// liveness check is due) and sleeps on with the same list: the
/// registrations still stand (a peer that publishes swaps `waiting` and
/// bumps `seq`, so the next `futex_waitv` returns at once), so an idle set
/// registers nothing again and issues no barrier. Returns on a ready ring,
/// a wake-up (the caller decides whether to look again) or the deadline.
/// Leaves the registrations in place: the caller withdraws them.
#[allow(clippy::too_many_arguments)]
fn round(
    shared: &Arc<Shared>,
    ws: &[(Token, Arc<Entry>)],
    waitv: &mut Vec<FutexWaitv>,
    ctl: Option<(&AtomicU32, u32)>,
    out: &mut Vec<Event>,
    deadline: Option<Instant>,
    slice: Duration,
    spin_poll: &mut Duration,
) -> Result<()> {
    waitv.clear();
    let mut heavy = false;
    let mut polled = false;
    for (_, e) in ws {
        if !e.watch.sleeps() {
            polled = true;
            continue;
        }
        // The pin keeps the word mapped while we register and take its
        // address; the sleep below holds no pin, so the user may drop the
        // ring meanwhile: the kernel then sleeps on (or refuses with
        // EFAULT) an address nothing wakes, harmlessly, until the next
        // look finds the ring gone.
        let Some(p) = e.watch.pin() else { continue };
        let seq = p.register();
        waitv.push(FutexWaitv::new(&p.wait_word().seq, seq));
        heavy |= p.peer_light();
    }
    if let Some((c, v)) = ctl {
        waitv.push(FutexWaitv::new(c, v));
    }
    // One barrier for all rings: after it, every light publisher's signal
    // store is visible to the re-checks below, or its later load of
    // `waiting` sees our registration (see `Endpoint::sleep`).
    if heavy && !wait::heavy_barrier() {
        polled = true; // the kernel refused: poll instead of relying on it
    }
    for (t, e) in ws {
        push_ready(shared, out, *t, e, slice);
    }
    loop {
        if !out.is_empty() {
            *spin_poll = SPIN_POLL_MIN;
            return Ok(());
        }
        // Acquire: pairs with `Shared::poke`'s Release bump.
        if ctl.is_some_and(|(c, v)| c.load(Ordering::Acquire) != v) {
            return Ok(());
        }
        let now = Instant::now();
        if deadline.is_some_and(|d| now >= d) {
            return Ok(());
        }
        // While a pidfd follows every ring's peer, the only thing a
        // timeout is for is the fallback liveness check, due every
        // `COVERED_SLICES` slices: sleep that long.
        let nap = if ws.iter().all(|(_, e)| e.covered.load(Ordering::Relaxed)) {
            slice.saturating_mul(COVERED_SLICES)
        } else {
            slice
        };
        let mut until = now + nap;
        if let Some(d) = deadline {
            until = until.min(d);
        }
        if polled {
            until = until.min(now + *spin_poll);
        }
        match wait::futex_waitv(waitv, until).map_err(|_| no_waitv())? {
            Waited::Other => return Ok(()),
            Waited::TimedOut => {
                if polled {
                    *spin_poll = (*spin_poll * 2).min(SPIN_POLL_MAX);
                }
                for (t, e) in ws {
                    push_ready(shared, out, *t, e, slice);
                }
            }
        }
    }
}

/// A background waiter: watches group `g` of the entries and signals the
/// eventfd when one is ready, then waits to be re-armed.
fn background(shared: &Arc<Shared>, g: usize) {
    let ctl = shared.ctl(g);
    let mut snapshot: Vec<(Token, Arc<Entry>)> = Vec::new();
    let mut waitv = Vec::new();
    let mut out = Vec::new();
    let mut spin_poll = SPIN_POLL_MIN;
    loop {
        // Acquire: pairs with `poke`'s Release bump, before the snapshot.
        let c = ctl.load(Ordering::Acquire);
        let stop = shared.stop.load(Ordering::SeqCst);
        let armed = shared.armed.load(Ordering::SeqCst);
        {
            let e = shared.entries();
            // Withdraw the last round's registrations on rings still in the
            // set, under the lock that `remove` takes: a removed ring may
            // already be registered by another group's waiter (the tokio
            // reactor re-adds rings under new tokens), whose registration
            // clearing the flag here would lose. A removed ring's flag
            // left at 1 costs its peer one needless wake-up at most.
            for (t, w) in &snapshot {
                let present = e
                    .get(t.0)
                    .and_then(Option::as_ref)
                    .is_some_and(|x| Arc::ptr_eq(x, w));
                if present && w.watch.sleeps() {
                    if let Some(p) = w.watch.pin() {
                        p.unregister();
                    }
                }
            }
            snapshot.clear();
            if !stop && armed {
                let lo = (g * GROUP).min(e.len());
                let hi = ((g + 1) * GROUP).min(e.len());
                snapshot.extend(
                    e[lo..hi]
                        .iter()
                        .enumerate()
                        .filter_map(|(i, w)| w.as_ref().map(|w| (Token(lo + i), w.clone()))),
                );
            }
        }
        if stop {
            return;
        }
        if !armed {
            // Fired: the user has not collected the events yet. Load `arm`
            // before looking at `armed` again, so a re-arm in between
            // makes the futex wait return at once.
            let a = shared.arm.load(Ordering::Acquire);
            if !shared.armed.load(Ordering::SeqCst) && !shared.stop.load(Ordering::SeqCst) {
                wait::futex_wait(&shared.arm, a, Instant::now() + Duration::from_secs(3600));
            }
            continue;
        }
        out.clear();
        let r = round(
            shared,
            &snapshot,
            &mut waitv,
            Some((ctl, c)),
            &mut out,
            None,
            shared.slice(),
            &mut spin_poll,
        );
        if r.is_err() {
            // No futex_waitv (cannot happen: `new` probed it): poll.
            std::thread::sleep(wait::SLICE);
        }
        if !out.is_empty() && shared.armed.swap(false, Ordering::SeqCst) {
            shared.signal_fd();
        }
    }
}
