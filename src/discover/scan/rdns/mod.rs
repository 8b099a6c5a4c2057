//! Reverse DNS of the hosts a sweep finds, asked by mdb itself rather than
//! through the C library: one connected UDP socket per name server of
//! `/etc/resolv.conf`, every lookup in flight at once on them, and
//! `/etc/hosts` read first (the `files dns` order of most systems).
//!
//! The C library's resolver cost a thread and ~90 µs of CPU per lookup
//! (its files read, a socket, a retry), most of a core taken from the ARP
//! sweep on a /24; here a lookup is one datagram each way. A lookup is
//! tried twice on a server, then on the next. A server that refuses
//! (nothing listens on its port 53) or answers nothing over two tries'
//! waits is given up for the whole sweep, so its lookups end at once
//! rather than each waiting out its timeout.
//!
//! Unlike the C library, other name services (nsswitch's mdns, resolve,
//! myhostname) and resolv.conf's options are not consulted, and scoped
//! IPv6 servers (`fe80::1%eth0`) are skipped; mDNS names come from the
//! sweep's own mDNS queries.
//!
//! An answer is the server's word, read only from that server's address
//! (the socket is connected), for a query id in flight to it and for the
//! very question asked; the name is decoded with bounds and cleaned.

use std::{
    collections::{HashMap, VecDeque},
    io,
    net::{IpAddr, Ipv4Addr, SocketAddr},
    sync::Arc,
    time::{Duration, Instant},
};

use tokio::{
    net::UdpSocket,
    sync::{mpsc, oneshot},
};

use super::dns_wire::{datagram_or_refusal, name_at, push_name, reverse_name, CLASS_IN, TYPE_PTR};

const RESOLV_CONF: &str = "/etc/resolv.conf";
const HOSTS: &str = "/etc/hosts";
/// Files larger than this are read only this far.
const MAX_FILE: u64 = 1 << 20;
/// Names kept from the hosts file at most.
const MAX_HOSTS: usize = 65_536;
/// Name servers asked at most, as the C library (MAXNS).
const MAX_SERVERS: usize = 3;
/// Lookups in flight at once at most, over all servers: a home router's
/// resolver is not flooded by a campus.
const MAX_IN_FLIGHT: usize = 64;
/// How long one try is given for an answer.
pub const TRY_WAIT: Duration = Duration::from_millis(700);
/// Tries of one lookup on one server, as the C library's `attempts`.
const TRIES: u8 = 2;
/// A server that answered nothing over this many tries' waits running is
/// given up (one lost datagram is not a dead server).
const SILENT_TRIES: u32 = 2;
/// Datagrams read and not yet looked at, at most: past it the reader
/// waits, and the socket's own buffer drops a flood.
const HEARD_QUEUE: usize = 1024;
/// The largest answer read (UDP DNS without EDNS is at most 512 bytes;
/// a server may send more).
const MAX_PACKET: usize = 4096;
/// Answer records read per response at most.
const MAX_RECORDS: usize = 32;

/// Where lookups are asked; cheap to clone. The lookups end when the last
/// clone is dropped and the last answer is in.
#[derive(Clone)]
pub struct ReverseDns {
    requests: mpsc::UnboundedSender<Request>,
}

struct Request {
    ip: IpAddr,
    reply: oneshot::Sender<Option<String>>,
}

impl ReverseDns {
    /// Starts the lookups with this system's name servers and hosts file.
    /// Call from within the runtime.
    pub fn start() -> ReverseDns {
        let read = |path: &str| crate::files::read_bounded(std::path::Path::new(path), MAX_FILE);
        let servers = servers(&read(RESOLV_CONF));
        let hosts = hosts(&read(HOSTS));
        ReverseDns::with(servers, hosts)
    }

    /// Starts the lookups with `servers` and the names of `hosts`.
    pub fn with(servers: Vec<SocketAddr>, hosts: HashMap<IpAddr, String>) -> ReverseDns {
        let (requests, rx) = mpsc::unbounded_channel();
        tokio::spawn(Lookups::new(hosts).run(rx, servers));
        ReverseDns { requests }
    }

    /// The name of `ip`, if the hosts file or a server has one; `None`
    /// once the servers answered without one, refused, or stayed silent.
    pub async fn name(&self, ip: IpAddr) -> Option<String> {
        let (reply, answer) = oneshot::channel();
        self.requests.send(Request { ip, reply }).ok()?;
        answer.await.ok().flatten()
    }
}

