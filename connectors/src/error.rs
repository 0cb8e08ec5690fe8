//! The error type of the connectors crate.

use thiserror::Error;

/// Errors of sources and sinks. Bad *records* are never errors: they become quarantine rows.
#[derive(Debug, Error)]
pub enum ConnectorError {
    /// Reading or writing a local file failed.
    #[error("I/O error on {path}: {source}")]
    Io {
        /// The file or directory.
        path: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A Delta Lake operation failed.
    #[error("Delta table {table}: {message}")]
    Delta {
        /// The table name or path.
        table: String,
        /// What went wrong.
        message: String,
    },
    /// Encoding a Parquet file failed.
    #[error("Parquet file {path}: {message}")]
    Parquet {
        /// The file.
        path: String,
        /// What went wrong.
        message: String,
    },
    /// The input's schema could not be determined or is unusable.
    #[error("schema of source {source_name}: {message}")]
    Schema {
        /// The source.
        source_name: String,
        /// What went wrong.
        message: String,
    },
    /// A connector setting is invalid.
    #[error("invalid setting {key}: {message}")]
    Config {
        /// The setting, e.g. `topics` or `properties.security.protocol`.
        key: String,
        /// What is wrong with it.
        message: String,
    },
    /// The Kafka brokers could not be reached, or the client failed.
    #[error("Kafka brokers {brokers}: {message}")]
    Kafka {
        /// The bootstrap brokers as configured.
        brokers: String,
        /// What went wrong.
        message: String,
    },
    /// A Kafka topic or partition does not exist, or cannot be read from where asked.
    #[error("Kafka topic {topic} (brokers {brokers}): {message}")]
    KafkaTopic {
        /// The bootstrap brokers as configured.
        brokers: String,
        /// The topic.
        topic: String,
        /// What went wrong.
        message: String,
    },
}

impl ConnectorError {
    /// Wraps an I/O error with the path it concerns.
    pub fn io(path: impl std::fmt::Display, source: std::io::Error) -> Self {
        ConnectorError::Io {
            path: path.to_string(),
            source,
        }
    }
}
