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

use crate::ca_store::{
    CaStore, CaStoreError, KeyStorage, Keychain, Rotation, CA_CERT_FILE, CA_PREVIOUS_FILE,
};
use crate::{config, CliError};

mod report;
pub mod trust_user;

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
    /// Add the calling user's root CA, read as PEM from standard input, to
    /// the system store. Run as root through sudo: the agent does so when
    /// `[ca] auto_trust` is on, and the Linux package's sudoers rule allows
    /// it without a password.
    TrustUser,
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
    /// Install the CA in this PEM file instead of DATA_DIR/ca.pem, and
    /// create nothing: for an administrator trusting a user's CA.
    #[arg(long, value_name = "FILE")]
    cert: Option<PathBuf>,
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
    crate::logging::init_with_default("warn");
    match command {
        CaCommand::Export(args) => export(args),
        CaCommand::Install(args) => install(args),
        CaCommand::Uninstall(args) => uninstall(args),
        CaCommand::Status(args) => status(args),
        CaCommand::Rotate(args) => rotate(args),
        CaCommand::TrustUser => trust_user::run(),
    }
}

fn export(args: &ExportArgs) -> Result<ExitCode, CliError> {
    let place = ca_place(&args.location)?;
    let pem = load_ca_pem(&place, IfMissing::Create)?;
    let ca = CaSource::DataDir(place.dir.clone()).parse(&pem)?;
    // Only the certificate, whatever else the file contains.
    let certificate = webwarden_proxy::ca::cert_pem_from_der(ca.certificate.der());
    std::io::stdout().lock().write_all(certificate.as_bytes())?;
    Ok(ExitCode::SUCCESS)
}

fn install(args: &InstallArgs) -> Result<ExitCode, CliError> {
    let ca = match &args.cert {
        Some(path) => read_cert_arg(path)?,
        None => {
            let place = ca_place(&args.location)?;
            let pem = load_ca_pem(&place, IfMissing::Create)?;
            CaSource::DataDir(place.dir.clone()).parse(&pem)?
        }
    };
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
    let store = ca_place(&args.location)?.with_key()?;
    let stores = selected_stores(StoreChoice::All);
    let admin_command = format!(
        "ca rotate --data-dir {}",
        shell_quote(&absolute(store.dir()))
    );
    let mut swaps = Vec::new();
    let rotation = store
        .rotate(|previous_pem, new_ca| {
            swaps = stage_in_stores(&stores, previous_pem, new_ca.cert_pem(), &admin_command);
            swaps.iter().all(|swap| swap.error.is_none())
        })
        .map_err(|err| CliError::Failed(err.into()))?;

    let committed = matches!(rotation, Rotation::Done { .. });
    let mut any_failed = !committed;
    let mut rows = Vec::new();
    for (trust_store, swap) in stores.iter().zip(&mut swaps) {
        if committed && swap.installed {
            if let Err(err) = trust_store.uninstall(&swap.old) {
                swap.error = Some(err);
            }
        }
        let result = match &swap.error {
            Some(err) => {
                any_failed = true;
                failure_text(err, &swap.admin_command)
            }
            None if !swap.trusted => "old CA was not trusted here; left alone".to_owned(),
            None if committed => "new CA installed, old CA removed".to_owned(),
            None => "unchanged".to_owned(),
        };
        rows.push(Row {
            name: trust_store.name(),
            location: trust_store.location(),
            result,
        });
    }

    match &rotation {
        Rotation::Done {
            previous_pem,
            current,
        } => {
            let new = CaSource::DataDir(store.dir().to_owned()).parse(current.ca.cert_pem())?;
            let previous = store.dir().join(CA_PREVIOUS_FILE);
            println!(
                "replaced CA: {} (kept in {})",
                sha256_of(previous_pem),
                previous.display()
            );
            print_ca(&new)?;
            println!("key: {}", current.key_location);
            print_rows(&rows)?;
            println!("a running agent uses the new CA within seconds");
        }
        Rotation::Abandoned => {
            print_rows(&rows)?;
            eprintln!(
                "error: the CA was not replaced, because a store that trusts it could not take the \
                 new one; fix the failure above and run `webwarden ca rotate` again. When the \
                 system store trusts the CA, run it with sudo and keep HOME, so your browsers' \
                 databases change too: sudo --preserve-env=HOME webwarden {admin_command}"
            );
        }
    }
    Ok(exit_code(!any_failed))
}

/// The outcome of a rotation in one trust store.
struct StoreSwap {
    old: CaCertificate,
    /// Whether the store trusted the old CA.
    trusted: bool,
    /// Whether the new CA was added.
    installed: bool,
    error: Option<TrustError>,
    /// The command that makes the change as administrator.
    admin_command: String,
}

