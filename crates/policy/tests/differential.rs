//! Differential tests: the compiled matcher must give the same verdict as a
//! plain first-match scan that runs every rule as a full-match regex.

use std::collections::BTreeSet;
use std::net::IpAddr;

use proptest::prelude::*;
use webwarden_policy::{Action, NaiveMatcher, Policy, PolicyBuilder, SourceOptions, Target};

const URLHAUS_CSV: &[u8] = include_bytes!("fixtures/urlhaus.csv");
const DEFAULT_LIST: &[u8] = include_bytes!("../../../blacklist.csv");

/// Rows whose meaning is easy to get wrong: unescaped dots, anchors, IDN,
/// alternations, classes, IP rows, allow rows and duplicates.
const TRICKY_CSV: &str = r#"regex,category,action
.*twitter\.com,Social Media
(.*\.)?facebook\.com,Social Media
4399.com,Entertainment
^Example\.COM$,Exact
.+\.strict\.example,Strict
.*bücher\.de,IDN
(.*\.)?xn--mnchen-3ya\.de,IDN
.*\.münchen\.de,IDN
"(www\.)?bet[0-9]{1,2}\.(com|net)",Gambling
.*casino.*,Gambling
.*[.]bet\.com,Gambling
ad[s]?[0-9]+\.tracker\.example,Ads
203\.0\.113\.7,Malicious Host
198.51.100.0/24,Malicious Host
2001:db8::/32,Malicious Host
192\.0\.2\..*,Documentation
.*\.corp\.example,Corp,allow
files\.dropbox\.com,Storage,allow
(.*\.)?dropbox\.com,Storage
.*twitter\.com,Duplicate
.*,Everything Else
"#;

fn load_both(name: &str, text: &[u8]) -> (Policy, NaiveMatcher) {
    let options = SourceOptions::default();
    let mut builder = PolicyBuilder::new().strict(true);
    builder.add_text(name, text, &options);
    let policy = builder.build().expect("list loads in strict mode");
    let mut naive = NaiveMatcher::new();
    naive.add_text(name, text, &options);
    (policy, naive)
}

/// Compares both matchers on every target and fails with the first few
/// disagreements.
fn assert_agree(policy: &Policy, naive: &NaiveMatcher, targets: &[Target]) {
    let mut mismatches = Vec::new();
    for target in targets {
        let verdict = policy.evaluate(target);
        let compiled = verdict.rule.map(|rule| (verdict.action, rule.index));
        let expected = naive.evaluate(target);
        if compiled != expected {
            mismatches.push(format!(
                "{} (ip {:?}): compiled {compiled:?}, naive {expected:?}",
                target.host(),
                target.ip()
            ));
        }
    }
    assert!(
        mismatches.is_empty(),
        "{} of {} targets disagree, first: {:#?}",
        mismatches.len(),
        targets.len(),
        &mismatches[..mismatches.len().min(10)]
    );
}

/// Spellings of a host that must all normalize, plus near misses that a
/// careless matcher would confuse with it.
fn variants(host: &str) -> Vec<String> {
    let first_label_cut = host.split_once('.').map(|(_, rest)| rest.to_owned());
    let mut out = vec![
        host.to_owned(),
        host.to_uppercase(),
        format!("{host}."),
        format!("{host}:8443"),
        format!("https://{host}/path?q=1"),
        format!("www.{host}"),
        format!("a.b.{host}"),
        format!("not{host}"),
        format!("{host}.evil.example"),
        format!("x{}", &host[1..]),
        host[..host.len() - 1].to_owned(),
    ];
    out.extend(first_label_cut);
    out
}

fn targets_from(hosts: impl IntoIterator<Item = String>) -> Vec<Target> {
    let unique: BTreeSet<String> = hosts.into_iter().collect();
    unique
        .iter()
        .filter_map(|h| Target::parse(h).ok())
        .collect()
}

/// Fixed and adversarial targets: IPv4, IPv6, mapped, IDN, and host names
/// with a destination address as the proxy would resolve them.
fn adversarial_targets() -> Vec<Target> {
    let inputs = [
        "nottwitter.com",
        "twitter.com",
        "TWITTER.COM.",
        "api.twitter.com:443",
        "twitter.com.evil.example",
        "facebook.com",
        "notfacebook.com",
        "m.facebook.com",
        "4399.com",
        "4399xcom",
        "www.4399-com",
        "example.com",
        "www.example.com",
        "strict.example",
        "a.strict.example",
        "bücher.de",
        "shop.xn--bcher-kva.de",
        "münchen.de",
        "www.xn--mnchen-3ya.de",
        "bet7.com",
        "www.bet42.net",
        "bet123.com",
        "mycasino.example",
        "x.bet.com",
        "ads12.tracker.example",
        "ad1.tracker.example",
        "203.0.113.7",
        "[::ffff:203.0.113.7]:443",
        "203.0.113.8",
        "198.51.100.250",
        "192.0.2.55",
        "[2001:db8::1]",
        "2001:db9::1",
        "files.dropbox.com",
        "www.dropbox.com",
        "host.corp.example",
        "0022a601.pphost.net",
        "x0022a601.pphost.net",
        "1182.jp",
        "www.1182.jp",
    ];
    let mut targets: Vec<Target> = inputs.iter().map(|i| Target::parse(i).unwrap()).collect();
    let resolved: [(&str, &str); 4] = [
        ("innocent.example", "203.0.113.7"),
        ("innocent.example", "198.51.100.9"),
        ("twitter.com", "192.0.2.1"),
        ("files.dropbox.com", "2001:db8::5"),
    ];
    for (host, ip) in resolved {
        let ip: IpAddr = ip.parse().unwrap();
        targets.push(Target::parse(host).unwrap().with_ip(ip));
    }
    targets
}

