//! Input formats: Debezium JSON change records (one envelope per line).
//!
//! [`DebeziumParser::resolve_schema`] fixes a source's [`Schema`](crate::types::Schema) from
//! the first lines of its stream; [`DebeziumParser::parse`] then flattens each line into a
//! [`Row`](crate::types::Row) of that schema, or a [`BadRecord`] naming what is wrong.

mod connect;
mod convert;
pub mod debezium;

pub use debezium::{BadRecord, DebeziumParser, Parsed, UnknownColumns};
