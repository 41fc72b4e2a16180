//! `webwarden ca`: the local root CA and the trust stores that accept it.
//!
//! - `export` prints the CA certificate, creating the CA when it does not
//!   exist yet, so a user can trust it before the first run.
//! - `install` adds it to the system trust store and the browsers' NSS
//!   databases, `uninstall` removes it, and `status` reports each store.
//!   The stores themselves are in [`webwarden_system::trust`].
//! - `rotate` replaces the CA with a new one, and the new certificate
//!   replaces the old one in every store that trusted the old one.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{anyhow, Context};
use clap::{Args, Subcommand, ValueEnum};
use webwarden_system::trust::{
    self, CaCertificate, Change, StoreKind, TrustError, TrustState, TrustStore,
};

use crate::ca_store::{CaStore, Keychain, CA_CERT_FILE, CA_PREVIOUS_FILE};
use crate::{config, CliError};

mod report;

use report::{
    absolute, error_chain, exit_code, failure_text, print_ca, print_rows, print_status_json,
    shell_quote, warn_about_sudo_home, Row,
};

/// `webwarden ca` subcommands.
#[derive(Debug, Subcommand)]
pub enum CaCommand {
    /// Print the root CA certificate (PEM) to standard output.
    Export(ExportArgs),
    /// Add the root CA to the trust stores, creating the CA first when
    /// there is none. Prints one line per store and exits with 1 when any
    /// store failed. The system store needs administrator rights (sudo).
    Install(InstallArgs),
    /// Remove the root CA from the trust stores. The CA is identified by
    /// DATA_DIR/ca.pem or by --cert, so CAs that were replaced earlier
    /// stay trusted until removed with --cert. Exits with 1 when any store
    /// failed.
    Uninstall(UninstallArgs),
    /// Show whether each trust store trusts the root CA. Exits with 0 when
    /// every store found trusts it, and 1 otherwise.
    Status(StatusArgs),
    /// Replace the root CA with a new one, delete the old key, and put the
    /// new certificate in place of the old one in every store that trusted
    /// it. Exits with 1 when any store failed.
    Rotate(RotateArgs),
}

/// The CA's location, shared by every `webwarden ca` subcommand.
#[derive(Debug, Args)]
pub struct CaLocation {
    /// Directory that contains the CA [default: the configured or the OS
    /// data directory].
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Configuration file, for `data_dir` and `[ca] key_storage`; without
    /// it, the default file if it exists.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
}

/// Arguments of `webwarden ca export`.
#[derive(Debug, Args)]
pub struct ExportArgs {
    #[command(flatten)]
    location: CaLocation,
}

/// Arguments of `webwarden ca install`.
#[derive(Debug, Args)]
pub struct InstallArgs {
    #[command(flatten)]
    location: CaLocation,
    /// The stores to change.
    #[arg(long, value_enum, default_value_t = StoreChoice::All)]
    store: StoreChoice,
}

/// Arguments of `webwarden ca uninstall`.
#[derive(Debug, Args)]
pub struct UninstallArgs {
    #[command(flatten)]
    location: CaLocation,
    /// The stores to change.
    #[arg(long, value_enum, default_value_t = StoreChoice::All)]
    store: StoreChoice,
    /// Remove the CA in this PEM file instead of DATA_DIR/ca.pem. When
    /// ca.pem is gone, pass the installed copy, such as
    /// /usr/local/share/ca-certificates/webwarden-ID.crt on Debian.
    #[arg(long, value_name = "FILE")]
    cert: Option<PathBuf>,
}

/// Arguments of `webwarden ca status`.
#[derive(Debug, Args)]
pub struct StatusArgs {
    #[command(flatten)]
    location: CaLocation,
    /// The stores to check.
    #[arg(long, value_enum, default_value_t = StoreChoice::All)]
    store: StoreChoice,
    /// Check the CA in this PEM file instead of DATA_DIR/ca.pem.
    #[arg(long, value_name = "FILE")]
    cert: Option<PathBuf>,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    json: bool,
}

/// Arguments of `webwarden ca rotate`.
#[derive(Debug, Args)]
pub struct RotateArgs {
    #[command(flatten)]
    location: CaLocation,
}

/// The `--store` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum StoreChoice {
    /// The operating system's store, which needs administrator rights.
    System,
    /// The NSS databases of Chromium and every Firefox profile under HOME
    /// (Linux).
    Browsers,
    /// Both.
    All,
}

impl StoreChoice {
    fn includes(self, kind: StoreKind) -> bool {
        match self {
            StoreChoice::System => kind == StoreKind::System,
            StoreChoice::Browsers => kind == StoreKind::Browser,
            StoreChoice::All => true,
        }
    }
}

