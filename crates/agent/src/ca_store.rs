//! Storage of the root CA: the certificate in `DATA_DIR/ca.pem`, the
//! private key in the OS keychain, or in `DATA_DIR/ca.key` (readable only by
//! its owner) where no keychain is available.
//!
//! The keychain entry is named after the certificate's SHA-256 fingerprint,
//! so two data directories, or an old and a new CA, never share an entry.
//! A key found in `ca.key` while the keychain works is moved into it.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Once;

use serde::Deserialize;
use sha2::{Digest, Sha256};
use thiserror::Error;
use webwarden_proxy::ca;
use webwarden_proxy::{CaError, LocalCa};
use webwarden_system::secret::{self, KeychainSecret, OwnerOnlyFile, SecretError, SecretStore};

/// File name of the CA certificate in the data directory.
pub const CA_CERT_FILE: &str = "ca.pem";

/// File name of the CA private key when it is kept in a file.
pub const CA_KEY_FILE: &str = "ca.key";

/// File name of the certificate that a rotation replaced.
pub const CA_PREVIOUS_FILE: &str = "ca-previous.pem";

/// File name of a new certificate during a rotation.
const CA_NEXT_FILE: &str = "ca.pem.next";

/// File name of the lock that serializes changes to the CA files.
const CA_LOCK_FILE: &str = "ca.lock";

/// The `[ca] key_storage` setting.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum KeyStorage {
    /// The OS keychain when it works, the owner-only file otherwise.
    #[default]
    Auto,
    /// The OS keychain only; failing it is an error.
    Keychain,
    /// The owner-only file only.
    File,
}

/// The reason the CA could not be opened or created.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum CaStoreError {
    /// A file could not be read or written.
    #[error("failed to access {path}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// The certificate exists but its key is in none of the places.
    #[error(
        "{cert} exists but its private key is in neither {keychain} nor {file}; restore the \
         key, or move {cert} away to create a new CA (browsers must then trust the new one)"
    )]
    MissingKey {
        /// The certificate file.
        cert: PathBuf,
        /// The keychain entry that was looked up, or why it was not.
        keychain: String,
        /// The key file.
        file: PathBuf,
    },
    /// There is no CA yet.
    #[error("there is no CA certificate at {cert}; `webwarden ca export` or `webwarden run` creates one")]
    NoCa {
        /// The missing certificate file.
        cert: PathBuf,
    },
    /// A key file exists without its certificate.
    #[error(
        "{key} exists but {cert} does not; restore the certificate, or move {key} away to \
         create a new CA (browsers must then trust the new one)"
    )]
    MissingCert {
        /// The key file.
        key: PathBuf,
        /// The missing certificate file.
        cert: PathBuf,
    },
    /// The keychain or key file failed.
    #[error(transparent)]
    Secret(#[from] SecretError),
    /// The keychain is required by `[ca] key_storage` but unavailable.
    #[error(
        "the OS keychain is unavailable ({0}), and [ca] key_storage = \"keychain\" forbids \
         the file; start a keychain service or set key_storage = \"auto\""
    )]
    KeychainRequired(String),
    /// The certificate or key exists but does not load.
    #[error("invalid CA in {location}: {reason}; fix or remove it to create a new CA")]
    Invalid {
        /// The certificate file or key location.
        location: String,
        /// The reason.
        reason: CaError,
    },
    /// Generating a new CA failed.
    #[error(transparent)]
    Generate(CaError),
}

/// The keychain to use, if any: the outcome of `[ca] key_storage` on this
/// machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keychain {
    /// `keyring`'s default store is set and is used.
    Available,
    /// The key is kept in the file only.
    Unavailable,
}

impl Keychain {
    /// Opens the OS keychain unless `storage` is [`KeyStorage::File`]. Under
    /// [`KeyStorage::Auto`] an unavailable keychain falls back to the file,
    /// which is logged once per process.
    ///
    /// # Errors
    ///
    /// Returns [`CaStoreError::KeychainRequired`] when `storage` is
    /// [`KeyStorage::Keychain`] and the keychain cannot be opened.
    pub fn open(storage: KeyStorage) -> Result<Keychain, CaStoreError> {
        if storage == KeyStorage::File {
            return Ok(Keychain::Unavailable);
        }
        match secret::open_native_keychain() {
            Ok(()) => Ok(Keychain::Available),
            Err(reason) if storage == KeyStorage::Keychain => {
                Err(CaStoreError::KeychainRequired(reason))
            }
            Err(reason) => {
                log_fallback_once(&reason);
                Ok(Keychain::Unavailable)
            }
        }
    }
}

