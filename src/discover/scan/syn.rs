//! TCP port probes of hosts on a directly attached subnet by raw SYN frames
//! (needs CAP_NET_RAW, like the ARP sweep it follows). The frames go to the
//! MAC ARP just gave, so no kernel neighbour entry or socket is used per
//! probe: a campus of devices that drop SYNs costs one frame per port and a
//! single wait, not a file descriptor and a full connect timeout each. A
//! SYN-ACK marks the port open (the kernel, which knows no such connection,
//! answers it with a reset); anything else, or silence, is closed.
//!
//! Hosts come in over a channel while the ARP sweep is still running; each
//! one's open ports go back on its own channel as soon as every port has
//! answered (a SYN-ACK or a reset), else once its last SYN has had its
//! wait: a few of this sweep's round trips (as ARP's `auto`), at most
//! `wait`, or exactly `wait` when it is fixed. Past `deadline` the probe
//! stops; hosts not done get no answer (their follow-ups are shed).

use std::{
    collections::{HashMap, VecDeque},
    hash::{BuildHasher, Hasher},
    io,
    net::Ipv4Addr,
    sync::{mpsc, Arc},
    time::{Duration, Instant},
};

use socket2::Socket;

use super::{iface::Interface, packet};
use crate::net::Mac;

const ETH_P_IP: u16 = 0x0800;
/// Ethernet, IPv4 (20) and TCP with an MSS option (24).
const FRAME_LEN: usize = 14 + 20 + 24;
/// Frames sent per batch before the socket is read again.
const BATCH: usize = 64;
/// Frames read per wake-up at most.
const MAX_DRAIN: usize = 512;

/// One host to probe, and where its open ports go.
pub struct Job {
    pub ip: Ipv4Addr,
    pub mac: Mac,
    pub done: tokio::sync::oneshot::Sender<Vec<u16>>,
}

/// Where hosts are handed to a running prober. Each host, and the end of
/// them (the line dropped), wakes the prober at once rather than at its
/// next timeout, so the last host's probes and the sweep's end wait for
/// nothing.
pub struct JobLine {
    tx: Option<mpsc::Sender<Job>>,
    wake: Arc<packet::Wake>,
}

/// The prober's end of a [`JobLine`].
pub struct Jobs {
    rx: mpsc::Receiver<Job>,
    wake: Arc<packet::Wake>,
}

pub fn job_line() -> io::Result<(JobLine, Jobs)> {
    let (tx, rx) = mpsc::channel();
    let wake = Arc::new(packet::Wake::new()?);
    let line = JobLine {
        tx: Some(tx),
        wake: wake.clone(),
    };
    Ok((line, Jobs { rx, wake }))
}

impl JobLine {
    /// False when the prober has stopped.
    pub fn send(&self, job: Job) -> bool {
        let sent = self.tx.as_ref().is_some_and(|tx| tx.send(job).is_ok());
        self.wake.raise();
        sent
    }
}

impl Drop for JobLine {
    fn drop(&mut self) {
        // Closed before the wake, so the woken prober sees the end.
        drop(self.tx.take());
        self.wake.raise();
    }
}

pub struct Params {
    pub ports: Vec<u16>,
    /// Gap between two SYNs.
    pub gap: Duration,
    /// How long a host's last SYN waits for its answer at most.
    pub wait: Duration,
    /// Wait only a few of the round trips measured (at most `wait`).
    pub adaptive: bool,
    /// No probing past this.
    pub deadline: Option<Instant>,
}

/// The packet socket of IPv4 on `iface`.
pub fn open(iface: &Interface) -> io::Result<Socket> {
    packet::open(iface.index, ETH_P_IP)
}

/// One host's probe in progress.
struct Host {
    mac: Mac,
    open: Vec<u16>,
    /// Ports that answered, open or not.
    answered: Vec<u16>,
    unsent: usize,
    first_sent: Option<Instant>,
    last_sent: Instant,
    done: Option<tokio::sync::oneshot::Sender<Vec<u16>>>,
}

/// The round trips of this sweep's answers, by the millisecond: the wait
/// for a silent port is a few of their 95th percentile.
struct RoundTrips {
    by_ms: [u32; 1001],
    count: u32,
}

impl RoundTrips {
    fn new() -> RoundTrips {
        RoundTrips {
            by_ms: [0; 1001],
            count: 0,
        }
    }

    fn add(&mut self, rtt: Duration) {
        let ms = (rtt.as_millis() as usize).min(1000);
        self.by_ms[ms] += 1;
        self.count += 1;
    }

