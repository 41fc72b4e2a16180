//! Merging entries into the rows of one CSV list. Exact duplicates and rows
//! that a broader row of the same action covers are dropped. The rest are
//! sorted so that the built list decides every host as the sources do.
//!
//! Sources loaded with `--list` in order give each host the category of the
//! first matching row (allow rows before block rows). The merge keeps that
//! meaning. A row is dropped when the earliest row that covers it came
//! first, or when that row has the same category. Otherwise the row stays,
//! and the output order puts every row before the broader rows that cover
//! it, so its category still wins.

use std::collections::HashMap;
use std::io::{self, Write};

use webwarden_policy::source::HostKind;
use webwarden_policy::Action;

use super::ip_range::IpRange;

/// Marks an empty slot in [`NameSlots`].
const NONE: u32 = u32::MAX;

/// The first row of each (action, kind) pair for one name, by row index.
type NameSlots = [u32; 6];

fn slot_index(action: Action, kind: HostKind) -> usize {
    let action_offset = match action {
        Action::Block => 0,
        Action::Allow => 3,
    };
    action_offset + usize::from(kind_rank(kind))
}

/// Returns the place of `kind` in [`NameSlots`] and in the sort key: exact,
/// then subdomains, then domain.
fn kind_rank(kind: HostKind) -> u8 {
    match kind {
        HostKind::Exact => 0,
        HostKind::Subdomains => 1,
        HostKind::Domain => 2,
    }
}

/// The action, category and source of a row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RowInfo {
    /// The action of the row.
    pub action: Action,
    /// The category, as an index into the caller's category names.
    pub category: u32,
    /// The source, as an index into the caller's sources.
    pub source: u32,
}

#[derive(Debug, Clone, Copy)]
struct HostRow {
    name: u32,
    kind: HostKind,
    info: RowInfo,
}

#[derive(Debug, Clone, Copy)]
struct IpRow {
    range: IpRange,
    info: RowInfo,
}

/// The result of adding one entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Added {
    /// The entry is a new row.
    New,
    /// An earlier row has the same entry and action. `conflict` is true
    /// when that row has another category.
    Duplicate {
        /// The earlier row has another category.
        conflict: bool,
    },
}

/// Counts of one merge.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MergeCounts {
    /// Rows dropped because a broader row covers them, by source index.
    pub covered: Vec<usize>,
    /// Rows written, by source index.
    pub written: Vec<usize>,
    /// Rows written, by category index.
    pub categories: Vec<usize>,
    /// Covered rows dropped although their category differs from the
    /// earlier broader row that decides for them instead.
    pub covered_conflicts: usize,
    /// Rows kept before a broader, later row of another category.
    pub kept_conflicts: usize,
    /// Domain rows written (domain and subdomains).
    pub domain_rows: usize,
    /// Subdomain-only rows written.
    pub subdomain_rows: usize,
    /// Exact host rows written.
    pub exact_rows: usize,
    /// IP address and range rows written.
    pub ip_rows: usize,
}

impl MergeCounts {
    /// Returns the number of rows written.
    pub fn total_written(&self) -> usize {
        self.domain_rows + self.subdomain_rows + self.exact_rows + self.ip_rows
    }
}

/// A row of the output: either a host row or an IP row.
#[derive(Debug, Clone, Copy)]
enum OutRow {
    Host(u32),
    Ip(u32),
}

/// Collects rows in the order the sources give them.
#[derive(Debug, Default)]
pub struct Merger {
    names: HashMap<Box<str>, u32>,
    slots: Vec<NameSlots>,
    rows: Vec<HostRow>,
    ip_index: HashMap<(IpRange, Action), u32>,
    ip_rows: Vec<IpRow>,
}

/// The merged rows, ready to write.
#[derive(Debug)]
pub struct Merged {
    names: HashMap<Box<str>, u32>,
    name_count: usize,
    rows: Vec<HostRow>,
    ip_rows: Vec<IpRow>,
    order: Vec<OutRow>,
    /// The counts of the merge.
    pub counts: MergeCounts,
}

impl Merger {
    /// Starts an empty merge.
    pub fn new() -> Merger {
        Merger::default()
    }

