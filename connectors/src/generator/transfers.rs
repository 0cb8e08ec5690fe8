//! The deterministic bank-transfers Debezium CDC generator (issue 4, part 5).
//!
//! [`TransfersGenerator`] emits Debezium PostgreSQL change events (JSON, one per line) for a
//! `bank.public.accounts` table keyed by `account_id`, with the columns
//!
//! | column | type | meaning |
//! |---|---|---|
//! | `account_id` | int64 | the key, `1..=accounts` for the initial accounts, then increasing |
//! | `owner` | string | the account holder's name |
//! | `balance` | int64 | the balance **in cents** (integer money: sums are exact) |
//! | `updated_at` | int64 (`io.debezium.time.Timestamp`) | time of the row's last change, ms |
//!
//! The stream, in delivery order = true order (no shuffling, no duplicates):
//!
//! 1. **Snapshot**: one `r` event per initial account, each with `initial_balance` cents. The
//!    whole snapshot is **one source transaction**: every snapshot event carries the same
//!    `source.txId` (and `transaction: null`, as Debezium writes snapshot events), so a cutter
//!    that never splits a transaction puts the whole snapshot into one epoch.
//! 2. **Transactions**, each with a fresh `source.txId` and a `transaction` block
//!    `{"id": "<txId>:<commit lsn>", "total_order": k, "data_collection_order": k}` (k = 1..n
//!    within the transaction; one table, so both orders are equal), every event with a
//!    strictly increasing `source.lsn`:
//!    - a **transfer** (most transactions): two `u` events, the debit of one account and the
//!      credit of another by the same amount (never overdrawing the debited account);
//!    - a transfer plus the **opening of a new account** with balance 0 (`c`), three events;
//!    - only the opening of a new account, one event.
//!
//! Every transaction keeps the sum of all balances constant, so any prefix of the stream that
//! ends at a transaction boundary (after the snapshot) has the sum
//! [`TransfersGenerator::initial_total`]. Exactly `max(events, accounts)` lines are emitted
//! ([`TransfersGenConfig::total_lines`]): the snapshot is never cut short, and the last
//! transaction is shortened so that the stream ends exactly at a transaction boundary.
//! [`TransfersGenerator::in_transaction`] tells whether the last emitted line is followed by
//! more lines of its transaction, so that a cutter pulling lines never ends a block inside one.
//!
//! Output is fully deterministic (ChaCha8 seeded with `seed`, integer arithmetic).

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, VecDeque};
use std::path::Path;

use super::{push_int, write_lines};

/// Configuration of the [`TransfersGenerator`]. Every field has a default.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TransfersGenConfig {
    /// Seed of the random generator (default 42).
    pub seed: u64,
    /// Total number of lines, snapshot included (default 100_000). At least `accounts` lines
    /// are emitted (the snapshot is whole).
    pub events: u64,
    /// Number of accounts in the initial snapshot, keys `1..=accounts` (default 1_000; at least
    /// 2 are used).
    pub accounts: u64,
    /// Initial balance of every snapshot account, in cents (default 100_000 = 1000.00).
    pub initial_balance: i64,
    /// Share of transactions that open a new account (alone, or with a transfer; default 0.1).
    pub open_account_pct: f64,
    /// Wrap each line in `{"schema":...,"payload":...}` (default false).
    pub with_schema: bool,
}

impl Default for TransfersGenConfig {
    fn default() -> Self {
        TransfersGenConfig {
            seed: 42,
            events: 100_000,
            accounts: 1_000,
            initial_balance: 100_000,
            open_account_pct: 0.1,
            with_schema: false,
        }
    }
}

impl TransfersGenConfig {
    /// Effective number of initial accounts (at least 2, so that a transfer has two sides).
    pub fn effective_accounts(&self) -> u64 {
        self.accounts.max(2)
    }

    /// The number of lines the generator emits: `max(events, accounts)`.
    pub fn total_lines(&self) -> u64 {
        self.events.max(self.effective_accounts())
    }
}

/// The schema fields of an `accounts` row (shared by `before` and `after`).
macro_rules! account_value_fields {
    () => {
        concat!(
            r#"{"type":"int64","optional":false,"field":"account_id"},"#,
            r#"{"type":"string","optional":false,"field":"owner"},"#,
            r#"{"type":"int64","optional":false,"field":"balance"},"#,
            r#"{"type":"int64","optional":false,"name":"io.debezium.time.Timestamp","version":1,"field":"updated_at"}"#,
        )
    };
}

