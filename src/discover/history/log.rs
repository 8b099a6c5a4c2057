//! The history log's format: a 16-byte header (magic, schema), then frames
//! of a little-endian length, the CRC-32 of the payload and the payload (a
//! protobuf `StoreFrame`). Replaying stops at the first frame that is torn.

use std::collections::{BTreeMap, VecDeque};

use prost::Message;

use super::pulse;
use crate::proto::{HostHistory, HostPulse, StoreFrame, SweepSummary};

pub(super) const MAGIC: &[u8; 8] = b"MDBHIST\0";
pub(super) const HEADER_LEN: u64 = 16;
/// A frame claiming more is damage (65,536 hosts of a few KB are far less).
const MAX_FRAME: usize = 1 << 30;

/// Sweep summaries loaded at start and served (a day of 5-minute sweeps).
pub const RECENT_SWEEPS: usize = 288;

/// A record's history key.
pub(super) fn key_of(r: &HostHistory) -> &str {
    r.host.as_ref().map(|h| h.key.as_str()).unwrap_or_default()
}

/// A frame on disk: length, CRC-32 of the payload, the payload.
pub(super) fn framed(frame: &StoreFrame) -> Vec<u8> {
    let payload = frame.encode_to_vec();
    let mut out = Vec::with_capacity(payload.len() + 8);
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32(&payload).to_le_bytes());
    out.extend_from_slice(&payload);
    out
}

pub(super) fn header(schema: u64) -> [u8; HEADER_LEN as usize] {
    let mut h = [0u8; HEADER_LEN as usize];
    h[..8].copy_from_slice(MAGIC);
    h[8..].copy_from_slice(&schema.to_le_bytes());
    h
}

/// What replaying a log gives.
#[derive(Default)]
pub(super) struct Log {
    /// As last written (volatile fields as of that write).
    pub(super) records: BTreeMap<String, HostHistory>,
    pub(super) pulses: BTreeMap<String, HostPulse>,
    /// Oldest first, at most `RECENT_SWEEPS`.
    pub(super) sweeps: VecDeque<SweepSummary>,
    /// The end of the last whole frame.
    pub(super) good_len: u64,
    pub(super) torn: bool,
    pub(super) undecodable: usize,
}

impl Log {
    fn apply(&mut self, f: StoreFrame) {
        if f.snapshot {
            *self = Log::default();
        }
        for k in &f.removed {
            self.records.remove(k);
            self.pulses.remove(k);
        }
        for r in f.records {
            self.records.insert(key_of(&r).to_string(), r);
        }
        for p in f.pulses {
            // Each pulse's hour, in order: the finished hours of a record
            // that was not rewritten.
            if let Some(r) = self.records.get_mut(&p.key) {
                pulse::merge_hour(r, &p);
            }
            self.pulses.insert(p.key.clone(), p);
        }
        for s in f.sweeps {
            self.sweeps.push_back(s);
            if self.sweeps.len() > RECENT_SWEEPS {
                self.sweeps.pop_front();
            }
        }
    }

    /// Every record with its pulse put back.
    pub(super) fn current(&self, now: i64) -> Vec<HostHistory> {
        self.records
            .iter()
            .map(|(k, r)| {
                let mut r = r.clone();
                if let Some(p) = self.pulses.get(k) {
                    pulse::apply(&mut r, p, now);
                }
                r
            })
            .collect()
    }
}

/// Replays the frames after the header, up to the first that is torn.
pub(super) fn replay(bytes: &[u8]) -> Log {
    let mut log = Log::default();
    let mut at = HEADER_LEN as usize;
    while at < bytes.len() {
        let Some(head) = bytes.get(at..at + 8) else {
            log.torn = true;
            break;
        };
        let len = u32::from_le_bytes([head[0], head[1], head[2], head[3]]) as usize;
        let crc = u32::from_le_bytes([head[4], head[5], head[6], head[7]]);
        if len == 0 && crc == 0 && bytes[at..].iter().all(|b| *b == 0) {
            // The zeros a store writes ahead of its frames. (An empty
            // frame has this header too, but something follows it.)
            break;
        }
        let payload = match bytes.get(at + 8..at + 8 + len) {
            Some(p) if len <= MAX_FRAME && crc32(p) == crc => p,
            _ => {
                log.torn = true;
                break;
            }
        };
        match StoreFrame::decode(payload) {
            Ok(f) => log.apply(f),
            Err(_) => {
                log.undecodable += 1;
                break;
            }
        }
        at += 8 + len;
    }
    log.good_len = at as u64;
    log
}

/// CRC-32 (IEEE), enough to tell a torn frame from a whole one.
pub fn crc32(data: &[u8]) -> u32 {
    const TABLE: [u32; 256] = {
        let mut t = [0u32; 256];
        let mut i = 0;
        while i < 256 {
            let mut c = i as u32;
            let mut k = 0;
            while k < 8 {
                c = if c & 1 != 0 {
                    0xEDB8_8320 ^ (c >> 1)
                } else {
                    c >> 1
                };
                k += 1;
            }
            t[i] = c;
            i += 1;
        }
        t
    };
    let mut c = !0u32;
    for b in data {
        c = TABLE[((c ^ u32::from(*b)) & 0xff) as usize] ^ (c >> 8);
    }
    !c
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_checksum_is_crc_32() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
    }
}
