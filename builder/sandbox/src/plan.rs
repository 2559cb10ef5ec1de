//! The parent's half of a run: the spec turned into a list of mount and
//! setup operations with every string already a `CString`, so that the child
//! (cloned from a possibly multi-threaded builder) only makes syscalls and
//! never allocates or takes a lock between clone and exec.

use std::ffi::{CString, c_char};
use std::os::fd::{OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use rustix::fs::Gid;
use rustix::mount::MountFlags;

use crate::cgroup::CgroupView;
use crate::error::SandboxError;
use crate::idmap::IdMap;
use crate::overlay::OverlayArgs;
use crate::seccomp::{Filters, SeccompProfile};
use crate::spec::{DEFAULT_PATH, MountKind, Network, Rootfs, RunSpec};

/// Docker's default devices: name, major, minor. runc creates them with
/// mknod as root, and bind-mounts the host's in a user namespace.
const DEVICES: [(&str, u32, u32); 6] = [
    ("null", 1, 3),
    ("zero", 1, 5),
    ("full", 1, 7),
    ("random", 1, 8),
    ("urandom", 1, 9),
    ("tty", 5, 0),
];
/// /proc entries Docker makes read-only so that root inside cannot reach
/// the host's sysctls and triggers.
const PROC_READ_ONLY: [&str; 5] = [
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];
/// /proc files Docker hides behind /dev/null (containerd's default spec,
/// which BuildKit uses).
const PROC_MASKED_FILES: [&str; 6] = [
    "/proc/kcore",
    "/proc/keys",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/latency_stats",
];
/// Directories Docker hides behind an empty read-only tmpfs.
const MASKED_DIRS: [&str; 5] = [
    "/proc/acpi",
    "/proc/scsi",
    "/proc/asound",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];
/// The capabilities of Docker's default set by name, for the seccomp
/// profile's capability-conditional rules (see `child::docker_capabilities`).
pub(crate) const DOCKER_CAPABILITIES: [&str; 14] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

/// One setup operation, executed in order by the child.
#[derive(Debug)]
pub(crate) enum Op {
    /// `mount --make-rprivate /`: nothing we do propagates to the host.
    MakeRootPrivate,
    Overlay {
        args: OverlayArgs,
        target: CString,
    },
    /// A detached copy of a host path, taken before pivot_root and attached
    /// after it, so that the target resolves inside the new root.
    OpenTree {
        source: CString,
        slot: usize,
        recursive: bool,
    },
    PivotRoot {
        new_root: CString,
    },
    Mount {
        source: CString,
        target: CString,
        fstype: CString,
        flags: MountFlags,
        data: Option<CString>,
        /// A missing target is skipped (masks of /proc entries the kernel lacks).
        optional: bool,
    },
    Mkdir {
        path: CString,
        mode: u32,
    },
    /// A character device node, mode 0666 (Docker's default devices).
    Mknod {
        path: CString,
        dev: rustix::fs::Dev,
    },
    /// A new file with this content (the generated /etc files).
    WriteFile {
        path: CString,
        content: Vec<u8>,
    },
    Symlink {
        target: CString,
        link: CString,
    },
    /// Creates a missing mount target and its missing parents; with a stub
    /// id, what it created is reported so it can be removed after the run.
    /// A target that is a dangling symlink (a resolv.conf pointing into an
    /// empty /run) skips the next `skip_if_dangling` ops, or fails when 0.
    Mountpoint {
        prefixes: Vec<CString>,
        dir: bool,
        stub: Option<u32>,
        skip_if_dangling: u8,
    },
    MoveMount {
        slot: usize,
        target: CString,
    },
    /// Remounts read-only, keeping the flags the kernel locks in a user namespace.
    RemountReadOnly {
        target: CString,
        optional: bool,
    },
    /// Mounts a fresh filesystem on a directory of the new root before
    /// pivot_root: proc and sysfs may only be mounted in a user namespace
    /// while the host's own are still visible. A symlink is refused (runc
    /// does too), so the target cannot leave the root.
    MountDir {
        target: CString,
        fstype: CString,
        flags: MountFlags,
    },
    /// mkdir owned by the user (the working directory).
    MkdirOwned {
        path: CString,
        uid: u32,
        gid: u32,
    },
    /// Waits for the parent's byte on the sync pipe (the run's cgroup
    /// attached and its limits set; EOF: the parent gave up), then makes
    /// the cgroup namespace, rooted at the run's cgroup as runc roots it.
    /// Placed as late as the ops allow (before a cgroup2 mount, else after
    /// the last op), so that the child builds its root while the parent
    /// attaches it: on cgroup v1 that write waits for an RCU grace period,
    /// several milliseconds of every RUN.
    AwaitParent,
}

impl Op {
    /// The step named in an error message.
    pub(crate) fn describe(&self) -> String {
        let s = |c: &CString| c.to_string_lossy().into_owned();
        match self {
            Op::MakeRootPrivate => "make / private".into(),
            Op::Overlay { target, .. } => format!("mount overlay on {}", s(target)),
            Op::OpenTree { source, .. } => format!("open {} for a bind mount", s(source)),
            Op::PivotRoot { new_root } => format!("pivot_root into {}", s(new_root)),
            Op::Mount {
                source,
                target,
                fstype,
                ..
            } => {
                if fstype.is_empty() {
                    format!("bind mount {} on {}", s(source), s(target))
                } else {
                    format!("mount {} on {}", s(fstype), s(target))
                }
            }
            Op::MountDir { target, fstype, .. } => format!("mount {} on {}", s(fstype), s(target)),
            Op::Mkdir { path, .. } | Op::MkdirOwned { path, .. } => format!("mkdir {}", s(path)),
            Op::Mknod { path, .. } => format!("mknod {}", s(path)),
            Op::Symlink { link, .. } => format!("symlink {}", s(link)),
            Op::WriteFile { path, .. } => format!("write {}", s(path)),
            Op::Mountpoint { prefixes, .. } => {
                format!(
                    "create mount point {}",
                    prefixes.last().map(s).unwrap_or_default()
                )
            }
            Op::MoveMount { target, .. } => format!("bind mount on {}", s(target)),
            Op::RemountReadOnly { target, .. } => format!("remount {} read-only", s(target)),
            Op::AwaitParent => "make the cgroup namespace".into(),
        }
    }
}

/// The process to exec: the PATH candidates for `argv[0]` and the
/// NULL-terminated argv/envp arrays pointing into the owned strings.
#[derive(Debug)]
pub(crate) struct ExecPlan {
    pub program: String,
    pub candidates: Vec<CString>,
    _argv: Vec<CString>,
    _env: Vec<CString>,
    pub argv: Vec<*const c_char>,
    pub envp: Vec<*const c_char>,
}

/// The descriptors the child turns into 0, 1 and 2, plus its two control pipes.
#[derive(Debug)]
pub(crate) struct ChildFds {
    pub stdin: RawFd,
    pub stdout: RawFd,
    pub stderr: RawFd,
    /// Error and stub reports; close-on-exec, so EOF means exec happened.
    pub report: RawFd,
    /// One byte from the parent once the ID maps are written and the
    /// process is in its cgroup; EOF means abort.
    pub sync: RawFd,
}

/// Everything the child does, precomputed.
#[derive(Debug)]
pub(crate) struct ChildPlan {
    pub fds: ChildFds,
    /// Wait for the parent before anything else (a new user namespace: its
    /// ID maps come first), rather than at the [`Op::AwaitParent`] op.
    pub await_early: bool,
    pub new_net: bool,
    pub hostname: CString,
    pub ops: Vec<Op>,
    /// Filled by the child's OpenTree ops (pre-sized: the child never grows it).
    pub slots: Vec<Option<OwnedFd>>,
    pub uid: u32,
    pub gid: u32,
    pub groups: Vec<Gid>,
    pub set_groups: bool,
    pub cap_last: u32,
    /// Every capability rather than Docker's set (`--security=insecure`).
    pub all_capabilities: bool,
    pub no_new_privs: bool,
    /// Loaded in order just before exec.
    pub seccomp: Filters,
    pub cwd: CString,
    pub exec: ExecPlan,
}

/// The run's scratch space: a tmpfs the child mounts over the sandbox's
/// state dir inside its own mount namespace. Nothing of it touches the
/// host's disk or outlives the run, so there is nothing to clean up.
#[derive(Debug)]
pub(crate) struct StatePaths {
    pub dir: PathBuf,
    pub merged: PathBuf,
    pub hosts: PathBuf,
    pub resolv_conf: PathBuf,
    pub hostname: PathBuf,
    /// An empty lowerdir for a root with no layers (FROM scratch).
    pub empty: PathBuf,
    /// Ephemeral upper and work dirs.
    pub upper: PathBuf,
    pub work: PathBuf,
}

impl StatePaths {
    pub(crate) fn new(dir: &Path) -> Self {
        Self {
            dir: dir.to_owned(),
            merged: dir.join("merged"),
            hosts: dir.join("hosts"),
            resolv_conf: dir.join("resolv.conf"),
            hostname: dir.join("hostname"),
            empty: dir.join("empty"),
            upper: dir.join("upper"),
            work: dir.join("work"),
        }
    }
}

/// A mount target created for the run, as paths relative to the root,
/// shallowest first.
pub(crate) type Stub = Vec<PathBuf>;

pub(crate) struct Planned {
    pub plan: ChildPlan,
    pub stubs: Vec<Stub>,
}

fn cstring(s: impl AsRef<[u8]>) -> Result<CString, SandboxError> {
    CString::new(s.as_ref()).map_err(|_| {
        SandboxError::InvalidSpec(format!(
            "{:?} contains a NUL byte",
            String::from_utf8_lossy(s.as_ref())
        ))
    })
}

fn path_cstring(p: &Path) -> Result<CString, SandboxError> {
    cstring(p.as_os_str().as_bytes())
}

/// The lexically cleaned components of an absolute path inside the root
/// (`..` stops at `/`, as it does in the kernel).
pub(crate) fn clean_components(path: &str) -> Result<Vec<&str>, SandboxError> {
    if !path.starts_with('/') {
        return Err(SandboxError::InvalidSpec(format!(
            "{path:?} is not an absolute path"
        )));
    }
    let mut out = Vec::new();
    for c in path.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            c => out.push(c),
        }
    }
    Ok(out)
}