/// The Kafka Connect JSON schema of every line when [`TransfersGenConfig::with_schema`] is set.
pub const TRANSFERS_SCHEMA_JSON: &str =
    debezium_envelope_schema!("accounts", account_value_fields!(), "");

/// The data columns of an `accounts` row, in order, with their tidewater type names.
pub const TRANSFERS_COLUMNS: [(&str, &str); 4] = [
    ("account_id", "int64"),
    ("owner", "string"),
    ("balance", "int64"),
    ("updated_at", "int64"),
];

const FIRST_NAMES: [&str; 16] = [
    "Anna", "Ben", "Clara", "David", "Elena", "Felix", "Greta", "Hugo", "Ines", "Jonas", "Katja",
    "Lukas", "Marie", "Niko", "Olga", "Paul",
];
const LAST_NAMES: [&str; 16] = [
    "Schmidt", "Meyer", "Dubois", "Rossi", "Garcia", "Jansen", "Novak", "Silva", "Murphy",
    "Nielsen", "Kowalski", "Berg", "Huber", "Keller", "Moreau", "Ricci",
];

const START_LSN: i64 = 33_000_000;
const START_TS_MS: i64 = 1_700_000_000_000;
const SNAPSHOT_TX_ID: i64 = 900;
/// Largest amount of one transfer, in cents.
const MAX_AMOUNT: i64 = 50_000;

/// One account of the simulated database.
#[derive(Clone, Debug)]
struct Account {
    owner: (u8, u8),
    balance: i64,
    updated_at: i64,
    last_lsn: i64,
}

/// The deterministic bank-transfers generator (see the [module docs](self)).
pub struct TransfersGenerator {
    cfg: TransfersGenConfig,
    total: u64,
    snapshot: u64,
    rng: ChaCha8Rng,
    /// Index = account_id; index 0 is unused.
    accounts: Vec<Account>,
    lsn: i64,
    ts_ms: i64,
    tx_id: i64,
    position: u64,
    /// The remaining lines of the current transaction.
    pending: VecDeque<Vec<u8>>,
}

impl TransfersGenerator {
    /// Creates a generator; the accounts of the snapshot exist from the start.
    pub fn new(cfg: TransfersGenConfig) -> Self {
        let snapshot = cfg.effective_accounts();
        let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
        let mut accounts = Vec::with_capacity(snapshot as usize + 1);
        accounts.push(Account {
            owner: (0, 0),
            balance: 0,
            updated_at: 0,
            last_lsn: 0,
        });
        for _ in 0..snapshot {
            accounts.push(Account {
                owner: random_owner(&mut rng),
                balance: cfg.initial_balance,
                updated_at: START_TS_MS,
                last_lsn: START_LSN,
            });
        }
        TransfersGenerator {
            total: cfg.total_lines(),
            snapshot,
            rng,
            accounts,
            lsn: START_LSN,
            ts_ms: START_TS_MS,
            tx_id: SNAPSHOT_TX_ID,
            position: 0,
            pending: VecDeque::new(),
            cfg,
        }
    }

    /// The configuration this generator was created with.
    pub fn config(&self) -> &TransfersGenConfig {
        &self.cfg
    }

    /// Lines produced so far.
    pub fn position(&self) -> u64 {
        self.position
    }

    /// The number of lines this generator emits in all.
    pub fn total_lines(&self) -> u64 {
        self.total
    }

    /// Whether the last emitted line is followed by more lines of the same source transaction
    /// (a block or epoch must not end here).
    pub fn in_transaction(&self) -> bool {
        if self.position < self.snapshot {
            self.position > 0
        } else {
            !self.pending.is_empty()
        }
    }

    /// The sum of all balances after the snapshot (and after every later transaction), cents.
    pub fn initial_total(&self) -> i64 {
        self.cfg.initial_balance * self.snapshot as i64
    }

    /// Appends the next line (no trailing newline) to `out`; returns false (and appends
    /// nothing) when all lines have been produced.
    pub fn next_line(&mut self, out: &mut Vec<u8>) -> bool {
        if self.position >= self.total {
            return false;
        }
        let p = self.position;
        self.position += 1;
        if p < self.snapshot {
            self.snapshot_line(p + 1, out);
            return true;
        }
        if self.pending.is_empty() {
            let remaining = self.total - p;
            self.next_transaction(remaining);
        }
        let line = self.pending.pop_front().expect("a pending line");
        out.extend_from_slice(&line);
        true
    }

