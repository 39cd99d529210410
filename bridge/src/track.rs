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
    /// Source-ring messages `first..=last` never arrived (or arrived too
    /// late to be delivered in order). `stream`/`seq`: when the gap lies
    /// within one stream, its id and the sequence number of `first`.
    Gap {
        /// Stream id and first missing seq, for a gap within one stream.
        within: Option<(u64, u64)>,
        /// First missing source-ring position.
        first: u64,
        /// Last missing source-ring position.
        last: u64,
    },
    /// A sample for a position that was already delivered: dropped.
    Duplicate {
        /// Stream id.
        stream: u64,
        /// Its sequence number.
        seq: u64,
    },
    /// A sample that arrived after its position was reported lost (an old
    /// `out`'s message still in flight when its successor took over):
    /// dropped, since the reader has moved past it.
    Late {
        /// Stream id.
        stream: u64,
        /// Its sequence number.
        seq: u64,
        /// Its source-ring position.
        pos: u64,
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
    /// A new stream starts far behind the expected position: the source
    /// ring was replaced (its counters start again). Delivered from there.
    Restart {
        /// Stream id.
        stream: u64,
        /// Its first source-ring position.
        pos: u64,
        /// The position that was expected.
        expected: u64,
    },
}

impl Note {
    /// Messages this note says are lost (0 for non-gaps).
    pub fn missing(&self) -> u64 {
        match *self {
            Note::Gap { first, last, .. } => last.wrapping_sub(first).wrapping_add(1),
            _ => 0,
        }
    }
}

impl std::fmt::Display for Note {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = self.missing();
        match *self {
            Note::Gap {
                within: Some((stream, seq)),
                first,
                last,
            } => write!(
                f,
                "gap: stream {stream:016x} seq {seq}..={}, source ring messages {first}..={last} ({n} messages) lost",
                seq.wrapping_add(n - 1)
            ),
            Note::Gap {
                within: None,
                first,
                last,
            } => write!(
                f,
                "gap: source ring messages {first}..={last} ({n} messages) lost between streams"
            ),
            Note::Duplicate { stream, seq } => write!(
                f,
                "duplicate: stream {stream:016x} seq {seq} was already delivered; dropped"
            ),
            Note::Late { stream, seq, pos } => write!(
                f,
                "late: stream {stream:016x} seq {seq} (source ring message {pos}) arrived after \
                 it was reported lost; dropped to keep the order"
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
            Note::Restart {
                stream,
                pos,
                expected,
            } => write!(
                f,
                "stream {stream:016x} starts at source ring message {pos}, far behind the \
                 expected {expected}: a new source ring? delivering from there"
            ),
        }
    }
}

/// Recent stream ids and lost ranges remembered.
const MEMORY: usize = 64;

/// The accounting state. Delivery follows the source-ring position: a
/// message is delivered if its position is the next one or later (later: a
/// gap), and dropped if it is behind (a duplicate, or late).
#[derive(Debug, Default)]
pub struct Tracker {
    /// The next source-ring position expected.
    next_pos: Option<u64>,
    /// Stream of the last delivered sample, and its `pos - seq`.
    last: Option<(u64, u64)>,
    /// Streams seen (most recent last).
    known: std::collections::VecDeque<u64>,
    /// Position ranges reported lost (most recent last).
    lost: std::collections::VecDeque<(u64, u64)>,
}

impl Tracker {
    /// Start from a known position (from the state file) or from nothing.
    pub fn new(resume: Option<Position>) -> Self {
        let mut t = Tracker::default();
        if let Some(p) = resume {
            t.next_pos = Some(p.next_pos());
            t.last = Some((p.stream, p.pos0));
            t.known.push_back(p.stream);
        }
        t
    }

    /// Where delivery stands: the stream last delivered from and the next
    /// position, as a [`Position`] of that stream.
    #[cfg(test)]
    pub fn position(&self) -> Option<Position> {
        let (stream, pos0) = self.last?;
        Some(Position {
            stream,
            next_seq: self.next_pos?.wrapping_sub(pos0),
            pos0,
        })
    }

    fn remember<T: PartialEq>(q: &mut std::collections::VecDeque<T>, v: T) {
        if q.len() == MEMORY {
            q.pop_front();
        }
        q.push_back(v);
    }

