//! Iterators over a consumer's messages: `consumer.iter()` (blocking) and
//! `consumer.try_iter()` (what is waiting now), inherent methods of
//! [`Consumer`].
//!
//! Both borrow the consumer and copy each message into a buffer they reuse:
//! the `for`-loop form ([`Iterator`]) yields each message as its own
//! `Vec<u8>` (one allocation and one copy per message); the lending form,
//! [`Iter::next_ref`] / [`TryIter::next_ref`], lends the reused buffer and
//! allocates only when a message is larger than every one before it.
//!
//! ```
//! use shmpipe::Builder;
//!
//! let (mut tx, mut rx) = Builder::new().capacity(4096).in_process()?.split()?;
//! tx.send(b"a")?;
//! tx.send(b"bc")?;
//! let got: Vec<Vec<u8>> = rx.try_iter().collect::<Result<_, _>>()?;
//! assert_eq!(got, [b"a".to_vec(), b"bc".to_vec()]);
//!
//! tx.send(b"def")?;
//! drop(tx); // the blocking iterator ends when the producer closes
//! let mut it = rx.iter();
//! while let Some(msg) = it.next_ref() {
//!     assert_eq!(msg?, b"def");
//! }
//! # Ok::<(), shmpipe::Error>(())
//! ```

use crate::error::{Error, Result};
use crate::ring::{Consumer, Variant};

impl<V: Variant> Consumer<V> {
    /// A blocking iterator: each step waits for the next message (per the
    /// ring's wait strategy). It ends when the producer has closed and every
    /// message was received; any other error (`PeerDied`, `Corrupted`, ...)
    /// is yielded once, then it ends.
    ///
    /// ```
    /// let (mut tx, mut rx) = shmpipe::Builder::new().in_process()?.split()?;
    /// tx.send(b"one")?;
    /// drop(tx);
    /// let all: Vec<Vec<u8>> = rx.iter().collect::<Result<_, _>>()?;
    /// assert_eq!(all, [b"one".to_vec()]);
    /// # Ok::<(), shmpipe::Error>(())
    /// ```
    pub fn iter(&mut self) -> Iter<'_, V> {
        Iter {
            rx: self,
            buf: Vec::new(),
            done: false,
        }
    }

    /// A non-blocking iterator over the messages waiting now. It ends at the
    /// first empty poll or when the producer has closed; other errors are
    /// yielded once, then it ends.
    ///
    /// ```
    /// let (mut tx, mut rx) = shmpipe::Builder::new().in_process()?.split()?;
    /// tx.send(b"a")?;
    /// assert_eq!(rx.try_iter().count(), 1);
    /// assert_eq!(rx.try_iter().count(), 0); // nothing waiting: ends at once
    /// # Ok::<(), shmpipe::Error>(())
    /// ```
    pub fn try_iter(&mut self) -> TryIter<'_, V> {
        TryIter {
            rx: self,
            buf: Vec::new(),
            done: false,
        }
    }
}

/// Blocking iterator over a consumer's messages; see [`Consumer::iter`].
#[derive(Debug)]
pub struct Iter<'a, V: Variant> {
    rx: &'a mut Consumer<V>,
    buf: Vec<u8>,
    done: bool,
}

/// Non-blocking iterator over the waiting messages; see
/// [`Consumer::try_iter`].
#[derive(Debug)]
pub struct TryIter<'a, V: Variant> {
    rx: &'a mut Consumer<V>,
    buf: Vec<u8>,
    done: bool,
}

/// Turn one receive result into an iterator step: `None` at the end of the
/// stream (or of what is waiting, for `try_iter`), the error once otherwise.
fn step(r: Result<usize>, done: &mut bool) -> Option<Result<()>> {
    match r {
        Ok(_) => Some(Ok(())),
        Err(Error::Disconnected) | Err(Error::Empty) => {
            *done = true;
            None
        }
        Err(e) => {
            *done = true;
            Some(Err(e))
        }
    }
}

impl<V: Variant> Iter<'_, V> {
    /// The next message, copied into the iterator's reused buffer and lent
    /// out until the next call (`while let Some(m) = it.next_ref()`).
    ///
    /// ```
    /// let (mut tx, mut rx) = shmpipe::Builder::new().capacity(4096).in_process()?.split()?;
    /// tx.send_batch(&["one", "two"])?;
    /// drop(tx); // the iterator ends after the last message
    /// let (mut it, mut total) = (rx.iter(), 0);
    /// while let Some(msg) = it.next_ref() {
    ///     total += msg?.len(); // no allocation per message
    /// }
    /// assert_eq!(total, 6);
    /// # Ok::<(), shmpipe::Error>(())
    /// ```
    pub fn next_ref(&mut self) -> Option<Result<&[u8]>> {
        if self.done {
            return None;
        }
        let r = self.rx.recv(&mut self.buf);
        Some(step(r, &mut self.done)?.map(|()| self.buf.as_slice()))
    }
}

impl<V: Variant> TryIter<'_, V> {
    /// The next waiting message, lent from the reused buffer; see
    /// [`Iter::next_ref`].
    ///
    /// ```
    /// let (mut tx, mut rx) = shmpipe::Builder::new().capacity(4096).in_process()?.split()?;
    /// tx.send(b"waiting")?;
    /// let mut it = rx.try_iter();
    /// assert_eq!(it.next_ref().transpose()?, Some(&b"waiting"[..]));
    /// assert!(it.next_ref().is_none()); // empty now: the iterator ends
    /// # Ok::<(), shmpipe::Error>(())
    /// ```
    pub fn next_ref(&mut self) -> Option<Result<&[u8]>> {
        if self.done {
            return None;
        }
        let r = self.rx.try_recv(&mut self.buf);
        Some(step(r, &mut self.done)?.map(|()| self.buf.as_slice()))
    }
}

impl<V: Variant> Iterator for Iter<'_, V> {
    type Item = Result<Vec<u8>>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_ref().map(|r| r.map(<[u8]>::to_vec))
    }
}

impl<V: Variant> Iterator for TryIter<'_, V> {
    type Item = Result<Vec<u8>>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_ref().map(|r| r.map(<[u8]>::to_vec))
    }
}
