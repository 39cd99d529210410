//! Event-driven death detection for a [`crate::WaitSet`]: pidfds in one
//! epoll, watched by one thread per set.
//!
//! Each endpoint records its pid in the segment when it attaches
//! (`Endpoints::producer_pid` / `consumer_pid`). The set opens a pidfd
//! (`pidfd_open(2)`) for the pid its peer recorded, one per distinct pid
//! however many rings that process serves, and adds it to the set's epoll
//! (`EPOLLONESHOT`). When that process exits, the death thread wakes, marks
//! every ring following that pid "check now" and wakes their waiters,
//! which ask the kernel about the peer's role lock at once.
//!
//! The pid is foreign input (the peer wrote it; a peer in another pid
//! namespace writes a number that means nothing here). It never decides
//! anything: a readable pidfd only makes the set run the role-lock check
//! it would run anyway. A bogus pid costs at most one `fcntl` (and a peer
//! that rewrites its word before every look, a `pidfd_open` per look), or,
//! if it names a live process that is not the peer, delays the report of
//! the peer's real death to the fallback check. A ring whose pid cannot be
//! followed (no such process while the role lock is held, `pidfd_open`
//! refused, a pid that exited while the role lock stays held) is checked
//! every slice, as without pidfds; a followed ring every
//! `super::COVERED_SLICES` slices.

use std::collections::HashMap;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::thread::JoinHandle;

/// `epoll_event.u64` of the thread's own eventfd (stop).
const WAKE_KEY: u64 = u64::MAX;

/// One open pidfd, shared by every ring whose peer recorded this pid.
pub(super) struct PidFd {
    fd: OwnedFd,
    /// The process exited (the fd polled readable); set once.
    fired: AtomicBool,
}

impl PidFd {
    /// The process exited (SeqCst: see the `fired` store in `exited`).
    pub(super) fn fired(&self) -> bool {
        self.fired.load(Ordering::SeqCst)
    }
}

/// What following a pid gave.
pub(super) enum Followed {
    /// A pidfd in the set's epoll: its exit will be reported.
    Watching(Arc<PidFd>),
    /// No such process (`ESRCH`): it has exited already (or the pid is
    /// bogus); check the role lock now.
    Exited,
    /// Cannot follow it (pidfd_open refused, no epoll, no thread): the
    /// ring is checked every slice.
    Unavailable,
}

struct Table {
    fds: HashMap<u32, Weak<PidFd>>,
    /// Table size after the last sweep of dropped pidfds.
    swept: usize,
    thread: Option<JoinHandle<()>>,
}

/// The set's epoll over pidfds, and its thread.
pub(super) struct Deaths {
    /// `None` if `epoll_create1` failed: nothing is followed.
    epfd: Option<OwnedFd>,
    /// Written to stop the thread.
    wake: Option<OwnedFd>,
    /// Set by `stop` before it wakes the thread: the thread returns.
    stopping: AtomicBool,
    table: Mutex<Table>,
}

fn pidfd_open(pid: u32) -> std::io::Result<OwnedFd> {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return Err(std::io::Error::from_raw_os_error(libc::EINVAL));
    };
    // SAFETY: plain syscall with integer arguments; the result is checked.
    let r = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0 as libc::c_uint) };
    if r < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: a fresh descriptor owned by nobody else. pidfds are
    // close-on-exec.
    Ok(unsafe { OwnedFd::from_raw_fd(r as i32) })
}

fn readable(fd: &OwnedFd) -> bool {
    let mut p = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd, zero timeout.
    unsafe { libc::poll(&mut p, 1, 0) == 1 && p.revents & libc::POLLIN != 0 }
}

