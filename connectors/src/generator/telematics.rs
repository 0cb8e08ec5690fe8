//! The deterministic telematics and smart-claims generator (issue 8): vehicles that send a
//! reading about every second, their insurance policies and the claims filed for them, as
//! three Debezium streams of one simulated world.
//!
//! # One world, three streams
//!
//! A single simulation (ChaCha8 seeded with `seed`, integer arithmetic) runs a fleet of
//! `vehicles` insured vehicles in simulated time. Every delivered record is one Debezium
//! envelope (one line) of one of three streams ([`TelematicsStream`]):
//!
//! | stream | table | key | ops |
//! |---|---|---|---|
//! | `reading` | telematics `reading` | `reading_id` (int64) | `c` only (insert-only events) |
//! | `policy` | insurance `policy` | `policy_id` (int64) | `r` snapshot, `u`, `c` + `d` (a policy replaced) |
//! | `claim` | insurance `claim` | `claim_id` (int64) | `c`, `u` as the claim progresses, `d` (withdrawn) |
//!
//! [`TelematicsGenConfig::events`] is the number of lines of the **whole world** (all three
//! streams together). A [`TelematicsGenerator`] emits only the lines of its
//! [`TelematicsGenConfig::stream`], in world (arrival) order: a pipeline declares three
//! generator sources with the same settings and different `stream`, and the three streams are
//! consistent with each other because they are three views of the same world. The world is a
//! prefix of an endless delivery sequence: the world of `events = n` is the first `n` lines
//! of the world of any larger `events` (same other settings).
//!
//! # The simulation
//!
//! Simulated time starts at 2024-03-04 08:00:00 UTC (a multiple of 5 minutes) and advances in
//! ticks of one second.
//!
//! 1. **Snapshot** (`op = r`, delivered first): one active policy per vehicle — region (one of
//!    five: `north`, `south`, `east`, `west`, `central`), coverage (`liability` | `collision` |
//!    `comprehensive`) with its limit, annual premium, premium earned so far, and the start
//!    time: about 8 % of the policies started in the last 30 days, the others 30–365 days
//!    ago.
//! 2. **Readings**: every tick each vehicle takes one reading at a fixed phase of the second
//!    (± 30 ms), so a vehicle reports about every second. The vehicle drives in regimes of 3–15
//!    minutes (city, rural, highway, stop-and-go) and moves toward the regime's speed;
//!    `accel_ms2` is the acceleration of the step, below -4.0 for a harsh brake (about 0.2 %
//!    of the readings, and every collision); `distance_m` is the distance since the vehicle's
//!    previous reading (0 for its first one); `lat` / `lon` follow from the heading.
//! 3. **Policies**: now and then (each policy about every 5 minutes) a policy is updated: its
//!    earned premium is brought up to date (`annual × elapsed / year`, so it grows with
//!    simulated time), in one update out of ten it is re-rated (annual premium ± 20 %) and
//!    in one out of twenty its coverage changes (another coverage, limit and premium). Rarely
//!    a claim-free policy is replaced: the old one is deleted (`op = d`) and the vehicle gets a
//!    new policy (`op = c`) starting now (a policy with claims is never replaced, so every
//!    claim's policy exists).
//! 4. **Claims**: with probability `claim_pct` per reading (four times that while the policy
//!    is younger than 30 days) the vehicle has an incident at that reading's event time
//!    (`collision`, `theft`, `glass` or `weather`; a collision is a harsh brake, after which
//!    the vehicle stops for 30 s to 2 minutes). The claim is filed (`op = c`, `status = open`)
//!    1–10 minutes later, then adjusted (`u`: adjustment expenses grow; some stay `open`
//!    for another round), `approved` or `denied`, and an approved claim is `paid`
//!    (`paid_cents = min(claim_amount_cents, coverage_limit_cents)`); about 3 % are withdrawn
//!    while open (`op = d`). The amount follows the damage severity, except for about 8 %
//!    of the `minor` damages, which claim far too much; about 6 % of the claims are set
//!    above the coverage limit (a few more exceed it by their severity's amount);
//!    about 12 % report a speed 30–60 km/h away from the speed the telematics recorded just
//!    before the incident (the others within ± 5 km/h). Suspicious claims are denied more
//!    often.
//!
//! # Delivery (arrival order)
//!
//! Lines are delivered in order of arrival time (`ts_ms`, the time the pipeline's ingest saw
//! the record; `source.ts_ms` is when it happened: a reading's event time, a change's commit
//! time):
//!
//! - **readings** arrive 0.1–3 s after their event time (5 % after 3–8 s), so they are out
//!   of event-time order by a few seconds, also per vehicle; about `late_pct` arrive 30–90 s
//!   late (within an allowed lateness of 2 minutes) and about `very_late_pct` 5–15 minutes
//!   late (beyond it: a watermark of "maximum event time seen minus 2 minutes", however
//!   computed, has passed them — they belong in a `_late` table); about `duplicate_pct` of
//!   the readings that are not very late are **delivered twice**, the second copy 0.2–5 s
//!   after the first. A duplicate is the same record delivered again by the ingest: the same
//!   `after` row and `source.ts_ms`, a new `source.lsn`, `source.txId` and `ts_ms` (so
//!   `source.lsn` strictly increases in arrival order over the whole `reading` stream, and
//!   APPLY CHANGES by `reading_id` sees the same row twice);
//! - **policy and claim changes** arrive when they are committed, except about
//!   `out_of_order_pct` of the updates (`op = u`), which arrive 5–60 s late, after changes
//!   committed later (also, now and then, after a later change of the same key).
//!
//! `source.lsn` of a reading is assigned on arrival (the ingest position); `source.lsn` of a
//! policy or claim change is its commit position in the insurance database (one sequence
//! for both tables), so it increases in arrival order except at the late updates. Every
//! line is its own source transaction (`txId` unique within its stream, `transaction:
//! null`).
//!
//! Timestamps (`event_time`, `start_time`, `incident_time`) are epoch milliseconds
//! (`io.debezium.time.Timestamp` in the schema block; declare them as `timestamp` columns
//! when lines carry no schema block). A rule such as "claim within 30 days of the policy
//! start" is SQL: `incident_time < start_time + INTERVAL '30' DAY`.
//! Doubles are written with a fixed number of decimals (2; `lat` / `lon` 6), money in int64
//! cents. Strings are plain ASCII that needs no JSON escaping.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use std::cmp::Ordering;
use std::collections::{BTreeMap, BinaryHeap};
use std::fmt;
use std::path::Path;

