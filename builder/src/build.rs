//! `hoist build`: parse, resolve the stages the target needs, build them in
//! dependency order, and store the final image.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use hoist_parser::graph::Base;
use hoist_parser::{Dockerfile, Graph, StageIndex, parse};
use hoist_store::image_config::ImageConfig;
use hoist_store::{Image, Store};

use crate::args::{Platform, platform_args};
use crate::context::BuildContext;
use crate::error::{BuildError, StepError};
use crate::layer::Compression;
use crate::progress::{Progress, StepId};
use crate::pull::Plan;
use crate::rootfs::LayerStack;
use crate::schedule::{PanicGuard, Schedule};
use crate::stage::StageBuilder;
use hoist_sandbox::{CancelHandle, Network, Sandbox};

/// Everything one build needs besides the store, the sandbox and progress.
#[derive(Clone, Debug)]
pub struct BuildRequest {
    /// The Dockerfile's text and the name to show in messages.
    pub dockerfile: String,
    pub dockerfile_name: String,
    /// The build context directory.
    pub context: PathBuf,
    /// The Dockerfile on disk, when it is a file: `<name>.dockerignore`
    /// beside it takes precedence over the context's `.dockerignore`.
    pub dockerfile_path: Option<PathBuf>,
    /// The stage to build; the last one when `None`.
    pub target: Option<String>,
    /// `--build-arg` values, already resolved.
    pub build_args: BTreeMap<String, String>,
    /// `--label` values, set on the final image.
    pub labels: BTreeMap<String, String>,
    pub platform: Platform,
    /// The network of RUN steps that do not choose one.
    pub network: Network,
    /// Build every step; reuse nothing from the cache.
    pub no_cache: bool,
    /// `--secret` and `--ssh`.
    pub secrets: crate::secrets::BuildSecrets,
    /// `--no-cache-filter`: stages (by name or index) built without the
    /// cache.
    pub no_cache_filter: Vec<String>,
    /// Explain every step that runs, also those with no earlier build
    /// (misses with an earlier build are always explained).
    pub explain: bool,
    pub compression: Compression,
    /// SOURCE_DATE_EPOCH: the `created` time, and the clamp for new files'
    /// mtimes, so that builds are reproducible.
    pub source_date_epoch: Option<u64>,
    /// How RUN steps are confined beyond what the Dockerfile says.
    pub sandbox: SandboxOptions,
}

/// `docker build`'s flags for the RUN sandbox.
#[derive(Debug, Clone, Default)]
pub struct SandboxOptions {
    /// `--security-opt seccomp=…`; Docker's profile and capabilities by
    /// default.
    pub security: hoist_sandbox::Security,
    /// `--allow security.insecure`: lets `RUN --security=insecure` run.
    pub allow_insecure: bool,
    /// `--memory`, `--cpu-*`, `--cgroup-parent`, `--ulimit`, `--shm-size`.
    pub resources: hoist_sandbox::Resources,
    /// `--add-host HOST:IP`, appended to every RUN's /etc/hosts.
    pub add_hosts: Vec<(String, String)>,
}

/// The result of a build.
#[derive(Debug)]
pub struct Built {
    pub image: Image,
    /// Steps that changed the filesystem, and how many came from the cache.
    pub steps: usize,
    pub cached: usize,
}

/// A built stage: its config and filesystem, for later stages to use.
#[derive(Clone, Debug)]
pub struct StageResult {
    pub config: ImageConfig,
    pub stack: LayerStack,
    /// The ARGs the stage declared, inherited by `FROM <stage>` children
    /// (they show in RUN's history line).
    pub args: Vec<(String, Option<String>)>,
    /// `--dry-run`: the step that would run first in this stage (or in a
    /// stage it builds on), after which its filesystem is not known.
    pub diverged: Option<StepId>,
    /// The stage's own steps that changed the filesystem, and how many of
    /// them came from the cache.
    pub steps: usize,
    pub cached: usize,
    /// The latest first-run time among its steps taken from the cache.
    pub latest_cached: Option<String>,
}

