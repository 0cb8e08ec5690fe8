//! SQL `SELECT` → [`QueryPlan`]: a tree of relational operators ([`Rel`]) over input
//! relations, with every name resolved and every expression typed (see the module docs of
//! `sql` for what is supported). [`super::render`] turns a plan into differential operators.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};

use sqlparser::ast::{
    self, Distinct, DuplicateTreatment, FunctionArg, FunctionArgExpr, FunctionArguments,
    GroupByExpr, GroupByWithModifier, JoinConstraint, JoinOperator, ObjectNamePart, SelectFlavor,
    SelectItem, SelectItemQualifiedWildcardKind, SetExpr, SetOperator, SetQuantifier, Spanned,
    Statement, TableFactor,
};
use sqlparser::dialect::GenericDialect;
use sqlparser::parser::Parser;
use tidewater_connectors::types::{Column, ColumnType};

use super::compile::{decimal, is_float, is_numeric, scale_of, Compiler, Names, Typed, R};
use super::expr::{CmpKind, Node};
use super::locate::{construct_at, find, find_or, keyword_before, span_start};
use super::{Pos, SqlError};

/// A compiled `SELECT`: what [`super::render_query`] renders, with the view's output columns.
#[derive(Clone, Debug)]
pub struct QueryPlan {
    /// Bodies of the `WITH` queries, in order; `Rel::Get(i)` reads `lets[i]`.
    pub(crate) lets: Vec<Rel>,
    pub(crate) root: Rel,
    /// The event-time window of the query's `GROUP BY`, if it has one.
    window: Option<WindowPlan>,
    columns: Vec<Column>,
    inputs: BTreeSet<String>,
    sql: String,
}

impl QueryPlan {
    /// The output columns (names and types; every column is nullable).
    pub fn columns(&self) -> &[Column] {
        &self.columns
    }

    /// The input relations (catalog names) the query reads, each once, sorted.
    pub fn inputs(&self) -> impl Iterator<Item = &str> {
        self.inputs.iter().map(|s| s.as_str())
    }

    /// The event-time window (`TUMBLE` / `HOP` in the `GROUP BY`), if the query has one.
    pub fn window(&self) -> Option<&WindowPlan> {
        self.window.as_ref()
    }

    /// The SQL text.
    pub fn sql(&self) -> &str {
        &self.sql
    }

    /// Output columns whose values are unique per row, when the query guarantees one: the
    /// `GROUP BY` columns of a top-level aggregate that the select list outputs as they are
    /// (`Some(vec![])` for a global aggregate: one row), or every column after `DISTINCT`.
    /// `None` when rows may repeat (a view is then stored by whole row with multiplicity).
    pub fn unique_key(&self) -> Option<Vec<usize>> {
        unique_key(&self.root, &self.lets)
    }
}

/// An event-time window of a view: `GROUP BY …, TUMBLE(time, INTERVAL size)` or
/// `HOP(time, INTERVAL size, INTERVAL slide)` over one input relation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WindowPlan {
    /// The input relation (a table of the catalog).
    pub relation: String,
    /// Its event-time column.
    pub time_column: String,
    /// Window length, µs.
    pub size: i64,
    /// Distance between window starts, µs (`size` for `TUMBLE`).
    pub slide: i64,
    /// The output columns `window_start` and `window_end`.
    pub start_col: usize,
    pub end_col: usize,
}

/// Whether the window of a plan is in its outermost `SELECT` (`Map` over `Reduce` over the
/// `Window`, with the `HAVING` / `WHERE` filters and `DISTINCT` between).
fn window_on_top(rel: &Rel) -> bool {
    match rel {
        Rel::Distinct(input) | Rel::Map { input, .. } | Rel::Filter { input, .. } => {
            window_on_top(input)
        }
        Rel::Reduce { input, .. } => {
            let mut r = input.as_ref();
            while let Rel::Filter { input, .. } = r {
                r = input;
            }
            matches!(r, Rel::Window { .. })
        }
        _ => false,
    }
}

/// The window start values `[s, s + size)` that contain `t`, each a multiple of `slide`.
pub(crate) fn window_starts(t: i64, size: i64, slide: i64) -> impl Iterator<Item = i64> {
    let last = t.div_euclid(slide) * slide;
    (0..)
        .map(move |k: i64| last - k * slide)
        .take_while(move |s| *s > t - size)
}

/// See [`QueryPlan::unique_key`].
fn unique_key(rel: &Rel, lets: &[Rel]) -> Option<Vec<usize>> {
    match rel {
        Rel::Reduce { group, global, .. } => Some(if *global {
            Vec::new()
        } else {
            (0..group.len()).collect()
        }),
        Rel::Distinct(input) => Some((0..width(input, lets)?).collect()),
        Rel::Filter { input, .. } => unique_key(input, lets),
        Rel::Get(i) => unique_key(lets.get(*i)?, lets),
        Rel::Map { input, exprs } => unique_key(input, lets)?
            .into_iter()
            .map(|k| {
                exprs
                    .iter()
                    .position(|e| matches!(e, Node::Col(c, _) if *c == k))
            })
            .collect(),
        Rel::Input { .. } | Rel::Join { .. } | Rel::Union(_) | Rel::Window { .. } => None,
    }
}

/// The number of columns of a relation's rows, where it is known without the catalog.
fn width(rel: &Rel, lets: &[Rel]) -> Option<usize> {
    match rel {
        Rel::Map { exprs, .. } => Some(exprs.len()),
        Rel::Reduce { group, aggs, .. } => Some(group.len() + aggs.len()),
        Rel::Filter { input, .. } | Rel::Distinct(input) => width(input, lets),
        Rel::Get(i) => width(lets.get(*i)?, lets),
        Rel::Union(rels) => width(rels.first()?, lets),
        Rel::Window { input, .. } => Some(width(input, lets)? + 2),
        Rel::Join { .. } | Rel::Input { .. } => None,
    }
}

/// The columns a window appends to its input rows.
pub(crate) const WINDOW_START: &str = "window_start";
pub(crate) const WINDOW_END: &str = "window_end";

/// A relational operator. Every relation's rows are packed rows of a fixed width; the
/// expressions of an operator index the columns of its input row.
#[derive(Clone, Debug)]
pub(crate) enum Rel {
    /// An input relation of the catalog.
    Input { name: String },
    /// The result of `QueryPlan::lets[i]` (a `WITH` query).
    Get(usize),
    /// Rows on which `pred` is TRUE.
    Filter { input: Box<Rel>, pred: Node },
    /// One output row per input row: the values of `exprs`.
    Map { input: Box<Rel>, exprs: Vec<Node> },
    /// Inner or left outer equi-join; output rows are left columns then right columns (NULLs
    /// for an unmatched left row of a left join). Rows match when every key pair is equal
    /// and no key is NULL.
    Join {
        left: Box<Rel>,
        right: Box<Rel>,
        left_keys: Vec<(Node, KeyKind)>,
        right_keys: Vec<(Node, KeyKind)>,
        outer: bool,
        right_width: usize,
    },
    /// `GROUP BY`: output rows are the group values (canonical: doubles `-0` → `0`, one NaN)
    /// then the aggregates. `global` (no `GROUP BY`): exactly one row, also over empty input.
    Reduce {
        input: Box<Rel>,
        group: Vec<Node>,
        aggs: Vec<Agg>,
        global: bool,
    },
    /// One copy of each distinct row (doubles compared as SQL values: `-0 = 0`).
    Distinct(Box<Rel>),
    /// `UNION ALL`: all rows of all inputs.
    Union(Vec<Rel>),
    /// Event-time windows: each input row once per window that contains its timestamp column
    /// `time`, with `window_start` and `window_end` appended (a NULL time is in no window).
    Window {
        input: Box<Rel>,
        time: usize,
        size: i64,
        slide: i64,
    },
}

