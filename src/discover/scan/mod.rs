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
mod assemble;
mod beside_arp;
pub mod closer;
mod dns_wire;
pub mod icmp;
pub mod iface;
mod join6;
pub mod mdns;
pub mod ndp;
pub mod neighbors;
pub mod packet;
mod plan;
pub mod ports;
mod probes;
pub mod rdns;
pub mod seed;
pub mod syn;
pub mod targets;
mod vendor;

pub use targets::{Targets, V4Ranges};
pub use vendor::vendor;

use std::{
    collections::HashMap,
    net::IpAddr,
    sync::Arc,
    time::{Duration, Instant},
};

use ipnetwork::IpNetwork;

use crate::net::Mac;
use assemble::assemble;
use beside_arp::{ask_mdns, links6_found, names_from_mdns, search_links6};
use plan::{plan, Plan};
use probes::Probes;

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
    /// The longest wait for one address's answer; `None` adapts it to the
    /// round trips seen (see `arp::finish_wait`).
    pub timeout: Option<Duration>,
    /// Tries per address for ARP and ICMP; `None`: two when the second
    /// pass fits the sweep budget, else one (`auto_tries`).
    pub tries: Option<u32>,
    /// Probes (ARP frames, ICMP echoes) sent per second at most; `None`
    /// derives it from the range size (`auto_rate`).
    pub rate: Option<u32>,
    /// ICMP probes in flight at most.
    pub concurrency: usize,
    pub reverse_dns: bool,
    /// Ask each host found by ARP for its mDNS name and service types.
    pub mdns: bool,
    pub allow_large: bool,
    /// Restricts ARP to this interface.
    pub interface: Option<String>,
    /// Use raw ARP on directly attached subnets (needs CAP_NET_RAW).
    pub arp: bool,
    /// Search the links of swept IPv4 segments for the IPv6 addresses of
    /// the hosts found (IPv6 prefix targets are searched regardless).
    pub ipv6: bool,
    /// IPv6 addresses already known (history, the database): solicited,
    /// so a silent host is confirmed rather than guessed.
    pub known6: Arc<Vec<std::net::Ipv6Addr>>,
    /// What earlier probes found of hosts still fresh: a host found at the
    /// same address with the same MAC keeps it and is not probed again.
    pub carried: Arc<HashMap<IpAddr, Carried>>,
    /// Follow-ups unfinished by then are shed (the sweep's interval).
    pub deadline: Option<Instant>,
}

/// What an earlier sweep's follow-ups found of a host.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Carried {
    pub mac: Option<Mac>,
    pub open_ports: Vec<u16>,
    pub ssh_banner: String,
    pub ssh_host_key: String,
    pub dns_name: String,
}

/// ICMP and TCP wait this long for an answer when no timeout is given.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_millis(500);
/// The ICMP witness of a host ARP found waits this long for its echo.
pub const WITNESS_WAIT: Duration = Duration::from_millis(20);
/// Port probes of a found host wait this long at most (their own budget).
pub const PORT_BUDGET: Duration = Duration::from_millis(300);
pub const DEFAULT_TRIES: u32 = 2;
/// The automatic rate never goes below this (a /24's requests take 25 ms,
/// a short burst even on Wi-Fi)...
pub const MIN_AUTO_RATE: u32 = 10_000;
/// ...nor above this (a LAN's broadcast fan-out caps every tool near it).
pub const MAX_AUTO_RATE: u32 = 20_000;
/// A sweep's sending time the automatic rate aims at.
pub const SWEEP_BUDGET: Duration = Duration::from_secs(10);
pub const DEFAULT_CONCURRENCY: usize = 1024;

impl Default for Options {
    fn default() -> Self {
        Options {
            targets: Vec::new(),
            ports: crate::db::mdb_yaml::DEFAULT_PORTS.to_vec(),
            ssh_ports: vec![22],
            timeout: None,
            tries: None,
            rate: None,
            concurrency: DEFAULT_CONCURRENCY,
            reverse_dns: true,
            mdns: true,
            allow_large: false,
            interface: None,
            arp: true,
            ipv6: true,
            known6: Arc::default(),
            carried: Arc::default(),
            deadline: None,
        }
    }
}

