//! tachyon 0.5.1 (opt-in cargo feature `tachyon`): one tachyon bus per
//! direction, driven through the C API of its core (`tachyon-sys`, the
//! crate `tachyon-ipc`'s `Bus` wraps one call for one call):
//! `tachyon_acquire_tx` + copy + `tachyon_commit_tx` + `tachyon_flush` per
//! message (what `Bus::send` does), and `tachyon_acquire_rx` + copy out +
//! `tachyon_commit_rx` (what `acquire_rx` + `RxGuard::commit` do). The C
//! API is used instead of `Bus` because `Bus` only has a receive that waits
//! for ever, and a busy-polling row must be able to give up when the
//! harness's watchdog fires. Blocking mode uses tachyon's own
//! `tachyon_acquire_rx_blocking` (spin, then futex); it returns only on a
//! message, EINTR or a corrupted bus, so a blocking receive whose peer
//! died waits for ever (the child is bounded by its alarm).
//!
//! The buses are made after `fork()` (tachyon maps its memory with
//! `MADV_DONTFORK`): each process listens, on a thread, for the bus it
//! receives on (`tachyon_bus_listen` waits for its peer on a Unix socket)
//! while it connects to the bus it sends on.
//!
//! Each bus is 1 MiB, or larger for large messages: tachyon's consumer
//! publishes its read position only every 32 messages, so a bus must hold
//! more records than that or it deadlocks once full ([`capacity`]).

use std::ffi::CString;
use std::ptr::NonNull;
use std::time::{Duration, Instant};

use tachyon_sys::{
    tachyon_acquire_rx, tachyon_acquire_rx_blocking, tachyon_acquire_tx, tachyon_bus_connect,
    tachyon_bus_destroy, tachyon_bus_listen, tachyon_bus_set_polling_mode, tachyon_bus_t,
    tachyon_commit_rx, tachyon_commit_tx, tachyon_error_t_TACHYON_SUCCESS, tachyon_flush,
    tachyon_get_state, tachyon_state_t_TACHYON_STATE_FATAL_ERROR,
};

use super::harness::{aborted, spin_step, unique_name, Endpoint, Mode, Transport};

/// Ring bytes per bus (a power of two, as tachyon requires): 1 MiB, like
/// the other rings, or more where a message needs it ([`capacity`]).
const CAPACITY: usize = 1 << 20;
/// The largest bus this row makes.
const MAX_CAPACITY: usize = 64 << 20;
/// tachyon's consumer stores its read position (`tail`) only every this
/// many messages (`Arena::BATCH_SIZE`): `tachyon_flush` flushes only the
/// producer's side, and no call of the C API flushes the consumer's.
const RX_PUBLISH_EVERY: usize = 32;
/// tachyon's record: a 64-byte header, the payload, 64-byte alignment.
const fn record(size: usize) -> usize {
    (64 + size).next_multiple_of(64)
}

/// The bus for `size`-byte messages: 1 MiB, or the smallest power of two
/// holding twice [`RX_PUBLISH_EVERY`] records. A bus holding fewer than
/// that many deadlocks once full: its consumer has read every record but
/// published none, and its producer waits for that room for ever (what
/// hung the 64 KiB sessions: 15 records fit in 1 MiB).
fn capacity(size: usize) -> usize {
    (2 * RX_PUBLISH_EVERY * record(size))
        .next_power_of_two()
        .max(CAPACITY)
}
/// Spins before a blocking receive sleeps.
const SPIN_THRESHOLD: u32 = 10_000;

pub struct Tachyon;

/// One end of a tachyon bus, owned by this process.
pub struct Bus(NonNull<tachyon_bus_t>);

// SAFETY: a tachyon bus handle may move between threads (tachyon-ipc's
// `Bus` is `Send` for the same handle); it is used by one thread at a time.
unsafe impl Send for Bus {}

impl Drop for Bus {
    fn drop(&mut self) {
        // SAFETY: the handle came from listen/connect and is released once.
        unsafe { tachyon_bus_destroy(self.0.as_ptr()) };
    }
}

