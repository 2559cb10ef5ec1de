//! The child's half of a run, between clone and exec. The builder may be
//! multi-threaded, so this code only makes raw syscalls on data the parent
//! prepared ([`ChildPlan`]): no allocation, no locks, no glibc wrappers that
//! assume a consistent thread list (setuid & co. go through rustix's raw
//! per-thread calls for exactly that reason).

use std::ffi::CStr;
use std::os::fd::{AsFd, BorrowedFd, RawFd};

use rustix::fs::{AtFlags, CWD, Mode, OFlags, StatVfsMountFlags};
use rustix::io::Errno;
use rustix::mount::{
    MountFlags, MountPropagationFlags, MoveMountFlags, OpenTreeFlags, UnmountFlags,
};
use rustix::process::{Signal, Uid};
use rustix::thread::{CapabilitySet, CapabilitySets};

use crate::plan::{ChildPlan, Op};

/// Report kinds on the report pipe: `[kind, step, value]` as three u32s.
pub(crate) const REPORT_ERROR: u32 = 0;
pub(crate) const REPORT_STUB: u32 = 1;

/// Steps after the op list, numbered after it in reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub(crate) enum Fixed {
    Setup = 0x1000_0000,
    Loopback,
    Hostname,
    Capabilities,
    Groups,
    Gid,
    Uid,
    Chdir,
    Stdio,
    Exec,
    /// The program exists but exec said ENOENT: its interpreter is missing.
    Interpreter,
    Seccomp,
}

impl Fixed {
    pub(crate) fn from_step(step: u32) -> Option<Fixed> {
        const ALL: [Fixed; 12] = [
            Fixed::Setup,
            Fixed::Loopback,
            Fixed::Hostname,
            Fixed::Capabilities,
            Fixed::Groups,
            Fixed::Gid,
            Fixed::Uid,
            Fixed::Chdir,
            Fixed::Stdio,
            Fixed::Exec,
            Fixed::Interpreter,
            Fixed::Seccomp,
        ];
        ALL.into_iter().find(|f| *f as u32 == step)
    }
}

/// Docker's default capability set for root in a container.
fn docker_capabilities() -> CapabilitySet {
    CapabilitySet::CHOWN
        | CapabilitySet::DAC_OVERRIDE
        | CapabilitySet::FSETID
        | CapabilitySet::FOWNER
        | CapabilitySet::MKNOD
        | CapabilitySet::NET_RAW
        | CapabilitySet::SETGID
        | CapabilitySet::SETUID
        | CapabilitySet::SETFCAP
        | CapabilitySet::SETPCAP
        | CapabilitySet::NET_BIND_SERVICE
        | CapabilitySet::SYS_CHROOT
        | CapabilitySet::KILL
        | CapabilitySet::AUDIT_WRITE
}

fn report(fd: RawFd, kind: u32, step: u32, value: u32) {
    let mut rec = [0u8; 12];
    rec[..4].copy_from_slice(&kind.to_ne_bytes());
    rec[4..8].copy_from_slice(&step.to_ne_bytes());
    rec[8..].copy_from_slice(&value.to_ne_bytes());
    // SAFETY: `fd` is the report pipe's write end, open for the child's life.
    let fd = unsafe { BorrowedFd::borrow_raw(fd) };
    // 12 bytes < PIPE_BUF: the write is atomic; nothing to do if it fails.
    let _ = rustix::io::write(fd, &rec);
}

fn fail(plan: &ChildPlan, step: u32, err: Errno) -> ! {
    report(
        plan.fds.report,
        REPORT_ERROR,
        step,
        err.raw_os_error() as u32,
    );
    exit(1)
}

fn exit(code: i32) -> ! {
    // SAFETY: _exit only ends the process; no destructors or atexit handlers
    // of the parent's copy of the address space run.
    unsafe { libc::_exit(code) }
}

