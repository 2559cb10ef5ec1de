//! `docker build`'s resource flags for one run, enforced with cgroups.
//!
//! Before the run's process is cloned, [`RunCgroup::prepare`] makes its
//! cgroup and writes the limits; once it is cloned, [`RunCgroup::attach`]
//! moves it in, before it may exec. After the run the OOM-kill counter is
//! read and the cgroup removed once its processes are gone. A failure
//! before the attach leaves nothing behind: the cgroup is still empty.
//!
//! The run's cgroup is nested in the builder's own (so the builder's own
//! limits and accounting still cover its runs), or under `--cgroup-parent`
//! when given (an absolute path from the hierarchy's root, a relative one
//! from the builder's cgroup). Every run also gets the default pids limit.
//!
//! The host's mode is found as runc finds it, from the filesystem type of
//! `/sys/fs/cgroup`:
//! - **v1** (a tmpfs of per-controller hierarchies; a hybrid host's empty
//!   cgroup2 at `/sys/fs/cgroup/unified` is ignored, as runc does): one
//!   cgroup per hierarchy, with runc's device rules (the devices
//!   controller). Root builders only: v1 is not delegated.
//! - **v2** (cgroup2 at `/sys/fs/cgroup`), as runc's `fs2`: one cgroup; the
//!   controllers it needs are enabled in `cgroup.subtree_control` of every
//!   level above it, and the limits use runc's conversions (`cpu.weight`
//!   from shares, `memory.swap.max` from memory+swap, `cpu.max` from quota
//!   and period). A cgroup that holds processes cannot pass controllers
//!   down ("no internal processes"), so a builder alone in its cgroup first
//!   moves itself into a leaf of it, `hoist-<pid>-builder` (as BuildKit's
//!   and docker-in-docker's entrypoints do). Rootless builders use v2 the
//!   same way, in the cgroup systemd delegated to them; without a writable
//!   one, asking for a limit is an error that says how to get one. runc's
//!   device rules, an eBPF program on v2, are not applied.

use std::path::{Component, Path, PathBuf};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

use rustix::process::Pid;

use crate::error::SandboxError;
use crate::spec::Resources;

/// The pids limit every run gets where cgroups can be used, unless the
/// caller gives one: a fork bomb stops there instead of at the host's.
pub const DEFAULT_PIDS_LIMIT: i64 = 4096;

const CGROUP_ROOT: &str = "/sys/fs/cgroup";
/// `CGROUP2_SUPER_MAGIC` from linux/magic.h.
const CGROUP2_SUPER_MAGIC: u64 = 0x6367_7270;

/// How the host mounts cgroups.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Per-controller v1 hierarchies (with or without an empty cgroup2 at
    /// `/sys/fs/cgroup/unified`).
    Legacy,
    /// One cgroup2 hierarchy at `/sys/fs/cgroup`.
    Unified,
}

/// The host's cgroup mode, as runc's `IsCgroup2UnifiedMode` decides it:
/// the filesystem type of `/sys/fs/cgroup`. `None` when nothing is mounted
/// there that hoist can use.
pub(crate) fn detect_mode() -> Option<Mode> {
    let fs = rustix::fs::statfs(CGROUP_ROOT).ok()?;
    #[allow(clippy::unnecessary_cast, clippy::useless_conversion)]
    let magic = fs.f_type as u64;
    if magic == CGROUP2_SUPER_MAGIC {
        Some(Mode::Unified)
    } else if is_v1() {
        Some(Mode::Legacy)
    } else {
        None
    }
}

/// Where a run's memory accounting is read after it ends.
#[derive(Debug)]
enum MemoryFiles {
    /// A v1 memory cgroup: `memory.oom_control`, `memory.limit_in_bytes`.
    V1(PathBuf),
    /// A v2 cgroup: `memory.events`, `memory.max`.
    V2(PathBuf),
}

/// The run's cgroup directories: one per v1 hierarchy it uses, or its one
/// v2 cgroup.
#[derive(Debug)]
pub(crate) struct RunCgroup {
    dirs: Vec<PathBuf>,
    memory: Option<MemoryFiles>,
}

