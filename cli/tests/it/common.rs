//! The harness: a fresh store per test, the `hoist` binary, and a busybox
//! base image made from the host's busybox-static.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

use serde_json::Value;
use sha2::{Digest, Sha256};

/// The repository's testdata directory.
pub fn testdata() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../testdata")
}

/// Builds need root (overlay mounts, namespaces); say so loudly rather
/// than skip.
pub fn require_root() {
    let euid = rustix_euid();
    assert_eq!(
        euid, 0,
        "these tests run real builds and need root (euid is {euid}); run them as root"
    );
}

fn rustix_euid() -> u32 {
    let status = std::fs::read_to_string("/proc/self/status").expect("reading /proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|uid| uid.parse().ok())
        .expect("effective uid in /proc/self/status")
}

/// The busybox rootfs tarball, made by the same script the README uses,
/// once for all test processes (nextest runs each test in its own): it is
/// written beside and renamed into place, and the script's output is
/// reproducible, so concurrent makers agree.
pub fn busybox_tar() -> &'static Path {
    static TAR: OnceLock<PathBuf> = OnceLock::new();
    TAR.get_or_init(|| {
        // Named after the script's content, so an edited script remakes it.
        let script = testdata().join("base/make-busybox-rootfs.sh");
        let hex = format!("{:x}", Sha256::digest(std::fs::read(&script).unwrap()));
        let tar = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("busybox-rootfs-{}.tar", &hex[..16]));
        if tar.is_file() {
            return tar;
        }
        let partial = tar.with_extension(format!("partial.{}", std::process::id()));
        let out = Command::new("bash")
            .arg(&script)
            .arg(&partial)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{} failed: {}",
            script.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        std::fs::rename(&partial, &tar).unwrap();
        tar
    })
}

/// One store root and the binary that uses it.
pub struct Hoist {
    /// Unmounted before `root` is removed (fields drop in order).
    tmpfs: Option<Unmount>,
    pub root: tempfile::TempDir,
}

/// Detaches a mount when dropped.
struct Unmount(PathBuf);

impl Drop for Unmount {
    fn drop(&mut self) {
        let _ = nix::mount::umount2(&self.0, nix::mount::MntFlags::MNT_DETACH);
    }
}

impl Hoist {
    /// An empty store.
    pub fn new() -> Self {
        require_root();
        Self {
            tmpfs: None,
            root: tempfile::Builder::new()
                .prefix("hoist-it-")
                .tempdir()
                .unwrap(),
        }
    }

    /// A store holding `busybox:latest`.
    pub fn with_busybox() -> Self {
        let hoist = Self::new();
        hoist.ok(&["import", busybox_tar().to_str().unwrap(), "busybox:latest"]);
        hoist
    }

    /// A store holding `busybox:latest` on a tmpfs of its own of `mib`
    /// MiB, whose free space the test controls.
    pub fn with_busybox_on_tmpfs(mib: u32) -> Self {
        let mut hoist = Self::new();
        nix::mount::mount(
            Some("tmpfs"),
            hoist.root(),
            Some("tmpfs"),
            nix::mount::MsFlags::empty(),
            Some(format!("size={mib}m,mode=0700").as_str()),
        )
        .unwrap();
        hoist.tmpfs = Some(Unmount(hoist.root().to_owned()));
        hoist.ok(&["import", busybox_tar().to_str().unwrap(), "busybox:latest"]);
        hoist
    }

    pub fn root(&self) -> &Path {
        self.root.path()
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_hoist"));
        cmd.env("HOIST_ROOT", self.root())
            .env_remove("SOURCE_DATE_EPOCH")
            .args(args)
            .stdin(Stdio::null());
        cmd
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().unwrap()
    }

    /// Runs and asserts success; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "hoist {args:?} failed ({}):\nstdout:\n{}\nstderr:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Asserts that `hoist fsck` finds the store sound.
    pub fn assert_fsck_clean(&self) {
        let out = self.ok(&["fsck"]);
        assert!(out.contains(" 0 problems"), "{out}");
    }

    /// Runs and asserts failure; returns stderr.
    pub fn fails(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            !out.status.success(),
            "hoist {args:?} should have failed:\nstderr:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stderr).unwrap()
    }

