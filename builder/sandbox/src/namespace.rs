//! [`NamespaceSandbox`]: one clone(2) per run. The child becomes PID 1 of
//! new mount/PID/UTS/IPC/cgroup namespaces (plus network for
//! `--network=none`, plus user when rootless, unless the builder already
//! runs in a user namespace of its own), sets up its root (see
//! [`crate::plan`]) and execs the command directly, as runc does for
//! BuildKit's RUN: no init of ours. When it exits the kernel kills whatever
//! it left in its PID namespace, and the mount namespace, with the overlay
//! and every other mount, goes with it; nothing is ever mounted in the
//! builder's namespace.

use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::ExitStatus;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use nix::poll::{PollFd, PollFlags, PollTimeout};
use nix::sched::CloneFlags;
use rustix::io::Errno;
use rustix::pipe::PipeFlags;
use rustix::process::{Pid, Signal, WaitOptions};

use crate::child::{self, Fixed, REPORT_ERROR, REPORT_STUB};
use crate::error::SandboxError;
use crate::idmap::IdMap;
use crate::io::{RunIo, Stdin};
use crate::plan::{self, ChildFds, Planned, StatePaths};
use crate::spec::{Rootfs, RunSpec};
use crate::{Sandbox, stubs};

/// The child's stack: it only makes syscalls, but rustix and nix keep path
/// buffers on it.
const STACK_SIZE: usize = 256 * 1024;

/// Stops runs from another thread or from a signal handler. Cancelling is
/// final: the running sandbox is SIGKILLed and every later run on the same
/// [`NamespaceSandbox`] fails with [`SandboxError::Cancelled`].
#[derive(Debug, Clone)]
pub struct CancelHandle(pub(crate) Arc<CancelInner>);

#[derive(Debug)]
pub(crate) struct CancelInner {
    cancelled: AtomicBool,
    /// Never drained once written, so every waiting run wakes up.
    wake_read: OwnedFd,
    wake_write: OwnedFd,
}

impl CancelInner {
    pub(crate) fn cancel(&self) {
        self.cancelled.store(true, Ordering::SeqCst);
        let _ = rustix::io::write(&self.wake_write, &[1]);
    }
}

impl CancelHandle {
    /// A handle of its own, for a builder whose sandbox is not a
    /// [`NamespaceSandbox`] (the fake, in tests).
    pub fn new() -> Result<Self, SandboxError> {
        let (r, w) = rustix::pipe::pipe_with(PipeFlags::CLOEXEC | PipeFlags::NONBLOCK)
            .map_err(|e| SandboxError::Pipe(e.into()))?;
        Ok(Self(Arc::new(CancelInner {
            cancelled: AtomicBool::new(false),
            wake_read: r,
            wake_write: w,
        })))
    }

    /// Async-signal-safe (an atomic store and a write(2)), so a SIGINT or
    /// SIGTERM handler may call it; [`crate::cancel_on_interrupt`] does.
    pub fn cancel(&self) {
        self.0.cancel();
    }

    pub fn is_cancelled(&self) -> bool {
        self.0.cancelled.load(Ordering::SeqCst)
    }
}

/// The real sandbox: Linux namespaces, overlayfs and pivot_root.
#[derive(Debug)]
pub struct NamespaceSandbox {
    state_dir: PathBuf,
    cancel: CancelHandle,
    cap_last: u32,
}

impl NamespaceSandbox {
    /// `state_dir` (e.g. the store's `hoist/tmp/sandbox`) is only a mount
    /// point: each run mounts its own tmpfs over it inside its private mount
    /// namespace for the overlay mount point, the generated /etc files and
    /// ephemeral upperdirs. Nothing is written to it on the host.
    pub fn new(state_dir: impl Into<PathBuf>) -> Result<Self, SandboxError> {
        let state_dir = state_dir.into();
        fs_err::create_dir_all(&state_dir).map_err(SandboxError::io(&state_dir))?;
        let cap_last = std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(40);
        Ok(Self {
            state_dir,
            cancel: CancelHandle::new()?,
            cap_last,
        })
    }

