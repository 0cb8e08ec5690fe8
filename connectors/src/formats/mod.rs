//! Debezium JSON and other formats (being written).
