//! The compiled expression tree and its evaluation over a row of [`Datum`]s.
//!
//! Evaluation works on [`V`], a value that borrows strings and bytes from the row or from the
//! tree, so numeric and boolean expressions (and comparisons of string columns with
//! literals) never allocate. Runtime failures (overflow, division by zero, a failing cast)
//! give NULL and are recorded in [`Cx`], which [`Expr::eval_checked`] turns into an error.

use std::borrow::Cow;
use std::cmp::Ordering;

use tidewater_connectors::types::{ColumnType, Datum};

use super::convert::{self, DecFail, DecOp};
use super::{EvalErrorKind, Pos, SqlError};

/// A compiled SQL scalar expression: evaluate it on rows typed like the schema it was
/// compiled against. Build one with [`compile`](super::compile) or
/// [`compile_predicate`](super::compile_predicate).
#[derive(Clone, Debug)]
pub struct Expr {
    pub(crate) root: Node,
    pub(crate) ty: ColumnType,
    pub(crate) sql: String,
}

impl Expr {
    /// The type of the result.
    pub fn ty(&self) -> ColumnType {
        self.ty
    }

    /// The SQL text it was compiled from.
    pub fn sql(&self) -> &str {
        &self.sql
    }

    /// Evaluates the expression on `row` (indexed like the schema's columns). Overflow,
    /// division by zero and failing casts give NULL (see the module docs).
    pub fn eval(&self, row: &[Datum]) -> Datum {
        let mut cx = Cx::default();
        self.root.ev(row, &mut cx).into_datum()
    }

    /// Whether the expression is TRUE on `row` (NULL and FALSE are not).
    pub fn eval_predicate(&self, row: &[Datum]) -> bool {
        let mut cx = Cx::default();
        matches!(self.root.ev(row, &mut cx), V::Bool(true))
    }

    /// Like [`Expr::eval`], but a runtime failure (overflow, division by zero, failing cast,
    /// a datum of the wrong type in a column) is an error [`SqlError::Eval`] naming it and its
    /// position, instead of a NULL.
    pub fn eval_checked(&self, row: &[Datum]) -> Result<Datum, SqlError> {
        let mut cx = Cx::default();
        let v = self.root.ev(row, &mut cx).into_datum();
        match cx.err {
            Some((kind, at)) => Err(SqlError::Eval { kind, at }),
            None => Ok(v),
        }
    }

    /// The indexes of the schema columns the expression reads, ascending.
    pub fn columns(&self) -> Vec<usize> {
        let mut out = Vec::new();
        self.root.columns(&mut out);
        out.sort_unstable();
        out.dedup();
        out
    }
}

/// The first runtime failure of an evaluation.
#[derive(Default)]
pub(crate) struct Cx {
    pub(crate) err: Option<(EvalErrorKind, Pos)>,
}

impl Cx {
    fn fail<'a>(&mut self, kind: EvalErrorKind, at: Pos) -> V<'a> {
        if self.err.is_none() {
            self.err = Some((kind, at));
        }
        V::Null
    }
}

/// A value during evaluation; strings and bytes borrowed where possible.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum V<'a> {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Dec(i128),
    Ts(i64),
    Str(Cow<'a, str>),
    Bytes(Cow<'a, [u8]>),
}

impl<'a> V<'a> {
    pub(crate) fn of(d: &'a Datum) -> V<'a> {
        match d {
            Datum::Null => V::Null,
            Datum::Bool(b) => V::Bool(*b),
            Datum::Int(i) => V::Int(*i),
            Datum::Float(f) => V::Float(*f),
            Datum::Decimal(d) => V::Dec(*d),
            Datum::Timestamp(t) => V::Ts(*t),
            Datum::Str(s) => V::Str(Cow::Borrowed(s)),
            Datum::Bytes(b) => V::Bytes(Cow::Borrowed(b)),
        }
    }

    pub(crate) fn into_datum(self) -> Datum {
        match self {
            V::Null => Datum::Null,
            V::Bool(b) => Datum::Bool(b),
            V::Int(i) => Datum::Int(i),
            V::Float(f) => Datum::Float(f),
            V::Dec(d) => Datum::Decimal(d),
            V::Ts(t) => Datum::Timestamp(t),
            V::Str(s) => Datum::Str(s.into_owned()),
            V::Bytes(b) => Datum::Bytes(b.into_owned()),
        }
    }

    fn is_null(&self) -> bool {
        matches!(self, V::Null)
    }
}

/// `Some(b)` for a boolean, `None` for NULL (and for a value of another type, which the
/// type checker rules out).
fn truth(v: &V) -> Option<bool> {
    match v {
        V::Bool(b) => Some(*b),
        _ => None,
    }
}

fn bool_or_null<'a>(b: Option<bool>) -> V<'a> {
    b.map_or(V::Null, V::Bool)
}

/// Arithmetic operators.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ArithOp {
    Add,
    Sub,
    Mul,
    Div,
    Rem,
}

/// How an arithmetic node computes: operands are both `Int`, both `Float`, or `Int`/`Dec`
/// with the given scales giving a decimal `(p, s)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ArithKind {
    Int,
    Float,
    Dec { ls: i32, rs: i32, p: i32, s: i32 },
}

