//! Checks the SIEM receivers of the end-to-end tests on their own, without
//! webwarden: rsyslog must store each syslog message byte for byte over TCP,
//! TLS and UDP, and the QRadar HTTP Receiver stand-in must store, reject and
//! fail as its faults promise.
//!
//! The rsyslog tests need Debian's `rsyslog` and `rsyslog-openssl`. They skip
//! when `rsyslogd` is missing, unless `WEBWARDEN_REQUIRE_RSYSLOG` is set, and
//! then they fail.

mod support;

use std::collections::BTreeSet;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio_rustls::rustls::pki_types::ServerName;
use tokio_rustls::TlsConnector;

use support::qradar::{EventSplit, Fault, QradarReceiver, Transport};
use support::rsyslog::{rsyslogd_available, Listener, Rsyslog, TestTlsFiles};

/// The bound on one send to a receiver.
const IO_TIMEOUT: Duration = Duration::from_secs(10);

/// The bound on rsyslogd writing the messages it received.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(10);

/// The timeout of the reqwest clients, where a test expects no timeout.
const HTTP_TIMEOUT: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------------------
// rsyslog
// ---------------------------------------------------------------------------

/// Builds an RFC 5424 message with a LEEF payload that contains every
/// escape of the SIEM format, `|` and `=` in values, UTF-8 and a 3000-byte
/// value. `transport` goes into a LEEF key, so each message is distinct.
fn awkward_message(transport: &str) -> String {
    let long_value: String = "0123456789".repeat(300);
    format!(
        "<12>1 2026-12-04T19:00:00.123Z test-host webwarden - BlockedHTTPRequest - \
         LEEF:2.0|webwarden|webwarden|0.1.0|Blocked\\|Request|^|devTime=1796410800123\
         ^cat=Gambling \\^ Betting^sev=6^proto=TCP\
         ^url=https://blocked.test/a?b=1&c=d|e\\\\f^usrName=Jürgen Müller 日本語 🙂\
         ^error=line\\nbreak\\rreturn\\ttab^transport={transport}^long={long_value}"
    )
}

/// Frames `message` with octet counting (RFC 6587): its length in bytes,
/// a space, then the message.
fn octet_counted(message: &str) -> Vec<u8> {
    format!("{} {message}", message.len()).into_bytes()
}

fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, port))
}

async fn send_tcp(port: u16, frames: &[u8]) {
    let send = async {
        let mut stream = TcpStream::connect(loopback(port)).await?;
        stream.write_all(frames).await?;
        stream.shutdown().await
    };
    tokio::time::timeout(IO_TIMEOUT, send)
        .await
        .expect("TCP send timed out")
        .expect("TCP send to rsyslogd");
}

async fn send_tls(port: u16, tls: &TestTlsFiles, frames: &[u8]) {
    let connector = TlsConnector::from(tls.client_config(false));
    let name = ServerName::IpAddress(Ipv4Addr::LOCALHOST.into());
    let send = async {
        let stream = TcpStream::connect(loopback(port)).await?;
        let mut stream = connector.connect(name, stream).await?;
        stream.write_all(frames).await?;
        // Sends close_notify, so rsyslogd logs no TLS error.
        stream.shutdown().await
    };
    tokio::time::timeout(IO_TIMEOUT, send)
        .await
        .expect("TLS send timed out")
        .expect("TLS send to rsyslogd");
}

async fn send_udp(port: u16, message: &[u8]) {
    let send = async {
        let socket = UdpSocket::bind(loopback(0)).await?;
        socket.send_to(message, loopback(port)).await
    };
    let sent = tokio::time::timeout(IO_TIMEOUT, send)
        .await
        .expect("UDP send timed out")
        .expect("UDP send to rsyslogd");
    assert_eq!(sent, message.len(), "the datagram was truncated");
}