    /// Adds a host entry. `name` is canonical, as [`webwarden_policy::Host`] gives it.
    ///
    /// # Errors
    ///
    /// Fails past `u32::MAX - 1` distinct names or rows.
    pub fn add_host(&mut self, name: &str, kind: HostKind, info: RowInfo) -> Result<Added, String> {
        let name_id = match self.names.get(name) {
            Some(&id) => id,
            None => {
                let id = index_u32(self.slots.len())?;
                self.names.insert(name.into(), id);
                self.slots.push([NONE; 6]);
                id
            }
        };
        let slot = &mut self.slots[name_id as usize][slot_index(info.action, kind)];
        if *slot != NONE {
            let earlier = self.rows[*slot as usize].info;
            return Ok(Added::Duplicate {
                conflict: earlier.category != info.category,
            });
        }
        *slot = index_u32(self.rows.len())?;
        self.rows.push(HostRow {
            name: name_id,
            kind,
            info,
        });
        Ok(Added::New)
    }

    /// Adds an IP address or range.
    ///
    /// # Errors
    ///
    /// Fails past `u32::MAX - 1` rows.
    pub fn add_ip(&mut self, range: IpRange, info: RowInfo) -> Result<Added, String> {
        if let Some(&earlier) = self.ip_index.get(&(range, info.action)) {
            let earlier = self.ip_rows[earlier as usize].info;
            return Ok(Added::Duplicate {
                conflict: earlier.category != info.category,
            });
        }
        let index = index_u32(self.ip_rows.len())?;
        self.ip_index.insert((range, info.action), index);
        self.ip_rows.push(IpRow { range, info });
        Ok(Added::New)
    }

    /// Drops covered rows and sorts the rest. `sources` and `categories`
    /// are the numbers of sources and categories that rows refer to.
    pub fn finish(self, sources: usize, categories: usize) -> Merged {
        let mut counts = MergeCounts {
            covered: vec![0; sources],
            written: vec![0; sources],
            categories: vec![0; categories],
            ..MergeCounts::default()
        };
        let names = names_by_id(&self.names, self.slots.len());
        let mut order = Vec::with_capacity(self.rows.len() + self.ip_rows.len());
        for (index, row) in self.rows.iter().enumerate() {
            let cover =
                earliest_host_cover(&self.names, &self.slots, names[row.name as usize], row);
            let cover_info = (cover != NONE).then(|| self.rows[cover as usize].info);
            if decide(index as u32, row.info, cover, cover_info, &mut counts) {
                count_kind(&mut counts, Some(row.kind));
                order.push(OutRow::Host(index as u32));
            }
        }
        for (index, row) in self.ip_rows.iter().enumerate() {
            let cover = earliest_ip_cover(&self.ip_index, row);
            let cover_info = (cover != NONE).then(|| self.ip_rows[cover as usize].info);
            if decide(index as u32, row.info, cover, cover_info, &mut counts) {
                count_kind(&mut counts, None);
                order.push(OutRow::Ip(index as u32));
            }
        }
        let order = sort_rows(order, &names, &self.rows, &self.ip_rows);
        drop(names);

        Merged {
            names: self.names,
            name_count: self.slots.len(),
            rows: self.rows,
            ip_rows: self.ip_rows,
            order,
            counts,
        }
    }
}

/// Returns every name by its id, borrowed from the name table.
fn names_by_id(table: &HashMap<Box<str>, u32>, count: usize) -> Vec<&str> {
    let mut names = vec![""; count];
    for (name, &id) in table {
        names[id as usize] = name;
    }
    names
}

fn index_u32(len: usize) -> Result<u32, String> {
    u32::try_from(len)
        .ok()
        .filter(|&index| index != NONE)
        .ok_or_else(|| format!("more than {} rows; split the sources", NONE - 1))
}

/// Decides whether a row stays, given the earliest row that covers it
/// (`cover`, or [`NONE`]), and counts the outcome. See the module
/// documentation for why this keeps every host's category.
fn decide(
    index: u32,
    info: RowInfo,
    cover: u32,
    cover_info: Option<RowInfo>,
    counts: &mut MergeCounts,
) -> bool {
    let Some(cover_info) = cover_info else {
        counts.written[info.source as usize] += 1;
        counts.categories[info.category as usize] += 1;
        return true;
    };
    let same_category = cover_info.category == info.category;
    if cover < index || same_category {
        counts.covered[info.source as usize] += 1;
        if !same_category {
            counts.covered_conflicts += 1;
        }
        return false;
    }
    counts.kept_conflicts += 1;
    counts.written[info.source as usize] += 1;
    counts.categories[info.category as usize] += 1;
    true
}

