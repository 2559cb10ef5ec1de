//! What one sandboxed run needs: the root filesystem, the process and its
//! surroundings. Everything here is already resolved by the caller (user
//! names, env order, PATH), so the sandbox never reads the image's config.

use std::ffi::OsString;
use std::path::PathBuf;
use std::sync::Arc;

use crate::seccomp::SeccompProfile;

/// The search path Docker uses when the image's env has no `PATH`.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The hostname BuildKit gives RUN steps.
pub const BUILD_HOSTNAME: &str = "buildkitsandbox";

/// One sandboxed process: `args` run in `rootfs` as `user` in `cwd`.
#[derive(Debug, Clone)]
pub struct RunSpec {
    pub rootfs: Rootfs,
    /// argv; `args[0]` is looked up in the `PATH` of `env` inside the new root.
    /// No shell is added. Bytes, not text: a Dockerfile that is not UTF-8
    /// hands its bytes to the process unchanged, as BuildKit does.
    pub args: Vec<OsString>,
    /// `KEY=VALUE` entries in the order the process sees them (bytes, as
    /// `args`).
    pub env: Vec<OsString>,
    /// Absolute working directory inside the root; created (owned by `user`)
    /// when missing.
    pub cwd: String,
    pub user: User,
    pub hostname: String,
    pub network: Network,
    /// Extra mounts (RUN --mount, `hoist run -v`), applied in order.
    pub mounts: Vec<Mount>,
    pub etc: EtcFiles,
    /// `Some` runs in a new user namespace (rootless); `None` runs with the
    /// caller's (root) credentials in the initial user namespace.
    pub rootless: Option<IdMapping>,
    /// Seccomp, no_new_privs and capabilities: Docker's defaults unless
    /// the caller chooses otherwise.
    pub security: Security,
    /// cgroup limits, rlimits and the size of /dev/shm.
    pub resources: Resources,
}

impl RunSpec {
    /// A spec with Docker's defaults for a RUN step: root, `/`, host network,
    /// the BuildKit hostname and generated hosts/resolv.conf files; rootless
    /// (a user namespace) exactly when the builder does not run as root.
    pub fn new(rootfs: Rootfs, args: Vec<String>) -> Self {
        let network = Network::Host;
        Self {
            rootfs,
            args: args.into_iter().map(OsString::from).collect(),
            env: vec![format!("PATH={DEFAULT_PATH}").into()],
            cwd: "/".to_owned(),
            user: User::ROOT,
            hostname: BUILD_HOSTNAME.to_owned(),
            etc: EtcFiles::generated(BUILD_HOSTNAME, network),
            network,
            mounts: Vec::new(),
            rootless: IdMapping::for_current_user(),
            security: Security::default(),
            resources: Resources::default(),
        }
    }
}

/// The root filesystem of a run.
#[derive(Debug, Clone)]
pub enum Rootfs {
    /// An overlay whose upperdir receives the changes (the next layer).
    /// `lowerdirs` are top-most first; `workdir` must be an empty directory
    /// on the same filesystem as `upperdir`.
    Overlay {
        lowerdirs: Vec<PathBuf>,
        upperdir: PathBuf,
        workdir: PathBuf,
    },
    /// An overlay with a throwaway upperdir inside the sandbox's temp dir
    /// (`hoist run`). With `read_only` the root is remounted read-only once
    /// the sandbox is set up, like `docker run --read-only`.
    Ephemeral {
        lowerdirs: Vec<PathBuf>,
        read_only: bool,
    },
    /// A plain directory, bound (recursively) as the root and written to in
    /// place: the native snapshotter's root, for when overlayfs cannot be
    /// mounted (BuildKit's `native` snapshotter).
    Directory { path: PathBuf },
}

impl Rootfs {
    /// A plain root filesystem directory, seen read-only and never modified.
    pub fn read_only(dir: impl Into<PathBuf>) -> Self {
        Rootfs::Ephemeral {
            lowerdirs: vec![dir.into()],
            read_only: true,
        }
    }

