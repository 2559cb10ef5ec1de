//! The typed instructions and their checks: BuildKit's `instructions`
//! package.
//!
//! Words are kept as written (unexpanded, quotes intact where BuildKit keeps
//! them); [`Instruction::expand`] applies word expansion the way Docker does
//! for each instruction, at build time, with the stage's environment.
//!
//! See <https://docs.docker.com/reference/dockerfile/>.

use std::time::Duration;

use serde::Serialize;

use crate::error::{ErrorKind, ParseError, Span};
use crate::expand::{expand_word, expand_words};
use crate::flags::{self, Kind, Spec};
use crate::mount::{MountError, RunMount, parse_mount};
use crate::syntax::{Directives, Heredoc, Node, Warning, parse_heredoc};

/// A parsed Dockerfile.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Dockerfile {
    pub directives: Directives,
    pub instructions: Vec<Spanned>,
    pub warnings: Vec<Warning>,
}

impl Dockerfile {
    /// The escape character in force (`\` unless `# escape=` changed it).
    pub fn escape(&self) -> char {
        self.directives.escape
    }
}

/// An instruction with where it came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Spanned {
    pub instruction: Instruction,
    /// From the instruction name through the end of its last heredoc.
    pub span: Span,
    /// BuildKit's raw node: the name as written, raw flags, argument values
    /// and the logical line (`node.original`).
    pub node: Node,
}

impl Spanned {
    /// The source text of the instruction (continuation lines and heredoc
    /// bodies included), given the text that was parsed.
    pub fn text<'a>(&self, source: &'a str) -> &'a str {
        self.span.text(source)
    }

    /// [`Instruction::expand`] with the error placed at this instruction.
    pub fn expanded(
        &self,
        lookup: &dyn Fn(&str) -> Option<String>,
        escape: char,
    ) -> Result<Instruction, ParseError> {
        self.instruction
            .expand(lookup, escape)
            .map_err(|kind| ParseError::new(self.span, kind))
    }
}

/// Shell form (one string run by the SHELL) or exec form (a JSON array).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ShellOrExec {
    Shell(String),
    Exec(Vec<String>),
}

/// One `key=value` of ENV or LABEL.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KeyValue {
    pub key: String,
    pub value: String,
}

/// One name of ARG, with its default.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ArgDecl {
    pub name: String,
    pub default: Option<String>,
}

/// `RUN --network`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Network {
    Default,
    None,
    Host,
}

