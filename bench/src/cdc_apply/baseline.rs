//! The baseline of `cdc-apply`: what a competent programmer would write by hand for this one
//! table, single-threaded, without any engine.
//!
//! It reads the file line by line, parses every line with serde_json into a typed, borrowed
//! [`Envelope`] of the bank columns, and applies SCD type 1 to a
//! `HashMap<customer_id, (lsn, deleted, row)>`: the highest LSN wins, at an equal LSN a
//! delete wins, and a delete leaves a tombstone so that an older upsert arriving later does
//! not resurrect the row. (The generator's only equal-LSN events are exact duplicates, so
//! the reference model's tie-break between two different upserts is not needed here.)

use std::borrow::Cow;
use std::collections::HashMap;
use std::io::BufRead;
use std::path::Path;
use std::time::Instant;

use anyhow::Context;
use serde::{Deserialize, Serialize};

use crate::common::{peak_rss_bytes, print_report};

/// A `customers` row as it appears in `before` / `after`, borrowing its strings from the
/// line where possible.
#[derive(Debug, Deserialize)]
pub struct BankRow<'a> {
    /// The key.
    pub customer_id: i64,
    /// Full name.
    #[serde(borrow)]
    pub name: Cow<'a, str>,
    /// E-mail address.
    #[serde(borrow)]
    pub email: Option<Cow<'a, str>>,
    /// Phone number.
    #[serde(borrow)]
    pub phone: Option<Cow<'a, str>>,
    /// Street address.
    #[serde(borrow)]
    pub address: Option<Cow<'a, str>>,
    /// City.
    #[serde(borrow)]
    pub city: Option<Cow<'a, str>>,
    /// Country code.
    #[serde(borrow)]
    pub country: Option<Cow<'a, str>>,
    /// Customer segment.
    #[serde(borrow)]
    pub segment: Option<Cow<'a, str>>,
    /// Total spend.
    pub total_spend: Option<f64>,
    /// Credit limit.
    pub credit_limit: Option<f64>,
    /// Active flag.
    pub is_active: bool,
    /// Creation time (epoch ms).
    pub created_at: i64,
    /// Last update time (epoch ms).
    pub updated_at: i64,
}

/// The `source` block; only the LSN is used.
#[derive(Debug, Deserialize)]
pub struct Source {
    /// The PostgreSQL log sequence number: the sequence of APPLY CHANGES.
    pub lsn: i64,
}

/// A Debezium change event (fields other than these are skipped).
#[derive(Debug, Deserialize)]
pub struct Envelope<'a> {
    /// `c`, `u`, `r` or `d`.
    #[serde(borrow)]
    pub op: Cow<'a, str>,
    /// The row before the change (set for deletes).
    #[serde(borrow)]
    pub before: Option<BankRow<'a>>,
    /// The row after the change (null for deletes).
    #[serde(borrow)]
    pub after: Option<BankRow<'a>>,
    /// Source metadata.
    pub source: Source,
}

/// An owned row of the final table.
#[derive(Clone, Debug, PartialEq)]
pub struct OwnedRow {
    /// Full name.
    pub name: String,
    /// E-mail address.
    pub email: Option<String>,
    /// Phone number.
    pub phone: Option<String>,
    /// Street address.
    pub address: Option<String>,
    /// City.
    pub city: Option<String>,
    /// Country code.
    pub country: Option<String>,
    /// Customer segment.
    pub segment: Option<String>,
    /// Total spend.
    pub total_spend: Option<f64>,
    /// Credit limit.
    pub credit_limit: Option<f64>,
    /// Active flag.
    pub is_active: bool,
    /// Creation time (epoch ms).
    pub created_at: i64,
    /// Last update time (epoch ms).
    pub updated_at: i64,
}

impl From<&BankRow<'_>> for OwnedRow {
    fn from(r: &BankRow<'_>) -> Self {
        let s = |v: &Option<Cow<'_, str>>| v.as_deref().map(str::to_owned);
        OwnedRow {
            name: r.name.to_string(),
            email: s(&r.email),
            phone: s(&r.phone),
            address: s(&r.address),
            city: s(&r.city),
            country: s(&r.country),
            segment: s(&r.segment),
            total_spend: r.total_spend,
            credit_limit: r.credit_limit,
            is_active: r.is_active,
            created_at: r.created_at,
            updated_at: r.updated_at,
        }
    }
}

/// The state of one key: (lsn, deleted, row); a tombstone keeps its last row.
pub type Entry = (i64, bool, OwnedRow);

/// The SCD type 1 state of the baseline.
#[derive(Default)]
pub struct Baseline {
    /// Per key: the winning event's LSN, whether it is a delete, and the row.
    pub state: HashMap<i64, Entry>,
    /// Lines applied (parsed and valid).
    pub events: u64,
}

