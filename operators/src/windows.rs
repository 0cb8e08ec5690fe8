//! `CloseWindows`: gives each row of an event-time window aggregate a `closed` flag that turns
//! true once the watermark passes the window's end, as updates of a collection (`on_update`),
//! or holds the rows back until then (`on_close`).
//!
//! # Example
//! ```
//! use timely::dataflow::operators::{Capture, ToStream, capture::Extract};
//! use tidewater_operators::{CloseWindows, Emit};
//!
//! let out = timely::example(|scope| {
//!     // Rows (window end, count) as updates at epochs 0 and 1.
//!     let rows = vec![((10i64, 1u32), 0u64, 1isize), ((20, 1), 0, 1), ((20, 1), 1, -1), ((20, 2), 1, 1)];
//!     let rows = rows.to_stream(scope).container::<Vec<_>>();
//!     // The watermark reaches 10 at epoch 1.
//!     let marks = vec![10i64].to_stream(scope).container::<Vec<_>>();
//!     rows.close_windows(marks, |(end, _): &(i64, u32)| *end, Emit::OnUpdate, i64::MIN).capture()
//! });
//! // Consolidated (the operator's output is a stream of updates).
//! let mut sums = std::collections::BTreeMap::new();
//! for (d, t, r) in out.extract().into_iter().flat_map(|(_, d)| d) {
//!     *sums.entry((d, t)).or_insert(0) += r;
//! }
//! let out: Vec<_> = sums.into_iter().filter(|(_, r)| *r != 0).map(|((d, t), r)| (d, t, r)).collect();
//! // Window 10 closes at epoch 0 (the watermark stream has time 0 here): its row is written
//! // closed; window 20 stays open and is corrected at epoch 1.
//! assert_eq!(
//!     out,
//!     vec![
//!         (((10, 1), true), 0, 1),
//!         (((20, 1), false), 0, 1),
//!         (((20, 1), false), 1, -1),
//!         (((20, 2), false), 1, 1),
//!     ]
//! );
//! ```
//!
//! The input is the update stream of a collection of window rows (`(row, epoch, diff)`), the
//! watermarks those of [`crate::WatermarkGate`] (`W(e)` at epoch e when it moved; the same on
//! every worker). At each epoch e, once both inputs are complete for it:
//!
//! - An update of a window that was open before e (its end above `W(e - 1)`) joins the
//!   window's open rows; with [`Emit::OnUpdate`] it is also output at once as not closed.
//! - An update of a window that was already closed before e (the input changed a closed
//!   window: a delete, or an update that moved a record out of it) is output at once as closed,
//!   in both modes: a correction, never lost.
//! - Then every window whose end is at or below `W(e)` closes: its open rows are output as
//!   closed (with `OnUpdate` as a retraction of the open row and an insertion of the closed
//!   one) and forgotten. The operator keeps only the rows of open windows.
//!
//! Rows are exchanged by their hash, so a row's insertion and retraction meet on one worker.

use std::collections::{BTreeMap, HashMap};
use std::hash::{DefaultHasher, Hash, Hasher};

use timely::dataflow::channels::pact::{Exchange, Pipeline};
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::StreamVec;
use timely::ExchangeData;

use crate::EpochStash;

/// When the rows of a window are output.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Emit {
    /// At once, corrected as data arrives; closed once the watermark passes the window's end.
    OnUpdate,
    /// Once, closed, when the watermark passes the window's end.
    OnClose,
}

/// See the module docs.
pub trait CloseWindows<'scope, D> {
    /// `window_end` gives a row's window end (in the watermark's units); `initial` is the
    /// watermark before the first epoch (`i64::MIN`, or the watermark a restart resumes at).
    fn close_windows<F>(
        self,
        watermarks: StreamVec<'scope, u64, i64>,
        window_end: F,
        emit: Emit,
        initial: i64,
    ) -> StreamVec<'scope, u64, ((D, bool), u64, isize)>
    where
        F: Fn(&D) -> i64 + 'static;
}

impl<'scope, D> CloseWindows<'scope, D> for StreamVec<'scope, u64, (D, u64, isize)>
where
    D: ExchangeData + Hash + Eq + Clone,
{
    fn close_windows<F>(
        self,
        watermarks: StreamVec<'scope, u64, i64>,
        window_end: F,
        emit: Emit,
        initial: i64,
    ) -> StreamVec<'scope, u64, ((D, bool), u64, isize)>
    where
        F: Fn(&D) -> i64 + 'static,
    {
        let pact = Exchange::new(|(d, _, _): &(D, u64, isize)| {
            let mut h = DefaultHasher::new();
            d.hash(&mut h);
            h.finish()
        });
        self.binary_frontier(
            watermarks,
            pact,
            Pipeline,
            "CloseWindows",
            move |_cap, _info| {
                let mut data: EpochStash<(D, u64, isize)> = EpochStash::new();
                let mut marks: EpochStash<i64> = EpochStash::new();
                // Open windows by end: their rows with multiplicities.
                let mut open: BTreeMap<i64, HashMap<D, isize>> = BTreeMap::new();
                let mut current = initial;
                move |(input, frontier), (wm, wm_frontier), output| {
                    let port = output.output_index();
                    // Updates by their own time (at or after the message's).
                    input.for_each_stamp(|cap, batches| {
                        for (d, t, r) in batches.flat_map(|b| b.drain(..)) {
                            let cap = cap.delayed(&t, port);
                            data.push(cap, (d, t, r));
                        }
                    });
                    marks.stash(wm, port);
                    loop {
                        let epoch = match (data.first_epoch(), marks.first_epoch()) {
                            (Some(a), Some(b)) => a.min(b),
                            (Some(a), None) => a,
                            (None, Some(b)) => b,
                            (None, None) => break,
                        };
                        if frontier.frontier().less_equal(&epoch)
                            || wm_frontier.frontier().less_equal(&epoch)
                        {
                            break;
                        }
                        let mut cap = None;
                        let before = current;
                        if marks.first_epoch() == Some(epoch) {
                            let (c, ws) = marks.pop_first().expect("first");
                            current = ws.into_iter().fold(current, i64::max);
                            cap = Some(c);
                        }
                        let updates = if data.first_epoch() == Some(epoch) {
                            let (c, u) = data.pop_first().expect("first");
                            cap = Some(c);
                            u
                        } else {
                            Vec::new()
                        };
                        let cap = cap.expect("an epoch with data or a watermark");
                        let mut session = output.session(&cap);
                        for (d, t, r) in updates {
                            let end = window_end(&d);
                            if end > before {
                                let rows = open.entry(end).or_default();
                                let n = rows.entry(d.clone()).or_insert(0);
                                *n += r;
                                if *n == 0 {
                                    rows.remove(&d);
                                }
                                if emit == Emit::OnUpdate {
                                    session.give(((d, false), t, r));
                                }
                            } else {
                                session.give(((d, true), t, r));
                            }
                        }
                        while let Some(entry) = open.first_entry() {
                            if *entry.key() > current {
                                break;
                            }
                            for (d, n) in entry.remove() {
                                if emit == Emit::OnUpdate {
                                    session.give(((d.clone(), false), epoch, -n));
                                }
                                session.give(((d, true), epoch, n));
                            }
                        }
                    }
                }
            },
        )
    }
}
