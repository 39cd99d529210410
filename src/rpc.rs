//! Request/response over two rings (feature `rpc`): a [`Client`] sends
//! requests on one ring and receives responses on the other; a [`Server`]
//! does the opposite.
//!
//! **Two rings, not one segment.** A segment holds exactly one SPSC ring,
//! with one producer and one consumer role lock; putting two rings in one
//! segment would change the on-memory format and the role model of the
//! core. Two ordinary rings need no core change, and each keeps its own
//! peer-death detection, so the two directions fail independently and
//! visibly. They are made together:
//!
//! - named: [`listen`] creates `NAME.req` and `NAME.resp` (the server is the
//!   consumer of requests and the producer of responses) and [`connect`]
//!   opens both ([`connect_timeout`] waits for a server that is starting);
//!   a client that dies can be replaced by a new one, and a server that
//!   dies too: the next `listen` on the name takes it over;
//! - anonymous: [`Rings::anonymous`] makes two sealed memfds to share
//!   across `fork()`, and `shmpipe::process` spawns a child with them.
//!
//! **Wire format.** Every message is an 8-byte little-endian request id
//! followed by the body. The client picks ids from a random start, so a
//! replacement client never mistakes a dead client's late responses for its
//! own.
//!
//! **Matching.** Many requests may be in flight: [`Client::send_request`]
//! returns the id, [`Client::recv_response`] returns whichever response
//! comes next, [`Client::wait_response`] the one for a given id (others that
//! arrive meanwhile are kept for later).
//!
//! **Waiting.** As the rings' own calls: a method waits per the wait
//! strategy until it can complete or the peer is gone; its `_timeout`
//! twin waits at most a given time (`Timeout`); `try_` ones do not wait. A response whose id is not in
//! flight (its call timed out, or it was cancelled) is dropped and counted
//! in [`Client::late_responses`]; it never reaches another call.
//!
//! **Failure.** When the server closes or dies, every pending call ends
//! with `Disconnected` or `PeerDied` (once the responses it did commit are
//! received), within the ring's 20 ms liveness slice; the error sticks.
//!
//! ```
//! use std::time::Duration;
//! use shmpipe::{rpc, Builder};
//!
//! let rings = rpc::Rings::anonymous(&Builder::new().capacity(64 * 1024))?;
//! // Usually `fork()` here: the client in one process, the server in the other.
//! let (mut client, mut server) = rings.split()?;
//! let id = client.send_request(b"ping")?;
//! let req = server.next_request_timeout(Duration::from_secs(1))?;
//! server.respond(req.id, &[req.body.as_slice(), b"-pong"].concat())?;
//! assert_eq!(client.wait_response_timeout(id, Duration::from_secs(1))?, b"ping-pong");
//! # Ok::<(), shmpipe::Error>(())
//! ```

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasher, Hasher};
use std::time::{Duration, Instant};

use ::serde::de::DeserializeOwned;
use ::serde::Serialize;

use crate::builder::{Builder, Pair};
use crate::error::{Error, Result};
use crate::ring::{Claim, Consumer, LockFree, Producer, Variant};
use crate::segment::Role;

/// Bytes of the request id in front of every message.
pub const ID_LEN: usize = 8;

/// A request id, unique among one client's requests.
pub type RequestId = u64;

/// How long a client waiting for room in the request ring sleeps before it
/// drains arrived responses into its buffer again (so that a server blocked
/// on a full response ring can always make progress).
const SEND_SLICE: Duration = Duration::from_millis(1);

/// A request as the server receives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// Id to answer with ([`Server::respond`]).
    pub id: RequestId,
    /// The request body.
    pub body: Vec<u8>,
}

fn split_id(msg: &[u8]) -> Result<(RequestId, &[u8])> {
    if msg.len() < ID_LEN {
        return Err(Error::Decode {
            ty: "shmpipe::rpc message (8-byte id + body)",
            len: msg.len(),
            reason: format!("it is shorter than the {ID_LEN}-byte request id"),
        });
    }
    let (id, body) = msg.split_at(ID_LEN);
    let mut word = [0u8; ID_LEN];
    word.copy_from_slice(id);
    Ok((u64::from_le_bytes(word), body))
}

/// Write `id` then `body` into a claim of `ID_LEN + body.len()` bytes and commit.
fn put<V: Variant>(claim: Result<Claim<'_, V>>, id: RequestId, body: &[u8]) -> Result<()> {
    let mut c = claim.map_err(|e| body_too_large(e, body.len()))?;
    c[..ID_LEN].copy_from_slice(&id.to_le_bytes());
    c[ID_LEN..].copy_from_slice(body);
    c.commit();
    Ok(())
}

/// Report `TooLarge` in terms of the body the caller gave.
fn body_too_large(e: Error, len: usize) -> Error {
    match e {
        Error::TooLarge { max, .. } => Error::TooLarge {
            len,
            max: max.saturating_sub(ID_LEN),
        },
        e => e,
    }
}

fn random_start() -> u64 {
    // std's RandomState is seeded from the OS's random source.
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    h.finish()
}

fn deadline_after(timeout: Duration) -> Option<Instant> {
    Instant::now().checked_add(timeout)
}

fn remaining(deadline: Option<Instant>) -> Duration {
    deadline.map_or(Duration::MAX, |d| {
        d.saturating_duration_since(Instant::now())
    })
}

/// The names of the two rings of the named pair `name`.
fn ring_names(name: &str) -> Result<(String, String)> {
    let req = format!("{name}.req");
    let resp = format!("{name}.resp");
    crate::segment::validate_name(&resp)?;
    crate::segment::validate_name(&req)?;
    Ok((req, resp))
}

/// Create the named pair `NAME.req` / `NAME.resp` and serve on it. The
/// segments are removed when the server is dropped (unless the builder says
/// `unlink_on_drop(false)`).
///
/// A server that was killed leaves its two names behind. `listen` takes
/// over such a name: if `NAME.req` (or `NAME.resp`) exists and no live
/// process holds the server's role on it (the kernel released the dead
/// server's role lock), the stale segment is removed and created anew, so
/// a client still attached to it gets `PeerDied` and reconnects to the new
/// one. A live server's rings are never touched.
///
/// # Errors
/// As [`Builder::create_consumer`] (`InvalidName` if `NAME.resp` is not a
/// valid name); `RoleTaken` if a live server listens on `name`;
/// `AlreadyExists` if another `listen` created the name meanwhile; the
/// open errors if an existing `NAME.req`/`NAME.resp` is not a segment of
/// ours (`NotShmpipe`, `NotOwner`, ...; it is left alone).
///
/// ```
///     use shmpipe::{rpc, Builder};
///     let name = format!("/doc-listen-{}", std::process::id());
///     let mut server = rpc::listen(&name, &Builder::new())?;
///     // Usually in another process:
///     let mut client = rpc::connect(&name, &Builder::new())?;
///     let id = client.send_request(b"hi")?;
///     assert_eq!(server.next_request()?.id, id);
/// # Ok::<(), shmpipe::Error>(())
/// ```
pub fn listen<V: Variant>(name: &str, builder: &Builder<V>) -> Result<Server<V>> {
    let (req, resp) = ring_names(name)?;
    let rx = create_or_take_over(&req, Role::Consumer, || builder.create_consumer(&req))?;
    let tx = create_or_take_over(&resp, Role::Producer, || builder.create_producer(&resp))?;
    Ok(Server::new(tx, rx))
}

