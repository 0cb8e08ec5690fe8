//! Views (`[[view]]`): a SQL `SELECT` over tables and earlier views, compiled once
//! ([`crate::sql::plan_query`]), rendered on differential ([`crate::sql::render_query`]) and
//! stored like a table — hash buckets, merge-on-write, one commit per epoch in the same
//! commit round as the tables — so a reader sees tables and views at one cut.
//!
//! The pieces, in dataflow order:
//!
//! 1. [`table_rows`]: an SCD type 1 table's applied changes (per epoch, each changed key's
//!    new row or `None`) become a differential collection of its rows with
//!    `arrange_from_upsert` (which keeps each key's current row to retract it later).
//! 2. The view's plan is rendered over those collections (and the collections of earlier
//!    views).
//! 3. [`view_changes`]: per epoch, the view's consolidated updates become the new rows of
//!    each changed storage key — the view's key columns (declared `keys`, else the `GROUP BY`
//!    columns), or for a view without a unique key the whole row, stored as many times as its
//!    multiplicity. Those go to the ordinary table sink ([`crate::table::table_sink`]).
//!    Declared keys must be unique: the operator counts the rows of each declared key over
//!    all epochs (on the worker of the key's bucket, so the count is global at any worker
//!    count), and a second row with a key stops the run — also when the first one came in
//!    an earlier epoch.
//!
//! Restart: a view has no operator state of its own. Without a restored checkpoint every
//! recorded epoch is replayed from the start, so the view is recomputed exactly. With a
//! checkpoint of epoch `r`, every table a view reads is loaded from its Delta version as of
//! `r` (time travel; the epoch's cut) and fed at time `r`, before the replayed epochs after
//! `r`: the view's state is then exact at every epoch from `r` on. The sink writes only epochs
//! after the view's last committed one and after `r`: when the view's last commit is before
//! `r`, the view did not change since, so its stored rows are already the view at `r`.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use differential_dataflow::operators::arrange::upsert::arrange_from_upsert;
use differential_dataflow::trace::implementations::{ValBuilder, ValSpine};
use differential_dataflow::AsCollection;
use tidewater_connectors::delta::{datum_at, read_parquet, table_files_at};
use tidewater_connectors::types::{Column, Datum, PackedRow};
use tidewater_operators::{CloseWindows, Emit};
use timely::dataflow::channels::pact::{Exchange, Pipeline};
use timely::dataflow::operators::core::Map;
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::operators::Capability;
use timely::dataflow::StreamVec;

use crate::config::PipelineConfig;
use crate::metrics::Metrics;
use crate::run::PlannedTables;
use crate::sql::{plan_query, QueryPlan, RowCollection};
use crate::table::{timestamp_at, TablePlan};
use crate::{Key, TidewaterError};

/// A planned view.
pub struct ViewPlan {
    /// View name (also its Delta table's directory name).
    pub name: String,
    /// The compiled query.
    pub query: QueryPlan,
    /// Positions of the storage key columns among the output columns; `None`: stored by
    /// whole row, repeated by multiplicity.
    pub keys: Option<Vec<usize>>,
    /// The keys are declared (`keys` in the view's section), not derived from the query
    /// (`GROUP BY`, `DISTINCT`), so their uniqueness is checked (see [`view_changes`]).
    pub declared_keys: bool,
    /// The storage plan for the table sink.
    pub table: Arc<TablePlan>,
    /// A windowed view (`TUMBLE` / `HOP` in the `GROUP BY`): when its rows are emitted.
    pub window: Option<ViewWindow>,
    /// The output columns: the query's, and `window_closed` for a windowed view.
    columns: Vec<Column>,
}

/// How a windowed view is emitted.
#[derive(Clone, Debug)]
pub struct ViewWindow {
    /// The table with the watermark the windows follow.
    pub table: String,
    /// The position of `window_end` among the query's output columns.
    pub end_col: usize,
    /// `on_update` or `on_close`.
    pub emit: Emit,
}

/// The column a windowed view adds: whether the window can still change.
pub const WINDOW_CLOSED: &str = "window_closed";

impl ViewPlan {
    /// The output columns.
    pub fn columns(&self) -> &[Column] {
        &self.columns
    }
}

