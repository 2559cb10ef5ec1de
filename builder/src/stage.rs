//! Building one stage: start from its base, then apply its instructions in
//! order. Metadata instructions edit the image config; RUN, COPY, ADD and
//! WORKDIR change the filesystem, each through the build cache.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use hoist_parser::graph::Base;
use hoist_parser::instruction::{Instruction, Spanned};
use hoist_parser::{Span, Stage, StageIndex};
use hoist_sandbox::SandboxError;
use hoist_store::image_config::{EmptyObject, History, ImageConfig};

use crate::args::Platform;
use crate::build::{BuildScope, StageResult};
use crate::config::{
    self, EnvIndex, TextSize, get_env, go_list, go_quoted_list, history, is_valid_signal,
};
use crate::error::{BuildError, StepError};
use crate::progress::{Event, StepId};
use crate::rootfs::{LayerStack, Scratch};
use crate::schedule::Schedule;
use hoist_sandbox::DEFAULT_PATH;
use hoist_store::registry::manifest::MAX_CONFIG_SIZE;

pub(crate) struct StageBuilder<'s> {
    /// The platform the stage is for: its `FROM --platform`, else its base
    /// stage's, else the build's.
    pub(crate) platform: Platform,
    pub(crate) scope: &'s BuildScope<'s>,
    pub(crate) stage: &'s Stage,
    /// The other stages of the build, for `FROM <stage>` and `--from`.
    pub(crate) schedule: &'s Schedule<'s>,
    pub(crate) config: ImageConfig,
    pub(crate) stack: LayerStack,
    /// ARGs in scope, in declaration order, with their values.
    pub(crate) args: Vec<(String, Option<String>)>,
    /// The text `config` and `args` hold, kept up to date by `dispatch`
    /// for the cap on the config's size.
    text_size: TextSize,
    /// Where each key of `config`'s env sits, kept up to date by `dispatch`.
    env_index: EnvIndex,
    /// CMD was set in this stage (ENTRYPOINT then keeps it).
    cmd_set: bool,
    /// ONBUILD triggers of the base image, run before the stage's own.
    triggers: Vec<Spanned>,
    /// The FROM step's text, e.g. `FROM docker.io/library/busybox:latest`.
    from_name: String,
    step_total: usize,
    /// The numbers left for the stage's steps (see `Builder::number_steps`).
    step_numbers: std::ops::Range<usize>,
    pub(crate) step_index: usize,
    pub(crate) steps: usize,
    pub(crate) cached: usize,
    /// The latest first-run time among the steps taken from the cache.
    pub(crate) latest_cached: Option<String>,
    /// The stage's last filesystem step so far, for explaining misses.
    pub(crate) prev_step: Option<PrevStep>,
    /// The base image as named and its manifest digest, for explaining
    /// misses.
    pub(crate) base_image: Option<(String, String)>,
    /// The context files the current COPY/ADD selected, for explaining a
    /// miss file by file.
    pub(crate) sources: Option<crate::context_memo::Sources>,
    /// `--dry-run`: the first step predicted to run in this stage or the
    /// stage it builds on; later steps run too.
    pub(crate) diverged: Option<StepId>,
    /// `--dry-run`: the current COPY reads a stage predicted to change.
    pub(crate) copy_from_diverged: bool,
    /// `--dry-run`: the current ADD reads a URL never downloaded.
    pub(crate) url_unknown: bool,
}

/// A filesystem step already done in this stage.
#[derive(Clone, Copy, Debug)]
pub(crate) struct PrevStep {
    pub id: StepId,
    /// It ran rather than coming from the cache.
    pub rebuilt: bool,
}

/// A filesystem step being run: its progress id and vertex name.
pub(crate) struct StepContext {
    pub id: StepId,
    pub name: String,
    /// The instruction as the step shows it, without the `[2/5]` prefix.
    pub text: String,
    pub span: Span,
    pub started: Instant,
}

