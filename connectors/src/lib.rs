//! tidewater connectors: sources (files, generator, kafka), formats (debezium-json) and sinks (delta).
//!
//! Connectors know nothing of pipelines or of timely: they read and decode input, and write
//! and commit Delta tables. `tidewater` (the `dataflow` crate) wires them into a dataflow.

pub mod delta;
pub mod error;
pub mod files;
pub mod formats;
pub mod generator;
pub mod kafka;
pub mod types;

pub use error::ConnectorError;
