//! Stages and their dependencies, as BuildKit's `dockerfile2llb` resolves
//! them before building.
//!
//! - ARGs before the first FROM are global: they are visible in FROM lines
//!   (and in `--from` values), and inside a stage only once redeclared there
//!   with `ARG NAME`. A build arg overrides a declared ARG's default.
//! - A stage is named (`AS name`, matched case-insensitively) or known by
//!   its index. `FROM <name>` refers to an earlier stage only; `COPY
//!   --from=` and `RUN --mount=from=` take a stage name, a stage index
//!   (any stage) or else an image.
//! - The target is the last stage unless named; only the stages it needs
//!   are built, in dependency order.

use std::collections::BTreeMap;
use std::fmt::Write;

use serde::Serialize;

use crate::error::{ErrorKind, ParseError, Span};
use crate::expand::expand_word;
use crate::instruction::{Dockerfile, Instruction};

/// The index of a stage in [`Graph::stages`] (its number in the file).
pub type StageIndex = usize;

/// Build args that BuildKit defines without an ARG in the global scope.
/// The caller supplies their values in `build_args`.
pub const PLATFORM_ARGS: &[&str] = &[
    "BUILDPLATFORM",
    "BUILDOS",
    "BUILDARCH",
    "BUILDVARIANT",
    "TARGETPLATFORM",
    "TARGETOS",
    "TARGETARCH",
    "TARGETVARIANT",
];

/// What a stage starts from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", content = "value", rename_all = "lowercase")]
pub enum Base {
    /// An image reference, expanded.
    Image(String),
    /// An earlier stage.
    Stage(StageIndex),
    /// `FROM scratch`: an empty filesystem.
    Scratch,
}

/// How a stage uses another stage or an image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum DependencyKind {
    From,
    CopyFrom,
    MountFrom,
}

/// A stage or image another stage needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Dependency {
    pub kind: DependencyKind,
    pub target: Base,
    /// Index in [`Dockerfile::instructions`] of the instruction that needs it.
    pub instruction: usize,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Stage {
    pub index: StageIndex,
    /// The `AS` name, lower case.
    pub name: Option<String>,
    pub base: Base,
    /// `--platform`, expanded.
    pub platform: Option<String>,
    /// Index in [`Dockerfile::instructions`] of the FROM.
    pub from: usize,
    /// Indices in [`Dockerfile::instructions`] of the stage's instructions
    /// after FROM.
    pub instructions: std::ops::Range<usize>,
    /// FROM's stage (if any), then every `--from`, in order.
    pub dependencies: Vec<Dependency>,
}

impl Stage {
    /// The name BuildKit uses in messages: the `AS` name or `stage-N`.
    pub fn display_name(&self) -> String {
        self.name
            .clone()
            .unwrap_or_else(|| format!("stage-{}", self.index))
    }
}

/// The resolved stages of a Dockerfile.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Graph {
    /// The global ARGs in order with their resolved values (`None`: declared
    /// without a default and not given as a build arg).
    pub global_args: Vec<(String, Option<String>)>,
    pub stages: Vec<Stage>,
}

