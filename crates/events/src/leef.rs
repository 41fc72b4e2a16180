//! Syslog messages with a LEEF 2.0 payload, QRadar's native event format.
//!
//! A message is an RFC 5424 header followed by
//! `LEEF:2.0|webwarden|webwarden|VERSION|EVENT ID|^|key=value^key=value...`.
//! The event ID is the record's `eventCategory` and `cat` its `eventName`,
//! the two keys QRadar's event mapping uses. Known fields go to LEEF's
//! predefined keys (`devTime`, `src`, `dstPort`, `usrName`, ...); every other
//! field keeps its JSON name as a custom key.

use std::fmt::Write;
use std::net::IpAddr;

use serde_json::{Map, Value};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// The attribute delimiter, announced in the LEEF header.
const DELIMITER: char = '^';

/// Syslog facility `user`.
const FACILITY: u8 = 1;

/// JSON fields and the predefined LEEF keys they become, in output order.
const PREDEFINED: [(&str, &str); 8] = [
    ("sourceIP", "src"),
    ("sourcePort", "srcPort"),
    ("destinationIP", "dst"),
    ("destinationPort", "dstPort"),
    ("bytes", "srcBytes"),
    ("url", "url"),
    ("userName", "usrName"),
    ("hostName", "identHostName"),
];

/// Fields written in the header or in another form (`eventName` is `cat`,
/// `timestamp` is `devTime`).
const HEADER_FIELDS: [&str; 4] = ["eventCategory", "eventName", "timestamp", "agentVersion"];

/// Formats one spooled JSON record as a syslog message with a LEEF payload.
/// `ident_src` is the machine's address on the connection to the receiver,
/// sent as `identSrc` so QRadar can tie `identHostName` to it.
///
/// # Errors
///
/// Returns a description when the record is not a JSON object.
pub fn format_message(json: &str, ident_src: Option<IpAddr>) -> Result<String, String> {
    let record: Map<String, Value> = serde_json::from_str(json)
        .map_err(|err| format!("spooled event is not a JSON object: {err}"))?;
    Ok(format_record(&record, ident_src))
}

/// Formats a parsed record; see [`format_message`].
pub fn format_record(record: &Map<String, Value>, ident_src: Option<IpAddr>) -> String {
    let text = |key: &str| record.get(key).and_then(Value::as_str).unwrap_or("");
    let category = text("eventCategory");
    let timestamp = record
        .get("timestamp")
        .and_then(Value::as_str)
        .and_then(|value| OffsetDateTime::parse(value, &Rfc3339).ok());
    let (syslog_severity, leef_severity) = match category {
        "BlockedHTTPRequest" => (4, 6),
        "AllowedHTTPRequest" => (6, 1),
        _ => (5, 3),
    };

    let mut out = String::with_capacity(512);
    let _ = write!(
        out,
        "<{}>1 {} {} webwarden - {} - ",
        FACILITY * 8 + syslog_severity,
        syslog_time(timestamp),
        header_token(text("hostName")),
        header_token(category),
    );
    out.push_str("LEEF:2.0|webwarden|webwarden|");
    push_header_field(&mut out, text("agentVersion"));
    out.push('|');
    push_header_field(&mut out, category);
    out.push('|');
    out.push(DELIMITER);
    out.push('|');

    let mut attributes = Attributes { out, first: true };
    if let Some(time) = timestamp {
        let millis = time.unix_timestamp_nanos() / 1_000_000;
        attributes.push("devTime", &millis.to_string());
    }
    if let Some(name) = record.get("eventName") {
        attributes.push_value("cat", name);
    }
    attributes.push("sev", &leef_severity.to_string());
    if matches!(category, "BlockedHTTPRequest" | "AllowedHTTPRequest") {
        attributes.push("proto", "TCP");
    }
    for (field, key) in PREDEFINED {
        if let Some(value) = record.get(field) {
            attributes.push_value(key, value);
        }
    }
    if let Some(address) = ident_src {
        attributes.push("identSrc", &address.to_string());
    }
    let predefined = |field: &str| PREDEFINED.iter().any(|(name, _)| *name == field);
    for (field, value) in record {
        if !predefined(field) && !HEADER_FIELDS.contains(&field.as_str()) {
            attributes.push_value(field, value);
        }
    }
    attributes.out
}

struct Attributes {
    out: String,
    first: bool,
}

impl Attributes {
    fn push(&mut self, key: &str, value: &str) {
        if !self.first {
            self.out.push(DELIMITER);
        }
        self.first = false;
        self.out.push_str(key);
        self.out.push('=');
        push_escaped_value(&mut self.out, value);
    }