    /// The final table of the lines produced so far, by key: (LSN of the key's last event,
    /// the row as JSON). After the last line, the expected final table.
    pub fn ground_truth(&self) -> BTreeMap<u64, (i64, String)> {
        let mut out = BTreeMap::new();
        let upto = if self.position < self.snapshot {
            self.position
        } else {
            self.accounts.len() as u64 - 1
        };
        for key in 1..=upto {
            let a = &self.accounts[key as usize];
            let mut buf = Vec::new();
            write_row(&mut buf, key, a);
            out.insert(key, (a.last_lsn, String::from_utf8(buf).expect("ASCII")));
        }
        out
    }

    /// The balance of every account produced so far (account_id → cents).
    pub fn balances(&self) -> BTreeMap<i64, i64> {
        self.ground_truth()
            .keys()
            .map(|&k| (k as i64, self.accounts[k as usize].balance))
            .collect()
    }

    fn snapshot_line(&mut self, key: u64, out: &mut Vec<u8>) {
        let snapshot: &[u8] = if key == self.snapshot {
            b"last"
        } else {
            b"true"
        };
        let a = self.accounts[key as usize].clone();
        self.begin_line(out);
        out.extend_from_slice(b"{\"before\":null,\"after\":");
        write_row(out, key, &a);
        self.write_source(out, snapshot, START_TS_MS, SNAPSHOT_TX_ID, START_LSN);
        out.extend_from_slice(b",\"op\":\"r\",\"ts_ms\":");
        push_int(out, START_TS_MS + 100);
        out.extend_from_slice(b",\"transaction\":null}");
        self.end_line(out);
    }

    /// Generates the next transaction (at most `remaining` lines) into `pending`.
    fn next_transaction(&mut self, remaining: u64) {
        let open = self.rng.gen::<f64>() < self.cfg.open_account_pct;
        let transfer = !open || self.rng.gen_range(0..2u32) == 0;
        let mut size = u64::from(open) + if transfer { 2 } else { 0 };
        let (mut open, mut transfer) = (open, transfer);
        if size > remaining {
            // The end of the stream: a shorter transaction that still balances.
            (open, transfer) = match remaining {
                1 => (true, false),
                _ => (false, true),
            };
            size = remaining;
        }
        self.tx_id += self.rng.gen_range(1..=3i64);
        self.ts_ms += self.rng.gen_range(1..=50i64);
        let ts = self.ts_ms;
        // The events of the transaction: (key, op, row after).
        let mut events: Vec<(u64, u8)> = Vec::with_capacity(size as usize);
        if transfer {
            let from = self.pick_debit();
            let mut to = 1 + self.rng.gen_range(0..self.accounts.len() as u64 - 1);
            if to == from {
                to = if from == 1 { 2 } else { from - 1 };
            }
            let max = self.accounts[from as usize].balance.min(MAX_AMOUNT);
            let amount = self.rng.gen_range(1..=max);
            self.accounts[from as usize].balance -= amount;
            self.accounts[to as usize].balance += amount;
            events.push((from, b'u'));
            events.push((to, b'u'));
        }
        if open {
            let owner = random_owner(&mut self.rng);
            self.accounts.push(Account {
                owner,
                balance: 0,
                updated_at: ts,
                last_lsn: 0,
            });
            events.push((self.accounts.len() as u64 - 1, b'c'));
        }
        let lsns: Vec<i64> = events
            .iter()
            .map(|_| {
                self.lsn += self.rng.gen_range(8..64i64);
                self.lsn
            })
            .collect();
        let commit_lsn = self.lsn + 8;
        self.lsn = commit_lsn;
        let n = events.len();
        for (i, ((key, op), lsn)) in events.into_iter().zip(lsns).enumerate() {
            let a = &mut self.accounts[key as usize];
            a.updated_at = ts;
            a.last_lsn = lsn;
            let a = a.clone();
            let mut line = Vec::with_capacity(512);
            self.begin_line(&mut line);
            line.extend_from_slice(b"{\"before\":null,\"after\":");
            write_row(&mut line, key, &a);
            self.write_source(&mut line, b"false", ts, self.tx_id, lsn);
            line.extend_from_slice(b",\"op\":\"");
            line.push(op);
            line.extend_from_slice(b"\",\"ts_ms\":");
            push_int(&mut line, ts + 120 + i as i64);
            line.extend_from_slice(b",\"transaction\":{\"id\":\"");
            push_int(&mut line, self.tx_id);
            line.push(b':');
            push_int(&mut line, commit_lsn);
            line.extend_from_slice(b"\",\"total_order\":");
            push_int(&mut line, i as i64 + 1);
            line.extend_from_slice(b",\"data_collection_order\":");
            push_int(&mut line, i as i64 + 1);
            line.extend_from_slice(b"}}");
            self.end_line(&mut line);
            self.pending.push_back(line);
        }
        debug_assert_eq!(n as u64, size);
    }

