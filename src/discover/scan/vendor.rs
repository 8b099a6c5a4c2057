//! The vendor of a MAC, from the IEEE registry table that build.rs writes
//! (see `vendor_table` there for its layout): plain bytes, so the loader
//! has nothing to relocate and a lookup touches a few pages.

use crate::net::Mac;

static TABLE: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/vendors.bin"));
const RECORD: usize = 14;

/// The vendor of a MAC from the IEEE registry; randomised addresses say so.
pub fn vendor(mac: Mac) -> String {
    if mac.is_local() {
        return "(locally administered)".into();
    }
    organization(mac).unwrap_or_default().to_string()
}

/// The longest registered prefix wins: MA-S and IAB (36 bits), then MA-M
/// (28), then MA-L and CID (24).
fn organization(mac: Mac) -> Option<&'static str> {
    let value = mac.0.iter().fold(0u64, |v, b| v << 8 | u64::from(*b));
    [(9u64, 36u32), (7, 28), (6, 24)]
        .into_iter()
        .find_map(|(digits, bits)| find(digits << 40 | value >> (48 - bits)))
}

fn find(key: u64) -> Option<&'static str> {
    let count = u32::from_le_bytes(TABLE.get(..4)?.try_into().ok()?) as usize;
    let records = TABLE.get(4..4 + count * RECORD)?;
    let names = TABLE.get(4 + count * RECORD..)?;
    let key_at =
        |i: usize| u64::from_le_bytes(records[i * RECORD..][..8].try_into().unwrap_or([0; 8]));
    let (mut low, mut high) = (0, count);
    while low < high {
        let mid = (low + high) / 2;
        match key_at(mid).cmp(&key) {
            std::cmp::Ordering::Less => low = mid + 1,
            std::cmp::Ordering::Greater => high = mid,
            std::cmp::Ordering::Equal => {
                let r = &records[mid * RECORD..][..RECORD];
                let at = u32::from_le_bytes([r[8], r[9], r[10], r[11]]) as usize;
                let len = usize::from(u16::from_le_bytes([r[12], r[13]]));
                return std::str::from_utf8(names.get(at..at + len)?).ok();
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn of(mac: &str) -> String {
        vendor(mac.parse().unwrap())
    }

    #[test]
    fn every_registry_is_found_by_its_longest_prefix() {
        assert!(of("dc:a6:32:01:02:03").to_lowercase().contains("raspberry"));
        assert_eq!(of("00:00:00:00:00:00"), "XEROX CORPORATION");
        assert_eq!(of("50:a6:d8:00:00:00"), "Apple, Inc.");
        // MA-M and MA-S blocks inside an MA-L block named for the IEEE.
        assert_eq!(of("b8:4c:87:40:00:00"), "Blum Novotest GmbH");
        assert_eq!(of("8c:1f:64:af:a0:00"), "DATA ELECTRONIC DEVICES, INC");
        assert_eq!(of("40:d8:55:0d:70:00"), "Avant Technologies");
    }

    #[test]
    fn the_table_holds_the_whole_registry() {
        let count = u32::from_le_bytes(TABLE[..4].try_into().unwrap());
        assert!(count > 50_000, "{count} records");
    }

    #[test]
    fn unregistered_and_randomised_addresses_say_so() {
        assert_eq!(of("da:a6:32:01:02:03"), "(locally administered)");
        // A CID (the local bit is set): named as locally administered.
        assert_eq!(of("ea:27:01:00:00:00"), "(locally administered)");
        assert_eq!(of("fc:ff:ff:00:00:01"), "");
    }
}
