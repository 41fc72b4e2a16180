//! Downloading a list: conditional requests, a size cap and a time limit.

use std::time::Duration;

use reqwest::header::{ETAG, IF_MODIFIED_SINCE, IF_NONE_MATCH, LAST_MODIFIED};
use reqwest::StatusCode;
use url::Url;

/// The result of a download.
#[derive(Debug)]
pub enum Fetched {
    /// The list is unchanged since the validators sent (HTTP 304).
    NotModified,
    /// A new copy of the list.
    Body {
        /// The list's bytes.
        bytes: Vec<u8>,
        /// The `ETag` to send next time.
        etag: Option<String>,
        /// The `Last-Modified` to send next time.
        last_modified: Option<String>,
    },
}

/// The validators of the copy on disk.
#[derive(Debug, Default, Clone)]
pub struct Validators {
    /// The `ETag` of the cached copy.
    pub etag: Option<String>,
    /// The `Last-Modified` of the cached copy.
    pub last_modified: Option<String>,
}

/// An HTTP client for list downloads, which never uses a system proxy (that
/// would be webwarden itself) and follows no redirects.
#[derive(Debug, Clone)]
pub struct Fetcher {
    client: reqwest::Client,
    max_bytes: u64,
}

impl Fetcher {
    /// Builds the client.
    ///
    /// # Errors
    ///
    /// Returns a message when the TLS setup fails.
    pub fn new(
        timeout: Duration,
        max_bytes: u64,
        tls: &webwarden_events::TlsFiles,
    ) -> Result<Fetcher, String> {
        let config = tls
            .client_config(&[b"h2", b"http/1.1"])
            .map_err(|err| err.to_string())?;
        let client = reqwest::Client::builder()
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .tls_backend_preconfigured(rustls_config(&config))
            .connect_timeout(timeout)
            .timeout(timeout)
            .user_agent(concat!("webwarden/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|err| format!("failed to set up the HTTP client: {err}"))?;
        Ok(Fetcher { client, max_bytes })
    }

    /// Fetches `url`, sending the validators so that an unchanged list
    /// costs one small response.
    ///
    /// # Errors
    ///
    /// Returns a message naming the URL and the cause: unreachable, timed
    /// out, an HTTP status other than 200 or 304, a body over the size
    /// limit, or a body cut short.
    pub async fn fetch(&self, url: &Url, validators: &Validators) -> Result<Fetched, String> {
        let mut request = self.client.get(url.clone());
        let conditional = validators.etag.is_some() || validators.last_modified.is_some();
        if let Some(etag) = &validators.etag {
            request = request.header(IF_NONE_MATCH, etag);
        }
        if let Some(date) = &validators.last_modified {
            request = request.header(IF_MODIFIED_SINCE, date);
        }
        let mut response = request.send().await.map_err(|err| {
            let cause = webwarden_events::error_chain(&err);
            let hint = if err.is_timeout() {
                " (raise [updates] timeout_seconds if the server is slow)"
            } else {
                ""
            };
            format!("GET {url} failed: {cause}{hint}")
        })?;
        let status = response.status();
        if status == StatusCode::NOT_MODIFIED && conditional {
            return Ok(Fetched::NotModified);
        }
        if status == StatusCode::NOT_MODIFIED {
            return Err(format!(
                "GET {url} answered 304 Not Modified to a request without If-None-Match or If-Modified-Since; the server must send the list with 200"
            ));
        }
        if status.is_redirection() {
            let location = webwarden_events::redirect_location(&response);
            return Err(format!(
                "GET {url} answered HTTP {} (redirect to {location:?}); redirects are not followed, so configure the list's final URL",
                status.as_u16()
            ));
        }
        if status != StatusCode::OK {
            return Err(format!(
                "GET {url} answered HTTP {}; expected 200 or 304",
                status.as_u16()
            ));
        }
        if let Some(length) = response.content_length() {
            if length > self.max_bytes {
                return Err(format!(
                    "GET {url}: the list is {length} bytes, over the limit of {} ([updates] max_bytes)",
                    self.max_bytes
                ));
            }
        }
        let header = |name| {
            response
                .headers()
                .get(name)
                .and_then(|value: &reqwest::header::HeaderValue| value.to_str().ok())
                .map(str::to_owned)
        };
        let etag = header(ETAG);
        let last_modified = header(LAST_MODIFIED);
        let mut bytes = Vec::new();
        loop {
            let chunk = response.chunk().await.map_err(|err| {
                let hint = if err.is_timeout() {
                    " (raise [updates] timeout_seconds if the server is slow)"
                } else {
                    ""
                };
                format!(
                    "GET {url}: the download was cut short after {} bytes: {}{hint}",
                    bytes.len(),
                    webwarden_events::error_chain(&err)
                )
            })?;
            let Some(chunk) = chunk else { break };
            bytes.extend_from_slice(&chunk);
            if bytes.len() as u64 > self.max_bytes {
                return Err(format!(
                    "GET {url}: the list is over the limit of {} bytes ([updates] max_bytes)",
                    self.max_bytes
                ));
            }
        }
        Ok(Fetched::Body {
            bytes,
            etag,
            last_modified,
        })
    }

    /// Fetches a small file, such as a signature, with no validators and
    /// at most `max_bytes`.
    ///
    /// # Errors
    ///
    /// Returns the message of [`Fetcher::fetch`].
    pub async fn fetch_plain(&self, url: &Url, max_bytes: u64) -> Result<Vec<u8>, String> {
        let limited = Fetcher {
            client: self.client.clone(),
            max_bytes,
        };
        match limited.fetch(url, &Validators::default()).await? {
            Fetched::Body { bytes, .. } => Ok(bytes),
            Fetched::NotModified => Err(format!("GET {url} answered 304 without validators")),
        }
    }
}

fn rustls_config(config: &std::sync::Arc<rustls::ClientConfig>) -> rustls::ClientConfig {
    rustls::ClientConfig::clone(config)
}
