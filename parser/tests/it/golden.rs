//! Golden tests over `testdata/`: every directory is a case.
//!
//! - `testdata/dockerfiles/<case>/Dockerfile` parses, and its dump equals
//!   `ast.golden`; when the file has heredocs their bodies are compared
//!   with `heredocs.golden`. Cases named `raw-*` are BuildKit parser
//!   fixtures holding instructions BuildKit's parser accepts but its
//!   instruction layer rejects; they are dumped from the raw tree.
//! - `testdata/dockerfiles-invalid/<case>/Dockerfile` fails, and the
//!   rendered error equals `error.golden`.
//!
//! `UPDATE_GOLDEN=1 cargo test -p hoist-parser` rewrites the goldens.

// Test helpers panic on broken fixtures; that is their job.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};

use hoist_parser::dump::{dump, dump_heredocs};

fn testdata() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../testdata")
}

fn cases(dir: &str) -> Vec<PathBuf> {
    let mut cases: Vec<PathBuf> = std::fs::read_dir(testdata().join(dir))
        .unwrap_or_else(|e| panic!("reading testdata/{dir}: {e}"))
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("Dockerfile").is_file())
        .collect();
    cases.sort();
    cases
}

fn updating() -> bool {
    std::env::var_os("UPDATE_GOLDEN").is_some_and(|v| v == "1")
}

/// Compares `got` with the golden file, or rewrites it under UPDATE_GOLDEN.
/// Returns a description of the mismatch.
fn check(path: &Path, got: &str) -> Option<String> {
    if updating() {
        std::fs::write(path, got).unwrap();
        return None;
    }
    let want = std::fs::read_to_string(path).unwrap_or_default();
    (want != got).then(|| format!("{}:\n--- want\n{want}--- got\n{got}", path.display()))
}

fn read(case: &Path) -> String {
    let bytes = std::fs::read(case.join("Dockerfile")).unwrap();
    String::from_utf8(bytes).unwrap()
}

#[test]
fn valid_dockerfiles() {
    let cases = cases("dockerfiles");
    assert!(cases.len() >= 40, "only {} valid cases", cases.len());
    let mut failures = Vec::new();
    for case in &cases {
        let src = read(case);
        let name = case.file_name().unwrap().to_string_lossy().into_owned();
        let nodes = if name.starts_with("raw-") {
            match hoist_parser::parse_ast(&src) {
                Ok(ast) => ast.nodes,
                Err(e) => {
                    failures.push(format!("{name}: {}", e.render("Dockerfile", &src)));
                    continue;
                }
            }
        } else {
            match hoist_parser::parse(&src) {
                Ok(df) => df.instructions.into_iter().map(|s| s.node).collect(),
                Err(e) => {
                    failures.push(format!("{name}: {}", e.render("Dockerfile", &src)));
                    continue;
                }
            }
        };
        failures.extend(check(&case.join("ast.golden"), &dump(&nodes)));
        let heredocs = dump_heredocs(&nodes);
        let golden = case.join("heredocs.golden");
        if !heredocs.is_empty() || golden.exists() {
            failures.extend(check(&golden, &heredocs));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn invalid_dockerfiles() {
    let cases = cases("dockerfiles-invalid");
    assert!(cases.len() >= 25, "only {} invalid cases", cases.len());
    let mut failures = Vec::new();
    for case in &cases {
        let src = read(case);
        let name = case.file_name().unwrap().to_string_lossy().into_owned();
        let err = match hoist_parser::parse(&src) {
            Err(e) => e,
            Ok(df) => match graph_error(&df) {
                Some(e) => e,
                None => {
                    failures.push(format!("{name}: parsed without error"));
                    continue;
                }
            },
        };
        let span = err.span;
        if span.line > 0 {
            let text = span.text(&src);
            assert!(
                src.get(span.range()).is_some(),
                "{name}: span {span:?} out of bounds"
            );
            let _ = text;
        }
        let mut rendered = err.render("Dockerfile", &src);
        rendered.push('\n');
        failures.extend(check(&case.join("error.golden"), &rendered));
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Graph errors (unknown target aside) count as invalid Dockerfiles too.
fn graph_error(df: &hoist_parser::Dockerfile) -> Option<hoist_parser::ParseError> {
    let graph = hoist_parser::Graph::build(df, &Default::default());
    match graph {
        Err(e) => Some(e),
        Ok(g) => g.stages_for_target(None).err(),
    }
}

/// Spans of every parsed instruction lie inside the source and start at
/// the instruction's name.
#[test]
fn spans_point_at_instructions() {
    for case in cases("dockerfiles") {
        let src = read(&case);
        let Ok(df) = hoist_parser::parse(&src) else {
            continue;
        };
        for s in &df.instructions {
            let text = src
                .get(s.span.range())
                .unwrap_or_else(|| panic!("{}: span {:?} out of bounds", case.display(), s.span));
            assert!(
                text.to_ascii_lowercase()
                    .starts_with(&s.node.name.to_ascii_lowercase()),
                "{}: span {:?} starts with {text:?}, not {}",
                case.display(),
                s.span,
                s.node.name
            );
            let line = src.lines().nth(s.span.line - 1).unwrap_or_default();
            let line = line.strip_prefix('\u{feff}').unwrap_or(line);
            let col_text: String = line.chars().skip(s.span.column - 1).collect();
            assert!(
                col_text
                    .to_ascii_lowercase()
                    .starts_with(&s.node.name.to_ascii_lowercase()),
                "{}: line {} column {} does not hold {}",
                case.display(),
                s.span.line,
                s.span.column,
                s.node.name
            );
        }
    }
}
