//! A router's neighbour table, from the rows an agent sent: IP-MIB's
//! `ipNetToPhysicalTable` (IPv4 and IPv6), else the older
//! `ipNetToMediaTable` (IPv4). Pure functions over what was received, so
//! every shape an agent can send is tested without one.

use std::{
    collections::BTreeMap,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
};

use crate::net::Mac;

/// `ipNetToPhysicalEntry`: index ifIndex, address type, address.
pub const PHYSICAL_ENTRY: &[u32] = &[1, 3, 6, 1, 2, 1, 4, 35, 1];
/// `ipNetToMediaEntry`: index ifIndex, IPv4 address.
pub const MEDIA_ENTRY: &[u32] = &[1, 3, 6, 1, 2, 1, 4, 22, 1];
/// `sysUpTime.0`, which `ipNetToPhysicalLastUpdated` is counted against.
pub const SYS_UPTIME: &[u32] = &[1, 3, 6, 1, 2, 1, 1, 3, 0];

/// One neighbour as the router holds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Neighbour {
    pub ip: IpAddr,
    pub mac: Mac,
    pub if_index: u32,
    /// Centiseconds since the router last confirmed the entry, when it says.
    pub age_centis: Option<u32>,
}

/// What a table held, and what it held that could not be a neighbour.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Table {
    pub neighbours: Vec<Neighbour>,
    /// Rows dropped (invalid or incomplete entries, the router's own
    /// addresses, MACs no device holds, values of the wrong type), and
    /// bindings whose index names no address.
    pub rejected: usize,
}

/// One value of a row, copied out of the answer: a MAC's octets, or a
/// number (a type, a state, a time).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Cell {
    Octets(Vec<u8>),
    Number(i64),
}

/// The longest string kept: a DisplayString's own bound (a port's name;
/// a MAC is six octets and checked as such).
const MAX_OCTETS: usize = 255;

impl Cell {
    /// None for a value no neighbour table holds, or a string too long.
    pub fn of(v: &async_snmp::Value) -> Option<Cell> {
        use async_snmp::Value as V;
        match v {
            V::OctetString(b) if b.len() <= MAX_OCTETS => Some(Cell::Octets(b.to_vec())),
            V::Integer(i) => Some(Cell::Number(i64::from(*i))),
            V::TimeTicks(u) | V::Counter32(u) | V::Gauge32(u) | V::UInteger32(u) => {
                Some(Cell::Number(i64::from(*u)))
            }
            _ => None,
        }
    }

    fn as_bytes(&self) -> Option<&[u8]> {
        match self {
            Cell::Octets(b) => Some(b),
            Cell::Number(_) => None,
        }
    }

    fn as_u32(&self) -> Option<u32> {
        match self {
            Cell::Number(n) => u32::try_from(*n).ok(),
            Cell::Octets(_) => None,
        }
    }

    fn as_i32(&self) -> Option<i32> {
        match self {
            Cell::Number(n) => i32::try_from(*n).ok(),
            Cell::Octets(_) => None,
        }
    }
}

#[derive(Default)]
struct Row {
    mac: Option<Vec<u8>>,
    kind: Option<i32>,
    state: Option<i32>,
    updated: Option<u32>,
    bad: bool,
}

/// `ipNetToPhysicalTable` rows: each binding's OID below the entry is
/// column . ifIndex . type . length . address octets. `uptime` is the
/// agent's `sysUpTime` (centiseconds), for each entry's age.
pub fn physical(binds: &[(Vec<u32>, Cell)], uptime: Option<u32>) -> Table {
    let mut rows: BTreeMap<(u32, IpAddr), Row> = BTreeMap::new();
    let mut rejected_index: usize = 0;
    for (suffix, value) in binds {
        let Some((&column, index)) = suffix.split_first() else {
            continue;
        };
        let Some(key) = physical_index(index) else {
            rejected_index += 1;
            continue;
        };
        let row = rows.entry(key).or_default();
        match column {
            4 => row.mac = value.as_bytes().map(<[u8]>::to_vec),
            5 => row.updated = value.as_u32(),
            6 => row.kind = value.as_i32(),
            7 => row.state = value.as_i32(),
            _ => continue,
        }
        row.bad |= matches!(column, 4..=7) && !typed(column, value);
    }
    let mut table = collect(rows, uptime);
    table.rejected += rejected_index;
    table
}