fn count_kind(counts: &mut MergeCounts, kind: Option<HostKind>) {
    match kind {
        Some(HostKind::Domain) => counts.domain_rows += 1,
        Some(HostKind::Subdomains) => counts.subdomain_rows += 1,
        Some(HostKind::Exact) => counts.exact_rows += 1,
        None => counts.ip_rows += 1,
    }
}

/// Returns the index of the earliest row of the same action that matches
/// every host `row` matches, or [`NONE`]. Those rows are a domain row for
/// the same name (unless `row` is one), and domain or subdomain rows for
/// each parent domain.
fn earliest_host_cover(
    lookup: &HashMap<Box<str>, u32>,
    slots: &[NameSlots],
    name: &str,
    row: &HostRow,
) -> u32 {
    let action = row.info.action;
    let mut earliest = NONE;
    if row.kind != HostKind::Domain {
        earliest = slots[row.name as usize][slot_index(action, HostKind::Domain)];
    }
    for (dot, _) in name.match_indices('.') {
        let Some(&parent) = lookup.get(&name[dot + 1..]) else {
            continue;
        };
        let parent = &slots[parent as usize];
        earliest = earliest
            .min(parent[slot_index(action, HostKind::Domain)])
            .min(parent[slot_index(action, HostKind::Subdomains)]);
    }
    earliest
}

/// Returns the index of the earliest row of the same action whose range
/// contains `row`'s range and is larger, or [`NONE`].
fn earliest_ip_cover(index: &HashMap<(IpRange, Action), u32>, row: &IpRow) -> u32 {
    (0..row.range.prefix())
        .filter_map(|prefix| index.get(&(row.range.supernet(prefix), row.info.action)))
        .copied()
        .min()
        .unwrap_or(NONE)
}

/// Appends the sort key of a host row: the labels from the right, each
/// followed by 0x01, then 0xFF, the kind and the action. Label bytes lie
/// between those two markers, so byte order sorts names label by label from
/// the right with a domain after its subdomains (`b.example.com`,
/// `example.com`, `example-x.com`), then exact before subdomain before
/// domain rows, then block before allow.
fn push_sort_key(keys: &mut Vec<u8>, name: &str, kind: HostKind, action: Action) {
    for label in name.rsplit('.') {
        keys.extend_from_slice(label.as_bytes());
        keys.push(0x01);
    }
    keys.push(0xFF);
    keys.push(kind_rank(kind));
    keys.push(action as u8);
}

/// Sorts the kept rows: host rows by [`push_sort_key`], then IP rows, each
/// before the ranges that contain it.
fn sort_rows(
    order: Vec<OutRow>,
    names: &[&str],
    rows: &[HostRow],
    ip_rows: &[IpRow],
) -> Vec<OutRow> {
    // Keys are built once, because comparing names label by label in the
    // comparator would split them again for every comparison.
    let mut keys = Vec::new();
    let mut host_keys = Vec::new();
    let mut ips = Vec::new();
    for row in order {
        match row {
            OutRow::Host(index) => {
                let host = &rows[index as usize];
                let start = keys.len();
                push_sort_key(
                    &mut keys,
                    names[host.name as usize],
                    host.kind,
                    host.info.action,
                );
                host_keys.push((start, keys.len(), index));
            }
            OutRow::Ip(index) => ips.push(index),
        }
    }
    host_keys.sort_unstable_by(|a, b| keys[a.0..a.1].cmp(&keys[b.0..b.1]));
    ips.sort_unstable_by_key(|&index| {
        let row = &ip_rows[index as usize];
        (row.range.sort_key(), row.info.action)
    });
    let hosts = host_keys
        .into_iter()
        .map(|(_, _, index)| OutRow::Host(index));
    hosts.chain(ips.into_iter().map(OutRow::Ip)).collect()
}

