//! Counters and HDR histograms shared by every connection of a run, process CPU and memory
//! from /proc, and the summary rows (printed as a table and written as JSON).

use std::sync::atomic::AtomicBool;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering;
use std::sync::Mutex;
use std::time::Instant;

use hdrhistogram::Histogram;
use raftchat_tests::procstat::cpu_secs;
use raftchat_tests::procstat::rss_bytes;
use serde::Serialize;

/// Latencies are recorded in microseconds, up to a minute.
fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("constant, valid histogram bounds")
}

pub struct Stats {
    start: Instant,
    measuring: AtomicBool,
    acked: AtomicU64,
    delivered: AtomicU64,
    errors: AtomicU64,
    ack: Mutex<Histogram<u64>>,
    e2e: Mutex<Histogram<u64>>,
    /// Error frames by code, and `timeout` / `closed` for sends without an answer.
    error_codes: Mutex<std::collections::BTreeMap<String, u64>>,
}

impl Stats {
    pub fn new() -> Self {
        Stats {
            start: Instant::now(),
            measuring: AtomicBool::new(false),
            acked: AtomicU64::new(0),
            delivered: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            ack: Mutex::new(histogram()),
            e2e: Mutex::new(histogram()),
            error_codes: Mutex::new(Default::default()),
        }
    }

    /// Microseconds since the run started: the clock every message carries.
    pub fn now_micros(&self) -> u64 {
        self.start.elapsed().as_micros() as u64
    }

    /// Starts a measured window: counters and histograms from zero.
    pub fn begin(&self) {
        self.acked.store(0, Ordering::Relaxed);
        self.delivered.store(0, Ordering::Relaxed);
        self.errors.store(0, Ordering::Relaxed);
        lock(&self.ack).reset();
        lock(&self.e2e).reset();
        lock(&self.error_codes).clear();
        self.measuring.store(true, Ordering::Relaxed);
    }

    pub fn end(&self) {
        self.measuring.store(false, Ordering::Relaxed);
    }

    /// A send that was intended at `t0` (microseconds) was acknowledged now.
    pub fn acked(&self, t0: u64) {
        if self.measuring.load(Ordering::Relaxed) {
            self.acked.fetch_add(1, Ordering::Relaxed);
            let _ = lock(&self.ack).record(self.now_micros().saturating_sub(t0).max(1));
        }
    }

    /// A message sent at `t0` reached one of its recipients now.
    pub fn delivered(&self, t0: u64) {
        if self.measuring.load(Ordering::Relaxed) {
            self.delivered.fetch_add(1, Ordering::Relaxed);
            let _ = lock(&self.e2e).record(self.now_micros().saturating_sub(t0).max(1));
        }
    }

    pub fn error(&self, code: &str) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        *lock(&self.error_codes).entry(code.to_string()).or_default() += 1;
    }

    pub fn acked_count(&self) -> u64 {
        self.acked.load(Ordering::Relaxed)
    }

    pub fn delivered_count(&self) -> u64 {
        self.delivered.load(Ordering::Relaxed)
    }

    /// The window's figures.
    pub fn row(&self, scenario: &str, phase: String, secs: f64, cpu: Option<f64>, rss: Option<u64>) -> Row {
        let ack = lock(&self.ack).clone();
        let e2e = lock(&self.e2e).clone();
        let ms = |h: &Histogram<u64>, q: f64| (!h.is_empty()).then(|| h.value_at_quantile(q) as f64 / 1000.0);
        let acked = self.acked_count();
        Row {
            scenario: scenario.to_string(),
            phase,
            secs,
            acked_per_sec: acked as f64 / secs,
            ack_p50_ms: ms(&ack, 0.5),
            ack_p99_ms: ms(&ack, 0.99),
            ack_p999_ms: ms(&ack, 0.999),
            delivered_per_sec: self.delivered_count() as f64 / secs,
            e2e_p50_ms: ms(&e2e, 0.5),
            e2e_p99_ms: ms(&e2e, 0.99),
            e2e_p999_ms: ms(&e2e, 0.999),
            errors: self.errors.load(Ordering::Relaxed),
            error_codes: lock(&self.error_codes).clone(),
            server_cpu_secs: cpu,
            server_cpu_us_per_message: cpu.filter(|_| acked > 0).map(|c| c * 1e6 / acked as f64),
            server_rss_bytes: rss,
            extra: serde_json::Value::Null,
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// One measured window.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Row {
    pub scenario: String,
    pub phase: String,
    pub secs: f64,
    pub acked_per_sec: f64,
    pub ack_p50_ms: Option<f64>,
    pub ack_p99_ms: Option<f64>,
    pub ack_p999_ms: Option<f64>,
    pub delivered_per_sec: f64,
    pub e2e_p50_ms: Option<f64>,
    pub e2e_p99_ms: Option<f64>,
    pub e2e_p999_ms: Option<f64>,
    pub errors: u64,
    pub error_codes: std::collections::BTreeMap<String, u64>,
    pub server_cpu_secs: Option<f64>,
    pub server_cpu_us_per_message: Option<f64>,
    pub server_rss_bytes: Option<u64>,
    /// Scenario-specific figures (connections, memory per connection, setup rate, ...).
    pub extra: serde_json::Value,
}

pub fn print_table(rows: &[Row]) {
    let f = |v: Option<f64>| v.map_or("-".to_string(), |x| format!("{x:.2}"));
    println!(
        "{:<12} {:<22} {:>10} {:>8} {:>8} {:>8} {:>11} {:>8} {:>8} {:>8} {:>8} {:>7}",
        "scenario",
        "phase",
        "acked/s",
        "ack p50",
        "ack p99",
        "p999",
        "delivered/s",
        "e2e p50",
        "e2e p99",
        "p999",
        "cpu us/m",
        "errors"
    );
    for r in rows {
        println!(
            "{:<12} {:<22} {:>10.0} {:>8} {:>8} {:>8} {:>11.0} {:>8} {:>8} {:>8} {:>8} {:>7}",
            r.scenario,
            r.phase,
            r.acked_per_sec,
            f(r.ack_p50_ms),
            f(r.ack_p99_ms),
            f(r.ack_p999_ms),
            r.delivered_per_sec,
            f(r.e2e_p50_ms),
            f(r.e2e_p99_ms),
            f(r.e2e_p999_ms),
            f(r.server_cpu_us_per_message),
            r.errors
        );
        if !r.error_codes.is_empty() {
            println!("{:<12} errors: {:?}", "", r.error_codes);
        }
        if !r.extra.is_null() {
            println!("{:<12} {}", "", r.extra);
        }
    }
    println!("(latencies in ms; cpu us/m: server CPU microseconds per acknowledged message, all nodes)");
}

/// The node processes when the generator started the cluster itself.
#[derive(Clone, Default)]
pub struct Procs(pub Vec<u32>);

impl Procs {
    pub fn cpu(&self) -> Option<f64> {
        (!self.0.is_empty()).then(|| self.0.iter().map(|p| cpu_secs(*p)).sum())
    }

    pub fn rss(&self) -> Option<u64> {
        (!self.0.is_empty()).then(|| self.0.iter().map(|p| rss_bytes(*p)).sum())
    }
}