/// How a comparison compares: numbers (Int/Dec/Float in any mix; Dec sides with the given
/// scales, Int sides at scale 0), or two values of one other type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum CmpKind {
    Num { ls: i32, rs: i32 },
    Str,
    Bool,
    Ts,
    Bytes,
}

/// Comparison operators.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum CmpOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

impl CmpOp {
    fn test(self, o: Ordering) -> bool {
        match self {
            CmpOp::Eq => o == Ordering::Equal,
            CmpOp::Ne => o != Ordering::Equal,
            CmpOp::Lt => o == Ordering::Less,
            CmpOp::Le => o != Ordering::Greater,
            CmpOp::Gt => o == Ordering::Greater,
            CmpOp::Ge => o != Ordering::Less,
        }
    }
}

/// Which side(s) `TRIM` removes characters from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TrimSide {
    Both,
    Leading,
    Trailing,
}

/// Scalar functions (arguments already coerced by the compiler).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Func {
    Lower,
    Upper,
    /// Characters, not bytes.
    Length,
    /// `concat(...)` skips NULL arguments; `||` (`skip_nulls: false`) is NULL if one is.
    Concat {
        skip_nulls: bool,
    },
    /// `(string[, characters])`; without characters: spaces.
    Trim(TrimSide),
    /// `(string, start[, length])`, 1-based.
    Substring,
    Abs(ArithKind),
    /// Rounds to `digits`; for a decimal argument the scale `s` and result `(p, s')`.
    Round {
        kind: ArithKind,
        digits: i32,
        s: i32,
        p: i32,
    },
    /// `TUMBLE_START(ts, INTERVAL …)`: the timestamp floored to a multiple of the interval
    /// (µs) since the Unix epoch.
    TumbleStart(i64),
    /// `ts + INTERVAL …` / `ts - INTERVAL …`: the timestamp moved by a fixed number of µs.
    AddMicros(i64),
    /// `DATE_TRUNC('unit', ts)`.
    DateTrunc(convert::DateUnit),
    /// `DATE_DIFF('unit', start, end)`.
    DateDiff(convert::DateUnit),
}

/// A node of the compiled tree.
#[derive(Clone, Debug)]
pub(crate) enum Node {
    Col(usize, ColumnType),
    Lit(Datum),
    Neg {
        e: Box<Node>,
        kind: ArithKind,
        at: Pos,
    },
    Arith {
        op: ArithOp,
        kind: ArithKind,
        l: Box<Node>,
        r: Box<Node>,
        at: Pos,
    },
    Cmp {
        op: CmpOp,
        kind: CmpKind,
        l: Box<Node>,
        r: Box<Node>,
    },
    /// `IS [NOT] DISTINCT FROM`: equality where NULL equals NULL; never NULL.
    Distinct {
        kind: CmpKind,
        l: Box<Node>,
        r: Box<Node>,
        negated: bool,
    },
    And(Box<Node>, Box<Node>),
    Or(Box<Node>, Box<Node>),
    Not(Box<Node>),
    IsNull {
        e: Box<Node>,
        negated: bool,
    },
    /// `IS [NOT] TRUE|FALSE`; never NULL.
    IsBool {
        e: Box<Node>,
        value: bool,
        negated: bool,
    },
    In {
        e: Box<Node>,
        list: Vec<(Node, CmpKind)>,
        negated: bool,
    },
    Between {
        e: Box<Node>,
        lo: Box<Node>,
        hi: Box<Node>,
        lo_kind: CmpKind,
        hi_kind: CmpKind,
        negated: bool,
    },
    Like {
        e: Box<Node>,
        pattern: Box<Node>,
        escape: Option<char>,
        case_insensitive: bool,
        negated: bool,
        at: Pos,
    },
    /// Searched CASE (`operand: None`) or simple CASE (each WHEN compared to the operand).
    Case {
        operand: Option<Box<Node>>,
        whens: Vec<(Node, CmpKind, Node)>,
        otherwise: Option<Box<Node>>,
    },
    Coalesce(Vec<Node>),
    NullIf {
        a: Box<Node>,
        b: Box<Node>,
        kind: CmpKind,
    },
    Cast {
        e: Box<Node>,
        from: ColumnType,
        to: ColumnType,
        at: Pos,
    },
    Call {
        f: Func,
        args: Vec<Node>,
        at: Pos,
    },
}