use super::{push_int, push_str, write_lines};

/// One of the three streams of the telematics world (the `stream` of a generator source).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum TelematicsStream {
    /// Vehicle readings (`"reading"`), insert-only.
    #[default]
    Reading,
    /// Insurance policies (`"policy"`), CDC.
    Policy,
    /// Insurance claims (`"claim"`), CDC.
    Claim,
}

impl TelematicsStream {
    /// All three streams, in the order of [`TelematicsStream::index`].
    pub const ALL: [TelematicsStream; 3] = [
        TelematicsStream::Reading,
        TelematicsStream::Policy,
        TelematicsStream::Claim,
    ];

    /// The stream's name (as in a pipeline file's `stream = "…"`), which is also the name of
    /// its source table (`source.table` of the envelopes).
    pub fn name(self) -> &'static str {
        match self {
            TelematicsStream::Reading => "reading",
            TelematicsStream::Policy => "policy",
            TelematicsStream::Claim => "claim",
        }
    }

    /// The stream named `name` (see [`TelematicsStream::name`]).
    pub fn parse(name: &str) -> Option<TelematicsStream> {
        TelematicsStream::ALL.into_iter().find(|s| s.name() == name)
    }

    /// The stream names, comma-separated (for error messages).
    pub fn names() -> String {
        TelematicsStream::ALL.map(|s| s.name()).join(", ")
    }

    /// Position in [`TelematicsStream::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }

    /// The source system: `telematics` or `insurance` (`source.schema` of the envelopes).
    pub fn system(self) -> &'static str {
        match self {
            TelematicsStream::Reading => "telematics",
            _ => "insurance",
        }
    }

    /// The data columns of the stream's rows, in order, with their tidewater type names
    /// (timestamps are epoch milliseconds in the JSON).
    pub fn columns(self) -> &'static [(&'static str, &'static str)] {
        match self {
            TelematicsStream::Reading => &READING_COLUMNS,
            TelematicsStream::Policy => &POLICY_COLUMNS,
            TelematicsStream::Claim => &CLAIM_COLUMNS,
        }
    }

    /// The Kafka Connect JSON schema of the stream's lines when
    /// [`TelematicsGenConfig::with_schema`] is set.
    pub fn schema_json(self) -> &'static str {
        match self {
            TelematicsStream::Reading => READING_SCHEMA_JSON,
            TelematicsStream::Policy => POLICY_SCHEMA_JSON,
            TelematicsStream::Claim => CLAIM_SCHEMA_JSON,
        }
    }

    fn bit(self) -> u8 {
        1 << (self as u8)
    }
}

impl fmt::Display for TelematicsStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Configuration of the [`TelematicsGenerator`]. Every field has a default. The three sources
/// of one pipeline must agree on every field except `stream`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TelematicsGenConfig {
    /// Seed of the random generator (default 42).
    pub seed: u64,
    /// Lines of the whole world, all three streams together, snapshot included (default
    /// 200_000). The selected stream emits its share ([`TelematicsGenConfig::total_lines`]).
    pub events: u64,
    /// The stream this generator emits (default `reading`).
    pub stream: TelematicsStream,
    /// Insured vehicles, each with one active policy (default 200). With none the world is
    /// empty.
    pub vehicles: u64,
    /// Share of readings that arrive 30–90 s late, within the allowed lateness of 2 minutes
    /// (default 0.02).
    pub late_pct: f64,
    /// Share of readings that arrive 5–15 minutes late, beyond the allowed lateness (default
    /// 0.005).
    pub very_late_pct: f64,
    /// Share of the readings (not very late) delivered twice (default 0.005).
    pub duplicate_pct: f64,
    /// Probability per reading that the vehicle has an incident for which a claim is filed
    /// (four times that while its policy is younger than 30 days; default 0.0003).
    pub claim_pct: f64,
    /// Share of policy and claim updates delivered 5–60 s late (default 0.03).
    pub out_of_order_pct: f64,
    /// Wrap each line in `{"schema":...,"payload":...}` (default false).
    pub with_schema: bool,
}

impl Default for TelematicsGenConfig {
    fn default() -> Self {
        TelematicsGenConfig {
            seed: 42,
            events: 200_000,
            stream: TelematicsStream::Reading,
            vehicles: 200,
            late_pct: 0.02,
            very_late_pct: 0.005,
            duplicate_pct: 0.005,
            claim_pct: 0.0003,
            out_of_order_pct: 0.03,
            with_schema: false,
        }
    }
}

impl TelematicsGenConfig {
    /// The default world with `vehicles` vehicles; other fields default. This is what a
    /// pipeline's `keys` sets.
    pub fn scaled(vehicles: u64) -> Self {
        TelematicsGenConfig {
            vehicles,
            ..TelematicsGenConfig::default()
        }
    }

    /// The number of lines of the selected stream.
    pub fn total_lines(&self) -> u64 {
        self.stream_lines()[self.stream.index()]
    }

