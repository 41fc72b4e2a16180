//! The QRadar HTTP Receiver sink: each event is a JSON object in a POST
//! body, or, in batch mode, many objects separated by newlines. The
//! receiver authenticates senders by TLS client certificate only, and its
//! status codes are not documented beyond success, so any 2xx counts as
//! accepted and anything else is retried.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures_util::{stream, StreamExt};
use url::Url;

use super::{Failure, SinkError};
use crate::spool::Record;
use crate::TlsFiles;

/// Events per POST in batch mode.
const BATCH_EVENTS: usize = 500;

/// Events read per delivery when each is its own POST.
const SINGLE_EVENTS: usize = 100;

/// POSTs in flight at once when each event is its own POST, so a distant
/// collector's round trip does not cap the event rate.
const CONCURRENT_POSTS: usize = 8;

/// How much of an error response body is read and quoted; the rest is
/// left unread, so a hostile receiver cannot fill memory.
const QUOTED_BODY: usize = 200;

#[derive(Debug)]
pub(crate) struct HttpSink {
    client: reqwest::Client,
    urls: Vec<Url>,
    /// The collector that accepted last; tried first.
    current: AtomicUsize,
    batch: bool,
}

impl HttpSink {
    pub(crate) fn new(
        urls: Vec<Url>,
        batch: bool,
        tls: &TlsFiles,
        timeout: Duration,
    ) -> Result<HttpSink, SinkError> {
        if urls.is_empty() {
            return Err(SinkError::Config(
                "a qradar-http sink needs at least one URL".to_owned(),
            ));
        }
        let config = tls.client_config(&[b"http/1.1"])?;
        // The agent's own traffic must not go through the system proxy,
        // which is webwarden itself.
        // A redirect is a failure: following it would send the event
        // elsewhere, or turn the POST into a GET that drops it.
        let client = reqwest::Client::builder()
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .tls_backend_preconfigured(rustls::ClientConfig::clone(&config))
            .connect_timeout(timeout)
            .timeout(timeout)
            .user_agent(concat!("webwarden/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|err| SinkError::Config(format!("failed to set up the HTTP client: {err}")))?;
        Ok(HttpSink {
            client,
            urls,
            current: AtomicUsize::new(0),
            batch,
        })
    }

    pub(crate) fn batch_limit(&self) -> usize {
        if self.batch {
            BATCH_EVENTS
        } else {
            SINGLE_EVENTS
        }
    }

    pub(crate) async fn deliver(&mut self, records: &[Record]) -> Result<String, Failure> {
        if self.batch {
            let mut body = String::with_capacity(records.iter().map(|r| r.json.len() + 1).sum());
            for record in records {
                body.push_str(&record.json);
                body.push('\n');
            }
            return self
                .post_anywhere(body)
                .await
                .map_err(|error| Failure::new(0, error));
        }
        // Results come back in record order, and the first failure ends the
        // delivery. Records after it are sent again even if they got
        // through, so receivers drop those copies by eventId.
        let posts: Vec<_> = records
            .iter()
            .map(|record| Box::pin(self.post_anywhere(record.json.clone())))
            .collect();
        let mut results = stream::iter(posts).buffered(CONCURRENT_POSTS);
        let mut accepted = String::new();
        let mut delivered = 0;
        while let Some(result) = results.next().await {
            accepted = result.map_err(|error| Failure::new(delivered, error))?;
            delivered += 1;
        }
        Ok(accepted)
    }

    /// Posts to the current collector, then to each other one in turn.
    async fn post_anywhere(&self, body: String) -> Result<String, String> {
        let mut errors = Vec::new();
        let current = self.current.load(Ordering::Relaxed);
        for attempt in 0..self.urls.len() {
            let index = (current + attempt) % self.urls.len();
            match self.post(&self.urls[index], body.clone()).await {
                Ok(accepted) if errors.is_empty() => return Ok(accepted),
                Ok(accepted) => {
                    let failed = errors.join("; ");
                    if self.current.swap(index, Ordering::Relaxed) != index {
                        tracing::warn!(collector = %self.urls[index], failed, "switched to another QRadar collector");
                    }
                    return Ok(format!("{accepted} after: {failed}"));
                }
                Err(error) => errors.push(error),
            }
        }
        Err(errors.join("; "))
    }

    async fn post(&self, url: &Url, body: String) -> Result<String, String> {
        let response = self
            .client
            .post(url.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body)
            .send()
            .await
            .map_err(|err| {
                let cause = error_chain(&err);
                format!("POST {url} failed: {cause}{}", super::tls_hint(&cause))
            })?;
        let status = response.status();
        if status.is_success() {
            return Ok(format!("accepted by {url} (HTTP {})", status.as_u16()));
        }
        if status.is_redirection() {
            let location = redirect_location(&response);
            return Err(format!(
                "POST {url} answered HTTP {} (redirect to {location:?}); webwarden does not follow redirects, so configure the collector's own URL",
                status.as_u16()
            ));
        }
        let start = read_start(response, QUOTED_BODY).await;
        Err(format!(
            "POST {url} answered HTTP {}: {}",
            status.as_u16(),
            start.trim().escape_debug()
        ))
    }
}

/// Returns a redirect's `Location` header with control characters escaped,
/// or an empty string.
pub fn redirect_location(response: &reqwest::Response) -> String {
    response
        .headers()
        .get(reqwest::header::LOCATION)
        .map(|value| {
            String::from_utf8_lossy(value.as_bytes())
                .escape_debug()
                .to_string()
        })
        .unwrap_or_default()
}

/// Reads up to `limit` bytes of a response body and drops the rest.
async fn read_start(mut response: reqwest::Response, limit: usize) -> String {
    let mut bytes = Vec::new();
    while bytes.len() < limit {
        match response.chunk().await {
            Ok(Some(chunk)) => bytes.extend_from_slice(&chunk),
            Ok(None) | Err(_) => break,
        }
    }
    bytes.truncate(limit);
    String::from_utf8_lossy(&bytes).into_owned()
}

/// Joins an error and its sources into one line; the sources name the real
/// cause (refused, certificate unknown, timed out).
pub fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}