impl Merged {
    /// Writes the rows as CSV, `regex,category` for block rows and
    /// `regex,category,allow` for allow rows. `categories` are the names
    /// that rows' category indexes refer to.
    pub fn write_csv(&self, out: &mut impl Write, categories: &[String]) -> io::Result<()> {
        let fields: Vec<String> = categories.iter().map(|c| csv_field(c)).collect();
        let names = names_by_id(&self.names, self.name_count);
        let mut regex = String::new();
        for row in &self.order {
            regex.clear();
            let info = match *row {
                OutRow::Host(index) => {
                    let row = &self.rows[index as usize];
                    host_regex(&mut regex, names[row.name as usize], row.kind);
                    row.info
                }
                OutRow::Ip(index) => {
                    let row = &self.ip_rows[index as usize];
                    regex.push_str(&row.range.csv_entry());
                    row.info
                }
            };
            out.write_all(regex.as_bytes())?;
            out.write_all(b",")?;
            out.write_all(fields[info.category as usize].as_bytes())?;
            if info.action == Action::Allow {
                out.write_all(b",allow")?;
            }
            out.write_all(b"\n")?;
        }
        Ok(())
    }
}

/// Appends the regex for a canonical name, in the shapes the policy crate
/// serves from its literal table without parsing a regex: `example\.com`
/// (exact), `.+\.example\.com` (subdomains) and `(.*\.)?example\.com`
/// (domain and subdomains).
fn host_regex(out: &mut String, name: &str, kind: HostKind) {
    match kind {
        HostKind::Exact => {}
        HostKind::Subdomains => out.push_str(".+\\."),
        HostKind::Domain => out.push_str("(.*\\.)?"),
    }
    for (index, label) in name.split('.').enumerate() {
        if index > 0 {
            out.push_str("\\.");
        }
        out.push_str(label);
    }
}

