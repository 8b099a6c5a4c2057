//! Raw packet sockets (AF_PACKET, needs CAP_NET_RAW) on one interface:
//! opening one bound to a protocol, sending frames in batches, and reading
//! with a deadline to the microsecond.

use std::{
    io, mem,
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
    time::Duration,
};

use socket2::{Domain, Socket, Type};

/// linux/if_packet.h (not in every libc crate release).
const PACKET_IGNORE_OUTGOING: libc::c_int = 23;

/// Opens a packet socket with protocol 0, so it captures nothing until
/// it is bound to `protocol` on one interface (no frames of other protocols queue
/// up in between) on interface `index`. A missing capability stays PermissionDenied for the
/// caller to explain.
pub fn open(index: u32, protocol: u16) -> io::Result<Socket> {
    let sock = Socket::new(Domain::PACKET, Type::RAW, None)?;
    // SAFETY: sockaddr_ll is plain data; zeroed is a valid initial value.
    let mut addr: libc::sockaddr_ll = unsafe { mem::zeroed() };
    addr.sll_family = libc::AF_PACKET as u16;
    addr.sll_protocol = protocol.to_be();
    addr.sll_ifindex = index as i32;
    // SAFETY: addr is a valid sockaddr_ll of the given length.
    let rc = unsafe {
        libc::bind(
            sock.as_raw_fd(),
            &addr as *const libc::sockaddr_ll as *const libc::sockaddr,
            mem::size_of::<libc::sockaddr_ll>() as u32,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    // Bursts of replies on a busy LAN must not be dropped.
    let _ = sock.set_recv_buffer_size(4 << 20);
    // Our own requests (and the kernel's) would queue up as well, ahead of
    // the replies; Linux 4.20+ can leave them out. Older kernels still work.
    let on: libc::c_int = 1;
    // SAFETY: a valid socket, option and int-sized value.
    unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::SOL_PACKET,
            PACKET_IGNORE_OUTGOING,
            &on as *const libc::c_int as *const libc::c_void,
            mem::size_of::<libc::c_int>() as u32,
        );
    }
    Ok(sock)
}

/// Closes a packet socket on a thread of its own: the kernel waits out a
/// network grace period (about 8 ms) on every packet socket's release,
/// which would otherwise be spent on the sweep's timed path, one socket
/// after another. Several closed at once wait out one period together.
pub fn close_later(sock: Socket) {
    // Handed to the closer process, this copy's close is no release.
    if super::closer::hand(sock.as_raw_fd()) {
        drop(sock);
        return;
    }
    let spawned = std::thread::Builder::new()
        .name("mdb-close".into())
        .spawn(move || drop(sock));
    // Without a thread (none left to spawn) the socket was dropped with
    // the closure, here: slower, not wrong.
    drop(spawned);
}

/// Sends the frames with one `sendmmsg` call (more if the kernel takes
/// part of the batch), to link-layer address `to` on interface `index`.
pub fn send(
    sock: &Socket,
    index: u32,
    protocol: u16,
    to_mac: [u8; 6],
    frames: &[&[u8]],
) -> io::Result<()> {
    // SAFETY: sockaddr_ll is plain data; zeroed is a valid initial value.
    let mut to: libc::sockaddr_ll = unsafe { mem::zeroed() };
    to.sll_family = libc::AF_PACKET as u16;
    to.sll_protocol = protocol.to_be();
    to.sll_ifindex = index as i32;
    to.sll_halen = 6;
    to.sll_addr[..6].copy_from_slice(&to_mac);
    let mut iovs: Vec<libc::iovec> = frames
        .iter()
        .map(|f| libc::iovec {
            iov_base: f.as_ptr() as *mut libc::c_void,
            iov_len: f.len(),
        })
        .collect();
    let mut msgs: Vec<libc::mmsghdr> = iovs
        .iter_mut()
        .map(|iov| {
            // SAFETY: mmsghdr is plain data; zeroed is a valid initial value.
            let mut m: libc::mmsghdr = unsafe { mem::zeroed() };
            m.msg_hdr.msg_name = &mut to as *mut libc::sockaddr_ll as *mut libc::c_void;
            m.msg_hdr.msg_namelen = mem::size_of::<libc::sockaddr_ll>() as u32;
            m.msg_hdr.msg_iov = iov;
            m.msg_hdr.msg_iovlen = 1;
            m
        })
        .collect();
    let mut done = 0;
    while done < msgs.len() {
        // SAFETY: every header points at a live iovec, frame and address,
        // all of which outlive the call.
        let rc = unsafe {
            libc::sendmmsg(
                sock.as_raw_fd(),
                msgs[done..].as_mut_ptr(),
                (msgs.len() - done) as libc::c_uint,
                0,
            )
        };
        if rc < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        done += rc as usize;
    }
    Ok(())
}

