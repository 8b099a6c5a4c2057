//! What hosts call themselves over mDNS (RFC 6762) and which DNS-SD service
//! types they announce (RFC 6763), asked of each host the ARP sweep found.
//!
//! Each host gets one "legacy unicast" query, sent to its own address on
//! port 5353 from an ephemeral port, holding two questions: the PTR of its
//! reverse name (`5.10.18.198.in-addr.arpa`, which an mDNS responder such
//! as Avahi answers with `NAME.local`) and `_services._dns-sd._udp.local`
//! (its service types). The responder answers by unicast to our port, so
//! no socket on 5353 and no multicast membership is needed, and a campus
//! of silent devices costs one small datagram each.
//!
//! Everything in an answer is the device's own words: each host is asked
//! from its own socket with its own random query id, and only an answer
//! from that host's address and port 5353 with that id is read; names are
//! decoded with a bound on length and compression jumps, and cleaned.

use std::{
    collections::HashMap,
    net::{IpAddr, Ipv4Addr},
    time::{Duration, Instant},
};

use tokio::net::UdpSocket;

use super::dns_wire::{
    datagram_or_refusal, name_at, push_name, reverse_name, CLASS_IN, MAX_NAME, TYPE_PTR,
};

/// How long a host that neither answered nor refused is waited for after
/// its query. A host without a responder refuses at once (ICMP port
/// unreachable) and one with a responder usually answers at once, so the
/// window runs out only for a silent host, which may hold a slow
/// responder; this is the port probes' budget too, so a sweep of silent
/// devices waits no longer for it.
pub const WINDOW: Duration = Duration::from_millis(300);
const PORT: u16 = 5353;
/// The largest answer read (an mDNS packet fits a jumbo frame).
const MAX_PACKET: usize = 9000;
/// Service types kept per host.
const MAX_SERVICES: usize = 16;
/// Resource records read per answer.
const MAX_RECORDS: usize = 64;
const TYPE_A: u16 = 1;
const SERVICES: &str = "_services._dns-sd._udp.local";

/// What one host said of itself.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Answer {
    /// Its host name without `.local`, cleaned; may be empty.
    pub name: String,
    /// Service types without `.local`, e.g. `_ipp._tcp`, sorted.
    pub services: Vec<String>,
}

/// Queries awaiting their answer at once, at most (a socket each).
const MAX_IN_FLIGHT: usize = 1024;
/// The timer's resolution: a query due sooner than this is sent at once.
const PACE_TICK: Duration = Duration::from_millis(1);

/// Asks each host as it comes in over `hosts` (the ARP sweep finds them),
/// one query each `gap` apart at most, and gathers the answers until each
/// asked host answered (or said it has no responder), [`WINDOW`] after its
/// own query at the latest, never past `deadline`. Ends when `hosts` is
/// closed and the last query is done; no query starts later than
/// [`WINDOW`] after `arp_ended` is set (a flood of hosts found cannot
/// stretch the names past the sweep).
///
/// Each host gets its own socket, connected to its address and port 5353
/// (the kernel hands that socket nothing from anyone else), and its own
/// random query id: a device that sees its own query learns nothing that
/// would let it answer for a neighbour.
pub async fn ask(
    mut hosts: tokio::sync::mpsc::UnboundedReceiver<Ipv4Addr>,
    gap: Duration,
    deadline: Option<Instant>,
    arp_ended: std::sync::Arc<std::sync::OnceLock<Instant>>,
) -> HashMap<IpAddr, Answer> {
    let slots = std::sync::Arc::new(tokio::sync::Semaphore::new(MAX_IN_FLIGHT));
    let mut tasks = tokio::task::JoinSet::new();
    let mut due = Instant::now();
    let past_deadline = || {
        let now = Instant::now();
        deadline.is_some_and(|d| now >= d) || arp_ended.get().is_some_and(|t| now >= *t + WINDOW)
    };
    while let Some(ip) = hosts.recv().await {
        // Queries go out `gap` apart: slept for only when that is a timer
        // tick ahead, since a sleep of less rounds up to a millisecond and
        // 100 hosts would wait 100 ms for a 10 ms pace.
        due = due.max(Instant::now());
        if due > Instant::now() + PACE_TICK {
            tokio::time::sleep_until(due.into()).await;
        }
        due += gap;
        if past_deadline() {
            break;
        }
        let slot = match deadline {
            Some(d) => match tokio::time::timeout_at(d.into(), slots.clone().acquire_owned()).await
            {
                Ok(Ok(slot)) => slot,
                _ => break,
            },
            None => match slots.clone().acquire_owned().await {
                Ok(slot) => slot,
                Err(_) => break,
            },
        };
        tasks.spawn(async move {
            let _slot = slot;
            let end = Instant::now() + WINDOW;
            let end = deadline.map_or(end, |d| d.min(end));
            ask_one(ip, end).await.map(|a| (IpAddr::V4(ip), a))
        });
    }
    let mut out = HashMap::new();
    while let Some(r) = tasks.join_next().await {
        if let Ok(Some((ip, a))) = r {
            out.insert(ip, a);
        }
    }
    out
}

