//! Load and lookup times of the compiled [`Policy`], and lookup times of the
//! [`NaiveMatcher`] scan on the same 110,000-row list in the same run.
//!
//! Run with `cargo bench -p webwarden-policy --bench matcher`. The medium
//! list comes from the domain file named by `WEBWARDEN_BENCH_HOSTS` (see
//! `lists/mod.rs`), or is synthetic when that variable is unset. The
//! 1,000,000-row list is always synthetic.
//!
//! Lookup figures are the mean time of one `evaluate` call over a fixed mix of
//! hits and misses: each measurement runs whole passes over the mix, so every
//! host in it weighs the same.

mod lists;

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, Criterion, SamplingMode};
use webwarden_policy::host::{MAX_HOST_LEN, MAX_LABEL_LEN};
use webwarden_policy::{NaiveMatcher, Policy, PolicyBuilder, SourceOptions, Target};

use lists::{CsvList, Shape, SplitMix64};

/// Source name of the benchmark lists; the `.csv` ending selects the CSV format.
const LIST_NAME: &str = "bench.csv";

/// Seed of the synthetic hosts that miss, distinct from the lists' seed.
const MISS_SEED: u64 = 0x5EED_0002;

/// Positions in the list, as fractions of its length, where hit hosts are
/// taken from. Spreading them matters for the naive scan, which stops at the
/// first matching row.
const HIT_POSITIONS: [f64; 4] = [0.05, 0.35, 0.65, 0.95];

/// Hosts that no benchmark list is meant to contain.
const POPULAR_HOSTS: [&str; 6] = [
    "www.google.com",
    "en.wikipedia.org",
    "github.com",
    "docs.rs",
    "www.bbc.co.uk",
    "login.microsoftonline.com",
];

/// Construction of a host in the lookup mix, which sets its expected outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum HostKind {
    /// A domain of an exact row.
    ExactHit,
    /// `www.` or `a.b.` before a domain of a `(.*\.)?` row.
    SubdomainHit,
    /// `not` before a domain of a `.*` row, which matches it without a dot.
    SuffixOnlyHit,
    /// A host that one of the true regex rows matches.
    RegexHit,
    /// An address inside an IP row's range.
    IpHit,
    /// Labels of 50 to 63 characters before a domain of a `(.*\.)?` row.
    LongHit,
    /// A popular site, a random synthetic domain, `www.` before a domain of
    /// an exact row, or `x` before a domain of a `(.*\.)?` row.
    Miss,
    /// Labels of 50 to 63 characters before a random synthetic domain.
    LongMiss,
    /// An address outside every IP row's range.
    IpMiss,
}

impl HostKind {
    const ALL: [HostKind; 9] = [
        HostKind::ExactHit,
        HostKind::SubdomainHit,
        HostKind::SuffixOnlyHit,
        HostKind::RegexHit,
        HostKind::IpHit,
        HostKind::LongHit,
        HostKind::Miss,
        HostKind::LongMiss,
        HostKind::IpMiss,
    ];

    fn name(self) -> &'static str {
        match self {
            HostKind::ExactHit => "exact_hit",
            HostKind::SubdomainHit => "subdomain_hit",
            HostKind::SuffixOnlyHit => "suffix_only_hit",
            HostKind::RegexHit => "regex_hit",
            HostKind::IpHit => "ip_hit",
            HostKind::LongHit => "long_hit",
            HostKind::Miss => "miss",
            HostKind::LongMiss => "long_miss",
            HostKind::IpMiss => "ip_miss",
        }
    }

    fn expects_hit(self) -> bool {
        matches!(
            self,
            HostKind::ExactHit
                | HostKind::SubdomainHit
                | HostKind::SuffixOnlyHit
                | HostKind::RegexHit
                | HostKind::IpHit
                | HostKind::LongHit
        )
    }
}

/// One host of the lookup mix, parsed before any timing.
struct MixHost {
    host: String,
    kind: HostKind,
    target: Target,
}

