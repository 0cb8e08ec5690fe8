//! [`QueryPlan`] → differential operators over collections of [`PackedRow`]s: `map` /
//! `filter` for projections and conditions, `join_core` on arranged canonical keys for
//! joins, `reduce` (recomputing a changed group from its multiset) for aggregates,
//! `distinct` for `DISTINCT` / `UNION`, `concat` for `UNION ALL`.

use std::cmp::Ordering;
use std::collections::{BTreeSet, HashMap};

use differential_dataflow::AsCollection;
use differential_dataflow::VecCollection;
use tidewater_connectors::types::{ColumnType, Datum, PackedRow, Row};
use timely::dataflow::operators::ToStream;

use super::convert::{self, DecOp};
use super::expr::{compare, CmpKind, Cx, Node, V};
use super::query::{window_starts, Agg, AggFunc, KeyKind, QueryPlan, Rel};
use super::{Pos, SqlError};

/// A collection of rows of one relation at epoch timestamps.
pub type RowCollection<'scope> = VecCollection<'scope, u64, PackedRow, isize>;

/// Renders `plan` in the scope of its inputs: `inputs` maps every name of
/// [`QueryPlan::inputs`] to the collection of that relation's rows (packed in the column
/// order of the catalog the plan was made with, multiplicities as differences). The result
/// is the view's rows in the order of [`QueryPlan::columns`]. Every worker must render the
/// same plan. A missing input is [`SqlError::UnknownRelation`].
pub fn render_query<'scope>(
    plan: &QueryPlan,
    inputs: &HashMap<String, RowCollection<'scope>>,
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
    let mut lets: Vec<RowCollection<'scope>> = Vec::with_capacity(plan.lets.len());
    for rel in &plan.lets {
        let c = render(rel, inputs, &lets, &any);
        lets.push(c);
    }
    Ok(render(&plan.root, inputs, &lets, &any))
}

fn render<'scope>(
    rel: &Rel,
    inputs: &HashMap<String, RowCollection<'scope>>,
    lets: &[RowCollection<'scope>],
    any: &RowCollection<'scope>,
) -> RowCollection<'scope> {
    let go = |r: &Rel| render(r, inputs, lets, any);
    match rel {
        Rel::Input { name } => inputs[name].clone(),
        Rel::Get(i) => lets[*i].clone(),
        Rel::Filter { input, pred } => {
            let pred = pred.clone();
            go(input).filter(move |row| {
                let datums = row.unpack();
                matches!(pred.ev(&datums, &mut Cx::default()), V::Bool(true))
            })
        }
        Rel::Map { input, exprs } => {
            let exprs = exprs.clone();
            go(input).map(move |row| {
                let datums = row.unpack();
                let out: Row = exprs.iter().map(|e| eval(e, &datums)).collect();
                PackedRow::pack(&out)
            })
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
            let keyed_left = go(left).map(move |row| {
                let datums = row.unpack();
                (join_key(&datums, &lk), row)
            });
            let right_arr = go(right)
                .flat_map(move |row| {
                    let datums = row.unpack();
                    join_key(&datums, &rk).map(|k| (k, row))
                })
                .arrange_by_key();
            let matchable = keyed_left.clone().flat_map(|(k, row)| k.map(|k| (k, row)));
            let left_arr = matchable.arrange_by_key();
            let joined = left_arr
                .clone()
                .join_core(right_arr.clone(), |_k, l: &PackedRow, r: &PackedRow| {
                    Some(concat(l, r.as_bytes()))
                });
            if !outer {
                return joined;
            }
            // Left rows without a match: those with a NULL key, and those whose key no
            // right row has (all left rows with a key minus those with a matching key).
            let pad = vec![0u8; *right_width];
            let right_keys = right_arr
                .as_collection(|k: &PackedRow, _v: &PackedRow| k.clone())
                .distinct()
                .arrange_by_self();
            let matched =
                left_arr.join_core(right_keys, |_k, l: &PackedRow, _: &()| Some(l.clone()));
            let pad2 = pad.clone();
            let unmatched = keyed_left
                .map(|(_, row)| row)
                .concat(matched.negate())
                .map(move |row| concat(&row, &pad2));
            joined.concat(unmatched)
        }
        Rel::Reduce {
            input,
            group,
            aggs,
            global,
        } => {
            let (group, arg_nodes) = (group.clone(), aggs.clone());
            let keyed = go(input).map(move |row| {
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
            });
            let keyed = if *global {
                // One marker value so that the single group exists over empty input; it
                // contributes to no aggregate. Only worker 0 holds it.
                let scope = any.scope();
                let marker: Vec<((PackedRow, Option<PackedRow>), u64, isize)> =
                    if scope.index() == 0 {
                        vec![((PackedRow::pack(&[]), None), 0, 1)]
                    } else {
                        Vec::new()
                    };
                keyed.concat(marker.to_stream(scope).as_collection())
            } else {
                keyed
            };
            let aggs = aggs.clone();
            keyed
                .reduce(
                    move |_key,
                          vals: &[(&Option<PackedRow>, isize)],
                          out: &mut Vec<(PackedRow, isize)>| {
                        out.push((PackedRow::pack(&aggregate(&aggs, vals)), 1));
                    },
                )
                .map(|(key, aggs)| concat(&key, aggs.as_bytes()))
        }
        Rel::Distinct(input) => go(input)
            .map(|row| {
                let datums: Row = row.unpack().into_iter().map(canonical).collect();
                PackedRow::pack(&datums)
            })
            .distinct(),
        Rel::Window {
            input,
            time,
            size,
            slide,
        } => {
            let (time, size, slide) = (*time, *size, *slide);
            go(input).flat_map(move |row| {
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
            })
        }
        Rel::Union(parts) => {
            let mut it = parts.iter().map(go);
            let first = it.next().expect("UNION has inputs");
            it.fold(first, |acc, c| acc.concat(c))
        }
    }
}

fn eval(n: &Node, row: &[Datum]) -> Datum {
    n.ev(row, &mut Cx::default()).into_datum()
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
