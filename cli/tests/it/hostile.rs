//! Build-input attacks (issue 11), run as root (`breakout.rs`) and
//! rootless (`rootless.rs`) alike: a context symlink aimed out of the
//! context, `.dockerignore` negations that climb out of it, `COPY --from`
//! an image whose layer holds absolute and `../` symlinks or a `../` entry,
//! and a hostile `ADD` archive. Each must fail the attack and leave the
//! host's victim directory as it was; the store must still pass `fsck`.

use std::path::{Path, PathBuf};

/// What the victim directory holds; nothing of it may reach an image.
pub const SECRET: &str = "HOSTSECRET";

/// The inputs of every attack, made under `dir` (which a rootless user
/// must own): `victim/secret`, a context and two hostile image tarballs.
pub struct Kit {
    pub victim: PathBuf,
    pub context: PathBuf,
    /// A root filesystem whose `abs`/`rel` symlinks aim at the victim.
    pub links_image: PathBuf,
    /// A root filesystem with a `../escape` entry.
    pub dotdot_image: PathBuf,
}

/// A tar of symlinks (`Some(target)`, long targets as GNU long links)
/// and regular files (`None`), whose names are written raw so that `../`
/// survives (the tar crate's path setters refuse it).
fn write_tar(path: &Path, entries: &[(&str, Option<&str>)]) {
    let mut builder = tar::Builder::new(Vec::new());
    for (name, link) in entries {
        let mut h = tar::Header::new_gnu();
        h.set_mode(0o777);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(1_700_000_000);
        match link {
            Some(target) => {
                h.set_entry_type(tar::EntryType::Symlink);
                h.set_size(0);
                builder.append_link(&mut h, name, target).unwrap();
            }
            None => {
                h.set_entry_type(tar::EntryType::Regular);
                h.set_size(1);
                let raw = &mut h.as_old_mut().name;
                raw[..name.len()].copy_from_slice(name.as_bytes());
                h.set_cksum();
                builder.append(&h, &b"x"[..]).unwrap();
            }
        }
    }
    std::fs::write(path, builder.into_inner().unwrap()).unwrap();
}

impl Kit {
    pub fn new(dir: &Path) -> Self {
        let victim = dir.join("victim");
        std::fs::create_dir_all(&victim).unwrap();
        std::fs::write(victim.join("secret"), SECRET).unwrap();
        let v = victim.to_str().unwrap();
        let climb = format!("{}{}", "../".repeat(24), v.trim_start_matches('/'));

        let context = dir.join("context");
        std::fs::create_dir_all(&context).unwrap();
        std::os::unix::fs::symlink(v, context.join("link-abs")).unwrap();
        std::os::unix::fs::symlink(&climb, context.join("link-rel")).unwrap();
        std::fs::write(context.join("secret.txt"), SECRET).unwrap();
        std::fs::write(context.join("public.txt"), "public").unwrap();
        std::fs::write(
            context.join(".dockerignore"),
            "secret.txt\n!../**\n!../../**/secret\n!..\n",
        )
        .unwrap();
        write_tar(
            &context.join("evil.tar"),
            &[
                ("out", Some(v)),
                ("out/pwned", None),
                ("up", Some(climb.as_str())),
                ("up/pwned-rel", None),
                ("../../../../escape-add", None),
            ],
        );

        let links_image = dir.join("links.tar");
        write_tar(
            &links_image,
            &[
                ("abs", Some(v)),
                ("rel", Some(climb.as_str())),
                ("bin", Some(v)),
            ],
        );
        let dotdot_image = dir.join("dotdot.tar");
        write_tar(&dotdot_image, &[("../escape-layer", None)]);
        Self {
            victim,
            context,
            links_image,
            dotdot_image,
        }
    }

