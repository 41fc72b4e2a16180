//! Replacing the root CA without a moment in which the stores trust neither
//! CA or the agent has a certificate without its key.
//!
//! A rotation stages the new CA next to the current one: `ca.pem.next`,
//! and the key in the keychain under the new certificate's account or in
//! `ca.key.next`. Then the caller adds the new certificate to the trust
//! stores, and only then the staged files are renamed into place.
//! All of it runs under the data directory's CA lock. After a crash, the
//! next open keeps the current CA when it still loads and drops the staged
//! files. It finishes the commit only when the current certificate lost its
//! key to a half-done commit.

use std::fs;
use std::path::PathBuf;

use webwarden_proxy::LocalCa;
use webwarden_system::secret::{KeychainSecret, OwnerOnlyFile, SecretStore};

use super::{
    keychain_account, read_cert_file, write_cert, CaStore, CaStoreError, Keychain, OpenedCa,
    CA_KEY_FILE, CA_PREVIOUS_FILE,
};

/// File name of the staged certificate during a rotation.
pub(super) const CA_NEXT_FILE: &str = "ca.pem.next";

/// File name of the staged key during a rotation with the key in a file.
const CA_KEY_NEXT_FILE: &str = "ca.key.next";

/// The outcome of [`CaStore::rotate`].
#[derive(Debug)]
pub enum Rotation {
    /// The new CA is in place.
    Done {
        /// The replaced certificate (PEM), which may have expired.
        previous_pem: String,
        /// The new CA.
        current: Box<OpenedCa>,
    },
    /// The caller declined to commit; nothing changed.
    Abandoned,
}

/// The place of a key. The new key goes to the old key's place, so every
/// process that could load the old CA can load the new one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum KeyPlace {
    /// The OS keychain, under the certificate's account.
    Keychain,
    /// The owner-only key file.
    File,
}

impl CaStore {
    /// Replaces the CA with a new one. `before_commit` gets the current
    /// certificate (PEM) and the staged CA, adds the new certificate where
    /// the old one is trusted, and returns whether to commit. On `false`
    /// the staged CA is discarded and nothing changes.
    ///
    /// The current CA may have expired, and its key may be missing: the
    /// rotation needs only its certificate. Its key is deleted after the
    /// commit, and the certificate is kept as `ca-previous.pem`.
    ///
    /// # Errors
    ///
    /// Returns a [`CaStoreError`] when there is no current certificate or
    /// the new CA cannot be staged or committed. A failure before the
    /// commit leaves the current CA in place.
    pub fn rotate(
        &self,
        before_commit: impl FnOnce(&str, &LocalCa) -> bool,
    ) -> Result<Rotation, CaStoreError> {
        let _lock = self.lock()?;
        self.recover_rotation();
        let previous_pem = read_cert_file(&self.cert_path())?;
        let place = self.key_place(&previous_pem);

        let (ca, key_der) = LocalCa::generate().map_err(CaStoreError::Generate)?;
        let next_path = self.dir.join(CA_NEXT_FILE);
        write_cert(&next_path, ca.cert_pem())?;
        self.chown_to_dir_owner(&next_path);
        let staged = self.stage_key(&ca, &key_der, place);
        let key_location = match staged {
            Ok(location) => location,
            Err(err) => {
                self.discard_staged(ca.cert_pem());
                return Err(err);
            }
        };

        if !before_commit(&previous_pem, &ca) {
            self.discard_staged(ca.cert_pem());
            return Ok(Rotation::Abandoned);
        }
        self.commit(place)?;
        self.chown_to_dir_owner(&self.cert_path());
        let previous = self.dir.join(CA_PREVIOUS_FILE);
        write_cert(&previous, &previous_pem)?;
        self.chown_to_dir_owner(&previous);
        self.delete_key_of(&previous_pem, place);
        tracing::info!(path = %self.cert_path().display(), key = %key_location, "replaced the root CA");
        Ok(Rotation::Done {
            previous_pem,
            current: Box::new(OpenedCa {
                ca,
                created: true,
                key_location,
            }),
        })
    }

    /// Decides where the new key goes: where the current key is, or, when it
    /// is found nowhere, the keychain if available.
    fn key_place(&self, cert_pem: &str) -> KeyPlace {
        let in_keychain = keychain_account(cert_pem)
            .ok()
            .and_then(|account| self.keychain_secret(&account))
            .is_some_and(|secret| matches!(secret.load(), Ok(Some(_))));
        if in_keychain {
            KeyPlace::Keychain
        } else if self.key_file().path().exists() || self.keychain == Keychain::Unavailable {
            KeyPlace::File
        } else {
            KeyPlace::Keychain
        }
    }

