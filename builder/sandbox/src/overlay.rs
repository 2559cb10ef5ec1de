//! overlayfs mounts: the option string (or the new mount API when the
//! layers do not fit in one page of options) and a guard for COPY's merged
//! view in the builder's own namespace.

use std::ffi::{CStr, CString};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rustix::fs::CWD;
use rustix::mount::{
    FsMountFlags, FsOpenFlags, MountAttrFlags, MountFlags, MoveMountFlags, UnmountFlags,
};

use crate::error::SandboxError;

/// mount(2) copies at most one page of options; the kernel rejects longer
/// data, so past this the layers go one by one through fsconfig.
const MAX_MOUNT_DATA: usize = 4095;
/// fsconfig(2) copies at most 256 bytes of a string value.
const MAX_FSCONFIG_STRING: usize = 255;

/// A fully prepared overlay mount: every string the mount needs, so that the
/// sandbox child can mount without allocating.
#[derive(Debug, Clone)]
pub(crate) struct OverlayArgs {
    /// The legacy option string when it fits in a page, with and without
    /// `volatile`.
    data: Option<(CString, CString)>,
    lowerdirs: Vec<CString>,
    upperdir: Option<CString>,
    workdir: Option<CString>,
    /// `(key, value)`; a `None` value is a flag. `volatile` is not among
    /// them: see [`OverlayArgs::volatile`].
    options: Vec<(&'static CStr, Option<&'static CStr>)>,
    /// Mount with `volatile` when the kernel has it (see [`OverlayArgs::new`]).
    volatile: bool,
}

impl OverlayArgs {
    /// `lowerdirs` top-most first. Without an upperdir the overlay is
    /// read-only. `userxattr` is for mounts inside a user namespace.
    pub(crate) fn new(
        lowerdirs: &[PathBuf],
        upper: Option<(&Path, &Path)>,
        userxattr: bool,
    ) -> Result<Self, SandboxError> {
        if lowerdirs.is_empty() {
            return Err(SandboxError::InvalidSpec(
                "an overlay needs at least one lowerdir".into(),
            ));
        }
        let cstr = |p: &Path| -> Result<CString, SandboxError> {
            let bytes = p.as_os_str().as_bytes();
            // overlayfs splits lowerdir on ':' and options on ','; rather
            // than escaping, refuse such paths (hoist's own never have them).
            if !p.is_absolute() || bytes.iter().any(|b| matches!(b, b':' | b',' | b'\\' | 0)) {
                return Err(SandboxError::InvalidSpec(format!(
                    "overlay path {} must be absolute without ':', ',' or '\\'",
                    p.display()
                )));
            }
            CString::new(bytes).map_err(|_| SandboxError::InvalidSpec(format!("{}", p.display())))
        };
        let lowers = lowerdirs
            .iter()
            .map(|p| cstr(p))
            .collect::<Result<Vec<_>, _>>()?;
        let (upperdir, workdir) = match upper {
            Some((u, w)) => (Some(cstr(u)?), Some(cstr(w)?)),
            None => (None, None),
        };
        // Upper dirs must be self-contained diffs: no redirect xattrs for
        // renamed directories and no metadata-only copy-ups, whatever the
        // kernel's defaults. userxattr already implies both (and rejects
        // redirect_dir=off).
        let options: Vec<(&'static CStr, Option<&'static CStr>)> = if userxattr {
            vec![(c"userxattr", None)]
        } else {
            vec![
                (c"index", Some(c"off")),
                (c"redirect_dir", Some(c"off")),
                (c"metacopy", Some(c"off")),
            ]
        };
        // `volatile` (Linux 5.10): no sync of the upper filesystem, above
        // all none when the overlay is unmounted, which otherwise syncs
        // every dirty page of the whole filesystem the store is on (a RUN
        // that wrote 237 MB waited for all of it to reach the disk before
        // its layer was even written). Nothing is lost: an upperdir
        // becomes a snapshot, which the store never syncs either (see
        // `Store::commit_snapshot`). Each upperdir and workdir is mounted
        // once, so the kernel's refusal to mount a workdir used with
        // `volatile` again never applies. Kernels before 5.10 reject the
        // option with EINVAL, so `mount` then tries again without it.
        let volatile = upperdir.is_some();
        let mut data = Vec::new();
        data.extend_from_slice(b"lowerdir=");
        for (i, l) in lowers.iter().enumerate() {
            if i > 0 {
                data.push(b':');
            }
            data.extend_from_slice(l.as_bytes());
        }
        if let (Some(u), Some(w)) = (&upperdir, &workdir) {
            data.extend_from_slice(b",upperdir=");
            data.extend_from_slice(u.as_bytes());
            data.extend_from_slice(b",workdir=");
            data.extend_from_slice(w.as_bytes());
        }
        for (k, v) in &options {
            data.push(b',');
            data.extend_from_slice(k.to_bytes());
            if let Some(v) = v {
                data.push(b'=');
                data.extend_from_slice(v.to_bytes());
            }
        }
        let plain = data.clone();
        if volatile {
            data.extend_from_slice(b",volatile");
        }
        let data = if data.len() <= MAX_MOUNT_DATA {
            let cstring = |bytes| {
                CString::new(bytes).map_err(|_| SandboxError::InvalidSpec("nul in path".into()))
            };
            Some((cstring(data)?, cstring(plain)?))
        } else {
            let too_long = lowers.iter().chain(&upperdir).chain(&workdir);
            if let Some(p) = too_long
                .into_iter()
                .find(|p| p.as_bytes().len() > MAX_FSCONFIG_STRING)
            {
                return Err(SandboxError::InvalidSpec(format!(
                    "overlay path {} is longer than {MAX_FSCONFIG_STRING} bytes",
                    p.to_string_lossy()
                )));
            }
            None
        };
        Ok(Self {
            data,
            lowerdirs: lowers,
            upperdir,
            workdir,
            options,
            volatile,
        })
    }

