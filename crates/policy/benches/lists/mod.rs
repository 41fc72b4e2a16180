//! Blacklists for the benchmarks: CSV lists built from a domain file or from
//! synthetic domains, in the row shapes admins write.
//!
//! Each domain becomes one row, cycling through `(.*\.)?domain\.tld`,
//! `.*domain\.tld` and `domain\.tld`. Every list with extra rows also contains
//! [`REGEX_ROWS`] true regexes and [`IP_ROWS`] IP rows, spread evenly through
//! the list, so that the regex sets and the IP table are exercised too.

use std::fmt::Write as _;
use std::fs;

/// Environment variable with the path of a one-domain-per-line file. The
/// first [`MEDIUM_LIST_DOMAINS`] domains of it make the 110,000-row list.
pub const HOSTS_ENV: &str = "WEBWARDEN_BENCH_HOSTS";

/// Domain rows in the medium list, which is read from [`HOSTS_ENV`].
pub const MEDIUM_LIST_DOMAINS: usize = 110_000;

/// Domain rows in the large list, which is always synthetic.
pub const LARGE_LIST_DOMAINS: usize = 1_000_000;

/// Domain rows in the medium list when the benchmarks run as a smoke test.
pub const TEST_MEDIUM_LIST_DOMAINS: usize = 3_000;

/// Domain rows in the large list when the benchmarks run as a smoke test.
pub const TEST_LARGE_LIST_DOMAINS: usize = 10_000;

/// True regex rows in a list with extra rows.
pub const REGEX_ROWS: usize = 50;

/// IP rows in a list with extra rows.
pub const IP_ROWS: usize = 20;

/// Seed of the synthetic domains in the lists.
pub const LIST_SEED: u64 = 0x5EED_0001;

const CATEGORIES: [&str; 5] = [
    "Advertising",
    "Tracking",
    "Malicious Host",
    "Gambling",
    "Adult",
];

/// Returns whether this run measures, as under `cargo bench`, which passes
/// `--bench`. Without `--bench` (`cargo test --benches`), or with `--test`,
/// the benchmarks run once on small lists as a smoke test, as criterion does.
pub fn is_benchmark_run() -> bool {
    let mut bench = false;
    let mut test = false;
    for arg in std::env::args().skip(1) {
        bench |= arg == "--bench";
        test |= arg == "--test";
    }
    bench && !test
}

/// Returns the domain counts of the medium and large lists for this run.
pub fn list_sizes() -> (usize, usize) {
    if is_benchmark_run() {
        (MEDIUM_LIST_DOMAINS, LARGE_LIST_DOMAINS)
    } else {
        (TEST_MEDIUM_LIST_DOMAINS, TEST_LARGE_LIST_DOMAINS)
    }
}

/// Regex shape of a domain row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// `(.*\.)?domain\.tld`: the domain and its subdomains.
    Domain,
    /// `.*domain\.tld`: any host that ends with the text, so it also matches
    /// `notdomain.tld`.
    Suffix,
    /// `domain\.tld`: the host itself only.
    Exact,
}

/// Returns the shape of the row written for the domain at `index`.
pub fn shape_of(index: usize) -> Shape {
    match index % 3 {
        0 => Shape::Domain,
        1 => Shape::Suffix,
        _ => Shape::Exact,
    }
}

/// Domains for a list, with a description of where they came from.
pub struct Domains {
    /// The domains, lower case, in list order.
    pub domains: Vec<String>,
    /// Description of the domains' source, for the benchmark output.
    pub origin: String,
}

