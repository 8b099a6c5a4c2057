//! `mdb`: wires the command line to the library. No logic lives here.

use std::{process::ExitCode, time::Duration};

use clap::Parser;
use mdb::cli::args::{self as cli, Cli};

/// How long exit waits for blocking work still running (a validation, a
/// fetch being given up); the shutdown deadline has already passed by then.
const RUNTIME_EXIT_WAIT: Duration = Duration::from_millis(300);

fn main() -> ExitCode {
    mdb::memory::one_malloc_arena();
    let cli = Cli::parse();
    cli::init_logging(cli.log_format);
    cli::quiet_on_broken_pipe();
    mdb::cli::before_runtime(&cli);
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("mdb: cannot start the runtime: {e}");
            return ExitCode::from(2);
        }
    };
    let code = rt.block_on(mdb::cli::run(cli));
    rt.shutdown_timeout(RUNTIME_EXIT_WAIT);
    code
}
