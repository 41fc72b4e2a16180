//! Helpers for the end-to-end tests: a `webwarden run` child process, a test
//! CA with an origin certificate, HTTP(S) and WebSocket origins, and curl and
//! reqwest clients that go through the proxy. Every server listens on
//! 127.0.0.1 and every client connects only there.

// Each test crate that includes this module uses a different subset of it.
#![allow(dead_code)]

use std::convert::Infallible;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{mpsc, Arc, Mutex, OnceLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::header::{HeaderMap, HeaderValue, CONTENT_LENGTH, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode, Version};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use serde_json::Value;
use tempfile::TempDir;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio_rustls::rustls::{self, ClientConfig, RootCertStore, ServerConfig};
use tokio_rustls::{TlsAcceptor, TlsConnector};

pub mod chromium;
pub mod desktop;
pub mod qradar;
pub mod rsyslog;

/// How long webwarden may take to print its listening line.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);

/// How long an event may take to reach the events file.
const EVENT_TIMEOUT: Duration = Duration::from_secs(10);

/// The bound on one curl run.
const CURL_TIMEOUT: Duration = Duration::from_secs(30);

/// The bound on reading one raw response from the proxy.
const RAW_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Proxy-related environment variables that curl and webwarden must not see.
const PROXY_ENV: [&str; 8] = [
    "http_proxy",
    "https_proxy",
    "all_proxy",
    "no_proxy",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
    "NO_PROXY",
];

/// Returns the crypto provider of every rustls config the tests build.
pub fn crypto_provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

// ---------------------------------------------------------------------------
// The webwarden child process
// ---------------------------------------------------------------------------

/// A child process that is killed (by its PID) and reaped when dropped, so a
/// panicking test never leaves it running.
pub struct ChildGuard {
    child: Child,
}

impl ChildGuard {
    /// Wraps a spawned child.
    pub fn new(child: Child) -> ChildGuard {
        ChildGuard { child }
    }

    /// Returns the child's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits up to `timeout` for the child to exit and returns its status,
    /// or `None` when it is still running.
    pub fn wait_timeout(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait on child") {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

/// Collects a child's stderr on a thread: every line goes to a shared
/// buffer and to a channel, so a test can both wait for a line and show the
/// whole log when it fails.
struct StderrLog {
    text: Arc<Mutex<String>>,
    lines: mpsc::Receiver<String>,
}

impl StderrLog {
    fn start(stderr: std::process::ChildStderr) -> StderrLog {
        let text = Arc::new(Mutex::new(String::new()));
        let (sender, lines) = mpsc::channel();
        let shared = Arc::clone(&text);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                {
                    let mut text = shared.lock().unwrap_or_else(|p| p.into_inner());
                    text.push_str(&line);
                    text.push('\n');
                }
                // Only startup reads the channel. A send fails once the
                // Webwarden value is dropped, and the buffer still gets
                // every line until then.
                let _ = sender.send(line);
            }
        });
        StderrLog { text, lines }
    }

    fn text(&self) -> String {
        self.text.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// Options for one `webwarden run`.
pub struct ProxyOptions<'a> {
    /// The list file's content (CSV form).
    pub list: &'a str,
    /// `all` or `blocked-only`.
    pub inspection: &'a str,
    /// A PEM bundle that webwarden trusts for upstream TLS (`SSL_CERT_FILE`).
    pub trusted_roots: Option<&'a Path>,
}

/// A running `webwarden run` on a free loopback port, with its own data
/// directory, list and events file.
pub struct Webwarden {
    process: ChildGuard,
    log: StderrLog,
    /// The proxy's port on 127.0.0.1.
    pub port: u16,
    /// Holds the data directory, the list and the events file.
    pub dir: TempDir,
}

impl Webwarden {
    /// Starts webwarden and waits until it prints its listening address.
    pub fn start(options: &ProxyOptions<'_>) -> Webwarden {
        let dir = tempfile::tempdir().expect("temporary directory");
        let events = dir.path().join("events.jsonl");
        let args = ["--events-file".into(), events.into_os_string()];
        Webwarden::start_in(dir, options, &args)
    }

    /// Starts webwarden with its list and data directory in `dir`, which
    /// may hold the data of an earlier run, and with `extra_args` after the
    /// usual ones.
    pub fn start_in(
        dir: TempDir,
        options: &ProxyOptions<'_>,
        extra_args: &[std::ffi::OsString],
    ) -> Webwarden {
        Webwarden::start_with_env(dir, options, extra_args, &[])
    }

    /// Starts webwarden as [`Webwarden::start_in`] does, with the
    /// environment variables in `env` set last, so they replace the ones
    /// that keep it away from the user's configuration.
    pub fn start_with_env(
        dir: TempDir,
        options: &ProxyOptions<'_>,
        extra_args: &[std::ffi::OsString],
        env: &[(&str, std::ffi::OsString)],
    ) -> Webwarden {
        let mut command = Command::new(env!("CARGO_BIN_EXE_webwarden"));
        command
            .arg("run")
            .arg("--listen")
            .arg("127.0.0.1:0")
            .arg("--data-dir")
            .arg(dir.path().join("data"));
        // An empty list means the lists come from `extra_args`.
        if !options.list.is_empty() {
            let list = dir.path().join("list.csv");
            std::fs::write(&list, options.list).expect("write list");
            command.arg("--list").arg(&list);
        }
        command
            .arg("--inspection")
            .arg(options.inspection)
            .args(extra_args);
        isolate_environment(&mut command, dir.path());
        command.env("RUST_LOG", "info");
        if let Some(roots) = options.trusted_roots {
            command.env("SSL_CERT_FILE", roots);
            command.env_remove("SSL_CERT_DIR");
        }
        for (name, value) in env {
            command.env(name, value);
        }

        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("webwarden starts");

        // The guard comes first, so a failed startup still kills the child.
        let stderr = child.stderr.take().expect("piped stderr");
        let process = ChildGuard::new(child);
        let log = StderrLog::start(stderr);
        let port = wait_for_listen_port(&log, STARTUP_TIMEOUT);
        Webwarden {
            process,
            log,
            port,
            dir,
        }
    }

    /// Kills webwarden with SIGKILL, as a crash would, and returns its
    /// directory for a restart.
    pub fn kill_hard(mut self) -> TempDir {
        let status = Command::new("kill")
            .arg("-KILL")
            .arg(self.process.pid().to_string())
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill -KILL failed: {status}");
        let exit = self.process.wait_timeout(Duration::from_secs(10));
        assert!(exit.is_some(), "webwarden survived SIGKILL");
        self.dir
    }

    /// Returns the proxy URL for clients.
    pub fn proxy_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Returns the proxy's listen address.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// Returns the path of the generated root CA certificate (`DATA_DIR/ca.pem`).
    pub fn ca_path(&self) -> PathBuf {
        self.dir.path().join("data").join("ca.pem")
    }

    /// Reads the generated root CA certificate in PEM form.
    pub fn ca_pem(&self) -> String {
        std::fs::read_to_string(self.ca_path()).expect("read ca.pem")
    }

    /// Returns the path of the list file, as events name it in `ruleSource`.
    pub fn list_path(&self) -> PathBuf {
        self.dir.path().join("list.csv")
    }

    /// Returns the process id of webwarden.
    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    /// Returns everything webwarden wrote to stderr so far.
    pub fn log(&self) -> String {
        self.log.text()
    }

    /// Sends SIGTERM and waits up to `timeout` for webwarden to exit.
    pub fn terminate(&mut self, timeout: Duration) -> Option<ExitStatus> {
        self.signal("TERM", timeout)
    }

    /// Sends the signal `name` (such as `HUP`) and waits up to `timeout`
    /// for the process to exit.
    pub fn signal(&mut self, name: &str, timeout: Duration) -> Option<ExitStatus> {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.process.pid().to_string())
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill -{name} failed: {status}");
        self.process.wait_timeout(timeout)
    }

    /// Reads every event line written so far.
    pub fn events(&self) -> Vec<Value> {
        let path = self.dir.path().join("events.jsonl");
        let text = std::fs::read_to_string(path).unwrap_or_default();
        text.lines()
            .filter(|line| !line.is_empty())
            .map(|line| serde_json::from_str(line).expect("each event line is JSON"))
            .collect()
    }

    /// Waits for the first event that `matches` accepts. Events are written
    /// in batches, so this polls the file for up to [`EVENT_TIMEOUT`].
    pub async fn wait_for_event(&self, label: &str, matches: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + EVENT_TIMEOUT;
        loop {
            if let Some(event) = self.events().into_iter().find(|e| matches(e)) {
                return event;
            }
            if Instant::now() >= deadline {
                panic!(
                    "no event for {label} within {EVENT_TIMEOUT:?}; events:\n{:#?}\nlog:\n{}",
                    self.events(),
                    self.log()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits for the event whose `url` is `url`.
    pub async fn wait_for_url(&self, url: &str) -> Value {
        self.wait_for_event(url, |event| event["url"] == url).await
    }

    /// Reads the peak resident memory of the webwarden process, in KiB (`VmHWM`).
    pub fn peak_rss_kib(&self) -> u64 {
        proc_status_kib(self.pid(), "VmHWM")
    }

    /// Reads the current resident memory of the webwarden process, in KiB (`VmRSS`).
    pub fn rss_kib(&self) -> u64 {
        proc_status_kib(self.pid(), "VmRSS")
    }

    /// Checks that webwarden is still running.
    pub fn assert_running(&mut self) {
        if let Some(status) = self.process.wait_timeout(Duration::ZERO) {
            panic!("webwarden exited with {status}; log:\n{}", self.log());
        }
    }
}

/// Keeps a child away from the user's configuration, proxy settings and
/// desktop session: its session bus address names a socket that does not
/// exist, so it reaches neither the user's keychain nor their settings.
pub fn isolate_environment(command: &mut Command, dir: &Path) {
    for name in PROXY_ENV {
        command.env_remove(name);
    }
    command.env("XDG_CONFIG_HOME", dir.join("config"));
    command.env("XDG_DATA_HOME", dir.join("share"));
    // An installed package's policy file would override the test's settings.
    command.env("WEBWARDEN_POLICY_FILE", dir.join("no-policy.toml"));
    let no_bus = dir.join("no-session-bus");
    command.env(
        "DBUS_SESSION_BUS_ADDRESS",
        format!("unix:path={}", no_bus.display()),
    );
}

fn wait_for_listen_port(log: &StderrLog, timeout: Duration) -> u16 {
    const MARKER: &str = "proxy listening on 127.0.0.1:";
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match log.lines.recv_timeout(left) {
            Ok(line) => {
                if let Some(rest) = line.split(MARKER).nth(1) {
                    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
                    return digits
                        .parse()
                        .unwrap_or_else(|_| panic!("no port in listening line {line:?}"));
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout) => panic!(
                "webwarden printed no listening line within {timeout:?}; log:\n{}",
                log.text()
            ),
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                panic!("webwarden exited during startup; log:\n{}", log.text())
            }
        }
    }
}

fn proc_status_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read status");
    let line = status
        .lines()
        .find(|line| line.starts_with(&format!("{field}:")))
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"));
    line.split_whitespace()
        .nth(1)
        .and_then(|kib| kib.parse().ok())
        .unwrap_or_else(|| panic!("unparsable line {line:?}"))
}

/// Returns the SHA-256 fingerprint, in lower-case hex, of the PEM
/// certificate at `path`, as openssl computes it.
pub fn sha256_fingerprint(path: &Path) -> String {
    let output = Command::new("openssl")
        .args(["x509", "-noout", "-fingerprint", "-sha256", "-in"])
        .arg(path)
        .output()
        .expect("run openssl");
    let text = String::from_utf8_lossy(&output.stdout);
    text.split('=')
        .nth(1)
        .unwrap_or_else(|| panic!("no fingerprint for {}: {text}", path.display()))
        .trim()
        .replace(':', "")
        .to_ascii_lowercase()
}

/// Returns a loopback port that nothing listens on: bound and released at
/// once, so it stays closed unless another process happens to take it.
pub fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().expect("local address").port()
}

// ---------------------------------------------------------------------------
// Test PKI: a CA that webwarden trusts upstream, and the origin's leaf
// ---------------------------------------------------------------------------

/// A test root CA and a leaf for `127.0.0.1`, `::1` and `localhost` that the
/// origins serve. Webwarden trusts the CA through `SSL_CERT_FILE`; clients
/// trust it only where a test checks that TLS was not intercepted.
pub struct TestPki {
    /// The CA certificate in PEM form.
    pub ca_pem: String,
    /// The origin's leaf certificate.
    pub leaf: CertificateDer<'static>,
    leaf_key: PrivatePkcs8KeyDer<'static>,
    /// A file with the CA certificate, for `SSL_CERT_FILE` and `--cacert`.
    pub ca_path: PathBuf,
}

impl TestPki {
    /// Creates the CA and leaf and writes the CA to `dir/origin-ca.pem`.
    pub fn new(dir: &Path) -> TestPki {
        let ca_key = KeyPair::generate().expect("CA key");
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "webwarden test origin CA");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca_cert = ca_params.self_signed(&ca_key).expect("self-signed CA");
        let issuer = Issuer::new(ca_params, ca_key);

        let leaf_key = KeyPair::generate().expect("leaf key");
        let names = ["127.0.0.1", "::1", "localhost"]
            .map(str::to_owned)
            .to_vec();
        let mut leaf_params = CertificateParams::new(names).expect("leaf params");
        leaf_params
            .distinguished_name
            .push(DnType::CommonName, "webwarden test origin");
        let leaf = leaf_params
            .signed_by(&leaf_key, &issuer)
            .expect("signed leaf");

        let ca_path = dir.join("origin-ca.pem");
        std::fs::write(&ca_path, ca_cert.pem()).expect("write origin CA");
        TestPki {
            ca_pem: ca_cert.pem(),
            leaf: leaf.der().clone(),
            leaf_key: PrivatePkcs8KeyDer::from(leaf_key.serialize_der()),
            ca_path,
        }
    }

    /// Builds a server config with the origin leaf and the given ALPN protocols.
    pub fn server_config(&self, alpn: &[&[u8]]) -> Arc<ServerConfig> {
        let key = PrivateKeyDer::from(self.leaf_key.clone_key());
        let mut config = ServerConfig::builder_with_provider(crypto_provider())
            .with_safe_default_protocol_versions()
            .expect("TLS versions")
            .with_no_client_auth()
            .with_single_cert(vec![self.leaf.clone()], key)
            .expect("server certificate");
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Arc::new(config)
    }
}

