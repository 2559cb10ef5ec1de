//! `RUN --mount=...`: BuildKit's `parseMount`, with every key it accepts.
//!
//! See <https://docs.docker.com/reference/dockerfile/#run---mount>.

use serde::Serialize;

use crate::expand::ExpandError;
use crate::suggest::nearest;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MountType {
    Bind,
    Cache,
    Tmpfs,
    Secret,
    Ssh,
}

impl MountType {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Bind => "bind",
            Self::Cache => "cache",
            Self::Tmpfs => "tmpfs",
            Self::Secret => "secret",
            Self::Ssh => "ssh",
        }
    }
}

/// How concurrent builds share a cache mount.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Sharing {
    Shared,
    Private,
    Locked,
}

/// One `--mount` of a RUN.
///
/// In an instruction as parsed, values holding a `$` are not yet known:
/// typed fields that need them stay at their defaults until
/// [`crate::Instruction::expand`] resolves them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RunMount {
    #[serde(rename = "type")]
    pub kind: MountType,
    /// `target`, `dst` or `destination`.
    pub target: Option<String>,
    /// `source` or `src`.
    pub source: Option<String>,
    /// A stage name or index, or an image.
    pub from: Option<String>,
    /// `readonly`/`ro`/`rw`; defaults to read-only for bind, secret and ssh
    /// and read-write for cache and tmpfs.
    pub readonly: bool,
    pub id: Option<String>,
    pub sharing: Option<Sharing>,
    pub mode: Option<u32>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    /// tmpfs size limit in bytes.
    pub size: Option<u64>,
    /// secret and ssh: fail when the secret or agent is missing.
    pub required: bool,
    /// secret: expose the secret as this environment variable.
    pub env: Option<String>,
    /// The flag value as written.
    pub raw: String,
}

/// Every key `--mount` accepts, for suggestions.
const ALL_KEYS: &[&str] = &[
    "type",
    "from",
    "source",
    "target",
    "readonly",
    "id",
    "sharing",
    "required",
    "mode",
    "uid",
    "gid",
    "src",
    "dst",
    "destination",
    "ro",
    "rw",
    "readwrite",
    "size",
    "env",
];

/// Why a `--mount` is invalid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum MountError {
    Invalid(String),
    Expand(ExpandError),
}

