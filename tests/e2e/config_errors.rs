//! A bad pipeline file: exit code 2 and an error naming the key.

use tidewater_e2e::tidewater;

fn run_with(text: &str) -> (i32, String) {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("p.toml");
    std::fs::write(&p, text).unwrap();
    let out = tidewater(&["run", p.to_str().unwrap(), "--exit-when-idle"]);
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

const GOOD: &str = r#"
[pipeline]
name = "bank"
lakehouse = "lh"

[[source]]
name = "s"
kind = "generator"
events = 10

[[table]]
name = "customers"
from = "s"
keys = ["customer_id"]
sequence_by = "__lsn"
"#;

#[test]
fn errors_name_the_key_and_exit_2() {
    let cases = [
        (
            GOOD.replace("from = \"s\"", "from = \"t\""),
            "table `customers`.from",
        ),
        (
            GOOD.replace("keys = [\"customer_id\"]", "keys = [\"nope\"]"),
            "column `nope`",
        ),
        (
            GOOD.replace("sequence_by = \"__lsn\"", "sequence_by = \"__lssn\""),
            "table `customers`.sequence_by",
        ),
        (
            GOOD.replace("name = \"bank\"", "name = \"bank\"\nbuckets = 0"),
            "pipeline.buckets",
        ),
        (
            GOOD.replace(
                "kind = \"generator\"",
                "kind = \"files\"\npath = \"/does/not/exist\"",
            ),
            "source `s`.path",
        ),
        (
            GOOD.replace("lakehouse = \"lh\"", "lakehouse = 5"),
            "line 4",
        ),
        // Event time (issue 8).
        (
            format!("{GOOD}watermark = {{ column = \"name\", allowed_lateness = \"2m\" }}\n"),
            "table `customers`.watermark.column: `name` is string, not a timestamp",
        ),
        (
            format!("{GOOD}watermark = {{ column = \"updated_at\", allowed_lateness = \"soon\" }}\n"),
            "table `customers`.watermark.allowed_lateness",
        ),
        (
            format!(
                "{}\n[[view]]\nname = \"w\"\nsql = \"SELECT customer_id, window_start, window_end, COUNT(*) AS n FROM customers GROUP BY customer_id, TUMBLE(updated_at, INTERVAL '5' MINUTE)\"\n",
                GOOD.replace("sequence_by = \"__lsn\"", "sequence_by = \"__lsn\"\ncolumns = { updated_at = \"timestamp\" }")
            ),
            "table `customers` has no watermark",
        ),
        (
            format!(
                "{GOOD}\n[[view]]\nname = \"v\"\nsql = \"SELECT country, COUNT(*) AS n FROM customers GROUP BY country\"\nemit = \"on_close\"\n"
            ),
            "view `v`.emit: emit is for windowed views",
        ),
        (
            format!(
                "{GOOD}\n[[view]]\nname = \"v\"\nsql = \"SELECT country FROM customers\"\nemit = \"sometimes\"\n"
            ),
            "view `v`.emit: \"sometimes\" is not one of: on_update, on_close",
        ),
    ];
    for (text, needle) in cases {
        let (code, stderr) = run_with(&text);
        assert_eq!(code, 2, "exit code for {needle}: {stderr}");
        assert!(
            stderr.contains(needle),
            "stderr should name {needle}: {stderr}"
        );
    }
    let (code, _) = run_with(GOOD);
    assert_eq!(code, 0);
}
