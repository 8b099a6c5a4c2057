//! Discovery sweeps: which hosts answer on the configured subnets, with
//! MAC, vendor, name, round-trip time, open ports and SSH banner.
//!
//! Probes go only to the addresses the caller names; there is no default
//! target. Directly attached IPv4 subnets are swept with ARP first and only
//! hosts that answered are pinged and port-probed, because pinging an absent
//! on-link host makes the kernel ARP for it three times and leaves
//! incomplete neighbour entries. Other subnets (routed, IPv6, loopback) are
//! pinged. The sweep never writes the database; `classify` compares.

pub mod arp;
pub mod icmp;
pub mod iface;
pub mod neighbors;
pub mod ports;

use std::{
    collections::{BTreeMap, HashMap},
    net::{IpAddr, Ipv4Addr},
    sync::Arc,
    time::{Duration, Instant},
};

use ipnetwork::IpNetwork;

use crate::net::Mac;

/// The most addresses a sweep takes without `allow_large` (a /16).
pub const MAX_ADDRESSES: u128 = 65_536;
/// The most addresses a sweep ever takes (a /8).
pub const HARD_MAX_ADDRESSES: u128 = 1 << 24;

#[derive(Clone, Debug)]
pub struct Options {
    pub targets: Vec<IpNetwork>,
    /// TCP ports probed on every live host; empty for none.
    pub ports: Vec<u16>,
    /// Ports whose banner is read as an SSH banner.
    pub ssh_ports: Vec<u16>,
    /// Wait for an answer (ARP round, ICMP echo, TCP connect).
    pub timeout: Duration,
    /// Tries per address for ARP and ICMP.
    pub tries: u32,
    /// Probes (ARP frames, ICMP echoes) sent per second at most.
    pub rate: u32,
    /// ICMP probes in flight at most.
    pub concurrency: usize,
    pub reverse_dns: bool,
    pub allow_large: bool,
    /// Restricts ARP to this interface.
    pub interface: Option<String>,
    /// Use raw ARP on directly attached subnets (needs CAP_NET_RAW).
    pub arp: bool,
}

pub const DEFAULT_TIMEOUT: Duration = Duration::from_millis(500);
pub const DEFAULT_TRIES: u32 = 2;
pub const DEFAULT_RATE: u32 = 2000;
pub const DEFAULT_CONCURRENCY: usize = 1024;

impl Default for Options {
    fn default() -> Self {
        Options {
            targets: Vec::new(),
            ports: crate::db::settings::DEFAULT_PORTS.to_vec(),
            ssh_ports: vec![22],
            timeout: DEFAULT_TIMEOUT,
            tries: DEFAULT_TRIES,
            rate: DEFAULT_RATE,
            concurrency: DEFAULT_CONCURRENCY,
            reverse_dns: true,
            allow_large: false,
            interface: None,
            arp: true,
        }
    }
}

/// One live host as seen by one sweep.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Observation {
    pub ip: Option<IpAddr>,
    pub mac: Option<Mac>,
    pub vendor: String,
    pub dns_name: String,
    pub rtt: Option<Duration>,
    /// "arp", "icmp": which probes it answered.
    pub seen_by: Vec<&'static str>,
    pub open_ports: Vec<u16>,
    pub ssh_banner: String,
}

#[derive(Clone, Debug, Default)]
pub struct Counts {
    pub arp: u64,
    pub icmp: u64,
    pub tcp: u64,
    pub icmp_failed: u64,
}

