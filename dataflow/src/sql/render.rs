//! [`QueryPlan`] → differential operators over collections of [`PackedRow`]s: `map` /
//! `filter` for projections and conditions, `join_core` on arranged canonical keys for
//! joins, `reduce` (recomputing a changed group from its multiset) for aggregates,
//! `distinct` for `DISTINCT` / `UNION`, `concat` for `UNION ALL`.

use std::cell::RefCell;
use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::rc::Rc;

use differential_dataflow::AsCollection;
use differential_dataflow::VecCollection;
use tidewater_connectors::types::{ColumnType, Datum, PackedRow, Row};
use timely::dataflow::operators::ToStream;

use super::convert::{self, DecOp};
use super::expr::{compare, CmpKind, Cx as ECx, Node, V};
use super::query::{window_starts, Agg, AggFunc, KeyKind, QueryPlan, Rel};
use super::{Pos, SqlError};

/// A collection of rows of one relation at epoch timestamps.
pub type RowCollection<'scope> = VecCollection<'scope, u64, PackedRow, isize>;

/// Counts the updates that come out of the operators [`render_query_counted`] builds, per
/// epoch and kind of operator: a measure of the work a plan does per epoch that does not
/// depend on timing (tests check with it that an epoch's work follows the change, not the
/// size of the tables).
///
/// Counted: the output of every `map` / `flat_map` / `filter` (projections, `WHERE` /
/// `HAVING` / join filters, the key extraction before each join and reduce, window
/// assignment, the canonical rows before `DISTINCT`, the formatting of aggregate rows),
/// every `join_core` (a join's matches; a left join's matched left rows), every `reduce` (one
/// per `GROUP BY` / aggregate) and `distinct` (`DISTINCT`, `UNION`, a left join's right
/// keys), and the rows a left join pads, a `UNION ALL`, a left join's and a global
/// aggregate's concatenations put out. Not counted: the input relations, and the work
/// inside an operator that does not show in its output — notably a `reduce` recomputes a
/// changed group from all of the group's input values (see the module docs of `sql`).
///
/// One value per worker (its operators' updates; not `Send`); clones share the counts.
#[derive(Clone, Debug, Default)]
pub struct OpCounts(Rc<RefCell<BTreeMap<(u64, &'static str), u64>>>);

impl OpCounts {
    /// New, empty counts.
    pub fn new() -> OpCounts {
        OpCounts::default()
    }

    /// Updates per epoch (all operators).
    pub fn by_epoch(&self) -> BTreeMap<u64, u64> {
        let mut out = BTreeMap::new();
        for ((epoch, _), n) in self.0.borrow().iter() {
            *out.entry(*epoch).or_default() += n;
        }
        out
    }

    /// Updates per epoch and kind of operator (`map`, `filter`, `join`, `reduce`, `distinct`,
    /// `concat`, `window`, …).
    pub fn by_operator(&self) -> BTreeMap<(u64, &'static str), u64> {
        self.0.borrow().clone()
    }

    /// `c`, with its updates counted as `kind`'s.
    fn tap<'scope, D: differential_dataflow::Data>(
        &self,
        c: VecCollection<'scope, u64, D, isize>,
        kind: &'static str,
    ) -> VecCollection<'scope, u64, D, isize> {
        let counts = self.0.clone();
        c.inspect_batch(move |_, updates| {
            let mut counts = counts.borrow_mut();
            let mut i = 0;
            while i < updates.len() {
                let t = updates[i].1;
                let run = updates[i..].iter().take_while(|u| u.1 == t).count();
                *counts.entry((t, kind)).or_default() += run as u64;
                i += run;
            }
        })
    }
}