/// Runs in the cloned child; never returns.
pub(crate) fn main(plan: &mut ChildPlan) -> ! {
    let fixed = |plan: &ChildPlan, f: Fixed, r: rustix::io::Result<()>| {
        if let Err(e) = r {
            fail(plan, f as u32, e);
        }
    };
    // Die with the builder. Set before the sync read, so a builder that dies
    // in between is noticed as EOF.
    fixed(
        plan,
        Fixed::Setup,
        rustix::process::set_parent_process_death_signal(Some(Signal::KILL)),
    );
    if plan.await_early
        && let Err(e) = await_parent(plan.fds.sync)
    {
        fail(plan, Fixed::Setup as u32, e);
    }
    // No controlling terminal: /dev/tty must not reach the builder's.
    fixed(plan, Fixed::Setup, rustix::process::setsid().map(drop));
    reset_signals();
    rustix::process::umask(Mode::from_raw_mode(0o022));
    if plan.new_net
        && let Err(e) = loopback_up()
    {
        fail(plan, Fixed::Loopback as u32, e);
    }
    fixed(
        plan,
        Fixed::Hostname,
        rustix::system::sethostname(plan.hostname.to_bytes()),
    );

    let mut skip = 0;
    for i in 0..plan.ops.len() {
        // A skipped mount never skips the wait for the parent.
        if skip > 0 && !matches!(plan.ops[i], Op::AwaitParent) {
            skip -= 1;
            continue;
        }
        match run_op(plan, i) {
            Ok(n) => skip = n,
            Err(e) => fail(plan, i as u32, e),
        }
    }

    // Without no_new_privs, loading a filter needs CAP_SYS_ADMIN: load it
    // before the capabilities go, as runc does.
    if !plan.no_new_privs {
        for program in &plan.seccomp.0 {
            fixed(plan, Fixed::Seccomp, load_seccomp(program));
        }
    }
    // Bounding set first (needs CAP_SETPCAP), then the IDs, which drop the
    // remaining capabilities unless the user is root.
    // `--security=insecure` keeps every capability the builder has.
    let keep = docker_capabilities();
    let cap_last = if plan.all_capabilities {
        None
    } else {
        Some(plan.cap_last.min(63))
    };
    for cap in cap_last.into_iter().flat_map(|last| 0..=last) {
        let set = CapabilitySet::from_bits_retain(1 << cap);
        if !keep.contains(set) {
            match rustix::thread::remove_capability_from_bounding_set(set) {
                Ok(()) | Err(Errno::INVAL) => {}
                Err(e) => fail(plan, Fixed::Capabilities as u32, e),
            }
        }
    }
    if plan.set_groups {
        fixed(
            plan,
            Fixed::Groups,
            rustix::thread::set_thread_groups(&plan.groups),
        );
    }
    let gid = rustix::fs::Gid::from_raw(plan.gid);
    fixed(
        plan,
        Fixed::Gid,
        rustix::thread::set_thread_res_gid(gid, gid, gid),
    );
    let uid = Uid::from_raw(plan.uid);
    fixed(
        plan,
        Fixed::Uid,
        rustix::thread::set_thread_res_uid(uid, uid, uid),
    );
    if plan.uid == 0 && !plan.all_capabilities {
        let sets = CapabilitySets {
            effective: keep,
            permitted: keep,
            inheritable: CapabilitySet::empty(),
        };
        fixed(
            plan,
            Fixed::Capabilities,
            rustix::thread::set_capabilities(None, sets),
        );
    }
    let _ = rustix::thread::clear_ambient_capability_set();
    // Changing credentials clears the death signal; set it again.
    fixed(
        plan,
        Fixed::Setup,
        rustix::process::set_parent_process_death_signal(Some(Signal::KILL)),
    );
    fixed(plan, Fixed::Chdir, enter_cwd(plan.cwd.as_c_str()));
    if let Err(e) = setup_stdio(plan) {
        fail(plan, Fixed::Stdio as u32, e);
    }
    // With no_new_privs, as late as possible, as runc does: the fewest
    // syscalls of ours run under the filter.
    if plan.no_new_privs {
        fixed(plan, Fixed::Seccomp, set_no_new_privs());
        for program in &plan.seccomp.0 {
            fixed(plan, Fixed::Seccomp, load_seccomp(program));
        }
    }
    exec(plan)
}

