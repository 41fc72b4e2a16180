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

mod files;
mod rotation;

pub use files::read_cert_file;
use files::{warn_if_readable_by_others, write_cert};
pub use rotation::Rotation;

/// File name of the CA certificate in the data directory.
pub const CA_CERT_FILE: &str = "ca.pem";

/// File name of the CA private key when it is kept in a file.
pub const CA_KEY_FILE: &str = "ca.key";

/// File name of the certificate that a rotation replaced.
pub const CA_PREVIOUS_FILE: &str = "ca-previous.pem";

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

/// The CA files of one data directory.
#[derive(Debug, Clone)]
pub struct CaStore {
    dir: PathBuf,
    keychain: Keychain,
    move_key_file: bool,
}

impl CaStore {
    /// Names the CA in `dir`, with its key in `keychain` when available.
    pub fn new(dir: &Path, keychain: Keychain) -> CaStore {
        CaStore {
            dir: dir.to_owned(),
            keychain,
            move_key_file: false,
        }
    }

    /// Lets loading move a key file into a working keychain. Only the agent
    /// does this: a command run from a desktop session must not move the
    /// key out of reach of an agent that runs without the keychain.
    pub fn moving_key_file_to_keychain(mut self) -> CaStore {
        self.move_key_file = true;
        self
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
        self.recover_rotation();
        let cert_pem = read_cert_file(&self.cert_path())?;
        self.load(&cert_pem, self.move_key_file)
    }

    /// Reads the certificate file without its key, after cleaning up a
    /// rotation that a crash cut short.
    ///
    /// # Errors
    ///
    /// Returns [`CaStoreError::NoCa`] when it does not exist, and
    /// [`CaStoreError::Io`] when it cannot be read or is not a regular
    /// file of a sensible size.
    pub fn read_cert(&self) -> Result<String, CaStoreError> {
        if self.dir.join(rotation::CA_NEXT_FILE).exists() {
            let _lock = self.lock()?;
            self.recover_rotation();
        }
        read_cert_file(&self.cert_path())
    }

    /// Takes the data directory's CA lock, held until the returned file is
    /// dropped, so an agent starting, a rotation and a reload never see
    /// each other's half-written files.
    fn lock(&self) -> Result<fs::File, CaStoreError> {
        fs::create_dir_all(&self.dir).map_err(|source| CaStoreError::Io {
            path: self.dir.clone(),
            source,
        })?;
        let path = self.dir.join(CA_LOCK_FILE);
        let file = files::open_lock_file(&path)?;
        self.chown_to_dir_owner(&path);
        file.lock()
            .map_err(|source| CaStoreError::Io { path, source })?;
        Ok(file)
    }

    /// Gives a file that this process created in the data directory to the
    /// directory's owner, so a command run with sudo leaves files that the
    /// user's agent can still read.
    fn chown_to_dir_owner(&self, path: &Path) {
        files::chown_to_owner_of(&self.dir, path);
    }

    /// Loads the CA of `cert_pem` with its key, and moves a key file into
    /// the keychain when `move_key_file` is set and the keychain works.
    fn load(&self, cert_pem: &str, move_key_file: bool) -> Result<OpenedCa, CaStoreError> {
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
        warn_if_readable_by_others(file.path());
        let key_location = match keychain {
            Some(keychain) if move_key_file => move_to_keychain(&file, &keychain, &key),
            _ => file.location(),
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
        self.chown_to_dir_owner(&self.cert_path());
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
        self.chown_to_dir_owner(file.path());
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

/// Returns the keychain account of a CA: `root CA key <SHA-256 of the
/// certificate>`.
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

#[cfg(test)]
mod tests;