    /// An account with a positive balance (one exists: the total is positive and constant).
    fn pick_debit(&mut self) -> u64 {
        let n = self.accounts.len() as u64 - 1;
        for _ in 0..32 {
            let k = 1 + self.rng.gen_range(0..n);
            if self.accounts[k as usize].balance > 0 {
                return k;
            }
        }
        let start = self.rng.gen_range(0..n);
        (0..n)
            .map(|i| 1 + (start + i) % n)
            .find(|&k| self.accounts[k as usize].balance > 0)
            .expect("some account has a positive balance")
    }

    fn begin_line(&self, out: &mut Vec<u8>) {
        if self.cfg.with_schema {
            out.extend_from_slice(b"{\"schema\":");
            out.extend_from_slice(TRANSFERS_SCHEMA_JSON.as_bytes());
            out.extend_from_slice(b",\"payload\":");
        }
    }

    fn end_line(&self, out: &mut Vec<u8>) {
        if self.cfg.with_schema {
            out.push(b'}');
        }
    }

    fn write_source(&self, out: &mut Vec<u8>, snapshot: &[u8], ts: i64, tx_id: i64, lsn: i64) {
        out.extend_from_slice(
            b",\"source\":{\"version\":\"2.7.0.Final\",\"connector\":\"postgresql\",\
              \"name\":\"bank\",\"ts_ms\":",
        );
        push_int(out, ts);
        out.extend_from_slice(b",\"snapshot\":\"");
        out.extend_from_slice(snapshot);
        out.extend_from_slice(
            b"\",\"db\":\"bank\",\"schema\":\"public\",\"table\":\"accounts\",\"txId\":",
        );
        push_int(out, tx_id);
        out.extend_from_slice(b",\"lsn\":");
        push_int(out, lsn);
        out.extend_from_slice(b",\"xmin\":null}");
    }
}

fn random_owner(rng: &mut ChaCha8Rng) -> (u8, u8) {
    (
        rng.gen_range(0..FIRST_NAMES.len() as u32) as u8,
        rng.gen_range(0..LAST_NAMES.len() as u32) as u8,
    )
}

fn write_row(out: &mut Vec<u8>, key: u64, a: &Account) {
    out.extend_from_slice(b"{\"account_id\":");
    push_int(out, key as i64);
    out.extend_from_slice(b",\"owner\":\"");
    out.extend_from_slice(FIRST_NAMES[a.owner.0 as usize].as_bytes());
    out.push(b' ');
    out.extend_from_slice(LAST_NAMES[a.owner.1 as usize].as_bytes());
    out.extend_from_slice(b"\",\"balance\":");
    push_int(out, a.balance);
    out.extend_from_slice(b",\"updated_at\":");
    push_int(out, a.updated_at);
    out.push(b'}');
}

