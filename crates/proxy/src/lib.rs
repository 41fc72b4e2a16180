//! The filtering proxy: a hudsucker MITM proxy on loopback that decides
//! every request against the policy, responds to blocked ones with a block
//! page, and records one event per request.
//!
//! - [`ca`]: the per-installation root CA, created once and validated on load.
//! - [`authority`]: per-host leaf certificates signed by that CA.
//! - [`block_page`]: the 403 page.
//! - [`connector`]: upstream TLS against the OS trust store, and the resolver
//!   that checks resolved addresses against IP rules.
//! - [`serve`]: binds and runs the proxy until shutdown.
//! - [`pac`]: the PAC file that points browsers at the proxy, and its server.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use arc_swap::ArcSwap;
use hudsucker::tokio_tungstenite::Connector;
use hudsucker::Proxy;
use thiserror::Error;
use tokio::net::TcpListener;
use webwarden_events::EventSender;
use webwarden_policy::{Host, Policy};

pub mod authority;
pub mod block_page;
pub mod ca;
pub mod connector;
mod handler;
pub mod pac;

pub use authority::LeafAuthority;
pub use ca::{CaError, LocalCa};
pub use handler::BlockDecision;

/// The current policy, replaceable while requests are in flight: a request
/// keeps the policy it loaded until it finishes.
pub type SharedPolicy = Arc<ArcSwap<Policy>>;

/// The current root CA, replaceable while the proxy runs: leaves signed by
/// an earlier CA are not served again.
pub type SharedCa = Arc<ArcSwap<LocalCa>>;

/// The default listen address.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8899";

/// The set of allowed CONNECT tunnels that are decrypted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum InspectionMode {
    /// Every tunnel except those on the bypass list.
    #[default]
    All,
    /// Only tunnels to blocked hosts, so the block page can be shown.
    BlockedOnly,
}

impl std::str::FromStr for InspectionMode {
    type Err = String;

    fn from_str(s: &str) -> Result<InspectionMode, String> {
        match s {
            "all" => Ok(InspectionMode::All),
            "blocked-only" => Ok(InspectionMode::BlockedOnly),
            _ => Err(format!(
                "invalid inspection mode {s:?}; expected all or blocked-only"
            )),
        }
    }
}

/// Behaviour the administrator sets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxySettings {
    /// The contact text on the block page.
    pub contact: String,
    /// The set of allowed tunnels that are decrypted.
    pub inspection: InspectionMode,
    /// Domains (with their subdomains) whose tunnels are never decrypted,
    /// unless the policy blocks them. Canonical host names.
    pub bypass: Vec<String>,
    /// How many hosts' leaf certificates are kept.
    pub leaf_cache_size: u64,
}

impl Default for ProxySettings {
    fn default() -> Self {
        ProxySettings {
            contact: block_page::DEFAULT_CONTACT.to_owned(),
            inspection: InspectionMode::All,
            bypass: Vec::new(),
            leaf_cache_size: 1000,
        }
    }
}

impl ProxySettings {
    /// Checks whether `host` is on the bypass list (the domain or a subdomain).
    pub fn bypasses(&self, host: &Host) -> bool {
        let host = host.as_str();
        self.bypass.iter().any(|domain| {
            host == domain
                || host
                    .strip_suffix(domain.as_str())
                    .is_some_and(|rest| rest.ends_with('.'))
        })
    }
}

/// The reason the proxy could not start or stopped with an error.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum ProxyError {
    /// The listen address is not a loopback address.
    #[error("listen address {0} is not a loopback address; webwarden serves only this machine")]
    NotLoopback(SocketAddr),
    /// Binding the listen address failed.
    #[error("failed to listen on {addr}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The TLS client or leaf authority could not be set up.
    #[error("failed to set up TLS: {0}")]
    Tls(String),
    /// hudsucker reported an error while running.
    #[error("proxy failed: {0}")]
    Run(String),
}

/// Binds the listen address, which must be a loopback address.
///
/// # Errors
///
/// Returns [`ProxyError::NotLoopback`] or [`ProxyError::Bind`].
pub async fn bind(addr: SocketAddr) -> Result<TcpListener, ProxyError> {
    if !addr.ip().is_loopback() {
        return Err(ProxyError::NotLoopback(addr));
    }
    TcpListener::bind(addr)
        .await
        .map_err(|source| ProxyError::Bind { addr, source })
}

/// Runs the proxy on `listener` until `shutdown` completes, then waits for
/// open connections to finish.
///
/// # Errors
///
/// Returns [`ProxyError::Tls`] when TLS cannot be set up and
/// [`ProxyError::Run`] when hudsucker fails.
pub async fn serve(
    listener: TcpListener,
    ca: SharedCa,
    policy: SharedPolicy,
    events: EventSender,
    settings: ProxySettings,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ProxyError> {
    let tls = connector::tls_config().map_err(|err| ProxyError::Tls(err.to_string()))?;
    let authority = LeafAuthority::new(ca, settings.leaf_cache_size).map_err(ProxyError::Tls)?;
    let handler = handler::FilterHandler::new(Arc::new(handler::Shared {
        policy: Arc::clone(&policy),
        events,
        settings,
    }));

    // NOTE: hudsucker 0.25 retries a failed accept at once without a pause,
    // so running out of file descriptors spins the accept loop. Its
    // WebSocket client also resolves names itself, so IP rules are checked
    // only against the host of a WebSocket request, not its resolved address.
    let proxy = Proxy::builder()
        .with_listener(listener)
        .with_ca(authority)
        .with_http_connector(connector::upstream_connector(policy, Arc::clone(&tls)))
        .with_http_handler(handler)
        .with_websocket_connector(Connector::Rustls(tls))
        .with_graceful_shutdown(shutdown)
        .build()
        .map_err(|err| ProxyError::Run(err.to_string()))?;
    proxy
        .start()
        .await
        .map_err(|err| ProxyError::Run(err.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bypass_matches_domain_and_subdomains() {
        let settings = ProxySettings {
            bypass: vec!["bank.example".to_owned()],
            ..ProxySettings::default()
        };
        let host = |s: &str| Host::parse(s).unwrap();
        assert!(settings.bypasses(&host("bank.example")));
        assert!(settings.bypasses(&host("www.bank.example")));
        assert!(!settings.bypasses(&host("notbank.example")));
        assert!(!settings.bypasses(&host("bank.example.org")));
    }

    #[tokio::test]
    async fn non_loopback_listen_address_is_rejected() {
        let err = bind("0.0.0.0:0".parse().unwrap()).await.unwrap_err();
        assert!(matches!(err, ProxyError::NotLoopback(_)));
    }
}
