//! The PAC file (proxy auto-config) that the OS proxy settings point at,
//! and the small HTTP server on loopback that serves it.
//!
//! The script sends loopback hosts direct and every other request to the
//! filtering proxy, with no `DIRECT` fallback. With `PROXY a; DIRECT`, a
//! browser whose proxy connection fails goes straight to the site, so
//! stopping the proxy would turn the filter off while the settings still
//! point at it. Without the fallback, requests fail while the agent runs
//! but its proxy cannot take them, and the agent restores the user's
//! settings when it stops.
//!
//! NOTE: this server runs in the agent, so a killed or crashed agent also
//! takes the PAC file away, and Chromium then connects directly (seen with
//! Chromium 156 under GNOME): filtering fails open until the next start.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{HeaderValue, ALLOW, CACHE_CONTROL, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

/// The default listen address of the PAC server.
pub const DEFAULT_PAC_LISTEN: &str = "127.0.0.1:8898";

/// The path that the OS settings name.
pub const PAC_PATH: &str = "/proxy.pac";

/// The path that WPAD clients request.
pub const WPAD_PATH: &str = "/wpad.dat";

/// The media type of PAC files.
pub const PAC_CONTENT_TYPE: &str = "application/x-ns-proxy-autoconfig";

/// The bound on reading a request head.
const HEADER_TIMEOUT: Duration = Duration::from_secs(5);

/// The bound on one whole connection.
const CONNECTION_TIMEOUT: Duration = Duration::from_secs(10);

/// The largest request head read, in bytes (hyper's minimum buffer size).
const MAX_HEAD_BYTES: usize = 8192;

/// The maximum number of connections served at once. More wait in the
/// accept queue.
const MAX_CONNECTIONS: usize = 64;

/// The pause after a failed accept, so a shortage of file descriptors
/// does not spin the loop.
const ACCEPT_RETRY_DELAY: Duration = Duration::from_millis(100);

/// Returns the URL of the PAC file served on `addr`, such as
/// `http://127.0.0.1:8898/proxy.pac`.
pub fn pac_url(addr: SocketAddr) -> String {
    format!("http://{addr}{PAC_PATH}")
}

/// Returns the PAC script that sends loopback hosts direct and everything
/// else to the proxy at `proxy`.
pub fn pac_script(proxy: SocketAddr) -> String {
    format!(
        r#"// webwarden: send web requests through the local filtering proxy.
function FindProxyForURL(url, host) {{
    host = host.toLowerCase();
    if (host === "localhost" || dnsDomainIs(host, ".localhost") ||
        /^127\.\d+\.\d+\.\d+$/.test(host) || host === "::1" || host === "[::1]") {{
        return "DIRECT";
    }}
    // No DIRECT fallback: when the proxy is down, requests fail rather than
    // bypass the filter.
    return "PROXY {proxy}";
}}
"#
    )
}

/// Serves the PAC script for the proxy at `proxy` on `listener` until
/// `shutdown` completes. Bind the listener with [`crate::bind`], which
/// rejects addresses other than loopback.
///
/// `GET` and `HEAD` of [`PAC_PATH`] and [`WPAD_PATH`] return the script;
/// other paths return 404 and other methods 405. Each connection serves one
/// request, whose head may take at most 5 seconds and 8 KiB.
pub async fn serve_pac(
    listener: TcpListener,
    proxy: SocketAddr,
    shutdown: impl Future<Output = ()> + Send,
) {
    let script = Bytes::from(pac_script(proxy));
    let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            () = &mut shutdown => return,
            permit = Arc::clone(&permits).acquire_owned() => permit,
        };
        // The semaphore is never closed, so acquiring cannot fail.
        let permit = permit.expect("semaphore is open");
        let accepted = tokio::select! {
            () = &mut shutdown => return,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, _)) => {
                let script = script.clone();
                tokio::spawn(async move {
                    serve_connection(stream, script).await;
                    drop(permit);
                });
            }
            Err(err) => {
                tracing::warn!(error = %err, "PAC server failed to accept a connection");
                tokio::time::sleep(ACCEPT_RETRY_DELAY).await;
            }
        }
    }
}

async fn serve_connection(stream: TcpStream, script: Bytes) {
    let service = hyper::service::service_fn(move |request: Request<hyper::body::Incoming>| {
        let response = respond(request.method(), request.uri().path(), &script);
        async move { Ok::<_, Infallible>(response) }
    });
    let connection = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .max_buf_size(MAX_HEAD_BYTES)
        .keep_alive(false)
        .serve_connection(TokioIo::new(stream), service);
    match tokio::time::timeout(CONNECTION_TIMEOUT, connection).await {
        Ok(Ok(())) => {}
        Ok(Err(err)) => tracing::debug!(error = %err, "PAC connection failed"),
        Err(_) => tracing::debug!("PAC connection timed out"),
    }
}

