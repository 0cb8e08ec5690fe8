//! Exact decimal arithmetic on unscaled `i128` values (256-bit intermediates), decimal and
//! timestamp parsing and formatting.

use std::cmp::Ordering;

use deltalake::arrow::datatypes::i256;

/// The largest decimal precision (digits) a [`Datum::Decimal`](tidewater_connectors::types::Datum) holds.
pub(crate) const MAX_PRECISION: i32 = 38;

const ONE: i256 = i256::from_i128(1);
const TEN: i256 = i256::from_i128(10);

fn pow10(k: u32) -> Option<i256> {
    TEN.checked_pow(k)
}

/// `10^k` as an `i128` (k ≤ 38).
pub(crate) fn pow10_i128(k: u32) -> i128 {
    10i128.pow(k)
}

/// `n / d` rounded half away from zero; `d > 0`.
fn div_round(n: i256, d: i256) -> Option<i256> {
    let q = n.checked_div(d)?;
    let r = n.checked_rem(d)?;
    let twice = r.checked_abs()?.checked_mul(i256::from_i128(2))?;
    if twice >= d {
        if n.is_negative() {
            q.checked_sub(ONE)
        } else {
            q.checked_add(ONE)
        }
    } else {
        Some(q)
    }
}

/// Rescales `v` (scale `from`) to scale `to`, rounding half away from zero when digits are
/// dropped.
fn rescale256(v: i256, from: i32, to: i32) -> Option<i256> {
    match to.cmp(&from) {
        Ordering::Equal => Some(v),
        Ordering::Greater => v.checked_mul(pow10((to - from) as u32)?),
        Ordering::Less => div_round(v, pow10((from - to) as u32)?),
    }
}

/// Narrows to `i128` if the value has at most `precision` digits.
fn fit(v: i256, precision: i32) -> Option<i128> {
    let v = v.to_i128()?;
    let limit = pow10_i128(precision.clamp(1, MAX_PRECISION) as u32);
    (v.unsigned_abs() < limit as u128).then_some(v)
}

/// Rescales an unscaled decimal from scale `from` to `(precision, to)`; `None` on overflow.
pub(crate) fn rescale(v: i128, from: i32, to: i32, precision: i32) -> Option<i128> {
    fit(rescale256(i256::from_i128(v), from, to)?, precision)
}

/// Exact comparison of two unscaled decimals with scales `sa` and `sb`.
pub(crate) fn dec_cmp(a: i128, sa: i32, b: i128, sb: i32) -> Ordering {
    if sa == sb {
        return a.cmp(&b);
    }
    let s = sa.max(sb);
    // 38 + 38 digits fit in 256 bits, so these never fail.
    let a = rescale256(i256::from_i128(a), sa, s).expect("fits 256 bits");
    let b = rescale256(i256::from_i128(b), sb, s).expect("fits 256 bits");
    a.cmp(&b)
}

/// A decimal arithmetic operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum DecOp {
    Add,
    Sub,
    Mul,
    Div,
    Rem,
}

/// Spark's rule for results wider than 38 digits: keep the integer digits, cut the scale,
/// but keep at least `min(scale, 6)` digits of it.
fn adjust(p: i32, s: i32) -> (i32, i32) {
    if p <= MAX_PRECISION {
        (p, s)
    } else {
        let int_digits = p - s;
        let min_scale = s.min(6);
        (MAX_PRECISION, (MAX_PRECISION - int_digits).max(min_scale))
    }
}

