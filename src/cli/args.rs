//! Command-line definitions (clap). Parsing only; `main` runs them.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Parser, Debug)]
#[command(
    name = "mdb",
    version = crate::VERSION,
    about = "The machine database: one source of truth for every machine on the lab network"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// Log lines as plain text or as one JSON object per line.
    #[arg(
        long,
        global = true,
        value_enum,
        default_value = "text",
        env = "MDB_LOG_FORMAT"
    )]
    pub log_format: LogFormat,
    /// For https:// servers: trust this CA (PEM) instead of the system's roots.
    #[arg(long, global = true, env = "MDB_CA_FILE", value_name = "PEM")]
    pub ca_file: Option<PathBuf>,
    /// The token the CLI shows servers and runners (else MDB_TOKEN);
    /// never the token itself on the command line.
    #[arg(long, global = true, env = "MDB_TOKEN_FILE", value_name = "FILE")]
    pub token_file: Option<PathBuf>,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ValidateFormat {
    Text,
    Github,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// Starts logging to stderr: colours only on a terminal, JSON on request.
pub fn init_logging(format: LogFormat) {
    use std::io::IsTerminal;
    let mut filter = tracing_subscriber::EnvFilter::try_from_env("MDB_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // The SNMP client logs each timeout of a router as an error; mdb says
    // it once per read, with its source. MDB_LOG=async_snmp=… brings it back.
    if !std::env::var("MDB_LOG").is_ok_and(|v| v.contains("async_snmp")) {
        if let Ok(quiet) = "async_snmp=off".parse() {
            filter = filter.add_directive(quiet);
        }
    }
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.with_ansi(std::io::stderr().is_terminal()).init(),
    }
}

/// `mdb list | head` closes stdout early; that ends the program quietly, as
/// it does for other Unix tools, instead of a panic from `println!`.
pub fn quiet_on_broken_pipe() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let text = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or("");
        if text.contains("Broken pipe") {
            std::process::exit(0);
        }
        default(info);
    }));
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
        /// Largest database file, as the server's `[db] max_file_size`.
        #[arg(long, default_value = "16MiB")]
        max_file_size: String,
        /// Largest total of the database files, as `[db] max_repo_size`.
        #[arg(long, default_value = "128MiB")]
        max_repo_size: String,
        /// `github` prints workflow annotations (::error file=...) that
        /// GitHub Actions shows on the pull request's lines.
        #[arg(long, value_enum, default_value = "text")]
        format: ValidateFormat,
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
        /// Also show its provisioning status from this runner.
        #[arg(long, env = "MDB_RUNNER")]
        runner: Option<String>,
    },
    /// Sweep subnets once (like arp-scan) and print what answered.
    Scan(ScanArgs),
    /// Wake a machine of the database (by name or MAC) with a Wake-on-LAN
    /// magic packet on the link of its subnet (this host must be on it).
    Wake {
        /// A machine name or MAC.
        target: String,
        /// Look it up in this DB checkout instead of asking the server.
        #[arg(long, value_name = "DIR")]
        db: Option<PathBuf>,
        #[command(flatten)]
        conn: Conn,
    },
    /// Hosts a running server's sweeps found, with their state.
    Discovered {
        #[command(flatten)]
        conn: Conn,
        /// Only hosts in this state.
        #[arg(long, value_enum)]
        state: Option<StateArg>,
        #[arg(long)]
        json: bool,
    },
    /// Simulated sweeps through the real history store, for figures and
    /// crash tests.
    #[command(hide = true)]
    HistoryBench {
        dir: std::path::PathBuf,
        #[arg(long, default_value_t = 100)]
        hosts: u32,
        #[arg(long, default_value_t = 1000)]
        sweeps: u32,
        #[arg(long, default_value = "5m")]
        interval: String,
        #[arg(long, default_value_t = 1_700_000_000)]
        start_unix: i64,
        /// Print `committed AT` on stderr after each sweep's write.
        #[arg(long)]
        announce: bool,
    },
    /// One discovered host's history: addresses over time, up/down transitions.
    History {
        /// An IP, MAC, DNS name, machine name or history key.
        key: String,
        #[command(flatten)]
        conn: Conn,
        #[arg(long)]
        json: bool,
    },
    /// Ansible dynamic inventory (`--list`, `--host NAME`) or a static one.
    Inventory {
        #[command(flatten)]
        source: Source,
        /// All groups and hostvars (what Ansible calls).
        #[arg(long, conflicts_with = "host")]
        list: bool,
        /// One host's variables.
        #[arg(long)]
        host: Option<String>,
        /// `yaml` writes a static inventory instead of the JSON.
        #[arg(long, value_enum, default_value = "json")]
        format: InventoryFormat,
        /// Add each host's provisioning status (mdb_provision_*) from this runner.
        #[arg(long, env = "MDB_RUNNER")]
        runner: Option<String>,
    },
    /// A cluster's nodes by role, or its inventory for k3s-ansible/kubespray.
    Cluster {
        name: String,
        #[command(flatten)]
        source: Source,
        #[arg(long, value_enum, default_value = "table")]
        format: ClusterFormat,
    },
    /// IP reservations.
    Ip {
        #[command(subcommand)]
        command: IpCommand,
    },
    /// Provision merged machines and rebuild changed clusters, driven by a
    /// server's Watch (runs until stopped).
    Provision(ProvisionArgs),
    /// Provisioning status of every machine and cluster, from a runner; with
    /// a NAME, that one's whole status and the end of its last run's output.
    Provisioned {
        /// A machine or cluster name.
        name: Option<String>,
        /// The runner's gRPC address.
        #[arg(long, env = "MDB_RUNNER", default_value = "http://127.0.0.1:50053")]
        runner: String,
        #[arg(long)]
        json: bool,
    },
    /// Shell completions for bash, zsh, fish, elvish or powershell.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// The man page (roff), e.g. `mdb man > /usr/local/share/man/man1/mdb.1`.
    Man,
    /// Write a validated entry for a new device into a DB checkout: the
    /// same entry an enrolment pull request proposes, without GitHub.
    Enrol(EnrolArgs),
    /// Static DHCP leases for every machine with a MAC and an IPv4 address;
    /// with --follow, applied to the DHCP server as the database changes.
    Dhcp {
        #[command(flatten)]
        source: Source,
        #[arg(long, value_enum, default_value = "dnsmasq")]
        format: DhcpFormat,
        /// Keep following the server and apply every change to the targets.
        #[arg(long)]
        follow: bool,
        #[command(flatten)]
        apply: DhcpFollowArgs,
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
    #[arg(long, env = "MDB_SERVER", default_value = crate::cli::client::DEFAULT_SERVER)]
    pub server: String,
}