    pub fn cancel_handle(&self) -> CancelHandle {
        self.cancel.clone()
    }
}

/// Kills and reaps the child if the parent bails out early.
struct ChildGuard {
    pid: Pid,
    reaped: bool,
}

impl ChildGuard {
    fn wait(&mut self) -> Result<ExitStatus, SandboxError> {
        loop {
            match rustix::process::waitpid(Some(self.pid), WaitOptions::empty()) {
                Ok(Some((_, status))) => {
                    self.reaped = true;
                    return Ok(ExitStatus::from_raw(status.as_raw()));
                }
                Ok(None) | Err(Errno::INTR) => {}
                Err(e) => return Err(SandboxError::Pipe(e.into())),
            }
        }
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if !self.reaped {
            let _ = rustix::process::kill_process(self.pid, Signal::KILL);
            let _ = self.wait();
        }
    }
}

fn pipe() -> Result<(OwnedFd, OwnedFd), SandboxError> {
    let (r, w) =
        rustix::pipe::pipe_with(PipeFlags::CLOEXEC).map_err(|e| SandboxError::Pipe(e.into()))?;
    Ok((above_stdio(r)?, above_stdio(w)?))
}

/// The child dup2()s its descriptors onto 0-2, so none of them may be 0-2.
fn above_stdio(fd: OwnedFd) -> Result<OwnedFd, SandboxError> {
    if fd.as_raw_fd() > 2 {
        return Ok(fd);
    }
    rustix::io::fcntl_dupfd_cloexec(&fd, 3).map_err(|e| SandboxError::Pipe(e.into()))
}

impl Sandbox for NamespaceSandbox {
    fn run(&self, spec: &RunSpec, io: &mut dyn RunIo) -> Result<ExitStatus, SandboxError> {
        if self.cancel.is_cancelled() {
            return Err(SandboxError::Cancelled);
        }
        // Without a mapping of its own, a run in a builder that already
        // lives in a user namespace (rootless `hoist`) stays in that one.
        let idmap = match spec.rootless {
            Some(mapping) => Some(IdMap::resolve(mapping)?),
            None => IdMap::inherited(),
        };
        let state = StatePaths::new(&self.state_dir);
        self.run_in(spec, io, idmap.as_ref(), &state)
    }
}

