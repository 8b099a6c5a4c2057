//! The command line: `args` (clap), one function per subcommand in
//! `commands` (mdb itself), `show` (reading a server), `sweep` (scans),
//! `feed` (exports) and `enrol`, and `client` (gRPC helpers and tables).
//! `main` only wires.

pub mod args;
pub mod client;
pub mod commands;
pub mod enrol;
pub mod feed;
pub mod show;
pub mod sweep;

use std::process::ExitCode;

use args::{Cli, Command};

/// sysexits' EX_CONFIG-adjacent EX_USAGE: bad configuration.
const EXIT_CONFIG: u8 = 64;

/// What a command needs before the runtime's threads start: a scan's
/// closer process (see `discover::scan::closer`).
pub fn before_runtime(cli: &Cli) {
    if matches!(cli.command, Command::Scan(_)) {
        crate::discover::scan::closer::start();
    }
}

/// Runs one parsed command line; the exit code says how it went.
pub async fn run(cli: Cli) -> ExitCode {
    if let Some(ca) = cli.ca_file {
        client::trust_ca_file(ca);
    }
    match client::credentials(cli.token_file.as_deref()) {
        Ok(c) => crate::dial::use_credentials(c),
        Err(e) => {
            eprintln!("mdb: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    }
    let result = match cli.command {
        Command::Validate {
            path,
            max_file_size,
            max_repo_size,
            format,
        } => return commands::validate(&path, &max_file_size, &max_repo_size, format),
        Command::Serve(args) => {
            let cfg = match commands::serve_config(&args) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("mdb: bad configuration: {e}");
                    return ExitCode::from(EXIT_CONFIG);
                }
            };
            crate::app::serve::run(cfg).await
        }
        Command::Demo(args) => commands::run_demo(args).await,
        Command::List(args) => show::list(args).await,
        Command::Get {
            key,
            conn,
            json,
            runner,
        } => show::get(&conn.server, &key, json, runner.as_deref()).await,
        Command::Stats { conn, json } => show::stats(&conn.server, json).await,
        Command::Scan(args) => return sweep::scan_command(args).await,
        Command::Wake { target, db, conn } => {
            feed::wake(&target, db.as_deref(), &conn.server).await
        }
        Command::Inventory {
            source,
            list: _,
            host,
            format,
            runner,
        } => feed::inventory(&source, host.as_deref(), format, runner.as_deref()).await,
        Command::Cluster {
            name,
            source,
            format,
        } => feed::cluster(&name, &source, format).await,
        Command::Ip {
            command: args::IpCommand::Next { subnet, source },
        } => feed::ip_next(&subnet, &source).await,
        Command::Dhcp {
            source,
            follow: true,
            apply,
            ..
        } => {
            let cfg = match commands::dhcp_config(&source, &apply) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("mdb: bad configuration: {e}");
                    return ExitCode::from(EXIT_CONFIG);
                }
            };
            crate::app::dhcp::run(cfg).await
        }
        Command::Dhcp { source, format, .. } => feed::dhcp(&source, format).await,
        Command::Enrol(args) => enrol::run(args).await,
        Command::Completions { shell } => {
            let mut cmd = <Cli as clap::CommandFactory>::command();
            clap_complete::generate(shell, &mut cmd, "mdb", &mut std::io::stdout());
            Ok(())
        }
        Command::Man => {
            let cmd = <Cli as clap::CommandFactory>::command();
            clap_mangen::Man::new(cmd)
                .render(&mut std::io::stdout())
                .map_err(anyhow::Error::from)
        }
        Command::Provision(args) => {
            let cfg = match commands::provision_config(&args) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("mdb: bad configuration: {e}");
                    return ExitCode::from(EXIT_CONFIG);
                }
            };
            crate::app::provision::run(cfg).await
        }
        Command::Provisioned { name, runner, json } => {
            commands::provisioned(&runner, name.as_deref(), json).await
        }
        Command::Discovered { conn, state, json } => {
            show::discovered(&conn.server, state, json).await
        }
        Command::HistoryBench {
            dir,
            hosts,
            sweeps,
            interval,
            start_unix,
            announce,
        } => sweep::history_bench(&dir, hosts, sweeps, &interval, start_unix, announce),
        Command::History { key, conn, json } => show::history(&conn.server, &key, json).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        // `mdb man | head`: the reader left; nothing went wrong here.
        Err(e) if is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mdb: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}
