//! `webwarden ca`: the local root CA and the trust stores that accept it.
//!
//! - `export` prints the CA certificate, creating the CA when it does not
//!   exist yet, so a user can trust it before the first run.
//! - `install` adds it to the system trust store and the browsers' NSS
//!   databases, `uninstall` removes it, and `status` reports each store.
//!   The stores themselves are in [`webwarden_system::trust`].

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{anyhow, Context};
use clap::{Args, Subcommand, ValueEnum};
use serde_json::json;
use webwarden_proxy::ca::CA_CERT_FILE;
use webwarden_proxy::LocalCa;
use webwarden_system::trust::{
    self, CaCertificate, Change, StoreKind, TrustError, TrustState, TrustStore,
};

use crate::{config, CliError};

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
}

/// Arguments of `webwarden ca export`.
#[derive(Debug, Args)]
pub struct ExportArgs {
    /// Directory that contains the CA [default: the OS data directory].
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
}

/// Arguments of `webwarden ca install`.
#[derive(Debug, Args)]
pub struct InstallArgs {
    /// Directory that contains the CA [default: the OS data directory].
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// The stores to change.
    #[arg(long, value_enum, default_value_t = StoreChoice::All)]
    store: StoreChoice,
}

/// Arguments of `webwarden ca uninstall`.
#[derive(Debug, Args)]
pub struct UninstallArgs {
    /// Directory that contains the CA [default: the OS data directory].
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
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
    /// Directory that contains the CA [default: the OS data directory].
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
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
    }
}

fn export(args: &ExportArgs) -> Result<ExitCode, CliError> {
    let dir = data_dir(args.data_dir.as_deref())?;
    let pem = load_ca_pem(&dir, IfMissing::Create)?;
    std::io::stdout().lock().write_all(pem.as_bytes())?;
    Ok(ExitCode::SUCCESS)
}

fn install(args: &InstallArgs) -> Result<ExitCode, CliError> {
    let dir = data_dir(args.data_dir.as_deref())?;
    let pem = load_ca_pem(&dir, IfMissing::Create)?;
    let ca = CaSource::DataDir(dir).parse(&pem)?;
    change_stores(&ca, args.store, "install", |store| {
        store.install(&ca.certificate)
    })
}

fn uninstall(args: &UninstallArgs) -> Result<ExitCode, CliError> {
    let hint = "webwarden cannot tell which CA to remove; pass --cert with a copy of it, \
                such as /usr/local/share/ca-certificates/webwarden-<id>.crt";
    let ca = find_ca(args.data_dir.as_deref(), args.cert.as_deref(), hint)?;
    change_stores(&ca, args.store, "uninstall", |store| {
        store.uninstall(&ca.certificate)
    })
}

fn status(args: &StatusArgs) -> Result<ExitCode, CliError> {
    let hint = "`webwarden ca install` creates one and trusts it";
    let ca = find_ca(args.data_dir.as_deref(), args.cert.as_deref(), hint)?;
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
    data_dir_flag: Option<&Path>,
    cert: Option<&Path>,
    hint: &'static str,
) -> Result<LoadedCa, CliError> {
    if let Some(path) = cert {
        let pem = std::fs::read_to_string(path)
            .with_context(|| format!("failed to read {}", path.display()))
            .map_err(CliError::Usage)?;
        return CaSource::File(path.to_owned()).parse(&pem);
    }
    let dir = data_dir(data_dir_flag)?;
    let pem = load_ca_pem(&dir, IfMissing::Fail { hint })?;
    CaSource::DataDir(dir).parse(&pem)
}

