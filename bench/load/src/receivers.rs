//! Stand-in SIEM receivers on loopback: a QRadar HTTP Receiver that
//! returns 200 to every POST, and a syslog TCP receiver that reads and
//! discards. Both count what they receive, so a benchmark can tell when a
//! sender has delivered its backlog.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde::{Deserialize, Serialize};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio::task::JoinHandle;

use crate::listen::{self, ErrorLog};

/// The addresses the receivers listen on, as written to their address file.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct ReceiverAddrs {
    /// The HTTP receiver, for `webwarden run --siem-http`.
    pub http: SocketAddr,
    /// The syslog TCP receiver, for `webwarden run --siem-syslog tcp://...`.
    pub syslog: SocketAddr,
}

/// Counts of the requests and bytes the receivers received since start.
#[derive(Debug, Default)]
pub struct Counters {
    http_posts: AtomicU64,
    http_body_bytes: AtomicU64,
    http_rejected: AtomicU64,
    syslog_connections: AtomicU64,
    syslog_bytes: AtomicU64,
}

/// A copy of [`Counters`], as written to the statistics file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReceiverStats {
    /// POST requests, each given a 200 response. Each is one event when the
    /// sender posts events one at a time.
    pub http_posts: u64,
    /// Bytes of those POST bodies.
    pub http_body_bytes: u64,
    /// Requests with another method, each given a 405 response.
    pub http_rejected: u64,
    /// Syslog connections accepted.
    pub syslog_connections: u64,
    /// Bytes read from syslog connections.
    pub syslog_bytes: u64,
}

impl Counters {
    /// Returns the current counts.
    pub fn snapshot(&self) -> ReceiverStats {
        ReceiverStats {
            http_posts: self.http_posts.load(Ordering::Relaxed),
            http_body_bytes: self.http_body_bytes.load(Ordering::Relaxed),
            http_rejected: self.http_rejected.load(Ordering::Relaxed),
            syslog_connections: self.syslog_connections.load(Ordering::Relaxed),
            syslog_bytes: self.syslog_bytes.load(Ordering::Relaxed),
        }
    }
}

/// Binds both receivers, which must listen on loopback addresses, and
/// serves them on background tasks until the returned handles are aborted
/// or the runtime stops.
///
/// # Errors
///
/// Returns an error for a non-loopback address or a failed bind.
pub async fn start(
    http_listen: SocketAddr,
    syslog_listen: SocketAddr,
) -> anyhow::Result<(ReceiverAddrs, Arc<Counters>, [JoinHandle<()>; 2])> {
    let http = listen::bind_loopback(http_listen).await?;
    let syslog = listen::bind_loopback(syslog_listen).await?;
    let addrs = ReceiverAddrs {
        http: http.local_addr()?,
        syslog: syslog.local_addr()?,
    };
    let counters = Arc::new(Counters::default());

    let http_counters = Arc::clone(&counters);
    let http_task = tokio::spawn(listen::accept_loop(
        http,
        Arc::new(ErrorLog::new("http receiver")),
        move |stream| serve_http(stream, Arc::clone(&http_counters)),
    ));
    let syslog_counters = Arc::clone(&counters);
    let syslog_task = tokio::spawn(listen::accept_loop(
        syslog,
        Arc::new(ErrorLog::new("syslog receiver")),
        move |stream| discard_syslog(stream, Arc::clone(&syslog_counters)),
    ));
    Ok((addrs, counters, [http_task, syslog_task]))
}

async fn serve_http(stream: TcpStream, counters: Arc<Counters>) -> anyhow::Result<()> {
    stream.set_nodelay(true)?;
    let service = service_fn(move |request| receive_post(request, Arc::clone(&counters)));
    listen::serve_http(TokioIo::new(stream), service).await
}

/// Reads the whole body, so the connection stays usable for the next
/// request, and returns 200 to a POST and 405 to anything else.
async fn receive_post(
    request: Request<hyper::body::Incoming>,
    counters: Arc<Counters>,
) -> Result<Response<Empty<Bytes>>, hyper::Error> {
    let is_post = request.method() == Method::POST;
    let body = request.into_body().collect().await?.to_bytes();
    let status = if is_post {
        counters.http_posts.fetch_add(1, Ordering::Relaxed);
        counters
            .http_body_bytes
            .fetch_add(body.len() as u64, Ordering::Relaxed);
        StatusCode::OK
    } else {
        counters.http_rejected.fetch_add(1, Ordering::Relaxed);
        StatusCode::METHOD_NOT_ALLOWED
    };
    let mut response = Response::new(Empty::new());
    *response.status_mut() = status;
    Ok(response)
}

async fn discard_syslog(mut stream: TcpStream, counters: Arc<Counters>) -> anyhow::Result<()> {
    counters.syslog_connections.fetch_add(1, Ordering::Relaxed);
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        let read = stream.read(&mut buffer).await?;
        if read == 0 {
            return Ok(());
        }
        counters
            .syslog_bytes
            .fetch_add(read as u64, Ordering::Relaxed);
    }
}