/// Builds a TLS client config that trusts only the CA in `ca_pem`.
pub fn client_tls_config(ca_pem: &str, alpn: &[&[u8]]) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    let der = CertificateDer::from_pem_slice(ca_pem.as_bytes()).expect("PEM certificate");
    roots.add(der).expect("add root");
    let mut config = ClientConfig::builder_with_provider(crypto_provider())
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(config)
}

// ---------------------------------------------------------------------------
// Origins
// ---------------------------------------------------------------------------

/// What an origin received for one request.
#[derive(Debug, Clone)]
pub struct ReceivedRequest {
    /// The request method.
    pub method: Method,
    /// Path and query.
    pub path: String,
    /// The HTTP version between webwarden and the origin.
    pub version: Version,
    /// The request headers.
    pub headers: HeaderMap,
    /// The whole request body.
    pub body: Bytes,
}

/// The HTML page an origin serves at [`PAGE_PATH`].
pub const PAGE_HTML: &str = "<!DOCTYPE html><html><head><title>Allowed origin</title></head>\
    <body><p id=\"content\">Origin content reached through webwarden</p></body></html>";

/// The path of the HTML page.
pub const PAGE_PATH: &str = "/page";

/// The path prefix of generated downloads: `/download/N` sends N bytes.
pub const DOWNLOAD_PATH: &str = "/download/";