/// Builds the lookup mix for a list of `domains` loaded into `policy`.
///
/// Hosts derived from list domains are checked against `policy`. A
/// candidate whose outcome differs from its kind is replaced by the same
/// construction on the next domain of the same shape. For example, another
/// row of a real list may happen to match a `www.` host meant to miss.
fn lookup_mix(domains: &[String], policy: &Policy) -> Vec<MixHost> {
    let mut mix = Vec::new();
    let mut add = |host: String, kind: HostKind| {
        let target = Target::parse(&host)
            .unwrap_or_else(|err| panic!("benchmark host {host:?} does not parse: {err}"));
        mix.push(MixHost { host, kind, target });
    };
    let mut rng = SplitMix64::new(MISS_SEED);
    let long_labels = long_labels(&mut rng);

    for (slot, position) in HIT_POSITIONS.iter().enumerate() {
        let start = (*position * domains.len() as f64) as usize;
        let pick = |shape: Shape, kind: HostKind, build: &dyn Fn(&str) -> String| {
            derived_host(domains, policy, start, shape, kind, build)
        };
        add(
            pick(Shape::Exact, HostKind::ExactHit, &|d| d.to_owned()),
            HostKind::ExactHit,
        );
        let subdomain = if slot == 0 { "a.b." } else { "www." };
        add(
            pick(Shape::Domain, HostKind::SubdomainHit, &|d| {
                format!("{subdomain}{d}")
            }),
            HostKind::SubdomainHit,
        );
        add(
            pick(Shape::Suffix, HostKind::SuffixOnlyHit, &|d| {
                format!("not{d}")
            }),
            HostKind::SuffixOnlyHit,
        );
        if slot < 2 {
            add(
                pick(Shape::Exact, HostKind::Miss, &|d| format!("www.{d}")),
                HostKind::Miss,
            );
        } else {
            add(
                pick(Shape::Domain, HostKind::Miss, &|d| format!("x{d}")),
                HostKind::Miss,
            );
        }
    }
    for position in [0.2, 0.8] {
        let start = (position * domains.len() as f64) as usize;
        let host = derived_host(
            domains,
            policy,
            start,
            Shape::Domain,
            HostKind::LongHit,
            &|d| long_host(&long_labels, d),
        );
        add(host, HostKind::LongHit);
    }
    for index in [3, 25, 47] {
        add(lists::regex_hit_host(index), HostKind::RegexHit);
    }
    for index in [0, 10, 14] {
        add(lists::ip_hit_address(index), HostKind::IpHit);
    }
    add("192.0.2.77".to_owned(), HostKind::IpMiss);
    add("2001:db8:ffff::1".to_owned(), HostKind::IpMiss);
    for host in POPULAR_HOSTS {
        add(host.to_owned(), HostKind::Miss);
    }
    for domain in lists::synthetic_domains(4, MISS_SEED) {
        add(domain, HostKind::Miss);
    }
    for domain in lists::synthetic_domains(2, MISS_SEED + 1) {
        add(long_host(&long_labels, &domain), HostKind::LongMiss);
    }
    mix
}

/// Generates four labels of 50 to 63 characters, the maximum label length.
fn long_labels(rng: &mut SplitMix64) -> Vec<String> {
    (0..4)
        .map(|_| {
            let mut label = String::new();
            let length = rng.between(50, MAX_LABEL_LEN);
            lists::push_label(rng, &mut label, length);
            label
        })
        .collect()
}

/// Prepends as many of `labels` to `domain` as fit in a host name of at most
/// [`MAX_HOST_LEN`] bytes.
fn long_host(labels: &[String], domain: &str) -> String {
    let mut host = domain.to_owned();
    for label in labels {
        if label.len() + 1 + host.len() > MAX_HOST_LEN {
            break;
        }
        host = format!("{label}.{host}");
    }
    host
}

/// Applies `build` to the first domain at or after `start` that has `shape`
/// and whose host gives the outcome `kind` expects under `policy`.
fn derived_host(
    domains: &[String],
    policy: &Policy,
    start: usize,
    shape: Shape,
    kind: HostKind,
    build: &dyn Fn(&str) -> String,
) -> String {
    let candidates = (start..domains.len()).chain(0..start);
    for index in candidates.filter(|&i| lists::shape_of(i) == shape) {
        let host = build(&domains[index]);
        let Ok(target) = Target::parse(&host) else {
            continue;
        };
        if policy.evaluate(&target).rule.is_some() == kind.expects_hit() {
            return host;
        }
    }
    panic!("no domain in the list gives a {} host", kind.name());
}