/// Adds the new CA to every store that trusts the old one. When one fails,
/// removes it again from the others, so the rotation can be abandoned with
/// every store as it was.
fn stage_in_stores(
    stores: &[Box<dyn TrustStore>],
    previous_pem: &str,
    new_pem: &str,
    admin_command: &str,
) -> Vec<StoreSwap> {
    let (old, new) = match (
        CaCertificate::from_pem(previous_pem),
        CaCertificate::from_pem(new_pem),
    ) {
        (Ok(old), Ok(new)) => (old, new),
        (Err(err), _) | (_, Err(err)) => {
            tracing::error!(error = %err, "failed to read the certificates of the rotation");
            return Vec::new();
        }
    };
    let mut swaps: Vec<StoreSwap> = stores
        .iter()
        .map(|store| {
            let trusted = store.status(&old).is_ok_and(|state| state.is_trusted());
            let mut swap = StoreSwap {
                old: old.clone(),
                trusted,
                installed: false,
                error: None,
                admin_command: admin_command.to_owned(),
            };
            if trusted {
                match store.install(&new) {
                    Ok(_) => swap.installed = true,
                    Err(err) => swap.error = Some(err),
                }
            }
            swap
        })
        .collect();
    if swaps.iter().any(|swap| swap.error.is_some()) {
        for (store, swap) in stores.iter().zip(&mut swaps) {
            if swap.installed {
                if let Err(err) = store.uninstall(&new) {
                    tracing::warn!(store = %store.name(), error = %err, "failed to remove the new CA from a store after an abandoned rotation");
                }
                swap.installed = false;
            }
        }
    }
    swaps
}

/// Returns the SHA-256 fingerprint of a PEM certificate, or a note that it
/// does not parse.
fn sha256_of(pem: &str) -> String {
    CaCertificate::from_pem(pem)
        .map_or_else(|err| format!("unreadable ({err})"), |ca| ca.sha256_hex())
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
            CaSource::DataDir(dir) => {
                format!("--cert {}", shell_quote(&absolute(&dir.join(CA_CERT_FILE))))
            }
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
        return read_cert_arg(path);
    }
    let place = ca_place(location)?;
    let pem = load_ca_pem(&place, IfMissing::Fail { hint })?;
    CaSource::DataDir(place.dir).parse(&pem)
}

/// Reads the CA certificate named with `--cert`.
fn read_cert_arg(path: &Path) -> Result<LoadedCa, CliError> {
    let certificate = CaCertificate::read_file(path)
        .context("invalid --cert value")
        .map_err(CliError::Usage)?;
    Ok(LoadedCa {
        certificate,
        source: CaSource::File(path.to_owned()),
    })
}

/// The action of [`load_ca_pem`] when the data directory has no CA.
#[derive(Debug, Clone, Copy)]
enum IfMissing {
    /// Create the CA, as `webwarden run` does on first start.
    Create,
    /// Fail with an error that ends with `hint`.
    Fail { hint: &'static str },
}

/// Returns the CA certificate (PEM) in `place`. Only creating a CA reaches
/// its key, so an administrator without access to the user's keychain can
/// still trust an existing one.
fn load_ca_pem(place: &CaPlace, if_missing: IfMissing) -> Result<String, CliError> {
    match (place.certificate_only().read_cert(), if_missing) {
        (Ok(pem), _) => Ok(pem),
        (Err(CaStoreError::NoCa { .. }), IfMissing::Create) => {
            let opened = place
                .with_key()?
                .open_or_create()
                .map_err(|err| CliError::Failed(err.into()))?;
            Ok(opened.ca.cert_pem().to_owned())
        }
        (Err(CaStoreError::NoCa { cert }), IfMissing::Fail { hint }) => Err(CliError::Failed(
            anyhow!("no CA certificate at {}; {hint}", cert.display()),
        )),
        (Err(err), _) => Err(CliError::Failed(err.into())),
    }
}

/// The configured data directory and key storage, before the keychain is
/// opened: commands that only read the certificate never open it.
struct CaPlace {
    dir: PathBuf,
    storage: KeyStorage,
}

impl CaPlace {
    /// Returns the store for reading the certificate only.
    fn certificate_only(&self) -> CaStore {
        CaStore::new(&self.dir, Keychain::Unavailable)
    }

    /// Returns the store with the keychain that `[ca] key_storage`
    /// selects, creating the data directory.
    fn with_key(&self) -> Result<CaStore, CliError> {
        std::fs::create_dir_all(&self.dir)
            .with_context(|| format!("failed to create data directory {}", self.dir.display()))
            .map_err(CliError::Failed)?;
        let keychain = Keychain::open(self.storage).map_err(|err| CliError::Failed(err.into()))?;
        Ok(CaStore::new(&self.dir, keychain))
    }
}

/// Returns the configured data directory and key storage.
fn ca_place(location: &CaLocation) -> Result<CaPlace, CliError> {
    let (file, _) = config::load(location.config.as_deref()).map_err(CliError::Usage)?;
    Ok(CaPlace {
        dir: config::data_dir_path(location.data_dir.as_deref(), &file)?,
        storage: file.ca.key_storage,
    })
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