/// The views of a pipeline, in declaration order, and how the tables they read become
/// collections.
#[derive(Default)]
pub struct PlannedViews {
    /// The views, in declaration order (a view reads only tables and views before it).
    pub views: Vec<Arc<ViewPlan>>,
    /// The SCD type 1 tables that views read (directly or through other views): per table,
    /// the position of the hidden `__new_columns` slot in its applied rows, which views do not
    /// see.
    pub tables: BTreeMap<String, Option<usize>>,
}

/// Plans the views of `cfg` over the planned tables: the SQL of each is compiled against the
/// tables' columns (as stored at start; columns schema evolution adds later are not visible
/// to views) and the output columns of the views before it.
pub fn plan_views(
    cfg: &PipelineConfig,
    tables: &PlannedTables,
) -> Result<PlannedViews, TidewaterError> {
    let mut out = PlannedViews::default();
    if cfg.view.is_empty() {
        return Ok(out);
    }
    let mut catalog: BTreeMap<String, Vec<Column>> = BTreeMap::new();
    let mut scd2 = Vec::new();
    let mut slots = BTreeMap::new();
    let mut watermarks = BTreeMap::new();
    for (plan, schema) in tables {
        if let Some((pos, _)) = plan.watermark {
            watermarks.insert(plan.name.clone(), plan.stored[pos].name.clone());
        }
        if plan.scd == 2 {
            scd2.push(plan.name.clone());
            continue;
        }
        catalog.insert(
            plan.name.clone(),
            plan.delta_columns(&plan.table_columns(schema)),
        );
        slots.insert(plan.name.clone(), plan.new_columns_slot.map(|(p, _)| p));
    }
    let declared: Vec<&str> = cfg.view.iter().map(|v| v.name.as_str()).collect();
    // Per view: the tables it reads, directly or through earlier views.
    let mut reads: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (i, v) in cfg.view.iter().enumerate() {
        let key = format!("view `{}`", v.name);
        let sql = v.query_text()?;
        let query = match plan_query(&sql, &catalog) {
            Ok(q) => q,
            Err(e) => {
                let text = e.to_string();
                if let Some(t) = scd2.iter().find(|t| mentions(&text, t)) {
                    return Err(TidewaterError::Config {
                        key: format!("{key}.sql"),
                        message: format!(
                            "reads table `{t}`, an scd = 2 table: views over SCD type 2 \
                             tables are not supported yet"
                        ),
                    });
                }
                if let Some(later) = declared[i + 1..].iter().find(|t| mentions(&text, t)) {
                    return Err(TidewaterError::Config {
                        key: format!("{key}.sql"),
                        message: format!(
                            "reads view `{later}`, declared after it: declare a view after \
                             the views it reads"
                        ),
                    });
                }
                return Err(e.into_config(format!("{key}.sql")));
            }
        };
        let mut columns = query.columns().to_vec();
        let emit = v.emit_mode()?;
        let window = match (query.window(), emit) {
            (Some(w), emit) => {
                match watermarks.get(&w.relation) {
                    Some(c) if *c == w.time_column => {}
                    other => {
                        return Err(TidewaterError::Config {
                            key: format!("{key}.sql"),
                            message: format!(
                                "windows over `{}`.`{}`, but {}: declare it on the table: \
                                 watermark = {{ column = \"{}\", allowed_lateness = \"…\" }}",
                                w.relation,
                                w.time_column,
                                match other {
                                    Some(c) => format!("the table's watermark is on `{c}`"),
                                    None => format!("table `{}` has no watermark", w.relation),
                                },
                                w.time_column
                            ),
                        })
                    }
                }
                if columns.iter().any(|c| c.name == WINDOW_CLOSED) {
                    return Err(TidewaterError::Config {
                        key: format!("{key}.sql"),
                        message: format!(
                            "a windowed view adds the column `{WINDOW_CLOSED}`; name the \
                             query's column otherwise"
                        ),
                    });
                }
                columns.push(Column {
                    name: WINDOW_CLOSED.into(),
                    ty: tidewater_connectors::types::ColumnType::Boolean,
                });
                Some(ViewWindow {
                    table: w.relation.clone(),
                    end_col: w.end_col,
                    emit: emit.unwrap_or(Emit::OnUpdate),
                })
            }
            (None, Some(_)) => {
                return Err(TidewaterError::Config {
                    key: format!("{key}.emit"),
                    message: "emit is for windowed views (TUMBLE / HOP in the GROUP BY); this \
                              view has no window"
                        .into(),
                })
            }
            (None, None) => None,
        };
        for (j, c) in columns.iter().enumerate() {
            if c.name.is_empty() || columns[..j].iter().any(|o| o.name == c.name) {
                return Err(TidewaterError::Config {
                    key: format!("{key}.sql"),
                    message: format!(
                        "two output columns are named `{}`: name each output column \
                         (`expr AS name`)",
                        c.name
                    ),
                });
            }
        }
        let keys = match &v.keys {
            Some(names) => {
                let positions = names
                    .iter()
                    .map(|n| {
                        columns.iter().position(|c| &c.name == n).ok_or_else(|| {
                            TidewaterError::Config {
                                key: format!("{key}.keys"),
                                message: format!(
                                    "`{n}` is not an output column of the view (columns: {})",
                                    columns
                                        .iter()
                                        .map(|c| c.name.as_str())
                                        .collect::<Vec<_>>()
                                        .join(", ")
                                ),
                            }
                        })
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                Some(positions)
            }
            None => query.unique_key(),
        };
        let mut read = Vec::new();
        for input in query.inputs() {
            match reads.get(input) {
                Some(tables) => read.extend(tables.iter().cloned()),
                None => read.push(input.to_string()),
            }
        }
        read.sort();
        read.dedup();
        for t in &read {
            out.tables
                .insert(t.clone(), slots.get(t).copied().flatten());
        }
        reads.insert(v.name.clone(), read);
        let storage_keys = keys.clone().unwrap_or_else(|| (0..columns.len()).collect());
        let table = TablePlan::for_view(
            &v.name,
            cfg.pipeline.lakehouse.join(&v.name),
            columns.clone(),
            storage_keys,
            v.buckets.unwrap_or(cfg.pipeline.buckets),
        );
        catalog.insert(v.name.clone(), columns.clone());
        out.views.push(Arc::new(ViewPlan {
            name: v.name.clone(),
            query,
            keys,
            declared_keys: v.keys.is_some(),
            table: Arc::new(table),
            window,
            columns: catalog[&v.name].clone(),
        }));
    }
    Ok(out)
}

/// Whether an error text names `name` as a relation (in backquotes).
fn mentions(text: &str, name: &str) -> bool {
    text.contains(&format!("`{name}`"))
}

/// A row without the datum at `slot` (the hidden `__new_columns` slot of a table's rows).
fn strip_slot(row: PackedRow, slot: Option<usize>) -> PackedRow {
    match slot {
        None => row,
        Some(p) => {
            let fields = row.fields();
            let mut bytes = Vec::with_capacity(row.as_bytes().len());
            for (i, f) in fields.iter().enumerate() {
                if i != p {
                    bytes.extend_from_slice(f);
                }
            }
            PackedRow::from_encoded(&bytes)
        }
    }
}

/// The storage key of a view row: the packed bytes of the key columns, in key order (the
/// encoding `TablePlan::key_of` gives the same row read back from Parquet).
fn row_key(row: &PackedRow, keys: &[usize]) -> Key {
    let fields = row.fields();
    let mut bytes = Vec::with_capacity(32);
    for k in keys {
        if let Some(f) = fields.get(*k) {
            bytes.extend_from_slice(f);
        }
    }
    Key::from_slice(&bytes)
}

/// An SCD type 1 table's rows as a collection, from its applied changes (each epoch, every
/// changed key's new row, or `None` for a removed key) and the rows it starts from
/// (`initial`, fed at time `initial_at`; see the module docs on restart). `slot` is the
/// position of the hidden `__new_columns` datum, removed from every row.
pub fn table_rows<'scope>(
    applied: StreamVec<'scope, u64, (Key, Option<PackedRow>)>,
    slot: Option<usize>,
    initial: Vec<(Key, PackedRow)>,
    initial_at: u64,
    name: &str,
) -> RowCollection<'scope> {
    let upserts = applied.unary(Pipeline, &format!("ViewInput({name})"), move |cap, _| {
        let mut initial = Some((cap.delayed(&initial_at), initial));
        move |input, output| {
            if let Some((cap, rows)) = initial.take() {
                let mut session = output.session(&cap);
                for (k, row) in rows {
                    session.give((k, Some(row), initial_at));
                }
            }
            input.for_each_stamp(|cap, data| {
                let Some(cap) = cap.retain_least(output.output_index()) else {
                    return;
                };
                let t = *cap.time();
                let mut session = output.session(&cap);
                for batch in data {
                    for (k, row) in batch.drain(..) {
                        session.give((k, row.map(|r| strip_slot(r, slot)), t));
                    }
                }
            });
        }
    });
    arrange_from_upsert::<
        ValBuilder<Key, PackedRow, u64, isize>,
        ValSpine<Key, PackedRow, u64, isize>,
        Key,
        PackedRow,
    >(upserts, &format!("TableRows({name})"))
    .as_collection(|_, row| row.clone())
}