/// Create one of a server's rings; if the name exists and no live process
/// holds the server's `role` on it, remove it and create it again.
fn create_or_take_over<T>(name: &str, role: Role, create: impl Fn() -> Result<T>) -> Result<T> {
    match create() {
        Err(Error::AlreadyExists { .. }) => {}
        r => return r,
    }
    match crate::segment::remove_if_role_free(name, role) {
        Ok(()) | Err(Error::NotFound { .. }) => create(),
        Err(e) => Err(e),
    }
}

/// Open the named pair `NAME.req` / `NAME.resp` made by [`listen`]. A dead
/// client's roles are taken over.
///
/// # Errors
/// As [`Builder::open_producer`]; `RoleTaken` while another live client
/// is connected.
///
/// ```
///     use shmpipe::{rpc, Builder, Error};
///     let name = format!("/doc-connect-{}", std::process::id());
///     assert!(matches!(rpc::connect(&name, &Builder::new()), Err(Error::NotFound { .. })));
///     let _server = rpc::listen(&name, &Builder::new())?;
///     let client = rpc::connect(&name, &Builder::new())?;
///     assert_eq!(client.in_flight(), 0);
/// # Ok::<(), shmpipe::Error>(())
/// ```
pub fn connect<V: Variant>(name: &str, builder: &Builder<V>) -> Result<Client<V>> {
    let (req, resp) = ring_names(name)?;
    let rx = builder.open_consumer(&resp)?;
    let tx = builder.open_producer(&req)?;
    Ok(Client::new(tx, rx))
}

/// [`connect`], waiting up to `timeout` for a server that is starting: the
/// names may not exist yet, be half made, or still be a dead server's
/// (which the starting server's [`listen`] replaces). Returns as soon as a
/// live server holds both rings; checks every 2 ms.
///
/// # Errors
/// As [`connect`]. When `timeout` passes without a live server: the last
/// attempt's error, `NotFound` (no server made the names) or `PeerDied`
/// (only a server that is gone left them).
///
/// ```
///     use std::time::Duration;
///     use shmpipe::{rpc, Builder};
///     let name = format!("/doc-connect-timeout-{}", std::process::id());
///     let n = name.clone();
///     let server = std::thread::spawn(move || {
///         std::thread::sleep(Duration::from_millis(20)); // a server that is starting
///         rpc::listen(&n, &Builder::new())?.serve(|b| b.to_vec())
///     });
///     let mut client = rpc::connect_timeout(&name, &Builder::new(), Duration::from_secs(10))?;
///     assert_eq!(client.call(b"echo")?, b"echo");
///     client.close()?;
///     server.join().unwrap()?;
/// # Ok::<(), shmpipe::Error>(())
/// ```
#[cfg(not(any(loom, miri)))]
pub fn connect_timeout<V: Variant>(
    name: &str,
    builder: &Builder<V>,
    timeout: Duration,
) -> Result<Client<V>> {
    let (req, resp) = ring_names(name)?;
    let deadline = deadline_after(timeout);
    loop {
        // Look before attaching: attaching to a server's rings and leaving
        // again would close the client's side under a server that is
        // still setting up (its `serve` would end with `Disconnected`).
        let alive = crate::inspect(&req).and_then(|r| {
            let s = crate::inspect(&resp)?;
            Ok(r.consumer_alive && s.producer_alive)
        });
        let e = match alive {
            Ok(true) => return connect(name, builder),
            Ok(false) => Error::PeerDied,
            Err(e @ (Error::NotFound { .. } | Error::NotInitialized { .. })) => e,
            Err(e) => return Err(e),
        };
        let left = remaining(deadline);
        if left.is_zero() {
            return Err(e);
        }
        std::thread::sleep(left.min(Duration::from_millis(2)));
    }
}

/// Two anonymous rings made together, to share across `fork()`: call
/// [`Rings::into_client`] in one process and [`Rings::into_server`] in the
/// other.
#[derive(Debug)]
pub struct Rings<V: Variant = LockFree> {
    /// Requests: client to server.
    pub req: Pair<V>,
    /// Responses: server to client.
    pub resp: Pair<V>,
}

impl<V: Variant> Rings<V> {
    /// Two anonymous sealed-memfd rings with `builder`'s options.
    ///
    /// ```
    /// use shmpipe::{rpc, Builder};
    /// let rings = rpc::Rings::anonymous(&Builder::new().capacity(64 * 1024))?;
    /// // fork() here: `rings.into_client()` in one process, `into_server()` in the other.
    /// # let _ = rings;
    /// # Ok::<(), shmpipe::Error>(())
    /// ```
    ///
    /// # Errors
    /// As [`Builder::anonymous`].
    pub fn anonymous(builder: &Builder<V>) -> Result<Self> {
        Ok(Rings {
            req: builder.anonymous()?,
            resp: builder.anonymous()?,
        })
    }

    /// Two in-process (heap) rings, for threads.
    ///
    /// ```
    /// use shmpipe::{rpc, Builder};
    /// let (client, server) = rpc::Rings::in_process(&Builder::new())?.split()?;
    /// std::thread::spawn(move || drop(server));
    /// # drop(client);
    /// # Ok::<(), shmpipe::Error>(())
    /// ```
    ///
    /// # Errors
    /// As [`Builder::in_process`].
    pub fn in_process(builder: &Builder<V>) -> Result<Self> {
        Ok(Rings {
            req: builder.in_process()?,
            resp: builder.in_process()?,
        })
    }