/// Whether the socket became readable within `timeout`.
pub fn wait_readable(sock: &Socket, timeout: Duration) -> io::Result<bool> {
    let mut fds = [pollin(sock.as_raw_fd())];
    Ok(poll(&mut fds, timeout)? && fds[0].revents != 0)
}

/// Whether the socket became readable within `timeout`, a wait that
/// `wake` cuts short (then false, and `wake` is lowered again).
pub fn wait_readable_or_woken(sock: &Socket, wake: &Wake, timeout: Duration) -> io::Result<bool> {
    let mut fds = [pollin(sock.as_raw_fd()), pollin(wake.0.as_raw_fd())];
    if !poll(&mut fds, timeout)? {
        return Ok(false);
    }
    if fds[1].revents != 0 {
        wake.lower();
    }
    Ok(fds[0].revents != 0)
}

fn pollin(fd: libc::c_int) -> libc::pollfd {
    libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    }
}

/// Whether any of `fds` is ready within `timeout` (to the microsecond:
/// SO_RCVTIMEO would round up to a scheduler tick of several ms).
fn poll(fds: &mut [libc::pollfd], timeout: Duration) -> io::Result<bool> {
    let ts = libc::timespec {
        tv_sec: timeout.as_secs() as libc::time_t,
        tv_nsec: timeout.subsec_nanos() as libc::c_long,
    };
    // SAFETY: valid pollfds of the given count, a valid timespec, no
    // signal mask.
    let rc = unsafe {
        libc::ppoll(
            fds.as_mut_ptr(),
            fds.len() as libc::nfds_t,
            &ts,
            std::ptr::null(),
        )
    };
    if rc < 0 {
        let e = io::Error::last_os_error();
        return match e.kind() {
            io::ErrorKind::Interrupted => Ok(false),
            _ => Err(e),
        };
    }
    Ok(rc > 0)
}

/// A signal another thread raises to end a [`wait_readable_or_woken`]
/// at once (an eventfd), rather than at the wait's next timeout.
pub struct Wake(OwnedFd);

impl Wake {
    pub fn new() -> io::Result<Wake> {
        // SAFETY: eventfd with flags only; the fd is checked below.
        let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: fd is a fresh descriptor this value alone owns.
        Ok(Wake(unsafe { OwnedFd::from_raw_fd(fd) }))
    }

    pub fn raise(&self) {
        let one = 1u64.to_ne_bytes();
        // SAFETY: writes 8 bytes from a valid buffer; a full counter
        // (EAGAIN) is raised already.
        unsafe { libc::write(self.0.as_raw_fd(), one.as_ptr().cast(), one.len()) };
    }

    fn lower(&self) {
        let mut count = [0u8; 8];
        // SAFETY: reads 8 bytes into a valid buffer; nonblocking.
        unsafe { libc::read(self.0.as_raw_fd(), count.as_mut_ptr().cast(), count.len()) };
    }
}

pub fn recv(sock: &Socket, buf: &mut [u8], flags: libc::c_int) -> io::Result<usize> {
    // SAFETY: buf is valid for writes of its length.
    let n = unsafe {
        libc::recv(
            sock.as_raw_fd(),
            buf.as_mut_ptr() as *mut libc::c_void,
            buf.len(),
            flags,
        )
    };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

/// Reads what is queued without waiting, at most `max` frames (so a flood
/// cannot hold off the caller), handing each to `each`.
pub fn drain(
    sock: &Socket,
    buf: &mut [u8],
    max: usize,
    mut each: impl FnMut(&[u8]),
) -> io::Result<()> {
    for _ in 0..max {
        let n = match recv(sock, buf, libc::MSG_DONTWAIT) {
            Ok(n) => n,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::Interrupted
                ) =>
            {
                return Ok(())
            }
            Err(e) => return Err(e),
        };
        each(&buf[..n]);
    }
    Ok(())
}

/// The Internet checksum (RFC 1071) of the parts, each of even length but
/// the last.
pub fn checksum(parts: &[&[u8]], start: u32) -> u16 {
    let mut sum = start;
    for part in parts {
        for pair in part.chunks(2) {
            let word = u16::from_be_bytes([pair[0], *pair.get(1).unwrap_or(&0)]);
            sum += u32::from(word);
        }
    }
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}