fn dec_scale(t: ColumnType) -> i32 {
    match t {
        ColumnType::Decimal { scale, .. } => scale as i32,
        _ => 0,
    }
}

fn dec_precision(t: ColumnType) -> i32 {
    match t {
        ColumnType::Decimal { precision, .. } => precision as i32,
        _ => 0,
    }
}

/// An Int or Dec value as an unscaled i128.
fn as_i128(v: &V) -> Option<i128> {
    match v {
        V::Int(i) => Some(*i as i128),
        V::Dec(d) => Some(*d),
        _ => None,
    }
}

fn as_f64(v: &V, scale: i32) -> Option<f64> {
    match v {
        V::Int(i) => Some(*i as f64),
        V::Dec(d) => Some(convert::dec_to_f64(*d, scale)),
        V::Float(f) => Some(*f),
        _ => None,
    }
}

/// SQL float order: NaN equals NaN and is above every other value; -0 = 0.
fn float_cmp(a: f64, b: f64) -> Ordering {
    match (a.is_nan(), b.is_nan()) {
        (true, true) => Ordering::Equal,
        (true, false) => Ordering::Greater,
        (false, true) => Ordering::Less,
        _ => a.partial_cmp(&b).unwrap_or(Ordering::Equal),
    }
}

/// Compares two non-NULL values; `None` if one is NULL or their types do not fit `kind`.
pub(crate) fn compare(a: &V, b: &V, kind: CmpKind) -> Option<Ordering> {
    Some(match (kind, a, b) {
        (CmpKind::Num { .. }, V::Int(x), V::Int(y)) => x.cmp(y),
        (CmpKind::Num { ls, rs }, _, _) => {
            if matches!(a, V::Float(_)) || matches!(b, V::Float(_)) {
                float_cmp(as_f64(a, ls)?, as_f64(b, rs)?)
            } else {
                convert::dec_cmp(as_i128(a)?, ls, as_i128(b)?, rs)
            }
        }
        (CmpKind::Str, V::Str(x), V::Str(y)) => x.as_ref().cmp(y.as_ref()),
        (CmpKind::Bool, V::Bool(x), V::Bool(y)) => x.cmp(y),
        (CmpKind::Ts, V::Ts(x), V::Ts(y)) => x.cmp(y),
        (CmpKind::Bytes, V::Bytes(x), V::Bytes(y)) => x.as_ref().cmp(y.as_ref()),
        _ => return None,
    })
}

fn dec_op(op: ArithOp) -> DecOp {
    match op {
        ArithOp::Add => DecOp::Add,
        ArithOp::Sub => DecOp::Sub,
        ArithOp::Mul => DecOp::Mul,
        ArithOp::Div => DecOp::Div,
        ArithOp::Rem => DecOp::Rem,
    }
}

fn arith<'a>(op: ArithOp, kind: ArithKind, a: &V, b: &V, at: Pos, cx: &mut Cx) -> V<'a> {
    use EvalErrorKind::*;
    if a.is_null() || b.is_null() {
        return V::Null;
    }
    match kind {
        ArithKind::Int => {
            let (V::Int(x), V::Int(y)) = (a, b) else {
                return cx.fail(MistypedValue, at);
            };
            let r = match op {
                ArithOp::Add => x.checked_add(*y),
                ArithOp::Sub => x.checked_sub(*y),
                ArithOp::Mul => x.checked_mul(*y),
                ArithOp::Div | ArithOp::Rem if *y == 0 => return cx.fail(DivisionByZero, at),
                ArithOp::Div => x.checked_div(*y),
                ArithOp::Rem => x.checked_rem(*y),
            };
            r.map_or_else(|| cx.fail(Overflow, at), V::Int)
        }
        ArithKind::Float => {
            let (V::Float(x), V::Float(y)) = (a, b) else {
                return cx.fail(MistypedValue, at);
            };
            V::Float(match op {
                ArithOp::Add => x + y,
                ArithOp::Sub => x - y,
                ArithOp::Mul => x * y,
                ArithOp::Div | ArithOp::Rem if *y == 0.0 => return cx.fail(DivisionByZero, at),
                ArithOp::Div => x / y,
                ArithOp::Rem => x % y,
            })
        }
        ArithKind::Dec { ls, rs, p, s } => {
            let (Some(x), Some(y)) = (as_i128(a), as_i128(b)) else {
                return cx.fail(MistypedValue, at);
            };
            match convert::dec_arith(dec_op(op), x, ls, y, rs, (p, s)) {
                Ok(v) => V::Dec(v),
                Err(DecFail::Overflow) => cx.fail(Overflow, at),
                Err(DecFail::DivisionByZero) => cx.fail(DivisionByZero, at),
            }
        }
    }
}

