//! Keep-alive HTTP/1.1 client connections to the origin: direct, or through
//! an HTTP proxy with absolute-form requests (plain HTTP) or a CONNECT
//! tunnel carrying TLS (HTTPS).

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::{bail, Context};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http1::{self, SendRequest};
use hyper::header::HOST;
use hyper::upgrade::Upgraded;
use hyper::{Request, StatusCode, Uri};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
use tokio_rustls::rustls::{crypto::aws_lc_rs, ClientConfig, RootCertStore};
use tokio_rustls::TlsConnector;

/// The request sender of one open connection.
pub type Sender = SendRequest<Empty<Bytes>>;

/// The origin that requests go to and the proxy, if any, that they go through.
pub struct Target {
    /// `http` or `https`.
    pub scheme: Scheme,
    /// The host name in the URL, sent as the Host header and TLS SNI.
    pub host: String,
    /// The origin's port.
    pub port: u16,
    /// The origin's address, used when there is no proxy.
    pub origin_addr: SocketAddr,
    /// The HTTP proxy's address, if requests go through one.
    pub proxy: Option<SocketAddr>,
    /// TLS settings for HTTPS. They trust the CA that signs the certificate
    /// presented to the client: the origin's CA on a direct connection and
    /// the proxy's CA through an intercepting proxy.
    pub tls: Option<TlsConnector>,
}

/// The URL scheme of a target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    /// Plain HTTP.
    Http,
    /// HTTP over TLS.
    Https,
}

impl Scheme {
    /// Returns the scheme as written in a URL.
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
        }
    }
}

impl Target {
    /// Builds a target for `url`. The URL's host and the proxy must resolve
    /// to loopback addresses only, so no traffic leaves this machine.
    ///
    /// # Errors
    ///
    /// Returns an error for an unsupported URL, a host that does not resolve
    /// to loopback, a missing or unreadable CA file for HTTPS, or a proxy
    /// address that is not loopback.
    pub async fn new(
        url: &str,
        proxy: Option<SocketAddr>,
        ca_file: Option<&std::path::Path>,
    ) -> anyhow::Result<Target> {
        let uri: Uri = url
            .parse()
            .with_context(|| format!("invalid URL {url:?}"))?;
        let scheme = match uri.scheme_str() {
            Some("http") => Scheme::Http,
            Some("https") => Scheme::Https,
            _ => bail!("invalid URL {url:?}: the scheme must be http or https"),
        };
        let host = uri
            .host()
            .with_context(|| format!("invalid URL {url:?}: no host"))?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let port = uri.port_u16().unwrap_or(match scheme {
            Scheme::Http => 80,
            Scheme::Https => 443,
        });
        let origin_addr = resolve_loopback(&host, port).await?;
        if let Some(proxy) = proxy {
            if !proxy.ip().is_loopback() {
                bail!("proxy address {proxy} is not a loopback address; this tool sends traffic only to this machine");
            }
        }
        let tls = match (scheme, ca_file) {
            (Scheme::Http, _) => None,
            (Scheme::Https, Some(path)) => Some(tls_connector(path)?),
            (Scheme::Https, None) => bail!("an https URL needs --ca with the CA to trust"),
        };
        Ok(Target {
            scheme,
            host,
            port,
            origin_addr,
            proxy,
            tls,
        })
    }

    /// Returns `host:port` as the Host header and CONNECT authority carry it.
    pub fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// Builds the request to send: origin-form on a direct connection or in
    /// a tunnel, absolute-form to a proxy for plain HTTP.
    pub fn request(&self) -> anyhow::Result<Request<Empty<Bytes>>> {
        let uri = match (self.scheme, self.proxy) {
            (Scheme::Http, Some(_)) => format!("http://{}/", self.authority()),
            _ => "/".to_owned(),
        };
        let request = Request::get(uri)
            .header(HOST, self.authority())
            .body(Empty::new())?;
        Ok(request)
    }