/// The rows an SCD type 1 table held at the checkpoint epoch `epoch` (its Delta version as of
/// that epoch), in the layout views see, with their keys: this worker's share (every
/// `peers`-th data file).
pub fn load_table_rows(
    plan: &TablePlan,
    columns: &[Column],
    version: Option<i64>,
    peers: usize,
    index: usize,
) -> Result<Vec<(Key, PackedRow)>, TidewaterError> {
    let Some(version) = version else {
        return Ok(Vec::new());
    };
    let err = |e: &dyn std::fmt::Display| {
        TidewaterError::Runtime(format!(
            "table `{}`: reading version {version} for the views: {e}",
            plan.name
        ))
    };
    let mut files = table_files_at(&plan.dir, version).map_err(|e| err(&e))?;
    files.sort_by(|a, b| a.path.cmp(&b.path));
    let mut out = Vec::new();
    for f in files.iter().skip(index).step_by(peers.max(1)) {
        let batch = read_parquet(&plan.dir, &f.path, columns).map_err(|e| err(&e))?;
        let mut datums: Vec<Datum> = Vec::with_capacity(columns.len());
        for i in 0..batch.num_rows() {
            datums.clear();
            for (c, col) in columns.iter().enumerate() {
                datums.push(datum_at(batch.column(c).as_ref(), col.ty, i));
            }
            out.push((plan.key_of(&batch, i), PackedRow::pack(&datums)));
        }
    }
    Ok(out)
}