    /// Adds a JSON value; null is left out and nested values are written
    /// as compact JSON.
    fn push_value(&mut self, key: &str, value: &Value) {
        match value {
            Value::Null => {}
            Value::String(text) if REQUEST_TEXT_KEYS.contains(&key) => {
                self.push(key, &percent_encode_specials(text));
            }
            Value::String(text) => self.push(key, text),
            Value::Bool(_) | Value::Number(_) | Value::Array(_) | Value::Object(_) => {
                self.push(key, &value.to_string());
            }
        }
    }
}

/// Keys whose values come from the client's request. QRadar's LEEF
/// parser may not honour backslash escapes, so a `^` there could start a
/// forged attribute: these values get `^`, `|`, `\` and control characters
/// percent-encoded instead, which keeps a URL's meaning.
const REQUEST_TEXT_KEYS: [&str; 3] = ["url", "method", "destinationHost"];

fn percent_encode_specials(text: &str) -> std::borrow::Cow<'_, str> {
    let special = |c: char| matches!(c, '^' | '|' | '\\') || c.is_control() || c == ' ';
    if !text.contains(special) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if special(c) {
            let mut bytes = [0u8; 4];
            for byte in c.encode_utf8(&mut bytes).bytes() {
                let _ = write!(out, "%{byte:02X}");
            }
        } else {
            out.push(c);
        }
    }
    std::borrow::Cow::Owned(out)
}

/// Escapes an attribute value: backslash, the delimiter, and the line and
/// tab characters that would end or split the message.
// NOTE: whether QRadar's LEEF parser honours `\^` inside a value was not
// checked against a real QRadar; values from requests avoid it by
// percent-encoding, and only list text such as rules relies on it.
fn push_escaped_value(out: &mut String, value: &str) {
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            DELIMITER => out.push_str("\\^"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
            }
            c => out.push(c),
        }
    }
}

/// Escapes a LEEF header field: backslash and the pipe.
fn push_header_field(out: &mut String, value: &str) {
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '|' => out.push_str("\\|"),
            c if c.is_control() => out.push(' '),
            c => out.push(c),
        }
    }
}

/// Converts a value to an RFC 5424 header field: printable ASCII without
/// spaces, `-` when empty.
fn header_token(value: &str) -> String {
    let token: String = value
        .chars()
        .filter(|c| c.is_ascii_graphic())
        .take(255)
        .collect();
    if token.is_empty() {
        "-".to_owned()
    } else {
        token
    }
}

