//! Typed messages on top of the byte rings (features `pod` and `serde`).
//!
//! - `Sender<T>` / `Receiver<T>` (feature `pod`) carry one
//!   plain-old-data value per message, as its raw bytes: `send` copies them
//!   into the ring, `Sender::send_with` builds the value in place, `recv`
//!   copies them out, and `Receiver::recv_with` lends a `&T` straight from
//!   the ring. A message of `size_of::<T>()` bytes is found with one
//!   comparison of its header against a constant and copied with a
//!   constant length (ringfire's shape: a slot type; about 74 instructions
//!   per send and receive of a `[u8; 8]`, ringfire's 59: `examples/instr.sh`).
//! - `SerdeSender` / `SerdeReceiver` (feature `serde`) carry any
//!   `serde` value, encoded with [postcard](https://docs.rs/postcard).
//!
//! **Why `bytemuck`** (rather than `zerocopy`): we need exactly one
//! property, "every bit pattern of these bytes is a valid `T` and `T` has no
//! padding", which is `bytemuck::Pod`; its derive checks it at compile time,
//! and its casts (`try_from_bytes`) check length and alignment at run time.
//! `zerocopy` can express more (`FromBytes` without `IntoBytes`, unaligned
//! wrappers, layouts checked field by field), at the price of a larger API
//! and several traits per type; nothing here needs that, and `bytemuck` is
//! the smaller dependency that most of the ecosystem's Pod types already
//! implement.
//!
//! **Why postcard** (rather than bincode): a small, stable, documented wire
//! format (varints, no padding), `to_slice` to encode into a caller's buffer
//! and a size-only pass (the `Size` flavor), so a message is encoded
//! straight into the ring's claim with no intermediate `Vec`: one pass to
//! measure, one to write in place.
//!
//! **Alignment.** Every record payload starts 8-byte aligned in the data
//! area (the data area is 128-aligned, records are 8-aligned, the record
//! header is 8 bytes). So a `&T` can be lent from the ring for any `T` with
//! `align_of::<T>() <= 8`; `Receiver::recv_with` and `Sender::send_with`
//! refuse larger alignments at compile time (`recv` and `send` copy, and
//! work for every `Pod`).
//!
//! ```compile_fail
//! # // u128 is 16-aligned on x86-64: lending a &u128 from the ring is refused.
//! let (_, rx) = shmpipe::Builder::new().in_process()?.split()?;
//! let mut rx = shmpipe::typed::Receiver::<u128>::new(rx);
//! let _ = rx.recv_with(|v| *v);
//! # Ok::<(), shmpipe::Error>(())
//! ```
//!
//! **Foreign input.** The peer decides what bytes arrive: a message of the
//! wrong length for `T`, or one that is not a valid postcard encoding of
//! the requested type, gives [`Error::Decode`](crate::Error::Decode) (the message is consumed, the
//! ring stays usable), never a panic.
//!
//! ```
//! # #[cfg(all(feature = "pod", feature = "serde"))] {
//! use shmpipe::typed::{Receiver, Sender, SerdeReceiver, SerdeSender};
//! use shmpipe::Builder;
//!
//! let (tx, rx) = Builder::new().capacity(4096).in_process()?.split()?;
//! let (mut tx, mut rx) = (Sender::<[u32; 4]>::new(tx), Receiver::<[u32; 4]>::new(rx));
//! tx.send(&[1, 2, 3, 4])?;
//! assert_eq!(rx.recv_with(|v| v[3])?, 4);
//!
//! let (tx, rx) = Builder::new().capacity(4096).in_process()?.split()?;
//! let (mut tx, mut rx) = (SerdeSender::new(tx), SerdeReceiver::new(rx));
//! tx.send(&("hello", 42u64))?;
//! let (s, n): (String, u64) = rx.recv()?;
//! assert_eq!((s.as_str(), n), ("hello", 42));
//! # }
//! # Ok::<(), shmpipe::Error>(())
//! ```

#[cfg(feature = "pod")]
pub use pod::{Receiver, Sender};
#[cfg(feature = "serde")]
pub use serde_msg::{SerdeReceiver, SerdeSender};