    /// The number of lines of every stream (indexed like [`TelematicsStream::ALL`]); they
    /// sum to `events` (unless there are no vehicles). Runs the simulation without rendering
    /// lines.
    pub fn stream_lines(&self) -> [u64; 3] {
        let mut world = World::new(self.clone(), 0);
        let mut counts = [0u64; 3];
        while let Some(line) = world.next_line() {
            counts[line.stream.index()] += 1;
        }
        counts
    }
}

// ---------------------------------------------------------------------------------------
// Columns and schemas.

/// The data columns of a `reading` row.
pub const READING_COLUMNS: [(&str, &str); 8] = [
    ("reading_id", "int64"),
    ("vehicle_id", "int64"),
    ("event_time", "timestamp"),
    ("speed_kmh", "double"),
    ("accel_ms2", "double"),
    ("lat", "double"),
    ("lon", "double"),
    ("distance_m", "double"),
];

/// The data columns of a `policy` row.
pub const POLICY_COLUMNS: [(&str, &str); 8] = [
    ("policy_id", "int64"),
    ("vehicle_id", "int64"),
    ("region", "string"),
    ("coverage", "string"),
    ("coverage_limit_cents", "int64"),
    ("annual_premium_cents", "int64"),
    ("earned_premium_cents", "int64"),
    ("start_time", "timestamp"),
];

/// The data columns of a `claim` row.
pub const CLAIM_COLUMNS: [(&str, &str); 11] = [
    ("claim_id", "int64"),
    ("policy_id", "int64"),
    ("vehicle_id", "int64"),
    ("incident_time", "timestamp"),
    ("reported_speed_kmh", "double"),
    ("claim_amount_cents", "int64"),
    ("incident_type", "string"),
    ("damage_severity", "string"),
    ("status", "string"),
    ("paid_cents", "int64"),
    ("adjustment_expense_cents", "int64"),
];

/// The schema block of the `reading` stream.
pub const READING_SCHEMA_JSON: &str = debezium_envelope_schema!(
    @prefix "telematics.telematics.",
    "reading",
    concat!(
        f!("int64", false, "reading_id"),
        ",",
        f!("int64", false, "vehicle_id"),
        ",",
        f!(ts, false, "event_time"),
        ",",
        f!("float64", true, "speed_kmh"),
        ",",
        f!("float64", true, "accel_ms2"),
        ",",
        f!("float64", true, "lat"),
        ",",
        f!("float64", true, "lon"),
        ",",
        f!("float64", true, "distance_m"),
    ),
    ""
);

/// The schema block of the `policy` stream.
pub const POLICY_SCHEMA_JSON: &str = debezium_envelope_schema!(
    @prefix "telematics.insurance.",
    "policy",
    concat!(
        f!("int64", false, "policy_id"),
        ",",
        f!("int64", false, "vehicle_id"),
        ",",
        f!("string", true, "region"),
        ",",
        f!("string", true, "coverage"),
        ",",
        f!("int64", true, "coverage_limit_cents"),
        ",",
        f!("int64", true, "annual_premium_cents"),
        ",",
        f!("int64", true, "earned_premium_cents"),
        ",",
        f!(ts, true, "start_time"),
    ),
    ""
);

/// The schema block of the `claim` stream.
pub const CLAIM_SCHEMA_JSON: &str = debezium_envelope_schema!(
    @prefix "telematics.insurance.",
    "claim",
    concat!(
        f!("int64", false, "claim_id"),
        ",",
        f!("int64", false, "policy_id"),
        ",",
        f!("int64", false, "vehicle_id"),
        ",",
        f!(ts, true, "incident_time"),
        ",",
        f!("float64", true, "reported_speed_kmh"),
        ",",
        f!("int64", true, "claim_amount_cents"),
        ",",
        f!("string", true, "incident_type"),
        ",",
        f!("string", true, "damage_severity"),
        ",",
        f!("string", true, "status"),
        ",",
        f!("int64", true, "paid_cents"),
        ",",
        f!("int64", true, "adjustment_expense_cents"),
    ),
    ""
);

// ---------------------------------------------------------------------------------------
// Vocabulary and constants.

/// The five regions and their centres (micro-degrees latitude, longitude).
const REGIONS: [(&str, i64, i64); 5] = [
    ("north", 53_551_000, 9_994_000),
    ("south", 48_137_000, 11_575_000),
    ("east", 52_520_000, 13_405_000),
    ("west", 51_228_000, 6_773_000),
    ("central", 50_110_000, 8_682_000),
];
const COVERAGES: [&str; 3] = ["liability", "collision", "comprehensive"];
/// Coverage limit range per coverage, cents.
const LIMITS: [(i64, i64); 3] = [
    (5_000_000, 10_000_000),
    (2_000_000, 6_000_000),
    (3_000_000, 8_000_000),
];
const INCIDENT_TYPES: [&str; 4] = ["collision", "theft", "glass", "weather"];
const SEVERITIES: [&str; 4] = ["minor", "moderate", "severe", "total_loss"];
/// Claim amount range per severity, cents.
const AMOUNTS: [(i64, i64); 4] = [
    (30_000, 250_000),
    (200_000, 800_000),
    (700_000, 3_000_000),
    (1_500_000, 6_000_000),
];
const STATUSES: [&str; 4] = ["open", "approved", "paid", "denied"];
const OPEN: u8 = 0;
const APPROVED: u8 = 1;
const PAID: u8 = 2;
const DENIED: u8 = 3;

/// Sixteen headings: (east, north) components per mille.
const HEADINGS: [(i64, i64); 16] = [
    (0, 1000),
    (383, 924),
    (707, 707),
    (924, 383),
    (1000, 0),
    (924, -383),
    (707, -707),
    (383, -924),
    (0, -1000),
    (-383, -924),
    (-707, -707),
    (-924, -383),
    (-1000, 0),
    (-924, 383),
    (-707, 707),
    (-383, 924),
];
/// Centimetres per micro-degree of latitude, and of longitude at about 48° N.
const CM_PER_UDEG_LAT: i64 = 11;
const CM_PER_UDEG_LON: i64 = 7;

