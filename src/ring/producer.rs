//! The sending end: reserving room, writing records, publishing them
//! (format v2: zero ahead, then the header word as the signal), claims, and
//! the takeover of a dead producer's role.

use std::cell::Cell;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::block::{block, deadline_after, Mode};
use super::copy::{prefetch_for_write, PREFETCH_AHEAD};
use super::counts;
use super::endpoint::{Check, Endpoint, PeerGone};
use super::protocol::{shared_accessors, LockFree, Protocol};
use super::stats::{bump, PeerStatus};
use crate::error::{Error, Result};
use crate::frame::{self, check_lag, check_span, HDR, KIND_MSG, KIND_PAD};
use crate::layout::{STATE_ATTACHED, STATE_CLOSED};
use crate::segment::{Role, Segment};
use crate::sync::Ordering;

/// Spin-loop hints between two loads of `head` while waiting for room.
#[cfg(not(loom))]
const FULL_POLL_PAUSES: u32 = 16;

/// Where a reserved record goes.
#[derive(Debug, Clone, Copy)]
pub struct Slot {
    /// Tail before the reservation.
    pub(crate) start: u64,
    /// Bytes of padding before the record (0 if none).
    pub(crate) pad: u64,
    /// Offset of the record header in the data area.
    pub(crate) off: u64,
}

/// The producer's hooks of a ring design (see [`super::Variant`]): each
/// default is the lock-free step; `src/locked.rs` overrides them for
/// `Locked`.
pub trait ProducerHooks: Protocol {
    /// At attach: the end of the committed records, and where the count of
    /// the records committed after the last checkpoint stops.
    #[doc(hidden)]
    fn producer_attach(p: &mut Producer<Self>, head: u64, tail: u64) -> crate::Result<(u64, u64)> {
        p.attach_end(head, tail)
    }
    /// Reserve room for a record of `len` payload bytes (inside `enter`).
    #[doc(hidden)]
    #[inline(always)]
    fn reserve(p: &mut Producer<Self>, len: usize) -> crate::Result<Option<Slot>> {
        p.reserve(len)
    }
    /// A waiting producer's look without entering: `true` if it can tell
    /// there is no room for `len` bytes.
    #[doc(hidden)]
    #[inline(always)]
    fn full_at_a_glance(_p: &mut Producer<Self>, _len: usize) -> bool {
        false
    }
    /// Publish a written record: the signal `(offset, word)`, the tail.
    #[doc(hidden)]
    #[inline(always)]
    fn publish(p: &mut Producer<Self>, signal: (u64, u64)) {
        p.publish_signal(signal)
    }
    /// `Producer::send_batch`.
    #[doc(hidden)]
    fn send_batch<M: AsRef<[u8]>>(p: &mut Producer<Self>, msgs: &[M]) -> crate::Result<()> {
        p.send_run(msgs)
    }
    /// `Producer::try_send_batch` (with `msgs` not empty).
    #[doc(hidden)]
    fn try_send_batch<M: AsRef<[u8]>>(p: &mut Producer<Self>, msgs: &[M]) -> crate::Result<usize> {
        p.try_send_run(msgs)
    }
}

impl ProducerHooks for LockFree {}

/// The sending end of a ring. `Send`, not `Sync`: one thread at a time.
///
/// Dropping it closes the producer side: the consumer drains what was
/// committed, then gets [`Error::Disconnected`].
pub struct Producer<V: ProducerHooks = LockFree> {
    pub(crate) ep: Endpoint,
    /// Our authoritative tail (locked: the last tail seen under the lock).
    pub(crate) tail: u64,
    /// Last `head` we loaded.
    pub(crate) head_cache: u64,
    /// Where the fast path's records must end: the end of
    /// `tail`'s lap (no wrap) or `head_cache + cap - HDR` (room, with the
    /// header slot zeroed ahead), whichever is lower. Recomputed by the
    /// full paths when `tail` or `head_cache` moves; it can only be stale
    /// low (both grow), which sends a send to the full path.
    fast_end: u64,
    /// Messages and payload bytes committed (counted here, published as
    /// checkpoints: see `ring::counts`).
    msgs: u64,
    bytes: u64,
    /// Number of the last checkpoint we stored (our own count of flips).
    counts_seq: u64,
    _v: PhantomData<(V, Cell<()>)>,
}

// SAFETY: the raw data pointer points into the `Arc<Segment>` the handle
// owns; nothing is tied to the creating thread. `Cell<()>` keeps it !Sync.
unsafe impl<V: ProducerHooks> Send for Producer<V> {}