impl Graph {
    /// Resolves the stages of `df` with `build_args` (`--build-arg`s plus
    /// the [`PLATFORM_ARGS`]).
    pub fn build(
        df: &Dockerfile,
        build_args: &BTreeMap<String, String>,
    ) -> Result<Self, ParseError> {
        let escape = df.escape();
        let instrs = &df.instructions;
        let mut globals: Vec<(String, Option<String>)> = Vec::new();
        let mut first_from = instrs.len();

        // Global scope: everything before the first FROM must be an ARG.
        for (i, s) in instrs.iter().enumerate() {
            match &s.instruction {
                Instruction::From(_) => {
                    first_from = i;
                    break;
                }
                Instruction::Arg(decls) => {
                    for d in decls {
                        let value = match build_args.get(&d.name) {
                            Some(v) => Some(v.clone()),
                            None => match &d.default {
                                Some(def) => Some(
                                    expand_word(def, &|n| lookup(&globals, build_args, n), escape)
                                        .map_err(|e| {
                                            ParseError::new(s.span, ErrorKind::Expand(e))
                                        })?,
                                ),
                                None => None,
                            },
                        };
                        globals.retain(|(n, _)| n != &d.name);
                        globals.push((d.name.clone(), value));
                    }
                }
                other => {
                    return Err(ParseError::new(
                        s.node.name_span(),
                        ErrorKind::BeforeFrom {
                            instruction: other.name().to_owned(),
                        },
                    ));
                }
            }
        }
        if first_from == instrs.len() {
            let span = instrs.last().map(|s| s.span).unwrap_or_default();
            return Err(ParseError::new(span, ErrorKind::NoStages));
        }

        let env = |n: &str| lookup(&globals, build_args, n);
        let mut stages: Vec<Stage> = Vec::new();
        let mut names: BTreeMap<String, StageIndex> = BTreeMap::new();

        // Pass 1: the stages, their names and their bases.
        for (i, s) in instrs.iter().enumerate().skip(first_from) {
            let Instruction::From(from) = &s.instruction else {
                if let Some(last) = stages.last_mut() {
                    last.instructions.end = i + 1;
                }
                continue;
            };
            let index = stages.len();
            let image = expand_word(&from.image, &env, escape)
                .map_err(|e| ParseError::new(s.node.args_span(), ErrorKind::Expand(e)))?;
            if image.is_empty() {
                return Err(ParseError::new(
                    s.node.args_span(),
                    ErrorKind::BlankBaseName(from.image.clone()),
                ));
            }
            let platform = from
                .platform
                .as_deref()
                .map(|p| expand_word(p, &env, escape))
                .transpose()
                .map_err(|e| ParseError::new(s.node.flag_span(0), ErrorKind::Expand(e)))?;
            let mut dependencies = Vec::new();
            let base = match names.get(&image.to_lowercase()) {
                Some(&stage) => {
                    dependencies.push(Dependency {
                        kind: DependencyKind::From,
                        target: Base::Stage(stage),
                        instruction: i,
                        span: s.node.args_span(),
                    });
                    Base::Stage(stage)
                }
                None if image.eq_ignore_ascii_case("scratch") => Base::Scratch,
                None => Base::Image(image),
            };
            if let Some(name) = &from.name
                && names.insert(name.clone(), index).is_some()
            {
                return Err(ParseError::new(
                    s.node.args_span(),
                    ErrorKind::DuplicateStage(name.clone()),
                ));
            }
            stages.push(Stage {
                index,
                name: from.name.clone(),
                base,
                platform,
                from: i,
                instructions: i + 1..i + 1,
                dependencies,
            });
        }

        // Pass 2: `--from` edges, which may point at any stage.
        let resolve = |value: &str, span: Span| -> Result<Base, ParseError> {
            let value = expand_word(value, &env, escape)
                .map_err(|e| ParseError::new(span, ErrorKind::Expand(e)))?;
            if let Some(&idx) = names.get(&value.to_lowercase()) {
                return Ok(Base::Stage(idx));
            }
            if let Ok(idx) = value.parse::<i64>() {
                return usize::try_from(idx)
                    .ok()
                    .filter(|&i| i < stages.len())
                    .map(Base::Stage)
                    .ok_or_else(|| {
                        ParseError::new(span, ErrorKind::InvalidStageIndex(value.clone()))
                    });
            }
            Ok(Base::Image(value))
        };
        let mut extra: Vec<Vec<Dependency>> = vec![Vec::new(); stages.len()];
        for (stage, deps) in stages.iter().zip(extra.iter_mut()) {
            for i in stage.instructions.clone() {
                let s = &instrs[i];
                match &s.instruction {
                    Instruction::Copy(c) => {
                        if let Some(from) = &c.from {
                            let idx = s.node.flags.iter().position(|f| f.starts_with("--from="));
                            let span = s.node.flag_span(idx.unwrap_or(usize::MAX));
                            deps.push(Dependency {
                                kind: DependencyKind::CopyFrom,
                                target: resolve(from, span)?,
                                instruction: i,
                                span,
                            });
                        }
                    }
                    Instruction::Run(r) => {
                        for m in &r.mounts {
                            let Some(from) = &m.from else { continue };
                            let idx = s.node.flags.iter().position(|f| {
                                f.strip_prefix("--mount=").is_some_and(|v| v == m.raw)
                            });
                            let span = s.node.flag_span(idx.unwrap_or(usize::MAX));
                            deps.push(Dependency {
                                kind: DependencyKind::MountFrom,
                                target: resolve(from, span)?,
                                instruction: i,
                                span,
                            });
                        }
                    }
                    _ => {}
                }
            }
        }
        for (stage, deps) in stages.iter_mut().zip(extra) {
            stage.dependencies.extend(deps);
        }

        let graph = Graph {
            global_args: globals.clone(),
            stages,
        };
        graph.check_cycles()?;
        Ok(graph)
    }