/// `RUN --security`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Security {
    Sandbox,
    Insecure,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct From {
    /// The base: an image reference, a stage name or `scratch`.
    pub image: String,
    /// The stage name after `AS`, lower-cased as BuildKit does.
    pub name: Option<String>,
    pub platform: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Run {
    pub command: ShellOrExec,
    pub mounts: Vec<RunMount>,
    pub network: Option<Network>,
    pub security: Option<Security>,
    /// `--device` values as written (Dockerfile 1.14: CDI device names).
    /// They parse so that the error comes at build time, where hoist says
    /// it does not support them.
    pub devices: Vec<String>,
    pub heredocs: Vec<Heredoc>,
}

/// COPY and ADD. `from` is COPY's only; `checksum` and `keep_git_dir` are
/// ADD's only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CopyAdd {
    /// Source paths (heredoc sources are in `heredocs` instead).
    pub sources: Vec<String>,
    pub dest: String,
    /// Sources given as heredocs, in order; `name` is the file name.
    pub heredocs: Vec<Heredoc>,
    pub from: Option<String>,
    pub chown: Option<String>,
    pub chmod: Option<String>,
    pub link: bool,
    pub exclude: Vec<String>,
    pub parents: bool,
    pub checksum: Option<String>,
    pub keep_git_dir: bool,
    /// ADD `--unpack` (Dockerfile 1.17), `None` when not given: an
    /// archive from a URL is unpacked only with `--unpack=true`, a local
    /// one unless `--unpack=false`.
    pub unpack: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Healthcheck {
    /// `HEALTHCHECK NONE`: disable the base image's check.
    None,
    Cmd {
        /// Shell form runs as `CMD-SHELL`, exec form as `CMD`.
        test: ShellOrExec,
        interval: Option<Duration>,
        timeout: Option<Duration>,
        start_period: Option<Duration>,
        start_interval: Option<Duration>,
        retries: Option<u32>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Onbuild {
    /// The trigger, parsed and checked; `None` when it is not a valid
    /// instruction (`ONBUILD echo hi`). BuildKit stores such a trigger
    /// unchecked and fails only when a child build fires it, so hoist keeps
    /// it too, with the reason in `invalid` and a warning.
    pub instruction: Option<Box<Instruction>>,
    /// Why the trigger is not a valid instruction.
    #[serde(skip)]
    pub invalid: Option<ParseError>,
    /// The trigger as stored in the image config (`ONBUILD` stripped,
    /// heredoc bodies appended), as BuildKit stores it.
    pub expression: String,
}

/// One Dockerfile instruction.
///
/// As JSON (`hoist debug ast --json`) an instruction is
/// `{"kind": "arg", "value": ...}`: adjacent tagging, because most variants
/// hold a list or a string, which an internally tagged enum cannot carry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", content = "value", rename_all = "lowercase")]
pub enum Instruction {
    From(From),
    Run(Run),
    Cmd(ShellOrExec),
    Entrypoint(ShellOrExec),
    Copy(CopyAdd),
    Add(CopyAdd),
    Env(Vec<KeyValue>),
    Label(Vec<KeyValue>),
    Arg(Vec<ArgDecl>),
    Expose(Vec<String>),
    Volume(Vec<String>),
    User(String),
    Workdir(String),
    Onbuild(Onbuild),
    Stopsignal(String),
    Healthcheck(Healthcheck),
    Shell(Vec<String>),
    Maintainer(String),
}

/// Every instruction name, for suggestions.
pub const INSTRUCTION_NAMES: &[&str] = &[
    "ADD",
    "ARG",
    "CMD",
    "COPY",
    "ENTRYPOINT",
    "ENV",
    "EXPOSE",
    "FROM",
    "HEALTHCHECK",
    "LABEL",
    "MAINTAINER",
    "ONBUILD",
    "RUN",
    "SHELL",
    "STOPSIGNAL",
    "USER",
    "VOLUME",
    "WORKDIR",
];

impl Instruction {
    /// The instruction's name in upper case.
    pub fn name(&self) -> &'static str {
        match self {
            Self::From(_) => "FROM",
            Self::Run(_) => "RUN",
            Self::Cmd(_) => "CMD",
            Self::Entrypoint(_) => "ENTRYPOINT",
            Self::Copy(_) => "COPY",
            Self::Add(_) => "ADD",
            Self::Env(_) => "ENV",
            Self::Label(_) => "LABEL",
            Self::Arg(_) => "ARG",
            Self::Expose(_) => "EXPOSE",
            Self::Volume(_) => "VOLUME",
            Self::User(_) => "USER",
            Self::Workdir(_) => "WORKDIR",
            Self::Onbuild(_) => "ONBUILD",
            Self::Stopsignal(_) => "STOPSIGNAL",
            Self::Healthcheck(_) => "HEALTHCHECK",
            Self::Shell(_) => "SHELL",
            Self::Maintainer(_) => "MAINTAINER",
        }
    }
}

const FROM_FLAGS: Spec = Spec {
    instruction: "FROM",
    flags: &[("platform", Kind::String)],
};
const RUN_FLAGS: Spec = Spec {
    instruction: "RUN",
    flags: &[
        ("mount", Kind::Strings),
        ("network", Kind::String),
        ("security", Kind::String),
        ("device", Kind::Strings),
    ],
};
const COPY_FLAGS: Spec = Spec {
    instruction: "COPY",
    flags: &[
        ("from", Kind::String),
        ("chown", Kind::String),
        ("chmod", Kind::String),
        ("link", Kind::Bool),
        ("exclude", Kind::Strings),
        ("parents", Kind::Bool),
    ],
};
const ADD_FLAGS: Spec = Spec {
    instruction: "ADD",
    flags: &[
        ("chown", Kind::String),
        ("chmod", Kind::String),
        ("link", Kind::Bool),
        ("exclude", Kind::Strings),
        ("parents", Kind::Bool),
        ("checksum", Kind::String),
        ("keep-git-dir", Kind::Bool),
        ("unpack", Kind::Bool),
    ],
};
const HEALTHCHECK_FLAGS: Spec = Spec {
    instruction: "HEALTHCHECK",
    flags: &[
        ("interval", Kind::String),
        ("timeout", Kind::String),
        ("start-period", Kind::String),
        ("start-interval", Kind::String),
        ("retries", Kind::String),
    ],
};

/// A spec with no flags, for instructions that take none.
fn no_flags(instruction: &'static str) -> Spec {
    Spec {
        instruction,
        flags: &[],
    }
}

/// Gives a raw node its meaning: BuildKit's `ParseInstruction`.
pub(crate) fn from_node(node: &Node) -> Result<Instruction, ParseError> {
    let at_args = |kind| ParseError::new(node.args_span(), kind);
    let at_name = |kind| ParseError::new(node.name_span(), kind);
    let args = &node.args;
    let name = INSTRUCTION_NAMES
        .iter()
        .copied()
        .find(|n| !node.keyword.is_empty() && n.eq_ignore_ascii_case(node.keyword));
    let Some(name) = name else {
        return Err(at_name(ErrorKind::UnknownInstruction {
            name: node.name.clone(),
            suggestion: crate::suggest::nearest(&node.name, INSTRUCTION_NAMES).map(str::to_owned),
        }));
    };

    let instruction = match name {
        "FROM" => {
            let values = flags::parse(node, &FROM_FLAGS)?;
            let stage = match args.as_slice() {
                [_] => None,
                [_, as_, stage] if as_.eq_ignore_ascii_case("as") => {
                    let lower = stage.to_lowercase();
                    if !valid_stage_name(&lower) {
                        return Err(at_args(ErrorKind::InvalidStageName(stage.clone())));
                    }
                    Some(lower)
                }
                _ => return Err(at_args(ErrorKind::FromArguments)),
            };
            Instruction::From(From {
                image: args[0].clone(),
                name: stage,
                platform: values.string(&FROM_FLAGS, "platform"),
            })
        }
        "RUN" => {
            let values = flags::parse(node, &RUN_FLAGS)?;
            let mut mounts = Vec::new();
            for (raw, idx) in values.all(&RUN_FLAGS, "mount") {
                let m = parse_mount(raw, &|v| Ok((!v.contains('$')).then(|| v.to_owned())))
                    .map_err(|e| mount_error(node.flag_span(idx), e))?;
                mounts.push(m);
            }
            let network = match values.get(&RUN_FLAGS, "network") {
                None => None,
                Some((v, idx)) => Some(parse_network(v).ok_or_else(|| {
                    ParseError::new(
                        node.flag_span(idx),
                        ErrorKind::InvalidFlagValue {
                            flag: "network".into(),
                            message: format!("network mode {v:?} not supported"),
                        },
                    )
                })?),
            };
            let security = match values.get(&RUN_FLAGS, "security") {
                None => None,
                Some((v, idx)) => Some(parse_security(v).ok_or_else(|| {
                    ParseError::new(
                        node.flag_span(idx),
                        ErrorKind::InvalidFlagValue {
                            flag: "security".into(),
                            message: format!("security {v:?} is not valid"),
                        },
                    )
                })?),
            };
            Instruction::Run(Run {
                command: shell_or_exec(node),
                mounts,
                network,
                security,
                devices: values
                    .all(&RUN_FLAGS, "device")
                    .map(|(v, _)| v.to_owned())
                    .collect(),
                heredocs: node.heredocs.clone(),
            })
        }
        "CMD" => {
            flags::parse(node, &no_flags("CMD"))?;
            Instruction::Cmd(shell_or_exec(node))
        }
        "ENTRYPOINT" => {
            flags::parse(node, &no_flags("ENTRYPOINT"))?;
            Instruction::Entrypoint(shell_or_exec(node))
        }
        "COPY" | "ADD" => {
            let spec = if name == "COPY" {
                &COPY_FLAGS
            } else {
                &ADD_FLAGS
            };
            let what = spec.instruction;
            if args.len() < 2 {
                return Err(at_args(ErrorKind::NoDestination(what)));
            }
            let values = flags::parse(node, spec)?;
            let (srcs, dest) = args.split_at(args.len() - 1);
            let dest = &dest[0];
            if parse_heredoc(dest).ok().flatten().is_some() {
                return Err(at_args(ErrorKind::HeredocAsDestination(what)));
            }
            let mut sources = Vec::new();
            let mut heredocs = Vec::new();
            for src in srcs {
                match parse_heredoc(src).ok().flatten() {
                    Some(marker) => {
                        // BuildKit looks the body up by name; a JSON-form
                        // marker has no body and copies an empty file.
                        let content = node
                            .heredocs
                            .iter()
                            .rev()
                            .find(|h| h.name == marker.name)
                            .map(|h| h.content.clone())
                            .unwrap_or_default();
                        heredocs.push(Heredoc { content, ..marker });
                    }
                    None => sources.push(src.clone()),
                }
            }
            let c = CopyAdd {
                sources,
                dest: dest.clone(),
                heredocs,
                from: values.string(spec, "from"),
                chown: values.string(spec, "chown"),
                chmod: values.string(spec, "chmod"),
                link: values.bool(spec, "link"),
                exclude: values
                    .all(spec, "exclude")
                    .map(|(v, _)| v.to_owned())
                    .collect(),
                parents: values.bool(spec, "parents"),
                checksum: values.string(spec, "checksum"),
                keep_git_dir: values.bool(spec, "keep-git-dir"),
                unpack: values
                    .get(spec, "unpack")
                    .map(|_| values.bool(spec, "unpack")),
            };
            if name == "COPY" {
                Instruction::Copy(c)
            } else {
                Instruction::Add(c)
            }
        }
        "ENV" | "LABEL" => {
            let what = if name == "ENV" { "ENV" } else { "LABEL" };
            flags::parse(node, &no_flags(what))?;
            if args.is_empty() {
                return Err(at_args(ErrorKind::AtLeastOneArgument(what)));
            }
            let mut pairs = Vec::with_capacity(args.len() / 3);
            for triple in args.chunks(3) {
                let [key, value, _] = triple else {
                    return Err(at_args(ErrorKind::AtLeastOneArgument(what)));
                };
                if key.is_empty() {
                    return Err(at_args(ErrorKind::BlankName(what)));
                }
                pairs.push(KeyValue {
                    key: key.clone(),
                    value: value.clone(),
                });
            }
            if name == "ENV" {
                Instruction::Env(pairs)
            } else {
                Instruction::Label(pairs)
            }
        }
        "ARG" => {
            flags::parse(node, &no_flags("ARG"))?;
            if args.is_empty() {
                return Err(at_args(ErrorKind::AtLeastOneArgument("ARG")));
            }
            let mut decls = Vec::with_capacity(args.len());
            for arg in args {
                let decl = match arg.split_once('=') {
                    Some(("", _)) => return Err(at_args(ErrorKind::BlankName("ARG"))),
                    Some((k, v)) => ArgDecl {
                        name: k.to_owned(),
                        default: Some(v.to_owned()),
                    },
                    None => ArgDecl {
                        name: arg.clone(),
                        default: None,
                    },
                };
                decls.push(decl);
            }
            Instruction::Arg(decls)
        }
        "EXPOSE" => {
            flags::parse(node, &no_flags("EXPOSE"))?;
            if args.is_empty() {
                return Err(at_args(ErrorKind::AtLeastOneArgument("EXPOSE")));
            }
            Instruction::Expose(args.clone())
        }
        "VOLUME" => {
            flags::parse(node, &no_flags("VOLUME"))?;
            if args.is_empty() {
                return Err(at_args(ErrorKind::AtLeastOneArgument("VOLUME")));
            }
            let mut volumes = Vec::with_capacity(args.len());
            for v in args {
                let v = v.trim();
                if v.is_empty() {
                    return Err(at_args(ErrorKind::EmptyVolume));
                }
                volumes.push(v.to_owned());
            }
            Instruction::Volume(volumes)
        }
        "USER" | "WORKDIR" | "STOPSIGNAL" | "MAINTAINER" => {
            flags::parse(node, &no_flags(name))?;
            let [value] = args.as_slice() else {
                return Err(at_args(ErrorKind::ExactlyOneArgument(name)));
            };
            let value = value.clone();
            match name {
                "USER" => Instruction::User(value),
                "WORKDIR" => Instruction::Workdir(value),
                "STOPSIGNAL" => Instruction::Stopsignal(value),
                _ => Instruction::Maintainer(value),
            }
        }
        "ONBUILD" => {
            flags::parse(node, &no_flags("ONBUILD"))?;
            let Some(child) = &node.child else {
                return Err(at_args(ErrorKind::AtLeastOneArgument("ONBUILD")));
            };
            let trigger = child.name.to_ascii_uppercase();
            match trigger.as_str() {
                "ONBUILD" => return Err(at_args(ErrorKind::OnbuildChain)),
                "FROM" | "MAINTAINER" => return Err(at_args(ErrorKind::OnbuildTrigger(trigger))),
                _ => {}
            }
            let mut child = (**child).clone();
            child.heredocs = node.heredocs.clone();
            let (inner, invalid) = match from_node(&child) {
                Ok(inner) => (Some(Box::new(inner)), None),
                Err(err) => (None, Some(err)),
            };
            let mut expression = strip_onbuild(&node.original).to_owned();
            for h in &node.heredocs {
                expression.push('\n');
                expression.push_str(&h.content);
                expression.push_str(&h.name);
            }
            Instruction::Onbuild(Onbuild {
                instruction: inner,
                invalid,
                expression,
            })
        }
        "HEALTHCHECK" => {
            let Some(typ) = args.first() else {
                return Err(at_args(ErrorKind::AtLeastOneArgument("HEALTHCHECK")));
            };
            let typ = typ.to_ascii_uppercase();
            let rest = &args[1..];
            let values = flags::parse(node, &HEALTHCHECK_FLAGS)?;
            if typ == "NONE" {
                if !rest.is_empty() {
                    return Err(at_args(ErrorKind::HealthcheckNoneArguments));
                }
                Instruction::Healthcheck(Healthcheck::None)
            } else {
                if typ != "CMD" {
                    return Err(at_args(ErrorKind::HealthcheckType(typ)));
                }
                if rest.is_empty() {
                    return Err(at_args(ErrorKind::HealthcheckMissingCommand));
                }
                let test = if node.json {
                    ShellOrExec::Exec(rest.to_vec())
                } else {
                    ShellOrExec::Shell(rest.join(" "))
                };
                let duration = |flag: &str| -> Result<Option<Duration>, ParseError> {
                    let Some((v, idx)) = values.get(&HEALTHCHECK_FLAGS, flag) else {
                        return Ok(None);
                    };
                    let invalid = |message| {
                        ParseError::new(
                            node.flag_span(idx),
                            ErrorKind::InvalidFlagValue {
                                flag: flag.to_owned(),
                                message,
                            },
                        )
                    };
                    if v.is_empty() {
                        return Ok(None);
                    }
                    let d = flags::parse_go_duration(v).map_err(invalid)?;
                    if !d.is_zero() && d < Duration::from_millis(1) {
                        return Err(invalid(format!(
                            "interval {flag:?} cannot be less than 1ms"
                        )));
                    }
                    Ok(Some(d))
                };
                let retries = match values.get(&HEALTHCHECK_FLAGS, "retries") {
                    None | Some(("", _)) => None,
                    Some((v, idx)) => {
                        let invalid = |message| {
                            ParseError::new(
                                node.flag_span(idx),
                                ErrorKind::InvalidFlagValue {
                                    flag: "retries".into(),
                                    message,
                                },
                            )
                        };
                        let n: i64 = v
                            .parse()
                            .ok()
                            .filter(|n: &i64| i32::try_from(*n).is_ok())
                            .ok_or_else(|| invalid(format!("invalid syntax {v:?}")))?;
                        let n = u32::try_from(n)
                            .map_err(|_| invalid(format!("--retries cannot be negative ({n})")))?;
                        Some(n)
                    }
                };
                Instruction::Healthcheck(Healthcheck::Cmd {
                    test,
                    interval: duration("interval")?,
                    timeout: duration("timeout")?,
                    start_period: duration("start-period")?,
                    start_interval: duration("start-interval")?,
                    retries,
                })
            }
        }
        "SHELL" => {
            flags::parse(node, &no_flags("SHELL"))?;
            if args.is_empty() {
                return Err(at_args(ErrorKind::AtLeastOneArgument("SHELL")));
            }
            if !node.json {
                return Err(at_args(ErrorKind::NotJson("SHELL")));
            }
            Instruction::Shell(args.clone())
        }
        _ => {
            return Err(at_name(ErrorKind::UnknownInstruction {
                name: node.name.clone(),
                suggestion: None,
            }));
        }
    };
    Ok(instruction)
}

/// `(?i)^\s*ONBUILD\s*` removed.
fn strip_onbuild(original: &str) -> &str {
    let t = original.trim_start();
    match t.get(..7) {
        Some(head) if head.eq_ignore_ascii_case("onbuild") => t[7..].trim_start(),
        _ => t,
    }
}

fn mount_error(span: Span, e: MountError) -> ParseError {
    match e {
        MountError::Invalid(m) => ParseError::new(span, ErrorKind::InvalidMount(m)),
        MountError::Expand(e) => ParseError::new(span, ErrorKind::Expand(e)),
    }
}

fn parse_network(v: &str) -> Option<Network> {
    match v {
        "default" => Some(Network::Default),
        "none" => Some(Network::None),
        "host" => Some(Network::Host),
        _ => None,
    }
}

fn parse_security(v: &str) -> Option<Security> {
    match v {
        "sandbox" => Some(Security::Sandbox),
        "insecure" => Some(Security::Insecure),
        _ => None,
    }
}

/// BuildKit's `handleJSONArgs`: exec form keeps the array, shell form joins
/// the words into one string.
fn shell_or_exec(node: &Node) -> ShellOrExec {
    if node.json {
        ShellOrExec::Exec(node.args.clone())
    } else {
        ShellOrExec::Shell(node.args.join(" "))
    }
}

/// `^[a-z][a-z0-9-_.]*$`.
fn valid_stage_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "-_.".contains(c))
}