/// Alignment of every record payload in the data area.
pub const PAYLOAD_ALIGN: usize = 8;

#[cfg(feature = "pod")]
mod pod {
    use std::marker::PhantomData;
    use std::time::Duration;

    use bytemuck::Pod;

    use crate::error::{Error, Result};
    use crate::ring::{Consumer, LockFree, Producer, Variant};

    /// Compile-time refusal of `T` whose alignment exceeds the payloads'.
    struct AlignOk<T>(PhantomData<T>);
    impl<T> AlignOk<T> {
        const OK: () = assert!(
            std::mem::align_of::<T>() <= super::PAYLOAD_ALIGN,
            "shmpipe::typed: ring payloads are only 8-byte aligned; a &T of larger alignment cannot be lent from the ring (use recv()/send(), which copy)"
        );
    }

    fn decode_error<T>(len: usize, reason: String) -> Error {
        Error::Decode {
            ty: std::any::type_name::<T>(),
            len,
            reason,
        }
    }

    fn read_value<T: Pod>(bytes: &[u8]) -> Result<T> {
        bytemuck::try_pod_read_unaligned(bytes).map_err(|e| {
            decode_error::<T>(
                bytes.len(),
                format!(
                    "expected exactly {} bytes ({e:?})",
                    std::mem::size_of::<T>()
                ),
            )
        })
    }

    /// Sends one plain-old-data `T` per message. Owns the producer.
    pub struct Sender<T: Pod, V: Variant = LockFree> {
        tx: Producer<V>,
        _t: PhantomData<fn(&T)>,
    }

