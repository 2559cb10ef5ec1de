//! BuildKit's build checks that need the build context
//! (dockerfile2llb's `validateCopySourcePath`): `CopyIgnoredFile`.

use hoist_parser::dump::go_quote;
use hoist_parser::graph::{Graph, StageIndex};
use hoist_parser::{Dockerfile, Instruction, Warning};

use crate::dockerignore::{PatternMatcher, clean_path};

/// `CopyIgnoredFile`: a COPY (from the context) or ADD source of one of
/// the `stages` the build runs that `.dockerignore` excludes, so the
/// instruction cannot read it. As in BuildKit, nothing is reported when the
/// ignore file has `!` exceptions, and `.` only when a pattern excludes
/// every entry of the root (`*`, `**`, `**/*`). Sources that use a
/// variable are not checked (BuildKit checks them once expanded).
pub fn copy_ignored_files(
    df: &Dockerfile,
    graph: &Graph,
    stages: &[StageIndex],
    ignore: &PatternMatcher,
) -> Vec<Warning> {
    const RULE: &str = "CopyIgnoredFile";
    let mut out = Vec::new();
    if ignore.is_empty() || ignore.exclusions() || hoist_parser::skips_check(df, RULE) {
        return out;
    }
    let root_ignored = ignore
        .patterns()
        .iter()
        .any(|p| !p.is_exclusion() && matches!(p.as_str(), "*" | "**" | "**/*"));
    for &stage in stages {
        for i in graph.stages[stage].instructions.clone() {
            let spanned = &df.instructions[i];
            let (copy, cmd) = match &spanned.instruction {
                Instruction::Copy(c) if c.from.is_none() => (c, "Copy"),
                Instruction::Add(c) => (c, "Add"),
                _ => continue,
            };
            for src in &copy.sources {
                if src.contains('$') || src.contains("://") || src.starts_with("git@") {
                    continue;
                }
                let src = clean_path(src);
                if (src == "." || src == "/") && !root_ignored {
                    continue;
                }
                if ignore.matches_or_parent_matches(&src).unwrap_or(false) {
                    out.push(Warning {
                        span: spanned.span,
                        rule: RULE,
                        message: format!(
                            "Attempting to {cmd} file {} that is excluded by .dockerignore",
                            go_quote(&src)
                        ),
                    });
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn warnings(dockerfile: &str, ignore: &[&str], target: Option<&str>) -> Vec<String> {
        let df = hoist_parser::parse(dockerfile).unwrap();
        let graph = Graph::build(&df, &BTreeMap::new()).unwrap();
        let stages = graph.stages_for_target(target).unwrap();
        let ignore = PatternMatcher::new(ignore).unwrap();
        copy_ignored_files(&df, &graph, &stages, &ignore)
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    #[test]
    fn r10_copy_of_an_ignored_file_is_reported() {
        let df = "FROM scratch AS other\nCOPY secret.txt /\n\
                  FROM scratch\nCOPY app.txt secret.txt /\nADD logs/today.log /\n\
                  COPY --from=other secret.txt /x\nCOPY . /src\nCOPY ${X}.txt /\n";
        // `other` is built too: the last stage copies from it.
        let want = [
            "2: CopyIgnoredFile: Attempting to Copy file \"secret.txt\" that is excluded by \
             .dockerignore",
            "4: CopyIgnoredFile: Attempting to Copy file \"secret.txt\" that is excluded by \
             .dockerignore",
            "5: CopyIgnoredFile: Attempting to Add file \"logs/today.log\" that is excluded by \
             .dockerignore",
        ];
        assert_eq!(warnings(df, &["secret.txt", "logs"], None), want);
        // Only the stages the build runs.
        assert_eq!(
            warnings(df, &["secret.txt"], Some("other")),
            [
                "2: CopyIgnoredFile: Attempting to Copy file \"secret.txt\" that is excluded by \
              .dockerignore"
            ]
        );
        // `!` exceptions turn the check off; `.` needs a pattern for all.
        assert!(warnings(df, &["secret.txt", "!keep"], None).is_empty());
        assert_eq!(
            warnings("FROM scratch\nCOPY . /\n", &["*"], None),
            ["2: CopyIgnoredFile: Attempting to Copy file \".\" that is excluded by .dockerignore"]
        );
        assert!(
            warnings(
                "# check=skip=CopyIgnoredFile\nFROM scratch\nCOPY secret.txt /\n",
                &["secret.txt"],
                None
            )
            .is_empty()
        );
    }
}