/// One live host as seen by one sweep.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Observation {
    pub ip: Option<IpAddr>,
    pub mac: Option<Mac>,
    /// Its IPv6 addresses found by neighbour discovery (`ip` among them
    /// when it has no IPv4).
    pub v6: Vec<std::net::Ipv6Addr>,
    pub vendor: String,
    pub dns_name: String,
    /// What it calls itself over mDNS, cleaned; may be empty.
    pub mdns_name: String,
    /// DNS-SD service types it announces, e.g. `_ipp._tcp`.
    pub services: Vec<String>,
    /// The client hostname of its DHCP lease, cleaned; may be empty.
    pub dhcp_name: String,
    /// When that lease ends (0: no lease seen).
    pub lease_expires_unix: i64,
    pub rtt: Option<Duration>,
    /// "arp", "icmp": which probes it answered.
    pub seen_by: Vec<&'static str>,
    pub open_ports: Vec<u16>,
    pub ssh_banner: String,
    /// The SSH host key it offered (`TYPE BASE64`); empty when none.
    pub ssh_host_key: String,
    /// Further MACs that answered ARP for this address: a conflict.
    pub also_macs: Vec<Mac>,
    /// One of the scanner's own addresses (never probed, never filed).
    pub scanner: bool,
    /// When its ports, banner and name were probed; 0 when they were
    /// carried over from an earlier sweep or shed.
    pub probed_unix: i64,
    /// `snmp:NAME` when a router's table gave it; empty for own probes.
    pub source: String,
    /// The segment it is on when not the scanner's own (a source's).
    pub segment: String,
    /// The switch port a switch learned its MAC on.
    pub switch_port: Option<crate::proto::SwitchPort>,
}

#[derive(Clone, Debug, Default)]
pub struct Counts {
    pub arp: u64,
    /// ICMPv6 echoes to all nodes and neighbour solicitations.
    pub ndp: u64,
    pub icmp: u64,
    pub tcp: u64,
    pub icmp_failed: u64,
}

#[derive(Clone, Debug, Default)]
pub struct Report {
    /// Live hosts in address order.
    pub hosts: Vec<Observation>,
    pub addresses: usize,
    /// IPv6 prefixes searched by neighbour discovery (not counted in
    /// `addresses`).
    pub prefixes6: usize,
    pub sent: Counts,
    /// Things the user should know (e.g. ARP unavailable), one line each.
    pub warnings: Vec<String>,
    /// Targets no route leads to; nothing was sent to them.
    pub unroutable: Vec<String>,
    pub duration: Duration,
    /// Hosts whose follow-ups were cut at the deadline.
    pub shed: usize,
    /// Hosts whose earlier probes were still fresh (not probed again).
    pub carried: usize,
    /// IPv6 neighbour claims dropped by the caps (a flood, or a host
    /// claiming more addresses than one device holds).
    pub ndp_capped: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("nothing to scan: give at least one subnet")]
    NoTargets,
    #[error("{net} has {count} addresses; mdb refuses more than {MAX_ADDRESSES} (a /16) unless told --allow-large")]
    TooLarge { net: String, count: u128 },
    #[error("{net} has {count} addresses, more than mdb ever sweeps ({HARD_MAX_ADDRESSES})")]
    WayTooLarge { net: String, count: u128 },
    #[error("{net}: {count} addresses have no interface on their subnet; ICMP sweeps (routed subnets) take a /16 at most")]
    PingTooLarge { net: String, count: usize },
    #[error("{0} is attached to no interface here: an IPv6 prefix larger than a /112 is searched by neighbour discovery on its own link, never swept or routed")]
    NotAttached6(String),
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
            | Error::PingTooLarge { .. }
            | Error::TooLarge { .. }
            | Error::WayTooLarge { .. }
            | Error::NotAttached6(_)
            | Error::NoInterface(_) => "config",
            Error::Icmp(_) => "icmp",
            Error::Arp { .. } => "arp",
        }
    }
}

/// Tries per address when none is given: a second pass only when it fits
/// the sweep budget (a /24 gets two, a /16 one, as tuned arp-scan runs).
pub fn auto_tries(addresses: usize, rate: u32) -> u32 {
    let two_passes = Duration::from_secs_f64(2.0 * addresses as f64 / f64::from(rate.max(1)));
    if two_passes <= SWEEP_BUDGET {
        DEFAULT_TRIES
    } else {
        1
    }
}

/// The rate for `addresses` when none is given: the range sent within
/// `SWEEP_BUDGET`, between `MIN_AUTO_RATE` and `MAX_AUTO_RATE`.
pub fn auto_rate(addresses: usize) -> u32 {
    let per_second = addresses as u64 / SWEEP_BUDGET.as_secs().max(1);
    per_second.clamp(u64::from(MIN_AUTO_RATE), u64::from(MAX_AUTO_RATE)) as u32
}

