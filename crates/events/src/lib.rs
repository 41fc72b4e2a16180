//! Events and their export to the SIEM.
//!
//! The proxy records one [`Event`] per request it handles (allowed, blocked
//! or failed upstream) and hands it to [`EventSender::send`], which never
//! waits: events go into a bounded queue, and when it is full the event is
//! counted as dropped, so a slow SIEM can never delay a request.
//!
//! The [`Exporter`] drains the queue into a durable [`Spool`] on disk and
//! stamps each event with a unique ID and the machine's [`Identity`]. It
//! runs one delivery task per sink: the QRadar HTTP Receiver (JSON), syslog
//! with a LEEF payload over TCP, TLS or UDP, or a JSON-lines file. Each sink
//! keeps its own position in the spool and retries with backoff until its
//! receiver accepts, so delivery is at least once and survives restarts and
//! crashes. Receivers drop duplicates by `eventId`.

mod channel;
mod event;
mod export;
mod identity;
pub mod leef;
mod sink;
pub mod spool;
mod tls;

pub use channel::{event_channel, EventObserver, EventReceiver, EventSender};
pub use event::{
    AgentEvent, Event, EventCategory, SiemEvent, AGENT_STOPPED_EVENT_NAME, ALLOWED_EVENT_NAME,
    EVENTS_DROPPED_EVENT_NAME, FILTERING_PAUSED_EVENT_NAME, FILTERING_RESUMED_EVENT_NAME,
    SIEM_TEST_EVENT_NAME,
};
pub use export::{
    check_sink, test_sink, ExportConfig, Exporter, RetryPolicy, SinkStatus, StatusHandle,
};
pub use identity::{app_specific_id, Identity, IdentityHandle};
pub use sink::{
    error_chain, parse_http_url, redirect_location, SinkConfig, SinkError, SyslogTarget,
    SyslogTransport, DEFAULT_TIMEOUT, QRADAR_HTTP_PORT, SYSLOG_PORT, SYSLOG_TLS_PORT,
};
pub use spool::{Spool, SpoolError};
pub use tls::TlsFiles;
