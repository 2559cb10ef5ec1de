//! Running a build's stages at the same time, as BuildKit's solver runs the
//! independent branches of its graph.
//!
//! Every stage the target needs gets a thread. A stage starts once its
//! `FROM <stage>` parent is built and a job slot is free (`--jobs`); a
//! `COPY --from=<stage>` or `RUN --mount=from=<stage>` waits for the stage
//! it reads only when it gets there, giving its slot back while it waits.
//! Slots go to the ready stage that comes first in the build order (the
//! graph's topological order, file order where the edges allow), so
//! `--jobs 1` builds the stages one after another in exactly that order.
//!
//! The first error wins: it is kept, the other stages stop before their
//! next step, and the [`CancelHandle`] kills the RUNs still running, so
//! their scratch directories and mounts are cleaned up as they unwind.
//! What a stage builds never depends on when it ran, so the image is the
//! same for any `--jobs`.

use std::collections::{BTreeMap, HashMap};
use std::ops::Range;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use hoist_parser::graph::Base;
use hoist_parser::{Graph, StageIndex};
use hoist_sandbox::CancelHandle;

use crate::build::StageResult;
use crate::error::BuildError;

/// The shared state of one build's stages.
pub(crate) struct Schedule<'g> {
    graph: &'g Graph,
    /// Position in the build order of each stage the build needs.
    rank: HashMap<StageIndex, usize>,
    /// The numbers of each stage's steps.
    step_blocks: HashMap<StageIndex, Range<usize>>,
    jobs: usize,
    cancel: Option<&'g CancelHandle>,
    state: Mutex<State>,
    changed: Condvar,
}

#[derive(Default)]
struct State {
    results: HashMap<StageIndex, Arc<StageResult>>,
    started: Vec<bool>,
    /// Stages that gave their slot back to wait for a stage they read,
    /// by rank: the stage they wait for.
    waiting: BTreeMap<usize, StageIndex>,
    /// Job slots in use.
    running: usize,
    /// The first error of the build; once set, nothing more starts.
    error: Option<BuildError>,
    /// Threads waiting for a change (for tests).
    sleeping: usize,
}

impl<'g> Schedule<'g> {
    /// `order` is the stages to build, each after the stages it needs;
    /// `step_blocks` the numbers of each one's steps.
    pub(crate) fn new(
        graph: &'g Graph,
        order: &[StageIndex],
        step_blocks: HashMap<StageIndex, Range<usize>>,
        jobs: usize,
        cancel: Option<&'g CancelHandle>,
    ) -> Self {
        let rank = order.iter().enumerate().map(|(r, &i)| (i, r)).collect();
        Self {
            graph,
            rank,
            step_blocks,
            jobs: jobs.max(1),
            cancel,
            state: Mutex::new(State {
                started: vec![false; order.len()],
                ..State::default()
            }),
            changed: Condvar::new(),
        }
    }

    /// The numbers of stage `index`'s steps, whenever the stage runs.
    pub(crate) fn step_block(&self, index: StageIndex) -> Range<usize> {
        self.step_blocks.get(&index).cloned().unwrap_or(0..0)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panicking stage thread poisons nothing we cannot read: the
        // state is only ever changed in whole steps.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn wait<'m>(&self, mut guard: MutexGuard<'m, State>) -> MutexGuard<'m, State> {
        guard.sleeping += 1;
        let mut guard = self.changed.wait(guard).unwrap_or_else(|e| e.into_inner());
        guard.sleeping -= 1;
        guard
    }

    /// Whether the build is being abandoned (a stage failed, or the user
    /// interrupted it).
    pub(crate) fn cancelled(&self) -> bool {
        self.cancel.is_some_and(CancelHandle::is_cancelled) || self.lock().error.is_some()
    }

    /// Blocks until stage `index` may start: its parent stage is built and
    /// a job slot is free for it. Takes the slot.
    pub(crate) fn start(&self, index: StageIndex) -> Result<(), BuildError> {
        let rank = self.rank[&index];
        let mut state = self.lock();
        loop {
            if state.error.is_some() || self.cancel.is_some_and(CancelHandle::is_cancelled) {
                return Err(BuildError::Cancelled);
            }
            if self.next_in_line(&state) == Some(rank) {
                state.started[rank] = true;
                state.running += 1;
                // The next in line may be another waiting stage now.
                self.changed.notify_all();
                return Ok(());
            }
            state = self.wait(state);
        }
    }