/// Prints the mix by kind, with how many hosts of each kind hit a rule.
fn print_mix(label: &str, mix: &[MixHost], policy: &Policy) {
    println!("lookup mix for {label}: {} hosts", mix.len());
    for kind in HostKind::ALL {
        let hosts: Vec<&MixHost> = mix.iter().filter(|h| h.kind == kind).collect();
        let hits = hosts
            .iter()
            .filter(|h| policy.evaluate(&h.target).rule.is_some())
            .count();
        let longest = hosts.iter().map(|h| h.host.len()).max().unwrap_or(0);
        println!(
            "  {:<16} {} hosts, {} hit a rule, longest {} bytes",
            kind.name(),
            hosts.len(),
            hits,
            longest
        );
    }
}

/// Loads a CSV list into a policy.
fn load_policy(list: &CsvList) -> Policy {
    let mut builder = PolicyBuilder::new();
    builder.add_text(LIST_NAME, &list.text, &SourceOptions::default());
    builder
        .build()
        .expect("the benchmark list compiles into a policy")
}

/// Prints the rule counts of a loaded policy, so a list that did not load
/// as intended is visible in the output.
fn print_policy(label: &str, list: &CsvList, policy: &Policy) {
    let counts = policy.rule_counts();
    println!(
        "{label}: {} rows, {} rules: {} exact, {} suffix, {} domain, {} contains, \
         {} regex, {} IP; {} bad rows, {} duplicate keys",
        list.rows,
        counts.total(),
        counts.exact,
        counts.suffix,
        counts.domain,
        counts.contains,
        counts.regex,
        counts.ip,
        policy.bad_row_count(),
        policy.duplicate_count()
    );
}

/// Times `iters` lookups as whole passes over the mix and scales the time
/// back to `iters` lookups, so that each host in the mix weighs the same.
fn time_lookups(mix: &[MixHost], iters: u64, lookup: impl Fn(&Target)) -> Duration {
    let hosts = mix.len() as u64;
    let passes = iters.div_ceil(hosts);
    let start = Instant::now();
    for _ in 0..passes {
        for host in mix {
            lookup(black_box(&host.target));
        }
    }
    let elapsed = start.elapsed();
    elapsed.mul_f64(iters as f64 / (passes * hosts) as f64)
}

/// Benchmarks loading (parse and compile) a list, excluding the drop of the
/// built policy. Prints how the time splits between `add_text` (parsing
/// rows, classifying them and collecting keys) and `build` (building the
/// literal table, regex sets and IP table). The split covers
/// every timed load, warm-up included.
fn bench_load(group: &mut BenchmarkGroup<'_, WallTime>, id: &str, list: &CsvList) {
    let mut add_text_time = Duration::ZERO;
    let mut build_time = Duration::ZERO;
    let mut loads = 0u32;
    group.bench_function(id, |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let start = Instant::now();
                let mut builder = PolicyBuilder::new();
                builder.add_text(LIST_NAME, black_box(&list.text), &SourceOptions::default());
                let parsed = Instant::now();
                let policy = builder
                    .build()
                    .expect("the benchmark list compiles into a policy");
                let built = Instant::now();
                add_text_time += parsed - start;
                build_time += built - parsed;
                total += built - start;
                loads += 1;
                drop(policy);
            }
            total
        })
    });
    if loads > 0 {
        println!(
            "load/{id} phases, mean of {loads} loads: add_text {:.3} s, build {:.3} s",
            (add_text_time / loads).as_secs_f64(),
            (build_time / loads).as_secs_f64()
        );
    }
}

