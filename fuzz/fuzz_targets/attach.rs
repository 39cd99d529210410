//! Arbitrary bytes and sizes in a named shared-memory object, handed to
//! `inspect` and to both builders' `open_consumer` / `open_producer`:
//! every call must return an error or a working handle, never crash, hang or
//! read out of bounds. Some header words can be forced to valid values so
//! the input gets past the first checks (magic, version, capacity, size).

#![no_main]

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use shmpipe::{Builder, Variant};

const HEADER_SIZE: usize = 896;
const MAGIC: u64 = u64::from_le_bytes(*b"SHMPIPE\0");

#[derive(Arbitrary, Debug)]
struct Input {
    /// Bit 0 magic, 1 version, 2 variant, 3 wait, 4 capacity and size,
    /// 5 header size, 6 plausible indices, 7 group/other permission bits.
    force: u8,
    variant: u8,
    wait: u8,
    cap_shift: u8,
    /// Size when bit 4 is clear (taken modulo a few pages).
    size: u16,
    /// Small values for tail (@128) and head (@256) under bit 6.
    tail: u16,
    head: u16,
    /// Endpoint state words (@384, @388) under bit 6.
    states: [u8; 2],
    ops: Vec<u8>,
    bytes: Vec<u8>,
}

fn put(buf: &mut [u8], off: usize, v: &[u8]) {
    if off + v.len() <= buf.len() {
        buf[off..off + v.len()].copy_from_slice(v);
    }
}

/// A few non-blocking calls on a handle; none may crash.
fn exercise<V: Variant>(
    mut p: Option<shmpipe::Producer<V>>,
    mut c: Option<shmpipe::Consumer<V>>,
    ops: &[u8],
) {
    let mut buf = Vec::new();
    for &op in ops.iter().take(16) {
        let arg = (op >> 3) as usize;
        match op & 7 {
            0 => {
                if let Some(c) = c.as_mut() {
                    if let Ok(n) = c.try_recv(&mut buf) {
                        assert!(n <= c.max_message() && n == buf.len());
                    }
                }
            }
            1 => {
                if let Some(c) = c.as_mut() {
                    let max = c.max_message();
                    let _ = c.drain(arg % 5, |m| assert!(m.len() <= max));
                }
            }
            2 => {
                if let Some(c) = c.as_mut() {
                    let _ = c.recv_timeout(&mut buf, Duration::ZERO);
                    let _ = c.stats();
                }
            }
            3 => {
                if let Some(p) = p.as_mut() {
                    let _ = p.try_send(&vec![op; arg]);
                }
            }
            4 => {
                if let Some(p) = p.as_mut() {
                    if let Ok(mut claim) = p.try_claim(arg) {
                        claim.fill(0xa5);
                        claim.commit();
                    }
                }
            }
            5 => {
                if let Some(p) = p.as_mut() {
                    let _ = p.send_timeout(&[1, 2, 3], Duration::ZERO);
                    let _ = (p.len_bytes(), p.stats());
                }
            }
            6 => drop(p.take()),
            _ => drop(c.take()),
        }
    }
}

fn try_open<V: Variant>(name: &str, ops: &[u8]) {
    let b = Builder::<V>::default().open_timeout(Duration::ZERO);
    let c = b.open_consumer(name).ok();
    let p = b.open_producer(name).ok();
    exercise(p, c, ops);
    // And each role alone (the other one closed above, or never opened).
    if let Ok(p) = b.open_producer(name) {
        exercise::<V>(Some(p), None, ops);
    }
    if let Ok(c) = b.open_consumer(name) {
        exercise::<V>(None, Some(c), ops);
    }
}

static COUNTER: AtomicU64 = AtomicU64::new(0);

fuzz_target!(|input: Input| {
    let f = input.force;
    let (size, cap) = if f & 16 != 0 {
        let cap = 64u64 << (input.cap_shift % 7);
        // Sometimes one word off, to hit the size check itself.
        let delta: i64 = match input.cap_shift >> 6 {
            1 => 8,
            2 => -8,
            _ => 0,
        };
        ((HEADER_SIZE as i64 + cap as i64 + delta) as usize, cap)
    } else {
        (input.size as usize % (3 * 4096), u64::from(input.size))
    };
    let mut seg = vec![0u8; size];
    let n = input.bytes.len().min(size);
    seg[..n].copy_from_slice(&input.bytes[..n]);
    if f & 1 != 0 {
        put(&mut seg, 0, &MAGIC.to_le_bytes());
    }
    if f & 2 != 0 {
        put(&mut seg, 8, &3u32.to_le_bytes());
    }
    if f & 4 != 0 {
        put(
            &mut seg,
            12,
            &(1 + u32::from(input.variant % 2)).to_le_bytes(),
        );
    }
    if f & 8 != 0 {
        put(&mut seg, 16, &(1 + u32::from(input.wait % 4)).to_le_bytes());
    }
    if f & 16 != 0 {
        put(&mut seg, 24, &cap.to_le_bytes());
    }
    if f & 32 != 0 {
        put(&mut seg, 32, &(HEADER_SIZE as u64).to_le_bytes());
    }
    if f & 64 != 0 {
        put(&mut seg, 128, &u64::from(input.tail).to_le_bytes());
        put(&mut seg, 256, &u64::from(input.head).to_le_bytes());
        put(&mut seg, 384, &u32::from(input.states[0] % 4).to_le_bytes());
        put(&mut seg, 388, &u32::from(input.states[1] % 4).to_le_bytes());
    }
    let mode = if f & 128 != 0 { 0o644 } else { 0o600 };

    let name = format!(
        "/shmpipe-fuzz-attach-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    );
    let path = format!("/dev/shm{name}");
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&path)
        .expect("creating the test object in /dev/shm");
    file.write_all(&seg).expect("writing the test object");
    // The umask may have narrowed the mode; set it exactly.
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(mode))
        .expect("chmod");
    drop(file);

    // Any error is fine; what inspect accepts must be self-consistent.
    if let Ok(info) = shmpipe::inspect(&name) {
        assert!(info.capacity >= 64 && info.capacity.is_power_of_two());
        assert_eq!(info.size, info.capacity + HEADER_SIZE as u64);
        assert_eq!(info.max_message, shmpipe::max_message_for(info.capacity));
    }
    try_open::<shmpipe::LockFree>(&name, &input.ops);
    try_open::<shmpipe::Locked>(&name, &input.ops);

    std::fs::remove_file(&path).expect("removing the test object");
});