impl Baseline {
    /// A state with room for `keys` keys.
    pub fn with_capacity(keys: usize) -> Self {
        Baseline {
            state: HashMap::with_capacity(keys),
            events: 0,
        }
    }

    /// Parses one line and applies it. Blank lines are skipped; anything else that is not a
    /// valid bank-customers change event is an error (the input is generated, so this is a
    /// bug, not data to quarantine).
    pub fn apply_line(&mut self, line: &[u8]) -> anyhow::Result<()> {
        if line.iter().all(u8::is_ascii_whitespace) {
            return Ok(());
        }
        let ev: Envelope<'_> = serde_json::from_slice(line)?;
        let (delete, image) = match ev.op.as_ref() {
            "c" | "u" | "r" => (false, ev.after.as_ref()),
            "d" => (true, ev.before.as_ref()),
            op => anyhow::bail!("unknown op {op:?}"),
        };
        let row = image.with_context(|| format!("op {} without its row image", ev.op))?;
        self.events += 1;
        self.apply(row.customer_id, ev.source.lsn, delete, row);
        Ok(())
    }

    /// Applies one change: the highest LSN wins; at an equal LSN a delete beats an upsert;
    /// a delete keeps a tombstone. The row is copied out of the line only when it wins.
    pub fn apply(&mut self, key: i64, lsn: i64, delete: bool, row: &BankRow<'_>) {
        match self.state.get_mut(&key) {
            Some(entry) => {
                let (cur_lsn, cur_deleted, _) = *entry;
                let wins = lsn > cur_lsn || (lsn == cur_lsn && delete && !cur_deleted);
                if wins {
                    entry.0 = lsn;
                    entry.1 = delete;
                    // A tombstone's row is never read; keep the old allocation.
                    if !delete {
                        entry.2 = OwnedRow::from(row);
                    }
                }
            }
            None => {
                self.state.insert(key, (lsn, delete, OwnedRow::from(row)));
            }
        }
    }

    /// The live rows (tombstones excluded).
    pub fn live(&self) -> impl Iterator<Item = (i64, i64, &OwnedRow)> + '_ {
        self.state
            .iter()
            .filter(|(_, (_, deleted, _))| !deleted)
            .map(|(k, (lsn, _, row))| (*k, *lsn, row))
    }

    /// A summary of the live rows for cross-checking: (count, Σ customer_id, Σ lsn).
    pub fn fingerprint(&self) -> Fingerprint {
        Fingerprint::of(self.live().map(|(k, lsn, _)| (k, lsn)))
    }
}

/// A cheap, order-independent summary of a final table: number of live rows, sum of their
/// keys and sum of their LSNs. Used to cross-check the baseline and DuckDB against the
/// reference model without shipping the whole table between processes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fingerprint {
    /// Live rows.
    pub rows: u64,
    /// Sum of `customer_id`.
    pub key_sum: i128,
    /// Sum of the winning LSNs.
    pub lsn_sum: i128,
}

impl Fingerprint {
    /// The fingerprint of (key, lsn) pairs.
    pub fn of(pairs: impl Iterator<Item = (i64, i64)>) -> Self {
        pairs.fold(Fingerprint::default(), |f, (k, lsn)| Fingerprint {
            rows: f.rows + 1,
            key_sum: f.key_sum + k as i128,
            lsn_sum: f.lsn_sum + lsn as i128,
        })
    }
}

/// What a baseline run reports (one JSON line).
#[derive(Debug, Serialize, Deserialize)]
pub struct BaselineReport {
    /// Wall time of reading, parsing and applying the whole file.
    pub elapsed_s: f64,
    /// Events applied.
    pub events: u64,
    /// Keys in the state, tombstones included.
    pub keys: u64,
    /// Summary of the live rows.
    pub fingerprint: Fingerprint,
    /// Peak RSS of the process (`VmHWM`).
    pub peak_rss_bytes: u64,
}

/// Runs the baseline on a file: read with a 1 MiB buffer, one line at a time.
pub fn apply_file(path: &Path) -> anyhow::Result<Baseline> {
    let file =
        std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut reader = std::io::BufReader::with_capacity(1 << 20, file);
    let mut b = Baseline::with_capacity(1 << 16);
    let mut line = Vec::with_capacity(4096);
    let mut line_no = 0u64;
    loop {
        line.clear();
        if reader.read_until(b'\n', &mut line)? == 0 {
            break;
        }
        line_no += 1;
        b.apply_line(&line)
            .with_context(|| format!("{}:{line_no}", path.display()))?;
    }
    Ok(b)
}

