//! The `in` side's accounting: which samples to deliver, which are
//! duplicates, which messages are missing.
//!
//! Every data sample carries where its message starts and ends in the
//! source ring (byte positions, the ring's own index: see `wire`). Delivery
//! follows them: a sample that starts where the last delivered one ended is
//! next; one that starts later follows a gap, exactly the bytes in
//! between; one that starts earlier was delivered already (a restarted
//! `out` re-sends the message its predecessor had published but not
//! released: it starts where that one started). Within one stream (one run
//! of `out`) the sequence number also counts what a gap lost; between two
//! streams only the positions are known, so such a gap is reported as the
//! range of source-ring bytes it covers.

use crate::wire::Header;

/// Where a previous `in` stood, from its state file: the next sequence
/// number of a stream (the byte position is not recorded).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    /// The stream id (the `out` run).
    pub stream: u64,
    /// The next sequence number expected.
    pub next_seq: u64,
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
    /// Source-ring messages never arrived (or arrived too late to be
    /// delivered in order), up to the position `to` (exclusive).
    Gap {
        /// For a gap within one stream: its id, the first missing sequence
        /// number, and how many are missing.
        within: Option<(u64, u64, u64)>,
        /// First missing source-ring byte (unknown after a restart of `in`
        /// without a position in its state file).
        from: Option<u64>,
        /// Where the first message after the gap starts.
        to: u64,
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
    /// A new stream starts before the last delivered message: the source
    /// ring was replaced (its positions start again). Delivered from there.
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
    /// Messages this note says are lost, where known (a gap within a
    /// stream); 0 otherwise.
    pub fn missing(&self) -> u64 {
        match *self {
            Note::Gap {
                within: Some((_, _, n)),
                ..
            } => n,
            _ => 0,
        }
    }
}

impl std::fmt::Display for Note {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {
            Note::Gap {
                within: Some((stream, seq, n)),
                from,
                to,
            } => {
                write!(
                    f,
                    "gap: stream {stream:016x} seq {seq}..={} ({n} messages) lost, ",
                    seq.wrapping_add(n.saturating_sub(1))
                )?;
                match from {
                    Some(from) => write!(f, "source ring bytes {from}..{to}"),
                    None => write!(f, "ending at source ring byte {to}"),
                }
            }
            Note::Gap {
                within: None,
                from,
                to,
            } => {
                let from = from.unwrap_or(to);
                write!(
                    f,
                    "gap: source ring bytes {from}..{to} ({} bytes of records) lost between streams",
                    to.wrapping_sub(from)
                )
            }
            Note::Duplicate { stream, seq } => write!(
                f,
                "duplicate: stream {stream:016x} seq {seq} was already delivered; dropped"
            ),
            Note::Late { stream, seq, pos } => write!(
                f,
                "late: stream {stream:016x} seq {seq} (source ring byte {pos}) arrived after \
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
                "stream {stream:016x} starts at source ring byte {pos}, behind the \
                 expected {expected}: a new source ring? delivering from there"
            ),
        }
    }
}

/// Recent stream ids and lost ranges remembered.
const MEMORY: usize = 64;

/// The accounting state.
#[derive(Debug, Default)]
pub struct Tracker {
    /// Where the next message is expected to start (the end of the last
    /// delivered one).
    next_pos: Option<u64>,
    /// Where the last delivered message started.
    last_start: Option<u64>,
    /// Stream of the last delivered sample, and its next sequence number.
    last: Option<(u64, u64)>,
    /// Streams seen (most recent last).
    known: std::collections::VecDeque<u64>,
    /// Byte ranges reported lost (most recent last).
    lost: std::collections::VecDeque<(u64, u64)>,
}

impl Tracker {
    /// Start from a known position (from the state file) or from nothing.
    pub fn new(resume: Option<Position>) -> Self {
        let mut t = Tracker::default();
        if let Some(p) = resume {
            t.last = Some((p.stream, p.next_seq));
            t.known.push_back(p.stream);
        }
        t
    }

