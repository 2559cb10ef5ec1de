//! BuildKit's build checks that need nothing but the parse
//! (`frontend/dockerfile/linter`): `MaintainerDeprecated`,
//! `StageNameCasing`, `FromAsCasing`, `LegacyKeyValueFormat`,
//! `ConsistentInstructionCasing`, `ReservedStageName`,
//! `MultipleInstructionsDisallowed`, `JSONArgsRecommended`,
//! `WorkdirRelativePath`, `SecretsUsedInArgOrEnv`, `ExposeProtoCasing` and
//! `ExposeInvalidFormat`, in
//! BuildKit's words and on the instruction's first line, as `docker build`
//! prints them. `# check=skip=RULE,...` and `# check=skip=all` turn them off
//! (`NoEmptyContinuation` too), as in BuildKit; with `# check=error=true`
//! ([`check_is_error`]) any of them fails the build with
//! [`lint_violation_message`].
//!
//! [`check_from`] adds the checks of FROM that need the build's arguments:
//! `UndefinedArgInFrom`, `InvalidDefaultArgInFrom`,
//! `RedundantTargetPlatform` and `FromPlatformFlagConstDisallowed`; the
//! builder makes `UndefinedVar` (with [`undefined_var_message`]) and
//! `CopyIgnoredFile`, which need the stage's state and the context.

use std::cell::RefCell;
use std::collections::BTreeMap;

use crate::expand::expand_word;
use crate::graph::PLATFORM_ARGS;
use crate::instruction::{Dockerfile, Instruction, Spanned};
use crate::syntax::Warning;

/// The rules `# check=skip=` turns off.
pub(crate) struct Skip {
    all: bool,
    rules: Vec<String>,
    /// `error=true`: a warning fails the build.
    error: bool,
}

impl Skip {
    /// From the `# check=` directive's value (`skip=A,B;error=true`).
    pub(crate) fn from_directive(check: Option<&str>) -> Self {
        let mut skip = Skip {
            all: false,
            rules: Vec::new(),
            error: false,
        };
        for part in check.unwrap_or("").split(';') {
            let Some((key, value)) = part.split_once('=') else {
                continue;
            };
            let value = value.trim();
            match key.trim() {
                "skip" => {}
                // Go's `strconv.ParseBool`, as BuildKit parses it.
                "error" => {
                    skip.error = matches!(value, "1" | "t" | "T" | "TRUE" | "true" | "True");
                    continue;
                }
                _ => continue,
            }
            if value == "all" {
                skip.all = true;
            } else {
                skip.rules
                    .extend(value.split(',').map(|r| r.trim().to_owned()));
            }
        }
        skip
    }

    pub(crate) fn skips(&self, rule: &str) -> bool {
        self.all || self.rules.iter().any(|r| r == rule)
    }

    /// Appends the warning to `out` unless the directive skips `rule`.
    fn warn(&self, out: &mut Vec<Warning>, span: crate::Span, rule: &'static str, message: String) {
        if !self.skips(rule) {
            out.push(Warning {
                span,
                rule,
                message,
            });
        }
    }
}

/// Whether the Dockerfile's `# check=skip=` directive turns `rule` off,
/// for the checks made outside the parser.
pub fn skips_check(df: &Dockerfile, rule: &str) -> bool {
    Skip::from_directive(df.directives.check.as_deref()).skips(rule)
}

/// Whether the Dockerfile's `# check=error=true` makes any build-check
/// warning fail the build (BuildKit's `Linter.ReturnAsError`).
pub fn check_is_error(df: &Dockerfile) -> bool {
    Skip::from_directive(df.directives.check.as_deref()).error
}

/// BuildKit's error for `# check=error=true` when checks warned
/// (`Linter.Error`): each rule once, here in the order first reported
/// (BuildKit's order is a Go map's).
pub fn lint_violation_message<'a>(rules: impl IntoIterator<Item = &'a str>) -> String {
    let mut seen: Vec<&str> = Vec::new();
    for rule in rules {
        if !seen.contains(&rule) {
            seen.push(rule);
        }
    }
    format!("lint violation found for rules: {}", seen.join(", "))
}

