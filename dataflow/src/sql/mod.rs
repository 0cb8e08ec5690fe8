//! SQL scalar expressions over typed records: compiled once against a [`Schema`], evaluated
//! per record.
//!
//! Used for APPLY CHANGES conditions (`apply_as_deletes = "__op = 'd'"`), expectations
//! (`amount > 0 AND currency IS NOT NULL`) and, later, the projections and `WHERE` of views.
//!
//! ```
//! use tidewater::sql::compile_predicate;
//! use tidewater_connectors::types::{Column, ColumnType, Datum, Schema};
//!
//! let schema = Schema::with_meta(vec![Column { name: "amount".into(), ty: ColumnType::Int64 }]);
//! let deletes = compile_predicate("__op = 'd'", &schema).unwrap();
//! let row = vec![
//!     Datum::Int(5), Datum::Str("d".into()), Datum::Int(1), Datum::Null, Datum::Null, Datum::Null,
//! ];
//! assert!(deletes.eval_predicate(&row));
//! let err = compile_predicate("amout > 0", &schema).unwrap_err();
//! assert!(err.to_string().starts_with("unknown column `amout` at 1:1"));
//! ```
//!
//! [`compile`] parses one expression with sqlparser (generic dialect), resolves column names
//! against the schema and type-checks it; [`Expr::eval`] evaluates it on a row indexed like
//! the schema's columns. Anything not in the table below is an error
//! ([`SqlError::Unsupported`]) naming the construct and its `line:column` — never a silent
//! wrong answer.
//!
//! | construct | notes |
//! |---|---|
//! | column names | exactly as in the schema (case-sensitive); `"quoted"` or `` `quoted` `` for other names |
//! | literals | integers (`int64`; larger → `decimal(p,0)`), `1.50` → `decimal(3,2)` (exact), `1e3` → `double`, `'text'`, `TRUE`/`FALSE`, `NULL`, `TIMESTAMP '2024-01-01 10:00:00'` |
//! | `+ - * / %`, unary `-` `+` | int → decimal → double promotion; int `/` int is `double`; decimals exact (below) |
//! | `= <> != < <= > >=` | any numeric mix (int/decimal exactly, double as double); strings by bytes; booleans; timestamps (also with a string literal, parsed at compile time); bytes |
//! | `AND OR NOT` | three-valued logic: `NULL AND FALSE` = FALSE, `NULL OR TRUE` = TRUE |
//! | `IS [NOT] NULL`, `IS [NOT] TRUE/FALSE/UNKNOWN`, `IS [NOT] DISTINCT FROM` | never NULL |
//! | `[NOT] IN (list)` | `x IN (1, NULL)` with x = 2 is NULL |
//! | `[NOT] BETWEEN a AND b` | `x >= a AND x <= b` with x evaluated once |
//! | `[NOT] LIKE`, `[NOT] ILIKE` `[ESCAPE 'c']` | `%`, `_`; no escape character unless `ESCAPE` is given (standard SQL) |
//! | `CASE WHEN … THEN … [ELSE …] END`, `CASE x WHEN v THEN …` | no ELSE → NULL; branch types unified |
//! | `COALESCE(a, …)`, `NULLIF(a, b)` | |
//! | `CAST(x AS t)`, `TRY_CAST`, `x::t` | t: `tinyint smallint int bigint float real double varchar string text boolean decimal(p,s) timestamp binary`, or a tidewater type name (`int64`) |
//! | `lower upper length char_length concat trim ltrim rtrim substring substr abs round` | `TRIM([LEADING\|TRAILING\|BOTH] [chars FROM] s)`, `SUBSTRING(s FROM a FOR n)` |
//! | `\|\|` | string concatenation; non-strings are cast to string |
//! | `DATE_TRUNC('unit', ts)`, `DATE_DIFF('unit', start, end)` | unit: `second minute hour day week month quarter year` (UTC; weeks start on Monday); `DATE_DIFF` counts the unit boundaries crossed (DuckDB's `date_diff`: 23:00 → 01:00 the next day is 1 day), negative when `end` is earlier |
//! | `ts + INTERVAL 'n' UNIT`, `ts - INTERVAL 'n' UNIT` | a timestamp moved by a fixed amount; UNIT: `millisecond second minute hour day` (fixed lengths: a day is 86,400 s; no months or years) |
//!
//! Not supported (errors): subqueries, `EXISTS`, aggregates and window functions, qualified
//! names (`t.col`; in views they name a relation's column), `INTERVAL` other than added to or subtracted from a timestamp (no `ts - ts`: use `DATE_DIFF`; no month or year intervals), `EXTRACT`, `CEIL`/`FLOOR`, `DATE` literals
//! (there is no date type), regular expressions, arrays, structs and JSON access.
//!
//! ## Choices
//!
//! - **Runtime failures give NULL.** Integer overflow (`i64`, also `abs(i64::MIN)`), decimal
//!   results that do not fit their precision, division or `%` by zero (for doubles too), and a
//!   cast whose value does not convert (`CAST('x' AS int)`, `CAST(300 AS tinyint)`,
//!   `CAST(1e300 AS decimal(5,2))`) give NULL, as in Spark SQL's default mode. The failure is
//!   not lost: [`Expr::eval_checked`] returns it as [`SqlError::Eval`] (kind and position), so
//!   a caller can quarantine the record instead.
//! - **Numbers.** Integer arithmetic is `int64`. `int / int` is `double` (Spark, DuckDB). Any
//!   double operand makes the result `double`. Otherwise decimals are computed exactly with
//!   256-bit intermediates and rounded half away from zero to the result scale: `+ - %` keep
//!   the larger scale (precision capped at 38); `*` and `/` follow Spark's precision/scale
//!   rules (`*`: `(p1+p2+1, s1+s2)`, `/`: scale `max(6, s1+p2+1)`; past 38 digits the scale
//!   is cut but kept ≥ `min(s, 6)`). Integers take part in decimal arithmetic as
//!   `decimal(digits, 0)` (a literal `2` has 1 digit, an `int32` column 10).
//! - **Casts.** To integers: truncation toward zero (double and decimal); strings must be
//!   integer text. Double → decimal goes through the shortest decimal text of the double
//!   (`0.1` → `0.1`). Strings → boolean: `true/t/yes/y/1`, `false/f/no/n/0`, any case. Doubles
//!   → string in Rust's shortest round-trip form (`1.0`, `1e100`, `Infinity`). Timestamps ↔
//!   strings as `YYYY-MM-DD HH:MM:SS[.ffffff]`, UTC (input may use `T`, `Z` or `±HH:MM`).
//! - **Strings.** `concat` skips NULL arguments (PostgreSQL, DuckDB, SQLite); `||` is NULL if
//!   either side is (standard). `length` counts characters. Comparison is by UTF-8 bytes
//!   (code points), no collation.
//! - **Floats.** NaN equals NaN and sorts above every number; `-0 = 0`.
//! - A bare `NULL` has no type of its own; [`compile`] types it as `string`,
//!   [`compile_predicate`] as `boolean`.
//!
//! # Views: `SELECT` queries maintained incrementally
//!
//! [`plan_query`] parses one `SELECT`, resolves its names against a catalog (input relation
//! name → columns: tables and earlier views) and type-checks it, giving a [`QueryPlan`] with
//! the view's output columns; [`render_query`] renders the plan on differential dataflow
//! over collections of [`PackedRow`](tidewater_connectors::types::PackedRow)s (one per input
//! relation, epochs as timestamps) and returns the view's collection. Expressions anywhere in
//! a query are the scalar expressions above, with `t.col` names.
//!
//! | construct | notes |
//! |---|---|
//! | `SELECT expr [AS name], …` | any scalar expression; an unaliased column keeps its name, another expression is named by its text (`COUNT(*)`); the view's column names must be unique |
//! | `*`, `t.*` | all columns of `FROM` / of relation `t`, in order |
//! | `FROM t [AS] a`, `FROM (subquery) [AS] a [(c1, …)]` | tables and views of the catalog, `WITH` queries, subqueries; names are case-sensitive |
//! | `col`, `t.col` | unqualified names must be unique among the relations of `FROM` |
//! | `WHERE cond` | rows where `cond` is TRUE (not NULL) |
//! | `[INNER] JOIN … ON` | `ON` must hold at least one equality between an expression of the left side and one of the right side (`a.x = b.y`, `lower(a.e) = lower(b.e)`); several are combined with `AND`; other conditions (`a.t < b.t`) filter the matches |
//! | `LEFT [OUTER] JOIN … ON` | equalities as above, plus conditions on the right side alone (`AND b.active`); unmatched left rows get NULLs |
//! | `(a JOIN b ON …)` | parenthesized joins |
//! | `GROUP BY e, …` | expressions, select aliases (`GROUP BY word`, when no input column has that name) and positions (`GROUP BY 1`); NULLs form one group |
//! | `COUNT(*)`, `COUNT([DISTINCT] x)`, `SUM`, `AVG`, `MIN`, `MAX` (`[DISTINCT]`) | NULLs ignored; over no non-NULL value `COUNT` = 0, the others NULL; any expression around aggregates (`SUM(a) * 2`, `COALESCE(SUM(x), 0)`) |
//! | aggregates without `GROUP BY` | exactly one row, also over empty input (`COUNT(*)` = 0, `SUM` NULL) |
//! | `HAVING cond` | over group columns and aggregates |
//! | `SELECT DISTINCT` | |
//! | `WITH a AS (…), b AS (…) SELECT …` | non-recursive; a later query may read an earlier one; each is rendered once however often it is read |
//! | `UNION ALL`, `UNION` | column types unified (int64 and double → double); names from the first branch |
//! | `GROUP BY …, TUMBLE(t, INTERVAL '5' MINUTE)` | event-time windows (docs/decisions/0011): the outermost `SELECT` of a view reading one table (`FROM tbl [WHERE …]`) whose watermark is on the timestamp column `t`; adds the group columns `window_start` / `window_end` (`[start, start + size)`, starts at multiples of the size since the Unix epoch), which the select list must output as they are; the view gets a `window_closed` column |
//! | `GROUP BY …, HOP(t, INTERVAL size, INTERVAL slide)` | hopping windows: the **size first**, then the slide (≤ size; starts at multiples of the slide): a row is in every window `[s, s + size)` that contains `t` |
//! | `TUMBLE_START(ts, INTERVAL …)` | a scalar: `ts` floored to a multiple of the interval (join a claim to its window: `w.window_start = TUMBLE_START(c.incident_time, INTERVAL '5' MINUTE)`) |
//! | `INTERVAL 'n' UNIT`, `INTERVAL 'n unit'` | window sizes, and amounts added to or subtracted from a timestamp (`ts + INTERVAL '30' DAY`): whole, positive; `MILLISECOND`, `SECOND`, `MINUTE`, `HOUR`, `DAY` |
//!
//! Errors ([`SqlError::Unsupported`] with `line:column`): `ORDER BY`, `LIMIT`/`OFFSET`/`FETCH`
//! (a view is an unordered set), window functions (`… OVER`), `RIGHT`/`FULL`/`CROSS`/`NATURAL`
//! joins and `USING`, comma joins (`FROM a, b`), joins without an equality between the sides,
//! other conditions in `LEFT JOIN … ON`, subqueries in expressions (scalar, `EXISTS`,
//! `IN (subquery)`, hence correlated subqueries), `LATERAL`, `WITH RECURSIVE`, `EXCEPT`,
//! `INTERSECT`, `VALUES`, `SELECT` without `FROM`, `DISTINCT ON`, `ROLLUP`/`CUBE`/`GROUPING
//! SETS`, aggregate `FILTER`, aggregates in `WHERE`/`ON`, statements other than one `SELECT`;
//! a window over a join, a `WITH` query or a subquery, in a `WITH` query or subquery, two
//! windows in one `GROUP BY`, `TUMBLE`/`HOP` outside `GROUP BY`, a `HOP` slide longer than
//! its size, a windowed `SELECT` that does not output `window_start` and `window_end`.
//! Unknown relations are [`SqlError::UnknownRelation`]; unknown or ambiguous columns and a
//! column neither grouped nor aggregated are errors with their position.
//! The position is where the construct's keyword is written (`RIGHT JOIN` at `RIGHT`,
//! `GROUP BY a WITH ROLLUP` at `WITH`, `FOR UPDATE` at `FOR`), also for the constructs
//! whose syntax-tree node has no position: those are found in the SQL text after the
//! enclosing clause, outside string literals, quoted names and comments.
//!
//! ## Choices (docs/decisions/0008)
//!
//! - **Rows** are `PackedRow`s (canonical bytes), in the catalog's column order for inputs and
//!   in [`QueryPlan::columns`] order for the view. Every column is nullable.
//! - **Keys.** Join keys and group keys are packed rows of canonical values, so SQL-equal
//!   values are equal bytes: doubles `-0` → `0` and every NaN → one NaN (NaN = NaN, as in
//!   the scalar comparisons); an integer/decimal key pair is compared as decimals at the
//!   larger scale, a pair with a double as doubles. A NULL key value matches nothing (the
//!   row does not enter the join arrangement; a left row then comes out padded). `GROUP BY`
//!   outputs the canonical value (`0.0` for a `-0.0` group) and puts all NULLs in one group.
//! - **Aggregates are recomputed per changed group from the group's multiset** (a
//!   differential `reduce`): exact, and independent of arrival order, epochs and worker
//!   count. `SUM`/`AVG` of integers sum exactly in 128 bits; `SUM` of integers is `int64`
//!   and **NULL if the sum leaves the int64 range** (like the scalar overflow rule); `AVG`
//!   of integers is `double` (exact sum / count). `SUM(decimal(p,s))` is
//!   `decimal(min(p+10, 38), s)`, exact (NULL past 38 digits); `AVG(decimal(p,s))` is
//!   `decimal(min(p+4, 38), min(s+4, 38))`, rounded half away from zero (Spark). `SUM`/`AVG`
//!   of doubles add the group's values in the order of their packed bytes — one fixed
//!   order, so the result does not drift with retractions or depend on arrival; it can
//!   differ in the last bits from another engine's order. `MIN`/`MAX` keep the argument's
//!   type (doubles: NaN is largest). A global aggregate holds one marker row (at time 0, on
//!   worker 0) so its group exists over empty input.
//! - **Joins** arrange both sides by key (`join_core`); a left join adds the left rows
//!   whose key is NULL or has no match (left minus its semijoin with the distinct right keys).
//! - **`DISTINCT` / `UNION`** use differential's `distinct` on rows with canonical doubles.
//! - **Work per epoch** (what scales with what). Every operator gets only the epoch's updates:
//!   `map` / `filter` / window assignment do one step per changed input row; a join does,
//!   per changed row, one step per row of the other side with the same key (a changed
//!   dimension row costs its fan-out, which is also the number of output rows that change);
//!   arrangements absorb each update in amortized logarithmic time. **A `reduce` is the
//!   exception: it recomputes each changed group from the group's whole input** (all its
//!   argument rows, as differential hands them to the group's logic), so an epoch costs
//!   the total size of the groups it changes — for every aggregate alike (`COUNT`, `SUM`,
//!   `AVG` are recomputed too, not adjusted by the change), and the same for `MIN` / `MAX` /
//!   `COUNT(DISTINCT)`, which do need the multiset. Many small groups (per customer) make
//!   that small; a few large groups (`country_email_engagement` groups by country, ~1/10
//!   of all opens each) cost that fraction of the table per changed group and epoch, even
//!   though only 2 output rows per group change. `DISTINCT` and `UNION` are reduces keyed
//!   by the whole row: a changed row's group is its own copies. A left join's unmatched
//!   rows cost, per changed right key, the left rows with that key.
//!   [`render_query_counted`] counts the updates out of every operator per epoch
//!   ([`OpCounts`]); the view tests check with it that an epoch changing a few rows does
//!   the same small, exact number of updates over 5,000 and 20,000 rows (joins, aggregates,
//!   `COUNT(DISTINCT)`, left join, `WITH` + `UNION ALL`, the marketing chain up to
//!   `country_email_engagement`), while a plan that recomputes everything would do
//!   thousands. The recomputation inside a `reduce` does not show in that count.

