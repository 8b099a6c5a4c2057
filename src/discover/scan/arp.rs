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

/// Sends the frames, all to the broadcast address on `iface`.
fn send_batch(sock: &Socket, iface: &Interface, frames: &[[u8; FRAME_LEN]]) -> io::Result<()> {
    let frames: Vec<&[u8]> = frames.iter().map(|f| f.as_slice()).collect();
    packet::send(sock, iface.index, ETH_P_ARP, [0xff; 6], &frames)
}

/// Per-address state of one sweep, indexed by position in the targets:
/// bounded by the range size, never by a copy of the address list.
struct Book {
    answered: Vec<u64>,
    /// Asked more than once: its answer's round trip is ambiguous, and an
    /// answer shows loss.
    retried: Vec<u64>,
    /// Microseconds after the start when the first request went out: a
    /// reply names no request, and a late host answers the first one.
    sent_at: Vec<u32>,
    count: usize,
}

impl Book {
    fn new(len: usize) -> Book {
        Book {
            answered: vec![0; len.div_ceil(64)],
            retried: vec![0; len.div_ceil(64)],
            sent_at: vec![0; len],
            count: 0,
        }
    }
    fn is_answered(&self, i: usize) -> bool {
        self.answered[i / 64] & (1 << (i % 64)) != 0
    }
    fn answer(&mut self, i: usize) {
        self.answered[i / 64] |= 1 << (i % 64);
        self.count += 1;
    }
    fn is_retried(&self, i: usize) -> bool {
        self.retried[i / 64] & (1 << (i % 64)) != 0
    }
    fn retry(&mut self, i: usize) {
        self.retried[i / 64] |= 1 << (i % 64);
    }
    /// The silent addresses a check asks again, in order: each expected
    /// one, and the silent neighbours of found ones (`MAX_CHECKS` at most,
    /// spread over the range when there are more).
    fn checks(&self, len: usize, expected: &[usize]) -> Vec<usize> {
        let mut neighbours: Vec<usize> = Vec::new();
        for i in (0..len).filter(|i| self.is_answered(*i)) {
            for n in [i.checked_sub(1), i.checked_add(1).filter(|n| *n < len)] {
                if let Some(n) = n.filter(|n| !self.is_answered(*n)) {
                    neighbours.push(n);
                }
            }
        }
        neighbours.dedup();
        let spread = neighbours.len().div_ceil(MAX_CHECKS).max(1);
        let mut out: Vec<usize> = expected
            .iter()
            .copied()
            .filter(|i| *i < len && !self.is_answered(*i))
            .chain(neighbours.into_iter().step_by(spread))
            .collect();
        out.sort_unstable();
        out.dedup();
        out
    }
}

/// Where a sweep with a check stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stage {
    /// The first pass.
    First,
    /// The first pass is sent; the answers on their way are waited for
    /// (until `settle_until`), so the check knows every host found.
    Settling,
    /// The check's addresses are being asked.
    Asking,
    /// The check is sent; an answer to it, even a late one, is loss.
    Asked,
    /// Loss was seen: passes go on as `Passes::Fixed`.
    Passes,
}

/// The sending side: which address is next, pass by pass.
struct Sender {
    pass: u32,
    passes: u32,
    /// Whether loss a check finds earns a full pass; `None`: no check.
    retry: Option<bool>,
    stage: Stage,
    settle_until: Instant,
    /// The addresses of the check, in order; `None`: every address.
    order: Option<Vec<usize>>,
    next: usize,
    found_this_pass: usize,
    next_send: Instant,
    last_request: Instant,
    done: bool,
}

impl Sender {
    fn new(passes: Passes, start: Instant, len: usize) -> Sender {
        let (passes, retry, stage) = match passes {
            Passes::Fixed(n) => (n.clamp(1, MAX_TRIES), None, Stage::Passes),
            Passes::Checked { retry } => (1, Some(retry), Stage::First),
        };
        Sender {
            pass: 0,
            passes,
            retry,
            stage,
            settle_until: start,
            order: None,
            next: 0,
            found_this_pass: 0,
            next_send: start,
            last_request: start,
            done: len == 0,
        }
    }