    /// The victim directory holds exactly its secret, unchanged, and no
    /// hostile entry landed next to the store or the context.
    pub fn assert_victim_untouched(&self, store: &Path) {
        let names: Vec<_> = std::fs::read_dir(&self.victim)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names, ["secret"], "the victim directory changed");
        for dir in [store, &self.context].into_iter().flat_map(Path::ancestors) {
            for name in ["escape-add", "escape-layer"] {
                assert!(!dir.join(name).exists(), "{name} written in {dir:?}");
            }
        }
    }

    /// The Dockerfiles of the attacks, each with what must happen: `Ok`
    /// with the `/out` the image must hold, or `Err` with a piece of the
    /// error.
    pub fn cases(&self) -> Vec<(&'static str, String, Result<String, &'static str>)> {
        vec![
            (
                "context symlink, absolute",
                "FROM busybox\nCOPY link-abs/secret /s\n".into(),
                Err("\"/link-abs/secret\": not found"),
            ),
            (
                "context symlink, ../ chain",
                "FROM busybox\nCOPY link-rel/secret /s\n".into(),
                Err("\"/link-rel/secret\": not found"),
            ),
            (
                ".dockerignore negations that climb out",
                "FROM busybox\nCOPY . /ctx/\n\
                 RUN (ls -A /ctx | sort; readlink /ctx/link-abs; \
                      grep -rl HOST\"\"SECRET /ctx /ctx/link-abs/ 2>/dev/null || echo no-secret) > /out\n"
                    .into(),
                Ok(format!(
                    ".dockerignore\nDockerfile\nevil.tar\nlink-abs\nlink-rel\npublic.txt\n{}\nno-secret\n",
                    self.victim.display()
                )),
            ),
            (
                "COPY --from an image with an absolute symlink",
                "FROM links AS evil\nFROM busybox\nCOPY --from=evil /abs/secret /s\n".into(),
                Err("\"/abs/secret\": not found"),
            ),
            (
                "COPY --from an image with a ../ symlink",
                "FROM links AS evil\nFROM busybox\nCOPY --from=evil /rel/ /r/\n".into(),
                Err("\"/rel\": not found"),
            ),
            (
                "FROM an image whose layer holds ../",
                "FROM dotdot\nRUN true\n".into(),
                Err("path traversal through .."),
            ),
            (
                "ADD a hostile archive",
                // The links are followed inside the image: both files land
                // in the image's copy of the victim's path.
                format!(
                    "FROM busybox\nADD evil.tar /e/\n\
                     RUN (find /e | sort; cat /e/out/pwned /e/up/pwned-rel; echo; \
                          ls {}) > /out\n",
                    self.victim.display()
                ),
                Ok("/e\n/e/escape-add\n/e/out\n/e/up\nxx\npwned\npwned-rel\n".into()),
            ),
        ]
    }
}

/// Imports the hostile images and runs every case through `hoist`
/// (`run(args)` runs the binary as root or as the rootless user), then
/// checks the victim and the store.
pub fn run_cases(kit: &Kit, store: &Path, run: &dyn Fn(&[&str]) -> std::process::Output) {
    let ok = |args: &[&str]| {
        let out = run(args);
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "hoist {args:?} failed:\n{stderr}");
        String::from_utf8(out.stdout).unwrap()
    };
    ok(&["import", kit.links_image.to_str().unwrap(), "links:latest"]);
    ok(&[
        "import",
        kit.dotdot_image.to_str().unwrap(),
        "dotdot:latest",
    ]);
    let ctx = kit.context.to_str().unwrap();
    for (case, dockerfile, want) in kit.cases() {
        std::fs::write(kit.context.join("Dockerfile"), &dockerfile).unwrap();
        let out = run(&["build", "--no-cache", "-t", "probe:latest", ctx]);
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(
            !stderr.contains(SECRET),
            "case {case}: the secret leaked:\n{stderr}"
        );
        match want {
            Ok(expected) => {
                assert!(out.status.success(), "case {case}: build failed:\n{stderr}");
                let got = ok(&["run", "--rm", "probe:latest", "cat", "/out"]);
                assert_eq!(got, expected, "case {case}");
            }
            Err(piece) => {
                assert!(!out.status.success(), "case {case}: the build succeeded");
                assert!(
                    stderr.contains(piece),
                    "case {case}: {piece:?} not in:\n{stderr}"
                );
            }
        }
        kit.assert_victim_untouched(store);
    }
    ok(&["fsck"]);
}

