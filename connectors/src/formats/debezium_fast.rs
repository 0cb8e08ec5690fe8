//! The fast path of `DebeziumParser::parse`: a hand-written, single-pass JSON scanner for
//! well-formed records.
//!
//! It validates at least as strictly as serde_json (stricter in places: the whole line must be
//! UTF-8, keys must not hold escapes, nesting is capped lower) and gives up — returns `None` —
//! on anything unusual or wrong: a bad value, an unknown column, a malformed line, `payload`
//! mixed with other payload fields, ... The serde path (`DebeziumParser::parse_reference`)
//! then handles the line and words the reason. The envelope logic (`Run`) and value typing
//! (`convert`) are shared by both paths, and tests check that both agree on every line the
//! fast path accepts.

use super::{
    meta_int, meta_tx, op_state, BlockCache, Cols, OpState, Run, Side, SourceKeys, SourceMeta,
};
use crate::formats::convert::{convert_raw, convert_scalar, ColMode, Scalar};
use crate::formats::Parsed;
use crate::types::{ColumnType, Datum, Op, Row};
use std::borrow::Cow;

/// Nesting depth (below the value being skipped) at which the fast path gives up.
const MAX_DEPTH: u32 = 100;

/// A cursor over a line known to be valid UTF-8.
struct Cur<'a> {
    s: &'a str,
    b: &'a [u8],
    i: usize,
}

const ONES: u64 = u64::MAX / 255;

/// `a == b` for two slices, with word loads instead of a `memcmp` call for the short member
/// names matched in place (two overlapping words cover 4 to 16 bytes).
#[inline(always)]
fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    let n = a.len();
    if n != b.len() {
        return false;
    }
    if n > 16 {
        return a == b;
    }
    if n >= 8 {
        return a.first_chunk::<8>() == b.first_chunk::<8>()
            && a.last_chunk::<8>() == b.last_chunk::<8>();
    }
    if n >= 4 {
        return a.first_chunk::<4>() == b.first_chunk::<4>()
            && a.last_chunk::<4>() == b.last_chunk::<4>();
    }
    a == b
}

/// The line as UTF-8 text, validated with SIMD (the same answer as `std::str::from_utf8`).
#[inline]
fn utf8(line: &[u8]) -> Option<&str> {
    simdutf8::basic::from_utf8(line).ok()
}

/// Marks (high bit of the byte) the bytes of `chunk` (little-endian) that are `"`, `\` or a
/// control character. Bytes above the first marked one may be marked wrongly (borrows), the
/// lowest mark is always exact.
#[inline]
fn special_mask(chunk: u64) -> u64 {
    let ctrl = chunk.wrapping_sub(ONES * 0x20) & !chunk;
    let q = chunk ^ (ONES * b'"' as u64);
    let quote = q.wrapping_sub(ONES) & !q;
    let bs = chunk ^ (ONES * b'\\' as u64);
    let backslash = bs.wrapping_sub(ONES) & !bs;
    (ctrl | quote | backslash) & (ONES << 7)
}

impl<'a> Cur<'a> {
    fn new(s: &'a str) -> Self {
        Cur {
            s,
            b: s.as_bytes(),
            i: 0,
        }
    }

    #[inline]
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    #[inline]
    fn ws(&mut self) {
        while let Some(b' ' | b'\n' | b'\r' | b'\t') = self.peek() {
            self.i += 1;
        }
    }

    /// Skips whitespace, then consumes `c`.
    #[inline]
    fn eat(&mut self, c: u8) -> Option<()> {
        self.ws();
        if self.peek()? == c {
            self.i += 1;
            Some(())
        } else {
            None
        }
    }

    #[inline]
    fn lit(&mut self, word: &[u8]) -> Option<()> {
        if self.b.get(self.i..self.i + word.len())? == word {
            self.i += word.len();
            Some(())
        } else {
            None
        }
    }

