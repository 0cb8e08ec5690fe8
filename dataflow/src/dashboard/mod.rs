//! The live dashboard and the `/metrics` / `/health` endpoints (axum).
//!
//! `tidewater dashboard --lakehouse DIR` and `tidewater demo` serve the pages; `tidewater run
//! --metrics ADDR` serves only `/metrics` and `/health` ([`serve_metrics`]).
//!
//! - **One consistent cut.** A refresher thread watches `<lakehouse>/_tidewater/epochs/` and,
//!   for each new epoch manifest, reads every table the pages need at the Delta version the
//!   manifest gives ([`cut::Reader`]); all pages and `/api/` endpoints answer from that one
//!   cut and say its epoch.
//! - **Live.** `/api/events` is a server-sent-event stream with one `epoch` event per new cut;
//!   the page re-reads its `/api/<page>` JSON then, without a reload.
//! - **Built in.** The HTML, script and style are compiled into the binary
//!   (`assets/`); charts are SVG drawn on the server ([`charts`]). Nothing is fetched from
//!   elsewhere at run time.
//! - **Loopback by default.** The default bind is 127.0.0.1; binding another address is an
//!   explicit choice (and logged). Pages show table contents and counters only, never
//!   configuration (broker credentials stay out).
//!
//! | route | what |
//! |---|---|
//! | `/`, `/offers`, `/claims`, `/engagement`, `/pipeline` | the pages |
//! | `/api/cut` | the epoch of the cut and every table's Delta version |
//! | `/api/offers`, `/api/claims`, `/api/engagement`, `/api/pipeline` | each page's panels as JSON (with the charts as SVG) |
//! | `/api/events` | server-sent events: `epoch` with `{"epoch": e}` per new cut |
//! | `/metrics` | Prometheus text: the run's counters (`demo`), or the event log's totals (`dashboard`) |
//! | `/health` | `{"status": "ok" \| "failed", …}`; 503 when the run has failed |

pub mod charts;
pub mod cut;
pub mod panels;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use axum::extract::{Path as UrlPath, State};
use axum::http::{header, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use futures_util::stream::{self, Stream, StreamExt};
use serde_json::json;

use crate::event_log::{now_micros, EVENT_LOG};
use crate::metrics::{LogCounts, Metrics};
use crate::TidewaterError;
use cut::{Cut, Reader};

const INDEX_HTML: &str = include_str!("assets/index.html");
const APP_JS: &str = include_str!("assets/app.js");
const STYLE_CSS: &str = include_str!("assets/style.css");

/// Where the counters of `/metrics` come from.
enum MetricsFrom {
    /// A running pipeline's (demo, run).
    Live(Arc<Metrics>),
    /// The event log of the cut (a dashboard without a pipeline in its process).
    Log(RwLock<Arc<Metrics>>),
}

struct Shared {
    cut: RwLock<Arc<Cut>>,
    epochs: tokio::sync::watch::Sender<Option<u64>>,
    metrics: MetricsFrom,
    /// The last error reading a cut (shown by `/health` and the pages).
    error: RwLock<Option<String>>,
}

impl Shared {
    /// No cut yet, no error.
    fn new(metrics: MetricsFrom) -> Arc<Shared> {
        let (epochs, _) = tokio::sync::watch::channel(None);
        Arc::new(Shared {
            cut: RwLock::new(Arc::new(Cut::default())),
            epochs,
            metrics,
            error: RwLock::new(None),
        })
    }
}

/// A running HTTP server; dropping it (or [`Server::stop`]) stops it.
pub struct Server {
    /// The address it listens on (with the port the OS chose for port 0).
    pub addr: SocketAddr,
    stop: Arc<AtomicBool>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Server {
    /// Stops the server and waits for its threads.
    pub fn stop(mut self) {
        self.shutdown_now();
    }

    fn shutdown_now(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.shutdown_now();
    }
}

/// Binds `bind` now (so that a taken port is an error here, naming the address).
fn listen(bind: SocketAddr, what: &str) -> Result<std::net::TcpListener, TidewaterError> {
    if !bind.ip().is_loopback() {
        tracing::warn!(%bind, "{what} listens on a non-loopback address, as asked");
    }
    let l = std::net::TcpListener::bind(bind).map_err(|e| TidewaterError::Config {
        key: "--bind".into(),
        message: format!("cannot listen on {bind} for the {what}: {e}"),
    })?;
    l.set_nonblocking(true)
        .map_err(|e| TidewaterError::Runtime(format!("{bind}: {e}")))?;
    Ok(l)
}

/// Runs `app` on `listener` in a thread with its own tokio runtime.
fn spawn_http(
    listener: std::net::TcpListener,
    app: Router,
    stop: Arc<AtomicBool>,
    mut threads: Vec<std::thread::JoinHandle<()>>,
) -> Result<Server, TidewaterError> {
    let addr = listener
        .local_addr()
        .map_err(|e| TidewaterError::Runtime(format!("listener address: {e}")))?;
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .map_err(|e| TidewaterError::Runtime(format!("tokio runtime: {e}")))?;
    threads.push(std::thread::spawn(move || {
        rt.block_on(async move {
            let listener = match tokio::net::TcpListener::from_std(listener) {
                Ok(l) => l,
                Err(e) => {
                    tracing::error!(error = %e, "http listener");
                    return;
                }
            };
            let served = axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = rx.await;
                })
                .await;
            if let Err(e) = served {
                tracing::error!(error = %e, "http server stopped");
            }
        });
        // Open SSE streams would keep the runtime busy; do not wait for them.
        rt.shutdown_timeout(Duration::from_millis(100));
    }));
    Ok(Server {
        addr,
        stop,
        shutdown: Some(tx),
        threads,
    })
}

