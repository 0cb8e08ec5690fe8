//! Bad input never stops the pipeline and never disappears: each kind of bad line lands in
//! `_quarantine` with its reason and position; the good rows around them are applied exactly.

use tidewater_connectors::generator::{reference_apply, BankGenConfig, BankGenerator};
use tidewater_e2e::python_reader::py_read_table;
use tidewater_e2e::{bank_pipeline, canonical, deltalake_rows, reference_rows, tidewater_ok};

fn good_lines(n: u64) -> Vec<String> {
    let cfg = BankGenConfig {
        seed: 11,
        events: n,
        keys: 40,
        ..BankGenConfig::in_order()
    };
    let mut g = BankGenerator::new(cfg);
    let mut out = Vec::new();
    let mut line = Vec::new();
    while g.next_line(&mut line) {
        out.push(String::from_utf8(std::mem::take(&mut line)).unwrap());
    }
    out
}

#[test]
fn every_bad_line_is_quarantined_with_its_reason() {
    let good = good_lines(300);
    let sample = &good[150];
    assert!(sample.contains("\"op\":\"u\"") || sample.contains("\"op\":\"c\""));
    let id = sample
        .split("\"customer_id\":")
        .nth(1)
        .unwrap()
        .split(',')
        .next()
        .unwrap()
        .to_string();
    let bad: Vec<(String, &str)> = vec![
        (
            "{\"before\":null,\"after\":{\"customer_id\":1".to_string(),
            "malformed JSON",
        ),
        (sample.replacen("\"op\":\"", "\"op\":\"x", 1), "unknown op"),
        (
            sample.replacen(&format!("\"customer_id\":{id},"), "", 1),
            "key column `customer_id` is null or missing",
        ),
        (
            sample.replacen(&format!("\"customer_id\":{id}"), "\"customer_id\":null", 1),
            "key column `customer_id` is null or missing",
        ),
        (
            sample.replacen("\"lsn\":", "\"lsn\":null,\"x_lsn\":", 1),
            "sequence column `__lsn` is null or missing",
        ),
        (
            sample.replacen(
                &format!("\"customer_id\":{id}"),
                "\"customer_id\":\"abc\"",
                1,
            ),
            "customer_id",
        ),
    ];
    // Interleave: 100 good, the bad ones separated by good lines and tombstones, then the rest.
    let mut lines: Vec<String> = good[..100].to_vec();
    for (i, (b, _)) in bad.iter().enumerate() {
        lines.push(b.clone());
        lines.extend(good[100 + i * 20..120 + i * 20].iter().cloned());
        lines.push("null".into());
        lines.push(String::new());
    }
    lines.extend(good[220..].iter().cloned());
    let text = lines.join("\n") + "\n";

    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("mixed.json");
    std::fs::write(&input, &text).unwrap();
    let lakehouse = dir.path().join("lh");
    let pipeline = bank_pipeline(dir.path(), &input, &lakehouse, "buckets = 4");
    tidewater_ok(&[
        "run",
        pipeline.to_str().unwrap(),
        "--workers",
        "2",
        "--exit-when-idle",
    ]);

    // Good rows: exactly the model over the good lines.
    let expected = reference_apply(good.iter().map(|l| l.as_bytes()), &["customer_id"], "__lsn");
    let expected = canonical(&reference_rows(&expected));
    let table = lakehouse.join("customers");
    assert_eq!(
        canonical(&py_read_table(&table, None).unwrap().rows),
        expected
    );
    assert_eq!(canonical(&deltalake_rows(&table, None).unwrap()), expected);

    // Bad lines: each exactly once, with its raw text, position and reason.
    let q = py_read_table(&lakehouse.join("_quarantine"), None).unwrap();
    assert_eq!(q.rows.len(), bad.len(), "quarantine rows: {:#?}", q.rows);
    for (raw, reason) in &bad {
        let offset = text.find(&format!("\n{raw}\n")).unwrap() + 1;
        let row = q
            .rows
            .iter()
            .find(|r| r["raw"] == serde_json::json!(raw))
            .unwrap_or_else(|| panic!("bad line not quarantined: {raw}"));
        assert_eq!(row["table"], "customers");
        assert_eq!(row["source"], "customers_cdc");
        assert_eq!(
            row["position"],
            serde_json::json!(format!("{}:{offset}", input.display()))
        );
        let got = row["reason"].as_str().unwrap();
        assert!(
            got.contains(reason),
            "reason `{got}` should mention `{reason}`"
        );
    }
}
