//! Loading sources into a compiled [`Policy`] and evaluating targets.
//!
//! Rules are numbered in load order (source by source, line by line), and a
//! lookup returns the lowest-numbered match, so the first matching row in file
//! order wins. Allow rules beat block rules, and within each action IP rules
//! are checked against the destination address before host rules.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use rustc_hash::FxHashMap;
use thiserror::Error;

use crate::host::Target;
use crate::matcher::{RuleSet, RuleSetBuilder};
use crate::pattern::{Anchor, HostShape};
use crate::source::{self, Action, BadRow, Format, Row, RowKind, RowSink, DEFAULT_CATEGORY};

/// How many bad rows a policy keeps for reporting; all of them are counted.
pub const MAX_KEPT_BAD_ROWS: usize = 10_000;

/// The reason a list could not be loaded.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum LoadError {
    /// The list file could not be read.
    #[error("failed to read list {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// Strict loading found bad rows; nothing was loaded.
    #[error("{count} bad row(s) in strict mode; the list was rejected, first: {first}")]
    Strict {
        /// How many bad rows there were.
        count: usize,
        /// The first bad row.
        first: Box<BadRow>,
        /// The bad rows kept for reporting (at most [`MAX_KEPT_BAD_ROWS`]).
        bad_rows: Vec<BadRow>,
    },
    /// The rules could not be compiled (for example a regex set too large).
    #[error("failed to compile the list: {0}")]
    Compile(String),
    /// Every row of a source was bad, which usually means a wrong format.
    #[error(
        "list {source_name} has no usable rows: all {bad_rows} row(s) are bad as format {format}; \
         check the format (set format= explicitly) and the rows reported"
    )]
    NoUsableRows {
        /// The source name.
        source_name: String,
        /// The format the rows were read as.
        format: Format,
        /// How many rows were bad.
        bad_rows: usize,
        /// The bad rows kept for reporting (at most [`MAX_KEPT_BAD_ROWS`]).
        bad_row_list: Vec<BadRow>,
    },
    /// More rules, rule text, categories or sources than the compact rule
    /// table can index.
    #[error(
        "the lists hold more than {max} rules or bytes of rule text, or more than 65535 \
         categories or lists; split them"
    )]
    TooLarge {
        /// The limit on rules and text bytes.
        max: u32,
    },
}

/// How to read one source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceOptions {
    /// The format; `None` detects it from the name and content.
    pub format: Option<Format>,
    /// The category of rows that carry none.
    pub category: Option<String>,
    /// The action of rows that carry none.
    pub action: Action,
}

impl Default for SourceOptions {
    fn default() -> Self {
        SourceOptions {
            format: None,
            category: None,
            action: Action::Block,
        }
    }
}

/// Rule counts by how the matcher serves them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KindCounts {
    /// Rows matched by host equality.
    pub exact: usize,
    /// Rows matched by a host suffix (`.*literal`, `.+literal`).
    pub suffix: usize,
    /// Rows matched by domain and subdomains (`(.*\.)?literal`, domain lists).
    pub domain: usize,
    /// Rows matched by a substring (`.*literal.*`).
    pub contains: usize,
    /// Rows matched by a regex set.
    pub regex: usize,
    /// Rows matched against the destination IP address.
    pub ip: usize,
}

impl KindCounts {
    /// All rows.
    pub fn total(&self) -> usize {
        self.exact + self.suffix + self.domain + self.contains + self.regex + self.ip
    }

    fn count(&mut self, kind: &RowKind) {
        match kind {
            RowKind::Ip(_) => self.ip += 1,
            RowKind::Host(pattern) => match pattern.shape {
                HostShape::Regex => self.regex += 1,
                HostShape::Literals(Anchor::Exact, _) => self.exact += 1,
                HostShape::Literals(Anchor::Suffix | Anchor::StrictSuffix, _) => self.suffix += 1,
                HostShape::Literals(Anchor::Domain, _) => self.domain += 1,
                HostShape::Literals(Anchor::Contains, _) => self.contains += 1,
            },
        }
    }

