//! Shared helpers of the end-to-end tests: run the `tidewater` binary, read Delta tables back
//! with two independent readers (Python/pyarrow replaying `_delta_log`, and delta-rs), and
//! compute expected tables with the plain reference model.

pub mod kafka;
pub mod python_reader;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use anyhow::{bail, Context};
use deltalake::arrow::json::ArrayWriter;
use deltalake::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde_json::{Map, Value};
use tidewater_connectors::generator::ReferenceState;

/// A row as JSON.
pub type JsonRow = Map<String, Value>;

/// The `tidewater` binary built beside this test binary (`scripts/test` builds it first).
pub fn tidewater_bin() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let dir = exe
        .parent()
        .and_then(|d| d.parent())
        .expect("target/<profile>");
    let bin = dir.join("tidewater");
    assert!(
        bin.exists(),
        "{} is missing: build it first (scripts/test does: cargo build --bin tidewater)",
        bin.display()
    );
    bin
}

/// Runs `tidewater ARGS` and returns its output (not asserting success).
pub fn tidewater(args: &[&str]) -> Output {
    Command::new(tidewater_bin())
        .args(args)
        .env("TIDEWATER_LOG", "warn")
        .output()
        .expect("run tidewater")
}

/// Runs `tidewater ARGS` and fails with its stderr unless it exits 0.
pub fn tidewater_ok(args: &[&str]) -> Output {
    let out = tidewater(args);
    assert!(
        out.status.success(),
        "tidewater {:?} failed ({}):\n{}",
        args,
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Writes a pipeline file for one CDC table `customers` keyed by `customer_id`, sequenced by
/// `__lsn`, fed by a files source at `input`; `extra` is added to `[pipeline]`.
pub fn bank_pipeline(dir: &Path, input: &Path, lakehouse: &Path, extra: &str) -> PathBuf {
    let text = format!(
        r#"[pipeline]
name = "bank"
lakehouse = "{}"
commit_interval_ms = 1000
{extra}

[[source]]
name = "customers_cdc"
kind = "files"
path = "{}"
format = "debezium-json"

[[table]]
name = "customers"
from = "customers_cdc"
keys = ["customer_id"]
sequence_by = "__lsn"
scd = 1
"#,
        lakehouse.display(),
        input.display()
    );
    let path = dir.join("bank.toml");
    std::fs::write(&path, text).expect("write pipeline");
    path
}

/// Sorts rows by their canonical JSON text (keys sorted).
pub fn canonical(rows: &[JsonRow]) -> Vec<String> {
    let mut out: Vec<String> = rows
        .iter()
        .map(|r| {
            let sorted: std::collections::BTreeMap<_, _> = r.iter().collect();
            serde_json::to_string(&sorted).expect("json")
        })
        .collect();
    out.sort();
    out
}

/// The rows of a reference state.
pub fn reference_rows(state: &ReferenceState) -> Vec<JsonRow> {
    state.rows.values().cloned().collect()
}

/// Reads a Delta table with delta-rs at a version (default newest) into JSON rows.
pub fn deltalake_rows(table_dir: &Path, version: Option<i64>) -> anyhow::Result<Vec<JsonRow>> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let url = url::Url::from_directory_path(table_dir.canonicalize()?)
        .map_err(|_| anyhow::anyhow!("bad table path {}", table_dir.display()))?;
    let mut table = rt.block_on(deltalake::open_table(url))?;
    if let Some(v) = version {
        rt.block_on(table.load_version(v as _))?;
    }
    let mut rows = Vec::new();
    for uri in table.get_file_uris()? {
        let path = url::Url::parse(&uri)
            .ok()
            .and_then(|u| u.to_file_path().ok())
            .unwrap_or_else(|| PathBuf::from(&uri));
        let file =
            std::fs::File::open(&path).with_context(|| format!("open {}", path.display()))?;
        for batch in ParquetRecordBatchReaderBuilder::try_new(file)?.build()? {
            let batch = batch?;
            let mut w = ArrayWriter::new(Vec::new());
            w.write(&batch)?;
            w.finish()?;
            let text = w.into_inner();
            if text.is_empty() {
                continue;
            }
            let Value::Array(items) = serde_json::from_slice(&text)? else {
                bail!("arrow json writer returned no array");
            };
            for item in items {
                let Value::Object(mut m) = item else {
                    bail!("row is not an object")
                };
                // The arrow JSON writer omits nulls; make them explicit like the other readers.
                for f in batch.schema().fields() {
                    m.entry(f.name().clone()).or_insert(Value::Null);
                }
                rows.push(m);
            }
        }
    }
    Ok(rows)
}

/// Splits a file into its lines (without newlines, ignoring a final empty piece).
pub fn file_lines(path: &Path) -> Vec<Vec<u8>> {
    let bytes = std::fs::read(path).expect("read input");
    let mut lines: Vec<Vec<u8>> = bytes.split(|b| *b == b'\n').map(|l| l.to_vec()).collect();
    if lines.last().is_some_and(|l| l.is_empty()) {
        lines.pop();
    }
    lines
}

/// Runs `tidewater ARGS` with extra environment variables, in `cwd` (so that a deliberate
/// abort leaves any core file in a temporary directory), and returns its output.
pub fn tidewater_env(args: &[&str], envs: &[(&str, &str)], cwd: &Path) -> Output {
    let mut cmd = Command::new(tidewater_bin());
    cmd.args(args).env("TIDEWATER_LOG", "warn").current_dir(cwd);
    for (k, v) in envs {
        cmd.env(k, v);
    }
    cmd.output().expect("run tidewater")
}

/// The recorded cut of a table's commits: epoch → source → `{kind, ranges, records}`, from the
/// `commitInfo.tidewater.positions` of every commit (an epoch folded into a later commit
/// appears under its own number).
pub fn recorded_positions(
    table_dir: &Path,
) -> anyhow::Result<std::collections::BTreeMap<u64, Map<String, Value>>> {
    let mut out = std::collections::BTreeMap::new();
    for c in python_reader::py_read_log(table_dir)? {
        let Some(p) = c.commit_info["tidewater"]["positions"].as_object() else {
            continue;
        };
        for (e, sources) in p {
            let e: u64 = e.parse()?;
            let sources = sources
                .as_object()
                .context("positions of an epoch")?
                .clone();
            if let Some(old) = out.insert(e, sources.clone()) {
                if old != sources {
                    bail!("epoch {e} recorded twice with different positions");
                }
            }
        }
    }
    Ok(out)
}

/// The lines a file source read in the epochs of `positions` up to and including `epoch`, in
/// reading order (the byte ranges of every epoch, read from the files).
pub fn lines_read_up_to(
    positions: &std::collections::BTreeMap<u64, Map<String, Value>>,
    epoch: u64,
) -> Vec<Vec<u8>> {
    let mut lines = Vec::new();
    for sources in positions.range(..=epoch).map(|(_, s)| s) {
        for pos in sources.values() {
            for r in pos["ranges"].as_array().expect("ranges") {
                let bytes = std::fs::read(r["path"].as_str().expect("a file range")).expect("read");
                let (s, e) = (r["start"].as_u64().unwrap(), r["end"].as_u64().unwrap());
                let piece = &bytes[s as usize..e as usize];
                lines.extend(
                    piece
                        .split(|b| *b == b'\n')
                        .filter(|l| !l.is_empty())
                        .map(|l| l.to_vec()),
                );
            }
        }
    }
    lines
}

/// Writes a pipeline file `<name>.toml` named `name` with one CDC table `accounts` keyed by
/// `account_id`, sequenced by `__lsn`, fed by the source `accounts_cdc` whose keys other than
/// `name` are `source` (TOML lines, e.g. `kind = "files"\npath = "..."`); `extra` is added to
/// `[pipeline]`.
pub fn accounts_pipeline(
    dir: &Path,
    name: &str,
    lakehouse: &Path,
    source: &str,
    extra: &str,
) -> PathBuf {
    let text = format!(
        r#"[pipeline]
name = "{name}"
lakehouse = "{}"
commit_interval_ms = 1000
{extra}

[[source]]
name = "accounts_cdc"
{source}

[[table]]
name = "accounts"
from = "accounts_cdc"
keys = ["account_id"]
sequence_by = "__lsn"
"#,
        lakehouse.display()
    );
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(&path, text).expect("write pipeline");
    path
}

/// The sum of the integer column `column` over `rows` (a missing or non-integer value fails).
pub fn column_sum(rows: &[JsonRow], column: &str) -> i64 {
    rows.iter()
        .map(|r| {
            r.get(column)
                .and_then(Value::as_i64)
                .unwrap_or_else(|| panic!("row without integer {column}: {r:?}"))
        })
        .sum()
}

/// The expected rows of a table from a generator's ground truth (key → (LSN, row JSON)): the
/// row's columns plus the sequence column `__lsn`.
pub fn ground_truth_rows(
    truth: &std::collections::BTreeMap<u64, (i64, String)>,
) -> anyhow::Result<Vec<JsonRow>> {
    truth
        .values()
        .map(|(lsn, json)| {
            let Value::Object(mut row) = serde_json::from_str(json)? else {
                bail!("ground truth row is not an object: {json}");
            };
            row.insert("__lsn".into(), Value::from(*lsn));
            Ok(row)
        })
        .collect()
}

/// Runs `args` with `TIDEWATER_FAILPOINT=spec` and checks that it aborted there.
pub fn abort_at(args: &[&str], spec: &str, cwd: &std::path::Path) {
    use std::os::unix::process::ExitStatusExt;
    let out = tidewater_env(args, &[("TIDEWATER_FAILPOINT", spec)], cwd);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.signal(),
        Some(6),
        "{spec}: expected an abort ({}): {stderr}",
        out.status
    );
    assert!(
        stderr.contains(&format!("failpoint {spec} reached")),
        "{stderr}"
    );
}

