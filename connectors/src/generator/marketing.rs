//! The deterministic marketing-engagement generator (issue 7): Fivetran-style Salesforce and
//! Marketo tables as six Debezium CDC streams of one simulated world.
//!
//! # One world, six streams
//!
//! A single simulation (ChaCha8 seeded with `seed`, integer arithmetic) runs a small company's
//! CRM and marketing automation: Salesforce accounts and users change, Marketo leads are
//! created, updated and merged, and email campaigns send emails that leads open and click.
//! Every change is one Debezium envelope (one line) of one of six streams
//! ([`MarketingStream`]):
//!
//! | stream | table | key | deletes |
//! |---|---|---|---|
//! | `account` | Salesforce `account` | `id` (string) | soft: `_fivetran_deleted = true` (an `u`) |
//! | `user` | Salesforce `user` | `id` (string) | soft: `_fivetran_deleted = true` (an `u`) |
//! | `lead` | Marketo `lead` | `id` (int64) | hard: a merged-away lead is `op = d` |
//! | `activity_send_email` | Marketo activity | `id` (int64) | never |
//! | `activity_open_email` | Marketo activity | `id` (int64) | never |
//! | `activity_click_email` | Marketo activity | `id` (int64) | never |
//!
//! [`MarketingGenConfig::events`] is the number of lines of the **whole world** (all six
//! streams together). A [`MarketingGenerator`] emits only the lines of its
//! [`MarketingGenConfig::stream`], in world order: a pipeline declares six generator sources
//! with the same settings and different `stream`, and the six streams are consistent with each
//! other because they are six views of the same world. Each stream's line count is known up
//! front ([`MarketingGenConfig::total_lines`], which runs the simulation without rendering).
//!
//! # The simulation
//!
//! 1. **Snapshot** (`op = r`): `accounts` accounts, then `users` users (most with an account
//!    and an e-mail address at the account's domain), then `leads` leads; lead `i` of the
//!    first `users` is the Marketo lead of user `i` (same e-mail, sometimes with other
//!    capitalisation, so joins use `lower(email)`), the others are prospects.
//! 2. **Changes**, one world step at a time (a step emits one or a few lines):
//!    - accounts: updates (about a third move the billing country, sometimes to NULL), new
//!      accounts, soft deletes;
//!    - users: e-mail changes, moves to another account, title and `is_active` changes, new
//!      users (usually with a new lead), soft deletes;
//!    - leads: updates (some copy their user's current e-mail), new leads — a quarter of them
//!      duplicates of an existing lead's e-mail, which are **merged** later: the newer lead
//!      (the loser) is deleted (`op = d`) and the winner updated;
//!    - half of the new leads get a welcome e-mail right away (an `activity_send_email`);
//!    - campaigns send an e-mail to a batch of 1–4 live leads (`activity_send_email`), leads
//!      open recent sends (`activity_open_email`) and click them, mostly after opening
//!      (`activity_click_email`); Fivetran re-syncs a recent activity now and then (the same
//!      row again with a later `_fivetran_synced` and a higher LSN, `op = u`).
//! 3. **Delivery**: about `late_pct` of the activities and `5 × late_pct` of the new leads
//!    are held back and delivered `late_distance` world lines later (so they are out of order
//!    in `__lsn` and `activity_date`, and an activity — a welcome e-mail, say — may arrive
//!    before its lead: "not yet seen"), and about
//!    `duplicate_pct` of the activity lines are delivered twice (an exact byte copy, a few
//!    lines later). Near the end held lines are released early, so every held line is
//!    delivered.
//!
//! **Merged leads and their activities.** Marketo activities are immutable events: an
//! activity keeps the `lead_id` it happened to, also after that lead is merged away. After
//! the merge no new activity refers to the loser (its pending sends are neither opened nor
//! clicked), and the loser's earlier activities refer to a deleted lead — models that join
//! activities with `lead` (as `fct_email_opens` does) drop them, so a deleted lead's
//! activities disappear from the joined views. Some late activities of a loser are even
//! delivered after its delete.
//!
//! `email_send_id` identifies one e-mail sent to one lead, built like the dbt `marketo`
//! package builds it: `<email_template_id>-<campaign_id>-<campaign_run_id>-<lead_id>`; an
//! open or click carries the `email_send_id` of the send it belongs to (a click without an
//! open is possible).
//!
//! Timestamps (`*_date`, `created_at`, `updated_at`, `activity_date`, `_fivetran_synced`) are
//! epoch milliseconds (`io.debezium.time.Timestamp` in the schema block; declare them as
//! `timestamp` columns when lines carry no schema block). Strings are plain ASCII that needs
//! no JSON escaping. Every line is its own source transaction (`txId` increasing,
//! `transaction: null`); LSNs increase in world order across all streams.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use std::fmt;
use std::path::Path;

use super::{push_int, push_str, write_lines};

/// One of the six streams of the marketing world (the `stream` of a generator source).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum MarketingStream {
    /// Salesforce `account` (`"account"`).
    #[default]
    Account,
    /// Salesforce `user` (`"user"`).
    User,
    /// Marketo `lead` (`"lead"`).
    Lead,
    /// Marketo `activity_send_email` (`"activity_send_email"`).
    ActivitySendEmail,
    /// Marketo `activity_open_email` (`"activity_open_email"`).
    ActivityOpenEmail,
    /// Marketo `activity_click_email` (`"activity_click_email"`).
    ActivityClickEmail,
}

impl MarketingStream {
    /// All six streams, in the order of [`MarketingStream::index`].
    pub const ALL: [MarketingStream; 6] = [
        MarketingStream::Account,
        MarketingStream::User,
        MarketingStream::Lead,
        MarketingStream::ActivitySendEmail,
        MarketingStream::ActivityOpenEmail,
        MarketingStream::ActivityClickEmail,
    ];

    /// The stream's name (as in a pipeline file's `stream = "…"`), which is also the name of
    /// its source table (`source.table` of the envelopes).
    pub fn name(self) -> &'static str {
        match self {
            MarketingStream::Account => "account",
            MarketingStream::User => "user",
            MarketingStream::Lead => "lead",
            MarketingStream::ActivitySendEmail => "activity_send_email",
            MarketingStream::ActivityOpenEmail => "activity_open_email",
            MarketingStream::ActivityClickEmail => "activity_click_email",
        }
    }

    /// The stream named `name` (see [`MarketingStream::name`]).
    pub fn parse(name: &str) -> Option<MarketingStream> {
        MarketingStream::ALL.into_iter().find(|s| s.name() == name)
    }

    /// The stream names, comma-separated (for error messages).
    pub fn names() -> String {
        MarketingStream::ALL.map(|s| s.name()).join(", ")
    }

    /// Position in [`MarketingStream::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }

    /// The source system: `salesforce` or `marketo` (`source.schema` of the envelopes).
    pub fn system(self) -> &'static str {
        match self {
            MarketingStream::Account | MarketingStream::User => "salesforce",
            _ => "marketo",
        }
    }

    /// The data columns of the stream's rows, in order, with their tidewater type names
    /// (timestamps are epoch milliseconds in the JSON).
    pub fn columns(self) -> &'static [(&'static str, &'static str)] {
        match self {
            MarketingStream::Account => &ACCOUNT_COLUMNS,
            MarketingStream::User => &USER_COLUMNS,
            MarketingStream::Lead => &LEAD_COLUMNS,
            MarketingStream::ActivitySendEmail => &SEND_COLUMNS,
            MarketingStream::ActivityOpenEmail => &OPEN_COLUMNS,
            MarketingStream::ActivityClickEmail => &CLICK_COLUMNS,
        }
    }

    /// The Kafka Connect JSON schema of the stream's lines when
    /// [`MarketingGenConfig::with_schema`] is set.
    pub fn schema_json(self) -> &'static str {
        match self {
            MarketingStream::Account => ACCOUNT_SCHEMA_JSON,
            MarketingStream::User => USER_SCHEMA_JSON,
            MarketingStream::Lead => LEAD_SCHEMA_JSON,
            MarketingStream::ActivitySendEmail => SEND_SCHEMA_JSON,
            MarketingStream::ActivityOpenEmail => OPEN_SCHEMA_JSON,
            MarketingStream::ActivityClickEmail => CLICK_SCHEMA_JSON,
        }
    }

    fn bit(self) -> u8 {
        1 << (self as u8)
    }

    fn is_activity(self) -> bool {
        matches!(
            self,
            MarketingStream::ActivitySendEmail
                | MarketingStream::ActivityOpenEmail
                | MarketingStream::ActivityClickEmail
        )
    }
}

