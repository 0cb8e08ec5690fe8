//! DuckDB as a second reference for `cdc-apply` (`--duckdb`): the same final state computed
//! by one SQL query over the same file (`read_ndjson` with declared columns, `QUALIFY
//! row_number() ... = 1`, deletes dropped), through DuckDB's Python package.
//!
//! Python is looked for in this order: `python3` on the `PATH` if it can `import duckdb`;
//! else the virtualenv `$HOME/.cache/tidewater/venv` (DuckDB is pip-installed into it if
//! missing). Without either, DuckDB is skipped with a message.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, Context};
use serde::Deserialize;

use super::baseline::Fingerprint;

/// The script: computes the final table with `QUALIFY row_number() ... = 1`, drops deletes,
/// and prints time, DuckDB version, a fingerprint of the live rows and peak RSS as JSON.
/// The timed part is reading + parsing the file, the window query and materializing the
/// final table (interpreter start-up and `import duckdb` are not timed).
const SCRIPT: &str = r#"
import json, resource, sys, time
import duckdb
path, threads = sys.argv[1], int(sys.argv[2])
con = duckdb.connect()
con.execute(f"SET threads = {threads}")
lit = "'" + path.replace("'", "''") + "'"
# Declared columns, like the baseline's typed struct: sampling-based inference sees only the
# leading snapshot reads, where `before` is always null, and would type it as NULL.
row = ("STRUCT(customer_id BIGINT, name VARCHAR, email VARCHAR, phone VARCHAR, address VARCHAR, "
       "city VARCHAR, country VARCHAR, segment VARCHAR, total_spend DOUBLE, credit_limit DOUBLE, "
       "is_active BOOLEAN, created_at BIGINT, updated_at BIGINT)")
columns = "{op: 'VARCHAR', before: '%s', after: '%s', source: 'STRUCT(lsn BIGINT)'}" % (row, row)
t0 = time.perf_counter()
con.execute(f"""
CREATE TABLE final AS
SELECT * EXCLUDE (op) FROM (
    SELECT coalesce(after.customer_id, before.customer_id) AS customer_id,
           source.lsn AS __lsn, op, after
    FROM read_ndjson({lit}, columns = {columns})
    QUALIFY row_number() OVER (
        PARTITION BY coalesce(after.customer_id, before.customer_id)
        ORDER BY source.lsn DESC, (op = 'd') DESC) = 1
) WHERE op <> 'd'
""")
rows, key_sum, lsn_sum = con.execute(
    "SELECT count(*), coalesce(sum(customer_id), 0)::HUGEINT, coalesce(sum(__lsn), 0)::HUGEINT FROM final"
).fetchone()
elapsed = time.perf_counter() - t0
print(json.dumps({
    "elapsed_s": elapsed,
    "version": duckdb.__version__,
    "fingerprint": {"rows": int(rows), "key_sum": int(key_sum), "lsn_sum": int(lsn_sum)},
    "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
}))
"#;

/// What one DuckDB run reports.
#[derive(Debug, Deserialize)]
pub struct DuckReport {
    /// Wall time of the query (see [`SCRIPT`]).
    pub elapsed_s: f64,
    /// DuckDB version.
    pub version: String,
    /// Summary of the live rows of the result.
    pub fingerprint: Fingerprint,
    /// Peak RSS of the Python process (`ru_maxrss`), interpreter included.
    pub peak_rss_bytes: u64,
}

/// Whether `python` can `import duckdb`.
fn has_duckdb(python: &Path) -> bool {
    Command::new(python)
        .args(["-c", "import duckdb"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Finds a Python with DuckDB (installing DuckDB into the tidewater virtualenv if that
/// exists), or says why there is none.
pub fn find_python() -> Result<PathBuf, String> {
    let system = PathBuf::from("python3");
    if has_duckdb(&system) {
        return Ok(system);
    }
    let Some(home) = std::env::var_os("HOME") else {
        return Err("python3 cannot import duckdb and $HOME is not set".into());
    };
    let venv = PathBuf::from(home).join(".cache/tidewater/venv");
    let python = venv.join("bin/python");
    if !python.exists() {
        return Err(format!(
            "python3 cannot import duckdb and there is no virtualenv at {}",
            venv.display()
        ));
    }
    if !has_duckdb(&python) {
        eprintln!("installing duckdb into {} ...", venv.display());
        let ok = Command::new(venv.join("bin/pip"))
            .args(["install", "--quiet", "duckdb"])
            .status()
            .is_ok_and(|s| s.success());
        if !ok || !has_duckdb(&python) {
            return Err(format!("cannot install duckdb into {}", venv.display()));
        }
    }
    Ok(python)
}

/// Runs the DuckDB query once on `input` with `threads` threads.
pub fn run_once(python: &Path, input: &Path, threads: usize) -> anyhow::Result<DuckReport> {
    let out = Command::new(python)
        .args(["-c", SCRIPT])
        .arg(input)
        .arg(threads.to_string())
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("cannot run {}", python.display()))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        bail!("the DuckDB script failed ({}): {stdout}", out.status);
    }
    let line = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(line).with_context(|| format!("bad DuckDB report: {stdout}"))
}