impl NamespaceSandbox {
    fn run_in(
        &self,
        spec: &RunSpec,
        io: &mut dyn RunIo,
        idmap: Option<&IdMap>,
        state: &StatePaths,
    ) -> Result<ExitStatus, SandboxError> {
        let (out_r, out_w) = pipe()?;
        let (err_r, err_w) = pipe()?;
        let (rep_r, rep_w) = pipe()?;
        let (sync_r, sync_w) = pipe()?;
        let mut stdin_bytes = None;
        let stdin_child = match io.stdin() {
            Stdin::Null => {
                let null = rustix::fs::open(
                    c"/dev/null",
                    rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::CLOEXEC,
                    rustix::fs::Mode::empty(),
                )
                .map_err(|e| SandboxError::io("/dev/null")(e.into()))?;
                above_stdio(null)?
            }
            Stdin::Fd(fd) => above_stdio(fd)?,
            Stdin::Bytes(bytes) => {
                let (r, w) = pipe()?;
                rustix::fs::fcntl_setfl(&w, rustix::fs::OFlags::NONBLOCK)
                    .map_err(|e| SandboxError::Pipe(e.into()))?;
                stdin_bytes = Some((w, bytes, 0usize));
                r
            }
        };
        let fds = ChildFds {
            stdin: stdin_child.as_raw_fd(),
            stdout: out_w.as_raw_fd(),
            stderr: err_w.as_raw_fd(),
            report: rep_w.as_raw_fd(),
            sync: sync_r.as_raw_fd(),
        };
        // The run's cgroup is made (and can fail) before its process exists,
        // and shows at its /sys/fs/cgroup.
        let cgroup = crate::cgroup::RunCgroup::prepare(&spec.resources, spec.security.insecure)?;
        let view = crate::cgroup::CgroupView::of(cgroup.as_ref());
        let Planned {
            mut plan,
            stubs: stub_paths,
        } = plan::build(spec, state, idmap, fds, self.cap_last, &view)?;

        let mut flags = CloneFlags::CLONE_NEWNS
            | CloneFlags::CLONE_NEWPID
            | CloneFlags::CLONE_NEWUTS
            | CloneFlags::CLONE_NEWIPC;
        if plan.new_net {
            flags |= CloneFlags::CLONE_NEWNET;
        }
        let new_userns = idmap.is_some_and(IdMap::needs_new_namespace);
        if new_userns {
            flags |= CloneFlags::CLONE_NEWUSER;
        }
        let mut stack = vec![0u8; STACK_SIZE];
        let child_plan = &mut plan;
        // SAFETY: the child runs `child::main` on its own copy of the address
        // space and `stack`; it only uses the precomputed plan and raw
        // syscalls (see child.rs) and always ends in exec or _exit, never
        // returning into the parent's code.
        let pid = unsafe {
            nix::sched::clone(
                Box::new(move || child::main(child_plan)),
                &mut stack,
                flags,
                Some(libc::SIGCHLD),
            )
        }
        .map_err(|e| {
            if e == nix::errno::Errno::EPERM
                && idmap.is_none()
                && !rustix::process::geteuid().is_root()
            {
                SandboxError::InvalidSpec(
                    "an unprivileged builder needs a rootless run (RunSpec::rootless)".into(),
                )
            } else {
                SandboxError::Spawn(e.into())
            }
        })?;
        let pid = Pid::from_raw(pid.as_raw()).ok_or(SandboxError::Spawn(std::io::Error::other(
            "clone returned pid 0",
        )))?;
        let mut child = ChildGuard { pid, reaped: false };
        drop((out_w, err_w, rep_w, sync_r, stdin_child));

        // The child builds its root meanwhile and may fail on its own (an
        // overlay the kernel refuses): then what it reported is the error,
        // not the attach or the go that found it gone.
        let started = (|| {
            if let Some(map) = idmap.filter(|_| new_userns) {
                map.apply(pid.as_raw_nonzero().get())?;
            }
            // Limits are in place before the child may exec.
            if let Some(cg) = &cgroup {
                cg.attach(pid)?;
            }
            for ulimit in &spec.resources.ulimits {
                let resource = crate::cgroup_resource(&ulimit.name).ok_or_else(|| {
                    SandboxError::InvalidSpec(format!("invalid ulimit type: {}", ulimit.name))
                })?;
                let limit = |v: i64| u64::try_from(v).ok();
                let new = rustix::process::Rlimit {
                    current: limit(ulimit.soft),
                    maximum: limit(ulimit.hard),
                };
                rustix::process::prlimit(Some(pid), resource, new).map_err(|e| {
                    SandboxError::Setup {
                        step: format!("set ulimit {}={}:{}", ulimit.name, ulimit.soft, ulimit.hard),
                        source: e.into(),
                    }
                })?;
            }
            rustix::io::write(&sync_w, &[1]).map_err(|e| SandboxError::Pipe(e.into()))
        })();
        drop(sync_w);
        if let Err(e) = started {
            let _ = rustix::process::kill_process(pid, Signal::KILL);
            // EOF once the child is gone: only it holds the write end.
            let mut reports = Vec::new();
            let mut buf = [0u8; 4096];
            loop {
                match rustix::io::read(&rep_r, &mut buf) {
                    Ok(0) => break,
                    Ok(n) => reports.extend_from_slice(&buf[..n]),
                    Err(Errno::INTR) => {}
                    Err(_) => break,
                }
            }
            let _ = child.wait();
            let reported = reports.chunks_exact(12).find_map(|rec| {
                let word =
                    |i: usize| u32::from_ne_bytes([rec[i], rec[i + 1], rec[i + 2], rec[i + 3]]);
                (word(0) == REPORT_ERROR).then(|| describe_error(&plan, word(4), word(8) as i32))
            });
            return Err(reported.unwrap_or(e));
        }

        let pumped = self.pump(&child, io, out_r, err_r, rep_r, stdin_bytes)?;
        let status = child.wait()?;

        let mut error = None;
        for rec in pumped.reports.chunks_exact(12) {
            let word = |i: usize| u32::from_ne_bytes([rec[i], rec[i + 1], rec[i + 2], rec[i + 3]]);
            let (kind, step, value) = (word(0), word(4), word(8));
            if kind == REPORT_STUB {
                if let Rootfs::Overlay { upperdir: dir, .. } | Rootfs::Directory { path: dir } =
                    &spec.rootfs
                {
                    stubs::remove(dir, &stubs::created(&stub_paths, step, value));
                }
            } else if kind == REPORT_ERROR && error.is_none() {
                error = Some(describe_error(&plan, step, value as i32));
            }
        }
        if pumped.killed {
            return Err(SandboxError::Cancelled);
        }
        if let Some(cg) = &cgroup
            && !status.success()
            && cg.oom_killed()
        {
            return Err(SandboxError::OutOfMemory {
                limit: cg.memory_limit().unwrap_or_default(),
            });
        }
        match error {
            Some(e) => Err(e),
            None => Ok(status),
        }
    }

