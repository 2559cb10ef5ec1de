//! USER and `--chown` specs resolved against the image being built.
//!
//! The image's `/etc/passwd` and `/etc/group` are read as data, never through
//! the host's NSS, and opened with `RESOLVE_IN_ROOT` so that an image whose
//! `/etc/passwd` is a symlink to `/host/file` cannot make hoist read a host
//! file. The rules follow runc's `GetExecUser` as Docker uses it: a name or a
//! number for each half, a number with no passwd entry gets gid 0, and the
//! supplementary groups are the groups listing the user, plus the primary
//! group (containerd's `WithAdditionalGIDs`).

use std::io::{self, BufRead, BufReader};
use std::path::{Path, PathBuf};

use rustix::fs::OFlags;

use hoist_store::inroot::Root;

/// A resolved user, ready for the sandbox's credentials and `HOME`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResolvedUser {
    pub uid: u32,
    pub gid: u32,
    /// Supplementary groups, the primary gid first, without duplicates.
    pub additional_gids: Vec<u32>,
    /// From the passwd entry, or `/` like Docker when there is none.
    pub home: String,
    pub name: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum UserError {
    #[error("unable to find user {0}: no matching entries in passwd file")]
    NoUser(String),
    #[error("unable to find group {0}: no matching entries in group file")]
    NoGroup(String),
    #[error("invalid user spec {0:?}")]
    InvalidSpec(String),
    #[error("uids and gids must be in range 0-2147483647: {0}")]
    OutOfRange(String),
    #[error("reading {path}: {source}")]
    Read { path: PathBuf, source: io::Error },
}

/// One `/etc/passwd` line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PasswdEntry {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    pub home: String,
    pub shell: String,
}

/// One `/etc/group` line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupEntry {
    pub name: String,
    pub gid: u32,
    pub members: Vec<String>,
}

/// The colon-separated records of a passwd or group file: blank lines and
/// comments skipped, fields trimmed of the line's surrounding space.
fn records(reader: impl BufRead) -> io::Result<Vec<Vec<String>>> {
    let mut out = Vec::new();
    for line in reader.lines() {
        let line = line?;
        let line = line.trim();
        if !line.is_empty() && !line.starts_with('#') {
            out.push(line.split(':').map(str::to_owned).collect());
        }
    }
    Ok(out)
}

/// Parses passwd lines; malformed lines are skipped as runc does.
pub fn parse_passwd(reader: impl BufRead) -> io::Result<Vec<PasswdEntry>> {
    Ok(records(reader)?
        .into_iter()
        .filter_map(|fields| {
            let field = |i: usize| fields.get(i).map_or("", String::as_str);
            let (Ok(uid), Ok(gid)) = (field(2).parse(), field(3).parse()) else {
                return None;
            };
            Some(PasswdEntry {
                name: field(0).to_owned(),
                uid,
                gid,
                home: field(5).to_owned(),
                shell: field(6).to_owned(),
            })
        })
        .collect())
}

