//! The `tidewater` command line: a thin clap layer over [`tidewater::RunOptions`] and the
//! library's commands.

use std::io::IsTerminal;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::{Args, Parser, Subcommand};
use tidewater::{run, PipelineConfig, RunOptions, TidewaterError};

/// mimalloc: the engine allocates many small, short-lived buffers per record; glibc malloc
/// spent about a third of the run time on them (bench/RESULTS.md, 2026-11-22 profile).
/// (Build with `--no-default-features` to profile heap use with the system allocator.)
#[cfg(feature = "mimalloc")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "tidewater",
    version,
    about = "Streaming CDC into epoch-consistent Delta Lake tables"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run a pipeline.
    Run {
        /// The pipeline file (TOML).
        pipeline: PathBuf,
        #[command(flatten)]
        run: RunArgs,
        /// Number of processes of the timely cluster.
        #[arg(long, default_value_t = 1)]
        processes: usize,
        /// This process's index in the cluster (0-based).
        #[arg(long, default_value_t = 0)]
        process_id: usize,
        /// A file with one `host:port` per process (required with --processes > 1).
        #[arg(long)]
        hostfile: Option<PathBuf>,
    },
    /// Start a local timely cluster of P processes on loopback and wait for them.
    Cluster {
        /// The pipeline file (TOML).
        pipeline: PathBuf,
        #[command(flatten)]
        run: RunArgs,
        /// Number of processes.
        #[arg(long, default_value_t = 2)]
        processes: usize,
    },
    /// Run the shipped pipelines (bank, marketing, telematics, offers) on generated data into
    /// ./lakehouse (no external services) and serve the live dashboard.
    Demo {
        /// Where to write the tables.
        #[arg(long, default_value = "lakehouse")]
        lakehouse: PathBuf,
        /// Events to generate.
        #[arg(long, default_value_t = 200_000)]
        events: u64,
        /// Worker threads.
        #[arg(long, default_value_t = 2)]
        workers: usize,
        /// Where the dashboard (and /metrics, /health) listens; port 0 picks a free port.
        #[arg(long, default_value = "127.0.0.1:8080")]
        bind: SocketAddr,
        /// Do not serve the dashboard.
        #[arg(long)]
        no_dashboard: bool,
        /// Exit when the run is done (default: keep serving the dashboard until Ctrl-C).
        #[arg(long)]
        exit: bool,
        /// Generated events per second per simulated world (each stream of a world gets its
        /// share; default: as fast as the generators go, capped at 100,000/s per bank source).
        #[arg(long)]
        rate: Option<u64>,
    },
    /// Serve the live dashboard of a lakehouse (pages, /api/, /metrics, /health) until
    /// stopped.
    Dashboard {
        /// The lakehouse directory.
        #[arg(long)]
        lakehouse: PathBuf,
        /// Where to listen (loopback by default; another address is an explicit choice).
        #[arg(long, default_value = "127.0.0.1:8080")]
        bind: SocketAddr,
    },
    /// Print, as JSON, the Delta version of every table for the newest epoch in the manifest
    /// (or for --epoch E).
    Snapshot {
        /// The lakehouse directory.
        #[arg(long)]
        lakehouse: PathBuf,
        /// The epoch (default: the newest).
        #[arg(long)]
        epoch: Option<u64>,
    },
    /// Print a short summary of the event log (`_event_log`): per table the last epoch, its
    /// Delta version, totals and rates, quarantined rows and expectation counts.
    Status {
        /// The lakehouse directory.
        #[arg(long)]
        lakehouse: PathBuf,
    },
    /// Remove Parquet files that no commit references (orphans left by a crash) from every
    /// table of a lakehouse. Committed files, even removed ones, are kept.
    Vacuum {
        /// The lakehouse directory.
        #[arg(long)]
        lakehouse: PathBuf,
        /// Only list the orphan files.
        #[arg(long)]
        dry_run: bool,
    },
}

#[derive(Args, Clone)]
struct RunArgs {
    /// Worker threads per process.
    #[arg(long, default_value_t = 1)]
    workers: usize,
    /// Exit once every bounded source is exhausted and committed.
    #[arg(long)]
    exit_when_idle: bool,
    /// Serve /metrics (Prometheus text) and /health on this address (process 0 of a
    /// cluster only), e.g. 127.0.0.1:9464.
    #[arg(long)]
    metrics: Option<SocketAddr>,
}

