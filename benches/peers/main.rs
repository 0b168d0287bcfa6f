//! Peer comparison: creditmux (over TCP, TLS, native and framed QUIC)
//! against raw TCP, raw TLS (the baseline of creditmux over TLS) and the
//! multiplexers a user would pick instead (yamux 0.13, h2 0.4 with default
//! and with large windows, quinn 0.11), through the same scenarios, in one
//! process and one run. Each side of every measurement runs on its own
//! thread with a current-thread tokio runtime (mt: the server side on a
//! multi-thread one), under a timeout that records "timeout" instead of
//! hanging.
//!
//! ```text
//! cargo bench --bench peers                 # full: 3 runs, full sizes, 60 s timeouts
//! cargo bench --bench peers -- --quick      # smoke: 1 run, small sizes, 5 s timeouts, every scenario within a 60 s budget
//!   --scenario bulk,rr   only these scenarios (bulk many mt rr rr-under-load open
//!                        idle sessions hol delay)
//!   --impl creditmux,tcp only these implementations (tcp creditmux creditmux-fixed
//!                        yamux h2 h2-large quinn tls creditmux-tls creditmux-quic
//!                        creditmux-quic-framed)
//!   --runs N             runs per measurement (medians are reported)
//!   --timeout SECS       per-measurement timeout
//!   --budget SECS        skip what is left once this much time has passed
//! ```
//!
//! Scenarios: bulk (1 stream client to server); many (100 streams × 8 MiB
//! and 1,000 streams × 1 MiB, each in 64 KiB and in 256 KiB writes, a
//! table each, with the spread between the slowest and the fastest
//! stream); mt (the server side on a multi-thread runtime serving 64
//! sessions × 16 streams at once, 1 request/response and 15 bulk streams
//! each, for a fixed time); rr (64-byte request/response on one stream);
//! rr-under-load (the same while bulk streams load the session); open
//! (stream open rate); idle and sessions (memory per idle stream and per
//! idle session); hol (a stream never read next to one that moves bytes);
//! delay (through a userspace delay path).
//!
//! Output: one JSON line per scenario × implementation × variant (medians
//! and every run's value; rr-under-load runs creditmux with and without an
//! urgent request/response stream) as each scenario finishes, then a
//! markdown table per scenario (many: per configuration) with ratios
//! against raw TCP, of creditmux over TLS against raw TLS, and of
//! creditmux against each peer; with more than one run, the throughput
//! columns (bulk, many, mt) also show their swing across runs, (max −
//! min) ÷ median. Progress goes to stderr. Raw TCP and raw TLS
//! (tokio-rustls with the rustls configs of creditmux over TLS) use one
//! connection per stream.
//!
//! CPU figures (rr: µs per round trip; bulk, many and mt: ms per GiB
//! moved) are the CPU time of both sides' threads together over the
//! measured part, from the kernel's per-thread scheduler statistics
//! (cpu.rs; mt: every thread of the process, since a multi-thread
//! runtime's workers are not known threads); the loopback kernel work done
//! in their system calls is included.
//!
//! Memory figures (idle: bytes per stream; sessions: KiB per session) are
//! the growth of the process's heap, counted by the global allocator below,
//! both sides together; sessions also reports the growth of the resident
//! memory (VmRSS, after glibc's `malloc_trim` has returned free heap pages,
//! so that what earlier measurements freed does not hide it). sessions
//! holds 2,000 sessions (quick: 200) of 4 streams each at once: raw TCP and
//! raw TLS need 8 file descriptors a session (16,000 for the full run).
//! many's 1,000 streams are 1,000 connections for them (2,000
//! descriptors), mt's 1,024 streams 1,024 connections (2,048). Where `ulimit
//! -n` is lower they are skipped, saying so.

mod cpu;
// The delay proxy, shared with the tests.
#[path = "../../tests/support/delay.rs"]
mod delay;
mod h2_peer;
mod harness;
mod path;
mod quinn_peer;
mod report;
mod scenarios;
mod transports;
mod yamux_peer;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};