    impl<T: Pod, V: Variant> std::fmt::Debug for Sender<T, V> {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.debug_struct("Sender")
                .field("type", &std::any::type_name::<T>())
                .field("tx", &self.tx)
                .finish()
        }
    }

    impl<T: Pod, V: Variant> Sender<T, V> {
        /// Wrap a producer.
        ///
        /// ```
        /// use shmpipe::typed::{Receiver, Sender};
        /// let (tx, rx) = shmpipe::Builder::new().capacity(4096).in_process()?.split()?;
        /// let (mut tx, mut rx) = (Sender::<u64>::new(tx), Receiver::<u64>::new(rx));
        /// tx.send(&7)?;
        /// assert_eq!(rx.recv()?, 7);
        /// # Ok::<(), shmpipe::Error>(())
        /// ```
        pub fn new(tx: Producer<V>) -> Self {
            Sender {
                tx,
                _t: PhantomData,
            }
        }

        /// The producer, for byte-level calls.
        ///
        /// ```
        /// use shmpipe::typed::Sender;
        /// let (tx, _rx) = shmpipe::Builder::new().capacity(4096).in_process()?.split()?;
        /// let mut tx = Sender::<u64>::new(tx);
        /// tx.send(&1)?;
        /// assert_eq!(tx.get_mut().len_bytes(), 16); // one 8-byte value + its header
        /// # Ok::<(), shmpipe::Error>(())
        /// ```
        pub fn get_mut(&mut self) -> &mut Producer<V> {
            &mut self.tx
        }

        /// Unwrap the producer.
        ///
        /// ```
        /// use shmpipe::typed::Sender;
        /// let (tx, mut rx) = shmpipe::Builder::new().capacity(4096).in_process()?.split()?;
        /// let mut tx = Sender::<u16>::new(tx).into_inner(); // back to bytes
        /// tx.send(b"raw")?;
        /// rx.recv_with(|m| assert_eq!(m, b"raw"))?;
        /// # Ok::<(), shmpipe::Error>(())
        /// ```
        pub fn into_inner(self) -> Producer<V> {
            self.tx
        }

        /// Send `value` (its bytes copied into the ring), waiting for room
        /// per the wait strategy.
        ///
        /// ```
        /// use shmpipe::typed::Sender;
        /// let (tx, mut rx) = shmpipe::Builder::new().capacity(4096).in_process()?.split()?;
        /// let mut tx = Sender::<[u32; 2]>::new(tx);
        /// tx.send(&[1, 2])?;
        /// rx.recv_with(|m| assert_eq!(m, [1u32.to_ne_bytes(), 2u32.to_ne_bytes()].concat()))?;
        /// # Ok::<(), shmpipe::Error>(())
        /// ```
        ///
        /// # Errors
        /// As [`Producer::send`]: `TooLarge` if `size_of::<T>()` is above the
        /// ring's maximum message, `Disconnected`, `PeerDied`, `Corrupted`.
        #[inline]
        pub fn send(&mut self, value: &T) -> Result<()> {
            self.tx.send(bytemuck::bytes_of(value))
        }

        /// Like [`Self::send`] if there is room now.
        ///
        /// ```
        /// use shmpipe::typed::Sender;
        /// let (tx, _rx) = shmpipe::Builder::new().capacity(64).in_process()?.split()?;
        /// let mut tx = Sender::<[u8; 24]>::new(tx);
        /// tx.try_send(&[1; 24])?;
        /// assert!(matches!(tx.try_send(&[2; 24]), Err(shmpipe::Error::Full)));
        /// # Ok::<(), shmpipe::Error>(())
        /// ```
        ///
        /// # Errors
        /// As [`Producer::try_send`] (`Full` if there is no room).
        #[inline]
        pub fn try_send(&mut self, value: &T) -> Result<()> {
            self.tx.try_send(bytemuck::bytes_of(value))
        }

        /// Like [`Self::send`], waiting at most `timeout` for room.
        ///
        /// ```
        /// use std::time::Duration;
        /// use shmpipe::typed::Sender;
        /// let (tx, _rx) = shmpipe::Builder::new().capacity(64).in_process()?.split()?;
        /// let mut tx = Sender::<[u8; 24]>::new(tx);
        /// tx.send_timeout(&[1; 24], Duration::from_millis(10))?;
        /// let r = tx.send_timeout(&[2; 24], Duration::from_millis(10)); // full, nobody reads
        /// assert!(matches!(r, Err(shmpipe::Error::Timeout)));
        /// # Ok::<(), shmpipe::Error>(())
        /// ```
        ///
        /// # Errors
        /// As [`Producer::send_timeout`].
        pub fn send_timeout(&mut self, value: &T, timeout: Duration) -> Result<()> {
            self.tx.send_timeout(bytemuck::bytes_of(value), timeout)
        }

        /// Build the value in place: `f` gets a zeroed `&mut T` in the ring
        /// and the message is committed when it returns. Only for `T` with
        /// `align_of::<T>() <= 8` (refused at compile time otherwise).
        ///
        /// ```
        /// use shmpipe::typed::{Receiver, Sender};
        /// let (tx, rx) = shmpipe::Builder::new().capacity(4096).in_process()?.split()?;
        /// let (mut tx, mut rx) = (Sender::<[u64; 32]>::new(tx), Receiver::<[u64; 32]>::new(rx));
        /// tx.send_with(|v| v[31] = 9)?; // filled in the ring: no copy of the whole array
        /// assert_eq!(rx.recv_with(|v| (v[0], v[31]))?, (0, 9));
        /// # Ok::<(), shmpipe::Error>(())
        /// ```
        ///
        /// # Errors
        /// As [`Self::send`].
        pub fn send_with(&mut self, f: impl FnOnce(&mut T)) -> Result<()> {
            let () = AlignOk::<T>::OK;
            let mut claim = self.tx.claim(std::mem::size_of::<T>())?;
            claim.fill(0);
            let len = claim.len();
            let value: &mut T = bytemuck::try_from_bytes_mut(&mut claim)
                .map_err(|e| decode_error::<T>(len, format!("claim not castable ({e:?})")))?;
            f(value);
            claim.commit();
            Ok(())
        }
    }

    /// Receives one plain-old-data `T` per message. Owns the consumer.
    pub struct Receiver<T: Pod, V: Variant = LockFree> {
        rx: Consumer<V>,
        _t: PhantomData<fn() -> T>,
    }

    impl<T: Pod, V: Variant> std::fmt::Debug for Receiver<T, V> {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.debug_struct("Receiver")
                .field("type", &std::any::type_name::<T>())
                .field("rx", &self.rx)
                .finish()
        }
    }

    impl<T: Pod, V: Variant> Receiver<T, V> {
        /// Wrap a consumer.
        ///
        /// ```
        /// use shmpipe::typed::Receiver;
        /// let (mut tx, rx) = shmpipe::Builder::new().capacity(4096).in_process()?.split()?;
        /// let mut rx = Receiver::<u32>::new(rx);
        /// tx.send(&5u32.to_ne_bytes())?; // any producer of the right bytes will do
        /// assert_eq!(rx.recv()?, 5);
        /// # Ok::<(), shmpipe::Error>(())
        /// ```
        pub fn new(rx: Consumer<V>) -> Self {
            Receiver {
                rx,
                _t: PhantomData,
            }
        }

        /// The consumer, for byte-level calls.
        ///
        /// ```
        /// use shmpipe::typed::Receiver;
        /// let (mut tx, rx) = shmpipe::Builder::new().capacity(4096).in_process()?.split()?;
        /// let mut rx = Receiver::<u32>::new(rx);
        /// tx.send(&1u32.to_ne_bytes())?;
        /// assert!(!rx.get_mut().is_empty());
        /// # Ok::<(), shmpipe::Error>(())
        /// ```
        pub fn get_mut(&mut self) -> &mut Consumer<V> {
            &mut self.rx
        }

        /// Unwrap the consumer.
        ///
        /// ```
        /// use shmpipe::typed::Receiver;
        /// let (mut tx, rx) = shmpipe::Builder::new().capacity(4096).in_process()?.split()?;
        /// let mut rx = Receiver::<u32>::new(rx).into_inner();
        /// tx.send(b"bytes")?;
        /// rx.recv_with(|m| assert_eq!(m, b"bytes"))?;
        /// # Ok::<(), shmpipe::Error>(())
        /// ```
        pub fn into_inner(self) -> Consumer<V> {
            self.rx
        }

        /// The next value, if a message of exactly `size_of::<T>()` bytes
        /// is waiting now: the byte ring's constant-length fast path, tried
        /// first by every receive; `None` leaves the rest to the full path.
        #[inline(always)]
        fn fast_recv(&mut self) -> Option<T> {
            let mut v = T::zeroed();
            self.rx
                .fast_recv_exact(bytemuck::bytes_of_mut(&mut v))
                .then_some(v)
        }

        /// Receive the next value (a copy), waiting per the wait strategy.
        ///
        /// ```
        /// use shmpipe::typed::Receiver;
        /// let (mut tx, rx) = shmpipe::Builder::new().capacity(4096).in_process()?.split()?;
        /// let mut rx = Receiver::<u32>::new(rx);
        /// tx.send(b"abc")?; // 3 bytes: not a u32
        /// assert!(matches!(rx.recv(), Err(shmpipe::Error::Decode { len: 3, .. })));
        /// tx.send(&8u32.to_ne_bytes())?;
        /// assert_eq!(rx.recv()?, 8); // the ring stays usable
        /// # Ok::<(), shmpipe::Error>(())
        /// ```
        ///
        /// # Errors
        /// `Decode` if the message is not exactly `size_of::<T>()` bytes
        /// (it is consumed); otherwise as [`Consumer::recv_with`].
        #[inline]
        pub fn recv(&mut self) -> Result<T> {
            if let Some(v) = self.fast_recv() {
                return Ok(v);
            }
            self.recv_slow()
        }

        #[cold]
        #[inline(never)]
        fn recv_slow(&mut self) -> Result<T> {
            self.rx.recv_with(read_value::<T>)?
        }

        /// Like [`Self::recv`] if a message is waiting now.
        ///
        /// ```
        /// use shmpipe::typed::{Receiver, Sender};
        /// let (tx, rx) = shmpipe::Builder::new().capacity(4096).in_process()?.split()?;
        /// let (mut tx, mut rx) = (Sender::<i64>::new(tx), Receiver::<i64>::new(rx));
        /// assert!(matches!(rx.try_recv(), Err(shmpipe::Error::Empty)));
        /// tx.send(&-1)?;
        /// assert_eq!(rx.try_recv()?, -1);
        /// # Ok::<(), shmpipe::Error>(())
        /// ```
        ///
        /// # Errors
        /// As [`Self::recv`], plus `Empty`.
        #[inline]
        pub fn try_recv(&mut self) -> Result<T> {
            if let Some(v) = self.fast_recv() {
                return Ok(v);
            }
            if self.rx.quick_empty() {
                return Err(Error::Empty);
            }
            // A message that landed while `quick_empty` checked (it reads
            // the header last): the fast path once more.
            if let Some(v) = self.fast_recv() {
                return Ok(v);
            }
            self.try_recv_slow()
        }

        #[cold]
        #[inline(never)]
        fn try_recv_slow(&mut self) -> Result<T> {
            self.rx.try_recv_with(read_value::<T>)?
        }

        /// Like [`Self::recv`], waiting at most `timeout`.
        ///
        /// ```
        /// use std::time::Duration;
        /// use shmpipe::typed::Receiver;
        /// let (_tx, rx) = shmpipe::Builder::new().capacity(4096).in_process()?.split()?;
        /// let mut rx = Receiver::<u64>::new(rx);
        /// let r = rx.recv_timeout(Duration::from_millis(10));
        /// assert!(matches!(r, Err(shmpipe::Error::Timeout)));
        /// # Ok::<(), shmpipe::Error>(())
        /// ```
        ///
        /// # Errors
        /// As [`Self::recv`], plus `Timeout`.
        pub fn recv_timeout(&mut self, timeout: Duration) -> Result<T> {
            if let Some(v) = self.fast_recv() {
                return Ok(v);
            }
            self.rx.recv_with_timeout(timeout, read_value::<T>)?
        }

        /// Lend the next value in place (no copy) to `f`, then release it.
        /// Only for `T` with `align_of::<T>() <= 8` (refused at compile
        /// time otherwise): payloads are 8-byte aligned.
        ///
        /// ```
        /// use shmpipe::typed::{Receiver, Sender};
        /// let (tx, rx) = shmpipe::Builder::new().capacity(4096).in_process()?.split()?;
        /// let (mut tx, mut rx) = (Sender::<[u64; 64]>::new(tx), Receiver::<[u64; 64]>::new(rx));
        /// tx.send(&[3; 64])?;
        /// let sum: u64 = rx.recv_with(|v| v.iter().sum())?; // read in place, no copy
        /// assert_eq!(sum, 192);
        /// # Ok::<(), shmpipe::Error>(())
        /// ```
        ///
        /// # Errors
        /// `Decode` if the message has the wrong length (or, which the ring
        /// layout rules out, is misaligned); otherwise as
        /// [`Consumer::recv_with`].
        pub fn recv_with<R>(&mut self, f: impl FnOnce(&T) -> R) -> Result<R> {
            let () = AlignOk::<T>::OK;
            if let Some(found) = self.rx.fast_look_exact(std::mem::size_of::<T>()) {
                // Exactly `size_of::<T>()` bytes, 8-aligned (every payload
                // is) for a `T` aligned to at most 8: the cast cannot fail.
                return self
                    .rx
                    .deliver_fast(found, |bytes| cast_ref::<T, R>(bytes, f));
            }
            self.rx.recv_with(|bytes| cast_ref::<T, R>(bytes, f))?
        }
    }

    /// `f` on `bytes` as a `&T`, or `Decode` if they are not one.
    #[inline(always)]
    fn cast_ref<T: Pod, R>(bytes: &[u8], f: impl FnOnce(&T) -> R) -> Result<R> {
        bytemuck::try_from_bytes::<T>(bytes).map(f).map_err(|e| {
            decode_error::<T>(
                bytes.len(),
                format!(
                    "expected exactly {} bytes, {}-aligned ({e:?})",
                    std::mem::size_of::<T>(),
                    std::mem::align_of::<T>()
                ),
            )
        })
    }
}