/// The CA and where its key was found.
#[derive(Debug)]
pub struct OpenedCa {
    /// The loaded CA.
    pub ca: LocalCa,
    /// Whether it was created by this call.
    pub created: bool,
    /// The key's location, for logs and status.
    pub key_location: String,
}

/// The outcome of [`CaStore::rotate`].
#[derive(Debug)]
pub struct Rotation {
    /// The replaced CA.
    pub previous: LocalCa,
    /// The new CA.
    pub current: OpenedCa,
}

/// The CA files of one data directory.
#[derive(Debug, Clone)]
pub struct CaStore {
    dir: PathBuf,
    keychain: Keychain,
}

impl CaStore {
    /// Names the CA in `dir`, with its key in `keychain` when available.
    pub fn new(dir: &Path, keychain: Keychain) -> CaStore {
        CaStore {
            dir: dir.to_owned(),
            keychain,
        }
    }

    /// Returns the data directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Returns the path of the certificate file.
    pub fn cert_path(&self) -> PathBuf {
        self.dir.join(CA_CERT_FILE)
    }

    fn key_file(&self) -> OwnerOnlyFile {
        OwnerOnlyFile::new(self.dir.join(CA_KEY_FILE))
    }

    /// Loads the CA, or creates it when neither the certificate nor the key
    /// file exists.
    ///
    /// # Errors
    ///
    /// Returns a [`CaStoreError`] naming the file or keychain entry that is
    /// missing, unreadable or invalid.
    pub fn open_or_create(&self) -> Result<OpenedCa, CaStoreError> {
        let _lock = self.lock()?;
        match self.open_locked() {
            Err(CaStoreError::NoCa { .. }) => {
                let key_path = self.key_file().path().to_owned();
                if key_path.exists() {
                    return Err(CaStoreError::MissingCert {
                        key: key_path,
                        cert: self.cert_path(),
                    });
                }
                self.create()
            }
            opened => opened,
        }
    }

    /// Loads the CA, which must exist. Finishes a rotation that was cut
    /// short first.
    ///
    /// # Errors
    ///
    /// Returns [`CaStoreError::NoCa`] when there is no certificate, and
    /// another [`CaStoreError`] naming the file or keychain entry that is
    /// missing, unreadable or invalid.
    pub fn open(&self) -> Result<OpenedCa, CaStoreError> {
        let _lock = self.lock()?;
        self.open_locked()
    }

    fn open_locked(&self) -> Result<OpenedCa, CaStoreError> {
        self.finish_rotation();
        let cert_path = self.cert_path();
        match fs::read_to_string(&cert_path) {
            Ok(cert_pem) => self.load(&cert_pem),
            Err(err) if err.kind() == io::ErrorKind::NotFound => {
                Err(CaStoreError::NoCa { cert: cert_path })
            }
            Err(source) => Err(CaStoreError::Io {
                path: cert_path,
                source,
            }),
        }
    }

    /// Replaces the CA with a new one and returns both. The old certificate
    /// is kept as `ca-previous.pem` and its key is deleted.
    ///
    /// The new certificate is written to `ca.pem.next` first and renamed
    /// over `ca.pem` once its key is stored, so a crash leaves either CA
    /// whole: [`CaStore::open`] finishes or drops the cut-short rotation.
    ///
    /// # Errors
    ///
    /// Returns a [`CaStoreError`] when the current CA does not load or the
    /// new one cannot be stored; the current CA then stays in place.
    pub fn rotate(&self) -> Result<Rotation, CaStoreError> {
        let _lock = self.lock()?;
        let previous = self.open_locked()?;
        let (ca, key_der) = LocalCa::generate().map_err(CaStoreError::Generate)?;
        let next_path = self.dir.join(CA_NEXT_FILE);
        write_cert(&next_path, ca.cert_pem())?;
        let key_location = self.store_key(&ca, &key_der)?;
        fs::rename(&next_path, self.cert_path()).map_err(|source| CaStoreError::Io {
            path: self.cert_path(),
            source,
        })?;

        write_cert(&self.dir.join(CA_PREVIOUS_FILE), previous.ca.cert_pem())?;
        self.delete_old_key(&previous, &key_location);
        tracing::info!(path = %self.cert_path().display(), key = %key_location, "replaced the root CA");
        Ok(Rotation {
            previous: previous.ca,
            current: OpenedCa {
                ca,
                created: true,
                key_location,
            },
        })
    }