    /// Attach the client's ends (producer of requests, consumer of responses).
    ///
    /// ```
    /// use shmpipe::{rpc, Builder};
    /// let rings = rpc::Rings::anonymous(&Builder::new())?;
    /// // In the parent after fork() (the child calls `into_server`):
    /// let client = rings.into_client()?;
    /// assert_eq!(client.in_flight(), 0);
    /// # Ok::<(), shmpipe::Error>(())
    /// ```
    ///
    /// # Errors
    /// As [`Pair::into_producer`].
    pub fn into_client(self) -> Result<Client<V>> {
        Ok(Client::new(
            self.req.into_producer()?,
            self.resp.into_consumer()?,
        ))
    }

    /// Attach the server's ends (consumer of requests, producer of responses).
    ///
    /// ```
    /// use shmpipe::{rpc, Builder};
    /// let rings = rpc::Rings::anonymous(&Builder::new())?;
    /// // In the child after fork() (the parent calls `into_client`):
    /// let server = rings.into_server()?;
    /// assert_eq!(server.served(), 0);
    /// # Ok::<(), shmpipe::Error>(())
    /// ```
    ///
    /// # Errors
    /// As [`Pair::into_consumer`].
    pub fn into_server(self) -> Result<Server<V>> {
        Ok(Server::new(
            self.resp.into_producer()?,
            self.req.into_consumer()?,
        ))
    }

    /// Both, in this process (for threads).
    ///
    /// ```
    /// use shmpipe::{rpc, Builder};
    /// let (mut client, mut server) = rpc::Rings::in_process(&Builder::new())?.split()?;
    /// let id = client.send_request(b"x")?;
    /// assert_eq!(server.next_request()?.id, id);
    /// # Ok::<(), shmpipe::Error>(())
    /// ```
    ///
    /// # Errors
    /// As [`Pair::split`].
    pub fn split(self) -> Result<(Client<V>, Server<V>)> {
        let (req_tx, req_rx) = self.req.split()?;
        let (resp_tx, resp_rx) = self.resp.split()?;
        Ok((Client::new(req_tx, resp_rx), Server::new(resp_tx, req_rx)))
    }
}

/// How the server went away (sticky in the client).
#[derive(Debug, Clone, Copy)]
enum Gone {
    Closed,
    Died,
}

impl Gone {
    fn error(self) -> Error {
        match self {
            Gone::Closed => Error::Disconnected,
            Gone::Died => Error::PeerDied,
        }
    }
}

/// The calling side: sends requests, matches responses by id.
#[derive(Debug)]
pub struct Client<V: Variant = LockFree> {
    tx: Producer<V>,
    rx: Consumer<V>,
    next_id: RequestId,
    /// Sent, not yet answered, not cancelled.
    pending: HashSet<RequestId>,
    /// Answered while the caller waited for another id.
    ready: HashMap<RequestId, Vec<u8>>,
    late: u64,
    gone: Option<Gone>,
}

impl<V: Variant> Client<V> {
    /// A client over a request producer and a response consumer.
    ///
    /// ```
    /// use shmpipe::{rpc, Builder};
    /// let (req_tx, req_rx) = Builder::new().in_process()?.split()?;
    /// let (resp_tx, resp_rx) = Builder::new().in_process()?.split()?;
    /// let mut client = rpc::Client::new(req_tx, resp_rx);
    /// let mut server = rpc::Server::new(resp_tx, req_rx);
    /// let id = client.send_request(b"x")?;
    /// let req = server.next_request()?;
    /// server.respond(req.id, b"y")?;
    /// assert_eq!(client.wait_response(id)?, b"y");
    /// # Ok::<(), shmpipe::Error>(())
    /// ```
    pub fn new(tx: Producer<V>, rx: Consumer<V>) -> Self {
        Client {
            tx,
            rx,
            next_id: random_start(),
            pending: HashSet::new(),
            ready: HashMap::new(),
            late: 0,
            gone: None,
        }
    }

    /// Requests sent and not yet answered (nor cancelled, nor ended by the
    /// server's death).
    ///
    /// ```
    /// # use shmpipe::{rpc, Builder};
    /// # let (mut client, mut server) = rpc::Rings::in_process(&Builder::new())?.split()?;
    /// let id = client.send_request(b"a")?;
    /// assert_eq!(client.in_flight(), 1);
    /// # let req = server.next_request()?;
    /// # server.respond(req.id, b"b")?;
    /// client.wait_response(id)?;
    /// assert_eq!(client.in_flight(), 0);
    /// # Ok::<(), shmpipe::Error>(())
    /// ```
    pub fn in_flight(&self) -> usize {
        self.pending.len() + self.ready.len()
    }

    /// Responses dropped because their id was not in flight (a timed-out
    /// or cancelled call, or an unknown id).
    ///
    /// ```
    /// # use shmpipe::{rpc, Builder};
    /// # let (mut client, mut server) = rpc::Rings::in_process(&Builder::new())?.split()?;
    /// let id = client.send_request(b"a")?;
    /// client.cancel(id);
    /// # let req = server.next_request()?;
    /// server.respond(req.id, b"too late")?;
    /// let next = client.send_request(b"b")?;
    /// # let req = server.next_request()?;
    /// # server.respond(req.id, b"c")?;
    /// assert_eq!(client.wait_response(next)?, b"c");
    /// assert_eq!(client.late_responses(), 1);
    /// # Ok::<(), shmpipe::Error>(())
    /// ```
    pub fn late_responses(&self) -> u64 {
        self.late
    }

    /// Largest request body the request ring accepts.
    ///
    /// ```
    /// use shmpipe::{rpc, Builder, Error};
    /// let (mut client, _server) = rpc::Rings::in_process(&Builder::new().capacity(4096))?.split()?;
    /// let too_big = vec![0u8; client.max_request() + 1];
    /// assert!(matches!(client.send_request(&too_big), Err(Error::TooLarge { .. })));
    /// # Ok::<(), shmpipe::Error>(())
    /// ```
    pub fn max_request(&self) -> usize {
        self.tx.max_message().saturating_sub(ID_LEN)
    }

    /// The two rings (requests, responses), for statistics.
    ///
    /// ```
    /// # use shmpipe::{rpc, Builder};
    /// # let (mut client, mut server) = rpc::Rings::in_process(&Builder::new())?.split()?;
    /// client.send_request(b"abc")?;
    /// let (requests, _responses) = client.rings();
    /// assert_eq!(requests.stats().messages_sent, 1);
    /// # drop(server);
    /// # Ok::<(), shmpipe::Error>(())
    /// ```
    pub fn rings(&self) -> (&Producer<V>, &Consumer<V>) {
        (&self.tx, &self.rx)
    }

    fn check_gone(&mut self) -> Result<()> {
        match self.gone {
            Some(g) => Err(g.error()),
            None => Ok(()),
        }
    }