impl RunCgroup {
    /// Makes the run's cgroups with `resources`' limits, before its process
    /// exists. `None` when nothing is asked and cgroups cannot be used here
    /// (rootless on v1, no writable cgroup): the default pids limit and
    /// device rules are then skipped.
    pub(crate) fn prepare(
        resources: &Resources,
        insecure: bool,
    ) -> Result<Option<Self>, SandboxError> {
        let explicit = resources.has_limits();
        let rootless = !rustix::process::geteuid().is_root() || crate::idmap::in_user_namespace();
        let prepared = match detect_mode() {
            // The device program needs CAP_SYS_ADMIN in the host's user
            // namespace; a rootless run cannot make device nodes anyway.
            Some(Mode::Unified) => Unified::host(rootless).and_then(|h| {
                h.prepare(
                    resources,
                    !insecure && !rootless,
                    &run_name(),
                    std::process::id(),
                )
            }),
            Some(Mode::Legacy) if rootless => Err(SandboxError::Cgroup(
                "resource limits on a cgroup v1 host need a root builder (cgroup v1 is not \
                 delegated to rootless builders; cgroup v2 is)"
                    .into(),
            )),
            Some(Mode::Legacy) => Self::prepare_v1(resources, insecure),
            None => Err(SandboxError::Cgroup(format!(
                "no cgroup filesystem is mounted at {CGROUP_ROOT}"
            ))),
        };
        match prepared {
            Ok(cg) => Ok(Some(cg)),
            // Only the defaults were asked for, and cgroups cannot be used
            // here (rootless, a container's read-only /sys/fs/cgroup): run
            // without them rather than not at all.
            Err(_) if !explicit => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Moves the run's process into its cgroups, before it may exec.
    pub(crate) fn attach(&self, pid: Pid) -> Result<(), SandboxError> {
        let pid = pid.as_raw_nonzero().to_string();
        for dir in &self.dirs {
            write(&dir.join("cgroup.procs"), &pid)?;
        }
        Ok(())
    }

    fn prepare_v1(resources: &Resources, insecure: bool) -> Result<Self, SandboxError> {
        let name = run_name();
        let mut cg = RunCgroup {
            dirs: Vec::new(),
            memory: None,
        };
        let pids = resources.pids_limit.unwrap_or(DEFAULT_PIDS_LIMIT);
        // runc's device rules: nothing but Docker's default devices and
        // ptys, so a node made with mknod (CAP_MKNOD) opens nothing else.
        let mut devices = vec![("devices.deny", "a".to_owned())];
        for rule in crate::devices::DEFAULT_RULES {
            devices.push(("devices.allow", (*rule).to_owned()));
        }
        // BuildKit's insecure mode allows every device.
        if insecure {
            devices.clear();
        }
        let mut wanted: Vec<(&str, Vec<(&str, String)>)> = vec![
            ("devices", devices),
            ("pids", vec![("pids.max", pids_max(pids))]),
        ];
        if let Some(memory) = resources.memory {
            let mut files = vec![("memory.limit_in_bytes", memory.to_string())];
            let memsw = match memory_swap(memory, resources.memory_swap)? {
                Swap::Unlimited => "-1".to_owned(),
                Swap::Extra(extra) => memory.saturating_add(extra).to_string(),
            };
            files.push(("memory.memsw.limit_in_bytes", memsw));
            wanted.push(("memory", files));
        } else if resources.memory_swap.is_some() {
            return Err(swap_needs_memory());
        }
        let mut cpu = Vec::new();
        if let Some(shares) = resources.cpu_shares {
            cpu.push(("cpu.shares", shares.to_string()));
        }
        if let Some(period) = resources.cpu_period {
            cpu.push(("cpu.cfs_period_us", period.to_string()));
        }
        if let Some(quota) = resources.cpu_quota {
            cpu.push(("cpu.cfs_quota_us", quota.to_string()));
        }
        if !cpu.is_empty() {
            wanted.push(("cpu", cpu));
        }
        if let Some(cpus) = &resources.cpuset_cpus {
            wanted.push(("cpuset", vec![("cpuset.cpus", cpus.clone())]));
        }
        for (controller, files) in wanted {
            if files.is_empty() {
                continue;
            }
            let dir = cg.make_dir_v1(controller, resources.cgroup_parent.as_deref(), &name)?;
            for (file, value) in files {
                let path = dir.join(file);
                if file == "memory.memsw.limit_in_bytes" && !path.exists() {
                    continue; // no swap accounting on this kernel
                }
                write(&path, &value)?;
            }
            if controller == "memory" {
                cg.memory = Some(MemoryFiles::V1(dir.clone()));
            }
        }
        Ok(cg)
    }

    /// `<hierarchy>/<parent>/<name>`, parents created as needed (cpuset
    /// ones get their parent's cpus and mems, which v1 requires).
    fn make_dir_v1(
        &mut self,
        controller: &str,
        parent: Option<&str>,
        name: &str,
    ) -> Result<PathBuf, SandboxError> {
        let hierarchy = Path::new(CGROUP_ROOT).join(controller);
        let own = own_cgroup_v1(controller)?;
        let base = hierarchy.join(parent_path(&own, parent)?);
        sweep_stale(&base);
        let dir = base.join(name);
        // Create each missing level, so cpuset levels can be initialised.
        let rel = dir.strip_prefix(&hierarchy).unwrap_or(&dir).to_owned();
        let mut cur = hierarchy.clone();
        for comp in rel.components() {
            let parent_dir = cur.clone();
            cur.push(comp);
            match std::fs::create_dir(&cur) {
                Ok(()) => {
                    if cur == dir {
                        // Removed by Drop, also when a later step fails.
                        self.dirs.push(dir.clone());
                    }
                    if controller == "cpuset" {
                        for f in ["cpuset.cpus", "cpuset.mems"] {
                            let v = read(&parent_dir.join(f))?;
                            write(&cur.join(f), v.trim())?;
                        }
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(SandboxError::io(&cur)(e)),
            }
        }
        if !self.dirs.contains(&dir) {
            self.dirs.push(dir.clone());
        }
        Ok(dir)
    }

    /// Whether the kernel's OOM killer killed a process of the run.
    pub(crate) fn oom_killed(&self) -> bool {
        let (dir, file) = match &self.memory {
            Some(MemoryFiles::V1(dir)) => (dir, "memory.oom_control"),
            Some(MemoryFiles::V2(dir)) => (dir, "memory.events"),
            None => return false,
        };
        read(&dir.join(file))
            .ok()
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("oom_kill "))
                    .and_then(|n| n.trim().parse::<u64>().ok())
            })
            .is_some_and(|n| n > 0)
    }

    /// The memory limit, for the error message.
    pub(crate) fn memory_limit(&self) -> Option<u64> {
        let path = match self.memory.as_ref()? {
            MemoryFiles::V1(dir) => dir.join("memory.limit_in_bytes"),
            MemoryFiles::V2(dir) => dir.join("memory.max"),
        };
        read(&path).ok()?.trim().parse().ok()
    }
}

/// What a run sees at /sys/fs/cgroup, as BuildKit HEAD's runc mounts it
/// there: read-only, rooted at the run's own cgroup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum CgroupView {
    /// Nothing is mounted (no cgroupfs on the host).
    None,
    /// cgroup v2: a cgroup2 mount made inside the run's cgroup namespace.
    Unified,
    /// cgroup v1: a tmpfs holding a bind of the run's cgroup (else the
    /// builder's) from each hierarchy, and the host's links between them
    /// (`cpu -> cpu,cpuacct`).
    Legacy {
        /// `(name under /sys/fs/cgroup, host directory)`.
        hierarchies: Vec<(String, PathBuf)>,
        /// `(link name, target)`.
        links: Vec<(String, String)>,
    },
}

impl CgroupView {
    /// The host's view for a run in `cgroup` (its v1 directories).
    pub(crate) fn of(cgroup: Option<&RunCgroup>) -> Self {
        match detect_mode() {
            Some(Mode::Unified) => CgroupView::Unified,
            Some(Mode::Legacy) => {
                let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
                let own = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
                let run_dirs = cgroup.map(|c| c.dirs.as_slice()).unwrap_or_default();
                let mut links = Vec::new();
                for entry in std::fs::read_dir(CGROUP_ROOT)
                    .into_iter()
                    .flatten()
                    .flatten()
                {
                    if let (Ok(target), Some(name)) =
                        (std::fs::read_link(entry.path()), entry.file_name().to_str())
                        && let Some(target) = target.to_str()
                    {
                        links.push((name.to_owned(), target.to_owned()));
                    }
                }
                links.sort();
                CgroupView::Legacy {
                    hierarchies: v1_hierarchies(&mountinfo, &own, run_dirs),
                    links,
                }
            }
            None => CgroupView::None,
        }
    }
}