/// The action of [`load_ca_pem`] when the data directory has no CA.
#[derive(Debug, Clone, Copy)]
enum IfMissing {
    /// Create the CA, as `webwarden run` does on first start.
    Create,
    /// Fail with an error that ends with `hint`.
    Fail { hint: &'static str },
}

/// Returns the CA certificate (PEM) of the data directory `dir`.
///
/// The `ca` commands reach the CA's storage only through this function, so
/// a change in how the CA is stored changes only this function.
fn load_ca_pem(dir: &Path, if_missing: IfMissing) -> Result<String, CliError> {
    let path = dir.join(CA_CERT_FILE);
    match if_missing {
        IfMissing::Create => {
            let (ca, _) =
                LocalCa::load_or_create(dir).map_err(|err| CliError::Failed(err.into()))?;
            Ok(ca.cert_pem().to_owned())
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

/// Returns the data directory: `flag`, else the OS default.
fn data_dir(flag: Option<&Path>) -> Result<PathBuf, CliError> {
    match flag {
        Some(dir) => Ok(dir.to_owned()),
        None => config::default_data_dir().map_err(CliError::Usage),
    }
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

fn exit_code(success: bool) -> ExitCode {
    if success {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// Formats a store's failure, adding the command to run as administrator
/// when rights were missing.
fn failure_text(err: &TrustError, admin_command: &str) -> String {
    let mut text = format!("FAILED: {}", error_chain(err));
    if matches!(err, TrustError::AdminRequired { .. }) {
        let program = std::env::current_exe()
            .map(|exe| shell_quote(&exe))
            .unwrap_or_else(|_| "webwarden".to_owned());
        if cfg!(windows) {
            text.push_str(&format!(
                "; run from an administrator prompt: {program} {admin_command}"
            ));
        } else {
            text.push_str(&format!("; run: sudo {program} {admin_command}"));
        }
    }
    text
}

/// Prints a note on standard error when running under sudo, because HOME
/// is then usually root's, so the browser databases changed are root's and
/// not those of the user who ran sudo.
fn warn_about_sudo_home(choice: StoreChoice, action: &str) {
    let Some(user) = std::env::var_os("SUDO_USER") else {
        return;
    };
    if !cfg!(target_os = "linux") || !choice.includes(StoreKind::Browser) {
        return;
    }
    let home = std::env::var_os("HOME").unwrap_or_default();
    eprintln!(
        "note: running under sudo, so the browser databases under HOME={} were used; \
         for the browsers of {}, run `webwarden ca {action} --store browsers` as that user",
        Path::new(&home).display(),
        user.to_string_lossy(),
    );
}

/// One line of the per-store table.
struct Row {
    name: String,
    location: String,
    result: String,
}

fn print_ca(ca: &LoadedCa) -> Result<(), CliError> {
    let certificate = &ca.certificate;
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "CA: {} ({})",
        certificate.nickname(),
        certificate.subject()
    )?;
    writeln!(out, "file: {}", ca.source.path().display())?;
    writeln!(out, "SHA-256: {}", certificate.sha256_hex())?;
    Ok(())
}

/// Prints rows as aligned columns: store name, location, result.
fn print_rows(rows: &[Row]) -> Result<(), CliError> {
    let name_width = rows.iter().map(|r| r.name.len()).max().unwrap_or(0);
    let location_width = rows.iter().map(|r| r.location.len()).max().unwrap_or(0);
    let mut out = std::io::stdout().lock();
    for row in rows {
        writeln!(
            out,
            "{:name_width$}  {:location_width$}  {}",
            row.name, row.location, row.result
        )?;
    }
    Ok(())
}

fn print_status_json(
    ca: &LoadedCa,
    stores: &[Box<dyn TrustStore>],
    states: &[Result<TrustState, TrustError>],
    all_trusted: bool,
) -> Result<(), CliError> {
    let store_values: Vec<_> = stores
        .iter()
        .zip(states)
        .map(|(store, state)| {
            let (state, detail) = match state {
                Ok(TrustState::Trusted) => ("trusted", None),
                Ok(TrustState::Absent) => ("absent", None),
                Ok(TrustState::Incomplete(reason)) => ("incomplete", Some(reason.clone())),
                Err(err) => ("error", Some(error_chain(err))),
            };
            json!({
                "name": store.name(),
                "kind": match store.kind() {
                    StoreKind::System => "system",
                    StoreKind::Browser => "browser",
                },
                "location": store.location(),
                "state": state,
                "detail": detail,
            })
        })
        .collect();
    let value = json!({
        "ca": {
            "file": ca.source.path(),
            "subject": ca.certificate.subject(),
            "sha256": ca.certificate.sha256_hex(),
            "nickname": ca.certificate.nickname(),
        },
        "trusted": all_trusted,
        "stores": store_values,
    });
    writeln!(std::io::stdout().lock(), "{value}")?;
    Ok(())
}

/// Formats an error and its sources as one line, outermost first.
fn error_chain(err: &TrustError) -> String {
    let mut text = err.to_string();
    let mut source = std::error::Error::source(err);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_owned())
}

/// Quotes a path for a POSIX shell when it contains characters the shell
/// would split or expand.
fn shell_quote(path: &Path) -> String {
    let text = path.display().to_string();
    let plain = text
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "/._-+:,@".contains(c));
    if plain && !text.is_empty() {
        return text;
    }
    format!("'{}'", text.replace('\'', r"'\''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shell_quote_only_when_needed() {
        assert_eq!(
            shell_quote(Path::new("/usr/bin/webwarden")),
            "/usr/bin/webwarden"
        );
        assert_eq!(shell_quote(Path::new("/home/a b/data")), "'/home/a b/data'");
        assert_eq!(shell_quote(Path::new("/x/it's")), r"'/x/it'\''s'");
    }

    #[test]
    fn admin_failure_names_the_command() {
        let err = TrustError::AdminRequired {
            location: "/usr/local/share/ca-certificates".to_owned(),
        };
        let text = failure_text(&err, "ca install --store system --data-dir /d");
        assert!(
            text.starts_with(
                "FAILED: administrator rights are needed to change /usr/local/share/ca-certificates; run: sudo "
            ),
            "{text}"
        );
        assert!(
            text.ends_with(" ca install --store system --data-dir /d"),
            "{text}"
        );
    }

    #[test]
    fn store_choice_selects_kinds() {
        assert!(StoreChoice::System.includes(StoreKind::System));
        assert!(!StoreChoice::System.includes(StoreKind::Browser));
        assert!(StoreChoice::Browsers.includes(StoreKind::Browser));
        assert!(!StoreChoice::Browsers.includes(StoreKind::System));
        assert!(StoreChoice::All.includes(StoreKind::System));
        assert!(StoreChoice::All.includes(StoreKind::Browser));
    }
}