/// Response headers the origin adds to every echo response.
pub const ORIGIN_HEADERS: [(&str, &str); 4] = [
    ("x-origin-reply", "reply; q=\"quoted, with comma\""),
    ("set-cookie", "first=1; Path=/; HttpOnly"),
    ("set-cookie", "second=2; Path=/"),
    ("cache-control", "private, max-age=60"),
];

/// An HTTP/1.1 and HTTP/2 origin on 127.0.0.1, plain or TLS. It records
/// every request and responds with:
/// - [`PAGE_PATH`]: an HTML page;
/// - [`DOWNLOAD_PATH`]`N`: N generated bytes, streamed (see [`pattern_matches`]);
/// - anything else: status 200 with [`ORIGIN_HEADERS`] and the request body
///   reversed.
pub struct Origin {
    /// The listen address.
    pub addr: SocketAddr,
    requests: Arc<Mutex<Vec<ReceivedRequest>>>,
}

impl Origin {
    /// Starts the origin on the current tokio runtime; it stops with it.
    pub async fn start(tls: Option<Arc<ServerConfig>>) -> Origin {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind origin");
        let addr = listener.local_addr().expect("origin address");
        let requests = Arc::new(Mutex::new(Vec::new()));
        let recorded = Arc::clone(&requests);
        let acceptor = tls.map(TlsAcceptor::from);
        tokio::spawn(async move {
            loop {
                let stream = match listener.accept().await {
                    Ok((stream, _)) => stream,
                    Err(err) => {
                        eprintln!("test origin on {addr} stopped: accept failed: {err}");
                        return;
                    }
                };
                let recorded = Arc::clone(&recorded);
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    match acceptor {
                        Some(acceptor) => {
                            // A failed handshake is expected when a test's
                            // client rejects the certificate.
                            if let Ok(stream) = acceptor.accept(stream).await {
                                serve_http(stream, recorded).await;
                            }
                        }
                        None => serve_http(stream, recorded).await,
                    }
                });
            }
        });
        Origin { addr, requests }
    }

    /// Returns every request received so far.
    pub fn requests(&self) -> Vec<ReceivedRequest> {
        self.requests
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Returns the request received for `path` (path and query).
    pub fn request_for(&self, path: &str) -> ReceivedRequest {
        self.requests()
            .into_iter()
            .find(|r| r.path == path)
            .unwrap_or_else(|| panic!("the origin received no request for {path}"))
    }

    /// Returns the origin's port.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }
}

