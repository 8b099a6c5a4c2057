//! Routers' neighbour tables as hosts of a sweep: each SNMP source is read
//! beside the scanner's own probes, and its rows become observations of
//! the segment it serves. A source that fails gives nothing: its hosts
//! stay as last seen, marked stale, never emptied.

use std::{
    collections::{BTreeMap, HashMap},
    net::IpAddr,
    time::{Duration, Instant},
};

use ipnetwork::IpNetwork;

use crate::{
    discover::scan::{self, Observation},
    net::Mac,
    proto::SwitchPort,
    snmp::{self, Neighbour, Source},
};

/// Addresses of each family one MAC may hold in a table.
const MAX_PER_MAC: usize = 16;

/// One read of one source in one sweep: its neighbour table, or its
/// forwarding table.
#[derive(Debug)]
pub struct Read {
    /// The source's name (`scan.snmp`).
    pub name: String,
    pub what: Table,
    pub took: Duration,
    pub outcome: Result<Counted, snmp::Error>,
}

/// Which table a read was of.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Table {
    Neighbours,
    Ports,
}

impl Table {
    pub fn word(self) -> &'static str {
        match self {
            Table::Neighbours => "neighbour table",
            Table::Ports => "forwarding table",
        }
    }
}

/// What a good read gave.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Counted {
    /// Hosts it made, or devices it located on a port.
    pub hosts: usize,
    /// Rows the agent sent that name no entry (see [`snmp::Table`]).
    pub rejected: usize,
    /// Rows outside the subnets it serves, in those the scanner sweeps
    /// itself, or older than `max_age`; MACs on uplinks.
    pub dropped: usize,
}

type Timed<T> = (Instant, Result<T, snmp::Error>);

/// What each source gave this sweep (None: that table is not read).
pub struct Fetched {
    table: Option<Timed<snmp::Table>>,
    fdb: Option<Timed<snmp::ports::Fdb>>,
}

/// Every source read at once, each within its own deadline and the
/// sweep's (`until`).
pub async fn read_all(sources: &[Source], until: Option<Instant>) -> Vec<Fetched> {
    futures::future::join_all(sources.iter().map(|s| async move {
        let table = async {
            if s.serves.is_empty() {
                return None;
            }
            Some(ended(snmp::neighbours(s, until).await))
        };
        let fdb = async {
            s.ports.as_ref()?;
            Some(ended(snmp::ports(s, until).await))
        };
        let (table, fdb) = tokio::join!(table, fdb);
        Fetched { table, fdb }
    }))
    .await
}

fn ended<T>(r: Result<T, snmp::Error>) -> Timed<T> {
    (Instant::now(), r)
}

/// Adds each good neighbour read's hosts to `report` and their subnets to
/// `swept` (what the sweep covered, so that a host gone from a table is
/// missed), then puts each host on the port a switch learned its MAC on.
/// `own` is what the scanner swept itself: its answers stand over a table.
pub fn merge(
    report: &mut scan::Report,
    swept: &mut Vec<IpNetwork>,
    sources: &[Source],
    fetched: Vec<Fetched>,
    started: Instant,
) -> Vec<Read> {
    let own = swept.clone();
    let mut out = Vec::with_capacity(sources.len());
    let mut located: HashMap<Mac, (SwitchPort, usize)> = HashMap::new();
    for (source, f) in sources.iter().zip(fetched) {
        let read = |what, ended: Instant, outcome| Read {
            name: source.name.clone(),
            what,
            took: ended.saturating_duration_since(started),
            outcome,
        };
        if let Some((ended, result)) = f.table {
            let outcome = result.map(|table| {
                let (hosts, dropped) = observations(source, &table.neighbours, &own, report);
                let counted = Counted {
                    hosts: hosts.len(),
                    rejected: table.rejected,
                    dropped,
                };
                report.hosts.extend(hosts);
                for n in &source.serves {
                    if !swept.contains(n) {
                        swept.push(*n);
                    }
                }
                counted
            });
            out.push(read(Table::Neighbours, ended, outcome));
        }
        if let (Some((ended, result)), Some(rules)) = (f.fdb, &source.ports) {
            let outcome = result.map(|fdb| locate(source, &fdb, rules, &mut located));
            out.push(read(Table::Ports, ended, outcome));
        }
    }
    for o in report.hosts.iter_mut() {
        if let Some((p, _)) = o.mac.and_then(|m| located.get(&m)) {
            o.switch_port = Some(p.clone());
        }
    }
    out
}