mod compile;
pub(crate) mod convert;
mod expr;
mod locate;
mod query;
mod render;

#[cfg(test)]
mod marketing_tests;
#[cfg(test)]
mod offers_tests;
#[cfg(test)]
mod telematics_tests;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod view_tests;

use std::fmt;

use thiserror::Error;
use tidewater_connectors::types::ColumnType;

use crate::error::TidewaterError;

pub use compile::{compile, compile_predicate};
pub use expr::Expr;
pub use query::{plan_query, QueryPlan, WindowPlan};
pub use render::{render_query, render_query_counted, OpCounts, RowCollection};

/// A position in the SQL text: 1-based line and column (as sqlparser counts them).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Pos {
    /// 1-based line.
    pub line: u64,
    /// 1-based column (characters).
    pub column: u64,
}

impl Pos {
    fn of(l: sqlparser::tokenizer::Location) -> Pos {
        Pos {
            line: l.line,
            column: l.column,
        }
    }
}

impl fmt::Display for Pos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.column)
    }
}

/// What went wrong while evaluating an expression on one record (see [`Expr::eval_checked`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Error)]
pub enum EvalErrorKind {
    /// An integer or decimal result out of range.
    #[error("numeric overflow")]
    Overflow,
    /// Division or `%` by zero.
    #[error("division by zero")]
    DivisionByZero,
    /// A value that does not convert to the target type of a cast.
    #[error("value cannot be cast to {to}")]
    InvalidCast {
        /// The target type.
        to: ColumnType,
    },
    /// A `LIKE` pattern that ends with its escape character.
    #[error("LIKE pattern ends with its escape character")]
    InvalidLikePattern,
    /// `substring` with a negative length.
    #[error("negative substring length")]
    NegativeSubstringLength,
    /// The row holds a datum that does not match its column's type.
    #[error("column {column} holds a value that does not match its type")]
    MistypedDatum {
        /// The column index.
        column: usize,
    },
    /// An intermediate value of an unexpected type (a bug; never expected).
    #[error("internal type mismatch")]
    MistypedValue,
}