    /// Mounts the overlay on `target`. Allocation-free, so the sandbox child
    /// may call it between clone and exec.
    pub(crate) fn mount(&self, target: &CStr) -> rustix::io::Result<()> {
        match self.mount_with(target, self.volatile) {
            Err(rustix::io::Errno::INVAL) if self.volatile => self.mount_with(target, false),
            result => result,
        }
    }

    fn mount_with(&self, target: &CStr, volatile: bool) -> rustix::io::Result<()> {
        if let Some((with_volatile, plain)) = &self.data {
            let data = if volatile { with_volatile } else { plain };
            rustix::mount::mount(
                c"overlay",
                target,
                c"overlay",
                MountFlags::empty(),
                data.as_c_str(),
            )?;
            return Ok(());
        }
        // `lowerdir+` (Linux 6.8) takes one layer per call, so the stack
        // depth is not limited by the size of one option string.
        let fs = rustix::mount::fsopen(c"overlay", FsOpenFlags::FSOPEN_CLOEXEC)?;
        rustix::mount::fsconfig_set_string(&fs, c"source", c"overlay")?;
        for lower in &self.lowerdirs {
            rustix::mount::fsconfig_set_string(&fs, c"lowerdir+", lower.as_c_str())?;
        }
        if let (Some(u), Some(w)) = (&self.upperdir, &self.workdir) {
            rustix::mount::fsconfig_set_string(&fs, c"upperdir", u.as_c_str())?;
            rustix::mount::fsconfig_set_string(&fs, c"workdir", w.as_c_str())?;
        }
        for (k, v) in &self.options {
            match v {
                Some(v) => rustix::mount::fsconfig_set_string(&fs, *k, *v)?,
                None => rustix::mount::fsconfig_set_flag(&fs, *k)?,
            }
        }
        if volatile {
            rustix::mount::fsconfig_set_flag(&fs, c"volatile")?;
        }
        rustix::mount::fsconfig_create(&fs)?;
        let mnt =
            rustix::mount::fsmount(&fs, FsMountFlags::FSMOUNT_CLOEXEC, MountAttrFlags::empty())?;
        rustix::mount::move_mount(
            &mnt,
            c"",
            CWD,
            target,
            MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH,
        )
    }

    #[cfg(test)]
    pub(crate) fn uses_mount_api(&self) -> bool {
        self.data.is_none()
    }
}

/// An overlay mounted in the builder's own mount namespace; unmounted when
/// dropped.
#[derive(Debug)]
pub struct MountGuard {
    target: PathBuf,
    mounted: bool,
}

impl MountGuard {
    pub fn target(&self) -> &Path {
        &self.target
    }

    /// Unmounts now and reports failure (drop only tries).
    ///
    /// EBUSY is detached instead: while a RUN of a stage running beside
    /// this one is being set up, its new mount namespace still receives
    /// our unmounts (until it makes its mounts private), and the kernel
    /// refuses one whose propagated copy is busy there. Nothing writes
    /// through that copy, so detaching leaves the upperdir complete.
    pub fn unmount(mut self) -> Result<(), SandboxError> {
        self.mounted = false;
        match rustix::mount::unmount(&self.target, UnmountFlags::empty()) {
            Err(rustix::io::Errno::BUSY) => {
                rustix::mount::unmount(&self.target, UnmountFlags::DETACH)
            }
            other => other,
        }
        .map_err(|e| SandboxError::io(&self.target)(e.into()))
    }
}