impl fmt::Display for MarketingStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Configuration of the [`MarketingGenerator`]. Every field has a default. The six sources of
/// one pipeline must agree on every field except `stream`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct MarketingGenConfig {
    /// Seed of the random generator (default 42).
    pub seed: u64,
    /// Lines of the whole world, all six streams together, snapshot included (default
    /// 100_000). The selected stream emits its share ([`MarketingGenConfig::total_lines`]).
    pub events: u64,
    /// The stream this generator emits (default `account`).
    pub stream: MarketingStream,
    /// Salesforce accounts of the snapshot (default 100).
    pub accounts: u64,
    /// Salesforce users of the snapshot (default 1_000).
    pub users: u64,
    /// Marketo leads of the snapshot; the first `users` belong to the users (default 2_000).
    pub leads: u64,
    /// Marketo e-mail campaigns, each with 4 e-mail templates (default 12, at least 1).
    pub campaigns: u64,
    /// Share of activity lines delivered twice (exact copies; default 0.02).
    pub duplicate_pct: f64,
    /// Share of activities delivered late; new leads are late 5 times as often (default
    /// 0.02).
    pub late_pct: f64,
    /// How many world lines after its generation a late line is delivered (default 400).
    pub late_distance: u64,
    /// Wrap each line in `{"schema":...,"payload":...}` (default false).
    pub with_schema: bool,
}

impl Default for MarketingGenConfig {
    fn default() -> Self {
        MarketingGenConfig {
            seed: 42,
            events: 100_000,
            stream: MarketingStream::Account,
            accounts: 100,
            users: 1_000,
            leads: 2_000,
            campaigns: 12,
            duplicate_pct: 0.02,
            late_pct: 0.02,
            late_distance: 400,
            with_schema: false,
        }
    }
}

impl MarketingGenConfig {
    /// The default world scaled to `leads` snapshot leads: `leads / 2` users and `leads / 20`
    /// accounts (at least 1 each); other fields default. This is what a pipeline's `keys`
    /// sets.
    pub fn scaled(leads: u64) -> Self {
        MarketingGenConfig {
            leads,
            users: (leads / 2).max(1),
            accounts: (leads / 20).max(1),
            ..MarketingGenConfig::default()
        }
    }

    /// The number of lines of the selected stream.
    pub fn total_lines(&self) -> u64 {
        self.stream_lines()[self.stream.index()]
    }

    /// The number of lines of every stream (indexed like [`MarketingStream::ALL`]); they sum
    /// to `events`. Runs the simulation without rendering lines.
    pub fn stream_lines(&self) -> [u64; 6] {
        let mut world = World::new(self.clone(), 0);
        let mut counts = [0u64; 6];
        while let Some(line) = world.next_line() {
            counts[line.stream.index()] += 1;
        }
        counts
    }
}

// ---------------------------------------------------------------------------------------
// Columns and schemas.

/// The data columns of a Salesforce `account` row.
pub const ACCOUNT_COLUMNS: [(&str, &str); 12] = [
    ("id", "string"),
    ("name", "string"),
    ("industry", "string"),
    ("billing_country", "string"),
    ("billing_city", "string"),
    ("number_of_employees", "int64"),
    ("annual_revenue", "double"),
    ("owner_id", "string"),
    ("created_date", "timestamp"),
    ("last_modified_date", "timestamp"),
    ("_fivetran_synced", "timestamp"),
    ("_fivetran_deleted", "boolean"),
];

/// The data columns of a Salesforce `user` row.
pub const USER_COLUMNS: [(&str, &str); 12] = [
    ("id", "string"),
    ("name", "string"),
    ("first_name", "string"),
    ("last_name", "string"),
    ("email", "string"),
    ("account_id", "string"),
    ("title", "string"),
    ("is_active", "boolean"),
    ("created_date", "timestamp"),
    ("last_modified_date", "timestamp"),
    ("_fivetran_synced", "timestamp"),
    ("_fivetran_deleted", "boolean"),
];

/// The data columns of a Marketo `lead` row.
pub const LEAD_COLUMNS: [(&str, &str); 10] = [
    ("id", "int64"),
    ("email", "string"),
    ("first_name", "string"),
    ("last_name", "string"),
    ("company", "string"),
    ("country", "string"),
    ("lead_source", "string"),
    ("created_at", "timestamp"),
    ("updated_at", "timestamp"),
    ("_fivetran_synced", "timestamp"),
];

/// The data columns of a Marketo `activity_send_email` row.
pub const SEND_COLUMNS: [(&str, &str); 10] = [
    ("id", "int64"),
    ("lead_id", "int64"),
    ("activity_date", "timestamp"),
    ("activity_type_id", "int64"),
    ("campaign_id", "int64"),
    ("campaign_run_id", "int64"),
    ("email_template_id", "int64"),
    ("primary_attribute_value", "string"),
    ("email_send_id", "string"),
    ("_fivetran_synced", "timestamp"),
];

/// The data columns of a Marketo `activity_open_email` row.
pub const OPEN_COLUMNS: [(&str, &str); 13] = [
    ("id", "int64"),
    ("lead_id", "int64"),
    ("activity_date", "timestamp"),
    ("activity_type_id", "int64"),
    ("campaign_id", "int64"),
    ("campaign_run_id", "int64"),
    ("email_template_id", "int64"),
    ("primary_attribute_value", "string"),
    ("email_send_id", "string"),
    ("device", "string"),
    ("platform", "string"),
    ("is_mobile_device", "boolean"),
    ("_fivetran_synced", "timestamp"),
];

/// The data columns of a Marketo `activity_click_email` row.
pub const CLICK_COLUMNS: [(&str, &str); 15] = [
    ("id", "int64"),
    ("lead_id", "int64"),
    ("activity_date", "timestamp"),
    ("activity_type_id", "int64"),
    ("campaign_id", "int64"),
    ("campaign_run_id", "int64"),
    ("email_template_id", "int64"),
    ("primary_attribute_value", "string"),
    ("email_send_id", "string"),
    ("link", "string"),
    ("link_id", "int64"),
    ("device", "string"),
    ("platform", "string"),
    ("is_mobile_device", "boolean"),
    ("_fivetran_synced", "timestamp"),
];