/// Reads the first `count` domains from the file named by [`HOSTS_ENV`], or
/// generates `count` synthetic domains when the variable is unset. A file
/// with fewer usable domains is topped up with synthetic ones.
///
/// # Panics
///
/// Panics when the variable is set but the file cannot be read.
pub fn medium_domains(count: usize) -> Domains {
    let Some(path) = std::env::var_os(HOSTS_ENV) else {
        return Domains {
            domains: synthetic_domains(count, LIST_SEED),
            origin: format!("{count} synthetic domains ({HOSTS_ENV} is not set)"),
        };
    };
    let text = fs::read_to_string(&path).unwrap_or_else(|err| {
        panic!(
            "failed to read the domain file {} named by {HOSTS_ENV}: {err}",
            path.to_string_lossy()
        )
    });
    let mut domains = Vec::with_capacity(count);
    let mut skipped = 0;
    for line in text.lines() {
        if domains.len() == count {
            break;
        }
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if is_plain_domain(line) {
            domains.push(line.to_ascii_lowercase());
        } else {
            skipped += 1;
        }
    }
    let mut origin = format!(
        "first {} domains of {}",
        domains.len(),
        path.to_string_lossy()
    );
    if skipped > 0 {
        write!(
            origin,
            ", skipping {skipped} lines that are not plain domains"
        )
        .expect("writing to a String cannot fail");
    }
    if domains.len() < count {
        let missing = count - domains.len();
        write!(
            origin,
            ", plus {missing} synthetic domains to reach {count}"
        )
        .expect("writing to a String cannot fail");
        domains.extend(synthetic_domains(missing, LIST_SEED));
    }
    Domains { domains, origin }
}

/// Generates the large list's domains.
pub fn large_domains(count: usize) -> Domains {
    Domains {
        domains: synthetic_domains(count, LIST_SEED),
        origin: format!("{count} synthetic domains"),
    }
}