    /// After a member: `,` (more follow: `true`) or `close` (`false`).
    #[inline]
    fn next_member(&mut self, close: u8) -> Option<bool> {
        self.ws();
        let c = self.peek()?;
        self.i += 1;
        match c {
            b',' => Some(true),
            c if c == close => Some(false),
            _ => None,
        }
    }

    /// Scans a string whose opening quote is at the cursor; returns the bounds of its
    /// content and whether it holds escapes.
    #[inline]
    fn string(&mut self) -> Option<(usize, usize, bool)> {
        self.i += 1;
        let start = self.i;
        let mut esc = false;
        loop {
            while let Some(chunk) = self.b.get(self.i..self.i + 8) {
                let mask = special_mask(u64::from_le_bytes(chunk.try_into().ok()?));
                if mask != 0 {
                    self.i += mask.trailing_zeros() as usize / 8;
                    break;
                }
                self.i += 8;
            }
            match self.peek()? {
                b'"' => {
                    self.i += 1;
                    return Some((start, self.i - 1, esc));
                }
                b'\\' => {
                    esc = true;
                    match *self.b.get(self.i + 1)? {
                        b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => self.i += 2,
                        b'u' => {
                            let hex = self.b.get(self.i + 2..self.i + 6)?;
                            if !hex.iter().all(u8::is_ascii_hexdigit) {
                                return None;
                            }
                            self.i += 6;
                        }
                        _ => return None,
                    }
                }
                0..=0x1F => return None,
                _ => self.i += 1,
            }
        }
    }

