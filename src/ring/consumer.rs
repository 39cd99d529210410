//! The receiving end: following record headers (format v2), lending or
//! copying messages out, the two-phase receive (`peek` / `Message`),
//! batched `drain`, and the byte-stream adapter.

use std::cell::Cell;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::block::{block, deadline_after, inline_polls, Mode};
use super::endpoint::{Check, Endpoint, PeerGone};
use super::protocol::{shared_accessors, LockFree, Protocol};
use super::stats::{bump, PeerStatus};
use crate::error::{Error, Result};
use crate::frame::{self, check_lag, HDR, KIND_MSG, KIND_PAD};
use crate::layout::STATE_ATTACHED;
use crate::segment::{Role, Segment};
use crate::sync::Ordering;

/// A long `drain` publishes its head each time it has read this fraction
/// of the ring (lock-free), so the producer refills while it reads; a
/// consumer that dies mid-`drain` gets at most that much delivered again.
const DRAIN_PUBLISH_PARTS: u64 = 16;

/// The consumer's hooks of a ring design (see [`super::Variant`]): each
/// default is the lock-free step; `src/locked.rs` overrides them for
/// `Locked`.
pub trait ConsumerHooks: Protocol {
    /// At attach: check the indices found.
    #[doc(hidden)]
    fn consumer_attach(c: &mut Consumer<Self>, head: u64, tail: u64) -> crate::Result<()> {
        c.check_attach(head, tail)
    }
    /// One look for a message (inside `enter`).
    #[doc(hidden)]
    #[inline(always)]
    fn look(c: &mut Consumer<Self>) -> crate::Result<Option<Found>> {
        c.look()
    }
    /// Whether a record is published at `head` (no validation).
    #[doc(hidden)]
    #[inline(always)]
    fn has_record(c: &Consumer<Self>) -> bool {
        c.header_published()
    }
    /// A waiting consumer's look without entering: `true` if it can tell
    /// the ring is empty.
    #[doc(hidden)]
    #[inline(always)]
    fn empty_at_a_glance(_c: &mut Consumer<Self>) -> bool {
        false
    }
    /// Found empty, once per liveness slice: cross-check the indices.
    #[doc(hidden)]
    fn cross_check_empty(c: &Consumer<Self>) -> crate::Result<()> {
        c.cross_check_empty()
    }
    /// Whether something was published since the last look.
    #[doc(hidden)]
    #[inline(always)]
    fn data_moved(c: &Consumer<Self>) -> bool {
        c.header_published()
    }
    /// The word a sleeping consumer waits on, and the value it saw there.
    #[doc(hidden)]
    fn data_signal(c: &Consumer<Self>) -> (&crate::sync::AtomicU64, u64) {
        (c.head_word(), 0)
    }
    /// Release a message lent by `peek`.
    #[doc(hidden)]
    fn release(c: &mut Consumer<Self>, found: Found) {
        c.publish_head(found.next)
    }
    /// Before closing: publish what `release` left pending.
    #[doc(hidden)]
    fn finish_release(_c: &mut Consumer<Self>) {}
    /// Start a `drain`: `Ok(None)`: busy, nothing read; else what is held
    /// and, where the indices decide, the `tail` that bounds the batch.
    #[doc(hidden)]
    #[allow(clippy::type_complexity)]
    fn drain_begin(
        _c: &mut Consumer<Self>,
    ) -> crate::Result<Option<(Option<Self::Guard>, Option<u64>)>> {
        Ok(Some((None, None)))
    }
}

impl ConsumerHooks for LockFree {}

/// The receiving end of a ring. `Send`, not `Sync`.
///
/// Dropping it closes the consumer side: the producer's sends then fail
/// with [`Error::Disconnected`].
pub struct Consumer<V: ConsumerHooks = LockFree> {
    pub(crate) ep: Endpoint,
    /// Our authoritative head (locked: last head seen under the lock, or
    /// past messages released while the lock was busy).
    pub(crate) head: u64,
    /// `head` when we attached: once it moved, a producer was attached.
    attach_head: u64,
    /// Bytes of a message partly returned by `io::Read`.
    pending: Vec<u8>,
    pending_pos: usize,
    /// The variant's own state (the locked ring's; nothing lock-free).
    pub(crate) var: V::ConsumerState,
    _v: PhantomData<(V, Cell<()>)>,
}

// SAFETY: as for `Producer`: the data pointer points into the owned
// `Arc<Segment>`; `Cell<()>` keeps the handle !Sync.
unsafe impl<V: ConsumerHooks> Send for Consumer<V> {}

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

/// A record found by `look`: payload offset and length, and the head after it.
#[derive(Clone, Copy)]
pub struct Found {
    pub(crate) off: u64,
    pub(crate) len: usize,
    pub(crate) next: u64,
}

impl<V: ConsumerHooks> Consumer<V> {
    pub(crate) fn attach(seg: Arc<Segment>) -> Result<Self> {
        let ep = Endpoint::attach(seg, Role::Consumer, V::HEADER_SIGNAL)?;
        let h = ep.h();
        // Acquire: as in `Producer::attach`.
        let head = h.cons.head.load(Ordering::Acquire);
        let tail = h.prod.tail.load(Ordering::Acquire);
        let mut c = Consumer {
            head,
            attach_head: head,
            ep,
            pending: Vec::new(),
            pending_pos: 0,
            var: Default::default(),
            _v: PhantomData,
        };
        V::consumer_attach(&mut c, head, tail)?;
        Ok(c)
    }