macro_rules! activity_fields {
    () => {
        concat!(
            f!("int64", false, "id"),
            ",",
            f!("int64", false, "lead_id"),
            ",",
            f!(ts, false, "activity_date"),
            ",",
            f!("int64", false, "activity_type_id"),
            ",",
            f!("int64", false, "campaign_id"),
            ",",
            f!("int64", false, "campaign_run_id"),
            ",",
            f!("int64", false, "email_template_id"),
            ",",
            f!("string", true, "primary_attribute_value"),
            ",",
            f!("string", false, "email_send_id"),
        )
    };
}

/// The schema block of the `account` stream.
pub const ACCOUNT_SCHEMA_JSON: &str = debezium_envelope_schema!(
    @prefix "marketing.salesforce.",
    "account",
    concat!(
        f!("string", false, "id"),
        ",",
        f!("string", true, "name"),
        ",",
        f!("string", true, "industry"),
        ",",
        f!("string", true, "billing_country"),
        ",",
        f!("string", true, "billing_city"),
        ",",
        f!("int64", true, "number_of_employees"),
        ",",
        f!("float64", true, "annual_revenue"),
        ",",
        f!("string", true, "owner_id"),
        ",",
        f!(ts, true, "created_date"),
        ",",
        f!(ts, true, "last_modified_date"),
        ",",
        f!(ts, true, "_fivetran_synced"),
        ",",
        f!("boolean", true, "_fivetran_deleted"),
    ),
    ""
);

/// The schema block of the `user` stream.
pub const USER_SCHEMA_JSON: &str = debezium_envelope_schema!(
    @prefix "marketing.salesforce.",
    "user",
    concat!(
        f!("string", false, "id"),
        ",",
        f!("string", true, "name"),
        ",",
        f!("string", true, "first_name"),
        ",",
        f!("string", true, "last_name"),
        ",",
        f!("string", true, "email"),
        ",",
        f!("string", true, "account_id"),
        ",",
        f!("string", true, "title"),
        ",",
        f!("boolean", true, "is_active"),
        ",",
        f!(ts, true, "created_date"),
        ",",
        f!(ts, true, "last_modified_date"),
        ",",
        f!(ts, true, "_fivetran_synced"),
        ",",
        f!("boolean", true, "_fivetran_deleted"),
    ),
    ""
);

/// The schema block of the `lead` stream.
pub const LEAD_SCHEMA_JSON: &str = debezium_envelope_schema!(
    @prefix "marketing.marketo.",
    "lead",
    concat!(
        f!("int64", false, "id"),
        ",",
        f!("string", true, "email"),
        ",",
        f!("string", true, "first_name"),
        ",",
        f!("string", true, "last_name"),
        ",",
        f!("string", true, "company"),
        ",",
        f!("string", true, "country"),
        ",",
        f!("string", true, "lead_source"),
        ",",
        f!(ts, true, "created_at"),
        ",",
        f!(ts, true, "updated_at"),
        ",",
        f!(ts, true, "_fivetran_synced"),
    ),
    ""
);

/// The schema block of the `activity_send_email` stream.
pub const SEND_SCHEMA_JSON: &str = debezium_envelope_schema!(
    @prefix "marketing.marketo.",
    "activity_send_email",
    concat!(activity_fields!(), ",", f!(ts, true, "_fivetran_synced")),
    ""
);

/// The schema block of the `activity_open_email` stream.
pub const OPEN_SCHEMA_JSON: &str = debezium_envelope_schema!(
    @prefix "marketing.marketo.",
    "activity_open_email",
    concat!(
        activity_fields!(),
        ",",
        f!("string", true, "device"),
        ",",
        f!("string", true, "platform"),
        ",",
        f!("boolean", true, "is_mobile_device"),
        ",",
        f!(ts, true, "_fivetran_synced"),
    ),
    ""
);

/// The schema block of the `activity_click_email` stream.
pub const CLICK_SCHEMA_JSON: &str = debezium_envelope_schema!(
    @prefix "marketing.marketo.",
    "activity_click_email",
    concat!(
        activity_fields!(),
        ",",
        f!("string", true, "link"),
        ",",
        f!("int64", true, "link_id"),
        ",",
        f!("string", true, "device"),
        ",",
        f!("string", true, "platform"),
        ",",
        f!("boolean", true, "is_mobile_device"),
        ",",
        f!(ts, true, "_fivetran_synced"),
    ),
    ""
);

// ---------------------------------------------------------------------------------------
// Vocabulary.

const FIRST_NAMES: [&str; 24] = [
    "Anna", "Ben", "Clara", "David", "Elena", "Felix", "Greta", "Hugo", "Ines", "Jonas", "Katja",
    "Lukas", "Marie", "Niko", "Olga", "Paul", "Quinn", "Rosa", "Sven", "Tina", "Umar", "Vera",
    "Wim", "Zoe",
];
const LAST_NAMES: [&str; 24] = [
    "Schmidt", "Meyer", "Dubois", "Rossi", "Garcia", "Jansen", "Novak", "Silva", "Murphy",
    "Nielsen", "Kowalski", "Berg", "Huber", "Keller", "Moreau", "Ricci", "Lopez", "Visser",
    "Horvat", "Costa", "Walsh", "Larsen", "Bauer", "Kelly",
];
const COMPANY_ADJ: [&str; 8] = [
    "Blue", "Bright", "Global", "Northern", "Rapid", "Silver", "Green", "Prime",
];
const COMPANY_NOUN: [&str; 8] = [
    "Harbor", "Summit", "Bridge", "Field", "Peak", "River", "Stone", "Wave",
];
const COMPANY_SUFFIX: [&str; 8] = ["GmbH", "Inc", "Ltd", "SA", "BV", "AG", "LLC", "Corp"];
const INDUSTRIES: [&str; 8] = [
    "Technology",
    "Finance",
    "Healthcare",
    "Retail",
    "Manufacturing",
    "Education",
    "Energy",
    "Media",
];
/// (country, two cities).
const COUNTRIES: [(&str, [&str; 2]); 10] = [
    ("Germany", ["Berlin", "Munich"]),
    ("France", ["Paris", "Lyon"]),
    ("United States", ["New York", "San Francisco"]),
    ("United Kingdom", ["London", "Manchester"]),
    ("Spain", ["Madrid", "Barcelona"]),
    ("Italy", ["Milan", "Rome"]),
    ("Netherlands", ["Amsterdam", "Rotterdam"]),
    ("Japan", ["Tokyo", "Osaka"]),
    ("Brazil", ["Sao Paulo", "Rio de Janeiro"]),
    ("Canada", ["Toronto", "Vancouver"]),
];
const TITLES: [&str; 8] = [
    "Engineer",
    "Manager",
    "Director",
    "Analyst",
    "VP Sales",
    "CTO",
    "Consultant",
    "Designer",
];
const LEAD_SOURCES: [&str; 5] = [
    "Website",
    "Webinar",
    "Trade Show",
    "Referral",
    "Paid Search",
];
const PROSPECT_DOMAINS: [&str; 3] = ["mail.example.org", "inbox.example.net", "post.example.com"];
const CAMPAIGN_NAMES: [&str; 8] = [
    "Spring Launch",
    "Webinar Invite",
    "Product Update",
    "Newsletter",
    "Renewal Reminder",
    "Onboarding",
    "Customer Story",
    "Event Follow-up",
];
const DEVICES: [&str; 3] = ["Desktop", "Mobile", "Tablet"];
const PLATFORMS: [&str; 5] = ["Windows", "macOS", "iOS", "Android", "Linux"];
const LINKS: [&str; 5] = [
    "https://example.com/pricing",
    "https://example.com/demo",
    "https://example.com/blog",
    "https://example.com/webinar",
    "https://example.com/docs",
];

