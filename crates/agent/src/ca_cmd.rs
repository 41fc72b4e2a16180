//! `webwarden ca export`: prints the root CA certificate, creating the CA
//! when it does not exist yet, so a user can trust it before the first run.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};
use webwarden_proxy::LocalCa;

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
    /// Directory that contains the CA [default: the OS data directory].
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
}

/// Runs a `webwarden ca` subcommand.
pub fn run(command: &CaCommand) -> Result<ExitCode, CliError> {
    let CaCommand::Export(args) = command;
    let dir = match &args.data_dir {
        Some(dir) => dir.clone(),
        None => config::default_data_dir().map_err(CliError::Usage)?,
    };
    let (ca, _) = LocalCa::load_or_create(&dir).map_err(|err| CliError::Failed(err.into()))?;
    std::io::stdout()
        .lock()
        .write_all(ca.cert_pem().as_bytes())?;
    Ok(ExitCode::SUCCESS)
}