    /// The rank of the stage that gets the next free slot: the first in
    /// the build order among the stages not started whose parent is built
    /// and the stages whose awaited stage is built.
    fn next_in_line(&self, state: &State) -> Option<usize> {
        if state.running >= self.jobs {
            return None;
        }
        let resuming = state
            .waiting
            .iter()
            .find(|(_, dep)| state.results.contains_key(dep))
            .map(|(&rank, _)| rank);
        let fresh = self
            .rank
            .iter()
            .filter(|&(&index, &rank)| {
                !state.started[rank]
                    && match self.graph.stages[index].base {
                        Base::Stage(parent) => state.results.contains_key(&parent),
                        _ => true,
                    }
            })
            .map(|(_, &rank)| rank)
            .min();
        match (resuming, fresh) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// The result of stage `dep`, which the running stage `me` reads:
    /// at once if it is built, else after waiting for it with `me`'s slot
    /// given back.
    pub(crate) fn result(
        &self,
        me: StageIndex,
        dep: StageIndex,
    ) -> Result<Arc<StageResult>, BuildError> {
        let rank = self.rank[&me];
        let mut state = self.lock();
        if let Some(result) = state.results.get(&dep) {
            return Ok(Arc::clone(result));
        }
        // Only a stage earlier in the build order may be waited for, so no
        // two stages ever wait for each other (an ONBUILD trigger's
        // `--from` is not in the graph).
        if self.rank.get(&dep).is_none_or(|&r| r >= rank) {
            return Err(BuildError::StageOrder {
                stage: self.graph.stages[me].display_name().to_string(),
                dependency: self.graph.stages[dep].display_name().to_string(),
            });
        }
        state.running -= 1;
        state.waiting.insert(rank, dep);
        self.changed.notify_all();
        loop {
            let cancelled =
                state.error.is_some() || self.cancel.is_some_and(CancelHandle::is_cancelled);
            if cancelled {
                // The caller unwinds as a stage that holds its slot.
                state.waiting.remove(&rank);
                state.running += 1;
                return Err(BuildError::Cancelled);
            }
            if state.results.contains_key(&dep) && self.next_in_line(&state) == Some(rank) {
                state.waiting.remove(&rank);
                state.running += 1;
                self.changed.notify_all();
                return Ok(Arc::clone(&state.results[&dep]));
            }
            state = self.wait(state);
        }
    }

    /// Stage `index` is built: its slot is free and its readers may go on.
    pub(crate) fn finish(&self, index: StageIndex, result: StageResult) {
        let mut state = self.lock();
        state.running -= 1;
        state.results.insert(index, Arc::new(result));
        self.changed.notify_all();
    }

    /// A stage failed (or gave up, with [`BuildError::Cancelled`]). The
    /// first error is kept; every other stage is stopped, and the running
    /// RUNs are killed. `held` says whether the stage held a slot.
    pub(crate) fn fail(&self, error: BuildError, held: bool) {
        let mut state = self.lock();
        if held {
            state.running -= 1;
        }
        let first = state.error.is_none();
        if first {
            state.error = Some(error);
        }
        self.changed.notify_all();
        drop(state);
        if first && let Some(cancel) = self.cancel {
            cancel.cancel();
        }
    }

    /// The build's outcome: the first error, or every stage's result.
    pub(crate) fn into_results(self) -> Result<HashMap<StageIndex, Arc<StageResult>>, BuildError> {
        let state = self.state.into_inner().unwrap_or_else(|e| e.into_inner());
        match state.error {
            Some(error) => Err(error),
            None => Ok(state.results),
        }
    }
}

/// Marks the build failed if a stage thread panics, so that the stages
/// waiting for it do not wait forever; the panic itself reaches the
/// caller when the thread is joined.
pub(crate) struct PanicGuard<'s, 'g> {
    pub(crate) schedule: &'s Schedule<'g>,
    pub(crate) index: StageIndex,
}

impl Drop for PanicGuard<'_, '_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let name = self.schedule.graph.stages[self.index].display_name();
            self.schedule.fail(
                BuildError::StagePanicked {
                    stage: name.to_string(),
                },
                false,
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::mpsc;
    use std::time::Duration;

    use super::*;

    fn graph(dockerfile: &str) -> (Graph, Vec<StageIndex>) {
        let parsed = hoist_parser::parse(dockerfile).unwrap();
        let graph = Graph::build(&parsed, &BTreeMap::new()).unwrap();
        let order = graph.stages_for_target(None).unwrap();
        (graph, order)
    }

    fn until_sleeping(schedule: &Schedule<'_>, n: usize) {
        while schedule.lock().sleeping < n {
            std::thread::yield_now();
        }
    }

    /// A stage that asked first but is not first in line must be woken
    /// when the one before it takes its slot (a lost wake-up hung builds).
    #[test]
    fn r8_a_stage_waiting_for_its_turn_starts_when_a_slot_is_free() {
        let (graph, order) = graph(
            "FROM scratch AS a\nFROM scratch AS b\nFROM scratch\nCOPY --from=a / /\nCOPY --from=b / /\n",
        );
        let schedule = Schedule::new(&graph, &order, HashMap::new(), 2, None);
        let (sent, started) = mpsc::channel();
        std::thread::scope(|s| {
            s.spawn(|| {
                schedule.start(1).unwrap();
                sent.send(1).unwrap();
            });
            // Stage 1 waits: stage 0 comes first in the build order.
            until_sleeping(&schedule, 1);
            schedule.start(0).unwrap();
            // A guard against hanging, not a measure.
            let woke = started.recv_timeout(Duration::from_secs(60));
            assert_eq!(woke, Ok(1), "stage 1 was never woken");
        });
        // Two slots are taken: the last stage waits for one.
        assert_eq!(schedule.next_in_line(&schedule.lock()), None);
        schedule.finish(0, result());
        assert_eq!(schedule.next_in_line(&schedule.lock()), Some(2));
    }

    /// A stage reading another gives its slot back while it waits, and
    /// gets one again once the stage it reads is built.
    #[test]
    fn r8_a_waiting_reader_gives_its_slot_back() {
        let (graph, order) = graph(
            "FROM scratch AS a\nFROM scratch AS b\nCOPY --from=a / /\nFROM scratch AS c\n\
             FROM scratch\nCOPY --from=b / /\nCOPY --from=c / /\n",
        );
        assert_eq!(order, [0, 1, 2, 3]);
        let schedule = Schedule::new(&graph, &order, HashMap::new(), 2, None);
        schedule.start(0).unwrap();
        schedule.start(1).unwrap();
        assert_eq!(
            schedule.next_in_line(&schedule.lock()),
            None,
            "both slots taken"
        );
        std::thread::scope(|s| {
            let reader = s.spawn(|| schedule.result(1, 0).map(|_| ()));
            until_sleeping(&schedule, 1);
            // b waits for a without its slot: c may take it.
            assert_eq!(schedule.next_in_line(&schedule.lock()), Some(2));
            schedule.start(2).unwrap();
            schedule.finish(0, result());
            reader.join().unwrap().unwrap();
        });
        assert_eq!(schedule.lock().running, 2, "b and c hold the slots");
    }

    /// A stage is never waited for by one before it in the build order (a
    /// trigger's `--from` is not in the graph): that could wait forever.
    #[test]
    fn r8_a_later_stage_is_never_waited_for() {
        let (graph, order) = graph(
            "FROM scratch AS a\nFROM scratch AS b\nFROM scratch\nCOPY --from=a / /\nCOPY --from=b / /\n",
        );
        let schedule = Schedule::new(&graph, &order, HashMap::new(), 2, None);
        schedule.start(0).unwrap();
        let err = schedule.result(0, 1).map(|_| ()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "stage a reads stage b, which is not built before it"
        );
    }

    fn result() -> StageResult {
        StageResult {
            config: hoist_store::image_config::ImageConfig::scratch("amd64", "linux"),
            stack: Default::default(),
            args: Vec::new(),
            diverged: None,
            steps: 0,
            cached: 0,
            latest_cached: None,
        }
    }
}
