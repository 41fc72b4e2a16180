//! Runs `webwarden run` as a child process and sends real traffic through
//! it with curl and reqwest: allowed and blocked HTTP and HTTPS, a large
//! download, WebSockets, unreachable origins, malformed requests and the
//! blocked-only inspection mode.
//!
//! Every origin listens on 127.0.0.1. Allowed requests use the origin's
//! address, because webwarden resolves host names with the system resolver.
//! Blocked requests use names under `blocked.test`, which webwarden never
//! resolves because it never contacts a blocked host.

mod support;

use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::rustls::pki_types::CertificateDer;
use tokio_tungstenite::tungstenite::handshake::client::generate_key;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use support::{
    closed_port, connect_tunnel, curl, raw_exchange, read_head, reqwest_client, tls_to_loopback,
    ChildGuard, CurlResult, HttpVersions, Origin, ProxyOptions, TestPki, WebSocketOrigin,
    Webwarden, DOWNLOAD_PATH, ORIGIN_HEADERS,
};

/// The test list: a comment, then the only rule, on line 2.
const LIST: &str = "# webwarden end-to-end test list\n(.*\\.)?blocked\\.test,Gambling\n";

/// The rule as events report it.
const BLOCK_RULE: &str = "(.*\\.)?blocked\\.test";

/// The request body size of the round-trip tests: larger than one HTTP/2
/// frame and one TLS record.
const UPLOAD_LEN: usize = 100_000;

/// The size of the streamed download.
const DOWNLOAD_LEN: u64 = 100 * 1024 * 1024;

/// The bound on webwarden's peak resident memory after the download.
const MAX_PEAK_RSS_KIB: u64 = 80 * 1024;

/// The bound on one WebSocket step.
const WEBSOCKET_TIMEOUT: Duration = Duration::from_secs(10);

/// Request headers that must reach the origin unchanged: one value with
/// quotes and commas, and one header sent twice.
const REQUEST_HEADERS: [(&str, &str); 4] = [
    ("x-test-token", "token-7f3a"),
    ("x-test-list", "one, two; q=\"three, four\""),
    ("x-repeated", "first"),
    ("x-repeated", "second"),
];

fn upload_body() -> Vec<u8> {
    (0..UPLOAD_LEN).map(|i| (i * 7 % 256) as u8).collect()
}

fn reversed(body: &[u8]) -> Vec<u8> {
    body.iter().rev().copied().collect()
}

fn start_proxy(inspection: &str, pki: Option<&TestPki>) -> Webwarden {
    Webwarden::start(&ProxyOptions {
        list: LIST,
        inspection,
        trusted_roots: pki.map(|pki| pki.ca_path.as_path()),
    })
}

/// curl arguments that POST the upload body with [`REQUEST_HEADERS`].
fn curl_upload_args(body_path: &str) -> Vec<String> {
    let mut args = vec![
        "--data-binary".to_owned(),
        format!("@{body_path}"),
        "-H".to_owned(),
        "Content-Type: application/x-test-upload".to_owned(),
        "-A".to_owned(),
        "webwarden-e2e/1.0".to_owned(),
    ];
    for (name, value) in REQUEST_HEADERS {
        args.push("-H".to_owned());
        args.push(format!("{name}: {value}"));
    }
    args
}

fn reqwest_upload(client: &reqwest::Client, url: &str, body: &[u8]) -> reqwest::RequestBuilder {
    let mut request = client
        .post(url)
        .header("content-type", "application/x-test-upload")
        .header("user-agent", "webwarden-e2e/1.0")
        .body(body.to_vec());
    for (name, value) in REQUEST_HEADERS {
        request = request.header(name, value);
    }
    request
}

