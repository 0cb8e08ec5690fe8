//! The shipped marketing engagement pipeline (`pipelines/marketing/`, issue 7) through the
//! binary: its six generated CDC inputs, the star-schema models and the dbt-style test views,
//! at every epoch equal to SQLite running the same SQL files over the input tables at that
//! cut; the same final views at 1, 2 and 4 workers and by the independent Python reader.
//!
//! And the "updates flow through" on hand-written Fivetran-style CDC files dropped
//! into a running pipeline (2 workers): an account changing its billing country moves its
//! opens and clicks to the new country in the next epoch, a deleted lead's activities leave
//! the joined view, a soft-deleted (`_fivetran_deleted`) account leaves the engagement.

use std::path::{Path, PathBuf};

use serde_json::{json, Value};
use tidewater_e2e::python_reader::py_read_table;
use tidewater_e2e::{
    deltalake_rows, drop_lines, run_in_background, tidewater_ok, wait_for_version,
};

use crate::views::{canonical_rows, check_views_at_every_epoch};

const TABLES: [&str; 6] = [
    "salesforce_account",
    "salesforce_user",
    "marketo_lead",
    "marketo_activity_send_email",
    "marketo_activity_open_email",
    "marketo_activity_click_email",
];

fn shipped() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../pipelines/marketing")
}

/// The views of the shipped pipeline file, in order: (name, SQL of its `sql_file`).
fn shipped_views() -> Vec<(String, String)> {
    let text = std::fs::read_to_string(shipped().join("marketing.toml")).expect("pipeline");
    let value = |line: &str| line.split('"').nth(1).expect("quoted value").to_string();
    let mut out = Vec::new();
    let mut name = None;
    for line in text.lines().map(str::trim) {
        if line.starts_with("name = ") {
            name = Some(value(line));
        } else if line.starts_with("sql_file = ") {
            let sql = std::fs::read_to_string(shipped().join(value(line))).expect("sql file");
            out.push((name.take().expect("view name"), sql));
        }
    }
    out
}

