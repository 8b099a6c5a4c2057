//! ARP sweep of a directly attached IPv4 subnet over a raw packet socket
//! (needs CAP_NET_RAW). The socket captures replies itself: the kernel
//! ignores replies to requests it did not send, so they never reach the
//! neighbour table. Like arp-scan: requests at a fixed rate, a wait after
//! the last one, then further tries for whoever did not answer.

use std::{
    collections::{HashMap, HashSet},
    io, mem,
    net::Ipv4Addr,
    os::fd::AsRawFd,
    time::{Duration, Instant},
};

use socket2::{Domain, Socket, Type};

use super::iface::Interface;
use crate::net::Mac;

const ETH_P_ARP: u16 = 0x0806;
const FRAME_LEN: usize = 42;
/// The shortest wait after the last request of a round (nmap's minimum
/// RTT timeout), so slow Wi-Fi clients still get a chance.
pub const MIN_WAIT: Duration = Duration::from_millis(100);

pub struct Reply {
    pub mac: Mac,
    pub rtt: Duration,
}

pub struct Outcome {
    pub replies: HashMap<Ipv4Addr, Reply>,
    pub sent: u64,
    /// The slowest reply, for sizing follow-up probes.
    pub slowest: Duration,
}

pub struct Params {
    /// Gap between two requests.
    pub gap: Duration,
    /// Wait after the last request of a round.
    pub wait: Duration,
    pub tries: u32,
}

/// Opens the packet socket; the error of a missing capability is kept as is
/// (PermissionDenied) so the caller can explain it.
pub fn open(iface: &Interface) -> io::Result<Socket> {
    let proto = socket2::Protocol::from(i32::from(ETH_P_ARP.to_be()));
    let sock = Socket::new(Domain::PACKET, Type::RAW, Some(proto))?;
    // SAFETY: sockaddr_ll is plain data; zeroed is a valid initial value.
    let mut addr: libc::sockaddr_ll = unsafe { mem::zeroed() };
    addr.sll_family = libc::AF_PACKET as u16;
    addr.sll_protocol = ETH_P_ARP.to_be();
    addr.sll_ifindex = iface.index as i32;
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
    Ok(sock)
}

pub fn request_frame(iface: &Interface, target: Ipv4Addr) -> [u8; FRAME_LEN] {
    let mut f = [0u8; FRAME_LEN];
    f[0..6].copy_from_slice(&[0xff; 6]);
    f[6..12].copy_from_slice(&iface.mac.0);
    f[12..14].copy_from_slice(&ETH_P_ARP.to_be_bytes());
    f[14..16].copy_from_slice(&1u16.to_be_bytes()); // Ethernet
    f[16..18].copy_from_slice(&0x0800u16.to_be_bytes()); // IPv4
    f[18] = 6;
    f[19] = 4;
    f[20..22].copy_from_slice(&1u16.to_be_bytes()); // request
    f[22..28].copy_from_slice(&iface.mac.0);
    f[28..32].copy_from_slice(&iface.ip.octets());
    // target hardware address stays zero
    f[38..42].copy_from_slice(&target.octets());
    f
}

/// The sender of an ARP reply frame, if it is one.
pub fn parse_reply(frame: &[u8]) -> Option<(Ipv4Addr, Mac)> {
    if frame.len() < FRAME_LEN || frame[12..14] != ETH_P_ARP.to_be_bytes() {
        return None;
    }
    let op = u16::from_be_bytes([frame[20], frame[21]]);
    if op != 2 || frame[18] != 6 || frame[19] != 4 {
        return None;
    }
    let mut mac = [0u8; 6];
    mac.copy_from_slice(&frame[22..28]);
    let ip = Ipv4Addr::new(frame[28], frame[29], frame[30], frame[31]);
    Some((ip, Mac(mac)))
}