/// The `nameserver` lines of a resolv.conf (port 53), at most
/// [`MAX_SERVERS`]; none named means the local host, as the C library
/// reads it. Scoped IPv6 addresses (`fe80::1%eth0`) are skipped.
pub fn servers(resolv_conf: &str) -> Vec<SocketAddr> {
    let mut out: Vec<SocketAddr> = resolv_conf
        .lines()
        .filter_map(|l| {
            let mut words = l.split_whitespace();
            (words.next() == Some("nameserver")).then(|| words.next())?
        })
        .filter_map(|a| a.parse::<IpAddr>().ok())
        .map(|ip| SocketAddr::new(ip, 53))
        .take(MAX_SERVERS)
        .collect();
    if out.is_empty() {
        out.push(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 53));
    }
    out
}

/// The canonical name of each address in a hosts file (its first line
/// for that address wins), at most [`MAX_HOSTS`].
pub fn hosts(text: &str) -> HashMap<IpAddr, String> {
    let mut out = HashMap::new();
    for line in text.lines() {
        if out.len() >= MAX_HOSTS {
            break;
        }
        let line = line.split('#').next().unwrap_or_default();
        let mut words = line.split_whitespace();
        let (Some(ip), Some(name)) = (words.next(), words.next()) else {
            continue;
        };
        if let Ok(ip) = ip.parse::<IpAddr>() {
            out.entry(ip).or_insert_with(|| name.to_string());
        }
    }
    out
}

/// A recursive PTR query for `qname`.
pub fn query(id: u16, qname: &str) -> Vec<u8> {
    let mut q = Vec::with_capacity(12 + qname.len() + 6);
    q.extend_from_slice(&id.to_be_bytes());
    // Recursion desired; one question.
    q.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    push_name(&mut q, qname);
    q.extend_from_slice(&TYPE_PTR.to_be_bytes());
    q.extend_from_slice(&CLASS_IN.to_be_bytes());
    q
}

/// What a server said to a query.
#[derive(Debug, PartialEq, Eq)]
pub enum Said {
    /// A name (the first PTR record answering the question, or the name a
    /// CNAME of it points to), or none (NXDOMAIN, no data).
    Answer(Option<String>),
    /// The server could not answer (SERVFAIL, REFUSED, ...): ask the next.
    Failed,
}

/// Reads a response to query `id` for `qname`; `None` when it is not one
/// (another id, not a response, another question, malformed).
pub fn read_response(msg: &[u8], id: u16, qname: &str) -> Option<Said> {
    let head = msg.get(..12)?;
    if u16::from_be_bytes([head[0], head[1]]) != id || head[2] & 0x80 == 0 {
        return None;
    }
    let count = |i: usize| u16::from_be_bytes([head[i], head[i + 1]]) as usize;
    if count(4) != 1 {
        return None;
    }
    let (asked, next) = name_at(msg, 12)?;
    let q = msg.get(next..next + 4)?;
    if !asked.eq_ignore_ascii_case(qname)
        || u16::from_be_bytes([q[0], q[1]]) != TYPE_PTR
        || u16::from_be_bytes([q[2], q[3]]) != CLASS_IN
    {
        return None;
    }
    // Truncated: the C library would ask again over TCP; the next server
    // is asked instead.
    if head[2] & 0x02 != 0 {
        return Some(Said::Failed);
    }
    match head[3] & 0x0f {
        0 => {}
        3 => return Some(Said::Answer(None)),
        _ => return Some(Said::Failed),
    }
    let mut at = next + 4;
    let mut owner_wanted = qname.to_string();
    for _ in 0..count(6).min(MAX_RECORDS) {
        let (owner, after) = name_at(msg, at)?;
        let rr = msg.get(after..after + 10)?;
        let kind = u16::from_be_bytes([rr[0], rr[1]]);
        let class = u16::from_be_bytes([rr[2], rr[3]]);
        let len = u16::from_be_bytes([rr[8], rr[9]]) as usize;
        let data = after + 10;
        msg.get(data..data + len)?;
        if class == CLASS_IN && owner.eq_ignore_ascii_case(&owner_wanted) {
            match kind {
                TYPE_PTR => return Some(Said::Answer(name_at(msg, data).map(|(n, _)| n))),
                // A classless delegation (RFC 2317): follow it, forwards.
                5 => owner_wanted = name_at(msg, data)?.0,
                _ => {}
            }
        }
        at = data + len;
    }
    Some(Said::Answer(None))
}

