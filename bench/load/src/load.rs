//! The timed run: a fixed number of keep-alive connections, each sending
//! one request at a time, for a warmup and then a measured window.
//!
//! Throughput and latency count the requests that complete inside the
//! window. Failures are counted over the warmup and the window, so a path
//! that fails only while warming up still shows up in the result.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use hdrhistogram::Histogram;
use hyper::StatusCode;
use tokio::task::JoinSet;

use crate::client::{self, Sender, Target};
use crate::origin::BODY_LEN;

/// Highest latency the histogram resolves, in microseconds; slower
/// requests are recorded as this value.
const MAX_LATENCY_US: u64 = 60_000_000;

/// Pause after a failed reconnect, so a dead path does not spin.
const RECONNECT_PAUSE: Duration = Duration::from_millis(50);

/// The limits of one run.
#[derive(Debug, Clone)]
pub struct LoadSettings {
    /// Concurrent connections.
    pub connections: usize,
    /// Time before the measured window, not counted in the results.
    pub warmup: Duration,
    /// Length of the measured window.
    pub duration: Duration,
    /// Requests sent in the whole run, warmup included, at most.
    pub max_requests: u64,
    /// Time one request may take before it counts as timed out.
    pub request_timeout: Duration,
    /// Time opening one connection may take.
    pub connect_timeout: Duration,
}

/// The measurements of one run.
#[derive(Debug)]
pub struct LoadOutcome {
    /// Length of the measured window; shorter than requested when the
    /// request budget ran out first.
    pub window: Duration,
    /// 200 responses with the full body completed inside the window.
    pub ok: u64,
    /// Responses other than 200, over the whole run, by status code.
    pub other_statuses: BTreeMap<u16, u64>,
    /// 200 responses whose body had the wrong length, over the whole run.
    pub wrong_bodies: u64,
    /// Failed requests and failed reconnects, over the whole run.
    pub errors: u64,
    /// Requests that timed out, over the whole run.
    pub timeouts: u64,
    /// Whether the request budget ran out before the window ended.
    pub budget_exhausted: bool,
    /// Requests sent in the whole run, warmup included.
    pub sent: u64,
    /// Latency of the `ok` requests, in microseconds.
    pub latency_us: Histogram<u64>,
}

/// Start and end of the measured window.
#[derive(Debug, Clone, Copy)]
struct Window {
    start: Instant,
    end: Instant,
}

impl Window {
    fn contains(&self, instant: Instant) -> bool {
        instant >= self.start && instant <= self.end
    }
}

/// Checks the path with one request, opens every connection, and drives
/// them until the window ends or the request budget runs out.
///
/// # Errors
///
/// Returns an error when the probe request does not return 200 with the
/// origin's body, or when a connection cannot be opened before the run.
pub async fn run(target: Arc<Target>, settings: &LoadSettings) -> anyhow::Result<LoadOutcome> {
    if settings.connections == 0 {
        bail!("the number of connections must be at least 1");
    }
    probe(&target, settings).await?;
    let senders = open_connections(&target, settings).await?;

    let budget = Arc::new(AtomicU64::new(settings.max_requests));
    let start = Instant::now() + settings.warmup;
    let window = Window {
        start,
        end: start + settings.duration,
    };
    let mut workers = JoinSet::new();
    for sender in senders {
        workers.spawn(drive(
            Arc::clone(&target),
            sender,
            window,
            Arc::clone(&budget),
            settings.clone(),
        ));
    }

    let mut total = WorkerStats::new()?;
    while let Some(joined) = workers.join_next().await {
        total.merge(joined.context("a load task panicked")??)?;
    }
    let left = budget.load(Ordering::Relaxed);
    let budget_exhausted = left == 0;
    let window_end = match total.last_completion {
        Some(last) if budget_exhausted && last < window.end => last,
        _ => window.end,
    };
    Ok(LoadOutcome {
        window: window_end.saturating_duration_since(window.start),
        ok: total.ok,
        other_statuses: total.other_statuses,
        wrong_bodies: total.wrong_bodies,
        errors: total.errors,
        timeouts: total.timeouts,
        budget_exhausted,
        sent: settings.max_requests - left,
        latency_us: total.latency_us,
    })
}

/// Sends one request on its own connection and fails unless the response
/// is the origin's 200, so a blocked or broken path stops the run at once
/// instead of being measured as fast failures.
async fn probe(target: &Target, settings: &LoadSettings) -> anyhow::Result<()> {
    let mut sender = tokio::time::timeout(settings.connect_timeout, target.connect())
        .await
        .context("opening the probe connection timed out")??;
    let request = target.request()?;
    let (status, body) =
        tokio::time::timeout(settings.request_timeout, client::send(&mut sender, request))
            .await
            .context("the probe request timed out")??;
    if status != StatusCode::OK || body.len() != BODY_LEN {
        let text = String::from_utf8_lossy(&body);
        let excerpt: String = text.chars().take(300).collect();
        bail!(
            "the probe request returned {status} with a {}-byte body instead of 200 with {BODY_LEN} bytes: {excerpt:?}",
            body.len()
        );
    }
    Ok(())
}