/// Marketo activity type ids.
const SEND_TYPE: i64 = 6;
const OPEN_TYPE: i64 = 10;
const CLICK_TYPE: i64 = 11;

const START_LSN: i64 = 51_000_000;
/// 2024-01-01 00:00:00 UTC.
const START_TS_MS: i64 = 1_704_067_200_000;
const START_TX_ID: i64 = 7_000;
const FIRST_ACTIVITY_ID: i64 = 10_000_000;
const DAY_MS: i64 = 86_400_000;
const RECENT_SENDS: usize = 512;
const RECENT_OPENS: usize = 256;
const RECENT_ACTIVITIES: usize = 64;

// ---------------------------------------------------------------------------------------
// The world.

/// A set of entity indices with O(1) insert, remove and uniform pick.
#[derive(Default)]
struct AliveSet {
    items: Vec<usize>,
    pos: Vec<Option<usize>>,
}

impl AliveSet {
    fn insert(&mut self, i: usize) {
        if self.pos.len() <= i {
            self.pos.resize(i + 1, None);
        }
        if self.pos[i].is_none() {
            self.pos[i] = Some(self.items.len());
            self.items.push(i);
        }
    }

    fn remove(&mut self, i: usize) {
        if let Some(p) = self.pos.get_mut(i).and_then(Option::take) {
            self.items.swap_remove(p);
            if let Some(&moved) = self.items.get(p) {
                self.pos[moved] = Some(p);
            }
        }
    }

    fn contains(&self, i: usize) -> bool {
        self.pos.get(i).is_some_and(Option::is_some)
    }

    fn pick(&self, rng: &mut ChaCha8Rng) -> Option<usize> {
        if self.items.is_empty() {
            None
        } else {
            Some(self.items[rng.gen_range(0..self.items.len() as u64) as usize])
        }
    }
}

struct Account {
    name: (u8, u8, u8),
    industry: Option<u8>,
    /// (country, city) indices.
    place: Option<(u8, u8)>,
    employees: Option<i64>,
    /// Annual revenue in thousands.
    revenue_k: Option<i64>,
    owner: i64,
    created: i64,
    modified: i64,
    deleted: bool,
}

struct User {
    first: u8,
    last: u8,
    email: Option<String>,
    account: Option<usize>,
    title: Option<u8>,
    active: bool,
    created: i64,
    modified: i64,
    deleted: bool,
    lead: Option<usize>,
}

struct Lead {
    first: u8,
    last: u8,
    email: Option<String>,
    company: Option<String>,
    country: Option<u8>,
    source: u8,
    created: i64,
    updated: i64,
}

/// One e-mail sent to one lead.
#[derive(Clone, Copy)]
struct Send {
    campaign: u32,
    template: u8,
    run: i64,
    lead: usize,
}

/// One Marketo activity row.
#[derive(Clone, Copy)]
struct Activity {
    stream: MarketingStream,
    id: i64,
    send: Send,
    date: i64,
    device: u8,
    platform: u8,
    link: u8,
}

/// What a line's row shows.
#[derive(Clone, Copy)]
enum What {
    Account(usize),
    User(usize),
    Lead(usize),
    Activity(Activity),
}

/// A world line: its stream and, when rendered, its bytes.
struct Line {
    stream: MarketingStream,
    bytes: Vec<u8>,
}

/// The simulation; renders the lines of the streams in `mask` (a bit per stream) and
/// leaves the others empty. The random sequence does not depend on `mask`.
struct World {
    cfg: MarketingGenConfig,
    mask: u8,
    rng: ChaCha8Rng,
    accounts: Vec<Account>,
    live_accounts: AliveSet,
    users: Vec<User>,
    live_users: AliveSet,
    leads: Vec<Lead>,
    live_leads: AliveSet,
    /// Duplicate leads waiting to be merged: (winner, loser).
    merges: Vec<(usize, usize)>,
    sends: VecDeque<Send>,
    opened: VecDeque<Send>,
    recent: VecDeque<Activity>,
    next_activity_id: i64,
    next_run_id: i64,
    steps: u64,
    clock: i64,
    lsn: i64,
    tx_id: i64,
    /// World lines delivered.
    position: u64,
    queue: VecDeque<Line>,
    /// Late lines with the position they are due at (in order).
    held: VecDeque<(u64, Line)>,
}

impl World {
    fn new(cfg: MarketingGenConfig, mask: u8) -> World {
        World {
            rng: ChaCha8Rng::seed_from_u64(cfg.seed),
            mask,
            accounts: Vec::new(),
            live_accounts: AliveSet::default(),
            users: Vec::new(),
            live_users: AliveSet::default(),
            leads: Vec::new(),
            live_leads: AliveSet::default(),
            merges: Vec::new(),
            sends: VecDeque::new(),
            opened: VecDeque::new(),
            recent: VecDeque::new(),
            next_activity_id: FIRST_ACTIVITY_ID,
            next_run_id: 0,
            steps: 0,
            clock: START_TS_MS,
            lsn: START_LSN,
            tx_id: START_TX_ID,
            position: 0,
            queue: VecDeque::new(),
            held: VecDeque::new(),
            cfg,
        }
    }

    /// The next world line; `None` after `events` lines.
    fn next_line(&mut self) -> Option<Line> {
        if self.position >= self.cfg.events {
            return None;
        }
        let p = self.position;
        let remaining = self.cfg.events - p;
        self.position += 1;
        let line = loop {
            let due = self.held.front().is_some_and(|(d, _)| *d <= p);
            if due || remaining <= self.held.len() as u64 {
                break self.held.pop_front().expect("a held line").1;
            }
            if let Some(line) = self.queue.pop_front() {
                break line;
            }
            self.step();
        };
        if line.stream.is_activity()
            && self.cfg.duplicate_pct > 0.0
            && self.rng.gen::<f64>() < self.cfg.duplicate_pct
        {
            // Delivered again after the lines already queued.
            self.queue.push_back(Line {
                stream: line.stream,
                bytes: line.bytes.clone(),
            });
        }
        Some(line)
    }

