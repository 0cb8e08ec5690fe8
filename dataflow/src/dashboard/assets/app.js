// tidewater dashboard: renders /api/<page> and re-renders on every committed epoch
// (server-sent events from /api/events), without a reload. No external scripts.
"use strict";

const page = (location.pathname.replace(/^\/+/, "").split("/")[0]) || "offers";
const main = document.getElementById("main");
for (const a of document.querySelectorAll("nav a")) {
  if (a.dataset.page === page) a.classList.add("active");
}

const esc = (s) => String(s ?? "").replace(/[&<>"]/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" }[c]));
const int = (n) => Number(n ?? 0).toLocaleString("en-US", { maximumFractionDigits: 0 });
const money = (cents) => (Number(cents ?? 0) / 100).toLocaleString("en-US", { minimumFractionDigits: 2, maximumFractionDigits: 2 });
const pct = (x) => (Number(x ?? 0) * 100).toFixed(2) + " %";
const dec = (x, d = 3) => Number(x ?? 0).toFixed(d);

// A KPI card; `id` makes it findable (kpi-<id>), `raw` is the API's number.
function kpi(id, label, shown, raw) {
  return `<div class="kpi"><div class="v" id="kpi-${id}" data-value="${esc(raw)}">${esc(shown)}</div><div class="k">${esc(label)}</div></div>`;
}

function table(id, cols, rows) {
  const head = cols.map((c) => `<th class="${c.n ? "n" : ""}">${esc(c.h)}</th>`).join("");
  const body = rows.map((r) => "<tr>" + cols.map((c) => `<td class="${c.n ? "n" : ""}">${esc(c.f ? c.f(r[c.k], r) : r[c.k])}</td>`).join("") + "</tr>").join("");
  return `<table id="${id}" data-rows="${rows.length}"><thead><tr>${head}</tr></thead><tbody>${body}</tbody></table>`;
}

const chart = (id, svg) => `<div class="chart" id="chart-${id}">${svg || ""}</div>`;
const card = (title, html) => `<div class="card"><h2>${esc(title)}</h2>${html}</div>`;

