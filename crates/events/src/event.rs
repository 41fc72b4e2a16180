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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_serializes_with_siem_field_names() {
        let event = Event {
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
        };
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
