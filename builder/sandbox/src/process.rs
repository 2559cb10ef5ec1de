//! The namespaces of the builder process itself, entered first thing in
//! `main` while the process still has a single thread.
//!
//! - As root, [`isolate_mounts`]: a private mount namespace, so that every
//!   mount the builder makes in its own namespace (COPY's merged overlay
//!   views) dies with it, even on SIGKILL.
//! - As an ordinary user, buildah's "unshare" mode: the process re-executes
//!   `/proc/self/exe` with the same arguments in a new user and mount
//!   namespace where it is root (container 0 = the caller, 1..N = the
//!   caller's /etc/subuid and /etc/subgid ranges through newuidmap and
//!   newgidmap, or only 0 = the caller without ranges), then waits for it
//!   and passes on its exit status. Inside, the root code paths work as
//!   they are: overlay mounts (with `userxattr`), chown within the mapped
//!   ranges, and sandboxes that stay in that user namespace (see
//!   [`crate::idmap::IdMap::inherited`]). Device nodes cannot be created.

use std::ffi::OsStr;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::process::{Command, ExitStatus};
use std::sync::atomic::{AtomicI32, Ordering};

use nix::sched::CloneFlags;
use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, Signal};
use rustix::io::{Errno, FdFlags};
use rustix::mount::MountPropagationFlags;
use rustix::pipe::PipeFlags;

use crate::error::SandboxError;
use crate::idmap::IdMap;
use crate::spec::IdMapping;

/// Set in the environment of the re-executed copy:
/// `<go read fd>,<ready write fd>,<parent pid>`.
const REEXEC_ENV: &str = "_HOIST_USERNS_SYNC";

/// What [`enter_namespaces`] did.
#[derive(Debug)]
pub enum Entered {
    /// This process now runs in namespaces of its own: carry on.
    Here,
    /// The caller is not root: a copy of this process ran in a user
    /// namespace and finished with this status, which the caller should
    /// exit with.
    Reexecuted(ExitStatus),
}

/// Moves the builder into namespaces of its own before it does anything
/// else; call it while the process has a single thread (see the module
/// doc). `env` is added to the environment of a re-executed copy, for what
/// must be decided as the real user (the default store root).
pub fn enter_namespaces(env: &[(&str, &OsStr)]) -> Result<Entered, SandboxError> {
    if let Some(sync) = std::env::var_os(REEXEC_ENV) {
        enter_as_copy(&sync.to_string_lossy())?;
        return Ok(Entered::Here);
    }
    if running_as_root() {
        isolate_mounts()?;
        return Ok(Entered::Here);
    }
    reexec_in_user_namespace(env).map(Entered::Reexecuted)
}

/// Whether hoist runs as root (of the initial user namespace, or of one it
/// was started in); otherwise [`enter_namespaces`] re-executes it.
pub fn running_as_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// Moves the calling process into a new mount namespace whose mounts are
/// all slaves of the current ones: nothing mounted from now on propagates
/// back, and it all goes when the process exits, however it exits. Must be
/// called before any thread is started (a mount namespace belongs to the
/// thread that unshares it), and is refused otherwise.
pub fn isolate_mounts() -> Result<(), SandboxError> {
    require_single_thread()?;
    nix::sched::unshare(CloneFlags::CLONE_NEWNS)
        .map_err(|e| namespace_error("unshare the mount namespace", e.into()))?;
    make_mounts_slaves()
}

fn make_mounts_slaves() -> Result<(), SandboxError> {
    rustix::mount::mount_change(
        c"/",
        MountPropagationFlags::DOWNSTREAM | MountPropagationFlags::REC,
    )
    .map_err(|e| namespace_error("make / a recursive slave mount", e.into()))
}

fn require_single_thread() -> Result<(), SandboxError> {
    let threads = std::fs::read_dir("/proc/self/task")
        .map_err(SandboxError::io("/proc/self/task"))?
        .count();
    if threads != 1 {
        return Err(SandboxError::InvalidSpec(format!(
            "the builder must enter its namespaces before starting threads ({threads} running)"
        )));
    }
    Ok(())
}

fn namespace_error(step: &'static str, source: std::io::Error) -> SandboxError {
    SandboxError::Namespace { step, source }
}

/// The parent's side: spawn the copy, write its ID maps once it has made
/// its user namespace, forward signals and wait.
fn reexec_in_user_namespace(env: &[(&str, &OsStr)]) -> Result<ExitStatus, SandboxError> {
    require_single_thread()?;
    let map = IdMap::resolve(IdMapping::Auto)?;
    let pipe =
        || rustix::pipe::pipe_with(PipeFlags::CLOEXEC).map_err(|e| SandboxError::Pipe(e.into()));
    let (go_r, go_w) = pipe()?;
    let (ready_r, ready_w) = pipe()?;
    // Only the copy's ends are inherited; there is no other thread to race
    // with a fork in between.
    for fd in [&go_r, &ready_w] {
        rustix::io::fcntl_setfd(fd, FdFlags::empty()).map_err(|e| SandboxError::Pipe(e.into()))?;
    }
    let mut args = std::env::args_os();
    let mut command = Command::new("/proc/self/exe");
    if let Some(arg0) = args.next() {
        command.arg0(arg0);
    }
    let sync = format!(
        "{},{},{}",
        go_r.as_raw_fd(),
        ready_w.as_raw_fd(),
        rustix::process::getpid().as_raw_nonzero()
    );
    command
        .args(args)
        .env(REEXEC_ENV, sync)
        .envs(env.iter().copied());
    let mut child = command.spawn().map_err(SandboxError::Spawn)?;
    drop((go_r, ready_w));

    let mut byte = [0u8; 1];
    if read_retrying(&ready_r, &mut byte) != Ok(1) {
        // The copy failed before making its namespace and said why.
        return child.wait().map_err(SandboxError::Spawn);
    }
    let pid =
        i32::try_from(child.id()).map_err(|_| SandboxError::IdMap("pid out of range".into()))?;
    if let Err(err) = map.apply(pid) {
        // Closing `go_w` unmapped makes the copy give up; make sure it does.
        let _ = child.kill();
        let _ = child.wait();
        return Err(err);
    }
    rustix::io::write(&go_w, b"1").map_err(|e| SandboxError::Pipe(e.into()))?;
    drop(go_w);
    forward_signals_to(pid);
    child.wait().map_err(SandboxError::Spawn)
}