    /// A takeover continues from the published head (the message the dead
    /// consumer had not released is delivered again): check it against
    /// the producer's `tail`.
    pub(crate) fn check_attach(&mut self, head: u64, tail: u64) -> Result<()> {
        let r = check_lag(head, tail, self.ep.cap);
        self.ep.note(r)
    }

    shared_accessors!();

    /// Whether no committed record is waiting.
    ///
    /// ```
    /// let (mut tx, mut rx) = shmpipe::Builder::new().capacity(4096).in_process()?.split()?;
    /// assert!(rx.is_empty());
    /// tx.send(b"x")?;
    /// assert!(!rx.is_empty());
    /// # Ok::<(), shmpipe::Error>(())
    /// ```
    pub fn is_empty(&self) -> bool {
        !V::has_record(self)
    }

    /// The producer's state: attached and alive, closed, died, or not
    /// attached yet (see [`crate::Producer::peer_status`]).
    ///
    /// ```
    /// use shmpipe::PeerStatus;
    /// let (tx, rx) = shmpipe::Builder::new().capacity(4096).in_process()?.split()?;
    /// assert_eq!(rx.peer_status()?, PeerStatus::Alive);
    /// drop(tx);
    /// assert_eq!(rx.peer_status()?, PeerStatus::Closed);
    /// # Ok::<(), shmpipe::Error>(())
    /// ```
    ///
    /// # Errors
    /// As [`crate::Producer::peer_status`].
    pub fn peer_status(&self) -> Result<PeerStatus> {
        self.ep.peer_status(self.head != self.attach_head)
    }

    /// Whether the producer is attached and its process alive now.
    ///
    /// ```
    /// let (tx, rx) = shmpipe::Builder::new().capacity(4096).in_process()?.split()?;
    /// assert!(rx.is_peer_alive());
    /// tx.close()?;
    /// assert!(!rx.is_peer_alive());
    /// # Ok::<(), shmpipe::Error>(())
    /// ```
    pub fn is_peer_alive(&self) -> bool {
        matches!(self.peer_status(), Ok(PeerStatus::Alive))
    }

    /// Close the consumer side now: the producer's sends then fail with
    /// [`Error::Disconnected`]. The same as dropping the handle, but errors
    /// are reported instead of ignored.
    ///
    /// ```
    /// let (mut tx, rx) = shmpipe::Builder::new().capacity(4096).in_process()?.split()?;
    /// rx.close()?;
    /// assert!(matches!(tx.send(b"anyone?"), Err(shmpipe::Error::Disconnected)));
    /// # Ok::<(), shmpipe::Error>(())
    /// ```
    ///
    /// # Errors
    /// As [`crate::Producer::close`].
    pub fn close(mut self) -> Result<()> {
        V::finish_release(&mut self);
        self.ep.close_explicit()
    }

    /// What a [`crate::WaitSet`] watches for this consumer (its segment).
    #[cfg(all(target_os = "linux", not(miri)))]
    pub(crate) fn watch(&self) -> super::watch::Watch {
        // The set reads the segment's `head`. In the locked ring a release
        // deferred while the lock was busy is not in it yet: the set may
        // then call the ring readable once for messages already released
        // (the next receive finds it empty: a spurious wake-up, never a
        // missed one), until the next operation publishes the release.
        super::watch::Watch::new(
            self.ep.seg.clone(),
            Role::Consumer,
            V::LOCKED,
            self.ep.wait,
            0,
        )
    }

    /// Decode the non-zero header `word` found at `head`: the message there,
    /// or after the padding record there. `tail` bounds the records when it
    /// is known (the locked ring reads it under the lock).
    #[inline]
    pub(crate) fn parse(&self, mut head: u64, word: u64, tail: Option<u64>) -> Result<Found> {
        let cap = self.ep.cap;
        let mut off = head & self.ep.mask;
        let mut word = word;
        let (mut kind, mut len) = frame::decode(word)?;
        if kind == KIND_PAD {
            if off == 0 || len != cap - off - HDR {
                return Err(Error::corrupted("padding record with a wrong length", word));
            }
            head += cap - off;
            off = 0;
            // Acquire: the producer stores the message header at offset 0
            // before the padding header (Release), which we loaded Acquire;
            // this load is ordered after that one.
            word = self.ep.word(0).load(Ordering::Acquire);
            if word == 0 || tail.is_some_and(|t| head >= t) {
                return Err(Error::corrupted(
                    "padding record not followed by a message",
                    word,
                ));
            }
            (kind, len) = frame::decode(word)?;
            if kind != KIND_MSG {
                return Err(Error::corrupted("padding record followed by padding", word));
            }
        }
        if len > self.ep.max as u64 {
            return Err(Error::corrupted("message length above the maximum", len));
        }
        let rec = frame::record_len(len);
        if off + rec > cap || tail.is_some_and(|t| head + rec > t) {
            return Err(Error::corrupted(
                "message record runs past tail or the data area",
                word,
            ));
        }
        Ok(Found {
            off: off + HDR,
            len: len as usize,
            next: head + rec,
        })
    }

    /// One look for a message: the header word at `head` is the signal.
    #[inline]
    pub(crate) fn look(&mut self) -> Result<Option<Found>> {
        let head = self.head;
        // Acquire: pairs with the producer's Release (SeqCst) store of this
        // header word in `Producer::commit_slot`: the payload and the
        // zeroed next header slot are visible.
        let word = self.ep.word(head & self.ep.mask).load(Ordering::Acquire);
        if word == 0 {
            return Ok(None);
        }
        self.parse(head, word, None).map(Some)
    }

