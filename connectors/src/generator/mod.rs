//! Built-in deterministic data generators (being written).