/// Benchmarks `Policy::evaluate` over the whole mix and over each kind of
/// host on its own.
fn bench_lookups(c: &mut Criterion, id: &str, policy: &Policy, mix: &[MixHost]) {
    let mut group = c.benchmark_group(format!("lookup_{id}"));
    group.warm_up_time(Duration::from_millis(500));
    group.measurement_time(Duration::from_secs(3));
    group.bench_function("mix", |b| {
        b.iter_custom(|iters| {
            time_lookups(mix, iters, |target| {
                black_box(policy.evaluate(target));
            })
        })
    });
    for kind in HostKind::ALL {
        let hosts: Vec<MixHost> = mix
            .iter()
            .filter(|h| h.kind == kind)
            .map(|h| MixHost {
                host: h.host.clone(),
                kind: h.kind,
                target: h.target.clone(),
            })
            .collect();
        group.bench_function(kind.name(), |b| {
            b.iter_custom(|iters| {
                time_lookups(&hosts, iters, |target| {
                    black_box(policy.evaluate(target));
                })
            })
        });
    }
    group.finish();
}

/// Benchmarks the naive scan over the whole mix. Each lookup takes
/// milliseconds, so the sample count and measurement time are small.
fn bench_naive_lookups(c: &mut Criterion, id: &str, naive: &NaiveMatcher, mix: &[MixHost]) {
    let mut group = c.benchmark_group(format!("naive_lookup_{id}"));
    group.sample_size(10).sampling_mode(SamplingMode::Flat);
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(10));
    group.bench_function("mix", |b| {
        b.iter_custom(|iters| {
            time_lookups(mix, iters, |target| {
                black_box(naive.evaluate(target));
            })
        })
    });
    group.finish();
}

/// Checks that the compiled policy and the naive scan pick the same rule for
/// every host of the mix, so the timed lookups return the same results.
fn check_agreement(policy: &Policy, naive: &NaiveMatcher, mix: &[MixHost]) {
    for host in mix {
        let compiled = policy.evaluate(&host.target).rule.map(|rule| rule.index);
        let reference = naive.evaluate(&host.target).map(|(_, index)| index);
        assert_eq!(
            compiled, reference,
            "the policy and the naive scan disagree on {}",
            host.host
        );
    }
    println!(
        "the policy and the naive scan agree on all {} hosts",
        mix.len()
    );
}

fn benchmarks(c: &mut Criterion) {
    let (medium_size, large_size) = lists::list_sizes();
    if !lists::is_benchmark_run() {
        println!("smoke test on small lists; run `cargo bench` to measure");
    }
    let medium = lists::medium_domains(medium_size);
    println!("medium list: {}", medium.origin);
    let medium_list = lists::csv_list(&medium.domains, true);
    let large = lists::large_domains(large_size);
    println!("large list: {}", large.origin);
    let large_list = lists::csv_list(&large.domains, true);

    let mut group = c.benchmark_group("load");
    group.sample_size(10).sampling_mode(SamplingMode::Flat);
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(15));
    bench_load(&mut group, "110k", &medium_list);
    bench_load(&mut group, "1m", &large_list);
    group.finish();

    let medium_policy = load_policy(&medium_list);
    print_policy("medium list", &medium_list, &medium_policy);
    let medium_mix = lookup_mix(&medium.domains, &medium_policy);
    print_mix("110k", &medium_mix, &medium_policy);

    let mut naive = NaiveMatcher::new();
    let start = Instant::now();
    naive.add_text(LIST_NAME, &medium_list.text, &SourceOptions::default());
    println!(
        "naive scan: built {} rules in {:.2} s (one regex per row, measured once)",
        naive.len(),
        start.elapsed().as_secs_f64()
    );
    check_agreement(&medium_policy, &naive, &medium_mix);
    bench_lookups(c, "110k", &medium_policy, &medium_mix);
    bench_naive_lookups(c, "110k", &naive, &medium_mix);
    drop(naive);
    drop(medium_policy);

    let large_policy = load_policy(&large_list);
    print_policy("large list", &large_list, &large_policy);
    let large_mix = lookup_mix(&large.domains, &large_policy);
    print_mix("1m", &large_mix, &large_policy);
    bench_lookups(c, "1m", &large_policy, &large_mix);
}

fn main() {
    let mut criterion = Criterion::default().configure_from_args();
    benchmarks(&mut criterion);
    criterion.final_summary();
}