/// `GET path` over HTTP/1.1 from `addr` (`host:port`): (status code, body). A plain client on
/// a TCP stream, so that the tests need no HTTP library; `None` when nothing answers.
pub fn http_get(addr: &str, path: &str) -> Option<(u16, String)> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(std::time::Duration::from_secs(20)))
        .ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).ok()?;
    let text = String::from_utf8_lossy(&raw).to_string();
    let (head, body) = text.split_once("\r\n\r\n")?;
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        // Chunked: size line, data, CRLF … up to the 0-size chunk.
        let mut out = String::new();
        let mut rest = body;
        while let Some((size, after)) = rest.split_once("\r\n") {
            let n = usize::from_str_radix(size.trim(), 16).ok()?;
            if n == 0 {
                break;
            }
            out.push_str(after.get(..n)?);
            rest = after.get(n + 2..)?;
        }
        out
    } else {
        body.to_string()
    };
    Some((status, body))
}

/// A child process (a running pipeline or demo) ended, by its pid, however the test ends.
pub struct Running(pub std::process::Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `tidewater run PIPELINE --workers N` (no `--exit-when-idle`: it runs until dropped).
pub fn run_in_background(pipeline: &Path, workers: usize) -> Running {
    Running(
        std::process::Command::new(tidewater_bin())
            .args([
                "run",
                pipeline.to_str().unwrap(),
                "--workers",
                &workers.to_string(),
            ])
            .env("TIDEWATER_LOG", "warn")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start tidewater run"),
    )
}

/// Writes `lines` as the new file `name` of the watched directory `dir/sub` (written aside,
/// then renamed in, so that the source never sees half a file).
pub fn drop_lines(dir: &Path, sub: &str, name: &str, lines: &[String]) {
    let tmp = dir.join(format!("{sub}-{name}.tmp"));
    std::fs::write(&tmp, lines.join("\n") + "\n").unwrap();
    std::fs::rename(&tmp, dir.join(sub).join(name)).unwrap();
}

/// The newest epoch manifest of `lakehouse` in which `table`'s Delta version is above
/// `after` (`-1`: any), waiting up to 60 s; panics if the run exits meanwhile.
pub fn wait_for_version(
    lakehouse: &Path,
    table: &str,
    after: i64,
    run: &mut Running,
) -> serde_json::Value {
    let started = std::time::Instant::now();
    loop {
        let newest = std::fs::read_dir(lakehouse.join("_tidewater/epochs"))
            .into_iter()
            .flatten()
            .filter_map(|e| {
                e.ok()?
                    .file_name()
                    .to_str()?
                    .strip_suffix(".json")?
                    .parse::<u64>()
                    .ok()
            })
            .max();
        if let Some(e) = newest {
            let path = lakehouse.join(format!("_tidewater/epochs/{e}.json"));
            let m: serde_json::Value =
                serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
            if m["tables"][table].as_i64().is_some_and(|v| v > after) {
                return m;
            }
        }
        if let Ok(Some(status)) = run.0.try_wait() {
            panic!("tidewater run exited ({status})");
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(60),
            "no new epoch of `{table}` in 60 s"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}
