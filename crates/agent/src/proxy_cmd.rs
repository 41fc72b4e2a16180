//! `webwarden proxy enable | disable | status`: points the OS proxy
//! settings at the agent's PAC file, restores the saved settings, and shows
//! which settings point at webwarden.
//!
//! These commands share the restore file (`DATA_DIR/proxy-restore.json`)
//! with `webwarden run --system-proxy`, so `disable` also restores settings
//! that a crashed agent left behind.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::anyhow;
use clap::{Args, Subcommand};
use serde::Serialize;
use webwarden_system::sysproxy::{
    BackendStatus, EnableOutcome, ProxyState, ProxyTarget, RestoreOutcome, SystemProxy,
};

use crate::config::{self, FileConfig};
use crate::system_proxy::{self, error_chain};
use crate::CliError;

/// The bound on connecting to the PAC server and on reading its response.
const PAC_CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// The maximum length, in characters, of a setting detail that `status`
/// prints. `--json` prints the whole detail.
const MAX_DETAIL_CHARS: usize = 100;

/// The largest PAC response read by the check.
const MAX_PAC_RESPONSE: u64 = 64 * 1024;

/// `webwarden proxy` subcommands.
#[derive(Debug, Subcommand)]
pub enum ProxyCommand {
    /// Save the current OS proxy settings, then point them at the agent's
    /// PAC file. They stay until `webwarden proxy disable`.
    Enable(EnableArgs),
    /// Restore the OS proxy settings saved by `enable` or by `webwarden run
    /// --system-proxy`.
    Disable(CommonArgs),
    /// Print one line per backend saying whether its settings point at
    /// webwarden. Exits with 0 when every available backend does, else 1.
    Status(StatusArgs),
}

/// The options of every `webwarden proxy` subcommand.
#[derive(Debug, Args)]
pub struct CommonArgs {
    /// Configuration file; without it, the default file if it exists.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// The agent's data directory, which contains the saved settings
    /// [default: from the configuration, else the OS data directory].
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
}

/// The addresses that the settings point at.
#[derive(Debug, Args)]
pub struct TargetArgs {
    /// The agent's PAC server address
    /// [default: `[system_proxy] pac_listen`, else 127.0.0.1:8898].
    #[arg(long, value_name = "ADDR")]
    pac_listen: Option<SocketAddr>,
    /// The agent's proxy address, for programs that read `http_proxy`
    /// [default: listen from the configuration, else 127.0.0.1:8899].
    #[arg(long, value_name = "ADDR")]
    listen: Option<SocketAddr>,
}

/// Arguments of `webwarden proxy enable`.
#[derive(Debug, Args)]
pub struct EnableArgs {
    #[command(flatten)]
    common: CommonArgs,
    #[command(flatten)]
    target: TargetArgs,
}

/// Arguments of `webwarden proxy status`.
#[derive(Debug, Args)]
pub struct StatusArgs {
    #[command(flatten)]
    common: CommonArgs,
    #[command(flatten)]
    target: TargetArgs,
    /// Print the status as JSON.
    #[arg(long)]
    json: bool,
}

/// The JSON form of `webwarden proxy status`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct StatusView<'a> {
    pac_url: &'a str,
    proxy: String,
    /// The restore file, when settings are saved.
    restore_file: Option<PathBuf>,
    backends: &'a [BackendStatus],
}

/// Runs a `webwarden proxy` subcommand.
pub fn run(command: &ProxyCommand) -> Result<ExitCode, CliError> {
    match command {
        ProxyCommand::Enable(args) => enable(args),
        ProxyCommand::Disable(args) => disable(args),
        ProxyCommand::Status(args) => status(args),
    }
}