    /// The stream last delivered from and its next sequence number.
    #[cfg(test)]
    pub fn position(&self) -> Option<Position> {
        let (stream, next_seq) = self.last?;
        Some(Position { stream, next_seq })
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
                first: self.next_pos.is_none() && self.last.is_none(),
            });
            Self::remember(&mut self.known, h.stream);
        }
        let is_data = h.kind == crate::wire::Kind::Data;
        let current = self.last.map(|l| l.0) == Some(h.stream);
        let Some(next) = self.next_pos else {
            // Nothing delivered yet by this `in`: only a resumed stream's
            // sequence numbers say where we are.
            if let Some((stream, next_seq)) = self.last.filter(|_| current) {
                if h.seq < next_seq {
                    if !is_data {
                        return Verdict::Duplicate;
                    }
                    notes.push(Note::Duplicate { stream, seq: h.seq });
                    return Verdict::Duplicate;
                }
                if h.seq > next_seq {
                    notes.push(Note::Gap {
                        within: Some((stream, next_seq, h.seq - next_seq)),
                        from: None,
                        to: h.pos,
                    });
                }
            } else if !is_new && !current && self.last.is_some() {
                return Verdict::Duplicate; // about a stream we moved past
            }
            self.advance(h, is_data);
            return Verdict::Deliver;
        };
        if !is_data {
            // A marker carries the position after its stream's last message.
            if !current && !is_new {
                return Verdict::Duplicate; // about a stream we moved past
            }
            if h.pos > next {
                self.gap(h, next, notes);
            }
            self.last = Some((h.stream, h.seq));
            self.next_pos = Some(h.pos.max(next));
            return Verdict::Deliver;
        }
        if h.pos < next {
            if is_new && self.last_start.is_some_and(|s| h.pos < s) {
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
                    self.last = Some((h.stream, h.seq.wrapping_add(1)));
                }
                let late = self.lost.iter().any(|&(a, b)| (a..b).contains(&h.pos));
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
            self.gap(h, next, notes);
        }
        self.advance(h, true);
        Verdict::Deliver
    }

    /// Delivered: the next message starts where this one ends.
    fn advance(&mut self, h: &Header, is_data: bool) {
        if is_data {
            self.last = Some((h.stream, h.seq.wrapping_add(1)));
            self.last_start = Some(h.pos);
        } else {
            self.last = Some((h.stream, h.seq));
        }
        self.next_pos = Some(h.end);
    }

    fn gap(&mut self, h: &Header, next: u64, notes: &mut Vec<Note>) {
        let within = match self.last {
            Some((stream, next_seq)) if stream == h.stream && h.seq > next_seq => {
                Some((stream, next_seq, h.seq - next_seq))
            }
            _ => None,
        };
        notes.push(Note::Gap {
            within,
            from: Some(next),
            to: h.pos,
        });
        Self::remember(&mut self.lost, (next, h.pos));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::Kind;

    /// A data sample of stream `stream`, seq `seq`, whose record spans
    /// `pos..pos + 16` (8-byte messages).
    fn data(stream: u64, seq: u64, pos: u64) -> Header {
        Header {
            kind: Kind::Data,
            stream,
            seq,
            pos,
            end: pos + 16,
        }
    }

    #[test]
    fn in_order_gap_duplicate() {
        let mut t = Tracker::new(None);
        let mut n = Vec::new();
        assert_eq!(t.on_sample(&data(1, 0, 160), &mut n), Verdict::Deliver);
        assert_eq!(t.on_sample(&data(1, 1, 176), &mut n), Verdict::Deliver);
        n.clear();
        assert_eq!(t.on_sample(&data(1, 5, 240), &mut n), Verdict::Deliver);
        assert_eq!(
            n,
            vec![Note::Gap {
                within: Some((1, 2, 3)),
                from: Some(192),
                to: 240
            }]
        );
        assert_eq!(n[0].missing(), 3);
        assert!(n[0]
            .to_string()
            .contains("seq 2..=4 (3 messages) lost, source ring bytes 192..240"));
        n.clear();
        assert_eq!(t.on_sample(&data(1, 3, 208), &mut n), Verdict::Duplicate);
        assert_eq!(t.on_sample(&data(1, 6, 256), &mut n), Verdict::Deliver);
    }

    #[test]
    fn restarted_out_resend_is_dropped() {
        let mut t = Tracker::new(None);
        let mut n = Vec::new();
        for s in 0..5 {
            t.on_sample(&data(1, s, 100 + 16 * s), &mut n);
        }
        // The old `out` published the message at 164 but died before
        // releasing it: the new one resumes at 164 and sends it again.
        n.clear();
        assert_eq!(t.on_sample(&data(2, 0, 164), &mut n), Verdict::Duplicate);
        assert!(n.contains(&Note::Duplicate { stream: 2, seq: 0 }));
        assert_eq!(t.on_sample(&data(2, 1, 180), &mut n), Verdict::Deliver);
        assert!(!n.iter().any(|x| matches!(x, Note::Gap { .. })), "{n:?}");
        assert_eq!(
            t.position(),
            Some(Position {
                stream: 2,
                next_seq: 2
            })
        );
    }

    #[test]
    fn restarted_out_joins_exactly_or_reports_the_bytes_between() {
        // It released the last delivered message: contiguous, nothing lost.
        let mut t = Tracker::new(None);
        let mut n = Vec::new();
        t.on_sample(&data(1, 0, 0), &mut n);
        n.clear();
        assert_eq!(t.on_sample(&data(2, 0, 16), &mut n), Verdict::Deliver);
        assert!(!n.iter().any(|x| matches!(x, Note::Gap { .. })), "{n:?}");
        // It released more that never arrived: exactly those bytes.
        let mut t = Tracker::new(None);
        t.on_sample(&data(1, 0, 0), &mut n);
        n.clear();
        assert_eq!(t.on_sample(&data(2, 0, 48), &mut n), Verdict::Deliver);
        assert!(n.contains(&Note::Gap {
            within: None,
            from: Some(16),
            to: 48
        }));
        assert!(n.iter().any(|x| x
            .to_string()
            .contains("bytes 16..48 (32 bytes of records) lost")));
    }

    #[test]
    fn late_samples_of_a_killed_out_do_not_rewind() {
        let mut t = Tracker::new(None);
        let mut n = Vec::new();
        for s in 0..10 {
            t.on_sample(&data(1, s, 16 * s), &mut n);
        }
        // out 1 released up to 320 but 160..320 were still in flight when
        // out 2 started at 320: a gap; then the old samples arrive: late.
        n.clear();
        assert_eq!(t.on_sample(&data(2, 0, 320), &mut n), Verdict::Deliver);
        assert!(n.contains(&Note::Gap {
            within: None,
            from: Some(160),
            to: 320
        }));
        n.clear();
        assert_eq!(t.on_sample(&data(1, 10, 160), &mut n), Verdict::Duplicate);
        assert_eq!(
            n,
            vec![Note::Late {
                stream: 1,
                seq: 10,
                pos: 160
            }]
        );
        assert_eq!(t.on_sample(&data(2, 1, 336), &mut n), Verdict::Deliver);
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
        }));
        let mut n = Vec::new();
        assert_eq!(t.on_sample(&data(7, 39, 624), &mut n), Verdict::Duplicate);
        n.clear();
        assert_eq!(t.on_sample(&data(7, 45, 720), &mut n), Verdict::Deliver);
        assert_eq!(
            n,
            vec![Note::Gap {
                within: Some((7, 40, 5)),
                from: None,
                to: 720
            }]
        );
        assert!(n[0].to_string().contains("ending at source ring byte 720"));
        n.clear();
        let end = Header {
            kind: Kind::End,
            stream: 7,
            seq: 46,
            pos: 736,
            end: 736,
        };
        assert_eq!(t.on_sample(&end, &mut n), Verdict::Deliver);
        assert!(n.is_empty(), "{n:?}");
        assert_eq!(t.position().map(|p| p.next_seq), Some(46));
    }
}