/// One switch's ports for the MACs it learned. A MAC two switches place
/// goes to the port with fewer MACs (the other is a trunk no LLDP told
/// of); on a tie, to the switch configured first.
fn locate(
    source: &Source,
    fdb: &snmp::ports::Fdb,
    rules: &snmp::PortRules,
    located: &mut HashMap<Mac, (SwitchPort, usize)>,
) -> Counted {
    let at = snmp::ports::locate(fdb, rules.uplink_macs, &rules.uplinks);
    let hosts = at.placed.len();
    for (mac, (port, vlan, crowd)) in at.placed {
        let better = located.get(&mac).is_none_or(|(_, c)| crowd < *c);
        if better {
            let place = SwitchPort {
                switch: source.name.clone(),
                port,
                vlan,
            };
            located.insert(mac, (place, crowd));
        }
    }
    Counted {
        hosts,
        rejected: fdb.rejected,
        dropped: at.behind_uplinks.len() + at.ambiguous,
    }
}

/// The sources whose reads failed this sweep.
#[derive(Debug, Default)]
pub struct Failed {
    /// Neighbour tables (`snmp:NAME`): their hosts are kept, stale.
    pub tables: Vec<String>,
    /// Forwarding tables (NAME): the ports they placed stand.
    pub switches: Vec<String>,
}

/// Logs and counts each read; gives the sources whose neighbour table
/// failed (a forwarding table that fails only leaves ports as they were).
pub fn note(reads: &[Read], metrics: &super::SweepMetrics) -> Failed {
    let mut failed = Failed::default();
    for r in reads {
        let tag = snmp::tag(&r.name);
        let took_ms = r.took.as_millis() as u64;
        let what = r.what.word();
        match &r.outcome {
            Ok(c) => tracing::info!(
                source = %tag,
                hosts = c.hosts,
                rejected = c.rejected,
                dropped = c.dropped,
                took_ms,
                "{what} read"
            ),
            Err(e) => {
                let kept = match r.what {
                    Table::Neighbours => "its hosts kept as last seen",
                    Table::Ports => "ports kept as last known",
                };
                tracing::warn!(source = %tag, took_ms, "{what} not read, {kept}: {e}");
                match r.what {
                    Table::Neighbours => failed.tables.push(tag.clone()),
                    Table::Ports => failed.switches.push(r.name.clone()),
                }
            }
        }
        let (result, hosts) = match &r.outcome {
            Ok(c) => ("ok", Some(c.hosts)),
            Err(e) => (e.label(), None),
        };
        metrics.source_read(
            &tag,
            r.what == Table::Ports,
            result,
            hosts,
            r.took.as_secs_f64(),
        );
    }
    failed
}

