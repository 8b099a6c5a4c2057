//! ARP sweep of a directly attached IPv4 subnet over a raw packet socket
//! (needs CAP_NET_RAW). The socket captures replies itself: the kernel
//! ignores replies to requests it did not send, so they never reach the
//! neighbour table.
//!
//! One event loop sends and reads at once, so every round-trip time is
//! true: due requests go out in small batches at the paced rate, replies
//! are read in between, retries for silent addresses follow the first pass
//! at once, and the sweep ends when every address has answered or when the
//! finish wait (`finish_wait`) has passed since the last request and the
//! last new reply. Every distinct (IP, MAC) pair is kept: two MACs for one
//! address is a conflict, whoever answers first.

use std::{
    collections::HashSet,
    io,
    net::Ipv4Addr,
    time::{Duration, Instant},
};

use socket2::Socket;

use super::{iface::Interface, packet, targets::V4Ranges};
use crate::net::Mac;
use sender::{Book, Sender};

mod sender;

const ETH_P_ARP: u16 = 0x0806;
/// linux/if_packet.h (not in every libc crate release).
const FRAME_LEN: usize = 42;
/// The shortest finish wait: replies on a LAN take well under a
/// millisecond, but a busy host or a Wi-Fi client answers later.
pub const GRACE: Duration = Duration::from_millis(20);
/// The finish wait is this many times the 95th-percentile round trip.
pub const RTT_FACTOR: u32 = 4;
/// The longest finish wait when none is given (`--timeout`).
pub const AUTO_CAP: Duration = Duration::from_millis(500);
/// Frames read per wake-up at most, before sending and the finish are
/// looked at again.
const MAX_DRAIN: usize = 256;
/// Replies beyond one per address kept at most (further MACs for an
/// address: conflicts).
const MAX_EXTRA_REPLIES: usize = 4096;
/// The shortest time before an address is asked again.
pub const MIN_RETRY_GAP: Duration = Duration::from_millis(5);
/// Requests sent in one `sendmmsg` (those already due) before the socket
/// is read again.
const BATCH: u32 = 4;
/// Tries per address at most, however much loss the sweep sees.
pub const MAX_TRIES: u32 = 4;

/// One address's answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    pub ip: Ipv4Addr,
    pub mac: Mac,
    pub rtt: Duration,
    /// Answered a request this sweep had sent, in a frame addressed in full
    /// to the scanner, from a plain unicast MAC (`is_reply_to_us`): what
    /// the kernel itself would have learnt from answering its own request.
    pub to_us: bool,
}

#[derive(Default)]
pub struct Outcome {
    /// Every distinct (IP, MAC) pair, in the order they first answered.
    pub replies: Vec<Reply>,
    pub sent: u64,
}

/// How long the sweep waits after its last request and last new reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wait {
    /// `max(GRACE, RTT_FACTOR × p95 RTT)`, at most `AUTO_CAP`.
    Auto,
    /// Exactly this: every address gets this long to answer.
    Fixed(Duration),
}

/// How many times a silent address is asked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Passes {
    /// This many passes over the silent addresses (`--tries`); one more
    /// (up to `MAX_TRIES`) whenever the last pass still found hosts,
    /// which means loss.
    Fixed(u32),
    /// One pass, then a check: the silent addresses most likely held (those
    /// expected, and the neighbours of hosts found) are asked again, at
    /// most `MAX_CHECKS` of the neighbours. An answer to a check means
    /// loss, and every silent address is asked again when `retry` allows
    /// (then as `Fixed(2)`); a LAN without loss pays a few frames, not a
    /// second pass over its empty addresses.
    Checked { retry: bool },
}

/// Neighbours of found hosts asked again by a check, at most.
pub const MAX_CHECKS: usize = 64;

pub struct Params {
    /// Gap between two requests.
    pub gap: Duration,
    pub wait: Wait,
    pub passes: Passes,
    /// Addresses expected to answer (up in an earlier sweep): each silent
    /// one is checked.
    pub expected: Vec<Ipv4Addr>,
}

