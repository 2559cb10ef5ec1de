//! `docker build`'s resource flags for one run, enforced with cgroups.
//!
//! The parent makes one cgroup per run, nested in the builder's own cgroup
//! of each hierarchy (so the builder's own limits and accounting still
//! cover its runs), or under `--cgroup-parent` when given (an absolute path
//! from the hierarchy's root, a relative one from the builder's cgroup);
//! writes the limits; moves the child in before releasing it to exec; and
//! after the run reads the OOM-kill counter and removes the cgroup once its
//! processes are gone.
//!
//! Every run also gets runc's device rules (the devices controller) and
//! the default pids limit. cgroup v1 (the controllers in separate
//! hierarchies) is what runc uses on such hosts. On a unified (v2) host, limits are refused with a clear
//! error: that path is not implemented yet.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use rustix::process::Pid;

use crate::error::SandboxError;
use crate::spec::Resources;

/// The pids limit every run gets where cgroups can be used, unless the
/// caller gives one: a fork bomb stops there instead of at the host's.
pub const DEFAULT_PIDS_LIMIT: i64 = 4096;

const V1_ROOT: &str = "/sys/fs/cgroup";

/// The run's cgroup directories, one per v1 hierarchy it uses.
#[derive(Debug)]
pub(crate) struct RunCgroup {
    dirs: Vec<PathBuf>,
    memory: Option<PathBuf>,
}

impl RunCgroup {
    /// Creates the cgroups with `resources`' limits and moves `pid` in.
    /// `None` when nothing is asked and cgroups cannot be used here
    /// (rootless, or a v2 host): the default pids limit is then skipped.
    pub(crate) fn create(
        resources: &Resources,
        insecure: bool,
        pid: Pid,
    ) -> Result<Option<Self>, SandboxError> {
        let explicit = resources.has_limits();
        if !is_v1() {
            if explicit {
                return Err(SandboxError::Cgroup(
                    "resource limits on a cgroup v2 host are not supported yet".into(),
                ));
            }
            return Ok(None);
        }
        if !rustix::process::geteuid().is_root() || crate::idmap::in_user_namespace() {
            if explicit {
                return Err(SandboxError::Cgroup(
                    "resource limits need a root builder (cgroups are not delegated to \
                     rootless runs)"
                        .into(),
                ));
            }
            return Ok(None);
        }
        match Self::create_v1(resources, insecure, pid) {
            Ok(cg) => Ok(Some(cg)),
            // Only the defaults were asked for, and the cgroupfs is not
            // writable here (a container's read-only /sys/fs/cgroup): run
            // without them rather than not at all.
            Err(_) if !explicit => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn create_v1(resources: &Resources, insecure: bool, pid: Pid) -> Result<Self, SandboxError> {
        static SEQ: AtomicU64 = AtomicU64::new(0);
        let name = format!(
            "hoist-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        );
        let mut cg = RunCgroup {
            dirs: Vec::new(),
            memory: None,
        };
        let pids = resources.pids_limit.unwrap_or(DEFAULT_PIDS_LIMIT);
        // runc's device rules: nothing but Docker's default devices and
        // ptys, so a node made with mknod (CAP_MKNOD) opens nothing else.
        let mut devices = vec![("devices.deny", "a".to_owned())];
        for rule in [
            "c 1:3 rwm",
            "c 1:5 rwm",
            "c 1:7 rwm",
            "c 1:8 rwm",
            "c 1:9 rwm",
            "c 5:0 rwm",
            "c 5:1 rwm",
            "c 5:2 rwm",
            "c 136:* rwm",
            "c *:* m",
            "b *:* m",
        ] {
            devices.push(("devices.allow", rule.to_owned()));
        }
        // BuildKit's insecure mode allows every device.
        if insecure {
            devices.clear();
        }
        let mut wanted: Vec<(&str, Vec<(&str, String)>)> = vec![
            ("devices", devices),
            (
                "pids",
                vec![(
                    "pids.max",
                    if pids <= 0 {
                        "max".to_owned()
                    } else {
                        pids.to_string()
                    },
                )],
            ),
        ];
        if let Some(memory) = resources.memory {
            let mut files = vec![("memory.limit_in_bytes", memory.to_string())];
            // Docker's default: as much swap as memory; -1 is unlimited.
            let memsw = match resources.memory_swap {
                Some(-1) => "-1".to_owned(),
                Some(total) => total.to_string(),
                None => memory.saturating_mul(2).to_string(),
            };
            files.push(("memory.memsw.limit_in_bytes", memsw));
            wanted.push(("memory", files));
        } else if resources.memory_swap.is_some() {
            return Err(SandboxError::Cgroup(
                "--memory-swap needs --memory as well".into(),
            ));
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
            let dir = cg.make_dir(controller, resources.cgroup_parent.as_deref(), &name)?;
            for (file, value) in files {
                let path = dir.join(file);
                if file == "memory.memsw.limit_in_bytes" && !path.exists() {
                    continue; // no swap accounting on this kernel
                }
                write(&path, &value)?;
            }
            if controller == "memory" {
                cg.memory = Some(dir.clone());
            }
            write(&dir.join("cgroup.procs"), &pid.as_raw_nonzero().to_string())?;
        }
        Ok(cg)
    }

    /// `<hierarchy>/<parent>/<name>`, parents created as needed (cpuset
    /// ones get their parent's cpus and mems, which v1 requires).
    fn make_dir(
        &mut self,
        controller: &str,
        parent: Option<&str>,
        name: &str,
    ) -> Result<PathBuf, SandboxError> {
        let hierarchy = Path::new(V1_ROOT).join(controller);
        let base = match parent {
            Some(p) if p.starts_with('/') => hierarchy.join(p.trim_start_matches('/')),
            Some(p) => own_cgroup(&hierarchy, controller)?.join(p),
            None => own_cgroup(&hierarchy, controller)?,
        };
        if base
            .components()
            .any(|c| c == std::path::Component::ParentDir)
        {
            return Err(SandboxError::Cgroup(format!(
                "invalid --cgroup-parent {:?}",
                parent.unwrap_or_default()
            )));
        }
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
        self.dirs.push(dir.clone());
        Ok(dir)
    }

    /// Whether the kernel's OOM killer killed a process of the run.
    pub(crate) fn oom_killed(&self) -> bool {
        let Some(dir) = &self.memory else {
            return false;
        };
        read(&dir.join("memory.oom_control"))
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
        let dir = self.memory.as_ref()?;
        read(&dir.join("memory.limit_in_bytes"))
            .ok()?
            .trim()
            .parse()
            .ok()
    }
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
    Path::new(V1_ROOT).join("pids/cgroup.procs").exists()
        || Path::new(V1_ROOT).join("memory/cgroup.procs").exists()
}

/// The builder's own cgroup in a v1 hierarchy, from /proc/self/cgroup.
fn own_cgroup(hierarchy: &Path, controller: &str) -> Result<PathBuf, SandboxError> {
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
    Ok(hierarchy.join(path.trim_start_matches('/')))
}

fn read(path: &Path) -> Result<String, SandboxError> {
    std::fs::read_to_string(path).map_err(SandboxError::io(path))
}

fn write(path: &Path, value: &str) -> Result<(), SandboxError> {
    std::fs::write(path, value)
        .map_err(|e| SandboxError::Cgroup(format!("writing {value:?} to {}: {e}", path.display())))
}