/// BuildKit's `UndefinedVar` message for `name`, with a "did you mean"
/// from the variables the instruction could see.
pub fn undefined_var_message(name: &str, known: &[&str]) -> String {
    let mut message = format!("Usage of undefined variable '${name}'");
    if let Some(near) = crate::suggest::nearest(name, known) {
        message.push_str(&format!(" (did you mean ${near}?)"));
    }
    message
}

/// The arguments BuildKit defines for every build besides [`PLATFORM_ARGS`]
/// (`defaultArgs` in dockerfile2llb).
const MORE_DEFAULT_ARGS: &[&str] = &["BUILDOSVERSION", "TARGETOSVERSION", "TARGETSTAGE"];

/// BuildKit's checks of each FROM that depend on the build's arguments
/// (dockerfile2llb's `buildDispatchStates` and
/// `validateBaseImagesWithDefaultArgs`), in its words and on the FROM's
/// line:
/// - `UndefinedArgInFrom`: the image or `--platform` uses a variable that
///   is neither a global `ARG` nor one BuildKit defines;
/// - `InvalidDefaultArgInFrom`: with no `--build-arg`, the global ARGs'
///   defaults give an empty or invalid image name;
/// - `RedundantTargetPlatform`: `--platform=$TARGETPLATFORM`;
/// - `FromPlatformFlagConstDisallowed`: a constant `--platform` whose OS
///   and architecture the stage name does not mention.
///
/// `build_args` are the `--build-arg`s, platform ones included (a missing
/// platform argument gets the host's value).
pub fn check_from(df: &Dockerfile, build_args: &BTreeMap<String, String>) -> Vec<Warning> {
    let skip = Skip::from_directive(df.directives.check.as_deref());
    let escape = df.escape();
    let mut out = Vec::new();
    let platform = host_platform();
    let defaults: Vec<(String, String)> = PLATFORM_ARGS
        .iter()
        .chain(MORE_DEFAULT_ARGS)
        .map(|&name| {
            let value = match name {
                "BUILDPLATFORM" | "TARGETPLATFORM" => platform.clone(),
                "BUILDOS" | "TARGETOS" => "linux".to_owned(),
                "BUILDARCH" | "TARGETARCH" => go_arch().to_owned(),
                "TARGETSTAGE" => "default".to_owned(),
                _ => String::new(),
            };
            (name.to_owned(), value)
        })
        .collect();
    // The global ARGs, evaluated as BuildKit's `buildMetaArgs` does: with
    // the build's arguments, and with their defaults alone.
    let meta = |with_args: bool| -> Option<(Env, Vec<String>)> {
        let mut env: Vec<(String, String)> = defaults
            .iter()
            .map(|(k, v)| {
                let v = if with_args {
                    build_args.get(k).unwrap_or(v)
                } else {
                    v
                };
                (k.clone(), v.clone())
            })
            .collect();
        let mut declared = Vec::new();
        for s in &df.instructions {
            let decls = match &s.instruction {
                Instruction::From(_) => break,
                Instruction::Arg(decls) => decls,
                _ => continue,
            };
            for d in decls {
                declared.push(d.name.clone());
                let given = if with_args {
                    build_args.get(&d.name).cloned()
                } else {
                    None
                };
                let value = match (given, &d.default) {
                    (Some(v), _) => Some(v),
                    (None, Some(default)) => {
                        Some(expand_word(default, &|n| get(&env, n), escape).ok()?)
                    }
                    (None, None) => None,
                };
                env.retain(|(k, _)| k != &d.name);
                if let Some(value) = value {
                    env.push((d.name.clone(), value));
                }
            }
        }
        Some((env, declared))
    };
    let Some((env, declared)) = meta(true) else {
        return out;
    };
    let defaults_only = meta(false);
    let known: Vec<&str> = env
        .iter()
        .map(|(k, _)| k.as_str())
        .chain(declared.iter().map(String::as_str))
        .collect();
    for s in &df.instructions {
        let Instruction::From(from) = &s.instruction else {
            continue;
        };
        let mut warn =
            |rule: &'static str, message: String| skip.warn(&mut out, s.span, rule, message);
        let mut words = vec![&from.image];
        words.extend(&from.platform);
        for word in words {
            let (_, _, unmatched) = expand_tracking(word, &env, escape);
            for name in unmatched {
                if known.contains(&name.as_str()) {
                    continue;
                }
                let mut message = format!("FROM argument '{name}' is not declared");
                if let Some(near) = crate::suggest::nearest(&name, &known) {
                    message.push_str(&format!(" (did you mean {near}?)"));
                }
                warn("UndefinedArgInFrom", message);
            }
        }
        if let Some(word) = &from.platform {
            let (result, matched, unmatched) = expand_tracking(word, &env, escape);
            if let Some(result) = result {
                if matched == ["TARGETPLATFORM"]
                    && unmatched.is_empty()
                    && Some(result.as_str()) == get(&env, "TARGETPLATFORM").as_deref()
                {
                    warn(
                        "RedundantTargetPlatform",
                        format!(
                            "Setting platform to predefined {word} in FROM is redundant as this \
                             is the default behavior"
                        ),
                    );
                }
                if matched.is_empty() && unmatched.is_empty() {
                    let mut parts = result.split('/');
                    let (os, arch) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
                    let name = from.name.as_deref().unwrap_or("");
                    let valid = !os.is_empty() && result.split('/').count() <= 3;
                    if valid && !name.contains(os) && (arch.is_empty() || !name.contains(arch)) {
                        warn(
                            "FromPlatformFlagConstDisallowed",
                            format!(
                                "FROM --platform flag should not use constant value {result:?}"
                            ),
                        );
                    }
                }
            }
        }
        if let Some((env, _)) = &defaults_only {
            let (result, _, _) = expand_tracking(&from.image, env, escape);
            if result.is_some_and(|r| !is_valid_reference(&r)) {
                warn(
                    "InvalidDefaultArgInFrom",
                    format!(
                        "Default value for ARG {} results in empty or invalid base image name",
                        from.image
                    ),
                );
            }
        }
    }
    out
}