/// Runs a `webwarden ca` subcommand.
pub fn run(command: &CaCommand) -> Result<ExitCode, CliError> {
    match command {
        CaCommand::Export(args) => export(args),
        CaCommand::Install(args) => install(args),
        CaCommand::Uninstall(args) => uninstall(args),
        CaCommand::Status(args) => status(args),
        CaCommand::Rotate(args) => rotate(args),
    }
}

fn export(args: &ExportArgs) -> Result<ExitCode, CliError> {
    let store = ca_store(&args.location)?;
    let pem = load_ca_pem(&store, IfMissing::Create)?;
    std::io::stdout().lock().write_all(pem.as_bytes())?;
    Ok(ExitCode::SUCCESS)
}

fn install(args: &InstallArgs) -> Result<ExitCode, CliError> {
    let store = ca_store(&args.location)?;
    let pem = load_ca_pem(&store, IfMissing::Create)?;
    let ca = CaSource::DataDir(store.dir().to_owned()).parse(&pem)?;
    change_stores(&ca, args.store, "install", |store| {
        store.install(&ca.certificate)
    })
}

fn uninstall(args: &UninstallArgs) -> Result<ExitCode, CliError> {
    let hint = "webwarden cannot tell which CA to remove; pass --cert with a copy of it, \
                such as /usr/local/share/ca-certificates/webwarden-<id>.crt";
    let ca = find_ca(&args.location, args.cert.as_deref(), hint)?;
    change_stores(&ca, args.store, "uninstall", |store| {
        store.uninstall(&ca.certificate)
    })
}

fn status(args: &StatusArgs) -> Result<ExitCode, CliError> {
    let hint = "`webwarden ca install` creates one and trusts it";
    let ca = find_ca(&args.location, args.cert.as_deref(), hint)?;
    let stores = selected_stores(args.store);
    let states: Vec<_> = stores
        .iter()
        .map(|store| store.status(&ca.certificate))
        .collect();
    let all_trusted = states
        .iter()
        .all(|state| state.as_ref().is_ok_and(TrustState::is_trusted));

    if args.json {
        print_status_json(&ca, &stores, &states, all_trusted)?;
    } else {
        print_ca(&ca)?;
        let rows: Vec<Row> = stores
            .iter()
            .zip(&states)
            .map(|(store, state)| Row {
                name: store.name(),
                location: store.location(),
                result: match state {
                    Ok(state) => state.to_string(),
                    Err(err) => format!("FAILED: {}", error_chain(err)),
                },
            })
            .collect();
        print_rows(&rows)?;
    }
    Ok(exit_code(all_trusted))
}

fn rotate(args: &RotateArgs) -> Result<ExitCode, CliError> {
    let store = ca_store(&args.location)?;
    // The stores that trust the current CA are found before it changes.
    let current = load_ca_pem(
        &store,
        IfMissing::Fail {
            hint: "`webwarden ca install` creates one and trusts it",
        },
    )?;
    let old = CaSource::DataDir(store.dir().to_owned()).parse(&current)?;
    let stores = selected_stores(StoreChoice::All);
    let trusting: Vec<bool> = stores
        .iter()
        .map(|trust_store| {
            trust_store
                .status(&old.certificate)
                .is_ok_and(|state| state.is_trusted())
        })
        .collect();

    let rotation = store.rotate().map_err(|err| CliError::Failed(err.into()))?;
    let new = CaSource::DataDir(store.dir().to_owned()).parse(rotation.current.ca.cert_pem())?;
    let previous_path = store.dir().join(CA_PREVIOUS_FILE);
    println!(
        "old CA: {} (expires {}, kept in {})",
        old.certificate.sha256_hex(),
        rotation.previous.not_after(),
        previous_path.display()
    );
    print_ca(&new)?;
    println!("key: {}", rotation.current.key_location);

    let admin_command = format!(
        "ca install --store system {} && sudo webwarden ca uninstall --store system --cert {}",
        new.source.options(),
        shell_quote(&absolute(&previous_path))
    );
    let mut any_failed = false;
    let mut rows = Vec::new();
    for (trust_store, trusted) in stores.iter().zip(trusting) {
        let result = if trusted {
            swap(trust_store.as_ref(), &old.certificate, &new.certificate)
        } else {
            Ok("old CA was not trusted here; left alone".to_owned())
        };
        rows.push(Row {
            name: trust_store.name(),
            location: trust_store.location(),
            result: result.unwrap_or_else(|err| {
                any_failed = true;
                failure_text(&err, &admin_command)
            }),
        });
    }
    print_rows(&rows)?;
    println!("a running agent uses the new CA within seconds");
    Ok(exit_code(!any_failed))
}

/// Installs `new` in `store`, then removes `old`, so the store never
/// trusts neither.
fn swap(
    store: &dyn TrustStore,
    old: &CaCertificate,
    new: &CaCertificate,
) -> Result<String, TrustError> {
    store.install(new)?;
    store.uninstall(old)?;
    Ok("new CA installed, old CA removed".to_owned())
}

/// A CA certificate and the file it came from.
struct LoadedCa {
    certificate: CaCertificate,
    source: CaSource,
}