    pub(crate) fn lowerdirs(&self) -> &[PathBuf] {
        match self {
            Rootfs::Overlay { lowerdirs, .. } | Rootfs::Ephemeral { lowerdirs, .. } => lowerdirs,
            Rootfs::Directory { .. } => &[],
        }
    }
}

/// Numeric credentials, already resolved from the image's passwd/group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub uid: u32,
    pub gid: u32,
    /// Supplementary groups; the process gets exactly these.
    pub additional_gids: Vec<u32>,
}

impl User {
    pub const ROOT: User = User {
        uid: 0,
        gid: 0,
        additional_gids: Vec::new(),
    };
}

/// Docker's `--network`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Network {
    /// The builder's own network namespace (Docker's default for builds).
    Host,
    /// A new network namespace with only loopback, up.
    None,
}

/// An extra mount inside the sandbox.
#[derive(Debug, Clone)]
pub struct Mount {
    /// Absolute path inside the root. A missing target is created and
    /// removed again after the run when it is still empty (BuildKit's
    /// mount stubs), so it does not end up in the layer.
    pub target: String,
    pub kind: MountKind,
}

#[derive(Debug, Clone)]
pub enum MountKind {
    /// A bind mount of a host file or directory (recursive).
    Bind { source: PathBuf, read_only: bool },
    /// A fresh tmpfs.
    Tmpfs { size_bytes: Option<u64>, mode: u32 },
}

/// The generated files bind-mounted over `/etc/hosts`, `/etc/resolv.conf`
/// and `/etc/hostname`. `None` leaves the image's file alone. They live in
/// the sandbox's temp dir, so writes to them never reach the layer.
#[derive(Debug, Clone)]
pub struct EtcFiles {
    pub hosts: Option<String>,
    pub resolv_conf: Option<String>,
    pub hostname: Option<String>,
    /// BuildKit mounts them read-only for RUN; `docker run` makes them writable.
    pub read_only: bool,
}

impl EtcFiles {
    /// BuildKit's files for a RUN step: `localhost` plus the hostname, the
    /// host's resolv.conf (without loopback resolvers unless the network is
    /// the host's), and the hostname.
    pub fn generated(hostname: &str, network: Network) -> Self {
        let host_resolv = fs_err::read_to_string("/etc/resolv.conf").unwrap_or_default();
        Self {
            hosts: Some(crate::etc::hosts(hostname)),
            resolv_conf: Some(crate::etc::resolv_conf(&host_resolv, network)),
            hostname: Some(format!("{hostname}\n")),
            read_only: true,
        }
    }

    /// No generated files: the image's own are used as they are.
    pub fn none() -> Self {
        Self {
            hosts: None,
            resolv_conf: None,
            hostname: None,
            read_only: true,
        }
    }
}

/// How a rootless run maps IDs into its user namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdMapping {
    /// The caller's ranges from /etc/subuid and /etc/subgid through
    /// newuidmap/newgidmap when both exist, else [`IdMapping::SingleId`].
    Auto,
    /// Only uid/gid 0 inside, mapped to the caller. Supplementary groups
    /// cannot be set and other users cannot be used.
    SingleId,
}

impl IdMapping {
    /// `Some(Auto)` when the builder is not root, `None` when it is. Root
    /// of a user namespace counts as root: rootless `hoist` runs in one of
    /// its own (see [`crate::enter_namespaces`]), and its runs stay there
    /// rather than nest another.
    pub fn for_current_user() -> Option<IdMapping> {
        (!rustix::process::geteuid().is_root()).then_some(IdMapping::Auto)
    }
}