/// How a key value is encoded so that SQL-equal values are equal bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum KeyKind {
    /// The value as it is (integers, strings, booleans, timestamps, bytes).
    Plain,
    /// An integer or decimal with scale `from` as a decimal of scale `to >= from` (a key
    /// pair of integer / decimal columns with different scales).
    Dec { from: i32, to: i32 },
    /// As a double: an integer, a decimal of scale `scale`, or a double; `-0` → `0`, every
    /// NaN → one NaN (a key pair where one side is a double).
    Float { scale: i32 },
}

/// An aggregate function.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum AggFunc {
    CountStar,
    Count,
    Sum,
    Avg,
    Min,
    Max,
}

/// One aggregate of a `Reduce`.
#[derive(Clone, Debug)]
pub(crate) struct Agg {
    pub(crate) func: AggFunc,
    /// The argument (over the input row); `None` for `COUNT(*)`.
    pub(crate) arg: Option<Node>,
    /// `DISTINCT`: over the set of distinct non-NULL argument values.
    pub(crate) distinct: bool,
    /// The argument's type.
    pub(crate) arg_ty: ColumnType,
    /// The result's type.
    pub(crate) ty: ColumnType,
}

/// Parses one `SELECT` (with sqlparser's generic dialect), resolves its names against
/// `catalog` (input relations → their columns; tables and earlier views) and type-checks
/// it. Anything outside the supported subset (the table in the module docs of `sql`) is
/// [`SqlError::Unsupported`] naming the construct and its `line:column`.
pub fn plan_query(
    sql: &str,
    catalog: &BTreeMap<String, Vec<Column>>,
) -> Result<QueryPlan, SqlError> {
    let parse_err = |e: sqlparser::parser::ParserError| SqlError::Parse {
        message: e.to_string(),
        sql: sql.to_string(),
    };
    let statements = Parser::parse_sql(&GenericDialect {}, sql).map_err(parse_err)?;
    let p = Planner {
        sql,
        catalog,
        lets: RefCell::new(Vec::new()),
        inputs: RefCell::new(BTreeSet::new()),
        window: RefCell::new(None),
    };
    let start = Pos { line: 1, column: 1 };
    let query = match statements.as_slice() {
        [Statement::Query(q)] => q,
        [] => {
            return Err(SqlError::Parse {
                message: "no statement".into(),
                sql: sql.to_string(),
            })
        }
        [other] => {
            return Err(p.unsupported(
                format!("statement {} (a view is one SELECT)", first_word(other)),
                p.at(other, start),
            ))
        }
        [_, second, ..] => {
            return Err(p.unsupported(
                "more than one statement (a view is one SELECT)",
                p.at(second, start),
            ))
        }
    };
    let (root, scope) = p.query(query, &Vec::new(), start)?;
    let window = p.window.borrow_mut().take();
    if let Some((_, at)) = &window {
        if !window_on_top(&root) {
            return Err(p.unsupported(
                "a window (TUMBLE / HOP) outside the GROUP BY of the view's outermost SELECT \
                 (not in a WITH query, a subquery or a UNION)",
                *at,
            ));
        }
    }
    let mut columns: Vec<Column> = Vec::with_capacity(scope.cols.len());
    for c in scope.cols {
        if columns.iter().any(|o| o.name == c.name) {
            return Err(p.type_err(
                format!(
                    "the view has two columns named `{}`; give one of them another name with AS",
                    c.name
                ),
                start,
            ));
        }
        columns.push(Column {
            name: c.name,
            ty: c.ty,
        });
    }
    Ok(QueryPlan {
        lets: p.lets.into_inner(),
        root,
        window: window.map(|(w, _)| w),
        columns,
        inputs: p.inputs.into_inner(),
        sql: sql.to_string(),
    })
}

fn first_word(s: &Statement) -> String {
    let text = s.to_string();
    text.split_whitespace().next().unwrap_or("").to_uppercase()
}

/// One column of a relation in scope: its qualifier (table name or alias), name and type.
#[derive(Clone, Debug)]
struct ScopeCol {
    qual: Option<String>,
    name: String,
    ty: ColumnType,
}

/// The columns of a relation, in row order.
#[derive(Clone, Debug, Default)]
struct Scope {
    cols: Vec<ScopeCol>,
}

impl Scope {
    /// The index of the column `parts` names.
    fn resolve(&self, c: &Compiler<'_>, parts: &[ast::Ident], at: Pos) -> R<usize> {
        let (qual, name) = match parts {
            [n] => (None, n.value.as_str()),
            [q, n] => (Some(q.value.as_str()), n.value.as_str()),
            _ => {
                let name: Vec<&str> = parts.iter().map(|p| p.value.as_str()).collect();
                return Err(
                    c.unsupported(format!("name {} (use table.column)", name.join(".")), at)
                );
            }
        };
        let hits: Vec<usize> = (0..self.cols.len())
            .filter(|&i| {
                let col = &self.cols[i];
                col.name == name && (qual.is_none() || col.qual.as_deref() == qual)
            })
            .collect();
        match hits.as_slice() {
            [i] => Ok(*i),
            [] => {
                let names: Vec<String> = self
                    .cols
                    .iter()
                    .map(|c| match &c.qual {
                        Some(q) => format!("{q}.{}", c.name),
                        None => c.name.clone(),
                    })
                    .collect();
                let names: Vec<&str> = names.iter().map(|s| s.as_str()).collect();
                let full = match qual {
                    Some(q) => format!("{q}.{name}"),
                    None => name.to_string(),
                };
                Err(c.unknown_column(&full, &names, at))
            }
            _ => {
                let quals: Vec<String> = hits
                    .iter()
                    .map(|&i| self.cols[i].qual.clone().unwrap_or_else(|| "?".into()))
                    .collect();
                Err(c.type_err(
                    format!(
                        "column name `{name}` is ambiguous (in {}); qualify it",
                        quals.join(" and ")
                    ),
                    at,
                ))
            }
        }
    }

    fn typed(&self, i: usize) -> Typed {
        let ty = self.cols[i].ty;
        Typed::new(Node::Col(i, ty), ty)
    }
}

impl Names for Scope {
    fn column(&self, c: &Compiler<'_>, parts: &[ast::Ident], at: Pos) -> R<Typed> {
        let i = self.resolve(c, parts, at)?;
        Ok(self.typed(i))
    }
}

/// The names of a grouped `SELECT` (its projection and `HAVING`): `GROUP BY` expressions and
/// columns, and aggregates over the input row, each a column of the grouped row
/// (groups first, then aggregates).
struct GroupNames<'a> {
    input: &'a Scope,
    /// Each `GROUP BY` expression, its compiled form and the input column it is, if it is one.
    groups: Vec<(ast::Expr, Typed, Option<usize>)>,
    aggs: RefCell<Vec<(ast::Expr, Agg)>>,
    /// No `GROUP BY`: a bare column is allowed (and resolves to the input column) until an
    /// aggregate shows up; the first one is remembered for the error.
    implicit: bool,
    bare: RefCell<Option<SqlError>>,
}

