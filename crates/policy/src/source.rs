//! List formats: the CSV form `regex,category[,action]`, hosts files, plain
//! domain lists and IP/CIDR lists, read line by line into rows.
//!
//! Every format accepts a UTF-8 BOM, CRLF line ends, blank lines and lines
//! starting with `#`. A line that cannot be used becomes a [`BadRow`] with its
//! line number and reason; parsing goes on with the next line.
//!
//! [`read_entries`] returns the entries of a hosts file, domain list or IP
//! list without compiling them. It is the reader that
//! [`PolicyBuilder`](crate::PolicyBuilder) uses for those formats, so an
//! entry means the same to a caller as to a loaded policy.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use ipnet::IpNet;

use crate::host::{self, Host};
use crate::pattern::{self, Anchor, HostPattern, HostShape};

/// Category given to rows of hosts files, domain lists and IP lists when
/// their source sets no default category.
pub const DEFAULT_CATEGORY: &str = "Uncategorized";

/// Names that hosts files map to local addresses; they are never rules.
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

/// How many meaningful lines format detection reads.
const DETECT_LINES: usize = 200;

/// Longest accepted row in bytes. A host name has at most 253 characters,
/// so longer rows are mistakes, and rejecting them bounds the work per row.
pub const MAX_ROW_LEN: usize = 4096;

/// How much of a bad row's text is kept for its report.
const MAX_REPORTED_TEXT: usize = 200;

/// The effect of a rule that matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Action {
    /// The request is refused.
    Block,
    /// The request is let through, even when a block rule matches too.
    Allow,
}

impl Action {
    /// Returns the lower-case name used in lists and output (`block` or `allow`).
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Block => "block",
            Action::Allow => "allow",
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Action {
    type Err = String;

    fn from_str(s: &str) -> Result<Action, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "block" => Ok(Action::Block),
            "allow" => Ok(Action::Allow),
            _ => Err(format!("invalid action {s:?}; expected block or allow")),
        }
    }
}

/// The format of a list source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    /// `regex,category[,action]`: the regex must match the whole host or IP.
    Csv,
    /// `address host [host...]`: each host is blocked exactly.
    Hosts,
    /// One domain per line: the domain and its subdomains. A bare IP address
    /// is an IP rule, and `*.domain` means the subdomains only.
    Domains,
    /// One IP address or CIDR range per line.
    Ips,
}

impl Format {
    /// Returns the name used in configuration and output.
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Csv => "csv",
            Format::Hosts => "hosts",
            Format::Domains => "domains",
            Format::Ips => "ips",
        }
    }

    /// Guesses the format from the file name and the first meaningful lines:
    /// a `.csv` name or a comma gives CSV, `address host` lines give hosts,
    /// lines that are all addresses or ranges give IPs, anything else gives
    /// domains.
    pub fn detect(name: &str, text: &[u8]) -> Format {
        if name.to_ascii_lowercase().ends_with(".csv") {
            return Format::Csv;
        }
        let mut all_ips = true;
        let mut seen = 0;
        for (_, line) in lines(text).take(DETECT_LINES) {
            let Ok(line) = std::str::from_utf8(line) else {
                continue;
            };
            let line = strip_inline_comment(line);
            if line.is_empty() {
                continue;
            }
            if line.contains(',') {
                return Format::Csv;
            }
            seen += 1;
            let mut fields = line.split_whitespace();
            let first = fields.next().unwrap_or_default();
            if fields.next().is_some() && first.parse::<IpAddr>().is_ok() {
                return Format::Hosts;
            }
            all_ips &= parse_net(first).is_some();
        }
        if seen > 0 && all_ips {
            Format::Ips
        } else {
            Format::Domains
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Format {
    type Err = String;

    fn from_str(s: &str) -> Result<Format, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "csv" => Ok(Format::Csv),
            "hosts" => Ok(Format::Hosts),
            "domains" => Ok(Format::Domains),
            "ips" | "ip" | "cidr" => Ok(Format::Ips),
            _ => Err(format!(
                "invalid list format {s:?}; expected csv, hosts, domains or ips"
            )),
        }
    }
}

/// A row that was skipped, with where it is and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadRow {
    /// The source name (usually the file path).
    pub source: String,
    /// The 1-based line number.
    pub line: u32,
    /// The line as written, trimmed.
    pub text: String,
    /// The reason the row was skipped, with the fix where there is one.
    pub reason: String,
}

impl fmt::Display for BadRow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}: {} (row {:?})",
            self.source, self.line, self.reason, self.text
        )
    }
}

