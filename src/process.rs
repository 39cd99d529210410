//! Spawn a child process with a ring pair (feature `rpc`): the seed's
//! "parent runs a CLI child and talks to it over stdin/stdout", with two
//! shared-memory rings instead of two pipes.
//!
//! [`spawn`] makes two anonymous rings (sealed memfds: no name in
//! `/dev/shm`, nothing to clean up; the memory goes when the last process
//! holding it exits), passes them to the child as inherited descriptors
//! whose numbers are in the environment variable [`ENV_VAR`], and returns
//! the parent's [`Duplex`] (producer of requests, consumer of responses).
//! In the child, [`Duplex::from_env`] opens them — validated like any
//! foreign segment — as the other ends.
//!
//! ```no_run
//! use std::process::Command;
//! use std::time::Duration;
//! use shmpipe::{process, Builder};
//!
//! // Parent:
//! let (mut child, duplex) = process::spawn(&mut Command::new("my-worker"), &Builder::new())?;
//! let mut client = duplex.into_client();
//! let answer = client.call_timeout(br#"{"id":1,"method":"ping"}"#, Duration::from_secs(5))?;
//! # let _ = (answer, child.kill());
//!
//! // Child (`my-worker`):
//! let mut server = process::Duplex::from_env()?.into_server();
//! server.serve(|req| req.to_vec())?;
//! # Ok::<(), shmpipe::Error>(())
//! ```
//!
//! If the child exits or dies — also before it attached: a crash at
//! start-up, a program that never calls [`Duplex::from_env`] — the
//! parent's pending and later calls end with `PeerDied` (within the ring's
//! 20 ms liveness slice), and so do the blocking sends and receives of the
//! parent's [`Duplex`]. [`spawn`] locks the child's two roles on
//! descriptors that only the child keeps, so the kernel frees them when
//! the child exits; `from_env` adopts those locks. (A grandchild that
//! inherits the descriptors before `from_env` marks them close-on-exec
//! keeps the roles alive as long as it lives.) If the parent dies, the
//! child's calls end with `PeerDied` too.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};

use nix::fcntl::{fcntl, FcntlArg, FdFlag};

use crate::error::{Error, Result};
use crate::rpc::{Client, Server};
use crate::segment::Role;
use crate::{Builder, Consumer, Producer};

/// The environment variable that carries the child's two descriptors:
/// `"<receive fd>,<send fd>"`, from the child's point of view.
pub const ENV_VAR: &str = "SHMPIPE_DUPLEX_FDS";

/// Set once the inherited descriptors have been taken (they are owned once).
static TAKEN: AtomicBool = AtomicBool::new(false);

/// One side of a two-ring link with another process: a producer to it and
/// a consumer from it.
#[derive(Debug)]
pub struct Duplex {
    /// Messages to the other process.
    pub tx: Producer,
    /// Messages from the other process.
    pub rx: Consumer,
}

impl Duplex {
    /// As the calling side of `shmpipe::rpc`.
    ///
    /// ```
    /// use std::process::Command;
    /// use shmpipe::{process, Builder, Error};
    ///
    /// // A child that never attaches (it exits at once): calls end with `PeerDied`.
    /// let (mut child, duplex) = process::spawn(&mut Command::new("true"), &Builder::new())?;
    /// let mut client = duplex.into_client();
    /// child.wait().expect("the child ran");
    /// assert!(matches!(client.call(b"anyone?"), Err(Error::PeerDied)));
    /// # Ok::<(), shmpipe::Error>(())
    /// ```
    pub fn into_client(self) -> Client {
        Client::new(self.tx, self.rx)
    }

    /// As the answering side of `shmpipe::rpc` (usually the child's, from
    /// [`Duplex::from_env`]; here the parent serves a child that exits).
    ///
    /// ```
    /// use std::process::Command;
    /// use shmpipe::{process, Builder, Error};
    ///
    /// let (mut child, duplex) = process::spawn(&mut Command::new("true"), &Builder::new())?;
    /// let mut server = duplex.into_server();
    /// child.wait().expect("the child ran");
    /// assert!(matches!(server.next_request(), Err(Error::PeerDied)));
    /// # Ok::<(), shmpipe::Error>(())
    /// ```
    pub fn into_server(self) -> Server {
        Server::new(self.tx, self.rx)
    }

