//! sqlparser AST → compiled [`Expr`]: name resolution against a [`Schema`], type checking,
//! implicit numeric promotion (int → decimal → double), constant literals.

use sqlparser::ast::{
    self, BinaryOperator, CastKind, DataType, ExactNumberInfo, FunctionArg, FunctionArgExpr,
    FunctionArguments, ObjectNamePart, Spanned, TimezoneInfo, TrimWhereField, UnaryOperator, Value,
};
use sqlparser::dialect::GenericDialect;
use sqlparser::parser::Parser;
use sqlparser::tokenizer::Token;
use tidewater_connectors::types::{ColumnType, Datum, Schema};

use super::convert::{self, DecOp, MAX_PRECISION};
use super::expr::{ArithKind, ArithOp, CmpKind, CmpOp, Expr, Func, Node, TrimSide};
use super::locate::{construct_at, find_or, keyword_before, span_start};
use super::{Pos, SqlError};

/// Parses and compiles one SQL scalar expression against `schema` (see the module docs for
/// what is supported). Anything unsupported is an error naming the construct and its
/// position.
pub fn compile(sql: &str, schema: &Schema) -> Result<Expr, SqlError> {
    let t = compile_typed(sql, schema)?;
    Ok(Expr {
        root: t.node,
        // An expression that is only NULL has no type of its own; like PostgreSQL's
        // `unknown`, it resolves to string.
        ty: t.ty.unwrap_or(ColumnType::String),
        sql: sql.to_string(),
    })
}

/// Like [`compile`], but the expression must be a condition: its type boolean (or a bare
/// NULL). For `apply_as_deletes`, expectations, `WHERE`.
pub fn compile_predicate(sql: &str, schema: &Schema) -> Result<Expr, SqlError> {
    let t = compile_typed(sql, schema)?;
    match t.ty {
        None | Some(ColumnType::Boolean) => Ok(Expr {
            root: t.node,
            ty: ColumnType::Boolean,
            sql: sql.to_string(),
        }),
        Some(other) => Err(SqlError::Type {
            message: format!("a condition must be boolean, but this is {other}"),
            at: Pos { line: 1, column: 1 },
            sql: sql.to_string(),
        }),
    }
}

fn compile_typed(sql: &str, schema: &Schema) -> Result<Typed, SqlError> {
    let parse_err = |e: sqlparser::parser::ParserError| SqlError::Parse {
        message: e.to_string(),
        sql: sql.to_string(),
    };
    let dialect = GenericDialect {};
    let mut parser = Parser::new(&dialect).try_with_sql(sql).map_err(parse_err)?;
    let ast = parser.parse_expr().map_err(parse_err)?;
    let next = parser.peek_token();
    if next.token != Token::EOF {
        return Err(SqlError::Parse {
            message: format!(
                "unexpected `{}` after the expression at {}",
                next.token,
                Pos::of(next.span.start)
            ),
            sql: sql.to_string(),
        });
    }
    let names = SchemaNames(schema);
    let c = Compiler::new(&names, sql);
    c.expr(&ast, Pos { line: 1, column: 1 })
}

/// How a [`Compiler`] resolves names. [`compile`] resolves plain column names against one
/// [`Schema`]; views (`super::query`) resolve `t.col` against the relations of a `FROM`
/// clause and map `GROUP BY` expressions and aggregates to columns of the grouped row.
pub(super) trait Names {
    /// The column `parts` (`col` or `t.col`) names, compiled.
    fn column(&self, c: &Compiler<'_>, parts: &[ast::Ident], at: Pos) -> R<Typed>;

    /// A whole sub-expression this scope maps to a column of its row (a `GROUP BY`
    /// expression, an aggregate), checked before the expression is compiled node by node.
    fn lookup(&self, _c: &Compiler<'_>, _e: &ast::Expr, _at: Pos) -> R<Option<Typed>> {
        Ok(None)
    }
}

/// The names of one record: its schema's columns, unqualified.
struct SchemaNames<'a>(&'a Schema);

impl Names for SchemaNames<'_> {
    fn column(&self, c: &Compiler<'_>, parts: &[ast::Ident], at: Pos) -> R<Typed> {
        let [ident] = parts else {
            let name: Vec<&str> = parts.iter().map(|p| p.value.as_str()).collect();
            return Err(c.unsupported(
                format!(
                    "qualified name {} (only columns of the record can be named)",
                    name.join(".")
                ),
                at,
            ));
        };
        let name = ident.value.as_str();
        let schema = self.0;
        if let Some(i) = schema.index_of(name) {
            let ty = schema.columns[i].ty;
            return Ok(Typed::new(Node::Col(i, ty), ty));
        }
        let names: Vec<&str> = schema.columns.iter().map(|c| c.name.as_str()).collect();
        Err(c.unknown_column(name, &names, at))
    }
}

/// A compiled node with its type (`None`: the type of a bare NULL, which adapts to its
/// context) and, for integers, how many decimal digits the values can have.
#[derive(Clone, Debug)]
pub(super) struct Typed {
    pub(super) node: Node,
    pub(super) ty: Option<ColumnType>,
    pub(super) digits: i32,
}

impl Typed {
    pub(super) fn new(node: Node, ty: ColumnType) -> Typed {
        Typed {
            node,
            ty: Some(ty),
            digits: int_digits(ty),
        }
    }
}

fn int_digits(t: ColumnType) -> i32 {
    match t {
        ColumnType::Int8 => 3,
        ColumnType::Int16 => 5,
        ColumnType::Int32 => 10,
        _ => 19,
    }
}

pub(super) fn is_numeric(t: ColumnType) -> bool {
    t.is_integer()
        || matches!(
            t,
            ColumnType::Float32 | ColumnType::Float64 | ColumnType::Decimal { .. }
        )
}

pub(super) fn is_float(t: ColumnType) -> bool {
    matches!(t, ColumnType::Float32 | ColumnType::Float64)
}

fn dec_parts(t: &Typed) -> (i32, i32) {
    match t.ty {
        Some(ColumnType::Decimal { precision, scale }) => (precision as i32, scale as i32),
        _ => (t.digits.clamp(1, MAX_PRECISION), 0),
    }
}

pub(super) fn scale_of(t: Option<ColumnType>) -> i32 {
    match t {
        Some(ColumnType::Decimal { scale, .. }) => scale as i32,
        _ => 0,
    }
}

pub(super) fn decimal(p: i32, s: i32) -> ColumnType {
    ColumnType::Decimal {
        precision: p.clamp(1, MAX_PRECISION) as u8,
        scale: s.clamp(0, MAX_PRECISION) as i8,
    }
}