impl Bus {
    fn from_raw(raw: *mut tachyon_bus_t, err: u32, what: &str) -> Result<Bus, String> {
        if err != tachyon_error_t_TACHYON_SUCCESS {
            return Err(format!("tachyon {what}: error {err}"));
        }
        NonNull::new(raw)
            .map(Bus)
            .ok_or_else(|| format!("tachyon {what}: no bus returned"))
    }

    fn fatal(&self) -> bool {
        // SAFETY: a live handle.
        let state = unsafe { tachyon_get_state(self.0.as_ptr()) };
        state == tachyon_state_t_TACHYON_STATE_FATAL_ERROR
    }
}

fn listen(path: &CString, capacity: usize) -> Result<Bus, String> {
    let mut raw = std::ptr::null_mut();
    // SAFETY: a valid C string and out pointer; blocks until a peer connects.
    let err = unsafe { tachyon_bus_listen(path.as_ptr(), capacity, &mut raw) };
    Bus::from_raw(raw, err, "listen")
}

fn connect(path: &CString) -> Result<Bus, String> {
    let mut raw = std::ptr::null_mut();
    // SAFETY: a valid C string and out pointer.
    let err = unsafe { tachyon_bus_connect(path.as_ptr(), &mut raw) };
    Bus::from_raw(raw, err, "connect")
}

/// This process's end: listen for the bus we receive on (the peer
/// connects to send) while connecting to the bus we send on (retrying
/// until the peer listens). Returns (receiver, sender).
fn open_end(rx_path: &str, tx_path: &str, size: usize) -> Result<(Bus, Bus), String> {
    let c = |p: &str| CString::new(p).map_err(|_| "socket path with a NUL byte".to_string());
    let (rx_path, tx_path) = (c(rx_path)?, c(tx_path)?);
    std::thread::scope(|s| {
        let listener = s.spawn(|| listen(&rx_path, capacity(size)));
        let t0 = Instant::now();
        let tx = loop {
            match connect(&tx_path) {
                Ok(b) => break Ok(b),
                Err(e) if t0.elapsed() > Duration::from_secs(10) || aborted() => {
                    break Err(format!("{e} (the peer never listened)"))
                }
                Err(_) => std::thread::sleep(Duration::from_millis(1)),
            }
        };
        if tx.is_err() && !listener.is_finished() {
            // Release our own listener, which would wait for ever: connect
            // to it ourselves and drop that bus.
            let _ = connect(&rx_path);
        }
        let rx = listener
            .join()
            .map_err(|_| "tachyon listen thread panicked".to_string())?;
        Ok((rx?, tx?))
    })
}

/// The socket paths of both buses; the buses themselves are made after
/// the fork (tachyon maps its memory with MADV_DONTFORK: a child would not
/// inherit it).
pub struct TySetup {
    down: String,
    up: String,
}

pub struct TyEnd {
    tx: Bus,
    rx: Bus,
    spin: bool,
    /// Where a received message is copied.
    buf: Vec<u8>,
}

impl Transport for Tachyon {
    type Setup = TySetup;
    type End = TyEnd;
    fn name(&self) -> &'static str {
        "tachyon"
    }
    fn stream_mode(&self) -> Mode {
        Mode::Spin
    }
    fn supports(&self, size: usize) -> Result<(), String> {
        if capacity(size) > MAX_CAPACITY {
            return Err(format!(
                "not run above {} B: tachyon's consumer publishes its position every {RX_PUBLISH_EVERY} messages, so its bus must hold {} records ({} MiB at {size} B; this row makes buses of up to {} MiB)",
                MAX_CAPACITY / (2 * RX_PUBLISH_EVERY) - 64,
                2 * RX_PUBLISH_EVERY,
                capacity(size) >> 20,
                MAX_CAPACITY >> 20
            ));
        }
        Ok(())
    }
    fn setup(&self, _size: usize) -> Result<TySetup, String> {
        let base = unique_name("/tmp/shmpipe-bench-tachyon");
        Ok(TySetup {
            down: format!("{base}-down.sock"),
            up: format!("{base}-up.sock"),
        })
    }
    fn parent(&self, s: TySetup, size: usize) -> Result<TyEnd, String> {
        TyEnd::new(&s.up, &s.down, size)
    }
    fn child(&self, s: TySetup, size: usize) -> Result<TyEnd, String> {
        TyEnd::new(&s.down, &s.up, size)
    }
}

