//! The dashboard's panels: per page, the JSON of `/api/<page>` computed from one [`Cut`].
//!
//! Every page's JSON carries the epoch it reflects; a page whose tables are not in the
//! lakehouse says which ones are missing (`missing`) instead of showing zeros.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use super::cut::{Cut, JsonRow};
use crate::event_log::EVENT_LOG;
use crate::sql::convert::parse_timestamp;

/// The pages, in menu order: (path segment, title).
pub const PAGES: [(&str, &str); 4] = [
    ("offers", "Offers"),
    ("claims", "Claims"),
    ("engagement", "Engagement"),
    ("pipeline", "Pipeline"),
];

/// The tables the pages read.
pub const TABLES: [&str; 9] = [
    "customer_360",
    "offers",
    "cashback_economics",
    "loss_ratio",
    "incidents_by_severity",
    "claims_scored",
    "country_email_engagement",
    "campaign_email_engagement",
    EVENT_LOG,
];

fn f(r: &JsonRow, c: &str) -> f64 {
    r.get(c).and_then(Value::as_f64).unwrap_or(0.0)
}

fn i(r: &JsonRow, c: &str) -> i64 {
    r.get(c)
        .and_then(|v| v.as_i64().or_else(|| v.as_f64().map(|x| x as i64)))
        .unwrap_or(0)
}

fn s<'a>(r: &'a JsonRow, c: &str) -> &'a str {
    r.get(c).and_then(Value::as_str).unwrap_or("")
}

/// The JSON of page `page` (one of [`PAGES`]) for `cut`, `now` µs since the Unix epoch.
pub fn page(page: &str, cut: &Cut, now: i64) -> Option<Value> {
    let missing = |tables: &[&str]| -> Vec<String> {
        tables
            .iter()
            .filter(|t| !cut.has(t))
            .map(|t| t.to_string())
            .collect()
    };
    let mut v = match page {
        "offers" => {
            let need = ["customer_360", "offers", "cashback_economics"];
            json!({"missing": missing(&need), "panels": offers(cut)})
        }
        "claims" => {
            let need = ["loss_ratio", "incidents_by_severity", "claims_scored"];
            json!({"missing": missing(&need), "panels": claims(cut)})
        }
        "engagement" => {
            let need = ["country_email_engagement"];
            json!({"missing": missing(&need), "panels": engagement(cut)})
        }
        "pipeline" => json!({"missing": missing(&[EVENT_LOG]), "panels": pipeline(cut, now)}),
        _ => return None,
    };
    v["epoch"] = json!(cut.epoch);
    v["pipeline"] = json!(cut.pipeline);
    v["page"] = json!(page);
    Some(v)
}

