//! Model test of event-time windows: `WatermarkGate` then `CloseWindows` over tumbling and
//! hopping window counts, fed random out-of-order and late event times in epochs at 1, 2 and
//! 4 workers, against a plain sequential model. Checked per epoch: the late records (with the
//! watermark each was compared with), the watermark, and the window rows with their `closed`
//! flag (`on_update`: every window, closed or not; `on_close`: only closed windows, each
//! emitted once); on-time + late = input (asserted as multisets). A proptest permutes the
//! records within epochs.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use proptest::prelude::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tidewater_operators::{CloseWindows, Emit, WatermarkGate};
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::operators::vec::Input;
use timely::dataflow::operators::{Inspect, Probe};
use timely::dataflow::{InputHandleVec, ProbeHandle};

/// (id, key, event time)
type R = (u32, u8, i64);
/// Window row: (key, window start, count)
type Row = (u8, i64, i64);

const LATENESS: i64 = 20;

/// Random records: event times mostly increasing with jitter, some late within the
/// lateness, some beyond it.
fn stream(seed: u64, n: usize) -> Vec<R> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut clock = 0i64;
    (0..n as u32)
        .map(|id| {
            clock += rng.gen_range(0..4);
            let roll = rng.gen_range(0..100);
            let t = if roll < 5 {
                clock - rng.gen_range(25..80)
            } else if roll < 15 {
                clock - rng.gen_range(5..20)
            } else {
                clock + rng.gen_range(-3..3)
            };
            (id, rng.gen_range(0..4), t)
        })
        .collect()
}

/// Per epoch: late records (sorted), watermark after, window rows as a multiset.
#[derive(Debug, PartialEq, Eq, Default, Clone)]
struct Out {
    late: Vec<(R, i64)>,
    watermark: Option<i64>,
    rows: BTreeMap<(Row, bool), i64>,
}

fn starts(t: i64, size: i64, slide: i64) -> Vec<i64> {
    let mut s = t.div_euclid(slide) * slide;
    let mut v = Vec::new();
    while s > t - size {
        v.push(s);
        s -= slide;
    }
    v
}

/// The sequential model: each epoch's output state (cumulative).
fn model(epochs: &[Vec<R>], size: i64, slide: i64, emit: Emit) -> Vec<Out> {
    let mut w: Option<i64> = None;
    let mut counts: BTreeMap<(u8, i64), i64> = BTreeMap::new();
    let mut late_all = Vec::new();
    let mut out = Vec::new();
    for recs in epochs {
        let before = w;
        let mut max = None;
        for r in recs {
            max = max.max(Some(r.2));
            match before {
                Some(x) if r.2 < x => late_all.push((*r, x)),
                _ => {
                    for s in starts(r.2, size, slide) {
                        *counts.entry((r.1, s)).or_default() += 1;
                    }
                }
            }
        }
        if let Some(m) = max {
            w = Some(w.map_or(m - LATENESS, |x| x.max(m - LATENESS)));
        }
        let mut rows = BTreeMap::new();
        for (&(k, s), &n) in &counts {
            let closed = w.is_some_and(|x| s + size <= x);
            if emit == Emit::OnUpdate || closed {
                rows.insert(((k, s, n), closed), 1);
            }
        }
        let mut late = late_all.clone();
        late.sort();
        out.push(Out {
            late,
            watermark: w,
            rows,
        });
    }
    out
}

type Captured = Arc<
    Mutex<(
        Vec<(u64, R, i64)>,
        Vec<(u64, i64)>,
        Vec<((Row, bool), u64, isize)>,
    )>,
>;