/// One rule of a hosts file, domain list or IP list, as [`read_entries`]
/// reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry<'a> {
    /// The 1-based line number.
    pub line: u32,
    /// The entry as written, without its line's comment: the host name of a
    /// hosts file, the domain with any `*.` or leading dot, or the address.
    pub text: &'a str,
    /// The hosts or addresses the entry matches.
    pub target: EntryTarget,
}

/// The hosts or addresses an [`Entry`] matches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryTarget {
    /// A canonical host name, never an IP address, and the hosts it matches.
    Host(Host, HostKind),
    /// An address or CIDR range, matched against the destination IP address,
    /// in the form [`parse_net`] returns.
    Ip(IpNet),
}

/// The hosts a host entry matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HostKind {
    /// The host itself only: hosts-file entries.
    Exact,
    /// The subdomains of the host but not the host: `*.example.com` in a
    /// domain list.
    Subdomains,
    /// The host and its subdomains: other domain-list entries.
    Domain,
}

/// Receives the entries and bad rows of a list from [`read_entries`].
pub trait EntrySink {
    /// Takes one entry.
    fn entry(&mut self, entry: Entry<'_>);

    /// Takes a line that was skipped, with its 1-based number, its text and
    /// the reason (with the fix where there is one). The text is the trimmed
    /// line, without its comment in a hosts file. It is cut to 200 bytes when
    /// the line is too long, not valid UTF-8 or contains a control character,
    /// and empty for a UTF-16 file.
    fn bad_row(&mut self, line: u32, text: &str, reason: String);

    /// Counts a hosts-file entry for a local name such as `localhost`, which
    /// is not a rule. The default does nothing.
    fn local_name(&mut self) {}
}

/// One usable rule read from a source, before compilation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Row<'a> {
    pub line: u32,
    /// The rule as written: the regex, host, domain or address.
    pub entry: &'a str,
    /// The row's own category; `None` means the source's default.
    pub category: Option<&'a str>,
    pub action: Action,
    pub kind: RowKind,
}

/// The part of the target a row is matched against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RowKind {
    /// Checked against the destination IP address.
    Ip(IpNet),
    /// Checked against the canonical host.
    Host(HostPattern),
}

/// Receives the rows of a source as they are parsed.
pub(crate) trait RowSink {
    fn row(&mut self, row: Row<'_>);
    fn bad_row(&mut self, line: u32, text: &str, reason: String);
    /// Counts a hosts-file entry for a local name, which is not a rule.
    fn skipped_local(&mut self) {}
}

/// Parses `text` in `format` and feeds each row to `sink`. Rows without an
/// action of their own get `default_action`.
pub(crate) fn parse(
    text: &[u8],
    format: Format,
    default_action: Action,
    has_default_category: bool,
    sink: &mut impl RowSink,
) {
    if format != Format::Csv {
        let mut rows = EntryRows {
            sink,
            action: default_action,
        };
        return read_entries(text, format, &mut rows);
    }
    for_each_row(
        text,
        sink,
        |sink, line_no, text, reason| sink.bad_row(line_no, text, reason),
        |sink, index, line_no, line| {
            let first = index == 0;
            parse_csv_row(
                line_no,
                line,
                first,
                default_action,
                has_default_category,
                sink,
            )
        },
    );
}

/// Reads the entries of a hosts file, domain list or IP list and feeds each
/// entry and bad row to `sink` in line order.
///
/// CSV rows are regexes, which have no entry form. For [`Format::Csv`] the
/// sink gets one bad row on line 1 and nothing else.
pub fn read_entries(text: &[u8], format: Format, sink: &mut impl EntrySink) {
    if format == Format::Csv {
        let reason = "format csv has no entries because CSV rows are regexes; load the \
                      list with PolicyBuilder, or give the hosts, domains or ips format \
                      if the file is one of those"
            .to_owned();
        return sink.bad_row(1, "", reason);
    }
    for_each_row(
        text,
        sink,
        |sink, line_no, text, reason| sink.bad_row(line_no, text, reason),
        |sink, _, line_no, line| match format {
            Format::Hosts => parse_hosts_row(line_no, line, sink),
            Format::Domains => parse_domain_row(line_no, line, sink),
            Format::Ips => parse_ip_row(line_no, line, sink),
            Format::Csv => unreachable!("CSV lists are returned above"),
        },
    );
}

/// Counts the lines of `text` that the list formats read as rows: those that
/// are neither blank nor `#` comments.
pub fn count_rows(text: &[u8]) -> usize {
    lines(text).count()
}

/// Calls `read_row` for each meaningful line that is valid UTF-8, at most
/// [`MAX_ROW_LEN`] bytes long and free of control characters other than tab,
/// and calls `bad_row` for the other lines. `read_row` gets the line's index
/// among the meaningful lines, its number and its text.
fn for_each_row<S: ?Sized>(
    text: &[u8],
    sink: &mut S,
    bad_row: impl Fn(&mut S, u32, &str, String),
    mut read_row: impl FnMut(&mut S, usize, u32, &str),
) {
    if text.starts_with(b"\xFF\xFE") || text.starts_with(b"\xFE\xFF") {
        let reason = "the file is UTF-16 encoded; save it as UTF-8".to_owned();
        return bad_row(sink, 1, "", reason);
    }
    for (index, (line_no, raw)) in lines(text).enumerate() {
        let Ok(line) = std::str::from_utf8(raw) else {
            let text = String::from_utf8_lossy(raw);
            let reason = "line is not valid UTF-8; save the list as UTF-8".to_owned();
            bad_row(sink, line_no, report_text(&text), reason);
            continue;
        };
        if line.len() > MAX_ROW_LEN {
            let reason = format!("row is longer than {MAX_ROW_LEN} bytes");
            bad_row(sink, line_no, report_text(line), reason);
            continue;
        }
        if let Some(c) = line.chars().find(|c| c.is_control() && *c != '\t') {
            let reason = format!("row contains the control character {c:?}");
            bad_row(sink, line_no, report_text(line), reason);
            continue;
        }
        read_row(sink, index, line_no, line);
    }
}

/// Turns the entries of a hosts file, domain list or IP list into rows with
/// the source's default action.
struct EntryRows<'s, S> {
    sink: &'s mut S,
    action: Action,
}

