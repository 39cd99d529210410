//! The `#[repr(C)]` header at the start of every segment.
//!
//! ```text
//! offset  line (128 B each)      written by         fields
//!      0  config                 creator, once      magic, version (published last), variant,
//!                                                   wait strategy, flags, capacity, header size
//!    128  producer               producer           tail, messages, bytes, full waits, wake syscalls
//!    256  consumer               consumer           head, messages, bytes, empty waits, wake syscalls
//!    384  endpoints              both (own word)    producer state, consumer state, lock repairs,
//!                                                   producer/consumer "light barrier" flags,
//!                                                   producer/consumer attach epochs,
//!                                                   producer/consumer pids (hints for pidfds)
//!    512  wait_consumer          both               seq (futex word), waiting flag, semaphore count "items"
//!    640  wait_producer          both               seq (futex word), waiting flag, semaphore count "space"
//!    768  lock                   locked variant     lock word (u32: free / held by a role, waiters)
//!    896  data area              producer writes,   `capacity` bytes, power of two
//!                                consumer reads
//! ```

use crossbeam_utils::CachePadded;

use crate::sync::{AtomicU32, AtomicU64};

/// Magic word at offset 0: `"SHMPIPE\0"` little-endian.
pub const MAGIC: u64 = u64::from_le_bytes(*b"SHMPIPE\0");
/// On-memory format version this library reads and writes. 3: the
/// `Semaphore` strategy's count words replace glibc `sem_t`s in the wait
/// lines, the producer's counters are checkpoints instead of per-message
/// stores and the consumer keeps none, and the endpoints record their pids
/// (2: the record header is the consumer's signal; 1: the consumer read
/// `tail` per message).
pub const VERSION: u32 = 3;
/// Smallest data-area capacity in bytes.
pub const MIN_CAPACITY: u64 = 64;
/// Largest data-area capacity in bytes (4 GiB).
pub const MAX_CAPACITY: u64 = 1 << 32;

/// Variant code of the lock-free ring.
pub const VARIANT_LOCKFREE: u32 = 1;
/// Variant code of the mutex-protected ring.
pub const VARIANT_LOCKED: u32 = 2;

/// Endpoint state: no process has attached to this role yet.
pub const STATE_NEVER: u32 = 0;
/// Endpoint state: a process attached (it holds the role's OFD lock while alive).
pub const STATE_ATTACHED: u32 = 1;
/// Endpoint state: the endpoint closed its side in order.
pub const STATE_CLOSED: u32 = 2;

/// Write-once configuration, published by the `version` store.
#[repr(C)]
pub(crate) struct Config {
    pub magic: AtomicU64,
    /// Zero while the creator initialises; `VERSION` once usable.
    pub version: AtomicU32,
    pub variant: AtomicU32,
    pub wait: AtomicU32,
    pub flags: AtomicU32,
    pub capacity: AtomicU64,
    pub header_size: AtomicU64,
}

/// Words only the producer writes.
#[repr(C)]
pub(crate) struct ProducerLine {
    /// Monotonic byte position one past the last committed record.
    pub tail: AtomicU64,
    pub full_waits: AtomicU64,
    pub wake_syscalls: AtomicU64,
    /// Which of `counts` is current: `counts[counts_seq & 1]`.
    pub counts_seq: AtomicU64,
    /// Double-buffered checkpoints of the producer's counters (format v3):
    /// the messages and payload bytes committed before position `at`.
    /// Written when the producer reloads `head` (and at attach and close),
    /// not per message; readers add the records from `at` on (DESIGN.md §2).
    pub counts: [Counts; 2],
}

/// One checkpoint of the producer's counters.
#[repr(C)]
pub(crate) struct Counts {
    /// Record position the counts run up to (a record boundary).
    pub at: AtomicU64,
    pub messages: AtomicU64,
    pub bytes: AtomicU64,
}

/// Words only the consumer writes.
#[repr(C)]
pub(crate) struct ConsumerLine {
    /// Monotonic byte position of the next record to read. (What was
    /// received is derived from it: format v3 keeps no consumer counters.)
    pub head: AtomicU64,
    pub empty_waits: AtomicU64,
    pub wake_syscalls: AtomicU64,
}

