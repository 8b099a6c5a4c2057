//! A replica's last view of each scanner, kept on disk so that a replica
//! that starts while a scanner is away serves that segment's last state,
//! marked stale, instead of nothing. One file per scanner
//! (`mirror-HASH.pb`, a `ListHostHistoryResponse`), replaced whole (write,
//! sync, rename) after each update; at most [`MAX_FILE`] is read back.

use std::path::{Path, PathBuf};

use prost::Message;
use tracing::warn;

use crate::{
    db::store::{Discovery, DiscoverySource},
    proto::ListHostHistoryResponse,
};

pub const MAX_FILE: u64 = 256 << 20;

fn path(dir: &Path, scanner: &str) -> PathBuf {
    // The address names the file through a digest: no path from config.
    let digest = crate::discover::history::log::crc32(scanner.as_bytes());
    dir.join(format!("mirror-{digest:08x}.pb"))
}

/// Keeps `view` of `scanner`; a failure is logged once per call and the
/// replica serves on from memory.
pub fn save(dir: &Path, scanner: &str, view: &Discovery) {
    let msg = ListHostHistoryResponse {
        hosts: view.histories.clone(),
        as_of_unix: view.last_sweep_unix,
        sweeps: view.sweeps.clone(),
        ..Default::default()
    };
    let file = path(dir, scanner);
    let tmp = file.with_extension("tmp");
    let written = std::fs::create_dir_all(dir)
        .and_then(|()| {
            use std::io::Write;
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(&msg.encode_to_vec())?;
            f.sync_data()
        })
        .and_then(|()| std::fs::rename(&tmp, &file));
    if let Err(e) = written {
        warn!(path = %file.display(), error = %e, "the mirror cache was not written; a restart while the scanner is away starts empty");
    }
}

/// The view last kept of `scanner`, if any that decodes.
pub fn load(dir: &Path, scanner: &str) -> Option<Discovery> {
    use std::io::Read;
    let file = path(dir, scanner);
    let f = std::fs::File::open(&file).ok()?;
    let mut bytes = Vec::new();
    f.take(MAX_FILE).read_to_end(&mut bytes).ok()?;
    match ListHostHistoryResponse::decode(bytes.as_slice()) {
        Ok(msg) => {
            let mut d = Discovery::of(
                msg.hosts,
                msg.sweeps,
                DiscoverySource::Replica(scanner.into()),
            );
            d.last_sweep_unix = msg.as_of_unix;
            Some(d)
        }
        Err(e) => {
            warn!(path = %file.display(), error = %e, "the mirror cache does not decode; starting empty");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::{DiscoveredHost, HostHistory};

    #[test]
    fn a_kept_view_comes_back_and_junk_is_none() {
        let dir = tempfile::tempdir().unwrap();
        let view = Discovery::of(
            vec![HostHistory {
                host: Some(DiscoveredHost {
                    key: "mac:aa".into(),
                    ip: "198.18.0.5".into(),
                    ..Default::default()
                }),
                ..Default::default()
            }],
            vec![],
            DiscoverySource::Scanner,
        );
        save(dir.path(), "http://scan-iot:50052", &view);
        let back = load(dir.path(), "http://scan-iot:50052").unwrap();
        assert_eq!(back.hosts[0].ip, "198.18.0.5");
        assert!(load(dir.path(), "http://scan-lab:50052").is_none());
        std::fs::write(path(dir.path(), "x"), b"\xff\xff\xff junk").unwrap();
        assert!(load(dir.path(), "x").is_none());
    }
}