/// The result `(precision, scale)` of `a op b` for decimal operands `(p1, s1)` and `(p2, s2)`
/// (Spark's rules; `+ - %` keep the larger scale exactly and cap the precision at 38).
pub(crate) fn dec_result(op: DecOp, (p1, s1): (i32, i32), (p2, s2): (i32, i32)) -> (i32, i32) {
    match op {
        DecOp::Add | DecOp::Sub => {
            let s = s1.max(s2);
            (((p1 - s1).max(p2 - s2) + s + 1).min(MAX_PRECISION), s)
        }
        DecOp::Rem => {
            let s = s1.max(s2);
            (((p1 - s1).min(p2 - s2) + s).clamp(1, MAX_PRECISION), s)
        }
        DecOp::Mul => adjust(p1 + p2 + 1, s1 + s2),
        DecOp::Div => {
            let s = 6.max(s1 + p2 + 1);
            adjust(p1 - s1 + s2 + s, s)
        }
    }
}

/// The outcome of a decimal operation that has no value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum DecFail {
    Overflow,
    DivisionByZero,
}

/// `a op b` for unscaled `a` (scale `sa`) and `b` (scale `sb`), giving an unscaled result with
/// `(p, s)` (from [`dec_result`]), rounded half away from zero.
pub(crate) fn dec_arith(
    op: DecOp,
    a: i128,
    sa: i32,
    b: i128,
    sb: i32,
    (p, s): (i32, i32),
) -> Result<i128, DecFail> {
    use DecFail::*;
    let (a, b) = (i256::from_i128(a), i256::from_i128(b));
    let v = match op {
        DecOp::Add | DecOp::Sub | DecOp::Rem => {
            let m = sa.max(sb);
            let a = rescale256(a, sa, m).ok_or(Overflow)?;
            let b = rescale256(b, sb, m).ok_or(Overflow)?;
            let v = match op {
                DecOp::Add => a.checked_add(b),
                DecOp::Sub => a.checked_sub(b),
                _ => {
                    if b == i256::ZERO {
                        return Err(DivisionByZero);
                    }
                    a.checked_rem(b)
                }
            };
            rescale256(v.ok_or(Overflow)?, m, s)
        }
        DecOp::Mul => rescale256(a.checked_mul(b).ok_or(Overflow)?, sa + sb, s),
        DecOp::Div => {
            if b == i256::ZERO {
                return Err(DivisionByZero);
            }
            // a/b at scale s: a * 10^(s - sa + sb) / b.
            let e = s - sa + sb;
            let (mut n, mut d) = (a, b);
            if e >= 0 {
                n = n
                    .checked_mul(pow10(e as u32).ok_or(Overflow)?)
                    .ok_or(Overflow)?;
            } else {
                d = d
                    .checked_mul(pow10((-e) as u32).ok_or(Overflow)?)
                    .ok_or(Overflow)?;
            }
            if d.is_negative() {
                n = n.checked_neg().ok_or(Overflow)?;
                d = d.checked_neg().ok_or(Overflow)?;
            }
            div_round(n, d)
        }
    };
    fit(v.ok_or(Overflow)?, p).ok_or(Overflow)
}

/// Rounds an unscaled decimal (scale `s`) to `digits` after the point (negative: to tens,
/// hundreds, …), returning it at scale `max(digits, 0).min(s)`.
pub(crate) fn dec_round(v: i128, s: i32, digits: i32, precision: i32) -> Option<i128> {
    if digits >= s {
        return Some(v);
    }
    let v = i256::from_i128(v);
    if digits >= 0 {
        fit(rescale256(v, s, digits)?, precision)
    } else {
        let r = div_round(v, pow10((s - digits) as u32)?)?;
        fit(r.checked_mul(pow10((-digits) as u32)?)?, precision)
    }
}

/// An unscaled decimal as `f64`.
pub(crate) fn dec_to_f64(v: i128, s: i32) -> f64 {
    if s <= 0 {
        v as f64
    } else if v.unsigned_abs() < (1u128 << 53) && s <= 22 {
        // Both exact in f64, so the quotient is correctly rounded.
        v as f64 / 10f64.powi(s)
    } else {
        format_decimal(v, s).parse().unwrap_or(f64::NAN)
    }
}