/// Returns whether `line` has a dot and contains only characters that need
/// no regex escaping beyond the dots.
fn is_plain_domain(line: &str) -> bool {
    line.contains('.')
        && line
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

/// A CSV list and its row count.
pub struct CsvList {
    /// The list text, `regex,category` per line.
    pub text: Vec<u8>,
    /// Rows in the list.
    pub rows: usize,
}

/// Writes one CSV row per domain, in the shape given by [`shape_of`]. With
/// `extra_rows`, [`REGEX_ROWS`] regex rows and [`IP_ROWS`] IP rows are spread
/// through the list.
pub fn csv_list(domains: &[String], extra_rows: bool) -> CsvList {
    let mut text = String::with_capacity(domains.len() * 40);
    let mut rows = 0;
    let regex_every = (domains.len() / REGEX_ROWS).max(1);
    let ip_every = (domains.len() / IP_ROWS).max(1);
    let mut regex_rows = 0;
    let mut ip_rows = 0;
    for (index, domain) in domains.iter().enumerate() {
        if extra_rows && index % regex_every == regex_every / 2 && regex_rows < REGEX_ROWS {
            text.push_str(&regex_row(regex_rows));
            regex_rows += 1;
            rows += 1;
        }
        if extra_rows && index % ip_every == ip_every / 3 && ip_rows < IP_ROWS {
            text.push_str(&ip_row(ip_rows));
            ip_rows += 1;
            rows += 1;
        }
        let escaped = domain.replace('.', "\\.");
        let category = CATEGORIES[index % CATEGORIES.len()];
        let pattern = match shape_of(index) {
            Shape::Domain => format!("(.*\\.)?{escaped}"),
            Shape::Suffix => format!(".*{escaped}"),
            Shape::Exact => escaped,
        };
        writeln!(text, "{pattern},{category}").expect("writing to a String cannot fail");
        rows += 1;
    }
    CsvList {
        text: text.into_bytes(),
        rows,
    }
}

/// Returns the regex row number `index`. Each one matches the host that
/// [`regex_hit_host`] builds for the same index.
fn regex_row(index: usize) -> String {
    match index % 3 {
        0 => format!(".*\\.bet[0-9]+\\.casino{index}\\.example,Gambling\n"),
        1 => format!("(www|m)[0-9]*\\.promo{index}\\.example,Advertising\n"),
        _ => format!("ad[0-9]+-[a-z]+\\.track{index}\\.example,Tracking\n"),
    }
}

/// Returns a host that the regex row number `index` matches.
#[allow(dead_code, reason = "only the matcher benchmark builds hosts")]
pub fn regex_hit_host(index: usize) -> String {
    match index % 3 {
        0 => format!("www.bet42.casino{index}.example"),
        1 => format!("m7.promo{index}.example"),
        _ => format!("ad12-banner.track{index}.example"),
    }
}

/// Returns the IP row number `index`: a single IPv4 address, an IPv4 /24
/// range or an IPv6 /48 range, all in documentation ranges.
fn ip_row(index: usize) -> String {
    match index % 3 {
        0 => format!("203\\.0\\.113\\.{index},Malicious Host\n"),
        1 => format!("198.51.{index}.0/24,Malicious Host\n"),
        _ => format!("2001:db8:{index:x}::/48,Malicious Host\n"),
    }
}

/// Returns an address inside the range of IP row number `index`.
#[allow(dead_code, reason = "only the matcher benchmark builds hosts")]
pub fn ip_hit_address(index: usize) -> String {
    match index % 3 {
        0 => format!("203.0.113.{index}"),
        1 => format!("198.51.{index}.77"),
        _ => format!("2001:db8:{index:x}::1"),
    }
}

/// SplitMix64, a small deterministic PRNG, so every run generates the same
/// domains.
pub struct SplitMix64(u64);

impl SplitMix64 {
    /// Starts the generator at `seed`.
    pub fn new(seed: u64) -> SplitMix64 {
        SplitMix64(seed)
    }

    /// Returns the next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Returns a number in `0..bound`.
    pub fn below(&mut self, bound: usize) -> usize {
        // The modulo bias is below 2^-40 for the small bounds used here.
        (self.next_u64() % bound as u64) as usize
    }

    /// Returns a number in `low..=high`.
    pub fn between(&mut self, low: usize, high: usize) -> usize {
        low + self.below(high - low + 1)
    }
}

/// Top-level domains with weights, roughly following the StevenBlack unified
/// hosts list of 2024-11-09, where about half the domains are `.com`.
const TLDS: [(&str, usize); 20] = [
    ("com", 50),
    ("net", 6),
    ("top", 6),
    ("xyz", 5),
    ("pl", 3),
    ("shop", 3),
    ("org", 2),
    ("info", 2),
    ("site", 2),
    ("online", 2),
    ("ru", 3),
    ("de", 2),
    ("fr", 1),
    ("co.uk", 2),
    ("io", 2),
    ("cn", 2),
    ("com.br", 1),
    ("biz", 1),
    ("club", 1),
    ("pro", 1),
];

/// Common first labels of listed subdomains.
const SUBDOMAIN_LABELS: [&str; 10] = [
    "www", "ads", "cdn", "track", "api", "static", "img", "m", "mail", "stats",
];

/// Generates `count` domains: a registrable label of 4 to 16 characters, a
/// weighted top-level domain, and none to three subdomain labels (about 40%
/// have none and 45% have one).
pub fn synthetic_domains(count: usize, seed: u64) -> Vec<String> {
    let mut rng = SplitMix64::new(seed);
    let tld_weight_total: usize = TLDS.iter().map(|(_, weight)| weight).sum();
    let mut domains = Vec::with_capacity(count);
    for _ in 0..count {
        let mut domain = String::with_capacity(32);
        let subdomains = match rng.below(100) {
            0..=39 => 0,
            40..=84 => 1,
            85..=96 => 2,
            _ => 3,
        };
        for _ in 0..subdomains {
            if rng.below(2) == 0 {
                domain.push_str(SUBDOMAIN_LABELS[rng.below(SUBDOMAIN_LABELS.len())]);
            } else {
                let length = rng.between(2, 10);
                push_label(&mut rng, &mut domain, length);
            }
            domain.push('.');
        }
        let length = rng.between(4, 16);
        push_label(&mut rng, &mut domain, length);
        domain.push('.');
        let mut pick = rng.below(tld_weight_total);
        for (tld, weight) in TLDS {
            if pick < weight {
                domain.push_str(tld);
                break;
            }
            pick -= weight;
        }
        domains.push(domain);
    }
    domains
}

/// Appends a label of `length` characters: mostly letters, about 10%
/// digits, and sometimes a single hyphen that is neither first nor last.
pub fn push_label(rng: &mut SplitMix64, out: &mut String, length: usize) {
    const LETTERS: &[u8] = b"abcdefghijklmnopqrstuvwxyz";
    let mut previous = b'.';
    for position in 0..length {
        let roll = rng.below(100);
        let hyphen_allowed = position > 0 && position + 1 < length && previous != b'-';
        let byte = if roll < 10 {
            b'0' + rng.below(10) as u8
        } else if roll < 12 && hyphen_allowed {
            b'-'
        } else {
            LETTERS[rng.below(LETTERS.len())]
        };
        out.push(char::from(byte));
        previous = byte;
    }
}