/// One server's socket and what it showed of itself this sweep.
struct Server {
    sock: Arc<UdpSocket>,
    /// Refused or silent: asked no more.
    given_up: bool,
    last_answer: Option<Instant>,
    /// Sent the first query whose try ran out unanswered, with nothing
    /// heard from the server since.
    silent_since: Option<Instant>,
}

/// One lookup on its way. Its query id stays the same over its tries, so
/// a late answer to an earlier try still counts.
struct Pending {
    qname: String,
    reply: oneshot::Sender<Option<String>>,
    server: usize,
    sent: Instant,
    /// Tries on `server` so far.
    tries: u8,
}

/// What a server's socket brought: a datagram, or its refusal.
type Heard = (usize, io::Result<Vec<u8>>);

struct Lookups {
    hosts: HashMap<IpAddr, String>,
    servers: Vec<Server>,
    pending: HashMap<u16, Pending>,
    waiting: VecDeque<Request>,
}

impl Lookups {
    fn new(hosts: HashMap<IpAddr, String>) -> Lookups {
        Lookups {
            hosts,
            servers: Vec::new(),
            pending: HashMap::new(),
            waiting: VecDeque::new(),
        }
    }

    async fn run(mut self, mut requests: mpsc::UnboundedReceiver<Request>, addrs: Vec<SocketAddr>) {
        let (heard_tx, mut heard) = mpsc::channel::<Heard>(HEARD_QUEUE);
        for addr in addrs {
            let Ok(sock) = connect(addr).await else {
                continue;
            };
            let sock = Arc::new(sock);
            let i = self.servers.len();
            tokio::spawn(listen(i, sock.clone(), heard_tx.clone()));
            self.servers.push(Server {
                sock,
                given_up: false,
                last_answer: None,
                silent_since: None,
            });
        }
        drop(heard_tx);
        let mut open = true;
        while open || !self.pending.is_empty() || !self.waiting.is_empty() {
            let next_try = self
                .pending
                .values()
                .map(|p| p.sent + TRY_WAIT)
                .min()
                .unwrap_or_else(|| Instant::now() + TRY_WAIT);
            tokio::select! {
                r = requests.recv(), if open => match r {
                    Some(r) => self.ask(r),
                    None => open = false,
                },
                Some((i, said)) = heard.recv() => self.heard(i, said),
                () = tokio::time::sleep_until(next_try.into()) => self.tries_out(Instant::now()),
            }
            self.send_waiting();
        }
        // The readers end as `heard` closes, and the sockets with them.
    }

    fn ask(&mut self, r: Request) {
        if let Some(name) = self.hosts.get(&r.ip) {
            let _ = r.reply.send(Some(name.clone()));
            return;
        }
        self.waiting.push_back(r);
    }

    fn send_waiting(&mut self) {
        while self.pending.len() < MAX_IN_FLIGHT {
            let Some(r) = self.waiting.pop_front() else {
                return;
            };
            // Its caller stopped waiting: not asked at all.
            if r.reply.is_closed() {
                continue;
            }
            let id = loop {
                let id: u16 = rand::random();
                if !self.pending.contains_key(&id) {
                    break id;
                }
            };
            let lookup = Pending {
                qname: reverse_name(r.ip),
                reply: r.reply,
                server: 0,
                sent: Instant::now(),
                tries: 0,
            };
            self.send(id, lookup, 0);
        }
    }