    /// The lock-free fast path's look: the header word at `head` read once
    /// (Acquire: pairs with the producer's Release store of it in
    /// `Producer::commit_slot`, so the payload and the zeroed next slot are
    /// visible) and validated with two comparisons: `word ^ MSG` (the
    /// kind bits flipped off) is the length only if the kind is "message"
    /// and no reserved bit is set — anything else leaves a bit at or above
    /// 2^32 — and it must be at most the maximum message; the record must
    /// end inside the data area. Anything else — nothing yet (a zero word
    /// becomes 2^32), a padding record, a bad header, a broken handle —
    /// takes the full path, which reads the word again and decides.
    #[inline(always)]
    fn fast_look(&self) -> Option<Found> {
        let head = self.head;
        let off = head & self.ep.word_mask;
        // Acquire: pairs with the producer's Release store of this header
        // word (`Endpoint::publish_light` / `publish`), so the payload and
        // the zeroed next header slot are visible.
        // SAFETY: `off` is masked with `word_mask`.
        let word = unsafe { self.ep.word_masked(off) }.load(Ordering::Acquire);
        let len = word ^ (KIND_MSG << 32);
        // Also 0 once the handle is broken, if it must publish with a
        // SeqCst store, or without a header signal (see `Endpoint::fast_lim`).
        if len >= self.ep.fast_lim {
            return None;
        }
        // The record ends inside the data area: `off + HDR + round8(len) <=
        // cap`, which (`cap - HDR - off` being a multiple of 8) is
        // `off + len <= cap - HDR`; `len` is below 2^32 here.
        if off + len > self.ep.last_word {
            return None;
        }
        Some(Found {
            off: off + HDR,
            len: len as usize,
            next: head + frame::record_len(len),
        })
    }

    /// `fast_look` for a message of exactly `len` bytes, `len` a constant
    /// where the caller's type fixes it (`typed::Receiver`): the header word
    /// is compared with the one such a record has, so the record's length,
    /// the next `head` and the copy are constants too (ringfire's shape: a
    /// slot type). Another length, padding, an empty or invalid header, or
    /// a handle that must take the full path (`fast_lim`) give `None`.
    #[inline(always)]
    pub(crate) fn fast_look_exact(&self, len: usize) -> Option<Found> {
        let head = self.head;
        let off = head & self.ep.word_mask;
        // `fast_lim` is at most the largest message, below 2^32, so a `len`
        // that passes encodes exactly (and is 0 when the handle must take
        // the full path, as in `fast_look`).
        if len as u64 >= self.ep.fast_lim {
            return None;
        }
        // Acquire: as in `fast_look`.
        // SAFETY: `off` is masked with `word_mask`.
        let word = unsafe { self.ep.word_masked(off) }.load(Ordering::Acquire);
        if word != frame::encode(KIND_MSG, len as u32) {
            return None;
        }
        // The record ends inside the data area: as in `fast_look`.
        if off + len as u64 > self.ep.last_word {
            return None;
        }
        Some(Found {
            off: off + HDR,
            len,
            next: head + frame::record_len(len as u64),
        })
    }

    /// The non-blocking receives' first step: `fast_look`, else `Empty` if
    /// `quick_empty` says so, else `fast_look` once more (the message that
    /// landed while `quick_empty` checked, which reads the header last).
    /// `Ok(None)`: the full path decides.
    #[inline(always)]
    fn fast_look_or_empty(&self) -> Result<Option<Found>> {
        if let Some(found) = self.fast_look() {
            return Ok(Some(found));
        }
        if self.quick_empty() {
            return Err(Error::Empty);
        }
        Ok(self.fast_look())
    }

    /// The blocking receives' first phase (without a deadline): poll as
    /// the non-blocking calls do (`fast_look_or_empty`), with a spin hint
    /// after each empty poll, up to `inline_polls` times — the strategy's
    /// first spin, done here so that a message landing during it is taken
    /// by the fast path. `Err(spun)`: the full blocking path decides;
    /// `spun` if this found the ring empty (counted in `empty_waits`) and
    /// spun — all of it, or until `quick_empty` could no longer answer
    /// (the liveness verdict aged, the producer's word changed): `block`
    /// then skips its own count and first spin.
    #[inline(always)]
    fn spin_look(&self) -> std::result::Result<Found, bool> {
        if let Some(found) = self.fast_look() {
            return Ok(found);
        }
        let polls = inline_polls(self.ep.wait);
        for i in 0..polls {
            match self.fast_look_or_empty() {
                Ok(Some(found)) => return Ok(found),
                Ok(None) => return Err(i != 0),
                Err(_) => {
                    if i == 0 {
                        self.count_empty();
                    }
                    std::hint::spin_loop();
                }
            }
        }
        Err(polls != 0)
    }

    /// Receive the next message into `dst` if it is waiting now and is
    /// exactly `dst.len()` bytes long (the fast path of
    /// `typed::Receiver`); `false` sends the caller to the full path, which
    /// reports what else is there.
    #[inline(always)]
    pub(crate) fn fast_recv_exact(&mut self, dst: &mut [u8]) -> bool {
        match self.fast_look_exact(dst.len()) {
            Some(found) => {
                self.deliver_copy::<true>(found, dst);
                true
            }
            None => false,
        }
    }

    /// The header word at `head`.
    #[inline(always)]
    pub(crate) fn head_word(&self) -> &crate::sync::AtomicU64 {
        self.ep.word(self.head & self.ep.mask)
    }

    /// Whether a record header is published at `head` (no validation).
    #[inline]
    pub(crate) fn header_published(&self) -> bool {
        // Acquire: as in `look`.
        self.head_word().load(Ordering::Acquire) != 0
    }

