//! Reading stdin and writing stdout with the stopping signals in mind. The
//! descriptors are used directly (`io::stdin().as_fd()`, read and written
//! with read(2)/write(2)): std's buffering would hide data from poll(2)
//! (stdin) or hold bytes after a message was released (stdout).

use std::io;
use std::os::fd::BorrowedFd;

use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

use super::signals::{Stop, SLICE};

/// Why a read of stdin or a write to stdout stopped.
pub enum Stopped {
    Signal(i32),
    Io(io::Error),
}

/// Wait until `fd` is readable (or at end of file, or failed: the read
/// tells), calling `idle` once per [`SLICE`] meanwhile.
pub fn wait_readable<E>(
    fd: BorrowedFd<'_>,
    stop: &Stop,
    mut idle: impl FnMut() -> Result<(), E>,
    on_signal: impl Fn(i32) -> E,
) -> Result<(), E> {
    let slice = PollTimeout::try_from(SLICE).unwrap_or(PollTimeout::MAX);
    loop {
        let mut fds = [PollFd::new(fd, PollFlags::POLLIN)];
        match poll(&mut fds, slice) {
            Ok(n) if n > 0 => return Ok(()),
            Ok(_) | Err(Errno::EINTR) => {}
            Err(_) => return Ok(()), // the read reports it
        }
        if let Some(s) = stop.signal() {
            return Err(on_signal(s));
        }
        idle()?;
    }
}

/// One `read(2)` of `fd` into `buf` (0 at end of file), retried on `EINTR`
/// unless a signal asked us to stop.
pub fn read_fd(fd: BorrowedFd<'_>, buf: &mut [u8], stop: &Stop) -> Result<usize, Stopped> {
    loop {
        match nix::unistd::read(fd, buf) {
            Ok(n) => return Ok(n),
            Err(Errno::EINTR) => {
                if let Some(s) = stop.signal() {
                    return Err(Stopped::Signal(s));
                }
            }
            Err(e) => return Err(Stopped::Io(e.into())),
        }
    }
}

/// Write all of `b` to `fd`, retrying on `EINTR` unless a signal asked us to stop.
pub fn write_fd(fd: BorrowedFd<'_>, mut b: &[u8], stop: &Stop) -> Result<(), Stopped> {
    while !b.is_empty() {
        match nix::unistd::write(fd, b) {
            Ok(0) => return Err(Stopped::Io(io::ErrorKind::WriteZero.into())),
            Ok(n) => b = &b[n..],
            Err(Errno::EINTR) => {
                if let Some(s) = stop.signal() {
                    return Err(Stopped::Signal(s));
                }
            }
            Err(e) => return Err(Stopped::Io(e.into())),
        }
    }
    Ok(())
}