use harness::Failure;
use report::{Row, ScenarioResult, Series, Table};
use scenarios::{Ctx, Sizes, Variant};
use transports::{Kind, Limits};

// ----- memory accounting for the idle scenario --------------------------------

/// The system allocator, counting the bytes currently allocated.
struct Counting;

static HEAP: AtomicI64 = AtomicI64::new(0);

// SAFETY: every call is forwarded unchanged to the system allocator; the
// counter is bookkeeping only.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller upholds `alloc`'s contract.
        let ptr = unsafe { System.alloc(layout) };
        if !ptr.is_null() {
            HEAP.fetch_add(layout.size() as i64, Ordering::Relaxed);
        }
        ptr
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller upholds `alloc_zeroed`'s contract.
        let ptr = unsafe { System.alloc_zeroed(layout) };
        if !ptr.is_null() {
            HEAP.fetch_add(layout.size() as i64, Ordering::Relaxed);
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller upholds `dealloc`'s contract.
        unsafe { System.dealloc(ptr, layout) };
        HEAP.fetch_sub(layout.size() as i64, Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the caller upholds `realloc`'s contract.
        let new = unsafe { System.realloc(ptr, layout, new_size) };
        if !new.is_null() {
            HEAP.fetch_add(new_size as i64 - layout.size() as i64, Ordering::Relaxed);
        }
        new
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Heap bytes currently allocated by the whole process.
pub fn heap_bytes() -> i64 {
    HEAP.load(Ordering::Relaxed)
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
unsafe extern "C" {
    /// glibc: returns free heap memory of every arena to the system.
    fn malloc_trim(pad: usize) -> std::ffi::c_int;
}

/// Returns the free memory the allocator holds to the system where that
/// is possible (glibc), so that the resident memory measured next does
/// not count on pages that earlier measurements freed.
pub fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases memory the allocator holds free;
    // it takes no pointer and is thread-safe.
    unsafe {
        malloc_trim(0);
    }
}

// ----- options ---------------------------------------------------------------

struct Options {
    quick: bool,
    runs: usize,
    timeout: Duration,
    budget: Option<Duration>,
    scenarios: Vec<&'static str>,
    impls: Vec<Kind>,
    sizes: Sizes,
}

fn usage() -> ! {
    eprintln!(
        "usage: cargo bench --bench peers -- [--quick] [--runs N] [--timeout SECS] [--budget SECS]\n\
         \x20      [--scenario {}] [--impl {}]\n\
         (comma-separated lists; flags may repeat)",
        scenarios::NAMES.join("|"),
        Kind::ALL.map(Kind::name).join("|"),
    );
    std::process::exit(2)
}

fn parse_options() -> Options {
    let mut args = std::env::args().skip(1);
    let mut quick = false;
    let mut runs = None;
    let mut timeout = None;
    let mut budget = None;
    let mut scenario_filter: Vec<String> = Vec::new();
    let mut impl_filter: Vec<String> = Vec::new();
    let number = |value: Option<String>, flag: &str| -> u64 {
        value.and_then(|v| v.parse().ok()).unwrap_or_else(|| {
            eprintln!("{flag} needs a number");
            usage()
        })
    };
    while let Some(arg) = args.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) => (f.to_string(), Some(v.to_string())),
            None => (arg.clone(), None),
        };
        let mut value = || inline.clone().or_else(|| args.next());
        match flag.as_str() {
            "--quick" => quick = true,
            "--runs" => runs = Some(number(value(), "--runs").max(1) as usize),
            "--timeout" => timeout = Some(Duration::from_secs(number(value(), "--timeout").max(1))),
            "--budget" => budget = Some(Duration::from_secs(number(value(), "--budget"))),
            "--scenario" => scenario_filter.extend(
                value()
                    .unwrap_or_else(|| usage())
                    .split(',')
                    .map(str::to_string),
            ),
            "--impl" => impl_filter.extend(
                value()
                    .unwrap_or_else(|| usage())
                    .split(',')
                    .map(str::to_string),
            ),
            "--help" | "-h" => usage(),
            // `cargo bench` passes --bench; libtest-style filters are ignored.
            "--bench" => {}
            other => eprintln!("ignoring argument {other:?}"),
        }
    }
    let scenarios: Vec<&'static str> = if scenario_filter.is_empty() {
        scenarios::NAMES.to_vec()
    } else {
        for name in &scenario_filter {
            if !scenarios::NAMES.contains(&name.as_str()) {
                eprintln!("unknown scenario {name:?}");
                usage();
            }
        }
        scenarios::NAMES
            .into_iter()
            .filter(|n| scenario_filter.iter().any(|f| f == n))
            .collect()
    };
    let impls: Vec<Kind> = if impl_filter.is_empty() {
        Kind::ALL.to_vec()
    } else {
        for name in &impl_filter {
            if !Kind::ALL.iter().any(|k| k.name() == name) {
                eprintln!("unknown implementation {name:?}");
                usage();
            }
        }
        Kind::ALL
            .into_iter()
            .filter(|k| impl_filter.iter().any(|f| f == k.name()))
            .collect()
    };
    Options {
        quick,
        runs: runs.unwrap_or(if quick { 1 } else { 3 }),
        timeout: timeout.unwrap_or(Duration::from_secs(if quick { 5 } else { 60 })),
        budget: budget.or(quick.then_some(Duration::from_secs(60))),
        scenarios,
        impls,
        sizes: if quick { Sizes::QUICK } else { Sizes::FULL },
    }
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines().find_map(|l| {
                l.strip_prefix("model name")
                    .map(|v| v.trim_start_matches([' ', '\t', ':']).to_string())
            })
        })
        .unwrap_or_else(|| "unknown".into())
}

