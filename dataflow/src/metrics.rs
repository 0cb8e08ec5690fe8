//! Process-wide counters of a run, the fatal-error slot, and the progress line.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Counters shared by the workers of one process.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Records cut into epochs by the cutters of this process.
    pub records_cut: AtomicU64,
    /// Records (lines) parsed by this process's workers.
    pub records_parsed: AtomicU64,
    /// Records quarantined by this process's workers.
    pub quarantined: AtomicU64,
    /// Live rows held by this process's table sinks.
    pub table_rows: AtomicI64,
    /// Epochs committed (only the committing process counts).
    pub epochs_committed: AtomicU64,
    /// The last committed epoch.
    pub last_epoch: AtomicU64,
    /// Total time spent committing, in µs.
    pub commit_micros: AtomicU64,
    /// Total time this process's workers spent saving operator state, in µs.
    pub checkpoint_micros: AtomicU64,
    failed: AtomicBool,
    error: Mutex<Option<String>>,
}

impl Metrics {
    /// Records a fatal error; the run stops with it (the first one wins).
    pub fn fail(&self, message: String) {
        let mut e = self.error.lock().expect("metrics lock");
        if e.is_none() {
            tracing::error!(error = %message, "pipeline failed");
            *e = Some(message);
        }
        self.failed.store(true, Ordering::SeqCst);
    }

    /// Whether a fatal error was recorded.
    pub fn failed(&self) -> bool {
        self.failed.load(Ordering::SeqCst)
    }

    /// The fatal error, if any.
    pub fn error(&self) -> Option<String> {
        self.error.lock().expect("metrics lock").clone()
    }
}

/// Prints a progress line (on a terminal) or periodic log lines (otherwise) until `stop`
/// (then unpark the thread, so that it ends without waiting for its next tick).
pub fn spawn_progress(metrics: Arc<Metrics>, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let tty = std::io::stderr().is_terminal();
        let bar = tty.then(|| {
            let b = indicatif::ProgressBar::new_spinner();
            b.enable_steady_tick(Duration::from_millis(200));
            b
        });
        let started = Instant::now();
        let mut last_log = Instant::now();
        while !stop.load(Ordering::SeqCst) {
            std::thread::park_timeout(Duration::from_millis(100));
            if stop.load(Ordering::SeqCst) {
                break;
            }
            let parsed = metrics.records_parsed.load(Ordering::Relaxed);
            let secs = started.elapsed().as_secs_f64().max(1e-3);
            let line = format!(
                "epochs committed {} (last {}) | events {} ({:.0}/s) | rows in tables {} | quarantined {}",
                metrics.epochs_committed.load(Ordering::Relaxed),
                metrics.last_epoch.load(Ordering::Relaxed),
                parsed,
                parsed as f64 / secs,
                metrics.table_rows.load(Ordering::Relaxed),
                metrics.quarantined.load(Ordering::Relaxed),
            );
            if let Some(b) = &bar {
                b.set_message(line);
            } else if last_log.elapsed() >= Duration::from_secs(5) {
                tracing::info!(progress = %line);
                last_log = Instant::now();
            }
        }
        if let Some(b) = bar {
            b.finish_and_clear();
        }
    })
}
