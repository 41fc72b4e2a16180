//! The hudsucker handler: decides every request against the policy, responds to
//! blocked ones with the block page, and records one event per request.
//!
//! hudsucker clones the handler per request, and the requests inside an
//! intercepted CONNECT tunnel get clones of the handler that saw the
//! CONNECT, so the tunnel's decision travels in [`FilterHandler::tunnel`].

use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use http_body_util::BodyExt;
use hudsucker::hyper::body::{Body as HttpBody, Frame, SizeHint};
use hudsucker::hyper::header::{HeaderValue, CONTENT_TYPE, UPGRADE};
use hudsucker::hyper::http::uri::Authority;
use hudsucker::hyper::{Method, Request, Response, StatusCode, Uri};
use hudsucker::hyper_util::client::legacy::connect::HttpInfo;
use hudsucker::hyper_util::client::legacy::Error as ClientError;
use hudsucker::{Body, HttpContext, HttpHandler, RequestOrResponse};
use time::OffsetDateTime;
use webwarden_events::{error_chain, Event, EventCategory, EventSender, ALLOWED_EVENT_NAME};
use webwarden_policy::{host::canonical_ip, Action, Host, Target, Verdict};

use crate::block_page::{self, BlockInfo};
use crate::connector::{check_addresses, find_blocked_address};
use crate::{InspectionMode, ProxySettings, SharedPolicy};

/// How long a tunnel's upstream connect check may take.
const TUNNEL_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// State shared by every clone of the handler.
pub(crate) struct Shared {
    pub policy: SharedPolicy,
    pub events: EventSender,
    pub settings: ProxySettings,
}

/// The decision to block, with what the block page and event show.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockDecision {
    /// The rule's category.
    pub category: String,
    /// The rule as written.
    pub rule: String,
    /// The rule's list.
    pub source: String,
    /// The rule's line.
    pub line: u32,
    /// The blocked address, when an IP rule matched a resolved address.
    pub ip: Option<IpAddr>,
}

impl BlockDecision {
    /// Returns the decision for a block verdict, or `None` for allow.
    pub(crate) fn from_verdict(verdict: &Verdict<'_>, ip: Option<IpAddr>) -> Option<BlockDecision> {
        let rule = verdict.rule.filter(|_| verdict.action == Action::Block)?;
        Some(BlockDecision {
            category: rule.category.to_owned(),
            rule: rule.rule.to_owned(),
            source: rule.source.to_owned(),
            line: rule.line,
            ip,
        })
    }
}

/// The decision of a CONNECT, kept for the requests inside its tunnel.
#[derive(Debug)]
struct Tunnel {
    host: Host,
    port: u16,
    intercept: bool,
    block: Option<BlockDecision>,
}

/// The proxy's request handler.
#[derive(Clone)]
pub struct FilterHandler {
    shared: Arc<Shared>,
    tunnel: Option<Arc<Tunnel>>,
    pending: Option<Arc<PendingEvent>>,
}

impl FilterHandler {
    pub(crate) fn new(shared: Arc<Shared>) -> FilterHandler {
        FilterHandler {
            shared,
            tunnel: None,
            pending: None,
        }
    }
}

impl HttpHandler for FilterHandler {
    async fn handle_request(&mut self, ctx: &HttpContext, req: Request<Body>) -> RequestOrResponse {
        let client = client_addr(ctx.client_addr);
        if !client.ip().is_loopback() {
            tracing::warn!(%client, "rejected a request from a non-local client");
            return text_response(
                StatusCode::FORBIDDEN,
                "webwarden accepts only local clients\n",
            )
            .into();
        }
        if req.method() == Method::CONNECT {
            return self.on_connect(client, req).await;
        }
        if req.uri().authority().is_none() && self.tunnel.is_none() {
            return local_response(&req).into();
        }
        self.on_request(client, req)
    }

