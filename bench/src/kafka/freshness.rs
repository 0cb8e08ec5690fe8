//! Freshness: how long after it was produced an event is visible in a committed Delta version.
//!
//! A tidewater child process follows the topic (`run-one tidewater --follow`, not
//! exit-when-idle). A [`Watcher`] thread polls the table's `_delta_log` for the next version
//! file every few milliseconds, notes when it appeared, and reads from its
//! `commitInfo.tidewater.positions` which offsets of every partition that version made visible
//! (the recorded ranges of a partition chain from offset 0, so a version makes visible every
//! offset below its `to`). An event's latency is the time the first version covering its
//! offset appeared minus the time it was handed to the producer (`send`); that includes the
//! producer's linger, the broker, the consumer's fetch wait, the epoch and the commit.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use hdrhistogram::Histogram;
use serde::Serialize;
use serde_json::Value;

/// What the watcher saw.
#[derive(Default)]
pub struct Visibility {
    /// Per partition, `(to, when)` of every version that recorded a range of it, in version
    /// order: offsets `< to` were visible from `when` on.
    pub parts: BTreeMap<i32, Vec<(i64, Instant)>>,
    /// Every version seen: (version, when it appeared, epochs whose positions it recorded).
    pub versions: Vec<(u64, Instant, Vec<u64>)>,
    /// Why the watcher stopped early, if it did.
    pub error: Option<String>,
}

impl Visibility {
    /// The offset below which every offset of `partition` is visible.
    pub fn visible_to(&self, partition: i32) -> i64 {
        self.parts
            .get(&partition)
            .and_then(|v| v.last())
            .map_or(0, |(to, _)| *to)
    }

    /// When `offset` of `partition` became visible.
    pub fn visible_at(&self, partition: i32, offset: i64) -> Option<Instant> {
        let v = self.parts.get(&partition)?;
        v.get(v.partition_point(|(to, _)| *to <= offset))
            .map(|(_, at)| *at)
    }
}

/// A thread that follows a table's Delta log.
pub struct Watcher {
    state: Arc<Mutex<Visibility>>,
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
}

/// The path of a version's JSON commit.
fn version_path(log: &Path, v: u64) -> PathBuf {
    log.join(format!("{v:020}.json"))
}

/// What one commit recorded: its epochs, and `(partition, to)` of every range.
type Recorded = (Vec<u64>, Vec<(i32, i64)>);

/// `(epochs, [(partition, to)])` of one commit's `commitInfo.tidewater.positions`, for the
/// partitions of `topic` read by source `source`.
fn recorded_ranges(text: &str, source: &str, topic: &str) -> anyhow::Result<Recorded> {
    let mut epochs = Vec::new();
    let mut ranges = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let action: Value = serde_json::from_str(line)?;
        let Some(positions) = action["commitInfo"]["tidewater"]["positions"].as_object() else {
            continue;
        };
        for (epoch, sources) in positions {
            epochs.push(epoch.parse().context("epoch")?);
            let Some(parts) = sources[source]["partitions"].as_object() else {
                continue;
            };
            for (name, r) in parts {
                let Some((t, p)) = name.rsplit_once('/') else {
                    continue;
                };
                if t != topic {
                    continue;
                }
                let to = r["to"].as_i64().context("a range without `to`")?;
                ranges.push((p.parse().context("partition")?, to));
            }
        }
    }
    Ok((epochs, ranges))
}