impl<V: ProducerHooks> Producer<V> {
    pub(crate) fn attach(seg: Arc<Segment>) -> Result<Self> {
        let ep = Endpoint::attach(seg, Role::Producer, V::HEADER_SIGNAL)?;
        let h = ep.h();
        // Acquire: pair with the peers' Release stores of the indices (a
        // takeover continues from the committed positions and their bytes).
        let head = h.cons.head.load(Ordering::Acquire);
        let tail = h.prod.tail.load(Ordering::Acquire);
        let (counts_seq, c) = counts::load(h);
        let mut p = Producer {
            tail,
            head_cache: head,
            fast_end: 0,
            msgs: c.messages,
            bytes: c.bytes,
            counts_seq,
            ep,
            _v: PhantomData,
        };
        let (end, stop) = V::producer_attach(&mut p, head, tail)?;
        // Count what earlier producers committed after their last
        // checkpoint (all of it if they closed: they checkpoint then).
        // A checkpoint that does not lead to the end of the records was
        // forged; counters are informational, so it is taken as it is.
        if let Ok(w) = counts::walk(&p.ep.seg, c.at.min(head), c.at, head, stop) {
            if w.end == end {
                p.msgs = p.msgs.wrapping_add(w.messages);
                p.bytes = p.bytes.wrapping_add(w.bytes);
            }
        }
        p.checkpoint();
        p.refresh_fast_end();
        Ok(p)
    }

    /// A takeover continues after the last committed record (the `tail`
    /// word may lag it): returns that end and, for the count of records
    /// since the last checkpoint, no stop before it.
    pub(crate) fn attach_end(&mut self, head: u64, tail: u64) -> Result<(u64, u64)> {
        let r = self.committed_end(head, tail);
        let end = self.ep.note(r)?;
        if end != tail {
            // Release: pairs with Acquire loads of `tail` (checks, takeover).
            self.ep.h().prod.tail.store(end, Ordering::Release);
        }
        self.tail = end;
        Ok((end, u64::MAX))
    }

    /// Recompute `fast_end` from `tail` and `head_cache` (not at all
    /// without a header signal: no fast path reads it then). Saturating:
    /// the positions were validated (below 2^62), but this must not be
    /// where a forged one overflows.
    #[inline]
    pub(crate) fn refresh_fast_end(&mut self) {
        if !V::HEADER_SIGNAL {
            return; // no fast path reads it (compile-time constant)
        }
        let lap_end = (self.tail & !self.ep.mask).saturating_add(self.ep.cap);
        self.fast_end = lap_end.min(self.head_cache.saturating_add(self.ep.cap - HDR));
    }

    /// Publish our counters as a checkpoint at `tail`. Called whenever we
    /// reload `head` (the argument of `ring::counts` needs that), at attach
    /// and at close: never per message in the lock-free ring.
    #[inline(never)]
    pub(crate) fn checkpoint(&mut self) {
        let c = counts::Checkpoint {
            at: self.tail,
            messages: self.msgs,
            bytes: self.bytes,
        };
        self.counts_seq = counts::store(self.ep.h(), self.counts_seq, c);
    }

    /// The true end of the committed records, for a producer taking over
    /// the role: the `tail` word can lag the last published header (the
    /// previous producer died between its header and index stores, and the
    /// consumer may even have read past `tail`). Scan forward over valid
    /// headers from the furthest known record boundary; the zero-ahead rule
    /// guarantees a zero word after the last one. Bounded by the capacity.
    fn committed_end(&self, head: u64, tail: u64) -> Result<u64> {
        check_lag(head, tail, self.ep.cap)?;
        let w = counts::walk(&self.ep.seg, head.max(tail), u64::MAX, head, u64::MAX)?;
        Ok(w.end)
    }

    shared_accessors!();

    /// Whether every committed record has been read.
    ///
    /// ```
    /// let (mut tx, mut rx) = shmpipe::Builder::new().capacity(4096).in_process()?.split()?;
    /// tx.send(b"x")?;
    /// assert!(!tx.is_empty());
    /// rx.try_recv_with(|_| ())?;
    /// assert!(tx.is_empty()); // the consumer read everything
    /// # Ok::<(), shmpipe::Error>(())
    /// ```
    pub fn is_empty(&self) -> bool {
        self.len_bytes() == 0
    }

    /// The consumer's state: attached and alive, closed, died, or not
    /// attached yet. Asks the kernel whether its role lock is held (one
    /// `fcntl`), so it is exact even when the consumer was killed.
    ///
    /// ```
    /// use shmpipe::PeerStatus;
    /// let (tx, rx) = shmpipe::Builder::new().capacity(4096).in_process()?.split()?;
    /// assert_eq!(tx.peer_status()?, PeerStatus::Alive);
    /// rx.close()?;
    /// assert_eq!(tx.peer_status()?, PeerStatus::Closed);
    /// # Ok::<(), shmpipe::Error>(())
    /// ```
    ///
    /// # Errors
    /// `Corrupted` if the consumer's state word holds an invalid value; `Io`
    /// in a forked child that inherited this handle.
    pub fn peer_status(&self) -> Result<PeerStatus> {
        self.ep.peer_status(false)
    }

