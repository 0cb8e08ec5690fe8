//! End-to-end tests: whole pipelines through the `tidewater` binary against real Delta tables
//! on local disk, read back by two independent readers. One scenario per file.

mod apply_options;
mod bad_input;
mod cdc_file;
mod checkpoints;
mod config_errors;
mod crash_kill;
mod dashboard;
mod demo;
mod dlt_cases;
mod epochs;
mod expectations;
mod kafka_pipeline;
mod kafka_reader;
mod kafka_scale;
mod marketing;
mod metrics;
mod offers;
mod restart;
mod schema_evolution;
mod second_writer;
mod telematics;
mod transfers;
mod views;
mod windows;