#[derive(Clone, Debug, Default)]
pub struct Report {
    /// Live hosts in address order.
    pub hosts: Vec<Observation>,
    pub addresses: usize,
    pub sent: Counts,
    /// Things the user should know (e.g. ARP unavailable), one line each.
    pub warnings: Vec<String>,
    pub duration: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("nothing to scan: give at least one subnet")]
    NoTargets,
    #[error("{net} has {count} addresses; mdb refuses more than {MAX_ADDRESSES} (a /16) unless told --allow-large")]
    TooLarge { net: String, count: u128 },
    #[error("{net} has {count} addresses, more than mdb ever sweeps ({HARD_MAX_ADDRESSES})")]
    WayTooLarge { net: String, count: u128 },
    #[error("interface {0} not found or has no IPv4 address and MAC")]
    NoInterface(String),
    #[error("cannot open an ICMP socket ({0}); it needs CAP_NET_RAW or net.ipv4.ping_group_range covering this group")]
    Icmp(std::io::Error),
    #[error("ARP sweep on {iface}: {source}")]
    Arp {
        iface: String,
        source: std::io::Error,
    },
}

impl Error {
    /// Every value of [`Error::metric_label`].
    pub const LABELS: &'static [&'static str] = &["config", "icmp", "arp"];

    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::NoTargets
            | Error::TooLarge { .. }
            | Error::WayTooLarge { .. }
            | Error::NoInterface(_) => "config",
            Error::Icmp(_) => "icmp",
            Error::Arp { .. } => "arp",
        }
    }
}

/// Every address of the targets, in order, without duplicates. IPv4
/// networks lose their network and broadcast addresses (except /31, /32).
pub fn expand(targets: &[IpNetwork], allow_large: bool) -> Result<Vec<IpAddr>, Error> {
    if targets.is_empty() {
        return Err(Error::NoTargets);
    }
    let mut out = std::collections::BTreeSet::new();
    let mut total: u128 = 0;
    for net in targets {
        let count: u128 = match net {
            IpNetwork::V4(n) => 1u128 << (32 - n.prefix()),
            IpNetwork::V6(n) => 1u128
                .checked_shl(128 - n.prefix() as u32)
                .unwrap_or(u128::MAX),
        };
        total = total.saturating_add(count);
        if total > HARD_MAX_ADDRESSES {
            return Err(Error::WayTooLarge {
                net: net.to_string(),
                count,
            });
        }
        if total > MAX_ADDRESSES && !allow_large {
            return Err(Error::TooLarge {
                net: net.to_string(),
                count,
            });
        }
        match net {
            IpNetwork::V4(n) => {
                let (first, last) = (u32::from(n.network()), u32::from(n.broadcast()));
                let (first, last) = if n.prefix() >= 31 {
                    (first, last)
                } else {
                    (first + 1, last - 1)
                };
                out.extend((first..=last).map(|a| IpAddr::V4(a.into())));
            }
            IpNetwork::V6(n) => {
                let first = u128::from(n.network());
                out.extend((0..count).map(|i| IpAddr::V6((first + i).into())));
            }
        }
    }
    Ok(out.into_iter().collect())
}

/// The vendor of a MAC from the IEEE registry; randomised addresses say so.
pub fn vendor(mac: Mac) -> String {
    if mac.is_local() {
        return "(locally administered)".into();
    }
    oui_data::lookup(&mac.to_string())
        .map(|o| o.organization().to_string())
        .unwrap_or_default()
}

/// The reverse-DNS name, if the resolver has one within two seconds.
async fn reverse_dns(ip: IpAddr) -> String {
    let lookup = tokio::task::spawn_blocking(move || dns_lookup::lookup_addr(&ip).ok());
    match tokio::time::timeout(Duration::from_secs(2), lookup).await {
        Ok(Ok(Some(name))) if name != ip.to_string() => name,
        _ => String::new(),
    }
}

pub type Progress = Arc<dyn Fn(u64) + Send + Sync>;