/// Renders `plan` in the scope of its inputs: `inputs` maps every name of
/// [`QueryPlan::inputs`] to the collection of that relation's rows (packed in the column
/// order of the catalog the plan was made with, multiplicities as differences). The result
/// is the view's rows in the order of [`QueryPlan::columns`]. Every worker must render the
/// same plan. A missing input is [`SqlError::UnknownRelation`].
pub fn render_query<'scope>(
    plan: &QueryPlan,
    inputs: &HashMap<String, RowCollection<'scope>>,
) -> Result<RowCollection<'scope>, SqlError> {
    render_query_counted(plan, inputs, None)
}

/// [`render_query`], counting the updates out of every operator it builds in `counts` (this
/// worker's; see [`OpCounts`]). Without `counts` nothing is added to the dataflow.
pub fn render_query_counted<'scope>(
    plan: &QueryPlan,
    inputs: &HashMap<String, RowCollection<'scope>>,
    counts: Option<&OpCounts>,
) -> Result<RowCollection<'scope>, SqlError> {
    for name in plan.inputs() {
        if !inputs.contains_key(name) {
            let mut known: Vec<&str> = inputs.keys().map(|s| s.as_str()).collect();
            known.sort_unstable();
            return Err(SqlError::UnknownRelation {
                name: name.to_string(),
                at: Pos { line: 1, column: 1 },
                known: known.join(", "),
                sql: plan.sql().to_string(),
            });
        }
    }
    let any = inputs
        .values()
        .next()
        .expect("a plan reads at least one input")
        .clone();
    let mut cx = Cx {
        inputs,
        lets: Vec::with_capacity(plan.lets.len()),
        any,
        counts,
    };
    for rel in &plan.lets {
        let c = cx.render(rel);
        cx.lets.push(c);
    }
    Ok(cx.render(&plan.root))
}

/// What rendering one plan needs.
struct Cx<'a, 'scope> {
    inputs: &'a HashMap<String, RowCollection<'scope>>,
    /// The rendered `WITH` queries so far.
    lets: Vec<RowCollection<'scope>>,
    /// Any input (for its scope).
    any: RowCollection<'scope>,
    counts: Option<&'a OpCounts>,
}