/// Parses group lines; malformed lines are skipped.
pub fn parse_group(reader: impl BufRead) -> io::Result<Vec<GroupEntry>> {
    Ok(records(reader)?
        .into_iter()
        .filter_map(|fields| {
            let gid = fields.get(2)?.parse().ok()?;
            let members = fields
                .get(3)
                .map(|m| {
                    m.split(',')
                        .map(str::trim)
                        .filter(|m| !m.is_empty())
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default();
            Some(GroupEntry {
                name: fields[0].clone(),
                gid,
                members,
            })
        })
        .collect())
}

/// The user database of one root filesystem.
#[derive(Clone, Debug, Default)]
pub struct UserDb {
    pub passwd: Vec<PasswdEntry>,
    pub groups: Vec<GroupEntry>,
}

impl UserDb {
    /// Reads `etc/passwd` and `etc/group` inside `root`; a missing file is
    /// an empty database (so `FROM scratch` + `USER 1000` works).
    pub fn load(root: &Path) -> Result<Self, UserError> {
        let read_err = |path: &str| {
            let path = root.join(path);
            move |source| UserError::Read { path, source }
        };
        let root_dir = Root::open(root).map_err(read_err(""))?;
        let passwd = match open_data(&root_dir, "etc/passwd").map_err(read_err("etc/passwd"))? {
            Some(file) => parse_passwd(BufReader::new(file)).map_err(read_err("etc/passwd"))?,
            None => Vec::new(),
        };
        let groups = match open_data(&root_dir, "etc/group").map_err(read_err("etc/group"))? {
            Some(file) => parse_group(BufReader::new(file)).map_err(read_err("etc/group"))?,
            None => Vec::new(),
        };
        Ok(Self { passwd, groups })
    }

    /// Resolves a USER spec: `name`, `uid`, `name:group`, `uid:gid`, mixed.
    pub fn resolve(&self, spec: &str) -> Result<ResolvedUser, UserError> {
        let (user_part, group_part) = match spec.split_once(':') {
            Some((u, g)) => (u, Some(g)),
            None => (spec, None),
        };
        if user_part.is_empty() || group_part.is_some_and(str::is_empty) {
            return Err(UserError::InvalidSpec(spec.to_owned()));
        }
        let numeric_uid = parse_id(user_part)?;
        let entry = self
            .passwd
            .iter()
            .find(|e| e.name == user_part || numeric_uid == Some(e.uid));
        let (uid, mut gid, home, name) = match (entry, numeric_uid) {
            (Some(e), _) => (e.uid, e.gid, e.home.clone(), Some(e.name.clone())),
            (None, Some(uid)) => (uid, 0, "/".to_owned(), None),
            (None, None) => return Err(UserError::NoUser(user_part.to_owned())),
        };
        // Supplementary groups as BuildKit HEAD sets them (checked with
        // `id` under it): the groups that list the user as a member (none
        // when USER names a group), and the primary group first unless it
        // is among them (BuildKit's ensureAdditionalGids).
        let mut additional_gids = Vec::new();
        match group_part {
            Some(group) => gid = self.resolve_group(group)?,
            None => {
                if let Some(name) = &name {
                    for g in &self.groups {
                        if g.members.iter().any(|m| m == name) && !additional_gids.contains(&g.gid)
                        {
                            additional_gids.push(g.gid);
                        }
                    }
                }
            }
        }
        if !additional_gids.contains(&gid) {
            additional_gids.insert(0, gid);
        }
        let home = if home.is_empty() {
            "/".to_owned()
        } else {
            home
        };
        Ok(ResolvedUser {
            uid,
            gid,
            additional_gids,
            home,
            name,
        })
    }

    /// Resolves a `--chown` spec to (uid, gid). BuildKit's rule when no group
    /// is given: a name takes its passwd primary group, a number is used as
    /// the gid too (`--chown=1000` means 1000:1000).
    pub fn resolve_chown(&self, spec: &str) -> Result<(u32, u32), UserError> {
        let (user_part, group_part) = match spec.split_once(':') {
            Some((u, g)) => (u, Some(g)),
            None => (spec, None),
        };
        if user_part.is_empty() {
            return Err(UserError::InvalidSpec(spec.to_owned()));
        }
        let uid = match parse_id(user_part)? {
            Some(uid) => uid,
            None => self
                .passwd
                .iter()
                .find(|e| e.name == user_part)
                .map(|e| e.uid)
                .ok_or_else(|| UserError::NoUser(user_part.to_owned()))?,
        };
        let user_gid = match parse_id(user_part)? {
            Some(uid) => uid,
            None => self
                .passwd
                .iter()
                .find(|e| e.name == user_part)
                .map(|e| e.gid)
                .unwrap_or(uid),
        };
        // A group name the image does not have keeps the user's GID (the
        // UID for a numeric user), as BuildKit's `readUser` does.
        let gid = match group_part {
            Some(group) if !group.is_empty() => match self.resolve_group(group) {
                Err(UserError::NoGroup(_)) => user_gid,
                other => other?,
            },
            _ => user_gid,
        };
        Ok((uid, gid))
    }

    fn resolve_group(&self, group: &str) -> Result<u32, UserError> {
        let numeric = parse_id(group)?;
        if let Some(g) = self.groups.iter().find(|g| g.name == group) {
            return Ok(g.gid);
        }
        numeric.ok_or_else(|| UserError::NoGroup(group.to_owned()))
    }
}

/// Resolves a USER spec inside the root filesystem at `root`.
pub fn resolve_user(root: &Path, spec: &str) -> Result<ResolvedUser, UserError> {
    UserDb::load(root)?.resolve(spec)
}

/// Resolves a `--chown` spec inside the root filesystem at `root`. A purely
/// numeric spec never reads the image, as in BuildKit.
pub fn resolve_chown(root: &Path, spec: &str) -> Result<(u32, u32), UserError> {
    if let Some((u, g)) = spec.split_once(':')
        && let (Some(uid), Some(gid)) = (parse_id(u)?, parse_id(g)?)
    {
        return Ok((uid, gid));
    }
    if !spec.contains(':')
        && let Some(uid) = parse_id(spec)?
    {
        return Ok((uid, uid));
    }
    UserDb::load(root)?.resolve_chown(spec)
}

fn parse_id(s: &str) -> Result<Option<u32>, UserError> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Ok(None);
    }
    match s.parse::<u64>() {
        Ok(n) if n <= i32::MAX as u64 => Ok(Some(n as u32)),
        _ => Err(UserError::OutOfRange(s.to_owned())),
    }
}