/// Variables and their values, later ones winning.
type Env = Vec<(String, String)>;

fn get(env: &[(String, String)], name: &str) -> Option<String> {
    env.iter()
        .rev()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.clone())
}

/// `word` expanded in `env`, with the variables it found set and those it
/// found unset (BuildKit's `ProcessWordWithMatches`).
fn expand_tracking(
    word: &str,
    env: &[(String, String)],
    escape: char,
) -> (Option<String>, Vec<String>, Vec<String>) {
    let seen: RefCell<(Vec<String>, Vec<String>)> = RefCell::default();
    let result = expand_word(
        word,
        &|name| {
            let value = get(env, name);
            let mut seen = seen.borrow_mut();
            let list = if value.is_some() {
                &mut seen.0
            } else {
                &mut seen.1
            };
            if !list.iter().any(|n| n == name) {
                list.push(name.to_owned());
            }
            value
        },
        escape,
    )
    .ok();
    let (matched, unmatched) = seen.into_inner();
    (result, matched, unmatched)
}

/// Whether `name` is an image reference docker accepts
/// (distribution's `ParseNormalizedNamed`): `[domain/]path[:tag][@digest]`
/// with a lowercase path.
fn is_valid_reference(name: &str) -> bool {
    let (rest, digest) = match name.split_once('@') {
        Some((rest, digest)) => (rest, Some(digest)),
        None => (name, None),
    };
    if let Some(digest) = digest {
        let Some((algo, hex)) = digest.split_once(':') else {
            return false;
        };
        if algo.is_empty() || hex.len() < 32 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
            return false;
        }
    }
    let (path, tag) = match rest.rfind(':') {
        Some(i) if !rest[i..].contains('/') => (&rest[..i], Some(&rest[i + 1..])),
        _ => (rest, None),
    };
    if let Some(tag) = tag {
        let ok = !tag.is_empty()
            && tag.len() <= 128
            && !tag.starts_with(['.', '-'])
            && tag
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
        if !ok {
            return false;
        }
    }
    if path.is_empty() {
        return false;
    }
    let mut components: Vec<&str> = path.split('/').collect();
    let first = components[0];
    if components.len() > 1 && (first.contains(['.', ':']) || first == "localhost") {
        let (host, port) = first.split_once(':').unwrap_or((first, ""));
        if host.is_empty()
            || !host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-'))
            || !port.chars().all(|c| c.is_ascii_digit())
        {
            return false;
        }
        components.remove(0);
    }
    components.iter().all(|c| {
        !c.is_empty()
            && c.starts_with(|ch: char| ch.is_ascii_lowercase() || ch.is_ascii_digit())
            && c.ends_with(|ch: char| ch.is_ascii_lowercase() || ch.is_ascii_digit())
            && c.chars().all(|ch| {
                ch.is_ascii_lowercase() || ch.is_ascii_digit() || matches!(ch, '.' | '_' | '-')
            })
    })
}

fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

fn host_platform() -> String {
    format!("linux/{}", go_arch())
}

/// The checks for one instruction, appended to `out`.
pub(crate) fn check(spanned: &Spanned, skip: &Skip, out: &mut Vec<Warning>) {
    let node = &spanned.node;
    let mut warn =
        |rule: &'static str, message: String| skip.warn(out, spanned.span, rule, message);
    match node.name.to_ascii_lowercase().as_str() {
        "maintainer" => warn(
            "MaintainerDeprecated",
            "Maintainer instruction is deprecated in favor of using label".to_owned(),
        ),
        "from" => {
            if let [_, as_, stage] = node.args.as_slice() {
                if *stage != stage.to_lowercase() {
                    warn(
                        "StageNameCasing",
                        format!("Stage name '{stage}' should be lowercase"),
                    );
                }
                let from = &node.name;
                let matches = if *from == from.to_lowercase() {
                    *as_ == as_.to_lowercase()
                } else if *from == from.to_uppercase() {
                    *as_ == as_.to_uppercase()
                } else {
                    true
                };
                if !matches {
                    warn(
                        "FromAsCasing",
                        format!("'{as_}' and '{from}' keywords' casing do not match"),
                    );
                }
            }
        }
        // Ports from variables are known only at build time.
        "expose" => {
            for raw in node.args.iter().filter(|p| !p.contains('$')) {
                let parts: Vec<&str> = raw.split(':').collect();
                let container = parts.last().copied().unwrap_or_default();
                let proto = container.split_once('/').map_or("", |(_, p)| p);
                if proto != proto.to_lowercase() {
                    warn(
                        "ExposeProtoCasing",
                        format!(
                            "Defined protocol '{raw}' in EXPOSE instruction should be lowercase"
                        ),
                    );
                }
                if parts.len() > 1 {
                    warn(
                        "ExposeInvalidFormat",
                        format!(
                            "EXPOSE instruction should not define an IP address or host-port mapping, found '{raw}'"
                        ),
                    );
                }
            }
        }
        // The legacy `ENV key value` form: the node's triples have no `=`.
        "env" | "label" if node.args.len() == 3 && node.args[2].is_empty() => {
            let name = &node.name;
            warn(
                "LegacyKeyValueFormat",
                format!(
                    "\"{name} key=value\" should be used instead of legacy \"{name} key value\" format"
                ),
            );
        }
        _ => {}
    }
}