fn enable(args: &EnableArgs) -> Result<ExitCode, CliError> {
    let (file, manager) = open(&args.common)?;
    let (target, pac_addr) = target(&args.target, &file)?;
    let report = manager
        .enable(&target)
        .map_err(|err| CliError::Failed(err.into()))?;

    let path = manager.restore_path().display();
    if report.kept_earlier {
        println!("kept the proxy settings saved by an earlier run in {path}");
    } else if manager.has_saved_settings() {
        println!("saved the current proxy settings to {path}");
    }
    println!("PAC file {}, proxy {}", target.pac_url, target.proxy_url());
    let mut failed = 0;
    for (backend, outcome) in &report.backends {
        match outcome {
            EnableOutcome::Applied => println!("{backend:12} set to webwarden"),
            EnableOutcome::Unavailable => println!("{backend:12} not available here"),
            EnableOutcome::Failed(err) => {
                failed += 1;
                println!("{backend:12} FAILED: {}", error_chain(err));
            }
        }
    }
    let applied = report
        .backends
        .iter()
        .filter(|(_, outcome)| matches!(outcome, EnableOutcome::Applied))
        .count();
    if applied == 0 && failed == 0 {
        eprintln!("error: no proxy settings backend is available here, so nothing changed");
        return Ok(ExitCode::FAILURE);
    }
    warn_unless_pac_served(&target, pac_addr);
    Ok(if failed > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

fn disable(args: &CommonArgs) -> Result<ExitCode, CliError> {
    let (_, manager) = open(args)?;
    let report = manager
        .disable()
        .map_err(|err| CliError::Failed(err.into()))?;
    let Some(report) = report else {
        println!(
            "nothing to restore: no saved proxy settings at {}",
            manager.restore_path().display()
        );
        return Ok(ExitCode::SUCCESS);
    };
    for (backend, outcome) in &report.backends {
        match outcome {
            RestoreOutcome::Restored => println!("{backend:12} restored"),
            RestoreOutcome::ChangedByUser => {
                println!("{backend:12} changed after webwarden set it; kept the current settings")
            }
            RestoreOutcome::Failed(err) => {
                println!("{backend:12} FAILED: {}", error_chain(err));
            }
        }
    }
    if report.file_kept {
        eprintln!(
            "error: the settings that were not restored stay saved in {}; run `webwarden proxy \
             disable` again after fixing the cause",
            manager.restore_path().display()
        );
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

fn status(args: &StatusArgs) -> Result<ExitCode, CliError> {
    let (file, manager) = open(&args.common)?;
    let (target, _) = target(&args.target, &file)?;
    let backends = manager.status(&target);
    let restore_file = manager
        .has_saved_settings()
        .then(|| manager.restore_path().to_owned());

    if args.json {
        let view = StatusView {
            pac_url: &target.pac_url,
            proxy: target.proxy.to_string(),
            restore_file,
            backends: &backends,
        };
        let text =
            serde_json::to_string_pretty(&view).map_err(|err| CliError::Failed(err.into()))?;
        writeln!(std::io::stdout().lock(), "{text}")?;
    } else {
        print_status(&backends, restore_file.as_deref())?;
    }

    let mut available = backends
        .iter()
        .filter(|backend| backend.state != ProxyState::Unavailable)
        .peekable();
    let any_available = available.peek().is_some();
    let all_ours = available.all(|backend| backend.state == ProxyState::Webwarden);
    Ok(if any_available && all_ours {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Prints one line per backend; a closed pipe (`| head`) is an I/O error
/// that ends the command quietly instead of a panic.
fn print_status(backends: &[BackendStatus], restore_file: Option<&Path>) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    for backend in backends {
        let mut detail: String = backend.detail.chars().take(MAX_DETAIL_CHARS).collect();
        if detail.len() < backend.detail.len() {
            detail.push_str("...");
        }
        writeln!(
            out,
            "{:12} {:11} {detail}",
            backend.backend,
            backend.state.as_str()
        )?;
    }
    match restore_file {
        Some(path) => writeln!(out, "saved settings: {}", path.display()),
        None => writeln!(out, "saved settings: none"),
    }
}

/// Reads the configuration and creates the manager of its backends.
fn open(args: &CommonArgs) -> Result<(FileConfig, SystemProxy), CliError> {
    let (file, _) = config::load(args.config.as_deref()).map_err(CliError::Usage)?;
    let data_dir = config::data_dir(args.data_dir.as_deref(), &file)?;
    let manager = system_proxy::manager(&file.system_proxy, &data_dir).map_err(CliError::Usage)?;
    Ok((file, manager))
}

/// Builds the target from the flags, the configuration and the defaults,
/// and returns it with the PAC server's address.
fn target(args: &TargetArgs, file: &FileConfig) -> Result<(ProxyTarget, SocketAddr), CliError> {
    let pac_listen = system_proxy::pac_listen(args.pac_listen, &file.system_proxy);
    let proxy = args.listen.or(file.listen).unwrap_or_else(|| {
        webwarden_proxy::DEFAULT_LISTEN
            .parse()
            .expect("valid default")
    });
    for (name, addr) in [("PAC listen", pac_listen), ("proxy listen", proxy)] {
        if addr.port() == 0 {
            return Err(CliError::Usage(anyhow!(
                "the {name} address {addr} has port 0; the OS settings need the fixed port the \
                 agent listens on"
            )));
        }
        if !addr.ip().is_loopback() {
            return Err(CliError::Usage(anyhow!(
                "the {name} address {addr} is not a loopback address; webwarden serves only this \
                 machine"
            )));
        }
    }
    let target = ProxyTarget {
        pac_url: webwarden_proxy::pac::pac_url(pac_listen),
        proxy,
    };
    Ok((target, pac_listen))
}

/// Warns on stderr when no agent serves the PAC file yet, since the
/// settings point at it.
fn warn_unless_pac_served(target: &ProxyTarget, addr: SocketAddr) {
    if let Err(reason) = fetch_pac(addr) {
        eprintln!(
            "warning: no webwarden agent serves {} ({reason}); until one runs with \
             --system-proxy or --pac-listen {addr}, browsers that use these settings cannot \
             load pages",
            target.pac_url
        );
    }
}

/// Requests the PAC file from `addr` and checks that it is one.
fn fetch_pac(addr: SocketAddr) -> Result<(), String> {
    let mut stream =
        TcpStream::connect_timeout(&addr, PAC_CHECK_TIMEOUT).map_err(|err| err.to_string())?;
    stream
        .set_read_timeout(Some(PAC_CHECK_TIMEOUT))
        .map_err(|err| err.to_string())?;
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n",
        webwarden_proxy::pac::PAC_PATH
    );
    stream
        .write_all(request.as_bytes())
        .map_err(|err| err.to_string())?;
    let mut response = Vec::new();
    stream
        .take(MAX_PAC_RESPONSE)
        .read_to_end(&mut response)
        .map_err(|err| err.to_string())?;
    let text = String::from_utf8_lossy(&response);
    if text.starts_with("HTTP/1.1 200") && text.contains("FindProxyForURL") {
        return Ok(());
    }
    let status_line = text.lines().next().unwrap_or("no response");
    Err(format!("it responded {status_line:?}, not a PAC file"))
}
