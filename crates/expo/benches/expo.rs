//! Exposition parser benchmark: our `expo` against `prometheus-parse` and `nom-openmetrics`, in
//! one run, on the real Synapse page and on a 16-worker version of it generated here (every
//! series repeated 16× with a `worker="synapse-worker-NN"` label). Criterion reports MB/s
//! (10^6 bytes); at the end the run prints a Markdown table of medians and ratios, read back
//! from Criterion's estimates, plus the heap allocations of one allow-listed parse, counted by
//! the global allocator below. Run: `cargo bench -p mxwarden-expo --bench expo`. Results: `BENCHMARKS.md`.

use criterion::{BenchmarkId, Criterion, SamplingMode, Throughput, criterion_group};
use mxwarden_expo::{self as expo, Event, FamilyFilter};
use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// Counts allocations (and bytes) so one parse's heap traffic can be reported. The crate forbids
/// `unsafe`; a global allocator cannot be written without it, and it lives only in this bench.
struct Counting;

static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);
static BYTES: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is forwarded unchanged to the system allocator; only counters are added.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        BYTES.fetch_add(layout.size(), Ordering::Relaxed);
        // SAFETY: same layout contract as our caller's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `System.alloc` with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        BYTES.fetch_add(new_size, Ordering::Relaxed);
        // SAFETY: forwarded unchanged.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Allow-list 1: the families the shipped Synapse preset rules read (`src/preset`), plus file
/// descriptors and the build info: 10 families, 18 samples on the real page.
const PRESET_FAMILIES: [&str; 10] = [
    "process_resident_memory_bytes",
    "process_cpu_seconds_total",
    "synapse_threadpool_working_threads",
    "synapse_threadpool_max_threads",
    "synapse_event_processing_positions",
    "synapse_event_persisted_position",
    "synapse_event_processing_last_ts",
    "process_open_fds",
    "process_max_fds",
    "synapse_build_info",
];

/// Allow-list 2: as a rule set that also watches request latency would read: the request-time
/// histogram (374 of the page's 2,439 samples, 13 buckets per label set) and nine small families.
const LATENCY_FAMILIES: [&str; 10] = [
    "process_resident_memory_bytes",
    "process_cpu_seconds_total",
    "process_open_fds",
    "process_max_fds",
    "synapse_threadpool_working_threads",
    "synapse_threadpool_max_threads",
    "synapse_event_processing_positions",
    "synapse_event_persisted_position",
    "synapse_event_processing_last_ts",
    "synapse_http_server_response_time_seconds",
];

fn real_page() -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/data/synapse-metrics-sample.txt");
    std::fs::read_to_string(path).expect("tests/data/synapse-metrics-sample.txt is readable")
}

/// The page with every family's samples repeated for 16 workers, as a merged scrape of a
/// 16-worker deployment would look: metadata once, then worker 00's series, worker 01's, …
fn sixteen_workers(page: &str) -> String {
    let mut out = String::with_capacity(page.len() * 18);
    let mut block: Vec<&str> = Vec::new();
    let flush = |block: &mut Vec<&str>, out: &mut String| {
        for w in 0..16 {
            for line in block.iter() {
                let worker = format!("worker=\"synapse-worker-{w:02}\"");
                match line.rfind('}') {
                    Some(close) => {
                        out.push_str(&line[..close]);
                        out.push(',');
                        out.push_str(&worker);
                        out.push_str(&line[close..]);
                    }
                    None => {
                        let space = line.find(' ').expect("a sample line has a value");
                        out.push_str(&line[..space]);
                        out.push('{');
                        out.push_str(&worker);
                        out.push('}');
                        out.push_str(&line[space..]);
                    }
                }
                out.push('\n');
            }
        }
        block.clear();
    };
    for line in page.lines() {
        if line.starts_with('#') || line.trim().is_empty() {
            flush(&mut block, &mut out);
            out.push_str(line);
            out.push('\n');
        } else {
            block.push(line);
        }
    }
    flush(&mut block, &mut out);
    out
}

fn expo_visit(text: &str) -> usize {
    let mut n = 0;
    let mut sum = 0.0;
    expo::parse(text, |e| {
        if let Event::Sample(s) = e {
            n += s.labels.len();
            sum += s.value;
        }
    })
    .expect("the page parses");
    black_box(sum);
    n
}

fn expo_owned(text: &str, filter: Option<&FamilyFilter>) -> usize {
    expo::parse_samples(text, filter).expect("the page parses").samples.len()
}

fn prometheus_parse(text: &str) -> usize {
    let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).expect("parses");
    scrape.samples.len()
}

fn nom_openmetrics(text: &str) -> usize {
    let (_, families) = nom_openmetrics::parser::prometheus(text).expect("parses");
    families.iter().map(|f| f.samples.len()).sum()
}

const CASES: [&str; 6] = [
    "expo-visit-all",
    "expo-owned-all",
    "expo-owned-preset10",
    "expo-owned-latency10",
    "prometheus-parse",
    "nom-openmetrics",
];

struct Filters {
    preset: FamilyFilter,
    latency: FamilyFilter,
}

impl Filters {
    fn new() -> Self {
        Self { preset: FamilyFilter::new(PRESET_FAMILIES), latency: FamilyFilter::new(LATENCY_FAMILIES) }
    }
}

