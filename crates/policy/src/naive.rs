//! A plain first-match scan over every rule, one regex at a time.
//!
//! This is the meaning of a list written as directly as possible: each host
//! rule is a case-insensitive regex that must match the whole host, each IP
//! rule a range. The differential tests and benchmarks compare the compiled
//! [`Policy`](crate::Policy) against it; it is far too slow for traffic.

use std::net::IpAddr;

use ipnet::IpNet;
use regex::bytes::Regex;

use crate::host::Target;
use crate::pattern::compile_rule_regex;
use crate::policy::SourceOptions;
use crate::source::{self, Action, Format, Row, RowKind, RowSink};

/// The reference matcher.
#[derive(Debug, Default)]
pub struct NaiveMatcher {
    rules: Vec<(Action, NaiveRule)>,
}

#[derive(Debug)]
enum NaiveRule {
    Ip(IpNet),
    Host(Regex),
}

impl NaiveMatcher {
    /// Starts an empty matcher.
    pub fn new() -> NaiveMatcher {
        NaiveMatcher::default()
    }

    /// Adds a list held in memory, numbering its rules after the earlier
    /// ones exactly as [`PolicyBuilder::add_text`](crate::PolicyBuilder::add_text)
    /// does.
    pub fn add_text(&mut self, name: &str, text: &[u8], options: &SourceOptions) {
        let format = options.format.unwrap_or_else(|| Format::detect(name, text));
        let has_default = options.category.is_some() || format != Format::Csv;
        source::parse(text, format, options.action, has_default, self);
    }

    /// Returns the action and the number of the deciding rule, or `None`
    /// when no rule matches.
    pub fn evaluate(&self, target: &Target) -> Option<(Action, u32)> {
        for action in [Action::Allow, Action::Block] {
            let rules = self.rules.iter().enumerate().filter(|(_, r)| r.0 == action);
            if let Some(ip) = target.ip() {
                if let Some(index) = first(rules.clone(), |rule| ip_matches(rule, ip)) {
                    return Some((action, index));
                }
            }
            let host = target.host().as_str();
            if let Some(index) = first(rules, |rule| host_matches(rule, host)) {
                return Some((action, index));
            }
        }
        None
    }

    /// Number of rules loaded.
    pub fn len(&self) -> usize {
        self.rules.len()
    }

    /// Checks whether no rules are loaded.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }
}

fn first<'a>(
    mut rules: impl Iterator<Item = (usize, &'a (Action, NaiveRule))>,
    matches: impl Fn(&NaiveRule) -> bool,
) -> Option<u32> {
    rules
        .find(|(_, (_, rule))| matches(rule))
        .map(|(index, _)| index as u32)
}

fn ip_matches(rule: &NaiveRule, ip: IpAddr) -> bool {
    matches!(rule, NaiveRule::Ip(net) if net.contains(&ip))
}

fn host_matches(rule: &NaiveRule, host: &str) -> bool {
    matches!(rule, NaiveRule::Host(regex) if regex.is_match(host.as_bytes()))
}

impl RowSink for NaiveMatcher {
    fn row(&mut self, row: Row<'_>) {
        let rule = match row.kind {
            RowKind::Ip(net) => NaiveRule::Ip(net),
            RowKind::Host(pattern) => {
                // The loader already compiled this regex once, so it is valid.
                let regex = compile_rule_regex(&pattern.regex)
                    .expect("row regexes are validated by the parser");
                NaiveRule::Host(regex)
            }
        };
        self.rules.push((row.action, rule));
    }

    fn bad_row(&mut self, _line: u32, _text: &str, _reason: String) {}
}