/// Endpoint lifecycle words (read-mostly, off the index lines).
#[repr(C)]
pub(crate) struct Endpoints {
    pub producer: AtomicU32,
    pub consumer: AtomicU32,
    /// Times the locked variant's lock was recovered from a dead holder.
    pub lock_repairs: AtomicU64,
    /// 1 while the producer publishes with the light barrier (its process is
    /// registered for `membarrier(GLOBAL_EXPEDITED)`): a sleeping consumer
    /// must then issue the heavy barrier. 0: the producer publishes SeqCst.
    pub producer_light: AtomicU32,
    /// The same for the consumer.
    pub consumer_light: AtomicU32,
    /// Bumped by every producer that attaches: the locked ring's lock word
    /// names its holder by role and epoch, so a holder from an earlier
    /// attachment of the role is known to be dead.
    pub producer_epoch: AtomicU32,
    /// The same for the consumer.
    pub consumer_epoch: AtomicU32,
    /// Process id of the producer's latest attachment (0: none), for a
    /// [`crate::WaitSet`] to watch it with a pidfd. A hint only: the role
    /// lock decides whether the producer lives (a peer may write anything).
    pub producer_pid: AtomicU32,
    /// The same for the consumer.
    pub consumer_pid: AtomicU32,
}

/// Where one side sleeps: a futex word, a waiter flag and a semaphore count.
#[repr(C)]
pub(crate) struct WaitWord {
    /// Futex word: bumped by the waker before each wake syscall.
    pub seq: AtomicU32,
    /// 1 while the sleeper is registered; the waker swaps it to 0.
    pub waiting: AtomicU32,
    /// The `Semaphore` strategy's count (`wait.rs`'s `sem_post` /
    /// `sem_wait`): posts not yet taken. Its own futex word; any value is a
    /// count, so a peer cannot make it invalid.
    pub count: AtomicU32,
}

/// The locked variant's lock: one futex word owned by a role (see
/// `src/locked.rs`), with no pointer or glibc object a peer could poison.
#[repr(C)]
pub(crate) struct LockLine {
    pub word: AtomicU32,
}

/// The segment header. All fields are atomics (no libc object lives in it),
/// so a shared reference to it is sound while another process writes the
/// same memory.
#[repr(C)]
pub(crate) struct Header {
    pub config: CachePadded<Config>,
    pub prod: CachePadded<ProducerLine>,
    pub cons: CachePadded<ConsumerLine>,
    pub endpoints: CachePadded<Endpoints>,
    pub wait_consumer: CachePadded<WaitWord>,
    pub wait_producer: CachePadded<WaitWord>,
    pub lock: CachePadded<LockLine>,
}

/// Size of the header; the data area starts here.
pub const HEADER_SIZE: usize = 896;

#[cfg(not(loom))]
const _: () = {
    use std::mem::{align_of, offset_of, size_of};
    assert!(size_of::<Header>() == HEADER_SIZE);
    assert!(align_of::<Header>() == 128);
    assert!(offset_of!(Header, config) == 0);
    assert!(offset_of!(Header, prod) == 128);
    assert!(offset_of!(Header, cons) == 256);
    assert!(offset_of!(Header, endpoints) == 384);
    assert!(offset_of!(Header, wait_consumer) == 512);
    assert!(offset_of!(Header, wait_producer) == 640);
    assert!(offset_of!(Header, lock) == 768);
    assert!(size_of::<Config>() <= 128);
    assert!(size_of::<ProducerLine>() <= 128);
    assert!(size_of::<ConsumerLine>() <= 128);
    assert!(size_of::<Endpoints>() <= 128);
    assert!(offset_of!(Endpoints, producer_epoch) == 24);
    assert!(offset_of!(Endpoints, producer_pid) == 32);
    assert!(offset_of!(Endpoints, consumer_pid) == 36);
    assert!(size_of::<WaitWord>() <= 128);
    assert!(size_of::<LockLine>() <= 128);
    assert!(offset_of!(Config, version) == 8);
    assert!(offset_of!(Config, capacity) == 24);
    assert!(offset_of!(ProducerLine, counts_seq) == 24);
    assert!(offset_of!(ProducerLine, counts) == 32);
    assert!(size_of::<[Counts; 2]>() == 48);
    assert!(offset_of!(WaitWord, seq) == 0);
    assert!(offset_of!(WaitWord, waiting) == 4);
    assert!(offset_of!(WaitWord, count) == 8);
    assert!(HEADER_SIZE % 128 == 0);
};

/// Total segment size for a data area of `capacity` bytes.
pub const fn segment_size(capacity: u64) -> u64 {
    HEADER_SIZE as u64 + capacity
}

/// Largest message a ring of `capacity` bytes accepts: a record of at most
/// half the ring always fits in an empty ring, wherever the wrap falls.
pub const fn max_message(capacity: u64) -> usize {
    (capacity / 2 - 8) as usize
}

/// Whether `capacity` is allowed.
pub const fn capacity_ok(capacity: u64) -> bool {
    capacity.is_power_of_two() && capacity >= MIN_CAPACITY && capacity <= MAX_CAPACITY
}