    fn add(&mut self, other: &KindCounts) {
        self.exact += other.exact;
        self.suffix += other.suffix;
        self.domain += other.domain;
        self.contains += other.contains;
        self.regex += other.regex;
        self.ip += other.ip;
    }
}

/// The result of loading one source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceSummary {
    /// The source name (usually the file path).
    pub name: String,
    /// The format used.
    pub format: Format,
    /// Rules loaded, by kind.
    pub rules: KindCounts,
    /// Rows skipped as bad.
    pub bad_rows: usize,
    /// Hosts-file entries for local names (`localhost` and the like), which
    /// are not rules.
    pub local_names: usize,
}

/// Loads sources and compiles them into a [`Policy`].
#[derive(Debug, Default)]
pub struct PolicyBuilder {
    strict: bool,
    store: RuleStore,
    allow: RuleSetBuilder,
    block: RuleSetBuilder,
    category_ids: FxHashMap<String, u16>,
    sources: Vec<SourceSummary>,
    bad_rows: Vec<BadRow>,
    bad_row_count: usize,
    too_large: bool,
}

impl PolicyBuilder {
    /// Starts an empty builder that skips bad rows.
    pub fn new() -> PolicyBuilder {
        PolicyBuilder::default()
    }

    /// In strict mode any bad row makes [`build`](Self::build) fail.
    pub fn strict(mut self, strict: bool) -> PolicyBuilder {
        self.strict = strict;
        self
    }

    /// Reads and adds a list file. Its name in verdicts is the path as given.
    ///
    /// # Errors
    ///
    /// Returns [`LoadError::Read`] when the file cannot be read.
    pub fn add_file(
        &mut self,
        path: &Path,
        options: &SourceOptions,
    ) -> Result<&SourceSummary, LoadError> {
        let text = fs::read(path).map_err(|source| LoadError::Read {
            path: path.to_owned(),
            source,
        })?;
        Ok(self.add_text(&path.display().to_string(), &text, options))
    }

    /// Adds a list held in memory under `name`.
    pub fn add_text(&mut self, name: &str, text: &[u8], options: &SourceOptions) -> &SourceSummary {
        let format = options.format.unwrap_or_else(|| Format::detect(name, text));
        let default_category = match (&options.category, format) {
            (Some(category), _) => Some(category.as_str()),
            (None, Format::Csv) => None,
            (None, _) => Some(DEFAULT_CATEGORY),
        };
        let source_id = u16::try_from(self.sources.len()).unwrap_or_else(|_| {
            self.too_large = true;
            u16::MAX
        });
        let default_category = default_category.map(|c| self.category_id(c));
        let mut loader = SourceLoader {
            builder: self,
            name,
            source_id,
            default_category,
            summary: SourceSummary {
                name: name.to_owned(),
                format,
                rules: KindCounts::default(),
                bad_rows: 0,
                local_names: 0,
            },
        };
        source::parse(
            text,
            format,
            options.action,
            default_category.is_some(),
            &mut loader,
        );
        let summary = loader.summary;
        self.sources.push(summary);
        self.sources.last().expect("a summary was just pushed")
    }

    /// Compiles everything added so far.
    ///
    /// # Errors
    ///
    /// Returns [`LoadError::Strict`] in strict mode when any row was bad,
    /// [`LoadError::TooLarge`] past the rule table's limits, and
    /// [`LoadError::Compile`] when a regex set cannot be built.
    pub fn build(self) -> Result<Policy, LoadError> {
        if self.too_large {
            return Err(LoadError::TooLarge { max: u32::MAX });
        }
        if self.strict && self.bad_row_count > 0 {
            return Err(LoadError::Strict {
                count: self.bad_row_count,
                first: Box::new(self.bad_rows[0].clone()),
                bad_rows: self.bad_rows,
            });
        }
        if let Some(source) = self
            .sources
            .iter()
            .find(|s| s.rules.total() == 0 && s.bad_rows > 0)
        {
            return Err(LoadError::NoUsableRows {
                source_name: source.name.clone(),
                format: source.format,
                bad_rows: source.bad_rows,
                bad_row_list: self.bad_rows,
            });
        }
        let (allow, allow_duplicates) = self.allow.build().map_err(LoadError::Compile)?;
        let (block, block_duplicates) = self.block.build().map_err(LoadError::Compile)?;
        let mut categories = vec![Box::<str>::from(""); self.category_ids.len()];
        for (name, id) in self.category_ids {
            categories[id as usize] = name.into_boxed_str();
        }
        let mut store = self.store;
        store.shrink();
        Ok(Policy {
            allow,
            block,
            store,
            categories,
            sources: self.sources,
            bad_rows: self.bad_rows,
            bad_row_count: self.bad_row_count,
            duplicate_keys: allow_duplicates + block_duplicates,
        })
    }