    /// Whether the consumer is attached and its process alive now.
    ///
    /// ```
    /// let (tx, rx) = shmpipe::Builder::new().capacity(4096).in_process()?.split()?;
    /// assert!(tx.is_peer_alive());
    /// drop(rx); // closes the consumer side
    /// assert!(!tx.is_peer_alive());
    /// # Ok::<(), shmpipe::Error>(())
    /// ```
    pub fn is_peer_alive(&self) -> bool {
        matches!(self.ep.peer_status(false), Ok(PeerStatus::Alive))
    }

    /// Close the producer side now: the consumer receives every committed
    /// message, then [`Error::Disconnected`]. The same as dropping the
    /// handle, but errors are reported instead of ignored.
    ///
    /// ```
    /// let (mut tx, mut rx) = shmpipe::Builder::new().capacity(4096).in_process()?.split()?;
    /// tx.send(b"last")?;
    /// tx.close()?;
    /// let mut buf = Vec::new();
    /// rx.recv(&mut buf)?; // what was committed is still delivered
    /// assert!(matches!(rx.recv(&mut buf), Err(shmpipe::Error::Disconnected)));
    /// # Ok::<(), shmpipe::Error>(())
    /// ```
    ///
    /// # Errors
    /// `Io` if this handle was inherited across `fork()` (only the process
    /// that attached can close the role), or if removing the name of a
    /// segment this handle created (`unlink_on_drop`) failed.
    pub fn close(mut self) -> Result<()> {
        if self.ep.attached_here() {
            self.checkpoint();
        }
        self.ep.close_explicit()
    }

