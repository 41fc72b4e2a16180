//! Classification of host rules into literal shapes and true regexes.
//!
//! Every host rule means "this regex, case-insensitive, matches the whole
//! canonical host". Most rows are really literals with a fixed anchor
//! (`.*example\.com`, `(.*\.)?example\.com`, `example\.com`), and those are
//! served from tables. The classification must keep the meaning exactly, and
//! the differential tests check it against plain `regex` full matching.

use regex_syntax::hir::literal::{ExtractKind, Extractor};
use regex_syntax::hir::{Class, Hir, HirKind, Look};

use crate::host;

/// The position of a literal in the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Anchor {
    /// The host equals the literal (`example\.com`).
    Exact,
    /// The host ends with the literal (`.*example\.com`); this also matches
    /// `notexample.com`, as the regex does.
    Suffix,
    /// The host ends with the literal and has at least one character before
    /// it (`.+\.example\.com`).
    StrictSuffix,
    /// The host equals the literal or ends with a dot and the literal
    /// (`(.*\.)?example\.com`, and every plain domain-list entry).
    Domain,
    /// The host contains the literal (`.*casino.*`).
    Contains,
}

/// The compiled form of a host rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostShape {
    /// Served from the literal tables: every literal with the same anchor.
    Literals(Anchor, Vec<String>),
    /// Served by a regex set.
    Regex,
}

/// A host rule after classification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPattern {
    /// The regex that gives the rule's meaning as a whole-host match, before
    /// the case-insensitive flag and anchors are added.
    pub regex: String,
    /// The table or regex set that serves the rule.
    pub shape: HostShape,
}

/// The reason a regex row cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum PatternError {
    Syntax(String),
    NonAscii,
    PartialLabel,
    Idna(String),
    TooBig(String),
    Url,
    NeverMatches(String),
}

impl std::fmt::Display for PatternError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PatternError::Syntax(reason) => write!(f, "invalid regex: {reason}"),
            PatternError::NonAscii => f.write_str(
                "regex contains non-ASCII characters, which never match a host \
                 because hosts are compared in punycode; write the xn-- form",
            ),
            PatternError::PartialLabel => f.write_str(
                "non-ASCII text inside a label cannot be converted to punycode; \
                 match whole labels or write the xn-- form",
            ),
            PatternError::Idna(literal) => write!(
                f,
                "{literal:?} is not a valid internationalized domain name; write the xn-- form"
            ),
            PatternError::TooBig(reason) => write!(f, "regex is too large to compile: {reason}"),
            PatternError::Url => f.write_str(
                "regex looks like a URL, but rules match the host name only; \
                 write a regex for the host",
            ),
            PatternError::NeverMatches(literal) => write!(
                f,
                "regex can never match a host name because {literal:?} contains a character \
                 that no host has or is too long; write a host name pattern"
            ),
        }
    }
}

/// Prefixes the fast path recognizes: the text, the anchor it gives, and
/// the part of the literal it contains (the escaped dot of `.*\.`).
const FAST_PREFIXES: [(&str, Anchor, &str); 8] = [
    ("(.*\\.)?", Anchor::Domain, ""),
    ("(?:.*\\.)?", Anchor::Domain, ""),
    (".*\\.", Anchor::Suffix, "."),
    (".*?", Anchor::Suffix, ""),
    (".*", Anchor::Suffix, ""),
    (".+\\.", Anchor::StrictSuffix, "."),
    (".+?", Anchor::StrictSuffix, ""),
    (".+", Anchor::StrictSuffix, ""),
];

