//! tidewater: streaming CDC into epoch-consistent Delta Lake tables on timely dataflow.
//!
//! This crate wires the generic operators (`tidewater-operators`) and the connectors
//! (`tidewater-connectors`) into a dataflow per pipeline file, and holds the CLI.
//! See `ARCHITECTURE.md` at the repository root for the map.

pub mod checkpoint;
pub mod commit;
pub mod config;
pub mod dashboard;
pub mod error;
pub mod event_log;
pub mod failpoint;
pub mod kafka_source;
pub mod key;
pub mod memory;
pub mod metrics;
pub mod run;
pub mod source;
pub mod spill;
pub mod sql;
pub mod table;
pub mod view;

use std::cmp::Ordering;

/// Turns transparent huge pages off for this process (Linux; elsewhere a no-op), to be called
/// first thing by a binary that runs the engine. With THP `always` (a common system default)
/// every 2-MiB-aligned range of the heap that is touched at all becomes a whole resident huge
/// page: the engine's peak RSS was ≈ 20–30 MiB higher with them at no measurable gain in CPU
/// time (bench/RESULTS.md, session 6). Errors are ignored (an old kernel: nothing changes).
pub fn disable_huge_pages() {
    #[cfg(target_os = "linux")]
    let _ = rustix::thread::disable_transparent_huge_pages(true);
}

use serde::{Deserialize, Serialize};
use tidewater_connectors::types::Datum;

pub use config::PipelineConfig;
pub use error::TidewaterError;
pub use run::{run, RunOptions, RunSummary};

pub use key::Key;

/// A sequence value, totally ordered (see [`Datum::total_cmp`]). Integers and timestamps —
/// the usual `sequence_by` columns — are kept inline in 16 bytes, other values boxed: every key
/// of an SCD table keeps one in the APPLY CHANGES state, so its size is memory per key.
/// Serialized exactly like the datum in a newtype `Seq`.
#[derive(Clone, Debug)]
pub struct Seq(SeqRepr);

#[derive(Clone, Debug)]
enum SeqRepr {
    Int(i64),
    Timestamp(i64),
    Other(Box<Datum>),
}

impl Seq {
    /// The sequence value of `d`.
    pub fn new(d: Datum) -> Seq {
        Seq(match d {
            Datum::Int(i) => SeqRepr::Int(i),
            Datum::Timestamp(t) => SeqRepr::Timestamp(t),
            other => SeqRepr::Other(Box::new(other)),
        })
    }

    /// The value as a datum.
    pub fn datum(&self) -> Datum {
        match &self.0 {
            SeqRepr::Int(i) => Datum::Int(*i),
            SeqRepr::Timestamp(t) => Datum::Timestamp(*t),
            SeqRepr::Other(d) => (**d).clone(),
        }
    }

    /// Appends the datum's canonical encoding ([`Datum::encode_key`]).
    pub fn encode_key(&self, out: &mut Vec<u8>) {
        let mut tmp = Datum::Null;
        self.as_datum(&mut tmp).encode_key(out);
    }

    /// The value as a datum, borrowed when boxed (`tmp` holds an inline one).
    fn as_datum<'a>(&'a self, tmp: &'a mut Datum) -> &'a Datum {
        match &self.0 {
            SeqRepr::Other(d) => d,
            SeqRepr::Int(i) => {
                *tmp = Datum::Int(*i);
                tmp
            }
            SeqRepr::Timestamp(t) => {
                *tmp = Datum::Timestamp(*t);
                tmp
            }
        }
    }
}

/// The serialized form of a [`Seq`] (that of the former `struct Seq(Datum)`).
#[derive(Deserialize)]
#[serde(rename = "Seq")]
struct SeqWire(Datum);

/// [`SeqWire`] borrowing the datum (the same encoding).
#[derive(Serialize)]
#[serde(rename = "Seq")]
struct SeqWireRef<'a>(&'a Datum);

impl Serialize for Seq {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut tmp = Datum::Null;
        SeqWireRef(self.as_datum(&mut tmp)).serialize(s)
    }
}

impl<'de> Deserialize<'de> for Seq {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Seq, D::Error> {
        SeqWire::deserialize(d).map(|w| Seq::new(w.0))
    }
}

impl PartialEq for Seq {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Seq {}
impl PartialOrd for Seq {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Seq {
    #[inline]
    fn cmp(&self, other: &Self) -> Ordering {
        match (&self.0, &other.0) {
            (SeqRepr::Int(a), SeqRepr::Int(b)) | (SeqRepr::Timestamp(a), SeqRepr::Timestamp(b)) => {
                a.cmp(b)
            }
            _ => {
                let (mut x, mut y) = (Datum::Null, Datum::Null);
                self.as_datum(&mut x).total_cmp(other.as_datum(&mut y))
            }
        }
    }
}

#[cfg(test)]
mod seq_tests {
    use super::*;

    fn values() -> Vec<Datum> {
        vec![
            Datum::Null,
            Datum::Bool(true),
            Datum::Int(-3),
            Datum::Int(7),
            Datum::Float(1.5),
            Datum::Str("b".into()),
            Datum::Str("a".into()),
            Datum::Bytes(vec![1]),
            Datum::Timestamp(5),
            Datum::Timestamp(-1),
            Datum::Decimal(10),
        ]
    }

    /// Inline or boxed, a sequence value orders like its datum, and serializes like the
    /// former `struct Seq(Datum)` (checkpoints stay readable).
    #[test]
    fn orders_and_serializes_like_its_datum() {
        assert_eq!(std::mem::size_of::<super::Seq>(), 16);
        #[derive(Serialize)]
        struct Seq(Datum);
        for a in values() {
            let sa = super::Seq::new(a.clone());
            assert_eq!(sa.datum(), a);
            let bytes = bincode::serialize(&sa).unwrap();
            assert_eq!(bytes, bincode::serialize(&Seq(a.clone())).unwrap());
            let back: super::Seq = bincode::deserialize(&bytes).unwrap();
            assert_eq!(back.datum(), a);
            for b in values() {
                let sb = super::Seq::new(b.clone());
                assert_eq!(sa.cmp(&sb), a.total_cmp(&b), "{a:?} vs {b:?}");
            }
        }
    }
}
