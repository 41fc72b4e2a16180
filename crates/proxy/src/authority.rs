//! Per-host leaf certificates for intercepted TLS, signed by the local CA.
//!
//! Each leaf has its own P-256 key (never the CA's), a short validity, and
//! an IP subject alternative name for IP-literal hosts. Server configs are
//! cached per host with a bound on count and an expiry well inside the
//! leaf's validity.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration as StdDuration;

use hudsucker::certificate_authority::CertificateAuthority;
use hudsucker::hyper::http::uri::Authority;
use hudsucker::rcgen::{
    CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, KeyPair,
    KeyUsagePurpose, SanType, PKCS_ECDSA_P256_SHA256,
};
use hudsucker::rustls::crypto::CryptoProvider;
use hudsucker::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use hudsucker::rustls::ServerConfig;
use moka::future::Cache;
use time::{Duration, OffsetDateTime};

use crate::ca::{random_serial, LocalCa};
use crate::SharedCa;

/// Validity of a leaf certificate.
const LEAF_VALIDITY: Duration = Duration::days(7);

/// How long a cached server config is reused; far below [`LEAF_VALIDITY`],
/// so a cached leaf never expires while in use.
const CACHE_TTL: StdDuration = StdDuration::from_secs(24 * 60 * 60);

/// Issues leaf certificates for intercepted hosts.
pub struct LeafAuthority {
    ca: SharedCa,
    cache: Cache<String, CachedLeaf>,
    provider: Arc<CryptoProvider>,
    /// Served when a leaf cannot be made, so the client sees a certificate
    /// error instead of the proxy panicking.
    fallback: Arc<ServerConfig>,
}

/// A cached server config and the CA that signed its leaf.
#[derive(Clone)]
struct CachedLeaf {
    ca: Arc<LocalCa>,
    config: Arc<ServerConfig>,
}

impl LeafAuthority {
    /// Creates an authority that signs with the current CA in `ca` and
    /// caches up to `cache_size` hosts. A leaf signed by an earlier CA is
    /// not served again once `ca` is replaced.
    ///
    /// # Errors
    ///
    /// Returns an error when even the fallback certificate cannot be made,
    /// which means the CA key cannot sign.
    pub fn new(ca: SharedCa, cache_size: u64) -> Result<LeafAuthority, String> {
        let provider = Arc::new(hudsucker::rustls::crypto::aws_lc_rs::default_provider());
        let fallback = server_config(&ca.load(), &provider, "webwarden.invalid")?;
        Ok(LeafAuthority {
            ca,
            cache: Cache::builder()
                .max_capacity(cache_size)
                .time_to_live(CACHE_TTL)
                .build(),
            provider,
            fallback,
        })
    }
}

impl CertificateAuthority for LeafAuthority {
    async fn gen_server_config(&self, authority: &Authority) -> Arc<ServerConfig> {
        let host = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_ascii_lowercase();
        let ca = self.ca.load_full();
        if let Some(cached) = self.cache.get(&host).await {
            if Arc::ptr_eq(&cached.ca, &ca) {
                return cached.config;
            }
        }
        match server_config(&ca, &self.provider, &host) {
            Ok(config) => {
                let cached = CachedLeaf {
                    ca,
                    config: Arc::clone(&config),
                };
                self.cache.insert(host, cached).await;
                config
            }
            Err(reason) => {
                tracing::error!(%host, %reason, "failed to issue a leaf certificate");
                Arc::clone(&self.fallback)
            }
        }
    }
}