type OriginBody = BoxBody<Bytes, Infallible>;

async fn serve_http<S>(stream: S, recorded: Arc<Mutex<Vec<ReceivedRequest>>>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
        let recorded = Arc::clone(&recorded);
        async move { Ok::<_, Infallible>(origin_response(req, recorded).await) }
    });
    // Connection errors (a client that goes away) end only this connection.
    let _ = auto::Builder::new(TokioExecutor::new())
        .serve_connection_with_upgrades(TokioIo::new(stream), service)
        .await;
}

async fn origin_response(
    req: Request<Incoming>,
    recorded: Arc<Mutex<Vec<ReceivedRequest>>>,
) -> Response<OriginBody> {
    let (parts, body) = req.into_parts();
    let body = match body.collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(err) => {
            let mut response = Response::new(full(format!("body read failed: {err}")));
            *response.status_mut() = StatusCode::BAD_REQUEST;
            return response;
        }
    };
    let path = parts
        .uri
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_owned();
    recorded
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .push(ReceivedRequest {
            method: parts.method.clone(),
            path: path.clone(),
            version: parts.version,
            headers: parts.headers.clone(),
            body: body.clone(),
        });

    if path == PAGE_PATH {
        let mut response = Response::new(full(PAGE_HTML));
        response.headers_mut().insert(
            CONTENT_TYPE,
            HeaderValue::from_static("text/html; charset=utf-8"),
        );
        return response;
    }
    if let Some(size) = path.strip_prefix(DOWNLOAD_PATH) {
        let Ok(size) = size.parse::<u64>() else {
            let mut response = Response::new(full("invalid download size"));
            *response.status_mut() = StatusCode::BAD_REQUEST;
            return response;
        };
        let mut response = Response::new(PatternBody::new(size).boxed());
        let headers = response.headers_mut();
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/octet-stream"),
        );
        headers.insert(CONTENT_LENGTH, HeaderValue::from(size));
        return response;
    }

    let reversed: Vec<u8> = body.iter().rev().copied().collect();
    let mut response = Response::new(full(reversed));
    let headers = response.headers_mut();
    for (name, value) in ORIGIN_HEADERS {
        headers.append(name, HeaderValue::from_static(value));
    }
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    response
}