    /// Note the server's departure: every pending call ends with it.
    fn note(&mut self, e: Error) -> Error {
        let g = match e {
            Error::Disconnected => Gone::Closed,
            Error::PeerDied => Gone::Died,
            e => return e,
        };
        self.gone = Some(g);
        self.pending.clear();
        g.error()
    }

    /// Receive responses without waiting and keep those in flight.
    fn stash_arrived(&mut self) -> Result<()> {
        loop {
            match self.recv_one(None, true) {
                Ok((id, body)) => {
                    self.ready.insert(id, body);
                }
                Err(Error::Empty) => return Ok(()),
                Err(e) => return Err(e),
            }
        }
    }

    /// Send one request (waiting for room until `deadline`); while the
    /// request ring is full, keep draining responses so the server is
    /// never blocked on us.
    fn send_until(
        &mut self,
        deadline: Option<Instant>,
        len: usize,
        write: impl Fn(&mut [u8]),
    ) -> Result<RequestId> {
        self.check_gone()?;
        let id = self.next_id;
        loop {
            let r = match self.tx.try_claim(ID_LEN + len) {
                Err(Error::Full) => {
                    self.stash_arrived()?;
                    let left = remaining(deadline);
                    if left.is_zero() {
                        return Err(Error::Timeout);
                    }
                    match self.tx.claim_timeout(ID_LEN + len, left.min(SEND_SLICE)) {
                        Err(Error::Timeout) => continue,
                        r => r,
                    }
                }
                r => r,
            };
            let mut c = match r.map_err(|e| body_too_large(e, len)) {
                Ok(c) => c,
                Err(e) => return Err(self.note(e)),
            };
            c[..ID_LEN].copy_from_slice(&id.to_le_bytes());
            write(&mut c[ID_LEN..]);
            c.commit();
            break;
        }
        self.next_id = id.wrapping_add(1);
        self.pending.insert(id);
        Ok(id)
    }

    /// Send a request without waiting for its response; returns its id.
    /// Waits for room in the request ring per its wait strategy (bounded
    /// by the server's liveness).
    ///
    /// ```
    /// # use shmpipe::{rpc, Builder};
    /// # let (mut client, mut server) = rpc::Rings::in_process(&Builder::new())?.split()?;
    /// let a = client.send_request(b"first")?;
    /// let b = client.send_request(b"second")?;
    /// assert_ne!(a, b);
    /// assert_eq!(server.next_request()?.body, b"first");
    /// # Ok::<(), shmpipe::Error>(())
    /// ```
    ///
    /// # Errors
    /// `TooLarge` (the body's length and [`Self::max_request`]),
    /// `Disconnected`/`PeerDied` if the server is gone, `Corrupted`.
    pub fn send_request(&mut self, body: &[u8]) -> Result<RequestId> {
        self.send_until(None, body.len(), |b| b.copy_from_slice(body))
    }

    /// Like [`Self::send_request`], waiting at most `timeout` for room.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use shmpipe::{rpc, Builder, Error};
    /// let (mut client, _server) = rpc::Rings::in_process(&Builder::new().capacity(4096))?.split()?;
    /// // Fill the request ring: nobody serves it.
    /// while client.send_request_timeout(&[0; 512], Duration::ZERO).is_ok() {}
    /// let r = client.send_request_timeout(&[0; 512], Duration::from_millis(10));
    /// assert!(matches!(r, Err(Error::Timeout)));
    /// # Ok::<(), shmpipe::Error>(())
    /// ```
    ///
    /// # Errors
    /// As [`Self::send_request`], plus `Timeout` (nothing was sent).
    pub fn send_request_timeout(&mut self, body: &[u8], timeout: Duration) -> Result<RequestId> {
        self.send_until(deadline_after(timeout), body.len(), |b| {
            b.copy_from_slice(body)
        })
    }

    /// One response from the ring, in flight or not; unknown ids are
    /// dropped and counted here. `try_only`: do not wait (`Empty`);
    /// `deadline` `None`: wait per the ring's wait strategy.
    fn recv_one(
        &mut self,
        deadline: Option<Instant>,
        try_only: bool,
    ) -> Result<(RequestId, Vec<u8>)> {
        let split = |m: &[u8]| split_id(m).map(|(id, b)| (id, b.to_vec()));
        loop {
            let r = match (try_only, deadline) {
                (true, _) => self.rx.try_recv_with(split),
                (false, None) => self.rx.recv_with(split),
                (false, Some(_)) => self.rx.recv_with_timeout(remaining(deadline), split),
            };
            let (id, body) = match r {
                Ok(r) => r?,
                Err(e) => return Err(self.note(e)),
            };
            if self.pending.remove(&id) {
                return Ok((id, body));
            }
            self.late += 1;
        }
    }

    /// The next response to any request in flight, waiting for it per the
    /// ring's wait strategy. Its request is then no longer in flight.
    ///
    /// ```
    /// # use shmpipe::{rpc, Builder};
    /// # let (mut client, mut server) = rpc::Rings::in_process(&Builder::new())?.split()?;
    /// let id = client.send_request(b"ping")?;
    /// # let req = server.next_request()?;
    /// # server.respond(req.id, b"pong")?;
    /// assert_eq!(client.recv_response()?, (id, b"pong".to_vec()));
    /// # Ok::<(), shmpipe::Error>(())
    /// ```
    ///
    /// # Errors
    /// `Empty` if no request is in flight, `Disconnected` / `PeerDied`
    /// (every pending call ended: the server is gone), `Decode` for a
    /// response without an id (dropped), `Corrupted`.
    pub fn recv_response(&mut self) -> Result<(RequestId, Vec<u8>)> {
        self.recv_response_until(None)
    }

    /// [`Self::recv_response`], waiting at most `timeout`.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use shmpipe::{rpc, Builder, Error};
    /// # let (mut client, _server) = rpc::Rings::in_process(&Builder::new())?.split()?;
    /// client.send_request(b"unanswered")?;
    /// let r = client.recv_response_timeout(Duration::from_millis(10));
    /// assert!(matches!(r, Err(Error::Timeout)));
    /// # Ok::<(), shmpipe::Error>(())
    /// ```
    ///
    /// # Errors
    /// As [`Self::recv_response`], plus `Timeout`.
    pub fn recv_response_timeout(&mut self, timeout: Duration) -> Result<(RequestId, Vec<u8>)> {
        self.recv_response_until(deadline_after(timeout))
    }