/// Makes a rustls server config with a fresh leaf for `host`.
fn server_config(
    ca: &LocalCa,
    provider: &Arc<CryptoProvider>,
    host: &str,
) -> Result<Arc<ServerConfig>, String> {
    let (cert, key) = issue_leaf(ca, host)?;
    let mut config = ServerConfig::builder_with_provider(Arc::clone(provider))
        .with_safe_default_protocol_versions()
        .map_err(|err| err.to_string())?
        .with_no_client_auth()
        .with_single_cert(vec![cert], key)
        .map_err(|err| err.to_string())?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Signs a leaf for `host` with a new key pair.
pub(crate) fn issue_leaf(
    ca: &LocalCa,
    host: &str,
) -> Result<(CertificateDer<'static>, PrivateKeyDer<'static>), String> {
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(|e| e.to_string())?;
    let mut params = CertificateParams::default();
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, host);
    params.distinguished_name = name;
    let san = match host.parse::<IpAddr>() {
        Ok(ip) => SanType::IpAddress(ip),
        Err(_) => SanType::DnsName(host.try_into().map_err(|e| format!("{e}"))?),
    };
    params.subject_alt_names = vec![san];
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.use_authority_key_identifier_extension = true;
    params.serial_number = Some(random_serial().map_err(|e| e.to_string())?);
    let now = OffsetDateTime::now_utc();
    params.not_before = now - Duration::hours(1);
    params.not_after = now + LEAF_VALIDITY;
    let cert = params
        .signed_by(&key, ca.issuer())
        .map_err(|e| e.to_string())?;
    let key = PrivateKeyDer::from(PrivatePkcs8KeyDer::from(key.serialize_der()));
    Ok((cert.der().clone(), key))
}

#[cfg(test)]
mod tests {
    use arc_swap::ArcSwap;

    use super::*;
    use x509_parser::extensions::GeneralName;

    fn test_ca() -> Arc<LocalCa> {
        let (ca, _) = LocalCa::generate().unwrap();
        Arc::new(ca)
    }

    #[test]
    fn leaf_has_own_key_and_dns_name() {
        let ca = test_ca();
        let (cert, _) = issue_leaf(&ca, "www.example.com").unwrap();
        let (_, leaf) = x509_parser::parse_x509_certificate(&cert).unwrap();
        let (_, ca_pem) = x509_parser::pem::parse_x509_pem(ca.cert_pem().as_bytes()).unwrap();
        let ca_cert = ca_pem.parse_x509().unwrap();
        assert_ne!(leaf.public_key().raw, ca_cert.public_key().raw);
        assert_eq!(leaf.issuer(), ca_cert.subject());
        let names = leaf.subject_alternative_name().unwrap().unwrap();
        assert_eq!(
            names.value.general_names,
            [GeneralName::DNSName("www.example.com")]
        );
        assert!(leaf.verify_signature(Some(ca_cert.public_key())).is_ok());
    }

    #[test]
    fn ip_host_gets_ip_san() {
        let ca = test_ca();
        for (host, bytes) in [
            ("192.0.2.7", vec![192, 0, 2, 7]),
            (
                "2001:db8::1",
                "2001:db8::1"
                    .parse::<std::net::Ipv6Addr>()
                    .unwrap()
                    .octets()
                    .to_vec(),
            ),
        ] {
            let (cert, _) = issue_leaf(&ca, host).unwrap();
            let (_, leaf) = x509_parser::parse_x509_certificate(&cert).unwrap();
            let names = leaf.subject_alternative_name().unwrap().unwrap();
            assert_eq!(names.value.general_names, [GeneralName::IPAddress(&bytes)]);
        }
    }

    #[tokio::test]
    async fn configs_are_cached_per_host() {
        let ca = Arc::new(ArcSwap::new(test_ca()));
        let authority = LeafAuthority::new(ca, 10).unwrap();
        let first = authority
            .gen_server_config(&Authority::from_static("a.example:443"))
            .await;
        let again = authority
            .gen_server_config(&Authority::from_static("A.example:8443"))
            .await;
        let other = authority
            .gen_server_config(&Authority::from_static("b.example:443"))
            .await;
        assert!(Arc::ptr_eq(&first, &again));
        assert!(!Arc::ptr_eq(&first, &other));
    }

    #[tokio::test]
    async fn replaced_ca_signs_new_leaves() {
        let ca = Arc::new(ArcSwap::new(test_ca()));
        let authority = LeafAuthority::new(Arc::clone(&ca), 10).unwrap();
        let host = Authority::from_static("a.example:443");
        let before = authority.gen_server_config(&host).await;

        let next = test_ca();
        ca.store(Arc::clone(&next));
        let after = authority.gen_server_config(&host).await;
        assert!(!Arc::ptr_eq(&before, &after));
        assert!(Arc::ptr_eq(
            &after,
            &authority.gen_server_config(&host).await
        ));
        let cached = authority.cache.get("a.example").await.unwrap();
        assert!(Arc::ptr_eq(&cached.ca, &next));
    }
}
