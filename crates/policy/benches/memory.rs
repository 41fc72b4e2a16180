//! Heap memory of a compiled [`Policy`]: bytes retained after loading, bytes
//! per row, and the peak during loading, for the 110,000-row and
//! 1,000,000-row benchmark lists.
//!
//! Run with `cargo bench -p webwarden-policy --bench memory`. The lists are
//! the ones the `matcher` benchmark uses (see `lists/mod.rs`), with and
//! without their regex and IP rows. Figures count the bytes requested from
//! the allocator, so they leave out the allocator's own overhead.

// Implementing `GlobalAlloc` requires `unsafe`. A counting global allocator
// sees every heap byte the crate allocates, from inside the process.
#![allow(unsafe_code)]

mod lists;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use webwarden_policy::{NaiveMatcher, PolicyBuilder, SourceOptions};

use lists::CsvList;

/// Source name of the benchmark lists; the `.csv` ending selects the CSV format.
const LIST_NAME: &str = "bench.csv";

/// Heap bytes currently allocated.
static LIVE_BYTES: AtomicUsize = AtomicUsize::new(0);

/// Maximum of [`LIVE_BYTES`] since the last reset.
static PEAK_BYTES: AtomicUsize = AtomicUsize::new(0);

/// The system allocator, counting live and peak bytes.
struct CountingAllocator;

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

fn record_alloc(size: usize) {
    let live = LIVE_BYTES.fetch_add(size, Ordering::Relaxed) + size;
    PEAK_BYTES.fetch_max(live, Ordering::Relaxed);
}

fn record_dealloc(size: usize) {
    LIVE_BYTES.fetch_sub(size, Ordering::Relaxed);
}

// SAFETY: every method forwards to `System` with the caller's arguments
// unchanged, so `System` upholds the `GlobalAlloc` contract. The counters
// only read sizes and never touch the memory.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller upholds `alloc`'s contract for `layout`.
        let ptr = unsafe { System.alloc(layout) };
        if !ptr.is_null() {
            record_alloc(layout.size());
        }
        ptr
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller upholds `alloc_zeroed`'s contract for `layout`.
        let ptr = unsafe { System.alloc_zeroed(layout) };
        if !ptr.is_null() {
            record_alloc(layout.size());
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` was allocated by this allocator, which is `System`,
        // with `layout`.
        unsafe { System.dealloc(ptr, layout) };
        record_dealloc(layout.size());
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: `ptr` was allocated by `System` with `layout`, and the
        // caller upholds `realloc`'s contract for `new_size`.
        let new_ptr = unsafe { System.realloc(ptr, layout, new_size) };
        if !new_ptr.is_null() {
            if new_size >= layout.size() {
                record_alloc(new_size - layout.size());
            } else {
                record_dealloc(layout.size() - new_size);
            }
        }
        new_ptr
    }
}

/// Memory figures for one list.
struct Measurement {
    label: String,
    rows: usize,
    input_bytes: usize,
    /// Heap bytes freed when the built matcher is dropped.
    retained_bytes: usize,
    /// Peak heap bytes during loading, above what was live before (the
    /// input text and the benchmark's own data).
    peak_load_bytes: usize,
    /// Bytes of the literal table, as the policy reports them.
    literal_table_bytes: Option<usize>,
    load_seconds: f64,
}

/// Loads `list` into a policy and measures it. The input text is dropped
/// before the retained bytes are taken.
fn measure_policy(label: &str, list: CsvList) -> Measurement {
    let rows = list.rows;
    let input_bytes = list.text.len();
    let before = LIVE_BYTES.load(Ordering::Relaxed);
    PEAK_BYTES.store(before, Ordering::Relaxed);
    let start = Instant::now();
    let mut builder = PolicyBuilder::new();
    builder.add_text(LIST_NAME, &list.text, &SourceOptions::default());
    let policy = builder
        .build()
        .expect("the benchmark list compiles into a policy");
    let load_seconds = start.elapsed().as_secs_f64();
    let peak_load_bytes = PEAK_BYTES.load(Ordering::Relaxed) - before;
    drop(list);

    let literal_table_bytes = policy.literal_table_bytes();
    let with_policy = LIVE_BYTES.load(Ordering::Relaxed);
    drop(policy);
    let retained_bytes = with_policy - LIVE_BYTES.load(Ordering::Relaxed);
    Measurement {
        label: label.to_owned(),
        rows,
        input_bytes,
        retained_bytes,
        peak_load_bytes,
        literal_table_bytes: Some(literal_table_bytes),
        load_seconds,
    }
}

/// Loads `list` into the naive scan and measures it the same way.
fn measure_naive(label: &str, list: CsvList) -> Measurement {
    let rows = list.rows;
    let input_bytes = list.text.len();
    let before = LIVE_BYTES.load(Ordering::Relaxed);
    PEAK_BYTES.store(before, Ordering::Relaxed);
    let start = Instant::now();
    let mut naive = NaiveMatcher::new();
    naive.add_text(LIST_NAME, &list.text, &SourceOptions::default());
    let load_seconds = start.elapsed().as_secs_f64();
    let peak_load_bytes = PEAK_BYTES.load(Ordering::Relaxed) - before;
    drop(list);

    let with_naive = LIVE_BYTES.load(Ordering::Relaxed);
    drop(naive);
    let retained_bytes = with_naive - LIVE_BYTES.load(Ordering::Relaxed);
    Measurement {
        label: label.to_owned(),
        rows,
        input_bytes,
        retained_bytes,
        peak_load_bytes,
        literal_table_bytes: None,
        load_seconds,
    }
}

fn mebibytes(bytes: usize) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

fn print_table(measurements: &[Measurement]) {
    println!(
        "{:<31} {:>9} {:>11} {:>12} {:>9} {:>13} {:>12} {:>8}",
        "list", "rows", "input", "retained", "bytes/row", "peak in load", "literal table", "load s"
    );
    for m in measurements {
        let literal_table = m.literal_table_bytes.map_or("-".to_owned(), mebibytes);
        println!(
            "{:<31} {:>9} {:>11} {:>12} {:>9.1} {:>13} {:>12} {:>8.2}",
            m.label,
            m.rows,
            mebibytes(m.input_bytes),
            mebibytes(m.retained_bytes),
            m.retained_bytes as f64 / m.rows as f64,
            mebibytes(m.peak_load_bytes),
            literal_table,
            m.load_seconds
        );
    }
}

fn main() {
    let (medium_size, large_size) = lists::list_sizes();
    if !lists::is_benchmark_run() {
        println!("smoke test on small lists; run `cargo bench` to measure");
    }
    let medium = lists::medium_domains(medium_size);
    println!("medium list: {}", medium.origin);
    let large = lists::large_domains(large_size);
    println!("large list: {}", large.origin);
    println!("measuring; the naive scan compiles one regex per row and takes a few seconds");

    let mut measurements = Vec::new();
    let cases = [
        ("medium, with regex and IP rows", &medium.domains, true),
        ("medium, literal rows only", &medium.domains, false),
        ("large, with regex and IP rows", &large.domains, true),
        ("large, literal rows only", &large.domains, false),
    ];
    for (label, domains, extra_rows) in cases {
        let list = lists::csv_list(domains, extra_rows);
        measurements.push(measure_policy(label, list));
    }
    let list = lists::csv_list(&medium.domains, true);
    measurements.push(measure_naive("medium, naive scan", list));

    println!();
    print_table(&measurements);
}