async fn open_connections(
    target: &Arc<Target>,
    settings: &LoadSettings,
) -> anyhow::Result<Vec<Sender>> {
    let mut opening = JoinSet::new();
    for _ in 0..settings.connections {
        let target = Arc::clone(target);
        let limit = settings.connect_timeout;
        opening.spawn(async move { tokio::time::timeout(limit, target.connect()).await });
    }
    let mut senders = Vec::with_capacity(settings.connections);
    while let Some(joined) = opening.join_next().await {
        let sender = joined
            .context("a connect task panicked")?
            .with_context(|| {
                format!(
                    "opening connection {} of {} timed out",
                    senders.len() + 1,
                    settings.connections
                )
            })?
            .with_context(|| {
                format!(
                    "failed to open connection {} of {}",
                    senders.len() + 1,
                    settings.connections
                )
            })?;
        senders.push(sender);
    }
    Ok(senders)
}

/// Counters of one connection's worker, merged after the run.
struct WorkerStats {
    ok: u64,
    other_statuses: BTreeMap<u16, u64>,
    wrong_bodies: u64,
    errors: u64,
    timeouts: u64,
    last_completion: Option<Instant>,
    latency_us: Histogram<u64>,
}

impl WorkerStats {
    fn new() -> anyhow::Result<WorkerStats> {
        Ok(WorkerStats {
            ok: 0,
            other_statuses: BTreeMap::new(),
            wrong_bodies: 0,
            errors: 0,
            timeouts: 0,
            last_completion: None,
            latency_us: Histogram::new_with_bounds(1, MAX_LATENCY_US, 3)?,
        })
    }

    fn merge(&mut self, other: WorkerStats) -> anyhow::Result<()> {
        self.ok += other.ok;
        for (status, count) in other.other_statuses {
            *self.other_statuses.entry(status).or_default() += count;
        }
        self.wrong_bodies += other.wrong_bodies;
        self.errors += other.errors;
        self.timeouts += other.timeouts;
        self.last_completion = self.last_completion.max(other.last_completion);
        self.latency_us.add(&other.latency_us)?;
        Ok(())
    }
}

/// Takes one request from the budget; returns false when it is used up.
fn take_request(budget: &AtomicU64) -> bool {
    budget
        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |left| {
            left.checked_sub(1)
        })
        .is_ok()
}

