//! A valid named ring whose header and data area are scribbled on through a
//! second mapping (what a hostile or broken peer process can do), between
//! non-blocking (or tiny-timeout) producer and consumer calls. Never a
//! crash, a hang or an out-of-bounds access; a handle that reported
//! `Corrupted` reports it on every later call.

#![no_main]

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use shmpipe::{Error, Builder, Consumer, Producer, Variant, WaitStrategy};

const HEADER_SIZE: usize = 896;

/// Words a peer is most likely to get wrong, by offset in the segment.
const TARGETS: &[(usize, usize)] = &[
    (128, 8), // tail
    (256, 8), // head
    (384, 4), // producer state
    (388, 4), // consumer state
    (512, 4), // consumer wait seq
    (516, 4), // consumer waiting flag
    (520, 4), // consumer semaphore count
    (640, 4), // producer wait seq
    (644, 4), // producer waiting flag
    (648, 4), // producer semaphore count
    (24, 8),  // capacity (read once at attach; later changes must not matter)
    (12, 4),  // variant
    (16, 4),  // wait strategy
];

#[derive(Arbitrary, Debug)]
enum Op {
    /// Write `val` (low `width` bytes) at any offset of the segment.
    Poke {
        off: u16,
        width: u8,
        val: u64,
    },
    /// Write `val` into one of the control words.
    PokeWord {
        which: u8,
        val: u64,
    },
    /// Write `val` as a small delta of the current tail or head (plausible lies).
    NudgeIndex {
        head: bool,
        delta: i8,
    },
    /// Write a record header word at the consumer's next record.
    PokeRecord {
        kind: u8,
        len: u32,
    },
    TrySend(u8),
    SendTimeout(u8),
    TryClaim(u8, bool),
    TryRecv,
    RecvTimeout,
    TryRecvWith,
    Drain(u8),
    Stats,
}

#[derive(Arbitrary, Debug)]
struct Input {
    locked: bool,
    cap: u8,
    wait: u8,
    ops: Vec<Op>,
}

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// Result of one call on a handle: was it `Corrupted`?
fn corrupted<T>(r: &Result<T, Error>) -> bool {
    matches!(r, Err(Error::Corrupted { .. }))
}

struct Sticky {
    broken: bool,
    what: &'static str,
}

impl Sticky {
    fn check<T: std::fmt::Debug>(&mut self, who: &str, r: &Result<T, Error>) {
        if self.broken {
            assert!(
                corrupted(r),
                "{who}: Corrupted was reported before ({}), now {r:?}",
                self.what
            );
        } else if let Err(Error::Corrupted { what, .. }) = r {
            self.broken = true;
            self.what = what;
        }
    }
}

struct Peer {
    base: *mut u8,
    size: usize,
}

impl Peer {
    fn write(&self, off: usize, bytes: &[u8]) {
        if off + bytes.len() <= self.size {
            for (i, b) in bytes.iter().enumerate() {
                // SAFETY: in bounds of the mapping; single-threaded here.
                unsafe { self.base.add(off + i).write_volatile(*b) };
            }
        }
    }
    fn read_u64(&self, off: usize) -> u64 {
        let mut v = [0u8; 8];
        for (i, b) in v.iter_mut().enumerate() {
            // SAFETY: as above (`off + 8 <= HEADER_SIZE`).
            *b = unsafe { self.base.add(off + i).read_volatile() };
        }
        u64::from_le_bytes(v)
    }
}