// ----- running -----------------------------------------------------------------

fn main() {
    let opts = parse_options();
    let started = Instant::now();
    let limits = Limits {
        max_streams: (opts.sizes.idle_streams as u32 + 24).max(1024),
        window_cap: None,
    };
    eprintln!(
        "peers: {} mode, {} run(s), timeout {:?} per measurement{}",
        if opts.quick { "quick" } else { "full" },
        opts.runs,
        opts.timeout,
        opts.budget
            .map_or(String::new(), |b| format!(", budget {b:?}")),
    );

    let mut results = Vec::new();
    for &name in &opts.scenarios {
        let result = run_scenario(name, &opts, limits, started);
        for line in report::json_lines(&result, opts.runs, opts.quick) {
            println!("{line}");
        }
        results.push(result);
    }

    println!();
    println!(
        "## creditmux peer comparison ({} mode, {} run(s), medians)\n",
        if opts.quick { "quick" } else { "full" },
        opts.runs
    );
    println!(
        "Machine: {} cores, {}. Each side on its own thread and current-thread runtime (mt: \
         the server side on a multi-thread runtime); \
         timeout {:?} per measurement; total {:.1} s. ↑ higher is better, ↓ lower is better. \
         Raw TCP and raw TLS use one connection per stream. Memory is the growth of the process's heap \
         (counting allocator; sessions also resident memory), both sides together, each stream \
         held in a parked task per side; kernel socket buffers are not included.{}\n",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        cpu_model(),
        opts.timeout,
        started.elapsed().as_secs_f64(),
        if opts.runs > 1 {
            " Swing: (max − min) ÷ median of a metric's runs."
        } else {
            ""
        }
    );
    for result in &results {
        print!("{}", report::markdown(result));
    }
    // Threads left behind by a hung measurement must not keep the process.
    std::process::exit(0);
}

/// One implementation's part of a scenario, in one variant, while it runs.
struct Entry {
    kind: Kind,
    variant: Variant,
    scenario: scenarios::Scenario,
    /// One per metric, in the order of the pairs' metrics.
    series: Vec<Series>,
    /// Per pair: the failure after which its later runs are skipped.
    failed: Vec<Option<Failure>>,
}

