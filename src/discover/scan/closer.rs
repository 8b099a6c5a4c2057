//! The closer: a child process of a one-shot command (`mdb scan`) that
//! closes the packet sockets it is handed. The kernel waits out a network
//! grace period (8–25 ms here) on every packet socket's release, and a
//! process cannot end before its threads' releases have: handed to the
//! closer, that wait is no longer between the answer and the prompt.
//!
//! The child is forked before any thread exists, keeps nothing of the
//! parent's but its end of a socket pair (no standard output held open
//! for whoever reads the command's output), and ends when the parent's end
//! closes, once it has closed what it holds. Whatever fails along the
//! way, the socket is closed by its owner as before: slower, not wrong.

use std::{
    os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd},
    sync::OnceLock,
};

/// The parent's end of the pair, once the closer runs.
static CLOSER: OnceLock<OwnedFd> = OnceLock::new();
/// Sockets the closer holds before it closes the older half: the parent
/// closed its copy of a socket long before seven more arrived, so the
/// closer's close is the release, and a long run cannot pile them up.
const HELD: usize = 16;

/// Starts the closer. Call it before any thread is started: a fork of a
/// process with threads may leave the child a lock that is never released.
pub fn start() {
    // As the first process of a container the closer would be nobody's to
    // reap once this one ends; the grace period is paid here instead.
    // SAFETY: getpid has no preconditions.
    if unsafe { libc::getpid() } == 1 {
        return;
    }
    let mut fds: [RawFd; 2] = [-1; 2];
    // SAFETY: fds has room for the two descriptors socketpair writes.
    let rc = unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC,
            0,
            fds.as_mut_ptr(),
        )
    };
    if rc != 0 {
        return;
    }
    // SAFETY: both descriptors were just created and are owned here.
    let (ours, theirs) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    // Started with standard streams closed, the pair could have taken
    // their numbers: output would then go to the closer.
    let (Some(ours), Some(theirs)) = (above_stdio(ours), above_stdio(theirs)) else {
        return;
    };
    // SAFETY: no thread exists yet (the caller's promise); the child only
    // makes system calls and ends with _exit.
    match unsafe { libc::fork() } {
        0 => run(theirs.as_raw_fd()),
        -1 => {}
        _ => {
            drop(theirs);
            let _ = CLOSER.set(ours);
        }
    }
}

/// `fd` moved to a number above the standard streams; `None` when it
/// cannot be.
fn above_stdio(fd: OwnedFd) -> Option<OwnedFd> {
    if fd.as_raw_fd() > 2 {
        return Some(fd);
    }
    // SAFETY: duplicating a descriptor owned here; the copy is owned by
    // the returned value, and the original is closed when `fd` drops.
    let copy = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 3) };
    // SAFETY: a descriptor fcntl just created.
    (copy > 2).then(|| unsafe { OwnedFd::from_raw_fd(copy) })
}

/// Hands `fd` to the closer; false when there is none or it is gone.
/// The caller closes its own copy at once either way.
pub fn hand(fd: RawFd) -> bool {
    let Some(closer) = CLOSER.get() else {
        return false;
    };
    let mut buffers = FdMessage::new();
    let msg = buffers.header();
    // SAFETY: the control buffer holds one header with room for one fd
    // (CMSG_SPACE), which CMSG_FIRSTHDR and CMSG_DATA address within it.
    let sent = unsafe {
        let cmsg = libc::CMSG_FIRSTHDR(&msg);
        (*cmsg).cmsg_level = libc::SOL_SOCKET;
        (*cmsg).cmsg_type = libc::SCM_RIGHTS;
        (*cmsg).cmsg_len = libc::CMSG_LEN(std::mem::size_of::<RawFd>() as u32) as _;
        std::ptr::write_unaligned(libc::CMSG_DATA(cmsg) as *mut RawFd, fd);
        libc::sendmsg(
            closer.as_raw_fd(),
            &msg,
            libc::MSG_NOSIGNAL | libc::MSG_DONTWAIT,
        )
    };
    sent == 1
}

