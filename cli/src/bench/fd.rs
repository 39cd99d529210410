//! File-descriptor transports: pipe, FIFO, Unix stream and seqpacket
//! sockets, TCP over loopback. One endpoint type serves them all.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};

use nix::fcntl::{fcntl, FcntlArg, OFlag};
use nix::sys::socket::{AddressFamily, SockFlag, SockType};
use nix::sys::stat::Mode as FileMode;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use super::harness::{aborted, retry_or_fail, Endpoint, Mode, Transport};

/// How messages travel over the descriptor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    /// A byte stream written with write(2): read exactly `len` bytes.
    Pipe,
    /// A byte stream socket: send(2) with MSG_NOSIGNAL, read exactly `len` bytes.
    StreamSocket,
    /// One message per send/recv (SOCK_SEQPACKET).
    Packet,
}

/// Removes a temporary directory when the process that made it drops it.
pub struct DirGuard {
    dir: PathBuf,
    owner: u32,
}

impl Drop for DirGuard {
    fn drop(&mut self) {
        if std::process::id() == self.owner {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// One process's end: a descriptor to read from and one to write to
/// (the same socket for socket transports).
pub struct FdEnd {
    rx: OwnedFd,
    tx: Option<OwnedFd>,
    framing: Framing,
    spin: bool,
    scratch: Vec<u8>,
    _guard: Option<DirGuard>,
}

impl FdEnd {
    fn new(rx: OwnedFd, tx: Option<OwnedFd>, framing: Framing, size: usize) -> Self {
        FdEnd {
            rx,
            tx,
            framing,
            spin: false,
            scratch: vec![0; size],
            _guard: None,
        }
    }

    fn tx_fd(&self) -> RawFd {
        self.tx.as_ref().unwrap_or(&self.rx).as_raw_fd()
    }
}

fn set_nonblocking(fd: BorrowedFd<'_>, on: bool) -> Result<(), String> {
    let flags = fcntl(fd, FcntlArg::F_GETFL).map_err(|e| format!("fcntl(F_GETFL): {e}"))?;
    let flags = OFlag::from_bits_retain(flags);
    let new = if on {
        flags | OFlag::O_NONBLOCK
    } else {
        flags - OFlag::O_NONBLOCK
    };
    if new != flags {
        fcntl(fd, FcntlArg::F_SETFL(new)).map_err(|e| format!("fcntl(F_SETFL): {e}"))?;
    }
    Ok(())
}

impl Endpoint for FdEnd {
    fn set_mode(&mut self, mode: Mode) -> Result<(), String> {
        self.spin = mode == Mode::Spin;
        set_nonblocking(self.rx.as_fd(), self.spin)?;
        if let Some(tx) = &self.tx {
            set_nonblocking(tx.as_fd(), self.spin)?;
        }
        Ok(())
    }

    fn send(&mut self, msg: &[u8]) -> Result<(), String> {
        let fd = self.tx_fd();
        let mut done = 0;
        let mut rounds = 0;
        while done < msg.len() {
            let rest = &msg[done..];
            let n = match self.framing {
                // SAFETY: `rest` is a valid readable buffer of that length.
                Framing::Pipe => unsafe { libc::write(fd, rest.as_ptr().cast(), rest.len()) },
                // SAFETY: as above.
                _ => unsafe {
                    libc::send(fd, rest.as_ptr().cast(), rest.len(), libc::MSG_NOSIGNAL)
                },
            };
            if n < 0 {
                retry_or_fail(self.spin, false, &mut rounds, "send")?;
                continue;
            }
            let n = n as usize;
            if self.framing == Framing::Packet && n != msg.len() {
                return Err(format!("short packet send: {n} of {} bytes", msg.len()));
            }
            done += n;
        }
        Ok(())
    }

    fn recv<R>(&mut self, len: usize, f: impl FnOnce(&[u8]) -> R) -> Result<R, String> {
        if self.scratch.len() < len {
            self.scratch.resize(len, 0);
        }
        let fd = self.rx.as_raw_fd();
        let mut done = 0;
        let mut rounds = 0;
        while done < len {
            let rest = &mut self.scratch[done..len];
            let n = if self.framing == Framing::Packet {
                // SAFETY: `rest` is a valid writable buffer of that length;
                // MSG_TRUNC makes recv return the packet's real length.
                unsafe { libc::recv(fd, rest.as_mut_ptr().cast(), rest.len(), libc::MSG_TRUNC) }
            } else {
                // SAFETY: as above.
                unsafe { libc::read(fd, rest.as_mut_ptr().cast(), rest.len()) }
            };
            if n < 0 {
                retry_or_fail(self.spin, false, &mut rounds, "recv")?;
                continue;
            }
            if n == 0 {
                return Err("peer closed the connection".into());
            }
            let n = n as usize;
            if self.framing == Framing::Packet && n != len {
                return Err(format!("received a {n}-byte packet, expected {len}"));
            }
            done += n;
        }
        Ok(f(&self.scratch[..len]))
    }
}

fn raw_pipe() -> Result<(OwnedFd, OwnedFd), String> {
    nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(|e| format!("pipe: {e}"))
}

fn socketpair(kind: SockType) -> Result<(OwnedFd, OwnedFd), String> {
    nix::sys::socket::socketpair(AddressFamily::Unix, kind, None, SockFlag::SOCK_CLOEXEC)
        .map_err(|e| format!("socketpair: {e}"))
}

/// An anonymous pipe in each direction.
pub struct Pipe;

/// (parent-to-child read, write), (child-to-parent read, write).
type Pipes = ((OwnedFd, OwnedFd), (OwnedFd, OwnedFd));

impl Transport for Pipe {
    type Setup = Pipes;
    type End = FdEnd;
    fn name(&self) -> &'static str {
        "pipe"
    }
    fn setup(&self, _size: usize) -> Result<Pipes, String> {
        Ok((raw_pipe()?, raw_pipe()?))
    }
    fn parent(&self, (down, up): Pipes, size: usize) -> Result<FdEnd, String> {
        Ok(FdEnd::new(up.0, Some(down.1), Framing::Pipe, size))
    }
    fn child(&self, (down, up): Pipes, size: usize) -> Result<FdEnd, String> {
        Ok(FdEnd::new(down.0, Some(up.1), Framing::Pipe, size))
    }
}

/// Two named FIFOs in a fresh temporary directory.
pub struct Fifo;

pub struct FifoDir {
    guard: DirGuard,
    down: PathBuf,
    up: PathBuf,
}

fn open_fd(p: &std::path::Path, flags: OFlag) -> std::io::Result<OwnedFd> {
    Ok(nix::fcntl::open(
        p,
        flags | OFlag::O_CLOEXEC,
        FileMode::empty(),
    )?)
}

impl Transport for Fifo {
    type Setup = FifoDir;
    type End = FdEnd;
    fn name(&self) -> &'static str {
        "fifo"
    }
    fn setup(&self, _size: usize) -> Result<FifoDir, String> {
        let template = std::env::temp_dir().join("shmpipe-bench-fifo-XXXXXX");
        let dir = nix::unistd::mkdtemp(&template).map_err(|e| format!("mkdtemp: {e}"))?;
        let guard = DirGuard {
            dir: dir.clone(),
            owner: std::process::id(),
        };
        let (down, up) = (dir.join("down"), dir.join("up"));
        for p in [&down, &up] {
            nix::unistd::mkfifo(p, FileMode::from_bits_truncate(0o600))
                .map_err(|e| format!("mkfifo {}: {e}", p.display()))?;
        }
        Ok(FifoDir { guard, down, up })
    }
    fn parent(&self, s: FifoDir, size: usize) -> Result<FdEnd, String> {
        // Open our read end first (never blocks with O_NONBLOCK), then wait
        // for the child's reader so our write end can open: no open(2)
        // blocks forever if the child fails.
        let rx = open_fd(&s.up, OFlag::O_RDONLY | OFlag::O_NONBLOCK)
            .map_err(|e| format!("open {}: {e}", s.up.display()))?;
        let deadline = Instant::now() + Duration::from_secs(20);
        let tx = loop {
            match open_fd(&s.down, OFlag::O_WRONLY | OFlag::O_NONBLOCK) {
                Ok(fd) => break fd,
                Err(e)
                    if e.raw_os_error() == Some(libc::ENXIO)
                        && Instant::now() < deadline
                        && !aborted() =>
                {
                    std::thread::sleep(Duration::from_micros(200));
                }
                Err(e) => return Err(format!("open {}: {e}", s.down.display())),
            }
        };
        let mut end = FdEnd::new(rx, Some(tx), Framing::Pipe, size);
        end._guard = Some(s.guard);
        end.set_mode(Mode::Block)?;
        Ok(end)
    }
    fn child(&self, s: FifoDir, size: usize) -> Result<FdEnd, String> {
        let rx = open_fd(&s.down, OFlag::O_RDONLY | OFlag::O_NONBLOCK)
            .map_err(|e| format!("open {}: {e}", s.down.display()))?;
        let tx =
            open_fd(&s.up, OFlag::O_WRONLY).map_err(|e| format!("open {}: {e}", s.up.display()))?;
        let mut end = FdEnd::new(rx, Some(tx), Framing::Pipe, size);
        end.set_mode(Mode::Block)?;
        Ok(end)
    }
}

/// A Unix-domain socket pair of the given type.
pub struct UnixPair {
    pub name: &'static str,
    pub kind: SockType,
}

impl Transport for UnixPair {
    type Setup = (OwnedFd, OwnedFd);
    type End = FdEnd;
    fn name(&self) -> &'static str {
        self.name
    }
    fn setup(&self, _size: usize) -> Result<Self::Setup, String> {
        socketpair(self.kind)
    }
    fn parent(&self, s: Self::Setup, size: usize) -> Result<FdEnd, String> {
        Ok(FdEnd::new(s.0, None, self.framing(), size))
    }
    fn child(&self, s: Self::Setup, size: usize) -> Result<FdEnd, String> {
        Ok(FdEnd::new(s.1, None, self.framing(), size))
    }
}