const AGGREGATES: [&str; 5] = ["count", "sum", "avg", "min", "max"];

fn not_grouped(c: &Compiler<'_>, what: &str, at: Pos) -> SqlError {
    c.type_err(
        format!("column `{what}` must appear in GROUP BY or be used in an aggregate function"),
        at,
    )
}

impl Names for GroupNames<'_> {
    fn column(&self, c: &Compiler<'_>, parts: &[ast::Ident], at: Pos) -> R<Typed> {
        let i = self.input.resolve(c, parts, at)?;
        if let Some(g) = self.groups.iter().position(|(_, _, col)| *col == Some(i)) {
            let t = &self.groups[g].1;
            return Ok(Typed {
                node: Node::Col(g, t.ty.unwrap_or(ColumnType::String)),
                ..t.clone()
            });
        }
        let name: Vec<&str> = parts.iter().map(|p| p.value.as_str()).collect();
        let err = not_grouped(c, &name.join("."), at);
        if self.implicit {
            self.bare.borrow_mut().get_or_insert(err);
            return Ok(self.input.typed(i));
        }
        Err(err)
    }

    fn lookup(&self, c: &Compiler<'_>, e: &ast::Expr, at: Pos) -> R<Option<Typed>> {
        if let Some(g) = self.groups.iter().position(|(ge, _, _)| ge == e) {
            let t = &self.groups[g].1;
            return Ok(Some(Typed {
                node: Node::Col(g, t.ty.unwrap_or(ColumnType::String)),
                ..t.clone()
            }));
        }
        let ast::Expr::Function(f) = e else {
            return Ok(None);
        };
        let name = match f.name.0.as_slice() {
            [ObjectNamePart::Identifier(id)] => id.value.to_lowercase(),
            _ => return Ok(None),
        };
        if !AGGREGATES.contains(&name.as_str()) || f.over.is_some() {
            return Ok(None);
        }
        let existing = self.aggs.borrow().iter().position(|(ae, _)| ae == e);
        let idx = match existing {
            Some(i) => i,
            None => {
                let agg = self.aggregate(c, &name, f, e, at)?;
                let mut aggs = self.aggs.borrow_mut();
                aggs.push((e.clone(), agg));
                aggs.len() - 1
            }
        };
        let ty = self.aggs.borrow()[idx].1.ty;
        Ok(Some(Typed::new(Node::Col(self.groups.len() + idx, ty), ty)))
    }
}

impl GroupNames<'_> {
    fn aggregate(
        &self,
        c: &Compiler<'_>,
        name: &str,
        f: &ast::Function,
        e: &ast::Expr,
        at: Pos,
    ) -> R<Agg> {
        if f.filter.is_some() {
            return Err(c.unsupported(format!("{name}(...) FILTER (WHERE ...)"), at));
        }
        if f.null_treatment.is_some()
            || !f.within_group.is_empty()
            || !matches!(f.parameters, FunctionArguments::None)
            || f.uses_odbc_syntax
        {
            return Err(c.unsupported(format!("{e}"), at));
        }
        let list = match &f.args {
            FunctionArguments::List(list) if list.clauses.is_empty() => list,
            _ => return Err(c.unsupported(format!("{e}"), at)),
        };
        let distinct = matches!(list.duplicate_treatment, Some(DuplicateTreatment::Distinct));
        let func = match name {
            "count" => AggFunc::Count,
            "sum" => AggFunc::Sum,
            "avg" => AggFunc::Avg,
            "min" => AggFunc::Min,
            _ => AggFunc::Max,
        };
        let arg = match list.args.as_slice() {
            [FunctionArg::Unnamed(FunctionArgExpr::Wildcard)] if func == AggFunc::Count => {
                if distinct {
                    return Err(c.unsupported("COUNT(DISTINCT *)", at));
                }
                return Ok(Agg {
                    func: AggFunc::CountStar,
                    arg: None,
                    distinct: false,
                    arg_ty: ColumnType::Int64,
                    ty: ColumnType::Int64,
                });
            }
            [FunctionArg::Unnamed(FunctionArgExpr::Expr(x))] => x,
            _ => {
                return Err(c.type_err(
                    format!("{name} takes one argument (COUNT also *), in `{e}`"),
                    at,
                ))
            }
        };
        let inner = Compiler::new(self.input, c.sql);
        let t = inner.expr(arg, at)?;
        let Some(arg_ty) = t.ty else {
            return Err(c.type_err(
                format!("the argument of {name} has no type (a bare NULL): CAST it, in `{e}`"),
                at,
            ));
        };
        let ty = match func {
            AggFunc::Count | AggFunc::CountStar => ColumnType::Int64,
            AggFunc::Min | AggFunc::Max => arg_ty,
            AggFunc::Sum | AggFunc::Avg => {
                if !is_numeric(arg_ty) {
                    return Err(c.type_err(
                        format!("{name} needs a number, but `{arg}` is {arg_ty}"),
                        at,
                    ));
                }
                match (func, arg_ty) {
                    (_, t) if is_float(t) => ColumnType::Float64,
                    (AggFunc::Sum, t) if t.is_integer() => ColumnType::Int64,
                    (AggFunc::Avg, t) if t.is_integer() => ColumnType::Float64,
                    (AggFunc::Sum, ColumnType::Decimal { precision, scale }) => {
                        decimal(precision as i32 + 10, scale as i32)
                    }
                    (_, ColumnType::Decimal { precision, scale }) => {
                        decimal(precision as i32 + 4, scale as i32 + 4)
                    }
                    _ => ColumnType::Float64,
                }
            }
        };
        Ok(Agg {
            func,
            arg: Some(t.node),
            distinct,
            arg_ty,
            ty,
        })
    }
}

/// The `WITH` queries visible at a point: name → (index into `lets`, columns).
type Ctes = Vec<(String, usize, Vec<(String, ColumnType)>)>;

struct Planner<'a> {
    sql: &'a str,
    catalog: &'a BTreeMap<String, Vec<Column>>,
    lets: RefCell<Vec<Rel>>,
    inputs: RefCell<BTreeSet<String>>,
    window: RefCell<Option<(WindowPlan, Pos)>>,
}