#[derive(Args, Debug)]
pub struct ServeArgs {
    /// TOML configuration file (see README "Configuration").
    #[arg(long, short)]
    pub config: Option<PathBuf>,
    #[command(flatten)]
    pub flags: crate::config::Flags,
}

#[derive(Args, Debug)]
pub struct ScanArgs {
    /// Subnets or addresses, e.g. 198.18.0.0/24 127.0.0.1.
    #[arg(required = true)]
    pub targets: Vec<String>,
    /// A DB checkout to classify the hosts against (known, new, moved...).
    #[arg(long)]
    pub db: Option<PathBuf>,
    /// TCP ports to probe on live hosts, comma-separated.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "22,80,443,631,6443,9100,10250"
    )]
    pub ports: Vec<u16>,
    /// Probe no ports (liveness, MAC and vendor only).
    #[arg(long)]
    pub no_ports: bool,
    /// Skip reverse-DNS lookups.
    #[arg(long)]
    pub no_rdns: bool,
    /// Do not use raw ARP even where it is possible.
    #[arg(long)]
    pub no_arp: bool,
    /// Do not ask found hosts for their mDNS names and services.
    #[arg(long)]
    pub no_mdns: bool,
    /// Do not search an IPv4 segment's link for its hosts' IPv6 addresses
    /// (an IPv6 prefix given as a target is searched regardless).
    #[arg(long)]
    pub no_ipv6: bool,
    /// A DHCP lease file whose hostnames name hosts (dnsmasq, ISC dhcpd,
    /// Kea CSV); repeatable.
    #[arg(long, value_name = "FILE")]
    pub leases: Vec<PathBuf>,
    /// Probes per second at most [default: the range sent in 10 s, 10000 to 20000].
    #[arg(long)]
    pub rate: Option<u32>,
    /// The longest wait for one address's answer, e.g. 500ms; `auto` ends
    /// the sweep as the measured round trips suggest (at most 500ms).
    #[arg(long, default_value = "auto")]
    pub timeout: String,
    /// Passes over the silent addresses [default: one, then a check of the
    /// silent neighbours of hosts found; a check answered (loss) earns a
    /// second pass when it fits 10 s].
    #[arg(long)]
    pub tries: Option<u32>,
    /// Send ARP only on this interface.
    #[arg(long)]
    pub interface: Option<String>,
    /// Allow ranges larger than a /16.
    #[arg(long)]
    pub allow_large: bool,
    /// Print the GitHub issues a server would file or close, without filing.
    #[arg(long)]
    pub report: bool,
    #[arg(long)]
    pub json: bool,
}