/// A copy of the shipped pipeline (file and SQL) writing to `lakehouse`, with `events` world
/// lines and epochs of `epoch_records` records per source.
fn copy_pipeline(dir: &Path, lakehouse: &Path, events: u64, epoch_records: u64) -> PathBuf {
    for entry in std::fs::read_dir(shipped()).expect("pipelines/marketing") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|e| e == "sql") {
            std::fs::copy(&path, dir.join(path.file_name().unwrap())).expect("copy sql");
        }
    }
    let text = std::fs::read_to_string(shipped().join("marketing.toml")).expect("pipeline");
    let mut out = String::new();
    for line in text.lines() {
        if line.starts_with("lakehouse = ") {
            out.push_str(&format!(
                "lakehouse = \"{}\"\ncommit_every_records = {epoch_records}\n",
                lakehouse.display()
            ));
        } else if line.starts_with("events = ") {
            out.push_str(&format!("events = {events}\n"));
        } else if line.starts_with("rate = ") {
            continue;
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    let path = dir.join("marketing.toml");
    std::fs::write(&path, out).expect("write pipeline");
    path
}

#[test]
fn marketing_views_equal_sqlite_at_every_epoch() {
    let dir = tempfile::tempdir().unwrap();
    let views = shipped_views();
    assert!(views.len() >= 8, "views: {}", views.len());
    let mut finals = Vec::new();
    for workers in [1, 2, 4] {
        let lakehouse = dir.path().join(format!("lh{workers}"));
        let p = copy_pipeline(dir.path(), &lakehouse, 12_000, 300);
        tidewater_ok(&[
            "run",
            p.to_str().unwrap(),
            "--workers",
            &workers.to_string(),
            "--exit-when-idle",
        ]);
        let (epochs, last) = check_views_at_every_epoch(&lakehouse, &TABLES, &views);
        assert!(epochs >= 5, "epochs: {epochs}");
        for name in [
            "dim_account",
            "dim_user",
            "fct_email_opens",
            "fct_email_clicks",
            "int_email_open_clicks_joined",
            "country_email_engagement",
        ] {
            assert!(
                last.get(name).is_some_and(|rows| !rows.is_empty()),
                "view `{name}` is empty at the end"
            );
        }
        for (name, _) in &views {
            let table = lakehouse.join(name);
            if !table.exists() {
                continue;
            }
            // The independent reader gives timestamps as ISO text (delta-rs: microseconds):
            // compare the other columns, and the row count.
            let py = py_read_table(&table, None).expect("python reader");
            let columns: Vec<String> = py
                .schema
                .iter()
                .filter(|(_, ty)| !ty.starts_with("timestamp"))
                .map(|(n, _)| n.clone())
                .collect();
            assert_eq!(
                py.rows.len(),
                last[name].len(),
                "view `{name}`: python rows"
            );
            assert_eq!(
                canonical_rows(&py.rows, &columns),
                canonical_rows(&deltalake_rows(&table, None).expect("rows"), &columns),
                "view `{name}`: python reader"
            );
        }
        finals.push(last);
    }
    assert_eq!(finals[0], finals[1], "1 and 2 workers: final views");
    assert_eq!(finals[0], finals[2], "1 and 4 workers: final views");
}

/// The shipped tables and views with the generator sources replaced by watched directories
/// (one per table, named like the table).
fn watched_pipeline(dir: &Path, lakehouse: &Path) -> PathBuf {
    let text = std::fs::read_to_string(shipped().join("marketing.toml")).expect("pipeline");
    let tables = &text[text.find("# --- tables").expect("tables section")..];
    let tables = tables.replace(
        "sql_file = \"",
        &format!("sql_file = \"{}/", shipped().display()),
    );
    let mut out = format!(
        "[pipeline]\nname = \"marketing\"\nlakehouse = \"{}\"\ncommit_interval_ms = 200\n\n",
        lakehouse.display()
    );
    for table in TABLES {
        let d = dir.join(table);
        std::fs::create_dir_all(&d).unwrap();
        out.push_str(&format!(
            "[[source]]\nname = \"{table}_cdc\"\nkind = \"files\"\npath = \"{}\"\n\n",
            d.display()
        ));
    }
    out.push_str(&tables);
    let path = dir.join("marketing.toml");
    std::fs::write(&path, out).unwrap();
    path
}

/// A Debezium envelope line (no schema block; Fivetran columns in the row).
fn cdc(op: &str, lsn: i64, row: Value) -> String {
    let t = 1_767_225_600_000i64 + lsn * 1000;
    let (before, after) = if op == "d" {
        (row, Value::Null)
    } else {
        (Value::Null, row)
    };
    json!({"op": op, "before": before, "after": after, "source": {"lsn": lsn, "ts_ms": t}, "ts_ms": t})
        .to_string()
}

const T0: i64 = 1_767_225_600_000;

fn account(id: &str, country: &str, deleted: bool) -> Value {
    json!({"id": id, "name": format!("Account {id}"), "industry": "Banking",
        "billing_country": country, "billing_city": "City", "number_of_employees": 50,
        "annual_revenue": 1.5e6, "owner_id": "o1", "created_date": T0,
        "last_modified_date": T0, "_fivetran_synced": T0, "_fivetran_deleted": deleted})
}

fn user(id: &str, email: &str, account: &str) -> Value {
    json!({"id": id, "name": format!("User {id}"), "first_name": "F", "last_name": "L",
        "email": email, "account_id": account, "title": "CFO", "is_active": true,
        "created_date": T0, "last_modified_date": T0, "_fivetran_synced": T0,
        "_fivetran_deleted": false})
}

fn lead(id: i64, email: &str) -> Value {
    json!({"id": id, "email": email, "first_name": "F", "last_name": "L", "company": "C",
        "country": "DE", "lead_source": "Web", "created_at": T0, "updated_at": T0,
        "_fivetran_synced": T0})
}

/// An e-mail activity of `lead` for send `send` (an open, a click or a send).
fn activity(id: i64, lead: i64, send: &str, kind: &str) -> Value {
    let mut v = json!({"id": id, "lead_id": lead, "activity_date": T0 + id * 1000,
        "activity_type_id": 10, "campaign_id": 7, "campaign_run_id": 70,
        "email_template_id": 700, "primary_attribute_value": "Newsletter",
        "email_send_id": send, "_fivetran_synced": T0});
    if kind != "send" {
        v["device"] = json!("phone");
        v["platform"] = json!("ios");
        v["is_mobile_device"] = json!(true);
    }
    if kind == "click" {
        v["link"] = json!("https://example.com");
        v["link_id"] = json!(1);
    }
    v
}

/// The rows of `view` at the manifest's cut (independent reader), as sorted text of the
/// given columns.
fn view_at(lh: &Path, m: &Value, view: &str, columns: &[&str]) -> Vec<String> {
    let Some(v) = m["tables"][view].as_i64() else {
        return Vec::new();
    };
    let mut out: Vec<String> = py_read_table(&lh.join(view), Some(v))
        .unwrap()
        .rows
        .iter()
        .map(|r| {
            columns
                .iter()
                .map(|c| r[*c].to_string())
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect();
    out.sort();
    out
}

#[test]
fn a_country_move_and_a_lead_delete_flow_through_in_the_next_epoch() {
    let dir = tempfile::tempdir().unwrap();
    let lh = dir.path().join("lakehouse");
    let toml = watched_pipeline(dir.path(), &lh);
    let mut run = run_in_background(&toml, 2);
    let engagement = [
        "billing_country",
        "opens",
        "clicks",
        "click_ratio",
        "engaged_leads",
    ];
    let joined = ["open_id", "lead_id", "clicks", "was_clicked"];

    // Account a1 in DE with user u1 (lead 1), account a2 in FR with user u2 (lead 2). Lead 1
    // opened send s1 and clicked it; lead 2 opened s2 and s3.
    let d = dir.path();
    drop_lines(
        d,
        "salesforce_account",
        "1.json",
        &[
            cdc("c", 1, account("a1", "DE", false)),
            cdc("c", 2, account("a2", "FR", false)),
        ],
    );
    drop_lines(
        d,
        "salesforce_user",
        "1.json",
        &[
            cdc("c", 1, user("u1", "ada@example.com", "a1")),
            cdc("c", 2, user("u2", "bo@example.com", "a2")),
        ],
    );
    drop_lines(
        d,
        "marketo_lead",
        "1.json",
        &[
            cdc("c", 1, lead(1, "Ada@example.com")),
            cdc("c", 2, lead(2, "bo@example.com")),
        ],
    );
    drop_lines(
        d,
        "marketo_activity_send_email",
        "1.json",
        &[
            cdc("c", 1, activity(1, 1, "s1", "send")),
            cdc("c", 2, activity(2, 2, "s2", "send")),
            cdc("c", 3, activity(3, 2, "s3", "send")),
        ],
    );
    drop_lines(
        d,
        "marketo_activity_open_email",
        "1.json",
        &[
            cdc("c", 1, activity(11, 1, "s1", "open")),
            cdc("c", 2, activity(12, 2, "s2", "open")),
            cdc("c", 3, activity(13, 2, "s3", "open")),
        ],
    );
    drop_lines(
        d,
        "marketo_activity_click_email",
        "1.json",
        &[cdc("c", 1, activity(21, 1, "s1", "click"))],
    );
    // Wait until every table has data (the sources may land in different epochs).
    let mut m = wait_for_version(&lh, "country_email_engagement", -1, &mut run);
    while TABLES.iter().any(|t| m["tables"][*t].as_i64().is_none())
        || view_at(&lh, &m, "int_email_open_clicks_joined", &joined).len() < 3
        || view_at(&lh, &m, "country_email_engagement", &engagement)
            != ["\"DE\" 1 1 1.0 1", "\"FR\" 2 0 0.0 1"]
    {
        let v = m["tables"]["country_email_engagement"]
            .as_i64()
            .unwrap_or(-1);
        let before = m["epoch"].as_u64();
        m = wait_for_version(&lh, "country_email_engagement", v, &mut run);
        assert!(m["epoch"].as_u64() > before);
    }
    assert_eq!(
        view_at(&lh, &m, "int_email_open_clicks_joined", &joined),
        ["11 1 1 true", "12 2 0 false", "13 2 0 false"]
    );

    // Account a1 moves to FR: its open and click move to FR in the next epoch.
    let v = m["tables"]["salesforce_account"].as_i64().unwrap();
    drop_lines(
        d,
        "salesforce_account",
        "2.json",
        &[cdc("u", 3, account("a1", "FR", false))],
    );
    let m2 = wait_for_version(&lh, "salesforce_account", v, &mut run);
    assert_eq!(
        view_at(&lh, &m2, "country_email_engagement", &engagement),
        ["\"FR\" 3 1 0.3333333333333333 2"],
        "the account's opens and clicks moved to its new country"
    );
    assert!(m2["epoch"].as_u64() > m["epoch"].as_u64());

    // Lead 2 is deleted (a Debezium delete): its opens leave the facts and the joined view.
    let v = m2["tables"]["marketo_lead"].as_i64().unwrap();
    drop_lines(
        d,
        "marketo_lead",
        "2.json",
        &[cdc("d", 3, lead(2, "bo@example.com"))],
    );
    let m3 = wait_for_version(&lh, "marketo_lead", v, &mut run);
    assert_eq!(
        view_at(&lh, &m3, "int_email_open_clicks_joined", &joined),
        ["11 1 1 true"],
        "the deleted lead's activities disappeared"
    );
    assert_eq!(
        view_at(&lh, &m3, "fct_email_opens", &["activity_id", "lead_id"]),
        ["11 1"]
    );
    assert_eq!(
        view_at(&lh, &m3, "country_email_engagement", &engagement),
        ["\"FR\" 1 1 1.0 1"]
    );

    // Account a1 is soft-deleted by Fivetran (`_fivetran_deleted`, an update): it leaves
    // dim_account, and with it the last engagement row.
    let v = m3["tables"]["salesforce_account"].as_i64().unwrap();
    drop_lines(
        d,
        "salesforce_account",
        "3.json",
        &[cdc("u", 4, account("a1", "FR", true))],
    );
    let m4 = wait_for_version(&lh, "salesforce_account", v, &mut run);
    assert_eq!(
        view_at(&lh, &m4, "dim_account", &["account_id", "billing_country"]),
        ["\"a2\" \"FR\""]
    );
    assert_eq!(
        view_at(&lh, &m4, "country_email_engagement", &engagement),
        Vec::<String>::new()
    );
}