    /// Stores the new key where it waits for the commit, and returns the
    /// location it has after the commit.
    pub(super) fn stage_key(
        &self,
        ca: &LocalCa,
        key_der: &[u8],
        place: KeyPlace,
    ) -> Result<String, CaStoreError> {
        if place == KeyPlace::Keychain {
            let account = keychain_account(ca.cert_pem()).map_err(CaStoreError::Generate)?;
            let secret = KeychainSecret::new(account);
            secret.save(key_der)?;
            return Ok(secret.location());
        }
        let pem = webwarden_proxy::ca::key_pem(key_der).map_err(CaStoreError::Generate)?;
        let staged = OwnerOnlyFile::new(self.dir.join(CA_KEY_NEXT_FILE));
        staged.save(pem.as_bytes())?;
        self.chown_to_dir_owner(staged.path());
        Ok(self.key_file().location())
    }

    /// Moves the staged files into place: the key file first, so that a
    /// crash in between leaves a certificate whose key is gone, which the
    /// next open detects and finishes.
    fn commit(&self, place: KeyPlace) -> Result<(), CaStoreError> {
        let rename = |from: PathBuf, to: PathBuf| {
            fs::rename(&from, &to).map_err(|source| CaStoreError::Io { path: to, source })
        };
        if place == KeyPlace::File {
            rename(self.dir.join(CA_KEY_NEXT_FILE), self.dir.join(CA_KEY_FILE))?;
        }
        rename(self.dir.join(CA_NEXT_FILE), self.cert_path())
    }

    /// Removes the staged certificate and key of a rotation that did not
    /// commit.
    fn discard_staged(&self, next_pem: &str) {
        if let Some(secret) = keychain_account(next_pem)
            .ok()
            .and_then(|account| self.keychain_secret(&account))
        {
            if let Err(err) = secret.delete() {
                tracing::warn!(error = %err, "failed to delete the key of a discarded CA");
            }
        }
        for name in [CA_KEY_NEXT_FILE, CA_NEXT_FILE] {
            let path = self.dir.join(name);
            if let Err(err) = fs::remove_file(&path) {
                if err.kind() != std::io::ErrorKind::NotFound {
                    tracing::warn!(path = %path.display(), error = %err, "failed to remove a staged CA file");
                }
            }
        }
    }

    /// Deletes the replaced CA's key from the keychain. A key file was
    /// already replaced by the commit.
    fn delete_key_of(&self, previous_pem: &str, place: KeyPlace) {
        if place == KeyPlace::File {
            return;
        }
        let Some(secret) = keychain_account(previous_pem)
            .ok()
            .and_then(|account| self.keychain_secret(&account))
        else {
            return;
        };
        if let Err(err) = secret.delete() {
            tracing::warn!(error = %err, "failed to delete the previous CA key");
        }
    }

    /// Cleans up after a rotation that a crash cut short. The current CA
    /// is kept when it loads, and the staged one is dropped. When the
    /// current certificate lost its key to a half-done commit, the staged
    /// certificate, which matches the key, is put in place.
    pub(super) fn recover_rotation(&self) {
        let next_path = self.dir.join(CA_NEXT_FILE);
        let Ok(next_pem) = fs::read_to_string(&next_path) else {
            let _ = fs::remove_file(self.dir.join(CA_KEY_NEXT_FILE));
            return;
        };
        let current_loads =
            read_cert_file(&self.cert_path()).is_ok_and(|pem| self.load(&pem, false).is_ok());
        if current_loads {
            self.discard_staged(&next_pem);
            tracing::warn!(path = %next_path.display(), "dropped a CA rotation that was cut short; the current CA stays, and `webwarden ca status` shows whether a store still trusts the dropped one");
            return;
        }
        let finished = self.load(&next_pem, false).is_ok().then(|| {
            // The replaced certificate is kept, since trust stores may
            // still contain it and removing it there needs a copy.
            if let Ok(previous_pem) = read_cert_file(&self.cert_path()) {
                let previous = self.dir.join(CA_PREVIOUS_FILE);
                write_cert(&previous, &previous_pem)?;
                self.chown_to_dir_owner(&previous);
            }
            fs::rename(&next_path, self.cert_path()).map_err(|source| CaStoreError::Io {
                path: self.cert_path(),
                source,
            })
        });
        match finished {
            Some(Ok(())) => {
                tracing::warn!(path = %self.cert_path().display(), "finished a CA rotation that was cut short after its key was committed");
            }
            Some(Err(err)) => {
                tracing::warn!(error = %err, path = %next_path.display(), "failed to finish a CA rotation that was cut short");
            }
            None => {}
        }
    }
}
