//! The pod case (issue 7): hoist inside a container, as a non-root user
//! with nothing but a user namespace, builds and pushes to a registry.
//! The container is `hoist run` itself with Docker's default capabilities,
//! the store on a volume, as `deploy/kubernetes/job.yaml` has it.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::harness::TestRegistry;
use crate::common::{Hoist, busybox_tar};

/// The shared libraries `binary` loads (`ldd`), the dynamic loader included.
fn shared_libraries(binary: &Path) -> Vec<PathBuf> {
    let out = Command::new("ldd")
        .arg(binary)
        .output()
        .expect("running ldd");
    assert!(out.status.success(), "ldd {}", binary.display());
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .filter_map(|line| {
            let path = match line.split_once("=>") {
                Some((_, rest)) => rest.split_whitespace().next()?,
                None => line.split_whitespace().next()?,
            };
            path.starts_with('/').then(|| PathBuf::from(path))
        })
        .collect()
}

/// An image of busybox (user `app`, uid 1000) plus this hoist binary,
/// `newuidmap` and `newgidmap` (with file capabilities, as hoist's own
/// Dockerfile installs them) and their libraries, with subordinate IDs
/// 1001-65535 for `app`, imported into `outer` as `hoist-pod:latest`.
fn import_hoist_image(outer: &Hoist, dir: &Path) {
    let rootfs = dir.join("rootfs");
    std::fs::create_dir_all(&rootfs).unwrap();
    let status = Command::new("tar")
        .arg("-xf")
        .arg(busybox_tar())
        .arg("-C")
        .arg(&rootfs)
        .status()
        .unwrap();
    assert!(status.success(), "extracting busybox");
    let hoist = Path::new(env!("CARGO_BIN_EXE_hoist"));
    let helpers = ["/usr/bin/newuidmap", "/usr/bin/newgidmap"].map(PathBuf::from);
    let mut files = vec![(hoist.to_owned(), PathBuf::from("usr/local/bin/hoist"))];
    for binary in [hoist]
        .into_iter()
        .chain(helpers.iter().map(PathBuf::as_path))
    {
        for lib in shared_libraries(binary) {
            let inside = lib.strip_prefix("/").unwrap().to_owned();
            files.push((lib, inside));
        }
    }
    for helper in &helpers {
        files.push((helper.clone(), helper.strip_prefix("/").unwrap().to_owned()));
    }
    for (from, to) in files {
        let to = rootfs.join(to);
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        // copy, not the mode bits: no setuid bit comes along.
        std::fs::write(&to, std::fs::read(&from).unwrap()).unwrap();
        std::fs::set_permissions(&to, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    }
    // Not setuid root: a root without CAP_SYS_ADMIN (Docker's default
    // set) cannot write another user's namespace's uid_map, while the
    // user itself, given CAP_SETUID by the file, can.
    for (helper, capability) in helpers.iter().zip(["cap_setuid=ep", "cap_setgid=ep"]) {
        let status = Command::new("setcap")
            .arg(capability)
            .arg(rootfs.join(helper.strip_prefix("/").unwrap()))
            .status()
            .expect("running setcap (install Debian's libcap2-bin)");
        assert!(status.success(), "setcap {capability}");
    }
    for file in ["etc/subuid", "etc/subgid"] {
        std::fs::write(rootfs.join(file), "app:1001:64535\n").unwrap();
    }
    let tar = dir.join("hoist-pod.tar");
    let status = Command::new("tar")
        .args([
            "--numeric-owner",
            "--xattrs",
            "--xattrs-include=security.capability",
            "-C",
        ])
        .arg(&rootfs)
        .arg("-cf")
        .arg(&tar)
        .arg(".")
        .status()
        .unwrap();
    assert!(status.success(), "packing the hoist image");
    std::fs::remove_dir_all(&rootfs).unwrap();
    outer.ok(&["import", tar.to_str().unwrap(), "hoist-pod:latest"]);
    std::fs::remove_file(&tar).unwrap();
}

#[test]
fn r7_a_nested_hoist_builds_and_pushes_as_a_non_root_user() {
    let registry = TestRegistry::anonymous();
    let outer = Hoist::new();
    let dir = tempfile::tempdir().unwrap();
    import_hoist_image(&outer, dir.path());
    // The build context, with a base image for FROM, read-only.
    let ctx = dir.path().join("ctx");
    std::fs::create_dir(&ctx).unwrap();
    std::fs::copy(busybox_tar(), ctx.join("busybox.tar")).unwrap();
    std::fs::write(
        ctx.join("Dockerfile"),
        "FROM busybox\nRUN echo built inside > /inside && cat /proc/self/uid_map\n",
    )
    .unwrap();
    let reference = format!("{}/pod/app:1", registry.host());
    // The store on a volume the container's user owns (an emptyDir).
    let inner = |extra: &[&str]| {
        let store = tempfile::tempdir_in(dir.path()).unwrap();
        std::os::unix::fs::chown(store.path(), Some(1000), Some(1000)).unwrap();
        let store_volume = format!("{}:/store", store.path().display());
        let ctx_volume = format!("{}:/ctx:ro", ctx.display());
        let script = format!(
            "hoist import /ctx/busybox.tar busybox:latest >/dev/null && \
             hoist build --progress=plain -t {reference} /ctx && hoist push {reference}"
        );
        let mut args = vec![
            "run",
            "--rm",
            "--user",
            "1000",
            "--security-opt",
            "seccomp=unconfined",
        ];
        args.extend_from_slice(extra);
        args.extend_from_slice(&[
            "-e",
            "HOIST_ROOT=/store",
            "-v",
            &store_volume,
            "-v",
            &ctx_volume,
            "hoist-pod:latest",
            "sh",
            "-c",
            &script,
        ]);
        outer.run(&args)
    };

    // Docker's masked /proc forbids the RUN's procfs, and the error says
    // which option lifts it.
    let masked = inner(&[]);
    let stderr = String::from_utf8_lossy(&masked.stderr);
    assert!(!masked.status.success(), "{stderr}");
    assert!(stderr.contains("systempaths=unconfined"), "{stderr}");

    let out = inner(&["--security-opt", "systempaths=unconfined"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("1: digest: sha256:"), "{stdout}");
    // The RUN had the whole subordinate range (newuidmap), not one ID.
    let ranges: Vec<Vec<&str>> = stderr
        .lines()
        .filter_map(|line| line.strip_prefix("#2 "))
        .map(|line| line.split_whitespace().skip(1).collect())
        .filter(|fields: &Vec<&str>| fields.len() == 3)
        .collect();
    assert_eq!(
        ranges,
        [["0", "1000", "1"], ["1", "1001", "64535"]],
        "{stderr}"
    );
    // What it pushed runs outside.
    outer.ok(&["pull", "-q", &reference]);
    assert_eq!(
        outer.exec(&reference, &["cat", "/inside"]),
        "built inside\n"
    );
}