/// chdir into the working directory without leaving the root
/// (CVE-2024-21626): the builder's descriptors are all still open in the
/// child until exec, so `WORKDIR /proc/self/fd/N` would name a host
/// directory. Magic links are refused while resolving, and the result is
/// checked to be reachable from the root, as runc checks it.
fn enter_cwd(cwd: &CStr) -> rustix::io::Result<()> {
    let flags = OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC;
    match rustix::fs::openat2(
        CWD,
        cwd,
        flags,
        Mode::empty(),
        rustix::fs::ResolveFlags::NO_MAGICLINKS,
    ) {
        Ok(dir) => rustix::process::fchdir(&dir)?,
        // Kernels before 5.6: a plain chdir, checked below.
        Err(Errno::NOSYS) => rustix::process::chdir(cwd)?,
        Err(e) => return Err(e),
    }
    let mut buf = [0u8; 64];
    // SAFETY: getcwd writes at most `buf.len()` bytes into `buf`.
    let r = unsafe {
        libc::syscall(
            libc::SYS_getcwd,
            buf.as_mut_ptr(),
            buf.len() as libc::size_t,
        )
    };
    // A path too long for the buffer (ERANGE) is a reachable one; an
    // unreachable one reads "(unreachable)/..." or fails with ENOENT.
    if r < 0 {
        return match Errno::from_raw_os_error(last_errno()) {
            Errno::RANGE => Ok(()),
            e => Err(e),
        };
    }
    if buf[0] != b'/' {
        return Err(Errno::XDEV);
    }
    Ok(())
}

fn set_no_new_privs() -> rustix::io::Result<()> {
    // SAFETY: prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) takes no pointers.
    let r = unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) };
    if r != 0 {
        return Err(Errno::from_raw_os_error(last_errno()));
    }
    Ok(())
}

/// seccomp(SECCOMP_SET_MODE_FILTER) of a program seccompiler compiled.
/// Without no_new_privs it needs CAP_SYS_ADMIN, which root has here.
fn load_seccomp(program: &[seccompiler::sock_filter]) -> rustix::io::Result<()> {
    let prog = libc::sock_fprog {
        len: program.len() as libc::c_ushort,
        // seccompiler's sock_filter is the kernel's struct sock_filter
        // (u16 code, u8 jt, u8 jf, u32 k), as libc's is.
        filter: program.as_ptr() as *mut libc::sock_filter,
    };
    // SAFETY: `prog` points at `program`, alive for the call; the kernel
    // copies the instructions and keeps no pointer.
    let r = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER,
            0 as libc::c_uint,
            &prog as *const libc::sock_fprog,
        )
    };
    if r != 0 {
        return Err(Errno::from_raw_os_error(last_errno()));
    }
    Ok(())
}

/// Waits for the parent's go (ID maps written, the process in its cgroup);
/// exits when the parent gave up. Then makes the cgroup namespace, so that
/// the run's cgroup is its root (as runc does).
fn await_parent(sync: RawFd) -> rustix::io::Result<()> {
    let mut byte = [0u8; 1];
    // SAFETY: the sync fd is the read end of the parent's pipe, open here.
    let sync = unsafe { BorrowedFd::borrow_raw(sync) };
    match rustix::io::read(sync, &mut byte) {
        Ok(1) => {}
        _ => exit(1),
    }
    // SAFETY: unshare(CLONE_NEWCGROUP) changes only this process's cgroup
    // namespace; the child has a single thread.
    if unsafe { libc::unshare(libc::CLONE_NEWCGROUP) } != 0 {
        return Err(Errno::from_raw_os_error(last_errno()));
    }
    Ok(())
}

/// Runs op `i`; returns how many of the following ops to skip.
fn run_op(plan: &mut ChildPlan, i: usize) -> rustix::io::Result<usize> {
    let report_fd = plan.fds.report;
    if let Op::Mountpoint {
        prefixes,
        dir,
        stub,
        skip_if_dangling,
    } = &plan.ops[i]
    {
        return match mountpoint(prefixes, *dir)? {
            Target::Exists => Ok(0),
            Target::Created(first) => {
                if let Some(id) = stub {
                    report(report_fd, REPORT_STUB, *id, first as u32);
                }
                Ok(0)
            }
            Target::Dangling if *skip_if_dangling > 0 => Ok(usize::from(*skip_if_dangling)),
            Target::Dangling => Err(Errno::NOENT),
        };
    }
    run_simple_op(plan, i).map(|()| 0)
}

