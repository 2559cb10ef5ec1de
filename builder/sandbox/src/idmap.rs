//! Rootless ID mapping: the caller's /etc/subuid ranges through the setuid
//! newuidmap/newgidmap helpers, or a single-ID mapping (uid 0 inside = the
//! caller) that any user may write; and the mapping of a user namespace the
//! builder already runs in (rootless `hoist` re-executes itself in one, see
//! [`crate::process`]).

use std::path::Path;
use std::process::Command;
use std::sync::OnceLock;

use crate::error::SandboxError;
use crate::spec::IdMapping;

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
    /// The builder itself already runs in a user namespace other than the
    /// initial one: runs make no new one and can use exactly the IDs it
    /// maps. Ranges are `(first inside, count)`.
    Inherited {
        uids: Vec<(u32, u32)>,
        gids: Vec<(u32, u32)>,
        setgroups: bool,
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

    /// The mapping of the user namespace this process runs in, when that
    /// is not the initial one (whose map is the identity over every ID).
    pub(crate) fn inherited() -> Option<IdMap> {
        let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
        let uids = parse_map(&read("/proc/self/uid_map"));
        if uids == [(0, u32::MAX)] || uids.is_empty() {
            return None;
        }
        Some(IdMap::Inherited {
            uids,
            gids: parse_map(&read("/proc/self/gid_map")),
            setgroups: read("/proc/self/setgroups").trim() == "allow",
        })
    }

    /// Whether a run needs a user namespace of its own (and its maps written).
    pub(crate) fn needs_new_namespace(&self) -> bool {
        !matches!(self, IdMap::Inherited { .. })
    }

    /// Whether `uid` inside the namespace has an outside owner.
    pub(crate) fn maps_uid(&self, inner: u32) -> bool {
        match self {
            IdMap::Single { .. } => inner == 0,
            IdMap::Sub { uids, .. } => inner <= uids.count,
            IdMap::Inherited { uids, .. } => in_ranges(uids, inner),
        }
    }

    pub(crate) fn maps_gid(&self, inner: u32) -> bool {
        match self {
            IdMap::Single { .. } => inner == 0,
            IdMap::Sub { gids, .. } => inner <= gids.count,
            IdMap::Inherited { gids, .. } => in_ranges(gids, inner),
        }
    }

    /// setgroups(2) is denied in a single-ID mapping written without privilege.
    pub(crate) fn allows_setgroups(&self) -> bool {
        match self {
            IdMap::Single { .. } => false,
            IdMap::Sub { .. } => true,
            IdMap::Inherited { setgroups, .. } => *setgroups,
        }
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
            // Written once, by whoever made the namespace.
            IdMap::Inherited { .. } => Ok(()),
        }
    }
}

/// True when this process runs in a user namespace other than the initial
/// one, where overlayfs must be mounted with `userxattr`. Namespaces only
/// change before the builder starts, so the answer is read once.
pub fn in_user_namespace() -> bool {
    static IN_USERNS: OnceLock<bool> = OnceLock::new();
    *IN_USERNS.get_or_init(|| IdMap::inherited().is_some())
}

/// `inside outside count` lines of /proc/<pid>/uid_map as `(inside, count)`.
fn parse_map(content: &str) -> Vec<(u32, u32)> {
    content
        .lines()
        .filter_map(|line| {
            let mut f = line.split_whitespace().map(str::parse::<u32>);
            let (inside, _outside, count) = (f.next()?.ok()?, f.next()?.ok()?, f.next()?.ok()?);
            Some((inside, count))
        })
        .collect()
}

fn in_ranges(ranges: &[(u32, u32)], id: u32) -> bool {
    ranges
        .iter()
        .any(|&(first, count)| id >= first && u64::from(id) < u64::from(first) + u64::from(count))
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

    #[test]
    fn inherited_map_cases() {
        let map = |uid_map: &str| IdMap::Inherited {
            uids: parse_map(uid_map),
            gids: parse_map(uid_map),
            setgroups: true,
        };
        // (case, uid_map, id, mapped)
        let cases = [
            ("single, root", "0 1000 1\n", 0, true),
            ("single, other", "0 1000 1\n", 1, false),
            ("sub, first", "0 1000 1\n1 200000 65536\n", 1, true),
            ("sub, last", "0 1000 1\n1 200000 65536\n", 65536, true),
            ("sub, past", "0 1000 1\n1 200000 65536\n", 65537, false),
            ("full", "0 0 4294967295\n", u32::MAX - 1, true),
        ];
        for (name, uid_map, id, want) in cases {
            let m = map(uid_map);
            assert_eq!(m.maps_uid(id), want, "case {name}: uid {id}");
            assert_eq!(m.maps_gid(id), want, "case {name}: gid {id}");
        }
    }
}
