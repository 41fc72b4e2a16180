//! Reading the entries of hosts files, domain lists and IP lists.
//!
//! The rules follow the policy crate's readers, so an entry means the same
//! in the built list as in its source loaded with `--list`. A UTF-8 BOM,
//! CRLF (or bare CR) line ends, blank lines and `#` lines are accepted, and
//! `#` or `;` starts an inline comment. A line that cannot be used is
//! reported with its number and reason, and reading goes on.

use std::net::IpAddr;

use webwarden_policy::host::canonical_ip;
use webwarden_policy::source::MAX_ROW_LEN;
use webwarden_policy::{Format, Host};

/// Names that hosts files map to local addresses. They are never rules, and
/// the list is the one the policy crate's hosts reader skips.
const LOCAL_NAMES: [&str; 13] = [
    "localhost",
    "localhost.localdomain",
    "local",
    "broadcasthost",
    "ip6-localhost",
    "ip6-loopback",
    "ip6-localnet",
    "ip6-mcastprefix",
    "ip6-allnodes",
    "ip6-allrouters",
    "ip6-allhosts",
    "0.0.0.0",
    "127.0.0.1",
];

/// Maximum bytes of a bad line's text kept for its report.
const MAX_REPORTED_TEXT: usize = 200;

/// The hosts a host entry matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum HostKind {
    /// The host itself only: hosts-file entries.
    Exact = 0,
    /// The subdomains of the host but not the host: `*.example.com`.
    Subdomains = 1,
    /// The host and its subdomains: domain-list entries.
    Domain = 2,
}

/// An IPv4 or IPv6 address range with its host bits cleared. IPv4-mapped
/// IPv6 ranges of prefix 96 or longer are stored as IPv4.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct IpRange {
    network: IpAddr,
    prefix: u8,
}

impl IpRange {
    /// Builds a range from an address and a prefix length, clearing host bits.
    /// Returns `None` for a prefix longer than the address.
    pub fn new(address: IpAddr, prefix: u8) -> Option<IpRange> {
        let range = match address {
            IpAddr::V4(v4) if prefix <= 32 => {
                let bits = u32::from(v4) & v4_mask(prefix);
                IpRange {
                    network: IpAddr::V4(bits.into()),
                    prefix,
                }
            }
            IpAddr::V6(v6) if prefix <= 128 => {
                let bits = u128::from(v6) & v6_mask(prefix);
                IpRange {
                    network: IpAddr::V6(bits.into()),
                    prefix,
                }
            }
            _ => return None,
        };
        Some(range.unwrap_mapped())
    }

    /// Parses an address or a CIDR range (`192.0.2.0/24`, `2001:db8::/32`).
    pub fn parse(text: &str) -> Option<IpRange> {
        if let Ok(address) = text.parse::<IpAddr>() {
            return Some(IpRange::single(address));
        }
        let (address, prefix) = text.split_once('/')?;
        if prefix.is_empty() || !prefix.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        IpRange::new(address.parse().ok()?, prefix.parse().ok()?)
    }

    /// Returns the range of one address.
    pub fn single(address: IpAddr) -> IpRange {
        let address = canonical_ip(address);
        let prefix = match address {
            IpAddr::V4(_) => 32,
            IpAddr::V6(_) => 128,
        };
        IpRange {
            network: address,
            prefix,
        }
    }

    /// Returns the prefix length.
    pub fn prefix(self) -> u8 {
        self.prefix
    }

    /// Checks whether the range is one address.
    pub fn is_single(self) -> bool {
        self.prefix == self.max_prefix()
    }

    /// Returns the enclosing range with the shorter prefix `prefix`.
    pub fn supernet(self, prefix: u8) -> IpRange {
        IpRange::new(self.network, prefix.min(self.prefix)).unwrap_or(self)
    }

    /// Returns the sort key that puts every range before the ranges that
    /// contain it: IPv4 first, then by last address, then longer prefix first.
    pub fn sort_key(self) -> (u8, u128, std::cmp::Reverse<u8>) {
        let (family, last) = match self.network {
            IpAddr::V4(v4) => (4, u128::from(u32::from(v4) | !v4_mask(self.prefix))),
            IpAddr::V6(v6) => (6, u128::from(v6) | !v6_mask(self.prefix)),
        };
        (family, last, std::cmp::Reverse(self.prefix))
    }

    /// Returns the first column of the CSV row for this range: a single address
    /// with escaped dots (`203\.0\.113\.7`), or `network/prefix`. The policy
    /// crate reads both as IP rows.
    pub fn csv_entry(self) -> String {
        if self.is_single() {
            self.network.to_string().replace('.', "\\.")
        } else {
            format!("{}/{}", self.network, self.prefix)
        }
    }