    /// Lock-free, ring found empty: cross-check the producer's `tail` word.
    /// It may lag our head by the record just published, but a `tail` past
    /// a header that is still zero means the header or `tail` was forged.
    /// Called once per liveness slice (it reads the producer's line, which a
    /// poll loop must not do per poll).
    pub(crate) fn cross_check_empty(&self) -> Result<()> {
        // Acquire: pairs with the producer's Release store of `tail`, which
        // follows its header store.
        let tail = self.ep.h().prod.tail.load(Ordering::Acquire);
        check_lag(self.head, tail, self.ep.cap)?;
        if tail > self.head && !self.header_published() {
            return Err(Error::corrupted(
                "tail is past a record header that was never published",
                tail,
            ));
        }
        Ok(())
    }

    /// Publish a new head. The consumer keeps no counters of its own:
    /// `stats()` derives what was received from `head` (DESIGN.md §2), so a
    /// message costs this one store to our own line.
    #[inline(always)]
    pub(crate) fn publish_head(&mut self, new_head: u64) {
        self.head = new_head;
        // Pairs with the producer's Acquire load of `head` in `reserve` (and,
        // for the wake-up, its registration in `Endpoint::sleep`).
        self.ep.publish(&self.ep.h().cons.head, new_head, None);
    }

    /// `publish_head` for the fast paths, after `fast_look` found a record
    /// (so `fast_lim` is not 0: this handle publishes light, or never
    /// sleeps).
    #[inline(always)]
    fn publish_head_light(&mut self, new_head: u64) {
        self.head = new_head;
        // As in `publish_head`. The producer's `waiting` word is ours to
        // check (DESIGN.md §3).
        let h = self.ep.h();
        self.ep
            .publish_light(&h.cons.head, new_head, None, &h.wait_producer.waiting);
    }

    /// A message received means a producer was attached: a free producer
    /// role lock from then on means it died (see `Endpoint::peer_gone`).
    /// Derived here, on the slow path, instead of stored per message.
    #[inline]
    fn note_producer_work(&mut self) {
        if self.head != self.attach_head {
            self.ep.peer_seen = true;
        }
    }

    /// Nothing to read: tell whether the producer is gone, after one last
    /// look (a producer publishes its last record before closing or dying).
    fn empty_reason(&mut self, how: Check) -> Result<Idle> {
        self.note_producer_work();
        let Some(g) = self.ep.peer_gone(how)? else {
            return Ok(Idle::Empty);
        };
        // The Acquire load of the producer's state (or the kernel's word on
        // its death) came after its last publication.
        if V::has_record(self) {
            return Ok(Idle::Retry); // it left messages behind: read them first
        }
        Err(match g {
            PeerGone::Closed => Error::Disconnected,
            PeerGone::Died => Error::PeerDied,
        })
    }