/// Each v1 hierarchy mounted under /sys/fs/cgroup (from mountinfo), with
/// the directory a run sees as its root there: its own cgroup when it has
/// one in that hierarchy (`run_dirs`), else the builder's (`own`, the text
/// of /proc/self/cgroup).
fn v1_hierarchies(mountinfo: &str, own: &str, run_dirs: &[PathBuf]) -> Vec<(String, PathBuf)> {
    let mut out = Vec::new();
    for line in mountinfo.lines() {
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        let mut right = right.split(' ');
        if right.next() != Some("cgroup") {
            continue;
        }
        let super_opts = right.nth(1).unwrap_or_default();
        let Some(mountpoint) = left.split(' ').nth(4) else {
            continue;
        };
        let mountpoint = Path::new(mountpoint);
        if mountpoint.parent() != Some(Path::new(CGROUP_ROOT)) {
            continue;
        }
        let Some(name) = mountpoint.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        // The hierarchy's controllers, as /proc/self/cgroup lists them.
        let controllers: Vec<&str> = super_opts
            .split(',')
            .filter(|o| {
                !matches!(*o, "rw" | "ro" | "xattr" | "noprefix" | "clone_children")
                    && !o.starts_with("release_agent=")
            })
            .collect();
        let dir = match run_dirs.iter().find(|d| d.starts_with(mountpoint)) {
            Some(dir) => dir.clone(),
            None => {
                let path = own
                    .lines()
                    .filter_map(|l| {
                        let mut parts = l.splitn(3, ':');
                        let (_, list, path) = (parts.next()?, parts.next()?, parts.next()?);
                        let mut list: Vec<&str> = list.split(',').collect();
                        let mut want = controllers.clone();
                        list.sort_unstable();
                        want.sort_unstable();
                        (list == want).then_some(path)
                    })
                    .next()
                    .unwrap_or("/");
                mountpoint.join(path.trim_start_matches('/'))
            }
        };
        out.push((name.to_owned(), dir));
    }
    out
}

/// A run cgroup's name: `hoist-<builder pid>-<sequence>`, so that a later
/// builder can tell a dead one's leftovers (see [`sweep_stale`]).
fn run_name() -> String {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    format!(
        "hoist-{}-{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    )
}

/// `pids.max`'s value: 0 or less is unlimited, as in Docker.
fn pids_max(limit: i64) -> String {
    if limit <= 0 {
        "max".to_owned()
    } else {
        limit.to_string()
    }
}

/// Swap on top of `--memory`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Swap {
    Unlimited,
    /// Bytes of swap allowed beyond the memory limit.
    Extra(u64),
}

/// Docker's `--memory-swap` (memory plus swap) for a `--memory` limit:
/// unset or 0 is twice the memory (the daemon's default), -1 unlimited,
/// and less than the memory an error. runc's
/// `ConvertMemorySwapToCgroupV2Value` turns it into the swap alone.
fn memory_swap(memory: u64, memory_swap: Option<i64>) -> Result<Swap, SandboxError> {
    match memory_swap {
        None | Some(0) => Ok(Swap::Extra(memory)),
        Some(-1) => Ok(Swap::Unlimited),
        Some(total) => match u64::try_from(total) {
            Ok(total) if total >= memory => Ok(Swap::Extra(total - memory)),
            _ => Err(SandboxError::Cgroup(format!(
                "--memory-swap {total} must be at least --memory {memory} (or -1 for unlimited \
                 swap)"
            ))),
        },
    }
}

fn swap_needs_memory() -> SandboxError {
    SandboxError::Cgroup("--memory-swap needs --memory as well".into())
}

/// runc's conversion of cgroup v1 CPU shares (2 to 262144, default 1024)
/// to a cgroup v2 `cpu.weight` (1 to 10000, default 100): the quadratic in
/// log2 that opencontainers/cgroups uses since runc 1.3, which maps the
/// minimum, the default and the maximum onto each other. 0 is unset.
pub(crate) fn cpu_weight(shares: u64) -> u64 {
    match shares {
        0 => 0,
        1..=2 => 1,
        262_144.. => 10_000,
        _ => {
            let l = (shares as f64).log2();
            let exponent = (l * l + 125.0 * l) / 612.0 - 7.0 / 34.0;
            10f64.powf(exponent).ceil() as u64
        }
    }
}

/// runc's `cpu.max`: "QUOTA PERIOD", QUOTA `max` when unset or not
/// positive, PERIOD the kernel's default 100000 when unset.
fn cpu_max(quota: Option<i64>, period: Option<u64>) -> Option<String> {
    if quota.is_none() && period.is_none() {
        return None;
    }
    let quota = match quota {
        Some(q) if q > 0 => q.to_string(),
        _ => "max".to_owned(),
    };
    Some(format!("{quota} {}", period.unwrap_or(100_000)))
}

/// One file a v2 run cgroup gets: its controller, name and value.
#[derive(Debug, Clone, PartialEq, Eq)]
struct V2File {
    controller: &'static str,
    file: &'static str,
    value: String,
}

/// The v2 files `resources` asks for, in runc's order. `default_pids`
/// adds the default pids limit when none is given.
fn v2_files(resources: &Resources, default_pids: bool) -> Result<Vec<V2File>, SandboxError> {
    let mut files = Vec::new();
    let mut add = |controller, file, value: String| {
        files.push(V2File {
            controller,
            file,
            value,
        })
    };
    match (resources.memory, resources.memory_swap) {
        (Some(memory), swap) => {
            // runc writes the swap first, then the memory.
            let swap = match memory_swap(memory, swap)? {
                Swap::Unlimited => "max".to_owned(),
                Swap::Extra(extra) => extra.to_string(),
            };
            add("memory", "memory.swap.max", swap);
            add("memory", "memory.max", memory.to_string());
        }
        (None, Some(_)) => return Err(swap_needs_memory()),
        (None, None) => {}
    }
    if let Some(shares) = resources.cpu_shares {
        let weight = cpu_weight(shares);
        if weight != 0 {
            add("cpu", "cpu.weight", weight.to_string());
        }
    }
    if let Some(max) = cpu_max(resources.cpu_quota, resources.cpu_period) {
        add("cpu", "cpu.max", max);
    }
    if let Some(cpus) = &resources.cpuset_cpus {
        add("cpuset", "cpuset.cpus", cpus.clone());
    }
    match resources.pids_limit {
        Some(limit) => add("pids", "pids.max", pids_max(limit)),
        None if default_pids => add("pids", "pids.max", pids_max(DEFAULT_PIDS_LIMIT)),
        None => {}
    }
    Ok(files)
}

/// A cgroup v2 hierarchy: where it is mounted and the builder's own cgroup
/// in it.
#[derive(Debug, Clone)]
pub(crate) struct Unified {
    root: PathBuf,
    /// The builder's cgroup, relative to `root`.
    own: PathBuf,
    /// A rootless builder: write failures mean no delegation.
    rootless: bool,
}