impl Watcher {
    /// Starts following `<table_dir>/_delta_log` (which need not exist yet), polling every
    /// `poll`.
    pub fn start(table_dir: &Path, source: &str, topic: &str, poll: Duration) -> Watcher {
        let state = Arc::new(Mutex::new(Visibility::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let log = table_dir.join("_delta_log");
        let (source, topic) = (source.to_string(), topic.to_string());
        let handle = {
            let (state, stop) = (state.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut next = 0u64;
                let mut failures = 0;
                while !stop.load(Ordering::Relaxed) {
                    let path = version_path(&log, next);
                    let Ok(text) = std::fs::read_to_string(&path) else {
                        std::thread::sleep(poll);
                        continue;
                    };
                    let seen = Instant::now();
                    match recorded_ranges(&text, &source, &topic) {
                        Ok((epochs, ranges)) => {
                            let mut s = state.lock().expect("lock");
                            for (p, to) in ranges {
                                s.parts.entry(p).or_default().push((to, seen));
                            }
                            s.versions.push((next, seen, epochs));
                            next += 1;
                            failures = 0;
                        }
                        // Commit files appear atomically; retry a few times anyway.
                        Err(e) => {
                            failures += 1;
                            if failures > 100 {
                                state.lock().expect("lock").error =
                                    Some(format!("{}: {e}", path.display()));
                                return;
                            }
                            std::thread::sleep(poll);
                        }
                    }
                }
            })
        };
        Watcher {
            state,
            stop,
            handle: Some(handle),
        }
    }

    /// Whether every partition is visible up to (excluding) its offset in `need`; fails if the
    /// watcher stopped on an error.
    pub fn all_visible(&self, need: &BTreeMap<i32, i64>) -> anyhow::Result<bool> {
        let s = self.state.lock().expect("lock");
        if let Some(e) = &s.error {
            bail!("watching the Delta log: {e}");
        }
        Ok(need.iter().all(|(p, end)| s.visible_to(*p) >= *end))
    }

    /// Stops the thread and returns what it saw.
    pub fn finish(mut self) -> Visibility {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
        std::mem::take(&mut *self.state.lock().expect("lock"))
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// A child process stopped by its pid when dropped.
pub struct ChildGuard {
    child: Option<Child>,
    stderr: PathBuf,
}

impl ChildGuard {
    /// Starts `run-one tidewater --follow` on `pipeline`, stderr into `stderr`.
    pub fn follow(pipeline: &Path, workers: usize, stderr: &Path) -> anyhow::Result<ChildGuard> {
        let exe = std::env::current_exe().context("cannot find the benchmark binary")?;
        let child = Command::new(exe)
            .args(["run-one", "tidewater", "--follow", "--workers"])
            .arg(workers.to_string())
            .arg("--pipeline")
            .arg(pipeline)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(stderr)?)
            .spawn()
            .context("cannot start tidewater")?;
        Ok(ChildGuard {
            child: Some(child),
            stderr: stderr.to_path_buf(),
        })
    }

    /// The child's pid.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Fails if the child has exited (with what it wrote to stderr).
    pub fn check_running(&mut self) -> anyhow::Result<()> {
        if let Some(c) = self.child.as_mut() {
            if let Some(status) = c.try_wait()? {
                self.child = None;
                bail!(
                    "tidewater exited early ({status}):\n{}",
                    std::fs::read_to_string(&self.stderr).unwrap_or_default()
                );
            }
        }
        Ok(())
    }

    /// Stops the child by its pid (SIGKILL: tidewater is crash-safe; what was committed is
    /// what counts) and waits for it.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Latency percentiles, milliseconds.
#[derive(Clone, Debug, Serialize)]
pub struct Percentiles {
    /// Events measured.
    pub count: u64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
    pub mean_ms: f64,
    pub min_ms: f64,
}

/// Percentiles of `latencies` (an HDR histogram of microseconds, 3 significant digits).
pub fn percentiles(latencies: impl Iterator<Item = Duration>) -> anyhow::Result<Percentiles> {
    let mut h = Histogram::<u64>::new_with_bounds(1, 3_600_000_000, 3)?;
    for d in latencies {
        h.saturating_record((d.as_micros() as u64).max(1));
    }
    let ms = |us: u64| us as f64 / 1000.0;
    Ok(Percentiles {
        count: h.len(),
        p50_ms: ms(h.value_at_quantile(0.50)),
        p90_ms: ms(h.value_at_quantile(0.90)),
        p99_ms: ms(h.value_at_quantile(0.99)),
        p999_ms: ms(h.value_at_quantile(0.999)),
        max_ms: ms(h.max()),
        mean_ms: h.mean() / 1000.0,
        min_ms: ms(h.min()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_are_read_from_commit_info() {
        let text = concat!(
            r#"{"add":{"path":"x.parquet"}}"#,
            "\n",
            r#"{"commitInfo":{"tidewater":{"positions":{"3":{"cdc":{"kind":"kafka","partitions":{"t/0":{"from":0,"to":5},"t/2":{"from":1,"to":9},"u/0":{"from":0,"to":1}},"records":13}},"4":{"cdc":{"kind":"kafka","partitions":{"t/0":{"from":5,"to":7}}}}}}}}"#,
            "\n"
        );
        let (epochs, ranges) = recorded_ranges(text, "cdc", "t").unwrap();
        assert_eq!(epochs, vec![3, 4]);
        assert_eq!(ranges, vec![(0, 5), (2, 9), (0, 7)]);
    }

    #[test]
    fn visibility_and_latencies() {
        let t0 = Instant::now();
        let at = |ms| t0 + Duration::from_millis(ms);
        let mut v = Visibility::default();
        v.parts
            .insert(0, vec![(3, at(100)), (3, at(200)), (10, at(300))]);
        assert_eq!(v.visible_at(0, 0), Some(at(100)));
        assert_eq!(v.visible_at(0, 2), Some(at(100)));
        assert_eq!(v.visible_at(0, 3), Some(at(300)));
        assert_eq!(v.visible_at(0, 10), None);
        assert_eq!(v.visible_at(1, 0), None);
        assert_eq!(v.visible_to(0), 10);
        let p = percentiles([Duration::from_millis(50), Duration::from_millis(20)].into_iter())
            .unwrap();
        assert_eq!(p.count, 2);
        assert!((p.max_ms - 50.0).abs() < 0.1, "{p:?}");
        assert!((p.min_ms - 20.0).abs() < 0.1, "{p:?}");
    }
}