/// Offers: KPIs, active offers by type, cash back versus break-even per month, favourites,
/// the newest offers.
fn offers(cut: &Cut) -> Value {
    let customers = cut.table("customer_360");
    let offers = cut.table("offers");
    let econ = cut.table("cashback_economics");
    let mut by_type: BTreeMap<&str, i64> = BTreeMap::new();
    for r in offers {
        *by_type.entry(s(r, "offer_type")).or_default() += 1;
    }
    let with_offer: std::collections::BTreeSet<i64> =
        offers.iter().map(|r| i(r, "customer_id")).collect();
    let mut favourites: BTreeMap<&str, i64> = BTreeMap::new();
    for r in customers {
        let c = s(r, "favourite_category");
        *favourites
            .entry(if c.is_empty() { "none" } else { c })
            .or_default() += 1;
    }
    // Per month, over all segments.
    let mut months: BTreeMap<String, (f64, f64, f64)> = BTreeMap::new();
    let (mut paid, mut earned, mut loss) = (0.0, 0.0, 0.0);
    let mut losing = 0;
    for r in econ {
        let m = s(r, "month").get(..7).unwrap_or("").to_string();
        let e = months.entry(m).or_default();
        e.0 += f(r, "cashback_paid_cents");
        e.1 += f(r, "interchange_earned_cents");
        e.2 += f(r, "loss_cents");
        paid += f(r, "cashback_paid_cents");
        earned += f(r, "interchange_earned_cents");
        loss += f(r, "loss_cents");
        losing += (f(r, "loss_cents") > 0.0) as i64;
    }
    let mut economics: Vec<&JsonRow> = econ.iter().collect();
    economics
        .sort_by(|a, b| (s(a, "month"), s(a, "segment")).cmp(&(s(b, "month"), s(b, "segment"))));
    let mut newest: Vec<&JsonRow> = offers.iter().collect();
    newest.sort_by(|a, b| {
        (
            s(b, "qualified_at"),
            i(a, "customer_id"),
            s(a, "offer_type"),
        )
            .cmp(&(
                s(a, "qualified_at"),
                i(b, "customer_id"),
                s(b, "offer_type"),
            ))
    });
    newest.truncate(12);
    let month_labels: Vec<String> = months.keys().cloned().collect();
    json!({
        "kpis": {
            "customers": customers.len(),
            "active_offers": offers.len(),
            "customers_with_offers": with_offer.len(),
            "cashback_paid_cents": paid.round() as i64,
            "interchange_earned_cents": earned.round() as i64,
            "net_cents": (earned - paid).round() as i64,
            "loss_cents": loss.round() as i64,
            "losing_segment_months": losing,
        },
        "offers_by_type": by_type.iter().map(|(t, n)| json!({"offer_type": t, "offers": n})).collect::<Vec<_>>(),
        "favourites": favourites.iter().map(|(c, n)| json!({"category": c, "customers": n})).collect::<Vec<_>>(),
        "economics": economics.iter().map(|r| json!({
            "segment": s(r, "segment"),
            "month": s(r, "month").get(..7).unwrap_or(""),
            "transactions": i(r, "transactions"),
            "spend_cents": i(r, "spend_cents"),
            "cashback_paid_cents": i(r, "cashback_paid_cents"),
            "interchange_earned_cents": f(r, "interchange_earned_cents"),
            "loss_cents": f(r, "loss_cents"),
            "cashback_rate": f(r, "cashback_rate"),
            "break_even_rate": f(r, "break_even_rate"),
        })).collect::<Vec<_>>(),
        "newest_offers": newest.iter().map(|r| json!({
            "customer_id": i(r, "customer_id"),
            "name": s(r, "name"),
            "segment": s(r, "segment"),
            "offer_type": s(r, "offer_type"),
            "offer": s(r, "offer"),
            "events_attended": i(r, "events_attended"),
            "qualified_at": s(r, "qualified_at"),
        })).collect::<Vec<_>>(),
        "charts": {
            "offers_by_type": super::charts::bars(
                "Active offers by type",
                &by_type.iter().map(|(t, n)| (t.to_string(), *n as f64)).collect::<Vec<_>>(),
            ),
            "cashback": super::charts::lines(
                "Cash back paid vs interchange earned (break-even), per month",
                &month_labels,
                &[
                    ("cash back paid", months.values().map(|m| m.0 / 100.0).collect()),
                    ("interchange earned (break-even)", months.values().map(|m| m.1 / 100.0).collect()),
                    ("loss", months.values().map(|m| m.2 / 100.0).collect()),
                ],
            ),
            "favourites": super::charts::bars(
                "Customers by favourite category",
                &favourites.iter().map(|(c, n)| (c.to_string(), *n as f64)).collect::<Vec<_>>(),
            ),
        },
    })
}