    /// The stage named `name` (case-insensitively).
    pub fn stage_by_name(&self, name: &str) -> Option<StageIndex> {
        let lower = name.to_lowercase();
        self.stages
            .iter()
            .position(|s| s.name.as_deref() == Some(lower.as_str()))
    }

    /// The stages `target` (default: the last stage) needs, itself
    /// included, each after the stages it depends on.
    pub fn stages_for_target(&self, target: Option<&str>) -> Result<Vec<StageIndex>, ParseError> {
        let target = match target {
            None => self
                .stages
                .len()
                .checked_sub(1)
                .ok_or_else(|| ParseError::new(Span::default(), ErrorKind::NoStages))?,
            Some(t) => self.stage_by_name(t).ok_or_else(|| {
                ParseError::new(Span::default(), ErrorKind::UnknownTarget(t.to_owned()))
            })?,
        };
        // The stages the target reaches.
        let mut needed = vec![false; self.stages.len()];
        let mut stack = vec![target];
        needed[target] = true;
        while let Some(idx) = stack.pop() {
            for dep in &self.stages[idx].dependencies {
                if let Base::Stage(d) = dep.target
                    && !needed[d]
                {
                    needed[d] = true;
                    stack.push(d);
                }
            }
        }
        // Kahn's algorithm, taking the lowest ready index first so the order
        // follows the file wherever the dependencies allow.
        let mut waiting = vec![0usize; self.stages.len()];
        let mut users: Vec<Vec<StageIndex>> = vec![Vec::new(); self.stages.len()];
        for (idx, stage) in self.stages.iter().enumerate().filter(|(i, _)| needed[*i]) {
            let mut deps: Vec<StageIndex> = stage
                .dependencies
                .iter()
                .filter_map(|d| match d.target {
                    Base::Stage(s) => Some(s),
                    _ => None,
                })
                .collect();
            deps.sort_unstable();
            deps.dedup();
            waiting[idx] = deps.len();
            for d in deps {
                users[d].push(idx);
            }
        }
        let mut ready: std::collections::BinaryHeap<std::cmp::Reverse<StageIndex>> =
            (0..self.stages.len())
                .filter(|&i| needed[i] && waiting[i] == 0)
                .map(std::cmp::Reverse)
                .collect();
        let mut order = Vec::new();
        while let Some(std::cmp::Reverse(idx)) = ready.pop() {
            order.push(idx);
            for &u in &users[idx] {
                waiting[u] -= 1;
                if waiting[u] == 0 {
                    ready.push(std::cmp::Reverse(u));
                }
            }
        }
        Ok(order)
    }