/// CVE-2024-23651, the cache mount race: one build's RUN keeps swapping
/// `sub` inside a shared cache mount between a directory and a symlink to
/// the victim (a host path), while other builds mount the same cache and a
/// tmpfs on `sub/m` under it, so that a builder that resolved the mount
/// target against the host would make or mount `victim/m`. Afterwards
/// `builder prune -a` deletes the cache holding the symlinks. The victim
/// must be untouched and the store sound, whichever builds the race fails.
/// `spawn(args)` starts `hoist args` without waiting.
pub fn cache_mount_race(
    kit: &Kit,
    store: &Path,
    run: &dyn Fn(&[&str]) -> std::process::Output,
    spawn: &dyn Fn(&[&str]) -> std::process::Child,
) {
    let v = kit.victim.display();
    let swapper = kit.context.with_file_name("swapper");
    std::fs::create_dir_all(&swapper).unwrap();
    std::fs::write(
        swapper.join("Dockerfile"),
        format!(
            "FROM busybox\n\
             RUN --mount=type=cache,id=race,target=/c \
                 rm -f /c/stop; touch /c/started; i=0; \
                 while [ ! -e /c/stop ]; do \
                   rm -rf /c/sub; ln -s {v} /c/sub; rm -f /c/sub; mkdir /c/sub; \
                   i=$((i+1)); done; ln -sfn {v} /c/sub; ln -sfn / /c/root\n"
        ),
    )
    .unwrap();
    let mounter = kit.context.with_file_name("mounter");
    std::fs::create_dir_all(&mounter).unwrap();
    std::fs::write(
        mounter.join("Dockerfile"),
        "FROM busybox\n\
         RUN --mount=type=cache,id=race,target=/c --mount=type=tmpfs,target=/c/sub/m \
             touch /c/sub/m/pwned; ls /c/root/ > /dev/null\n",
    )
    .unwrap();
    // The cache directory, as the builder names it: hoist/mounts/<sha256(id)>.
    let hex = format!("{:x}", <sha2::Sha256 as sha2::Digest>::digest(b"race"));
    let cache = store.join("hoist/mounts").join(hex);
    let mut swap = spawn(&["build", "--no-cache", swapper.to_str().unwrap()]);
    crate::common::wait_until("the swapping RUN to start", || {
        cache.join("started").exists()
    });
    for _ in 0..12 {
        let _ = run(&["build", "--no-cache", mounter.to_str().unwrap()]);
        kit.assert_victim_untouched(store);
    }
    // Every mounting build ran while the swap went on: it stops only now.
    assert!(
        swap.try_wait().unwrap().is_none(),
        "the swapping build ended before it was told to"
    );
    std::fs::write(cache.join("stop"), "").unwrap();
    let status = swap.wait().unwrap();
    assert!(status.success(), "the swapping build failed");
    // Once more with the symlink left in place for good.
    let _ = run(&["build", "--no-cache", mounter.to_str().unwrap()]);
    kit.assert_victim_untouched(store);
    let out = run(&["builder", "prune", "-a", "-f"]);
    assert!(
        out.status.success(),
        "builder prune: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    kit.assert_victim_untouched(store);
    assert!(
        !Path::new("/m").exists() && !Path::new("/pwned").exists(),
        "written at the host's root"
    );
    let out = run(&["fsck"]);
    assert!(
        out.status.success(),
        "fsck: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// CVE-2018-15664-style, a symlink swap during COPY: a thread keeps
/// swapping the context's `f` (a file) and `d/` (a directory) between
/// their real selves and symlinks to the victim (absolute, and `../`),
/// while `--no-cache` builds COPY them, whole and through `d/`. See
/// [`symlink_swap`] for what each build must do.
pub fn copy_symlink_swap(kit: &Kit, store: &Path, run: &dyn Fn(&[&str]) -> std::process::Output) {
    let copies = [
        "FROM busybox\nCOPY f /f\n",
        "FROM busybox\nCOPY d /d\n",
        "FROM busybox\nCOPY d/inner /inner\n",
        "FROM busybox\nCOPY . /all/\n",
    ];
    symlink_swap(kit, store, run, &copies, 24);
}

/// The same swaps under ADD (a local file, a directory, and an archive,
/// `a.tar`, that ADD unpacks) and under `COPY --from` a stage that copied
/// the context while it was being swapped, so that the stage holds the
/// symlinks to the victim and the COPY resolves them inside its root.
pub fn add_and_copy_from_symlink_swap(
    kit: &Kit,
    store: &Path,
    run: &dyn Fn(&[&str]) -> std::process::Output,
) {
    let copies = [
        "FROM busybox\nADD f /f\n",
        "FROM busybox\nADD d /d\n",
        "FROM busybox\nADD a.tar /x/\n",
        "FROM busybox AS src\nCOPY . /src/\nFROM busybox\nCOPY --from=src /src/f /f\n",
        "FROM busybox AS src\nCOPY . /src/\nFROM busybox\nCOPY --from=src /src/d/inner /inner\n",
    ];
    symlink_swap(kit, store, run, &copies, 15);
}

/// An archive holding `inner` ("real-a"), for ADD to unpack.
fn real_archive() -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_mode(0o644);
    h.set_size(6);
    h.set_mtime(1_700_000_000);
    builder
        .append_data(&mut h, "inner", &b"real-a"[..])
        .unwrap();
    builder.into_inner().unwrap()
}

/// A thread keeps swapping the context's `f` and `a.tar` (files) and `d/`
/// (a directory) between their real selves and symlinks to the victim
/// (absolute, and `../`), while `--no-cache` builds of `dockerfiles` run
/// (`builds` of them, in turn). Each build must copy the real content or
/// fail with an error that names its COPY or ADD step and its source; no
/// stored blob (every layer the builds made) and no output may hold the
/// secret, and the store must pass `fsck`.
fn symlink_swap(
    kit: &Kit,
    store: &Path,
    run: &dyn Fn(&[&str]) -> std::process::Output,
    dockerfiles: &[&str],
    builds: usize,
) {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    const HOLD: std::time::Duration = std::time::Duration::from_millis(3);
    // Next to the victim, so that `../victim` from the context reaches it.
    let ctx = kit.context.with_file_name("swap");
    std::fs::create_dir_all(ctx.join("d")).unwrap();
    std::fs::write(ctx.join("f"), "real-f").unwrap();
    std::fs::write(ctx.join("d/inner"), "real-d").unwrap();
    let archive = real_archive();
    std::fs::write(ctx.join("a.tar"), &archive).unwrap();
    // One COPY or ADD per build, so that each source gets its own attempts.
    let dockerfiles: Vec<PathBuf> = dockerfiles
        .iter()
        .enumerate()
        .map(|(i, text)| {
            let path = kit.context.with_file_name(format!("swap-{i}.Dockerfile"));
            std::fs::write(&path, text).unwrap();
            path
        })
        .collect();
    let secret_file = kit.victim.join("secret");
    let targets = [
        (secret_file.clone(), kit.victim.clone()),
        ("../victim/secret".into(), PathBuf::from("../victim")),
    ];
    // First with the links held in place: a COPY or ADD that names a
    // source must fail (the link leads nowhere inside the context or the
    // stage); `COPY .` copies the links themselves.
    for (path, target) in [
        ("f", &secret_file),
        ("a.tar", &secret_file),
        ("d", &kit.victim),
    ] {
        let path = ctx.join(path);
        if path.is_dir() {
            std::fs::rename(&path, ctx.join("d.real")).unwrap();
        } else {
            std::fs::remove_file(&path).unwrap();
        }
        std::os::unix::fs::symlink(target, &path).unwrap();
    }
    for dockerfile in &dockerfiles {
        let built = swap_build(kit, store, run, &ctx, dockerfile);
        let text = std::fs::read_to_string(dockerfile).unwrap();
        assert_eq!(built, text.contains("COPY . /all/"), "{text}");
    }
    std::fs::remove_file(ctx.join("d")).unwrap();
    std::fs::rename(ctx.join("d.real"), ctx.join("d")).unwrap();
    let stop = AtomicBool::new(false);
    let swaps = AtomicUsize::new(0);
    std::thread::scope(|s| {
        s.spawn(|| {
            let (d, parked) = (ctx.join("d"), ctx.join("d.real"));
            // Made outside the context and renamed in, so that a walk of
            // the context never meets a half-made entry of the swapper's.
            let staging = ctx.with_file_name("swap-staging");
            std::fs::create_dir_all(&staging).unwrap();
            let (new, link) = (staging.join("file.new"), staging.join("link.new"));
            let files = [
                (ctx.join("f"), &b"real-f"[..]),
                (ctx.join("a.tar"), &archive),
            ];
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                let (file_target, dir_target) = &targets[i % 2];
                // The files: the real file, then the symlink, each renamed
                // into place atomically.
                for (path, content) in &files {
                    std::fs::write(&new, content).unwrap();
                    std::fs::rename(&new, path).unwrap();
                }
                // Each state lasts a moment, so that builds see both.
                std::thread::sleep(HOLD);
                for (path, _) in &files {
                    std::os::unix::fs::symlink(file_target, &link).unwrap();
                    std::fs::rename(&link, path).unwrap();
                }
                // `d/`: parked aside, a symlink in its place, then back.
                std::fs::rename(&d, &parked).unwrap();
                std::os::unix::fs::symlink(dir_target, &d).unwrap();
                std::thread::sleep(HOLD);
                std::fs::remove_file(&d).unwrap();
                std::fs::rename(&parked, &d).unwrap();
                swaps.fetch_add(1, Ordering::Relaxed);
                i += 1;
            }
            for (path, content) in &files {
                std::fs::write(&new, content).unwrap();
                std::fs::rename(&new, path).unwrap();
            }
        });
        // Stops the swapper however this thread leaves the scope, so that
        // a failed assertion fails the test instead of hanging it.
        struct StopOnDrop<'a>(&'a AtomicBool);
        impl Drop for StopOnDrop<'_> {
            fn drop(&mut self) {
                self.0.store(true, Ordering::Relaxed);
            }
        }
        let _stop = StopOnDrop(&stop);
        for dockerfile in dockerfiles.iter().cycle().take(builds) {
            swap_build(kit, store, run, &ctx, dockerfile);
        }
    });
    assert!(
        swaps.load(Ordering::Relaxed) > 0,
        "the swapper never swapped"
    );
    // Every layer any build made is a blob of the store, uncompressed.
    assert_no_blob_holds_secret(store);
    let out = run(&["fsck"]);
    assert!(
        out.status.success(),
        "fsck: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// One `--no-cache` build of `dockerfile` on the swap context: it copies
/// the real content, or fails naming its COPY or ADD step and source, and
/// the secret shows nowhere. Returns whether it built.
fn swap_build(
    kit: &Kit,
    store: &Path,
    run: &dyn Fn(&[&str]) -> std::process::Output,
    ctx: &Path,
    dockerfile: &Path,
) -> bool {
    let dockerfile = dockerfile.to_str().unwrap();
    let ctx = ctx.to_str().unwrap();
    let args = [
        "build",
        "--no-cache",
        "-t",
        "swap:latest",
        "-f",
        dockerfile,
        ctx,
    ];
    let out = run(&args);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        !stderr.contains(SECRET) && !stdout.contains(SECRET),
        "the secret leaked:\n{stdout}\n{stderr}"
    );
    let built = out.status.success();
    if built {
        // What was copied is the real content (a copied symlink dangles in
        // the image, and `cat` skips it).
        let out = run(&[
            "run",
            "--rm",
            "swap:latest",
            "sh",
            "-c",
            "cat /f /d/inner /inner /all/f /all/d/inner /x/inner 2>/dev/null; true",
        ]);
        let got = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "hoist run: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let rest = ["real-f", "real-d", "real-a"]
            .iter()
            .fold(got.clone(), |rest, real| rest.replace(real, ""));
        assert!(rest.is_empty(), "{dockerfile}: the image holds {got:?}");
    } else {
        assert!(
            stderr.contains("error:")
                && (stderr.contains(" COPY ") || stderr.contains(" ADD "))
                && ["/f", "/d", "/a.tar"]
                    .iter()
                    .any(|source| stderr.contains(source))
                && !stderr.contains("copying to"),
            "a failed build must name its COPY or ADD step and source (not its destination):\n{stderr}"
        );
    }
    kit.assert_victim_untouched(store);
    built
}