impl Planner<'_> {
    fn at(&self, e: &impl Spanned, parent: Pos) -> Pos {
        let s = e.span().start;
        if s.line == 0 {
            parent
        } else {
            Pos {
                line: s.line,
                column: s.column,
            }
        }
    }

    /// The position of a construct that starts with one of `words` and whose AST node is
    /// `e` (whose span may start after the keywords, or be missing; see `locate`).
    fn kw(&self, e: &impl Spanned, parent: Pos, words: &[&str]) -> Pos {
        construct_at(self.sql, span_start(e), parent, words)
    }

    /// The first of the keyword sequences `seqs` at or after `from` (a clause without a
    /// span), else `from`.
    fn after(&self, from: Pos, seqs: &[&[&str]]) -> Pos {
        find_or(self.sql, from, seqs)
    }

    fn unsupported(&self, construct: impl Into<String>, at: Pos) -> SqlError {
        SqlError::Unsupported {
            construct: construct.into(),
            at,
            sql: self.sql.to_string(),
        }
    }

    fn type_err(&self, message: String, at: Pos) -> SqlError {
        SqlError::Type {
            message,
            at,
            sql: self.sql.to_string(),
        }
    }

    fn compiler<'b>(&'b self, names: &'b dyn Names) -> Compiler<'b> {
        Compiler::new(names, self.sql)
    }

    fn query(&self, q: &ast::Query, outer: &Ctes, parent: Pos) -> R<(Rel, Scope)> {
        let at = self.at(q, parent);
        if let Some(ob) = &q.order_by {
            return Err(self.unsupported(
                "ORDER BY (a view is an unordered set of rows)",
                self.kw(ob, at, &["ORDER", "BY"]),
            ));
        }
        if let Some(l) = &q.limit_clause {
            return Err(self.unsupported("LIMIT / OFFSET", self.kw(l, at, &["LIMIT", "OFFSET"])));
        }
        if let Some(f) = &q.fetch {
            return Err(self.unsupported("FETCH", self.kw(f, at, &["FETCH"])));
        }
        if let Some(lock) = q.locks.first() {
            let seqs: &[&[&str]] = &[&["FOR", "UPDATE"], &["FOR", "SHARE"], &["FOR", "NO"]];
            return Err(self.unsupported(format!("{lock}"), self.after(at, seqs)));
        }
        if let Some(f) = &q.for_clause {
            let seqs: &[&[&str]] = &[&["FOR", "XML"], &["FOR", "JSON"], &["FOR", "BROWSE"]];
            return Err(self.unsupported(format!("{f}"), self.after(at, seqs)));
        }
        if q.settings.is_some() {
            return Err(self.unsupported("SETTINGS", self.after(at, &[&["SETTINGS"]])));
        }
        if q.format_clause.is_some() {
            return Err(self.unsupported("FORMAT", self.after(at, &[&["FORMAT"]])));
        }
        if !q.pipe_operators.is_empty() {
            return Err(self.unsupported("pipe operator |>", self.after(at, &[&["|>"]])));
        }
        let mut ctes = outer.clone();
        if let Some(with) = &q.with {
            if with.recursive {
                return Err(self.unsupported("WITH RECURSIVE", self.at(with, at)));
            }
            for cte in &with.cte_tables {
                let cat = self.at(cte, at);
                if cte.from.is_some() || cte.materialized.is_some() {
                    return Err(self.unsupported(format!("{cte}"), cat));
                }
                let (rel, scope) = self.query(&cte.query, &ctes, cat)?;
                let mut cols: Vec<(String, ColumnType)> =
                    scope.cols.into_iter().map(|c| (c.name, c.ty)).collect();
                rename(self, &mut cols, &cte.alias, cat)?;
                let idx = {
                    let mut lets = self.lets.borrow_mut();
                    lets.push(rel);
                    lets.len() - 1
                };
                ctes.push((cte.alias.name.value.clone(), idx, cols));
            }
        }
        self.set_expr(&q.body, &ctes, at)
    }

    fn set_expr(&self, body: &SetExpr, ctes: &Ctes, parent: Pos) -> R<(Rel, Scope)> {
        let at = self.at(body, parent);
        match body {
            SetExpr::Select(s) => self.select(s, ctes, at),
            SetExpr::Query(q) => self.query(q, ctes, at),
            SetExpr::SetOperation {
                left,
                op,
                set_quantifier,
                right,
            } => {
                let all = match (op, set_quantifier) {
                    (SetOperator::Union, SetQuantifier::All) => true,
                    (SetOperator::Union, SetQuantifier::Distinct | SetQuantifier::None) => false,
                    (SetOperator::Union, q) => {
                        let pos =
                            keyword_before(self.sql, self.at(right.as_ref(), at), SET_OPERATORS);
                        return Err(self.unsupported(format!("UNION {q}"), pos));
                    }
                    (op, _) => {
                        let pos =
                            keyword_before(self.sql, self.at(right.as_ref(), at), SET_OPERATORS);
                        return Err(self.unsupported(format!("{op}"), pos));
                    }
                };
                let (l, ls) = self.set_expr(left, ctes, at)?;
                let rat = self.at(right.as_ref(), at);
                let (r, rs) = self.set_expr(right, ctes, rat)?;
                if ls.cols.len() != rs.cols.len() {
                    return Err(self.type_err(
                        format!(
                            "the sides of UNION have {} and {} columns",
                            ls.cols.len(),
                            rs.cols.len()
                        ),
                        rat,
                    ));
                }
                let c = self.compiler(&ls);
                let mut lx = Vec::new();
                let mut rx = Vec::new();
                let mut cols = Vec::new();
                let (mut lcast, mut rcast) = (false, false);
                for (i, (a, b)) in ls.cols.iter().zip(&rs.cols).enumerate() {
                    let (ta, tb) = (ls.typed(i), rs.typed(i));
                    let Some((ty, _)) = Compiler::unify(&ta, &tb) else {
                        return Err(self.type_err(
                            format!(
                                "column {} of UNION is {} on one side and {} on the other",
                                i + 1,
                                a.ty,
                                b.ty
                            ),
                            rat,
                        ));
                    };
                    let ty = ty.unwrap_or(a.ty);
                    lcast |= ty != a.ty;
                    rcast |= ty != b.ty;
                    lx.push(c.cast(ta, Some(ty), rat).node);
                    rx.push(c.cast(tb, Some(ty), rat).node);
                    cols.push(ScopeCol {
                        qual: None,
                        name: a.name.clone(),
                        ty,
                    });
                }
                let l = if lcast { map(l, lx) } else { l };
                let r = if rcast { map(r, rx) } else { r };
                let mut branches = Vec::new();
                for side in [l, r] {
                    match side {
                        Rel::Union(inner) => branches.extend(inner),
                        other => branches.push(other),
                    }
                }
                let u = Rel::Union(branches);
                let rel = if all { u } else { Rel::Distinct(Box::new(u)) };
                Ok((rel, Scope { cols }))
            }
            SetExpr::Values(_) => {
                Err(self.unsupported("VALUES", self.kw(body, parent, &["VALUES"])))
            }
            SetExpr::Table(_) => {
                Err(self.unsupported("TABLE statement", self.kw(body, parent, &["TABLE"])))
            }
            other => Err(self.unsupported(first_line(&other.to_string()), at)),
        }
    }

    fn select(&self, s: &ast::Select, ctes: &Ctes, at: Pos) -> R<(Rel, Scope)> {
        let bad = |what: &str, pos: Pos| Err(self.unsupported(what.to_string(), pos));
        // Clauses without a span of their own are found in the text after the SELECT.
        if s.flavor != SelectFlavor::Standard {
            return bad("FROM-first SELECT", keyword_before(self.sql, at, &["FROM"]));
        }
        if let Some(t) = &s.top {
            return bad(&format!("{t}"), self.after(at, &[&["TOP"]]));
        }
        if s.into.is_some() {
            return bad("SELECT INTO", self.after(at, &[&["INTO"]]));
        }
        if !s.lateral_views.is_empty() {
            return bad("LATERAL VIEW", self.after(at, &[&["LATERAL", "VIEW"]]));
        }
        if let Some(p) = &s.prewhere {
            return bad("PREWHERE", self.kw(p, at, &["PREWHERE"]));
        }
        if !s.connect_by.is_empty() {
            let seqs: &[&[&str]] = &[&["START", "WITH"], &["CONNECT", "BY"]];
            return bad("CONNECT BY", self.after(at, seqs));
        }
        if !s.cluster_by.is_empty() || !s.distribute_by.is_empty() || !s.sort_by.is_empty() {
            let seqs: &[&[&str]] = &[&["CLUSTER", "BY"], &["DISTRIBUTE", "BY"], &["SORT", "BY"]];
            return match find(self.sql, at, seqs) {
                Some((pos, i)) => bad(&seqs[i].join(" "), pos),
                None => bad("CLUSTER BY / DISTRIBUTE BY / SORT BY", at),
            };
        }
        if !s.named_window.is_empty() {
            return bad("WINDOW clause", self.after(at, &[&["WINDOW"]]));
        }
        if let Some(q) = &s.qualify {
            return bad("QUALIFY", self.kw(q, at, &["QUALIFY"]));
        }
        if !s.optimizer_hints.is_empty() {
            return bad("optimizer hint /*+ ... */", self.after(at, &[&["/*+"]]));
        }
        if let Some(m) = &s.select_modifiers {
            let text = format!("{m}");
            let words: Vec<&str> = text.split_whitespace().collect();
            let seqs: Vec<&[&str]> = words.iter().map(std::slice::from_ref).collect();
            return bad(
                &format!("SELECT modifier {}", words.join(" ")),
                self.after(at, &seqs),
            );
        }
        if let Some(mode) = &s.value_table_mode {
            let seqs: &[&[&str]] = &[&["AS", "STRUCT"], &["AS", "VALUE"]];
            return bad(&format!("SELECT {mode}"), self.after(at, seqs));
        }
        if let Some(x) = &s.exclude {
            return bad(&format!("SELECT {x}"), self.after(at, &[&["EXCLUDE"]]));
        }
        let distinct = match &s.distinct {
            None | Some(Distinct::All) => false,
            Some(Distinct::Distinct) => true,
            Some(Distinct::On(exprs)) => {
                let pos = match exprs.first() {
                    Some(e) => self.kw(e, at, &["DISTINCT", "ON"]),
                    None => self.after(at, &[&["DISTINCT", "ON"]]),
                };
                return bad("DISTINCT ON", pos);
            }
        };
        // FROM
        let (mut rel, mut scope) = match s.from.as_slice() {
            [] => return bad("SELECT without FROM", at),
            [one] => self.from(one, ctes, at)?,
            [_, second, ..] => {
                return bad(
                    "comma join (FROM a, b); write a JOIN ... ON",
                    self.at(&second.relation, at),
                )
            }
        };
        // WHERE
        if let Some(w) = &s.selection {
            let c = self.compiler(&scope);
            let wat = self.at(w, at);
            let pred = c.boolean(w, "WHERE", wat)?;
            rel = Rel::Filter {
                input: Box::new(rel),
                pred: pred.node,
            };
        }
        // GROUP BY
        let group_exprs: &[ast::Expr] = match &s.group_by {
            GroupByExpr::All(_) => {
                return bad("GROUP BY ALL", self.after(at, &[&["GROUP", "BY", "ALL"]]))
            }
            GroupByExpr::Expressions(exprs, modifiers) => {
                if let Some(m) = modifiers.first() {
                    let pos = match m {
                        GroupByWithModifier::Rollup => self.after(at, &[&["WITH", "ROLLUP"]]),
                        GroupByWithModifier::Cube => self.after(at, &[&["WITH", "CUBE"]]),
                        GroupByWithModifier::Totals => self.after(at, &[&["WITH", "TOTALS"]]),
                        GroupByWithModifier::GroupingSets(e) => {
                            self.kw(e, at, &["GROUPING", "SETS"])
                        }
                    };
                    return bad(&format!("GROUP BY modifier {m}"), pos);
                }
                exprs
            }
        };
        let (group_exprs, windowed) = self.window_groups(group_exprs, &mut rel, &mut scope, at)?;
        let scope_c = self.compiler(&scope);
        let mut groups = Vec::with_capacity(group_exprs.len());
        for g in &group_exprs {
            let gat = self.at(g, at);
            let g = self.group_target(g, &s.projection, &scope, gat)?;
            let t = scope_c.expr(&g, gat)?;
            let col = match &t.node {
                Node::Col(i, _) => Some(*i),
                _ => None,
            };
            groups.push((g, t, col));
        }
        let gn = GroupNames {
            input: &scope,
            groups,
            aggs: RefCell::new(Vec::new()),
            implicit: group_exprs.is_empty(),
            bare: RefCell::new(None),
        };
        let gc = self.compiler(&gn);
        // Projection (and HAVING) in the grouped scope; without GROUP BY and aggregates the
        // nodes index the input row directly.
        let mut exprs = Vec::new();
        let mut cols = Vec::new();
        for item in &s.projection {
            let iat = self.at(item, at);
            match item {
                SelectItem::UnnamedExpr(e) => {
                    let t = gc.expr(e, iat)?;
                    cols.push(out_col(&t, &output_name(e)));
                    exprs.push(t.node);
                }
                SelectItem::ExprWithAlias { expr, alias } => {
                    let t = gc.expr(expr, iat)?;
                    cols.push(out_col(&t, &alias.value));
                    exprs.push(t.node);
                }
                SelectItem::Wildcard(opts) => {
                    wildcard_options(self, opts, iat)?;
                    for i in 0..scope.cols.len() {
                        let t = self.star_col(&gn, &gc, &scope, i, iat)?;
                        cols.push(out_col(&t, &scope.cols[i].name));
                        exprs.push(t.node);
                    }
                }
                SelectItem::QualifiedWildcard(kind, opts) => {
                    wildcard_options(self, opts, iat)?;
                    let q = match kind {
                        SelectItemQualifiedWildcardKind::ObjectName(n) => match n.0.as_slice() {
                            [ObjectNamePart::Identifier(id)] => id.value.clone(),
                            _ => return bad(&format!("{n}.*"), iat),
                        },
                        SelectItemQualifiedWildcardKind::Expr(e) => {
                            return bad(&format!("{e}.*"), iat)
                        }
                    };
                    let mut any = false;
                    for i in 0..scope.cols.len() {
                        if scope.cols[i].qual.as_deref() == Some(q.as_str()) {
                            any = true;
                            let t = self.star_col(&gn, &gc, &scope, i, iat)?;
                            cols.push(out_col(&t, &scope.cols[i].name));
                            exprs.push(t.node);
                        }
                    }
                    if !any {
                        return Err(
                            self.type_err(format!("no table `{q}` in FROM for `{q}.*`"), iat)
                        );
                    }
                }
                SelectItem::ExprWithAliases { .. } => return bad("multiple aliases", iat),
            }
        }
        let having = match &s.having {
            Some(h) => Some(gc.boolean(h, "HAVING", self.at(h, at))?),
            None => None,
        };
        if windowed {
            // The output positions of window_start / window_end (group columns as they are).
            let n = scope.cols.len();
            let out_of = |col: usize| -> Option<usize> {
                let g = gn.groups.iter().position(|(_, _, c)| *c == Some(col))?;
                exprs
                    .iter()
                    .position(|e| matches!(e, Node::Col(c, _) if *c == g))
            };
            let (start, end) = (out_of(n - 2), out_of(n - 1));
            let mut w = self.window.borrow_mut();
            let (plan, wat) = w.as_mut().expect("windowed");
            match (start, end) {
                (Some(s), Some(e)) if !distinct => {
                    plan.start_col = s;
                    plan.end_col = e;
                }
                _ => {
                    return Err(self.type_err(
                        "a windowed SELECT outputs window_start and window_end as they are \
                         (and has no DISTINCT)"
                            .into(),
                        *wat,
                    ))
                }
            }
        }
        let grouped = !group_exprs.is_empty() || !gn.aggs.borrow().is_empty() || having.is_some();
        if grouped {
            if let Some(err) = gn.bare.borrow_mut().take() {
                return Err(err);
            }
            let aggs = gn.aggs.into_inner().into_iter().map(|(_, a)| a).collect();
            rel = Rel::Reduce {
                input: Box::new(rel),
                group: gn.groups.into_iter().map(|(_, t, _)| t.node).collect(),
                aggs,
                global: group_exprs.is_empty(),
            };
            if let Some(h) = having {
                rel = Rel::Filter {
                    input: Box::new(rel),
                    pred: h.node,
                };
            }
        }
        rel = map(rel, exprs);
        if distinct {
            rel = Rel::Distinct(Box::new(rel));
        }
        Ok((rel, Scope { cols }))
    }

    /// The `GROUP BY` items with a window (`TUMBLE(…)` / `HOP(…)`) replaced by the
    /// `window_start` and `window_end` columns it appends to the input (`rel`, `scope`).
    fn window_groups(
        &self,
        group_exprs: &[ast::Expr],
        rel: &mut Rel,
        scope: &mut Scope,
        at: Pos,
    ) -> R<(Vec<ast::Expr>, bool)> {
        let mut out = Vec::with_capacity(group_exprs.len() + 1);
        let mut windowed = false;
        for g in group_exprs {
            let gat = self.at(g, at);
            let call = match g {
                ast::Expr::Function(f) => match f.name.0.as_slice() {
                    [ObjectNamePart::Identifier(id)]
                        if matches!(id.value.to_lowercase().as_str(), "tumble" | "hop") =>
                    {
                        Some((id.value.to_lowercase(), f))
                    }
                    _ => None,
                },
                _ => None,
            };
            let Some((name, f)) = call else {
                out.push(g.clone());
                continue;
            };
            if self.window.borrow().is_some() {
                return Err(self.unsupported("a second window in one GROUP BY", gat));
            }
            let args: Vec<&ast::Expr> = match &f.args {
                FunctionArguments::List(list) if list.clauses.is_empty() => list
                    .args
                    .iter()
                    .map(|a| match a {
                        FunctionArg::Unnamed(FunctionArgExpr::Expr(x)) => Ok(x),
                        other => Err(self.unsupported(format!("window argument {other}"), gat)),
                    })
                    .collect::<R<_>>()?,
                _ => return Err(self.unsupported(format!("{g}"), gat)),
            };
            let want = if name == "tumble" { 2 } else { 3 };
            if args.len() != want {
                return Err(self.type_err(
                    format!(
                        "{} takes {want} arguments (the event-time column, {}), got {} in `{g}`",
                        name.to_uppercase(),
                        if want == 2 {
                            "the window size"
                        } else {
                            "the window size, the slide"
                        },
                        args.len()
                    ),
                    gat,
                ));
            }
            let mut base = &*rel;
            while let Rel::Filter { input, .. } = base {
                base = input;
            }
            let Rel::Input { name: relation } = base else {
                return Err(self.unsupported(
                    "a window over a join, a WITH query or a subquery (a windowed SELECT reads \
                     one table: FROM <table> [WHERE …])",
                    gat,
                ));
            };
            let relation = relation.clone();
            let c = self.compiler(&*scope);
            let time = c.expr(args[0], gat)?;
            let col = match time.node {
                Node::Col(i, ColumnType::Timestamp) => i,
                _ => {
                    return Err(self.type_err(
                        format!(
                            "the first argument of {} is the table's event-time column (a \
                             timestamp), got `{}`",
                            name.to_uppercase(),
                            args[0]
                        ),
                        gat,
                    ))
                }
            };
            let size = c.interval(args[1], gat)?;
            let slide = if want == 3 {
                c.interval(args[2], gat)?
            } else {
                size
            };
            if slide > size {
                return Err(self.type_err(
                    format!(
                        "HOP(time, size, slide): the slide ({}) is longer than the window size \
                         ({}), so some rows would be in no window",
                        args[2], args[1]
                    ),
                    gat,
                ));
            }
            for n in [WINDOW_START, WINDOW_END] {
                if scope.cols.iter().any(|c| c.name == n) {
                    return Err(self.type_err(
                        format!("`{relation}` has a column `{n}`, which the window would hide"),
                        gat,
                    ));
                }
            }
            let time_column = scope.cols[col].name.clone();
            // The WHERE filter stays below the window.
            let input = std::mem::replace(rel, Rel::Get(usize::MAX));
            *rel = Rel::Window {
                input: Box::new(input),
                time: col,
                size,
                slide,
            };
            for n in [WINDOW_START, WINDOW_END] {
                scope.cols.push(ScopeCol {
                    qual: None,
                    name: n.into(),
                    ty: ColumnType::Timestamp,
                });
                out.push(ast::Expr::Identifier(ast::Ident::new(n)));
            }
            *self.window.borrow_mut() = Some((
                WindowPlan {
                    relation,
                    time_column,
                    size,
                    slide,
                    start_col: 0,
                    end_col: 0,
                },
                gat,
            ));
            windowed = true;
        }
        Ok((out, windowed))
    }

    /// A `GROUP BY` item: an expression over the input, or (when it is not an input column)
    /// the alias or 1-based position of a select item.
    fn group_target(
        &self,
        g: &ast::Expr,
        projection: &[SelectItem],
        scope: &Scope,
        gat: Pos,
    ) -> R<ast::Expr> {
        let item_expr = |i: usize| -> Option<ast::Expr> {
            match projection.get(i)? {
                SelectItem::UnnamedExpr(e) | SelectItem::ExprWithAlias { expr: e, .. } => {
                    Some(e.clone())
                }
                _ => None,
            }
        };
        match g {
            ast::Expr::Value(v) => {
                if let ast::Value::Number(n, _) = &v.value {
                    let k: usize = n.parse().unwrap_or(0);
                    return match k.checked_sub(1).and_then(item_expr) {
                        Some(e) => Ok(e),
                        None => Err(self.type_err(
                            format!("GROUP BY {n} is not the position of a select expression"),
                            gat,
                        )),
                    };
                }
                Ok(g.clone())
            }
            ast::Expr::Identifier(id) => {
                let is_input = scope.cols.iter().any(|c| c.name == id.value);
                if !is_input {
                    for (i, item) in projection.iter().enumerate() {
                        if let SelectItem::ExprWithAlias { alias, .. } = item {
                            if alias.value == id.value {
                                return Ok(item_expr(i).expect("aliased item"));
                            }
                        }
                    }
                }
                Ok(g.clone())
            }
            _ => Ok(g.clone()),
        }
    }

    fn star_col(
        &self,
        gn: &GroupNames<'_>,
        gc: &Compiler<'_>,
        scope: &Scope,
        i: usize,
        at: Pos,
    ) -> R<Typed> {
        let col = &scope.cols[i];
        let mut parts = Vec::new();
        if let Some(q) = &col.qual {
            parts.push(ast::Ident::new(q.clone()));
        }
        parts.push(ast::Ident::new(col.name.clone()));
        if gn.implicit {
            // Resolve by index (a `*` over a join may repeat names).
            if gn.groups.is_empty() {
                let err = not_grouped(gc, &col.name, at);
                gn.bare.borrow_mut().get_or_insert(err);
            }
            return Ok(scope.typed(i));
        }
        gn.column(gc, &parts, at)
    }

    /// A `FROM` item with its joins.
    fn from(&self, twj: &ast::TableWithJoins, ctes: &Ctes, at: Pos) -> R<(Rel, Scope)> {
        let (mut rel, mut scope) = self.factor(&twj.relation, ctes, at)?;
        for j in &twj.joins {
            let jat = self.at(j, at);
            let (outer, constraint) = match &j.join_operator {
                JoinOperator::Join(c) | JoinOperator::Inner(c) => (false, c),
                JoinOperator::Left(c) | JoinOperator::LeftOuter(c) => (true, c),
                JoinOperator::Right(_) | JoinOperator::RightOuter(_) => {
                    return Err(self.unsupported(
                        "RIGHT JOIN (swap the sides and use LEFT JOIN)",
                        self.kw(j, at, JOIN_WORDS),
                    ))
                }
                JoinOperator::FullOuter(_) => {
                    return Err(self.unsupported("FULL OUTER JOIN", self.kw(j, at, JOIN_WORDS)))
                }
                JoinOperator::CrossJoin(_) => {
                    return Err(self.unsupported("CROSS JOIN", self.kw(j, at, JOIN_WORDS)))
                }
                other => {
                    let text = other_join_name(other);
                    return Err(self.unsupported(text, self.kw(j, at, JOIN_WORDS)));
                }
            };
            let on = match constraint {
                JoinConstraint::On(e) => e,
                JoinConstraint::Using(_) => {
                    return Err(self.unsupported(
                        "JOIN ... USING (write ON a.x = b.x)",
                        self.after(jat, &[&["USING"]]),
                    ))
                }
                JoinConstraint::Natural => {
                    return Err(self.unsupported("NATURAL JOIN", self.kw(j, at, JOIN_WORDS)))
                }
                JoinConstraint::None => {
                    return Err(self
                        .unsupported("JOIN without ON (a cross join)", self.kw(j, at, JOIN_WORDS)))
                }
            };
            let (rrel, rscope) = self.factor(&j.relation, ctes, jat)?;
            let (r2, s2) = self.join(rel, scope, rrel, rscope, on, outer, jat)?;
            rel = r2;
            scope = s2;
        }
        Ok((rel, scope))
    }

    #[allow(clippy::too_many_arguments)]
    fn join(
        &self,
        left: Rel,
        ls: Scope,
        right: Rel,
        rs: Scope,
        on: &ast::Expr,
        outer: bool,
        jat: Pos,
    ) -> R<(Rel, Scope)> {
        let lw = ls.cols.len();
        let mut both = ls.clone();
        both.cols.extend(rs.cols.iter().cloned());
        let bc = self.compiler(&both);
        let rc = self.compiler(&rs);
        let mut conjuncts = Vec::new();
        split_and(on, &mut conjuncts);
        let (mut lkeys, mut rkeys) = (Vec::new(), Vec::new());
        let mut residual: Vec<Node> = Vec::new();
        let mut right_filter: Vec<Node> = Vec::new();
        let side = |t: &Typed| -> Option<bool> {
            // Some(true): left only; Some(false): right only; None: both or neither.
            let mut cols = Vec::new();
            t.node.columns(&mut cols);
            if cols.is_empty() {
                None
            } else if cols.iter().all(|&c| c < lw) {
                Some(true)
            } else if cols.iter().all(|&c| c >= lw) {
                Some(false)
            } else {
                None
            }
        };
        for cj in conjuncts {
            let cat = self.at(cj, jat);
            if let ast::Expr::BinaryOp {
                left: a,
                op: ast::BinaryOperator::Eq,
                right: b,
            } = cj
            {
                let (mut ta, mut tb) = (bc.expr(a, cat)?, bc.expr(b, cat)?);
                let kind = bc.cmp_kind(&mut ta, &mut tb, cj, cat)?;
                let pair = match (side(&ta), side(&tb)) {
                    (Some(true), Some(false)) => Some((ta, b.as_ref(), tb)),
                    (Some(false), Some(true)) => Some((tb, a.as_ref(), ta)),
                    _ => None,
                };
                if let Some((lt, rexpr, rt_both)) = pair {
                    // The right side again, against the right relation alone.
                    let rt = rc.expr(rexpr, cat)?;
                    let (lk, rk) = key_kinds(&lt, &rt_both, kind);
                    lkeys.push((lt.node, lk));
                    rkeys.push((rt.node, rk));
                    continue;
                }
            }
            let t = bc.boolean(cj, "ON", cat)?;
            if !outer {
                residual.push(t.node);
            } else if side(&t) == Some(false) {
                right_filter.push(rc.boolean(cj, "ON", cat)?.node);
            } else {
                return Err(self.unsupported(
                    format!(
                        "condition `{cj}` in LEFT JOIN ... ON (only equalities between the two sides \
                         and conditions on the right side alone)"
                    ),
                    cat,
                ));
            }
        }
        if lkeys.is_empty() {
            return Err(self.unsupported(
                "JOIN without an equality between the two sides in ON (a cross join)",
                self.at(on, jat),
            ));
        }
        let mut right = right;
        for pred in right_filter {
            right = Rel::Filter {
                input: Box::new(right),
                pred,
            };
        }
        let mut rel = Rel::Join {
            left: Box::new(left),
            right: Box::new(right),
            left_keys: lkeys,
            right_keys: rkeys,
            outer,
            right_width: rs.cols.len(),
        };
        for pred in residual {
            rel = Rel::Filter {
                input: Box::new(rel),
                pred,
            };
        }
        Ok((rel, both))
    }

    /// One relation of `FROM`: a table or view of the catalog, a `WITH` query, a subquery, or
    /// a parenthesized join.
    fn factor(&self, f: &TableFactor, ctes: &Ctes, parent: Pos) -> R<(Rel, Scope)> {
        let at = self.at(f, parent);
        match f {
            TableFactor::Table {
                name,
                alias,
                args,
                with_hints,
                version,
                with_ordinality,
                partitions,
                json_path,
                sample,
                index_hints,
            } => {
                if args.is_some()
                    || !with_hints.is_empty()
                    || version.is_some()
                    || *with_ordinality
                    || !partitions.is_empty()
                    || json_path.is_some()
                    || sample.is_some()
                    || !index_hints.is_empty()
                {
                    return Err(self.unsupported(format!("table reference {f}"), at));
                }
                let tname = match name.0.as_slice() {
                    [ObjectNamePart::Identifier(id)] => id.value.clone(),
                    _ => {
                        return Err(self.unsupported(
                            format!(
                            "qualified table name {name} (name a table or view of the pipeline)"
                        ),
                            at,
                        ))
                    }
                };
                let (rel, mut cols) =
                    if let Some((_, idx, cols)) = ctes.iter().rev().find(|(n, _, _)| *n == tname) {
                        (Rel::Get(*idx), cols.clone())
                    } else if let Some(cols) = self.catalog.get(&tname) {
                        self.inputs.borrow_mut().insert(tname.clone());
                        (
                            Rel::Input {
                                name: tname.clone(),
                            },
                            cols.iter().map(|c| (c.name.clone(), c.ty)).collect(),
                        )
                    } else {
                        let mut known: Vec<String> = self.catalog.keys().cloned().collect();
                        known.extend(ctes.iter().map(|(n, _, _)| n.clone()));
                        return Err(SqlError::UnknownRelation {
                            name: tname,
                            at,
                            known: known.join(", "),
                            sql: self.sql.to_string(),
                        });
                    };
                let qual = match alias {
                    Some(a) => {
                        rename(self, &mut cols, a, at)?;
                        a.name.value.clone()
                    }
                    None => tname,
                };
                Ok((rel, scope_of(Some(qual), cols)))
            }
            TableFactor::Derived {
                lateral,
                subquery,
                alias,
                sample,
            } => {
                if *lateral {
                    return Err(
                        self.unsupported("LATERAL subquery", self.kw(f, parent, &["LATERAL"]))
                    );
                }
                if sample.is_some() {
                    return Err(
                        self.unsupported("TABLESAMPLE", self.after(at, &[&["TABLESAMPLE"]]))
                    );
                }
                let (rel, scope) = self.query(subquery, ctes, at)?;
                let mut cols: Vec<(String, ColumnType)> =
                    scope.cols.into_iter().map(|c| (c.name, c.ty)).collect();
                let qual = match alias {
                    Some(a) => {
                        rename(self, &mut cols, a, at)?;
                        Some(a.name.value.clone())
                    }
                    None => None,
                };
                Ok((rel, scope_of(qual, cols)))
            }
            TableFactor::NestedJoin {
                table_with_joins,
                alias,
            } => {
                if let Some(a) = alias {
                    let pos = if a.name.span.start.line == 0 {
                        at
                    } else {
                        Pos::of(a.name.span.start)
                    };
                    return Err(self.unsupported("alias of a parenthesized join", pos));
                }
                self.from(table_with_joins, ctes, at)
            }
            other => {
                Err(self.unsupported(format!("FROM item {}", first_line(&other.to_string())), at))
            }
        }
    }
}

