//! `--security-opt` and `--allow`, as `docker run`/`docker build` take them.

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, bail};
use hoist_sandbox::{SeccompProfile, Security};

/// Docker's `--security-opt` values that hoist supports: `seccomp=unconfined`,
/// `seccomp=PROFILE.json` (also the legacy `seccomp:…`) and
/// `no-new-privileges[=true|false]`. Anything else is refused by name.
pub fn parse_security_opts(opts: &[String]) -> anyhow::Result<Security> {
    let mut security = Security::default();
    for opt in opts {
        let (key, value) = match opt.split_once(['=', ':']) {
            Some((k, v)) => (k, Some(v)),
            None => (opt.as_str(), None),
        };
        match (key, value) {
            ("seccomp", Some("unconfined")) => security.seccomp = None,
            ("seccomp", Some(path)) if !path.is_empty() => {
                let profile = SeccompProfile::load(Path::new(path))
                    .with_context(|| format!("--security-opt {opt}"))?;
                security.seccomp = (!profile.is_empty()).then(|| Arc::new(profile));
            }
            ("no-new-privileges", None | Some("true")) => security.no_new_privs = true,
            ("no-new-privileges", Some("false")) => security.no_new_privs = false,
            _ => bail!(
                "invalid --security-opt {opt:?}: supported are seccomp=unconfined, \
                 seccomp=PROFILE.json and no-new-privileges[=true|false]"
            ),
        }
    }
    Ok(security)
}

/// `--allow ENTITLEMENT`: whether `security.insecure` was granted.
/// `network.host` is accepted and changes nothing: host networking needs no
/// entitlement in hoist.
pub fn parse_allow(entitlements: &[String]) -> anyhow::Result<bool> {
    let mut insecure = false;
    for e in entitlements.iter().flat_map(|e| e.split(',')) {
        match e.trim() {
            "security.insecure" => insecure = true,
            "network.host" => {}
            other => bail!(
                "invalid entitlement {other:?}: supported are security.insecure and network.host"
            ),
        }
    }
    Ok(insecure)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn security_opts() {
        let opts =
            |v: &[&str]| parse_security_opts(&v.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        assert!(
            opts(&[]).unwrap().seccomp.is_some(),
            "Docker's profile by default"
        );
        assert!(opts(&["seccomp=unconfined"]).unwrap().seccomp.is_none());
        assert!(opts(&["seccomp:unconfined"]).unwrap().seccomp.is_none());
        assert!(!opts(&["no-new-privileges=false"]).unwrap().no_new_privs);
        let err = format!("{:#}", opts(&["apparmor=x"]).unwrap_err());
        assert!(
            err.contains("invalid --security-opt \"apparmor=x\""),
            "{err}"
        );
        let err = format!("{:#}", opts(&["seccomp=/nonexistent.json"]).unwrap_err());
        assert!(err.contains("/nonexistent.json"), "{err}");
    }

    #[test]
    fn entitlements() {
        let allow = |v: &[&str]| parse_allow(&v.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        assert!(!allow(&[]).unwrap());
        assert!(allow(&["security.insecure"]).unwrap());
        assert!(allow(&["network.host,security.insecure"]).unwrap());
        assert!(allow(&["device"]).is_err());
    }
}