    /// Account for the sample `h` (data or marker); `notes` receives what
    /// to report. `Deliver` for data to deliver and for markers of the
    /// current stream; `Duplicate` for anything to drop.
    pub fn on_sample(&mut self, h: &Header, notes: &mut Vec<Note>) -> Verdict {
        let is_new = !self.known.contains(&h.stream);
        if is_new {
            notes.push(Note::NewStream {
                stream: h.stream,
                seq: h.seq,
                first: self.next_pos.is_none(),
            });
            Self::remember(&mut self.known, h.stream);
        }
        let pos0 = h.pos.wrapping_sub(h.seq);
        let is_data = h.kind == crate::wire::Kind::Data;
        let Some(next) = self.next_pos else {
            self.last = Some((h.stream, pos0));
            self.next_pos = Some(if is_data {
                h.pos.wrapping_add(1)
            } else {
                h.pos
            });
            return Verdict::Deliver;
        };
        if !is_data {
            // A marker carries the next unused position of its stream.
            let current = self.last.map(|l| l.0) == Some(h.stream) || is_new;
            if !current {
                return Verdict::Duplicate; // about a stream we moved past
            }
            if h.pos > next {
                self.gap(h, pos0, next, notes);
            }
            self.last = Some((h.stream, pos0));
            self.next_pos = Some(h.pos.max(next));
            return Verdict::Deliver;
        }
        if h.pos < next {
            if is_new && h.pos.wrapping_add(1) < next {
                notes.push(Note::Restart {
                    stream: h.stream,
                    pos: h.pos,
                    expected: next,
                });
                self.lost.clear();
            } else {
                if is_new {
                    // The newest stream re-sends what its predecessor
                    // published last: follow it from here.
                    self.last = Some((h.stream, pos0));
                }
                let late = self.lost.iter().any(|&(a, b)| (a..=b).contains(&h.pos));
                notes.push(if late {
                    Note::Late {
                        stream: h.stream,
                        seq: h.seq,
                        pos: h.pos,
                    }
                } else {
                    Note::Duplicate {
                        stream: h.stream,
                        seq: h.seq,
                    }
                });
                return Verdict::Duplicate;
            }
        } else if h.pos > next {
            self.gap(h, pos0, next, notes);
        }
        self.last = Some((h.stream, pos0));
        self.next_pos = Some(h.pos.wrapping_add(1));
        Verdict::Deliver
    }

    fn gap(&mut self, h: &Header, pos0: u64, next: u64, notes: &mut Vec<Note>) {
        let same = self.last == Some((h.stream, pos0));
        let within = same.then(|| (h.stream, next.wrapping_sub(pos0)));
        notes.push(Note::Gap {
            within,
            first: next,
            last: h.pos - 1,
        });
        Self::remember(&mut self.lost, (next, h.pos - 1));
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
                within: Some((1, 2)),
                first: 12,
                last: 14
            }]
        );
        assert_eq!(n[0].missing(), 3);
        assert!(n[0]
            .to_string()
            .contains("seq 2..=4, source ring messages 12..=14"));
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
        assert!(n.contains(&Note::Gap {
            within: None,
            first: 1,
            last: 2
        }));
    }

    #[test]
    fn late_samples_of_a_killed_out_do_not_rewind() {
        let mut t = Tracker::new(None);
        let mut n = Vec::new();
        for s in 0..10 {
            t.on_sample(&data(1, s, s), &mut n);
        }
        // out 1 released up to 19 but 10..=19 are still in flight when out
        // 2 starts at 20: a gap; then the old samples arrive: late.
        n.clear();
        assert_eq!(t.on_sample(&data(2, 0, 20), &mut n), Verdict::Deliver);
        assert!(n.contains(&Note::Gap {
            within: None,
            first: 10,
            last: 19
        }));
        n.clear();
        assert_eq!(t.on_sample(&data(1, 10, 10), &mut n), Verdict::Duplicate);
        assert_eq!(
            n,
            vec![Note::Late {
                stream: 1,
                seq: 10,
                pos: 10
            }]
        );
        assert_eq!(t.on_sample(&data(2, 1, 21), &mut n), Verdict::Deliver);
        // A new source ring (positions from 0 again) is followed.
        n.clear();
        assert_eq!(t.on_sample(&data(3, 0, 0), &mut n), Verdict::Deliver);
        assert!(matches!(n[1], Note::Restart { .. }));
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
                within: Some((7, 40)),
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