/// One host's query and its answer, if one comes by `end`.
async fn ask_one(ip: Ipv4Addr, end: Instant) -> Option<Answer> {
    let sock = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).await.ok()?;
    sock.connect((ip, PORT)).await.ok()?;
    let id: u16 = rand::random();
    sock.send(&query(id, ip)).await.ok()?;
    loop {
        // The buffer is taken once there is something to read: a thousand
        // silent hosts waiting out their window hold no 9 KB each. An
        // error is the host's port unreachable: no responder there.
        tokio::time::timeout_at(end.into(), datagram_or_refusal(&sock))
            .await
            .ok()?
            .ok()?;
        let mut buf = vec![0u8; MAX_PACKET];
        let n = match sock.try_recv(&mut buf) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            // An error is the host's port unreachable: no responder there.
            Err(_) => return None,
        };
        if let Some(answer) = read_answer(&buf[..n], id, ip) {
            return Some(answer);
        }
    }
}

/// A query with two PTR questions: the host's reverse name and its
/// service types.
fn query(id: u16, ip: Ipv4Addr) -> Vec<u8> {
    let mut q = Vec::with_capacity(96);
    q.extend_from_slice(&id.to_be_bytes());
    q.extend_from_slice(&[0, 0, 0, 2, 0, 0, 0, 0, 0, 0]);
    for name in [reverse_name(IpAddr::V4(ip)).as_str(), SERVICES] {
        push_name(&mut q, name);
        q.extend_from_slice(&TYPE_PTR.to_be_bytes());
        q.extend_from_slice(&CLASS_IN.to_be_bytes());
    }
    q
}

/// Reads a response to query `id` from `from`; `None` when it is none.
fn read_answer(msg: &[u8], id: u16, from: Ipv4Addr) -> Option<Answer> {
    if msg.len() < 12 || u16::from_be_bytes([msg[0], msg[1]]) != id || msg[2] & 0x80 == 0 {
        return None;
    }
    let count = |i: usize| u16::from_be_bytes([msg[i], msg[i + 1]]) as usize;
    let questions = count(4);
    let records = (count(6) + count(8) + count(10)).min(MAX_RECORDS);
    let mut at = 12;
    for _ in 0..questions.min(MAX_RECORDS) {
        at = name_at(msg, at)?.1 + 4;
    }
    let reverse = reverse_name(IpAddr::V4(from));
    let mut answer = Answer::default();
    let mut by_address = String::new();
    for _ in 0..records {
        let (owner, next) = name_at(msg, at)?;
        let head = msg.get(next..next + 10)?;
        let kind = u16::from_be_bytes([head[0], head[1]]);
        let len = u16::from_be_bytes([head[8], head[9]]) as usize;
        let data = next + 10;
        msg.get(data..data + len)?;
        match kind {
            TYPE_PTR if owner.eq_ignore_ascii_case(&reverse) => {
                if let Some((target, _)) = name_at(msg, data) {
                    answer.name = local_part(&target);
                }
            }
            TYPE_PTR if owner.eq_ignore_ascii_case(SERVICES) => {
                if let Some((target, _)) = name_at(msg, data) {
                    let service = local_part(&target).to_ascii_lowercase();
                    if crate::net::is_service_type(&service)
                        && !answer.services.contains(&service)
                        && answer.services.len() < MAX_SERVICES
                    {
                        answer.services.push(service);
                    }
                }
            }
            TYPE_A if len == 4 && msg[data..data + 4] == from.octets() => {
                by_address = local_part(&owner);
            }
            _ => {}
        }
        at = data + len;
    }
    if answer.name.is_empty() {
        answer.name = by_address;
    }
    answer.services.sort();
    Some(answer)
}