fn main() -> ExitCode {
    tidewater::disable_huge_pages();
    let cli = Cli::parse();
    let tty = std::io::stderr().is_terminal();
    let filter =
        tracing_subscriber::EnvFilter::try_from_env("TIDEWATER_LOG").unwrap_or_else(|_| {
            tracing_subscriber::EnvFilter::new(if tty { "warn" } else { "warn,tidewater=info" })
        });
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(tty)
        .init();
    match dispatch(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            let code = e
                .downcast_ref::<TidewaterError>()
                .map(|t| t.exit_code())
                .unwrap_or(1);
            ExitCode::from(code as u8)
        }
    }
}

fn dispatch(cmd: Cmd) -> anyhow::Result<()> {
    match cmd {
        Cmd::Run {
            pipeline,
            run: args,
            processes,
            process_id,
            hostfile,
        } => {
            let cfg = PipelineConfig::load(&pipeline)?;
            let addresses = match (&hostfile, processes) {
                (_, 1) => Vec::new(),
                (Some(f), _) => read_hostfile(f)?,
                (None, _) => {
                    return Err(TidewaterError::Config {
                        key: "--hostfile".into(),
                        message: "required with --processes > 1".into(),
                    }
                    .into())
                }
            };
            if process_id >= processes {
                return Err(TidewaterError::Config {
                    key: "--process-id".into(),
                    message: format!("{process_id} is not below --processes {processes}"),
                }
                .into());
            }
            let metrics = Arc::new(tidewater::metrics::Metrics::default());
            let server = match args.metrics {
                Some(bind) if process_id == 0 => {
                    let s = tidewater::dashboard::serve_metrics(bind, metrics.clone())?;
                    eprintln!("metrics: http://{}/metrics (health: /health)", s.addr);
                    Some(s)
                }
                _ => None,
            };
            let summary = run(
                cfg,
                RunOptions {
                    workers: args.workers.max(1),
                    processes,
                    process_id,
                    addresses,
                    exit_when_idle: args.exit_when_idle,
                    progress: true,
                    metrics: Some(metrics),
                },
            )?;
            drop(server);
            eprintln!(
                "done: {} events parsed, {} quarantined, {} epochs committed (last {}) in {:.2?}",
                summary.records,
                summary.quarantined,
                summary.epochs_committed,
                summary.last_epoch,
                summary.elapsed
            );
            if summary.replayed_epochs > 0 || summary.restored_from.is_some() {
                eprintln!(
                    "restart: {} recorded epochs replayed{}",
                    summary.replayed_epochs,
                    summary
                        .restored_from
                        .map(|c| format!(
                            ", operator state restored from the checkpoint of epoch {c}"
                        ))
                        .unwrap_or_default()
                );
            }
            Ok(())
        }
        Cmd::Cluster {
            pipeline,
            run: args,
            processes,
        } => cluster(&pipeline, &args, processes),
        Cmd::Demo {
            lakehouse,
            events,
            workers,
            bind,
            no_dashboard,
            exit,
            rate,
        } => demo(
            &lakehouse,
            events,
            workers,
            DemoServe {
                bind: (!no_dashboard).then_some(bind),
                exit,
                rate,
            },
        ),
        Cmd::Dashboard { lakehouse, bind } => {
            if !lakehouse.is_dir() {
                bail!(TidewaterError::Config {
                    key: "--lakehouse".into(),
                    message: format!("{} is not a directory", lakehouse.display()),
                });
            }
            let server = tidewater::dashboard::serve(&lakehouse, bind, None)?;
            eprintln!(
                "tidewater dashboard of {}: http://{}/ (Ctrl-C to stop)",
                lakehouse.display(),
                server.addr
            );
            loop {
                std::thread::park();
            }
        }
        Cmd::Snapshot { lakehouse, epoch } => snapshot(&lakehouse, epoch),
        Cmd::Status { lakehouse } => {
            if !lakehouse.is_dir() {
                bail!(TidewaterError::Config {
                    key: "--lakehouse".into(),
                    message: format!("{} is not a directory", lakehouse.display()),
                });
            }
            print!("{}", tidewater::event_log::status(&lakehouse)?);
            Ok(())
        }
        Cmd::Vacuum { lakehouse, dry_run } => {
            if !lakehouse.is_dir() {
                bail!(TidewaterError::Config {
                    key: "--lakehouse".into(),
                    message: format!("{} is not a directory", lakehouse.display()),
                });
            }
            let files = tidewater_connectors::delta::vacuum_lakehouse(&lakehouse, dry_run)?;
            for f in &files {
                println!("{}", f.display());
            }
            eprintln!(
                "{} {} orphan file(s) in {}",
                if dry_run { "found" } else { "removed" },
                files.len(),
                lakehouse.display()
            );
            Ok(())
        }
    }
}

