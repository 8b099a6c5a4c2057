//! Tells the kernel the MACs a sweep's ARP found, before the follow-ups
//! (mDNS, the ICMP witness, an SSH banner) talk to those hosts: the kernel
//! ignores replies to requests it did not send, so it would broadcast a
//! request of its own for every host found (on a /24 of 100 hosts, 100
//! broadcasts more than the sweep's 254, and a round trip before each
//! host's first probe).
//!
//! Only what the kernel would have learnt itself is told: a reply to a
//! request of this sweep, addressed in full to the scanner, from a plain
//! unicast MAC (`arp::is_reply_to_us`); a broadcast, gratuitous or early
//! reply is not. An entry is only ever added, never changed: one the
//! kernel holds already (an operator's permanent one, one being resolved)
//! is left as it is. It is added as stale, so the kernel confirms it by a
//! unicast probe of its own once used, as it does any entry it learnt.

use std::{
    io,
    net::Ipv4Addr,
    os::fd::AsRawFd,
    sync::{
        atomic::{AtomicBool, Ordering},
        Mutex,
    },
    time::{Duration, Instant},
};

use super::neighbors::{netlink, NDA_DST, NDA_LLADDR, NLMSG_ERROR, RTM_NEWNEIGH};
use crate::net::Mac;

const NUD_STALE: u16 = 0x04;
/// nlmsghdr (16), ndmsg (12), NDA_DST (8), NDA_LLADDR (10, padded to 12).
const NEW_NEIGH_LEN: usize = 48;

/// Entries this process adds per `BUDGET_WINDOW` at most, whatever the
/// sweeps, interfaces and addresses: a quarter of the kernel's default
/// table limit (gc_thresh3, 1024) and half the size past which it starts
/// evicting (gc_thresh2), so a host answering for a whole range cannot
/// crowd out the entries the host itself needs. Past it, the kernel
/// resolves hosts itself, as it did before.
pub const MAX_SEEDS: usize = 256;
pub const BUDGET_WINDOW: Duration = Duration::from_secs(60);

/// The process's budget: when its window started, and what it has spent.
static BUDGET: Mutex<Option<(Instant, usize)>> = Mutex::new(None);

/// Takes one add from the budget, if any is left in this window.
fn take_turn(now: Instant) -> bool {
    let mut budget = BUDGET.lock().unwrap_or_else(|p| p.into_inner());
    let (start, spent) = budget.get_or_insert((now, 0));
    if now.saturating_duration_since(*start) >= BUDGET_WINDOW {
        (*start, *spent) = (now, 0);
    }
    if *spent >= MAX_SEEDS {
        return false;
    }
    *spent += 1;
    true
}

/// Gives back an add the kernel did not make (it had an entry).
fn give_back() {
    let mut budget = BUDGET.lock().unwrap_or_else(|p| p.into_inner());
    if let Some((_, spent)) = budget.as_mut() {
        *spent = spent.saturating_sub(1);
    }
}

/// Says once per process that the kernel is not told (the reason).
static REFUSAL_SAID: AtomicBool = AtomicBool::new(false);

/// Adds entries on one thread (the teller's): its own state is plain.
struct Seeder {
    sock: Option<socket2::Socket>,
    index: u32,
    stopped: bool,
    told: usize,
}

impl Seeder {
    /// A seeder for interface `index`; without the socket (no
    /// CAP_NET_ADMIN is only found at the first add), it does nothing.
    fn new(index: u32) -> Seeder {
        let sock = netlink()
            .and_then(|s| s.set_nonblocking(true).map(|()| s))
            .ok();
        Seeder {
            sock,
            index,
            stopped: false,
            told: 0,
        }
    }