/// `run-one baseline`: times [`apply_file`] and prints a [`BaselineReport`].
pub fn run_one(input: &Path) -> anyhow::Result<()> {
    let started = Instant::now();
    let b = apply_file(input)?;
    let elapsed_s = started.elapsed().as_secs_f64();
    print_report(&BaselineReport {
        elapsed_s,
        events: b.events,
        keys: b.state.len() as u64,
        fingerprint: b.fingerprint(),
        peak_rss_bytes: peak_rss_bytes(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A Debezium line of the bank table; `city` tells the versions apart.
    fn line(key: i64, city: &str, op: &str, lsn: i64) -> String {
        let row = format!(
            r#"{{"customer_id":{key},"name":"Isabel Rossi","email":null,"phone":null,"address":null,"city":"{city}","country":"MX","segment":"gold","total_spend":1.5,"credit_limit":500.0,"is_active":true,"created_at":1,"updated_at":{lsn}}}"#
        );
        let (before, after) = if op == "d" {
            (row.as_str(), "null")
        } else {
            ("null", row.as_str())
        };
        format!(
            r#"{{"before":{before},"after":{after},"source":{{"version":"2.7.0.Final","connector":"postgresql","name":"dlt","ts_ms":1,"db":"dlt","schema":"public","table":"users","txId":1,"lsn":{lsn},"xmin":null}},"op":"{op}","ts_ms":2,"transaction":null}}"#
        )
    }

    fn apply(lines: &[String]) -> Baseline {
        let mut b = Baseline::default();
        for l in lines {
            b.apply_line(l.as_bytes()).unwrap();
        }
        b
    }

    fn city(b: &Baseline, key: i64) -> Option<String> {
        b.live()
            .find(|(k, _, _)| *k == key)
            .and_then(|(_, _, r)| r.city.clone())
    }

    /// The Databricks DLT `APPLY CHANGES` documentation example: 123 is deleted at 6, and
    /// the stale update at 5 arriving afterwards does not resurrect it; 125's update at 5
    /// arrives after the one at 6 and loses.
    #[test]
    fn dlt_example() {
        let b = apply(&[
            line(124, "Oaxaca", "c", 1),
            line(123, "Monterrey", "c", 1),
            line(125, "Tijuana", "c", 2),
            line(126, "Cancun", "c", 2),
            line(123, "Monterrey", "d", 6),
            line(125, "Guadalajara", "u", 6),
            line(125, "Mexicali", "u", 5),
            line(123, "Chihuahua", "u", 5),
        ]);
        assert_eq!(b.events, 8);
        let mut live: Vec<i64> = b.live().map(|(k, _, _)| k).collect();
        live.sort_unstable();
        assert_eq!(live, [124, 125, 126]);
        assert_eq!(b.state[&123].0, 6, "the tombstone keeps the delete's LSN");
        assert!(b.state[&123].1);
        assert_eq!(city(&b, 125).as_deref(), Some("Guadalajara"));
        assert_eq!(city(&b, 124).as_deref(), Some("Oaxaca"));
        assert_eq!(
            b.fingerprint(),
            Fingerprint {
                rows: 3,
                key_sum: 124 + 125 + 126,
                lsn_sum: 1 + 6 + 2
            }
        );
    }

    #[test]
    fn ties_recreates_and_blank_lines() {
        // At an equal LSN the delete wins, in either order; a newer upsert re-creates.
        let b = apply(&[line(7, "a", "u", 4), line(7, "a", "d", 4)]);
        assert_eq!(b.live().count(), 0);
        let b = apply(&[line(7, "a", "d", 4), line(7, "a", "u", 4), String::new()]);
        assert_eq!(b.live().count(), 0);
        assert_eq!(b.events, 2);
        let b = apply(&[line(7, "a", "d", 4), line(7, "b", "c", 9)]);
        assert_eq!(city(&b, 7).as_deref(), Some("b"));
        // Bad lines are errors.
        let mut b = Baseline::default();
        assert!(b.apply_line(b"{not json").is_err());
        assert!(b.apply_line(line(1, "x", "x", 1).as_bytes()).is_err());
    }

    #[test]
    fn agrees_with_the_reference_on_generated_data() {
        use tidewater_connectors::generator::{reference_apply_file, write_file, BankGenConfig};
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bank.jsonl");
        let cfg = BankGenConfig {
            events: 20_000,
            keys: 2_000,
            ..BankGenConfig::default()
        };
        write_file(&cfg, &path).unwrap();
        let b = apply_file(&path).unwrap();
        assert_eq!(b.events, 20_000);
        let reference = reference_apply_file(&path, &["customer_id"], "__lsn").unwrap();
        let expected = super::super::verify::reference_fingerprint(&reference).unwrap();
        assert_eq!(b.fingerprint(), expected);
    }
}
