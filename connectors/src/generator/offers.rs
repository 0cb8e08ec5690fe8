//! The deterministic card-offers generator: card customers, their event-attendance patterns
//! (a loyalty programme's "customer attended N concerts" counters) and their card
//! transactions with cash-back, as three Debezium streams of one simulated world.
//!
//! # One world, three streams
//!
//! A single simulation (ChaCha8 seeded with `seed`, integer arithmetic) runs `customers`
//! card customers in simulated time. Every delivered record is one Debezium envelope (one
//! line) of one of three streams ([`OffersStream`]):
//!
//! | stream | table | key | sequence | ops |
//! |---|---|---|---|---|
//! | `customer` | `cards.customers` | `customer_id` | `__lsn` | `r` snapshot, `c`, `u`, `d` (closed account) |
//! | `pattern` | `loyalty.customer_patterns` | `customer_id`, `category` | `datetime_updated` | `c` first attendance, `u` |
//! | `transaction` | `cards.transactions` | `transaction_id` | `__lsn` | `c` only (an append stream) |
//!
//! [`OffersGenConfig::events`] is the number of lines of the **whole world** (all three
//! streams together). An [`OffersGenerator`] emits only the lines of its
//! [`OffersGenConfig::stream`], in world (arrival) order: a pipeline declares three generator
//! sources with the same settings and different `stream`, and the three streams are
//! consistent with each other because they are three views of the same world. The world is a
//! prefix of an endless delivery sequence: the world of `events = n` is the first `n` lines
//! of the world of any larger `events` (same other settings). Every rate below is a fixed
//! rate per customer and simulated day, never scaled by `events`: more events means a
//! longer stretch of simulated time (about 1,000 transactions per simulated day per 2,000
//! live customers; the default world of 2,000 customers and 200,000 lines spans about six
//! months). The world ends early only when it has no customers left (none configured, or
//! every one deleted).
//!
//! # The simulation
//!
//! Simulated time starts at 2026-01-01 00:00:00 UTC. Customer ids are `1..=customers`, in
//! order of creation.
//!
//! 1. **Customers.** Each customer has a name (`First Last`), a segment — `mass` (about
//!    60 %), `affluent` (about 30 %) or `premier` (about 10 %) — and a region (`north`,
//!    `south`, `east`, `west`, `central`). About half of them (`(customers + 1) / 2`) exist
//!    already: they are the snapshot (`op = r`, delivered first, `source.ts_ms` = the start),
//!    with `first_seen` 30–720 days before the start. The others are created (`op = c`) at
//!    times spread uniformly over the first 90 simulated days, `first_seen` = their creation
//!    time. Every live customer is reviewed about every 30 days (20–40): the review upgrades
//!    the segment (`mass` → `affluent` → `premier`) with probability 15 % when the customer
//!    spent a lot per day since the previous review (and 1 % otherwise), downgrades it with
//!    probability 15 % when they spent little (1 % otherwise), and moves the customer to
//!    another region in 3 % of the reviews; a review that changes something is an update
//!    (`op = u`). In 0.2 % of the reviews the customer closes the account: a delete (`op =
//!    d`; about 1 % of the customers per five months). A deleted customer makes no more
//!    transactions and attends no more events (its pattern rows are not deleted: a view that
//!    joins patterns with customers drops them).
//! 2. **Transactions.** Each live customer pays with the card at a fixed rate of their own,
//!    one transaction every 1–3 days on average (2 over all customers), at random times
//!    between 07:00 and midnight. The merchant category is one of `concerts`, `sports`,
//!    `dining`, `travel`, `grocery`, `fuel`, `online`, drawn with weights of the segment
//!    (`premier` spends more often on dining and travel, `mass` mostly on fuel and online);
//!    `concerts` and `travel` are seasonal (0.4× in January and February, up to 2.2× in
//!    July and August, 1.5× in December). The amount (int64 cents) is drawn from the
//!    category's range and scaled by the segment: `mass` × 1, `affluent` × 1.6, `premier`
//!    × 2.6. `cashback_cents` is `amount_cents × rate` rounded down, the card's cash-back
//!    rate being 1 % base, 3 % on `dining` and `grocery`, **5 % on `concerts` and `travel`**
//!    (a promotion), plus 0.5 % for `premier`. Against a fixed interchange income of 1.5 %
//!    of the amount, `mass` customers earn money (about 1.3–1.5 % cash-back, closest to the
//!    line in the summer travel season), `premier` customers lose it every month (over
//!    2 %), and `affluent` customers earn it in the winter and spring months and lose it in
//!    the summer (about 1.4–1.7 %). In the default world (2,000 customers, 200,000 lines:
//!    January to June) `affluent` earns from January to May and loses in June.
//! 3. **Event attendance (patterns).** Each customer has an affinity (a weight) per event
//!    category — `concerts`, `sports`, `dining`, `travel` — with one favourite (weight 60
//!    against 5–20 for the others), and an attendance rate of their own: about 35 % are
//!    casual (an event every 150 days on average), 40 % regular (every 25 days), 25 % fans
//!    (every 8 days). Attendances happen in the category's hours (concerts 19–23, sports
//!    13–21, dining 12–22, travel 06–20). Each attendance upserts the row of the key
//!    (`customer_id`, `category`): `events_attended` + 1, `datetime_updated` = the time of
//!    attendance (the first time `op = c`, later `op = u`), and the customer pays a
//!    transaction in that category at that very moment (`txn_time = datetime_updated`). With
//!    these rates about a third of the customers reach `events_attended >= 5` in at least
//!    one category within six months, and many sit at 3–4. About `reversal_pct` of the
//!    attendances are cancelled or refunded 1 hour to 7 days later: a **reversal**, an
//!    update that decreases `events_attended` by 1 (also from 5 to 4) with a newer
//!    `datetime_updated` (no transaction). `datetime_updated` strictly increases over the
//!    changes of a key (two changes of one key never share it).
//!
//! # Delivery (arrival order)
//!
//! Lines are delivered in order of arrival time (`ts_ms`, the time the pipeline's ingest saw
//! the record; `source.ts_ms` is when it happened: a change's commit time, a transaction's
//! `txn_time`):
//!
//! - **customer changes** arrive when they are committed (in commit order);
//! - **pattern changes** arrive 0.1–1 s after `datetime_updated`, except about `stale_pct`
//!   of them, which arrive 5–120 s late — **after a newer change of the same key has
//!   already been delivered**: the customer checked in at a second event of the category
//!   (a festival's next stage, a double-header, the next course) between the two, 1 s to
//!   (delay − 2 s) later, delivered on time. A late change is stale: APPLY CHANGES by
//!   `datetime_updated` must ignore it, APPLY CHANGES by `__lsn` would wrongly keep it;
//! - **transactions** arrive 0.2–5 s after `txn_time`, except about `late_pct`, which
//!   arrive 1–30 minutes late (out of `txn_time` order);
//! - about `duplicate_pct` of the pattern changes and of the transactions are **delivered
//!   twice**, the second copy 0.2–30 s (pattern) or 1–60 s (transaction) after the first: the
//!   same row and `source.ts_ms`, a new `source.lsn`, `source.txId` and `ts_ms`.
//!
//! `source.lsn` is assigned on arrival, per stream, so it strictly increases in arrival order
//! within each stream (and a late pattern change has a higher LSN than the newer change
//! delivered before it). Every line is its own source transaction (`txId` unique within its
//! stream, `transaction: null`). A customer's creation (or snapshot) line arrives before
//! every transaction and pattern line of that customer; after a customer's delete, lines of
//! the customer can still arrive (a late transaction or a late pattern change from before
//! the delete), but none happened after it.
//!
//! Timestamps (`first_seen`, `datetime_updated`, `txn_time`) are epoch milliseconds
//! (`io.debezium.time.Timestamp` in the schema block; declare them as `timestamp` columns
//! when lines carry no schema block). Money is int64 cents. Strings are plain ASCII that
//! needs no JSON escaping.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use std::cmp::Ordering;
use std::collections::{BTreeMap, BinaryHeap};
use std::fmt;
use std::path::Path;