/// Formats an unscaled decimal with `s` digits after the point (`-12.50`, `0.05`).
pub(crate) fn format_decimal(v: i128, s: i32) -> String {
    let digits = v.unsigned_abs().to_string();
    let sign = if v < 0 { "-" } else { "" };
    if s <= 0 {
        return format!("{sign}{digits}");
    }
    let s = s as usize;
    let padded = if digits.len() <= s {
        format!("{}{digits}", "0".repeat(s + 1 - digits.len()))
    } else {
        digits
    };
    let (int, frac) = padded.split_at(padded.len() - s);
    format!("{sign}{int}.{frac}")
}

/// Parses decimal text (`-12.5`, `.5`, `1e3`, surrounding spaces allowed) into an unscaled
/// value at scale `s` with at most `p` digits, rounding half away from zero.
pub(crate) fn parse_decimal(text: &str, p: i32, s: i32) -> Option<i128> {
    let (mantissa, scale) = parse_decimal_exact(text)?;
    fit(rescale256(mantissa, scale, s)?, p)
}

/// Parses decimal text exactly: (unscaled digits, scale), the scale possibly negative.
fn parse_decimal_exact(text: &str) -> Option<(i256, i32)> {
    let t = text.trim();
    let (neg, t) = match t.as_bytes().first()? {
        b'-' => (true, &t[1..]),
        b'+' => (false, &t[1..]),
        _ => (false, t),
    };
    let (num, exp) = match t.find(['e', 'E']) {
        Some(i) => (&t[..i], t[i + 1..].parse::<i32>().ok()?),
        None => (t, 0),
    };
    let (int, frac) = num.split_once('.').unwrap_or((num, ""));
    if int.is_empty() && frac.is_empty() {
        return None;
    }
    let mut m = i256::ZERO;
    let mut significant = 0;
    for c in int.bytes().chain(frac.bytes()) {
        if !c.is_ascii_digit() {
            return None;
        }
        if m != i256::ZERO || c != b'0' {
            significant += 1;
        }
        if significant > 76 {
            return None;
        }
        m = m
            .checked_mul(TEN)?
            .checked_add(i256::from_i128((c - b'0') as i128))?;
    }
    if neg {
        m = m.checked_neg()?;
    }
    let scale = (frac.len() as i32).checked_sub(exp)?;
    if scale.abs() > 200 {
        return None;
    }
    Some((m, scale))
}

/// The type of a decimal literal such as `12.50`: (unscaled, precision, scale).
pub(crate) fn decimal_literal(text: &str) -> Option<(i128, i32, i32)> {
    let (int, frac) = text.split_once('.')?;
    let s = frac.len() as i32;
    let int_digits = int.trim_start_matches('0').len() as i32;
    let p = (int_digits + s).max(1);
    if p > MAX_PRECISION {
        return None;
    }
    Some((parse_decimal(text, p, s)?, p, s))
}

// --- timestamps: microseconds since the Unix epoch, UTC ---

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date of a day number (inverse of [`days_from_civil`]).
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        _ => 28,
    }
}

/// A calendar or clock unit of `DATE_TRUNC` / `DATE_DIFF`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum DateUnit {
    Second,
    Minute,
    Hour,
    Day,
    Week,
    Month,
    Quarter,
    Year,
}

impl DateUnit {
    /// The unit named `name` (any case; also the plural).
    pub(crate) fn parse(name: &str) -> Option<DateUnit> {
        let n = name.to_ascii_lowercase();
        Some(match n.strip_suffix('s').unwrap_or(&n) {
            "second" => DateUnit::Second,
            "minute" => DateUnit::Minute,
            "hour" => DateUnit::Hour,
            "day" => DateUnit::Day,
            "week" => DateUnit::Week,
            "month" => DateUnit::Month,
            "quarter" => DateUnit::Quarter,
            "year" => DateUnit::Year,
            _ => return None,
        })
    }

    /// The unit's length in µs, for the units of fixed length.
    fn fixed_micros(self) -> Option<i64> {
        Some(match self {
            DateUnit::Second => 1_000_000,
            DateUnit::Minute => 60_000_000,
            DateUnit::Hour => 3_600_000_000,
            DateUnit::Day => 86_400_000_000,
            DateUnit::Week => 7 * 86_400_000_000,
            _ => return None,
        })
    }
}