/// The checks over the whole file: BuildKit's `validateCommandCasing`
/// (instructions from the first FROM on, against the majority's case) and
/// `ReservedStageName`.
pub(crate) fn check_file(instructions: &[Spanned], skip: &Skip, out: &mut Vec<Warning>) {
    let first_from = instructions
        .iter()
        .position(|s| s.node.name.eq_ignore_ascii_case("from"))
        .unwrap_or(instructions.len());
    let staged = &instructions[first_from..];
    let consistent = |name: &str| name == name.to_lowercase() || name == name.to_uppercase();
    let (mut lower, mut upper) = (0usize, 0usize);
    for s in staged {
        let name = &s.node.name;
        if consistent(name) {
            if *name == name.to_lowercase() {
                lower += 1;
            } else {
                upper += 1;
            }
        }
    }
    let majority_lower = lower > upper;
    for s in staged {
        let name = &s.node.name;
        let casing = if majority_lower && *name != name.to_lowercase() {
            "lowercase"
        } else if !majority_lower && *name != name.to_uppercase() {
            "uppercase"
        } else {
            continue;
        };
        skip.warn(
            out,
            s.span,
            "ConsistentInstructionCasing",
            format!("Command '{name}' should match the case of the command majority ({casing})"),
        );
    }
    check_stages(staged, skip, out);
    for s in staged {
        if let crate::Instruction::From(from) = &s.instruction
            && let Some(stage) = from
                .name
                .as_deref()
                .filter(|n| ["context", "scratch"].contains(n))
        {
            skip.warn(
                out,
                s.span,
                "ReservedStageName",
                format!("Stage name should not use the same name as reserved stage \"{stage}\""),
            );
        }
    }
}

/// Per stage: a second CMD, ENTRYPOINT or HEALTHCHECK makes the earlier
/// one useless (reported where that one is, as BuildKit does), and a
/// shell-form CMD or ENTRYPOINT without a SHELL is not signal-safe.
/// BuildKit looks at the base image's SHELL too; a stage built FROM a stage
/// of this file inherits its SHELL here, an image's is not known before
/// the build (images that set one are rare outside Windows). Such a stage
/// also inherits whether a WORKDIR was set, as BuildKit's dispatch state
/// does, so a relative WORKDIR under an earlier stage's is not reported.
fn check_stages(staged: &[Spanned], skip: &Skip, out: &mut Vec<Warning>) {
    use crate::Instruction;
    // Per finished named stage: whether it set a SHELL and a WORKDIR.
    let mut finished: Vec<(String, bool, bool)> = Vec::new();
    let mut current_shell = false;
    let mut current_name: Option<String> = None;
    let mut last: [Option<crate::Span>; 3] = [None; 3];
    let mut workdir_set = false;
    let mut warn = |rule: &'static str, span: crate::Span, message: String| {
        skip.warn(out, span, rule, message)
    };
    for s in staged {
        let name = &s.node.name;
        match &s.instruction {
            Instruction::From(from) => {
                if let Some(done) = current_name.take() {
                    finished.push((done, current_shell, workdir_set));
                }
                (current_shell, workdir_set) = finished
                    .iter()
                    .rev()
                    .find(|(n, _, _)| n.eq_ignore_ascii_case(&from.image))
                    .map_or((false, false), |(_, shell, workdir)| (*shell, *workdir));
                current_name = from.name.clone();
                last = [None; 3];
            }
            // Only the stage's first WORKDIR: fixing it fixes the rest. A
            // path from a variable is known only at build time.
            Instruction::Workdir(path) => {
                if !workdir_set && !path.starts_with('/') && !path.starts_with('$') {
                    warn(
                        "WorkdirRelativePath",
                        s.span,
                        format!(
                            "Relative workdir {} can have unexpected results if the base image changes",
                            crate::dump::go_quote(path)
                        ),
                    );
                }
                workdir_set = true;
            }
            Instruction::Env(pairs) => {
                for kv in pairs {
                    if is_secret_name(&kv.key) {
                        warn(
                            "SecretsUsedInArgOrEnv",
                            s.span,
                            secret_message("ENV", &kv.key),
                        );
                    }
                }
            }
            Instruction::Arg(decls) => {
                for decl in decls {
                    if is_secret_name(&decl.name) {
                        warn(
                            "SecretsUsedInArgOrEnv",
                            s.span,
                            secret_message("ARG", &decl.name),
                        );
                    }
                }
            }
            Instruction::Shell(_) => current_shell = true,
            Instruction::Cmd(_) | Instruction::Entrypoint(_) | Instruction::Healthcheck(_) => {
                let (slot, command) = match &s.instruction {
                    Instruction::Cmd(command) => (0, Some(command)),
                    Instruction::Entrypoint(command) => (1, Some(command)),
                    _ => (2, None),
                };
                if let Some(previous) = last[slot] {
                    warn(
                        "MultipleInstructionsDisallowed",
                        previous,
                        format!(
                            "Multiple {name} instructions should not be used in the same stage because only the last one will be used"
                        ),
                    );
                }
                last[slot] = Some(s.span);
                if matches!(command, Some(crate::ShellOrExec::Shell(_))) && !current_shell {
                    warn(
                        "JSONArgsRecommended",
                        s.span,
                        format!(
                            "JSON arguments recommended for {name} to prevent unintended behavior related to OS signals"
                        ),
                    );
                }
            }
            _ => {}
        }
    }
}