fn abs(components: &[&str]) -> String {
    format!("/{}", components.join("/"))
}

/// `/a`, `/a/b`, `/a/b/c` for `/a/b/c`.
fn prefixes(components: &[&str]) -> Result<Vec<CString>, SandboxError> {
    (1..=components.len())
        .map(|n| cstring(abs(&components[..n])))
        .collect()
}

struct Builder {
    ops: Vec<Op>,
    slots: usize,
    stubs: Vec<Stub>,
}

impl Builder {
    fn open_tree(&mut self, source: &Path, recursive: bool) -> Result<usize, SandboxError> {
        let slot = self.slots;
        self.slots += 1;
        self.ops.push(Op::OpenTree {
            source: path_cstring(source)?,
            slot,
            recursive,
        });
        Ok(slot)
    }

    /// A mount point at `target`; `stub` records it for removal after the run.
    fn mountpoint(&mut self, target: &str, dir: bool, stub: bool) -> Result<CString, SandboxError> {
        let comps = clean_components(target)?;
        if comps.is_empty() {
            return Err(SandboxError::InvalidSpec("cannot mount over /".into()));
        }
        let stub = if stub {
            self.stubs.push(
                (1..=comps.len())
                    .map(|n| comps[..n].iter().collect())
                    .collect(),
            );
            Some((self.stubs.len() - 1) as u32)
        } else {
            None
        };
        let prefixes = prefixes(&comps)?;
        let target = prefixes.last().cloned().unwrap_or_default();
        self.ops.push(Op::Mountpoint {
            prefixes,
            dir,
            stub,
            skip_if_dangling: 0,
        });
        Ok(target)
    }