    /// One attempt to find a message and hand it to `f` (with the locked
    /// variant's lock held while `f` runs).
    fn attempt<R>(
        &mut self,
        mode: Mode,
        check_peer: bool,
        f: &mut Option<impl FnOnce(&mut Self, Found) -> R>,
    ) -> Result<Step<R>> {
        // Waiting: see `Producer::attempt_reserve`.
        if matches!(mode, Mode::Until(_)) && !check_peer && V::empty_at_a_glance(self) {
            return self.empty_reason(Check::slow(check_peer)).map(Step::Idle);
        }
        let Some(guard) = V::enter(&mut self.ep, mode)? else {
            return Ok(Step::Idle(Idle::Empty)); // busy
        };
        let r = V::look(self);
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
                if check_peer {
                    let r = V::cross_check_empty(self);
                    self.ep.note(r)?;
                }
                self.empty_reason(Check::slow(check_peer)).map(Step::Idle)
            }
        }
    }

    /// Is another attempt worth it: a record published or the producer's
    /// state changed?
    #[inline]
    fn data_ready(&self) -> bool {
        V::data_moved(self)
            || self.ep.h().endpoints.producer.load(Ordering::Relaxed) > STATE_ATTACHED
    }

    fn sleep_for_data(&mut self, until: Instant) {
        let h = self.ep.seg.header();
        // Lock-free: the empty header word at `head`.
        let (signal, seen) = V::data_signal(self);
        self.ep.sleep(until, || {
            // SeqCst: see `Endpoint::sleep`.
            signal.load(Ordering::SeqCst) != seen
                // Closed (or an invalid word, to report it); a producer that
                // never attached yet is waited for (its attach wakes us).
                || h.endpoints.producer.load(Ordering::SeqCst) > STATE_ATTACHED
        });
    }

    fn count_empty(&self) {
        bump(&self.ep.seg.header().cons.empty_waits);
    }

    /// The payload of `found`.
    #[inline]
    fn payload(&self, found: Found) -> &[u8] {
        // SAFETY: parse() checked that the payload lies inside the data
        // area; it is the consumer's region (the producer does not write it
        // until head passes it), and head moves only through this consumer.
        unsafe { std::slice::from_raw_parts(self.ep.data.add(found.off as usize), found.len) }
    }

    /// Lend the message `found` to `f`, then release its space.
    #[inline]
    fn deliver<R>(&mut self, found: Found, f: impl FnOnce(&[u8]) -> R) -> R {
        let out = f(self.payload(found));
        self.publish_head(found.next);
        out
    }

    /// `deliver` for a record found by `fast_look`.
    #[inline(always)]
    pub(crate) fn deliver_fast<R>(&mut self, found: Found, f: impl FnOnce(&[u8]) -> R) -> R {
        let out = f(self.payload(found));
        self.publish_head_light(found.next);
        out
    }

    /// The empty poll's quick answer (lock-free): the handle is healthy and
    /// publishes light (`fast_lim` is not 0; it is 0 in the locked ring
    /// too), the producer's word says ATTACHED, the kernel said it was
    /// alive less than a slice ago, and the header word at `head` is zero —
    /// what the full path (`empty_reason` with `Check::Rated`) would
    /// conclude, without its `Result` plumbing. One atomic load and a
    /// coarse clock read beyond the header's: 61 instructions per empty
    /// `try_recv_into`, against ringfire's 27 at 8 B and 63 at 64 B
    /// (`examples/instr_poll`).
    ///
    /// The header is read last (again: passing `fast_look`'s word out cost
    /// the message path more than the second load costs this one), so a
    /// poll samples the signal at its start and just before it answers
    /// `Empty`, not twice at its start: a busy receiver's loop (poll, spin
    /// hint, poll) then leaves a shorter stretch in which a message lands
    /// unnoticed. A `false` because the word is no longer zero sends the
    /// caller to look again (`fast_look`), not to the full path.
    #[inline(always)]
    pub(crate) fn quick_empty(&self) -> bool {
        self.ep.fast_lim != 0
            // Acquire: pairs with the producer's SeqCst store of its state.
            && self.ep.h().endpoints.producer.load(Ordering::Acquire) == STATE_ATTACHED
            && self.ep.alive_verdict_fresh()
            // Acquire: as in `fast_look`.
            && self.head_word().load(Ordering::Acquire) == 0
    }

    /// One non-blocking receive: hand the next message's position to `f`.
    fn try_found<R>(&mut self, f: impl FnOnce(&mut Self, Found) -> R) -> Result<R> {
        if self.quick_empty() {
            return Err(Error::Empty);
        }
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
    #[inline]
    fn found_deadline<R>(
        &mut self,
        deadline: Option<Instant>,
        spun: bool,
        f: impl FnOnce(&mut Self, Found) -> R,
    ) -> Result<R> {
        self.ep.check_broken()?;
        if V::HEADER_SIGNAL {
            // Fast path: a message is waiting. No clock read, no syscall.
            let r = self.look();
            if let Some(found) = self.ep.note(r)? {
                return Ok(f(self, found));
            }
        }
        let mut f = Some(f);
        let wait = self.ep.wait;
        // Empty, and what the full attempt would conclude is already known
        // (`quick_empty`): `block`'s first attempt would only repeat it.
        let mut known_empty = self.quick_empty();
        block(
            self,
            deadline,
            wait,
            spun,
            |c, check| {
                if !check {
                    if std::mem::take(&mut known_empty) {
                        return Ok(None);
                    }
                    // After a wait that saw the producer move: a healthy
                    // lock-free handle takes a valid message as the
                    // non-blocking calls do (`fast_look`), without the full
                    // attempt's steps (`f` publishes `head`).
                    if let Some(found) = c.fast_look() {
                        if let Some(f) = f.take() {
                            return Ok(Some(f(c, found)));
                        }
                    }
                }
                match c.attempt(Mode::Until(deadline), check, &mut f)? {
                    Step::Got(r) => Ok(Some(r)),
                    Step::Idle(_) => Ok(None),
                }
            },
            |c, until| c.sleep_for_data(until),
            |c| c.data_ready(),
            // Counted by `spin_look` if it spun.
            |c| {
                if !spun {
                    c.count_empty();
                }
            },
        )
    }

    /// Hand the next message, if any, to `f` as a borrowed slice, and
    /// release its space afterwards.
    ///
    /// ```
    /// let (mut tx, mut rx) = shmpipe::Builder::new().in_process()?.split()?;
    /// assert!(matches!(rx.try_recv_with(|m| m.len()), Err(shmpipe::Error::Empty)));
    /// tx.send(b"in place")?;
    /// let n = rx.try_recv_with(|m| m.iter().filter(|&&b| b == b' ').count())?;
    /// assert_eq!(n, 1);
    /// # Ok::<(), shmpipe::Error>(())
    /// ```
    ///
    /// # Errors
    /// `Empty` if no message is waiting; `Disconnected`/`PeerDied` once the
    /// producer is gone and every committed message was received; `Corrupted`.
    #[inline(always)]
    pub fn try_recv_with<R>(&mut self, f: impl FnOnce(&[u8]) -> R) -> Result<R> {
        if let Some(found) = self.fast_look_or_empty()? {
            return Ok(self.deliver_fast(found, f));
        }
        self.try_found(move |c, found| c.deliver(found, f))
    }

    /// Like [`Self::try_recv_with`], waiting for a message per the wait
    /// strategy. The slice borrows the ring: nothing is copied. In the
    /// locked variant the lock is held while `f` runs.
    ///
    /// ```
    /// let (mut tx, mut rx) = shmpipe::Builder::new().in_process()?.split()?;
    /// tx.send(b"hello")?;
    /// let len = rx.recv_with(|msg| msg.len())?;
    /// assert_eq!(len, 5);
    /// # Ok::<(), shmpipe::Error>(())
    /// ```
    ///
    /// # Errors
    /// As [`Self::try_recv_with`], without `Empty`.
    #[inline(always)]
    pub fn recv_with<R>(&mut self, f: impl FnOnce(&[u8]) -> R) -> Result<R> {
        let spun = match self.spin_look() {
            Ok(found) => return Ok(self.deliver_fast(found, f)),
            Err(spun) => spun,
        };
        self.found_deadline(None, spun, move |c, found| c.deliver(found, f))
    }

    /// Like [`Self::recv_with`], waiting at most `timeout`.
    ///
    /// ```
    /// use std::time::Duration;
    /// let (mut tx, mut rx) = shmpipe::Builder::new().capacity(4096).in_process()?.split()?;
    /// let t = Duration::from_millis(10);
    /// assert!(matches!(rx.recv_with_timeout(t, |m| m.len()), Err(shmpipe::Error::Timeout)));
    /// tx.send(b"late")?;
    /// assert_eq!(rx.recv_with_timeout(t, |m| m.len())?, 4);
    /// # Ok::<(), shmpipe::Error>(())
    /// ```
    ///
    /// # Errors
    /// As [`Self::recv_with`], plus `Timeout`.
    pub fn recv_with_timeout<R>(
        &mut self,
        timeout: Duration,
        f: impl FnOnce(&[u8]) -> R,
    ) -> Result<R> {
        self.found_deadline(deadline_after(timeout), false, move |c, found| {
            c.deliver(found, f)
        })
    }

    /// Copy the next message into `buf` (replacing its contents), if any.
    /// Returns the message length.
    ///
    /// ```
    /// let (mut tx, mut rx) = shmpipe::Builder::new().capacity(4096).in_process()?.split()?;
    /// let mut buf = Vec::new();
    /// assert!(matches!(rx.try_recv(&mut buf), Err(shmpipe::Error::Empty)));
    /// tx.send(b"now")?;
    /// assert_eq!(rx.try_recv(&mut buf)?, 3);
    /// assert_eq!(buf, b"now");
    /// # Ok::<(), shmpipe::Error>(())
    /// ```
    ///
    /// # Errors
    /// As [`Self::try_recv_with`].
    pub fn try_recv(&mut self, buf: &mut Vec<u8>) -> Result<usize> {
        self.try_recv_with(|m| copy_to(buf, m))
    }

    /// Copy the next message into `buf` (replacing its contents, reusing its
    /// allocation), waiting per the wait strategy. Returns its length.
    ///
    /// ```
    /// let (mut tx, mut rx) = shmpipe::Builder::new().in_process()?.split()?;
    /// tx.send(b"one")?;
    /// tx.send(b"two")?;
    /// let mut buf = Vec::new();
    /// assert_eq!(rx.recv(&mut buf)?, 3);
    /// assert_eq!(buf, b"one");
    /// rx.recv(&mut buf)?;
    /// assert_eq!(buf, b"two");
    /// # Ok::<(), shmpipe::Error>(())
    /// ```
    ///
    /// # Errors
    /// As [`Self::recv_with`].
    pub fn recv(&mut self, buf: &mut Vec<u8>) -> Result<usize> {
        self.recv_with(|m| copy_to(buf, m))
    }

    /// Copy the next message into `buf`, waiting at most `timeout`.
    ///
    /// ```
    /// use std::time::Duration;
    /// let (mut tx, mut rx) = shmpipe::Builder::new().capacity(4096).in_process()?.split()?;
    /// let mut buf = Vec::new();
    /// let t = Duration::from_millis(10);
    /// assert!(matches!(rx.recv_timeout(&mut buf, t), Err(shmpipe::Error::Timeout)));
    /// tx.send(b"here")?;
    /// rx.recv_timeout(&mut buf, t)?;
    /// assert_eq!(buf, b"here");
    /// # Ok::<(), shmpipe::Error>(())
    /// ```
    ///
    /// # Errors
    /// As [`Self::recv_with_timeout`].
    pub fn recv_timeout(&mut self, buf: &mut Vec<u8>, timeout: Duration) -> Result<usize> {
        self.recv_with_timeout(timeout, |m| copy_to(buf, m))
    }

    /// Copy the next message, if any, into the start of `buf` and return its
    /// length. For callers with a fixed buffer.
    ///
    /// ```
    /// let (mut tx, mut rx) = shmpipe::Builder::new().in_process()?.split()?;
    /// tx.send(b"twelve bytes")?;
    /// let mut small = [0u8; 4];
    /// let err = rx.try_recv_into(&mut small).unwrap_err();
    /// assert!(matches!(err, shmpipe::Error::BufferTooSmall { len: 12, buf_len: 4 }));
    /// let mut buf = [0u8; 64];
    /// let n = rx.try_recv_into(&mut buf)?; // the message was kept
    /// assert_eq!(&buf[..n], b"twelve bytes");
    /// # Ok::<(), shmpipe::Error>(())
    /// ```
    ///
    /// # Errors
    /// `BufferTooSmall { len, buf_len }` if the message is longer than
    /// `buf` (the message stays in the ring); otherwise as
    /// [`Self::try_recv_with`].
    #[inline(always)]
    pub fn try_recv_into(&mut self, buf: &mut [u8]) -> Result<usize> {
        // `fast_look_or_empty` written out: its `Result` cost the message
        // path 8 instructions here (`fixed` in `examples/instr.sh`).
        let found = match self.fast_look() {
            Some(found) => found,
            None if self.quick_empty() => return Err(Error::Empty),
            None => match self.fast_look() {
                Some(found) => found,
                None => return self.try_recv_into_slow(buf),
            },
        };
        if found.len <= buf.len() {
            return Ok(self.deliver_copy::<true>(found, buf));
        }
        self.try_recv_into_slow(buf)
    }

    #[cold]
    #[inline(never)]
    fn try_recv_into_slow(&mut self, buf: &mut [u8]) -> Result<usize> {
        self.try_found(|c, found| c.deliver_into(found, buf))?
    }

    /// Like [`Self::try_recv_into`], waiting for a message per the wait strategy.
    ///
    /// ```
    /// let (mut tx, mut rx) = shmpipe::Builder::new().capacity(4096).in_process()?.split()?;
    /// tx.send(&7u32.to_le_bytes())?;
    /// let mut buf = [0u8; 4];
    /// let n = rx.recv_into(&mut buf)?; // no allocation
    /// assert_eq!((n, u32::from_le_bytes(buf)), (4, 7));
    /// # Ok::<(), shmpipe::Error>(())
    /// ```
    ///
    /// # Errors
    /// As [`Self::try_recv_into`], without `Empty`.
    #[inline(always)]
    pub fn recv_into(&mut self, buf: &mut [u8]) -> Result<usize> {
        let spun = match self.spin_look() {
            Ok(found) if found.len <= buf.len() => {
                return Ok(self.deliver_copy::<true>(found, buf));
            }
            Ok(_) => false,
            Err(spun) => spun,
        };
        self.recv_into_slow(buf, spun)
    }

    #[cold]
    #[inline(never)]
    fn recv_into_slow(&mut self, buf: &mut [u8], spun: bool) -> Result<usize> {
        self.found_deadline(None, spun, |c, found| c.deliver_into(found, buf))?
    }

    /// Like [`Self::recv_into`], waiting at most `timeout`.
    ///
    /// ```
    /// use std::time::Duration;
    /// let (_tx, mut rx) = shmpipe::Builder::new().capacity(4096).in_process()?.split()?;
    /// let mut buf = [0u8; 64];
    /// let r = rx.recv_into_timeout(&mut buf, Duration::from_millis(10));
    /// assert!(matches!(r, Err(shmpipe::Error::Timeout)));
    /// # Ok::<(), shmpipe::Error>(())
    /// ```
    ///
    /// # Errors
    /// As [`Self::recv_into`], plus `Timeout`.
    pub fn recv_into_timeout(&mut self, buf: &mut [u8], timeout: Duration) -> Result<usize> {
        self.found_deadline(deadline_after(timeout), false, |c, found| {
            c.deliver_into(found, buf)
        })?
    }

    /// Copy `found` into `buf` and release it, or leave it if `buf` is short.
    fn deliver_into(&mut self, found: Found, buf: &mut [u8]) -> Result<usize> {
        if found.len > buf.len() {
            return Err(Error::BufferTooSmall {
                len: found.len,
                buf_len: buf.len(),
            });
        }
        Ok(self.deliver_copy::<false>(found, buf))
    }

    /// Copy `found` into the start of `buf` (at least as long; checked by
    /// the caller) and release it (`FAST`: found by `fast_look`, so the
    /// light publication applies).
    #[inline(always)]
    fn deliver_copy<const FAST: bool>(&mut self, found: Found, buf: &mut [u8]) -> usize {
        debug_assert!(found.len <= buf.len());
        let len = found.len.min(buf.len());
        // SAFETY: `parse`/`fast_look` checked that the payload lies inside
        // the data area, in the consumer's region (see `payload`); `buf` is
        // the caller's exclusive buffer of at least `len` bytes and cannot
        // overlap the ring's occupied region.
        unsafe { super::copy::copy(self.ep.data.add(found.off as usize), buf.as_mut_ptr(), len) };
        if FAST {
            self.publish_head_light(found.next);
        } else {
            self.publish_head(found.next);
        }
        len
    }

    /// Look at the next message without releasing it, if one is waiting:
    /// the first half of a two-phase receive. Read it through the returned
    /// [`Message`], then call [`Message::release`] to free its space.
    /// Dropping the `Message` without releasing keeps the message in the
    /// ring: the next `peek` or receive returns it again, and if this
    /// process dies before releasing, a consumer that takes over the role
    /// receives it. The locked variant does not hold its lock while the
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
        let found = match self.fast_look() {
            Some(found) => found,
            None => self.try_found(|_, found| found)?,
        };
        Ok(Message { c: self, found })
    }

    /// Like [`Self::try_peek`], waiting for a message per the wait strategy.
    ///
    /// ```
    /// let (mut tx, mut rx) = shmpipe::Builder::new().capacity(4096).in_process()?.split()?;
    /// tx.send(b"task")?;
    /// let msg = rx.peek()?;
    /// assert_eq!(&*msg, b"task"); // e.g. process it, then free its space:
    /// msg.release();
    /// assert!(rx.is_empty());
    /// # Ok::<(), shmpipe::Error>(())
    /// ```
    ///
    /// # Errors
    /// As [`Self::recv_with`].
    pub fn peek(&mut self) -> Result<Message<'_, V>> {
        let found = match self.spin_look() {
            Ok(found) => found,
            Err(spun) => self.found_deadline(None, spun, |_, found| found)?,
        };
        Ok(Message { c: self, found })
    }

    /// Like [`Self::peek`], waiting at most `timeout`.
    ///
    /// ```
    /// use std::time::Duration;
    /// let (mut tx, mut rx) = shmpipe::Builder::new().capacity(4096).in_process()?.split()?;
    /// let t = Duration::from_millis(10);
    /// assert!(matches!(rx.peek_timeout(t), Err(shmpipe::Error::Timeout)));
    /// tx.send(b"x")?;
    /// rx.peek_timeout(t)?.release();
    /// # Ok::<(), shmpipe::Error>(())
    /// ```
    ///
    /// # Errors
    /// As [`Self::recv_with_timeout`].
    pub fn peek_timeout(&mut self, timeout: Duration) -> Result<Message<'_, V>> {
        let found = self.found_deadline(deadline_after(timeout), false, |_, found| found)?;
        Ok(Message { c: self, found })
    }

    /// Hand up to `max` waiting messages to `f`, in order, and release their
    /// space together: once for the batch, or (lock-free) each time a
    /// sixteenth of the ring has been read, so a producer waiting for room
    /// refills while a long batch is read. Does not wait. Returns how many
    /// were handed over; `Ok(0)` means none was waiting.
    ///
    /// If this process dies inside `drain`, the messages handed over since
    /// the last release (at most a sixteenth of the ring, lock-free) are
    /// delivered again to the consumer that takes over the role.
    ///
    /// ```
    /// let (mut tx, mut rx) = shmpipe::Builder::new().in_process()?.split()?;
    /// for i in 0..10u8 {
    ///     tx.send(&[i])?;
    /// }
    /// let mut sum = 0u32;
    /// let n = rx.drain(usize::MAX, |m| sum += m[0] as u32)?;
    /// assert_eq!((n, sum), (10, 45));
    /// assert_eq!(rx.drain(64, |_| {})?, 0); // nothing left
    /// # Ok::<(), shmpipe::Error>(())
    /// ```
    ///
    /// # Errors
    /// `Disconnected`/`PeerDied` when nothing is left and the producer is
    /// gone; `Corrupted` (messages before the bad record are still handed
    /// over and released first).
    pub fn drain(&mut self, max: usize, mut f: impl FnMut(&[u8])) -> Result<usize> {
        // A busy poll of an empty ring: answered before the batch set-up.
        if self.quick_empty() {
            return Ok(0);
        }
        self.ep.check_broken()?;
        if max == 0 {
            return Ok(0);
        }
        // `tail`: where the indices bound the batch (the locked ring);
        // lock-free, the headers do.
        let Some((guard, tail)) = V::drain_begin(self)? else {
            return Ok(0); // busy
        };
        let mut n = 0;
        let mut head = self.head;
        let mut err = None;
        // Lock-free: publish `head` each time a sixteenth of the ring was
        // read, so a producer waiting for room refills during a long batch.
        let part = self.ep.cap / DRAIN_PUBLISH_PARTS;
        let mut publish_at = if tail.is_some() {
            u64::MAX
        } else {
            head + part
        };
        // The loop's constants in locals: the closure call between two
        // records leaves too few registers to keep them in, and a reload
        // from a local is one instruction where a field behind `self` took
        // two (`examples/instr.sh`).
        let (word_mask, max_len, cap) = (self.ep.word_mask, self.ep.max as u64, self.ep.cap);
        while n < max {
            if tail == Some(head) {
                break;
            }
            // 8-aligned: `head` only ever moves by whole records.
            let off = head & word_mask;
            // Acquire (lock-free): as in `fast_look`. Locked: ordered by the lock.
            // SAFETY: `off` is masked with `word_mask`.
            let word = unsafe { self.ep.word_masked(off) }.load(Ordering::Acquire);
            // Lock-free messages: the two-comparison check of `fast_look`.
            let len = word ^ (KIND_MSG << 32);
            let found = if tail.is_none() && len <= max_len && off + frame::record_len(len) <= cap {
                Found {
                    off: off + HDR,
                    len: len as usize,
                    next: head + frame::record_len(len),
                }
            } else if word == 0 {
                if tail.is_some() {
                    err = Some(Error::corrupted("no record header below tail", head));
                }
                break;
            } else {
                // Padding, the locked ring, or a bad header: the full check.
                match self.parse(head, word, tail) {
                    Ok(found) => found,
                    Err(e) => {
                        err = Some(e);
                        break;
                    }
                }
            };
            f(self.payload(found));
            head = found.next;
            n += 1;
            if head >= publish_at {
                self.publish_head(head);
                publish_at = head + part;
            }
        }
        if head != self.head {
            self.publish_head(head);
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

fn copy_to(buf: &mut Vec<u8>, m: &[u8]) -> usize {
    buf.clear();
    buf.extend_from_slice(m);
    m.len()
}

/// A message lent by [`Consumer::peek`]: derefs to its bytes. Call
/// [`Message::release`] to free its space; dropping it without releasing
/// keeps the message in the ring (it is returned again).
#[must_use = "a peeked message stays in the ring until it is released"]
pub struct Message<'a, V: ConsumerHooks = LockFree> {
    c: &'a mut Consumer<V>,
    found: Found,
}

impl<V: ConsumerHooks> Message<'_, V> {
    /// Free the message's space: the producer may reuse it.
    ///
    /// ```
    /// let (mut tx, mut rx) = shmpipe::Builder::new().capacity(4096).in_process()?.split()?;
    /// tx.send(b"a")?;
    /// let msg = rx.try_peek()?;
    /// assert_eq!(&*msg, b"a");
    /// msg.release(); // the producer may now reuse its space
    /// assert!(matches!(rx.try_peek(), Err(shmpipe::Error::Empty)));
    /// # Ok::<(), shmpipe::Error>(())
    /// ```
    pub fn release(self) {
        let found = self.found;
        V::release(self.c, found);
    }
}

impl<V: ConsumerHooks> std::ops::Deref for Message<'_, V> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        self.c.payload(self.found)
    }
}

impl<V: ConsumerHooks> std::fmt::Debug for Message<'_, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Message")
            .field("len", &self.found.len)
            .finish()
    }
}

impl<V: ConsumerHooks> Drop for Consumer<V> {
    fn drop(&mut self) {
        V::finish_release(self);
        self.ep.close();
    }
}

impl<V: ConsumerHooks> std::fmt::Debug for Consumer<V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Consumer")
            .field("variant", &V::NAME)
            .field("capacity", &self.ep.cap)
            .field("wait", &self.ep.wait)
            .field("head", &self.head)
            .finish()
    }
}

impl<V: ConsumerHooks> std::io::Read for Consumer<V> {
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
