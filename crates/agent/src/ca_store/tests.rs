//! Tests of the CA storage with the keychain mocked or unavailable.

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
fn no_keychain_uses_owner_only_file() {
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

    let reopened = CaStore::new(dir.path(), keychain)
        .moving_key_file_to_keychain()
        .open_or_create()
        .unwrap();
    assert!(
        reopened.key_location.contains("ca.key"),
        "{}",
        reopened.key_location
    );
    assert!(dir.path().join(CA_KEY_FILE).exists());
}

#[test]
fn commands_leave_the_key_file_where_it_is() {
    let dir = tempfile::tempdir().unwrap();
    CaStore::new(dir.path(), Keychain::Unavailable)
        .open_or_create()
        .unwrap();

    let opened = CaStore::new(dir.path(), mock_keychain()).open().unwrap();
    assert!(
        opened.key_location.contains("ca.key"),
        "{}",
        opened.key_location
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
        .moving_key_file_to_keychain()
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
fn locked_keychain_is_an_error() {
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

/// Rotates the CA of `store`, committing, and returns the new CA and the
/// replaced certificate.
fn rotate(store: &CaStore) -> (OpenedCa, String) {
    match store.rotate(|_, _| true).unwrap() {
        Rotation::Done {
            previous_pem,
            current,
        } => (*current, previous_pem),
        Rotation::Abandoned => panic!("the rotation was abandoned"),
    }
}

#[test]
fn rotation_replaces_file_key() {
    let dir = tempfile::tempdir().unwrap();
    let store = CaStore::new(dir.path(), Keychain::Unavailable);
    let first = store.open_or_create().unwrap();
    let old_key = fs::read(dir.path().join(CA_KEY_FILE)).unwrap();

    let (current, previous_pem) = rotate(&store);
    assert_eq!(previous_pem, first.ca.cert_pem());
    assert_ne!(current.ca.cert_der(), first.ca.cert_der());
    assert_ne!(fs::read(dir.path().join(CA_KEY_FILE)).unwrap(), old_key);
    let previous = fs::read_to_string(dir.path().join(CA_PREVIOUS_FILE)).unwrap();
    assert_eq!(previous, first.ca.cert_pem());
    for staged in ["ca.pem.next", "ca.key.next"] {
        assert!(!dir.path().join(staged).exists(), "{staged} is left");
    }

    let reopened = store.open().unwrap();
    assert_eq!(reopened.ca.cert_der(), current.ca.cert_der());
}

#[test]
fn rotation_deletes_the_old_keychain_entry() {
    let dir = tempfile::tempdir().unwrap();
    let store = CaStore::new(dir.path(), mock_keychain());
    let first = store.open_or_create().unwrap();

    let (current, _) = rotate(&store);
    let old_entry = keychain_entry(first.ca.cert_pem()).get_secret();
    assert!(
        matches!(old_entry, Err(keyring_core::Error::NoEntry)),
        "{old_entry:?}"
    );
    let new_entry = keychain_entry(current.ca.cert_pem()).get_secret();
    assert!(new_entry.is_ok());
    assert_eq!(store.open().unwrap().ca.cert_der(), current.ca.cert_der());
}

#[test]
fn rotation_keeps_a_file_key_in_a_file() {
    let dir = tempfile::tempdir().unwrap();
    CaStore::new(dir.path(), Keychain::Unavailable)
        .open_or_create()
        .unwrap();

    let store = CaStore::new(dir.path(), mock_keychain());
    let (current, _) = rotate(&store);
    assert!(
        current.key_location.contains("ca.key"),
        "{}",
        current.key_location
    );
    let entry = keychain_entry(current.ca.cert_pem()).get_secret();
    assert!(
        matches!(entry, Err(keyring_core::Error::NoEntry)),
        "{entry:?}"
    );
    let agent_without_keychain = CaStore::new(dir.path(), Keychain::Unavailable);
    assert_eq!(
        agent_without_keychain.open().unwrap().ca.cert_der(),
        current.ca.cert_der()
    );
}

#[test]
fn declined_rotation_changes_nothing() {
    for keychain in [Keychain::Unavailable, mock_keychain()] {
        let dir = tempfile::tempdir().unwrap();
        let store = CaStore::new(dir.path(), keychain);
        let first = store.open_or_create().unwrap();
        let key_file = fs::read(dir.path().join(CA_KEY_FILE)).ok();
        let mut staged_pem = String::new();

        let outcome = store
            .rotate(|previous, staged| {
                assert_eq!(previous, first.ca.cert_pem());
                staged_pem = staged.cert_pem().to_owned();
                false
            })
            .unwrap();
        assert!(matches!(outcome, Rotation::Abandoned));
        assert_eq!(store.open().unwrap().ca.cert_der(), first.ca.cert_der());
        assert_eq!(fs::read(dir.path().join(CA_KEY_FILE)).ok(), key_file);
        let staged_entry = keychain_entry(&staged_pem).get_secret();
        assert!(matches!(staged_entry, Err(keyring_core::Error::NoEntry)));
        for staged in ["ca.pem.next", "ca.key.next", "ca-previous.pem"] {
            assert!(!dir.path().join(staged).exists(), "{staged} is left");
        }
    }
}

#[test]
fn expired_ca_can_be_rotated() {
    let dir = tempfile::tempdir().unwrap();
    let store = CaStore::new(dir.path(), Keychain::Unavailable);
    store.open_or_create().unwrap();
    // A certificate that loads no more: rotation needs only its text.
    fs::write(dir.path().join(CA_CERT_FILE), expired_cert_pem()).unwrap();
    assert!(store.open().is_err());

    let (current, previous_pem) = rotate(&store);
    assert_eq!(previous_pem, expired_cert_pem());
    assert_eq!(store.open().unwrap().ca.cert_der(), current.ca.cert_der());
}

/// Returns a CA certificate of another key, which makes the stored key
/// not belong to it, as an expired or damaged certificate does not load.
fn expired_cert_pem() -> String {
    static PEM: OnceLock<String> = OnceLock::new();
    PEM.get_or_init(|| LocalCa::generate().unwrap().0.cert_pem().to_owned())
        .clone()
}

#[test]
fn crash_before_commit_keeps_the_current_ca() {
    for keychain in [Keychain::Unavailable, mock_keychain()] {
        let dir = tempfile::tempdir().unwrap();
        let store = CaStore::new(dir.path(), keychain);
        let current = store.open_or_create().unwrap();
        let (next, key_der) = LocalCa::generate().unwrap();
        write_cert(&dir.path().join("ca.pem.next"), next.cert_pem()).unwrap();
        let place = if keychain == Keychain::Unavailable {
            rotation::KeyPlace::File
        } else {
            rotation::KeyPlace::Keychain
        };
        store.stage_key(&next, &key_der, place).unwrap();

        assert_eq!(store.open().unwrap().ca.cert_der(), current.ca.cert_der());
        for staged in ["ca.pem.next", "ca.key.next"] {
            assert!(!dir.path().join(staged).exists(), "{staged} is left");
        }
        let staged_entry = keychain_entry(next.cert_pem()).get_secret();
        assert!(matches!(staged_entry, Err(keyring_core::Error::NoEntry)));
    }
}

#[test]
fn crash_inside_a_file_commit_finishes_it() {
    let dir = tempfile::tempdir().unwrap();
    let store = CaStore::new(dir.path(), Keychain::Unavailable);
    store.open_or_create().unwrap();
    let (next, key_der) = LocalCa::generate().unwrap();
    write_cert(&dir.path().join("ca.pem.next"), next.cert_pem()).unwrap();
    store
        .stage_key(&next, &key_der, rotation::KeyPlace::File)
        .unwrap();
    // The key is committed, the certificate not yet.
    fs::rename(dir.path().join("ca.key.next"), dir.path().join(CA_KEY_FILE)).unwrap();

    assert_eq!(store.open().unwrap().ca.cert_der(), next.cert_der());
    assert!(!dir.path().join("ca.pem.next").exists());
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
