//! `webwarden-load`: a loopback origin and a load generator that measure
//! requests per second and latency of HTTP and HTTPS, directly or through
//! an HTTP proxy such as webwarden or mitmproxy.
//!
//! - `origin` serves a fixed 1 KiB body over HTTP and HTTPS on loopback.
//! - `sink-receivers` serves a stand-in QRadar HTTP Receiver and syslog
//!   receiver on loopback.
//! - `run` drives keep-alive connections at a URL for a fixed time.
//! - `summary` prints the table of a results file and checks the targets.
//!
//! `bench/load/run.sh` runs the whole comparison, and `bench/load/siem.sh`
//! compares webwarden with its SIEM sinks up and down.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};

mod client;
mod listen;
mod load;
mod origin;
mod receivers;
mod report;

/// Longest measured window, warmup or timeout a run accepts, in seconds.
const MAX_SECONDS: f64 = 600.0;

/// Loopback origin and load generator for proxy benchmarks.
#[derive(Debug, Parser)]
#[command(name = "webwarden-load", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve a fixed 1 KiB body on loopback over HTTP and HTTPS until the
    /// time limit, SIGINT or SIGTERM.
    Origin(OriginArgs),
    /// Serve an HTTP receiver that returns 200 to every POST and a syslog
    /// TCP receiver that discards what it reads, on loopback, until the
    /// time limit, SIGINT or SIGTERM.
    SinkReceivers(SinkReceiversArgs),
    /// Drive keep-alive connections at a URL for a fixed time and report
    /// requests per second and latency.
    Run(RunArgs),
    /// Print the Markdown table of a results file and compare webwarden
    /// with the targets.
    Summary(SummaryArgs),
}

#[derive(Debug, Args)]
struct OriginArgs {
    /// Plain HTTP listen address; must be a loopback address.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:0")]
    http: SocketAddr,
    /// HTTPS listen address; must be a loopback address.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:0")]
    https: SocketAddr,
    /// File to write the test CA certificate to, in PEM.
    #[arg(long, value_name = "FILE")]
    ca_out: PathBuf,
    /// File to write the bound addresses to, as JSON, once both listeners
    /// are ready.
    #[arg(long, value_name = "FILE")]
    addr_file: Option<PathBuf>,
    /// Seconds after which the origin exits by itself.
    #[arg(long, value_name = "SECONDS", default_value_t = 3600)]
    max_seconds: u64,
}

#[derive(Debug, Args)]
struct SinkReceiversArgs {
    /// HTTP receiver listen address; must be a loopback address.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:0")]
    http: SocketAddr,
    /// Syslog TCP receiver listen address; must be a loopback address.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:0")]
    syslog: SocketAddr,
    /// File to write the bound addresses to, as JSON, once both listeners
    /// are ready.
    #[arg(long, value_name = "FILE")]
    addr_file: Option<PathBuf>,
    /// File to rewrite with the received counts, as JSON, every 250 ms and
    /// at exit.
    #[arg(long, value_name = "FILE")]
    stats_file: Option<PathBuf>,
    /// Seconds after which the receivers exit by themselves.
    #[arg(long, value_name = "SECONDS", default_value_t = 3600)]
    max_seconds: u64,
}