/// Formats the RFC 5424 timestamp QRadar reads: UTC with milliseconds.
fn syslog_time(time: Option<OffsetDateTime>) -> String {
    let time = time
        .unwrap_or_else(OffsetDateTime::now_utc)
        .to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        time.year(),
        u8::from(time.month()),
        time.day(),
        time.hour(),
        time.minute(),
        time.second(),
        time.millisecond()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blocked_record() -> String {
        serde_json::json!({
            "eventId": "00112233aabbccdd-7",
            "hostName": "ws-17",
            "machineId": "ab".repeat(16),
            "userName": "alice",
            "os": "Debian GNU/Linux 12 (bookworm)",
            "agentVersion": "0.1.0",
            "listVersion": "3f9a",
            "eventName": "Malware",
            "eventCategory": "BlockedHTTPRequest",
            "timestamp": "2026-12-04T19:00:00.123456Z",
            "sourceIP": "127.0.0.1",
            "sourcePort": 50123,
            "destinationIP": null,
            "destinationPort": 443,
            "destinationHost": "bad.example",
            "method": "GET",
            "url": "https://bad.example/a^b\\c|d=e\tf",
            "status": 403,
            "bytes": 0,
            "rule": "^(.*\\.)?bad\\.example$",
            "ruleSource": "list.csv",
            "ruleLine": 4,
            "responseStatus": null,
            "error": null
        })
        .to_string()
    }

    /// Splits the attributes at unescaped delimiters and undoes escapes.
    fn parse_attributes(text: &str) -> Vec<(String, String)> {
        let mut pairs = Vec::new();
        let mut current = String::new();
        let mut chars = text.chars();
        let mut fields = Vec::new();
        while let Some(c) = chars.next() {
            match c {
                '\\' => {
                    let next = chars.next().unwrap();
                    current.push(match next {
                        'n' => '\n',
                        'r' => '\r',
                        't' => '\t',
                        other => other,
                    });
                }
                DELIMITER => fields.push(std::mem::take(&mut current)),
                c => current.push(c),
            }
        }
        fields.push(current);
        for field in fields {
            let (key, value) = field.split_once('=').unwrap();
            pairs.push((key.to_owned(), value.to_owned()));
        }
        pairs
    }

    #[test]
    fn blocked_request_becomes_leef_with_predefined_keys() {
        let message = format_message(&blocked_record(), Some("10.1.2.3".parse().unwrap())).unwrap();
        let (header, attributes) = message.split_once("|^|").unwrap();
        assert_eq!(
            header,
            "<12>1 2026-12-04T19:00:00.123Z ws-17 webwarden - BlockedHTTPRequest - \
             LEEF:2.0|webwarden|webwarden|0.1.0|BlockedHTTPRequest"
        );
        let pairs = parse_attributes(attributes);
        let get = |key: &str| {
            pairs
                .iter()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(get("devTime"), Some("1796410800123"));
        assert_eq!(get("cat"), Some("Malware"));
        assert_eq!(get("sev"), Some("6"));
        assert_eq!(get("src"), Some("127.0.0.1"));
        assert_eq!(get("srcPort"), Some("50123"));
        assert_eq!(get("dst"), None);
        assert_eq!(get("dstPort"), Some("443"));
        assert_eq!(get("url"), Some("https://bad.example/a%5Eb%5Cc%7Cd=e%09f"));
        assert_eq!(get("usrName"), Some("alice"));
        assert_eq!(get("identSrc"), Some("10.1.2.3"));
        assert_eq!(get("identHostName"), Some("ws-17"));
        assert_eq!(get("rule"), Some("^(.*\\.)?bad\\.example$"));
        assert_eq!(get("ruleLine"), Some("4"));
        assert_eq!(get("eventId"), Some("00112233aabbccdd-7"));
        assert_eq!(get("destinationHost"), Some("bad.example"));
        assert_eq!(get("timestamp"), None);
        let keys: Vec<&str> = pairs.iter().map(|(k, _)| k.as_str()).collect();
        let mut unique = keys.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), keys.len(), "a key appears twice: {keys:?}");
    }

    #[test]
    fn escapes_keep_the_message_on_one_line() {
        let message = format_message(&blocked_record(), None).unwrap();
        assert!(!message.contains('\n'));
        assert!(!message.contains('\t'));
        assert!(message.contains("^url=https://bad.example/a%5Eb%5Cc%7Cd=e%09f^"));
        assert!(message.contains("rule=\\^(.*\\\\.)?bad\\\\.example$^"));
    }

    #[test]
    fn request_text_cannot_forge_attributes() {
        let mut record: Map<String, Value> = serde_json::from_str(&blocked_record()).unwrap();
        record.insert("url".into(), "http://x/a^sev=1^cat=Allowed|y".into());
        record.insert("method".into(), "GET^cat=Allowed".into());
        // The rule's own escaped caret would confuse the plain split below.
        record.remove("rule");
        let message = format_record(&record, None);
        let attributes = message.split_once("|^|").unwrap().1;
        let keys: Vec<&str> = attributes
            .split('^')
            .map(|pair| pair.split_once('=').unwrap().0)
            .collect();
        assert_eq!(keys.iter().filter(|k| **k == "cat").count(), 1, "{message}");
        assert_eq!(keys.iter().filter(|k| **k == "sev").count(), 1, "{message}");
        assert!(
            attributes.contains("url=http://x/a%5Esev=1%5Ecat=Allowed%7Cy"),
            "{message}"
        );
        assert!(attributes.contains("method=GET%5Ecat=Allowed"), "{message}");
    }

    #[test]
    fn header_fields_escape_pipes() {
        let mut out = String::new();
        push_header_field(&mut out, "1.0|beta\\x");
        assert_eq!(out, "1.0\\|beta\\\\x");
    }

    #[test]
    fn agent_event_keeps_its_own_fields() {
        let record = serde_json::json!({
            "eventId": "00112233aabbccdd-dropped-9",
            "hostName": "",
            "agentVersion": "0.1.0",
            "eventName": "EventsDropped",
            "eventCategory": "AgentStatus",
            "timestamp": "2026-12-04T19:00:00Z",
            "message": "12 events were lost",
            "dropped": 12
        })
        .to_string();
        let message = format_message(&record, None).unwrap();
        assert!(message.starts_with("<13>1 2026-12-04T19:00:00.000Z - webwarden - AgentStatus - "));
        assert!(message.contains("|AgentStatus|^|devTime=1796410800000^cat=EventsDropped^sev=3^"));
        assert!(message.contains("^dropped=12"));
        assert!(!message.contains("proto="));
    }

    #[test]
    fn non_object_is_an_error() {
        assert!(format_message("[1,2]", None).is_err());
    }
}