/// Classifies a regex row. Literal shapes come back with their literals in
/// canonical form (lower case, punycode).
pub(crate) fn classify(regex: &str) -> Result<HostPattern, PatternError> {
    if let Some((anchor, literal)) = fast_literal(regex) {
        let literals = usable_literals(vec![literal])?;
        return Ok(HostPattern {
            regex: regex.to_owned(),
            shape: HostShape::Literals(anchor, literals),
        });
    }
    if regex.contains("://") {
        return Err(PatternError::Url);
    }
    let hir = regex_syntax::ParserBuilder::new()
        .build()
        .parse(regex)
        .map_err(|err| PatternError::Syntax(syntax_reason(&err)))?;

    // Flag groups such as `(?-i)` change how case works, so those rows keep
    // their full regex semantics.
    let has_flags = regex
        .match_indices("(?")
        .any(|(at, _)| !regex[at..].starts_with("(?:"));
    let literals = if has_flags { None } else { hir_literals(&hir) };
    let Some((anchor, literals)) = literals else {
        if !regex.is_ascii() || has_non_ascii_literal(&hir) {
            return Err(PatternError::NonAscii);
        }
        check_compiles(regex)?;
        return Ok(HostPattern {
            regex: regex.to_owned(),
            shape: HostShape::Regex,
        });
    };
    if regex.is_ascii() {
        let literals = literals.iter().map(|l| l.to_ascii_lowercase()).collect();
        let literals = usable_literals(literals)?;
        return Ok(HostPattern {
            regex: regex.to_owned(),
            shape: HostShape::Literals(anchor, literals),
        });
    }

    // Non-ASCII literals are converted to punycode, and the regex that gives
    // the rule's meaning is rebuilt from the converted literals.
    let literals = literals
        .iter()
        .map(|l| punycode_literal(l, anchor))
        .collect::<Result<Vec<_>, _>>()?;
    let literals = usable_literals(literals)?;
    Ok(HostPattern {
        regex: literal_regex(anchor, &literals),
        shape: HostShape::Literals(anchor, literals),
    })
}

/// Drops literals that no canonical host can contain (characters outside
/// `a-z0-9-_.`, or longer than a host name), and fails when none is left,
/// since such a row would silently never match.
fn usable_literals(literals: Vec<String>) -> Result<Vec<String>, PatternError> {
    let usable =
        |l: &String| l.len() <= host::MAX_HOST_LEN + 1 && l.chars().all(host::is_host_char);
    if let Some(bad) = literals.iter().find(|l| !usable(l)) {
        if !literals.iter().any(usable) {
            return Err(PatternError::NeverMatches(bad.clone()));
        }
    }
    Ok(literals.into_iter().filter(usable).collect())
}

/// Checks whether a parsed regex contains a literal character, or a class
/// of only such characters, outside ASCII. Escapes such as `\x{FC}` hide
/// those from a look at the text.
fn has_non_ascii_literal(hir: &Hir) -> bool {
    match hir.kind() {
        HirKind::Literal(literal) => !literal.0.is_ascii(),
        HirKind::Class(Class::Unicode(class)) => class
            .ranges()
            .first()
            .is_some_and(|r| !r.start().is_ascii()),
        HirKind::Class(Class::Bytes(class)) => class
            .ranges()
            .first()
            .is_some_and(|r| !r.start().is_ascii()),
        HirKind::Repetition(rep) => has_non_ascii_literal(&rep.sub),
        HirKind::Capture(capture) => has_non_ascii_literal(&capture.sub),
        HirKind::Concat(parts) | HirKind::Alternation(parts) => {
            parts.iter().any(has_non_ascii_literal)
        }
        HirKind::Empty | HirKind::Look(_) => false,
    }
}

/// Builds the regex that means "this literal with this anchor".
pub(crate) fn literal_regex(anchor: Anchor, literals: &[String]) -> String {
    let body = literals
        .iter()
        .map(|l| regex_syntax::escape(l))
        .collect::<Vec<_>>()
        .join("|");
    match anchor {
        Anchor::Exact => format!("(?:{body})"),
        Anchor::Suffix => format!(".*(?:{body})"),
        Anchor::StrictSuffix => format!(".+(?:{body})"),
        Anchor::Domain => format!("(?:.*\\.)?(?:{body})"),
        Anchor::Contains => format!(".*(?:{body}).*"),
    }
}