#[derive(Debug, Args)]
struct RunArgs {
    /// URL to request, such as http://localhost:8080/; its host must resolve
    /// to loopback addresses only.
    #[arg(long)]
    url: String,
    /// HTTP proxy address, a loopback address; without it the origin is
    /// requested directly.
    #[arg(long, value_name = "ADDR")]
    proxy: Option<SocketAddr>,
    /// PEM file with the CA to trust for HTTPS: the origin's CA without a
    /// proxy, the proxy's CA through an intercepting proxy.
    #[arg(long, value_name = "FILE")]
    ca: Option<PathBuf>,
    /// Concurrent keep-alive connections (1 to 1024).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=1024))]
    connections: u16,
    /// Measured window in seconds.
    #[arg(long, value_name = "SECONDS", default_value = "10", value_parser = parse_seconds)]
    duration: Duration,
    /// Warmup before the window in seconds, not counted.
    #[arg(long, value_name = "SECONDS", default_value = "1", value_parser = parse_seconds)]
    warmup: Duration,
    /// Requests sent in the whole run at most, warmup included.
    #[arg(long, default_value_t = 5_000_000)]
    max_requests: u64,
    /// Seconds one request may take before it counts as timed out.
    #[arg(long, value_name = "SECONDS", default_value = "30", value_parser = parse_seconds)]
    request_timeout: Duration,
    /// Seconds opening one connection may take, CONNECT and TLS included.
    #[arg(long, value_name = "SECONDS", default_value = "30", value_parser = parse_seconds)]
    connect_timeout: Duration,
    /// Name of the path in the results [default: direct without --proxy,
    /// proxy with it].
    #[arg(long)]
    label: Option<String>,
    /// The list the proxy loaded, recorded in the result.
    #[arg(long)]
    list: Option<String>,
    /// File to append the result to as one JSON line.
    #[arg(long, value_name = "FILE")]
    results: Option<PathBuf>,
    /// File to append the result to as one Markdown table row.
    #[arg(long, value_name = "FILE")]
    markdown: Option<PathBuf>,
}

#[derive(Debug, Args)]
struct SummaryArgs {
    /// JSON-lines file that `run --results` wrote.
    #[arg(long, value_name = "FILE")]
    results: PathBuf,
    /// webwarden's VmRSS after loading its list, in KiB.
    #[arg(long, value_name = "KIB", requires = "rss_after_kib")]
    rss_loaded_kib: Option<u64>,
    /// webwarden's VmRSS after the runs, in KiB.
    #[arg(long, value_name = "KIB", requires = "rss_loaded_kib")]
    rss_after_kib: Option<u64>,
    /// Label of the runs to compare with --baseline. The summary then adds
    /// the ratios of their median requests per second, p50 and p99.
    #[arg(long, value_name = "LABEL", requires = "baseline")]
    compare: Option<String>,
    /// Label of the runs that --compare is divided by.
    #[arg(long, value_name = "LABEL", requires = "compare")]
    baseline: Option<String>,
}

fn parse_seconds(text: &str) -> Result<Duration, String> {
    let seconds: f64 = text
        .parse()
        .map_err(|_| format!("invalid number of seconds {text:?}"))?;
    if !(0.0..=MAX_SECONDS).contains(&seconds) {
        return Err(format!(
            "{seconds} seconds is out of range; expected 0 to {MAX_SECONDS}"
        ));
    }
    Ok(Duration::from_secs_f64(seconds))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("error: failed to start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = runtime.block_on(async {
        match cli.command {
            Command::Origin(args) => run_origin(args).await,
            Command::SinkReceivers(args) => run_sink_receivers(args).await,
            Command::Run(args) => run_load(args).await,
            Command::Summary(args) => print_summary(&args),
        }
    });
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run_origin(args: OriginArgs) -> anyhow::Result<()> {
    let tls = origin::make_tls()?;
    std::fs::write(&args.ca_out, &tls.ca_pem)
        .with_context(|| format!("failed to write {}", args.ca_out.display()))?;
    let (addrs, tasks) = origin::start(args.http, args.https, tls.server_config).await?;
    if let Some(path) = &args.addr_file {
        write_atomically(path, &serde_json::to_string(&addrs)?)?;
    }
    eprintln!(
        "origin listening on http://{} and https://{} (CA in {}); exits after {} s",
        addrs.http,
        addrs.https,
        args.ca_out.display(),
        args.max_seconds
    );
    wait_for_stop("origin", Duration::from_secs(args.max_seconds)).await;
    for task in tasks {
        task.abort();
    }
    eprintln!("origin stopped");
    Ok(())
}