    /// A string value (cursor at its opening quote): borrowed unless it holds escapes.
    #[inline]
    fn string_value(&mut self) -> Option<Cow<'a, str>> {
        let (a, e, esc) = self.string()?;
        if esc {
            let quoted = self.s.get(a - 1..e + 1)?;
            serde_json::from_str::<String>(quoted).ok().map(Cow::Owned)
        } else {
            self.s.get(a..e).map(Cow::Borrowed)
        }
    }

    /// An object key without escapes, and the colon after it.
    #[inline]
    fn key(&mut self) -> Option<&'a [u8]> {
        self.ws();
        if self.peek()? != b'"' {
            return None;
        }
        let (a, e, esc) = self.string()?;
        if esc {
            return None;
        }
        self.eat(b':')?;
        self.b.get(a..e)
    }

    /// Whether the next member's name is exactly `quoted` (name in quotes, no escapes needed);
    /// if so, consumes it and the colon after it. (Inlined into its two callers: called for
    /// every member of every image and source block.)
    #[inline(always)]
    fn member_is(&mut self, quoted: &[u8]) -> bool {
        self.ws();
        let end = self.i + quoted.len();
        match self.b.get(self.i..end) {
            Some(here) if same_bytes(here, quoted) => {}
            _ => return false,
        }
        let save = self.i;
        self.i = end;
        if self.eat(b':').is_none() {
            self.i = save;
            return false;
        }
        true
    }

    /// Scans a number at the cursor (JSON grammar). Returns whether it is an integer, and
    /// if so its sign and magnitude (`None` beyond `u64`).
    #[inline]
    fn number(&mut self) -> Option<(bool, bool, Option<u64>)> {
        let neg = self.peek()? == b'-';
        if neg {
            self.i += 1;
        }
        let start = self.i;
        let mut mag = Some(0u64);
        match self.peek()? {
            b'0' => self.i += 1,
            b'1'..=b'9' => {
                // Scan and accumulate in one pass (wrapping); 19 digits cannot overflow a u64,
                // longer runs are accumulated again with checks.
                let rest = &self.b[self.i..];
                let mut m = 0u64;
                let mut n = 0;
                while let Some(&b) = rest.get(n) {
                    let d = b.wrapping_sub(b'0');
                    if d > 9 {
                        break;
                    }
                    m = m.wrapping_mul(10).wrapping_add(d as u64);
                    n += 1;
                }
                mag = if n <= 19 {
                    Some(m)
                } else {
                    rest[..n].iter().try_fold(0u64, |m, d| {
                        m.checked_mul(10)?.checked_add((d - b'0') as u64)
                    })
                };
                self.i += n;
            }
            _ => return None,
        }
        debug_assert!(self.i > start);
        let mut int = true;
        if self.peek() == Some(b'.') {
            int = false;
            self.i += 1;
            self.digits()?;
        }
        if let Some(b'e' | b'E') = self.peek() {
            int = false;
            self.i += 1;
            if let Some(b'+' | b'-') = self.peek() {
                self.i += 1;
            }
            self.digits()?;
        }
        Some((int, neg, mag))
    }

    /// One or more digits.
    #[inline]
    fn digits(&mut self) -> Option<()> {
        let start = self.i;
        while let Some(b'0'..=b'9') = self.peek() {
            self.i += 1;
        }
        (self.i > start).then_some(())
    }

    /// Skips one value (validating it).
    fn skip(&mut self, depth: u32) -> Option<()> {
        self.ws();
        match self.peek()? {
            b'"' => self.string().map(|_| ()),
            b'{' => {
                if depth >= MAX_DEPTH {
                    return None;
                }
                self.i += 1;
                self.ws();
                if self.peek()? == b'}' {
                    self.i += 1;
                    return Some(());
                }
                loop {
                    self.ws();
                    if self.peek()? != b'"' {
                        return None;
                    }
                    self.string()?;
                    self.eat(b':')?;
                    self.skip(depth + 1)?;
                    if !self.next_member(b'}')? {
                        return Some(());
                    }
                }
            }
            b'[' => {
                if depth >= MAX_DEPTH {
                    return None;
                }
                self.i += 1;
                self.ws();
                if self.peek()? == b']' {
                    self.i += 1;
                    return Some(());
                }
                loop {
                    self.skip(depth + 1)?;
                    if !self.next_member(b']')? {
                        return Some(());
                    }
                }
            }
            b't' => self.lit(b"true"),
            b'f' => self.lit(b"false"),
            b'n' => self.lit(b"null"),
            b'-' | b'0'..=b'9' => self.number().map(|_| ()),
            _ => None,
        }
    }

    /// The text of the next value.
    #[inline]
    fn raw(&mut self) -> Option<&'a str> {
        self.ws();
        let start = self.i;
        self.skip(0)?;
        self.s.get(start..self.i)
    }

    /// The next value, decoded like serde_json's `deserialize_any` would.
    #[inline]
    fn scalar(&mut self) -> Option<Scalar<'a>> {
        self.ws();
        Some(match self.peek()? {
            b'"' => Scalar::Str(self.string_value()?),
            b't' => {
                self.lit(b"true")?;
                Scalar::Bool(true)
            }
            b'f' => {
                self.lit(b"false")?;
                Scalar::Bool(false)
            }
            b'n' => {
                self.lit(b"null")?;
                Scalar::Null
            }
            b'-' | b'0'..=b'9' => {
                let start = self.i;
                match self.number()? {
                    (true, false, Some(m)) => Scalar::U64(m),
                    // serde_json reads `-0` as a float
                    (true, true, Some(0)) => Scalar::F64(-0.0),
                    (true, true, Some(m)) if m <= 1 << 63 => Scalar::I64((m as i64).wrapping_neg()),
                    (true, _, _) => return None,
                    (false, _, _) => Scalar::F64(self.s.get(start..self.i)?.parse().ok()?),
                }
            }
            b'{' => {
                self.skip(0)?;
                Scalar::Object
            }
            b'[' => {
                self.skip(0)?;
                Scalar::Array
            }
            _ => return None,
        })
    }

    /// A typed value for a column; `None` if it does not fit (the reference path words why).
    #[inline]
    fn value(&mut self, ty: ColumnType, mode: ColMode) -> Option<Datum> {
        self.ws();
        match ty {
            ColumnType::String if self.peek()? == b'"' => {
                Some(Datum::Str(self.string_value()?.into_owned()))
            }
            ColumnType::String
            | ColumnType::Decimal { .. }
            | ColumnType::Float32
            | ColumnType::Float64 => convert_raw(self.raw()?, ty, mode).ok(),
            _ => convert_scalar(self.scalar()?, ty, mode).ok(),
        }
    }

    /// A `before`/`after` image: `Some(None)` for null.
    fn row(
        &mut self,
        cols: &Cols,
        modes: Option<&[ColMode]>,
        spare: Option<Row>,
    ) -> Option<Option<Row>> {
        self.ws();
        match self.peek()? {
            b'n' => {
                self.lit(b"null")?;
                return Some(None);
            }
            b'{' => self.i += 1,
            _ => return None,
        }
        let data = cols.names.len();
        // Reuse a recycled row (and its string buffers) when the columns fit the bit set.
        let mut row = match spare {
            Some(r) if r.len() == cols.width && data <= 128 => r,
            _ => vec![Datum::Null; cols.width],
        };
        let mut seen = 0u128;
        self.ws();
        if self.peek()? == b'}' {
            self.i += 1;
        } else {
            let mut hint = 0;
            loop {
                // Members usually come in schema order: try the expected name first.
                let i = match cols.quoted.get(hint) {
                    Some(Some(q)) if self.member_is(q) => hint,
                    _ => cols.find(self.key()?, hint)?,
                };
                hint = i + 1;
                let mode = modes.and_then(|m| m.get(i).copied()).unwrap_or_default();
                let ty = *cols.types.get(i)?;
                let slot = row.get_mut(i)?;
                self.ws();
                match (ty, &mut *slot) {
                    (ColumnType::String, Datum::Str(buf)) if self.peek()? == b'"' => {
                        let v = self.string_value()?;
                        buf.clear();
                        buf.push_str(&v);
                    }
                    _ => *slot = self.value(ty, mode)?,
                }
                if i < 128 {
                    seen |= 1 << i;
                }
                if !self.next_member(b'}')? {
                    break;
                }
            }
        }
        // Columns absent from this image are NULL (a recycled row may hold old values).
        for (i, d) in row.iter_mut().enumerate().take(data) {
            if seen & (1 << i) == 0 && !d.is_null() {
                *d = Datum::Null;
            }
        }
        // The fast path gives up on unknown fields: none to collect.
        if let Some(d) = cols.extras.and_then(|x| row.get_mut(x)) {
            *d = Datum::Null;
        }
        Some(Some(row))
    }

    /// `payload.source` (null or an object). `keys`, when given, is the order of the members
    /// seen in the previous record's source block (sources write them in a fixed order): each
    /// member is first matched against the predicted name in place, and the prediction is
    /// corrected on a miss.
    fn source(&mut self, mut keys: Option<&mut SourceKeys>) -> Option<SourceMeta> {
        const OTHER: u8 = 0;
        const LSN: u8 = 1;
        const TS_MS: u8 = 2;
        const TX_ID: u8 = 3;
        let mut m = SourceMeta::default();
        if !self.open_object()? {
            return Some(m);
        }
        let mut k = 0;
        loop {
            let predicted = match keys.as_deref() {
                Some(keys) => match keys.get(k) {
                    Some((q, kind)) if self.member_is(q) => Some(*kind),
                    _ => None,
                },
                None => None,
            };
            let kind = match predicted {
                Some(kind) => kind,
                None => {
                    let key = self.key()?;
                    let kind = match key {
                        b"lsn" => LSN,
                        b"ts_ms" => TS_MS,
                        b"txId" => TX_ID,
                        _ => OTHER,
                    };
                    if let Some(keys) = keys.as_deref_mut() {
                        keys.truncate(k);
                        let mut q = Vec::with_capacity(key.len() + 2);
                        q.push(b'"');
                        q.extend_from_slice(key);
                        q.push(b'"');
                        keys.push((q.into_boxed_slice(), kind));
                    }
                    kind
                }
            };
            k += 1;
            let res = match kind {
                LSN => meta_int(self.scalar()?, "source.lsn").map(|v| m.lsn = v),
                TS_MS => meta_int(self.scalar()?, "source.ts_ms").map(|v| m.ts_ms = v),
                TX_ID => meta_tx(self.scalar()?, "source.txId").map(|v| m.tx_id = v),
                _ => {
                    // Most members not needed here are strings: scanned in place.
                    self.ws();
                    if self.peek()? == b'"' {
                        self.string()?;
                    } else {
                        self.skip(1)?;
                    }
                    Ok(())
                }
            };
            if let Err(e) = res {
                m.err.get_or_insert(e);
            }
            if !self.next_member(b'}')? {
                return Some(m);
            }
        }
    }

    /// `payload.transaction` (null or an object): its `id`.
    fn transaction(&mut self) -> Option<Result<Option<String>, String>> {
        let mut id = Ok(None);
        if !self.open_object()? {
            return Some(id);
        }
        loop {
            match self.key()? {
                b"id" => id = meta_tx(self.scalar()?, "transaction.id"),
                _ => self.skip(1)?,
            }
            if !self.next_member(b'}')? {
                return Some(id);
            }
        }
    }

    /// Opens an object: `Some(true)` if it has members to read, `Some(false)` for `null` or
    /// `{}` (consumed).
    #[inline]
    fn open_object(&mut self) -> Option<bool> {
        self.ws();
        match self.peek()? {
            b'n' => {
                self.lit(b"null")?;
                Some(false)
            }
            b'{' => {
                self.i += 1;
                self.ws();
                if self.peek()? == b'}' {
                    self.i += 1;
                    Some(false)
                } else {
                    Some(true)
                }
            }
            _ => None,
        }
    }

    /// The members of the top-level object (`top`) or of `payload`, the opening brace
    /// consumed. Mirrors `PayloadSeed::visit_map`.
    fn envelope(&mut self, run: &mut Run<'_, 'a>, top: bool) -> Option<()> {
        self.ws();
        if self.peek()? == b'}' {
            self.i += 1;
            return Some(());
        }
        loop {
            let key = self.key()?;
            if top {
                // The reference path reads a `payload` that comes before the schema block
                // after the rest of the line: leave lines where that order could matter
                // (a second payload, payload fields beside `payload`) to it.
                let mixed = match key {
                    b"payload" => run.saw_payload || run.top_fields,
                    b"before" | b"after" | b"op" | b"source" | b"ts_ms" | b"transaction" => {
                        run.top_fields = true;
                        run.saw_payload
                    }
                    _ => false,
                };
                if mixed {
                    return None;
                }
            }
            match key {
                b"schema" if top => {
                    if run.saw_payload {
                        // The reference path reads a payload after its schema block.
                        return None;
                    }
                    let raw = self.raw()?;
                    run.apply_block(raw);
                }
                b"payload" if top => {
                    run.saw_payload = true;
                    if self.open_object_keep()? {
                        self.envelope(run, false)?;
                    } else {
                        run.payload_null = true;
                    }
                }
                b"before" => {
                    run.before = match run.op {
                        OpState::Known(Op::Delete) => {
                            let row = self.row(run.cols, run.modes.as_deref(), run.spare.take())?;
                            run.store_row(row.map(|r| (r, None)))
                        }
                        OpState::Known(_) => {
                            self.skip(1)?;
                            Side::Skipped
                        }
                        _ => match self.raw()? {
                            "null" => Side::Null,
                            raw => Side::Raw(raw),
                        },
                    };
                }
                b"after" => {
                    run.after = match run.op {
                        OpState::Known(Op::Delete) => {
                            self.skip(1)?;
                            Side::Skipped
                        }
                        _ => {
                            let row = self.row(run.cols, run.modes.as_deref(), run.spare.take())?;
                            run.store_row(row.map(|r| (r, None)))
                        }
                    };
                }
                b"op" => {
                    if !matches!(run.op, OpState::Missing) {
                        return None;
                    }
                    run.op = op_state(self.scalar()?);
                }
                b"source" => {
                    run.source = self.source(run.source_keys.as_deref_mut())?;
                    if let Some(e) = run.source.err.take() {
                        run.meta_error(e);
                    }
                }
                b"ts_ms" => match meta_int(self.scalar()?, "ts_ms") {
                    Ok(v) => run.ts_ms = v,
                    Err(e) => run.meta_error(e),
                },
                b"transaction" => match self.transaction()? {
                    Ok(id) => run.tx_id = id,
                    Err(e) => run.meta_error(e),
                },
                _ => self.skip(1)?,
            }
            if !self.next_member(b'}')? {
                return Some(());
            }
        }
    }

    /// Like [`Cur::open_object`] but leaves an object's members (even none) to the caller:
    /// `Some(true)` after `{`, `Some(false)` after `null`.
    #[inline]
    fn open_object_keep(&mut self) -> Option<bool> {
        self.ws();
        match self.peek()? {
            b'n' => {
                self.lit(b"null")?;
                Some(false)
            }
            b'{' => {
                self.i += 1;
                Some(true)
            }
            _ => None,
        }
    }

    /// Whether only whitespace is left.
    fn at_end(&mut self) -> bool {
        self.ws();
        self.i == self.b.len()
    }
}

