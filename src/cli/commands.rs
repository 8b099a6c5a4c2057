//! The commands that start or check mdb itself (`validate`, `serve`,
//! `demo`, `provision` and its statuses), for `cli::run` to dispatch to.
//! Reading a server is in `show`, sweeping in `sweep`, feeding the lab in
//! `feed`. The logic lives in the library; these read arguments and print.

use std::{collections::HashMap, process::ExitCode};

use crate::{
    cli::{args as cli, client},
    config, db, demo,
};
use anyhow::Context;

pub fn validate(
    path: &std::path::Path,
    max_file: &str,
    max_repo: &str,
    format: cli::ValidateFormat,
) -> ExitCode {
    let limits = match (
        crate::units::parse_size(max_file),
        crate::units::parse_size(max_repo),
    ) {
        (Some(file_bytes), Some(repo_bytes)) => db::Limits {
            file_bytes,
            repo_bytes,
        },
        _ => {
            eprintln!("mdb: --max-file-size and --max-repo-size take sizes like 16MiB");
            return ExitCode::from(2);
        }
    };
    if !path.join("machines").is_dir() {
        eprintln!(
            "mdb: {} has no machines/ folder: give the root of a DB repository checkout",
            path.display()
        );
        return ExitCode::from(2);
    }
    let intake = match db::read_dir(path, limits) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("mdb: cannot read {}: {e}", path.display());
            return ExitCode::from(2);
        }
    };
    let read = intake.files.len();
    match intake.validate(crate::db::received::WORKING_TREE) {
        Ok(snap) => {
            println!(
                "ok: {} machines, {} clusters in {} files",
                snap.machines.len(),
                snap.cluster_names().count(),
                read
            );
            ExitCode::SUCCESS
        }
        Err(report) => {
            for p in &report.0 {
                match format {
                    cli::ValidateFormat::Text => println!("{p}"),
                    cli::ValidateFormat::Github => println!("{}", github_annotation(p)),
                }
            }
            eprintln!("mdb: {} problem(s) found", report.0.len());
            ExitCode::FAILURE
        }
    }
}

/// A problem as a GitHub Actions workflow command: the PR shows it on the line.
fn github_annotation(p: &db::Problem) -> String {
    // Workflow commands escape %, CR and LF in data, and also , and : in properties.
    let data = |s: &str| {
        s.replace('%', "%25")
            .replace('\r', "%0D")
            .replace('\n', "%0A")
    };
    let prop = |s: &str| data(s).replace(':', "%3A").replace(',', "%2C");
    let title = if p.field.is_empty() {
        "mdb validate".to_string()
    } else {
        format!("mdb validate: {}", p.field)
    };
    format!(
        "::error file={},line={},col={},title={}::{}",
        prop(&p.file),
        p.line,
        p.col,
        prop(&title),
        data(&p.message)
    )
}

/// A configuration file's settings, or none.
fn read_config(path: &Option<std::path::PathBuf>) -> Result<config::RawConfig, config::Error> {
    match path {
        Some(p) => config::read_file(p),
        None => Ok(config::RawConfig::default()),
    }
}

pub fn serve_config(a: &cli::ServeArgs) -> Result<config::Config, config::Error> {
    let env: HashMap<String, String> = std::env::vars().collect();
    config::resolve(read_config(&a.config)?, &env, &a.flags)
}

pub fn provision_config(a: &cli::ProvisionArgs) -> Result<crate::provision::Config, config::Error> {
    let env: HashMap<String, String> = std::env::vars().collect();
    config::resolve_provision(read_config(&a.config)?, &env, &a.flags)
}

/// `mdb dhcp --follow`'s settings: `[dhcp]` < environment < flags (the
/// server given with --server wins when it is not the default).
pub fn dhcp_config(
    source: &cli::Source,
    a: &cli::DhcpFollowArgs,
) -> Result<crate::dhcp::Config, config::Error> {
    let env: HashMap<String, String> = std::env::vars().collect();
    let server = Some(source.server.clone()).filter(|s| s != crate::cli::client::DEFAULT_SERVER);
    config::resolve_dhcp(read_config(&a.config)?, &env, &a.flags, server)
}