fn read_hostfile(path: &Path) -> anyhow::Result<Vec<String>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading hostfile {}", path.display()))?;
    Ok(text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(String::from)
        .collect())
}

/// Starts `processes` local processes of one timely cluster on loopback and waits for all;
/// if one fails, the others are stopped.
fn cluster(pipeline: &Path, args: &RunArgs, processes: usize) -> anyhow::Result<()> {
    if processes == 0 {
        bail!(TidewaterError::Config {
            key: "--processes".into(),
            message: "must be at least 1".into()
        });
    }
    PipelineConfig::load(pipeline)?; // report config errors once, before starting anything
    const ATTEMPTS: usize = 5;
    for attempt in 1..=ATTEMPTS {
        match cluster_once(pipeline, args, processes)? {
            ClusterEnd::Done => return Ok(()),
            ClusterEnd::AddressInUse(i) if attempt < ATTEMPTS => {
                eprintln!(
                    "cluster process {i} found its port taken at start; \
                     starting the cluster again on other ports ({attempt}/{ATTEMPTS})"
                );
            }
            ClusterEnd::AddressInUse(i) => bail!(
                "cluster process {i} found its port taken at start, {ATTEMPTS} times in a row"
            ),
        }
    }
    unreachable!("the last attempt returns")
}

/// How one start of a local cluster ended (other failures are errors).
enum ClusterEnd {
    Done,
    /// Process `i` could not listen on its port (exit code 3, nothing read or written yet).
    AddressInUse(usize),
}

/// `n` distinct loopback ports that are free now, picked at random below the kernel's
/// ephemeral range: ports of that range are also handed to outgoing connections and to every
/// `bind(0)`, so a port picked there can be taken before the cluster listens on it.
fn free_ports(n: usize) -> anyhow::Result<Vec<u16>> {
    let ephemeral_low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32768);
    let (lo, hi) = (10_000u16, ephemeral_low.max(10_001));
    let mut ports = Vec::new();
    for _ in 0..10_000 {
        if ports.len() == n {
            return Ok(ports);
        }
        // A v4 UUID is random from the OS's generator; the low 62 bits of its second half are
        // all random (its version and variant bits lie elsewhere).
        let random = uuid::Uuid::new_v4().as_u64_pair().1;
        let port = lo + (random % u64::from(hi - lo)) as u16;
        if !ports.contains(&port) && TcpListener::bind(("127.0.0.1", port)).is_ok() {
            ports.push(port);
        }
    }
    // Every random pick was taken: fall back to ports the kernel hands out.
    while ports.len() < n {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .context("picking free loopback ports")?
            .port();
        if !ports.contains(&port) {
            ports.push(port);
        }
    }
    Ok(ports)
}