#[derive(ValueEnum, Clone, Copy, Debug)]
pub enum StateArg {
    Known,
    Moved,
    Conflict,
    New,
    Missing,
    Unprovisionable,
    Scanner,
}

#[derive(Args, Debug)]
pub struct DemoArgs {
    #[arg(long, default_value = "127.0.0.1:50051")]
    pub grpc_listen: String,
    /// The page, /metrics and health; 9090 is left to Prometheus.
    #[arg(long, default_value = "127.0.0.1:50080")]
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
    /// Add a provisioning column from this runner.
    #[arg(long, env = "MDB_RUNNER")]
    pub runner: Option<String>,
}

#[derive(Args, Debug, Clone)]
pub struct ProvisionArgs {
    /// TOML configuration file with a `[provision]` section.
    #[arg(long, short)]
    pub config: Option<PathBuf>,
    #[command(flatten)]
    pub flags: crate::config::ProvisionFlags,
}

/// Where `mdb dhcp --follow` applies reservations.
#[derive(Args, Debug, Clone, Default)]
pub struct DhcpFollowArgs {
    /// TOML configuration file with a `[dhcp]` section.
    #[arg(long, short)]
    pub config: Option<PathBuf>,
    #[command(flatten)]
    pub flags: crate::dhcp::settings::DhcpFlags,
}

#[derive(Args, Debug, Clone)]
pub struct EnrolArgs {
    /// The device's IP address (or, with --from-server, its IP or MAC).
    pub key: String,
    /// The DB repository checkout to write the entry into.
    #[arg(long, env = "MDB_DB_PATH")]
    pub db: PathBuf,
    /// Take the device from a running server's discovery (vendor, MAC,
    /// ports, names) instead of the arguments.
    #[arg(long, value_name = "SERVER")]
    pub from_server: Option<String>,
    /// The device's MAC, when not taken from a server.
    #[arg(long)]
    pub mac: Option<String>,
    /// Its use: cluster, discover, development, games or device.
    #[arg(long = "use", value_name = "USE")]
    pub use_word: Option<String>,
    /// The machine name (default: from reverse DNS or vendor and MAC).
    #[arg(long)]
    pub name: Option<String>,
    /// Commit the new file in the checkout.
    #[arg(long)]
    pub commit: bool,
}

/// Where client commands read the database: a checkout, or a server.
#[derive(Args, Debug)]
pub struct Source {
    /// A DB repository checkout; without it, the server is asked.
    #[arg(long, env = "MDB_DB_PATH")]
    pub db: Option<PathBuf>,
    #[arg(long, env = "MDB_SERVER", default_value = crate::cli::client::DEFAULT_SERVER)]
    pub server: String,
}

#[derive(ValueEnum, Clone, Copy, Debug)]
pub enum InventoryFormat {
    Json,
    Yaml,
}

#[derive(ValueEnum, Clone, Copy, Debug)]
pub enum ClusterFormat {
    Table,
    Json,
    K3s,
    Kubespray,
}

#[derive(ValueEnum, Clone, Copy, Debug)]
pub enum DhcpFormat {
    Dnsmasq,
    Isc,
    Kea,
}

#[derive(Subcommand, Debug)]
pub enum IpCommand {
    /// The lowest free static address of a subnet (name or CIDR in mdb.yaml).
    Next {
        subnet: String,
        #[command(flatten)]
        source: Source,
    },
}