#[cfg(feature = "rpc")]
pub(crate) use serde_msg::{decode, encode_into_claim};

#[cfg(feature = "serde")]
mod serde_msg {
    use std::time::Duration;

    use ::serde::de::DeserializeOwned;
    use ::serde::Serialize;

    use crate::error::{Error, Result};
    use crate::ring::{Claim, Consumer, LockFree, Producer, Variant};

    fn encode_error<T: ?Sized>(e: postcard::Error) -> Error {
        Error::Decode {
            ty: std::any::type_name::<T>(),
            len: 0,
            reason: format!("it cannot be encoded with postcard: {e}"),
        }
    }

    /// The postcard length of `value`.
    pub(crate) fn encoded_len<T: Serialize + ?Sized>(value: &T) -> Result<usize> {
        postcard::serialize_with_flavor(value, postcard::ser_flavors::Size::default())
            .map_err(encode_error::<T>)
    }

    /// Claim `prefix + encoded_len(value)` bytes with `claim`, write
    /// `write_prefix` then the encoding in place, and commit. A `TooLarge`
    /// from the claim reports the encoded length (prefix excluded).
    pub(crate) fn encode_into_claim<'a, T: Serialize + ?Sized, V: Variant + 'a>(
        value: &T,
        prefix: usize,
        claim: impl FnOnce(usize) -> Result<Claim<'a, V>>,
        write_prefix: impl FnOnce(&mut [u8]),
    ) -> Result<()> {
        let n = encoded_len(value)?;
        let mut c = claim(prefix + n).map_err(|e| match e {
            Error::TooLarge { max, .. } => Error::TooLarge {
                len: n,
                max: max.saturating_sub(prefix),
            },
            e => e,
        })?;
        let (head, body) = c.split_at_mut(prefix);
        write_prefix(head);
        // Dropping `c` on error aborts the claim: nothing is published.
        let used = postcard::to_slice(value, body)
            .map_err(encode_error::<T>)?
            .len();
        c.commit_len(prefix + used);
        Ok(())
    }

