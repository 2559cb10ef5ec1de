//! Issue 10: the parser's last differences from BuildKit HEAD.

use std::path::Path;

use hoist_parser::{Instruction, Onbuild, parse, parse_ast};

fn testdata() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../testdata")
}

/// The warnings `parse` gives for `src`, as they are printed.
fn warnings(src: &str) -> Vec<String> {
    parse(src)
        .expect("parses")
        .warnings
        .iter()
        .map(ToString::to_string)
        .collect()
}

/// `hoist debug ast --json` serialises every instruction: every golden
/// Dockerfile that parses gives JSON whose instructions carry their kind
/// and, but for `HEALTHCHECK NONE`-like unit values, a value.
#[test]
fn r10_debug_ast_json_every_golden() {
    let mut dirs: Vec<_> = std::fs::read_dir(testdata().join("dockerfiles"))
        .expect("reading testdata/dockerfiles")
        .map(|e| e.expect("a directory entry").path())
        .filter(|p| {
            !p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("raw-"))
        })
        .collect();
    dirs.sort();
    let mut kinds = std::collections::BTreeSet::new();
    for dir in &dirs {
        let src = std::fs::read_to_string(dir.join("Dockerfile")).expect("reading a Dockerfile");
        let df = parse(&src).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        let json = serde_json::to_value(&df)
            .unwrap_or_else(|e| panic!("{}: serialising: {e}", dir.display()));
        let instructions = json["instructions"]
            .as_array()
            .expect("an instruction list");
        assert_eq!(
            instructions.len(),
            df.instructions.len(),
            "{}",
            dir.display()
        );
        for (i, s) in instructions.iter().zip(&df.instructions) {
            let kind = i["instruction"]["kind"].as_str().unwrap_or_default();
            assert_eq!(
                kind,
                s.instruction.name().to_ascii_lowercase(),
                "{}: {i}",
                dir.display()
            );
            kinds.insert(kind.to_owned());
        }
    }
    // The goldens between them hold every instruction.
    let all: std::collections::BTreeSet<String> = hoist_parser::instruction::INSTRUCTION_NAMES
        .iter()
        .map(|n| n.to_ascii_lowercase())
        .collect();
    assert_eq!(kinds, all, "instructions the goldens do not cover");
}

#[test]
fn r10_debug_ast_json_shapes() {
    let df = parse("FROM a\nARG x=1\nENV k=v\nWORKDIR /w\nMAINTAINER me\nHEALTHCHECK NONE\n")
        .expect("parses");
    let json = serde_json::to_value(&df).expect("serialises");
    let got: Vec<String> = json["instructions"]
        .as_array()
        .expect("a list")
        .iter()
        .map(|i| i["instruction"].to_string())
        .collect();
    assert_eq!(
        got,
        [
            r#"{"kind":"from","value":{"image":"a","name":null,"platform":null}}"#,
            r#"{"kind":"arg","value":[{"name":"x","default":"1"}]}"#,
            r#"{"kind":"env","value":[{"key":"k","value":"v"}]}"#,
            r#"{"kind":"workdir","value":"/w"}"#,
            r#"{"kind":"maintainer","value":"me"}"#,
            r#"{"kind":"healthcheck","value":"none"}"#,
        ]
    );
}

/// `<<''` and `<<""` are no heredoc markers in BuildKit: the line is an
/// ordinary command and the next line is the next instruction.
#[test]
fn r10_empty_quoted_heredoc_marker() {
    for marker in ["<<''", "<<\"\"", "<<-''", "3<<\"\""] {
        let src =
            format!("FROM a\nRUN pecl install imagick {marker} && echo done\nRUN echo next\n");
        let df = parse(&src).unwrap_or_else(|e| panic!("{marker}: {e}"));
        assert_eq!(df.instructions.len(), 3, "case {marker}");
        let Instruction::Run(run) = &df.instructions[1].instruction else {
            panic!("case {marker}: not a RUN");
        };
        assert!(run.heredocs.is_empty(), "case {marker}: {:?}", run.heredocs);
    }
    // A quoted, non-empty delimiter still is one.
    let df = parse("FROM a\nRUN cat <<'E'\nbody\nE\n").expect("parses");
    let Instruction::Run(run) = &df.instructions[1].instruction else {
        panic!("not a RUN");
    };
    assert_eq!(run.heredocs.len(), 1);
}