/// Recognizes the common row shapes by their text alone: an optional `^`, an
/// optional prefix from [`FAST_PREFIXES`], a body of letters, digits, `-`,
/// `_` and `\.`, an optional `.*` (for contains) and an optional `$`.
fn fast_literal(regex: &str) -> Option<(Anchor, String)> {
    let mut rest = regex.strip_prefix('^').unwrap_or(regex);
    if let Some(body) = rest.strip_suffix('$') {
        if !body.ends_with('\\') {
            rest = body;
        }
    }
    let mut anchor = Anchor::Exact;
    let mut literal = String::new();
    for (prefix, prefix_anchor, literal_start) in FAST_PREFIXES {
        if let Some(body) = rest.strip_prefix(prefix) {
            anchor = prefix_anchor;
            literal.push_str(literal_start);
            rest = body;
            break;
        }
    }
    if anchor == Anchor::Suffix {
        if let Some(body) = rest.strip_suffix(".*") {
            if !body.ends_with('\\') {
                anchor = Anchor::Contains;
                rest = body;
            }
        }
    }
    let mut chars = rest.chars();
    while let Some(c) = chars.next() {
        match c {
            'a'..='z' | '0'..='9' | '-' | '_' => literal.push(c),
            'A'..='Z' => literal.push(c.to_ascii_lowercase()),
            '\\' => match chars.next() {
                Some('.') => literal.push('.'),
                Some('-') => literal.push('-'),
                _ => return None,
            },
            _ => return None,
        }
    }
    Some((anchor, literal))
}

/// Splits a parsed regex into an anchor and a finite, exact set of literals,
/// or returns `None` when the regex is not of a literal shape.
fn hir_literals(hir: &Hir) -> Option<(Anchor, Vec<String>)> {
    let mut parts: Vec<&Hir> = match hir.kind() {
        HirKind::Concat(parts) => parts.iter().collect(),
        _ => vec![hir],
    };
    if parts.first().is_some_and(|h| is_look(h, Look::Start)) {
        parts.remove(0);
    }
    if parts.last().is_some_and(|h| is_look(h, Look::End)) {
        parts.pop();
    }
    let mut anchor = Anchor::Exact;
    if let Some(first) = parts.first() {
        if let Some(prefix_anchor) = prefix_anchor(first) {
            anchor = prefix_anchor;
            parts.remove(0);
        }
    }
    if anchor == Anchor::Suffix && parts.last().is_some_and(|h| dot_repeat(h) == Some(0)) {
        anchor = Anchor::Contains;
        parts.pop();
    }
    if parts.iter().any(|h| contains_look(h)) {
        return None;
    }
    let middle = Hir::concat(parts.into_iter().cloned().collect());
    let seq = Extractor::new().kind(ExtractKind::Prefix).extract(&middle);
    if !seq.is_exact() {
        return None;
    }
    let literals = seq.literals()?;
    let mut out = Vec::with_capacity(literals.len());
    for literal in literals {
        out.push(String::from_utf8(literal.as_bytes().to_vec()).ok()?);
    }
    Some((anchor, out))
}

/// Recognizes `.*`, `.+` and `(.*\.)?` at the start of a regex.
fn prefix_anchor(hir: &Hir) -> Option<Anchor> {
    match dot_repeat(hir) {
        Some(0) => return Some(Anchor::Suffix),
        Some(1) => return Some(Anchor::StrictSuffix),
        _ => {}
    }
    let HirKind::Repetition(rep) = hir.kind() else {
        return None;
    };
    if rep.min != 0 || rep.max != Some(1) {
        return None;
    }
    let mut inner = rep.sub.as_ref();
    if let HirKind::Capture(capture) = inner.kind() {
        inner = capture.sub.as_ref();
    }
    let HirKind::Concat(parts) = inner.kind() else {
        return None;
    };
    let [repeat, dot] = parts.as_slice() else {
        return None;
    };
    let is_dot = matches!(dot.kind(), HirKind::Literal(lit) if lit.0.as_ref() == b".");
    match (dot_repeat(repeat), is_dot) {
        (Some(0), true) => Some(Anchor::Domain),
        _ => None,
    }
}

