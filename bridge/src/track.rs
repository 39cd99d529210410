//! The `in` side's accounting: which samples to deliver, which are
//! duplicates, which sequence numbers are missing.
//!
//! Within one stream (one run of `out`) the sequence number is
//! authoritative: a jump forward is a gap, a step back a duplicate. Between
//! streams, the position of each message in the source ring (carried in the
//! header) joins a restarted `out` to its predecessor: the new `out`
//! re-sends the message the old one had published but not yet released, and
//! that message has the position we already delivered, so it is dropped.

use crate::wire::Header;

/// Where the `in` side stands in a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    /// The stream id (the `out` run).
    pub stream: u64,
    /// The next sequence number expected.
    pub next_seq: u64,
    /// Source-ring position of sequence number 0 (`pos - seq`).
    pub pos0: u64,
}

impl Position {
    fn next_pos(&self) -> u64 {
        self.pos0.wrapping_add(self.next_seq)
    }
}

/// What to do with a data sample.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Deliver it into the ring.
    Deliver,
    /// Drop it: already delivered.
    Duplicate,
}

/// Something worth a line on stderr and a count in the stats.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Note {
    /// Sequence numbers `first..=last` of `stream` never arrived.
    Gap {
        /// Stream id.
        stream: u64,
        /// First missing sequence number.
        first: u64,
        /// Last missing sequence number.
        last: u64,
    },
    /// Source-ring messages `first..=last` were consumed by no `out` that
    /// reached us (between two streams).
    PosGap {
        /// First missing source-ring position.
        first: u64,
        /// Last missing source-ring position.
        last: u64,
    },
    /// A sample of `stream` with sequence number `seq` was already delivered.
    Duplicate {
        /// Stream id.
        stream: u64,
        /// Its sequence number.
        seq: u64,
    },
    /// A new stream (a new run of `out`) starts at `seq`.
    NewStream {
        /// Stream id.
        stream: u64,
        /// First sequence number seen.
        seq: u64,
        /// Whether we knew nothing before it (first stream of this `in`
        /// without a state file).
        first: bool,
    },
}

impl Note {
    /// Messages this note says are lost (0 for non-gaps).
    pub fn missing(&self) -> u64 {
        match *self {
            Note::Gap { first, last, .. } | Note::PosGap { first, last } => {
                last.wrapping_sub(first).wrapping_add(1)
            }
            _ => 0,
        }
    }
}

impl std::fmt::Display for Note {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {
            Note::Gap {
                stream,
                first,
                last,
            } => write!(
                f,
                "gap: stream {stream:016x} seq {first}..={last} ({} messages) lost",
                self.missing()
            ),
            Note::PosGap { first, last } => write!(
                f,
                "gap: source ring messages {first}..={last} ({} messages) lost between streams",
                self.missing()
            ),
            Note::Duplicate { stream, seq } => write!(
                f,
                "duplicate: stream {stream:016x} seq {seq} was already delivered; dropped"
            ),
            Note::NewStream {
                stream,
                seq,
                first: true,
            } if seq > 0 => write!(
                f,
                "joined stream {stream:016x} at seq {seq}: the {seq} earlier messages were \
                 delivered by an earlier `in` or lost (run `in` with --state FILE to tell)"
            ),
            Note::NewStream { stream, seq, .. } => {
                write!(f, "new stream {stream:016x} from seq {seq}")
            }
        }
    }
}

/// The accounting state.
#[derive(Debug, Default)]
pub struct Tracker {
    cur: Option<Position>,
    /// After a stream change: source positions below this were delivered
    /// under the previous stream.
    skip_below: Option<u64>,
}

impl Tracker {
    /// Start from a known position (from the state file) or from nothing.
    pub fn new(resume: Option<Position>) -> Self {
        Tracker {
            cur: resume,
            skip_below: None,
        }
    }

    /// The current position, if any sample or resume point was seen.
    #[cfg(test)]
    pub fn position(&self) -> Option<Position> {
        self.cur
    }