/// Builds the response to a request for `path` with `method`.
fn respond(method: &Method, path: &str, script: &Bytes) -> Response<Full<Bytes>> {
    if path != PAC_PATH && path != WPAD_PATH {
        return plain(StatusCode::NOT_FOUND, "not found\n");
    }
    if method != Method::GET && method != Method::HEAD {
        let mut response = plain(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
        response
            .headers_mut()
            .insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
        return response;
    }
    let mut response = Response::new(Full::new(script.clone()));
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(PAC_CONTENT_TYPE));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

fn plain(status: StatusCode, text: &'static str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from_static(text.as_bytes())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::process::{Command, Stdio};

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    fn proxy() -> SocketAddr {
        "127.0.0.1:8899".parse().unwrap()
    }

    /// Starts the server on a free loopback port and returns its address.
    async fn start() -> (SocketAddr, tokio::sync::oneshot::Sender<()>) {
        let listener = crate::bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(serve_pac(listener, proxy(), async {
            let _ = stopped.await;
        }));
        (addr, stop)
    }

    async fn exchange(addr: SocketAddr, request: &str) -> String {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut response = Vec::new();
        tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut response))
            .await
            .expect("the server closes the connection")
            .unwrap();
        String::from_utf8_lossy(&response).into_owned()
    }

    #[tokio::test]
    async fn both_paths_serve_script() {
        let (addr, _stop) = start().await;
        for path in [PAC_PATH, WPAD_PATH, "/proxy.pac?cache=1"] {
            let response = exchange(addr, &format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n")).await;
            assert!(response.starts_with("HTTP/1.1 200"), "{path}: {response}");
            let lower = response.to_ascii_lowercase();
            assert!(
                lower.contains("content-type: application/x-ns-proxy-autoconfig"),
                "{response}"
            );
            assert!(response.contains("PROXY 127.0.0.1:8899\""), "{response}");
        }
    }

    #[tokio::test]
    async fn other_paths_and_methods_are_rejected() {
        let (addr, _stop) = start().await;
        let response = exchange(addr, "GET /other HTTP/1.1\r\nHost: x\r\n\r\n").await;
        assert!(response.starts_with("HTTP/1.1 404"), "{response}");
        let response = exchange(addr, "POST /proxy.pac HTTP/1.1\r\nHost: x\r\n\r\n").await;
        assert!(response.starts_with("HTTP/1.1 405"), "{response}");
        assert!(response.contains("allow: GET, HEAD"), "{response}");
    }

    #[tokio::test]
    async fn oversized_head_is_rejected() {
        let (addr, _stop) = start().await;
        let padding = "a".repeat(MAX_HEAD_BYTES * 2);
        let request = format!("GET /proxy.pac HTTP/1.1\r\nHost: x\r\nX-Pad: {padding}\r\n\r\n");
        let response = exchange(addr, &request).await;
        assert!(response.starts_with("HTTP/1.1 431"), "{response}");
    }

    #[tokio::test]
    async fn silent_client_is_dropped() {
        let (addr, _stop) = start().await;
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream
            .write_all(b"GET /proxy.pac HTTP/1.1\r\n")
            .await
            .unwrap();
        let mut response = Vec::new();
        let closed = tokio::time::timeout(
            HEADER_TIMEOUT + Duration::from_secs(5),
            stream.read_to_end(&mut response),
        )
        .await;
        assert!(
            closed.is_ok(),
            "the server keeps a silent client past its timeout"
        );
    }

    #[tokio::test]
    async fn shutdown_stops_accepting() {
        let (addr, stop) = start().await;
        stop.send(()).unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(TcpStream::connect(addr).await.is_err());
    }

    #[tokio::test]
    async fn non_loopback_listen_address_is_rejected() {
        let err = crate::bind("0.0.0.0:0".parse().unwrap()).await.unwrap_err();
        assert!(matches!(err, crate::ProxyError::NotLoopback(_)));
    }

    #[test]
    fn url_brackets_ipv6() {
        assert_eq!(
            pac_url("127.0.0.1:8898".parse().unwrap()),
            "http://127.0.0.1:8898/proxy.pac"
        );
        assert_eq!(
            pac_url("[::1]:8898".parse().unwrap()),
            "http://[::1]:8898/proxy.pac"
        );
    }

    /// Runs the script in Node.js when it is installed, with the PAC helper
    /// function it uses, and checks its decisions.
    #[test]
    fn script_decisions_in_node() {
        let cases = [
            ("http://localhost:3000/", "localhost", "DIRECT"),
            ("http://app.localhost/", "app.localhost", "DIRECT"),
            ("http://127.0.0.1/", "127.0.0.1", "DIRECT"),
            ("http://127.1.2.3/", "127.1.2.3", "DIRECT"),
            ("http://[::1]/", "::1", "DIRECT"),
            ("http://LOCALHOST/", "LOCALHOST", "DIRECT"),
            (
                "https://example.org/",
                "example.org",
                "PROXY 127.0.0.1:8899",
            ),
            (
                "https://localhost.example/",
                "localhost.example",
                "PROXY 127.0.0.1:8899",
            ),
            (
                "http://127.0.0.1.example/",
                "127.0.0.1.example",
                "PROXY 127.0.0.1:8899",
            ),
            ("http://intranet/", "intranet", "PROXY 127.0.0.1:8899"),
        ];
        let mut program = pac_script(proxy());
        program.push_str(
            "function dnsDomainIs(host, domain) {\n\
             return host.length >= domain.length &&\n\
             host.substring(host.length - domain.length) === domain;\n}\n",
        );
        for (url, host, _) in cases {
            program.push_str(&format!(
                "console.log(FindProxyForURL({url:?}, {host:?}));\n"
            ));
        }

        let child = Command::new("node")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn();
        let Ok(mut child) = child else {
            let _ = writeln!(
                std::io::stderr(),
                "skipping script_decisions_in_node: node is not installed (apt-get install -y nodejs)"
            );
            return;
        };
        child
            .stdin
            .take()
            .unwrap()
            .write_all(program.as_bytes())
            .unwrap();
        let output = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "node failed: {stderr}");
        let stdout = String::from_utf8_lossy(&output.stdout);
        let decisions: Vec<&str> = stdout.lines().collect();
        for ((url, _, expected), decision) in cases.iter().zip(&decisions) {
            assert_eq!(decision, expected, "{url}");
        }
        assert_eq!(decisions.len(), cases.len(), "{stdout}");
    }
}