/// Where a CA certificate came from, which decides how to name it again on
/// a suggested command line.
#[derive(Debug, Clone)]
enum CaSource {
    /// `ca.pem` in this data directory.
    DataDir(PathBuf),
    /// A file named with `--cert`.
    File(PathBuf),
}

impl CaSource {
    fn path(&self) -> PathBuf {
        match self {
            CaSource::DataDir(dir) => dir.join(CA_CERT_FILE),
            CaSource::File(path) => path.clone(),
        }
    }

    /// Returns the options that select this CA again, with absolute paths.
    fn options(&self) -> String {
        match self {
            CaSource::DataDir(dir) => format!("--data-dir {}", shell_quote(&absolute(dir))),
            CaSource::File(path) => format!("--cert {}", shell_quote(&absolute(path))),
        }
    }

    fn parse(self, pem: &str) -> Result<LoadedCa, CliError> {
        let certificate = CaCertificate::from_pem(pem)
            .with_context(|| format!("failed to use {}", self.path().display()))
            .map_err(CliError::Failed)?;
        Ok(LoadedCa {
            certificate,
            source: self,
        })
    }
}

/// Returns the CA in `cert` when given, else the data directory's, which
/// must exist: a missing CA is an error that ends with `hint`.
fn find_ca(
    location: &CaLocation,
    cert: Option<&Path>,
    hint: &'static str,
) -> Result<LoadedCa, CliError> {
    if let Some(path) = cert {
        let pem = std::fs::read_to_string(path)
            .with_context(|| format!("failed to read {}", path.display()))
            .map_err(CliError::Usage)?;
        return CaSource::File(path.to_owned()).parse(&pem);
    }
    let store = ca_store(location)?;
    let pem = load_ca_pem(&store, IfMissing::Fail { hint })?;
    CaSource::DataDir(store.dir().to_owned()).parse(&pem)
}

/// The action of [`load_ca_pem`] when the data directory has no CA.
#[derive(Debug, Clone, Copy)]
enum IfMissing {
    /// Create the CA, as `webwarden run` does on first start.
    Create,
    /// Fail with an error that ends with `hint`.
    Fail { hint: &'static str },
}

/// Returns the CA certificate (PEM) of `store`. Only creating a CA reaches
/// its key; reading the certificate does not.
fn load_ca_pem(store: &CaStore, if_missing: IfMissing) -> Result<String, CliError> {
    let path = store.cert_path();
    match if_missing {
        IfMissing::Create => {
            let opened = store
                .open_or_create()
                .map_err(|err| CliError::Failed(err.into()))?;
            Ok(opened.ca.cert_pem().to_owned())
        }
        IfMissing::Fail { hint } => match std::fs::read_to_string(&path) {
            Ok(pem) => Ok(pem),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Err(CliError::Failed(
                anyhow!("no CA certificate at {}; {hint}", path.display()),
            )),
            Err(err) => Err(CliError::Failed(
                anyhow::Error::new(err).context(format!("failed to read {}", path.display())),
            )),
        },
    }
}

/// Returns the CA store of the configured data directory, with the key in
/// the keychain that `[ca] key_storage` selects.
fn ca_store(location: &CaLocation) -> Result<CaStore, CliError> {
    let (file, _) = config::load(location.config.as_deref()).map_err(CliError::Usage)?;
    let dir = config::data_dir(location.data_dir.as_deref(), &file)?;
    let keychain =
        Keychain::open(file.ca.key_storage).map_err(|err| CliError::Failed(err.into()))?;
    Ok(CaStore::new(&dir, keychain))
}

/// Returns the stores of this machine that `choice` selects.
fn selected_stores(choice: StoreChoice) -> Vec<Box<dyn TrustStore>> {
    trust::machine_stores()
        .into_iter()
        .filter(|store| choice.includes(store.kind()))
        .collect()
}

/// Runs `change` (the `action` subcommand) on every store `choice`
/// selects, even after one fails, prints one line per store, and returns
/// exit status 1 when any failed.
fn change_stores(
    ca: &LoadedCa,
    choice: StoreChoice,
    action: &str,
    change: impl Fn(&dyn TrustStore) -> Result<Change, TrustError>,
) -> Result<ExitCode, CliError> {
    print_ca(ca)?;
    let admin_command = format!("ca {action} --store system {}", ca.source.options());
    let mut any_failed = false;
    let mut rows = Vec::new();
    for store in selected_stores(choice) {
        let result = match change(store.as_ref()) {
            Ok(outcome) => outcome.to_string(),
            Err(err) => {
                any_failed = true;
                failure_text(&err, &admin_command)
            }
        };
        rows.push(Row {
            name: store.name(),
            location: store.location(),
            result,
        });
    }
    print_rows(&rows)?;
    warn_about_sudo_home(choice, action);
    Ok(exit_code(!any_failed))
}
