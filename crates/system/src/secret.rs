//! Storage for one secret, such as the root CA's private key: an entry in
//! the OS keychain through `keyring`, or a file that only its owner can
//! read where no keychain exists.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use thiserror::Error;

/// The keychain service name of every webwarden entry.
pub const KEYCHAIN_SERVICE: &str = "webwarden";

/// The reason a secret could not be read, written or deleted.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum SecretError {
    /// The keychain reported an error.
    #[error("the OS keychain failed for {account:?}: {reason}")]
    Keychain {
        /// The entry's account name.
        account: String,
        /// The keychain's message.
        reason: String,
    },
    /// The file could not be read or written.
    #[error("failed to access {path}")]
    File {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
}

/// A place that keeps one secret.
pub trait SecretStore: std::fmt::Debug + Send + Sync {
    /// Describes the place for logs and status, never the secret.
    fn location(&self) -> String;

    /// Reads the secret, or `None` when the place contains none.
    ///
    /// # Errors
    ///
    /// Returns a [`SecretError`] when the place cannot be read.
    fn load(&self) -> Result<Option<Vec<u8>>, SecretError>;

    /// Stores the secret, replacing an earlier one.
    ///
    /// # Errors
    ///
    /// Returns a [`SecretError`] when the place cannot be written.
    fn save(&self, secret: &[u8]) -> Result<(), SecretError>;

    /// Removes the secret; removing an absent secret succeeds.
    ///
    /// # Errors
    ///
    /// Returns a [`SecretError`] when the place cannot be changed.
    fn delete(&self) -> Result<(), SecretError>;
}

/// Sets up the OS keychain as `keyring`'s default store, once per process,
/// and returns whether that worked or the reason it did not: on Linux the
/// Secret Service needs a D-Bus session.
///
/// Tests set a mock store with `keyring_core::set_default_store` instead.
pub fn open_native_keychain() -> Result<(), String> {
    static RESULT: OnceLock<Result<(), String>> = OnceLock::new();
    RESULT
        .get_or_init(|| {
            keyring::Entry::store_status()
                .as_ref()
                .map_err(|err| err.to_string())
                .copied()
        })
        .clone()
}

/// An entry in `keyring`'s default store, which is the OS keychain after
/// [`open_native_keychain`].
#[derive(Debug, Clone)]
pub struct KeychainSecret {
    account: String,
}

impl KeychainSecret {
    /// Names the entry of `account` under [`KEYCHAIN_SERVICE`].
    pub fn new(account: impl Into<String>) -> KeychainSecret {
        KeychainSecret {
            account: account.into(),
        }
    }

    fn entry(&self) -> Result<keyring_core::Entry, SecretError> {
        keyring_core::Entry::new(KEYCHAIN_SERVICE, &self.account).map_err(|err| self.error(&err))
    }

    fn error(&self, err: &keyring_core::Error) -> SecretError {
        // The keychain's Display text never contains the secret.
        SecretError::Keychain {
            account: self.account.clone(),
            reason: err.to_string(),
        }
    }
}

impl SecretStore for KeychainSecret {
    fn location(&self) -> String {
        format!(
            "the OS keychain (service {KEYCHAIN_SERVICE}, account {})",
            self.account
        )
    }

    fn load(&self) -> Result<Option<Vec<u8>>, SecretError> {
        match self.entry()?.get_secret() {
            Ok(secret) => Ok(Some(secret)),
            Err(keyring_core::Error::NoEntry) => Ok(None),
            Err(err) => Err(self.error(&err)),
        }
    }

    fn save(&self, secret: &[u8]) -> Result<(), SecretError> {
        self.entry()?
            .set_secret(secret)
            .map_err(|err| self.error(&err))
    }

    fn delete(&self) -> Result<(), SecretError> {
        match self.entry()?.delete_credential() {
            Ok(()) | Err(keyring_core::Error::NoEntry) => Ok(()),
            Err(err) => Err(self.error(&err)),
        }
    }
}

/// A file that only its owner can read (mode 0600 on Unix).
#[derive(Debug, Clone)]
pub struct OwnerOnlyFile {
    path: PathBuf,
}

