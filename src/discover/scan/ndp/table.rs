//! What a search has found, within the caps: addresses per MAC, and MACs
//! per link by how they were heard.

use std::{collections::HashMap, net::Ipv6Addr};

use super::{Heard, Neighbour, MAX_ASKED, MAX_HEARD, MAX_PER_MAC};
use crate::net::Mac;

/// The neighbours found so far, within the caps.
#[derive(Default)]
pub(super) struct Table {
    pub(super) by_mac: HashMap<Mac, Vec<Neighbour>>,
    /// How many MACs claim each address (found in O(1)).
    claimed: HashMap<Ipv6Addr, u32>,
    heard_macs: usize,
    pub(super) capped: u64,
}

impl Heard {
    /// An answer to what this sweep sent, rather than a claim anyone on
    /// the link could make unasked.
    pub fn answered(self) -> bool {
        matches!(self, Heard::Echo | Heard::Asked)
    }
}

impl Table {
    /// Takes a claim within the caps; true when it is news. A MAC's list
    /// that is full gives up an unasked claim for an answer, so forged
    /// advertisements in a real host's name cannot crowd out its answers.
    pub(super) fn take(&mut self, n: Neighbour) -> bool {
        let answered = n.heard.answered();
        if !self.by_mac.contains_key(&n.mac) {
            let full = if answered {
                self.by_mac.len() >= MAX_ASKED
            } else {
                self.heard_macs >= MAX_HEARD
            };
            if full {
                self.capped += 1;
                return false;
            }
            self.heard_macs += usize::from(!answered);
        }
        let list = self.by_mac.entry(n.mac).or_default();
        if let Some(old) = list.iter_mut().find(|o| o.ip == n.ip) {
            if old.rtt.is_none() {
                old.rtt = n.rtt;
            }
            if answered && !old.heard.answered() {
                old.heard = n.heard;
            }
            return false;
        }
        if list.len() >= MAX_PER_MAC {
            let unasked = list.iter().position(|o| !o.heard.answered());
            match unasked.filter(|_| answered) {
                Some(i) => {
                    let gone = list.swap_remove(i).ip;
                    unclaim(&mut self.claimed, gone);
                }
                None => {
                    self.capped += 1;
                    return false;
                }
            }
        }
        *self.claimed.entry(n.ip).or_default() += 1;
        list.push(n);
        true
    }

    pub(super) fn has(&self, ip: Ipv6Addr) -> bool {
        self.claimed.contains_key(&ip)
    }
}

fn unclaim(claimed: &mut HashMap<Ipv6Addr, u32>, ip: Ipv6Addr) {
    if let Some(c) = claimed.get_mut(&ip) {
        *c -= 1;
        if *c == 0 {
            claimed.remove(&ip);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flood_of_claims_is_capped_per_mac_and_in_macs() {
        let mut t = Table::default();
        let forger: Mac = "52:54:00:00:00:66".parse().unwrap();
        for i in 0..500u16 {
            t.take(Neighbour {
                ip: Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, i),
                mac: forger,
                heard: Heard::Overheard,
                rtt: None,
            });
        }
        assert_eq!(t.by_mac[&forger].len(), MAX_PER_MAC);
        for i in 0..(MAX_HEARD as u32 + 100) {
            let b = i.to_be_bytes();
            t.take(Neighbour {
                ip: "fe80::1".parse().unwrap(),
                mac: Mac([0x52, 0, b[0], b[1], b[2], b[3]]),
                heard: Heard::Overheard,
                rtt: None,
            });
        }
        assert_eq!(t.by_mac.len(), MAX_HEARD);
        // An answer to what was asked still gets in.
        assert!(t.take(Neighbour {
            ip: "fe80::2".parse().unwrap(),
            mac: "52:54:00:00:00:02".parse().unwrap(),
            heard: Heard::Echo,
            rtt: None,
        }));
        assert_eq!(t.capped, (500 - MAX_PER_MAC as u64) + 101);
        // Answers in the forger's own name still get in, over its claims.
        assert!(t.take(Neighbour {
            ip: Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 0xffff),
            mac: forger,
            heard: Heard::Asked,
            rtt: None,
        }));
        assert_eq!(t.by_mac[&forger].len(), MAX_PER_MAC);
        assert!(t.has(Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 0xffff)));
    }
}