/// Writes all lines of `cfg`, newline-terminated, to `path` (created or truncated); returns
/// the generator after the last line (for [`TransfersGenerator::ground_truth`] and
/// [`TransfersGenerator::balances`]).
pub fn write_file(cfg: &TransfersGenConfig, path: &Path) -> std::io::Result<TransfersGenerator> {
    let mut gen = TransfersGenerator::new(cfg.clone());
    write_lines(path, |line| gen.next_line(line))?;
    Ok(gen)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::formats::DebeziumParser;
    use serde_json::Value;

    fn lines(cfg: &TransfersGenConfig) -> (Vec<Vec<u8>>, Vec<bool>, TransfersGenerator) {
        let mut gen = TransfersGenerator::new(cfg.clone());
        let (mut out, mut inside) = (Vec::new(), Vec::new());
        loop {
            let mut line = Vec::new();
            if !gen.next_line(&mut line) {
                break;
            }
            out.push(line);
            inside.push(gen.in_transaction());
        }
        (out, inside, gen)
    }

    fn cfg(events: u64, accounts: u64) -> TransfersGenConfig {
        TransfersGenConfig {
            events,
            accounts,
            ..TransfersGenConfig::default()
        }
    }

    #[test]
    fn deterministic_and_exact_line_counts() {
        for (events, accounts) in [(0, 0), (1, 5), (5, 5), (6, 5), (7, 5), (8, 5), (500, 20)] {
            let c = cfg(events, accounts);
            let (a, _, _) = lines(&c);
            assert_eq!(a.len() as u64, c.total_lines(), "{events} {accounts}");
            assert_eq!(a, lines(&c).0);
        }
        assert_ne!(
            lines(&cfg(500, 20)).0,
            lines(&TransfersGenConfig {
                seed: 1,
                ..cfg(500, 20)
            })
            .0
        );
    }

    /// Replays the stream: transactions are contiguous, `in_transaction` is exact, the sum of
    /// balances is constant at every transaction boundary, and the final state is the ground
    /// truth.
    #[test]
    fn transactions_balance_and_match_the_ground_truth() {
        for with_schema in [false, true] {
            let c = TransfersGenConfig {
                with_schema,
                ..cfg(20_000, 300)
            };
            let (ls, inside, gen) = lines(&c);
            let mut state: BTreeMap<i64, (i64, Value)> = BTreeMap::new();
            let mut sizes: BTreeMap<usize, u64> = BTreeMap::new();
            let mut tx_lines = 0usize;
            let mut seen_tx = std::collections::BTreeSet::new();
            let mut max_lsn = 0;
            for (i, l) in ls.iter().enumerate() {
                let tx = DebeziumParser::transaction_id(l).expect("a transaction id");
                let v: Value = serde_json::from_slice(l).unwrap();
                let v = if with_schema { &v["payload"] } else { &v };
                let next_tx = ls
                    .get(i + 1)
                    .map(|n| DebeziumParser::transaction_id(n).unwrap());
                assert_eq!(inside[i], next_tx.as_ref() == Some(&tx), "line {i}");
                if i == 0 || DebeziumParser::transaction_id(&ls[i - 1]).unwrap() != tx {
                    assert!(
                        seen_tx.insert(tx.clone()),
                        "transaction {tx} is not contiguous"
                    );
                    tx_lines = 0;
                }
                tx_lines += 1;
                let lsn = v["source"]["lsn"].as_i64().unwrap();
                assert!(lsn >= max_lsn);
                max_lsn = lsn;
                if v["op"] != "r" {
                    assert_eq!(
                        v["transaction"]["total_order"].as_u64(),
                        Some(tx_lines as u64)
                    );
                    let id = v["transaction"]["id"].as_str().unwrap();
                    assert!(id.starts_with(&format!("{}:", v["source"]["txId"])), "{id}");
                }
                let row = v["after"].clone();
                let key = row["account_id"].as_i64().unwrap();
                assert!(row["balance"].as_i64().unwrap() >= 0);
                state.insert(key, (lsn, row));
                if !inside[i] {
                    *sizes.entry(tx_lines).or_default() += 1;
                    if i + 1 >= 300 {
                        let sum: i64 = state
                            .values()
                            .map(|(_, r)| r["balance"].as_i64().unwrap())
                            .sum();
                        assert_eq!(sum, gen.initial_total(), "after line {i}");
                    }
                }
            }
            assert_eq!(
                sizes.get(&300),
                Some(&1),
                "the snapshot is one transaction: {sizes:?}"
            );
            for s in [1, 2, 3] {
                assert!(sizes.get(&s).copied().unwrap_or(0) > 10, "{sizes:?}");
            }
            let truth = gen.ground_truth();
            assert_eq!(truth.len(), state.len());
            for (k, (lsn, json)) in &truth {
                let (l, row) = &state[&(*k as i64)];
                assert_eq!(
                    (lsn, &serde_json::from_str::<Value>(json).unwrap()),
                    (l, row)
                );
            }
            assert_eq!(gen.balances().values().sum::<i64>(), gen.initial_total());
        }
    }

    #[test]
    fn schema_wrapped_lines_parse() {
        let schema: Value = serde_json::from_str(TRANSFERS_SCHEMA_JSON).unwrap();
        let after: Vec<&str> = schema["fields"][1]["fields"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["field"].as_str().unwrap())
            .collect();
        let cols: Vec<&str> = TRANSFERS_COLUMNS.iter().map(|c| c.0).collect();
        assert_eq!(after, cols);
    }

    #[test]
    fn write_file_writes_all_lines() {
        let c = cfg(3_000, 100);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.jsonl");
        let gen = write_file(&c, &path).unwrap();
        let mut expected = Vec::new();
        for l in lines(&c).0 {
            expected.extend_from_slice(&l);
            expected.push(b'\n');
        }
        assert_eq!(std::fs::read(&path).unwrap(), expected);
        assert_eq!(gen.position(), 3_000);
    }
}