impl Deaths {
    pub(super) fn new() -> Deaths {
        // SAFETY: plain syscalls; results checked.
        let ep = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        // SAFETY: as above.
        let ev = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        // SAFETY: fresh descriptors owned by nobody else.
        let own = |fd: i32| (fd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(fd) });
        let (mut epfd, wake) = (own(ep), own(ev));
        match (&epfd, &wake) {
            (Some(e), Some(w)) => {
                if ctl(e, libc::EPOLL_CTL_ADD, w, libc::EPOLLIN as u32, WAKE_KEY).is_err() {
                    epfd = None;
                }
            }
            _ => epfd = None,
        }
        Deaths {
            epfd,
            wake,
            stopping: AtomicBool::new(false),
            table: Mutex::new(Table {
                fds: HashMap::new(),
                swept: 0,
                thread: None,
            }),
        }
    }

    fn table(&self) -> MutexGuard<'_, Table> {
        // The thread that panicked (if any) left the table consistent.
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Follow `pid` (non-zero): share its open pidfd, or open one and add
    /// it to the epoll. On first use this starts the thread, which runs
    /// what `thread` makes: [`Deaths::run`] on this `Deaths`, through an
    /// owner that outlives the thread (the set's shared state).
    pub(super) fn follow(
        &self,
        pid: u32,
        thread: impl FnOnce() -> Box<dyn FnOnce() + Send>,
    ) -> Followed {
        let Some(epfd) = &self.epfd else {
            return Followed::Unavailable;
        };
        let mut t = self.table();
        if let Some(fd) = t.fds.get(&pid).and_then(Weak::upgrade) {
            if !fd.fired.load(Ordering::SeqCst) {
                return Followed::Watching(fd);
            }
        }
        let fd = match pidfd_open(pid) {
            Ok(fd) => fd,
            Err(e) if e.raw_os_error() == Some(libc::ESRCH) => return Followed::Exited,
            Err(_) => return Followed::Unavailable,
        };
        if t.thread.is_none() {
            match std::thread::Builder::new()
                .name("shmpipe-waitset-deaths".into())
                .spawn(thread())
            {
                Ok(h) => t.thread = Some(h),
                Err(_) => return Followed::Unavailable,
            }
        }
        // One-shot: an exited process's pidfd stays readable; one event is
        // all we want from it.
        let events = (libc::EPOLLIN | libc::EPOLLONESHOT) as u32;
        if ctl(epfd, libc::EPOLL_CTL_ADD, &fd, events, pid as u64).is_err() {
            return Followed::Unavailable;
        }
        let fd = Arc::new(PidFd {
            fd,
            fired: AtomicBool::new(false),
        });
        // Drop the entries of pidfds nobody follows any more once the table
        // has doubled since the last sweep (their fds are closed already:
        // closing a pidfd takes it out of the epoll).
        if t.fds.len() >= 64.max(2 * t.swept) {
            t.fds.retain(|_, w| w.strong_count() > 0);
            t.swept = t.fds.len();
        }
        t.fds.insert(pid, Arc::downgrade(&fd));
        Followed::Watching(fd)
    }

    /// Stop the thread (the set is being dropped).
    pub(super) fn stop(&self) {
        // SeqCst: before the wake-up write, so the thread sees it when
        // `epoll_wait` returns.
        self.stopping.store(true, Ordering::SeqCst);
        let h = self.table().thread.take();
        if let Some(h) = h {
            if let Some(w) = &self.wake {
                let one: u64 = 1;
                // SAFETY: valid eventfd and an 8-byte buffer.
                unsafe { libc::write(w.as_raw_fd(), (&one as *const u64).cast(), 8) };
            }
            let _ = h.join();
        }
    }

    /// An epoll event for `pid`: mark its pidfd fired if the process has
    /// exited (re-arm it otherwise: a stale event).
    fn exited(&self, pid: u32) {
        let mut t = self.table();
        let Some(fd) = t.fds.get(&pid).and_then(Weak::upgrade) else {
            return;
        };
        if readable(&fd.fd) {
            fd.fired.store(true, Ordering::SeqCst);
            t.fds.remove(&pid);
        } else if let Some(ep) = &self.epfd {
            let events = (libc::EPOLLIN | libc::EPOLLONESHOT) as u32;
            let _ = ctl(ep, libc::EPOLL_CTL_MOD, &fd.fd, events, pid as u64);
        }
    }
    /// The death thread: sleep in `epoll_wait` on the pidfds; when one
    /// fires, mark it fired and call `on_exit(pid)` (which makes every ring
    /// following that pid check its peer's role lock now).
    pub(super) fn run(&self, on_exit: impl Fn(u32)) {
        let Some(ep) = &self.epfd else { return };
        let mut evs = [libc::epoll_event { events: 0, u64: 0 }; 32];
        loop {
            // SAFETY: valid epoll fd and a buffer of `evs.len()` events.
            let n =
                unsafe { libc::epoll_wait(ep.as_raw_fd(), evs.as_mut_ptr(), evs.len() as i32, -1) };
            // SeqCst: pairs with the store in `stop`.
            if self.stopping.load(Ordering::SeqCst) {
                return;
            }
            if n < 0 {
                if std::io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {
                    continue;
                }
                return; // cannot happen with valid arguments; rings fall back to slices
            }
            for ev in &evs[..n as usize] {
                let key = ev.u64;
                if key == WAKE_KEY {
                    continue; // `stopping` is checked above
                }
                let pid = key as u32;
                self.exited(pid);
                on_exit(pid);
            }
        }
    }
}

fn ctl(epfd: &OwnedFd, op: i32, fd: &OwnedFd, events: u32, key: u64) -> std::io::Result<()> {
    let mut ev = libc::epoll_event { events, u64: key };
    // SAFETY: valid descriptors and event struct.
    if unsafe { libc::epoll_ctl(epfd.as_raw_fd(), op, fd.as_raw_fd(), &mut ev) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}