    /// Streams stdout/stderr to `io`, feeds stdin, collects the child's
    /// reports, and SIGKILLs the child on cancel, until every pipe is closed
    /// (which happens when PID 1 and so its whole namespace are gone).
    fn pump(
        &self,
        child: &ChildGuard,
        io: &mut dyn RunIo,
        out_r: OwnedFd,
        err_r: OwnedFd,
        rep_r: OwnedFd,
        mut stdin: Option<(OwnedFd, Vec<u8>, usize)>,
    ) -> Result<Pumped, SandboxError> {
        #[derive(Clone, Copy)]
        enum Src {
            Out,
            Err,
            Report,
            Cancel,
            Stdin,
        }
        let mut open = [Some(out_r), Some(err_r), Some(rep_r)];
        let mut reports = Vec::new();
        let mut killed = false;
        let mut buf = vec![0u8; 64 * 1024];
        let wake = self.cancel.0.wake_read.as_fd();
        while open.iter().any(Option::is_some) {
            let mut srcs = Vec::with_capacity(5);
            let mut pfds = Vec::with_capacity(5);
            for (fd, src) in open.iter().zip([Src::Out, Src::Err, Src::Report]) {
                if let Some(fd) = fd {
                    pfds.push(PollFd::new(fd.as_fd(), PollFlags::POLLIN));
                    srcs.push(src);
                }
            }
            if !killed {
                pfds.push(PollFd::new(wake, PollFlags::POLLIN));
                srcs.push(Src::Cancel);
            }
            if let Some((fd, _, _)) = &stdin {
                pfds.push(PollFd::new(fd.as_fd(), PollFlags::POLLOUT));
                srcs.push(Src::Stdin);
            }
            match nix::poll::poll(&mut pfds, PollTimeout::NONE) {
                Ok(_) | Err(nix::errno::Errno::EINTR) => {}
                Err(e) => return Err(SandboxError::Pipe(e.into())),
            }
            let ready: Vec<Src> = pfds
                .iter()
                .zip(&srcs)
                .filter(|(p, _)| p.revents().is_some_and(|r| !r.is_empty()))
                .map(|(_, s)| *s)
                .collect();
            drop(pfds);
            for src in ready {
                match src {
                    Src::Out | Src::Err | Src::Report => {
                        let i = src as usize;
                        let Some(fd) = &open[i] else { continue };
                        match rustix::io::read(fd, &mut buf) {
                            Ok(0) => open[i] = None,
                            Ok(n) => match src {
                                Src::Out => io.stdout(&buf[..n]),
                                Src::Err => io.stderr(&buf[..n]),
                                _ => reports.extend_from_slice(&buf[..n]),
                            },
                            Err(Errno::INTR | Errno::AGAIN) => {}
                            Err(_) => open[i] = None,
                        }
                    }
                    Src::Cancel => {
                        if self.cancel.is_cancelled() {
                            let _ = rustix::process::kill_process(child.pid, Signal::KILL);
                            killed = true;
                            stdin = None;
                        }
                    }
                    Src::Stdin => {
                        let Some((fd, bytes, off)) = &mut stdin else {
                            continue;
                        };
                        match rustix::io::write(&*fd, &bytes[*off..]) {
                            Ok(n) => *off += n,
                            Err(Errno::INTR | Errno::AGAIN) => {}
                            Err(_) => *off = bytes.len(),
                        }
                        if *off >= bytes.len() {
                            stdin = None;
                        }
                    }
                }
            }
        }
        Ok(Pumped { reports, killed })
    }
}