/// 2024-03-04 08:00:00 UTC.
const START_TS_MS: i64 = 1_709_539_200_000;
const TICK_MS: i64 = 1_000;
const DAY_MS: i64 = 86_400_000;
const YEAR_MS: i64 = 365 * DAY_MS;
const START_LSN: i64 = 61_000_000;
const START_READING_LSN: i64 = 900_000_000;
const START_TX_ID: i64 = 9_000;
const START_READING_TX_ID: i64 = 40_000_000;
const FIRST_POLICY_ID: i64 = 100_001;
const FIRST_CLAIM_ID: i64 = 700_001;
/// A policy is updated about every this many seconds.
const POLICY_UPDATE_EVERY_S: f64 = 300.0;
/// Probability per tick and vehicle that a claim-free policy is replaced.
const REPLACE_PER_VEHICLE_TICK: f64 = 0.000_03;

// ---------------------------------------------------------------------------------------
// The world.

struct Vehicle {
    /// Offset of its readings within each second, ms.
    phase: i64,
    /// Event time of its previous reading (None before the first).
    last_event: Option<i64>,
    /// Speed, centi-km/h.
    speed: i64,
    /// The speed of the current regime, centi-km/h.
    target: i64,
    regime_until: i64,
    heading: u8,
    /// Position, micro-degrees.
    lat: i64,
    lon: i64,
    /// Its current policy.
    policy: usize,
}

struct Policy {
    id: i64,
    vehicle: usize,
    region: u8,
    coverage: u8,
    limit: i64,
    annual: i64,
    earned: i64,
    start: i64,
    /// Claims filed or pending for it (a policy with claims is never replaced).
    claims: u32,
}

struct Claim {
    id: i64,
    policy: usize,
    vehicle: usize,
    incident_time: i64,
    /// centi-km/h.
    reported_speed: i64,
    amount: i64,
    incident_type: u8,
    severity: u8,
    status: u8,
    paid: i64,
    expense: i64,
    /// Reported speed far off, amount far above the severity's or above the limit.
    suspicious: bool,
}

/// One reading (rendered when delivered).
#[derive(Clone, Copy)]
struct Reading {
    id: i64,
    vehicle: usize,
    event_time: i64,
    /// centi-km/h.
    speed: i64,
    /// centi-m/s².
    accel: i64,
    /// micro-degrees.
    lat: i64,
    lon: i64,
    /// cm.
    distance: i64,
}

/// A change of the insurance database, due at a time.
#[derive(Clone, Copy)]
enum Action {
    FileClaim(usize),
    AdjustClaim(usize),
    PayClaim(usize),
    WithdrawClaim(usize),
    UpdatePolicy,
    ReplacePolicy,
}

enum Payload {
    Reading(Reading),
    /// A rendered (or, outside the mask, empty) policy or claim line.
    Change(TelematicsStream, Vec<u8>),
}

/// A line on its way: delivered in order of (arrival, seq).
struct Pending {
    arrival: i64,
    seq: u64,
    payload: Payload,
}

impl PartialEq for Pending {
    fn eq(&self, other: &Self) -> bool {
        (self.arrival, self.seq) == (other.arrival, other.seq)
    }
}
impl Eq for Pending {}
impl PartialOrd for Pending {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Pending {
    /// Reversed: the earliest arrival is the greatest (top of the max-heap).
    fn cmp(&self, other: &Self) -> Ordering {
        (other.arrival, other.seq).cmp(&(self.arrival, self.seq))
    }
}

/// A delivered world line: its stream and, when rendered, its bytes.
struct Line {
    stream: TelematicsStream,
    bytes: Vec<u8>,
}

/// What a change line shows.
#[derive(Clone, Copy)]
enum What {
    Policy(usize),
    Claim(usize),
}

/// The simulation; renders the lines of the streams in `mask` (a bit per stream) and leaves
/// the others empty. The random sequence does not depend on `mask`.
struct World {
    cfg: TelematicsGenConfig,
    mask: u8,
    rng: ChaCha8Rng,
    vehicles: Vec<Vehicle>,
    policies: Vec<Policy>,
    claims: Vec<Claim>,
    /// Actions due later, by (time, seq).
    scheduled: BTreeMap<(i64, u64), Action>,
    /// Lines generated and not yet delivered.
    pending: BinaryHeap<Pending>,
    /// Everything that happens before this time has been generated.
    horizon: i64,
    seq: u64,
    next_reading_id: i64,
    lsn: i64,
    tx_id: i64,
    reading_lsn: i64,
    reading_tx_id: i64,
    /// World lines delivered.
    position: u64,
}

impl World {
    fn new(cfg: TelematicsGenConfig, mask: u8) -> World {
        let mut w = World {
            rng: ChaCha8Rng::seed_from_u64(cfg.seed),
            mask,
            vehicles: Vec::new(),
            policies: Vec::new(),
            claims: Vec::new(),
            scheduled: BTreeMap::new(),
            pending: BinaryHeap::new(),
            horizon: START_TS_MS,
            seq: 0,
            next_reading_id: 1,
            lsn: START_LSN,
            tx_id: START_TX_ID,
            reading_lsn: START_READING_LSN,
            reading_tx_id: START_READING_TX_ID,
            position: 0,
            cfg,
        };
        // The snapshot: one policy per vehicle.
        for v in 0..w.cfg.vehicles as usize {
            let r = &mut w.rng;
            let region = r.gen_range(0..REGIONS.len() as u32) as u8;
            let (_, lat, lon) = REGIONS[region as usize];
            let target = regime_speed(r);
            w.vehicles.push(Vehicle {
                phase: r.gen_range(50..950),
                last_event: None,
                speed: target,
                target,
                regime_until: START_TS_MS + r.gen_range(10_000..600_000),
                heading: r.gen_range(0..16u32) as u8,
                lat: lat + r.gen_range(-300_000..=300_000),
                lon: lon + r.gen_range(-300_000..=300_000),
                policy: 0,
            });
            let start = if r.gen_range(0..100u32) < 8 {
                START_TS_MS - r.gen_range(0..30 * DAY_MS)
            } else {
                START_TS_MS - r.gen_range(30 * DAY_MS..365 * DAY_MS)
            };
            let p = w.new_policy(v, region, start, START_TS_MS);
            w.vehicles[v].policy = p;
            w.emit(What::Policy(p), b'r', START_TS_MS);
        }
        w
    }

