//! `listxattrat(2)` (Linux 6.13), which rustix does not wrap yet: the
//! extended attribute names of a file named relative to a directory fd.
//! The only other way to list them without following the name is a path,
//! and a path through `/proc/self/fd` costs a walk through procfs a call.

use std::ffi::CStr;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::sync::atomic::{AtomicBool, Ordering};

/// Cleared when the kernel (or a seccomp filter around us) refuses the
/// call, so that callers fall back without asking again.
static SUPPORTED: AtomicBool = AtomicBool::new(true);

/// The NUL-separated attribute names of `name` in `dir` (not followed
/// when it is a symlink), written into `buf`; their length is returned.
/// An empty `buf` only asks for that length. `Ok(None)` when this kernel
/// has no `listxattrat`: the caller then lists them another way.
pub fn list_xattrs_at(
    dir: BorrowedFd<'_>,
    name: &CStr,
    buf: &mut [u8],
) -> io::Result<Option<usize>> {
    if !SUPPORTED.load(Ordering::Relaxed) {
        return Ok(None);
    }
    let flags = libc::AT_SYMLINK_NOFOLLOW as libc::c_uint;
    let list = if buf.is_empty() {
        std::ptr::null_mut()
    } else {
        buf.as_mut_ptr()
    };
    // SAFETY: `name` is NUL-terminated and `dir` is open for the call; the
    // kernel writes at most `buf.len()` bytes at `list`, which is `buf`
    // (or null with a size of 0, a query that writes nothing).
    let ret = unsafe {
        libc::syscall(
            libc::c_long::from(syscalls::Sysno::listxattrat.id()),
            dir.as_raw_fd(),
            name.as_ptr(),
            flags,
            list,
            buf.len(),
        )
    };
    if ret >= 0 {
        return Ok(Some(ret as usize));
    }
    let err = io::Error::last_os_error();
    match err.raw_os_error() {
        // Not in this kernel, or filtered out by a seccomp profile that
        // predates it.
        Some(libc::ENOSYS | libc::EPERM) => {
            SUPPORTED.store(false, Ordering::Relaxed);
            Ok(None)
        }
        _ => Err(err),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    fn list(dir: &std::fs::File, name: &str) -> io::Result<Option<Vec<u8>>> {
        let name = std::ffi::CString::new(name).unwrap();
        let Some(len) = list_xattrs_at(dir.as_fd(), &name, &mut [])? else {
            return Ok(None);
        };
        let mut buf = vec![0; len];
        let len = list_xattrs_at(dir.as_fd(), &name, &mut buf)?.unwrap();
        buf.truncate(len);
        Ok(Some(buf))
    }

    #[test]
    fn lists_names_relative_to_a_directory_without_following_links() {
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("file");
        std::fs::write(&file, "x").unwrap();
        std::fs::write(tmp.path().join("plain"), "y").unwrap();
        std::os::unix::fs::symlink("file", tmp.path().join("link")).unwrap();
        rustix::fs::setxattr(&file, "user.a", b"1", rustix::fs::XattrFlags::empty()).unwrap();
        rustix::fs::setxattr(&file, "user.b", b"2", rustix::fs::XattrFlags::empty()).unwrap();
        let dir = std::fs::File::open(tmp.path()).unwrap();
        let Some(names) = list(&dir, "file").unwrap() else {
            // A kernel before 6.13: the fallback is the caller's.
            assert!(!SUPPORTED.load(Ordering::Relaxed));
            return;
        };
        let mut names: Vec<&[u8]> = names.split(|b| *b == 0).filter(|n| !n.is_empty()).collect();
        names.sort();
        assert_eq!(names, [b"user.a".as_slice(), b"user.b"]);
        let cases = [("plain", Some(Vec::new())), ("link", Some(Vec::new()))];
        for (name, expected) in cases {
            assert_eq!(list(&dir, name).unwrap(), expected, "case {name}");
        }
        let missing = list(&dir, "missing").unwrap_err();
        assert_eq!(missing.raw_os_error(), Some(libc::ENOENT));
    }
}
