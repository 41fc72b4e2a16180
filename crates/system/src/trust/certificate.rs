//! The CA certificate that the trust stores add and remove, with the
//! fingerprints and names each store uses to find it again.

use std::fmt::Write as _;

use pem::{EncodeConfig, LineEnding};
use sha1::Sha1;
use sha2::{Digest, Sha256};
use x509_parser::pem::Pem;

use super::TrustError;

/// Prefix of the nickname that NSS databases and reports show.
pub const NICKNAME_PREFIX: &str = "webwarden local CA ";

/// Prefix of the anchor file names in the system store directories.
pub const FILE_PREFIX: &str = "webwarden-";

/// Number of hex digits of the SHA-256 fingerprint in [`CaCertificate::id`].
const ID_LEN: usize = 12;

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
    fn bundle_lookup_finds_certificate_among_others() {
        let ca = CaCertificate::from_pem(TEST_CA).unwrap();
        let damaged = "-----BEGIN CERTIFICATE-----\n!!\n-----END CERTIFICATE-----\n";
        let bundle = format!("{NOT_A_CA}# comment\n{damaged}{TEST_CA}");
        assert!(bundle_contains(&bundle, ca.der()));
        assert!(!bundle_contains(NOT_A_CA, ca.der()));
        assert!(!bundle_contains("", ca.der()));
    }
}