    /// `RTT_FACTOR` × the 95th percentile, at least `GRACE`, at most
    /// `cap`; `cap` before any answer.
    fn wait(&self, cap: Duration) -> Duration {
        if self.count == 0 {
            return cap;
        }
        let rank = (self.count as u64 * 95).div_ceil(100).max(1);
        let mut seen = 0u64;
        let p95 = self
            .by_ms
            .iter()
            .position(|n| {
                seen += u64::from(*n);
                seen >= rank
            })
            .unwrap_or(1000);
        // A bucket holds round trips up to its next millisecond.
        let p95 = Duration::from_millis(p95 as u64 + 1);
        (p95 * super::arp::RTT_FACTOR).clamp(super::arp::GRACE, cap.max(super::arp::GRACE))
    }
}

/// Sequence numbers no one else can guess: an answer must acknowledge one.
struct Cookies(std::collections::hash_map::RandomState);

impl Cookies {
    fn of(&self, ip: Ipv4Addr, port: u16) -> u32 {
        let mut h = self.0.build_hasher();
        h.write_u32(u32::from(ip));
        h.write_u16(port);
        h.finish() as u32
    }
}

/// Probes every host that comes in on `jobs` until the channel closes and
/// every host is done, or the deadline. Returns the SYNs sent. Blocking.
pub fn run(sock: &Socket, iface: &Interface, jobs: Jobs, p: &Params) -> io::Result<u64> {
    let cookies = Cookies(Default::default());
    let sport = 40_000 + (std::process::id() % 20_000) as u16;
    let mut hosts: HashMap<Ipv4Addr, Host> = HashMap::new();
    let mut queue: VecDeque<(Ipv4Addr, u16)> = VecDeque::new();
    let mut next_send = Instant::now();
    let mut sent = 0u64;
    let mut closed = false;
    let mut buf = [0u8; 1514];
    let mut rtts = RoundTrips::new();
    loop {
        let now = Instant::now();
        if p.deadline.is_some_and(|d| now >= d) {
            return Ok(sent);
        }
        closed |= take_jobs(&jobs.rx, &mut hosts, &mut queue, &p.ports, now);
        sent += send_due(
            sock,
            iface,
            &mut hosts,
            &mut queue,
            p,
            &mut next_send,
            sport,
            &cookies,
        )?;
        let wait = if p.adaptive {
            rtts.wait(p.wait)
        } else {
            p.wait
        };
        finish_done(&mut hosts, p.ports.len(), wait, now);
        if closed && hosts.is_empty() {
            return Ok(sent);
        }
        let until = if queue.is_empty() {
            now + Duration::from_millis(5)
        } else {
            next_send
        };
        if packet::wait_readable_or_woken(
            sock,
            &jobs.wake,
            until
                .saturating_duration_since(now)
                .max(Duration::from_micros(20)),
        )? {
            read_answers(
                sock, iface, &mut hosts, &mut buf, sport, &cookies, &mut rtts,
            )?;
        }
    }
}

/// Takes the hosts waiting on the channel; true once it is closed.
fn take_jobs(
    jobs: &mpsc::Receiver<Job>,
    hosts: &mut HashMap<Ipv4Addr, Host>,
    queue: &mut VecDeque<(Ipv4Addr, u16)>,
    ports: &[u16],
    now: Instant,
) -> bool {
    loop {
        match jobs.try_recv() {
            Ok(job) => {
                queue.extend(ports.iter().map(|p| (job.ip, *p)));
                hosts.insert(
                    job.ip,
                    Host {
                        mac: job.mac,
                        open: Vec::new(),
                        answered: Vec::new(),
                        unsent: ports.len(),
                        first_sent: None,
                        last_sent: now,
                        done: Some(job.done),
                    },
                );
            }
            Err(mpsc::TryRecvError::Empty) => return false,
            Err(mpsc::TryRecvError::Disconnected) => return true,
        }
    }
}

/// Sends the SYNs due by now at the paced rate.
#[allow(clippy::too_many_arguments)]
fn send_due(
    sock: &Socket,
    iface: &Interface,
    hosts: &mut HashMap<Ipv4Addr, Host>,
    queue: &mut VecDeque<(Ipv4Addr, u16)>,
    p: &Params,
    next_send: &mut Instant,
    sport: u16,
    cookies: &Cookies,
) -> io::Result<u64> {
    let now = Instant::now();
    if *next_send < now - p.gap * BATCH as u32 {
        // Idle since: no burst to catch up.
        *next_send = now;
    }
    let mut frames: Vec<[u8; FRAME_LEN]> = Vec::new();
    while frames.len() < BATCH && *next_send <= now {
        let Some((ip, port)) = queue.pop_front() else {
            break;
        };
        let Some(h) = hosts.get_mut(&ip) else {
            continue;
        };
        frames.push(syn_frame(
            iface,
            h.mac,
            ip,
            sport,
            port,
            cookies.of(ip, port),
        ));
        h.unsent -= 1;
        h.first_sent.get_or_insert(now);
        h.last_sent = now;
        *next_send += p.gap;
    }
    // The frames carry their Ethernet header: the address given here is
    // not used on a raw packet socket.
    let refs: Vec<&[u8]> = frames.iter().map(|f| f.as_slice()).collect();
    if !refs.is_empty() {
        packet::send(sock, iface.index, ETH_P_IP, [0xff; 6], &refs)?;
    }
    Ok(frames.len() as u64)
}