    /// Decode a whole message as a `T`: trailing bytes are an error too.
    pub(crate) fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T> {
        let fail = |reason: String| Error::Decode {
            ty: std::any::type_name::<T>(),
            len: bytes.len(),
            reason,
        };
        match postcard::take_from_bytes::<T>(bytes) {
            Ok((v, [])) => Ok(v),
            Ok((_, rest)) => Err(fail(format!(
                "{} bytes left over after the value (postcard)",
                rest.len()
            ))),
            Err(e) => Err(fail(format!("not a postcard encoding of it: {e}"))),
        }
    }

    /// Sends serde values, postcard-encoded straight into the ring.
    #[derive(Debug)]
    pub struct SerdeSender<V: Variant = LockFree> {
        tx: Producer<V>,
    }

    impl<V: Variant> SerdeSender<V> {
        /// Wrap a producer.
        ///
        /// ```
        /// use shmpipe::typed::{SerdeReceiver, SerdeSender};
        /// let (tx, rx) = shmpipe::Builder::new().capacity(4096).in_process()?.split()?;
        /// let (mut tx, mut rx) = (SerdeSender::new(tx), SerdeReceiver::new(rx));
        /// tx.send(&vec!["a", "b"])?;
        /// assert_eq!(rx.recv::<Vec<String>>()?, ["a", "b"]);
        /// # Ok::<(), shmpipe::Error>(())
        /// ```
        pub fn new(tx: Producer<V>) -> Self {
            SerdeSender { tx }
        }