    /// Takes the data directory's CA lock, held until the returned file is
    /// dropped, so an agent starting, a rotation and a reload never see
    /// each other's half-written files.
    fn lock(&self) -> Result<fs::File, CaStoreError> {
        let io_error = |path: &Path| {
            let path = path.to_owned();
            move |source| CaStoreError::Io { path, source }
        };
        fs::create_dir_all(&self.dir).map_err(io_error(&self.dir))?;
        let path = self.dir.join(CA_LOCK_FILE);
        let file = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(io_error(&path))?;
        file.lock().map_err(io_error(&path))?;
        Ok(file)
    }

    /// Deletes the previous CA's key, unless it is where the new key went.
    fn delete_old_key(&self, previous: &OpenedCa, new_location: &str) {
        if previous.key_location == new_location {
            return;
        }
        let result = if previous.key_location == self.key_file().location() {
            self.key_file().delete()
        } else {
            match keychain_account(previous.ca.cert_pem()) {
                Ok(account) => KeychainSecret::new(account).delete(),
                // The certificate loaded a moment ago, so this does not happen.
                Err(_) => return,
            }
        };
        if let Err(err) = result {
            tracing::warn!(error = %err, "failed to delete the previous CA key");
        }
    }

    /// Completes or drops a rotation that stopped between writing
    /// `ca.pem.next` and renaming it: the new certificate is used when its
    /// key is stored, and removed otherwise.
    fn finish_rotation(&self) {
        let next_path = self.dir.join(CA_NEXT_FILE);
        let Ok(next_pem) = fs::read_to_string(&next_path) else {
            return;
        };
        let outcome = match self.load(&next_pem) {
            Ok(_) => fs::rename(&next_path, self.cert_path()).map(|()| "finished"),
            Err(_) => fs::remove_file(&next_path).map(|()| "dropped"),
        };
        match outcome {
            Ok(outcome) => {
                tracing::warn!(outcome, path = %next_path.display(), "found a CA rotation that was cut short")
            }
            Err(err) => {
                tracing::warn!(error = %err, path = %next_path.display(), "failed to clean up a CA rotation that was cut short")
            }
        }
    }

    /// Loads the CA, which must exist.
    fn load(&self, cert_pem: &str) -> Result<OpenedCa, CaStoreError> {
        let cert_path = self.cert_path();
        let account = keychain_account(cert_pem).map_err(|reason| CaStoreError::Invalid {
            location: cert_path.display().to_string(),
            reason,
        })?;
        let mut keychain = self.keychain_secret(&account);
        let file = self.key_file();
        if let Some(secret) = &keychain {
            match secret.load() {
                Ok(Some(key)) => {
                    let ca = self.load_parts(cert_pem, &key, &secret.location())?;
                    return Ok(OpenedCa {
                        ca,
                        created: false,
                        key_location: secret.location(),
                    });
                }
                Ok(None) => {}
                // A key file can still serve, and is not moved this time.
                Err(err) if file.path().exists() => {
                    tracing::warn!(error = %err, file = %file.path().display(), "failed to read the CA key from the OS keychain; using the key file");
                    keychain = None;
                }
                Err(err) => return Err(err.into()),
            }
        }

        let Some(key) = file.load()? else {
            return Err(CaStoreError::MissingKey {
                cert: cert_path,
                keychain: keychain.map_or_else(
                    || "the OS keychain (not available)".to_owned(),
                    |k| k.location(),
                ),
                file: file.path().to_owned(),
            });
        };
        let ca = self.load_parts(cert_pem, &key, &file.location())?;
        let key_location = match keychain {
            Some(keychain) => move_to_keychain(&file, &keychain, &key),
            None => file.location(),
        };
        Ok(OpenedCa {
            ca,
            created: false,
            key_location,
        })
    }

    /// Creates a new CA; the caller holds the lock, which also created the
    /// directory.
    fn create(&self) -> Result<OpenedCa, CaStoreError> {
        let (ca, key_der) = LocalCa::generate().map_err(CaStoreError::Generate)?;
        let key_location = self.store_key(&ca, &key_der)?;

        // The key is stored first and only then the certificate, so a crash
        // in between leaves no certificate without its key.
        write_cert(&self.cert_path(), ca.cert_pem())?;
        tracing::info!(path = %self.cert_path().display(), key = %key_location, "created a new root CA");
        Ok(OpenedCa {
            ca,
            created: true,
            key_location,
        })
    }

