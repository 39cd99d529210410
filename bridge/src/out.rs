//! `shmpipe-bridge out RING KEYEXPR`: consume a local ring, publish each
//! message as one zenoh sample.
//!
//! Each message is peeked, published (reliable, `CongestionControl::Block`),
//! and only then released: a killed `out` leaves at most one message
//! published but unreleased, which its successor re-sends (and `in` drops by
//! its source-ring position). While no subscriber matches the key, `out`
//! waits with the message in the ring instead of publishing into the void,
//! so the ring's producer is slowed down, not silently discarded.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use shmpipe::{AnyConsumer, Error};
use zenoh::pubsub::Publisher;
use zenoh::qos::CongestionControl;
use zenoh::Wait;

use crate::rings::{self, Create};
use crate::session::{self, Net};
use crate::signals::{Signals, TICK};
use crate::stats::Counters;
use crate::wire::{Header, Kind};

/// Everything `out` needs.
#[derive(Debug)]
pub struct Opts {
    /// The local ring.
    pub ring: String,
    /// The zenoh key expression.
    pub key: String,
    /// Endpoints.
    pub net: Net,
    /// How to create the ring if it is missing.
    pub create: Create,
    /// Periodic stats.
    pub stats_interval: Option<Duration>,
    /// After the stream ended: how long to wait for `in` to confirm (by
    /// leaving) before exiting anyway.
    pub linger: Duration,
    /// Keep the ring's name when its producer closed and it was drained
    /// (by default it is removed then).
    pub keep_ring: bool,
}

/// A random id for this run.
pub fn stream_id() -> u64 {
    let mut h = RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    h.finish()
}

/// How the main loop ended.
enum End {
    /// The producer closed: send End, exit 0.
    Closed,
    /// The producer died: send Died, exit 1.
    Died,
    /// SIGINT/SIGTERM: send Stop, exit 0.
    Signal,
}

/// Whether some subscriber matches the publisher, kept current by a
/// matching listener that also wakes the main thread.
struct Matching {
    flag: Arc<AtomicBool>,
    _listener: zenoh::matching::MatchingListener<()>,
}

impl Matching {
    fn new(p: &Publisher<'_>) -> Result<Self, String> {
        let flag = Arc::new(AtomicBool::new(false));
        let f = Arc::clone(&flag);
        let main = std::thread::current();
        let listener = p
            .matching_listener()
            .callback(move |s| {
                // Relaxed: a hint re-read every tick; no data is published with it.
                f.store(s.matching(), Ordering::Relaxed);
                main.unpark();
            })
            .wait()
            .map_err(|e| format!("declaring the matching listener: {e}"))?;
        let now = p
            .matching_status()
            .wait()
            .map_err(|e| format!("reading the matching status: {e}"))?;
        flag.fetch_or(now.matching(), Ordering::Relaxed);
        Ok(Matching {
            flag,
            _listener: listener,
        })
    }

    fn get(&self) -> bool {
        // Relaxed: see the store in the callback.
        self.flag.load(Ordering::Relaxed)
    }
}

/// The ring's consumer, shared with the [`Watchdog`].
type SharedCons = Arc<Mutex<Option<AnyConsumer>>>;

fn lock(c: &SharedCons) -> MutexGuard<'_, Option<AnyConsumer>> {
    c.lock().unwrap_or_else(|p| p.into_inner())
}

/// SIGINT/SIGTERM while a `put` is blocked (the far side stopped reading,
/// so zenoh's Block queue is full, and closing the session does not unblock
/// it): after a second, this thread closes the ring's consumer side itself
/// (the main thread holds no message then: it published a copy) and exits
/// the process, so the producer still sees `Disconnected`.
struct Watchdog {
    in_put: Arc<AtomicBool>,
    published: Arc<AtomicU64>,
}

