//! The error type of the `tidewater` library.

use thiserror::Error;
use tidewater_connectors::ConnectorError;

/// Errors of a pipeline run.
#[derive(Debug, Error)]
pub enum TidewaterError {
    /// The pipeline file or the command line is wrong; `key` names where.
    #[error("config error at {key}: {message}")]
    Config {
        /// The offending key (e.g. `table `customers`.keys`) or a line of the file.
        key: String,
        /// What is wrong.
        message: String,
    },
    /// A source or sink failed.
    #[error("{0}")]
    Connector(#[from] ConnectorError),
    /// The timely runtime could not start or a worker failed.
    #[error("runtime error: {0}")]
    Runtime(String),
    /// This process's cluster address (from the hostfile) was taken by another process
    /// when timely's networking started; nothing was read or written yet, so the cluster can
    /// be started again on other ports (`tidewater cluster` does so).
    #[error("cluster address in use: {0}")]
    AddressInUse(String),
}

impl TidewaterError {
    /// The process exit code for this error: 2 for configuration errors, 3 when the
    /// cluster address was in use at start, 1 otherwise.
    pub fn exit_code(&self) -> i32 {
        match self {
            TidewaterError::Config { .. } => 2,
            TidewaterError::AddressInUse(_) => 3,
            _ => 1,
        }
    }
}