fn secret_message(instruction: &str, key: &str) -> String {
    format!(
        "Do not use ARG or ENV instructions for sensitive data ({instruction} {})",
        crate::dump::go_quote(key)
    )
}

/// BuildKit's secret-name patterns: an `_`-separated word of the name is a
/// secret word (`API_KEY`, `GITHUB_TOKEN`), and none is an allowed one
/// (`PUBLIC_KEY`, `KEY_FILE`, `TOKEN_VERSION`).
fn is_secret_name(name: &str) -> bool {
    const SECRET: &[&str] = &[
        "apikey",
        "auth",
        "credential",
        "credentials",
        "key",
        "password",
        "pword",
        "passwd",
        "secret",
        "token",
    ];
    const ALLOW: &[&str] = &["public", "file", "version"];
    let has = |words: &[&str]| {
        name.split('_')
            .any(|w| words.iter().any(|t| w.eq_ignore_ascii_case(t)))
    };
    has(SECRET) && !has(ALLOW)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `error=` reads as Go's `strconv.ParseBool`, beside `skip=`, in
    /// either order; the violation names each rule once.
    #[test]
    fn check_directive_error_option() {
        for (check, error, skips_from_as) in [
            ("error=true", true, false),
            ("skip=FromAsCasing;error=true", true, true),
            ("error=1 ; skip=all", true, true),
            ("error=T", true, false),
            ("error=false", false, false),
            ("error=yes", false, false),
            ("skip=FromAsCasing", false, true),
        ] {
            let skip = Skip::from_directive(Some(check));
            assert_eq!(skip.error, error, "{check}");
            assert_eq!(skip.skips("FromAsCasing"), skips_from_as, "{check}");
        }
        assert_eq!(
            lint_violation_message(["FromAsCasing", "UndefinedVar", "FromAsCasing"]),
            "lint violation found for rules: FromAsCasing, UndefinedVar"
        );
    }

    #[test]
    fn secret_names() {
        let cases = [
            ("API_KEY", true),
            ("github_token", true),
            ("DATABASE_PASSWORD", true),
            ("secret_MESSAGE", true),
            ("AUTH", true),
            ("PUBLIC_KEY", false),
            ("KEY_FILE", false),
            ("TOKEN_VERSION", false),
            ("KEYBOARD", false),
            ("MONKEY", false),
            ("PATH", false),
        ];
        for (name, want) in cases {
            assert_eq!(is_secret_name(name), want, "case {name}");
        }
    }

    fn from_warnings(dockerfile: &str, args: &[(&str, &str)]) -> Vec<String> {
        let df = crate::parse(dockerfile).unwrap();
        let args = args
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        check_from(&df, &args)
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    #[test]
    fn r10_from_checks_that_need_the_build_args() {
        let platform = host_platform();
        type Case<'a> = (&'a str, Vec<(&'a str, &'a str)>, Vec<String>);
        let cases: Vec<Case<'_>> = vec![
            ("FROM busybox\n", vec![], vec![]),
            ("ARG TAG=latest\nFROM busybox:${TAG}\n", vec![], vec![]),
            (
                "FROM busybox:${TAG}\n",
                vec![("TAG", "1")],
                vec![
                    "1: UndefinedArgInFrom: FROM argument 'TAG' is not declared".into(),
                    "1: InvalidDefaultArgInFrom: Default value for ARG busybox:${TAG} results \
                     in empty or invalid base image name"
                        .into(),
                ],
            ),
            (
                "ARG VERSION=1\nFROM busybox:${VERSIN}\n",
                vec![],
                vec![
                    "2: UndefinedArgInFrom: FROM argument 'VERSIN' is not declared (did you \
                     mean VERSION?)"
                        .into(),
                    "2: InvalidDefaultArgInFrom: Default value for ARG busybox:${VERSIN} \
                     results in empty or invalid base image name"
                        .into(),
                ],
            ),
            // Declared without a default: given at build time, not
            // undefined; empty by default.
            (
                "ARG IMAGE\nFROM ${IMAGE}\n",
                vec![("IMAGE", "busybox")],
                vec![
                    "2: InvalidDefaultArgInFrom: Default value for ARG ${IMAGE} results in \
                     empty or invalid base image name"
                        .into(),
                ],
            ),
            ("ARG IMAGE=busybox\nFROM ${IMAGE}\n", vec![], vec![]),
            (
                "FROM --platform=$TARGETPLATFORM busybox\n",
                vec![],
                vec![
                    "1: RedundantTargetPlatform: Setting platform to predefined \
                     $TARGETPLATFORM in FROM is redundant as this is the default behavior"
                        .into(),
                ],
            ),
            ("FROM --platform=$BUILDPLATFORM busybox\n", vec![], vec![]),
            (
                "FROM --platform=linux/amd64 busybox AS build\n",
                vec![],
                vec![
                    "1: FromPlatformFlagConstDisallowed: FROM --platform flag should not use \
                     constant value \"linux/amd64\""
                        .into(),
                ],
            ),
            (
                "FROM --platform=linux/amd64 busybox AS build-amd64\n",
                vec![],
                vec![],
            ),
            (
                "# check=skip=UndefinedArgInFrom,InvalidDefaultArgInFrom\nFROM busybox:${X}\n",
                vec![],
                vec![],
            ),
        ];
        for (dockerfile, args, want) in cases {
            assert_eq!(from_warnings(dockerfile, &args), want, "{dockerfile:?}");
        }
        assert!(platform.starts_with("linux/"));
    }

    #[test]
    fn references_are_checked_as_docker_parses_them() {
        for (name, valid) in [
            ("busybox", true),
            ("busybox:1.36", true),
            ("library/busybox:latest", true),
            ("reg.example:5000/a/b:c", true),
            ("localhost/x", true),
            (
                "busybox@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
                true,
            ),
            ("", false),
            ("busybox:", false),
            ("Busybox", false),
            ("busy box", false),
            ("a//b", false),
            (":tag", false),
        ] {
            assert_eq!(is_valid_reference(name), valid, "{name:?}");
        }
    }

    #[test]
    fn skip_directive() {
        let cases = [
            (None, "FromAsCasing", false),
            (Some("skip=all"), "FromAsCasing", true),
            (
                Some("skip=FromAsCasing, StageNameCasing"),
                "StageNameCasing",
                true,
            ),
            (
                Some("skip=FromAsCasing;error=true"),
                "StageNameCasing",
                false,
            ),
            (
                Some("error=true;skip=StageNameCasing"),
                "StageNameCasing",
                true,
            ),
        ];
        for (check, rule, want) in cases {
            assert_eq!(
                Skip::from_directive(check).skips(rule),
                want,
                "case {check:?} {rule}"
            );
        }
    }
}
