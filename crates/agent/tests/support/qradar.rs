//! A stand-in for the IBM QRadar HTTP Receiver log source, with faults that a
//! test switches while it runs.
//!
//! The real receiver runs only inside QRadar and cannot run here. This server
//! reproduces the part that webwarden relies on. It accepts POSTs on
//! 127.0.0.1 over HTTP/1.1 (plain, TLS, or TLS with a required client
//! certificate) and stores the JSON events of each body with their `eventId`.
//! QRadar processes a whole POST body as one event unless the log source has
//! a Message Pattern, a regex for the start of each event ([`EventSplit`]),
//! as IBM's "HTTP Receiver protocol configuration options" page describes.
//! Unlike QRadar, the stand-in rejects a body that is not JSON objects with a
//! string `eventId`, so that a test detects malformed output.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::server::conn::http1;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::{JoinHandle, JoinSet};
use tokio_rustls::TlsAcceptor;

use super::rsyslog::TestTlsFiles;

/// The bound on stopping the listener and its connections for [`Fault::Down`].
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// The bound on binding the port again after [`Fault::Down`].
const REBIND_TIMEOUT: Duration = Duration::from_secs(5);

/// The pause between two polls while a test waits for events.
const POLL_INTERVAL: Duration = Duration::from_millis(20);

/// How the receiver treats the next requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Stores the events and responds 200.
    Up,
    /// Closes the listener and every open connection, so connections are
    /// refused. Switching to any other fault binds the same port again.
    Down,
    /// Stores the events, then waits this long before responding 200. A
    /// client that times out and resends causes duplicates, as with a
    /// receiver that processed the request but responded late.
    Slow(Duration),
    /// Responds with this status and stores nothing.
    Status(u16),
    /// Reads the whole request, then closes the connection without a
    /// response, and stores nothing.
    Reset,
}

/// The protocol of the receiver, as the log source's Communication Type
/// selects it in QRadar (HTTP, HTTPs, or HTTPs with Mutual TLS).
#[derive(Clone, Copy)]
pub enum Transport<'a> {
    /// Plain HTTP.
    Http,
    /// HTTPS with the server certificate of [`TestTlsFiles`].
    Https(&'a TestTlsFiles),
    /// HTTPS that also requires a client certificate signed by the test CA.
    HttpsClientAuth(&'a TestTlsFiles),
}

/// How a request body becomes events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventSplit {
    /// Every non-empty line is one event: the log source has a Message
    /// Pattern that matches the start of each JSON object.
    Lines,
    /// The whole body is one event: the log source has no Message Pattern.
    Body,
}

/// One stored event.
#[derive(Debug, Clone)]
pub struct StoredEvent {
    /// The event's `eventId`.
    pub event_id: String,
    /// The whole JSON object.
    pub event: Value,
}

/// One request the receiver read, whatever the fault.
#[derive(Debug, Clone)]
pub struct ReceivedPost {
    /// The request method, POST unless the client misbehaved.
    pub method: Method,
    /// Path and query.
    pub path: String,
    /// The `Content-Type` header, if present and valid UTF-8.
    pub content_type: Option<String>,
    /// The request body.
    pub body: Bytes,
    /// The status of the response, or `None` when the fault was [`Fault::Reset`].
    pub status: Option<u16>,
}

/// A running stand-in for the QRadar HTTP Receiver on 127.0.0.1. It stops
/// when dropped.
pub struct QradarReceiver {
    addr: SocketAddr,
    scheme: &'static str,
    acceptor: Option<TlsAcceptor>,
    state: Arc<ReceiverState>,
    /// The accept loop, or `None` while the fault is [`Fault::Down`]. The
    /// async lock also keeps two [`QradarReceiver::set_fault`] calls apart.
    server: tokio::sync::Mutex<Option<ServerTask>>,
}