/// `mdb provisioned [NAME]`: the runner's statuses as a table or JSON;
/// one target's whole status with the end of its output.
pub async fn provisioned(runner: &str, name: Option<&str>, json: bool) -> anyhow::Result<()> {
    let answer = client::runner_statuses(runner).await?;
    if !answer.refused.is_empty() {
        eprintln!(
            "mdb: the runner refuses its revision: {}",
            crate::escape::terminal(&answer.refused)
        );
    }
    let word = client::result_word;
    let as_json = |s: &crate::proto::ProvisionStatus| {
        serde_json::json!({
            "target": s.target, "cluster": s.cluster, "result": word(s.result),
            "treatment": s.treatment, "applied_revision": s.applied_revision,
            "at_unix": s.at_unix, "reason": s.reason, "attempts": s.attempts,
            "output_tail": s.output_tail,
        })
    };
    let statuses = answer.statuses;
    if let Some(name) = name {
        let s = statuses
            .iter()
            .find(|s| s.target == name && !s.cluster)
            .or_else(|| statuses.iter().find(|s| s.target == name))
            .with_context(|| format!("the runner has no status for {name:?}"))?;
        if json {
            println!("{}", serde_json::to_string_pretty(&as_json(s))?);
        } else {
            print!("{}", client::status_detail(s));
        }
        return Ok(());
    }
    if json {
        let v: Vec<_> = statuses.iter().map(as_json).collect();
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    let rows: Vec<Vec<String>> = statuses
        .iter()
        .map(|s| {
            vec![
                if s.cluster {
                    format!("cluster {}", s.target)
                } else {
                    s.target.clone()
                },
                word(s.result).to_string(),
                if s.treatment.is_empty() {
                    "-".into()
                } else {
                    s.treatment.clone()
                },
                s.applied_revision.chars().take(12).collect(),
                s.reason.clone(),
            ]
        })
        .collect();
    print!(
        "{}",
        client::table(&["TARGET", "RESULT", "POLICY", "APPLIED", "REASON"], &rows)
    );
    Ok(())
}

pub async fn run_demo(args: cli::DemoArgs) -> anyhow::Result<()> {
    let dir = std::env::temp_dir().join(format!("mdb-demo-{}", std::process::id()));
    let origin = dir.join("origin.git");
    demo::create_repo(&origin).context("creating the demo repository")?;
    let env = HashMap::new();
    let flags = config::Flags {
        db: config::DbFlags {
            db_url: Some(origin.display().to_string()),
            checkout: Some(dir.join("checkout")),
            poll_interval: Some("10s".into()),
            ..Default::default()
        },
        scan: config::ScanFlags {
            interval: Some("30s".into()),
            state_dir: Some(dir.join("state")),
            ..Default::default()
        },
        grpc_listen: Some(args.grpc_listen.clone()),
        metrics_listen: Some(args.metrics_listen.clone()),
        ..Default::default()
    };
    // The demo sweeps only the loopback subnet of its own mdb.yaml.
    let raw: config::RawConfig =
        toml::from_str("[scan]\ndb_subnets = true\n").context("demo scan config")?;
    let cfg = config::resolve(raw, &env, &flags)?;
    eprintln!("mdb demo: database repository at {}", origin.display());
    eprintln!(
        "  try: mdb list --server {}   |   curl http://{}/metrics",
        args.grpc_listen, args.metrics_listen
    );
    eprintln!(
        "       grpcurl -plaintext {} mdb.v1.MachineDb/GetStats",
        args.grpc_listen
    );
    let result = crate::app::serve::run(cfg).await;
    let _ = std::fs::remove_dir_all(&dir);
    result
}
