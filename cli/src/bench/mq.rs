//! POSIX message queues: one queue per direction, made before the fork and
//! opened by name in each process (so O_NONBLOCK is per process).

use std::ffi::CString;

use super::harness::{os_err, retry_or_fail, unique_name, Endpoint, Mode, Transport};

fn proc_limit(file: &str) -> Option<usize> {
    std::fs::read_to_string(format!("/proc/sys/fs/mqueue/{file}"))
        .ok()?
        .trim()
        .parse()
        .ok()
}

pub struct Mq;

/// The two queue names; the process that made them unlinks them on drop.
pub struct MqNames {
    down: CString,
    up: CString,
    owner: u32,
}

impl Drop for MqNames {
    fn drop(&mut self) {
        if std::process::id() == self.owner {
            // SAFETY: valid NUL-terminated names; unlinking a missing queue is harmless.
            unsafe {
                libc::mq_unlink(self.down.as_ptr());
                libc::mq_unlink(self.up.as_ptr());
            }
        }
    }
}

fn open_queue(
    name: &CString,
    flags: i32,
    attr: Option<&mut libc::mq_attr>,
) -> Result<libc::mqd_t, String> {
    let attr_ptr = attr.map_or(std::ptr::null_mut(), |a| a as *mut libc::mq_attr);
    // SAFETY: `name` is NUL-terminated; mode and attr are the variadic
    // arguments O_CREAT expects (attr may be null).
    let q = unsafe { libc::mq_open(name.as_ptr(), flags, 0o600 as libc::mode_t, attr_ptr) };
    if q == -1 {
        return Err(os_err("mq_open"));
    }
    Ok(q)
}

impl Transport for Mq {
    type Setup = MqNames;
    type End = MqEnd;
    fn name(&self) -> &'static str {
        "mq"
    }
    fn supports(&self, size: usize) -> Result<(), String> {
        match proc_limit("msgsize_max") {
            Some(max) if size > max => Err(format!("message too large for mq (msgsize_max={max})")),
            _ => Ok(()),
        }
    }
    fn setup(&self, size: usize) -> Result<MqNames, String> {
        let pid = std::process::id();
        let base = unique_name("/shmpipe-bench");
        let mk = |dir: &str| CString::new(format!("{base}-{dir}")).map_err(|e| e.to_string());
        let names = MqNames {
            down: mk("down")?,
            up: mk("up")?,
            owner: pid,
        };
        let maxmsg = proc_limit("msg_max").unwrap_or(10).min(10);
        for name in [&names.down, &names.up] {
            // SAFETY: mq_attr is plain data; zeroed then filled in.
            let mut attr: libc::mq_attr = unsafe { std::mem::zeroed() };
            attr.mq_maxmsg = maxmsg as _;
            attr.mq_msgsize = size as _;
            let q = open_queue(
                name,
                libc::O_CREAT | libc::O_EXCL | libc::O_RDWR,
                Some(&mut attr),
            )?;
            // SAFETY: `q` is the descriptor just opened.
            unsafe { libc::mq_close(q) };
        }
        Ok(names)
    }
    fn parent(&self, s: MqNames, size: usize) -> Result<MqEnd, String> {
        let tx = open_queue(&s.down, libc::O_WRONLY, None)?;
        let rx = open_queue(&s.up, libc::O_RDONLY, None).inspect_err(|_| {
            // SAFETY: `tx` is our open descriptor.
            unsafe { libc::mq_close(tx) };
        })?;
        Ok(MqEnd::new(rx, tx, size, Some(s)))
    }
    fn child(&self, s: MqNames, size: usize) -> Result<MqEnd, String> {
        let rx = open_queue(&s.down, libc::O_RDONLY, None)?;
        let tx = open_queue(&s.up, libc::O_WRONLY, None).inspect_err(|_| {
            // SAFETY: `rx` is our open descriptor.
            unsafe { libc::mq_close(rx) };
        })?;
        Ok(MqEnd::new(rx, tx, size, None))
    }
}