fn int_range(t: ColumnType) -> (i64, i64) {
    match t {
        ColumnType::Int8 => (i8::MIN as i64, i8::MAX as i64),
        ColumnType::Int16 => (i16::MIN as i64, i16::MAX as i64),
        ColumnType::Int32 => (i32::MIN as i64, i32::MAX as i64),
        _ => (i64::MIN, i64::MAX),
    }
}

fn format_float(f: f64) -> String {
    if f.is_infinite() {
        if f > 0.0 { "Infinity" } else { "-Infinity" }.to_string()
    } else {
        format!("{f:?}")
    }
}

fn parse_bool(s: &str) -> Option<bool> {
    let s = s.trim();
    for t in ["true", "t", "yes", "y", "1"] {
        if s.eq_ignore_ascii_case(t) {
            return Some(true);
        }
    }
    for f in ["false", "f", "no", "n", "0"] {
        if s.eq_ignore_ascii_case(f) {
            return Some(false);
        }
    }
    None
}

/// `CAST(v AS to)` for `v` of type `from` (the compiler only builds supported pairs);
/// `None` when the value does not convert.
pub(crate) fn cast<'a>(v: V<'a>, from: ColumnType, to: ColumnType) -> Option<V<'a>> {
    use ColumnType as T;
    if v.is_null() {
        return Some(V::Null);
    }
    Some(match to {
        T::Int8 | T::Int16 | T::Int32 | T::Int64 => {
            let i: i64 = match v {
                V::Int(i) => i,
                V::Float(f) => {
                    let t = f.trunc();
                    // -2^63 <= t < 2^63 (NaN fails both).
                    if !(-9_223_372_036_854_775_808.0..9_223_372_036_854_775_808.0).contains(&t) {
                        return None;
                    }
                    t as i64
                }
                V::Dec(d) => {
                    let q = d / convert::pow10_i128(dec_scale(from) as u32);
                    i64::try_from(q).ok()?
                }
                V::Str(s) => s.trim().parse().ok()?,
                V::Bool(b) => b as i64,
                _ => return None,
            };
            let (lo, hi) = int_range(to);
            if i < lo || i > hi {
                return None;
            }
            V::Int(i)
        }
        T::Float32 | T::Float64 => {
            let f = match v {
                V::Int(i) => i as f64,
                V::Float(f) => f,
                V::Dec(d) => convert::dec_to_f64(d, dec_scale(from)),
                V::Str(s) => s.trim().parse().ok()?,
                V::Bool(b) => b as i64 as f64,
                _ => return None,
            };
            if to == T::Float32 {
                let g = f as f32;
                if g.is_infinite() && f.is_finite() {
                    return None;
                }
                V::Float(g as f64)
            } else {
                V::Float(f)
            }
        }
        T::Decimal { precision, scale } => {
            let (p, s) = (precision as i32, scale as i32);
            V::Dec(match v {
                V::Int(i) => convert::rescale(i as i128, 0, s, p)?,
                V::Dec(d) => convert::rescale(d, dec_scale(from), s, p)?,
                V::Float(f) if f.is_finite() => convert::parse_decimal(&format!("{f:?}"), p, s)?,
                V::Str(t) => convert::parse_decimal(&t, p, s)?,
                V::Bool(b) => convert::rescale(b as i128, 0, s, p)?,
                _ => return None,
            })
        }
        T::String => V::Str(Cow::Owned(match v {
            V::Str(s) => return Some(V::Str(s)),
            V::Int(i) => i.to_string(),
            V::Float(f) => format_float(f),
            V::Dec(d) => convert::format_decimal(d, dec_scale(from)),
            V::Bool(b) => b.to_string(),
            V::Ts(t) => convert::format_timestamp(t),
            V::Bytes(b) => match b {
                Cow::Borrowed(b) => return std::str::from_utf8(b).ok().map(|s| V::Str(s.into())),
                Cow::Owned(b) => String::from_utf8(b).ok()?,
            },
            V::Null => return Some(V::Null),
        })),
        T::Boolean => V::Bool(match v {
            V::Bool(b) => b,
            V::Int(i) => i != 0,
            V::Float(f) => f != 0.0,
            V::Dec(d) => d != 0,
            V::Str(s) => parse_bool(&s)?,
            _ => return None,
        }),
        T::Timestamp => match v {
            V::Ts(t) => V::Ts(t),
            V::Str(s) => V::Ts(convert::parse_timestamp(&s)?),
            _ => return None,
        },
        T::Bytes => match v {
            V::Bytes(b) => V::Bytes(b),
            V::Str(Cow::Borrowed(s)) => V::Bytes(Cow::Borrowed(s.as_bytes())),
            V::Str(Cow::Owned(s)) => V::Bytes(Cow::Owned(s.into_bytes())),
            _ => return None,
        },
    })
}

