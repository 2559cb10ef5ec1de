//! BuildKit's build checks that need nothing but the parse
//! (`frontend/dockerfile/linter`): `MaintainerDeprecated`,
//! `StageNameCasing`, `FromAsCasing`, `LegacyKeyValueFormat`,
//! `ConsistentInstructionCasing`, `ReservedStageName`,
//! `MultipleInstructionsDisallowed`, `JSONArgsRecommended`,
//! `WorkdirRelativePath`, `SecretsUsedInArgOrEnv`, `ExposeProtoCasing` and
//! `ExposeInvalidFormat`, in
//! BuildKit's words and on the instruction's first line, as `docker build`
//! prints them. `# check=skip=RULE,...` and `# check=skip=all` turn them off
//! (`NoEmptyContinuation` too), as in BuildKit.

use crate::instruction::Spanned;
use crate::syntax::Warning;

/// The rules `# check=skip=` turns off.
pub(crate) struct Skip {
    all: bool,
    rules: Vec<String>,
}

impl Skip {
    /// From the `# check=` directive's value (`skip=A,B;error=true`).
    pub(crate) fn from_directive(check: Option<&str>) -> Self {
        let mut skip = Skip {
            all: false,
            rules: Vec::new(),
        };
        for part in check.unwrap_or("").split(';') {
            let Some((key, value)) = part.split_once('=') else {
                continue;
            };
            if key.trim() != "skip" {
                continue;
            }
            let value = value.trim();
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
}

/// The checks for one instruction, appended to `out`.
pub(crate) fn check(spanned: &Spanned, skip: &Skip, out: &mut Vec<Warning>) {
    let node = &spanned.node;
    let mut warn = |rule: &'static str, message: String| {
        if !skip.skips(rule) {
            out.push(Warning {
                span: spanned.span,
                rule,
                message,
            });
        }
    };
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
        if !skip.skips("ConsistentInstructionCasing") {
            out.push(Warning {
                span: s.span,
                rule: "ConsistentInstructionCasing",
                message: format!(
                    "Command '{name}' should match the case of the command majority ({casing})"
                ),
            });
        }
    }
    check_stages(staged, skip, out);
    for s in staged {
        if let crate::Instruction::From(from) = &s.instruction
            && let Some(stage) = from
                .name
                .as_deref()
                .filter(|n| ["context", "scratch"].contains(n))
            && !skip.skips("ReservedStageName")
        {
            out.push(Warning {
                span: s.span,
                rule: "ReservedStageName",
                message: format!(
                    "Stage name should not use the same name as reserved stage \"{stage}\""
                ),
            });
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
        if !skip.skips(rule) {
            out.push(Warning {
                span,
                rule,
                message,
            });
        }
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
