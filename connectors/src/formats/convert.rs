//! Typing of single JSON values into [`Datum`]s (no silent casts).
//!
//! Values reach a column either as a [`Scalar`] (decoded by serde_json, strings borrowed when
//! they hold no escapes) or, for `string` and `decimal` columns, as raw JSON text (so nested
//! JSON can be kept verbatim and decimal numbers are read exactly). Every function here
//! returns the reason of a mismatch *without* the column name; the caller prefixes it.

use crate::types::{ColumnType, Datum};
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::DecodePaddingMode;
use base64::Engine as _;
use serde::de::{self, Deserialize, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use std::borrow::Cow;
use std::fmt;

/// Standard-alphabet base64, padding optional (Kafka Connect writes padded base64, other
/// producers sometimes do not).
pub(crate) const BASE64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_decode_padding_mode(DecodePaddingMode::Indifferent)
        .with_decode_allow_trailing_bits(true),
);

/// How integer timestamps of a column are scaled (from the record's schema block).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) enum TsUnit {
    /// Milliseconds (`io.debezium.time.Timestamp`, and the default without schema block).
    #[default]
    Millis,
    /// Microseconds (`io.debezium.time.MicroTimestamp`).
    Micros,
    /// Nanoseconds (`io.debezium.time.NanoTimestamp`).
    Nanos,
}

/// Per-column encoding hints taken from a record's schema block.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct ColMode {
    /// Unit of integer timestamps.
    pub ts: TsUnit,
    /// Decimals arrive as base64 big-endian two's-complement unscaled integers
    /// (`org.apache.kafka.connect.data.Decimal`).
    pub dec_b64: bool,
}

/// One decoded JSON value; objects and arrays are consumed and only their kind is kept.
#[derive(Debug, PartialEq)]
pub(crate) enum Scalar<'de> {
    Null,
    Bool(bool),
    I64(i64),
    U64(u64),
    F64(f64),
    Str(Cow<'de, str>),
    Object,
    Array,
}

struct ScalarVisitor;

impl<'de> Visitor<'de> for ScalarVisitor {
    type Value = Scalar<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Scalar::Null)
    }
    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Scalar::Null)
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
        Ok(Scalar::Bool(v))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        Ok(Scalar::I64(v))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        Ok(Scalar::U64(v))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
        Ok(Scalar::F64(v))
    }
    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Scalar::Str(Cow::Borrowed(v)))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Scalar::Str(Cow::Owned(v.to_owned())))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
        Ok(Scalar::Str(Cow::Owned(v)))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Scalar::Object)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Scalar::Array)
    }
}

impl<'de> Deserialize<'de> for Scalar<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ScalarVisitor)
    }
}

/// Renders a string for an error message: JSON-quoted, cut after 40 characters.
fn quote(s: &str) -> String {
    const MAX: usize = 40;
    match s.char_indices().nth(MAX) {
        Some((cut, _)) => {
            let q = serde_json::to_string(&s[..cut]).unwrap_or_default();
            format!("{}…\"", &q[..q.len() - 1])
        }
        None => serde_json::to_string(s).unwrap_or_default(),
    }
}

/// Describes a value for "found …" in error messages.
pub(crate) fn describe(v: &Scalar<'_>) -> String {
    match v {
        Scalar::Null => "null".into(),
        Scalar::Bool(b) => format!("boolean {b}"),
        Scalar::I64(i) => format!("number {i}"),
        Scalar::U64(u) => format!("number {u}"),
        Scalar::F64(f) => format!("number {f:?}"),
        Scalar::Str(s) => format!("string {}", quote(s)),
        Scalar::Object => "object".into(),
        Scalar::Array => "array".into(),
    }
}

/// Describes raw JSON text for "found …" in error messages.
fn describe_raw(raw: &str) -> String {
    match raw.as_bytes().first() {
        Some(b'{') => "object".into(),
        Some(b'[') => "array".into(),
        Some(b't' | b'f') => format!("boolean {raw}"),
        Some(b'n') => "null".into(),
        Some(b'"') => format!("string {}", quote(&unquote(raw).unwrap_or_default())),
        _ => format!("number {raw}"),
    }
}

fn expected(ty: ColumnType, found: String) -> String {
    format!("expected {}, found {found}", ty.name())
}

