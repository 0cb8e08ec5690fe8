//! The live dashboard in a real browser: `tidewater demo` (rate-limited, so that it keeps
//! committing epochs for a while) serves the dashboard; headless Chromium (Debian's
//! `chromium`, driven by Playwright from PyPI: `tests/browser/dashboard_check.py`) opens every
//! page, checks that the panels render with the numbers the `/api/` endpoints return for the
//! epoch shown and that the charts are drawn, then watches the offers page change by itself
//! (new epochs, new numbers) without a reload while the demo's generators feed new events.
//! Screenshots are saved as test artifacts in `<target>/test-artifacts/`.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use tidewater_e2e::kafka::free_port;
use tidewater_e2e::python_reader::python;
use tidewater_e2e::{http_get, tidewater_bin, Running};

#[test]
fn dashboard_pages_render_the_api_numbers_and_update_live_in_chromium() {
    let chromium =
        std::env::var("TIDEWATER_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        std::path::Path::new(&chromium).exists(),
        "{chromium} is missing: scripts/test installs Debian's chromium (or set TIDEWATER_CHROMIUM)"
    );
    let dir = tempfile::tempdir().unwrap();
    let lh = dir.path().join("lakehouse");
    let addr = format!("127.0.0.1:{}", free_port());
    let demo = Running(
        Command::new(tidewater_bin())
            .args(["demo", "--lakehouse", lh.to_str().unwrap()])
            .args(["--events", "60000", "--rate", "1500", "--bind", &addr])
            .env("TIDEWATER_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    // Wait for a cut with every table the pages read (a view's table is created with its
    // first rows: claims are rare early on).
    let started = Instant::now();
    let wanted = tidewater::dashboard::panels::TABLES;
    loop {
        if let Some((200, body)) = http_get(&addr, "/api/cut") {
            let v: Value = serde_json::from_str(&body).unwrap();
            if v["epoch"].is_u64() && wanted.iter().all(|t| v["tables"].get(t).is_some()) {
                break;
            }
        }
        assert!(
            started.elapsed() < Duration::from_secs(180),
            "the demo's dashboard has no cut with all of {wanted:?} after 3 minutes"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let artifacts = tidewater_bin().parent().unwrap().join("test-artifacts");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/browser/dashboard_check.py");
    let out = Command::new(python())
        .arg(script)
        .arg(format!("http://{addr}"))
        .arg(&artifacts)
        .env("TIDEWATER_CHROMIUM", &chromium)
        .output()
        .unwrap();
    drop(demo);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "browser check failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary: Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(summary["ok"], true);
    for page in ["offers", "claims", "engagement", "pipeline"] {
        assert!(
            summary["pages"][page]["charts"].as_u64() > Some(0),
            "{summary}"
        );
        assert!(artifacts.join(format!("dashboard-{page}.png")).exists());
    }
    // Numbers, not just a page: offers were made and claims were scored.
    assert!(
        summary["pages"]["offers"]["kpis"]["customers"].as_u64() > Some(0),
        "{summary}"
    );
    assert!(summary["live"]["to_epoch"].as_u64() > summary["live"]["from_epoch"].as_u64());
    assert!(artifacts.join("dashboard-offers-live.png").exists());
}
