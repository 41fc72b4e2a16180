//! The per-installation root certificate authority: created on first start,
//! stored in the data directory, and validated every time it is loaded, so
//! a damaged file is a clear startup error and never a failure inside a
//! connection.
//!
//! The certificate is `ca.pem`; the private key is `ca.key`, readable only
//! by its owner.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use hudsucker::rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, PublicKeyData, SerialNumber, PKCS_ECDSA_P256_SHA256,
};
use thiserror::Error;
use time::{Duration, OffsetDateTime};

/// File name of the CA certificate in the data directory.
pub const CA_CERT_FILE: &str = "ca.pem";

/// File name of the CA private key in the data directory.
pub const CA_KEY_FILE: &str = "ca.key";

/// Validity of a new CA certificate.
const CA_VALIDITY: Duration = Duration::days(3 * 365);

/// The reason the CA could not be created or loaded.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum CaError {
    /// A file could not be read or written.
    #[error("failed to access {path}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// Only one of the two files exists.
    #[error(
        "{present} exists but {missing} does not; restore the missing file, or move both \
         away to create a new CA (browsers must then trust the new one)"
    )]
    Incomplete {
        /// The file that exists.
        present: PathBuf,
        /// The file that is missing.
        missing: PathBuf,
    },
    /// A file exists but its content is not usable.
    #[error("invalid CA file {path}: {reason}; fix or remove it to create a new CA")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// The problem with it.
        reason: String,
    },
    /// Generating the key or certificate failed.
    #[error("failed to generate the CA: {0}")]
    Generate(String),
}

/// A loaded and validated root CA.
pub struct LocalCa {
    cert_pem: String,
    issuer: Issuer<'static, KeyPair>,
    not_after: OffsetDateTime,
}

impl std::fmt::Debug for LocalCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The key stays out of debug output.
        f.debug_struct("LocalCa")
            .field("not_after", &self.not_after)
            .finish_non_exhaustive()
    }
}

impl LocalCa {
    /// Loads the CA from `dir`, or creates it there when neither file
    /// exists. Returns the CA and whether it was created.
    ///
    /// # Errors
    ///
    /// Returns a [`CaError`] naming the file when a file cannot be read or
    /// written, only one of the two exists, or one is invalid.
    pub fn load_or_create(dir: &Path) -> Result<(LocalCa, bool), CaError> {
        let cert_path = dir.join(CA_CERT_FILE);
        let key_path = dir.join(CA_KEY_FILE);
        match (cert_path.exists(), key_path.exists()) {
            (true, true) => Ok((LocalCa::load(&cert_path, &key_path)?, false)),
            (false, false) => Ok((LocalCa::create(dir, &cert_path, &key_path)?, true)),
            (true, false) => Err(CaError::Incomplete {
                present: cert_path,
                missing: key_path,
            }),
            (false, true) => Err(CaError::Incomplete {
                present: key_path,
                missing: cert_path,
            }),
        }
    }

    /// Loads and validates an existing CA.
    ///
    /// # Errors
    ///
    /// Returns a [`CaError`] naming the file that cannot be read or is
    /// invalid: a key that does not parse, a certificate that does not
    /// parse, is not a CA, has expired, or does not belong to the key.
    pub fn load(cert_path: &Path, key_path: &Path) -> Result<LocalCa, CaError> {
        let cert_pem = read(cert_path)?;
        let key_pem = read(key_path)?;
        let invalid = |path: &Path, reason: String| CaError::Invalid {
            path: path.to_owned(),
            reason,
        };
        let key = KeyPair::from_pem(&key_pem)
            .map_err(|err| invalid(key_path, format!("not a PEM private key ({err})")))?;
        let not_after = validate_cert(&cert_pem, &key).map_err(|r| invalid(cert_path, r))?;
        let issuer = Issuer::from_ca_cert_pem(&cert_pem, key)
            .map_err(|err| invalid(cert_path, err.to_string()))?;
        Ok(LocalCa {
            cert_pem,
            issuer,
            not_after,
        })
    }

    fn create(dir: &Path, cert_path: &Path, key_path: &Path) -> Result<LocalCa, CaError> {
        fs::create_dir_all(dir).map_err(|source| CaError::Io {
            path: dir.to_owned(),
            source,
        })?;
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)
            .map_err(|err| CaError::Generate(err.to_string()))?;
        let params = ca_params()?;
        let not_after = params.not_after;
        let cert = params
            .self_signed(&key)
            .map_err(|err| CaError::Generate(err.to_string()))?;

        // The key is written first and only then the certificate, so a crash
        // in between leaves an incomplete pair that the next start reports.
        write_private(key_path, &key.serialize_pem())?;
        write_public(cert_path, &cert.pem())?;
        tracing::info!(path = %cert_path.display(), "created a new root CA");
        Ok(LocalCa {
            cert_pem: cert.pem(),
            issuer: Issuer::new(params, key),
            not_after,
        })
    }

    /// Returns the CA certificate in PEM form.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// When the CA certificate expires.
    pub fn not_after(&self) -> OffsetDateTime {
        self.not_after
    }

    pub(crate) fn issuer(&self) -> &Issuer<'static, KeyPair> {
        &self.issuer
    }
}

