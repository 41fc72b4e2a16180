//! The loopback origin: a fixed 1 KiB body over plain HTTP and over HTTPS,
//! with a server certificate from a test CA that is created at start.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use serde::{Deserialize, Serialize};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio_rustls::rustls::{crypto::aws_lc_rs, ServerConfig};
use tokio_rustls::TlsAcceptor;

use crate::listen::{self, ErrorLog};

/// Length of the body the origin returns for every request.
pub const BODY_LEN: usize = 1024;

/// The names the origin's server certificate is valid for.
pub const SERVER_NAMES: [&str; 2] = ["localhost", "127.0.0.1"];

static BODY: [u8; BODY_LEN] = [b'w'; BODY_LEN];

/// The addresses a running origin listens on, as written to its address file.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct OriginAddrs {
    /// Plain HTTP listener.
    pub http: SocketAddr,
    /// HTTPS listener.
    pub https: SocketAddr,
}

/// A test CA and the server configuration for a leaf it signed.
pub struct OriginTls {
    /// The CA certificate in PEM, for clients and proxies to trust.
    pub ca_pem: String,
    /// The TLS server configuration with the leaf and its key.
    pub server_config: Arc<ServerConfig>,
}

/// Creates a CA and a leaf for [`SERVER_NAMES`] signed by it. Both keys are
/// ECDSA P-256 and live only in memory.
///
/// # Errors
///
/// Returns the rcgen or rustls error when a key, certificate or the server
/// configuration cannot be made.
pub fn make_tls() -> anyhow::Result<OriginTls> {
    let ca_key = KeyPair::generate().context("failed to generate the CA key")?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "webwarden-load test origin CA");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca = CertifiedIssuer::self_signed(ca_params, ca_key)
        .context("failed to sign the CA certificate")?;

    let leaf_key = KeyPair::generate().context("failed to generate the server key")?;
    let names: Vec<String> = SERVER_NAMES.iter().map(|name| name.to_string()).collect();
    let mut leaf_params = CertificateParams::new(names)?;
    leaf_params
        .distinguished_name
        .push(DnType::CommonName, SERVER_NAMES[0]);
    leaf_params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    leaf_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    leaf_params.use_authority_key_identifier_extension = true;
    let leaf = leaf_params
        .signed_by(&leaf_key, &ca)
        .context("failed to sign the server certificate")?;

    let chain = vec![leaf.der().clone(), CertificateDer::clone(ca.der())];
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der()));
    let mut config = ServerConfig::builder_with_provider(Arc::new(aws_lc_rs::default_provider()))
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .context("failed to build the TLS server configuration")?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(OriginTls {
        ca_pem: ca.pem(),
        server_config: Arc::new(config),
    })
}

/// Binds both listeners, which must be loopback addresses, and serves them
/// on background tasks until the returned handles are aborted or the
/// runtime stops.
///
/// # Errors
///
/// Returns an error for a non-loopback address or a failed bind.
pub async fn start(
    http_listen: SocketAddr,
    https_listen: SocketAddr,
    tls: Arc<ServerConfig>,
) -> anyhow::Result<(OriginAddrs, [JoinHandle<()>; 2])> {
    let http = listen::bind_loopback(http_listen).await?;
    let https = listen::bind_loopback(https_listen).await?;
    let addrs = OriginAddrs {
        http: http.local_addr()?,
        https: https.local_addr()?,
    };
    let errors = Arc::new(ErrorLog::new("origin"));
    let plain = tokio::spawn(listen::accept_loop(http, Arc::clone(&errors), |stream| {
        serve_connection(stream, None)
    }));
    let acceptor = TlsAcceptor::from(tls);
    let secure = tokio::spawn(listen::accept_loop(https, errors, move |stream| {
        serve_connection(stream, Some(acceptor.clone()))
    }));
    Ok((addrs, [plain, secure]))
}

async fn serve_connection(stream: TcpStream, tls: Option<TlsAcceptor>) -> anyhow::Result<()> {
    stream.set_nodelay(true)?;
    match tls {
        None => listen::serve_http(TokioIo::new(stream), service_fn(respond)).await,
        Some(acceptor) => {
            let stream = acceptor
                .accept(stream)
                .await
                .context("TLS handshake failed")?;
            listen::serve_http(TokioIo::new(stream), service_fn(respond)).await
        }
    }
}

async fn respond(
    _req: Request<hyper::body::Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let mut response = Response::new(Full::new(Bytes::from_static(&BODY)));
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    Ok(response)
}