impl<'s> StageBuilder<'s> {
    pub(crate) fn new(
        scope: &'s BuildScope<'s>,
        index: StageIndex,
        schedule: &'s Schedule<'s>,
    ) -> Result<Self, BuildError> {
        let stage = &scope.graph.stages[index];
        let mut builder = Self {
            scope,
            stage,
            schedule,
            config: ImageConfig::scratch("", ""),
            stack: LayerStack::default(),
            args: Vec::new(),
            text_size: TextSize::default(),
            env_index: EnvIndex::default(),
            cmd_set: false,
            triggers: Vec::new(),
            from_name: String::new(),
            step_total: 0,
            step_numbers: schedule.step_block(index),
            step_index: 0,
            steps: 0,
            cached: 0,
            latest_cached: None,
            prev_step: None,
            base_image: None,
            sources: None,
            diverged: None,
            copy_from_diverged: false,
            url_unknown: false,
            platform: scope.request.platform.clone(),
        };
        builder.start_from_base()?;
        let own_steps = scope.dockerfile.instructions[stage.instructions.clone()]
            .iter()
            .filter(|s| is_filesystem_step(&s.instruction))
            .count();
        let trigger_steps = builder
            .triggers
            .iter()
            .filter(|s| is_filesystem_step(&s.instruction))
            .count();
        builder.step_total = 1 + own_steps + trigger_steps;
        Ok(builder)
    }

    pub(crate) fn finish(self) -> StageResult {
        StageResult {
            config: self.config,
            stack: self.stack,
            args: self.args,
            diverged: self.diverged,
            steps: self.steps,
            cached: self.cached,
            latest_cached: self.latest_cached,
        }
    }

    /// The result of stage `index`, which this stage reads: waits for it
    /// when it is still being built.
    pub(crate) fn stage_result(&self, index: StageIndex) -> Result<Arc<StageResult>, StepError> {
        self.schedule
            .result(self.stage.index, index)
            .map_err(|err| match err {
                BuildError::Cancelled => StepError::Sandbox(SandboxError::Cancelled),
                other => StepError::Stage(Box::new(other)),
            })
    }

    fn base_span(&self) -> Span {
        self.scope.dockerfile.instructions[self.stage.from].span
    }

    pub(crate) fn step_error(&self, span: Span, step: &str, cause: StepError) -> BuildError {
        BuildError::Step {
            file: self.scope.request.dockerfile_name.clone(),
            span,
            step: step.to_owned(),
            cause: Box::new(cause),
        }
    }

    /// FROM: the base's config and layers, or an empty image for scratch.
    fn start_from_base(&mut self) -> Result<(), BuildError> {
        let from_span = self.base_span();
        self.platform = stage_platform(self.scope, self.stage).map_err(|cause| {
            self.step_error(
                from_span,
                &format!("FROM {}", self.stage.display_name()),
                cause,
            )
        })?;
        let platform = &self.platform.clone();
        let (config, stack, from_name) = match &self.stage.base {
            Base::Scratch => {
                let mut config = ImageConfig::scratch(&platform.architecture, &platform.os);
                config.config.working_dir = Some("/".to_owned());
                config.config.env = Some(vec![format!("PATH={DEFAULT_PATH}")]);
                (config, LayerStack::default(), "FROM scratch".to_owned())
            }
            Base::Stage(index) => {
                let base = self.schedule.result(self.stage.index, *index)?;
                let mut config = base.config.clone();
                // Triggers do not carry over from a stage (BuildKit's rule).
                config.config.on_build = None;
                self.args = base.args.clone();
                self.diverged = base.diverged;
                let name = self.scope.graph.stages[*index].display_name();
                (config, base.stack.clone(), format!("FROM {name}"))
            }
            Base::Image(reference) => {
                let step = match hoist_store::Reference::parse(reference) {
                    Ok(normalized) => format!("FROM {normalized}"),
                    Err(_) => format!("FROM {reference}"),
                };
                let image = self
                    .scope
                    .builder
                    .image_for(reference, platform)
                    .map_err(|cause| self.step_error(from_span, &step, cause))?;
                let config: ImageConfig = serde_json::from_value(image.config_json().clone())
                    .map_err(|err| {
                        self.step_error(
                            from_span,
                            &step,
                            StepError::ImageConfig {
                                what: format!("image config of {reference}"),
                                source: err,
                            },
                        )
                    })?;
                if config.os != platform.os || config.architecture != platform.architecture {
                    return Err(self.step_error(
                        from_span,
                        &step,
                        StepError::ImagePlatform {
                            image: reference.to_string(),
                            os: config.os.clone(),
                            architecture: config.architecture.clone(),
                            platform: Box::new(platform.clone()),
                        },
                    ));
                }
                let stack = LayerStack::from_layers(image.layers());
                self.base_image = Some((reference.clone(), image.digest().to_string()));
                (config, stack, step)
            }
        };
        self.config = config;
        // BuildKit gives every image a PATH: the base's, else the default.
        let env = self.config.config.env.get_or_insert_with(Vec::new);
        if get_env(env, "PATH").is_none() {
            env.insert(0, format!("PATH={DEFAULT_PATH}"));
        }
        self.stack = stack;
        if let Some(triggers) = self.config.config.on_build.take() {
            self.triggers = self.parse_triggers(&triggers)?;
        }
        self.text_size = TextSize::measure(&self.config, &self.args);
        self.env_index = EnvIndex::new(self.config.config.env.as_deref().unwrap_or_default());
        self.from_name = from_name;
        Ok(())
    }

