//! Host normalization: turns what a user or a browser supplies (a URL, `host`,
//! `host:port`, an IP literal) into the canonical form the matcher compares.
//!
//! A canonical host name is lower case, in punycode (IDNA/UTS 46), without a
//! trailing dot, and contains only `a-z`, `0-9`, `-`, `_` and dots. An IP
//! literal is kept as an address; IPv4-mapped IPv6 addresses are unwrapped.

use std::fmt;
use std::net::{IpAddr, Ipv6Addr};

use thiserror::Error;

/// Maximum length of a host name in octets (RFC 1035, without the root dot).
pub const MAX_HOST_LEN: usize = 253;

/// Maximum length of one label in octets (RFC 1035).
pub const MAX_LABEL_LEN: usize = 63;

/// The reason a host or target was rejected.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum HostError {
    /// The input contains no host at all.
    #[error("empty host")]
    Empty,
    /// The host contains a character that no host name may contain.
    #[error("host {host:?} contains {ch:?}, which is not allowed in a host name")]
    InvalidChar {
        /// The host as given.
        host: String,
        /// The first character that is not allowed.
        ch: char,
    },
    /// Two dots in a row, or a dot at the start.
    #[error("host {host:?} has an empty label")]
    EmptyLabel {
        /// The host as given.
        host: String,
    },
    /// A label longer than 63 octets.
    #[error("host {host:?} has a label longer than {MAX_LABEL_LEN} characters")]
    LabelTooLong {
        /// The host as given.
        host: String,
    },
    /// A host longer than 253 octets.
    #[error("host {host:?} is longer than {MAX_HOST_LEN} characters")]
    TooLong {
        /// The host as given.
        host: String,
    },
    /// The IDNA conversion to punycode failed.
    #[error("host {host:?} is not a valid internationalized domain name")]
    Idna {
        /// The host as given.
        host: String,
    },
    /// The last label is numeric, so the host reads as an IPv4 address, but
    /// it is not a valid one.
    #[error("host {host:?} ends in a numeric label but is not a valid IPv4 address")]
    NumericName {
        /// The host as given.
        host: String,
    },
    /// Text in brackets or with several colons that is not an IPv6 address.
    #[error("{host:?} is not a valid IPv6 address")]
    InvalidIpv6 {
        /// The text as given.
        host: String,
    },
    /// The port after the host is not a number from 0 to 65535.
    #[error("invalid port {port:?} in {input:?}; expected a number from 0 to 65535")]
    InvalidPort {
        /// The whole input.
        input: String,
        /// The port text.
        port: String,
    },
    /// The input looks like a URL but does not parse as one.
    #[error("invalid URL {input:?}: {reason}")]
    InvalidUrl {
        /// The whole input.
        input: String,
        /// The URL parser's message.
        reason: String,
    },
}

/// A normalized host: either a canonical host name or an IP address.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Host {
    text: String,
    ip: Option<IpAddr>,
}

impl Host {
    /// Parses and normalizes a bare host: a name, an IPv4 address, or an IPv6
    /// address with or without brackets. A port is not accepted here.
    ///
    /// # Errors
    ///
    /// Returns a [`HostError`] that names the host and the rule it breaks.
    pub fn parse(raw: &str) -> Result<Host, HostError> {
        let raw = raw.trim();
        if raw.is_empty() {
            return Err(HostError::Empty);
        }
        if let Some(inner) = raw.strip_prefix('[') {
            let inner = inner
                .strip_suffix(']')
                .ok_or_else(|| HostError::InvalidIpv6 {
                    host: raw.to_owned(),
                })?;
            let ip: Ipv6Addr = inner.parse().map_err(|_| HostError::InvalidIpv6 {
                host: raw.to_owned(),
            })?;
            return Ok(Host::from_ip(IpAddr::V6(ip)));
        }
        if raw.contains(':') {
            let ip: Ipv6Addr = raw.parse().map_err(|_| HostError::InvalidIpv6 {
                host: raw.to_owned(),
            })?;
            return Ok(Host::from_ip(IpAddr::V6(ip)));
        }
        let trimmed = raw.strip_suffix('.').unwrap_or(raw);
        if !ends_in_number(trimmed) {
            return Ok(Host {
                text: normalize_name(raw)?,
                ip: None,
            });
        }

        // A name whose last label is a number is an IPv4 address in any of
        // the forms browsers accept (`127.1`, `0x7f000001`), as the URL
        // standard's host parser reads it.
        match url::Host::parse(trimmed) {
            Ok(url::Host::Ipv4(ip)) => Ok(Host::from_ip(IpAddr::V4(ip))),
            _ => Err(HostError::NumericName {
                host: raw.to_owned(),
            }),
        }
    }