/// A view update: (storage key, (row, copies)) with its difference.
type Update = ((Key, (PackedRow, isize)), isize);
/// An epoch's updates with its capability.
type Stashed = (Capability<u64>, Vec<Update>);

/// A view's rows → per epoch, the new rows of each storage key whose rows changed (empty:
/// the key has no row any more), on the worker of the key's bucket, for the table sink.
/// Updates at times before `floor` (the first epoch of this run; a global aggregate's row
/// over empty input is produced at time 0) count as updates at `floor`.
///
/// Two rows with one declared key stop the run with an error naming the view, the key
/// columns and values, and one of the rows — whether both arrive in one epoch or the second
/// one epochs after the first (the sink keeps only the new rows of a changed key, so a
/// duplicate that went unnoticed would silently replace the stored row). The check keeps,
/// per declared key of this worker's buckets, the number of rows the view has with it (all
/// of a key's updates come to one worker); a key whose row moves (retract A, insert B in
/// one epoch) keeps its count of 1. The count starts from the view's whole content: a
/// restart replays from the start or feeds the tables' rows at the checkpoint's epoch.
pub fn view_changes<'scope>(
    rows: RowCollection<'scope>,
    view: Arc<ViewPlan>,
    floor: u64,
    metrics: Arc<Metrics>,
) -> StreamVec<'scope, u64, (Key, Vec<PackedRow>)> {
    // (storage key, (row, copies)) with differences.
    let keyed = match view.keys.clone() {
        Some(keys) => rows.map(move |row| (row_key(&row, &keys), (row, 1isize))),
        None => rows
            .count()
            .map(|(row, n)| (Key::from_slice(row.as_bytes()), (row, n))),
    };
    let route = view.table.clone();
    keyed.inner.unary_frontier(
        Exchange::new(
            move |((k, _), _, _): &((Key, (PackedRow, isize)), u64, isize)| route.bucket(k) as u64,
        ),
        &format!("ViewChanges({})", view.name),
        move |_, _| {
            let mut stash: BTreeMap<u64, Stashed> = BTreeMap::new();
            let mut failed = false;
            // Declared keys: the view's number of rows with each key (no entry: none).
            let mut counts: HashMap<Key, isize> = HashMap::new();
            move |(input, frontier), output| {
                let port = output.output_index();
                input.for_each_stamp(|cap, data| {
                    for batch in data {
                        for (update, t, diff) in batch.drain(..) {
                            let at = t.max(floor);
                            stash
                                .entry(at)
                                .or_insert_with(|| (cap.delayed(&at, port), Vec::new()))
                                .1
                                .push((update, diff));
                        }
                    }
                });
                if failed {
                    return;
                }
                while let Some(epoch) = stash.keys().next().copied() {
                    if frontier.less_equal(&epoch) {
                        break;
                    }
                    let (cap, mut updates) = stash.remove(&epoch).expect("present");
                    differential_dataflow::consolidation::consolidate(&mut updates);
                    let mut changes: Vec<(Key, Vec<PackedRow>)> = Vec::new();
                    let mut i = 0;
                    while i < updates.len() {
                        let key = updates[i].0 .0.clone();
                        let mut rows: Vec<PackedRow> = Vec::new();
                        // The change of the key's number of rows in this epoch.
                        let mut net = 0;
                        while i < updates.len() && updates[i].0 .0 == key {
                            let ((_, (row, copies)), diff) = &updates[i];
                            net += diff;
                            if *diff > 0 {
                                for _ in 0..*copies {
                                    rows.push(row.clone());
                                }
                            }
                            i += 1;
                        }
                        if view.declared_keys {
                            let before = counts.get(&key).copied().unwrap_or(0);
                            let now = before + net;
                            if now > 1 {
                                failed = true;
                                metrics.fail(duplicate_key(&view, now, before, epoch, &rows[0]));
                                return;
                            }
                            if now == 0 {
                                counts.remove(&key);
                            } else {
                                counts.insert(key.clone(), now);
                            }
                        }
                        changes.push((key, rows));
                    }
                    if !changes.is_empty() {
                        output.session(&cap).give_iterator(changes.into_iter());
                    }
                }
            }
        },
    )
}