fn full(data: impl Into<Bytes>) -> OriginBody {
    Full::new(data.into()).boxed()
}

/// Length of the repeating download pattern: a prime, so the pattern does
/// not line up with chunk or frame sizes.
const PATTERN_PERIOD: usize = 251;

/// Bytes per generated chunk: a multiple of the period, so every full
/// chunk is the same bytes and can be shared without copying.
const PATTERN_CHUNK: usize = PATTERN_PERIOD * 256;

/// Returns the pattern from offset 0, long enough for any slice a check needs.
fn pattern_buffer() -> &'static Bytes {
    static BUFFER: OnceLock<Bytes> = OnceLock::new();
    BUFFER.get_or_init(|| {
        (0..PATTERN_CHUNK + PATTERN_PERIOD)
            .map(|i| (i % PATTERN_PERIOD) as u8)
            .collect::<Vec<u8>>()
            .into()
    })
}

/// Checks that `chunk` is the download pattern starting at byte `offset`.
pub fn pattern_matches(offset: u64, chunk: &[u8]) -> bool {
    let buffer = pattern_buffer();
    let mut start = (offset % PATTERN_PERIOD as u64) as usize;
    for piece in chunk.chunks(PATTERN_CHUNK) {
        if piece != &buffer[start..start + piece.len()] {
            return false;
        }
        start = (start + piece.len()) % PATTERN_PERIOD;
    }
    true
}

