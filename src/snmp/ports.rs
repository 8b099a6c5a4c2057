//! Which switch port each MAC is on: the forwarding table (Q-BRIDGE-MIB
//! `dot1qTpFdbTable`, else BRIDGE-MIB `dot1dTpFdbTable`), bridge ports
//! named through `dot1dBasePortIfIndex` and IF-MIB `ifName`, and LLDP-MIB
//! neighbours that tell a port to another switch. Pure functions over
//! what an agent sent, as [`super::table`] is.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use super::table::Cell;
use crate::net::Mac;

/// `dot1qTpFdbEntry`: index fdbId (the VLAN) . MAC; columns 2 port, 3 status.
pub const Q_FDB_ENTRY: &[u32] = &[1, 3, 6, 1, 2, 1, 17, 7, 1, 2, 2, 1];
/// `dot1dTpFdbEntry`: index MAC; columns 2 port, 3 status.
pub const FDB_ENTRY: &[u32] = &[1, 3, 6, 1, 2, 1, 17, 4, 3, 1];
/// `dot1dBasePortEntry`: index bridge port; column 2 ifIndex.
pub const BASE_PORT_ENTRY: &[u32] = &[1, 3, 6, 1, 2, 1, 17, 1, 4, 1];
/// `ifXEntry`: index ifIndex; column 1 ifName.
pub const IF_X_ENTRY: &[u32] = &[1, 3, 6, 1, 2, 1, 31, 1, 1, 1];
/// `lldpRemEntry`: index timeMark . local port . remote index; column 12
/// the capabilities it has enabled.
pub const LLDP_REM_ENTRY: &[u32] = &[1, 0, 8802, 1, 1, 2, 1, 4, 1, 1];

/// A port name kept at most this long (an agent's text).
const MAX_NAME: usize = 64;
/// `dot1qTpFdbStatus` / `dot1dTpFdbStatus`: invalid(2), self(4).
const STATUS_INVALID: i64 = 2;
const STATUS_SELF: i64 = 4;
/// LldpSystemCapabilitiesMap bit 2, bridge (bit 0 is the first octet's top).
const CAP_BRIDGE: u8 = 0x20;

/// One MAC learned on a port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Learned {
    pub mac: Mac,
    /// The bridge port's number.
    pub port: u32,
    /// 0 when the table does not say (BRIDGE-MIB).
    pub vlan: u32,
}

/// What a switch's tables say, with what they held that was no entry.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Fdb {
    pub learned: Vec<Learned>,
    /// Bridge port → its name (ifName through the port's ifIndex).
    pub names: HashMap<u32, String>,
    /// Bridge ports whose LLDP neighbour says it is a bridge.
    pub bridged: BTreeSet<u32>,
    pub rejected: usize,
}

fn mac_of(arcs: &[u32]) -> Option<Mac> {
    let b: Vec<u8> = arcs
        .iter()
        .map(|&a| u8::try_from(a).ok())
        .collect::<Option<_>>()?;
    let a: [u8; 6] = b.try_into().ok()?;
    (a != [0; 6] && a[0] & 1 == 0).then_some(Mac(a))
}

/// Forwarding rows: `q` says whether the index starts with the VLAN
/// (Q-BRIDGE) or is the MAC alone (BRIDGE-MIB).
pub fn learned(binds: &[(Vec<u32>, Cell)], q: bool) -> (Vec<Learned>, usize) {
    let mut rows: BTreeMap<Vec<u32>, (Option<u32>, Option<i64>)> = BTreeMap::new();
    for (suffix, cell) in binds {
        let Some((&column, index)) = suffix.split_first() else {
            continue;
        };
        let row = rows.entry(index.to_vec()).or_default();
        match (column, cell) {
            (2, Cell::Number(n)) => row.0 = u32::try_from(*n).ok(),
            (3, Cell::Number(n)) => row.1 = Some(*n),
            _ => {}
        }
    }
    let mut out = Vec::new();
    let mut rejected = 0;
    for (index, (port, status)) in rows {
        let (vlan, mac) = match (q, index.as_slice()) {
            (true, [vlan, mac @ ..]) => (*vlan, mac_of(mac)),
            (false, mac) => (0, mac_of(mac)),
            _ => (0, None),
        };
        let dead = matches!(status, Some(STATUS_INVALID | STATUS_SELF));
        match (mac, port) {
            (Some(mac), Some(port)) if port > 0 && vlan <= 4094 && !dead => {
                out.push(Learned { mac, port, vlan })
            }
            _ => rejected += 1,
        }
    }
    (out, rejected)
}

/// Bridge port → ifIndex.
pub fn base_ports(binds: &[(Vec<u32>, Cell)]) -> HashMap<u32, u32> {
    binds
        .iter()
        .filter_map(|(s, c)| match (s.as_slice(), c) {
            ([2, port], Cell::Number(n)) => Some((*port, u32::try_from(*n).ok()?)),
            _ => None,
        })
        .collect()
}

/// ifIndex → ifName, cleaned and bounded (an agent's text).
pub fn if_names(binds: &[(Vec<u32>, Cell)]) -> HashMap<u32, String> {
    binds
        .iter()
        .filter_map(|(s, c)| match (s.as_slice(), c) {
            ([1, index], Cell::Octets(b)) => {
                let name = crate::escape::clean_bytes(b, MAX_NAME);
                (!name.trim().is_empty()).then(|| (*index, name.trim().to_string()))
            }
            _ => None,
        })
        .collect()
}

