//! Parallel stages (issue 8) with the fake sandbox: overlap, order and
//! cancellation proved by the order of events, never by timing. Where a
//! run waits for another, the wait is bounded only so that a broken
//! scheduler fails the test instead of hanging it.

#![allow(clippy::unwrap_used)] // test helpers panic with the failing call

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hoist_builder::progress::{Event, Progress};
use hoist_builder::{BuildError, Builder, StepError};
use hoist_sandbox::fake::{FakeSandbox, upperdir};
use hoist_sandbox::{CancelHandle, SandboxError};

use super::orchestration::{env, request};

/// How long a run waits for what another run does before it gives up: a
/// guard against hanging, not a measure of anything.
const GUARD: Duration = Duration::from_secs(60);

/// What the fake runs did, in order: `start X`, `end X`, ...
#[derive(Clone, Default)]
struct Log(Arc<Mutex<Vec<String>>>);

impl Log {
    fn push(&self, entry: String) {
        self.0.lock().unwrap().push(entry);
    }
    fn entries(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }
    fn position(&self, entry: &str) -> usize {
        let entries = self.entries();
        entries
            .iter()
            .position(|e| e == entry)
            .unwrap_or_else(|| panic!("{entry:?} not in {entries:?}"))
    }
}

/// Waits until `path` exists; false when the guard ran out.
fn wait_for(path: &Path) -> bool {
    let deadline = Instant::now() + GUARD;
    while !path.exists() {
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    true
}

/// A fake whose runs log `start NAME` and `end NAME` (NAME = argv[0]),
/// write `/NAME` into their layer, and follow the words after NAME:
/// `mark=M` creates `M` in the shared directory; `await=M` waits for it
/// (the run fails with 99 if it never comes); `exit=N` fails with N;
/// `until-cancelled` waits for `cancel`, then fails as cancelled.
fn rendezvous(shared: PathBuf, log: Log, cancel: Option<CancelHandle>) -> FakeSandbox {
    FakeSandbox::new(move |spec, _io| {
        let args: Vec<String> = spec
            .args
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        let name = args[0].clone();
        log.push(format!("start {name}"));
        for word in &args[1..] {
            if let Some(mark) = word.strip_prefix("mark=") {
                std::fs::write(shared.join(mark), "").unwrap();
            } else if let Some(mark) = word.strip_prefix("await=") {
                if !wait_for(&shared.join(mark)) {
                    log.push(format!("timeout {name}"));
                    return Ok(99);
                }
            } else if let Some(code) = word.strip_prefix("exit=") {
                log.push(format!("end {name}"));
                return Ok(code.parse().unwrap());
            } else if word == "until-cancelled" {
                let cancel = cancel.as_ref().unwrap();
                let deadline = Instant::now() + GUARD;
                while !cancel.is_cancelled() && Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(2));
                }
                if cancel.is_cancelled() {
                    log.push(format!("cancelled {name}"));
                    return Err(SandboxError::Cancelled);
                }
            }
        }
        let upper = upperdir(spec).expect("RUN writes a layer");
        std::fs::write(upper.join(&name), args.join(" ")).unwrap();
        log.push(format!("end {name}"));
        Ok(0)
    })
}

/// Records the progress events: `started N name`, `failed N`, ...
#[derive(Default)]
struct Events(Mutex<Vec<String>>);

impl Progress for Events {
    fn event(&self, event: Event<'_>) {
        let line = match event {
            Event::Started { step, name } => format!("started {} {name}", step.0),
            Event::Failed { step, .. } => format!("failed {}", step.0),
            Event::Canceled { step, .. } => format!("canceled {}", step.0),
            Event::Done { step, .. } => format!("done {}", step.0),
            _ => return,
        };
        self.0.lock().unwrap().push(line);
    }
}

impl Events {
    /// The step number of the step whose vertex name ends with `suffix`.
    fn step(&self, suffix: &str) -> String {
        let events = self.0.lock().unwrap();
        events
            .iter()
            .find_map(|e| {
                let rest = e.strip_prefix("started ")?;
                let (id, name) = rest.split_once(' ')?;
                name.ends_with(suffix).then(|| id.to_owned())
            })
            .unwrap_or_else(|| panic!("no step {suffix:?} in {events:?}"))
    }
    fn contains(&self, line: &str) -> bool {
        self.0.lock().unwrap().iter().any(|e| e == line)
    }
}