impl<'scope> Cx<'_, 'scope> {
    /// `c`, counted as `kind`'s output when counting.
    fn tap<D: differential_dataflow::Data>(
        &self,
        c: VecCollection<'scope, u64, D, isize>,
        kind: &'static str,
    ) -> VecCollection<'scope, u64, D, isize> {
        match self.counts {
            Some(counts) => counts.tap(c, kind),
            None => c,
        }
    }

    fn render(&self, rel: &Rel) -> RowCollection<'scope> {
        match rel {
            Rel::Input { name } => self.inputs[name].clone(),
            Rel::Get(i) => self.lets[*i].clone(),
            Rel::Filter { input, pred } => {
                let pred = pred.clone();
                let out = self.render(input).filter(move |row| {
                    let datums = row.unpack();
                    matches!(pred.ev(&datums, &mut ECx::default()), V::Bool(true))
                });
                self.tap(out, "filter")
            }
            Rel::Map { input, exprs } => {
                let exprs = exprs.clone();
                let out = self.render(input).map(move |row| {
                    let datums = row.unpack();
                    let out: Row = exprs.iter().map(|e| eval(e, &datums)).collect();
                    PackedRow::pack(&out)
                });
                self.tap(out, "map")
            }
            Rel::Join {
                left,
                right,
                left_keys,
                right_keys,
                outer,
                right_width,
            } => {
                let (lk, rk) = (left_keys.clone(), right_keys.clone());
                let keyed_left = self.tap(
                    self.render(left).map(move |row| {
                        let datums = row.unpack();
                        (join_key(&datums, &lk), row)
                    }),
                    "map",
                );
                let right_keyed = self.tap(
                    self.render(right).flat_map(move |row| {
                        let datums = row.unpack();
                        join_key(&datums, &rk).map(|k| (k, row))
                    }),
                    "map",
                );
                let right_arr = right_keyed.arrange_by_key();
                let matchable = self.tap(
                    keyed_left.clone().flat_map(|(k, row)| k.map(|k| (k, row))),
                    "map",
                );
                let left_arr = matchable.arrange_by_key();
                let joined = self.tap(
                    left_arr
                        .clone()
                        .join_core(right_arr.clone(), |_k, l: &PackedRow, r: &PackedRow| {
                            Some(concat(l, r.as_bytes()))
                        }),
                    "join",
                );
                if !outer {
                    return joined;
                }
                // Left rows without a match: those with a NULL key, and those whose key no
                // right row has (all left rows with a key minus those with a matching key).
                let pad = vec![0u8; *right_width];
                let right_keys = self
                    .tap(
                        right_arr
                            .as_collection(|k: &PackedRow, _v: &PackedRow| k.clone())
                            .distinct(),
                        "distinct",
                    )
                    .arrange_by_self();
                let matched = self.tap(
                    left_arr.join_core(right_keys, |_k, l: &PackedRow, _: &()| Some(l.clone())),
                    "join",
                );
                let pad2 = pad.clone();
                let unmatched = self.tap(
                    keyed_left
                        .map(|(_, row)| row)
                        .concat(matched.negate())
                        .map(move |row| concat(&row, &pad2)),
                    "map",
                );
                self.tap(joined.concat(unmatched), "concat")
            }
            Rel::Reduce {
                input,
                group,
                aggs,
                global,
            } => {
                let (group, arg_nodes) = (group.clone(), aggs.clone());
                let keyed = self.tap(
                    self.render(input).map(move |row| {
                        let datums = row.unpack();
                        let key: Row = group.iter().map(|g| canonical(eval(g, &datums))).collect();
                        let args: Row = arg_nodes
                            .iter()
                            .map(|a| match &a.arg {
                                Some(n) => eval(n, &datums),
                                None => Datum::Null,
                            })
                            .collect();
                        (PackedRow::pack(&key), Some(PackedRow::pack(&args)))
                    }),
                    "map",
                );
                let keyed = if *global {
                    // One marker value so that the single group exists over empty input; it
                    // contributes to no aggregate. Only worker 0 holds it.
                    let scope = self.any.scope();
                    let marker: Vec<((PackedRow, Option<PackedRow>), u64, isize)> =
                        if scope.index() == 0 {
                            vec![((PackedRow::pack(&[]), None), 0, 1)]
                        } else {
                            Vec::new()
                        };
                    self.tap(
                        keyed.concat(marker.to_stream(scope).as_collection()),
                        "concat",
                    )
                } else {
                    keyed
                };
                let aggs = aggs.clone();
                let reduced = self.tap(
                    keyed.reduce(
                        move |_key,
                              vals: &[(&Option<PackedRow>, isize)],
                              out: &mut Vec<(PackedRow, isize)>| {
                            out.push((PackedRow::pack(&aggregate(&aggs, vals)), 1));
                        },
                    ),
                    "reduce",
                );
                self.tap(
                    reduced.map(|(key, aggs)| concat(&key, aggs.as_bytes())),
                    "map",
                )
            }
            Rel::Distinct(input) => {
                let canon = self.tap(
                    self.render(input).map(|row| {
                        let datums: Row = row.unpack().into_iter().map(canonical).collect();
                        PackedRow::pack(&datums)
                    }),
                    "map",
                );
                self.tap(canon.distinct(), "distinct")
            }
            Rel::Window {
                input,
                time,
                size,
                slide,
            } => {
                let (time, size, slide) = (*time, *size, *slide);
                let out = self.render(input).flat_map(move |row| {
                    let datums = row.unpack();
                    let t = match datums.get(time) {
                        Some(Datum::Timestamp(t)) => Some(*t),
                        _ => None,
                    };
                    t.into_iter()
                        .flat_map(move |t| window_starts(t, size, slide))
                        .map(move |start| {
                            let mut tail = Vec::new();
                            Datum::Timestamp(start).encode_key(&mut tail);
                            Datum::Timestamp(start + size).encode_key(&mut tail);
                            concat(&row, &tail)
                        })
                        .collect::<Vec<_>>()
                });
                self.tap(out, "window")
            }
            Rel::Union(parts) => {
                let mut it = parts.iter().map(|p| self.render(p));
                let first = it.next().expect("UNION has inputs");
                let all = it.fold(first, |acc, c| acc.concat(c));
                self.tap(all, "concat")
            }
        }
    }
}