    /// Stores a new CA's key in the keychain, or in the file when the
    /// keychain is unavailable or fails, and returns where it went.
    fn store_key(&self, ca: &LocalCa, key_der: &[u8]) -> Result<String, CaStoreError> {
        let account = keychain_account(ca.cert_pem()).map_err(CaStoreError::Generate)?;
        if let Some(keychain) = self.keychain_secret(&account) {
            match keychain.save(key_der) {
                Ok(()) => return Ok(keychain.location()),
                Err(err) => log_fallback_once(&err.to_string()),
            }
        }
        let file = self.key_file();
        let pem = ca::key_pem(key_der).map_err(CaStoreError::Generate)?;
        file.save(pem.as_bytes())?;
        Ok(file.location())
    }

    /// Loads the CA from its parts; an error names the certificate file or
    /// the key's location, whichever is at fault.
    fn load_parts(
        &self,
        cert_pem: &str,
        key: &[u8],
        key_location: &str,
    ) -> Result<LocalCa, CaStoreError> {
        LocalCa::from_parts(cert_pem, key).map_err(|reason| {
            let location = match reason {
                CaError::InvalidKey(_) => key_location.to_owned(),
                _ => self.cert_path().display().to_string(),
            };
            CaStoreError::Invalid { location, reason }
        })
    }

    fn keychain_secret(&self, account: &str) -> Option<KeychainSecret> {
        (self.keychain == Keychain::Available).then(|| KeychainSecret::new(account))
    }
}

/// The keychain account of a CA: `root CA key <SHA-256 of the certificate>`.
fn keychain_account(cert_pem: &str) -> Result<String, CaError> {
    let der = ca::cert_der(cert_pem)?;
    let digest = Sha256::digest(&der);
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    Ok(format!("root CA key {hex}"))
}

/// Copies the key into the keychain, checks it reads back, and only then
/// removes the file. Returns where the key is kept afterwards.
fn move_to_keychain(file: &OwnerOnlyFile, keychain: &KeychainSecret, key: &[u8]) -> String {
    let moved = keychain.save(key).and_then(|()| keychain.load());
    match moved {
        Ok(Some(stored)) if stored == key => match file.delete() {
            Ok(()) => {
                tracing::info!(from = %file.path().display(), to = %keychain.location(), "moved the CA key into the OS keychain");
                keychain.location()
            }
            Err(err) => {
                tracing::warn!(error = %err, "copied the CA key into the OS keychain but failed to remove the file");
                keychain.location()
            }
        },
        Ok(_) => {
            tracing::warn!(keychain = %keychain.location(), "the OS keychain returned another key than was stored; keeping the key file");
            file.location()
        }
        Err(err) => {
            log_fallback_once(&err.to_string());
            file.location()
        }
    }
}

fn log_fallback_once(reason: &str) {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        tracing::warn!(reason, "no OS keychain is available, so the CA key is kept in a file readable only by its owner");
    });
}

fn write_cert(path: &Path, cert_pem: &str) -> Result<(), CaStoreError> {
    let io_error = |source| CaStoreError::Io {
        path: path.to_owned(),
        source,
    };
    let mut temp = path.as_os_str().to_owned();
    temp.push(".new");
    fs::write(&temp, cert_pem).map_err(io_error)?;
    fs::rename(&temp, path).map_err(io_error)
}

#[cfg(test)]
mod tests {
    use std::sync::OnceLock;

    use super::*;

    /// Sets `keyring_core`'s mock store as the default, once per test process.
    fn mock_keychain() -> Keychain {
        static SET: OnceLock<()> = OnceLock::new();
        SET.get_or_init(|| {
            keyring_core::set_default_store(keyring_core::mock::Store::new().unwrap());
        });
        Keychain::Available
    }

    fn keychain_entry(cert_pem: &str) -> keyring_core::Entry {
        let account = keychain_account(cert_pem).unwrap();
        keyring_core::Entry::new(secret::KEYCHAIN_SERVICE, &account).unwrap()
    }

