//! Code shared by the workloads: peak RSS of this process, medians, running a measurement
//! in a child process, and the result table / JSON summary.

use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;

use anyhow::{bail, Context};
use serde::de::DeserializeOwned;
use serde::Serialize;

/// Peak resident set size of this process in bytes (`VmHWM` of `/proc/self/status`), or 0
/// where that file does not exist.
pub fn peak_rss_bytes() -> u64 {
    let Ok(status) = std::fs::read_to_string("/proc/self/status") else {
        return 0;
    };
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// Epoch latency from a pipeline's event log: per epoch, from its close to the last commit of
/// its round (over the tables' rows); returns (p50 ms, p99 ms, epochs).
pub fn epoch_latency(log: &[tidewater::event_log::LogRow]) -> anyhow::Result<(f64, f64, u64)> {
    let mut per_epoch: std::collections::BTreeMap<u64, (i64, i64)> = Default::default();
    for r in log {
        let e = per_epoch
            .entry(r.epoch)
            .or_insert((r.epoch_closed_at, r.committed_at));
        e.0 = e.0.min(r.epoch_closed_at);
        e.1 = e.1.max(r.committed_at);
    }
    let mut hist = hdrhistogram::Histogram::<u64>::new(3)?;
    for (closed, committed) in per_epoch.values() {
        hist.record(((committed - closed).max(0) as u64).max(1))?;
    }
    Ok((
        hist.value_at_quantile(0.5) as f64 / 1000.0,
        hist.value_at_quantile(0.99) as f64 / 1000.0,
        per_epoch.len() as u64,
    ))
}

/// Linux reports process CPU times in `/proc/<pid>/stat` in clock ticks of `USER_HZ`, which
/// is 100 on every Linux ABI.
const USER_HZ: f64 = 100.0;

/// CPU seconds (user + system, all threads) a process used so far: `utime + stime` of
/// `/proc/<pid>/stat` (`None`: this process), or 0 where that file cannot be read. Resolution:
/// 10 ms.
pub fn cpu_seconds(pid: Option<u32>) -> f64 {
    let path = match pid {
        Some(p) => format!("/proc/{p}/stat"),
        None => "/proc/self/stat".to_string(),
    };
    std::fs::read_to_string(path)
        .ok()
        .and_then(|t| parse_stat_cpu_ticks(&t))
        .map_or(0.0, |ticks| ticks as f64 / USER_HZ)
}

/// `utime + stime` (fields 14 and 15) of a `/proc/<pid>/stat` line. The command name (field
/// 2, in parentheses) may hold spaces, so fields are counted after its closing parenthesis.
fn parse_stat_cpu_ticks(stat: &str) -> Option<u64> {
    let after = &stat[stat.rfind(')')? + 1..];
    let mut fields = after.split_whitespace().skip(11); // field 3 (state) is index 0
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// The median of `values` (the mean of the two middle values for an even count; 0 when
/// empty).
pub fn median(values: &[f64]) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// Prints `report` as one JSON line on stdout: the protocol of `run-one` children.
pub fn print_report<T: Serialize>(report: &T) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string(report)?);
    Ok(())
}

/// Re-executes this binary with `args` (a `run-one` command), waits for it, and parses the
/// last JSON line it printed on stdout. Its stderr is passed through; a non-zero exit fails.
pub fn run_child<T: DeserializeOwned>(args: &[String]) -> anyhow::Result<T> {
    let exe = std::env::current_exe().context("cannot find the benchmark binary")?;
    let out = Command::new(&exe)
        .args(args)
        .stderr(std::process::Stdio::inherit())
        .output()
        .with_context(|| format!("cannot run {}", exe.display()))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        bail!(
            "`{} {}` failed ({}); stdout:\n{stdout}",
            exe.display(),
            args.join(" "),
            out.status
        );
    }
    let line = stdout
        .lines()
        .rev()
        .find(|l| l.trim_start().starts_with('{'))
        .with_context(|| {
            format!(
                "`{}` printed no JSON report; stdout:\n{stdout}",
                args.join(" ")
            )
        })?;
    serde_json::from_str(line).with_context(|| format!("bad report line: {line}"))
}

/// Size of a file in bytes (0 if it does not exist).
pub fn file_size(path: &Path) -> u64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

/// Formats an integer with `,` thousands separators: `1234567` → `1,234,567`.
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Bytes as MiB with one decimal.
pub fn mib(bytes: u64) -> String {
    format!("{:.1}", bytes as f64 / (1024.0 * 1024.0))
}

/// A plain-text table with a header row, right-aligned except for the first column.
pub struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with these column titles.
    pub fn new(header: &[&str]) -> Self {
        Table {
            header: header.iter().map(|s| s.to_string()).collect(),
            rows: Vec::new(),
        }
    }

    /// Appends a row (one cell per column).
    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    /// Renders the table (a header, a rule, the rows), newline-terminated.
    pub fn render(&self) -> String {
        let cols = self.header.len();
        let mut width = vec![0usize; cols];
        for r in std::iter::once(&self.header).chain(&self.rows) {
            for (i, c) in r.iter().enumerate().take(cols) {
                width[i] = width[i].max(c.chars().count());
            }
        }
        let mut out = String::new();
        let line = |out: &mut String, r: &[String]| {
            for (i, w) in width.iter().enumerate() {
                let c = r.get(i).map(String::as_str).unwrap_or("");
                if i == 0 {
                    let _ = write!(out, "{c:<w$}");
                } else {
                    let _ = write!(out, "  {c:>w$}");
                }
            }
            out.push('\n');
        };
        line(&mut out, &self.header);
        let total: usize = width.iter().sum::<usize>() + 2 * (cols.saturating_sub(1));
        out.push_str(&"-".repeat(total));
        out.push('\n');
        for r in &self.rows {
            line(&mut out, r);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians_and_formatting() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        assert_eq!(median(&[]), 0.0);
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1_000), "1,000");
        assert_eq!(thousands(1_234_567), "1,234,567");
        let mut t = Table::new(&["name", "n"]);
        t.row(vec!["a".into(), "10".into()]);
        assert_eq!(t.render(), "name   n\n--------\na     10\n");
    }

    #[test]
    fn cpu_ticks_are_parsed() {
        let line = "4242 (a (b) c) S 1 2 3 4 5 6 7 8 9 10 123 45 0 0 20 0 1 0";
        assert_eq!(parse_stat_cpu_ticks(line), Some(168));
        assert_eq!(parse_stat_cpu_ticks("nonsense"), None);
        if Path::new("/proc/self/stat").exists() {
            let mut x = 0u64;
            for i in 0..20_000_000u64 {
                x = x.wrapping_mul(31).wrapping_add(i);
            }
            assert!(x != 1 && cpu_seconds(None) >= 0.0);
        }
    }

    #[test]
    fn peak_rss_is_read() {
        if Path::new("/proc/self/status").exists() {
            assert!(peak_rss_bytes() > 0);
        }
    }
}
