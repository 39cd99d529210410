//! What travels with each zenoh sample: a fixed 40-byte attachment.
//!
//! ```text
//! offset  field       meaning
//!      0  magic u32   "SPB2" (shmpipe bridge, format 2)
//!      4  kind u32    1 data, 2 end (the ring's producer closed), 3 died (it
//!                     died), 4 stop (the `out` bridge was interrupted)
//!      8  stream u64  random id of this run of `out`: a restarted `out` is a new stream
//!     16  seq u64     0, 1, 2, ... per stream; a marker carries the next unused seq
//!     24  pos u64     where the message's record starts in the source ring
//!                     (the consumer position `head` before it, in bytes;
//!                     a stream's first sample states where `out` resumed);
//!                     a marker: the position after the stream's last message
//!     32  end u64     the source-ring position after the message (`pos` for
//!                     a marker): the next message's `pos`
//! ```
//!
//! Positions are the ring's own byte index, read once when `out` attaches
//! and followed with `shmpipe::position_after`, never a counter: two runs
//! of `out` join exactly (format 1 carried a message index taken from the
//! ring's consumer counter, which a kill between the counter's and the
//! index's store left off by one).
//!
//! All little-endian. The payload of a data sample is the message, unchanged.

/// Size of the attachment in bytes.
pub const LEN: usize = 40;
const MAGIC: u32 = u32::from_le_bytes(*b"SPB2");

/// What a sample means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// One ring message.
    Data,
    /// The source ring's producer closed: the stream is complete.
    End,
    /// The source ring's producer died without closing.
    Died,
    /// The `out` bridge stopped (signal) before its producer finished.
    Stop,
}

impl Kind {
    fn code(self) -> u32 {
        match self {
            Kind::Data => 1,
            Kind::End => 2,
            Kind::Died => 3,
            Kind::Stop => 4,
        }
    }
    fn from_code(c: u32) -> Option<Kind> {
        Some(match c {
            1 => Kind::Data,
            2 => Kind::End,
            3 => Kind::Died,
            4 => Kind::Stop,
            _ => return None,
        })
    }
}

/// A decoded attachment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// What the sample means.
    pub kind: Kind,
    /// The sending `out` run.
    pub stream: u64,
    /// Sequence number within the stream.
    pub seq: u64,
    /// Source-ring position where the message's record starts.
    pub pos: u64,
    /// Source-ring position after the message.
    pub end: u64,
}

impl Header {
    /// The wire form.
    pub fn encode(&self) -> [u8; LEN] {
        let mut b = [0u8; LEN];
        b[0..4].copy_from_slice(&MAGIC.to_le_bytes());
        b[4..8].copy_from_slice(&self.kind.code().to_le_bytes());
        b[8..16].copy_from_slice(&self.stream.to_le_bytes());
        b[16..24].copy_from_slice(&self.seq.to_le_bytes());
        b[24..32].copy_from_slice(&self.pos.to_le_bytes());
        b[32..40].copy_from_slice(&self.end.to_le_bytes());
        b
    }

    /// Parse an attachment; `Err` says what is wrong (a sample from
    /// something other than `shmpipe-bridge out`, or another format).
    pub fn decode(b: &[u8]) -> Result<Header, String> {
        if b.len() != LEN {
            return Err(format!(
                "attachment of {} bytes, expected {LEN} (not sent by shmpipe-bridge out?)",
                b.len()
            ));
        }
        let u32_at = |i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        let u64_at = |i: usize| {
            let mut w = [0u8; 8];
            w.copy_from_slice(&b[i..i + 8]);
            u64::from_le_bytes(w)
        };
        if u32_at(0) != MAGIC {
            return Err(format!(
                "bad magic {:#010x} (not sent by shmpipe-bridge out?)",
                u32_at(0)
            ));
        }
        let kind = Kind::from_code(u32_at(4))
            .ok_or_else(|| format!("unknown sample kind {}", u32_at(4)))?;
        Ok(Header {
            kind,
            stream: u64_at(8),
            seq: u64_at(16),
            pos: u64_at(24),
            end: u64_at(32),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_rejects() {
        for kind in [Kind::Data, Kind::End, Kind::Died, Kind::Stop] {
            let h = Header {
                kind,
                stream: 0x0123_4567_89ab_cdef,
                seq: u64::MAX,
                pos: 7,
                end: 9,
            };
            assert_eq!(Header::decode(&h.encode()), Ok(h));
        }
        let good = Header {
            kind: Kind::Data,
            stream: 1,
            seq: 2,
            pos: 3,
            end: 4,
        }
        .encode();
        assert!(Header::decode(&good[..39]).is_err());
        let mut bad = good;
        bad[0] ^= 1;
        assert!(Header::decode(&bad).unwrap_err().contains("magic"));
        let mut bad = good;
        bad[4] = 9;
        assert!(Header::decode(&bad).unwrap_err().contains("kind"));
    }
}