    fn recv_response_until(&mut self, deadline: Option<Instant>) -> Result<(RequestId, Vec<u8>)> {
        if let Some(&id) = self.ready.keys().next() {
            let body = self.ready.remove(&id).unwrap_or_default();
            return Ok((id, body));
        }
        self.check_gone()?;
        if self.pending.is_empty() {
            return Err(Error::Empty);
        }
        self.recv_one(deadline, false)
    }

    /// The response to `id`, waiting for it per the ring's wait strategy;
    /// responses to other requests that arrive meanwhile are kept for
    /// [`Self::recv_response`] and [`Self::wait_response`].
    ///
    /// ```
    /// # use shmpipe::{rpc, Builder};
    /// # let (mut client, mut server) = rpc::Rings::in_process(&Builder::new())?.split()?;
    /// let first = client.send_request(b"1")?;
    /// let second = client.send_request(b"2")?;
    /// # for _ in 0..2 { let r = server.next_request()?; server.respond(r.id, &r.body)?; }
    /// assert_eq!(client.wait_response(second)?, b"2"); // `first`'s answer is kept
    /// assert_eq!(client.wait_response(first)?, b"1");
    /// # Ok::<(), shmpipe::Error>(())
    /// ```
    ///
    /// # Errors
    /// `InvalidOption` if `id` is not in flight; otherwise as
    /// [`Self::recv_response`].
    pub fn wait_response(&mut self, id: RequestId) -> Result<Vec<u8>> {
        self.wait_response_until(id, None)
    }

    /// [`Self::wait_response`], waiting at most `timeout`. A timeout leaves
    /// `id` in flight (see [`Self::cancel`]).
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use shmpipe::{rpc, Builder, Error};
    /// # let (mut client, _server) = rpc::Rings::in_process(&Builder::new())?.split()?;
    /// let id = client.send_request(b"slow")?;
    /// let r = client.wait_response_timeout(id, Duration::from_millis(10));
    /// assert!(matches!(r, Err(Error::Timeout)));
    /// assert_eq!(client.in_flight(), 1);
    /// # Ok::<(), shmpipe::Error>(())
    /// ```
    ///
    /// # Errors
    /// As [`Self::wait_response`], plus `Timeout`.
    pub fn wait_response_timeout(&mut self, id: RequestId, timeout: Duration) -> Result<Vec<u8>> {
        self.wait_response_until(id, deadline_after(timeout))
    }

    fn wait_response_until(&mut self, id: RequestId, deadline: Option<Instant>) -> Result<Vec<u8>> {
        if let Some(body) = self.ready.remove(&id) {
            return Ok(body);
        }
        self.check_gone()?;
        if !self.pending.contains(&id) {
            return Err(Error::InvalidOption {
                reason: format!(
                    "request id {id:#x} is not in flight (already answered, cancelled, timed out in call(), or never sent)"
                ),
            });
        }
        loop {
            let (got, body) = self.recv_one(deadline, false)?;
            if got == id {
                return Ok(body);
            }
            self.ready.insert(got, body);
        }
    }

    /// Stop waiting for `id`: its response, if it still comes, is dropped
    /// and counted in [`Self::late_responses`]. Returns whether it was in
    /// flight (an already-arrived response is discarded and counted).
    ///
    /// ```
    /// # use shmpipe::{rpc, Builder};
    /// # let (mut client, mut server) = rpc::Rings::in_process(&Builder::new())?.split()?;
    /// let id = client.send_request(b"never mind")?;
    /// assert!(client.cancel(id));
    /// assert!(!client.cancel(id));
    /// assert_eq!(client.in_flight(), 0);
    /// # drop(server);
    /// # Ok::<(), shmpipe::Error>(())
    /// ```
    pub fn cancel(&mut self, id: RequestId) -> bool {
        if self.ready.remove(&id).is_some() {
            self.late += 1;
            return true;
        }
        self.pending.remove(&id)
    }

    /// Send `body` and wait for its response, per the rings' wait strategy.
    ///
    /// ```
    /// # use shmpipe::{rpc, Builder};
    /// let (mut client, mut server) = rpc::Rings::in_process(&Builder::new())?.split()?;
    /// let t = std::thread::spawn(move || server.serve(|body| body.to_ascii_uppercase()));
    /// assert_eq!(client.call(b"hello")?, b"HELLO");
    /// client.close()?; // the server's `serve` returns
    /// # t.join().unwrap()?;
    /// # Ok::<(), shmpipe::Error>(())
    /// ```
    ///
    /// # Errors
    /// As [`Self::send_request`] and [`Self::wait_response`].
    pub fn call(&mut self, body: &[u8]) -> Result<Vec<u8>> {
        self.call_until(body, None)
    }

    /// [`Self::call`], at most `timeout` in all. On timeout the request is
    /// cancelled: a late response is dropped and counted, never returned
    /// to a later call.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use shmpipe::{rpc, Builder, Error};
    /// # let (mut client, _server) = rpc::Rings::in_process(&Builder::new())?.split()?;
    /// let r = client.call_timeout(b"nobody answers", Duration::from_millis(10));
    /// assert!(matches!(r, Err(Error::Timeout)));
    /// assert_eq!(client.in_flight(), 0); // cancelled
    /// # Ok::<(), shmpipe::Error>(())
    /// ```
    ///
    /// # Errors
    /// As [`Self::call`], plus `Timeout`.
    pub fn call_timeout(&mut self, body: &[u8], timeout: Duration) -> Result<Vec<u8>> {
        self.call_until(body, deadline_after(timeout))
    }

    fn call_until(&mut self, body: &[u8], deadline: Option<Instant>) -> Result<Vec<u8>> {
        let id = self.send_until(deadline, body.len(), |b| b.copy_from_slice(body))?;
        self.finish_call(id, deadline)
    }

    fn finish_call(&mut self, id: RequestId, deadline: Option<Instant>) -> Result<Vec<u8>> {
        match self.wait_response_until(id, deadline) {
            Err(Error::Timeout) => {
                self.cancel(id);
                Err(Error::Timeout)
            }
            r => r,
        }
    }

    /// [`Self::call`] with postcard-encoded values: `req` is encoded
    /// straight into the request ring, the response decoded as `Resp`.
    ///
    /// ```
    /// # use shmpipe::{rpc, Builder};
    /// let (mut client, mut server) = rpc::Rings::in_process(&Builder::new())?.split()?;
    /// let t = std::thread::spawn(move || server.serve_as(|(a, b): (u32, u32)| a + b));
    /// let sum: u32 = client.call_as(&(2u32, 3u32))?;
    /// assert_eq!(sum, 5);
    /// # client.close()?;
    /// # t.join().unwrap()?;
    /// # Ok::<(), shmpipe::Error>(())
    /// ```
    ///
    /// # Errors
    /// As [`Self::call`]; `Decode` if the response is not a `Resp`.
    pub fn call_as<Req: Serialize + ?Sized, Resp: DeserializeOwned>(
        &mut self,
        req: &Req,
    ) -> Result<Resp> {
        self.call_as_until(req, None)
    }