    #[test]
    fn new_key_goes_to_the_keychain() {
        let dir = tempfile::tempdir().unwrap();
        let store = CaStore::new(dir.path(), mock_keychain());
        let created = store.open_or_create().unwrap();
        assert!(created.created);
        assert!(
            created.key_location.starts_with("the OS keychain"),
            "{}",
            created.key_location
        );
        assert!(!dir.path().join(CA_KEY_FILE).exists());

        let stored = keychain_entry(created.ca.cert_pem()).get_secret().unwrap();
        assert!(!stored.is_empty());
        let reopened = store.open_or_create().unwrap();
        assert!(!reopened.created);
        assert_eq!(reopened.ca.cert_der(), created.ca.cert_der());
    }

    #[test]
    fn unavailable_keychain_keeps_the_key_in_an_owner_only_file() {
        let dir = tempfile::tempdir().unwrap();
        let store = CaStore::new(dir.path(), Keychain::Unavailable);
        let created = store.open_or_create().unwrap();
        assert!(
            created.key_location.contains("ca.key"),
            "{}",
            created.key_location
        );
        let key = fs::read_to_string(dir.path().join(CA_KEY_FILE)).unwrap();
        assert!(key.starts_with("-----BEGIN PRIVATE KEY-----"));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(dir.path().join(CA_KEY_FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }

        let reopened = store.open_or_create().unwrap();
        assert_eq!(reopened.ca.cert_der(), created.ca.cert_der());
    }

    #[test]
    fn failing_keychain_keeps_the_key_file() {
        let dir = tempfile::tempdir().unwrap();
        let keychain = mock_keychain();
        let store = CaStore::new(dir.path(), Keychain::Unavailable);
        let created = store.open_or_create().unwrap();
        let entry = keychain_entry(created.ca.cert_pem());
        let credential: &keyring_core::mock::Cred = entry.as_any().downcast_ref().unwrap();
        credential.set_error(keyring_core::Error::NoStorageAccess("locked".into()));

        let reopened = CaStore::new(dir.path(), keychain).open_or_create().unwrap();
        assert!(
            reopened.key_location.contains("ca.key"),
            "{}",
            reopened.key_location
        );
        assert!(dir.path().join(CA_KEY_FILE).exists());
    }

    #[test]
    fn key_file_moves_into_a_working_keychain() {
        let dir = tempfile::tempdir().unwrap();
        let created = CaStore::new(dir.path(), Keychain::Unavailable)
            .open_or_create()
            .unwrap();
        assert!(dir.path().join(CA_KEY_FILE).exists());

        let moved = CaStore::new(dir.path(), mock_keychain())
            .open_or_create()
            .unwrap();
        assert!(
            moved.key_location.starts_with("the OS keychain"),
            "{}",
            moved.key_location
        );
        assert!(!dir.path().join(CA_KEY_FILE).exists());
        assert_eq!(moved.ca.cert_der(), created.ca.cert_der());
        let stored = keychain_entry(created.ca.cert_pem()).get_secret().unwrap();
        assert!(!stored.is_empty());
    }

    #[test]
    fn key_missing_everywhere_names_both_places() {
        let dir = tempfile::tempdir().unwrap();
        let created = CaStore::new(dir.path(), mock_keychain())
            .open_or_create()
            .unwrap();
        keychain_entry(created.ca.cert_pem())
            .delete_credential()
            .unwrap();

        let err = CaStore::new(dir.path(), mock_keychain())
            .open_or_create()
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("ca.pem exists but its private key is in neither the OS keychain"),
            "{err}"
        );
        assert!(err.contains("ca.key"), "{err}");
    }

    #[test]
    fn key_file_without_certificate_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        CaStore::new(dir.path(), Keychain::Unavailable)
            .open_or_create()
            .unwrap();
        fs::remove_file(dir.path().join(CA_CERT_FILE)).unwrap();