    /// The next silent address due by `now`, starting the next pass or
    /// the check when one ends; `settle` is how long answers to the last
    /// requests are waited for before the check is chosen.
    fn next_index(
        &mut self,
        book: &Book,
        len: usize,
        expected: &[usize],
        (now, settle): (Instant, Duration),
    ) -> Option<usize> {
        loop {
            let end = self.order.as_ref().map_or(len, Vec::len);
            while self.next < end {
                let i = self.order.as_ref().map_or(self.next, |o| o[self.next]);
                self.next += 1;
                if !book.is_answered(i) {
                    return Some(i);
                }
            }
            if book.count == len {
                self.done = true;
                return None;
            }
            match self.stage {
                Stage::First => {
                    self.stage = Stage::Settling;
                    self.settle_until = self.last_request + settle;
                    self.next_send = self.settle_until;
                    return None;
                }
                Stage::Settling if now < self.settle_until => return None,
                Stage::Settling => {
                    self.order = Some(book.checks(len, expected));
                    self.stage = Stage::Asking;
                    self.start_pass(1, 2);
                }
                Stage::Asking if self.found_this_pass > 0 && self.retry == Some(true) => {
                    self.full_pass_after_loss();
                }
                Stage::Asking | Stage::Asked => {
                    self.stage = Stage::Asked;
                    self.done = true;
                    return None;
                }
                Stage::Passes => {
                    if self.found_this_pass > 0 && self.passes < MAX_TRIES {
                        self.passes += 1;
                    }
                    if self.pass + 1 >= self.passes {
                        self.pass += 1;
                        self.done = true;
                        return None;
                    }
                    let (pass, passes) = (self.pass + 1, self.passes);
                    self.start_pass(pass, passes);
                }
            }
        }
    }

    fn start_pass(&mut self, pass: u32, passes: u32) {
        self.pass = pass;
        self.passes = passes;
        self.next = 0;
        self.found_this_pass = 0;
    }

    /// Every silent address once more: a check was answered.
    fn full_pass_after_loss(&mut self) {
        self.order = None;
        self.stage = Stage::Passes;
        let pass = self.pass + 1;
        self.start_pass(pass, (pass + 1).min(MAX_TRIES));
        self.done = false;
    }

    /// An address asked more than once answered: loss. After the check
    /// was sent, a late answer to it still earns the full pass.
    fn loss_seen(&mut self) {
        self.found_this_pass += 1;
        if self.stage == Stage::Asked && self.retry == Some(true) {
            self.full_pass_after_loss();
        }
    }