/// `ipNetToMediaTable` rows: column . ifIndex . four address octets.
pub fn media(binds: &[(Vec<u32>, Cell)]) -> Table {
    let mut rows: BTreeMap<(u32, IpAddr), Row> = BTreeMap::new();
    let mut rejected_index: usize = 0;
    for (suffix, value) in binds {
        let Some((&column, index)) = suffix.split_first() else {
            continue;
        };
        let key = match index {
            [if_index, a, b, c, d] => octets(&[*a, *b, *c, *d])
                .map(|o| (*if_index, IpAddr::V4(Ipv4Addr::new(o[0], o[1], o[2], o[3])))),
            _ => None,
        };
        let Some(key) = key else {
            rejected_index += 1;
            continue;
        };
        let row = rows.entry(key).or_default();
        match column {
            2 => row.mac = value.as_bytes().map(<[u8]>::to_vec),
            4 => row.kind = value.as_i32(),
            _ => continue,
        }
        row.bad |= (column == 2 && value.as_bytes().is_none())
            || (column == 4 && value.as_i32().is_none());
    }
    let mut table = collect(rows, None);
    table.rejected += rejected_index;
    table
}

fn typed(column: u32, value: &Cell) -> bool {
    match column {
        4 => value.as_bytes().is_some(),
        5 => value.as_u32().is_some(),
        _ => value.as_i32().is_some(),
    }
}

/// ifIndex, type, length, octets: IPv4 (1) and IPv6 (2), and their zoned
/// forms (3, 4) whose zone index follows the address.
fn physical_index(index: &[u32]) -> Option<(u32, IpAddr)> {
    let [if_index, kind, len, rest @ ..] = index else {
        return None;
    };
    if *len as usize != rest.len() {
        return None;
    }
    let bytes = octets(rest)?;
    let ip = match (kind, bytes.len()) {
        (1, 4) | (3, 8) => IpAddr::V4(Ipv4Addr::new(bytes[0], bytes[1], bytes[2], bytes[3])),
        (2, 16) | (4, 20) => {
            let mut a = [0u8; 16];
            a.copy_from_slice(&bytes[..16]);
            IpAddr::V6(Ipv6Addr::from(a))
        }
        _ => return None,
    };
    Some((*if_index, ip))
}

fn octets(arcs: &[u32]) -> Option<Vec<u8>> {
    arcs.iter().map(|&a| u8::try_from(a).ok()).collect()
}

/// IP-MIB's words: type invalid(2) and local(5) are no neighbour; state
/// invalid(5) and incomplete(7) hold no answer.
const TYPE_INVALID: i32 = 2;
const TYPE_LOCAL: i32 = 5;
const STATE_INVALID: i32 = 5;
const STATE_INCOMPLETE: i32 = 7;

fn collect(rows: BTreeMap<(u32, IpAddr), Row>, uptime: Option<u32>) -> Table {
    let mut table = Table::default();
    for ((if_index, ip), row) in rows {
        // A row that says neither its type nor its state is no entry the
        // router keeps: a forger's cheapest row.
        let dead = matches!(row.kind, Some(TYPE_INVALID | TYPE_LOCAL))
            || matches!(row.state, Some(STATE_INVALID | STATE_INCOMPLETE))
            || (row.kind.is_none() && row.state.is_none());
        let mac = row.mac.as_deref().and_then(device_mac);
        match mac {
            Some(mac) if !dead && !row.bad => table.neighbours.push(Neighbour {
                ip,
                mac,
                if_index,
                age_centis: age(row.updated, uptime),
            }),
            _ => table.rejected += 1,
        }
    }
    table
}

/// A MAC one device can hold: six octets, not zero, not a group address.
fn device_mac(bytes: &[u8]) -> Option<Mac> {
    let a: [u8; 6] = bytes.try_into().ok()?;
    (a != [0; 6] && a[0] & 1 == 0).then_some(Mac(a))
}