use super::{push_int, push_str, write_lines};

/// One of the three streams of the offers world (the `stream` of a generator source).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum OffersStream {
    /// Card customers (`"customer"`), CDC.
    #[default]
    Customer,
    /// Event-attendance counters per customer and category (`"pattern"`), CDC sequenced by
    /// `datetime_updated`.
    Pattern,
    /// Card transactions (`"transaction"`), insert-only.
    Transaction,
}

impl OffersStream {
    /// All three streams, in the order of [`OffersStream::index`].
    pub const ALL: [OffersStream; 3] = [
        OffersStream::Customer,
        OffersStream::Pattern,
        OffersStream::Transaction,
    ];

    /// The stream's name (as in a pipeline file's `stream = "…"`).
    pub fn name(self) -> &'static str {
        match self {
            OffersStream::Customer => "customer",
            OffersStream::Pattern => "pattern",
            OffersStream::Transaction => "transaction",
        }
    }

    /// The stream named `name` (see [`OffersStream::name`]).
    pub fn parse(name: &str) -> Option<OffersStream> {
        OffersStream::ALL.into_iter().find(|s| s.name() == name)
    }

    /// The stream names, comma-separated (for error messages).
    pub fn names() -> String {
        OffersStream::ALL.map(|s| s.name()).join(", ")
    }

    /// Position in [`OffersStream::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }

    /// The source table (`source.table` of the envelopes): `customers`,
    /// `customer_patterns`, `transactions`.
    pub fn table(self) -> &'static str {
        match self {
            OffersStream::Customer => "customers",
            OffersStream::Pattern => "customer_patterns",
            OffersStream::Transaction => "transactions",
        }
    }

    /// The source system: `cards` or `loyalty` (`source.schema` of the envelopes).
    pub fn system(self) -> &'static str {
        match self {
            OffersStream::Pattern => "loyalty",
            _ => "cards",
        }
    }

    /// The key columns of the stream's table.
    pub fn keys(self) -> &'static [&'static str] {
        match self {
            OffersStream::Customer => &["customer_id"],
            OffersStream::Pattern => &["customer_id", "category"],
            OffersStream::Transaction => &["transaction_id"],
        }
    }

    /// The column APPLY CHANGES sequences the stream's table by: `__lsn`, except
    /// `datetime_updated` for `pattern` (whose late deliveries are stale).
    pub fn sequence_by(self) -> &'static str {
        match self {
            OffersStream::Pattern => "datetime_updated",
            _ => "__lsn",
        }
    }

    /// The data columns of the stream's rows, in order, with their tidewater type names
    /// (timestamps are epoch milliseconds in the JSON).
    pub fn columns(self) -> &'static [(&'static str, &'static str)] {
        match self {
            OffersStream::Customer => &CUSTOMER_COLUMNS,
            OffersStream::Pattern => &PATTERN_COLUMNS,
            OffersStream::Transaction => &TRANSACTION_COLUMNS,
        }
    }

    /// The Kafka Connect JSON schema of the stream's lines when
    /// [`OffersGenConfig::with_schema`] is set.
    pub fn schema_json(self) -> &'static str {
        match self {
            OffersStream::Customer => CUSTOMER_SCHEMA_JSON,
            OffersStream::Pattern => PATTERN_SCHEMA_JSON,
            OffersStream::Transaction => TRANSACTION_SCHEMA_JSON,
        }
    }

    fn bit(self) -> u8 {
        1 << (self as u8)
    }
}