/// Local LLDP port numbers whose neighbour has bridging enabled.
pub fn bridged_ports(binds: &[(Vec<u32>, Cell)]) -> BTreeSet<u32> {
    binds
        .iter()
        .filter_map(|(s, c)| match (s.as_slice(), c) {
            ([12, _time, port, _remote], Cell::Octets(b)) => b
                .first()
                .is_some_and(|o| o & CAP_BRIDGE != 0)
                .then_some(*port),
            _ => None,
        })
        .collect()
}

/// Where each MAC is, on one switch: ports that are no device's (an
/// LLDP neighbour that bridges, more than `uplink_macs` MACs, or named in
/// `uplinks`) are left out. Each MAC once, on the port that holds the
/// fewest MACs.
pub fn locate(fdb: &Fdb, uplink_macs: usize, uplinks: &[String]) -> HashMap<Mac, (String, u32)> {
    let mut per_port: HashMap<u32, usize> = HashMap::new();
    for l in &fdb.learned {
        *per_port.entry(l.port).or_default() += 1;
    }
    let name = |port: u32| {
        fdb.names
            .get(&port)
            .cloned()
            .unwrap_or_else(|| format!("port {port}"))
    };
    let uplink = |port: u32| {
        fdb.bridged.contains(&port)
            || per_port.get(&port).copied().unwrap_or(0) > uplink_macs
            || uplinks.contains(&name(port))
    };
    let mut out: HashMap<Mac, (String, u32, usize)> = HashMap::new();
    for l in fdb.learned.iter().filter(|l| !uplink(l.port)) {
        let crowd = per_port.get(&l.port).copied().unwrap_or(0);
        let better = out.get(&l.mac).is_none_or(|(_, _, c)| crowd < *c);
        if better {
            out.insert(l.mac, (name(l.port), l.vlan, crowd));
        }
    }
    out.into_iter().map(|(m, (p, v, _))| (m, (p, v))).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(v: i64) -> Cell {
        Cell::Number(v)
    }

    const M: [u32; 6] = [0, 0x16, 0x3e, 0, 0, 1];

    fn idx(prefix: &[u32], mac: [u32; 6]) -> Vec<u32> {
        prefix.iter().chain(mac.iter()).copied().collect()
    }

    #[test]
    fn q_bridge_rows_give_mac_port_and_vlan_and_drop_the_switchs_own() {
        let mut own = M;
        own[5] = 2;
        let binds = vec![
            (idx(&[2, 10], M), n(3)),
            (idx(&[3, 10], M), n(3)),
            (idx(&[2, 1], own), n(1)),
            (idx(&[3, 1], own), n(STATUS_SELF)),
            (idx(&[2, 1], [1, 0, 0x5e, 0, 0, 1]), n(1)),
            (idx(&[2, 5000], M), n(1)),
        ];
        let (l, rejected) = learned(&binds, true);
        assert_eq!(
            l,
            [Learned {
                mac: Mac([0, 0x16, 0x3e, 0, 0, 1]),
                port: 3,
                vlan: 10
            }]
        );
        assert_eq!(rejected, 3);
        let (l, _) = learned(&[(idx(&[2], M), n(7))], false);
        assert_eq!((l[0].port, l[0].vlan), (7, 0));
    }

    #[test]
    fn uplinks_by_lldp_by_crowd_and_by_name_are_no_devices_port() {
        let mac = |i: u8| Mac([0, 0x16, 0x3e, 0, 0, i]);
        let mut fdb = Fdb::default();
        fdb.learned.push(Learned {
            mac: mac(1),
            port: 1,
            vlan: 1,
        });
        for i in 10..20 {
            fdb.learned.push(Learned {
                mac: mac(i),
                port: 2,
                vlan: 1,
            });
        }
        // seen behind the crowded uplink and on its own access port
        fdb.learned.push(Learned {
            mac: mac(1),
            port: 2,
            vlan: 1,
        });
        fdb.learned.push(Learned {
            mac: mac(30),
            port: 3,
            vlan: 1,
        });
        fdb.learned.push(Learned {
            mac: mac(31),
            port: 4,
            vlan: 1,
        });
        fdb.names.insert(1, "p0".into());
        fdb.names.insert(4, "trunk".into());
        fdb.bridged.insert(3);
        let at = locate(&fdb, 8, &["trunk".into()]);
        assert_eq!(at.get(&mac(1)), Some(&("p0".to_string(), 1)));
        assert!(!at.contains_key(&mac(10)), "port 2 holds 11 MACs");
        assert!(!at.contains_key(&mac(30)), "port 3's neighbour bridges");
        assert!(!at.contains_key(&mac(31)), "port 4 is named an uplink");
    }

    #[test]
    fn names_are_cleaned_and_capabilities_read_as_bits() {
        let names = if_names(&[(vec![1, 5], Cell::Octets(b"ge-0/0/5\x1b[2J".to_vec()))]);
        assert!(!names[&5].contains('\x1b'), "{:?}", names[&5]);
        let bridged = bridged_ports(&[
            (vec![12, 0, 3, 1], Cell::Octets(vec![0x20, 0])),
            (vec![12, 0, 4, 1], Cell::Octets(vec![0x08, 0])),
        ]);
        assert_eq!(bridged.into_iter().collect::<Vec<_>>(), [3]);
    }
}
