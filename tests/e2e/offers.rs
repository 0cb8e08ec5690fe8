//! The offers pipeline through the binary, on CDC files dropped into watched directories
//! while it runs (2 workers): a threshold crossing fed as a CDC update (3 → 5 concerts
//! attended) makes the concert offer appear in the next epoch's Delta table; a stale change
//! delivered late (older `datetime_updated`) changes nothing; a later reversal (5 → 4) removes
//! the offer. Tables are read back with the independent pyarrow reader at the versions of one
//! epoch manifest.

use std::path::Path;

use serde_json::{json, Value};
use tidewater_e2e::python_reader::py_read_table;
use tidewater_e2e::{drop_lines, run_in_background, wait_for_version};

const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../pipelines/offers");

/// The shipped pipeline with its generator sources replaced by watched directories.
fn pipeline(dir: &Path, lakehouse: &Path) -> std::path::PathBuf {
    let shipped = std::fs::read_to_string(format!("{DIR}/offers.toml")).unwrap();
    let tables = &shipped[shipped.find("# --- tables").expect("tables section")..];
    let tables = tables.replace("sql_file = \"", &format!("sql_file = \"{DIR}/"));
    let mut text = format!(
        "[pipeline]\nname = \"offers\"\nlakehouse = \"{}\"\ncommit_interval_ms = 200\n\n",
        lakehouse.display()
    );
    for (source, sub) in [
        ("bank_customer_cdc", "customers"),
        ("customer_pattern_cdc", "patterns"),
        ("checking_transactions", "transactions"),
    ] {
        let d = dir.join(sub);
        std::fs::create_dir_all(&d).unwrap();
        text.push_str(&format!(
            "[[source]]\nname = \"{source}\"\nkind = \"files\"\npath = \"{}\"\nformat = \"debezium-json\"\n\n",
            d.display()
        ));
    }
    text.push_str(&tables);
    let path = dir.join("offers.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// A Debezium envelope line (no schema block): `op` with the row as `after`.
fn line(op: &str, lsn: i64, row: Value) -> String {
    json!({"op": op, "after": row, "source": {"lsn": lsn, "ts_ms": 1_767_225_600_000i64}, "ts_ms": 1_767_225_600_000i64})
        .to_string()
}

/// Epoch ms of 2026-01-01 plus `s` seconds.
fn at(s: i64) -> i64 {
    1_767_225_600_000 + s * 1000
}

fn pattern(id: i64, category: &str, attended: i64, t: i64) -> Value {
    json!({"customer_id": id, "category": category, "events_attended": attended, "datetime_updated": at(t)})
}

/// The offers at the manifest's cut: (customer_id, offer_type, events_attended).
fn offers_at(lh: &Path, m: &Value) -> Vec<(i64, String, i64)> {
    let Some(v) = m["tables"]["offers"].as_i64() else {
        return Vec::new(); // no offer was ever made: the view has no table yet
    };
    let mut out: Vec<(i64, String, i64)> = py_read_table(&lh.join("offers"), Some(v))
        .unwrap()
        .rows
        .iter()
        .map(|r| {
            (
                r["customer_id"].as_i64().unwrap(),
                r["offer_type"].as_str().unwrap().to_string(),
                r["events_attended"].as_i64().unwrap(),
            )
        })
        .collect();
    out.sort();
    out
}

#[test]
fn an_offer_appears_on_a_threshold_crossing_and_leaves_on_its_reversal() {
    let dir = tempfile::tempdir().unwrap();
    let lh = dir.path().join("lakehouse");
    let toml = pipeline(dir.path(), &lh);
    let mut run = run_in_background(&toml, 2);

    // Two customers: 1 has attended 3 concerts, 2 (mass) one trip.
    drop_lines(
        dir.path(),
        "customers",
        "0001.json",
        &[
            line(
                "c",
                1,
                json!({"customer_id": 1, "name": "Ada", "segment": "mass", "region": "north", "first_seen": at(0)}),
            ),
            line(
                "c",
                2,
                json!({"customer_id": 2, "name": "Bo", "segment": "mass", "region": "south", "first_seen": at(0)}),
            ),
        ],
    );
    drop_lines(
        dir.path(),
        "patterns",
        "0001.json",
        &[
            line("c", 1, pattern(1, "concerts", 3, 100)),
            line("c", 2, pattern(2, "travel", 1, 100)),
        ],
    );
    let m1 = wait_for_version(&lh, "customer_patterns", -1, &mut run);
    assert_eq!(offers_at(&lh, &m1), vec![], "below every threshold");
    let c360 = py_read_table(
        &lh.join("customer_360"),
        m1["tables"]["customer_360"].as_i64(),
    )
    .unwrap()
    .rows;
    assert_eq!(c360.len(), 2);

    // The crossing: 3 → 5 concerts. And a stale change for customer 2 (3 trips, but older
    // than the 1 trip already applied): ignored, so no travel offer.
    let v1 = m1["tables"]["customer_patterns"].as_i64().unwrap();
    drop_lines(
        dir.path(),
        "patterns",
        "0002.json",
        &[
            line("u", 3, pattern(1, "concerts", 5, 200)),
            line("u", 4, pattern(2, "travel", 3, 50)),
        ],
    );
    let m2 = wait_for_version(&lh, "customer_patterns", v1, &mut run);
    assert_eq!(
        offers_at(&lh, &m2),
        vec![(1, "concerts".to_string(), 5)],
        "the concert offer appears in the epoch of the crossing; the stale change is ignored"
    );

    // The reversal: 5 → 4.
    let v2 = m2["tables"]["customer_patterns"].as_i64().unwrap();
    drop_lines(
        dir.path(),
        "patterns",
        "0003.json",
        &[line("u", 5, pattern(1, "concerts", 4, 300))],
    );
    let m3 = wait_for_version(&lh, "customer_patterns", v2, &mut run);
    assert_eq!(
        offers_at(&lh, &m3),
        vec![],
        "the reversal removes the offer"
    );
    assert!(m3["epoch"].as_u64() > m2["epoch"].as_u64());
}