    /// One step of the simulation: queues (or holds) one or a few lines.
    fn step(&mut self) {
        let s = self.steps;
        self.steps += 1;
        let (na, nu, nl) = (self.cfg.accounts, self.cfg.users, self.cfg.leads);
        if s < na {
            let created = START_TS_MS - self.rng.gen_range(DAY_MS..900 * DAY_MS);
            let a = self.new_account(created);
            self.emit(What::Account(a), b'r', false);
            return;
        }
        if s < na + nu {
            let created = START_TS_MS - self.rng.gen_range(DAY_MS..600 * DAY_MS);
            let u = self.new_user(created);
            self.emit(What::User(u), b'r', false);
            return;
        }
        if s < na + nu + nl {
            let i = (s - na - nu) as usize;
            let created = START_TS_MS - self.rng.gen_range(DAY_MS..400 * DAY_MS);
            let user = if i < self.users.len() && self.users[i].email.is_some() {
                match self.rng.gen_range(0..10u32) {
                    0 => None,
                    k => Some((i, k == 1)),
                }
            } else {
                None
            };
            let l = match user {
                Some((u, capitalize)) => self.lead_of_user(u, capitalize, created),
                None => self.prospect(created),
            };
            self.emit(What::Lead(l), b'r', false);
            return;
        }
        self.clock += self.rng.gen_range(100..2_000i64);
        let done = match self.rng.gen_range(0..1000u32) {
            0..15 => self.update_account(),
            15..18 => {
                let a = self.new_account(self.clock);
                self.emit(What::Account(a), b'c', false);
                true
            }
            18..20 => self.soft_delete_account(),
            20..45 => self.update_user(),
            45..52 => {
                let u = self.new_user(self.clock);
                self.emit(What::User(u), b'c', false);
                if self.users[u].email.is_some() && self.rng.gen_range(0..10u32) < 7 {
                    let l = self.lead_of_user(u, false, self.clock);
                    self.emit(What::Lead(l), b'c', true);
                    self.maybe_welcome(l);
                }
                true
            }
            52..54 => self.soft_delete_user(),
            54..90 => self.update_lead(),
            90..105 => false, // a new lead, below
            105..112 => self.merge_leads(),
            112..320 => self.send_batch(),
            320..700 => self.open(),
            700..880 => self.click(),
            _ => self.resync(),
        };
        if !done {
            self.new_lead();
        }
    }

    // --- accounts -------------------------------------------------------------------------

    fn new_account(&mut self, created: i64) -> usize {
        let r = &mut self.rng;
        let name = (
            r.gen_range(0..8u32) as u8,
            r.gen_range(0..8u32) as u8,
            r.gen_range(0..8u32) as u8,
        );
        let industry = (r.gen_range(0..20u32) != 0).then(|| r.gen_range(0..8u32) as u8);
        let place = random_place(r);
        let employees = (r.gen_range(0..10u32) != 0).then(|| r.gen_range(5..20_000i64));
        let revenue_k = (r.gen_range(0..5u32) != 0).then(|| r.gen_range(100..500_000i64));
        let owner = r.gen_range(1..=40i64);
        let modified = created + r.gen_range(0..DAY_MS);
        self.accounts.push(Account {
            name,
            industry,
            place,
            employees,
            revenue_k,
            owner,
            created,
            modified: modified.min(self.clock.max(created)),
            deleted: false,
        });
        let a = self.accounts.len() - 1;
        self.live_accounts.insert(a);
        a
    }

    fn update_account(&mut self) -> bool {
        let Some(a) = self.live_accounts.pick(&mut self.rng) else {
            return false;
        };
        let r = &mut self.rng;
        let acc = &mut self.accounts[a];
        match r.gen_range(0..20u32) {
            0..7 => {
                // The account moves: another billing country (now and then none).
                acc.place = if r.gen_range(0..20u32) == 0 {
                    None
                } else {
                    let old = acc.place.map_or(0, |p| p.0 as u32);
                    let country =
                        (old + r.gen_range(1..COUNTRIES.len() as u32)) % COUNTRIES.len() as u32;
                    Some((country as u8, r.gen_range(0..2u32) as u8))
                };
            }
            7..12 => acc.employees = Some(r.gen_range(5..20_000i64)),
            12..16 => acc.revenue_k = Some(r.gen_range(100..500_000i64)),
            16..18 => acc.industry = Some(r.gen_range(0..8u32) as u8),
            _ => acc.name.2 = r.gen_range(0..8u32) as u8,
        }
        acc.modified = self.clock;
        self.emit(What::Account(a), b'u', false);
        true
    }

    fn soft_delete_account(&mut self) -> bool {
        let Some(a) = self.live_accounts.pick(&mut self.rng) else {
            return false;
        };
        self.live_accounts.remove(a);
        let acc = &mut self.accounts[a];
        acc.deleted = true;
        acc.modified = self.clock;
        self.emit(What::Account(a), b'u', false);
        true
    }

    // --- users ----------------------------------------------------------------------------

    fn new_user(&mut self, created: i64) -> usize {
        let account = if self.rng.gen_range(0..100u32) < 92 {
            self.live_accounts.pick(&mut self.rng)
        } else {
            None
        };
        let r = &mut self.rng;
        let first = r.gen_range(0..FIRST_NAMES.len() as u32) as u8;
        let last = r.gen_range(0..LAST_NAMES.len() as u32) as u8;
        let with_email = r.gen_range(0..25u32) != 0;
        let title = (r.gen_range(0..7u32) != 0).then(|| r.gen_range(0..8u32) as u8);
        let active = r.gen_range(0..20u32) != 0;
        let email = with_email.then(|| self.user_email(first, last, account, 0));
        self.users.push(User {
            first,
            last,
            email,
            account,
            title,
            active,
            created,
            modified: created,
            deleted: false,
            lead: None,
        });
        let u = self.users.len() - 1;
        self.live_users.insert(u);
        u
    }

    /// `first.last[n]@<the account's domain>` (`n` = 0 is left out).
    fn user_email(&self, first: u8, last: u8, account: Option<usize>, n: u32) -> String {
        let mut s = format!(
            "{}.{}",
            FIRST_NAMES[first as usize].to_ascii_lowercase(),
            LAST_NAMES[last as usize].to_ascii_lowercase()
        );
        if n > 0 {
            s.push_str(&n.to_string());
        }
        s.push('@');
        match account {
            Some(a) => {
                let (adj, noun, _) = self.accounts[a].name;
                s.push_str(&COMPANY_ADJ[adj as usize].to_ascii_lowercase());
                s.push_str(&COMPANY_NOUN[noun as usize].to_ascii_lowercase());
                s.push_str(".example.com");
            }
            None => s.push_str("corp.example.com"),
        }
        s
    }

    fn update_user(&mut self) -> bool {
        let Some(u) = self.live_users.pick(&mut self.rng) else {
            return false;
        };
        match self.rng.gen_range(0..10u32) {
            0 => {
                let n = self.rng.gen_range(2..100u32);
                let user = &self.users[u];
                let email = self.user_email(user.first, user.last, user.account, n);
                self.users[u].email = Some(email);
            }
            1..3 => {
                let account = self.live_accounts.pick(&mut self.rng);
                self.users[u].account = account;
            }
            3..6 => self.users[u].title = Some(self.rng.gen_range(0..8u32) as u8),
            6..8 => self.users[u].active = !self.users[u].active,
            _ => self.users[u].last = self.rng.gen_range(0..LAST_NAMES.len() as u32) as u8,
        }
        self.users[u].modified = self.clock;
        self.emit(What::User(u), b'u', false);
        true
    }

    fn soft_delete_user(&mut self) -> bool {
        let Some(u) = self.live_users.pick(&mut self.rng) else {
            return false;
        };
        self.live_users.remove(u);
        self.users[u].deleted = true;
        self.users[u].modified = self.clock;
        self.emit(What::User(u), b'u', false);
        true
    }

    // --- leads ----------------------------------------------------------------------------

    fn push_lead(&mut self, lead: Lead) -> usize {
        self.leads.push(lead);
        let l = self.leads.len() - 1;
        self.live_leads.insert(l);
        l
    }

