"""Headless-Chromium check of a running tidewater dashboard (driven by tests/e2e/dashboard.rs).

usage: dashboard_check.py BASE_URL SCREENSHOT_DIR

For every page (offers, claims, engagement, pipeline): the page renders its panels; every KPI
shown equals the number the page's /api/ endpoint returns for the same epoch; every chart is
an SVG; every table has the API's number of rows. Then, on the offers page, while the
pipeline goes on committing epochs: the epoch shown and at least one KPI change by
themselves, without a reload. Screenshots go to SCREENSHOT_DIR. Prints a JSON summary; exits
non-zero with the reason on the first failure.
"""

import json
import os
import sys
import time

from playwright.sync_api import sync_playwright

BASE, SHOTS = sys.argv[1], sys.argv[2]
CHROMIUM = os.environ.get("TIDEWATER_CHROMIUM", "/usr/bin/chromium")
PAGES = {
    # page: {table element id: path of its rows in the API's panels}
    "offers": {"offers-by-type": "offers_by_type", "favourites": "favourites",
               "newest-offers": "newest_offers", "economics": "economics"},
    "claims": {"loss-ratio": "loss_ratio", "incidents": "incidents", "flagged": "flagged"},
    "engagement": {"countries": "countries", "campaigns": "campaigns"},
    "pipeline": {"tables": "tables"},
}

# In the page: fetch the API, and compare it with what is shown, if the epochs agree.
COMPARE = """async ([page, tables]) => {
  const api = await (await fetch('/api/' + page, {cache: 'no-store'})).json();
  const shown = document.getElementById('epoch').dataset.epoch;
  if (String(api.epoch) !== shown) return {retry: true, api: api.epoch, shown};
  const bad = [];
  const kpis = api.panels.kpis;
  for (const k of Object.keys(kpis)) {
    const el = document.getElementById('kpi-' + k);
    if (!el) { bad.push('no KPI element kpi-' + k); continue; }
    if (el.dataset.value !== String(kpis[k])) bad.push(`kpi ${k}: shown ${el.dataset.value}, api ${kpis[k]}`);
  }
  for (const [id, path] of Object.entries(tables)) {
    const t = document.getElementById(id);
    if (!t) { bad.push('no table ' + id); continue; }
    const want = api.panels[path].length;
    const rows = t.querySelectorAll('tbody tr').length;
    if (rows !== want) bad.push(`table ${id}: ${rows} rows shown, api ${want}`);
  }
  const charts = [...document.querySelectorAll('.chart')];
  for (const c of charts) if (!c.querySelector('svg')) bad.push('chart ' + c.id + ' is not an SVG');
  if (api.missing && api.missing.length) bad.push('tables missing: ' + api.missing.join(','));
  return {retry: false, bad, epoch: api.epoch, kpis, charts: charts.length};
}"""


def fail(msg):
    print(json.dumps({"ok": False, "error": msg}))
    sys.exit(1)


def main():
    os.makedirs(SHOTS, exist_ok=True)
    summary = {"pages": {}}
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update",
                  "--disable-sync", "--disable-dev-shm-usage"],
        )
        page = browser.new_page(viewport={"width": 1300, "height": 1500})
        errors = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        for name, tables in PAGES.items():
            page.goto(f"{BASE}/{name}")
            page.wait_for_function(
                "document.getElementById('epoch').dataset.epoch", timeout=60_000)
            for attempt in range(50):
                r = page.evaluate(COMPARE, [name, tables])
                if not r["retry"]:
                    break
                time.sleep(0.2)
            else:
                fail(f"{name}: the page never showed the API's epoch")
            if r["bad"]:
                fail(f"{name} (epoch {r['epoch']}): " + "; ".join(r["bad"]))
            if r["charts"] == 0:
                fail(f"{name}: no chart")
            page.screenshot(path=os.path.join(SHOTS, f"dashboard-{name}.png"), full_page=True)
            summary["pages"][name] = {"epoch": r["epoch"], "kpis": r["kpis"], "charts": r["charts"]}

        # Live: the offers page updates by itself as epochs are committed.
        page.goto(f"{BASE}/offers")
        page.wait_for_function("document.getElementById('epoch').dataset.epoch", timeout=60_000)
        page.evaluate("window.__same_document = 42")
        before = page.evaluate("""() => ({epoch: Number(document.getElementById('epoch').dataset.epoch),
            kpis: Object.fromEntries([...document.querySelectorAll('[id^=kpi-]')].map(e => [e.id, e.dataset.value]))})""")
        deadline = time.time() + 120
        while True:
            now = page.evaluate("""() => ({epoch: Number(document.getElementById('epoch').dataset.epoch),
                kpis: Object.fromEntries([...document.querySelectorAll('[id^=kpi-]')].map(e => [e.id, e.dataset.value]))})""")
            changed = [k for k in now["kpis"] if now["kpis"][k] != before["kpis"].get(k)]
            if now["epoch"] > before["epoch"] and changed:
                break
            if time.time() > deadline:
                fail(f"offers: no update without a reload in 120 s (epoch {before['epoch']} -> {now['epoch']})")
            time.sleep(0.25)
        if page.evaluate("window.__same_document") != 42:
            fail("offers: the page was reloaded")
        # The page at the new epoch still equals its API.
        for attempt in range(50):
            r = page.evaluate(COMPARE, ["offers", PAGES["offers"]])
            if not r["retry"]:
                break
            time.sleep(0.2)
        if r["retry"] or r["bad"]:
            fail(f"offers after the update: {r}")
        page.screenshot(path=os.path.join(SHOTS, "dashboard-offers-live.png"), full_page=True)
        summary["live"] = {"from_epoch": before["epoch"], "to_epoch": now["epoch"], "changed": changed}
        if errors:
            fail("script errors in the page: " + "; ".join(errors))
        browser.close()
    summary["ok"] = True
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