/// The buffers of a one-byte message carrying one descriptor.
struct FdMessage {
    byte: [u8; 1],
    control: Vec<u8>,
    iov: libc::iovec,
}

impl FdMessage {
    fn new() -> FdMessage {
        // SAFETY: a pure computation on a size.
        let space = unsafe { libc::CMSG_SPACE(std::mem::size_of::<RawFd>() as u32) as usize };
        FdMessage {
            byte: [0],
            control: vec![0u8; space],
            iov: libc::iovec {
                iov_base: std::ptr::null_mut(),
                iov_len: 1,
            },
        }
    }

    /// The message header over these buffers (valid while they live and
    /// do not move).
    fn header(&mut self) -> libc::msghdr {
        self.iov.iov_base = self.byte.as_mut_ptr() as *mut libc::c_void;
        // SAFETY: msghdr is plain data; zeroed is a valid initial value.
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_iov = &mut self.iov;
        msg.msg_iovlen = 1;
        msg.msg_control = self.control.as_mut_ptr() as *mut libc::c_void;
        msg.msg_controllen = self.control.len() as _;
        msg
    }
}

/// The child: closes everything but `keep`, then takes sockets until the
/// parent's end closes, closes them, and ends.
fn run(keep: RawFd) -> ! {
    close_all_but(keep);
    let mut held: Vec<RawFd> = Vec::with_capacity(HELD);
    while let Some(fd) = receive(keep as RawFd) {
        held.push(fd);
        if held.len() >= HELD {
            for fd in held.drain(..HELD / 2) {
                // SAFETY: a descriptor this child received and owns.
                unsafe { libc::close(fd) };
            }
        }
    }
    for fd in held {
        // SAFETY: as above.
        unsafe { libc::close(fd) };
    }
    // SAFETY: ends the child without running the parent's exit handlers.
    unsafe { libc::_exit(0) }
}

/// Closes every descriptor but `keep` (above the standard streams): the
/// standard output must not stay open for whoever reads the command's,
/// nor a lock or a pipe of the caller's.
fn close_all_but(keep: RawFd) {
    let keep = keep as libc::c_uint;
    // SAFETY: closing descriptors this child does not use.
    let ranged = unsafe {
        libc::syscall(libc::SYS_close_range, 0, keep - 1, 0) == 0
            && libc::syscall(libc::SYS_close_range, keep + 1, libc::c_uint::MAX, 0) == 0
    };
    if ranged {
        return;
    }
    // Without close_range (before Linux 5.9, or refused by a seccomp
    // profile): one by one, up to the open-files limit.
    // SAFETY: sysconf has no preconditions.
    let limit = unsafe { libc::sysconf(libc::_SC_OPEN_MAX) }.clamp(1024, 1 << 20) as RawFd;
    for fd in (0..limit).filter(|fd| *fd != keep as RawFd) {
        // SAFETY: as above; a descriptor not open is EBADF, nothing more.
        unsafe { libc::close(fd) };
    }
}

/// The next descriptor sent; `None` once the parent's end is closed.
fn receive(sock: RawFd) -> Option<RawFd> {
    loop {
        let mut buffers = FdMessage::new();
        let mut msg = buffers.header();
        // SAFETY: msg points at live buffers of the given sizes.
        let n = unsafe { libc::recvmsg(sock, &mut msg, libc::MSG_CMSG_CLOEXEC) };
        if n == 0 {
            return None;
        }
        if n < 0 {
            if std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return None;
        }
        // SAFETY: the kernel filled the control buffer; CMSG_FIRSTHDR
        // returns null when it holds no header.
        let fd = unsafe {
            let cmsg = libc::CMSG_FIRSTHDR(&msg);
            if cmsg.is_null()
                || (*cmsg).cmsg_level != libc::SOL_SOCKET
                || (*cmsg).cmsg_type != libc::SCM_RIGHTS
            {
                continue;
            }
            std::ptr::read_unaligned(libc::CMSG_DATA(cmsg) as *const RawFd)
        };
        return Some(fd);
    }
}