fn run_simple_op(plan: &mut ChildPlan, i: usize) -> rustix::io::Result<()> {
    match &plan.ops[i] {
        Op::MakeRootPrivate => rustix::mount::mount_change(
            c"/",
            MountPropagationFlags::PRIVATE | MountPropagationFlags::REC,
        ),
        Op::Overlay { args, target } => args.mount(target),
        Op::OpenTree {
            source,
            slot,
            recursive,
        } => {
            let mut flags = OpenTreeFlags::OPEN_TREE_CLONE | OpenTreeFlags::OPEN_TREE_CLOEXEC;
            if *recursive {
                flags |= OpenTreeFlags::AT_RECURSIVE;
            }
            let fd = rustix::mount::open_tree(CWD, source.as_c_str(), flags)?;
            let slot = *slot;
            plan.slots[slot] = Some(fd);
            Ok(())
        }
        Op::PivotRoot { new_root } => pivot_root(new_root),
        Op::Mount {
            source,
            target,
            fstype,
            flags,
            data,
            optional,
        } => {
            let r = rustix::mount::mount(
                source.as_c_str(),
                target.as_c_str(),
                fstype.as_c_str(),
                *flags,
                data.as_deref(),
            );
            skip_missing(r, *optional)
        }
        Op::MountDir {
            target,
            fstype,
            flags,
        } => {
            match rustix::fs::lstat(target.as_c_str()) {
                Ok(st)
                    if rustix::fs::FileType::from_raw_mode(st.st_mode)
                        == rustix::fs::FileType::Directory => {}
                Ok(_) => return Err(Errno::NOTDIR),
                Err(Errno::NOENT) => {
                    rustix::fs::mkdir(target.as_c_str(), Mode::from_raw_mode(0o755))?
                }
                Err(e) => return Err(e),
            }
            rustix::mount::mount(
                fstype.as_c_str(),
                target.as_c_str(),
                fstype.as_c_str(),
                *flags,
                None,
            )
        }
        Op::Mkdir { path, mode } => exists_ok(rustix::fs::mkdir(
            path.as_c_str(),
            Mode::from_raw_mode(*mode),
        )),
        Op::WriteFile { path, content } => {
            let flags = OFlags::CREATE | OFlags::EXCL | OFlags::WRONLY | OFlags::CLOEXEC;
            let fd = rustix::fs::open(path.as_c_str(), flags, Mode::from_raw_mode(0o644))?;
            let mut rest = &content[..];
            while !rest.is_empty() {
                match rustix::io::write(&fd, rest) {
                    Ok(n) => rest = &rest[n..],
                    Err(Errno::INTR) => {}
                    Err(e) => return Err(e),
                }
            }
            Ok(())
        }
        Op::Mknod { path, dev } => {
            let r = rustix::fs::mknodat(
                CWD,
                path.as_c_str(),
                rustix::fs::FileType::CharacterDevice,
                Mode::from_raw_mode(0o666),
                *dev,
            );
            exists_ok(r)?;
            // mknod applies the umask; the nodes are 0666 like runc's.
            rustix::fs::chmod(path.as_c_str(), Mode::from_raw_mode(0o666))
        }
        Op::Symlink { target, link } => {
            exists_ok(rustix::fs::symlink(target.as_c_str(), link.as_c_str()))
        }
        Op::Mountpoint { .. } => Ok(()),
        Op::MoveMount { slot, target } => {
            let Some(fd) = plan.slots[*slot].take() else {
                return Err(Errno::BADF);
            };
            let flags =
                MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH | MoveMountFlags::MOVE_MOUNT_T_SYMLINKS;
            rustix::mount::move_mount(fd.as_fd(), c"", CWD, target.as_c_str(), flags)
        }
        Op::RemountReadOnly { target, optional } => {
            skip_missing(remount_read_only(target), *optional)
        }
        Op::AwaitParent => await_parent(plan.fds.sync),
        Op::MkdirOwned { path, uid, gid } => {
            match rustix::fs::mkdir(path.as_c_str(), Mode::from_raw_mode(0o755)) {
                Ok(()) => rustix::fs::chownat(
                    CWD,
                    path.as_c_str(),
                    Some(Uid::from_raw(*uid)),
                    Some(rustix::fs::Gid::from_raw(*gid)),
                    AtFlags::SYMLINK_NOFOLLOW,
                ),
                Err(Errno::EXIST) => Ok(()),
                Err(e) => Err(e),
            }
        }
    }
}

fn skip_missing(r: rustix::io::Result<()>, optional: bool) -> rustix::io::Result<()> {
    match r {
        Err(Errno::NOENT) if optional => Ok(()),
        r => r,
    }
}

