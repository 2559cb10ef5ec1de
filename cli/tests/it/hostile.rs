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