/// What a sweep reports as it goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tick {
    /// Probes (ARP requests, first ICMP echoes) sent.
    Sent(u64),
    /// Addresses that answered.
    Found(u64),
}

pub type Progress = Arc<dyn Fn(Tick) + Send + Sync>;

/// The IPv4 addresses up in an earlier sweep (their probes are carried):
/// ARP asks them again when they are silent.
fn expected4(opts: &Options) -> Vec<std::net::Ipv4Addr> {
    opts.carried
        .keys()
        .filter_map(|ip| match ip {
            IpAddr::V4(v4) => Some(*v4),
            IpAddr::V6(_) => None,
        })
        .collect()
}

/// Runs the ARP sweeps of every attached interface at once; each found
/// address goes to `found` as it answers.
async fn arp_sweeps(
    plan: &mut Plan,
    (gap, passes): (Duration, arp::Passes),
    opts: &Options,
    progress: &Progress,
    found: tokio::sync::mpsc::UnboundedSender<(IpAddr, Option<Mac>)>,
    warnings: &mut Vec<String>,
) -> Result<Vec<arp::Outcome>, Error> {
    struct Tell {
        progress: Progress,
        found: tokio::sync::mpsc::UnboundedSender<(IpAddr, Option<Mac>)>,
        teller: seed::Teller,
    }
    impl arp::Observer for Tell {
        fn sent(&self, n: u64) {
            (self.progress)(Tick::Sent(n));
        }
        fn found(&self, reply: &arp::Reply) {
            (self.progress)(Tick::Found(1));
            // A host told to the kernel goes on to its follow-ups once told.
            if !(reply.to_us && self.teller.tell(reply.ip, reply.mac)) {
                let _ = self.found.send((IpAddr::V4(reply.ip), Some(reply.mac)));
            }
        }
    }
    let wait = opts.timeout.map_or(arp::Wait::Auto, arp::Wait::Fixed);
    let expected = expected4(opts);
    let mut runs = Vec::new();
    for (iface, ranges) in std::mem::take(&mut plan.on_link) {
        let sock = match arp::open(&iface) {
            Ok(s) => s,
            Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
                warnings.push(format!(
                    "ARP on {} needs CAP_NET_RAW (run as root or `setcap cap_net_raw+ep mdb`); using ICMP only, so hosts that drop ICMP are missed",
                    iface.name
                ));
                plan.ping.extend(ranges.iter().map(IpAddr::V4));
                continue;
            }
            Err(source) => {
                return Err(Error::Arp {
                    iface: iface.name,
                    source,
                })
            }
        };
        let params = arp::Params {
            gap,
            wait,
            passes,
            expected: expected.clone(),
        };
        let told_found = found.clone();
        let tell = Tell {
            progress: progress.clone(),
            found: found.clone(),
            teller: seed::Teller::start(iface.index, move |ip, mac| {
                let _ = told_found.send((IpAddr::V4(ip), Some(mac)));
            }),
        };
        let name = iface.name.clone();
        runs.push(async move {
            let run = tokio::task::spawn_blocking(move || {
                let outcome = arp::sweep(&sock, &iface, &ranges, &params, &tell);
                let told = tell.teller.finish();
                tracing::debug!(iface = %iface.name, told, "neighbours told the kernel");
                packet::close_later(sock);
                outcome
            });
            match run.await {
                Ok(Ok(o)) => Ok(o),
                Ok(Err(source)) => Err(Error::Arp {
                    iface: name,
                    source,
                }),
                Err(e) => Err(Error::Arp {
                    iface: name,
                    source: std::io::Error::other(e.to_string()),
                }),
            }
        });
    }
    futures::future::join_all(runs).await.into_iter().collect()
}