    async fn handle_response(&mut self, _ctx: &HttpContext, res: Response<Body>) -> Response<Body> {
        if let Some(pending) = self.pending.take() {
            let remote = res
                .extensions()
                .get::<HttpInfo>()
                .map(|i| i.remote_addr().ip());
            pending.update(|event| {
                event.status = res.status().as_u16();
                event.response_status = Some(res.status().as_u16());
                event.destination_ip = remote.map(canonical_ip).or(event.destination_ip);
            });
        }
        res
    }

    async fn handle_error(&mut self, _ctx: &HttpContext, err: ClientError) -> Response<Body> {
        let pending = self.pending.take();
        if let Some(blocked) = find_blocked_address(&err) {
            let decision = blocked.decision.clone();
            let host = self.event_host(&pending);
            tracing::info!(%host, ip = ?decision.ip, rule = %decision.rule, "blocked by resolved address");
            if let Some(pending) = &pending {
                pending.update(|event| mark_blocked(event, &decision));
            }
            return self.block_response(&hudsucker::hyper::HeaderMap::new(), &host, &decision);
        }
        let reason = error_chain(&err);
        tracing::warn!(error = %reason, "upstream request failed");
        if let Some(pending) = &pending {
            pending.update(|event| {
                event.status = StatusCode::BAD_GATEWAY.as_u16();
                event.error = Some(reason.clone());
            });
        }
        text_response(
            StatusCode::BAD_GATEWAY,
            &format!("webwarden could not reach the server: {reason}\n"),
        )
    }

    async fn should_intercept_connect(&mut self, _ctx: &HttpContext, _req: &Request<Body>) -> bool {
        self.tunnel.as_ref().is_none_or(|t| t.intercept)
    }

    async fn should_intercept_tls(
        &mut self,
        _ctx: &HttpContext,
        _hello: hudsucker::rustls::server::ClientHello<'_>,
    ) -> bool {
        self.tunnel.as_ref().is_none_or(|t| t.intercept)
    }
}

impl FilterHandler {
    /// Decides a CONNECT. Blocked hosts are always intercepted so that the
    /// browser can show the block page; the rest follow the bypass list and
    /// the inspection mode.
    async fn on_connect(
        &mut self,
        client: SocketAddr,
        mut req: Request<Body>,
    ) -> RequestOrResponse {
        let Some(authority) = req.uri().authority().cloned() else {
            return text_response(StatusCode::BAD_REQUEST, "CONNECT needs host:port\n").into();
        };
        let target = match uri_target(req.uri()) {
            Ok(target) => target,
            Err(err) => {
                tracing::debug!(%authority, %err, "rejected an invalid CONNECT target");
                let body = format!("invalid CONNECT target: {err}\n");
                return text_response(StatusCode::BAD_REQUEST, &body).into();
            }
        };
        let Some(port) = target.port().filter(|port| *port != 0) else {
            let body = "CONNECT needs host:port with a port from 1 to 65535\n";
            return text_response(StatusCode::BAD_REQUEST, body).into();
        };
        let policy = self.shared.policy.load();
        let mut block = BlockDecision::from_verdict(&policy.evaluate(&target), target.ip());
        drop(policy);
        let host = target.host().clone();
        let settings = &self.shared.settings;
        let mut intercept = block.is_some()
            || (settings.inspection == InspectionMode::All && !settings.bypasses(&host));

        // A tunnel is never decrypted, so its resolved addresses are checked
        // here, and a failed connect is reported as 502 before the 200.
        let mut tunnel_ip = target.ip();
        if !intercept {
            match self.check_tunnel(&host, port).await {
                Ok(TunnelCheck::Open(ip)) => tunnel_ip = Some(ip),
                Ok(TunnelCheck::Blocked(decision)) => {
                    block = Some(decision);
                    intercept = true;
                }
                Err(reason) => {
                    tracing::warn!(%authority, error = %reason, "tunnel connect failed");
                    let mut event = self.new_event(client, &req, &host, port, authority.as_str());
                    event.status = StatusCode::BAD_GATEWAY.as_u16();
                    event.error = Some(reason.clone());
                    self.shared.events.send(event);
                    let body = format!("webwarden could not reach {authority}: {reason}\n");
                    return text_response(StatusCode::BAD_GATEWAY, &body).into();
                }
            }
        }
        if !intercept {
            let mut event = self.new_event(client, &req, &host, port, authority.as_str());
            event.status = StatusCode::OK.as_u16();
            event.destination_ip = tunnel_ip;
            self.shared.events.send(event);
        }
        if block.is_some() {
            // hudsucker tunnels data that is neither TLS nor HTTP straight to
            // the CONNECT authority. Port 0 makes that connect fail, so a
            // blocked host is never reached, and the host stays for the leaf.
            if let Ok(blackhole) = format!("{}:0", authority.host()).parse::<Authority>() {
                *req.uri_mut() = Uri::from(blackhole);
            }
        }
        self.tunnel = Some(Arc::new(Tunnel {
            host,
            port,
            intercept,
            block,
        }));
        req.into()
    }