    fn category_id(&mut self, name: &str) -> u16 {
        if let Some(id) = self.category_ids.get(name) {
            return *id;
        }
        let Ok(id) = u16::try_from(self.category_ids.len()) else {
            self.too_large = true;
            return u16::MAX;
        };
        self.category_ids.insert(name.to_owned(), id);
        id
    }
}

/// Feeds parsed rows of one source into the builder.
struct SourceLoader<'b> {
    builder: &'b mut PolicyBuilder,
    name: &'b str,
    source_id: u16,
    default_category: Option<u16>,
    summary: SourceSummary,
}

impl RowSink for SourceLoader<'_> {
    fn row(&mut self, row: Row<'_>) {
        let category = match row.category {
            Some(name) => self.builder.category_id(name),
            // The parser only yields rows without a category when the source
            // has a default one.
            None => self.default_category.unwrap_or_default(),
        };
        let meta = RuleMeta {
            text_start: 0,
            text_len: 0,
            line: row.line,
            category,
            source: self.source_id,
            action: row.action,
        };
        let Some(rule) = self.builder.store.push(meta, row.entry) else {
            self.builder.too_large = true;
            return;
        };
        let set = match row.action {
            Action::Allow => &mut self.builder.allow,
            Action::Block => &mut self.builder.block,
        };
        self.summary.rules.count(&row.kind);
        match row.kind {
            RowKind::Ip(net) => set.add_ip(net, rule),
            RowKind::Host(pattern) => match pattern.shape {
                HostShape::Regex => set.add_regex(&pattern.regex, rule),
                HostShape::Literals(anchor, literals) => {
                    for literal in &literals {
                        set.add_literal(anchor, literal, rule);
                    }
                }
            },
        }
    }

    fn bad_row(&mut self, line: u32, text: &str, reason: String) {
        self.summary.bad_rows += 1;
        self.builder.bad_row_count += 1;
        if self.builder.bad_rows.len() < MAX_KEPT_BAD_ROWS {
            self.builder.bad_rows.push(BadRow {
                source: self.name.to_owned(),
                line,
                text: text.to_owned(),
                reason,
            });
        }
    }

    fn skipped_local(&mut self) {
        self.summary.local_names += 1;
    }
}

/// Per-rule data, packed: the rule text lives in one shared string.
#[derive(Debug, Clone, Copy)]
struct RuleMeta {
    text_start: u32,
    line: u32,
    /// Rows are at most [`crate::source::MAX_ROW_LEN`] bytes, so this fits.
    text_len: u16,
    category: u16,
    source: u16,
    action: Action,
}

/// Every rule's metadata, indexed by rule number.
#[derive(Debug, Default)]
struct RuleStore {
    text: String,
    rules: Vec<RuleMeta>,
}

impl RuleStore {
    /// Appends a rule and returns its number, or `None` past `u32` limits.
    fn push(&mut self, mut meta: RuleMeta, text: &str) -> Option<u32> {
        let index = u32::try_from(self.rules.len()).ok()?;
        meta.text_start = u32::try_from(self.text.len()).ok()?;
        meta.text_len = u16::try_from(text.len()).ok()?;
        meta.text_start.checked_add(u32::from(meta.text_len))?;
        self.text.push_str(text);
        self.rules.push(meta);
        Some(index)
    }

    fn shrink(&mut self) {
        self.text.shrink_to_fit();
        self.rules.shrink_to_fit();
    }

    fn text(&self, meta: &RuleMeta) -> &str {
        let start = meta.text_start as usize;
        &self.text[start..start + meta.text_len as usize]
    }
}