impl OwnerOnlyFile {
    /// Names the file at `path`.
    pub fn new(path: impl Into<PathBuf>) -> OwnerOnlyFile {
        OwnerOnlyFile { path: path.into() }
    }

    /// Returns the file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn error(&self, source: io::Error) -> SecretError {
        SecretError::File {
            path: self.path.clone(),
            source,
        }
    }
}

impl SecretStore for OwnerOnlyFile {
    fn location(&self) -> String {
        format!(
            "the file {} (readable only by its owner)",
            self.path.display()
        )
    }

    fn load(&self) -> Result<Option<Vec<u8>>, SecretError> {
        match fs::read(&self.path) {
            Ok(secret) => Ok(Some(secret)),
            Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(err) => Err(self.error(err)),
        }
    }

    /// Writes a temporary file with mode 0600, syncs it and renames it over
    /// the old one, so a crash leaves either the old or the new secret.
    fn save(&self, secret: &[u8]) -> Result<(), SecretError> {
        let mut temp = self.path.clone().into_os_string();
        temp.push(".new");
        let temp = PathBuf::from(temp);
        let _ = fs::remove_file(&temp);

        let mut options = fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        // NOTE: on Windows the file inherits the data directory's ACL, which
        // for a per-user data directory admits only that user and SYSTEM;
        // this is untested.
        let mut file = options.open(&temp).map_err(|err| self.error(err))?;
        file.write_all(secret)
            .and_then(|()| file.sync_all())
            .map_err(|err| self.error(err))?;
        fs::rename(&temp, &self.path).map_err(|err| self.error(err))
    }

    fn delete(&self) -> Result<(), SecretError> {
        match fs::remove_file(&self.path) {
            Ok(()) => Ok(()),
            Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(err) => Err(self.error(err)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Sets `keyring_core`'s mock store as the default, once per test process.
    fn mock_keychain() {
        static SET: OnceLock<()> = OnceLock::new();
        SET.get_or_init(|| {
            keyring_core::set_default_store(keyring_core::mock::Store::new().unwrap());
        });
    }

    #[test]
    fn keychain_secret_round_trip() {
        mock_keychain();
        let secret = KeychainSecret::new("round trip");
        assert_eq!(secret.load().unwrap(), None);

        secret.save(&[0, 1, 2, 255]).unwrap();
        assert_eq!(secret.load().unwrap(), Some(vec![0, 1, 2, 255]));

        secret.delete().unwrap();
        assert_eq!(secret.load().unwrap(), None);
        secret.delete().unwrap();
    }

    #[test]
    fn keychain_failure_names_the_account() {
        mock_keychain();
        let secret = KeychainSecret::new("failing entry");
        secret.save(b"key").unwrap();
        let entry = keyring_core::Entry::new(KEYCHAIN_SERVICE, "failing entry").unwrap();
        let credential: &keyring_core::mock::Cred = entry.as_any().downcast_ref().unwrap();
        credential.set_error(keyring_core::Error::NoStorageAccess("locked".into()));

        let err = secret.load().unwrap_err().to_string();
        assert!(err.contains("\"failing entry\""), "{err}");
        assert!(err.contains("locked"), "{err}");
    }

    #[test]
    fn file_secret_is_owner_only_and_replaced_whole() {
        let dir = tempfile::tempdir().unwrap();
        let file = OwnerOnlyFile::new(dir.path().join("ca.key"));
        assert_eq!(file.load().unwrap(), None);

        file.save(b"first").unwrap();
        file.save(b"second").unwrap();
        assert_eq!(file.load().unwrap(), Some(b"second".to_vec()));
        assert!(!dir.path().join("ca.key.new").exists());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(file.path()).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }

        file.delete().unwrap();
        assert_eq!(file.load().unwrap(), None);
        file.delete().unwrap();
    }

    #[test]
    fn unreadable_file_names_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let file = OwnerOnlyFile::new(dir.path().join("missing-dir/ca.key"));
        let err = file.save(b"key").unwrap_err().to_string();
        assert!(err.contains("missing-dir/ca.key"), "{err}");
    }
}
