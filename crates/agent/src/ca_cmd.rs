//! `webwarden ca`: the root CA's certificate and its rotation.
//!
//! - `ca export` prints the certificate, creating the CA when it does not
//!   exist yet, so a user can trust it before the first run.
//! - `ca rotate` replaces the CA with a new one; a running agent picks it up
//!   within seconds.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};

use crate::ca_store::{CaStore, Keychain, CA_PREVIOUS_FILE};
use crate::{config, CliError};

/// `webwarden ca` subcommands.
#[derive(Debug, Subcommand)]
pub enum CaCommand {
    /// Print the root CA certificate (PEM) to standard output.
    Export(CaArgs),
    /// Replace the root CA with a new one and delete the old key.
    Rotate(CaArgs),
}

/// The CA's location: the arguments of every `webwarden ca` subcommand.
#[derive(Debug, Args)]
pub struct CaArgs {
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
    match command {
        CaCommand::Export(args) => export(args),
        CaCommand::Rotate(args) => rotate(args),
    }
}

fn export(args: &CaArgs) -> Result<ExitCode, CliError> {
    let opened = store(args)?
        .open_or_create()
        .map_err(|err| CliError::Failed(err.into()))?;
    std::io::stdout()
        .lock()
        .write_all(opened.ca.cert_pem().as_bytes())?;
    Ok(ExitCode::SUCCESS)
}

fn rotate(args: &CaArgs) -> Result<ExitCode, CliError> {
    let store = store(args)?;
    let rotation = store.rotate().map_err(|err| CliError::Failed(err.into()))?;
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "new root CA: {} (expires {}, key in {})",
        store.cert_path().display(),
        rotation.current.ca.not_after(),
        rotation.current.key_location
    )?;
    writeln!(
        out,
        "the old certificate (expires {}) is kept in {} and its key is deleted; a \
         running agent uses the new CA within seconds",
        rotation.previous.not_after(),
        store.cert_path().with_file_name(CA_PREVIOUS_FILE).display()
    )?;
    Ok(ExitCode::SUCCESS)
}

/// Opens the CA store of the configured data directory.
fn store(args: &CaArgs) -> Result<CaStore, CliError> {
    let (file, _) = config::load(args.config.as_deref()).map_err(CliError::Usage)?;
    let dir = config::data_dir(args.data_dir.as_deref(), &file)?;
    let keychain =
        Keychain::open(file.ca.key_storage).map_err(|err| CliError::Failed(err.into()))?;
    Ok(CaStore::new(&dir, keychain))
}