fn chars_eq(a: char, b: char, ci: bool) -> bool {
    a == b || (ci && a.to_lowercase().eq(b.to_lowercase()))
}

/// SQL `LIKE`: `%` any run of characters, `_` one character, `escape` makes the next
/// pattern character literal. `None` when the pattern ends with the escape character.
pub(crate) fn like(text: &str, pattern: &str, escape: Option<char>, ci: bool) -> Option<bool> {
    let (t, p) = (text, pattern);
    let (mut ti, mut pi) = (0usize, 0usize);
    // After a `%`: where the pattern resumes and how much text the `%` has taken so far.
    let mut star: Option<(usize, usize)> = None;
    loop {
        let mut matched = false;
        if let Some(pc) = p[pi..].chars().next() {
            let mut next = pi + pc.len_utf8();
            let mut literal = pc;
            let mut any = false;
            if Some(pc) == escape {
                literal = p[next..].chars().next()?;
                next += literal.len_utf8();
            } else if pc == '%' {
                star = Some((next, ti));
                pi = next;
                continue;
            } else if pc == '_' {
                any = true;
            }
            if let Some(tc) = t[ti..].chars().next() {
                if any || chars_eq(literal, tc, ci) {
                    ti += tc.len_utf8();
                    pi = next;
                    matched = true;
                }
            }
        } else if ti == t.len() {
            return Some(true);
        }
        if !matched {
            match star {
                Some((sp, st)) if st < t.len() => {
                    let st = st + t[st..].chars().next().map_or(1, char::len_utf8);
                    star = Some((sp, st));
                    ti = st;
                    pi = sp;
                }
                _ => {
                    // No match; still report a dangling escape in the rest of the pattern.
                    return valid_like_pattern(p, escape).then_some(false);
                }
            }
        }
    }
}

/// Whether every escape character in the pattern is followed by a character.
pub(crate) fn valid_like_pattern(pattern: &str, escape: Option<char>) -> bool {
    let Some(esc) = escape else { return true };
    let mut it = pattern.chars();
    while let Some(c) = it.next() {
        if c == esc && it.next().is_none() {
            return false;
        }
    }
    true
}

fn trim<'a>(s: Cow<'a, str>, chars: &str, side: TrimSide) -> Cow<'a, str> {
    let f = |c: char| chars.contains(c);
    let cut = |x: &'a str| match side {
        TrimSide::Both => x.trim_matches(f),
        TrimSide::Leading => x.trim_start_matches(f),
        TrimSide::Trailing => x.trim_end_matches(f),
    };
    match s {
        Cow::Borrowed(x) => Cow::Borrowed(cut(x)),
        Cow::Owned(x) => {
            let f = |c: char| chars.contains(c);
            Cow::Owned(
                match side {
                    TrimSide::Both => x.trim_matches(f),
                    TrimSide::Leading => x.trim_start_matches(f),
                    TrimSide::Trailing => x.trim_end_matches(f),
                }
                .to_string(),
            )
        }
    }
}

/// `substring(s, start[, len])` with SQL's 1-based positions: the characters at positions
/// `start .. start + len` that exist (start may be ≤ 0).
fn substring<'a>(s: Cow<'a, str>, start: i64, len: Option<i64>) -> Cow<'a, str> {
    let end = len.map(|l| start.saturating_add(l));
    let from = start.max(1) as usize - 1;
    let byte = |n: usize, x: &str| x.char_indices().nth(n).map_or(x.len(), |(i, _)| i);
    let cut = |x: &str| -> (usize, usize) {
        let b0 = byte(from, x);
        let b1 = match end {
            Some(e) if e <= 1 => b0,
            Some(e) => byte(e as usize - 1, x).max(b0),
            None => x.len(),
        };
        (b0, b1)
    };
    match s {
        Cow::Borrowed(x) => {
            let (a, b) = cut(x);
            Cow::Borrowed(&x[a..b])
        }
        Cow::Owned(x) => {
            let (a, b) = cut(&x);
            Cow::Owned(x[a..b].to_string())
        }
    }
}

