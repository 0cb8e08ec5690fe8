//! Workload `checkpoint-codec`: the candidates for the operator-state checkpoint codec,
//! measured on one worker's ApplyChanges state (`--keys` keys, a tenth of them tombstones).
//!
//! - **bincode, `BucketState`** — what `tidewater::checkpoint` writes: the real key and
//!   sequence types (`Key`, `KeyState<Seq>`), any key or sequence column type.
//! - **bincode, flat** and **abomonation, flat** — the same state as plain tuples
//!   `(key: i64, seq: i64, fingerprint, deleted, deleted_at)`: the only form abomonation can
//!   encode without hand-written `unsafe` impls for `Key` and `Datum` (so it covers integer
//!   keys and sequences only). The comparison of the two flat rows is codec against codec.
//!
//! Encode includes building the value to encode from the live state; decode includes
//! rebuilding the live state (the hash map of keys) from the bytes: that is what a checkpoint
//! write and a restore cost. Medians of `--repeat` rounds.

use std::time::Instant;

use clap::Args;
use tidewater::checkpoint::BucketState;
use tidewater::{Key, Seq};
use tidewater_connectors::types::Datum;
use tidewater_operators::{ApplyState, KeyState};

use crate::common::{median, mib, thousands, Table};

/// Flags of `tidewater-bench checkpoint-codec`.
#[derive(Args, Clone, Debug)]
pub struct CodecArgs {
    /// Keys in the state.
    #[arg(long, default_value_t = 1_000_000)]
    pub keys: u64,
    /// Rounds; the median is reported.
    #[arg(long, default_value_t = 5)]
    pub repeat: usize,
}

type Flat = (i64, i64, u64, bool, u64);

/// The key of integer `i` (its `encode_key` bytes: a type tag, then big-endian), without an
/// allocation.
fn key_of(i: i64) -> Key {
    static TAG: std::sync::OnceLock<u8> = std::sync::OnceLock::new();
    let tag = *TAG.get_or_init(|| {
        let mut b = Vec::new();
        Datum::Int(0).encode_key(&mut b);
        b[0]
    });
    let mut buf = [0u8; 9];
    buf[0] = tag;
    buf[1..].copy_from_slice(&i.to_be_bytes());
    Key::from_slice(&buf)
}

fn int_of(k: &Key) -> i64 {
    i64::from_be_bytes(k.as_slice()[1..9].try_into().expect("an int64 key"))
}

fn seq_int(s: &Seq) -> i64 {
    match s.datum() {
        Datum::Int(i) => i,
        _ => unreachable!("integer sequences in this benchmark"),
    }
}

/// A state of `n` keys like the bank workload's: int64 keys, int64 LSN sequences.
fn state(n: u64) -> ApplyState<Key, Seq> {
    let mut st: ApplyState<Key, Seq> = ApplyState::default();
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    for i in 1..=n as i64 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let deleted = i % 10 == 0;
        st.keys.insert(
            key_of(i),
            KeyState::new(
                Seq::new(Datum::Int(24_000_000 + i * 7)),
                deleted,
                x,
                if deleted { (i % 50) as u64 } else { 0 },
            ),
        );
        if deleted {
            st.tombstones.push_back(((i % 50) as u64, key_of(i)));
        }
    }
    st
}

fn rebuild(keys: impl Iterator<Item = (Key, KeyState<Seq>)>, n: usize) -> ApplyState<Key, Seq> {
    let mut st: ApplyState<Key, Seq> = ApplyState::default();
    st.keys.reserve(n);
    for (k, s) in keys {
        st.keys.insert(k, s);
    }
    st
}

fn flat_of(st: &ApplyState<Key, Seq>) -> Vec<Flat> {
    st.keys
        .iter()
        .map(|(k, s)| {
            (
                int_of(k),
                seq_int(&s.seq),
                s.fingerprint,
                s.deleted,
                s.deleted_at,
            )
        })
        .collect()
}

fn from_flat(f: &Flat) -> (Key, KeyState<Seq>) {
    (
        key_of(f.0),
        KeyState::new(Seq::new(Datum::Int(f.1)), f.3, f.2, f.4),
    )
}

/// abomonation's encode and decode are `unsafe` (decode trusts the bytes completely); the
/// workspace forbids `unsafe` elsewhere, so this benchmark module is the one exception.
#[allow(unsafe_code)]
mod abom {
    use super::Flat;

    pub fn encode(v: &Vec<Flat>) -> Vec<u8> {
        let mut out = Vec::new();
        // SAFETY: `Vec<(i64, i64, u64, bool, u64)>` is plain data; writing it cannot fail.
        unsafe { abomonation::encode(v, &mut out) }.expect("write to a Vec");
        out
    }