/// The copy's side: make the user and mount namespaces, let the parent map
/// them, and die with the parent.
fn enter_as_copy(sync: &str) -> Result<(), SandboxError> {
    let invalid = || SandboxError::InvalidSpec(format!("{REEXEC_ENV}={sync:?} is not ours"));
    let fields: Vec<i32> = sync
        .split(',')
        .map(str::parse)
        .collect::<Result<_, _>>()
        .map_err(|_| invalid())?;
    let [go, ready, parent] = fields[..] else {
        return Err(invalid());
    };
    let (go, ready) = (inherited_fd(go)?, inherited_fd(ready)?);
    require_single_thread()?;
    nix::sched::unshare(CloneFlags::CLONE_NEWUSER | CloneFlags::CLONE_NEWNS)
        .map_err(|e| namespace_error("unshare the user and mount namespaces", e.into()))?;
    rustix::io::write(&ready, b"1").map_err(|e| SandboxError::Pipe(e.into()))?;
    drop(ready);
    let mut byte = [0u8; 1];
    if read_retrying(&go, &mut byte) != Ok(1) {
        return Err(SandboxError::IdMap(
            "the parent process could not write the user namespace's id maps".into(),
        ));
    }
    drop(go);
    rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::KILL))
        .map_err(|e| namespace_error("set the parent death signal", e.into()))?;
    if rustix::process::getppid().map(|p| p.as_raw_nonzero().get()) != Some(parent) {
        return Err(namespace_error(
            "wait for the id maps",
            std::io::Error::other("the parent process exited"),
        ));
    }
    // The caller's supplementary groups are unmapped here (they show as
    // the overflow gid); drop them where setgroups(2) is allowed.
    if IdMap::inherited().is_some_and(|m| m.allows_setgroups()) {
        nix::unistd::setgroups(&[])
            .map_err(|e| namespace_error("drop supplementary groups", e.into()))?;
    }
    // A mount namespace made in a less privileged user namespace already
    // turns shared mounts into slaves; say so anyway.
    make_mounts_slaves()
}

fn read_retrying(fd: impl AsFd, buf: &mut [u8]) -> Result<usize, Errno> {
    loop {
        match rustix::io::read(fd.as_fd(), &mut *buf) {
            Err(Errno::INTR) => {}
            other => return other,
        }
    }
}

/// Takes ownership of a descriptor the parent left open for us.
fn inherited_fd(fd: RawFd) -> Result<OwnedFd, SandboxError> {
    if fd <= 2 {
        return Err(SandboxError::InvalidSpec(format!(
            "{REEXEC_ENV}: fd {fd} is stdio"
        )));
    }
    // SAFETY: only checks whether `fd` is open; the borrow ends here.
    let borrowed = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
    rustix::io::fcntl_getfd(borrowed).map_err(|e| SandboxError::Pipe(std::io::Error::from(e)))?;
    // SAFETY: the parent opened `fd` for this process alone and named it in
    // REEXEC_ENV; nothing else in this process knows of it, so this is its
    // only owner.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    rustix::io::fcntl_setfd(&owned, FdFlags::CLOEXEC).map_err(|e| SandboxError::Pipe(e.into()))?;
    Ok(owned)
}

/// The re-executed copy to which the parent forwards signals.
static CHILD: AtomicI32 = AtomicI32::new(0);

extern "C" fn forward_signal(
    signal: libc::c_int,
    info: *mut libc::siginfo_t,
    _: *mut libc::c_void,
) {
    // SAFETY: the kernel passes a valid siginfo to an SA_SIGINFO handler.
    let code = unsafe { (*info).si_code };
    // A terminal's Ctrl-C goes to its whole foreground process group
    // (SI_KERNEL), so the copy has it already; forwarding it would count
    // twice, and the builder's second SIGINT kills it without cleaning up.
    if code == libc::SI_KERNEL {
        return;
    }
    let pid = CHILD.load(Ordering::SeqCst);
    if pid > 0 {
        // SAFETY: kill(2) is async-signal-safe and touches no memory.
        unsafe { libc::kill(pid, signal) };
    }
}

/// Passes SIGINT, SIGTERM, SIGHUP and SIGQUIT sent to this process on to
/// `pid` instead of dying of them.
fn forward_signals_to(pid: i32) {
    CHILD.store(pid, Ordering::SeqCst);
    let action = SigAction::new(
        SigHandler::SigAction(forward_signal),
        SaFlags::SA_RESTART | SaFlags::SA_SIGINFO,
        SigSet::empty(),
    );
    for signal in [
        Signal::SIGINT,
        Signal::SIGTERM,
        Signal::SIGHUP,
        Signal::SIGQUIT,
    ] {
        // SAFETY: the handler reads an atomic and the siginfo, and calls
        // kill(2): all async-signal-safe. sigaction cannot fail for these.
        let _ = unsafe { nix::sys::signal::sigaction(signal, &action) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn malformed_sync_values_are_refused() {
        for bad in ["", "1,2", "a,b,c", "1,2,3,4", "0,1,5"] {
            assert!(enter_as_copy(bad).is_err(), "case {bad:?}");
        }
    }
}
