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

/// Hands `fd` to the closer; false when there is none or it is gone.
/// The caller closes its own copy at once either way.
pub fn hand(fd: RawFd) -> bool {
    let Some(closer) = CLOSER.get() else {
        return false;
    };
    let space = fd_space();
    let mut control = vec![0u8; space];
    let mut byte = [0u8; 1];
    let mut iov = libc::iovec {
        iov_base: byte.as_mut_ptr() as *mut libc::c_void,
        iov_len: 1,
    };
    // SAFETY: msghdr is plain data; zeroed is a valid initial value.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr() as *mut libc::c_void;
    msg.msg_controllen = space as _;
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

fn fd_space() -> usize {
    // SAFETY: a pure computation on a size.
    unsafe { libc::CMSG_SPACE(std::mem::size_of::<RawFd>() as u32) as usize }
}

/// The child: closes everything but `keep`, then takes sockets until the
/// parent's end closes, closes them, and ends.
fn run(keep: RawFd) -> ! {
    let keep = keep as libc::c_uint;
    // SAFETY: closing descriptors this child does not use; close_range is
    // a plain system call (kernel 5.9+; older kernels keep them, harmless
    // but for the standard output, which is closed by hand).
    unsafe {
        if keep > 0 {
            libc::syscall(libc::SYS_close_range, 0, keep - 1, 0);
        }
        libc::syscall(libc::SYS_close_range, keep + 1, libc::c_uint::MAX, 0);
        for fd in 0..3 {
            if fd != keep as RawFd {
                libc::close(fd);
            }
        }
    }
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

/// The next descriptor sent; `None` once the parent's end is closed.
fn receive(sock: RawFd) -> Option<RawFd> {
    loop {
        let space = fd_space();
        let mut control = vec![0u8; space];
        let mut byte = [0u8; 1];
        let mut iov = libc::iovec {
            iov_base: byte.as_mut_ptr() as *mut libc::c_void,
            iov_len: 1,
        };
        // SAFETY: msghdr is plain data; zeroed is a valid initial value.
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr() as *mut libc::c_void;
        msg.msg_controllen = space as _;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_a_closer_nothing_is_handed() {
        // Tests run with threads: the closer is never started in them.
        assert!(!hand(0));
    }
}
