//! TLS client settings of the SIEM sinks: the OS trust store plus optional
//! extra roots, and an optional client certificate for mutual TLS.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::ClientConfig;

use crate::SinkError;

/// The files of a sink's TLS material.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsFiles {
    /// PEM certificates trusted besides the OS store.
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate chain, for receivers that require one.
    pub client_cert: Option<PathBuf>,
    /// PEM private key of the client certificate.
    pub client_key: Option<PathBuf>,
}

impl TlsFiles {
    /// Builds the rustls client configuration with the given ALPN protocols.
    ///
    /// # Errors
    ///
    /// Returns [`SinkError::Config`] naming the file that cannot be read or
    /// contains no usable certificate or key, and the missing half of a client
    /// certificate and key pair.
    pub fn client_config(&self, alpn: &[&[u8]]) -> Result<Arc<ClientConfig>, SinkError> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let extra_roots = match &self.ca_file {
            Some(path) => read_certificates(path)?,
            None => Vec::new(),
        };
        let verifier = rustls_platform_verifier::Verifier::new_with_extra_roots(
            extra_roots,
            Arc::clone(&provider),
        )
        .map_err(|err| SinkError::Config(format!("failed to load the OS trust store: {err}")))?;
        let builder = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|err| SinkError::Config(format!("TLS setup failed: {err}")))?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(verifier));
        let mut config = match (&self.client_cert, &self.client_key) {
            (Some(cert), Some(key)) => {
                let chain = read_certificates(cert)?;
                let key = read_key(key)?;
                builder.with_client_auth_cert(chain, key).map_err(|err| {
                    SinkError::Config(format!(
                        "client certificate {} does not match key: {err}",
                        cert.display()
                    ))
                })?
            }
            (None, None) => builder.with_no_client_auth(),
            (Some(_), None) => {
                return Err(SinkError::Config(
                    "client_cert is set without client_key; set both or neither".to_owned(),
                ))
            }
            (None, Some(_)) => {
                return Err(SinkError::Config(
                    "client_key is set without client_cert; set both or neither".to_owned(),
                ))
            }
        };
        config.alpn_protocols = alpn.iter().map(|protocol| protocol.to_vec()).collect();
        Ok(Arc::new(config))
    }
}

fn read_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, SinkError> {
    let bytes = read(path)?;
    let certificates: Vec<_> = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<_, _>>()
        .map_err(|err| SinkError::Config(format!("invalid PEM in {}: {err}", path.display())))?;
    if certificates.is_empty() {
        return Err(SinkError::Config(format!(
            "no certificate in {}; expected PEM `BEGIN CERTIFICATE` blocks",
            path.display()
        )));
    }
    Ok(certificates)
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, SinkError> {
    let bytes = read(path)?;
    PrivateKeyDer::from_pem_slice(&bytes).map_err(|err| {
        SinkError::Config(format!(
            "no private key in {}: {err}; expected a PEM PKCS#8, PKCS#1 or SEC1 key",
            path.display()
        ))
    })
}

fn read(path: &Path) -> Result<Vec<u8>, SinkError> {
    std::fs::read(path)
        .map_err(|err| SinkError::Config(format!("failed to read {}: {err}", path.display())))
}