impl Unified {
    /// The host's hierarchy at /sys/fs/cgroup. The builder's own cgroup is
    /// read once per process: once it has moved itself into a leaf
    /// (`evacuate`), /proc/self/cgroup names the leaf.
    fn host(rootless: bool) -> Result<Self, SandboxError> {
        static OWN: OnceLock<PathBuf> = OnceLock::new();
        let own = match OWN.get() {
            Some(own) => own.clone(),
            None => {
                let text = read(Path::new("/proc/self/cgroup"))?;
                let own = own_cgroup_v2(&text).ok_or_else(|| {
                    SandboxError::Cgroup("/proc/self/cgroup has no cgroup v2 entry (0::)".into())
                })?;
                OWN.get_or_init(|| own).clone()
            }
        };
        Ok(Self {
            root: PathBuf::from(CGROUP_ROOT),
            own,
            rootless,
        })
    }

    /// Makes `<base>/<name>` (base: the builder's cgroup or
    /// `--cgroup-parent`) with `resources`' limits, and runc's device rules
    /// when `devices`. `self_pid` is the builder's own process, which may
    /// have to leave its cgroup.
    fn prepare(
        &self,
        resources: &Resources,
        devices: bool,
        name: &str,
        self_pid: u32,
    ) -> Result<RunCgroup, SandboxError> {
        // The default pids limit only where the hierarchy has the
        // controller at all (a hybrid host's cgroup2, a minimal kernel).
        let has_pids = read(&self.root.join("cgroup.controllers"))
            .is_ok_and(|c| c.split_whitespace().any(|c| c == "pids"));
        let mut files = v2_files(resources, has_pids)?;
        let mut controllers: Vec<&str> = files.iter().map(|f| f.controller).collect();
        controllers.sort_unstable();
        controllers.dedup();
        let base_rel = parent_path(&self.own, resources.cgroup_parent.as_deref())?;
        match self.enable(&base_rel, &controllers, self_pid) {
            Ok(()) => {}
            // Only the default pids limit was wanted and it cannot be
            // passed down here (a cgroup shared with other processes, a
            // delegation without pids): a cgroup without controllers still
            // carries the device rules.
            Err(_) if resources.pids_limit.is_none() && controllers == ["pids"] => {
                files.clear();
                self.enable(&base_rel, &[], self_pid)?;
            }
            Err(e) => return Err(e),
        }
        let base = self.root.join(&base_rel);
        sweep_stale(&base);
        let dir = base.join(name);
        std::fs::create_dir(&dir).map_err(|e| self.error(&dir, e))?;
        let cg = RunCgroup {
            dirs: vec![dir.clone()],
            memory: resources.memory.map(|_| MemoryFiles::V2(dir.clone())),
        };
        for V2File { file, value, .. } in files {
            let path = dir.join(file);
            // No swap accounting on this kernel: the memory controller's
            // files are there but not the swap's.
            if file == "memory.swap.max" && !path.exists() && dir.join("memory.max").exists() {
                continue;
            }
            std::fs::write(&path, &value).map_err(|e| {
                SandboxError::Cgroup(format!("writing {value:?} to {}: {e}", path.display()))
            })?;
        }
        if devices {
            crate::devices::attach(&dir, &crate::devices::default_rules())?;
        }
        Ok(cg)
    }

    /// Creates `root/<rel>` level by level, each level passing
    /// `controllers` down to its children (`cgroup.subtree_control`), as
    /// runc's `CreateCgroupPath` does.
    fn enable(&self, rel: &Path, controllers: &[&str], self_pid: u32) -> Result<(), SandboxError> {
        let mut cur = self.root.clone();
        let mut levels = rel.components().peekable();
        loop {
            self.pass_down(&cur, controllers, self_pid)?;
            let Some(level) = levels.next() else {
                return Ok(());
            };
            cur.push(level);
            match std::fs::create_dir(&cur) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(self.error(&cur, e)),
            }
        }
    }

    /// Enables `controllers` in `dir`'s `cgroup.subtree_control`, moving
    /// the builder out of its own cgroup first when that is what holds them
    /// back.
    fn pass_down(
        &self,
        dir: &Path,
        controllers: &[&str],
        self_pid: u32,
    ) -> Result<(), SandboxError> {
        if controllers.is_empty() {
            return Ok(());
        }
        let available = self.read(&dir.join("cgroup.controllers"))?;
        if let Some(missing) = controllers
            .iter()
            .find(|c| !available.split_whitespace().any(|a| a == **c))
        {
            let how = if self.rootless {
                " (systemd delegates memory and pids to users by default; others need \
                 Delegate= in user@.service)"
            } else {
                ""
            };
            return Err(SandboxError::Cgroup(format!(
                "the {missing} controller is not available in {} (cgroup.controllers: {:?}){how}",
                dir.display(),
                available.trim()
            )));
        }
        let enabled = self.read(&dir.join("cgroup.subtree_control"))?;
        let wanted: Vec<String> = controllers
            .iter()
            .filter(|c| !enabled.split_whitespace().any(|e| e == **c))
            .map(|c| format!("+{c}"))
            .collect();
        if wanted.is_empty() {
            return Ok(());
        }
        let file = dir.join("cgroup.subtree_control");
        let wanted = wanted.join(" ");
        match std::fs::write(&file, &wanted) {
            Ok(()) => Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) && dir == self.root.join(&self.own) => {
                self.evacuate(self_pid)?;
                std::fs::write(&file, &wanted).map_err(|e| self.error(&file, e))
            }
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) => Err(SandboxError::Cgroup(format!(
                "cannot enable {wanted} in {}: it holds processes, and a cgroup v2 cgroup with \
                 processes cannot pass controllers to its children; choose another \
                 --cgroup-parent",
                dir.display()
            ))),
            Err(e) => Err(self.error(&file, e)),
        }
    }

    /// Moves the builder out of its own cgroup into a leaf of it,
    /// `hoist-<pid>-builder`, so that its cgroup may pass controllers down
    /// to the run cgroups beside that leaf. Refused when other processes
    /// share the builder's cgroup (a login session's scope).
    fn evacuate(&self, self_pid: u32) -> Result<(), SandboxError> {
        static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
        let _lock = LOCK.lock().unwrap_or_else(|e| e.into_inner());
        let own = self.root.join(&self.own);
        let me = self_pid.to_string();
        let procs = self.read(&own.join("cgroup.procs"))?;
        let others = procs.lines().filter(|p| p.trim() != me).count();
        if others > 0 {
            return Err(SandboxError::Cgroup(format!(
                "cannot nest run cgroups in {}: it holds {others} other process(es) besides the \
                 builder, and a cgroup v2 cgroup with processes cannot pass controllers to its \
                 children; run hoist in a cgroup of its own (systemd-run{} --scope -p \
                 Delegate=yes hoist ...) or give --cgroup-parent",
                own.display(),
                if self.rootless { " --user" } else { "" }
            )));
        }
        if procs.trim().is_empty() {
            return Ok(()); // moved already (by another run)
        }
        let leaf = own.join(format!("hoist-{self_pid}-builder"));
        match std::fs::create_dir(&leaf) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(self.error(&leaf, e)),
        }
        let procs = leaf.join("cgroup.procs");
        std::fs::write(&procs, &me).map_err(|e| self.error(&procs, e))
    }

    fn read(&self, path: &Path) -> Result<String, SandboxError> {
        std::fs::read_to_string(path).map_err(|e| self.error(path, e))
    }

    /// An I/O error on the cgroupfs, with what a rootless user must do
    /// when it is a matter of permission.
    fn error(&self, path: &Path, e: std::io::Error) -> SandboxError {
        let denied = matches!(
            e.raw_os_error(),
            Some(libc::EACCES | libc::EPERM | libc::EROFS | libc::ENOENT)
        );
        if self.rootless && denied {
            SandboxError::Cgroup(format!(
                "{}: {e}: resource limits for a rootless builder need a cgroup v2 subtree \
                 delegated to the user, as systemd gives one: run `systemd-run --user --scope \
                 -p Delegate=yes hoist ...`",
                path.display()
            ))
        } else {
            SandboxError::Cgroup(format!("{}: {e}", path.display()))
        }
    }
}