/// An unknown ONBUILD trigger is stored as written, with a warning that
/// points at the trigger, and the Dockerfile parses.
#[test]
fn r10_onbuild_unknown_trigger() {
    let src =
        "FROM a\nONBUILD echo hi\nONBUILD : ADD . /x\nONBUILD RUN ok\nONBUILD COPY --nope a b\n";
    let df = parse(src).expect("an unknown trigger does not fail the parent");
    let triggers: Vec<(&str, bool)> = df.instructions[1..]
        .iter()
        .map(|s| match &s.instruction {
            Instruction::Onbuild(Onbuild {
                expression,
                instruction,
                ..
            }) => (expression.as_str(), instruction.is_some()),
            other => panic!("not an ONBUILD: {other:?}"),
        })
        .collect();
    assert_eq!(
        triggers,
        [
            ("echo hi", false),
            (": ADD . /x", false),
            ("RUN ok", true),
            ("COPY --nope a b", false)
        ]
    );
    let warnings: Vec<(usize, usize, &str)> = df
        .warnings
        .iter()
        .map(|w| (w.span.line, w.span.column, w.message.as_str()))
        .collect();
    assert_eq!(
        warnings,
        [
            (
                2,
                9,
                "ONBUILD trigger kept as written, but a build FROM this image will fail: unknown instruction \"echo\""
            ),
            (
                3,
                9,
                "ONBUILD trigger kept as written, but a build FROM this image will fail: unknown instruction \":\""
            ),
            (
                5,
                14,
                "ONBUILD trigger kept as written, but a build FROM this image will fail: unknown flag \"--nope\" for COPY"
            ),
        ]
    );
    // What BuildKit does refuse stays refused.
    for (src, want) in [
        (
            "FROM a\nONBUILD FROM b\n",
            "FROM isn't allowed as an ONBUILD trigger",
        ),
        ("FROM a\nONBUILD ONBUILD RUN x\n", "chaining ONBUILD"),
    ] {
        let err = parse(src).expect_err(src).to_string();
        assert!(err.contains(want), "{src:?}: {err}");
    }
}

/// BuildKit's words, on BuildKit's line: the instruction's last line.
#[test]
fn r10_empty_continuation_warning_on_last_line() {
    let src = "FROM a\nRUN echo \\\n\n  hi \\\n  there\n";
    let ast = parse_ast(src).expect("parses");
    let got: Vec<String> = ast.warnings.iter().map(ToString::to_string).collect();
    assert_eq!(got, ["5: NoEmptyContinuation: Empty continuation line"]);
    assert_eq!(parse(src).expect("parses").warnings, ast.warnings);
}

/// An error on a continuation line is reported on the instruction's first
/// line, as BuildKit reports it; the rendering still shows the exact place.
/// Unknown instructions and flags come with a "did you mean".
#[test]
fn r10_error_locations() {
    let src = "FROM a\nRUN --mount=type=cache,target=/c \\\n    --netwrok=none \\\n    make\n";
    let err = parse(src).expect_err("unknown flag");
    assert_eq!(
        err.to_string(),
        "2:1: unknown flag \"--netwrok\" for RUN (did you mean \"--network\"?)"
    );
    assert_eq!((err.span.line, err.span.column), (3, 5));
    assert_eq!(
        err.render("Dockerfile", src),
        "Dockerfile:2:1: unknown flag \"--netwrok\" for RUN (did you mean \"--network\"?)\n    2 | RUN --mount=type=cache,target=/c \\\n    3 |     --netwrok=none \\\n      |     ^^^^^^^^^^^^^^"
    );
    // On the first line nothing changes.
    let err = parse("FROM a\nCOPPY a b\n").expect_err("unknown instruction");
    assert_eq!(
        err.to_string(),
        "2:1: unknown instruction \"COPPY\" (did you mean \"COPY\"?)"
    );
    assert_eq!(err.start, None);
}