/// Runs builds against one store with one sandbox.
pub struct Builder<'a> {
    pub store: &'a Store,
    pub sandbox: &'a dyn Sandbox,
    pub progress: &'a dyn Progress,
    /// Where images the store lacks are pulled from; none: the store only.
    pub registry: Option<&'a hoist_store::registry::Client>,
    /// `--pull`: check the registry for a newer image even when the store
    /// has one.
    pub always_pull: bool,
    /// How many stages may build at the same time (`--jobs`).
    jobs: usize,
    /// Cancelled on the first error, to kill the RUNs of the other stages;
    /// the sandbox's own handle.
    cancel: Option<CancelHandle>,
    /// One lock per image reference, so that two stages needing the same
    /// missing image pull it once.
    pulls: std::sync::Mutex<BTreeMap<String, Arc<std::sync::Mutex<()>>>>,
    /// Images that could not be resolved before the build, by reference:
    /// the stage that needs one reports the error.
    failed_images: std::sync::Mutex<BTreeMap<(String, String), crate::error::StepError>>,
    next_step: AtomicUsize,
    /// The cache keys this builder's builds used or made, in order (for
    /// `--cache-to`).
    used_keys: std::sync::Mutex<Vec<String>>,
}

/// What every stage of one build shares.
pub(crate) struct BuildScope<'a> {
    pub builder: &'a Builder<'a>,
    pub request: &'a BuildRequest,
    pub dockerfile: &'a Dockerfile,
    pub graph: &'a Graph,
    /// Build args plus the automatic platform args.
    pub args: BTreeMap<String, String>,
    /// `created` of history entries and the config.
    pub created: String,
    /// The context, opened once with its ignore file.
    pub context: BuildContext,
    /// `--dry-run`: look steps up, run none.
    pub dry_run: bool,
}

impl<'a> Builder<'a> {
    pub fn new(store: &'a Store, sandbox: &'a dyn Sandbox, progress: &'a dyn Progress) -> Self {
        Self {
            store,
            sandbox,
            progress,
            registry: None,
            always_pull: false,
            jobs: default_jobs(),
            cancel: None,
            pulls: std::sync::Mutex::new(BTreeMap::new()),
            failed_images: std::sync::Mutex::new(BTreeMap::new()),
            next_step: AtomicUsize::new(1),
            used_keys: std::sync::Mutex::new(Vec::new()),
        }
    }

    /// Pulls images the store lacks through `client`; with `always_pull`
    /// (`--pull`), also those whose registry digest changed.
    pub fn with_registry(
        mut self,
        client: &'a hoist_store::registry::Client,
        always_pull: bool,
    ) -> Self {
        self.registry = Some(client);
        self.always_pull = always_pull;
        self
    }

    /// Builds at most `jobs` stages at the same time (at least one); the
    /// default is the number of CPUs. The image is the same for any value.
    pub fn with_jobs(mut self, jobs: usize) -> Self {
        self.jobs = jobs.max(1);
        self
    }

    /// On the first failing step, cancels `handle` (the sandbox's; see
    /// [`hoist_sandbox::NamespaceSandbox::cancel_handle`]) so that the RUNs
    /// other stages are running are killed rather than waited for. A
    /// cancelled handle also stops the build before its next step.
    pub fn with_cancel(mut self, handle: CancelHandle) -> Self {
        self.cancel = Some(handle);
        self
    }

    /// Resolves (pulling when needed) the images the stages start from or
    /// read, as BuildKit loads every stage's metadata before it builds
    /// ([`Builder::resolve_images`]), and gives each stage a block of step
    /// numbers in the build order, so that a step's `#N` is the same
    /// however the stages interleave (and the same as with `--jobs 1`). A
    /// block holds the FROM, the stage's filesystem steps and its base
    /// image's ONBUILD triggers.
    fn number_steps(
        &self,
        scope: &BuildScope<'_>,
        order: &[StageIndex],
    ) -> std::collections::HashMap<StageIndex, std::ops::Range<usize>> {
        let images = self.resolve_images(scope, order);
        let mut blocks = std::collections::HashMap::new();
        for &index in order {
            let stage = &scope.graph.stages[index];
            let platform = crate::stage::stage_platform(scope, stage).ok();
            let triggers = match (&stage.base, platform) {
                (Base::Image(reference), Some(platform)) => images
                    .get(&(reference.clone(), platform.to_string()))
                    .map_or(0, trigger_steps),
                _ => 0,
            };
            let own = scope.dockerfile.instructions[stage.instructions.clone()]
                .iter()
                .filter(|s| crate::stage::is_filesystem_step(&s.instruction))
                .count();
            let size = 1 + own + triggers;
            let first = self.next_step.fetch_add(size, Ordering::Relaxed);
            blocks.insert(index, first..first + size);
        }
        blocks
    }