/// Parses a well-formed line that yields a record or a skip; `None` for anything else.
/// `spare` is a row of an earlier record to reuse (see `DebeziumParser::recycle`).
pub(super) fn parse(
    cols: &Cols,
    cache: &mut Option<BlockCache>,
    line: &[u8],
    spare: Option<Row>,
    source_keys: Option<&mut SourceKeys>,
) -> Option<Parsed> {
    let s = utf8(line)?;
    let mut c = Cur::new(s);
    if !c.open_object_keep()? {
        return c.at_end().then_some(Parsed::Skip);
    }
    let mut run = Run::new(cols, cache);
    run.spare = spare;
    run.source_keys = source_keys;
    c.envelope(&mut run, true)?;
    if !c.at_end() {
        return None;
    }
    if let (OpState::Known(Op::Delete), Side::Raw(raw)) = (&run.op, run.before) {
        let mut rc = Cur::new(raw);
        let row = rc.row(run.cols, run.modes.as_deref(), run.spare.take())?;
        if !rc.at_end() {
            return None;
        }
        run.before = run.store_row(row.map(|r| (r, None)));
    }
    run.finish().ok()
}

/// The transaction id of a well-formed line (`Some(None)`: it has none); `None` to let the
/// reference path decide.
pub(super) fn transaction_id(line: &[u8]) -> Option<Option<String>> {
    let s = utf8(line)?;
    let mut c = Cur::new(s);
    let mut found = (None, None);
    if c.open_object_keep()? {
        tx_members(&mut c, &mut found, true)?;
    }
    if !c.at_end() {
        return None;
    }
    Some(found.0.or(found.1))
}

/// Mirrors `TxOnlySeed::visit_map`: `found` = (transaction.id, source.txId).
fn tx_members(
    c: &mut Cur<'_>,
    found: &mut (Option<String>, Option<String>),
    top: bool,
) -> Option<()> {
    c.ws();
    if c.peek()? == b'}' {
        c.i += 1;
        return Some(());
    }
    loop {
        match c.key()? {
            b"payload" if top => {
                if c.open_object_keep()? {
                    tx_members(c, found, false)?;
                }
            }
            b"source" => found.1 = c.source(None)?.tx_id,
            b"transaction" => found.0 = c.transaction()?.ok().flatten(),
            _ => c.skip(1)?,
        }
        if !c.next_member(b'}')? {
            return Some(());
        }
    }
}
