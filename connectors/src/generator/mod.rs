//! Built-in deterministic data generators and the reference model used to check them.
//!
//! - [`bank`]: the bank-customers Debezium PostgreSQL CDC generator ([`BankGenerator`]),
//!   which emits a realistic, deterministically perturbed change stream (out-of-order
//!   windows, duplicates, very late events, deletes and re-creates).
//! - [`transfers`]: the bank-transfers generator ([`TransfersGenerator`]): an `accounts`
//!   snapshot, then multi-event source transactions (transfers) that keep the sum of all
//!   balances constant.
//! - [`marketing`]: the marketing-engagement generator ([`MarketingGenerator`]): one simulated
//!   world of Salesforce accounts and users, Marketo leads and e-mail activities, emitted as
//!   six consistent Debezium streams, one per generator (its `stream`).
//! - [`telematics`]: the telematics and smart-claims generator ([`TelematicsGenerator`]):
//!   one simulated world of vehicles sending readings about every second (out of order,
//!   late, very late and duplicated), their insurance policies and the claims filed for them,
//!   emitted as three consistent Debezium streams, one per generator (its `stream`).
//! - [`offers`]: the card-offers generator ([`OffersGenerator`]): one simulated world of card
//!   customers, their event-attendance counters per category (sequenced by
//!   `datetime_updated`, with stale late changes and reversals) and their card transactions
//!   with cash-back (late and duplicated), emitted as three consistent Debezium streams, one
//!   per generator (its `stream`).
//! - [`reference`]: a plain sequential model of `APPLY CHANGES` / SCD type 1
//!   ([`reference_apply`]) that computes the expected final table of any Debezium JSON
//!   stream, independently of the engine.
//!
//! [`GeneratorConfig`] / [`Generator`] select one of the generators (the `workload` of a
//! pipeline's generator source).

/// The Kafka Connect JSON schema of a Debezium PostgreSQL envelope of table
/// `bank.public.<$table>` (or `<$prefix><$table>` with `@prefix`) whose row struct has the
/// fields `$fields`; `$source_extra` are extra fields of the `source` struct after `db` (e.g.
/// `sequence`), `""` for none.
macro_rules! debezium_envelope_schema {
    ($table:literal, $fields:expr, $source_extra:expr) => {
        debezium_envelope_schema!(@prefix "bank.public.", $table, $fields, $source_extra)
    };
    (@prefix $prefix:literal, $table:literal, $fields:expr, $source_extra:expr) => {
        concat!(
            r#"{"type":"struct","fields":["#,
            r#"{"type":"struct","fields":["#,
            $fields,
            r#"],"optional":true,"name":""#,
            $prefix,
            $table,
            r#".Value","field":"before"},"#,
            r#"{"type":"struct","fields":["#,
            $fields,
            r#"],"optional":true,"name":""#,
            $prefix,
            $table,
            r#".Value","field":"after"},"#,
            r#"{"type":"struct","fields":["#,
            r#"{"type":"string","optional":false,"field":"version"},"#,
            r#"{"type":"string","optional":false,"field":"connector"},"#,
            r#"{"type":"string","optional":false,"field":"name"},"#,
            r#"{"type":"int64","optional":false,"field":"ts_ms"},"#,
            r#"{"type":"string","optional":true,"name":"io.debezium.data.Enum","version":1,"#,
            r#""parameters":{"allowed":"true,last,false,incremental"},"default":"false","field":"snapshot"},"#,
            r#"{"type":"string","optional":false,"field":"db"},"#,
            $source_extra,
            r#"{"type":"string","optional":false,"field":"schema"},"#,
            r#"{"type":"string","optional":false,"field":"table"},"#,
            r#"{"type":"int64","optional":true,"field":"txId"},"#,
            r#"{"type":"int64","optional":true,"field":"lsn"},"#,
            r#"{"type":"int64","optional":true,"field":"xmin"}"#,
            r#"],"optional":false,"name":"io.debezium.connector.postgresql.Source","field":"source"},"#,
            r#"{"type":"string","optional":false,"field":"op"},"#,
            r#"{"type":"int64","optional":true,"field":"ts_ms"},"#,
            r#"{"type":"struct","fields":["#,
            r#"{"type":"string","optional":false,"field":"id"},"#,
            r#"{"type":"int64","optional":false,"field":"total_order"},"#,
            r#"{"type":"int64","optional":false,"field":"data_collection_order"}"#,
            r#"],"optional":true,"name":"event.block","version":1,"field":"transaction"}"#,
            r#"],"optional":false,"name":""#,
            $prefix,
            $table,
            r#".Envelope","version":1}"#,
        )
    };
}