/// What the loop tells its caller as it goes.
pub trait Observer {
    fn sent(&self, n: u64);
    /// The first answer of an address (not repeated for its other MACs).
    fn found(&self, reply: &Reply);
}

/// The finish wait for the round trips seen so far (sorted ascending).
pub fn finish_wait(sorted_rtts: &[Duration], wait: Wait) -> Duration {
    match wait {
        Wait::Fixed(d) => d,
        Wait::Auto => rtt_wait(sorted_rtts, GRACE),
    }
}

/// A few 95th-percentile round trips, at least `floor`, at most `AUTO_CAP`:
/// what the finish and the retries both wait.
fn rtt_wait(sorted_rtts: &[Duration], floor: Duration) -> Duration {
    (percentile(sorted_rtts, 95) * RTT_FACTOR).clamp(floor, AUTO_CAP)
}

fn percentile(sorted: &[Duration], p: usize) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = (sorted.len() * p).div_ceil(100).clamp(1, sorted.len());
    sorted[rank - 1]
}

/// The packet socket of ARP on `iface` (see [`packet::open`]).
pub fn open(iface: &Interface) -> io::Result<Socket> {
    packet::open(iface.index, ETH_P_ARP)
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

/// A reply as the kernel would take one for its own request: sent to the
/// scanner's MAC and naming its address and MAC as the target, from a
/// unicast, non-zero MAC that is not the scanner's, the same in the
/// Ethernet header and in the ARP body, for an address that is neither
/// the scanner's own nor its subnet's network or broadcast address.
/// Broadcast replies, gratuitous ones and forged mixes are not.
pub fn is_reply_to_us(frame: &[u8], iface: &Interface) -> bool {
    let Some((ip, mac)) = parse_reply(frame) else {
        return false;
    };
    let net = iface.network;
    let edge = net.prefix() <= 30 && (ip == net.network() || ip == net.broadcast());
    frame[0..6] == iface.mac.0
        && frame[6..12] == mac.0
        && frame[32..38] == iface.mac.0
        && frame[38..42] == iface.ip.octets()
        && mac.0[0] & 1 == 0
        && mac.0 != [0; 6]
        && mac != iface.mac
        && ip != iface.ip
        && !edge
}

/// Sends the frames, all to the broadcast address on `iface`.
fn send_batch(sock: &Socket, iface: &Interface, frames: &[[u8; FRAME_LEN]]) -> io::Result<()> {
    let frames: Vec<&[u8]> = frames.iter().map(|f| f.as_slice()).collect();
    packet::send(sock, iface.index, ETH_P_ARP, [0xff; 6], &frames)
}

/// Sweeps `targets` on `iface`. Blocking; run it off the async runtime.
pub fn sweep(
    sock: &Socket,
    iface: &Interface,
    targets: &V4Ranges,
    p: &Params,
    observer: &dyn Observer,
) -> io::Result<Outcome> {
    let len = targets.len();
    let start = Instant::now();
    let mut book = Book::new(len);
    let mut out = Outcome::default();
    let mut pairs: HashSet<(Ipv4Addr, Mac)> = HashSet::new();
    let mut rtts: Vec<Duration> = Vec::new();
    let mut last_new_reply = start;
    let mut s = Sender::new(p.passes, start, len);
    let expected: Vec<usize> = p
        .expected
        .iter()
        .filter_map(|ip| targets.index_of(*ip))
        .collect();
    // A retry waits this long after the address's first request: a few
    // measured round trips, so an answer on its way is not asked again.
    let retry_gap = |rtts: &[Duration]| rtt_wait(rtts, MIN_RETRY_GAP);
    let mut buf = [0u8; 1514];
    // Waits of tens of microseconds pace the requests; the default 50 µs
    // timer slack of a thread would stretch every one of them.
    // SAFETY: prctl with an integer argument; affects this thread only.
    unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, 1 as libc::c_ulong) };
    let mut batch: Vec<[u8; FRAME_LEN]> = Vec::with_capacity(BATCH as usize);
    loop {
        let now = Instant::now();
        batch.clear();
        // Time spent waiting (a check not due yet, a pass reopened by loss) is no
        // credit for a burst: at most a batch is sent behind the pace.
        if let Some(floor) = now.checked_sub(p.gap * BATCH) {
            s.next_send = s.next_send.max(floor);
        }
        while !s.done && s.next_send <= now && batch.len() < BATCH as usize {
            let Some(i) = s.next_index(&book, len, &expected) else {
                break;
            };
            if s.pass > 0 {
                let first = start + Duration::from_micros(u64::from(book.sent_at[i]));
                let due = first + retry_gap(&rtts) * s.pass;
                if due > now {
                    // Not yet: come back to this address when it is due.
                    s.put_back();
                    s.next_send = due;
                    break;
                }
                book.retry(i);
            }
            let ip = targets.get(i).expect("index below len");
            batch.push(request_frame(iface, ip));
            if s.pass == 0 {
                book.ask(i);
                book.sent_at[i] =
                    now.duration_since(start).as_micros().min(u32::MAX as u128) as u32;
            }
            out.sent += 1;
            s.last_request = now;
            s.next_send += p.gap;
        }
        if !batch.is_empty() {
            send_batch(sock, iface, &batch)?;
            observer.sent(batch.len() as u64);
        }
        if s.done && book.count == len {
            break;
        }
        let finish = s.last_request.max(last_new_reply) + finish_wait(&rtts, p.wait);
        // Past the finish, what queued while this thread was not running
        // is still read once: a reply there is no reply missed.
        let overdue = s.done && now >= finish;
        let until = if s.done { finish } else { s.next_send };
        let budget = if overdue {
            Duration::ZERO
        } else {
            until
                .saturating_duration_since(now)
                .max(Duration::from_micros(20))
        };
        // Wait (to the microsecond: SO_RCVTIMEO would round up to a
        // scheduler tick of several ms) until a frame arrives or the next
        // send is due, then read everything queued, so round trips stay true.
        if !packet::wait_readable(sock, budget)? {
            if overdue {
                break;
            }
            continue;
        }
        let news_before = last_new_reply;
        // Bounded, so a flood of frames cannot hold off sending or the finish.
        packet::drain(sock, &mut buf, MAX_DRAIN, |frame| {
            let Some((ip, mac)) = parse_reply(frame) else {
                return;
            };
            let Some(i) = targets.index_of(ip) else {
                return;
            };
            // A host spoofing MACs for an address would otherwise grow this
            // without end; the conflict is plain long before the cap.
            if out.replies.len() >= len.saturating_add(MAX_EXTRA_REPLIES)
                || !pairs.insert((ip, mac))
            {
                return;
            }
            let at = Instant::now();
            let first = start + Duration::from_micros(u64::from(book.sent_at[i]));
            let reply = Reply {
                ip,
                mac,
                rtt: at.saturating_duration_since(first),
                to_us: book.is_asked(i) && is_reply_to_us(frame, iface),
            };
            if !book.is_answered(i) {
                book.answer(i);
                // An answer after a retry shows loss, and its round trip is
                // ambiguous (which request?), so it does not size the waits.
                if book.is_retried(i) {
                    s.loss_seen();
                } else {
                    let pos = rtts.partition_point(|r| *r < reply.rtt);
                    rtts.insert(pos, reply.rtt);
                }
                s.found(i, &book, len);
                observer.found(&reply);
            }
            last_new_reply = at;
            out.replies.push(reply);
        })?;
        // Only a new answer earns the late read another finish wait; the
        // frames of a flood do not.
        if overdue && last_new_reply == news_before {
            break;
        }
    }
    tracing::debug!(
        iface = %iface.name,
        passes = s.pass,
        first_pass_ms = s
            .first_pass_sent
            .map_or(0, |t| t.duration_since(start).as_millis() as u64),
        sent = out.sent,
        answered = book.count,
        p95_us = percentile(&rtts, 95).as_micros() as u64,
        last_request_ms = s.last_request.duration_since(start).as_millis() as u64,
        last_reply_ms = last_new_reply.duration_since(start).as_millis() as u64,
        wait_ms = finish_wait(&rtts, p.wait).as_millis() as u64,
        "ARP sweep"
    );
    Ok(out)
}

#[cfg(test)]
mod tests;