impl<S: RowSink> EntrySink for EntryRows<'_, S> {
    fn entry(&mut self, entry: Entry<'_>) {
        let kind = match entry.target {
            EntryTarget::Ip(net) => RowKind::Ip(net),
            EntryTarget::Host(host, kind) => RowKind::Host(host_pattern(&host, kind)),
        };
        self.sink.row(Row {
            line: entry.line,
            entry: entry.text,
            category: None,
            action: self.action,
            kind,
        });
    }

    fn bad_row(&mut self, line: u32, text: &str, reason: String) {
        self.sink.bad_row(line, text, reason);
    }

    fn local_name(&mut self) {
        self.sink.skipped_local();
    }
}

/// Yields each meaningful line with its 1-based number: BOM, CR and
/// surrounding white space removed, blank and `#` comment lines skipped.
/// A file without any `\n` ends its lines with a bare `\r` (classic Mac
/// style), so those are split too; CRLF files keep their line numbers.
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

/// Shortens a bad row's text for its report.
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

fn parse_csv_row(
    line_no: u32,
    line: &str,
    first: bool,
    default_action: Action,
    has_default_category: bool,
    sink: &mut impl RowSink,
) {
    let fields = match split_csv(line) {
        Ok(fields) => fields,
        Err(reason) => return sink.bad_row(line_no, line, reason),
    };
    let field = |i: usize| fields.get(i).map(|f| f.trim()).unwrap_or_default();
    if fields.len() > 3 {
        let reason = format!(
            "expected at most 3 columns (regex,category,action) but found {}; \
             quote a regex that contains a comma",
            fields.len()
        );
        return sink.bad_row(line_no, line, reason);
    }
    if first && is_header(field(0), field(1)) {
        return;
    }
    let regex = field(0);
    if regex.is_empty() {
        return sink.bad_row(line_no, line, "empty regex in the first column".to_owned());
    }
    let category = Some(field(1)).filter(|c| !c.is_empty());
    if category.is_none() && !has_default_category {
        let looks_like_hosts = fields.len() == 1
            && regex
                .split_whitespace()
                .next()
                .is_some_and(|first| first.parse::<IpAddr>().is_ok());
        let reason = if looks_like_hosts {
            "empty category, and the row looks like a hosts file line; load this list \
             with format=hosts"
        } else {
            "empty category; add one in the second column or set a default category \
             for this list"
        };
        return sink.bad_row(line_no, line, reason.to_owned());
    }
    let action = match field(2) {
        "" => default_action,
        text => match text.parse() {
            Ok(action) => action,
            Err(_) => {
                let reason = format!(
                    "invalid action {text:?} in the third column; expected block or allow \
                     (a regex that contains a comma must be quoted)"
                );
                return sink.bad_row(line_no, line, reason);
            }
        },
    };
    if looks_like_cidr(regex) && csv_ip_row(regex).is_none() {
        let reason = format!(
            "invalid IP address or CIDR range {regex:?}; expected a form such as \
             192.0.2.0/24 or 2001:db8::/32"
        );
        return sink.bad_row(line_no, line, reason);
    }
    let kind = match csv_ip_row(regex) {
        Some(net) => RowKind::Ip(net),
        None => match pattern::classify(regex) {
            Ok(pattern) => RowKind::Host(pattern),
            Err(err) => return sink.bad_row(line_no, line, err.to_string()),
        },
    };
    sink.row(Row {
        line: line_no,
        entry: regex,
        category,
        action,
        kind,
    });
}