/// A response body of generated bytes, produced chunk by chunk as the
/// reader polls, so the origin never keeps the whole download in memory.
struct PatternBody {
    sent: u64,
    total: u64,
}

impl PatternBody {
    fn new(total: u64) -> PatternBody {
        PatternBody { sent: 0, total }
    }
}

impl Body for PatternBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let left = self.total - self.sent;
        if left == 0 {
            return Poll::Ready(None);
        }
        let len = left.min(PATTERN_CHUNK as u64) as usize;
        // Every chunk starts at a multiple of the period.
        let chunk = pattern_buffer().slice(..len);
        self.sent += len as u64;
        Poll::Ready(Some(Ok(Frame::data(chunk))))
    }

    fn is_end_stream(&self) -> bool {
        self.sent == self.total
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.total - self.sent)
    }
}

/// A WebSocket origin on 127.0.0.1, plain or TLS, that echoes every text
/// and binary message.
pub struct WebSocketOrigin {
    /// The listen address.
    pub addr: SocketAddr,
}

impl WebSocketOrigin {
    /// Starts the origin on the current tokio runtime; it stops with it.
    pub async fn start(tls: Option<Arc<ServerConfig>>) -> WebSocketOrigin {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind WebSocket origin");
        let addr = listener.local_addr().expect("WebSocket origin address");
        let acceptor = tls.map(TlsAcceptor::from);
        tokio::spawn(async move {
            loop {
                let stream = match listener.accept().await {
                    Ok((stream, _)) => stream,
                    Err(err) => {
                        eprintln!("test origin on {addr} stopped: accept failed: {err}");
                        return;
                    }
                };
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    match acceptor {
                        Some(acceptor) => {
                            if let Ok(stream) = acceptor.accept(stream).await {
                                echo_websocket(stream).await;
                            }
                        }
                        None => echo_websocket(stream).await,
                    }
                });
            }
        });
        WebSocketOrigin { addr }
    }
}

