//! `mdb`: wires the command line to the library. No logic lives here.

mod cli;
mod commands;

use std::{process::ExitCode, time::Duration};

use clap::Parser;
use cli::{Cli, Command};

/// sysexits' EX_CONFIG-adjacent EX_USAGE: bad configuration.
const EXIT_CONFIG: u8 = 64;

/// How long exit waits for blocking work still running (a validation, a
/// fetch being given up); the shutdown deadline has already passed by then.
const RUNTIME_EXIT_WAIT: Duration = Duration::from_millis(300);

fn main() -> ExitCode {
    let cli = Cli::parse();
    cli::init_logging(cli.log_format);
    cli::quiet_on_broken_pipe();
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("mdb: cannot start the runtime: {e}");
            return ExitCode::from(2);
        }
    };
    let code = rt.block_on(run(cli));
    rt.shutdown_timeout(RUNTIME_EXIT_WAIT);
    code
}

async fn run(cli: Cli) -> ExitCode {
    let result = match cli.command {
        Command::Validate {
            path,
            max_file_size,
            max_repo_size,
        } => return commands::validate(&path, &max_file_size, &max_repo_size),
        Command::Serve(args) => {
            let cfg = match commands::serve_config(&args) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("mdb: bad configuration: {e}");
                    return ExitCode::from(EXIT_CONFIG);
                }
            };
            commands::serve(cfg).await
        }
        Command::Demo(args) => commands::run_demo(args).await,
        Command::List(args) => commands::list(args).await,
        Command::Get { key, conn, json } => commands::get(&conn.server, &key, json).await,
        Command::Stats { conn, json } => commands::stats(&conn.server, json).await,
        Command::Scan(args) => return commands::scan_command(args).await,
        Command::Inventory {
            source,
            list: _,
            host,
            format,
        } => commands::inventory(&source, host.as_deref(), format).await,
        Command::Cluster {
            name,
            source,
            format,
        } => commands::cluster(&name, &source, format).await,
        Command::Ip {
            command: cli::IpCommand::Next { subnet, source },
        } => commands::ip_next(&subnet, &source).await,
        Command::Dhcp { source, format } => commands::dhcp(&source, format).await,
        Command::Discovered { conn, state, json } => {
            commands::discovered(&conn.server, state, json).await
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mdb: {e:#}");
            ExitCode::FAILURE
        }
    }
}