/// Returns the range of an IP row: a CSV row whose first column, with `\.` read as `.` and
/// optional `^`/`$` anchors removed, is an IP address or CIDR range.
fn csv_ip_row(regex: &str) -> Option<IpNet> {
    if !regex
        .bytes()
        .all(|b| b.is_ascii_hexdigit() || b"\\.:/^$".contains(&b))
    {
        return None;
    }
    let bare = regex.strip_prefix('^').unwrap_or(regex);
    let bare = bare.strip_suffix('$').unwrap_or(bare);
    parse_net(&bare.replace("\\.", "."))
}

/// Checks whether a CSV regex is written as an IP range (hex digits, dots,
/// colons and a slash), so a failure to parse it is a mistake, not a regex.
fn looks_like_cidr(regex: &str) -> bool {
    regex.contains('/')
        && regex
            .bytes()
            .all(|b| b.is_ascii_hexdigit() || b"\\.:/".contains(&b))
}

/// Checks for a header row, `regex,category` (or `pattern`/`host` first),
/// which admins' spreadsheets often export.
fn is_header(first: &str, second: &str) -> bool {
    let first = first.to_ascii_lowercase();
    matches!(first.as_str(), "regex" | "pattern" | "host")
        && second.eq_ignore_ascii_case("category")
}

/// Splits one CSV line into fields, honouring double quotes (a quoted field
/// may contain commas, and `""` is a literal quote).
fn split_csv(line: &str) -> Result<Vec<String>, String> {
    // Most rows have no quotes, and a plain split is much cheaper than
    // building a CSV reader.
    if !line.contains('"') {
        return Ok(line.split(',').map(str::to_owned).collect());
    }
    if line.bytes().filter(|&b| b == b'"').count() % 2 == 1 {
        return Err("unbalanced double quote; close the quoted field".to_owned());
    }
    let mut reader = csv_core::Reader::new();
    let mut output = vec![0u8; line.len() + 1];
    let mut ends = [0usize; 8];
    let (_, consumed, written, fields) =
        reader.read_record(line.as_bytes(), &mut output, &mut ends);
    if consumed < line.len() {
        return Err("unexpected line break inside the row".to_owned());
    }
    let (_, _, _, more) = reader.read_record(&[], &mut output[written..], &mut ends[fields..]);
    let count = fields + more;
    if count >= ends.len() {
        return Err(format!(
            "expected at most 3 columns (regex,category,action) but found {count} or more; \
             quote a regex that contains a comma"
        ));
    }
    let mut start = 0;
    let mut out = Vec::with_capacity(count);
    for &end in &ends[..count] {
        let field = std::str::from_utf8(&output[start..end]).map_err(|err| err.to_string())?;
        out.push(field.to_owned());
        start = end;
    }
    Ok(out)
}

fn parse_hosts_row(line_no: u32, line: &str, sink: &mut impl EntrySink) {
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
        return sink.bad_row(line_no, line, reason);
    }
    let mut any = false;
    for name in fields {
        any = true;
        let bare = name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase();
        if LOCAL_NAMES.contains(&bare.as_str()) {
            sink.local_name();
            continue;
        }
        match host_entry(line_no, name, HostKind::Exact) {
            Ok(entry) => sink.entry(entry),
            Err(reason) => sink.bad_row(line_no, line, reason),
        }
    }
    if !any {
        let reason = "missing host name after the address".to_owned();
        sink.bad_row(line_no, line, reason);
    }
}

fn parse_domain_row(line_no: u32, line: &str, sink: &mut impl EntrySink) {
    let entry = strip_inline_comment(line);
    if entry.is_empty() {
        return;
    }
    if entry.contains('/') {
        let reason =
            "expected a domain but found a URL or path; write only the host name".to_owned();
        return sink.bad_row(line_no, line, reason);
    }
    if entry.contains(':') && parse_net(entry).is_none() {
        let reason = "expected a domain but found host:port or an invalid IPv6 address; \
                      write only the host name"
            .to_owned();
        return sink.bad_row(line_no, line, reason);
    }
    if entry.split_whitespace().nth(1).is_some() {
        let reason = "expected one domain per line; use the hosts format for \
                      `address host` lines"
            .to_owned();
        return sink.bad_row(line_no, line, reason);
    }
    if let Some(net) = parse_net(entry) {
        return sink.entry(ip_entry(line_no, entry, net));
    }
    let (name, kind) = match entry.strip_prefix("*.") {
        Some(rest) => (rest, HostKind::Subdomains),
        None => (entry.strip_prefix('.').unwrap_or(entry), HostKind::Domain),
    };
    if name != entry && parse_net(name).is_some() {
        let reason = "a wildcard or leading dot cannot apply to an IP address; \
                      write the address alone"
            .to_owned();
        return sink.bad_row(line_no, line, reason);
    }
    match host_entry(line_no, name, kind) {
        Ok(mut parsed) => {
            parsed.text = entry;
            sink.entry(parsed)
        }
        Err(reason) => sink.bad_row(line_no, line, reason),
    }
}