    /// What a [`crate::WaitSet`] watches for this producer (its segment):
    /// ready when a message of `room_for` bytes fits.
    #[cfg(all(target_os = "linux", not(any(loom, miri))))]
    pub(crate) fn watch(&self, room_for: usize) -> Result<super::watch::Watch> {
        self.check_len(room_for)?;
        Ok(super::watch::Watch::new(
            self.ep.seg.clone(),
            Role::Producer,
            V::LOCKED,
            self.ep.wait,
            room_for as u64,
        ))
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

    /// Padding and bytes needed at `tail` for a record of `len` payload
    /// bytes, including the header slot zeroed ahead of it.
    #[inline]
    pub(crate) fn need(&self, tail: u64, len: usize) -> (u64, u64) {
        let rec = frame::record_len(len as u64);
        let off = tail & self.ep.mask;
        let contiguous = self.ep.cap - off;
        let pad = if contiguous >= rec { 0 } else { contiguous };
        (pad, pad + rec + HDR)
    }

    /// Reserve room for a record of `len` payload bytes. `Ok(None)` if full.
    #[inline]
    pub(crate) fn reserve(&mut self, len: usize) -> Result<Option<Slot>> {
        let tail = self.tail;
        let (_, need) = self.need(tail, len);
        if tail + need - self.head_cache > self.ep.cap {
            // Acquire: pairs with the consumer's Release (SeqCst) store of
            // `head` in `Consumer::publish_head`, so its reads of the slots
            // we are about to reuse happened before our writes.
            let head = self.ep.h().cons.head.load(Ordering::Acquire);
            check_span(head, tail, self.ep.cap)?;
            if head != self.head_cache {
                self.ep.peer_seen = true; // a consumer made room
                self.head_cache = head;
                // Before any write that the new `head` allows (see
                // `ring::counts`); an unchanged `head` allows nothing new.
                self.checkpoint();
                self.refresh_fast_end();
            }
            if tail + need - head > self.ep.cap {
                return Ok(None);
            }
        }
        Ok(Some(self.slot_at_tail(len)))
    }

    /// The slot of a `len`-byte record at `tail` (room checked).
    #[inline]
    pub(crate) fn slot_at_tail(&self, len: usize) -> Slot {
        let tail = self.tail;
        let (pad, _) = self.need(tail, len);
        Slot {
            start: tail,
            pad,
            off: if pad == 0 { tail & self.ep.mask } else { 0 },
        }
    }

    /// Publish the record reserved as `slot` with `len` payload bytes:
    /// zero the header slot that follows it, then store its header word
    /// (the signal), and for a wrap the padding record's header after the
    /// message's.
    #[inline(always)]
    fn commit_slot(&mut self, slot: Slot, len: usize) {
        let signal = self.write_slot(slot, len);
        V::publish(self, signal);
        self.refresh_fast_end();
    }

    /// Everything of a commit but the signal: zero ahead, the message header
    /// at offset 0 for a wrap, our tail and counters. Returns where the
    /// signal goes and its value.
    #[inline(always)]
    pub(crate) fn write_slot(&mut self, slot: Slot, len: usize) -> (u64, u64) {
        let rec = frame::record_len(len as u64);
        let msg_word = frame::encode(KIND_MSG, len as u32);
        // Zero ahead: the consumer, having read this record, looks at the
        // next slot; it must not find the previous lap's word there. Relaxed:
        // ordered before the header by the header's Release store.
        self.ep
            .word((slot.off + rec) & self.ep.mask)
            .store(0, Ordering::Relaxed);
        let signal = if slot.pad == 0 {
            (slot.off, msg_word)
        } else {
            // Wrap: the message sits at offset 0 and the padding record at
            // the old tail is the signal. Relaxed: the consumer reads offset
            // 0 only after the padding header's Release store.
            self.ep.word(0).store(msg_word, Ordering::Relaxed);
            (
                slot.start & self.ep.mask,
                frame::encode(KIND_PAD, (slot.pad - HDR) as u32),
            )
        };
        self.tail = slot.start + slot.pad + rec;
        self.msgs = self.msgs.wrapping_add(1);
        self.bytes = self.bytes.wrapping_add(len as u64);
        self.prefetch_ahead(slot.start, self.tail);
        signal
    }

    /// A record from `from` to `tail` was just written: if it entered a new
    /// line, ask for the ring's line `PREFETCH_AHEAD` bytes past `tail` in
    /// writable state (see `copy::prefetch_for_write`), so each line is
    /// asked for once, four lines before the producer reaches it. Only
    /// inside the room our cached `head` promises (`fast_end`, which also
    /// ends at the lap's end): a nearly full ring never pulls away a line
    /// the consumer has yet to read. Three instructions per message, and
    /// seven more once per line (`examples/instr.sh`).
    #[inline(always)]
    fn prefetch_ahead(&self, from: u64, tail: u64) {
        let at = tail + PREFETCH_AHEAD;
        if (from ^ tail) >= 64 && at + 64 <= self.fast_end {
            prefetch_for_write(self.ep.data.wrapping_add((at & self.ep.word_mask) as usize));
        }
    }

    /// Store the signal `(offset, word)` (with `tail` and the wake-up):
    /// everything written before becomes visible.
    #[inline(always)]
    pub(crate) fn publish_signal(&mut self, (signal_off, signal_word): (u64, u64)) {
        // The header store pairs with the consumer's Acquire load in
        // `Consumer::look` (and, for the wake-up, with its registration in
        // `Endpoint::sleep`); `tail` follows on our own line.
        let p = &self.ep.seg.header().prod;
        self.ep.publish(
            self.ep.word(signal_off),
            signal_word,
            Some((&p.tail, self.tail)),
        );
    }

    /// Lock-free: write as many of `msgs` as fit now and publish them with
    /// one signal, the first record's header, stored last. Returns how
    /// many were published, and the error that stopped it early (a message
    /// above the maximum, the consumer gone, corruption), if any.
    fn publish_run<M: AsRef<[u8]>>(&mut self, msgs: &[M]) -> (usize, Option<Error>) {
        let mut first = None;
        let mut n = 0;
        let mut err = None;
        for m in msgs {
            let m = m.as_ref();
            if let Err(e) = self.check_len(m.len()) {
                err = Some(e);
                break;
            }
            let r = self.reserve(m.len());
            let slot = match self.ep.note(r) {
                Ok(Some(slot)) => slot,
                Ok(None) => break,
                Err(e) => {
                    err = Some(e);
                    break;
                }
            };
            self.copy_in(slot, m);
            let (off, word) = self.write_slot(slot, m.len());
            if first.is_none() {
                first = Some((off, word));
            } else {
                // Relaxed: the consumer reaches this header only through the
                // first one, whose Release store comes after it.
                self.ep.word(off).store(word, Ordering::Relaxed);
            }
            n += 1;
        }
        if let Some(signal) = first {
            V::publish(self, signal);
        }
        (n, err)
    }

    /// Send every message of `msgs`, in order, publishing them together: the
    /// records are written first and the first one's header last, so the
    /// consumer follows a batch of finished records instead of racing the
    /// producer line by line (the fastest way to stream small messages).
    /// If the ring fills, what was written is published and the rest waits
    /// for room per the wait strategy.
    ///
    /// ```
    /// let (mut tx, mut rx) = shmpipe::Builder::new().in_process()?.split()?;
    /// tx.send_batch(&[&b"one"[..], b"two", b"three"])?;
    /// let mut got = Vec::new();
    /// rx.drain(usize::MAX, |m| got.push(m.to_vec()))?;
    /// assert_eq!(got, [&b"one"[..], b"two", b"three"]);
    /// # Ok::<(), shmpipe::Error>(())
    /// ```
    ///
    /// The locked variant sends them one by one (each under the lock).
    ///
    /// # Errors
    /// As [`Self::send`]. On an error the messages before the failing one
    /// were sent (and are received); the rest were not.
    pub fn send_batch<M: AsRef<[u8]>>(&mut self, msgs: &[M]) -> Result<()> {
        V::send_batch(self, msgs)
    }

    /// `send_batch` by runs of records published with one signal.
    pub(crate) fn send_run<M: AsRef<[u8]>>(&mut self, msgs: &[M]) -> Result<()> {
        let mut rest = msgs;
        while !rest.is_empty() {
            self.ep.check_broken()?;
            // Acquire: pairs with the consumer's SeqCst store of CLOSED.
            let n = if self.ep.peer_word().load(Ordering::Acquire) != STATE_CLOSED {
                let (n, err) = self.publish_run(rest);
                if let Some(e) = err {
                    return Err(e);
                }
                n
            } else {
                0
            };
            if n == 0 {
                // Full (or closed): `send` waits for room, or reports why
                // there will be none.
                self.send(rest[0].as_ref())?;
                rest = &rest[1..];
            } else {
                rest = &rest[n..];
            }
        }
        Ok(())
    }

    /// Send as many of `msgs` as fit now (in order, published together as
    /// by [`Self::send_batch`]); returns how many were sent.
    ///
    /// ```
    /// let (mut tx, mut rx) = shmpipe::Builder::new().capacity(64).in_process()?.split()?;
    /// let msgs = [[1u8; 16], [2; 16], [3; 16]]; // 24-byte records
    /// assert_eq!(tx.try_send_batch(&msgs)?, 2); // the third does not fit now
    /// assert!(matches!(tx.try_send_batch(&msgs[2..]), Err(shmpipe::Error::Full)));
    /// assert_eq!(rx.drain(usize::MAX, |_| ())?, 2);
    /// assert_eq!(tx.try_send_batch(&msgs[2..])?, 1);
    /// # Ok::<(), shmpipe::Error>(())
    /// ```
    ///
    /// # Errors
    /// `Full` if not even the first fits; otherwise as [`Self::try_send`].
    /// A message that fails after others were sent ends the batch: the count
    /// of those is returned, and the next call reports the failure.
    pub fn try_send_batch<M: AsRef<[u8]>>(&mut self, msgs: &[M]) -> Result<usize> {
        if msgs.is_empty() {
            return Ok(0);
        }
        V::try_send_batch(self, msgs)
    }

    /// `try_send_batch` as one run of records published with one signal.
    pub(crate) fn try_send_run<M: AsRef<[u8]>>(&mut self, msgs: &[M]) -> Result<usize> {
        self.ep.check_broken()?;
        self.consumer_gone(Check::Word)?;
        match self.publish_run(msgs) {
            (0, Some(e)) => Err(e),
            (0, None) => {
                // Full: is anyone going to make room?
                self.consumer_gone(Check::Rated)?;
                Err(Error::Full)
            }
            (n, _) => Ok(n),
        }
    }

    /// One attempt at reserving `len` bytes, taking the lock if locked.
    fn attempt_reserve(
        &mut self,
        len: usize,
        mode: Mode,
        check_peer: bool,
    ) -> Result<Option<(Slot, Option<V::Guard>)>> {
        self.consumer_gone(Check::Word)?;
        // Waiting (except once per slice, when the attempt re-validates the
        // indices): a design that must enter can often tell "full" first.
        if matches!(mode, Mode::Until(_)) && !check_peer && V::full_at_a_glance(self, len) {
            self.consumer_gone(Check::slow(check_peer))?;
            return Ok(None);
        }
        let Some(guard) = V::enter(&mut self.ep, mode)? else {
            return Ok(None);
        };
        let guard = Some(guard);
        let r = V::reserve(self, len);
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

    /// Is there room worth another attempt (or did the consumer's state
    /// change)? Once full, wait for a chunk of room — a quarter of the ring,
    /// or the record if larger — rather than one record's worth, so the two
    /// sides do not fall into a record-at-a-time ping-pong over the same
    /// cache lines.
    #[inline]
    fn space_ready(&self, len: usize) -> bool {
        // Poll `head` sparingly: every load pulls the consumer's line, which
        // it writes once per message, away from it.
        #[cfg(not(loom))]
        for _ in 0..FULL_POLL_PAUSES {
            std::hint::spin_loop();
        }
        let h = self.ep.h();
        // Acquire: pairs with the consumer's Release/SeqCst store of `head`
        // (the attempt that follows re-reads and validates it anyway).
        let head = h.cons.head.load(Ordering::Acquire);
        let want = self.need(self.tail, len).1.max(self.ep.cap / 4);
        self.ep.cap.saturating_sub(self.tail.wrapping_sub(head)) >= want
            || h.endpoints.consumer.load(Ordering::Relaxed) > STATE_ATTACHED
    }

    fn sleep_for_space(&mut self, until: Instant) {
        let head_seen = self.head_cache;
        let h = self.ep.seg.header();
        self.ep.sleep(until, || {
            // SeqCst: see `Endpoint::sleep`.
            h.cons.head.load(Ordering::SeqCst) != head_seen
                // Closed (or an invalid word, to report it); a consumer that
                // never attached yet is waited for (its attach wakes us).
                || h.endpoints.consumer.load(Ordering::SeqCst) > STATE_ATTACHED
        });
    }

    fn count_full(&mut self) {
        bump(&self.ep.seg.header().prod.full_waits);
    }

    fn reserve_blocking(
        &mut self,
        len: usize,
        deadline: Option<Instant>,
    ) -> Result<(Slot, Option<V::Guard>)> {
        self.ep.check_broken()?;
        self.check_len(len)?;
        let wait = self.ep.wait;
        block(
            self,
            deadline,
            wait,
            false,
            |p, check| p.attempt_reserve(len, Mode::Until(deadline), check),
            |p, until| p.sleep_for_space(until),
            |p| p.space_ready(len),
            |p| p.count_full(),
        )
    }

    #[inline(always)]
    pub(crate) fn copy_in(&self, slot: Slot, msg: &[u8]) {
        // SAFETY: the slot has room for the header and msg.len() bytes
        // inside the data area; the region between tail and head+capacity is
        // the producer's, and `msg` cannot overlap the mapping's ring slots
        // we own exclusively.
        unsafe {
            super::copy::copy(
                msg.as_ptr(),
                self.ep.data.add((slot.off + HDR) as usize),
                msg.len(),
            )
        };
    }

    /// Send `msg` if there is room now.
    ///
    /// ```
    /// let (mut tx, mut rx) = shmpipe::Builder::new().capacity(64).in_process()?.split()?;
    /// let msg = b"a 24-byte message (max)!";
    /// tx.try_send(&msg[..])?; // a 32-byte record, plus 8 bytes zeroed after it
    /// assert!(matches!(tx.try_send(&msg[..]), Err(shmpipe::Error::Full)));
    /// rx.try_recv_with(|m| assert_eq!(m, &msg[..]))?;
    /// tx.try_send(b"room again")?;
    /// # Ok::<(), shmpipe::Error>(())
    /// ```
    ///
    /// # Errors
    /// `Full` if there is no room; `TooLarge` above [`Self::max_message`];
    /// `Disconnected`/`PeerDied` if the consumer is gone; `Corrupted`.
    #[inline(always)]
    pub fn try_send(&mut self, msg: &[u8]) -> Result<()> {
        if let Some((off, end)) = self.fast_slot(msg.len()) {
            self.fast_send(off, end, msg);
            return Ok(());
        }
        self.try_send_slow(msg)
    }

    #[cold]
    #[inline(never)]
    fn try_send_slow(&mut self, msg: &[u8]) -> Result<()> {
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
    /// ```
    /// use shmpipe::{Builder, WaitStrategy};
    /// let (mut tx, mut rx) = Builder::new().wait(WaitStrategy::Futex).in_process()?.split()?;
    /// let t = std::thread::spawn(move || -> shmpipe::Result<()> {
    ///     for i in 0..1000u32 {
    ///         tx.send(&i.to_le_bytes())?; // sleeps while the ring is full
    ///     }
    ///     Ok(()) // dropping tx closes the producer side
    /// });
    /// let mut buf = Vec::new();
    /// for i in 0..1000u32 {
    ///     rx.recv(&mut buf)?;
    ///     assert_eq!(buf, i.to_le_bytes());
    /// }
    /// assert!(matches!(rx.recv(&mut buf), Err(shmpipe::Error::Disconnected)));
    /// t.join().unwrap()?;
    /// # Ok::<(), shmpipe::Error>(())
    /// ```
    ///
    /// # Errors
    /// As [`Self::try_send`], without `Full`.
    #[inline(always)]
    pub fn send(&mut self, msg: &[u8]) -> Result<()> {
        if let Some((off, end)) = self.fast_slot(msg.len()) {
            self.fast_send(off, end, msg);
            return Ok(());
        }
        self.send_slow(msg)
    }

    #[cold]
    #[inline(never)]
    fn send_slow(&mut self, msg: &[u8]) -> Result<()> {
        self.send_deadline(msg, None)
    }

    /// The lock-free fast path's test: the handle is healthy and the
    /// message allowed (`len < fast_lim`), its record ends before
    /// `fast_end` (no wrap, and within the room our cached `head`
    /// promises), and the consumer has not closed. Returns the record's
    /// offset and the `tail` after it. Anything else takes the full path,
    /// which reports or waits.
    #[inline(always)]
    fn fast_slot(&self, len: usize) -> Option<(u64, u64)> {
        // (`fast_lim` is 0 without a header signal.)
        if len as u64 >= self.ep.fast_lim {
            return None;
        }
        let end = self.tail + frame::record_len(len as u64);
        if end > self.fast_end {
            return None;
        }
        // Acquire: pairs with the consumer's SeqCst store of CLOSED. The
        // endpoints line is written only at attach and close, so this load
        // hits a line both caches share. Only NEVER and ATTACHED pass: CLOSED
        // and invalid words go to the full path, which reports them.
        if self.ep.h().endpoints.consumer.load(Ordering::Acquire) > STATE_ATTACHED {
            return None;
        }
        Some((self.tail & self.ep.word_mask, end))
    }

    /// A claim of the record at `off` (checked by `fast_slot`).
    #[inline(always)]
    fn fast_claim(&mut self, off: u64, len: usize) -> Claim<'_, V> {
        Claim {
            slot: Slot {
                start: self.tail,
                pad: 0,
                off,
            },
            p: self,
            len,
            _guard: None,
        }
    }

    /// Write `msg` as the record at `off`, ending at `tail` (both from
    /// `fast_slot`), and publish it: payload, zero ahead, the header word
    /// (with the light publication: `fast_lim` is 0 for any other), `tail`;
    /// then the handle's `tail` and counts.
    #[inline(always)]
    fn fast_send(&mut self, off: u64, tail: u64, msg: &[u8]) {
        let len = msg.len();
        let ep = &self.ep;
        // Every address before the first store: the payload copy stores
        // through a pointer the compiler cannot tell apart from `self`, so
        // a field read after it is read again (two loads per message,
        // `examples/instr.sh`).
        // SAFETY: `fast_slot` checked that the record (header and payload)
        // ends inside the data area, in the room between tail and
        // head + capacity that is ours, and masked `off` with `word_mask`.
        let (payload, header) = unsafe { (ep.data.add((off + HDR) as usize), ep.word_masked(off)) };
        // Zero ahead (see `write_slot`): `fast_slot` left room for it.
        let ahead = ep.word(tail);
        let h = ep.h();
        // The consumer's `waiting` word, checked after the header store.
        let (index, peer_waiting) = (&h.prod.tail, &h.wait_consumer.waiting);
        self.prefetch_ahead(self.tail, tail);
        // SAFETY: as above; `msg` cannot overlap the ring.
        unsafe { super::copy::copy(msg.as_ptr(), payload, len) };
        // Relaxed: ordered before the header by its Release store below.
        // (The same steps as `write_slot` with no wrap, written out: going
        // through `Slot` and `write_slot` measured 3 instructions more per
        // message in `examples/instr.sh`.)
        ahead.store(0, Ordering::Relaxed);
        // The header store pairs with the consumer's Acquire load in
        // `Consumer::look` (and, for the wake-up, with its registration in
        // `Endpoint::sleep`); `tail` follows on our own line.
        ep.publish_light(
            header,
            frame::encode(KIND_MSG, len as u32),
            Some((index, tail)),
            peer_waiting,
        );
        self.tail = tail;
        self.msgs = self.msgs.wrapping_add(1);
        self.bytes = self.bytes.wrapping_add(len as u64);
    }

    /// Send `msg`, waiting at most `timeout` for room.
    ///
    /// ```
    /// use std::time::Duration;
    /// let (mut tx, _rx) = shmpipe::Builder::new().capacity(64).in_process()?.split()?;
    /// tx.send_timeout(b"fits", Duration::from_millis(10))?;
    /// let big = [0u8; 24];
    /// tx.send_timeout(&big, Duration::from_millis(10))?;
    /// // Full, and nobody reads: the wait ends after the timeout.
    /// assert!(matches!(tx.send_timeout(&big, Duration::from_millis(10)), Err(shmpipe::Error::Timeout)));
    /// # Ok::<(), shmpipe::Error>(())
    /// ```
    ///
    /// # Errors
    /// As [`Self::send`], plus `Timeout`.
    pub fn send_timeout(&mut self, msg: &[u8], timeout: Duration) -> Result<()> {
        self.send_deadline(msg, deadline_after(timeout))
    }

    #[inline]
    fn send_deadline(&mut self, msg: &[u8], deadline: Option<Instant>) -> Result<()> {
        if V::HEADER_SIGNAL {
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
    /// lock.
    ///
    /// ```
    /// let (mut tx, mut rx) = shmpipe::Builder::new().capacity(64).in_process()?.split()?;
    /// let mut claim = tx.try_claim(24)?;
    /// claim.fill(7);
    /// claim.commit();
    /// assert!(matches!(tx.try_claim(24), Err(shmpipe::Error::Full)));
    /// rx.try_recv_with(|m| assert_eq!(m, [7; 24]))?;
    /// # Ok::<(), shmpipe::Error>(())
    /// ```
    ///
    /// # Errors
    /// As [`Self::try_send`].
    pub fn try_claim(&mut self, len: usize) -> Result<Claim<'_, V>> {
        if let Some((off, _)) = self.fast_slot(len) {
            return Ok(self.fast_claim(off, len));
        }
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
    /// ```
    /// let (mut tx, mut rx) = shmpipe::Builder::new().in_process()?.split()?;
    /// let mut claim = tx.claim(8)?; // zero-copy: write in place
    /// claim.copy_from_slice(&42u64.to_le_bytes());
    /// claim.commit();
    /// let mut claim = tx.claim(100)?;
    /// claim[..5].copy_from_slice(b"short");
    /// claim.commit_len(5); // publish only what was written
    /// drop(tx.claim(16)?); // dropping a claim publishes nothing
    /// let mut buf = Vec::new();
    /// rx.recv(&mut buf)?;
    /// assert_eq!(buf, 42u64.to_le_bytes());
    /// rx.recv(&mut buf)?;
    /// assert_eq!(buf, b"short");
    /// assert!(matches!(rx.try_recv(&mut buf), Err(shmpipe::Error::Empty)));
    /// # Ok::<(), shmpipe::Error>(())
    /// ```
    ///
    /// # Errors
    /// As [`Self::send`].
    pub fn claim(&mut self, len: usize) -> Result<Claim<'_, V>> {
        if let Some((off, _)) = self.fast_slot(len) {
            return Ok(self.fast_claim(off, len));
        }
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
    /// ```
    /// use std::time::Duration;
    /// let (mut tx, _rx) = shmpipe::Builder::new().capacity(64).in_process()?.split()?;
    /// tx.claim_timeout(24, Duration::from_millis(10))?.commit();
    /// let full = tx.claim_timeout(24, Duration::from_millis(10));
    /// assert!(matches!(full, Err(shmpipe::Error::Timeout)));
    /// # Ok::<(), shmpipe::Error>(())
    /// ```
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

impl<V: ProducerHooks> Drop for Producer<V> {
    fn drop(&mut self) {
        if self.ep.attached_here() {
            self.checkpoint(); // the walk of `stats()` then starts at our tail
        }
        self.ep.close();
    }
}

impl<V: ProducerHooks> std::fmt::Debug for Producer<V> {
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
/// dropping it discards it (nothing is written to the ring's headers
/// before `commit`).
#[must_use = "a claim publishes nothing unless committed"]
pub struct Claim<'a, V: ProducerHooks = LockFree> {
    p: &'a mut Producer<V>,
    slot: Slot,
    len: usize,
    _guard: Option<V::Guard>,
}

impl<V: ProducerHooks> Claim<'_, V> {
    /// Publish the whole claimed length as one message.
    ///
    /// ```
    /// let (mut tx, mut rx) = shmpipe::Builder::new().capacity(4096).in_process()?.split()?;
    /// let mut claim = tx.claim(3)?;
    /// claim.copy_from_slice(b"abc");
    /// claim.commit();
    /// rx.try_recv_with(|m| assert_eq!(m, b"abc"))?;
    /// # Ok::<(), shmpipe::Error>(())
    /// ```
    pub fn commit(self) {
        let len = self.len;
        self.commit_len(len);
    }

    /// Publish the first `n` bytes as one message (`n` is clamped to the
    /// claimed length).
    ///
    /// ```
    /// let (mut tx, mut rx) = shmpipe::Builder::new().capacity(4096).in_process()?.split()?;
    /// let mut claim = tx.claim(64)?; // room for the longest reply
    /// let n = std::io::Write::write(&mut &mut claim[..], b"short")?;
    /// claim.commit_len(n);
    /// rx.try_recv_with(|m| assert_eq!(m, b"short"))?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn commit_len(self, n: usize) {
        let n = n.min(self.len);
        self.p.commit_slot(self.slot, n);
        // `_guard` (the locked variant's lock) is released when self drops.
    }
}

impl<V: ProducerHooks> std::ops::Deref for Claim<'_, V> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        // SAFETY: the claimed bytes are inside the data area and owned by
        // the producer until committed; the consumer never writes them.
        unsafe {
            std::slice::from_raw_parts(self.p.ep.data.add((self.slot.off + HDR) as usize), self.len)
        }
    }
}

impl<V: ProducerHooks> std::ops::DerefMut for Claim<'_, V> {
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

impl<V: ProducerHooks> std::io::Write for Producer<V> {
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