fn type_name(t: Option<ColumnType>) -> String {
    t.map_or_else(|| "NULL".to_string(), |t| t.name())
}

/// Whether values of type `from` can be cast to `to`.
fn castable(from: ColumnType, to: ColumnType) -> bool {
    use ColumnType as T;
    if from == to {
        return true;
    }
    let num = |t: T| is_numeric(t) || t == T::Boolean;
    match to {
        _ if is_numeric(to) || to == T::Boolean => num(from) || from == T::String,
        T::String => true,
        T::Timestamp => from == T::String,
        T::Bytes => from == T::String,
        _ => false,
    }
}

/// Compiles sqlparser expressions to typed [`Node`]s, resolving names through [`Names`].
pub(super) struct Compiler<'a> {
    names: &'a dyn Names,
    pub(super) sql: &'a str,
}

pub(super) type R<T> = Result<T, SqlError>;

impl<'a> Compiler<'a> {
    /// A compiler resolving names through `names`, for expressions parsed from `sql`.
    pub(super) fn new(names: &'a dyn Names, sql: &'a str) -> Compiler<'a> {
        Compiler { names, sql }
    }

    /// The error for a name that is not among `names` (with a hint if only the case differs).
    pub(super) fn unknown_column(&self, name: &str, names: &[&str], at: Pos) -> SqlError {
        let hint = names
            .iter()
            .find(|n| n.eq_ignore_ascii_case(name))
            .map(|n| format!("; did you mean `{n}`? column names are case-sensitive"))
            .unwrap_or_default();
        SqlError::UnknownColumn {
            name: name.to_string(),
            at,
            columns: format!("{}{hint}", names.join(", ")),
            sql: self.sql.to_string(),
        }
    }

    pub(super) fn at(&self, e: &impl Spanned, parent: Pos) -> Pos {
        let s = e.span().start;
        if s.line == 0 {
            parent
        } else {
            Pos::of(s)
        }
    }

    pub(super) fn unsupported(&self, construct: impl Into<String>, at: Pos) -> SqlError {
        SqlError::Unsupported {
            construct: construct.into(),
            at,
            sql: self.sql.to_string(),
        }
    }

    pub(super) fn type_err(&self, message: String, at: Pos) -> SqlError {
        SqlError::Type {
            message,
            at,
            sql: self.sql.to_string(),
        }
    }

    pub(super) fn expr(&self, e: &ast::Expr, parent: Pos) -> R<Typed> {
        use ast::Expr as E;
        let at = self.at(e, parent);
        if let Some(t) = self.names.lookup(self, e, at)? {
            return Ok(t);
        }
        match e {
            E::Identifier(ident) => self.names.column(self, std::slice::from_ref(ident), at),
            E::CompoundIdentifier(parts) => self.names.column(self, parts, at),
            E::Nested(inner) => self.expr(inner, at),
            E::Value(v) => self.value(&v.value, false, at),
            E::TypedString(ts) => {
                let text = match &ts.value.value {
                    Value::SingleQuotedString(s) => s,
                    _ => return Err(self.unsupported(format!("{e}"), at)),
                };
                match &ts.data_type {
                    DataType::Timestamp(_, TimezoneInfo::None | TimezoneInfo::WithoutTimeZone)
                    | DataType::TimestampNtz(_)
                    | DataType::Datetime(_) => match convert::parse_timestamp(text) {
                        Some(t) => Ok(Typed::new(
                            Node::Lit(Datum::Timestamp(t)),
                            ColumnType::Timestamp,
                        )),
                        None => Err(self
                            .type_err(format!("invalid timestamp literal `{text}` in `{e}`"), at)),
                    },
                    dt => {
                        let text = dt.to_string();
                        let words: Vec<&str> = text
                            .split(|c: char| !c.is_alphanumeric() && c != '_')
                            .filter(|w| !w.is_empty())
                            .collect();
                        let pos = keyword_before(self.sql, at, &words);
                        Err(self.unsupported(format!("{dt} literal"), pos))
                    }
                }
            }
            E::UnaryOp { op, expr } => self.unary(*op, expr, e, at),
            E::BinaryOp { left, op, right } => self.binary(left, op, right, e, at),
            E::IsNull(x) | E::IsNotNull(x) => {
                let t = self.expr(x, at)?;
                Ok(Typed::new(
                    Node::IsNull {
                        e: Box::new(t.node),
                        negated: matches!(e, E::IsNotNull(_)),
                    },
                    ColumnType::Boolean,
                ))
            }
            E::IsUnknown(x) | E::IsNotUnknown(x) => {
                let t = self.boolean(x, "IS UNKNOWN", at)?;
                Ok(Typed::new(
                    Node::IsNull {
                        e: Box::new(t.node),
                        negated: matches!(e, E::IsNotUnknown(_)),
                    },
                    ColumnType::Boolean,
                ))
            }
            E::IsTrue(x) | E::IsNotTrue(x) | E::IsFalse(x) | E::IsNotFalse(x) => {
                let t = self.boolean(x, "IS TRUE/FALSE", at)?;
                Ok(Typed::new(
                    Node::IsBool {
                        e: Box::new(t.node),
                        value: matches!(e, E::IsTrue(_) | E::IsNotTrue(_)),
                        negated: matches!(e, E::IsNotTrue(_) | E::IsNotFalse(_)),
                    },
                    ColumnType::Boolean,
                ))
            }
            E::IsDistinctFrom(l, r) | E::IsNotDistinctFrom(l, r) => {
                let (mut a, mut b) = (self.expr(l, at)?, self.expr(r, at)?);
                let kind = self.cmp_kind(&mut a, &mut b, e, at)?;
                Ok(Typed::new(
                    Node::Distinct {
                        kind,
                        l: Box::new(a.node),
                        r: Box::new(b.node),
                        negated: matches!(e, E::IsNotDistinctFrom(..)),
                    },
                    ColumnType::Boolean,
                ))
            }
            E::InList {
                expr,
                list,
                negated,
            } => {
                let mut x = self.expr(expr, at)?;
                let mut items = Vec::with_capacity(list.len());
                for item in list {
                    let mut t = self.expr(item, at)?;
                    let kind = self.cmp_kind(&mut x, &mut t, e, self.at(item, at))?;
                    items.push((t.node, kind));
                }
                Ok(Typed::new(
                    Node::In {
                        e: Box::new(x.node),
                        list: items,
                        negated: *negated,
                    },
                    ColumnType::Boolean,
                ))
            }
            E::Between {
                expr,
                negated,
                low,
                high,
            } => {
                let mut x = self.expr(expr, at)?;
                let mut lo = self.expr(low, at)?;
                let mut hi = self.expr(high, at)?;
                let lo_kind = self.cmp_kind(&mut x, &mut lo, e, at)?;
                let hi_kind = self.cmp_kind(&mut x, &mut hi, e, at)?;
                Ok(Typed::new(
                    Node::Between {
                        e: Box::new(x.node),
                        lo: Box::new(lo.node),
                        hi: Box::new(hi.node),
                        lo_kind,
                        hi_kind,
                        negated: *negated,
                    },
                    ColumnType::Boolean,
                ))
            }
            E::Like {
                negated,
                any,
                expr,
                pattern,
                escape_char,
            }
            | E::ILike {
                negated,
                any,
                expr,
                pattern,
                escape_char,
            } => {
                let ci = matches!(e, E::ILike { .. });
                let name = if ci { "ILIKE" } else { "LIKE" };
                if *any {
                    return Err(self.unsupported(format!("{name} ANY"), at));
                }
                let x = self.string(expr, name, at)?;
                let p = self.string(pattern, name, at)?;
                let escape = match escape_char {
                    None => None,
                    Some(v) => match &v.value {
                        Value::SingleQuotedString(s) if s.chars().count() == 1 => s.chars().next(),
                        other => {
                            return Err(self.type_err(
                                format!("ESCAPE must be one character, got {other}"),
                                self.at(v, at),
                            ))
                        }
                    },
                };
                if let Node::Lit(Datum::Str(p)) = &p.node {
                    if !super::expr::valid_like_pattern(p, escape) {
                        return Err(self.type_err(
                            format!("the {name} pattern '{p}' ends with its escape character"),
                            self.at(pattern.as_ref(), at),
                        ));
                    }
                }
                Ok(Typed::new(
                    Node::Like {
                        e: Box::new(x.node),
                        pattern: Box::new(p.node),
                        escape,
                        case_insensitive: ci,
                        negated: *negated,
                        at,
                    },
                    ColumnType::Boolean,
                ))
            }
            E::Case {
                operand,
                conditions,
                else_result,
                ..
            } => self.case(
                operand.as_deref(),
                conditions,
                else_result.as_deref(),
                e,
                at,
            ),
            E::Cast {
                kind,
                expr,
                data_type,
                array,
                format,
            } => {
                if *array || format.is_some() {
                    return Err(self.unsupported(format!("{e}"), at));
                }
                match kind {
                    CastKind::Cast
                    | CastKind::TryCast
                    | CastKind::SafeCast
                    | CastKind::DoubleColon => {}
                }
                let to = self.data_type(data_type, at)?;
                let x = self.expr(expr, at)?;
                if let Some(from) = x.ty {
                    if !castable(from, to) {
                        return Err(
                            self.type_err(format!("cannot cast {from} to {to} in `{e}`"), at)
                        );
                    }
                }
                Ok(self.cast(x, Some(to), at))
            }
            E::Function(f) => self.function(f, e, at),
            E::Substring {
                expr,
                substring_from,
                substring_for,
                ..
            } => {
                let mut args = vec![self.string(expr, "substring", at)?];
                let from = match substring_from {
                    Some(f) => self.integer(f, "substring", at)?,
                    None => Typed::new(Node::Lit(Datum::Int(1)), ColumnType::Int64),
                };
                args.push(from);
                if let Some(n) = substring_for {
                    args.push(self.integer(n, "substring", at)?);
                }
                Ok(self.call(Func::Substring, args, ColumnType::String, at))
            }
            E::Trim {
                trim_where,
                trim_what,
                expr,
                trim_characters,
            } => {
                let side = match trim_where {
                    None | Some(TrimWhereField::Both) => TrimSide::Both,
                    Some(TrimWhereField::Leading) => TrimSide::Leading,
                    Some(TrimWhereField::Trailing) => TrimSide::Trailing,
                };
                let mut args = vec![self.string(expr, "trim", at)?];
                match (trim_what, trim_characters.as_deref()) {
                    (Some(w), None) => args.push(self.string(w, "trim", at)?),
                    (None, Some([c])) => args.push(self.string(c, "trim", at)?),
                    (None, None) => {}
                    _ => return Err(self.unsupported(format!("{e}"), at)),
                }
                Ok(self.call(Func::Trim(side), args, ColumnType::String, at))
            }
            other => {
                Err(self.unsupported(construct_name(other), self.construct_pos(other, parent)))
            }
        }
    }

    /// The position of an unsupported expression `e`: where its keyword is when its span
    /// starts after it (`EXISTS (SELECT …` starts at `SELECT`) or it has no span (found after
    /// `parent`).
    fn construct_pos(&self, e: &ast::Expr, parent: Pos) -> Pos {
        use ast::Expr as E;
        let start = span_start(e);
        // Constructs that start with their keyword.
        let words: &[&str] = match e {
            E::Exists { .. } => &["NOT", "EXISTS"],
            E::Rollup(_) => &["ROLLUP"],
            E::Cube(_) => &["CUBE"],
            E::GroupingSets(_) => &["GROUPING", "SETS"],
            E::Interval(_) => &["INTERVAL"],
            E::Extract { .. } => &["EXTRACT"],
            E::Ceil { .. } => &["CEIL", "CEILING"],
            E::Floor { .. } => &["FLOOR"],
            E::Position { .. } => &["POSITION"],
            E::Overlay { .. } => &["OVERLAY"],
            E::Array(_) => &["ARRAY"],
            E::Convert { .. } => &["CONVERT", "TRY_CONVERT"],
            E::Struct { .. } => &["STRUCT"],
            E::Map(_) => &["MAP"],
            // Operators after their left operand: the operand's position, or without a
            // span the operator's.
            _ => {
                let op: &[&str] = match e {
                    E::RLike { .. } => &["RLIKE", "REGEXP"],
                    E::SimilarTo { .. } => &["SIMILAR"],
                    E::Collate { .. } => &["COLLATE"],
                    E::AtTimeZone { .. } => &["AT"],
                    _ => &[],
                };
                return start.unwrap_or_else(|| construct_at(self.sql, None, parent, op));
            }
        };
        construct_at(self.sql, start, parent, words)
    }

    fn value(&self, v: &Value, negative: bool, at: Pos) -> R<Typed> {
        match v {
            Value::Number(text, _) => self.number(text, negative, at),
            _ if negative => Err(self.type_err(format!("cannot negate {v}"), at)),
            Value::SingleQuotedString(s)
            | Value::EscapedStringLiteral(s)
            | Value::NationalStringLiteral(s) => Ok(Typed::new(
                Node::Lit(Datum::Str(s.clone())),
                ColumnType::String,
            )),
            Value::Boolean(b) => Ok(Typed::new(Node::Lit(Datum::Bool(*b)), ColumnType::Boolean)),
            Value::Null => Ok(Typed {
                node: Node::Lit(Datum::Null),
                ty: None,
                digits: 1,
            }),
            Value::Placeholder(p) => Err(self.unsupported(format!("placeholder {p}"), at)),
            other => Err(self.unsupported(format!("literal {other}"), at)),
        }
    }

    fn number(&self, text: &str, negative: bool, at: Pos) -> R<Typed> {
        let bad = || self.type_err(format!("invalid number literal `{text}`"), at);
        let sign = if negative { "-" } else { "" };
        if text.bytes().all(|c| c.is_ascii_digit()) {
            if let Ok(i) = format!("{sign}{text}").parse::<i64>() {
                return Ok(Typed {
                    node: Node::Lit(Datum::Int(i)),
                    ty: Some(ColumnType::Int64),
                    digits: (text.trim_start_matches('0').len() as i32).max(1),
                });
            }
            let p = text.trim_start_matches('0').len() as i32;
            let v = convert::parse_decimal(&format!("{sign}{text}"), p, 0).ok_or_else(bad)?;
            return Ok(Typed::new(Node::Lit(Datum::Decimal(v)), decimal(p, 0)));
        }
        if text.contains(['e', 'E']) {
            let f: f64 = format!("{sign}{text}").parse().map_err(|_| bad())?;
            return Ok(Typed::new(Node::Lit(Datum::Float(f)), ColumnType::Float64));
        }
        let (v, p, s) = convert::decimal_literal(text).ok_or_else(|| {
            self.type_err(
                format!("number literal `{text}` has more than 38 digits; write it as a double (with an exponent)"),
                at,
            )
        })?;
        Ok(Typed::new(
            Node::Lit(Datum::Decimal(if negative { -v } else { v })),
            decimal(p, s),
        ))
    }

    fn unary(&self, op: UnaryOperator, x: &ast::Expr, e: &ast::Expr, at: Pos) -> R<Typed> {
        match op {
            UnaryOperator::Not => {
                let t = self.boolean(x, "NOT", at)?;
                Ok(Typed::new(Node::Not(Box::new(t.node)), ColumnType::Boolean))
            }
            UnaryOperator::Minus => {
                if let ast::Expr::Value(v) = x {
                    if let Value::Number(..) = v.value {
                        return self.value(&v.value, true, at);
                    }
                }
                let t = self.expr(x, at)?;
                let kind = match t.ty {
                    None => return Ok(t),
                    Some(ty) if ty.is_integer() => ArithKind::Int,
                    Some(ty) if is_float(ty) => ArithKind::Float,
                    Some(ColumnType::Decimal { precision, scale }) => ArithKind::Dec {
                        ls: scale as i32,
                        rs: scale as i32,
                        p: precision as i32,
                        s: scale as i32,
                    },
                    Some(ty) => {
                        return Err(self.type_err(format!("cannot negate {ty} in `{e}`"), at))
                    }
                };
                let ty = if kind == ArithKind::Int {
                    ColumnType::Int64
                } else {
                    t.ty.expect("typed")
                };
                Ok(Typed::new(
                    Node::Neg {
                        e: Box::new(t.node),
                        kind,
                        at,
                    },
                    ty,
                ))
            }
            UnaryOperator::Plus => {
                let t = self.expr(x, at)?;
                match t.ty {
                    Some(ty) if !is_numeric(ty) => {
                        Err(self.type_err(format!("unary + needs a number, got {ty} in `{e}`"), at))
                    }
                    _ => Ok(t),
                }
            }
            other => Err(self.unsupported(format!("operator {other}"), at)),
        }
    }

    fn binary(
        &self,
        l: &ast::Expr,
        op: &BinaryOperator,
        r: &ast::Expr,
        e: &ast::Expr,
        at: Pos,
    ) -> R<Typed> {
        use BinaryOperator as B;
        let cmp = match op {
            B::Eq => Some(CmpOp::Eq),
            B::NotEq => Some(CmpOp::Ne),
            B::Lt => Some(CmpOp::Lt),
            B::LtEq => Some(CmpOp::Le),
            B::Gt => Some(CmpOp::Gt),
            B::GtEq => Some(CmpOp::Ge),
            _ => None,
        };
        if let Some(cop) = cmp {
            let (mut a, mut b) = (self.expr(l, at)?, self.expr(r, at)?);
            let kind = self.cmp_kind(&mut a, &mut b, e, at)?;
            return Ok(Typed::new(
                Node::Cmp {
                    op: cop,
                    kind,
                    l: Box::new(a.node),
                    r: Box::new(b.node),
                },
                ColumnType::Boolean,
            ));
        }
        let arith = match op {
            B::Plus => Some(ArithOp::Add),
            B::Minus => Some(ArithOp::Sub),
            B::Multiply => Some(ArithOp::Mul),
            B::Divide => Some(ArithOp::Div),
            B::Modulo => Some(ArithOp::Rem),
            _ => None,
        };
        if let Some(aop) = arith {
            // `timestamp ± INTERVAL 'n' UNIT`: a fixed number of microseconds.
            if matches!(aop, ArithOp::Add | ArithOp::Sub) && matches!(r, ast::Expr::Interval(_)) {
                let t = self.expr(l, at)?;
                if t.ty != Some(ColumnType::Timestamp) {
                    return Err(self.type_err(
                        format!(
                            "an INTERVAL is added to or subtracted from a timestamp, not {} in `{e}`",
                            type_name(t.ty)
                        ),
                        at,
                    ));
                }
                let us = self.interval(r, at)?;
                let us = if aop == ArithOp::Sub { -us } else { us };
                return Ok(self.call(Func::AddMicros(us), vec![t], ColumnType::Timestamp, at));
            }
            let (a, b) = (self.expr(l, at)?, self.expr(r, at)?);
            return self.arith(aop, op, a, b, e, at);
        }
        match op {
            B::And | B::Or => {
                let name = if *op == B::And { "AND" } else { "OR" };
                let a = self.boolean(l, name, at)?;
                let b = self.boolean(r, name, at)?;
                let (a, b) = (Box::new(a.node), Box::new(b.node));
                let node = if *op == B::And {
                    Node::And(a, b)
                } else {
                    Node::Or(a, b)
                };
                Ok(Typed::new(node, ColumnType::Boolean))
            }
            B::StringConcat => {
                let a = self.to_string_arg(self.expr(l, at)?, "||", e, at)?;
                let b = self.to_string_arg(self.expr(r, at)?, "||", e, at)?;
                Ok(self.call(
                    Func::Concat { skip_nulls: false },
                    vec![a, b],
                    ColumnType::String,
                    at,
                ))
            }
            other => Err(self.unsupported(format!("operator {other}"), at)),
        }
    }

    fn arith(
        &self,
        op: ArithOp,
        bop: &BinaryOperator,
        a: Typed,
        b: Typed,
        e: &ast::Expr,
        at: Pos,
    ) -> R<Typed> {
        let (ta, tb) = (
            a.ty.unwrap_or(ColumnType::Int64),
            b.ty.unwrap_or(ColumnType::Int64),
        );
        if !is_numeric(ta) || !is_numeric(tb) {
            return Err(self.type_err(
                format!(
                    "cannot apply {bop} to {} and {} in `{e}`",
                    type_name(a.ty),
                    type_name(b.ty)
                ),
                at,
            ));
        }
        let node = |kind, a: Typed, b: Typed| Node::Arith {
            op,
            kind,
            l: Box::new(a.node),
            r: Box::new(b.node),
            at,
        };
        let both_int = ta.is_integer() && tb.is_integer();
        if is_float(ta) || is_float(tb) || (both_int && op == ArithOp::Div) {
            let f = Some(ColumnType::Float64);
            let (a, b) = (self.cast(a, f, at), self.cast(b, f, at));
            return Ok(Typed::new(
                node(ArithKind::Float, a, b),
                ColumnType::Float64,
            ));
        }
        if both_int {
            return Ok(Typed::new(node(ArithKind::Int, a, b), ColumnType::Int64));
        }
        let (pa, pb) = (dec_parts(&a), dec_parts(&b));
        let dop = match op {
            ArithOp::Add => DecOp::Add,
            ArithOp::Sub => DecOp::Sub,
            ArithOp::Mul => DecOp::Mul,
            ArithOp::Div => DecOp::Div,
            ArithOp::Rem => DecOp::Rem,
        };
        let (p, s) = convert::dec_result(dop, pa, pb);
        let kind = ArithKind::Dec {
            ls: pa.1,
            rs: pb.1,
            p,
            s,
        };
        Ok(Typed::new(node(kind, a, b), decimal(p, s)))
    }

    /// How `a` and `b` compare; a string literal compared with a timestamp is parsed as a
    /// timestamp here.
    pub(super) fn cmp_kind(
        &self,
        a: &mut Typed,
        b: &mut Typed,
        e: &ast::Expr,
        at: Pos,
    ) -> R<CmpKind> {
        use ColumnType as T;
        let class = |t: T| match t {
            T::Boolean => CmpKind::Bool,
            T::String => CmpKind::Str,
            T::Timestamp => CmpKind::Ts,
            T::Bytes => CmpKind::Bytes,
            _ => CmpKind::Num {
                ls: scale_of(Some(t)),
                rs: scale_of(Some(t)),
            },
        };
        match (a.ty, b.ty) {
            (None, None) => Ok(CmpKind::Bool),
            (None, Some(t)) | (Some(t), None) => Ok(class(t)),
            (Some(x), Some(y)) if is_numeric(x) && is_numeric(y) => Ok(CmpKind::Num {
                ls: scale_of(a.ty),
                rs: scale_of(b.ty),
            }),
            (Some(x), Some(y)) if class(x) == class(y) => Ok(class(x)),
            (Some(T::Timestamp), Some(T::String)) => {
                self.timestamp_literal(b, e, at)?;
                Ok(CmpKind::Ts)
            }
            (Some(T::String), Some(T::Timestamp)) => {
                self.timestamp_literal(a, e, at)?;
                Ok(CmpKind::Ts)
            }
            (Some(x), Some(y)) => {
                Err(self.type_err(format!("cannot compare {x} with {y} in `{e}`"), at))
            }
        }
    }

    fn timestamp_literal(&self, t: &mut Typed, e: &ast::Expr, at: Pos) -> R<()> {
        let Node::Lit(Datum::Str(s)) = &t.node else {
            return Err(self.type_err(
                format!(
                    "cannot compare string with timestamp in `{e}` (CAST the string AS timestamp)"
                ),
                at,
            ));
        };
        let ts = convert::parse_timestamp(s).ok_or_else(|| {
            self.type_err(format!("invalid timestamp literal '{s}' in `{e}`"), at)
        })?;
        *t = Typed::new(Node::Lit(Datum::Timestamp(ts)), ColumnType::Timestamp);
        Ok(())
    }

    /// The type both `a` and `b` convert to (for CASE, COALESCE); `None` if there is none.
    pub(super) fn unify(a: &Typed, b: &Typed) -> Option<(Option<ColumnType>, i32)> {
        let digits = a.digits.max(b.digits);
        let t = match (a.ty, b.ty) {
            (None, t) | (t, None) => return Some((t, digits)),
            (Some(x), Some(y)) if x == y => x,
            (Some(x), Some(y)) if x.is_integer() && y.is_integer() => {
                if int_digits(x) >= int_digits(y) {
                    x
                } else {
                    y
                }
            }
            (Some(x), Some(y)) if is_float(x) || is_float(y) => {
                if !is_numeric(x) || !is_numeric(y) {
                    return None;
                }
                ColumnType::Float64
            }
            (Some(x), Some(y)) if is_numeric(x) && is_numeric(y) => {
                let ((p1, s1), (p2, s2)) = (dec_parts(a), dec_parts(b));
                let s = s1.max(s2);
                decimal(((p1 - s1).max(p2 - s2) + s).min(MAX_PRECISION), s)
            }
            _ => return None,
        };
        Some((Some(t), digits))
    }

    /// Converts `t` to type `to`, adding a cast node where the values change.
    pub(super) fn cast(&self, t: Typed, to: Option<ColumnType>, at: Pos) -> Typed {
        let (Some(from), Some(to_ty)) = (t.ty, to) else {
            return Typed { ty: to, ..t };
        };
        let same_values = from == to_ty
            || (from.is_integer() && to_ty == ColumnType::Int64)
            || (is_float(from) && to_ty == ColumnType::Float64);
        if same_values {
            return Typed { ty: to, ..t };
        }
        Typed::new(
            Node::Cast {
                e: Box::new(t.node),
                from,
                to: to_ty,
                at,
            },
            to_ty,
        )
    }

    pub(super) fn boolean(&self, x: &ast::Expr, what: &str, parent: Pos) -> R<Typed> {
        let t = self.expr(x, parent)?;
        match t.ty {
            None | Some(ColumnType::Boolean) => Ok(t),
            Some(ty) => Err(self.type_err(
                format!("{what} needs a boolean, but `{x}` is {ty}"),
                self.at(x, parent),
            )),
        }
    }

    fn string(&self, x: &ast::Expr, what: &str, parent: Pos) -> R<Typed> {
        let t = self.expr(x, parent)?;
        match t.ty {
            None | Some(ColumnType::String) => Ok(t),
            Some(ty) => Err(self.type_err(
                format!("{what} needs a string, but `{x}` is {ty}"),
                self.at(x, parent),
            )),
        }
    }

    fn integer(&self, x: &ast::Expr, what: &str, parent: Pos) -> R<Typed> {
        let t = self.expr(x, parent)?;
        match t.ty {
            None => Ok(t),
            Some(ty) if ty.is_integer() => Ok(t),
            Some(ty) => Err(self.type_err(
                format!("{what} needs an integer, but `{x}` is {ty}"),
                self.at(x, parent),
            )),
        }
    }

    /// Any value but bytes becomes a string (for `||` and `concat`).
    fn to_string_arg(&self, t: Typed, what: &str, e: &dyn std::fmt::Display, at: Pos) -> R<Typed> {
        match t.ty {
            Some(ColumnType::Bytes) => {
                Err(self.type_err(format!("{what} does not take bytes in `{e}`"), at))
            }
            _ => Ok(self.cast(t, Some(ColumnType::String), at)),
        }
    }

    fn call(&self, f: Func, args: Vec<Typed>, ty: ColumnType, at: Pos) -> Typed {
        Typed::new(
            Node::Call {
                f,
                args: args.into_iter().map(|a| a.node).collect(),
                at,
            },
            ty,
        )
    }

    fn case(
        &self,
        operand: Option<&ast::Expr>,
        conditions: &[ast::CaseWhen],
        else_result: Option<&ast::Expr>,
        e: &ast::Expr,
        at: Pos,
    ) -> R<Typed> {
        let mut x = operand.map(|o| self.expr(o, at)).transpose()?;
        let mut whens = Vec::with_capacity(conditions.len());
        let mut results = Vec::with_capacity(conditions.len() + 1);
        for cw in conditions {
            let wat = self.at(&cw.condition, at);
            let (w, kind) = match &mut x {
                Some(x) => {
                    let mut w = self.expr(&cw.condition, at)?;
                    let kind = self.cmp_kind(x, &mut w, e, wat)?;
                    (w, kind)
                }
                None => (self.boolean(&cw.condition, "CASE WHEN", at)?, CmpKind::Bool),
            };
            whens.push((w.node, kind));
            results.push(self.expr(&cw.result, at)?);
        }
        if let Some(el) = else_result {
            results.push(self.expr(el, at)?);
        }
        let ty = self.unify_all(&results, "CASE", e, at)?;
        let mut results: Vec<Node> = results
            .into_iter()
            .map(|r| self.cast(r, ty.0, at).node)
            .collect();
        let otherwise = else_result.map(|_| Box::new(results.pop().expect("else result")));
        Ok(Typed {
            node: Node::Case {
                operand: x.map(|x| Box::new(x.node)),
                whens: whens
                    .into_iter()
                    .zip(results)
                    .map(|((w, k), r)| (w, k, r))
                    .collect(),
                otherwise,
            },
            ty: ty.0,
            digits: ty.1,
        })
    }

    fn unify_all(
        &self,
        ts: &[Typed],
        what: &str,
        e: &ast::Expr,
        at: Pos,
    ) -> R<(Option<ColumnType>, i32)> {
        let mut acc = Typed {
            node: Node::Lit(Datum::Null),
            ty: None,
            digits: 1,
        };
        for t in ts {
            let (ty, digits) = Self::unify(&acc, t).ok_or_else(|| {
                self.type_err(
                    format!(
                        "{what} has values of incompatible types {} and {} in `{e}`",
                        type_name(acc.ty),
                        type_name(t.ty)
                    ),
                    at,
                )
            })?;
            acc.ty = ty;
            acc.digits = digits;
        }
        Ok((acc.ty, acc.digits))
    }

    /// The position of the type name `dt` in a cast at `at` (the type has no span).
    fn type_pos(&self, dt: &DataType, at: Pos) -> Pos {
        let text = dt.to_string();
        let first = text
            .split(|c: char| !c.is_alphanumeric() && c != '_')
            .next();
        match first {
            Some(w) if !w.is_empty() => find_or(self.sql, at, &[&[w]]),
            _ => at,
        }
    }

    fn data_type(&self, dt: &DataType, at: Pos) -> R<ColumnType> {
        use ColumnType as T;
        use DataType as D;
        let dec = |info: &ExactNumberInfo| -> R<T> {
            let (p, s) = match info {
                ExactNumberInfo::None => (10, 0),
                ExactNumberInfo::Precision(p) => (*p as i64, 0),
                ExactNumberInfo::PrecisionAndScale(p, s) => (*p as i64, *s),
            };
            if !(1..=38).contains(&p) || s < 0 || s > p {
                return Err(self.type_err(
                    format!(
                        "invalid decimal type {dt}: precision 1..=38 and 0 <= scale <= precision"
                    ),
                    at,
                ));
            }
            Ok(decimal(p as i32, s as i32))
        };
        Ok(match dt {
            D::TinyInt(_) => T::Int8,
            D::SmallInt(_) | D::Int2(_) | D::Int16 => T::Int16,
            D::Int(_) | D::Integer(_) | D::Int4(_) | D::Int32 => T::Int32,
            D::BigInt(_) | D::Int8(_) | D::Int64 => T::Int64,
            D::Float4 | D::Real | D::Float32 => T::Float32,
            D::Float(ExactNumberInfo::Precision(p)) if *p > 24 => T::Float64,
            D::Float(_) => T::Float32,
            D::Double(_) | D::DoublePrecision | D::Float8 | D::Float64 => T::Float64,
            D::Bool | D::Boolean => T::Boolean,
            D::Varchar(_)
            | D::Nvarchar(_)
            | D::CharacterVarying(_)
            | D::CharVarying(_)
            | D::String(_)
            | D::Text => T::String,
            D::Decimal(info) | D::Numeric(info) | D::Dec(info) => dec(info)?,
            D::Timestamp(_, TimezoneInfo::None | TimezoneInfo::WithoutTimeZone)
            | D::TimestampNtz(_)
            | D::Datetime(_) => T::Timestamp,
            D::Binary(_) | D::Varbinary(_) | D::Bytea | D::Blob(_) | D::Bytes(_) => T::Bytes,
            D::Custom(name, mods) if mods.is_empty() => ColumnType::parse(&name.to_string())
                .ok_or_else(|| self.unsupported(format!("type {dt}"), self.type_pos(dt, at)))?,
            other => {
                return Err(self.unsupported(format!("type {other}"), self.type_pos(other, at)))
            }
        })
    }

    fn function(&self, f: &ast::Function, e: &ast::Expr, at: Pos) -> R<Typed> {
        let name = match f.name.0.as_slice() {
            [ObjectNamePart::Identifier(id)] => id.value.to_lowercase(),
            _ => return Err(self.unsupported(format!("function {}", f.name), at)),
        };
        if f.over.is_some() {
            return Err(self.unsupported(format!("window function {name}(...) OVER"), at));
        }
        if matches!(
            name.as_str(),
            "count" | "sum" | "avg" | "min" | "max" | "stddev" | "variance" | "array_agg"
        ) {
            return Err(
                self.unsupported(format!("aggregate {name}(...) in a scalar expression"), at)
            );
        }
        if f.filter.is_some()
            || f.null_treatment.is_some()
            || !f.within_group.is_empty()
            || !matches!(f.parameters, FunctionArguments::None)
            || f.uses_odbc_syntax
        {
            return Err(self.unsupported(format!("{e}"), at));
        }
        let args: Vec<&ast::Expr> = match &f.args {
            FunctionArguments::List(list)
                if list.duplicate_treatment.is_none() && list.clauses.is_empty() =>
            {
                list.args
                    .iter()
                    .map(|a| match a {
                        FunctionArg::Unnamed(FunctionArgExpr::Expr(x)) => Ok(x),
                        other => Err(self.unsupported(format!("function argument {other}"), at)),
                    })
                    .collect::<R<_>>()?
            }
            FunctionArguments::None => Vec::new(),
            _ => return Err(self.unsupported(format!("{e}"), at)),
        };
        let arity = |lo: usize, hi: usize| -> R<()> {
            if args.len() < lo || args.len() > hi {
                let want = if lo == hi {
                    format!("{lo}")
                } else {
                    format!("{lo} to {hi}")
                };
                return Err(self.type_err(
                    format!(
                        "{name} takes {want} argument(s), got {} in `{e}`",
                        args.len()
                    ),
                    at,
                ));
            }
            Ok(())
        };
        match name.as_str() {
            "coalesce" => {
                arity(1, usize::MAX)?;
                let ts = args
                    .iter()
                    .map(|a| self.expr(a, at))
                    .collect::<R<Vec<_>>>()?;
                let ty = self.unify_all(&ts, "COALESCE", e, at)?;
                Ok(Typed {
                    node: Node::Coalesce(
                        ts.into_iter()
                            .map(|t| self.cast(t, ty.0, at).node)
                            .collect(),
                    ),
                    ty: ty.0,
                    digits: ty.1,
                })
            }
            "nullif" => {
                arity(2, 2)?;
                let (mut a, mut b) = (self.expr(args[0], at)?, self.expr(args[1], at)?);
                let kind = self.cmp_kind(&mut a, &mut b, e, at)?;
                Ok(Typed {
                    node: Node::NullIf {
                        a: Box::new(a.node),
                        b: Box::new(b.node),
                        kind,
                    },
                    ty: a.ty,
                    digits: a.digits,
                })
            }
            "lower" | "upper" | "length" | "char_length" | "character_length" => {
                arity(1, 1)?;
                let s = self.string(args[0], &name, at)?;
                let (func, ty) = match name.as_str() {
                    "lower" => (Func::Lower, ColumnType::String),
                    "upper" => (Func::Upper, ColumnType::String),
                    _ => (Func::Length, ColumnType::Int64),
                };
                Ok(self.call(func, vec![s], ty, at))
            }
            "concat" => {
                arity(1, usize::MAX)?;
                let ts = args
                    .iter()
                    .map(|a| self.to_string_arg(self.expr(a, at)?, "concat", e, at))
                    .collect::<R<Vec<_>>>()?;
                Ok(self.call(
                    Func::Concat { skip_nulls: true },
                    ts,
                    ColumnType::String,
                    at,
                ))
            }
            "trim" | "btrim" | "ltrim" | "rtrim" => {
                arity(1, 2)?;
                let side = match name.as_str() {
                    "ltrim" => TrimSide::Leading,
                    "rtrim" => TrimSide::Trailing,
                    _ => TrimSide::Both,
                };
                let ts = args
                    .iter()
                    .map(|a| self.string(a, &name, at))
                    .collect::<R<Vec<_>>>()?;
                Ok(self.call(Func::Trim(side), ts, ColumnType::String, at))
            }
            "substring" | "substr" => {
                arity(2, 3)?;
                let mut ts = vec![self.string(args[0], &name, at)?];
                for a in &args[1..] {
                    ts.push(self.integer(a, &name, at)?);
                }
                Ok(self.call(Func::Substring, ts, ColumnType::String, at))
            }
            "abs" => {
                arity(1, 1)?;
                let t = self.expr(args[0], at)?;
                let ty = t.ty.unwrap_or(ColumnType::Int64);
                if !is_numeric(ty) {
                    return Err(self.type_err(format!("abs needs a number, got {ty} in `{e}`"), at));
                }
                let ty = if ty.is_integer() {
                    ColumnType::Int64
                } else {
                    ty
                };
                Ok(self.call(Func::Abs(ArithKind::Int), vec![t], ty, at))
            }
            "round" => {
                arity(1, 2)?;
                let t = self.expr(args[0], at)?;
                let digits = match args.get(1) {
                    None => 0,
                    Some(d) => match self.expr(d, at)?.node {
                        Node::Lit(Datum::Int(i)) if (-38..=38).contains(&i) => i as i32,
                        _ => {
                            return Err(self.type_err(
                                format!("round's second argument must be an integer literal in -38..=38, got `{d}`"),
                                self.at(*d, at),
                            ))
                        }
                    },
                };
                let ty = t.ty.unwrap_or(ColumnType::Int64);
                let (rty, s, p) = match ty {
                    ColumnType::Decimal { precision, scale } => {
                        let (p, s) = (precision as i32, scale as i32);
                        if digits >= s {
                            (ty, s, p)
                        } else {
                            let ns = digits.max(0);
                            let np = (p - s + ns + 1).min(MAX_PRECISION);
                            (decimal(np, ns), s, np)
                        }
                    }
                    t if t.is_integer() => (ColumnType::Int64, 0, 0),
                    t if is_float(t) => (ColumnType::Float64, 0, 0),
                    t => {
                        return Err(
                            self.type_err(format!("round needs a number, got {t} in `{e}`"), at)
                        )
                    }
                };
                Ok(self.call(
                    Func::Round {
                        kind: ArithKind::Int,
                        digits,
                        s,
                        p,
                    },
                    vec![t],
                    rty,
                    at,
                ))
            }
            "tumble_start" => {
                arity(2, 2)?;
                let t = self.expr(args[0], at)?;
                if t.ty != Some(ColumnType::Timestamp) {
                    return Err(self.type_err(
                        format!("tumble_start needs a timestamp, got `{}` in `{e}`", args[0]),
                        at,
                    ));
                }
                let size = self.interval(args[1], at)?;
                Ok(self.call(Func::TumbleStart(size), vec![t], ColumnType::Timestamp, at))
            }
            "date_trunc" | "datetrunc" | "date_diff" | "datediff" => {
                let diff = name.contains("diff");
                arity(if diff { 3 } else { 2 }, if diff { 3 } else { 2 })?;
                let unit = match args[0] {
                    ast::Expr::Value(v) => match &v.value {
                        ast::Value::SingleQuotedString(u) => convert::DateUnit::parse(u),
                        _ => None,
                    },
                    ast::Expr::Identifier(id) => convert::DateUnit::parse(&id.value),
                    _ => None,
                };
                let Some(unit) = unit else {
                    return Err(self.type_err(
                        format!(
                            "{name}'s first argument must be a unit literal ('second', 'minute', \
                             'hour', 'day', 'week', 'month', 'quarter' or 'year'), got `{}`",
                            args[0]
                        ),
                        self.at(args[0], at),
                    ));
                };
                let mut ts = Vec::new();
                for a in &args[1..] {
                    let t = self.expr(a, at)?;
                    let t = match t.ty {
                        Some(ColumnType::Timestamp) => t,
                        None => self.cast(t, Some(ColumnType::Timestamp), at),
                        Some(ty) => {
                            return Err(self.type_err(
                                format!("{name} needs a timestamp, but `{a}` is {ty}"),
                                self.at(*a, at),
                            ))
                        }
                    };
                    ts.push(t);
                }
                Ok(if diff {
                    self.call(Func::DateDiff(unit), ts, ColumnType::Int64, at)
                } else {
                    self.call(Func::DateTrunc(unit), ts, ColumnType::Timestamp, at)
                })
            }
            "tumble" | "hop" => Err(self.unsupported(
                format!(
                    "{} outside GROUP BY (a window is a GROUP BY item of a view)",
                    name.to_uppercase()
                ),
                at,
            )),
            _ => Err(self.unsupported(format!("function {name}"), at)),
        }
    }

    /// A positive `INTERVAL 'n' UNIT` literal (`MILLISECOND`, `SECOND`, `MINUTE`, `HOUR`,
    /// `DAY`; also `INTERVAL '5 minutes'`) in microseconds: a window size, or an amount added
    /// to or subtracted from a timestamp.
    pub(crate) fn interval(&self, e: &ast::Expr, at: Pos) -> R<i64> {
        let at = self.at(e, at);
        let bad = |why: &str| {
            self.type_err(
                format!(
                    "`{e}` is not a supported interval ({why}; write e.g. INTERVAL '5' MINUTE)"
                ),
                at,
            )
        };
        let ast::Expr::Interval(iv) = e else {
            return Err(bad("not an INTERVAL literal"));
        };
        if iv.last_field.is_some() || iv.fractional_seconds_precision.is_some() {
            return Err(bad("a range of fields"));
        }
        let text = match iv.value.as_ref() {
            ast::Expr::Value(v) => match &v.value {
                ast::Value::SingleQuotedString(s) | ast::Value::Number(s, _) => s.clone(),
                _ => return Err(bad("the value is not a number")),
            },
            _ => return Err(bad("the value is not a literal")),
        };
        let (num, unit_text) = match &iv.leading_field {
            Some(f) => (text.trim().to_string(), f.to_string()),
            None => {
                let mut parts = text.split_whitespace();
                let n = parts.next().unwrap_or_default().to_string();
                (n, parts.next().unwrap_or_default().to_string())
            }
        };
        let n: i64 = num
            .parse()
            .map_err(|_| bad("the value is not a whole number"))?;
        let unit = match unit_text.to_lowercase().trim_end_matches('s') {
            "second" => 1_000_000i64,
            "minute" => 60_000_000,
            "hour" => 3_600_000_000,
            "day" => 86_400_000_000,
            "millisecond" => 1_000,
            _ => {
                return Err(bad(
                    "the unit is not SECOND, MINUTE, HOUR, DAY or MILLISECOND",
                ))
            }
        };
        match n.checked_mul(unit) {
            Some(us) if us > 0 => Ok(us),
            _ => Err(bad("it must be positive")),
        }
    }
}