fn parse_ip_row(line_no: u32, line: &str, sink: &mut impl EntrySink) {
    let entry = strip_inline_comment(line);
    if entry.is_empty() {
        return;
    }
    match parse_net(entry) {
        Some(net) => sink.entry(ip_entry(line_no, entry, net)),
        None => {
            let reason = format!(
                "unparsable address {entry:?}; expected an IPv4 or IPv6 address or a CIDR \
                 range such as 192.0.2.0/24"
            );
            sink.bad_row(line_no, line, reason)
        }
    }
}

/// Builds the entry for one host name. For a name that is an IP address
/// the entry is an IP entry.
fn host_entry(line_no: u32, name: &str, kind: HostKind) -> Result<Entry<'_>, String> {
    let host = Host::parse(name).map_err(|err| err.to_string())?;
    if let Some(ip) = host.ip() {
        return Ok(ip_entry(line_no, name, IpNet::from(ip)));
    }
    Ok(Entry {
        line: line_no,
        text: name,
        target: EntryTarget::Host(host, kind),
    })
}

fn ip_entry(line_no: u32, text: &str, net: IpNet) -> Entry<'_> {
    Entry {
        line: line_no,
        text,
        target: EntryTarget::Ip(net),
    }
}

/// Builds the literal pattern that matches the hosts of a host entry.
fn host_pattern(host: &Host, kind: HostKind) -> HostPattern {
    let (anchor, literal) = match kind {
        HostKind::Exact => (Anchor::Exact, host.to_string()),
        HostKind::Subdomains => (Anchor::StrictSuffix, format!(".{host}")),
        HostKind::Domain => (Anchor::Domain, host.to_string()),
    };
    let literals = vec![literal];
    HostPattern {
        regex: pattern::literal_regex(anchor, &literals),
        shape: HostShape::Literals(anchor, literals),
    }
}

/// Parses an address or CIDR range as every list format reads it. Host bits
/// below the prefix are cleared, and IPv4-mapped IPv6 addresses and ranges
/// of prefix 96 or longer are unwrapped to IPv4.
pub fn parse_net(text: &str) -> Option<IpNet> {
    if let Ok(ip) = text.parse::<IpAddr>() {
        return Some(IpNet::from(host::canonical_ip(ip)));
    }
    let net = text.parse::<IpNet>().ok()?.trunc();

    // Targets are unwrapped from IPv4-mapped IPv6, so mapped ranges are too.
    if let IpNet::V6(v6) = net {
        if let (Some(v4), true) = (v6.network().to_ipv4_mapped(), v6.prefix_len() >= 96) {
            return ipnet::Ipv4Net::new(v4, v6.prefix_len() - 96)
                .ok()
                .map(IpNet::V4);
        }
    }
    Some(net)
}

