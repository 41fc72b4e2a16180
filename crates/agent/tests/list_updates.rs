//! End-to-end tests of list updates: `webwarden run` downloads its list
//! from a local HTTPS server (test CA), takes changes within an interval,
//! handles conditional requests (304), rejects every kind of
//! bad copy while keeping the last good one, filters from its cache after
//! a restart with the server down, and swaps lists under load without a
//! failed request. Every server listens on 127.0.0.1.

mod support;

use std::convert::Infallible;
use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{CONTENT_LENGTH, ETAG, IF_NONE_MATCH};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use support::{curl, ProxyOptions, TestPki, Webwarden};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

/// The bound on a list change taking effect.
const CHANGE_TIMEOUT: Duration = Duration::from_secs(20);

/// How the list server responds to the next requests.
#[derive(Debug, Clone, PartialEq)]
enum Mode {
    /// Serves the list, with 304 for a matching `If-None-Match`.
    Normal,
    /// Closes each connection at once, as a server that is down.
    Down,
    /// Waits this long before responding.
    Slow(Duration),
    /// Announces more bytes than it sends, then closes.
    Truncated,
}

struct ServerState {
    list: Vec<u8>,
    signature: Option<Vec<u8>>,
    mode: Mode,
    /// (path, If-None-Match) of each request.
    requests: Vec<(String, Option<String>)>,
    not_modified: usize,
}

/// An HTTPS server on 127.0.0.1 that serves `/list.csv` and
/// `/list.csv.minisig`, with an ETag that is the content's length and hash.
struct ListServer {
    addr: SocketAddr,
    state: Arc<Mutex<ServerState>>,
}

fn etag_of(bytes: &[u8]) -> String {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    bytes.hash(&mut hasher);
    format!("\"{}-{:x}\"", bytes.len(), hasher.finish())
}

impl ListServer {
    async fn start(pki: &TestPki, list: &str) -> ListServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let acceptor = TlsAcceptor::from(pki.server_config(&[b"http/1.1"]));
        let state = Arc::new(Mutex::new(ServerState {
            list: list.as_bytes().to_vec(),
            signature: None,
            mode: Mode::Normal,
            requests: Vec::new(),
            not_modified: 0,
        }));
        let shared = Arc::clone(&state);
        tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                let acceptor = acceptor.clone();
                let state = Arc::clone(&shared);
                tokio::spawn(async move {
                    let mode = state.lock().unwrap().mode.clone();
                    if mode == Mode::Down {
                        drop(tcp);
                        return;
                    }
                    let Ok(mut tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    if mode == Mode::Truncated {
                        let body = state.lock().unwrap().list.clone();
                        let head = format!(
                            "HTTP/1.1 200 OK\r\ncontent-length: {}\r\netag: \"cut\"\r\n\r\n",
                            body.len() * 2
                        );
                        let _ = tls.write_all(head.as_bytes()).await;
                        let _ = tls.write_all(&body).await;
                        let _ = tls.shutdown().await;
                        return;
                    }
                    let service = hyper::service::service_fn(move |request| {
                        let state = Arc::clone(&state);
                        async move { Ok::<_, Infallible>(answer(&state, request).await) }
                    });
                    // One request per connection, so a switch to `Down`
                    // also ends the client's pooled connection.
                    let _ = hyper::server::conn::http1::Builder::new()
                        .keep_alive(false)
                        .serve_connection(TokioIo::new(tls), service)
                        .await;
                });
            }
        });
        ListServer { addr, state }
    }

    fn url(&self) -> String {
        format!("https://127.0.0.1:{}/list.csv", self.addr.port())
    }

    fn set_list(&self, list: &[u8], signature: Option<Vec<u8>>) {
        let mut state = self.state.lock().unwrap();
        state.list = list.to_vec();
        state.signature = signature;
    }

    fn set_mode(&self, mode: Mode) {
        self.state.lock().unwrap().mode = mode;
    }

    fn not_modified(&self) -> usize {
        self.state.lock().unwrap().not_modified
    }

    fn list_requests(&self) -> usize {
        let state = self.state.lock().unwrap();
        state
            .requests
            .iter()
            .filter(|(path, _)| path == "/list.csv")
            .count()
    }
}