    /// The Marketo lead of user `u` (which has an e-mail address).
    fn lead_of_user(&mut self, u: usize, capitalize: bool, created: i64) -> usize {
        let user = &self.users[u];
        let mut email = user.email.clone().expect("a user with an e-mail address");
        if capitalize {
            email = capitalized(&email);
        }
        let company = user.account.map(|a| company_name(&self.accounts[a]));
        let country = user
            .account
            .and_then(|a| self.accounts[a].place)
            .map(|p| p.0);
        let (first, last) = (user.first, user.last);
        let source = self.rng.gen_range(0..LEAD_SOURCES.len() as u32) as u8;
        let l = self.push_lead(Lead {
            first,
            last,
            email: Some(email),
            company,
            country,
            source,
            created,
            updated: created,
        });
        self.users[u].lead = Some(l);
        l
    }

    /// A lead that is no Salesforce user.
    fn prospect(&mut self, created: i64) -> usize {
        let r = &mut self.rng;
        let first = r.gen_range(0..FIRST_NAMES.len() as u32) as u8;
        let last = r.gen_range(0..LAST_NAMES.len() as u32) as u8;
        let domain = PROSPECT_DOMAINS[r.gen_range(0..PROSPECT_DOMAINS.len() as u32) as usize];
        let with_email = r.gen_range(0..30u32) != 0;
        let country = (r.gen_range(0..4u32) != 0).then(|| r.gen_range(0..10u32) as u8);
        let source = r.gen_range(0..LEAD_SOURCES.len() as u32) as u8;
        let n = self.leads.len() + 1;
        let email = with_email.then(|| {
            format!(
                "{}.{}{n}@{domain}",
                FIRST_NAMES[first as usize].to_ascii_lowercase(),
                LAST_NAMES[last as usize].to_ascii_lowercase()
            )
        });
        self.push_lead(Lead {
            first,
            last,
            email,
            company: None,
            country,
            source,
            created,
            updated: created,
        })
    }

    /// A new lead: a duplicate of an existing lead (merged later), a user's lead, or a
    /// prospect. Always emits a line.
    fn new_lead(&mut self) {
        let now = self.clock;
        let kind = self.rng.gen_range(0..100u32);
        let l = if kind < 25 {
            match self.live_leads.pick(&mut self.rng) {
                Some(w) if self.leads[w].email.is_some() => {
                    let capitalize = self.rng.gen_range(0..2u32) == 0;
                    let win = &self.leads[w];
                    let mut email = win.email.clone().expect("checked");
                    if capitalize {
                        email = capitalized(&email);
                    }
                    let dup = Lead {
                        first: win.first,
                        last: win.last,
                        email: Some(email),
                        company: None,
                        country: win.country,
                        source: self.rng.gen_range(0..LEAD_SOURCES.len() as u32) as u8,
                        created: now,
                        updated: now,
                    };
                    let l = self.push_lead(dup);
                    self.merges.push((w, l));
                    l
                }
                _ => self.prospect(now),
            }
        } else if kind < 60 {
            match self.live_users.pick(&mut self.rng) {
                Some(u) if self.users[u].lead.is_none() && self.users[u].email.is_some() => {
                    self.lead_of_user(u, false, now)
                }
                _ => self.prospect(now),
            }
        } else {
            self.prospect(now)
        };
        self.emit(What::Lead(l), b'c', true);
        self.maybe_welcome(l);
    }

    /// Half of the new leads get the welcome e-mail (the first template of campaign 0) at
    /// once.
    fn maybe_welcome(&mut self, lead: usize) {
        if self.rng.gen_range(0..2u32) == 0 {
            return;
        }
        self.next_run_id += 1;
        let send = Send {
            campaign: 0,
            template: 0,
            run: self.next_run_id,
            lead,
        };
        self.remember_send(send);
        let a = self.activity(MarketingStream::ActivitySendEmail, send);
        self.emit(What::Activity(a), b'c', true);
    }

    fn remember_send(&mut self, send: Send) {
        if self.sends.len() == RECENT_SENDS {
            self.sends.pop_front();
        }
        self.sends.push_back(send);
    }

    fn update_lead(&mut self) -> bool {
        let Some(l) = self.live_leads.pick(&mut self.rng) else {
            return false;
        };
        let synced_email = self
            .users
            .iter()
            .position(|u| u.lead == Some(l))
            .and_then(|u| self.users[u].email.clone());
        let r = &mut self.rng;
        let lead = &mut self.leads[l];
        match r.gen_range(0..4u32) {
            0 => match synced_email {
                // The lead takes its user's current e-mail address.
                Some(e) => lead.email = Some(e),
                None => lead.source = r.gen_range(0..LEAD_SOURCES.len() as u32) as u8,
            },
            1 => lead.country = Some(r.gen_range(0..10u32) as u8),
            2 => lead.last = r.gen_range(0..LAST_NAMES.len() as u32) as u8,
            _ => lead.source = r.gen_range(0..LEAD_SOURCES.len() as u32) as u8,
        }
        lead.updated = self.clock;
        self.emit(What::Lead(l), b'u', false);
        true
    }

    /// Merges a duplicate lead into the lead it duplicates: the loser is deleted, the winner
    /// updated (and takes over the loser's user).
    fn merge_leads(&mut self) -> bool {
        if self.merges.is_empty() {
            return false;
        }
        let i = self.rng.gen_range(0..self.merges.len() as u64) as usize;
        let (w, l) = self.merges.swap_remove(i);
        if !self.live_leads.contains(w) || !self.live_leads.contains(l) {
            return false;
        }
        self.emit(What::Lead(l), b'd', false);
        self.live_leads.remove(l);
        if let Some(u) = self.users.iter().position(|u| u.lead == Some(l)) {
            self.users[u].lead = Some(w);
        }
        let loser_company = self.leads[l].company.clone();
        let win = &mut self.leads[w];
        if win.company.is_none() {
            win.company = loser_company;
        }
        win.updated = self.clock;
        self.emit(What::Lead(w), b'u', false);
        true
    }

    // --- activities -----------------------------------------------------------------------

    fn activity(&mut self, stream: MarketingStream, send: Send) -> Activity {
        self.next_activity_id += self.rng.gen_range(1..4i64);
        let device = self.rng.gen_range(0..DEVICES.len() as u32) as u8;
        let platform = self.rng.gen_range(0..PLATFORMS.len() as u32) as u8;
        let link = self.rng.gen_range(0..LINKS.len() as u32) as u8;
        let a = Activity {
            stream,
            id: self.next_activity_id,
            send,
            date: self.clock,
            device,
            platform,
            link,
        };
        if self.recent.len() == RECENT_ACTIVITIES {
            self.recent.pop_front();
        }
        self.recent.push_back(a);
        a
    }

    fn send_batch(&mut self) -> bool {
        if self.live_leads.items.is_empty() {
            return false;
        }
        let campaign = self.rng.gen_range(0..self.cfg.campaigns.max(1)) as u32;
        let template = self.rng.gen_range(0..4u32) as u8;
        self.next_run_id += 1;
        let run = self.next_run_id;
        for _ in 0..self.rng.gen_range(1..=4u32) {
            let lead = self.live_leads.pick(&mut self.rng).expect("non-empty");
            let send = Send {
                campaign,
                template,
                run,
                lead,
            };
            self.remember_send(send);
            let a = self.activity(MarketingStream::ActivitySendEmail, send);
            self.emit(What::Activity(a), b'c', true);
        }
        true
    }