    pub fn decode(bytes: &mut [u8]) -> &Vec<Flat> {
        // SAFETY: the bytes were produced by `encode` of the same type in this process.
        let (v, rest) = unsafe { abomonation::decode::<Vec<Flat>>(bytes) }.expect("valid bytes");
        assert!(rest.is_empty());
        v
    }
}

struct Row {
    name: &'static str,
    bytes: usize,
    encode: Vec<f64>,
    decode: Vec<f64>,
}

/// Runs the workload (see the [module docs](self)).
pub fn run(args: &CodecArgs) -> anyhow::Result<()> {
    let n = args.keys as usize;
    eprintln!("building a state of {n} keys ...");
    let st = state(args.keys);
    let mut rows = vec![
        Row {
            name: "bincode, BucketState (used)",
            bytes: 0,
            encode: vec![],
            decode: vec![],
        },
        Row {
            name: "bincode, flat tuples",
            bytes: 0,
            encode: vec![],
            decode: vec![],
        },
        Row {
            name: "abomonation, flat tuples",
            bytes: 0,
            encode: vec![],
            decode: vec![],
        },
    ];
    for round in 0..args.repeat.max(1) {
        // bincode of the real types.
        let t = Instant::now();
        let refs: Vec<(&Key, &KeyState<Seq>)> = st.keys.iter().collect();
        let tomb: Vec<(u64, &Key)> = st.tombstones.iter().map(|(e, k)| (*e, k)).collect();
        let none: (Option<Seq>, Vec<()>, Vec<()>) = (None, Vec::new(), Vec::new());
        let bytes = bincode::serialize(&(refs, tomb, none.0, none.1, none.2))?;
        rows[0].encode.push(t.elapsed().as_secs_f64());
        rows[0].bytes = bytes.len();
        let t = Instant::now();
        let back: BucketState = bincode::deserialize(&bytes)?;
        let rebuilt = rebuild(back.keys.into_iter(), n);
        rows[0].decode.push(t.elapsed().as_secs_f64());
        assert_eq!(rebuilt.keys.len(), n);
        assert_eq!(back.tombstones.len(), st.tombstones.len());

        // bincode, flat.
        let t = Instant::now();
        let flat = flat_of(&st);
        let bytes = bincode::serialize(&flat)?;
        rows[1].encode.push(t.elapsed().as_secs_f64());
        rows[1].bytes = bytes.len();
        let t = Instant::now();
        let back: Vec<Flat> = bincode::deserialize(&bytes)?;
        let rebuilt = rebuild(back.iter().map(from_flat), n);
        rows[1].decode.push(t.elapsed().as_secs_f64());
        assert_eq!(rebuilt.keys, st.keys);

        // abomonation, flat.
        let t = Instant::now();
        let flat = flat_of(&st);
        let mut bytes = abom::encode(&flat);
        rows[2].encode.push(t.elapsed().as_secs_f64());
        rows[2].bytes = bytes.len();
        let t = Instant::now();
        let back = abom::decode(&mut bytes);
        let rebuilt = rebuild(back.iter().map(from_flat), n);
        rows[2].decode.push(t.elapsed().as_secs_f64());
        assert_eq!(rebuilt.keys, st.keys);
        eprintln!("round {}/{} done", round + 1, args.repeat.max(1));
    }
    let base_enc = median(&rows[0].encode);
    let base_dec = median(&rows[0].decode);
    let mut table = Table::new(&[
        "codec",
        "MiB",
        "encode ms",
        "decode+rebuild ms",
        "encode ratio",
        "decode ratio",
    ]);
    let mut json = Vec::new();
    for r in &rows {
        let (e, d) = (median(&r.encode), median(&r.decode));
        table.row(vec![
            r.name.into(),
            mib(r.bytes as u64),
            format!("{:.1}", e * 1e3),
            format!("{:.1}", d * 1e3),
            format!("{:.2}", e / base_enc),
            format!("{:.2}", d / base_dec),
        ]);
        json.push(serde_json::json!({"codec": r.name, "bytes": r.bytes, "encode_s": e, "decode_rebuild_s": d}));
    }
    println!(
        "\ncheckpoint-codec: one worker's state of {} keys; ratios against the codec in use\n",
        thousands(args.keys)
    );
    print!("{}", table.render());
    println!(
        "\n{}",
        serde_json::json!({"workload": "checkpoint-codec", "results": json})
    );
    Ok(())
}