fn send(sock: &Socket, iface: &Interface, frame: &[u8]) -> io::Result<()> {
    // SAFETY: as in `open`.
    let mut to: libc::sockaddr_ll = unsafe { mem::zeroed() };
    to.sll_family = libc::AF_PACKET as u16;
    to.sll_protocol = ETH_P_ARP.to_be();
    to.sll_ifindex = iface.index as i32;
    to.sll_halen = 6;
    to.sll_addr[..6].copy_from_slice(&[0xff; 6]);
    // SAFETY: frame and to are valid for the lengths given.
    let rc = unsafe {
        libc::sendto(
            sock.as_raw_fd(),
            frame.as_ptr() as *const libc::c_void,
            frame.len(),
            0,
            &to as *const libc::sockaddr_ll as *const libc::sockaddr,
            mem::size_of::<libc::sockaddr_ll>() as u32,
        )
    };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Sweeps `targets` on `iface`. Blocking; run it off the async runtime.
/// `progress` is called once per address when it is settled.
pub fn sweep(
    sock: &Socket,
    iface: &Interface,
    targets: &[Ipv4Addr],
    p: &Params,
    progress: &(dyn Fn(u64) + Send + Sync),
) -> io::Result<Outcome> {
    let wanted: HashSet<Ipv4Addr> = targets.iter().copied().collect();
    let mut replies: HashMap<Ipv4Addr, Reply> = HashMap::new();
    let mut sent_at: HashMap<Ipv4Addr, Instant> = HashMap::new();
    let mut sent = 0u64;
    let mut buf = [0u8; 1514];
    let mut wait = p.wait;
    let mut pending: Vec<Ipv4Addr> = targets.to_vec();
    let mut slowest = Duration::ZERO;
    for round in 0..p.tries.max(1) {
        let mut next_send = Instant::now();
        let mut queue = pending.iter();
        let mut last_sent = Instant::now();
        let mut exhausted = false;
        loop {
            let now = Instant::now();
            if !exhausted && now >= next_send {
                match queue.next() {
                    Some(ip) if !replies.contains_key(ip) => {
                        send(sock, iface, &request_frame(iface, *ip))?;
                        sent += 1;
                        sent_at.insert(*ip, Instant::now());
                        last_sent = Instant::now();
                        next_send += p.gap;
                    }
                    Some(_) => {}
                    None => exhausted = true,
                }
                continue;
            }
            // Once hosts have answered, the wait adapts to how fast they
            // answer (like nmap's RTT-based timeout), never below
            // MIN_WAIT nor above the configured wait.
            let settle = if slowest.is_zero() {
                wait
            } else {
                (slowest * 8).clamp(MIN_WAIT, wait)
            };
            let deadline = if exhausted {
                last_sent + settle
            } else {
                next_send
            };
            if exhausted && (now >= deadline || replies.len() == wanted.len()) {
                break;
            }
            let budget = deadline
                .saturating_duration_since(now)
                .max(Duration::from_micros(200));
            sock.set_read_timeout(Some(budget))?;
            match sock_recv(sock, &mut buf) {
                Ok(n) => {
                    if let Some((ip, mac)) = parse_reply(&buf[..n]) {
                        if wanted.contains(&ip) && !replies.contains_key(&ip) {
                            let rtt = sent_at.get(&ip).map(|t| t.elapsed()).unwrap_or_default();
                            slowest = slowest.max(rtt);
                            replies.insert(ip, Reply { mac, rtt });
                            progress(1);
                        }
                    }
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock
                            | io::ErrorKind::TimedOut
                            | io::ErrorKind::Interrupted
                    ) => {}
                Err(e) => return Err(e),
            }
        }
        pending.retain(|ip| !replies.contains_key(ip));
        if pending.is_empty() {
            break;
        }
        if round + 1 == p.tries.max(1) {
            progress(pending.len() as u64);
        }
        // arp-scan's backoff: each further try waits longer.
        wait = wait.mul_f64(1.5);
    }
    Ok(Outcome {
        replies,
        sent,
        slowest,
    })
}

fn sock_recv(sock: &Socket, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: buf is valid for writes of its length.
    let n = unsafe {
        libc::recv(
            sock.as_raw_fd(),
            buf.as_mut_ptr() as *mut libc::c_void,
            buf.len(),
            0,
        )
    };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reply_is_parsed_from_a_request_turned_around() {
        let iface = Interface {
            name: "x".into(),
            index: 1,
            mac: "02:00:00:00:00:01".parse().unwrap(),
            ip: Ipv4Addr::new(198, 18, 0, 1),
            network: "198.18.0.0/24".parse().unwrap(),
        };
        let mut f = request_frame(&iface, Ipv4Addr::new(198, 18, 0, 9));
        assert!(parse_reply(&f).is_none(), "a request is not a reply");
        f[21] = 2;
        let (ip, mac) = parse_reply(&f).unwrap();
        assert_eq!(ip, Ipv4Addr::new(198, 18, 0, 1));
        assert_eq!(mac.to_string(), "02:00:00:00:00:01");
    }
}
