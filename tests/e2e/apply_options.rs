//! APPLY CHANGES options (issue 6, part 2 — the parts built so far): `apply_as_deletes`, a SQL
//! condition on the flattened record that decides which records delete their key (soft
//! deletes), and its config errors.

use std::path::Path;

use tidewater_e2e::{deltalake_rows, tidewater, tidewater_ok};

const INPUT: &str = r#"{"before":null,"after":{"customer_id":1,"name":"a","is_deleted":false},"source":{"lsn":1},"op":"c","ts_ms":1}
{"before":null,"after":{"customer_id":2,"name":"b","is_deleted":false},"source":{"lsn":2},"op":"c","ts_ms":1}
{"before":null,"after":{"customer_id":1,"name":"a2","is_deleted":true},"source":{"lsn":3},"op":"u","ts_ms":1}
{"before":null,"after":{"customer_id":1,"name":"a3","is_deleted":false},"source":{"lsn":2},"op":"u","ts_ms":1}
{"before":{"customer_id":2,"name":"b","is_deleted":false},"after":null,"source":{"lsn":4},"op":"d","ts_ms":1}
{"before":null,"after":{"customer_id":3,"name":"c","is_deleted":null},"source":{"lsn":5},"op":"c","ts_ms":1}
"#;

fn pipeline(dir: &Path, name: &str, option: &str) -> std::path::PathBuf {
    let input = dir.join("in.json");
    std::fs::write(&input, INPUT).unwrap();
    let text = format!(
        r#"[pipeline]
name = "{name}"
lakehouse = "{}"

[[source]]
name = "cdc"
kind = "files"
path = "{}"

[[table]]
name = "customers"
from = "cdc"
keys = ["customer_id"]
sequence_by = "__lsn"
columns = {{ customer_id = "int64", name = "string", is_deleted = "boolean" }}
{option}
"#,
        dir.join(format!("{name}-lh")).display(),
        input.display()
    );
    let p = dir.join(format!("{name}.toml"));
    std::fs::write(&p, text).unwrap();
    p
}

/// `id=name` of every row of the final table, sorted.
fn names(lakehouse: &Path) -> Vec<String> {
    let rows = deltalake_rows(&lakehouse.join("customers"), None).unwrap();
    let mut names: Vec<String> = rows
        .iter()
        .map(|r| format!("{}={}", r["customer_id"], r["name"].as_str().unwrap()))
        .collect();
    names.sort();
    names
}

#[test]
fn apply_as_deletes_turns_soft_deletes_into_deletes() {
    let dir = tempfile::tempdir().unwrap();
    let default = pipeline(dir.path(), "plain", "");
    tidewater_ok(&["run", default.to_str().unwrap(), "--exit-when-idle"]);
    assert_eq!(names(&dir.path().join("plain-lh")), vec!["1=a2", "3=c"]);

    // Soft deletes: customer 1's soft delete (lsn 3) deletes it, and the older update (lsn 2)
    // that arrives later does not bring it back; a NULL flag is not a delete.
    let soft = pipeline(
        dir.path(),
        "soft",
        "apply_as_deletes = \"__op = 'd' OR is_deleted\"",
    );
    for workers in ["1", "2"] {
        let lh = dir.path().join("soft-lh");
        let _ = std::fs::remove_dir_all(&lh);
        tidewater_ok(&[
            "run",
            soft.to_str().unwrap(),
            "--workers",
            workers,
            "--exit-when-idle",
        ]);
        assert_eq!(names(&lh), vec!["3=c"], "{workers} worker(s)");
    }
}

#[test]
fn a_bad_apply_as_deletes_condition_is_a_config_error_naming_table_and_text() {
    let dir = tempfile::tempdir().unwrap();
    for (option, what) in [
        (
            "apply_as_deletes = \"is_delted\"",
            "unknown column `is_delted`",
        ),
        ("apply_as_deletes = \"__op = = 'd'\"", "__op = = 'd'"),
        ("apply_as_deletes = \"name\"", "name"),
    ] {
        let p = pipeline(dir.path(), "bad", option);
        let out = tidewater(&["run", p.to_str().unwrap(), "--exit-when-idle"]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{option}: {stderr}");
        assert!(
            stderr.contains("table `customers`.apply_as_deletes") && stderr.contains(what),
            "{option}: {stderr}"
        );
    }
}