    /// Resolves every image the stages in `order` start from or read, at
    /// most [`RESOLVE_JOBS`] at a time: first whether each needs a pull
    /// (with `--pull`, a manifest HEAD), then the pulls. Pull steps are
    /// numbered in the order the Dockerfile first names their images, so
    /// `#N` does not depend on which answer comes first. A failure is kept
    /// for the stage that needs the image, to report at its step. Returns
    /// the images resolved, by reference and platform.
    fn resolve_images(
        &self,
        scope: &BuildScope<'_>,
        order: &[StageIndex],
    ) -> BTreeMap<(String, String), Image> {
        let mut wanted: Vec<(String, Platform)> = Vec::new();
        for &index in order {
            let stage = &scope.graph.stages[index];
            // A stage whose platform does not parse fails at its FROM.
            let Ok(platform) = crate::stage::stage_platform(scope, stage) else {
                continue;
            };
            let base = match &stage.base {
                Base::Image(reference) => Some(reference),
                _ => None,
            };
            let read = stage.dependencies.iter().filter_map(|d| match &d.target {
                Base::Image(reference) => Some(reference),
                _ => None,
            });
            for reference in base.into_iter().chain(read) {
                let item = (reference.clone(), platform.clone());
                if !wanted.contains(&item) {
                    wanted.push(item);
                }
            }
        }
        let plans = for_each_bounded(&wanted, RESOLVE_JOBS, |(reference, platform)| {
            let lock = self.pull_lock(reference);
            let _held = lock.lock().unwrap_or_else(|e| e.into_inner());
            self.plan_image(reference, platform)
        });
        let mut images = BTreeMap::new();
        let mut pulls = Vec::new();
        for ((reference, platform), plan) in wanted.into_iter().zip(plans) {
            match plan {
                Ok(Plan::Ready(image)) => {
                    images.insert((reference, platform.to_string()), *image);
                }
                // Numbered here, in the Dockerfile's order.
                Ok(plan) => pulls.push((reference, platform, plan, self.progress_step())),
                Err(err) => self.keep_failed_image(&reference, &platform, err),
            }
        }
        let pulled = for_each_bounded(&pulls, RESOLVE_JOBS, |(reference, platform, plan, step)| {
            let lock = self.pull_lock(reference);
            let _held = lock.lock().unwrap_or_else(|e| e.into_inner());
            self.pull_planned(plan, platform, Some(*step))
        });
        for ((reference, platform, _, _), result) in pulls.into_iter().zip(pulled) {
            match result {
                Ok(image) => {
                    images.insert((reference, platform.to_string()), image);
                }
                Err(err) => self.keep_failed_image(&reference, &platform, err),
            }
        }
        images
    }

    /// Keeps the error resolving `reference` for `platform` ahead of the
    /// stage that needs it.
    fn keep_failed_image(&self, reference: &str, platform: &Platform, err: StepError) {
        let mut failed = self.failed_images.lock().unwrap_or_else(|e| e.into_inner());
        failed.insert((reference.to_owned(), platform.to_string()), err);
    }

    /// The error resolving `reference` for `platform` ahead of its stage
    /// met, once.
    pub(crate) fn take_failed_image(
        &self,
        reference: &str,
        platform: &Platform,
    ) -> Option<crate::error::StepError> {
        let mut failed = self.failed_images.lock().unwrap_or_else(|e| e.into_inner());
        failed.remove(&(reference.to_owned(), platform.to_string()))
    }

    /// Held while `reference` is being resolved or pulled.
    pub(crate) fn pull_lock(&self, reference: &str) -> Arc<std::sync::Mutex<()>> {
        let mut locks = self.pulls.lock().unwrap_or_else(|e| e.into_inner());
        Arc::clone(locks.entry(reference.to_owned()).or_default())
    }

    /// The cache keys the builds so far used or made, in order.
    pub fn used_cache_keys(&self) -> Vec<String> {
        self.used_keys.lock().map(|k| k.clone()).unwrap_or_default()
    }

    pub(crate) fn record_cache_key(&self, key: &str) {
        if let Ok(mut keys) = self.used_keys.lock() {
            keys.push(key.to_owned());
        }
    }

    /// A new progress id, numbered like BuildKit's `#N`.
    pub(crate) fn progress_step(&self) -> StepId {
        StepId(self.next_step.fetch_add(1, Ordering::Relaxed))
    }