/// What the process may do besides what its namespaces confine.
#[derive(Debug, Clone)]
pub struct Security {
    /// The seccomp profile applied just before exec; `None` is
    /// `--security-opt seccomp=unconfined`.
    pub seccomp: Option<Arc<SeccompProfile>>,
    /// PR_SET_NO_NEW_PRIVS before exec (`--security-opt
    /// no-new-privileges`): setuid binaries and file capabilities grant
    /// nothing. Off by default, as in BuildKit's RUN and `docker run`.
    pub no_new_privs: bool,
    /// BuildKit's `RUN --security=insecure`: every capability, no seccomp
    /// filter, no masked or read-only /proc paths, a writable /sys. The
    /// caller checks the `security.insecure` entitlement.
    pub insecure: bool,
    /// `--security-opt systempaths=unconfined` (`docker run`'s): nothing
    /// in /proc is masked or made read-only. A nested runtime (hoist in a
    /// pod) needs it to mount a procfs of its own: the kernel refuses one
    /// in a user namespace while parts of the visible /proc are covered.
    pub unconfined_system_paths: bool,
}

impl Default for Security {
    /// Docker's defaults: its seccomp profile and capabilities.
    fn default() -> Self {
        Self {
            seccomp: Some(SeccompProfile::docker_default()),
            no_new_privs: false,
            insecure: false,
            unconfined_system_paths: false,
        }
    }
}

/// `docker build`'s resource flags. cgroup limits need a root builder on a
/// cgroup v1 host, and a root builder or a delegated cgroup on a v2 host
/// (see `cgroup.rs`); every run where cgroups can be used gets
/// [`crate::DEFAULT_PIDS_LIMIT`] unless `pids_limit` says otherwise.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resources {
    /// `--memory`, bytes.
    pub memory: Option<u64>,
    /// `--memory-swap`: memory plus swap, bytes; -1 for unlimited swap.
    /// Docker's default is twice `memory`.
    pub memory_swap: Option<i64>,
    pub cpu_shares: Option<u64>,
    /// `--cpu-period`, microseconds.
    pub cpu_period: Option<u64>,
    /// `--cpu-quota`, microseconds per period.
    pub cpu_quota: Option<i64>,
    /// `--cpuset-cpus`, as `0-3,5`.
    pub cpuset_cpus: Option<String>,
    /// `--cgroup-parent`: absolute from the hierarchy's root, or relative
    /// to the builder's own cgroup.
    pub cgroup_parent: Option<String>,
    /// Maximum number of processes; 0 or less is unlimited.
    pub pids_limit: Option<i64>,
    /// `--ulimit`.
    pub ulimits: Vec<Ulimit>,
    /// `--shm-size`, bytes (64 MiB by default, as Docker).
    pub shm_size: Option<u64>,
}

impl Resources {
    /// Whether a cgroup limit was asked for explicitly.
    pub fn has_limits(&self) -> bool {
        self.memory.is_some()
            || self.memory_swap.is_some()
            || self.cpu_shares.is_some()
            || self.cpu_period.is_some()
            || self.cpu_quota.is_some()
            || self.cpuset_cpus.is_some()
            || self.cgroup_parent.is_some()
            || self.pids_limit.is_some()
    }
}

/// One `--ulimit NAME=SOFT[:HARD]`; -1 is unlimited.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ulimit {
    pub name: String,
    pub soft: i64,
    pub hard: i64,
}

impl Ulimit {
    /// Parses Docker's `NAME=SOFT[:HARD]`.
    pub fn parse(spec: &str) -> Result<Self, crate::SandboxError> {
        let bad = || crate::SandboxError::InvalidSpec(format!("invalid ulimit argument: {spec}"));
        let (name, values) = spec.split_once('=').ok_or_else(bad)?;
        let (soft, hard) = match values.split_once(':') {
            Some((s, h)) => (s, h),
            None => (values, values),
        };
        let (soft, hard): (i64, i64) = (
            soft.parse().map_err(|_| bad())?,
            hard.parse().map_err(|_| bad())?,
        );
        if crate::cgroup_resource(name).is_none() {
            return Err(crate::SandboxError::InvalidSpec(format!(
                "invalid ulimit type: {name}"
            )));
        }
        if soft > hard && hard != -1 {
            return Err(crate::SandboxError::InvalidSpec(format!(
                "ulimit soft limit must be less than or equal to hard limit: {soft} > {hard}"
            )));
        }
        Ok(Self {
            name: name.to_owned(),
            soft,
            hard,
        })
    }
}
