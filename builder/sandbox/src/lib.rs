//! hoist-sandbox: the RUN sandbox, one short-lived, namespaced process per step, on an
//! overlayfs root, behind the small [`Sandbox`] trait so that the builder's
//! logic can be tested with a fake (like BuildKit's `Executor` or youki's
//! `Syscall`). The real one is [`NamespaceSandbox`].
//!
//! It is a crate of its own (as youki keeps `libcontainer` apart) so that the
//! security-critical code is in one place and depends on nothing else of
//! hoist. This is the only crate of hoist allowed `unsafe` (clone, exec,
//! signal handlers, a few raw syscalls, among them the priority of
//! [`spawn_idle`]'s background threads); every block carries a
//! `// SAFETY:` comment.
//!
//! Shape of a run (`namespace.rs`): the parent turns the [`RunSpec`] into a
//! precomputed plan (`plan.rs`), clones one child into new mount, PID, UTS
//! and IPC namespaces (plus network for `--network=none`, plus user when
//! rootless), writes its ID maps when rootless, moves it into its cgroup
//! (`cgroup.rs`), then streams its output. The child (`child.rs`), which only
//! makes raw syscalls on that plan because the builder may be
//! multi-threaded:
//! - makes every mount private and mounts a tmpfs over the sandbox's state
//!   dir for its scratch files (overlay mount point, generated /etc files,
//!   ephemeral upperdirs), so a run writes nothing to the host's disk;
//! - mounts the overlay (`lowerdir+` through fsconfig when the options do
//!   not fit in a page), proc and sysfs, takes detached copies of the host
//!   paths it binds (devices, /etc files, `--mount`s), then pivot_roots and
//!   detaches the old root, and only then attaches the binds, so that every
//!   target path resolves inside the new root;
//! - builds /dev on tmpfs, masks and write-protects /proc like Docker,
//!   creates missing mount points as stubs that the parent removes from the
//!   upperdir afterwards when still empty (BuildKit's MountStubsCleaner);
//! - waits for the parent to have moved it into its cgroup (at the start
//!   when it has a new user namespace, whose ID maps come first; else as
//!   late as the mounts allow, so that the two work at once), then makes
//!   its cgroup namespace, rooted at the run's cgroup;
//! - creates the working directory owned by the user, drops to Docker's
//!   default capabilities, sets groups/gid/uid, re-arms PR_SET_PDEATHSIG,
//!   leaves only fds 0-2 open across exec and execs `argv[0]` as found in the
//!   spec's PATH.
//!
//! The command is PID 1 itself, as runc makes it for BuildKit's RUN: no init
//! of ours to forward signals or reap. A RUN's orphans are reaped by its
//! shell or, when PID 1 exits, killed and reaped by the kernel with the
//! whole PID namespace; the builder only ever sends SIGKILL, which PID 1
//! cannot ignore from outside. Nothing is mounted in the builder's
//! namespace (except by [`mount_overlay`], for COPY), so a killed run leaks
//! no mount; and the builder's namespace is itself a private one
//! ([`enter_namespaces`], `process.rs`), so a killed builder leaks none
//! either.
//!
//! Rootless, the builder re-executes itself in a user namespace of its own
//! where it is root ([`enter_namespaces`]); runs then stay in that
//! namespace rather than making one each (`IdMap::Inherited`), and every
//! overlay is mounted with `userxattr`. Lowerdirs must be owned by IDs
//! mapped in that namespace (files with unmapped owners cannot be copied
//! up), and overlay then reads `user.overlay.opaque`.

#![allow(unsafe_code)]

mod cgroup;
mod child;
mod devices;
mod error;
mod etc;
pub mod fake;
mod idmap;
mod interrupt;
mod io;
mod namespace;
mod overlay;
mod plan;
mod priority;
mod process;
mod seccomp;
mod spec;
mod stubs;
mod xattr;

use std::process::ExitStatus;

pub use cgroup::DEFAULT_PIDS_LIMIT;
pub use error::SandboxError;
pub use etc::{hosts as hosts_file, resolv_conf};
pub use idmap::in_user_namespace;
pub use interrupt::cancel_on_interrupt;
pub use io::{CollectIo, RunIo, Stdin};
pub use namespace::{CancelHandle, NamespaceSandbox};
pub use overlay::{MountGuard, mount_overlay, mount_overlay_read_only, remove_workdir};
pub use priority::spawn_idle;
pub use process::{Entered, enter_namespaces, isolate_mounts, running_as_root};
pub use seccomp::{ArchMap, RuleFilter, SeccompProfile, SyscallArg, SyscallRule};
pub use spec::{
    BUILD_HOSTNAME, DEFAULT_PATH, EtcFiles, IdMapping, Mount, MountKind, Network, Resources,
    Rootfs, RunSpec, Security, Ulimit, User,
};
pub use xattr::list_xattrs_at;

/// The rlimit a Docker `--ulimit` name sets.
pub(crate) fn cgroup_resource(name: &str) -> Option<rustix::process::Resource> {
    use rustix::process::Resource as R;
    Some(match name {
        "core" => R::Core,
        "cpu" => R::Cpu,
        "data" => R::Data,
        "fsize" => R::Fsize,
        "locks" => R::Locks,
        "memlock" => R::Memlock,
        "msgqueue" => R::Msgqueue,
        "nice" => R::Nice,
        "nofile" => R::Nofile,
        "nproc" => R::Nproc,
        "rss" => R::Rss,
        "rtprio" => R::Rtprio,
        "rttime" => R::Rttime,
        "sigpending" => R::Sigpending,
        "stack" => R::Stack,
        "as" => R::As,
        _ => return None,
    })
}

/// Runs one command to completion in an isolated root filesystem.
///
/// A command that runs and fails is `Ok` with its status; `Err` means it
/// could not run (setup failed, the program was not found, cancelled).
pub trait Sandbox: Send + Sync {
    fn run(&self, spec: &RunSpec, io: &mut dyn RunIo) -> Result<ExitStatus, SandboxError>;
}
