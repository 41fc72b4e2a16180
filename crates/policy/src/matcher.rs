//! The compiled matcher for the rules of one action.
//!
//! Literal host rules live in a [`LiteralTable`] that is probed once per
//! suffix of the host. Contains rules share an Aho-Corasick automaton, IP
//! rules a table per prefix length, and only true regexes go to regex
//! sets. Every lookup returns the lowest rule index that matches, which is
//! the first matching rule in file order.

use std::net::IpAddr;

use aho_corasick::AhoCorasick;
use ipnet::IpNet;
use regex::bytes::{RegexSet, RegexSetBuilder};
use rustc_hash::FxHashMap;

use crate::literal_table::{LiteralTable, LiteralTableBuilder};
use crate::pattern::{full_match_regex, Anchor, REGEX_SIZE_LIMIT};

/// Regexes per regex set. Smaller sets compile faster and stay under the
/// regex crate's size limit; lookups stop at the first set that matches.
const REGEX_CHUNK: usize = 256;

/// Collects the rules of one action before compilation.
#[derive(Debug, Default)]
pub(crate) struct RuleSetBuilder {
    literals: LiteralTableBuilder,
    contains: Vec<(String, u32)>,
    regexes: Vec<(String, u32)>,
    ips: Vec<(IpNet, u32)>,
}

impl RuleSetBuilder {
    /// Adds one literal with its anchor. `literal` is canonical: lower case
    /// and ASCII.
    pub(crate) fn add_literal(&mut self, anchor: Anchor, literal: &str, rule: u32) {
        match anchor {
            Anchor::Contains => self.contains.push((literal.to_owned(), rule)),
            _ => self.literals.add(anchor, literal, rule),
        }
    }

    /// Adds a true regex, which matches the whole host case-insensitively.
    pub(crate) fn add_regex(&mut self, regex: &str, rule: u32) {
        self.regexes.push((full_match_regex(regex), rule));
    }

    /// Adds an IP address or range.
    pub(crate) fn add_ip(&mut self, net: IpNet, rule: u32) {
        self.ips.push((net, rule));
    }

    /// Compiles the collected rules. Returns the rule set and the number of
    /// duplicate rules: literal, contains and IP rules whose every entry
    /// repeats an entry of an earlier rule, so they can never decide.
    pub(crate) fn build(self) -> Result<(RuleSet, usize), String> {
        let mut candidates: Vec<u32> = self.literals.rules().collect();
        candidates.extend(self.contains.iter().map(|c| c.1));
        candidates.extend(self.ips.iter().map(|i| i.1));
        candidates.sort_unstable();
        candidates.dedup();

        let literals = self.literals.build()?;
        let set = RuleSet {
            literals,
            contains: ContainsTable::build(self.contains)?,
            regexes: build_regex_chunks(self.regexes)?,
            ips: IpTable::build(&self.ips),
        };

        let mut deciding: Vec<u32> = set.literals.rules().collect();
        deciding.extend(set.contains.iter().flat_map(|c| c.rules.iter().copied()));
        deciding.extend(set.ips.rules());
        deciding.sort_unstable();
        deciding.dedup();
        Ok((set, candidates.len() - deciding.len()))
    }
}

/// The compiled rules of one action.
#[derive(Debug, Default)]
pub(crate) struct RuleSet {
    literals: LiteralTable,
    contains: Option<ContainsTable>,
    regexes: Vec<RegexChunk>,
    ips: IpTable,
}

impl RuleSet {
    /// Returns the first IP rule (lowest index) whose range contains `ip`.
    pub(crate) fn first_ip_match(&self, ip: IpAddr) -> Option<u32> {
        self.ips.first_match(ip)
    }

    /// Returns the first host rule (lowest index) that matches the canonical `host`.
    pub(crate) fn first_host_match(&self, host: &str) -> Option<u32> {
        let mut best = self.literals.first_match(host.as_bytes());
        if let Some(contains) = &self.contains {
            best = min_option(best, contains.first_match(host));
        }
        for chunk in &self.regexes {
            // Chunks are in rule order, so a chunk that starts after the best
            // match so far cannot improve it, and neither can later ones.
            if best.is_some_and(|b| b < chunk.first_rule) {
                break;
            }
            if let Some(rule) = chunk.first_match(host) {
                best = min_option(best, Some(rule));
                break;
            }
        }
        best
    }

    /// Heap bytes held by the literal table, for statistics.
    pub(crate) fn literal_table_bytes(&self) -> usize {
        self.literals.heap_bytes()
    }
}

