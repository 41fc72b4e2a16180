//! Results of runs as JSON lines and Markdown table rows, and the summary
//! that compares webwarden with the direct path and with mitmproxy.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::Path;

use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};

use crate::load::LoadOutcome;

/// Label of runs without a proxy.
pub const DIRECT: &str = "direct";
/// Label of runs through webwarden.
pub const WEBWARDEN: &str = "webwarden";
/// Label of runs through mitmproxy.
pub const MITMPROXY: &str = "mitmproxy";

/// Minimum webwarden/direct throughput ratio for plain HTTP.
const TARGET_HTTP_VS_DIRECT: f64 = 0.5;
/// Minimum webwarden/mitmproxy throughput ratio for intercepted HTTPS.
const TARGET_HTTPS_VS_MITMPROXY: f64 = 10.0;
/// Maximum p99 latency webwarden may add at 1 connection, in milliseconds.
const TARGET_ADDED_P99_MS: f64 = 1.0;
/// Maximum resident memory with the large list, in bytes (60 MB).
const TARGET_RSS_BYTES: u64 = 60_000_000;

/// The header of the Markdown table that [`RunResult::markdown_row`] fills.
pub const MARKDOWN_HEADER: &str = "| Path | Scheme | Connections | Requests/s | p50 (ms) | p99 (ms) | Requests | Failed |\n| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |";

/// Latency percentiles in milliseconds.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Latency {
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Slowest request.
    pub max: f64,
    /// Arithmetic mean.
    pub mean: f64,
}

/// One run's result, written as one JSON line.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunResult {
    /// The path measured: `direct`, `webwarden`, `mitmproxy` or another label.
    pub label: String,
    /// `http` or `https`.
    pub scheme: String,
    /// Concurrent connections.
    pub connections: usize,
    /// The list the proxy loaded, as given to the tool, if any.
    pub list: Option<String>,
    /// Start of the run, RFC 3339 in UTC.
    pub started_at: String,
    /// Length of the measured window in seconds.
    pub window_s: f64,
    /// 200 responses completed inside the window.
    pub requests: u64,
    /// `requests` divided by the window.
    pub requests_per_second: f64,
    /// Latency of those requests.
    pub latency_ms: Latency,
    /// Responses other than 200, over the whole run, by status code.
    pub other_statuses: BTreeMap<u16, u64>,
    /// 200 responses with a body of the wrong length.
    pub wrong_bodies: u64,
    /// Failed requests and reconnects.
    pub errors: u64,
    /// Timed-out requests.
    pub timeouts: u64,
    /// Whether the request budget ended the run before the window did.
    pub budget_exhausted: bool,
    /// Requests sent in the whole run, warmup included.
    pub sent: u64,
}

impl RunResult {
    /// Builds the result of a run from its outcome.
    pub fn new(
        label: &str,
        scheme: &str,
        connections: usize,
        list: Option<String>,
        started_at: String,
        outcome: &LoadOutcome,
    ) -> RunResult {
        let window_s = outcome.window.as_secs_f64();
        let histogram = &outcome.latency_us;
        let ms = |micros: u64| micros as f64 / 1000.0;
        RunResult {
            label: label.to_owned(),
            scheme: scheme.to_owned(),
            connections,
            list,
            started_at,
            window_s,
            requests: outcome.ok,
            requests_per_second: if window_s > 0.0 {
                outcome.ok as f64 / window_s
            } else {
                0.0
            },
            latency_ms: Latency {
                p50: ms(histogram.value_at_quantile(0.50)),
                p90: ms(histogram.value_at_quantile(0.90)),
                p99: ms(histogram.value_at_quantile(0.99)),
                max: ms(histogram.max()),
                mean: histogram.mean() / 1000.0,
            },
            other_statuses: outcome.other_statuses.clone(),
            wrong_bodies: outcome.wrong_bodies,
            errors: outcome.errors,
            timeouts: outcome.timeouts,
            budget_exhausted: outcome.budget_exhausted,
            sent: outcome.sent,
        }
    }