/// The content of raw JSON string text (`"..."`), borrowed unless it holds escapes.
fn unquote(raw: &str) -> Result<Cow<'_, str>, String> {
    let inner = raw.get(1..raw.len().saturating_sub(1)).unwrap_or_default();
    if memchr::memchr(b'\\', inner.as_bytes()).is_none() {
        Ok(Cow::Borrowed(inner))
    } else {
        serde_json::from_str::<String>(raw)
            .map(Cow::Owned)
            .map_err(|e| format!("invalid string: {e}"))
    }
}

/// Parses JSON number text as a float of the column's width (correctly rounded; a value
/// beyond the type's range is an error, not an infinity).
fn float_from_text(raw: &str, ty: ColumnType) -> Result<Datum, String> {
    let out_of_range = || format!("number {raw} is out of range for {}", ty.name());
    let v: f64 = raw
        .parse()
        .map_err(|_| expected(ty, format!("number {raw}")))?;
    if !v.is_finite() {
        return Err(out_of_range());
    }
    if ty == ColumnType::Float32 {
        let f = v as f32;
        if !f.is_finite() {
            return Err(out_of_range());
        }
        return Ok(Datum::Float(f as f64));
    }
    Ok(Datum::Float(v))
}

/// Checks an integer against the range of an integer column type.
fn int_in_range(v: i128, ty: ColumnType) -> Result<Datum, String> {
    let (lo, hi) = match ty {
        ColumnType::Int8 => (i8::MIN as i128, i8::MAX as i128),
        ColumnType::Int16 => (i16::MIN as i128, i16::MAX as i128),
        ColumnType::Int32 => (i32::MIN as i128, i32::MAX as i128),
        _ => (i64::MIN as i128, i64::MAX as i128),
    };
    if v < lo || v > hi {
        return Err(format!("{v} is out of range for {}", ty.name()));
    }
    Ok(Datum::Int(v as i64))
}

/// Scales an integer timestamp to microseconds.
fn ts_from_int(v: i128, unit: TsUnit) -> Result<Datum, String> {
    let us = match unit {
        TsUnit::Millis => v.checked_mul(1000),
        TsUnit::Micros => Some(v),
        TsUnit::Nanos => Some(v.div_euclid(1000)),
    };
    match us.and_then(|us| i64::try_from(us).ok()) {
        Some(us) => Ok(Datum::Timestamp(us)),
        None => Err(format!("timestamp {v} is out of range")),
    }
}

/// Parses an RFC 3339 timestamp to microseconds since the epoch.
fn ts_from_str(s: &str) -> Result<Datum, String> {
    match chrono::DateTime::parse_from_rfc3339(s) {
        Ok(dt) => Ok(Datum::Timestamp(dt.timestamp_micros())),
        Err(e) => Err(format!(
            "expected timestamp, found string {} ({e}; expected RFC 3339)",
            quote(s)
        )),
    }
}

/// 10^p as i128, if it fits (p ≤ 38).
fn pow10(p: u32) -> Option<i128> {
    10i128.checked_pow(p)
}

fn check_precision(v: i128, ty: ColumnType, shown: &str) -> Result<i128, String> {
    if let ColumnType::Decimal { precision, .. } = ty {
        if let Some(limit) = pow10(precision as u32) {
            if v.unsigned_abs() >= limit.unsigned_abs() {
                return Err(format!("{shown} exceeds the precision of {}", ty.name()));
            }
        }
    }
    Ok(v)
}

/// Parses plain decimal notation (`-123.45`, no exponent) exactly to the unscaled integer at
/// the column's scale. Trailing zeros beyond the scale are accepted (no information is lost);
/// any other extra fractional digit is an error.
pub(crate) fn parse_plain_decimal(s: &str, ty: ColumnType) -> Result<i128, String> {
    let ColumnType::Decimal { scale, .. } = ty else {
        return Err(expected(ty, format!("string {}", quote(s))));
    };
    let not_plain = || {
        format!(
            "expected {} in plain decimal notation, found {}",
            ty.name(),
            quote(s)
        )
    };
    if scale < 0 {
        return Err(format!("negative scale of {} is not supported", ty.name()));
    }
    let scale = scale as usize;
    let (neg, body) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    let (int, frac) = body.split_once('.').unwrap_or((body, ""));
    if (int.is_empty() && frac.is_empty())
        || !int.bytes().all(|b| b.is_ascii_digit())
        || !frac.bytes().all(|b| b.is_ascii_digit())
    {
        return Err(not_plain());
    }
    let frac = frac.trim_end_matches('0');
    if frac.len() > scale {
        return Err(format!(
            "{s} has more fractional digits than the scale of {}",
            ty.name()
        ));
    }
    let out_of_range = || format!("{s} exceeds the precision of {}", ty.name());
    let mut v: i128 = 0;
    let pad = std::iter::repeat_n(b'0', scale - frac.len());
    for d in int.bytes().chain(frac.bytes()).chain(pad) {
        v = v
            .checked_mul(10)
            .and_then(|v| v.checked_add((d - b'0') as i128))
            .ok_or_else(out_of_range)?;
    }
    let v = check_precision(v, ty, s)?;
    Ok(if neg { -v } else { v })
}