/// Checks what the origin received for `path`.
fn assert_origin_received(origin: &Origin, path: &str, body: &[u8], version: hyper::Version) {
    let received = origin.request_for(path);
    assert_eq!(received.method, hyper::Method::POST, "{path}");
    assert_eq!(received.version, version, "{path}: version to the origin");
    assert_eq!(received.body.len(), body.len(), "{path}: body length");
    assert!(received.body == body, "{path}: body changed on the way");
    let header = |name: &str| -> Vec<String> {
        received
            .headers
            .get_all(name)
            .iter()
            .map(|v| v.to_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(header("x-test-token"), ["token-7f3a"], "{path}");
    assert_eq!(
        header("x-test-list"),
        ["one, two; q=\"three, four\""],
        "{path}"
    );
    assert_eq!(header("x-repeated"), ["first", "second"], "{path}");
    assert_eq!(
        header("content-type"),
        ["application/x-test-upload"],
        "{path}"
    );
    assert_eq!(header("user-agent"), ["webwarden-e2e/1.0"], "{path}");
}

fn assert_curl_echo(result: &CurlResult, body: &[u8], label: &str) {
    assert_eq!(result.status, 200, "{label}: {result:?}");
    assert_eq!(
        result.header("x-origin-reply"),
        Some(ORIGIN_HEADERS[0].1),
        "{label}"
    );
    assert_eq!(
        result.header_values("set-cookie"),
        [ORIGIN_HEADERS[1].1, ORIGIN_HEADERS[2].1],
        "{label}"
    );
    assert_eq!(
        result.header("cache-control"),
        Some(ORIGIN_HEADERS[3].1),
        "{label}"
    );
    assert!(
        result.body == reversed(body),
        "{label}: response body changed"
    );
}

async fn assert_reqwest_echo(response: reqwest::Response, body: &[u8], label: &str) {
    assert_eq!(response.status(), 200, "{label}");
    let headers = response.headers();
    assert_eq!(headers["x-origin-reply"], ORIGIN_HEADERS[0].1, "{label}");
    let cookies: Vec<&str> = headers
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap())
        .collect();
    assert_eq!(
        cookies,
        [ORIGIN_HEADERS[1].1, ORIGIN_HEADERS[2].1],
        "{label}"
    );
    assert_eq!(headers["cache-control"], ORIGIN_HEADERS[3].1, "{label}");
    let received = response.bytes().await.expect("response body");
    assert!(received == reversed(body), "{label}: response body changed");
}

/// Checks the event of an allowed upload to the origin on `port`.
fn assert_allowed_event(event: &Value, method: &str, port: u16, bytes: usize) {
    let url = event["url"].as_str().unwrap();
    assert_eq!(event["eventName"], "AllowedHTTPRequest", "{url}");
    assert_eq!(event["eventCategory"], "AllowedHTTPRequest", "{url}");
    assert_eq!(event["method"], method, "{url}");
    assert_eq!(event["status"], 200, "{url}");
    assert_eq!(event["responseStatus"], 200, "{url}");
    assert_eq!(event["bytes"], bytes as u64, "{url}");
    assert_eq!(event["destinationIP"], "127.0.0.1", "{url}");
    assert_eq!(event["destinationHost"], "127.0.0.1", "{url}");
    assert_eq!(event["destinationPort"], port, "{url}");
    assert_eq!(event["sourceIP"], "127.0.0.1", "{url}");
    assert!(event["rule"].is_null(), "{url}");
    assert!(event["error"].is_null(), "{url}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_http_round_trip_is_intact() {
    let origin = Origin::start(None).await;
    let proxy = start_proxy("all", None);
    let work = tempfile::tempdir().unwrap();
    let body = upload_body();
    let body_path = work.path().join("upload.bin");
    std::fs::write(&body_path, &body).unwrap();
    let base = format!("http://127.0.0.1:{}", origin.port());

    let args = curl_upload_args(body_path.to_str().unwrap());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let curl_url = format!("{base}/echo?client=curl");
    let result = curl(&proxy.proxy_url(), &args, &curl_url).await;
    assert_curl_echo(&result, &body, "curl");
    assert_origin_received(&origin, "/echo?client=curl", &body, hyper::Version::HTTP_11);

    let client = reqwest_client(
        &proxy.proxy_url(),
        &proxy.ca_pem(),
        HttpVersions::Negotiated,
    );
    let reqwest_url = format!("{base}/echo?client=reqwest");
    let response = reqwest_upload(&client, &reqwest_url, &body)
        .send()
        .await
        .expect("reqwest through the proxy");
    assert_eq!(response.version(), reqwest::Version::HTTP_11);
    assert_reqwest_echo(response, &body, "reqwest").await;
    assert_origin_received(
        &origin,
        "/echo?client=reqwest",
        &body,
        hyper::Version::HTTP_11,
    );

    for url in [&curl_url, &reqwest_url] {
        let event = proxy.wait_for_url(url).await;
        assert_allowed_event(&event, "POST", origin.port(), UPLOAD_LEN);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_round_trip_is_intact() {
    let work = tempfile::tempdir().unwrap();
    let pki = TestPki::new(work.path());
    let origin = Origin::start(Some(pki.server_config(&[b"h2", b"http/1.1"]))).await;
    let proxy = start_proxy("all", Some(&pki));
    let body = upload_body();
    let body_path = work.path().join("upload.bin");
    std::fs::write(&body_path, &body).unwrap();
    let base = format!("https://127.0.0.1:{}", origin.port());
    let ca_path = proxy.ca_path();
    let ca_path = ca_path.to_str().unwrap();
    let mut urls = Vec::new();

    // curl trusts only webwarden's CA, so success means the tunnel was
    // decrypted; the origin must still see HTTP/2 from webwarden.
    for (flag, version) in [("--http1.1", "1.1"), ("--http2", "2")] {
        let path = format!("/echo?client=curl{flag}");
        let mut args = curl_upload_args(body_path.to_str().unwrap());
        args.extend(["--cacert".to_owned(), ca_path.to_owned(), flag.to_owned()]);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let url = format!("{base}{path}");
        let result = curl(&proxy.proxy_url(), &args, &url).await;
        assert_eq!(result.connect_status, 200, "curl {flag}: {result:?}");
        assert_eq!(result.version, version, "curl {flag}: client-side version");
        assert_curl_echo(&result, &body, &format!("curl {flag}"));
        assert_origin_received(&origin, &path, &body, hyper::Version::HTTP_2);
        urls.push(url);
    }

    for (versions, expected) in [
        (HttpVersions::Http1Only, reqwest::Version::HTTP_11),
        (HttpVersions::Negotiated, reqwest::Version::HTTP_2),
    ] {
        let client = reqwest_client(&proxy.proxy_url(), &proxy.ca_pem(), versions);
        let path = format!("/echo?client=reqwest-{versions:?}");
        let url = format!("{base}{path}");
        let response = reqwest_upload(&client, &url, &body)
            .send()
            .await
            .unwrap_or_else(|err| panic!("reqwest {versions:?}: {err:?}\n{}", proxy.log()));
        assert_eq!(response.version(), expected, "reqwest {versions:?}");
        assert_reqwest_echo(response, &body, &format!("reqwest {versions:?}")).await;
        assert_origin_received(&origin, &path, &body, hyper::Version::HTTP_2);
        urls.push(url);
    }

    // reqwest reports no TLS details through a proxy, so a tunnel of our
    // own shows which leaf the client gets.
    let authority = format!("127.0.0.1:{}", origin.port());
    let leaf = peer_leaf_through_tunnel(&proxy, &authority, &proxy.ca_pem()).await;
    assert_ne!(leaf, pki.leaf, "the client must get webwarden's leaf");

    for url in &urls {
        let event = proxy.wait_for_url(url).await;
        assert_allowed_event(&event, "POST", origin.port(), UPLOAD_LEN);
    }
}

/// Opens a CONNECT tunnel to `authority`, completes TLS trusting only
/// `ca_pem`, and returns the leaf certificate the client got.
async fn peer_leaf_through_tunnel(
    proxy: &Webwarden,
    authority: &str,
    ca_pem: &str,
) -> CertificateDer<'static> {
    let tunnel = connect_tunnel(proxy.addr(), authority).await;
    let tls = tls_to_loopback(tunnel, ca_pem, &[b"http/1.1"]).await;
    let (_, connection) = tls.get_ref();
    connection
        .peer_certificates()
        .and_then(|chain| chain.first())
        .expect("a peer certificate")
        .clone()
        .into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_download_is_streamed() {
    let work = tempfile::tempdir().unwrap();
    let pki = TestPki::new(work.path());
    let origin = Origin::start(Some(pki.server_config(&[b"h2", b"http/1.1"]))).await;
    let proxy = start_proxy("all", Some(&pki));
    let client = reqwest_client(
        &proxy.proxy_url(),
        &proxy.ca_pem(),
        HttpVersions::Negotiated,
    );
    let url = format!(
        "https://127.0.0.1:{}{DOWNLOAD_PATH}{DOWNLOAD_LEN}",
        origin.port()
    );
    let rss_before = proxy.rss_kib();

    let started = Instant::now();
    let mut response = client.get(&url).send().await.expect("download starts");
    assert_eq!(response.status(), 200);
    assert_eq!(response.content_length(), Some(DOWNLOAD_LEN));
    let mut received = 0u64;
    while let Some(chunk) = response.chunk().await.expect("download chunk") {
        assert!(
            support::pattern_matches(received, &chunk),
            "download bytes changed at offset {received}"
        );
        received += chunk.len() as u64;
    }
    let elapsed = started.elapsed();
    assert_eq!(received, DOWNLOAD_LEN);

    let peak = proxy.peak_rss_kib();
    println!(
        "downloaded {DOWNLOAD_LEN} bytes in {elapsed:?}; webwarden RSS before {rss_before} KiB, \
         peak {peak} KiB"
    );
    assert!(
        peak < MAX_PEAK_RSS_KIB,
        "webwarden peak RSS {peak} KiB is not below {MAX_PEAK_RSS_KIB} KiB, so the body was \
         buffered"
    );
    let event = proxy.wait_for_url(&url).await;
    assert_eq!(event["status"], 200);
    assert_eq!(event["bytes"], 0);
}

/// Checks a block page response and its headers.
fn assert_block_page(
    status: u16,
    header: impl Fn(&str) -> Option<String>,
    body: &str,
    host: &str,
    html: bool,
) {
    assert_eq!(status, 403, "{host}: {body}");
    assert_eq!(header("x-webwarden").as_deref(), Some("blocked"), "{host}");
    assert_eq!(
        header("cache-control").as_deref(),
        Some("no-store"),
        "{host}"
    );
    if html {
        assert_eq!(
            header("content-type").as_deref(),
            Some("text/html; charset=utf-8"),
            "{host}"
        );
        assert!(
            body.contains(&format!("<dd id=\"host\">{host}</dd>")),
            "{body}"
        );
        assert!(body.contains("<dd id=\"category\">Gambling</dd>"), "{body}");
    } else {
        assert_eq!(
            header("content-type").as_deref(),
            Some("text/plain; charset=utf-8"),
            "{host}"
        );
        assert!(body.contains(&format!("Host: {host}\n")), "{body}");
        assert!(body.contains("Category: Gambling\n"), "{body}");
    }
}

fn assert_curl_block_page(result: &CurlResult, host: &str, html: bool) {
    let header = |name: &str| result.header(name).map(str::to_owned);
    assert_block_page(result.status, header, &result.text(), host, html);
}

async fn assert_reqwest_block_page(response: reqwest::Response, host: &str, html: bool) {
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let header = |name: &str| {
        headers
            .get(name)
            .map(|value| value.to_str().unwrap().to_owned())
    };
    let body = response.text().await.expect("block page body");
    assert_block_page(status, header, &body, host, html);
}

fn assert_blocked_event(event: &Value, proxy: &Webwarden, method: &str, host: &str, port: u16) {
    let url = event["url"].as_str().unwrap();
    assert_eq!(event["eventName"], "Gambling", "{url}");
    assert_eq!(event["eventCategory"], "BlockedHTTPRequest", "{url}");
    assert_eq!(event["method"], method, "{url}");
    assert_eq!(event["status"], 403, "{url}");
    assert_eq!(event["destinationHost"], host, "{url}");
    assert_eq!(event["destinationPort"], port, "{url}");
    assert!(event["destinationIP"].is_null(), "{url}: never resolved");
    assert_eq!(event["rule"], BLOCK_RULE, "{url}");
    assert_eq!(
        event["ruleSource"],
        proxy.list_path().to_str().unwrap(),
        "{url}"
    );
    assert_eq!(event["ruleLine"], 2, "{url}");
    assert_eq!(event["bytes"], 0, "{url}: nothing may be sent upstream");
    assert!(event["responseStatus"].is_null(), "{url}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocked_requests_get_block_page() {
    let proxy = start_proxy("all", None);
    let ca_path = proxy.ca_path();
    let ca = ca_path.to_str().unwrap();
    let html = "Accept: text/html,application/xhtml+xml;q=0.9,*/*;q=0.8";

    // (URL, host, curl arguments, HTML expected)
    let curl_cases: [(&str, &str, Vec<&str>, bool); 5] = [
        (
            "http://www.blocked.test/some/path?q=1",
            "www.blocked.test",
            vec!["-H", html],
            true,
        ),
        ("http://blocked.test/plain", "blocked.test", vec![], false),
        (
            "https://www.blocked.test/secure?q=2",
            "www.blocked.test",
            vec!["--cacert", ca, "-H", html, "--http2"],
            true,
        ),
        (
            "https://blocked.test/secure-text",
            "blocked.test",
            vec!["--cacert", ca, "--http1.1"],
            false,
        ),
        (
            "http://upload.blocked.test/form",
            "upload.blocked.test",
            vec!["--data-binary", "secret form data"],
            false,
        ),
    ];
    for (url, host, args, wants_html) in &curl_cases {
        let result = curl(&proxy.proxy_url(), args, url).await;
        assert_curl_block_page(&result, host, *wants_html);
    }

    let client = reqwest_client(
        &proxy.proxy_url(),
        &proxy.ca_pem(),
        HttpVersions::Negotiated,
    );
    let response = client
        .get("http://blocked.test/reqwest-http")
        .send()
        .await
        .expect("reqwest http");
    assert_reqwest_block_page(response, "blocked.test", false).await;
    let response = client
        .get("https://www.blocked.test/reqwest-https")
        .header("accept", "text/html")
        .send()
        .await
        .expect("reqwest https");
    assert_eq!(response.version(), reqwest::Version::HTTP_2);
    assert_reqwest_block_page(response, "www.blocked.test", true).await;

    let events = [
        ("http://www.blocked.test/some/path?q=1", "GET", 80),
        ("http://blocked.test/plain", "GET", 80),
        ("https://www.blocked.test/secure?q=2", "GET", 443),
        ("https://blocked.test/secure-text", "GET", 443),
        ("http://upload.blocked.test/form", "POST", 80),
        ("http://blocked.test/reqwest-http", "GET", 80),
        ("https://www.blocked.test/reqwest-https", "GET", 443),
    ];
    for (url, method, port) in events {
        let event = proxy.wait_for_url(url).await;
        let host = event["destinationHost"].as_str().unwrap().to_owned();
        assert!(url.contains(&format!("//{host}/")), "{url}: host {host}");
        assert_blocked_event(&event, &proxy, method, &host, port);
    }
}

/// Sends a text and a large binary message and checks both echoes.
async fn assert_websocket_echo<S>(mut socket: WebSocketStream<S>, label: &str)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let binary: Vec<u8> = (0..70_000u32).map(|i| (i % 253) as u8).collect();
    let messages = [
        Message::text(format!("hello through webwarden ({label})")),
        Message::binary(binary),
    ];
    for message in messages {
        tokio::time::timeout(WEBSOCKET_TIMEOUT, socket.send(message.clone()))
            .await
            .unwrap_or_else(|_| panic!("{label}: send timed out"))
            .unwrap_or_else(|err| panic!("{label}: send failed: {err}"));
        let echo = tokio::time::timeout(WEBSOCKET_TIMEOUT, socket.next())
            .await
            .unwrap_or_else(|_| panic!("{label}: no echo within {WEBSOCKET_TIMEOUT:?}"))
            .unwrap_or_else(|| panic!("{label}: connection closed before the echo"))
            .unwrap_or_else(|err| panic!("{label}: receive failed: {err}"));
        assert_eq!(echo, message, "{label}");
    }
    let _ = tokio::time::timeout(WEBSOCKET_TIMEOUT, socket.close(None)).await;
}

/// Opens a WebSocket the way a plain HTTP proxy client does: an
/// absolute-form `GET` with the upgrade headers, sent to the proxy.
async fn websocket_absolute_form(
    proxy: std::net::SocketAddr,
    url: &str,
    authority: &str,
) -> WebSocketStream<TcpStream> {
    let mut stream = TcpStream::connect(proxy).await.expect("connect to proxy");
    let key = generate_key();
    let request = format!(
        "GET {url} HTTP/1.1\r\nHost: {authority}\r\nUpgrade: websocket\r\n\
         Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let head = String::from_utf8(read_head(&mut stream).await).unwrap();
    assert!(head.starts_with("HTTP/1.1 101"), "{url}: {head:?}");
    let accept = derive_accept_key(key.as_bytes());
    assert!(
        head.to_ascii_lowercase().contains(&format!(
            "sec-websocket-accept: {}",
            accept.to_ascii_lowercase()
        )),
        "{url}: {head:?}"
    );
    WebSocketStream::from_raw_socket(stream, Role::Client, None).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_echo_round_trips() {
    let work = tempfile::tempdir().unwrap();
    let pki = TestPki::new(work.path());
    let plain = WebSocketOrigin::start(None).await;
    let secure = WebSocketOrigin::start(Some(pki.server_config(&[b"http/1.1"]))).await;
    let proxy = start_proxy("all", Some(&pki));
    let plain_authority = plain.addr.to_string();
    let secure_authority = secure.addr.to_string();

    // ws:// as an absolute-form request to the proxy.
    let url = format!("http://{plain_authority}/ws-absolute");
    let socket = websocket_absolute_form(proxy.addr(), &url, &plain_authority).await;
    assert_websocket_echo(socket, "ws:// absolute form").await;

    // ws:// inside a CONNECT tunnel, as browsers send it.
    let tunnel = connect_tunnel(proxy.addr(), &plain_authority).await;
    let (socket, _) =
        tokio_tungstenite::client_async(format!("ws://{plain_authority}/ws-tunnel"), tunnel)
            .await
            .expect("ws:// handshake through a tunnel");
    assert_websocket_echo(socket, "ws:// in a tunnel").await;

    // wss:// inside a CONNECT tunnel; the client trusts only webwarden's CA.
    let tunnel = connect_tunnel(proxy.addr(), &secure_authority).await;
    let tls = tls_to_loopback(tunnel, &proxy.ca_pem(), &[b"http/1.1"]).await;
    let (socket, _) =
        tokio_tungstenite::client_async(format!("wss://{secure_authority}/wss-tunnel"), tls)
            .await
            .expect("wss:// handshake through a tunnel");
    assert_websocket_echo(socket, "wss:// in a tunnel").await;

    for path in ["/ws-absolute", "/ws-tunnel", "/wss-tunnel"] {
        let event = proxy
            .wait_for_event(path, |e| {
                e["url"].as_str().is_some_and(|url| url.ends_with(path))
            })
            .await;
        assert_eq!(event["status"], 101, "{path}");
        assert_eq!(event["method"], "GET", "{path}");
        assert_eq!(event["destinationIP"], "127.0.0.1", "{path}");
        assert!(event["error"].is_null(), "{path}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closed_port_gives_502() {
    for inspection in ["all", "blocked-only"] {
        let proxy = start_proxy(inspection, None);
        let port = closed_port();
        let ca_path = proxy.ca_path();

        let https_url = format!("https://127.0.0.1:{port}/closed-https");
        let args = ["--cacert", ca_path.to_str().unwrap()];
        let result = curl(&proxy.proxy_url(), &args, &https_url).await;
        let event = if inspection == "all" {
            // The tunnel is decrypted, so the CONNECT succeeds and the
            // request inside it gets the 502.
            assert_eq!(result.connect_status, 200, "{inspection}: {result:?}");
            assert_eq!(result.status, 502, "{inspection}: {result:?}");
            assert!(result.text().contains("could not reach"), "{result:?}");
            proxy.wait_for_url(&https_url).await
        } else {
            // The tunnel is not decrypted, so the CONNECT itself fails.
            assert_eq!(result.connect_status, 502, "{inspection}: {result:?}");
            let authority = format!("127.0.0.1:{port}");
            let head = raw_exchange(
                proxy.addr(),
                format!("CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n\r\n").as_bytes(),
            )
            .await;
            let head = String::from_utf8_lossy(&head);
            assert!(head.starts_with("HTTP/1.1 502"), "{inspection}: {head:?}");
            let event = proxy.wait_for_url(&authority).await;
            assert_eq!(event["method"], "CONNECT");
            event
        };
        assert_eq!(event["status"], 502, "{inspection}: {event}");
        assert_eq!(event["destinationPort"], port, "{inspection}");
        let error = event["error"].as_str().unwrap_or_default();
        assert!(!error.is_empty(), "{inspection}: {event}");

        let http_url = format!("http://127.0.0.1:{port}/closed-http");
        let result = curl(&proxy.proxy_url(), &[], &http_url).await;
        assert_eq!(result.status, 502, "{inspection}: {result:?}");
        let event = proxy.wait_for_url(&http_url).await;
        assert_eq!(event["status"], 502, "{inspection}: {event}");
        assert!(event["responseStatus"].is_null(), "{inspection}: {event}");
        let error = event["error"].as_str().unwrap_or_default();
        assert!(!error.is_empty(), "{inspection}: {event}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_requests_keep_proxy_serving() {
    let origin = Origin::start(None).await;
    let mut proxy = start_proxy("all", None);
    let cases: [(&str, &[u8]); 8] = [
        ("garbage bytes", b"\x16\x00\xff\xfe garbage\r\n\r\n"),
        ("space in the URI", b"GET http://bad host/ HTTP/1.1\r\n\r\n"),
        ("unclosed IPv6 URI", b"GET http://[::1/ HTTP/1.1\r\n\r\n"),
        (
            "invalid host in absolute URI",
            b"GET http://bad_host!/ HTTP/1.1\r\nHost: bad_host!\r\n\r\n",
        ),
        ("header without colon", b"GET / HTTP/1.1\r\nbroken\r\n\r\n"),
        ("CONNECT with empty host", b"CONNECT :443 HTTP/1.1\r\n\r\n"),
        (
            "CONNECT with invalid host",
            b"CONNECT bad_host!:443 HTTP/1.1\r\nHost: bad_host!:443\r\n\r\n",
        ),
        (
            "CONNECT with unclosed IPv6 host",
            b"CONNECT [::1:443 HTTP/1.1\r\n\r\n",
        ),
    ];
    for (index, (name, request)) in cases.iter().enumerate() {
        let head = raw_exchange(proxy.addr(), request).await;
        let head = String::from_utf8_lossy(&head);
        let status_class = head.get(..10).unwrap_or_default();
        assert!(
            head.is_empty() || status_class == "HTTP/1.1 4" || status_class == "HTTP/1.1 5",
            "{name}: expected an error response or a closed connection, got {head:?}"
        );
        proxy.assert_running();

        let url = format!("http://127.0.0.1:{}/after-{index}", origin.port());
        let result = curl(&proxy.proxy_url(), &[], &url).await;
        assert_eq!(result.status, 200, "after {name}: {result:?}");
    }
}

/// A CONNECT target is `host:port` with a numeric port (RFC 9112, section
/// 3.2.3).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_without_valid_port_is_rejected() {
    let mut failures = Vec::new();
    for inspection in ["all", "blocked-only"] {
        let proxy = start_proxy(inspection, None);
        for authority in ["127.0.0.1", "127.0.0.1:https", "127.0.0.1:99999"] {
            let request = format!("CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n\r\n");
            let head = raw_exchange(proxy.addr(), request.as_bytes()).await;
            let head = String::from_utf8_lossy(&head);
            if !(head.is_empty() || head.starts_with("HTTP/1.1 400")) {
                let status = head.lines().next().unwrap_or_default().to_owned();
                failures.push(format!("{inspection}: CONNECT {authority} -> {status}"));
            }
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

/// A proxy removes the `Connection` header and the fields it names before
/// forwarding (RFC 9110, section 7.6.1), and `Proxy-Connection` and
/// `Keep-Alive` are hop-by-hop as well. `Proxy-Authorization` is meant for a
/// proxy (RFC 9110, section 11.7.2), and webwarden forwards to origins only,
/// so passing it on sends a proxy credential to every site.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hop_by_hop_headers_are_not_forwarded() {
    let origin = Origin::start(None).await;
    let proxy = start_proxy("all", None);

    let path = "/hop-by-hop";
    let request = format!(
        "GET http://127.0.0.1:{port}{path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\
         Connection: keep-alive, x-hop\r\nKeep-Alive: timeout=5\r\nX-Hop: for-the-proxy\r\n\
         Proxy-Connection: keep-alive\r\nProxy-Authorization: Basic dXNlcjpzZWNyZXQ=\r\n\
         X-End-To-End: kept\r\n\r\n",
        port = origin.port()
    );
    let head = raw_exchange(proxy.addr(), request.as_bytes()).await;
    let head = String::from_utf8_lossy(&head);
    assert!(head.starts_with("HTTP/1.1 200"), "{head:?}");

    let received = origin.request_for(path);
    assert_eq!(received.headers["x-end-to-end"], "kept");
    let forwarded: Vec<&str> = [
        "connection",
        "keep-alive",
        "x-hop",
        "proxy-connection",
        "proxy-authorization",
    ]
    .into_iter()
    .filter(|name| received.headers.contains_key(*name))
    .collect();
    assert!(
        forwarded.is_empty(),
        "the origin received {forwarded:?}: {:#?}",
        received.headers
    );
}

#[test]
fn non_loopback_listen_is_rejected() {
    for listen in ["0.0.0.0:0", "[::]:0"] {
        let dir = tempfile::tempdir().unwrap();
        let list = dir.path().join("list.csv");
        std::fs::write(&list, LIST).unwrap();
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_webwarden"));
        command
            .args(["run", "--listen", listen, "--data-dir"])
            .arg(dir.path().join("data"))
            .arg("--events-file")
            .arg(dir.path().join("events.jsonl"))
            .arg("--list")
            .arg(&list)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped());
        support::isolate_environment(&mut command, dir.path());
        let mut child = command.spawn().expect("webwarden starts");
        let stderr = child.stderr.take().unwrap();
        let mut guard = ChildGuard::new(child);
        let status = guard
            .wait_timeout(Duration::from_secs(20))
            .unwrap_or_else(|| panic!("webwarden --listen {listen} kept running"));
        let mut text = String::new();
        std::io::Read::read_to_string(&mut std::io::BufReader::new(stderr), &mut text).unwrap();
        assert!(!status.success(), "{listen}: {text}");
        assert!(text.contains(listen), "{listen}: {text}");
        assert!(text.contains("not a loopback address"), "{listen}: {text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocked_only_mode_tunnels_allowed_https() {
    let work = tempfile::tempdir().unwrap();
    let pki = TestPki::new(work.path());
    let origin = Origin::start(Some(pki.server_config(&[b"h2", b"http/1.1"]))).await;
    let proxy = start_proxy("blocked-only", Some(&pki));
    let authority = format!("127.0.0.1:{}", origin.port());
    let body = upload_body();

    // A client that trusts only the origin's CA succeeds and gets the
    // origin's own leaf, so the tunnel was not decrypted.
    let client = reqwest_client(&proxy.proxy_url(), &pki.ca_pem, HttpVersions::Negotiated);
    let path = "/echo?client=reqwest-tunnel";
    let response = reqwest_upload(&client, &format!("https://{authority}{path}"), &body)
        .send()
        .await
        .expect("reqwest through a tunnel");
    assert_eq!(response.version(), reqwest::Version::HTTP_2);
    assert_reqwest_echo(response, &body, "reqwest tunnel").await;
    assert_origin_received(&origin, path, &body, hyper::Version::HTTP_2);
    let leaf = peer_leaf_through_tunnel(&proxy, &authority, &pki.ca_pem).await;
    assert_eq!(leaf, pki.leaf, "the client must get the origin's own leaf");

    let origin_ca = pki.ca_path.to_str().unwrap();
    let url = format!("https://{authority}/tunnel-curl");
    let result = curl(&proxy.proxy_url(), &["--cacert", origin_ca], &url).await;
    assert_eq!(result.status, 200, "{result:?}");
    assert_eq!(result.connect_status, 200, "{result:?}");

    // The same request fails for a client that trusts only webwarden's CA.
    let ca_path = proxy.ca_path();
    let webwarden_ca = ca_path.to_str().unwrap();
    let result = curl(&proxy.proxy_url(), &["--cacert", webwarden_ca], &url).await;
    assert_eq!(
        result.exit_code,
        Some(60),
        "curl must reject the origin's certificate: {result:?}"
    );

    // A blocked host is still decrypted, so it gets the block page.
    let blocked = "https://www.blocked.test/in-blocked-only-mode";
    let args = ["--cacert", webwarden_ca, "-H", "Accept: text/html"];
    let result = curl(&proxy.proxy_url(), &args, blocked).await;
    assert_curl_block_page(&result, "www.blocked.test", true);
    let webwarden_client = reqwest_client(
        &proxy.proxy_url(),
        &proxy.ca_pem(),
        HttpVersions::Negotiated,
    );
    let response = webwarden_client
        .get("https://blocked.test/reqwest-blocked-only")
        .send()
        .await
        .expect("reqwest to a blocked host");
    assert_reqwest_block_page(response, "blocked.test", false).await;

    let event = proxy.wait_for_url(&authority).await;
    assert_eq!(event["method"], "CONNECT");
    assert_eq!(event["status"], 200);
    assert_eq!(event["destinationIP"], "127.0.0.1");
    assert_eq!(event["destinationPort"], origin.port());
    assert_eq!(event["eventCategory"], "AllowedHTTPRequest");
    let event = proxy.wait_for_url(blocked).await;
    assert_blocked_event(&event, &proxy, "GET", "www.blocked.test", 443);
    let inner = proxy
        .events()
        .into_iter()
        .filter(|e| e["url"].as_str().is_some_and(|u| u.contains("tunnel")))
        .count();
    assert_eq!(
        inner, 0,
        "requests inside an undecrypted tunnel have no event"
    );
}

/// `localhost` resolves through /etc/hosts, so this needs no DNS server: an
/// IP row for 127.0.0.1 must block a name that resolves to it, whether the
/// request is plain, decrypted or (in blocked-only mode) a tunnel.
#[tokio::test]
async fn name_resolving_to_blocked_ip_is_blocked() {
    let origin = Origin::start(None).await;
    for inspection in ["all", "blocked-only"] {
        let proxy = Webwarden::start(&ProxyOptions {
            list: "127\\.0\\.0\\.1,Malicious Host\n",
            inspection,
            trusted_roots: None,
        });
        let ca_path = proxy.ca_path();

        let http_url = format!("http://localhost:{}/resolved", origin.port());
        let result = curl(&proxy.proxy_url(), &[], &http_url).await;
        assert_eq!(result.status, 403, "{inspection}: {result:?}");
        assert!(result.text().contains("Malicious Host"), "{result:?}");
        let event = proxy.wait_for_url(&http_url).await;
        assert_eq!(event["eventCategory"], "BlockedHTTPRequest");
        assert_eq!(event["destinationIP"], "127.0.0.1");
        assert_eq!(event["rule"], "127\\.0\\.0\\.1");

        let https_url = format!("https://localhost:{}/resolved-tls", origin.port());
        let args = ["--cacert", ca_path.to_str().unwrap()];
        let result = curl(&proxy.proxy_url(), &args, &https_url).await;
        assert_eq!(result.status, 403, "{inspection}: {result:?}");
        assert!(result.text().contains("localhost"), "{result:?}");
        assert!(origin.requests().is_empty(), "the origin was reached");
    }
}

#[tokio::test]
async fn sigterm_stops_cleanly_after_writing_events() {
    let origin = Origin::start(None).await;
    let mut proxy = start_proxy("all", None);
    let url = format!("http://127.0.0.1:{}/before-stop", origin.port());
    let result = curl(&proxy.proxy_url(), &[], &url).await;
    assert_eq!(result.status, 200, "{result:?}");

    let status = proxy
        .terminate(Duration::from_secs(10))
        .expect("webwarden exits within 10 s of SIGTERM");
    assert!(status.success(), "exit status {status}");
    let log = proxy.log();
    assert!(log.contains("received SIGTERM"), "{log}");
    assert!(log.contains("stopped"), "{log}");
    let events = proxy.events();
    assert!(
        events.iter().any(|event| event["url"] == url.as_str()),
        "no event for {url} in {events:?}"
    );
}
