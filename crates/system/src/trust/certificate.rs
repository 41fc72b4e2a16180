//! The CA certificate that the trust stores add and remove, with the
//! fingerprints and names each store uses to find it again.

use std::fmt::Write as _;
use std::path::Path;

use pem::{EncodeConfig, LineEnding};
use sha1::Sha1;
use sha2::{Digest, Sha256};
use x509_parser::pem::Pem;

use super::TrustError;
use crate::file::{read_regular_file, ReadFileError};

/// Prefix of the nickname that NSS databases and reports show.
pub const NICKNAME_PREFIX: &str = "webwarden local CA ";

/// Prefix of the anchor file names in the system store directories.
pub const FILE_PREFIX: &str = "webwarden-";

/// Number of hex digits of the SHA-256 fingerprint in [`CaCertificate::id`].
const ID_LEN: usize = 12;

/// Maximum length in bytes of a file that [`CaCertificate::read_file`]
/// reads. A PEM CA certificate is a few kilobytes, even with the text that
/// `openssl x509 -text` writes before it.
pub const MAX_CERTIFICATE_FILE_LEN: u64 = 1024 * 1024;

/// The fix that certificate file errors end with.
const CERTIFICATE_FILE_FIX: &str = "pass the CA certificate file in PEM form";

/// A root CA certificate, parsed and checked once, with the fingerprints
/// that trust stores look it up by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaCertificate {
    pem: String,
    der: Vec<u8>,
    sha256: [u8; 32],
    sha1: [u8; 20],
    subject: String,
}

impl CaCertificate {
    /// Parses the first certificate in `pem` and checks that it is a CA
    /// certificate.
    ///
    /// # Errors
    ///
    /// Returns [`TrustError::InvalidCertificate`] when `pem` contains no PEM
    /// block, the block is not a `CERTIFICATE`, its content is not X.509,
    /// or the certificate is not a CA (basic constraints `CA:TRUE`).
    pub fn from_pem(pem: &str) -> Result<CaCertificate, TrustError> {
        let invalid = |reason: String| TrustError::InvalidCertificate(reason);
        let block = Pem::iter_from_buffer(pem.as_bytes())
            .next()
            .ok_or_else(|| invalid("no PEM block found".to_owned()))?
            .map_err(|err| invalid(format!("not PEM ({err})")))?;
        if block.label != "CERTIFICATE" {
            return Err(invalid(format!(
                "the PEM block is {:?}, expected CERTIFICATE",
                block.label
            )));
        }
        let cert = block
            .parse_x509()
            .map_err(|err| invalid(format!("not an X.509 certificate ({err})")))?;
        let is_ca = cert
            .basic_constraints()
            .ok()
            .flatten()
            .is_some_and(|constraints| constraints.value.ca);
        if !is_ca {
            return Err(invalid(format!(
                "{} is not a CA certificate",
                cert.subject()
            )));
        }
        let subject = cert.subject().to_string();
        let der = block.contents;
        Ok(CaCertificate {
            pem: to_pem(&der),
            sha256: Sha256::digest(&der).into(),
            sha1: Sha1::digest(&der).into(),
            der,
            subject,
        })
    }

    /// Reads the file at `path` and parses the first certificate in it, as
    /// [`CaCertificate::from_pem`] does.
    ///
    /// Only a regular file of at most [`MAX_CERTIFICATE_FILE_LEN`] bytes is
    /// read, so a FIFO or a device fails at once instead of blocking, and a
    /// huge file fails before it is read.
    ///
    /// # Errors
    ///
    /// Returns [`TrustError::Io`] when the file cannot be opened or read.
    /// Its source has kind [`std::io::ErrorKind::NotFound`] when the file
    /// does not exist. Returns [`TrustError::CertificateFile`], which names
    /// the file, when it is not a regular file, is too long, is not UTF-8
    /// text or contains no CA certificate.
    pub fn read_file(path: &Path) -> Result<CaCertificate, TrustError> {
        let file_error = |reason: String| TrustError::CertificateFile {
            path: path.to_owned(),
            reason,
        };
        let bytes = read_regular_file(path, MAX_CERTIFICATE_FILE_LEN).map_err(|err| match err {
            ReadFileError::Io(source) => TrustError::Io {
                action: "read",
                path: path.to_owned(),
                source,
            },
            other => file_error(format!("{other}; {CERTIFICATE_FILE_FIX}")),
        })?;
        let text = std::str::from_utf8(&bytes).map_err(|err| {
            file_error(format!(
                "it is not PEM text (invalid UTF-8 at byte {}); {CERTIFICATE_FILE_FIX}",
                err.valid_up_to()
            ))
        })?;
        CaCertificate::from_pem(text).map_err(|err| match err {
            TrustError::InvalidCertificate(reason) => {
                file_error(format!("{reason}; {CERTIFICATE_FILE_FIX}"))
            }
            other => other,
        })
    }