    /// The next step's number: the next in the stage's block, and beyond
    /// the block (more steps than counted) a fresh one.
    fn step_id(&mut self) -> StepId {
        match self.step_numbers.next() {
            Some(n) => StepId(n),
            None => self.scope.builder.progress_step(),
        }
    }

    /// Reports the FROM step, once the stage's step count is known.
    fn announce_from(&mut self) {
        let id = self.step_id();
        self.step_index = 1;
        let vertex = self.vertex_name(&self.from_name);
        let progress = self.scope.builder.progress;
        progress.event(Event::Started {
            step: id,
            name: &vertex,
        });
        progress.event(Event::Done {
            step: id,
            elapsed: std::time::Duration::ZERO,
        });
    }

    /// ONBUILD triggers of the base image, parsed as instructions placed at
    /// the FROM line (as BuildKit reports them).
    fn parse_triggers(&self, triggers: &[String]) -> Result<Vec<Spanned>, BuildError> {
        let span = self.base_span();
        let mut parsed = Vec::with_capacity(triggers.len());
        for trigger in triggers {
            let step = format!("ONBUILD {trigger}");
            let file = hoist_parser::parse(trigger).map_err(|err| {
                self.step_error(span, &step, StepError::OnbuildTrigger(Box::new(err)))
            })?;
            for mut spanned in file.instructions {
                spanned.span = span;
                parsed.push(spanned);
            }
        }
        Ok(parsed)
    }

    pub(crate) fn run(&mut self) -> Result<(), BuildError> {
        self.announce_from();
        let triggers = std::mem::take(&mut self.triggers);
        for spanned in &triggers {
            if self.schedule.cancelled() {
                return Err(BuildError::Cancelled);
            }
            self.dispatch(spanned, true)?;
        }
        let range = self.stage.instructions.clone();
        for (at, spanned) in self.scope.dockerfile.instructions[range.clone()]
            .iter()
            .enumerate()
        {
            if self.schedule.cancelled() {
                return Err(BuildError::Cancelled);
            }
            // A step that reads another stage starts once that stage is
            // built, as BuildKit's vertex waits for its inputs.
            let instruction = range.start + at;
            for dependency in &self.stage.dependencies {
                if dependency.instruction == instruction
                    && let Base::Stage(dep) = dependency.target
                {
                    self.schedule.result(self.stage.index, dep)?;
                }
            }
            self.dispatch(spanned, false)?;
        }
        Ok(())
    }

    /// The value of a variable for expansion: ENV wins over ARG, as in
    /// Docker.
    pub(crate) fn lookup(&self, name: &str) -> Option<String> {
        if let Some(env) = &self.config.config.env
            && let Some(value) = self.env_index.get(env, name)
        {
            return Some(value.to_owned());
        }
        self.args
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .and_then(|(_, v)| v.clone())
    }