/// No file under the store's blob directory holds [`SECRET`], read in
/// chunks (with an overlap, so a match across two reads is found).
pub fn assert_no_blob_holds_secret(store: &Path) {
    use std::io::Read;
    let mut stack = vec![store.to_path_buf()];
    let mut blobs = 0;
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let entry = entry.unwrap();
            let kind = entry.file_type().unwrap();
            let path = entry.path();
            if kind.is_dir() {
                stack.push(path);
            } else if kind.is_file() && path.to_string_lossy().contains("/blobs/") {
                blobs += 1;
                let mut file = std::fs::File::open(&path).unwrap();
                let mut buf = vec![0u8; 1 << 16];
                let keep = SECRET.len() - 1;
                let mut have = 0;
                loop {
                    let n = file.read(&mut buf[have..]).unwrap();
                    if n == 0 {
                        break;
                    }
                    let end = have + n;
                    assert!(
                        !buf[..end]
                            .windows(SECRET.len())
                            .any(|w| w == SECRET.as_bytes()),
                        "blob {path:?} holds the secret"
                    );
                    let tail = end.saturating_sub(keep);
                    buf.copy_within(tail..end, 0);
                    have = end - tail;
                }
            }
        }
    }
    assert!(blobs > 0, "no blob found under {store:?}");
}