/// Runs the gate and the windows; returns each epoch's output and every on-time record.
fn run(epochs: &[Vec<R>], workers: usize, size: i64, slide: i64, emit: Emit) -> (Vec<Out>, Vec<R>) {
    let epochs = Arc::new(epochs.to_vec());
    let cap: Captured = Arc::new(Mutex::new(Default::default()));
    let on_time_all: Arc<Mutex<Vec<R>>> = Arc::default();
    let (e2, c2, o2) = (epochs.clone(), cap.clone(), on_time_all.clone());
    timely::execute(timely::Config::process(workers), move |worker| {
        let (index, peers) = (worker.index(), worker.peers());
        let mut input: InputHandleVec<u64, R> = InputHandleVec::new();
        let probe = ProbeHandle::new();
        let (c_late, c_marks, c_rows) = (c2.clone(), c2.clone(), c2.clone());
        let c_on_time = o2.clone();
        worker.dataflow::<u64, _, _>(|scope| {
            let recs = scope.input_from(&mut input);
            let (on_time, late, marks) =
                recs.watermark_gate(|r: &R| Some(r.2), LATENESS, i64::MIN, |_, _, _, _| {});
            late.inspect_core(move |event| {
                if let Ok((stamp, data)) = event {
                    let t = *stamp.expect_singleton();
                    let mut c = c_late.lock().unwrap();
                    c.0.extend(data.iter().map(|(r, w)| (t, *r, *w)));
                }
            });
            // Every worker builds the same dataflow; worker 0's watermarks are recorded.
            marks.clone().inspect_core(move |event| {
                if let (Ok((stamp, data)), 0) = (event, index) {
                    let t = *stamp.expect_singleton();
                    let mut c = c_marks.lock().unwrap();
                    c.1.extend(data.iter().map(|w| (t, *w)));
                }
            });
            let on_time = on_time.inspect(move |r| c_on_time.lock().unwrap().push(*r));
            // Window counts per (key, start), as a collection's updates: a changed count is
            // a retraction of the old row and an insertion of the new one.
            let updates = on_time.unary_frontier(
                timely::dataflow::channels::pact::Exchange::new(|r: &R| r.1 as u64),
                "Counts",
                move |_, _| {
                    let mut stash = tidewater_operators::EpochStash::new();
                    let mut counts: BTreeMap<(u8, i64), i64> = BTreeMap::new();
                    move |(input, frontier), output| {
                        stash.stash(input, output.output_index());
                        while let Some((cap, recs)) = stash.pop_complete(frontier) {
                            let t = *cap.time();
                            let mut session = output.session(&cap);
                            let mut delta: BTreeMap<(u8, i64), i64> = BTreeMap::new();
                            for r in recs {
                                for s in starts(r.2, size, slide) {
                                    *delta.entry((r.1, s)).or_default() += 1;
                                }
                            }
                            for ((k, s), d) in delta {
                                let n = counts.entry((k, s)).or_default();
                                if *n > 0 {
                                    session.give(((k, s, *n), t, -1isize));
                                }
                                *n += d;
                                session.give(((k, s, *n), t, 1isize));
                            }
                        }
                    }
                },
            );
            updates
                .close_windows(marks, move |r: &Row| r.1 + size, emit, i64::MIN)
                .inspect(move |u| c_rows.lock().unwrap().2.push(*u))
                .probe_with(&probe);
        });
        for (e, batch) in e2.iter().enumerate() {
            for r in batch.iter().skip(index).step_by(peers) {
                input.send(*r);
            }
            input.advance_to(e as u64 + 1);
            if e % 2 == 0 {
                worker.step();
            }
        }
        input.close();
        while !probe.done() {
            worker.step();
        }
    })
    .unwrap();
    let (late, marks, rows) = cap.lock().unwrap().clone();
    let mut out = Vec::new();
    let mut w = None;
    let mut acc: BTreeMap<(Row, bool), i64> = BTreeMap::new();
    for e in 0..epochs.len() as u64 {
        if let Some((_, m)) = marks.iter().find(|(t, _)| *t == e) {
            w = Some(*m);
        }
        for (row, _, d) in rows.iter().filter(|(_, t, _)| *t == e) {
            *acc.entry(*row).or_default() += *d as i64;
        }
        acc.retain(|_, n| *n != 0);
        assert!(acc.values().all(|n| *n == 1), "a row twice at epoch {e}");
        let mut l: Vec<(R, i64)> = late
            .iter()
            .filter(|(t, _, _)| *t <= e)
            .map(|(_, r, w)| (*r, *w))
            .collect();
        l.sort();
        out.push(Out {
            late: l,
            watermark: w,
            rows: acc.clone(),
        });
    }
    let on_time = on_time_all.lock().unwrap().clone();
    (out, on_time)
}

fn check(recs: &[R], per_epoch: usize, size: i64, slide: i64, emit: Emit, workers: usize) {
    let epochs: Vec<Vec<R>> = recs.chunks(per_epoch).map(|c| c.to_vec()).collect();
    let want = model(&epochs, size, slide, emit);
    let (got, on_time) = run(&epochs, workers, size, slide, emit);
    // Emitted + late = input: every record passed the gate exactly once, on time or late.
    let mut passed: Vec<R> = on_time;
    passed.extend(got.last().unwrap().late.iter().map(|(r, _)| *r));
    passed.sort();
    let mut input = recs.to_vec();
    input.sort();
    assert_eq!(passed, input, "on time + late = input, workers {workers}");
    for (e, (g, w)) in got.iter().zip(&want).enumerate() {
        assert_eq!(
            g, w,
            "epoch {e}, workers {workers}, {emit:?}, size {size} slide {slide}"
        );
    }
    let last = want.last().unwrap();
    assert!(!last.late.is_empty(), "the stream has late records");
}

#[test]
fn tumbling_and_hopping_windows_match_the_model_at_1_2_and_4_workers() {
    let recs = stream(3, 1_500);
    for workers in [1, 2, 4] {
        for emit in [Emit::OnUpdate, Emit::OnClose] {
            check(&recs, 60, 10, 10, emit, workers);
            check(&recs, 60, 30, 10, emit, workers);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(12))]
    #[test]
    fn permutations_within_epochs_do_not_change_the_result(seed in 0u64..1_000) {
        let mut recs = stream(seed, 400);
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        for chunk in recs.chunks_mut(40) {
            use rand::seq::SliceRandom;
            chunk.shuffle(&mut rng);
        }
        check(&recs, 40, 20, 5, Emit::OnUpdate, 2);
        check(&recs, 40, 20, 20, Emit::OnClose, 2);
    }
}
