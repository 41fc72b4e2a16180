//! The per-installation root certificate authority: generated once, and
//! validated every time it is loaded, so a damaged certificate or key is a
//! clear startup error and never a failure inside a connection.
//!
//! Where the certificate and key are kept is the agent's concern: this
//! module takes and returns them as bytes.

use hudsucker::rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, PublicKeyData, SerialNumber, PKCS_ECDSA_P256_SHA256,
};
use thiserror::Error;
use time::{Duration, OffsetDateTime};

/// Validity of a new CA certificate.
const CA_VALIDITY: Duration = Duration::days(3 * 365);

/// The reason a CA could not be generated or loaded.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum CaError {
    /// The certificate is not usable.
    #[error("invalid CA certificate: {0}")]
    InvalidCert(String),
    /// The private key is not usable.
    #[error("invalid CA private key: {0}")]
    InvalidKey(String),
    /// Generating the key or certificate failed.
    #[error("failed to generate the CA: {0}")]
    Generate(String),
}

/// A loaded and validated root CA.
pub struct LocalCa {
    cert_pem: String,
    cert_der: Vec<u8>,
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
    /// Generates a new CA with a P-256 key. Returns the CA and its private
    /// key as PKCS#8 DER, for the caller to store.
    ///
    /// # Errors
    ///
    /// Returns [`CaError::Generate`] when key or certificate generation fails.
    pub fn generate() -> Result<(LocalCa, Vec<u8>), CaError> {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)
            .map_err(|err| CaError::Generate(err.to_string()))?;
        let key_der = key.serialize_der();
        let params = ca_params()?;
        let not_after = params.not_after;
        let cert = params
            .self_signed(&key)
            .map_err(|err| CaError::Generate(err.to_string()))?;
        let ca = LocalCa {
            cert_pem: cert.pem(),
            cert_der: cert.der().to_vec(),
            issuer: Issuer::new(params, key),
            not_after,
        };
        Ok((ca, key_der))
    }

    /// Loads and validates a CA from its PEM certificate and its private
    /// key, given as PKCS#8 DER or PEM.
    ///
    /// # Errors
    ///
    /// Returns [`CaError::InvalidKey`] when the key does not parse, and
    /// [`CaError::InvalidCert`] when the certificate does not parse, is not
    /// a CA, is not valid now, or does not belong to the key.
    pub fn from_parts(cert_pem: &str, key: &[u8]) -> Result<LocalCa, CaError> {
        let key = parse_key(key)?;
        let (cert_der, not_after) = validate_cert(cert_pem, &key).map_err(CaError::InvalidCert)?;
        let issuer = Issuer::from_ca_cert_pem(cert_pem, key)
            .map_err(|err| CaError::InvalidCert(err.to_string()))?;
        Ok(LocalCa {
            cert_pem: cert_pem.to_owned(),
            cert_der,
            issuer,
            not_after,
        })
    }

    /// Returns the CA certificate in PEM form.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// Returns the CA certificate in DER form.
    pub fn cert_der(&self) -> &[u8] {
        &self.cert_der
    }

    /// When the CA certificate expires.
    pub fn not_after(&self) -> OffsetDateTime {
        self.not_after
    }

    pub(crate) fn issuer(&self) -> &Issuer<'static, KeyPair> {
        &self.issuer
    }
}

/// Returns the PEM form of a PKCS#8 DER private key, for a key file.
///
/// # Errors
///
/// Returns [`CaError::InvalidKey`] when the key does not parse.
pub fn key_pem(key_der: &[u8]) -> Result<String, CaError> {
    Ok(parse_key(key_der)?.serialize_pem())
}

/// Returns the DER form of the first certificate in a PEM text.
///
/// # Errors
///
/// Returns [`CaError::InvalidCert`] when the text contains no PEM certificate.
pub fn cert_der(cert_pem: &str) -> Result<Vec<u8>, CaError> {
    let (_, pem) = x509_parser::pem::parse_x509_pem(cert_pem.as_bytes())
        .map_err(|err| CaError::InvalidCert(format!("not a PEM certificate ({err})")))?;
    Ok(pem.contents)
}

/// Returns the PEM form of a DER certificate: one `CERTIFICATE` block.
pub fn cert_pem_from_der(der: &[u8]) -> String {
    let config = pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF);
    pem::encode_config(&pem::Pem::new("CERTIFICATE", der.to_vec()), config)
}

/// Parses a PKCS#8 key in PEM or DER form.
fn parse_key(key: &[u8]) -> Result<KeyPair, CaError> {
    let invalid = |err: hudsucker::rcgen::Error| CaError::InvalidKey(err.to_string());
    if key.starts_with(b"-----BEGIN") {
        let pem = std::str::from_utf8(key)
            .map_err(|_| CaError::InvalidKey("the PEM text is not UTF-8".to_owned()))?;
        KeyPair::from_pem(pem).map_err(invalid)
    } else {
        KeyPair::try_from(key).map_err(invalid)
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
    // Certificates keep whole seconds, so the expiry reported at generation
    // equals the one read back from the certificate.
    let now = OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .map_err(|err| CaError::Generate(err.to_string()))?;
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
/// and returns its DER form and expiry.
fn validate_cert(cert_pem: &str, key: &KeyPair) -> Result<(Vec<u8>, OffsetDateTime), String> {
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
        return Err("the certificate does not belong to the private key".to_owned());
    }
    let validity = cert.validity();
    let not_after = validity.not_after.to_datetime();
    if !validity.is_valid() {
        return Err(format!(
            "the certificate is not valid now (it expires {not_after})"
        ));
    }
    Ok((pem.contents, not_after))
}

fn hostname() -> String {
    std::fs::read_to_string("/etc/hostname")
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
    fn generated_ca_loads_from_its_parts() {
        let (ca, key_der) = LocalCa::generate().unwrap();
        let loaded = LocalCa::from_parts(ca.cert_pem(), &key_der).unwrap();
        assert_eq!(loaded.cert_der(), ca.cert_der());
        assert_eq!(loaded.not_after(), ca.not_after());

        let key_pem = KeyPair::try_from(key_der.as_slice())
            .unwrap()
            .serialize_pem();
        let from_pem = LocalCa::from_parts(ca.cert_pem(), key_pem.as_bytes()).unwrap();
        assert_eq!(from_pem.cert_der(), ca.cert_der());
    }

    #[test]
    fn new_ca_has_ca_constraints_and_validity() {
        let (ca, _) = LocalCa::generate().unwrap();
        let (_, cert) = x509_parser::parse_x509_certificate(ca.cert_der()).unwrap();
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
    fn damaged_parts_are_clear_errors() {
        let (ca, key_der) = LocalCa::generate().unwrap();

        let err = LocalCa::from_parts("not a certificate", &key_der).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("invalid CA certificate: not a PEM"),
            "{err}"
        );

        let err = LocalCa::from_parts(ca.cert_pem(), b"not a key").unwrap_err();
        assert!(
            err.to_string().starts_with("invalid CA private key"),
            "{err}"
        );

        let (_, other_key) = LocalCa::generate().unwrap();
        let err = LocalCa::from_parts(ca.cert_pem(), &other_key).unwrap_err();
        assert!(
            err.to_string()
                .contains("does not belong to the private key"),
            "{err}"
        );
    }
}