/// BuildKit's build checks that need only the parse, in its words, on the
/// instruction's first line; `# check=skip=` turns them off.
#[test]
fn r10_build_checks() {
    let src = "FROM a AS Build\nfrom b AS c\nFROM c as d\nMAINTAINER me\nENV k v\nLABEL \\\n  l v\nENV ok=1\nFROM d AS scratch\n";
    assert_eq!(
        warnings(src),
        [
            "1: StageNameCasing: Stage name 'Build' should be lowercase",
            "2: FromAsCasing: 'AS' and 'from' keywords' casing do not match",
            "2: ConsistentInstructionCasing: Command 'from' should match the case of the command majority (uppercase)",
            "3: FromAsCasing: 'as' and 'FROM' keywords' casing do not match",
            "4: MaintainerDeprecated: Maintainer instruction is deprecated in favor of using label",
            "5: LegacyKeyValueFormat: \"ENV key=value\" should be used instead of legacy \"ENV key value\" format",
            "6: LegacyKeyValueFormat: \"LABEL key=value\" should be used instead of legacy \"LABEL key value\" format",
            "9: ReservedStageName: Stage name should not use the same name as reserved stage \"scratch\"",
        ]
    );
    let skipped = format!("# check=skip=FromAsCasing,LegacyKeyValueFormat\n{src}");
    let rules: Vec<&str> = parse(&skipped)
        .expect("parses")
        .warnings
        .iter()
        .map(|w| w.rule)
        .collect();
    assert_eq!(
        rules,
        [
            "StageNameCasing",
            "ConsistentInstructionCasing",
            "MaintainerDeprecated",
            "ReservedStageName"
        ]
    );
    // Global ARGs before the first FROM do not count toward the majority.
    let src = "arg a\narg b\narg c\nFROM x\nRUN y\n";
    assert_eq!(warnings(src), Vec::<String>::new());
    let all = format!("# check=skip=all\nFROM a\nRUN x \\\n\n  y\n{src}");
    assert_eq!(warnings(&all), Vec::<String>::new());
}

/// The per-stage build checks: a repeated CMD/ENTRYPOINT/HEALTHCHECK is
/// reported where the ignored one is, and shell-form CMD/ENTRYPOINT asks
/// for JSON unless the stage (or the stage it is built from) set a SHELL.
#[test]
fn r10_build_checks_per_stage() {
    let src = "FROM a AS base\nCMD one\nCMD [\"two\"]\nENTRYPOINT [\"e\"]\n\
               HEALTHCHECK NONE\nHEALTHCHECK CMD true\n\
               FROM base AS shelled\nSHELL [\"/bin/bash\", \"-c\"]\nCMD three\n\
               FROM shelled\nENTRYPOINT four\nFROM base\nCMD five\n";
    assert_eq!(
        warnings(src),
        [
            "2: JSONArgsRecommended: JSON arguments recommended for CMD to prevent unintended behavior related to OS signals",
            "2: MultipleInstructionsDisallowed: Multiple CMD instructions should not be used in the same stage because only the last one will be used",
            "5: MultipleInstructionsDisallowed: Multiple HEALTHCHECK instructions should not be used in the same stage because only the last one will be used",
            "13: JSONArgsRecommended: JSON arguments recommended for CMD to prevent unintended behavior related to OS signals",
        ]
    );
}

/// WORKDIR's first relative path in a stage (a stage built FROM one that
/// set a WORKDIR inherits that, as in BuildKit), and ARG/ENV names that
/// look like secrets, in BuildKit's words.
#[test]
fn r10_build_checks_workdir_and_secrets() {
    let src = "FROM a\nWORKDIR app\nWORKDIR sub\nARG API_KEY PUBLIC_KEY\nENV DB_PASSWORD=x\n\
               FROM b AS abs\nWORKDIR /abs\nWORKDIR rel\nFROM c\nWORKDIR $HOME/x\n\
               FROM abs\nWORKDIR inherited\nFROM d\nWORKDIR fresh\n";
    assert_eq!(
        warnings(src),
        [
            "2: WorkdirRelativePath: Relative workdir \"app\" can have unexpected results if the base image changes",
            "4: SecretsUsedInArgOrEnv: Do not use ARG or ENV instructions for sensitive data (ARG \"API_KEY\")",
            "5: SecretsUsedInArgOrEnv: Do not use ARG or ENV instructions for sensitive data (ENV \"DB_PASSWORD\")",
            "14: WorkdirRelativePath: Relative workdir \"fresh\" can have unexpected results if the base image changes",
        ]
    );
}

#[test]
fn r10_build_checks_expose() {
    let src = "FROM a\nEXPOSE 80/TCP 443/udp\nEXPOSE 127.0.0.1:8080:80 $PORT\n";
    assert_eq!(
        warnings(src),
        [
            "2: ExposeProtoCasing: Defined protocol '80/TCP' in EXPOSE instruction should be lowercase",
            "3: ExposeInvalidFormat: EXPOSE instruction should not define an IP address or host-port mapping, found '127.0.0.1:8080:80'",
        ]
    );
}