fn exists_ok(r: rustix::io::Result<()>) -> rustix::io::Result<()> {
    match r {
        Err(Errno::EXIST) => Ok(()),
        r => r,
    }
}

/// runc's pivot_root(".", "."): no directory for the old root is needed in
/// the new one, so nothing is created in the layer.
fn pivot_root(new_root: &CStr) -> rustix::io::Result<()> {
    let dir = OFlags::DIRECTORY | OFlags::PATH | OFlags::CLOEXEC;
    let old = rustix::fs::open(c"/", dir, Mode::empty())?;
    let new = rustix::fs::open(new_root, dir, Mode::empty())?;
    rustix::process::fchdir(&new)?;
    rustix::process::pivot_root(c".", c".")?;
    // The old root is now stacked on "."; detach it from underneath us.
    rustix::process::fchdir(&old)?;
    rustix::mount::unmount(c".", UnmountFlags::DETACH)?;
    rustix::process::chdir(c"/")
}

/// What [`mountpoint`] found or made.
enum Target {
    Exists,
    /// Created from this prefix on.
    Created(usize),
    /// A symlink to nothing: nothing to mount on.
    Dangling,
}

fn mountpoint(prefixes: &[std::ffi::CString], dir: bool) -> rustix::io::Result<Target> {
    let Some((last, parents)) = prefixes.split_last() else {
        return Ok(Target::Exists);
    };
    match rustix::fs::stat(last.as_c_str()) {
        Ok(_) => return Ok(Target::Exists),
        Err(Errno::NOENT) => {
            if rustix::fs::lstat(last.as_c_str()).is_ok() {
                return Ok(Target::Dangling);
            }
        }
        Err(e) => return Err(e),
    }
    let mut first = None;
    for (i, p) in parents.iter().enumerate() {
        match rustix::fs::mkdir(p.as_c_str(), Mode::from_raw_mode(0o755)) {
            Ok(()) => {
                first.get_or_insert(i);
            }
            Err(Errno::EXIST) => {}
            Err(e) => return Err(e),
        }
    }
    if dir {
        rustix::fs::mkdir(last.as_c_str(), Mode::from_raw_mode(0o755))?;
    } else {
        let flags =
            OFlags::CREATE | OFlags::EXCL | OFlags::WRONLY | OFlags::CLOEXEC | OFlags::NOFOLLOW;
        drop(rustix::fs::open(
            last.as_c_str(),
            flags,
            Mode::from_raw_mode(0o644),
        )?);
    }
    Ok(Target::Created(*first.get_or_insert(parents.len())))
}

/// MS_REMOUNT|MS_BIND|MS_RDONLY, keeping nosuid/nodev/noexec/atime flags:
/// in a user namespace the kernel refuses to clear flags it locked.
fn remount_read_only(target: &CStr) -> rustix::io::Result<()> {
    let st = rustix::fs::statvfs(target)?;
    let mut flags = MountFlags::BIND | MountFlags::RDONLY;
    for (st_flag, ms_flag) in [
        (StatVfsMountFlags::NOSUID, MountFlags::NOSUID),
        (StatVfsMountFlags::NODEV, MountFlags::NODEV),
        (StatVfsMountFlags::NOEXEC, MountFlags::NOEXEC),
        (StatVfsMountFlags::NOATIME, MountFlags::NOATIME),
        (StatVfsMountFlags::NODIRATIME, MountFlags::NODIRATIME),
        (StatVfsMountFlags::RELATIME, MountFlags::RELATIME),
    ] {
        if st.f_flag.contains(st_flag) {
            flags |= ms_flag;
        }
    }
    rustix::mount::mount_remount(target, flags, c"")
}

/// The kernel's `struct sigaction` for rt_sigaction(2) on Linux.
#[repr(C)]
struct KernelSigaction {
    handler: usize,
    flags: libc::c_ulong,
    restorer: usize,
    mask: u64,
}