impl fmt::Display for OffersStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Configuration of the [`OffersGenerator`]. Every field has a default. The three sources of
/// one pipeline must agree on every field except `stream`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct OffersGenConfig {
    /// Seed of the random generator (default 42).
    pub seed: u64,
    /// Lines of the whole world, all three streams together, snapshot included (default
    /// 200_000). The selected stream emits its share ([`OffersGenConfig::total_lines`]).
    pub events: u64,
    /// The stream this generator emits (default `customer`).
    pub stream: OffersStream,
    /// Card customers, about half of them in the snapshot (default 2_000). With none the
    /// world is empty.
    pub customers: u64,
    /// Share of the transactions that arrive 1–30 minutes late (default 0.03).
    pub late_pct: f64,
    /// Share of the attendances whose pattern change arrives 5–120 s late, after a newer
    /// change of the same key (default 0.04).
    pub stale_pct: f64,
    /// Share of the pattern changes and of the transactions delivered twice (default 0.01).
    pub duplicate_pct: f64,
    /// Share of the attendances cancelled or refunded later (a reversal: the count drops by
    /// one; default 0.01).
    pub reversal_pct: f64,
    /// Wrap each line in `{"schema":...,"payload":...}` (default false).
    pub with_schema: bool,
}

impl Default for OffersGenConfig {
    fn default() -> Self {
        OffersGenConfig {
            seed: 42,
            events: 200_000,
            stream: OffersStream::Customer,
            customers: 2_000,
            late_pct: 0.03,
            stale_pct: 0.04,
            duplicate_pct: 0.01,
            reversal_pct: 0.01,
            with_schema: false,
        }
    }
}

impl OffersGenConfig {
    /// The default world with `customers` customers; other fields default. This is what a
    /// pipeline's `keys` sets.
    pub fn scaled(customers: u64) -> Self {
        OffersGenConfig {
            customers,
            ..OffersGenConfig::default()
        }
    }

    /// The number of lines of the selected stream.
    pub fn total_lines(&self) -> u64 {
        self.stream_lines()[self.stream.index()]
    }