/// What the accept loop and the connections share with the test.
struct ReceiverState {
    fault: Mutex<Fault>,
    split: EventSplit,
    events: Mutex<Vec<StoredEvent>>,
    requests: Mutex<Vec<ReceivedPost>>,
    handshake_errors: Mutex<Vec<String>>,
}

/// The accept loop task and the sender that stops it.
struct ServerTask {
    stop: oneshot::Sender<()>,
    handle: JoinHandle<()>,
}

impl QradarReceiver {
    /// Starts the receiver on a free port of 127.0.0.1, on the current tokio
    /// runtime, with the fault [`Fault::Up`].
    pub async fn start(transport: Transport<'_>, split: EventSplit) -> QradarReceiver {
        let (scheme, acceptor) = match transport {
            Transport::Http => ("http", None),
            Transport::Https(tls) => ("https", Some(tls.server_config(false, &[b"http/1.1"]))),
            Transport::HttpsClientAuth(tls) => {
                ("https", Some(tls.server_config(true, &[b"http/1.1"])))
            }
        };
        let acceptor = acceptor.map(TlsAcceptor::from);
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .expect("bind the QRadar receiver");
        let addr = listener.local_addr().expect("QRadar receiver address");
        let state = Arc::new(ReceiverState {
            fault: Mutex::new(Fault::Up),
            split,
            events: Mutex::new(Vec::new()),
            requests: Mutex::new(Vec::new()),
            handshake_errors: Mutex::new(Vec::new()),
        });
        let server = ServerTask::spawn(listener, acceptor.clone(), Arc::clone(&state));
        QradarReceiver {
            addr,
            scheme,
            acceptor,
            state,
            server: tokio::sync::Mutex::new(Some(server)),
        }
    }

    /// Returns the URL for `--siem-http` and the `urls` setting.
    pub fn url(&self) -> String {
        format!("{}://127.0.0.1:{}/", self.scheme, self.addr.port())
    }

    /// Returns the listen address. It stays the same across [`Fault::Down`].
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Returns the current fault.
    pub fn fault(&self) -> Fault {
        *lock(&self.state.fault)
    }

    /// Switches to `fault` for the next requests. Switching to
    /// [`Fault::Down`] returns once the port refuses connections and every
    /// open connection is closed. Switching back returns once the same port
    /// is bound again. Panics when that port cannot be bound within 5
    /// seconds, or when a [`Fault::Status`] code is not between 100 and 999.
    pub async fn set_fault(&self, fault: Fault) {
        if let Fault::Status(code) = fault {
            assert!(
                StatusCode::from_u16(code).is_ok(),
                "invalid status code {code} for Fault::Status"
            );
        }
        let mut server = self.server.lock().await;
        let previous = std::mem::replace(&mut *lock(&self.state.fault), fault);
        match (previous == Fault::Down, fault == Fault::Down) {
            (false, true) => {
                if let Some(running) = server.take() {
                    running.stop().await;
                }
            }
            (true, false) => *server = Some(self.listen_again().await),
            _ => {}
        }
    }

    /// Returns every stored event in arrival order, duplicates included.
    pub fn events(&self) -> Vec<StoredEvent> {
        lock(&self.state.events).clone()
    }

    /// Returns the distinct `eventId`s of the stored events.
    pub fn unique_ids(&self) -> BTreeSet<String> {
        lock(&self.state.events)
            .iter()
            .map(|event| event.event_id.clone())
            .collect()
    }

    /// Returns how many stored events repeat an `eventId` stored before.
    pub fn duplicates_count(&self) -> usize {
        let events = lock(&self.state.events);
        let unique: BTreeSet<&str> = events.iter().map(|e| e.event_id.as_str()).collect();
        events.len() - unique.len()
    }

    /// Returns how many requests the receiver read, whatever it responded.
    pub fn requests_count(&self) -> usize {
        lock(&self.state.requests).len()
    }

    /// Returns every request the receiver read, in arrival order.
    pub fn requests(&self) -> Vec<ReceivedPost> {
        lock(&self.state.requests).clone()
    }

