//! Compiles `proto/` with protox, a pure-Rust protobuf compiler, so building
//! mdb needs no system `protoc`. The descriptor set is kept for gRPC reflection.
//! Also writes the vendor table (`vendor_table`).

use std::{env, fs, path::PathBuf};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    // `mdb --version` names the commit it was built from, when git knows it.
    println!("cargo:rerun-if-changed=.git/HEAD");
    println!("cargo:rerun-if-changed=.git/refs/heads");
    let rev = std::process::Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .filter(|r| !r.is_empty())
        .or_else(|| env::var("MDB_GIT_REVISION").ok())
        .unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=MDB_GIT_REVISION={rev}");
    let out = PathBuf::from(env::var("OUT_DIR")?);
    fs::write(out.join("vendors.bin"), vendor_table())?;
    let fds = protox::compile(["mdb/v1/mdb.proto"], ["proto"])?;
    fs::write(
        out.join("mdb_descriptor.bin"),
        prost::Message::encode_to_vec(&fds),
    )?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(fds)?;
    Ok(())
}

/// The IEEE registry (oui-data's table) as one blob the binary includes:
/// oui-data's own table is some 200,000 pointers that the loader relocates
/// at every start (4 ms of each `mdb scan`). Layout, little-endian: the
/// record count (u32); per record, sorted by key, the key (u64: the
/// prefix's hex digit count << 40 | its value), the name's offset (u32)
/// and length (u16) in the names that follow the records.
fn vendor_table() -> Vec<u8> {
    let mut records: Vec<(u64, &str)> = oui_data::OUI_ENTRIES
        .entries()
        .map(|(prefix, data)| {
            // A prefix that is not hex means oui-data changed its format:
            // the build says so rather than losing vendors quietly.
            let value = u64::from_str_radix(prefix, 16)
                .unwrap_or_else(|_| panic!("oui-data prefix {prefix:?} is not hex"));
            ((prefix.len() as u64) << 40 | value, data.organization())
        })
        .collect();
    records.sort_unstable();
    let mut names = String::new();
    let mut blob = (records.len() as u32).to_le_bytes().to_vec();
    for (key, name) in records {
        blob.extend_from_slice(&key.to_le_bytes());
        blob.extend_from_slice(&(names.len() as u32).to_le_bytes());
        blob.extend_from_slice(&(name.len().min(usize::from(u16::MAX)) as u16).to_le_bytes());
        names.push_str(name);
    }
    blob.extend_from_slice(names.as_bytes());
    blob
}