    /// Builds a host from an IP address, unwrapping IPv4-mapped IPv6.
    pub fn from_ip(ip: IpAddr) -> Host {
        let ip = canonical_ip(ip);
        Host {
            text: ip.to_string(),
            ip: Some(ip),
        }
    }

    /// Returns the canonical text: the host name, or the address in its standard form
    /// (dotted quad, or RFC 5952 for IPv6, without brackets).
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Returns the address when the host is an IP literal.
    pub fn ip(&self) -> Option<IpAddr> {
        self.ip
    }
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// The subject of one lookup: a host, the IP address the connection goes to
/// (if known), and the port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    host: Host,
    ip: Option<IpAddr>,
    port: Option<u16>,
}

impl Target {
    /// Builds a target for a host with no known destination address beyond
    /// the host itself (an IP-literal host is its own destination).
    pub fn new(host: Host, port: Option<u16>) -> Target {
        Target {
            ip: host.ip(),
            host,
            port,
        }
    }

    /// Parses a target as a user writes it: a URL (`https://host:port/path`),
    /// `host/path`, `host`, `host:port`, `[ipv6]:port`, or an IP address.
    /// For a URL the port is the explicit one or the scheme's default.
    ///
    /// # Errors
    ///
    /// Returns a [`HostError`] for an empty input, an invalid URL, host or port.
    pub fn parse(input: &str) -> Result<Target, HostError> {
        let input = input.trim();
        if input.is_empty() {
            return Err(HostError::Empty);
        }
        if has_scheme(input) {
            return parse_url(input, input);
        }
        if input.contains('/') {
            return parse_url(&format!("http://{input}"), input);
        }
        let (host, port) = split_port(input)?;
        Ok(Target::new(Host::parse(host)?, port))
    }

    /// Sets the address the connection actually goes to, for example the
    /// result of name resolution. IPv4-mapped IPv6 addresses are unwrapped.
    pub fn with_ip(mut self, ip: IpAddr) -> Target {
        self.ip = Some(canonical_ip(ip));
        self
    }

    /// Returns the normalized host.
    pub fn host(&self) -> &Host {
        &self.host
    }

    /// Returns the destination address, if known.
    pub fn ip(&self) -> Option<IpAddr> {
        self.ip
    }

    /// Returns the port, if the input named one or implied one through its scheme.
    pub fn port(&self) -> Option<u16> {
        self.port
    }
}

/// Unwraps an IPv4-mapped IPv6 address (`::ffff:a.b.c.d`) to IPv4.
pub fn canonical_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(v6),
        },
        IpAddr::V4(_) => ip,
    }
}

/// Normalizes a host name: trailing dot removed, IDNA to punycode (which
/// also lowercases), then checked label by label.
pub(crate) fn normalize_name(raw: &str) -> Result<String, HostError> {
    let trimmed = raw.strip_suffix('.').unwrap_or(raw);
    if trimmed.is_empty() {
        return Err(HostError::Empty);
    }
    let ascii = if trimmed.is_ascii() {
        trimmed.to_ascii_lowercase()
    } else {
        idna::domain_to_ascii(trimmed).map_err(|_| HostError::Idna {
            host: raw.to_owned(),
        })?
    };
    check_name(&ascii, raw)?;

    // Only names that contain a punycode label need the IDNA round trip: it
    // rejects `xn--` labels that do not decode.
    if ascii.contains("xn--") && idna::domain_to_ascii(&ascii).is_err() {
        return Err(HostError::Idna {
            host: raw.to_owned(),
        });
    }
    Ok(ascii)
}

fn check_name(name: &str, raw: &str) -> Result<(), HostError> {
    if name.len() > MAX_HOST_LEN {
        return Err(HostError::TooLong {
            host: raw.to_owned(),
        });
    }
    if let Some(ch) = name.chars().find(|&c| !is_host_char(c)) {
        return Err(HostError::InvalidChar {
            host: raw.to_owned(),
            ch,
        });
    }
    for label in name.split('.') {
        if label.is_empty() {
            return Err(HostError::EmptyLabel {
                host: raw.to_owned(),
            });
        }
        if label.len() > MAX_LABEL_LEN {
            return Err(HostError::LabelTooLong {
                host: raw.to_owned(),
            });
        }
    }

    if ends_in_number(name) {
        return Err(HostError::NumericName {
            host: raw.to_owned(),
        });
    }
    Ok(())
}