    fn max_prefix(self) -> u8 {
        match self.network {
            IpAddr::V4(_) => 32,
            IpAddr::V6(_) => 128,
        }
    }

    /// Turns an IPv4-mapped IPv6 range into IPv4, since targets are
    /// unwrapped the same way.
    fn unwrap_mapped(self) -> IpRange {
        if let IpAddr::V6(v6) = self.network {
            if let (Some(v4), true) = (v6.to_ipv4_mapped(), self.prefix >= 96) {
                return IpRange {
                    network: IpAddr::V4(v4),
                    prefix: self.prefix - 96,
                };
            }
        }
        self
    }
}

fn v4_mask(prefix: u8) -> u32 {
    u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0)
}

fn v6_mask(prefix: u8) -> u128 {
    u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0)
}

/// One usable entry of a source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry<'a> {
    /// A canonical host name (lower case, punycode, no trailing dot).
    Host(&'a str, HostKind),
    /// An address or range, matched against the destination IP address.
    Ip(IpRange),
}

/// Receives the entries of a source as they are read.
pub trait EntrySink {
    /// Takes one usable entry.
    fn entry(&mut self, entry: Entry<'_>);
    /// Takes a line that was skipped, with its 1-based number and the reason.
    fn bad_line(&mut self, line: u32, text: &str, reason: String);
    /// Counts a hosts-file entry for a local name such as `localhost`.
    fn local_name(&mut self);
}

/// Reads `text` in `format` and feeds every entry and bad line to `sink`.
/// The caller rejects CSV, since its rows are regexes.
pub fn read_entries(text: &[u8], format: Format, sink: &mut impl EntrySink) {
    if text.starts_with(b"\xFF\xFE") || text.starts_with(b"\xFE\xFF") {
        let reason = "the file is UTF-16 encoded; save it as UTF-8".to_owned();
        return sink.bad_line(1, "", reason);
    }
    for (line_no, raw) in lines(text) {
        let Ok(line) = std::str::from_utf8(raw) else {
            let text = String::from_utf8_lossy(raw);
            let reason = "line is not valid UTF-8; save the list as UTF-8".to_owned();
            sink.bad_line(line_no, report_text(&text), reason);
            continue;
        };
        if line.len() > MAX_ROW_LEN {
            let reason = format!("row is longer than {MAX_ROW_LEN} bytes");
            sink.bad_line(line_no, report_text(line), reason);
            continue;
        }
        if let Some(c) = line.chars().find(|c| c.is_control() && *c != '\t') {
            let reason = format!("row contains the control character {c:?}");
            sink.bad_line(line_no, report_text(line), reason);
            continue;
        }
        match format {
            Format::Hosts => read_hosts_line(line_no, line, sink),
            Format::Ips => read_ip_line(line_no, line, sink),
            Format::Domains | Format::Csv => read_domain_line(line_no, line, sink),
        }
    }
}

/// Counts the lines that are not blank and do not start with `#`.
pub fn count_lines(text: &[u8]) -> usize {
    lines(text).count()
}

/// Yields each line that is not blank and not a `#` comment, trimmed, with
/// its 1-based number. A file without any `\n` is split at bare `\r`.
fn lines(text: &[u8]) -> impl Iterator<Item = (u32, &[u8])> {
    let text = text.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(text);
    let separator = if text.contains(&b'\n') { b'\n' } else { b'\r' };
    text.split(move |&b| b == separator)
        .enumerate()
        .filter_map(|(index, line)| {
            let line = line.trim_ascii();
            if line.is_empty() || line.starts_with(b"#") {
                return None;
            }
            Some((u32::try_from(index + 1).unwrap_or(u32::MAX), line))
        })
}

fn report_text(line: &str) -> &str {
    if line.len() <= MAX_REPORTED_TEXT {
        return line;
    }
    let mut end = MAX_REPORTED_TEXT;
    while !line.is_char_boundary(end) {
        end -= 1;
    }
    &line[..end]
}

/// Cuts a trailing `# comment` or `; comment` and trims.
fn strip_inline_comment(line: &str) -> &str {
    let end = line.find(['#', ';']).unwrap_or(line.len());
    line[..end].trim()
}

fn read_hosts_line(line_no: u32, line: &str, sink: &mut impl EntrySink) {
    let line = strip_inline_comment(line);
    if line.is_empty() {
        return;
    }
    let mut fields = line.split_whitespace();
    let address = fields.next().unwrap_or_default();
    if address.parse::<IpAddr>().is_err() {
        let reason = format!(
            "unparsable address {address:?}; a hosts file line starts with an IP address \
             such as 0.0.0.0"
        );
        return sink.bad_line(line_no, line, reason);
    }
    let mut any = false;
    for name in fields {
        any = true;
        let bare = name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase();
        if LOCAL_NAMES.contains(&bare.as_str()) {
            sink.local_name();
            continue;
        }
        match Host::parse(name) {
            Ok(host) => match host.ip() {
                Some(ip) => sink.entry(Entry::Ip(IpRange::single(ip))),
                None => sink.entry(Entry::Host(host.as_str(), HostKind::Exact)),
            },
            Err(err) => sink.bad_line(line_no, line, err.to_string()),
        }
    }
    if !any {
        let reason = "missing host name after the address".to_owned();
        sink.bad_line(line_no, line, reason);
    }
}

fn read_domain_line(line_no: u32, line: &str, sink: &mut impl EntrySink) {
    let entry = strip_inline_comment(line);
    if entry.is_empty() {
        return;
    }
    if entry.contains('/') {
        let reason =
            "expected a domain but found a URL or path; write only the host name".to_owned();
        return sink.bad_line(line_no, line, reason);
    }
    if entry.contains(':') && IpRange::parse(entry).is_none() {
        let reason = "expected a domain but found host:port or an invalid IPv6 address; \
                      write only the host name"
            .to_owned();
        return sink.bad_line(line_no, line, reason);
    }
    if entry.split_whitespace().nth(1).is_some() {
        let reason = "expected one domain per line; use the hosts format for \
                      `address host` lines"
            .to_owned();
        return sink.bad_line(line_no, line, reason);
    }
    if let Some(range) = IpRange::parse(entry) {
        return sink.entry(Entry::Ip(range));
    }
    let (name, kind) = match entry.strip_prefix("*.") {
        Some(rest) => (rest, HostKind::Subdomains),
        None => (entry.strip_prefix('.').unwrap_or(entry), HostKind::Domain),
    };
    if name != entry && IpRange::parse(name).is_some() {
        let reason = "a wildcard or leading dot cannot apply to an IP address; \
                      write the address alone"
            .to_owned();
        return sink.bad_line(line_no, line, reason);
    }
    match Host::parse(name) {
        Ok(host) => match host.ip() {
            Some(ip) => sink.entry(Entry::Ip(IpRange::single(ip))),
            None => sink.entry(Entry::Host(host.as_str(), kind)),
        },
        Err(err) => sink.bad_line(line_no, line, err.to_string()),
    }
}

fn read_ip_line(line_no: u32, line: &str, sink: &mut impl EntrySink) {
    let entry = strip_inline_comment(line);
    if entry.is_empty() {
        return;
    }
    match IpRange::parse(entry) {
        Some(range) => sink.entry(Entry::Ip(range)),
        None => {
            let reason = format!(
                "unparsable address {entry:?}; expected an IPv4 or IPv6 address or a CIDR \
                 range such as 192.0.2.0/24"
            );
            sink.bad_line(line_no, line, reason)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct Collect {
        hosts: Vec<(String, HostKind)>,
        ips: Vec<String>,
        bad: Vec<(u32, String)>,
        local: usize,
    }

    impl EntrySink for Collect {
        fn entry(&mut self, entry: Entry<'_>) {
            match entry {
                Entry::Host(name, kind) => self.hosts.push((name.to_owned(), kind)),
                Entry::Ip(range) => self.ips.push(range.csv_entry()),
            }
        }
        fn bad_line(&mut self, line: u32, _text: &str, reason: String) {
            self.bad.push((line, reason));
        }
        fn local_name(&mut self) {
            self.local += 1;
        }
    }

    fn collect(text: &str, format: Format) -> Collect {
        let mut sink = Collect::default();
        read_entries(text.as_bytes(), format, &mut sink);
        sink
    }

    #[test]
    fn hosts_lines_give_exact_hosts() {
        let text = "\u{feff}# header\r\n127.0.0.1  localhost\r\n::1 ip6-localhost\r\n\
                    0.0.0.0 Ads.Example. tracker.example # inline\r\n\
                    0.0.0.0 203.0.113.9\r\nads.example\r\n0.0.0.0\r\n0.0.0.0 bad..name\r\n";
        let sink = collect(text, Format::Hosts);
        let expected = [
            ("ads.example".to_owned(), HostKind::Exact),
            ("tracker.example".to_owned(), HostKind::Exact),
        ];
        assert_eq!(sink.hosts, expected);
        assert_eq!(sink.ips, ["203\\.0\\.113\\.9"]);
        assert_eq!(sink.local, 2);
        let bad_lines: Vec<u32> = sink.bad.iter().map(|b| b.0).collect();
        assert_eq!(bad_lines, [6, 7, 8]);
        assert!(sink.bad[0].1.contains("unparsable address \"ads.example\""));
        assert!(sink.bad[1].1.contains("missing host name"));
        assert!(sink.bad[2].1.contains("empty label"));
    }

    #[test]
    fn domain_lines_give_domains() {
        let text = "Bücher.de\n*.wild.example\n.dot.example\n192.0.2.1\n2001:db8::1\n\
                    shop.example/path\nexample.com:443\ntwo words\n*.192.0.2.1\n10.0.0.0/8\n";
        let sink = collect(text, Format::Domains);
        let expected = [
            ("xn--bcher-kva.de".to_owned(), HostKind::Domain),
            ("wild.example".to_owned(), HostKind::Subdomains),
            ("dot.example".to_owned(), HostKind::Domain),
        ];
        assert_eq!(sink.hosts, expected);
        assert_eq!(sink.ips, ["192\\.0\\.2\\.1", "2001:db8::1"]);
        let bad_lines: Vec<u32> = sink.bad.iter().map(|b| b.0).collect();
        assert_eq!(bad_lines, [6, 7, 8, 9, 10]);
        assert!(sink.bad[0].1.contains("found a URL"));
        assert!(sink.bad[1].1.contains("host:port"));
        assert!(sink.bad[2].1.contains("one domain per line"));
        assert!(sink.bad[3].1.contains("cannot apply to an IP address"));
    }

    #[test]
    fn ip_lines_give_ranges() {
        let text = "; header\n192.0.2.1\n10.1.2.3/8 ; note\n::ffff:198.51.100.0/120\n\
                    2001:db8::1\n2001:db8::/32\nnot-an-ip\n10.0.0.0/33\n";
        let sink = collect(text, Format::Ips);
        let expected = [
            "192\\.0\\.2\\.1",
            "10.0.0.0/8",
            "198.51.100.0/24",
            "2001:db8::1",
            "2001:db8::/32",
        ];
        assert_eq!(sink.ips, expected);
        let bad_lines: Vec<u32> = sink.bad.iter().map(|b| b.0).collect();
        assert_eq!(bad_lines, [7, 8]);
    }

    #[test]
    fn unusable_files_and_lines_are_reported() {
        let mut sink = Collect::default();
        read_entries(
            b"good.example\nbad\xff.example\n",
            Format::Domains,
            &mut sink,
        );
        assert_eq!(sink.hosts.len(), 1);
        assert_eq!(sink.bad.len(), 1);
        assert_eq!(sink.bad[0].0, 2);
        assert!(sink.bad[0].1.contains("not valid UTF-8"));

        let mut sink = Collect::default();
        read_entries(b"\xFF\xFEa\x00", Format::Domains, &mut sink);
        assert!(sink.bad[0].1.contains("UTF-16"));

        let long = format!("{}.example\n", "a".repeat(MAX_ROW_LEN));
        let sink = collect(&long, Format::Domains);
        assert!(sink.bad[0].1.contains("longer than"));
    }

    #[test]
    fn cr_only_file_is_split_at_cr() {
        let sink = collect("a.example\rb.example\r\rc.example", Format::Domains);
        assert_eq!(sink.hosts.len(), 3);
        assert_eq!(count_lines(b"# x\na.example\n\nb.example\n"), 2);
    }

    #[test]
    fn range_sort_key_puts_inner_ranges_first() {
        let mut ranges: Vec<IpRange> = ["10.0.0.0/8", "10.200.0.0/16", "10.0.0.1", "9.0.0.0/8"]
            .iter()
            .map(|text| IpRange::parse(text).unwrap())
            .collect();
        ranges.sort_by_key(|range| range.sort_key());
        let sorted: Vec<String> = ranges.iter().map(|r| r.csv_entry()).collect();
        assert_eq!(
            sorted,
            ["9.0.0.0/8", "10\\.0\\.0\\.1", "10.200.0.0/16", "10.0.0.0/8"]
        );
        let range = IpRange::parse("10.1.2.3").unwrap();
        assert_eq!(range.supernet(16).csv_entry(), "10.1.0.0/16");
        assert_eq!(range.supernet(0).csv_entry(), "0.0.0.0/0");
    }

    #[test]
    fn local_names_match_the_policy_crate() {
        let text: String = LOCAL_NAMES
            .iter()
            .map(|name| format!("127.0.0.1 {name}\n"))
            .collect();
        let mut builder = webwarden_policy::PolicyBuilder::new();
        let options = webwarden_policy::SourceOptions {
            format: Some(Format::Hosts),
            ..Default::default()
        };
        let summary = builder.add_text("hosts", text.as_bytes(), &options);
        assert_eq!(summary.local_names, LOCAL_NAMES.len());
        assert_eq!(summary.rules.total(), 0);
    }
}