/// Decodes a Kafka Connect decimal: base64 of the big-endian two's-complement unscaled value.
pub(crate) fn decode_b64_decimal(s: &str, ty: ColumnType) -> Result<i128, String> {
    let bytes = BASE64.decode(s.as_bytes()).map_err(|e| {
        format!(
            "expected {} as base64, found string {} ({e})",
            ty.name(),
            quote(s)
        )
    })?;
    if bytes.is_empty() {
        return Ok(0);
    }
    let neg = bytes[0] & 0x80 != 0;
    let fill = if neg { 0xFF } else { 0x00 };
    let n = bytes.len().min(16);
    let (extra, tail) = bytes.split_at(bytes.len() - n);
    if !extra.iter().all(|&b| b == fill) || (!extra.is_empty() && (tail[0] & 0x80 != 0) != neg) {
        return Err(format!(
            "decimal {} is out of range for {}",
            quote(s),
            ty.name()
        ));
    }
    let mut buf = [fill; 16];
    buf[16 - n..].copy_from_slice(tail);
    let v = i128::from_be_bytes(buf);
    check_precision(v, ty, &format!("decimal {}", quote(s)))
}

/// Types a decoded value for a column of type `ty` (meant for the types that do not go
/// through [`convert_raw`]; the others are handled here too, minus nested JSON text).
pub(crate) fn convert_scalar(
    v: Scalar<'_>,
    ty: ColumnType,
    mode: ColMode,
) -> Result<Datum, String> {
    use ColumnType as T;
    match (ty, v) {
        (_, Scalar::Null) => Ok(Datum::Null),
        (T::Int8 | T::Int16 | T::Int32 | T::Int64, Scalar::I64(i)) => int_in_range(i as i128, ty),
        (T::Int8 | T::Int16 | T::Int32 | T::Int64, Scalar::U64(u)) => int_in_range(u as i128, ty),
        (T::Float64, Scalar::F64(f)) => Ok(Datum::Float(f)),
        (T::Float64, Scalar::I64(i)) => Ok(Datum::Float(i as f64)),
        (T::Float64, Scalar::U64(u)) => Ok(Datum::Float(u as f64)),
        (T::Float32, Scalar::F64(f)) => Ok(Datum::Float(f as f32 as f64)),
        (T::Float32, Scalar::I64(i)) => Ok(Datum::Float(i as f32 as f64)),
        (T::Float32, Scalar::U64(u)) => Ok(Datum::Float(u as f32 as f64)),
        (T::Boolean, Scalar::Bool(b)) => Ok(Datum::Bool(b)),
        (T::Timestamp, Scalar::I64(i)) => ts_from_int(i as i128, mode.ts),
        (T::Timestamp, Scalar::U64(u)) => ts_from_int(u as i128, mode.ts),
        (T::Timestamp, Scalar::Str(s)) => ts_from_str(&s),
        (T::Bytes, Scalar::Str(s)) => match BASE64.decode(s.as_bytes()) {
            Ok(b) => Ok(Datum::Bytes(b)),
            Err(e) => Err(format!(
                "expected base64 bytes, found string {} ({e})",
                quote(&s)
            )),
        },
        (T::String, Scalar::Str(s)) => Ok(Datum::Str(s.into_owned())),
        (T::Decimal { .. }, Scalar::Str(s)) => {
            let v = if mode.dec_b64 {
                decode_b64_decimal(&s, ty)?
            } else {
                parse_plain_decimal(&s, ty)?
            };
            Ok(Datum::Decimal(v))
        }
        (T::Decimal { .. }, Scalar::I64(i)) if !mode.dec_b64 => {
            Ok(Datum::Decimal(parse_plain_decimal(&i.to_string(), ty)?))
        }
        (T::Decimal { .. }, Scalar::U64(u)) if !mode.dec_b64 => {
            Ok(Datum::Decimal(parse_plain_decimal(&u.to_string(), ty)?))
        }
        (ty, v) => Err(expected(ty, describe(&v))),
    }
}

