//! Loopback listeners, the accept loop and the HTTP/1.1 connection driver
//! that the origin and the SIEM receivers share.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use hyper::server::conn::http1;
use hyper::service::HttpService;
use tokio::net::{TcpListener, TcpStream};

/// Errors printed per server before it only counts them.
const MAX_LOGGED_ERRORS: u64 = 10;

/// Binds `addr`, which must be a loopback address.
///
/// # Errors
///
/// Returns an error for a non-loopback address or a failed bind.
pub async fn bind_loopback(addr: SocketAddr) -> anyhow::Result<TcpListener> {
    if !addr.ip().is_loopback() {
        bail!(
            "listen address {addr} is not a loopback address; this tool serves only this machine"
        );
    }
    TcpListener::bind(addr)
        .await
        .with_context(|| format!("failed to listen on {addr}"))
}

/// Counts errors and prints the first [`MAX_LOGGED_ERRORS`] of them, so a
/// misconfigured client cannot flood the log.
pub struct ErrorLog {
    server: &'static str,
    count: AtomicU64,
}

impl ErrorLog {
    /// Creates a log whose lines start with `server`.
    pub fn new(server: &'static str) -> ErrorLog {
        ErrorLog {
            server,
            count: AtomicU64::new(0),
        }
    }

    fn report(&self, message: std::fmt::Arguments<'_>) {
        let seen = self.count.fetch_add(1, Ordering::Relaxed);
        if seen < MAX_LOGGED_ERRORS {
            eprintln!("{}: {message}", self.server);
        } else if seen == MAX_LOGGED_ERRORS {
            eprintln!("{}: further errors are not printed", self.server);
        }
    }
}

/// Accepts connections forever and runs `handle` on each in its own task,
/// reporting accept errors and the errors `handle` returns to `errors`.
pub async fn accept_loop<F, Fut>(listener: TcpListener, errors: Arc<ErrorLog>, handle: F)
where
    F: Fn(TcpStream) -> Fut,
    Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
{
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
        let connection = handle(stream);
        let errors = Arc::clone(&errors);
        tokio::spawn(async move {
            if let Err(err) = connection.await {
                errors.report(format_args!("connection from {peer} failed: {err:#}"));
            }
        });
    }
}

/// Serves keep-alive HTTP/1.1 on `io` with `service` until the client
/// closes the connection.
///
/// # Errors
///
/// Returns hyper's error for a failed connection.
pub async fn serve_http<I, S>(io: I, service: S) -> anyhow::Result<()>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    S: HttpService<hyper::body::Incoming>,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    S::ResBody: 'static,
    <S::ResBody as hyper::body::Body>::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let served = http1::Builder::new()
        .keep_alive(true)
        .serve_connection(io, service)
        .await;
    match served {
        // A client that closes its connection in the middle of a request,
        // as load generators do at the end of a run, is not an error here.
        Err(err) if err.is_incomplete_message() => Ok(()),
        other => other.context("HTTP/1.1 connection failed"),
    }
}
