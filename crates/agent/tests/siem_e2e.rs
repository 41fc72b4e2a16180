//! End-to-end tests of the SIEM export. `webwarden run` sends syslog to a
//! real rsyslog and POSTs to a stand-in of the QRadar HTTP Receiver that
//! injects faults. Other tests kill the agent with SIGKILL while events flow
//! and run `webwarden siem test`. Every server listens on 127.0.0.1.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsString;
use std::path::Path;
use std::time::Duration;

use serde_json::Value;
use support::qradar::{EventSplit, Fault, QradarReceiver, Transport};
use support::rsyslog::{rsyslogd_available, Listener, Rsyslog, TestTlsFiles};
use support::{curl, Origin, ProxyOptions, Webwarden};

/// A list whose only rule is a regex with the characters LEEF escapes.
const LIST: &str = "^(.*\\.)?(evil|bad)\\.example$,Malicious Host\n";

/// The bound on events reaching a receiver.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(30);

fn options() -> ProxyOptions<'static> {
    ProxyOptions {
        list: LIST,
        inspection: "all",
        trusted_roots: None,
    }
}

fn os(values: &[&dyn AsRef<std::ffi::OsStr>]) -> Vec<OsString> {
    values.iter().map(|v| v.as_ref().to_owned()).collect()
}

/// Writes a configuration with fast retries and returns its `--config` args.
fn fast_retry_config(dir: &Path, extra: &str) -> Vec<OsString> {
    let path = dir.join("config.toml");
    let text = format!("[spool]\nretry_initial_ms = 100\nretry_max_seconds = 1\n{extra}");
    std::fs::write(&path, text).expect("write config");
    os(&[&"--config", &path])
}

/// Sends `count` blocked requests and `count` allowed ones through the proxy.
async fn send_requests(webwarden: &Webwarden, origin: &Origin, tag: &str, count: usize) {
    let proxy = webwarden.proxy_url();
    for n in 0..count {
        let blocked = curl(&proxy, &[], &format!("http://www.bad.example/{tag}/{n}")).await;
        assert_eq!(blocked.status, 403, "{}", blocked.stderr);
        let url = format!("http://127.0.0.1:{}/{tag}/{n}", origin.port());
        let allowed = curl(&proxy, &[], &url).await;
        assert_eq!(allowed.status, 200, "{}", allowed.stderr);
    }
}

/// Returns the `eventId`s of every event in the events file.
fn file_ids(webwarden: &Webwarden) -> BTreeSet<String> {
    webwarden
        .events()
        .iter()
        .map(|event| event["eventId"].as_str().expect("eventId").to_owned())
        .collect()
}

// ---------------------------------------------------------------------------
// LEEF parsing, independent of the code under test
// ---------------------------------------------------------------------------

/// One syslog message with a LEEF payload, split into its parts.
#[derive(Debug)]
struct LeefMessage {
    priority: u8,
    timestamp: String,
    hostname: String,
    app_name: String,
    msg_id: String,
    header: Vec<String>,
    attributes: Vec<(String, String)>,
}

impl LeefMessage {
    fn parse(line: &str) -> LeefMessage {
        let rest = line.strip_prefix('<').expect("PRI");
        let (priority, rest) = rest.split_once(">1 ").expect("RFC 5424 version 1");
        let mut fields = rest.splitn(7, ' ');
        let mut next = || fields.next().expect("RFC 5424 header field").to_owned();
        let (timestamp, hostname, app_name, _proc_id, msg_id, structured) =
            (next(), next(), next(), next(), next(), next());
        assert_eq!(structured, "-", "no structured data in {line}");
        let payload = next();
        let payload = payload.strip_prefix("LEEF:2.0|").expect("LEEF 2.0 payload");
        let mut header = Vec::new();
        let mut field = String::new();
        let mut chars = payload.chars();
        // Vendor, product, version, event ID and delimiter, each ended by
        // an unescaped pipe.
        while header.len() < 5 {
            match chars.next().expect("complete LEEF header") {
                '\\' => field.push(chars.next().expect("escaped character")),
                '|' => header.push(std::mem::take(&mut field)),
                c => field.push(c),
            }
        }
        assert_eq!(header[4], "^", "delimiter");
        LeefMessage {
            priority: priority.parse().expect("numeric PRI"),
            timestamp,
            hostname,
            app_name,
            msg_id,
            attributes: split_attributes(chars.as_str()),
            header,
        }
    }