/// Checks whether the last label is a number (decimal, or hexadecimal with
/// `0x`), which makes browsers read the whole host as an IPv4 address.
fn ends_in_number(name: &str) -> bool {
    let last = name.rsplit('.').next().unwrap_or(name);
    let hex = last.strip_prefix("0x").or_else(|| last.strip_prefix("0X"));
    match hex {
        Some(digits) => digits.bytes().all(|b| b.is_ascii_hexdigit()),
        None => !last.is_empty() && last.bytes().all(|b| b.is_ascii_digit()),
    }
}

/// Checks whether `c` may appear in a canonical host name. Underscores are accepted
/// because real DNS names and public blocklists contain them.
pub(crate) fn is_host_char(c: char) -> bool {
    matches!(c, 'a'..='z' | '0'..='9' | '-' | '_' | '.')
}

fn parse_url(url_text: &str, input: &str) -> Result<Target, HostError> {
    let url = url::Url::parse(url_text).map_err(|err| HostError::InvalidUrl {
        input: input.to_owned(),
        reason: err.to_string(),
    })?;
    let port = url.port_or_known_default();
    let host = match url.host() {
        Some(url::Host::Domain(name)) => Host::parse(name)?,
        Some(url::Host::Ipv4(ip)) => Host::from_ip(IpAddr::V4(ip)),
        Some(url::Host::Ipv6(ip)) => Host::from_ip(IpAddr::V6(ip)),
        None => return Err(HostError::Empty),
    };
    Ok(Target::new(host, port))
}

/// Checks whether the input starts with a URL scheme and a slash
/// (`https:/`, `ftp://`), unlike `host:port/path`.
fn has_scheme(input: &str) -> bool {
    let Some((scheme, rest)) = input.split_once(':') else {
        return false;
    };
    let mut chars = scheme.chars();
    let valid_scheme = chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c));
    valid_scheme && rest.starts_with('/')
}