/// One sweep of every target.
pub async fn sweep(opts: &Options, progress: Progress) -> Result<Report, Error> {
    let started = Instant::now();
    let addrs = expand(&opts.targets, opts.allow_large)?;
    let mut report = Report {
        addresses: addrs.len(),
        ..Default::default()
    };
    let gap = Duration::from_secs_f64(1.0 / f64::from(opts.rate.max(1)));

    // Directly attached IPv4 addresses go to ARP, grouped by interface.
    let ifaces = if opts.arp {
        iface::list().unwrap_or_default()
    } else {
        Vec::new()
    };
    if let Some(name) = &opts.interface {
        if !ifaces.iter().any(|i| &i.name == name) {
            return Err(Error::NoInterface(name.clone()));
        }
    }
    let mut on_link: BTreeMap<String, (iface::Interface, Vec<Ipv4Addr>)> = BTreeMap::new();
    let mut ping_only: Vec<IpAddr> = Vec::new();
    // Our own addresses answer no ARP; we know their MAC anyway.
    let own: HashMap<IpAddr, Mac> = ifaces.iter().map(|i| (IpAddr::V4(i.ip), i.mac)).collect();
    for &ip in &addrs {
        let attached = match ip {
            IpAddr::V4(v4) if !v4.is_loopback() => {
                iface::for_address(&ifaces, v4, opts.interface.as_deref())
            }
            _ => None,
        };
        match (attached, ip) {
            // Our own address answers no ARP; ping it like any off-link host.
            (Some(i), IpAddr::V4(v4)) if v4 != i.ip => {
                on_link
                    .entry(i.name.clone())
                    .or_insert_with(|| (i.clone(), Vec::new()))
                    .1
                    .push(v4);
            }
            _ => ping_only.push(ip),
        }
    }

    let mut macs: HashMap<IpAddr, Mac> = HashMap::new();
    let mut arp_rtt: HashMap<IpAddr, Duration> = HashMap::new();
    let mut slowest_arp = Duration::ZERO;
    for (name, (iface, targets)) in on_link {
        let sock = match arp::open(&iface) {
            Ok(s) => s,
            Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
                report.warnings.push(format!(
                    "ARP on {name} needs CAP_NET_RAW (run as root or `setcap cap_net_raw+ep mdb`); using ICMP only, so hosts that drop ICMP are missed"
                ));
                ping_only.extend(targets.iter().map(|a| IpAddr::V4(*a)));
                continue;
            }
            Err(source) => {
                return Err(Error::Arp {
                    iface: name,
                    source,
                })
            }
        };
        let params = arp::Params {
            gap,
            wait: opts.timeout,
            tries: opts.tries,
        };
        let progress = progress.clone();
        let outcome = tokio::task::spawn_blocking(move || {
            arp::sweep(&sock, &iface, &targets, &params, &*progress)
        })
        .await
        .map_err(|e| Error::Arp {
            iface: name.clone(),
            source: std::io::Error::other(e.to_string()),
        })?
        .map_err(|source| Error::Arp {
            iface: name.clone(),
            source,
        })?;
        report.sent.arp += outcome.sent;
        slowest_arp = slowest_arp.max(outcome.slowest);
        for (ip, r) in outcome.replies {
            macs.insert(IpAddr::V4(ip), r.mac);
            arp_rtt.insert(IpAddr::V4(ip), r.rtt);
        }
    }

    // Ping what ARP cannot reach, and the hosts ARP found (for RTT and to
    // tell which of them drop ICMP). Progress counts only the former.
    let arp_found: Vec<IpAddr> = macs.keys().copied().collect();
    let silent: Progress = Arc::new(|_| {});
    let icmp_params = icmp::Params {
        gap,
        timeout: opts.timeout,
        tries: opts.tries,
        concurrency: opts.concurrency,
    };
    // Hosts that just answered ARP are close: wait for their echo replies
    // as long as ARP's slowest reply suggests, not the full timeout.
    let found_params = icmp::Params {
        tries: 1,
        timeout: (slowest_arp * 8).clamp(Duration::from_millis(50), opts.timeout),
        ..icmp_params
    };
    let (a, b) = tokio::join!(
        icmp::sweep(&ping_only, &icmp_params, progress.clone()),
        icmp::sweep(&arp_found, &found_params, silent),
    );
    let (pinged, pinged_found) = (a.map_err(Error::Icmp)?, b.map_err(Error::Icmp)?);
    report.sent.icmp += pinged.sent + pinged_found.sent;
    report.sent.icmp_failed += pinged.failed + pinged_found.failed;

    // Hosts that answered ICMP may have a MAC in the neighbour table.
    let neighbours = neighbors::read();
    let mut live: BTreeMap<IpAddr, Observation> = BTreeMap::new();
    for (&ip, &mac) in &macs {
        let o = live.entry(ip).or_default();
        o.mac = Some(mac);
        o.seen_by.push("arp");
        o.rtt = arp_rtt.get(&ip).copied();
    }
    for (&ip, &rtt) in pinged.rtts.iter().chain(pinged_found.rtts.iter()) {
        let o = live.entry(ip).or_default();
        o.seen_by.push("icmp");
        o.rtt = Some(rtt);
        if o.mac.is_none() {
            o.mac = match ip {
                IpAddr::V4(v4) => neighbours.get(&v4).or_else(|| own.get(&ip)).copied(),
                IpAddr::V6(_) => None,
            };
        }
    }

    // Ports and names of live hosts, a bounded number at a time.
    let limit = Arc::new(tokio::sync::Semaphore::new(64));
    let mut tasks = tokio::task::JoinSet::new();
    for (&ip, _) in live.iter() {
        let (ports, ssh_ports, timeout, rdns) = (
            opts.ports.clone(),
            opts.ssh_ports.clone(),
            opts.timeout.max(Duration::from_millis(300)),
            opts.reverse_dns,
        );
        let limit = limit.clone();
        tasks.spawn(async move {
            let _permit = limit.acquire_owned().await;
            let probe = ports::probe(ip, &ports, &ssh_ports, timeout);
            let name = async {
                if rdns {
                    reverse_dns(ip).await
                } else {
                    String::new()
                }
            };
            let (p, name) = tokio::join!(probe, name);
            (ip, p, name)
        });
    }
    while let Some(r) = tasks.join_next().await {
        let Ok((ip, p, name)) = r else { continue };
        report.sent.tcp += p.sent;
        if let Some(o) = live.get_mut(&ip) {
            o.open_ports = p.open;
            o.ssh_banner = p.ssh_banner;
            o.dns_name = name;
        }
    }
    report.hosts = live
        .into_iter()
        .map(|(ip, mut o)| {
            o.ip = Some(ip);
            o.vendor = o.mac.map(vendor).unwrap_or_default();
            o
        })
        .collect();
    report.duration = started.elapsed();
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expansion_skips_network_and_broadcast() {
        let a = expand(&["198.18.0.0/30".parse().unwrap()], false).unwrap();
        assert_eq!(
            a,
            [
                "198.18.0.1".parse::<IpAddr>().unwrap(),
                "198.18.0.2".parse().unwrap()
            ]
        );
        let a = expand(&["127.0.0.1/32".parse().unwrap()], false).unwrap();
        assert_eq!(a.len(), 1);
    }

    #[test]
    fn huge_ranges_are_refused_unless_allowed() {
        let e = expand(&["198.18.0.0/15".parse().unwrap()], false).unwrap_err();
        assert!(e.to_string().contains("--allow-large"), "{e}");
        assert_eq!(
            expand(&["198.18.0.0/15".parse().unwrap()], true)
                .unwrap()
                .len(),
            131_070
        );
        assert!(matches!(
            expand(&["2001:db8::/64".parse().unwrap()], true),
            Err(Error::WayTooLarge { .. })
        ));
        assert!(matches!(expand(&[], false), Err(Error::NoTargets)));
    }

    #[test]
    fn vendor_knows_raspberry_pi_and_random_macs() {
        assert!(vendor("dc:a6:32:01:02:03".parse().unwrap())
            .to_lowercase()
            .contains("raspberry"));
        assert_eq!(
            vendor("da:a6:32:01:02:03".parse().unwrap()),
            "(locally administered)"
        );
    }
}