/// Types raw JSON text for a `string`, `decimal`, `float` or `double` column: strings as
/// their content, nested JSON (object/array) as its text for `string`, numbers exactly for
/// `decimal` and correctly rounded for floats.
pub(crate) fn convert_raw(raw: &str, ty: ColumnType, mode: ColMode) -> Result<Datum, String> {
    match (raw.as_bytes().first(), ty) {
        (Some(b'n'), _) => Ok(Datum::Null),
        (Some(b'-' | b'0'..=b'9'), ColumnType::Float32 | ColumnType::Float64) => {
            float_from_text(raw, ty)
        }
        (Some(b'"'), ColumnType::String) => Ok(Datum::Str(unquote(raw)?.into_owned())),
        (Some(b'"'), ColumnType::Decimal { .. }) => {
            let s = unquote(raw)?;
            let v = if mode.dec_b64 {
                decode_b64_decimal(&s, ty)?
            } else {
                parse_plain_decimal(&s, ty)?
            };
            Ok(Datum::Decimal(v))
        }
        (Some(b'{' | b'['), ColumnType::String) => Ok(Datum::Str(raw.to_owned())),
        (Some(b'-' | b'0'..=b'9'), ColumnType::Decimal { .. }) if !mode.dec_b64 => {
            match parse_plain_decimal(raw, ty) {
                Ok(v) => Ok(Datum::Decimal(v)),
                // A JSON number that is not plain notation (exponent): report it as a number.
                Err(e) if e.starts_with("expected") => Err(expected(
                    ty,
                    format!("number {raw} (not plain decimal notation)"),
                )),
                Err(e) => Err(e),
            }
        }
        (Some(b'-' | b'0'..=b'9'), ColumnType::Decimal { .. }) => Err(format!(
            "expected {} as base64 string, found number {raw}",
            ty.name()
        )),
        _ => Err(expected(ty, describe_raw(raw))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEC: ColumnType = ColumnType::Decimal {
        precision: 12,
        scale: 2,
    };

    #[test]
    fn plain_decimals_scale_exactly() {
        assert_eq!(parse_plain_decimal("123.45", DEC), Ok(12345));
        assert_eq!(parse_plain_decimal("-1.5", DEC), Ok(-150));
        assert_eq!(parse_plain_decimal("7", DEC), Ok(700));
        assert_eq!(parse_plain_decimal("1.230", DEC), Ok(123));
        assert_eq!(
            parse_plain_decimal("1.234", DEC),
            Err("1.234 has more fractional digits than the scale of decimal(12,2)".into())
        );
        assert_eq!(
            parse_plain_decimal("10000000000", DEC),
            Err("10000000000 exceeds the precision of decimal(12,2)".into())
        );
        assert!(parse_plain_decimal("1e5", DEC).is_err());
        assert!(parse_plain_decimal("", DEC).is_err());
        assert!(parse_plain_decimal("-", DEC).is_err());
        assert!(parse_plain_decimal(".", DEC).is_err());
        let big = ColumnType::Decimal {
            precision: 38,
            scale: 0,
        };
        assert!(parse_plain_decimal(&"9".repeat(39), big).is_err());
        assert!(parse_plain_decimal(&"9".repeat(50), big).is_err());
        assert_eq!(
            parse_plain_decimal(&"9".repeat(38), big),
            Ok(10i128.pow(38) - 1)
        );
    }

    #[test]
    fn base64_decimals_are_twos_complement() {
        // 12345 = 0x3039
        assert_eq!(decode_b64_decimal("MDk=", DEC), Ok(12345));
        // -12345 = 0xCFC7
        assert_eq!(decode_b64_decimal("z8c=", DEC), Ok(-12345));
        assert_eq!(decode_b64_decimal("", DEC), Ok(0));
        // 17 bytes of sign extension + value is fine
        let mut b = vec![0xFFu8; 17];
        b[16] = 0xFE;
        assert_eq!(decode_b64_decimal(&BASE64.encode(&b), DEC), Ok(-2));
        let mut b = vec![0x00u8; 17];
        b[0] = 1;
        assert!(decode_b64_decimal(&BASE64.encode(&b), DEC).is_err());
        assert!(decode_b64_decimal("!!", DEC).is_err());
    }

    #[test]
    fn long_strings_are_cut_in_messages() {
        let q = quote(&"é".repeat(100));
        assert_eq!(q.chars().count(), 43);
        assert!(q.ends_with("…\""));
    }
}
