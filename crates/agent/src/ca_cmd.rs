//! `webwarden ca export`: prints the root CA certificate, creating the CA
//! when it does not exist yet, so a user can trust it before the first run.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};

use crate::ca_store::{CaStore, Keychain};
use crate::{config, CliError};

/// `webwarden ca` subcommands.
#[derive(Debug, Subcommand)]
pub enum CaCommand {
    /// Print the root CA certificate (PEM) to standard output.
    Export(ExportArgs),
}

/// Arguments of `webwarden ca export`.
#[derive(Debug, Args)]
pub struct ExportArgs {
    /// Directory that contains the CA [default: the configured or the OS
    /// data directory].
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Configuration file, for `data_dir` and `[ca] key_storage`; without
    /// it, the default file if it exists.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
}

/// Runs a `webwarden ca` subcommand.
pub fn run(command: &CaCommand) -> Result<ExitCode, CliError> {
    let CaCommand::Export(args) = command;
    let (file, _) = config::load(args.config.as_deref()).map_err(CliError::Usage)?;
    let dir = config::data_dir(args.data_dir.as_deref(), &file)?;
    let keychain =
        Keychain::open(file.ca.key_storage).map_err(|err| CliError::Failed(err.into()))?;
    let opened = CaStore::new(&dir, keychain)
        .open_or_create()
        .map_err(|err| CliError::Failed(err.into()))?;
    let ca = opened.ca;
    std::io::stdout()
        .lock()
        .write_all(ca.cert_pem().as_bytes())?;
    Ok(ExitCode::SUCCESS)
}