    pub fn build(&self, request: &BuildRequest) -> Result<Built, BuildError> {
        let Stages {
            last,
            steps,
            cached,
            latest_cached,
            created: now,
        } = self.run_stages(request, false)?;
        let mut config = last.config;
        if !request.labels.is_empty() {
            let labels = config.config.labels.get_or_insert_with(BTreeMap::new);
            labels.extend(request.labels.clone());
        }
        // Nothing ran: keep the time of the build that made these layers,
        // so an unchanged rebuild is the same image, as with BuildKit.
        let created = match latest_cached {
            Some(earlier) if steps == cached && request.source_date_epoch.is_none() => {
                for entry in &mut config.history {
                    if entry.created.as_deref() == Some(now.as_str()) {
                        entry.created = Some(earlier.clone());
                    }
                }
                earlier
            }
            _ => now,
        };
        config.created = Some(created);
        config.rootfs.diff_ids = last
            .stack
            .layers()
            .iter()
            .map(|l| l.diff_id.clone())
            .collect();
        let config = crate::config::lossy_config(config);
        let image = self
            .store
            .put_image_config(&config, &last.stack.descriptors())?;
        Ok(Built {
            image,
            steps,
            cached,
        })
    }

    /// `hoist build --dry-run`: looks every step up in the cache and
    /// reports which would run and why, without running any or writing an
    /// image. A step after one that would run is predicted to run too.
    pub fn dry_run(&self, request: &BuildRequest) -> Result<Prediction, BuildError> {
        let stages = self.run_stages(request, true)?;
        Ok(Prediction {
            steps: stages.steps,
            cached: stages.cached,
        })
    }

    fn run_stages(&self, request: &BuildRequest, dry_run: bool) -> Result<Stages, BuildError> {
        let parse_error = |error| BuildError::Parse {
            file: request.dockerfile_name.clone(),
            error: Box::new(error),
        };
        let dockerfile = parse(&request.dockerfile).map_err(parse_error)?;
        let host = Platform::host();
        if request.platform != host {
            return Err(BuildError::PlatformNotSupported {
                platform: Box::new(request.platform.clone()),
                host: Box::new(host),
            });
        }
        let mut args = platform_args(&request.platform, &host);
        args.extend(request.build_args.clone());
        let graph = Graph::build(&dockerfile, &args).map_err(parse_error)?;
        let order = graph
            .stages_for_target(request.target.as_deref())
            .map_err(parse_error)?;
        let context = BuildContext::from_dir(&request.context, request.dockerfile_path.as_deref())
            .map_err(BuildError::Context)?;
        crate::cache::load_context_index(self.store, &context);
        let scope = BuildScope {
            builder: self,
            request,
            dockerfile: &dockerfile,
            graph: &graph,
            args,
            created: created_time(request.source_date_epoch),
            context,
            dry_run,
        };

        let step_blocks = self.number_steps(&scope, &order);
        let schedule = Schedule::new(&graph, &order, step_blocks, self.jobs, self.cancel.as_ref());
        std::thread::scope(|threads| {
            for &index in &order {
                let (scope, schedule) = (&scope, &schedule);
                let spawned = std::thread::Builder::new()
                    .name(format!("stage-{index}"))
                    // The main thread's size: COPY walks trees recursively.
                    .stack_size(8 << 20)
                    .spawn_scoped(threads, move || build_stage(scope, schedule, index));
                if let Err(err) = spawned {
                    schedule.fail(BuildError::Thread(err), false);
                }
            }
        });
        // What was learnt about the context's files is kept even when a
        // later step failed: the fix-and-retry build is the common one.
        let saved = crate::cache::save_context_index(self.store, &scope.context);
        let mut results = schedule.into_results()?;
        saved?;
        let (mut steps, mut cached) = (0, 0);
        let mut latest_cached: Option<String> = None;
        for result in results.values() {
            steps += result.steps;
            cached += result.cached;
            latest_cached = latest_cached.max(result.latest_cached.clone());
        }
        let last = order
            .last()
            .and_then(|index| results.remove(index))
            .map(|last| Arc::try_unwrap(last).unwrap_or_else(|shared| (*shared).clone()))
            .ok_or(BuildError::NoStage)?;
        Ok(Stages {
            last,
            steps,
            cached,
            latest_cached,
            created: scope.created,
        })
    }
}