/// Hands back the hosts every port of which answered, and those whose last
/// SYN has had its wait.
fn finish_done(hosts: &mut HashMap<Ipv4Addr, Host>, ports: usize, wait: Duration, now: Instant) {
    hosts.retain(|_, h| {
        let all_answered = h.answered.len() >= ports;
        if h.unsent > 0 || (!all_answered && now < h.last_sent + wait) {
            return true;
        }
        if let Some(done) = h.done.take() {
            let mut open = std::mem::take(&mut h.open);
            open.sort_unstable();
            open.dedup();
            let _ = done.send(open);
        }
        false
    });
}

fn read_answers(
    sock: &Socket,
    iface: &Interface,
    hosts: &mut HashMap<Ipv4Addr, Host>,
    buf: &mut [u8],
    sport: u16,
    cookies: &Cookies,
    rtts: &mut RoundTrips,
) -> io::Result<()> {
    let now = Instant::now();
    packet::drain(sock, buf, MAX_DRAIN, |frame| {
        let Some(a) = parse_answer(frame, iface.ip, sport) else {
            return;
        };
        // Only an answer to our own SYN: it acknowledges our cookie.
        if !(a.syn_ack || a.rst) || a.ack != cookies.of(a.from, a.port).wrapping_add(1) {
            return;
        }
        let Some(h) = hosts.get_mut(&a.from) else {
            return;
        };
        if h.answered.contains(&a.port) {
            return;
        }
        h.answered.push(a.port);
        if let Some(first) = h.first_sent {
            rtts.add(now.saturating_duration_since(first));
        }
        if a.syn_ack {
            h.open.push(a.port);
        }
    })
}

/// The fields of a TCP answer that matter.
#[derive(Debug, PartialEq, Eq)]
pub struct Answer {
    pub from: Ipv4Addr,
    pub port: u16,
    pub ack: u32,
    pub syn_ack: bool,
    /// A reset: the port is closed, and has answered.
    pub rst: bool,
}

/// A TCP segment to `me`:`sport`, if the frame is one.
pub fn parse_answer(frame: &[u8], me: Ipv4Addr, sport: u16) -> Option<Answer> {
    if frame.len() < 14 + 20 + 20 || frame[12..14] != ETH_P_IP.to_be_bytes() {
        return None;
    }
    let ip = &frame[14..];
    let ihl = usize::from(ip[0] & 0x0f) * 4;
    if ip[0] >> 4 != 4 || ihl < 20 || ip[9] != 6 || ip.len() < ihl + 20 {
        return None;
    }
    if ip[16..20] != me.octets() {
        return None;
    }
    let tcp = &ip[ihl..];
    if u16::from_be_bytes([tcp[2], tcp[3]]) != sport {
        return None;
    }
    Some(Answer {
        from: Ipv4Addr::new(ip[12], ip[13], ip[14], ip[15]),
        port: u16::from_be_bytes([tcp[0], tcp[1]]),
        ack: u32::from_be_bytes([tcp[8], tcp[9], tcp[10], tcp[11]]),
        syn_ack: tcp[13] & 0x12 == 0x12,
        rst: tcp[13] & 0x04 != 0,
    })
}

