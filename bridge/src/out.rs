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
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use shmpipe::{Error, GenericConsumer, LockFree, Locked, Variant};
use zenoh::pubsub::Publisher;
use zenoh::qos::CongestionControl;
use zenoh::Wait;

use crate::rings::{self, Create, Design};
use crate::session::{self, Net};
use crate::signals::{Signals, TICK};
use crate::stats::{Counters, Schedule};
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

/// Run `out`; the exit status on success.
pub fn run(o: &Opts, sig: &Signals) -> Result<u8, String> {
    match rings::detect(&o.ring)? {
        Design::LockFree => run_with::<LockFree>(o, sig),
        Design::Locked => run_with::<Locked>(o, sig),
    }
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

/// How the main loop ended.
enum End {
    /// The producer closed: send End, exit 0.
    Closed,
    /// The producer died: send Died, exit 1.
    Died,
    /// SIGINT/SIGTERM: send Stop, exit 0.
    Signal,
}

fn run_with<V: Variant>(o: &Opts, sig: &Signals) -> Result<u8, String> {
    let mut cons: GenericConsumer<V> = rings::builder::<V>(&o.create)
        .open_or_create_consumer(&o.ring)
        .map_err(|e| rings::describe(&o.ring, &e))?;
    let session = session::open(&o.net)?;
    let publisher = session
        .declare_publisher(o.key.clone())
        .congestion_control(CongestionControl::Block)
        .wait()
        .map_err(|e| format!("declaring a publisher on {:?}: {e}", o.key))?;
    let matching = Matching::new(&publisher)?;
    let stream = stream_id();
    // The consumer counter continues across consumers, so this is the index
    // of the next message in the ring's whole history.
    let pos0 = cons.stats().messages_received;
    eprintln!(
        "shmpipe-bridge out: {} -> {:?}: stream {stream:016x}, starting at ring message {pos0}",
        o.ring, o.key
    );
    let mut c = Counters::new("out");
    c.streams = 1;
    let mut sched = Schedule::new(o.stats_interval);
    let mut seq: u64 = 0;
    let mut waiting_since: Option<Instant> = None;
    let header = |kind, seq: u64| Header {
        kind,
        stream,
        seq,
        pos: pos0.wrapping_add(seq),
    };
    let end = loop {
        if sig.stop_requested() {
            break End::Signal;
        }
        if sig.take_usr1() {
            c.report("SIGUSR1");
        }
        if sched.due() {
            c.report("interval");
        }
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
        let msg = match cons.peek_timeout(TICK) {
            Ok(m) => m,
            Err(Error::Timeout) => continue,
            Err(Error::Disconnected) => break End::Closed,
            Err(Error::PeerDied) => break End::Died,
            Err(e) => return Err(rings::describe(&o.ring, &e)),
        };
        let len = msg.len();
        let r = publisher
            .put(msg.to_vec())
            .attachment(header(Kind::Data, seq).encode().to_vec())
            .wait();
        if let Err(e) = r {
            // Not released: the message stays in the ring for the next `out`.
            drop(msg);
            return Err(format!("publishing seq {seq}: {e}"));
        }
        // Handed to zenoh: now the ring may reuse its space.
        msg.release();
        seq += 1;
        c.messages += 1;
        c.bytes += len as u64;
    };
    // Close the ring side first (its producer sees Disconnected, never
    // PeerDied), then tell `in` why the stream ends.
    let close = cons.close().map_err(|e| rings::describe(&o.ring, &e));
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
        publisher
            .put(Vec::new())
            .attachment(header(kind, seq).encode().to_vec())
            .wait()
            .map_err(|e| format!("publishing the end-of-stream marker: {e}"))?;
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
    let _ = publisher.undeclare().wait();
    let _ = session.close().wait();
    close?;
    Ok(status)
}