fn list_hosts(text: &[u8]) -> Vec<String> {
    let text = String::from_utf8_lossy(text);
    let mut hosts = Vec::new();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let regex = line.split(',').next().unwrap_or_default();
        let host: String = regex
            .replace("\\.", ".")
            .trim_start_matches(['^', '(', '.', '*', '+', ')', '?'])
            .trim_start_matches(['\\', '.'])
            .trim_end_matches('$')
            .to_owned();
        if !host.is_empty()
            && host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-._".contains(c))
        {
            hosts.extend(
                variants(&host.to_lowercase())
                    .into_iter()
                    .filter(|h| !h.is_empty()),
            );
        }
    }
    hosts
}

#[test]
fn urlhaus_list_agrees_with_naive_scan() {
    let (policy, naive) = load_both("urlhaus.csv", URLHAUS_CSV);
    assert_eq!(policy.rule_counts().total(), naive.len());
    let mut targets = targets_from(list_hosts(URLHAUS_CSV));
    targets.extend(adversarial_targets());
    assert!(targets.len() > 20_000, "only {} targets", targets.len());
    assert_agree(&policy, &naive, &targets);
}

#[test]
fn default_list_agrees_with_naive_scan() {
    let (policy, naive) = load_both("blacklist.csv", DEFAULT_LIST);
    let mut targets = targets_from(list_hosts(DEFAULT_LIST));
    targets.extend(adversarial_targets());
    assert_agree(&policy, &naive, &targets);
}

#[test]
fn tricky_rows_agree_with_naive_scan() {
    let (policy, naive) = load_both("tricky.csv", TRICKY_CSV.as_bytes());
    let mut targets = adversarial_targets();
    targets.extend(targets_from(list_hosts(URLHAUS_CSV).into_iter().take(2000)));
    assert_agree(&policy, &naive, &targets);
}

#[test]
fn tricky_rows_give_expected_verdicts() {
    let (policy, _) = load_both("tricky.csv", TRICKY_CSV.as_bytes());
    let cases = [
        ("nottwitter.com", Action::Block, "Social Media", 2),
        ("notfacebook.com", Action::Block, "Everything Else", 22),
        ("m.facebook.com", Action::Block, "Social Media", 3),
        ("4399xcom", Action::Block, "Entertainment", 4),
        ("bücher.de", Action::Block, "IDN", 7),
        ("www.xn--bcher-kva.de", Action::Block, "IDN", 7),
        ("münchen.de", Action::Block, "IDN", 8),
        ("www.bet42.net", Action::Block, "Gambling", 10),
        (
            "[::ffff:203.0.113.7]:443",
            Action::Block,
            "Malicious Host",
            14,
        ),
        ("192.0.2.55", Action::Block, "Documentation", 17),
        ("files.dropbox.com", Action::Allow, "Storage", 19),
        ("www.dropbox.com", Action::Block, "Storage", 20),
    ];
    for (input, action, category, line) in cases {
        let verdict = policy.evaluate(&Target::parse(input).unwrap());
        let rule = verdict
            .rule
            .unwrap_or_else(|| panic!("{input} matched nothing"));
        assert_eq!(verdict.action, action, "{input}");
        assert_eq!(rule.category, category, "{input}");
        assert_eq!(rule.line, line, "{input}");
    }
    let resolved = Target::parse("innocent.example")
        .unwrap()
        .with_ip("198.51.100.9".parse().unwrap());
    let verdict = policy.evaluate(&resolved);
    assert_eq!(verdict.rule.unwrap().category, "Malicious Host");
}

/// Row pieces for generated lists: anchors and literal bodies that overlap
/// on purpose, so rule order decides many verdicts.
const PREFIXES: [&str; 8] = ["", ".*", ".+", "(.*\\.)?", ".*\\.", "^", "(www\\.)?", ".*?"];
const BODIES: [&str; 8] = [
    "a\\.example",
    "b\\.a\\.example",
    "example",
    "a.example",
    "ex[a-c]mple",
    "[0-9]+\\.example",
    "xn--bcher-kva\\.de",
    "b\\.example",
];
const SUFFIXES: [&str; 3] = ["", "$", ".*"];
const HOSTS: [&str; 14] = [
    "a.example",
    "b.a.example",
    "xa.example",
    "www.a.example",
    "example",
    "b.example",
    "bxexample",
    "exbmple",
    "42.example",
    "a.example.net",
    "bücher.de",
    "www.xn--bcher-kva.de",
    "b-a.example",
    "aaexample",
];

proptest! {
    #[test]
    fn generated_lists_agree_with_naive_scan(
        rows in prop::collection::vec((0..8usize, 0..8usize, 0..3usize, any::<bool>()), 1..12)
    ) {
        let mut text = String::new();
        for (prefix, body, suffix, allow) in &rows {
            let action = if *allow { "allow" } else { "block" };
            let regex = format!("{}{}{}", PREFIXES[*prefix], BODIES[*body], SUFFIXES[*suffix]);
            text.push_str(&format!("\"{regex}\",Generated,{action}\n"));
        }
        let (policy, naive) = load_both("generated.csv", text.as_bytes());
        let targets = targets_from(HOSTS.iter().map(|h| h.to_string()));
        assert_agree(&policy, &naive, &targets);
    }
}