fn reset_signals() {
    // Rust ignores SIGPIPE in the builder, and the builder may inherit more
    // ignored signals (even glibc's reserved 32 and 33, which its sigaction
    // wrapper refuses to touch); ignored signals survive exec, and a RUN
    // must start with default dispositions and an empty mask. So the raw
    // syscall, for every signal.
    let default = KernelSigaction {
        handler: 0,
        flags: 0,
        restorer: 0,
        mask: 0,
    };
    for sig in 1..=64 {
        if sig == libc::SIGKILL || sig == libc::SIGSTOP {
            continue;
        }
        // SAFETY: rt_sigaction with a valid SIG_DFL action of the kernel's
        // layout, no old-action pointer and the kernel's sigset size (8).
        unsafe {
            libc::syscall(
                libc::SYS_rt_sigaction,
                sig,
                &default,
                std::ptr::null_mut::<u8>(),
                8usize,
            )
        };
    }
    let empty: u64 = 0;
    // SAFETY: rt_sigprocmask(SIG_SETMASK) with an empty 8-byte set.
    unsafe {
        libc::syscall(
            libc::SYS_rt_sigprocmask,
            libc::SIG_SETMASK,
            &empty,
            std::ptr::null_mut::<u8>(),
            8usize,
        )
    };
}

/// `ip link set lo up` in the new network namespace.
fn loopback_up() -> rustix::io::Result<()> {
    // SAFETY: socket(2) with constant arguments; the result is checked.
    let sock = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if sock < 0 {
        return Err(Errno::from_raw_os_error(last_errno()));
    }
    // SAFETY: ifreq is plain data; "lo" fits IFNAMSIZ with its NUL; the
    // ioctls read/write only the ifreq passed; `sock` is ours to close.
    unsafe {
        let mut ifr: libc::ifreq = std::mem::zeroed();
        for (d, s) in ifr.ifr_name.iter_mut().zip(b"lo\0") {
            *d = *s as libc::c_char;
        }
        let mut r = libc::ioctl(sock, libc::SIOCGIFFLAGS, &mut ifr);
        if r == 0 {
            ifr.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
            r = libc::ioctl(sock, libc::SIOCSIFFLAGS, &ifr);
        }
        let errno = last_errno();
        libc::close(sock);
        if r != 0 {
            return Err(Errno::from_raw_os_error(errno));
        }
    }
    Ok(())
}

fn last_errno() -> i32 {
    std::io::Error::last_os_error()
        .raw_os_error()
        .unwrap_or(libc::EIO)
}

/// fds 0-2 from the plan; everything else close-on-exec, so the process
/// sees exactly 0, 1 and 2.
fn setup_stdio(plan: &ChildPlan) -> rustix::io::Result<()> {
    for (src, dst) in [
        (plan.fds.stdin, 0),
        (plan.fds.stdout, 1),
        (plan.fds.stderr, 2),
    ] {
        // SAFETY: dup2/fcntl on descriptor numbers the parent opened for us
        // (all >= 3, so no source is clobbered by an earlier dup2).
        let r = unsafe {
            if src == dst {
                libc::fcntl(dst, libc::F_SETFD, 0)
            } else {
                libc::dup2(src, dst)
            }
        };
        if r < 0 {
            return Err(Errno::from_raw_os_error(last_errno()));
        }
    }
    const CLOSE_RANGE_CLOEXEC: libc::c_uint = 1 << 2;
    // SAFETY: close_range only changes descriptor flags.
    let r = unsafe {
        libc::syscall(
            libc::SYS_close_range,
            3 as libc::c_uint,
            libc::c_uint::MAX,
            CLOSE_RANGE_CLOEXEC,
        )
    };
    if r != 0 {
        // Kernels before 5.11: mark them one by one.
        for fd in 3..65536 {
            // SAFETY: F_SETFD on an fd that may not exist fails with EBADF.
            unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
        }
    }
    Ok(())
}

/// execve each PATH candidate in turn, like Go's exec.LookPath in runc.
fn exec(plan: &ChildPlan) -> ! {
    let mut err = Errno::NOENT;
    for path in &plan.exec.candidates {
        // SAFETY: argv and envp are NULL-terminated arrays of pointers into
        // CStrings owned by the plan, alive until exec replaces the image.
        unsafe {
            libc::execve(
                path.as_ptr(),
                plan.exec.argv.as_ptr(),
                plan.exec.envp.as_ptr(),
            )
        };
        match Errno::from_raw_os_error(last_errno()) {
            Errno::NOENT if rustix::fs::stat(path.as_c_str()).is_ok() => {
                fail(plan, Fixed::Interpreter as u32, Errno::NOENT)
            }
            Errno::NOENT | Errno::NOTDIR => {}
            Errno::ACCESS => err = Errno::ACCESS,
            e => {
                err = e;
                break;
            }
        }
    }
    fail(plan, Fixed::Exec as u32, err)
}