#[tokio::test]
async fn rsyslog_tcp_keeps_messages_unchanged() {
    if !rsyslogd_available("rsyslog_tcp_keeps_messages_unchanged") {
        return;
    }
    let dir = tempfile::tempdir().expect("temporary directory");
    let tls = TestTlsFiles::new(dir.path());
    let rsyslog = Rsyslog::start(dir.path(), &tls);

    // Two frames back to back with no newline between them: only octet
    // counting can separate them.
    let first = awkward_message("tcp");
    let second = awkward_message("tcp-second");
    let mut frames = octet_counted(&first);
    frames.extend(octet_counted(&second));
    send_tcp(rsyslog.tcp_port, &frames).await;

    let lines = rsyslog.wait_for_lines(2, DELIVERY_TIMEOUT).await;
    assert_eq!(lines.len(), 2, "{}", rsyslog.log());
    assert_eq!(lines[0], first);
    assert_eq!(lines[1], second);
    assert_eq!(rsyslog.listener_lines(Listener::Tcp), lines);
    assert!(rsyslog.listener_lines(Listener::Tls).is_empty());
    assert!(rsyslog.listener_lines(Listener::Udp).is_empty());
}

#[tokio::test]
async fn rsyslog_tls_keeps_message_unchanged() {
    if !rsyslogd_available("rsyslog_tls_keeps_message_unchanged") {
        return;
    }
    let dir = tempfile::tempdir().expect("temporary directory");
    let tls = TestTlsFiles::new(dir.path());
    let rsyslog = Rsyslog::start(dir.path(), &tls);

    let message = awkward_message("tls");
    send_tls(rsyslog.tls_port, &tls, &octet_counted(&message)).await;

    let lines = rsyslog
        .wait_for_listener_lines(Listener::Tls, 1, DELIVERY_TIMEOUT)
        .await;
    assert_eq!(lines, std::slice::from_ref(&message), "{}", rsyslog.log());
    assert_eq!(rsyslog.lines(), [message]);
    assert!(rsyslog.listener_lines(Listener::Tcp).is_empty());
}

#[tokio::test]
async fn rsyslog_udp_keeps_message_unchanged() {
    if !rsyslogd_available("rsyslog_udp_keeps_message_unchanged") {
        return;
    }
    let dir = tempfile::tempdir().expect("temporary directory");
    let tls = TestTlsFiles::new(dir.path());
    let rsyslog = Rsyslog::start(dir.path(), &tls);

    let message = awkward_message("udp");
    send_udp(rsyslog.udp_port, message.as_bytes()).await;

    let lines = rsyslog
        .wait_for_listener_lines(Listener::Udp, 1, DELIVERY_TIMEOUT)
        .await;
    assert_eq!(lines, std::slice::from_ref(&message), "{}", rsyslog.log());
    assert_eq!(rsyslog.lines(), [message]);
    assert!(rsyslog.listener_lines(Listener::Tcp).is_empty());
}

#[tokio::test]
async fn rsyslog_keeps_control_characters() {
    if !rsyslogd_available("rsyslog_keeps_control_characters") {
        return;
    }
    let dir = tempfile::tempdir().expect("temporary directory");
    let tls = TestTlsFiles::new(dir.path());
    let rsyslog = Rsyslog::start(dir.path(), &tls);

    // A raw TAB and SOH, and a trailing LF that shows up as an empty line,
    // so a sender's stray newline is visible to the tests.
    let message = "<14>1 2026-12-04T19:00:00.123Z test-host webwarden - AgentStatus - \
                   LEEF:2.0|webwarden|webwarden|0.1.0|AgentStatus|^|cat=raw\tTAB\x01SOH\n";
    send_tcp(rsyslog.tcp_port, &octet_counted(message)).await;

    rsyslog.wait_for_lines(2, DELIVERY_TIMEOUT).await;
    let raw_lines = rsyslog.raw_lines();
    let expected = message.trim_end_matches('\n').as_bytes();
    assert_eq!(raw_lines.len(), 2, "{}", rsyslog.log());
    assert_eq!(raw_lines[0], expected);
    assert!(raw_lines[1].is_empty(), "the trailing LF was not kept");
}

// ---------------------------------------------------------------------------
// QRadar HTTP Receiver stand-in
// ---------------------------------------------------------------------------