fn scope_of(qual: Option<String>, cols: Vec<(String, ColumnType)>) -> Scope {
    Scope {
        cols: cols
            .into_iter()
            .map(|(name, ty)| ScopeCol {
                qual: qual.clone(),
                name,
                ty,
            })
            .collect(),
    }
}

/// Applies the column names of `AS t(a, b)`.
fn rename(
    p: &Planner<'_>,
    cols: &mut [(String, ColumnType)],
    alias: &ast::TableAlias,
    at: Pos,
) -> R<()> {
    if alias.columns.is_empty() {
        return Ok(());
    }
    if alias.columns.len() != cols.len() {
        return Err(p.type_err(
            format!(
                "`{alias}` names {} columns, but the relation has {}",
                alias.columns.len(),
                cols.len()
            ),
            at,
        ));
    }
    for (c, def) in cols.iter_mut().zip(&alias.columns) {
        if def.data_type.is_some() {
            return Err(p.unsupported(format!("typed column alias {def}"), at));
        }
        c.0 = def.name.value.clone();
    }
    Ok(())
}

fn wildcard_options(p: &Planner<'_>, o: &ast::WildcardAdditionalOptions, at: Pos) -> R<()> {
    if o.opt_ilike.is_some()
        || o.opt_exclude.is_some()
        || o.opt_except.is_some()
        || o.opt_replace.is_some()
        || o.opt_rename.is_some()
        || o.opt_alias.is_some()
    {
        return Err(p.unsupported(format!("* with options ({o})"), at));
    }
    Ok(())
}