    fn mount(
        &mut self,
        source: &str,
        target: &str,
        fstype: &str,
        flags: MountFlags,
        data: Option<&str>,
        optional: bool,
    ) -> Result<(), SandboxError> {
        self.ops.push(Op::Mount {
            source: cstring(source)?,
            target: cstring(target)?,
            fstype: cstring(fstype)?,
            flags,
            data: data.map(cstring).transpose()?,
            optional,
        });
        Ok(())
    }

    fn remount_ro(&mut self, target: &str, optional: bool) -> Result<(), SandboxError> {
        self.ops.push(Op::RemountReadOnly {
            target: cstring(target)?,
            optional,
        });
        Ok(())
    }
}

/// Turns `spec` into the child's plan. `state` is the run's temp dir layout,
/// `idmap` the rootless mapping if any.
pub(crate) fn build(
    spec: &RunSpec,
    state: &StatePaths,
    idmap: Option<&IdMap>,
    fds: ChildFds,
    cap_last: u32,
    cgroup: &CgroupView,
) -> Result<Planned, SandboxError> {
    validate(spec, idmap)?;
    let mut b = Builder {
        ops: Vec::new(),
        slots: 0,
        stubs: Vec::new(),
    };
    let rootless = idmap.is_some();
    let await_early = idmap.is_some_and(IdMap::needs_new_namespace);
    let mount_bind = MountFlags::BIND;

    // Before pivot_root: the root and detached copies of every host path.
    b.ops.push(Op::MakeRootPrivate);
    // noexec too: the /etc files bound from it are nosuid,nodev,noexec as
    // BuildKit's are.
    b.mount(
        "tmpfs",
        &state.dir.to_string_lossy(),
        "tmpfs",
        MountFlags::NOSUID | MountFlags::NODEV | MountFlags::NOEXEC,
        Some("mode=755"),
        false,
    )?;
    let mut scratch = vec![&state.merged, &state.empty];
    if matches!(spec.rootfs, Rootfs::Ephemeral { .. }) {
        scratch.extend([&state.upper, &state.work]);
    }
    for dir in scratch {
        b.ops.push(Op::Mkdir {
            path: path_cstring(dir)?,
            mode: 0o755,
        });
    }
    for (content, path) in [
        (&spec.etc.hosts, &state.hosts),
        (&spec.etc.resolv_conf, &state.resolv_conf),
        (&spec.etc.hostname, &state.hostname),
    ] {
        if let Some(content) = content {
            b.ops.push(Op::WriteFile {
                path: path_cstring(path)?,
                content: content.as_bytes().to_vec(),
            });
        }
    }
    let mut lowers = spec.rootfs.lowerdirs().to_vec();
    if lowers.is_empty() {
        lowers.push(state.empty.clone());
    }
    let (upper, work) = match &spec.rootfs {
        Rootfs::Overlay {
            upperdir, workdir, ..
        } => (upperdir.as_path(), workdir.as_path()),
        Rootfs::Ephemeral { .. } | Rootfs::Directory { .. } => {
            (state.upper.as_path(), state.work.as_path())
        }
    };
    if let Rootfs::Directory { path } = &spec.rootfs {
        b.ops.push(Op::Mount {
            source: path_cstring(path)?,
            target: path_cstring(&state.merged)?,
            fstype: cstring("none")?,
            flags: MountFlags::BIND | MountFlags::REC,
            data: None,
            optional: false,
        });
    } else {
        let args = OverlayArgs::new(&lowers, Some((upper, work)), rootless)?;
        b.ops.push(Op::Overlay {
            args,
            target: path_cstring(&state.merged)?,
        });
    }
    let mut device_slots = Vec::new();
    if rootless {
        for (dev, ..) in DEVICES {
            device_slots.push((dev, b.open_tree(&Path::new("/dev").join(dev), false)?));
        }
    }
    let mut etc_slots = Vec::new();
    let etc = [
        ("/etc/hosts", &spec.etc.hosts, &state.hosts),
        (
            "/etc/resolv.conf",
            &spec.etc.resolv_conf,
            &state.resolv_conf,
        ),
        ("/etc/hostname", &spec.etc.hostname, &state.hostname),
    ];
    for (target, content, file) in etc {
        if content.is_some() {
            etc_slots.push((target, b.open_tree(file, false)?));
        }
    }
    // A fresh sysfs needs a network namespace owned by our user namespace;
    // rootless on the host network gets the host's /sys bound read-only.
    let sys_slot = if rootless && spec.network == Network::Host {
        Some(b.open_tree(Path::new("/sys"), true)?)
    } else {
        None
    };
    // cgroup v1: the run's cgroup of each hierarchy, bound below a tmpfs.
    let mut cgroup_slots = Vec::new();
    if let CgroupView::Legacy { hierarchies, .. } = cgroup {
        for (name, dir) in hierarchies {
            cgroup_slots.push((name, b.open_tree(dir, false)?));
        }
    }
    let mut mount_slots = Vec::new();
    for m in &spec.mounts {
        mount_slots.push(match &m.kind {
            MountKind::Bind { source, .. } => Some(b.open_tree(source, true)?),
            MountKind::Tmpfs { .. } => None,
        });
    }
    let nosuid_nodev_noexec = MountFlags::NOSUID | MountFlags::NODEV | MountFlags::NOEXEC;
    let insecure = spec.security.insecure;
    b.ops.push(Op::MountDir {
        target: path_cstring(&state.merged.join("proc"))?,
        fstype: cstring("proc")?,
        flags: nosuid_nodev_noexec,
    });
    if sys_slot.is_none() {
        // BuildKit's insecure mode makes sysfs writable.
        let ro = if insecure {
            MountFlags::empty()
        } else {
            MountFlags::RDONLY
        };
        b.ops.push(Op::MountDir {
            target: path_cstring(&state.merged.join("sys"))?,
            fstype: cstring("sysfs")?,
            flags: nosuid_nodev_noexec | ro,
        });
    }
    b.ops.push(Op::PivotRoot {
        new_root: path_cstring(&state.merged)?,
    });

    // After pivot_root: every target resolves inside the new root.
    b.mountpoint("/dev", true, false)?;
    b.mount(
        "tmpfs",
        "/dev",
        "tmpfs",
        MountFlags::NOSUID | MountFlags::STRICTATIME,
        Some("mode=755,size=65536k"),
        false,
    )?;
    for dir in ["/dev/pts", "/dev/shm"] {
        b.ops.push(Op::Mkdir {
            path: cstring(dir)?,
            mode: 0o755,
        });
    }
    let gid5 = idmap.is_none_or(|m| m.maps_gid(5));
    let pts = if gid5 {
        "newinstance,ptmxmode=0666,mode=0620,gid=5"
    } else {
        "newinstance,ptmxmode=0666,mode=0620"
    };
    b.mount(
        "devpts",
        "/dev/pts",
        "devpts",
        MountFlags::NOSUID | MountFlags::NOEXEC,
        Some(pts),
        false,
    )?;
    let shm = match spec.resources.shm_size {
        Some(bytes) => format!("mode=1777,size={bytes}"),
        None => "mode=1777,size=65536k".to_owned(),
    };
    b.mount(
        "shm",
        "/dev/shm",
        "tmpfs",
        nosuid_nodev_noexec,
        Some(&shm),
        false,
    )?;
    if !rootless {
        for (dev, major, minor) in DEVICES {
            b.ops.push(Op::Mknod {
                path: cstring(format!("/dev/{dev}"))?,
                dev: rustix::fs::makedev(major, minor),
            });
        }
    }
    for (dev, slot) in device_slots {
        let target = b.mountpoint(&format!("/dev/{dev}"), false, false)?;
        b.ops.push(Op::MoveMount { slot, target });
    }
    // runc's /dev/mqueue for the run's own IPC namespace.
    b.ops.push(Op::Mkdir {
        path: cstring("/dev/mqueue")?,
        mode: 0o1777,
    });
    b.mount(
        "mqueue",
        "/dev/mqueue",
        "mqueue",
        nosuid_nodev_noexec,
        None,
        false,
    )?;
    // runc's links; no /dev/console (no terminal) and no /dev/core.
    for (target, link) in [
        ("/proc/self/fd", "/dev/fd"),
        ("/proc/self/fd/0", "/dev/stdin"),
        ("/proc/self/fd/1", "/dev/stdout"),
        ("/proc/self/fd/2", "/dev/stderr"),
        ("pts/ptmx", "/dev/ptmx"),
    ] {
        b.ops.push(Op::Symlink {
            target: cstring(target)?,
            link: cstring(link)?,
        });
    }
    if let Some(slot) = sys_slot {
        b.mountpoint("/sys", true, false)?;
        b.ops.push(Op::MoveMount {
            slot,
            target: cstring("/sys")?,
        });
        b.remount_ro("/sys", false)?;
    }
    // /sys/fs/cgroup as BuildKit HEAD's runc mounts it: the run's own
    // cgroup, read-only (writable in insecure mode), over whatever the
    // host's /sys brought along.
    let cgroup_ro = if insecure {
        MountFlags::empty()
    } else {
        MountFlags::RDONLY
    };
    match cgroup {
        CgroupView::None => {}
        CgroupView::Unified => {
            if !await_early {
                b.ops.push(Op::AwaitParent);
            }
            b.mount(
                "cgroup",
                "/sys/fs/cgroup",
                "cgroup2",
                nosuid_nodev_noexec | cgroup_ro,
                None,
                false,
            )?;
        }
        CgroupView::Legacy { links, .. } => {
            b.mount(
                "tmpfs",
                "/sys/fs/cgroup",
                "tmpfs",
                nosuid_nodev_noexec,
                Some("mode=755"),
                false,
            )?;
            for (name, slot) in cgroup_slots {
                let target = cstring(format!("/sys/fs/cgroup/{name}"))?;
                b.ops.push(Op::Mkdir {
                    path: target.clone(),
                    mode: 0o755,
                });
                b.ops.push(Op::MoveMount {
                    slot,
                    target: target.clone(),
                });
                b.ops.push(Op::Mount {
                    source: cstring("")?,
                    target,
                    fstype: cstring("")?,
                    flags: MountFlags::from_bits_retain(libc::MS_REMOUNT as u32)
                        | mount_bind
                        | nosuid_nodev_noexec
                        | cgroup_ro,
                    data: None,
                    optional: false,
                });
            }
            for (link, target) in links {
                b.ops.push(Op::Symlink {
                    target: cstring(target.as_str())?,
                    link: cstring(format!("/sys/fs/cgroup/{link}"))?,
                });
            }
        }
    }
    // BuildKit's insecure mode masks and write-protects nothing, nor does
    // Docker's systempaths=unconfined.
    let (read_only, masked_files, masked_dirs): (&[&str], &[&str], &[&str]) =
        if insecure || spec.security.unconfined_system_paths {
            (&[], &[], &[])
        } else {
            (&PROC_READ_ONLY, &PROC_MASKED_FILES, &MASKED_DIRS)
        };
    for p in read_only {
        b.mount(p, p, "", mount_bind | MountFlags::REC, None, true)?;
        b.remount_ro(p, true)?;
    }
    for p in masked_files {
        b.mount("/dev/null", p, "", mount_bind, None, true)?;
    }
    for p in masked_dirs {
        b.mount("tmpfs", p, "tmpfs", MountFlags::RDONLY, None, true)?;
    }
    for (target, slot) in etc_slots {
        let target = b.mountpoint(target, false, true)?;
        if let Some(Op::Mountpoint {
            skip_if_dangling, ..
        }) = b.ops.last_mut()
        {
            // Without a file to mount on, the image keeps its own link.
            *skip_if_dangling = if spec.etc.read_only { 2 } else { 1 };
        }
        let t = target.to_string_lossy().into_owned();
        b.ops.push(Op::MoveMount { slot, target });
        if spec.etc.read_only {
            b.remount_ro(&t, false)?;
        }
    }
    for (m, slot) in spec.mounts.iter().zip(mount_slots) {
        match (&m.kind, slot) {
            (MountKind::Bind { source, read_only }, Some(slot)) => {
                let dir = std::fs::metadata(source)
                    .map_err(SandboxError::io(source))?
                    .is_dir();
                let target = b.mountpoint(&m.target, dir, true)?;
                let t = target.to_string_lossy().into_owned();
                b.ops.push(Op::MoveMount { slot, target });
                if *read_only {
                    b.remount_ro(&t, false)?;
                }
            }
            (MountKind::Tmpfs { size_bytes, mode }, _) => {
                let target = b.mountpoint(&m.target, true, true)?;
                let t = target.to_string_lossy().into_owned();
                let mut data = format!("mode={mode:o}");
                if let Some(size) = size_bytes {
                    data.push_str(&format!(",size={size}"));
                }
                b.mount(
                    "tmpfs",
                    &t,
                    "tmpfs",
                    MountFlags::NOSUID | MountFlags::NODEV,
                    Some(&data),
                    false,
                )?;
            }
            (MountKind::Bind { .. }, None) => unreachable_slot()?,
        }
    }
    let cwd = clean_components(&spec.cwd)?;
    for n in 1..=cwd.len() {
        b.ops.push(Op::MkdirOwned {
            path: cstring(abs(&cwd[..n]))?,
            uid: spec.user.uid,
            gid: spec.user.gid,
        });
    }
    if matches!(
        spec.rootfs,
        Rootfs::Ephemeral {
            read_only: true,
            ..
        }
    ) {
        b.remount_ro("/", false)?;
    }

    if !await_early && !b.ops.iter().any(|op| matches!(op, Op::AwaitParent)) {
        b.ops.push(Op::AwaitParent);
    }

    let set_groups = idmap.is_none_or(IdMap::allows_setgroups);
    let plan = ChildPlan {
        fds,
        await_early,
        new_net: spec.network == Network::None,
        hostname: cstring(&spec.hostname)?,
        ops: b.ops,
        slots: (0..b.slots).map(|_| None).collect(),
        uid: spec.user.uid,
        gid: spec.user.gid,
        groups: spec
            .user
            .additional_gids
            .iter()
            .map(|g| Gid::from_raw(*g))
            .collect(),
        set_groups,
        cap_last,
        all_capabilities: insecure,
        no_new_privs: spec.security.no_new_privs,
        seccomp: match &spec.security.seccomp {
            Some(profile) if !insecure => seccomp_filters(profile)?,
            _ => Filters::default(),
        },
        cwd: cstring(abs(&cwd))?,
        exec: exec_plan(spec)?,
    };
    Ok(Planned {
        plan,
        stubs: b.stubs,
    })
}