    /// Resolves a tunnel's host, checks the addresses against the IP rules,
    /// and makes one test connection.
    async fn check_tunnel(&self, host: &Host, port: u16) -> Result<TunnelCheck, String> {
        let addrs: Vec<SocketAddr> = match host.ip() {
            Some(ip) => vec![SocketAddr::new(ip, port)],
            None => tokio::net::lookup_host((host.as_str(), port))
                .await
                .map_err(|err| format!("failed to resolve {host}: {err}"))?
                .collect(),
        };
        if let Some(decision) =
            check_addresses(&self.shared.policy, host, addrs.iter().map(|a| a.ip()))
        {
            return Ok(TunnelCheck::Blocked(decision));
        }
        let mut last_error = format!("{host} resolved to no address");
        for addr in addrs {
            let connect = tokio::net::TcpStream::connect(addr);
            match tokio::time::timeout(TUNNEL_CONNECT_TIMEOUT, connect).await {
                Ok(Ok(_)) => return Ok(TunnelCheck::Open(canonical_ip(addr.ip()))),
                Ok(Err(err)) => last_error = format!("failed to connect to {addr}: {err}"),
                Err(_) => last_error = format!("connecting to {addr} timed out"),
            }
        }
        Err(last_error)
    }

    /// Decides an HTTP request: a plain proxy request, or one inside an
    /// intercepted tunnel.
    fn on_request(&mut self, client: SocketAddr, req: Request<Body>) -> RequestOrResponse {
        let tunnel = self.tunnel.clone();
        if let Some(Tunnel {
            host,
            port,
            block: Some(decision),
            ..
        }) = tunnel.as_deref()
        {
            let scheme = req.uri().scheme_str().unwrap_or("https");
            let url = format!(
                "{scheme}://{}{}",
                authority_text(host, *port),
                path_of(req.uri())
            );
            let mut event = self.new_event(client, &req, host, *port, &url);
            mark_blocked(&mut event, decision);
            self.shared.events.send(event);
            return self
                .block_response(req.headers(), host.as_str(), decision)
                .into();
        }

        let target = match uri_target(req.uri()) {
            Ok(target) => target,
            Err(err) => {
                let body = format!("invalid request host: {err}\n");
                return text_response(StatusCode::BAD_REQUEST, &body).into();
            }
        };
        let https = req.uri().scheme_str() == Some("https");
        let port = target.port().unwrap_or(if https { 443 } else { 80 });
        let host = target.host().clone();
        let url = req.uri().to_string();
        let mut event = self.new_event(client, &req, &host, port, &url);

        let policy = self.shared.policy.load();
        let verdict = policy.evaluate(&target);
        if let Some(decision) = BlockDecision::from_verdict(&verdict, target.ip()) {
            mark_blocked(&mut event, &decision);
            self.shared.events.send(event);
            return self
                .block_response(req.headers(), host.as_str(), &decision)
                .into();
        }
        if let Some(rule) = verdict.rule {
            event.rule = Some(rule.rule.to_owned());
            event.rule_source = Some(rule.source.to_owned());
            event.rule_line = Some(rule.line);
        }
        event.destination_ip = target.ip();
        if req.headers().contains_key(UPGRADE) {
            event.status = StatusCode::SWITCHING_PROTOCOLS.as_u16();
        }

        let pending = Arc::new(PendingEvent::new(event, self.shared.events.clone()));
        self.pending = Some(Arc::clone(&pending));
        let (mut parts, body) = req.into_parts();
        strip_hop_by_hop(&mut parts.headers);
        let counted = CountingBody {
            inner: body,
            pending,
        };
        Request::from_parts(parts, Body::from(counted.boxed())).into()
    }