/// The keywords of a join operator (before its right relation).
const JOIN_WORDS: &[&str] = &[
    "JOIN",
    "INNER",
    "LEFT",
    "RIGHT",
    "FULL",
    "OUTER",
    "CROSS",
    "NATURAL",
    "SEMI",
    "ANTI",
    "APPLY",
    "ASOF",
    "STRAIGHT_JOIN",
    "GLOBAL",
];

/// The keywords of a set operation (before its right side).
const SET_OPERATORS: &[&str] = &[
    "UNION",
    "EXCEPT",
    "INTERSECT",
    "MINUS",
    "ALL",
    "DISTINCT",
    "BY",
    "NAME",
];

fn other_join_name(op: &JoinOperator) -> String {
    match op {
        JoinOperator::Semi(_) | JoinOperator::LeftSemi(_) | JoinOperator::RightSemi(_) => {
            "SEMI JOIN".into()
        }
        JoinOperator::Anti(_) | JoinOperator::LeftAnti(_) | JoinOperator::RightAnti(_) => {
            "ANTI JOIN".into()
        }
        JoinOperator::CrossApply | JoinOperator::OuterApply => "APPLY".into(),
        JoinOperator::AsOf { .. } => "ASOF JOIN".into(),
        JoinOperator::StraightJoin(_) => "STRAIGHT_JOIN".into(),
        _ => "this kind of JOIN".into(),
    }
}