const render = {
  offers(d) {
    const p = d.panels, k = p.kpis;
    return `<div class="kpis">
      ${kpi("customers", "customers", int(k.customers), k.customers)}
      ${kpi("active_offers", "active offers", int(k.active_offers), k.active_offers)}
      ${kpi("customers_with_offers", "customers with an offer", int(k.customers_with_offers), k.customers_with_offers)}
      ${kpi("cashback_paid_cents", "cash back paid", money(k.cashback_paid_cents), k.cashback_paid_cents)}
      ${kpi("interchange_earned_cents", "interchange earned (break-even)", money(k.interchange_earned_cents), k.interchange_earned_cents)}
      ${kpi("net_cents", "net", money(k.net_cents), k.net_cents)}
      ${kpi("loss_cents", "cash-back losses", money(k.loss_cents), k.loss_cents)}
      ${kpi("losing_segment_months", "segment-months losing money", int(k.losing_segment_months), k.losing_segment_months)}
    </div>
    <div class="grid">
      ${card("Active offers by type", chart("offers_by_type", p.charts.offers_by_type) + table("offers-by-type", [{ h: "offer type", k: "offer_type" }, { h: "offers", k: "offers", n: 1, f: (x) => int(x) }], p.offers_by_type))}
      ${card("Cash back vs break-even", chart("cashback", p.charts.cashback))}
      ${card("Customer favourites", chart("favourites", p.charts.favourites) + table("favourites", [{ h: "category", k: "category" }, { h: "customers", k: "customers", n: 1, f: (x) => int(x) }], p.favourites))}
      ${card("Newest offers", table("newest-offers", [{ h: "customer", k: "customer_id", n: 1 }, { h: "name", k: "name" }, { h: "segment", k: "segment" }, { h: "offer", k: "offer" }, { h: "events", k: "events_attended", n: 1 }, { h: "qualified at", k: "qualified_at" }], p.newest_offers))}
    </div>
    ${card("Cash-back economics per segment and month", table("economics", [{ h: "month", k: "month" }, { h: "segment", k: "segment" }, { h: "transactions", k: "transactions", n: 1, f: (x) => int(x) }, { h: "cash back paid", k: "cashback_paid_cents", n: 1, f: (x) => money(x) }, { h: "interchange earned", k: "interchange_earned_cents", n: 1, f: (x) => money(x) }, { h: "loss", k: "loss_cents", n: 1, f: (x) => money(x) }, { h: "cash-back rate", k: "cashback_rate", n: 1, f: (x) => pct(x) }, { h: "break-even rate", k: "break_even_rate", n: 1, f: (x) => pct(x) }], p.economics))}`;
  },
  claims(d) {
    const p = d.panels, k = p.kpis;
    return `<div class="kpis">
      ${kpi("claims", "claims", int(k.claims), k.claims)}
      ${kpi("flagged", "flagged", int(k.flagged), k.flagged)}
      ${kpi("investigate", "investigate", int(k.investigate), k.investigate)}
      ${kpi("refer", "refer", int(k.refer), k.refer)}
      ${kpi("fast_track", "fast track", int(k.fast_track), k.fast_track)}
      ${kpi("loss_ratio", "loss ratio", dec(k.loss_ratio), k.loss_ratio)}
    </div>
    <div class="grid">
      ${card("Loss ratio by region and coverage", chart("loss_ratio", p.charts.loss_ratio) + table("loss-ratio", [{ h: "region", k: "region" }, { h: "coverage", k: "coverage" }, { h: "policies", k: "policies", n: 1, f: (x) => int(x) }, { h: "claims", k: "claims", n: 1, f: (x) => int(x) }, { h: "loss ratio", k: "loss_ratio", n: 1, f: (x) => dec(x) }], p.loss_ratio))}
      ${card("Incidents by severity", chart("incidents", p.charts.incidents) + table("incidents", [{ h: "incident", k: "incident_type" }, { h: "severity", k: "damage_severity" }, { h: "claims", k: "claims", n: 1, f: (x) => int(x) }], p.incidents))}
    </div>
    ${card("Flagged claims (newest 20)", table("flagged", [{ h: "claim", k: "claim_id", n: 1 }, { h: "region", k: "region" }, { h: "incident", k: "incident_type" }, { h: "severity", k: "damage_severity" }, { h: "amount", k: "claim_amount_cents", n: 1, f: (x) => money(x) }, { h: "flags", k: "flags", f: (v) => (v || []).join(", ") }, { h: "next best action", k: "next_best_action" }], p.flagged))}`;
  },
  engagement(d) {
    const p = d.panels, k = p.kpis;
    return `<div class="kpis">
      ${kpi("countries", "countries", int(k.countries), k.countries)}
      ${kpi("opens", "opens", int(k.opens), k.opens)}
      ${kpi("clicks", "clicks", int(k.clicks), k.clicks)}
      ${kpi("click_ratio", "click ratio", pct(k.click_ratio), k.click_ratio)}
    </div>
    <div class="grid">
      ${card("Country email engagement", chart("countries", p.charts.countries) + table("countries", [{ h: "billing country", k: "billing_country" }, { h: "opens", k: "opens", n: 1, f: (x) => int(x) }, { h: "clicks", k: "clicks", n: 1, f: (x) => int(x) }, { h: "click ratio", k: "click_ratio", n: 1, f: (x) => pct(x) }, { h: "engaged leads", k: "engaged_leads", n: 1, f: (x) => int(x) }], p.countries))}
      ${card("Campaigns", table("campaigns", [{ h: "campaign", k: "campaign_id", n: 1 }, { h: "sends", k: "sends", n: 1, f: (x) => int(x) }, { h: "opens", k: "opens", n: 1, f: (x) => int(x) }, { h: "clicks", k: "clicks", n: 1, f: (x) => int(x) }, { h: "open rate", k: "open_rate", n: 1, f: (x) => pct(x) }, { h: "click rate", k: "click_rate", n: 1, f: (x) => pct(x) }], p.campaigns))}
    </div>`;
  },
  pipeline(d) {
    const p = d.panels, k = p.kpis;
    return `<div class="kpis">
      ${kpi("tables", "tables", int(k.tables), k.tables)}
      ${kpi("rows_read", "rows read", int(k.rows_read), k.rows_read)}
      ${kpi("quarantined", "quarantined", int(k.quarantined), k.quarantined)}
      ${kpi("late", "late", int(k.late), k.late)}
    </div>
    ${card("Rates", chart("rates", p.charts.rates))}
    ${card("Tables (event log)", table("tables", [{ h: "table", k: "table" }, { h: "last epoch", k: "last_epoch", n: 1 }, { h: "Delta version", k: "delta_version", n: 1 }, { h: "freshness (s)", k: "freshness_seconds", n: 1, f: (x) => dec(x, 1) }, { h: "rows read", k: "rows_read", n: 1, f: (x) => int(x) }, { h: "rows/s", k: "rows_per_second", n: 1, f: (x) => int(x) }, { h: "upserted", k: "upserted", n: 1, f: (x) => int(x) }, { h: "deleted", k: "deleted", n: 1, f: (x) => int(x) }, { h: "quarantined", k: "quarantined", n: 1, f: (x) => int(x) }, { h: "late", k: "late", n: 1, f: (x) => int(x) }], p.tables))}`;
  },
};

let shown = null;
async function load() {
  const r = await fetch(`/api/${page}`, { cache: "no-store" });
  const d = await r.json();
  if (!render[page]) {
    main.innerHTML = `<p class="warn">No page “${esc(page)}”.</p>`;
    return;
  }
  let html = "";
  if (d.epoch === null || d.epoch === undefined) {
    html = `<p class="note">No epoch committed yet; this page updates by itself.</p>`;
  }
  if (d.missing && d.missing.length) {
    html += `<p class="warn" id="missing">No table yet (not in this lakehouse, or nothing committed to it so far): ${esc(d.missing.join(", "))}</p>`;
  }
  if (d.error) html += `<p class="warn">${esc(d.error)}</p>`;
  main.innerHTML = html + render[page](d);
  const e = document.getElementById("epoch");
  e.textContent = d.epoch ?? "–";
  e.dataset.epoch = d.epoch ?? "";
  if (shown !== null && shown !== d.epoch) {
    e.classList.remove("flash");
    void e.offsetWidth;
    e.classList.add("flash");
  }
  shown = d.epoch;
  document.getElementById("updated").textContent = "updated " + new Date().toLocaleTimeString();
}

let busy = false, again = false;
async function refresh() {
  if (busy) { again = true; return; }
  busy = true;
  try { await load(); } catch (err) { console.error(err); }
  busy = false;
  if (again) { again = false; refresh(); }
}

const live = document.getElementById("live");
const events = new EventSource("/api/events");
events.addEventListener("epoch", () => refresh());
events.onopen = () => live.classList.add("on");
events.onerror = () => live.classList.remove("on");
refresh();