    /// `hoist build --progress=plain` of a testdata context; returns stderr.
    pub fn build(&self, context: &Path, extra: &[&str]) -> String {
        let mut args = vec!["build", "--progress=plain"];
        args.extend_from_slice(extra);
        args.push(context.to_str().unwrap());
        let out = self.run(&args);
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "hoist {args:?} failed:\n{stderr}");
        stderr
    }

    pub fn inspect(&self, image: &str) -> Value {
        let out = self.ok(&["inspect", image]);
        let value: Value = serde_json::from_str(&out).unwrap();
        value[0].clone()
    }

    /// The stdout of a command run in a container of `image`.
    pub fn exec(&self, image: &str, command: &[&str]) -> String {
        let mut args = vec!["run", "--rm", image];
        args.extend_from_slice(command);
        self.ok(&args)
    }

    /// The image's root filesystem, exported with `--output type=local`
    /// semantics through `hoist save` + umoci would be slower; builds export
    /// it directly.
    pub fn assert_valid_for_other_tools(&self, name: &str) {
        let oci = format!("oci:{}:{name}", self.root().display());
        let out = Command::new("skopeo")
            .args(["inspect", &oci])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "skopeo inspect {oci}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let bundle = tempfile::tempdir().unwrap();
        let out = Command::new("umoci")
            .args(["unpack", "--image"])
            .arg(format!("{}:{name}", self.root().display()))
            .arg(bundle.path().join("bundle"))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "umoci unpack {name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// A copy of a testdata context in a temp dir, for tests that add files.
pub fn context_copy(name: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let status = Command::new("cp")
        .arg("-a")
        .arg(testdata().join("contexts").join(name).join("."))
        .arg(dir.path())
        .status()
        .unwrap();
    assert!(status.success());
    dir
}

pub fn context(name: &str) -> PathBuf {
    testdata().join("contexts").join(name)
}

/// Whether some process on the machine has `wanted` as one of its
/// arguments (to find a sandboxed `sleep 987` from outside).
pub fn running_with_arg(wanted: &[u8]) -> bool {
    std::fs::read_dir("/proc").unwrap().flatten().any(|entry| {
        std::fs::read(entry.path().join("cmdline"))
            .map(|cmd| cmd.split(|&b| b == 0).any(|arg| arg == wanted))
            .unwrap_or(false)
    })
}

/// A build context holding only a Dockerfile with `contents`.
/// Copies `testdata/elf/i386-unshare` (a static i386 program that writes
/// "i386" and exits with the errno of its unshare) into `dir`, executable.
pub fn copy_i386_fixture(dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let to = dir.join("i386-unshare");
    std::fs::copy(testdata().join("elf/i386-unshare"), &to).unwrap();
    std::fs::set_permissions(&to, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// An image whose one layer is several MiB, so several gzip members once
/// compressed (one per MiB of tar, see hoist-store's compress.rs): numbers,
/// which compress, and random bytes, which are stored, with their sums in
/// `/sums`. Its command checks them and prints [`MULTI_MEMBER_SUMS_OK`].
pub const MULTI_MEMBER_DOCKERFILE: &str = "FROM busybox\n\
    RUN cd / && seq 1 500000 > numbers && head -c 2097152 /dev/urandom > random \
    && md5sum numbers random > sums\n\
    CMD [\"sh\", \"-c\", \"cd / && md5sum -c sums\"]\n";

/// What [`MULTI_MEMBER_DOCKERFILE`]'s command prints when every file is intact.
pub const MULTI_MEMBER_SUMS_OK: &str = "numbers: OK\nrandom: OK\n";

pub fn dockerfile_context(contents: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("Dockerfile"), contents).unwrap();
    dir
}

/// Polls `ready` for up to 30 s; panics naming `what` if it never holds.
pub fn wait_until(what: &str, mut ready: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !ready() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// The mount points in `mountinfo` at or below `root`.
pub fn mounts_under(mountinfo: &str, root: &str) -> Vec<String> {
    mountinfo
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .filter(|point| {
            point
                .strip_prefix(root)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
        })
        .map(str::to_owned)
        .collect()
}

/// Nothing is left in the store's temp space (every session's temp
/// directory was removed).
pub fn assert_no_temp_leftovers(hoist: &Hoist) {
    let tmp = hoist.root().join("hoist/tmp");
    let leftovers: Vec<_> = std::fs::read_dir(&tmp)
        .map(|d| d.map(|e| e.unwrap().file_name()).collect())
        .unwrap_or_default();
    assert!(
        leftovers.is_empty(),
        "leftovers in {}: {leftovers:?}",
        tmp.display()
    );
}