        /// The producer, for byte-level calls.
        ///
        /// ```
        /// use shmpipe::typed::SerdeSender;
        /// let (tx, _rx) = shmpipe::Builder::new().capacity(4096).in_process()?.split()?;
        /// let mut tx = SerdeSender::new(tx);
        /// tx.send(&1u8)?;
        /// assert_eq!(tx.get_mut().stats().bytes_sent, 1); // postcard: one byte
        /// # Ok::<(), shmpipe::Error>(())
        /// ```
        pub fn get_mut(&mut self) -> &mut Producer<V> {
            &mut self.tx
        }

        /// Unwrap the producer.
        ///
        /// ```
        /// use shmpipe::typed::SerdeSender;
        /// let (tx, mut rx) = shmpipe::Builder::new().capacity(4096).in_process()?.split()?;
        /// let mut tx = SerdeSender::new(tx).into_inner();
        /// tx.send(b"raw")?;
        /// rx.recv_with(|m| assert_eq!(m, b"raw"))?;
        /// # Ok::<(), shmpipe::Error>(())
        /// ```
        pub fn into_inner(self) -> Producer<V> {
            self.tx
        }

        /// Encode `value` into the ring (one size pass, then in place
        /// through a claim of exactly that size), waiting for room.
        ///
        /// ```
        /// use shmpipe::typed::SerdeSender;
        /// let (tx, mut rx) = shmpipe::Builder::new().capacity(64).in_process()?.split()?;
        /// let mut tx = SerdeSender::new(tx);
        /// tx.send(&(1u8, "hi"))?;
        /// rx.recv_with(|m| assert_eq!(m, [1, 2, b'h', b'i']))?; // postcard bytes
        /// let long = "x".repeat(100);
        /// assert!(matches!(tx.send(&long), Err(shmpipe::Error::TooLarge { len: 101, max: 24 })));
        /// # Ok::<(), shmpipe::Error>(())
        /// ```
        ///
        /// # Errors
        /// `TooLarge { len, max }` with the encoded length, `Decode` if serde
        /// refuses the value (e.g. a map of unknown length is fine, a custom
        /// `Serialize` that fails is not), otherwise as [`Producer::send`].
        pub fn send<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<()> {
            encode_into_claim(value, 0, |n| self.tx.claim(n), |_| {})
        }