/// Errors of compiling or (checked) evaluating a SQL expression. Each names the text and,
/// where it has one, the position.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum SqlError {
    /// The text is not one SQL expression.
    #[error("cannot parse `{sql}`: {message}")]
    Parse {
        /// sqlparser's message (with its line and column).
        message: String,
        /// The whole text.
        sql: String,
    },
    /// A name that is not a column of the schema.
    #[error("unknown column `{name}` at {at} (columns: {columns}) in `{sql}`")]
    UnknownColumn {
        /// The name as written.
        name: String,
        /// Where it is.
        at: Pos,
        /// The schema's column names (and a hint if only the case differs).
        columns: String,
        /// The whole text.
        sql: String,
    },
    /// A relation in `FROM` that is neither an input of the catalog nor a `WITH` query (or,
    /// from [`render_query`], an input of the plan missing from the inputs given).
    #[error("unknown table or view `{name}` at {at} (known: {known}) in `{sql}`")]
    UnknownRelation {
        /// The name as written.
        name: String,
        /// Where it is.
        at: Pos,
        /// The relations that are known.
        known: String,
        /// The whole text.
        sql: String,
    },
    /// Valid SQL that tidewater does not evaluate.
    #[error("unsupported construct `{construct}` at {at} in `{sql}`")]
    Unsupported {
        /// What it is (`EXISTS (subquery)`, `function foo`, …).
        construct: String,
        /// Where it is.
        at: Pos,
        /// The whole text.
        sql: String,
    },
    /// Operands of the wrong types, an invalid literal or argument.
    #[error("{message} at {at} in `{sql}`")]
    Type {
        /// What is wrong, quoting the sub-expression.
        message: String,
        /// Where it is.
        at: Pos,
        /// The whole text.
        sql: String,
    },
    /// A runtime failure reported by [`Expr::eval_checked`].
    #[error("{kind} at {at}")]
    Eval {
        /// What failed.
        kind: EvalErrorKind,
        /// The position of the failing operation in the text.
        at: Pos,
    },
}

impl SqlError {
    /// This error as a configuration error at `key` (e.g. ``table `orders`.apply_as_deletes``).
    pub fn into_config(self, key: impl Into<String>) -> TidewaterError {
        TidewaterError::Config {
            key: key.into(),
            message: self.to_string(),
        }
    }
}