/// A Dockerfile that doubles a variable line after line (`ENV A=$A$A`
/// forty times; BuildKit's shell lexer has no limit and grows it towards
/// 2^40 bytes), and one that copies a large value into variable after
/// variable: each must fail clearly at the line that crosses the limit,
/// not exhaust memory. The per-test timeout of nextest is the hang guard.
#[test]
fn r11_hostile_dockerfile_expansion_is_bounded() {
    let hoist = crate::common::Hoist::new();
    let doubling = format!("FROM scratch\nENV A=x\n{}", "ENV A=$A$A\n".repeat(40));
    // 2^21 bytes of A, then 600 copies: 1.2 GiB of config unless capped.
    let copies: String = (0..600).map(|i| format!("ENV B{i}=$A\n")).collect();
    let copying = format!(
        "FROM scratch\nENV A=x\n{}{copies}",
        "ENV A=$A$A\n".repeat(21)
    );
    // Line 24 is where either crosses 8 MiB of text in the config: the
    // doubling's 22nd ENV (4 MiB in env, 8 MiB in history), the copying's
    // first copy of a 2 MiB value.
    let piece = "the image config would hold more than 8 MiB";
    for (case, dockerfile, line) in [("doubling", doubling, 24), ("copying", copying, 24)] {
        let ctx = crate::common::dockerfile_context(&dockerfile);
        let stderr = hoist.fails(&["build", "-t", "env:bomb", ctx.path().to_str().unwrap()]);
        let at = format!("Dockerfile:{line}:1:");
        assert!(
            stderr.contains(piece) && stderr.contains(&at),
            "{case}: {piece:?} at {at} not in:\n{stderr}"
        );
    }
    hoist.ok(&["fsck"]);
}