    /// Returns the errors of failed TLS handshakes, such as a client that
    /// presented no certificate where one is required.
    pub fn handshake_errors(&self) -> Vec<String> {
        lock(&self.state.handshake_errors).clone()
    }

    /// Waits until every id in `ids` was stored. Panics with the missing
    /// ids and the requests so far after `timeout`.
    pub async fn wait_for_ids(&self, ids: &BTreeSet<String>, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let stored = self.unique_ids();
            let missing: Vec<&String> = ids.difference(&stored).collect();
            if missing.is_empty() {
                return;
            }
            if Instant::now() >= deadline {
                let mut statuses: BTreeMap<Option<u16>, usize> = BTreeMap::new();
                for post in self.requests() {
                    *statuses.entry(post.status).or_default() += 1;
                }
                let first: Vec<&String> = missing.iter().copied().take(10).collect();
                panic!(
                    "the QRadar receiver did not store {} of {} event ids within {timeout:?}; \
                     first missing: {first:?}; stored {} events; responses by status: {statuses:?}",
                    missing.len(),
                    ids.len(),
                    self.events().len()
                );
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }

    /// Binds the receiver's port again and starts accepting on it.
    async fn listen_again(&self) -> ServerTask {
        let deadline = Instant::now() + REBIND_TIMEOUT;
        let listener = loop {
            // tokio sets SO_REUSEADDR, so closed connections in TIME_WAIT do
            // not block the bind. Another process may have taken the port.
            match TcpListener::bind(self.addr).await {
                Ok(listener) => break listener,
                Err(err) if Instant::now() >= deadline => panic!(
                    "failed to bind the QRadar receiver to {} again within \
                     {REBIND_TIMEOUT:?}: {err}",
                    self.addr
                ),
                Err(_) => tokio::time::sleep(POLL_INTERVAL).await,
            }
        };
        ServerTask::spawn(listener, self.acceptor.clone(), Arc::clone(&self.state))
    }
}

impl Drop for QradarReceiver {
    fn drop(&mut self) {
        // Dropping the task's JoinSet aborts the open connections.
        if let Some(server) = self.server.get_mut().take() {
            server.handle.abort();
        }
    }
}

impl ServerTask {
    fn spawn(
        listener: TcpListener,
        acceptor: Option<TlsAcceptor>,
        state: Arc<ReceiverState>,
    ) -> ServerTask {
        let (stop, stopped) = oneshot::channel();
        let handle = tokio::spawn(accept_loop(listener, acceptor, state, stopped));
        ServerTask { stop, handle }
    }

    /// Closes the listener and every connection, and waits until they are
    /// closed.
    async fn stop(self) {
        let _ = self.stop.send(());
        tokio::time::timeout(STOP_TIMEOUT, self.handle)
            .await
            .unwrap_or_else(|_| panic!("the QRadar receiver did not stop within {STOP_TIMEOUT:?}"))
            .expect("the QRadar accept loop panicked");
    }
}

/// Accepts connections until `stopped` fires, then closes the listener and
/// waits until every connection task has ended.
async fn accept_loop(
    listener: TcpListener,
    acceptor: Option<TlsAcceptor>,
    state: Arc<ReceiverState>,
    mut stopped: oneshot::Receiver<()>,
) {
    let addr = listener.local_addr().ok();
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            _ = &mut stopped => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let connection = serve_connection(stream, acceptor.clone(), Arc::clone(&state));
                    connections.spawn(connection);
                }
                Err(err) => {
                    // Accept errors such as EMFILE are usually temporary.
                    eprintln!("QRadar receiver on {addr:?}: accept failed: {err}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
        }
    }
    drop(listener);
    connections.shutdown().await;
}

