//! The files source (being written).