/// Quotes a CSV field that contains a comma or a double quote.
fn csv_field(text: &str) -> String {
    if text.contains([',', '"']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use webwarden_policy::source::parse_net;

    const BLOCK: Action = Action::Block;

    fn info(category: u32, source: u32) -> RowInfo {
        RowInfo {
            action: BLOCK,
            category,
            source,
        }
    }

    fn csv(merged: &Merged, categories: &[&str]) -> Vec<String> {
        let categories: Vec<String> = categories.iter().map(|c| c.to_string()).collect();
        let mut out = Vec::new();
        merged.write_csv(&mut out, &categories).unwrap();
        String::from_utf8(out)
            .unwrap()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    #[test]
    fn rows_sort_by_labels_from_the_right() {
        let rows = [
            ("example.net", HostKind::Domain, BLOCK),
            ("example.com", HostKind::Domain, Action::Allow),
            ("example.com", HostKind::Domain, BLOCK),
            ("example.com", HostKind::Exact, BLOCK),
            ("b.example.com", HostKind::Domain, BLOCK),
            ("a.b.example.com", HostKind::Domain, BLOCK),
            ("example-x.com", HostKind::Domain, BLOCK),
            ("com", HostKind::Domain, BLOCK),
        ];
        let mut keys: Vec<(Vec<u8>, String)> = rows
            .iter()
            .map(|&(name, kind, action)| {
                let mut key = Vec::new();
                push_sort_key(&mut key, name, kind, action);
                (key, format!("{name} {kind:?} {action}"))
            })
            .collect();
        keys.sort();
        let sorted: Vec<&str> = keys.iter().map(|(_, row)| row.as_str()).collect();
        let expected = [
            "a.b.example.com Domain block",
            "b.example.com Domain block",
            "example.com Exact block",
            "example.com Domain block",
            "example.com Domain allow",
            "example-x.com Domain block",
            "com Domain block",
            "example.net Domain block",
        ];
        assert_eq!(sorted, expected);
    }

    #[test]
    fn duplicates_keep_the_first_row() {
        let mut merger = Merger::new();
        let first = merger.add_host("example.com", HostKind::Domain, info(0, 0));
        let same = merger.add_host("example.com", HostKind::Domain, info(0, 1));
        let other = merger.add_host("example.com", HostKind::Domain, info(1, 1));
        let exact = merger.add_host("example.com", HostKind::Exact, info(1, 1));
        assert_eq!(first, Ok(Added::New));
        assert_eq!(same, Ok(Added::Duplicate { conflict: false }));
        assert_eq!(other, Ok(Added::Duplicate { conflict: true }));
        assert_eq!(exact, Ok(Added::New));
        let allow = RowInfo {
            action: Action::Allow,
            ..info(0, 0)
        };
        assert_eq!(
            merger.add_host("example.com", HostKind::Domain, allow),
            Ok(Added::New)
        );
    }

    #[test]
    fn broader_row_drops_narrower_rows() {
        let mut merger = Merger::new();
        let rows = [
            ("a.b.example.com", HostKind::Domain),
            ("example.com", HostKind::Domain),
            ("x.example.com", HostKind::Exact),
            ("example.com", HostKind::Exact),
            ("wild.example.com", HostKind::Subdomains),
            ("deep.other.example", HostKind::Exact),
            ("other.example", HostKind::Subdomains),
            ("other.example", HostKind::Exact),
        ];
        for (name, kind) in rows {
            merger.add_host(name, kind, info(0, 0)).unwrap();
        }
        let merged = merger.finish(1, 1);
        assert_eq!(
            csv(&merged, &["Ads"]),
            [
                "(.*\\.)?example\\.com,Ads",
                "other\\.example,Ads",
                ".+\\.other\\.example,Ads"
            ]
        );
        assert_eq!(merged.counts.covered, [5]);
        assert_eq!(merged.counts.written, [3]);
        assert_eq!(merged.counts.covered_conflicts, 0);
        assert_eq!(merged.counts.kept_conflicts, 0);
    }

    #[test]
    fn allow_row_does_not_cover_block_row() {
        let mut merger = Merger::new();
        let allow = RowInfo {
            action: Action::Allow,
            ..info(0, 0)
        };
        merger
            .add_host("example.com", HostKind::Domain, allow)
            .unwrap();
        merger
            .add_host("ads.example.com", HostKind::Domain, info(0, 0))
            .unwrap();
        let merged = merger.finish(1, 1);
        assert_eq!(
            csv(&merged, &["Ads"]),
            [
                "(.*\\.)?ads\\.example\\.com,Ads",
                "(.*\\.)?example\\.com,Ads,allow"
            ]
        );
    }

    #[test]
    fn category_conflicts_keep_first_seen_category() {
        let mut merger = Merger::new();
        // Seen before its broader row, with another category: kept.
        merger
            .add_host("play.games.example", HostKind::Domain, info(0, 0))
            .unwrap();
        // Seen before its broader row, same category as it: dropped.
        merger
            .add_host("bet.games.example", HostKind::Domain, info(1, 0))
            .unwrap();
        merger
            .add_host("games.example", HostKind::Domain, info(1, 1))
            .unwrap();
        // Seen after its broader row, with another category: dropped.
        merger
            .add_host("chat.games.example", HostKind::Exact, info(2, 1))
            .unwrap();
        let merged = merger.finish(2, 3);
        assert_eq!(
            csv(&merged, &["Games", "Gambling", "Chat"]),
            [
                "(.*\\.)?play\\.games\\.example,Games",
                "(.*\\.)?games\\.example,Gambling"
            ]
        );
        assert_eq!(merged.counts.kept_conflicts, 1);
        assert_eq!(merged.counts.covered_conflicts, 1);
        assert_eq!(merged.counts.covered, [1, 1]);
        assert_eq!(merged.counts.categories, [1, 1, 0]);
    }

    #[test]
    fn ip_ranges_cover_addresses() {
        let mut merger = Merger::new();
        let parse = |text: &str| IpRange::from(parse_net(text).unwrap());
        merger.add_ip(parse("192.0.2.7"), info(0, 0)).unwrap();
        merger.add_ip(parse("192.0.2.0/24"), info(0, 0)).unwrap();
        merger.add_ip(parse("192.0.2.9"), info(0, 0)).unwrap();
        merger.add_ip(parse("2001:db8::1"), info(0, 0)).unwrap();
        let duplicate = merger.add_ip(parse("::ffff:192.0.2.0/120"), info(0, 0));
        assert_eq!(duplicate, Ok(Added::Duplicate { conflict: false }));
        let merged = merger.finish(1, 1);
        assert_eq!(
            csv(&merged, &["Malware"]),
            ["192.0.2.0/24,Malware", "2001:db8::1,Malware"]
        );
        assert_eq!(merged.counts.ip_rows, 2);
    }

    #[test]
    fn category_with_comma_is_quoted() {
        assert_eq!(csv_field("Ads, trackers"), "\"Ads, trackers\"");
        assert_eq!(csv_field("Say \"hi\""), "\"Say \"\"hi\"\"\"");
        assert_eq!(csv_field("Gambling"), "Gambling");
    }
}
