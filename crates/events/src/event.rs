//! The event record and its JSON form.

use std::net::IpAddr;

use serde::Serialize;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// `eventName` of an allowed request; blocked requests carry their category.
pub const ALLOWED_EVENT_NAME: &str = "AllowedHTTPRequest";

/// `eventCategory`: whether the request was let through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum EventCategory {
    /// The request was sent upstream (it may still have failed there).
    #[serde(rename = "AllowedHTTPRequest")]
    Allowed,
    /// The proxy responded with the block page.
    #[serde(rename = "BlockedHTTPRequest")]
    Blocked,
    /// A report about the agent itself, not about a request.
    #[serde(rename = "AgentStatus")]
    Agent,
}

impl EventCategory {
    /// Returns the category's name in exported events (`eventCategory`, the
    /// LEEF event ID).
    pub fn as_str(self) -> &'static str {
        match self {
            EventCategory::Allowed => "AllowedHTTPRequest",
            EventCategory::Blocked => "BlockedHTTPRequest",
            EventCategory::Agent => "AgentStatus",
        }
    }
}

/// `eventName` of the report that events were lost before delivery.
pub const EVENTS_DROPPED_EVENT_NAME: &str = "EventsDropped";

/// `eventName` of the event `webwarden siem test` sends.
pub const SIEM_TEST_EVENT_NAME: &str = "SiemTest";

/// `eventName` of the report that the agent stopped, sent as it stops.
pub const AGENT_STOPPED_EVENT_NAME: &str = "AgentStopped";

/// `eventName` of the report that the employee paused filtering.
pub const FILTERING_PAUSED_EVENT_NAME: &str = "FilteringPaused";

/// `eventName` of the report that filtering runs again after a pause.
pub const FILTERING_RESUMED_EVENT_NAME: &str = "FilteringResumed";

/// A report about the agent itself (lost events, list updates, tests),
/// exported beside the request events.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AgentEvent {
    /// The event's name, for example [`EVENTS_DROPPED_EVENT_NAME`].
    pub event_name: String,
    /// Always [`EventCategory::Agent`].
    pub event_category: EventCategory,
    /// When it happened, UTC, RFC 3339.
    pub timestamp: String,
    /// A sentence for people reading the event.
    pub message: String,
    /// Further fields, exported as they are.
    #[serde(flatten)]
    pub details: serde_json::Map<String, serde_json::Value>,
}

impl AgentEvent {
    /// Creates an agent event stamped with the current time.
    pub fn now(event_name: &str, message: String) -> AgentEvent {
        AgentEvent {
            event_name: event_name.to_owned(),
            event_category: EventCategory::Agent,
            timestamp: Event::timestamp_of(OffsetDateTime::now_utc()),
            message,
            details: serde_json::Map::new(),
        }
    }

    /// Creates the report that `dropped` events were lost, and why.
    pub fn dropped(dropped: u64, reason: &str) -> AgentEvent {
        let mut event = AgentEvent::now(
            EVENTS_DROPPED_EVENT_NAME,
            format!("{dropped} events were lost before delivery: {reason}"),
        );
        event.details.insert("dropped".to_owned(), dropped.into());
        event.details.insert("reason".to_owned(), reason.into());
        event
    }
}

/// Anything the exporter carries: a request event or an agent event.
#[derive(Debug, Clone, PartialEq)]
pub enum SiemEvent {
    /// One handled request.
    Request(Event),
    /// A report about the agent.
    Agent(AgentEvent),
}

impl From<Event> for SiemEvent {
    fn from(event: Event) -> SiemEvent {
        SiemEvent::Request(event)
    }
}

impl From<AgentEvent> for SiemEvent {
    fn from(event: AgentEvent) -> SiemEvent {
        SiemEvent::Agent(event)
    }
}

impl SiemEvent {
    /// Writes the event as one JSON object.
    pub(crate) fn write_json(&self, out: &mut Vec<u8>) {
        let written = match self {
            SiemEvent::Request(event) => serde_json::to_writer(&mut *out, event),
            SiemEvent::Agent(event) => serde_json::to_writer(&mut *out, event),
        };
        written.expect("events serialize to memory");
    }
}

/// One handled request. Field names follow the SIEM mapping
/// (`eventName`, `sourceIP`, ...); absent values serialize as null.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Event {
    /// The blocking category, or [`ALLOWED_EVENT_NAME`].
    pub event_name: String,
    /// Allowed or blocked.
    pub event_category: EventCategory,
    /// When the request arrived, UTC, RFC 3339.
    pub timestamp: String,
    /// The client address, IPv4-mapped IPv6 unwrapped.
    #[serde(rename = "sourceIP")]
    pub source_ip: IpAddr,
    /// The client port.
    pub source_port: u16,
    /// The address the proxy connected to, when it connected.
    #[serde(rename = "destinationIP")]
    pub destination_ip: Option<IpAddr>,
    /// The destination port.
    pub destination_port: u16,
    /// The normalized destination host.
    pub destination_host: String,
    /// The HTTP method (`CONNECT` for a tunnel that was not decrypted).
    pub method: String,
    /// The request URL (`host:port` for a tunnel that was not decrypted).
    pub url: String,
    /// The HTTP status sent to the client.
    pub status: u16,
    /// Request body bytes sent upstream, counted while streaming.
    pub bytes: u64,
    /// The deciding rule as written in its list, if a rule matched.
    pub rule: Option<String>,
    /// The list the rule came from.
    pub rule_source: Option<String>,
    /// The rule's 1-based line in its list.
    pub rule_line: Option<u32>,
    /// The status of the upstream server's response, if there was one.
    pub response_status: Option<u16>,
    /// The failure, for requests that failed upstream.
    pub error: Option<String>,
}

impl Event {
    /// Formats a time as the events' RFC 3339 UTC timestamp.
    pub fn timestamp_of(time: OffsetDateTime) -> String {
        time.to_offset(time::UtcOffset::UTC)
            .format(&Rfc3339)
            .unwrap_or_else(|_| String::from("1970-01-01T00:00:00Z"))
    }
}

/// Returns a blocked request event for tests.
#[cfg(test)]
pub(crate) fn sample_event() -> Event {
    Event {
        event_name: "Gambling".to_owned(),
        event_category: EventCategory::Blocked,
        timestamp: Event::timestamp_of(OffsetDateTime::UNIX_EPOCH),
        source_ip: "127.0.0.1".parse().unwrap(),
        source_port: 50000,
        destination_ip: None,
        destination_port: 443,
        destination_host: "bet.example".to_owned(),
        method: "GET".to_owned(),
        url: "https://bet.example/".to_owned(),
        status: 403,
        bytes: 0,
        rule: Some("(.*\\.)?bet\\.example".to_owned()),
        rule_source: Some("blacklist.csv".to_owned()),
        rule_line: Some(7),
        response_status: None,
        error: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_serializes_with_siem_field_names() {
        let event = sample_event();
        let json = serde_json::to_value(&event).unwrap();
        assert_eq!(json["eventName"], "Gambling");
        assert_eq!(json["eventCategory"], "BlockedHTTPRequest");
        assert_eq!(json["timestamp"], "1970-01-01T00:00:00Z");
        assert_eq!(json["sourceIP"], "127.0.0.1");
        assert!(json["destinationIP"].is_null());
        assert_eq!(json["destinationPort"], 443);
        assert_eq!(json["destinationHost"], "bet.example");
        assert_eq!(json["ruleLine"], 7);
        assert!(json["responseStatus"].is_null());
    }
}