/// Day number of the Monday of the ISO week containing day `d` (1970-01-01 was a Thursday).
fn monday_of(d: i64) -> i64 {
    d - (d + 3).rem_euclid(7)
}

/// `DATE_TRUNC(unit, ts)`: the timestamp rounded down to the start of its unit (weeks start
/// on Monday, UTC).
pub(crate) fn date_trunc(unit: DateUnit, micros: i64) -> i64 {
    const DAY: i64 = 86_400_000_000;
    match unit {
        DateUnit::Week => monday_of(micros.div_euclid(DAY)) * DAY,
        u if u.fixed_micros().is_some() => {
            let m = u.fixed_micros().unwrap_or(1);
            micros.div_euclid(m) * m
        }
        u => {
            let (y, m, _) = civil_from_days(micros.div_euclid(DAY));
            let m = match u {
                DateUnit::Year => 1,
                DateUnit::Quarter => (m - 1) / 3 * 3 + 1,
                _ => m,
            };
            days_from_civil(y, m, 1) * DAY
        }
    }
}

/// `DATE_DIFF(unit, start, end)`: the number of unit boundaries between the two timestamps
/// (DuckDB's `date_diff`): the difference of their `DATE_TRUNC`s, in units; negative when
/// `end` is before `start`.
pub(crate) fn date_diff(unit: DateUnit, start: i64, end: i64) -> i64 {
    const DAY: i64 = 86_400_000_000;
    let (a, b) = (date_trunc(unit, start), date_trunc(unit, end));
    match unit {
        DateUnit::Month | DateUnit::Quarter | DateUnit::Year => {
            let months = |t: i64| {
                let (y, m, _) = civil_from_days(t.div_euclid(DAY));
                y * 12 + m - 1
            };
            let n = months(b) - months(a);
            match unit {
                DateUnit::Month => n,
                DateUnit::Quarter => n / 3,
                _ => n / 12,
            }
        }
        u => (b - a) / u.fixed_micros().unwrap_or(1),
    }
}

/// Parses `YYYY-MM-DD[( |T)HH:MM[:SS[.ffffff]]][Z|±HH[:MM]]` (UTC unless an offset is given;
/// digits past microseconds are truncated) into microseconds since the epoch.
pub(crate) fn parse_timestamp(text: &str) -> Option<i64> {
    let t = text.trim().as_bytes();
    let mut i = 0;
    let num = |i: &mut usize, n: usize| -> Option<i64> {
        let s = t.get(*i..*i + n)?;
        if !s.iter().all(u8::is_ascii_digit) {
            return None;
        }
        *i += n;
        std::str::from_utf8(s).ok()?.parse().ok()
    };
    let expect = |i: &mut usize, c: u8| -> Option<()> { (t.get(*i) == Some(&c)).then(|| *i += 1) };
    let y = num(&mut i, 4)?;
    expect(&mut i, b'-')?;
    let mo = num(&mut i, 2)?;
    expect(&mut i, b'-')?;
    let d = num(&mut i, 2)?;
    if !(1..=12).contains(&mo) || d < 1 || d > days_in_month(y, mo) {
        return None;
    }
    let (mut h, mut mi, mut s, mut micros) = (0, 0, 0, 0);
    if matches!(t.get(i), Some(b' ' | b'T')) {
        i += 1;
        h = num(&mut i, 2)?;
        expect(&mut i, b':')?;
        mi = num(&mut i, 2)?;
        if t.get(i) == Some(&b':') {
            i += 1;
            s = num(&mut i, 2)?;
            if t.get(i) == Some(&b'.') {
                i += 1;
                let start = i;
                while t.get(i).is_some_and(u8::is_ascii_digit) {
                    if i - start < 6 {
                        micros = micros * 10 + (t[i] - b'0') as i64;
                    }
                    i += 1;
                }
                if i == start {
                    return None;
                }
                for _ in (i - start)..6 {
                    micros *= 10;
                }
            }
        }
        if h > 23 || mi > 59 || s > 59 {
            return None;
        }
    }
    let mut offset_s = 0;
    match t.get(i) {
        None => {}
        Some(b'Z') if i + 1 == t.len() => i += 1,
        Some(&c @ (b'+' | b'-')) => {
            i += 1;
            let oh = num(&mut i, 2)?;
            let _ = expect(&mut i, b':');
            let om = if i < t.len() { num(&mut i, 2)? } else { 0 };
            if oh > 18 || om > 59 {
                return None;
            }
            offset_s = (oh * 3600 + om * 60) * if c == b'-' { -1 } else { 1 };
        }
        Some(_) => return None,
    }
    if i != t.len() {
        return None;
    }
    let secs = days_from_civil(y, mo, d) * 86_400 + h * 3600 + mi * 60 + s - offset_s;
    secs.checked_mul(1_000_000)?.checked_add(micros)
}