/// Claims: loss ratio by region and coverage, incidents by severity, flagged claims.
fn claims(cut: &Cut) -> Value {
    let mut ratio: Vec<&JsonRow> = cut.table("loss_ratio").iter().collect();
    ratio.sort_by(|a, b| {
        (s(a, "region"), s(a, "coverage")).cmp(&(s(b, "region"), s(b, "coverage")))
    });
    let mut incidents: Vec<&JsonRow> = cut.table("incidents_by_severity").iter().collect();
    incidents.sort_by(|a, b| {
        (s(a, "incident_type"), s(a, "damage_severity"))
            .cmp(&(s(b, "incident_type"), s(b, "damage_severity")))
    });
    let scored = cut.table("claims_scored");
    let mut actions: BTreeMap<&str, i64> = BTreeMap::new();
    for r in scored {
        *actions.entry(s(r, "next_best_action")).or_default() += 1;
    }
    let mut flagged: Vec<&JsonRow> = scored
        .iter()
        .filter(|r| s(r, "next_best_action") != "fast_track")
        .collect();
    flagged.sort_by_key(|r| std::cmp::Reverse(i(r, "claim_id")));
    let flagged_total = flagged.len();
    flagged.truncate(20);
    let flags = [
        "speed_mismatch",
        "over_limit",
        "early_claim",
        "severity_mismatch",
        "no_telematics",
    ];
    let (paid, expenses, earned) = ratio.iter().fold((0.0, 0.0, 0.0), |a, r| {
        (
            a.0 + f(r, "paid_cents"),
            a.1 + f(r, "adjustment_expense_cents"),
            a.2 + f(r, "earned_premium_cents"),
        )
    });
    json!({
        "kpis": {
            "claims": scored.len(),
            "flagged": flagged_total,
            "investigate": actions.get("investigate").copied().unwrap_or(0),
            "refer": actions.get("refer").copied().unwrap_or(0),
            "fast_track": actions.get("fast_track").copied().unwrap_or(0),
            "loss_ratio": if earned > 0.0 { (paid + expenses) / earned } else { 0.0 },
        },
        "loss_ratio": ratio.iter().map(|r| json!({
            "region": s(r, "region"),
            "coverage": s(r, "coverage"),
            "policies": i(r, "policies"),
            "claims": i(r, "claims"),
            "loss_ratio": f(r, "loss_ratio"),
        })).collect::<Vec<_>>(),
        "incidents": incidents.iter().map(|r| json!({
            "incident_type": s(r, "incident_type"),
            "damage_severity": s(r, "damage_severity"),
            "claims": i(r, "claims"),
        })).collect::<Vec<_>>(),
        "flagged": flagged.iter().map(|r| json!({
            "claim_id": i(r, "claim_id"),
            "region": s(r, "region"),
            "incident_type": s(r, "incident_type"),
            "damage_severity": s(r, "damage_severity"),
            "claim_amount_cents": i(r, "claim_amount_cents"),
            "flags": flags.iter().filter(|c| r.get(**c).and_then(Value::as_bool) == Some(true)).collect::<Vec<_>>(),
            "next_best_action": s(r, "next_best_action"),
        })).collect::<Vec<_>>(),
        "charts": {
            "loss_ratio": super::charts::bars(
                "Loss ratio by region / coverage",
                &ratio.iter().map(|r| (format!("{}/{}", s(r, "region"), s(r, "coverage")), f(r, "loss_ratio"))).collect::<Vec<_>>(),
            ),
            "incidents": super::charts::bars(
                "Claims by incident type / damage severity",
                &incidents.iter().map(|r| (format!("{}/{}", s(r, "incident_type"), s(r, "damage_severity")), i(r, "claims") as f64)).collect::<Vec<_>>(),
            ),
        },
    })
}

/// Engagement: opens, clicks and click ratio per billing country (and per campaign).
fn engagement(cut: &Cut) -> Value {
    let mut countries: Vec<&JsonRow> = cut.table("country_email_engagement").iter().collect();
    countries.sort_by(|a, b| {
        (std::cmp::Reverse(i(a, "opens")), s(a, "billing_country"))
            .cmp(&(std::cmp::Reverse(i(b, "opens")), s(b, "billing_country")))
    });
    let mut campaigns: Vec<&JsonRow> = cut.table("campaign_email_engagement").iter().collect();
    campaigns.sort_by_key(|r| i(r, "campaign_id"));
    let opens: i64 = countries.iter().map(|r| i(r, "opens")).sum();
    let clicks: i64 = countries.iter().map(|r| i(r, "clicks")).sum();
    json!({
        "kpis": {
            "countries": countries.len(),
            "opens": opens,
            "clicks": clicks,
            "click_ratio": if opens > 0 { clicks as f64 / opens as f64 } else { 0.0 },
        },
        "countries": countries.iter().map(|r| json!({
            "billing_country": s(r, "billing_country"),
            "opens": i(r, "opens"),
            "clicks": i(r, "clicks"),
            "click_ratio": f(r, "click_ratio"),
            "engaged_leads": i(r, "engaged_leads"),
        })).collect::<Vec<_>>(),
        "campaigns": campaigns.iter().map(|r| json!({
            "campaign_id": i(r, "campaign_id"),
            "sends": i(r, "sends"),
            "opens": i(r, "opens"),
            "clicks": i(r, "clicks"),
            "open_rate": f(r, "open_rate"),
            "click_rate": f(r, "click_rate"),
        })).collect::<Vec<_>>(),
        "charts": {
            "countries": super::charts::bars(
                "Click ratio by billing country",
                &countries.iter().map(|r| (s(r, "billing_country").to_string(), f(r, "click_ratio"))).collect::<Vec<_>>(),
            ),
        },
    })
}

