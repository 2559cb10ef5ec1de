//! The builder's orchestration with hoist-sandbox's fake sandbox (issue
//! 11): step order, cache decisions and error paths, with no root, no
//! namespaces and no overlayfs. At most one layer is below each RUN here
//! and no COPY or WORKDIR is used, so nothing needs an overlay mount; the
//! tests pass as an ordinary user.

#![allow(clippy::unwrap_used)] // test helpers panic with the failing call

use std::collections::BTreeMap;

use hoist_builder::args::Platform;
use hoist_builder::layer::Compression;
use hoist_builder::progress::NoProgress;
use hoist_builder::{BuildError, BuildRequest, Builder, SandboxOptions, StepError};
use hoist_sandbox::fake::{FakeSandbox, upperdir};
use hoist_sandbox::{Network, SandboxError};
use hoist_store::Store;

pub(super) fn request(dockerfile: &str, context: &std::path::Path) -> BuildRequest {
    BuildRequest {
        dockerfile: dockerfile.to_owned(),
        dockerfile_name: "Dockerfile".to_owned(),
        context: context.to_owned(),
        dockerfile_path: None,
        target: None,
        build_args: BTreeMap::new(),
        labels: BTreeMap::new(),
        platform: Platform::host(),
        network: Network::None,
        no_cache: false,
        secrets: Default::default(),
        no_cache_filter: Vec::new(),
        explain: false,
        compression: Compression::default(),
        source_date_epoch: Some(0),
        sandbox: SandboxOptions::default(),
    }
}

/// A fake whose runs write `/<argv[0]>` with the argv joined, and fail with
/// the code given as `exit=N` in argv.
pub(super) fn scripted() -> FakeSandbox {
    FakeSandbox::new(|spec, _io| {
        let args: Vec<&str> = spec.args.iter().map(|a| a.to_str().unwrap()).collect();
        if let Some(code) = args.iter().find_map(|a| a.strip_prefix("exit=")) {
            return Ok(code.parse().unwrap());
        }
        if args[0] == "missing" {
            return Err(SandboxError::NotFound {
                program: "missing".into(),
            });
        }
        let upper = upperdir(spec).expect("RUN writes a layer");
        std::fs::write(upper.join(args[0]), args.join(" ")).unwrap();
        Ok(0)
    })
}

pub(super) struct Env {
    pub(super) _dir: tempfile::TempDir,
    pub(super) store: Store,
    pub(super) context: std::path::PathBuf,
}

pub(super) fn env() -> Env {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("store")).unwrap();
    let context = dir.path().join("ctx");
    std::fs::create_dir(&context).unwrap();
    Env {
        _dir: dir,
        store,
        context,
    }
}

#[test]
fn r11_steps_run_in_order_with_the_stage_env_and_user() {
    let env = env();
    let sb = scripted();
    let builder = Builder::new(&env.store, &sb, &NoProgress);
    let df = "FROM scratch\nENV A=1\nUSER 4242:4243\nRUN [\"first\", \"x\"]\nRUN [\"second\"]\n";
    let built = builder.build(&request(df, &env.context)).unwrap();
    assert_eq!(sb.argvs(), [vec!["first", "x"], vec!["second"]]);
    let runs = sb.runs();
    assert_eq!(runs[0].cwd, "/");
    assert_eq!((runs[0].user.uid, runs[0].user.gid), (4242, 4243));
    assert!(runs[0].env.contains(&"A=1".into()), "{:?}", runs[0].env);
    assert!(
        runs[0].env.contains(&"HOME=/".into()),
        "no passwd entry: HOME=/ ({:?})",
        runs[0].env
    );
    assert_eq!(runs[0].network, Network::None);
    assert_eq!(built.image.layers().len(), 2);
    assert_eq!((built.steps, built.cached), (2, 0));
}