/// A field of a Kafka Connect JSON schema block: `f!(type, optional, name)`; `ts` is an
/// `io.debezium.time.Timestamp` (epoch milliseconds).
macro_rules! f {
    (ts, $opt:literal, $name:literal) => {
        concat!(
            r#"{"type":"int64","optional":"#,
            $opt,
            r#","name":"io.debezium.time.Timestamp","version":1,"field":""#,
            $name,
            r#""}"#
        )
    };
    ($ty:literal, $opt:literal, $name:literal) => {
        concat!(
            r#"{"type":""#,
            $ty,
            r#"","optional":"#,
            $opt,
            r#","field":""#,
            $name,
            r#""}"#
        )
    };
}

pub mod bank;
pub mod marketing;
pub mod offers;
pub mod reference;
pub mod telematics;
pub mod transfers;

pub use bank::{write_file, BankGenConfig, BankGenerator, BANK_COLUMNS, BANK_SCHEMA_JSON};
pub use marketing::{
    write_file as write_marketing_file, MarketingGenConfig, MarketingGenerator, MarketingStream,
};
pub use offers::{write_file as write_offers_file, OffersGenConfig, OffersGenerator, OffersStream};
pub use reference::{reference_apply, reference_apply_file, ReferenceState};
pub use telematics::{
    write_file as write_telematics_file, TelematicsGenConfig, TelematicsGenerator, TelematicsStream,
};
pub use transfers::{
    write_file as write_transfers_file, TransfersGenConfig, TransfersGenerator, TRANSFERS_COLUMNS,
    TRANSFERS_SCHEMA_JSON,
};

/// The settings of one of the built-in generators.
#[derive(Clone, Debug, PartialEq)]
pub enum GeneratorConfig {
    /// `workload = "bank"`: [`BankGenerator`].
    Bank(BankGenConfig),
    /// `workload = "transfers"`: [`TransfersGenerator`].
    Transfers(TransfersGenConfig),
    /// `workload = "marketing"`: [`MarketingGenerator`] (one stream of the marketing world).
    Marketing(MarketingGenConfig),
    /// `workload = "telematics"`: [`TelematicsGenerator`] (one stream of the telematics world).
    Telematics(TelematicsGenConfig),
    /// `workload = "offers"`: [`OffersGenerator`] (one stream of the offers world).
    Offers(OffersGenConfig),
}

