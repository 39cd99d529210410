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