struct Pumped {
    reports: Vec<u8>,
    killed: bool,
}

fn describe_error(plan: &plan::ChildPlan, step: u32, errno: i32) -> SandboxError {
    let source = std::io::Error::from_raw_os_error(errno);
    if let Some(op) = plan.ops.get(step as usize) {
        return match op {
            plan::Op::Overlay { target, .. } => SandboxError::Overlay {
                target: PathBuf::from(std::ffi::OsStr::from_bytes(target.to_bytes())),
                source,
            },
            // A procfs in a user namespace is refused while parts of the
            // /proc the builder sees are covered (a container's masked
            // paths).
            plan::Op::MountDir { fstype, .. }
                if fstype.as_bytes() == b"proc" && errno == libc::EPERM =>
            {
                SandboxError::Setup {
                    step: format!(
                        "{} (the container hoist runs in masks parts of /proc: run it with \
                         --security-opt systempaths=unconfined, or procMount: Unmasked in \
                         Kubernetes)",
                        op.describe()
                    ),
                    source,
                }
            }
            _ => SandboxError::Setup {
                step: op.describe(),
                source,
            },
        };
    }
    let step = match Fixed::from_step(step) {
        Some(Fixed::Exec) => {
            let program = plan.exec.program.clone();
            return if errno == libc::ENOENT {
                SandboxError::NotFound { program }
            } else {
                SandboxError::Exec { program, source }
            };
        }
        Some(Fixed::Interpreter) => {
            let program = plan.exec.program.clone();
            return SandboxError::Exec { program, source };
        }
        Some(Fixed::Setup) => "prepare the process".to_owned(),
        Some(Fixed::Loopback) => "bring up the loopback interface".to_owned(),
        Some(Fixed::Hostname) => "set the hostname".to_owned(),
        Some(Fixed::Capabilities) => "drop capabilities".to_owned(),
        Some(Fixed::Groups) => format!("set supplementary groups {:?}", plan.groups),
        Some(Fixed::Gid) => format!("set gid {}", plan.gid),
        Some(Fixed::Uid) => format!("set uid {}", plan.uid),
        Some(Fixed::Chdir) => format!("chdir to {}", plan.cwd.to_string_lossy()),
        Some(Fixed::Stdio) => "set up stdio".to_owned(),
        Some(Fixed::Seccomp) => "load the seccomp filter".to_owned(),
        None => format!("step {step}"),
    };
    SandboxError::Setup { step, source }
}