/// Builds a client that trusts only the test CA, ignores proxy variables
/// and opens a new connection per request, so each fault meets a fresh
/// connection.
fn https_client(tls: &TestTlsFiles, with_client_cert: bool, timeout: Duration) -> reqwest::Client {
    let ca = reqwest::Certificate::from_pem(tls.ca_pem.as_bytes()).expect("CA certificate");
    let mut builder = reqwest::Client::builder()
        .no_proxy()
        .tls_certs_only([ca])
        .pool_max_idle_per_host(0)
        .timeout(timeout);
    if with_client_cert {
        let identity = reqwest::Identity::from_pem(&tls.client_identity_pem())
            .expect("client certificate and key");
        builder = builder.identity(identity);
    }
    builder.build().expect("reqwest client")
}

/// Returns events as newline-separated JSON objects, one per id.
fn event_lines(ids: &[&str]) -> String {
    ids.iter()
        .map(|id| {
            let event = serde_json::json!({
                "eventId": id,
                "eventName": "SiemTest",
                "eventCategory": "AgentStatus",
                "message": "Jürgen \\ \"quoted\" | ^",
            });
            format!("{event}\n")
        })
        .collect()
}

fn id_set(ids: &[&str]) -> BTreeSet<String> {
    ids.iter().map(|id| (*id).to_owned()).collect()
}

async fn post(client: &reqwest::Client, url: &str, body: String) -> reqwest::Result<u16> {
    let response = client
        .post(url)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await?;
    Ok(response.status().as_u16())
}

/// Starts a TLS receiver that splits bodies into lines, with its files.
async fn start_https_receiver() -> (tempfile::TempDir, TestTlsFiles, QradarReceiver) {
    let dir = tempfile::tempdir().expect("temporary directory");
    let tls = TestTlsFiles::new(dir.path());
    let receiver = QradarReceiver::start(Transport::Https(&tls), EventSplit::Lines).await;
    (dir, tls, receiver)
}

#[tokio::test]
async fn qradar_stores_each_line_as_event() {
    let (_dir, tls, receiver) = start_https_receiver().await;
    let client = https_client(&tls, false, HTTP_TIMEOUT);

    let status = post(
        &client,
        &receiver.url(),
        event_lines(&["a-1", "a-2", "a-3"]),
    )
    .await;
    assert_eq!(status.expect("POST"), 200);

    let ids: Vec<String> = receiver.events().into_iter().map(|e| e.event_id).collect();
    assert_eq!(ids, ["a-1", "a-2", "a-3"]);
    assert_eq!(
        receiver.events()[1].event["message"],
        "Jürgen \\ \"quoted\" | ^"
    );
    assert_eq!(receiver.unique_ids(), id_set(&["a-1", "a-2", "a-3"]));
    assert_eq!(receiver.duplicates_count(), 0);
    assert_eq!(receiver.requests_count(), 1);
    let request = &receiver.requests()[0];
    assert_eq!(request.content_type.as_deref(), Some("application/json"));
    assert_eq!(request.status, Some(200));
    receiver
        .wait_for_ids(&id_set(&["a-1", "a-3"]), Duration::from_secs(1))
        .await;
}

#[tokio::test]
async fn qradar_counts_resent_ids_as_duplicates() {
    let (_dir, tls, receiver) = start_https_receiver().await;
    let client = https_client(&tls, false, HTTP_TIMEOUT);

    let first = post(&client, &receiver.url(), event_lines(&["d-1", "d-2"])).await;
    assert_eq!(first.expect("first POST"), 200);
    let second = post(&client, &receiver.url(), event_lines(&["d-2", "d-3"])).await;
    assert_eq!(second.expect("second POST"), 200);

    assert_eq!(receiver.events().len(), 4);
    assert_eq!(receiver.unique_ids(), id_set(&["d-1", "d-2", "d-3"]));
    assert_eq!(receiver.duplicates_count(), 1);
}