/// Cuts a trailing `# comment` (hosts, domain and IP lists) or `; comment`
/// (some IP lists) and trims.
fn strip_inline_comment(line: &str) -> &str {
    let end = line.find(['#', ';']).unwrap_or(line.len());
    line[..end].trim()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct Collect {
        rows: Vec<(u32, String, Option<String>, Action, RowKind)>,
        bad: Vec<(u32, String)>,
        local: usize,
    }

    impl RowSink for Collect {
        fn row(&mut self, row: Row<'_>) {
            let category = row.category.map(str::to_owned);
            self.rows.push((
                row.line,
                row.entry.to_owned(),
                category,
                row.action,
                row.kind,
            ));
        }
        fn bad_row(&mut self, line: u32, _text: &str, reason: String) {
            self.bad.push((line, reason));
        }
        fn skipped_local(&mut self) {
            self.local += 1;
        }
    }

    fn collect(text: &str, format: Format) -> Collect {
        let mut sink = Collect::default();
        parse(text.as_bytes(), format, Action::Block, false, &mut sink);
        sink
    }

    #[test]
    fn csv_accepts_bom_crlf_comments_and_quotes() {
        let text = "\u{feff}regex,category\r\n# note\r\n\r\n.*a\\.com,Gambling\r\n\
                    \"b{1,2}\\.com\",Adult,allow\r\n";
        let sink = collect(text, Format::Csv);
        assert!(sink.bad.is_empty(), "{:?}", sink.bad);
        let lines: Vec<u32> = sink.rows.iter().map(|r| r.0).collect();
        assert_eq!(lines, [4, 5]);
        assert_eq!(sink.rows[1].1, "b{1,2}\\.com");
        assert_eq!(sink.rows[1].2.as_deref(), Some("Adult"));
        assert_eq!(sink.rows[1].3, Action::Allow);
    }

    #[test]
    fn csv_ip_rows_are_recognized() {
        let sink = collect(
            "203\\.0\\.113\\.7,Malicious\n198.51.100.0/24,Malicious\n",
            Format::Csv,
        );
        let nets: Vec<_> = sink.rows.iter().map(|r| r.4.clone()).collect();
        assert_eq!(
            nets,
            [
                RowKind::Ip("203.0.113.7/32".parse().unwrap()),
                RowKind::Ip("198.51.100.0/24".parse().unwrap())
            ]
        );
    }

    #[test]
    fn csv_bad_rows_name_line_and_reason() {
        let text = "(open,Gambling\n.*x\\.com,\n.*y\\.com,Adult,maybe\n\
                    .{1,3}\\.com,Adult\n,Adult\n\"unclosed,Adult\n";
        let sink = collect(text, Format::Csv);
        let expected = [
            (1, "invalid regex: unclosed group"),
            (2, "empty category"),
            (3, "invalid action \"maybe\""),
            (4, "invalid action \"Adult\" in the third column"),
            (5, "empty regex"),
            (6, "unbalanced double quote"),
        ];
        assert_eq!(sink.bad.len(), expected.len(), "{:?}", sink.bad);
        for ((line, reason), (want_line, want)) in sink.bad.iter().zip(expected) {
            assert_eq!(*line, want_line);
            assert!(reason.contains(want), "line {line}: {reason}");
        }
    }

    #[test]
    fn hosts_file_takes_several_hosts_per_line() {
        let text = "127.0.0.1  localhost\n::1 localhost\n0.0.0.0 a.example b.example # ads\n\
                    0.0.0.0 0.0.0.0\nbogus c.example\n";
        let sink = collect(text, Format::Hosts);
        let entries: Vec<&str> = sink.rows.iter().map(|r| r.1.as_str()).collect();
        assert_eq!(entries, ["a.example", "b.example"]);
        assert_eq!(sink.local, 3);
        assert_eq!(sink.bad.len(), 1);
        assert!(sink.bad[0].1.contains("unparsable address \"bogus\""));
    }

    #[test]
    fn domain_list_reads_domains_and_addresses() {
        let text = "Example.COM\n192.0.2.1\n*.wild.example\n.dot.example\nbad domain\nx..y\n\
                    http://url.example/path\n";
        let sink = collect(text, Format::Domains);
        assert_eq!(sink.rows.len(), 4);
        assert!(matches!(sink.rows[1].4, RowKind::Ip(_)));
        let shapes: Vec<_> = sink
            .rows
            .iter()
            .filter_map(|r| match &r.4 {
                RowKind::Host(p) => Some(p.shape.clone()),
                RowKind::Ip(_) => None,
            })
            .collect();
        assert_eq!(
            shapes,
            [
                HostShape::Literals(Anchor::Domain, vec!["example.com".into()]),
                HostShape::Literals(Anchor::StrictSuffix, vec![".wild.example".into()]),
                HostShape::Literals(Anchor::Domain, vec!["dot.example".into()]),
            ]
        );
        let bad_lines: Vec<u32> = sink.bad.iter().map(|b| b.0).collect();
        assert_eq!(bad_lines, [5, 6, 7]);
        assert!(sink.bad[2].1.contains("found a URL"));
    }

    #[test]
    fn ip_list_reads_addresses_and_ranges() {
        let text = "192.0.2.1\n10.1.2.3/8 ; note\n; comment\n2001:db8::/32\n::ffff:198.51.100.9\nnot-an-ip\n";
        let sink = collect(text, Format::Ips);
        let nets: Vec<String> = sink
            .rows
            .iter()
            .map(|r| match &r.4 {
                RowKind::Ip(net) => net.to_string(),
                RowKind::Host(_) => String::new(),
            })
            .collect();
        assert_eq!(
            nets,
            [
                "192.0.2.1/32",
                "10.0.0.0/8",
                "2001:db8::/32",
                "198.51.100.9/32"
            ]
        );
        assert_eq!(sink.bad.len(), 1);
        assert_eq!(sink.bad[0].0, 6);
    }

    #[test]
    fn invalid_utf8_line_is_a_bad_row() {
        let mut sink = Collect::default();
        let text = b"good.example\nbad\xff.example\n";
        parse(text, Format::Domains, Action::Block, false, &mut sink);
        assert_eq!(sink.rows.len(), 1);
        assert_eq!(
            sink.bad,
            [(
                2,
                "line is not valid UTF-8; save the list as UTF-8".to_owned()
            )]
        );
    }

    #[test]
    fn cr_only_line_ends_split_rows() {
        let sink = collect(".*a\\.com,A\r.*b\\.com,B\r\r.*c\\.com,C\r", Format::Csv);
        let lines: Vec<u32> = sink.rows.iter().map(|r| r.0).collect();
        assert_eq!(lines, [1, 2, 4]);
        assert!(sink.bad.is_empty());
    }

    #[test]
    fn unusable_rows_are_reported() {
        let long = format!("{},Long\n", "a".repeat(MAX_ROW_LEN + 1));
        let cases = [
            (long.as_str(), Format::Csv, "longer than 4096 bytes"),
            ("a\u{0}b\\.com,Nul\n", Format::Csv, "control character"),
            (
                "10.0.0/8,Net\n",
                Format::Csv,
                "invalid IP address or CIDR range",
            ),
            (
                "192.168.1.0/33,Net\n",
                Format::Csv,
                "invalid IP address or CIDR range",
            ),
            ("example.com:443\n", Format::Domains, "found host:port"),
            (
                "*.9.9.9.9\n",
                Format::Domains,
                "cannot apply to an IP address",
            ),
        ];
        for (text, format, expected) in cases {
            let sink = collect(text, format);
            assert!(sink.rows.is_empty(), "{text:?} loaded a row");
            assert_eq!(sink.bad.len(), 1, "{text:?}");
            assert!(
                sink.bad[0].1.contains(expected),
                "{text:?}: {}",
                sink.bad[0].1
            );
        }
        let mut sink = Collect::default();
        let utf16 = b"\xFF\xFEa\x00.\x00c\x00o\x00m\x00";
        parse(utf16, Format::Domains, Action::Block, false, &mut sink);
        assert!(sink.rows.is_empty());
        assert!(sink.bad[0].1.contains("UTF-16"));
    }

    #[test]
    fn mapped_ipv6_range_becomes_ipv4() {
        assert_eq!(
            parse_net("::ffff:192.0.2.0/120"),
            Some("192.0.2.0/24".parse().unwrap())
        );
        assert_eq!(
            parse_net("2001:db8::/32"),
            Some("2001:db8::/32".parse().unwrap())
        );
    }

    #[test]
    fn local_name_with_trailing_dot_is_skipped() {
        let sink = collect("127.0.0.1 localhost. LocalHost\n", Format::Hosts);
        assert!(sink.rows.is_empty());
        assert_eq!(sink.local, 2);
    }

    #[derive(Default)]
    struct Entries {
        hosts: Vec<(String, HostKind)>,
        ips: Vec<String>,
        texts: Vec<String>,
        bad: Vec<(u32, String)>,
        local: usize,
    }

    impl EntrySink for Entries {
        fn entry(&mut self, entry: Entry<'_>) {
            self.texts.push(entry.text.to_owned());
            match entry.target {
                EntryTarget::Host(host, kind) => self.hosts.push((host.to_string(), kind)),
                EntryTarget::Ip(net) => self.ips.push(net.to_string()),
            }
        }
        fn bad_row(&mut self, line: u32, _text: &str, reason: String) {
            self.bad.push((line, reason));
        }
        fn local_name(&mut self) {
            self.local += 1;
        }
    }

    fn read(text: &str, format: Format) -> Entries {
        let mut sink = Entries::default();
        read_entries(text.as_bytes(), format, &mut sink);
        sink
    }

    #[test]
    fn hosts_entries_are_exact_hosts() {
        let text = "\u{feff}# header\r\n127.0.0.1  localhost\r\n::1 ip6-localhost\r\n\
                    0.0.0.0 Ads.Example. tracker.example # inline\r\n\
                    0.0.0.0 203.0.113.9\r\nads.example\r\n0.0.0.0\r\n0.0.0.0 bad..name\r\n";
        let sink = read(text, Format::Hosts);
        let expected = [
            ("ads.example".to_owned(), HostKind::Exact),
            ("tracker.example".to_owned(), HostKind::Exact),
        ];
        assert_eq!(sink.hosts, expected);
        assert_eq!(sink.ips, ["203.0.113.9/32"]);
        assert_eq!(
            sink.texts,
            ["Ads.Example.", "tracker.example", "203.0.113.9"]
        );
        assert_eq!(sink.local, 2);
        let bad_lines: Vec<u32> = sink.bad.iter().map(|b| b.0).collect();
        assert_eq!(bad_lines, [6, 7, 8]);
        assert!(sink.bad[0].1.contains("unparsable address \"ads.example\""));
        assert!(sink.bad[1].1.contains("missing host name"));
        assert!(sink.bad[2].1.contains("empty label"));
    }

    #[test]
    fn domain_entries_keep_their_kind() {
        let text = "Bücher.de\n*.wild.example\n.dot.example\n192.0.2.1\n2001:db8::1\n\
                    shop.example/path\nexample.com:443\ntwo words\n*.192.0.2.1\n10.0.0.0/8\n";
        let sink = read(text, Format::Domains);
        let expected = [
            ("xn--bcher-kva.de".to_owned(), HostKind::Domain),
            ("wild.example".to_owned(), HostKind::Subdomains),
            ("dot.example".to_owned(), HostKind::Domain),
        ];
        assert_eq!(sink.hosts, expected);
        assert_eq!(sink.ips, ["192.0.2.1/32", "2001:db8::1/128"]);
        assert_eq!(sink.texts[1], "*.wild.example");
        assert_eq!(sink.texts[2], ".dot.example");
        let bad_lines: Vec<u32> = sink.bad.iter().map(|b| b.0).collect();
        assert_eq!(bad_lines, [6, 7, 8, 9, 10]);
        assert!(sink.bad[0].1.contains("found a URL"));
        assert!(sink.bad[1].1.contains("host:port"));
        assert!(sink.bad[2].1.contains("one domain per line"));
        assert!(sink.bad[3].1.contains("cannot apply to an IP address"));
    }

    #[test]
    fn ip_entries_are_canonical_ranges() {
        let text = "; header\n192.0.2.1\n10.1.2.3/8 ; note\n::ffff:198.51.100.0/120\n\
                    2001:db8::1\n2001:db8::/32\nnot-an-ip\n10.0.0.0/33\n";
        let sink = read(text, Format::Ips);
        let expected = [
            "192.0.2.1/32",
            "10.0.0.0/8",
            "198.51.100.0/24",
            "2001:db8::1/128",
            "2001:db8::/32",
        ];
        assert_eq!(sink.ips, expected);
        let bad_lines: Vec<u32> = sink.bad.iter().map(|b| b.0).collect();
        assert_eq!(bad_lines, [7, 8]);
    }

    #[test]
    fn read_entries_reports_unusable_lines() {
        let mut sink = Entries::default();
        read_entries(
            b"good.example\nbad\xff.example\n",
            Format::Domains,
            &mut sink,
        );
        assert_eq!(sink.hosts.len(), 1);
        assert_eq!(sink.bad.len(), 1);
        assert_eq!(sink.bad[0].0, 2);
        assert!(sink.bad[0].1.contains("not valid UTF-8"));

        let mut sink = Entries::default();
        read_entries(b"\xFF\xFEa\x00", Format::Domains, &mut sink);
        assert!(sink.bad[0].1.contains("UTF-16"));

        let long = format!("{}.example\n", "a".repeat(MAX_ROW_LEN));
        let sink = read(&long, Format::Domains);
        assert!(sink.bad[0].1.contains("longer than"));
    }

    #[test]
    fn read_entries_rejects_csv() {
        let sink = read(".*a\\.com,Adult\nb.example\n", Format::Csv);
        assert!(sink.hosts.is_empty());
        assert!(sink.ips.is_empty());
        assert_eq!(sink.bad.len(), 1);
        assert_eq!(sink.bad[0].0, 1);
        assert!(sink.bad[0].1.contains("CSV rows are regexes"));
    }

    #[test]
    fn cr_only_entries_and_row_count() {
        let sink = read("a.example\rb.example\r\rc.example", Format::Domains);
        assert_eq!(sink.hosts.len(), 3);
        assert_eq!(count_rows(b"# x\na.example\n\nb.example\n"), 2);
    }

    #[test]
    fn format_detection_reads_content() {
        let cases = [
            ("list.csv", "example\\.com\n", Format::Csv),
            ("list.txt", "# x\n.*a\\.com,Adult\n", Format::Csv),
            ("hosts", "# x\n0.0.0.0 a.example\n", Format::Hosts),
            ("ips.txt", "192.0.2.1\n10.0.0.0/8\n", Format::Ips),
            (
                "ips.txt",
                "; note\n192.0.2.1 # inline\n10.0.0.0/8 ; x\n",
                Format::Ips,
            ),
            ("mixed.txt", "192.0.2.1\nexample.com\n", Format::Domains),
            (
                "domains.txt",
                "a.example\nb.example # trackers, ads\n",
                Format::Domains,
            ),
            (
                "domains.txt",
                "203.0.113.7 # C2 server\nb.example\n",
                Format::Domains,
            ),
            ("empty.txt", "# nothing\n", Format::Domains),
        ];
        for (name, text, expected) in cases {
            assert_eq!(Format::detect(name, text.as_bytes()), expected, "{name}");
        }
    }
}