/// One sweep of every target.
pub async fn sweep(opts: &Options, progress: Progress) -> Result<Report, Error> {
    let started = Instant::now();
    let targets = Targets::of(&opts.targets, opts.allow_large)?;
    let mut report = Report {
        addresses: targets.len(),
        prefixes6: targets.prefixes6.len(),
        ..Default::default()
    };
    let rate = opts.rate.unwrap_or_else(|| auto_rate(targets.len()));
    let gap = Duration::from_secs_f64(1.0 / f64::from(rate.max(1)));
    let tries = opts
        .tries
        .unwrap_or_else(|| auto_tries(targets.len(), rate));
    // ARP checks for loss itself unless told how often to ask (`--tries`).
    let passes = opts.tries.map_or(
        arp::Passes::Checked { retry: tries > 1 },
        arp::Passes::Fixed,
    );
    let mut plan = plan(opts, &targets)?;
    let phase =
        |what: &str| tracing::debug!(ms = started.elapsed().as_millis() as u64, "sweep: {what}");
    phase("planned");
    for u in &plan.unroutable {
        report
            .warnings
            .push(format!("no route to {u}; nothing was sent there"));
    }
    report.unroutable = plan.unroutable.clone();

    // Port probes and names start while ARP is still sweeping.
    let mut follow = Probes::new(opts);
    for (iface, _) in &plan.on_link {
        follow.probe_by_syn(iface, gap, opts);
    }
    let arp_ended = Arc::new(std::sync::OnceLock::new());
    let arp_runs = !plan.on_link.is_empty();
    let six = search_links6(&plan, opts, gap, &arp_ended);
    let (tx, mut found) = tokio::sync::mpsc::unbounded_channel();
    let arp = arp_sweeps(
        &mut plan,
        (gap, passes),
        opts,
        &progress,
        tx,
        &mut report.warnings,
    );
    let icmp_params = icmp::Params {
        gap,
        timeout: opts.timeout.unwrap_or(DEFAULT_TIMEOUT),
        tries,
        concurrency: opts.concurrency,
    };
    // mDNS names are asked as hosts are found, beside their other probes.
    let (to_mdns, mdns) = ask_mdns(gap, opts, &arp_ended);
    let (arp, follow) = {
        let collect = async {
            while let Some((ip, mac)) = found.recv().await {
                // A host whose probes are fresh keeps its names too.
                if let (IpAddr::V4(v4), None, Some(tx)) =
                    (ip, follow.carried_for(ip, mac), &to_mdns)
                {
                    let _ = tx.send(v4);
                }
                follow.start(ip, mac, Some(WITNESS_WAIT));
            }
            drop(to_mdns);
        };
        let (arp, ()) = tokio::join!(arp, collect);
        (arp?, follow)
    };
    if arp_runs {
        let _ = arp_ended.set(Instant::now());
    }
    phase("ARP done");
    let pinged = icmp::sweep(&plan.ping, &icmp_params, progress.clone())
        .await
        .map_err(Error::Icmp)?;
    phase("ICMP of routed addresses done");
    report.sent.icmp += pinged.sent;
    report.sent.icmp_failed += pinged.failed;
    let six = links6_found(six, &mut report.warnings).await;
    phase("IPv6 neighbours done");
    assemble(
        &mut report,
        (arp, six),
        pinged,
        follow,
        &plan,
        opts.deadline,
    )
    .await?;
    names_from_mdns(&mut report, mdns).await;
    phase("ports, names and ICMP witness done");
    report.duration = started.elapsed();
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_skip_network_and_broadcast() {
        let t = Targets::of(&["198.18.0.0/30".parse().unwrap()], false).unwrap();
        assert_eq!(
            t.iter().collect::<Vec<_>>(),
            [
                "198.18.0.1".parse::<IpAddr>().unwrap(),
                "198.18.0.2".parse().unwrap()
            ]
        );
        let t = Targets::of(&["127.0.0.1/32".parse().unwrap()], false).unwrap();
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn huge_ranges_are_refused_unless_allowed() {
        let e = Targets::of(&["198.18.0.0/15".parse().unwrap()], false).unwrap_err();
        assert!(e.to_string().contains("--allow-large"), "{e}");
        assert_eq!(
            Targets::of(&["198.18.0.0/15".parse().unwrap()], true)
                .unwrap()
                .len(),
            131_070
        );
        // A /64 is never listed: it is searched on its link (see `plan`).
        let t = Targets::of(&["2001:db8::/64".parse().unwrap()], false).unwrap();
        assert_eq!((t.len(), t.prefixes6.len()), (0, 1));
        assert!(matches!(Targets::of(&[], false), Err(Error::NoTargets)));
    }

    #[test]
    fn the_rate_and_tries_fit_the_range_into_the_budget() {
        assert_eq!(auto_tries(254, auto_rate(254)), 2);
        assert_eq!(auto_tries(65_534, auto_rate(65_534)), 1);
        assert_eq!(auto_tries(65_534, 20_000), 2);
        assert_eq!(auto_rate(254), MIN_AUTO_RATE);
        assert_eq!(auto_rate(65_534), MIN_AUTO_RATE);
        assert_eq!(auto_rate(1 << 20), 104_857.min(MAX_AUTO_RATE));
        assert_eq!(auto_rate(1 << 24), MAX_AUTO_RATE);
    }
}
