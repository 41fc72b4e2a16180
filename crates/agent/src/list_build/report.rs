//! The report that `webwarden list build` prints to stderr.

use std::io::{self, Write};

use webwarden_policy::Format;

use super::merge::MergeCounts;
use super::{Plan, Timings};

/// Counts from reading one source.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SourceCounts {
    /// The format the source was read as, once it is known.
    pub format: Option<Format>,
    /// Usable entries, duplicates included.
    pub rows: usize,
    /// Lines skipped as invalid.
    pub invalid: usize,
    /// Hosts-file entries for local names such as `localhost`.
    pub local_names: usize,
    /// Entries that an earlier row already has with the same action.
    pub duplicates: usize,
    /// Duplicates whose earlier row has another category.
    pub duplicate_conflicts: usize,
}

/// Writes the report: the per-source table, rows per category, conflicts,
/// skipped files and timings.
pub(super) fn write(
    out: &mut impl Write,
    plan: &Plan,
    merged: &MergeCounts,
    destination: &str,
    timings: Timings,
) -> io::Result<()> {
    writeln!(
        out,
        "{:>9} {:>8} {:>6} {:>10} {:>8} {:>9}  {:<7}  source",
        "rows", "invalid", "local", "duplicate", "covered", "written", "format"
    )?;
    let mut total = SourceCounts::default();
    for (index, source) in plan.sources.iter().enumerate() {
        let counts = &source.counts;
        let format = counts.format.map(Format::as_str).unwrap_or("-");
        write_row(
            out,
            counts,
            merged.covered[index],
            merged.written[index],
            format,
            &source.name,
        )?;
        total.rows += counts.rows;
        total.invalid += counts.invalid;
        total.local_names += counts.local_names;
        total.duplicates += counts.duplicates;
        total.duplicate_conflicts += counts.duplicate_conflicts;
    }
    let covered = merged.covered.iter().sum();
    let written = merged.total_written();
    write_row(out, &total, covered, written, "", "total")?;

    writeln!(out, "\nrows written per category:")?;
    let mut categories: Vec<(&str, usize)> = plan
        .categories
        .iter()
        .map(String::as_str)
        .zip(merged.categories.iter().copied())
        .collect();
    categories.sort_unstable();
    for (name, count) in categories {
        writeln!(out, "  {name:<40} {count:>9}")?;
    }
    writeln!(
        out,
        "rows written per kind: {} domain, {} subdomains only, {} exact host, {} IP",
        merged.domain_rows, merged.subdomain_rows, merged.exact_rows, merged.ip_rows
    )?;

    let conflicts = total.duplicate_conflicts + merged.covered_conflicts + merged.kept_conflicts;
    writeln!(
        out,
        "category conflicts: {conflicts} ({} duplicate and {} covered row(s) took the category \
         of an earlier row; {} row(s) kept their own category ahead of a later, broader row)",
        total.duplicate_conflicts, merged.covered_conflicts, merged.kept_conflicts
    )?;
    write_skips(out, plan)?;
    writeln!(
        out,
        "wrote {written} row(s) to {destination} in {:.2} s (read {:.2} s, merge {:.2} s, \
         write {:.2} s)",
        (timings.read + timings.merge + timings.write).as_secs_f64(),
        timings.read.as_secs_f64(),
        timings.merge.as_secs_f64(),
        timings.write.as_secs_f64()
    )
}

fn write_row(
    out: &mut impl Write,
    counts: &SourceCounts,
    covered: usize,
    written: usize,
    format: &str,
    name: &str,
) -> io::Result<()> {
    writeln!(
        out,
        "{:>9} {:>8} {:>6} {:>10} {:>8} {:>9}  {:<7}  {name}",
        counts.rows,
        counts.invalid,
        counts.local_names,
        counts.duplicates,
        covered,
        written,
        format
    )
}

fn write_skips(out: &mut impl Write, plan: &Plan) -> io::Result<()> {
    let skips = &plan.skips;
    if skips.url_files > 0 {
        writeln!(
            out,
            "skipped {} `urls` file(s) with {} line(s): rules match host names, not URLs",
            skips.url_files, skips.url_lines
        )?;
    }
    if skips.other_file_count > 0 {
        let names: Vec<&str> = skips.other_files.iter().map(String::as_str).collect();
        writeln!(
            out,
            "skipped {} other file(s) in category folders: {}",
            skips.other_file_count,
            names.join(", ")
        )?;
    }
    if !skips.aliases.is_empty() {
        writeln!(
            out,
            "skipped {} category folder(s) that are symbolic links to others: {}",
            skips.aliases.len(),
            skips.aliases.join(", ")
        )?;
    }
    if !skips.without_domains.is_empty() {
        writeln!(
            out,
            "skipped {} folder(s) without a `domains` file: {}",
            skips.without_domains.len(),
            skips.without_domains.join(", ")
        )?;
    }
    Ok(())
}