/// The error of a declared key that `now` rows of the view have at `epoch` (`before` of them
/// from earlier epochs); `row` is one of the epoch's new rows with the key.
fn duplicate_key(
    view: &ViewPlan,
    now: isize,
    before: isize,
    epoch: u64,
    row: &PackedRow,
) -> String {
    let datums = row.unpack();
    let show = |positions: &mut dyn Iterator<Item = usize>| {
        positions
            .filter_map(|p| datums.get(p))
            .map(|d| format!("{d:?}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let keys = view.keys.as_deref().unwrap_or(&[]);
    let earlier = match before {
        0 => String::new(),
        1 => " (one of them stored at an earlier epoch)".to_string(),
        n => format!(" ({n} of them stored at earlier epochs)"),
    };
    format!(
        "view `{}`: {now} rows have the same key ({}) = ({}) at epoch {epoch}{earlier}, but \
         `keys` must be unique per row; the new one: ({})",
        view.name,
        view.table.key_names.join(", "),
        show(&mut keys.iter().copied()),
        show(&mut (0..datums.len())),
    )
}

/// A windowed view's rows with their `window_closed` column appended, from its table's
/// watermarks (`initial`: the watermark before the first epoch); `end_col` is the position of
/// `window_end` in the rows.
pub fn close_window_rows<'scope>(
    rows: RowCollection<'scope>,
    watermarks: StreamVec<'scope, u64, i64>,
    end_col: usize,
    emit: Emit,
    initial: i64,
) -> RowCollection<'scope> {
    rows.inner
        .close_windows(
            watermarks,
            move |row: &PackedRow| timestamp_at(row, end_col).unwrap_or(i64::MAX),
            emit,
            initial,
        )
        .map(|((row, closed), t, r)| {
            let mut bytes = row.as_bytes().to_vec();
            Datum::Bool(closed).encode_key(&mut bytes);
            (PackedRow::from_encoded(&bytes), t, r)
        })
        .as_collection()
}

/// The watermarks of the tables with one (each epoch's when it moved, on every worker) and
/// the watermark each starts from.
pub type Watermarks<'scope> = HashMap<String, (StreamVec<'scope, u64, i64>, i64)>;

