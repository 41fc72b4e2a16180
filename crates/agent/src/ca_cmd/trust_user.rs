//! `webwarden ca trust-user`: adds an employee's own root CA to the system
//! trust store. Root runs it through sudo, and the installed package's
//! sudoers rule lets every user run exactly this command without a
//! password, so an employee needs no admin rights.
//!
//! The certificate comes on standard input, never as a path, so root opens
//! no file that the user controls. Each user has at most one certificate
//! there: the one added before for the same user is removed first, and
//! `/var/lib/webwarden/trusted/uid-<UID>.pem` records which one it is. A
//! certificate that another user's record also names stays in the store.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{anyhow, Context};
use webwarden_system::trust::{self, CaCertificate, StoreKind};

use crate::CliError;

/// The path of the `webwarden` program that the sudoers rule names.
#[cfg(not(target_os = "macos"))]
pub const SUDO_PROGRAM: &str = "/usr/bin/webwarden";

/// The path of the `webwarden` program that the sudoers rule names; the
/// macOS package links it to the copy inside the app bundle.
#[cfg(target_os = "macos")]
pub const SUDO_PROGRAM: &str = "/usr/local/bin/webwarden";

/// The directory of records naming the certificate added for each user.
pub const RECORD_DIR: &str = "/var/lib/webwarden/trusted";

/// The largest certificate read from standard input.
const MAX_INPUT: u64 = 64 * 1024;

/// The lowest UID of a person's account on Debian (`UID_MIN`); system
/// accounts such as www-data cannot use this command.
const MIN_UID: u32 = 1000;

/// Runs `webwarden ca trust-user`.
pub fn run() -> Result<ExitCode, CliError> {
    let uid: u32 = std::env::var("SUDO_UID")
        .ok()
        .and_then(|uid| uid.parse().ok())
        .ok_or_else(|| {
            CliError::Usage(anyhow!(
                "SUDO_UID is not set: run this as `sudo -n {SUDO_PROGRAM} ca trust-user < ca.pem` as the user whose CA it is"
            ))
        })?;
    if uid < MIN_UID {
        return Err(CliError::Usage(anyhow!(
            "uid {uid} is a system account; only users with a UID of {MIN_UID} or more can have their CA trusted"
        )));
    }
    let mut text = String::new();
    std::io::stdin()
        .take(MAX_INPUT)
        .read_to_string(&mut text)
        .context("failed to read the CA certificate from standard input")
        .map_err(CliError::Usage)?;
    let ca = CaCertificate::from_pem(&text).map_err(|err| {
        CliError::Usage(anyhow!("invalid CA certificate on standard input: {err}"))
    })?;
    // NOTE: this guards against mistakes only, since anyone can make a CA
    // whose subject contains "webwarden".
    if !ca.subject().contains("webwarden") {
        return Err(CliError::Usage(anyhow!(
            "the certificate {} is not a webwarden root CA; only those are added this way",
            ca.subject()
        )));
    }
    let store = trust::machine_stores()
        .into_iter()
        .find(|store| store.kind() == StoreKind::System)
        .ok_or_else(|| {
            CliError::Failed(anyhow!("this OS has no system trust store webwarden knows"))
        })?;

    // One change at a time, so two calls cannot leave two CAs for a user.
    let _lock = lock_records().map_err(CliError::Failed)?;
    let record = Path::new(RECORD_DIR).join(format!("uid-{uid}.pem"));
    if let Ok(previous) = CaCertificate::read_file(&record) {
        let shared = recorded_elsewhere(&record, &previous);
        if previous.sha256_hex() != ca.sha256_hex() && !shared {
            store.uninstall(&previous).map_err(|err| {
                CliError::Failed(anyhow!(
                    "failed to remove the previous CA of uid {uid}: {err}"
                ))
            })?;
        }
    }
    store.install(&ca).map_err(|err| {
        CliError::Failed(anyhow!(
            "failed to add the CA to {}: {err}",
            store.location()
        ))
    })?;
    write_record(&record, &ca).map_err(CliError::Failed)?;
    println!(
        "trusted {} (sha256 {}) for uid {uid} in {}",
        ca.subject(),
        ca.sha256_hex(),
        store.location()
    );
    Ok(ExitCode::SUCCESS)
}

/// Locks the records directory, creating it when missing.
fn lock_records() -> anyhow::Result<std::fs::File> {
    std::fs::create_dir_all(RECORD_DIR)
        .with_context(|| format!("failed to create {RECORD_DIR}"))?;
    let path = Path::new(RECORD_DIR).join(".lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("failed to open {}", path.display()))?;
    file.lock()
        .with_context(|| format!("failed to lock {}", path.display()))?;
    Ok(file)
}

/// Checks whether another user's record names the same certificate, which
/// must then stay in the store.
fn recorded_elsewhere(record: &Path, ca: &CaCertificate) -> bool {
    let Ok(entries) = std::fs::read_dir(RECORD_DIR) else {
        return false;
    };
    entries.flatten().any(|entry| {
        let path = entry.path();
        path != record
            && path.extension().is_some_and(|ext| ext == "pem")
            && CaCertificate::read_file(&path)
                .is_ok_and(|other| other.sha256_hex() == ca.sha256_hex())
    })
}

fn write_record(record: &PathBuf, ca: &CaCertificate) -> anyhow::Result<()> {
    let dir = record.parent().expect("the record has a directory");
    std::fs::create_dir_all(dir).with_context(|| format!("failed to create {}", dir.display()))?;
    let tmp = record.with_extension("tmp");
    std::fs::write(&tmp, ca.pem())
        .and_then(|()| std::fs::rename(&tmp, record))
        .with_context(|| format!("failed to write {}", record.display()))
}