#[tokio::test]
async fn qradar_body_split_rejects_batches() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let tls = TestTlsFiles::new(dir.path());
    let receiver = QradarReceiver::start(Transport::Https(&tls), EventSplit::Body).await;
    let client = https_client(&tls, false, HTTP_TIMEOUT);

    let single = post(&client, &receiver.url(), event_lines(&["b-1"])).await;
    assert_eq!(single.expect("POST of one event"), 200);
    let batch = post(&client, &receiver.url(), event_lines(&["b-2", "b-3"])).await;
    assert_eq!(batch.expect("POST of two events"), 400);

    assert_eq!(receiver.unique_ids(), id_set(&["b-1"]));
    assert_eq!(receiver.requests_count(), 2);
}

#[tokio::test]
async fn qradar_rejects_invalid_events() {
    let (_dir, tls, receiver) = start_https_receiver().await;
    let client = https_client(&tls, false, HTTP_TIMEOUT);
    let url = receiver.url();

    let cases = [
        ("no eventId", "{\"eventName\":\"SiemTest\"}\n".to_owned()),
        ("numeric eventId", "{\"eventId\":7}\n".to_owned()),
        ("array", "[1,2]\n".to_owned()),
        ("truncated JSON", "{\"eventId\":\"x-1\"\n".to_owned()),
        ("empty body", String::new()),
        // One bad line rejects the whole body.
        (
            "bad second line",
            format!("{}not json\n", event_lines(&["x-2"])),
        ),
    ];
    let count = cases.len();
    for (case, body) in cases {
        let status = post(&client, &url, body).await;
        assert_eq!(status.expect(case), 400, "{case}");
    }
    assert!(receiver.events().is_empty(), "{:?}", receiver.events());
    assert_eq!(receiver.requests_count(), count);
}

#[tokio::test]
async fn qradar_rejects_other_methods() {
    let (_dir, tls, receiver) = start_https_receiver().await;
    let client = https_client(&tls, false, HTTP_TIMEOUT);

    let response = client
        .put(receiver.url())
        .body(event_lines(&["m-1"]))
        .send()
        .await
        .expect("PUT");
    assert_eq!(response.status().as_u16(), 405);
    assert!(receiver.events().is_empty());
    assert_eq!(receiver.requests_count(), 1);
}

#[tokio::test]
async fn qradar_down_refuses_then_reopens_port() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let tls = TestTlsFiles::new(dir.path());
    let receiver = QradarReceiver::start(Transport::Http, EventSplit::Lines).await;
    let client = https_client(&tls, false, HTTP_TIMEOUT);
    let url = receiver.url();
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");

    // A connection opened before the fault must be closed by it.
    let mut open = TcpStream::connect(receiver.addr())
        .await
        .expect("connect before Down");
    receiver.set_fault(Fault::Down).await;
    let mut buffer = [0u8; 16];
    let read = tokio::time::timeout(IO_TIMEOUT, open.read(&mut buffer))
        .await
        .expect("read on the open connection timed out");
    assert!(
        matches!(read, Ok(0) | Err(_)),
        "the open connection was not closed: {read:?}"
    );

    let refused = TcpStream::connect(receiver.addr()).await;
    assert!(refused.is_err(), "a connection was accepted while Down");
    let error = post(&client, &url, event_lines(&["r-1"]))
        .await
        .expect_err("POST while Down");
    assert!(error.is_connect(), "not a connect error: {error:?}");
    assert_eq!(receiver.requests_count(), 0);

    receiver.set_fault(Fault::Up).await;
    assert_eq!(receiver.url(), url, "the port changed");
    let status = post(&client, &url, event_lines(&["r-2"])).await;
    assert_eq!(status.expect("POST after Up"), 200);
    assert_eq!(receiver.unique_ids(), id_set(&["r-2"]));
}

#[tokio::test]
async fn qradar_status_fault_stores_nothing() {
    let (_dir, tls, receiver) = start_https_receiver().await;
    let client = https_client(&tls, false, HTTP_TIMEOUT);
    let url = receiver.url();

    for code in [503, 500] {
        receiver.set_fault(Fault::Status(code)).await;
        let status = post(&client, &url, event_lines(&["s-1"])).await;
        assert_eq!(status.expect("POST with a status fault"), code);
    }
    assert!(receiver.events().is_empty(), "{:?}", receiver.events());
    assert_eq!(receiver.requests_count(), 2);

    receiver.set_fault(Fault::Up).await;
    let status = post(&client, &url, event_lines(&["s-1"])).await;
    assert_eq!(status.expect("POST after Up"), 200);
    assert_eq!(receiver.unique_ids(), id_set(&["s-1"]));
    assert_eq!(receiver.requests_count(), 3);
}