/// Runs every selected implementation through scenario `name`, `opts.runs`
/// times, the implementations taking turns within each run.
fn run_scenario(
    name: &'static str,
    opts: &Options,
    limits: Limits,
    started: Instant,
) -> ScenarioResult {
    let mut entries: Vec<Entry> = opts
        .impls
        .iter()
        .flat_map(|&kind| {
            scenarios::variants(name, kind)
                .iter()
                .map(move |&variant| (kind, variant))
        })
        .map(|(kind, variant)| {
            let ctx = Ctx {
                kind,
                variant,
                limits,
                timeout: opts.timeout,
            };
            let scenario = scenarios::scenario(name, ctx, opts.sizes);
            let series = scenario
                .pairs
                .iter()
                .flat_map(|p| p.metrics.iter())
                .map(|&metric| Series {
                    metric,
                    runs: Vec::new(),
                })
                .collect();
            let failed = vec![None; scenario.pairs.len()];
            Entry {
                kind,
                variant,
                scenario,
                series,
                failed,
            }
        })
        .collect();
    for run in 0..opts.runs {
        for entry in &mut entries {
            let mut index = 0;
            for (p, pair) in entry.scenario.pairs.iter().enumerate() {
                let outcome = if let Some(f) = &entry.failed[p] {
                    Err(Failure::Skipped(format!("after {f} in an earlier run")))
                } else if opts.budget.is_some_and(|b| started.elapsed() > b) {
                    Err(Failure::Skipped("time budget spent".into()))
                } else {
                    let t = Instant::now();
                    let outcome = (pair.run)();
                    let shown = match &outcome {
                        Ok(values) => values
                            .iter()
                            .map(|v| match v {
                                Ok(v) => format!("{v:.1}"),
                                Err(f) => format!("({f})"),
                            })
                            .collect::<Vec<_>>()
                            .join(" "),
                        Err(f) => f.to_string(),
                    };
                    eprintln!(
                        "  {name} / {}{} / run {}/{}: {shown} ({:.1} s)",
                        entry.kind.name(),
                        entry.variant.label_suffix(),
                        run + 1,
                        opts.runs,
                        t.elapsed().as_secs_f64()
                    );
                    if let Err(f @ (Failure::Timeout | Failure::Error(_))) = &outcome {
                        entry.failed[p] = Some(f.clone());
                    }
                    outcome
                };
                for j in 0..pair.metrics.len() {
                    let value = outcome
                        .as_ref()
                        .map_err(Clone::clone)
                        .and_then(|v| v[j].clone());
                    entry.series[index + j].runs.push(value);
                }
                index += pair.metrics.len();
            }
        }
    }
    let tables = entries
        .first()
        .map_or_else(Vec::new, |entry| tables(&entry.scenario));
    let mut title = String::new();
    let rows = entries
        .into_iter()
        .map(|mut entry| {
            if let Some(derived) = &entry.scenario.derived {
                let runs = (0..opts.runs)
                    .map(|run| {
                        let inputs: Result<Vec<f64>, Failure> = derived
                            .inputs
                            .iter()
                            .map(|&i| entry.series[i].runs[run].clone())
                            .collect();
                        inputs.map(|v| (derived.compute)(&v))
                    })
                    .collect();
                entry.series.push(Series {
                    metric: derived.metric,
                    runs,
                });
            }
            title = entry.scenario.title;
            Row {
                kind: entry.kind,
                variant: entry.variant,
                series: entry.series,
            }
        })
        .collect();
    ScenarioResult {
        name,
        title,
        rows,
        tables,
    }
}

/// The markdown tables of `scenario`: first one of the metrics of every
/// pair without a table of its own, and the derived metric, if there are
/// any; then one per pair with a heading of its own.
fn tables(scenario: &scenarios::Scenario) -> Vec<Table> {
    let mut main = Vec::new();
    let mut own = Vec::new();
    let mut index = 0;
    for pair in &scenario.pairs {
        let indexes: Vec<usize> = (index..index + pair.metrics.len()).collect();
        index += pair.metrics.len();
        match &pair.table {
            Some(heading) => own.push(Table {
                heading: Some(heading.clone()),
                metrics: indexes,
            }),
            None => main.extend(indexes),
        }
    }
    if scenario.derived.is_some() {
        main.push(index);
    }
    let main = (!main.is_empty()).then_some(Table {
        heading: None,
        metrics: main,
    });
    main.into_iter().chain(own).collect()
}