impl Watchdog {
    fn start(cons: &SharedCons, sig: &Signals, ring: &str) -> Watchdog {
        let in_put = Arc::new(AtomicBool::new(false));
        let published = Arc::new(AtomicU64::new(0));
        let (p, n, cons, sig, ring) = (
            Arc::clone(&in_put),
            Arc::clone(&published),
            Arc::clone(cons),
            sig.clone(),
            ring.to_string(),
        );
        std::thread::spawn(move || {
            let mut stuck_ticks = 0;
            while stuck_ticks < 10 {
                std::thread::sleep(TICK);
                if Arc::strong_count(&p) == 1 {
                    return; // `out` is done with zenoh
                }
                // Relaxed: a flag; a late view only delays the rescue by a tick.
                let stuck = sig.stop_requested() && p.load(Ordering::Relaxed);
                stuck_ticks = if stuck { stuck_ticks + 1 } else { 0 };
            }
            eprintln!(
                "shmpipe-bridge out: interrupted while zenoh is blocked (the far side is not \
                 reading); closing {ring} and exiting; {} messages were published, the one \
                 being published stays in the ring",
                n.load(Ordering::Relaxed)
            );
            let taken = lock(&cons).take();
            if let Some(c) = taken {
                if let Err(e) = c.close() {
                    eprintln!("shmpipe-bridge out: {}", rings::describe(&ring, &e));
                    std::process::exit(1);
                }
            }
            std::process::exit(0);
        });
        Watchdog { in_put, published }
    }
    fn enter(&self) {
        // Relaxed: see the load in the watchdog thread.
        self.in_put.store(true, Ordering::Relaxed);
    }
    fn leave(&self, published: u64) {
        self.in_put.store(false, Ordering::Relaxed);
        // Relaxed: informational.
        self.published.store(published, Ordering::Relaxed);
    }
}

/// The ring's producer closed it and every message was published: remove
/// its name (a `shmpipe write` leaves it for a later reader, and nobody else
/// would), unless a new producer attached meanwhile. A producer that
/// attaches between the check and the removal keeps its ring, unnamed.
fn remove_drained(ring: &str) {
    match shmpipe::inspect(ring) {
        Ok(info) if info.producer_alive => {
            eprintln!("shmpipe-bridge out: a new producer attached to {ring}; leaving it in place")
        }
        Ok(_) => match shmpipe::remove(ring) {
            Ok(()) | Err(Error::NotFound { .. }) => {
                eprintln!("shmpipe-bridge out: removed {ring} (drained; --keep-ring keeps it)")
            }
            Err(e) => eprintln!("shmpipe-bridge out: {}", rings::describe(ring, &e)),
        },
        Err(Error::NotFound { .. }) => {}
        Err(e) => eprintln!("shmpipe-bridge out: {}", rings::describe(ring, &e)),
    }
}