    /// Fails on a stage that needs itself, directly or not, naming the
    /// first stage (in file order) on a cycle, as BuildKit does.
    fn check_cycles(&self) -> Result<(), ParseError> {
        #[derive(Clone, Copy, PartialEq)]
        enum Mark {
            New,
            OnPath,
            Done,
        }
        let mut mark = vec![Mark::New; self.stages.len()];
        for start in 0..self.stages.len() {
            if mark[start] != Mark::New {
                continue;
            }
            let mut stack: Vec<(StageIndex, usize)> = vec![(start, 0)];
            mark[start] = Mark::OnPath;
            while let Some((idx, next)) = stack.pop() {
                let deps = &self.stages[idx].dependencies;
                let Some(dep) = deps.get(next) else {
                    mark[idx] = Mark::Done;
                    continue;
                };
                stack.push((idx, next + 1));
                let Base::Stage(d) = dep.target else { continue };
                match mark[d] {
                    Mark::OnPath => {
                        return Err(ParseError::new(
                            dep.span,
                            ErrorKind::Cycle(self.stages[start].display_name()),
                        ));
                    }
                    Mark::New => {
                        mark[d] = Mark::OnPath;
                        stack.push((d, 0));
                    }
                    Mark::Done => {}
                }
            }
        }
        Ok(())
    }

    /// A text listing: one line per stage, then its dependencies.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        if !self.global_args.is_empty() {
            out.push_str("global args:\n");
            for (name, value) in &self.global_args {
                match value {
                    Some(v) => {
                        let _ = writeln!(out, "  {name}={v}");
                    }
                    None => {
                        let _ = writeln!(out, "  {name}");
                    }
                }
            }
        }
        for s in &self.stages {
            let _ = write!(
                out,
                "stage {} {}: from {}",
                s.index,
                s.display_name(),
                self.base_text(&s.base)
            );
            if let Some(p) = &s.platform {
                let _ = write!(out, " (platform {p})");
            }
            out.push('\n');
            for d in s
                .dependencies
                .iter()
                .filter(|d| d.kind != DependencyKind::From)
            {
                let kind = match d.kind {
                    DependencyKind::From => "from",
                    DependencyKind::CopyFrom => "copy --from",
                    DependencyKind::MountFrom => "run --mount from",
                };
                let _ = writeln!(
                    out,
                    "  {kind} {} (line {})",
                    self.base_text(&d.target),
                    d.span.line
                );
            }
        }
        out
    }

    fn base_text(&self, base: &Base) -> String {
        match base {
            Base::Image(i) => format!("image {i}"),
            Base::Scratch => "scratch".into(),
            Base::Stage(i) => format!("stage {}", self.stages[*i].display_name()),
        }
    }

    /// Graphviz DOT: stages as boxes, images as ellipses, edges from a
    /// stage to what it needs.
    pub fn to_dot(&self) -> String {
        let q = crate::dump::go_quote;
        let mut out = String::from("digraph stages {\n  rankdir=LR;\n");
        let mut images = std::collections::BTreeSet::new();
        for s in &self.stages {
            let _ = writeln!(
                out,
                "  s{} [label={}, shape=box];",
                s.index,
                q(&s.display_name())
            );
        }
        let node = |b: &Base, images: &mut std::collections::BTreeSet<String>| match b {
            Base::Stage(i) => format!("s{i}"),
            Base::Scratch => {
                images.insert("scratch".into());
                q("scratch")
            }
            Base::Image(i) => {
                images.insert(i.clone());
                q(i)
            }
        };
        let mut edges = String::new();
        for s in &self.stages {
            if !matches!(s.base, Base::Stage(_)) {
                let _ = writeln!(
                    edges,
                    "  s{} -> {} [label=\"from\"];",
                    s.index,
                    node(&s.base, &mut images)
                );
            }
            for d in &s.dependencies {
                let label = match d.kind {
                    DependencyKind::From => "from",
                    DependencyKind::CopyFrom => "copy",
                    DependencyKind::MountFrom => "mount",
                };
                let _ = writeln!(
                    edges,
                    "  s{} -> {} [label={}];",
                    s.index,
                    node(&d.target, &mut images),
                    q(label)
                );
            }
        }
        for i in &images {
            let _ = writeln!(out, "  {} [shape=ellipse];", q(i));
        }
        out.push_str(&edges);
        out.push_str("}\n");
        out
    }
}