async fn run_sink_receivers(args: SinkReceiversArgs) -> anyhow::Result<()> {
    let (addrs, counters, tasks) = receivers::start(args.http, args.syslog).await?;
    if let Some(path) = &args.addr_file {
        write_atomically(path, &serde_json::to_string(&addrs)?)?;
    }
    eprintln!(
        "sink receivers listening on http://{} and tcp://{}; exit after {} s",
        addrs.http, addrs.syslog, args.max_seconds
    );
    let stats_task = args.stats_file.clone().map(|path| {
        let counters = Arc::clone(&counters);
        tokio::spawn(async move {
            let mut interval = tokio::time::interval(Duration::from_millis(250));
            loop {
                interval.tick().await;
                if let Err(err) = write_stats(&path, &counters) {
                    eprintln!("sink receivers: {err:#}");
                    return;
                }
            }
        })
    });
    wait_for_stop("sink receivers", Duration::from_secs(args.max_seconds)).await;
    for task in tasks.into_iter().chain(stats_task) {
        task.abort();
    }
    if let Some(path) = &args.stats_file {
        write_stats(path, &counters)?;
    }
    eprintln!(
        "sink receivers stopped; received {}",
        serde_json::to_string(&counters.snapshot())?
    );
    Ok(())
}

fn write_stats(path: &Path, counters: &receivers::Counters) -> anyhow::Result<()> {
    write_atomically(path, &serde_json::to_string(&counters.snapshot())?)
}

/// Writes `text` under another name and renames it to `path`, so a reader
/// never sees a partial file.
fn write_atomically(path: &Path, text: &str) -> anyhow::Result<()> {
    let partial = path.with_extension("partial");
    std::fs::write(&partial, text)
        .with_context(|| format!("failed to write {}", partial.display()))?;
    std::fs::rename(&partial, path).with_context(|| {
        format!(
            "failed to rename {} to {}",
            partial.display(),
            path.display()
        )
    })
}

/// Completes after `limit`, on SIGINT or on SIGTERM, and logs which of
/// them ended the wait, prefixed with `server`.
async fn wait_for_stop(server: &str, limit: Duration) {
    let mut terminate =
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(signal) => signal,
            Err(err) => {
                eprintln!("{server}: failed to listen for SIGTERM: {err}");
                tokio::select! {
                    _ = tokio::time::sleep(limit) => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
                return;
            }
        };
    tokio::select! {
        _ = tokio::time::sleep(limit) => eprintln!("{server}: time limit reached"),
        _ = tokio::signal::ctrl_c() => eprintln!("{server}: received SIGINT"),
        _ = terminate.recv() => eprintln!("{server}: received SIGTERM"),
    }
}

async fn run_load(args: RunArgs) -> anyhow::Result<()> {
    let target = client::Target::new(&args.url, args.proxy, args.ca.as_deref()).await?;

    let label = args.label.clone().unwrap_or_else(|| {
        if args.proxy.is_some() {
            "proxy".to_owned()
        } else {
            report::DIRECT.to_owned()
        }
    });
    let settings = load::LoadSettings {
        connections: usize::from(args.connections),
        warmup: args.warmup,
        duration: args.duration,
        max_requests: args.max_requests,
        request_timeout: args.request_timeout,
        connect_timeout: args.connect_timeout,
    };

    let started_at =
        time::OffsetDateTime::now_utc().format(&time::format_description::well_known::Rfc3339)?;
    let scheme = target.scheme.as_str();
    let outcome = load::run(Arc::new(target), &settings)
        .await
        .with_context(|| format!("the {label} {scheme} run failed"))?;
    let result = report::RunResult::new(
        &label,
        scheme,
        settings.connections,
        args.list.clone(),
        started_at,
        &outcome,
    );

    let json = serde_json::to_string(&result)?;
    let row = result.markdown_row();
    println!("{json}");
    println!("{row}");
    if let Some(path) = &args.results {
        report::append_line(path, &json)?;
    }
    if let Some(path) = &args.markdown {
        report::append_markdown_row(path, &row)?;
    }
    Ok(())
}

fn print_summary(args: &SummaryArgs) -> anyhow::Result<()> {
    let results = report::read_results(&args.results)?;
    let memory = match (args.rss_loaded_kib, args.rss_after_kib) {
        (Some(loaded_kib), Some(after_load_kib)) => Some(report::ResidentMemory {
            loaded_kib,
            after_load_kib,
        }),
        _ => None,
    };
    print!("{}", report::summary(&results, memory));
    if let (Some(label), Some(baseline)) = (&args.compare, &args.baseline) {
        println!();
        print!("{}", report::comparison(&results, label, baseline)?);
    }
    Ok(())
}
