//! The loopback origin: a fixed 1 KiB body over plain HTTP and over HTTPS,
//! with a server certificate from a test CA that is created at start.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use serde::{Deserialize, Serialize};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio_rustls::rustls::{crypto::aws_lc_rs, ServerConfig};
use tokio_rustls::TlsAcceptor;

/// Length of the body the origin returns for every request.
pub const BODY_LEN: usize = 1024;

/// The names the origin's server certificate is valid for.
pub const SERVER_NAMES: [&str; 2] = ["localhost", "127.0.0.1"];

static BODY: [u8; BODY_LEN] = [b'w'; BODY_LEN];

/// Errors printed per kind before the origin only counts them.
const MAX_LOGGED_ERRORS: u64 = 10;

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
    for addr in [http_listen, https_listen] {
        if !addr.ip().is_loopback() {
            bail!("listen address {addr} is not a loopback address; the origin serves only this machine");
        }
    }
    let http = TcpListener::bind(http_listen)
        .await
        .with_context(|| format!("failed to listen on {http_listen}"))?;
    let https = TcpListener::bind(https_listen)
        .await
        .with_context(|| format!("failed to listen on {https_listen}"))?;
    let addrs = OriginAddrs {
        http: http.local_addr()?,
        https: https.local_addr()?,
    };
    let errors = Arc::new(ErrorLog::default());
    let plain = tokio::spawn(accept_loop(http, None, Arc::clone(&errors)));
    let secure = tokio::spawn(accept_loop(https, Some(TlsAcceptor::from(tls)), errors));
    Ok((addrs, [plain, secure]))
}

/// Counts errors and prints the first [`MAX_LOGGED_ERRORS`] of them, so a
/// misconfigured client cannot flood the log.
#[derive(Default)]
struct ErrorLog {
    count: AtomicU64,
}

impl ErrorLog {
    fn report(&self, message: std::fmt::Arguments<'_>) {
        let seen = self.count.fetch_add(1, Ordering::Relaxed);
        if seen < MAX_LOGGED_ERRORS {
            eprintln!("origin: {message}");
        } else if seen == MAX_LOGGED_ERRORS {
            eprintln!("origin: further errors are not printed");
        }
    }
}

async fn accept_loop(listener: TcpListener, tls: Option<TlsAcceptor>, errors: Arc<ErrorLog>) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(err) => {
                errors.report(format_args!("accept failed: {err}"));
                // A pause keeps a persistent failure such as running out of
                // file descriptors from spinning this loop.
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let tls = tls.clone();
        let errors = Arc::clone(&errors);
        tokio::spawn(async move {
            if let Err(err) = serve_connection(stream, tls).await {
                errors.report(format_args!("connection from {peer} failed: {err:#}"));
            }
        });
    }
}

async fn serve_connection(stream: TcpStream, tls: Option<TlsAcceptor>) -> anyhow::Result<()> {
    stream.set_nodelay(true)?;
    match tls {
        None => serve_http(TokioIo::new(stream)).await,
        Some(acceptor) => {
            let stream = acceptor
                .accept(stream)
                .await
                .context("TLS handshake failed")?;
            serve_http(TokioIo::new(stream)).await
        }
    }
}

async fn serve_http<I>(io: I) -> anyhow::Result<()>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let served = http1::Builder::new()
        .keep_alive(true)
        .serve_connection(io, service_fn(respond))
        .await;
    match served {
        // A client that closes its connection in the middle of a request,
        // as load generators do at the end of a run, is not an error here.
        Err(err) if err.is_incomplete_message() => Ok(()),
        other => other.context("HTTP/1.1 connection failed"),
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
