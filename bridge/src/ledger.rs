//! `in --state FILE`: what a killed `in` had delivered, so its successor
//! reports exactly which sequence numbers the ring's reader never got.
//!
//! The ring itself counts the messages committed into it (the producer's
//! `messages_sent`, which a new producer continues). Within one run of
//! contiguous sequence numbers, `seq = count + base`. The file holds the
//! current `(stream, base, from_count)` and the previous one; it is
//! rewritten (write + rename) only when `base` changes, i.e. on a new stream
//! or after a gap, and *before* the first message with the new base is
//! committed. On restart, with `M` messages in the ring's count: if the
//! current entry's first message was committed (`M > from_count`) the next
//! expected seq is `M + base`; otherwise that message never reached the
//! ring and the previous entry applies.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use crate::track::Position;

/// One run of contiguous sequence numbers delivered into the ring.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    /// Stream id.
    pub stream: u64,
    /// `seq - count` (wrapping).
    pub base: u64,
    /// The ring's message count when the first message of this entry was
    /// about to be committed.
    pub from_count: u64,
}

/// The state file and its two entries.
#[derive(Debug)]
pub struct Ledger {
    path: PathBuf,
    prev: Option<Entry>,
    cur: Option<Entry>,
}

const TAG: &str = "shmpipe-bridge-in-state 2";

fn parse_entry(line: &str) -> Option<Entry> {
    let mut it = line.split_whitespace();
    let mut next = || -> Option<u64> { it.next()?.parse().ok() };
    Some(Entry {
        stream: next()?,
        base: next()?,
        from_count: next()?,
    })
}

impl Ledger {
    /// Read `path` if it exists (a missing file is an empty ledger).
    pub fn load(path: &Path) -> Result<Ledger, String> {
        let mut l = Ledger {
            path: path.to_path_buf(),
            prev: None,
            cur: None,
        };
        let text = match fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(l),
            Err(e) => return Err(format!("reading state file {}: {e}", path.display())),
        };
        let mut lines = text.lines();
        if lines.next() != Some(TAG) {
            return Err(format!(
                "{} is not a shmpipe-bridge state file (first line should be {TAG:?}); \
                 give another --state path or remove it",
                path.display()
            ));
        }
        for line in lines {
            let bad = || format!("{}: bad line {line:?}", path.display());
            let (which, rest) = line.split_once(' ').ok_or_else(bad)?;
            let e = parse_entry(rest).ok_or_else(bad)?;
            match which {
                "prev" => l.prev = Some(e),
                "cur" => l.cur = Some(e),
                _ => return Err(bad()),
            }
        }
        Ok(l)
    }

    /// Where the previous `in` stood, given the ring's message count now.
    pub fn resume(&self, count: u64) -> Option<Position> {
        let cur = self.cur?;
        let e = match self.prev {
            Some(p) if count <= cur.from_count && p.stream == cur.stream => p,
            _ => cur,
        };
        Some(Position {
            stream: e.stream,
            next_seq: count.wrapping_add(e.base),
        })
    }

    /// Before committing message `seq` of `stream` as the ring's message
    /// number `count`: record a new entry if it does not continue the
    /// current one.
    pub fn before_commit(&mut self, stream: u64, seq: u64, count: u64) -> Result<(), String> {
        let base = seq.wrapping_sub(count);
        if let Some(c) = self.cur {
            if c.stream == stream && c.base == base {
                return Ok(());
            }
        }
        self.prev = self.cur;
        self.cur = Some(Entry {
            stream,
            base,
            from_count: count,
        });
        self.save()
    }

    fn save(&self) -> Result<(), String> {
        let mut text = format!("{TAG}\n");
        for (name, e) in [("prev", self.prev), ("cur", self.cur)] {
            if let Some(e) = e {
                text += &format!("{name} {} {} {}\n", e.stream, e.base, e.from_count);
            }
        }
        let tmp = self.path.with_extension("tmp");
        let write = || -> io::Result<()> {
            let mut f = fs::File::create(&tmp)?;
            f.write_all(text.as_bytes())?;
            // No fsync: the file must survive the process, not the machine.
            fs::rename(&tmp, &self.path)
        };
        write().map_err(|e| format!("writing state file {}: {e}", self.path.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resume_picks_the_committed_entry() {
        let dir = std::env::temp_dir().join(format!("spb-ledger-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("state");
        let _ = fs::remove_file(&path);
        let mut l = Ledger::load(&path).unwrap();
        assert_eq!(l.resume(0), None);
        // Stream 9 from seq 0 into an empty ring, messages 0..10 delivered.
        l.before_commit(9, 0, 0).unwrap();
        for s in 1..10 {
            l.before_commit(9, s, s).unwrap();
        }
        // Then a gap: seq 15 becomes ring message 10.
        l.before_commit(9, 15, 10).unwrap();
        let l = Ledger::load(&path).unwrap();
        // Killed before seq 15 was committed: next expected is 10.
        assert_eq!(l.resume(10).map(|p| p.next_seq), Some(10));
        // Killed after it and two more: next expected is 18.
        assert_eq!(l.resume(13).map(|p| p.next_seq), Some(18));
        fs::write(&path, "something else\n").unwrap();
        assert!(Ledger::load(&path)
            .unwrap_err()
            .contains("not a shmpipe-bridge state file"));
        fs::remove_dir_all(&dir).unwrap();
    }
}