/// Splits `host:port` and `[v6]:port`. Bare IPv6 (several colons, no
/// brackets) is returned whole with no port.
fn split_port(input: &str) -> Result<(&str, Option<u16>), HostError> {
    let port_text = if input.starts_with('[') {
        input
            .rfind("]:")
            .map(|end| (&input[..=end], &input[end + 2..]))
    } else if input.matches(':').count() == 1 {
        input.split_once(':')
    } else {
        None
    };
    let Some((host, port)) = port_text else {
        return Ok((input, None));
    };
    let port = port.parse::<u16>().map_err(|_| HostError::InvalidPort {
        input: input.to_owned(),
        port: port.to_owned(),
    })?;
    Ok((host, Some(port)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn host(input: &str) -> String {
        Target::parse(input).unwrap().host().as_str().to_owned()
    }

    #[test]
    fn lowercases_and_strips_trailing_dot() {
        assert_eq!(host("WWW.Example.COM."), "www.example.com");
    }

    #[test]
    fn converts_idn_to_punycode() {
        assert_eq!(host("Bücher.de"), "xn--bcher-kva.de");
        assert_eq!(host("xn--bcher-kva.de"), "xn--bcher-kva.de");
    }

    #[test]
    fn splits_port_from_host() {
        let target = Target::parse("example.com:8443").unwrap();
        assert_eq!(target.host().as_str(), "example.com");
        assert_eq!(target.port(), Some(8443));
    }

    #[test]
    fn url_gives_host_and_default_port() {
        let target = Target::parse("https://user@Example.com/path?q=1#x").unwrap();
        assert_eq!(target.host().as_str(), "example.com");
        assert_eq!(target.port(), Some(443));
        assert_eq!(host("example.com/some/path"), "example.com");
    }

    #[test]
    fn ipv6_brackets_are_stripped() {
        let target = Target::parse("[2001:DB8::1]:443").unwrap();
        assert_eq!(target.host().as_str(), "2001:db8::1");
        assert_eq!(target.port(), Some(443));
        assert_eq!(host("[2001:db8::1]"), "2001:db8::1");
        assert_eq!(host("2001:db8::1"), "2001:db8::1");
    }

    #[test]
    fn numeric_hosts_read_as_browsers_do() {
        let cases = [
            ("1.2.3", "1.2.0.3"),
            ("127.1", "127.0.0.1"),
            ("0x7f000001", "127.0.0.1"),
            ("10.0.0.0x1", "10.0.0.1"),
            ("http://0x7f000001/", "127.0.0.1"),
            ("192.0.2.1.", "192.0.2.1"),
        ];
        for (input, expected) in cases {
            let target = Target::parse(input).unwrap();
            assert_eq!(target.host().as_str(), expected, "{input}");
            assert_eq!(target.ip(), Some(expected.parse().unwrap()), "{input}");
        }
        assert_eq!(host("https:/www.example.com/x"), "www.example.com");
        assert_eq!(host("localhost:8080/path"), "localhost");
    }

    #[test]
    fn ipv4_mapped_ipv6_is_unwrapped() {
        let target = Target::parse("[::ffff:192.0.2.7]:80").unwrap();
        assert_eq!(target.host().as_str(), "192.0.2.7");
        assert_eq!(target.ip(), Some("192.0.2.7".parse().unwrap()));
        let resolved = Target::parse("example.com")
            .unwrap()
            .with_ip("::ffff:198.51.100.1".parse().unwrap());
        assert_eq!(resolved.ip(), Some("198.51.100.1".parse().unwrap()));
    }

    #[test]
    fn bad_hosts_are_rejected_with_reason() {
        let cases = [
            ("", "empty host"),
            ("exa mple.com", "not allowed in a host name"),
            ("a..b.com", "empty label"),
            (".example.com", "empty label"),
            ("*.example.com", "not allowed in a host name"),
            ("300.1.1.1", "not a valid IPv4 address"),
            ("1.2.3.4.5", "not a valid IPv4 address"),
            ("[2001:db8::1", "not a valid IPv6 address"),
            ("2001:db8:::1", "not a valid IPv6 address"),
            ("example.com:http", "invalid port"),
            ("example.com:70000", "invalid port"),
            ("xn--zz.com", "not a valid internationalized domain name"),
            ("http://exa mple.com/", "invalid URL"),
        ];
        for (input, expected) in cases {
            let err = Target::parse(input).unwrap_err().to_string();
            assert!(err.contains(expected), "{input:?} gave {err:?}");
        }
        let long_label = format!("{}.com", "a".repeat(64));
        assert!(matches!(
            Target::parse(&long_label),
            Err(HostError::LabelTooLong { .. })
        ));
        let long_host = format!("{}com", "abcdefghi.".repeat(26));
        assert!(matches!(
            Target::parse(&long_host),
            Err(HostError::TooLong { .. })
        ));
    }

    proptest! {
        #[test]
        fn normalization_is_idempotent(name in "[a-zA-Z0-9_-]{1,20}(\\.[a-zA-Z0-9-]{1,20}){0,4}\\.?") {
            if let Ok(first) = Host::parse(&name) {
                let again = Host::parse(first.as_str()).unwrap();
                prop_assert_eq!(first, again);
            }
        }

        #[test]
        fn normalized_names_use_only_host_characters(name in "\\PC{1,40}") {
            if let Ok(host) = Host::parse(&name) {
                if host.ip().is_none() {
                    prop_assert!(host.as_str().chars().all(is_host_char));
                    prop_assert!(!host.as_str().ends_with('.'));
                    prop_assert!(host.as_str().len() <= MAX_HOST_LEN);
                }
            }
        }

        #[test]
        fn case_and_trailing_dot_do_not_change_host(name in "[a-z0-9-]{1,15}(\\.[a-z]{2,10}){1,3}") {
            let upper = format!("{}.", name.to_uppercase());
            prop_assert_eq!(Host::parse(&upper).ok(), Host::parse(&name).ok());
        }

        #[test]
        fn ipv4_survives_every_written_form(a: u8, b: u8, c: u8, d: u8, port: u16) {
            let ip = std::net::Ipv4Addr::new(a, b, c, d);
            let forms = [
                ip.to_string(),
                format!("{ip}:{port}"),
                format!("[::ffff:{ip}]:{port}"),
                format!("http://{ip}:{port}/x"),
            ];
            for form in forms {
                let target = Target::parse(&form).unwrap();
                prop_assert_eq!(target.ip(), Some(IpAddr::V4(ip)));
                prop_assert_eq!(target.host().as_str(), ip.to_string());
            }
        }
    }
}