fn round_int(i: i64, digits: i32) -> Option<i64> {
    if digits >= 0 {
        return Some(i);
    }
    let m = 10i64.checked_pow((-digits) as u32)?;
    let q = i / m;
    let r = i % m;
    let q = if r.unsigned_abs() * 2 >= m as u64 {
        q + i.signum()
    } else {
        q
    };
    q.checked_mul(m)
}

fn round_float(f: f64, digits: i32) -> f64 {
    if !f.is_finite() {
        return f;
    }
    let m = 10f64.powi(digits);
    let r = (f * m).round() / m;
    if r.is_finite() {
        r
    } else {
        f
    }
}

impl Node {
    pub(crate) fn columns(&self, out: &mut Vec<usize>) {
        let mut go = |n: &Node| n.columns(out);
        match self {
            Node::Col(i, _) => out.push(*i),
            Node::Lit(_) => {}
            Node::Neg { e, .. }
            | Node::Not(e)
            | Node::IsNull { e, .. }
            | Node::IsBool { e, .. }
            | Node::Cast { e, .. } => go(e),
            Node::Arith { l, r, .. }
            | Node::Cmp { l, r, .. }
            | Node::Distinct { l, r, .. }
            | Node::And(l, r)
            | Node::Or(l, r)
            | Node::NullIf { a: l, b: r, .. }
            | Node::Like {
                e: l, pattern: r, ..
            } => {
                go(l);
                go(r);
            }
            Node::In { e, list, .. } => {
                go(e);
                list.iter().for_each(|(n, _)| go(n));
            }
            Node::Between { e, lo, hi, .. } => {
                go(e);
                go(lo);
                go(hi);
            }
            Node::Case {
                operand,
                whens,
                otherwise,
            } => {
                operand.iter().for_each(|n| go(n));
                for (w, _, t) in whens {
                    go(w);
                    go(t);
                }
                otherwise.iter().for_each(|n| go(n));
            }
            Node::Coalesce(args) | Node::Call { args, .. } => args.iter().for_each(go),
        }
    }