pub struct MqEnd {
    rx: libc::mqd_t,
    tx: libc::mqd_t,
    spin: bool,
    scratch: Vec<u8>,
    _names: Option<MqNames>,
}

impl MqEnd {
    fn new(rx: libc::mqd_t, tx: libc::mqd_t, size: usize, names: Option<MqNames>) -> Self {
        MqEnd {
            rx,
            tx,
            spin: false,
            scratch: vec![0; size],
            _names: names,
        }
    }
}

impl Drop for MqEnd {
    fn drop(&mut self) {
        // SAFETY: both are descriptors we opened and close once.
        unsafe {
            libc::mq_close(self.rx);
            libc::mq_close(self.tx);
        }
    }
}

/// An absolute CLOCK_REALTIME deadline one second from now, for the timed
/// calls that let a blocked parent notice the watchdog.
fn soon() -> libc::timespec {
    // SAFETY: timespec is plain data.
    let mut ts: libc::timespec = unsafe { std::mem::zeroed() };
    // SAFETY: `ts` is a valid out pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_REALTIME, &mut ts) };
    ts.tv_sec += 1;
    ts
}

/// The deadline of one call: none while busy-polling (the queues are then
/// O_NONBLOCK, so the call returns at once, as `mq_send`/`mq_receive`
/// would), else [`soon`].
fn deadline(spin: bool) -> Option<libc::timespec> {
    (!spin).then(soon)
}

/// `ts` as the timeout argument of the timed calls (null: no deadline).
fn at(ts: &Option<libc::timespec>) -> *const libc::timespec {
    ts.as_ref().map_or(std::ptr::null(), |t| t)
}

impl Endpoint for MqEnd {
    fn set_mode(&mut self, mode: Mode) -> Result<(), String> {
        self.spin = mode == Mode::Spin;
        for q in [self.rx, self.tx] {
            // SAFETY: mq_attr is plain data.
            let mut attr: libc::mq_attr = unsafe { std::mem::zeroed() };
            attr.mq_flags = if self.spin { libc::O_NONBLOCK as _ } else { 0 };
            // SAFETY: `q` is our descriptor; `attr` is valid; old attrs not wanted.
            if unsafe { libc::mq_setattr(q, &attr, std::ptr::null_mut()) } != 0 {
                return Err(os_err("mq_setattr"));
            }
        }
        Ok(())
    }

    fn send(&mut self, msg: &[u8]) -> Result<(), String> {
        let mut rounds = 0;
        loop {
            let ts = deadline(self.spin);
            // SAFETY: `msg` is a valid buffer of that length; `ts` is null
            // or a valid timespec that outlives the call.
            let rc =
                unsafe { libc::mq_timedsend(self.tx, msg.as_ptr().cast(), msg.len(), 0, at(&ts)) };
            if rc == 0 {
                return Ok(());
            }
            retry_or_fail(self.spin, true, &mut rounds, "mq_send")?;
        }
    }

    fn recv<R>(&mut self, len: usize, f: impl FnOnce(&[u8]) -> R) -> Result<R, String> {
        let mut rounds = 0;
        loop {
            let buf = &mut self.scratch;
            let ts = deadline(self.spin);
            // SAFETY: `buf` is writable and at least mq_msgsize bytes; `ts`
            // is null or a valid timespec that outlives the call.
            let n = unsafe {
                libc::mq_timedreceive(
                    self.rx,
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                    std::ptr::null_mut(),
                    at(&ts),
                )
            };
            if n >= 0 {
                let n = n as usize;
                if n != len {
                    return Err(format!("received a {n}-byte message, expected {len}"));
                }
                return Ok(f(&self.scratch[..n]));
            }
            retry_or_fail(self.spin, true, &mut rounds, "mq_receive")?;
        }
    }
}
