//! Spool throughput: request events sent the way the proxy sends them,
//! timed until they are written to the spool, and until a JSON-lines file
//! sink has delivered them too. The baseline serializes the same events and
//! writes them to a file on the calling thread, with no queue, IDs,
//! identity or spool: what one JSON-lines writer costs at best.
//!
//! Run with `cargo bench -p webwarden-events --bench spool`. The spool and
//! the events file live in a temporary directory (set `TMPDIR` to measure
//! another disk).

use std::time::{Duration, Instant};

use std::io::Write;

use criterion::{BenchmarkId, Criterion, Throughput};
use webwarden_events::{
    Event, EventCategory, ExportConfig, Exporter, Identity, IdentityHandle, RetryPolicy,
    SinkConfig, ALLOWED_EVENT_NAME,
};

/// Events per timed batch.
const BATCH: u64 = 20_000;

/// Events per timed batch when a sink delivers them too: a sink pauses
/// 100 ms after a part-full batch, so a larger batch keeps that pause from
/// dominating the time.
const SINK_BATCH: u64 = 100_000;

/// The bound on waiting for one batch, so a stalled spool fails the run.
const BATCH_TIMEOUT: Duration = Duration::from_secs(60);

fn request_event(n: u64) -> Event {
    Event {
        event_name: ALLOWED_EVENT_NAME.to_owned(),
        event_category: EventCategory::Allowed,
        timestamp: "2026-12-04T19:00:00.123456789Z".to_owned(),
        source_ip: "127.0.0.1".parse().expect("address"),
        source_port: 40_000 + (n % 20_000) as u16,
        destination_ip: Some("93.184.215.14".parse().expect("address")),
        destination_port: 443,
        destination_host: "www.example.com".to_owned(),
        method: "GET".to_owned(),
        url: format!("https://www.example.com/assets/app.js?v={n}"),
        status: 200,
        bytes: 0,
        rule: None,
        rule_source: None,
        rule_line: None,
        response_status: Some(200),
        error: None,
    }
}

fn identity() -> IdentityHandle {
    IdentityHandle::new(Identity {
        host_name: "bench-host".to_owned(),
        machine_id: "0123456789abcdef0123456789abcdef".to_owned(),
        user_name: "bench".to_owned(),
        os: "Debian GNU/Linux 12 (bookworm)".to_owned(),
        agent_version: "0.1.0".to_owned(),
        list_version: "3f9a0c1d2e4b".to_owned(),
    })
}

/// Waits until `done` holds, polling; panics after [`BATCH_TIMEOUT`].
fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + BATCH_TIMEOUT;
    while !done() {
        assert!(
            Instant::now() < deadline,
            "{what} did not finish within {BATCH_TIMEOUT:?}"
        );
        std::thread::sleep(Duration::from_micros(200));
    }
}

fn spool_throughput(c: &mut Criterion) {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let mut group = c.benchmark_group("spool");

    group.sample_size(20);

    for with_sink in [false, true] {
        let dir = tempfile::tempdir().expect("temporary directory");
        let sinks = if with_sink {
            vec![SinkConfig::File {
                path: dir.path().join("events.jsonl"),
            }]
        } else {
            Vec::new()
        };
        let config = ExportConfig {
            spool_dir: dir.path().join("spool"),
            max_bytes: 512 * 1024 * 1024,
            queue_capacity: 100_000,
            sinks,
            retry: RetryPolicy::default(),
        };
        let _guard = runtime.enter();
        let (exporter, sender) = Exporter::start(&config, identity()).expect("exporter starts");
        let label = if with_sink {
            "spooled_and_written_to_file"
        } else {
            "spooled"
        };
        let batch = if with_sink { SINK_BATCH } else { BATCH };
        group.throughput(Throughput::Elements(batch));
        group.bench_function(BenchmarkId::new(label, batch), |b| {
            b.iter_custom(|iterations| {
                let mut total = Duration::ZERO;
                for _ in 0..iterations {
                    let target = exporter.spool().next_seq() + batch;
                    let start = Instant::now();
                    for n in 0..batch {
                        sender.send(request_event(n));
                    }
                    wait_until("spooling", || exporter.spool().next_seq() >= target);
                    if with_sink {
                        wait_until("file delivery", || {
                            exporter.status().iter().all(|status| status.pending == 0)
                        });
                    }
                    total += start.elapsed();
                }
                total
            });
        });
        assert_eq!(
            sender.dropped(),
            0,
            "the queue overflowed during the benchmark"
        );
        drop(sender);
        runtime.block_on(exporter.shutdown(Duration::from_secs(5)));
    }

    group.throughput(Throughput::Elements(BATCH));
    let dir = tempfile::tempdir().expect("temporary directory");
    let file = std::fs::File::create(dir.path().join("baseline.jsonl")).expect("baseline file");
    let mut writer = std::io::BufWriter::with_capacity(1 << 20, file);
    group.bench_function(
        BenchmarkId::new("baseline_serialize_and_write", BATCH),
        |b| {
            b.iter(|| {
                for n in 0..BATCH {
                    serde_json::to_writer(&mut writer, &request_event(n)).expect("serializes");
                    writer.write_all(b"\n").expect("written");
                }
                writer.flush().expect("flushed");
            });
        },
    );
    group.finish();
}

fn main() {
    let mut criterion = Criterion::default().configure_from_args();
    spool_throughput(&mut criterion);
    criterion.final_summary();
}