/// A short name for an unsupported expression, for error messages.
fn construct_name(e: &ast::Expr) -> String {
    use ast::Expr as E;
    let s = match e {
        E::Exists { negated: false, .. } => "EXISTS (subquery)",
        E::Exists { negated: true, .. } => "NOT EXISTS (subquery)",
        E::Subquery(_) => "scalar subquery",
        E::InSubquery { .. } => "IN (subquery)",
        E::InUnnest { .. } => "IN UNNEST",
        E::CompoundFieldAccess { .. } | E::JsonAccess { .. } => "field access",
        E::Interval(_) => "INTERVAL",
        E::Extract { .. } => "EXTRACT",
        E::AtTimeZone { .. } => "AT TIME ZONE",
        E::Ceil { .. } => "CEIL",
        E::Floor { .. } => "FLOOR",
        E::Position { .. } => "POSITION",
        E::Overlay { .. } => "OVERLAY",
        E::Collate { .. } => "COLLATE",
        E::SimilarTo { .. } => "SIMILAR TO",
        E::RLike { .. } => "RLIKE / REGEXP",
        E::AnyOp { .. } => "ANY (...)",
        E::AllOp { .. } => "ALL (...)",
        E::Array(_) => "array",
        E::Tuple(_) => "row / tuple",
        E::Struct { .. } => "struct",
        E::Map(_) => "map",
        E::Wildcard(_) | E::QualifiedWildcard(..) => "*",
        E::Lambda(_) => "lambda",
        E::Convert { .. } => "CONVERT",
        _ => return format!("{e}"),
    };
    s.to_string()
}