    /// Returns the certificate in PEM form, one block with a final newline.
    pub fn pem(&self) -> &str {
        &self.pem
    }

    /// Returns the certificate in DER form.
    pub fn der(&self) -> &[u8] {
        &self.der
    }

    /// Returns the SHA-256 fingerprint of the DER form.
    pub fn sha256(&self) -> &[u8; 32] {
        &self.sha256
    }

    /// Returns the SHA-1 fingerprint of the DER form, which the macOS and
    /// Windows stores use to find certificates.
    pub fn sha1(&self) -> &[u8; 20] {
        &self.sha1
    }

    /// Returns the SHA-256 fingerprint as lower-case hex.
    pub fn sha256_hex(&self) -> String {
        hex(&self.sha256)
    }

    /// Returns the first 12 hex digits of the SHA-256 fingerprint, which
    /// name this CA in file names and nicknames.
    pub fn id(&self) -> String {
        let mut id = self.sha256_hex();
        id.truncate(ID_LEN);
        id
    }

    /// Returns the name trust stores show: `webwarden local CA <id>`.
    pub fn nickname(&self) -> String {
        format!("{NICKNAME_PREFIX}{}", self.id())
    }

    /// Returns the file name without extension used in system store
    /// directories: `webwarden-<id>`.
    pub fn file_stem(&self) -> String {
        format!("{FILE_PREFIX}{}", self.id())
    }

    /// Returns the certificate's subject, for messages.
    pub fn subject(&self) -> &str {
        &self.subject
    }
}

/// Encodes bytes as lower-case hex.
pub(crate) fn hex(bytes: &[u8]) -> String {
    let mut text = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        // `fmt::Write` for String never returns an error.
        let _ = write!(text, "{byte:02x}");
    }
    text
}

/// Checks whether a PEM bundle contains the certificate `der`. Blocks that do
/// not decode are skipped, so one damaged entry hides no other.
pub(crate) fn bundle_contains(bundle: &str, der: &[u8]) -> bool {
    Pem::iter_from_buffer(bundle.as_bytes())
        .filter_map(Result::ok)
        .any(|block| block.label == "CERTIFICATE" && block.contents == der)
}