/// A name without its `.local` suffix, cleaned of control characters.
fn local_part(name: &str) -> String {
    let trimmed = name.trim_end_matches('.');
    let bare = match trimmed.len().checked_sub(6) {
        Some(cut)
            if trimmed.is_char_boundary(cut) && trimmed[cut..].eq_ignore_ascii_case(".local") =>
        {
            &trimmed[..cut]
        }
        _ => trimmed,
    };
    crate::escape::clean(bare, MAX_NAME)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(out: &mut Vec<u8>, n: &str) {
        for l in n.split('.') {
            out.push(l.len() as u8);
            out.extend_from_slice(l.as_bytes());
        }
        out.push(0);
    }

    fn record(out: &mut Vec<u8>, owner: &str, kind: u16, data: &[u8]) {
        name(out, owner);
        out.extend_from_slice(&kind.to_be_bytes());
        out.extend_from_slice(&[0x80, 1, 0, 0, 0, 120]);
        out.extend_from_slice(&(data.len() as u16).to_be_bytes());
        out.extend_from_slice(data);
    }

    fn response(id: u16, records: &[(&str, u16, Vec<u8>)]) -> Vec<u8> {
        let mut m = id.to_be_bytes().to_vec();
        m.extend_from_slice(&[0x84, 0, 0, 0]);
        m.extend_from_slice(&(records.len() as u16).to_be_bytes());
        m.extend_from_slice(&[0, 0, 0, 0]);
        for (owner, kind, data) in records {
            record(&mut m, owner, *kind, data);
        }
        m
    }

    fn target(n: &str) -> Vec<u8> {
        let mut v = Vec::new();
        name(&mut v, n);
        v
    }

    const IP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 5);

    #[test]
    fn the_query_asks_the_reverse_name_and_the_service_types() {
        let q = query(7, IP);
        assert_eq!(&q[..6], &[0, 7, 0, 0, 0, 2]);
        let (first, next) = name_at(&q, 12).unwrap();
        assert_eq!(first, "5.0.18.198.in-addr.arpa");
        assert_eq!(name_at(&q, next + 4).unwrap().0, SERVICES);
    }

    #[test]
    fn an_answer_gives_the_name_and_the_service_types() {
        let m = response(
            9,
            &[
                ("5.0.18.198.in-addr.arpa", TYPE_PTR, target("printer.local")),
                (SERVICES, TYPE_PTR, target("_ipp._tcp.local")),
                (SERVICES, TYPE_PTR, target("_http._tcp.local")),
                (SERVICES, TYPE_PTR, target("<b>.local")),
            ],
        );
        let a = read_answer(&m, 9, IP).unwrap();
        assert_eq!(a.name, "printer");
        assert_eq!(a.services, ["_http._tcp", "_ipp._tcp"]);
        assert!(read_answer(&m, 10, IP).is_none(), "another query's id");
    }

    #[test]
    fn the_a_record_names_a_host_without_a_reverse_answer() {
        let m = response(1, &[("nas.local", TYPE_A, vec![198, 18, 0, 5])]);
        assert_eq!(read_answer(&m, 1, IP).unwrap().name, "nas");
        let other = response(1, &[("nas.local", TYPE_A, vec![198, 18, 0, 6])]);
        assert_eq!(read_answer(&other, 1, IP).unwrap().name, "");
    }

    #[test]
    fn hostile_names_are_bounded_cleaned_and_loops_refused() {
        let evil = "a\u{1b}[31m<script>\r\n.local";
        let m = response(1, &[("5.0.18.198.in-addr.arpa", TYPE_PTR, target(evil))]);
        let a = read_answer(&m, 1, IP).unwrap();
        assert!(!a.name.chars().any(char::is_control), "{:?}", a.name);
        // 300 bytes of labels: more than a DNS name may hold.
        let long = vec!["x".repeat(60); 5].join(".");
        let m = response(1, &[("5.0.18.198.in-addr.arpa", TYPE_PTR, target(&long))]);
        assert_eq!(read_answer(&m, 1, IP).unwrap().name, "");
        // A pointer to itself, and one forwards.
        let mut m = response(1, &[]);
        m[7] = 1;
        let at = m.len();
        m.extend_from_slice(&[0xc0, at as u8]);
        assert!(read_answer(&m, 1, IP).is_none());
        assert!(name_at(&[0xc0, 5, 0, 0, 0, 0], 0).is_none());
    }
}