    /// Counts every request that did not end in a 200 with the full body.
    pub fn failed(&self) -> u64 {
        self.other_statuses.values().sum::<u64>() + self.wrong_bodies + self.errors + self.timeouts
    }

    /// Formats the result as a row of the table that [`MARKDOWN_HEADER`]
    /// starts.
    pub fn markdown_row(&self) -> String {
        format!(
            "| {} | {} | {} | {:.0} | {:.3} | {:.3} | {} | {} |",
            self.label,
            self.scheme,
            self.connections,
            self.requests_per_second,
            self.latency_ms.p50,
            self.latency_ms.p99,
            self.requests,
            self.failed()
        )
    }
}

/// Appends `line` and a newline to `path`, creating the file if needed.
///
/// # Errors
///
/// Returns the I/O error with the path.
pub fn append_line(path: &Path, line: &str) -> anyhow::Result<()> {
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("failed to open {}", path.display()))?;
    writeln!(file, "{line}").with_context(|| format!("failed to write {}", path.display()))
}

/// Appends a table row to `path`, after [`MARKDOWN_HEADER`] when the file
/// is new or empty.
///
/// # Errors
///
/// Returns the I/O error with the path.
pub fn append_markdown_row(path: &Path, row: &str) -> anyhow::Result<()> {
    let empty = std::fs::metadata(path).map_or(true, |meta| meta.len() == 0);
    if empty {
        append_line(path, MARKDOWN_HEADER)?;
    }
    append_line(path, row)
}

/// Reads the JSON lines that `run --results` appended.
///
/// # Errors
///
/// Returns an error for an unreadable file or an invalid line.
pub fn read_results(path: &Path) -> anyhow::Result<Vec<RunResult>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("failed to read {}", path.display()))?;
    text.lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(index, line)| {
            serde_json::from_str(line)
                .with_context(|| format!("{}:{}: invalid result line", path.display(), index + 1))
        })
        .collect()
}

/// Resident memory of the proxy, in KiB as /proc/PID/status reports VmRSS.
#[derive(Debug, Clone, Copy)]
pub struct ResidentMemory {
    /// After the list was loaded and the proxy listened, before any load.
    pub loaded_kib: u64,
    /// After every run.
    pub after_load_kib: u64,
}

/// The header of the summary table that [`summary`] prints.
pub const SUMMARY_HEADER: &str = "| Path | Scheme | Connections | Runs | Requests/s (median) | Requests/s (min to max) | p50 (ms) | p99 (ms) | Failed |\n| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |";

type CellKey = (String, (u8, String), usize);

/// The runs of one path, scheme and connection count, reduced to medians.
#[derive(Debug)]
struct Cell {
    label: String,
    scheme: String,
    connections: usize,
    runs: usize,
    requests_per_second: f64,
    min_requests_per_second: f64,
    max_requests_per_second: f64,
    p50_ms: f64,
    p99_ms: f64,
    failed: u64,
}

impl Cell {
    fn new(runs: &[&RunResult]) -> Cell {
        let first = runs[0];
        let rates: Vec<f64> = runs.iter().map(|r| r.requests_per_second).collect();
        Cell {
            label: first.label.clone(),
            scheme: first.scheme.clone(),
            connections: first.connections,
            runs: runs.len(),
            requests_per_second: median(&rates),
            min_requests_per_second: rates.iter().copied().fold(f64::INFINITY, f64::min),
            max_requests_per_second: rates.iter().copied().fold(0.0, f64::max),
            p50_ms: median(&runs.iter().map(|r| r.latency_ms.p50).collect::<Vec<_>>()),
            p99_ms: median(&runs.iter().map(|r| r.latency_ms.p99).collect::<Vec<_>>()),
            failed: runs.iter().map(|r| r.failed()).sum(),
        }
    }