    /// The number of lines of every stream (indexed like [`OffersStream::ALL`]); they sum to
    /// `events` (unless the world runs out of customers first). Runs the simulation without
    /// rendering lines.
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

/// The data columns of a `customer` row.
pub const CUSTOMER_COLUMNS: [(&str, &str); 5] = [
    ("customer_id", "int64"),
    ("name", "string"),
    ("segment", "string"),
    ("region", "string"),
    ("first_seen", "timestamp"),
];

/// The data columns of a `pattern` row.
pub const PATTERN_COLUMNS: [(&str, &str); 4] = [
    ("customer_id", "int64"),
    ("category", "string"),
    ("events_attended", "int64"),
    ("datetime_updated", "timestamp"),
];

/// The data columns of a `transaction` row.
pub const TRANSACTION_COLUMNS: [(&str, &str); 6] = [
    ("transaction_id", "int64"),
    ("customer_id", "int64"),
    ("txn_time", "timestamp"),
    ("amount_cents", "int64"),
    ("merchant_category", "string"),
    ("cashback_cents", "int64"),
];

/// The schema block of the `customer` stream.
pub const CUSTOMER_SCHEMA_JSON: &str = debezium_envelope_schema!(
    @prefix "offers.cards.",
    "customers",
    concat!(
        f!("int64", false, "customer_id"),
        ",",
        f!("string", true, "name"),
        ",",
        f!("string", true, "segment"),
        ",",
        f!("string", true, "region"),
        ",",
        f!(ts, true, "first_seen"),
    ),
    ""
);

/// The schema block of the `pattern` stream.
pub const PATTERN_SCHEMA_JSON: &str = debezium_envelope_schema!(
    @prefix "offers.loyalty.",
    "customer_patterns",
    concat!(
        f!("int64", false, "customer_id"),
        ",",
        f!("string", false, "category"),
        ",",
        f!("int64", true, "events_attended"),
        ",",
        f!(ts, true, "datetime_updated"),
    ),
    ""
);

/// The schema block of the `transaction` stream.
pub const TRANSACTION_SCHEMA_JSON: &str = debezium_envelope_schema!(
    @prefix "offers.cards.",
    "transactions",
    concat!(
        f!("int64", false, "transaction_id"),
        ",",
        f!("int64", false, "customer_id"),
        ",",
        f!(ts, true, "txn_time"),
        ",",
        f!("int64", true, "amount_cents"),
        ",",
        f!("string", true, "merchant_category"),
        ",",
        f!("int64", true, "cashback_cents"),
    ),
    ""
);

// ---------------------------------------------------------------------------------------
// Vocabulary and constants.

const SEGMENTS: [&str; 3] = ["mass", "affluent", "premier"];
const MASS: u8 = 0;
const PREMIER: u8 = 2;
/// Segment shares, percent.
const SEGMENT_WEIGHTS: [u32; 3] = [60, 30, 10];
/// Amounts of a segment, percent of the category's range.
const SEGMENT_SPEND_PCT: [i64; 3] = [100, 160, 260];
/// A review upgrades more likely at a spend per day (cents, since the previous review) of at
/// least this (per segment; `premier` has no higher segment).
const UPGRADE_SPEND_PER_DAY: [i64; 3] = [6_500, 11_000, i64::MAX];
/// A review downgrades more likely at a spend per day below this (`mass` has no lower one).
const DOWNGRADE_SPEND_PER_DAY: [i64; 3] = [i64::MIN, 5_500, 9_000];

const REGIONS: [&str; 5] = ["north", "south", "east", "west", "central"];

/// Merchant categories; the first four are also the event (pattern) categories.
const CATEGORIES: [&str; 7] = [
    "concerts", "sports", "dining", "travel", "grocery", "fuel", "online",
];
/// The event categories: indexes 0..EVENT_CATEGORIES of [`CATEGORIES`].
const EVENT_CATEGORIES: usize = 4;
const CONCERTS: usize = 0;
const TRAVEL: usize = 3;
/// Cash-back rate per category, basis points (1/100 %).
const CASHBACK_BP: [i64; 7] = [500, 100, 300, 500, 300, 100, 100];
/// Extra cash-back of `premier` cards, basis points.
const PREMIER_EXTRA_BP: i64 = 50;
/// Weights of the categories of a regular transaction, per segment.
const CATEGORY_WEIGHTS: [[u32; 7]; 3] = [
    [1, 3, 3, 1, 6, 42, 44],
    [2, 4, 5, 2, 8, 37, 42],
    [3, 4, 10, 4, 10, 27, 42],
];
/// Seasonal factor of `concerts` and `travel` per calendar month, percent.
const SEASON_PCT: [u32; 12] = [40, 40, 70, 100, 100, 160, 220, 220, 100, 70, 60, 150];
/// Amount range of a regular transaction per category, cents (`mass`).
const AMOUNTS: [(i64, i64); 7] = [
    (3_000, 12_000),
    (1_500, 7_000),
    (1_500, 7_000),
    (6_000, 30_000),
    (1_000, 6_000),
    (3_000, 11_000),
    (1_500, 26_000),
];
/// Amount range of the transaction at an attended event per event category, cents (`mass`).
const EVENT_AMOUNTS: [(i64, i64); EVENT_CATEGORIES] = [
    (2_000, 8_000),
    (1_500, 6_000),
    (2_000, 7_000),
    (5_000, 20_000),
];
/// Hours (UTC) of attendances per event category: start hour and length in hours.
const EVENT_HOURS: [(i64, i64); EVENT_CATEGORIES] = [(19, 4), (13, 8), (12, 10), (6, 14)];
/// Attendance classes: share percent and mean days between two attendances.
const ATTENDANCE_CLASSES: [(u32, i64); 3] = [(35, 150), (40, 25), (25, 8)];

const FIRST_NAMES: [&str; 32] = [
    "Ada", "Ben", "Clara", "David", "Emma", "Felix", "Grace", "Hugo", "Ines", "Jonas", "Karla",
    "Leo", "Mia", "Noah", "Olga", "Paul", "Quinn", "Rosa", "Sam", "Tara", "Ugo", "Vera", "Will",
    "Xenia", "Yusuf", "Zoe", "Anna", "Omar", "Lena", "Ivan", "Nora", "Tom",
];
const LAST_NAMES: [&str; 32] = [
    "Adams", "Berger", "Costa", "Dubois", "Evans", "Fischer", "Garcia", "Hansen", "Ivanov",
    "Jensen", "Klein", "Lopez", "Martin", "Novak", "Olsen", "Petrov", "Quist", "Rossi", "Schmidt",
    "Torres", "Ueda", "Vargas", "Weber", "Xu", "Young", "Zimmer", "Brown", "Silva", "Khan",
    "Murphy", "Nagy", "Kowalski",
];

/// 2026-01-01 00:00:00 UTC.
const START_TS_MS: i64 = 1_767_225_600_000;
const SECOND_MS: i64 = 1_000;
const MINUTE_MS: i64 = 60 * SECOND_MS;
const HOUR_MS: i64 = 60 * MINUTE_MS;
const DAY_MS: i64 = 24 * HOUR_MS;
/// Customers not in the snapshot are created within this time after the start.
const CREATION_SPAN_MS: i64 = 90 * DAY_MS;
/// Reviews per thousand that close the account.
const DELETE_PER_MILLE: u32 = 2;
const FIRST_TRANSACTION_ID: i64 = 1_000_001;
/// First `source.lsn` and `source.txId` per stream (indexed like [`OffersStream::ALL`]).
const START_LSN: [i64; 3] = [71_000_000, 310_000_000, 520_000_000];
const START_TX_ID: [i64; 3] = [12_000, 30_000, 50_000_000];

// ---------------------------------------------------------------------------------------
// The world.

struct Customer {
    id: i64,
    first_name: u8,
    last_name: u8,
    segment: u8,
    region: u8,
    first_seen: i64,
    /// Created (or in the snapshot) and not deleted.
    live: bool,
    /// Mean time between two regular transactions, ms.
    txn_every: i64,
    /// Mean time between two attendances, ms.
    attend_every: i64,
    /// Affinity per event category.
    affinity: [u32; EVENT_CATEGORIES],
    /// `events_attended` per event category.
    attended: [i64; EVENT_CATEGORIES],
    /// `datetime_updated` of the last change per event category (0: no row yet).
    updated: [i64; EVENT_CATEGORIES],
    /// Spent since the previous review, cents.
    spent: i64,
    last_review: i64,
}

/// A change of the simulated systems, due at a time.
#[derive(Clone, Copy)]
enum Action {
    /// A customer not in the snapshot opens an account.
    Create(usize),
    /// A regular transaction.
    Pay(usize),
    /// An attendance in an event category.
    Attend(usize, usize),
    /// The second check-in that overtakes a late pattern change.
    CheckInAgain(usize, usize),
    /// A cancelled or refunded attendance.
    Reverse(usize, usize),
    /// The periodic review (segment, region, account closure).
    Review(usize),
}

/// A customer row as of a change.
#[derive(Clone, Copy)]
struct CustomerRow {
    id: i64,
    first_name: u8,
    last_name: u8,
    segment: u8,
    region: u8,
    first_seen: i64,
}

/// A pattern row as of a change.
#[derive(Clone, Copy)]
struct PatternRow {
    customer_id: i64,
    category: u8,
    attended: i64,
    updated: i64,
}

#[derive(Clone, Copy)]
struct TransactionRow {
    id: i64,
    customer_id: i64,
    time: i64,
    amount: i64,
    category: u8,
    cashback: i64,
}

/// What a line carries (rendered when delivered).
#[derive(Clone, Copy)]
enum Payload {
    /// A customer change committed at `at`.
    Customer {
        op: u8,
        at: i64,
        row: CustomerRow,
    },
    Pattern {
        op: u8,
        row: PatternRow,
    },
    Transaction(TransactionRow),
}

impl Payload {
    fn stream(&self) -> OffersStream {
        match self {
            Payload::Customer { .. } => OffersStream::Customer,
            Payload::Pattern { .. } => OffersStream::Pattern,
            Payload::Transaction(_) => OffersStream::Transaction,
        }
    }
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
    stream: OffersStream,
    bytes: Vec<u8>,
}

/// The simulation; renders the lines of the streams in `mask` (a bit per stream) and leaves
/// the others empty. The random sequences do not depend on `mask`.
struct World {
    cfg: OffersGenConfig,
    mask: u8,
    /// Draws of the simulation.
    rng: ChaCha8Rng,
    /// Draws of the delivery (LSN steps), apart so that they do not shift the simulation.
    lsn_rng: ChaCha8Rng,
    customers: Vec<Customer>,
    /// Actions due later, by (time, seq).
    scheduled: BTreeMap<(i64, u64), Action>,
    /// Lines generated and not yet delivered.
    pending: BinaryHeap<Pending>,
    seq: u64,
    next_transaction_id: i64,
    /// Last `source.lsn` and `source.txId` per stream.
    lsn: [i64; 3],
    tx_id: [i64; 3],
    /// World lines delivered.
    position: u64,
}

impl World {
    fn new(cfg: OffersGenConfig, mask: u8) -> World {
        let mut w = World {
            rng: ChaCha8Rng::seed_from_u64(cfg.seed),
            lsn_rng: ChaCha8Rng::seed_from_u64(cfg.seed ^ 0x0FFE_2500_15A7_C0DE),
            mask,
            customers: Vec::new(),
            scheduled: BTreeMap::new(),
            pending: BinaryHeap::new(),
            seq: 0,
            next_transaction_id: FIRST_TRANSACTION_ID,
            lsn: START_LSN,
            tx_id: START_TX_ID,
            position: 0,
            cfg,
        };
        let n = w.cfg.customers as usize;
        let snapshot = n.div_ceil(2);
        // The creation times of the others, in order (ids follow creation).
        let mut created: Vec<i64> = (snapshot..n)
            .map(|_| START_TS_MS + w.rng.gen_range(MINUTE_MS..=CREATION_SPAN_MS))
            .collect();
        created.sort_unstable();
        for c in 0..n {
            let customer = w.new_customer(c);
            w.customers.push(customer);
            if c < snapshot {
                let r = &mut w.rng;
                let first_seen = START_TS_MS - r.gen_range(30 * DAY_MS..=720 * DAY_MS);
                w.customers[c].first_seen = first_seen;
                w.customers[c].live = true;
                w.customers[c].last_review = START_TS_MS;
                let row = w.customer_row(c);
                w.push(
                    START_TS_MS,
                    Payload::Customer {
                        op: b'r',
                        at: START_TS_MS,
                        row,
                    },
                );
                w.plan_customer(c, START_TS_MS);
            } else {
                w.schedule(created[c - snapshot], Action::Create(c));
            }
        }
        w
    }