    /// Sends try `tries + 1` of a lookup to the first server from `from`
    /// on not given up; none left (or its caller gone): it ends there.
    fn send(&mut self, id: u16, mut lookup: Pending, from: usize) {
        if lookup.reply.is_closed() {
            return;
        }
        let q = query(id, &lookup.qname);
        let mut server = from;
        loop {
            let Some(s) = (server..self.servers.len()).find(|i| !self.servers[*i].given_up) else {
                let _ = lookup.reply.send(None);
                return;
            };
            // Sent by the system call itself: tokio's `try_send` refuses
            // until the runtime has seen the new socket writable.
            match socket2::SockRef::from(self.servers[s].sock.as_ref()).send(&q) {
                // The refusal of an earlier query, reported to this send.
                Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
                    self.give_up(s);
                    server = s + 1;
                }
                // Sent, or a full buffer: then the try's wait ends it as
                // it would a lost datagram.
                _ => {
                    server = s;
                    break;
                }
            }
        }
        if server != lookup.server {
            lookup.tries = 0;
        }
        lookup.server = server;
        lookup.sent = Instant::now();
        lookup.tries += 1;
        self.pending.insert(id, lookup);
    }

    fn heard(&mut self, server: usize, said: io::Result<Vec<u8>>) {
        let Ok(msg) = said else {
            // ICMP port unreachable: nothing listens there.
            self.give_up(server);
            return;
        };
        let Some(id) = msg.get(..2).map(|b| u16::from_be_bytes([b[0], b[1]])) else {
            return;
        };
        let Some(p) = self.pending.get(&id).filter(|p| p.server == server) else {
            return;
        };
        let Some(said) = read_response(&msg, id, &p.qname) else {
            return;
        };
        let s = &mut self.servers[server];
        s.last_answer = Some(Instant::now());
        s.silent_since = None;
        let Some(p) = self.pending.remove(&id) else {
            return;
        };
        match said {
            Said::Answer(name) => {
                let _ = p.reply.send(name.filter(|n| !n.is_empty()));
            }
            Said::Failed => self.send(id, p, server + 1),
        }
    }

    /// Lookups whose try is over are tried again, on the same server up
    /// to [`TRIES`], then on the next; a server that answered nothing over
    /// [`SILENT_TRIES`] tries running is given up (its lookups move on).
    fn tries_out(&mut self, now: Instant) {
        let over: Vec<u16> = self
            .pending
            .iter()
            .filter(|(_, p)| now >= p.sent + TRY_WAIT)
            .map(|(id, _)| *id)
            .collect();
        for id in over {
            // Moved on meanwhile (a server given up) under the same id.
            let Some(p) = self.pending.get(&id).filter(|p| now >= p.sent + TRY_WAIT) else {
                continue;
            };
            let server = p.server;
            let s = &mut self.servers[server];
            if s.last_answer.is_none_or(|t| t < p.sent) {
                let since = *s.silent_since.get_or_insert(p.sent);
                if now >= since + TRY_WAIT * SILENT_TRIES {
                    self.give_up(server);
                    continue;
                }
            }
            let Some(p) = self.pending.remove(&id) else {
                continue;
            };
            let next = if p.tries < TRIES { server } else { server + 1 };
            self.send(id, p, next);
        }
    }

    /// Asks `server` no more this sweep; its lookups go to the next.
    fn give_up(&mut self, server: usize) {
        self.servers[server].given_up = true;
        let moved: Vec<u16> = self
            .pending
            .iter()
            .filter(|(_, p)| p.server == server)
            .map(|(id, _)| *id)
            .collect();
        for id in moved {
            if let Some(p) = self.pending.remove(&id) {
                self.send(id, p, server + 1);
            }
        }
    }
}

async fn connect(addr: SocketAddr) -> io::Result<UdpSocket> {
    let local: SocketAddr = match addr {
        SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (std::net::Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let sock = UdpSocket::bind(local).await?;
    // Connected: the kernel hands this socket nothing from anyone else,
    // and the server's refusal comes back as an error.
    sock.connect(addr).await?;
    Ok(sock)
}

/// Reads server `i`'s socket until the lookups end or the server fails
/// (any error gives it up, so the reading ends there).
async fn listen(i: usize, sock: Arc<UdpSocket>, heard: mpsc::Sender<Heard>) {
    let mut buf = vec![0u8; MAX_PACKET];
    loop {
        let ready = tokio::select! {
            r = datagram_or_refusal(&sock) => r,
            () = heard.closed() => return,
        };
        let said = match ready {
            Ok(()) => match sock.try_recv(&mut buf) {
                Ok(n) => Ok(buf[..n].to_vec()),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => Err(e),
            },
            Err(e) => Err(e),
        };
        let failed = said.is_err();
        if heard.send((i, said)).await.is_err() || failed {
            return;
        }
    }
}

#[cfg(test)]
mod tests;