/// Serves the dashboard of `lakehouse` on `bind`; with `metrics`, `/metrics` and `/health`
/// show that running pipeline's counters, otherwise the event log's totals.
pub fn serve(
    lakehouse: &Path,
    bind: SocketAddr,
    metrics: Option<Arc<Metrics>>,
) -> Result<Server, TidewaterError> {
    let listener = listen(bind, "dashboard")?;
    let shared = Shared::new(match metrics {
        Some(m) => MetricsFrom::Live(m),
        None => MetricsFrom::Log(RwLock::new(Arc::new(Metrics::default()))),
    });
    let stop = Arc::new(AtomicBool::new(false));
    let refresher = {
        let (shared, stop, lakehouse) = (shared.clone(), stop.clone(), lakehouse.to_path_buf());
        std::thread::spawn(move || refresh(&lakehouse, &shared, &stop))
    };
    let app = Router::new()
        .route("/", get(index))
        .route("/offers", get(index))
        .route("/claims", get(index))
        .route("/engagement", get(index))
        .route("/pipeline", get(index))
        .route("/assets/app.js", get(app_js))
        .route("/assets/style.css", get(style_css))
        .route("/api/cut", get(api_cut))
        .route("/api/events", get(api_events))
        .route("/api/{page}", get(api_page))
        .route("/metrics", get(metrics_text))
        .route("/health", get(health))
        .with_state(shared);
    spawn_http(listener, app, stop, vec![refresher])
}

/// Serves only `/metrics` and `/health` of a running pipeline (`tidewater run --metrics`).
pub fn serve_metrics(bind: SocketAddr, metrics: Arc<Metrics>) -> Result<Server, TidewaterError> {
    let listener = listen(bind, "metrics endpoint")?;
    let shared = Shared::new(MetricsFrom::Live(metrics));
    let app = Router::new()
        .route("/metrics", get(metrics_text))
        .route("/health", get(health))
        .with_state(shared);
    spawn_http(listener, app, Arc::new(AtomicBool::new(false)), Vec::new())
}