fn eval(n: &Node, row: &[Datum]) -> Datum {
    n.ev(row, &mut ECx::default()).into_datum()
}

fn concat(a: &PackedRow, b: &[u8]) -> PackedRow {
    let mut bytes = Vec::with_capacity(a.as_bytes().len() + b.len());
    bytes.extend_from_slice(a.as_bytes());
    bytes.extend_from_slice(b);
    PackedRow::from_encoded(&bytes)
}

/// Doubles as SQL values: `-0` → `0`, every NaN → one NaN (group keys, `DISTINCT`).
fn canonical(d: Datum) -> Datum {
    match d {
        Datum::Float(f) => Datum::Float(canonical_f64(f)),
        other => other,
    }
}

fn canonical_f64(f: f64) -> f64 {
    if f.is_nan() {
        f64::NAN
    } else if f == 0.0 {
        0.0
    } else {
        f
    }
}

/// The canonical key of a row; `None` if a key value is NULL (it matches nothing).
fn join_key(row: &[Datum], keys: &[(Node, KeyKind)]) -> Option<PackedRow> {
    let mut out = Vec::with_capacity(keys.len());
    for (node, kind) in keys {
        let d = eval(node, row);
        let d = match (kind, d) {
            (_, Datum::Null) => return None,
            (KeyKind::Plain, Datum::Float(f)) => Datum::Float(canonical_f64(f)),
            (KeyKind::Plain, d) => d,
            (KeyKind::Dec { from, to }, d) => {
                let v = match d {
                    Datum::Int(i) => i as i128,
                    Datum::Decimal(v) => v,
                    _ => return None,
                };
                // A value that does not fit 38 digits at the common scale equals no value
                // of the other side (whose values do fit).
                let v = v.checked_mul(convert::pow10_i128((to - from) as u32))?;
                Datum::Decimal(v)
            }
            (KeyKind::Float { scale }, d) => {
                let f = match d {
                    Datum::Int(i) => i as f64,
                    Datum::Decimal(v) => convert::dec_to_f64(v, *scale),
                    Datum::Float(f) => f,
                    _ => return None,
                };
                Datum::Float(canonical_f64(f))
            }
        };
        out.push(d);
    }
    Some(PackedRow::pack(&out))
}

/// The aggregates of one group, from its whole multiset of argument rows (`None` is the
/// marker of a global aggregate). Computed from the sorted multiset, so the result does not
/// depend on the order in which the rows arrived.
fn aggregate(aggs: &[Agg], vals: &[(&Option<PackedRow>, isize)]) -> Row {
    // Only positive multiplicities count (a negative one would be an input retracting a
    // row it never inserted).
    let rows: Vec<(Row, isize)> = vals
        .iter()
        .filter(|(_, m)| *m > 0)
        .filter_map(|(v, m)| v.as_ref().map(|v| (v.unpack(), *m)))
        .collect();
    aggs.iter()
        .enumerate()
        .map(|(i, a)| {
            if a.func == AggFunc::CountStar {
                return Datum::Int(rows.iter().map(|(_, m)| *m as i64).sum());
            }
            // The non-NULL values with their multiplicities.
            let mut values: Vec<(&Datum, isize)> = rows
                .iter()
                .filter(|(r, _)| !r[i].is_null())
                .map(|(r, m)| (&r[i], *m))
                .collect();
            if a.distinct {
                let mut seen = BTreeSet::new();
                let mut unique = Vec::new();
                for (d, _) in values {
                    let mut key = Vec::new();
                    canonical(d.clone()).encode_key(&mut key);
                    if seen.insert(key) {
                        unique.push((d, 1));
                    }
                }
                values = unique;
            }
            one_aggregate(a, &values)
        })
        .collect()
}