/// Parses one `--mount` value. `expand` resolves a value; when it returns
/// `None` the value is not known yet (it holds a variable) and is skipped,
/// except for `from`, which BuildKit never expands.
pub(crate) fn parse_mount(
    raw: &str,
    expand: &dyn Fn(&str) -> Result<Option<String>, ExpandError>,
) -> Result<RunMount, MountError> {
    let bad = |m: String| MountError::Invalid(m);
    let fields = csv_fields(raw).map_err(|m| bad(format!("failed to parse csv mounts: {m}")))?;
    let mut m = RunMount {
        kind: MountType::Bind,
        target: None,
        source: None,
        from: None,
        readonly: false,
        id: None,
        sharing: None,
        mode: None,
        uid: None,
        gid: None,
        size: None,
        required: false,
        env: None,
        raw: raw.to_owned(),
    };
    let mut ro_auto = true;
    for field in &fields {
        let (key, value) = match field.split_once('=') {
            Some((k, v)) => (k.to_ascii_lowercase(), Some(v)),
            None => (field.to_ascii_lowercase(), None),
        };
        let Some(value) = value else {
            match key.as_str() {
                "readonly" | "ro" => {
                    m.readonly = true;
                    ro_auto = false;
                    continue;
                }
                "readwrite" | "rw" => {
                    m.readonly = false;
                    ro_auto = false;
                    continue;
                }
                "required" if matches!(m.kind, MountType::Secret | MountType::Ssh) => {
                    m.required = true;
                    continue;
                }
                "required" => {
                    return Err(bad(format!(
                        "unexpected key '{key}' for mount type '{}'",
                        m.kind.as_str()
                    )));
                }
                _ => {
                    return Err(bad(format!(
                        "invalid field '{field}' must be a key=value pair"
                    )));
                }
            }
        };
        if key == "from" && value.contains('$') && value.len() > value.find('$').unwrap_or(0) + 1 {
            return Err(bad(
                "'from' doesn't support variable expansion, define alias stage instead".into(),
            ));
        }
        if !ALL_KEYS.contains(&key.as_str()) {
            let hint = nearest(&key, ALL_KEYS)
                .map(|s| format!(" (did you mean \"{s}\"?)"))
                .unwrap_or_default();
            return Err(bad(format!("unexpected key '{key}' in '{field}'{hint}")));
        }
        let Some(value) = expand(value).map_err(MountError::Expand)? else {
            continue;
        };
        let parse_bool =
            |v: &str| go_parse_bool(v).ok_or_else(|| bad(format!("invalid value for {key}: {v}")));
        match key.as_str() {
            "type" => {
                m.kind = match value.to_ascii_lowercase().as_str() {
                    "bind" => MountType::Bind,
                    "cache" => MountType::Cache,
                    "tmpfs" => MountType::Tmpfs,
                    "secret" => MountType::Secret,
                    "ssh" => MountType::Ssh,
                    _ => {
                        let types = ["bind", "cache", "tmpfs", "secret", "ssh"];
                        let hint = nearest(&value, &types)
                            .map(|s| format!(" (did you mean \"{s}\"?)"))
                            .unwrap_or_default();
                        return Err(bad(format!("unsupported mount type {value:?}{hint}")));
                    }
                }
            }
            "from" => m.from = Some(value),
            "source" | "src" => m.source = Some(value),
            "target" | "dst" | "destination" => m.target = Some(value),
            "readonly" | "ro" => {
                m.readonly = parse_bool(&value)?;
                ro_auto = false;
            }
            "readwrite" | "rw" => {
                m.readonly = !parse_bool(&value)?;
                ro_auto = false;
            }
            "required" => {
                if !matches!(m.kind, MountType::Secret | MountType::Ssh) {
                    return Err(bad(format!(
                        "unexpected key '{key}' for mount type '{}'",
                        m.kind.as_str()
                    )));
                }
                m.required = parse_bool(&value)?;
            }
            "id" => m.id = Some(value),
            "sharing" => {
                m.sharing = Some(match value.to_ascii_lowercase().as_str() {
                    "shared" => Sharing::Shared,
                    "private" => Sharing::Private,
                    "locked" => Sharing::Locked,
                    _ => return Err(bad(format!("unsupported sharing value {value:?}"))),
                })
            }
            "mode" => {
                m.mode = Some(
                    u32::from_str_radix(&value, 8)
                        .map_err(|_| bad(format!("invalid value {value} for mode")))?,
                )
            }
            "uid" => {
                m.uid = Some(
                    value
                        .parse()
                        .map_err(|_| bad(format!("invalid value {value} for uid")))?,
                )
            }
            "gid" => {
                m.gid = Some(
                    value
                        .parse()
                        .map_err(|_| bad(format!("invalid value {value} for gid")))?,
                )
            }
            "size" => {
                if m.kind != MountType::Tmpfs {
                    return Err(bad(format!(
                        "unexpected key '{key}' for mount type '{}'",
                        m.kind.as_str()
                    )));
                }
                m.size = Some(
                    ram_in_bytes(&value)
                        .ok_or_else(|| bad(format!("invalid value for {key}: {value}")))?,
                );
            }
            "env" => {
                if m.kind != MountType::Secret {
                    return Err(bad(format!(
                        "unexpected key '{key}' for mount type '{}'",
                        m.kind.as_str()
                    )));
                }
                m.env = Some(value);
            }
            _ => {}
        }
    }

    let file_info_allowed = matches!(
        m.kind,
        MountType::Secret | MountType::Ssh | MountType::Cache
    );
    for (set, what) in [
        (m.mode.is_some(), "mode"),
        (m.uid.is_some(), "uid"),
        (m.gid.is_some(), "gid"),
    ] {
        if set && !file_info_allowed {
            return Err(bad(format!(
                "{what} not allowed for {:?} type mounts",
                m.kind.as_str()
            )));
        }
    }
    if ro_auto {
        m.readonly = !matches!(m.kind, MountType::Cache | MountType::Tmpfs);
    }
    if m.sharing.is_some() && m.kind != MountType::Cache {
        return Err(bad(format!(
            "invalid cache sharing set for {} mount",
            m.kind.as_str()
        )));
    }
    if m.kind == MountType::Secret {
        if m.from.is_some() {
            return Err(bad("secret mount should not have a from".into()));
        }
        if m.source.is_none() && m.target.is_none() && m.id.is_none() && m.env.is_none() {
            return Err(bad(
                "invalid secret mount. one of source, target, id or env required".into(),
            ));
        }
        if m.source.is_some() && m.id.is_some() {
            return Err(bad("both source and id can't be set".into()));
        }
    }
    Ok(m)
}