/// Two stages whose RUNs each wait for the other's mark, then a stage
/// that mounts both.
const MEET: &str = "\
FROM scratch AS a
RUN [\"a\", \"mark=a\", \"await=b\"]
FROM scratch AS b
RUN [\"b\", \"mark=b\", \"await=a\"]
FROM scratch
RUN --mount=from=a,target=/a --mount=from=b,target=/b [\"final\"]
";

/// The same stages without the rendezvous, which `--jobs 1` could never
/// finish.
const INDEPENDENT: &str = "\
FROM scratch AS a
RUN [\"a\"]
FROM scratch AS b
RUN [\"b\"]
FROM scratch AS c
RUN [\"c\"]
FROM scratch
RUN --mount=from=c,target=/c --mount=from=a,target=/a --mount=from=b,target=/b [\"final\"]
";

#[test]
fn r8_independent_stages_run_at_the_same_time() {
    let env = env();
    let shared = tempfile::tempdir().unwrap();
    let log = Log::default();
    let sb = rendezvous(shared.path().to_owned(), log.clone(), None);
    let built = Builder::new(&env.store, &sb, &hoist_builder::progress::NoProgress)
        .with_jobs(2)
        .build(&request(MEET, &env.context))
        .unwrap();
    // Each RUN waited for the other's mark: both were running at once.
    for (first, second) in [("a", "b"), ("b", "a")] {
        assert!(
            log.position(&format!("start {first}")) < log.position(&format!("end {second}")),
            "{:?}",
            log.entries()
        );
    }
    // The stage that reads both ran once both were built.
    let final_start = log.position("start final");
    assert!(final_start > log.position("end a") && final_start > log.position("end b"));
    assert_eq!(built.steps, 3);
}

#[test]
fn r8_jobs_1_builds_the_stages_one_after_another_in_file_order() {
    let env = env();
    let shared = tempfile::tempdir().unwrap();
    let log = Log::default();
    let sb = rendezvous(shared.path().to_owned(), log.clone(), None);
    Builder::new(&env.store, &sb, &hoist_builder::progress::NoProgress)
        .with_jobs(1)
        .build(&request(INDEPENDENT, &env.context))
        .unwrap();
    assert_eq!(
        log.entries(),
        [
            "start a",
            "end a",
            "start b",
            "end b",
            "start c",
            "end c",
            "start final",
            "end final"
        ]
    );
}

#[test]
fn r8_a_step_waits_only_for_the_stage_it_reads() {
    let env = env();
    let shared = tempfile::tempdir().unwrap();
    let log = Log::default();
    let sb = rendezvous(shared.path().to_owned(), log.clone(), None);
    // `slow` can only finish once `reader` has run its first step, so
    // `reader` must start before the stage it mounts is built; its second
    // step must still see all of `slow`. `child` starts from `slow`.
    let df = "\
FROM scratch AS slow
RUN [\"slow\", \"await=early\"]
FROM scratch AS reader
RUN [\"early\", \"mark=early\"]
RUN --mount=from=slow,target=/s [\"late\"]
FROM slow AS child
RUN [\"child\"]
FROM scratch
RUN --mount=from=reader,target=/r --mount=from=child,target=/c [\"final\"]
";
    let built = Builder::new(&env.store, &sb, &hoist_builder::progress::NoProgress)
        .with_jobs(2)
        .build(&request(df, &env.context))
        .unwrap();
    let at = |e: &str| log.position(e);
    assert!(at("start early") < at("end slow"), "{:?}", log.entries());
    assert!(at("end slow") < at("start late"), "{:?}", log.entries());
    assert!(at("end slow") < at("start child"), "{:?}", log.entries());
    let late = sb.runs().into_iter().find(|r| r.args[0] == "late").unwrap();
    let mount = late.mounts.iter().find(|m| m.target == "/s").unwrap();
    match &mount.kind {
        hoist_sandbox::MountKind::Bind { source, .. } => {
            assert_eq!(
                std::fs::read_to_string(source.join("slow")).unwrap(),
                "slow await=early"
            );
        }
        other => panic!("a bind mount, got {other:?}"),
    }
    assert_eq!(built.steps, 5);
}

#[test]
fn r8_a_failing_stage_cancels_the_others_and_its_error_is_reported() {
    let env = env();
    let shared = tempfile::tempdir().unwrap();
    let log = Log::default();
    let cancel = CancelHandle::new().unwrap();
    let sb = rendezvous(shared.path().to_owned(), log.clone(), Some(cancel.clone()));
    let df = "\
FROM scratch AS long
RUN [\"long\", \"mark=long\", \"until-cancelled\"]
FROM scratch AS failing
RUN [\"failing\", \"await=long\", \"exit=3\"]
FROM scratch AS later
RUN [\"later\"]
FROM scratch
RUN --mount=from=long,target=/l --mount=from=failing,target=/f --mount=from=later,target=/x [\"final\"]
";
    let events = Events::default();
    let err = Builder::new(&env.store, &sb, &events)
        .with_jobs(2)
        .with_cancel(cancel.clone())
        .build(&request(df, &env.context))
        .unwrap_err();
    // The failing step's own error, with its line.
    match &err {
        BuildError::Step {
            cause, span, step, ..
        } => {
            assert_eq!(span.line, 4, "{err}");
            assert!(step.contains("[failing 2/2]"), "{err}");
            assert!(
                matches!(**cause, StepError::RunFailed { code: 3, .. }),
                "{err}"
            );
        }
        other => panic!("expected the failing step's error, got {other}"),
    }
    // The sibling's RUN was stopped by the cancellation, not by its guard,
    // and reported as cancelled; nothing started after the failure.
    assert!(log.entries().contains(&"cancelled long".to_owned()));
    assert!(events.contains(&format!(
        "failed {}",
        events.step("[failing 2/2] RUN [\"failing\", \"await=long\", \"exit=3\"]")
    )));
    assert!(events.contains(&format!(
        "canceled {}",
        events.step("[long 2/2] RUN [\"long\", \"mark=long\", \"until-cancelled\"]")
    )));
    let runs: Vec<String> = sb.argvs().into_iter().map(|a| a[0].clone()).collect();
    assert!(!runs.contains(&"final".to_owned()), "{runs:?}");
    assert!(!runs.contains(&"later".to_owned()), "{runs:?}");
    assert!(cancel.is_cancelled());
}

#[test]
fn r8_jobs_1_and_parallel_builds_give_the_same_image() {
    let mut digests = Vec::new();
    let mut keys = Vec::new();
    let mut steps = Vec::new();
    for jobs in [1, 4] {
        let env = env();
        let shared = tempfile::tempdir().unwrap();
        let sb = rendezvous(shared.path().to_owned(), Log::default(), None);
        let events = Events::default();
        let builder = Builder::new(&env.store, &sb, &events).with_jobs(jobs);
        let built = builder.build(&request(INDEPENDENT, &env.context)).unwrap();
        digests.push(built.image.digest().to_string());
        let mut used = builder.used_cache_keys();
        used.sort();
        keys.push(used);
        let mut started: Vec<String> = events
            .0
            .lock()
            .unwrap()
            .iter()
            .filter(|e| e.starts_with("started "))
            .cloned()
            .collect();
        started.sort();
        steps.push(started);
    }
    assert_eq!(digests[0], digests[1], "image digest, --jobs 1 vs 4");
    assert_eq!(keys[0], keys[1], "cache keys, --jobs 1 vs 4");
    assert_eq!(keys[0].len(), 4);
    // Every step has the same `#N` whatever the interleaving.
    assert_eq!(steps[0], steps[1], "step numbers, --jobs 1 vs 4");
    assert!(
        steps[0].contains(&"started 3 [b 1/2] FROM scratch".to_owned()),
        "{:?}",
        steps[0]
    );
}

#[test]
fn r8_default_jobs_is_the_number_of_cpus() {
    assert_eq!(
        hoist_builder::build::default_jobs(),
        std::thread::available_parallelism().unwrap().get()
    );
}