/// The filters of `profile` for Docker's capabilities. Docker's own
/// profile, which nearly every RUN uses, is compiled once per process:
/// compiling its three ABIs took about 4 ms, on every RUN.
fn seccomp_filters(profile: &Arc<SeccompProfile>) -> Result<Filters, SandboxError> {
    static DOCKER_DEFAULT: OnceLock<Filters> = OnceLock::new();
    if !Arc::ptr_eq(profile, &SeccompProfile::docker_default()) {
        return profile.compile(&DOCKER_CAPABILITIES);
    }
    if let Some(filters) = DOCKER_DEFAULT.get() {
        return Ok(filters.clone());
    }
    let filters = profile.compile(&DOCKER_CAPABILITIES)?;
    Ok(DOCKER_DEFAULT.get_or_init(|| filters).clone())
}

fn unreachable_slot() -> Result<(), SandboxError> {
    Err(SandboxError::InvalidSpec(
        "bind mount without a source".into(),
    ))
}

fn validate(spec: &RunSpec, idmap: Option<&IdMap>) -> Result<(), SandboxError> {
    if spec.args.is_empty() {
        return Err(SandboxError::InvalidSpec("no command to run".into()));
    }
    if spec.hostname.is_empty() || spec.hostname.len() > 64 {
        return Err(SandboxError::InvalidSpec(format!(
            "invalid hostname {:?}",
            spec.hostname
        )));
    }
    if let Some(map) = idmap {
        let u = &spec.user;
        let unmapped_gid = std::iter::once(&u.gid)
            .chain(&u.additional_gids)
            .find(|g| !map.maps_gid(**g));
        if !map.maps_uid(u.uid) || unmapped_gid.is_some() {
            return Err(SandboxError::IdMap(format!(
                "user {}:{} (groups {:?}) is not mapped in the rootless user namespace; \
                 add ranges for the current user to /etc/subuid and /etc/subgid",
                u.uid, u.gid, u.additional_gids
            )));
        }
        if !map.allows_setgroups() && !u.additional_gids.iter().all(|g| *g == 0) {
            return Err(SandboxError::IdMap(
                "supplementary groups need /etc/subgid ranges in a rootless run".into(),
            ));
        }
    }
    Ok(())
}