/// Returns the lower of two optional rule numbers.
pub(crate) fn min_option(a: Option<u32>, b: Option<u32>) -> Option<u32> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, None) => a,
        (None, b) => b,
    }
}

/// Contains rules (`.*literal.*`) in one Aho-Corasick automaton.
#[derive(Debug)]
struct ContainsTable {
    automaton: AhoCorasick,
    /// Rule index of each pattern, by pattern id.
    rules: Vec<u32>,
}

impl ContainsTable {
    fn build(mut items: Vec<(String, u32)>) -> Result<Option<ContainsTable>, String> {
        if items.is_empty() {
            return Ok(None);
        }
        items.sort_unstable();
        items.dedup_by(|later, earlier| later.0 == earlier.0);
        let automaton = AhoCorasick::new(items.iter().map(|(literal, _)| literal))
            .map_err(|err| format!("failed to build the contains table: {err}"))?;
        let rules = items.into_iter().map(|(_, rule)| rule).collect();
        Ok(Some(ContainsTable { automaton, rules }))
    }

    fn first_match(&self, host: &str) -> Option<u32> {
        self.automaton
            .find_overlapping_iter(host)
            .map(|m| self.rules[m.pattern().as_usize()])
            .min()
    }
}

/// Up to [`REGEX_CHUNK`] consecutive regex rules.
#[derive(Debug)]
struct RegexChunk {
    set: RegexSet,
    rules: Vec<u32>,
    first_rule: u32,
}

impl RegexChunk {
    fn first_match(&self, host: &str) -> Option<u32> {
        let host = host.as_bytes();
        if !self.set.is_match(host) {
            return None;
        }
        // Patterns are in rule order, so the first set index is the lowest rule.
        self.set.matches(host).iter().next().map(|i| self.rules[i])
    }
}

fn build_regex_chunks(regexes: Vec<(String, u32)>) -> Result<Vec<RegexChunk>, String> {
    let mut chunks = Vec::new();
    for group in regexes.chunks(REGEX_CHUNK) {
        build_chunk(group, &mut chunks)?;
    }
    Ok(chunks)
}

/// Builds one regex set, halving the group when the set exceeds the regex
/// crate's size limit.
fn build_chunk(group: &[(String, u32)], out: &mut Vec<RegexChunk>) -> Result<(), String> {
    let patterns = group.iter().map(|(regex, _)| regex.as_str());
    let built = RegexSetBuilder::new(patterns)
        .unicode(false)
        .size_limit(REGEX_SIZE_LIMIT * group.len())
        .build();
    match built {
        Ok(set) => {
            out.push(RegexChunk {
                set,
                rules: group.iter().map(|(_, rule)| *rule).collect(),
                first_rule: group[0].1,
            });
            Ok(())
        }
        Err(err) if group.len() == 1 => Err(format!(
            "regex {:?} is too large to compile: {err}",
            group[0].0
        )),
        Err(_) => {
            let (left, right) = group.split_at(group.len() / 2);
            build_chunk(left, out)?;
            build_chunk(right, out)
        }
    }
}

/// IP rules: one hash table per prefix length, for IPv4 and IPv6.
#[derive(Debug, Default)]
struct IpTable {
    v4: Vec<(u8, FxHashMap<u32, u32>)>,
    v6: Vec<(u8, FxHashMap<u128, u32>)>,
}

impl IpTable {
    fn build(nets: &[(IpNet, u32)]) -> IpTable {
        let mut v4: FxHashMap<u8, FxHashMap<u32, u32>> = FxHashMap::default();
        let mut v6: FxHashMap<u8, FxHashMap<u128, u32>> = FxHashMap::default();
        for (net, rule) in nets {
            match net {
                IpNet::V4(net) => {
                    let key = u32::from(net.network());
                    let slot = v4.entry(net.prefix_len()).or_default();
                    slot.entry(key)
                        .and_modify(|r| *r = (*r).min(*rule))
                        .or_insert(*rule);
                }
                IpNet::V6(net) => {
                    let key = u128::from(net.network());
                    let slot = v6.entry(net.prefix_len()).or_default();
                    slot.entry(key)
                        .and_modify(|r| *r = (*r).min(*rule))
                        .or_insert(*rule);
                }
            }
        }
        let mut table = IpTable {
            v4: v4.into_iter().collect(),
            v6: v6.into_iter().collect(),
        };
        table.v4.sort_unstable_by_key(|(len, _)| *len);
        table.v6.sort_unstable_by_key(|(len, _)| *len);
        table
    }

