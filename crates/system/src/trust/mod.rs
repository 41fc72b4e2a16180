//! Adds webwarden's root CA to the trust stores of this machine, removes it
//! again, and reports whether each store trusts it.
//!
//! [`machine_stores`] returns the stores found here, each behind the
//! [`TrustStore`] trait:
//!
//! - Linux: the system store (Debian's `update-ca-certificates` or Fedora's
//!   `update-ca-trust`), Chromium's NSS database in `~/.pki/nssdb` and the
//!   NSS database of every Firefox profile.
//! - macOS: the System keychain, through the `security` tool.
//! - Windows: the LocalMachine `ROOT` store, through the Crypto API.
//!
//! Stores find the CA by the names and fingerprints of [`CaCertificate`], so
//! uninstalling needs the same certificate that was installed.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use thiserror::Error;

use crate::command::CommandError;

mod certificate;
#[cfg(target_os = "linux")]
pub mod firefox;
#[cfg(target_os = "linux")]
pub mod linux;
#[cfg(any(target_os = "macos", test))]
pub mod macos;
#[cfg(target_os = "linux")]
pub mod nss;
#[cfg(unix)]
mod tool;
#[cfg(windows)]
pub mod windows;

pub use certificate::{CaCertificate, FILE_PREFIX, MAX_CERTIFICATE_FILE_LEN, NICKNAME_PREFIX};
#[cfg(unix)]
pub(crate) use tool::run_tool;

/// One place that decides which root CAs some programs trust.
pub trait TrustStore {
    /// Returns a short name for reports, such as `system` or
    /// `Firefox profile default-release`.
    fn name(&self) -> String;

    /// Returns where the store keeps the CA: a file, directory or keychain.
    fn location(&self) -> String;

    /// Returns whether this is the system store or a browser's own store.
    fn kind(&self) -> StoreKind;

    /// Adds `ca` as a trusted root for TLS servers, unless it is already.
    ///
    /// # Errors
    ///
    /// Returns [`TrustError::AdminRequired`] when the store needs more
    /// rights than this process has, and another [`TrustError`] when a
    /// file or tool fails.
    fn install(&self, ca: &CaCertificate) -> Result<Change, TrustError>;

    /// Removes `ca` from the store, if it is there.
    ///
    /// # Errors
    ///
    /// As for [`TrustStore::install`].
    fn uninstall(&self, ca: &CaCertificate) -> Result<Change, TrustError>;

    /// Reports whether the store trusts `ca`. It never changes the store.
    ///
    /// # Errors
    ///
    /// Returns a [`TrustError`] when the store cannot be read.
    fn status(&self, ca: &CaCertificate) -> Result<TrustState, TrustError>;
}

/// The two groups of stores that `webwarden ca --store` selects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreKind {
    /// The operating system's store, which changes need administrator
    /// rights for.
    System,
    /// A browser's own store in the user's home directory.
    Browser,
}

/// The outcome of an install or uninstall.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// The CA was added.
    Installed,
    /// The store already trusted the CA, so nothing changed.
    AlreadyInstalled,
    /// The CA was removed.
    Removed,
    /// The store did not contain the CA, so nothing changed.
    NotPresent,
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Change::Installed => "installed",
            Change::AlreadyInstalled => "already installed",
            Change::Removed => "removed",
            Change::NotPresent => "not present",
        })
    }
}

/// Whether a store trusts the CA.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TrustState {
    /// The store contains the CA as a trusted root.
    Trusted,
    /// The store does not contain the CA.
    Absent,
    /// Part of the CA's installation is there, or left over. The text
    /// starts with whether programs trust the CA now (`not trusted yet: `,
    /// `still trusted until the bundle is rebuilt: ` or `trust unknown: `),
    /// followed by the reason and the fix.
    Incomplete(String),
}

impl TrustState {
    /// Checks whether the state is [`TrustState::Trusted`].
    pub fn is_trusted(&self) -> bool {
        matches!(self, TrustState::Trusted)
    }

    /// Builds the [`TrustState::Incomplete`] state of a store that does
    /// not trust the CA yet, for `reason`.
    pub(crate) fn not_trusted_yet(reason: impl fmt::Display) -> TrustState {
        TrustState::Incomplete(format!("not trusted yet: {reason}"))
    }
}

impl fmt::Display for TrustState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TrustState::Trusted => f.write_str("trusted"),
            TrustState::Absent => f.write_str("not present"),
            TrustState::Incomplete(text) => f.write_str(text),
        }
    }
}