    fn markdown_row(&self) -> String {
        format!(
            "| {} | {} | {} | {} | {:.0} | {:.0} to {:.0} | {:.3} | {:.3} | {} |",
            self.label,
            self.scheme,
            self.connections,
            self.runs,
            self.requests_per_second,
            self.min_requests_per_second,
            self.max_requests_per_second,
            self.p50_ms,
            self.p99_ms,
            self.failed
        )
    }
}

/// Returns the median of `values`, the mean of the middle two for an even
/// count, or 0 for none.
fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let middle = sorted.len() / 2;
    match sorted.len() {
        0 => 0.0,
        len if len % 2 == 1 => sorted[middle],
        _ => (sorted[middle - 1] + sorted[middle]) / 2.0,
    }
}

/// Formats the table of all results and the comparisons against the
/// targets. Repeated runs of one path, scheme and connection count are
/// reduced to the median requests per second, p50 and p99, and the
/// comparisons use those medians.
pub fn summary(results: &[RunResult], memory: Option<ResidentMemory>) -> String {
    let groups = group_runs(results);
    let mut cells: Vec<Cell> = groups.values().map(|runs| Cell::new(runs)).collect();
    cells.sort_by_key(|c| (c.scheme.clone(), c.connections, label_rank(&c.label)));
    let find = |label: &str, scheme: &str, connections: usize| {
        cells
            .iter()
            .find(|c| c.label == label && c.scheme == scheme && c.connections == connections)
    };

    let mut out = String::new();
    let _ = writeln!(out, "{SUMMARY_HEADER}");
    for cell in &cells {
        let _ = writeln!(out, "{}", cell.markdown_row());
    }
    let _ = writeln!(out);

    let mut connection_counts: Vec<usize> = cells.iter().map(|c| c.connections).collect();
    connection_counts.sort_unstable();
    connection_counts.dedup();
    for &connections in &connection_counts {
        if let (Some(ours), Some(base)) = (
            find(WEBWARDEN, "http", connections),
            find(DIRECT, "http", connections),
        ) {
            let ratio = ours.requests_per_second / base.requests_per_second;
            let _ = writeln!(
                out,
                "- Plain HTTP, {connections} connection(s): webwarden/direct throughput {ratio:.2} (target at least {TARGET_HTTP_VS_DIRECT}: {}).",
                verdict(ratio >= TARGET_HTTP_VS_DIRECT)
            );
        }
    }
    for &connections in &connection_counts {
        if let (Some(ours), Some(theirs)) = (
            find(WEBWARDEN, "https", connections),
            find(MITMPROXY, "https", connections),
        ) {
            let ratio = ours.requests_per_second / theirs.requests_per_second;
            let _ = writeln!(
                out,
                "- Intercepted HTTPS, {connections} connection(s): webwarden/mitmproxy throughput {ratio:.1}x (target at least {TARGET_HTTPS_VS_MITMPROXY}x: {}).",
                verdict(ratio >= TARGET_HTTPS_VS_MITMPROXY)
            );
        }
    }
    for scheme in ["http", "https"] {
        if let (Some(ours), Some(base)) = (find(WEBWARDEN, scheme, 1), find(DIRECT, scheme, 1)) {
            let added = ours.p99_ms - base.p99_ms;
            let _ = writeln!(
                out,
                "- {scheme}, 1 connection: webwarden adds {added:.3} ms to p99 ({:.3} ms against {:.3} ms direct; target under {TARGET_ADDED_P99_MS} ms: {}).",
                ours.p99_ms,
                base.p99_ms,
                verdict(added < TARGET_ADDED_P99_MS)
            );
        }
    }
    if let Some(memory) = memory {
        let loaded = memory.loaded_kib * 1024;
        let after = memory.after_load_kib * 1024;
        let _ = writeln!(
            out,
            "- webwarden VmRSS: {:.1} MB ({} KiB) after loading the list, {:.1} MB ({} KiB) after the runs (target under {:.0} MB: {}).",
            loaded as f64 / 1e6,
            memory.loaded_kib,
            after as f64 / 1e6,
            memory.after_load_kib,
            TARGET_RSS_BYTES as f64 / 1e6,
            verdict(loaded.max(after) < TARGET_RSS_BYTES)
        );
    }
    for cell in cells.iter().filter(|c| c.failed > 0) {
        let _ = writeln!(
            out,
            "- Warning: {} {} at {} connection(s) had {} failed requests over {} run(s); see the JSON results for the kinds.",
            cell.label, cell.scheme, cell.connections, cell.failed, cell.runs
        );
    }
    out
}

