//! The webwarden agent: the `webwarden` command-line program, and the
//! agent runtime that the tray app runs in its own process ([`Agent`]).
//!
//! The commands:
//!
//! - `webwarden run`: runs the filtering proxy.
//! - `webwarden check`: decides URLs, hosts and IP addresses against lists.
//! - `webwarden list stats`: reports what list files contain and cost.
//! - `webwarden list build`: merges public sources into one categorized list.
//! - `webwarden list keygen | sign | verify`: signs the central list.
//! - `webwarden ca export | rotate`: prints or replaces the root CA.
//! - `webwarden ca install | uninstall | status`: adds the root CA to the
//!   system and browser trust stores, removes it, and checks each store.
//! - `webwarden siem test`: sends a test event to each SIEM sink.
//! - `webwarden status`: shows the running agent's lists and sinks.
//! - `webwarden proxy enable | disable | status`: points the OS proxy
//!   settings at webwarden, restores them, and shows where they point.

use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

mod agent_lock;
mod alloc;
mod ca_cmd;
mod ca_store;
mod ca_watch;
mod check;
mod config;
mod list_build;
mod lists;
mod logging;
mod pause;
mod policy_file;
mod proxy_cmd;
mod run;
mod siem;
mod sign_cmd;
mod signing;
mod stats;
mod status;
mod system_proxy;
mod updates;

use lists::ListSpec;

pub use config::TraySection;
pub use logging::init as init_logging;
pub use pause::{PauseError, MAX_PAUSE};
pub use run::{Agent, AgentHandle, BlockNotice, RunArgs};
pub use status::{age_text, AgentStatus, CaView, SinkView, TrustStoreView};
pub use updates::ListStatus;

// Counting is off unless `webwarden list stats` starts it, so every other
// program linking the agent pays one relaxed load per allocation.
#[global_allocator]
static ALLOCATOR: alloc::CountingAllocator = alloc::CountingAllocator;

/// Per-workstation web filter.
#[derive(Debug, Parser)]
#[command(name = "webwarden", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the filtering proxy until SIGINT or SIGTERM.
    Run(run::RunArgs),
    /// Check URLs, hosts or IP addresses against the lists and print one
    /// JSON verdict per target.
    Check(check::CheckArgs),
    /// Work with list files.
    #[command(subcommand)]
    List(ListCommand),
    /// Work with the local root CA.
    #[command(subcommand)]
    Ca(ca_cmd::CaCommand),
    /// Work with the SIEM export.
    #[command(subcommand)]
    Siem(siem::SiemCommand),
    /// Show whether the agent runs, its lists' versions and age, and each
    /// SIEM sink's backlog.
    Status(status::StatusArgs),
    /// Point the OS proxy settings at webwarden, restore them, or show
    /// where they point.
    #[command(subcommand)]
    Proxy(proxy_cmd::ProxyCommand),
}

#[derive(Debug, Subcommand)]
enum ListCommand {
    /// Print rule counts by kind and category, bad rows, load time and memory.
    Stats(stats::StatsArgs),
    /// Merge hosts files, domain lists, IP lists and UT1-style category
    /// folders into one categorized CSV list, and report what was dropped.
    Build(list_build::BuildArgs),
    /// Generate the key pair that signs the central list: a secret key for
    /// the administrator and a public key for the agents.
    Keygen(sign_cmd::KeygenArgs),
    /// Sign a list file, writing the minisign signature to LIST.minisig.
    Sign(sign_cmd::SignArgs),
    /// Verify a list file against its signature and print the trusted
    /// comment. Exits with 1 when the signature does not verify.
    Verify(sign_cmd::VerifyArgs),
}

/// The list options shared by commands that load lists.
#[derive(Debug, Args)]
struct ListArgs {
    /// A list to load (repeatable): `builtin` for the built-in default list,
    /// a path with the format detected, or
    /// `path=FILE,format=csv|hosts|domains|ips,category=NAME,action=block|allow`.
    /// Without any, the built-in default list is used.
    #[arg(long = "list", value_name = "LIST")]
    lists: Vec<ListSpec>,
    /// Reject a list with any bad row instead of skipping the row.
    #[arg(long)]
    strict: bool,
}

/// How a command failed, which decides the exit status.
#[derive(Debug)]
pub enum CliError {
    /// Bad arguments or lists the user must fix: exit status 2.
    Usage(anyhow::Error),
    /// Anything else: exit status 1.
    Failed(anyhow::Error),
}

impl From<std::io::Error> for CliError {
    fn from(err: std::io::Error) -> CliError {
        CliError::Failed(err.into())
    }
}

/// Checks whether the error is a closed output pipe (`webwarden ... | head`),
/// which ends the command quietly, as other command-line tools do.
fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.downcast_ref::<std::io::Error>()
        .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
}

impl std::fmt::Display for CliError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CliError::Usage(err) | CliError::Failed(err) => write!(f, "{err:#}"),
        }
    }
}

impl std::error::Error for CliError {}

/// Runs the `webwarden` command named by the process's arguments and
/// returns its exit status.
pub fn cli_main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run(args) => run::run(&args),
        Command::Check(args) => check::run(&args),
        Command::Ca(command) => ca_cmd::run(&command),
        Command::Siem(command) => siem::run(&command),
        Command::Status(args) => status::run(&args),
        Command::Proxy(command) => proxy_cmd::run(&command),
        Command::List(ListCommand::Stats(args)) => stats::run(&args),
        Command::List(ListCommand::Build(args)) => list_build::run(&args),
        Command::List(ListCommand::Keygen(args)) => sign_cmd::run_keygen(&args),
        Command::List(ListCommand::Sign(args)) => sign_cmd::run_sign(&args),
        Command::List(ListCommand::Verify(args)) => sign_cmd::run_verify(&args),
    };
    match result {
        Ok(code) => code,
        Err(CliError::Usage(err)) => {
            eprintln!("error: {err:#}");
            ExitCode::from(2)
        }
        Err(CliError::Failed(err)) if is_broken_pipe(&err) => ExitCode::SUCCESS,
        Err(CliError::Failed(err)) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