    /// A customer's settings (not yet live).
    fn new_customer(&mut self, c: usize) -> Customer {
        let r = &mut self.rng;
        let favourite = r.gen_range(0..EVENT_CATEGORIES);
        let mut affinity = [0u32; EVENT_CATEGORIES];
        for (i, a) in affinity.iter_mut().enumerate() {
            *a = if i == favourite {
                60
            } else {
                r.gen_range(5..=20)
            };
        }
        let class = pick(r, &ATTENDANCE_CLASSES.map(|(share, _)| share));
        Customer {
            id: c as i64 + 1,
            first_name: r.gen_range(0..FIRST_NAMES.len()) as u8,
            last_name: r.gen_range(0..LAST_NAMES.len()) as u8,
            segment: pick(r, &SEGMENT_WEIGHTS) as u8,
            region: r.gen_range(0..REGIONS.len()) as u8,
            first_seen: 0,
            live: false,
            txn_every: r.gen_range(DAY_MS..=3 * DAY_MS),
            attend_every: ATTENDANCE_CLASSES[class].1 * DAY_MS,
            affinity,
            attended: [0; EVENT_CATEGORIES],
            updated: [0; EVENT_CATEGORIES],
            spent: 0,
            last_review: 0,
        }
    }

    /// Schedules the first transaction, attendance and review of customer `c`, live from
    /// `at` on.
    fn plan_customer(&mut self, c: usize, at: i64) {
        let pay = self.next_payment(c, at);
        self.schedule(pay, Action::Pay(c));
        let (attend, category) = self.next_attendance(c, at);
        self.schedule(attend, Action::Attend(c, category));
        let review = at + self.rng.gen_range(20 * DAY_MS..=40 * DAY_MS);
        self.schedule(review, Action::Review(c));
    }