#[test]
fn r11_a_second_build_is_all_cache_hits_and_runs_nothing() {
    let env = env();
    let df = "FROM scratch\nRUN [\"first\"]\nRUN [\"second\"]\n";
    let sb = scripted();
    let first = Builder::new(&env.store, &sb, &NoProgress)
        .build(&request(df, &env.context))
        .unwrap();
    assert_eq!(sb.argvs().len(), 2);
    let again = scripted();
    let second = Builder::new(&env.store, &again, &NoProgress)
        .build(&request(df, &env.context))
        .unwrap();
    assert!(again.argvs().is_empty(), "nothing runs on a full cache hit");
    assert_eq!((second.steps, second.cached), (2, 2));
    assert_eq!(second.image.digest(), first.image.digest());
    // A changed step reruns, and so does every step after it.
    let changed = scripted();
    let df2 = "FROM scratch\nRUN [\"first\", \"changed\"]\nRUN [\"second\"]\n";
    Builder::new(&env.store, &changed, &NoProgress)
        .build(&request(df2, &env.context))
        .unwrap();
    assert_eq!(changed.argvs(), [vec!["first", "changed"], vec!["second"]]);
}

#[test]
fn r11_only_the_stages_the_target_needs_run_dependencies_first() {
    let env = env();
    let sb = scripted();
    let df = "FROM scratch AS unused\nRUN [\"unused\"]\n\
              FROM scratch AS dep\nRUN [\"dep\"]\n\
              FROM scratch\nRUN --mount=from=dep,target=/d [\"final\"]\n";
    Builder::new(&env.store, &sb, &NoProgress)
        .build(&request(df, &env.context))
        .unwrap();
    assert_eq!(sb.argvs(), [vec!["dep"], vec!["final"]]);
    // The dependency's filesystem is what the final step mounts.
    let runs = sb.runs();
    let mount = runs[1]
        .mounts
        .iter()
        .find(|m| m.target == "/d")
        .expect("the stage mount");
    match &mount.kind {
        hoist_sandbox::MountKind::Bind { source, read_only } => {
            assert!(*read_only);
            assert_eq!(std::fs::read_to_string(source.join("dep")).unwrap(), "dep");
        }
        other => panic!("a bind mount, got {other:?}"),
    }
}

#[test]
fn r11_a_failing_step_stops_the_build_with_its_code() {
    let env = env();
    let sb = scripted();
    let df = "FROM scratch\nRUN [\"first\"]\nRUN [\"fails\", \"exit=3\"]\nRUN [\"never\"]\n";
    let err = Builder::new(&env.store, &sb, &NoProgress)
        .build(&request(df, &env.context))
        .unwrap_err();
    match &err {
        BuildError::Step { cause, span, .. } => {
            assert_eq!(span.line, 3, "{err}");
            assert!(
                matches!(**cause, StepError::RunFailed { code: 3, .. }),
                "{err}"
            );
        }
        other => panic!("expected a step error, got {other}"),
    }
    assert_eq!(sb.argvs().len(), 2, "nothing runs after the failure");
    // A program that cannot be run is the sandbox's error, named.
    let err = Builder::new(&env.store, &scripted(), &NoProgress)
        .build(&request("FROM scratch\nRUN [\"missing\"]\n", &env.context))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("exec: \"missing\": executable file not found in $PATH"),
        "{err}"
    );
}

#[test]
fn r11_run_security_insecure_is_refused_without_the_entitlement() {
    let env = env();
    let sb = scripted();
    let df = "FROM scratch\nRUN --security=insecure [\"priv\"]\n";
    let err = Builder::new(&env.store, &sb, &NoProgress)
        .build(&request(df, &env.context))
        .unwrap_err()
        .to_string();
    assert!(err.contains("security.insecure is not allowed"), "{err}");
    assert!(sb.argvs().is_empty(), "refused before running");
    let mut req = request(df, &env.context);
    req.sandbox.allow_insecure = true;
    Builder::new(&env.store, &sb, &NoProgress)
        .build(&req)
        .unwrap();
    let runs = sb.runs();
    assert!(runs[0].security.insecure, "the run is marked insecure");
}