/// Run `out`; the exit status on success.
pub fn run(o: &Opts, sig: &Signals) -> Result<u8, String> {
    let cons = rings::builder(&o.create)
        .open_or_create_consumer(&o.ring)
        .map_err(|e| rings::describe(&o.ring, &e))?
        .end;
    // The ring's consumer position (`head`, one store per release, read
    // once here): where the previous consumer stopped, exactly. From here on
    // each message's position follows from its length.
    let pos0 = cons.stats().head;
    let capacity = cons.capacity();
    let cons: SharedCons = Arc::new(Mutex::new(Some(cons)));
    let session = session::open(&o.net)?;
    let publisher = session
        .declare_publisher(o.key.clone())
        .congestion_control(CongestionControl::Block)
        .wait()
        .map_err(|e| format!("declaring a publisher on {:?}: {e}", o.key))?;
    let matching = Matching::new(&publisher)?;
    let watchdog = Watchdog::start(&cons, sig, &o.ring);
    let stream = stream_id();
    eprintln!(
        "shmpipe-bridge out: {} -> {:?}: stream {stream:016x}, resuming at ring position {pos0}",
        o.ring, o.key
    );
    let mut c = Counters::new("out", o.stats_interval);
    c.streams = 1;
    let mut seq: u64 = 0;
    // Where the next message's record starts in the source ring.
    let mut pos = pos0;
    let mut waiting_since: Option<Instant> = None;
    let header = |kind, seq: u64, pos: u64, end: u64| Header {
        kind,
        stream,
        seq,
        pos,
        end,
    };
    let end = loop {
        if sig.stop_requested() {
            break End::Signal;
        }
        c.report_if_asked(sig);
        if !matching.get() {
            if waiting_since.is_none() {
                eprintln!("shmpipe-bridge out: no subscriber on {:?}; waiting (messages stay in the ring)", o.key);
                waiting_since = Some(Instant::now());
            }
            std::thread::park_timeout(TICK);
            continue;
        }
        if let Some(t) = waiting_since.take() {
            eprintln!(
                "shmpipe-bridge out: subscriber present after {:.1}s; publishing from seq {seq}",
                t.elapsed().as_secs_f64()
            );
        }
        // Phase one: peek and copy; the message stays in the ring.
        let data = {
            let mut g = lock(&cons);
            let Some(cons) = g.as_mut() else {
                break End::Signal; // closed by the watchdog
            };
            match cons.peek_timeout(TICK) {
                Ok(m) => m.to_vec(),
                Err(Error::Timeout) => continue,
                Err(Error::Disconnected) => break End::Closed,
                Err(Error::PeerDied) => break End::Died,
                Err(e) => return Err(rings::describe(&o.ring, &e)),
            }
        };
        let len = data.len();
        let end = shmpipe::position_after(capacity, pos, len);
        watchdog.enter();
        let r = publisher
            .put(data)
            .attachment(header(Kind::Data, seq, pos, end).encode().to_vec())
            .wait();
        watchdog.leave(seq + u64::from(r.is_ok()));
        if let Err(e) = r {
            // Not released: the message stays in the ring for the next `out`.
            if sig.stop_requested() {
                break End::Signal;
            }
            return Err(format!("publishing seq {seq}: {e}"));
        }
        // Phase two, handed to zenoh: release it (it is still the ring's
        // next message: we are its only consumer), so its space is reused.
        {
            let mut g = lock(&cons);
            let Some(cons) = g.as_mut() else {
                break End::Signal;
            };
            match cons.try_peek() {
                Ok(m) if m.len() == len => m.release(),
                Ok(m) => {
                    return Err(format!(
                        "{}: the next message changed from {len} to {} bytes while it was \
                         being published (another consumer?)",
                        o.ring,
                        m.len()
                    ))
                }
                Err(e) => return Err(rings::describe(&o.ring, &e)),
            }
        }
        seq += 1;
        pos = end;
        c.messages += 1;
        c.bytes += len as u64;
    };
    // Close the ring side first (its producer sees Disconnected, never
    // PeerDied), then tell `in` why the stream ends.
    let taken = lock(&cons).take();
    let close = match taken {
        Some(c) => c.close().map_err(|e| rings::describe(&o.ring, &e)),
        None => Ok(()),
    };
    if matches!(end, End::Closed) && close.is_ok() && !o.keep_ring {
        remove_drained(&o.ring);
    }
    let (kind, status, what) = match end {
        End::Closed => (Kind::End, 0, "the ring's producer closed it"),
        End::Died => (Kind::Died, 1, "the ring's producer died without closing"),
        End::Signal => (Kind::Stop, 0, "interrupted"),
    };
    eprintln!("shmpipe-bridge out: {what}; stream {stream:016x} ends at seq {seq}");
    let deadline = Instant::now() + o.linger;
    if !matches!(end, End::Signal) {
        // The marker must reach `in` (it ends `in`'s ring the same way):
        // wait for a subscriber as for data, but not forever.
        while !matching.get() && Instant::now() < deadline && !sig.stop_requested() {
            std::thread::park_timeout(TICK);
        }
    }
    if matching.get() {
        watchdog.enter();
        let r = publisher
            .put(Vec::new())
            .attachment(header(kind, seq, pos, pos).encode().to_vec())
            .wait();
        watchdog.leave(seq);
        if let Err(e) = r {
            if !matches!(end, End::Signal) {
                return Err(format!("publishing the end-of-stream marker: {e}"));
            }
            eprintln!("shmpipe-bridge out: could not publish the stop marker: {e}");
        }
        if !matches!(end, End::Signal) {
            // `in` leaves when it got the marker: that is our acknowledgement.
            while matching.get() && Instant::now() < deadline && !sig.stop_requested() {
                std::thread::park_timeout(TICK);
            }
            if matching.get() {
                eprintln!("shmpipe-bridge out: the subscriber did not leave within {:?} after the end marker", o.linger);
            }
        }
    } else {
        eprintln!("shmpipe-bridge out: no subscriber to tell that the stream ended");
    }
    c.report("exit");
    drop(matching);
    watchdog.enter(); // closing may block too
    let _ = publisher.undeclare().wait();
    let _ = session.close().wait();
    drop(watchdog);
    close?;
    Ok(status)
}