    /// BuildKit's `UndefinedVar`: a variable an instruction expanded that
    /// is neither in the environment (the image's, ENV, ARG values) nor a
    /// declared ARG of the stage.
    /// Returns whether it warned.
    fn report_undefined(&self, span: Span, unset: &[String]) -> bool {
        const RULE: &str = "UndefinedVar";
        let undefined: Vec<&String> = unset
            .iter()
            .filter(|name| !self.args.iter().any(|(k, _)| k == *name))
            .collect();
        if undefined.is_empty() || hoist_parser::skips_check(self.scope.dockerfile, RULE) {
            return false;
        }
        let env = self.config.config.env.clone().unwrap_or_default();
        let known: Vec<&str> = env
            .iter()
            .filter_map(|e| e.split_once('=').map(|(k, _)| k))
            .chain(
                self.args
                    .iter()
                    .filter(|(_, v)| v.is_some())
                    .map(|(k, _)| k.as_str()),
            )
            .collect();
        for name in undefined {
            let message = format!(
                "{}:{}: {RULE}: {}",
                self.scope.request.dockerfile_name,
                span.line,
                hoist_parser::undefined_var_message(name, &known)
            );
            self.scope
                .builder
                .progress
                .event(Event::Warning { message: &message });
        }
        true
    }

    fn dispatch(&mut self, spanned: &Spanned, is_trigger: bool) -> Result<(), BuildError> {
        let escape = self.scope.dockerfile.escape();
        let span = spanned.span;
        let raw_name = || {
            let mut text = spanned.node.original.clone();
            if let Some(first) = text.split_whitespace().next() {
                let upper = first.to_ascii_uppercase();
                text.replace_range(..first.len(), &upper);
            }
            text
        };
        // The variables the expansion found unset, for `UndefinedVar`.
        let unset = std::cell::RefCell::new(Vec::<String>::new());
        let instruction = spanned
            .expanded(
                &|name| {
                    let value = self.lookup(name);
                    let mut unset = unset.borrow_mut();
                    if value.is_none() && !unset.iter().any(|n| n == name) {
                        unset.push(name.to_owned());
                    }
                    value
                },
                escape,
            )
            .map_err(|err| self.step_error(span, &raw_name(), StepError::Expand(err)))?;
        if !is_trigger
            && !matches!(spanned.instruction, Instruction::Arg(_))
            && self.report_undefined(span, &unset.into_inner())
            && hoist_parser::check_is_error(self.scope.dockerfile)
        {
            // BuildKit fails before anything runs; this check needs the
            // stage's environment, so the build fails here.
            let message = hoist_parser::lint_violation_message(["UndefinedVar"]);
            return Err(self.step_error(span, &raw_name(), StepError::LintViolation(message)));
        }
        let meta = |s: &mut Self, created_by: String| {
            s.push_history(history(created_by, true, Some(&s.scope.created)));
        };
        match instruction {
            Instruction::From(_) => {
                return Err(self.step_error(span, &raw_name(), StepError::FromInStage));
            }
            Instruction::Arg(decls) => {
                let mut parts = Vec::new();
                for decl in decls {
                    let value = self.resolve_arg(&decl.name, decl.default);
                    parts.push(match &value {
                        Some(v) => format!("{}={v}", decl.name),
                        None => decl.name.clone(),
                    });
                    self.text_size.set_arg(&mut self.args, decl.name, value);
                }
                meta(self, format!("ARG {}", parts.join(" ")));
            }
            Instruction::Env(pairs) => {
                let env = self.config.config.env.get_or_insert_with(Vec::new);
                let mut text = String::from("ENV");
                for kv in pairs {
                    self.text_size
                        .set_env(&mut self.env_index, env, &kv.key, &kv.value);
                    text.push_str(&format!(" {}={}", kv.key, kv.value));
                }
                meta(self, text);
            }
            Instruction::Label(pairs) => {
                let labels = self.config.config.labels.get_or_insert_with(BTreeMap::new);
                let mut text = String::from("LABEL");
                for kv in pairs {
                    text.push_str(&format!(" {}={}", kv.key, kv.value));
                    self.text_size.insert_label(labels, kv.key, kv.value);
                }
                meta(self, text);
            }
            Instruction::Expose(specs) => {
                let ports = config::parse_ports(&specs)
                    .map_err(|e| self.step_error(span, &raw_name(), StepError::Port(e)))?;
                config::expose(&mut self.config, &ports);
                meta(self, format!("EXPOSE {}", go_list(&ports)));
            }
            Instruction::Volume(volumes) => {
                let set = self.config.config.volumes.get_or_insert_with(BTreeMap::new);
                for volume in &volumes {
                    set.insert(volume.clone(), EmptyObject {});
                }
                meta(self, format!("VOLUME {}", go_list(&volumes)));
            }
            Instruction::User(user) => {
                self.config.config.user = Some(user.clone());
                meta(self, format!("USER {user}"));
            }
            Instruction::Cmd(command) => {
                let argv = config::command_argv(&self.config, &command);
                meta(self, format!("CMD {}", go_quoted_list(&argv)));
                self.config.config.cmd = Some(argv);
                self.config.config.args_escaped = Some(true);
                self.cmd_set = true;
            }
            Instruction::Entrypoint(command) => {
                let argv = config::command_argv(&self.config, &command);
                meta(self, format!("ENTRYPOINT {}", go_quoted_list(&argv)));
                self.config.config.entrypoint = Some(argv);
                if !self.cmd_set {
                    self.config.config.cmd = None;
                }
            }
            Instruction::Shell(shell) => {
                meta(self, format!("SHELL {}", go_list(&shell)));
                self.config.config.shell = Some(shell);
            }
            Instruction::Stopsignal(signal) => {
                if !is_valid_signal(&signal) {
                    return Err(self.step_error(
                        span,
                        &raw_name(),
                        StepError::Signal(signal.clone()),
                    ));
                }
                meta(self, format!("STOPSIGNAL {signal}"));
                self.config.config.stop_signal = Some(signal);
            }
            Instruction::Healthcheck(check) => {
                let check = config::healthcheck_config(&check);
                meta(self, config::healthcheck_created_by(&check));
                self.config.config.healthcheck = Some(check);
            }
            Instruction::Onbuild(onbuild) => {
                let triggers = self.config.config.on_build.get_or_insert_with(Vec::new);
                self.text_size.push_onbuild(triggers, onbuild.expression);
            }
            Instruction::Maintainer(author) => {
                meta(self, format!("MAINTAINER {author}"));
                self.config.author = Some(author);
            }
            Instruction::Workdir(path) => {
                let step = self.begin_step(span, &raw_name(), is_trigger);
                self.workdir(&step, &path)
                    .map_err(|cause| self.fail_step(&step, cause))?;
            }
            Instruction::Run(run) => {
                let step = self.begin_step(span, &raw_name(), is_trigger);
                self.run_step(&step, &run)
                    .map_err(|cause| self.fail_step(&step, cause))?;
            }
            Instruction::Copy(copy) => {
                let step = self.begin_step(span, &raw_name(), is_trigger);
                self.copy_step(&step, &copy, false)
                    .map_err(|cause| self.fail_step(&step, cause))?;
            }
            Instruction::Add(add) => {
                let step = self.begin_step(span, &raw_name(), is_trigger);
                self.copy_step(&step, &add, true)
                    .map_err(|cause| self.fail_step(&step, cause))?;
            }
        }
        if self.text_size.bytes() > MAX_CONFIG_SIZE {
            let cause = StepError::ConfigTooLarge {
                limit: MAX_CONFIG_SIZE,
            };
            return Err(self.step_error(span, &raw_name(), cause));
        }
        Ok(())
    }

