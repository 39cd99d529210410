//! What the timing examples share (`#[path = "common/mod.rs"] mod common;`
//! in each; Cargo does not build a folder without a `main.rs` as an example).

/// Pin the calling thread to `cpu`, so paired trials run on the same two
/// CPUs. A failure (a CPU outside the allowed set) leaves the thread
/// unpinned: the figures are then only noisier.
pub fn pin(cpu: usize) {
    // SAFETY: a zeroed cpu_set_t is a valid empty set; CPU_SET writes
    // inside it, and sched_setaffinity only reads it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

/// The sequence number a received message starts with. `black_box`: the
/// whole message stays copied out, as a caller using every byte needs it
/// (without it, the compiler may drop the copy of bytes nobody reads, and
/// did for the rows that return the message by value).
/// (Not every example that includes this module uses it.)
#[allow(dead_code)]
#[inline(always)]
pub fn seq_of(m: &[u8]) -> u64 {
    let m = std::hint::black_box(m);
    u64::from_le_bytes(m[..8].try_into().unwrap())
}

/// A busy poll's outcome: the value, or `None` while the ring is empty or
/// full; any other error is a bug in the example, reported at once.
#[allow(dead_code)]
#[inline(always)]
pub fn ready<T>(r: Result<T, shmpipe::Error>) -> Option<T> {
    match r {
        Ok(v) => Some(v),
        Err(shmpipe::Error::Empty | shmpipe::Error::Full) => None,
        Err(e) => panic!("{e}"),
    }
}