/// Go's `strconv.ParseBool`.
fn go_parse_bool(v: &str) -> Option<bool> {
    match v {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

/// docker/go-units `RAMInBytes`: `64m`, `1.5g`, `100` (bytes), binary units.
fn ram_in_bytes(v: &str) -> Option<u64> {
    let lower = v.trim().to_ascii_lowercase();
    let num_end = lower
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(lower.len());
    let n: f64 = lower[..num_end].parse().ok()?;
    let unit = lower[num_end..].trim_end_matches('b').trim_end_matches('i');
    let mult: f64 = match unit {
        "" => 1.0,
        "k" => 1024.0,
        "m" => 1024f64.powi(2),
        "g" => 1024f64.powi(3),
        "t" => 1024f64.powi(4),
        "p" => 1024f64.powi(5),
        _ => return None,
    };
    let bytes = n * mult;
    (bytes.is_finite() && bytes >= 0.0 && bytes < u64::MAX as f64).then_some(bytes as u64)
}

/// One record of Go's `encoding/csv` (comma separated, `"` quoting with
/// `""` for a quote, no bare quotes in unquoted fields).
fn csv_fields(s: &str) -> Result<Vec<std::borrow::Cow<'_, str>>, String> {
    let mut fields = Vec::new();
    let mut rest = s;
    loop {
        if let Some(q) = rest.strip_prefix('"') {
            let mut field = String::new();
            let mut chars = q.char_indices();
            let end = loop {
                match chars.next() {
                    Some((i, '"')) => {
                        if q[i + 1..].starts_with('"') {
                            field.push('"');
                            chars.next();
                        } else {
                            break i + 1;
                        }
                    }
                    Some((_, c)) => field.push(c),
                    None => return Err("extraneous or missing \" in quoted-field".into()),
                }
            };
            rest = &q[end..];
            fields.push(std::borrow::Cow::Owned(field));
            match rest.strip_prefix(',') {
                Some(r) => rest = r,
                None if rest.is_empty() => break,
                None => return Err("extraneous or missing \" in quoted-field".into()),
            }
        } else {
            let end = rest.find(',').unwrap_or(rest.len());
            let field = &rest[..end];
            if field.contains('"') {
                return Err("bare \" in non-quoted-field".into());
            }
            fields.push(std::borrow::Cow::Borrowed(field));
            if end == rest.len() {
                break;
            }
            rest = &rest[end + 1..];
        }
    }
    Ok(fields)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn literal(v: &str) -> Result<Option<String>, ExpandError> {
        Ok((!v.contains('$')).then(|| v.to_owned()))
    }

    #[test]
    fn valid_mounts() {
        let m = parse_mount(
            "type=cache,target=/root/.cache,sharing=locked,id=x,mode=0755,uid=1",
            &literal,
        )
        .unwrap();
        assert_eq!(m.kind, MountType::Cache);
        assert_eq!(m.target.as_deref(), Some("/root/.cache"));
        assert_eq!(m.sharing, Some(Sharing::Locked));
        assert_eq!(m.mode, Some(0o755));
        assert!(!m.readonly);

        let m = parse_mount("type=bind,from=build,src=/out,dst=/in,rw", &literal).unwrap();
        assert_eq!((m.from.as_deref(), m.readonly), (Some("build"), false));
        let m = parse_mount("target=/x", &literal).unwrap();
        assert!(m.readonly, "bind mounts default to read-only");
        let m = parse_mount("type=secret,id=tok,env=TOKEN,required", &literal).unwrap();
        assert!(m.required);
        let m = parse_mount("type=tmpfs,target=/t,size=64m", &literal).unwrap();
        assert_eq!(m.size, Some(64 << 20));
        let m = parse_mount("\"type=bind\",target=/a", &literal).unwrap();
        assert_eq!(m.kind, MountType::Bind);
        let m = parse_mount("type=cache,target=$DIR,uid=$UID", &literal).unwrap();
        assert_eq!((m.target, m.uid), (None, None), "unknown until expanded");
    }

    #[test]
    fn invalid_mounts() {
        let cases = [
            ("type=foo", "unsupported mount type \"foo\""),
            (
                "type=bind,mode=0700",
                "mode not allowed for \"bind\" type mounts",
            ),
            (
                "type=bind,sharing=locked",
                "invalid cache sharing set for bind mount",
            ),
            (
                "type=secret,from=x,id=a",
                "secret mount should not have a from",
            ),
            (
                "type=secret",
                "invalid secret mount. one of source, target, id or env required",
            ),
            ("type=cache,sharing=x", "unsupported sharing value \"x\""),
            ("target", "invalid field 'target' must be a key=value pair"),
            (
                "required,type=secret",
                "unexpected key 'required' for mount type 'bind'",
            ),
            (
                "type=cache,tagret=/x",
                "unexpected key 'tagret' in 'tagret=/x' (did you mean \"target\"?)",
            ),
            ("type=cache,uid=x", "invalid value x for uid"),
            (
                "from=$X",
                "'from' doesn't support variable expansion, define alias stage instead",
            ),
            ("type=bind,ro=maybe", "invalid value for ro: maybe"),
            (
                "a\"b",
                "failed to parse csv mounts: bare \" in non-quoted-field",
            ),
        ];
        for (raw, want) in cases {
            match parse_mount(raw, &literal) {
                Err(MountError::Invalid(m)) => assert_eq!(m, want, "case {raw:?}"),
                other => panic!("case {raw:?}: got {other:?}"),
            }
        }
    }
}