/// `argv[0]` is looked up in the image's PATH (the spec's env), like Docker.
fn exec_plan(spec: &RunSpec) -> Result<ExecPlan, SandboxError> {
    let program = spec.args[0].to_string_lossy().into_owned();
    let path = spec
        .env
        .iter()
        .rev()
        .find_map(|e| e.to_str()?.strip_prefix("PATH="))
        .unwrap_or(DEFAULT_PATH);
    let candidates = if program.contains('/') {
        vec![cstring(&program)?]
    } else {
        path.split(':')
            .map(|dir| {
                if dir.is_empty() {
                    cstring(format!("./{program}"))
                } else {
                    cstring(format!("{}/{program}", dir.trim_end_matches('/')))
                }
            })
            .collect::<Result<_, _>>()?
    };
    let argv: Vec<CString> = spec
        .args
        .iter()
        .map(|a| cstring(a.as_bytes()))
        .collect::<Result<_, _>>()?;
    let env: Vec<CString> = spec
        .env
        .iter()
        .map(|e| cstring(e.as_bytes()))
        .collect::<Result<_, _>>()?;
    let ptrs = |v: &[CString]| {
        v.iter()
            .map(|c| c.as_ptr())
            .chain(std::iter::once(std::ptr::null()))
            .collect()
    };
    Ok(ExecPlan {
        program,
        candidates,
        argv: ptrs(&argv),
        envp: ptrs(&env),
        _argv: argv,
        _env: env,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_components_cases() {
        let cases: [(&str, &[&str]); 5] = [
            ("/", &[]),
            ("/a//b/", &["a", "b"]),
            ("/a/./b/../c", &["a", "c"]),
            ("/../../etc", &["etc"]),
            ("/work dir", &["work dir"]),
        ];
        for (input, want) in cases {
            assert_eq!(clean_components(input).unwrap(), want, "case {input:?}");
        }
        assert!(
            clean_components("rel").is_err(),
            "relative paths are rejected"
        );
    }

    fn plan_for(spec: &RunSpec, idmap: Option<&IdMap>) -> Planned {
        let fds = ChildFds {
            stdin: 3,
            stdout: 4,
            stderr: 5,
            report: 6,
            sync: 7,
        };
        build(
            spec,
            &StatePaths::new(Path::new("/state")),
            idmap,
            fds,
            40,
            &CgroupView::None,
        )
        .unwrap()
    }

    #[test]
    fn plan_cases() {
        let single = IdMap::Single {
            uid: 1000,
            gid: 1000,
        };
        let base = || RunSpec {
            rootless: None,
            ..RunSpec::new(Rootfs::read_only("/img"), vec!["true".into()])
        };
        // (case, spec, idmap, op that must be there, op that must not)
        let mut no_net = base();
        no_net.network = Network::None;
        let mut no_etc = base();
        no_etc.etc = crate::spec::EtcFiles::none();
        let cases: Vec<(&str, RunSpec, Option<&IdMap>, &str, &str)> = vec![
            (
                "root gets a fresh sysfs",
                base(),
                None,
                "mount sysfs on /state/merged/sys",
                "open /sys",
            ),
            (
                "rootless host net binds /sys",
                base(),
                Some(&single),
                "open /sys for a bind mount",
                "mount sysfs",
            ),
            (
                "rootless none mounts sysfs",
                no_net,
                Some(&single),
                "mount sysfs",
                "open /sys",
            ),
            (
                "etc files are bound",
                base(),
                None,
                "bind mount on /etc/hosts",
                "\0",
            ),
            ("no etc files", no_etc, None, "mount proc", "/etc/hosts"),
            ("read-only root", base(), None, "remount / read-only", "\0"),
        ];
        for (name, spec, idmap, want, unwanted) in cases {
            let planned = plan_for(&spec, idmap);
            let ops: Vec<String> = planned.plan.ops.iter().map(Op::describe).collect();
            assert!(
                ops.iter().any(|o| o.contains(want)),
                "case {name}: no {want:?} in {ops:#?}"
            );
            assert!(
                !ops.iter().any(|o| o.contains(unwanted)),
                "case {name}: {unwanted:?} in {ops:#?}"
            );
            let pivot = ops
                .iter()
                .position(|o| o.starts_with("pivot_root"))
                .unwrap();
            let binds_before = ops[..pivot].iter().any(|o| o.starts_with("bind mount"));
            assert!(
                !binds_before,
                "case {name}: targets must resolve inside the root"
            );
        }
    }

    /// The child waits for its cgroup as late as it can: after every
    /// mount (cgroup v1 or none), just before the cgroup2 mount (which
    /// must be made in the run's cgroup namespace), or first of all with a
    /// new user namespace (its ID maps come before any mount).
    #[test]
    fn r9_the_child_awaits_its_cgroup_after_its_mounts() {
        let spec = RunSpec {
            rootless: None,
            ..RunSpec::new(Rootfs::read_only("/img"), vec!["true".into()])
        };
        let single = IdMap::Single {
            uid: 1000,
            gid: 1000,
        };
        let inherited = IdMap::Inherited {
            uids: vec![(0, 65536)],
            gids: vec![(0, 65536)],
            setgroups: true,
        };
        let legacy = CgroupView::Legacy {
            hierarchies: vec![("pids".into(), PathBuf::from("/sys/fs/cgroup/pids/run"))],
            links: vec![],
        };
        let fds = || ChildFds {
            stdin: 3,
            stdout: 4,
            stderr: 5,
            report: 6,
            sync: 7,
        };
        let state = StatePaths::new(Path::new("/state"));
        // (case, idmap, view, what comes right after the wait: None = last)
        let cases: [(&str, Option<&IdMap>, &CgroupView, Option<&str>); 4] = [
            ("root, no cgroupfs", None, &CgroupView::None, None),
            ("root, cgroup v1", None, &legacy, None),
            (
                "root, cgroup v2",
                None,
                &CgroupView::Unified,
                Some("mount cgroup2 on /sys/fs/cgroup"),
            ),
            (
                "rootless in the builder's namespace, v2",
                Some(&inherited),
                &CgroupView::Unified,
                Some("mount cgroup2 on /sys/fs/cgroup"),
            ),
        ];
        for (name, idmap, view, next) in cases {
            let plan = build(&spec, &state, idmap, fds(), 40, view).unwrap().plan;
            assert!(!plan.await_early, "case {name}");
            let ops: Vec<String> = plan.ops.iter().map(Op::describe).collect();
            let waits: Vec<usize> = (0..plan.ops.len())
                .filter(|i| matches!(plan.ops[*i], Op::AwaitParent))
                .collect();
            assert_eq!(waits.len(), 1, "case {name}: one wait in {ops:#?}");
            let after = ops.get(waits[0] + 1).map(String::as_str);
            assert_eq!(after, next, "case {name}: {ops:#?}");
            let pivot = ops.iter().position(|o| o.starts_with("pivot_root"));
            assert!(
                pivot < Some(waits[0]),
                "case {name}: the root is built first"
            );
        }
        let plan = build(
            &spec,
            &state,
            Some(&single),
            fds(),
            40,
            &CgroupView::Unified,
        )
        .unwrap()
        .plan;
        assert!(plan.await_early, "a new user namespace waits first");
        assert!(
            !plan.ops.iter().any(|op| matches!(op, Op::AwaitParent)),
            "and only once"
        );
    }

    #[test]
    fn only_etc_files_and_extra_mounts_are_stubs() {
        let mut spec = RunSpec {
            rootless: None,
            ..RunSpec::new(Rootfs::read_only("/img"), vec!["true".into()])
        };
        spec.mounts.push(crate::spec::Mount {
            target: "/cache/x".into(),
            kind: MountKind::Tmpfs {
                size_bytes: None,
                mode: 0o755,
            },
        });
        let stubs = plan_for(&spec, None).stubs;
        let got: Vec<Vec<String>> = stubs
            .iter()
            .map(|s| s.iter().map(|p| p.display().to_string()).collect())
            .collect();
        let want = [
            vec!["etc", "etc/hosts"],
            vec!["etc", "etc/resolv.conf"],
            vec!["etc", "etc/hostname"],
            vec!["cache", "cache/x"],
        ];
        assert_eq!(got, want);
    }

    #[test]
    fn unmapped_users_are_refused_rootless() {
        let single = IdMap::Single {
            uid: 1000,
            gid: 1000,
        };
        let mut spec = RunSpec::new(Rootfs::read_only("/img"), vec!["true".into()]);
        spec.user = crate::spec::User {
            uid: 1,
            gid: 0,
            additional_gids: vec![],
        };
        let fds = ChildFds {
            stdin: 3,
            stdout: 4,
            stderr: 5,
            report: 6,
            sync: 7,
        };
        let r = build(
            &spec,
            &StatePaths::new(Path::new("/state")),
            Some(&single),
            fds,
            40,
            &CgroupView::None,
        );
        assert!(
            matches!(r, Err(SandboxError::IdMap(_))),
            "uid 1 has no owner in a single-ID map"
        );
    }

    #[test]
    fn exec_candidates_follow_path() {
        let mut spec = RunSpec::new(Rootfs::read_only("/x"), vec!["sh".into()]);
        let cases: [(&str, &str, &[&str]); 3] = [
            ("PATH=/bin:/usr/bin/", "sh", &["/bin/sh", "/usr/bin/sh"]),
            ("PATH=/bin::/sbin", "sh", &["/bin/sh", "./sh", "/sbin/sh"]),
            ("PATH=/bin", "./x/sh", &["./x/sh"]),
        ];
        for (path, prog, want) in cases {
            spec.env = vec![path.into()];
            spec.args = vec![prog.into()];
            let plan = exec_plan(&spec).unwrap();
            let got: Vec<_> = plan
                .candidates
                .iter()
                .map(|c| c.to_str().unwrap())
                .collect();
            assert_eq!(got, want, "case {path} {prog}");
            assert_eq!(plan.argv.len(), 2, "argv is NULL-terminated");
        }
    }
}