    fn new_event(
        &self,
        client: SocketAddr,
        req: &Request<Body>,
        host: &Host,
        port: u16,
        url: &str,
    ) -> Event {
        Event {
            event_name: ALLOWED_EVENT_NAME.to_owned(),
            event_category: EventCategory::Allowed,
            timestamp: Event::timestamp_of(OffsetDateTime::now_utc()),
            source_ip: client.ip(),
            source_port: client.port(),
            destination_ip: host.ip(),
            destination_port: port,
            destination_host: host.as_str().to_owned(),
            method: req.method().as_str().to_owned(),
            url: url.to_owned(),
            status: 0,
            bytes: 0,
            rule: None,
            rule_source: None,
            rule_line: None,
            response_status: None,
            error: None,
        }
    }

    fn block_response(
        &self,
        headers: &hudsucker::hyper::HeaderMap,
        host: &str,
        decision: &BlockDecision,
    ) -> Response<Body> {
        let time = block_page::display_time(OffsetDateTime::now_utc());
        let info = BlockInfo {
            host,
            category: &decision.category,
            time: &time,
            contact: &self.shared.settings.contact,
        };
        tracing::debug!(%host, category = %decision.category, rule = %decision.rule, "blocked");
        block_page::response(headers, &info)
    }

    fn event_host(&self, pending: &Option<Arc<PendingEvent>>) -> String {
        pending
            .as_ref()
            .and_then(|p| p.read(|e| e.destination_host.clone()))
            .unwrap_or_default()
    }
}

enum TunnelCheck {
    Open(IpAddr),
    Blocked(BlockDecision),
}

fn mark_blocked(event: &mut Event, decision: &BlockDecision) {
    event.event_name = decision.category.clone();
    event.event_category = EventCategory::Blocked;
    event.status = StatusCode::FORBIDDEN.as_u16();
    event.rule = Some(decision.rule.clone());
    event.rule_source = Some(decision.source.clone());
    event.rule_line = Some(decision.line);
    if decision.ip.is_some() {
        event.destination_ip = decision.ip;
    }
}

/// An event that is sent when the last reference goes away: after the
/// response (or error) is known and the request body has been streamed.
struct PendingEvent {
    event: Mutex<Option<Event>>,
    events: EventSender,
}

impl PendingEvent {
    fn new(event: Event, events: EventSender) -> PendingEvent {
        PendingEvent {
            event: Mutex::new(Some(event)),
            events,
        }
    }

    fn update(&self, change: impl FnOnce(&mut Event)) {
        let mut guard = self.event.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(event) = guard.as_mut() {
            change(event);
        }
    }

    fn read<T>(&self, get: impl FnOnce(&Event) -> T) -> Option<T> {
        let guard = self.event.lock().unwrap_or_else(|p| p.into_inner());
        guard.as_ref().map(get)
    }
}

impl Drop for PendingEvent {
    fn drop(&mut self) {
        let event = self
            .event
            .get_mut()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(event) = event {
            self.events.send(event);
        }
    }
}