/// Encodes DER as one PEM block with 64-column lines and LF line endings.
fn to_pem(der: &[u8]) -> String {
    let block = pem::Pem::new("CERTIFICATE", der);
    pem::encode_config(&block, EncodeConfig::new().set_line_ending(LineEnding::LF))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A self-signed CA certificate (P-256, `CN=webwarden test CA`,
    /// `CA:TRUE`) made with OpenSSL 3.0 for these tests, valid until 2036.
    pub(crate) const TEST_CA: &str = include_str!("testdata/ca.pem");

    /// A self-signed certificate without the CA basic constraint.
    const NOT_A_CA: &str = include_str!("testdata/leaf.pem");

    #[test]
    fn fingerprints_and_names_derive_from_der() {
        let ca = CaCertificate::from_pem(TEST_CA).unwrap();
        assert_eq!(ca.sha256_hex().len(), 64);
        assert_eq!(ca.sha256_hex(), hex(&Sha256::digest(ca.der())));
        assert_eq!(ca.id(), ca.sha256_hex()[..12]);
        assert_eq!(ca.nickname(), format!("webwarden local CA {}", ca.id()));
        assert_eq!(ca.file_stem(), format!("webwarden-{}", ca.id()));
        assert_eq!(hex(ca.sha1()), hex(&Sha1::digest(ca.der())));
        assert!(
            ca.subject().contains("webwarden test CA"),
            "{}",
            ca.subject()
        );
    }

    #[test]
    fn pem_is_normalized() {
        let ca = CaCertificate::from_pem(TEST_CA).unwrap();
        assert_eq!(ca.pem(), TEST_CA);

        let with_text = format!("subject=CN = webwarden test CA\r\n{TEST_CA}\n\n");
        let again = CaCertificate::from_pem(&with_text).unwrap();
        assert_eq!(again, ca);
    }

    #[test]
    fn invalid_pem_is_rejected_with_reason() {
        let cases = [
            ("", "no PEM block found"),
            ("just text\n", "no PEM block found"),
            (
                "-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n",
                "not PEM",
            ),
            (
                "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
                "the PEM block is \"PRIVATE KEY\", expected CERTIFICATE",
            ),
            (
                "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
                "not an X.509 certificate",
            ),
            (NOT_A_CA, "is not a CA certificate"),
        ];
        for (pem, expected) in cases {
            let err = CaCertificate::from_pem(pem).unwrap_err().to_string();
            assert!(err.starts_with("invalid CA certificate: "), "{err}");
            assert!(err.contains(expected), "{pem:?}: {err}");
        }
    }

    #[test]
    fn read_file_parses_pem_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ca.pem");
        std::fs::write(&path, TEST_CA).unwrap();
        let ca = CaCertificate::read_file(&path).unwrap();
        assert_eq!(ca, CaCertificate::from_pem(TEST_CA).unwrap());
    }

    #[cfg(unix)]
    #[test]
    fn read_file_rejects_fifo_without_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ca.pem");
        let status = std::process::Command::new("mkfifo")
            .arg(&path)
            .status()
            .unwrap();
        assert!(status.success());
        let (sender, receiver) = std::sync::mpsc::channel();
        let fifo = path.clone();
        std::thread::spawn(move || {
            let _ = sender.send(CaCertificate::read_file(&fifo));
        });
        let result = receiver
            .recv_timeout(std::time::Duration::from_secs(10))
            .expect("read_file blocked on a FIFO for 10 seconds");
        let err = result.unwrap_err();
        assert!(matches!(err, TrustError::CertificateFile { .. }), "{err:?}");
        assert_eq!(
            err.to_string(),
            format!(
                "cannot use {} as the CA certificate: it is a FIFO, not a regular file; \
                 pass the CA certificate file in PEM form",
                path.display()
            )
        );
    }

    #[test]
    fn read_file_rejects_large_sparse_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ca.pem");
        let file = std::fs::File::create(&path).unwrap();
        file.set_len(2 << 30).unwrap();
        let err = CaCertificate::read_file(&path).unwrap_err().to_string();
        assert!(
            err.contains("it is 2147483648 bytes long, more than the limit of 1048576 bytes"),
            "{err}"
        );
        assert!(err.starts_with("cannot use "), "{err}");
    }

    #[test]
    fn read_file_errors_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.pem");
        let err = CaCertificate::read_file(&missing).unwrap_err();
        let TrustError::Io { path, source, .. } = &err else {
            panic!("expected an I/O error, got {err:?}");
        };
        assert_eq!(path, &missing);
        assert_eq!(source.kind(), std::io::ErrorKind::NotFound);
        assert_eq!(
            err.to_string(),
            format!("failed to read {}", missing.display())
        );

        let binary = dir.path().join("binary.pem");
        std::fs::write(&binary, b"ab\xff").unwrap();
        let err = CaCertificate::read_file(&binary).unwrap_err().to_string();
        assert!(err.contains(&binary.display().to_string()), "{err}");
        assert!(err.contains("invalid UTF-8 at byte 2"), "{err}");

        let leaf = dir.path().join("leaf.pem");
        std::fs::write(&leaf, NOT_A_CA).unwrap();
        let err = CaCertificate::read_file(&leaf).unwrap_err().to_string();
        assert!(err.contains(&leaf.display().to_string()), "{err}");
        assert!(err.contains("is not a CA certificate"), "{err}");
        assert!(
            err.ends_with("pass the CA certificate file in PEM form"),
            "{err}"
        );
    }

    #[test]
    fn bundle_lookup_finds_certificate_among_others() {
        let ca = CaCertificate::from_pem(TEST_CA).unwrap();
        let damaged = "-----BEGIN CERTIFICATE-----\n!!\n-----END CERTIFICATE-----\n";
        let bundle = format!("{NOT_A_CA}# comment\n{damaged}{TEST_CA}");
        assert!(bundle_contains(&bundle, ca.der()));
        assert!(!bundle_contains(NOT_A_CA, ca.der()));
        assert!(!bundle_contains("", ca.der()));
    }
}
