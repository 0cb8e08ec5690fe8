//! The Kafka source at scale and across tables (issue 5, tests): a 100k-event Debezium stream
//! on 3 partitions (out of order, duplicates, deletes, tombstones) gives the model's table at
//! 1 and 2 workers, as a 2-process cluster, and after a `kill -9` mid-stream and a restart;
//! two topics into two tables in one pipeline are committed at one consistent cut.

use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use tidewater_connectors::delta::read_manifests;
use tidewater_connectors::generator::reference_apply;
use tidewater_e2e::kafka::{tansu_or_skip, unique_topic, Broker};
use tidewater_e2e::{
    canonical, column_sum, deltalake_rows, recorded_positions, reference_rows, tidewater_bin,
    tidewater_ok,
};

use crate::kafka_pipeline::{
    all_positions, assert_fully_recorded, bank_messages, pipeline, produce, run_args,
    transfer_messages, values_up_to, Produced,
};

/// The final `customers` table equals the model over every produced value, and every
/// partition is recorded up to its end.
fn check_final(lakehouse: &Path, produced: &Produced, topic: &str) {
    let positions = all_positions(lakehouse);
    assert_fully_recorded(&positions, produced, topic);
    let values = values_up_to(&positions, produced, topic, "cdc", None);
    let model = reference_apply(
        values.iter().map(|v| v.as_slice()),
        &["customer_id"],
        "__lsn",
    );
    assert_eq!(
        canonical(&deltalake_rows(&lakehouse.join("customers"), None).unwrap()),
        canonical(&reference_rows(&model)),
        "{}",
        lakehouse.display()
    );
}

