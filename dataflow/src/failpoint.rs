//! Crash points for tests: `TIDEWATER_FAILPOINT=<name>:<n>` aborts the process the n-th time `name` is reached.
//!
//! Always compiled in; without the variable a point costs one load of a `OnceLock`. Points:
//! `after_parquet_before_commit`, `between_table_commits`, `after_commit_before_manifest`
//! (committer, `commit.rs`), `mid_epoch` (parse operator, `source.rs`) and `checkpoint_write`
//! (a checkpoint file or manifest written but not yet renamed into place, `checkpoint.rs`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

/// The environment variable naming the armed point.
pub const ENV: &str = "TIDEWATER_FAILPOINT";

/// Every point name (for validation of the variable).
pub const POINTS: [&str; 5] = [
    "after_parquet_before_commit",
    "between_table_commits",
    "after_commit_before_manifest",
    "mid_epoch",
    "checkpoint_write",
];

struct Armed {
    name: String,
    n: u64,
    hits: AtomicU64,
}

fn armed() -> Option<&'static Armed> {
    static ARMED: OnceLock<Option<Armed>> = OnceLock::new();
    ARMED
        .get_or_init(|| {
            let spec = std::env::var(ENV).ok()?;
            match parse(&spec) {
                Ok((name, n)) => Some(Armed {
                    name,
                    n,
                    hits: AtomicU64::new(0),
                }),
                Err(e) => {
                    // A typo must not silently disarm a crash test.
                    eprintln!("{ENV}={spec}: {e}");
                    std::process::exit(2);
                }
            }
        })
        .as_ref()
}

/// Parses `<name>:<n>` (n ≥ 1).
pub fn parse(spec: &str) -> Result<(String, u64), String> {
    let (name, n) = spec
        .rsplit_once(':')
        .ok_or_else(|| "expected <name>:<n>".to_string())?;
    if !POINTS.contains(&name) {
        return Err(format!(
            "unknown failpoint `{name}` (known: {})",
            POINTS.join(", ")
        ));
    }
    let n: u64 = n
        .parse()
        .ok()
        .filter(|n| *n >= 1)
        .ok_or_else(|| format!("`{n}` is not a count ≥ 1"))?;
    Ok((name.to_string(), n))
}

/// Marks that point `name` was reached; aborts the process if it is the armed point and this
/// is its n-th hit.
pub fn hit(name: &str) {
    let Some(a) = armed() else { return };
    if a.name != name {
        return;
    }
    if a.hits.fetch_add(1, Ordering::SeqCst) + 1 == a.n {
        eprintln!("failpoint {name}:{} reached: aborting", a.n);
        std::process::abort();
    }
}

/// Reads the variable now (so that a bad value fails at start, not at the first hit).
pub fn init() {
    let _ = armed();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_name_and_count() {
        assert_eq!(parse("mid_epoch:3"), Ok(("mid_epoch".into(), 3)));
        assert!(parse("mid_epoch:0").is_err());
        assert!(parse("nope:1").unwrap_err().contains("unknown failpoint"));
        assert!(parse("mid_epoch").is_err());
    }
}
