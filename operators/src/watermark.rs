//! `WatermarkGate`: splits an event-time stream into on-time and late records by a watermark
//! that is a function of the epochs' data (the largest event time seen up to an epoch, over all
//! workers, minus the allowed lateness), and emits the watermark of every epoch.
//!
//! # Example
//! ```
//! use timely::dataflow::channels::pact::Pipeline;
//! use timely::dataflow::operators::generic::Operator;
//! use timely::dataflow::operators::{Capture, ToStream, capture::Extract};
//! use tidewater_operators::WatermarkGate;
//!
//! let (on_time, late, marks) = timely::example(|scope| {
//!     // (epoch, event time): the epoch is the timely time of the record.
//!     let records = vec![(0u64, 100i64), (0, 50), (1, 70), (1, 120), (2, 89), (2, 90)];
//!     let stream = records
//!         .to_stream(scope)
//!         .container::<Vec<_>>()
//!         .unary(Pipeline, "AtEpoch", |_, _| {
//!             |input, output| {
//!                 input.for_each_stamp(|cap, data| {
//!                     for r in data.flat_map(|b| b.drain(..)) {
//!                         output.session(&cap.delayed(&r.0, 0)).give(r);
//!                     }
//!                 })
//!             }
//!         });
//!     let (on_time, late, marks) =
//!         stream.watermark_gate(|(_, t): &(u64, i64)| Some(*t), 10, i64::MIN, |_, _, _, _| {});
//!     (on_time.capture(), late.capture(), marks.capture())
//! });
//! let flat = |v: Vec<(u64, Vec<(u64, i64)>)>| {
//!     let mut v: Vec<_> = v.into_iter().flat_map(|(_, d)| d).map(|(_, t)| t).collect();
//!     v.sort();
//!     v
//! };
//! // After epoch 0 the watermark is 100 - 10 = 90: 70 (epoch 1) and 89 (epoch 2) are late;
//! // after epoch 1 it is 110, so 90 (epoch 2) is late too.
//! assert_eq!(flat(on_time.extract()), vec![50, 100, 120]);
//! let late: Vec<(i64, i64)> = late
//!     .extract()
//!     .into_iter()
//!     .flat_map(|(_, d)| d)
//!     .map(|((_, t), w)| (t, w))
//!     .collect();
//! assert_eq!(late, vec![(70, 90), (89, 110), (90, 110)]);
//! assert_eq!(marks.extract(), vec![(0, vec![90]), (1, vec![110])]);
//! ```
//!
//! Records of epoch `e` are compared with `W(e - 1)`, the watermark after the epochs before
//! it: `W(e) = max(W(e - 1), max event time of epoch e - lateness)`, starting from `initial`
//! (`i64::MIN`, or the watermark of the epoch a restart resumes after). A record whose event
//! time is below that watermark is late; `event_time` returning `None` (a delete, which
//! carries no event time) is always on time and does not move the watermark. Every worker
//! sees every worker's maxima (broadcast), so all workers hold the same watermark, and a replay
//! of the same epochs reproduces every decision exactly, whatever the number of workers.

use std::collections::BTreeMap;

use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::core::OkErr;
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::operators::vec::Broadcast;
use timely::dataflow::StreamVec;
use timely::ExchangeData;

use crate::EpochStash;

/// See the module docs.
pub trait WatermarkGate<'scope, D> {
    /// Returns `(on_time, late, watermarks)`: the on-time records, the late records each with
    /// the watermark it was compared with, and at each epoch whose data moved the watermark,
    /// its new value `W(e)` (the same on every worker).
    ///
    /// `on_epoch(epoch, late, watermark, max)` is called as the gate passes (a part of) an
    /// epoch's records on this worker, before their epoch can be complete downstream: how
    /// many of them were late, the watermark they were compared with, and their largest event
    /// time.
    #[allow(clippy::type_complexity)]
    fn watermark_gate<F, G>(
        self,
        event_time: F,
        lateness: i64,
        initial: i64,
        on_epoch: G,
    ) -> (
        StreamVec<'scope, u64, D>,
        StreamVec<'scope, u64, (D, i64)>,
        StreamVec<'scope, u64, i64>,
    )
    where
        F: Fn(&D) -> Option<i64> + 'static,
        G: FnMut(u64, u64, i64, Option<i64>) + 'static;
}