    /// Adds `ip` at `mac`, unless the kernel has an entry for it or the
    /// budget is spent; a refusal ends the seeding (the kernel then
    /// resolves hosts itself).
    fn add(&mut self, ip: Ipv4Addr, mac: Mac) {
        let Some(sock) = self.sock.as_ref().filter(|_| !self.stopped) else {
            return;
        };
        if !take_turn(Instant::now()) {
            return;
        }
        let msg = new_neigh(self.index, ip, mac);
        // SAFETY: msg is valid for reads of its length.
        let rc = unsafe { libc::send(sock.as_raw_fd(), msg.as_ptr().cast(), msg.len(), 0) };
        if rc < 0 {
            self.stop(io::Error::last_os_error());
            return;
        }
        // Answers are only errors (no ack was asked for), queued before
        // send returned: one per add at most.
        let mut buf = [0u8; 256];
        while let Ok(n) = super::packet::recv(sock, &mut buf, libc::MSG_DONTWAIT) {
            match nl_error(&buf[..n]) {
                Some(libc::EEXIST) => return give_back(),
                Some(errno) => return self.stop(io::Error::from_raw_os_error(errno)),
                None => {}
            }
        }
        self.told += 1;
    }

    fn stop(&mut self, error: io::Error) {
        self.stopped = true;
        if !REFUSAL_SAID.swap(true, Ordering::Relaxed) {
            tracing::info!(
                %error,
                "the kernel is not told the MACs a sweep finds (it needs CAP_NET_ADMIN and room in its table); it asks for them itself"
            );
        }
    }
}

/// Hosts waiting to be told at most; past it a host goes to its
/// follow-ups untold (the kernel asks for it itself).
const TELL_QUEUE: usize = 1024;

/// Tells the kernel on a thread of its own, then hands each host on
/// (`then`), so the follow-ups find it told: the kernel handles a
/// neighbour add under a lock other work holds at times, and the ARP
/// sweep's loop must not wait for it.
pub struct Teller {
    queue: Option<std::sync::mpsc::SyncSender<(Ipv4Addr, Mac)>>,
    thread: Option<std::thread::JoinHandle<usize>>,
}

impl Teller {
    pub fn start(index: u32, then: impl Fn(Ipv4Addr, Mac) + Send + 'static) -> Teller {
        let (queue, hosts) = std::sync::mpsc::sync_channel::<(Ipv4Addr, Mac)>(TELL_QUEUE);
        let thread = std::thread::Builder::new()
            .name("mdb-tell".into())
            .spawn(move || {
                let mut seeder = Seeder::new(index);
                for (ip, mac) in hosts {
                    seeder.add(ip, mac);
                    then(ip, mac);
                }
                seeder.told
            });
        match thread {
            Ok(thread) => Teller {
                queue: Some(queue),
                thread: Some(thread),
            },
            Err(_) => Teller {
                queue: None,
                thread: None,
            },
        }
    }

    /// Queues `ip` at `mac` to be told and handed on; `false`: not queued
    /// (the queue is full or the thread never started), hand it on now.
    pub fn tell(&self, ip: Ipv4Addr, mac: Mac) -> bool {
        self.queue
            .as_ref()
            .is_some_and(|q| q.try_send((ip, mac)).is_ok())
    }

    /// Waits for the queue to be told and handed on: how many the kernel
    /// took.
    pub fn finish(mut self) -> usize {
        self.queue = None;
        self.thread.take().and_then(|t| t.join().ok()).unwrap_or(0)
    }
}