    /// Opens one keep-alive connection and returns its request sender.
    ///
    /// # Errors
    ///
    /// Returns an error when the TCP connect, the CONNECT, the TLS handshake
    /// or the HTTP/1.1 handshake fails.
    pub async fn connect(&self) -> anyhow::Result<Sender> {
        let addr = self.proxy.unwrap_or(self.origin_addr);
        let tcp = TcpStream::connect(addr)
            .await
            .with_context(|| format!("failed to connect to {addr}"))?;
        tcp.set_nodelay(true)?;
        let Some(tls) = &self.tls else {
            return handshake(TokioIo::new(tcp)).await;
        };
        let name = ServerName::try_from(self.host.clone())
            .with_context(|| format!("invalid TLS server name {:?}", self.host))?;
        if self.proxy.is_some() {
            let tunnel = open_tunnel(tcp, &self.authority()).await?;
            let stream = tls
                .connect(name, TokioIo::new(tunnel))
                .await
                .context("TLS handshake inside the CONNECT tunnel failed")?;
            handshake(TokioIo::new(stream)).await
        } else {
            let stream = tls
                .connect(name, tcp)
                .await
                .context("TLS handshake with the origin failed")?;
            handshake(TokioIo::new(stream)).await
        }
    }
}

/// Sends one request and reads the whole body.
///
/// # Errors
///
/// Returns the hyper error when the connection is closed or the request or
/// the body fails.
pub async fn send(
    sender: &mut Sender,
    request: Request<Empty<Bytes>>,
) -> anyhow::Result<(StatusCode, Bytes)> {
    sender.ready().await.context("connection closed")?;
    let response = sender.send_request(request).await?;
    let status = response.status();
    let body = response.into_body().collect().await?.to_bytes();
    Ok((status, body))
}

async fn handshake<I>(io: I) -> anyhow::Result<Sender>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (sender, connection) = http1::handshake(io)
        .await
        .context("HTTP/1.1 handshake failed")?;
    // Errors of the connection also fail the pending request, which is
    // where they are counted.
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(sender)
}

/// Sends CONNECT to the proxy on `tcp` and returns the tunnel after a 200.
async fn open_tunnel(tcp: TcpStream, authority: &str) -> anyhow::Result<Upgraded> {
    let (mut sender, connection) = http1::handshake::<_, Empty<Bytes>>(TokioIo::new(tcp))
        .await
        .context("HTTP/1.1 handshake with the proxy failed")?;
    tokio::spawn(async move {
        let _ = connection.with_upgrades().await;
    });
    let request = Request::connect(authority)
        .header(HOST, authority)
        .body(Empty::new())?;
    let response = sender
        .send_request(request)
        .await
        .with_context(|| format!("CONNECT {authority} failed"))?;
    if response.status() != StatusCode::OK {
        bail!(
            "the proxy returned {} to CONNECT {authority}",
            response.status()
        );
    }
    hyper::upgrade::on(response)
        .await
        .with_context(|| format!("the CONNECT {authority} tunnel failed to open"))
}

/// Resolves `host` and returns its first address, after checking that every
/// address it resolves to is a loopback address.
async fn resolve_loopback(host: &str, port: u16) -> anyhow::Result<SocketAddr> {
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host, port))
        .await
        .with_context(|| format!("failed to resolve {host}"))?
        .collect();
    if let Some(outside) = addrs.iter().find(|addr| !addr.ip().is_loopback()) {
        bail!("{host} resolves to {outside}, which is not a loopback address; this tool sends traffic only to this machine");
    }
    addrs
        .first()
        .copied()
        .with_context(|| format!("{host} resolved to no address"))
}

/// Builds a TLS connector that trusts only the certificates in `ca_file`
/// and offers HTTP/1.1 by ALPN.
fn tls_connector(ca_file: &std::path::Path) -> anyhow::Result<TlsConnector> {
    let pem = std::fs::read(ca_file)
        .with_context(|| format!("failed to read CA file {}", ca_file.display()))?;
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&pem) {
        let cert = cert.with_context(|| format!("invalid PEM in {}", ca_file.display()))?;
        roots
            .add(cert)
            .with_context(|| format!("invalid CA certificate in {}", ca_file.display()))?;
    }
    if roots.is_empty() {
        bail!("no certificate found in CA file {}", ca_file.display());
    }
    let mut config = ClientConfig::builder_with_provider(Arc::new(aws_lc_rs::default_provider()))
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsConnector::from(Arc::new(config)))
}