/// The builder's cgroup in the v2 hierarchy, relative to its root: the
/// `0::` line of /proc/self/cgroup.
fn own_cgroup_v2(proc_self_cgroup: &str) -> Option<PathBuf> {
    proc_self_cgroup
        .lines()
        .find_map(|l| l.strip_prefix("0::"))
        .map(|p| PathBuf::from(p.trim().trim_start_matches('/')))
}

/// Where a run's cgroup goes, relative to the hierarchy's root:
/// `--cgroup-parent` absolute from the root, relative from the builder's
/// cgroup, or the builder's cgroup itself. `..` is refused.
fn parent_path(own: &Path, parent: Option<&str>) -> Result<PathBuf, SandboxError> {
    let own = own.strip_prefix("/").unwrap_or(own);
    let path = match parent {
        Some(p) if p.starts_with('/') => PathBuf::from(p.trim_start_matches('/')),
        Some(p) => own.join(p),
        None => own.to_owned(),
    };
    if path
        .components()
        .any(|c| !matches!(c, Component::Normal(_)))
    {
        return Err(SandboxError::Cgroup(format!(
            "invalid --cgroup-parent {:?}",
            parent.unwrap_or_default()
        )));
    }
    Ok(path.components().collect())
}

impl Drop for RunCgroup {
    /// Removes the cgroups once the kernel has reaped every process of the
    /// run (PID 1's exit kills the rest of its namespace asynchronously).
    fn drop(&mut self) {
        for dir in &self.dirs {
            for _ in 0..5000 {
                match std::fs::remove_dir(dir) {
                    Ok(()) => break,
                    Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {
                        std::thread::sleep(std::time::Duration::from_millis(1));
                    }
                    Err(_) => break,
                }
            }
        }
    }
}

/// Removes the run cgroups of builders that are gone (a SIGKILLed builder
/// cannot remove its own), once per parent directory and process.
fn sweep_stale(parent: &Path) {
    static SWEPT: std::sync::Mutex<Vec<PathBuf>> = std::sync::Mutex::new(Vec::new());
    {
        let mut swept = SWEPT.lock().unwrap_or_else(|e| e.into_inner());
        if swept.iter().any(|p| p == parent) {
            return;
        }
        swept.push(parent.to_owned());
    }
    let Ok(entries) = std::fs::read_dir(parent) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix("hoist-"))
            .and_then(|rest| rest.split('-').next())
            .and_then(|pid| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if !Path::new("/proc").join(pid.to_string()).exists() {
            // Fails harmlessly (EBUSY) if a process still lives in it.
            let _ = std::fs::remove_dir(entry.path());
        }
    }
}

fn is_v1() -> bool {
    Path::new(CGROUP_ROOT).join("pids/cgroup.procs").exists()
        || Path::new(CGROUP_ROOT).join("memory/cgroup.procs").exists()
}

/// The builder's own cgroup in a v1 hierarchy, relative to its root, from
/// /proc/self/cgroup.
fn own_cgroup_v1(controller: &str) -> Result<PathBuf, SandboxError> {
    let text = read(Path::new("/proc/self/cgroup"))?;
    let path = text
        .lines()
        .filter_map(|l| {
            let mut parts = l.splitn(3, ':');
            let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
            controllers
                .split(',')
                .any(|c| c == controller)
                .then_some(path)
        })
        .next()
        .unwrap_or("/");
    Ok(PathBuf::from(path.trim_start_matches('/')))
}

fn read(path: &Path) -> Result<String, SandboxError> {
    std::fs::read_to_string(path).map_err(SandboxError::io(path))
}