/// RTM_NEWNEIGH for `ip` at `mac` on `index`: created only if absent
/// (NLM_F_EXCL), stale.
fn new_neigh(index: u32, ip: Ipv4Addr, mac: Mac) -> [u8; NEW_NEIGH_LEN] {
    let mut m = [0u8; NEW_NEIGH_LEN];
    m[0..4].copy_from_slice(&(NEW_NEIGH_LEN as u32).to_ne_bytes());
    m[4..6].copy_from_slice(&RTM_NEWNEIGH.to_ne_bytes());
    let flags = (libc::NLM_F_REQUEST | libc::NLM_F_CREATE | libc::NLM_F_EXCL) as u16;
    m[6..8].copy_from_slice(&flags.to_ne_bytes());
    m[16] = libc::AF_INET as u8;
    m[20..24].copy_from_slice(&(index as i32).to_ne_bytes());
    m[24..26].copy_from_slice(&NUD_STALE.to_ne_bytes());
    m[28..30].copy_from_slice(&8u16.to_ne_bytes());
    m[30..32].copy_from_slice(&NDA_DST.to_ne_bytes());
    m[32..36].copy_from_slice(&ip.octets());
    m[36..38].copy_from_slice(&10u16.to_ne_bytes());
    m[38..40].copy_from_slice(&NDA_LLADDR.to_ne_bytes());
    m[40..46].copy_from_slice(&mac.0);
    m
}

/// The errno of a netlink error message (0 is an ack, not an error).
fn nl_error(msg: &[u8]) -> Option<i32> {
    if msg.len() < 20 || u16::from_ne_bytes([msg[4], msg[5]]) != NLMSG_ERROR {
        return None;
    }
    let code = i32::from_ne_bytes([msg[16], msg[17], msg[18], msg[19]]);
    (code < 0).then_some(-code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seed_is_a_stale_entry_created_only_if_absent() {
        let mac = crate::net::Mac([2, 0, 0, 0, 0, 0x11]);
        let m = new_neigh(7, "198.18.0.11".parse().unwrap(), mac);
        let u16_at = |i: usize| u16::from_ne_bytes([m[i], m[i + 1]]);
        assert_eq!(
            u32::from_ne_bytes([m[0], m[1], m[2], m[3]]) as usize,
            m.len()
        );
        assert_eq!(u16_at(4), RTM_NEWNEIGH);
        let flags = u16_at(6);
        assert_eq!(flags & libc::NLM_F_EXCL as u16, libc::NLM_F_EXCL as u16);
        assert_eq!(flags & libc::NLM_F_REPLACE as u16, 0, "never replaces");
        assert_eq!(m[16], libc::AF_INET as u8);
        assert_eq!(i32::from_ne_bytes([m[20], m[21], m[22], m[23]]), 7);
        assert_eq!(u16_at(24), NUD_STALE);
        assert_eq!((u16_at(28), u16_at(30)), (8, NDA_DST));
        assert_eq!(m[32..36], [198, 18, 0, 11]);
        assert_eq!((u16_at(36), u16_at(38)), (10, NDA_LLADDR));
        assert_eq!(m[40..46], mac.0);
    }

    #[test]
    fn netlink_errors_are_told_from_acks() {
        let msg = |kind: u16, code: i32| {
            let mut m = vec![0u8; 36];
            m[4..6].copy_from_slice(&kind.to_ne_bytes());
            m[16..20].copy_from_slice(&code.to_ne_bytes());
            m
        };
        assert_eq!(nl_error(&msg(NLMSG_ERROR, -libc::EPERM)), Some(libc::EPERM));
        assert_eq!(nl_error(&msg(NLMSG_ERROR, 0)), None, "an ack");
        assert_eq!(
            nl_error(&msg(super::super::neighbors::NLMSG_DONE, -1)),
            None
        );
        assert_eq!(nl_error(&[2, 0]), None, "short");
    }

    #[test]
    fn the_budget_is_the_processs_and_refills_with_its_window() {
        let t0 = Instant::now();
        *BUDGET.lock().unwrap() = None;
        assert!((0..MAX_SEEDS).all(|_| take_turn(t0)));
        assert!(!take_turn(t0), "spent");
        give_back();
        assert!(take_turn(t0 + Duration::from_secs(1)), "one given back");
        assert!(!take_turn(t0 + BUDGET_WINDOW - Duration::from_millis(1)));
        assert!(take_turn(t0 + BUDGET_WINDOW), "a new window");
    }
}