    /// The time of the customer's next regular transaction after `at`: between a quarter
    /// and 1.75 times the customer's mean interval later, moved out of the night.
    fn next_payment(&mut self, c: usize, at: i64) -> i64 {
        let every = self.customers[c].txn_every;
        let t = at + self.rng.gen_range(every / 4..=every * 7 / 4);
        if t.rem_euclid(DAY_MS) < 7 * HOUR_MS {
            t + 7 * HOUR_MS
        } else {
            t
        }
    }

    /// The time and category of the customer's next attendance after `at`: a day between a
    /// quarter and 1.75 times the customer's mean interval later (at least the next day), at
    /// an hour of the category.
    fn next_attendance(&mut self, c: usize, at: i64) -> (i64, usize) {
        let cust = &self.customers[c];
        let every = cust.attend_every;
        let affinity = cust.affinity;
        let r = &mut self.rng;
        let category = pick(r, &affinity);
        let later = r.gen_range(every / 4..=every * 7 / 4).max(DAY_MS);
        let day = (at + later).div_euclid(DAY_MS) * DAY_MS;
        let (hour, hours) = EVENT_HOURS[category];
        let t = day + hour * HOUR_MS + r.gen_range(0..hours * HOUR_MS);
        (t, category)
    }

    fn customer_row(&self, c: usize) -> CustomerRow {
        let cust = &self.customers[c];
        CustomerRow {
            id: cust.id,
            first_name: cust.first_name,
            last_name: cust.last_name,
            segment: cust.segment,
            region: cust.region,
            first_seen: cust.first_seen,
        }
    }