/// The collections of the views, rendered in order over the tables' collections; a windowed
/// view's rows get their `window_closed` column from its table's watermarks.
pub fn render_views<'scope>(
    views: &[Arc<ViewPlan>],
    mut relations: HashMap<String, RowCollection<'scope>>,
    watermarks: &Watermarks<'scope>,
) -> Result<Vec<RowCollection<'scope>>, TidewaterError> {
    let mut out = Vec::new();
    for v in views {
        let rows = crate::sql::render_query(&v.query, &relations)
            .map_err(|e| e.into_config(format!("view `{}`.sql", v.name)))?;
        let rows = match &v.window {
            None => rows,
            Some(w) => {
                let (marks, initial) = watermarks
                    .get(&w.table)
                    .cloned()
                    .expect("windowed views read tables with a watermark");
                close_window_rows(rows, marks, w.end_col, w.emit, initial)
            }
        };
        relations.insert(v.name.clone(), rows.clone());
        out.push(rows);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use differential_dataflow::input::Input;
    use tidewater_connectors::types::{ColumnType, Row};
    use timely::dataflow::operators::{Inspect, Probe};

    type Changes = BTreeMap<u64, Vec<Vec<PackedRow>>>;

    use super::*;

    /// The view `kv`: `SELECT k, v FROM t`, stored by `k` (declared or not).
    fn kv(declared: bool) -> Arc<ViewPlan> {
        let columns = vec![
            Column {
                name: "k".into(),
                ty: ColumnType::Int64,
            },
            Column {
                name: "v".into(),
                ty: ColumnType::String,
            },
        ];
        let catalog = BTreeMap::from([("t".to_string(), columns.clone())]);
        let query = plan_query("SELECT k, v FROM t", &catalog).unwrap();
        let table =
            TablePlan::for_view("kv", "/nonexistent/kv".into(), columns.clone(), vec![0], 4);
        Arc::new(ViewPlan {
            name: "kv".into(),
            query,
            keys: Some(vec![0]),
            declared_keys: declared,
            table: Arc::new(table),
            window: None,
            columns,
        })
    }

    fn row(k: i64, v: &str) -> Row {
        vec![Datum::Int(k), Datum::Str(v.into())]
    }

    fn p(k: i64, v: &str) -> PackedRow {
        PackedRow::pack(&row(k, v))
    }

    /// Per epoch, the new rows of each changed key, in a fixed order.
    fn changes<const N: usize>(epochs: [(u64, Vec<Vec<PackedRow>>); N]) -> Changes {
        epochs
            .into_iter()
            .map(|(e, mut keys)| {
                keys.sort();
                (e, keys)
            })
            .collect()
    }

    /// Epoch `e`'s updates of the view's rows, each with the worker that feeds it.
    type Epochs = Vec<Vec<(Row, isize, usize)>>;

    /// Runs `view_changes` for `view` over `epochs` on `workers` workers. Returns, per epoch
    /// that reached the sink, the changed keys' new rows (sorted), and the run's error.
    fn run(view: Arc<ViewPlan>, epochs: Epochs, workers: usize) -> (Changes, Option<String>) {
        let metrics = Arc::new(Metrics::default());
        let out: Arc<Mutex<Changes>> = Arc::default();
        let (m, o, epochs) = (metrics.clone(), out.clone(), Arc::new(epochs));
        timely::execute(timely::Config::process(workers), move |worker| {
            let index = worker.index();
            let (metrics, out, view) = (m.clone(), o.clone(), view.clone());
            let (mut input, probe) = worker.dataflow::<u64, _, _>(|scope| {
                let (input, rows) = scope.new_collection::<PackedRow, isize>();
                let (probe, _) = view_changes(rows, view, 0, metrics.clone())
                    .inspect_core(move |event| {
                        if let Ok((stamp, data)) = event {
                            let t = *stamp.least().expect("a time");
                            let mut out = out.lock().unwrap();
                            for (_, rows) in data {
                                out.entry(t).or_default().push(rows.clone());
                            }
                        }
                    })
                    .probe();
                (input, probe)
            });
            for (e, updates) in epochs.iter().enumerate() {
                for (r, diff, w) in updates {
                    if w % worker.peers() == index {
                        input.update(PackedRow::pack(r), *diff);
                    }
                }
                let next = e as u64 + 1;
                input.advance_to(next);
                input.flush();
                while probe.less_than(&next) && !metrics.failed() {
                    worker.step();
                }
                if metrics.failed() {
                    for id in worker.installed_dataflows() {
                        worker.drop_dataflow(id);
                    }
                    return;
                }
            }
        })
        .unwrap();
        let mut out = std::mem::take(&mut *out.lock().unwrap());
        for changes in out.values_mut() {
            changes.sort();
        }
        (out, metrics.error())
    }

    #[test]
    fn a_declared_key_repeated_in_a_later_epoch_stops_the_run() {
        for workers in [1, 2, 4] {
            // Key 1 holds A from epoch 0; epoch 1 inserts B with key 1 (on another worker)
            // and does not retract A.
            let epochs: Epochs = vec![
                vec![(row(1, "A"), 1, 0), (row(2, "X"), 1, 1)],
                vec![(row(1, "B"), 1, 1), (row(3, "Y"), 1, 0)],
            ];
            let (out, err) = run(kv(true), epochs, workers);
            assert_eq!(
                err.as_deref(),
                Some(
                    "view `kv`: 2 rows have the same key (k) = (Int(1)) at epoch 1 (one of \
                     them stored at an earlier epoch), but `keys` must be unique per row; the \
                     new one: (Int(1), Str(\"B\"))"
                ),
                "{workers} worker(s)"
            );
            // Epoch 0 went to the sink; epoch 1 did not (nothing of it is committed).
            assert_eq!(
                out,
                changes([(0, vec![vec![p(1, "A")], vec![p(2, "X")]])]),
                "{workers} worker(s)"
            );
        }
    }

    #[test]
    fn a_declared_key_repeated_within_an_epoch_stops_the_run() {
        let epochs: Epochs = vec![vec![(row(1, "A"), 1, 0), (row(1, "B"), 1, 1)]];
        let (out, err) = run(kv(true), epochs, 2);
        assert_eq!(
            err.as_deref(),
            Some(
                "view `kv`: 2 rows have the same key (k) = (Int(1)) at epoch 0, but `keys` \
                 must be unique per row; the new one: (Int(1), Str(\"A\"))"
            )
        );
        assert!(out.is_empty());
    }

    #[test]
    fn a_declared_key_moving_to_another_row_is_no_duplicate() {
        for workers in [1, 2, 4] {
            let epochs: Epochs = vec![
                vec![(row(1, "A"), 1, 0), (row(2, "X"), 1, 1)],
                // Key 1 moves from A to B (the retraction and the insert on different
                // workers); row X moves from key 2 to key 3.
                vec![
                    (row(1, "B"), 1, 0),
                    (row(1, "A"), -1, 1),
                    (row(2, "X"), -1, 0),
                    (row(3, "X"), 1, 1),
                ],
                // Key 2 is free again: a new row takes it; key 1 is deleted.
                vec![(row(2, "Z"), 1, 1), (row(1, "B"), -1, 0)],
                // And key 1 comes back.
                vec![(row(1, "C"), 1, 1)],
            ];
            let (out, err) = run(kv(true), epochs, workers);
            assert_eq!(err, None, "{workers} worker(s)");
            assert_eq!(
                out,
                changes([
                    (0, vec![vec![p(1, "A")], vec![p(2, "X")]]),
                    (1, vec![vec![], vec![p(1, "B")], vec![p(3, "X")]]),
                    (2, vec![vec![], vec![p(2, "Z")]]),
                    (3, vec![vec![p(1, "C")]]),
                ]),
                "{workers} worker(s)"
            );
        }
    }

    #[test]
    fn keys_of_the_query_are_not_counted() {
        // Without declared keys (a GROUP BY's columns, unique by construction) no count is
        // kept: the same updates as the failing case pass through.
        let epochs: Epochs = vec![vec![(row(1, "A"), 1, 0)], vec![(row(1, "B"), 1, 0)]];
        let (out, err) = run(kv(false), epochs, 1);
        assert_eq!(err, None);
        assert_eq!(out[&1], vec![vec![p(1, "B")]]);
    }
}