/// A table's neighbours as observations, one per IPv4 address of a MAC
/// (IPv6 addresses joined to its first), or one per MAC known only by
/// IPv6; with how many rows were dropped.
fn observations(
    source: &Source,
    neighbours: &[Neighbour],
    own: &[IpNetwork],
    report: &scan::Report,
) -> (Vec<Observation>, usize) {
    let max_age = source
        .max_age
        .map(|a| (a.as_millis() / 10).min(u32::MAX as u128) as u32);
    // The scanner's own answers stand: an address or a MAC it saw itself
    // is never taken from a table (a VLAN subinterface shares its
    // parent's MAC; a forger would claim a seen host's).
    let taken: std::collections::HashSet<IpAddr> = report
        .hosts
        .iter()
        .flat_map(|o| o.ip.into_iter().chain(o.v6.iter().map(|a| IpAddr::V6(*a))))
        .collect();
    let seen_macs: std::collections::HashSet<Mac> = report
        .hosts
        .iter()
        .flat_map(|o| o.mac.into_iter().chain(o.also_macs.iter().copied()))
        .collect();
    let mut by_mac: BTreeMap<Mac, (Vec<IpAddr>, Vec<std::net::Ipv6Addr>)> = BTreeMap::new();
    let mut dropped = 0;
    for n in neighbours {
        let served = source.serves.iter().any(|s| s.contains(n.ip));
        let link_local = matches!(n.ip, IpAddr::V6(a) if a.is_unicast_link_local());
        let fresh = match (n.age_centis, max_age) {
            (Some(age), Some(max)) => age <= max,
            _ => true,
        };
        let ours = own.iter().any(|s| s.contains(n.ip))
            || taken.contains(&n.ip)
            || seen_macs.contains(&n.mac);
        if !fresh || ours || !(served || link_local) {
            dropped += 1;
            continue;
        }
        let entry = by_mac.entry(n.mac).or_default();
        let held = match n.ip {
            IpAddr::V6(_) => entry.1.len(),
            IpAddr::V4(_) => entry.0.len(),
        };
        // One device holds a few addresses; a MAC claiming more is a
        // flood, bounded as neighbour discovery bounds it.
        if held >= MAX_PER_MAC {
            dropped += 1;
            continue;
        }
        match n.ip {
            IpAddr::V6(a) => entry.1.push(a),
            v4 => entry.0.push(v4),
        }
    }
    let mut out = Vec::new();
    for (mac, (mut v4, mut v6)) in by_mac {
        v4.sort_unstable();
        v4.dedup();
        v6.sort_unstable();
        v6.dedup();
        // Link-local addresses say only that a device of that MAC is on
        // some link of the router: alone they make no host.
        let primary6 = v6.iter().find(|a| !a.is_unicast_link_local()).copied();
        let firsts: Vec<IpAddr> = match (v4.is_empty(), primary6) {
            (false, _) => v4,
            (true, Some(a)) => vec![IpAddr::V6(a)],
            (true, None) => {
                dropped += v6.len();
                continue;
            }
        };
        for (i, ip) in firsts.into_iter().enumerate() {
            out.push(Observation {
                ip: Some(ip),
                mac: Some(mac),
                v6: if i == 0 { v6.clone() } else { Vec::new() },
                vendor: scan::vendor(mac),
                seen_by: vec!["snmp"],
                source: source.tag(),
                segment: source.segment.clone(),
                ..Observation::default()
            });
        }
    }
    (out, dropped)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source() -> Source {
        Source {
            name: "gw".into(),
            address: "198.18.1.1:161".parse().unwrap(),
            credentials: snmp::Credentials::V2c {
                community: crate::secret::Secret::new("c"),
            },
            segment: "guest".into(),
            serves: vec![
                "198.18.2.0/24".parse().unwrap(),
                "2001:db8:2::/64".parse().unwrap(),
            ],
            ports: None,
            timeout: Duration::from_secs(1),
            retries: 0,
            deadline: Duration::from_secs(2),
            max_age: Some(Duration::from_secs(60)),
        }
    }

    fn n(ip: &str, mac: u8, age: Option<u32>) -> Neighbour {
        Neighbour {
            ip: ip.parse().unwrap(),
            mac: Mac([2, 0, 0, 0, 0, mac]),
            if_index: 3,
            age_centis: age,
        }
    }

    #[test]
    fn rows_become_hosts_of_the_sources_segment_and_only_served_ones() {
        let rows = [
            n("198.18.2.10", 1, Some(6000)),
            n("2001:db8:2::10", 1, None),
            n("fe80::1", 1, None),
            n("2001:db8:2::20", 2, None),
            n("fe80::3", 3, None),
            n("198.18.2.30", 4, Some(6001)),
            n("198.18.0.9", 5, None),
            n("203.0.113.7", 6, None),
        ];
        let own: Vec<IpNetwork> = vec![
            "198.18.0.0/24".parse().unwrap(),
            "198.18.2.96/28".parse().unwrap(),
        ];
        let mut rows = rows.to_vec();
        // served, but in a subnet the scanner sweeps itself
        rows.push(n("198.18.2.100", 7, None));
        // an address, and a MAC, the scanner saw itself
        rows.push(n("198.18.2.40", 8, None));
        rows.push(n("198.18.2.41", 9, None));
        let report = scan::Report {
            hosts: vec![
                Observation {
                    ip: Some("198.18.2.40".parse().unwrap()),
                    mac: Some(Mac([2, 0, 0, 0, 0, 0x40])),
                    ..Observation::default()
                },
                Observation {
                    ip: Some("198.18.0.41".parse().unwrap()),
                    mac: Some(Mac([2, 0, 0, 0, 0, 9])),
                    ..Observation::default()
                },
            ],
            ..scan::Report::default()
        };
        let (hosts, dropped) = observations(&source(), &rows, &own, &report);
        let ips: Vec<String> = hosts.iter().map(|o| o.ip.unwrap().to_string()).collect();
        assert_eq!(ips, ["198.18.2.10", "2001:db8:2::20"]);
        assert_eq!(hosts[0].v6.len(), 2, "its IPv6 addresses joined to it");
        assert_eq!(hosts[0].source, "snmp:gw");
        assert_eq!(hosts[0].segment, "guest");
        assert_eq!(hosts[0].seen_by, ["snmp"]);
        // a link-local alone, too old, the scanner's own subnet (twice),
        // unserved, the scanner's own address and MAC
        assert_eq!(dropped, 7);
    }

    #[test]
    fn one_mac_holds_sixteen_addresses_of_a_family_at_most() {
        let rows: Vec<Neighbour> = (1..=40)
            .map(|i| n(&format!("198.18.2.{i}"), 1, None))
            .collect();
        let (hosts, dropped) = observations(&source(), &rows, &[], &scan::Report::default());
        assert_eq!((hosts.len(), dropped), (MAX_PER_MAC, 40 - MAX_PER_MAC));
    }

    #[test]
    fn a_failed_forwarding_read_names_its_switch_and_a_failed_table_its_source() {
        let metrics = super::super::SweepMetrics::register(&crate::metrics::registry());
        let read = |what, outcome| Read {
            name: "gw".into(),
            what,
            took: Duration::from_millis(5),
            outcome,
        };
        let failed = note(
            &[
                read(Table::Ports, Err(snmp::Error::Flood)),
                read(Table::Neighbours, Ok(Counted::default())),
            ],
            &metrics,
        );
        assert_eq!(failed.switches, ["gw"], "the name ports carry");
        assert!(failed.tables.is_empty());
        let failed = note(
            &[read(Table::Neighbours, Err(snmp::Error::Flood))],
            &metrics,
        );
        assert_eq!(
            (failed.tables, failed.switches.len()),
            (vec!["snmp:gw".to_string()], 0)
        );
    }

    #[test]
    fn a_failed_read_adds_nothing_and_covers_nothing() {
        let mut report = scan::Report::default();
        let mut swept: Vec<IpNetwork> = vec!["198.18.0.0/24".parse().unwrap()];
        let t0 = Instant::now();
        let reads = vec![Fetched {
            table: Some((t0, Err(snmp::Error::Timeout(Duration::from_secs(2))))),
            fdb: None,
        }];
        let out = merge(&mut report, &mut swept, &[source()], reads, t0);
        assert!(report.hosts.is_empty());
        assert_eq!(swept.len(), 1, "its subnets are not swept: no host missed");
        assert_eq!(out[0].outcome.as_ref().unwrap_err().label(), "timeout");
        let fdb = snmp::ports::Fdb {
            learned: vec![snmp::ports::Learned {
                mac: Mac([2, 0, 0, 0, 0, 1]),
                port: 3,
                vlan: 10,
            }],
            names: [(3, "p0".to_string())].into(),
            ..Default::default()
        };
        let good = vec![Fetched {
            table: Some((
                t0,
                Ok(snmp::Table {
                    neighbours: vec![n("198.18.2.10", 1, None)],
                    rejected: 2,
                }),
            )),
            fdb: Some((t0, Ok(fdb))),
        }];
        let mut switch = source();
        switch.ports = Some(snmp::PortRules {
            uplink_macs: 8,
            uplinks: Vec::new(),
        });
        let out = merge(&mut report, &mut swept, &[switch], good, t0);
        assert_eq!(swept.len(), 3);
        assert_eq!(report.hosts.len(), 1);
        assert_eq!(out[0].outcome.as_ref().unwrap().rejected, 2);
        assert_eq!(out[1].what, Table::Ports);
        let port = report.hosts[0].switch_port.as_ref().expect("placed");
        assert_eq!(
            (port.switch.as_str(), port.port.as_str(), port.vlan),
            ("gw", "p0", 10)
        );
    }
}