async fn serve_connection(
    stream: TcpStream,
    acceptor: Option<TlsAcceptor>,
    state: Arc<ReceiverState>,
) {
    let Some(acceptor) = acceptor else {
        serve_http(stream, state).await;
        return;
    };
    match acceptor.accept(stream).await {
        Ok(stream) => serve_http(stream, state).await,
        Err(err) => lock(&state.handshake_errors).push(err.to_string()),
    }
}

async fn serve_http<S>(stream: S, state: Arc<ReceiverState>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |request| {
        let state = Arc::clone(&state);
        async move { respond(request, &state).await }
    });
    // A client that goes away, or a service error for Fault::Reset, ends
    // only this connection.
    let _ = http1::Builder::new()
        .serve_connection(TokioIo::new(stream), service)
        .await;
}

/// The service error that makes hyper close the HTTP/1.1 connection without
/// writing a response, for [`Fault::Reset`].
#[derive(Debug)]
struct ResetConnection;

impl std::fmt::Display for ResetConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("connection closed by the Reset fault")
    }
}

impl std::error::Error for ResetConnection {}

type ReceiverBody = Full<Bytes>;

/// Reads the whole request, records it and applies the current fault.
async fn respond(
    request: Request<Incoming>,
    state: &ReceiverState,
) -> Result<Response<ReceiverBody>, ResetConnection> {
    let (parts, body) = request.into_parts();
    // A body that cannot be read means the client went away.
    let body = body
        .collect()
        .await
        .map_err(|_| ResetConnection)?
        .to_bytes();
    let fault = *lock(&state.fault);
    let (status, message, events) = match fault {
        Fault::Reset => (None, String::new(), Vec::new()),
        Fault::Status(code) => (
            Some(code),
            "fault injected by the test".to_owned(),
            Vec::new(),
        ),
        _ if parts.method != Method::POST => {
            (Some(405), "only POST is accepted".to_owned(), Vec::new())
        }
        _ => match parse_events(&body, state.split) {
            Ok(events) => (Some(200), String::new(), events),
            Err(reason) => (Some(400), reason, Vec::new()),
        },
    };

    lock(&state.requests).push(ReceivedPost {
        method: parts.method,
        path: parts
            .uri
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .to_owned(),
        content_type: parts
            .headers
            .get(CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned),
        body,
        status,
    });
    lock(&state.events).extend(events);

    let Some(status) = status else {
        return Err(ResetConnection);
    };
    if let Fault::Slow(delay) = fault {
        tokio::time::sleep(delay).await;
    }
    let mut response = Response::new(Full::new(Bytes::from(message)));
    *response.status_mut() = StatusCode::from_u16(status).expect("status checked in set_fault");
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    Ok(response)
}

/// Parses a request body into events, all or none.
fn parse_events(body: &[u8], split: EventSplit) -> Result<Vec<StoredEvent>, String> {
    let records: Vec<&[u8]> = match split {
        EventSplit::Body => vec![body],
        EventSplit::Lines => body
            .split(|&byte| byte == b'\n')
            .map(|line| line.strip_suffix(b"\r").unwrap_or(line))
            .filter(|line| !line.iter().all(u8::is_ascii_whitespace))
            .collect(),
    };
    if records.is_empty() {
        return Err("the body contains no event".to_owned());
    }
    records
        .into_iter()
        .enumerate()
        .map(|(index, record)| {
            parse_event(record).map_err(|reason| format!("event {index}: {reason}"))
        })
        .collect()
}

fn parse_event(record: &[u8]) -> Result<StoredEvent, String> {
    let event: Value =
        serde_json::from_slice(record).map_err(|err| format!("invalid JSON: {err}"))?;
    if !event.is_object() {
        return Err("not a JSON object".to_owned());
    }
    let event_id = event
        .get("eventId")
        .and_then(Value::as_str)
        .ok_or("missing string eventId")?
        .to_owned();
    Ok(StoredEvent { event_id, event })
}

/// Locks `mutex`, also after a panic in another test thread poisoned it.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
