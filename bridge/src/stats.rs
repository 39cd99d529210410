//! Counters a bridge prints on exit, on SIGUSR1 and every `--stats-interval`.

use std::time::{Duration, Instant};

use crate::signals::Signals;

/// What one bridge has done so far.
#[derive(Debug)]
pub struct Counters {
    role: &'static str,
    started: Instant,
    /// Messages moved (published by `out`, delivered into the ring by `in`).
    pub messages: u64,
    /// Payload bytes moved.
    pub bytes: u64,
    /// Gaps seen by `in`: places where the sequence jumped forward.
    pub gaps: u64,
    /// Messages missing in those gaps, in total.
    pub missing: u64,
    /// Samples `in` dropped because it had already delivered them.
    pub duplicates: u64,
    /// Samples `in` dropped because they arrived after their gap was reported.
    pub late: u64,
    /// Streams (runs of `out`) `in` has received from.
    pub streams: u64,
    last_at: Instant,
    last_messages: u64,
    last_bytes: u64,
    schedule: Schedule,
}

impl Counters {
    /// Fresh counters for `role` ("out" or "in"), reported every `every`
    /// (if given) by [`Counters::report_if_asked`].
    pub fn new(role: &'static str, every: Option<Duration>) -> Self {
        let now = Instant::now();
        Counters {
            role,
            started: now,
            messages: 0,
            bytes: 0,
            gaps: 0,
            missing: 0,
            duplicates: 0,
            late: 0,
            streams: 0,
            last_at: now,
            last_messages: 0,
            last_bytes: 0,
            schedule: Schedule::new(every),
        }
    }

    /// Report if SIGUSR1 arrived or an interval report is due: the main
    /// loops call it between bounded waits.
    pub fn report_if_asked(&mut self, sig: &Signals) {
        if sig.take_usr1() {
            self.report("SIGUSR1");
        }
        if self.schedule.due() {
            self.report("interval");
        }
    }

    /// One line on stderr: totals, and the rate since the previous line.
    /// `why` is "exit", "SIGUSR1" or "interval".
    pub fn report(&mut self, why: &str) {
        let now = Instant::now();
        let dt = now.duration_since(self.last_at).as_secs_f64().max(1e-9);
        let rate = (self.messages - self.last_messages) as f64 / dt;
        let mbps = (self.bytes - self.last_bytes) as f64 / dt / 1e6;
        eprintln!(
            "shmpipe-bridge {}: stats ({why}) messages={} bytes={} gaps={} missing={} duplicates={} late={} streams={} rate={:.0}msg/s {:.1}MB/s uptime={:.1}s",
            self.role,
            self.messages,
            self.bytes,
            self.gaps,
            self.missing,
            self.duplicates,
            self.late,
            self.streams,
            rate,
            mbps,
            now.duration_since(self.started).as_secs_f64()
        );
        self.last_at = now;
        self.last_messages = self.messages;
        self.last_bytes = self.bytes;
    }
}

/// When to print stats next: on request (SIGUSR1) or every interval.
#[derive(Debug)]
struct Schedule {
    every: Option<Duration>,
    next: Option<Instant>,
}

impl Schedule {
    /// Print every `every`, if given.
    fn new(every: Option<Duration>) -> Self {
        Schedule {
            every,
            next: every.map(|d| Instant::now() + d),
        }
    }

    /// Whether an interval report is due now (and schedule the next one).
    fn due(&mut self) -> bool {
        match (self.every, self.next) {
            (Some(d), Some(t)) if Instant::now() >= t => {
                self.next = Some(t + d);
                true
            }
            _ => false,
        }
    }
}