        /// Like [`Self::send`] if there is room now (`Full` otherwise).
        ///
        /// ```
        /// use shmpipe::typed::SerdeSender;
        /// let (tx, _rx) = shmpipe::Builder::new().capacity(64).in_process()?.split()?;
        /// let mut tx = SerdeSender::new(tx);
        /// tx.try_send(&"x".repeat(20))?;
        /// assert!(matches!(tx.try_send(&"y".repeat(20)), Err(shmpipe::Error::Full)));
        /// # Ok::<(), shmpipe::Error>(())
        /// ```
        ///
        /// # Errors
        /// As [`Self::send`], plus `Full`.
        pub fn try_send<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<()> {
            encode_into_claim(value, 0, |n| self.tx.try_claim(n), |_| {})
        }

        /// Like [`Self::send`], waiting at most `timeout` for room.
        ///
        /// ```
        /// use std::time::Duration;
        /// use shmpipe::typed::SerdeSender;
        /// let (tx, _rx) = shmpipe::Builder::new().capacity(64).in_process()?.split()?;
        /// let mut tx = SerdeSender::new(tx);
        /// tx.send_timeout(&"x".repeat(20), Duration::from_millis(10))?;
        /// let r = tx.send_timeout(&"y".repeat(20), Duration::from_millis(10));
        /// assert!(matches!(r, Err(shmpipe::Error::Timeout)));
        /// # Ok::<(), shmpipe::Error>(())
        /// ```
        ///
        /// # Errors
        /// As [`Self::send`], plus `Timeout`.
        pub fn send_timeout<T: Serialize + ?Sized>(
            &mut self,
            value: &T,
            timeout: Duration,
        ) -> Result<()> {
            encode_into_claim(value, 0, |n| self.tx.claim_timeout(n, timeout), |_| {})
        }
    }

    /// Receives serde values, decoded straight from the ring.
    #[derive(Debug)]
    pub struct SerdeReceiver<V: Variant = LockFree> {
        rx: Consumer<V>,
    }

    impl<V: Variant> SerdeReceiver<V> {
        /// Wrap a consumer.
        ///
        /// ```
        /// use shmpipe::typed::SerdeReceiver;
        /// let (mut tx, rx) = shmpipe::Builder::new().capacity(4096).in_process()?.split()?;
        /// let mut rx = SerdeReceiver::new(rx);
        /// tx.send(&[3, b'a', b'b', b'c'])?; // postcard for "abc", from any producer
        /// assert_eq!(rx.recv::<String>()?, "abc");
        /// # Ok::<(), shmpipe::Error>(())
        /// ```
        pub fn new(rx: Consumer<V>) -> Self {
            SerdeReceiver { rx }
        }