    /// An ARG's value (BuildKit's `dispatchArg`): a build arg wins, then the
    /// declared default, then the global ARG of the same name.
    fn resolve_arg(&self, name: &str, default: Option<String>) -> Option<String> {
        if let Some(value) = self.scope.args.get(name) {
            // Platform args count as given; user build args are only used
            // for declared ARGs, which this is.
            return Some(value.clone());
        }
        if default.is_some() {
            return default;
        }
        self.scope
            .graph
            .global_args
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .and_then(|(_, v)| v.clone())
    }

    pub(crate) fn push_history(&mut self, entry: History) {
        self.text_size.push_history(&mut self.config.history, entry);
    }

    /// Numbers a filesystem step and reports it started.
    fn begin_step(&mut self, span: Span, text: &str, is_trigger: bool) -> StepContext {
        let id = self.step_id();
        self.step_index += 1;
        let text = if is_trigger {
            format!("ONBUILD {text}")
        } else {
            text.to_owned()
        };
        let name = self.vertex_name(&text);
        self.scope.builder.progress.event(Event::Started {
            step: id,
            name: &name,
        });
        self.steps += 1;
        StepContext {
            id,
            name,
            text,
            span,
            started: Instant::now(),
        }
    }

    fn fail_step(&self, step: &StepContext, cause: StepError) -> BuildError {
        let elapsed = step.started.elapsed();
        let event = if matches!(cause, StepError::Sandbox(SandboxError::Cancelled)) {
            Event::Canceled {
                step: step.id,
                elapsed,
            }
        } else {
            Event::Failed {
                step: step.id,
                elapsed,
            }
        };
        self.scope.builder.progress.event(event);
        self.step_error(step.span, &step.name, cause)
    }