/// Returns the minimum count when `hir` is `.*` or `.+` (greedy or lazy).
fn dot_repeat(hir: &Hir) -> Option<u32> {
    let HirKind::Repetition(rep) = hir.kind() else {
        return None;
    };
    if rep.max.is_some() || rep.min > 1 || !is_any_char(&rep.sub) {
        return None;
    }
    Some(rep.min)
}

/// Checks that `hir` matches any character except possibly `\n`, which
/// never occurs in a host.
fn is_any_char(hir: &Hir) -> bool {
    let HirKind::Class(class) = hir.kind() else {
        return false;
    };
    match class {
        Class::Unicode(class) => {
            let ranges = class.ranges();
            let all = [('\0', char::MAX)];
            let except_lf = [('\0', '\x09'), ('\x0B', char::MAX)];
            let pairs: Vec<(char, char)> = ranges.iter().map(|r| (r.start(), r.end())).collect();
            pairs == all || pairs == except_lf
        }
        Class::Bytes(_) => false,
    }
}

fn is_look(hir: &Hir, look: Look) -> bool {
    matches!(hir.kind(), HirKind::Look(found) if *found == look)
}

fn contains_look(hir: &Hir) -> bool {
    match hir.kind() {
        HirKind::Look(_) => true,
        HirKind::Repetition(rep) => contains_look(&rep.sub),
        HirKind::Capture(capture) => contains_look(&capture.sub),
        HirKind::Concat(parts) | HirKind::Alternation(parts) => parts.iter().any(contains_look),
        HirKind::Empty | HirKind::Literal(_) | HirKind::Class(_) => false,
    }
}

/// Converts a non-ASCII literal to punycode. Punycode cannot express part
/// of a label, so the first label of a suffix literal is converted as a
/// whole label: `.*bücher\.de` matches `xn--bcher-kva.de` and its
/// subdomains, as an admin expects, but not `xbücher.de`.
fn punycode_literal(literal: &str, anchor: Anchor) -> Result<String, PatternError> {
    let to_ascii =
        |name: &str| host::normalize_name(name).map_err(|_| PatternError::Idna(name.to_owned()));
    match anchor {
        Anchor::Exact | Anchor::Domain => to_ascii(literal),
        Anchor::Contains => Err(PatternError::PartialLabel),
        Anchor::Suffix | Anchor::StrictSuffix => match literal.strip_prefix('.') {
            Some(rest) => Ok(format!(".{}", to_ascii(rest)?)),
            None => to_ascii(literal),
        },
    }
}

fn check_compiles(regex: &str) -> Result<(), PatternError> {
    compile_rule_regex(regex)
        .map(|_| ())
        .map_err(|err| PatternError::TooBig(err.to_string()))
}

/// Bytes of compiled program one rule regex may use. Hosts are short ASCII
/// strings, so real rules need a small fraction of this.
pub(crate) const REGEX_SIZE_LIMIT: usize = 1 << 20;

/// Compiles one rule regex the way the matcher runs it: whole-host match,
/// case-insensitive, over ASCII bytes. Canonical hosts are ASCII, so Unicode
/// classes such as `\w` keep their matches while their automata stay small.
///
/// # Errors
///
/// Returns the regex crate's error for an invalid or too large regex.
pub fn compile_rule_regex(regex: &str) -> Result<regex::bytes::Regex, regex::Error> {
    regex::bytes::RegexBuilder::new(&full_match_regex(regex))
        .unicode(false)
        .size_limit(REGEX_SIZE_LIMIT)
        .build()
}

/// Wraps a rule regex so that it matches the whole host, case-insensitively.
pub fn full_match_regex(regex: &str) -> String {
    format!("(?i)^(?:{regex})$")
}