    /// In a process started by [`spawn`]: open the two inherited rings
    /// named by [`ENV_VAR`]. Each descriptor is validated like a named open
    /// (`fstat`: a regular file of our uid, of exactly the size its header
    /// declares; magic, version, variant; the memfd seals), then made
    /// close-on-exec so it does not leak into our own children. Works once
    /// per process.
    ///
    /// ```
    /// use std::process::Command;
    /// use shmpipe::{process, Builder};
    ///
    /// if std::env::var_os(process::ENV_VAR).is_some() {
    ///     // The child: this same program, started below.
    ///     let mut server = process::Duplex::from_env()?.into_server();
    ///     server.serve(|req| req.to_ascii_uppercase())?;
    ///     return Ok(());
    /// }
    /// let me = std::env::current_exe().expect("the path of this program");
    /// let (mut child, duplex) = process::spawn(&mut Command::new(me), &Builder::new())?;
    /// let mut client = duplex.into_client();
    /// assert_eq!(client.call(b"hello")?, b"HELLO");
    /// client.close()?; // the child's `serve` returns
    /// assert!(child.wait().expect("the child ran").success());
    /// # Ok::<(), shmpipe::Error>(())
    /// ```
    ///
    /// # Errors
    /// `InvalidOption` if the variable is missing or malformed or the
    /// descriptors were already taken; `Io` if a descriptor is not open or
    /// not a sealed memfd; the validation errors of [`Pair::from_fd`](crate::Pair::from_fd);
    /// `RoleTaken` if another process attached the same ends.
    pub fn from_env() -> Result<Duplex> {
        let bad = |what: String| {
            Error::InvalidOption {
            reason: format!(
                "{ENV_VAR} {what}; it is set by shmpipe::process::spawn to \"<receive fd>,<send fd>\""
            ),
        }
        };
        let value = std::env::var(ENV_VAR).map_err(|_| bad("is not set (or not UTF-8)".into()))?;
        let (rx, tx) = value
            .split_once(',')
            .and_then(|(a, b)| {
                Some((
                    a.trim().parse::<RawFd>().ok()?,
                    b.trim().parse::<RawFd>().ok()?,
                ))
            })
            .filter(|&(a, b)| a > 2 && b > 2 && a != b)
            .ok_or_else(|| {
                bad(format!(
                    "is {value:?}: not two distinct descriptor numbers above 2"
                ))
            })?;
        for fd in [rx, tx] {
            // SAFETY: F_GETFD only queries the descriptor table.
            if unsafe { libc::fcntl(fd, libc::F_GETFD) } < 0 {
                return Err(Error::last_os("checking an inherited ring descriptor"));
            }
        }
        if TAKEN.swap(true, Ordering::AcqRel) {
            return Err(bad(
                "was already used: Duplex::from_env works once per process".into(),
            ));
        }
        // SAFETY: the descriptors are open (checked above), were passed to
        // this process for this purpose by its parent (the variable says
        // so), and `TAKEN` makes sure they are taken over only once here.
        let (rx, tx) = unsafe { (OwnedFd::from_raw_fd(rx), OwnedFd::from_raw_fd(tx)) };
        for fd in [&rx, &tx] {
            fcntl(fd, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC))
                .map_err(|e| Error::io("marking an inherited ring close-on-exec", e.into()))?;
        }
        let rx = crate::Pair::from_fd(rx)?.into_consumer()?;
        let tx = crate::Pair::from_fd(tx)?.into_producer()?;
        Ok(Duplex { tx, rx })
    }
}

/// Spawn `cmd` with two new anonymous rings (capacity and wait strategy
/// from `builder`) that the child opens with [`Duplex::from_env`]. Returns
/// the child and the parent's side. The child's stdin/stdout/stderr are as
/// `cmd` says; [`ENV_VAR`] is added to its environment.
///
/// ```
/// use std::process::Command;
/// use shmpipe::{process, Builder};
///
/// if std::env::var_os(process::ENV_VAR).is_some() {
///     // The child: this same program, started below.
///     let mut server = process::Duplex::from_env()?.into_server();
///     server.serve(|req| req.to_ascii_uppercase())?;
///     return Ok(());
/// }
/// let me = std::env::current_exe().expect("the path of this program");
/// let (mut child, duplex) = process::spawn(&mut Command::new(me), &Builder::new())?;
/// let mut client = duplex.into_client();
/// assert_eq!(client.call(b"hello")?, b"HELLO");
/// client.close()?; // the child's `serve` returns
/// assert!(child.wait().expect("the child ran").success());
/// # Ok::<(), shmpipe::Error>(())
/// ```
///
/// # Errors
/// As [`Builder::anonymous`]; `Io` if spawning fails.
pub fn spawn(cmd: &mut Command, builder: &Builder) -> Result<(std::process::Child, Duplex)> {
    let to_child = builder.anonymous()?;
    let from_child = builder.anonymous()?;
    // The child's roles are locked and marked attached now, on descriptors
    // only the child keeps: from here on the parent's ends see the child
    // as attached, and the kernel releases its locks when the child exits,
    // whether or not it ever calls `Duplex::from_env` (which adopts them).
    // So a child that dies at start-up, or runs a program that never
    // attaches, ends the parent's calls with `PeerDied` instead of leaving
    // them waiting for an attach that never comes.
    // Close-on-exec; the pre-exec hook clears the flag in the child only,
    // so no other process this parent spawns inherits them.
    let child_rx = to_child.fd_attached_for_child(Role::Consumer)?;
    let child_tx = from_child.fd_attached_for_child(Role::Producer)?;
    let (a, b) = (child_rx.as_raw_fd(), child_tx.as_raw_fd());
    let parent = Duplex {
        tx: to_child.into_producer()?,
        rx: from_child.into_consumer()?,
    };
    cmd.env(ENV_VAR, format!("{a},{b}"));
    // SAFETY: the hook runs in the forked child before exec and only calls
    // fcntl(2), which is async-signal-safe, on two descriptors that are
    // open in the parent (owned by `child_rx`/`child_tx`, alive across
    // `spawn`) and therefore in the child.
    unsafe {
        cmd.pre_exec(move || {
            for fd in [a, b] {
                if libc::fcntl(fd, libc::F_SETFD, 0) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
    let child = cmd
        .spawn()
        .map_err(|e| Error::io("spawning the child process", e))?;
    // The child holds its own copies now: only it keeps its role locks.
    drop((child_rx, child_tx));
    Ok((child, parent))
}