impl TyEnd {
    /// The end that receives on the bus at `rx_path` and sends on `tx_path`'s.
    fn new(rx_path: &str, tx_path: &str, size: usize) -> Result<TyEnd, String> {
        let (rx, tx) = open_end(rx_path, tx_path, size)?;
        Ok(TyEnd {
            tx,
            rx,
            spin: true,
            buf: vec![0; size],
        })
    }
}

impl Endpoint for TyEnd {
    fn set_mode(&mut self, mode: Mode) -> Result<(), String> {
        self.spin = mode == Mode::Spin;
        // SAFETY: a live handle; tells our bus's producer whether we may sleep.
        unsafe { tachyon_bus_set_polling_mode(self.rx.0.as_ptr(), i32::from(self.spin)) };
        Ok(())
    }

    #[inline]
    fn send(&mut self, msg: &[u8]) -> Result<(), String> {
        let bus = self.tx.0.as_ptr();
        let mut rounds = 0;
        loop {
            // SAFETY: a live handle, used by this thread only.
            let p = unsafe { tachyon_acquire_tx(bus, msg.len()) };
            if let Some(p) = NonNull::new(p.cast::<u8>()) {
                // SAFETY: tachyon reserved `msg.len()` writable bytes at `p`,
                // ours until the commit.
                unsafe {
                    std::ptr::copy_nonoverlapping(msg.as_ptr(), p.as_ptr(), msg.len());
                    let err = tachyon_commit_tx(bus, msg.len(), 0);
                    tachyon_flush(bus);
                    if err != tachyon_error_t_TACHYON_SUCCESS {
                        return Err(format!("tachyon commit_tx: error {err}"));
                    }
                }
                return Ok(());
            }
            if self.tx.fatal() {
                return Err("tachyon send: the bus is in its fatal-error state".into());
            }
            spin_step(&mut rounds)?; // full
        }
    }

    #[inline]
    fn recv<R>(&mut self, len: usize, f: impl FnOnce(&[u8]) -> R) -> Result<R, String> {
        let bus = self.rx.0.as_ptr();
        let mut rounds = 0;
        loop {
            let (mut type_id, mut size) = (0u32, 0usize);
            // SAFETY: a live handle, used by this thread only; valid out pointers.
            let mut p = unsafe { tachyon_acquire_rx(bus, &mut type_id, &mut size) };
            if p.is_null() {
                // Empty: publish what we consumed (tachyon's consumer stores
                // `tail` only every 32 messages or on a flush; a producer
                // whose ring holds fewer would wait for ever), then wait.
                // SAFETY: as above.
                unsafe { tachyon_flush(bus) };
                if !self.spin {
                    // SAFETY: as above.
                    p = unsafe {
                        tachyon_acquire_rx_blocking(bus, &mut type_id, &mut size, SPIN_THRESHOLD)
                    };
                }
            }
            if let Some(p) = NonNull::new(p.cast_mut().cast::<u8>()) {
                let fits = size == len && len == self.buf.len();
                if fits {
                    // SAFETY: tachyon lends `size` readable bytes at `p`
                    // until the commit; `buf` holds `size` bytes.
                    unsafe {
                        std::ptr::copy_nonoverlapping(p.as_ptr(), self.buf.as_mut_ptr(), size)
                    };
                }
                // SAFETY: releases the message acquired above.
                let err = unsafe { tachyon_commit_rx(bus) };
                if err != tachyon_error_t_TACHYON_SUCCESS {
                    return Err(format!("tachyon commit_rx: error {err}"));
                }
                if !fits {
                    return Err(format!("received a {size}-byte message, expected {len}"));
                }
                return Ok(f(&self.buf));
            }
            if self.rx.fatal() {
                return Err("tachyon receive: the bus is in its fatal-error state".into());
            }
            if self.spin {
                spin_step(&mut rounds)?;
            } else if aborted() {
                return Err("aborted by the watchdog".into());
            }
        }
    }
}