    /// Evaluates the node; runtime failures give NULL and are recorded in `cx`.
    pub(crate) fn ev<'a>(&'a self, row: &'a [Datum], cx: &mut Cx) -> V<'a> {
        match self {
            Node::Col(i, ty) => {
                let v = row.get(*i).map_or(V::Null, V::of);
                if !fits_type(&v, *ty) {
                    return cx.fail(EvalErrorKind::MistypedDatum { column: *i }, Pos::default());
                }
                v
            }
            Node::Lit(d) => V::of(d),
            Node::Neg { e, kind, at } => match (kind, e.ev(row, cx)) {
                (_, V::Null) => V::Null,
                (ArithKind::Int, V::Int(i)) => i
                    .checked_neg()
                    .map_or_else(|| cx.fail(EvalErrorKind::Overflow, *at), V::Int),
                (_, V::Float(f)) => V::Float(-f),
                (_, V::Dec(d)) => V::Dec(-d),
                (ArithKind::Dec { .. }, V::Int(i)) => V::Dec(-(i as i128)),
                _ => cx.fail(EvalErrorKind::MistypedValue, *at),
            },
            Node::Arith { op, kind, l, r, at } => {
                let a = l.ev(row, cx);
                if a.is_null() {
                    return V::Null;
                }
                let b = r.ev(row, cx);
                arith(*op, *kind, &a, &b, *at, cx)
            }
            Node::Cmp { op, kind, l, r } => {
                let a = l.ev(row, cx);
                if a.is_null() {
                    return V::Null;
                }
                let b = r.ev(row, cx);
                bool_or_null(compare(&a, &b, *kind).map(|o| op.test(o)))
            }
            Node::Distinct {
                kind,
                l,
                r,
                negated,
            } => {
                let (a, b) = (l.ev(row, cx), r.ev(row, cx));
                let same = match (&a, &b) {
                    (V::Null, V::Null) => true,
                    (V::Null, _) | (_, V::Null) => false,
                    _ => compare(&a, &b, *kind) == Some(Ordering::Equal),
                };
                // IS DISTINCT FROM is true when not the same; IS NOT DISTINCT FROM when same.
                V::Bool(same == *negated)
            }
            Node::And(l, r) => {
                let a = truth(&l.ev(row, cx));
                if a == Some(false) {
                    return V::Bool(false);
                }
                match (a, truth(&r.ev(row, cx))) {
                    (_, Some(false)) => V::Bool(false),
                    (Some(true), Some(true)) => V::Bool(true),
                    _ => V::Null,
                }
            }
            Node::Or(l, r) => {
                let a = truth(&l.ev(row, cx));
                if a == Some(true) {
                    return V::Bool(true);
                }
                match (a, truth(&r.ev(row, cx))) {
                    (_, Some(true)) => V::Bool(true),
                    (Some(false), Some(false)) => V::Bool(false),
                    _ => V::Null,
                }
            }
            Node::Not(e) => bool_or_null(truth(&e.ev(row, cx)).map(|b| !b)),
            Node::IsNull { e, negated } => V::Bool(e.ev(row, cx).is_null() != *negated),
            Node::IsBool { e, value, negated } => {
                V::Bool((truth(&e.ev(row, cx)) == Some(*value)) != *negated)
            }
            Node::In { e, list, negated } => {
                let x = e.ev(row, cx);
                if x.is_null() {
                    return V::Null;
                }
                let mut saw_null = false;
                for (item, kind) in list {
                    match compare(&x, &item.ev(row, cx), *kind) {
                        Some(Ordering::Equal) => return V::Bool(!*negated),
                        Some(_) => {}
                        None => saw_null = true,
                    }
                }
                if saw_null {
                    V::Null
                } else {
                    V::Bool(*negated)
                }
            }
            Node::Between {
                e,
                lo,
                hi,
                lo_kind,
                hi_kind,
                negated,
            } => {
                let x = e.ev(row, cx);
                if x.is_null() {
                    return V::Null;
                }
                let ge = compare(&x, &lo.ev(row, cx), *lo_kind).map(|o| o != Ordering::Less);
                let le = compare(&x, &hi.ev(row, cx), *hi_kind).map(|o| o != Ordering::Greater);
                let within = match (ge, le) {
                    (Some(false), _) | (_, Some(false)) => Some(false),
                    (Some(true), Some(true)) => Some(true),
                    _ => None,
                };
                bool_or_null(within.map(|w| w != *negated))
            }
            Node::Like {
                e,
                pattern,
                escape,
                case_insensitive,
                negated,
                at,
            } => {
                let (V::Str(s), V::Str(p)) = (e.ev(row, cx), pattern.ev(row, cx)) else {
                    return V::Null;
                };
                match like(&s, &p, *escape, *case_insensitive) {
                    Some(m) => V::Bool(m != *negated),
                    None => cx.fail(EvalErrorKind::InvalidLikePattern, *at),
                }
            }
            Node::Case {
                operand,
                whens,
                otherwise,
            } => {
                let x = operand.as_ref().map(|o| o.ev(row, cx));
                for (when, kind, then) in whens {
                    let w = when.ev(row, cx);
                    let hit = match &x {
                        None => truth(&w) == Some(true),
                        Some(x) => compare(x, &w, *kind) == Some(Ordering::Equal),
                    };
                    if hit {
                        return then.ev(row, cx);
                    }
                }
                otherwise.as_ref().map_or(V::Null, |o| o.ev(row, cx))
            }
            Node::Coalesce(args) => {
                for a in args {
                    let v = a.ev(row, cx);
                    if !v.is_null() {
                        return v;
                    }
                }
                V::Null
            }
            Node::NullIf { a, b, kind } => {
                let x = a.ev(row, cx);
                if x.is_null() {
                    return V::Null;
                }
                let y = b.ev(row, cx);
                if compare(&x, &y, *kind) == Some(Ordering::Equal) {
                    V::Null
                } else {
                    x
                }
            }
            Node::Cast { e, from, to, at } => match cast(e.ev(row, cx), *from, *to) {
                Some(v) => v,
                None => cx.fail(EvalErrorKind::InvalidCast { to: *to }, *at),
            },
            Node::Call { f, args, at } => self.call(*f, args, *at, row, cx),
        }
    }