/// One stage's thread: wait for its turn, build it, hand the result to the
/// stages that read it.
fn build_stage(scope: &BuildScope<'_>, schedule: &Schedule<'_>, index: StageIndex) {
    let _guard = PanicGuard { schedule, index };
    if let Err(err) = schedule.start(index) {
        schedule.fail(err, false);
        return;
    }
    let built = StageBuilder::new(scope, index, schedule).and_then(|mut stage| {
        stage.run()?;
        Ok(stage.finish())
    });
    match built {
        Ok(result) => schedule.finish(index, result),
        Err(err) => schedule.fail(err, true),
    }
}

/// How many filesystem steps the ONBUILD triggers of `image` add to a
/// stage built on it (none when they do not parse: the stage fails).
/// How many images are resolved or pulled at the same time before a
/// build (Docker's default for concurrent downloads is 3).
const RESOLVE_JOBS: usize = 4;

/// `f` of every item, at most `bound` at a time, each on a thread of its
/// own; the results in the items' order.
fn for_each_bounded<T: Sync, R: Send>(
    items: &[T],
    bound: usize,
    f: impl Fn(&T) -> R + Sync,
) -> Vec<R> {
    if items.len() <= 1 {
        return items.iter().map(&f).collect();
    }
    let next = AtomicUsize::new(0);
    let results: Vec<std::sync::Mutex<Option<R>>> =
        items.iter().map(|_| std::sync::Mutex::new(None)).collect();
    std::thread::scope(|threads| {
        for _ in 0..bound.min(items.len()) {
            threads.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(item) = items.get(i) else { break };
                    let result = f(item);
                    *results[i].lock().unwrap_or_else(|e| e.into_inner()) = Some(result);
                }
            });
        }
    });
    results
        .into_iter()
        .map(|slot| {
            slot.into_inner()
                .unwrap_or_else(|e| e.into_inner())
                .expect("every item has a result")
        })
        .collect()
}

fn trigger_steps(image: &Image) -> usize {
    let Ok(config) = serde_json::from_value::<ImageConfig>(image.config_json().clone()) else {
        return 0;
    };
    config
        .config
        .on_build
        .iter()
        .flatten()
        .filter_map(|trigger| parse(trigger).ok())
        .flat_map(|file| file.instructions)
        .filter(|s| crate::stage::is_filesystem_step(&s.instruction))
        .count()
}

/// The default `--jobs`: one stage per CPU.
pub fn default_jobs() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

/// The stages of a build, done.
struct Stages {
    last: StageResult,
    steps: usize,
    cached: usize,
    latest_cached: Option<String>,
    created: String,
}

/// What `--dry-run` predicts.
#[derive(Debug)]
pub struct Prediction {
    /// Steps that change the filesystem, and how many the cache has.
    pub steps: usize,
    pub cached: usize,
}

/// RFC 3339 with nanoseconds, as BuildKit writes `created`.
fn created_time(epoch: Option<u64>) -> String {
    use chrono::{DateTime, SecondsFormat, Utc};
    let time = match epoch.and_then(|s| DateTime::<Utc>::from_timestamp(i64::try_from(s).ok()?, 0))
    {
        Some(time) => time,
        None => Utc::now(),
    };
    time.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Items run at the same time, `bound` at most, and results keep the
    /// items' order. Each pair meets at a barrier: run one after another,
    /// the first would wait forever.
    #[test]
    fn r8_images_resolve_at_the_same_time_bounded() {
        let barrier = std::sync::Barrier::new(2);
        let (active, most) = (AtomicUsize::new(0), AtomicUsize::new(0));
        let items: Vec<usize> = (0..6).collect();
        let results = for_each_bounded(&items, 2, |&i| {
            let now = active.fetch_add(1, Ordering::SeqCst) + 1;
            most.fetch_max(now, Ordering::SeqCst);
            barrier.wait();
            active.fetch_sub(1, Ordering::SeqCst);
            i * 10
        });
        assert_eq!(results, [0, 10, 20, 30, 40, 50]);
        assert_eq!(most.load(Ordering::SeqCst), 2, "never more than the bound");
        assert_eq!(for_each_bounded(&[7], 4, |&i| i + 1), [8]);
        assert_eq!(
            for_each_bounded(&[] as &[usize], 4, |&i| i),
            [] as [usize; 0]
        );
    }
}
