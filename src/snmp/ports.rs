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
/// `lldpLocPortEntry`: index local port; column 4 its description.
pub const LLDP_LOC_PORT_ENTRY: &[u32] = &[1, 0, 8802, 1, 1, 2, 1, 3, 7, 1];

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
    /// The forwarding database it was learned in (Q-BRIDGE's fdbId), then
    /// its VLAN ([`vlans_of`]); 0 when no table says (BRIDGE-MIB).
    pub vlan: u32,
}

/// `dot1qVlanCurrentEntry`: index timeMark . VLAN; column 3 its fdbId.
pub const VLAN_CURRENT_ENTRY: &[u32] = &[1, 3, 6, 1, 2, 1, 17, 7, 1, 4, 2, 1];

/// Each learned entry's VLAN from its forwarding database: through
/// `dot1qVlanFdbId` when the switch serves it (a database shared by
/// several VLANs, or a VLAN no table names, is 0: unknown), else the
/// database's number where it can be a VLAN (most switches number them
/// so).
pub fn vlans_of(learned: &mut [Learned], vlan_binds: &[(Vec<u32>, Cell)]) {
    let mut of_fdb: HashMap<u32, Option<u32>> = HashMap::new();
    for (s, c) in vlan_binds {
        if let ([3, _time, vlan], Cell::Number(fdb)) = (s.as_slice(), c) {
            let Ok(fdb) = u32::try_from(*fdb) else {
                continue;
            };
            of_fdb
                .entry(fdb)
                .and_modify(|v| {
                    if *v != Some(*vlan) {
                        *v = None
                    }
                })
                .or_insert(Some(*vlan));
        }
    }
    for l in learned.iter_mut() {
        l.vlan = if of_fdb.is_empty() {
            if (1..=4094).contains(&l.vlan) {
                l.vlan
            } else {
                0
            }
        } else {
            of_fdb.get(&l.vlan).copied().flatten().unwrap_or(0)
        };
    }
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
            (Some(mac), Some(port)) if port > 0 && !dead => out.push(Learned { mac, port, vlan }),
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

/// Index → the text of `column` (ifName, an LLDP port's description),
/// cleaned and bounded: an agent's words.
pub fn texts(binds: &[(Vec<u32>, Cell)], column: u32) -> HashMap<u32, String> {
    binds
        .iter()
        .filter_map(|(s, c)| match (s.as_slice(), c) {
            ([col, index], Cell::Octets(b)) if *col == column => {
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

/// The bridge ports whose LLDP neighbour bridges. LLDP-MIB numbers a
/// bridge's ports as `dot1dBasePort`, but agents differ (lldpd uses the
/// ifIndex), and the two numberings overlap: a local port is matched by
/// its description (`local`, the interface's name) to a bridge port's
/// name first, and taken as a base port number only when its agent gives
/// no description at all.
pub fn bridged_base_ports(
    lldp_ports: &BTreeSet<u32>,
    local: &HashMap<u32, String>,
    names: &HashMap<u32, String>,
) -> BTreeSet<u32> {
    let by_name: HashMap<&str, u32> = names.iter().map(|(p, n)| (n.as_str(), *p)).collect();
    lldp_ports
        .iter()
        .filter_map(|n| match local.get(n) {
            Some(desc) => by_name.get(desc.as_str()).copied(),
            None if local.is_empty() && names.contains_key(n) => Some(*n),
            None => None,
        })
        .collect()
}

/// Where each MAC is, on one switch, with how many MACs its port holds:
/// ports that are no device's (an LLDP neighbour that bridges, more than
/// `uplink_macs` distinct MACs, or named in `uplinks`) are left out, and
/// so is a MAC learned on two access ports (one of them is a forger's).
/// Also the MACs seen only on uplinks: they are behind another switch.
pub fn locate(fdb: &Fdb, uplink_macs: usize, uplinks: &[String]) -> Located {
    let mut per_port: HashMap<u32, BTreeSet<Mac>> = HashMap::new();
    for l in &fdb.learned {
        per_port.entry(l.port).or_default().insert(l.mac);
    }
    let name = |port: u32| {
        fdb.names
            .get(&port)
            .cloned()
            .unwrap_or_else(|| format!("port {port}"))
    };
    // A neighbour that bridges is a switch only with something behind it:
    // a host with a bridge of its own (docker0, a VM's) says "bridge" too,
    // and alone on its port that port is its own.
    let uplink = |port: u32| {
        let macs = per_port.get(&port).map_or(0, BTreeSet::len);
        (fdb.bridged.contains(&port) && macs > 1)
            || macs > uplink_macs
            || uplinks.contains(&name(port))
    };
    let mut at: HashMap<Mac, Vec<(u32, u32)>> = HashMap::new();
    let mut behind = BTreeSet::new();
    for l in &fdb.learned {
        if uplink(l.port) {
            behind.insert(l.mac);
        } else {
            at.entry(l.mac).or_default().push((l.port, l.vlan));
        }
    }
    let mut out = Located::default();
    for (mac, mut places) in at {
        behind.remove(&mac);
        places.sort_unstable();
        places.dedup_by_key(|p| p.0);
        match places.as_slice() {
            [(port, vlan)] => {
                let crowd = per_port.get(port).map_or(0, BTreeSet::len);
                out.placed.insert(mac, (name(*port), *vlan, crowd));
            }
            _ => out.ambiguous += 1,
        }
    }
    out.behind_uplinks = behind;
    out
}

/// What [`locate`] found on one switch.
#[derive(Debug, Default)]
pub struct Located {
    /// MAC → (port name, VLAN, MACs on that port).
    pub placed: HashMap<Mac, (String, u32, usize)>,
    /// MACs learned only on uplinks.
    pub behind_uplinks: BTreeSet<Mac>,
    /// MACs on two access ports, placed nowhere.
    pub ambiguous: usize,
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
        assert_eq!(rejected, 2);
        let (l, _) = learned(&[(idx(&[2], M), n(7))], false);
        assert_eq!((l[0].port, l[0].vlan), (7, 0));
    }

    #[test]
    fn a_forwarding_database_is_named_by_its_vlan_and_a_shared_one_by_none() {
        let learn = |vlan| Learned {
            mac: Mac([0, 0x16, 0x3e, 0, 0, 1]),
            port: 1,
            vlan,
        };
        let mut l = vec![learn(10), learn(5000), learn(1)];
        vlans_of(&mut l, &[]);
        assert_eq!(
            l.iter().map(|x| x.vlan).collect::<Vec<_>>(),
            [10, 0, 1],
            "no table: the number"
        );
        // fdb 7 serves VLAN 20; fdb 1 is shared by VLANs 1 and 30.
        let table = vec![
            (vec![3, 0, 20], n(7)),
            (vec![3, 0, 1], n(1)),
            (vec![3, 0, 30], n(1)),
        ];
        let mut l = vec![learn(7), learn(1), learn(9)];
        vlans_of(&mut l, &table);
        assert_eq!(l.iter().map(|x| x.vlan).collect::<Vec<_>>(), [20, 0, 0]);
    }

    #[test]
    fn uplinks_by_lldp_by_crowd_and_by_name_are_no_devices_port() {
        let mac = |i: u8| Mac([0, 0x16, 0x3e, 0, 0, i]);
        let learn = |mac, port, vlan| Learned { mac, port, vlan };
        let mut fdb = Fdb::default();
        fdb.learned.push(learn(mac(1), 1, 1));
        for i in 10..20 {
            fdb.learned.push(learn(mac(i), 2, 1));
        }
        // seen behind the crowded uplink and on its own access port
        fdb.learned.push(learn(mac(1), 2, 1));
        fdb.learned.push(learn(mac(30), 3, 1));
        fdb.learned.push(learn(mac(32), 3, 1));
        // a host whose own bridge makes its LLDP say "bridge", alone
        fdb.learned.push(learn(mac(33), 8, 1));
        fdb.bridged.insert(8);
        fdb.learned.push(learn(mac(31), 4, 1));
        // one MAC in nine VLANs on one port is one MAC there
        for vlan in 1..10 {
            fdb.learned.push(learn(mac(40), 5, vlan));
        }
        // a MAC on two access ports (a forger's claim)
        fdb.learned.push(learn(mac(50), 6, 1));
        fdb.learned.push(learn(mac(50), 7, 20));
        fdb.names.insert(1, "p0".into());
        fdb.names.insert(4, "trunk".into());
        fdb.bridged.insert(3);
        let at = locate(&fdb, 8, &["trunk".into()]);
        assert_eq!(at.placed.get(&mac(1)), Some(&("p0".to_string(), 1, 1)));
        assert!(!at.placed.contains_key(&mac(10)), "port 2 holds 11 MACs");
        assert!(
            !at.placed.contains_key(&mac(30)),
            "port 3's neighbour bridges"
        );
        assert!(
            at.placed.contains_key(&mac(33)),
            "alone on its port: its own"
        );
        assert!(
            !at.placed.contains_key(&mac(31)),
            "port 4 is named an uplink"
        );
        assert_eq!(
            at.placed.get(&mac(40)).map(|p| p.2),
            Some(1),
            "one MAC, nine VLANs"
        );
        assert!(!at.placed.contains_key(&mac(50)));
        assert_eq!(at.ambiguous, 1);
        assert!(at.behind_uplinks.contains(&mac(10)) && at.behind_uplinks.contains(&mac(30)));
        assert!(
            !at.behind_uplinks.contains(&mac(1)),
            "its own access port is known"
        );
    }

    #[test]
    fn a_port_with_as_many_macs_as_allowed_is_a_devices_one_more_is_an_uplink() {
        let fdb = |n: u8| Fdb {
            learned: (0..n)
                .map(|i| Learned {
                    mac: Mac([0, 0x16, 0x3e, 0, 1, i]),
                    port: 1,
                    vlan: 1,
                })
                .collect(),
            ..Fdb::default()
        };
        assert_eq!(locate(&fdb(8), 8, &[]).placed.len(), 8);
        assert_eq!(locate(&fdb(9), 8, &[]).placed.len(), 0);
    }

    #[test]
    fn lldp_ports_are_matched_by_name_whatever_their_numbers() {
        // Bridge ports 1..3 are ifIndex 3..5 (p0, p1, up1); lldpd numbers
        // LLDP ports by ifIndex: its port 3 is p0, not bridge port 3.
        let names: HashMap<u32, String> = [(1, "p0"), (2, "p1"), (3, "up1")]
            .map(|(p, n)| (p, n.to_string()))
            .into();
        let local: HashMap<u32, String> = [(3, "p0"), (4, "p1"), (5, "up1")]
            .map(|(p, n)| (p, n.to_string()))
            .into();
        let lldp: BTreeSet<u32> = [5].into();
        assert_eq!(bridged_base_ports(&lldp, &local, &names), [3].into());
        // An agent without descriptions: LLDP-MIB's own numbering.
        assert_eq!(
            bridged_base_ports(&lldp, &HashMap::new(), &names),
            BTreeSet::new()
        );
        assert_eq!(
            bridged_base_ports(&[2].into(), &HashMap::new(), &names),
            [2].into()
        );
        // A description naming no bridge port: nothing.
        let odd: HashMap<u32, String> = [(5, "eth9".to_string())].into();
        assert!(bridged_base_ports(&lldp, &odd, &names).is_empty());
    }

    #[test]
    fn names_are_cleaned_and_capabilities_read_as_bits() {
        let names = texts(
            &[(vec![1, 5], Cell::Octets(b"ge-0/0/5\x1b[2J".to_vec()))],
            1,
        );
        assert!(!names[&5].contains('\x1b'), "{:?}", names[&5]);
        let bridged = bridged_ports(&[
            (vec![12, 0, 3, 1], Cell::Octets(vec![0x20, 0])),
            (vec![12, 0, 4, 1], Cell::Octets(vec![0x08, 0])),
        ]);
        assert_eq!(bridged.into_iter().collect::<Vec<_>>(), [3]);
    }
}