    /// Steps back to the address just taken (not due yet).
    fn put_back(&mut self) {
        self.next -= 1;
    }
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
    let mut first_pass_ms = 0;
    let mut batch: Vec<[u8; FRAME_LEN]> = Vec::with_capacity(BATCH as usize);
    loop {
        let now = Instant::now();
        if (s.pass == 1 || s.stage == Stage::Settling) && first_pass_ms == 0 {
            first_pass_ms = now.duration_since(start).as_millis() as u64;
        }
        batch.clear();
        // Time spent waiting (a settle, a pass reopened by loss) is no
        // credit for a burst: at most a batch is sent behind the pace.
        if let Some(floor) = now.checked_sub(p.gap * BATCH) {
            s.next_send = s.next_send.max(floor);
        }
        while !s.done && s.next_send <= now && batch.len() < BATCH as usize {
            let Some(i) = s.next_index(&book, len, &expected, (now, retry_gap(&rtts))) else {
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
        first_pass_ms,
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
mod tests {
    use super::*;

    #[test]
    fn the_finish_wait_follows_the_round_trips_within_its_bounds() {
        let ms = Duration::from_millis;
        assert_eq!(finish_wait(&[], Wait::Auto), GRACE, "nothing seen yet");
        assert_eq!(finish_wait(&[ms(1); 50], Wait::Auto), GRACE);
        // The 95th percentile, not the one slow outlier, sets the wait.
        let mut rtts = vec![ms(10); 99];
        rtts.push(ms(400));
        assert_eq!(finish_wait(&rtts, Wait::Auto), ms(40));
        assert_eq!(finish_wait(&[ms(200)], Wait::Auto), AUTO_CAP);
        // A given timeout is honoured as it is, short or long.
        assert_eq!(finish_wait(&rtts, Wait::Fixed(ms(1))), ms(1));
        assert_eq!(finish_wait(&[], Wait::Fixed(ms(900))), ms(900));
        assert_eq!(percentile(&[ms(1), ms(2), ms(3)], 95), ms(3));
        assert_eq!(percentile(&[ms(1), ms(2), ms(3)], 1), ms(1));
    }

    #[test]
    fn a_lossy_pass_earns_another_up_to_the_limit() {
        let mut book = Book::new(3);
        let mut s = Sender::new(Passes::Fixed(2), Instant::now(), 3);
        // Pretend each retry pass finds something: loss.
        let order = drive(&mut s, &mut book, 3, &[], |s, _, _| {
            if s.pass > 0 {
                s.found_this_pass = 1;
            }
        });
        assert_eq!(order.len(), 3 * MAX_TRIES as usize, "{order:?}");
        assert!(s.done);
    }

    /// Every address `s` asks until it is done, `on_ask` told of each
    /// (it may answer it); time is always past any wait.
    fn drive(
        s: &mut Sender,
        book: &mut Book,
        len: usize,
        expected: &[usize],
        mut on_ask: impl FnMut(&mut Sender, &mut Book, usize),
    ) -> Vec<usize> {
        let later = Instant::now() + Duration::from_secs(3600);
        let mut order = Vec::new();
        for _ in 0..100 * len {
            match s.next_index(book, len, expected, (later, Duration::ZERO)) {
                Some(i) => {
                    order.push(i);
                    on_ask(s, book, i);
                }
                None if s.done => return order,
                None => {}
            }
        }
        panic!("never done: {order:?}");
    }

    #[test]
    fn a_check_asks_again_only_the_neighbours_of_hosts_and_those_expected() {
        let mut book = Book::new(20);
        let mut s = Sender::new(Passes::Checked { retry: true }, Instant::now(), 20);
        let order = drive(&mut s, &mut book, 20, &[17, 6], |s, book, i| {
            if s.pass == 0 && [5, 6, 7, 12].contains(&i) {
                book.answer(i);
            }
        });
        let (first, check) = order.split_at(20);
        assert_eq!(first, (0..20).collect::<Vec<_>>(), "every address once");
        // Neighbours 4, 8, 11, 13 and the expected 17 (6 answered already).
        assert_eq!(check, [4, 8, 11, 13, 17]);
        assert!(s.done, "no loss seen: no further pass");
    }

    #[test]
    fn the_check_waits_for_answers_on_their_way() {
        let now = Instant::now();
        let mut book = Book::new(4);
        let mut s = Sender::new(Passes::Checked { retry: true }, now, 4);
        let settle = Duration::from_millis(5);
        for i in 0..4 {
            assert_eq!(s.next_index(&book, 4, &[], (now, settle)), Some(i));
        }
        s.last_request = now;
        assert_eq!(s.next_index(&book, 4, &[], (now, settle)), None);
        assert!(!s.done, "settling, not done");
        assert_eq!(s.next_send, now + settle, "woken when settled");
        // An answer on its way arrives meanwhile: its neighbours are checked.
        book.answer(2);
        assert_eq!(s.next_index(&book, 4, &[], (now + settle, settle)), Some(1));
        assert_eq!(s.next_index(&book, 4, &[], (now + settle, settle)), Some(3));
        assert_eq!(s.next_index(&book, 4, &[], (now + settle, settle)), None);
        assert!(s.done);
    }

    #[test]
    fn a_check_answered_is_loss_and_earns_a_full_pass_when_allowed() {
        for (retry, late) in [(true, false), (true, true), (false, false), (false, true)] {
            let mut book = Book::new(10);
            let mut s = Sender::new(Passes::Checked { retry }, Instant::now(), 10);
            let mut order = drive(&mut s, &mut book, 10, &[], |s, book, i| {
                if s.pass == 0 && i == 3 {
                    book.answer(3);
                }
                if s.pass == 1 && i == 4 && !late {
                    // The check of 4 is answered: it was lost the first time.
                    book.answer(4);
                    s.loss_seen();
                }
            });
            if late {
                // The check's answer comes after the check was sent.
                book.answer(4);
                s.loss_seen();
                order.extend(drive(&mut s, &mut book, 10, &[], |_, _, _| {}));
            }
            let mut want: Vec<usize> = (0..10).collect();
            want.extend([2, 4]);
            if retry {
                want.extend((0..10).filter(|i| ![3, 4].contains(i)));
            }
            assert_eq!(order, want, "retry allowed: {retry}, late answer: {late}");
            assert!(s.done);
        }
    }

    #[test]
    fn a_check_is_bounded_and_spread_however_many_hosts_answered() {
        let mut book = Book::new(1000);
        for i in (0..1000).step_by(3) {
            book.answer(i);
        }
        let checks = book.checks(1000, &[]);
        assert!(
            (MAX_CHECKS / 2..=MAX_CHECKS).contains(&checks.len()),
            "{checks:?}"
        );
        assert!(
            checks[0] < 50 && checks[checks.len() - 1] > 950,
            "{checks:?}"
        );
        // Expected addresses are all checked, beyond the bound.
        let expected: Vec<usize> = (1..1000).step_by(3).collect();
        let checks = book.checks(1000, &expected);
        assert!(expected.iter().all(|i| checks.contains(i)));
        assert!(checks.len() <= expected.len() + MAX_CHECKS, "{checks:?}");
    }

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