    /// [`Self::call_as`], at most `timeout` in all (cancelled on timeout,
    /// as [`Self::call_timeout`]).
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use shmpipe::{rpc, Builder, Error};
    /// # let (mut client, _server) = rpc::Rings::in_process(&Builder::new())?.split()?;
    /// let r: Result<u32, _> = client.call_as_timeout(&7u32, Duration::from_millis(10));
    /// assert!(matches!(r, Err(Error::Timeout)));
    /// # Ok::<(), shmpipe::Error>(())
    /// ```
    ///
    /// # Errors
    /// As [`Self::call_as`], plus `Timeout`.
    pub fn call_as_timeout<Req: Serialize + ?Sized, Resp: DeserializeOwned>(
        &mut self,
        req: &Req,
        timeout: Duration,
    ) -> Result<Resp> {
        self.call_as_until(req, deadline_after(timeout))
    }

    fn call_as_until<Req: Serialize + ?Sized, Resp: DeserializeOwned>(
        &mut self,
        req: &Req,
        deadline: Option<Instant>,
    ) -> Result<Resp> {
        let id = self.send_request_as_until(req, deadline)?;
        let body = self.finish_call(id, deadline)?;
        crate::typed::decode(&body)
    }

    /// [`Self::send_request`] with a postcard-encoded value.
    ///
    /// ```
    /// # use shmpipe::{rpc, Builder};
    /// # let (mut client, mut server) = rpc::Rings::in_process(&Builder::new())?.split()?;
    /// let id = client.send_request_as(&("add", 2u32))?;
    /// let req = server.next_request()?;
    /// assert_eq!(req.id, id);
    /// # Ok::<(), shmpipe::Error>(())
    /// ```
    ///
    /// # Errors
    /// As [`Self::send_request`].
    pub fn send_request_as<Req: Serialize + ?Sized>(&mut self, req: &Req) -> Result<RequestId> {
        self.send_request_as_until(req, None)
    }

    /// [`Self::send_request_as`], waiting at most `timeout` for room.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use shmpipe::{rpc, Builder};
    /// # let (mut client, _server) = rpc::Rings::in_process(&Builder::new())?.split()?;
    /// client.send_request_as_timeout(&[1u8, 2, 3], Duration::from_millis(10))?;
    /// assert_eq!(client.in_flight(), 1);
    /// # Ok::<(), shmpipe::Error>(())
    /// ```
    ///
    /// # Errors
    /// As [`Self::send_request_as`], plus `Timeout` (nothing was sent).
    pub fn send_request_as_timeout<Req: Serialize + ?Sized>(
        &mut self,
        req: &Req,
        timeout: Duration,
    ) -> Result<RequestId> {
        self.send_request_as_until(req, deadline_after(timeout))
    }

    fn send_request_as_until<Req: Serialize + ?Sized>(
        &mut self,
        req: &Req,
        deadline: Option<Instant>,
    ) -> Result<RequestId> {
        self.check_gone()?;
        let id = self.next_id;
        // A full ring is waited for with the same slices as raw requests.
        let mut left = remaining(deadline);
        loop {
            let r = crate::typed::encode_into_claim(
                req,
                ID_LEN,
                |n| self.tx.claim_timeout(n, left.min(SEND_SLICE)),
                |head| head.copy_from_slice(&id.to_le_bytes()),
            );
            match r {
                Ok(()) => break,
                Err(Error::Timeout) => {
                    self.stash_arrived()?;
                    left = remaining(deadline);
                    if left.is_zero() {
                        return Err(Error::Timeout);
                    }
                }
                Err(e) => return Err(self.note(e)),
            }
        }
        self.next_id = id.wrapping_add(1);
        self.pending.insert(id);
        Ok(id)
    }

    /// Close both rings in order, reporting errors (dropping closes too).
    ///
    /// ```
    /// # use shmpipe::{rpc, Builder, Error};
    /// let (client, mut server) = rpc::Rings::in_process(&Builder::new())?.split()?;
    /// client.close()?;
    /// assert!(matches!(server.next_request(), Err(Error::Disconnected)));
    /// # Ok::<(), shmpipe::Error>(())
    /// ```
    ///
    /// # Errors
    /// As [`Producer::close`].
    pub fn close(self) -> Result<()> {
        let r = self.tx.close();
        self.rx.close().and(r)
    }
}

/// The answering side: receives requests, sends responses by id.
#[derive(Debug)]
pub struct Server<V: Variant = LockFree> {
    tx: Producer<V>,
    rx: Consumer<V>,
    buf: Vec<u8>,
    served: u64,
}

impl<V: Variant> Server<V> {
    /// A server over a response producer and a request consumer (as
    /// [`Client::new`]).
    ///
    /// ```
    /// use shmpipe::{rpc, Builder};
    /// let (req_tx, req_rx) = Builder::new().in_process()?.split()?;
    /// let (resp_tx, resp_rx) = Builder::new().in_process()?.split()?;
    /// let mut client = rpc::Client::new(req_tx, resp_rx);
    /// let mut server = rpc::Server::new(resp_tx, req_rx);
    /// let id = client.send_request(b"x")?;
    /// let req = server.next_request()?;
    /// server.respond(req.id, b"y")?;
    /// assert_eq!(client.wait_response(id)?, b"y");
    /// # Ok::<(), shmpipe::Error>(())
    /// ```
    pub fn new(tx: Producer<V>, rx: Consumer<V>) -> Self {
        Server {
            tx,
            rx,
            buf: Vec::new(),
            served: 0,
        }
    }

    /// Responses sent so far.
    ///
    /// ```
    /// # use shmpipe::{rpc, Builder};
    /// # let (mut client, mut server) = rpc::Rings::in_process(&Builder::new())?.split()?;
    /// # let id = client.send_request(b"a")?;
    /// let req = server.next_request()?;
    /// server.respond(req.id, b"b")?;
    /// assert_eq!(server.served(), 1);
    /// # Ok::<(), shmpipe::Error>(())
    /// ```
    pub fn served(&self) -> u64 {
        self.served
    }