/// Reads a new cut whenever a newer epoch manifest appears, until `stop`.
fn refresh(lakehouse: &Path, shared: &Shared, stop: &AtomicBool) {
    let mut reader = Reader::new(lakehouse, &panels::TABLES);
    let mut current: Option<u64> = None;
    while !stop.load(Ordering::SeqCst) {
        if let Some(e) = cut::newest_epoch(lakehouse).filter(|e| Some(*e) > current) {
            match reader.read(e) {
                Ok(cut) => {
                    if let MetricsFrom::Log(m) = &shared.metrics {
                        *m.write().expect("metrics lock") = Arc::new(metrics_of_log(&cut));
                    }
                    *shared.cut.write().expect("cut lock") = Arc::new(cut);
                    *shared.error.write().expect("error lock") = None;
                    current = Some(e);
                    shared.epochs.send_replace(Some(e));
                    tracing::debug!(epoch = e, "dashboard cut loaded");
                }
                Err(err) => {
                    // A manifest can name a version whose files a concurrent vacuum removed,
                    // or a table mid-creation: say so and try again.
                    tracing::warn!(epoch = e, error = %err, "dashboard: reading the cut failed");
                    *shared.error.write().expect("error lock") = Some(err);
                }
            }
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The counters of `/metrics` from the event log rows of a cut.
fn metrics_of_log(cut: &Cut) -> Metrics {
    let m = Metrics::default();
    let int = |r: &cut::JsonRow, c: &str| r.get(c).and_then(|v| v.as_u64()).unwrap_or(0);
    let mut last: Option<(u64, i64)> = None;
    for r in cut.table(EVENT_LOG) {
        let table = r.get("table").and_then(|v| v.as_str()).unwrap_or("");
        m.log.add(
            table,
            LogCounts {
                rows_read: int(r, "rows_read"),
                upserted: int(r, "upserted"),
                deleted: int(r, "deleted"),
                stale: int(r, "stale_ignored"),
                quarantined: int(r, "quarantined"),
                dropped: int(r, "dropped"),
                late: int(r, "late"),
            },
        );
        let at = r
            .get("committed_at")
            .and_then(|v| v.as_str())
            .and_then(crate::sql::convert::parse_timestamp)
            .unwrap_or(0);
        let e = int(r, "epoch");
        if last.is_none_or(|l| (e, at) > l) {
            last = Some((e, at));
        }
    }
    if let Some((e, at)) = last {
        m.log.resumed(e, at);
    }
    m
}

type St = State<Arc<Shared>>;

async fn index() -> Html<&'static str> {
    Html(INDEX_HTML)
}

async fn app_js() -> Response {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        APP_JS,
    )
        .into_response()
}

async fn style_css() -> Response {
    (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
        STYLE_CSS,
    )
        .into_response()
}

fn current(s: &Shared) -> Arc<Cut> {
    s.cut.read().expect("cut lock").clone()
}

async fn api_cut(State(s): St) -> Json<serde_json::Value> {
    let cut = current(&s);
    Json(json!({
        "epoch": cut.epoch,
        "pipeline": cut.pipeline,
        "tables": cut.versions,
        "error": s.error.read().expect("error lock").clone(),
    }))
}

async fn api_page(State(s): St, UrlPath(page): UrlPath<String>) -> Response {
    let cut = current(&s);
    match panels::page(&page, &cut, now_micros()) {
        Some(mut v) => {
            v["error"] = json!(s.error.read().expect("error lock").clone());
            Json(v).into_response()
        }
        None => (
            StatusCode::NOT_FOUND,
            Json(json!({"error": format!("no page `{page}`; pages: offers, claims, engagement, pipeline")})),
        )
            .into_response(),
    }
}

async fn api_events(State(s): St) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let mut rx = s.epochs.subscribe();
    let first = *rx.borrow_and_update();
    let event = |e: Option<u64>| {
        Ok(Event::default()
            .event("epoch")
            .data(json!({"epoch": e}).to_string()))
    };
    let rest = stream::unfold(rx, move |mut rx| async move {
        rx.changed().await.ok()?;
        let e = *rx.borrow_and_update();
        Some((event(e), rx))
    });
    Sse::new(stream::once(async move { event(first) }).chain(rest)).keep_alive(KeepAlive::default())
}

fn metrics_now(s: &Shared) -> Arc<Metrics> {
    match &s.metrics {
        MetricsFrom::Live(m) => m.clone(),
        MetricsFrom::Log(m) => m.read().expect("metrics lock").clone(),
    }
}

async fn metrics_text(State(s): St) -> Response {
    let text = metrics_now(&s).prometheus_text(now_micros());
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response()
}

async fn health(State(s): St) -> Response {
    let m = metrics_now(&s);
    let failed = m.error();
    let body = json!({
        "status": if failed.is_some() { "failed" } else { "ok" },
        "error": failed,
        "last_epoch": m.last_epoch.load(Ordering::Relaxed),
        "epochs_committed": m.epochs_committed.load(Ordering::Relaxed),
        "dashboard_epoch": current(&s).epoch,
    });
    let code = if body["status"] == "ok" {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, Json(body)).into_response()
}