/// An entry updated at 0 (before the agent started, or never said) has no
/// age; one updated "after" uptime is a clock the agent reset.
fn age(updated: Option<u32>, uptime: Option<u32>) -> Option<u32> {
    match (updated, uptime) {
        (Some(u), Some(now)) if u > 0 && u <= now => Some(now - u),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bind(arcs: &[u32], v: Cell) -> (Vec<u32>, Cell) {
        (arcs.to_vec(), v)
    }

    fn mac(b: &[u8]) -> Cell {
        Cell::Octets(b.to_vec())
    }

    #[allow(non_snake_case)]
    fn Integer(n: i32) -> Cell {
        Cell::Number(i64::from(n))
    }

    const M1: [u8; 6] = [0x02, 0, 0, 0, 0, 1];

    #[test]
    fn physical_rows_give_ipv4_and_ipv6_neighbours_with_their_age() {
        let v6 = [
            2, 16, 0x20, 1, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 9,
        ];
        let mut binds = vec![
            bind(&[4, 3, 1, 4, 198, 18, 2, 10], mac(&M1)),
            bind(&[5, 3, 1, 4, 198, 18, 2, 10], Cell::Number(900)),
            bind(&[6, 3, 1, 4, 198, 18, 2, 10], Integer(3)),
            bind(&[7, 3, 1, 4, 198, 18, 2, 10], Integer(1)),
        ];
        let mut idx = vec![4, 3];
        idx.extend(v6);
        binds.push(bind(&idx, mac(&M1)));
        idx[0] = 7;
        binds.push(bind(&idx, Integer(2)));
        let t = physical(&binds, Some(1000));
        assert_eq!(t.rejected, 0);
        assert_eq!(t.neighbours.len(), 2);
        assert_eq!(t.neighbours[0].ip, "198.18.2.10".parse::<IpAddr>().unwrap());
        assert_eq!(t.neighbours[0].age_centis, Some(100));
        assert_eq!(t.neighbours[0].if_index, 3);
        assert_eq!(t.neighbours[1].ip, "2001:db8::9".parse::<IpAddr>().unwrap());
        assert_eq!(t.neighbours[1].age_centis, None);
    }

    #[test]
    fn dead_own_and_impossible_entries_are_rejected() {
        let binds = vec![
            // incomplete: no answer yet
            bind(&[4, 3, 1, 4, 198, 18, 2, 1], mac(&M1)),
            bind(&[7, 3, 1, 4, 198, 18, 2, 1], Integer(7)),
            // the router's own address
            bind(&[4, 3, 1, 4, 198, 18, 2, 2], mac(&M1)),
            bind(&[6, 3, 1, 4, 198, 18, 2, 2], Integer(5)),
            // zero, broadcast and short MACs, each with a live state
            bind(&[4, 3, 1, 4, 198, 18, 2, 3], mac(&[0; 6])),
            bind(&[7, 3, 1, 4, 198, 18, 2, 3], Integer(1)),
            bind(&[4, 3, 1, 4, 198, 18, 2, 4], mac(&[0xff; 6])),
            bind(&[7, 3, 1, 4, 198, 18, 2, 4], Integer(1)),
            bind(&[4, 3, 1, 4, 198, 18, 2, 5], mac(&[2, 0, 0])),
            bind(&[7, 3, 1, 4, 198, 18, 2, 5], Integer(1)),
            // a MAC of the wrong type; a good MAC with a state of the wrong type
            bind(&[4, 3, 1, 4, 198, 18, 2, 6], Integer(1)),
            bind(&[7, 3, 1, 4, 198, 18, 2, 6], Integer(1)),
            bind(&[4, 3, 1, 4, 198, 18, 2, 12], mac(&M1)),
            bind(&[6, 3, 1, 4, 198, 18, 2, 12], Integer(3)),
            bind(&[7, 3, 1, 4, 198, 18, 2, 12], mac(&M1)),
            // a length that lies, an octet past 255, an unknown type
            bind(&[4, 3, 1, 5, 198, 18, 2, 7], mac(&M1)),
            bind(&[4, 3, 1, 4, 198, 18, 2, 300], mac(&M1)),
            bind(&[4, 3, 9, 4, 198, 18, 2, 8], mac(&M1)),
            // a MAC alone, with neither type nor state
            bind(&[4, 3, 1, 4, 198, 18, 2, 11], mac(&M1)),
            // a good one
            bind(&[4, 3, 1, 4, 198, 18, 2, 9], mac(&M1)),
            bind(&[7, 3, 1, 4, 198, 18, 2, 9], Integer(1)),
        ];
        let t = physical(&binds, None);
        assert_eq!(t.neighbours.len(), 1, "{t:?}");
        assert_eq!(t.neighbours[0].ip, "198.18.2.9".parse::<IpAddr>().unwrap());
        assert_eq!(t.rejected, 8 + 3);
    }

    #[test]
    fn media_rows_are_the_ipv4_fallback() {
        let binds = vec![
            bind(&[2, 7, 198, 18, 2, 10], mac(&M1)),
            bind(&[4, 7, 198, 18, 2, 10], Integer(3)),
            bind(&[2, 7, 198, 18, 2, 11], mac(&M1)),
            bind(&[4, 7, 198, 18, 2, 11], Integer(2)),
            bind(&[2, 7, 198, 18, 2], mac(&M1)),
        ];
        let t = media(&binds);
        assert_eq!(t.neighbours.len(), 1);
        assert_eq!(t.neighbours[0].if_index, 7);
        assert_eq!(t.rejected, 2);
    }

    #[test]
    fn an_agent_clock_that_went_back_gives_no_age() {
        assert_eq!(age(Some(50), Some(10)), None);
        assert_eq!(age(Some(0), Some(10)), None);
        assert_eq!(age(Some(5), Some(10)), Some(5));
    }
}