    /// The next world line; `None` after `events` lines.
    fn next_line(&mut self) -> Option<Line> {
        if self.position >= self.cfg.events || self.vehicles.is_empty() {
            return None;
        }
        while self
            .pending
            .peek()
            .is_none_or(|p| p.arrival >= self.horizon)
        {
            self.tick();
        }
        let p = self.pending.pop().expect("a pending line");
        self.position += 1;
        Some(self.deliver(p))
    }

    fn push(&mut self, arrival: i64, payload: Payload) {
        self.seq += 1;
        self.pending.push(Pending {
            arrival,
            seq: self.seq,
            payload,
        });
    }

    fn schedule(&mut self, at: i64, action: Action) {
        self.seq += 1;
        self.scheduled.insert((at, self.seq), action);
    }

    /// One second of simulated time: the changes of the insurance database due in it (in
    /// time order), then every vehicle's reading.
    fn tick(&mut self) {
        let t = self.horizon;
        let end = t + TICK_MS;
        self.horizon = end;
        let mut actions: Vec<((i64, u64), Action)> = Vec::new();
        while let Some(entry) = self.scheduled.first_entry() {
            if entry.key().0 >= end {
                break;
            }
            let (k, a) = entry.remove_entry();
            actions.push((k, a));
        }
        let n = self.vehicles.len() as f64;
        let expected = n / POLICY_UPDATE_EVERY_S;
        let mut updates = expected as u64;
        if self.rng.gen::<f64>() < expected.fract() {
            updates += 1;
        }
        for _ in 0..updates {
            let at = t + self.rng.gen_range(0..TICK_MS);
            self.seq += 1;
            actions.push(((at, self.seq), Action::UpdatePolicy));
        }
        if self.rng.gen::<f64>() < n * REPLACE_PER_VEHICLE_TICK {
            let at = t + self.rng.gen_range(0..TICK_MS);
            self.seq += 1;
            actions.push(((at, self.seq), Action::ReplacePolicy));
        }
        actions.sort_by_key(|(k, _)| *k);
        for ((at, _), action) in actions {
            self.act(action, at);
        }
        for v in 0..self.vehicles.len() {
            self.reading(v, t);
        }
    }

    // --- readings -------------------------------------------------------------------------

    fn reading(&mut self, v: usize, tick: i64) {
        let event_time = tick + self.vehicles[v].phase + self.rng.gen_range(-30..=30);
        let p = self.vehicles[v].policy;
        let young = event_time < self.policies[p].start + 30 * DAY_MS;
        let claim_p = if young {
            4.0 * self.cfg.claim_pct
        } else {
            self.cfg.claim_pct
        };
        let incident = claim_p > 0.0 && self.rng.gen::<f64>() < claim_p;
        let incident_type = if incident {
            pick(&mut self.rng, &[45, 10, 25, 20])
        } else {
            0
        };
        let collision = incident && incident_type == 0;
        let r = &mut self.rng;
        let veh = &mut self.vehicles[v];
        if event_time >= veh.regime_until {
            veh.target = regime_speed(r);
            veh.regime_until = event_time + r.gen_range(180_000..900_000);
        }
        let dt = veh
            .last_event
            .map_or(TICK_MS, |last| event_time - last)
            .max(1);
        let harsh = collision || r.gen_range(0..1000u32) < 2;
        let accel = if harsh {
            -r.gen_range(450..=900)
        } else {
            let want = (veh.target - veh.speed) * 10_000 / (36 * dt);
            want.clamp(-250, 200) + r.gen_range(-30..=30)
        };
        let impact_speed = veh.speed;
        let speed = (veh.speed + accel * 36 * dt / 10_000).clamp(0, 16_000);
        let distance = match veh.last_event {
            Some(_) => (veh.speed + speed) * dt / 7_200,
            None => 0,
        };
        if r.gen_range(0..20u32) == 0 {
            veh.heading = (veh.heading + if r.gen::<bool>() { 1 } else { 15 }) % 16;
        }
        let (east, north) = HEADINGS[veh.heading as usize];
        veh.lat += distance * north / 1000 / CM_PER_UDEG_LAT;
        veh.lon += distance * east / 1000 / CM_PER_UDEG_LON;
        veh.speed = speed;
        veh.last_event = Some(event_time);
        if collision {
            // The vehicle stops for a while.
            veh.target = 0;
            veh.regime_until = event_time + r.gen_range(30_000..120_000);
        }
        let reading = Reading {
            id: self.next_reading_id,
            vehicle: v,
            event_time,
            speed,
            accel,
            lat: veh.lat,
            lon: veh.lon,
            distance,
        };
        self.next_reading_id += 1;
        if incident {
            self.incident(v, event_time, incident_type, impact_speed);
        }
        // Delivery.
        let r = &mut self.rng;
        let dice: f64 = r.gen();
        let very_late = dice < self.cfg.very_late_pct;
        let delay = if very_late {
            r.gen_range(300_000..=900_000)
        } else if dice < self.cfg.very_late_pct + self.cfg.late_pct {
            r.gen_range(30_000..=90_000)
        } else if r.gen_range(0..20u32) == 0 {
            r.gen_range(3_000..8_000)
        } else {
            r.gen_range(100..3_000)
        };
        let arrival = event_time + delay;
        let twice =
            !very_late && self.cfg.duplicate_pct > 0.0 && r.gen::<f64>() < self.cfg.duplicate_pct;
        let again = arrival + r.gen_range(200..5_000);
        self.push(arrival, Payload::Reading(reading));
        if twice {
            self.push(again, Payload::Reading(reading));
        }
    }