/// A request body that counts the bytes it passes on.
struct CountingBody {
    inner: Body,
    pending: Arc<PendingEvent>,
}

impl HttpBody for CountingBody {
    type Data = bytes::Bytes;
    type Error = hudsucker::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let frame = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &frame {
            if let Some(data) = frame.data_ref() {
                let len = data.len() as u64;
                self.pending.update(|event| event.bytes += len);
            }
        }
        frame
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Unwraps an IPv4-mapped client address.
fn client_addr(addr: SocketAddr) -> SocketAddr {
    SocketAddr::new(canonical_ip(addr.ip()), addr.port())
}

/// Responds to a request sent to the proxy itself rather than through it.
fn local_response(req: &Request<Body>) -> Response<Body> {
    if req.uri().path() == "/" {
        return text_response(
            StatusCode::OK,
            "webwarden is running. Set this address as your HTTP and HTTPS proxy.\n",
        );
    }
    text_response(StatusCode::NOT_FOUND, "not found\n")
}

fn text_response(status: StatusCode, text: &str) -> Response<Body> {
    let mut response = Response::new(Body::from(text.to_owned()));
    *response.status_mut() = status;
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

/// Builds the target of a request from its URI's host and port; userinfo
/// is ignored, and brackets around IPv6 are removed by [`Host::parse`].
fn uri_target(uri: &Uri) -> Result<Target, String> {
    let authority = uri.authority().ok_or("request without a host")?;
    let host = Host::parse(authority.host()).map_err(|err| err.to_string())?;
    Ok(Target::new(host, authority_port(authority)?))
}

/// Reads the port of an authority: `None` when there is none, an error when
/// it is not a number from 0 to 65535 (the `http` crate reads those as none).
fn authority_port(authority: &Authority) -> Result<Option<u16>, String> {
    let text = authority.as_str();
    let host_port = text.rsplit_once('@').map_or(text, |(_, rest)| rest);
    let rest = host_port
        .strip_prefix(authority.host())
        .unwrap_or(host_port);
    match rest.strip_prefix(':') {
        None if rest.is_empty() => Ok(None),
        Some(port) => port
            .parse::<u16>()
            .map(Some)
            .map_err(|_| format!("invalid port {port:?}")),
        None => Err(format!("invalid authority {text:?}")),
    }
}

/// Removes the hop-by-hop headers (RFC 9110, section 7.6.1) and every header
/// that `Connection` names, so that proxy credentials and connection options
/// never reach the origin. A WebSocket upgrade keeps `Connection` and
/// `Upgrade`, which hudsucker needs to recognize it.
fn strip_hop_by_hop(headers: &mut hudsucker::hyper::HeaderMap) {
    use hudsucker::hyper::header::{CONNECTION, PROXY_AUTHORIZATION, TE, TRAILER};

    let upgrade = headers.contains_key(UPGRADE);
    let named: Vec<String> = headers
        .get_all(CONNECTION)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(|name| name.trim().to_ascii_lowercase())
        .filter(|name| !name.is_empty())
        .filter(|name| !upgrade || name != "upgrade")
        .collect();
    for name in &named {
        headers.remove(name.as_str());
    }
    for name in ["keep-alive", "proxy-connection"] {
        headers.remove(name);
    }
    headers.remove(PROXY_AUTHORIZATION);
    headers.remove(TE);
    headers.remove(TRAILER);
    if !upgrade {
        headers.remove(CONNECTION);
    }
}

/// Formats `host:port` for a URL, leaving out the default HTTPS port.
fn authority_text(host: &Host, port: u16) -> String {
    let host = match host.ip() {
        Some(IpAddr::V6(_)) => format!("[{host}]"),
        _ => host.to_string(),
    };
    if port == 443 {
        host
    } else {
        format!("{host}:{port}")
    }
}

fn path_of(uri: &Uri) -> &str {
    uri.path_and_query().map_or("/", |p| p.as_str())
}