#[tokio::test]
async fn qradar_reset_closes_without_response() {
    let (_dir, tls, receiver) = start_https_receiver().await;
    let client = https_client(&tls, false, HTTP_TIMEOUT);
    receiver.set_fault(Fault::Reset).await;

    let started = Instant::now();
    let error = post(&client, &receiver.url(), event_lines(&["c-1"]))
        .await
        .expect_err("POST with the Reset fault");
    assert!(!error.is_timeout(), "timed out instead of reset: {error:?}");
    assert!(error.status().is_none(), "got a response: {error:?}");
    assert!(started.elapsed() < HTTP_TIMEOUT);

    assert!(receiver.events().is_empty());
    assert_eq!(receiver.requests_count(), 1);
    assert_eq!(receiver.requests()[0].status, None);
    let body = String::from_utf8_lossy(&receiver.requests()[0].body).into_owned();
    assert!(
        body.contains("\"eventId\":\"c-1\""),
        "the request body was not read before the reset: {body:?}"
    );
}

#[tokio::test]
async fn qradar_slow_stores_before_responding() {
    let (_dir, tls, receiver) = start_https_receiver().await;
    let delay = Duration::from_millis(1500);
    receiver.set_fault(Fault::Slow(delay)).await;

    // The client gives up first, although the receiver stored the event.
    let impatient = https_client(&tls, false, Duration::from_millis(300));
    let error = post(&impatient, &receiver.url(), event_lines(&["w-1"]))
        .await
        .expect_err("POST that times out");
    assert!(error.is_timeout(), "not a timeout: {error:?}");
    receiver
        .wait_for_ids(&id_set(&["w-1"]), Duration::from_secs(5))
        .await;

    // Resending the same event stores a duplicate.
    let patient = https_client(&tls, false, HTTP_TIMEOUT);
    let started = Instant::now();
    let status = post(&patient, &receiver.url(), event_lines(&["w-1"])).await;
    assert_eq!(status.expect("POST that waits"), 200);
    assert!(
        started.elapsed() >= delay,
        "responded after {:?}",
        started.elapsed()
    );
    assert_eq!(receiver.events().len(), 2);
    assert_eq!(receiver.duplicates_count(), 1);
}

#[tokio::test]
async fn qradar_requires_client_certificate() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let tls = TestTlsFiles::new(dir.path());
    let receiver = QradarReceiver::start(Transport::HttpsClientAuth(&tls), EventSplit::Lines).await;
    let url = receiver.url();

    let anonymous = https_client(&tls, false, HTTP_TIMEOUT);
    let error = post(&anonymous, &url, event_lines(&["k-1"]))
        .await
        .expect_err("POST without a client certificate");
    assert!(error.status().is_none(), "got a response: {error:?}");
    assert_eq!(receiver.requests_count(), 0);
    assert_eq!(receiver.handshake_errors().len(), 1);

    let authenticated = https_client(&tls, true, HTTP_TIMEOUT);
    let status = post(&authenticated, &url, event_lines(&["k-2"])).await;
    assert_eq!(status.expect("POST with a client certificate"), 200);
    assert_eq!(receiver.unique_ids(), id_set(&["k-2"]));
}

#[tokio::test]
#[should_panic(expected = "missing: [\"never-sent\"]")]
async fn qradar_wait_for_ids_names_missing() {
    let (_dir, tls, receiver) = start_https_receiver().await;
    let client = https_client(&tls, false, HTTP_TIMEOUT);
    let status = post(&client, &receiver.url(), event_lines(&["sent"])).await;
    assert_eq!(status.expect("POST"), 200);

    receiver
        .wait_for_ids(&id_set(&["sent", "never-sent"]), Duration::from_millis(200))
        .await;
}