    /// The next world line; `None` after `events` lines (or when the world has ended).
    fn next_line(&mut self) -> Option<Line> {
        if self.position >= self.cfg.events {
            return None;
        }
        loop {
            let due = self.scheduled.first_key_value().map(|(k, _)| k.0);
            match (self.pending.peek(), due) {
                // Every action due later produces lines arriving at its time or later, and
                // (at an equal arrival) with a higher seq: this line comes first.
                (Some(p), Some(t)) if p.arrival <= t => break,
                (Some(_), None) => break,
                (None, None) => return None,
                _ => {
                    let ((at, _), action) = self.scheduled.pop_first().expect("an action");
                    self.act(action, at);
                }
            }
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

    fn act(&mut self, action: Action, at: i64) {
        match action {
            Action::Create(c) => {
                let cust = &mut self.customers[c];
                cust.live = true;
                cust.first_seen = at;
                cust.last_review = at;
                let row = self.customer_row(c);
                self.push(at, Payload::Customer { op: b'c', at, row });
                self.plan_customer(c, at);
            }
            Action::Pay(c) => {
                if !self.customers[c].live {
                    return;
                }
                let category = self.regular_category(c, at);
                let (lo, hi) = AMOUNTS[category];
                let amount = self.rng.gen_range(lo..=hi);
                self.pay(c, category, amount, at);
                let next = self.next_payment(c, at);
                self.schedule(next, Action::Pay(c));
            }
            Action::Attend(c, category) => {
                if !self.customers[c].live {
                    return;
                }
                self.attend(c, category, at, false);
                let (next, category) = self.next_attendance(c, at);
                self.schedule(next, Action::Attend(c, category));
            }
            Action::CheckInAgain(c, category) => {
                if self.customers[c].live {
                    self.attend(c, category, at, true);
                }
            }
            Action::Reverse(c, category) => {
                let cust = &mut self.customers[c];
                if !cust.live || cust.attended[category] == 0 {
                    return;
                }
                let at = at.max(cust.updated[category] + 1);
                cust.attended[category] -= 1;
                cust.updated[category] = at;
                let row = self.pattern_row(c, category);
                self.deliver_pattern(b'u', row, false);
            }
            Action::Review(c) => {
                if self.customers[c].live {
                    self.review(c, at);
                }
            }
        }
    }

    // --- attendance -----------------------------------------------------------------------

    /// Customer `c` attends an event of `category` at `at` (or just after the key's last
    /// change): the pattern row counts it and the customer pays there. `again` is the
    /// second check-in that overtakes a late change (never late nor reversed itself).
    fn attend(&mut self, c: usize, category: usize, at: i64, again: bool) {
        let cust = &mut self.customers[c];
        let at = at.max(cust.updated[category] + 1);
        let op = if cust.updated[category] == 0 {
            b'c'
        } else {
            b'u'
        };
        cust.attended[category] += 1;
        cust.updated[category] = at;
        let row = self.pattern_row(c, category);
        let r = &mut self.rng;
        let late = !again && r.gen::<f64>() < self.cfg.stale_pct;
        let reversed = !again && r.gen::<f64>() < self.cfg.reversal_pct;
        if reversed {
            let when = at + r.gen_range(HOUR_MS..=7 * DAY_MS);
            self.schedule(when, Action::Reverse(c, category));
        }
        self.deliver_pattern(op, row, late);
        let (lo, hi) = EVENT_AMOUNTS[category];
        let amount = self.rng.gen_range(lo..=hi);
        self.pay(c, category, amount, at);
    }

    fn pattern_row(&self, c: usize, category: usize) -> PatternRow {
        let cust = &self.customers[c];
        PatternRow {
            customer_id: cust.id,
            category: category as u8,
            attended: cust.attended[category],
            updated: cust.updated[category],
        }
    }

    /// Queues a pattern change; a `late` one arrives 5–120 s late, after a second check-in
    /// of the same key that is delivered on time.
    fn deliver_pattern(&mut self, op: u8, row: PatternRow, late: bool) {
        let at = row.updated;
        let r = &mut self.rng;
        let arrival = if late {
            let delay = r.gen_range(5 * SECOND_MS..=120 * SECOND_MS);
            // Arrives at most 1 s after it happens: before the late one.
            let again = at + r.gen_range(SECOND_MS..=delay - 2 * SECOND_MS);
            let c = row.customer_id as usize - 1;
            self.schedule(again, Action::CheckInAgain(c, row.category as usize));
            at + delay
        } else {
            at + r.gen_range(100..=SECOND_MS)
        };
        let r = &mut self.rng;
        let twice = r.gen::<f64>() < self.cfg.duplicate_pct;
        let again = arrival + r.gen_range(200..=30 * SECOND_MS);
        self.push(arrival, Payload::Pattern { op, row });
        if twice {
            self.push(again, Payload::Pattern { op, row });
        }
    }

    // --- transactions ---------------------------------------------------------------------

    /// The merchant category of a regular transaction of customer `c` at `at`.
    fn regular_category(&mut self, c: usize, at: i64) -> usize {
        let season = SEASON_PCT[month_of(at) as usize - 1];
        let mut weights = CATEGORY_WEIGHTS[self.customers[c].segment as usize].map(|w| w * 100);
        weights[CONCERTS] = weights[CONCERTS] * season / 100;
        weights[TRAVEL] = weights[TRAVEL] * season / 100;
        pick(&mut self.rng, &weights)
    }

    /// Customer `c` pays `base` cents (`mass` level; scaled by the segment) in `category` at
    /// `at`.
    fn pay(&mut self, c: usize, category: usize, base: i64, at: i64) {
        let cust = &mut self.customers[c];
        let amount = base * SEGMENT_SPEND_PCT[cust.segment as usize] / 100;
        let mut bp = CASHBACK_BP[category];
        if cust.segment == PREMIER {
            bp += PREMIER_EXTRA_BP;
        }
        cust.spent += amount;
        let row = TransactionRow {
            id: self.next_transaction_id,
            customer_id: cust.id,
            time: at,
            amount,
            category: category as u8,
            cashback: amount * bp / 10_000,
        };
        self.next_transaction_id += 1;
        let r = &mut self.rng;
        let arrival = if r.gen::<f64>() < self.cfg.late_pct {
            at + r.gen_range(MINUTE_MS..=30 * MINUTE_MS)
        } else {
            at + r.gen_range(200..=5 * SECOND_MS)
        };
        let twice = r.gen::<f64>() < self.cfg.duplicate_pct;
        let again = arrival + r.gen_range(SECOND_MS..=MINUTE_MS);
        self.push(arrival, Payload::Transaction(row));
        if twice {
            self.push(again, Payload::Transaction(row));
        }
    }

    // --- customers ------------------------------------------------------------------------

    /// The periodic review of customer `c`: maybe a closed account, a segment change or a
    /// move; then the next review.
    fn review(&mut self, c: usize, at: i64) {
        let r = &mut self.rng;
        if r.gen_range(0..1000u32) < DELETE_PER_MILLE {
            let row = self.customer_row(c);
            self.customers[c].live = false;
            self.push(at, Payload::Customer { op: b'd', at, row });
            return;
        }
        let cust = &mut self.customers[c];
        let days = ((at - cust.last_review) / DAY_MS).max(1);
        let per_day = cust.spent / days;
        let seg = cust.segment as usize;
        let up = if per_day >= UPGRADE_SPEND_PER_DAY[seg] {
            15
        } else {
            1
        };
        let down = if per_day < DOWNGRADE_SPEND_PER_DAY[seg] {
            15
        } else {
            1
        };
        let mut changed = false;
        let dice = r.gen_range(0..100u32);
        if dice < up && cust.segment < PREMIER {
            cust.segment += 1;
            changed = true;
        } else if dice >= 100 - down && cust.segment > MASS {
            cust.segment -= 1;
            changed = true;
        }
        if r.gen_range(0..100u32) < 3 {
            cust.region =
                ((cust.region as usize + r.gen_range(1..REGIONS.len())) % REGIONS.len()) as u8;
            changed = true;
        }
        cust.spent = 0;
        cust.last_review = at;
        if changed {
            let row = self.customer_row(c);
            self.push(at, Payload::Customer { op: b'u', at, row });
        }
        let next = at + self.rng.gen_range(20 * DAY_MS..=40 * DAY_MS);
        self.schedule(next, Action::Review(c));
    }

    // --- lines ----------------------------------------------------------------------------

    fn deliver(&mut self, p: Pending) -> Line {
        let stream = p.payload.stream();
        let i = stream.index();
        self.lsn[i] += self.lsn_rng.gen_range(8..64i64);
        self.tx_id[i] += 1;
        let mut bytes = Vec::new();
        if self.mask & stream.bit() != 0 {
            bytes.reserve(if self.cfg.with_schema { 3072 } else { 512 });
            self.render(&mut bytes, &p);
        }
        Line { stream, bytes }
    }

    fn render(&self, out: &mut Vec<u8>, p: &Pending) {
        let stream = p.payload.stream();
        if self.cfg.with_schema {
            out.extend_from_slice(b"{\"schema\":");
            out.extend_from_slice(stream.schema_json().as_bytes());
            out.extend_from_slice(b",\"payload\":");
        }
        let (op, source_ts) = match p.payload {
            Payload::Customer { op, at, row } => {
                if op == b'd' {
                    out.extend_from_slice(b"{\"before\":");
                    render_customer(out, &row);
                    out.extend_from_slice(b",\"after\":null");
                } else {
                    out.extend_from_slice(b"{\"before\":null,\"after\":");
                    render_customer(out, &row);
                }
                (op, at)
            }
            Payload::Pattern { op, row } => {
                out.extend_from_slice(b"{\"before\":null,\"after\":{\"customer_id\":");
                push_int(out, row.customer_id);
                out.extend_from_slice(b",\"category\":");
                push_str(out, CATEGORIES[row.category as usize]);
                out.extend_from_slice(b",\"events_attended\":");
                push_int(out, row.attended);
                out.extend_from_slice(b",\"datetime_updated\":");
                push_int(out, row.updated);
                out.push(b'}');
                (op, row.updated)
            }
            Payload::Transaction(t) => {
                out.extend_from_slice(b"{\"before\":null,\"after\":{\"transaction_id\":");
                push_int(out, t.id);
                out.extend_from_slice(b",\"customer_id\":");
                push_int(out, t.customer_id);
                out.extend_from_slice(b",\"txn_time\":");
                push_int(out, t.time);
                out.extend_from_slice(b",\"amount_cents\":");
                push_int(out, t.amount);
                out.extend_from_slice(b",\"merchant_category\":");
                push_str(out, CATEGORIES[t.category as usize]);
                out.extend_from_slice(b",\"cashback_cents\":");
                push_int(out, t.cashback);
                out.push(b'}');
                (b'c', t.time)
            }
        };
        let i = stream.index();
        out.extend_from_slice(
            b",\"source\":{\"version\":\"2.7.0.Final\",\"connector\":\"postgresql\",\
              \"name\":\"offers\",\"ts_ms\":",
        );
        push_int(out, source_ts);
        out.extend_from_slice(if op == b'r' {
            b",\"snapshot\":\"true\""
        } else {
            b",\"snapshot\":\"false\""
        });
        out.extend_from_slice(b",\"db\":\"offers\",\"schema\":\"");
        out.extend_from_slice(stream.system().as_bytes());
        out.extend_from_slice(b"\",\"table\":\"");
        out.extend_from_slice(stream.table().as_bytes());
        out.extend_from_slice(b"\",\"txId\":");
        push_int(out, self.tx_id[i]);
        out.extend_from_slice(b",\"lsn\":");
        push_int(out, self.lsn[i]);
        out.extend_from_slice(b",\"xmin\":null},\"op\":\"");
        out.push(op);
        out.extend_from_slice(b"\",\"ts_ms\":");
        push_int(out, p.arrival);
        out.extend_from_slice(b",\"transaction\":null}");
        if self.cfg.with_schema {
            out.push(b'}');
        }
    }
}

fn render_customer(out: &mut Vec<u8>, row: &CustomerRow) {
    out.extend_from_slice(b"{\"customer_id\":");
    push_int(out, row.id);
    out.extend_from_slice(b",\"name\":\"");
    out.extend_from_slice(FIRST_NAMES[row.first_name as usize].as_bytes());
    out.push(b' ');
    out.extend_from_slice(LAST_NAMES[row.last_name as usize].as_bytes());
    out.extend_from_slice(b"\",\"segment\":");
    push_str(out, SEGMENTS[row.segment as usize]);
    out.extend_from_slice(b",\"region\":");
    push_str(out, REGIONS[row.region as usize]);
    out.extend_from_slice(b",\"first_seen\":");
    push_int(out, row.first_seen);
    out.push(b'}');
}

/// An index drawn with the given weights.
fn pick(r: &mut ChaCha8Rng, weights: &[u32]) -> usize {
    let total: u32 = weights.iter().sum();
    let mut x = r.gen_range(0..total);
    for (i, w) in weights.iter().enumerate() {
        if x < *w {
            return i;
        }
        x -= w;
    }
    unreachable!("x < total")
}

/// The calendar month (1–12, UTC) of an epoch-milliseconds timestamp.
fn month_of(ts: i64) -> u32 {
    year_month(ts).1
}

/// The calendar year and month (1–12, UTC) of an epoch-milliseconds timestamp (the civil
/// calendar from a day count, after Howard Hinnant's `civil_from_days`).
fn year_month(ts: i64) -> (i64, u32) {
    let z = ts.div_euclid(DAY_MS) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month as u32)
}

// ---------------------------------------------------------------------------------------
// The generator.

/// The deterministic offers generator of one stream (see the [module docs](self)).
pub struct OffersGenerator {
    world: World,
    stream: OffersStream,
    position: u64,
}

impl OffersGenerator {
    /// Creates the generator of `cfg.stream`.
    pub fn new(cfg: OffersGenConfig) -> Self {
        let stream = cfg.stream;
        OffersGenerator {
            world: World::new(cfg, stream.bit()),
            stream,
            position: 0,
        }
    }

    /// The configuration this generator was created with.
    pub fn config(&self) -> &OffersGenConfig {
        &self.world.cfg
    }

    /// The stream this generator emits.
    pub fn stream(&self) -> OffersStream {
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
pub fn write_file(cfg: &OffersGenConfig, path: &Path) -> std::io::Result<u64> {
    let mut gen = OffersGenerator::new(cfg.clone());
    write_lines(path, |line| gen.next_line(line))
}

/// The whole world in order: every line of every stream (tests).
#[cfg(test)]
pub(crate) fn world_lines(cfg: &OffersGenConfig) -> Vec<(OffersStream, Vec<u8>)> {
    let mut world = World::new(cfg.clone(), u8::MAX);
    let mut out = Vec::new();
    while let Some(line) = world.next_line() {
        out.push((line.stream, line.bytes));
    }
    out
}

#[cfg(test)]
mod tests;