    fn open(&mut self) -> bool {
        if self.sends.is_empty() {
            return false;
        }
        let send = self.sends[self.rng.gen_range(0..self.sends.len() as u64) as usize];
        if !self.live_leads.contains(send.lead) {
            return false;
        }
        if self.opened.len() == RECENT_OPENS {
            self.opened.pop_front();
        }
        self.opened.push_back(send);
        let a = self.activity(MarketingStream::ActivityOpenEmail, send);
        self.emit(What::Activity(a), b'c', true);
        true
    }

    fn click(&mut self) -> bool {
        let from_opened = !self.opened.is_empty() && self.rng.gen_range(0..100u32) < 85;
        let pool = if from_opened {
            &self.opened
        } else {
            &self.sends
        };
        if pool.is_empty() {
            return false;
        }
        let send = pool[self.rng.gen_range(0..pool.len() as u64) as usize];
        if !self.live_leads.contains(send.lead) {
            return false;
        }
        let a = self.activity(MarketingStream::ActivityClickEmail, send);
        self.emit(What::Activity(a), b'c', true);
        true
    }

    /// Fivetran syncs a recent activity again: the same row, a later `_fivetran_synced`.
    fn resync(&mut self) -> bool {
        if self.recent.is_empty() {
            return false;
        }
        let a = self.recent[self.rng.gen_range(0..self.recent.len() as u64) as usize];
        self.emit(What::Activity(a), b'u', false);
        true
    }

    // --- lines ----------------------------------------------------------------------------

    /// Queues the line of a change (or holds it back when `may_be_late` and the dice say so).
    fn emit(&mut self, what: What, op: u8, may_be_late: bool) {
        let stream = match what {
            What::Account(_) => MarketingStream::Account,
            What::User(_) => MarketingStream::User,
            What::Lead(_) => MarketingStream::Lead,
            What::Activity(a) => a.stream,
        };
        self.lsn += self.rng.gen_range(8..64i64);
        self.tx_id += 1;
        let synced = if op == b'r' {
            START_TS_MS
        } else {
            self.clock + self.rng.gen_range(5_000..60_000i64)
        };
        let late_pct = if stream == MarketingStream::Lead {
            5.0 * self.cfg.late_pct
        } else {
            self.cfg.late_pct
        };
        let late = may_be_late && late_pct > 0.0 && self.rng.gen::<f64>() < late_pct;
        let mut bytes = Vec::new();
        if self.mask & stream.bit() != 0 {
            bytes.reserve(if self.cfg.with_schema { 4096 } else { 640 });
            self.render(&mut bytes, stream, what, op, synced);
        }
        let line = Line { stream, bytes };
        if late {
            self.held
                .push_back((self.position + self.cfg.late_distance, line));
        } else {
            self.queue.push_back(line);
        }
    }

    fn render(&self, out: &mut Vec<u8>, stream: MarketingStream, what: What, op: u8, synced: i64) {
        if self.cfg.with_schema {
            out.extend_from_slice(b"{\"schema\":");
            out.extend_from_slice(stream.schema_json().as_bytes());
            out.extend_from_slice(b",\"payload\":");
        }
        if op == b'd' {
            out.extend_from_slice(b"{\"before\":");
            self.render_row(out, what, synced);
            out.extend_from_slice(b",\"after\":null");
        } else {
            out.extend_from_slice(b"{\"before\":null,\"after\":");
            self.render_row(out, what, synced);
        }
        let source_ts = if op == b'r' { START_TS_MS } else { self.clock };
        out.extend_from_slice(
            b",\"source\":{\"version\":\"2.7.0.Final\",\"connector\":\"postgresql\",\
              \"name\":\"marketing\",\"ts_ms\":",
        );
        push_int(out, source_ts);
        out.extend_from_slice(if op == b'r' {
            b",\"snapshot\":\"true\""
        } else {
            b",\"snapshot\":\"false\""
        });
        out.extend_from_slice(b",\"db\":\"marketing\",\"schema\":\"");
        out.extend_from_slice(stream.system().as_bytes());
        out.extend_from_slice(b"\",\"table\":\"");
        out.extend_from_slice(stream.name().as_bytes());
        out.extend_from_slice(b"\",\"txId\":");
        push_int(out, self.tx_id);
        out.extend_from_slice(b",\"lsn\":");
        push_int(out, self.lsn);
        out.extend_from_slice(b",\"xmin\":null},\"op\":\"");
        out.push(op);
        out.extend_from_slice(b"\",\"ts_ms\":");
        push_int(out, synced);
        out.extend_from_slice(b",\"transaction\":null}");
        if self.cfg.with_schema {
            out.push(b'}');
        }
    }