fn open_data(root: &Root, rel: &str) -> io::Result<Option<std::fs::File>> {
    match root.open_in(Path::new(rel), OFlags::RDONLY, true) {
        Ok(fd) => Ok(Some(std::fs::File::from(fd))),
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(err) => Err(err),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\n\
        daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n\
        app:x:1000:1000:App:/home/app:/bin/sh\n\
        # a comment\n\
        broken line\n\
        nohome:x:1001:100::/:/bin/sh\n";
    const GROUP: &str = "root:x:0:\n\
        wheel:x:10:app,root\n\
        users:x:100:\n\
        app:x:1000:app\n\
        docker:x:999: app , other\n\
        staff:x:50:\n";

    fn db() -> UserDb {
        UserDb {
            passwd: parse_passwd(PASSWD.as_bytes()).unwrap(),
            groups: parse_group(GROUP.as_bytes()).unwrap(),
        }
    }

    #[test]
    fn resolve_table() {
        let db = db();
        let table: &[(&str, u32, u32, &[u32], &str)] = &[
            ("root", 0, 0, &[0, 10], "/root"),
            ("0", 0, 0, &[0, 10], "/root"),
            ("app", 1000, 1000, &[10, 1000, 999], "/home/app"),
            ("1000", 1000, 1000, &[10, 1000, 999], "/home/app"),
            ("app:staff", 1000, 50, &[50], "/home/app"),
            ("app:50", 1000, 50, &[50], "/home/app"),
            ("app:4242", 1000, 4242, &[4242], "/home/app"),
            ("1000:users", 1000, 100, &[100], "/home/app"),
            ("4242", 4242, 0, &[0], "/"),
            ("4242:4243", 4242, 4243, &[4243], "/"),
            ("nohome", 1001, 100, &[100], "/"),
        ];
        for &(spec, uid, gid, gids, home) in table {
            let got = db.resolve(spec).unwrap_or_else(|e| panic!("{spec}: {e}"));
            assert_eq!((got.uid, got.gid), (uid, gid), "{spec}");
            assert_eq!(got.additional_gids, gids, "{spec}");
            assert_eq!(got.home, home, "{spec}");
        }
    }

    #[test]
    fn resolve_errors() {
        let db = db();
        let table = [
            (
                "nobody",
                "unable to find user nobody: no matching entries in passwd file",
            ),
            (
                "app:nogroup",
                "unable to find group nogroup: no matching entries in group file",
            ),
            (
                "4294967296",
                "uids and gids must be in range 0-2147483647: 4294967296",
            ),
            (":0", "invalid user spec \":0\""),
            ("app:", "invalid user spec \"app:\""),
        ];
        for (spec, want) in table {
            let err = db.resolve(spec).unwrap_err();
            assert_eq!(err.to_string(), want, "{spec}");
        }
    }

    #[test]
    fn chown_table() {
        let db = db();
        let table = [
            ("app", (1000, 1000)),
            ("app:staff", (1000, 50)),
            ("1000:staff", (1000, 50)),
            ("4242", (4242, 4242)),
            ("4242:7", (4242, 7)),
            ("app:7", (1000, 7)),
            ("daemon", (1, 1)),
        ];
        for (spec, want) in table {
            assert_eq!(db.resolve_chown(spec).unwrap(), want, "{spec}");
        }
        assert!(db.resolve_chown("ghost").is_err());
    }

    /// `--chown=UID:NAME` with a group the image lacks: BuildKit HEAD
    /// (`readUser`) keeps the GID the user part gave.
    #[test]
    fn r10_chown_unknown_group_falls_back() {
        let db = db();
        let table = [
            ("4242:nosuchgroup", (4242, 4242)),
            ("1000:nosuchgroup", (1000, 1000)),
            ("app:nosuchgroup", (1000, 1000)),
            ("daemon:nosuchgroup", (1, 1)),
        ];
        for (spec, want) in table {
            assert_eq!(db.resolve_chown(spec).unwrap(), want, "{spec}");
        }
        // USER still refuses it, as runc does.
        assert!(db.resolve("app:nosuchgroup").is_err());
    }
}
