//! Rootless ID mapping: the caller's /etc/subuid ranges through the setuid
//! newuidmap/newgidmap helpers, or a single-ID mapping (uid 0 inside = the
//! caller) that any user may write.

use std::path::Path;
use std::process::Command;

use super::error::SandboxError;
use super::spec::IdMapping;

/// An ID range from /etc/subuid or /etc/subgid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SubRange {
    pub start: u32,
    pub count: u32,
}

/// The mapping decided before the sandbox starts, written once it has.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum IdMap {
    /// 0 inside = the caller's uid/gid; nothing else is mapped.
    Single { uid: u32, gid: u32 },
    /// 0 inside = the caller; 1.. inside = the subordinate range.
    Sub {
        uid: u32,
        gid: u32,
        uids: SubRange,
        gids: SubRange,
    },
}

impl IdMap {
    pub(crate) fn resolve(mapping: IdMapping) -> Result<IdMap, SandboxError> {
        let uid = rustix::process::geteuid().as_raw();
        let gid = rustix::process::getegid().as_raw();
        if mapping == IdMapping::SingleId {
            return Ok(IdMap::Single { uid, gid });
        }
        let name = nix::unistd::User::from_uid(uid.into())
            .ok()
            .flatten()
            .map(|u| u.name);
        let read = |p: &str| fs_err::read_to_string(p).unwrap_or_default();
        let uids = find_range(&read("/etc/subuid"), name.as_deref(), uid);
        let gids = find_range(&read("/etc/subgid"), name.as_deref(), uid);
        let helpers = ["newuidmap", "newgidmap"]
            .iter()
            .all(|h| find_program(h).is_some());
        match (uids, gids) {
            (Some(uids), Some(gids)) if helpers => Ok(IdMap::Sub {
                uid,
                gid,
                uids,
                gids,
            }),
            _ => Ok(IdMap::Single { uid, gid }),
        }
    }

    /// Whether `uid` inside the namespace has an outside owner.
    pub(crate) fn maps_uid(&self, inner: u32) -> bool {
        match self {
            IdMap::Single { .. } => inner == 0,
            IdMap::Sub { uids, .. } => inner <= uids.count,
        }
    }

    pub(crate) fn maps_gid(&self, inner: u32) -> bool {
        match self {
            IdMap::Single { .. } => inner == 0,
            IdMap::Sub { gids, .. } => inner <= gids.count,
        }
    }

    /// setgroups(2) is denied in a single-ID mapping written without privilege.
    pub(crate) fn allows_setgroups(&self) -> bool {
        matches!(self, IdMap::Sub { .. })
    }

    /// Writes the maps of the process `pid`, which has just made its user
    /// namespace and waits for them.
    pub(crate) fn apply(&self, pid: i32) -> Result<(), SandboxError> {
        match *self {
            IdMap::Single { uid, gid } => {
                let proc = format!("/proc/{pid}");
                write_proc(&format!("{proc}/setgroups"), "deny")?;
                write_proc(&format!("{proc}/uid_map"), &format!("0 {uid} 1\n"))?;
                write_proc(&format!("{proc}/gid_map"), &format!("0 {gid} 1\n"))
            }
            IdMap::Sub {
                uid,
                gid,
                uids,
                gids,
            } => {
                run_helper("newuidmap", pid, uid, uids)?;
                run_helper("newgidmap", pid, gid, gids)
            }
        }
    }
}

fn write_proc(path: &str, content: &str) -> Result<(), SandboxError> {
    fs_err::write(path, content).map_err(|e| SandboxError::IdMap(e.to_string()))
}

fn run_helper(helper: &str, pid: i32, own: u32, range: SubRange) -> Result<(), SandboxError> {
    let out = Command::new(helper)
        .args([pid.to_string(), "0".into(), own.to_string(), "1".into()])
        .args(["1".into(), range.start.to_string(), range.count.to_string()])
        .output()
        .map_err(|e| SandboxError::IdMap(format!("{helper}: {e}")))?;
    if !out.status.success() {
        return Err(SandboxError::IdMap(format!(
            "{helper} {pid} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(())
}

fn find_program(name: &str) -> Option<std::path::PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/sbin:/usr/bin:/sbin:/bin".into());
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| Path::new(p).is_file())
}

/// The first `owner:start:count` line whose owner is the user's name or uid.
pub(crate) fn find_range(content: &str, name: Option<&str>, uid: u32) -> Option<SubRange> {
    let uid = uid.to_string();
    content.lines().find_map(|line| {
        let mut f = line.trim().splitn(3, ':');
        let (owner, start, count) = (f.next()?, f.next()?, f.next()?);
        if owner != uid && Some(owner) != name {
            return None;
        }
        let range = SubRange {
            start: start.parse().ok()?,
            count: count.parse().ok()?,
        };
        (range.count > 0).then_some(range)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn find_range_cases() {
        let file = "# c\nalice:100000:65536\n1001:200000:1000\nbad:line\nzero:1:0\n";
        let cases = [
            (Some("alice"), 1000, Some((100000, 65536))),
            (Some("bob"), 1001, Some((200000, 1000))),
            (Some("carol"), 1002, None),
            (Some("zero"), 5, None),
            (None, 1001, Some((200000, 1000))),
        ];
        for (name, uid, want) in cases {
            let got = find_range(file, name, uid).map(|r| (r.start, r.count));
            assert_eq!(got, want, "case {name:?}/{uid}");
        }
    }
}
