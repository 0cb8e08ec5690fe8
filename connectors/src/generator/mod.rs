//! Built-in deterministic data generators and the reference model used to check them.
//!
//! - [`bank`]: the bank-customers Debezium PostgreSQL CDC generator ([`BankGenerator`]),
//!   which emits a realistic, deterministically perturbed change stream (out-of-order
//!   windows, duplicates, very late events, deletes and re-creates).
//! - [`reference`]: a plain sequential model of `APPLY CHANGES` / SCD type 1
//!   ([`reference_apply`]) that computes the expected final table of any Debezium JSON
//!   stream, independently of the engine.

pub mod bank;
pub mod reference;

pub use bank::{write_file, BankGenConfig, BankGenerator, BANK_COLUMNS, BANK_SCHEMA_JSON};
pub use reference::{reference_apply, reference_apply_file, ReferenceState};