    /// Account for the sample `h` (data or marker); `notes` receives what
    /// to report. Markers get `Deliver` when they are news.
    pub fn on_sample(&mut self, h: &Header, notes: &mut Vec<Note>) -> Verdict {
        let pos0 = h.pos.wrapping_sub(h.seq);
        match self.cur {
            Some(c) if c.stream == h.stream => {}
            prev => {
                notes.push(Note::NewStream {
                    stream: h.stream,
                    seq: h.seq,
                    first: prev.is_none(),
                });
                self.skip_below = None;
                if let Some(p) = prev {
                    let expected = p.next_pos();
                    if h.pos > expected {
                        notes.push(Note::PosGap {
                            first: expected,
                            last: h.pos - 1,
                        });
                    } else if h.pos < expected {
                        self.skip_below = Some(expected);
                    }
                }
                self.cur = Some(Position {
                    stream: h.stream,
                    next_seq: h.seq,
                    pos0,
                });
            }
        }
        let Some(c) = self.cur.as_mut() else {
            return Verdict::Duplicate; // unreachable: set above
        };
        if h.seq < c.next_seq {
            notes.push(Note::Duplicate {
                stream: h.stream,
                seq: h.seq,
            });
            return Verdict::Duplicate;
        }
        if h.seq > c.next_seq {
            notes.push(Note::Gap {
                stream: h.stream,
                first: c.next_seq,
                last: h.seq - 1,
            });
        }
        let is_data = h.kind == crate::wire::Kind::Data;
        // A marker carries the next unused seq: it does not consume one.
        c.next_seq = if is_data { h.seq + 1 } else { h.seq };
        if is_data {
            if let Some(limit) = self.skip_below {
                if h.pos < limit {
                    notes.push(Note::Duplicate {
                        stream: h.stream,
                        seq: h.seq,
                    });
                    return Verdict::Duplicate;
                }
                self.skip_below = None;
            }
        }
        Verdict::Deliver
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::Kind;

    fn data(stream: u64, seq: u64, pos: u64) -> Header {
        Header {
            kind: Kind::Data,
            stream,
            seq,
            pos,
        }
    }

    #[test]
    fn in_order_gap_duplicate() {
        let mut t = Tracker::new(None);
        let mut n = Vec::new();
        assert_eq!(t.on_sample(&data(1, 0, 10), &mut n), Verdict::Deliver);
        assert_eq!(t.on_sample(&data(1, 1, 11), &mut n), Verdict::Deliver);
        n.clear();
        assert_eq!(t.on_sample(&data(1, 5, 15), &mut n), Verdict::Deliver);
        assert_eq!(
            n,
            vec![Note::Gap {
                stream: 1,
                first: 2,
                last: 4
            }]
        );
        assert_eq!(n[0].missing(), 3);
        n.clear();
        assert_eq!(t.on_sample(&data(1, 3, 13), &mut n), Verdict::Duplicate);
        assert_eq!(t.on_sample(&data(1, 6, 16), &mut n), Verdict::Deliver);
    }

    #[test]
    fn restarted_out_resend_is_dropped() {
        let mut t = Tracker::new(None);
        let mut n = Vec::new();
        for s in 0..5 {
            t.on_sample(&data(1, s, 100 + s), &mut n);
        }
        // The old `out` published pos 104 but died before releasing it: the
        // new one starts at pos 104 again.
        n.clear();
        assert_eq!(t.on_sample(&data(2, 0, 104), &mut n), Verdict::Duplicate);
        assert!(n.contains(&Note::Duplicate { stream: 2, seq: 0 }));
        assert_eq!(t.on_sample(&data(2, 1, 105), &mut n), Verdict::Deliver);
        assert_eq!(
            t.position(),
            Some(Position {
                stream: 2,
                next_seq: 2,
                pos0: 104
            })
        );
    }

    #[test]
    fn restarted_out_with_lost_tail_is_a_gap() {
        let mut t = Tracker::new(None);
        let mut n = Vec::new();
        t.on_sample(&data(1, 0, 0), &mut n);
        n.clear();
        assert_eq!(t.on_sample(&data(2, 0, 3), &mut n), Verdict::Deliver);
        assert!(n.contains(&Note::PosGap { first: 1, last: 2 }));
    }

    #[test]
    fn resume_reports_exact_gap_and_markers_do_not_consume() {
        let mut t = Tracker::new(Some(Position {
            stream: 7,
            next_seq: 40,
            pos0: 0,
        }));
        let mut n = Vec::new();
        assert_eq!(t.on_sample(&data(7, 45, 45), &mut n), Verdict::Deliver);
        assert_eq!(
            n,
            vec![Note::Gap {
                stream: 7,
                first: 40,
                last: 44
            }]
        );
        n.clear();
        let end = Header {
            kind: Kind::End,
            stream: 7,
            seq: 46,
            pos: 46,
        };
        assert_eq!(t.on_sample(&end, &mut n), Verdict::Deliver);
        assert!(n.is_empty());
        assert_eq!(t.position().map(|p| p.next_seq), Some(46));
    }
}