    // --- claims ---------------------------------------------------------------------------

    /// An incident of vehicle `v` at `at`: the claim is decided now and filed later.
    fn incident(&mut self, v: usize, at: i64, incident_type: u8, impact_speed: i64) {
        let p = self.vehicles[v].policy;
        let r = &mut self.rng;
        let severity = pick(
            r,
            match incident_type {
                0 => &[40, 35, 20, 5],
                1 => &[0, 40, 0, 60],
                2 => &[80, 20, 0, 0],
                _ => &[40, 40, 20, 0],
            },
        );
        let (lo, hi) = AMOUNTS[severity as usize];
        let mut amount = r.gen_range(lo..=hi);
        let mut suspicious = false;
        if severity == 0 && r.gen_range(0..100u32) < 8 {
            // Far too much for a minor damage.
            amount = r.gen_range(900_000..=2_500_000);
            suspicious = true;
        }
        if r.gen_range(0..100u32) < 6 {
            amount = self.policies[p].limit * r.gen_range(105..=160) / 100;
            suspicious = true;
        }
        let reported_speed = if r.gen_range(0..100u32) < 12 {
            suspicious = true;
            if impact_speed >= 4_500 {
                impact_speed - r.gen_range(3_000..=6_000)
            } else {
                impact_speed + r.gen_range(3_000..=5_000)
            }
        } else {
            (impact_speed + r.gen_range(-500..=500)).max(0)
        };
        let filed = at + r.gen_range(60_000..600_000);
        self.claims.push(Claim {
            id: FIRST_CLAIM_ID + self.claims.len() as i64,
            policy: p,
            vehicle: v,
            incident_time: at,
            reported_speed,
            amount,
            incident_type,
            severity,
            status: OPEN,
            paid: 0,
            expense: 0,
            suspicious,
        });
        self.policies[p].claims += 1;
        self.schedule(filed, Action::FileClaim(self.claims.len() - 1));
    }

    fn act(&mut self, action: Action, at: i64) {
        match action {
            Action::FileClaim(c) => {
                self.emit(What::Claim(c), b'c', at);
                let next = at + self.rng.gen_range(30_000..300_000);
                if self.rng.gen_range(0..100u32) < 3 {
                    self.schedule(next, Action::WithdrawClaim(c));
                } else {
                    self.schedule(next, Action::AdjustClaim(c));
                }
            }
            Action::AdjustClaim(c) => {
                let r = &mut self.rng;
                let extra = r.gen_range(5_000..=40_000);
                let next = at + r.gen_range(30_000..300_000);
                // None: still under investigation; else whether it is denied.
                let denied = if r.gen_range(0..100u32) < 30 {
                    None
                } else {
                    let deny = if self.claims[c].suspicious { 45 } else { 10 };
                    Some(r.gen_range(0..100u32) < deny)
                };
                let claim = &mut self.claims[c];
                claim.expense += extra;
                match denied {
                    None => self.schedule(next, Action::AdjustClaim(c)),
                    Some(true) => claim.status = DENIED,
                    Some(false) => {
                        claim.status = APPROVED;
                        self.schedule(next, Action::PayClaim(c));
                    }
                }
                self.emit(What::Claim(c), b'u', at);
            }
            Action::PayClaim(c) => {
                let limit = self.policies[self.claims[c].policy].limit;
                let claim = &mut self.claims[c];
                claim.status = PAID;
                claim.paid = claim.amount.min(limit);
                claim.expense += self.rng.gen_range(1_000..=10_000);
                self.emit(What::Claim(c), b'u', at);
            }
            Action::WithdrawClaim(c) => self.emit(What::Claim(c), b'd', at),
            Action::UpdatePolicy => {
                let v = self.rng.gen_range(0..self.vehicles.len());
                let p = self.vehicles[v].policy;
                let r = &mut self.rng;
                let pol = &mut self.policies[p];
                match r.gen_range(0..20u32) {
                    0..17 => {}
                    17..19 => pol.annual = pol.annual * r.gen_range(80..=120) / 100,
                    _ => {
                        let old = pol.coverage as u32;
                        pol.coverage = ((old + r.gen_range(1..3u32)) % 3) as u8;
                        let (lo, hi) = LIMITS[pol.coverage as usize];
                        pol.limit = r.gen_range(lo..=hi) / 100_000 * 100_000;
                        pol.annual = pol.annual * r.gen_range(90..=130) / 100;
                    }
                }
                pol.earned = earned(pol.annual, pol.start, at);
                self.emit(What::Policy(p), b'u', at);
            }
            Action::ReplacePolicy => {
                let v = self.rng.gen_range(0..self.vehicles.len());
                let old = self.vehicles[v].policy;
                if self.policies[old].claims > 0 {
                    return;
                }
                let region = self.policies[old].region;
                self.emit(What::Policy(old), b'd', at);
                let p = self.new_policy(v, region, at, at);
                self.vehicles[v].policy = p;
                self.emit(What::Policy(p), b'c', at);
            }
        }
    }

    // --- policies -------------------------------------------------------------------------

    fn new_policy(&mut self, vehicle: usize, region: u8, start: i64, now: i64) -> usize {
        let r = &mut self.rng;
        let coverage = pick(r, &[30, 40, 30]);
        let (lo, hi) = LIMITS[coverage as usize];
        let limit = r.gen_range(lo..=hi) / 100_000 * 100_000;
        let annual = r.gen_range(150_000..=600_000);
        self.policies.push(Policy {
            id: FIRST_POLICY_ID + self.policies.len() as i64,
            vehicle,
            region,
            coverage,
            limit,
            annual,
            earned: earned(annual, start, now),
            start,
            claims: 0,
        });
        self.policies.len() - 1
    }