/// A SYN from `iface` to `ip`:`port` at `mac`, with an MSS option.
pub fn syn_frame(
    iface: &Interface,
    mac: Mac,
    ip: Ipv4Addr,
    sport: u16,
    port: u16,
    seq: u32,
) -> [u8; FRAME_LEN] {
    let mut f = [0u8; FRAME_LEN];
    f[0..6].copy_from_slice(&mac.0);
    f[6..12].copy_from_slice(&iface.mac.0);
    f[12..14].copy_from_slice(&ETH_P_IP.to_be_bytes());
    let (head, tcp) = f[14..].split_at_mut(20);
    head[0] = 0x45;
    head[2..4].copy_from_slice(&((20 + 24) as u16).to_be_bytes());
    head[4..6].copy_from_slice(&(seq as u16).to_be_bytes());
    head[6] = 0x40; // don't fragment
    head[8] = 64;
    head[9] = 6;
    head[12..16].copy_from_slice(&iface.ip.octets());
    head[16..20].copy_from_slice(&ip.octets());
    let sum = packet::checksum(&[head as &[u8]], 0);
    head[10..12].copy_from_slice(&sum.to_be_bytes());
    tcp[0..2].copy_from_slice(&sport.to_be_bytes());
    tcp[2..4].copy_from_slice(&port.to_be_bytes());
    tcp[4..8].copy_from_slice(&seq.to_be_bytes());
    tcp[12] = 6 << 4; // 24 bytes of header
    tcp[13] = 0x02; // SYN
    tcp[14..16].copy_from_slice(&1024u16.to_be_bytes());
    tcp[20..24].copy_from_slice(&[2, 4, 0x05, 0xb4]); // MSS 1460
    let mut pseudo = [0u8; 12];
    pseudo[0..4].copy_from_slice(&iface.ip.octets());
    pseudo[4..8].copy_from_slice(&ip.octets());
    pseudo[9] = 6;
    pseudo[10..12].copy_from_slice(&24u16.to_be_bytes());
    let sum = packet::checksum(&[&pseudo, tcp as &[u8]], 0);
    tcp[16..18].copy_from_slice(&sum.to_be_bytes());
    f
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_syn_carries_valid_checksums_and_its_answer_reads_back() {
        let dev: Mac = "dc:a6:32:00:00:07".parse().unwrap();
        let to = Ipv4Addr::new(198, 18, 0, 7);
        let f = syn_frame(
            &super::super::iface::test_scanner(),
            dev,
            to,
            40_001,
            22,
            0xdead_beef,
        );
        assert_eq!(&f[0..6], &dev.0);
        // A header with its checksum in place sums to zero.
        assert_eq!(packet::checksum(&[&f[14..34]], 0), 0);
        let mut pseudo = [0u8; 12];
        pseudo[0..4].copy_from_slice(&[198, 18, 0, 1]);
        pseudo[4..8].copy_from_slice(&to.octets());
        pseudo[9] = 6;
        pseudo[10..12].copy_from_slice(&24u16.to_be_bytes());
        assert_eq!(packet::checksum(&[&pseudo, &f[34..]], 0), 0);
        // The device's SYN-ACK: addresses and ports swapped, ack = seq + 1.
        let mut answer = f;
        answer[26..30].copy_from_slice(&to.octets());
        answer[30..34].copy_from_slice(&[198, 18, 0, 1]);
        answer[34..36].copy_from_slice(&22u16.to_be_bytes());
        answer[36..38].copy_from_slice(&40_001u16.to_be_bytes());
        answer[42..46].copy_from_slice(&0xdead_bef0u32.to_be_bytes());
        answer[47] = 0x12;
        assert_eq!(
            parse_answer(&answer, Ipv4Addr::new(198, 18, 0, 1), 40_001),
            Some(Answer {
                from: to,
                port: 22,
                ack: 0xdead_bef0,
                syn_ack: true,
                rst: false,
            })
        );
        assert_eq!(
            parse_answer(&answer, Ipv4Addr::new(198, 18, 0, 1), 40_002),
            None
        );
        assert_eq!(
            parse_answer(&answer[..40], Ipv4Addr::new(198, 18, 0, 1), 40_001),
            None
        );
    }

    #[test]
    fn a_silent_port_waits_a_few_round_trips_of_this_sweep_at_most_the_cap() {
        let cap = Duration::from_millis(300);
        let mut r = RoundTrips::new();
        assert_eq!(r.wait(cap), cap, "before any answer: the cap");
        for _ in 0..99 {
            r.add(Duration::from_micros(300));
        }
        r.add(Duration::from_millis(900));
        assert_eq!(r.wait(cap), super::super::arp::GRACE, "LAN round trips");
        for _ in 0..100 {
            r.add(Duration::from_millis(40));
        }
        assert_eq!(r.wait(cap), Duration::from_millis(41 * 4));
        for _ in 0..1000 {
            r.add(Duration::from_millis(200));
        }
        assert_eq!(r.wait(cap), cap, "never past the cap");
    }

    /// A prober waiting for answers hears of its last host at once, not at
    /// its next timeout: the sweep's end waits for nothing.
    #[test]
    fn the_end_of_the_hosts_wakes_a_waiting_prober() {
        let (line, jobs) = job_line().unwrap();
        let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::DGRAM, None).unwrap();
        let closer = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            drop(line);
        });
        let start = Instant::now();
        let readable =
            packet::wait_readable_or_woken(&sock, &jobs.wake, Duration::from_secs(30)).unwrap();
        assert!(!readable, "woken, nothing to read");
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "woken, not timed out"
        );
        closer.join().unwrap();
        assert!(
            matches!(jobs.rx.try_recv(), Err(mpsc::TryRecvError::Disconnected)),
            "closed before the wake"
        );
        // Lowered again: the next wait runs to its timeout.
        let start = Instant::now();
        assert!(
            !packet::wait_readable_or_woken(&sock, &jobs.wake, Duration::from_millis(30)).unwrap()
        );
        assert!(start.elapsed() >= Duration::from_millis(25));
    }
}