        /// The consumer, for byte-level calls.
        ///
        /// ```
        /// use shmpipe::typed::SerdeReceiver;
        /// let (mut tx, rx) = shmpipe::Builder::new().capacity(4096).in_process()?.split()?;
        /// let mut rx = SerdeReceiver::new(rx);
        /// tx.send(&[0])?;
        /// assert_eq!(rx.get_mut().len_bytes(), 16);
        /// # Ok::<(), shmpipe::Error>(())
        /// ```
        pub fn get_mut(&mut self) -> &mut Consumer<V> {
            &mut self.rx
        }

        /// Unwrap the consumer.
        ///
        /// ```
        /// use shmpipe::typed::SerdeReceiver;
        /// let (mut tx, rx) = shmpipe::Builder::new().capacity(4096).in_process()?.split()?;
        /// let mut rx = SerdeReceiver::new(rx).into_inner();
        /// tx.send(b"bytes")?;
        /// rx.recv_with(|m| assert_eq!(m, b"bytes"))?;
        /// # Ok::<(), shmpipe::Error>(())
        /// ```
        pub fn into_inner(self) -> Consumer<V> {
            self.rx
        }

        /// Receive and decode the next message as a `T`, waiting for it.
        ///
        /// ```
        /// use shmpipe::typed::{SerdeReceiver, SerdeSender};
        /// let (tx, rx) = shmpipe::Builder::new().capacity(4096).in_process()?.split()?;
        /// let (mut tx, mut rx) = (SerdeSender::new(tx), SerdeReceiver::new(rx));
        /// tx.send(&(1u32, 2u32))?;
        /// assert!(matches!(rx.recv::<u32>(), Err(shmpipe::Error::Decode { .. }))); // bytes left over
        /// tx.send(&(1u32, 2u32))?;
        /// assert_eq!(rx.recv::<(u32, u32)>()?, (1, 2));
        /// # Ok::<(), shmpipe::Error>(())
        /// ```
        ///
        /// # Errors
        /// `Decode` if it is not a postcard encoding of a `T` (with no bytes
        /// left over; the message is consumed), otherwise as
        /// [`Consumer::recv_with`].
        pub fn recv<T: DeserializeOwned>(&mut self) -> Result<T> {
            self.rx.recv_with(decode::<T>)?
        }

        /// Like [`Self::recv`] if a message is waiting now.
        ///
        /// ```
        /// use shmpipe::typed::{SerdeReceiver, SerdeSender};
        /// let (tx, rx) = shmpipe::Builder::new().capacity(4096).in_process()?.split()?;
        /// let (mut tx, mut rx) = (SerdeSender::new(tx), SerdeReceiver::new(rx));
        /// assert!(matches!(rx.try_recv::<bool>(), Err(shmpipe::Error::Empty)));
        /// tx.send(&true)?;
        /// assert!(rx.try_recv::<bool>()?);
        /// # Ok::<(), shmpipe::Error>(())
        /// ```
        ///
        /// # Errors
        /// As [`Self::recv`], plus `Empty`.
        pub fn try_recv<T: DeserializeOwned>(&mut self) -> Result<T> {
            self.rx.try_recv_with(decode::<T>)?
        }

        /// Like [`Self::recv`], waiting at most `timeout`.
        ///
        /// ```
        /// use std::time::Duration;
        /// use shmpipe::typed::SerdeReceiver;
        /// let (_tx, rx) = shmpipe::Builder::new().capacity(4096).in_process()?.split()?;
        /// let mut rx = SerdeReceiver::new(rx);
        /// let r = rx.recv_timeout::<String>(Duration::from_millis(10));
        /// assert!(matches!(r, Err(shmpipe::Error::Timeout)));
        /// # Ok::<(), shmpipe::Error>(())
        /// ```
        ///
        /// # Errors
        /// As [`Self::recv`], plus `Timeout`.
        pub fn recv_timeout<T: DeserializeOwned>(&mut self, timeout: Duration) -> Result<T> {
            self.rx.recv_with_timeout(timeout, decode::<T>)?
        }
    }
}