    // --- lines ----------------------------------------------------------------------------

    /// Queues the line of a change committed at `at`; an update may be delivered late.
    fn emit(&mut self, what: What, op: u8, at: i64) {
        let stream = match what {
            What::Policy(_) => TelematicsStream::Policy,
            What::Claim(_) => TelematicsStream::Claim,
        };
        self.lsn += self.rng.gen_range(8..64i64);
        self.tx_id += 1;
        let late = op == b'u'
            && self.cfg.out_of_order_pct > 0.0
            && self.rng.gen::<f64>() < self.cfg.out_of_order_pct;
        let arrival = if late {
            at + self.rng.gen_range(5_000..60_000)
        } else {
            at
        };
        let mut bytes = Vec::new();
        if self.mask & stream.bit() != 0 {
            bytes.reserve(if self.cfg.with_schema { 4096 } else { 640 });
            self.render_change(&mut bytes, stream, what, op, at, arrival);
        }
        self.push(arrival, Payload::Change(stream, bytes));
    }

    fn deliver(&mut self, p: Pending) -> Line {
        match p.payload {
            Payload::Change(stream, bytes) => Line { stream, bytes },
            Payload::Reading(reading) => {
                self.reading_lsn += self.rng.gen_range(8..64i64);
                self.reading_tx_id += 1;
                let stream = TelematicsStream::Reading;
                let mut bytes = Vec::new();
                if self.mask & stream.bit() != 0 {
                    bytes.reserve(if self.cfg.with_schema { 2048 } else { 512 });
                    self.render_reading(&mut bytes, &reading, p.arrival);
                }
                Line { stream, bytes }
            }
        }
    }

    fn render_reading(&self, out: &mut Vec<u8>, r: &Reading, arrival: i64) {
        let stream = TelematicsStream::Reading;
        self.open_envelope(out, stream);
        out.extend_from_slice(b"{\"before\":null,\"after\":{\"reading_id\":");
        push_int(out, r.id);
        out.extend_from_slice(b",\"vehicle_id\":");
        push_int(out, r.vehicle as i64 + 1);
        out.extend_from_slice(b",\"event_time\":");
        push_int(out, r.event_time);
        out.extend_from_slice(b",\"speed_kmh\":");
        push_fixed(out, r.speed, 2);
        out.extend_from_slice(b",\"accel_ms2\":");
        push_fixed(out, r.accel, 2);
        out.extend_from_slice(b",\"lat\":");
        push_fixed(out, r.lat, 6);
        out.extend_from_slice(b",\"lon\":");
        push_fixed(out, r.lon, 6);
        out.extend_from_slice(b",\"distance_m\":");
        push_fixed(out, r.distance, 2);
        out.push(b'}');
        self.close_envelope(
            out,
            stream,
            b'c',
            r.event_time,
            self.reading_tx_id,
            self.reading_lsn,
            arrival,
        );
    }

    fn render_change(
        &self,
        out: &mut Vec<u8>,
        stream: TelematicsStream,
        what: What,
        op: u8,
        at: i64,
        arrival: i64,
    ) {
        self.open_envelope(out, stream);
        if op == b'd' {
            out.extend_from_slice(b"{\"before\":");
            self.render_row(out, what);
            out.extend_from_slice(b",\"after\":null");
        } else {
            out.extend_from_slice(b"{\"before\":null,\"after\":");
            self.render_row(out, what);
        }
        self.close_envelope(out, stream, op, at, self.tx_id, self.lsn, arrival);
    }