/// Groups runs by scheme, path and connection count, in that key order, so
/// a table groups by scheme and lists the direct path first. Each group
/// keeps the runs in file order.
fn group_runs(results: &[RunResult]) -> BTreeMap<CellKey, Vec<&RunResult>> {
    let mut groups: BTreeMap<CellKey, Vec<&RunResult>> = BTreeMap::new();
    for result in results {
        let key = (
            result.scheme.clone(),
            label_rank(&result.label),
            result.connections,
        );
        groups.entry(key).or_default().push(result);
    }
    groups
}

/// The header of the table that [`comparison`] prints.
pub const COMPARISON_HEADER: &str = "| Scheme | Connections | Requests/s ratio (of medians) | Requests/s ratio per round (min to max) | p50 ratio | p99 ratio |\n| --- | --- | ---: | ---: | ---: | ---: |";

/// Formats the ratios `label`/`baseline` for each scheme and connection
/// count that has runs of both: of the median requests per second, p50 and
/// p99, and the range of the per-round ratios of requests per second. A
/// round pairs the k-th run of `label` with the k-th run of `baseline` in
/// file order, so runs made close together are compared.
///
/// # Errors
///
/// Returns an error when no scheme and connection count has runs of both
/// labels.
pub fn comparison(results: &[RunResult], label: &str, baseline: &str) -> anyhow::Result<String> {
    let groups = group_runs(results);
    let mut out = String::new();
    let _ = writeln!(out, "{COMPARISON_HEADER}");
    let mut rows = 0;
    for ((scheme, rank, connections), runs) in &groups {
        if rank.1 != label {
            continue;
        }
        let Some(base_runs) = groups.get(&(scheme.clone(), label_rank(baseline), *connections))
        else {
            continue;
        };
        let ours = Cell::new(runs);
        let base = Cell::new(base_runs);
        let paired: Vec<f64> = runs
            .iter()
            .zip(base_runs)
            .map(|(run, base_run)| run.requests_per_second / base_run.requests_per_second)
            .collect();
        let _ = writeln!(
            out,
            "| {scheme} | {connections} | {:.3} | {:.3} to {:.3} | {:.3} | {:.3} |",
            ours.requests_per_second / base.requests_per_second,
            paired.iter().copied().fold(f64::INFINITY, f64::min),
            paired.iter().copied().fold(0.0, f64::max),
            ours.p50_ms / base.p50_ms,
            ours.p99_ms / base.p99_ms,
        );
        rows += 1;
    }
    if rows == 0 {
        bail!("no scheme and connection count has runs labeled both {label:?} and {baseline:?}");
    }
    Ok(out)
}

fn label_rank(label: &str) -> (u8, String) {
    let rank = match label {
        DIRECT => 0,
        WEBWARDEN => 1,
        MITMPROXY => 2,
        _ => 3,
    };
    (rank, label.to_owned())
}

