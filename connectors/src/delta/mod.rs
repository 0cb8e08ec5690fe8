//! Delta Lake sink (being written).
