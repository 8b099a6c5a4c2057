//! Compiles `proto/` with protox, a pure-Rust protobuf compiler, so building
//! mdb needs no system `protoc`. The descriptor set is kept for gRPC reflection.

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
    let fds = protox::compile(["mdb/v1/mdb.proto"], ["proto"])?;
    let out = PathBuf::from(env::var("OUT_DIR")?);
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
