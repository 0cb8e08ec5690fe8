//! Process-wide counters of a run, the fatal-error slot, the progress line, and the
//! Prometheus exposition of `/metrics` ([`Metrics::prometheus_text`]).

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
    /// The event log's counters and the epoch latencies, as Prometheus collectors (the
    /// committing process only).
    pub log: LogMetrics,
    failed: AtomicBool,
    error: Mutex<Option<String>>,
}

/// The per-table counters of the event log (`_event_log`), kept by the committer as it writes
/// each epoch's log rows (and seeded from the event log at start), so that `/metrics` equals
/// the event log; plus the epoch commit latency and the times of the last commit and the last
/// completed operator-state checkpoint.
pub struct LogMetrics {
    registry: prometheus::Registry,
    rows_read: prometheus::IntCounterVec,
    upserted: prometheus::IntCounterVec,
    deleted: prometheus::IntCounterVec,
    stale: prometheus::IntCounterVec,
    quarantined: prometheus::IntCounterVec,
    dropped: prometheus::IntCounterVec,
    late: prometheus::IntCounterVec,
    epochs: prometheus::IntCounter,
    last_epoch: prometheus::IntGauge,
    epoch_latency: prometheus::Histogram,
    freshness: prometheus::Gauge,
    checkpoint_age: prometheus::Gauge,
    events_parsed: prometheus::IntGauge,
    table_rows: prometheus::IntGauge,
    /// µs since the Unix epoch of the last commit round / completed checkpoint (0: none).
    last_commit_at: AtomicI64,
    last_checkpoint_at: AtomicI64,
}

impl std::fmt::Debug for LogMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogMetrics").finish_non_exhaustive()
    }
}

/// One event-log line's counts, as [`LogMetrics::add`] takes them.
#[derive(Clone, Copy, Debug, Default)]
pub struct LogCounts {
    /// Records read.
    pub rows_read: u64,
    /// Keys upserted.
    pub upserted: u64,
    /// Keys deleted.
    pub deleted: u64,
    /// Stale / duplicate records ignored.
    pub stale: u64,
    /// Records quarantined.
    pub quarantined: u64,
    /// Records dropped by expectations.
    pub dropped: u64,
    /// Records sent to `_late`.
    pub late: u64,
}

impl Default for LogMetrics {
    fn default() -> Self {
        use prometheus::{Histogram, HistogramOpts, IntCounterVec, Opts};
        let registry = prometheus::Registry::new();
        let per_table = |name: &str, help: &str| {
            let c = IntCounterVec::new(Opts::new(name, help), &["table"]).expect("valid metric");
            registry
                .register(Box::new(c.clone()))
                .expect("unique metric");
            c
        };
        let rows_read = per_table(
            "tidewater_records_read_total",
            "Records read per table (event log rows_read).",
        );
        let upserted = per_table(
            "tidewater_rows_upserted_total",
            "Keys upserted per table: rows written (event log upserted).",
        );
        let deleted = per_table(
            "tidewater_rows_deleted_total",
            "Keys deleted per table (event log deleted).",
        );
        let stale = per_table(
            "tidewater_stale_ignored_total",
            "Stale, duplicate or superseded records per table (event log stale_ignored).",
        );
        let quarantined = per_table(
            "tidewater_quarantined_total",
            "Records quarantined per table (event log quarantined).",
        );
        let dropped = per_table(
            "tidewater_dropped_total",
            "Records dropped by expectations per table (event log dropped).",
        );
        let late = per_table(
            "tidewater_late_total",
            "Records later than the watermark, sent to _late, per table (event log late).",
        );
        let reg = |c: Box<dyn prometheus::core::Collector>| {
            registry.register(c).expect("unique metric");
        };
        let epochs = prometheus::IntCounter::new(
            "tidewater_epochs_committed_total",
            "Epochs committed by this process in this run.",
        )
        .expect("valid metric");
        reg(Box::new(epochs.clone()));
        let last_epoch =
            prometheus::IntGauge::new("tidewater_last_epoch", "The last committed epoch.")
                .expect("valid metric");
        reg(Box::new(last_epoch.clone()));
        let epoch_latency = Histogram::with_opts(
            HistogramOpts::new(
                "tidewater_epoch_commit_seconds",
                "Per epoch: from the epoch being complete at the committer to its manifest \
                 (tables, event log, manifest written).",
            )
            .buckets(vec![
                0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
            ]),
        )
        .expect("valid metric");
        reg(Box::new(epoch_latency.clone()));
        let freshness = prometheus::Gauge::new(
            "tidewater_freshness_seconds",
            "Seconds since the last epoch was committed (-1: none yet).",
        )
        .expect("valid metric");
        reg(Box::new(freshness.clone()));
        let checkpoint_age = prometheus::Gauge::new(
            "tidewater_checkpoint_age_seconds",
            "Seconds since the last operator-state checkpoint completed (-1: none yet).",
        )
        .expect("valid metric");
        reg(Box::new(checkpoint_age.clone()));
        let events_parsed = prometheus::IntGauge::new(
            "tidewater_events_parsed",
            "Records parsed by this process's workers in this run.",
        )
        .expect("valid metric");
        reg(Box::new(events_parsed.clone()));
        let table_rows = prometheus::IntGauge::new(
            "tidewater_table_rows",
            "Live rows held by this process's table sinks.",
        )
        .expect("valid metric");
        reg(Box::new(table_rows.clone()));
        LogMetrics {
            registry,
            rows_read,
            upserted,
            deleted,
            stale,
            quarantined,
            dropped,
            late,
            epochs,
            last_epoch,
            epoch_latency,
            freshness,
            checkpoint_age,
            events_parsed,
            table_rows,
            last_commit_at: AtomicI64::new(0),
            last_checkpoint_at: AtomicI64::new(0),
        }
    }
}

