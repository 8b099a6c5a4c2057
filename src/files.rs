//! Reading a file whose size nobody promised: at most a bound, as text.

use std::{io::Read, path::Path};

/// The first `max` bytes of the file at `path` as text (bytes that are
/// not UTF-8 replaced); empty when it cannot be read.
pub fn read_bounded(path: &Path, max: u64) -> String {
    let mut bytes = Vec::new();
    if let Ok(f) = std::fs::File::open(path) {
        let _ = f.take(max).read_to_end(&mut bytes);
    }
    String::from_utf8_lossy(&bytes).into_owned()
}