    /// Returns every rule that owns an entry.
    fn rules(&self) -> impl Iterator<Item = u32> + '_ {
        let v4 = self.v4.iter().flat_map(|(_, map)| map.values().copied());
        let v6 = self.v6.iter().flat_map(|(_, map)| map.values().copied());
        v4.chain(v6)
    }

    fn first_match(&self, ip: IpAddr) -> Option<u32> {
        match ip {
            IpAddr::V4(ip) => {
                let bits = u32::from(ip);
                self.v4
                    .iter()
                    .filter_map(|(len, map)| map.get(&(bits & mask_u32(*len))).copied())
                    .min()
            }
            IpAddr::V6(ip) => {
                let bits = u128::from(ip);
                self.v6
                    .iter()
                    .filter_map(|(len, map)| map.get(&(bits & mask_u128(*len))).copied())
                    .min()
            }
        }
    }
}

fn mask_u32(prefix_len: u8) -> u32 {
    u32::MAX
        .checked_shl(32 - u32::from(prefix_len))
        .unwrap_or(0)
}

fn mask_u128(prefix_len: u8) -> u128 {
    u128::MAX
        .checked_shl(128 - u32::from(prefix_len))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(literals: &[(Anchor, &str)]) -> RuleSet {
        let mut builder = RuleSetBuilder::default();
        for (rule, (anchor, literal)) in literals.iter().enumerate() {
            builder.add_literal(*anchor, literal, rule as u32);
        }
        builder.build().unwrap().0
    }

    #[test]
    fn literal_anchors_match_as_their_regexes() {
        let rules = set(&[
            (Anchor::Exact, "exact.example"),
            (Anchor::Suffix, "twitter.com"),
            (Anchor::StrictSuffix, ".strict.example"),
            (Anchor::Domain, "domain.example"),
        ]);
        let cases = [
            ("exact.example", Some(0)),
            ("www.exact.example", None),
            ("twitter.com", Some(1)),
            ("nottwitter.com", Some(1)),
            ("twitter.com.evil", None),
            (".strict.example", None),
            ("a.strict.example", Some(2)),
            ("domain.example", Some(3)),
            ("a.b.domain.example", Some(3)),
            ("notdomain.example", None),
        ];
        for (host, expected) in cases {
            assert_eq!(rules.first_host_match(host), expected, "{host}");
        }
    }

    #[test]
    fn earliest_rule_wins_across_tables() {
        let mut builder = RuleSetBuilder::default();
        builder.add_regex(r".*\.example\.com", 0);
        builder.add_literal(Anchor::Domain, "example.com", 1);
        builder.add_literal(Anchor::Contains, "exam", 2);
        builder.add_literal(Anchor::Exact, "example.com", 3);
        let rules = builder.build().unwrap().0;
        assert_eq!(rules.first_host_match("www.example.com"), Some(0));
        assert_eq!(rules.first_host_match("example.com"), Some(1));
        assert_eq!(rules.first_host_match("examples.org"), Some(2));
    }

    #[test]
    fn duplicate_literals_keep_first_rule() {
        let mut builder = RuleSetBuilder::default();
        builder.add_literal(Anchor::Exact, "dup.example", 5);
        builder.add_literal(Anchor::Exact, "dup.example", 2);
        builder.add_literal(Anchor::Domain, "dom.example", 6);
        builder.add_literal(Anchor::Domain, "dom.example", 7);
        builder.add_literal(Anchor::Exact, "case.example", 8);
        builder.add_literal(Anchor::Exact, "case.example", 8);
        builder.add_ip("192.0.2.0/24".parse().unwrap(), 9);
        builder.add_ip("192.0.2.0/24".parse().unwrap(), 10);
        let (rules, duplicates) = builder.build().unwrap();
        assert_eq!(duplicates, 3);
        assert_eq!(rules.first_host_match("dup.example"), Some(2));
    }

    #[test]
    fn ip_table_finds_earliest_containing_range() {
        let mut builder = RuleSetBuilder::default();
        builder.add_ip("10.1.2.3/32".parse().unwrap(), 4);
        builder.add_ip("10.0.0.0/8".parse().unwrap(), 1);
        builder.add_ip("0.0.0.0/0".parse().unwrap(), 9);
        builder.add_ip("2001:db8::/32".parse().unwrap(), 3);
        let rules = builder.build().unwrap().0;
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(rules.first_ip_match(ip("10.1.2.3")), Some(1));
        assert_eq!(rules.first_ip_match(ip("192.0.2.1")), Some(9));
        assert_eq!(rules.first_ip_match(ip("2001:db8::5")), Some(3));
        assert_eq!(rules.first_ip_match(ip("2001:db9::5")), None);
    }
}