fn first_line(s: &str) -> String {
    let line = s.lines().next().unwrap_or("");
    if line.chars().count() > 60 {
        format!("{}…", line.chars().take(60).collect::<String>())
    } else {
        line.to_string()
    }
}

fn map(input: Rel, exprs: Vec<Node>) -> Rel {
    Rel::Map {
        input: Box::new(input),
        exprs,
    }
}

fn out_col(t: &Typed, name: &str) -> ScopeCol {
    ScopeCol {
        qual: None,
        name: name.to_string(),
        // A bare NULL has no type of its own: string, as in `compile`.
        ty: t.ty.unwrap_or(ColumnType::String),
    }
}

/// The name of an unaliased select item: the column's name, else the expression's text.
fn output_name(e: &ast::Expr) -> String {
    match e {
        ast::Expr::Identifier(id) => id.value.clone(),
        ast::Expr::CompoundIdentifier(parts) => {
            parts.last().map(|p| p.value.clone()).unwrap_or_default()
        }
        ast::Expr::Nested(inner) => output_name(inner),
        other => other.to_string(),
    }
}

fn split_and<'e>(e: &'e ast::Expr, out: &mut Vec<&'e ast::Expr>) {
    match e {
        ast::Expr::BinaryOp {
            left,
            op: ast::BinaryOperator::And,
            right,
        } => {
            split_and(left, out);
            split_and(right, out);
        }
        ast::Expr::Nested(inner) => split_and(inner, out),
        other => out.push(other),
    }
}

/// The key encodings of a key pair compared with `kind` (types of `l` and `r`).
fn key_kinds(l: &Typed, r: &Typed, kind: CmpKind) -> (KeyKind, KeyKind) {
    let (Some(lt), Some(rt)) = (l.ty, r.ty) else {
        return (KeyKind::Plain, KeyKind::Plain);
    };
    if !matches!(kind, CmpKind::Num { .. }) {
        return (KeyKind::Plain, KeyKind::Plain);
    }
    if lt.is_integer() && rt.is_integer() {
        return (KeyKind::Plain, KeyKind::Plain);
    }
    let (ls, rs) = (scale_of(Some(lt)), scale_of(Some(rt)));
    if is_float(lt) || is_float(rt) {
        return (KeyKind::Float { scale: ls }, KeyKind::Float { scale: rs });
    }
    let to = ls.max(rs);
    (KeyKind::Dec { from: ls, to }, KeyKind::Dec { from: rs, to })
}