    /// `[name 2/5] RUN ...`, numbered as BuildKit numbers vertices.
    fn vertex_name(&self, text: &str) -> String {
        let total = self.step_total.max(self.step_index).max(1);
        let width = total.ilog10() as usize + 1;
        let prefix = match &self.stage.name {
            Some(name) => format!("{name} "),
            None if self.scope.graph.stages.len() > 1 => {
                format!("stage-{} ", self.stage.index)
            }
            None => String::new(),
        };
        format!("[{prefix}{:>width$}/{total}] {text}", self.step_index)
    }

    /// A step's scratch space and the stage's layers as overlay lowerdirs,
    /// top first (an empty directory stands in for `FROM scratch`, as
    /// overlayfs needs at least one).
    pub(crate) fn prepare_step(&self) -> Result<(Scratch, Vec<PathBuf>), StepError> {
        let store = self.scope.builder.store;
        let mut scratch = Scratch::new(store)?;
        let (snapshotter, warning) = crate::native::select(store)?;
        if let Some(message) = &warning {
            self.scope
                .builder
                .progress
                .event(Event::Warning { message });
        }
        scratch.snapshotter = snapshotter;
        let mut lowerdirs = self.stack.lowerdirs(store)?;
        if lowerdirs.is_empty() {
            lowerdirs.push(scratch.empty_lower()?);
        }
        Ok((scratch, lowerdirs))
    }

    /// The working directory for relative paths.
    pub(crate) fn workdir_path(&self) -> String {
        match self.config.config.working_dir.as_deref() {
            Some(dir) if !dir.is_empty() => dir.to_owned(),
            _ => "/".to_owned(),
        }
    }

    /// The RUN history's build-arg prefix (`|2 A=1 B=2 `), BuildKit's
    /// `runCommandString`.
    pub(crate) fn run_args_prefix(&self) -> String {
        if self.args.is_empty() {
            return String::new();
        }
        let mut parts = vec![format!("|{}", self.args.len())];
        for (key, value) in &self.args {
            let value = self
                .lookup(key)
                .or_else(|| value.clone())
                .unwrap_or_default();
            parts.push(format!("{key}={value}"));
        }
        parts.join(" ") + " "
    }
}

pub(crate) fn is_filesystem_step(instruction: &Instruction) -> bool {
    matches!(
        instruction,
        Instruction::Run(_) | Instruction::Copy(_) | Instruction::Add(_) | Instruction::Workdir(_)
    )
}

/// The platform `stage` is for (BuildKit's rule): its `FROM --platform`
/// (already expanded), else its base stage's, else the build's.
pub(crate) fn stage_platform(scope: &BuildScope<'_>, stage: &Stage) -> Result<Platform, StepError> {
    match (&stage.platform, &stage.base) {
        (Some(spec), _) => {
            Platform::parse(spec).ok_or_else(|| StepError::PlatformSpec(spec.clone()))
        }
        (None, Base::Stage(index)) => stage_platform(scope, &scope.graph.stages[*index]),
        (None, _) => Ok(scope.request.platform.clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals_follow_docker() {
        for (signal, ok) in [
            ("SIGTERM", true),
            ("TERM", true),
            ("9", true),
            ("SIGRTMIN+3", true),
            ("RTMAX-1", true),
            ("0", false),
            ("SIGFOO", false),
            ("", false),
        ] {
            assert_eq!(is_valid_signal(signal), ok, "{signal:?}");
        }
    }
}