    fn call<'a>(
        &'a self,
        f: Func,
        args: &'a [Node],
        at: Pos,
        row: &'a [Datum],
        cx: &mut Cx,
    ) -> V<'a> {
        if let Func::Concat { skip_nulls } = f {
            let mut out = String::new();
            for a in args {
                match a.ev(row, cx) {
                    V::Str(s) => out.push_str(&s),
                    V::Null if skip_nulls => {}
                    _ => return V::Null,
                }
            }
            return V::Str(Cow::Owned(out));
        }
        let mut vals = [V::Null, V::Null, V::Null];
        for (slot, a) in vals.iter_mut().zip(args) {
            *slot = a.ev(row, cx);
            if slot.is_null() {
                return V::Null;
            }
        }
        let [a, b, c] = vals;
        match (f, a) {
            (Func::Lower, V::Str(s)) => V::Str(Cow::Owned(s.to_lowercase())),
            (Func::Upper, V::Str(s)) => V::Str(Cow::Owned(s.to_uppercase())),
            (Func::Length, V::Str(s)) => V::Int(s.chars().count() as i64),
            (Func::Trim(side), V::Str(s)) => {
                let chars = match &b {
                    V::Str(c) => c.as_ref(),
                    _ => " ",
                };
                V::Str(trim(s, chars, side))
            }
            (Func::Substring, V::Str(s)) => {
                let V::Int(start) = b else {
                    return cx.fail(EvalErrorKind::MistypedValue, at);
                };
                let len = match c {
                    V::Int(l) if l < 0 => {
                        return cx.fail(EvalErrorKind::NegativeSubstringLength, at)
                    }
                    V::Int(l) => Some(l),
                    _ => None,
                };
                V::Str(substring(s, start, len))
            }
            (Func::TumbleStart(size), V::Ts(t)) => V::Ts(t.div_euclid(size) * size),
            (Func::AddMicros(us), V::Ts(t)) => t
                .checked_add(us)
                .map_or_else(|| cx.fail(EvalErrorKind::Overflow, at), V::Ts),
            (Func::DateTrunc(unit), V::Ts(t)) => V::Ts(convert::date_trunc(unit, t)),
            (Func::DateDiff(unit), V::Ts(start)) => match b {
                V::Ts(end) => V::Int(convert::date_diff(unit, start, end)),
                _ => cx.fail(EvalErrorKind::MistypedValue, at),
            },
            (Func::Abs(_), V::Int(i)) => i
                .checked_abs()
                .map_or_else(|| cx.fail(EvalErrorKind::Overflow, at), V::Int),
            (Func::Abs(_), V::Float(x)) => V::Float(x.abs()),
            (Func::Abs(_), V::Dec(d)) => V::Dec(d.abs()),
            (Func::Round { digits, .. }, V::Int(i)) => {
                round_int(i, digits).map_or_else(|| cx.fail(EvalErrorKind::Overflow, at), V::Int)
            }
            (Func::Round { digits, .. }, V::Float(x)) => V::Float(round_float(x, digits)),
            (Func::Round { digits, s, p, .. }, V::Dec(d)) => convert::dec_round(d, s, digits, p)
                .map_or_else(|| cx.fail(EvalErrorKind::Overflow, at), V::Dec),
            _ => cx.fail(EvalErrorKind::MistypedValue, at),
        }
    }
}

/// Whether a datum from the row has the variant its column type promises.
fn fits_type(v: &V, ty: ColumnType) -> bool {
    use ColumnType as T;
    match v {
        V::Null => true,
        V::Bool(_) => ty == T::Boolean,
        V::Int(_) => ty.is_integer(),
        V::Float(_) => matches!(ty, T::Float32 | T::Float64),
        V::Dec(d) => {
            dec_precision(ty) > 0
                && d.unsigned_abs() < convert::pow10_i128(dec_precision(ty) as u32) as u128
        }
        V::Ts(_) => ty == T::Timestamp,
        V::Str(_) => ty == T::String,
        V::Bytes(_) => ty == T::Bytes,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn like_matches_wildcards_and_escapes() {
        let m = |t: &str, p: &str| like(t, p, None, false).unwrap();
        assert!(m("", ""));
        assert!(m("", "%"));
        assert!(!m("", "_"));
        assert!(m("abc", "a%"));
        assert!(m("abc", "%c"));
        assert!(m("abc", "%b%"));
        assert!(m("abc", "a_c"));
        assert!(!m("abc", "a_"));
        assert!(m("abc", "%%%"));
        assert!(m("aaab", "%a%ab"));
        assert!(!m("abc", "ABC"));
        assert!(m("héllo", "h_llo"));
        assert!(m("a%b", "a%b"));
        assert!(like("ABC", "abc", None, true).unwrap());
        assert!(like("10%", "10!%", Some('!'), false).unwrap());
        assert!(!like("10x", "10!%", Some('!'), false).unwrap());
        assert!(like("a_b", "a!_b", Some('!'), false).unwrap());
        assert_eq!(like("ab", "ab!", Some('!'), false), None);
        assert_eq!(like("zz", "ab!", Some('!'), false), None);
    }

    #[test]
    fn substring_follows_sql_positions() {
        let s = |x: &str, a, l| substring(Cow::Borrowed(x), a, l).into_owned();
        assert_eq!(s("hello", 2, Some(3)), "ell");
        assert_eq!(s("hello", 0, Some(3)), "he");
        assert_eq!(s("hello", -5, Some(3)), "");
        assert_eq!(s("hello", 4, None), "lo");
        assert_eq!(s("hello", 9, None), "");
        assert_eq!(s("héllo", 2, Some(1)), "é");
    }
}