async fn echo_websocket<S>(stream: S)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let Ok(mut socket) = tokio_tungstenite::accept_async(stream).await else {
        return;
    };
    while let Some(Ok(message)) = socket.next().await {
        if message.is_close() {
            return;
        }
        let echoed = message.is_text() || message.is_binary();
        if echoed && socket.send(message).await.is_err() {
            return;
        }
    }
}

// ---------------------------------------------------------------------------
// Clients
// ---------------------------------------------------------------------------

/// What one curl run returned.
#[derive(Debug)]
pub struct CurlResult {
    /// curl's exit code.
    pub exit_code: Option<i32>,
    /// The final response's status (`%{http_code}`), 0 when there was none.
    pub status: u16,
    /// The HTTP version of the final response (`%{http_version}`).
    pub version: String,
    /// The status of the proxy's response to CONNECT (`%{http_connect}`).
    pub connect_status: u16,
    /// The final response's headers, names in lower case.
    pub headers: Vec<(String, String)>,
    /// The response body.
    pub body: Vec<u8>,
    /// curl's stderr.
    pub stderr: String,
}

impl CurlResult {
    /// Returns the first value of header `name` (lower case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Returns every value of header `name` (lower case), in order.
    pub fn header_values(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// Returns the body as text, with invalid UTF-8 replaced.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Runs curl through the proxy at `proxy` with `args` before the URL, for
/// at most [`CURL_TIMEOUT`]. curl ignores `.curlrc` and proxy variables.
pub async fn curl(proxy: &str, args: &[&str], url: &str) -> CurlResult {
    let dir = tempfile::tempdir().expect("temporary directory");
    let headers_path = dir.path().join("headers");
    let body_path = dir.path().join("body");

    // `-q` must come first: it makes curl skip the user's `.curlrc`.
    let mut command = tokio::process::Command::new("curl");
    command
        .arg("-q")
        .arg("--silent")
        .arg("--show-error")
        .arg("--max-time")
        .arg(CURL_TIMEOUT.as_secs().to_string())
        .arg("--proxy")
        .arg(proxy)
        .arg("--dump-header")
        .arg(&headers_path)
        .arg("--output")
        .arg(&body_path)
        .arg("--write-out")
        .arg("%{http_code} %{http_version} %{http_connect}")
        .args(args)
        .arg(url)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    for name in PROXY_ENV {
        command.env_remove(name);
    }
    let child = command
        .spawn()
        .expect("failed to start curl; install the curl package");
    let limit = CURL_TIMEOUT + Duration::from_secs(5);
    let output = tokio::time::timeout(limit, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("curl {url} timed out after {limit:?}"))
        .expect("curl output");

    let write_out = String::from_utf8_lossy(&output.stdout).into_owned();
    let mut fields = write_out.split_whitespace();
    let status = fields.next().and_then(|s| s.parse().ok()).unwrap_or(0);
    let version = fields.next().unwrap_or_default().to_owned();
    let connect_status = fields.next().and_then(|s| s.parse().ok()).unwrap_or(0);
    let headers_text = std::fs::read_to_string(&headers_path).unwrap_or_default();
    CurlResult {
        exit_code: output.status.code(),
        status,
        version,
        connect_status,
        headers: last_header_block(&headers_text),
        body: std::fs::read(&body_path).unwrap_or_default(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// Parses the last header block of a `--dump-header` file, which also holds
/// the proxy's response to CONNECT and any 100 Continue.
fn last_header_block(text: &str) -> Vec<(String, String)> {
    let block = text
        .split("\r\n\r\n")
        .filter(|block| !block.trim().is_empty())
        .last()
        .unwrap_or_default();
    block
        .lines()
        .skip(1)
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_ascii_lowercase(), value.trim().to_owned()))
        .collect()
}

/// Which HTTP versions a reqwest client may use with the proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpVersions {
    /// HTTP/1.1 only.
    Http1Only,
    /// HTTP/2 where TLS offers it (ALPN), else HTTP/1.1.
    Negotiated,
}

/// Builds a reqwest client that sends everything through the proxy and
/// trusts only the CA in `ca_pem`.
pub fn reqwest_client(proxy: &str, ca_pem: &str, versions: HttpVersions) -> reqwest::Client {
    let ca = reqwest::Certificate::from_pem(ca_pem.as_bytes()).expect("CA certificate");
    let mut builder = reqwest::Client::builder()
        .no_proxy()
        .proxy(reqwest::Proxy::all(proxy).expect("proxy URL"))
        .tls_certs_only([ca])
        .timeout(Duration::from_secs(30));
    if versions == HttpVersions::Http1Only {
        builder = builder.http1_only();
    }
    builder.build().expect("reqwest client")
}

/// Sends `request` on a new connection to the proxy and returns what came
/// back within [`RAW_READ_TIMEOUT`]: the response head, or less when the
/// proxy closed the connection.
pub async fn raw_exchange(proxy: SocketAddr, request: &[u8]) -> Vec<u8> {
    let mut stream = TcpStream::connect(proxy).await.expect("connect to proxy");
    stream.write_all(request).await.expect("send raw request");
    read_head(&mut stream).await
}

/// Reads until the end of a response head, EOF or [`RAW_READ_TIMEOUT`].
pub async fn read_head<S: AsyncRead + Unpin>(stream: &mut S) -> Vec<u8> {
    let deadline = tokio::time::Instant::now() + RAW_READ_TIMEOUT;
    let mut received = Vec::new();
    let mut buffer = [0u8; 4096];
    while !received.windows(4).any(|w| w == b"\r\n\r\n") && received.len() < 65536 {
        match tokio::time::timeout_at(deadline, stream.read(&mut buffer)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => received.extend_from_slice(&buffer[..n]),
            Err(_) => panic!(
                "no complete response within {RAW_READ_TIMEOUT:?}; received {:?}",
                String::from_utf8_lossy(&received)
            ),
        }
    }
    received
}

/// Opens a CONNECT tunnel through the proxy to `authority` and returns the
/// stream once the proxy responded with 200.
pub async fn connect_tunnel(proxy: SocketAddr, authority: &str) -> TcpStream {
    let mut stream = TcpStream::connect(proxy).await.expect("connect to proxy");
    let request = format!("CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n\r\n");
    stream
        .write_all(request.as_bytes())
        .await
        .expect("send CONNECT");
    let head = read_head(&mut stream).await;
    let head = String::from_utf8_lossy(&head);
    assert!(
        head.starts_with("HTTP/1.1 200"),
        "CONNECT {authority} failed: the proxy responded {head:?}"
    );
    stream
}

/// Starts TLS on `stream` to 127.0.0.1, trusting only the CA in `ca_pem`.
pub async fn tls_to_loopback(
    stream: TcpStream,
    ca_pem: &str,
    alpn: &[&[u8]],
) -> tokio_rustls::client::TlsStream<TcpStream> {
    let connector = TlsConnector::from(client_tls_config(ca_pem, alpn));
    let name = rustls::pki_types::ServerName::IpAddress(std::net::Ipv4Addr::LOCALHOST.into());
    connector
        .connect(name, stream)
        .await
        .expect("TLS handshake through the tunnel")
}