/// The reason a trust store operation failed.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum TrustError {
    /// The certificate could not be used.
    #[error("invalid CA certificate: {0}")]
    InvalidCertificate(String),
    /// A file that should contain the CA certificate cannot be used.
    #[error("cannot use {path} as the CA certificate: {reason}")]
    CertificateFile {
        /// The file.
        path: PathBuf,
        /// The reason it cannot be used, followed by what to pass instead.
        reason: String,
    },
    /// Changing the store needs administrator rights (root on Unix).
    #[error("administrator rights are needed to change {location}")]
    AdminRequired {
        /// The file, directory or store that could not be changed.
        location: String,
    },
    /// The NSS database has a password (in Firefox, the Primary Password),
    /// which certutil needs to set trust flags and webwarden does not ask
    /// for.
    #[error(
        "the NSS database in {database} has a password, so webwarden cannot set the CA's \
         trust flags there; {fix}"
    )]
    PasswordProtected {
        /// The database directory.
        database: PathBuf,
        /// The steps the user can take instead.
        fix: String,
    },
    /// A file or directory could not be read or written.
    #[error("failed to {action} {path}")]
    Io {
        /// The attempted operation, such as `write` or `remove`.
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// An OS tool failed.
    #[error(transparent)]
    Command(#[from] CommandError),
    /// An OS API call failed.
    #[error("{call} failed with error {code:#010x}")]
    Api {
        /// The function that failed.
        call: &'static str,
        /// Its error code (`GetLastError` on Windows).
        code: u32,
    },
    /// The store is missing or of an unsupported kind on this machine.
    #[error("{0}")]
    Unavailable(String),
    /// The operation ran but the store is not in the expected state.
    #[error("{0}")]
    Unexpected(String),
}

impl TrustError {
    /// Builds an [`TrustError::Io`] error, or [`TrustError::AdminRequired`]
    /// naming `location` when the OS denied permission.
    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
        location: &str,
        source: io::Error,
    ) -> TrustError {
        if source.kind() == io::ErrorKind::PermissionDenied {
            return TrustError::AdminRequired {
                location: location.to_owned(),
            };
        }
        TrustError::Io {
            action,
            path: path.into(),
            source,
        }
    }
}

/// Returns the trust stores of this machine: the system store first, then
/// the browser stores of the user in `HOME` (Linux only).
///
/// A store that this machine lacks, or one of a kind webwarden does not
/// support, is still returned, and its operations fail with
/// [`TrustError::Unavailable`] saying why, so callers report it.
pub fn machine_stores() -> Vec<Box<dyn TrustStore>> {
    let mut stores: Vec<Box<dyn TrustStore>> = Vec::new();
    #[cfg(target_os = "linux")]
    {
        stores.push(linux::system_store());
        match std::env::var_os("HOME") {
            Some(home) if !home.is_empty() => {
                stores.extend(nss::browser_stores(Path::new(&home)));
            }
            _ => stores.push(Box::new(Unavailable {
                name: "browsers".to_owned(),
                kind: StoreKind::Browser,
                location: "-".to_owned(),
                reason: "HOME is not set, so the browser databases cannot be found".to_owned(),
            })),
        }
    }
    #[cfg(target_os = "macos")]
    stores.push(Box::new(macos::SystemKeychain::new()));
    #[cfg(windows)]
    stores.push(Box::new(windows::LocalMachineRoot));
    if stores.is_empty() {
        stores.push(Box::new(Unavailable {
            name: "system".to_owned(),
            kind: StoreKind::System,
            location: "-".to_owned(),
            reason: format!(
                "webwarden does not support the trust stores of {}",
                std::env::consts::OS
            ),
        }));
    }
    stores
}

/// Writes `ca` in PEM form to a new temporary file, for tools that read the
/// certificate from a file. The file is removed when the value is dropped.
#[cfg(unix)]
pub(crate) fn temp_pem_file(ca: &CaCertificate) -> Result<tempfile::NamedTempFile, TrustError> {
    use std::io::Write;

    let mut file = tempfile::Builder::new()
        .prefix("webwarden-ca-")
        .suffix(".pem")
        .tempfile()
        .map_err(|source| TrustError::Io {
            action: "create a temporary file in",
            path: std::env::temp_dir(),
            source,
        })?;
    file.write_all(ca.pem().as_bytes())
        .map_err(|source| TrustError::Io {
            action: "write",
            path: file.path().to_owned(),
            source,
        })?;
    Ok(file)
}

/// A store that cannot be used here, kept so reports name it and why.
#[derive(Debug, Clone)]
pub struct Unavailable {
    /// The store's name in reports.
    pub name: String,
    /// The group it belongs to.
    pub kind: StoreKind,
    /// The file or directory to show in reports, or `-` for none.
    pub location: String,
    /// The reason it cannot be used.
    pub reason: String,
}

impl TrustStore for Unavailable {
    fn name(&self) -> String {
        self.name.clone()
    }

    fn location(&self) -> String {
        self.location.clone()
    }

    fn kind(&self) -> StoreKind {
        self.kind
    }

    fn install(&self, _ca: &CaCertificate) -> Result<Change, TrustError> {
        Err(TrustError::Unavailable(self.reason.clone()))
    }

    fn uninstall(&self, _ca: &CaCertificate) -> Result<Change, TrustError> {
        Err(TrustError::Unavailable(self.reason.clone()))
    }

    fn status(&self, _ca: &CaCertificate) -> Result<TrustState, TrustError> {
        Err(TrustError::Unavailable(self.reason.clone()))
    }
}
