//! `shmpipe-bridge in KEYEXPR RING`: subscribe, produce each sample into a
//! local ring; the ring full blocks the subscriber, and zenoh's `Block`
//! congestion control carries that back to `out` and its producer.

use std::path::PathBuf;
use std::time::Duration;

use shmpipe::Error;
use zenoh::handlers::FifoChannel;
use zenoh::Wait;

use crate::ledger::Ledger;
use crate::rings::{self, Create};
use crate::session::{self, Net};
use crate::signals::{Signals, TICK};
use crate::stats::Counters;
use crate::track::{Note, Tracker, Verdict};
use crate::wire::{Header, Kind};

/// Everything `in` needs.
#[derive(Debug)]
pub struct Opts {
    /// The zenoh key expression.
    pub key: String,
    /// The local ring.
    pub ring: String,
    /// Endpoints.
    pub net: Net,
    /// How to create the ring if it is missing.
    pub create: Create,
    /// Periodic stats.
    pub stats_interval: Option<Duration>,
    /// State file for exact gap reports across restarts of `in`.
    pub state: Option<PathBuf>,
}

/// Samples zenoh may queue between its receive task and us.
const QUEUE: usize = 256;

/// How the main loop ended.
enum End {
    /// The stream ended in order (End marker): close the ring.
    Complete,
    /// The source producer died (Died marker): leave the ring unclosed.
    SourceDied,
    /// SIGINT/SIGTERM: close the ring.
    Signal,
    /// The ring's reader closed or died: close, exit 1.
    Reader(String),
}

/// Run `in`; the exit status on success.
pub fn run(o: &Opts, sig: &Signals) -> Result<u8, String> {
    let mut prod = rings::builder(&o.create)
        .open_or_create_producer(&o.ring)
        .map_err(|e| rings::describe(&o.ring, &e))?
        .end;
    let max = prod.max_message();
    // The producer counter continues across producers: messages committed
    // into this ring by all `in`s so far.
    let mut count = prod.stats().messages_sent;
    let mut ledger = match &o.state {
        Some(p) => Some(Ledger::load(p)?),
        None => None,
    };
    let resume = ledger.as_ref().and_then(|l| l.resume(count));
    if let Some(p) = resume {
        eprintln!(
            "shmpipe-bridge in: state file: the previous `in` delivered stream {:016x} up to seq {} (exclusive)",
            p.stream, p.next_seq
        );
    }
    let mut tracker = Tracker::new(resume);
    let session = session::open(&o.net)?;
    let sub = session
        .declare_subscriber(o.key.clone())
        .with(FifoChannel::new(QUEUE))
        .wait()
        .map_err(|e| format!("declaring a subscriber on {:?}: {e}", o.key))?;
    eprintln!("shmpipe-bridge in: {:?} -> {}", o.key, o.ring);
    let mut c = Counters::new("in", o.stats_interval);
    let mut notes = Vec::new();
    let end = 'main: loop {
        if sig.stop_requested() {
            break End::Signal;
        }
        c.report_if_asked(sig);
        let sample = match sub.recv_timeout(TICK) {
            Ok(Some(s)) => s,
            Ok(None) => continue,
            Err(e) => return Err(format!("the zenoh subscriber stopped: {e}")),
        };
        let h = match sample.attachment().map(|a| Header::decode(&a.to_bytes())) {
            Some(Ok(h)) => h,
            Some(Err(why)) => {
                eprintln!(
                    "shmpipe-bridge in: ignoring a sample on {}: {why}",
                    sample.key_expr()
                );
                continue;
            }
            None => {
                eprintln!(
                    "shmpipe-bridge in: ignoring a sample on {} without the bridge header \
                     (only shmpipe-bridge out may publish on this key)",
                    sample.key_expr()
                );
                continue;
            }
        };
        notes.clear();
        let verdict = tracker.on_sample(&h, &mut notes);
        for n in &notes {
            match n {
                Note::NewStream { .. } => c.streams += 1,
                Note::Duplicate { .. } => c.duplicates += 1,
                Note::Late { .. } => c.late += 1,
                Note::Restart { .. } => {}
                Note::Gap { .. } => {
                    c.gaps += 1;
                    c.missing += n.missing();
                }
            }
            eprintln!("shmpipe-bridge in: {n}");
        }
        if verdict == Verdict::Duplicate {
            continue;
        }
        match h.kind {
            Kind::Data => {}
            Kind::End => break End::Complete,
            Kind::Died => break End::SourceDied,
            Kind::Stop => {
                eprintln!(
                    "shmpipe-bridge in: stream {:016x} was stopped by its `out` at seq {}; waiting for a new stream",
                    h.stream, h.seq
                );
                continue;
            }
        }
        let payload = sample.payload().to_bytes();
        if payload.len() > max {
            return Err(format!(
                "a message of {} bytes (stream {:016x} seq {}) exceeds the largest message of {} \
                 ({max} bytes); give the ring at least the source ring's capacity",
                payload.len(),
                h.stream,
                h.seq,
                o.ring
            ));
        }
        if let Some(l) = ledger.as_mut() {
            l.before_commit(h.stream, h.seq, count)?;
        }
        loop {
            match prod.send_timeout(&payload, TICK) {
                Ok(()) => break,
                Err(Error::Timeout) => {
                    if sig.stop_requested() {
                        eprintln!(
                            "shmpipe-bridge in: interrupted while {} was full; stream {:016x} seq {} was not delivered",
                            o.ring, h.stream, h.seq
                        );
                        break 'main End::Signal;
                    }
                    c.report_if_asked(sig);
                }
                Err(Error::Disconnected) => {
                    break 'main End::Reader(format!("the reader of {} closed it", o.ring))
                }
                Err(Error::PeerDied) => {
                    break 'main End::Reader(format!("the reader of {} died", o.ring))
                }
                Err(e) => return Err(rings::describe(&o.ring, &e)),
            }
        }
        count = count.wrapping_add(1);
        c.messages += 1;
        c.bytes += payload.len() as u64;
    };
    // Leave zenoh first (`out` takes that as the acknowledgement of its
    // end marker), then settle the ring.
    let _ = sub.undeclare().wait();
    let _ = session.close().wait();
    c.report("exit");
    let status = match end {
        End::Complete if c.gaps == 0 => {
            eprintln!("shmpipe-bridge in: stream complete");
            0
        }
        End::Complete => {
            eprintln!(
                "shmpipe-bridge in: stream ended, but messages were lost in {} gaps (reported above; {} of them counted within streams)",
                c.gaps, c.missing
            );
            1
        }
        End::Signal => 0,
        End::SourceDied => {
            eprintln!(
                "shmpipe-bridge in: the producer on the `out` side died without closing; leaving {} \
                 unclosed so that its reader sees the producer die too",
                o.ring
            );
            // Abandon the role: when we exit, the kernel releases its lock
            // and the reader gets PeerDied after draining.
            std::mem::forget(prod);
            return Ok(1);
        }
        End::Reader(why) => {
            eprintln!("shmpipe-bridge in: {why}; stopping");
            1
        }
    };
    prod.close().map_err(|e| rings::describe(&o.ring, &e))?;
    Ok(status)
}