fn write(path: &Path, value: &str) -> Result<(), SandboxError> {
    std::fs::write(path, value)
        .map_err(|e| SandboxError::Cgroup(format!("writing {value:?} to {}: {e}", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_shares_become_runcs_cpu_weight() {
        // runc 1.3's table: the minimum, default and maximum map onto each
        // other; 0 stays unset.
        for (shares, weight) in [
            (0, 0),
            (1, 1),
            (2, 1),
            (3, 2),
            (10, 4),
            (100, 17),
            (512, 59),
            (1024, 100),
            (2048, 174),
            (4096, 303),
            (100_000, 4340),
            (262_143, 10_000),
            (262_144, 10_000),
            (1_000_000, 10_000),
        ] {
            assert_eq!(cpu_weight(shares), weight, "shares {shares}");
        }
    }

    #[test]
    fn memory_swap_is_docker_s_total_and_runc_s_extra() {
        const M: u64 = 64 << 20;
        for (swap, want) in [
            (None, Some(Swap::Extra(M))),
            (Some(0), Some(Swap::Extra(M))),
            (Some(-1), Some(Swap::Unlimited)),
            (Some(M as i64), Some(Swap::Extra(0))),
            (Some(3 * M as i64), Some(Swap::Extra(2 * M))),
            (Some(M as i64 - 1), None),
            (Some(-2), None),
        ] {
            assert_eq!(memory_swap(M, swap).ok(), want, "--memory-swap {swap:?}");
        }
        let err = memory_swap(M, Some(1)).unwrap_err().to_string();
        assert!(
            err.contains("--memory-swap 1 must be at least --memory"),
            "{err}"
        );
    }

    #[test]
    fn cpu_quota_and_period_become_cpu_max() {
        for (quota, period, want) in [
            (None, None, None),
            (Some(50_000), None, Some("50000 100000")),
            (Some(50_000), Some(200_000), Some("50000 200000")),
            (None, Some(50_000), Some("max 50000")),
            (Some(-1), Some(20_000), Some("max 20000")),
            (Some(0), None, Some("max 100000")),
        ] {
            assert_eq!(
                cpu_max(quota, period).as_deref(),
                want,
                "quota {quota:?} period {period:?}"
            );
        }
    }

    #[test]
    fn cgroup_parent_is_absolute_from_the_root_or_relative_to_the_builder() {
        let own = Path::new("system.slice/hoist.service");
        for (parent, want) in [
            (None, Some("system.slice/hoist.service")),
            (Some("/ci/jobs"), Some("ci/jobs")),
            (Some("jobs"), Some("system.slice/hoist.service/jobs")),
            (Some("../escape"), None),
            (Some("/a/../../b"), None),
            (Some("a/./b"), Some("system.slice/hoist.service/a/b")),
        ] {
            assert_eq!(
                parent_path(own, parent)
                    .ok()
                    .map(|p| p.to_string_lossy().into_owned()),
                want.map(str::to_owned),
                "--cgroup-parent {parent:?}"
            );
        }
    }

    #[test]
    fn own_v2_cgroup_is_the_0_line() {
        let text = "12:pids:/a\n0::/user.slice/user-1000.slice/session-2.scope\n";
        assert_eq!(
            own_cgroup_v2(text),
            Some(PathBuf::from("user.slice/user-1000.slice/session-2.scope"))
        );
        assert_eq!(own_cgroup_v2("0::/\n"), Some(PathBuf::new()));
        assert_eq!(own_cgroup_v2("4:memory:/x\n"), None);
    }

    #[test]
    fn v1_view_binds_the_runs_cgroup_else_the_builders() {
        let mountinfo = "\
            25 24 0:22 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:9 - tmpfs tmpfs ro,mode=755\n\
            26 25 0:23 / /sys/fs/cgroup/unified rw,nosuid shared:10 - cgroup2 cgroup2 rw\n\
            27 25 0:24 / /sys/fs/cgroup/systemd rw,nosuid shared:11 - cgroup cgroup rw,xattr,name=systemd\n\
            28 25 0:25 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid shared:12 - cgroup cgroup rw,cpu,cpuacct\n\
            29 25 0:26 / /sys/fs/cgroup/memory rw,nosuid shared:13 - cgroup cgroup rw,memory\n\
            30 1 0:27 / /mnt/elsewhere rw - cgroup cgroup rw,pids\n";
        let own = "4:memory:/build\n3:cpu,cpuacct:/build/cpu\n1:name=systemd:/user.slice\n0::/\n";
        let run = [PathBuf::from("/sys/fs/cgroup/memory/build/hoist-1-0")];
        assert_eq!(
            v1_hierarchies(mountinfo, own, &run),
            vec![
                (
                    "systemd".to_owned(),
                    PathBuf::from("/sys/fs/cgroup/systemd/user.slice")
                ),
                (
                    "cpu,cpuacct".to_owned(),
                    PathBuf::from("/sys/fs/cgroup/cpu,cpuacct/build/cpu")
                ),
                (
                    "memory".to_owned(),
                    PathBuf::from("/sys/fs/cgroup/memory/build/hoist-1-0")
                ),
            ]
        );
    }

    /// A temporary directory laid out like a cgroup2 mount: each level has
    /// `cgroup.controllers`, `cgroup.subtree_control` and `cgroup.procs`.
    struct FakeCgroupFs {
        dir: tempfile::TempDir,
    }

    impl FakeCgroupFs {
        fn new(levels: &[(&str, &str)]) -> Self {
            let dir = tempfile::tempdir().unwrap();
            for (level, controllers) in levels {
                let path = dir.path().join(level);
                std::fs::create_dir_all(&path).unwrap();
                std::fs::write(path.join("cgroup.controllers"), controllers).unwrap();
                std::fs::write(path.join("cgroup.subtree_control"), "").unwrap();
                std::fs::write(path.join("cgroup.procs"), "").unwrap();
            }
            Self { dir }
        }

        fn unified(&self, own: &str, rootless: bool) -> Unified {
            Unified {
                root: self.dir.path().to_owned(),
                own: PathBuf::from(own),
                rootless,
            }
        }

        fn read(&self, rel: impl AsRef<Path>) -> String {
            let path = self.dir.path().join(rel);
            std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        }
    }

    const ALL: &str = "cpuset cpu io memory hugetlb pids rdma misc";

    #[test]
    fn r10_v2_limits_are_written_as_runc_writes_them() {
        let fs = FakeCgroupFs::new(&[
            ("", ALL),
            ("system.slice", ALL),
            ("system.slice/hoist.service", ALL),
        ]);
        let h = fs.unified("system.slice/hoist.service", false);
        let resources = Resources {
            memory: Some(64 << 20),
            memory_swap: Some(96 << 20),
            cpu_shares: Some(512),
            cpu_quota: Some(50_000),
            cpu_period: Some(100_000),
            cpuset_cpus: Some("0-1".into()),
            pids_limit: Some(100),
            ..Resources::default()
        };
        let cg = h.prepare(&resources, false, "hoist-1-0", 1).unwrap();
        let leaf = "system.slice/hoist.service/hoist-1-0";
        for (file, want) in [
            ("memory.max", "67108864"),
            ("memory.swap.max", "33554432"),
            ("cpu.weight", "59"),
            ("cpu.max", "50000 100000"),
            ("cpuset.cpus", "0-1"),
            ("pids.max", "100"),
        ] {
            assert_eq!(fs.read(format!("{leaf}/{file}")), want, "{file}");
        }
        // Every level above the leaf passes the controllers down, in one
        // write each.
        for level in ["", "system.slice", "system.slice/hoist.service"] {
            assert_eq!(
                fs.read(Path::new(level).join("cgroup.subtree_control")),
                "+cpu +cpuset +memory +pids",
                "level {level:?}"
            );
        }
        assert_eq!(cg.dirs, vec![fs.dir.path().join(leaf)]);
        cg.attach(Pid::from_raw(4242).unwrap()).unwrap();
        assert_eq!(fs.read(format!("{leaf}/cgroup.procs")), "4242");
    }

    #[test]
    fn r10_v2_defaults_are_the_pids_limit_only() {
        let fs = FakeCgroupFs::new(&[("", ALL), ("b", ALL)]);
        let cg = fs
            .unified("b", false)
            .prepare(&Resources::default(), false, "hoist-1-0", 1)
            .unwrap();
        assert_eq!(fs.read("b/hoist-1-0/pids.max"), "4096");
        assert_eq!(fs.read("b/cgroup.subtree_control"), "+pids");
        assert!(cg.memory.is_none());
        let names: Vec<_> = std::fs::read_dir(fs.dir.path().join("b/hoist-1-0"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names, ["pids.max"]);

        // A cgroup that cannot pass pids down: the run's cgroup has no
        // controller (it still gets the device rules).
        let fs = FakeCgroupFs::new(&[("", ALL), ("b", "memory")]);
        let cg = fs
            .unified("b", false)
            .prepare(&Resources::default(), false, "hoist-1-0", 1)
            .unwrap();
        assert_eq!(cg.dirs, vec![fs.dir.path().join("b/hoist-1-0")]);
        assert!(!fs.dir.path().join("b/hoist-1-0/pids.max").exists());
        assert_eq!(fs.read("b/cgroup.subtree_control"), "");

        // Without a pids controller (a hybrid host's cgroup2), nothing.
        let fs = FakeCgroupFs::new(&[("", "hugetlb"), ("b", "hugetlb")]);
        fs.unified("b", false)
            .prepare(&Resources::default(), false, "hoist-1-0", 1)
            .unwrap();
        assert_eq!(fs.read("b/cgroup.subtree_control"), "");
    }

    #[test]
    fn r10_v2_cgroup_parent_places_the_run() {
        let fs = FakeCgroupFs::new(&[("", ALL), ("own", ALL), ("ci", ALL), ("own/jobs", ALL)]);
        let h = fs.unified("own", false);
        let run = |parent: &str| {
            let resources = Resources {
                cgroup_parent: Some(parent.into()),
                pids_limit: Some(10),
                ..Resources::default()
            };
            h.prepare(&resources, false, "hoist-1-0", 1)
        };
        let cg = run("/ci").unwrap();
        assert_eq!(cg.dirs, vec![fs.dir.path().join("ci/hoist-1-0")]);
        drop(cg);
        let cg = run("jobs").unwrap();
        assert_eq!(cg.dirs, vec![fs.dir.path().join("own/jobs/hoist-1-0")]);
        drop(cg);
        let err = run("../x").unwrap_err().to_string();
        assert_eq!(err, "cgroup: invalid --cgroup-parent \"../x\"");
    }

    #[test]
    fn r10_v2_missing_controller_is_named() {
        let fs = FakeCgroupFs::new(&[("", "cpu memory pids"), ("u", "memory pids")]);
        let resources = Resources {
            cpu_shares: Some(512),
            ..Resources::default()
        };
        let err = fs
            .unified("u", true)
            .prepare(&resources, false, "hoist-1-0", 1)
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with(&format!(
                "cgroup: the cpu controller is not available in {}/u (cgroup.controllers: \
                 \"memory pids\")",
                fs.dir.path().display()
            )),
            "{err}"
        );
        assert!(err.contains("Delegate="), "{err}");
        // Nothing was made.
        assert!(!fs.dir.path().join("u/hoist-1-0").exists());
    }

    #[test]
    fn r10_v2_swap_without_memory_is_refused() {
        let fs = FakeCgroupFs::new(&[("", ALL)]);
        let resources = Resources {
            memory_swap: Some(1 << 30),
            ..Resources::default()
        };
        let err = fs
            .unified("", false)
            .prepare(&resources, false, "n", 1)
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "cgroup: --memory-swap needs --memory as well"
        );
    }

    #[test]
    fn r10_v2_oom_kill_is_read_from_memory_events() {
        let dir = tempfile::tempdir().unwrap();
        let cg = RunCgroup {
            dirs: Vec::new(),
            memory: Some(MemoryFiles::V2(dir.path().to_owned())),
        };
        std::fs::write(dir.path().join("memory.max"), "33554432\n").unwrap();
        for (events, killed) in [
            (
                "low 0\nhigh 0\nmax 12\noom 1\noom_kill 0\noom_group_kill 0\n",
                false,
            ),
            (
                "low 0\nhigh 0\nmax 40\noom 1\noom_kill 1\noom_group_kill 0\n",
                true,
            ),
        ] {
            std::fs::write(dir.path().join("memory.events"), events).unwrap();
            assert_eq!(cg.oom_killed(), killed, "{events}");
        }
        assert_eq!(cg.memory_limit(), Some(32 << 20));
    }

    /// A rootless builder whose cgroup is not delegated (here: one that
    /// cannot be created at all) is told how to get one.
    #[test]
    fn r10_rootless_without_delegation_says_how_to_get_it() {
        let h = Unified {
            root: PathBuf::from("/proc"),
            own: PathBuf::from("hoist-no-such-cgroup"),
            rootless: true,
        };
        let resources = Resources {
            cgroup_parent: Some("x".into()),
            ..Resources::default()
        };
        let err = h
            .prepare(&resources, false, "n", 1)
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("cgroup: /proc/hoist-no-such-cgroup: "),
            "{err}"
        );
        assert!(
            err.contains("need a cgroup v2 subtree delegated to the user")
                && err.contains("systemd-run --user --scope -p Delegate=yes"),
            "{err}"
        );
    }

    /// The host's cgroup2 mount: /sys/fs/cgroup on a v2 host, or a hybrid
    /// host's /sys/fs/cgroup/unified. The real-kernel tests below need one.
    fn real_cgroup2() -> PathBuf {
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        mountinfo
            .lines()
            .find_map(|l| {
                let (left, right) = l.split_once(" - ")?;
                (right.split(' ').next() == Some("cgroup2")).then(|| left.split(' ').nth(4))?
            })
            .map(PathBuf::from)
            .expect("these tests need a cgroup2 mount (cgroup v2, or a hybrid host's unified)")
    }

    /// A cgroup of the test's own under the real hierarchy's root,
    /// removed (with its children) at the end.
    struct TestCgroup {
        root: PathBuf,
        rel: String,
        children: Vec<std::process::Child>,
    }

    impl TestCgroup {
        fn new(root: &Path, tag: &str) -> Self {
            let rel = format!("hoist-test-{}-{tag}", std::process::id());
            std::fs::create_dir(root.join(&rel)).unwrap();
            Self {
                root: root.to_owned(),
                rel,
                children: Vec::new(),
            }
        }

        fn path(&self) -> PathBuf {
            self.root.join(&self.rel)
        }

        /// A `sleep` process, started here and moved into this cgroup.
        fn sleeper(&mut self) -> u32 {
            let child = std::process::Command::new("sleep")
                .arg("60")
                .spawn()
                .unwrap();
            let pid = child.id();
            self.children.push(child);
            std::fs::write(self.path().join("cgroup.procs"), pid.to_string()).unwrap();
            pid
        }
    }

    impl Drop for TestCgroup {
        fn drop(&mut self) {
            for child in &mut self.children {
                let _ = child.kill();
                let _ = child.wait();
            }
            let mut dirs: Vec<PathBuf> = walk(&self.path());
            dirs.sort_by_key(|d| std::cmp::Reverse(d.components().count()));
            for dir in dirs {
                for _ in 0..1000 {
                    match std::fs::remove_dir(&dir) {
                        Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {
                            std::thread::sleep(std::time::Duration::from_millis(2));
                        }
                        _ => break,
                    }
                }
            }
        }
    }

    fn walk(dir: &Path) -> Vec<PathBuf> {
        let mut out = vec![dir.to_owned()];
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                out.extend(walk(&entry.path()));
            }
        }
        out
    }

    fn cgroup_of(pid: u32) -> String {
        let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
        own_cgroup_v2(&text).unwrap().to_string_lossy().into_owned()
    }

    /// On the real cgroup2 hierarchy: the run cgroup is made under the
    /// builder's, a real process is moved in, and the cgroup is removed
    /// once the process is gone.
    #[test]
    fn r10_v2_run_cgroup_on_the_real_hierarchy() {
        let root = real_cgroup2();
        let mut test = TestCgroup::new(&root, "run");
        let h = Unified {
            root: root.clone(),
            own: PathBuf::from(&test.rel),
            rootless: false,
        };
        // No controller is needed: this works on a hybrid host's cgroup2
        // too (a v2 host also gets its pids limit).
        let cg = h
            .prepare(&Resources::default(), true, "hoist-1-0", 1)
            .unwrap();
        let leaf = test.path().join("hoist-1-0");
        assert_eq!(cg.dirs, vec![leaf.clone()]);
        let child = std::process::Command::new("sleep")
            .arg("60")
            .spawn()
            .unwrap();
        let pid = child.id();
        test.children.push(child);
        cg.attach(Pid::from_raw(pid as i32).unwrap()).unwrap();
        assert_eq!(cgroup_of(pid), format!("{}/hoist-1-0", test.rel));
        assert_eq!(
            std::fs::read_to_string(leaf.join("cgroup.procs")).unwrap(),
            format!("{pid}\n")
        );
        for child in &mut test.children {
            child.kill().unwrap();
            child.wait().unwrap();
        }
        drop(cg);
        assert!(!leaf.exists(), "the run's cgroup is removed");
    }

    /// A shell in `cgroup` (of the real hierarchy), released once moved in,
    /// that opens an allowed device (/dev/null, 1:3) and one outside
    /// Docker's list (/dev/kmsg, 1:11).
    fn open_devices_in(cgroup: &Path) -> String {
        use std::io::Write;
        let mut child = std::process::Command::new("sh")
            .arg("-c")
            .arg(
                "read _; true </dev/null && echo null-ok; \
                 true </dev/kmsg 2>/dev/null && echo kmsg-ok || echo kmsg-denied",
            )
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        std::fs::write(cgroup.join("cgroup.procs"), child.id().to_string()).unwrap();
        child.stdin.take().unwrap().write_all(b"go\n").unwrap();
        let out = child.wait_with_output().unwrap();
        String::from_utf8(out.stdout).unwrap()
    }

    /// On the real hierarchy: the run cgroup's eBPF device program lets
    /// Docker's default devices open and nothing else; without it the same
    /// process opens both (so the program is what denies).
    #[test]
    fn r10_v2_device_rules_deny_other_devices() {
        let root = real_cgroup2();
        let test = TestCgroup::new(&root, "devices");
        let h = Unified {
            root: root.clone(),
            own: PathBuf::from(&test.rel),
            rootless: false,
        };
        let ruled = h.prepare(&Resources::default(), true, "ruled", 1).unwrap();
        let open = h.prepare(&Resources::default(), false, "open", 1).unwrap();
        let (ruled_dir, open_dir) = (ruled.dirs[0].clone(), open.dirs[0].clone());
        assert_eq!(open_devices_in(&ruled_dir), "null-ok\nkmsg-denied\n");
        assert_eq!(open_devices_in(&open_dir), "null-ok\nkmsg-ok\n");
        drop((ruled, open, test));
    }

    /// A domain controller the real hierarchy's root offers, enabled in
    /// the root for the test if it was not (and disabled again after).
    struct RootController {
        root: PathBuf,
        name: &'static str,
        enabled_here: bool,
    }

    impl RootController {
        fn any(root: &Path) -> Self {
            let available = std::fs::read_to_string(root.join("cgroup.controllers")).unwrap();
            let name = ["memory", "io", "hugetlb", "rdma", "misc"]
                .into_iter()
                .find(|c| available.split_whitespace().any(|a| a == *c))
                .unwrap_or_else(|| {
                    panic!("this test needs a domain controller in {}", root.display())
                });
            let control = root.join("cgroup.subtree_control");
            let enabled = std::fs::read_to_string(&control).unwrap();
            let enabled_here = !enabled.split_whitespace().any(|c| c == name);
            if enabled_here {
                std::fs::write(&control, format!("+{name}")).unwrap();
            }
            Self {
                root: root.to_owned(),
                name,
                enabled_here,
            }
        }
    }

    impl Drop for RootController {
        fn drop(&mut self) {
            if self.enabled_here {
                let control = self.root.join("cgroup.subtree_control");
                let _ = std::fs::write(control, format!("-{}", self.name));
            }
        }
    }

    /// On the real hierarchy: a builder alone in its cgroup moves itself
    /// into a leaf so that its cgroup may pass a domain controller down
    /// (the kernel refuses with EBUSY while it holds a process); with
    /// another process beside it, that is refused with a clear error.
    #[test]
    fn r10_v2_builder_leaves_its_cgroup_to_pass_controllers_down() {
        let root = real_cgroup2();
        let controller = RootController::any(&root);
        let mut alone = TestCgroup::new(&root, "alone");
        let builder = alone.sleeper();
        let h = Unified {
            root: root.clone(),
            own: PathBuf::from(&alone.rel),
            rootless: false,
        };
        h.enable(Path::new(&alone.rel), &[controller.name], builder)
            .unwrap();
        assert_eq!(
            cgroup_of(builder),
            format!("{}/hoist-{builder}-builder", alone.rel)
        );
        let control = std::fs::read_to_string(alone.path().join("cgroup.subtree_control")).unwrap();
        assert_eq!(control.trim(), controller.name);

        let mut shared = TestCgroup::new(&root, "shared");
        let builder = shared.sleeper();
        let other = shared.sleeper();
        let h = Unified {
            own: PathBuf::from(&shared.rel),
            ..h
        };
        let err = h
            .enable(Path::new(&shared.rel), &[controller.name], builder)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("holds 1 other process(es) besides the builder"),
            "{err}"
        );
        assert_eq!(cgroup_of(builder), shared.rel);
        assert_eq!(cgroup_of(other), shared.rel);
        drop((alone, shared));
    }
}