    fn open_envelope(&self, out: &mut Vec<u8>, stream: TelematicsStream) {
        if self.cfg.with_schema {
            out.extend_from_slice(b"{\"schema\":");
            out.extend_from_slice(stream.schema_json().as_bytes());
            out.extend_from_slice(b",\"payload\":");
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn close_envelope(
        &self,
        out: &mut Vec<u8>,
        stream: TelematicsStream,
        op: u8,
        source_ts: i64,
        tx_id: i64,
        lsn: i64,
        arrival: i64,
    ) {
        out.extend_from_slice(
            b",\"source\":{\"version\":\"2.7.0.Final\",\"connector\":\"postgresql\",\
              \"name\":\"telematics\",\"ts_ms\":",
        );
        push_int(out, source_ts);
        out.extend_from_slice(if op == b'r' {
            b",\"snapshot\":\"true\""
        } else {
            b",\"snapshot\":\"false\""
        });
        out.extend_from_slice(b",\"db\":\"telematics\",\"schema\":\"");
        out.extend_from_slice(stream.system().as_bytes());
        out.extend_from_slice(b"\",\"table\":\"");
        out.extend_from_slice(stream.name().as_bytes());
        out.extend_from_slice(b"\",\"txId\":");
        push_int(out, tx_id);
        out.extend_from_slice(b",\"lsn\":");
        push_int(out, lsn);
        out.extend_from_slice(b",\"xmin\":null},\"op\":\"");
        out.push(op);
        out.extend_from_slice(b"\",\"ts_ms\":");
        push_int(out, arrival);
        out.extend_from_slice(b",\"transaction\":null}");
        if self.cfg.with_schema {
            out.push(b'}');
        }
    }

    fn render_row(&self, out: &mut Vec<u8>, what: What) {
        match what {
            What::Policy(p) => {
                let pol = &self.policies[p];
                out.extend_from_slice(b"{\"policy_id\":");
                push_int(out, pol.id);
                out.extend_from_slice(b",\"vehicle_id\":");
                push_int(out, pol.vehicle as i64 + 1);
                out.extend_from_slice(b",\"region\":");
                push_str(out, REGIONS[pol.region as usize].0);
                out.extend_from_slice(b",\"coverage\":");
                push_str(out, COVERAGES[pol.coverage as usize]);
                out.extend_from_slice(b",\"coverage_limit_cents\":");
                push_int(out, pol.limit);
                out.extend_from_slice(b",\"annual_premium_cents\":");
                push_int(out, pol.annual);
                out.extend_from_slice(b",\"earned_premium_cents\":");
                push_int(out, pol.earned);
                out.extend_from_slice(b",\"start_time\":");
                push_int(out, pol.start);
                out.push(b'}');
            }
            What::Claim(c) => {
                let claim = &self.claims[c];
                out.extend_from_slice(b"{\"claim_id\":");
                push_int(out, claim.id);
                out.extend_from_slice(b",\"policy_id\":");
                push_int(out, self.policies[claim.policy].id);
                out.extend_from_slice(b",\"vehicle_id\":");
                push_int(out, claim.vehicle as i64 + 1);
                out.extend_from_slice(b",\"incident_time\":");
                push_int(out, claim.incident_time);
                out.extend_from_slice(b",\"reported_speed_kmh\":");
                push_fixed(out, claim.reported_speed, 2);
                out.extend_from_slice(b",\"claim_amount_cents\":");
                push_int(out, claim.amount);
                out.extend_from_slice(b",\"incident_type\":");
                push_str(out, INCIDENT_TYPES[claim.incident_type as usize]);
                out.extend_from_slice(b",\"damage_severity\":");
                push_str(out, SEVERITIES[claim.severity as usize]);
                out.extend_from_slice(b",\"status\":");
                push_str(out, STATUSES[claim.status as usize]);
                out.extend_from_slice(b",\"paid_cents\":");
                push_int(out, claim.paid);
                out.extend_from_slice(b",\"adjustment_expense_cents\":");
                push_int(out, claim.expense);
                out.push(b'}');
            }
        }
    }
}

/// The premium earned by `now` of a policy started at `start` (one-year term).
fn earned(annual: i64, start: i64, now: i64) -> i64 {
    let elapsed = (now - start).clamp(0, YEAR_MS);
    (annual as i128 * elapsed as i128 / YEAR_MS as i128) as i64
}

/// The speed of a new driving regime, centi-km/h: city, rural, highway or stop-and-go.
fn regime_speed(r: &mut ChaCha8Rng) -> i64 {
    match r.gen_range(0..10u32) {
        0..3 => r.gen_range(3_000..5_500),
        3..6 => r.gen_range(6_000..9_500),
        6..9 => r.gen_range(9_500..13_500),
        _ => r.gen_range(0..2_000),
    }
}

/// An index drawn with the given weights.
fn pick(r: &mut ChaCha8Rng, weights: &[u32]) -> u8 {
    let total: u32 = weights.iter().sum();
    let mut x = r.gen_range(0..total);
    for (i, w) in weights.iter().enumerate() {
        if x < *w {
            return i as u8;
        }
        x -= w;
    }
    unreachable!("x < total")
}

/// Appends `v / 10^decimals` with exactly `decimals` decimals (`-4.50`, `0.07`).
fn push_fixed(out: &mut Vec<u8>, v: i64, decimals: u32) {
    let scale = 10i64.pow(decimals);
    if v < 0 {
        out.push(b'-');
    }
    let a = v.unsigned_abs();
    push_int(out, (a / scale as u64) as i64);
    out.push(b'.');
    let frac = (a % scale as u64).to_string();
    for _ in frac.len()..decimals as usize {
        out.push(b'0');
    }
    out.extend_from_slice(frac.as_bytes());
}

// ---------------------------------------------------------------------------------------
// The generator.

/// The deterministic telematics generator of one stream (see the [module docs](self)).
pub struct TelematicsGenerator {
    world: World,
    stream: TelematicsStream,
    position: u64,
}

impl TelematicsGenerator {
    /// Creates the generator of `cfg.stream`.
    pub fn new(cfg: TelematicsGenConfig) -> Self {
        let stream = cfg.stream;
        TelematicsGenerator {
            world: World::new(cfg, stream.bit()),
            stream,
            position: 0,
        }
    }

    /// The configuration this generator was created with.
    pub fn config(&self) -> &TelematicsGenConfig {
        &self.world.cfg
    }

    /// The stream this generator emits.
    pub fn stream(&self) -> TelematicsStream {
        self.stream
    }

    /// Lines of the stream produced so far.
    pub fn position(&self) -> u64 {
        self.position
    }

    /// Appends the next line of the stream (no trailing newline) to `out`; returns false
    /// (and appends nothing) when all lines of the stream have been produced.
    pub fn next_line(&mut self, out: &mut Vec<u8>) -> bool {
        while let Some(line) = self.world.next_line() {
            if line.stream == self.stream {
                out.extend_from_slice(&line.bytes);
                self.position += 1;
                return true;
            }
        }
        false
    }
}

/// Writes all lines of `cfg.stream`, newline-terminated, to `path` (created or truncated);
/// returns the number of bytes written.
pub fn write_file(cfg: &TelematicsGenConfig, path: &Path) -> std::io::Result<u64> {
    let mut gen = TelematicsGenerator::new(cfg.clone());
    write_lines(path, |line| gen.next_line(line))
}

/// The whole world in order: every line of every stream (tests).
#[cfg(test)]
pub(crate) fn world_lines(cfg: &TelematicsGenConfig) -> Vec<(TelematicsStream, Vec<u8>)> {
    let mut world = World::new(cfg.clone(), u8::MAX);
    let mut out = Vec::new();
    while let Some(line) = world.next_line() {
        out.push((line.stream, line.bytes));
    }
    out
}

#[cfg(test)]
mod tests;