    /// Largest response body the response ring accepts.
    ///
    /// ```
    /// use shmpipe::{rpc, Builder, Error};
    /// let (mut client, mut server) = rpc::Rings::in_process(&Builder::new().capacity(4096))?.split()?;
    /// client.send_request(b"big answer please")?;
    /// let req = server.next_request()?;
    /// let r = server.respond(req.id, &vec![0u8; server.max_response() + 1]);
    /// assert!(matches!(r, Err(Error::TooLarge { .. })));
    /// # Ok::<(), shmpipe::Error>(())
    /// ```
    pub fn max_response(&self) -> usize {
        self.tx.max_message().saturating_sub(ID_LEN)
    }

    /// The two rings (responses, requests), for statistics.
    ///
    /// ```
    /// # use shmpipe::{rpc, Builder};
    /// # let (mut client, mut server) = rpc::Rings::in_process(&Builder::new())?.split()?;
    /// client.send_request(b"abc")?;
    /// let (_responses, requests) = server.rings();
    /// assert_eq!(requests.stats().messages_sent, 1);
    /// # Ok::<(), shmpipe::Error>(())
    /// ```
    pub fn rings(&self) -> (&Producer<V>, &Consumer<V>) {
        (&self.tx, &self.rx)
    }

    /// The next request, if one is waiting now.
    ///
    /// # Errors
    /// `Empty` if none is waiting; `Disconnected` (the client closed) /
    /// `PeerDied` (it died) once every request it sent was received;
    /// `Decode` for a message without an id (dropped); `Corrupted`.
    ///
    /// ```
    /// # use shmpipe::{rpc, Builder, Error};
    /// # let (mut client, mut server) = rpc::Rings::in_process(&Builder::new())?.split()?;
    /// assert!(matches!(server.try_next_request(), Err(Error::Empty)));
    /// client.send_request(b"now")?;
    /// assert_eq!(server.try_next_request()?.body, b"now");
    /// # Ok::<(), shmpipe::Error>(())
    /// ```
    pub fn try_next_request(&mut self) -> Result<Request> {
        self.rx.try_recv_with(to_request)?
    }

    /// The next request, waiting for one per the ring's wait strategy.
    ///
    /// ```
    /// # use shmpipe::{rpc, Builder};
    /// # let (mut client, mut server) = rpc::Rings::in_process(&Builder::new())?.split()?;
    /// let id = client.send_request(b"job")?;
    /// let req = server.next_request()?;
    /// assert_eq!((req.id, req.body.as_slice()), (id, &b"job"[..]));
    /// # Ok::<(), shmpipe::Error>(())
    /// ```
    ///
    /// # Errors
    /// As [`Self::try_next_request`], without `Empty`.
    pub fn next_request(&mut self) -> Result<Request> {
        self.rx.recv_with(to_request)?
    }

    /// [`Self::next_request`], waiting at most `timeout`.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use shmpipe::{rpc, Builder, Error};
    /// # let (_client, mut server) = rpc::Rings::in_process(&Builder::new())?.split()?;
    /// let r = server.next_request_timeout(Duration::from_millis(10));
    /// assert!(matches!(r, Err(Error::Timeout)));
    /// # Ok::<(), shmpipe::Error>(())
    /// ```
    ///
    /// # Errors
    /// As [`Self::try_next_request`], `Timeout` instead of `Empty`.
    pub fn next_request_timeout(&mut self, timeout: Duration) -> Result<Request> {
        self.rx.recv_with_timeout(timeout, to_request)?
    }

    /// Send the response to request `id`, waiting for room per the ring's
    /// wait strategy (bounded by the client's liveness).
    ///
    /// ```
    /// # use shmpipe::{rpc, Builder};
    /// # let (mut client, mut server) = rpc::Rings::in_process(&Builder::new())?.split()?;
    /// # let id = client.send_request(b"2+2")?;
    /// let req = server.next_request()?;
    /// server.respond(req.id, b"4")?;
    /// # assert_eq!(client.wait_response(id)?, b"4");
    /// # Ok::<(), shmpipe::Error>(())
    /// ```
    ///
    /// # Errors
    /// `TooLarge` (the body's length and [`Self::max_response`]),
    /// `Disconnected`/`PeerDied` if the client is gone, `Corrupted`.
    pub fn respond(&mut self, id: RequestId, body: &[u8]) -> Result<()> {
        put(self.tx.claim(ID_LEN + body.len()), id, body)?;
        self.served += 1;
        Ok(())
    }

    /// [`Self::respond`], waiting at most `timeout` for room.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use shmpipe::{rpc, Builder};
    /// # let (mut client, mut server) = rpc::Rings::in_process(&Builder::new())?.split()?;
    /// # client.send_request(b"q")?;
    /// let req = server.next_request()?;
    /// server.respond_timeout(req.id, b"a", Duration::from_millis(100))?;
    /// # Ok::<(), shmpipe::Error>(())
    /// ```
    ///
    /// # Errors
    /// As [`Self::respond`], plus `Timeout` (nothing was sent).
    pub fn respond_timeout(&mut self, id: RequestId, body: &[u8], timeout: Duration) -> Result<()> {
        put(
            self.tx.claim_timeout(ID_LEN + body.len(), timeout),
            id,
            body,
        )?;
        self.served += 1;
        Ok(())
    }

    /// [`Self::respond`] with a postcard-encoded value, encoded in place.
    ///
    /// ```
    /// # use shmpipe::{rpc, Builder};
    /// # let (mut client, mut server) = rpc::Rings::in_process(&Builder::new())?.split()?;
    /// # let id = client.send_request_as(&2u32)?;
    /// let req = server.next_request()?;
    /// server.respond_as(req.id, &4u32)?;
    /// # assert_eq!(client.wait_response(id)?.len(), 1);
    /// # Ok::<(), shmpipe::Error>(())
    /// ```
    ///
    /// # Errors
    /// As [`Self::respond`].
    pub fn respond_as<Resp: Serialize + ?Sized>(
        &mut self,
        id: RequestId,
        resp: &Resp,
    ) -> Result<()> {
        self.respond_as_with(id, resp, |tx, n| tx.claim(n))
    }

    /// [`Self::respond_as`], waiting at most `timeout` for room.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use shmpipe::{rpc, Builder};
    /// # let (mut client, mut server) = rpc::Rings::in_process(&Builder::new())?.split()?;
    /// # client.send_request_as(&2u32)?;
    /// let req = server.next_request()?;
    /// server.respond_as_timeout(req.id, &4u32, Duration::from_millis(100))?;
    /// # Ok::<(), shmpipe::Error>(())
    /// ```
    ///
    /// # Errors
    /// As [`Self::respond_as`], plus `Timeout` (nothing was sent).
    pub fn respond_as_timeout<Resp: Serialize + ?Sized>(
        &mut self,
        id: RequestId,
        resp: &Resp,
        timeout: Duration,
    ) -> Result<()> {
        self.respond_as_with(id, resp, |tx, n| tx.claim_timeout(n, timeout))
    }

