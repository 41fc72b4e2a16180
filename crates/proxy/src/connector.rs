//! Upstream connections: TLS verified against the operating system's trust
//! store, and a resolver that checks every resolved address against the IP
//! rules, so a name that resolves to a blocked address is blocked.

use std::error::Error as StdError;
use std::fmt;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use hudsucker::hyper_util::client::legacy::connect::dns::Name;
use hudsucker::hyper_util::client::legacy::connect::HttpConnector;
use hudsucker::rustls::ClientConfig;
use hyper_rustls::{ConfigBuilderExt, HttpsConnector, HttpsConnectorBuilder};
use webwarden_policy::{Action, Host, Target};

use crate::handler::BlockDecision;
use crate::SharedPolicy;

/// How long an upstream TCP connect may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The connector type the proxy's HTTP client uses.
pub type UpstreamConnector = HttpsConnector<HttpConnector<CheckingResolver>>;

/// A resolved address that an IP rule blocks.
#[derive(Debug, Clone)]
pub struct BlockedAddress {
    /// The decision, with the blocked address in it.
    pub decision: BlockDecision,
}

impl fmt::Display for BlockedAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the resolved address is blocked by rule {:?}",
            self.decision.rule
        )
    }
}

impl StdError for BlockedAddress {}

/// Resolves names with the system resolver and rejects the lookup when an
/// IP rule blocks any resolved address.
#[derive(Clone)]
pub struct CheckingResolver {
    policy: SharedPolicy,
}

impl CheckingResolver {
    /// Creates a resolver that checks against the current policy.
    pub fn new(policy: SharedPolicy) -> CheckingResolver {
        CheckingResolver { policy }
    }
}

impl tower_service::Service<Name> for CheckingResolver {
    type Response = std::vec::IntoIter<SocketAddr>;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<Self::Response>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, name: Name) -> Self::Future {
        let policy = self.policy.clone();
        Box::pin(async move {
            let addrs: Vec<SocketAddr> =
                tokio::net::lookup_host((name.as_str(), 0)).await?.collect();
            let host = Host::parse(name.as_str())
                .map_err(|err| io::Error::new(io::ErrorKind::InvalidInput, err))?;
            if let Some(decision) = check_addresses(&policy, &host, addrs.iter().map(|a| a.ip())) {
                return Err(io::Error::other(BlockedAddress { decision }));
            }
            Ok(addrs.into_iter())
        })
    }
}

/// Returns the block decision for the first resolved address an IP rule
/// blocks, given that the host itself was allowed by name.
pub(crate) fn check_addresses(
    policy: &SharedPolicy,
    host: &Host,
    addrs: impl Iterator<Item = IpAddr>,
) -> Option<BlockDecision> {
    let policy = policy.load();
    for ip in addrs {
        let target = Target::new(host.clone(), None).with_ip(ip);
        let verdict = policy.evaluate(&target);
        if verdict.action == Action::Block {
            return BlockDecision::from_verdict(&verdict, Some(ip));
        }
    }
    None
}

/// Finds a [`BlockedAddress`] in an error's chain, including inside
/// `io::Error`s, whose `source` skips the wrapped error itself.
pub(crate) fn find_blocked_address<'a>(
    err: &'a (dyn StdError + 'static),
) -> Option<&'a BlockedAddress> {
    let mut current = Some(err);
    while let Some(err) = current {
        if let Some(found) = err.downcast_ref::<BlockedAddress>() {
            return Some(found);
        }
        if let Some(inner) = err
            .downcast_ref::<io::Error>()
            .and_then(|io| io.get_ref())
            .and_then(|inner| inner.downcast_ref::<BlockedAddress>())
        {
            return Some(inner);
        }
        current = err.source();
    }
    None
}

/// Builds the TLS client configuration: the platform verifier, which on
/// Linux reads the system store (and honours `SSL_CERT_FILE`), so a
/// company's internal CAs are trusted.
///
/// # Errors
///
/// Returns the rustls error when the platform verifier cannot be set up.
pub fn tls_config() -> Result<Arc<ClientConfig>, hudsucker::rustls::Error> {
    let provider = Arc::new(hudsucker::rustls::crypto::aws_lc_rs::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .try_with_platform_verifier()?
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// Builds the upstream connector for HTTP/1.1 and HTTP/2, plain and TLS.
pub fn upstream_connector(policy: SharedPolicy, tls: Arc<ClientConfig>) -> UpstreamConnector {
    let mut http = HttpConnector::new_with_resolver(CheckingResolver::new(policy));
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_connect_timeout(Some(CONNECT_TIMEOUT));
    HttpsConnectorBuilder::new()
        .with_tls_config((*tls).clone())
        .https_or_http()
        .enable_http1()
        .enable_http2()
        .wrap_connector(http)
}