fn verdict(met: bool) -> &'static str {
    if met {
        "met"
    } else {
        "missed"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(label: &str, scheme: &str, connections: usize, rps: f64, p99: f64) -> RunResult {
        RunResult {
            label: label.to_owned(),
            scheme: scheme.to_owned(),
            connections,
            list: None,
            started_at: String::new(),
            window_s: 10.0,
            requests: (rps * 10.0) as u64,
            requests_per_second: rps,
            latency_ms: Latency {
                p50: p99 / 2.0,
                p90: p99,
                p99,
                max: p99,
                mean: p99 / 2.0,
            },
            other_statuses: BTreeMap::new(),
            wrong_bodies: 0,
            errors: 0,
            timeouts: 0,
            budget_exhausted: false,
            sent: (rps * 11.0) as u64,
        }
    }

    #[test]
    fn summary_compares_against_targets() {
        let results = vec![
            result(DIRECT, "http", 1, 10_000.0, 0.2),
            result(WEBWARDEN, "http", 1, 4_000.0, 0.5),
            result(DIRECT, "https", 1, 9_000.0, 0.3),
            result(WEBWARDEN, "https", 1, 3_000.0, 1.5),
            result(MITMPROXY, "https", 1, 100.0, 20.0),
        ];
        let memory = ResidentMemory {
            loaded_kib: 40_000,
            after_load_kib: 50_000,
        };
        let text = summary(&results, Some(memory));
        assert!(text.contains("webwarden/direct throughput 0.40 (target at least 0.5: missed)"));
        assert!(text.contains("webwarden/mitmproxy throughput 30.0x (target at least 10x: met)"));
        assert!(text.contains("http, 1 connection: webwarden adds 0.300 ms to p99"));
        assert!(text.contains("https, 1 connection: webwarden adds 1.200 ms to p99"));
        assert!(text.contains("target under 1 ms: missed"));
        assert!(text.contains("51.2 MB (50000 KiB) after the runs (target under 60 MB: met)"));
    }

    #[test]
    fn summary_takes_median_of_runs() {
        let results = vec![
            result(DIRECT, "http", 1, 1_000.0, 0.2),
            result(DIRECT, "http", 1, 3_000.0, 0.4),
            result(DIRECT, "http", 1, 2_000.0, 0.3),
        ];
        let text = summary(&results, None);
        assert_eq!(text.matches("| direct | http | 1 |").count(), 1);
        assert!(
            text.contains("| direct | http | 1 | 3 | 2000 | 1000 to 3000 | 0.150 | 0.300 | 0 |")
        );
    }

    #[test]
    fn comparison_divides_medians_and_pairs_rounds() {
        let results = vec![
            result("sinks-up", "http", 1, 1_000.0, 0.2),
            result("sinks-down", "http", 1, 1_100.0, 0.2),
            result("sinks-up", "http", 1, 2_000.0, 0.4),
            result("sinks-down", "http", 1, 1_800.0, 0.3),
            result("sinks-up", "http", 1, 3_000.0, 0.4),
            result("sinks-down", "http", 1, 3_000.0, 0.4),
            result("sinks-up", "https", 64, 500.0, 1.0),
        ];
        let text = comparison(&results, "sinks-down", "sinks-up").unwrap();
        assert!(
            text.contains("| http | 1 | 0.900 | 0.900 to 1.100 | 0.750 | 0.750 |"),
            "{text}"
        );
        assert!(!text.contains("| https |"), "{text}");
    }

    #[test]
    fn comparison_without_pairs_fails() {
        let results = vec![result("sinks-up", "http", 1, 1_000.0, 0.2)];
        let err = comparison(&results, "sinks-down", "sinks-up").unwrap_err();
        assert!(err.to_string().contains("no scheme and connection count"));
    }

    #[test]
    fn median_of_even_count_averages() {
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), 2.5);
        assert_eq!(median(&[]), 0.0);
    }

    #[test]
    fn failed_counts_every_kind() {
        let mut run = result(WEBWARDEN, "http", 1, 1.0, 1.0);
        run.other_statuses.insert(403, 2);
        run.errors = 3;
        run.timeouts = 4;
        run.wrong_bodies = 5;
        assert_eq!(run.failed(), 14);
        assert!(summary(&[run], None)
            .contains("Warning: webwarden http at 1 connection(s) had 14 failed requests"));
    }
}
