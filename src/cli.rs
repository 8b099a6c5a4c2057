//! Command-line definitions (clap). Parsing only; `main` runs them.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Parser, Debug)]
#[command(
    name = "mdb",
    version,
    about = "The machine database: one source of truth for every machine on the lab network"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Serve the database over gRPC, syncing it from git.
    Serve(ServeArgs),
    /// Serve an embedded demo database (no GitHub account needed).
    Demo(DemoArgs),
    /// Check a DB checkout; prints every problem, exits 1 if there are any.
    Validate {
        /// The root of a DB repository checkout.
        path: PathBuf,
    },
    /// List machines from a running server.
    List(ListArgs),
    /// Show one machine by name, IP or MAC.
    Get {
        key: String,
        #[command(flatten)]
        conn: Conn,
        #[arg(long)]
        json: bool,
    },
    /// Totals, revision and sync status of a running server.
    Stats {
        #[command(flatten)]
        conn: Conn,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Args, Debug, Clone)]
pub struct Conn {
    /// The mdb gRPC address.
    #[arg(long, env = "MDB_SERVER", default_value = mdb::client::DEFAULT_SERVER)]
    pub server: String,
}

#[derive(Args, Debug)]
pub struct ServeArgs {
    /// TOML configuration file (see README "Configuration").
    #[arg(long, short)]
    pub config: Option<PathBuf>,
    /// DB repository URL (https://, file:// or a path).
    #[arg(long)]
    pub db_url: Option<String>,
    #[arg(long)]
    pub branch: Option<String>,
    /// File holding the GitHub token for the DB repository.
    #[arg(long)]
    pub token_file: Option<PathBuf>,
    /// Where the local checkout lives.
    #[arg(long)]
    pub checkout: Option<PathBuf>,
    #[arg(long)]
    pub grpc_listen: Option<String>,
    #[arg(long)]
    pub metrics_listen: Option<String>,
    /// How often to ask the remote for changes, e.g. 2m.
    #[arg(long)]
    pub poll_interval: Option<String>,
    /// How often to hard-reset the checkout to the remote, e.g. 1h.
    #[arg(long)]
    pub resync_interval: Option<String>,
}

#[derive(Args, Debug)]
pub struct DemoArgs {
    #[arg(long, default_value = "127.0.0.1:50051")]
    pub grpc_listen: String,
    #[arg(long, default_value = "127.0.0.1:9090")]
    pub metrics_listen: String,
}

#[derive(ValueEnum, Clone, Copy, Debug)]
pub enum UseArg {
    Cluster,
    Discover,
    Development,
    Games,
    Device,
}

#[derive(ValueEnum, Clone, Copy, Debug)]
pub enum ProvisionerArg {
    None,
    Primary,
    Secondary,
}

#[derive(Args, Debug)]
pub struct ListArgs {
    #[command(flatten)]
    pub conn: Conn,
    #[arg(long = "use", value_enum)]
    pub use_: Option<UseArg>,
    #[arg(long)]
    pub cluster: Option<String>,
    #[arg(long, value_enum)]
    pub provisioner: Option<ProvisionerArg>,
    /// key=value or key; repeat to require several.
    #[arg(long = "label")]
    pub labels: Vec<String>,
    #[arg(long)]
    pub json: bool,
}