/// Pipeline: per table, from the event log up to the cut's epoch.
fn pipeline(cut: &Cut, now: i64) -> Value {
    #[derive(Default)]
    struct T {
        last_epoch: u64,
        version: Option<i64>,
        rows_read: i64,
        upserted: i64,
        deleted: i64,
        stale: i64,
        quarantined: i64,
        late: i64,
        first_at: Option<i64>,
        last_at: i64,
        epochs: Vec<(u64, i64, i64)>,
    }
    let mut by: BTreeMap<String, T> = BTreeMap::new();
    for r in cut.table(EVENT_LOG) {
        let t = by.entry(s(r, "table").to_string()).or_default();
        let epoch = i(r, "epoch") as u64;
        t.last_epoch = t.last_epoch.max(epoch);
        t.rows_read += i(r, "rows_read");
        t.upserted += i(r, "upserted");
        t.deleted += i(r, "deleted");
        t.stale += i(r, "stale_ignored");
        t.quarantined += i(r, "quarantined");
        t.late += i(r, "late");
        let closed = parse_timestamp(s(r, "epoch_closed_at")).unwrap_or(0);
        let at = parse_timestamp(s(r, "committed_at")).unwrap_or(0);
        t.first_at = Some(t.first_at.map_or(closed, |x: i64| x.min(closed)));
        t.last_at = t.last_at.max(at);
        t.epochs.push((epoch, at, i(r, "rows_read")));
    }
    for (table, t) in by.iter_mut() {
        t.version = cut.versions.get(table).copied();
    }
    let tables: Vec<Value> = by
        .iter()
        .map(|(name, t)| {
            // The rate over the last (up to) 10 epochs of the table.
            let mut e = t.epochs.clone();
            e.sort();
            let recent = &e[e.len().saturating_sub(10)..];
            let rate = match (recent.first(), recent.last()) {
                (Some(a), Some(b)) if b.1 > a.1 => {
                    recent[1..].iter().map(|x| x.2).sum::<i64>() as f64 / ((b.1 - a.1) as f64 / 1e6)
                }
                _ => 0.0,
            };
            json!({
                "table": name,
                "last_epoch": t.last_epoch,
                "delta_version": t.version,
                "freshness_seconds": ((now - t.last_at).max(0) as f64 / 1e6),
                "rows_read": t.rows_read,
                "upserted": t.upserted,
                "deleted": t.deleted,
                "stale_ignored": t.stale,
                "quarantined": t.quarantined,
                "late": t.late,
                "rows_per_second": rate,
            })
        })
        .collect();
    json!({
        "kpis": {
            "tables": tables.len(),
            "rows_read": by.values().map(|t| t.rows_read).sum::<i64>(),
            "quarantined": by.values().map(|t| t.quarantined).sum::<i64>(),
            "late": by.values().map(|t| t.late).sum::<i64>(),
        },
        "tables": tables,
        "charts": {
            "rates": super::charts::bars(
                "Rows read per second (last 10 epochs)",
                &tables.iter().filter(|t| t["rows_read"].as_i64() > Some(0)).map(|t| (t["table"].as_str().unwrap_or("").to_string(), t["rows_per_second"].as_f64().unwrap_or(0.0))).collect::<Vec<_>>(),
            ),
        },
    })
}
