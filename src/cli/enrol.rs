//! `mdb enrol`: accept a device by hand without writing YAML. The entry is
//! the one an enrolment pull request would propose, validated with the
//! whole checkout before anything is written; bad input changes nothing.

use std::path::Path;

use anyhow::{bail, Context};

use crate::{
    cli::{args::EnrolArgs, client},
    db::{self, words::USE_KINDS, Snapshot},
    github::entry::{Entry, Held},
    net::Mac,
    proto::{DiscoveredHost, GetDiscoveredRequest, HostState},
};

pub async fn run(a: EnrolArgs) -> anyhow::Result<()> {
    let intake = db::read_dir(&a.db, db::Limits::default())
        .with_context(|| format!("reading {}", a.db.display()))?;
    let files = intake.files.clone();
    let snap = intake
        .validate(crate::db::received::WORKING_TREE)
        .map_err(|r| {
            anyhow::anyhow!("the database at {} is invalid already: {r}", a.db.display())
        })?;
    let host = match &a.from_server {
        Some(server) => from_server(server, &a.key).await?,
        None => from_args(&a)?,
    };
    let mut entry = Entry::for_host(&host, &snap, &Held::default())?;
    if let Some(name) = &a.name {
        rename(&mut entry, name, &snap)?;
    }
    if let Err(report) = entry.check(&files) {
        bail!("the entry would make the database invalid: {report}");
    }
    write(&a.db, &entry.path(), &entry.yaml())?;
    if a.commit {
        commit(&a.db, &entry)?;
    }
    println!("wrote {}: {} at {}", entry.path(), entry.name, entry.ip);
    print!("{}", entry.yaml());
    Ok(())
}

/// The device as a running server's sweeps saw it.
async fn from_server(server: &str, key: &str) -> anyhow::Result<DiscoveredHost> {
    let mut c = client::connect(server).await?;
    let host = c
        .get_discovered(GetDiscoveredRequest {
            key: key.to_string(),
        })
        .await
        .map_err(|s| anyhow::anyhow!("{}: {}", server, s.message()))?
        .into_inner();
    if HostState::try_from(host.state) != Ok(HostState::New) {
        bail!(
            "{key} is not a new device (it is {}{})",
            db::words::state_name(host.state),
            if host.machine.is_empty() {
                String::new()
            } else {
                format!(", machine {}", host.machine)
            }
        );
    }
    Ok(host)
}

/// The device as the arguments describe it.
fn from_args(a: &EnrolArgs) -> anyhow::Result<DiscoveredHost> {
    if a.key.parse::<Mac>().is_ok() {
        bail!(
            "{} is a MAC; without --from-server give the IP address (and --mac)",
            a.key
        );
    }
    let ip: std::net::IpAddr = a
        .key
        .parse()
        .with_context(|| format!("{:?} is not an IP address", a.key))?;
    let mac = match &a.mac {
        Some(m) => m.parse::<Mac>()?.to_string(),
        None => String::new(),
    };
    let guessed_use = match &a.use_word {
        Some(w) => USE_KINDS
            .iter()
            .find(|(word, _)| word == w)
            .map(|(_, k)| *k as i32)
            .with_context(|| {
                format!("--use {w:?} is not one of: cluster, discover, development, games, device")
            })?,
        None => 0,
    };
    Ok(DiscoveredHost {
        ip: ip.to_string(),
        mac,
        state: HostState::New as i32,
        guessed_use,
        ..Default::default()
    })
}

fn rename(entry: &mut Entry, name: &str, snap: &Snapshot) -> anyhow::Result<()> {
    db::load::check_dns_label(name).map_err(|why| anyhow::anyhow!("--name {name:?} {why}"))?;
    if snap.by_name(name).is_some() {
        bail!("--name {name:?} is taken by a machine already");
    }
    entry.name = name.to_string();
    Ok(())
}

/// Writes a new file at `rel` inside the checkout, never through a link:
/// each folder on the way must be a real folder of the checkout, and the
/// file must not exist (not even as a dangling link).
fn write(root: &Path, rel: &str, text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let mut dir = root.to_path_buf();
    let parts: Vec<&str> = rel.split('/').collect();
    let (file, folders) = parts.split_last().context("empty path")?;
    for part in folders {
        dir.push(part);
        match std::fs::symlink_metadata(&dir) {
            Ok(m) if m.file_type().is_symlink() => bail!(
                "{} is a symbolic link; mdb does not write through links",
                dir.strip_prefix(root).unwrap_or(&dir).display()
            ),
            Ok(m) if m.is_dir() => {}
            Ok(_) => bail!("{} is not a folder", dir.display()),
            Err(_) => {
                std::fs::create_dir(&dir).with_context(|| format!("creating {}", dir.display()))?
            }
        }
    }
    let path = dir.join(file);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::AlreadyExists => anyhow::anyhow!("{rel} exists already"),
            _ => anyhow::anyhow!("writing {}: {e}", path.display()),
        })?;
    f.write_all(text.as_bytes())
        .with_context(|| format!("writing {}", path.display()))
}

fn commit(root: &Path, entry: &Entry) -> anyhow::Result<()> {
    let repo = git2::Repository::open(root)
        .with_context(|| format!("{} is not a git checkout", root.display()))?;
    let mut index = repo.index()?;
    index.add_path(Path::new(&entry.path()))?;
    index.write()?;
    let tree = repo.find_tree(index.write_tree()?)?;
    let sig = repo
        .signature()
        .or_else(|_| git2::Signature::now("mdb", "mdb@localhost"))?;
    let parent = repo.head().ok().and_then(|h| h.peel_to_commit().ok());
    let parents: Vec<&git2::Commit> = parent.iter().collect();
    let message = format!("Enrol {} at {}", entry.name, entry.ip);
    repo.commit(Some("HEAD"), &sig, &sig, &message, &tree, &parents)?;
    Ok(())
}