/// Parameters of a new root: P-256, path length 0, the CA key usages, a
/// random serial and a validity of [`CA_VALIDITY`].
fn ca_params() -> Result<CertificateParams, CaError> {
    let mut params = CertificateParams::default();
    let host = hostname();
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, format!("webwarden local CA ({host})"));
    name.push(DnType::OrganizationName, "webwarden");
    params.distinguished_name = name;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.serial_number = Some(random_serial()?);
    let now = OffsetDateTime::now_utc();
    params.not_before = now - Duration::hours(1);
    params.not_after = now + CA_VALIDITY;
    Ok(params)
}

/// A positive 128-bit random serial number, since RFC 5280 allows at most 20
/// octets and recommends unpredictable serials.
pub(crate) fn random_serial() -> Result<SerialNumber, CaError> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).map_err(|err| CaError::Generate(err.to_string()))?;
    bytes[0] &= 0x7f;
    bytes[0] |= 0x01;
    Ok(SerialNumber::from_slice(&bytes))
}

/// Checks that the PEM contains one CA certificate for `key` that is valid now,
/// and returns its expiry.
fn validate_cert(cert_pem: &str, key: &KeyPair) -> Result<OffsetDateTime, String> {
    let (_, pem) = x509_parser::pem::parse_x509_pem(cert_pem.as_bytes())
        .map_err(|err| format!("not a PEM certificate ({err})"))?;
    let cert = pem
        .parse_x509()
        .map_err(|err| format!("not an X.509 certificate ({err})"))?;
    let is_ca = cert
        .basic_constraints()
        .ok()
        .flatten()
        .is_some_and(|bc| bc.value.ca);
    if !is_ca {
        return Err("the certificate is not a CA certificate".to_owned());
    }
    if cert.public_key().raw != key.subject_public_key_info().as_slice() {
        return Err("the certificate does not belong to the private key in ca.key".to_owned());
    }
    let validity = cert.validity();
    let not_after = validity.not_after.to_datetime();
    if !validity.is_valid() {
        return Err(format!(
            "the certificate is not valid now (it expires {not_after})"
        ));
    }
    Ok(not_after)
}

fn read(path: &Path) -> Result<String, CaError> {
    fs::read_to_string(path).map_err(|source| CaError::Io {
        path: path.to_owned(),
        source,
    })
}

/// Writes a new file that only its owner can read (mode 0600 on Unix).
fn write_private(path: &Path, contents: &str) -> Result<(), CaError> {
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    // NOTE: on Windows the file inherits the data directory's ACL, which
    // for a per-user data directory admits only that user and SYSTEM.
    let io_error = |source| CaError::Io {
        path: path.to_owned(),
        source,
    };
    let mut file = options.open(path).map_err(io_error)?;
    file.write_all(contents.as_bytes()).map_err(io_error)?;
    file.sync_all().map_err(io_error)
}

fn write_public(path: &Path, contents: &str) -> Result<(), CaError> {
    fs::write(path, contents).map_err(|source| CaError::Io {
        path: path.to_owned(),
        source,
    })
}

fn hostname() -> String {
    fs::read_to_string("/etc/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("COMPUTERNAME").ok())
        .unwrap_or_else(|| "this machine".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ca_is_created_once_then_reused() {
        let dir = tempfile::tempdir().unwrap();
        let (first, created) = LocalCa::load_or_create(dir.path()).unwrap();
        assert!(created);
        let (second, created) = LocalCa::load_or_create(dir.path()).unwrap();
        assert!(!created);
        assert_eq!(first.cert_pem(), second.cert_pem());

        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(dir.path().join(CA_KEY_FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn new_ca_has_ca_constraints_and_validity() {
        let dir = tempfile::tempdir().unwrap();
        let (ca, _) = LocalCa::load_or_create(dir.path()).unwrap();
        let (_, pem) = x509_parser::pem::parse_x509_pem(ca.cert_pem().as_bytes()).unwrap();
        let cert = pem.parse_x509().unwrap();
        let constraints = cert.basic_constraints().unwrap().unwrap().value;
        assert!(constraints.ca);
        assert_eq!(constraints.path_len_constraint, Some(0));
        let usage = cert.key_usage().unwrap().unwrap().value;
        assert!(usage.key_cert_sign());
        assert!(usage.crl_sign());
        assert!(usage.digital_signature());
        let days = (cert.validity().not_after.to_datetime()
            - cert.validity().not_before.to_datetime())
        .whole_days();
        assert!((365..=5 * 365).contains(&days), "{days} days");
    }

    #[test]
    fn damaged_files_are_clear_errors() {
        let dir = tempfile::tempdir().unwrap();
        LocalCa::load_or_create(dir.path()).unwrap();
        let cert_path = dir.path().join(CA_CERT_FILE);
        let key_path = dir.path().join(CA_KEY_FILE);
        let good_cert = fs::read_to_string(&cert_path).unwrap();

        fs::write(&cert_path, "not a certificate").unwrap();
        let err = LocalCa::load_or_create(dir.path()).unwrap_err().to_string();
        assert!(
            err.contains("invalid CA file") && err.contains("ca.pem"),
            "{err}"
        );

        fs::write(&cert_path, &good_cert).unwrap();
        let other = tempfile::tempdir().unwrap();
        LocalCa::load_or_create(other.path()).unwrap();
        fs::copy(other.path().join(CA_KEY_FILE), &key_path).unwrap();
        let err = LocalCa::load_or_create(dir.path()).unwrap_err().to_string();
        assert!(err.contains("does not belong to the private key"), "{err}");

        fs::remove_file(&key_path).unwrap();
        let err = LocalCa::load_or_create(dir.path()).unwrap_err().to_string();
        assert!(err.contains("ca.key does not"), "{err}");
    }
}