/// Formats a regex-syntax error as a one-line reason with the column.
fn syntax_reason(err: &regex_syntax::Error) -> String {
    match err {
        regex_syntax::Error::Parse(err) => {
            format!("{} at column {}", err.kind(), err.span().start.column)
        }
        regex_syntax::Error::Translate(err) => {
            format!("{} at column {}", err.kind(), err.span().start.column)
        }
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape(regex: &str) -> HostShape {
        classify(regex).unwrap().shape
    }

    fn literals(anchor: Anchor, items: &[&str]) -> HostShape {
        HostShape::Literals(anchor, items.iter().map(|s| s.to_string()).collect())
    }

    #[test]
    fn literal_shapes_are_recognized() {
        let cases = [
            (r".*4399\.com", literals(Anchor::Suffix, &["4399.com"])),
            (
                r".*\.example\.com",
                literals(Anchor::Suffix, &[".example.com"]),
            ),
            (
                r"^.*Example\.COM$",
                literals(Anchor::Suffix, &["example.com"]),
            ),
            (r"example\.com", literals(Anchor::Exact, &["example.com"])),
            (r"^example\.com$", literals(Anchor::Exact, &["example.com"])),
            (
                r"(.*\.)?example\.com",
                literals(Anchor::Domain, &["example.com"]),
            ),
            (
                r"(?:.*\.)?example\.com",
                literals(Anchor::Domain, &["example.com"]),
            ),
            (
                r".+\.example\.com",
                literals(Anchor::StrictSuffix, &[".example.com"]),
            ),
            (r".*casino.*", literals(Anchor::Contains, &["casino"])),
            (r".*", literals(Anchor::Suffix, &[""])),
        ];
        for (regex, expected) in cases {
            assert_eq!(shape(regex), expected, "{regex}");
        }
    }

    #[test]
    fn finite_alternations_become_literals() {
        assert_eq!(
            shape(r"(www\.)?example\.(com|net)"),
            literals(
                Anchor::Exact,
                &[
                    "www.example.com",
                    "www.example.net",
                    "example.com",
                    "example.net"
                ]
            )
        );
        assert_eq!(
            shape(r".*[.]bet\.com"),
            literals(Anchor::Suffix, &[".bet.com"])
        );
    }

    #[test]
    fn true_regexes_stay_regexes() {
        for regex in [
            r"4399.com",
            r".*\.bet[0-9]+\.com",
            r"ad[s]?\d+\.example\.com",
            r"example\.com.*",
            r"a^b\.com",
            r"(?-i)Example\.com",
            r"(?i)example\.com",
        ] {
            assert_eq!(shape(regex), HostShape::Regex, "{regex}");
        }
    }

    #[test]
    fn idn_literals_become_punycode() {
        let pattern = classify(r".*\.bücher\.de").unwrap();
        assert_eq!(
            pattern.shape,
            literals(Anchor::Suffix, &[".xn--bcher-kva.de"])
        );
        assert_eq!(
            shape(r"(.*\.)?Bücher\.de"),
            literals(Anchor::Domain, &["xn--bcher-kva.de"])
        );
        assert_eq!(
            shape(r".*shop\.bücher\.de"),
            literals(Anchor::Suffix, &["shop.xn--bcher-kva.de"])
        );
        assert_eq!(
            shape(r".*bücher\.de"),
            literals(Anchor::Suffix, &["xn--bcher-kva.de"])
        );
    }

    #[test]
    fn unusable_regexes_are_errors() {
        let cases = [
            (r"(unclosed", "unclosed group at column 1"),
            (r".*bü[a-z]+\.de", "non-ASCII"),
            (r".*bücher.*", "inside a label"),
            (r".*b\x{FC}[a-z]+\.de", "non-ASCII"),
            (r"\x{212A}[a-z]+\.com", "non-ASCII"),
            (r"https?://example\.com/.*", "looks like a URL"),
            (r"example\.com:443", "can never match"),
            (r".*\x01bank\.com", "can never match"),
        ];
        for (regex, expected) in cases {
            let err = classify(regex).unwrap_err().to_string();
            assert!(err.contains(expected), "{regex} gave {err}");
        }
    }
}