async fn answer(state: &Mutex<ServerState>, request: Request<Incoming>) -> Response<Full<Bytes>> {
    let path = request.uri().path().to_owned();
    let tag = request
        .headers()
        .get(IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let (mode, body, signature) = {
        let mut state = state.lock().unwrap();
        state.requests.push((path.clone(), tag.clone()));
        (
            state.mode.clone(),
            state.list.clone(),
            state.signature.clone(),
        )
    };
    if let Mode::Slow(delay) = mode {
        tokio::time::sleep(delay).await;
    }
    let etag = etag_of(&body);
    let (status, payload) = match path.as_str() {
        "/list.csv" if tag.as_deref() == Some(etag.as_str()) => {
            state.lock().unwrap().not_modified += 1;
            (StatusCode::NOT_MODIFIED, Vec::new())
        }
        "/list.csv" => (StatusCode::OK, body),
        "/list.csv.minisig" => match signature {
            Some(signature) => (StatusCode::OK, signature),
            None => (StatusCode::NOT_FOUND, Vec::new()),
        },
        _ => (StatusCode::NOT_FOUND, Vec::new()),
    };
    let length = payload.len();
    let mut response = Response::new(Full::new(Bytes::from(payload)));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(ETAG, etag.parse().expect("valid ETag"));
    response.headers_mut().insert(CONTENT_LENGTH, length.into());
    response
}

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

/// Returns a CSV list that blocks `host` and `padding` other hosts, so
/// shrink checks have rules to count.
fn list_blocking(host: &str, padding: usize) -> String {
    let mut text = format!("{},Malware\n", host.replace('.', "\\."));
    for n in 0..padding {
        text.push_str(&format!("pad{n}\\.example,Malware\n"));
    }
    text
}

fn os(values: &[&dyn AsRef<std::ffi::OsStr>]) -> Vec<OsString> {
    values.iter().map(|v| v.as_ref().to_owned()).collect()
}

/// Writes a configuration that trusts the test CA for list downloads and
/// checks every second, with `extra` appended to `[updates]`.
fn config(dir: &Path, pki: &TestPki, extra: &str) -> Vec<OsString> {
    let path = dir.join("config.toml");
    let text = format!(
        "[updates]\nrefresh_seconds = 1\ntimeout_seconds = 3\nca_file = {:?}\n{extra}",
        pki.ca_path
    );
    std::fs::write(&path, text).unwrap();
    os(&[&"--config", &path])
}

fn options() -> ProxyOptions<'static> {
    ProxyOptions {
        list: "",
        inspection: "all",
        trusted_roots: None,
    }
}