        let err = CaStore::new(dir.path(), Keychain::Unavailable)
            .open_or_create()
            .unwrap_err()
            .to_string();
        assert!(err.contains("ca.key exists but"), "{err}");
        assert!(err.contains("ca.pem does not"), "{err}");
    }

    #[test]
    fn damaged_certificate_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        CaStore::new(dir.path(), Keychain::Unavailable)
            .open_or_create()
            .unwrap();
        fs::write(dir.path().join(CA_CERT_FILE), "not a certificate").unwrap();

        let err = CaStore::new(dir.path(), Keychain::Unavailable)
            .open_or_create()
            .unwrap_err()
            .to_string();
        assert!(err.contains("invalid CA in"), "{err}");
        assert!(err.contains("ca.pem"), "{err}");
    }

    #[test]
    fn locked_keychain_is_an_error_not_a_new_ca() {
        let dir = tempfile::tempdir().unwrap();
        let created = CaStore::new(dir.path(), mock_keychain())
            .open_or_create()
            .unwrap();
        let entry = keychain_entry(created.ca.cert_pem());
        let credential: &keyring_core::mock::Cred = entry.as_any().downcast_ref().unwrap();
        credential.set_error(keyring_core::Error::NoStorageAccess("locked".into()));

        let err = CaStore::new(dir.path(), mock_keychain())
            .open_or_create()
            .unwrap_err()
            .to_string();
        assert!(err.contains("locked"), "{err}");
        let cert = fs::read_to_string(dir.path().join(CA_CERT_FILE)).unwrap();
        assert_eq!(cert, created.ca.cert_pem());
    }

    #[test]
    fn rotation_replaces_the_file_key_and_keeps_the_old_certificate() {
        let dir = tempfile::tempdir().unwrap();
        let store = CaStore::new(dir.path(), Keychain::Unavailable);
        let first = store.open_or_create().unwrap();
        let old_key = fs::read(dir.path().join(CA_KEY_FILE)).unwrap();

        let rotation = store.rotate().unwrap();
        assert_eq!(rotation.previous.cert_der(), first.ca.cert_der());
        assert_ne!(rotation.current.ca.cert_der(), first.ca.cert_der());
        assert_ne!(fs::read(dir.path().join(CA_KEY_FILE)).unwrap(), old_key);
        let previous = fs::read_to_string(dir.path().join(CA_PREVIOUS_FILE)).unwrap();
        assert_eq!(previous, first.ca.cert_pem());
        assert!(!dir.path().join(CA_NEXT_FILE).exists());

        let reopened = store.open().unwrap();
        assert_eq!(reopened.ca.cert_der(), rotation.current.ca.cert_der());
    }

    #[test]
    fn rotation_deletes_the_old_keychain_entry() {
        let dir = tempfile::tempdir().unwrap();
        let store = CaStore::new(dir.path(), mock_keychain());
        let first = store.open_or_create().unwrap();

        let rotation = store.rotate().unwrap();
        let old_entry = keychain_entry(first.ca.cert_pem()).get_secret();
        assert!(
            matches!(old_entry, Err(keyring_core::Error::NoEntry)),
            "{old_entry:?}"
        );
        let new_entry = keychain_entry(rotation.current.ca.cert_pem()).get_secret();
        assert!(new_entry.is_ok());
        assert_eq!(
            store.open().unwrap().ca.cert_der(),
            rotation.current.ca.cert_der()
        );
    }

    #[test]
    fn cut_short_rotation_with_its_key_stored_is_finished() {
        let dir = tempfile::tempdir().unwrap();
        let store = CaStore::new(dir.path(), mock_keychain());
        store.open_or_create().unwrap();
        let (next, key_der) = LocalCa::generate().unwrap();
        write_cert(&dir.path().join(CA_NEXT_FILE), next.cert_pem()).unwrap();
        store.store_key(&next, &key_der).unwrap();

        assert_eq!(store.open().unwrap().ca.cert_der(), next.cert_der());
        assert!(!dir.path().join(CA_NEXT_FILE).exists());
    }

    #[test]
    fn cut_short_rotation_without_its_key_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let store = CaStore::new(dir.path(), mock_keychain());
        let current = store.open_or_create().unwrap();
        let (next, _) = LocalCa::generate().unwrap();
        write_cert(&dir.path().join(CA_NEXT_FILE), next.cert_pem()).unwrap();

        assert_eq!(store.open().unwrap().ca.cert_der(), current.ca.cert_der());
        assert!(!dir.path().join(CA_NEXT_FILE).exists());
    }

    #[test]
    fn concurrent_first_starts_share_one_ca() {
        let dir = tempfile::tempdir().unwrap();
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let store = CaStore::new(dir.path(), Keychain::Unavailable);
                std::thread::spawn(move || store.open_or_create().unwrap().ca.cert_der().to_vec())
            })
            .collect();
        let certs: Vec<Vec<u8>> = threads.into_iter().map(|t| t.join().unwrap()).collect();

        let on_disk = CaStore::new(dir.path(), Keychain::Unavailable)
            .open()
            .unwrap();
        for cert in &certs {
            assert_eq!(cert, on_disk.ca.cert_der());
        }
    }
}