    fn respond_as_with<Resp: Serialize + ?Sized>(
        &mut self,
        id: RequestId,
        resp: &Resp,
        claim: impl for<'a> Fn(&'a mut Producer<V>, usize) -> Result<Claim<'a, V>>,
    ) -> Result<()> {
        crate::typed::encode_into_claim(
            resp,
            ID_LEN,
            |n| claim(&mut self.tx, n),
            |head| head.copy_from_slice(&id.to_le_bytes()),
        )?;
        self.served += 1;
        Ok(())
    }

    /// Answer every request with `f(body)` until the client closes its
    /// side (`Ok`). Each request is copied out of the ring (into a reused
    /// buffer) before `f` runs, so no ring space is held while it works.
    ///
    /// # Errors
    /// `PeerDied` when the client died: with named rings ([`listen`]), call
    /// [`Self::wait_for_client`] and serve the next client (one that takes
    /// over before the server noticed the death, within the ring's 20 ms
    /// liveness slice, is simply served on); an anonymous
    /// pair has no way for another client to reach it, so the server is
    /// done. `Decode` for a request without an id (dropped: call `serve`
    /// again to go on); `Corrupted`; `TooLarge` if `f` returns a body above
    /// [`Self::max_response`].
    ///
    /// ```
    /// use shmpipe::{rpc, Builder};
    /// let (mut client, mut server) = rpc::Rings::in_process(&Builder::new())?.split()?;
    /// let t = std::thread::spawn(move || {
    ///     server.serve(|body| body.iter().rev().copied().collect())?;
    ///     Ok::<u64, shmpipe::Error>(server.served())
    /// });
    /// assert_eq!(client.call(b"abc")?, b"cba");
    /// client.close()?; // `serve` returns Ok
    /// assert_eq!(t.join().unwrap()?, 1);
    /// # Ok::<(), shmpipe::Error>(())
    /// ```
    pub fn serve(&mut self, mut f: impl FnMut(&[u8]) -> Vec<u8>) -> Result<()> {
        loop {
            let buf = &mut self.buf;
            let id = match self.rx.recv_with(|m| {
                split_id(m).map(|(id, body)| {
                    buf.clear();
                    buf.extend_from_slice(body);
                    id
                })
            }) {
                Ok(r) => r?,
                Err(Error::Disconnected) => return Ok(()),
                Err(e) => return Err(e),
            };
            let resp = f(&self.buf);
            put(self.tx.claim(ID_LEN + resp.len()), id, &resp)?;
            self.served += 1;
        }
    }

    /// [`Self::serve`] with postcard-encoded values.
    ///
    /// # Errors
    /// As [`Self::serve`]; `Decode` if a request is not a `Req` (it is
    /// dropped unanswered; the client's call times out: call `serve_as`
    /// again to go on).
    ///
    /// ```
    /// use shmpipe::{rpc, Builder};
    /// let (mut client, mut server) = rpc::Rings::in_process(&Builder::new())?.split()?;
    /// let t = std::thread::spawn(move || server.serve_as(|name: String| format!("hello, {name}")));
    /// let greeting: String = client.call_as("world")?;
    /// assert_eq!(greeting, "hello, world");
    /// client.close()?;
    /// t.join().unwrap()?;
    /// # Ok::<(), shmpipe::Error>(())
    /// ```
    pub fn serve_as<Req: DeserializeOwned, Resp: Serialize>(
        &mut self,
        mut f: impl FnMut(Req) -> Resp,
    ) -> Result<()> {
        loop {
            let (id, req) = match self.rx.recv_with(|m| {
                let (id, body) = split_id(m)?;
                Ok::<_, Error>((id, crate::typed::decode::<Req>(body)?))
            }) {
                Ok(r) => r?,
                Err(Error::Disconnected) => return Ok(()),
                Err(e) => return Err(e),
            };
            let resp = f(req);
            self.respond_as(id, &resp)?;
        }
    }

    /// Wait until a client is attached to both rings (after the previous
    /// one died or closed); checks every 2 ms.
    ///
    /// ```
    /// # use shmpipe::{rpc, Builder};
    /// // A pair split in one process has both ends attached at once.
    /// let (_client, mut server) = rpc::Rings::in_process(&Builder::new())?.split()?;
    /// server.wait_for_client()?;
    /// # Ok::<(), shmpipe::Error>(())
    /// ```
    ///
    /// # Errors
    /// `Io` if liveness cannot be checked.
    pub fn wait_for_client(&mut self) -> Result<()> {
        self.wait_for_client_until(None)
    }

    /// [`Self::wait_for_client`], at most `timeout`.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use shmpipe::{rpc, Builder, Error};
    /// let (client, mut server) = rpc::Rings::in_process(&Builder::new())?.split()?;
    /// client.close()?;
    /// let r = server.wait_for_client_timeout(Duration::from_millis(10));
    /// assert!(matches!(r, Err(Error::Timeout)));
    /// # Ok::<(), shmpipe::Error>(())
    /// ```
    ///
    /// # Errors
    /// As [`Self::wait_for_client`], plus `Timeout`.
    pub fn wait_for_client_timeout(&mut self, timeout: Duration) -> Result<()> {
        self.wait_for_client_until(deadline_after(timeout))
    }

    fn wait_for_client_until(&mut self, deadline: Option<Instant>) -> Result<()> {
        loop {
            let a = self.rx.peer_status()?;
            let b = self.tx.peer_status()?;
            if a == crate::PeerStatus::Alive && b == crate::PeerStatus::Alive {
                return Ok(());
            }
            if remaining(deadline).is_zero() {
                return Err(Error::Timeout);
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// Close both rings in order, reporting errors (dropping closes too).
    ///
    /// ```
    /// # use shmpipe::{rpc, Builder, Error};
    /// let (mut client, server) = rpc::Rings::in_process(&Builder::new())?.split()?;
    /// server.close()?;
    /// assert!(matches!(client.call(b"anyone?"), Err(Error::Disconnected)));
    /// # Ok::<(), shmpipe::Error>(())
    /// ```
    ///
    /// # Errors
    /// As [`Producer::close`].
    pub fn close(self) -> Result<()> {
        let r = self.tx.close();
        self.rx.close().and(r)
    }
}

fn to_request(m: &[u8]) -> Result<Request> {
    split_id(m).map(|(id, body)| Request {
        id,
        body: body.to_vec(),
    })
}