/// A global variable's value: a declared ARG (with its build-arg override),
/// or one of the platform args from `build_args`.
fn lookup(
    globals: &[(String, Option<String>)],
    build_args: &BTreeMap<String, String>,
    name: &str,
) -> Option<String> {
    if let Some((_, v)) = globals.iter().rev().find(|(n, _)| n == name) {
        return v.clone();
    }
    if PLATFORM_ARGS.contains(&name) {
        return build_args.get(name).cloned();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn graph(src: &str, args: &[(&str, &str)]) -> Result<Graph, ParseError> {
        let df = crate::parse(src).unwrap();
        let args = args
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Graph::build(&df, &args)
    }

    fn order(src: &str, target: Option<&str>) -> Vec<String> {
        let g = graph(src, &[]).unwrap();
        g.stages_for_target(target)
            .unwrap()
            .into_iter()
            .map(|i| g.stages[i].display_name())
            .collect()
    }

    #[test]
    fn global_arg_scoping_and_build_args() {
        let src = "ARG V=1\nARG BASE=alpine:${V}\nARG UNSET\nFROM ${BASE} AS a\nFROM busybox:${UNSET:-x}\n";
        type Args<'a> = &'a [(&'a str, &'a str)];
        let cases: [(Args<'_>, &str, &str); 3] = [
            (&[], "alpine:1", "busybox:x"),
            (&[("V", "2")], "alpine:2", "busybox:x"),
            (&[("BASE", "debian"), ("UNSET", "y")], "debian", "busybox:y"),
        ];
        for (args, first, second) in cases {
            let g = graph(src, args).unwrap();
            assert_eq!(g.stages[0].base, Base::Image(first.into()), "case {args:?}");
            assert_eq!(
                g.stages[1].base,
                Base::Image(second.into()),
                "case {args:?}"
            );
        }
        // Undeclared build args are not visible in FROM; platform args are.
        let g = graph(
            "FROM img:${NOPE}-${TARGETARCH}\n",
            &[("NOPE", "x"), ("TARGETARCH", "arm64")],
        )
        .unwrap();
        assert_eq!(g.stages[0].base, Base::Image("img:-arm64".into()));
        assert_eq!(g.global_args, Vec::<(String, Option<String>)>::new());
        let g = graph("ARG A\nARG B=b\nFROM x\n", &[]).unwrap();
        assert_eq!(
            g.global_args,
            [
                ("A".to_string(), None),
                ("B".to_string(), Some("b".to_string()))
            ]
        );
    }

    #[test]
    fn stage_references() {
        let src = "FROM alpine AS Build\nRUN make\nFROM build AS test\nFROM scratch\nCOPY --from=0 /a /a\nCOPY --from=BUILD /b /b\nCOPY --from=nginx:1 /c /c\nRUN --mount=from=test,target=/t true\n";
        let g = graph(src, &[]).unwrap();
        assert_eq!(g.stages.len(), 3);
        assert_eq!(g.stages[0].name.as_deref(), Some("build"));
        assert_eq!(g.stages[0].instructions, 1..2);
        assert_eq!(g.stages[1].base, Base::Stage(0));
        assert_eq!(g.stages[2].base, Base::Scratch);
        let targets: Vec<_> = g.stages[2]
            .dependencies
            .iter()
            .map(|d| (d.kind, d.target.clone()))
            .collect();
        assert_eq!(
            targets,
            [
                (DependencyKind::CopyFrom, Base::Stage(0)),
                (DependencyKind::CopyFrom, Base::Stage(0)),
                (DependencyKind::CopyFrom, Base::Image("nginx:1".into())),
                (DependencyKind::MountFrom, Base::Stage(1)),
            ]
        );
        // FROM only sees earlier stages: a later name is an image.
        let g = graph("FROM later\nFROM alpine AS later\n", &[]).unwrap();
        assert_eq!(g.stages[0].base, Base::Image("later".into()));
        // COPY --from may point forward.
        let g = graph("FROM a\nCOPY --from=b / /\nFROM c AS b\n", &[]).unwrap();
        assert_eq!(g.stages[0].dependencies[0].target, Base::Stage(1));
    }

    #[test]
    fn targets_list_only_needed_stages_in_order() {
        let src = "FROM a AS base\nFROM base AS build\nFROM x AS unrelated\nFROM scratch AS final\nCOPY --from=build / /\nFROM scratch AS test\nCOPY --from=unrelated / /\nCOPY --from=final / /\n";
        let cases: [(Option<&str>, &[&str]); 5] = [
            (None, &["base", "build", "unrelated", "final", "test"]),
            (Some("final"), &["base", "build", "final"]),
            (Some("FINAL"), &["base", "build", "final"]),
            (Some("base"), &["base"]),
            (Some("unrelated"), &["unrelated"]),
        ];
        for (target, want) in cases {
            assert_eq!(order(src, target), want, "case {target:?}");
        }
        assert_eq!(order("FROM a\nFROM b\n", None), ["stage-1"]);
    }

    #[test]
    fn graph_errors() {
        let cases = [
            (
                "FROM a AS x\nFROM b AS X\n",
                "2:6: duplicate stage name \"x\"",
            ),
            (
                "FROM a AS s\nCOPY --from=s / /\n",
                "2:6: circular dependency detected on stage: s",
            ),
            (
                "FROM a AS s0\nCOPY --from=s1 / /\nFROM b AS s1\nCOPY --from=s0 / /\n",
                "4:6: circular dependency detected on stage: s0",
            ),
            ("FROM a\nCOPY --from=1 / /\n", "2:6: invalid stage index 1"),
            (
                "FROM a\nCOPY --from=-1 / /\n",
                "2:6: invalid stage index -1",
            ),
            (
                "ARG E\nFROM $E\n",
                "2:6: base name ($E) should not be blank",
            ),
            (
                "ENV A=1\nFROM a\n",
                "1:1: ENV before the first FROM: only ARG may come before FROM",
            ),
            (
                "ARG A\n",
                "1:1: no stage to build: the Dockerfile has no FROM",
            ),
        ];
        for (src, want) in cases {
            let err = graph(src, &[]).unwrap_err();
            assert_eq!(err.to_string(), want, "case {src:?}");
        }
        let g = graph("FROM a AS x\n", &[]).unwrap();
        assert_eq!(
            g.stages_for_target(Some("nope")).unwrap_err().to_string(),
            "target stage \"nope\" could not be found"
        );
    }

    #[test]
    fn deep_chains_do_not_overflow() {
        let mut src = String::from("FROM scratch AS s0\n");
        for i in 1..20_000 {
            src.push_str(&format!("FROM s{} AS s{i}\n", i - 1));
        }
        let g = graph(&src, &[]).unwrap();
        assert_eq!(g.stages_for_target(None).unwrap().len(), 20_000);
    }

    #[test]
    fn dot_and_text() {
        let g = graph(
            "FROM alpine AS build\nFROM scratch\nCOPY --from=build / /\n",
            &[],
        )
        .unwrap();
        assert_eq!(
            g.to_text(),
            "stage 0 build: from image alpine\nstage 1 stage-1: from scratch\n  copy --from stage build (line 3)\n"
        );
        assert_eq!(
            g.to_dot(),
            "digraph stages {\n  rankdir=LR;\n  s0 [label=\"build\", shape=box];\n  s1 [label=\"stage-1\", shape=box];\n  \"alpine\" [shape=ellipse];\n  \"scratch\" [shape=ellipse];\n  s0 -> \"alpine\" [label=\"from\"];\n  s1 -> \"scratch\" [label=\"from\"];\n  s1 -> s0 [label=\"copy\"];\n}\n"
        );
    }
}