fn cluster_once(pipeline: &Path, args: &RunArgs, processes: usize) -> anyhow::Result<ClusterEnd> {
    let ports = free_ports(processes)?;
    let dir = tempfile::tempdir().context("creating a temporary directory for the hostfile")?;
    let hostfile = dir.path().join("hosts.txt");
    let hosts: String = ports.iter().map(|p| format!("127.0.0.1:{p}\n")).collect();
    std::fs::write(&hostfile, hosts)?;
    let exe = std::env::current_exe()?;
    let mut children: Vec<Child> = Vec::new();
    for i in 0..processes {
        let mut cmd = Command::new(&exe);
        cmd.arg("run")
            .arg(pipeline)
            .args(["--workers", &args.workers.to_string()])
            .args(["--processes", &processes.to_string()])
            .args(["--process-id", &i.to_string()])
            .arg("--hostfile")
            .arg(&hostfile);
        if args.exit_when_idle {
            cmd.arg("--exit-when-idle");
        }
        if let (0, Some(bind)) = (i, args.metrics) {
            cmd.arg("--metrics").arg(bind.to_string());
        }
        children.push(
            cmd.spawn()
                .with_context(|| format!("starting process {i}"))?,
        );
    }
    let mut failed = None;
    let mut remaining: Vec<(usize, Child)> = children.into_iter().enumerate().collect();
    while !remaining.is_empty() {
        let mut still = Vec::new();
        for (i, mut c) in remaining {
            match c.try_wait()? {
                Some(status) if !status.success() => {
                    failed.get_or_insert((i, status));
                }
                Some(_) => {}
                None => still.push((i, c)),
            }
        }
        remaining = still;
        if failed.is_some() {
            for (_, c) in remaining.iter_mut() {
                let _ = c.kill();
                let _ = c.wait();
            }
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    match failed {
        None => Ok(ClusterEnd::Done),
        Some((i, status)) if status.code() == Some(3) => Ok(ClusterEnd::AddressInUse(i)),
        Some((i, status)) => {
            bail!("cluster process {i} failed ({status}); the others were stopped")
        }
    }
}

/// The shipped marketing pipeline (`pipelines/marketing/`), built into the binary so that the
/// demo needs no files.
const MARKETING_TOML: &str = include_str!("../../pipelines/marketing/marketing.toml");

/// The shipped telematics pipeline (`pipelines/telematics/`), built in like marketing's.
const TELEMATICS_TOML: &str = include_str!("../../pipelines/telematics/telematics.toml");

macro_rules! pipeline_sql {
    ($dir:literal: $($file:literal),* $(,)?) => {
        &[$(($file, include_str!(concat!("../../pipelines/", $dir, "/", $file)))),*]
    };
}

/// The SQL files of the marketing pipeline's views, by file name.
const MARKETING_SQL: &[(&str, &str)] = pipeline_sql!("marketing":
    "dim_account.sql",
    "dim_user.sql",
    "fct_email_sends.sql",
    "fct_email_opens.sql",
    "fct_email_clicks.sql",
    "int_email_open_clicks_joined.sql",
    "country_email_engagement.sql",
    "campaign_email_engagement.sql",
    "test_dim_account_unique_account_id.sql",
    "test_dim_account_not_null_account_id.sql",
    "test_dim_user_unique_user_id.sql",
    "test_dim_user_not_null.sql",
    "test_dim_user_account_in_dim_account.sql",
    "test_fct_email_opens_not_null.sql",
    "test_fct_email_opens_unique_activity_id.sql",
    "test_fct_email_opens_lead_in_dim_user.sql",
    "test_fct_email_clicks_not_null.sql",
    "test_fct_email_clicks_lead_in_dim_user.sql",
    "test_int_email_open_clicks_joined_unique_open_id.sql",
);

/// The SQL files of the telematics pipeline's views, by file name.
const TELEMATICS_SQL: &[(&str, &str)] = pipeline_sql!("telematics":
    "vehicle_windows.sql",
    "claims_scored.sql",
    "loss_ratio.sql",
    "incidents_by_severity.sql",
);

/// The shipped offers pipeline (`pipelines/offers/`), built in like marketing's.
const OFFERS_TOML: &str = include_str!("../../pipelines/offers/offers.toml");

/// The SQL files of the offers pipeline's views, by file name.
const OFFERS_SQL: &[(&str, &str)] = pipeline_sql!("offers":
    "customer_360.sql",
    "offers.sql",
    "cashback_economics.sql",
);

/// A built-in pipeline (`toml` and its views' SQL files) with the SQL inlined and `events`
/// world lines in every source.
fn shipped_pipeline(
    name: &str,
    toml: &str,
    sql_files: &[(&str, &str)],
    events: u64,
) -> anyhow::Result<PipelineConfig> {
    let mut cfg = PipelineConfig::parse(toml)?;
    for v in &mut cfg.view {
        if let Some(file) = v.sql_file.take() {
            let file = file.to_string_lossy();
            let sql = sql_files
                .iter()
                .find(|(f, _)| *f == file)
                .with_context(|| format!("the built-in {name} pipeline lacks {file}"))?;
            v.sql = Some(sql.1.to_string());
        }
    }
    for s in &mut cfg.source {
        s.events = Some(events);
    }
    Ok(cfg)
}

/// How the demo serves its dashboard.
struct DemoServe {
    /// Where the dashboard listens (none: no dashboard).
    bind: Option<SocketAddr>,
    /// Exit when done instead of serving on.
    exit: bool,
    /// Events per second per source.
    rate: Option<u64>,
}

/// The demo: the shipped pipelines (bank, marketing, telematics, offers) on generated data
/// into `lakehouse`, as one pipeline (one epoch cut across all their tables and views), with
/// the live dashboard.
fn demo(lakehouse: &Path, events: u64, workers: usize, serve: DemoServe) -> anyhow::Result<()> {
    std::fs::create_dir_all(lakehouse)?;
    let lakehouse = lakehouse.canonicalize()?;
    let text = format!(
        r#"
[pipeline]
name = "demo"
lakehouse = "{lh}"
commit_interval_ms = 1000

[[source]]
name = "customers_cdc"
kind = "generator"
seed = 42
events = {events}
keys = {keys}
rate = 100000

[[source]]
name = "customers_history_cdc"
kind = "generator"
seed = 42
events = {events}
keys = {keys}
rate = 100000

[[table]]
name = "customers"
from = "customers_cdc"
keys = ["customer_id"]
sequence_by = "__lsn"
scd = 1

[[table.expect]]
name = "valid_email"
condition = "email LIKE '%@%'"
on_violation = "quarantine"

[[table.expect]]
name = "non_negative_spend"
condition = "total_spend >= 0"
on_violation = "warn"

[[table]]
name = "customers_history"
from = "customers_history_cdc"
keys = ["customer_id"]
sequence_by = "__lsn"
scd = 2
track_history_columns = ["segment", "credit_limit", "country"]
"#,
        lh = lakehouse.display(),
        keys = (events / 10).max(1),
    );
    let mut cfg = PipelineConfig::parse(&text)?;
    let marketing = shipped_pipeline(
        "marketing",
        MARKETING_TOML,
        MARKETING_SQL,
        (events / 2).max(1_000),
    )?;
    let mut telematics = shipped_pipeline(
        "telematics",
        TELEMATICS_TOML,
        TELEMATICS_SQL,
        (events / 2).max(1_000),
    )?;
    // About 20 minutes of simulated driving (a reading per vehicle and second), so that the
    // demo's 5-minute windows close.
    for s in &mut telematics.source {
        s.keys = Some(((events / 2).max(1_000) / 1_200).max(2));
    }
    let mut offers = shipped_pipeline("offers", OFFERS_TOML, OFFERS_SQL, (events / 2).max(1_000))?;
    // About half a year of card transactions (a customer pays about every second day).
    for s in &mut offers.source {
        s.keys = Some(((events / 2).max(1_000) / 100).max(10));
    }
    let offers_tables: Vec<String> = offers.table.iter().map(|t| t.name.clone()).collect();
    let marketing_tables: Vec<String> = marketing.table.iter().map(|t| t.name.clone()).collect();
    let telematics_tables: Vec<String> = telematics.table.iter().map(|t| t.name.clone()).collect();
    let mut views: Vec<String> = marketing.view.iter().map(|v| v.name.clone()).collect();
    views.extend(telematics.view.iter().map(|v| v.name.clone()));
    views.extend(offers.view.iter().map(|v| v.name.clone()));
    for p in [marketing, telematics, offers] {
        cfg.source.extend(p.source);
        cfg.table.extend(p.table);
        cfg.view.extend(p.view);
    }
    let mut tables: Vec<String> = cfg.table.iter().map(|t| t.name.clone()).collect();
    tables.extend(views.iter().cloned());
    tables.push("_late".into());
    if let Some(rate) = serve.rate {
        // `rate` events per second per world: each stream of a world gets its share, so that
        // the streams of one world stay together in simulated time.
        for src in &mut cfg.source {
            let lines = src.generator().total_lines() as u128;
            let world = src.events.unwrap_or(events).max(1) as u128;
            src.rate = Some(((rate as u128 * lines / world) as u64).max(1));
        }
    }
    clear_previous_demo(&lakehouse, &tables)?;
    let metrics = Arc::new(tidewater::metrics::Metrics::default());
    let server = match serve.bind {
        Some(bind) => {
            let s = tidewater::dashboard::serve(&lakehouse, bind, Some(metrics.clone()))?;
            eprintln!(
                "dashboard: http://{}/  (metrics: /metrics, health: /health)",
                s.addr
            );
            Some(s)
        }
        None => None,
    };
    eprintln!(
        "tidewater demo: {events} generated bank-customer CDC events, {n} marketing CDC and \
         activity events, {n} telematics readings, policies and claims and {n} card customer, \
         attendance and transaction events ({} tables, {} views) → {}",
        cfg.table.len(),
        cfg.view.len(),
        lakehouse.display(),
        n = (events / 2).max(1_000),
    );
    let summary = run(
        cfg,
        RunOptions {
            workers,
            exit_when_idle: true,
            progress: true,
            metrics: Some(metrics),
            ..RunOptions::default()
        },
    )?;
    eprintln!(
        "done: {} events, {} quarantined, {} epochs committed in {:.2?}",
        summary.records, summary.quarantined, summary.epochs_committed, summary.elapsed
    );
    println!("Delta tables:");
    println!(
        "  {}/customers     (SCD type 1 customer state, keyed by customer_id)",
        lakehouse.display()
    );
    println!(
        "  {}/customers_history  (SCD type 2: a version per change of segment, credit limit or country)",
        lakehouse.display()
    );
    println!(
        "  {}/<table>   marketing inputs: {} (Salesforce / Marketo CDC)",
        lakehouse.display(),
        marketing_tables.join(", ")
    );
    println!(
        "  {}/<table>   telematics inputs: {} (readings with a watermark; policies and claims CDC)",
        lakehouse.display(),
        telematics_tables.join(", ")
    );
    println!(
        "  {}/<table>   offers inputs: {} (customers and attendance CDC, card transactions)",
        lakehouse.display(),
        offers_tables.join(", ")
    );
    println!(
        "  {}/<view>    models (SQL views, kept current; vehicle_windows: 5-minute event-time windows; offers: rules in SQL): {}",
        lakehouse.display(),
        views.join(", ")
    );
    println!(
        "  {}/_late         (readings later than the watermark: never applied, never dropped)",
        lakehouse.display()
    );
    println!(
        "  {}/_quarantine   (bad input and failed expectations, if any)",
        lakehouse.display()
    );
    println!(
        "  {}/_event_log    (one row per epoch and table; summary below, or: tidewater status --lakehouse {})",
        lakehouse.display(),
        lakehouse.display()
    );
    print!("{}", tidewater::event_log::status(&lakehouse)?);
    println!(
        "Epoch manifests: {}/_tidewater/epochs/<epoch>.json",
        lakehouse.display()
    );
    println!("Read them with any Delta reader, e.g. Python:");
    println!(
        "  python -c \"import deltalake; print(deltalake.DeltaTable('{}/customers').to_pandas())\"",
        lakehouse.display()
    );
    println!(
        "  duckdb -c \"SELECT count(*) FROM delta_scan('{}/customers')\"",
        lakehouse.display()
    );
    if let Some(server) = server {
        if serve.exit {
            server.stop();
        } else {
            println!(
                "Dashboard: http://{}/ (offers, claims, engagement, pipeline) — Ctrl-C to stop",
                server.addr
            );
            loop {
                std::thread::park();
            }
        }
    }
    Ok(())
}

/// Removes the tables of an earlier demo run (only tables whose log holds epochs of the
/// `demo` pipeline, or of `bank-demo` as it was called before), so that `tidewater demo` can be
/// run again in the same directory.
fn clear_previous_demo(lakehouse: &Path, tables: &[String]) -> anyhow::Result<()> {
    use tidewater_connectors::delta::{manifest_dir, Committer, CommitterConfig};
    let mut cleared = false;
    for pipeline in ["demo", "bank-demo"] {
        let mut committer = Committer::new(CommitterConfig {
            lakehouse: lakehouse.to_path_buf(),
            pipeline: pipeline.into(),
            checkpoint_interval: 10,
        })?;
        for table in tables
            .iter()
            .map(String::as_str)
            .chain(["_quarantine", "_event_log"])
        {
            let dir = lakehouse.join(table);
            if dir.exists() && committer.last_epoch(table)?.is_some() {
                std::fs::remove_dir_all(dir)?;
                cleared = true;
            }
        }
    }
    // The epoch manifests and operator-state checkpoints of that run.
    let own = manifest_dir(lakehouse);
    let own = own.parent().unwrap_or(&own);
    if cleared && own.exists() {
        std::fs::remove_dir_all(own)?;
    }
    Ok(())
}

/// `tidewater snapshot`: table → Delta version of one epoch, from the manifests.
fn snapshot(lakehouse: &Path, epoch: Option<u64>) -> anyhow::Result<()> {
    let manifests = tidewater_connectors::delta::read_manifests(lakehouse)?;
    let m = match epoch {
        Some(e) => manifests
            .get(&e)
            .with_context(|| format!("epoch {e} has no manifest in {}", lakehouse.display()))?,
        None => manifests
            .values()
            .next_back()
            .with_context(|| format!("no epoch manifest in {}", lakehouse.display()))?,
    };
    let out = serde_json::json!({"epoch": m.epoch, "pipeline": m.pipeline, "tables": m.tables});
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(())
}