/// A `.dockerignore` built to make a backtracking matcher take
/// exponential time (`**/a*a*…*a*b` against long names of `a`s, and
/// `**/**/**/…` against deep paths), and a COPY source wildcard of the same
/// shape (Go's `filepath.Match`): the matchers are linear, so the build
/// completes (nextest's per-test timeout is the hang guard) and excludes
/// and copies exactly what the patterns say.
#[test]
fn r11_hostile_dockerignore_patterns_match_in_linear_time() {
    let hoist = crate::common::Hoist::with_busybox();
    let stars = "a*".repeat(40);
    let deep = "**/".repeat(200);
    let ctx = crate::common::dockerfile_context(&format!(
        "FROM busybox\nCOPY . /ctx/\nCOPY {stars}d /wild/\n\
         RUN cd /ctx && find . -type f | sort > /out && ls /wild >> /out\n"
    ));
    let long = "a".repeat(200);
    let nested: PathBuf = std::iter::repeat_n("a", 60).collect();
    std::fs::create_dir_all(ctx.path().join(&nested)).unwrap();
    for name in [format!("{long}b"), format!("{long}c")] {
        std::fs::write(ctx.path().join(&name), "x").unwrap();
        std::fs::write(ctx.path().join(&nested).join(&name), "x").unwrap();
    }
    std::fs::write(ctx.path().join(format!("{long}d")), "x").unwrap();
    std::fs::write(
        ctx.path().join(".dockerignore"),
        format!("**/{stars}b\n{deep}a*c\n!{deep}a/{long}c\n"),
    )
    .unwrap();
    hoist.ok(&["build", "-t", "ignore:bomb", ctx.path().to_str().unwrap()]);
    let got = hoist.ok(&["run", "--rm", "ignore:bomb", "cat", "/out"]);
    let a60 = vec!["a"; 60].join("/");
    assert_eq!(
        got,
        format!("./.dockerignore\n./Dockerfile\n./{a60}/{long}c\n./{long}d\n{long}d\n",),
        "of the …b and …c files only the re-included deep …c is left"
    );
    hoist.ok(&["fsck"]);
}