/// Sends requests one after another on one connection, reconnecting after a
/// failure, until the window ends or the budget runs out.
async fn drive(
    target: Arc<Target>,
    sender: Sender,
    window: Window,
    budget: Arc<AtomicU64>,
    settings: LoadSettings,
) -> anyhow::Result<WorkerStats> {
    let mut stats = WorkerStats::new()?;
    let mut connection = Some(sender);
    while Instant::now() < window.end && take_request(&budget) {
        // A server may close a keep-alive connection between requests, as
        // nginx does after `keepalive_requests`. That is no failed request,
        // so the worker reconnects without counting an error.
        let reusable = match connection.take() {
            Some(mut sender) => sender.ready().await.is_ok().then_some(sender),
            None => None,
        };
        let mut sender = match reusable {
            Some(sender) => sender,
            None => match tokio::time::timeout(settings.connect_timeout, target.connect()).await {
                Ok(Ok(sender)) => sender,
                Ok(Err(_)) | Err(_) => {
                    stats.errors += 1;
                    tokio::time::sleep(RECONNECT_PAUSE).await;
                    continue;
                }
            },
        };
        let request = target.request()?;
        let begin = Instant::now();
        let result =
            tokio::time::timeout(settings.request_timeout, client::send(&mut sender, request))
                .await;
        let end = Instant::now();
        match result {
            Ok(Ok((status, body))) => {
                connection = Some(sender);
                if status != StatusCode::OK {
                    *stats.other_statuses.entry(status.as_u16()).or_default() += 1;
                } else if body.len() != BODY_LEN {
                    stats.wrong_bodies += 1;
                } else if window.contains(end) {
                    stats.last_completion = Some(end);
                    stats.ok += 1;
                    let micros =
                        u64::try_from(end.duration_since(begin).as_micros()).unwrap_or(u64::MAX);
                    stats.latency_us.saturating_record(micros.max(1));
                }
            }
            Ok(Err(_)) => stats.errors += 1,
            Err(_) => stats.timeouts += 1,
        }
    }
    Ok(stats)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::origin;

    fn short_settings(connections: usize) -> LoadSettings {
        LoadSettings {
            connections,
            warmup: Duration::from_millis(50),
            duration: Duration::from_millis(300),
            max_requests: 100_000,
            request_timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(5),
        }
    }

    async fn start_origin() -> (origin::OriginAddrs, tempfile::NamedTempFile) {
        let tls = origin::make_tls().unwrap();
        let loopback = "127.0.0.1:0".parse().unwrap();
        let (addrs, _tasks) = origin::start(loopback, loopback, tls.server_config)
            .await
            .unwrap();
        let ca = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(ca.path(), tls.ca_pem).unwrap();
        (addrs, ca)
    }

    #[tokio::test]
    async fn direct_http_run_counts_requests() {
        let (addrs, _ca) = start_origin().await;
        let url = format!("http://localhost:{}/", addrs.http.port());
        let target = Arc::new(Target::new(&url, None, None).await.unwrap());
        let outcome = run(target, &short_settings(4)).await.unwrap();
        assert!(outcome.ok > 0, "no request completed: {outcome:?}");
        assert_eq!(outcome.errors, 0);
        assert_eq!(outcome.timeouts, 0);
        assert_eq!(outcome.wrong_bodies, 0);
        assert!(outcome.other_statuses.is_empty());
        assert_eq!(outcome.latency_us.len(), outcome.ok);
        assert!(outcome.sent >= outcome.ok);
    }

    #[tokio::test]
    async fn direct_https_run_trusts_origin_ca() {
        let (addrs, ca) = start_origin().await;
        let url = format!("https://localhost:{}/", addrs.https.port());
        let target = Arc::new(Target::new(&url, None, Some(ca.path())).await.unwrap());
        let outcome = run(target, &short_settings(2)).await.unwrap();
        assert!(outcome.ok > 0, "no request completed: {outcome:?}");
        assert_eq!(outcome.errors, 0);
        assert_eq!(outcome.timeouts, 0);
    }

    #[tokio::test]
    async fn request_budget_ends_run_early() {
        let (addrs, _ca) = start_origin().await;
        let url = format!("http://localhost:{}/", addrs.http.port());
        let target = Arc::new(Target::new(&url, None, None).await.unwrap());
        let settings = LoadSettings {
            warmup: Duration::ZERO,
            duration: Duration::from_secs(30),
            max_requests: 50,
            ..short_settings(2)
        };
        let started = Instant::now();
        let outcome = run(target, &settings).await.unwrap();
        assert!(outcome.budget_exhausted);
        assert_eq!(outcome.sent, 50);
        assert!(outcome.ok <= 50);
        assert!(started.elapsed() < Duration::from_secs(10));
    }

    #[tokio::test]
    async fn server_close_between_requests_is_no_error() {
        // A server without keep-alive closes every connection after one
        // response, so each request after the first needs a reconnect.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            loop {
                let (stream, _) = listener.accept().await.unwrap();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(|_req| async {
                        let body =
                            http_body_util::Full::new(bytes::Bytes::from(vec![b'x'; BODY_LEN]));
                        Ok::<_, std::convert::Infallible>(hyper::Response::new(body))
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .keep_alive(false)
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        let url = format!("http://localhost:{port}/");
        let target = Arc::new(Target::new(&url, None, None).await.unwrap());
        let outcome = run(target, &short_settings(2)).await.unwrap();
        assert!(outcome.ok > 1, "too few requests completed: {outcome:?}");
        assert_eq!(outcome.errors, 0);
        assert_eq!(outcome.timeouts, 0);
    }

    #[tokio::test]
    async fn https_without_trusted_ca_fails_probe() {
        let (addrs, _ca) = start_origin().await;
        let other = origin::make_tls().unwrap();
        let wrong_ca = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(wrong_ca.path(), other.ca_pem).unwrap();
        let url = format!("https://localhost:{}/", addrs.https.port());
        let target = Arc::new(
            Target::new(&url, None, Some(wrong_ca.path()))
                .await
                .unwrap(),
        );
        let err = run(target, &short_settings(1)).await.unwrap_err();
        assert!(format!("{err:#}").contains("TLS handshake"), "{err:#}");
    }

    #[tokio::test]
    async fn non_loopback_proxy_is_rejected() {
        let proxy = "192.0.2.1:8080".parse().unwrap();
        let err = Target::new("http://localhost:1/", Some(proxy), None)
            .await
            .err()
            .unwrap();
        assert!(err.to_string().contains("not a loopback address"), "{err}");
    }
}