fn run(case: &str, text: &str, filters: &Filters) -> usize {
    match case {
        "expo-visit-all" => expo_visit(text),
        "expo-owned-all" => expo_owned(text, None),
        "expo-owned-preset10" => expo_owned(text, Some(&filters.preset)),
        "expo-owned-latency10" => expo_owned(text, Some(&filters.latency)),
        "prometheus-parse" => prometheus_parse(text),
        _ => nom_openmetrics(text),
    }
}

fn inputs() -> [(&'static str, String); 2] {
    let real = real_page();
    let x16 = sixteen_workers(&real);
    [("synapse-real", real), ("synapse-x16", x16)]
}

fn bench(c: &mut Criterion) {
    let filters = Filters::new();
    for (input, text) in inputs() {
        let mut group = c.benchmark_group(input);
        group.throughput(Throughput::BytesDecimal(text.len() as u64));
        if text.len() > 1_000_000 {
            group.sample_size(20).measurement_time(Duration::from_secs(8)).sampling_mode(SamplingMode::Flat);
        }
        for case in CASES {
            group.bench_with_input(BenchmarkId::from_parameter(case), text.as_str(), |b, t| {
                b.iter(|| run(case, black_box(t), &filters))
            });
        }
        group.finish();
    }
}

/// Allocations and bytes requested by one call.
fn allocations(f: impl FnOnce() -> usize) -> (usize, usize, usize) {
    let (a0, b0) = (ALLOCATIONS.load(Ordering::Relaxed), BYTES.load(Ordering::Relaxed));
    let kept = f();
    (kept, ALLOCATIONS.load(Ordering::Relaxed) - a0, BYTES.load(Ordering::Relaxed) - b0)
}

fn report_allocations() {
    let filters = Filters::new();
    println!("\n## Heap allocations per parse (counting global allocator)\n");
    println!("| input | parser | samples kept | allocations | bytes allocated |");
    println!("|---|---|---:|---:|---:|");
    for (input, text) in inputs() {
        for case in CASES {
            let (kept, n, bytes) = allocations(|| run(case, &text, &filters));
            println!("| {input} | {case} | {kept} | {n} | {bytes} |");
        }
    }
    println!("\nAllow-listed parses, split: what owning the kept samples requires (each one's name, its");
    println!("label vector, each non-empty label name and value), and the rest (result-vector growth, the");
    println!("kept families' metadata, the parser's reused label buffer):\n");
    for (input, text) in inputs() {
        for (case, filter) in [("expo-owned-preset10", &filters.preset), ("expo-owned-latency10", &filters.latency)] {
            let parsed = expo::parse_samples(&text, Some(filter)).expect("parses");
            let owned: usize = parsed
                .samples
                .iter()
                .map(|s| {
                    let strings = s.labels.iter().map(|(k, v)| usize::from(!k.is_empty()) + usize::from(!v.is_empty()));
                    1 + usize::from(!s.labels.is_empty()) + strings.sum::<usize>()
                })
                .sum();
            let (_, total, _) = allocations(|| run(case, &text, &filters));
            println!(
                "- {input} {case}: {total} = {owned} for {} kept samples + {} other ({} families' metadata)",
                parsed.samples.len(),
                total - owned,
                parsed.families.len()
            );
        }
    }
}

/// Reads Criterion's median estimates back and prints the comparison table.
fn report_medians() {
    let dir = std::env::var_os("CRITERION_HOME").map(PathBuf::from).unwrap_or_else(|| {
        std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../target")))
            .join("criterion")
    });
    println!("\n## Medians (Criterion estimates, this run)\n");
    println!("| input | parser | median time/parse | MB/s | × fastest competitor |");
    println!("|---|---|---:|---:|---:|");
    for (input, text) in inputs() {
        let median_ns = |case: &str| -> Option<f64> {
            let path = dir.join(input).join(case).join("new/estimates.json");
            let json: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path).ok()?).ok()?;
            json["median"]["point_estimate"].as_f64()
        };
        let mbs = |ns: f64| text.len() as f64 / ns * 1e3;
        let best_rival =
            ["prometheus-parse", "nom-openmetrics"].iter().filter_map(|c| median_ns(c)).map(mbs).fold(0.0, f64::max);
        for case in CASES {
            match median_ns(case) {
                Some(ns) => println!(
                    "| {input} ({:.1} MB) | {case} | {:.3} ms | {:.1} | {:.1} |",
                    text.len() as f64 / 1e6,
                    ns / 1e6,
                    mbs(ns),
                    mbs(ns) / best_rival
                ),
                None => println!("| {input} | {case} | (no estimate in {}) | | |", dir.display()),
            }
        }
    }
}

criterion_group!(benches, bench);

fn main() {
    // Sanity: every parser sees the same samples (the rivals fold histogram lines differently).
    let filters = Filters::new();
    for (input, text) in inputs() {
        let counts: Vec<String> = CASES.iter().map(|c| format!("{c}={}", run(c, &text, &filters))).collect();
        println!("{input}: {} bytes; results: {}", text.len(), counts.join(", "));
    }
    report_allocations();
    benches();
    let criterion = Criterion::default().configure_from_args();
    criterion.final_summary();
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == "--bench") && !args.iter().any(|a| a == "--test") {
        report_medians();
    }
}