impl LogMetrics {
    /// Adds one event-log line of `table`.
    pub fn add(&self, table: &str, c: LogCounts) {
        let t = [table];
        self.rows_read.with_label_values(&t).inc_by(c.rows_read);
        self.upserted.with_label_values(&t).inc_by(c.upserted);
        self.deleted.with_label_values(&t).inc_by(c.deleted);
        self.stale.with_label_values(&t).inc_by(c.stale);
        self.quarantined.with_label_values(&t).inc_by(c.quarantined);
        self.dropped.with_label_values(&t).inc_by(c.dropped);
        self.late.with_label_values(&t).inc_by(c.late);
    }

    /// Records a committed epoch: its commit latency and when it was committed (µs since the
    /// Unix epoch).
    pub fn committed(&self, epoch: u64, latency: Duration, at_micros: i64) {
        self.epochs.inc();
        self.last_epoch.set(epoch as i64);
        self.epoch_latency.observe(latency.as_secs_f64());
        self.last_commit_at.store(at_micros, Ordering::Relaxed);
    }

    /// Seeds the last epoch and commit time from the event log (a resumed run).
    pub fn resumed(&self, epoch: u64, at_micros: i64) {
        self.last_epoch.set(epoch as i64);
        self.last_commit_at.store(at_micros, Ordering::Relaxed);
    }

    /// Records a completed operator-state checkpoint, now.
    pub fn checkpointed(&self, at_micros: i64) {
        self.last_checkpoint_at.store(at_micros, Ordering::Relaxed);
    }
}

impl Metrics {
    /// The metrics in the Prometheus text exposition format (version 0.0.4), as of now.
    pub fn prometheus_text(&self, now_micros: i64) -> String {
        let l = &self.log;
        let age = |at: i64| {
            if at == 0 {
                -1.0
            } else {
                (now_micros - at).max(0) as f64 / 1e6
            }
        };
        l.freshness
            .set(age(l.last_commit_at.load(Ordering::Relaxed)));
        l.checkpoint_age
            .set(age(l.last_checkpoint_at.load(Ordering::Relaxed)));
        l.events_parsed
            .set(self.records_parsed.load(Ordering::Relaxed) as i64);
        l.table_rows.set(self.table_rows.load(Ordering::Relaxed));
        let mut out = String::new();
        let encoder = prometheus::TextEncoder::new();
        if let Err(e) = encoder.encode_utf8(&l.registry.gather(), &mut out) {
            out.push_str(&format!("# encoding failed: {e}\n"));
        }
        let failed = self.failed() as i64;
        out.push_str(
            "# HELP tidewater_failed 1 when the run has stopped with an error.\n\
             # TYPE tidewater_failed gauge\n",
        );
        out.push_str(&format!("tidewater_failed {failed}\n"));
        out
    }
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
