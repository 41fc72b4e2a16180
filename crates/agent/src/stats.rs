//! `webwarden list stats`: what list files contain (rules by kind and
//! category, bad rows, duplicates) and what they cost to load.

use std::io::{self, Write};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Args;
use serde::Serialize;
use webwarden_policy::{KindCounts, Policy};

use crate::{alloc, lists, CliError, ListSpec};

/// Arguments of `webwarden list stats`.
#[derive(Debug, Args)]
pub struct StatsArgs {
    /// Lists, as for `--list`: `builtin`, a path, or key=value options.
    /// Without any, the built-in default list.
    #[arg(value_name = "LIST")]
    files: Vec<ListSpec>,
    /// Reject the lists when any row is bad.
    #[arg(long)]
    strict: bool,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
}

/// The report, as printed with `--json`.
#[derive(Debug, Serialize)]
struct Report<'a> {
    sources: Vec<SourceReport<'a>>,
    total: Counts,
    categories: Vec<(&'a str, usize)>,
    duplicates: usize,
    bad_rows: Vec<String>,
    bad_row_count: usize,
    load_ms: f64,
    memory_bytes: isize,
    peak_load_bytes: isize,
    literal_table_bytes: usize,
}

#[derive(Debug, Serialize)]
struct SourceReport<'a> {
    name: &'a str,
    format: &'static str,
    rules: Counts,
    bad_rows: usize,
    local_names: usize,
}

#[derive(Debug, Serialize)]
struct Counts {
    total: usize,
    exact: usize,
    suffix: usize,
    domain: usize,
    contains: usize,
    regex: usize,
    ip: usize,
}

impl From<KindCounts> for Counts {
    fn from(k: KindCounts) -> Counts {
        Counts {
            total: k.total(),
            exact: k.exact,
            suffix: k.suffix,
            domain: k.domain,
            contains: k.contains,
            regex: k.regex,
            ip: k.ip,
        }
    }
}

/// Runs the command.
pub fn run(args: &StatsArgs) -> Result<ExitCode, CliError> {
    alloc::start();
    let started = Instant::now();
    let policy = lists::load(&args.files, args.strict)?;
    let load_time = started.elapsed();
    let (memory, peak) = alloc::snapshot();

    let report = build_report(&policy, load_time, memory, peak);
    let mut out = io::stdout().lock();
    if args.json {
        serde_json::to_writer_pretty(&mut out, &report).map_err(|e| CliError::Failed(e.into()))?;
        writeln!(out)?;
    } else {
        write_text(&mut out, &report)?;
    }
    Ok(ExitCode::SUCCESS)
}

fn build_report(policy: &Policy, load_time: Duration, memory: isize, peak: isize) -> Report<'_> {
    let sources = policy
        .sources()
        .iter()
        .map(|s| SourceReport {
            name: &s.name,
            format: s.format.as_str(),
            rules: s.rules.into(),
            bad_rows: s.bad_rows,
            local_names: s.local_names,
        })
        .collect();
    Report {
        sources,
        total: policy.rule_counts().into(),
        categories: policy.category_counts().into_iter().collect(),
        duplicates: policy.duplicate_count(),
        bad_rows: policy.bad_rows().iter().map(|r| r.to_string()).collect(),
        bad_row_count: policy.bad_row_count(),
        load_ms: load_time.as_secs_f64() * 1000.0,
        memory_bytes: memory,
        peak_load_bytes: peak,
        literal_table_bytes: policy.literal_table_bytes(),
    }
}

fn write_text(out: &mut impl Write, report: &Report<'_>) -> io::Result<()> {
    writeln!(
        out,
        "{:<40} {:>7} {:>9} {:>8} {:>8} {:>8} {:>8} {:>7} {:>7} {:>6} {:>6}",
        "source",
        "format",
        "rules",
        "exact",
        "suffix",
        "domain",
        "contains",
        "regex",
        "ip",
        "bad",
        "local"
    )?;
    for source in &report.sources {
        write_counts(out, source.name, source.format, &source.rules)?;
        writeln!(out, " {:>6} {:>6}", source.bad_rows, source.local_names)?;
    }
    write_counts(out, "total", "", &report.total)?;
    writeln!(out, " {:>6}", report.bad_row_count)?;

    writeln!(out, "\ncategories:")?;
    for (name, count) in &report.categories {
        writeln!(out, "  {name:<38} {count:>9}")?;
    }
    writeln!(out, "\nduplicate rules: {}", report.duplicates)?;
    writeln!(out, "bad rows: {}", report.bad_row_count)?;
    for row in &report.bad_rows {
        writeln!(out, "  {row}")?;
    }
    if report.bad_row_count > report.bad_rows.len() {
        let rest = report.bad_row_count - report.bad_rows.len();
        writeln!(out, "  ({rest} more not kept)")?;
    }
    let rules = report.total.total.max(1) as f64;
    writeln!(out, "load time: {:.1} ms", report.load_ms)?;
    writeln!(
        out,
        "memory: {} retained ({:.1} bytes per rule, literal table {}), peak {} while loading",
        mib(report.memory_bytes),
        report.memory_bytes as f64 / rules,
        mib(report.literal_table_bytes as isize),
        mib(report.peak_load_bytes),
    )
}

fn write_counts(out: &mut impl Write, name: &str, format: &str, c: &Counts) -> io::Result<()> {
    write!(
        out,
        "{:<40} {:>7} {:>9} {:>8} {:>8} {:>8} {:>8} {:>7} {:>7}",
        name, format, c.total, c.exact, c.suffix, c.domain, c.contains, c.regex, c.ip
    )
}

fn mib(bytes: isize) -> String {
    format!("{:.2} MiB", bytes as f64 / (1024.0 * 1024.0))
}