/// Formats a timestamp as `YYYY-MM-DD HH:MM:SS[.ffffff]` (UTC, trailing zeros of the
/// fraction dropped).
pub(crate) fn format_timestamp(micros: i64) -> String {
    let secs = micros.div_euclid(1_000_000);
    let frac = micros.rem_euclid(1_000_000);
    let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
    let sod = secs.rem_euclid(86_400);
    let mut out = format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}",
        sod / 3600,
        sod / 60 % 60,
        sod % 60
    );
    if frac != 0 {
        let f = format!("{frac:06}");
        out.push('.');
        out.push_str(f.trim_end_matches('0'));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimals_parse_format_and_round() {
        assert_eq!(parse_decimal("12.345", 10, 2), Some(1235));
        assert_eq!(parse_decimal("-12.345", 10, 2), Some(-1235));
        assert_eq!(parse_decimal(" 1e3 ", 10, 0), Some(1000));
        assert_eq!(parse_decimal(".5", 3, 1), Some(5));
        assert_eq!(parse_decimal("123", 2, 0), None);
        assert_eq!(parse_decimal("1.2.3", 5, 1), None);
        assert_eq!(parse_decimal("", 5, 1), None);
        assert_eq!(format_decimal(-5, 2), "-0.05");
        assert_eq!(format_decimal(12345, 2), "123.45");
        assert_eq!(format_decimal(7, 0), "7");
        assert_eq!(decimal_literal("0.05"), Some((5, 2, 2)));
        assert_eq!(decimal_literal("012.50"), Some((1250, 4, 2)));
        assert_eq!(dec_cmp(150, 2, 15, 1), Ordering::Equal);
        assert_eq!(dec_cmp(i128::MAX, 0, 1, 38), Ordering::Greater);
        assert_eq!(dec_round(1255, 2, 1, 10), Some(126));
        assert_eq!(dec_round(-1250, 2, -1, 10), Some(-10));
    }

    #[test]
    fn decimal_arithmetic_is_exact() {
        // 1.10 + 2.205 = 3.305
        let t = dec_result(DecOp::Add, (3, 2), (4, 3));
        assert_eq!(t, (5, 3));
        assert_eq!(dec_arith(DecOp::Add, 110, 2, 2205, 3, t), Ok(3305));
        // 1 / 3 at scale max(6, 0 + 1 + 1) = 6
        let t = dec_result(DecOp::Div, (1, 0), (1, 0));
        assert_eq!(t, (7, 6));
        assert_eq!(dec_arith(DecOp::Div, 1, 0, 3, 0, t), Ok(333_333));
        assert_eq!(dec_arith(DecOp::Div, -2, 0, 3, 0, t), Ok(-666_667));
        assert_eq!(
            dec_arith(DecOp::Div, 1, 0, 0, 0, t),
            Err(DecFail::DivisionByZero)
        );
        // decimal(38,18) * decimal(38,18): needs a 256-bit intermediate.
        let t = dec_result(DecOp::Mul, (38, 18), (38, 18));
        assert_eq!(t, (38, 6));
        let a = 1_000_500_000_000_000_000_000_i128; // 1000.5
        let b = 2_250_000_000_000_000_000i128; // 2.25
        assert_eq!(dec_arith(DecOp::Mul, a, 18, b, 18, t), Ok(2_251_125_000));
        let t = dec_result(DecOp::Rem, (3, 1), (2, 0));
        assert_eq!(dec_arith(DecOp::Rem, -75, 1, 2, 0, t), Ok(-15));
    }

    #[test]
    fn date_trunc_and_diff() {
        let t = |s: &str| parse_timestamp(s).unwrap();
        let ts = t("2024-05-17 13:45:12.5");
        let cases = [
            (DateUnit::Second, "2024-05-17 13:45:12"),
            (DateUnit::Minute, "2024-05-17 13:45:00"),
            (DateUnit::Hour, "2024-05-17 13:00:00"),
            (DateUnit::Day, "2024-05-17 00:00:00"),
            (DateUnit::Week, "2024-05-13 00:00:00"),
            (DateUnit::Month, "2024-05-01 00:00:00"),
            (DateUnit::Quarter, "2024-04-01 00:00:00"),
            (DateUnit::Year, "2024-01-01 00:00:00"),
        ];
        for (u, want) in cases {
            assert_eq!(format_timestamp(date_trunc(u, ts)), want, "{u:?}");
        }
        // Before 1970: floors, not truncation toward zero.
        assert_eq!(
            format_timestamp(date_trunc(DateUnit::Month, t("1969-12-31 23:59:59"))),
            "1969-12-01 00:00:00"
        );
        assert_eq!(
            format_timestamp(date_trunc(DateUnit::Week, t("1970-01-01 10:00:00"))),
            "1969-12-29 00:00:00"
        );
        // Boundaries crossed, not whole units elapsed (DuckDB's date_diff).
        let (a, b) = (t("2024-01-31 23:00:00"), t("2024-02-01 01:00:00"));
        assert_eq!(date_diff(DateUnit::Day, a, b), 1);
        assert_eq!(date_diff(DateUnit::Month, a, b), 1);
        assert_eq!(date_diff(DateUnit::Hour, a, b), 2);
        assert_eq!(date_diff(DateUnit::Day, b, a), -1);
        assert_eq!(
            date_diff(DateUnit::Year, t("2023-12-31"), t("2025-01-01")),
            2
        );
        assert_eq!(
            date_diff(DateUnit::Quarter, t("2024-03-31"), t("2024-04-01")),
            1
        );
        assert_eq!(
            date_diff(DateUnit::Day, t("2024-01-01"), t("2024-12-31 23:59")),
            365
        );
        assert_eq!(DateUnit::parse("DAYS"), Some(DateUnit::Day));
        assert_eq!(DateUnit::parse("fortnight"), None);
    }

    #[test]
    fn timestamps_round_trip() {
        for text in [
            "1970-01-01 00:00:00",
            "2024-02-29 23:59:59.123456",
            "1969-12-31 23:59:59.5",
            "0001-01-01 00:00:00",
        ] {
            let t = parse_timestamp(text).unwrap();
            assert_eq!(format_timestamp(t), text);
        }
        assert_eq!(parse_timestamp("1970-01-02"), Some(86_400_000_000));
        assert_eq!(parse_timestamp("1970-01-01T01:00:00Z"), Some(3_600_000_000));
        assert_eq!(parse_timestamp("1970-01-01 01:00:00+01:00"), Some(0));
        assert_eq!(parse_timestamp("2023-02-29"), None);
        assert_eq!(parse_timestamp("2024-01-01 24:00:00"), None);
        assert_eq!(parse_timestamp("2024-01-01x"), None);
    }
}
