//! Wake-on-LAN: the magic packet (six 0xff bytes, then the MAC sixteen
//! times) in a broadcast Ethernet frame of its own type (0x0842), sent on
//! the link of the machine's own subnet, never routed. Only machines of
//! the database are woken, each a bounded number of times per hour.

use std::{
    collections::{HashMap, VecDeque},
    net::IpAddr,
    time::{Duration, Instant},
};

use crate::{
    discover::scan::{iface, packet},
    net::Mac,
};

pub const ETH_P_WOL: u16 = 0x0842;
/// Wakes per machine per hour at most: a machine that never comes up is
/// not sent a packet every recheck.
pub const MAX_PER_HOUR: usize = 4;
/// How long the runner waits for a woken machine's SSH by default.
pub const DEFAULT_WAKE_TIMEOUT: Duration = Duration::from_secs(180);

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0} has no MAC in the database; a magic packet names the MAC")]
    NoMac(String),
    #[error("{name}: no interface here is on the subnet of {ip}; wake it from the scanner of that segment")]
    NotAttached { name: String, ip: String },
    #[error("{0} has no address: its segment is unknown")]
    NoAddress(String),
    #[error("{0} was woken {MAX_PER_HOUR} times in the last hour; not again yet")]
    TooOften(String),
    #[error("sending the magic packet on {iface}: {source}")]
    Send {
        iface: String,
        source: std::io::Error,
    },
}

/// The magic packet for `mac`.
pub fn magic(mac: Mac) -> [u8; 102] {
    let mut p = [0xffu8; 102];
    for i in 0..16 {
        p[6 + i * 6..12 + i * 6].copy_from_slice(&mac.0);
    }
    p
}

/// The broadcast frame from `from` carrying the magic packet for `target`.
pub fn frame(from: Mac, target: Mac) -> Vec<u8> {
    let mut f = Vec::with_capacity(116);
    f.extend_from_slice(&[0xff; 6]);
    f.extend_from_slice(&from.0);
    f.extend_from_slice(&ETH_P_WOL.to_be_bytes());
    f.extend_from_slice(&magic(target));
    f
}

/// The attached interface (index, name, MAC) of the first of `ips` that
/// lies on one of this host's subnets.
fn attached(ips: &[IpAddr]) -> Option<(u32, String, Mac)> {
    let iface::Local { v4, v6 } = iface::local().unwrap_or_default();
    ips.iter().find_map(|ip| match ip {
        IpAddr::V4(a) => {
            iface::for_address(&v4, *a, None).map(|i| (i.index, i.name.clone(), i.mac))
        }
        IpAddr::V6(a) => v6
            .iter()
            .find(|l| l.prefixes.iter().any(|p| p.contains(*a)))
            .map(|l| (l.index, l.name.clone(), l.mac)),
    })
}

/// Sends the magic packet for machine `name` (its `mac`, its `ips`) on the
/// link of its subnet; returns the interface it went out of.
pub fn send(name: &str, mac: &str, ips: &[String]) -> Result<String, Error> {
    let target: Mac = mac.parse().map_err(|_| Error::NoMac(name.to_string()))?;
    let ips: Vec<IpAddr> = ips.iter().filter_map(|i| i.parse().ok()).collect();
    if ips.is_empty() {
        return Err(Error::NoAddress(name.to_string()));
    }
    let (index, iface, from) = attached(&ips).ok_or_else(|| Error::NotAttached {
        name: name.to_string(),
        ip: ips[0].to_string(),
    })?;
    let sent = packet::open(index, ETH_P_WOL)
        .and_then(|sock| packet::send(&sock, index, ETH_P_WOL, [0xff; 6], &[&frame(from, target)]));
    sent.map_err(|source| Error::Send {
        iface: iface.clone(),
        source,
    })?;
    tracing::info!(machine = name, mac = %target, iface = %iface, "Wake-on-LAN magic packet sent");
    Ok(iface)
}

/// [`send`] for a machine of the database, off the async threads (it
/// opens a raw socket and lists the interfaces).
pub async fn send_machine(m: &crate::proto::Machine) -> Result<String, Error> {
    let (name, mac, ips) = (m.name.clone(), m.mac.clone(), m.ips.clone());
    tokio::task::spawn_blocking(move || send(&name, &mac, &ips))
        .await
        .unwrap_or_else(|e| {
            Err(Error::Send {
                iface: String::new(),
                source: std::io::Error::other(e.to_string()),
            })
        })
}

/// Wakes per machine within the last hour.
#[derive(Debug, Default)]
pub struct Limiter {
    sent: HashMap<String, VecDeque<Instant>>,
}

impl Limiter {
    /// Counts a wake of `name` now, or refuses it past [`MAX_PER_HOUR`].
    pub fn allow(&mut self, name: &str, now: Instant) -> Result<(), Error> {
        let hour = Duration::from_secs(3600);
        self.sent
            .retain(|_, q| q.back().is_some_and(|t| now.duration_since(*t) < hour));
        let q = self.sent.entry(name.to_string()).or_default();
        while q.front().is_some_and(|t| now.duration_since(*t) >= hour) {
            q.pop_front();
        }
        if q.len() >= MAX_PER_HOUR {
            return Err(Error::TooOften(name.to_string()));
        }
        q.push_back(now);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_magic_packet_is_six_ff_then_the_mac_sixteen_times() {
        let mac: Mac = "00:16:3e:00:07:01".parse().unwrap();
        let f = frame("02:00:00:00:00:01".parse().unwrap(), mac);
        assert_eq!(f.len(), 14 + 102);
        assert_eq!(&f[0..6], &[0xff; 6]);
        assert_eq!(&f[12..14], &[0x08, 0x42]);
        assert_eq!(&f[14..20], &[0xff; 6]);
        for i in 0..16 {
            assert_eq!(&f[20 + i * 6..26 + i * 6], &mac.0);
        }
    }

    #[test]
    fn a_machine_is_woken_a_few_times_an_hour_at_most() {
        let mut l = Limiter::default();
        let t0 = Instant::now();
        for _ in 0..MAX_PER_HOUR {
            l.allow("pc", t0).unwrap();
        }
        assert!(matches!(l.allow("pc", t0), Err(Error::TooOften(_))));
        l.allow("other", t0).unwrap();
        l.allow("pc", t0 + Duration::from_secs(3601)).unwrap();
    }
}
