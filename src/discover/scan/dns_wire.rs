//! DNS on the wire, shared by the mDNS and the reverse DNS queries: names
//! (RFC 1035 4.1.4) written plain and read with compression followed a
//! bounded number of times, backwards only; and the wait for an answer on
//! a connected UDP socket, which a refusal ends too.

use std::{io, net::IpAddr};

pub const TYPE_PTR: u16 = 12;
pub const CLASS_IN: u16 = 1;
/// A DNS name is at most 255 bytes on the wire.
pub const MAX_NAME: usize = 255;
const MAX_JUMPS: usize = 16;

/// The reverse name of an address: `4.3.2.1.in-addr.arpa`, or the 32
/// nibbles of an IPv6 address under `ip6.arpa`.
pub fn reverse_name(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            format!("{}.{}.{}.{}.in-addr.arpa", o[3], o[2], o[1], o[0])
        }
        IpAddr::V6(v6) => {
            let mut name = String::with_capacity(72);
            for byte in v6.octets().iter().rev() {
                name.push_str(&format!("{:x}.{:x}.", byte & 0xf, byte >> 4));
            }
            name.push_str("ip6.arpa");
            name
        }
    }
}

/// Appends `name` (dot-separated, each label under 64 bytes) as labels.
pub fn push_name(out: &mut Vec<u8>, name: &str) {
    for label in name.split('.').filter(|l| !l.is_empty()) {
        out.push(label.len().min(63) as u8);
        out.extend_from_slice(&label.as_bytes()[..label.len().min(63)]);
    }
    out.push(0);
}

/// The name at `at` (compression followed, bounded) and where the record
/// goes on after it; `None` for a malformed or over-long name.
pub fn name_at(msg: &[u8], mut at: usize) -> Option<(String, usize)> {
    let mut labels: Vec<String> = Vec::new();
    let mut wire = 0;
    let mut after = None;
    let mut jumps = 0;
    loop {
        let len = *msg.get(at)? as usize;
        match len {
            0 => break,
            l if l & 0xc0 == 0xc0 => {
                let target = ((l & 0x3f) << 8) | *msg.get(at + 1)? as usize;
                jumps += 1;
                // Pointers go backwards only, a bounded number of times:
                // no loop and no amplification.
                if jumps > MAX_JUMPS || target >= at {
                    return None;
                }
                after.get_or_insert(at + 2);
                at = target;
            }
            l if l > 63 => return None,
            l => {
                wire += l + 1;
                if wire > MAX_NAME {
                    return None;
                }
                let label = msg.get(at + 1..at + 1 + l)?;
                labels.push(String::from_utf8_lossy(label).into_owned());
                at += l + 1;
            }
        }
    }
    Some((labels.join("."), after.unwrap_or(at + 1)))
}

/// Waits until `sock` (connected) holds a datagram, or returns its
/// refusal (the peer's ICMP port unreachable) as the error. A refusal is
/// an error on the socket, not data: both wake it. The runtime keeps an
/// error readiness until the socket is gone, so a caller that waits again
/// after an error would wake at once, forever: an error ends the reading.
pub async fn datagram_or_refusal(sock: &tokio::net::UdpSocket) -> io::Result<()> {
    let ready = sock
        .ready(tokio::io::Interest::READABLE | tokio::io::Interest::ERROR)
        .await?;
    if ready.is_error() && !ready.is_readable() {
        return Err(sock
            .take_error()
            .ok()
            .flatten()
            .unwrap_or_else(|| io::ErrorKind::ConnectionRefused.into()));
    }
    Ok(())
}