fn one_aggregate(a: &Agg, values: &[(&Datum, isize)]) -> Datum {
    let count: i128 = values.iter().map(|(_, m)| *m as i128).sum();
    match a.func {
        AggFunc::CountStar | AggFunc::Count => Datum::Int(count as i64),
        _ if values.is_empty() => Datum::Null,
        AggFunc::Min | AggFunc::Max => {
            let kind = cmp_kind(a.arg_ty);
            let mut best = values[0].0;
            for (d, _) in &values[1..] {
                let o = compare(&V::of(d), &V::of(best), kind).unwrap_or(Ordering::Equal);
                let better = if a.func == AggFunc::Min {
                    o == Ordering::Less
                } else {
                    o == Ordering::Greater
                };
                if better {
                    best = d;
                }
            }
            best.clone()
        }
        AggFunc::Sum | AggFunc::Avg => {
            let avg = a.func == AggFunc::Avg;
            match a.ty {
                ColumnType::Float64
                    if !matches!(a.arg_ty, ColumnType::Float32 | ColumnType::Float64) =>
                {
                    // AVG of integers: exact sum, one division.
                    let sum: i128 = values.iter().map(|(d, m)| int_of(d) * *m as i128).sum();
                    Datum::Float(sum as f64 / count as f64)
                }
                ColumnType::Float64 => {
                    let sum: f64 = values.iter().map(|(d, m)| float_of(d) * *m as f64).sum();
                    Datum::Float(if avg { sum / count as f64 } else { sum })
                }
                ColumnType::Int64 => {
                    let sum: i128 = values.iter().map(|(d, m)| int_of(d) * *m as i128).sum();
                    i64::try_from(sum).map_or(Datum::Null, Datum::Int)
                }
                ColumnType::Decimal { precision, scale } => {
                    let mut sum: i128 = 0;
                    for (d, m) in values {
                        let term = int_of(d).checked_mul(*m as i128);
                        match term.and_then(|t| sum.checked_add(t)) {
                            Some(s) => sum = s,
                            None => return Datum::Null,
                        }
                    }
                    let (p, s) = (precision as i32, scale as i32);
                    if avg {
                        let arg_scale = match a.arg_ty {
                            ColumnType::Decimal { scale, .. } => scale as i32,
                            _ => 0,
                        };
                        return convert::dec_arith(DecOp::Div, sum, arg_scale, count, 0, (p, s))
                            .map_or(Datum::Null, Datum::Decimal);
                    }
                    if sum.unsigned_abs() >= convert::pow10_i128(p as u32) as u128 {
                        return Datum::Null;
                    }
                    Datum::Decimal(sum)
                }
                _ => Datum::Null,
            }
        }
    }
}

fn cmp_kind(t: ColumnType) -> CmpKind {
    match t {
        ColumnType::Boolean => CmpKind::Bool,
        ColumnType::String => CmpKind::Str,
        ColumnType::Timestamp => CmpKind::Ts,
        ColumnType::Bytes => CmpKind::Bytes,
        ColumnType::Decimal { scale, .. } => CmpKind::Num {
            ls: scale as i32,
            rs: scale as i32,
        },
        _ => CmpKind::Num { ls: 0, rs: 0 },
    }
}

fn int_of(d: &Datum) -> i128 {
    match d {
        Datum::Int(i) => *i as i128,
        Datum::Decimal(v) => *v,
        _ => 0,
    }
}

fn float_of(d: &Datum) -> f64 {
    match d {
        Datum::Float(f) => *f,
        Datum::Int(i) => *i as f64,
        _ => 0.0,
    }
}