fn run<V: Variant>(input: &Input) {
    let cap = 64u64 << (input.cap % 5);
    let wait = WaitStrategy::ALL[input.wait as usize % WaitStrategy::ALL.len()];
    let name = format!(
        "/shmpipe-fuzz-hostile-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    );
    let b = Builder::<V>::default()
        .capacity(cap)
        .wait(wait)
        .open_timeout(Duration::ZERO);
    let mut p: Producer<V> = b.create_producer(&name).expect("create_producer");
    let mut c: Consumer<V> = b.open_consumer(&name).expect("open_consumer");
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(format!("/dev/shm{name}"))
        .expect("opening the segment for the hostile mapping");
    let map = memmap2::MmapOptions::new()
        .map_raw(&file)
        .expect("mapping the segment");
    let peer = Peer {
        base: map.as_mut_ptr(),
        size: map.len(),
    };
    assert_eq!(peer.size, HEADER_SIZE + cap as usize);
    let max = p.max_message();
    let mut ps = Sticky {
        broken: false,
        what: "",
    };
    let mut cs = Sticky {
        broken: false,
        what: "",
    };
    let mut buf = Vec::new();
    let short = Duration::from_micros(200);

    for op in input.ops.iter().take(64) {
        match op {
            Op::Poke { off, width, val } => {
                let w = 1 + (*width as usize % 8);
                let off = *off as usize % peer.size;
                peer.write(off, &val.to_le_bytes()[..w]);
            }
            Op::PokeWord { which, val } => {
                let (off, w) = TARGETS[*which as usize % TARGETS.len()];
                peer.write(off, &val.to_le_bytes()[..w]);
            }
            Op::NudgeIndex { head, delta } => {
                let off = if *head { 256 } else { 128 };
                let v = peer.read_u64(off).wrapping_add(*delta as i64 as u64);
                peer.write(off, &v.to_le_bytes());
            }
            Op::PokeRecord { kind, len } => {
                let head = peer.read_u64(256);
                let off = HEADER_SIZE + (head & (cap - 1) & !7) as usize;
                let word = (u64::from(*kind) << 32) | u64::from(*len);
                peer.write(off, &word.to_le_bytes());
            }
            Op::TrySend(n) => {
                let r = p.try_send(&vec![*n; *n as usize % (max + 2)]);
                ps.check("try_send", &r);
            }
            Op::SendTimeout(n) => {
                let r = p.send_timeout(&vec![*n; *n as usize % (max + 2)], short);
                ps.check("send_timeout", &r);
            }
            Op::TryClaim(n, commit) => {
                let len = *n as usize % (max + 2);
                match p.try_claim(len) {
                    Ok(mut claim) => {
                        assert!(!ps.broken, "try_claim succeeded after Corrupted");
                        assert_eq!(claim.len(), len);
                        claim.fill(*n);
                        if *commit {
                            claim.commit();
                        }
                    }
                    Err(e) => ps.check("try_claim", &Err::<(), _>(e)),
                }
            }
            Op::TryRecv => {
                let r = c.try_recv(&mut buf);
                if let Ok(n) = r {
                    assert!(n <= max && n == buf.len());
                }
                cs.check("try_recv", &r);
            }
            Op::RecvTimeout => {
                let r = c.recv_timeout(&mut buf, short);
                if let Ok(n) = r {
                    assert!(n <= max);
                }
                cs.check("recv_timeout", &r);
            }
            Op::TryRecvWith => {
                let r = c.try_recv_with(|m| {
                    assert!(m.len() <= max);
                    m.iter().map(|&b| u64::from(b)).sum::<u64>()
                });
                cs.check("try_recv_with", &r);
            }
            Op::Drain(k) => {
                let r = c.drain(*k as usize % 5, |m| assert!(m.len() <= max));
                cs.check("drain", &r);
            }
            Op::Stats => {
                let s = c.stats();
                assert!(s.used_bytes <= cap);
                let _ = (p.len_bytes(), c.len_bytes(), p.is_empty());
            }
        }
    }
    drop(p);
    drop(c);
    drop(map);
    let _ = std::fs::remove_file(format!("/dev/shm{name}"));
}

fuzz_target!(|input: Input| {
    if input.locked {
        run::<shmpipe::Locked>(&input);
    } else {
        run::<shmpipe::LockFree>(&input);
    }
});