#[test]
fn a_100k_event_stream_at_1_and_2_workers_as_a_cluster_and_after_kill_9() {
    let Some(tansu) = tansu_or_skip("kafka_scale") else {
        return;
    };
    let broker = Broker::start(&tansu).unwrap();
    let topic = unique_topic("bank100k");
    broker.create_topic(&topic, 3).unwrap();
    let mut produced = Produced::new();
    let values = bank_messages(17, 100_000, "s");
    assert!(values.len() > 100_000);
    produce(&broker, &topic, &values, &mut produced);
    let dir = tempfile::tempdir().unwrap();
    let mk = |name: &str| {
        pipeline(
            dir.path(),
            name,
            &broker.brokers(),
            &topic,
            "customers",
            "customer_id",
            "commit_every_records = 10000",
        )
    };
    for workers in [1, 2] {
        let (p, lakehouse) = mk(&format!("w{workers}"));
        let started = Instant::now();
        tidewater_ok(
            &run_args(&p, workers)
                .iter()
                .map(String::as_str)
                .collect::<Vec<_>>(),
        );
        eprintln!("{workers} worker(s): {:.2?}", started.elapsed());
        check_final(&lakehouse, &produced, &topic);
    }
    let (p, lakehouse) = mk("cluster");
    let p_str = p.display().to_string();
    tidewater_ok(&[
        "cluster",
        &p_str,
        "--processes",
        "2",
        "--workers",
        "1",
        "--exit-when-idle",
    ]);
    check_final(&lakehouse, &produced, &topic);

    // kill -9 once some epochs are committed, then restart.
    let (p, lakehouse) = mk("killed");
    let mut child = Command::new(tidewater_bin())
        .args(run_args(&p, 2))
        .env("TIDEWATER_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let second = lakehouse.join("customers/_delta_log/00000000000000000001.json");
    let started = Instant::now();
    while !second.exists() && started.elapsed() < Duration::from_secs(120) {
        std::thread::sleep(Duration::from_millis(10));
    }
    child.kill().unwrap();
    let status = child.wait().unwrap();
    assert_eq!(
        status.signal(),
        Some(9),
        "the run ended before the kill: {status}"
    );
    tidewater_ok(
        &run_args(&p, 2)
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
    );
    check_final(&lakehouse, &produced, &topic);
}

/// The sources of the two-table pipeline: two sources of one topic each, or one source of
/// both topics with each table naming its topic.
fn two_table_pipeline(
    lakehouse: &Path,
    brokers: &str,
    customers: &str,
    accounts: &str,
    one_source: bool,
) -> String {
    let (sources, (cs, ct), (as_, at)) = if one_source {
        (
            format!(
                "[[source]]\nname = \"cdc\"\nkind = \"kafka\"\nbrokers = \"{brokers}\"\n\
                 topics = [\"{customers}\", \"{accounts}\"]\nmax_message_bytes = 65536\n"
            ),
            ("cdc", format!("topics = [\"{customers}\"]")),
            ("cdc", format!("topics = [\"{accounts}\"]")),
        )
    } else {
        (
            format!(
                "[[source]]\nname = \"customers_cdc\"\nkind = \"kafka\"\nbrokers = \"{brokers}\"\n\
                 topics = [\"{customers}\"]\nmax_message_bytes = 65536\n\n\
                 [[source]]\nname = \"accounts_cdc\"\nkind = \"kafka\"\nbrokers = \"{brokers}\"\n\
                 topics = [\"{accounts}\"]\n"
            ),
            ("customers_cdc", String::new()),
            ("accounts_cdc", String::new()),
        )
    };
    format!(
        r#"[pipeline]
name = "two"
lakehouse = "{}"
commit_interval_ms = 300
commit_every_records = 500
buckets = 4

{sources}
[[table]]
name = "customers"
from = "{cs}"
keys = ["customer_id"]
sequence_by = "__lsn"
{ct}

[[table]]
name = "accounts"
from = "{as_}"
keys = ["account_id"]
sequence_by = "__lsn"
{at}
"#,
        lakehouse.display()
    )
}

#[test]
fn two_topics_into_two_tables_at_one_consistent_cut() {
    let Some(tansu) = tansu_or_skip("kafka_scale") else {
        return;
    };
    let broker = Broker::start(&tansu).unwrap();
    let (customers, accounts) = (unique_topic("customers"), unique_topic("accounts"));
    broker.create_topic(&customers, 3).unwrap();
    broker.create_topic(&accounts, 1).unwrap();
    let (mut pc, mut pa) = (Produced::new(), Produced::new());
    produce(&broker, &customers, &bank_messages(23, 6_000, "t"), &mut pc);
    let (g, values) = transfer_messages(1);
    produce(&broker, &accounts, &values, &mut pa);
    for one_source in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let lakehouse = dir.path().join("lh");
        let p = dir.path().join("two.toml");
        std::fs::write(
            &p,
            two_table_pipeline(
                &lakehouse,
                &broker.brokers(),
                &customers,
                &accounts,
                one_source,
            ),
        )
        .unwrap();
        tidewater_ok(
            &run_args(&p, 2)
                .iter()
                .map(String::as_str)
                .collect::<Vec<_>>(),
        );
        let (cs, as_) = if one_source {
            ("cdc", "cdc")
        } else {
            ("customers_cdc", "accounts_cdc")
        };

        // The recorded cut, from both tables' commits.
        let mut positions = recorded_positions(&lakehouse.join("customers")).unwrap();
        for (e, s) in recorded_positions(&lakehouse.join("accounts")).unwrap() {
            positions.entry(e).or_default().extend(s);
        }
        // Every manifest: each table at its version is the model over its topic's ranges up to
        // the manifest's epoch, and accounts balance.
        let manifests = read_manifests(&lakehouse).unwrap();
        assert!(manifests.len() > 5, "{} manifests", manifests.len());
        let mut both = 0;
        for (e, m) in &manifests {
            let vc = values_up_to(&positions, &pc, &customers, cs, Some(*e));
            let mc = reference_apply(vc.iter().map(|v| v.as_slice()), &["customer_id"], "__lsn");
            let va = values_up_to(&positions, &pa, &accounts, as_, Some(*e));
            let ma = reference_apply(va.iter().map(|v| v.as_slice()), &["account_id"], "__lsn");
            if let Some(v) = m.tables.get("customers") {
                assert_eq!(
                    canonical(&deltalake_rows(&lakehouse.join("customers"), Some(*v)).unwrap()),
                    canonical(&reference_rows(&mc)),
                    "customers at the cut of epoch {e}"
                );
            }
            if let Some(v) = m.tables.get("accounts") {
                let rows = deltalake_rows(&lakehouse.join("accounts"), Some(*v)).unwrap();
                assert_eq!(
                    canonical(&rows),
                    canonical(&reference_rows(&ma)),
                    "accounts at epoch {e}"
                );
                assert_eq!(
                    column_sum(&rows, "balance"),
                    g.initial_total(),
                    "accounts at epoch {e}"
                );
                if m.tables.contains_key("customers") {
                    both += 1;
                }
            }
        }
        assert!(both > 5, "{both} cuts with both tables");
        // Everything was read.
        let last = values_up_to(&positions, &pc, &customers, cs, None);
        assert_eq!(
            last.len(),
            pc.values()
                .map(|m| m
                    .values()
                    .filter(|v| v.as_ref().is_some_and(|v| v.len() <= 65536))
                    .count())
                .sum::<usize>()
        );
    }
}