/// A compiled set of lists.
#[derive(Debug)]
pub struct Policy {
    allow: RuleSet,
    block: RuleSet,
    store: RuleStore,
    categories: Vec<Box<str>>,
    sources: Vec<SourceSummary>,
    bad_rows: Vec<BadRow>,
    bad_row_count: usize,
    duplicate_keys: usize,
}

/// The part of the target a rule matched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MatchedOn {
    /// The destination IP address.
    Ip,
    /// The canonical host.
    Host,
}

impl MatchedOn {
    /// `ip` or `host`.
    pub fn as_str(self) -> &'static str {
        match self {
            MatchedOn::Ip => "ip",
            MatchedOn::Host => "host",
        }
    }
}

/// The rule that decided a verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MatchedRule<'p> {
    /// The rule's number among all loaded rules, in load order.
    pub index: u32,
    /// The rule's action.
    pub action: Action,
    /// The rule's category.
    pub category: &'p str,
    /// The rule as written in its list.
    pub rule: &'p str,
    /// The source the rule came from.
    pub source: &'p str,
    /// The 1-based line of the rule in its source.
    pub line: u32,
    /// The part of the target the rule matched.
    pub matched_on: MatchedOn,
}

/// The decision for one target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verdict<'p> {
    /// The action to take: allow when no rule matched.
    pub action: Action,
    /// The deciding rule, if any.
    pub rule: Option<MatchedRule<'p>>,
}

impl Policy {
    /// Decides a target: the first matching allow rule, else the first
    /// matching block rule, else allow. Within each action, IP rules are
    /// checked against the destination address before host rules.
    pub fn evaluate(&self, target: &Target) -> Verdict<'_> {
        for (set, action) in [(&self.allow, Action::Allow), (&self.block, Action::Block)] {
            if let Some(found) = first_match(set, target) {
                return Verdict {
                    action,
                    rule: Some(self.matched_rule(found)),
                };
            }
        }
        Verdict {
            action: Action::Allow,
            rule: None,
        }
    }

    /// Summaries of the loaded sources, in load order.
    pub fn sources(&self) -> &[SourceSummary] {
        &self.sources
    }

    /// Rules loaded, by kind, over all sources.
    pub fn rule_counts(&self) -> KindCounts {
        let mut total = KindCounts::default();
        for source in &self.sources {
            total.add(&source.rules);
        }
        total
    }

    /// Rules per category, sorted by category name.
    pub fn category_counts(&self) -> BTreeMap<&str, usize> {
        let mut counts = BTreeMap::new();
        for meta in &self.store.rules {
            *counts
                .entry(&*self.categories[meta.category as usize])
                .or_default() += 1;
        }
        counts
    }

    /// Returns the first bad rows (at most [`MAX_KEPT_BAD_ROWS`]).
    pub fn bad_rows(&self) -> &[BadRow] {
        &self.bad_rows
    }

    /// Returns how many rows were skipped as bad in all.
    pub fn bad_row_count(&self) -> usize {
        self.bad_row_count
    }

    /// Rules that can never decide a verdict because earlier rules of the
    /// same action have all their entries (duplicate rows).
    pub fn duplicate_count(&self) -> usize {
        self.duplicate_keys
    }

    /// Bytes held by the literal tables.
    pub fn literal_table_bytes(&self) -> usize {
        self.allow.literal_table_bytes() + self.block.literal_table_bytes()
    }

    fn matched_rule(&self, (index, matched_on): (u32, MatchedOn)) -> MatchedRule<'_> {
        let meta = &self.store.rules[index as usize];
        MatchedRule {
            index,
            action: meta.action,
            category: &self.categories[meta.category as usize],
            rule: self.store.text(meta),
            source: &self.sources[meta.source as usize].name,
            line: meta.line,
            matched_on,
        }
    }
}

fn first_match(set: &RuleSet, target: &Target) -> Option<(u32, MatchedOn)> {
    if let Some(ip) = target.ip() {
        if let Some(rule) = set.first_ip_match(ip) {
            return Some((rule, MatchedOn::Ip));
        }
    }
    set.first_host_match(target.host().as_str())
        .map(|rule| (rule, MatchedOn::Host))
}