    fn get(&self, key: &str) -> Option<&str> {
        self.attributes
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// Splits `key=value^key=value` at unescaped carets and undoes `\\`, `\^`,
/// `\n`, `\r` and `\t`.
fn split_attributes(text: &str) -> Vec<(String, String)> {
    let mut pairs = Vec::new();
    let mut field = String::new();
    let mut chars = text.chars();
    let mut finish = |field: &mut String| {
        let taken = std::mem::take(field);
        let (key, value) = taken.split_once('=').expect("key=value");
        pairs.push((key.to_owned(), value.to_owned()));
    };
    while let Some(c) = chars.next() {
        match c {
            '\\' => field.push(match chars.next().expect("escaped character") {
                'n' => '\n',
                'r' => '\r',
                't' => '\t',
                other => other,
            }),
            '^' => finish(&mut field),
            c => field.push(c),
        }
    }
    finish(&mut field);
    pairs
}

/// Renders a JSON value as LEEF writes it.
fn leef_text(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}

/// Percent-encodes what LEEF output encodes in values from the request:
/// `^`, `|`, `\`, space and control characters.
fn request_text(value: &str) -> String {
    let mut out = String::new();
    for c in value.chars() {
        if matches!(c, '^' | '|' | '\\' | ' ') || c.is_control() {
            let mut bytes = [0u8; 4];
            for byte in c.encode_utf8(&mut bytes).bytes() {
                out.push_str(&format!("%{byte:02X}"));
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Checks every field of a LEEF message against the JSON event it came from.
fn assert_matches_event(message: &LeefMessage, event: &Value) {
    let category = event["eventCategory"].as_str().unwrap();
    let blocked = category == "BlockedHTTPRequest";
    assert_eq!(message.priority, if blocked { 12 } else { 14 });
    let stamp = event["timestamp"].as_str().unwrap();
    // The event's RFC 3339 time, cut to milliseconds.
    let bare = stamp.trim_end_matches('Z');
    let (seconds, fraction) = bare.split_once('.').unwrap_or((bare, ""));
    let millis = format!("{:0<3}", &fraction[..fraction.len().min(3)]);
    assert_eq!(message.timestamp, format!("{seconds}.{millis}Z"));
    assert_eq!(message.hostname, event["hostName"].as_str().unwrap());
    assert_eq!(message.app_name, "webwarden");
    assert_eq!(message.msg_id, category);
    assert_eq!(message.header[0], "webwarden");
    assert_eq!(message.header[1], "webwarden");
    assert_eq!(message.header[2], event["agentVersion"].as_str().unwrap());
    assert_eq!(message.header[3], category);

    let parsed =
        time::OffsetDateTime::parse(stamp, &time::format_description::well_known::Rfc3339).unwrap();
    let epoch_millis = parsed.unix_timestamp_nanos() / 1_000_000;
    assert_eq!(
        message.get("devTime"),
        Some(epoch_millis.to_string().as_str())
    );
    assert_eq!(message.get("cat"), event["eventName"].as_str());
    assert_eq!(message.get("sev"), Some(if blocked { "6" } else { "1" }));
    assert_eq!(message.get("proto"), Some("TCP"));
    assert_eq!(message.get("identSrc"), Some("127.0.0.1"));
    let predefined = [
        ("sourceIP", "src"),
        ("sourcePort", "srcPort"),
        ("destinationIP", "dst"),
        ("destinationPort", "dstPort"),
        ("bytes", "srcBytes"),
        ("url", "url"),
        ("userName", "usrName"),
        ("hostName", "identHostName"),
    ];
    let object = event.as_object().unwrap();
    for (field, value) in object {
        let key = predefined
            .iter()
            .find(|(name, _)| name == field)
            .map_or(field.as_str(), |(_, key)| key);
        if ["eventCategory", "eventName", "timestamp", "agentVersion"].contains(&field.as_str()) {
            assert_eq!(message.get(field), None, "{field} is written elsewhere");
            continue;
        }
        match value {
            Value::Null => assert_eq!(message.get(key), None, "null {field} is left out"),
            value if ["url", "method", "destinationHost"].contains(&field.as_str()) => {
                let text = request_text(value.as_str().unwrap());
                assert_eq!(message.get(key), Some(text.as_str()), "{field} as {key}");
            }
            value => assert_eq!(
                message.get(key),
                Some(leef_text(value).as_str()),
                "{field} as {key}"
            ),
        }
    }
    let keys: Vec<&str> = message.attributes.iter().map(|(k, _)| k.as_str()).collect();
    let unique: BTreeSet<&str> = keys.iter().copied().collect();
    assert_eq!(unique.len(), keys.len(), "a key appears twice: {keys:?}");
}

// ---------------------------------------------------------------------------
// Syslog with LEEF into rsyslog
// ---------------------------------------------------------------------------

#[tokio::test]
async fn leef_reaches_rsyslog_over_tcp_tls_and_udp() {
    if !rsyslogd_available("leef_reaches_rsyslog_over_tcp_tls_and_udp") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let tls = TestTlsFiles::new(dir.path());
    let rsyslog = Rsyslog::start(dir.path(), &tls);
    let origin = Origin::start(None).await;

    let events_file = dir.path().join("events.jsonl");
    let home = tempfile::tempdir().unwrap();
    let args = os(&[
        &"--siem-syslog",
        &rsyslog.tcp_url(),
        &"--siem-syslog",
        &rsyslog.tls_url(),
        &"--siem-syslog",
        &rsyslog.udp_url(),
        &"--siem-ca",
        &tls.ca_path,
        &"--events-file",
        &events_file,
    ]);
    let webwarden = Webwarden::start_in(home, &options(), &args);
    let proxy = webwarden.proxy_url();

    // Paths with the characters LEEF must escape or keep: caret, pipe,
    // backslash, equals and a tab written as %09.
    let blocked_url = "http://www.evil.example/a^b|c\\d=e%09f?q=1=2";
    let blocked = curl(&proxy, &["--path-as-is"], blocked_url).await;
    assert_eq!(blocked.status, 403, "{}", blocked.stderr);
    let allowed_url = format!("http://127.0.0.1:{}/ok^x|y", origin.port());
    let allowed = curl(&proxy, &["--path-as-is"], &allowed_url).await;
    assert_eq!(allowed.status, 200, "{}", allowed.stderr);

    let json = wait_for_events_file(&events_file, 2).await;
    let by_id: BTreeMap<String, Value> = json
        .into_iter()
        .map(|event| (event["eventId"].as_str().unwrap().to_owned(), event))
        .collect();
    let blocked_event = by_id
        .values()
        .find(|e| e["eventCategory"] == "BlockedHTTPRequest")
        .expect("a blocked event");
    assert_eq!(blocked_event["rule"], "^(.*\\.)?(evil|bad)\\.example$");
    assert!(
        blocked_event["url"].as_str().unwrap().contains('^'),
        "{blocked_event}"
    );

    for listener in [Listener::Tcp, Listener::Tls, Listener::Udp] {
        let lines = rsyslog
            .wait_for_listener_lines(listener, 2, DELIVERY_TIMEOUT)
            .await;
        assert_eq!(lines.len(), 2, "{listener:?}: {lines:#?}");
        for line in &lines {
            assert!(!line.contains('\n'), "{line}");
            assert!(!line.contains('\t'), "{line}");
            let message = LeefMessage::parse(line);
            let id = message.get("eventId").expect("eventId").to_owned();
            let event = by_id
                .get(&id)
                .unwrap_or_else(|| panic!("{listener:?} sent {id}, not in the events file"));
            assert_matches_event(&message, event);
        }
    }
    // The raw rule shows the escapes on the wire.
    let tcp = rsyslog.listener_lines(Listener::Tcp);
    assert!(
        tcp.iter()
            .any(|line| line.contains("^rule=\\^(.*\\\\.)?(evil|bad)\\\\.example$")),
        "{tcp:#?}"
    );
}

/// Waits until the events file at `path` contains at least `count` events.
async fn wait_for_events_file(path: &Path, count: usize) -> Vec<Value> {
    let deadline = std::time::Instant::now() + DELIVERY_TIMEOUT;
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let events: Vec<Value> = text
            .lines()
            .map(|line| serde_json::from_str(line).expect("JSON line"))
            .collect();
        if events.len() >= count {
            return events;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{} of {count} events",
            events.len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

// ---------------------------------------------------------------------------
// QRadar HTTP Receiver with faults
// ---------------------------------------------------------------------------

/// Asserts that every copy of an event that arrived twice is the same.
fn assert_duplicates_identical(receiver: &QradarReceiver) {
    let mut seen: BTreeMap<String, Value> = BTreeMap::new();
    for stored in receiver.events() {
        if let Some(first) = seen.get(&stored.event_id) {
            assert_eq!(
                first, &stored.event,
                "two different events share {}",
                stored.event_id
            );
        } else {
            seen.insert(stored.event_id.clone(), stored.event);
        }
    }
}

#[tokio::test]
async fn http_receiver_faults_lose_no_events() {
    let dir = tempfile::tempdir().unwrap();
    let tls = TestTlsFiles::new(dir.path());
    // One receiver takes one event per POST (no Message Pattern), the other
    // batches split on newlines, with mutual TLS and a short timeout so the
    // slow fault makes it resend.
    let single = QradarReceiver::start(Transport::Https(&tls), EventSplit::Body).await;
    let batched = QradarReceiver::start(Transport::HttpsClientAuth(&tls), EventSplit::Lines).await;
    let origin = Origin::start(None).await;

    let home = tempfile::tempdir().unwrap();
    let batch_sink = format!(
        "[[siem]]\nkind = \"qradar-http\"\nurls = [\"{}\"]\nbatch = true\nca_file = {:?}\nclient_cert = {:?}\nclient_key = {:?}\ntimeout_seconds = 1\n",
        batched.url(),
        tls.ca_path,
        tls.client_cert_path,
        tls.client_key_path,
    );
    let mut args = fast_retry_config(home.path(), &batch_sink);
    args.extend(os(&[
        &"--siem-http",
        &single.url(),
        &"--siem-ca",
        &tls.ca_path,
        &"--events-file",
        &home.path().join("events.jsonl"),
    ]));
    let webwarden = Webwarden::start_in(home, &options(), &args);

    let faults = [
        ("down", Fault::Down),
        ("status-503", Fault::Status(503)),
        ("status-500", Fault::Status(500)),
        ("reset", Fault::Reset),
        ("slow", Fault::Slow(Duration::from_millis(1500))),
    ];
    let mut expected = 0;
    for (name, fault) in faults {
        single.set_fault(fault).await;
        batched.set_fault(fault).await;
        send_requests(&webwarden, &origin, name, 5).await;
        expected += 10;
        // Let the sinks fail and back off before the receivers recover.
        tokio::time::sleep(Duration::from_millis(800)).await;
        single.set_fault(Fault::Up).await;
        batched.set_fault(Fault::Up).await;

        wait_for_events_file(&webwarden.dir.path().join("events.jsonl"), expected).await;
        let ids = file_ids(&webwarden);
        assert_eq!(ids.len(), expected, "each event has its own ID");
        single.wait_for_ids(&ids, DELIVERY_TIMEOUT).await;
        batched.wait_for_ids(&ids, DELIVERY_TIMEOUT).await;
        assert_eq!(single.unique_ids(), ids, "after {name}");
        assert_eq!(batched.unique_ids(), ids, "after {name}");
    }
    assert_duplicates_identical(&single);
    assert_duplicates_identical(&batched);
    // The batched receiver responded later than the sink waits, so the sink
    // sent those events again. Their IDs show the copies.
    assert!(
        batched.duplicates_count() > 0,
        "the slow fault caused no resend"
    );
    assert!(
        webwarden.log().contains("SIEM delivery failed"),
        "{}",
        webwarden.log()
    );
}

#[tokio::test]
async fn http_sink_fails_over_between_collectors() {
    let dir = tempfile::tempdir().unwrap();
    let tls = TestTlsFiles::new(dir.path());
    let first = QradarReceiver::start(Transport::Https(&tls), EventSplit::Body).await;
    let second = QradarReceiver::start(Transport::Https(&tls), EventSplit::Body).await;
    let origin = Origin::start(None).await;
    first.set_fault(Fault::Down).await;

    let home = tempfile::tempdir().unwrap();
    let mut args = fast_retry_config(home.path(), "");
    let collectors = format!("{},{}", first.url(), second.url());
    args.extend(os(&[
        &"--siem-http",
        &collectors,
        &"--siem-ca",
        &tls.ca_path,
        &"--events-file",
        &home.path().join("events.jsonl"),
    ]));
    let webwarden = Webwarden::start_in(home, &options(), &args);
    let events_file = webwarden.dir.path().join("events.jsonl");

    send_requests(&webwarden, &origin, "first-down", 2).await;
    wait_for_events_file(&events_file, 4).await;
    let ids = file_ids(&webwarden);
    second.wait_for_ids(&ids, DELIVERY_TIMEOUT).await;
    assert!(first.unique_ids().is_empty());

    // The sink stays with the collector that worked until it fails.
    first.set_fault(Fault::Up).await;
    second.set_fault(Fault::Status(503)).await;
    send_requests(&webwarden, &origin, "second-failing", 2).await;
    wait_for_events_file(&events_file, 8).await;
    let later: BTreeSet<String> = file_ids(&webwarden).difference(&ids).cloned().collect();
    first.wait_for_ids(&later, DELIVERY_TIMEOUT).await;
    assert!(webwarden
        .log()
        .contains("switched to another QRadar collector"));
}

// ---------------------------------------------------------------------------
// SIGKILL while events flow
// ---------------------------------------------------------------------------

/// Reads the `eventId` of every event in the spool's segment files. A
/// last line without its newline was cut by the kill in mid-write: it was
/// never spooled, and the next start removes it.
fn spooled_ids(data_dir: &Path) -> BTreeSet<String> {
    let mut ids = BTreeSet::new();
    for entry in std::fs::read_dir(data_dir.join("spool")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "jsonl") {
            continue;
        }
        let bytes = std::fs::read(&path).unwrap();
        let text = String::from_utf8_lossy(&bytes);
        for line in text
            .split_inclusive('\n')
            .filter(|line| line.ends_with('\n'))
        {
            let event: Value = serde_json::from_str(line).expect("whole JSON lines in the spool");
            ids.insert(event["eventId"].as_str().unwrap().to_owned());
        }
    }
    ids
}

/// Starts webwarden in `home` with requests flowing through it, waits until
/// `more` events beyond `known` are spooled, runs `before_kill`, and kills
/// it with SIGKILL. Returns the directory and every spooled event ID.
async fn crash_while_loaded(
    home: tempfile::TempDir,
    args: &[OsString],
    origin: &Origin,
    known: usize,
    more: usize,
    before_kill: impl std::future::Future<Output = ()>,
) -> (tempfile::TempDir, BTreeSet<String>) {
    let webwarden = Webwarden::start_in(home, &options(), args);
    let proxy = webwarden.proxy_url();
    let port = origin.port();
    let load = tokio::spawn(async move {
        for n in 0..1000 {
            let _ = curl(&proxy, &[], &format!("http://127.0.0.1:{port}/load/{n}")).await;
        }
    });
    let data_dir = webwarden.dir.path().join("data");
    let deadline = std::time::Instant::now() + DELIVERY_TIMEOUT;
    while spooled_ids(&data_dir).len() < known + more {
        assert!(
            std::time::Instant::now() < deadline,
            "events are not being spooled"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    before_kill.await;
    let home = webwarden.kill_hard();
    load.abort();
    let spooled = spooled_ids(&home.path().join("data"));
    (home, spooled)
}

#[tokio::test]
async fn sigkill_while_events_flow_loses_no_spooled_event() {
    let dir = tempfile::tempdir().unwrap();
    let tls = TestTlsFiles::new(dir.path());
    let receiver = QradarReceiver::start(Transport::Https(&tls), EventSplit::Body).await;
    let origin = Origin::start(None).await;
    let home = tempfile::tempdir().unwrap();
    let mut args = fast_retry_config(home.path(), "");
    args.extend(os(&[
        &"--siem-http",
        &receiver.url(),
        &"--siem-ca",
        &tls.ca_path,
    ]));

    // First crash: the receiver fails, so nothing is delivered and the
    // spool contains a backlog.
    receiver.set_fault(Fault::Status(503)).await;
    let (home, first) = crash_while_loaded(home, &args, &origin, 0, 40, async {}).await;

    // Second crash: the backlog grows past one delivery batch (100 events),
    // then the receiver accepts slowly, so the sink has saved a position
    // inside the backlog and has POSTs in flight when it is killed.
    let cursors = home.path().join("data").join("spool").join("cursors");
    let (home, second) = crash_while_loaded(home, &args, &origin, first.len(), 260, async {
        receiver
            .set_fault(Fault::Slow(Duration::from_millis(50)))
            .await;
        let deadline = std::time::Instant::now() + DELIVERY_TIMEOUT;
        let saved = || std::fs::read_dir(&cursors).is_ok_and(|mut d| d.next().is_some());
        while receiver.unique_ids().len() < 110 || !saved() {
            assert!(
                std::time::Instant::now() < deadline,
                "no delivery after the receiver recovered"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert!(
        second.is_superset(&first),
        "the restart kept the first backlog"
    );
    let stored_before_restart = receiver.unique_ids().len();
    assert!(
        stored_before_restart < second.len(),
        "the receiver already has all {} events; the kill left no backlog",
        second.len()
    );

    receiver.set_fault(Fault::Up).await;
    let webwarden = Webwarden::start_in(home, &options(), &args);
    receiver.wait_for_ids(&second, DELIVERY_TIMEOUT).await;
    assert!(receiver.unique_ids().is_superset(&second));
    assert_duplicates_identical(&receiver);
    drop(webwarden);
}

// ---------------------------------------------------------------------------
// webwarden siem test
// ---------------------------------------------------------------------------

/// Runs `webwarden siem test` with `args` and returns its exit code,
/// stdout and stderr.
async fn siem_test(args: &[OsString]) -> (i32, String, String) {
    let home = tempfile::tempdir().unwrap();
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_webwarden"));
    command
        .arg("siem")
        .arg("test")
        .arg("--data-dir")
        .arg(home.path().join("data"))
        .args(args);
    support::isolate_environment(&mut command, home.path());
    let output = tokio::process::Command::from(command)
        .output()
        .await
        .expect("webwarden runs");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test]
async fn siem_test_reports_each_sink() {
    let dir = tempfile::tempdir().unwrap();
    let tls = TestTlsFiles::new(dir.path());
    let receiver = QradarReceiver::start(Transport::Https(&tls), EventSplit::Body).await;

    let ok = siem_test(&os(&[
        &"--siem-http",
        &receiver.url(),
        &"--siem-ca",
        &tls.ca_path,
    ]))
    .await;
    assert_eq!(ok.0, 0, "{ok:?}");
    assert!(ok.1.starts_with("ok "), "{ok:?}");
    let stored = receiver.events();
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].event["eventName"], "SiemTest");
    assert!(ok.1.contains(&stored[0].event_id), "{ok:?}");

    receiver.set_fault(Fault::Status(503)).await;
    let failed = siem_test(&os(&[
        &"--siem-http",
        &receiver.url(),
        &"--siem-ca",
        &tls.ca_path,
    ]))
    .await;
    assert_eq!(failed.0, 1, "{failed:?}");
    assert!(
        failed.1.contains("FAILED") && failed.1.contains("HTTP 503"),
        "{failed:?}"
    );

    // Without the test CA the receiver's certificate is unknown.
    receiver.set_fault(Fault::Up).await;
    let untrusted = siem_test(&os(&[&"--siem-http", &receiver.url()])).await;
    assert_eq!(untrusted.0, 1, "{untrusted:?}");
    assert!(
        untrusted.1.to_lowercase().contains("certificate"),
        "{untrusted:?}"
    );

    let none = siem_test(&[]).await;
    assert_eq!(none.0, 2, "{none:?}");
    assert!(none.2.contains("no SIEM sink is configured"), "{none:?}");
}