impl UnixPair {
    fn framing(&self) -> Framing {
        if self.kind == SockType::SeqPacket {
            Framing::Packet
        } else {
            Framing::StreamSocket
        }
    }
}

/// TCP over 127.0.0.1 with TCP_NODELAY.
pub struct Tcp;

impl Transport for Tcp {
    type Setup = (TcpListener, SocketAddr);
    type End = FdEnd;
    fn name(&self) -> &'static str {
        "tcp"
    }
    fn setup(&self, _size: usize) -> Result<Self::Setup, String> {
        let l = TcpListener::bind("127.0.0.1:0").map_err(|e| format!("bind 127.0.0.1: {e}"))?;
        let addr = l.local_addr().map_err(|e| format!("local_addr: {e}"))?;
        Ok((l, addr))
    }
    fn parent(&self, (l, _): Self::Setup, size: usize) -> Result<FdEnd, String> {
        l.set_nonblocking(true)
            .map_err(|e| format!("listener: {e}"))?;
        let deadline = Instant::now() + Duration::from_secs(20);
        let s = loop {
            match l.accept() {
                Ok((s, _)) => break s,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    if Instant::now() >= deadline || aborted() {
                        return Err("the child never connected".into());
                    }
                    std::thread::sleep(Duration::from_micros(200));
                }
                Err(e) => return Err(format!("accept: {e}")),
            }
        };
        tcp_end(s, size)
    }
    fn child(&self, (l, addr): Self::Setup, size: usize) -> Result<FdEnd, String> {
        drop(l);
        let s = TcpStream::connect(addr).map_err(|e| format!("connect {addr}: {e}"))?;
        tcp_end(s, size)
    }
}

fn tcp_end(s: TcpStream, size: usize) -> Result<FdEnd, String> {
    s.set_nonblocking(false)
        .map_err(|e| format!("socket: {e}"))?;
    s.set_nodelay(true)
        .map_err(|e| format!("TCP_NODELAY: {e}"))?;
    Ok(FdEnd::new(
        OwnedFd::from(s),
        None,
        Framing::StreamSocket,
        size,
    ))
}