impl Instruction {
    /// The instruction with word expansion applied where Docker applies it:
    /// ADD, COPY (paths and flag values), ENV and LABEL (keys and values),
    /// EXPOSE, FROM (image and platform), STOPSIGNAL, USER, VOLUME, WORKDIR,
    /// ARG defaults and RUN's `--mount` values. RUN, CMD, ENTRYPOINT, SHELL,
    /// HEALTHCHECK, MAINTAINER and ONBUILD (expanded when it fires) are
    /// returned unchanged.
    ///
    /// `lookup` gives a variable's value in the current stage (`None` when
    /// unset); `escape` is [`Dockerfile::escape`].
    pub fn expand(
        &self,
        lookup: &dyn Fn(&str) -> Option<String>,
        escape: char,
    ) -> Result<Instruction, ErrorKind> {
        let word = |w: &str| expand_word(w, lookup, escape).map_err(ErrorKind::Expand);
        let opt = |w: &Option<String>| w.as_deref().map(word).transpose();
        let kvs = |pairs: &[KeyValue]| -> Result<Vec<KeyValue>, ErrorKind> {
            pairs
                .iter()
                .map(|kv| {
                    Ok(KeyValue {
                        key: word(&kv.key)?,
                        value: word(&kv.value)?,
                    })
                })
                .collect()
        };
        Ok(match self {
            Self::From(f) => Self::From(From {
                image: word(&f.image)?,
                name: f.name.clone(),
                platform: opt(&f.platform)?,
            }),
            Self::Run(r) => {
                let mut mounts = Vec::with_capacity(r.mounts.len());
                for m in &r.mounts {
                    let m = parse_mount(&m.raw, &|v| expand_word(v, lookup, escape).map(Some))
                        .map_err(|e| match e {
                            MountError::Invalid(m) => ErrorKind::InvalidMount(m),
                            MountError::Expand(e) => ErrorKind::Expand(e),
                        })?;
                    mounts.push(m);
                }
                Self::Run(Run {
                    mounts,
                    ..r.clone()
                })
            }
            Self::Copy(c) | Self::Add(c) => {
                let expanded = CopyAdd {
                    sources: c
                        .sources
                        .iter()
                        .map(|s| word(s))
                        .collect::<Result<_, _>>()?,
                    dest: word(&c.dest)?,
                    heredocs: c.heredocs.clone(),
                    from: opt(&c.from)?,
                    chown: opt(&c.chown)?,
                    chmod: opt(&c.chmod)?,
                    link: c.link,
                    exclude: c
                        .exclude
                        .iter()
                        .map(|s| word(s))
                        .collect::<Result<_, _>>()?,
                    parents: c.parents,
                    checksum: opt(&c.checksum)?,
                    keep_git_dir: c.keep_git_dir,
                    unpack: c.unpack,
                };
                if matches!(self, Self::Copy(_)) {
                    Self::Copy(expanded)
                } else {
                    Self::Add(expanded)
                }
            }
            Self::Env(pairs) => Self::Env(kvs(pairs)?),
            Self::Label(pairs) => Self::Label(kvs(pairs)?),
            Self::Arg(decls) => Self::Arg(
                decls
                    .iter()
                    .map(|d| {
                        Ok(ArgDecl {
                            name: d.name.clone(),
                            default: opt(&d.default)?,
                        })
                    })
                    .collect::<Result<_, ErrorKind>>()?,
            ),
            Self::Expose(ports) => {
                let mut out = Vec::with_capacity(ports.len());
                for p in ports {
                    out.extend(expand_words(p, lookup, escape).map_err(ErrorKind::Expand)?);
                }
                Self::Expose(out)
            }
            Self::Volume(vols) => {
                Self::Volume(vols.iter().map(|v| word(v)).collect::<Result<_, _>>()?)
            }
            Self::User(u) => Self::User(word(u)?),
            Self::Workdir(w) => Self::Workdir(word(w)?),
            Self::Stopsignal(s) => Self::Stopsignal(word(s)?),
            Self::Cmd(_)
            | Self::Entrypoint(_)
            | Self::Onbuild(_)
            | Self::Healthcheck(_)
            | Self::Shell(_)
            | Self::Maintainer(_) => self.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse;

    fn first(src: &str) -> Instruction {
        parse(src).unwrap().instructions.remove(0).instruction
    }

    #[test]
    fn stage_names() {
        for (name, ok) in [
            ("build", true),
            ("b-1_x.y", true),
            ("1x", false),
            ("", false),
            ("a$", false),
        ] {
            assert_eq!(valid_stage_name(name), ok, "case {name:?}");
        }
    }

    #[test]
    fn typed_instructions() {
        assert_eq!(
            first("FROM --platform=linux/arm64 alpine:3 AS Build"),
            Instruction::From(From {
                image: "alpine:3".into(),
                name: Some("build".into()),
                platform: Some("linux/arm64".into()),
            })
        );
        assert_eq!(
            first("CMD [\"a\", \"b\"]"),
            Instruction::Cmd(ShellOrExec::Exec(vec!["a".into(), "b".into()]))
        );
        assert_eq!(
            first("ENV a=1 b=\"x y\""),
            Instruction::Env(vec![
                KeyValue {
                    key: "a".into(),
                    value: "1".into()
                },
                KeyValue {
                    key: "b".into(),
                    value: "\"x y\"".into()
                },
            ])
        );
        assert_eq!(
            first("ARG a b=2"),
            Instruction::Arg(vec![
                ArgDecl {
                    name: "a".into(),
                    default: None
                },
                ArgDecl {
                    name: "b".into(),
                    default: Some("2".into())
                },
            ])
        );
        let Instruction::Copy(c) = first("COPY --from=b --link --exclude=*.md --exclude=x a b /d/")
        else {
            panic!("not a COPY");
        };
        assert_eq!(c.from.as_deref(), Some("b"));
        assert!(c.link);
        assert_eq!(c.exclude, ["*.md", "x"]);
        assert_eq!(c.sources, ["a", "b"]);
        let Instruction::Healthcheck(Healthcheck::Cmd {
            interval,
            retries,
            test,
            ..
        }) = first("HEALTHCHECK --interval=5s --retries=3 CMD curl x")
        else {
            panic!("not a HEALTHCHECK CMD");
        };
        assert_eq!((interval, retries), (Some(Duration::from_secs(5)), Some(3)));
        assert_eq!(test, ShellOrExec::Shell("curl x".into()));
    }

    #[test]
    fn expansion_applies_where_docker_applies_it() {
        let env = |n: &str| match n {
            "V" => Some("x".to_owned()),
            "PORTS" => Some("80 443/udp".to_owned()),
            "K" => Some("key".to_owned()),
            _ => None,
        };
        let kv = |k: &str, v: &str| KeyValue {
            key: k.into(),
            value: v.into(),
        };
        let cases = [
            ("FROM img:$V AS s", first("FROM img:x AS s")),
            (
                "COPY --chown=$V:$V --from=$V $V /d/$V",
                first("COPY --chown=x:x --from=x x /d/x"),
            ),
            (
                "ADD --checksum=$V --chmod=$V a$V /b",
                first("ADD --checksum=x --chmod=x ax /b"),
            ),
            (
                "ENV $K=\"$V y\" b=${V:-z}",
                Instruction::Env(vec![kv("key", "x y"), kv("b", "x")]),
            ),
            (
                "LABEL \"a\"=\"b $V\"",
                Instruction::Label(vec![kv("a", "b x")]),
            ),
            ("EXPOSE $PORTS 8$V", first("EXPOSE 80 443/udp 8x")),
            (
                "VOLUME /a$V \"b\"",
                Instruction::Volume(vec!["/ax".into(), "b".into()]),
            ),
            ("USER $V:${V}", first("USER x:x")),
            ("WORKDIR /w/$V", first("WORKDIR /w/x")),
            ("STOPSIGNAL SIG$V", first("STOPSIGNAL SIGx")),
            ("ARG a=$V b", first("ARG a=x b")),
            ("RUN echo $V", first("RUN echo $V")),
            ("CMD echo $V", first("CMD echo $V")),
            ("ENTRYPOINT [\"$V\"]", first("ENTRYPOINT [\"$V\"]")),
            ("SHELL [\"$V\"]", first("SHELL [\"$V\"]")),
            ("HEALTHCHECK CMD $V", first("HEALTHCHECK CMD $V")),
            ("ONBUILD RUN $V", first("ONBUILD RUN $V")),
            ("MAINTAINER $V", first("MAINTAINER $V")),
        ];
        for (src, want) in cases {
            let got = first(src).expand(&env, '\\').unwrap();
            assert_eq!(got, want, "case {src:?}");
        }
        let Instruction::Run(r) = first("RUN --mount=type=cache,target=/c/$V,uid=1$V0 true")
            .expand(
                &|n: &str| (n == "V" || n == "V0").then(|| "2".to_owned()),
                '\\',
            )
            .unwrap()
        else {
            panic!("not a RUN");
        };
        assert_eq!(
            (r.mounts[0].target.as_deref(), r.mounts[0].uid),
            (Some("/c/2"), Some(12))
        );
        let err = first("USER ${V:?must be set}")
            .expand(&|_| None, '\\')
            .unwrap_err();
        assert!(matches!(err, ErrorKind::Expand(_)), "{err:?}");
    }

    #[test]
    fn expansion_leaves_run_alone() {
        let lookup = |_: &str| Some("v".to_owned());
        let run = first("RUN echo $X");
        assert_eq!(run.expand(&lookup, '\\').unwrap(), run);
    }
}