impl GeneratorConfig {
    /// The workload name (`bank` | `transfers` | `marketing` | `telematics` | `offers`).
    pub fn workload(&self) -> &'static str {
        match self {
            GeneratorConfig::Bank(_) => "bank",
            GeneratorConfig::Transfers(_) => "transfers",
            GeneratorConfig::Marketing(_) => "marketing",
            GeneratorConfig::Telematics(_) => "telematics",
            GeneratorConfig::Offers(_) => "offers",
        }
    }

    /// The number of lines the generator emits in all.
    pub fn total_lines(&self) -> u64 {
        match self {
            GeneratorConfig::Bank(c) => c.events,
            GeneratorConfig::Transfers(c) => c.total_lines(),
            GeneratorConfig::Marketing(c) => c.total_lines(),
            GeneratorConfig::Telematics(c) => c.total_lines(),
            GeneratorConfig::Offers(c) => c.total_lines(),
        }
    }

    /// Creates the generator.
    pub fn build(&self) -> Generator {
        match self {
            GeneratorConfig::Bank(c) => Generator::Bank(Box::new(BankGenerator::new(c.clone()))),
            GeneratorConfig::Transfers(c) => {
                Generator::Transfers(Box::new(TransfersGenerator::new(c.clone())))
            }
            GeneratorConfig::Marketing(c) => {
                Generator::Marketing(Box::new(MarketingGenerator::new(c.clone())))
            }
            GeneratorConfig::Telematics(c) => {
                Generator::Telematics(Box::new(TelematicsGenerator::new(c.clone())))
            }
            GeneratorConfig::Offers(c) => {
                Generator::Offers(Box::new(OffersGenerator::new(c.clone())))
            }
        }
    }
}

/// One of the built-in generators, pulled line by line.
pub enum Generator {
    /// The bank-customers generator (every event is its own source transaction).
    Bank(Box<BankGenerator>),
    /// The bank-transfers generator (multi-event source transactions).
    Transfers(Box<TransfersGenerator>),
    /// One stream of the marketing world (every event is its own source transaction).
    Marketing(Box<MarketingGenerator>),
    /// One stream of the telematics world (every event is its own source transaction).
    Telematics(Box<TelematicsGenerator>),
    /// One stream of the offers world (every event is its own source transaction).
    Offers(Box<OffersGenerator>),
}

impl Generator {
    /// Appends the next line (no newline) to `out`; false when all lines were produced.
    pub fn next_line(&mut self, out: &mut Vec<u8>) -> bool {
        match self {
            Generator::Bank(g) => g.next_line(out),
            Generator::Transfers(g) => g.next_line(out),
            Generator::Marketing(g) => g.next_line(out),
            Generator::Telematics(g) => g.next_line(out),
            Generator::Offers(g) => g.next_line(out),
        }
    }

    /// Lines produced so far.
    pub fn position(&self) -> u64 {
        match self {
            Generator::Bank(g) => g.position(),
            Generator::Transfers(g) => g.position(),
            Generator::Marketing(g) => g.position(),
            Generator::Telematics(g) => g.position(),
            Generator::Offers(g) => g.position(),
        }
    }

    /// Whether the last produced line is followed by more lines of its source transaction: a
    /// block (and so an epoch) must not end here.
    pub fn in_transaction(&self) -> bool {
        match self {
            Generator::Bank(_)
            | Generator::Marketing(_)
            | Generator::Telematics(_)
            | Generator::Offers(_) => false,
            Generator::Transfers(g) => g.in_transaction(),
        }
    }
}

/// Writes the lines `next_line` appends (until it returns false), newline-terminated, to
/// `path` (created or truncated); returns the number of bytes written.
fn write_lines(
    path: &std::path::Path,
    mut next_line: impl FnMut(&mut Vec<u8>) -> bool,
) -> std::io::Result<u64> {
    use std::io::Write;
    let file = std::fs::File::create(path)?;
    let mut w = std::io::BufWriter::with_capacity(1 << 20, file);
    let mut line = Vec::with_capacity(1024);
    let mut bytes = 0u64;
    loop {
        line.clear();
        if !next_line(&mut line) {
            break;
        }
        line.push(b'\n');
        w.write_all(&line)?;
        bytes += line.len() as u64;
    }
    w.flush()?;
    Ok(bytes)
}

/// Appends `s` as a JSON string (the generators' strings need no escaping).
fn push_str(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    out.extend_from_slice(s.as_bytes());
    out.push(b'"');
}

/// Appends the decimal representation of `v`.
fn push_int(out: &mut Vec<u8>, v: i64) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    let mut n = v.unsigned_abs();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    if v < 0 {
        out.push(b'-');
    }
    out.extend_from_slice(&buf[i..]);
}