    fn render_row(&self, out: &mut Vec<u8>, what: What, synced: i64) {
        match what {
            What::Account(a) => {
                let acc = &self.accounts[a];
                out.extend_from_slice(b"{\"id\":");
                push_str(out, &account_id(a));
                out.extend_from_slice(b",\"name\":");
                push_str(out, &company_name(acc));
                out.extend_from_slice(b",\"industry\":");
                push_opt_str(out, acc.industry.map(|i| INDUSTRIES[i as usize]));
                out.extend_from_slice(b",\"billing_country\":");
                push_opt_str(out, acc.place.map(|p| COUNTRIES[p.0 as usize].0));
                out.extend_from_slice(b",\"billing_city\":");
                push_opt_str(
                    out,
                    acc.place.map(|p| COUNTRIES[p.0 as usize].1[p.1 as usize]),
                );
                out.extend_from_slice(b",\"number_of_employees\":");
                push_opt_int(out, acc.employees);
                out.extend_from_slice(b",\"annual_revenue\":");
                match acc.revenue_k {
                    Some(k) => {
                        push_int(out, k * 1000);
                        out.extend_from_slice(b".0");
                    }
                    None => out.extend_from_slice(b"null"),
                }
                out.extend_from_slice(b",\"owner_id\":");
                push_str(out, &format!("005{:012}AAA", 900_000 + acc.owner));
                out.extend_from_slice(b",\"created_date\":");
                push_int(out, acc.created);
                out.extend_from_slice(b",\"last_modified_date\":");
                push_int(out, acc.modified);
                out.extend_from_slice(b",\"_fivetran_synced\":");
                push_int(out, synced);
                out.extend_from_slice(b",\"_fivetran_deleted\":");
                out.extend_from_slice(if acc.deleted { b"true" } else { b"false" });
                out.push(b'}');
            }
            What::User(u) => {
                let user = &self.users[u];
                let (first, last) = (
                    FIRST_NAMES[user.first as usize],
                    LAST_NAMES[user.last as usize],
                );
                out.extend_from_slice(b"{\"id\":");
                push_str(out, &user_id(u));
                out.extend_from_slice(b",\"name\":");
                push_str(out, &format!("{first} {last}"));
                out.extend_from_slice(b",\"first_name\":");
                push_str(out, first);
                out.extend_from_slice(b",\"last_name\":");
                push_str(out, last);
                out.extend_from_slice(b",\"email\":");
                push_opt_str(out, user.email.as_deref());
                out.extend_from_slice(b",\"account_id\":");
                push_opt_str(out, user.account.map(account_id).as_deref());
                out.extend_from_slice(b",\"title\":");
                push_opt_str(out, user.title.map(|t| TITLES[t as usize]));
                out.extend_from_slice(b",\"is_active\":");
                out.extend_from_slice(if user.active { b"true" } else { b"false" });
                out.extend_from_slice(b",\"created_date\":");
                push_int(out, user.created);
                out.extend_from_slice(b",\"last_modified_date\":");
                push_int(out, user.modified);
                out.extend_from_slice(b",\"_fivetran_synced\":");
                push_int(out, synced);
                out.extend_from_slice(b",\"_fivetran_deleted\":");
                out.extend_from_slice(if user.deleted { b"true" } else { b"false" });
                out.push(b'}');
            }
            What::Lead(l) => {
                let lead = &self.leads[l];
                out.extend_from_slice(b"{\"id\":");
                push_int(out, l as i64 + 1);
                out.extend_from_slice(b",\"email\":");
                push_opt_str(out, lead.email.as_deref());
                out.extend_from_slice(b",\"first_name\":");
                push_str(out, FIRST_NAMES[lead.first as usize]);
                out.extend_from_slice(b",\"last_name\":");
                push_str(out, LAST_NAMES[lead.last as usize]);
                out.extend_from_slice(b",\"company\":");
                push_opt_str(out, lead.company.as_deref());
                out.extend_from_slice(b",\"country\":");
                push_opt_str(out, lead.country.map(|c| COUNTRIES[c as usize].0));
                out.extend_from_slice(b",\"lead_source\":");
                push_str(out, LEAD_SOURCES[lead.source as usize]);
                out.extend_from_slice(b",\"created_at\":");
                push_int(out, lead.created);
                out.extend_from_slice(b",\"updated_at\":");
                push_int(out, lead.updated);
                out.extend_from_slice(b",\"_fivetran_synced\":");
                push_int(out, synced);
                out.push(b'}');
            }
            What::Activity(a) => {
                let s = a.send;
                let campaign_id = 1001 + s.campaign as i64;
                let template_id = 5001 + 4 * s.campaign as i64 + s.template as i64;
                let lead_id = s.lead as i64 + 1;
                out.extend_from_slice(b"{\"id\":");
                push_int(out, a.id);
                out.extend_from_slice(b",\"lead_id\":");
                push_int(out, lead_id);
                out.extend_from_slice(b",\"activity_date\":");
                push_int(out, a.date);
                out.extend_from_slice(b",\"activity_type_id\":");
                push_int(
                    out,
                    match a.stream {
                        MarketingStream::ActivitySendEmail => SEND_TYPE,
                        MarketingStream::ActivityOpenEmail => OPEN_TYPE,
                        _ => CLICK_TYPE,
                    },
                );
                out.extend_from_slice(b",\"campaign_id\":");
                push_int(out, campaign_id);
                out.extend_from_slice(b",\"campaign_run_id\":");
                push_int(out, s.run);
                out.extend_from_slice(b",\"email_template_id\":");
                push_int(out, template_id);
                out.extend_from_slice(b",\"primary_attribute_value\":");
                push_str(
                    out,
                    &format!(
                        "{} {} - Email {}",
                        CAMPAIGN_NAMES[s.campaign as usize % CAMPAIGN_NAMES.len()],
                        s.campaign as usize / CAMPAIGN_NAMES.len() + 1,
                        s.template + 1
                    ),
                );
                out.extend_from_slice(b",\"email_send_id\":");
                push_str(
                    out,
                    &format!("{template_id}-{campaign_id}-{}-{lead_id}", s.run),
                );
                if a.stream == MarketingStream::ActivityClickEmail {
                    out.extend_from_slice(b",\"link\":");
                    push_str(out, LINKS[a.link as usize]);
                    out.extend_from_slice(b",\"link_id\":");
                    push_int(out, 900 + a.link as i64);
                }
                if a.stream != MarketingStream::ActivitySendEmail {
                    out.extend_from_slice(b",\"device\":");
                    push_str(out, DEVICES[a.device as usize]);
                    out.extend_from_slice(b",\"platform\":");
                    push_str(out, PLATFORMS[a.platform as usize]);
                    out.extend_from_slice(b",\"is_mobile_device\":");
                    out.extend_from_slice(if a.device != 0 { b"true" } else { b"false" });
                }
                out.extend_from_slice(b",\"_fivetran_synced\":");
                push_int(out, synced);
                out.push(b'}');
            }
        }
    }
}

fn random_place(r: &mut ChaCha8Rng) -> Option<(u8, u8)> {
    let country = r.gen_range(0..COUNTRIES.len() as u32) as u8;
    let city = r.gen_range(0..2u32) as u8;
    (r.gen_range(0..20u32) != 0).then_some((country, city))
}

fn account_id(a: usize) -> String {
    format!("001{:012}AAA", a + 1)
}

fn user_id(u: usize) -> String {
    format!("005{:012}AAA", u + 1)
}

fn company_name(a: &Account) -> String {
    let (adj, noun, suffix) = a.name;
    format!(
        "{} {} {}",
        COMPANY_ADJ[adj as usize], COMPANY_NOUN[noun as usize], COMPANY_SUFFIX[suffix as usize]
    )
}

/// `anna.schmidt@x` → `Anna.schmidt@x` (equal under `lower`).
fn capitalized(email: &str) -> String {
    let mut s = email.to_string();
    if let Some(first) = s.get_mut(0..1) {
        first.make_ascii_uppercase();
    }
    s
}

fn push_opt_str(out: &mut Vec<u8>, s: Option<&str>) {
    match s {
        Some(s) => push_str(out, s),
        None => out.extend_from_slice(b"null"),
    }
}

fn push_opt_int(out: &mut Vec<u8>, v: Option<i64>) {
    match v {
        Some(v) => push_int(out, v),
        None => out.extend_from_slice(b"null"),
    }
}

// ---------------------------------------------------------------------------------------
// The generator.

/// The deterministic marketing generator of one stream (see the [module docs](self)).
pub struct MarketingGenerator {
    world: World,
    stream: MarketingStream,
    position: u64,
}

impl MarketingGenerator {
    /// Creates the generator of `cfg.stream`.
    pub fn new(cfg: MarketingGenConfig) -> Self {
        let stream = cfg.stream;
        MarketingGenerator {
            world: World::new(cfg, stream.bit()),
            stream,
            position: 0,
        }
    }

    /// The configuration this generator was created with.
    pub fn config(&self) -> &MarketingGenConfig {
        &self.world.cfg
    }

    /// The stream this generator emits.
    pub fn stream(&self) -> MarketingStream {
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
pub fn write_file(cfg: &MarketingGenConfig, path: &Path) -> std::io::Result<u64> {
    let mut gen = MarketingGenerator::new(cfg.clone());
    write_lines(path, |line| gen.next_line(line))
}

/// The whole world in order: every line of every stream (tests).
#[cfg(test)]
pub(crate) fn world_lines(cfg: &MarketingGenConfig) -> Vec<(MarketingStream, Vec<u8>)> {
    let mut world = World::new(cfg.clone(), u8::MAX);
    let mut out = Vec::new();
    while let Some(line) = world.next_line() {
        out.push((line.stream, line.bytes));
    }
    out
}

#[cfg(test)]
mod tests;