impl Drop for MountGuard {
    fn drop(&mut self) {
        if self.mounted {
            // A busy mount (an open file in it) is detached rather than leaked.
            if rustix::mount::unmount(&self.target, UnmountFlags::empty()).is_err() {
                let _ = rustix::mount::unmount(&self.target, UnmountFlags::DETACH);
            }
        }
    }
}

/// Removes an overlay workdir. overlayfs leaves `work/` inside it with mode
/// 000, which only root can delete as is, so a rootless builder must open it
/// up first.
pub fn remove_workdir(workdir: &Path) -> Result<(), SandboxError> {
    use std::os::unix::fs::PermissionsExt;
    for sub in ["work", "index"] {
        let p = workdir.join(sub);
        if p.is_dir() {
            fs_err::set_permissions(&p, std::fs::Permissions::from_mode(0o700))
                .map_err(SandboxError::io(&p))?;
        }
    }
    fs_err::remove_dir_all(workdir).map_err(SandboxError::io(workdir))
}

/// Mounts `lowerdirs` (top-most first) with `upperdir`/`workdir` on `target`
/// in the current mount namespace, so the builder can COPY into the merged
/// view. Needs root, real or of the user namespace the builder runs in
/// (then with `userxattr`). Unmounted when the guard drops, and gone with
/// the builder's private mount namespace if the builder dies first (see
/// [`crate::isolate_mounts`]).
pub fn mount_overlay(
    lowerdirs: &[PathBuf],
    upperdir: &Path,
    workdir: &Path,
    target: &Path,
) -> Result<MountGuard, SandboxError> {
    let userxattr = crate::idmap::in_user_namespace();
    let args = OverlayArgs::new(lowerdirs, Some((upperdir, workdir)), userxattr)?;
    mount_args(&args, target)
}

/// A read-only merged view of `lowerdirs` on `target` (no upperdir).
pub fn mount_overlay_read_only(
    lowerdirs: &[PathBuf],
    target: &Path,
) -> Result<MountGuard, SandboxError> {
    let userxattr = crate::idmap::in_user_namespace();
    let args = OverlayArgs::new(lowerdirs, None, userxattr)?;
    mount_args(&args, target)
}

fn mount_args(args: &OverlayArgs, target: &Path) -> Result<MountGuard, SandboxError> {
    let t = CString::new(target.as_os_str().as_bytes())
        .map_err(|_| SandboxError::InvalidSpec(format!("{}", target.display())))?;
    args.mount(&t).map_err(|e| SandboxError::Overlay {
        target: target.to_owned(),
        source: e.into(),
    })?;
    Ok(MountGuard {
        target: target.to_owned(),
        mounted: true,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn option_string_cases() {
        let l = |v: &[&str]| v.iter().map(PathBuf::from).collect::<Vec<_>>();
        let u = (Path::new("/u"), Path::new("/w"));
        type Case<'a> = (Vec<PathBuf>, Option<(&'a Path, &'a Path)>, bool, &'a str);
        let cases: Vec<Case<'_>> = vec![
            (
                l(&["/a", "/b"]),
                Some(u),
                false,
                "lowerdir=/a:/b,upperdir=/u,workdir=/w,index=off,redirect_dir=off,metacopy=off,volatile",
            ),
            (
                l(&["/a"]),
                Some(u),
                true,
                "lowerdir=/a,upperdir=/u,workdir=/w,userxattr,volatile",
            ),
            (
                l(&["/a"]),
                None,
                false,
                "lowerdir=/a,index=off,redirect_dir=off,metacopy=off",
            ),
        ];
        for (lowers, upper, ux, want) in cases {
            let args = OverlayArgs::new(&lowers, upper, ux).unwrap();
            let (got, plain) = args.data.as_ref().unwrap();
            assert_eq!(
                got.to_str().unwrap(),
                want,
                "case {lowers:?} userxattr={ux}"
            );
            let want_plain = want.strip_suffix(",volatile").unwrap_or(want);
            assert_eq!(plain.to_str().unwrap(), want_plain, "the retry's options");
        }
    }

    #[test]
    fn long_stacks_switch_to_the_mount_api() {
        let lowers: Vec<PathBuf> = (0..100)
            .map(|i| PathBuf::from(format!("/var/lib/hoist/hoist/snapshots/{i:064x}")))
            .collect();
        let args = OverlayArgs::new(&lowers, None, false).unwrap();
        assert!(
            args.uses_mount_api(),
            "100 layers of 95 bytes exceed a page"
        );
    }

    #[test]
    fn rejects_unsafe_paths() {
        for bad in ["/a:b", "/a,b", "relative", "/a\\b"] {
            let r = OverlayArgs::new(&[PathBuf::from(bad)], None, false);
            assert!(r.is_err(), "case {bad:?} should be rejected");
        }
    }
}