impl<'scope, D: ExchangeData + Clone> WatermarkGate<'scope, D> for StreamVec<'scope, u64, D> {
    fn watermark_gate<F, G>(
        self,
        event_time: F,
        lateness: i64,
        initial: i64,
        mut on_epoch: G,
    ) -> (
        StreamVec<'scope, u64, D>,
        StreamVec<'scope, u64, (D, i64)>,
        StreamVec<'scope, u64, i64>,
    )
    where
        F: Fn(&D) -> Option<i64> + 'static,
        G: FnMut(u64, u64, i64, Option<i64>) + 'static,
    {
        let event_time = std::rc::Rc::new(event_time);
        let et = event_time.clone();
        // The largest event time of each batch, on this worker.
        let maxima = self
            .clone()
            .unary(Pipeline, "EventTimeMax", move |_cap, _info| {
                move |input, output| {
                    input.for_each_stamp(|cap, data| {
                        let max = data.flat_map(|b| b.iter()).filter_map(|d| et(d)).max();
                        if let Some(m) = max {
                            output.session(&cap).give(m);
                        }
                    });
                }
            })
            .broadcast();
        // W(e) at e, once every worker's maxima of e are in (when it moved).
        let watermarks: StreamVec<'scope, u64, i64> =
            maxima.unary_frontier(Pipeline, "Watermark", move |_cap, _info| {
                let mut stash: EpochStash<i64> = EpochStash::new();
                let mut current = initial;
                move |(input, frontier), output| {
                    stash.stash(input, output.output_index());
                    while let Some((cap, maxima)) = stash.pop_complete(frontier) {
                        let max = maxima.into_iter().max().expect("stashed maxima");
                        let next = current.max(max.saturating_sub(lateness));
                        if next > current {
                            current = next;
                            output.session(&cap).give(current);
                        }
                    }
                }
            });
        // The gate: records of epoch e wait until W(e - 1) is known.
        #[allow(clippy::type_complexity)]
        let split: StreamVec<'scope, u64, Result<D, (D, i64)>> = self.binary_frontier(
            watermarks.clone(),
            Pipeline,
            Pipeline,
            "WatermarkGate",
            move |_cap, _info| {
                let mut stash: EpochStash<D> = EpochStash::new();
                // Watermarks received, by epoch, not yet folded into `current`.
                let mut marks: BTreeMap<u64, i64> = BTreeMap::new();
                let mut current = initial;
                move |(input, frontier), (wm, wm_frontier), output| {
                    stash.stash(input, output.output_index());
                    wm.for_each_stamp(|cap, data| {
                        let Some(&e) = cap.least() else { return };
                        for w in data.flat_map(|b| b.drain(..)) {
                            let m = marks.entry(e).or_insert(w);
                            *m = (*m).max(w);
                        }
                    });
                    while let Some(epoch) = stash.first_epoch() {
                        // Every watermark of the epochs before `epoch` is in.
                        if wm_frontier.frontier().iter().any(|t| *t < epoch) {
                            break;
                        }
                        while let Some(entry) = marks.first_entry() {
                            if *entry.key() >= epoch {
                                break;
                            }
                            current = current.max(entry.remove());
                        }
                        let complete = !frontier.frontier().less_equal(&epoch);
                        let (cap, data) = if complete {
                            stash.pop_first().expect("first epoch")
                        } else {
                            let (cap, data) = stash.first_mut().expect("first epoch");
                            (cap.clone(), std::mem::take(data))
                        };
                        let mut session = output.session(&cap);
                        let (mut late, mut max) = (0, None);
                        for d in data {
                            let t = event_time(&d);
                            max = max.max(t);
                            match t {
                                Some(t) if t < current => {
                                    late += 1;
                                    session.give(Err((d, current)))
                                }
                                _ => session.give(Ok(d)),
                            }
                        }
                        on_epoch(epoch, late, current, max);
                        if !complete {
                            break;
                        }
                    }
                }
            },
        );
        let (on_time, late): (StreamVec<'scope, u64, D>, StreamVec<'scope, u64, (D, i64)>) =
            split.ok_err(|r| r);
        (on_time, late, watermarks)
    }
}