/// Returns the proxy's status for a plain HTTP request to `host`.
async fn status_for(webwarden: &Webwarden, host: &str) -> u16 {
    curl(
        &webwarden.proxy_url(),
        &["--max-time", "5"],
        &format!("http://{host}/"),
    )
    .await
    .status
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Reads the status file of the running agent.
fn status_file(webwarden: &Webwarden) -> serde_json::Value {
    let text = std::fs::read_to_string(webwarden.dir.path().join("data/status.json"))
        .unwrap_or_else(|_| "{}".to_owned());
    serde_json::from_str(&text).unwrap_or_default()
}

/// Waits until the status file shows the first list at `sha256`.
async fn wait_for_status_sha(webwarden: &Webwarden, sha256: &str) {
    let deadline = Instant::now() + CHANGE_TIMEOUT;
    while status_file(webwarden)["lists"][0]["sha256"] != sha256 {
        assert!(
            Instant::now() < deadline,
            "status never showed {sha256}: {}",
            status_file(webwarden)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until the log contains `text` `count` times.
async fn wait_for_log(webwarden: &Webwarden, text: &str, count: usize) {
    let deadline = Instant::now() + CHANGE_TIMEOUT;
    while webwarden.log().matches(text).count() < count {
        assert!(
            Instant::now() < deadline,
            "the log has no {count} x {text:?}; log:\n{}",
            webwarden.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn start(list_url: &str, home: tempfile::TempDir, args: &[OsString]) -> Webwarden {
    let mut all = os(&[&"--list", &list_url]);
    all.extend_from_slice(args);
    Webwarden::start_in(home, &options(), &all)
}

// ---------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn downloaded_list_updates_and_bad_copies_are_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let pki = TestPki::new(dir.path());
    let server = ListServer::start(&pki, &list_blocking("first.example", 9)).await;
    // Only blocked hosts are requested: the proxy answers those itself, so
    // no request or name lookup leaves the machine. Other changes are
    // checked in the status file.
    let home = tempfile::tempdir().unwrap();
    let args = config(home.path(), &pki, "max_bytes = 4096\n");
    let first = list_blocking("first.example", 9);
    let webwarden = start(&server.url(), home, &args);

    // First fetch, before the proxy starts.
    wait_for_status_sha(&webwarden, &sha256_hex(first.as_bytes())).await;
    assert_eq!(status_for(&webwarden, "first.example").await, 403);

    // Unchanged: conditional requests answered 304.
    let deadline = Instant::now() + CHANGE_TIMEOUT;
    while server.not_modified() < 2 {
        assert!(
            Instant::now() < deadline,
            "no 304 after {} requests",
            server.list_requests()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // A changed list is picked up within an interval or two.
    let second = list_blocking("second.example", 9);
    server.set_list(second.as_bytes(), None);
    wait_for_status_sha(&webwarden, &sha256_hex(second.as_bytes())).await;
    assert_eq!(status_for(&webwarden, "second.example").await, 403);

    // Each bad copy is rejected and the good one stays in force.
    type MakeBad<'a> = Box<dyn Fn() + 'a>;
    let cases: Vec<(&str, MakeBad, &str)> = vec![
        ("down", Box::new(|| server.set_mode(Mode::Down)), "GET"),
        (
            "timeout",
            Box::new(|| server.set_mode(Mode::Slow(Duration::from_secs(5)))),
            "timed out",
        ),
        (
            "truncated",
            Box::new(|| server.set_mode(Mode::Truncated)),
            "cut short",
        ),
        (
            "oversize",
            Box::new(|| server.set_list(&vec![b'#'; 8192], None)),
            "over the limit",
        ),
        ("empty", Box::new(|| server.set_list(b"", None)), "no rules"),
        (
            "shrunk",
            Box::new(|| server.set_list(list_blocking("third.example", 0).as_bytes(), None)),
            "shrank",
        ),
    ];
    let mut rejections = 0;
    for (name, make_bad, reason) in cases {
        server.set_mode(Mode::Normal);
        make_bad();
        rejections += 1;
        wait_for_log(&webwarden, "list rejected", rejections).await;
        assert!(
            webwarden.log().contains(reason),
            "{name}: no {reason:?} in log:\n{}",
            webwarden.log()
        );
        assert_eq!(
            status_for(&webwarden, "second.example").await,
            403,
            "{name}"
        );
        server.set_mode(Mode::Normal);
        server.set_list(second.as_bytes(), None);
    }
    let status = status_file(&webwarden);
    assert_eq!(status["lists"][0]["sha256"], sha256_hex(second.as_bytes()));
    assert_eq!(status["lists"][0]["rules"], 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_blocks_from_cache_offline() {
    let dir = tempfile::tempdir().unwrap();
    let pki = TestPki::new(dir.path());
    let list = list_blocking("cached.example", 3);
    let server = ListServer::start(&pki, &list).await;
    let home = tempfile::tempdir().unwrap();
    let args = config(home.path(), &pki, "");
    let mut webwarden = start(&server.url(), home, &args);
    wait_for_status_sha(&webwarden, &sha256_hex(list.as_bytes())).await;
    assert_eq!(status_for(&webwarden, "cached.example").await, 403);
    assert!(webwarden.terminate(Duration::from_secs(10)).is_some());
    let home = std::mem::replace(&mut webwarden.dir, tempfile::tempdir().unwrap());
    drop(webwarden);

    server.set_mode(Mode::Down);
    let webwarden = start(&server.url(), home, &args);
    assert_eq!(status_for(&webwarden, "cached.example").await, 403);
    assert!(
        webwarden.log().contains("using the cached copy"),
        "{}",
        webwarden.log()
    );
    // The failed checks show in the status file, with the list still in use.
    let deadline = Instant::now() + CHANGE_TIMEOUT;
    while status_file(&webwarden)["lists"][0]["lastError"].is_null() {
        assert!(Instant::now() < deadline, "{}", status_file(&webwarden));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(status_file(&webwarden)["lists"][0]["rules"], 4);

    // `webwarden status` reads the same file and flags the failing list.
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_webwarden"))
        .arg("status")
        .arg("--data-dir")
        .arg(webwarden.dir.path().join("data"))
        .env("XDG_CONFIG_HOME", webwarden.dir.path().join("config"))
        .output()
        .expect("webwarden status runs");
    let text = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "{text}");
    assert!(text.contains("webwarden is running"), "{text}");
    assert!(text.contains("ERROR"), "{text}");
    assert!(text.contains("4 rules"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strict_mode_rejects_bad_row() {
    let dir = tempfile::tempdir().unwrap();
    let pki = TestPki::new(dir.path());
    let good = list_blocking("strict.example", 3);
    let server = ListServer::start(&pki, &good).await;
    let home = tempfile::tempdir().unwrap();
    let mut args = config(home.path(), &pki, "");
    args.push("--strict".into());
    let webwarden = start(&server.url(), home, &args);
    wait_for_status_sha(&webwarden, &sha256_hex(good.as_bytes())).await;
    assert_eq!(status_for(&webwarden, "strict.example").await, 403);

    let bad = format!("{good}([unclosed,Malware\n");
    server.set_list(bad.as_bytes(), None);
    wait_for_log(&webwarden, "list rejected", 1).await;
    assert!(
        webwarden.log().contains("strict mode"),
        "{}",
        webwarden.log()
    );
    assert_eq!(
        status_file(&webwarden)["lists"][0]["sha256"],
        sha256_hex(good.as_bytes())
    );
}

/// Runs a `webwarden list` command and returns its stdout.
fn list_command(args: &[&dyn AsRef<std::ffi::OsStr>]) -> String {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_webwarden"))
        .arg("list")
        .args(args)
        .env_remove("WEBWARDEN_LIST_KEY_PASSWORD")
        .output()
        .expect("webwarden runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Makes a key pair in `keys` and returns the public key line.
fn keygen(keys: &Path) -> String {
    list_command(&[&"keygen", &"--output-dir", &keys]);
    let public = std::fs::read_to_string(keys.join("webwarden-list.pub")).unwrap();
    let line = public.lines().rfind(|l| !l.trim().is_empty()).unwrap();
    line.trim().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_lists_need_a_valid_signature() {
    let dir = tempfile::tempdir().unwrap();
    let pki = TestPki::new(dir.path());
    let keys = dir.path().join("keys");
    let public_line = keygen(&keys);
    let sign = |text: &str| -> Vec<u8> {
        let file = dir.path().join("to-sign.csv");
        std::fs::write(&file, text).unwrap();
        list_command(&[&"sign", &"--key", &keys.join("webwarden-list.key"), &file]);
        std::fs::read(dir.path().join("to-sign.csv.minisig")).unwrap()
    };

    let first = list_blocking("signed.example", 3);
    let server = ListServer::start(&pki, &first).await;
    server.set_list(first.as_bytes(), Some(sign(&first)));
    let home = tempfile::tempdir().unwrap();
    let args = config(
        home.path(),
        &pki,
        &format!("public_key = {public_line:?}\n"),
    );
    let webwarden = start(&server.url(), home, &args);
    wait_for_status_sha(&webwarden, &sha256_hex(first.as_bytes())).await;
    assert_eq!(status_for(&webwarden, "signed.example").await, 403);

    // A changed list with the old signature: the content does not match.
    let second = list_blocking("forged.example", 3);
    server.set_list(second.as_bytes(), Some(sign(&first)));
    wait_for_log(&webwarden, "list rejected", 1).await;
    // No signature at all.
    server.set_list(second.as_bytes(), None);
    wait_for_log(&webwarden, "list rejected", 2).await;
    assert!(webwarden.log().contains("signature"), "{}", webwarden.log());
    assert_eq!(
        status_file(&webwarden)["lists"][0]["sha256"],
        sha256_hex(first.as_bytes())
    );

    // Signed properly, it is taken.
    server.set_list(second.as_bytes(), Some(sign(&second)));
    wait_for_status_sha(&webwarden, &sha256_hex(second.as_bytes())).await;
    assert_eq!(status_for(&webwarden, "forged.example").await, 403);
}

// Four workers, so the list server keeps answering while the load runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn list_swaps_under_load_fail_no_request() {
    let dir = tempfile::tempdir().unwrap();
    let pki = TestPki::new(dir.path());
    // Every version blocks both requested hosts, under different
    // categories, so every request gets the block page.
    let version = |n: usize| {
        let mut list = list_blocking(&format!("swap{}.example", n % 2), 20);
        list.push_str(&format!("swap{}\\.example,Gambling\n", (n + 1) % 2));
        list
    };
    let initial = version(0);
    let server = ListServer::start(&pki, &initial).await;
    let home = tempfile::tempdir().unwrap();
    let args = config(home.path(), &pki, "");
    let webwarden = start(&server.url(), home, &args);
    wait_for_status_sha(&webwarden, &sha256_hex(initial.as_bytes())).await;

    // Requests for blocked hosts: the proxy answers every one itself, so a
    // failed request is the proxy's failure.
    let client = reqwest::Client::builder()
        .proxy(reqwest::Proxy::http(webwarden.proxy_url()).unwrap())
        .build()
        .unwrap();
    // The load runs until three swaps took effect, and 60 s at most.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut workers = Vec::new();
    for worker in 0..8 {
        let client = client.clone();
        let stop = Arc::clone(&stop);
        workers.push(tokio::spawn(async move {
            let (mut ok, mut failed) = (0u32, Vec::new());
            for n in 0..100_000 {
                if stop.load(std::sync::atomic::Ordering::Relaxed) || Instant::now() >= deadline {
                    break;
                }
                let url = format!("http://swap{}.example/{worker}/{n}", n % 2);
                match client.get(&url).send().await {
                    Ok(response) if response.status().is_client_error() => ok += 1,
                    Ok(response) => failed.push(format!("{url}: HTTP {}", response.status())),
                    Err(err) => failed.push(format!("{url}: {err}")),
                }
            }
            (ok, failed)
        }));
    }
    // Swap the list every 300 ms while the load runs.
    let mut swaps = 0;
    while Instant::now() < deadline && webwarden.log().matches("list updated").count() < 3 {
        swaps += 1;
        server.set_list(version(swaps).as_bytes(), None);
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut total = 0;
    for worker in workers {
        let (ok, failed) = worker.await.unwrap();
        assert!(
            failed.is_empty(),
            "{} failed, first: {:?}",
            failed.len(),
            &failed[..failed.len().min(5)]
        );
        total += ok;
    }
    let updates = webwarden.log().matches("list updated").count();
    assert!(total > 100, "only {total} requests");
    assert!(
        updates >= 3,
        "only {updates} swaps took effect:\n{}",
        webwarden.log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cached_copy_must_pass_a_newly_set_key() {
    let dir = tempfile::tempdir().unwrap();
    let pki = TestPki::new(dir.path());
    let keys = dir.path().join("keys");
    let public_line = keygen(&keys);

    // Cached while no key was set, so the copy has no signature.
    let list = list_blocking("unsigned.example", 3);
    let server = ListServer::start(&pki, &list).await;
    let home = tempfile::tempdir().unwrap();
    let args = config(home.path(), &pki, "");
    let mut webwarden = start(&server.url(), home, &args);
    wait_for_status_sha(&webwarden, &sha256_hex(list.as_bytes())).await;
    assert!(webwarden.terminate(Duration::from_secs(10)).is_some());
    let home = std::mem::replace(&mut webwarden.dir, tempfile::tempdir().unwrap());
    drop(webwarden);

    // With the key set and the server down, the unsigned cache is not used.
    server.set_mode(Mode::Down);
    let args = config(
        home.path(),
        &pki,
        &format!("public_key = {public_line:?}\n"),
    );
    let webwarden = start(&server.url(), home, &args);
    assert!(
        webwarden.log().contains("ignoring the cached copy"),
        "{}",
        webwarden.log()
    );
    assert_eq!(status_file(&webwarden)["lists"][0]["rules"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreadable_local_list_keeps_its_last_check_time() {
    let dir = tempfile::tempdir().unwrap();
    let pki = TestPki::new(dir.path());
    let home = tempfile::tempdir().unwrap();
    let args = config(home.path(), &pki, "");
    let list = list_blocking("local.example", 2);
    let options = ProxyOptions {
        list: &list,
        inspection: "all",
        trusted_roots: None,
    };
    let webwarden = Webwarden::start_in(home, &options, &args);
    wait_for_status_sha(&webwarden, &sha256_hex(list.as_bytes())).await;
    assert_eq!(status_for(&webwarden, "local.example").await, 403);

    std::fs::remove_file(webwarden.list_path()).unwrap();
    let deadline = Instant::now() + CHANGE_TIMEOUT;
    while status_file(&webwarden)["lists"][0]["lastError"].is_null() {
        assert!(Instant::now() < deadline, "{}", status_file(&webwarden));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let checked = status_file(&webwarden)["lists"][0]["checkedAt"].clone();
    // Several more checks fail; the check time and the block stay.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let status = status_file(&webwarden);
    assert_eq!(status["lists"][0]["checkedAt"], checked, "{status}");
    assert!(status["lists"][0]["lastError"].is_string(), "{status}");
    assert_eq!(status_for(&webwarden, "local.example").await, 403);
}
